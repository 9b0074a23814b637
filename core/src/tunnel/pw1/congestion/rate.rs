//! Delivery-rate sampling (draft-cheng-iccrg-delivery-rate-estimation):
//! the connection-level counters every [`SentState`] snapshots, and the
//! rate sample an ack yields.

use super::{AckedPacket, SentState};
use crate::time::{Instant, at_micros, micros_between};

/// One delivery-rate sample, from the most recently sent packet of an ack.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RateSample {
    /// Bytes delivered between that packet's send and its ack.
    pub(crate) delivered: u64,
    /// The longer of its send and ack intervals, µs.
    pub(crate) interval_us: u64,
    /// `delivered` over `interval_us`, bytes per second (0 if no interval).
    pub(crate) rate: u64,
    /// The sample's packet was sent while application-limited.
    pub(crate) is_app_limited: bool,
    /// Connection-level `delivered` when that packet was sent.
    pub(crate) prior_delivered: u64,
}

/// The connection's delivery counters.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DeliveryRate {
    /// Bytes acked so far.
    pub(crate) delivered: u64,
    delivered_time: Instant,
    first_sent_time: Instant,
    /// Bytes declared lost so far.
    pub(crate) lost: u64,
    /// While non-zero, `delivered` below which samples are app-limited.
    app_limited_until: u64,
}

impl DeliveryRate {
    pub(crate) fn new() -> Self {
        DeliveryRate {
            delivered: 0,
            delivered_time: at_micros(0),
            first_sent_time: at_micros(0),
            lost: 0,
            app_limited_until: 0,
        }
    }

    /// Snapshot for a packet of `bytes` sent with `bytes_in_flight` already
    /// in flight.
    pub(crate) fn on_sent(
        &mut self,
        now: Instant,
        bytes: usize,
        bytes_in_flight: usize,
    ) -> SentState {
        if bytes_in_flight == 0 {
            // A new flight: its send interval and ack interval start now.
            self.first_sent_time = now;
            self.delivered_time = now;
        }
        SentState {
            delivered: self.delivered,
            delivered_time: self.delivered_time,
            first_sent_time: self.first_sent_time,
            lost: self.lost,
            tx_in_flight: (bytes_in_flight + bytes) as u64,
            is_app_limited: self.app_limited_until != 0,
        }
    }

    /// Counts the acked packets and returns the rate sample of the most
    /// recently sent one (`None` if `acked` is empty).
    pub(crate) fn on_ack(&mut self, now: Instant, acked: &[AckedPacket]) -> Option<RateSample> {
        let mut newest: Option<&AckedPacket> = None;
        for p in acked {
            self.delivered += p.bytes as u64;
            let newer = match newest {
                None => true,
                Some(n) => {
                    (p.sent.delivered, crate::time::micros(p.sent_time))
                        >= (n.sent.delivered, crate::time::micros(n.sent_time))
                }
            };
            if newer {
                newest = Some(p);
            }
        }
        let p = newest?;
        self.delivered_time = now;
        if self.app_limited_until != 0 && self.delivered > self.app_limited_until {
            self.app_limited_until = 0;
        }
        // The next sample's send interval starts at this packet's send.
        self.first_sent_time = p.sent_time;
        let send_us = micros_between(p.sent.first_sent_time, p.sent_time);
        let ack_us = micros_between(p.sent.delivered_time, now);
        let interval_us = send_us.max(ack_us);
        let delivered = self.delivered.saturating_sub(p.sent.delivered);
        let rate = if interval_us == 0 {
            0
        } else {
            super::mul_div(delivered, 1_000_000, interval_us)
        };
        Some(RateSample {
            delivered,
            interval_us,
            rate,
            is_app_limited: p.sent.is_app_limited,
            prior_delivered: p.sent.delivered,
        })
    }

    /// Counts lost bytes.
    pub(crate) fn on_lost(&mut self, bytes: usize) {
        self.lost += bytes as u64;
    }

    /// Marks the flight as application-limited until what is in flight now
    /// has been delivered.
    pub(crate) fn on_app_limited(&mut self, bytes_in_flight: usize) {
        self.app_limited_until = (self.delivered + bytes_in_flight as u64).max(1);
    }

    /// Whether new packets are sent application-limited.
    #[cfg(test)]
    pub(crate) fn is_app_limited(&self) -> bool {
        self.app_limited_until != 0
    }
}
