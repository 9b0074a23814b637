//! [`Endpoint`]: the send window, the receiver, the RTO estimator and the
//! heartbeat and silence timers, behind one sans-IO interface.

use super::recv::{Receiver, Verdict};
use super::rtt::RttEstimator;
use super::send::{AckOutcome, SendWindow};
use super::{CHECKED_ACK_LEN, Config, DEFAULT_FRAME_SIZE, DatagramError, Event, Received, Stats};
use crate::frame::{ACK_LEN, FrameType, HEADER_LEN, MAX_PAYLOAD, Repr};
use crate::time::{Instant, add_micros, earliest, micros, micros_between};
use heapless::Deque;

/// `A`/`N` datagrams waiting for `poll_transmit`. One per data frame
/// received; if the driver lets more pile up, the oldest go (an unsent ack
/// only costs a retransmission).
const CONTROL_QUEUE: usize = 8;
/// Events waiting for `poll_event`; more are dropped.
const EVENT_QUEUE: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Control {
    Ack(u16),
    Nack(u16),
}

fn ms_to_us(ms: crate::time::Milliseconds<u32>) -> u64 {
    u64::from(ms.0) * 1000
}

/// One peer's half of a udphp v0.12 tunnel: reliable, in-order, optionally
/// compressed byte transport with heartbeats. Sans-IO: see the [module
/// docs](super) for the run loop and the protocol choices.
///
/// `WINDOW` is the number of frames in flight (1 for udphp v0.12);
/// `FRAME_CAP` the largest payload a frame can carry (the slot and staging
/// size, at most [`MAX_PAYLOAD`]; [`Config::frame_size`] is clamped to it).
///
/// Methods by kind, as quinn-proto sorts them:
/// * input: [`handle_datagram`](Self::handle_datagram),
///   [`handle_timeout`](Self::handle_timeout);
/// * commands: [`send`](Self::send), [`close_send`](Self::close_send),
///   [`recv`](Self::recv);
/// * output: [`poll_transmit`](Self::poll_transmit),
///   [`poll_event`](Self::poll_event), [`poll_timeout`](Self::poll_timeout);
/// * getters: [`stats`](Self::stats), [`send_capacity`](Self::send_capacity),
///   [`recv_available`](Self::recv_available),
///   [`peer_finished`](Self::peer_finished),
///   [`send_finished`](Self::send_finished), …
///
/// Call order: after any input or command, drain `poll_transmit` until
/// `None` and `poll_event` until `None`, then sleep until `poll_timeout`
/// (or I/O) and call `handle_timeout(now)`. All of them may be called at
/// any time; early or repeated calls are harmless.
pub struct Endpoint<const WINDOW: usize = 1, const FRAME_CAP: usize = DEFAULT_FRAME_SIZE> {
    config: Config,
    send: SendWindow<WINDOW, FRAME_CAP>,
    recv: Receiver,
    rtt: RttEstimator,
    control: Deque<Control, CONTROL_QUEUE>,
    events: Deque<Event, EVENT_QUEUE>,
    heartbeat_at: Instant,
    heartbeat_due: bool,
    last_heard: Instant,
    heard_ever: bool,
    heartbeats_off: bool,
    silent: bool,
    peer_finished_reported: bool,
    failed: bool,
    stats: Stats,
    #[cfg(feature = "deflate")]
    deflater: Option<crate::compress::Deflater>,
}

impl<const WINDOW: usize, const FRAME_CAP: usize> Endpoint<WINDOW, FRAME_CAP> {
    /// Largest datagram `poll_transmit` writes: the size of its buffer.
    pub const MAX_DATAGRAM: usize = HEADER_LEN + FRAME_CAP;

