//! The receiving half: the expected seq and the buffer of payload bytes
//! that the local TCP side has not taken yet.

use super::{DatagramError, RECV_BUFFER, seq_is_older};
use crate::compress::Inflater;
use crate::frame::DataRepr;

/// What the receiver makes of one data frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Accepted and held: answer `A seq`.
    Accepted { len: usize },
    /// Older, delivered before: answer `A seq`.
    Older,
    /// Ahead of `expected`: answer `N expected`.
    Future,
    /// The expected seq, but no room: stay silent.
    NoRoom,
    /// The expected seq, damaged: answer `N expected`.
    Damaged(DatagramError),
}

/// In-order receiver over a linear buffer of [`RECV_BUFFER`] bytes.
///
/// Held bytes are `buf[start..end]`. A frame is decoded straight into
/// `buf[end..end + len]` (compacting first when the tail lacks room) and
/// only committed once its length and digest check out, so a damaged frame
/// never reaches the reader and needs no scratch buffer.
pub(super) struct Receiver {
    buf: [u8; RECV_BUFFER],
    start: usize,
    end: usize,
    expected: u16,
    /// The peer's empty frame was accepted.
    fin: bool,
    /// Length of the last expected frame refused for lack of room, until
    /// enough room is free again.
    refused: Option<usize>,
    inflater: Inflater,
}

impl Receiver {
    pub(super) fn new() -> Self {
        Receiver {
            buf: [0; RECV_BUFFER],
            start: 0,
            end: 0,
            expected: 0,
            fin: false,
            refused: None,
            inflater: Inflater::new(),
        }
    }

    /// Back to [`new`](Self::new)'s state; the buffer's bytes are left
    /// (nothing reads outside `start..end`).
    pub(super) fn reset(&mut self) {
        self.start = 0;
        self.end = 0;
        self.expected = 0;
        self.fin = false;
        self.refused = None;
    }

    pub(super) fn expected(&self) -> u16 {
        self.expected
    }

    #[cfg(test)]
    pub(super) fn set_expected(&mut self, seq: u16) {
        self.expected = seq;
    }

    pub(super) fn available(&self) -> usize {
        self.end - self.start
    }

    pub(super) fn free(&self) -> usize {
        RECV_BUFFER - self.available()
    }

    pub(super) fn fin(&self) -> bool {
        self.fin
    }

    /// Starts the next session: frames after the end of stream are taken
    /// again (and a refused one is nudged, see `take_room_opened`).
    pub(super) fn reopen(&mut self) {
        self.fin = false;
    }

    /// Applies the receiver rules of SPEC §2 to one parsed data frame.
    pub(super) fn on_data(&mut self, d: &DataRepr<'_>) -> Verdict {
        if d.seq != self.expected {
            return if seq_is_older(d.seq, self.expected) {
                Verdict::Older
            } else {
                Verdict::Future
            };
        }
        let len = usize::from(d.len);
        // After the peer's end of stream, the next session's bytes wait at
        // the sender until the driver starts that session.
        if self.fin || len > self.free() {
            self.refused = Some(len);
            return Verdict::NoRoom;
        }
        if RECV_BUFFER - self.end < len {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let out = &mut self.buf[self.end..self.end + len];
        if d.compressed {
            match self.inflater.inflate(d.body, out) {
                Ok(n) if n == len => {}
                Ok(_) => return Verdict::Damaged(DatagramError::LengthMismatch),
                Err(e) => return Verdict::Damaged(DatagramError::Inflate(e)),
            }
            if !d.digest.matches(out) {
                return Verdict::Damaged(DatagramError::DigestMismatch);
            }
        } else {
            // Check in place before copying: a damaged body is never written.
            if d.body.len() != len {
                return Verdict::Damaged(DatagramError::LengthMismatch);
            }
            if !d.digest.matches(d.body) {
                return Verdict::Damaged(DatagramError::DigestMismatch);
            }
            out.copy_from_slice(d.body);
        }
        self.end += len;
        self.expected = self.expected.wrapping_add(1);
        if len == 0 {
            self.fin = true;
        }
        Verdict::Accepted { len }
    }

    /// Held bytes, in order.
    pub(super) fn peek(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Drops `n` held bytes (at most what is held).
    pub(super) fn consume(&mut self, n: usize) {
        self.start += n.min(self.available());
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Hands out held bytes in order.
    pub(super) fn read(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.available());
        out[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        n
    }

    /// Whether a refused frame now fits: the caller should nudge the
    /// sender. Clears the refusal.
    pub(super) fn take_room_opened(&mut self) -> bool {
        match self.refused {
            Some(len) if len <= self.free() => {
                self.refused = None;
                true
            }
            _ => false,
        }
    }
}
