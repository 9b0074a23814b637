//! The sending half: a staging buffer for local bytes and a window of
//! `W` frame slots, each holding one frame until it is acked.

use super::Stats;
use crate::digest::Digest;
use crate::frame::{DataFrame, HEADER_LEN};
use crate::time::{Instant, add_micros, micros, micros_between};

/// `compress(payload, out)`: the zlib stream length written to `out` when
/// the MIN_GAIN rule says compression pays, else `None`.
pub(super) type Compress<'a> = dyn FnMut(&[u8], &mut [u8]) -> Option<usize> + 'a;

/// One frame, kept as built (possibly compressed) so a retransmission
/// repeats the very same bytes.
pub(super) struct Slot<const F: usize> {
    used: bool,
    seq: u16,
    compressed: bool,
    len: u16,
    digest: Digest,
    body: [u8; F],
    body_len: usize,
    /// Times emitted; 0 = built but never sent.
    transmissions: u32,
    /// Must be emitted at the next `poll_transmit`.
    due: bool,
    first_sent: Option<Instant>,
    last_sent: Option<Instant>,
    rto_at: Option<Instant>,
    given_up: bool,
}

impl<const F: usize> Slot<F> {
    fn new() -> Self {
        Slot {
            used: false,
            seq: 0,
            compressed: false,
            len: 0,
            digest: Digest::default(),
            body: [0; F],
            body_len: 0,
            transmissions: 0,
            due: false,
            first_sent: None,
            last_sent: None,
            rto_at: None,
            given_up: false,
        }
    }

    fn reset(&mut self) {
        self.used = false;
        self.seq = 0;
        self.compressed = false;
        self.len = 0;
        self.digest = Digest::default();
        self.body_len = 0;
        self.transmissions = 0;
        self.due = false;
        self.first_sent = None;
        self.last_sent = None;
        self.rto_at = None;
        self.given_up = false;
    }

    fn in_flight(&self) -> bool {
        self.used && self.transmissions > 0
    }
}

/// What an `A` did.
pub(super) enum AckOutcome {
    /// The frame was in flight and is done; RTT sample unless it was
    /// retransmitted (Karn). `fin`: it was our end-of-stream frame.
    Done { rtt_sample: Option<u64>, fin: bool },
    /// No such frame in flight.
    Stale,
}

pub(super) struct SendWindow<const W: usize, const F: usize> {
    staging: [u8; F],
    staged: usize,
    slots: [Slot<F>; W],
    next_seq: u16,
    frame_size: usize,
    fin_requested: bool,
    /// Seq of our end-of-stream frame, once built.
    fin_seq: Option<u16>,
    fin_acked: bool,
}

impl<const W: usize, const F: usize> SendWindow<W, F> {
    pub(super) fn new(frame_size: usize) -> Self {
        SendWindow {
            staging: [0; F],
            staged: 0,
            slots: core::array::from_fn(|_| Slot::new()),
            next_seq: 0,
            frame_size: frame_size.clamp(1, F),
            fin_requested: false,
            fin_seq: None,
            fin_acked: false,
        }
    }

    /// Back to [`new`](Self::new)'s state without touching the frame
    /// bodies (nothing reads past `staged` or a slot's `body_len`).
    pub(super) fn reset(&mut self, frame_size: usize) {
        self.staged = 0;
        for slot in self.slots.iter_mut() {
            slot.reset();
        }
        self.next_seq = 0;
        self.frame_size = frame_size.clamp(1, F);
        self.fin_requested = false;
        self.fin_seq = None;
        self.fin_acked = false;
    }

    pub(super) fn next_seq(&self) -> u16 {
        self.next_seq
    }

    #[cfg(test)]
    pub(super) fn set_next_seq(&mut self, seq: u16) {
        self.next_seq = seq;
    }

    pub(super) fn frame_size(&self) -> usize {
        self.frame_size
    }

    fn free_slots(&self) -> usize {
        self.slots.iter().filter(|s| !s.used).count()
    }

    /// Bytes `accept` would take now, framing as it goes.
    pub(super) fn capacity(&self) -> usize {
        if self.fin_requested {
            return 0;
        }
        self.free_slots() * self.frame_size + (self.frame_size - self.staged)
    }

    /// Copies local bytes into the staging buffer; returns how many fit.
    pub(super) fn stage(&mut self, data: &[u8]) -> usize {
        if self.fin_requested {
            return 0;
        }
        let n = data.len().min(self.frame_size - self.staged);
        self.staging[self.staged..self.staged + n].copy_from_slice(&data[..n]);
        self.staged += n;
        n
    }

    pub(super) fn close(&mut self) {
        self.fin_requested = true;
    }

    pub(super) fn fin_acked(&self) -> bool {
        self.fin_acked
    }

    /// Starts the next session's stream (seqs go on).
    pub(super) fn reopen(&mut self) {
        self.fin_requested = false;
        self.fin_seq = None;
        self.fin_acked = false;
    }

