//! TCP hole punching by a shared clock: the sans-IO punch machine.
//!
//! Both sides spray SYNs between the same schedule ports (local port =
//! remote port) so that they cross and open by TCP simultaneous open, then
//! agree on one connection ([`election`]).
//!
//! ## What the machine does
//! * Sprays from the moment it starts, over the union of the ports of every
//!   candidate bucket for the skew bound, rolling over as time passes, until
//!   a connection wins or the timeout passes.
//! * Each *arm* of a port is a **prime** — a SYN with a small IP TTL that
//!   opens this side's NAT mapping but expires before the peer's router —
//!   followed at once by a **fire**: a fresh SYN at the normal TTL from a
//!   new socket on the same port. The two go back to back because a router
//!   that sees the peer's SYN between them pins its conntrack entry to the
//!   prime's sequence number (SYN_SENT2) and then drops the fire as invalid;
//!   and the prime needs its own socket because the ICMP time-exceeded it
//!   provokes kills the socket that sent it (the fire's socket ignores that
//!   ICMP: it quotes another sequence number).
//! * A fired SYN is left to the stack, which retransmits it, until it fails
//!   (RST, refused, unreachable); then the port is armed again at its next
//!   clock slot (see [`PunchConfig::jitter_percent`]): sides whose clocks
//!   agree fire each port at the same instant, skewed ones make every port
//!   and round an independent try at crossing the peer's SYNs. The machine
//!   never asks for a reset: losers are closed with FIN, and closing a socket
//!   that is still in SYN-SENT sends nothing.
//! * With [`Timing::Reference`] it behaves like `tcp_punch.py`: one bucket,
//!   sleeps until the rendezvous but at most ten seconds, sprays for five
//!   seconds, no priming, and the first connection is kept. A refused port
//!   is re-armed at its clock slot like above, not on a fixed 50 ms pass:
//!   lock-step with `tcp_punch.py`'s own 50 ms passes could refuse every
//!   SYN for the whole window (lab scenario 72).
//!
//! ## Call order (driver contract)
//! 1. [`PunchMachine::new`] with the config, `now` and the unix time.
//! 2. Loop (the generic [`PunchDriver::poll`] does exactly this, and
//!    [`punch`] runs it with [`Wait::wait`](crate::net::Wait::wait) in
//!    between):
//!    * **sockets first**: for every port in
//!      [`connecting_ports`](PunchMachine::connecting_ports) report its
//!      socket's status with [`handle_status`](PunchMachine::handle_status)
//!      and the attempt that socket belongs to; for every open port with
//!      [`read_len`](PunchMachine::read_len) > 0, read at most that many
//!      bytes and pass them to [`handle_data`](PunchMachine::handle_data)
//!      with `now`,
//!      or report end of stream or an error with
//!      [`handle_closed`](PunchMachine::handle_closed);
//!    * **then timers**: [`handle_timeout`](PunchMachine::handle_timeout);
//!    * **then actions**: drain [`poll_action`](PunchMachine::poll_action);
//!      skip a `Connect` whose attempt is no longer
//!      [`is_current`](PunchMachine::is_current), never replace a socket that
//!      made progress (adopt it as the new attempt), and report failures at
//!      once with [`handle_bind_error`](PunchMachine::handle_bind_error) or
//!      [`handle_connect_error`](PunchMachine::handle_connect_error);
//!    * stop when [`outcome`](PunchMachine::outcome) is `Some` (after the
//!      actions: they close the losers);
//!    * otherwise, if nothing progressed, wait for socket readiness or
//!      [`poll_timeout`](PunchMachine::poll_timeout).
//!
//! Sockets before timers matters: a SYN that crossed ours since the last
//! look must be seen before a timer replaces the socket.
//!
//! Calling `handle_timeout` early or twice is harmless. No method panics on
//! anything the peer sends. The action and event queues are sized for one
//! round of this loop; a driver that does not drain them every round trips
//! a `debug_assert!` (release builds drop the oldest).
//!
//! ## Tests
//! `tests.rs` steps one machine by hand; `sim_tests.rs` runs two machines
//! through two [`PunchDriver`]s over `sim.rs`, a deterministic two-node
//! network on a virtual clock (SYN crossing and simultaneous open, RST to
//! a SYN that finds no socket, a router dropping unsolicited SYNs, a dead
//! direction of one connection). All of them run in well under a second.

pub mod election;

mod driver;