    /// A fresh endpoint; seqs start at 0 both ways, as udphp.py's do. The
    /// first heartbeat is due at once (it opens our NAT mapping).
    pub fn new(config: Config, now: Instant) -> Self {
        const {
            assert!(WINDOW >= 1, "WINDOW must be at least 1");
            assert!(FRAME_CAP >= 1 && FRAME_CAP <= MAX_PAYLOAD);
        };
        let rtt = RttEstimator::new(
            ms_to_us(config.rto_initial),
            ms_to_us(config.rto_min),
            ms_to_us(config.rto_max),
        );
        let mut ep = Endpoint {
            config,
            send: SendWindow::new(config.frame_size),
            recv: Receiver::new(),
            rtt,
            control: Deque::new(),
            events: Deque::new(),
            heartbeat_at: add_micros(now, ms_to_us(config.heartbeat_interval)),
            heartbeat_due: true,
            last_heard: now,
            heard_ever: false,
            heartbeats_off: false,
            silent: false,
            peer_finished_reported: false,
            failed: false,
            stats: Stats::default(),
            #[cfg(feature = "deflate")]
            deflater: config
                .compress
                .then(|| crate::compress::Deflater::new(crate::compress::DEFAULT_LEVEL)),
        };
        ep.config.frame_size = ep.send.frame_size();
        ep.sync_rtt_stats();
        ep
    }

    /// Makes this endpoint what [`new`](Self::new) would return, in place:
    /// a caller that keeps the endpoint in a `static` (a microcontroller)
    /// starts a new tunnel without building a second one (tens of KB) on
    /// the stack. The buffers' old bytes stay but are never read again.
    pub fn reset(&mut self, config: Config, now: Instant) {
        self.config = config;
        self.send.reset(config.frame_size);
        self.recv.reset();
        self.rtt = RttEstimator::new(
            ms_to_us(config.rto_initial),
            ms_to_us(config.rto_min),
            ms_to_us(config.rto_max),
        );
        self.control.clear();
        self.events.clear();
        self.heartbeat_at = add_micros(now, ms_to_us(config.heartbeat_interval));
        self.heartbeat_due = true;
        self.last_heard = now;
        self.heard_ever = false;
        self.silent = false;
        self.peer_finished_reported = false;
        self.failed = false;
        self.stats = Stats::default();
        #[cfg(feature = "deflate")]
        {
            self.deflater = config
                .compress
                .then(|| crate::compress::Deflater::new(crate::compress::DEFAULT_LEVEL));
        }
        self.config.frame_size = self.send.frame_size();
        self.sync_rtt_stats();
    }

    /// Stops (or restarts) this endpoint's own heartbeats, for a caller
    /// that sends heartbeats itself (the tunnel machine, whose heartbeats
    /// carry capabilities).
    pub fn set_heartbeats(&mut self, on: bool) {
        self.heartbeats_off = !on;
    }

    /// The configuration in use (`frame_size` as clamped).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Counters and RTT estimates.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    // ---- input ----

