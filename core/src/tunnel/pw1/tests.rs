//! Two connections on a virtual clock through a seeded lossy link.

extern crate std;

use super::*;
use crate::time::{at_micros, micros};
use crate::vectors::XorShift;
use std::boxed::Box;
use std::collections::{BTreeMap, VecDeque};
use std::vec;
use std::vec::Vec;

struct Mem {
    send: Vec<Chunk>,
    recv: Vec<Chunk>,
    sent: Vec<SentPacket>,
    streams: Vec<Stream>,
}

impl Mem {
    fn new(chunks: usize, streams: usize) -> Box<Mem> {
        Box::new(Mem {
            send: vec![Chunk::EMPTY; chunks],
            recv: vec![Chunk::EMPTY; 2 * chunks],
            sent: vec![SentPacket::EMPTY; 4 * chunks],
            streams: vec![Stream::EMPTY; streams],
        })
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

#[derive(Clone, Copy)]
struct Path {
    delay_us: u64,
    jitter_us: u64,
    loss_pct: u64,
    /// Bytes per second, 0 = unlimited.
    rate: u64,
    /// Drop-tail queue limit, µs of the rate.
    queue_us: u64,
}

impl Path {
    const CLEAN: Path = Path {
        delay_us: 5_000,
        jitter_us: 0,
        loss_pct: 0,
        rate: 0,
        queue_us: 0,
    };
}

struct Link {
    path: Path,
    rng: XorShift,
    busy_until: u64,
    queue: VecDeque<(u64, Vec<u8>)>,
    delivered: u64,
    dropped: u64,
}

impl Link {
    fn new(path: Path, seed: u64) -> Self {
        Link {
            path,
            rng: XorShift(seed),
            busy_until: 0,
            queue: VecDeque::new(),
            delivered: 0,
            dropped: 0,
        }
    }
    fn send(&mut self, now: u64, bytes: &[u8]) {
        if self.path.loss_pct > 0 && self.rng.next() % 1000 < self.path.loss_pct * 10 {
            self.dropped += 1;
            return;
        }
        let mut depart = now;
        if let Some(tx) = ((bytes.len() as u64 + 28) * 1_000_000).checked_div(self.path.rate) {
            let start = self.busy_until.max(now);
            if start - now > self.path.queue_us {
                self.dropped += 1;
                return;
            }
            self.busy_until = start + tx;
            depart = self.busy_until;
        }
        let jitter = if self.path.jitter_us > 0 {
            self.rng.next() % self.path.jitter_us
        } else {
            0
        };
        let at = depart + self.path.delay_us + jitter;
        // Keep the queue sorted by arrival (jitter reorders).
        let i = self.queue.partition_point(|(t, _)| *t <= at);
        self.queue.insert(i, (at, bytes.to_vec()));
    }
    fn next(&self) -> Option<u64> {
        self.queue.front().map(|(t, _)| *t)
    }
}

/// One end's local application: per stream, bytes to send and received.
#[derive(Default)]
struct App {
    out: BTreeMap<u32, (Vec<u8>, usize, bool)>,
    got: BTreeMap<u32, Vec<u8>>,
    finished: BTreeMap<u32, bool>,
    closed: Vec<u32>,
    reset: Vec<u32>,
    /// Streams whose reader is stalled.
    stalled: Vec<u32>,
}

struct Side<'a> {
    conn: Connection<'a>,
    app: App,
}

impl Side<'_> {
    fn pump_app(&mut self) {
        let ids: Vec<u32> = self.app.out.keys().copied().collect();
        for id in ids {
            let (data, at, fin) = self.app.out.get_mut(&id).unwrap();
            while *at < data.len() {
                let cap = self.conn.stream_send_capacity(id);
                if cap == 0 {
                    break;
                }
                let end = (*at + cap).min(data.len());
                let n = self.conn.stream_send(id, &data[*at..end]).unwrap();
                assert_eq!(n, end - *at, "stream_send took less than its capacity");
                *at += n;
            }
            if *at == data.len() && !*fin && self.conn.stream_finish(id).is_ok() {
                *fin = true;
            }
        }
        while let Some(id) = self.conn.poll_opened() {
            self.app.out.entry(id).or_default();
        }
        let ids: Vec<u32> = self.app.out.keys().copied().collect();
        for id in ids {
            if self.app.stalled.contains(&id) {
                continue;
            }
            loop {
                match self.conn.stream_peek(id) {
                    StreamRead::Data(d) => {
                        let n = d.len().min(3000);
                        self.app
                            .got
                            .entry(id)
                            .or_default()
                            .extend_from_slice(&d[..n]);
                        self.conn.stream_consume(id, n);
                    }
                    StreamRead::Finished => {
                        self.app.finished.insert(id, true);
                        break;
                    }
                    _ => break,
                }
            }
        }
        while let Some(e) = self.conn.poll_event() {
            match e {
                Event::StreamClosed(id) => self.app.closed.push(id),
                Event::StreamReset(id) => self.app.reset.push(id),
            }
        }
    }
}

