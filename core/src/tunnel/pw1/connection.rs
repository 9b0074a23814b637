//! The pw1 connection machine. See the module docs of [`super`] for the
//! protocol and the call order.

use super::congestion::{AckedPacket, Controller, LostPacket};
use super::pool::{CHUNK_CAP, ChunkState, List, NONE, Pool};
use super::ranges::RangeSet;
use super::recovery::{Control, MAX_CONTROLS, PACKET_THRESHOLD, Rtt, SentPacket};
use super::stream::{SlotState, Stream, code};
use super::{
    Cc, Config, Event, PacketError, PeerParams, Stats, Storage, StreamError, StreamRead, check,
};
use crate::frame::pw1::{
    self as wire, ACK_MIN_LEN, AckFrame, Frame, Frames, Header, STREAM_OVERHEAD,
};
use crate::time::{Instant, add_micros, earliest, micros, micros_between};

/// Room kept in a data packet for ACK and control frames.
const CONTROL_ROOM: usize = 40;
/// Acked/lost packets handed to the controller per call.
const CC_BATCH: usize = 32;
/// ACK after this many ack-eliciting packets at the latest.
const ACK_EVERY: u32 = 2;
/// PTOs in a row that count as persistent congestion.
const PERSISTENT_PTOS: u32 = 3;

/// Timers, indexing [`Connection::timers`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timer {
    /// Delayed ACK.
    Ack = 0,
    /// Loss detection: time threshold or probe timeout.
    Loss = 1,
    /// Keepalive PING.
    Keepalive = 2,
}
const TIMERS: usize = 3;

/// One side of a pw1 connection over caller storage.
pub struct Connection<'a> {
    cfg: Config,
    local_token: u64,
    peer: PeerParams,
    send_pool: Pool<'a>,
    recv_pool: Pool<'a>,
    sent: &'a mut [SentPacket],
    streams: &'a mut [Stream],
    timers: [Option<Instant>; TIMERS],

    // ---- sending ----
    next_pn: u64,
    /// No packet below this is still waiting for an ack.
    oldest_pn: u64,
    largest_acked: Option<u64>,
    bytes_in_flight: usize,
    last_eliciting_sent: Option<Instant>,
    rtt: Rtt,
    pto_count: u32,
    probes_due: u8,
    cc: Cc,
    pacer: super::pacer::Pacer,
    retransmit: List,
    rr_cursor: usize,

    // ---- receiving ----
    received: RangeSet,
    largest_received_at: Option<Instant>,
    unacked_eliciting: u32,
    ack_now: bool,

    // ---- streams ----
    next_local_id: u32,
    /// Highest id we may open (peer's MAX_STREAMS).
    peer_stream_limit: u32,
    /// Highest id the peer has opened.
    highest_remote_id: u32,
    /// Highest id the peer may open (our MAX_STREAMS).
    remote_stream_limit: u32,
    max_streams_dirty: bool,
    /// Σ over live streams of (granted − consumed): receive chunks promised.
    committed: u32,
    events_pending: usize,

    /// The latest `now` seen (for `poll_timeout`, which takes none).
    now: Instant,
    close: Option<u16>,
    close_sent: u8,
    peer_closed: Option<u16>,
    stats: Stats,
}

impl<'a> Connection<'a> {
    /// A connection to the peer described by `peer` (its token and
    /// limits, from its heartbeat), started at `now`.
    pub fn new(
        cfg: Config,
        storage: Storage<'a>,
        local_token: u64,
        peer: PeerParams,
        now: Instant,
    ) -> Result<Self, super::ConfigError> {
        cfg.validate(&storage)?;
        let max_streams = cfg.max_streams_for(&storage);
        let Storage {
            send,
            recv,
            sent,
            streams,
        } = storage;
        for s in sent.iter_mut() {
            *s = SentPacket::EMPTY;
        }
        for s in streams.iter_mut() {
            *s = Stream::EMPTY;
        }
        let mtu = cfg.max_datagram.min(usize::from(peer.max_datagram)) as u64;
        let mut c = Connection {
            cfg,
            local_token,
            peer,
            send_pool: Pool::new(send),
            recv_pool: Pool::new(recv),
            sent,
            streams,
            timers: [None; TIMERS],
            next_pn: 0,
            oldest_pn: 0,
            largest_acked: None,
            bytes_in_flight: 0,
            last_eliciting_sent: None,
            rtt: Rtt::new(),
            pto_count: 0,
            probes_due: 0,
            cc: super::new_cc(cfg.congestion, mtu as usize),
            pacer: super::pacer::Pacer::new(mtu as usize),
            retransmit: List::EMPTY,
            rr_cursor: 0,
            received: RangeSet::new(),
            largest_received_at: None,
            unacked_eliciting: 0,
            ack_now: false,
            next_local_id: 1,
            peer_stream_limit: u32::from(peer.max_streams),
            highest_remote_id: 0,
            remote_stream_limit: if cfg.accept_streams {
                u32::from(max_streams)
            } else {
                0
            },
            max_streams_dirty: false,
            committed: 0,
            events_pending: 0,
            now,
            close: None,
            close_sent: 0,
            peer_closed: None,
            stats: Stats::default(),
        };
        c.arm_keepalive(now);
        Ok(c)
    }

