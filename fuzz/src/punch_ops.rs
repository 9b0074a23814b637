//! `punch_ops`: a [`PunchMachine`] driven through arbitrary interleavings
//! of socket status reports (current and stale attempts), bind and connect
//! errors, peer bytes (hellos with any nonce, `$`, junk, split anywhere),
//! closes and time, by a driver that keeps the call-order contract of the
//! punch module docs (actions drained after every step, at most
//! `read_len` bytes read).
//!
//! Invariants: no panic, no heap allocation in any machine call; the outcome is set once and never changes, and no
//! action follows the step that set it; at most one winner, an open
//! connection never closed by us, every other connection that opened is
//! closed; the winner's part matches the election and the bytes the peer
//! sent on it (a leader read the peer's smaller nonce and wrote `$`, a
//! follower read a greater nonce and `$`, a self-connection its own
//! nonce); a timeout only at the deadline; the action queue never fills
//! in one step (it drops its oldest action when full); `Connect` carries
//! the configured TTLs; `read_len` stays within the election's bytes;
//! `poll_timeout` after `handle_timeout(now)` is later than `now`.

use arbitrary::Arbitrary;
use core::net::Ipv4Addr;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::alloc_count::no_alloc;
use punchwire_core::net::{ConnectStatus, NetError};
use punchwire_core::punch::election::{CHOSEN, HELLO_LEN, parse_hello};
use punchwire_core::punch::{
    Action, Election, Event, MAX_ELECTION_BYTES, MAX_SLOTS, Part, PunchConfig, PunchError,
    PunchMachine, Timing, Winner,
};
use punchwire_core::schedule::{MAX_SKEW_BOUND_MS, UnixTime};
use punchwire_core::time::{Instant, add_millis, at_millis, micros};

/// `PunchMachine`'s action queue: two actions per slot plus a few.
const ACTION_QUEUE: usize = 2 * MAX_SLOTS + 8;

