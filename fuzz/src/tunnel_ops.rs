//! `tunnel_ops`: two udphp v0.12 [`Endpoint`]s joined by a network the
//! fuzzer runs: it delivers any queued datagram (so reorders), drops,
//! duplicates, corrupts (bit flips, truncation) and injects junk, moves
//! the clock, and drives both local sides (send, recv, close, next
//! session). A final *heal* phase then delivers everything promptly.
//!
//! Invariants, checked after every step:
//! * no panic, and no heap allocation inside any endpoint call (the
//!   endpoint is fixed-size; memory is bounded by construction);
//! * each side's delivered bytes are a prefix of what the other side's
//!   `send` took, in order, never duplicated; `PeerFinished` comes exactly
//!   when every byte up to the peer's `close_send` was delivered, and
//!   `SendFinished` only when the peer holds every byte we sent;
//! * events match state changes (no event lost from the endpoint's queue);
//! * `recv_available ≤ RECV_BUFFER`, `frames_in_flight ≤ WINDOW`, and one
//!   step never makes an endpoint emit more than its control queue, its
//!   window and a heartbeat (no amplification);
//! * after `handle_timeout(now)`, `poll_timeout()` is later than `now`;
//! * `Endpoint::reset` leaves an endpoint equal to a new one (everything
//!   the API shows), and the restarted pair carries new streams;
//! * after the heal phase, unless a side gave a frame up
//!   (`max_retries`), everything sent was delivered and every close was
//!   seen.
//!
//! Out of scope: datagrams the wire format cannot tell from genuine ones.
//! The MD5-11 covers only the payload and the `!seq` check only the ack's
//! seq, so a flipped data-frame seq, or an ack whose seq and check bytes
//! flipped together, is a valid different datagram (and anyone can forge
//! one: udphp has no authentication, a README non-goal). Such corrupted or
//! injected datagrams are not delivered; [`forged`] decides.

use arbitrary::Arbitrary;
use std::collections::VecDeque;

use crate::alloc_count::no_alloc;
use punchwire_core::compress::Inflater;
use punchwire_core::frame::{DataRepr, Repr, Role};
use punchwire_core::time::{Instant, Milliseconds, add_micros, at_micros, micros};
use punchwire_core::tunnel::{CHECKED_ACK_LEN, Config, Endpoint, Event, RECV_BUFFER};

/// The endpoint's control queue (`A`/`N` waiting for `poll_transmit`).
const CONTROL_QUEUE: usize = 8;
/// Datagrams a direction of the network holds; more drop the oldest.
const WIRE_CAP: usize = 64;
/// Bytes each side may send in one run.
const MAX_STREAM: usize = 256 * 1024;
/// Rounds of the heal phase, and its longest time step: with an RTO of at
/// most 10 s (backoff included) a lost frame goes again within 40 steps.
const HEAL_ROUNDS: usize = 2_000;
const HEAL_STEP_MS: u64 = 250;