pub use driver::{PunchDriver, PunchDriverError, PunchPoll, punch};
pub use election::{Election, Part};

use core::fmt;
use core::net::Ipv4Addr;

use heapless::{Deque, Vec};

use crate::net::{ConnectStatus, NetError};
use crate::schedule::{self, BucketPorts, MAX_CANDIDATES, NUM_PORTS, UnixTime};
use crate::time::{self, Instant};
use election::{CHOSEN, CONFIRMED, HELLO_LEN};

/// Most ports sprayed at once (every port of every candidate bucket).
pub const MAX_SLOTS: usize = MAX_CANDIDATES * NUM_PORTS;
/// Most bytes of election traffic read from one connection: hello + `$`
/// (follower) or hello + `!` (leader).
pub const MAX_ELECTION_BYTES: usize = HELLO_LEN + 1;
/// Room for the events of one driver round: per slot at most two (a
/// failure or an open, and a skip), plus the bucket change and the part.
const MAX_EVENTS: usize = 2 * MAX_SLOTS + 8;
/// Default time the leader gives the follower to confirm a choice before
/// it proposes another connection too (see [`election`]).
pub const DEFAULT_CONFIRM_MS: u64 = 1_000;
/// Default spray interval.
pub const DEFAULT_INTERVAL_MS: u64 = 50;
/// Default give-up time: more than two windows, so any two starts within
/// it meet.
pub const DEFAULT_TIMEOUT_MS: u64 = 120_000;
/// Default TTL of priming SYNs. See the README's lab measurements: it must
/// cover this side's NAT layers (one, or two behind a carrier NAT) and expire
/// before the peer's router.
pub const DEFAULT_PRIME_TTL: u8 = 3;
/// TTL of everything else.
pub const DEFAULT_NORMAL_TTL: u8 = 64;
/// Default fire jitter: ±50 % of the interval.
pub const DEFAULT_JITTER_PERCENT: u8 = 50;
/// How long `tcp_punch.py` sprays after its rendezvous.
pub const REFERENCE_SPRAY_MS: u64 = 5_000;
/// The longest `tcp_punch.py` sleeps before spraying.
pub const REFERENCE_MAX_SLEEP_MS: u64 = 10_000;

/// When and what to spray.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timing {
    /// punchwire: at once, every candidate bucket, until the timeout.
    Continuous,
    /// `tcp_punch.py`: one bucket, from its rendezvous, for five seconds.
    Reference,
}

/// Options of one punch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PunchConfig {
    /// The peer's public IPv4.
    pub peer: Ipv4Addr,
    /// Bound on the clock difference between the sides, in ms.
    pub max_clock_error_ms: i64,
    /// Spray interval in ms.
    pub interval_ms: u64,
    /// Give up after this many ms (Continuous timing).
    pub timeout_ms: u64,
    /// TTL of priming SYNs; 0 disables priming.
    pub prime_ttl: u8,
    /// TTL of fired SYNs and of the connection.
    pub normal_ttl: u8,
    /// How the winner is chosen.
    pub election: Election,
    /// Continuous or reference timing.
    pub timing: Timing,
    /// Spread of the re-arms, in percent of the interval (0: exactly one
    /// interval after a failure). With a spread, a failed port is re-armed
    /// at its next *clock slot*: unix time is cut into slots of one
    /// interval, and port `p` fires at a phase within slot `k` that is a
    /// hash of `(p, k)`, no earlier than `interval × (1 − spread)` after the
    /// failure. Two sides whose clocks agree fire each port at the same
    /// instant, so their SYNs cross at once; with skewed clocks the phases
    /// are unrelated each round, and the 16–32 ports are independent tries.
    pub jitter_percent: u8,
    /// How long the leader waits for the follower's confirmation of a
    /// choice before it proposes another connection as well (ms; the
    /// earlier proposals stay open, and the first confirmation wins).
    pub confirm_ms: u64,
}

impl PunchConfig {
    /// Defaults for punching `peer` with the nonce election.
    pub fn new(peer: Ipv4Addr, nonce: u64) -> Self {
        PunchConfig {
            peer,
            max_clock_error_ms: schedule::MAX_CLOCK_ERROR * 1000,
            interval_ms: DEFAULT_INTERVAL_MS,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            prime_ttl: DEFAULT_PRIME_TTL,
            normal_ttl: DEFAULT_NORMAL_TTL,
            election: Election::Nonce(nonce),
            timing: Timing::Continuous,
            jitter_percent: DEFAULT_JITTER_PERCENT,
            confirm_ms: DEFAULT_CONFIRM_MS,
        }
    }
}

