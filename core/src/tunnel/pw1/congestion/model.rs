//! A packet-level bottleneck model on a virtual clock, for the controller
//! tests: senders (a [`Controller`] + a [`Pacer`] + RFC 9002-style loss
//! detection each) share one link with a rate, a drop-tail queue, random
//! loss before the queue, and a propagation delay; receivers ack every
//! second packet (at once on a gap, else within 1 ms) over a return path
//! with its own delay and random loss. Acks are cumulative over what
//! arrived (like pw1's ranged acks), so a lost ack only delays
//! information.
//!
//! Everything is deterministic: one seeded xorshift, one event heap
//! ordered by (time, sequence).
extern crate std;

use super::{AckedPacket, Controller, LostPacket, SentState};
use crate::time::at_micros;
use crate::tunnel::pw1::pacer::Pacer;
use crate::vectors::XorShift;
use std::boxed::Box;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::vec::Vec;

/// Datagram size every model sender uses.
pub(crate) const MSS: usize = 1400;
/// Goodput is recorded in bins of this many µs.
pub(crate) const BIN_US: u64 = 10_000;
const NS: u64 = 1000;

/// The shared bottleneck.
#[derive(Clone, Debug)]
pub(crate) struct Link {
    /// Bytes per second.
    pub(crate) rate: u64,
    /// One-way propagation delay each way, µs.
    pub(crate) delay_us: u64,
    /// Drop-tail queue limit, bytes.
    pub(crate) queue_bytes: u64,
    /// Random loss before the queue, parts per million.
    pub(crate) loss_ppm: u64,
    /// Random loss of acks, parts per million.
    pub(crate) ack_loss_ppm: u64,
    /// Random extra delay of each datagram before the bottleneck (the
    /// senders' access paths), µs, order-preserving per flow. It breaks
    /// the drop-tail phase effects of a perfectly regular model.
    pub(crate) jitter_us: u64,
    /// The receiver acks every this many packets (at once on a gap) ...
    pub(crate) ack_every: u32,
    /// ... or this long after the first unacked one, µs.
    pub(crate) max_ack_delay_us: u64,
    /// Delay changes: from µs `.0` on, `.1` µs one-way each way (only
    /// increases, so nothing is reordered).
    pub(crate) delay_changes: Vec<(u64, u64)>,
    /// Rate changes: from µs `.0` on, `.1` bytes per second (0: blackout,
    /// everything dropped).
    pub(crate) rate_changes: Vec<(u64, u64)>,
}

impl Link {
    pub(crate) fn new(mbit: u64, rtt_ms: u64, loss_pct_each_way: f64) -> Self {
        let rate = mbit * 1_000_000 / 8;
        let delay_us = rtt_ms * 500;
        let ppm = (loss_pct_each_way * 10_000.0) as u64;
        Link {
            rate,
            delay_us,
            // One BDP of buffer.
            queue_bytes: (rate * rtt_ms / 1000).max(20 * MSS as u64),
            loss_ppm: ppm,
            ack_loss_ppm: ppm,
            jitter_us: 500,
            ack_every: 2,
            max_ack_delay_us: 1_000,
            delay_changes: Vec::new(),
            rate_changes: Vec::new(),
        }
    }
}

/// What the application above a sender offers.
#[derive(Clone, Copy, Debug)]
pub(crate) enum App {
    /// Always has data.
    Bulk,
    /// Bytes per second, from start on.
    Rate(u64),
    /// Bulk, but never more than `bytes` in flight (a peer's flow control
    /// window) until `until_us`.
    Window { bytes: usize, until_us: u64 },
    /// Bulk, but only `rate` bytes per second between `from_us` and `to_us`.
    LimitedBetween { from_us: u64, to_us: u64, rate: u64 },
}

