//! Time as the core sees it. The core never reads a clock.
//!
//! * **Monotonic time** drives timers (retransmission, heartbeats, spray
//!   intervals). It is an [`Instant`]: an `embedded_time::Instant` on
//!   [`CoreClock`], a microsecond time base. A driver implements
//!   `embedded_time::Clock` for its own hardware (the Linux backend over
//!   `CLOCK_MONOTONIC`, the ESP backend over the system timer) and converts
//!   its readings with [`from_clock`]; tests make instants with [`at_micros`]
//!   or [`at_millis`] on a virtual clock.
//! * **Unix time** picks the port schedule. It is a separate
//!   [`UnixTime`](crate::schedule::UnixTime), passed in by the caller: from
//!   the system clock, an SNTP reply, or offset on purpose for tests.
//!
//! Every machine method that depends on time takes `now: Instant` and each
//! machine reports its next deadline; calling it early is harmless.

use embedded_time::duration::{Duration, Generic};
use embedded_time::fraction::Fraction;
use embedded_time::{Clock, clock};

pub use embedded_time::duration::{Microseconds, Milliseconds, Seconds};

/// The core's time base: microseconds since an arbitrary origin chosen by
/// the driver. 64 bits of microseconds wrap after 292 000 years.
///
/// It only names the base. It cannot be read: [`Clock::try_now`] always
/// fails with `NotRunning`, by design.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CoreClock;

impl Clock for CoreClock {
    type T = u64;
    const SCALING_FACTOR: Fraction = Fraction::new(1, 1_000_000);

    fn try_now(&self) -> Result<embedded_time::Instant<Self>, clock::Error> {
        Err(clock::Error::NotRunning)
    }
}

/// A monotonic instant on the core's time base.
pub type Instant = embedded_time::Instant<CoreClock>;

/// The instant `us` microseconds after the driver's origin.
pub fn at_micros(us: u64) -> Instant {
    Instant::new(us)
}

/// The instant `ms` milliseconds after the driver's origin.
pub fn at_millis(ms: u64) -> Instant {
    Instant::new(ms.saturating_mul(1000))
}

/// Microseconds since the driver's origin.
pub fn micros(t: Instant) -> u64 {
    t.duration_since_epoch().integer()
}

/// `t + us` microseconds (saturating).
pub fn add_micros(t: Instant, us: u64) -> Instant {
    Instant::new(micros(t).saturating_add(us))
}

/// `t + ms` milliseconds (saturating).
pub fn add_millis(t: Instant, ms: u64) -> Instant {
    add_micros(t, ms.saturating_mul(1000))
}

/// Microseconds from `earlier` to `later`, 0 if `later` is not later.
pub fn micros_between(earlier: Instant, later: Instant) -> u64 {
    micros(later).saturating_sub(micros(earlier))
}

/// The earlier of two optional deadlines.
pub fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if micros(a) <= micros(b) { a } else { b }),
        (a, None) => a,
        (None, b) => b,
    }
}

/// Converts a reading of any `embedded_time` clock to the core's base.
/// `None` if the reading does not fit (a clock with more than 64 bits of
/// microseconds).
pub fn from_clock<C: Clock>(reading: embedded_time::Instant<C>) -> Option<Instant>
where
    Generic<C::T>: TryInto<Microseconds<u64>>,
{
    let since: Generic<C::T> = reading.duration_since_epoch();
    let us: Microseconds<u64> = since.try_into().ok()?;
    Some(Instant::new(us.0))
}

/// Converts an `embedded_time` duration to whole microseconds, if it fits.
pub fn duration_micros<D: Duration + TryInto<Microseconds<u64>>>(d: D) -> Option<u64> {
    d.try_into().ok().map(|us: Microseconds<u64>| us.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct KiloHertz;

    impl Clock for KiloHertz {
        type T = u32;
        const SCALING_FACTOR: Fraction = Fraction::new(1, 1000);
        fn try_now(&self) -> Result<embedded_time::Instant<Self>, clock::Error> {
            Ok(embedded_time::Instant::new(1234))
        }
    }

    #[test]
    fn core_clock_cannot_be_read() {
        assert!(CoreClock.try_now().is_err());
    }

    #[test]
    fn conversion_from_a_backend_clock() {
        let reading = KiloHertz.try_now().unwrap();
        assert_eq!(from_clock(reading), Some(at_millis(1234)));
    }

    #[test]
    fn arithmetic() {
        let t = at_millis(5);
        assert_eq!(micros(add_millis(t, 3)), 8000);
        assert_eq!(micros_between(t, at_millis(9)), 4000);
        assert_eq!(micros_between(at_millis(9), t), 0);
        assert_eq!(earliest(Some(t), Some(at_millis(2))), Some(at_millis(2)));
        assert_eq!(earliest(None, Some(t)), Some(t));
        assert_eq!(earliest(None, None), None);
        assert_eq!(duration_micros(Milliseconds(7u32)), Some(7000));
        assert_eq!(add_micros(at_micros(u64::MAX - 1), 5), at_micros(u64::MAX));
    }
}
