//! A deterministic simulated network on a virtual clock, implementing the
//! core's socket traits ([`Udp`], [`Tcp`], [`Wait`]) so the real tunnel
//! driver and machines run on it unchanged.
//!
//! # What it models
//! * A [`World`]: one virtual clock (µs, [`Instant`]), nodes with one IPv4
//!   address each, and a seeded PRNG (xoshiro256\*\* seeded by splitmix64;
//!   one stream per path, derived from the world seed and the path's two
//!   nodes, so traffic on one path never changes the randomness of
//!   another). Same seed and same calls ⇒ identical run, bit for bit.
//!   Nothing reads the wall clock or sleeps; everything is single-threaded
//!   (`Rc<RefCell<..>>` inside).
//! * Per-direction **paths** between nodes ([`PathConfig`]), applied to each
//!   datagram in this order: blackout (`down`), MTU (an IPv4 datagram of
//!   28 + payload bytes above `mtu` is dropped), TTL (`ttl <= hops` is
//!   dropped; `hops = 0` never expires), random loss, Gilbert-Elliott burst
//!   loss, the rate limit with its drop-tail queue (bytes or ms of queue at
//!   the configured rate; the rate counts the 28 + payload bytes), one-way
//!   delay ± uniform jitter, reordering (a chosen datagram gets extra delay
//!   and may overtake later ones), duplication (the copy goes through the
//!   queue and the delay again), bit-flip corruption (one random payload
//!   bit of the original). Without reordering a path is FIFO: jitter
//!   alone does not reorder (unlike netem), set `keep_order: false` for the
//!   netem behaviour. Settings change at run time ([`World::set_path`],
//!   [`World::schedule_path`], e.g. a blackout for a while). Counters per
//!   path ([`PathStats`]).
//! * **UDP** per node: bind (port 0 picks an ephemeral port, a taken port is
//!   `AddrInUse`), send (never blocks; to an unknown address the datagram
//!   is dropped and counted in [`WorldStats::unroutable`]), a bounded
//!   receive queue per socket (payload + 768 bytes per datagram, as the
//!   kernel charges truesize; overflow dropped and counted), the TTL of
//!   every datagram recorded in the [trace](World::trace).
//! * **Local TCP**, the service side the tunnel uses: listeners that test
//!   clients connect to ([`World::connect_client`]), connects to services
//!   the test registers ([`World::serve`], see [`Service`]: accept, refuse,
//!   accept but never read, echo, or the server of the
//!   [transfer app](World::start_transfer), optionally a slow reader). A connection
//!   is two bounded byte pipes (one socket buffer per direction, default
//!   64 KiB) with FIN, RST and partial writes. Loopback is instant: bytes
//!   written are readable at the same virtual instant. A connect to a local
//!   service is `Pending` for [`World::set_local_connect_delay`] (50 µs).
//!   Linux's close rules are kept: closing with unread received bytes
//!   resets the peer, writing to a closed peer resets the writer.
//! * **Apps** for the tests: [`AppStream`] is the far end of a local
//!   connection, driven by hand (write, read, shutdown, close, reset, a
//!   receive limit to stall it, a read rate to make it slow, resume); the
//!   **transfer app** sends a seeded pseudo-random stream ([`fill_stream`])
//!   each way and checks every byte it receives (in order, exact, complete,
//!   never more), recording when it finished ([`TransferReport`], with
//!   goodput). Apps run inside the world: after every node poll and every
//!   event the runner lets them move bytes, so a node sees their progress
//!   at the same virtual instant.
//! * **Faults**: [`World::inject`] (forged or junk datagrams from any
//!   address, e.g. floods), [`World::restart`] (all of a node's sockets
//!   vanish as after kill -9: the kernel closes them, local peers see FIN or
//!   RST), [`World::rebind`] (NAT rebinding: a node's datagrams from one
//!   port appear from another, and replies to that port reach the socket),
//!   [`World::set_nat`] (a NAT in front of a node, Linux conntrack style:
//!   port-preserving or port-randomising, port-restricted filtering).
//! * A **runner** ([`World::run`]) for several nodes, each a [`Stepper`]:
//!   poll every node, then advance the clock to the earliest of the nodes'
//!   deadlines and the world's next event, with a livelock guard.
//!
//! # What it does not model
//! No IP fragmentation (too big is dropped), no ICMP (an unbound port or a
//! dropped datagram tells the sender nothing; `Refused`/`Unreachable`
//! never come from UDP), no NAT beyond [`World::rebind`] and
//! [`World::set_nat`] (no mapping timeouts, no hairpinning), no
//! congestion on the loopback (local TCP has no delay and no rate), no TCP
//! over the simulated paths (the punch methods `tcp_bind_reuse`,
//! `tcp_connect`, `tcp_set_ttl` answer `Err(NetError::Other(95))`), no
//! send-side UDP buffer unless a node has an uplink ([`World::set_uplink`];
//! without one `udp_send_to` never answers `WouldBlock`), no
//! IPv6, no per-packet CPU cost (the driver's work takes no virtual time).
//!
//! # Run loop
//! Two or more nodes: implement [`Stepper`] for each (the driver's `poll`;
//! any `FnMut(&mut SimNet) -> Option<Instant>` is one), then
//! `world.run(&mut [(&mut net_a, &mut a), (&mut net_b, &mut b)], until,
//! time_limit)`. Each round polls every node; if a node answered a deadline
//! at or before now, or a poll changed something another node or app can
//! see (a datagram arrived, an app moved bytes), the next round runs at the
//! same instant; otherwise the clock jumps to the earliest deadline or
//! event. A node answering `Some(now)` 1000 rounds in a row, or 100 000
//! rounds at one instant, panics with the node's name ([`RunLimits`]).
//! One node alone may also use the blocking contract: [`Wait::wait`]
//! advances the world to the earlier of the deadline and the next world
//! event (that would starve other nodes' timers, so use the runner for more
//! than one).
//!
//! A two-peer tunnel test, in outline: nodes A and B; `world.link(a, b,
//! path)`; A's driver listens on 7000 (`tcp_listen`), B's connects to 8000
//! (`tcp_connect_local`); `world.serve(b, 8000, Service::Transfer)`; 32 ×
//! `world.start_transfer(a, 7000, spec)`; `world.run(.., World::transfers_settled,
//! limit)`; then assert every [`TransferReport::is_done`] and a lower bound
//! on [`TransferReport::goodput`]. A peer restart is [`World::restart`] and a
//! new driver on the same [`SimNet`].
//!
//! With the `pw1` branch's driver (as tried on 2026-12-01; names may have
//! moved since), one node's stepper is a closure around `Driver::poll`:
//!
//! ```ignore
//! let mut da = Driver::new(&mut na, tunnel_a, DriverConfig { udp_port: 9000,
//!     local: Local::Listen(7000), stats_every_ms: None }, bufs_a)?;
//! let mut sa = |net: &mut SimNet| match da.poll(net, &mut |_e| Flow::Continue).unwrap() {
//!     Poll::Wait(deadline) => deadline,
//!     Poll::Done => None,
//! };
//! // … the same for B with Local::Connect(8000) …
//! world.serve(b, 8000, Service::Transfer);
//! let ids: Vec<_> = (0..32)
//!     .map(|i| world.start_transfer(a, 7000, TransferSpec { seed: i, up: 300_000, down: 300_000 }))
//!     .collect();
//! world.run(&mut [(&mut na, &mut sa), (&mut nb, &mut sb)], World::transfers_settled,
//!     at_millis(60_000))?;
//! assert!(ids.iter().all(|&i| world.transfer(i).is_done()));
//! ```
//!
//! A restart: `world.restart(b)`, drop B's old driver, build a new one
//! (new token) on the same `SimNet`, run on.
//!
//! # The issue's paths
//! `world.link(a, b, cfg)` applies `cfg` to each direction, so delays and
//! loss are per direction (the lab's netem settings):
//! * 20 ms RTT, 1 % loss each way: `PathConfig::new().delay_ms(10).loss(0.01)`
//! * 50 ms RTT, 2 % loss, 100 Mbit/s: `.delay_ms(25).loss(0.02).rate_mbit(100)`
//!   (queue 100 ms unless [`PathConfig::queue`] says otherwise)
//! * reordering + duplication: `.delay_ms(10).jitter_ms(2).reorder(0.01, 5).duplicate(0.01)`
//! * burst loss: `.burst(GilbertElliott { enter_bad: 0.01, leave_bad: 0.25,
//!   loss_good: 0.0, loss_bad: 1.0 })` (3.8 % mean, bursts of 4)
//! * a blackout: [`World::schedule_path`] with `.down(true)`, then the old
//!   config.
//!
//! # Speed (debug build, this 2-core machine shared with other builds)
//! * 36 000 datagrams of 1400 bytes (50 MB) through a 100 Mbit/s path with
//!   delay, jitter, loss, reordering and duplication: 0.04–0.12 s; the
//!   same with 256 idle transfer apps open: 0.09 s (apps only run when
//!   their connection was touched).
//! * 32 transfer-app streams of 0.8 MB each way (51 MB generated and
//!   checked byte for byte) through a local splice: 0.33–0.7 s; 256
//!   streams of 100 kB each way: 0.4 s. Generating the stream costs about
//!   5 ms per MB in debug builds, checking it as much again.
//! * The `pw1` branch's real driver and machines on both nodes (WIP of
//!   2026-12-01), 32 streams × 300 kB each way over 20 ms RTT + 1 % loss:
//!   2.7 s wall for 0.3 s of virtual time; 4 × 5 MB over 50 ms + 2 % +
//!   100 Mbit/s: 1.7 s wall. The machines, not the simnet, take most of it.
//! * The self-tests (`cargo test -p punchwire-tests --test simnet`): 0.3 s.
//!
//! # Example
//! ```
//! use punchwire_core::net::Udp;
//! use punchwire_core::time::at_millis;
//! use punchwire_tests::simnet::{PathConfig, World};
//! use std::net::{Ipv4Addr, SocketAddrV4};
//!
//! let world = World::new(7);
//! let a = world.add_node(Ipv4Addr::new(10, 0, 0, 1));
//! let b = world.add_node(Ipv4Addr::new(10, 0, 0, 2));
//! world.link(a, b, PathConfig::new().delay_ms(10));
//! let (mut na, mut nb) = (world.net(a), world.net(b));
//! let sa = na.udp_bind(1000).unwrap();
//! let sb = nb.udp_bind(2000).unwrap();
//! na.udp_send_to(sa, b"hi", SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 2000)).unwrap();
//! world.advance_to(at_millis(10));
//! let mut buf = [0; 64];
//! assert_eq!(nb.udp_recv_from(sb, &mut buf).unwrap().0, 2);
//! ```

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::rc::Rc;

use punchwire_core::net::{ConnectStatus, NetError, NetResult, Tcp, Udp, Wait};
use punchwire_core::time::{self, Instant};

/// `EOPNOTSUPP`: what the punch-only TCP methods answer.
pub const UNSUPPORTED: i32 = 95;

/// The largest UDP payload over IPv4.
pub const MAX_UDP_PAYLOAD: usize = 65_507;

/// IPv4 + UDP header bytes added to every payload for the MTU and the rate.
pub const UDP_OVERHEAD: usize = 28;

/// What a queued datagram costs a receive queue besides its payload, as
/// the kernel charges a socket buffer's truesize: a flood of tiny
/// datagrams fills the queue after a few hundred, not after 256 Ki.
pub const RX_OVERHEAD: usize = 768;

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

// ---------------------------------------------------------------- PRNG ----

/// One splitmix64 step: a well-mixed 64-bit value from any 64-bit input.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(GOLDEN);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xoshiro256\*\* seeded through splitmix64: small, fast, good enough for
/// loss decisions; deterministic per seed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// The generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        let mut x = seed;
        let mut s = [0; 4];
        for v in &mut s {
            *v = splitmix64(x);
            x = x.wrapping_add(GOLDEN);
        }
        Rng { s }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let out = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        out
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `p`. Draws nothing when `p <= 0`, so a
    /// disabled impairment does not shift the others' random numbers.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }
}