struct Pair<'a> {
    now: u64,
    a: Side<'a>,
    b: Side<'a>,
    ab: Link,
    ba: Link,
    buf: Vec<u8>,
}

const TOKEN_A: u64 = 0xA;
const TOKEN_B: u64 = 0xB;

fn params(token: u64) -> PeerParams {
    PeerParams {
        token,
        max_streams: 256,
        initial_chunks: 8,
        max_datagram: 1400,
    }
}

impl<'a> Pair<'a> {
    fn new(ma: &'a mut Mem, mb: &'a mut Mem, ab: Path, ba: Path, seed: u64) -> Self {
        let now = at_micros(0);
        let a = Connection::new(
            Config::new(false),
            ma.storage(),
            TOKEN_A,
            params(TOKEN_B),
            now,
        )
        .unwrap();
        let pb = PeerParams {
            max_streams: 0,
            ..params(TOKEN_A)
        };
        let b = Connection::new(Config::new(true), mb.storage(), TOKEN_B, pb, now).unwrap();
        Pair {
            now: 0,
            a: Side {
                conn: a,
                app: App::default(),
            },
            b: Side {
                conn: b,
                app: App::default(),
            },
            ab: Link::new(ab, seed),
            ba: Link::new(ba, seed ^ 0xFFFF),
            buf: vec![0; 2000],
        }
    }

    /// One instant: deliver, timers, apps, transmit.
    fn step(&mut self) {
        let now = at_micros(self.now);
        while self.ab.next().is_some_and(|t| t <= self.now) {
            let (_, p) = self.ab.queue.pop_front().unwrap();
            self.ab.delivered += 1;
            let _ = self.b.conn.handle_packet(now, &p);
        }
        while self.ba.next().is_some_and(|t| t <= self.now) {
            let (_, p) = self.ba.queue.pop_front().unwrap();
            self.ba.delivered += 1;
            let _ = self.a.conn.handle_packet(now, &p);
        }
        for (side, link) in [(&mut self.a, &mut self.ab), (&mut self.b, &mut self.ba)] {
            side.conn.handle_timeout(now);
            side.pump_app();
            while let Some(n) = side.conn.poll_transmit(now, &mut self.buf) {
                link.send(self.now, &self.buf[..n]);
            }
        }
    }

