//! Controller tests: small state cases with explicit times, and runs of the
//! bottleneck [`model`](super::model) asserting utilisation, queueing delay,
//! fairness, back-off and recovery. Measured numbers are printed
//! (`cargo test -p punchwire-core pw1::congestion -- --nocapture`).
extern crate std;

use super::model::{App, FlowSpec, Link, MSS, Model, jain_pct};
use super::*;
use crate::time::{at_micros, at_millis};
use std::boxed::Box;
use std::eprintln;
use std::vec;
use std::vec::Vec;

const S: u64 = 1_000_000;

fn bbr(seed: u64) -> Box<dyn Controller> {
    // Through the enum, so the wrapper the connection uses is what runs.
    Box::new(AnyController::Bbr(Bbr::new(BbrConfig {
        max_datagram: MSS,
        initial_window_packets: 10,
        seed,
    })))
}

fn reno() -> Box<dyn Controller> {
    Box::new(NewReno::new(NewRenoConfig {
        max_datagram: MSS,
        initial_window_packets: 10,
    }))
}

fn bulk(cc: Box<dyn Controller>, start_us: u64) -> FlowSpec {
    FlowSpec {
        cc,
        start_us,
        app: App::Bulk,
        extra_delay_us: 0,
    }
}

fn pct(a: u64, b: u64) -> u64 {
    a * 100 / b.max(1)
}

// ---------------------------------------------------------------- model runs

fn utilisation_run(mbit: u64, rtt_ms: u64, loss: f64, secs: u64, seed: u64) -> (u64, Model) {
    let link = Link::new(mbit, rtt_ms, loss);
    let rate = link.rate;
    let mut m = Model::new(link, vec![bulk(bbr(seed), 0)], seed);
    m.run(secs * S);
    let g = m.goodput(0, 2 * S, secs * S);
    (pct(g, rate), m)
}

#[test]
fn bbr_full_speed_100mbit_20ms_1pct_loss() {
    let (u, m) = utilisation_run(100, 20, 1.0, 10, 1);
    let st = m.flows[0].cc.stats();
    eprintln!(
        "100 Mbit/s x 20 ms, 1 %/1 %: utilisation {u} % (2..10 s), lost {} of {} packets, congested rounds {} of {}, {:?}",
        m.flows[0].packets_lost, m.flows[0].packets_sent, st.congested_rounds, st.rounds, st
    );
    assert!(u >= 90, "utilisation {u} %");
}

#[test]
fn bbr_full_speed_100mbit_50ms_2pct_loss() {
    let (u, m) = utilisation_run(100, 50, 2.0, 12, 2);
    let st = m.flows[0].cc.stats();
    eprintln!(
        "100 Mbit/s x 50 ms, 2 %/2 %: utilisation {u} % (2..12 s), lost {} of {} packets, congested rounds {} of {}, {:?}",
        m.flows[0].packets_lost, m.flows[0].packets_sent, st.congested_rounds, st.rounds, st
    );
    assert!(u >= 90, "utilisation {u} %");
    // Random loss below the threshold is never read as congestion.
    assert!(st.congested_rounds * 20 <= st.rounds, "{st:?}");
}

#[test]
fn bbr_degrades_gracefully_beyond_the_spec() {
    // 5 % and 8 % random loss each way: above the fixed 5 % threshold, so
    // only the learned baseline (2 × the path's own loss) keeps the rate.
    for (loss, seed) in [(5.0, 41), (8.0, 42)] {
        let (u, m) = utilisation_run(100, 20, loss, 10, seed);
        let st = m.flows[0].cc.stats();
        eprintln!(
            "100 Mbit/s x 20 ms, {loss} %/{loss} %: utilisation {u} %, congested rounds {} of {}",
            st.congested_rounds, st.rounds
        );
        assert!(u >= 85, "{loss} %: utilisation {u} %");
    }
}

#[test]
fn bbr_startup_fills_100mbit_50ms_in_a_few_rtts() {
    let link = Link::new(100, 50, 0.0);
    let rate = link.rate;
    let mut m = Model::new(link, vec![bulk(bbr(3), 0)], 3);
    m.run(3 * S);
    // The first 50 ms window (one RTT) whose goodput reaches 90 % of the link.
    let first = (0..60u64)
        .find(|&i| m.goodput(0, i * 50_000, (i + 1) * 50_000) * 10 >= rate * 9)
        .expect("never reached 90 %");
    let reached_ms = (first + 1) * 50;
    eprintln!("startup on 100 Mbit/s x 50 ms: 90 % of the link within {reached_ms} ms (RTT 50 ms)");
    // Data reaches the receiver half an RTT after it is sent: ≤ 10 RTTs.
    assert!(reached_ms <= 500, "{reached_ms} ms");
    let u = pct(m.goodput(0, S, 3 * S), rate);
    assert!(u >= 95, "utilisation {u} % after startup");
}

#[test]
fn bbr_keeps_the_queue_short_without_loss() {
    // A deep buffer (4 BDP): a loss-based sender would fill it.
    let mut link = Link::new(100, 20, 0.0);
    link.queue_bytes *= 4;
    let rate = link.rate;
    let mut m = Model::new(link, vec![bulk(bbr(4), 0)], 4);
    m.run(10 * S);
    let (mean, max) = m.rtt_stats(0, 2 * S, 10 * S);
    let base = 20_000 + 2 * (MSS as u64 * 1_000_000 / rate);
    let u = pct(m.goodput(0, 2 * S, 10 * S), rate);
    eprintln!(
        "100 Mbit/s x 20 ms, 4 BDP buffer, no loss: utilisation {u} %, RTT mean {mean} µs max {max} µs (base {base} µs), tail drops {}",
        m.tail_drops
    );
    assert!(u >= 95, "utilisation {u} %");
    assert!(
        mean - base <= base / 2,
        "mean queueing delay {} µs",
        mean - base
    );
    assert!(
        max - base <= 2 * base,
        "max queueing delay {} µs",
        max - base
    );
    assert_eq!(m.tail_drops, 0);
}