/// Why a punch configuration is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// The skew bound needs more than [`MAX_CANDIDATES`] buckets.
    SkewBound,
    /// The spray interval is zero.
    Interval,
    /// Both public addresses are equal: nobody would lead.
    SameAddress,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::SkewBound => schedule::SkewError::OutOfRange.fmt(f),
            ConfigError::Interval => f.write_str("the spray interval must be at least 1 ms"),
            ConfigError::SameAddress => f.write_str(
                "--public-ip equals the peer's address, so neither side would lead; leave it out to use the nonce election",
            ),
        }
    }
}

/// Why a punch ended without a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PunchError {
    /// No connection within the timeout (or the reference spray window).
    Timeout,
    /// Connections opened but the peer never completed the election.
    ElectionTimeout,
    /// Not one schedule port could be bound.
    NoBindablePort,
    /// The chosen connection closed before it could be used.
    PeerClosed,
}

impl fmt::Display for PunchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PunchError::Timeout => "no connection before the timeout",
            PunchError::ElectionTimeout => {
                "connected, but the peer never chose a connection (is it punchwire with the same election? use --reference for tcp_punch.py)"
            }
            PunchError::NoBindablePort => "none of the schedule ports could be bound",
            PunchError::PeerClosed => "the peer closed the connection during the election",
        })
    }
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Drop any socket on `port` (it is in SYN-SENT or closed, so dropping
    /// sends nothing). If `prime_ttl` is non-zero, open a socket bound to
    /// `port` with address reuse, set IP TTL `prime_ttl`, connect to
    /// `peer:port` and drop it at once (silently: it is in SYN-SENT). Then
    /// open a fresh socket the same way and connect it at TTL `ttl`.
    ///
    /// Skip it if [`PunchMachine::is_current`] says the attempt is stale
    /// (the port connected some other way since it was queued), and report
    /// the socket's progress with this `attempt`.
    Connect {
        /// Local and remote port.
        port: u16,
        /// Which attempt on this port this is.
        attempt: u32,
        /// TTL of the priming SYN, 0 for none.
        prime_ttl: u8,
        /// TTL of the fired SYN and of the connection.
        ttl: u8,
    },
    /// Write these bytes on the connection of `port`.
    Send {
        /// The port.
        port: u16,
        /// Bytes (a hello, `$` or `!`).
        bytes: Vec<u8, MAX_ELECTION_BYTES>,
    },
    /// Close the socket of `port` gracefully (FIN; nothing if not
    /// connected).
    Close {
        /// The port.
        port: u16,
    },
}

/// Things worth telling the user, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A port could not be bound and is skipped.
    PortSkipped {
        /// The port.
        port: u16,
        /// Why.
        error: NetError,
    },
    /// The candidate buckets changed.
    Buckets {
        /// Oldest candidate.
        first: i64,
        /// Newest candidate.
        last: i64,
    },
    /// A connection opened.
    Connected {
        /// Its port.
        port: u16,
    },
    /// A connect failed and will be re-armed (first failure per port only).
    Refused {
        /// Its port.
        port: u16,
        /// Why.
        error: NetError,
    },
    /// This side's part in the election became known.
    Elected(Part),
}

/// The connection that won.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Winner {
    /// Local (and remote) port.
    pub port: u16,
    /// This side's part.
    pub part: Part,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Not armed yet, or failed: arm (prime and fire) at `at`.
    Idle { at: Instant },
    /// A normal SYN is out; the stack retransmits it.
    Fired,
    /// The peer's SYN arrived; the handshake is finishing.
    Handshaking,
    /// Established; election traffic.
    Open,
    /// Could not be bound; never armed again.
    Skipped,
    /// Finished with (closed by us or by the peer); never armed again.
    Done,
}

#[derive(Clone, Debug)]
struct Slot {
    port: u16,
    phase: Phase,
    /// Newest bucket in which this port is a candidate.
    bucket: i64,
    /// Election bytes read so far.
    rx: Vec<u8, MAX_ELECTION_BYTES>,
    /// Whether a failure was reported already (to keep logs short).
    refused_once: bool,
    /// The leader wrote `$` on this connection.
    proposed: bool,
    /// Bumped by every connect and by every change that makes queued
    /// connects and pending status reports obsolete.
    attempt: u32,
}

