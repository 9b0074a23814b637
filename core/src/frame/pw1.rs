//! The `pw1` packet: the native tunnel protocol's datagram (negotiated in
//! heartbeat tails, see [`tail`](super::tail)); the transport that runs on
//! it is `tunnel::pw1`.
//!
//! ## Packet
//!
//! | bytes | field | meaning |
//! | --- | --- | --- |
//! | 0 | marker | `0xF0` \| key phase (bit 0, always 0 until keys exist); never one of udphp's `U C A N H` |
//! | 1..9 | token | the **receiver's** incarnation token (u64), learned from its heartbeat tail |
//! | 9..15 | packet number | u48, starts at 0, +1 per packet, never reused |
//! | 15.. | frames | one or more frames, below |
//!
//! All integers are big-endian. The 15-byte header is meant as the
//! associated data of a later AEAD (the token binds a packet to one
//! incarnation of the receiver, the packet number is the nonce), and the
//! default largest datagram (1400 bytes of UDP payload) leaves
//! [`TAG_LEN`] bytes for its tag: [`max_payload`] is what frames may use.
//!
//! ## Frames
//!
//! | type | layout after the type byte | meaning |
//! | --- | --- | --- |
//! | `0x00` PADDING | – | ignored |
//! | `0x01` PING | – | asks for an ack (keepalive, probe) |
//! | `0x02` ACK | largest:u48 delay:u16 count:u8 first:u32 (gap:u32 len:u32)×count | ranges of received packet numbers, QUIC style: the first range is `largest−first ..= largest`; each next one ends `gap + 2` below the previous start and spans `len + 1` numbers; `delay` in units of 16 µs |
//! | `0x03` RESET_STREAM | stream:u32 code:u16 | the sender abandons its half of the stream |
//! | `0x04` STOP_SENDING | stream:u32 code:u16 | the receiver will not read the stream any more |
//! | `0x05` MAX_STREAM_CHUNKS | stream:u32 max:u32 | flow control: the peer may create chunks (STREAM frames with new data) numbered below `max` on this stream |
//! | `0x06` MAX_STREAMS | max:u32 | the peer may open streams with ids up to `max` |
//! | `0x07` CLOSE | code:u16 | the sender is going away |
//! | `0x08`/`0x09` STREAM | stream:u32 offset:u64 len:u16 data | stream bytes at `offset`; `0x09` also ends the stream after them |
//!
//! A packet is processed only if every frame in it parses; an unknown
//! frame type makes the whole packet malformed (a future extension is
//! negotiated in the heartbeat tail first, never guessed).

use super::{Error, Result};

/// First byte of a pw1 packet with key phase 0.
pub const MARKER: u8 = 0xF0;
/// Header: marker, token, packet number.
pub const HEADER_LEN: usize = 15;
/// Room left in every datagram for a later AEAD tag.
pub const TAG_LEN: usize = 16;
/// Default largest UDP payload of a pw1 datagram: no IP fragmentation on a
/// 1500-byte (or PPPoE 1492-byte) path, IPv4 or IPv6.
pub const DEFAULT_MAX_DATAGRAM: usize = 1400;
/// Smallest datagram size the transport works with.
pub const MIN_MAX_DATAGRAM: usize = 256;
/// Largest packet number (48 bits).
pub const MAX_PACKET_NUMBER: u64 = (1 << 48) - 1;
/// Bytes of a STREAM frame before its data.
pub const STREAM_OVERHEAD: usize = 1 + 4 + 8 + 2;
/// Bytes of an ACK frame with no extra range.
pub const ACK_MIN_LEN: usize = 1 + 6 + 2 + 1 + 4;
/// Bytes each extra ACK range adds.
pub const ACK_RANGE_LEN: usize = 8;
/// Most extra ranges one ACK frame may carry.
pub const MAX_ACK_RANGES: usize = 32;

/// Bytes of frames that fit in a datagram of `max_datagram` bytes, after
/// the header and the room kept for a tag.
pub const fn max_payload(max_datagram: usize) -> usize {
    max_datagram.saturating_sub(HEADER_LEN + TAG_LEN)
}

