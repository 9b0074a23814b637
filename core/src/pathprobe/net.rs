//! The socket capability path probing needs: send a UDP datagram with a
//! chosen TTL and read back the ICMP errors it draws.
//!
//! A separate trait from [`Udp`](crate::net::Udp), so a platform without
//! it (or a test double) still runs everything else.
//!
//! * **Linux** (`punchwire-linux`, `probe.rs`): an unconnected UDP socket
//!   with `IP_RECVERR`; each ICMP error is read from `MSG_ERRQUEUE`: the
//!   original destination is the message's address, the router is
//!   `SO_EE_OFFENDER`, the type and code are `ee_type`/`ee_code`
//!   (`ee_origin` `SO_EE_ORIGIN_ICMP`). The socket reports `EPOLLERR`
//!   while errors are queued.
//! * **smoltcp**: an `icmp::Socket` bound to `Endpoint::Udp(local port)`
//!   receives the ICMP errors that quote a UDP datagram sent from that
//!   port; the quoted IPv4 + UDP header gives the original destination and
//!   the packet's source the offender. The datagram itself goes out of a
//!   UDP socket on that port with its hop limit set per probe.

use core::fmt;
use core::net::{Ipv4Addr, SocketAddrV4};

use super::IcmpKind;
use crate::net::NetResult;

/// One ICMP error about a datagram a probe socket sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpReport {
    /// Where the datagram that drew it was going.
    pub to: SocketAddrV4,
    /// The router (or host) that sent the ICMP error.
    pub offender: Ipv4Addr,
    /// What it said.
    pub kind: IcmpKind,
}

/// Sockets that send TTL-limited datagrams and report the ICMP errors.
pub trait IcmpProbe {
    /// Handle of one probe socket.
    type ProbeSocket: Copy + Eq + fmt::Debug;

    /// Opens a probe socket on an ephemeral local port.
    fn probe_open(&mut self) -> NetResult<Self::ProbeSocket>;

    /// Sends `payload` to `to` with IP TTL `ttl`.
    fn probe_send(
        &mut self,
        socket: Self::ProbeSocket,
        ttl: u8,
        to: SocketAddrV4,
        payload: &[u8],
    ) -> NetResult<()>;

    /// The next ICMP error queued on the socket; `WouldBlock` when none.
    /// Ordinary datagrams arriving on the socket are discarded.
    fn probe_recv_error(&mut self, socket: Self::ProbeSocket) -> NetResult<IcmpReport>;

    /// Closes the socket.
    fn probe_close(&mut self, socket: Self::ProbeSocket);
}