#[test]
fn newreno_fills_the_same_deep_buffer() {
    // The yardstick: the loss-based controller's queue on the same path.
    let mut link = Link::new(100, 20, 0.0);
    link.queue_bytes *= 4;
    let mut m = Model::new(link, vec![bulk(reno(), 0)], 4);
    m.run(10 * S);
    let (mean, max) = m.rtt_stats(0, 2 * S, 10 * S);
    eprintln!("NewReno, same path: RTT mean {mean} µs max {max} µs");
    assert!(mean > 40_000, "NewReno mean RTT {mean} µs");
}

fn fairness_run(
    a: Box<dyn Controller>,
    b: Box<dyn Controller>,
    loss: f64,
    seed: u64,
) -> (u64, u64, u64, Model) {
    let link = Link::new(100, 20, loss);
    let rate = link.rate;
    let mut m = Model::new(link, vec![bulk(a, 0), bulk(b, 2 * S)], seed);
    m.run(30 * S);
    let g0 = m.goodput(0, 15 * S, 30 * S);
    let g1 = m.goodput(1, 15 * S, 30 * S);
    (jain_pct(&[g0, g1]), pct(g0, rate), pct(g1, rate), m)
}

#[test]
fn bbr_two_flows_share_a_bottleneck() {
    let (j, a, b, _) = fairness_run(bbr(5), bbr(6), 0.0, 5);
    eprintln!(
        "two BBR flows, 100 Mbit/s x 20 ms, 1 BDP buffer: {a} % + {b} % of the link, Jain {j} %"
    );
    assert!(j >= 90, "Jain {j} %");
    assert!(a + b >= 90, "total {} %", a + b);
}

#[test]
fn bbr_two_flows_share_under_random_loss() {
    let (j, a, b, _) = fairness_run(bbr(7), bbr(8), 1.0, 7);
    eprintln!("two BBR flows, 100 Mbit/s x 20 ms, 1 % loss: {a} % + {b} % of the link, Jain {j} %");
    assert!(j >= 90, "Jain {j} %");
    assert!(a + b >= 90, "total {} %", a + b);
}

#[test]
fn bbr_and_newreno_share_a_bottleneck() {
    let (j, a, b, m) = fairness_run(bbr(9), reno(), 0.0, 9);
    let (mean, max) = m.rtt_stats(0, 15 * S, 30 * S);
    eprintln!(
        "RTT mean {mean} max {max}, BBR lost {} of {}",
        m.flows[0].packets_lost, m.flows[0].packets_sent
    );
    eprintln!(
        "BBR + NewReno, 100 Mbit/s x 20 ms, 1 BDP buffer: BBR {a} %, NewReno {b} %, Jain {j} %"
    );
    // BBR leaves the loss-based flow a share (7 % before the standing-queue
    // rule; a fair half is not reached yet).
    assert!(b >= 15, "NewReno got {b} %");
    assert!(a + b >= 90, "total {} %", a + b);
}

#[test]
fn bbr_and_newreno_share_a_deep_buffer() {
    // 4 BDP of buffer: NewReno keeps a standing queue, and BBR's
    // standing-queue rule leaves it half.
    let mut link = Link::new(100, 20, 0.0);
    link.queue_bytes *= 4;
    let rate = link.rate;
    let mut m = Model::new(link, vec![bulk(bbr(37), 0), bulk(reno(), 2 * S)], 37);
    m.run(30 * S);
    let g = [m.goodput(0, 15 * S, 30 * S), m.goodput(1, 15 * S, 30 * S)];
    let j = jain_pct(&g);
    let (a, b) = (pct(g[0], rate), pct(g[1], rate));
    eprintln!(
        "BBR + NewReno, 100 Mbit/s x 20 ms, 4 BDP buffer: BBR {a} %, NewReno {b} %, Jain {j} %"
    );
    assert!(j >= 90, "Jain {j} %");
    assert!(a + b >= 90, "total {} %", a + b);
}

#[test]
fn bbr_backs_off_when_the_bottleneck_shrinks() {
    // 100 Mbit/s, then 20 Mbit/s from 5 s: the queue overflows in bursts
    // until the controller adapts.
    let mut link = Link::new(100, 20, 0.0);
    link.rate_changes.push((5 * S, 20_000_000 / 8));
    let mut m = Model::new(link, vec![bulk(bbr(10), 0)], 10);
    m.run(5 * S);
    let before = (m.flows[0].packets_sent, m.flows[0].packets_lost);
    m.run(6 * S);
    let mid = (m.flows[0].packets_sent, m.flows[0].packets_lost);
    m.run(12 * S);
    let after = (m.flows[0].packets_sent, m.flows[0].packets_lost);
    let loss_first_s = pct(mid.1 - before.1, mid.0 - before.0);
    let loss_later = pct(after.1 - mid.1, after.0 - mid.0);
    let st = m.flows[0].cc.stats();
    let u = pct(m.goodput(0, 7 * S, 12 * S), 20_000_000 / 8);
    eprintln!(
        "100 -> 20 Mbit/s at 5 s: loss {loss_first_s} % in the first second, {loss_later} % over 6..12 s, utilisation {u} % of 20 Mbit/s (7..12 s), pacing {} B/s, congested rounds {}",
        st.pacing_rate, st.congested_rounds
    );
    assert!(loss_later <= 3, "loss {loss_later} %");
    assert!(u >= 85, "utilisation {u} %");
    assert!(st.pacing_rate <= 2 * 20_000_000 / 8, "{st:?}");
}