/// Frame type bytes.
pub mod kind {
    /// PADDING.
    pub const PADDING: u8 = 0x00;
    /// PING.
    pub const PING: u8 = 0x01;
    /// ACK.
    pub const ACK: u8 = 0x02;
    /// RESET_STREAM.
    pub const RESET_STREAM: u8 = 0x03;
    /// STOP_SENDING.
    pub const STOP_SENDING: u8 = 0x04;
    /// MAX_STREAM_CHUNKS.
    pub const MAX_STREAM_CHUNKS: u8 = 0x05;
    /// MAX_STREAMS.
    pub const MAX_STREAMS: u8 = 0x06;
    /// CLOSE.
    pub const CLOSE: u8 = 0x07;
    /// STREAM without FIN.
    pub const STREAM: u8 = 0x08;
    /// STREAM with FIN.
    pub const STREAM_FIN: u8 = 0x09;
}

/// The packet header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Key phase bit (0 until keys exist).
    pub key_phase: bool,
    /// The receiver's incarnation token.
    pub token: u64,
    /// Packet number (≤ [`MAX_PACKET_NUMBER`]).
    pub packet_number: u64,
}

impl Header {
    /// Whether `datagram` starts like a pw1 packet (its first byte).
    pub fn is_pw1(datagram: &[u8]) -> bool {
        matches!(datagram.first(), Some(b) if b & 0xFE == MARKER)
    }

    /// Parses the header; the frames are `&datagram[HEADER_LEN..]`.
    pub fn parse(datagram: &[u8]) -> Result<Header> {
        let b = datagram.get(..HEADER_LEN).ok_or(Error::Truncated)?;
        if b[0] & 0xFE != MARKER {
            return Err(Error::UnknownType(b[0]));
        }
        Ok(Header {
            key_phase: b[0] & 1 == 1,
            token: be_u64(&b[1..9]),
            packet_number: be_u48(&b[9..15]),
        })
    }

    /// Writes the header into the first [`HEADER_LEN`] bytes of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let b = buf.get_mut(..HEADER_LEN).ok_or(Error::TooLong)?;
        b[0] = MARKER | u8::from(self.key_phase);
        b[1..9].copy_from_slice(&self.token.to_be_bytes());
        b[9..15].copy_from_slice(&self.packet_number.to_be_bytes()[2..]);
        Ok(HEADER_LEN)
    }
}

/// A parsed ACK frame; ranges are read lazily from the frame's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AckFrame<'a> {
    /// Largest packet number acknowledged.
    pub largest: u64,
    /// Time the receiver held the largest before acking it, µs.
    pub delay_us: u64,
    /// Length of the first range minus one.
    pub first: u32,
    /// `count` pairs of (gap, len), 8 bytes each.
    ranges: &'a [u8],
}

impl<'a> AckFrame<'a> {
    /// The acknowledged ranges, largest first, as inclusive `(low, high)`.
    /// Stops (without panicking) at a range that would go below zero.
    pub fn ranges(&self) -> AckRanges<'a> {
        AckRanges {
            next_high: Some(self.largest),
            len: u64::from(self.first),
            rest: self.ranges,
            first: true,
        }
    }

    /// Number of extra ranges.
    pub fn extra_ranges(&self) -> usize {
        self.ranges.len() / ACK_RANGE_LEN
    }
}

/// Iterator over an ACK frame's ranges.
#[derive(Clone, Debug)]
pub struct AckRanges<'a> {
    next_high: Option<u64>,
    len: u64,
    rest: &'a [u8],
    first: bool,
}

impl Iterator for AckRanges<'_> {
    type Item = (u64, u64);
    fn next(&mut self) -> Option<(u64, u64)> {
        let high = self.next_high?;
        if !self.first {
            let (pair, rest) = self.rest.split_at_checked(ACK_RANGE_LEN)?;
            self.rest = rest;
            let gap = u64::from(be_u32(&pair[..4]));
            self.len = u64::from(be_u32(&pair[4..]));
            // `high` here is the previous range's low; the next range ends
            // `gap + 2` below it.
            let Some(h) = high.checked_sub(gap + 2) else {
                self.next_high = None;
                return None;
            };
            let Some(low) = h.checked_sub(self.len) else {
                self.next_high = None;
                return None;
            };
            self.next_high = Some(low);
            return Some((low, h));
        }
        self.first = false;
        let Some(low) = high.checked_sub(self.len) else {
            self.next_high = None;
            return None;
        };
        self.next_high = Some(low);
        Some((low, high))
    }
}

