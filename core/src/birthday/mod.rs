//! Birthday punching: reach a peer behind a port-randomising (symmetric)
//! NAT without a server.
//!
//! A symmetric NAT gives every new destination a random external port, so
//! the peer's packets to our known UDP port never match the mapping our
//! main socket opened, and the ordinary punch hears nothing. With one hard
//! side the birthday paradox still finds a hole:
//!
//! * the **hard side** opens `K` extra sockets, each sending to the peer's
//!   known port: `K` random mappings on its NAT, all pointing at
//!   `peer:known`;
//! * the **easy side** probes random destination ports on the hard side's
//!   address from its main socket (the known port): each probe leaves a
//!   conntrack entry `known → hard:p` on its own NAT.
//!
//! A probe that lands on one of the `K` mapped ports is delivered to that
//! extra socket, and an extra socket whose port was probed gets through the
//! easy side's filter. `n` probes hit with probability
//! `1 − (1 − K/R)^n` (`R` = the NAT's port range, 64 512 for
//! 1024–65535): with `K` = 256, 64 % at 256 probes, 98 % at 1 024,
//! 99.9 % at the 1 792 probes a default round has after its 256 opens.
//!
//! Nobody knows which side is hard, so **both sides do both**,
//! symmetrically: after [`BirthdayConfig::silence_ms`] of hearing nothing,
//! each waits for the next boundary of the shared unix clock
//! ([`BirthdayConfig::slot_ms`]), so the two sides' rounds begin together,
//! then opens its `K` extra sockets (one datagram each to the peer's known
//! port) and probes random ports on the peer's address from its main
//! socket — all paced to at most [`BirthdayConfig::rate_per_s`] datagrams a
//! second and [`BirthdayConfig::round_budget`] per round (opens included).
//! A round ends by closing its extra sockets; the next one opens fresh ones
//! (fresh random mappings). After [`BirthdayConfig::rounds`] rounds it
//! gives up. Two symmetric sides never meet this way: every probe leaves
//! from a fresh random port the other side's filter does not know.
//!
//! **The first well-formed reply on any socket wins** (the caller decides
//! what well-formed means: a udphp frame, an authenticated pw1 datagram):
//! on an extra socket, the tunnel moves to that socket and the peer's
//! address it came from; on the main socket, the tunnel stays there and
//! talks to the port the reply came from. Every other extra socket is
//! closed at once. The two sides may pick different holes when two open at
//! the same instant; each side's tunnel follows the port the peer's
//! well-formed datagrams come from, so they converge on the one both use.
//!
//! Cost (defaults): 2 048 datagrams of a few dozen bytes per round
//! (≈ 100 per second for 20.5 s), 3 rounds at most — about 6 000
//! datagrams, 256 sockets and 256 NAT mappings at a time; a router that
//! has to keep 2 048 short-lived conntrack entries per round is far from
//! the thousands of punch *connections* said to knock routers over.
//!
//! The extra sockets' datagrams should go at the prime TTL
//! ([`BirthdaySockets::with_ttl`], the TTL `pathprobe` learns): they only
//! have to open this side's mapping, and on a router without an input
//! firewall (`naked`) a datagram that reaches it leaves an entry that moves
//! the probes aimed at that port. The same property makes a birthday round
//! heal the `naked` UDP deadlock of two sides started apart: the late
//! side's router holds an entry from the early side's heartbeats that moves
//! the late side's main mapping to a random port, i.e. the late side is a
//! port-randomising NAT for this peer.
//!
//! Measured: the simulation in `sim.rs` (both NATs as Linux conntrack,
//! 10 ms one way) connects one symmetric side within 30 s in 3 998 of
//! 4 000 seeds; in the NAT lab (the `birthday` example of
//! `punchwire-linux`, scenarios 75–78) random/openwrt, openwrt/random and
//! cgnat-random/openwrt connected 20 of 20 each, 6.4–17.2 s after the
//! later side started (median 10.3–10.6 s); naked/naked started 5 s apart
//! 10 of 10 (5.4–11.0 s; with the extra sockets at TTL 64, both gave up);
//! random/random gave up after 75 s and about 5 700 datagrams a side.
//!
//! The machine is sans-IO like the others: it says which socket to open,
//! what to send from where, which to close, and who won; the caller owns
//! the sockets and the datagrams' contents (the tunnel's heartbeats).
//! Randomness comes from a seed; time from `now` and a [`UnixClock`].