/// Fills `buf` with the transfer stream of `seed` from byte `offset` on:
/// byte `i` of the stream is byte `i % 8` (little end first) of
/// `splitmix64(seed ^ (i / 8) * GOLDEN)`. Random access, so a receiver
/// checks any chunk without keeping state.
pub fn fill_stream(seed: u64, offset: u64, buf: &mut [u8]) {
    let word = |w: u64| splitmix64(seed ^ w.wrapping_mul(GOLDEN)).to_le_bytes();
    // A partial first word, then whole words (the hot path: the lead's
    // tests push tens of MB through debug builds), then a partial last one.
    let skip = (offset % 8) as usize;
    let head = if skip == 0 {
        0
    } else {
        (8 - skip).min(buf.len())
    };
    if head > 0 {
        buf[..head].copy_from_slice(&word(offset / 8)[skip..skip + head]);
    }
    let first = offset.div_ceil(8);
    let mut chunks = buf[head..].chunks_exact_mut(8);
    let mut w = first;
    for chunk in &mut chunks {
        chunk.copy_from_slice(&word(w));
        w += 1;
    }
    let tail = chunks.into_remainder();
    let n = tail.len();
    tail.copy_from_slice(&word(w)[..n]);
}

/// The seed of a transfer's server-to-client stream.
pub fn down_seed(seed: u64) -> u64 {
    splitmix64(seed ^ 0xD0D0_D0D0_D0D0_D0D0)
}

// --------------------------------------------------------------- paths ----

/// Gilbert-Elliott burst loss: a two-state Markov chain stepped once per
/// datagram. Mean loss is `(enter_bad·loss_bad + leave_bad·loss_good) /
/// (enter_bad + leave_bad)`; mean burst length (in the bad state) is
/// `1 / leave_bad` datagrams.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GilbertElliott {
    /// Probability of going from good to bad, per datagram.
    pub enter_bad: f64,
    /// Probability of going from bad to good, per datagram.
    pub leave_bad: f64,
    /// Loss probability in the good state.
    pub loss_good: f64,
    /// Loss probability in the bad state.
    pub loss_bad: f64,
}

impl GilbertElliott {
    /// The long-run loss rate.
    pub fn mean_loss(&self) -> f64 {
        let total = self.enter_bad + self.leave_bad;
        if total <= 0.0 {
            return self.loss_good;
        }
        (self.enter_bad * self.loss_bad + self.leave_bad * self.loss_good) / total
    }
}

/// How much a rate-limited path queues before it drops (drop-tail).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueLimit {
    /// At most this many bytes (IPv4 datagram sizes) waiting or in
    /// transmission.
    Bytes(u64),
    /// At most this many milliseconds of transmission at the path's rate.
    Millis(u64),
}

/// The impairments of one direction of a path. Probabilities are in
/// `[0, 1]`. Build with the chained setters: `PathConfig::new().delay_ms(10)
/// .loss(0.01).rate_mbit(100)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PathConfig {
    /// One-way delay, µs.
    pub delay_us: u64,
    /// Uniform jitter around the delay, ± µs (the delay never goes below 0).
    pub jitter_us: u64,
    /// Without reordering, datagrams arrive in send order even with jitter
    /// (a datagram is held behind an earlier one). `false`: netem-style,
    /// jitter reorders.
    pub keep_order: bool,
    /// Independent random loss probability.
    pub loss: f64,
    /// Burst loss, applied after `loss`.
    pub burst: Option<GilbertElliott>,
    /// Probability that a datagram is delivered twice.
    pub duplicate: f64,
    /// Probability that a datagram is held back by `reorder_delay_us`.
    pub reorder: f64,
    /// Extra delay of a reordered datagram, µs.
    pub reorder_delay_us: u64,
    /// Probability that one random bit of a delivered datagram's payload
    /// is flipped (no checksum catches it; the duplicate, if any, is
    /// clean).
    pub corrupt: f64,
    /// Bottleneck rate in bytes per second of IPv4 datagrams; `None`:
    /// unlimited.
    pub rate: Option<u64>,
    /// The bottleneck's queue (only with `rate`).
    pub queue: QueueLimit,
    /// Largest IPv4 datagram (28 + payload bytes) the path carries.
    pub mtu: usize,
    /// Routers on the path: a datagram with `ttl <= hops` expires on the
    /// way. 0: TTL never expires.
    pub hops: u8,
    /// Blackout: every datagram is dropped.
    pub down: bool,
}

impl Default for PathConfig {
    fn default() -> Self {
        PathConfig::new()
    }
}

impl PathConfig {
    /// A perfect path: no delay, no loss, no rate limit, MTU 1500, TTL
    /// never expires; 100 ms of queue once a rate is set.
    pub const fn new() -> PathConfig {
        PathConfig {
            delay_us: 0,
            jitter_us: 0,
            keep_order: true,
            loss: 0.0,
            burst: None,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay_us: 0,
            corrupt: 0.0,
            rate: None,
            queue: QueueLimit::Millis(100),
            mtu: 1500,
            hops: 0,
            down: false,
        }
    }

    /// One-way delay in ms.
    pub const fn delay_ms(mut self, ms: u64) -> Self {
        self.delay_us = ms * 1000;
        self
    }

    /// One-way delay in µs.
    pub const fn delay_us(mut self, us: u64) -> Self {
        self.delay_us = us;
        self
    }

    /// Jitter ± ms.
    pub const fn jitter_ms(mut self, ms: u64) -> Self {
        self.jitter_us = ms * 1000;
        self
    }

    /// Whether jitter keeps send order (default true).
    pub const fn keep_order(mut self, keep: bool) -> Self {
        self.keep_order = keep;
        self
    }

    /// Random loss probability.
    pub const fn loss(mut self, p: f64) -> Self {
        self.loss = p;
        self
    }

    /// Gilbert-Elliott burst loss.
    pub const fn burst(mut self, ge: GilbertElliott) -> Self {
        self.burst = Some(ge);
        self
    }

    /// Duplication probability.
    pub const fn duplicate(mut self, p: f64) -> Self {
        self.duplicate = p;
        self
    }

    /// Reordering: probability and the extra delay in ms.
    pub const fn reorder(mut self, p: f64, extra_ms: u64) -> Self {
        self.reorder = p;
        self.reorder_delay_us = extra_ms * 1000;
        self
    }

    /// Bit-flip corruption probability.
    pub const fn corrupt(mut self, p: f64) -> Self {
        self.corrupt = p;
        self
    }

    /// Rate limit in bytes per second.
    pub const fn rate(mut self, bytes_per_sec: u64) -> Self {
        self.rate = Some(bytes_per_sec);
        self
    }

    /// Rate limit in Mbit/s.
    pub const fn rate_mbit(self, mbit: u64) -> Self {
        self.rate(mbit * 125_000)
    }

    /// The bottleneck queue.
    pub const fn queue(mut self, q: QueueLimit) -> Self {
        self.queue = q;
        self
    }

    /// MTU (largest IPv4 datagram).
    pub const fn mtu(mut self, mtu: usize) -> Self {
        self.mtu = mtu;
        self
    }

    /// Routers on the path (TTL expiry).
    pub const fn hops(mut self, hops: u8) -> Self {
        self.hops = hops;
        self
    }

    /// Blackout on or off.
    pub const fn down(mut self, down: bool) -> Self {
        self.down = down;
        self
    }
}

/// A NAT in front of a node ([`World::set_nat`]), as Linux conntrack
/// masquerading: an outbound datagram from local port `lp` to remote `r`
/// gets a mapping `(lp, r) → external port`, and an inbound datagram is let
/// in only from exactly the remote of a mapping on its external port
/// (port-restricted filtering).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Nat {
    /// No NAT: the node's address is public.
    #[default]
    None,
    /// The external port is the local port (OpenWrt's masquerade).
    Preserving,
    /// A fresh random external port per mapping (`fully-random`, carrier
    /// NATs): a symmetric NAT.
    Random,
}

/// Why the simulation dropped a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The path was down (blackout).
    Down,
    /// Larger than the path's MTU.
    Mtu,
    /// The TTL expired on the way.
    Ttl,
    /// Random loss.
    Loss,
    /// Gilbert-Elliott burst loss.
    Burst,
    /// The bottleneck queue was full.
    Queue,
    /// No socket bound at the destination port.
    NoSocket,
    /// The destination socket's receive queue was full.
    RxOverflow,
    /// No node has the destination address.
    Unroutable,
    /// The destination's NAT had no mapping for it ([`World::set_nat`]).
    NatFiltered,
}

/// Counters of one direction of a path. Every datagram sent is either
/// dropped (by one reason) or delivered, so `sent + duplicated =
/// delivered + dropped() + in flight`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PathStats {
    /// Datagrams sent into the path.
    pub sent: u64,
    /// Their payload bytes.
    pub sent_bytes: u64,
    /// Datagrams put into a socket's receive queue (duplicates included).
    pub delivered: u64,
    /// Their payload bytes.
    pub delivered_bytes: u64,
    /// Extra copies made by duplication.
    pub duplicated: u64,
    /// Datagrams held back by reordering.
    pub reordered: u64,
    /// Datagrams with a bit flipped.
    pub corrupted: u64,
    /// Dropped: blackout.
    pub dropped_down: u64,
    /// Dropped: MTU.
    pub dropped_mtu: u64,
    /// Dropped: TTL expired.
    pub dropped_ttl: u64,
    /// Dropped: random loss.
    pub dropped_loss: u64,
    /// Dropped: burst loss.
    pub dropped_burst: u64,
    /// Dropped: bottleneck queue full.
    pub dropped_queue: u64,
    /// Dropped at the receiver: no socket on the port.
    pub dropped_no_socket: u64,
    /// Dropped at the receiver: receive queue full.
    pub dropped_rx_overflow: u64,
    /// Dropped at the receiver's NAT: no mapping ([`World::set_nat`]).
    pub dropped_nat: u64,
}

impl PathStats {
    /// All drops.
    pub fn dropped(&self) -> u64 {
        self.dropped_down
            + self.dropped_mtu
            + self.dropped_ttl
            + self.dropped_loss
            + self.dropped_burst
            + self.dropped_queue
            + self.dropped_no_socket
            + self.dropped_rx_overflow
            + self.dropped_nat
    }

    fn count(&mut self, reason: DropReason) {
        let c = match reason {
            DropReason::Down => &mut self.dropped_down,
            DropReason::Mtu => &mut self.dropped_mtu,
            DropReason::Ttl => &mut self.dropped_ttl,
            DropReason::Loss => &mut self.dropped_loss,
            DropReason::Burst => &mut self.dropped_burst,
            DropReason::Queue => &mut self.dropped_queue,
            DropReason::NoSocket => &mut self.dropped_no_socket,
            DropReason::RxOverflow => &mut self.dropped_rx_overflow,
            DropReason::NatFiltered => &mut self.dropped_nat,
            DropReason::Unroutable => return,
        };
        *c += 1;
    }
}

/// Counters of the world outside any path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorldStats {
    /// Datagrams to an address no node has.
    pub unroutable: u64,
    /// Datagrams injected with [`World::inject`].
    pub injected: u64,
    /// Injected datagrams that reached a socket's receive queue.
    pub injected_delivered: u64,
    /// Injected datagrams dropped at the receiver (no socket, queue full,
    /// no such node).
    pub injected_dropped: u64,
    /// Datagrams a node sent to itself (its own address or 127.0.0.0/8).
    pub looped: u64,
    /// Of those, dropped at the receiver (no socket, queue full).
    pub looped_dropped: u64,
    /// Sends answered `WouldBlock` by a full uplink.
    pub send_blocked: u64,
}

/// What happened to a datagram, in the [trace](World::trace).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceWhat {
    /// Sent into a path; will arrive at the instant given.
    Sent {
        /// Arrival.
        arrives: Instant,
    },
    /// A duplicate made on the path, arriving at the instant given.
    Duplicate {
        /// Arrival.
        arrives: Instant,
    },
    /// Injected by the test, arriving at the instant given.
    Injected {
        /// Arrival.
        arrives: Instant,
    },
    /// Dropped (on the path at send time, or at the receiver on arrival).
    Dropped(DropReason),
    /// Put into the receiving socket's queue.
    Delivered,
}