pub(crate) struct FlowSpec {
    pub(crate) cc: Box<dyn Controller>,
    pub(crate) start_us: u64,
    pub(crate) app: App,
    /// Extra one-way delay of this flow's access path, µs.
    pub(crate) extra_delay_us: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Fate {
    InFlight,
    Acked,
    Lost,
}

#[derive(Clone, Copy)]
struct SentRec {
    sent_time_us: u64,
    bytes: usize,
    sent: SentState,
    dropped: bool,
    fate: Fate,
}

/// One sender and its receiver.
pub(crate) struct Flow {
    pub(crate) cc: Box<dyn Controller>,
    pacer: Pacer,
    start_us: u64,
    app: App,
    app_sent: u64,
    extra_delay_us: u64,
    // sender
    base_pn: u64,
    recs: VecDeque<SentRec>,
    next_pn: u64,
    bytes_in_flight: usize,
    largest_acked: Option<u64>,
    srtt_us: u64,
    rttvar_us: u64,
    min_rtt_us: u64,
    latest_rtt_us: u64,
    pending_wake_ns: Option<u64>,
    last_enter_ns: u64,
    last_sent_us: u64,
    pto_count: u32,
    probes: u32,
    // receiver
    recv_unacked: u32,
    recv_largest: Option<u64>,
    ack_timer_ns: Option<u64>,
    // measurements
    /// Bytes arriving at the receiver per [`BIN_US`].
    pub(crate) arrived_bins: Vec<u64>,
    /// (µs, rtt µs) of every RTT sample.
    pub(crate) rtt_samples: Vec<(u64, u64)>,
    /// (µs, bw estimate) after every ack.
    pub(crate) bw_trace: Vec<(u64, u64)>,
    pub(crate) persistent_congestion: u32,
    pub(crate) packets_sent: u64,
    pub(crate) packets_lost: u64,
    pub(crate) max_bw_est: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    /// Sender `flow` should try to send / check timers.
    Wake(usize),
    /// Packet `pn` of `flow` reaches the bottleneck queue.
    Enter(usize, u64),
    /// Packet `pn` of `flow` arrives at its receiver.
    Arrive(usize, u64),
    /// An ack of everything up to `pn` reaches `flow`'s sender.
    Ack(usize, u64),
    /// `flow`'s receiver's delayed-ack timer.
    AckTimer(usize),
}

pub(crate) struct Model {
    pub(crate) link: Link,
    pub(crate) flows: Vec<Flow>,
    heap: BinaryHeap<Reverse<(u64, u64, Ev)>>,
    seq: u64,
    rng: XorShift,
    link_free_ns: u64,
    now_ns: u64,
    acked: Vec<AckedPacket>,
    lost: Vec<LostPacket>,
    /// Packets the queue dropped (tail drop), all flows.
    pub(crate) tail_drops: u64,
}

impl Model {
    pub(crate) fn new(link: Link, specs: Vec<FlowSpec>, seed: u64) -> Self {
        let mut m = Model {
            link,
            flows: Vec::new(),
            heap: BinaryHeap::new(),
            seq: 0,
            rng: XorShift(seed | 1),
            link_free_ns: 0,
            now_ns: 0,
            acked: Vec::new(),
            lost: Vec::new(),
            tail_drops: 0,
        };
        for (i, s) in specs.into_iter().enumerate() {
            m.flows.push(Flow {
                cc: s.cc,
                pacer: Pacer::new(MSS),
                start_us: s.start_us,
                app: s.app,
                app_sent: 0,
                extra_delay_us: s.extra_delay_us,
                base_pn: 0,
                recs: VecDeque::new(),
                next_pn: 0,
                bytes_in_flight: 0,
                largest_acked: None,
                srtt_us: 0,
                rttvar_us: 0,
                min_rtt_us: 0,
                latest_rtt_us: 0,
                pending_wake_ns: None,
                last_enter_ns: 0,
                last_sent_us: 0,
                pto_count: 0,
                probes: 0,
                recv_unacked: 0,
                recv_largest: None,
                ack_timer_ns: None,
                arrived_bins: Vec::new(),
                rtt_samples: Vec::new(),
                bw_trace: Vec::new(),
                persistent_congestion: 0,
                packets_sent: 0,
                packets_lost: 0,
                max_bw_est: 0,
            });
            m.push(s.start_us * NS, Ev::Wake(i));
        }
        m
    }