mod driver;
#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;

use core::fmt;
use core::net::SocketAddrV4;

use crate::time::{self, Instant, UnixClock};

pub use driver::{BirthdaySockets, Finish};

/// Most extra sockets one machine can use.
pub const MAX_EXTRA_SOCKETS: u16 = 256;
/// Default extra sockets (`K`).
pub const DEFAULT_EXTRA_SOCKETS: u16 = 256;
/// Default pace: datagrams per second, opens and probes together.
pub const DEFAULT_RATE_PER_S: u32 = 100;
/// Default datagrams per round, opens included.
pub const DEFAULT_ROUND_BUDGET: u16 = 2048;
/// Default rounds before giving up.
pub const DEFAULT_ROUNDS: u8 = 3;
/// Default silence of the ordinary punch before escalating (ms).
pub const DEFAULT_SILENCE_MS: u64 = 3000;
/// Default grid of the shared clock that rounds start on (ms).
pub const DEFAULT_SLOT_MS: u64 = 5000;
/// Lowest port probed by default (NATs rarely map below it).
pub const DEFAULT_LOW_PORT: u16 = 1024;

/// Settings of a [`Birthday`] machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BirthdayConfig {
    /// The peer's public address and its known (tunnel) port.
    pub peer: SocketAddrV4,
    /// Extra sockets per round (`K`), at most [`MAX_EXTRA_SOCKETS`]; 0 makes
    /// this side probe only (a small device can still reach a hard peer).
    pub extra_sockets: u16,
    /// Datagrams per second, at least 1.
    pub rate_per_s: u32,
    /// Datagrams per round (opens + probes), at least `extra_sockets`.
    pub round_budget: u16,
    /// Rounds before giving up, at least 1.
    pub rounds: u8,
    /// Silence of the ordinary punch before the first round (ms).
    pub silence_ms: u64,
    /// Rounds start on multiples of this much unix time (ms), at least 1.
    pub slot_ms: u64,
    /// Lowest destination port probed (the range ends at 65535).
    pub low_port: u16,
}

impl BirthdayConfig {
    /// The defaults for a peer.
    pub fn new(peer: SocketAddrV4) -> Self {
        BirthdayConfig {
            peer,
            extra_sockets: DEFAULT_EXTRA_SOCKETS,
            rate_per_s: DEFAULT_RATE_PER_S,
            round_budget: DEFAULT_ROUND_BUDGET,
            rounds: DEFAULT_ROUNDS,
            silence_ms: DEFAULT_SILENCE_MS,
            slot_ms: DEFAULT_SLOT_MS,
            low_port: DEFAULT_LOW_PORT,
        }
    }

    /// How long one round sends (ms).
    pub fn round_ms(&self) -> u64 {
        u64::from(self.round_budget) * 1000 / u64::from(self.rate_per_s.max(1))
    }
}

/// A socket the machine talks about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Socket {
    /// The tunnel's own socket (bound to its known port).
    Main,
    /// Extra socket `i` (0-based, below the configured count).
    Extra(u16),
}

/// What the caller must do, from [`Birthday::poll_action`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Open extra socket `i` on an ephemeral port; if that fails, call
    /// [`Birthday::handle_open_failed`]. Its first datagram follows.
    Open(u16),
    /// Send one datagram (a heartbeat) from `from` to `to`.
    Send {
        /// The socket to send from.
        from: Socket,
        /// The destination.
        to: SocketAddrV4,
    },
    /// Close extra socket `i` now.
    Close(u16),
    /// The hole: run the tunnel on `socket`, to `peer`. Reported once,
    /// after the other extra sockets' `Close`s.
    Winner {
        /// The socket the reply arrived on.
        socket: Socket,
        /// Where it came from.
        peer: SocketAddrV4,
    },
    /// Every round ran out; every extra socket is closed.
    GaveUp,
}