/// The punch state machine. See the module docs for the call order.
pub struct PunchMachine {
    config: PunchConfig,
    start: Instant,
    unix_start: UnixTime,
    /// First moment to spray and the deadline, on the monotonic clock.
    spray_from: Instant,
    deadline: Instant,
    slots: Vec<Slot, MAX_SLOTS>,
    actions: Deque<Action, { 2 * MAX_SLOTS + 8 }>,
    events: Deque<Event, MAX_EVENTS>,
    part: Option<Part>,
    /// A connection reached `Open` (for the error on timeout).
    ever_open: bool,
    /// Leader: the newest proposal (`$` written) and when its wait for the
    /// confirmation ends.
    proposal: Option<(u16, Instant)>,
    outcome: Option<Result<Winner, PunchError>>,
    buckets: Option<(i64, i64)>,
    /// Reference timing: the one bucket.
    fixed_bucket: Option<i64>,
    next_tick: Instant,
}

impl PunchMachine {
    /// A machine started at monotonic `now`, when this side's clock says
    /// `unix_now` (already offset by any `--clock-offset`).
    pub fn new(config: PunchConfig, now: Instant, unix_now: UnixTime) -> Result<Self, ConfigError> {
        schedule::candidate_buckets(unix_now, config.max_clock_error_ms)
            .map_err(|_| ConfigError::SkewBound)?;
        if config.interval_ms == 0 {
            return Err(ConfigError::Interval);
        }
        if let Election::PublicIp { mine, peer } = config.election
            && mine == peer
        {
            return Err(ConfigError::SameAddress);
        }
        let (spray_from, deadline, fixed_bucket) = match config.timing {
            Timing::Continuous => (now, time::add_millis(now, config.timeout_ms), None),
            Timing::Reference => {
                let r = schedule::reference_start(unix_now);
                // It sleeps until the rendezvous, but never more than
                // MIN_RUN_WINDOW: two copies started 7 s apart never meet.
                let wait = (r
                    .rendezvous
                    .saturating_mul(1000)
                    .saturating_sub(unix_now.as_millis()))
                .clamp(0, REFERENCE_MAX_SLEEP_MS as i64) as u64;
                let from = time::add_millis(now, wait);
                (
                    from,
                    time::add_millis(from, REFERENCE_SPRAY_MS),
                    Some(r.bucket),
                )
            }
        };
        let mut m = PunchMachine {
            config,
            start: now,
            unix_start: unix_now,
            spray_from,
            deadline,
            slots: Vec::new(),
            actions: Deque::new(),
            events: Deque::new(),
            part: config.election.part_up_front(),
            ever_open: false,
            proposal: None,
            outcome: None,
            buckets: None,
            fixed_bucket,
            next_tick: spray_from,
        };
        if let Some(part) = m.part {
            m.event(Event::Elected(part));
        }
        m.handle_timeout(now);
        Ok(m)
    }

    /// The configuration.
    pub fn config(&self) -> &PunchConfig {
        &self.config
    }

    /// This side's unix time at monotonic `now`.
    pub fn unix_time(&self, now: Instant) -> UnixTime {
        let elapsed_ms = time::micros_between(self.start, now) / 1000;
        self.unix_start.offset_millis(elapsed_ms as i64)
    }

    /// When spraying starts (later than `new`'s `now` only in reference
    /// timing).
    pub fn spray_from(&self) -> Instant {
        self.spray_from
    }

    /// The result, once there is one.
    pub fn outcome(&self) -> Option<Result<Winner, PunchError>> {
        self.outcome
    }

