//! [`NewReno`]: the loss-based controller of RFC 9002 §7 (slow start,
//! congestion avoidance, one halving per recovery period), paced at
//! 1.25 × cwnd / srtt (2 × in slow start). A fallback, and the yardstick
//! the tests compare [`Bbr`](super::Bbr) against.

use super::rate::DeliveryRate;
use super::{AckedPacket, CcState, CcStats, Controller, LostPacket, SentState, mul_div};
use crate::time::{Instant, micros};

/// Parameters of a [`NewReno`].
#[derive(Clone, Copy, Debug)]
pub struct NewRenoConfig {
    /// Largest datagram the connection sends (full UDP payload), bytes.
    pub max_datagram: usize,
    /// Initial window, packets.
    pub initial_window_packets: usize,
}

impl Default for NewRenoConfig {
    fn default() -> Self {
        NewRenoConfig {
            max_datagram: 1400,
            initial_window_packets: 10,
        }
    }
}

/// RFC 9002's minimum window, packets.
const MIN_WINDOW_PACKETS: u64 = 2;

/// The NewReno congestion controller.
#[derive(Clone, Debug)]
pub struct NewReno {
    mss: u64,
    cwnd: u64,
    ssthresh: u64,
    /// Send time (µs) at which the current recovery period began.
    recovery_start: Option<u64>,
    ca_acked: u64,
    srtt_us: u64,
    min_rtt_us: u64,
    rate: DeliveryRate,
}

impl NewReno {
    /// A controller in slow start with the initial window.
    pub fn new(config: NewRenoConfig) -> Self {
        let mss = config.max_datagram.max(1) as u64;
        NewReno {
            mss,
            cwnd: mss * (config.initial_window_packets as u64).max(MIN_WINDOW_PACKETS),
            ssthresh: u64::MAX,
            recovery_start: None,
            ca_acked: 0,
            srtt_us: 0,
            min_rtt_us: 0,
            rate: DeliveryRate::new(),
        }
    }

    fn min_window(&self) -> u64 {
        MIN_WINDOW_PACKETS * self.mss
    }

    fn in_recovery(&self, sent_time: Instant) -> bool {
        self.recovery_start.is_some_and(|r| micros(sent_time) <= r)
    }
}

impl Controller for NewReno {
    fn on_sent(&mut self, now: Instant, bytes: usize, bytes_in_flight: usize) -> SentState {
        self.rate.on_sent(now, bytes, bytes_in_flight)
    }

    fn on_ack(
        &mut self,
        now: Instant,
        acked: &[AckedPacket],
        rtt_us: Option<u64>,
        min_rtt_us: u64,
        _bytes_in_flight: usize,
    ) {
        if let Some(rtt) = rtt_us {
            self.srtt_us = if self.srtt_us == 0 {
                rtt
            } else {
                (7 * self.srtt_us + rtt) / 8
            };
        }
        self.min_rtt_us = min_rtt_us;
        self.rate.on_ack(now, acked);
        for p in acked {
            if self.in_recovery(p.sent_time) {
                continue;
            }
            // A packet sent after recovery began is acked: recovery is over.
            self.recovery_start = None;
            // RFC 9002 §7.8: do not grow a window the sender did not fill.
            if p.sent.is_app_limited {
                continue;
            }
            let bytes = p.bytes as u64;
            if self.cwnd < self.ssthresh {
                self.cwnd += bytes;
            } else {
                self.ca_acked += bytes;
                if self.ca_acked >= self.cwnd {
                    self.ca_acked -= self.cwnd;
                    self.cwnd += self.mss;
                }
            }
        }
    }

    fn on_loss(&mut self, now: Instant, lost: &[LostPacket], _bytes_in_flight: usize) {
        let mut newest = None;
        for p in lost {
            self.rate.on_lost(p.bytes);
            newest = newest.max(Some(micros(p.sent_time)));
        }
        let Some(newest) = newest else {
            return;
        };
        if self.recovery_start.is_some_and(|r| newest <= r) {
            return;
        }
        self.recovery_start = Some(micros(now));
        self.cwnd = (self.cwnd / 2).max(self.min_window());
        self.ssthresh = self.cwnd;
        self.ca_acked = 0;
    }

    fn on_persistent_congestion(&mut self, _now: Instant) {
        self.cwnd = self.min_window();
        self.recovery_start = None;
        self.ca_acked = 0;
    }

    fn on_app_limited(&mut self, bytes_in_flight: usize) {
        self.rate.on_app_limited(bytes_in_flight);
    }

    fn cwnd(&self) -> usize {
        self.cwnd.min(usize::MAX as u64) as usize
    }

    fn pacing_rate(&self) -> u64 {
        let srtt = if self.srtt_us == 0 {
            1_000
        } else {
            self.srtt_us
        };
        let gain = if self.cwnd < self.ssthresh { 200 } else { 125 };
        mul_div(self.cwnd, gain * 10_000, srtt).max(1)
    }

    fn stats(&self) -> CcStats {
        let state = if self.recovery_start.is_some() {
            CcState::Recovery
        } else if self.cwnd < self.ssthresh {
            CcState::SlowStart
        } else {
            CcState::CongestionAvoidance
        };
        let srtt = if self.srtt_us == 0 {
            1_000
        } else {
            self.srtt_us
        };
        CcStats {
            state,
            cwnd: self.cwnd(),
            pacing_rate: self.pacing_rate(),
            bw: mul_div(self.cwnd, 1_000_000, srtt),
            min_rtt_us: self.min_rtt_us,
            pacing_gain_pct: if self.cwnd < self.ssthresh { 200 } else { 125 },
            inflight_hi: None,
            rounds: 0,
            delivered: self.rate.delivered,
            lost: self.rate.lost,
            congested_rounds: 0,
            loss_baseline_ppm: 0,
        }
    }
}