/// One trace entry: a datagram event with the datagram's addresses (the
/// source as the receiver sees it), payload length and TTL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceEntry {
    /// When.
    pub at: Instant,
    /// Source (after [`World::rebind`]).
    pub from: SocketAddrV4,
    /// Destination.
    pub to: SocketAddrV4,
    /// Payload bytes.
    pub len: usize,
    /// IP TTL the sender set.
    pub ttl: u8,
    /// What happened.
    pub what: TraceWhat,
}

/// What a path does with an admitted datagram.
#[derive(Clone, Copy)]
struct Admitted {
    arrival: u64,
    duplicate: Option<u64>,
    /// The payload bit to flip.
    flip: Option<usize>,
}

struct Path {
    cfg: PathConfig,
    rng: Rng,
    bad: bool,
    /// When the bottleneck finishes sending everything queued, ns.
    busy_until_ns: u64,
    /// Latest arrival scheduled in order, µs (FIFO paths).
    last_arrival: u64,
    stats: PathStats,
}

impl Path {
    fn new(cfg: PathConfig, seed: u64) -> Path {
        Path {
            cfg,
            rng: Rng::new(seed),
            bad: false,
            busy_until_ns: 0,
            last_arrival: 0,
            stats: PathStats::default(),
        }
    }

    /// Admits one datagram at `now` µs: its arrival, and a duplicate's.
    fn admit(&mut self, now: u64, len: usize, ttl: u8) -> Result<Admitted, DropReason> {
        self.stats.sent += 1;
        self.stats.sent_bytes += len as u64;
        let result = self.decide(now, len, ttl);
        match result {
            Err(reason) => self.stats.count(reason),
            Ok(a) => {
                self.stats.duplicated += u64::from(a.duplicate.is_some());
                self.stats.corrupted += u64::from(a.flip.is_some());
            }
        }
        result
    }

    fn decide(&mut self, now: u64, len: usize, ttl: u8) -> Result<Admitted, DropReason> {
        let ip_len = (len + UDP_OVERHEAD) as u64;
        let cfg = self.cfg;
        if cfg.down {
            return Err(DropReason::Down);
        }
        if ip_len > cfg.mtu as u64 {
            return Err(DropReason::Mtu);
        }
        if cfg.hops > 0 && ttl <= cfg.hops {
            return Err(DropReason::Ttl);
        }
        if self.rng.chance(cfg.loss) {
            return Err(DropReason::Loss);
        }
        if let Some(ge) = cfg.burst {
            self.bad = if self.bad {
                !self.rng.chance(ge.leave_bad)
            } else {
                self.rng.chance(ge.enter_bad)
            };
            if self
                .rng
                .chance(if self.bad { ge.loss_bad } else { ge.loss_good })
            {
                return Err(DropReason::Burst);
            }
        }
        let first = self.schedule(now, ip_len)?;
        let dup = if self.rng.chance(cfg.duplicate) {
            self.schedule(now, ip_len).ok()
        } else {
            None
        };
        let flip = (len > 0 && self.rng.chance(cfg.corrupt))
            .then(|| self.rng.below(len as u64 * 8) as usize);
        Ok(Admitted {
            arrival: first,
            duplicate: dup,
            flip,
        })
    }

    /// Through the bottleneck, the delay and the reordering: the arrival.
    fn schedule(&mut self, now: u64, ip_len: u64) -> Result<u64, DropReason> {
        let cfg = self.cfg;
        let now_ns = now * 1000;
        let depart_ns = match cfg.rate {
            Some(rate) if rate > 0 => {
                let backlog_ns = self.busy_until_ns.saturating_sub(now_ns);
                let queued = (u128::from(backlog_ns) * u128::from(rate) / 1_000_000_000) as u64;
                let limit = match cfg.queue {
                    QueueLimit::Bytes(b) => b,
                    QueueLimit::Millis(ms) => rate.saturating_mul(ms) / 1000,
                };
                if queued + ip_len > limit {
                    return Err(DropReason::Queue);
                }
                let tx_ns = (u128::from(ip_len) * 1_000_000_000 / u128::from(rate)) as u64;
                self.busy_until_ns = self.busy_until_ns.max(now_ns) + tx_ns;
                self.busy_until_ns
            }
            _ => now_ns,
        };
        let mut at = depart_ns.div_ceil(1000);
        at = if cfg.jitter_us > 0 {
            let j = self.rng.below(2 * cfg.jitter_us + 1);
            (at + cfg.delay_us + j).saturating_sub(cfg.jitter_us)
        } else {
            at + cfg.delay_us
        };
        if self.rng.chance(cfg.reorder) {
            self.stats.reordered += 1;
            return Ok(at + cfg.reorder_delay_us);
        }
        if cfg.keep_order {
            at = at.max(self.last_arrival);
            self.last_arrival = at;
        }
        Ok(at)
    }
}

// --------------------------------------------------------------- world ----

/// A node of the world.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub usize);

/// Handle of a simulated UDP socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UdpHandle(u32);

/// Handle of a simulated local TCP stream (the node's end).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TcpHandle(u32);

/// Handle of a simulated TCP listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ListenerHandle(u32);

/// What a local service registered with [`World::serve`] does with each
/// connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// Accepts; the test takes each connection with [`World::accepted`].
    Accept,
    /// Refuses (RST to the SYN): the connect fails with `Refused`.
    Refuse,
    /// Accepts and never reads (a stalled reader); also in
    /// [`World::accepted`].
    AcceptNoRead,
    /// Runs the server side of the transfer app on each connection.
    Transfer,
    /// Writes back everything it reads; FIN after the echo of the last
    /// byte, then closes.
    Echo,
    /// The transfer app's server reading at most this many bytes per
    /// second (a slow reader; see [`AppStream::set_read_rate`]).
    SlowTransfer {
        /// Read rate, bytes per second.
        read_rate: u64,
    },
}

/// What a transfer app sends: `up` bytes of the stream of `seed` from the
/// client, `down` bytes of the stream of [`down_seed`]`(seed)` back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransferSpec {
    /// Seed of the client's stream.
    pub seed: u64,
    /// Bytes the client sends.
    pub up: u64,
    /// Bytes the server sends.
    pub down: u64,
}

/// Why a transfer end failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferError {
    /// The connection was refused.
    Refused,
    /// The connection was reset.
    Reset,
    /// A received byte differs from the expected stream at this offset.
    Mismatch {
        /// Stream offset of the first wrong byte.
        offset: u64,
    },
    /// FIN before all expected bytes.
    Short {
        /// Bytes received.
        received: u64,
    },
    /// More bytes than expected.
    Excess {
        /// Bytes received.
        received: u64,
    },
    /// The server received a malformed transfer header.
    BadHeader,
}

/// One end of a transfer: what it sent and received, and how it ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndReport {
    /// Stream bytes written (header excluded).
    pub sent: u64,
    /// Stream bytes to write.
    pub to_send: u64,
    /// Stream bytes received and verified.
    pub received: u64,
    /// Stream bytes expected.
    pub expected: u64,
    /// This end has sent its FIN.
    pub fin_sent: bool,
    /// This end has received the peer's FIN.
    pub fin_received: bool,
    /// When everything was sent and everything received, verified.
    pub done_at: Option<Instant>,
    /// The first failure.
    pub error: Option<TransferError>,
}

/// Both ends of a transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransferReport {
    /// What was asked.
    pub spec: TransferSpec,
    /// When the client connected.
    pub started_at: Instant,
    /// The client (the end started with [`World::start_transfer`]).
    pub client: EndReport,
    /// The server, once its header arrived.
    pub server: Option<EndReport>,
}

impl TransferReport {
    /// Both ends finished without error.
    pub fn is_done(&self) -> bool {
        self.client.done_at.is_some() && self.server.is_some_and(|s| s.done_at.is_some())
    }

    /// An error of either end.
    pub fn error(&self) -> Option<TransferError> {
        self.client.error.or(self.server.and_then(|s| s.error))
    }

    /// When the later end finished.
    pub fn finished_at(&self) -> Option<Instant> {
        let c = self.client.done_at?;
        let s = self.server?.done_at?;
        Some(if time::micros(c) >= time::micros(s) {
            c
        } else {
            s
        })
    }

    /// Stream bytes both ways (`up + down`) per second from the start to
    /// the later end's finish.
    pub fn goodput(&self) -> Option<f64> {
        let us = time::micros_between(self.started_at, self.finished_at()?);
        Some((self.spec.up + self.spec.down) as f64 * 1e6 / us.max(1) as f64)
    }
}

/// Id of a transfer started with [`World::start_transfer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TransferId(usize);

/// Why [`World::run`] stopped without its condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunError {
    /// The time limit passed.
    TimeLimit {
        /// The world's time (the limit).
        now: Instant,
    },
    /// No node has a deadline and the world has no event: nothing will
    /// ever happen again.
    Idle {
        /// The world's time.
        now: Instant,
    },
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::TimeLimit { now } => {
                write!(f, "time limit reached at {} µs", time::micros(*now))
            }
            RunError::Idle { now } => write!(f, "idle forever at {} µs", time::micros(*now)),
        }
    }
}

impl std::error::Error for RunError {}

/// One node's run loop step, for [`World::run`].
pub trait Stepper {
    /// Does all work ready at `net.now()` without blocking and returns the
    /// next deadline (`None`: only socket events).
    fn poll(&mut self, net: &mut SimNet) -> Option<Instant>;
}

/// Any `FnMut(&mut SimNet) -> Option<Instant>` is a stepper, e.g.
/// `&mut |net: &mut SimNet| driver.poll(net).unwrap()`.
impl<F: FnMut(&mut SimNet) -> Option<Instant>> Stepper for F {
    fn poll(&mut self, net: &mut SimNet) -> Option<Instant> {
        self(net)
    }
}

/// Livelock guards of the runner and of [`Wait::wait`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunLimits {
    /// Rounds at one instant before the runner panics.
    pub rounds_per_instant: u64,
    /// Consecutive polls of one node answering a deadline at or before now,
    /// at one instant, before the runner panics.
    pub node_spins: u64,
}

impl Default for RunLimits {
    fn default() -> Self {
        RunLimits {
            rounds_per_instant: 100_000,
            node_spins: 1_000,
        }
    }
}

struct Datagram {
    from: SocketAddrV4,
    to: SocketAddrV4,
    node: usize,
    data: Vec<u8>,
    ttl: u8,
    origin: Origin,
}

/// Where a datagram comes from, for the counters.
#[derive(Clone, Copy)]
enum Origin {
    Path(usize, usize),
    Loop,
    Injected,
}

enum EventKind {
    Arrive(Datagram),
    LocalConnect(u32),
    SetPath(usize, usize, PathConfig),
    /// A rate-limited app reader has credit again.
    Wake(u32),
    StartTransfer(usize),
    /// A node's uplink queue has drained to half.
    UplinkWake(usize),
}