#[test]
fn bbr_app_limited_does_not_move_the_estimate() {
    let link = Link::new(100, 20, 0.0);
    let rate = link.rate;
    // Bulk for 3 s, then 1 MB/s (8 % of the link) for 5 s, then bulk again.
    let spec = FlowSpec {
        cc: bbr(11),
        start_us: 0,
        app: App::LimitedBetween {
            from_us: 3 * S,
            to_us: 8 * S,
            rate: 1_000_000,
        },
        extra_delay_us: 0,
    };
    let mut m = Model::new(link, vec![spec], 11);
    m.run(10 * S);
    let f = &m.flows[0];
    let during: Vec<u64> = f
        .bw_trace
        .iter()
        .filter(|(t, _)| *t >= 3_500_000 && *t < 8 * S)
        .map(|&(_, b)| b)
        .collect();
    let low = during.iter().copied().min().unwrap_or(0);
    let g_mid = m.goodput(0, 4 * S, 8 * S);
    let g_end = m.goodput(0, 8_500_000, 10 * S);
    eprintln!(
        "app-limited at 1 MB/s on 100 Mbit/s: goodput {g_mid} B/s, bw estimate min {low} B/s, max ever {} B/s (link {rate}); back to {} % after",
        f.max_bw_est,
        pct(g_end, rate)
    );
    assert!(g_mid <= 1_100_000);
    // The estimate is neither talked down by the slow app ...
    assert!(low * 10 >= rate * 8, "estimate fell to {low}");
    // ... nor inflated above the link by bursts.
    assert!(f.max_bw_est * 100 <= rate * 110, "{}", f.max_bw_est);
    assert!(pct(g_end, rate) >= 90);
}

#[test]
fn bbr_app_limited_from_the_start_stays_at_app_rate() {
    let link = Link::new(100, 20, 0.0);
    let spec = FlowSpec {
        cc: bbr(12),
        start_us: 0,
        app: App::Rate(1_000_000),
        extra_delay_us: 0,
    };
    let mut m = Model::new(link, vec![spec], 12);
    m.run(5 * S);
    let st = m.flows[0].cc.stats();
    eprintln!(
        "app at 1 MB/s from start: bw estimate max {} B/s, cwnd {}",
        m.flows[0].max_bw_est, st.cwnd
    );
    assert!(
        m.flows[0].max_bw_est <= 1_500_000,
        "{}",
        m.flows[0].max_bw_est
    );
}

#[test]
fn bbr_flow_control_limited_then_released() {
    // The firmware case: a 16-packet window (22 KB) on 100 Mbit/s x 20 ms
    // caps the flow at ~1.1 MB/s for 5 s. The window must not grow
    // without bound meanwhile, nor the estimate exceed what was seen; once
    // the peer opens its window BBR must fill the link within a few RTTs.
    let link = Link::new(100, 20, 0.0);
    let rate = link.rate;
    let spec = FlowSpec {
        cc: bbr(38),
        start_us: 0,
        app: App::Window {
            bytes: 16 * MSS,
            until_us: 5 * S,
        },
        extra_delay_us: 0,
    };
    let mut m = Model::new(link, vec![spec], 38);
    m.run(5 * S);
    let g = m.goodput(0, S, 5 * S);
    let st = m.flows[0].cc.stats();
    m.run(8 * S);
    let after = (0..100u64)
        .find(|&i| m.goodput(0, 5 * S + i * 10_000, 5 * S + i * 10_000 + 20_000) * 10 >= rate * 9)
        .map(|i| i * 10 + 20);
    let u = pct(m.goodput(0, 6 * S, 8 * S), rate);
    eprintln!(
        "16-packet window on 100 Mbit/s x 20 ms: goodput {g} B/s, bw estimate {} B/s, cwnd {} ({:?}); window opened at 5 s: 90 % after {after:?} ms, {u} % over 6..8 s",
        st.bw, st.cwnd, st.state
    );
    // 16 × 1400 B per 20.2 ms RTT.
    assert!((1_000_000..=1_150_000).contains(&g), "{g}");
    assert!(st.bw <= 1_300_000, "{st:?}");
    assert!(st.cwnd <= 64 * MSS, "{st:?}");
    assert!(after.is_some_and(|ms| ms <= 200), "{after:?}");
    assert!(u >= 95, "{u} %");
}

#[test]
fn bbr_persistent_congestion_resets_and_recovers() {
    // A 2 s blackout: everything is lost, then the path comes back.
    let mut link = Link::new(100, 20, 0.0);
    let rate = link.rate;
    link.rate_changes.push((4 * S, 0));
    link.rate_changes.push((6 * S, rate));
    let mut m = Model::new(link, vec![bulk(bbr(13), 0)], 13);
    m.run(10 * S);
    let u = pct(m.goodput(0, 8 * S, 10 * S), rate);
    eprintln!(
        "2 s blackout: persistent congestion declared {} times, utilisation {u} % at 8..10 s",
        m.flows[0].persistent_congestion
    );
    assert!(m.flows[0].persistent_congestion >= 1);
    assert!(u >= 90, "utilisation {u} %");
}

#[test]
fn newreno_collapses_under_random_loss_bbr_does_not() {
    let link = Link::new(100, 20, 1.0);
    let rate = link.rate;
    let mut m = Model::new(link, vec![bulk(reno(), 0)], 14);
    m.run(10 * S);
    let u = pct(m.goodput(0, 2 * S, 10 * S), rate);
    eprintln!("NewReno, 100 Mbit/s x 20 ms, 1 %: utilisation {u} %");
    assert!(u < 30, "NewReno {u} %");
}

#[test]
fn newreno_fills_a_clean_path() {
    let link = Link::new(100, 20, 0.0);
    let rate = link.rate;
    let mut m = Model::new(link, vec![bulk(reno(), 0)], 15);
    m.run(10 * S);
    let u = pct(m.goodput(0, 2 * S, 10 * S), rate);
    eprintln!("NewReno, 100 Mbit/s x 20 ms, clean, 1 BDP buffer: utilisation {u} %");
    assert!(u >= 85, "NewReno {u} %");
}