/// How it ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The ordinary punch was heard before escalating: nothing was sent.
    NotNeeded,
    /// A hole was found.
    Winner {
        /// The socket the reply arrived on.
        socket: Socket,
        /// Where it came from.
        peer: SocketAddrV4,
        /// In which round (1-based).
        round: u8,
    },
    /// No reply in any round.
    GaveUp,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::NotNeeded => f.write_str("the ordinary punch worked"),
            Outcome::Winner {
                socket: Socket::Main,
                peer,
                round,
            } => write!(f, "birthday hole in round {round}: main socket to {peer}"),
            Outcome::Winner {
                socket: Socket::Extra(i),
                peer,
                round,
            } => write!(
                f,
                "birthday hole in round {round}: extra socket {i} to {peer}"
            ),
            Outcome::GaveUp => f.write_str("birthday punching gave up: no reply in any round"),
        }
    }
}

/// Counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Extra sockets opened.
    pub opened: u32,
    /// Extra sockets that failed to open.
    pub open_failed: u32,
    /// Datagrams sent from extra sockets.
    pub extra_sent: u32,
    /// Probes sent from the main socket.
    pub probes_sent: u32,
    /// Rounds started.
    pub rounds: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Listening to the ordinary punch since this instant.
    Quiet(Instant),
    /// Waiting for the round to begin at this instant.
    Waiting(Instant),
    /// Sending; the round ends at `end`.
    Running { end: Instant },
    /// Closing the open sockets, then reporting.
    Closing,
    /// Reported.
    Done,
}

/// A 256-bit set of extra-socket indices.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Set([u64; 4]);

impl Set {
    fn insert(&mut self, i: u16) {
        self.0[usize::from(i / 64) % 4] |= 1 << (i % 64);
    }
    fn remove(&mut self, i: u16) {
        self.0[usize::from(i / 64) % 4] &= !(1 << (i % 64));
    }
    fn contains(&self, i: u16) -> bool {
        i < MAX_EXTRA_SOCKETS && self.0[usize::from(i / 64)] & (1 << (i % 64)) != 0
    }
    fn first(&self) -> Option<u16> {
        self.0
            .iter()
            .enumerate()
            .find(|(_, w)| **w != 0)
            .map(|(k, w)| k as u16 * 64 + w.trailing_zeros() as u16)
    }
}

/// SplitMix64: small, seeded, good enough to pick ports.
#[derive(Clone, Copy, Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The birthday-punch machine.
///
/// Methods by kind:
/// * input: [`handle_datagram`](Self::handle_datagram),
///   [`handle_open_failed`](Self::handle_open_failed),
///   [`handle_timeout`](Self::handle_timeout);
/// * output: [`poll_action`](Self::poll_action),
///   [`poll_timeout`](Self::poll_timeout);
/// * getters: [`result`](Self::result), [`stats`](Self::stats),
///   [`is_open`](Self::is_open), [`round`](Self::round).
///
/// Call order: create it when the ordinary punch starts; pass it every
/// datagram from the peer's address, on the main socket and on each open
/// extra socket, with whether it is well-formed; after every input drain
/// `poll_action(now)` until `None`; sleep until `poll_timeout` (or a
/// datagram) and call `handle_timeout(now)`. A well-formed datagram on the
/// main socket before the first round means the ordinary punch worked: the
/// machine ends with [`Outcome::NotNeeded`] having sent nothing. The
/// machine is finished when `result` is `Some` and `poll_action` returns
/// `None`. Early, late or repeated calls are harmless; no datagram makes it
/// panic.
#[derive(Clone, Debug)]
pub struct Birthday {
    cfg: BirthdayConfig,
    clock: UnixClock,
    rng: Rng,
    state: State,
    round: u8,
    /// Datagrams sent this round.
    sent_in_round: u16,
    /// Extra sockets opened this round (the next index to open).
    next_open: u16,
    /// An opened socket whose first datagram is still due.
    first_send: Option<u16>,
    /// Extra sockets open now.
    open: Set,
    /// Earliest instant of the next paced datagram.
    next_send: Instant,
    /// Probe port permutation of this round: `low + (start + k·stride) mod range`.
    probe_start: u32,
    probe_stride: u32,
    probe_k: u32,
    /// Reported once the closes are out.
    outcome: Option<Outcome>,
    stats: Stats,
}

