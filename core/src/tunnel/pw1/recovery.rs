//! Sent-packet bookkeeping and the RTT estimate (RFC 9002 §5–6).

use super::congestion::SentState;
use super::pool::NONE;
use crate::time::{Instant, at_micros};

/// Timer granularity (RFC 9002 kGranularity).
pub const GRANULARITY_US: u64 = 1_000;
/// Packet reordering threshold (RFC 9002 kPacketThreshold).
pub const PACKET_THRESHOLD: u64 = 3;
/// RTT assumed before the first sample (RFC 9002 kInitialRtt is 333 ms;
/// a tunnel's first packets follow a heartbeat exchange on a path that
/// already answered, so a shorter one is safe and recovers faster).
pub const INITIAL_RTT_US: u64 = 200_000;

/// What a sent packet carried besides stream data that must be re-sent if
/// it is lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Nothing.
    None,
    /// MAX_STREAM_CHUNKS for the stream in table slot `slot` with `max`.
    Credit {
        /// Stream table slot.
        slot: u16,
        /// The value sent.
        max: u32,
    },
    /// RESET_STREAM for the stream in `slot` (id checked on ack).
    Reset {
        /// Stream table slot.
        slot: u16,
        /// Its id.
        id: u32,
    },
    /// MAX_STREAMS with `max`.
    MaxStreams {
        /// The value sent.
        max: u32,
    },
}

/// Control frames one packet may carry.
pub const MAX_CONTROLS: usize = 4;

/// One sent packet, kept until acked or declared lost.
#[derive(Clone, Copy, Debug)]
pub struct SentPacket {
    /// Packet number, or `u64::MAX` when the slot is empty.
    pub pn: u64,
    /// When it was sent, µs.
    pub time_us: u64,
    /// UDP payload bytes.
    pub bytes: u16,
    /// Whether it counts in bytes in flight (it was ack-eliciting).
    pub in_flight: bool,
    /// The chunk it carried (`NONE`: none) and the chunk's generation.
    pub chunk: u32,
    /// Generation of `chunk` when sent.
    pub chunk_generation: u16,
    /// Control frames carried.
    pub controls: [Control; MAX_CONTROLS],
    /// Congestion-control snapshot (`None` only in an empty slot).
    pub cc: Option<SentState>,
}

impl SentPacket {
    /// An empty slot.
    pub const EMPTY: SentPacket = SentPacket {
        pn: u64::MAX,
        time_us: 0,
        bytes: 0,
        in_flight: false,
        chunk: NONE,
        chunk_generation: 0,
        controls: [Control::None; MAX_CONTROLS],
        cc: None,
    };

    /// The congestion snapshot (a blank one for an empty slot).
    pub fn cc_state(&self) -> SentState {
        self.cc.unwrap_or(SentState {
            delivered: 0,
            delivered_time: Instant::new(0),
            first_sent_time: Instant::new(0),
            lost: 0,
            tx_in_flight: 0,
            is_app_limited: false,
        })
    }

    /// The send time as an instant.
    pub fn time(&self) -> Instant {
        at_micros(self.time_us)
    }
}

/// RFC 9002 §5 RTT estimator, µs.
#[derive(Clone, Copy, Debug)]
pub struct Rtt {
    /// Latest sample.
    pub latest: u64,
    /// Smoothed RTT.
    pub smoothed: u64,
    /// RTT variation.
    pub var: u64,
    /// Minimum seen.
    pub min: u64,
    /// Whether any sample was taken.
    pub sampled: bool,
}

impl Rtt {
    /// Before any sample.
    pub const fn new() -> Self {
        Rtt {
            latest: INITIAL_RTT_US,
            smoothed: INITIAL_RTT_US,
            var: INITIAL_RTT_US / 2,
            min: INITIAL_RTT_US,
            sampled: false,
        }
    }

    /// Feeds one sample with the peer's reported ack delay (capped).
    pub fn sample(&mut self, latest: u64, ack_delay: u64, max_ack_delay: u64) {
        let latest = latest.max(1);
        self.latest = latest;
        if !self.sampled {
            self.sampled = true;
            self.min = latest;
            self.smoothed = latest;
            self.var = latest / 2;
            return;
        }
        self.min = self.min.min(latest);
        let delay = ack_delay.min(max_ack_delay);
        let adjusted = if latest >= self.min + delay {
            latest - delay
        } else {
            latest
        };
        self.var = (3 * self.var + self.smoothed.abs_diff(adjusted)) / 4;
        self.smoothed = (7 * self.smoothed + adjusted) / 8;
    }

    /// Probe timeout before backoff: smoothed + max(4·var, granularity) +
    /// the peer's max ack delay.
    pub fn pto(&self, max_ack_delay: u64) -> u64 {
        self.smoothed + (4 * self.var).max(GRANULARITY_US) + max_ack_delay
    }

    /// RFC 9002 time threshold: 9/8 × max(smoothed, latest), at least the
    /// granularity.
    pub fn loss_delay(&self) -> u64 {
        (self.smoothed.max(self.latest) * 9 / 8).max(GRANULARITY_US)
    }
}

impl Default for Rtt {
    fn default() -> Self {
        Rtt::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc9002_estimator() {
        let mut r = Rtt::new();
        assert_eq!(r.smoothed, INITIAL_RTT_US);
        r.sample(100_000, 0, 25_000);
        assert_eq!((r.smoothed, r.var, r.min), (100_000, 50_000, 100_000));
        // An ack delay is subtracted only when it leaves at least min_rtt.
        r.sample(120_000, 10_000, 25_000);
        assert_eq!(r.smoothed, (7 * 100_000 + 110_000) / 8);
        r.sample(100_500, 10_000, 25_000);
        assert_eq!(r.latest, 100_500);
        assert!(r.pto(5_000) > r.smoothed);
        assert!(r.loss_delay() >= r.smoothed * 9 / 8);
    }
}
