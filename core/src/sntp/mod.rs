//! Unix time for a device without a real-time clock: a tiny sans-IO SNTPv4
//! client (RFC 4330, the client side of RFC 5905).
//!
//! The port [`schedule`](crate::schedule) needs unix time; a gateway that
//! boots without a battery-backed clock asks an NTP server once and then
//! carries the answer on its monotonic clock as a [`UnixClock`].
//!
//! ## What it does
//! * One request, one answer: a 48-byte client request (LI 0, version 4,
//!   mode 3) whose transmit timestamp is a 64-bit *cookie* chosen by the
//!   caller, resent every [`RESEND_INTERVAL_MS`] up to [`MAX_TRIES`] times.
//!   Try `i` carries `cookie + i`, so an answer tells which try it answers
//!   and the round trip is measured from that try's send instant.
//! * A reply counts only if its originate timestamp echoes one of our
//!   cookies: an off-path sender cannot guess 64 random bits, and a stale
//!   reply to an older exchange does not match.
//! * Validation ([`Reply::parse`]): at least 48 bytes, mode 4 (server; no
//!   broadcast), version 3 or 4, the cookie, stratum not 0 (a kiss-o'-death,
//!   whose four-letter code is kept in [`SntpError::KissOfDeath`]), leap
//!   indicator not 3 (server unsynchronised), stratum at most 15, transmit
//!   timestamp not zero. Nothing panics on any input.
//! * Timestamps: NTP seconds count from 1900 in 32 bits; a value with the
//!   top bit clear is taken as era 1 (from 2036-02-07T06:28:16Z), as RFC 4330
//!   §3 says, so dates from 1968 to 2104 read right.
//!
//! ## No local unix clock needed
//! NTP's offset formula needs the local unix time at send and receive. This
//! client has none, so it uses the monotonic clock instead and computes the
//! unix time *at the receive instant* `t4`:
//!
//! ```text
//! rtt        = t4 − t1                 (monotonic: our send and receive)
//! processing = T3 − T2                 (server: its receive and transmit)
//! delay      = rtt − processing
//! unix(t4)   = T3 + delay / 2          (error at most ± delay / 2)
//! ```
//!
//! The result, [`SntpSync`], pairs that unix time with `t4` in a
//! [`UnixClock`], and bounds its error by half the delay plus the server's
//! own distance from UTC (root delay / 2 + root dispersion) plus the
//! millisecond rounding: [`SntpSync::max_error_ms`]. A server whose
//! processing time is negative or longer than the round trip is not believed
//! about it: the whole round trip counts as delay, which keeps the bound
//! true.
//!
//! ## Run loop
//! See [`SntpClient`]. In short: `poll_transmit` at once and send what it
//! writes, feed every datagram to `handle_datagram` with the instant it
//! arrived, call `handle_timeout` at `poll_timeout`, stop when `outcome` is
//! `Some`.
//!
//! ## Not supported
//! Broadcast and symmetric modes, authentication (MACs, NTS), choosing
//! among several servers, and polling: one sync is one exchange. RFC 4330
//! §10 asks clients not to poll a server more often than every 15 s; the
//! caller re-syncing a clock keeps to that.

mod client;
mod packet;

pub use client::{MAX_TRIES, RESEND_INTERVAL_MS, SntpClient};
pub use packet::{Packet, Reply, Request};

use core::fmt;

use crate::time::UnixClock;

/// The NTP server port.
pub const PORT: u16 = 123;
/// Length of an SNTP message without extensions: every request we send,
/// and the least a reply may have.
pub const PACKET_LEN: usize = 48;
/// The only version we send.
pub const VERSION: u8 = 4;
/// Mode of a client request.
pub const MODE_CLIENT: u8 = 3;
/// Mode of a server reply, the only one accepted.
pub const MODE_SERVER: u8 = 4;
/// Leap indicator of an unsynchronised server ("alarm").
pub const LEAP_ALARM: u8 = 3;
/// Highest stratum of a usable server (16 means unsynchronised).
pub const MAX_STRATUM: u8 = 15;
/// Seconds from the NTP epoch (1900-01-01) to the unix epoch (1970-01-01).
pub const NTP_UNIX_OFFSET: i64 = 2_208_988_800;

