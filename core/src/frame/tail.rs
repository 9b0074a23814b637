//! Heartbeat tails: what punchwire peers say to each other after the
//! 8-byte udphp greeting, which udphp.py ignores (SPEC §2).
//!
//! | tail | layout (big-endian) | meaning |
//! | --- | --- | --- |
//! | session | `PWS` n:u32 | v0.12 between punchwire peers: session `n` starts (from `-l`), or has been connected (the echo from `-c`) |
//! | capabilities | `PWC` version:u8 flags:u8 token:u64 peer_token:u64 max_streams:u16 initial_chunks:u16 max_datagram:u16 | who we are and what we speak, sent in every heartbeat |
//!
//! Capabilities (version 1):
//! * `flags` bit 0: the sender speaks pw1.
//! * `token`: the sender's incarnation token, random per process start;
//!   a new one means the peer restarted. pw1 packets to the sender carry it.
//! * `peer_token`: the receiver's token as the sender knows it (0 if it
//!   has not heard the receiver yet); a heartbeat that does not know us is
//!   answered at once with ours, which completes the handshake.
//! * `max_streams`, `initial_chunks`: pw1 stream limits the sender grants:
//!   how many streams the receiver may open at once and how many chunks
//!   each may send before its first MAX_STREAM_CHUNKS.
//! * `max_datagram`: the largest pw1 datagram the sender accepts.
//!
//! A longer capabilities tail (a later version) is read as far as this
//! version knows it; bytes after it are ignored.

/// Tag of a session announcement.
pub const SESSION_TAG: &[u8; 3] = b"PWS";
/// Tag of a capabilities tail.
pub const CAPS_TAG: &[u8; 3] = b"PWC";
/// Length of a session announcement tail.
pub const SESSION_LEN: usize = 7;
/// Length of a version-1 capabilities tail.
pub const CAPS_LEN: usize = 27;
/// Capability flag: speaks pw1.
pub const FLAG_PW1: u8 = 1;

/// A version-1 capabilities tail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    /// Capability flags ([`FLAG_PW1`]).
    pub flags: u8,
    /// The sender's incarnation token (never 0).
    pub token: u64,
    /// The receiver's token as the sender knows it, 0 if unknown.
    pub peer_token: u64,
    /// Streams the receiver may have open at once.
    pub max_streams: u16,
    /// Chunks each stream may send before its first credit update.
    pub initial_chunks: u16,
    /// Largest pw1 datagram the sender accepts.
    pub max_datagram: u16,
}

impl Caps {
    /// Whether the sender speaks pw1.
    pub fn pw1(&self) -> bool {
        self.flags & FLAG_PW1 != 0
    }
}

/// A parsed heartbeat tail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tail {
    /// No tail (udphp.py, or a punchwire without capabilities).
    None,
    /// `PWS` n.
    Session(u32),
    /// `PWC` ….
    Caps(Caps),
    /// Something else: ignored.
    Unknown,
}

impl Tail {
    /// Reads the bytes after a heartbeat greeting. Never fails: anything
    /// not understood is [`Tail::Unknown`].
    pub fn parse(tail: &[u8]) -> Tail {
        if tail.is_empty() {
            return Tail::None;
        }
        if tail.len() == SESSION_LEN && &tail[..3] == SESSION_TAG {
            return Tail::Session(u32::from_be_bytes([tail[3], tail[4], tail[5], tail[6]]));
        }
        if tail.len() >= CAPS_LEN && &tail[..3] == CAPS_TAG && tail[3] >= 1 {
            let u64_at = |i: usize| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&tail[i..i + 8]);
                u64::from_be_bytes(b)
            };
            let u16_at = |i: usize| u16::from_be_bytes([tail[i], tail[i + 1]]);
            let caps = Caps {
                flags: tail[4],
                token: u64_at(5),
                peer_token: u64_at(13),
                max_streams: u16_at(21),
                initial_chunks: u16_at(23),
                max_datagram: u16_at(25),
            };
            if caps.token == 0 {
                return Tail::Unknown;
            }
            return Tail::Caps(caps);
        }
        Tail::Unknown
    }

    /// Exact bytes [`emit`](Self::emit) writes.
    pub fn buffer_len(&self) -> usize {
        match self {
            Tail::None | Tail::Unknown => 0,
            Tail::Session(_) => SESSION_LEN,
            Tail::Caps(_) => CAPS_LEN,
        }
    }

    /// Writes the tail at the start of `buf`; `None` if `buf` is too short.
    pub fn emit(&self, buf: &mut [u8]) -> Option<usize> {
        let len = self.buffer_len();
        let b = buf.get_mut(..len)?;
        match *self {
            Tail::None | Tail::Unknown => {}
            Tail::Session(n) => {
                b[..3].copy_from_slice(SESSION_TAG);
                b[3..].copy_from_slice(&n.to_be_bytes());
            }
            Tail::Caps(c) => {
                b[..3].copy_from_slice(CAPS_TAG);
                b[3] = 1;
                b[4] = c.flags;
                b[5..13].copy_from_slice(&c.token.to_be_bytes());
                b[13..21].copy_from_slice(&c.peer_token.to_be_bytes());
                b[21..23].copy_from_slice(&c.max_streams.to_be_bytes());
                b[23..25].copy_from_slice(&c.initial_chunks.to_be_bytes());
                b[25..27].copy_from_slice(&c.max_datagram.to_be_bytes());
            }
        }
        Some(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vectors::XorShift;

    #[test]
    fn round_trips() {
        let caps = Caps {
            flags: FLAG_PW1,
            token: 0xdead_beef_0000_0001,
            peer_token: 0,
            max_streams: 256,
            initial_chunks: 8,
            max_datagram: 1400,
        };
        for t in [Tail::Session(7), Tail::Caps(caps)] {
            let mut b = [0u8; 40];
            let n = t.emit(&mut b).unwrap();
            assert_eq!(n, t.buffer_len());
            assert_eq!(Tail::parse(&b[..n]), t);
        }
        assert!(caps.pw1());
        assert_eq!(Tail::parse(b""), Tail::None);
        assert_eq!(Tail::parse(b"PWS\0\0\0"), Tail::Unknown);
        assert_eq!(Tail::parse(b"xyz"), Tail::Unknown);
        // A later, longer version is read as far as v1 goes.
        let mut b = [0u8; 40];
        Tail::Caps(caps).emit(&mut b).unwrap();
        b[3] = 2;
        assert!(matches!(Tail::parse(&b), Tail::Caps(c) if c.token == caps.token));
        // Token 0 means "unknown" and is never an identity.
        let mut z = [0u8; CAPS_LEN];
        Tail::Caps(Caps { token: 1, ..caps }).emit(&mut z).unwrap();
        z[5..13].fill(0);
        assert_eq!(Tail::parse(&z), Tail::Unknown);
    }

    #[test]
    fn random_tails_never_panic() {
        let mut rng = XorShift(77);
        let mut b = [0u8; 64];
        for _ in 0..20_000 {
            let n = (rng.next() % 64) as usize;
            for x in b[..n].iter_mut() {
                *x = rng.next() as u8;
            }
            if n >= 3 && rng.next().is_multiple_of(2) {
                b[..3].copy_from_slice(CAPS_TAG);
            }
            let _ = Tail::parse(&b[..n]);
        }
    }
}