#[derive(Arbitrary, Debug)]
pub struct Input {
    /// `Endpoint<1, 1400>` (udphp v0.12, the default) or `Endpoint<4, 64>`
    /// (several frames in flight, tiny frames).
    wide: bool,
    a: Cfg,
    b: Cfg,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
struct Cfg {
    compress: bool,
    frame_size: u16,
    heartbeat_ms: u16,
    silence_ms: u16,
    rto_initial_ms: u16,
    rto_min_ms: u8,
    rto_max_ms: u16,
    max_retries: u8,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Side {
    A,
    B,
}

#[derive(Arbitrary, Debug)]
enum Pattern {
    /// Words: compressible, `C` frames.
    Text,
    /// Pseudo-random: incompressible, `U` frames.
    Random,
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// Deliver the `which`-th datagram queued towards `to`.
    Deliver {
        to: Side,
        which: u8,
    },
    /// Deliver everything queued towards `to`, oldest first.
    Flush {
        to: Side,
    },
    Drop {
        to: Side,
        which: u8,
    },
    Duplicate {
        to: Side,
        which: u8,
    },
    /// Flip bits `bits` (0..8) at byte `at` of a queued datagram.
    Corrupt {
        to: Side,
        which: u8,
        at: u16,
        bits: u8,
    },
    Truncate {
        to: Side,
        which: u8,
        len: u16,
    },
    /// A datagram from the peer's address that it never sent.
    Junk {
        to: Side,
        bytes: Vec<u8>,
    },
    Advance {
        ms: u16,
    },
    /// Jump to the earlier endpoint deadline.
    ToTimer,
    Send {
        side: Side,
        len: u16,
        pattern: Pattern,
    },
    Recv {
        side: Side,
        max: u16,
    },
    CloseSend {
        side: Side,
    },
    NextSession {
        side: Side,
    },
    /// Both sides start over with `Endpoint::reset` (a restart of both
    /// programs): the network is emptied, seqs start at 0 again.
    Restart,
}

/// `reset` must give what `new` gives, as far as the API shows.
fn assert_same<const W: usize, const F: usize>(a: &Endpoint<W, F>, b: &Endpoint<W, F>) {
    assert_eq!(a.config(), b.config(), "reset: config");
    assert_eq!(a.stats(), b.stats(), "reset: stats");
    assert_eq!(a.poll_timeout(), b.poll_timeout(), "reset: poll_timeout");
    assert_eq!(
        (a.next_send_seq(), a.expected_seq()),
        (b.next_send_seq(), b.expected_seq()),
        "reset: seqs"
    );
    assert_eq!(
        (a.send_capacity(), a.recv_available(), a.frames_in_flight()),
        (b.send_capacity(), b.recv_available(), b.frames_in_flight()),
        "reset: buffers"
    );
    assert_eq!(
        (a.has_transmit(), a.is_failed(), a.is_peer_silent()),
        (b.has_transmit(), b.is_failed(), b.is_peer_silent()),
        "reset: flags"
    );
    assert_eq!(
        (a.peer_finished(), a.send_finished()),
        (b.peer_finished(), b.send_finished()),
        "reset: finished"
    );
}

/// Whether `d` would be taken as genuine though it was not sent as it is:
/// a checked ack, or a data frame whose payload matches its digest.
pub fn forged(d: &[u8]) -> bool {
    match Repr::parse(d) {
        Ok(Repr::Ack(seq)) => {
            d.len() == 3 || (d.len() == CHECKED_ACK_LEN && d[3..5] == (!seq).to_be_bytes())
        }
        Ok(Repr::Data(f)) => payload_ok(&f),
        _ => false,
    }
}

fn payload_ok(f: &DataRepr<'_>) -> bool {
    let len = usize::from(f.len);
    if !f.compressed {
        return f.body.len() == len && f.digest.matches(f.body);
    }
    let mut out = vec![0u8; len];
    matches!(Inflater::new().inflate(f.body, &mut out), Ok(n) if n == len) && f.digest.matches(&out)
}

/// One side: its endpoint and what its local TCP side did.
struct Peer<const W: usize, const F: usize> {
    ep: Box<Endpoint<W, F>>,
    cfg: Config,
    /// Every byte `send` took, across sessions.
    sent: Vec<u8>,
    /// Offsets in `sent` of each effective `close_send`.
    closes: Vec<usize>,
    closed: bool,
    /// Every byte `recv` handed out.
    got: Vec<u8>,
    /// Offsets in `got` at each `PeerFinished`.
    finishes: Vec<usize>,
    send_finished: bool,
    peer_finished: bool,
    silent: bool,
    heard: bool,
    failed: bool,
    sessions: u32,
    rng: u64,
}

struct Net<const W: usize, const F: usize> {
    now: Instant,
    peers: [Peer<W, F>; 2],
    /// Datagrams in flight towards A (0) and B (1).
    wire: [VecDeque<Vec<u8>>; 2],
    buf: Vec<u8>,
}

fn config(c: &Cfg, role: Role) -> Config {
    let mut cfg = Config::new(role);
    cfg.compress = c.compress;
    cfg.frame_size = usize::from(c.frame_size);
    cfg.heartbeat_interval = Milliseconds(1 + u32::from(c.heartbeat_ms));
    cfg.silence_timeout = Milliseconds(1 + u32::from(c.silence_ms) * 4);
    cfg.rto_initial = Milliseconds(1 + u32::from(c.rto_initial_ms) % 5_000);
    cfg.rto_min = Milliseconds(1 + u32::from(c.rto_min_ms));
    cfg.rto_max = Milliseconds(1 + u32::from(c.rto_max_ms) % 10_000);
    // Mostly unlimited, as the default: a give-up ends the stream.
    cfg.max_retries = if c.max_retries >= 200 {
        1 + u32::from(c.max_retries % 8)
    } else {
        0
    };
    cfg
}

impl<const W: usize, const F: usize> Peer<W, F> {
    fn new(cfg: Config, now: Instant, seed: u64) -> Self {
        Peer {
            ep: Box::new(Endpoint::new(cfg, now)),
            cfg,
            sent: Vec::new(),
            closes: Vec::new(),
            closed: false,
            got: Vec::new(),
            finishes: Vec::new(),
            send_finished: false,
            peer_finished: false,
            silent: false,
            heard: false,
            failed: false,
            sessions: 0,
            rng: seed,
        }
    }