    /// Ends the connection and gives its storage back (for a new
    /// connection after the peer restarted).
    pub fn into_storage(self) -> Storage<'a> {
        Storage {
            send: self.send_pool.into_inner(),
            recv: self.recv_pool.into_inner(),
            sent: self.sent,
            streams: self.streams,
        }
    }

    // ---- getters ----

    /// Counters and estimates.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats;
        s.srtt_us = self.rtt.sampled.then_some(self.rtt.smoothed);
        s.min_rtt_us = self.rtt.sampled.then_some(self.rtt.min);
        s.cwnd = self.cc.cwnd();
        s.pacing_rate = self.cc.pacing_rate();
        s.bytes_in_flight = self.bytes_in_flight;
        s.streams = self.streams.iter().filter(|s| s.is_live()).count();
        s.cc = Some(self.cc.stats());
        s
    }

    /// Our incarnation token (what the peer's packets must carry).
    pub fn local_token(&self) -> u64 {
        self.local_token
    }

    /// The peer's parameters.
    pub fn peer(&self) -> PeerParams {
        self.peer
    }

    /// Whether a stream may be opened now ([`open_stream`](Self::open_stream)).
    pub fn can_open(&self) -> bool {
        self.close.is_none()
            && self.next_local_id <= self.peer_stream_limit
            && self.free_slot().is_some()
            && self.committed + self.reserve() + u32::from(self.cfg.initial_chunks)
                <= self.recv_pool.capacity() as u32
    }

    /// Live streams (open or being reset).
    pub fn open_streams(&self) -> usize {
        self.streams.iter().filter(|s| s.is_live()).count()
    }

    /// The largest packet number received so far.
    pub fn largest_received(&self) -> Option<u64> {
        self.received.largest()
    }

    /// Whether the peer sent CLOSE.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed.is_some()
    }

    /// Whether [`close`](Self::close) was called or the peer closed, and
    /// nothing is left to send.
    pub fn is_closed(&self) -> bool {
        self.peer_closed.is_some() || (self.close.is_some() && self.close_sent >= 3)
    }

    // ---- input ----

    /// Handles one datagram that starts like a pw1 packet. Returns the
    /// packet number when the packet was accepted (well-formed, for this
    /// incarnation, not a replay): only such a packet may move the peer's
    /// address.
    pub fn handle_packet(&mut self, now: Instant, datagram: &[u8]) -> Result<u64, PacketError> {
        self.stats.packets_received += 1;
        self.stats.bytes_received += datagram.len() as u64;
        let r = self.receive(now, datagram);
        if let Err(e) = r {
            self.stats.bad.count(e);
        }
        r
    }

    fn receive(&mut self, now: Instant, datagram: &[u8]) -> Result<u64, PacketError> {
        self.now = now;
        if self.close.is_some() {
            // Closing: whatever the peer still sends gets one more ACK +
            // CLOSE (the first ones may have been lost).
            self.close_sent = self.close_sent.min(2);
        }
        let body = check::verify(datagram).ok_or(PacketError::Check)?;
        let header = Header::parse(body).map_err(|_| PacketError::Malformed)?;
        if header.token != self.local_token {
            return Err(PacketError::WrongToken);
        }
        let pn = header.packet_number;
        let payload = &body[wire::HEADER_LEN..];
        let eliciting = Frames::validate(payload).map_err(|_| PacketError::Malformed)?;
        // Below the oldest number remembered is too old to tell from a
        // replay: refused (the sender retransmits its data anew).
        if self.received.contains(pn) || self.received.smallest().is_some_and(|s| pn < s) {
            // A duplicate (or too old to tell): its ack may have been lost.
            if eliciting {
                self.ack_now = true;
            }
            return Err(PacketError::Duplicate);
        }
        let mut stored_all = true;
        for frame in Frames::new(payload).flatten() {
            match frame {
                Frame::Padding | Frame::Ping => {}
                Frame::Ack(a) => self.on_ack_frame(now, &a),
                Frame::ResetStream { stream, .. } | Frame::StopSending { stream, .. } => {
                    self.on_peer_reset(stream)
                }
                Frame::MaxStreamChunks { stream, max } => {
                    if let Some(i) = self.slot_of(stream) {
                        let s = &mut self.streams[i];
                        s.max_chunks = s.max_chunks.max(max);
                    }
                }
                Frame::MaxStreams { max } => {
                    self.peer_stream_limit = self.peer_stream_limit.max(max);
                }
                Frame::Close { code } => {
                    self.peer_closed = Some(code);
                }
                Frame::Stream {
                    stream,
                    offset,
                    fin,
                    data,
                } => {
                    if !self.on_stream_frame(stream, offset, fin, data) {
                        stored_all = false;
                    }
                }
            }
        }
        if self.peer_closed.is_some() {
            // The peer is gone: what is not finished now never will be —
            // except a stream that has everything already (all our bytes
            // acked, all of the peer's held up to its FIN): it is only
            // waiting for the local side to read, and finishes normally.
            for i in 0..self.streams.len() {
                if !self.streams[i].is_live() {
                    continue;
                }
                let s = self.streams[i];
                if s.state == SlotState::Open && s.send_done() && self.recv_complete(i) {
                    continue;
                }
                if s.state == SlotState::Open {
                    self.reset_slot(i, code::CLOSING, false);
                }
                self.streams[i].reset_done = true;
                self.check_done(i);
            }
        }
        if !stored_all {
            // Never ack what we could not keep: the sender sends it again.
            self.stats.no_room += 1;
            return Err(PacketError::NoRoom);
        }
        let newest = self.received.largest().is_none_or(|l| pn > l);
        if self
            .received
            .largest()
            .is_some_and(|l| pn + 1 < l || pn > l + 1)
            && eliciting
        {
            // Out of order (a gap before it, or a late one): ack at once
            // so the sender's loss detection sees it.
            self.ack_now = true;
        }
        self.received.insert(pn);
        if newest {
            self.largest_received_at = Some(now);
        }
        if eliciting {
            self.unacked_eliciting += 1;
            if self.unacked_eliciting >= ACK_EVERY {
                self.ack_now = true;
            } else if self.timers[Timer::Ack as usize].is_none() {
                self.timers[Timer::Ack as usize] =
                    Some(add_micros(now, u64::from(self.cfg.max_ack_delay_us)));
            }
        }
        Ok(pn)
    }

    /// Fires due timers: delayed ack, loss detection / probe timeout,
    /// keepalive.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        let due = |t: Option<Instant>| t.is_some_and(|t| micros(t) <= micros(now));
        if due(self.timers[Timer::Ack as usize]) {
            self.timers[Timer::Ack as usize] = None;
            self.ack_now = true;
        }
        if due(self.timers[Timer::Loss as usize]) {
            self.timers[Timer::Loss as usize] = None;
            self.on_loss_timer(now);
        }
        if due(self.timers[Timer::Keepalive as usize]) {
            self.timers[Timer::Keepalive as usize] = None;
            // A PING keeps NAT mappings alive and proves the path.
            self.probes_due = self.probes_due.max(1);
        }
    }

    // ---- streams: commands ----

    /// Opens a stream (the `-l` side, for an accepted local client).
    pub fn open_stream(&mut self) -> Result<u32, StreamError> {
        if !self.can_open() {
            return Err(StreamError::Limit);
        }
        let slot = self.free_slot().ok_or(StreamError::Limit)?;
        let id = self.next_local_id;
        self.next_local_id += 1;
        self.streams[slot] = Stream::open(
            id,
            false,
            u32::from(self.peer.initial_chunks),
            u32::from(self.cfg.initial_chunks),
        );
        self.committed += u32::from(self.cfg.initial_chunks);
        // An empty chunk at offset 0 opens the stream at the peer even if
        // the local client sends nothing (a service that speaks first).
        if let Some(c) = self.send_pool.alloc(id, 0, ChunkState::Queued) {
            let s = &mut self.streams[slot];
            s.outstanding += 1;
            let mut l = s.unsent;
            self.send_pool.push(&mut l, c);
            self.streams[slot].unsent = l;
        }
        self.stats.streams_opened += 1;
        Ok(id)
    }

    /// Bytes [`stream_send`](Self::stream_send) takes now on stream `id`.
    pub fn stream_send_capacity(&self, id: u32) -> usize {
        let Some(i) = self.slot_of(id) else { return 0 };
        let s = &self.streams[i];
        if s.state != SlotState::Open || s.fin_queued || self.close.is_some() {
            return 0;
        }
        let cap = self.chunk_payload();
        let mut credit = s.max_chunks.saturating_sub(s.chunks_created) as usize;
        // The open tail chunk takes bytes first (it is charged one credit
        // when its first byte goes in, exactly as `stream_send` does).
        let mut tail_room = 0;
        if s.unsent.tail != NONE {
            let c = self.send_pool.get(s.unsent.tail);
            if c.state == ChunkState::Queued && !c.fin {
                if c.len > 0 {
                    tail_room = cap - usize::from(c.len);
                } else if credit > 0 {
                    tail_room = cap;
                    credit -= 1;
                }
            }
        }
        let own = self
            .per_stream_send()
            .saturating_sub(s.outstanding as usize);
        tail_room + credit.min(self.send_pool.free()).min(own) * cap
    }

    /// Takes bytes from the local side for stream `id`; returns how many
    /// (at most [`stream_send_capacity`](Self::stream_send_capacity)).
    pub fn stream_send(&mut self, id: u32, data: &[u8]) -> Result<usize, StreamError> {
        let i = self.slot_of(id).ok_or(StreamError::Unknown)?;
        if self.streams[i].state != SlotState::Open {
            return Err(StreamError::Reset);
        }
        if self.streams[i].fin_queued {
            return Err(StreamError::Finished);
        }
        let cap = self.chunk_payload();
        let per_stream = self.per_stream_send() as u32;
        let mut taken = 0;
        while taken < data.len() {
            let s = self.streams[i];
            let tail = s.unsent.tail;
            if tail != NONE {
                let c = self.send_pool.get_mut(tail);
                let charge = c.len == 0;
                if c.state == ChunkState::Queued
                    && !c.fin
                    && usize::from(c.len) < cap
                    && (!charge || s.chunks_created < s.max_chunks)
                {
                    let at = usize::from(c.len);
                    let n = (cap - at).min(data.len() - taken);
                    c.data[at..at + n].copy_from_slice(&data[taken..taken + n]);
                    c.len += n as u16;
                    taken += n;
                    self.streams[i].send_offset += n as u64;
                    // An empty opening chunk that got data now costs credit.
                    if at == 0 {
                        self.streams[i].chunks_created += 1;
                    }
                    continue;
                }
            }
            if s.chunks_created >= s.max_chunks || s.outstanding >= per_stream {
                break;
            }
            let Some(c) = self.send_pool.alloc(id, s.send_offset, ChunkState::Queued) else {
                break;
            };
            let st = &mut self.streams[i];
            st.outstanding += 1;
            let mut l = st.unsent;
            self.send_pool.push(&mut l, c);
            self.streams[i].unsent = l;
        }
        self.stats.stream_bytes_sent += taken as u64;
        Ok(taken)
    }

    /// The local side of stream `id` reached end of stream: a FIN follows
    /// the bytes already taken.
    pub fn stream_finish(&mut self, id: u32) -> Result<(), StreamError> {
        let i = self.slot_of(id).ok_or(StreamError::Unknown)?;
        let s = self.streams[i];
        if s.state != SlotState::Open {
            return Err(StreamError::Reset);
        }
        if s.fin_queued {
            return Ok(());
        }
        let tail = s.unsent.tail;
        if tail != NONE && self.send_pool.get(tail).state == ChunkState::Queued {
            self.send_pool.get_mut(tail).fin = true;
        } else {
            let c = self
                .send_pool
                .alloc(id, s.send_offset, ChunkState::Queued)
                .ok_or(StreamError::NoMemory)?;
            self.send_pool.get_mut(c).fin = true;
            let st = &mut self.streams[i];
            st.outstanding += 1;
            let mut l = st.unsent;
            self.send_pool.push(&mut l, c);
            self.streams[i].unsent = l;
        }
        self.streams[i].fin_queued = true;
        Ok(())
    }

    /// Abandons stream `id` both ways (local failure, refused service):
    /// a RESET_STREAM goes to the peer, unsent and unread data is dropped.
    pub fn stream_reset(&mut self, id: u32, reason: u16) {
        if let Some(i) = self.slot_of(id)
            && self.streams[i].state == SlotState::Open
        {
            self.reset_slot(i, reason, true);
        }
    }

    /// What stream `id` has for the local side. Data is contiguous stream
    /// bytes; pass how many were written to [`stream_consume`](Self::stream_consume).
    pub fn stream_peek(&self, id: u32) -> StreamRead<'_> {
        let Some(i) = self.slot_of(id) else {
            return StreamRead::Unknown;
        };
        let s = &self.streams[i];
        match s.state {
            SlotState::Open => {}
            SlotState::Closing { reset: false } => return StreamRead::Finished,
            _ => return StreamRead::Reset,
        }
        if s.reassembly.head != NONE {
            let c = self.recv_pool.get(s.reassembly.head);
            let at = c.offset + u64::from(c.read);
            if at == s.recv_offset {
                return StreamRead::Data(&c.data[usize::from(c.read)..usize::from(c.len)]);
            }
        }
        if s.final_offset == Some(s.recv_offset) {
            StreamRead::Finished
        } else {
            StreamRead::Blocked
        }
    }

    /// `n` bytes of what [`stream_peek`](Self::stream_peek) showed were
    /// written to the local side.
    pub fn stream_consume(&mut self, id: u32, n: usize) {
        let Some(i) = self.slot_of(id) else { return };
        let head = self.streams[i].reassembly.head;
        if head == NONE || self.streams[i].state != SlotState::Open {
            return;
        }
        let c = self.recv_pool.get_mut(head);
        let n = n.min(usize::from(c.len - c.read));
        c.read += n as u16;
        let done = c.read == c.len;
        self.streams[i].recv_offset += n as u64;
        self.stats.stream_bytes_received += n as u64;
        if done {
            let mut l = self.streams[i].reassembly;
            self.recv_pool.pop(&mut l);
            self.streams[i].reassembly = l;
            self.recv_pool.release(head);
            let s = &mut self.streams[i];
            s.stored -= 1;
            s.consumed += 1;
            self.committed = self.committed.saturating_sub(1);
            self.grant(i);
            self.grant_blocked();
        }
        self.check_done(i);
    }

    /// Closes the connection: CLOSE is sent (a few times) and every stream
    /// is given up. [`is_closed`](Self::is_closed) says when it went.
    pub fn close(&mut self, code: u16) {
        if self.close.is_none() {
            self.close = Some(code);
        }
    }

    // ---- output ----

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        if self.events_pending == 0 {
            return None;
        }
        for i in 0..self.streams.len() {
            let s = &mut self.streams[i];
            if let SlotState::Closing { reset } = s.state {
                let id = s.id;
                *s = Stream::EMPTY;
                self.events_pending -= 1;
                return Some(if reset {
                    Event::StreamReset(id)
                } else {
                    Event::StreamClosed(id)
                });
            }
        }
        self.events_pending = 0;
        None
    }

    /// Streams the peer opened that the driver has not been told of yet:
    /// each is reported once by [`poll_opened`](Self::poll_opened).
    pub fn poll_opened(&mut self) -> Option<u32> {
        for s in self.streams.iter_mut() {
            if s.state == SlotState::Open && s.remote && !s.reported {
                s.reported = true;
                return Some(s.id);
            }
        }
        None
    }

    /// The earliest instant [`handle_timeout`](Self::handle_timeout) or
    /// [`poll_transmit`](Self::poll_transmit) has work (pacing included).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = None;
        for x in self.timers {
            t = earliest(t, x);
        }
        if self.has_data_to_send() && self.cwnd_allows() {
            if let Some(at) = self
                .pacer
                .send_at(self.now, self.mtu(), self.cc.pacing_rate())
            {
                t = earliest(t, Some(at));
            } else {
                t = earliest(t, Some(self.now));
            }
        }
        t
    }

    /// Writes the next datagram into `buf` (at least the configured
    /// `max_datagram` bytes) and returns its length, or `None` when nothing
    /// is due now.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        self.now = now;
        let mtu = self.mtu().min(buf.len());
        let end = mtu.checked_sub(check::LEN)?;
        if end < wire::HEADER_LEN + ACK_MIN_LEN + 8 {
            return None;
        }
        let pn = self.next_pn;
        // The sent ring must have a free slot for an ack-eliciting packet.
        let ring_ok = self.next_pn - self.oldest_pn < self.sent.len() as u64;
        Header {
            key_phase: false,
            token: self.peer.token,
            packet_number: pn,
        }
        .emit(buf)
        .ok()?;
        let mut at = wire::HEADER_LEN;
        let mut eliciting = false;
        let mut controls = [Control::None; MAX_CONTROLS];
        let mut nctl = 0;

        if self.close.is_some() && self.close_sent < 3 {
            let code = self.close.unwrap_or(0);
            // Ack everything first: the peer's last FIN is then settled
            // before it hears we are gone.
            if !self.received.is_empty()
                && let Some(n) = wire::emit_ack(self.received.iter_desc(), 0, &mut buf[at..end - 3])
            {
                at += n;
            }
            at += Frame::Close { code }.emit(&mut buf[at..end]).ok()?;
            self.close_sent += 1;
            return self.finish_packet(now, buf, at, false, controls, NONE);
        }
        if self.close.is_some() || self.peer_closed.is_some() {
            return None;
        }

        let can_send = ring_ok
            && (self.probes_due > 0
                || (self.cwnd_allows()
                    && self
                        .pacer
                        .send_at(now, self.mtu(), self.cc.pacing_rate())
                        .is_none()));
        let sends_anyway =
            can_send && (self.has_data_to_send() || self.probes_due > 0 || self.controls_pending());
        // ACK first: it is never paced or limited; it rides along with
        // anything we send, and goes alone when due.
        let want_ack = self.ack_now || (self.unacked_eliciting > 0 && sends_anyway);
        // Room a chunk needs in this packet, kept free of ACK and control.
        let reserve = if can_send && self.has_data_to_send() {
            STREAM_OVERHEAD + self.chunk_payload()
        } else {
            0
        };
        if want_ack && !self.received.is_empty() {
            let delay = self
                .largest_received_at
                .map_or(0, |t| micros_between(t, now));
            let ack_end = end.saturating_sub(reserve).max(at + ACK_MIN_LEN);
            if let Some(n) = wire::emit_ack(self.received.iter_desc(), delay, &mut buf[at..ack_end])
            {
                at += n;
                self.ack_sent();
            }
        }

        if can_send {
            // Control frames that must be re-sent until acked.
            if self.max_streams_dirty && nctl < MAX_CONTROLS && end - at >= 5 + reserve {
                let max = self.remote_stream_limit;
                at += Frame::MaxStreams { max }.emit(&mut buf[at..end]).ok()?;
                controls[nctl] = Control::MaxStreams { max };
                nctl += 1;
                self.max_streams_dirty = false;
                eliciting = true;
            }
            for i in 0..self.streams.len() {
                if nctl >= MAX_CONTROLS || end - at < 9 + reserve {
                    break;
                }
                let s = &mut self.streams[i];
                if !s.is_live() {
                    continue;
                }
                if s.reset_pending {
                    let (id, code) = (s.id, s.reset_code);
                    s.reset_pending = false;
                    at += Frame::ResetStream { stream: id, code }
                        .emit(&mut buf[at..end])
                        .ok()?;
                    controls[nctl] = Control::Reset { slot: i as u16, id };
                    nctl += 1;
                    eliciting = true;
                } else if s.credit_dirty && s.state == SlotState::Open {
                    let (id, max) = (s.id, s.granted);
                    s.credit_dirty = false;
                    s.advertised = max;
                    at += Frame::MaxStreamChunks { stream: id, max }
                        .emit(&mut buf[at..end])
                        .ok()?;
                    controls[nctl] = Control::Credit {
                        slot: i as u16,
                        max,
                    };
                    nctl += 1;
                    eliciting = true;
                }
            }
            // Stream data: a lost chunk first, else the next stream's.
            let chunk = self.next_chunk();
            if chunk != NONE {
                let c = self.send_pool.get(chunk);
                let frame = Frame::Stream {
                    stream: c.stream,
                    offset: c.offset,
                    fin: c.fin,
                    data: c.bytes(),
                };
                let mut carried = NONE;
                if frame.buffer_len() <= end - at {
                    at += frame.emit(&mut buf[at..end]).ok()?;
                    eliciting = true;
                    carried = chunk;
                    let c = self.send_pool.get_mut(chunk);
                    if c.state == ChunkState::Lost {
                        self.stats.retransmits += 1;
                    }
                    c.state = ChunkState::InFlight;
                    self.stats.stream_frames_sent += 1;
                } else {
                    // Room was reserved for it, so this cannot happen; if
                    // it ever does, the chunk goes back to the front of the
                    // retransmit queue instead of being lost.
                    debug_assert!(false, "chunk does not fit its packet");
                    self.send_pool.get_mut(chunk).state = ChunkState::Lost;
                    let mut r = self.retransmit;
                    self.send_pool.insert_after(&mut r, NONE, chunk);
                    self.retransmit = r;
                }
                if at == wire::HEADER_LEN {
                    return None;
                }
                if eliciting && self.probes_due > 0 {
                    self.probes_due -= 1;
                }
                return self.finish_packet(now, buf, at, eliciting, controls, carried);
            }
            if self.probes_due > 0 && !eliciting && end - at >= 1 {
                at += Frame::Ping.emit(&mut buf[at..end]).ok()?;
                eliciting = true;
                self.stats.pings_sent += 1;
            }
            if eliciting && self.probes_due > 0 {
                self.probes_due -= 1;
            }
        }
        if at == wire::HEADER_LEN {
            if can_send && !self.has_data_to_send() && self.bytes_in_flight < self.cc.cwnd() {
                self.cc.on_app_limited(self.bytes_in_flight);
            }
            return None;
        }
        self.finish_packet(now, buf, at, eliciting, controls, NONE)
    }

    // ---- internals: sending ----

    fn finish_packet(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        at: usize,
        eliciting: bool,
        controls: [Control; MAX_CONTROLS],
        chunk: u32,
    ) -> Option<usize> {
        let len = at + check::LEN;
        check::seal(&mut buf[..len]);
        let pn = self.next_pn;
        self.next_pn += 1;
        self.stats.packets_sent += 1;
        self.stats.bytes_sent += len as u64;
        if eliciting {
            let cc = self.cc.on_sent(now, len, self.bytes_in_flight);
            self.pacer.on_sent(now, len, self.cc.pacing_rate());
            self.bytes_in_flight += len;
            let slot = (pn % self.sent.len() as u64) as usize;
            self.sent[slot] = SentPacket {
                pn,
                time_us: micros(now),
                bytes: len as u16,
                in_flight: true,
                chunk,
                chunk_generation: if chunk == NONE {
                    0
                } else {
                    self.send_pool.get(chunk).generation
                },
                controls,
                cc: Some(cc),
            };
            self.last_eliciting_sent = Some(now);
            if self.timers[Timer::Loss as usize].is_none() {
                self.arm_loss_timer(now);
            }
            self.arm_keepalive(now);
        } else if self.oldest_pn == pn {
            // Nothing to wait for below the next number.
            self.oldest_pn = pn + 1;
        }
        Some(len)
    }

    fn controls_pending(&self) -> bool {
        self.max_streams_dirty
            || self
                .streams
                .iter()
                .any(|s| s.is_live() && (s.reset_pending || s.credit_dirty))
    }

    fn ack_sent(&mut self) {
        self.ack_now = false;
        self.unacked_eliciting = 0;
        self.timers[Timer::Ack as usize] = None;
        self.stats.acks_sent += 1;
    }

    fn mtu(&self) -> usize {
        self.cfg
            .max_datagram
            .min(usize::from(self.peer.max_datagram))
            .max(wire::MIN_MAX_DATAGRAM)
    }

    /// Data bytes per chunk for this path.
    fn chunk_payload(&self) -> usize {
        wire::max_payload(self.mtu())
            .saturating_sub(STREAM_OVERHEAD + CONTROL_ROOM)
            .clamp(1, CHUNK_CAP)
    }

    /// Send chunks one stream may hold: all of the pool but a few for
    /// each other live stream (one bulk stream needs the whole window on a
    /// long path), and at most twice its fair share when several are live.
    fn per_stream_send(&self) -> usize {
        let pool = self.send_pool.capacity();
        let live = self.open_streams().max(1);
        // Twice the fair share at most: streams that opened first must not
        // fill the pool before the others get a chunk.
        let share = (2 * pool / live).max(16);
        pool.saturating_sub(16 * (live - 1)).min(share).max(4)
    }

    fn cwnd_allows(&self) -> bool {
        self.bytes_in_flight + self.mtu() <= self.cc.cwnd()
    }

    fn has_data_to_send(&self) -> bool {
        self.retransmit.head != NONE || self.streams.iter().any(|s| s.unsent.head != NONE)
    }

    /// The next chunk to send: the retransmit queue first (dead entries
    /// freed on the way), then the streams' queues in turn.
    fn next_chunk(&mut self) -> u32 {
        loop {
            let mut l = self.retransmit;
            let Some(c) = self.send_pool.pop(&mut l) else {
                break;
            };
            self.retransmit = l;
            if self.send_pool.get(c).state == ChunkState::Dead {
                self.send_pool.release(c);
                continue;
            }
            return c;
        }
        let n = self.streams.len();
        for k in 0..n {
            let i = (self.rr_cursor + k) % n;
            let s = &mut self.streams[i];
            if s.unsent.head == NONE {
                continue;
            }
            let mut l = s.unsent;
            let c = self.send_pool.pop(&mut l).unwrap_or(NONE);
            self.streams[i].unsent = l;
            self.rr_cursor = (i + 1) % n;
            return c;
        }
        NONE
    }

    fn arm_keepalive(&mut self, now: Instant) {
        self.timers[Timer::Keepalive as usize] =
            Some(add_micros(now, u64::from(self.cfg.keepalive_ms) * 1000));
    }

    // ---- internals: acks and loss ----

    fn on_ack_frame(&mut self, now: Instant, a: &AckFrame<'_>) {
        if a.largest >= self.next_pn {
            // Acks for packets never sent: forged or broken; ignore.
            self.stats.bad_acks += 1;
            return;
        }
        let mut batch = [None::<AckedPacket>; CC_BATCH];
        let mut nb = 0;
        let mut newly_largest: Option<(u64, u64)> = None;
        let mut any = false;
        for (lo, hi) in a.ranges() {
            let lo = lo.max(self.oldest_pn);
            if hi < lo {
                continue;
            }
            for pn in lo..=hi {
                let slot = (pn % self.sent.len() as u64) as usize;
                let p = self.sent[slot];
                if p.pn != pn {
                    continue;
                }
                self.sent[slot] = SentPacket::EMPTY;
                any = true;
                if newly_largest.is_none_or(|(x, _)| pn > x) {
                    newly_largest = Some((pn, p.time_us));
                }
                self.on_packet_acked(&p);
                batch[nb] = Some(AckedPacket {
                    sent: p.cc_state(),
                    sent_time: p.time(),
                    bytes: usize::from(p.bytes),
                });
                nb += 1;
                if nb == CC_BATCH {
                    self.flush_acked(now, &mut batch, &mut nb, None);
                }
            }
        }
        if !any {
            return;
        }
        self.largest_acked = Some(self.largest_acked.map_or(a.largest, |l| l.max(a.largest)));
        let mut rtt_sample = None;
        if let Some((pn, t)) = newly_largest
            && pn == a.largest
        {
            let sample = micros(now).saturating_sub(t);
            self.rtt
                .sample(sample, a.delay_us, u64::from(self.peer_max_ack_delay()));
            rtt_sample = Some(sample);
        }
        self.flush_acked(now, &mut batch, &mut nb, rtt_sample);
        self.pto_count = 0;
        self.advance_oldest();
        self.detect_losses(now);
        self.arm_loss_timer(now);
    }

    fn flush_acked(
        &mut self,
        now: Instant,
        batch: &mut [Option<AckedPacket>; CC_BATCH],
        n: &mut usize,
        rtt: Option<u64>,
    ) {
        if *n == 0 {
            return;
        }
        let mut acked = [AckedPacket {
            sent: SentPacket::EMPTY.cc_state(),
            sent_time: Instant::new(0),
            bytes: 0,
        }; CC_BATCH];
        for (dst, src) in acked.iter_mut().zip(batch.iter()) {
            if let Some(p) = src {
                *dst = *p;
            }
        }
        self.cc
            .on_ack(now, &acked[..*n], rtt, self.rtt.min, self.bytes_in_flight);
        *n = 0;
    }

    fn on_packet_acked(&mut self, p: &SentPacket) {
        if p.in_flight {
            self.bytes_in_flight = self.bytes_in_flight.saturating_sub(usize::from(p.bytes));
        }
        if p.chunk != NONE {
            let c = self.send_pool.get(p.chunk);
            if c.generation == p.chunk_generation {
                let (stream, fin, state) = (c.stream, c.fin, c.state);
                match state {
                    ChunkState::InFlight => self.send_pool.release(p.chunk),
                    // In the retransmit queue: freed when the queue reaches it.
                    ChunkState::Lost => self.send_pool.get_mut(p.chunk).state = ChunkState::Dead,
                    _ => {}
                }
                if matches!(state, ChunkState::InFlight | ChunkState::Lost)
                    && let Some(i) = self.slot_of(stream)
                {
                    let s = &mut self.streams[i];
                    s.outstanding = s.outstanding.saturating_sub(1);
                    if fin {
                        s.fin_acked = true;
                    }
                    self.check_done(i);
                }
            }
        }
        for c in p.controls {
            if let Control::Reset { slot, id } = c {
                let i = usize::from(slot);
                if i < self.streams.len() && self.streams[i].id == id && self.streams[i].is_live() {
                    self.streams[i].reset_done = true;
                    self.check_done(i);
                }
            }
        }
    }

    fn on_packet_lost(&mut self, p: &SentPacket) {
        if p.in_flight {
            self.bytes_in_flight = self.bytes_in_flight.saturating_sub(usize::from(p.bytes));
        }
        self.stats.packets_lost += 1;
        if p.chunk != NONE {
            let c = self.send_pool.get(p.chunk);
            if c.generation == p.chunk_generation && c.state == ChunkState::InFlight {
                self.send_pool.get_mut(p.chunk).state = ChunkState::Lost;
                let mut l = self.retransmit;
                self.send_pool.push(&mut l, p.chunk);
                self.retransmit = l;
            }
        }
        for c in p.controls {
            match c {
                Control::None => {}
                Control::Credit { slot, max } => {
                    let i = usize::from(slot);
                    if i < self.streams.len()
                        && self.streams[i].state == SlotState::Open
                        && self.streams[i].advertised == max
                    {
                        self.streams[i].credit_dirty = true;
                    }
                }
                Control::Reset { slot, id } => {
                    let i = usize::from(slot);
                    if i < self.streams.len()
                        && self.streams[i].id == id
                        && self.streams[i].state == SlotState::Reset
                        && !self.streams[i].reset_done
                    {
                        self.streams[i].reset_pending = true;
                    }
                }
                Control::MaxStreams { max } => {
                    if max == self.remote_stream_limit {
                        self.max_streams_dirty = true;
                    }
                }
            }
        }
    }

    fn advance_oldest(&mut self) {
        let len = self.sent.len() as u64;
        while self.oldest_pn < self.next_pn {
            let slot = (self.oldest_pn % len) as usize;
            if self.sent[slot].pn == self.oldest_pn {
                break;
            }
            self.oldest_pn += 1;
        }
    }

    /// RFC 9002 §6.1: packets below the largest acked are lost after
    /// [`PACKET_THRESHOLD`] later ones were acked or 9/8 RTT went by.
    fn detect_losses(&mut self, now: Instant) {
        let Some(largest) = self.largest_acked else {
            return;
        };
        let delay = self.rtt.loss_delay();
        let lost_before = micros(now).saturating_sub(delay);
        let len = self.sent.len() as u64;
        let mut batch = [None::<LostPacket>; CC_BATCH];
        let mut nb = 0;
        let mut pn = self.oldest_pn;
        while pn < largest {
            let slot = (pn % len) as usize;
            let p = self.sent[slot];
            if p.pn == pn && (p.time_us <= lost_before || largest >= pn + PACKET_THRESHOLD) {
                self.sent[slot] = SentPacket::EMPTY;
                self.on_packet_lost(&p);
                batch[nb] = Some(LostPacket {
                    sent: p.cc_state(),
                    sent_time: p.time(),
                    bytes: usize::from(p.bytes),
                });
                nb += 1;
                if nb == CC_BATCH {
                    self.flush_lost(now, &batch, &mut nb);
                }
            }
            pn += 1;
        }
        self.flush_lost(now, &batch, &mut nb);
        self.advance_oldest();
    }

    fn flush_lost(&mut self, now: Instant, batch: &[Option<LostPacket>; CC_BATCH], n: &mut usize) {
        if *n == 0 {
            return;
        }
        let mut lost = [LostPacket {
            sent: SentPacket::EMPTY.cc_state(),
            sent_time: Instant::new(0),
            bytes: 0,
        }; CC_BATCH];
        for (dst, src) in lost.iter_mut().zip(batch.iter()) {
            if let Some(p) = src {
                *dst = *p;
            }
        }
        self.cc.on_loss(now, &lost[..*n], self.bytes_in_flight);
        *n = 0;
    }

    /// The earliest time-threshold loss, else the probe timeout.
    fn arm_loss_timer(&mut self, now: Instant) {
        let len = self.sent.len() as u64;
        if let Some(largest) = self.largest_acked {
            let delay = self.rtt.loss_delay();
            let mut pn = self.oldest_pn;
            while pn < largest {
                let p = &self.sent[(pn % len) as usize];
                if p.pn == pn {
                    let at = add_micros(p.time(), delay);
                    self.timers[Timer::Loss as usize] =
                        Some(if micros(at) < micros(now) { now } else { at });
                    return;
                }
                pn += 1;
            }
        }
        if self.bytes_in_flight == 0 {
            self.timers[Timer::Loss as usize] = None;
            return;
        }
        let pto = self.rtt.pto(u64::from(self.peer_max_ack_delay())) << self.pto_count.min(6);
        let from = self.last_eliciting_sent.unwrap_or(now);
        // After a probe timeout the probes go out now: the next one counts
        // from now, never from a send long past.
        let at = add_micros(from, pto);
        let at = if micros(at) <= micros(now) {
            add_micros(now, pto)
        } else {
            at
        };
        self.timers[Timer::Loss as usize] = Some(at);
    }

    fn on_loss_timer(&mut self, now: Instant) {
        // A probe timeout armed before the latest send is not due yet.
        if !self.time_threshold_pending()
            && let Some(t) = self.last_eliciting_sent
        {
            let pto = self.rtt.pto(u64::from(self.peer_max_ack_delay())) << self.pto_count.min(6);
            if micros(now) < micros(t) + pto {
                self.arm_loss_timer(now);
                return;
            }
        }
        let before = self.stats.packets_lost;
        self.detect_losses(now);
        if self.stats.packets_lost == before && self.bytes_in_flight > 0 {
            // Probe timeout: nothing was lost by the thresholds, but no
            // ack came. Send probes (they bypass the window); the oldest
            // unacked data goes again so a tail loss is repaired now.
            self.pto_count += 1;
            self.stats.ptos += 1;
            self.probes_due = 2;
            self.requeue_oldest_for_probe();
            if self.pto_count >= PERSISTENT_PTOS {
                self.cc.on_persistent_congestion(now);
            }
        }
        self.arm_loss_timer(now);
    }

    /// Whether a packet below the largest acked is still unresolved.
    fn time_threshold_pending(&self) -> bool {
        let Some(largest) = self.largest_acked else {
            return false;
        };
        let len = self.sent.len() as u64;
        (self.oldest_pn..largest).any(|pn| self.sent[(pn % len) as usize].pn == pn)
    }

    fn requeue_oldest_for_probe(&mut self) {
        let len = self.sent.len() as u64;
        let mut pn = self.oldest_pn;
        while pn < self.next_pn {
            let p = self.sent[(pn % len) as usize];
            if p.pn == pn && p.chunk != NONE {
                let c = self.send_pool.get(p.chunk);
                if c.generation == p.chunk_generation && c.state == ChunkState::InFlight {
                    // Sent again under a new number; the old record stays
                    // (whichever is acked first frees the chunk).
                    self.send_pool.get_mut(p.chunk).state = ChunkState::Lost;
                    let mut l = List::EMPTY;
                    self.send_pool.push(&mut l, p.chunk);
                    // Front of the retransmit queue.
                    if self.retransmit.head == NONE {
                        self.retransmit = l;
                    } else {
                        let mut r = self.retransmit;
                        self.send_pool.insert_after(&mut r, NONE, p.chunk);
                        self.retransmit = r;
                    }
                }
                return;
            }
            pn += 1;
        }
    }

    fn peer_max_ack_delay(&self) -> u32 {
        self.cfg.max_ack_delay_us
    }

    // ---- internals: streams ----

    fn slot_of(&self, id: u32) -> Option<usize> {
        self.streams
            .iter()
            .position(|s| s.id == id && s.state != SlotState::Free)
    }

    fn free_slot(&self) -> Option<usize> {
        self.streams.iter().position(|s| s.state == SlotState::Free)
    }

    /// Receive chunks kept for streams the peer may still open.
    fn reserve(&self) -> u32 {
        self.remote_stream_limit
            .saturating_sub(self.highest_remote_id)
            .saturating_mul(u32::from(self.cfg.initial_chunks))
            .min(self.recv_pool.capacity() as u32)
    }

    /// Tops up the credit of slot `i` after it consumed chunks.
    fn grant(&mut self, i: usize) {
        let r = self.recv_pool.capacity() as u32;
        let avail = r.saturating_sub(self.reserve());
        let live = self.open_streams().max(1) as u32;
        // A fair share of what is not reserved; one stream alone may take
        // nearly all of it (a bulk transfer on a long lossy path needs its
        // reorder room), several keep a few chunks for each other.
        let cap = avail.saturating_sub(16 * (live - 1)).max(avail / 4);
        let target = (avail / live)
            .min(cap)
            .max(u32::from(self.cfg.initial_chunks));
        let s = self.streams[i];
        let want = s.consumed + target;
        if want > s.granted {
            let room = avail.saturating_sub(self.committed);
            let inc = (want - s.granted).min(room);
            self.streams[i].granted += inc;
            self.committed += inc;
        }
        let s = &mut self.streams[i];
        // Advertise in steps of a quarter target, and at once when the
        // peer has used up what it was told (it is waiting for us).
        let used_up = s.consumed + s.stored >= s.advertised;
        if s.granted > s.advertised && (used_up || s.granted - s.advertised >= (target / 4).max(1))
        {
            s.credit_dirty = true;
        }
    }

    /// After chunks were freed: streams whose peer is blocked on credit
    /// get their share of the room now (not only the stream that read).
    fn grant_blocked(&mut self) {
        for j in 0..self.streams.len() {
            let s = &self.streams[j];
            if s.state == SlotState::Open && s.consumed + s.stored >= s.advertised {
                self.grant(j);
            }
        }
    }

    /// Handles a STREAM frame; `false` if it could not be stored (the
    /// packet must not be acked).
    fn on_stream_frame(&mut self, id: u32, offset: u64, fin: bool, data: &[u8]) -> bool {
        let i = match self.slot_of(id) {
            Some(i) => i,
            None => {
                if id > self.highest_remote_id && id <= self.remote_stream_limit {
                    match self.open_remote(id) {
                        Some(i) => i,
                        None => return false,
                    }
                } else {
                    // A stream that is gone (or was never allowed): its
                    // retransmissions are acked and dropped.
                    return true;
                }
            }
        };
        let s = self.streams[i];
        if s.state != SlotState::Open {
            return true;
        }
        let end = offset + data.len() as u64;
        if fin {
            match s.final_offset {
                Some(f) if f != end => {
                    self.stats.bad.malformed += 1;
                    return true;
                }
                _ => self.streams[i].final_offset = Some(end),
            }
        }
        if data.is_empty() || end <= s.recv_offset || data.len() > CHUNK_CAP {
            self.check_done(i);
            return true;
        }
        // Find the insertion point; an identical chunk is a duplicate.
        let mut prev = NONE;
        let mut cur = s.reassembly.head;
        while cur != NONE {
            let c = self.recv_pool.get(cur);
            if c.offset == offset {
                return true;
            }
            if c.offset > offset {
                break;
            }
            prev = cur;
            cur = c.next;
        }
        if s.stored + s.consumed >= s.granted || self.recv_pool.free() == 0 {
            return false;
        }
        let Some(c) = self.recv_pool.alloc(id, offset, ChunkState::Stored) else {
            return false;
        };
        let chunk = self.recv_pool.get_mut(c);
        chunk.data[..data.len()].copy_from_slice(data);
        chunk.len = data.len() as u16;
        chunk.fin = fin;
        // A chunk that starts before the delivery point (a peer that
        // re-chunked) is read from the delivery point on.
        if offset < s.recv_offset {
            chunk.read = (s.recv_offset - offset) as u16;
        }
        let mut l = self.streams[i].reassembly;
        self.recv_pool.insert_after(&mut l, prev, c);
        self.streams[i].reassembly = l;
        self.streams[i].stored += 1;
        self.stats.stream_frames_received += 1;
        true
    }

    /// Whether slot `i` holds every byte of the peer's up to its FIN (the
    /// local side only has to read them).
    fn recv_complete(&self, i: usize) -> bool {
        let s = &self.streams[i];
        let Some(end) = s.final_offset else {
            return false;
        };
        let mut at = s.recv_offset;
        let mut c = s.reassembly.head;
        while c != NONE && at < end {
            let chunk = self.recv_pool.get(c);
            if chunk.offset + u64::from(chunk.read) > at {
                return false;
            }
            at = at.max(chunk.end());
            c = chunk.next;
        }
        at >= end
    }

    fn open_remote(&mut self, id: u32) -> Option<usize> {
        // Ids open in order; a later id implicitly opens the ones before it.
        while self.highest_remote_id < id {
            let next = self.highest_remote_id + 1;
            let slot = self.free_slot()?;
            self.highest_remote_id = next;
            let mut s = Stream::open(
                next,
                true,
                u32::from(self.peer.initial_chunks),
                u32::from(self.cfg.initial_chunks),
            );
            s.reported = false;
            self.streams[slot] = s;
            self.committed += u32::from(self.cfg.initial_chunks);
            self.stats.streams_opened += 1;
        }
        self.slot_of(id)
    }

    fn on_peer_reset(&mut self, id: u32) {
        if let Some(i) = self.slot_of(id) {
            match self.streams[i].state {
                SlotState::Open => {
                    self.reset_slot(i, code::LOCAL_ERROR, false);
                    self.streams[i].reset_done = true;
                    self.check_done(i);
                }
                SlotState::Reset => {
                    self.streams[i].reset_done = true;
                    self.streams[i].reset_pending = false;
                    self.check_done(i);
                }
                _ => {}
            }
        }
    }

    /// Drops everything of slot `i` and marks it reset; `send` queues our
    /// RESET_STREAM.
    fn reset_slot(&mut self, i: usize, reason: u16, send: bool) {
        let id = self.streams[i].id;
        let mut l = self.streams[i].unsent;
        self.send_pool.release_list(&mut l);
        let mut r = self.streams[i].reassembly;
        self.recv_pool.release_list(&mut r);
        // In-flight chunks are named only by sent records: free them (the
        // records' generation check then ignores them); lost ones wait in
        // the retransmit queue as dead.
        for k in 0..self.send_pool.capacity() as u32 {
            let c = self.send_pool.get(k);
            if c.stream == id {
                match c.state {
                    ChunkState::InFlight => self.send_pool.release(k),
                    ChunkState::Lost => self.send_pool.get_mut(k).state = ChunkState::Dead,
                    _ => {}
                }
            }
        }
        let s = &mut self.streams[i];
        self.committed = self
            .committed
            .saturating_sub(s.granted.saturating_sub(s.consumed));
        s.consumed = s.granted;
        s.stored = 0;
        s.unsent = List::EMPTY;
        s.reassembly = List::EMPTY;
        s.outstanding = 0;
        s.state = SlotState::Reset;
        s.reset_code = reason;
        s.reset_pending = send;
        self.stats.streams_reset += 1;
    }

    fn check_done(&mut self, i: usize) {
        let s = self.streams[i];
        let finished = match s.state {
            SlotState::Open => s.send_done() && s.recv_done(),
            SlotState::Reset => s.reset_done,
            _ => false,
        };
        if !finished {
            return;
        }
        let reset = s.state == SlotState::Reset;
        self.committed = self
            .committed
            .saturating_sub(s.granted.saturating_sub(s.consumed));
        self.streams[i].state = SlotState::Closing { reset };
        self.events_pending += 1;
        if s.remote {
            self.remote_stream_limit += 1;
            self.max_streams_dirty = true;
        }
    }
}
