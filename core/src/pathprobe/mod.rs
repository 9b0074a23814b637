//! Path probing: learn the prime TTL from the path itself.
//!
//! A priming packet (the TCP punch's low-TTL SYN, the UDP tunnel's first
//! heartbeats) must pass every NAT on this side, so that their mappings
//! exist before the peer's packets arrive, and must die before it reaches
//! the peer's router, where a router without an input firewall would keep a
//! conntrack entry that moves the peer's port (SPEC §3). A fixed TTL cannot
//! do both on every path: TTL 3 reaches the peer's router when one ISP hop
//! separates two home routers, and is one short behind a carrier NAT on
//! some paths. [`PathProbe`] asks the path, as traceroute does: it sends one
//! small UDP datagram per TTL `1..=max_ttl` towards the peer's address
//! (not to its punch port), collects the ICMP time-exceeded offender of
//! each hop, and decides:
//!
//! * **the prime TTL is the hop of the first offender with a public
//!   address** ([`is_public`]): the first router beyond this side's NATs.
//!   The NATs a home or a carrier runs answer from their inside addresses
//!   (RFC 1918 behind a home router, RFC 6598 `100.64/10` behind a carrier
//!   NAT), so they are passed; the packet dies at the ISP.
//! * **never a hop that reaches the peer**: the lowest TTL whose probe drew
//!   an answer from the peer's own address (its router's port unreachable,
//!   or a time exceeded sent from that address) caps the TTL at one less.
//! * **the path stayed silent** (no public offender): the fallback TTL
//!   (the punch's default, 3), still capped below the peer.
//!
//! A `--ttl N` given by the user is an override: do not probe at all.
//!
//! The probes go to ports `base_port + ttl` (33435.. by default, the
//! traceroute range), never to the punch port, so a probe that does reach
//! the peer's router leaves a conntrack entry on a port pair no punch uses;
//! the ICMP error quotes the original UDP header, so the destination port
//! tells which TTL it answers.
//!
//! Lab (`wanem --hops N`, `tests/lab/scenarios/15-pathprobe.sh`): host →
//! home router (192.168.x.1, private) → ISP hop (public) → peer's router.
//! With one NAT the prime is 2 for any N; a `cgnat` site adds its carrier
//! (100.64.x.1) and the prime is 3; the smoltcp node behind its host's NAT
//! learns 3 and 4. Decided within 1–6 ms there (one round trip to the
//! first public router, all TTLs sent at once). With `--hops 1` the fixed
//! TTL 3 deadlocked the UDP tunnel on naked/naked in 10 of 10 runs; the
//! learned TTL 2 connected 10 of 10.
//!
//! This module is the sans-IO machine ([`PathProbe`]); [`net::IcmpProbe`]
//! is the socket capability a platform provides for it, and [`learn`] runs
//! one over the other.

mod driver;
pub mod net;
#[cfg(test)]
mod tests;

use core::fmt;
use core::net::{Ipv4Addr, SocketAddrV4};

use crate::time::{self, Instant};

pub use driver::{PROBE_PAYLOAD, learn, learn_with};

/// Highest TTL the machine can probe (the size of its hop table).
pub const MAX_PROBE_TTL: u8 = 16;
/// Default highest TTL probed: far enough past a home NAT, a carrier NAT
/// and a few privately addressed ISP routers.
pub const DEFAULT_MAX_TTL: u8 = 8;
/// Default number of rounds (a round resends the probes still unanswered).
pub const DEFAULT_ROUNDS: u8 = 3;
/// Default wait for answers after each round (ms).
pub const DEFAULT_ROUND_MS: u64 = 250;
/// Default base destination port: TTL `t` probes `base + t`.
pub const DEFAULT_BASE_PORT: u16 = 33434;
/// The TTL used when the path says nothing (the punch's default).
pub const FALLBACK_TTL: u8 = crate::punch::DEFAULT_PRIME_TTL;

