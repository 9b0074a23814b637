//! [`BirthdaySockets`]: the extra sockets of a [`Birthday`] machine on any
//! [`Udp`] backend, for a driver that runs it beside the tunnel.
//!
//! The driver keeps reading its main socket itself (the tunnel needs those
//! datagrams too) and passes the ones from the peer's address to
//! [`Birthday::handle_datagram`] with `Socket::Main`. Each turn of its loop
//! it calls [`BirthdaySockets::read`] (the extra sockets' datagrams, into
//! the machine) and [`BirthdaySockets::act`] (the machine's actions, on the
//! sockets), and includes [`Birthday::poll_timeout`] in its wait. `act`
//! returns [`Finish`] once: the winning socket (now the caller's, to run
//! the tunnel on) or the give-up.

use core::net::SocketAddrV4;

use super::{Action, Birthday, Socket};
use crate::net::{NetError, Udp};
use crate::time::Instant;

/// How the machine ended, with the socket handle to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish<S> {
    /// Run the tunnel on `socket` (the main socket or a former extra
    /// socket, now the caller's to close) to `peer`.
    Winner {
        /// The socket handle.
        socket: S,
        /// Which one it is.
        which: Socket,
        /// The peer's address on that path.
        peer: SocketAddrV4,
    },
    /// No hole; every extra socket is closed.
    GaveUp,
}

/// Up to `K` extra sockets (`K` ≥ the machine's `extra_sockets`; a larger
/// index than `K` is treated as a failed open).
pub struct BirthdaySockets<S: Copy, const K: usize> {
    extra: [Option<S>; K],
    /// (TTL of the extra sockets' datagrams, TTL the winner gets back).
    ttl: Option<(u8, u8)>,
}

impl<S: Copy + Eq + core::fmt::Debug, const K: usize> Default for BirthdaySockets<S, K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: Copy + Eq + core::fmt::Debug, const K: usize> BirthdaySockets<S, K> {
    /// No socket open.
    pub fn new() -> Self {
        BirthdaySockets {
            extra: [None; K],
            ttl: None,
        }
    }

    /// Extra sockets send at IP TTL `prime` (the learned prime TTL): their
    /// datagram only has to open this side's NAT mapping, and must not
    /// reach the peer's router, where a router without an input firewall
    /// would keep an entry that moves the peer's own mapping. The winner is
    /// set back to `normal` before it is handed over.
    pub fn with_ttl(mut self, prime: u8, normal: u8) -> Self {
        self.ttl = Some((prime, normal));
        self
    }

    /// How many extra sockets are open.
    pub fn open_count(&self) -> usize {
        self.extra.iter().flatten().count()
    }

    /// Carries out the machine's due actions: opens (`udp_bind(0)`),
    /// sends `datagram` (a heartbeat) where it says, closes. `main` is the
    /// tunnel's socket.
    pub fn act<N: Udp<UdpSocket = S>>(
        &mut self,
        net: &mut N,
        m: &mut Birthday,
        main: S,
        now: Instant,
        datagram: &[u8],
    ) -> Option<Finish<S>> {
        while let Some(a) = m.poll_action(now) {
            match a {
                Action::Open(i) => match self.extra.get_mut(usize::from(i)) {
                    Some(slot) => match net.udp_bind(0) {
                        Ok(s) => {
                            if let Some((prime, _)) = self.ttl {
                                let _ = net.udp_set_ttl(s, prime);
                            }
                            *slot = Some(s);
                        }
                        Err(_) => m.handle_open_failed(i),
                    },
                    None => m.handle_open_failed(i),
                },
                Action::Send { from, to } => {
                    let s = match from {
                        Socket::Main => Some(main),
                        Socket::Extra(i) => self.extra.get(usize::from(i)).copied().flatten(),
                    };
                    if let Some(s) = s {
                        // A full queue or an ICMP error costs one probe.
                        let _ = net.udp_send_to(s, datagram, to);
                    }
                }
                Action::Close(i) => {
                    if let Some(s) = self.extra.get_mut(usize::from(i)).and_then(Option::take) {
                        net.udp_close(s);
                    }
                }
                Action::Winner { socket, peer } => {
                    let handle = match socket {
                        Socket::Main => Some(main),
                        Socket::Extra(i) => {
                            let h = self.extra.get_mut(usize::from(i)).and_then(Option::take);
                            if let (Some(h), Some((_, normal))) = (h, self.ttl) {
                                let _ = net.udp_set_ttl(h, normal);
                            }
                            h
                        }
                    };
                    if let Some(h) = handle {
                        return Some(Finish::Winner {
                            socket: h,
                            which: socket,
                            peer,
                        });
                    }
                }
                Action::GaveUp => return Some(Finish::GaveUp),
            }
        }
        None
    }

    /// Reads every open extra socket until it would block, passing each
    /// datagram to the machine with `well_formed(bytes)`. Returns after
    /// the first datagram that decides the machine (call `act` next).
    pub fn read<N: Udp<UdpSocket = S>>(
        &mut self,
        net: &mut N,
        m: &mut Birthday,
        now: Instant,
        buf: &mut [u8],
        mut well_formed: impl FnMut(&[u8]) -> bool,
    ) {
        for i in 0..K {
            let Some(s) = self.extra[i] else { continue };
            // Bounded: a flood on one socket cannot starve the rest.
            for _ in 0..64 {
                match net.udp_recv_from(s, buf) {
                    Ok((n, from)) => {
                        let ok = well_formed(&buf[..n]);
                        if m.handle_datagram(now, Socket::Extra(i as u16), from, ok) {
                            return;
                        }
                    }
                    Err(NetError::WouldBlock) => break,
                    Err(_) => continue,
                }
            }
        }
    }

    /// Closes every extra socket (when the caller abandons the machine).
    pub fn close_all<N: Udp<UdpSocket = S>>(&mut self, net: &mut N) {
        for slot in &mut self.extra {
            if let Some(s) = slot.take() {
                net.udp_close(s);
            }
        }
    }
}
