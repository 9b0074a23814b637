//! The shared-clock port schedule of `tcp_punch.py` (SPEC §1).
//!
//! Both peers quantise the unix time into a *bucket*, turn the bucket into a
//! *boundary* seed, and draw the same 16 ports from CPython's MT19937. Nothing
//! here reads a clock: the caller passes the unix time in, as a [`UnixTime`].
//!
//! Because clocks disagree, a punching side does not trust one bucket: it
//! sprays every [`candidate_buckets`] bucket overlapping
//! `[t − max_error, t + max_error]`, so two sides whose clocks differ by at
//! most `max_error` always share one.

mod mt19937;

pub use mt19937::Mt19937;

use core::fmt;
use core::ops::RangeInclusive;

/// Width of one bucket in seconds (`2 × MAX_CLOCK_ERROR + 2`).
pub const WINDOW: i64 = 42;
/// The protocol's clock-error constant; it shifts bucket edges and is fixed
/// by the wire, whatever skew bound a user chooses for [`candidate_buckets`].
pub const MAX_CLOCK_ERROR: i64 = 20;
/// `tcp_punch.py` refuses a rendezvous closer than this many seconds.
pub const MIN_RUN_WINDOW: i64 = 10;
/// Ports per bucket.
pub const NUM_PORTS: usize = 16;
/// Lowest schedule port.
pub const BASE_PORT: u16 = 30_000;
/// Number of possible schedule ports (`BASE_PORT..BASE_PORT + PORT_RANGE`).
pub const PORT_RANGE: u16 = 20_000;
/// Multiplier that spreads consecutive buckets over the seed space.
pub const LARGE_PRIME: u64 = 2_654_435_761;
/// The boundary modulus: 2³² − 1, not 2³².
pub const BOUNDARY_MODULUS: u64 = 0xFFFF_FFFF;
/// Most buckets [`candidate_buckets`] may return; it bounds the skew a
/// caller may ask for to below [`MAX_SKEW_BOUND_MS`].
pub const MAX_CANDIDATES: usize = 4;
/// The largest skew bound (exclusive, in ms) that keeps the candidate set
/// within [`MAX_CANDIDATES`] buckets: an interval shorter than 3 windows
/// touches at most 4 buckets.
pub const MAX_SKEW_BOUND_MS: i64 = 3 * WINDOW * 1000 / 2;

/// A point in unix time, in milliseconds (negative before 1970).
///
/// Milliseconds, not seconds: the reference computes buckets from a float
/// timestamp, so `t = 20.5` and `t = 19.9` land in different buckets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixTime(i64);

impl UnixTime {
    /// From whole seconds since the epoch.
    pub const fn from_secs(secs: i64) -> Self {
        UnixTime(secs.saturating_mul(1000))
    }

    /// From milliseconds since the epoch.
    pub const fn from_millis(millis: i64) -> Self {
        UnixTime(millis)
    }

    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// Whole seconds since the epoch, rounded towards negative infinity.
    pub const fn as_secs_floor(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// This time shifted by `millis` (saturating).
    pub const fn offset_millis(self, millis: i64) -> Self {
        UnixTime(self.0.saturating_add(millis))
    }
}

impl fmt::Display for UnixTime {
    /// Seconds with the fraction only when there is one, like Python's repr
    /// of a round-tripped timestamp (`1700000000`, `2000000000.5`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let (secs, ms) = (abs / 1000, abs % 1000);
        if ms == 0 {
            write!(f, "{sign}{secs}")
        } else if ms % 100 == 0 {
            write!(f, "{sign}{secs}.{}", ms / 100)
        } else if ms % 10 == 0 {
            write!(f, "{sign}{secs}.{:02}", ms / 10)
        } else {
            write!(f, "{sign}{secs}.{ms:03}")
        }
    }
}

/// `floor((t − MAX_CLOCK_ERROR) / WINDOW)`.
pub const fn bucket(t: UnixTime) -> i64 {
    (t.0.saturating_sub(MAX_CLOCK_ERROR * 1000)).div_euclid(WINDOW * 1000)
}

/// First unix second that falls in `bucket` (buckets are half-open).
pub const fn bucket_start(bucket: i64) -> UnixTime {
    UnixTime::from_secs(
        bucket
            .saturating_mul(WINDOW)
            .saturating_add(MAX_CLOCK_ERROR),
    )
}

