//! `pw1`: punchwire's native tunnel transport — many TCP streams over one
//! UDP path, reliable, ordered per stream, flow- and congestion-controlled.
//! The packet format is in [`frame::pw1`](crate::frame::pw1); the handshake
//! that starts it (heartbeat capabilities) in [`frame::tail`](crate::frame::tail).
//!
//! ## Design (after QUIC, RFC 9000/9002, and KCP)
//!
//! * **Packet numbers** count up from 0 and are never reused; an
//!   retransmission puts the same *chunk* into a new packet. Each packet
//!   ends with a 4-byte CRC-32C of everything before it (UDP's checksum is
//!   optional on IPv4 and weak): a damaged packet is dropped, never acked.
//!   The check sits inside the 16 bytes kept for a later AEAD tag.
//! * **Acks** carry ranges (up to 33 per frame), sent after every second
//!   ack-eliciting packet, at once on reordering, else after
//!   [`Config::max_ack_delay_us`].
//! * **Loss detection** is RFC 9002's: a packet is lost when 3 later ones
//!   were acked or 9/8 RTT passed since it was sent; a probe timeout
//!   (smoothed RTT + 4·var + max ack delay, doubling) sends two probes,
//!   the oldest unacked chunk again, that bypass the congestion window.
//! * **Congestion control** is model-based (BBR-like, [`congestion`]):
//!   random loss does not slow it, queue growth and loss bursts do; every
//!   packet is paced ([`pacer`]).
//! * **Streams** are opened by the `-l` side (one per accepted local
//!   client, ids 1, 2, …) with an empty STREAM frame at offset 0, so the
//!   `-c` side connects its service even before the client speaks. Each
//!   has its own FIN and reset; a reset abandons the stream both ways.
//! * **Memory and flow control** count *chunks* (a STREAM frame's data, at
//!   most [`CHUNK_CAP`] bytes) from pools the caller provides. A receiver
//!   grants each stream credit in chunks (MAX_STREAM_CHUNKS) and never
//!   grants more than its pool holds (room for the first
//!   [`Config::initial_chunks`] of every stream the peer may still open is
//!   kept), so anything granted can be stored: a slow local reader only
//!   stops its own stream, and a packet is acked only when all of it was
//!   kept. A stream's credit grows towards a fair share of the pool (at
//!   most half of it) as its reader consumes.
//!
//! ## Call order
//!
//! As every machine here: feed inputs ([`Connection::handle_packet`],
//! [`Connection::handle_timeout`], stream commands), then drain outputs
//! ([`Connection::poll_transmit`] until `None`, [`Connection::poll_opened`],
//! [`Connection::poll_event`]), then wait until
//! [`Connection::poll_timeout`] or the next input. Early or repeated
//! timeouts are harmless.

pub mod congestion;
mod connection;
pub mod pacer;
mod pool;
mod ranges;
mod recovery;
mod stream;

pub use congestion::{Bbr, CcStats, Controller, NewReno};
pub use connection::Connection;
pub use pool::{CHUNK_CAP, Chunk};
pub use recovery::SentPacket;
pub use stream::{Stream, code};

use crate::frame::pw1 as wire;
use core::fmt;

/// Which congestion controller to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CcKind {
    /// Model-based (the default).
    Bbr,
    /// Loss-based, for comparison.
    NewReno,
}

/// Settings of one [`Connection`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Largest datagram we send and accept. Default 1400.
    pub max_datagram: usize,
    /// Whether the peer may open streams (the `-c` side: it serves them).
    pub accept_streams: bool,
    /// Streams the peer may have open at once (clamped to the table).
    pub max_streams: u16,
    /// Chunks each stream may send before its first credit update.
    pub initial_chunks: u16,
    /// A PING after this long without sending anything. Default 15 s,
    /// four per OpenWrt's 60 s unreplied-UDP timeout.
    pub keepalive_ms: u32,
    /// Longest we hold back an ack. Default 5 ms.
    pub max_ack_delay_us: u32,
    /// Congestion controller.
    pub congestion: CcKind,
}

impl Config {
    /// Defaults; `accept_streams` for the `-c` side.
    pub const fn new(accept_streams: bool) -> Self {
        Config {
            max_datagram: wire::DEFAULT_MAX_DATAGRAM,
            accept_streams,
            max_streams: 256,
            initial_chunks: 8,
            keepalive_ms: 15_000,
            max_ack_delay_us: 5_000,
            congestion: CcKind::Bbr,
        }
    }

