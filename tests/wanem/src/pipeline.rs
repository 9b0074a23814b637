//! The impairment pipeline of one direction, free of I/O so it can be unit
//! tested with a virtual clock.
//!
//! Order of the stages, as a packet meets them:
//!
//! 1. random loss (Bernoulli, `loss`)
//! 2. bursty loss (Gilbert-Elliott two-state chain, `ge`)
//! 3. rate limit: a token bucket (`rate`, `burst`) in front of a FIFO queue that
//!    holds at most `queue` worth of waiting time; a packet that would wait
//!    longer is tail-dropped
//! 4. propagation delay `delay` plus uniform jitter in `[-jitter, +jitter]`;
//!    jitter alone never reorders (release times are kept monotonic)
//! 5. reordering: with probability `reorder` a packet is held back an extra
//!    `reorder_delay`, so the packets behind it overtake it
//! 6. duplication: with probability `dup` a second copy is released right after
//!    the original
//!
//! Times are plain `u64` nanoseconds on a monotonic clock.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// splitmix64: tiny, fast, seedable, good enough for impairment decisions.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `p` (0..=1). `p == 0` never draws a number, so
    /// enabling one impairment does not change another's random sequence.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }
}

/// Gilbert-Elliott parameters, all probabilities in 0..=1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GeParams {
    /// P(good -> bad) per packet.
    pub p: f64,
    /// P(bad -> good) per packet.
    pub r: f64,
    /// Loss probability while in the bad state.
    pub loss_bad: f64,
    /// Loss probability while in the good state.
    pub loss_good: f64,
}

impl GeParams {
    /// Long-run loss rate of the chain.
    pub fn mean_loss(&self) -> f64 {
        let pi_bad = if self.p + self.r > 0.0 {
            self.p / (self.p + self.r)
        } else {
            0.0
        };
        pi_bad * self.loss_bad + (1.0 - pi_bad) * self.loss_good
    }
}

#[derive(Clone, Debug, Default)]
pub struct GeState {
    pub bad: bool,
}

impl GeState {
    /// Advance the chain by one packet; true if that packet is lost.
    pub fn step(&mut self, g: &GeParams, rng: &mut Rng) -> bool {
        if self.bad {
            if rng.chance(g.r) {
                self.bad = false;
            }
        } else if rng.chance(g.p) {
            self.bad = true;
        }
        rng.chance(if self.bad { g.loss_bad } else { g.loss_good })
    }
}

/// Token bucket in virtual time. Tokens may go negative ("debt"): a packet
/// that finds too few tokens is scheduled to leave when the debt is repaid,
/// which makes the bucket a FIFO queue served at `rate`.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    /// bytes per nanosecond
    rate: f64,
    burst: f64,
    tokens: f64,
    last_ns: u64,
}

impl TokenBucket {
    pub fn new(rate_bits_per_s: u64, burst_bytes: u64) -> Self {
        let burst = burst_bytes.max(1) as f64;
        TokenBucket {
            rate: rate_bits_per_s as f64 / 8.0 / 1e9,
            burst,
            tokens: burst,
            last_ns: 0,
        }
    }

    fn refill(&mut self, now_ns: u64) {
        if now_ns > self.last_ns {
            self.tokens =
                (self.tokens + (now_ns - self.last_ns) as f64 * self.rate).min(self.burst);
            self.last_ns = now_ns;
        }
    }

    /// Reserve `size` bytes at `now_ns`. Returns the time the packet may leave,
    /// or `None` (and reserves nothing) if it would have to wait longer than
    /// `max_wait_ns`.
    pub fn reserve(&mut self, now_ns: u64, size: usize, max_wait_ns: u64) -> Option<u64> {
        self.refill(now_ns);
        let after = self.tokens - size as f64;
        if after >= 0.0 {
            self.tokens = after;
            return Some(now_ns);
        }
        let wait = (-after / self.rate).ceil() as u64;
        if wait > max_wait_ns {
            return None;
        }
        self.tokens = after;
        Some(now_ns + wait)
    }
}