struct Event {
    at: u64,
    seq: u64,
    kind: EventKind,
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Event {}

impl Ord for Event {
    // BinaryHeap pops the largest: the earliest event, ties in order.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

impl PartialOrd for Event {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

struct Node {
    addr: Ipv4Addr,
    udp: BTreeMap<u16, u32>,
    listeners: BTreeMap<u16, u32>,
    services: BTreeMap<u16, Service>,
    accepted: BTreeMap<u16, VecDeque<u32>>,
    rebind_out: BTreeMap<u16, u16>,
    rebind_in: BTreeMap<u16, u16>,
    nat: Nat,
    /// (local port, remote) → external port.
    nat_out: BTreeMap<(u16, SocketAddrV4), u16>,
    /// (external port, remote) → local port.
    nat_in: BTreeMap<(u16, SocketAddrV4), u16>,
    nat_rng: Rng,
    rx_limit: usize,
    tcp_buffer: usize,
    next_ephemeral: u16,
    restarts: u32,
    uplink: Option<Uplink>,
}

/// A node's uplink, for [`World::set_uplink`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UplinkConfig {
    /// Bytes per second of IPv4 datagrams (28 + payload).
    pub rate: u64,
    /// Queue in bytes; a send that does not fit answers `WouldBlock`.
    pub queue_bytes: u64,
}

/// A node's interface: datagrams leave at `rate`; a full queue blocks the
/// sender (like a full socket send buffer behind a busy qdisc) until half
/// of it has drained.
#[derive(Clone, Copy, Debug)]
struct Uplink {
    rate: u64,
    queue: u64,
    busy_until_ns: u64,
    blocked: bool,
}

struct UdpSock {
    node: usize,
    port: u16,
    ttl: u8,
    queue: VecDeque<(SocketAddrV4, Vec<u8>)>,
    queued_bytes: usize,
    overflows: u64,
}

struct Listener {
    node: usize,
    port: u16,
    backlog: VecDeque<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ConnState {
    Pending,
    Open,
    Failed(NetError),
}

#[derive(Default)]
struct Pipe {
    buf: VecDeque<u8>,
    cap: usize,
    fin: bool,
}

#[derive(Default, Clone, Copy)]
struct End {
    closed: bool,
    /// This end received an RST.
    reset: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Net,
    App,
}

struct Conn {
    node: usize,
    port: u16,
    state: ConnState,
    to_net: Pipe,
    to_app: Pipe,
    net: End,
    app: End,
    /// Bytes the app may still read; `None`: no limit.
    app_limit: Option<u64>,
    /// Paces the app's reads.
    app_rate: Option<ReadRate>,
    /// The node, the test or an event touched it since its app last ran:
    /// only such apps are run again (a world of 256 idle transfers would
    /// otherwise cost every round 256 app runs).
    dirty: bool,
}

/// A token bucket pacing an app's reads: `rate` bytes per second with a
/// burst of 10 ms (at least 16 KiB).
#[derive(Clone, Copy, Debug)]
struct ReadRate {
    rate: u64,
    /// Credit in bytes × 10⁶ (byte-microseconds at 1 byte/s).
    credit: u128,
    last: u64,
    wake_at: Option<u64>,
}

impl ReadRate {
    fn new(rate: u64, now: u64) -> ReadRate {
        ReadRate {
            rate: rate.max(1),
            credit: 0,
            last: now,
            wake_at: None,
        }
    }

    fn refill(&mut self, now: u64) {
        let burst = u128::from((self.rate / 100).max(CHUNK as u64)) * 1_000_000;
        let earned = u128::from(now.saturating_sub(self.last)) * u128::from(self.rate);
        self.credit = (self.credit + earned).min(burst);
        self.last = self.last.max(now);
    }

    fn available(&self) -> u64 {
        (self.credit / 1_000_000) as u64
    }

    /// When `n` bytes of credit will be there.
    fn ready_at(&self, now: u64, n: u64) -> u64 {
        let need = (u128::from(n) * 1_000_000).saturating_sub(self.credit);
        now + need.div_ceil(u128::from(self.rate)) as u64
    }
}

impl Conn {
    fn new(node: usize, port: u16, state: ConnState, cap: usize) -> Conn {
        Conn {
            node,
            port,
            state,
            to_net: Pipe {
                cap,
                ..Pipe::default()
            },
            to_app: Pipe {
                cap,
                ..Pipe::default()
            },
            net: End::default(),
            app: End::default(),
            app_limit: None,
            app_rate: None,
            dirty: true,
        }
    }

    /// (incoming pipe, outgoing pipe, this end, the peer end).
    fn parts(&mut self, side: Side) -> (&mut Pipe, &mut Pipe, &mut End, &mut End) {
        match side {
            Side::Net => (
                &mut self.to_net,
                &mut self.to_app,
                &mut self.net,
                &mut self.app,
            ),
            Side::App => (
                &mut self.to_app,
                &mut self.to_net,
                &mut self.app,
                &mut self.net,
            ),
        }
    }

    fn usable(&self, side: Side) -> NetResult<()> {
        let me = if side == Side::Net {
            self.net
        } else {
            self.app
        };
        if me.closed {
            return Err(NetError::Closed);
        }
        match self.state {
            ConnState::Pending => Err(NetError::WouldBlock),
            ConnState::Failed(e) => Err(e),
            ConnState::Open if me.reset => Err(NetError::Reset),
            ConnState::Open => Ok(()),
        }
    }

    fn read(&mut self, side: Side, buf: &mut [u8], now: u64) -> NetResult<usize> {
        self.dirty |= side == Side::Net;
        self.usable(side)?;
        let mut limit = if side == Side::App {
            self.app_limit
        } else {
            None
        };
        if side == Side::App
            && let Some(r) = &mut self.app_rate
        {
            r.refill(now);
            limit = Some(limit.map_or(r.available(), |l| l.min(r.available())));
        }
        let (rx, _, _, _) = self.parts(side);
        if rx.buf.is_empty() {
            return if rx.fin {
                Ok(0)
            } else {
                Err(NetError::WouldBlock)
            };
        }
        let mut n = buf.len().min(rx.buf.len());
        if let Some(l) = limit {
            n = n.min(usize::try_from(l).unwrap_or(usize::MAX));
        }
        if n == 0 {
            return Err(NetError::WouldBlock);
        }
        let (a, b) = rx.buf.as_slices();
        let na = n.min(a.len());
        buf[..na].copy_from_slice(&a[..na]);
        buf[na..n].copy_from_slice(&b[..n - na]);
        rx.buf.drain(..n);
        if side == Side::App {
            if let Some(l) = &mut self.app_limit {
                *l -= n as u64;
            }
            if let Some(r) = &mut self.app_rate {
                r.credit -= n as u128 * 1_000_000;
            }
        }
        Ok(n)
    }

    fn write(&mut self, side: Side, data: &[u8]) -> NetResult<usize> {
        self.dirty |= side == Side::Net;
        self.usable(side)?;
        let (_, tx, me, peer) = self.parts(side);
        if tx.fin {
            return Err(NetError::Closed);
        }
        if peer.closed {
            // Data to a closed socket draws an RST.
            me.reset = true;
            return Err(NetError::Reset);
        }
        let n = data.len().min(tx.cap - tx.buf.len());
        if n == 0 {
            return Err(NetError::WouldBlock);
        }
        tx.buf.extend(&data[..n]);
        Ok(n)
    }

    fn shutdown(&mut self, side: Side) -> NetResult<()> {
        self.dirty |= side == Side::Net;
        self.usable(side)?;
        let (_, tx, _, _) = self.parts(side);
        tx.fin = true;
        Ok(())
    }

    /// `close()` as Linux does it: FIN after the queued bytes, or RST if
    /// received bytes were never read.
    fn close(&mut self, side: Side) {
        self.dirty |= side == Side::Net;
        let open = self.state == ConnState::Open;
        let (rx, tx, me, peer) = self.parts(side);
        if me.closed {
            return;
        }
        me.closed = true;
        if open && !me.reset {
            if rx.buf.is_empty() {
                tx.fin = true;
            } else {
                peer.reset = true;
            }
        }
        rx.buf.clear();
        self.free_if_done();
    }

    /// Gives the buffers back once both ends are closed.
    fn free_if_done(&mut self) {
        if self.net.closed && self.app.closed {
            self.to_net.buf = VecDeque::new();
            self.to_app.buf = VecDeque::new();
        }
    }

    /// Abortive close (linger 0): RST.
    fn reset(&mut self, side: Side) {
        self.dirty |= side == Side::Net;
        let open = self.state == ConnState::Open;
        let (rx, _, me, peer) = self.parts(side);
        if me.closed {
            return;
        }
        me.closed = true;
        if open {
            peer.reset = true;
        }
        rx.buf.clear();
        self.free_if_done();
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Client,
    Server,
}

const HEADER_LEN: usize = 32;
const HEADER_MAGIC: [u8; 4] = *b"PWST";
const CHUNK: usize = 16 * 1024;

/// An echo service's end of one connection.
struct EchoEnd {
    conn: u32,
    /// Read, not yet written back.
    pending: Vec<u8>,
    closed: bool,
}

/// One end of a transfer app, attached to the app end of a connection.
struct TransferEnd {
    conn: u32,
    role: Role,
    /// The transfer this end belongs to (servers learn it from the header).
    id: Option<usize>,
    header: Vec<u8>,
    header_at: usize,
    out_seed: u64,
    in_seed: u64,
    report: EndReport,
    closed: bool,
}

struct TransferSlot {
    spec: TransferSpec,
    node: usize,
    port: u16,
    started: u64,
    client: usize,
    server: Option<usize>,
}

struct Inner {
    now: u64,
    seed: u64,
    seq: u64,
    /// Bumped by every change a node could observe.
    epoch: u64,
    /// Some connection is dirty: the apps have to run.
    apps_dirty: bool,
    nodes: Vec<Node>,
    by_addr: BTreeMap<Ipv4Addr, usize>,
    paths: BTreeMap<(usize, usize), Path>,
    default_path: PathConfig,
    events: BinaryHeap<Event>,
    udp: Vec<Option<UdpSock>>,
    listeners: Vec<Option<Listener>>,
    conns: Vec<Conn>,
    ends: Vec<TransferEnd>,
    echoes: Vec<EchoEnd>,
    transfers: Vec<TransferSlot>,
    stats: WorldStats,
    trace: Option<Vec<TraceEntry>>,
    local_connect_us: u64,
    limits: RunLimits,
    idle_waits: u64,
}

/// The simulated world: clock, nodes, paths, sockets, apps. Cheap to
/// clone (a shared handle).
#[derive(Clone)]
pub struct World {
    inner: Rc<RefCell<Inner>>,
}

impl fmt::Debug for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = self.inner.borrow();
        f.debug_struct("World")
            .field("now_us", &w.now)
            .field("seed", &w.seed)
            .field("nodes", &w.nodes.len())
            .field("events", &w.events.len())
            .finish()
    }
}

impl World {
    /// An empty world at time 0 whose randomness all derives from `seed`.
    pub fn new(seed: u64) -> World {
        World {
            inner: Rc::new(RefCell::new(Inner {
                now: 0,
                seed,
                seq: 0,
                epoch: 0,
                apps_dirty: false,
                nodes: Vec::new(),
                by_addr: BTreeMap::new(),
                paths: BTreeMap::new(),
                default_path: PathConfig::new(),
                events: BinaryHeap::new(),
                udp: Vec::new(),
                listeners: Vec::new(),
                conns: Vec::new(),
                ends: Vec::new(),
                echoes: Vec::new(),
                transfers: Vec::new(),
                stats: WorldStats::default(),
                trace: None,
                local_connect_us: 50,
                limits: RunLimits::default(),
                idle_waits: 0,
            })),
        }
    }

    /// Adds a node with address `addr`.
    ///
    /// # Panics
    /// If another node has `addr`.
    pub fn add_node(&self, addr: Ipv4Addr) -> NodeId {
        let mut w = self.inner.borrow_mut();
        let id = w.nodes.len();
        assert!(
            w.by_addr.insert(addr, id).is_none(),
            "simnet: two nodes with address {addr}"
        );
        let nat_rng = Rng::new(splitmix64(w.seed ^ 0x4e41_5400 ^ id as u64));
        w.nodes.push(Node {
            addr,
            udp: BTreeMap::new(),
            listeners: BTreeMap::new(),
            services: BTreeMap::new(),
            accepted: BTreeMap::new(),
            rebind_out: BTreeMap::new(),
            rebind_in: BTreeMap::new(),
            nat: Nat::None,
            nat_out: BTreeMap::new(),
            nat_in: BTreeMap::new(),
            nat_rng,
            rx_limit: 256 * 1024,
            tcp_buffer: 64 * 1024,
            next_ephemeral: 49152,
            restarts: 0,
            uplink: None,
        });
        NodeId(id)
    }

    /// The socket layer of `node` (a handle; any number may exist).
    pub fn net(&self, node: NodeId) -> SimNet {
        SimNet {
            world: self.clone(),
            node: node.0,
        }
    }

    /// The address of `node`.
    pub fn addr(&self, node: NodeId) -> Ipv4Addr {
        self.inner.borrow().nodes[node.0].addr
    }

    /// The world's time.
    pub fn now(&self) -> Instant {
        time::at_micros(self.inner.borrow().now)
    }