    /// Streams the peer may have open at once, given `storage`.
    pub fn max_streams_for(&self, storage: &Storage<'_>) -> u16 {
        if !self.accept_streams {
            return 0;
        }
        let by_table = storage.streams.len().min(usize::from(u16::MAX)) as u16;
        let by_pool = storage.recv.len() / usize::from(self.initial_chunks.max(1)) / 2;
        self.max_streams
            .min(by_table)
            .min(by_pool.min(usize::from(u16::MAX)) as u16)
    }

    fn validate(&self, storage: &Storage<'_>) -> Result<(), ConfigError> {
        if self.max_datagram < wire::MIN_MAX_DATAGRAM || self.max_datagram > 65_000 {
            return Err(ConfigError::Datagram);
        }
        if self.initial_chunks == 0 {
            return Err(ConfigError::Credit);
        }
        if storage.streams.is_empty()
            || storage.sent.len() < 16
            || storage.send.len() < 4
            || storage.recv.len() < 2 * usize::from(self.initial_chunks)
        {
            return Err(ConfigError::Storage);
        }
        Ok(())
    }
}

/// Why a connection cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// `max_datagram` outside 256..=65000.
    Datagram,
    /// `initial_chunks` is 0.
    Credit,
    /// A storage table is empty or too small (sent ring ≥ 16, send pool
    /// ≥ 4, receive pool ≥ 2 × `initial_chunks`).
    Storage,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConfigError::Datagram => "the datagram size must be 256-65000 bytes",
            ConfigError::Credit => "the initial stream credit must be at least one chunk",
            ConfigError::Storage => "the pw1 storage is too small",
        })
    }
}

/// The caller's memory for one connection. Sizes are the windows:
/// `send`/`recv` chunks of up to [`CHUNK_CAP`] bytes each way, `sent`
/// records (packets in flight at most), `streams` slots (streams at once).
pub struct Storage<'a> {
    /// Chunks for data we send, kept until acked.
    pub send: &'a mut [Chunk],
    /// Chunks for data we receive, kept until the local side reads it.
    pub recv: &'a mut [Chunk],
    /// Sent-packet records.
    pub sent: &'a mut [SentPacket],
    /// Stream table.
    pub streams: &'a mut [Stream],
}

/// What the peer told us in its capabilities.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerParams {
    /// Its incarnation token: our packets carry it.
    pub token: u64,
    /// Streams we may open at once.
    pub max_streams: u16,
    /// Chunks each stream may send before a credit update.
    pub initial_chunks: u16,
    /// Largest datagram it accepts.
    pub max_datagram: u16,
}

/// What [`Connection::stream_peek`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamRead<'a> {
    /// Bytes to write to the local side (then `stream_consume`).
    Data(&'a [u8]),
    /// Nothing yet.
    Blocked,
    /// The peer finished and everything was read: shut the local write side.
    Finished,
    /// The stream was reset.
    Reset,
    /// No such stream.
    Unknown,
}

/// Why a stream command was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamError {
    /// No such stream.
    Unknown,
    /// The stream was reset.
    Reset,
    /// `stream_finish` was called already.
    Finished,
    /// No chunk free for the FIN; try again after acks.
    NoMemory,
    /// No more streams may be opened now.
    Limit,
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StreamError::Unknown => "no such stream",
            StreamError::Reset => "the stream was reset",
            StreamError::Finished => "the stream was finished",
            StreamError::NoMemory => "no send buffer free",
            StreamError::Limit => "too many streams",
        })
    }
}

/// Stream events for the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Both halves finished; the local socket can be closed.
    StreamClosed(u32),
    /// The stream was reset (either side); close the local socket.
    StreamReset(u32),
}

/// Why a datagram was not taken. Never fatal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketError {
    /// The CRC-32C check failed (damaged or not a packet).
    Check,
    /// A header or frame does not parse.
    Malformed,
    /// For another incarnation of this side (a stale or forged packet).
    WrongToken,
    /// Seen before (or too old to tell).
    Duplicate,
    /// Data that could not be stored (not acked: it comes again).
    NoRoom,
}

impl fmt::Display for PacketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PacketError::Check => "pw1 packet failed its check",
            PacketError::Malformed => "malformed pw1 packet",
            PacketError::WrongToken => "pw1 packet for another incarnation",
            PacketError::Duplicate => "duplicate pw1 packet",
            PacketError::NoRoom => "pw1 data without room (not acked)",
        })
    }
}

/// Packets refused, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BadPackets {
    /// [`PacketError::Check`].
    pub check: u64,
    /// [`PacketError::Malformed`] (and frames inconsistent with the stream).
    pub malformed: u64,
    /// [`PacketError::WrongToken`].
    pub wrong_token: u64,
    /// [`PacketError::Duplicate`].
    pub duplicate: u64,
}