/// One frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// PADDING (a run of zero bytes counts once).
    Padding,
    /// PING.
    Ping,
    /// ACK.
    Ack(AckFrame<'a>),
    /// RESET_STREAM.
    ResetStream {
        /// Stream id.
        stream: u32,
        /// Application code.
        code: u16,
    },
    /// STOP_SENDING.
    StopSending {
        /// Stream id.
        stream: u32,
        /// Application code.
        code: u16,
    },
    /// MAX_STREAM_CHUNKS.
    MaxStreamChunks {
        /// Stream id.
        stream: u32,
        /// Chunks numbered below this may be created.
        max: u32,
    },
    /// MAX_STREAMS.
    MaxStreams {
        /// Highest stream id the peer may open.
        max: u32,
    },
    /// CLOSE.
    Close {
        /// Reason code.
        code: u16,
    },
    /// STREAM.
    Stream {
        /// Stream id.
        stream: u32,
        /// Offset of the first byte.
        offset: u64,
        /// The stream ends after these bytes.
        fin: bool,
        /// The bytes.
        data: &'a [u8],
    },
}

impl Frame<'_> {
    /// Whether receiving this frame obliges the receiver to ack the packet
    /// (everything but ACK, PADDING and CLOSE).
    pub fn is_ack_eliciting(&self) -> bool {
        !matches!(self, Frame::Ack(_) | Frame::Padding | Frame::Close { .. })
    }

    /// Exact bytes [`emit`](Self::emit) writes. For an ACK this is its
    /// parsed length.
    pub fn buffer_len(&self) -> usize {
        match self {
            Frame::Padding | Frame::Ping => 1,
            Frame::Ack(a) => ACK_MIN_LEN + a.ranges.len(),
            Frame::ResetStream { .. } | Frame::StopSending { .. } => 7,
            Frame::MaxStreamChunks { .. } => 9,
            Frame::MaxStreams { .. } => 5,
            Frame::Close { .. } => 3,
            Frame::Stream { data, .. } => STREAM_OVERHEAD + data.len(),
        }
    }

    /// Writes the frame at the start of `buf`, returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let len = self.buffer_len();
        let b = buf.get_mut(..len).ok_or(Error::TooLong)?;
        match *self {
            Frame::Padding => b[0] = kind::PADDING,
            Frame::Ping => b[0] = kind::PING,
            Frame::Ack(a) => {
                b[0] = kind::ACK;
                b[1..7].copy_from_slice(&a.largest.to_be_bytes()[2..]);
                let units = (a.delay_us / 16).min(u64::from(u16::MAX)) as u16;
                b[7..9].copy_from_slice(&units.to_be_bytes());
                b[9] = (a.ranges.len() / ACK_RANGE_LEN) as u8;
                b[10..14].copy_from_slice(&a.first.to_be_bytes());
                b[14..].copy_from_slice(a.ranges);
            }
            Frame::ResetStream { stream, code } | Frame::StopSending { stream, code } => {
                b[0] = if matches!(self, Frame::ResetStream { .. }) {
                    kind::RESET_STREAM
                } else {
                    kind::STOP_SENDING
                };
                b[1..5].copy_from_slice(&stream.to_be_bytes());
                b[5..7].copy_from_slice(&code.to_be_bytes());
            }
            Frame::MaxStreamChunks { stream, max } => {
                b[0] = kind::MAX_STREAM_CHUNKS;
                b[1..5].copy_from_slice(&stream.to_be_bytes());
                b[5..9].copy_from_slice(&max.to_be_bytes());
            }
            Frame::MaxStreams { max } => {
                b[0] = kind::MAX_STREAMS;
                b[1..5].copy_from_slice(&max.to_be_bytes());
            }
            Frame::Close { code } => {
                b[0] = kind::CLOSE;
                b[1..3].copy_from_slice(&code.to_be_bytes());
            }
            Frame::Stream {
                stream,
                offset,
                fin,
                data,
            } => {
                if data.len() > usize::from(u16::MAX) {
                    return Err(Error::TooLong);
                }
                b[0] = if fin { kind::STREAM_FIN } else { kind::STREAM };
                b[1..5].copy_from_slice(&stream.to_be_bytes());
                b[5..13].copy_from_slice(&offset.to_be_bytes());
                b[13..15].copy_from_slice(&(data.len() as u16).to_be_bytes());
                b[15..].copy_from_slice(data);
            }
        }
        Ok(len)
    }
}