    /// Sets both directions between `a` and `b`.
    pub fn link(&self, a: NodeId, b: NodeId, cfg: PathConfig) {
        self.set_path(a, b, cfg);
        self.set_path(b, a, cfg);
    }

    /// Sets the direction `from` → `to` now (counters and queue state are
    /// kept). Paths not set behave as [`World::set_default_path`].
    pub fn set_path(&self, from: NodeId, to: NodeId, cfg: PathConfig) {
        self.inner.borrow_mut().path(from.0, to.0).cfg = cfg;
    }

    /// Sets the direction `from` → `to` at `at` (e.g. a blackout and its
    /// end).
    pub fn schedule_path(&self, at: Instant, from: NodeId, to: NodeId, cfg: PathConfig) {
        let mut w = self.inner.borrow_mut();
        w.push(time::micros(at), EventKind::SetPath(from.0, to.0, cfg));
    }

    /// The settings of the direction `from` → `to`.
    pub fn path(&self, from: NodeId, to: NodeId) -> PathConfig {
        self.inner.borrow_mut().path(from.0, to.0).cfg
    }

    /// The settings of paths not set explicitly (default: perfect).
    pub fn set_default_path(&self, cfg: PathConfig) {
        self.inner.borrow_mut().default_path = cfg;
    }

    /// The counters of the direction `from` → `to`.
    pub fn path_stats(&self, from: NodeId, to: NodeId) -> PathStats {
        self.inner
            .borrow()
            .paths
            .get(&(from.0, to.0))
            .map(|p| p.stats)
            .unwrap_or_default()
    }

    /// Counters outside the paths.
    pub fn stats(&self) -> WorldStats {
        self.inner.borrow().stats
    }

    /// The receive queue limit of each UDP socket of `node`, in bytes
    /// charged as payload + [`RX_OVERHEAD`] per datagram (default 256 KiB:
    /// 120 datagrams of 1400 bytes, 340 tiny ones). At least one datagram
    /// is always queued.
    pub fn set_udp_rx_limit(&self, node: NodeId, bytes: usize) {
        self.inner.borrow_mut().nodes[node.0].rx_limit = bytes;
    }

    /// Datagrams dropped because this socket's receive queue was full.
    pub fn udp_overflows(&self, node: NodeId, port: u16) -> u64 {
        let w = self.inner.borrow();
        let Some(&i) = w.nodes[node.0].udp.get(&port) else {
            return 0;
        };
        w.udp[i as usize].as_ref().map_or(0, |s| s.overflows)
    }

    /// The socket buffer of each direction of `node`'s future local TCP
    /// connections, bytes (default 64 KiB).
    pub fn set_tcp_buffer(&self, node: NodeId, bytes: usize) {
        self.inner.borrow_mut().nodes[node.0].tcp_buffer = bytes.max(1);
    }

    /// Gives `node` an uplink ([`UplinkConfig`]): its datagrams leave one
    /// after another at that rate before entering their paths, and when the
    /// queue is full `udp_send_to` answers `WouldBlock` until half of it has
    /// drained (the world then wakes the node). `None` (the default): sends
    /// leave at once and never block. Loopback datagrams skip it.
    ///
    /// # Panics
    /// If the rate is 0.
    pub fn set_uplink(&self, node: NodeId, uplink: Option<UplinkConfig>) {
        let mut w = self.inner.borrow_mut();
        w.nodes[node.0].uplink = uplink.map(|u| {
            assert!(u.rate > 0, "simnet: uplink rate 0");
            Uplink {
                rate: u.rate,
                queue: u.queue_bytes,
                busy_until_ns: 0,
                blocked: false,
            }
        });
    }

    /// How long a connect to a local service stays `Pending` (default
    /// 50 µs).
    pub fn set_local_connect_delay(&self, us: u64) {
        self.inner.borrow_mut().local_connect_us = us;
    }

    /// The runner's livelock guards.
    pub fn set_run_limits(&self, limits: RunLimits) {
        self.inner.borrow_mut().limits = limits;
    }

    /// Starts (or, with `false`, stops and clears) recording every datagram
    /// event.
    pub fn trace(&self, on: bool) {
        self.inner.borrow_mut().trace = on.then(Vec::new);
    }

    /// The trace so far (recording goes on).
    pub fn take_trace(&self) -> Vec<TraceEntry> {
        self.inner
            .borrow_mut()
            .trace
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// A datagram from `from` (any address, forged or not) arriving at `to`
    /// at `at` (not before now), outside every path.
    pub fn inject(&self, at: Instant, from: SocketAddrV4, to: SocketAddrV4, bytes: &[u8]) {
        let mut w = self.inner.borrow_mut();
        w.stats.injected += 1;
        let at = time::micros(at).max(w.now);
        w.record(
            from,
            to,
            bytes.len(),
            64,
            TraceWhat::Injected {
                arrives: time::at_micros(at),
            },
        );
        match w.by_addr.get(to.ip()).copied() {
            Some(node) => {
                let dg = Datagram {
                    from,
                    to,
                    node,
                    data: bytes.to_vec(),
                    ttl: 64,
                    origin: Origin::Injected,
                };
                w.push(at, EventKind::Arrive(dg));
            }
            None => w.stats.injected_dropped += 1,
        }
    }

    /// NAT rebinding: datagrams `node` sends from `port` appear from
    /// `external` from now on, and datagrams to `external` reach the socket
    /// on `port`. `external == port` removes the rule.
    pub fn rebind(&self, node: NodeId, port: u16, external: u16) {
        let mut w = self.inner.borrow_mut();
        let n = &mut w.nodes[node.0];
        if let Some(old) = n.rebind_out.remove(&port) {
            n.rebind_in.remove(&old);
        }
        if external != port {
            n.rebind_out.insert(port, external);
            n.rebind_in.insert(external, port);
        }
    }

    /// Puts a NAT of `kind` in front of `node` (its address becomes the
    /// NAT's public address); see [`Nat`]. Mappings never time out.
    pub fn set_nat(&self, node: NodeId, kind: Nat) {
        let mut w = self.inner.borrow_mut();
        let n = &mut w.nodes[node.0];
        n.nat = kind;
        n.nat_out.clear();
        n.nat_in.clear();
    }

    /// How many NAT mappings `node`'s NAT holds.
    pub fn nat_mappings(&self, node: NodeId) -> usize {
        self.inner.borrow().nodes[node.0].nat_out.len()
    }

    /// The process on `node` dies (kill -9): every UDP socket and listener
    /// vanishes and the kernel closes its streams (FIN, or RST where bytes
    /// were unread). Handles held by the old process answer `Closed`.
    /// Services, test clients and the node's paths stay.
    pub fn restart(&self, node: NodeId) {
        let mut w = self.inner.borrow_mut();
        w.restart(node.0);
    }

    /// How many times `node` was restarted.
    pub fn restarts(&self, node: NodeId) -> u32 {
        self.inner.borrow().nodes[node.0].restarts
    }

    /// Registers a local service on `node`'s `port`, replacing any.
    pub fn serve(&self, node: NodeId, port: u16, service: Service) {
        self.inner.borrow_mut().nodes[node.0]
            .services
            .insert(port, service);
    }

    /// Removes the service on `node`'s `port` (connects are refused).
    pub fn unserve(&self, node: NodeId, port: u16) {
        self.inner.borrow_mut().nodes[node.0].services.remove(&port);
    }

    /// The next connection an [`Service::Accept`] or
    /// [`Service::AcceptNoRead`] service on `node`'s `port` accepted.
    pub fn accepted(&self, node: NodeId, port: u16) -> Option<AppStream> {
        let mut w = self.inner.borrow_mut();
        let conn = w.nodes[node.0].accepted.get_mut(&port)?.pop_front()?;
        Some(AppStream {
            world: self.clone(),
            conn,
        })
    }

    /// A test client connects to the listener on `node`'s `port`: the
    /// connection is established at once and waits in the backlog for
    /// `tcp_accept`. `Refused` when nothing listens.
    pub fn connect_client(&self, node: NodeId, port: u16) -> NetResult<AppStream> {
        let conn = self.inner.borrow_mut().connect_client(node.0, port)?;
        Ok(AppStream {
            world: self.clone(),
            conn,
        })
    }

    /// Starts a transfer app now: a client on `node` connects to the
    /// listener on `port`, sends a 32-byte header and `spec.up` bytes of
    /// its stream, and checks the `spec.down` bytes the server (a
    /// [`Service::Transfer`] behind the tunnel) sends back. Nothing
    /// listening: the transfer fails with `Refused` at once.
    pub fn start_transfer(&self, node: NodeId, port: u16, spec: TransferSpec) -> TransferId {
        let now = self.now();
        self.start_transfer_at(now, node, port, spec)
    }

    /// [`World::start_transfer`] at `at` (not before now): staggered
    /// starts, or a transfer that begins during a fault.
    pub fn start_transfer_at(
        &self,
        at: Instant,
        node: NodeId,
        port: u16,
        spec: TransferSpec,
    ) -> TransferId {
        let mut w = self.inner.borrow_mut();
        let at = time::micros(at).max(w.now);
        let id = w.transfers.len();
        let mut header = Vec::with_capacity(HEADER_LEN);
        header.extend_from_slice(&HEADER_MAGIC);
        header.extend_from_slice(&(id as u32).to_le_bytes());
        header.extend_from_slice(&spec.seed.to_le_bytes());
        header.extend_from_slice(&spec.up.to_le_bytes());
        header.extend_from_slice(&spec.down.to_le_bytes());
        // Until it connects the client points at a placeholder, on no node.
        let placeholder = w.conns.len() as u32;
        w.conns
            .push(Conn::new(usize::MAX, port, ConnState::Pending, 1));
        let end = w.ends.len();
        w.ends.push(TransferEnd {
            conn: placeholder,
            role: Role::Client,
            id: Some(id),
            header,
            header_at: 0,
            out_seed: spec.seed,
            in_seed: down_seed(spec.seed),
            report: EndReport {
                to_send: spec.up,
                expected: spec.down,
                ..EndReport::default()
            },
            closed: false,
        });
        w.transfers.push(TransferSlot {
            spec,
            node: node.0,
            port,
            started: at,
            client: end,
            server: None,
        });
        if at <= w.now {
            w.begin_transfer(id);
        } else {
            w.push(at, EventKind::StartTransfer(id));
        }
        TransferId(id)
    }

    /// Both ends of a transfer.
    pub fn transfer(&self, id: TransferId) -> TransferReport {
        let w = self.inner.borrow();
        let slot = &w.transfers[id.0];
        TransferReport {
            spec: slot.spec,
            started_at: time::at_micros(slot.started),
            client: w.ends[slot.client].report,
            server: slot.server.map(|s| w.ends[s].report),
        }
    }

    /// All transfers, in start order.
    pub fn transfers(&self) -> Vec<TransferReport> {
        (0..self.inner.borrow().transfers.len())
            .map(|i| self.transfer(TransferId(i)))
            .collect()
    }

    /// Every transfer started so far is done, or one failed (so a run can
    /// stop on either; check the reports).
    pub fn transfers_settled(&self) -> bool {
        self.transfers()
            .iter()
            .all(|t| t.is_done() || t.error().is_some())
    }

    /// Advances the clock to `t` (if later), processing every event on the
    /// way: for tests without steppers.
    pub fn advance_to(&self, t: Instant) {
        let target = time::micros(t);
        let mut w = self.inner.borrow_mut();
        loop {
            w.settle();
            match w.next_event() {
                Some(at) if at <= target => w.now = w.now.max(at),
                _ => break,
            }
        }
        w.now = w.now.max(target);
        w.settle();
    }

    /// Runs the nodes until `until` holds, polling each node, then moving
    /// the clock to the earliest of their deadlines and the world's next
    /// event. `until` is checked before every round.
    ///
    /// # Panics
    /// On a livelock (see [`RunLimits`]): a node answering a deadline at or
    /// before now too many times in a row, or too many rounds at one
    /// instant.
    pub fn run(
        &self,
        nodes: &mut [(&mut SimNet, &mut dyn Stepper)],
        mut until: impl FnMut(&World) -> bool,
        time_limit: Instant,
    ) -> Result<Instant, RunError> {
        let limit = time::micros(time_limit);
        let limits = self.inner.borrow().limits;
        let mut spins = vec![0u64; nodes.len()];
        let mut rounds = 0u64;
        loop {
            self.inner.borrow_mut().settle();
            if until(self) {
                return Ok(self.now());
            }
            let now = self.inner.borrow().now;
            let mut next: Option<u64> = None;
            let mut urgent = false;
            for (i, (net, stepper)) in nodes.iter_mut().enumerate() {
                match stepper.poll(net).map(time::micros) {
                    Some(d) if d <= now => {
                        urgent = true;
                        spins[i] += 1;
                        if spins[i] > limits.node_spins {
                            panic!(
                                "simnet livelock: node {} ({}) answered deadline {} µs <= now {} µs \
                                 on {} polls in a row without time moving (a poll must do the \
                                 work that is due, then return a later deadline)",
                                net.node,
                                net.addr(),
                                d,
                                now,
                                spins[i]
                            );
                        }
                    }
                    Some(d) => {
                        spins[i] = 0;
                        next = Some(next.map_or(d, |n: u64| n.min(d)));
                    }
                    None => spins[i] = 0,
                }
            }
            let changed = self.inner.borrow_mut().settle();
            if changed || urgent {
                rounds += 1;
                if rounds > limits.rounds_per_instant {
                    panic!(
                        "simnet livelock: {rounds} rounds at {now} µs without time moving \
                         (the nodes and the apps keep each other busy at one instant)"
                    );
                }
                continue;
            }
            let mut w = self.inner.borrow_mut();
            let next = match (next, w.next_event()) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => {
                        drop(w);
                        return if until(self) {
                            Ok(self.now())
                        } else {
                            Err(RunError::Idle { now: self.now() })
                        };
                    }
                },
            };
            if next > limit {
                w.now = w.now.max(limit);
                w.settle();
                drop(w);
                return if until(self) {
                    Ok(self.now())
                } else {
                    Err(RunError::TimeLimit { now: self.now() })
                };
            }
            w.now = next;
            rounds = 0;
            spins.fill(0);
        }
    }
}

impl Inner {
    fn push(&mut self, at: u64, kind: EventKind) {
        self.seq += 1;
        let seq = self.seq;
        self.events.push(Event { at, seq, kind });
    }