    fn push(&mut self, at_ns: u64, ev: Ev) {
        self.seq += 1;
        self.heap.push(Reverse((at_ns, self.seq, ev)));
    }

    fn chance(&mut self, ppm: u64) -> bool {
        ppm > 0 && self.rng.below(1_000_000) < ppm
    }

    fn link_rate(&self, at_us: u64) -> u64 {
        let mut r = self.link.rate;
        for &(from, rate) in &self.link.rate_changes {
            if at_us >= from {
                r = rate;
            }
        }
        r
    }

    fn delay_us(&self, at_us: u64) -> u64 {
        let mut d = self.link.delay_us;
        for &(from, delay) in &self.link.delay_changes {
            if at_us >= from {
                d = delay;
            }
        }
        d
    }

    /// Runs until `end_us`.
    pub(crate) fn run(&mut self, end_us: u64) {
        while let Some(&Reverse((at, _, ev))) = self.heap.peek() {
            if at > end_us * NS {
                break;
            }
            self.heap.pop();
            self.now_ns = at;
            match ev {
                Ev::Wake(f) => {
                    if self.flows[f].pending_wake_ns == Some(at) {
                        self.flows[f].pending_wake_ns = None;
                    }
                    self.on_wake(f);
                }
                Ev::Enter(f, pn) => {
                    let extra = self.flows[f].extra_delay_us;
                    let dropped = self.enter_link(f, pn, extra);
                    let fl = &mut self.flows[f];
                    if let Some(i) = pn.checked_sub(fl.base_pn)
                        && let Some(r) = fl.recs.get_mut(i as usize)
                    {
                        r.dropped = dropped;
                    }
                }
                Ev::Arrive(f, pn) => self.on_arrive(f, pn),
                Ev::Ack(f, pn) => self.on_ack(f, pn),
                Ev::AckTimer(f) => {
                    if self.flows[f].ack_timer_ns == Some(at) {
                        self.flows[f].ack_timer_ns = None;
                        if self.flows[f].recv_unacked > 0 {
                            self.send_ack(f);
                        }
                    }
                }
            }
        }
        self.now_ns = end_us * NS;
    }

    fn now_us(&self) -> u64 {
        self.now_ns / NS
    }

    fn wake_at(&mut self, f: usize, at_ns: u64) {
        let at_ns = at_ns.max(self.now_ns);
        if self.flows[f].pending_wake_ns.is_some_and(|p| p <= at_ns) {
            return;
        }
        self.flows[f].pending_wake_ns = Some(at_ns);
        self.push(at_ns, Ev::Wake(f));
    }

    fn pto_us(&self, f: usize) -> u64 {
        let fl = &self.flows[f];
        let srtt = if fl.srtt_us == 0 { 100_000 } else { fl.srtt_us };
        (srtt + (4 * fl.rttvar_us).max(1000) + self.link.max_ack_delay_us) << fl.pto_count.min(6)
    }

    fn loss_delay_us(&self, f: usize) -> u64 {
        let fl = &self.flows[f];
        (fl.srtt_us.max(fl.latest_rtt_us) * 9 / 8).max(1000)
    }

    fn on_wake(&mut self, f: usize) {
        let now_us = self.now_us();
        self.detect_lost(f, now_us);
        // PTO.
        if self.flows[f].bytes_in_flight > 0 {
            let pto_at = self.flows[f].last_sent_us + self.pto_us(f);
            if now_us >= pto_at {
                self.flows[f].pto_count += 1;
                self.flows[f].probes = 2;
            }
        }
        self.try_send(f);
        self.arm_timers(f);
    }

    fn arm_timers(&mut self, f: usize) {
        let now_us = self.now_us();
        // Time-threshold loss timer.
        let fl = &self.flows[f];
        if let Some(la) = fl.largest_acked {
            let delay = self.loss_delay_us(f);
            let fl = &self.flows[f];
            let mut t = None;
            for (i, r) in fl.recs.iter().enumerate() {
                if fl.base_pn + i as u64 >= la {
                    break;
                }
                if r.fate == Fate::InFlight {
                    t = Some(r.sent_time_us + delay);
                    break;
                }
            }
            if let Some(t) = t {
                self.wake_at(f, t.max(now_us) * NS);
            }
        }
        if self.flows[f].bytes_in_flight > 0 {
            let pto_at = self.flows[f].last_sent_us + self.pto_us(f);
            self.wake_at(f, pto_at.max(now_us) * NS);
        }
    }

