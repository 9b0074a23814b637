//! The tunnel's reliable transport: one peer's half of a udphp v0.12 tunnel
//! (SPEC §2) as a sans-IO state machine, [`Endpoint`].
//!
//! The endpoint turns a byte stream from the local TCP side into `U`/`C`
//! data frames, retransmits them until the peer acks them, acks the peer's
//! frames, delivers the peer's bytes in order, and keeps the UDP hole open
//! with `H` heartbeats. It reads no clock and touches no socket: the driver
//! feeds it datagrams, local bytes and `now`, and drains datagrams, local
//! bytes and events out of it.
//!
//! ## Run loop
//!
//! ```text
//! let mut ep: Endpoint = Endpoint::new(config, now);
//! loop {
//!     // input
//!     for each datagram from the peer's address:   ep.handle_datagram(now, &d)  (errors: log, go on)
//!     if a timer may have fired:                    ep.handle_timeout(now)
//!     while local TCP has bytes and ep.send_capacity() > 0:  ep.send(bytes)
//!     on local TCP EOF:                             ep.close_send()
//!     // output: drain everything after every input
//!     while let Some(n) = ep.poll_transmit(now, &mut buf) { udp.send(&buf[..n]) }
//!     while local TCP can take bytes and ep.recv_available() > 0: tcp.write(ep.recv(..))
//!     while let Some(ev) = ep.poll_event() { ... }
//!     wait until ep.poll_timeout() or I/O readiness
//! }
//! ```
//!
//! Calling `handle_timeout` early or twice is harmless, and so is calling
//! `poll_transmit` when nothing is due. `recv` frees receive buffer space and
//! may queue a datagram (a window-open nudge), so drain `poll_transmit`
//! after it too.
//!
//! ## Protocol choices (all within what udphp.py v0.12 accepts)
//!
//! * **Window.** The send side is a window of `WINDOW` frames (a const
//!   generic). The compat protocol has one frame in flight and the receiver
//!   accepts only the expected seq, so `WINDOW = 1` is the default; the
//!   structures already hold several so a later protocol can widen it.
//! * **Acks are never lost.** Acks are processed inside `handle_datagram`
//!   against the frames in flight, so an ack that arrives at once (even at
//!   the same `now` as the send) completes the frame and the next frame is
//!   queued in the same call: there is no event to race, unlike the
//!   reference.
//! * **Ack only what is held.** A frame is acked only once its payload sits
//!   in the endpoint's receive buffer. If the local TCP side is slow and the
//!   buffer is full, the frame is dropped unacked and the sender retries;
//!   when [`Endpoint::recv`] frees enough room it sends `N expected` so a
//!   punchwire sender retransmits at once instead of waiting out a
//!   backed-off RTO (udphp.py just keeps its 1 s schedule).
//! * **Serial-number arithmetic** (RFC 1982): a frame is *older* when
//!   `expected − seq (mod 65536)` is in `1..=32767`; it is re-acked without
//!   decoding (it was delivered already, so the ack is always true). Any
//!   other seq but `expected` is *future* and gets `N expected`.
//! * **`N e` at the sender.** When `e` is the seq in flight, the receiver
//!   saw a damaged copy; when `e` is one past it, the receiver already holds
//!   it and our ack was lost. In both cases the frame goes again at once
//!   (a copy of an already-held frame draws a duplicate `A`). An `N` is
//!   never taken as an ack: a bit-flipped `N` must not be able to confirm a
//!   frame that never arrived. Fast retransmits are rate-limited to one per
//!   half smoothed RTT so duplicated `N`s do not multiply copies.
//! * **Ack check bytes.** Our `A`/`N` datagrams carry two extra bytes, the
//!   bitwise complement of the seq. udphp.py reads only bytes 1..3 and
//!   ignores them; between punchwire peers they stop a damaged datagram
//!   (say a `C` frame whose type bit flipped to `A`, or a stale `A` whose
//!   seq bit flipped) from acking a frame that was never delivered. A
//!   3-byte ack (udphp.py) is taken as is.
//! * **Retransmission timer** as RFC 6298: SRTT/RTTVAR, Karn's rule (no
//!   sample from a retransmitted frame), doubling on timeout, at least
//!   SRTT + `rto_min` and at most `rto_max`. An ack for a retransmitted frame gives no
//!   sample but ends the backoff (as Linux does): with one frame in flight
//!   the next frame would otherwise start with the doubled RTO.
//! * **End of stream** is an empty data frame, sent once every byte before
//!   it has been framed and the window has room (with `WINDOW = 1`: after
//!   all data is acked). udphp.py never sends one and handles one harmlessly.
//! * **Robustness.** No datagram can make the endpoint panic or stop: a
//!   malformed one is an `Err` from `handle_datagram`, counted in
//!   [`Stats::bad`], and every datagram counts as liveness (the driver only
//!   passes datagrams from the peer's address).
//!
//! ## Memory
//!
//! No heap without the `deflate` feature. The endpoint holds one receive
//! buffer of [`RECV_BUFFER`] bytes (a udphp.py peer sends frames of up to
//! 40 000 bytes and a frame is only acked once held whole), one staging
//! buffer and `WINDOW` frame slots of `FRAME_CAP` bytes, and an
//! [`Inflater`](crate::compress::Inflater) (~11 KB). The default
//! `Endpoint<1, 1400>` is about 54 KB; `size_of` is asserted in the tests.
//! With `deflate` and `compress`, a heap `Deflater` (~320 KB) is added.

