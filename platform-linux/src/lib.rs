//! # punchwire-linux
//!
//! The std backend of punchwire: the core's socket traits
//! ([`Udp`](punchwire_core::net::Udp), [`Tcp`](punchwire_core::net::Tcp),
//! [`Wait`](punchwire_core::net::Wait)) on non-blocking Linux sockets
//! (`socket2`) driven by one edge-triggered epoll instance (`mio`) — a raw
//! readiness loop, no async runtime, so the punch keeps its timing — and the
//! `punchwire` command-line tool built on it.

pub mod clock;
pub mod net;
pub mod probe;
pub mod random;
pub mod relay;
pub mod status;