// --------------------------------------------------------------- state cases

fn sent(
    cc: &mut dyn Controller,
    t_us: u64,
    inflight: &mut usize,
) -> (SentState, crate::time::Instant) {
    let now = at_micros(t_us);
    let s = cc.on_sent(now, MSS, *inflight);
    *inflight += MSS;
    (s, now)
}

#[test]
fn bbr_startup_grows_window_by_acked_bytes() {
    let mut b = Bbr::new(BbrConfig::default());
    assert_eq!(b.cwnd(), 10 * MSS);
    assert_eq!(b.stats().state, CcState::Startup);
    let mut inflight = 0;
    let pkts: Vec<_> = (0..10)
        .map(|i| sent(&mut b, i * 100, &mut inflight))
        .collect();
    // All ten acked one 10 ms RTT later.
    let acked: Vec<AckedPacket> = pkts
        .iter()
        .map(|&(s, t)| AckedPacket {
            sent: s,
            sent_time: t,
            bytes: MSS,
        })
        .collect();
    b.on_ack(at_millis(10), &acked, Some(9_100), 9_100, 0);
    assert_eq!(b.cwnd(), 20 * MSS);
    let st = b.stats();
    assert_eq!(st.min_rtt_us, 9_100);
    assert_eq!(st.delivered, 10 * MSS as u64);
    // One sample: 14000 bytes over max(900 µs send, 10 ms ack) = 1.4 MB/s.
    assert_eq!(st.bw, 1_400_000);
    assert_eq!(st.pacing_gain_pct, 277);
    assert!(b.pacing_rate() >= 1_400_000 * 27 / 10);
}

/// Sends 100 packets in Startup, loses `lost` of them, acks the rest.
fn startup_round_with_losses(lost: usize) -> Bbr {
    let mut b = Bbr::new(BbrConfig::default());
    let mut inflight = 0;
    let pkts: Vec<_> = (0..100)
        .map(|i| sent(&mut b, i * 10, &mut inflight))
        .collect();
    let lost_pkts: Vec<LostPacket> = pkts[..lost]
        .iter()
        .map(|&(s, t)| LostPacket {
            sent: s,
            sent_time: t,
            bytes: MSS,
        })
        .collect();
    inflight -= lost * MSS;
    b.on_loss(at_millis(20), &lost_pkts, inflight);
    let acked: Vec<AckedPacket> = pkts[lost..]
        .iter()
        .map(|&(s, t)| AckedPacket {
            sent: s,
            sent_time: t,
            bytes: MSS,
        })
        .collect();
    b.on_ack(at_millis(21), &acked, Some(20_000), 20_000, 0);
    b
}

#[test]
fn bbr_random_loss_rate_is_not_congestion() {
    // 2 of 100 (2 %): not congestion, Startup goes on.
    let b = startup_round_with_losses(2);
    assert_eq!(b.stats().state, CcState::Startup);
    assert_eq!(b.stats().inflight_hi, None);
    assert_eq!(b.stats().congested_rounds, 0);
    // 4 of 100: above the threshold but fewer than 8 packets in Startup.
    assert_eq!(startup_round_with_losses(4).stats().state, CcState::Startup);
    // 10 of 100: a congested round ends Startup with a bound on inflight.
    let b = startup_round_with_losses(10);
    assert_eq!(b.stats().congested_rounds, 1);
    assert_ne!(b.stats().state, CcState::Startup);
    assert!(b.stats().inflight_hi.is_some());
}

#[test]
fn bbr_persistent_congestion_resets_to_min_window() {
    let mut b = Bbr::new(BbrConfig::default());
    let mut inflight = 0;
    let (s, t) = sent(&mut b, 0, &mut inflight);
    b.on_ack(
        at_millis(10),
        &[AckedPacket {
            sent: s,
            sent_time: t,
            bytes: MSS,
        }],
        Some(10_000),
        10_000,
        0,
    );
    assert!(b.stats().bw > 0);
    b.on_persistent_congestion(at_millis(1000));
    let st = b.stats();
    assert_eq!(st.cwnd, 4 * MSS);
    assert_eq!(st.state, CcState::Startup);
    assert_eq!(st.bw, 0);
    assert_eq!(st.min_rtt_us, 0);
    // The counters survive (stats, and samples of packets still out).
    assert_eq!(st.delivered, MSS as u64);
}

#[test]
fn bbr_app_limited_marks_samples_until_flight_delivered() {
    let mut b = Bbr::new(BbrConfig::default());
    let mut inflight = 0;
    let (s0, t0) = sent(&mut b, 0, &mut inflight);
    assert!(!s0.is_app_limited);
    b.on_app_limited(inflight);
    assert!(b.is_app_limited());
    let (s1, t1) = sent(&mut b, 100, &mut inflight);
    assert!(s1.is_app_limited);
    let acked = [
        AckedPacket {
            sent: s0,
            sent_time: t0,
            bytes: MSS,
        },
        AckedPacket {
            sent: s1,
            sent_time: t1,
            bytes: MSS,
        },
    ];
    // Delivering what was in flight at the mark (1 packet) ends it.
    b.on_ack(at_millis(10), &acked, Some(9_900), 9_900, 0);
    assert!(!b.is_app_limited());
}

