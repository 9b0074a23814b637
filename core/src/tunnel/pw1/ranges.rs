//! Received packet numbers as a small set of ranges: what the ACK frames
//! report, and the replay check.

use heapless::Vec;

/// Ranges kept; when a new gap would need more, the oldest range is
/// forgotten (an ack may say less than we know; the sender's data is
/// only ever retransmitted, never lost, and a duplicate chunk is dropped
/// by offset).
pub const MAX_RANGES: usize = 48;

/// Disjoint, non-adjacent inclusive ranges, ascending.
#[derive(Clone, Debug, Default)]
pub struct RangeSet {
    ranges: Vec<(u64, u64), MAX_RANGES>,
}

impl RangeSet {
    /// An empty set.
    pub const fn new() -> Self {
        RangeSet { ranges: Vec::new() }
    }

    /// Whether `pn` is in the set.
    pub fn contains(&self, pn: u64) -> bool {
        self.ranges.iter().any(|&(lo, hi)| lo <= pn && pn <= hi)
    }

    /// The largest number in the set.
    pub fn largest(&self) -> Option<u64> {
        self.ranges.last().map(|r| r.1)
    }

    /// The smallest number still remembered.
    pub fn smallest(&self) -> Option<u64> {
        self.ranges.first().map(|r| r.0)
    }

    /// Number of ranges.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Adds `pn`; returns `false` if it was there already.
    pub fn insert(&mut self, pn: u64) -> bool {
        // Index of the first range whose high is ≥ pn − 1 (could absorb pn).
        let i = self
            .ranges
            .iter()
            .position(|&(_, hi)| hi.saturating_add(1) >= pn)
            .unwrap_or(self.ranges.len());
        if i < self.ranges.len() {
            let (lo, hi) = self.ranges[i];
            if lo <= pn && pn <= hi {
                return false;
            }
            if pn == hi + 1 {
                self.ranges[i].1 = pn;
                // Merge with the next range if they touch now.
                if i + 1 < self.ranges.len() && self.ranges[i + 1].0 == pn + 1 {
                    self.ranges[i].1 = self.ranges[i + 1].1;
                    self.ranges.remove(i + 1);
                }
                return true;
            }
            if pn + 1 == lo {
                self.ranges[i].0 = pn;
                return true;
            }
        }
        if self.ranges.is_full() {
            if i == 0 {
                // Older than everything remembered: keep the newer ranges.
                return true;
            }
            self.ranges.remove(0);
            let _ = self.ranges.insert(i - 1, (pn, pn));
            return true;
        }
        // Not full: cannot fail.
        let _ = self.ranges.insert(i, (pn, pn));
        true
    }

    /// Ranges largest first, as `(low, high)`.
    pub fn iter_desc(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.ranges.iter().rev().copied()
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::vectors::XorShift;
    use std::collections::BTreeSet;
    use std::vec::Vec as StdVec;

    #[test]
    fn inserts_merge() {
        let mut s = RangeSet::new();
        for pn in [5, 7, 6, 1, 2, 10] {
            assert!(s.insert(pn));
        }
        assert!(!s.insert(6));
        let r: StdVec<_> = s.iter_desc().collect();
        assert_eq!(r, [(10, 10), (5, 7), (1, 2)]);
        assert!(s.contains(2) && !s.contains(3));
        assert_eq!(s.largest(), Some(10));
    }

    #[test]
    fn matches_a_model_until_full() {
        let mut rng = XorShift(9);
        for _ in 0..200 {
            let mut s = RangeSet::new();
            let mut model = BTreeSet::new();
            for _ in 0..60 {
                let pn = rng.next() % 200;
                assert_eq!(s.insert(pn), model.insert(pn) || s.len() == MAX_RANGES);
                if s.len() < MAX_RANGES {
                    for x in 0..200 {
                        assert_eq!(s.contains(x), model.contains(&x));
                    }
                }
                // Invariant: ascending, disjoint, not adjacent.
                let r: StdVec<_> = s.iter_desc().collect();
                for w in r.windows(2) {
                    assert!(w[1].1 + 1 < w[0].0);
                }
                for (lo, hi) in r {
                    assert!(lo <= hi);
                }
            }
        }
    }

    #[test]
    fn full_set_forgets_the_oldest() {
        let mut s = RangeSet::new();
        for i in 0..(MAX_RANGES as u64 + 5) {
            s.insert(i * 2);
        }
        assert_eq!(s.len(), MAX_RANGES);
        assert_eq!(s.largest(), Some((MAX_RANGES as u64 + 4) * 2));
        assert!(!s.contains(0));
    }
}