    fn next_time(&self) -> Option<u64> {
        [
            self.a.conn.poll_timeout().map(micros),
            self.b.conn.poll_timeout().map(micros),
            self.ab.next(),
            self.ba.next(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs until `done` or `limit_us` of virtual time.
    fn run(&mut self, limit_us: u64, mut done: impl FnMut(&Pair<'_>) -> bool) {
        let mut spins = 0;
        loop {
            self.step();
            if done(self) {
                return;
            }
            let next = self.next_time().expect("nothing left to happen");
            assert!(next <= limit_us, "not done after {} ms", limit_us / 1000);
            if next <= self.now {
                spins += 1;
                assert!(spins < 10_000, "livelock at {} µs", self.now);
                // Something asked for "now" again; let time move on a bit.
                self.now += 1;
            } else {
                spins = 0;
                self.now = next;
            }
        }
    }
}

fn data(seed: u64, n: usize) -> Vec<u8> {
    let mut r = XorShift(seed | 1);
    (0..n).map(|_| r.next() as u8).collect()
}

/// Opens `n` streams from A, each sending `size` bytes each way, runs to
/// completion and checks every byte. Returns the virtual time taken (µs).
fn transfer(ab: Path, ba: Path, seed: u64, n: u32, size: usize, limit_us: u64) -> u64 {
    let mut ma = Mem::new(512, 64);
    let mut mb = Mem::new(512, 64);
    let mut p = Pair::new(&mut ma, &mut mb, ab, ba, seed);
    let mut ids = Vec::new();
    for k in 0..n {
        let id = p.a.conn.open_stream().unwrap();
        ids.push(id);
        p.a.app
            .out
            .insert(id, (data(seed + u64::from(k), size), 0, false));
    }
    // B answers each stream with its own bytes once it learns of it.
    let mut answered = Vec::new();
    p.run(limit_us, |p| {
        let _ = &answered;
        p.a.app.closed.len() == n as usize && p.b.app.closed.len() == n as usize
    });
    for (k, id) in ids.iter().enumerate() {
        let want = data(seed + k as u64, size);
        assert_eq!(
            p.b.app.got.get(id).map_or(0, |g| g.len()),
            size,
            "stream {id} length"
        );
        assert!(p.b.app.got[id] == want, "stream {id} bytes differ");
        answered.push(*id);
    }
    assert!(p.a.app.reset.is_empty() && p.b.app.reset.is_empty());
    assert_eq!(p.a.conn.open_streams(), 0);
    assert_eq!(p.b.conn.open_streams(), 0);
    p.now
}

#[test]
fn one_stream_clean_path_is_byte_exact() {
    let t = transfer(Path::CLEAN, Path::CLEAN, 1, 1, 300_000, 10_000_000);
    assert!(t < 2_000_000, "took {t} µs");
}

#[test]
fn lossy_reordering_path_is_byte_exact() {
    let path = Path {
        delay_us: 10_000,
        jitter_us: 4_000,
        loss_pct: 5,
        rate: 0,
        queue_us: 0,
    };
    transfer(path, path, 7, 3, 200_000, 60_000_000);
}

#[test]
fn many_streams_at_once() {
    let path = Path {
        loss_pct: 1,
        ..Path::CLEAN
    };
    transfer(path, path, 3, 32, 20_000, 60_000_000);
}

#[test]
fn goodput_lower_bound_on_a_lossy_long_path() {
    // 20 ms RTT, 1 % loss each way, 100 Mbit/s: kcptun reaches ~17 MB/s
    // here. The simulation is deterministic, so the bound cannot flake.
    let path = Path {
        delay_us: 10_000,
        jitter_us: 0,
        loss_pct: 1,
        rate: 12_500_000,
        queue_us: 20_000,
    };
    let size = 4_000_000;
    let t = transfer(path, path, 11, 1, size, 60_000_000);
    let mbps = size as f64 / t as f64;
    std::eprintln!("goodput {mbps:.2} MB/s over 20 ms RTT, 1 % loss, 12.5 MB/s");
    assert!(mbps > 5.0, "goodput {mbps:.2} MB/s");
}

#[test]
fn stalled_reader_does_not_stall_other_streams() {
    let mut ma = Mem::new(256, 8);
    let mut mb = Mem::new(256, 8);
    let mut p = Pair::new(&mut ma, &mut mb, Path::CLEAN, Path::CLEAN, 5);
    let slow = p.a.conn.open_stream().unwrap();
    let fast = p.a.conn.open_stream().unwrap();
    p.a.app.out.insert(slow, (data(1, 2_000_000), 0, false));
    p.a.app.out.insert(fast, (data(2, 500_000), 0, false));
    p.b.app.stalled.push(slow);
    p.run(20_000_000, |p| p.b.app.closed.contains(&fast));
    assert_eq!(p.b.app.got[&fast], data(2, 500_000));
    // The stalled stream holds no more than its credit.
    let held = p.b.app.got.get(&slow).map_or(0, |g| g.len());
    assert_eq!(held, 0);
    // Unstall: everything arrives.
    p.b.app.stalled.clear();
    p.run(60_000_000, |p| p.b.app.closed.contains(&slow));
    assert_eq!(p.b.app.got[&slow], data(1, 2_000_000));
}

#[test]
fn reset_reaches_the_peer_alone() {
    let mut ma = Mem::new(64, 8);
    let mut mb = Mem::new(64, 8);
    let mut p = Pair::new(&mut ma, &mut mb, Path::CLEAN, Path::CLEAN, 9);
    let doomed = p.a.conn.open_stream().unwrap();
    let ok = p.a.conn.open_stream().unwrap();
    p.a.app.out.insert(ok, (data(3, 50_000), 0, false));
    p.run(5_000_000, |p| p.b.app.out.contains_key(&doomed));
    // B's local service refused: B resets the stream.
    p.b.conn.stream_reset(doomed, code::REFUSED);
    p.b.app.out.remove(&doomed);
    p.run(5_000_000, |p| {
        p.a.app.reset.contains(&doomed) && p.b.app.closed.contains(&ok)
    });
    assert_eq!(p.b.app.got[&ok], data(3, 50_000));
    assert!(p.b.app.reset.contains(&doomed));
}

#[test]
fn junk_and_replays_never_panic_or_lose_bytes() {
    let mut ma = Mem::new(64, 8);
    let mut mb = Mem::new(64, 8);
    let mut p = Pair::new(&mut ma, &mut mb, Path::CLEAN, Path::CLEAN, 13);
    let id = p.a.conn.open_stream().unwrap();
    p.a.app.out.insert(id, (data(4, 100_000), 0, false));
    let mut rng = XorShift(99);
    let mut junk = [0u8; 1400];
    let mut seen: Vec<Vec<u8>> = Vec::new();
    // Interleave junk with the real exchange: random bytes, packets for
    // another incarnation with a valid check, truncated and replayed
    // real packets.
    for round in 0..3000u64 {
        if let Some((_, pkt)) = p.ab.queue.front()
            && seen.len() < 64
        {
            seen.push(pkt.clone());
        }
        let now = at_micros(p.now);
        let n = (rng.next() % 1400) as usize;
        for b in junk[..n].iter_mut() {
            *b = rng.next() as u8;
        }
        match round % 4 {
            0 if n > 20 => {
                junk[0] = crate::frame::pw1::MARKER;
                junk[1..9].copy_from_slice(&(TOKEN_B ^ 1).to_be_bytes());
                junk[15] = (rng.next() % 10) as u8;
                check::seal(&mut junk[..n]);
                assert_eq!(
                    p.b.conn.handle_packet(now, &junk[..n]),
                    Err(PacketError::WrongToken)
                );
            }
            1 if !seen.is_empty() => {
                let old = &seen[(rng.next() as usize) % seen.len()];
                let cut = (rng.next() as usize) % (old.len() + 1);
                let _ = p.b.conn.handle_packet(now, &old[..cut]);
            }
            _ => {
                let _ = p.b.conn.handle_packet(now, &junk[..n]);
                let _ = p.a.conn.handle_packet(now, &junk[..n]);
            }
        }
        p.step();
        p.now += 200;
    }
    p.run(30_000_000, |p| p.b.app.closed.contains(&id));
    assert_eq!(p.b.app.got[&id], data(4, 100_000));
    assert!(p.b.conn.stats().bad.total() > 1000);
}

#[test]
fn sizes_fit_a_microcontroller() {
    use core::mem::size_of;
    let sizes = [
        ("Chunk", size_of::<Chunk>()),
        ("SentPacket", size_of::<SentPacket>()),
        ("Stream", size_of::<Stream>()),
        ("Connection", size_of::<Connection<'static>>()),
        (
            "Tunnel<1400>",
            size_of::<crate::tunnel::Tunnel<'static, 1400>>(),
        ),
    ];
    for (n, s) in sizes {
        std::eprintln!("size_of {n} = {s}");
    }
    assert!(size_of::<Chunk>() <= CHUNK_CAP + 40);
    assert!(size_of::<SentPacket>() <= 128);
    assert!(size_of::<Stream>() <= 160);
    assert!(size_of::<Connection<'static>>() <= 2048);
    // The firmware's pw1 memory: 16 chunks each way, 64 sent records, 4
    // streams, and the machine: well inside 64 KB.
    let firmware = 32 * size_of::<Chunk>()
        + 64 * size_of::<SentPacket>()
        + 4 * size_of::<Stream>()
        + size_of::<Connection<'static>>();
    std::eprintln!("firmware pw1 memory = {firmware}");
    assert!(firmware <= 64 * 1024);
}

#[test]
fn a_peer_that_closes_after_its_stream_finished_loses_nothing() {
    let mut ma = Mem::new(64, 8);
    let mut mb = Mem::new(64, 8);
    let mut p = Pair::new(&mut ma, &mut mb, Path::CLEAN, Path::CLEAN, 17);
    let id = p.a.conn.open_stream().unwrap();
    // A sends nothing and finishes at once; its reader is stalled.
    p.a.app.out.insert(id, (Vec::new(), 0, false));
    p.a.app.stalled.push(id);
    p.run(5_000_000, |p| p.b.app.out.contains_key(&id));
    // Within the initial credit (8 chunks): it all fits without A reading.
    p.b.app.out.insert(id, (data(8, 8_000), 0, false));
    // B's side of the stream completes (A holds every byte, acked)...
    p.run(10_000_000, |p| p.b.app.closed.contains(&id));
    assert!(p.a.app.got.get(&id).is_none_or(|g| g.is_empty()));
    // ...and B goes away before A's local side read anything.
    p.b.conn.close(code::CLOSING);
    p.run(10_000_000, |p| p.a.conn.peer_closed());
    p.a.app.stalled.clear();
    p.run(10_000_000, |p| {
        p.a.app.closed.contains(&id) || p.a.app.reset.contains(&id)
    });
    assert!(p.a.app.closed.contains(&id), "finished, not reset");
    assert_eq!(p.a.app.got[&id], data(8, 8_000));
}
