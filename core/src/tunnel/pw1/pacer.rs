//! The pw1 pacer: a token bucket that spreads a congestion window over the
//! round trip at the controller's pacing rate instead of sending it in one
//! burst (which would overflow shallow router queues and turn into the
//! very loss bursts BBR reads as congestion).
//!
//! The bucket fills at the pacing rate and holds [`BURST_US`] (2 ms) of it,
//! at least [`MIN_BURST_PACKETS`] and at most [`MAX_BURST_PACKETS`]
//! datagrams. Two milliseconds of burst let a driver whose timers fire with
//! 1 ms granularity — epoll's timeout is in ms, so a wait for 0.2 ms lasts up
//! to 1–2 ms; the ESP32's timer likewise — still reach the rate (measured in
//! the lab: with 1 ms and at most 64 datagrams, a clean path stopped at
//! 46 MB/s, one bucket per 1–2 ms wake-up),
//! and lets the Linux backend batch a few datagrams per `sendmmsg`.
//! At 100 Mbit/s that is 25 KB, 18 datagrams of 1400 bytes.
//!
//! Credit is kept in millionths of a byte, so refills at any rate and any
//! call spacing lose nothing to rounding.
//!
//! ```text
//! match pacer.send_at(now, len, cc.pacing_rate()) {
//!     None => { send; pacer.on_sent(now, len, cc.pacing_rate()) }
//!     Some(t) => wake at t (and re-check; an earlier ack may change the rate)
//! }
//! ```

use crate::time::{Instant, add_micros, micros_between};

/// Burst the bucket holds, µs of the pacing rate.
pub const BURST_US: u64 = 2_000;
/// The bucket holds at least this many datagrams.
pub const MIN_BURST_PACKETS: u64 = 2;
/// The bucket holds at most this many datagrams.
pub const MAX_BURST_PACKETS: u64 = 256;

/// Credit units per byte (credit is in µbytes: rate in B/s × µs).
const UNIT: u64 = 1_000_000;

/// A token-bucket pacer (see the module docs).
#[derive(Clone, Copy, Debug)]
pub struct Pacer {
    mss: u64,
    /// Credit in µbytes at `last`.
    credit: u64,
    /// When `credit` was computed; `None`: never used, the bucket is full.
    last: Option<Instant>,
}

impl Pacer {
    /// A pacer for datagrams of up to `max_datagram` bytes, bucket full.
    pub fn new(max_datagram: usize) -> Self {
        Pacer {
            mss: max_datagram.max(1) as u64,
            credit: 0,
            last: None,
        }
    }

    /// Bucket size at `rate` (bytes per second), in bytes.
    pub fn burst_bytes(&self, rate: u64) -> u64 {
        (rate / (1_000_000 / BURST_US))
            .clamp(MIN_BURST_PACKETS * self.mss, MAX_BURST_PACKETS * self.mss)
    }

    fn credit_at(&self, now: Instant, rate: u64) -> u64 {
        let cap = self.burst_bytes(rate) * UNIT;
        let Some(last) = self.last else {
            return cap;
        };
        let rate = rate.max(1);
        // Enough µs to fill the bucket from empty bounds the product.
        let elapsed = micros_between(last, now).min(cap / rate + 1);
        self.credit.saturating_add(elapsed * rate).min(cap)
    }

    /// When a datagram of `bytes` may go at `rate` (bytes per second):
    /// `None` for now, else the instant the bucket will hold enough.
    pub fn send_at(&self, now: Instant, bytes: usize, rate: u64) -> Option<Instant> {
        let need = (bytes as u64).min(self.burst_bytes(rate)) * UNIT;
        let credit = self.credit_at(now, rate);
        if credit >= need {
            return None;
        }
        let rate = rate.max(1);
        let wait_us = (need - credit).div_ceil(rate);
        Some(add_micros(now, wait_us))
    }

    /// A datagram of `bytes` was sent at `now`.
    pub fn on_sent(&mut self, now: Instant, bytes: usize, rate: u64) {
        let credit = self.credit_at(now, rate);
        self.credit = credit.saturating_sub(bytes as u64 * UNIT);
        self.last = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{at_micros, micros};

    const MSS: usize = 1400;
    /// 100 Mbit/s.
    const RATE: u64 = 12_500_000;

    #[test]
    fn full_bucket_then_paced() {
        let mut p = Pacer::new(MSS);
        let now = at_micros(1_000_000);
        // 25 KB of burst: 17 datagrams of 1400 go at once, the 18th (the
        // bucket holds 25000 = 17.86 datagrams) must wait.
        let mut sent = 0;
        while p.send_at(now, MSS, RATE).is_none() {
            p.on_sent(now, MSS, RATE);
            sent += 1;
            assert!(sent < 100);
        }
        assert_eq!(sent, 17);
        let at = p.send_at(now, MSS, RATE).expect("paced");
        // Credit left: 25000 − 17×1400 = 1200 bytes; 200 more at 12.5 B/µs = 16 µs.
        assert_eq!(micros_between(now, at), 16);
    }

    #[test]
    fn long_run_rate_is_exact() {
        // Send as fast as the pacer allows for 1 s at a rate that does not
        // divide evenly: the bytes sent are rate × 1 s plus one burst.
        let rate = 1_234_567;
        let mut p = Pacer::new(MSS);
        let start = at_micros(0);
        let mut now = start;
        let mut bytes = 0u64;
        while micros(now) < 1_000_000 {
            match p.send_at(now, MSS, rate) {
                None => {
                    p.on_sent(now, MSS, rate);
                    bytes += MSS as u64;
                }
                Some(t) => now = t,
            }
        }
        let burst = p.burst_bytes(rate);
        assert!(bytes <= rate + burst + MSS as u64, "{bytes}");
        assert!(bytes + MSS as u64 >= rate + burst, "{bytes}");
    }

    #[test]
    fn slow_rate_still_allows_min_burst_and_waits_are_bounded() {
        let mut p = Pacer::new(MSS);
        let now = at_micros(5);
        // 10 KB/s: the bucket still holds 2 datagrams.
        assert_eq!(p.burst_bytes(10_000), 2 * MSS as u64);
        p.on_sent(now, MSS, 10_000);
        p.on_sent(now, MSS, 10_000);
        let at = p.send_at(now, MSS, 10_000).expect("paced");
        assert_eq!(micros_between(now, at), 140_000);
        // A datagram larger than the bucket waits for a full bucket, not forever.
        let big = p.send_at(now, 10 * MSS, 10_000).expect("paced");
        assert_eq!(micros_between(now, big), 280_000);
        // Rate 0 is treated as 1 B/s, no division by zero.
        assert!(p.send_at(now, MSS, 0).is_some());
    }

    #[test]
    fn idle_does_not_bank_more_than_a_burst() {
        let mut p = Pacer::new(MSS);
        p.on_sent(at_micros(0), MSS, RATE);
        let later = at_micros(10_000_000);
        let mut sent = 0;
        while p.send_at(later, MSS, RATE).is_none() {
            p.on_sent(later, MSS, RATE);
            sent += 1;
        }
        assert_eq!(sent, 17);
        // Huge rates are capped at 256 datagrams of burst and do not overflow.
        assert_eq!(p.burst_bytes(u64::MAX / 2), 256 * MSS as u64);
        assert_eq!(p.send_at(at_micros(u64::MAX / 2), MSS, u64::MAX / 4), None);
    }
}
