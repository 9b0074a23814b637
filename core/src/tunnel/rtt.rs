//! The retransmission timer of RFC 6298, in microseconds.

/// Clock granularity `G` of RFC 6298 §2: the floor of the `4 × RTTVAR` term.
const GRANULARITY_US: u64 = 1_000;

/// SRTT/RTTVAR/RTO state.
#[derive(Clone, Copy, Debug)]
pub(super) struct RttEstimator {
    srtt: Option<u64>,
    rttvar: u64,
    rto: u64,
    min: u64,
    max: u64,
}

impl RttEstimator {
    /// Before any sample: RTO = `initial`, clamped.
    pub(super) fn new(initial_us: u64, min_us: u64, max_us: u64) -> Self {
        let max = max_us.max(min_us);
        RttEstimator {
            srtt: None,
            rttvar: 0,
            rto: initial_us.clamp(min_us, max),
            min: min_us,
            max,
        }
    }

    /// Feeds one RTT measurement (never from a retransmitted frame: Karn).
    /// Recomputing RTO from SRTT also ends any backoff.
    pub(super) fn sample(&mut self, r: u64) {
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            Some(s) => {
                // RTTVAR = 3/4 RTTVAR + 1/4 |SRTT − R|; SRTT = 7/8 SRTT + 1/8 R.
                self.rttvar = (3 * self.rttvar + s.abs_diff(r)) / 4;
                self.srtt = Some((7 * s + r) / 8);
            }
        }
        self.recompute();
    }

    /// An ack for a retransmitted frame: no sample (Karn), but the path
    /// works again, so the backoff ends and RTO returns to its SRTT-based
    /// value (as Linux does). Without it a stop-and-wait sender at high
    /// loss keeps a doubled RTO for the next, fresh frame too.
    pub(super) fn end_backoff(&mut self) {
        if self.srtt.is_some() {
            self.recompute();
        }
    }

    fn recompute(&mut self) {
        if let Some(srtt) = self.srtt {
            // The floor is a margin above SRTT (as Linux's rto_min), not an
            // absolute RTO: a low floor must not make a long path spurious.
            let rto = srtt.saturating_add((4 * self.rttvar).max(GRANULARITY_US).max(self.min));
            self.rto = rto.min(self.max);
        }
    }

    /// Doubles RTO after a timeout (RFC 6298 §5.5), up to the clamp.
    pub(super) fn back_off(&mut self) {
        self.rto = self.rto.saturating_mul(2).min(self.max);
    }

    pub(super) fn rto(&self) -> u64 {
        self.rto
    }

    pub(super) fn srtt(&self) -> Option<u64> {
        self.srtt
    }

    pub(super) fn rttvar(&self) -> u64 {
        self.rttvar
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6298_first_and_later_samples() {
        let mut r = RttEstimator::new(1_000_000, 100_000, 5_000_000);
        assert_eq!(r.rto(), 1_000_000);
        r.sample(200_000);
        assert_eq!(r.srtt(), Some(200_000));
        assert_eq!(r.rttvar(), 100_000);
        assert_eq!(r.rto(), 600_000);
        r.sample(200_000);
        assert_eq!(r.rttvar(), 75_000);
        assert_eq!(r.srtt(), Some(200_000));
        assert_eq!(r.rto(), 500_000);
        r.back_off();
        assert_eq!(r.rto(), 1_000_000);
        for _ in 0..10 {
            r.back_off();
        }
        assert_eq!(r.rto(), 5_000_000, "clamped to max");
        r.end_backoff();
        assert_eq!(r.rto(), 500_000, "an ack ends the backoff");
        r.back_off();
        r.sample(200_000);
        assert!(r.rto() < 1_000_000, "a fresh sample ends the backoff");
    }

    #[test]
    fn no_sample_no_backoff_reset() {
        let mut r = RttEstimator::new(1_000_000, 100_000, 5_000_000);
        r.back_off();
        r.end_backoff();
        assert_eq!(r.rto(), 2_000_000, "nothing to return to before a sample");
    }

    #[test]
    fn clamps_to_min() {
        let mut r = RttEstimator::new(1_000_000, 100_000, 5_000_000);
        for _ in 0..50 {
            r.sample(500);
        }
        assert_eq!(r.rto(), 100_500, "SRTT plus at least the floor");
    }
}