    /// Handles one datagram from the peer (the driver filters by address).
    ///
    /// Every datagram, valid or not, counts as liveness. A malformed or
    /// damaged one is an `Err`, counted in [`Stats::bad`]; when it was the
    /// expected data frame, `N expected` is queued as udphp.py does. Never
    /// panics, never fatal.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        datagram: &[u8],
    ) -> Result<Received, DatagramError> {
        self.stats.datagrams_received += 1;
        self.stats.wire_bytes_received += datagram.len() as u64;
        self.heard(now);
        let result = self.dispatch(now, datagram);
        if let Err(e) = result {
            self.stats.bad.count(e);
        }
        result
    }

    fn dispatch(&mut self, now: Instant, datagram: &[u8]) -> Result<Received, DatagramError> {
        match Repr::parse(datagram)? {
            Repr::Heartbeat(h) => {
                self.stats.heartbeats_received += 1;
                Ok(Received::Heartbeat { role: h.role })
            }
            Repr::Ack(seq) => {
                check_ack(datagram, seq)?;
                Ok(self.on_ack(now, seq))
            }
            Repr::Nack(expected) => {
                check_ack(datagram, expected)?;
                self.stats.nacks_received += 1;
                // One fast retransmit per half SRTT: a second N sooner
                // answers a copy sent before the last one.
                let guard = self.rtt.srtt().map_or(0, |s| s / 2);
                let retransmit = !self.failed && self.send.on_nack(expected, now, guard);
                if retransmit {
                    self.stats.fast_retransmits += 1;
                }
                Ok(Received::Nack {
                    expected,
                    retransmit,
                })
            }
            Repr::Data(d) => {
                let seq = d.seq;
                match self.recv.on_data(&d) {
                    Verdict::Accepted { len } => {
                        self.stats.data_frames_received += 1;
                        self.stats.payload_bytes_received += len as u64;
                        self.queue_control(Control::Ack(seq));
                        self.check_peer_finished();
                        Ok(Received::Data { seq, len })
                    }
                    Verdict::Older => {
                        self.stats.duplicates_received += 1;
                        self.queue_control(Control::Ack(seq));
                        Ok(Received::Duplicate { seq })
                    }
                    Verdict::Future => {
                        self.stats.future_frames += 1;
                        self.queue_control(Control::Nack(self.recv.expected()));
                        Ok(Received::Future { seq })
                    }
                    Verdict::NoRoom => {
                        self.stats.no_room += 1;
                        Ok(Received::NoRoom { seq })
                    }
                    Verdict::Damaged(e) => {
                        self.queue_control(Control::Nack(self.recv.expected()));
                        Err(e)
                    }
                }
            }
        }
    }

    fn on_ack(&mut self, now: Instant, seq: u16) -> Received {
        match self.send.on_ack(seq, now) {
            AckOutcome::Stale => {
                self.stats.stale_acks += 1;
                Received::StaleAck { seq }
            }
            AckOutcome::Done { rtt_sample, fin } => {
                self.stats.acks_received += 1;
                match rtt_sample {
                    Some(r) => self.rtt.sample(r),
                    None => self.rtt.end_backoff(),
                }
                self.sync_rtt_stats();
                if fin {
                    self.push_event(Event::SendFinished);
                }
                // The window has room: the next frame is due at once.
                self.fill();
                Received::Ack { seq }
            }
        }
    }

    /// Fires whatever timers are due at `now`: retransmissions (with RTO
    /// backoff), the heartbeat, the silence check.
    pub fn handle_timeout(&mut self, now: Instant) {
        let max_retries = self.config.max_retries;
        let mut gave_up = heapless::Vec::<u16, WINDOW>::new();
        let fired = self.send.on_timeout(now, max_retries, &mut |seq| {
            // At most one per slot, so the Vec never overflows.
            let _ = gave_up.push(seq);
        });
        if fired > 0 {
            self.stats.timeouts += fired as u64;
            self.rtt.back_off();
            self.sync_rtt_stats();
        }
        for seq in gave_up {
            self.failed = true;
            self.push_event(Event::RetransmitLimit { seq });
        }
        if micros(now) >= micros(self.heartbeat_at) {
            self.heartbeat_due = true;
            self.heartbeat_at = add_micros(now, ms_to_us(self.config.heartbeat_interval));
        }
        if !self.silent
            && micros_between(self.last_heard, now) >= ms_to_us(self.config.silence_timeout)
        {
            self.silent = true;
            self.push_event(Event::PeerSilent);
        }
    }

    // ---- commands ----

    /// Takes bytes from the local TCP side while the window and staging
    /// buffer have room; returns how many were taken (0 once
    /// [`close_send`](Self::close_send) was called or a frame was given up).
    /// Bytes are framed at once when a slot is free, else they wait in the
    /// staging buffer and go the moment an ack frees a slot.
    pub fn send(&mut self, data: &[u8]) -> usize {
        if self.failed {
            return 0;
        }
        let mut taken = 0;
        loop {
            let n = self.send.stage(&data[taken..]);
            taken += n;
            self.fill();
            if n == 0 || taken == data.len() {
                return taken;
            }
        }
    }

    /// Local end of stream: once every byte given to `send` is framed and
    /// the window has room, an empty data frame tells the peer.
    pub fn close_send(&mut self) {
        self.send.close();
        self.fill();
    }

    /// Hands out the peer's bytes in order; returns how many were written.
    /// Freeing room may queue `N expected` to wake a sender whose frame we
    /// refused for lack of room.
    pub fn recv(&mut self, out: &mut [u8]) -> usize {
        let n = self.recv.read(out);
        if self.recv.take_room_opened() {
            self.queue_control(Control::Nack(self.recv.expected()));
        }
        self.check_peer_finished();
        n
    }

    /// The peer's bytes held in order, without taking them; pass how many
    /// were used to [`recv_consume`](Self::recv_consume).
    pub fn recv_peek(&self) -> &[u8] {
        self.recv.peek()
    }

    /// Drops `n` bytes that [`recv_peek`](Self::recv_peek) showed, as
    /// [`recv`](Self::recv) would have handed them out.
    pub fn recv_consume(&mut self, n: usize) {
        self.recv.consume(n);
        if self.recv.take_room_opened() {
            self.queue_control(Control::Nack(self.recv.expected()));
        }
        self.check_peer_finished();
    }

    /// Starts the next session once this one is over both ways
    /// ([`peer_finished`](Self::peer_finished) and
    /// [`send_finished`](Self::send_finished)): the streams reopen and
    /// sequence numbers go on, so the peer sees one continuous frame
    /// stream. Returns `false` (and changes nothing) while either direction
    /// is still open.
    pub fn next_session(&mut self) -> bool {
        if !(self.peer_finished() && self.send_finished()) {
            return false;
        }
        self.send.reopen();
        self.recv.reopen();
        self.peer_finished_reported = false;
        // A frame of the next session may have been refused while the
        // previous one was closing: ask for it again at once.
        if self.recv.take_room_opened() {
            self.queue_control(Control::Nack(self.recv.expected()));
        }
        true
    }

    // ---- output ----

    /// Writes the next datagram for the peer into `buf` and returns its
    /// length, or `None` when nothing is due. Acks go first, then data
    /// frames (oldest first), then the heartbeat.
    ///
    /// # Panics
    /// If `buf` is shorter than [`MAX_DATAGRAM`](Self::MAX_DATAGRAM).
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        assert!(
            buf.len() >= Self::MAX_DATAGRAM,
            "poll_transmit needs a buffer of MAX_DATAGRAM bytes"
        );
        let n = if let Some(c) = self.control.pop_front() {
            let (kind, seq) = match c {
                Control::Ack(seq) => {
                    self.stats.acks_sent += 1;
                    (FrameType::Ack, seq)
                }
                Control::Nack(seq) => {
                    self.stats.nacks_sent += 1;
                    (FrameType::Nack, seq)
                }
            };
            buf[0] = kind as u8;
            buf[1..3].copy_from_slice(&seq.to_be_bytes());
            buf[3..5].copy_from_slice(&(!seq).to_be_bytes());
            CHECKED_ACK_LEN
        } else if let Some((n, retransmission)) = (!self.failed)
            .then(|| self.send.transmit(now, self.rtt.rto(), buf))
            .flatten()
        {
            self.stats.data_frames_sent += 1;
            if retransmission {
                self.stats.retransmits += 1;
            }
            n
        } else if self.heartbeat_due && !self.heartbeats_off {
            self.heartbeat_due = false;
            self.stats.heartbeats_sent += 1;
            let g = self.config.role.greeting();
            buf[..g.len()].copy_from_slice(g);
            g.len()
        } else {
            return None;
        };
        self.stats.datagrams_sent += 1;
        self.stats.wire_bytes_sent += n as u64;
        Some(n)
    }

    /// The next instant `handle_timeout` has work: a retransmission, the
    /// heartbeat, or the silence check. Datagrams already due are not
    /// timers: drain `poll_transmit` first.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let silence = (!self.silent)
            .then(|| add_micros(self.last_heard, ms_to_us(self.config.silence_timeout)));
        let rto = if self.failed {
            None
        } else {
            self.send.earliest_rto()
        };
        earliest(earliest(rto, Some(self.heartbeat_at)), silence)
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // ---- getters ----

    /// Bytes [`send`](Self::send) would take now.
    pub fn send_capacity(&self) -> usize {
        if self.failed { 0 } else { self.send.capacity() }
    }

    /// Frames built and not yet acked.
    pub fn frames_in_flight(&self) -> usize {
        self.send.in_flight()
    }

    /// Whether a datagram is waiting for `poll_transmit`.
    pub fn has_transmit(&self) -> bool {
        !self.control.is_empty()
            || (self.heartbeat_due && !self.heartbeats_off)
            || (!self.failed && self.send.has_due())
    }

    /// Peer bytes [`recv`](Self::recv) can hand out now.
    pub fn recv_available(&self) -> usize {
        self.recv.available()
    }

    /// The peer ended its stream and every byte before the end was handed
    /// out by `recv`.
    pub fn peer_finished(&self) -> bool {
        self.recv.fin() && self.recv.available() == 0
    }

    /// Our end-of-stream frame was acked.
    pub fn send_finished(&self) -> bool {
        self.send.fin_acked()
    }

    /// A frame hit `max_retries`; no more data is sent.
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// Whether [`Event::PeerSilent`] holds (nothing heard since).
    pub fn is_peer_silent(&self) -> bool {
        self.silent
    }

    /// Seq the next new frame will carry.
    pub fn next_send_seq(&self) -> u16 {
        self.send.next_seq()
    }

    /// Seq the receiver expects next.
    pub fn expected_seq(&self) -> u16 {
        self.recv.expected()
    }

    /// Tests start near the 65535 → 0 wrap.
    #[cfg(test)]
    pub(crate) fn set_seqs(&mut self, next_send: u16, expected: u16) {
        self.send.set_next_seq(next_send);
        self.recv.set_expected(expected);
    }

    // ---- internals ----

    fn fill(&mut self) {
        #[cfg(feature = "deflate")]
        let mut compress = |p: &[u8], out: &mut [u8]| {
            self.deflater
                .as_mut()
                .and_then(|d| d.compress_worthwhile(p, out))
        };
        #[cfg(not(feature = "deflate"))]
        let mut compress = |_: &[u8], _: &mut [u8]| None;
        self.send.fill(&mut compress, &mut self.stats);
    }

    fn heard(&mut self, now: Instant) {
        self.last_heard = now;
        if !self.heard_ever || self.silent {
            self.heard_ever = true;
            self.silent = false;
            self.push_event(Event::PeerHeard);
        }
    }

    fn check_peer_finished(&mut self) {
        if !self.peer_finished_reported && self.peer_finished() {
            self.peer_finished_reported = true;
            self.push_event(Event::PeerFinished);
        }
    }

    fn queue_control(&mut self, c: Control) {
        if self.control.iter().any(|q| *q == c) {
            return;
        }
        if self.control.is_full() {
            self.control.pop_front();
        }
        let _ = self.control.push_back(c);
    }

    fn push_event(&mut self, e: Event) {
        let _ = self.events.push_back(e);
    }

    fn sync_rtt_stats(&mut self) {
        self.stats.srtt_us = self.rtt.srtt();
        self.stats.rttvar_us = self.rtt.rttvar();
        self.stats.rto_us = self.rtt.rto();
    }
}

/// An `A`/`N` is either udphp's 3 bytes or ours with `!seq` appended.
fn check_ack(datagram: &[u8], seq: u16) -> Result<(), DatagramError> {
    match datagram.len() {
        ACK_LEN => Ok(()),
        CHECKED_ACK_LEN if datagram[3..5] == (!seq).to_be_bytes() => Ok(()),
        _ => Err(DatagramError::BadAck),
    }
}