impl BadPackets {
    fn count(&mut self, e: PacketError) {
        match e {
            PacketError::Check => self.check += 1,
            PacketError::Malformed => self.malformed += 1,
            PacketError::WrongToken => self.wrong_token += 1,
            PacketError::Duplicate => self.duplicate += 1,
            PacketError::NoRoom => {}
        }
    }

    /// All refused packets.
    pub fn total(&self) -> u64 {
        self.check + self.malformed + self.wrong_token + self.duplicate
    }
}

/// Counters and estimates of a [`Connection`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Stats {
    /// Packets sent.
    pub packets_sent: u64,
    /// Datagram bytes sent.
    pub bytes_sent: u64,
    /// Packets handed to `handle_packet`.
    pub packets_received: u64,
    /// Datagram bytes received.
    pub bytes_received: u64,
    /// Packets declared lost.
    pub packets_lost: u64,
    /// Chunks sent again.
    pub retransmits: u64,
    /// Probe timeouts.
    pub ptos: u64,
    /// PINGs sent.
    pub pings_sent: u64,
    /// ACK frames sent.
    pub acks_sent: u64,
    /// ACK frames naming packets never sent (ignored).
    pub bad_acks: u64,
    /// STREAM frames sent (retransmissions included).
    pub stream_frames_sent: u64,
    /// STREAM frames stored.
    pub stream_frames_received: u64,
    /// Stream bytes taken from the local side.
    pub stream_bytes_sent: u64,
    /// Stream bytes handed to the local side.
    pub stream_bytes_received: u64,
    /// Packets dropped unacked for want of room.
    pub no_room: u64,
    /// Streams opened (both sides).
    pub streams_opened: u64,
    /// Streams reset.
    pub streams_reset: u64,
    /// Streams live now.
    pub streams: usize,
    /// Packets refused.
    pub bad: BadPackets,
    /// Smoothed RTT, µs.
    pub srtt_us: Option<u64>,
    /// Minimum RTT, µs.
    pub min_rtt_us: Option<u64>,
    /// Congestion window, bytes.
    pub cwnd: usize,
    /// Pacing rate, bytes/s.
    pub pacing_rate: u64,
    /// Bytes in flight.
    pub bytes_in_flight: usize,
    /// The controller's model.
    pub cc: Option<CcStats>,
}

/// The configured controller.
pub(crate) type Cc = congestion::AnyController;

fn new_cc(kind: CcKind, mtu: usize) -> Cc {
    match kind {
        CcKind::Bbr => Cc::Bbr(Bbr::new(congestion::BbrConfig {
            max_datagram: mtu,
            ..congestion::BbrConfig::default()
        })),
        CcKind::NewReno => Cc::NewReno(NewReno::new(congestion::NewRenoConfig {
            max_datagram: mtu,
            ..congestion::NewRenoConfig::default()
        })),
    }
}

/// The packet check: CRC-32C (Castagnoli) of the packet before it,
/// big-endian, in the last 4 bytes.
pub mod check {
    /// Bytes of the check.
    pub const LEN: usize = 4;

    const fn table() -> [u32; 256] {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0x82F6_3B78 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    }
    static TABLE: [u32; 256] = table();

    /// CRC-32C of `bytes`.
    pub fn crc32c(bytes: &[u8]) -> u32 {
        let mut c = !0u32;
        for &b in bytes {
            c = TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
        }
        !c
    }

    /// Writes the check of `packet[..len − 4]` into its last 4 bytes.
    ///
    /// # Panics
    /// If `packet` is shorter than 4 bytes.
    pub fn seal(packet: &mut [u8]) {
        let n = packet.len() - LEN;
        let c = crc32c(&packet[..n]);
        packet[n..].copy_from_slice(&c.to_be_bytes());
    }

    /// The packet without its check, if the check matches.
    pub fn verify(datagram: &[u8]) -> Option<&[u8]> {
        let n = datagram.len().checked_sub(LEN)?;
        let (body, tail) = datagram.split_at(n);
        (crc32c(body).to_be_bytes() == tail).then_some(body)
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn crc32c_check_value() {
            // The standard check value of CRC-32C.
            assert_eq!(super::crc32c(b"123456789"), 0xE306_9283);
            let mut p = *b"hello world\0\0\0\0";
            super::seal(&mut p);
            assert_eq!(super::verify(&p), Some(&b"hello world"[..]));
            p[3] ^= 1;
            assert_eq!(super::verify(&p), None);
            assert_eq!(super::verify(b"abc"), None);
        }
    }
}

#[cfg(test)]
mod tests;