impl Birthday {
    /// A machine started at `now` (the ordinary punch's start), with the
    /// shared unix clock and a seed. Settings are clamped: at most
    /// [`MAX_EXTRA_SOCKETS`], a rate and rounds of at least 1, a budget of
    /// at least the socket count.
    pub fn new(mut cfg: BirthdayConfig, now: Instant, clock: UnixClock, seed: u64) -> Self {
        cfg.extra_sockets = cfg.extra_sockets.min(MAX_EXTRA_SOCKETS);
        cfg.rate_per_s = cfg.rate_per_s.max(1);
        cfg.round_budget = cfg.round_budget.max(cfg.extra_sockets).max(1);
        cfg.rounds = cfg.rounds.max(1);
        cfg.slot_ms = cfg.slot_ms.max(1);
        Birthday {
            cfg,
            clock,
            rng: Rng(seed),
            state: State::Quiet(now),
            round: 0,
            sent_in_round: 0,
            next_open: 0,
            first_send: None,
            open: Set::default(),
            next_send: now,
            probe_start: 0,
            probe_stride: 1,
            probe_k: 0,
            outcome: None,
            stats: Stats::default(),
        }
    }

    /// The settings in use (after clamping).
    pub fn config(&self) -> &BirthdayConfig {
        &self.cfg
    }

    // ---- input ----

    /// A datagram from `from` arrived on `on`; `well_formed` says whether
    /// it is a datagram of the tunnel's protocol. Returns whether it
    /// decided the machine (a win, or the ordinary punch heard).
    pub fn handle_datagram(
        &mut self,
        _now: Instant,
        on: Socket,
        from: SocketAddrV4,
        well_formed: bool,
    ) -> bool {
        if !well_formed || from.ip() != self.cfg.peer.ip() || self.outcome.is_some() {
            return false;
        }
        match (self.state, on) {
            (State::Done | State::Closing, _) => false,
            // Before the first round: the ordinary punch got through.
            (State::Quiet(_) | State::Waiting(_), Socket::Main) if self.round == 0 => {
                self.finish(Outcome::NotNeeded);
                true
            }
            (_, Socket::Extra(i)) if !self.open.contains(i) => false,
            (_, socket) => {
                if let Socket::Extra(i) = socket {
                    // The winner is the caller's now; the rest close.
                    self.open.remove(i);
                }
                self.finish(Outcome::Winner {
                    socket,
                    peer: from,
                    round: self.round,
                });
                true
            }
        }
    }

    /// Extra socket `i` could not be opened (its datagrams are skipped).
    pub fn handle_open_failed(&mut self, i: u16) {
        if self.open.contains(i) {
            self.open.remove(i);
            self.stats.opened = self.stats.opened.saturating_sub(1);
            self.stats.open_failed += 1;
            if self.first_send == Some(i) {
                self.first_send = None;
            }
        }
    }