#[test]
fn newreno_slow_start_then_halves_once_per_recovery() {
    let mut r = NewReno::new(NewRenoConfig::default());
    let mut inflight = 0;
    let pkts: Vec<_> = (0..10).map(|i| sent(&mut r, i, &mut inflight)).collect();
    let acked: Vec<AckedPacket> = pkts[..4]
        .iter()
        .map(|&(s, t)| AckedPacket {
            sent: s,
            sent_time: t,
            bytes: MSS,
        })
        .collect();
    inflight -= 4 * MSS;
    r.on_ack(at_millis(10), &acked, Some(10_000), 10_000, inflight);
    assert_eq!(r.cwnd(), 14 * MSS);
    assert_eq!(r.stats().state, CcState::SlowStart);
    // Two losses of packets sent before recovery: one halving.
    let lost = |i: usize| LostPacket {
        sent: pkts[i].0,
        sent_time: pkts[i].1,
        bytes: MSS,
    };
    r.on_loss(at_millis(11), &[lost(4)], inflight);
    assert_eq!(r.cwnd(), 7 * MSS);
    assert_eq!(r.stats().state, CcState::Recovery);
    r.on_loss(at_millis(12), &[lost(5)], inflight);
    assert_eq!(r.cwnd(), 7 * MSS);
    // A packet sent after recovery began is acked: congestion avoidance,
    // +1 MSS per window of acked bytes.
    let (s, t) = sent(&mut r, 13_000, &mut inflight);
    r.on_ack(
        at_millis(23),
        &[AckedPacket {
            sent: s,
            sent_time: t,
            bytes: MSS,
        }],
        Some(10_000),
        10_000,
        inflight - MSS,
    );
    assert_eq!(r.stats().state, CcState::CongestionAvoidance);
    assert_eq!(r.cwnd(), 7 * MSS);
    for i in 0..7u64 {
        let (s, t) = sent(&mut r, 24_000 + i, &mut inflight);
        r.on_ack(
            at_millis(35),
            &[AckedPacket {
                sent: s,
                sent_time: t,
                bytes: MSS,
            }],
            None,
            10_000,
            0,
        );
    }
    assert_eq!(r.cwnd(), 8 * MSS);
    // A loss after recovery ended halves again; persistent congestion
    // collapses to the 2-packet minimum.
    let (s, t) = sent(&mut r, 40_000, &mut inflight);
    r.on_loss(
        at_millis(60),
        &[LostPacket {
            sent: s,
            sent_time: t,
            bytes: MSS,
        }],
        0,
    );
    assert_eq!(r.cwnd(), 4 * MSS);
    r.on_persistent_congestion(at_millis(61));
    assert_eq!(r.cwnd(), 2 * MSS);
}

#[test]
fn newreno_does_not_grow_when_app_limited() {
    let mut r = NewReno::new(NewRenoConfig::default());
    let mut inflight = 0;
    r.on_app_limited(0);
    let (s, t) = sent(&mut r, 0, &mut inflight);
    assert!(s.is_app_limited);
    r.on_ack(
        at_millis(10),
        &[AckedPacket {
            sent: s,
            sent_time: t,
            bytes: MSS,
        }],
        Some(10_000),
        10_000,
        0,
    );
    assert_eq!(r.cwnd(), 10 * MSS);
    assert!(r.pacing_rate() > 0);
}

/// `n` BBR flows (flow i starts at i × 1 s, with `extra_ms[i]` of extra
/// one-way delay) on `link`; Jain and shares over the last half of `secs`.
fn share_run(link: Link, n: usize, extra_ms: &[u64], secs: u64, seed: u64) -> (u64, Vec<u64>) {
    let rate = link.rate;
    let specs = (0..n)
        .map(|i| FlowSpec {
            cc: bbr(seed * 7 + i as u64),
            start_us: i as u64 * S,
            app: App::Bulk,
            extra_delay_us: extra_ms.get(i).copied().unwrap_or(0) * 1000,
        })
        .collect();
    let mut m = Model::new(link, specs, seed);
    m.run(secs * S);
    let g: Vec<u64> = (0..n)
        .map(|i| m.goodput(i, secs * S / 2, secs * S))
        .collect();
    (jain_pct(&g), g.iter().map(|&x| pct(x, rate)).collect())
}

#[test]
fn bbr_four_flows_share_a_bottleneck() {
    let (j, g) = share_run(Link::new(100, 20, 0.0), 4, &[], 30, 31);
    eprintln!("four BBR flows, 100 Mbit/s x 20 ms: shares {g:?} %, Jain {j} %");
    assert!(j >= 90, "Jain {j} %");
    assert!(g.iter().sum::<u64>() >= 90, "{g:?}");
}

#[test]
fn bbr_flows_with_different_rtts_share() {
    // 20 ms and 40 ms base RTT through the same bottleneck.
    let (j, g) = share_run(Link::new(100, 20, 0.0), 2, &[0, 10], 30, 32);
    eprintln!("BBR 20 ms + BBR 40 ms, 100 Mbit/s: shares {g:?} %, Jain {j} %");
    assert!(j >= 90, "Jain {j} %");
    assert!(g.iter().sum::<u64>() >= 90, "{g:?}");
}

#[test]
fn bbr_two_flows_share_a_slow_lossy_path() {
    let (j, g) = share_run(Link::new(20, 50, 2.0), 2, &[], 30, 33);
    eprintln!("two BBR flows, 20 Mbit/s x 50 ms, 2 %/2 %: shares {g:?} %, Jain {j} %");
    assert!(j >= 90, "Jain {j} %");
    assert!(g.iter().sum::<u64>() >= 90, "{g:?}");
}

#[test]
fn bbr_full_speed_on_a_shallow_buffer() {
    // A tenth of a BDP (25 KB, 2 ms) of buffer, clean path.
    let mut link = Link::new(100, 20, 0.0);
    link.queue_bytes /= 10;
    let (j, g) = share_run(link, 1, &[], 10, 34);
    let _ = j;
    eprintln!(
        "BBR, 100 Mbit/s x 20 ms, 0.1 BDP buffer: utilisation {} %",
        g[0]
    );
    assert!(g[0] >= 90, "{g:?}");
}

