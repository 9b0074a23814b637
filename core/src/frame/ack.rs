//! `A seq` and `N expected`.

use super::{ACK_LEN, Error, FrameType, Result};

mod field {
    pub const TYPE: usize = 0;
    pub const SEQ: core::ops::Range<usize> = 1..3;
}

/// A view over an `A` or `N` datagram. Bytes after the seq are ignored,
/// as udphp.py ignores them.
#[derive(Debug, Clone)]
pub struct AckFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> AckFrame<T> {
    /// Wraps bytes without checking them; getters may panic on short input.
    pub const fn new_unchecked(buffer: T) -> Self {
        AckFrame { buffer }
    }

    /// Wraps bytes after [`check_len`](Self::check_len) and a type check.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        match frame.buffer.as_ref()[field::TYPE] {
            b'A' | b'N' => Ok(frame),
            other => Err(Error::UnknownType(other)),
        }
    }

    /// Ensures the fixed part is present.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < ACK_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// `true` for `A`, `false` for `N`.
    pub fn is_positive(&self) -> bool {
        self.buffer.as_ref()[field::TYPE] == b'A'
    }

    /// The acknowledged (A) or expected (N) seq.
    pub fn seq(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[field::SEQ.start], b[field::SEQ.start + 1]])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> AckFrame<T> {
    /// Writes type and seq.
    pub fn set(&mut self, kind: FrameType, seq: u16) {
        let b = self.buffer.as_mut();
        b[field::TYPE] = kind as u8;
        b[field::SEQ].copy_from_slice(&seq.to_be_bytes());
    }
}