    fn fill(&mut self, n: usize, pattern: &Pattern) -> Vec<u8> {
        const WORDS: [&[u8]; 6] = [b"tunnel ", b"frame ", b"ack ", b"punch ", b"udphp ", b"\n"];
        let mut v = Vec::with_capacity(n + 16);
        // The offset is mixed in, so a misplaced or repeated frame differs.
        while v.len() < n {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            match pattern {
                Pattern::Text => {
                    v.extend_from_slice(WORDS[(self.rng % 6) as usize]);
                    if self.rng.is_multiple_of(16) {
                        v.extend_from_slice(format!("{} ", self.sent.len() + v.len()).as_bytes());
                    }
                }
                Pattern::Random => v.extend_from_slice(&self.rng.to_le_bytes()),
            }
        }
        v.truncate(n);
        v
    }
}

impl<const W: usize, const F: usize> Net<W, F> {
    fn side(s: Side) -> usize {
        match s {
            Side::A => 0,
            Side::B => 1,
        }
    }

    /// Drains both endpoints' output and events and checks every invariant.
    fn step(&mut self) {
        for i in 0..2 {
            let now = self.now;
            let mut n = 0;
            loop {
                let p = &mut self.peers[i];
                let buf = &mut self.buf;
                let Some(len) = no_alloc("poll_transmit", || p.ep.poll_transmit(now, buf)) else {
                    break;
                };
                n += 1;
                assert!(
                    n <= CONTROL_QUEUE + W + 1,
                    "{n} datagrams from one step: amplification"
                );
                let to = &mut self.wire[1 - i];
                if to.len() == WIRE_CAP {
                    to.pop_front();
                }
                to.push_back(self.buf[..len].to_vec());
            }
            self.events(i);
        }
        for i in 0..2 {
            let p = &self.peers[i];
            assert!(p.ep.recv_available() <= RECV_BUFFER);
            assert!(p.ep.frames_in_flight() <= W);
            assert_eq!(p.ep.is_failed(), p.failed, "RetransmitLimit event lost");
        }
    }

    fn events(&mut self, i: usize) {
        let (me, other) = {
            let [a, b] = &mut self.peers;
            if i == 0 { (a, b) } else { (b, a) }
        };
        while let Some(e) = no_alloc("poll_event", || me.ep.poll_event()) {
            match e {
                Event::PeerHeard => {
                    assert!(!me.heard || me.silent, "PeerHeard while heard");
                    me.heard = true;
                    me.silent = false;
                }
                Event::PeerSilent => {
                    assert!(!me.silent, "PeerSilent twice");
                    me.silent = true;
                }
                Event::RetransmitLimit { .. } => me.failed = true,
                Event::PeerFinished => {
                    assert!(!me.peer_finished, "PeerFinished twice in a session");
                    me.peer_finished = true;
                    let k = me.finishes.len();
                    let at = *other
                        .closes
                        .get(k)
                        .unwrap_or_else(|| panic!("PeerFinished #{k} without a close"));
                    assert_eq!(me.got.len(), at, "PeerFinished before every byte arrived");
                    me.finishes.push(me.got.len());
                }
                Event::SendFinished => {
                    assert!(!me.send_finished, "SendFinished twice in a session");
                    me.send_finished = true;
                    let held = other.got.len() + other.ep.recv_available();
                    let at = *me.closes.last().expect("SendFinished without close_send");
                    assert_eq!(at, me.sent.len());
                    assert!(held >= at, "SendFinished but the peer holds {held} < {at}");
                }
            }
        }
        assert_eq!(
            me.ep.peer_finished(),
            me.peer_finished,
            "PeerFinished event lost"
        );
        assert_eq!(
            me.ep.send_finished(),
            me.send_finished,
            "SendFinished event lost"
        );
        assert_eq!(
            me.ep.is_peer_silent(),
            me.silent,
            "PeerSilent/PeerHeard event lost"
        );
    }

    /// Hands a queued datagram to `to`. Everything on the wire is genuine
    /// or damaged detectably: `forged` filtered it when it was damaged.
    fn deliver(&mut self, to: usize, d: &[u8]) {
        let now = self.now;
        let p = &mut self.peers[to];
        let _ = no_alloc("handle_datagram", || p.ep.handle_datagram(now, d));
    }

    fn timeout(&mut self, i: usize) {
        let now = self.now;
        let p = &mut self.peers[i];
        no_alloc("handle_timeout", || p.ep.handle_timeout(now));
        if let Some(t) = p.ep.poll_timeout() {
            assert!(
                micros(t) > micros(now),
                "poll_timeout in the past after handle_timeout"
            );
        }
    }