pub mod driver;
mod endpoint;
pub mod machine;
pub mod pw1;
mod recv;
mod rtt;
mod send;

pub use driver::{
    Buffers, Driver, DriverConfig, Flow, LocalSlot, Poll, Snapshot, TunnelError, TunnelEvent, run,
};
pub use endpoint::Endpoint;
pub use machine::{BirthdayEvent, Chosen, Escalation, MachineConfig, Protocol, Transmit, Tunnel};

/// Which local side this tunnel end serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Local {
    /// `-c PORT`: connect to the local TCP service on PORT for each stream.
    Connect(u16),
    /// `-l PORT`: listen for local TCP clients on PORT.
    Listen(u16),
}

impl Local {
    /// The udphp role of this side.
    pub fn role(self) -> Role {
        match self {
            Local::Connect(_) => Role::Connect,
            Local::Listen(_) => Role::Listen,
        }
    }
}

use crate::compress::InflateError;
use crate::frame::{self, MAX_PAYLOAD, Role};
use crate::time::Milliseconds;
use core::fmt;

/// Default largest payload per data frame.
///
/// A frame is `HEADER_LEN + payload` in one UDP datagram. 1400 bytes of
/// payload make a 1416-byte UDP payload: 1444 bytes of IPv4 or 1464 bytes
/// of IPv6 packet, inside a 1500-byte Ethernet MTU and a 1492-byte PPPoE
/// one, so a frame never needs IP fragmentation (fragments are dropped on
/// many real paths, SPEC §2). Compressed frames are smaller still. The
/// receive side accepts frames of up to [`MAX_PAYLOAD`] from udphp.py.
pub const DEFAULT_FRAME_SIZE: usize = 1400;

/// Bytes of receive buffer: one largest udphp frame.
pub const RECV_BUFFER: usize = MAX_PAYLOAD;

/// Length of the `A`/`N` datagrams we send: type, seq, check (`!seq`).
pub const CHECKED_ACK_LEN: usize = frame::ACK_LEN + 2;

/// Settings of one [`Endpoint`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Our side: decides the heartbeat greeting.
    pub role: Role,
    /// Largest payload per data frame. Clamped to `1..=FRAME_CAP` (the
    /// endpoint's slot size, at most [`MAX_PAYLOAD`]). Default
    /// [`DEFAULT_FRAME_SIZE`], which avoids IP fragmentation.
    pub frame_size: usize,
    /// Time between our heartbeats. Default 15 s: four per OpenWrt's 60 s
    /// unreplied-UDP timeout, so one or two lost heartbeats do not close the
    /// NAT mapping. Sent on schedule even while data flows, because
    /// udphp.py only counts `H` datagrams as heartbeats.
    pub heartbeat_interval: Milliseconds<u32>,
    /// Emit [`Event::PeerSilent`] after hearing nothing for this long.
    /// Default 120 s: a udphp.py peer heartbeats every 20–30 s, so this is
    /// at least four missed heartbeats; beyond OpenWrt's 180 s assured-UDP
    /// timeout the path is likely gone anyway.
    pub silence_timeout: Milliseconds<u32>,
    /// RTO before the first RTT sample. Default 1 s (RFC 6298).
    pub rto_initial: Milliseconds<u32>,
    /// Least margin of the RTO above the smoothed RTT: RTO = SRTT +
    /// max(4·RTTVAR, `rto_min`), as Linux applies its `rto_min`. Default
    /// 25 ms, far below RFC 6298's conservative 1 s floor: with one frame
    /// in flight every loss stalls the tunnel for a whole RTO, while a
    /// spurious retransmission costs one duplicate frame (re-acked, never
    /// delivered twice). Being a margin, it cannot make a long path
    /// spurious.
    pub rto_min: Milliseconds<u32>,
    /// Upper RTO clamp after backoff. Default 5 s, so a stall after a long
    /// outage ends within 5 s of the path coming back.
    pub rto_max: Milliseconds<u32>,
    /// Give a frame up after this many retransmissions
    /// ([`Event::RetransmitLimit`]); 0 = never. Default 0: a live peer whose
    /// local TCP side is slow withholds acks on purpose, and a dead peer is
    /// detected by [`Event::PeerSilent`] instead.
    pub max_retries: u32,
    /// Compress frames with zlib when it saves more than `MIN_GAIN` bytes.
    /// Needs the `deflate` feature; without it frames go as `U`. Default on
    /// when the feature is enabled.
    pub compress: bool,
}

