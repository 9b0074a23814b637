//! A windowed max filter over a monotonic clock of rounds (or µs), kept in
//! three samples: the best, second-best and third-best of successive
//! sub-windows (Kathleen Nichols' algorithm, as BBR uses it). O(1) space
//! and time; the max of the last `window` ticks, give or take a third.

/// One sample: a value and the tick it was taken at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Sample {
    tick: u64,
    value: u64,
}

/// The running max of the values seen in the last `window` ticks.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct MaxFilter {
    s: [Sample; 3],
}

impl MaxFilter {
    /// The current max (0 before any sample).
    pub(crate) fn get(&self) -> u64 {
        self.s[0].value
    }

    /// Forget everything.
    #[cfg(test)]
    pub(crate) fn reset(&mut self) {
        self.s = [Sample::default(); 3];
    }

    /// Adds `value` measured at `tick` (ticks never go backwards) and
    /// expires samples older than `window`.
    pub(crate) fn update(&mut self, tick: u64, value: u64, window: u64) {
        let new = Sample { tick, value };
        // A new max, or the whole window expired: it is all three.
        if value >= self.s[0].value || tick.saturating_sub(self.s[2].tick) > window {
            self.s = [new; 3];
            return;
        }
        if value >= self.s[1].value {
            self.s[1] = new;
            self.s[2] = new;
        } else if value >= self.s[2].value {
            self.s[2] = new;
        }
        // Age the sub-windows.
        let dt = tick.saturating_sub(self.s[0].tick);
        if dt > window {
            // The best expired: promote the others.
            self.s[0] = self.s[1];
            self.s[1] = self.s[2];
            self.s[2] = new;
            if tick.saturating_sub(self.s[0].tick) > window {
                self.s[0] = self.s[1];
                self.s[1] = self.s[2];
                self.s[2] = new;
            }
        } else if self.s[1].tick == self.s[0].tick && dt > window / 4 {
            // A quarter window passed with no second choice: take one.
            self.s[1] = new;
            self.s[2] = new;
        } else if self.s[2].tick == self.s[1].tick && dt > window / 2 {
            // Half the window passed with no third choice: take one.
            self.s[2] = new;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_max_within_window_and_expires_it() {
        let mut f = MaxFilter::default();
        f.update(0, 100, 10);
        for t in 1..=10 {
            f.update(t, 50, 10);
            assert_eq!(f.get(), 100, "tick {t}");
        }
        // Tick 11: the 100 from tick 0 is older than the window.
        f.update(11, 50, 10);
        assert_eq!(f.get(), 50);
    }

    #[test]
    fn falls_to_recent_second_best() {
        let mut f = MaxFilter::default();
        f.update(0, 100, 10);
        f.update(4, 80, 10);
        f.update(8, 60, 10);
        f.update(11, 10, 10);
        assert_eq!(f.get(), 80);
        f.update(15, 10, 10);
        assert_eq!(f.get(), 60);
        f.update(19, 10, 10);
        assert_eq!(f.get(), 10);
    }

    #[test]
    fn new_max_replaces_at_once() {
        let mut f = MaxFilter::default();
        f.update(0, 10, 10);
        f.update(1, 30, 10);
        assert_eq!(f.get(), 30);
        f.reset();
        assert_eq!(f.get(), 0);
    }
}
