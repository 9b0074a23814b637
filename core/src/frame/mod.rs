//! The tunnel's datagram formats, as checked views over caller bytes, in
//! the smoltcp style: udphp v0.12 (SPEC §2, below), its heartbeat tails
//! ([`tail`]) and the native protocol's packets ([`pw1`]).
//!
//! | type | layout (big-endian) |
//! | --- | --- |
//! | `U` | `U` seq:u16 len:u16 digest:11 payload |
//! | `C` | `C` seq:u16 len:u16 digest:11 zlib-stream |
//! | `A` | `A` seq:u16 |
//! | `N` | `N` seq:u16 (the receiver's *expected* seq) |
//! | `H` | `H…` (`HELOCLNT` from `-c`, `HELOSRVR` from `-l`) |
//!
//! Each type has a view (`DataFrame`, `AckFrame`, `HeartbeatFrame`) whose
//! `new_checked` validates the length once, after which every getter is
//! panic-free, and a high-level [`Repr`] with `parse`, `buffer_len` and
//! `emit`. No input of any length makes any of them panic.

mod ack;
mod data;
mod heartbeat;
pub mod pw1;
pub mod tail;

pub use ack::AckFrame;
pub use data::{DataFrame, DataRepr};
pub use heartbeat::{HeartbeatFrame, HeartbeatRepr, Role};

use core::fmt;

/// Length of a data frame header: type, seq, len, digest.
pub const HEADER_LEN: usize = 16;
/// Bytes of MD5 carried in a data frame.
pub const DIGEST_LEN: usize = 11;
/// Largest payload udphp.py sends (and we accept): `MAXBUF_SIZE`.
pub const MAX_PAYLOAD: usize = 40_000;
/// Largest datagram the format allows.
pub const MAX_FRAME_LEN: usize = HEADER_LEN + MAX_PAYLOAD;
/// Length of an `A` or `N` frame.
pub const ACK_LEN: usize = 3;

/// The first byte of every datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameType {
    /// Data, payload sent as is.
    Uncompressed = b'U',
    /// Data, payload zlib-compressed.
    Compressed = b'C',
    /// Positive acknowledgement of one seq.
    Ack = b'A',
    /// Negative acknowledgement carrying the expected seq.
    Nack = b'N',
    /// Keep-alive.
    Heartbeat = b'H',
}

impl FrameType {
    /// The type of a datagram starting with `byte`, if it is one of ours.
    pub const fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            b'U' => Some(FrameType::Uncompressed),
            b'C' => Some(FrameType::Compressed),
            b'A' => Some(FrameType::Ack),
            b'N' => Some(FrameType::Nack),
            b'H' => Some(FrameType::Heartbeat),
            _ => None,
        }
    }
}

/// Why a datagram is not a well-formed frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// Shorter than its type's fixed part (or empty).
    Truncated,
    /// The first byte is not `U C A N H`; carries that byte.
    UnknownType(u8),
    /// Longer than the format allows, or a declared length above
    /// [`MAX_PAYLOAD`]; also: the buffer given to `emit` is too small.
    TooLong,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated => f.write_str("datagram too short for its type"),
            Error::UnknownType(b) => write!(f, "unknown frame type byte 0x{b:02x}"),
            Error::TooLong => f.write_str("frame longer than the format allows"),
        }
    }
}

/// Result of frame parsing and emitting.
pub type Result<T> = core::result::Result<T, Error>;

/// Any udphp v0.12 datagram, parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repr<'a> {
    /// A `U` or `C` frame.
    Data(DataRepr<'a>),
    /// `A seq`.
    Ack(u16),
    /// `N expected`.
    Nack(u16),
    /// `H…`.
    Heartbeat(HeartbeatRepr<'a>),
}

impl<'a> Repr<'a> {
    /// Parses one datagram. Structural checks only: whether a data frame's
    /// payload matches its `len` and digest is the receiver's question.
    pub fn parse(datagram: &'a [u8]) -> Result<Repr<'a>> {
        let first = *datagram.first().ok_or(Error::Truncated)?;
        match FrameType::from_byte(first) {
            Some(FrameType::Uncompressed | FrameType::Compressed) => Ok(Repr::Data(
                DataRepr::parse(&DataFrame::new_checked(datagram)?),
            )),
            Some(FrameType::Ack) => Ok(Repr::Ack(AckFrame::new_checked(datagram)?.seq())),
            Some(FrameType::Nack) => Ok(Repr::Nack(AckFrame::new_checked(datagram)?.seq())),
            Some(FrameType::Heartbeat) => Ok(Repr::Heartbeat(HeartbeatRepr::parse(
                &HeartbeatFrame::new_checked(datagram)?,
            ))),
            None => Err(Error::UnknownType(first)),
        }
    }

    /// Exact length [`emit`](Self::emit) writes.
    pub fn buffer_len(&self) -> usize {
        match self {
            Repr::Data(d) => d.buffer_len(),
            Repr::Ack(_) | Repr::Nack(_) => ACK_LEN,
            Repr::Heartbeat(h) => h.buffer_len(),
        }
    }

    /// Writes the frame at the start of `buf` and returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let len = self.buffer_len();
        let out = buf.get_mut(..len).ok_or(Error::TooLong)?;
        match self {
            Repr::Data(d) => d.emit(&mut DataFrame::new_unchecked(out)),
            Repr::Ack(seq) => AckFrame::new_unchecked(out).set(FrameType::Ack, *seq),
            Repr::Nack(seq) => AckFrame::new_unchecked(out).set(FrameType::Nack, *seq),
            Repr::Heartbeat(h) => h.emit(&mut HeartbeatFrame::new_unchecked(out)),
        }
        Ok(len)
    }
}

#[cfg(test)]
mod tests;