impl Config {
    /// The defaults documented on each field, for `role`.
    pub const fn new(role: Role) -> Self {
        Config {
            role,
            frame_size: DEFAULT_FRAME_SIZE,
            heartbeat_interval: Milliseconds(15_000),
            silence_timeout: Milliseconds(120_000),
            rto_initial: Milliseconds(1_000),
            rto_min: Milliseconds(25),
            rto_max: Milliseconds(5_000),
            max_retries: 0,
            compress: cfg!(feature = "deflate"),
        }
    }
}

/// What a valid datagram meant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// The expected data frame: `len` bytes are now readable with
    /// [`Endpoint::recv`] and `A seq` is queued. `len == 0` is the peer's end
    /// of stream.
    Data {
        /// Frame seq.
        seq: u16,
        /// Payload bytes delivered.
        len: usize,
    },
    /// An older frame, delivered before: `A seq` is queued again.
    Duplicate {
        /// Frame seq.
        seq: u16,
    },
    /// A frame ahead of the expected seq: `N expected` is queued.
    Future {
        /// Frame seq.
        seq: u16,
    },
    /// The expected frame, but the receive buffer has no room for it: not
    /// acked; the sender will retransmit.
    NoRoom {
        /// Frame seq.
        seq: u16,
    },
    /// `A seq` for a frame in flight: the frame is done.
    Ack {
        /// Acked seq.
        seq: u16,
    },
    /// `A seq` for a seq not in flight (late or duplicated): ignored.
    StaleAck {
        /// Acked seq.
        seq: u16,
    },
    /// `N expected`.
    Nack {
        /// The peer's expected seq.
        expected: u16,
        /// Whether it made the frame in flight go again at once.
        retransmit: bool,
    },
    /// A heartbeat, with the sender's role if it used a standard greeting.
    Heartbeat {
        /// `Some` for `HELOCLNT`/`HELOSRVR`.
        role: Option<Role>,
    },
}

/// Why a datagram was ignored. Never fatal; counted in [`Stats::bad`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatagramError {
    /// Empty, or shorter than its type's fixed part.
    Truncated,
    /// The first byte is not `U C A N H`.
    UnknownType(u8),
    /// Longer than the format allows, or a declared length above 40 000.
    TooLong,
    /// An `A`/`N` that is neither the 3-byte udphp form nor the 5-byte
    /// form with matching check bytes.
    BadAck,
    /// The expected frame's zlib body did not inflate (`N` queued).
    Inflate(InflateError),
    /// The expected frame decoded to a length other than its `len` (`N` queued).
    LengthMismatch,
    /// The expected frame's payload does not match its digest (`N` queued).
    DigestMismatch,
}

impl From<frame::Error> for DatagramError {
    fn from(e: frame::Error) -> Self {
        match e {
            frame::Error::Truncated => DatagramError::Truncated,
            frame::Error::UnknownType(b) => DatagramError::UnknownType(b),
            frame::Error::TooLong => DatagramError::TooLong,
        }
    }
}

impl fmt::Display for DatagramError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatagramError::Truncated => f.write_str("datagram too short for its type"),
            DatagramError::UnknownType(b) => write!(f, "unknown frame type byte 0x{b:02x}"),
            DatagramError::TooLong => f.write_str("frame longer than the format allows"),
            DatagramError::BadAck => f.write_str("ack with a bad length or check bytes"),
            DatagramError::Inflate(e) => write!(f, "bad compressed frame: {e}"),
            DatagramError::LengthMismatch => f.write_str("payload length differs from header"),
            DatagramError::DigestMismatch => f.write_str("payload digest mismatch"),
        }
    }
}

/// Something the driver should know about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The first datagram from the peer, or the first after
    /// [`Event::PeerSilent`].
    PeerHeard,
    /// Nothing heard from the peer for `silence_timeout`.
    PeerSilent,
    /// A frame was retransmitted `max_retries` times without an ack; the
    /// endpoint stopped sending data (the stream is broken).
    RetransmitLimit {
        /// Seq of the frame given up.
        seq: u16,
    },
    /// The peer's end of stream was reached: every byte before it was
    /// handed out by [`Endpoint::recv`].
    PeerFinished,
    /// Our end-of-stream frame was acked: the peer holds every byte we sent.
    SendFinished,
}

