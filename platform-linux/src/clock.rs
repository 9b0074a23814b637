//! The monotonic clock, as an `embedded_time::Clock`, and the system's
//! unix time.

use std::sync::OnceLock;
use std::time::{Instant as StdInstant, SystemTime, UNIX_EPOCH};

use embedded_time::fraction::Fraction;
use embedded_time::{Clock, clock};
use punchwire_core::schedule::UnixTime;
use punchwire_core::time::{self, Instant};

/// `CLOCK_MONOTONIC` (through `std::time::Instant`) in nanoseconds since
/// the first reading in this process.
#[derive(Debug, Clone, Copy, Default)]
pub struct MonotonicClock;

fn origin() -> StdInstant {
    static ORIGIN: OnceLock<StdInstant> = OnceLock::new();
    *ORIGIN.get_or_init(StdInstant::now)
}

impl Clock for MonotonicClock {
    type T = u64;
    const SCALING_FACTOR: Fraction = Fraction::new(1, 1_000_000_000);

    fn try_now(&self) -> Result<embedded_time::Instant<Self>, clock::Error> {
        let ns = u64::try_from(origin().elapsed().as_nanos()).unwrap_or(u64::MAX);
        Ok(embedded_time::Instant::new(ns))
    }
}

/// Monotonic now on the core's time base.
pub fn now() -> Instant {
    // try_now never fails and nanoseconds always fit microseconds.
    MonotonicClock
        .try_now()
        .ok()
        .and_then(time::from_clock)
        .unwrap_or_else(|| time::at_micros(u64::MAX))
}

/// The system's unix time shifted by `offset_ms`.
pub fn unix_now(offset_ms: i64) -> UnixTime {
    let ms = match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    };
    UnixTime::from_millis(ms).offset_millis(offset_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_goes_forward() {
        let a = now();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = now();
        assert!(time::micros_between(a, b) >= 2000);
    }
}
