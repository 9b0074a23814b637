//! punchwire on smoltcp: the core's socket traits ([`Udp`], [`Tcp`],
//! [`Wait`]) over a `smoltcp` [`Interface`], generic over any
//! [`smoltcp::phy::Device`].
//!
//! The same code runs the ESP32-C3 firmware (`platform-esp/firmware`, a Wi-Fi
//! device) and the host tests (an in-memory medium, a TAP device in a network
//! namespace), so the punch and tunnel machines are tested on the host
//! exactly as the microcontroller runs them.
//!
//! # Shape
//! [`SmolNet`] owns the interface, the device, a [`SocketSet`] and a
//! [`Platform`] (the clock and the idle sleep). The caller builds the socket
//! set: every TCP socket in it becomes part of a pool that `tcp_bind_reuse`,
//! `tcp_listen` and `tcp_connect_local` draw from, every UDP socket part of
//! the UDP pool. Buffers are the caller's, so a firmware keeps them in
//! `static`s and the host in `Vec`s; nothing here allocates.
//!
//! # How the traits map
//! * Handles are pool indices with a generation, so a stale handle never
//!   touches a reused socket.
//! * `tcp_connect` is `tcp::Socket::connect`, which also performs
//!   simultaneous open (a SYN answering our SYN: SYN-SENT → SYN-RECEIVED →
//!   ESTABLISHED, smoltcp ≥ 0.12). Status: SYN-SENT → pending, SYN-RECEIVED
//!   → handshaking, synchronised → connected, CLOSED after a connect →
//!   refused.
//! * TTL is the socket's hop limit.
//! * Closing a socket that never got an answer is silent, as on Linux:
//!   smoltcp's own `close` in SYN-SENT leaves an endpoint behind that its next
//!   poll answers with RST, which would reach our router's conntrack (and
//!   tear down the entry the punch needs). The backend first lets a SYN that
//!   was queued but not yet sent go out (a priming SYN is connected and
//!   closed at once), then forgets the socket without a packet.
//! * Closing an established socket sends FIN; the socket returns to the pool
//!   when the close has finished (or from TIME-WAIT, when the pool runs dry).
//! * Listening: smoltcp's listening socket *becomes* the connection, so
//!   `tcp_accept` hands the socket out once it is established and puts
//!   another pool socket into LISTEN on the port.
//! * The "local" TCP side of a tunnel is on the LAN: `tcp_listen` accepts
//!   on every address of the interface, `tcp_connect_local(port)` connects
//!   to [`SmolNet::set_local_host`]'s address.
//! * [`Wait::wait`] polls the interface and returns when smoltcp reports a
//!   socket change or the deadline passes; otherwise it sleeps through
//!   [`Platform::idle`] until the earlier of the deadline and smoltcp's own
//!   `poll_at`.
//!
//! [`splice`] carries two TCP streams into each other (a punched connection
//! and a LAN service), over the core's traits only.
//!
//! [`Udp`]: punchwire_core::net::Udp
//! [`Tcp`]: punchwire_core::net::Tcp
//! [`Wait`]: punchwire_core::net::Wait
//! [`Wait::wait`]: punchwire_core::net::Wait::wait
//! [`Interface`]: smoltcp::iface::Interface
//! [`SocketSet`]: smoltcp::iface::SocketSet

#![no_std]
#![forbid(unsafe_code)]

mod net;
#[cfg(feature = "probe")]
pub mod probe;
pub mod splice;

pub use net::{
    Listener, MAX_TCP_SOCKETS, MAX_UDP_SOCKETS, Platform, SmolNet, TcpHandle, UdpHandle,
};

pub use smoltcp;