    fn next_event(&self) -> Option<u64> {
        self.events.peek().map(|e| e.at)
    }

    fn path(&mut self, from: usize, to: usize) -> &mut Path {
        let seed = splitmix64(self.seed ^ splitmix64(((from as u64) << 32) | to as u64));
        let cfg = self.default_path;
        self.paths
            .entry((from, to))
            .or_insert_with(|| Path::new(cfg, seed))
    }

    fn record(
        &mut self,
        from: SocketAddrV4,
        to: SocketAddrV4,
        len: usize,
        ttl: u8,
        what: TraceWhat,
    ) {
        if let Some(t) = &mut self.trace {
            t.push(TraceEntry {
                at: time::at_micros(self.now),
                from,
                to,
                len,
                ttl,
                what,
            });
        }
    }

    /// Processes the events due now and lets the apps run; true if a node
    /// could see a change.
    fn settle(&mut self) -> bool {
        let before = self.epoch;
        loop {
            while self.events.peek().is_some_and(|e| e.at <= self.now) {
                let ev = self.events.pop().expect("peeked");
                self.apply(ev.kind);
            }
            if !self.pump_apps() {
                break;
            }
        }
        self.epoch != before
    }

    fn apply(&mut self, kind: EventKind) {
        match kind {
            EventKind::Arrive(dg) => self.arrive(dg),
            EventKind::LocalConnect(c) => self.resolve_local(c),
            EventKind::SetPath(from, to, cfg) => self.path(from, to).cfg = cfg,
            EventKind::StartTransfer(id) => self.begin_transfer(id),
            EventKind::UplinkWake(node) => {
                if let Some(u) = &mut self.nodes[node].uplink {
                    u.blocked = false;
                }
                self.epoch += 1;
            }
            EventKind::Wake(c) => {
                self.apps_dirty = true;
                let conn = &mut self.conns[c as usize];
                conn.dirty = true;
                if let Some(r) = &mut conn.app_rate {
                    r.wake_at = None;
                }
            }
        }
    }

    fn send(
        &mut self,
        node: usize,
        port: u16,
        ttl: u8,
        data: &[u8],
        to: SocketAddrV4,
    ) -> NetResult<()> {
        let n = &mut self.nodes[node];
        let mut src_port = n.rebind_out.get(&port).copied().unwrap_or(port);
        if n.nat != Nat::None && *to.ip() != n.addr && !to.ip().is_loopback() {
            src_port = match n.nat_out.get(&(src_port, to)) {
                Some(&e) => e,
                None => {
                    let mut e = src_port;
                    while n.nat == Nat::Random || n.nat_in.contains_key(&(e, to)) {
                        e = 1024 + n.nat_rng.below(64512) as u16;
                        if !n.nat_in.contains_key(&(e, to)) {
                            break;
                        }
                    }
                    n.nat_out.insert((src_port, to), e);
                    n.nat_in.insert((e, to), src_port);
                    e
                }
            };
        }
        let n = &self.nodes[node];
        let from = SocketAddrV4::new(n.addr, src_port);
        let dst = if to.ip().is_loopback() || *to.ip() == n.addr {
            Some(node)
        } else {
            self.by_addr.get(to.ip()).copied()
        };
        let Some(dst) = dst else {
            self.stats.unroutable += 1;
            self.record(
                from,
                to,
                data.len(),
                ttl,
                TraceWhat::Dropped(DropReason::Unroutable),
            );
            return Ok(());
        };
        let now = self.now;
        if dst == node {
            self.stats.looped += 1;
            self.record(
                from,
                to,
                data.len(),
                ttl,
                TraceWhat::Sent {
                    arrives: time::at_micros(now),
                },
            );
            let dg = Datagram {
                from,
                to,
                node,
                data: data.to_vec(),
                ttl,
                origin: Origin::Loop,
            };
            self.push(now, EventKind::Arrive(dg));
            return Ok(());
        }
        let depart = self.uplink(node, data.len())?;
        match self.path(node, dst).admit(depart, data.len(), ttl) {
            Err(reason) => self.record(from, to, data.len(), ttl, TraceWhat::Dropped(reason)),
            Ok(Admitted {
                arrival: at,
                duplicate: dup,
                flip,
            }) => {
                self.record(
                    from,
                    to,
                    data.len(),
                    ttl,
                    TraceWhat::Sent {
                        arrives: time::at_micros(at),
                    },
                );
                let mk = |data: Vec<u8>| Datagram {
                    from,
                    to,
                    node: dst,
                    data,
                    ttl,
                    origin: Origin::Path(node, dst),
                };
                if let Some(d) = dup {
                    self.record(
                        from,
                        to,
                        data.len(),
                        ttl,
                        TraceWhat::Duplicate {
                            arrives: time::at_micros(d),
                        },
                    );
                    self.push(d, EventKind::Arrive(mk(data.to_vec())));
                }
                let mut bytes = data.to_vec();
                if let Some(bit) = flip {
                    bytes[bit / 8] ^= 1 << (bit % 8);
                }
                self.push(at, EventKind::Arrive(mk(bytes)));
            }
        }
        Ok(())
    }

    /// When a datagram of `len` payload bytes leaves `node`: now, or after
    /// the uplink's queue; `WouldBlock` when that queue is full.
    fn uplink(&mut self, node: usize, len: usize) -> NetResult<u64> {
        let now = self.now;
        let Some(u) = &mut self.nodes[node].uplink else {
            return Ok(now);
        };
        let ip_len = (len + UDP_OVERHEAD) as u64;
        let now_ns = now * 1000;
        let rate = u128::from(u.rate);
        let backlog_ns = u.busy_until_ns.saturating_sub(now_ns);
        let queued = (u128::from(backlog_ns) * rate / 1_000_000_000) as u64;
        if u.blocked || queued + ip_len > u.queue {
            if !u.blocked {
                u.blocked = true;
                // Wake the sender when half the queue has drained.
                let keep_ns = (u128::from(u.queue / 2) * 1_000_000_000 / rate) as u64;
                let at = u.busy_until_ns.saturating_sub(keep_ns).div_ceil(1000);
                self.push(at.max(now), EventKind::UplinkWake(node));
            }
            self.stats.send_blocked += 1;
            return Err(NetError::WouldBlock);
        }
        let tx_ns = (u128::from(ip_len) * 1_000_000_000 / rate) as u64;
        u.busy_until_ns = u.busy_until_ns.max(now_ns) + tx_ns;
        Ok(u.busy_until_ns.div_ceil(1000))
    }

    fn arrive(&mut self, dg: Datagram) {
        let n = &self.nodes[dg.node];
        let nat_port = if n.nat != Nat::None && !matches!(dg.origin, Origin::Loop) {
            // No mapping: filtered (port 0 is never bound).
            Some(n.nat_in.get(&(dg.to.port(), dg.from)).copied().unwrap_or(0))
        } else {
            None
        };
        let n = &self.nodes[dg.node];
        let port = nat_port.unwrap_or_else(|| {
            n.rebind_in
                .get(&dg.to.port())
                .copied()
                .unwrap_or(dg.to.port())
        });
        let limit = n.rx_limit;
        let slot = n.udp.get(&port).copied();
        let len = dg.data.len();
        let outcome = match slot.and_then(|i| self.udp[i as usize].as_mut()) {
            None if nat_port == Some(0) => Err(DropReason::NatFiltered),
            None => Err(DropReason::NoSocket),
            Some(s) if s.queued_bytes > 0 && s.queued_bytes + len + RX_OVERHEAD > limit => {
                s.overflows += 1;
                Err(DropReason::RxOverflow)
            }
            Some(s) => {
                s.queued_bytes += len + RX_OVERHEAD;
                s.queue.push_back((dg.from, dg.data));
                Ok(())
            }
        };
        let what = match outcome {
            Ok(()) => TraceWhat::Delivered,
            Err(r) => TraceWhat::Dropped(r),
        };
        self.record(dg.from, dg.to, len, dg.ttl, what);
        match (dg.origin, outcome) {
            (Origin::Path(from, to), Ok(())) => {
                let st = &mut self.path(from, to).stats;
                st.delivered += 1;
                st.delivered_bytes += len as u64;
            }
            (Origin::Path(from, to), Err(r)) => self.path(from, to).stats.count(r),
            (Origin::Injected, Ok(())) => self.stats.injected_delivered += 1,
            (Origin::Injected, Err(_)) => self.stats.injected_dropped += 1,
            (Origin::Loop, Ok(())) => {}
            (Origin::Loop, Err(_)) => self.stats.looped_dropped += 1,
        }
        if outcome.is_ok() {
            self.epoch += 1;
        }
    }

    fn connect_client(&mut self, node: usize, port: u16) -> NetResult<u32> {
        self.apps_dirty = true;
        let Some(&l) = self.nodes[node].listeners.get(&port) else {
            return Err(NetError::Refused);
        };
        let c = self.conns.len() as u32;
        let cap = self.nodes[node].tcp_buffer;
        self.conns.push(Conn::new(node, port, ConnState::Open, cap));
        self.listeners[l as usize]
            .as_mut()
            .expect("listener in the node's table")
            .backlog
            .push_back(c);
        self.epoch += 1;
        Ok(c)
    }

    /// The client of transfer `id` connects.
    fn begin_transfer(&mut self, id: usize) {
        self.apps_dirty = true;
        let slot = &self.transfers[id];
        let (end, node, port) = (slot.client, slot.node, slot.port);
        match self.connect_client(node, port) {
            Ok(c) => self.ends[end].conn = c,
            Err(_) => {
                let e = &mut self.ends[end];
                self.conns[e.conn as usize].state = ConnState::Failed(NetError::Refused);
                e.report.error = Some(TransferError::Refused);
                e.closed = true;
            }
        }
        self.epoch += 1;
    }