/// Iterator over the frames after a header; yields an error once (and
/// then stops) at the first malformed frame.
#[derive(Clone, Debug)]
pub struct Frames<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Frames<'a> {
    /// Frames in `payload` (a packet without its header).
    pub fn new(payload: &'a [u8]) -> Self {
        Frames {
            rest: payload,
            failed: false,
        }
    }

    /// Checks every frame; `Ok(true)` if the packet is ack-eliciting.
    /// An empty payload is malformed.
    pub fn validate(payload: &'a [u8]) -> Result<bool> {
        if payload.is_empty() {
            return Err(Error::Truncated);
        }
        let mut eliciting = false;
        for f in Frames::new(payload) {
            eliciting |= f?.is_ack_eliciting();
        }
        Ok(eliciting)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let (head, rest) = self.rest.split_at_checked(n).ok_or(Error::Truncated)?;
        self.rest = rest;
        Ok(head)
    }

    fn frame(&mut self) -> Result<Frame<'a>> {
        let t = self.take(1)?[0];
        Ok(match t {
            kind::PADDING => {
                let zeros = self.rest.iter().take_while(|&&b| b == 0).count();
                self.rest = &self.rest[zeros..];
                Frame::Padding
            }
            kind::PING => Frame::Ping,
            kind::ACK => {
                let b = self.take(ACK_MIN_LEN - 1)?;
                let count = usize::from(b[8]);
                if count > MAX_ACK_RANGES {
                    return Err(Error::TooLong);
                }
                let ranges = self.take(count * ACK_RANGE_LEN)?;
                Frame::Ack(AckFrame {
                    largest: be_u48(&b[..6]),
                    delay_us: u64::from(u16::from_be_bytes([b[6], b[7]])) * 16,
                    first: be_u32(&b[9..13]),
                    ranges,
                })
            }
            kind::RESET_STREAM | kind::STOP_SENDING => {
                let b = self.take(6)?;
                let (stream, code) = (be_u32(&b[..4]), u16::from_be_bytes([b[4], b[5]]));
                if t == kind::RESET_STREAM {
                    Frame::ResetStream { stream, code }
                } else {
                    Frame::StopSending { stream, code }
                }
            }
            kind::MAX_STREAM_CHUNKS => {
                let b = self.take(8)?;
                Frame::MaxStreamChunks {
                    stream: be_u32(&b[..4]),
                    max: be_u32(&b[4..]),
                }
            }
            kind::MAX_STREAMS => Frame::MaxStreams {
                max: be_u32(self.take(4)?),
            },
            kind::CLOSE => {
                let b = self.take(2)?;
                Frame::Close {
                    code: u16::from_be_bytes([b[0], b[1]]),
                }
            }
            kind::STREAM | kind::STREAM_FIN => {
                let b = self.take(STREAM_OVERHEAD - 1)?;
                let len = usize::from(u16::from_be_bytes([b[12], b[13]]));
                let offset = be_u64(&b[4..12]);
                // A stream never reaches 2^62 bytes; refusing it keeps
                // `offset + len` far from overflow everywhere.
                if offset > (1 << 62) {
                    return Err(Error::TooLong);
                }
                Frame::Stream {
                    stream: be_u32(&b[..4]),
                    offset,
                    fin: t == kind::STREAM_FIN,
                    data: self.take(len)?,
                }
            }
            other => return Err(Error::UnknownType(other)),
        })
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<Frame<'a>>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let r = self.frame();
        if r.is_err() {
            self.failed = true;
        }
        Some(r)
    }
}

