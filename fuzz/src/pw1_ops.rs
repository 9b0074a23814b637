//! `pw1_ops`: two pw1 [`Connection`]s joined by a network the fuzzer
//! runs (deliver any queued packet — so reorders —, drop, duplicate,
//! corrupt, inject junk), the clock, and both local sides (open streams,
//! write, read, finish, reset). A heal phase then delivers everything.
//!
//! Invariants after every step: no panic; each stream's delivered bytes
//! are exactly the bytes written to it, in order, never duplicated (the
//! content is a function of stream and offset, so any wrong byte shows);
//! `stream_send` takes what `stream_send_capacity` offered; after
//! `handle_timeout(now)`, `poll_timeout()` is not before `now`; one step
//! emits a bounded number of packets. After healing, every stream that
//! was not reset has delivered everything written before its FIN.

use arbitrary::Arbitrary;
use std::collections::{BTreeMap, VecDeque};

use punchwire_core::time::{Instant, at_micros, micros};
use punchwire_core::tunnel::pw1::{
    Chunk, Config, Connection, Event, PeerParams, SentPacket, Storage, Stream, StreamRead, code,
};

#[derive(Arbitrary, Debug)]
pub struct Input {
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Op {
    Deliver {
        to_b: bool,
        index: u8,
    },
    Drop {
        to_b: bool,
        index: u8,
    },
    Dup {
        to_b: bool,
        index: u8,
    },
    Corrupt {
        to_b: bool,
        index: u8,
        at: u16,
        bit: u8,
    },
    Junk {
        to_b: bool,
        len: u8,
        seed: u8,
    },
    Advance {
        ms: u16,
    },
    Open,
    Write {
        a_side: bool,
        stream: u8,
        len: u16,
    },
    Read {
        a_side: bool,
        stream: u8,
        max: u16,
    },
    Finish {
        a_side: bool,
        stream: u8,
    },
    Reset {
        a_side: bool,
        stream: u8,
    },
}

fn byte(stream: u32, offset: u64) -> u8 {
    (offset.wrapping_mul(31).wrapping_add(u64::from(stream) * 7) % 251) as u8
}

#[derive(Default)]
struct Side {
    /// Per stream: bytes written, bytes read, finished, reset seen.
    written: BTreeMap<u32, u64>,
    read: BTreeMap<u32, u64>,
    finished: BTreeMap<u32, bool>,
    reset: Vec<u32>,
    closed: Vec<u32>,
}

impl Side {
    /// The `k`-th stream this side knows, if any.
    fn pick(&self, k: u8) -> Option<u32> {
        self.written
            .keys()
            .nth(usize::from(k) % self.written.len().max(1))
            .copied()
    }
}

struct Mem {
    send: Vec<Chunk>,
    recv: Vec<Chunk>,
    sent: Vec<SentPacket>,
    streams: Vec<Stream>,
}

impl Mem {
    fn new() -> Self {
        Mem {
            send: vec![Chunk::EMPTY; 16],
            recv: vec![Chunk::EMPTY; 32],
            sent: vec![SentPacket::EMPTY; 64],
            streams: vec![Stream::EMPTY; 4],
        }
    }
    fn storage(&mut self) -> Storage<'_> {
        Storage {
            send: &mut self.send,
            recv: &mut self.recv,
            sent: &mut self.sent,
            streams: &mut self.streams,
        }
    }
}

fn params(token: u64, max_streams: u16) -> PeerParams {
    PeerParams {
        token,
        max_streams,
        initial_chunks: 2,
        max_datagram: 1400,
    }
}

fn cfg(accept: bool) -> Config {
    let mut c = Config::new(accept);
    c.max_streams = 4;
    c.initial_chunks = 2;
    c
}

fn pump(now: Instant, c: &mut Connection<'_>, wire: &mut VecDeque<Vec<u8>>) {
    let mut buf = [0u8; 1400];
    let mut n = 0;
    while let Some(len) = c.poll_transmit(now, &mut buf) {
        if wire.len() < 256 {
            wire.push_back(buf[..len].to_vec());
        }
        n += 1;
        assert!(n < 512, "one step emitted without end");
    }
}