    fn resolve_local(&mut self, c: u32) {
        self.apps_dirty = true;
        let conn = &self.conns[c as usize];
        if conn.state != ConnState::Pending {
            return;
        }
        if conn.net.closed {
            self.conns[c as usize].state = ConnState::Failed(NetError::Closed);
            return;
        }
        let (node, port) = (conn.node, conn.port);
        let service = self.nodes[node].services.get(&port).copied();
        let conn = &mut self.conns[c as usize];
        conn.dirty = true;
        match service {
            None | Some(Service::Refuse) => conn.state = ConnState::Failed(NetError::Refused),
            Some(s) => {
                conn.state = ConnState::Open;
                match s {
                    Service::AcceptNoRead => {
                        conn.app_limit = Some(0);
                        self.nodes[node]
                            .accepted
                            .entry(port)
                            .or_default()
                            .push_back(c);
                    }
                    Service::Accept => {
                        self.nodes[node]
                            .accepted
                            .entry(port)
                            .or_default()
                            .push_back(c);
                    }
                    Service::Transfer | Service::SlowTransfer { .. } => {
                        if let Service::SlowTransfer { read_rate } = s {
                            conn.app_rate = Some(ReadRate::new(read_rate, self.now));
                        }
                        self.ends.push(TransferEnd {
                            conn: c,
                            role: Role::Server,
                            id: None,
                            header: Vec::with_capacity(HEADER_LEN),
                            header_at: 0,
                            out_seed: 0,
                            in_seed: 0,
                            report: EndReport::default(),
                            closed: false,
                        })
                    }
                    Service::Echo => self.echoes.push(EchoEnd {
                        conn: c,
                        pending: Vec::new(),
                        closed: false,
                    }),
                    Service::Refuse => unreachable!(),
                }
            }
        }
        self.epoch += 1;
    }

    fn restart(&mut self, node: usize) {
        self.apps_dirty = true;
        let n = &mut self.nodes[node];
        n.restarts += 1;
        let udp: Vec<u32> = std::mem::take(&mut n.udp).into_values().collect();
        let listeners: Vec<u32> = std::mem::take(&mut n.listeners).into_values().collect();
        for i in udp {
            self.udp[i as usize] = None;
        }
        for l in listeners {
            self.close_listener(l);
        }
        for conn in self.conns.iter_mut().filter(|c| c.node == node) {
            if conn.state == ConnState::Pending {
                conn.state = ConnState::Failed(NetError::Closed);
                conn.net.closed = true;
                conn.dirty = true;
            } else if !conn.net.closed {
                conn.close(Side::Net);
            }
        }
        self.epoch += 1;
    }

    fn close_listener(&mut self, l: u32) {
        self.apps_dirty = true;
        if let Some(listener) = self.listeners[l as usize].take() {
            // Connections the kernel accepted but the process never took
            // are reset.
            for c in listener.backlog {
                self.conns[c as usize].reset(Side::Net);
            }
            let n = &mut self.nodes[listener.node];
            if n.listeners.get(&listener.port) == Some(&l) {
                n.listeners.remove(&listener.port);
            }
        }
    }

    /// One pass over the transfer apps; true if any made progress.
    fn pump_apps(&mut self) -> bool {
        if !std::mem::take(&mut self.apps_dirty) {
            return false;
        }
        let mut progress = false;
        for i in 0..self.ends.len() {
            let c = self.ends[i].conn as usize;
            if self.ends[i].closed || !std::mem::take(&mut self.conns[c].dirty) {
                continue;
            }
            progress |= self.pump_end(i);
            if !self.ends[i].closed {
                self.wake_paced(self.ends[i].conn);
            }
        }
        for i in 0..self.echoes.len() {
            let c = self.echoes[i].conn as usize;
            if !self.echoes[i].closed && std::mem::take(&mut self.conns[c].dirty) {
                progress |= self.pump_echo(i);
            }
        }
        if progress {
            self.epoch += 1;
        }
        progress
    }

    fn pump_echo(&mut self, i: usize) -> bool {
        let now = self.now;
        let e = &mut self.echoes[i];
        let conn = &mut self.conns[e.conn as usize];
        let mut progress = false;
        let mut buf = [0u8; CHUNK];
        loop {
            if !e.pending.is_empty() {
                match conn.write(Side::App, &e.pending) {
                    Ok(n) => {
                        e.pending.drain(..n);
                        progress = true;
                        continue;
                    }
                    Err(NetError::WouldBlock) => break,
                    Err(_) => {
                        conn.reset(Side::App);
                        e.closed = true;
                        return true;
                    }
                }
            }
            match conn.read(Side::App, &mut buf, now) {
                Ok(0) => {
                    let _ = conn.shutdown(Side::App);
                    conn.close(Side::App);
                    e.closed = true;
                    return true;
                }
                Ok(n) => {
                    e.pending.extend_from_slice(&buf[..n]);
                    progress = true;
                }
                Err(NetError::WouldBlock) => break,
                Err(_) => {
                    conn.reset(Side::App);
                    e.closed = true;
                    return true;
                }
            }
        }
        progress
    }

    /// Schedules a wake-up for a paced app reader with bytes waiting.
    fn wake_paced(&mut self, c: u32) {
        let now = self.now;
        let conn = &mut self.conns[c as usize];
        let waiting = conn.to_app.buf.len() as u64;
        let Some(r) = &mut conn.app_rate else {
            return;
        };
        if waiting == 0 || conn.app_limit == Some(0) || r.wake_at.is_some_and(|t| t > now) {
            return;
        }
        r.refill(now);
        let at = r.ready_at(now, waiting.min(1500));
        if at > now {
            r.wake_at = Some(at);
            self.push(at, EventKind::Wake(c));
        }
    }

    fn pump_end(&mut self, i: usize) -> bool {
        let now = time::at_micros(self.now);
        let self_now = self.now;
        let Inner {
            conns,
            ends,
            transfers,
            apps_dirty,
            ..
        } = self;
        let end = &mut ends[i];
        let conn = &mut conns[end.conn as usize];
        match conn.state {
            ConnState::Pending => return false,
            ConnState::Failed(_) => {
                end.report.error = Some(TransferError::Refused);
                end.closed = true;
                return true;
            }
            ConnState::Open => {}
        }
        let mut progress = false;
        let mut buf = [0u8; CHUNK];
        // Send: the header (clients), the stream, then FIN.
        loop {
            let r = if end.role == Role::Client && end.header_at < end.header.len() {
                conn.write(Side::App, &end.header[end.header_at..])
                    .map(|n| end.header_at += n)
            } else if end.report.sent < end.report.to_send
                && (end.role == Role::Client || end.id.is_some())
            {
                let space = conn.to_net.cap - conn.to_net.buf.len();
                let n =
                    (end.report.to_send - end.report.sent).min(space.min(CHUNK) as u64) as usize;
                fill_stream(end.out_seed, end.report.sent, &mut buf[..n]);
                conn.write(Side::App, &buf[..n])
                    .map(|n| end.report.sent += n as u64)
            } else if !end.report.fin_sent && (end.role == Role::Client || end.id.is_some()) {
                conn.shutdown(Side::App)
                    .map(|()| end.report.fin_sent = true)
            } else {
                break;
            };
            match r {
                Ok(()) => progress = true,
                Err(NetError::WouldBlock) => break,
                Err(_) => {
                    end.report.error = Some(TransferError::Reset);
                    break;
                }
            }
        }
        // Receive and check.
        while end.report.error.is_none() && !end.report.fin_received {
            match conn.read(Side::App, &mut buf, self_now) {
                Ok(0) => {
                    progress = true;
                    end.report.fin_received = true;
                    if end.id.is_none() {
                        end.report.error = Some(TransferError::BadHeader);
                    } else if end.report.received < end.report.expected {
                        end.report.error = Some(TransferError::Short {
                            received: end.report.received,
                        });
                    }
                    break;
                }
                Ok(n) => {
                    progress = true;
                    let mut data = &buf[..n];
                    if end.role == Role::Server && end.id.is_none() {
                        let take = (HEADER_LEN - end.header.len()).min(data.len());
                        end.header.extend_from_slice(&data[..take]);
                        data = &data[take..];
                        if end.header.len() == HEADER_LEN {
                            match parse_header(&end.header, transfers.len()) {
                                Some((id, spec)) => {
                                    end.id = Some(id);
                                    end.in_seed = spec.seed;
                                    end.out_seed = down_seed(spec.seed);
                                    end.report.expected = spec.up;
                                    end.report.to_send = spec.down;
                                    transfers[id].server = Some(i);
                                    // Now it knows what to send: run again.
                                    conn.dirty = true;
                                    *apps_dirty = true;
                                }
                                None => {
                                    end.report.error = Some(TransferError::BadHeader);
                                    break;
                                }
                            }
                        }
                    }
                    if data.is_empty() {
                        continue;
                    }
                    let at = end.report.received;
                    if at + data.len() as u64 > end.report.expected {
                        end.report.error = Some(TransferError::Excess {
                            received: at + data.len() as u64,
                        });
                        break;
                    }
                    let mut want = [0u8; CHUNK];
                    let want = &mut want[..data.len()];
                    fill_stream(end.in_seed, at, want);
                    if data != &want[..] {
                        let k = data.iter().zip(want.iter()).position(|(a, b)| a != b);
                        let k = k.expect("slices differ") as u64;
                        end.report.error = Some(TransferError::Mismatch { offset: at + k });
                        break;
                    }
                    end.report.received += data.len() as u64;
                }
                Err(NetError::WouldBlock) => break,
                Err(_) => {
                    progress = true;
                    end.report.error = Some(TransferError::Reset);
                }
            }
        }
        if end.report.error.is_some() {
            conn.reset(Side::App);
            end.closed = true;
            return true;
        }
        if end.report.fin_sent && end.report.fin_received {
            end.report.done_at = Some(now);
            conn.close(Side::App);
            end.closed = true;
            progress = true;
        }
        progress
    }
}

fn parse_header(h: &[u8], transfers: usize) -> Option<(usize, TransferSpec)> {
    if h[..4] != HEADER_MAGIC {
        return None;
    }
    let word = |at: usize| u64::from_le_bytes(h[at..at + 8].try_into().expect("8 bytes"));
    let id = u32::from_le_bytes(h[4..8].try_into().expect("4 bytes")) as usize;
    (id < transfers).then(|| {
        (
            id,
            TransferSpec {
                seed: word(8),
                up: word(16),
                down: word(24),
            },
        )
    })
}

// ---------------------------------------------------------------- apps ----

/// The far end of a local TCP connection (a test's client or service),
/// driven by hand. Operations follow the same rules as the node's end.
#[derive(Clone)]
pub struct AppStream {
    world: World,
    conn: u32,
}

impl fmt::Debug for AppStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppStream")
            .field("conn", &self.conn)
            .finish()
    }
}

impl AppStream {
    fn with<T>(&self, f: impl FnOnce(&mut Conn) -> T) -> T {
        self.with_now(|c, _| f(c))
    }

    fn with_now<T>(&self, f: impl FnOnce(&mut Conn, u64) -> T) -> T {
        let mut w = self.world.inner.borrow_mut();
        w.epoch += 1;
        w.apps_dirty = true;
        let now = w.now;
        let conn = &mut w.conns[self.conn as usize];
        conn.dirty = true;
        f(conn, now)
    }

    /// Writes what fits in the socket buffer: how many bytes were taken,
    /// `WouldBlock` when full, `Reset` after an RST, `Closed` after
    /// shutdown.
    pub fn write(&self, data: &[u8]) -> NetResult<usize> {
        self.with(|c| c.write(Side::App, data))
    }

    /// Reads what arrived (up to the receive limit): `Ok(0)` at FIN,
    /// `WouldBlock` when nothing is there, `Reset` after an RST.
    pub fn read(&self, buf: &mut [u8]) -> NetResult<usize> {
        self.with_now(|c, now| c.read(Side::App, buf, now))
    }