    /// Frames staged bytes (then the end-of-stream marker) into free slots.
    pub(super) fn fill(&mut self, compress: &mut Compress<'_>, stats: &mut Stats) {
        loop {
            let wants_fin = self.fin_requested && self.fin_seq.is_none() && self.staged == 0;
            if self.staged == 0 && !wants_fin {
                return;
            }
            let Some(slot) = self.slots.iter_mut().find(|s| !s.used) else {
                return;
            };
            let payload = &self.staging[..self.staged];
            let n = payload.len();
            slot.seq = self.next_seq;
            // n ≤ F ≤ MAX_PAYLOAD < 65536.
            slot.len = n as u16;
            slot.digest = Digest::of(payload);
            match compress(payload, &mut slot.body[..n]) {
                Some(c) => {
                    slot.compressed = true;
                    slot.body_len = c;
                    stats.compressed_frames += 1;
                }
                None => {
                    slot.compressed = false;
                    slot.body[..n].copy_from_slice(payload);
                    slot.body_len = n;
                }
            }
            slot.used = true;
            slot.due = true;
            slot.transmissions = 0;
            slot.first_sent = None;
            slot.last_sent = None;
            slot.rto_at = None;
            slot.given_up = false;
            stats.frames_built += 1;
            stats.payload_bytes_sent += n as u64;
            stats.body_bytes_sent += slot.body_len as u64;
            if n == 0 {
                self.fin_seq = Some(self.next_seq);
            }
            self.staged = 0;
            self.next_seq = self.next_seq.wrapping_add(1);
        }
    }

    /// Index of the oldest slot due for (re)transmission.
    fn next_due(&self) -> Option<usize> {
        let age = |s: &Slot<F>| self.next_seq.wrapping_sub(s.seq);
        (0..W)
            .filter(|&i| self.slots[i].used && self.slots[i].due)
            .max_by_key(|&i| age(&self.slots[i]))
    }

    /// Emits the next due frame into `buf` (which must hold
    /// `HEADER_LEN + F` bytes) and arms its timer.
    pub(super) fn transmit(
        &mut self,
        now: Instant,
        rto: u64,
        buf: &mut [u8],
    ) -> Option<(usize, bool)> {
        let i = self.next_due()?;
        let slot = &mut self.slots[i];
        let total = HEADER_LEN + slot.body_len;
        let mut frame = DataFrame::new_unchecked(&mut buf[..total]);
        frame.set_header(slot.compressed, slot.seq, slot.len, &slot.digest);
        frame
            .body_mut()
            .copy_from_slice(&slot.body[..slot.body_len]);
        let retransmission = slot.transmissions > 0;
        slot.transmissions = slot.transmissions.saturating_add(1);
        slot.due = false;
        if slot.first_sent.is_none() {
            slot.first_sent = Some(now);
        }
        slot.last_sent = Some(now);
        slot.rto_at = Some(add_micros(now, rto));
        Some((total, retransmission))
    }

    pub(super) fn on_ack(&mut self, seq: u16, now: Instant) -> AckOutcome {
        let Some(slot) = self
            .slots
            .iter_mut()
            .find(|s| s.in_flight() && s.seq == seq)
        else {
            return AckOutcome::Stale;
        };
        let rtt_sample = match (slot.transmissions, slot.first_sent) {
            (1, Some(t)) => Some(micros_between(t, now)),
            _ => None,
        };
        slot.used = false;
        slot.due = false;
        slot.rto_at = None;
        let fin = self.fin_seq == Some(seq);
        if fin {
            self.fin_acked = true;
        }
        AckOutcome::Done { rtt_sample, fin }
    }

    /// `N expected`: the frame in flight with seq `expected` (damaged at the
    /// receiver) or `expected − 1` (held, our ack lost) goes again at once,
    /// unless it was sent less than `guard` µs ago (then the `N` answers an
    /// earlier copy). Returns whether it was scheduled.
    pub(super) fn on_nack(&mut self, expected: u16, now: Instant, guard: u64) -> bool {
        let prev = expected.wrapping_sub(1);
        let Some(slot) = self
            .slots
            .iter_mut()
            .find(|s| s.in_flight() && !s.given_up && (s.seq == expected || s.seq == prev))
        else {
            return false;
        };
        if slot.due {
            return false;
        }
        if let Some(t) = slot.last_sent
            && micros_between(t, now) < guard
        {
            return false;
        }
        slot.due = true;
        slot.rto_at = None;
        true
    }

    pub(super) fn earliest_rto(&self) -> Option<Instant> {
        self.slots
            .iter()
            .filter_map(|s| if s.used { s.rto_at } else { None })
            .min_by_key(|t| micros(*t))
    }

    /// Fires expired retransmission timers. Returns how many frames were
    /// scheduled again, and calls `gave_up(seq)` for each frame past
    /// `max_retries` (0 = unlimited).
    pub(super) fn on_timeout(
        &mut self,
        now: Instant,
        max_retries: u32,
        gave_up: &mut dyn FnMut(u16),
    ) -> usize {
        let mut fired = 0;
        for slot in self.slots.iter_mut().filter(|s| s.used) {
            let Some(at) = slot.rto_at else { continue };
            if micros(at) > micros(now) {
                continue;
            }
            slot.rto_at = None;
            if max_retries != 0 && slot.transmissions > max_retries {
                slot.given_up = true;
                gave_up(slot.seq);
            } else {
                slot.due = true;
                fired += 1;
            }
        }
        fired
    }

    pub(super) fn has_due(&self) -> bool {
        self.slots.iter().any(|s| s.used && s.due)
    }

    pub(super) fn in_flight(&self) -> usize {
        self.slots.iter().filter(|s| s.used).count()
    }
}
