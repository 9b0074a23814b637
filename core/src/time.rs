//! Time as the core sees it. The core never reads a clock.
//!
//! * **Monotonic time** drives timers (retransmission, heartbeats, spray
//!   intervals). It is an [`Instant`]: an `embedded_time::Instant` on
//!   [`CoreClock`], a microsecond time base. A driver implements
//!   `embedded_time::Clock` for its own hardware (the Linux backend over
//!   `CLOCK_MONOTONIC`, the ESP backend over the system timer) and converts
//!   its readings with [`from_clock`]; tests make instants with [`at_micros`]
//!   or [`at_millis`] on a virtual clock.
//! * **Unix time** picks the port schedule. It is a separate [`UnixTime`],
//!   passed in by the caller: from the system clock, an SNTP reply, or
//!   offset on purpose for tests.
//! * A [`UnixClock`] ties the two together: a unix time known at one
//!   monotonic instant (from [`sntp`](crate::sntp), or the host's clock),
//!   read at any later instant by adding the monotonic time elapsed.
//!
//! Every machine method that depends on time takes `now: Instant` and each
//! machine reports its next deadline; calling it early is harmless.

use crate::schedule::UnixTime;
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

/// Unix time carried by the monotonic clock: the unix time at one instant
/// (the *anchor*), read later by adding the monotonic time elapsed.
///
/// The anchor keeps microseconds so that reading it does not add up
/// rounding; readings are rounded to the nearest millisecond. How far a
/// reading is off grows with the local oscillator's drift as the anchor
/// ages (100 ppm is 0.36 s an hour): re-anchor from time to time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UnixClock {
    at: Instant,
    unix_us: i64,
}

impl UnixClock {
    /// The clock that reads `unix` at monotonic `at`.
    pub fn new(at: Instant, unix: UnixTime) -> Self {
        UnixClock::from_micros(at, unix.as_millis().saturating_mul(1000))
    }

    /// The clock that reads `unix_us` microseconds since the epoch at `at`.
    pub const fn from_micros(at: Instant, unix_us: i64) -> Self {
        UnixClock { at, unix_us }
    }

    /// The anchor's monotonic instant.
    pub fn instant(&self) -> Instant {
        self.at
    }

    /// Unix time at monotonic `now`, in microseconds (saturating). `now`
    /// may be before the anchor.
    pub fn unix_micros_at(&self, now: Instant) -> i64 {
        let elapsed = i128::from(micros(now)) - i128::from(micros(self.at));
        let us = i128::from(self.unix_us) + elapsed;
        us.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }

    /// Unix time at monotonic `now`, to the nearest millisecond.
    pub fn unix_at(&self, now: Instant) -> UnixTime {
        UnixTime::from_millis(round_to_millis(self.unix_micros_at(now)))
    }

    /// How many milliseconds this clock is ahead of `other` (negative:
    /// behind), compared at this clock's anchor. With `other` anchored on a
    /// local clock, this is the classic NTP offset of the local clock,
    /// negated: what to add to `other` to get this one.
    pub fn offset_millis(&self, other: &UnixClock) -> i64 {
        round_to_millis(self.unix_us.saturating_sub(other.unix_micros_at(self.at)))
    }
}

/// Microseconds to the nearest millisecond (halves round up).
fn round_to_millis(us: i64) -> i64 {
    us.saturating_add(500).div_euclid(1000)
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

    #[test]
    fn unix_clock_reads_forward_and_backward() {
        let c = UnixClock::new(at_millis(10_000), UnixTime::from_secs(1_795_305_600));
        assert_eq!(c.instant(), at_millis(10_000));
        assert_eq!(c.unix_at(at_millis(10_000)).as_millis(), 1_795_305_600_000);
        assert_eq!(c.unix_at(at_millis(12_345)).as_millis(), 1_795_305_602_345);
        assert_eq!(c.unix_at(at_millis(9_000)).as_millis(), 1_795_305_599_000);
        // Sub-millisecond anchors round to the nearest millisecond.
        let c = UnixClock::from_micros(at_micros(0), 1_499);
        assert_eq!(c.unix_at(at_micros(0)).as_millis(), 1);
        assert_eq!(c.unix_at(at_micros(1)).as_millis(), 2);
        assert_eq!(
            UnixClock::from_micros(at_micros(0), -1_500)
                .unix_at(at_micros(0))
                .as_millis(),
            -1
        );
        // Saturates instead of overflowing.
        let c = UnixClock::from_micros(at_micros(0), i64::MAX - 5);
        assert_eq!(c.unix_micros_at(at_micros(u64::MAX)), i64::MAX);
    }

    #[test]
    fn unix_clock_offset() {
        let server = UnixClock::new(at_millis(5_000), UnixTime::from_millis(1_000_000));
        // A local clock anchored earlier, running 250 ms behind the server.
        let local = UnixClock::new(at_millis(1_000), UnixTime::from_millis(995_750));
        assert_eq!(server.offset_millis(&local), 250);
        assert_eq!(local.offset_millis(&server), -250);
    }
}
