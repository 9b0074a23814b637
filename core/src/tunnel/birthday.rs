//! Birthday punching inside the tunnel: the [`Tunnel`] owns an optional
//! [`Birthday`] machine ([`Tunnel::enable_birthday`]) and escalates to it
//! by itself when the ordinary punch has heard nothing for the machine's
//! `silence_ms` (3 s by default; rounds on the shared unix clock, see
//! [`crate::birthday`]).
//!
//! The machine layer decides everything; the [driver](crate::tunnel::driver) only
//! carries out [`Escalation`]s from [`Tunnel::poll_birthday`] on a caller's
//! table of extra UDP sockets ([`Driver::with_extra_sockets`](crate::tunnel::Driver::with_extra_sockets))
//! and feeds every datagram of an extra socket to
//! [`Tunnel::handle_datagram_on`]. The probes and the extra sockets'
//! datagrams are ordinary punch heartbeats (greeting + our capabilities),
//! so the reply that wins is a well-formed datagram of the tunnel's own
//! protocol.
//!
//! Peer-address rules during a round: a well-formed datagram from the
//! peer's IP on an open extra socket is the intended discovery (the
//! birthday machine validates it: the socket is open, the IP is the
//! peer's); it wins, the tunnel's peer becomes its source, and from then
//! on that socket is the tunnel's socket ([`Escalation::Switch`]). A win on
//! the main socket only moves the peer's port. After the win the normal
//! rules of [`Tunnel::handle_datagram`] apply; datagrams on any other
//! extra socket are dropped (counted as unvalidated).
//!
//! A give-up ([`BirthdayEvent::GaveUp`]) changes nothing else: the
//! ordinary heartbeats go on until the tunnel's silence timeout.
//!
//! A side that chose v0.12 (with `-l`, a silent peer is taken for udphp.py
//! after `SILENT_PEER_V012_MS`) no longer offers pw1 in its capability
//! tail, so a punchwire peer that a round reaches afterwards follows into
//! v0.12 instead of choosing pw1 against it.
//!
//! Measured: `tests/tests/birthday_tunnel.rs` (the real machines and
//! driver on `simnet` behind conntrack-like NATs, 10 ms one way, 1 % loss):
//! one symmetric side connects and finishes a 200 kB session each way
//! within 30 s in 100 of 100 seeds (won 7.5–20.6 s, median 9.3 s). Lab
//! (`punchwire udp`, scenarios 75–79, 4 MB each way byte-exact): see the
//! README's "Birthday punching".

use core::net::{SocketAddr, SocketAddrV4};

use super::Tunnel;
use crate::birthday::{Action, Birthday, Outcome, Socket, Stats};
use crate::frame::{Repr, pw1 as wire};
use crate::time::Instant;

/// What the driver must do for the birthday machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Escalation {
    /// Open extra socket `index` on an ephemeral port and set its IP TTL
    /// to `ttl`; if that fails, call [`Tunnel::birthday_open_failed`].
    Open {
        /// The extra socket's index.
        index: u16,
        /// Its IP TTL (the prime TTL: it only has to open our mapping).
        ttl: u8,
    },
    /// Send the first `len` bytes of the buffer from `from` to `to` (from
    /// the main socket at `ttl`; an extra socket keeps its own TTL).
    Send {
        /// The socket to send from.
        from: Socket,
        /// Destination.
        to: SocketAddrV4,
        /// Bytes written at the start of the buffer.
        len: usize,
        /// IP TTL for the main socket.
        ttl: u8,
    },
    /// Close extra socket `index`.
    Close(u16),
    /// The hole: from now on the tunnel runs on `socket` (an extra socket
    /// replaces the main socket, which the driver closes), to `peer`.
    Switch {
        /// The winning socket.
        socket: Socket,
        /// The peer's address on that path (the tunnel's peer already).
        peer: SocketAddrV4,
    },
}

/// What the birthday machine did, for the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BirthdayEvent {
    /// Round `round` of `rounds` began (after the ordinary punch's silence).
    Round {
        /// 1-based.
        round: u8,
        /// Rounds at most.
        rounds: u8,
        /// Extra sockets this round opens.
        extra_sockets: u16,
    },
    /// A hole was found.
    Won {
        /// The socket that won.
        socket: Socket,
        /// The peer's address on it.
        peer: SocketAddrV4,
        /// In which round.
        round: u8,
        /// Counters up to the win.
        stats: Stats,
    },
    /// Every round ran out (the ordinary heartbeats go on).
    GaveUp(Stats),
}

/// The tunnel's birthday state.
#[derive(Clone, Debug, Default)]
pub(super) struct Bday {
    m: Option<Birthday>,
    /// The socket that won (it is the tunnel's socket from now on).
    won: Option<Socket>,
    /// The last round reported.
    reported_round: u8,
    ev_round: bool,
    ev_end: Option<BirthdayEvent>,
}

/// Whether `d` is a datagram of the tunnel's protocols (what a win needs).
fn well_formed(d: &[u8]) -> bool {
    wire::Header::is_pw1(d) || Repr::parse(d).is_ok()
}