/// Impairments of one direction.
#[derive(Clone, Debug, PartialEq)]
pub struct DirConfig {
    pub delay_ns: u64,
    pub jitter_ns: u64,
    /// 0..=1
    pub loss: f64,
    pub ge: Option<GeParams>,
    /// 0..=1
    pub dup: f64,
    /// 0..=1
    pub reorder: f64,
    pub reorder_delay_ns: u64,
    /// bits per second; `None` = unlimited
    pub rate_bps: Option<u64>,
    pub burst_bytes: u64,
    pub queue_ns: u64,
    /// Largest IPv4 packet (IP header included) forwarded; 0 = no limit.
    pub mtu: usize,
}

impl Default for DirConfig {
    fn default() -> Self {
        DirConfig {
            delay_ns: 0,
            jitter_ns: 0,
            loss: 0.0,
            ge: None,
            dup: 0.0,
            reorder: 0.0,
            reorder_delay_ns: 10_000_000,
            rate_bps: None,
            burst_bytes: 3028,
            queue_ns: 50_000_000,
            mtu: 1500,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub received: u64,
    pub sent: u64,
    pub lost_random: u64,
    pub lost_ge: u64,
    pub dropped_queue: u64,
    pub dropped_mtu: u64,
    pub dropped_ttl: u64,
    pub dropped_send: u64,
    pub duplicated: u64,
    pub reordered: u64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Queued,
    LostRandom,
    LostGe,
    DroppedQueue,
}

struct Pending {
    release_ns: u64,
    seq: u64,
    data: Vec<u8>,
}

impl PartialEq for Pending {
    fn eq(&self, o: &Self) -> bool {
        (self.release_ns, self.seq) == (o.release_ns, o.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Pending {
    // Reversed: BinaryHeap is a max-heap, we want the earliest release first.
    fn cmp(&self, o: &Self) -> Ordering {
        (o.release_ns, o.seq).cmp(&(self.release_ns, self.seq))
    }
}

/// One direction: configuration, random state and the release queue.
pub struct Direction {
    pub cfg: DirConfig,
    pub stats: Stats,
    rng: Rng,
    ge: GeState,
    bucket: Option<TokenBucket>,
    heap: BinaryHeap<Pending>,
    seq: u64,
    last_release_ns: u64,
}

impl Direction {
    pub fn new(cfg: DirConfig, seed: u64) -> Self {
        let bucket = cfg.rate_bps.map(|r| TokenBucket::new(r, cfg.burst_bytes));
        Direction {
            cfg,
            stats: Stats::default(),
            rng: Rng::new(seed),
            ge: GeState::default(),
            bucket,
            heap: BinaryHeap::new(),
            seq: 0,
            last_release_ns: 0,
        }
    }

    /// Run a packet (the whole frame; `size` is what the rate limit counts)
    /// through the pipeline at `now_ns`.
    pub fn ingest(&mut self, now_ns: u64, data: Vec<u8>, size: usize) -> Verdict {
        self.stats.received += 1;
        if self.rng.chance(self.cfg.loss) {
            self.stats.lost_random += 1;
            return Verdict::LostRandom;
        }
        if let Some(g) = self.cfg.ge
            && self.ge.step(&g, &mut self.rng)
        {
            self.stats.lost_ge += 1;
            return Verdict::LostGe;
        }
        let depart = match &mut self.bucket {
            Some(b) => match b.reserve(now_ns, size, self.cfg.queue_ns) {
                Some(t) => t,
                None => {
                    self.stats.dropped_queue += 1;
                    return Verdict::DroppedQueue;
                }
            },
            None => now_ns,
        };
        let mut delay = self.cfg.delay_ns as i64;
        if self.cfg.jitter_ns > 0 {
            let j = self.cfg.jitter_ns as i64;
            delay += (self.rng.next_u64() % (2 * j as u64 + 1)) as i64 - j;
        }
        let mut release = depart + delay.max(0) as u64;
        // Jitter does not reorder: keep release times monotonic.
        release = release.max(self.last_release_ns);
        if self.rng.chance(self.cfg.reorder) {
            // Held back; the ones behind it overtake it. Not part of the
            // monotonic chain.
            self.stats.reordered += 1;
            release += self.cfg.reorder_delay_ns;
        } else {
            self.last_release_ns = release;
        }
        if self.rng.chance(self.cfg.dup) {
            self.stats.duplicated += 1;
            self.push(release, data.clone());
        }
        self.push(release, data);
        Verdict::Queued
    }

    fn push(&mut self, release_ns: u64, data: Vec<u8>) {
        self.seq += 1;
        self.heap.push(Pending {
            release_ns,
            seq: self.seq,
            data,
        });
    }

    /// Earliest release time waiting, if any.
    pub fn next_release(&self) -> Option<u64> {
        self.heap.peek().map(|p| p.release_ns)
    }

    /// Next packet due at `now_ns`, in release order.
    pub fn pop_due(&mut self, now_ns: u64) -> Option<Vec<u8>> {
        if self.heap.peek()?.release_ns <= now_ns {
            self.heap.pop().map(|p| p.data)
        } else {
            None
        }
    }

    #[cfg(test)]
    pub fn queued(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn drain(d: &mut Direction, now: u64) -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        while let Some(p) = d.pop_due(now) {
            v.push(p);
        }
        v
    }

    fn pkt(i: u32) -> Vec<u8> {
        i.to_be_bytes().to_vec()
    }

    fn id(p: &[u8]) -> u32 {
        u32::from_be_bytes(p[..4].try_into().unwrap())
    }

    #[test]
    fn no_impairment_is_immediate_and_ordered() {
        let mut d = Direction::new(DirConfig::default(), 1);
        for i in 0..100 {
            assert_eq!(d.ingest(5, pkt(i), 1400), Verdict::Queued);
        }
        assert_eq!(d.next_release(), Some(5));
        let out: Vec<u32> = drain(&mut d, 5).iter().map(|p| id(p)).collect();
        assert_eq!(out, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn random_loss_rate() {
        let cfg = DirConfig {
            loss: 0.10,
            ..Default::default()
        };
        let mut d = Direction::new(cfg, 42);
        let n = 200_000;
        for i in 0..n {
            d.ingest(0, pkt(i), 100);
        }
        let lost = d.stats.lost_random as f64 / n as f64;
        assert!((0.095..0.105).contains(&lost), "loss {lost}");
        assert_eq!(
            drain(&mut d, 0).len() as u64,
            n as u64 - d.stats.lost_random
        );
    }

    #[test]
    fn seed_determinism() {
        let cfg = DirConfig {
            loss: 0.3,
            dup: 0.1,
            jitter_ns: 3 * MS,
            delay_ns: 5 * MS,
            ..Default::default()
        };
        let run = |seed| {
            let mut d = Direction::new(cfg.clone(), seed);
            let v: Vec<Verdict> = (0..1000)
                .map(|i| d.ingest(i * MS, pkt(i as u32), 1))
                .collect();
            (v, drain(&mut d, u64::MAX))
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn gilbert_elliott_mean_and_burstiness() {
        let g = GeParams {
            p: 0.01,
            r: 0.25,
            loss_bad: 1.0,
            loss_good: 0.0,
        };
        let cfg = DirConfig {
            ge: Some(g),
            ..Default::default()
        };
        let mut d = Direction::new(cfg, 3);
        let n = 400_000;
        let mut bursts = 0u64;
        let mut prev_lost = false;
        for i in 0..n {
            let lost = d.ingest(0, pkt(i), 1) == Verdict::LostGe;
            if lost && !prev_lost {
                bursts += 1;
            }
            prev_lost = lost;
            if i % 10_000 == 0 {
                drain(&mut d, 0);
            }
        }
        let rate = d.stats.lost_ge as f64 / n as f64;
        let expect = g.mean_loss(); // 3.85 %
        assert!((rate - expect).abs() < 0.006, "rate {rate} expect {expect}");
        // Mean burst length 1/r = 4 packets: clearly bursty, unlike Bernoulli.
        let mean_burst = d.stats.lost_ge as f64 / bursts as f64;
        assert!((3.5..4.5).contains(&mean_burst), "burst {mean_burst}");
    }

    #[test]
    fn delay_and_jitter_keep_order() {
        let cfg = DirConfig {
            delay_ns: 20 * MS,
            jitter_ns: 5 * MS,
            ..Default::default()
        };
        let mut d = Direction::new(cfg, 9);
        let mut sent_at = Vec::new();
        let mut got = Vec::new();
        for i in 0..2000u64 {
            let t = i * MS / 4; // 4 packets per ms: much closer than the jitter
            sent_at.push(t);
            d.ingest(t, pkt(i as u32), 100);
            // Poll at the same instants a real loop would.
            for p in drain(&mut d, t) {
                got.push((id(&p), t));
            }
        }
        let mut t = 2000 * MS / 4;
        while d.queued() > 0 {
            t = d.next_release().unwrap();
            for p in drain(&mut d, t) {
                got.push((id(&p), t));
            }
        }
        assert_eq!(got.len(), 2000);
        for (k, (i, at)) in got.iter().enumerate() {
            assert_eq!(*i as usize, k, "jitter reordered");
            let lat = at - sent_at[*i as usize];
            assert!(lat >= 15 * MS, "latency {lat} below delay-jitter");
        }
        let _ = t;
    }

    #[test]
    fn reorder_overtakes() {
        let cfg = DirConfig {
            delay_ns: 10 * MS,
            reorder: 0.2,
            reorder_delay_ns: 5 * MS,
            ..Default::default()
        };
        let mut d = Direction::new(cfg, 11);
        for i in 0..1000u64 {
            d.ingest(i * MS, pkt(i as u32), 100);
        }
        let out: Vec<u32> = drain(&mut d, u64::MAX).iter().map(|p| id(p)).collect();
        assert_eq!(out.len(), 1000);
        let inversions = out.windows(2).filter(|w| w[0] > w[1]).count();
        let held = d.stats.reordered as usize;
        assert!((150..250).contains(&held), "held {held}");
        assert!(
            inversions >= held * 9 / 10,
            "inversions {inversions} held {held}"
        );
    }

    #[test]
    fn duplication_rate() {
        let cfg = DirConfig {
            dup: 0.05,
            ..Default::default()
        };
        let mut d = Direction::new(cfg, 5);
        for i in 0..100_000 {
            d.ingest(0, pkt(i), 1);
        }
        let out = drain(&mut d, 0).len();
        assert!((104_500..105_500).contains(&out), "out {out}");
    }

    #[test]
    fn token_bucket_rate_and_burst() {
        // 8 Mbit/s = 1 byte per microsecond; burst 3000 bytes.
        let mut b = TokenBucket::new(8_000_000, 3000);
        // Burst passes at once.
        assert_eq!(b.reserve(0, 1500, u64::MAX), Some(0));
        assert_eq!(b.reserve(0, 1500, u64::MAX), Some(0));
        // Then one 1000-byte packet per 1000 us.
        assert_eq!(b.reserve(0, 1000, u64::MAX), Some(1_000_000));
        assert_eq!(b.reserve(0, 1000, u64::MAX), Some(2_000_000));
        // A packet that would wait past the limit is refused and costs nothing.
        assert_eq!(b.reserve(0, 1000, 2_500_000), None);
        assert_eq!(b.reserve(0, 1000, u64::MAX), Some(3_000_000));
        // After idling, the bucket refills to the burst and no further.
        assert_eq!(b.reserve(1_000_000_000, 3000, 0), Some(1_000_000_000));
        assert_eq!(b.reserve(1_000_000_000, 1, 0), None);
    }

    #[test]
    fn rate_limit_holds_under_overload() {
        // 10 Mbit/s link offered 20 Mbit/s of 1250-byte packets for 2 s.
        let cfg = DirConfig {
            rate_bps: Some(10_000_000),
            queue_ns: 20 * MS,
            ..Default::default()
        };
        let mut d = Direction::new(cfg, 1);
        let mut out_bytes = 0u64;
        let mut last = 0u64;
        let step = 500_000; // one packet every 0.5 ms = 20 Mbit/s
        for i in 0..4000u64 {
            let t = i * step;
            d.ingest(t, vec![0; 1250], 1250);
            while let Some(p) = d.pop_due(t) {
                out_bytes += p.len() as u64;
                last = t;
            }
        }
        let mbit = out_bytes as f64 * 8.0 / (last as f64 / 1e9) / 1e6;
        assert!((9.7..10.3).contains(&mbit), "rate {mbit}");
        assert!(
            d.stats.dropped_queue > 1800,
            "drops {}",
            d.stats.dropped_queue
        );
        // Queueing delay stays bounded by the queue limit.
        assert!(d.next_release().unwrap() <= last + step + 21 * MS);
    }
}
