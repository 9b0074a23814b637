//! The socket layer the engines run over.
//!
//! Three small traits, implemented once per platform; the protocol machines
//! and the generic driver in this crate only ever see these.
//!
//! * [`Udp`]: datagram sockets (the tunnel and the UDP punch).
//! * [`Tcp`]: punch sockets bound to a chosen port with address reuse,
//!   non-blocking connects and their status, stream I/O, and the local
//!   service side (listen/accept, connect to a local port).
//! * [`Wait`]: block until something may have changed or a deadline passes.
//!
//! Sockets are named by small `Copy` handles and every operation goes
//! through the backend (`net.tcp_read(handle, buf)`), because smoltcp keeps
//! its sockets in a set owned by the interface; a handle is an index there,
//! and a slot in the Linux backend's table.
//!
//! ## Readiness contract (edge style)
//! Every operation is non-blocking and answers [`NetError::WouldBlock`] when
//! it cannot progress. After a driver has seen `WouldBlock` it calls
//! [`Wait::wait`] with its next timer deadline; `wait` returns when any
//! socket *may* have become ready, or at the deadline, and the driver then
//! retries what it was waiting for. Spurious returns are allowed, so the
//! driver never assumes which socket woke it.
//!
//! ## How each backend maps onto it
//! * **Linux** (`punchwire-linux`): handles index a table of non-blocking
//!   `socket2` sockets registered edge-triggered for read and write with one
//!   epoll instance (mio). `wait` is `epoll_wait` with the time to the
//!   deadline, then reads `CLOCK_MONOTONIC`. `tcp_bind_reuse` sets
//!   SO_REUSEADDR + SO_REUSEPORT before `bind`; `tcp_connect` is a
//!   non-blocking `connect` (EINPROGRESS is success); `tcp_status` reads
//!   the kernel's TCP state (TCP_INFO) and SO_ERROR; TTL is IP_TTL. A refused
//!   punch is re-armed by connecting again from the same local port. Close
//!   is `shutdown(SHUT_WR)` then `close` without linger-0, so it sends FIN,
//!   never RST.
//! * **smoltcp** (`punchwire-esp`): handles are `SocketHandle`s in the
//!   interface's `SocketSet`. `tcp_bind_reuse` reserves a socket for a local
//!   port; `tcp_connect` is `tcp::Socket::connect(cx, remote, local_port)`,
//!   which also performs simultaneous open; `tcp_status` maps the socket
//!   state (SynSent → pending, SynReceived → handshaking, Established →
//!   connected, Closed after a connect → refused); TTL is `set_hop_limit`. `wait` runs
//!   `Interface::poll(now)` and returns as soon as it reports a socket state
//!   change, else sleeps until the earlier of the deadline and
//!   `Interface::poll_at` (or a device interrupt), then polls again.

use core::fmt;
use core::net::SocketAddrV4;

use crate::time::Instant;

/// What a socket operation can say besides success. Small and `Copy`, so
/// machines can record it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NetError {
    /// Cannot progress now; retry after [`Wait::wait`].
    WouldBlock,
    /// The peer (or a router on its behalf) refused: TCP RST to a SYN,
    /// ECONNREFUSED, ICMP port unreachable.
    Refused,
    /// An established connection was reset.
    Reset,
    /// The network said the peer cannot be reached (ICMP host/net
    /// unreachable, TTL exceeded).
    Unreachable,
    /// The local port is taken.
    AddrInUse,
    /// The operation timed out in the stack.
    TimedOut,
    /// The socket is closed or not connected.
    Closed,
    /// A datagram larger than the buffer, the socket or the path allows.
    TooLong,
    /// The stack has no room now (ENOBUFS, a full smoltcp buffer).
    NoBuffers,
    /// Anything else, with the platform's error number when it has one.
    Other(i32),
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetError::WouldBlock => f.write_str("operation would block"),
            NetError::Refused => f.write_str("connection refused"),
            NetError::Reset => f.write_str("connection reset by peer"),
            NetError::Unreachable => f.write_str("peer unreachable"),
            NetError::AddrInUse => f.write_str("address already in use"),
            NetError::TimedOut => f.write_str("timed out"),
            NetError::Closed => f.write_str("socket closed"),
            NetError::TooLong => f.write_str("datagram too long"),
            NetError::NoBuffers => f.write_str("no buffer space"),
            NetError::Other(code) => write!(f, "network error {code}"),
        }
    }
}

/// Result of a socket operation.
pub type NetResult<T> = Result<T, NetError>;