/// Whether `ip` is a public unicast address: one that a router beyond this
/// side's NATs would answer from.
///
/// Not public: `0/8` (this network), `10/8`, `172.16/12`, `192.168/16`
/// (RFC 1918), `100.64/10` (RFC 6598 shared address space: carrier NATs),
/// `127/8` (loopback), `169.254/16` (link-local), `192.0.0/24` (IETF
/// protocol assignments, e.g. DS-Lite's B4/AFTR addresses, a carrier NAT),
/// `198.18/15` (benchmarking), `224/4` (multicast), `240/4` (reserved and
/// broadcast). The documentation ranges (`192.0.2/24`, `198.51.100/24`,
/// `203.0.113/24`) count as public: they stand for public addresses in
/// examples and in the NAT lab.
pub fn is_public(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0
        || a == 10
        || a == 127
        || a >= 224
        || (a == 100 && (64..128).contains(&b))
        || (a == 169 && b == 254)
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 168)
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (b == 18 || b == 19)))
}

/// Settings of a [`PathProbe`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeConfig {
    /// The peer's public address (the probes' destination).
    pub peer: Ipv4Addr,
    /// Highest TTL probed, 1..=[`MAX_PROBE_TTL`].
    pub max_ttl: u8,
    /// Rounds, at least 1.
    pub rounds: u8,
    /// Wait for answers after each round (ms).
    pub round_ms: u64,
    /// TTL `t` probes port `base_port + t`.
    pub base_port: u16,
    /// A port the probes must never use as destination (the peer's punch
    /// port, e.g. the tunnel's UDP port); the range moves past it.
    pub avoid_port: Option<u16>,
    /// The TTL when the path is silent.
    pub fallback_ttl: u8,
}

impl ProbeConfig {
    /// The defaults for a peer.
    pub fn new(peer: Ipv4Addr) -> Self {
        ProbeConfig {
            peer,
            max_ttl: DEFAULT_MAX_TTL,
            rounds: DEFAULT_ROUNDS,
            round_ms: DEFAULT_ROUND_MS,
            base_port: DEFAULT_BASE_PORT,
            avoid_port: None,
            fallback_ttl: FALLBACK_TTL,
        }
    }
}

/// One probe to send: a datagram with IP TTL `ttl` to `to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    /// IP TTL of the datagram.
    pub ttl: u8,
    /// Destination: the peer's address, port `base_port + ttl`.
    pub to: SocketAddrV4,
}

/// The ICMP error a probe drew, as the platform reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IcmpKind {
    /// Time exceeded in transit (type 11 code 0): a router at this hop.
    TimeExceeded,
    /// Destination unreachable (type 3) with its code (3: port).
    Unreachable(u8),
    /// Any other ICMP error (type, code).
    Other(u8, u8),
}

/// What one hop said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hop {
    /// Nothing yet.
    Silent,
    /// A router at this hop sent time exceeded from this address.
    Router(Ipv4Addr),
    /// The probe reached the peer's address (any answer from it).
    Peer,
    /// A router (at this hop or before) said unreachable.
    Unreachable(Ipv4Addr),
}

/// Why the prime TTL is what it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The first router with a public address is at hop `ttl`.
    FirstPublicRouter(Ipv4Addr),
    /// The peer was reached at hop `peer_hop`, at or before any public
    /// router (or the fallback): one hop short of it. `ttl` 0 means the
    /// peer is this side's first hop and priming is pointless.
    BelowPeer {
        /// The lowest TTL that reached the peer.
        peer_hop: u8,
    },
    /// No public router answered: the fallback TTL.
    Silent,
}

/// The decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The prime TTL to use (0: do not prime).
    pub ttl: u8,
    /// Why.
    pub reason: Reason,
    /// Hops that answered.
    pub answered: u8,
    /// Probes sent.
    pub sent: u16,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "prime TTL {}: ", self.ttl)?;
        match self.reason {
            Reason::FirstPublicRouter(ip) => {
                write!(f, "first public router {ip} at hop {}", self.ttl)?
            }
            Reason::BelowPeer { peer_hop } => {
                write!(f, "one short of the peer, reached at hop {peer_hop}")?
            }
            Reason::Silent => f.write_str("no public router answered, the default")?,
        }
        write!(
            f,
            " ({} probes, {} hops answered)",
            self.sent, self.answered
        )
    }
}

