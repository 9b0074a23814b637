//! The network the engine runs on: punchwire-esp's [`SmolNet`] over the
//! Wi-Fi station, with the DHCPv4 client in the same socket set.
//!
//! [`Net`] implements the core's [`Udp`], [`Tcp`] and [`Wait`] by handing
//! every call to `SmolNet`, except that [`Wait::wait`] also minds the link
//! and DHCP: it wakes at least every [`CHECK_EVERY_MS`], applies any DHCP
//! change (a renewal that keeps the address changes nothing), and fails
//! with [`NetError::Unreachable`] when the Wi-Fi link is down, the lease is
//! lost or the address changed. The engine's drivers end on that error and
//! the main loop rejoins, waits for a lease and starts them again. So DHCP
//! renewals keep working through hours-long tunnels without the drivers
//! knowing DHCP exists: smoltcp's DHCP socket renews by itself whenever the
//! interface is polled, and `wait` polls it.

use core::net::{Ipv4Addr, SocketAddrV4};

use embassy_net_driver::Driver;
use esp_println::println;
use punchwire_core::net::{ConnectStatus, NetError, NetResult, Tcp, Udp, Wait};
use punchwire_core::time::{self, Instant};
use punchwire_esp::{Listener, Platform, SmolNet, TcpHandle, UdpHandle};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::dhcpv4;
use smoltcp::wire::{HardwareAddress, IpCidr, Ipv4Cidr};

use crate::device::DriverDevice;

/// Longest sleep between polls. Received frames wait in esp-radio's RX
/// queue (5 frames by default) until the next poll.
pub const IDLE_POLL_US: u64 = 5_000;
/// [`Wait::wait`] looks at the link and at DHCP at least this often.
pub const CHECK_EVERY_MS: u64 = 1_000;

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

/// The ESP32-C3's clock and idle sleep for `SmolNet`.
pub struct EspPlatform;

impl EspPlatform {
    /// Monotonic time since boot on the core's base (esp-hal's µs timer).
    pub fn now_instant() -> Instant {
        time::at_micros(
            esp_hal::time::Instant::now()
                .duration_since_epoch()
                .as_micros(),
        )
    }
}

impl Platform for EspPlatform {
    fn now(&mut self) -> Instant {
        Self::now_instant()
    }

    /// Sleeps the main thread (esp-rtos runs the Wi-Fi tasks meanwhile)
    /// until `until`, but at most [`IDLE_POLL_US`]: a received frame does
    /// not wake this thread, so the next poll must come soon.
    fn idle(&mut self, until: Option<Instant>) {
        let now = self.now();
        let us = until.map_or(IDLE_POLL_US, |t| time::micros_between(now, t));
        let us = us.min(IDLE_POLL_US);
        if us > 0 {
            crate::sleep(esp_hal::time::Duration::from_micros(us));
        }
    }
}

type Smol<D> = SmolNet<'static, DriverDevice<D>, EspPlatform>;

/// `SmolNet` plus the DHCP client; see the module docs.
pub struct Net<D: Driver> {
    smol: Smol<D>,
    dhcp: SocketHandle,
    lease: Option<Lease>,
}

impl<D: Driver> Net<D> {
    /// `sockets` holds the engine's TCP and UDP pool; the DHCP client is
    /// added to it here (it needs one free storage entry). `seed` seeds
    /// smoltcp (TCP initial sequence numbers, DHCP transaction ids).
    pub fn new(mut device: DriverDevice<D>, mut sockets: SocketSet<'static>, seed: u64) -> Self {
        let mac = device
            .ethernet_address()
            .expect("the Wi-Fi station is an Ethernet-medium device");
        let mut config = Config::new(HardwareAddress::Ethernet(mac));
        config.random_seed = seed;
        let now = smoltcp::time::Instant::from_micros(
            time::micros(EspPlatform::now_instant()).min(i64::MAX as u64) as i64,
        );
        let iface = Interface::new(config, &mut device, now);
        let dhcp = sockets.add(dhcpv4::Socket::new());
        Net {
            smol: SmolNet::new(iface, device, sockets, EspPlatform),
            dhcp,
            lease: None,
        }
    }

    /// The backend itself (local host, ephemeral seed, closing count).
    pub fn smol(&mut self) -> &mut Smol<D> {
        &mut self.smol
    }

    /// The current lease, if any.
    pub fn lease(&self) -> Option<Lease> {
        self.lease
    }

    /// Whether the Wi-Fi station is associated.
    pub fn link_up(&mut self) -> bool {
        self.smol.device_mut().link_up()
    }

    /// Polls the interface once and applies a DHCP change if there is one.
    pub fn poll(&mut self) -> Option<DhcpChange> {
        self.smol.poll();
        self.dhcp_change()
    }

    /// Forgets the lease and restarts discovery (after a Wi-Fi reconnect,
    /// possibly to another network).
    pub fn reset_dhcp(&mut self) {
        self.smol
            .sockets_mut()
            .get_mut::<dhcpv4::Socket>(self.dhcp)
            .reset();
        if self.lease.is_some() {
            self.apply(None);
        }
    }

