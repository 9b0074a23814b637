//! `U` and `C` data frames.

use super::{DIGEST_LEN, Error, FrameType, HEADER_LEN, MAX_FRAME_LEN, MAX_PAYLOAD, Result};
use crate::digest::Digest;

mod field {
    use core::ops::{Range, RangeFrom};
    pub const TYPE: usize = 0;
    pub const SEQ: Range<usize> = 1..3;
    pub const LEN: Range<usize> = 3..5;
    pub const DIGEST: Range<usize> = 5..16;
    pub const BODY: RangeFrom<usize> = 16..;
}

/// A view over a `U` or `C` datagram.
#[derive(Debug, Clone)]
pub struct DataFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> DataFrame<T> {
    /// Wraps bytes without checking them; getters may panic on short input.
    pub const fn new_unchecked(buffer: T) -> Self {
        DataFrame { buffer }
    }

    /// Wraps bytes after [`check_len`](Self::check_len) and a type check.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        match frame.buffer.as_ref()[field::TYPE] {
            b'U' | b'C' => Ok(frame),
            other => Err(Error::UnknownType(other)),
        }
    }

    /// Ensures the header is present, the datagram is within
    /// [`MAX_FRAME_LEN`] and the declared length within [`MAX_PAYLOAD`].
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if b.len() > MAX_FRAME_LEN || usize::from(self.len()) > MAX_PAYLOAD {
            return Err(Error::TooLong);
        }
        Ok(())
    }

    /// Whether the body is a zlib stream (`C`).
    pub fn is_compressed(&self) -> bool {
        self.buffer.as_ref()[field::TYPE] == FrameType::Compressed as u8
    }

    /// Frame sequence number.
    pub fn seq(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[field::SEQ.start], b[field::SEQ.start + 1]])
    }

    /// Length of the uncompressed payload, as declared by the sender.
    pub fn len(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[field::LEN.start], b[field::LEN.start + 1]])
    }

    /// Whether the declared payload length is zero.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// MD5-11 of the uncompressed payload, as declared by the sender.
    pub fn digest(&self) -> Digest {
        let mut d = [0u8; DIGEST_LEN];
        d.copy_from_slice(&self.buffer.as_ref()[field::DIGEST]);
        Digest(d)
    }

    /// The payload bytes as sent (zlib stream for `C`).
    pub fn body(&self) -> &[u8] {
        &self.buffer.as_ref()[field::BODY]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> DataFrame<T> {
    /// Writes the whole header.
    pub fn set_header(&mut self, compressed: bool, seq: u16, len: u16, digest: &Digest) {
        let b = self.buffer.as_mut();
        b[field::TYPE] = if compressed { b'C' } else { b'U' };
        b[field::SEQ].copy_from_slice(&seq.to_be_bytes());
        b[field::LEN].copy_from_slice(&len.to_be_bytes());
        b[field::DIGEST].copy_from_slice(&digest.0);
    }

    /// The body, to be filled in place (e.g. compressed straight into it).
    pub fn body_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::BODY]
    }
}

/// A parsed data frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataRepr<'a> {
    /// `C` rather than `U`.
    pub compressed: bool,
    /// Sequence number.
    pub seq: u16,
    /// Declared uncompressed payload length.
    pub len: u16,
    /// Declared MD5-11 of the uncompressed payload.
    pub digest: Digest,
    /// Body as carried.
    pub body: &'a [u8],
}

impl<'a> DataRepr<'a> {
    /// Reads a checked frame.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(frame: &DataFrame<&'a T>) -> DataRepr<'a> {
        let bytes: &'a [u8] = frame.buffer.as_ref();
        DataRepr {
            compressed: frame.is_compressed(),
            seq: frame.seq(),
            len: frame.len(),
            digest: frame.digest(),
            body: &bytes[field::BODY],
        }
    }

    /// Exact length of the emitted frame.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.body.len()
    }

    /// Writes this frame into a buffer of exactly [`buffer_len`](Self::buffer_len) bytes.
    ///
    /// # Panics
    /// If the buffer has a different length.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut DataFrame<T>) {
        frame.set_header(self.compressed, self.seq, self.len, &self.digest);
        frame.body_mut().copy_from_slice(self.body);
    }
}
