//! The SNTP message: a checked view, the request we emit, the reply we
//! parse.
//!
//! ```text
//!  0      LI:2 VN:3 Mode:3 | stratum | poll | precision
//!  4      root delay       (16.16 s)
//!  8      root dispersion  (16.16 s)
//! 12      reference id     (kiss code when stratum is 0)
//! 16..48  reference, originate, receive, transmit timestamps (32.32)
//! ```

use super::{
    LEAP_ALARM, MAX_STRATUM, MODE_CLIENT, MODE_SERVER, PACKET_LEN, SntpError, SntpSync, Timestamp,
    VERSION,
};
use crate::time::{Instant, UnixClock, micros_between};

mod field {
    use core::ops::Range;

    pub const FLAGS: usize = 0;
    pub const STRATUM: usize = 1;
    pub const ROOT_DELAY: Range<usize> = 4..8;
    pub const ROOT_DISPERSION: Range<usize> = 8..12;
    pub const REFERENCE_ID: Range<usize> = 12..16;
    pub const ORIGINATE: Range<usize> = 24..32;
    pub const RECEIVE: Range<usize> = 32..40;
    pub const TRANSMIT: Range<usize> = 40..48;
}

/// A view over an SNTP message of at least [`PACKET_LEN`] bytes. Bytes after
/// them (extension fields, a MAC) are ignored.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps bytes without checking them; getters may panic on short input.
    pub const fn new_unchecked(buffer: T) -> Self {
        Packet { buffer }
    }

    /// Wraps bytes after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self, SntpError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Ensures the 48-byte header is present.
    pub fn check_len(&self) -> Result<(), SntpError> {
        if self.buffer.as_ref().len() < PACKET_LEN {
            Err(SntpError::TooShort)
        } else {
            Ok(())
        }
    }

    /// Leap indicator (0–3).
    pub fn leap(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS] >> 6
    }

    /// Version number (0–7).
    pub fn version(&self) -> u8 {
        (self.buffer.as_ref()[field::FLAGS] >> 3) & 0b111
    }

    /// Mode (0–7).
    pub fn mode(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS] & 0b111
    }

    /// Stratum.
    pub fn stratum(&self) -> u8 {
        self.buffer.as_ref()[field::STRATUM]
    }

    /// Root delay, in units of 2⁻¹⁶ s.
    pub fn root_delay(&self) -> u32 {
        self.u32_at(field::ROOT_DELAY.start)
    }

    /// Root dispersion, in units of 2⁻¹⁶ s.
    pub fn root_dispersion(&self) -> u32 {
        self.u32_at(field::ROOT_DISPERSION.start)
    }

    /// Reference id; the kiss code when the stratum is 0.
    pub fn reference_id(&self) -> [u8; 4] {
        let b = self.buffer.as_ref();
        let r = field::REFERENCE_ID.start;
        [b[r], b[r + 1], b[r + 2], b[r + 3]]
    }

    /// Originate timestamp: the client's transmit timestamp, echoed.
    pub fn originate(&self) -> Timestamp {
        self.timestamp_at(field::ORIGINATE.start)
    }

    /// Receive timestamp: when the server got the request.
    pub fn receive(&self) -> Timestamp {
        self.timestamp_at(field::RECEIVE.start)
    }

    /// Transmit timestamp: when the server sent the reply (the cookie in a
    /// request).
    pub fn transmit(&self) -> Timestamp {
        self.timestamp_at(field::TRANSMIT.start)
    }

    fn u32_at(&self, at: usize) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }

    fn timestamp_at(&self, at: usize) -> Timestamp {
        let hi = u64::from(self.u32_at(at));
        let lo = u64::from(self.u32_at(at + 4));
        Timestamp((hi << 32) | lo)
    }
}

/// A client request: everything zero but the first byte and the transmit
/// timestamp, which carries the cookie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// The value the server must echo as the originate timestamp.
    pub cookie: u64,
}

