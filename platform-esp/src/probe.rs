//! Path probing on smoltcp (feature `probe`):
//! [`IcmpProbe`](punchwire_core::pathprobe::net::IcmpProbe) for
//! `core::pathprobe`, so a device learns its prime TTL like Linux does.
//!
//! Two sockets the caller adds to the [`SmolNet`]'s socket set *after*
//! building it (the pool only takes the sockets present at
//! [`SmolNet::new`], so these stay out of it): a `udp::Socket` the probes
//! leave from, **with a transmit buffer of exactly one packet** (so
//! `can_send` says whether the last probe has left), and an
//! `icmp::Socket` that [`SmolProbe`] binds to
//! `icmp::Endpoint::Udp(port)`, which makes smoltcp hand it every ICMP
//! destination-unreachable or time-exceeded message quoting a UDP datagram
//! sent from that port. The message's source is the offender; the quoted
//! IPv4 and UDP headers give the probe's destination.
//!
//! smoltcp applies a UDP socket's hop limit when it dispatches a datagram,
//! not when it is queued, so each probe is dispatched (an interface poll)
//! before the next TTL is set; a probe still queued (its next hop's MAC
//! being resolved) makes the next send `WouldBlock`, which
//! `pathprobe::learn` retries. smoltcp checks the quoted UDP checksum, so
//! the probes carry no payload: the whole 8-byte datagram fits in the 8
//! bytes past the IP header that every router quotes.
//!
//! Costs two more socket-set slots (336 bytes each on the ESP32-C3) and
//! their buffers (a few hundred bytes); the ICMP socket stays bound to its
//! port for the [`SmolProbe`]'s life (smoltcp has no unbind), so each
//! `probe_open` reuses that port.

use core::net::{Ipv4Addr, SocketAddrV4};

use punchwire_core::net::{NetError, NetResult, Wait};
use punchwire_core::pathprobe::IcmpKind;
use punchwire_core::pathprobe::net::{IcmpProbe, IcmpReport};
use punchwire_core::time::Instant;
use smoltcp::iface::SocketHandle;
use smoltcp::phy::Device;
use smoltcp::socket::{icmp, udp};
use smoltcp::wire::{IpAddress, IpEndpoint, IpListenEndpoint};

use crate::{Platform, SmolNet};

/// The probe capability over a [`SmolNet`] and two sockets of its set.
pub struct SmolProbe<'n, 'a, D: Device, P: Platform> {
    net: &'n mut SmolNet<'a, D, P>,
    udp: SocketHandle,
    icmp: SocketHandle,
    port: u16,
    icmp_bound: bool,
}

impl<'n, 'a, D: Device, P: Platform> SmolProbe<'n, 'a, D, P> {
    /// Probes from local `port` with the `udp` and `icmp` sockets the
    /// caller added to `net.sockets_mut()` (unbound).
    pub fn new(
        net: &'n mut SmolNet<'a, D, P>,
        udp: SocketHandle,
        icmp: SocketHandle,
        port: u16,
    ) -> Self {
        SmolProbe {
            net,
            udp,
            icmp,
            port,
            icmp_bound: false,
        }
    }
}

/// The probe socket (there is one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmolProbeSocket;

/// Parses an ICMPv4 error message (type, code, 4 unused bytes, the quoted
/// IPv4 header and at least 4 bytes of the UDP header): the quoted
/// datagram's destination and what the message says. `None` for anything
/// else, never a panic.
pub fn parse_icmp_error(msg: &[u8]) -> Option<(SocketAddrV4, IcmpKind)> {
    let (&kind, rest) = msg.split_first()?;
    let code = *rest.first()?;
    let ip = msg.get(8..)?;
    let version_ihl = *ip.first()?;
    if version_ihl >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(version_ihl & 0x0f) * 4;
    if ihl < 20 || *ip.get(9)? != 17 {
        return None;
    }
    let dst = Ipv4Addr::new(*ip.get(16)?, *ip.get(17)?, *ip.get(18)?, *ip.get(19)?);
    let udp = ip.get(ihl..ihl + 4)?;
    let port = u16::from_be_bytes([udp[2], udp[3]]);
    let kind = match kind {
        11 => IcmpKind::TimeExceeded,
        3 => IcmpKind::Unreachable(code),
        t => IcmpKind::Other(t, code),
    };
    Some((SocketAddrV4::new(dst, port), kind))
}

impl<D: Device, P: Platform> IcmpProbe for SmolProbe<'_, '_, D, P> {
    type ProbeSocket = SmolProbeSocket;