/// Where a non-blocking connect stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectStatus {
    /// SYN sent, no answer yet.
    Pending,
    /// The peer's SYN arrived (SYN-RECEIVED): the handshake is finishing.
    /// Leave the socket alone.
    Handshaking,
    /// Established (by a SYN-ACK, or by a crossing SYN: simultaneous open).
    Connected,
    /// Failed; the socket may be re-armed with another `tcp_connect`.
    Failed(NetError),
}

/// Datagram sockets.
pub trait Udp {
    /// Handle of one UDP socket.
    type UdpSocket: Copy + Eq + fmt::Debug;

    /// Binds a UDP socket on all local addresses at `port`.
    fn udp_bind(&mut self, port: u16) -> NetResult<Self::UdpSocket>;

    /// Sends one datagram. `WouldBlock` when the stack's queue is full.
    fn udp_send_to(
        &mut self,
        socket: Self::UdpSocket,
        datagram: &[u8],
        to: SocketAddrV4,
    ) -> NetResult<()>;

    /// Receives one datagram into `buf`; a datagram longer than `buf` is
    /// dropped with `TooLong` rather than truncated.
    fn udp_recv_from(
        &mut self,
        socket: Self::UdpSocket,
        buf: &mut [u8],
    ) -> NetResult<(usize, SocketAddrV4)>;

    /// Sets the IP TTL of datagrams sent from now on.
    fn udp_set_ttl(&mut self, socket: Self::UdpSocket, ttl: u8) -> NetResult<()>;

    /// Closes the socket.
    fn udp_close(&mut self, socket: Self::UdpSocket);
}

/// TCP: punch sockets, streams and the local service side.
pub trait Tcp {
    /// Handle of one TCP socket (punch socket, stream, or both in turn).
    type TcpSocket: Copy + Eq + fmt::Debug;
    /// Handle of a listening socket.
    type Listener: Copy + Eq + fmt::Debug;

    /// A socket bound to `port` on all local addresses with address reuse
    /// (SO_REUSEADDR + SO_REUSEPORT), ready for `tcp_connect`.
    fn tcp_bind_reuse(&mut self, port: u16) -> NetResult<Self::TcpSocket>;

    /// Starts a non-blocking connect from the socket's port to `peer`. A
    /// socket whose last connect failed may be connected again.
    fn tcp_connect(&mut self, socket: Self::TcpSocket, peer: SocketAddrV4) -> NetResult<()>;

    /// Where the last `tcp_connect` stands.
    fn tcp_status(&mut self, socket: Self::TcpSocket) -> ConnectStatus;

    /// Sets the IP TTL of segments sent from now on.
    fn tcp_set_ttl(&mut self, socket: Self::TcpSocket, ttl: u8) -> NetResult<()>;

    /// Reads received bytes; `Ok(0)` means the peer finished sending (FIN).
    fn tcp_read(&mut self, socket: Self::TcpSocket, buf: &mut [u8]) -> NetResult<usize>;

    /// Queues bytes to send; returns how many were taken (maybe fewer).
    fn tcp_write(&mut self, socket: Self::TcpSocket, buf: &[u8]) -> NetResult<usize>;

    /// Sends FIN after the queued bytes; reading goes on.
    fn tcp_shutdown_write(&mut self, socket: Self::TcpSocket) -> NetResult<()>;

    /// Releases the socket gracefully: FIN, never RST (no linger-0).
    fn tcp_close(&mut self, socket: Self::TcpSocket);

    /// Aborts a local connection (RST), so its local peer learns that the
    /// stream was cut, not finished: for a tunnel stream that was reset.
    /// Never used on punch sockets. The default closes gracefully (a
    /// backend without an abort).
    fn tcp_abort(&mut self, socket: Self::TcpSocket) {
        self.tcp_close(socket);
    }

    /// Listens for local clients on `port` (loopback only on Linux).
    fn tcp_listen(&mut self, port: u16) -> NetResult<Self::Listener>;

    /// Takes one pending connection, `WouldBlock` when none.
    fn tcp_accept(&mut self, listener: Self::Listener) -> NetResult<Self::TcpSocket>;

    /// Stops listening.
    fn tcp_unlisten(&mut self, listener: Self::Listener);

    /// Starts a connection to a local service on `port`; progress through
    /// `tcp_status` like a punch.
    fn tcp_connect_local(&mut self, port: u16) -> NetResult<Self::TcpSocket>;
}

/// Blocking until something may have changed. See the module docs for the
/// edge-style contract.
pub trait Wait {
    /// Current monotonic time on the core's base.
    fn now(&mut self) -> Instant;

    /// Blocks until a socket may have become ready, or until `deadline`
    /// (forever if `None`), and returns the time on waking.
    fn wait(&mut self, deadline: Option<Instant>) -> NetResult<Instant>;
}