#[test]
fn bbr_probe_rtt_learns_a_longer_path() {
    // The route changes at 3 s: 20 ms RTT becomes 40 ms. min_rtt only
    // falls on its own, so ProbeRtt must notice the old one expired.
    let mut link = Link::new(100, 20, 0.0);
    let rate = link.rate;
    link.delay_changes.push((3 * S, 20_000));
    let mut m = Model::new(link, vec![bulk(bbr(36), 0)], 36);
    let mut saw_probe_rtt = false;
    for i in 1..=200u64 {
        m.run(i * 100_000);
        saw_probe_rtt |= m.flows[0].cc.stats().state == CcState::ProbeRtt;
    }
    let st = m.flows[0].cc.stats();
    let u = pct(m.goodput(0, 15 * S, 20 * S), rate);
    eprintln!(
        "20 -> 40 ms RTT at 3 s: min_rtt {} µs at 20 s, ProbeRtt seen {saw_probe_rtt}, utilisation {u} % (15..20 s)",
        st.min_rtt_us
    );
    assert!(saw_probe_rtt);
    assert!(st.min_rtt_us >= 40_000, "{st:?}");
    assert!(u >= 90, "utilisation {u} %");
}

#[test]
fn state_sizes() {
    use core::mem::size_of;
    eprintln!(
        "size_of: SentState {}, Bbr {}, NewReno {}, Pacer {}",
        size_of::<SentState>(),
        size_of::<Bbr>(),
        size_of::<NewReno>(),
        size_of::<crate::tunnel::pw1::pacer::Pacer>()
    );
    // Stored once per packet in flight: keep it small.
    assert!(size_of::<SentState>() <= 48);
    assert!(size_of::<Bbr>() <= 512);
}

/// A test-only CUBIC (RFC 9438 without HyStart and fast convergence
/// details), paced at 1.25 × cwnd / srtt: the kernel's default competitor.
struct Cubic {
    cwnd: f64,
    ssthresh: f64,
    w_max: f64,
    k: f64,
    epoch_us: u64,
    recovery_start_us: Option<u64>,
    srtt_us: u64,
    rate: super::rate::DeliveryRate,
}

impl Cubic {
    fn new() -> Self {
        Cubic {
            cwnd: 10.0,
            ssthresh: f64::MAX,
            w_max: 0.0,
            k: 0.0,
            epoch_us: 0,
            recovery_start_us: None,
            srtt_us: 0,
            rate: super::rate::DeliveryRate::new(),
        }
    }
}

impl Controller for Cubic {
    fn on_sent(&mut self, now: crate::time::Instant, bytes: usize, inflight: usize) -> SentState {
        self.rate.on_sent(now, bytes, inflight)
    }
    fn on_ack(
        &mut self,
        now: crate::time::Instant,
        acked: &[AckedPacket],
        rtt: Option<u64>,
        _: u64,
        _: usize,
    ) {
        if let Some(r) = rtt {
            self.srtt_us = if self.srtt_us == 0 {
                r
            } else {
                (7 * self.srtt_us + r) / 8
            };
        }
        let now_us = crate::time::micros(now);
        for p in acked {
            let sent_us = crate::time::micros(p.sent_time);
            if self.recovery_start_us.is_some_and(|r| sent_us <= r) {
                continue;
            }
            self.recovery_start_us = None;
            let n = p.bytes as f64 / MSS as f64;
            if self.cwnd < self.ssthresh {
                self.cwnd += n;
                continue;
            }
            let t = (now_us - self.epoch_us) as f64 / 1e6;
            let target = 0.4 * (t - self.k).powi(3) + self.w_max;
            let rtt_s = self.srtt_us.max(1) as f64 / 1e6;
            let reno = self.w_max * 0.7 + 3.0 * 0.3 / 1.7 * t / rtt_s;
            let goal = target.max(reno).min(self.cwnd * 1.5);
            if goal > self.cwnd {
                self.cwnd += (goal - self.cwnd) / self.cwnd * n;
            } else {
                self.cwnd += 0.01 * n / self.cwnd;
            }
        }
    }
    fn on_loss(&mut self, now: crate::time::Instant, lost: &[LostPacket], _: usize) {
        let Some(newest) = lost.iter().map(|p| crate::time::micros(p.sent_time)).max() else {
            return;
        };
        if self.recovery_start_us.is_some_and(|r| newest <= r) {
            return;
        }
        let now_us = crate::time::micros(now);
        self.recovery_start_us = Some(now_us);
        self.w_max = if self.cwnd < self.w_max {
            self.cwnd * 0.85
        } else {
            self.cwnd
        };
        self.cwnd = (self.cwnd * 0.7).max(2.0);
        self.ssthresh = self.cwnd;
        self.k = (self.w_max * 0.3 / 0.4).cbrt();
        self.epoch_us = now_us;
    }
    fn on_persistent_congestion(&mut self, _: crate::time::Instant) {
        self.cwnd = 2.0;
    }
    fn on_app_limited(&mut self, _: usize) {}
    fn cwnd(&self) -> usize {
        (self.cwnd * MSS as f64) as usize
    }
    fn pacing_rate(&self) -> u64 {
        let srtt = if self.srtt_us == 0 {
            1000
        } else {
            self.srtt_us
        };
        let gain = if self.cwnd < self.ssthresh { 2.0 } else { 1.25 };
        ((self.cwnd * MSS as f64 * gain * 1e6 / srtt as f64) as u64).max(1)
    }
    fn stats(&self) -> CcStats {
        NewReno::new(NewRenoConfig::default()).stats()
    }
}

#[test]
fn bbr_and_cubic_share_a_deep_buffer() {
    let mut link = Link::new(100, 20, 0.0);
    link.queue_bytes *= 4;
    let rate = link.rate;
    let mut m = Model::new(
        link,
        vec![bulk(bbr(39), 0), bulk(Box::new(Cubic::new()), 2 * S)],
        39,
    );
    m.run(30 * S);
    let g = [m.goodput(0, 15 * S, 30 * S), m.goodput(1, 15 * S, 30 * S)];
    let j = jain_pct(&g);
    let (a, b) = (pct(g[0], rate), pct(g[1], rate));
    eprintln!("BBR + CUBIC, 100 Mbit/s x 20 ms, 4 BDP buffer: BBR {a} %, CUBIC {b} %, Jain {j} %");
    assert!(j >= 90, "Jain {j} %");
    assert!(a + b >= 90, "total {} %", a + b);
}