fn read_all(c: &mut Connection<'_>, s: &mut Side, id: u32, max: usize) {
    let mut left = max;
    while left > 0 {
        match c.stream_peek(id) {
            StreamRead::Data(d) => {
                let n = d.len().min(left);
                let at = s.read.entry(id).or_default();
                for (k, &b) in d[..n].iter().enumerate() {
                    assert_eq!(
                        b,
                        byte(id, *at + k as u64),
                        "stream {id} byte {} wrong",
                        *at + k as u64
                    );
                }
                *at += n as u64;
                c.stream_consume(id, n);
                left -= n;
            }
            StreamRead::Finished => {
                s.finished.insert(id, true);
                break;
            }
            _ => break,
        }
    }
}

fn drain_events(c: &mut Connection<'_>, s: &mut Side) {
    while let Some(id) = c.poll_opened() {
        s.written.entry(id).or_default();
    }
    while let Some(e) = c.poll_event() {
        match e {
            Event::StreamClosed(id) => s.closed.push(id),
            Event::StreamReset(id) => s.reset.push(id),
        }
    }
}

pub fn run(input: Input) {
    let (mut ma, mut mb) = (Mem::new(), Mem::new());
    let t0 = at_micros(0);
    let mut a = Connection::new(cfg(false), ma.storage(), 0xA, params(0xB, 4), t0).unwrap();
    let mut b = Connection::new(cfg(true), mb.storage(), 0xB, params(0xA, 0), t0).unwrap();
    let (mut sa, mut sb) = (Side::default(), Side::default());
    let (mut ab, mut ba): (VecDeque<Vec<u8>>, VecDeque<Vec<u8>>) =
        (VecDeque::new(), VecDeque::new());
    let mut now_us = 0u64;
    let mut ids: Vec<u32> = Vec::new();
    let mut fins: Vec<(bool, u32)> = Vec::new();
    for op in input.ops.iter().take(2000) {
        let now = at_micros(now_us);
        match *op {
            Op::Deliver { to_b, index } | Op::Dup { to_b, index } => {
                let wire = if to_b { &mut ab } else { &mut ba };
                if !wire.is_empty() {
                    let i = usize::from(index) % wire.len();
                    let p = if matches!(op, Op::Dup { .. }) {
                        wire[i].clone()
                    } else {
                        wire.remove(i).unwrap()
                    };
                    let c = if to_b { &mut b } else { &mut a };
                    let _ = c.handle_packet(now, &p);
                }
            }
            Op::Drop { to_b, index } => {
                let wire = if to_b { &mut ab } else { &mut ba };
                if !wire.is_empty() {
                    let i = usize::from(index) % wire.len();
                    wire.remove(i);
                }
            }
            Op::Corrupt {
                to_b,
                index,
                at,
                bit,
            } => {
                let wire = if to_b { &mut ab } else { &mut ba };
                if !wire.is_empty() {
                    let i = usize::from(index) % wire.len();
                    let p = &mut wire[i];
                    let j = usize::from(at) % p.len();
                    p[j] ^= 1 << (bit % 8);
                }
            }
            Op::Junk { to_b, len, seed } => {
                let junk: Vec<u8> = (0..len).map(|k| k.wrapping_mul(seed) ^ seed).collect();
                let c = if to_b { &mut b } else { &mut a };
                let _ = c.handle_packet(now, &junk);
            }
            Op::Advance { ms } => {
                now_us += u64::from(ms % 2000) * 1000;
                let now = at_micros(now_us);
                for c in [&mut a, &mut b] {
                    c.handle_timeout(now);
                    if let Some(t) = c.poll_timeout() {
                        assert!(micros(t) >= now_us, "a timer in the past");
                    }
                }
            }
            Op::Open => {
                if let Ok(id) = a.open_stream() {
                    ids.push(id);
                    sa.written.insert(id, 0);
                }
            }
            Op::Write {
                a_side,
                stream,
                len,
            } => {
                let (c, s) = if a_side {
                    (&mut a, &mut sa)
                } else {
                    (&mut b, &mut sb)
                };
                if let Some(id) = s.pick(stream) {
                    let cap = c.stream_send_capacity(id).min(usize::from(len));
                    let at = s.written[&id];
                    let data: Vec<u8> = (0..cap as u64).map(|k| byte(id, at + k)).collect();
                    if let Ok(n) = c.stream_send(id, &data) {
                        assert_eq!(n, cap, "stream_send took less than its capacity");
                        *s.written.get_mut(&id).unwrap() += n as u64;
                    }
                }
            }
            Op::Read {
                a_side,
                stream,
                max,
            } => {
                let (c, s) = if a_side {
                    (&mut a, &mut sa)
                } else {
                    (&mut b, &mut sb)
                };
                if let Some(id) = s.pick(stream) {
                    read_all(c, s, id, usize::from(max));
                }
            }
            Op::Finish { a_side, stream } => {
                let (c, s) = if a_side {
                    (&mut a, &mut sa)
                } else {
                    (&mut b, &mut sb)
                };
                if let Some(id) = s.pick(stream)
                    && c.stream_finish(id).is_ok()
                {
                    fins.push((a_side, id));
                }
            }
            Op::Reset { a_side, stream } => {
                let (c, s) = if a_side {
                    (&mut a, &mut sa)
                } else {
                    (&mut b, &mut sb)
                };
                if let Some(id) = s.pick(stream) {
                    c.stream_reset(id, code::LOCAL_ERROR);
                }
            }
        }
        let now = at_micros(now_us);
        pump(now, &mut a, &mut ab);
        pump(now, &mut b, &mut ba);
        drain_events(&mut a, &mut sa);
        drain_events(&mut b, &mut sb);
    }
    // Heal: everything is delivered promptly, readers read everything.
    // Time jumps to the next timer when the wires are empty (a probe
    // timeout backed off after a long outage may be a minute away), for at
    // most ten virtual minutes.
    let heal_end = now_us + 600_000_000;
    for _ in 0..20_000 {
        let next = [a.poll_timeout(), b.poll_timeout()]
            .into_iter()
            .flatten()
            .map(micros)
            .min();
        now_us = match next {
            Some(t) if ab.is_empty() && ba.is_empty() => t.max(now_us + 1_000),
            _ => now_us + 5_000,
        };
        if now_us > heal_end {
            break;
        }
        let now = at_micros(now_us);
        while let Some(p) = ab.pop_front() {
            let _ = b.handle_packet(now, &p);
        }
        while let Some(p) = ba.pop_front() {
            let _ = a.handle_packet(now, &p);
        }
        a.handle_timeout(now);
        b.handle_timeout(now);
        for (c, s) in [(&mut a, &mut sa), (&mut b, &mut sb)] {
            let keys: Vec<u32> = s.written.keys().copied().collect();
            for id in keys {
                read_all(c, s, id, usize::MAX);
            }
        }
        pump(now, &mut a, &mut ab);
        pump(now, &mut b, &mut ba);
        drain_events(&mut a, &mut sa);
        drain_events(&mut b, &mut sb);
        let settled = fins.iter().all(|&(a_side, id)| {
            let (w, r) = if a_side {
                (sa.written[&id], sb.read.get(&id).copied().unwrap_or(0))
            } else {
                (sb.written[&id], sa.read.get(&id).copied().unwrap_or(0))
            };
            r == w || sa.reset.contains(&id) || sb.reset.contains(&id)
        });
        if settled && ab.is_empty() && ba.is_empty() {
            break;
        }
    }
    // A finished stream that was not reset on either side delivered all.
    for &(a_side, id) in &fins {
        let reset = sa.reset.contains(&id) || sb.reset.contains(&id);
        if reset {
            continue;
        }
        let (w, r) = if a_side {
            (sa.written[&id], sb.read.get(&id).copied().unwrap_or(0))
        } else {
            (sb.written[&id], sa.read.get(&id).copied().unwrap_or(0))
        };
        assert_eq!(r, w, "stream {id}: {r} of {w} bytes after healing");
    }
}