/// `(bucket × LARGE_PRIME) mod (2³² − 1)`, non-negative like Python's `%`.
pub const fn boundary(bucket: i64) -> u32 {
    let product = bucket as i128 * LARGE_PRIME as i128;
    product.rem_euclid(BOUNDARY_MODULUS as i128) as u32
}

/// The moment `tcp_punch.py` would connect for a bucket:
/// `(bucket + 1) × WINDOW + MAX_CLOCK_ERROR`, in seconds.
pub const fn rendezvous_time(bucket: i64) -> i64 {
    bucket
        .saturating_add(1)
        .saturating_mul(WINDOW)
        .saturating_add(MAX_CLOCK_ERROR)
}

/// What `tcp_punch.py` does when started at `t`: the bucket it punches and
/// the unix second it starts spraying. It moves to the next bucket when the
/// rendezvous is less than [`MIN_RUN_WINDOW`] away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReferenceStart {
    /// The bucket whose ports the reference sprays.
    pub bucket: i64,
    /// Unix second at which it starts spraying.
    pub rendezvous: i64,
}

/// The reference tool's bucket and rendezvous for a start at `t`.
pub const fn reference_start(t: UnixTime) -> ReferenceStart {
    let b = bucket(t);
    let r = rendezvous_time(b);
    if r.saturating_mul(1000).saturating_sub(t.0) < MIN_RUN_WINDOW * 1000 {
        ReferenceStart {
            bucket: b + 1,
            rendezvous: rendezvous_time(b + 1),
        }
    } else {
        ReferenceStart {
            bucket: b,
            rendezvous: r,
        }
    }
}

/// The 16 schedule ports of one bucket, in descending order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ports(pub [u16; NUM_PORTS]);

impl Ports {
    /// The ports, highest first.
    pub fn as_slice(&self) -> &[u16] {
        &self.0
    }

    /// Whether `port` is one of them.
    pub fn contains(&self, port: u16) -> bool {
        self.0.contains(&port)
    }
}

/// The ports `random.Random(boundary)` draws: `BASE_PORT + randint(0,
/// PORT_RANGE − 1)` until 16 are distinct, sorted descending.
pub fn ports(boundary: u32) -> Ports {
    let mut rng = Mt19937::from_seed(u64::from(boundary));
    let mut out = [0u16; NUM_PORTS];
    let mut n = 0;
    while n < NUM_PORTS {
        // randint(0, 19999) < 20000, so the sum fits in u16.
        let port = BASE_PORT + rng.randint(0, u32::from(PORT_RANGE) - 1) as u16;
        if !out[..n].contains(&port) {
            out[n] = port;
            n += 1;
        }
    }
    out.sort_unstable_by(|a, b| b.cmp(a));
    Ports(out)
}

/// One bucket with its derived boundary and ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BucketPorts {
    /// The bucket number.
    pub bucket: i64,
    /// Its PRNG seed.
    pub boundary: u32,
    /// Its ports, descending.
    pub ports: Ports,
}

impl BucketPorts {
    /// Derives boundary and ports for `bucket`.
    pub fn new(bucket: i64) -> Self {
        let boundary = boundary(bucket);
        BucketPorts {
            bucket,
            boundary,
            ports: ports(boundary),
        }
    }
}

/// Error of [`candidate_buckets`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkewError {
    /// The bound is negative or would need more than [`MAX_CANDIDATES`] buckets.
    OutOfRange,
}

impl fmt::Display for SkewError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "clock-error bound must be between 0 and {} ms",
            MAX_SKEW_BOUND_MS - 1
        )
    }
}

/// Every bucket overlapping `[t − max_error, t + max_error]`, oldest first.
///
/// With the default 20 s bound the interval is shorter than one window, so
/// the answer is one or two buckets.
pub fn candidate_buckets(t: UnixTime, max_error_ms: i64) -> Result<RangeInclusive<i64>, SkewError> {
    if !(0..MAX_SKEW_BOUND_MS).contains(&max_error_ms) {
        return Err(SkewError::OutOfRange);
    }
    let first = bucket(t.offset_millis(-max_error_ms));
    let last = bucket(t.offset_millis(max_error_ms));
    Ok(first..=last)
}

#[cfg(test)]
mod tests;