/// The path-probe machine.
///
/// Methods by kind:
/// * input: [`handle_icmp`](Self::handle_icmp),
///   [`handle_timeout`](Self::handle_timeout);
/// * output: [`poll_transmit`](Self::poll_transmit),
///   [`poll_timeout`](Self::poll_timeout);
/// * getters: [`result`](Self::result), [`hop`](Self::hop).
///
/// Call order: after `new` and after every input, drain `poll_transmit(now)`
/// (each probe is sent at once from one probe socket, with its TTL); pass
/// every ICMP error the socket reports to `handle_icmp`; sleep until
/// `poll_timeout` (or a report) and call `handle_timeout(now)`; stop when
/// `result` is `Some` (then `poll_timeout` is `None`). Early, late or
/// repeated calls are harmless; no report makes it panic.
#[derive(Clone, Debug)]
pub struct PathProbe {
    cfg: ProbeConfig,
    hops: [Hop; MAX_PROBE_TTL as usize],
    /// Rounds started so far.
    round: u8,
    /// Next TTL of the current round to send (its probes go back to back).
    next_ttl: u8,
    /// End of the current round's wait, once all its probes are out.
    round_end: Option<Instant>,
    sent: u16,
    result: Option<Outcome>,
}

impl PathProbe {
    /// A probe for `cfg`; the first round is due at once. `max_ttl` is
    /// clamped to 1..=[`MAX_PROBE_TTL`] and `rounds` to at least 1.
    pub fn new(mut cfg: ProbeConfig) -> Self {
        cfg.max_ttl = cfg.max_ttl.clamp(1, MAX_PROBE_TTL);
        cfg.rounds = cfg.rounds.max(1);
        // Keep the whole port range clear of the avoided port (and of 0).
        let span = u16::from(MAX_PROBE_TTL);
        if cfg.base_port > u16::MAX - span {
            cfg.base_port = DEFAULT_BASE_PORT;
        }
        if let Some(p) = cfg.avoid_port
            && p > cfg.base_port
            && p <= cfg.base_port + span
        {
            cfg.base_port = if p > span + 1 { p - span - 1 } else { p };
        }
        PathProbe {
            cfg,
            hops: [Hop::Silent; MAX_PROBE_TTL as usize],
            round: 0,
            next_ttl: 1,
            round_end: None,
            sent: 0,
            result: None,
        }
    }

    /// The settings in use (after clamping).
    pub fn config(&self) -> &ProbeConfig {
        &self.cfg
    }

    /// The destination of TTL `ttl`'s probe.
    pub fn target(&self, ttl: u8) -> SocketAddrV4 {
        SocketAddrV4::new(self.cfg.peer, self.cfg.base_port + u16::from(ttl))
    }

    /// The TTL whose probe went to `to`, if it is one of ours.
    fn ttl_of(&self, to: SocketAddrV4) -> Option<u8> {
        if *to.ip() != self.cfg.peer {
            return None;
        }
        let off = to.port().checked_sub(self.cfg.base_port)?;
        (1..=u16::from(self.cfg.max_ttl))
            .contains(&off)
            .then_some(off as u8)
    }

    // ---- input ----

    /// An ICMP error for the probe sent to `to` (the original destination,
    /// as the platform reports it), from router `offender`. Returns whether
    /// it was one of ours.
    pub fn handle_icmp(
        &mut self,
        _now: Instant,
        to: SocketAddrV4,
        offender: Ipv4Addr,
        kind: IcmpKind,
    ) -> bool {
        let Some(ttl) = self.ttl_of(to) else {
            return false;
        };
        if self.result.is_some() {
            return true;
        }
        let hop = if offender == self.cfg.peer {
            Hop::Peer
        } else {
            match kind {
                IcmpKind::TimeExceeded => Hop::Router(offender),
                _ => Hop::Unreachable(offender),
            }
        };
        let slot = &mut self.hops[usize::from(ttl - 1)];
        // The peer's answer is the strongest fact about a hop; a router's
        // time exceeded beats an unreachable.
        let keep = matches!(
            (*slot, hop),
            (Hop::Peer, _) | (Hop::Router(_), Hop::Unreachable(_))
        );
        if !keep {
            *slot = hop;
        }
        if self.settled() {
            self.finish();
        }
        true
    }