    fn try_send(&mut self, f: usize) {
        let now_us = self.now_us();
        let now = at_micros(now_us);
        loop {
            let fl = &mut self.flows[f];
            let probe = fl.probes > 0;
            if !probe && fl.bytes_in_flight + MSS > fl.cc.cwnd() {
                return;
            }
            if let App::Window { bytes, until_us } = fl.app
                && now_us < until_us
                && fl.bytes_in_flight + MSS > bytes
            {
                // Flow-control limited with room in the window: an ack
                // will wake us.
                fl.cc.on_app_limited(fl.bytes_in_flight);
                return;
            }
            let limited = match fl.app {
                App::Bulk | App::Window { .. } => false,
                App::Rate(r) => {
                    r * now_us.saturating_sub(fl.start_us) / 1_000_000 < fl.app_sent + MSS as u64
                }
                App::LimitedBetween {
                    from_us,
                    to_us,
                    rate,
                } => {
                    now_us >= from_us
                        && now_us < to_us
                        && rate * (now_us - from_us) / 1_000_000 < fl.app_sent + MSS as u64
                }
            };
            if limited {
                let fl = &mut self.flows[f];
                fl.cc.on_app_limited(fl.bytes_in_flight);
                let rate = match fl.app {
                    App::Rate(r) | App::LimitedBetween { rate: r, .. } => r.max(1),
                    App::Bulk | App::Window { .. } => 1,
                };
                // Wake when the next datagram's worth is there.
                let wait_us = (MSS as u64 * 1_000_000).div_ceil(rate);
                self.wake_at(f, (now_us + wait_us) * NS);
                return;
            }
            let rate = fl.cc.pacing_rate();
            if !probe && let Some(t) = fl.pacer.send_at(now, MSS, rate) {
                let t = crate::time::micros(t);
                self.wake_at(f, t * NS);
                return;
            }
            // Send one datagram.
            if probe {
                fl.probes -= 1;
            }
            let sent = fl.cc.on_sent(now, MSS, fl.bytes_in_flight);
            fl.pacer.on_sent(now, MSS, rate);
            fl.bytes_in_flight += MSS;
            fl.last_sent_us = now_us;
            fl.packets_sent += 1;
            if let App::LimitedBetween { from_us, to_us, .. } = fl.app {
                if now_us >= from_us && now_us < to_us {
                    fl.app_sent += MSS as u64;
                }
            } else {
                fl.app_sent += MSS as u64;
            }
            let pn = fl.next_pn;
            fl.next_pn += 1;
            let extra = fl.extra_delay_us;
            let dropped = if self.link.jitter_us == 0 {
                self.enter_link(f, pn, extra)
            } else {
                let j = self.rng.below(self.link.jitter_us + 1) * NS;
                let fl = &mut self.flows[f];
                let at = (self.now_ns + j).max(fl.last_enter_ns);
                fl.last_enter_ns = at;
                self.push(at, Ev::Enter(f, pn));
                false
            };
            self.flows[f].recs.push_back(SentRec {
                sent_time_us: now_us,
                bytes: MSS,
                sent,
                dropped,
                fate: Fate::InFlight,
            });
        }
    }

    /// Puts a datagram on the link; returns whether it was dropped.
    fn enter_link(&mut self, f: usize, pn: u64, extra_delay_us: u64) -> bool {
        let now_ns = self.now_ns;
        let rate = self.link_rate(now_ns / NS);
        if rate == 0 || self.chance(self.link.loss_ppm) {
            return true;
        }
        let queued_ns = self.link_free_ns.saturating_sub(now_ns);
        let queued_bytes = queued_ns * rate / 1_000_000_000;
        if queued_bytes + MSS as u64 > self.link.queue_bytes {
            self.tail_drops += 1;
            return true;
        }
        let start = self.link_free_ns.max(now_ns);
        let depart = start + MSS as u64 * 1_000_000_000 / rate;
        self.link_free_ns = depart;
        let arrive = depart + (self.delay_us(depart / NS) + extra_delay_us) * NS;
        self.push(arrive, Ev::Arrive(f, pn));
        false
    }