    fn probe_open(&mut self) -> NetResult<SmolProbeSocket> {
        let port = self.port;
        let sockets = self.net.sockets_mut();
        if !self.icmp_bound {
            sockets
                .get_mut::<icmp::Socket>(self.icmp)
                .bind(icmp::Endpoint::Udp(IpListenEndpoint::from(port)))
                .map_err(|_| NetError::AddrInUse)?;
            self.icmp_bound = true;
        }
        let udp = sockets.get_mut::<udp::Socket>(self.udp);
        if !udp.is_open() {
            udp.bind(port).map_err(|_| NetError::AddrInUse)?;
        }
        Ok(SmolProbeSocket)
    }

    fn probe_send(
        &mut self,
        _socket: SmolProbeSocket,
        ttl: u8,
        to: SocketAddrV4,
        payload: &[u8],
    ) -> NetResult<()> {
        // The previous probe must have left before its TTL is changed. Its
        // payload is empty, so `send_queue` (bytes) cannot tell; with a
        // one-packet transmit buffer, `can_send` can.
        let queued = |net: &mut SmolNet<'_, D, P>, h| {
            let s = net.sockets_mut().get::<udp::Socket>(h);
            s.send_queue() > 0 || !s.can_send()
        };
        if queued(self.net, self.udp) {
            self.net.poll();
            if queued(self.net, self.udp) {
                return Err(NetError::WouldBlock);
            }
        }
        let udp = self.net.sockets_mut().get_mut::<udp::Socket>(self.udp);
        udp.set_hop_limit((ttl > 0).then_some(ttl));
        let endpoint = IpEndpoint::new(IpAddress::Ipv4(*to.ip()), to.port());
        udp.send_slice(payload, endpoint).map_err(|e| match e {
            udp::SendError::BufferFull => NetError::WouldBlock,
            udp::SendError::Unaddressable => NetError::Unreachable,
        })?;
        self.net.poll();
        Ok(())
    }

    fn probe_recv_error(&mut self, _socket: SmolProbeSocket) -> NetResult<IcmpReport> {
        let icmp = self.net.sockets_mut().get_mut::<icmp::Socket>(self.icmp);
        loop {
            let (msg, from) = match icmp.recv() {
                Ok(r) => r,
                Err(_) => return Err(NetError::WouldBlock),
            };
            #[allow(irrefutable_let_patterns)]
            let IpAddress::Ipv4(offender) = from else {
                continue;
            };
            if let Some((to, kind)) = parse_icmp_error(msg) {
                return Ok(IcmpReport { to, offender, kind });
            }
        }
    }

    fn probe_close(&mut self, _socket: SmolProbeSocket) {
        self.net
            .sockets_mut()
            .get_mut::<udp::Socket>(self.udp)
            .close();
    }
}

impl<D: Device, P: Platform> Wait for SmolProbe<'_, '_, D, P> {
    fn now(&mut self) -> Instant {
        self.net.now()
    }

    fn wait(&mut self, deadline: Option<Instant>) -> NetResult<Instant> {
        self.net.wait(deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u8, code: u8, dst: [u8; 4], port: u16) -> [u8; 36] {
        let mut m = [0u8; 36];
        m[0] = kind;
        m[1] = code;
        m[8] = 0x45;
        m[17] = 17;
        m[24..28].copy_from_slice(&dst);
        m[30..32].copy_from_slice(&port.to_be_bytes());
        m
    }

    #[test]
    fn parses_time_exceeded_and_unreachable() {
        let m = message(11, 0, [198, 51, 100, 2], 33436);
        assert_eq!(
            parse_icmp_error(&m),
            Some((
                SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 2), 33436),
                IcmpKind::TimeExceeded
            ))
        );
        let m = message(3, 3, [198, 51, 100, 2], 33437);
        assert_eq!(
            parse_icmp_error(&m).map(|r| r.1),
            Some(IcmpKind::Unreachable(3))
        );
    }

    #[test]
    fn refuses_short_or_foreign_quotes_without_panicking() {
        let m = message(11, 0, [1, 2, 3, 4], 1);
        for n in 0..m.len() {
            let _ = parse_icmp_error(&m[..n]);
        }
        assert_eq!(parse_icmp_error(&m[..31]), None);
        let mut tcp = m;
        tcp[17] = 6;
        assert_eq!(parse_icmp_error(&tcp), None);
        let mut v6 = m;
        v6[8] = 0x65;
        assert_eq!(parse_icmp_error(&v6), None);
    }
}