    /// The next thing for the driver to do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next thing to tell the user.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When the machine next needs [`handle_timeout`](Self::handle_timeout).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.outcome.is_some() {
            return None;
        }
        let mut t = Some(self.deadline);
        t = time::earliest(t, Some(self.next_tick));
        if let Some((_, until)) = self.proposal {
            t = time::earliest(t, Some(until));
        }
        for s in &self.slots {
            if let Phase::Idle { at } = s.phase {
                t = time::earliest(t, Some(at));
            }
        }
        t
    }

    /// Ports whose connect is in progress: report their status.
    pub fn connecting_ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.slots
            .iter()
            .filter(|s| matches!(s.phase, Phase::Fired | Phase::Handshaking))
            .map(|s| s.port)
    }

    /// Ports with an open connection.
    pub fn open_ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.slots
            .iter()
            .filter(|s| s.phase == Phase::Open)
            .map(|s| s.port)
    }

    /// How many bytes of election traffic to read now from `port` (0: do
    /// not read). Reading no more than this leaves the application's bytes
    /// in the socket for whoever uses the winner.
    pub fn read_len(&self, port: u16) -> usize {
        if self.outcome.is_some() {
            return 0;
        }
        let Some(slot) = self.slot(port) else {
            return 0;
        };
        if slot.phase != Phase::Open {
            return 0;
        }
        // The follower reads the choice after the hello, the leader the
        // confirmation on the connections it proposed.
        let choice = match self.part {
            Some(Part::Follower) => 1,
            Some(Part::Leader) if slot.proposed => 1,
            _ => 0,
        };
        let want = match self.config.election {
            Election::Nonce(_) => HELLO_LEN + choice,
            Election::PublicIp { .. } => choice,
            Election::FirstConnected => 0,
        };
        want.saturating_sub(slot.rx.len())
    }

    fn slot(&self, port: u16) -> Option<&Slot> {
        self.slots.iter().find(|s| s.port == port)
    }

    fn slot_index(&self, port: u16) -> Option<usize> {
        self.slots.iter().position(|s| s.port == port)
    }

    fn event(&mut self, e: Event) {
        // One round of the driver contract queues at most MAX_EVENTS, and
        // the driver drains them every round: a full queue is a driver
        // that does not (caught here in debug builds and tests). Release
        // builds lose the oldest, as the events are advisory.
        debug_assert!(
            !self.events.is_full(),
            "punch event queue full: the driver must drain poll_event"
        );
        if self.events.is_full() {
            self.events.pop_front();
        }
        let _ = self.events.push_back(e);
    }

    fn act(&mut self, a: Action) {
        // The queue holds two actions per slot plus a few, and every path
        // that pushes is bounded by that between two drains: a full queue
        // is a driver that does not drain it (the driver contract), which
        // debug builds and the tests catch here. Release builds then lose
        // the oldest action rather than panic.
        debug_assert!(
            !self.actions.is_full(),
            "punch action queue full: the driver must drain poll_action"
        );
        if self.actions.is_full() {
            self.actions.pop_front();
        }
        let _ = self.actions.push_back(a);
    }

    fn primes(&self) -> bool {
        self.config.prime_ttl > 0 && self.config.timing == Timing::Continuous
    }

    /// Arms a port now: prime (when priming is on) and fire.
    fn arm(&mut self, i: usize) {
        let prime_ttl = if self.primes() {
            self.config.prime_ttl
        } else {
            0
        };
        self.slots[i].phase = Phase::Fired;
        let slot = &mut self.slots[i];
        slot.attempt = slot.attempt.wrapping_add(1);
        let (port, attempt) = (slot.port, slot.attempt);
        let ttl = self.config.normal_ttl;
        self.act(Action::Connect {
            port,
            attempt,
            prime_ttl,
            ttl,
        });
    }

    /// When to re-arm `port` after a failure at `now` (see
    /// [`PunchConfig::jitter_percent`]).
    fn rearm_at(&self, port: u16, now: Instant) -> Instant {
        let interval = self.config.interval_ms.max(1) as i64;
        let spread = interval * i64::from(self.config.jitter_percent.min(100)) / 100;
        if spread == 0 {
            return time::add_millis(now, interval as u64);
        }
        let unix = self.unix_time(now).as_millis();
        // Saturating: a clock near the ends of i64 (a huge --clock-offset)
        // must not overflow.
        let earliest = unix.saturating_add(interval - spread);
        let first = earliest.div_euclid(interval);
        let target = (first..first.saturating_add(2))
            .map(|k| {
                k.saturating_mul(interval)
                    .saturating_add(slot_phase(port, k, interval))
            })
            .find(|&t| t >= earliest)
            .unwrap_or(earliest);
        time::add_millis(now, target.saturating_sub(unix).max(0) as u64)
    }

    /// Whether a queued `Connect` (or a socket's report) for `attempt` on
    /// `port` still matters.
    pub fn is_current(&self, port: u16, attempt: u32) -> bool {
        self.outcome.is_none() && self.slot(port).is_some_and(|s| s.attempt == attempt)
    }

    /// Advances timers: rolls buckets, arms idle ports, fires primed ones,
    /// ends the punch at the deadline.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.outcome.is_some() {
            return;
        }
        if time::micros(now) >= time::micros(self.deadline) {
            let err = if self.ever_open {
                PunchError::ElectionTimeout
            } else {
                PunchError::Timeout
            };
            self.finish(Err(err));
            return;
        }
        if let Some((_, until)) = self.proposal
            && time::micros(now) >= time::micros(until)
        {
            // Not confirmed in time: propose another connection as well.
            self.propose(now);
        }
        if time::micros(now) < time::micros(self.spray_from) {
            return;
        }
        if time::micros(now) >= time::micros(self.next_tick) {
            self.roll_buckets(now);
            self.next_tick = time::add_millis(now, self.config.interval_ms);
        }
        for i in 0..self.slots.len() {
            match self.slots[i].phase {
                Phase::Idle { at } if time::micros(now) >= time::micros(at) => self.arm(i),
                _ => {}
            }
        }
        if !self.slots.is_empty() && self.slots.iter().all(|s| s.phase == Phase::Skipped) {
            self.finish(Err(PunchError::NoBindablePort));
        }
    }

    /// Recomputes the candidate ports for this side's unix time at `now`.
    fn roll_buckets(&mut self, now: Instant) {
        let (first, last) = match self.fixed_bucket {
            Some(b) => (b, b),
            None => {
                let t = self.unix_time(now);
                match schedule::candidate_buckets(t, self.config.max_clock_error_ms) {
                    Ok(r) => (*r.start(), *r.end()),
                    // Validated in new(); keep the current set if it ever fails.
                    Err(_) => return,
                }
            }
        };
        if self.buckets == Some((first, last)) {
            return;
        }
        self.buckets = Some((first, last));
        self.event(Event::Buckets { first, last });
        // Ports of buckets that fell out of the window stop being sprayed;
        // open connections stay.
        let mut i = 0;
        while i < self.slots.len() {
            let s = &self.slots[i];
            let stale = s.bucket < first;
            let keep = matches!(s.phase, Phase::Open | Phase::Handshaking);
            if stale && !keep {
                let port = s.port;
                let skipped = s.phase == Phase::Skipped;
                self.slots.swap_remove(i);
                if !skipped {
                    self.act(Action::Close { port });
                }
            } else {
                i += 1;
            }
        }
        for b in first..=last {
            let ports = BucketPorts::new(b).ports;
            for &port in ports.as_slice() {
                if let Some(i) = self.slot_index(port) {
                    let s = &mut self.slots[i];
                    s.bucket = s.bucket.max(b);
                } else {
                    let slot = Slot {
                        port,
                        phase: Phase::Idle { at: now },
                        bucket: b,
                        rx: Vec::new(),
                        refused_once: false,
                        proposed: false,
                        attempt: 0,
                    };
                    // Capacity is every port of MAX_CANDIDATES buckets. Open
                    // connections of buckets that fell out of the window are
                    // kept while they may still win; when the new bucket's
                    // ports need their room, the oldest such connection (one
                    // not proposed, if any) gives way: a full table always
                    // holds one, since the window has at most MAX_SLOTS ports.
                    if self.slots.is_full()
                        && let Some(i) = self.evictable(first)
                    {
                        let port = self.slots[i].port;
                        self.slots.swap_remove(i);
                        self.act(Action::Close { port });
                    }
                    let pushed = self.slots.push(slot);
                    debug_assert!(pushed.is_ok(), "more schedule ports than MAX_SLOTS");
                }
            }
        }
    }

    /// A slot of a bucket older than `first` to make room, not a proposed
    /// one if there is a choice; the oldest bucket first.
    fn evictable(&self, first: i64) -> Option<usize> {
        let stale = |s: &Slot| s.bucket < first;
        (0..self.slots.len())
            .filter(|&i| stale(&self.slots[i]))
            .min_by_key(|&i| (self.slots[i].proposed, self.slots[i].bucket))
    }

    /// Binding the port for a `Connect` failed: the port is skipped for
    /// the rest of the punch (another program holds it). `NoBuffers` is
    /// the exception: the backend's socket pool is empty for now (a
    /// microcontroller has fewer sockets than a punch over two buckets has
    /// ports), so the port is re-armed like a failed connect and gets a
    /// socket when another port's is released.
    pub fn handle_bind_error(&mut self, port: u16, attempt: u32, error: NetError, now: Instant) {
        if !self.is_current(port, attempt) {
            return;
        }
        let Some(i) = self.slot_index(port) else {
            return;
        };
        if error == NetError::NoBuffers {
            self.failed(i, error, now);
            return;
        }
        self.slots[i].phase = Phase::Skipped;
        self.event(Event::PortSkipped { port, error });
        self.handle_timeout(now);
    }

    /// Starting the connect of a `Connect` action failed (after the bind):
    /// handled like a failed connect, re-armed.
    pub fn handle_connect_error(&mut self, port: u16, attempt: u32, error: NetError, now: Instant) {
        if !self.is_current(port, attempt) {
            return;
        }
        let Some(i) = self.slot_index(port) else {
            return;
        };
        self.failed(i, error, now);
    }

    fn failed(&mut self, i: usize, error: NetError, now: Instant) {
        let port = self.slots[i].port;
        if !self.slots[i].refused_once {
            self.slots[i].refused_once = true;
            self.event(Event::Refused { port, error });
        }
        // Both timings re-arm at the port's clock slot. (Reference timing
        // used to reconnect on the next 50 ms pass, like tcp_punch.py; two
        // such loops at an unlucky offset refused each other for the whole
        // window: see sim_tests::reference_mode_meets_tcp_punch_py.)
        let at = self.rearm_at(self.slots[i].port, now);
        self.slots[i].phase = Phase::Idle { at };
    }

    /// The status of a port whose connect is in progress.
    pub fn handle_status(&mut self, port: u16, attempt: u32, status: ConnectStatus, now: Instant) {
        if !self.is_current(port, attempt) {
            return;
        }
        let Some(i) = self.slot_index(port) else {
            return;
        };
        if !matches!(self.slots[i].phase, Phase::Fired | Phase::Handshaking) {
            return;
        }
        match status {
            ConnectStatus::Pending => {}
            ConnectStatus::Handshaking => self.slots[i].phase = Phase::Handshaking,
            ConnectStatus::Failed(e) => self.failed(i, e, now),
            ConnectStatus::Connected => self.opened(i, now),
        }
    }

    fn opened(&mut self, i: usize, now: Instant) {
        let port = self.slots[i].port;
        self.slots[i].phase = Phase::Open;
        // Connects still queued for this port must not replace it.
        self.slots[i].attempt = self.slots[i].attempt.wrapping_add(1);
        self.ever_open = true;
        self.event(Event::Connected { port });
        if let Some(hello) = self.config.election.hello() {
            let mut bytes = Vec::new();
            let _ = bytes.extend_from_slice(&hello);
            self.act(Action::Send { port, bytes });
        }
        match self.part {
            Some(Part::First) => self.win(port, Part::First),
            // The article's rule: no hello, every open connection is a
            // candidate at once.
            Some(Part::Leader) => self.propose(now),
            _ => {}
        }
    }

    /// Bytes read from an open port (at most [`read_len`](Self::read_len)).
    pub fn handle_data(&mut self, port: u16, bytes: &[u8], now: Instant) {
        if self.outcome.is_some() {
            return;
        }
        let Some(i) = self.slot_index(port) else {
            return;
        };
        if self.slots[i].phase != Phase::Open {
            return;
        }
        for &b in bytes {
            if self.slots[i].rx.push(b).is_err() {
                break;
            }
        }
        self.progress(i, now);
    }

    /// Evaluates the election bytes of slot `i`.
    fn progress(&mut self, i: usize, now: Instant) {
        let port = self.slots[i].port;
        let at = match self.config.election {
            Election::Nonce(mine) => {
                if self.slots[i].rx.len() < HELLO_LEN {
                    return;
                }
                let Some(theirs) = election::parse_hello(&self.slots[i].rx[..HELLO_LEN]) else {
                    // Not a punchwire peer on this port: drop it.
                    self.drop_connection(i, now);
                    return;
                };
                let part = election::part_from_nonces(mine, theirs);
                if self.part.is_none() {
                    self.part = Some(part);
                    self.event(Event::Elected(part));
                }
                if self.part == Some(Part::SelfConnected) {
                    self.win(port, Part::SelfConnected);
                    return;
                }
                HELLO_LEN
            }
            Election::PublicIp { .. } => 0,
            Election::FirstConnected => return,
        };
        match (self.part, self.slots[i].rx.get(at)) {
            // The peer's hello is in: a candidate for the leader.
            (Some(Part::Leader), None) => self.propose(now),
            (Some(Part::Leader), Some(&CONFIRMED)) if self.slots[i].proposed => {
                self.win(port, Part::Leader)
            }
            (Some(Part::Follower), Some(&CHOSEN)) => {
                // Confirm on the connection that carried the choice, then
                // keep it. This is the only `!` the follower ever writes.
                let mut bytes = Vec::new();
                let _ = bytes.push(CONFIRMED);
                self.act(Action::Send { port, bytes });
                self.win(port, Part::Follower);
            }
            (_, None) => {}
            // Anything else after the hello: not our protocol; drop it.
            (_, Some(_)) => self.drop_connection(i, now),
        }
    }

    /// Leader: writes `$` on the next candidate unless a proposal is still
    /// waiting for its confirmation. A candidate is an open connection not
    /// proposed yet on which the peer's hello was read (nonce election),
    /// or any open one (public-IP rule). Earlier proposals stay open: the
    /// follower confirms only the first `$` it reads, so whichever
    /// confirmation arrives first names the one connection both keep.
    fn propose(&mut self, now: Instant) {
        if self.outcome.is_some() || self.part != Some(Part::Leader) {
            return;
        }
        if let Some((_, until)) = self.proposal
            && time::micros(now) < time::micros(until)
        {
            return;
        }
        let need = match self.config.election {
            Election::Nonce(_) => HELLO_LEN,
            _ => 0,
        };
        let next = self
            .slots
            .iter()
            .position(|s| s.phase == Phase::Open && !s.proposed && s.rx.len() >= need);
        let Some(j) = next else {
            // Nothing to propose: the next candidate is proposed at once.
            self.proposal = None;
            return;
        };
        let port = self.slots[j].port;
        self.slots[j].proposed = true;
        self.proposal = Some((port, time::add_millis(now, self.config.confirm_ms)));
        let mut bytes = Vec::new();
        let _ = bytes.push(CHOSEN);
        self.act(Action::Send { port, bytes });
    }

    /// Closes slot `i` for good; a leader whose newest proposal it was
    /// proposes another at once.
    fn drop_connection(&mut self, i: usize, now: Instant) {
        let port = self.slots[i].port;
        self.close_slot(i);
        if self.proposal.is_some_and(|(p, _)| p == port) {
            self.proposal = None;
            self.propose(now);
        }
    }

    /// An open port reached end of stream or failed.
    pub fn handle_closed(&mut self, port: u16, now: Instant) {
        // `now` re-arms a port that failed before it opened.
        if self.outcome.is_some() {
            return;
        }
        let Some(i) = self.slot_index(port) else {
            return;
        };
        match self.slots[i].phase {
            // The leader closes the connections it did not choose; the spray
            // and the wait for its choice go on.
            Phase::Open => self.drop_connection(i, now),
            Phase::Fired | Phase::Handshaking => self.failed(i, NetError::Reset, now),
            _ => {}
        }
    }

    fn close_slot(&mut self, i: usize) {
        let port = self.slots[i].port;
        self.slots[i].phase = Phase::Done;
        self.slots[i].attempt = self.slots[i].attempt.wrapping_add(1);
        self.act(Action::Close { port });
    }

    fn win(&mut self, port: u16, part: Part) {
        for j in 0..self.slots.len() {
            let s = &self.slots[j];
            if s.port == port {
                continue;
            }
            if !matches!(s.phase, Phase::Skipped | Phase::Done) {
                self.close_slot(j);
            }
        }
        self.finish(Ok(Winner { port, part }));
    }

    fn finish(&mut self, outcome: Result<Winner, PunchError>) {
        if self.outcome.is_some() {
            return;
        }
        if outcome.is_err() {
            for j in 0..self.slots.len() {
                if !matches!(self.slots[j].phase, Phase::Skipped | Phase::Done) {
                    self.close_slot(j);
                }
            }
        }
        self.outcome = Some(outcome);
    }
}

#[cfg(test)]
mod sim;
#[cfg(test)]
mod sim_tests;
#[cfg(test)]
mod tests;

/// The phase (ms) of `port` within clock slot `slot`: the same on both
/// sides, spread over the interval by a mixing hash (splitmix64).
fn slot_phase(port: u16, slot: i64, interval: i64) -> i64 {
    let mut z = (u64::from(port) << 48) ^ (slot as u64);
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z % interval as u64) as i64
}