    fn on_arrive(&mut self, f: usize, pn: u64) {
        let bin = (self.now_us() / BIN_US) as usize;
        let fl = &mut self.flows[f];
        if fl.arrived_bins.len() <= bin {
            fl.arrived_bins.resize(bin + 1, 0);
        }
        fl.arrived_bins[bin] += MSS as u64;
        let gap =
            fl.recv_largest.is_some_and(|l| pn != l + 1) || (fl.recv_largest.is_none() && pn != 0);
        fl.recv_largest = Some(fl.recv_largest.map_or(pn, |l| l.max(pn)));
        fl.recv_unacked += 1;
        if fl.recv_unacked >= self.link.ack_every || gap {
            self.send_ack(f);
        } else if fl.ack_timer_ns.is_none() {
            let at = self.now_ns + self.link.max_ack_delay_us * NS;
            fl.ack_timer_ns = Some(at);
            self.push(at, Ev::AckTimer(f));
        }
    }

    fn send_ack(&mut self, f: usize) {
        let Some(largest) = self.flows[f].recv_largest else {
            return;
        };
        self.flows[f].recv_unacked = 0;
        self.flows[f].ack_timer_ns = None;
        if self.chance(self.link.ack_loss_ppm) {
            return;
        }
        let at = self.now_ns + (self.delay_us(self.now_us()) + self.flows[f].extra_delay_us) * NS;
        self.push(at, Ev::Ack(f, largest));
    }

    fn on_ack(&mut self, f: usize, largest: u64) {
        let now_us = self.now_us();
        let now = at_micros(now_us);
        let mut acked = core::mem::take(&mut self.acked);
        acked.clear();
        let fl = &mut self.flows[f];
        if fl.largest_acked.is_some_and(|l| largest <= l) {
            self.acked = acked;
            return;
        }
        fl.largest_acked = Some(largest);
        let mut rtt = None;
        for i in 0..fl.recs.len() {
            let pn = fl.base_pn + i as u64;
            if pn > largest {
                break;
            }
            let r = &mut fl.recs[i];
            if r.fate == Fate::InFlight && !r.dropped {
                r.fate = Fate::Acked;
                fl.bytes_in_flight -= r.bytes;
                acked.push(AckedPacket {
                    sent: r.sent,
                    sent_time: at_micros(r.sent_time_us),
                    bytes: r.bytes,
                });
                if pn == largest {
                    rtt = Some(now_us - r.sent_time_us);
                }
            }
        }
        if let Some(rtt) = rtt {
            fl.latest_rtt_us = rtt;
            fl.rtt_samples.push((now_us, rtt));
            if fl.srtt_us == 0 {
                fl.srtt_us = rtt;
                fl.rttvar_us = rtt / 2;
                fl.min_rtt_us = rtt;
            } else {
                fl.min_rtt_us = fl.min_rtt_us.min(rtt);
                let d = fl.srtt_us.abs_diff(rtt);
                fl.rttvar_us = (3 * fl.rttvar_us + d) / 4;
                fl.srtt_us = (7 * fl.srtt_us + rtt) / 8;
            }
        }
        if !acked.is_empty() {
            fl.pto_count = 0;
            let min_rtt = fl.min_rtt_us;
            let inflight = fl.bytes_in_flight;
            fl.cc.on_ack(now, &acked, rtt, min_rtt, inflight);
            let bw = fl.cc.stats().bw;
            fl.max_bw_est = fl.max_bw_est.max(bw);
            fl.bw_trace.push((now_us, bw));
        }
        self.acked = acked;
        self.detect_lost(f, now_us);
        self.trim(f);
        self.try_send(f);
        self.arm_timers(f);
    }