#[derive(Arbitrary, Debug)]
pub struct Input {
    config: Cfg,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
struct Cfg {
    election: ElectionKind,
    reference: bool,
    interval_ms: u16,
    timeout_ms: u32,
    prime_ttl: u8,
    normal_ttl: u8,
    jitter_percent: u8,
    max_clock_error_ms: u16,
    unix: Unix,
}

#[derive(Arbitrary, Debug)]
enum ElectionKind {
    Nonce(u64),
    PublicIp { mine: u32, peer: u32 },
    First,
}

#[derive(Arbitrary, Debug)]
enum Unix {
    /// Milliseconds after 2023-11-14 (a realistic clock).
    Recent(u32),
    /// Any clock a user's `--clock-offset` could produce.
    Any(i64),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Status {
    Pending,
    Handshaking,
    Connected,
    Failed(Err),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Err {
    Refused,
    Reset,
    Unreachable,
    AddrInUse,
    TimedOut,
    NoBuffers,
    Other(i32),
}

impl Err {
    fn net(self) -> NetError {
        match self {
            Err::Refused => NetError::Refused,
            Err::Reset => NetError::Reset,
            Err::Unreachable => NetError::Unreachable,
            Err::AddrInUse => NetError::AddrInUse,
            Err::TimedOut => NetError::TimedOut,
            Err::NoBuffers => NetError::NoBuffers,
            Err::Other(e) => NetError::Other(e),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Nonce {
    Same,
    Greater,
    Less,
    Any(u64),
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// Status of a connecting port (`which` indexes the connecting ports).
    Status {
        which: u8,
        stale: bool,
        status: Status,
    },
    /// Bind error for one of the connects of the last step.
    BindError { which: u8, err: Err },
    /// Connect error for one of the connects of the last step.
    ConnectError { which: u8, err: Err },
    /// The peer writes its hello (and maybe `$`) on an open port.
    Hello {
        which: u8,
        nonce: Nonce,
        chosen: bool,
    },
    /// The peer writes `$`.
    Chosen { which: u8 },
    /// The peer writes anything.
    Write { which: u8, bytes: Vec<u8> },
    /// The driver reads what `read_len` allows (up to `max`).
    Read { which: u8, max: u8 },
    /// End of stream or an error on an open or connecting port.
    Closed { which: u8 },
    /// Time passes (ms), then `handle_timeout`.
    Advance(u16),
    /// Jump to `poll_timeout` and handle it.
    ToTimer,
}

struct Harness {
    m: PunchMachine,
    cfg: PunchConfig,
    now: Instant,
    deadline: Instant,
    /// Attempt of the socket the driver holds per port (from `Connect`s).
    attempt: BTreeMap<u16, u32>,
    /// `Connect`s of the last step (for bind and connect errors).
    last_connects: Vec<(u16, u32)>,
    /// Ports that reported `Connected` and have not been closed since.
    open: BTreeSet<u16>,
    ever_open: BTreeSet<u16>,
    /// Bytes the peer wrote per open port, not yet read.
    inbox: BTreeMap<u16, VecDeque<u8>>,
    /// Bytes read and handed to the machine per port since it opened.
    fed: BTreeMap<u16, Vec<u8>>,
    /// `$` written by us, per port.
    wrote_chosen: BTreeSet<u16>,
    elected: Option<Part>,
    /// The nonce of the first complete hello read on any port.
    first_nonce: Option<u64>,
    outcome: Option<Result<Winner, PunchError>>,
    bind_errors: u32,
}

impl Harness {
    fn my_nonce(&self) -> Option<u64> {
        match self.cfg.election {
            Election::Nonce(n) => Some(n),
            _ => None,
        }
    }

    fn pick(list: &[u16], which: u8) -> Option<u16> {
        (!list.is_empty()).then(|| list[usize::from(which) % list.len()])
    }

    /// The driver's output step, with every check that needs the actions.
    fn step(&mut self) {
        let was_done = self.outcome.is_some();
        // Events first: `Connected` names ports that opened in this step.
        while let Some(e) = self.m.poll_event() {
            match e {
                Event::Connected { port } => {
                    assert!(self.open.insert(port), "port {port} connected twice");
                    self.ever_open.insert(port);
                    self.fed.insert(port, Vec::new());
                    self.inbox.insert(port, VecDeque::new());
                }
                Event::Elected(part) => {
                    assert!(self.elected.is_none(), "elected twice");
                    self.elected = Some(part);
                }
                _ => {}
            }
        }
        let mut n = 0;
        self.last_connects.clear();
        while let Some(a) = no_alloc("poll_action", || self.m.poll_action()) {
            n += 1;
            assert!(!was_done, "an action after the outcome: {a:?}");
            match a {
                Action::Connect {
                    port,
                    attempt,
                    prime_ttl,
                    ttl,
                } => {
                    assert_eq!(ttl, self.cfg.normal_ttl);
                    let primes = self.cfg.timing == Timing::Continuous;
                    assert_eq!(prime_ttl, if primes { self.cfg.prime_ttl } else { 0 });
                    assert!(!self.open.contains(&port), "Connect on open port {port}");
                    if self.m.is_current(port, attempt) {
                        self.attempt.insert(port, attempt);
                        self.last_connects.push((port, attempt));
                    }
                }
                Action::Send { port, bytes } => {
                    assert!(self.open.contains(&port), "Send on port {port} not open");
                    assert!(bytes.len() <= MAX_ELECTION_BYTES);
                    // `$` alone, or after a hello (whose nonce may hold
                    // a 0x24 byte).
                    if bytes.len() != HELLO_LEN && bytes.last() == Some(&CHOSEN) {
                        self.wrote_chosen.insert(port);
                    }
                }
                Action::Close { port } => {
                    self.open.remove(&port);
                    self.attempt.remove(&port);
                    self.inbox.remove(&port);
                }
            }
        }
        assert!(
            n < ACTION_QUEUE,
            "{n} actions in one step: the queue may have dropped some"
        );
        self.check();
    }

    fn check(&mut self) {
        let o = self.m.outcome();
        if let Some(prev) = self.outcome {
            assert_eq!(o, Some(prev), "the outcome changed");
            return;
        }
        let connecting: Vec<u16> = self.m.connecting_ports().collect();
        let open: Vec<u16> = self.m.open_ports().collect();
        let all: BTreeSet<u16> = connecting.iter().chain(&open).copied().collect();
        assert_eq!(
            all.len(),
            connecting.len() + open.len(),
            "a port both open and connecting"
        );
        assert!(all.len() <= MAX_SLOTS);
        for &p in &all {
            assert!(self.m.read_len(p) <= MAX_ELECTION_BYTES);
        }
        let Some(o) = o else { return };
        self.outcome = Some(o);
        for &p in &self.ever_open {
            let winner = matches!(o, Ok(w) if w.port == p);
            assert_eq!(self.open.contains(&p), winner, "port {p}: open after {o:?}");
        }
        match o {
            Ok(w) => self.check_winner(w),
            Err(e) => match e {
                PunchError::Timeout | PunchError::ElectionTimeout => {
                    assert!(micros(self.now) >= micros(self.deadline), "{e:?} early");
                    assert_eq!(e == PunchError::ElectionTimeout, !self.ever_open.is_empty());
                }
                PunchError::NoBindablePort => assert!(self.bind_errors > 0),
                PunchError::PeerClosed => {}
            },
        }
    }

    fn check_winner(&self, w: Winner) {
        assert!(
            self.ever_open.contains(&w.port),
            "winner {w:?} never opened"
        );
        let fed = &self.fed[&w.port];
        let hello = fed.get(..HELLO_LEN).and_then(parse_hello);
        match self.cfg.election {
            Election::Nonce(mine) => {
                hello.unwrap_or_else(|| panic!("{w:?} without the peer's hello"));
                // The first hello read on any port decides the part.
                let first = self.first_nonce.expect("a part without a hello");
                let part = punchwire_core::punch::election::part_from_nonces(mine, first);
                assert_eq!(w.part, part, "first nonce {first:#x}, mine {mine:#x}");
                assert_eq!(self.elected, Some(part));
                match w.part {
                    Part::Leader => {
                        assert!(self.wrote_chosen.contains(&w.port), "leader wrote no $");
                        assert_eq!(self.wrote_chosen.len(), 1, "$ on several ports");
                    }
                    Part::Follower => assert_eq!(fed.get(HELLO_LEN), Some(&CHOSEN)),
                    Part::SelfConnected => {}
                    Part::First => panic!("First in a nonce election"),
                }
            }
            Election::PublicIp { mine, peer } => {
                let lead = u32::from(mine) > u32::from(peer);
                assert_eq!(w.part, if lead { Part::Leader } else { Part::Follower });
                if lead {
                    assert!(self.wrote_chosen.contains(&w.port));
                } else {
                    assert_eq!(fed.first(), Some(&CHOSEN));
                }
            }
            Election::FirstConnected => assert_eq!(w.part, Part::First),
        }
    }

    fn timeout(&mut self) {
        let now = self.now;
        no_alloc("handle_timeout", || self.m.handle_timeout(now));
        match self.m.poll_timeout() {
            Some(t) => assert!(micros(t) > micros(self.now), "timer in the past"),
            None => assert!(self.m.outcome().is_some(), "no timer before the outcome"),
        }
    }

    fn apply(&mut self, op: Op) {
        let connecting: Vec<u16> = self.m.connecting_ports().collect();
        let open: Vec<u16> = self.m.open_ports().collect();
        match op {
            Op::Status {
                which,
                stale,
                status,
            } => {
                let Some(port) = Self::pick(&connecting, which) else {
                    return;
                };
                let current = self.attempt.get(&port).copied().unwrap_or(0);
                let attempt = if stale {
                    current.wrapping_sub(1)
                } else {
                    current
                };
                let st = match status {
                    Status::Pending => ConnectStatus::Pending,
                    Status::Handshaking => ConnectStatus::Handshaking,
                    Status::Connected => ConnectStatus::Connected,
                    Status::Failed(e) => ConnectStatus::Failed(e.net()),
                };
                let now = self.now;
                no_alloc("handle_status", || {
                    self.m.handle_status(port, attempt, st, now)
                });
            }
            Op::BindError { which, err } => {
                if self.last_connects.is_empty() {
                    return;
                }
                let (port, attempt) =
                    self.last_connects[usize::from(which) % self.last_connects.len()];
                if self.m.is_current(port, attempt) && err.net() != NetError::NoBuffers {
                    self.bind_errors += 1;
                }
                let now = self.now;
                no_alloc("handle_bind_error", || {
                    self.m.handle_bind_error(port, attempt, err.net(), now)
                });
            }
            Op::ConnectError { which, err } => {
                if self.last_connects.is_empty() {
                    return;
                }
                let (port, attempt) =
                    self.last_connects[usize::from(which) % self.last_connects.len()];
                let now = self.now;
                no_alloc("handle_connect_error", || {
                    self.m.handle_connect_error(port, attempt, err.net(), now)
                });
            }
            Op::Hello {
                which,
                nonce,
                chosen,
            } => {
                let Some(port) = Self::pick(&open, which) else {
                    return;
                };
                let mine = self.my_nonce().unwrap_or(0);
                let n = match nonce {
                    Nonce::Same => mine,
                    Nonce::Greater => mine.wrapping_add(1),
                    Nonce::Less => mine.wrapping_sub(1),
                    Nonce::Any(n) => n,
                };
                let inbox = self.inbox.entry(port).or_default();
                inbox.extend(Election::Nonce(n).hello().unwrap());
                if chosen {
                    inbox.push_back(CHOSEN);
                }
            }
            Op::Chosen { which } => {
                let Some(port) = Self::pick(&open, which) else {
                    return;
                };
                self.inbox.entry(port).or_default().push_back(CHOSEN);
            }
            Op::Write { which, bytes } => {
                let Some(port) = Self::pick(&open, which) else {
                    return;
                };
                self.inbox
                    .entry(port)
                    .or_default()
                    .extend(bytes.iter().take(64));
            }
            Op::Read { which, max } => {
                let Some(port) = Self::pick(&open, which) else {
                    return;
                };
                let want = self.m.read_len(port).min(usize::from(max.max(1)));
                let inbox = self.inbox.entry(port).or_default();
                let n = want.min(inbox.len());
                if n == 0 {
                    return;
                }
                let bytes: Vec<u8> = inbox.drain(..n).collect();
                let fed = self.fed.entry(port).or_default();
                let had = fed.len();
                fed.extend_from_slice(&bytes);
                if had < HELLO_LEN && fed.len() >= HELLO_LEN && self.first_nonce.is_none() {
                    self.first_nonce = parse_hello(&fed[..HELLO_LEN]);
                }
                let now = self.now;
                no_alloc("handle_data", || self.m.handle_data(port, &bytes, now));
            }
            Op::Closed { which } => {
                let all: Vec<u16> = connecting.iter().chain(&open).copied().collect();
                let Some(port) = Self::pick(&all, which) else {
                    return;
                };
                let now = self.now;
                no_alloc("handle_closed", || self.m.handle_closed(port, now));
            }
            Op::Advance(ms) => {
                self.now = add_millis(self.now, u64::from(ms));
                self.timeout();
            }
            Op::ToTimer => {
                if let Some(t) = self.m.poll_timeout() {
                    self.now = t;
                }
                self.timeout();
            }
        }
    }
}

pub fn run(input: Input) {
    let c = &input.config;
    let election = match c.election {
        ElectionKind::Nonce(n) => Election::Nonce(n),
        ElectionKind::PublicIp { mine, peer } => Election::PublicIp {
            mine: Ipv4Addr::from(mine),
            peer: Ipv4Addr::from(peer),
        },
        ElectionKind::First => Election::FirstConnected,
    };
    let cfg = PunchConfig {
        peer: Ipv4Addr::new(198, 51, 100, 2),
        max_clock_error_ms: i64::from(c.max_clock_error_ms) % MAX_SKEW_BOUND_MS,
        interval_ms: u64::from(c.interval_ms),
        timeout_ms: u64::from(c.timeout_ms % 600_000),
        prime_ttl: c.prime_ttl,
        normal_ttl: c.normal_ttl,
        election,
        timing: if c.reference {
            Timing::Reference
        } else {
            Timing::Continuous
        },
        jitter_percent: c.jitter_percent,
        confirm_ms: u64::from(c.interval_ms).max(1) * 20,
    };
    let unix = match c.unix {
        Unix::Recent(ms) => UnixTime::from_millis(1_700_000_000_000 + i64::from(ms)),
        Unix::Any(ms) => UnixTime::from_millis(ms),
    };
    let start = at_millis(1_000);
    let Ok(m) = PunchMachine::new(cfg, start, unix) else {
        return;
    };
    let deadline = match cfg.timing {
        Timing::Continuous => add_millis(start, cfg.timeout_ms),
        Timing::Reference => add_millis(m.spray_from(), 5_000),
    };
    let mut h = Harness {
        m,
        cfg,
        now: start,
        deadline,
        attempt: BTreeMap::new(),
        last_connects: Vec::new(),
        open: BTreeSet::new(),
        ever_open: BTreeSet::new(),
        inbox: BTreeMap::new(),
        fed: BTreeMap::new(),
        wrote_chosen: BTreeSet::new(),
        elected: None,
        first_nonce: None,
        outcome: None,
        bind_errors: 0,
    };
    h.step();
    for op in input.ops.into_iter().take(512) {
        h.apply(op);
        h.step();
    }
}