    fn recv(&mut self, i: usize, max: usize) {
        let [a, b] = &mut self.peers;
        let (me, other) = if i == 0 { (a, b) } else { (b, a) };
        let mut out = vec![0u8; max];
        let n = no_alloc("recv", || me.ep.recv(&mut out));
        assert!(n <= max);
        let from = me.got.len();
        let expect = other.sent.get(from..from + n).unwrap_or_else(|| {
            panic!(
                "received bytes {from}..{} but the peer sent only {}",
                from + n,
                other.sent.len()
            )
        });
        if let Some(k) = (0..n).find(|&k| out[k] != expect[k]) {
            panic!(
                "byte {} of the stream differs from what the peer sent (read of {n} at {from})",
                from + k
            );
        }
        me.got.extend_from_slice(&out[..n]);
    }

    fn send(&mut self, i: usize, len: usize, pattern: &Pattern) {
        let p = &mut self.peers[i];
        let len = len.min(MAX_STREAM - p.sent.len());
        if len == 0 {
            return;
        }
        let data = p.fill(len, pattern);
        let cap = p.ep.send_capacity();
        let n = no_alloc("send", || p.ep.send(&data));
        assert!(n <= len);
        assert!(
            n >= cap.min(len),
            "send took {n} of {len} with capacity {cap}"
        );
        if p.closed || p.failed {
            assert_eq!(n, 0, "send took bytes after close_send or a give-up");
        }
        p.sent.extend_from_slice(&data[..n]);
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Deliver { to, which } => {
                let t = Self::side(to);
                let q = &mut self.wire[t];
                if q.is_empty() {
                    return;
                }
                let d = q.remove(usize::from(which) % q.len()).unwrap();
                self.deliver(t, &d);
            }
            Op::Flush { to } => {
                let t = Self::side(to);
                while let Some(d) = self.wire[t].pop_front() {
                    self.deliver(t, &d);
                }
            }
            Op::Drop { to, which } => {
                let q = &mut self.wire[Self::side(to)];
                if !q.is_empty() {
                    let i = usize::from(which) % q.len();
                    q.remove(i);
                }
            }
            Op::Duplicate { to, which } => {
                let q = &mut self.wire[Self::side(to)];
                if !q.is_empty() && q.len() < WIRE_CAP {
                    let d = q[usize::from(which) % q.len()].clone();
                    q.push_back(d);
                }
            }
            Op::Corrupt {
                to,
                which,
                at,
                bits,
            } => {
                let q = &mut self.wire[Self::side(to)];
                if q.is_empty() || bits == 0 {
                    return;
                }
                let i = usize::from(which) % q.len();
                let mut d = q[i].clone();
                if d.is_empty() {
                    return;
                }
                let at = usize::from(at) % d.len();
                d[at] ^= bits;
                // A corruption the format cannot see is not delivered.
                if forged(&d) {
                    q.remove(i);
                } else {
                    q[i] = d;
                }
            }
            Op::Truncate { to, which, len } => {
                let q = &mut self.wire[Self::side(to)];
                if q.is_empty() {
                    return;
                }
                let i = usize::from(which) % q.len();
                let keep = usize::from(len) % q[i].len().max(1);
                let d = q[i][..keep].to_vec();
                if forged(&d) {
                    q.remove(i);
                } else {
                    q[i] = d;
                }
            }
            Op::Junk { to, bytes } => {
                if !forged(&bytes) {
                    self.deliver(Self::side(to), &bytes);
                }
            }
            Op::Advance { ms } => {
                self.now = add_micros(self.now, u64::from(ms) * 1000);
                self.timeout(0);
                self.timeout(1);
            }
            Op::ToTimer => {
                let t = [0, 1]
                    .iter()
                    .filter_map(|&i| self.peers[i].ep.poll_timeout())
                    .min_by_key(|t| micros(*t));
                if let Some(t) = t
                    && micros(t) > micros(self.now)
                {
                    self.now = t;
                }
                self.timeout(0);
                self.timeout(1);
            }
            Op::Send { side, len, pattern } => {
                self.send(Self::side(side), usize::from(len), &pattern)
            }
            Op::Recv { side, max } => self.recv(Self::side(side), usize::from(max)),
            Op::CloseSend { side } => {
                let p = &mut self.peers[Self::side(side)];
                no_alloc("close_send", || p.ep.close_send());
                if !p.closed {
                    p.closed = true;
                    p.closes.push(p.sent.len());
                }
            }
            Op::Restart => {
                let now = self.now;
                self.wire = [VecDeque::new(), VecDeque::new()];
                for p in &mut self.peers {
                    p.ep.reset(p.cfg, now);
                    let fresh: Endpoint<W, F> = Endpoint::new(p.cfg, now);
                    assert_same(&p.ep, &fresh);
                    let rng = p.rng;
                    *p = Peer {
                        ep: core::mem::replace(&mut p.ep, Box::new(fresh)),
                        rng,
                        ..Peer::new(p.cfg, now, 0)
                    };
                }
            }
            Op::NextSession { side } => {
                let p = &mut self.peers[Self::side(side)];
                let both = p.ep.peer_finished() && p.ep.send_finished();
                let ok = no_alloc("next_session", || p.ep.next_session());
                assert_eq!(ok, both);
                if ok {
                    p.closed = false;
                    p.send_finished = false;
                    p.peer_finished = false;
                    p.sessions += 1;
                }
            }
        }
    }