/// A sender that ignores congestion: a fixed rate, no window.
struct Unresponsive(u64);

impl Controller for Unresponsive {
    fn on_sent(&mut self, _: crate::time::Instant, _: usize, _: usize) -> SentState {
        SentState {
            delivered: 0,
            delivered_time: at_micros(0),
            first_sent_time: at_micros(0),
            lost: 0,
            tx_in_flight: 0,
            is_app_limited: false,
        }
    }
    fn on_ack(
        &mut self,
        _: crate::time::Instant,
        _: &[AckedPacket],
        _: Option<u64>,
        _: u64,
        _: usize,
    ) {
    }
    fn on_loss(&mut self, _: crate::time::Instant, _: &[LostPacket], _: usize) {}
    fn on_persistent_congestion(&mut self, _: crate::time::Instant) {}
    fn on_app_limited(&mut self, _: usize) {}
    fn cwnd(&self) -> usize {
        usize::MAX / 2
    }
    fn pacing_rate(&self) -> u64 {
        self.0
    }
    fn stats(&self) -> CcStats {
        NewReno::new(NewRenoConfig::default()).stats()
    }
}

#[test]
fn bbr_yields_to_an_unresponsive_flow() {
    // 60 Mbit/s of unresponsive traffic joins at 3 s: BBR must drop to the
    // remaining ~40 Mbit/s instead of keeping the queue overflowing.
    let link = Link::new(100, 20, 0.0);
    let rate = link.rate;
    let cbr = FlowSpec {
        cc: Box::new(Unresponsive(60_000_000 / 8)),
        start_us: 3 * S,
        app: App::Bulk,
        extra_delay_us: 0,
    };
    let mut m = Model::new(link, vec![bulk(bbr(35), 0), cbr], 35);
    m.run(5 * S);
    let before = (m.flows[1].packets_sent, m.tail_drops);
    m.run(15 * S);
    let sent = m.flows[1].packets_sent - before.0;
    let drops = m.tail_drops - before.1;
    let bbr_share = pct(m.goodput(0, 5 * S, 15 * S), rate);
    let cbr_share = pct(m.goodput(1, 5 * S, 15 * S), rate);
    eprintln!(
        "BBR + 60 Mbit/s unresponsive: BBR {bbr_share} %, unresponsive {cbr_share} %, queue drops {drops} ({} % of the unresponsive flow's packets)",
        pct(drops, sent)
    );
    assert!(cbr_share >= 55, "unresponsive flow got {cbr_share} %");
    assert!(bbr_share >= 30, "BBR got {bbr_share} %");
    assert!(bbr_share + cbr_share >= 90);
}

#[test]
#[ignore]
fn tuning_table() {
    for seed in [21u64, 42, 63, 84, 31, 5, 77, 1000] {
        let (j0, a0, b0, _) = fairness_run(bbr(seed), bbr(seed + 100), 0.0, seed);
        let (j1, a1, b1, _) = fairness_run(bbr(seed), bbr(seed + 100), 1.0, seed);
        let (j2, a2, b2, _) = fairness_run(bbr(seed), reno(), 0.0, seed);
        let (u1, _) = utilisation_run(100, 20, 1.0, 10, seed);
        let (u2, _) = utilisation_run(100, 50, 2.0, 12, seed);
        eprintln!(
            "seed {seed}: bbr2 {a0}+{b0} J{j0} | bbr2 1% {a1}+{b1} J{j1} | bbr+reno {a2}+{b2} J{j2} | u20/1 {u1} u50/2 {u2}"
        );
        let mut l = Link::new(100, 20, 0.0);
        l.queue_bytes *= 4;
        let mut m = Model::new(l, vec![bulk(bbr(seed), 0), bulk(reno(), 2 * S)], seed);
        m.run(30 * S);
        let g = [m.goodput(0, 15 * S, 30 * S), m.goodput(1, 15 * S, 30 * S)];
        eprintln!(
            "   bbr+reno 4 BDP buf: J{} {:?}",
            jain_pct(&g),
            [pct(g[0], m.link.rate), pct(g[1], m.link.rate)]
        );
        for buf in [1u64, 4] {
            let mut l = Link::new(100, 20, 0.0);
            l.queue_bytes *= buf;
            let mut m = Model::new(
                l,
                vec![bulk(bbr(seed), 0), bulk(Box::new(Cubic::new()), 2 * S)],
                seed,
            );
            m.run(30 * S);
            let g = [m.goodput(0, 15 * S, 30 * S), m.goodput(1, 15 * S, 30 * S)];
            eprintln!(
                "   bbr+cubic {buf} BDP buf: J{} {:?}",
                jain_pct(&g),
                [pct(g[0], m.link.rate), pct(g[1], m.link.rate)]
            );
            let mut l = Link::new(100, 20, 0.0);
            l.queue_bytes *= buf;
            let mut m = Model::new(l, vec![bulk(Box::new(Cubic::new()), 0)], seed);
            m.run(10 * S);
            eprintln!(
                "   cubic alone {buf} BDP buf: {} %",
                pct(m.goodput(0, 2 * S, 10 * S), m.link.rate)
            );
        }
        let (j, g) = share_run(Link::new(20, 50, 0.0), 2, &[], 30, seed);
        eprintln!("   20M x 50ms x2: J{j} {g:?}");
        let (j, g) = share_run(Link::new(20, 50, 2.0), 2, &[], 30, seed);
        eprintln!("   20M x 50ms 2% x2: J{j} {g:?}");
        let (j, g) = share_run(Link::new(100, 20, 0.0), 2, &[0, 10], 30, seed);
        eprintln!("   100M 20 vs 40 ms: J{j} {g:?}");
        let (j, g) = share_run(Link::new(100, 20, 0.0), 4, &[], 30, seed);
        eprintln!("   100M x4: J{j} {g:?}");
        let mut l = Link::new(100, 20, 0.0);
        l.queue_bytes /= 4;
        let (j, g) = share_run(l, 2, &[], 30, seed);
        eprintln!("   100M 1/4 BDP buf x2: J{j} {g:?}");
        let mut l = Link::new(100, 20, 0.0);
        l.queue_bytes /= 10;
        let (j, g) = share_run(l, 1, &[], 10, seed);
        eprintln!("   100M 1/10 BDP buf x1: {j} {g:?}");
        let mut l = Link::new(100, 20, 1.0);
        l.ack_every = 8;
        l.max_ack_delay_us = 5_000;
        let (_, g) = share_run(l, 1, &[], 10, seed);
        eprintln!("   100M 20ms 1% ack/8 5ms: {g:?}");
        let (_, g) = share_run(Link::new(1, 100, 2.0), 1, &[], 30, seed);
        eprintln!("   1M 100ms 2%: {g:?}");
        let (_, g) = share_run(Link::new(10, 200, 2.0), 1, &[], 30, seed);
        eprintln!("   10M 200ms 2%: {g:?}");
        let (_, g) = share_run(Link::new(500, 10, 1.0), 1, &[], 5, seed);
        eprintln!("   500M 10ms 1%: {g:?}");
        for loss in [3.0, 4.0, 5.0, 8.0] {
            let (_, g) = share_run(Link::new(100, 20, loss), 1, &[], 10, seed);
            eprintln!("   100M 20ms {loss}%: {g:?}");
        }
    }
}