/// An NTP timestamp: seconds since the start of an NTP era in the high 32
/// bits, a binary fraction of a second in the low 32.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// Whole seconds since the era start.
    pub const fn seconds(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// The fraction of a second, in units of 2⁻³² s.
    pub const fn fraction(self) -> u32 {
        self.0 as u32
    }

    /// Microseconds since the unix epoch (rounded to the nearest), by RFC
    /// 4330 §3: seconds with the top bit set are era 0 (1968–2036), the
    /// others era 1 (2036–2104).
    pub const fn unix_micros(self) -> i64 {
        let secs = self.seconds() as i64;
        let era_start = if secs >= 1 << 31 { 0 } else { 1 << 32 };
        let unix_secs = secs + era_start - NTP_UNIX_OFFSET;
        let micros = ((self.fraction() as u64 * 1_000_000 + (1 << 31)) >> 32) as i64;
        unix_secs * 1_000_000 + micros
    }

    /// The timestamp of `micros` since the unix epoch. Exact for 1968–2104
    /// (the inverse of [`unix_micros`](Self::unix_micros) there); other
    /// times wrap into that range.
    pub const fn from_unix_micros(micros: i64) -> Self {
        let secs = micros.div_euclid(1_000_000) + NTP_UNIX_OFFSET;
        let sub = micros.rem_euclid(1_000_000) as u64;
        let fraction = ((sub << 32) + 500_000) / 1_000_000;
        Timestamp(((secs.rem_euclid(1 << 32) as u64) << 32) | fraction)
    }
}

/// Why a reply is refused or a sync failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SntpError {
    /// Shorter than [`PACKET_LEN`].
    TooShort,
    /// Not a server reply; carries the mode.
    Mode(u8),
    /// Neither version 3 nor 4; carries the version.
    Version(u8),
    /// The originate timestamp is none of our cookies: forged, or an
    /// answer to some other request.
    Originate,
    /// Stratum 0: the server says go away; carries its four-letter kiss
    /// code (`RATE`, `DENY`, `RSTR`, …).
    KissOfDeath([u8; 4]),
    /// Leap indicator 3: the server's clock is not synchronised.
    Unsynchronised,
    /// Stratum above [`MAX_STRATUM`]; carries it.
    Stratum(u8),
    /// The server's transmit timestamp is zero.
    ZeroTransmit,
    /// [`MAX_TRIES`] requests went unanswered.
    Timeout,
}

impl SntpError {
    /// Whether the server itself said this, in answer to one of our
    /// requests (the cookie matched): asking it again now is pointless, so
    /// [`SntpClient`] stops. The other errors are about a stray datagram,
    /// and the client keeps waiting.
    pub const fn is_from_server(&self) -> bool {
        matches!(
            self,
            SntpError::KissOfDeath(_)
                | SntpError::Unsynchronised
                | SntpError::Stratum(_)
                | SntpError::ZeroTransmit
        )
    }
}

impl fmt::Display for SntpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SntpError::TooShort => write!(f, "SNTP reply shorter than {PACKET_LEN} bytes"),
            SntpError::Mode(m) => write!(f, "SNTP reply has mode {m}, not {MODE_SERVER} (server)"),
            SntpError::Version(v) => write!(f, "SNTP reply has version {v}, not 3 or 4"),
            SntpError::Originate => {
                f.write_str("SNTP reply does not echo our request (forged or stale)")
            }
            SntpError::KissOfDeath(code) => {
                f.write_str("SNTP server sent kiss-o'-death \"")?;
                for &b in code {
                    if b.is_ascii_graphic() || b == b' ' {
                        write!(f, "{}", b as char)?;
                    } else {
                        write!(f, "\\x{b:02x}")?;
                    }
                }
                f.write_str("\"")
            }
            SntpError::Unsynchronised => f.write_str("SNTP server is not synchronised"),
            SntpError::Stratum(s) => write!(f, "SNTP server has stratum {s}, above {MAX_STRATUM}"),
            SntpError::ZeroTransmit => f.write_str("SNTP reply has a zero transmit timestamp"),
            SntpError::Timeout => write!(f, "no SNTP reply to {MAX_TRIES} requests"),
        }
    }
}

/// The result of one exchange: unix time at the instant the reply arrived,
/// and how far off it may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SntpSync {
    /// Unix time anchored at the reply's receive instant.
    pub clock: UnixClock,
    /// Round-trip delay in µs: our round trip minus the server's
    /// processing time.
    pub delay_us: u64,
    /// The server's own distance from UTC in µs: root delay / 2 + root
    /// dispersion, as it reports them.
    pub root_distance_us: u64,
    /// The server's stratum (1–15).
    pub stratum: u8,
}

impl SntpSync {
    /// Bound on the error of `clock` at its anchor, in whole ms (rounded
    /// up): delay / 2 + root distance + 0.5 ms for reading in milliseconds.
    /// It grows with the local oscillator's drift as the anchor ages.
    ///
    /// For the punch's `max_clock_error_ms`, add the peer's bound: the
    /// punch needs the difference between the two sides' clocks.
    pub fn max_error_ms(&self) -> i64 {
        let us = self
            .delay_us
            .div_ceil(2)
            .saturating_add(self.root_distance_us)
            .saturating_add(500);
        i64::try_from(us.div_ceil(1000)).unwrap_or(i64::MAX)
    }
}

#[cfg(test)]
mod tests;