    /// Everything queued is delivered at once, each side reads all it can
    /// and starts the next session when both its directions are finished
    /// (as the driver does), and time moves in steps of at most
    /// [`HEAL_STEP_MS`] whenever nothing else moves.
    fn heal(&mut self) {
        for _ in 0..HEAL_ROUNDS {
            let mut moved = false;
            for t in 0..2 {
                while let Some(d) = self.wire[t].pop_front() {
                    // Heartbeats alone are not progress.
                    moved |= !d.starts_with(b"H");
                    self.deliver(t, &d);
                }
            }
            for i in 0..2 {
                if self.peers[i].ep.recv_available() > 0 {
                    moved = true;
                    self.recv(i, RECV_BUFFER);
                }
            }
            self.step();
            for i in 0..2 {
                let p = &self.peers[i];
                if p.ep.peer_finished() && p.ep.send_finished() {
                    let other = &self.peers[1 - i];
                    // Only when the peer has more to say: else stay finished.
                    if other.sent.len() > p.got.len() || other.closes.len() > p.finishes.len() {
                        moved = true;
                        self.apply(Op::NextSession {
                            side: if i == 0 { Side::A } else { Side::B },
                        });
                    }
                }
            }
            self.step();
            if moved || self.wire.iter().any(|q| !q.is_empty()) {
                continue;
            }
            if self.done() {
                return;
            }
            // Nothing in flight but heartbeats: time moves on, so a lost
            // frame goes again at its RTO.
            self.now = add_micros(self.now, HEAL_STEP_MS * 1000);
            self.timeout(0);
            self.timeout(1);
            self.step();
        }
        assert!(
            self.done(),
            "the heal phase did not deliver everything: {}",
            self.describe()
        );
    }

    fn describe(&self) -> String {
        let side = |p: &Peer<W, F>| {
            format!(
                "sent {} closes {:?} got {} finishes {:?} avail {} failed {} fin {}/{} stats {:?}",
                p.sent.len(),
                p.closes,
                p.got.len(),
                p.finishes,
                p.ep.recv_available(),
                p.failed,
                p.ep.send_finished(),
                p.ep.peer_finished(),
                p.ep.stats()
            )
        };
        format!(
            "now {} us\nA: {}\nB: {}",
            micros(self.now),
            side(&self.peers[0]),
            side(&self.peers[1])
        )
    }

    /// Every direction whose sender did not give up delivered every byte
    /// and its close.
    fn done(&self) -> bool {
        (0..2).all(|i| {
            let (me, other) = (&self.peers[i], &self.peers[1 - i]);
            other.failed
                || (me.got.len() == other.sent.len()
                    && me.ep.recv_available() == 0
                    && me.finishes.len() == other.closes.len())
        })
    }
}

fn run_with<const W: usize, const F: usize>(input: Input) {
    let start = at_micros(1_000_000);
    let peers = [
        Peer::new(config(&input.a, Role::Listen), start, 0x9e37_79b9_7f4a_7c15),
        Peer::new(
            config(&input.b, Role::Connect),
            start,
            0xd1b5_4a32_d192_ed03,
        ),
    ];
    let mut net: Net<W, F> = Net {
        now: start,
        peers,
        wire: [VecDeque::new(), VecDeque::new()],
        buf: vec![0; Endpoint::<W, F>::MAX_DATAGRAM],
    };
    net.step();
    for op in input.ops.into_iter().take(1024) {
        net.apply(op);
        net.step();
    }
    net.heal();
}

pub fn run(input: Input) {
    if input.wide {
        run_with::<4, 64>(input)
    } else {
        run_with::<1, 1400>(input)
    }
}