#[test]
fn random_call_sequences_never_panic() {
    // Arbitrary (even inconsistent) inputs: snapshots from nowhere, zero
    // and huge RTTs, equal times, bytes in flight that do not add up. The
    // controllers must stay usable: no overflow, no division by zero, a
    // window of at least the minimum and a non-zero pacing rate.
    let mut rng = crate::vectors::XorShift(0x5eed);
    for round in 0..40u64 {
        let mut ccs: [Box<dyn Controller>; 2] = [bbr(round), reno()];
        let mut t = 0u64;
        let mut sent: Vec<(SentState, crate::time::Instant, usize)> = Vec::new();
        for _ in 0..2000 {
            t += rng.below(3) * rng.below(20_000);
            let now = at_micros(t);
            let bytes = rng.below(65_536) as usize;
            let inflight = rng.below(1 << 24) as usize;
            match rng.below(10) {
                0..=3 => {
                    for cc in ccs.iter_mut() {
                        let s = cc.on_sent(now, bytes, inflight);
                        if sent.len() < 64 {
                            sent.push((s, now, bytes));
                        }
                    }
                }
                4..=6 => {
                    let n = rng.below(sent.len() as u64 + 1) as usize;
                    let mut acked: Vec<AckedPacket> = sent
                        .drain(..n)
                        .map(|(s, st, b)| AckedPacket {
                            sent: s,
                            sent_time: st,
                            bytes: b,
                        })
                        .collect();
                    if rng.below(4) == 0 {
                        // A snapshot that never came from this controller.
                        acked.push(AckedPacket {
                            sent: SentState {
                                delivered: rng.next(),
                                delivered_time: at_micros(rng.next() >> 1),
                                first_sent_time: at_micros(rng.next() >> 1),
                                lost: rng.next(),
                                tx_in_flight: rng.next(),
                                is_app_limited: rng.below(2) == 0,
                            },
                            sent_time: at_micros(rng.next() >> 1),
                            bytes,
                        });
                    }
                    let rtt = match rng.below(3) {
                        0 => None,
                        1 => Some(0),
                        _ => Some(rng.below(10_000_000)),
                    };
                    let min_rtt = rng.below(1_000_000);
                    for cc in ccs.iter_mut() {
                        cc.on_ack(now, &acked, rtt, min_rtt, inflight);
                    }
                }
                7 | 8 => {
                    let n = rng.below(sent.len() as u64 + 1) as usize;
                    let lost: Vec<LostPacket> = sent
                        .drain(..n)
                        .map(|(s, st, b)| LostPacket {
                            sent: s,
                            sent_time: st,
                            bytes: b,
                        })
                        .collect();
                    for cc in ccs.iter_mut() {
                        cc.on_loss(now, &lost, inflight);
                    }
                }
                _ => {
                    for cc in ccs.iter_mut() {
                        if rng.below(2) == 0 {
                            cc.on_app_limited(inflight);
                        } else {
                            cc.on_persistent_congestion(now);
                        }
                    }
                }
            }
            for cc in ccs.iter() {
                assert!(cc.cwnd() >= 2 * MSS);
                assert!(cc.pacing_rate() >= 1);
                let _ = cc.stats();
            }
        }
    }
}

#[test]
#[ignore]
fn startup_iw_table() {
    for iw in [10usize, 32] {
        let link = Link::new(100, 50, 0.0);
        let rate = link.rate;
        let cc = Box::new(Bbr::new(BbrConfig {
            max_datagram: MSS,
            initial_window_packets: iw,
            seed: 3,
        }));
        let mut m = Model::new(link, vec![bulk(cc, 0)], 3);
        m.run(3 * S);
        let first = (0..300u64)
            .find(|&i| m.goodput(0, i * 10_000, i * 10_000 + 50_000) * 10 >= rate * 9)
            .unwrap();
        eprintln!("IW {iw}: 90 % (50 ms window) from {} ms", first * 10 + 50);
    }
}