    fn detect_lost(&mut self, f: usize, now_us: u64) {
        let Some(largest) = self.flows[f].largest_acked else {
            return;
        };
        let delay = self.loss_delay_us(f);
        let pc_us = 3 * {
            let fl = &self.flows[f];
            fl.srtt_us + (4 * fl.rttvar_us).max(1000) + self.link.max_ack_delay_us
        };
        let mut lost = core::mem::take(&mut self.lost);
        lost.clear();
        let fl = &mut self.flows[f];
        for i in 0..fl.recs.len() {
            let pn = fl.base_pn + i as u64;
            if pn >= largest {
                break;
            }
            let r = &mut fl.recs[i];
            if r.fate != Fate::InFlight {
                continue;
            }
            if largest >= pn + 3 || r.sent_time_us + delay <= now_us {
                r.fate = Fate::Lost;
                fl.bytes_in_flight -= r.bytes;
                fl.packets_lost += 1;
                lost.push(LostPacket {
                    sent: r.sent,
                    sent_time: at_micros(r.sent_time_us),
                    bytes: r.bytes,
                });
            }
        }
        if !lost.is_empty() {
            let inflight = fl.bytes_in_flight;
            fl.cc.on_loss(at_micros(now_us), &lost, inflight);
            // Persistent congestion (RFC 9002 §7.6, without the ack-delay
            // details): lost packets spanning more than 3 PTOs with no
            // packet acked between them.
            let mut run_start: Option<u64> = None;
            let mut persistent = false;
            for r in fl.recs.iter() {
                match r.fate {
                    Fate::Acked => run_start = None,
                    Fate::Lost => {
                        let start = *run_start.get_or_insert(r.sent_time_us);
                        if r.sent_time_us - start > pc_us {
                            persistent = true;
                        }
                    }
                    Fate::InFlight => {}
                }
            }
            if persistent && fl.srtt_us > 0 {
                fl.cc.on_persistent_congestion(at_micros(now_us));
                fl.persistent_congestion += 1;
                // Declared once per run.
                for r in fl.recs.iter_mut() {
                    if r.fate == Fate::Lost {
                        r.fate = Fate::Acked;
                    }
                }
            }
        }
        self.lost = lost;
    }

    fn trim(&mut self, f: usize) {
        let fl = &mut self.flows[f];
        while fl.recs.front().is_some_and(|r| r.fate != Fate::InFlight) {
            fl.recs.pop_front();
            fl.base_pn += 1;
        }
    }

    /// Bytes per second arriving at flow `f`'s receiver between two times.
    pub(crate) fn goodput(&self, f: usize, from_us: u64, to_us: u64) -> u64 {
        let bins = &self.flows[f].arrived_bins;
        let a = (from_us / BIN_US) as usize;
        let b = (to_us / BIN_US) as usize;
        let sum: u64 = (a..b).map(|i| bins.get(i).copied().unwrap_or(0)).sum();
        sum * 1_000_000 / (to_us - from_us)
    }

    /// Mean and max RTT of flow `f`'s samples between two times, µs.
    pub(crate) fn rtt_stats(&self, f: usize, from_us: u64, to_us: u64) -> (u64, u64) {
        let s: Vec<u64> = self.flows[f]
            .rtt_samples
            .iter()
            .filter(|(t, _)| *t >= from_us && *t < to_us)
            .map(|&(_, r)| r)
            .collect();
        if s.is_empty() {
            return (0, 0);
        }
        let mean = s.iter().sum::<u64>() / s.len() as u64;
        (mean, s.iter().copied().max().unwrap_or(0))
    }
}

/// Jain's fairness index of `x`, in percent.
pub(crate) fn jain_pct(x: &[u64]) -> u64 {
    let sum: f64 = x.iter().map(|&v| v as f64).sum();
    let sq: f64 = x.iter().map(|&v| (v as f64) * (v as f64)).sum();
    if sq == 0.0 {
        return 0;
    }
    (sum * sum / (x.len() as f64 * sq) * 100.0) as u64
}