impl Request {
    /// Writes the request (LI 0, version 4, mode 3).
    pub fn emit(&self, buf: &mut [u8; PACKET_LEN]) {
        buf.fill(0);
        buf[field::FLAGS] = (VERSION << 3) | MODE_CLIENT;
        buf[field::TRANSMIT].copy_from_slice(&self.cookie.to_be_bytes());
    }
}

/// A validated server reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    /// Leap indicator (0–2): a leap second at the end of the day, if not 0.
    pub leap: u8,
    /// 3 or 4.
    pub version: u8,
    /// 1–15.
    pub stratum: u8,
    /// Root delay, in units of 2⁻¹⁶ s.
    pub root_delay: u32,
    /// Root dispersion, in units of 2⁻¹⁶ s.
    pub root_dispersion: u32,
    /// The echoed cookie.
    pub originate: Timestamp,
    /// When the server got the request (T2).
    pub receive: Timestamp,
    /// When the server sent the reply (T3), never zero.
    pub transmit: Timestamp,
}

impl Reply {
    /// Parses and validates a reply to the request that carried `cookie`.
    /// Checks in order: length, mode, version, cookie, then what the server
    /// says about itself (kiss-o'-death, leap alarm, stratum, transmit
    /// timestamp) — so only a genuine answer can produce those errors.
    pub fn parse(datagram: &[u8], cookie: u64) -> Result<Reply, SntpError> {
        Self::parse_matching(datagram, |originate| originate == cookie)
    }

    /// [`parse`](Self::parse) with any originate for which `ours` holds.
    pub(super) fn parse_matching(
        datagram: &[u8],
        ours: impl FnOnce(u64) -> bool,
    ) -> Result<Reply, SntpError> {
        let p = Packet::new_checked(datagram)?;
        if p.mode() != MODE_SERVER {
            return Err(SntpError::Mode(p.mode()));
        }
        if !matches!(p.version(), 3 | 4) {
            return Err(SntpError::Version(p.version()));
        }
        if !ours(p.originate().0) {
            return Err(SntpError::Originate);
        }
        if p.stratum() == 0 {
            return Err(SntpError::KissOfDeath(p.reference_id()));
        }
        if p.leap() == LEAP_ALARM {
            return Err(SntpError::Unsynchronised);
        }
        if p.stratum() > MAX_STRATUM {
            return Err(SntpError::Stratum(p.stratum()));
        }
        if p.transmit().0 == 0 {
            return Err(SntpError::ZeroTransmit);
        }
        Ok(Reply {
            leap: p.leap(),
            version: p.version(),
            stratum: p.stratum(),
            root_delay: p.root_delay(),
            root_dispersion: p.root_dispersion(),
            originate: p.originate(),
            receive: p.receive(),
            transmit: p.transmit(),
        })
    }

    /// The server's processing time in µs (T3 − T2), when it is believable:
    /// not negative and not longer than our round trip `rtt_us`.
    pub fn processing_us(&self, rtt_us: u64) -> Option<u64> {
        let t = self
            .transmit
            .unix_micros()
            .checked_sub(self.receive.unix_micros())?;
        u64::try_from(t).ok().filter(|&t| t <= rtt_us)
    }

    /// The unix time at `received`, for a request sent at `sent` (both
    /// monotonic; see the [module docs](super) for the formula).
    pub fn sync(&self, sent: Instant, received: Instant) -> SntpSync {
        let rtt = micros_between(sent, received);
        let delay = rtt - self.processing_us(rtt).unwrap_or(0);
        let half = i64::try_from(delay / 2).unwrap_or(i64::MAX);
        let unix_us = self.transmit.unix_micros().saturating_add(half);
        SntpSync {
            clock: UnixClock::from_micros(received, unix_us),
            delay_us: delay,
            root_distance_us: short_to_micros(self.root_delay) / 2
                + short_to_micros(self.root_dispersion),
            stratum: self.stratum,
        }
    }
}

/// An NTP short (16.16 s) in µs, rounded up: it feeds an error bound.
fn short_to_micros(v: u32) -> u64 {
    (u64::from(v) * 1_000_000).div_ceil(1 << 16)
}