/// Builds an ACK frame from ranges given largest first (inclusive
/// `(low, high)`, disjoint, descending, not adjacent), at most
/// [`MAX_ACK_RANGES`] + 1 of them, straight into `buf`. Returns the length,
/// or `None` if there is no range or `buf` is too short.
pub fn emit_ack(
    ranges: impl Iterator<Item = (u64, u64)>,
    delay_us: u64,
    buf: &mut [u8],
) -> Option<usize> {
    let mut n = 0usize;
    let mut prev_low = 0u64;
    let mut at = ACK_MIN_LEN;
    for (low, high) in ranges.take(MAX_ACK_RANGES + 1) {
        if n == 0 {
            if buf.len() < ACK_MIN_LEN {
                return None;
            }
            buf[0] = kind::ACK;
            buf[1..7].copy_from_slice(&high.to_be_bytes()[2..]);
            let units = (delay_us / 16).min(u64::from(u16::MAX)) as u16;
            buf[7..9].copy_from_slice(&units.to_be_bytes());
            buf[10..14]
                .copy_from_slice(&((high - low).min(u64::from(u32::MAX)) as u32).to_be_bytes());
        } else {
            // Ranges that do not fit (or are malformed) are left out: an
            // ack may always say less than it knows.
            if high + 2 > prev_low || at + ACK_RANGE_LEN > buf.len() {
                break;
            }
            let gap = prev_low - high - 2;
            let len = high - low;
            if gap > u64::from(u32::MAX) || len > u64::from(u32::MAX) {
                break;
            }
            buf[at..at + 4].copy_from_slice(&(gap as u32).to_be_bytes());
            buf[at + 4..at + 8].copy_from_slice(&(len as u32).to_be_bytes());
            at += ACK_RANGE_LEN;
        }
        prev_low = low;
        n += 1;
    }
    if n == 0 {
        return None;
    }
    buf[9] = (n - 1) as u8;
    Some(at)
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be_u48(b: &[u8]) -> u64 {
    u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
}

fn be_u64(b: &[u8]) -> u64 {
    u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::vectors::XorShift;
    use std::vec::Vec;

    #[test]
    fn header_round_trip() {
        let h = Header {
            key_phase: false,
            token: 0x0102_0304_0506_0708,
            packet_number: MAX_PACKET_NUMBER,
        };
        let mut b = [0u8; HEADER_LEN];
        assert_eq!(h.emit(&mut b), Ok(HEADER_LEN));
        assert_eq!(b[0], 0xF0);
        assert_eq!(&b[1..9], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&b[9..], &[0xFF; 6]);
        assert_eq!(Header::parse(&b), Ok(h));
        assert!(Header::is_pw1(&b));
        for t in *b"UCANH" {
            assert!(!Header::is_pw1(&[t]));
            assert_eq!(Header::parse(&[t; 20]), Err(Error::UnknownType(t)));
        }
        assert_eq!(Header::parse(&b[..14]), Err(Error::Truncated));
    }

    #[test]
    fn frames_round_trip() {
        let frames = [
            Frame::Ping,
            Frame::ResetStream { stream: 7, code: 2 },
            Frame::StopSending {
                stream: u32::MAX,
                code: 1,
            },
            Frame::MaxStreamChunks { stream: 3, max: 99 },
            Frame::MaxStreams { max: 256 },
            Frame::Close { code: 0 },
            Frame::Stream {
                stream: 1,
                offset: 1 << 40,
                fin: true,
                data: b"hello",
            },
            Frame::Stream {
                stream: 2,
                offset: 0,
                fin: false,
                data: b"",
            },
            Frame::Padding,
        ];
        let mut buf = [0u8; 256];
        let mut at = 0;
        for f in frames {
            at += f.emit(&mut buf[at..]).unwrap();
        }
        let got: Vec<_> = Frames::new(&buf[..at]).map(|f| f.unwrap()).collect();
        assert_eq!(&got[..], &frames[..]);
        assert_eq!(Frames::validate(&buf[..at]), Ok(true));
        assert_eq!(Frames::validate(&[]), Err(Error::Truncated));
        assert_eq!(Frames::validate(&[0, 0, 0]), Ok(false));
        assert_eq!(Frames::validate(&[0x42]), Err(Error::UnknownType(0x42)));
    }

    #[test]
    fn ack_ranges_round_trip() {
        let ranges = [(90u64, 100u64), (50, 80), (10, 10), (0, 5)];
        let mut buf = [0u8; 128];
        let n = emit_ack(ranges.iter().copied(), 1600, &mut buf).unwrap();
        assert_eq!(n, ACK_MIN_LEN + 3 * ACK_RANGE_LEN);
        let mut it = Frames::new(&buf[..n]);
        let Some(Ok(Frame::Ack(a))) = it.next() else {
            panic!("not an ack")
        };
        assert!(it.next().is_none());
        assert_eq!(a.largest, 100);
        assert_eq!(a.delay_us, 1600);
        let back: Vec<_> = a.ranges().collect();
        assert_eq!(&back[..], &ranges[..]);
        // Re-emitting the parsed frame gives the same bytes.
        let mut again = [0u8; 128];
        assert_eq!(Frame::Ack(a).emit(&mut again), Ok(n));
        assert_eq!(&again[..n], &buf[..n]);
        // Adjacent or overlapping ranges are cut off, never mis-encoded.
        let n = emit_ack([(5u64, 9u64), (3, 4)].into_iter(), 0, &mut buf).unwrap();
        assert_eq!(n, ACK_MIN_LEN);
        // Too short a buffer keeps what fits.
        let n = emit_ack(ranges.iter().copied(), 0, &mut buf[..ACK_MIN_LEN + 9]).unwrap();
        assert_eq!(n, ACK_MIN_LEN + ACK_RANGE_LEN);
        assert_eq!(emit_ack(core::iter::empty(), 0, &mut buf), None);
    }

    #[test]
    fn hostile_ack_ranges_stop_at_zero() {
        // first range longer than largest, then gaps below zero.
        let mut b = [0u8; ACK_MIN_LEN + ACK_RANGE_LEN];
        b[0] = kind::ACK;
        b[6] = 3; // largest = 3
        b[9] = 1;
        b[10..14].copy_from_slice(&2u32.to_be_bytes());
        b[14..18].copy_from_slice(&u32::MAX.to_be_bytes());
        let Some(Ok(Frame::Ack(a))) = Frames::new(&b).next() else {
            panic!()
        };
        let got: Vec<_> = a.ranges().collect();
        assert_eq!(&got[..], &[(1, 3)]);
        b[10..14].copy_from_slice(&9u32.to_be_bytes());
        let Some(Ok(Frame::Ack(a))) = Frames::new(&b).next() else {
            panic!()
        };
        assert_eq!(a.ranges().count(), 0);
    }

    #[test]
    fn random_and_truncated_input_never_panics() {
        let mut rng = XorShift(0x5eed_0001);
        let mut buf = [0u8; 300];
        for round in 0..40_000 {
            let len = (rng.next() % 300) as usize;
            for b in buf[..len].iter_mut() {
                *b = rng.next() as u8;
            }
            // Bias towards known frame types so the parsers get deep.
            if len > 0 && round % 2 == 0 {
                buf[0] = (rng.next() % 10) as u8;
            }
            let _ = Header::parse(&buf[..len]);
            let _ = Frames::validate(&buf[..len]);
            for f in Frames::new(&buf[..len]).flatten() {
                if let Frame::Ack(a) = f {
                    for (lo, hi) in a.ranges() {
                        assert!(lo <= hi);
                    }
                }
                let mut out = [0u8; 400];
                let n = f.emit(&mut out).unwrap();
                assert_eq!(n, f.buffer_len());
            }
        }
    }
}