    /// Reads everything readable now into a vector, and whether FIN came.
    pub fn read_available(&self) -> NetResult<(Vec<u8>, bool)> {
        let mut out = Vec::new();
        let mut buf = [0u8; CHUNK];
        loop {
            match self.read(&mut buf) {
                Ok(0) => return Ok((out, true)),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(NetError::WouldBlock) => return Ok((out, false)),
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends FIN after the written bytes.
    pub fn shutdown_write(&self) -> NetResult<()> {
        self.with(|c| c.shutdown(Side::App))
    }

    /// Closes like Linux `close()`: FIN, or RST with unread bytes.
    pub fn close(&self) {
        self.with(|c| c.close(Side::App));
    }

    /// Aborts the connection (RST).
    pub fn reset(&self) {
        self.with(|c| c.reset(Side::App));
    }

    /// From now on reads take at most `bytes` more bytes in total (`None`:
    /// no limit). `Some(0)` stalls the reader: its socket buffer fills and
    /// the node's writes block.
    pub fn set_receive_limit(&self, bytes: Option<u64>) {
        self.with(|c| c.app_limit = bytes);
    }

    /// Paces this end's reads to `bytes_per_sec` (a slow reader; burst
    /// 10 ms, at least 16 KiB), or lifts the pacing with `None`. A
    /// transfer app wakes up by itself when credit is back; a hand-driven
    /// stream just reads less.
    pub fn set_read_rate(&self, bytes_per_sec: Option<u64>) {
        self.with_now(|c, now| c.app_rate = bytes_per_sec.map(|r| ReadRate::new(r, now)));
    }

    /// Stops reading (the receive limit at 0).
    pub fn stall(&self) {
        self.set_receive_limit(Some(0));
    }

    /// Reads again without limit.
    pub fn resume(&self) {
        self.set_receive_limit(None);
    }

    /// Bytes waiting for this end to read.
    pub fn readable(&self) -> usize {
        self.world.inner.borrow().conns[self.conn as usize]
            .to_app
            .buf
            .len()
    }

    /// This end received an RST.
    pub fn is_reset(&self) -> bool {
        self.world.inner.borrow().conns[self.conn as usize]
            .app
            .reset
    }

    /// The node's end closed its socket (or its process died).
    pub fn peer_closed(&self) -> bool {
        self.world.inner.borrow().conns[self.conn as usize]
            .net
            .closed
    }
}

impl World {
    /// The app end of a transfer's connection, for faults by hand (e.g.
    /// [`AppStream::reset`], [`AppStream::stall`]). `None` for a server
    /// whose header has not arrived, or a client not started yet.
    pub fn transfer_stream(&self, id: TransferId, server: bool) -> Option<AppStream> {
        let w = self.inner.borrow();
        let slot = &w.transfers[id.0];
        let end = if server { slot.server? } else { slot.client };
        let conn = w.ends[end].conn;
        // A client not yet started has no connection.
        (w.conns[conn as usize].node != usize::MAX).then(|| AppStream {
            world: self.clone(),
            conn,
        })
    }
}

// -------------------------------------------------------------- SimNet ----

/// One node's socket layer: a handle into the [`World`] implementing the
/// core's [`Udp`], [`Tcp`] and [`Wait`].
#[derive(Clone)]
pub struct SimNet {
    world: World,
    node: usize,
}

impl fmt::Debug for SimNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimNet").field("node", &self.node).finish()
    }
}

impl SimNet {
    /// The node.
    pub fn node(&self) -> NodeId {
        NodeId(self.node)
    }

    /// The node's address.
    pub fn addr(&self) -> Ipv4Addr {
        self.world.inner.borrow().nodes[self.node].addr
    }

    /// The world.
    pub fn world(&self) -> &World {
        &self.world
    }

    fn conn<T>(&self, h: TcpHandle, f: impl FnOnce(&mut Conn) -> NetResult<T>) -> NetResult<T> {
        let mut w = self.world.inner.borrow_mut();
        w.apps_dirty = true;
        match w.conns.get_mut(h.0 as usize) {
            Some(c) if c.node == self.node && !c.net.closed => f(c),
            _ => Err(NetError::Closed),
        }
    }
}

impl Udp for SimNet {
    type UdpSocket = UdpHandle;

    fn udp_bind(&mut self, port: u16) -> NetResult<UdpHandle> {
        let mut w = self.world.inner.borrow_mut();
        let node = self.node;
        let n = &mut w.nodes[node];
        let port = if port == 0 {
            let mut p = n.next_ephemeral;
            let mut tries = 0u32;
            while n.udp.contains_key(&p) {
                p = if p == u16::MAX { 49152 } else { p + 1 };
                tries += 1;
                if tries > 16384 {
                    return Err(NetError::AddrInUse);
                }
            }
            n.next_ephemeral = if p == u16::MAX { 49152 } else { p + 1 };
            p
        } else if n.udp.contains_key(&port) {
            return Err(NetError::AddrInUse);
        } else {
            port
        };
        let i = w.udp.len() as u32;
        w.nodes[node].udp.insert(port, i);
        w.udp.push(Some(UdpSock {
            node,
            port,
            ttl: 64,
            queue: VecDeque::new(),
            queued_bytes: 0,
            overflows: 0,
        }));
        Ok(UdpHandle(i))
    }

    fn udp_send_to(
        &mut self,
        socket: UdpHandle,
        datagram: &[u8],
        to: SocketAddrV4,
    ) -> NetResult<()> {
        let mut w = self.world.inner.borrow_mut();
        let (port, ttl) = match w.udp.get(socket.0 as usize) {
            Some(Some(s)) if s.node == self.node => (s.port, s.ttl),
            _ => return Err(NetError::Closed),
        };
        if datagram.len() > MAX_UDP_PAYLOAD {
            return Err(NetError::TooLong);
        }
        w.send(self.node, port, ttl, datagram, to)
    }

    fn udp_recv_from(
        &mut self,
        socket: UdpHandle,
        buf: &mut [u8],
    ) -> NetResult<(usize, SocketAddrV4)> {
        let mut w = self.world.inner.borrow_mut();
        let s = match w.udp.get_mut(socket.0 as usize) {
            Some(Some(s)) if s.node == self.node => s,
            _ => return Err(NetError::Closed),
        };
        let (from, data) = s.queue.pop_front().ok_or(NetError::WouldBlock)?;
        s.queued_bytes -= data.len() + RX_OVERHEAD;
        if data.len() > buf.len() {
            return Err(NetError::TooLong);
        }
        buf[..data.len()].copy_from_slice(&data);
        Ok((data.len(), from))
    }

    fn udp_set_ttl(&mut self, socket: UdpHandle, ttl: u8) -> NetResult<()> {
        let mut w = self.world.inner.borrow_mut();
        match w.udp.get_mut(socket.0 as usize) {
            Some(Some(s)) if s.node == self.node => {
                s.ttl = ttl;
                Ok(())
            }
            _ => Err(NetError::Closed),
        }
    }

    fn udp_close(&mut self, socket: UdpHandle) {
        let mut w = self.world.inner.borrow_mut();
        let port = match w.udp.get(socket.0 as usize) {
            Some(Some(s)) if s.node == self.node => s.port,
            _ => return,
        };
        w.udp[socket.0 as usize] = None;
        w.nodes[self.node].udp.remove(&port);
    }
}

impl Tcp for SimNet {
    type TcpSocket = TcpHandle;
    type Listener = ListenerHandle;

    fn tcp_bind_reuse(&mut self, _port: u16) -> NetResult<TcpHandle> {
        Err(NetError::Other(UNSUPPORTED))
    }

    fn tcp_connect(&mut self, _socket: TcpHandle, _peer: SocketAddrV4) -> NetResult<()> {
        Err(NetError::Other(UNSUPPORTED))
    }

    fn tcp_status(&mut self, socket: TcpHandle) -> ConnectStatus {
        let w = self.world.inner.borrow();
        match w.conns.get(socket.0 as usize) {
            Some(c) if c.node == self.node && !c.net.closed => match c.state {
                ConnState::Pending => ConnectStatus::Pending,
                ConnState::Open => ConnectStatus::Connected,
                ConnState::Failed(e) => ConnectStatus::Failed(e),
            },
            _ => ConnectStatus::Failed(NetError::Closed),
        }
    }

    fn tcp_set_ttl(&mut self, _socket: TcpHandle, _ttl: u8) -> NetResult<()> {
        Err(NetError::Other(UNSUPPORTED))
    }

    fn tcp_read(&mut self, socket: TcpHandle, buf: &mut [u8]) -> NetResult<usize> {
        self.conn(socket, |c| c.read(Side::Net, buf, 0))
    }

    fn tcp_write(&mut self, socket: TcpHandle, buf: &[u8]) -> NetResult<usize> {
        self.conn(socket, |c| c.write(Side::Net, buf))
    }

    fn tcp_shutdown_write(&mut self, socket: TcpHandle) -> NetResult<()> {
        self.conn(socket, |c| c.shutdown(Side::Net))
    }

    fn tcp_close(&mut self, socket: TcpHandle) {
        let _ = self.conn(socket, |c| {
            if c.state == ConnState::Pending {
                c.net.closed = true;
            } else {
                c.close(Side::Net);
            }
            Ok(())
        });
    }

    fn tcp_listen(&mut self, port: u16) -> NetResult<ListenerHandle> {
        let mut w = self.world.inner.borrow_mut();
        if w.nodes[self.node].listeners.contains_key(&port) {
            return Err(NetError::AddrInUse);
        }
        let l = w.listeners.len() as u32;
        w.listeners.push(Some(Listener {
            node: self.node,
            port,
            backlog: VecDeque::new(),
        }));
        w.nodes[self.node].listeners.insert(port, l);
        Ok(ListenerHandle(l))
    }

    fn tcp_accept(&mut self, listener: ListenerHandle) -> NetResult<TcpHandle> {
        let mut w = self.world.inner.borrow_mut();
        match w.listeners.get_mut(listener.0 as usize) {
            Some(Some(l)) if l.node == self.node => l
                .backlog
                .pop_front()
                .map(TcpHandle)
                .ok_or(NetError::WouldBlock),
            _ => Err(NetError::Closed),
        }
    }

    fn tcp_unlisten(&mut self, listener: ListenerHandle) {
        let mut w = self.world.inner.borrow_mut();
        if matches!(w.listeners.get(listener.0 as usize), Some(Some(l)) if l.node == self.node) {
            w.close_listener(listener.0);
        }
    }

    fn tcp_connect_local(&mut self, port: u16) -> NetResult<TcpHandle> {
        let mut w = self.world.inner.borrow_mut();
        let c = w.conns.len() as u32;
        let cap = w.nodes[self.node].tcp_buffer;
        w.conns
            .push(Conn::new(self.node, port, ConnState::Pending, cap));
        let at = w.now + w.local_connect_us;
        w.push(at, EventKind::LocalConnect(c));
        Ok(TcpHandle(c))
    }
}

impl Wait for SimNet {
    fn now(&mut self) -> Instant {
        self.world.now()
    }

    /// Returns at once if something changed or `deadline` has passed;
    /// otherwise advances the world to the earlier of `deadline` and its
    /// next event. With neither, nothing can ever happen: `TimedOut`.
    ///
    /// # Panics
    /// After [`RunLimits::rounds_per_instant`] calls in a row that found
    /// nothing to do without time moving (a driver spinning on a past
    /// deadline).
    fn wait(&mut self, deadline: Option<Instant>) -> NetResult<Instant> {
        let mut w = self.world.inner.borrow_mut();
        if w.settle() {
            w.idle_waits = 0;
            return Ok(time::at_micros(w.now));
        }
        let now = w.now;
        let target = match (deadline.map(time::micros), w.next_event()) {
            (Some(d), _) if d <= now => {
                w.idle_waits += 1;
                if w.idle_waits > w.limits.rounds_per_instant {
                    panic!(
                        "simnet livelock: node {} waited {} times at {now} µs for a deadline \
                         already passed",
                        self.node, w.idle_waits
                    );
                }
                return Ok(time::at_micros(now));
            }
            (Some(d), Some(e)) => d.min(e),
            (Some(d), None) => d,
            (None, Some(e)) => e,
            (None, None) => return Err(NetError::TimedOut),
        };
        w.now = target.max(now);
        w.idle_waits = 0;
        w.settle();
        Ok(time::at_micros(w.now))
    }
}
