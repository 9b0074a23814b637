//! The smoltcp interface over the Wi-Fi station, with a DHCPv4 client.

use core::net::Ipv4Addr;

use embassy_net_driver::Driver;
use smoltcp::iface::{Config, Interface, PollResult, SocketHandle, SocketSet, SocketStorage};
use smoltcp::socket::dhcpv4;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{HardwareAddress, IpCidr, Ipv4Cidr};

use crate::device::DriverDevice;

/// What DHCP handed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    pub address: Ipv4Cidr,
    pub router: Option<Ipv4Addr>,
    /// Up to three DNS servers, in the server's order.
    pub dns: [Option<Ipv4Addr>; 3],
}

/// A change of the interface's address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DhcpChange {
    /// A new or changed lease is applied.
    Configured(Lease),
    /// The lease is gone (expired, or the client was reset); the interface
    /// has no address.
    Deconfigured,
}

/// Device, interface and sockets; socket 0 is the DHCP client.
pub struct Net<'s, D: Driver> {
    pub device: DriverDevice<D>,
    pub iface: Interface,
    pub sockets: SocketSet<'s>,
    dhcp: SocketHandle,
    lease: Option<Lease>,
}

/// smoltcp time from the HAL's monotonic clock (microseconds since boot).
pub fn now() -> Instant {
    let us = esp_hal::time::Instant::now()
        .duration_since_epoch()
        .as_micros();
    Instant::from_micros(us as i64)
}

impl<'s, D: Driver> Net<'s, D> {
    /// `storage` bounds the number of sockets (the DHCP client takes one).
    pub fn new(
        mut device: DriverDevice<D>,
        storage: &'s mut [SocketStorage<'s>],
        seed: u64,
    ) -> Self {
        let mac = device
            .ethernet_address()
            .expect("the Wi-Fi station is an Ethernet-medium device");
        let mut config = Config::new(HardwareAddress::Ethernet(mac));
        config.random_seed = seed;
        let iface = Interface::new(config, &mut device, now());
        let mut sockets = SocketSet::new(storage);
        let dhcp = sockets.add(dhcpv4::Socket::new());
        Net {
            device,
            iface,
            sockets,
            dhcp,
            lease: None,
        }
    }

    /// The current lease, if any.
    pub fn lease(&self) -> Option<Lease> {
        self.lease
    }

    /// Moves packets and timers, then applies a DHCP change if there is one.
    pub fn poll(&mut self) -> (PollResult, Option<DhcpChange>) {
        let result = self.iface.poll(now(), &mut self.device, &mut self.sockets);
        let lease = match self.sockets.get_mut::<dhcpv4::Socket>(self.dhcp).poll() {
            None => return (result, None),
            Some(dhcpv4::Event::Configured(c)) => {
                let mut dns = [None; 3];
                for (slot, server) in dns.iter_mut().zip(c.dns_servers.iter()) {
                    *slot = Some(*server);
                }
                Some(Lease {
                    address: c.address,
                    router: c.router,
                    dns,
                })
            }
            Some(dhcpv4::Event::Deconfigured) => None,
        };
        (result, Some(self.apply(lease)))
    }

    /// How long the caller may sleep before smoltcp has timer work.
    pub fn poll_delay(&mut self) -> Option<Duration> {
        self.iface.poll_delay(now(), &self.sockets)
    }

    /// Forgets the lease and restarts discovery (after a Wi-Fi reconnect,
    /// possibly to another network).
    pub fn reset_dhcp(&mut self) {
        self.sockets.get_mut::<dhcpv4::Socket>(self.dhcp).reset();
        if self.lease.is_some() {
            self.apply(None);
        }
    }

    fn apply(&mut self, lease: Option<Lease>) -> DhcpChange {
        self.iface.update_ip_addrs(|addrs| {
            addrs.clear();
            if let Some(l) = lease {
                // The address list holds at least one entry.
                let _ = addrs.push(IpCidr::Ipv4(l.address));
            }
        });
        let routes = self.iface.routes_mut();
        routes.remove_default_ipv4_route();
        if let Some(router) = lease.and_then(|l| l.router) {
            // The route table holds at least one entry, and it was just cleared.
            let _ = routes.add_default_ipv4_route(router);
        }
        self.lease = lease;
        match lease {
            Some(l) => DhcpChange::Configured(l),
            None => DhcpChange::Deconfigured,
        }
    }
}