/// Datagrams ignored, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BadDatagrams {
    /// [`DatagramError::Truncated`].
    pub truncated: u64,
    /// [`DatagramError::UnknownType`].
    pub unknown_type: u64,
    /// [`DatagramError::TooLong`].
    pub too_long: u64,
    /// [`DatagramError::BadAck`].
    pub bad_ack: u64,
    /// [`DatagramError::Inflate`].
    pub inflate: u64,
    /// [`DatagramError::LengthMismatch`].
    pub length_mismatch: u64,
    /// [`DatagramError::DigestMismatch`].
    pub digest_mismatch: u64,
}

impl BadDatagrams {
    /// All bad datagrams.
    pub fn total(&self) -> u64 {
        self.truncated
            + self.unknown_type
            + self.too_long
            + self.bad_ack
            + self.inflate
            + self.length_mismatch
            + self.digest_mismatch
    }

    fn count(&mut self, e: DatagramError) {
        let c = match e {
            DatagramError::Truncated => &mut self.truncated,
            DatagramError::UnknownType(_) => &mut self.unknown_type,
            DatagramError::TooLong => &mut self.too_long,
            DatagramError::BadAck => &mut self.bad_ack,
            DatagramError::Inflate(_) => &mut self.inflate,
            DatagramError::LengthMismatch => &mut self.length_mismatch,
            DatagramError::DigestMismatch => &mut self.digest_mismatch,
        };
        *c += 1;
    }
}

/// Counters and RTT estimates of one [`Endpoint`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Local bytes framed for the peer (each byte once).
    pub payload_bytes_sent: u64,
    /// Data frame bodies as first sent (compressed or not), for the
    /// compression ratio.
    pub body_bytes_sent: u64,
    /// Peer bytes accepted into the receive buffer.
    pub payload_bytes_received: u64,
    /// Bytes of every datagram we emitted.
    pub wire_bytes_sent: u64,
    /// Bytes of every datagram handed to `handle_datagram`.
    pub wire_bytes_received: u64,
    /// Datagrams emitted.
    pub datagrams_sent: u64,
    /// Datagrams handled.
    pub datagrams_received: u64,
    /// Data frames emitted, retransmissions included.
    pub data_frames_sent: u64,
    /// Distinct data frames built (each seq once).
    pub frames_built: u64,
    /// Of those, sent as `C`.
    pub compressed_frames: u64,
    /// Data frames accepted (in order, intact, held).
    pub data_frames_received: u64,
    /// Retransmissions (timeouts and `N`s).
    pub retransmits: u64,
    /// Retransmission timer expiries.
    pub timeouts: u64,
    /// Retransmissions at once on an `N`.
    pub fast_retransmits: u64,
    /// `A` sent.
    pub acks_sent: u64,
    /// `A` received for a frame in flight.
    pub acks_received: u64,
    /// `A` received for a seq not in flight.
    pub stale_acks: u64,
    /// `N` sent (damaged or future frames, and window-open nudges).
    pub nacks_sent: u64,
    /// `N` received.
    pub nacks_received: u64,
    /// Older frames re-acked.
    pub duplicates_received: u64,
    /// Future frames answered with `N`.
    pub future_frames: u64,
    /// Expected frames dropped unacked for lack of receive buffer room.
    pub no_room: u64,
    /// Heartbeats sent.
    pub heartbeats_sent: u64,
    /// Heartbeats received.
    pub heartbeats_received: u64,
    /// Datagrams ignored, by reason.
    pub bad: BadDatagrams,
    /// Smoothed RTT, µs (`None` before the first sample).
    pub srtt_us: Option<u64>,
    /// RTT variation, µs.
    pub rttvar_us: u64,
    /// Current retransmission timeout, µs (backoff included).
    pub rto_us: u64,
}

impl Stats {
    /// Body bytes sent per payload byte framed, as udphp.py's "compr.
    /// ratio" (1.0 when nothing compressed; 0.0 before any payload).
    pub fn compression_ratio(&self) -> f32 {
        if self.payload_bytes_sent == 0 {
            0.0
        } else {
            self.body_bytes_sent as f32 / self.payload_bytes_sent as f32
        }
    }
}

/// Whether `seq` is older than `expected` in 16-bit serial arithmetic:
/// `expected − seq (mod 65536)` in `1..=32767`.
pub const fn seq_is_older(seq: u16, expected: u16) -> bool {
    let behind = expected.wrapping_sub(seq);
    behind != 0 && behind < 0x8000
}

#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;