    /// Takes the DHCP client's news (it has some only when the lease
    /// changed: a renewal of the same lease says nothing) and applies it.
    fn dhcp_change(&mut self) -> Option<DhcpChange> {
        let lease = match self
            .smol
            .sockets_mut()
            .get_mut::<dhcpv4::Socket>(self.dhcp)
            .poll()?
        {
            dhcpv4::Event::Configured(c) => {
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
            dhcpv4::Event::Deconfigured => None,
        };
        Some(self.apply(lease))
    }

    fn apply(&mut self, lease: Option<Lease>) -> DhcpChange {
        let iface = self.smol.iface_mut();
        iface.update_ip_addrs(|addrs| {
            addrs.clear();
            if let Some(l) = lease {
                // The address list holds at least one entry.
                let _ = addrs.push(IpCidr::Ipv4(l.address));
            }
        });
        let routes = iface.routes_mut();
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

    /// Link and DHCP check of [`Wait::wait`]: `Err` when the engine's
    /// sockets can no longer work.
    fn check(&mut self) -> NetResult<()> {
        if !self.link_up() {
            return Err(NetError::Unreachable);
        }
        let before = self.lease;
        match self.dhcp_change() {
            None => Ok(()),
            Some(DhcpChange::Deconfigured) => {
                println!("DHCP: lease lost");
                Err(NetError::Unreachable)
            }
            Some(DhcpChange::Configured(l)) => {
                crate::log_lease(&l);
                if before.is_some_and(|b| b.address == l.address && b.router == l.router) {
                    Ok(())
                } else {
                    println!("DHCP: address or gateway changed; restarting the engine");
                    Err(NetError::Unreachable)
                }
            }
        }
    }
}

impl<D: Driver> Wait for Net<D> {
    fn now(&mut self) -> Instant {
        self.smol.now()
    }

    fn wait(&mut self, deadline: Option<Instant>) -> NetResult<Instant> {
        self.check()?;
        let check_at = time::add_millis(self.smol.now(), CHECK_EVERY_MS);
        // An early return is always allowed by the contract.
        let now = self.smol.wait(time::earliest(deadline, Some(check_at)))?;
        self.check()?;
        Ok(now)
    }
}

impl<D: Driver> Udp for Net<D> {
    type UdpSocket = UdpHandle;

    fn udp_bind(&mut self, port: u16) -> NetResult<UdpHandle> {
        self.smol.udp_bind(port)
    }

    fn udp_send_to(&mut self, s: UdpHandle, datagram: &[u8], to: SocketAddrV4) -> NetResult<()> {
        self.smol.udp_send_to(s, datagram, to)
    }

    fn udp_recv_from(&mut self, s: UdpHandle, buf: &mut [u8]) -> NetResult<(usize, SocketAddrV4)> {
        self.smol.udp_recv_from(s, buf)
    }

    fn udp_set_ttl(&mut self, s: UdpHandle, ttl: u8) -> NetResult<()> {
        self.smol.udp_set_ttl(s, ttl)
    }

    fn udp_close(&mut self, s: UdpHandle) {
        self.smol.udp_close(s)
    }
}

impl<D: Driver> Tcp for Net<D> {
    type TcpSocket = TcpHandle;
    type Listener = Listener;

    fn tcp_bind_reuse(&mut self, port: u16) -> NetResult<TcpHandle> {
        self.smol.tcp_bind_reuse(port)
    }

    fn tcp_connect(&mut self, s: TcpHandle, peer: SocketAddrV4) -> NetResult<()> {
        self.smol.tcp_connect(s, peer)
    }

    fn tcp_status(&mut self, s: TcpHandle) -> ConnectStatus {
        self.smol.tcp_status(s)
    }

    fn tcp_set_ttl(&mut self, s: TcpHandle, ttl: u8) -> NetResult<()> {
        self.smol.tcp_set_ttl(s, ttl)
    }

    fn tcp_read(&mut self, s: TcpHandle, buf: &mut [u8]) -> NetResult<usize> {
        self.smol.tcp_read(s, buf)
    }

    fn tcp_write(&mut self, s: TcpHandle, buf: &[u8]) -> NetResult<usize> {
        self.smol.tcp_write(s, buf)
    }

    fn tcp_shutdown_write(&mut self, s: TcpHandle) -> NetResult<()> {
        self.smol.tcp_shutdown_write(s)
    }

    fn tcp_close(&mut self, s: TcpHandle) {
        self.smol.tcp_close(s)
    }

    fn tcp_listen(&mut self, port: u16) -> NetResult<Listener> {
        self.smol.tcp_listen(port)
    }

    fn tcp_accept(&mut self, l: Listener) -> NetResult<TcpHandle> {
        self.smol.tcp_accept(l)
    }

    fn tcp_unlisten(&mut self, l: Listener) {
        self.smol.tcp_unlisten(l)
    }

    fn tcp_connect_local(&mut self, port: u16) -> NetResult<TcpHandle> {
        self.smol.tcp_connect_local(port)
    }
}
