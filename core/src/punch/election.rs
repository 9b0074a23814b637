//! Choosing one connection out of the many a spray opens.
//!
//! Several schedule ports may connect at once; both sides must keep the same
//! one. Only one side, the *leader*, ever decides: it writes `$` on its
//! chosen connection and closes the rest with FIN. The *follower* keeps every
//! open connection until it reads `$` on one. A connection that is lost or
//! opens late cannot split the decision, because there is exactly one
//! decision and it travels inside the connection it names.
//!
//! Who leads:
//! * [`Election::Nonce`] (default): each side writes a 12-byte hello,
//!   `PWH1` + a random 64-bit nonce, on every connection it sees open; the
//!   greater nonce leads. The leader decides only on a connection where it
//!   has read the peer's hello, which proves the connection works both ways.
//!   Reading one's own nonce back means the connection is to itself (the
//!   `127.0.0.1` demonstration): that connection wins at once.
//! * [`Election::PublicIp`]: the article's rule — the side with the greater
//!   WAN IPv4 leads; no hello.
//! * [`Election::FirstConnected`]: no election (`tcp_punch.py` keeps every
//!   connection): the first one to open is kept, the rest closed.

use core::net::Ipv4Addr;

/// Magic that starts a hello.
pub const HELLO_MAGIC: &[u8; 4] = b"PWH1";
/// Length of a hello: magic + nonce.
pub const HELLO_LEN: usize = 12;
/// The leader's decision byte.
pub const CHOSEN: u8 = b'$';

/// How the winner is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Election {
    /// Hello with a random nonce on every connection; needs only the peer's
    /// address. The nonce comes from the driver's random source.
    Nonce(u64),
    /// The article's rule with both WAN addresses known.
    PublicIp {
        /// This side's public IPv4.
        mine: Ipv4Addr,
        /// The peer's public IPv4.
        peer: Ipv4Addr,
    },
    /// Keep the first connection (interop with `tcp_punch.py`).
    FirstConnected,
}

/// This side's part in the election, once known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// Decides and writes `$`.
    Leader,
    /// Waits for `$`.
    Follower,
    /// Connected to itself (same nonce read back).
    SelfConnected,
    /// No election: first connection wins.
    First,
}

impl Election {
    /// The part known before any connection opens, if any.
    pub fn part_up_front(&self) -> Option<Part> {
        match *self {
            Election::Nonce(_) => None,
            Election::PublicIp { mine, peer } => Some(if u32::from(mine) > u32::from(peer) {
                Part::Leader
            } else {
                Part::Follower
            }),
            Election::FirstConnected => Some(Part::First),
        }
    }

    /// The hello this side writes on each open connection, if any.
    pub fn hello(&self) -> Option<[u8; HELLO_LEN]> {
        match *self {
            Election::Nonce(nonce) => {
                let mut h = [0u8; HELLO_LEN];
                h[..4].copy_from_slice(HELLO_MAGIC);
                h[4..].copy_from_slice(&nonce.to_be_bytes());
                Some(h)
            }
            _ => None,
        }
    }
}

/// The peer's nonce from a complete hello, or `None` if it is not one.
pub fn parse_hello(bytes: &[u8]) -> Option<u64> {
    if bytes.len() != HELLO_LEN || &bytes[..4] != HELLO_MAGIC {
        return None;
    }
    let mut n = [0u8; 8];
    n.copy_from_slice(&bytes[4..]);
    Some(u64::from_be_bytes(n))
}

/// The part a nonce comparison gives.
pub fn part_from_nonces(mine: u64, peer: u64) -> Part {
    match mine.cmp(&peer) {
        core::cmp::Ordering::Greater => Part::Leader,
        core::cmp::Ordering::Less => Part::Follower,
        core::cmp::Ordering::Equal => Part::SelfConnected,
    }
}