    /// Advances phases: the first round after the silence, round ends, the
    /// give-up.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Quiet(since) => {
                let at = time::add_millis(since, self.cfg.silence_ms);
                if reached(now, at) {
                    self.state = State::Waiting(self.next_boundary(now));
                    self.handle_timeout(now);
                }
            }
            State::Waiting(at) => {
                if reached(now, at) {
                    self.start_round(now);
                }
            }
            State::Running { end } => {
                if reached(now, end) {
                    if self.round >= self.cfg.rounds {
                        self.finish(Outcome::GaveUp);
                    } else {
                        // Close this round's sockets; the next round
                        // starts on the shared grid.
                        self.state = State::Waiting(self.next_boundary(now));
                    }
                }
            }
            State::Closing | State::Done => {}
        }
    }

    // ---- output ----

    /// The next thing to do now, if any.
    pub fn poll_action(&mut self, now: Instant) -> Option<Action> {
        match self.state {
            State::Closing | State::Waiting(_) => {
                if let Some(i) = self.open.first() {
                    self.open.remove(i);
                    return Some(Action::Close(i));
                }
                if self.state == State::Closing {
                    self.state = State::Done;
                    return match self.outcome {
                        Some(Outcome::Winner { socket, peer, .. }) => {
                            Some(Action::Winner { socket, peer })
                        }
                        Some(Outcome::GaveUp) => Some(Action::GaveUp),
                        _ => None,
                    };
                }
                None
            }
            State::Running { end } => {
                if reached(now, end) {
                    self.handle_timeout(now);
                    return self.poll_action(now);
                }
                if let Some(i) = self.first_send.take() {
                    self.pace(now);
                    self.stats.extra_sent += 1;
                    return Some(Action::Send {
                        from: Socket::Extra(i),
                        to: self.cfg.peer,
                    });
                }
                if !reached(now, self.next_send) || self.sent_in_round >= self.cfg.round_budget {
                    return None;
                }
                if self.next_open < self.cfg.extra_sockets {
                    let i = self.next_open;
                    self.next_open += 1;
                    self.open.insert(i);
                    self.stats.opened += 1;
                    self.first_send = Some(i);
                    return Some(Action::Open(i));
                }
                self.pace(now);
                self.stats.probes_sent += 1;
                let to = SocketAddrV4::new(*self.cfg.peer.ip(), self.next_probe_port());
                Some(Action::Send {
                    from: Socket::Main,
                    to,
                })
            }
            State::Quiet(_) | State::Done => None,
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) or the next paced
    /// datagram is due; `None` when finished (or closes are still to be
    /// drained, which `poll_action` hands out at once).
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Quiet(since) => Some(time::add_millis(since, self.cfg.silence_ms)),
            State::Waiting(at) => Some(at),
            State::Running { end } => {
                if self.sent_in_round >= self.cfg.round_budget {
                    Some(end)
                } else {
                    Some(time::earliest(Some(self.next_send), Some(end)).unwrap_or(end))
                }
            }
            State::Closing | State::Done => None,
        }
    }

    // ---- getters ----

    /// How it ended, once it has.
    pub fn result(&self) -> Option<Outcome> {
        self.outcome
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Whether extra socket `i` is open (as far as the machine knows).
    pub fn is_open(&self, i: u16) -> bool {
        self.open.contains(i)
    }

    /// The current round (1-based; 0 before the first).
    pub fn round(&self) -> u8 {
        self.round
    }

    /// Whether any round has started (the tunnel may log the escalation).
    pub fn escalated(&self) -> bool {
        self.round > 0
    }

    // ---- internals ----

    fn finish(&mut self, outcome: Outcome) {
        self.outcome = Some(outcome);
        self.first_send = None;
        self.state = if outcome == Outcome::NotNeeded {
            State::Done
        } else {
            State::Closing
        };
    }

    /// Counts one datagram and spaces the next.
    fn pace(&mut self, now: Instant) {
        self.sent_in_round = self.sent_in_round.saturating_add(1);
        let gap_us = 1_000_000 / u64::from(self.cfg.rate_per_s);
        // Catch up after a late wake-up without bursting past the rate.
        let base = if reached(now, self.next_send) {
            now
        } else {
            self.next_send
        };
        self.next_send = time::add_micros(base, gap_us);
    }

    fn start_round(&mut self, now: Instant) {
        self.round += 1;
        self.stats.rounds = self.round;
        self.sent_in_round = 0;
        self.next_open = 0;
        self.first_send = None;
        self.next_send = now;
        let range = self.port_range();
        self.probe_start = (self.rng.next() % u64::from(range)) as u32;
        let mut stride = (self.rng.next() % u64::from(range)) as u32 | 1;
        while gcd(stride, range) != 1 {
            stride = (stride + 2) % range;
        }
        self.probe_stride = stride.max(1);
        self.probe_k = 0;
        self.state = State::Running {
            end: time::add_millis(now, self.cfg.round_ms()),
        };
    }

    fn port_range(&self) -> u32 {
        65536 - u32::from(self.cfg.low_port.max(1))
    }

    /// The next port of this round's permutation: distinct ports within a
    /// round, a fresh order each round.
    fn next_probe_port(&mut self) -> u16 {
        let range = self.port_range();
        let k = u64::from(self.probe_k);
        self.probe_k = self.probe_k.wrapping_add(1);
        let off =
            (u64::from(self.probe_start) + k * u64::from(self.probe_stride)) % u64::from(range);
        (u32::from(self.cfg.low_port.max(1)) + off as u32) as u16
    }

    /// The first multiple of `slot_ms` of unix time at or after `now`, as
    /// a monotonic instant.
    fn next_boundary(&self, now: Instant) -> Instant {
        let slot_us = i128::from(self.cfg.slot_ms) * 1000;
        let unix_us = i128::from(self.clock.unix_micros_at(now));
        let wait_us = (slot_us - unix_us.rem_euclid(slot_us)) % slot_us;
        time::add_micros(now, wait_us as u64)
    }
}

fn reached(now: Instant, at: Instant) -> bool {
    time::micros(now) >= time::micros(at)
}