impl<const F: usize> Tunnel<'_, F> {
    /// Escalate to birthday punching with `m` (made at the tunnel's start,
    /// with the shared unix clock and a seed; its peer is the tunnel's
    /// peer) when the ordinary punch hears nothing. Call before the first
    /// datagram.
    pub fn enable_birthday(&mut self, m: Birthday) {
        self.bday = Bday {
            m: Some(m),
            ..Bday::default()
        };
    }

    /// The birthday machine, when enabled (for its counters).
    pub fn birthday(&self) -> Option<&Birthday> {
        self.bday.m.as_ref()
    }

    /// The socket the tunnel runs on: `Main`, or the extra socket that won.
    pub fn socket(&self) -> Socket {
        self.bday.won.unwrap_or(Socket::Main)
    }

    /// A datagram from `from` on socket `on` (the main socket or an extra
    /// one). See the module docs for the rules.
    pub fn handle_datagram_on(
        &mut self,
        now: Instant,
        on: Socket,
        from: SocketAddr,
        datagram: &[u8],
    ) {
        if let (Some(m), SocketAddr::V4(from4)) = (self.bday.m.as_mut(), from)
            && m.result().is_none()
            && m.handle_datagram(now, on, from4, well_formed(datagram))
        {
            match m.result() {
                Some(Outcome::Winner { socket, peer, .. }) => {
                    self.bday.won = Some(socket);
                    // The discovery: the peer's address on the winning path.
                    self.move_to(SocketAddr::V4(peer));
                }
                Some(Outcome::NotNeeded) | Some(Outcome::GaveUp) | None => {}
            }
        }
        if on != self.socket() {
            // An extra socket that did not win, or the old main socket
            // after an extra socket won.
            if from.ip() == self.peer.ip() {
                self.stats.unvalidated += 1;
            } else {
                self.stats.foreign += 1;
            }
            return;
        }
        self.handle_datagram(now, from, datagram);
    }

    /// Extra socket `index` could not be opened.
    pub fn birthday_open_failed(&mut self, index: u16) {
        if let Some(m) = self.bday.m.as_mut() {
            m.handle_open_failed(index);
        }
    }

    /// The next thing the driver must do for the birthday machine; the
    /// datagram of a `Send` is written into `buf`. Drain until `None` after
    /// every input (with `handle_timeout`).
    pub fn poll_birthday(&mut self, now: Instant, buf: &mut [u8]) -> Option<Escalation> {
        loop {
            let m = self.bday.m.as_mut()?;
            let action = m.poll_action(now);
            if m.round() != self.bday.reported_round {
                self.bday.reported_round = m.round();
                self.bday.ev_round = true;
            }
            let extra_ttl = if self.cfg.prime_ttl > 0 {
                self.cfg.prime_ttl
            } else {
                self.cfg.normal_ttl
            };
            return Some(match action? {
                Action::Open(index) => Escalation::Open {
                    index,
                    ttl: extra_ttl,
                },
                Action::Send { from, to } => {
                    let Some(len) = self.birthday_heartbeat(buf) else {
                        continue;
                    };
                    Escalation::Send {
                        from,
                        to,
                        len,
                        ttl: self.cfg.normal_ttl,
                    }
                }
                Action::Close(i) => Escalation::Close(i),
                Action::Winner { socket, peer } => {
                    let m = self.bday.m.as_ref()?;
                    let round = m.round();
                    self.bday.ev_end = Some(BirthdayEvent::Won {
                        socket,
                        peer,
                        round,
                        stats: m.stats(),
                    });
                    Escalation::Switch { socket, peer }
                }
                Action::GaveUp => {
                    let s = self.bday.m.as_ref()?.stats();
                    self.bday.ev_end = Some(BirthdayEvent::GaveUp(s));
                    continue;
                }
            });
        }
    }

    /// The birthday machine's phase changes (from `handle_timeout`).
    pub(super) fn birthday_timeout(&mut self, now: Instant) {
        if let Some(m) = self.bday.m.as_mut() {
            m.handle_timeout(now);
        }
    }

    /// The birthday machine's next deadline.
    pub(super) fn birthday_deadline(&self) -> Option<Instant> {
        self.bday.m.as_ref().and_then(|m| m.poll_timeout())
    }

    /// The next birthday event for the log.
    pub(super) fn poll_birthday_event(&mut self) -> Option<BirthdayEvent> {
        if core::mem::take(&mut self.bday.ev_round)
            && let Some(m) = self.bday.m.as_ref()
        {
            let c = m.config();
            return Some(BirthdayEvent::Round {
                round: m.round(),
                rounds: c.rounds,
                extra_sockets: c.extra_sockets,
            });
        }
        self.bday.ev_end.take()
    }

    /// A punch heartbeat (greeting + capabilities) without touching the
    /// punch's timers.
    fn birthday_heartbeat(&self, buf: &mut [u8]) -> Option<usize> {
        let g = self.cfg.local.role().greeting();
        let tail = self.caps_tail();
        let total = g.len() + tail.buffer_len();
        let out = buf.get_mut(..total)?;
        out[..g.len()].copy_from_slice(g);
        tail.emit(&mut out[g.len()..])?;
        Some(total)
    }
}