    /// Starts the next round, or decides, once the current wait is over.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.result.is_some() {
            return;
        }
        if let Some(end) = self.round_end
            && time::micros(now) >= time::micros(end)
        {
            self.round_end = None;
            if self.round >= self.cfg.rounds {
                self.finish();
            } else {
                self.next_ttl = 1;
            }
        }
    }

    // ---- output ----

    /// The next probe to send now, if any.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Probe> {
        if self.result.is_some() || self.round_end.is_some() {
            return None;
        }
        let limit = self.useful_limit();
        if self.next_ttl == 1 {
            self.round += 1;
            // A later round with nothing left to ask decides at once.
            if self.round > 1 && (1..=limit).all(|t| self.hop(t) != Hop::Silent) {
                self.finish();
                return None;
            }
        }
        while self.next_ttl <= limit {
            let ttl = self.next_ttl;
            self.next_ttl += 1;
            // Later rounds resend only what is still silent.
            if self.round == 1 || self.hops[usize::from(ttl - 1)] == Hop::Silent {
                self.sent = self.sent.saturating_add(1);
                return Some(Probe {
                    ttl,
                    to: self.target(ttl),
                });
            }
        }
        self.next_ttl = u8::MAX;
        self.round_end = Some(time::add_millis(now, self.cfg.round_ms));
        None
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next needed; `None`
    /// once decided. A probe still due is due now (the round's start).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.result.is_some() {
            return None;
        }
        self.round_end
    }

    // ---- getters ----

    /// The decision, once made.
    pub fn result(&self) -> Option<Outcome> {
        self.result
    }

    /// What hop `ttl` (1-based) said so far.
    pub fn hop(&self, ttl: u8) -> Hop {
        match ttl {
            1..=MAX_PROBE_TTL => self.hops[usize::from(ttl - 1)],
            _ => Hop::Silent,
        }
    }

    // ---- decision ----

    /// TTLs above the first hop that is public or the peer tell nothing new.
    fn useful_limit(&self) -> u8 {
        self.first_decisive().unwrap_or(self.cfg.max_ttl)
    }

    /// The lowest hop that is a public router or the peer.
    fn first_decisive(&self) -> Option<u8> {
        (1..=self.cfg.max_ttl).find(|&t| match self.hop(t) {
            Hop::Router(ip) => is_public(ip),
            Hop::Peer => true,
            _ => false,
        })
    }

    /// Decided before the rounds run out: the first decisive hop is known
    /// and every hop below it answered, so no later answer can move it.
    fn settled(&self) -> bool {
        match self.first_decisive() {
            Some(h) => (1..h).all(|t| self.hop(t) != Hop::Silent),
            None => false,
        }
    }

    fn finish(&mut self) {
        let peer_hop = (1..=self.cfg.max_ttl).find(|&t| self.hop(t) == Hop::Peer);
        let public = (1..=self.cfg.max_ttl).find_map(|t| match self.hop(t) {
            Hop::Router(ip) if is_public(ip) => Some((t, ip)),
            _ => None,
        });
        let (ttl, reason) = match (public, peer_hop) {
            (Some((t, ip)), Some(p)) if t < p => (t, Reason::FirstPublicRouter(ip)),
            (Some((t, ip)), None) => (t, Reason::FirstPublicRouter(ip)),
            (_, Some(p)) if p <= self.cfg.fallback_ttl || public.is_some() => {
                (p - 1, Reason::BelowPeer { peer_hop: p })
            }
            _ => (self.cfg.fallback_ttl, Reason::Silent),
        };
        let answered = self.hops.iter().filter(|h| **h != Hop::Silent).count() as u8;
        self.result = Some(Outcome {
            ttl,
            reason,
            answered,
            sent: self.sent,
        });
    }
}
