//! `embassy_net_driver::Driver` → `smoltcp::phy::Device`.
//!
//! esp-radio (≥ 0.18) hands out its Wi-Fi interfaces as embassy-net drivers
//! only. The two traits have the same shape (token pairs, an Ethernet MTU
//! that includes the 14-byte header, checksum capabilities); the driver's
//! calls additionally take a `Context` so an async stack can be woken. This
//! firmware polls in a loop instead, so every call gets a no-op waker: a
//! registered waker that does nothing costs nothing, and the loop's next
//! poll picks up whatever the wake would have announced.

use core::task::{Context, Waker};

use embassy_net_driver::{Driver, HardwareAddress, LinkState};
use smoltcp::phy::{self, Checksum, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use smoltcp::wire::EthernetAddress;

/// A smoltcp device backed by an embassy-net driver.
pub struct DriverDevice<D> {
    driver: D,
}

impl<D: Driver> DriverDevice<D> {
    pub fn new(driver: D) -> Self {
        DriverDevice { driver }
    }

    /// The driver's MAC address, or `None` for a driver that is not
    /// Ethernet-like (this adapter only serves Ethernet medium).
    pub fn ethernet_address(&self) -> Option<EthernetAddress> {
        match self.driver.hardware_address() {
            HardwareAddress::Ethernet(mac) => Some(EthernetAddress(mac)),
            _ => None,
        }
    }

    /// Whether the link is up (for Wi-Fi: associated with the AP).
    pub fn link_up(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        self.driver.link_state(&mut cx) == LinkState::Up
    }
}

/// Wraps the driver's receive token.
pub struct RxToken<T>(T);

/// Wraps the driver's transmit token.
pub struct TxToken<T>(T);

impl<T: embassy_net_driver::RxToken> phy::RxToken for RxToken<T> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        self.0.consume(|buf| f(buf))
    }
}

impl<T: embassy_net_driver::TxToken> phy::TxToken for TxToken<T> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        self.0.consume(len, f)
    }
}

impl<D: Driver> phy::Device for DriverDevice<D> {
    type RxToken<'a>
        = RxToken<D::RxToken<'a>>
    where
        Self: 'a;
    type TxToken<'a>
        = TxToken<D::TxToken<'a>>
    where
        Self: 'a;

    fn receive(&mut self, _: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let mut cx = Context::from_waker(Waker::noop());
        let (rx, tx) = self.driver.receive(&mut cx)?;
        Some((RxToken(rx), TxToken(tx)))
    }

    fn transmit(&mut self, _: Instant) -> Option<Self::TxToken<'_>> {
        let mut cx = Context::from_waker(Waker::noop());
        self.driver.transmit(&mut cx).map(TxToken)
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let caps = self.driver.capabilities();
        let mut out = DeviceCapabilities::default();
        out.medium = Medium::Ethernet;
        // Both crates define the Ethernet MTU as frame size without FCS.
        out.max_transmission_unit = caps.max_transmission_unit;
        out.max_burst_size = caps.max_burst_size;
        out.checksum = checksums(&caps.checksum);
        out
    }
}

fn checksums(c: &embassy_net_driver::ChecksumCapabilities) -> ChecksumCapabilities {
    let mut out = ChecksumCapabilities::default();
    out.ipv4 = checksum(c.ipv4);
    out.udp = checksum(c.udp);
    out.tcp = checksum(c.tcp);
    out.icmpv4 = checksum(c.icmpv4);
    out
}

fn checksum(c: embassy_net_driver::Checksum) -> Checksum {
    match c {
        embassy_net_driver::Checksum::Both => Checksum::Both,
        embassy_net_driver::Checksum::Rx => Checksum::Rx,
        embassy_net_driver::Checksum::Tx => Checksum::Tx,
        embassy_net_driver::Checksum::None => Checksum::None,
    }
}
