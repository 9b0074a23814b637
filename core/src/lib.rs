//! # punchwire-core
//!
//! The portable heart of punchwire, a NAT-traversal engine for small
//! routers and microcontrollers: `#![no_std]`, no `unsafe`, and no heap
//! unless the `alloc`/`deflate` features ask for one.
//!
//! | module | what it holds |
//! | --- | --- |
//! | [`schedule`] | shared-clock buckets, boundaries, CPython-compatible MT19937 port lists, candidate buckets for a skew bound |
//! | [`frame`] | the udphp v0.12 datagrams `U C A N H`: checked views, `parse`/`emit` |
//! | [`compress`] | zlib per frame with the MIN_GAIN rule; heap-free, bomb-proof inflation |
//! | [`digest`] | the 11-byte MD5 prefix carried in data frames |
//! | [`time`] | monotonic instants on an `embedded-time` base, and a unix clock carried on them; the core never reads a clock |
//! | [`sntp`] | a sans-IO SNTPv4 client: unix time from one server exchange, with an error bound |
//! | [`tunnel`] | the udphp v0.12 tunnel as a sans-IO endpoint: send window, RFC 6298 retransmission timer, heartbeats |
//! | [`net`] | the socket traits the platforms implement (`Udp`, `Tcp`, `Wait`) |
//!
//! Protocol state machines are sans-IO: they take `now` and input events,
//! produce output actions and report their next deadline. A platform
//! implements the [`net`] traits and runs the machines in one loop:
//! feed every input, drain every output, then [`net::Wait::wait`] until the
//! earliest deadline.
//!
//! ## Features
//! * `alloc`: heap-backed helpers.
//! * `deflate` (implies `alloc`): the zlib compressor (~320 KB of state).
//!   Without it a peer sends `U` frames and still inflates `C` frames.

#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod birthday;
pub mod compress;
pub mod devconfig;
pub mod digest;
pub mod frame;
pub mod net;
pub mod pathprobe;
pub mod punch;
pub mod schedule;
pub mod sntp;
pub mod time;
pub mod tunnel;

#[cfg(test)]
mod vectors;
