//! Choosing one connection out of the many a spray opens.
//!
//! Several schedule ports may connect at once; both sides must keep the same
//! one. Only one side, the *leader*, ever proposes; the *follower* confirms.
//!
//! ## Wire (election v2)
//! On each connection, in this order, nothing else before the application's
//! bytes:
//!
//! | who      | bytes                          | when                                   |
//! |----------|--------------------------------|----------------------------------------|
//! | both     | hello: `PWH2` + 64-bit nonce (big endian), 12 bytes | as soon as it opens (nonce election only) |
//! | leader   | `$` (0x24), the proposal       | on a connection where it read the peer's hello (nonce) or that opened (public-IP rule) |
//! | follower | `!` (0x21), the confirmation   | on the first connection where it reads `$`, once |
//!
//! * The **follower** keeps every open connection until it reads `$` on
//!   one; then it writes `!` there, keeps that connection and closes every
//!   other (FIN). It writes `!` only once, and only on a connection that
//!   carried the leader's hello and `$`: it never settles on a connection
//!   that carried nothing.
//! * The **leader** writes `$` on its first candidate and keeps every
//!   connection open until it reads `!`. If no `!` comes within
//!   [`PunchConfig::confirm_ms`](super::PunchConfig::confirm_ms) (default
//!   1 s, a few round trips plus a retransmission), it writes `$` on the
//!   next candidate too (earlier proposals stay open: a slow one may still
//!   be confirmed). The first `!` it reads names the winner; it then closes
//!   the rest. A connection whose leader→follower direction is dead (a
//!   router dropping it) so never decides anything: its `$` is not
//!   confirmed and another connection is proposed.
//! * Why this cannot split: the follower confirms exactly one connection
//!   (the first `$` it reads), and the leader keeps exactly the connection
//!   it reads that `!` on. Data flows only after: the leader writes after
//!   reading `!`, the follower after writing it.
//!
//! Who leads:
//! * [`Election::Nonce`] (default): the greater nonce leads. Reading one's
//!   own nonce back means the connection is to itself (the `127.0.0.1`
//!   demonstration): that connection wins at once, no `$`/`!`.
//! * [`Election::PublicIp`] (`--public-ip`): the article's rule — the side
//!   with the greater WAN IPv4 leads; no hello, but `$` is confirmed with
//!   `!` like above (the article's follower sends nothing back; a leader
//!   that did not wait for it hung on a connection that was dead one way).
//! * [`Election::FirstConnected`] (`--reference`): no election and no
//!   bytes (`tcp_punch.py` keeps every connection): the first one to open
//!   is kept, the rest closed. Unchanged, since the reference cannot
//!   confirm.
//!
//! Compatibility: v1 (`PWH1`, no confirmation) and v2 peers do not agree;
//! the new magic makes a v2 side drop a v1 peer's connections as "not our
//! protocol" (exit code 5, "the peer never chose a connection") instead of
//! taking the `!` as application data. With `--public-ip` there is no hello
//! to tell the versions apart: both sides must run v2.

use core::net::Ipv4Addr;

/// Magic that starts a hello.
pub const HELLO_MAGIC: &[u8; 4] = b"PWH2";
/// Length of a hello: magic + nonce.
pub const HELLO_LEN: usize = 12;
/// The leader's proposal byte.
pub const CHOSEN: u8 = b'$';
/// The follower's confirmation byte.
pub const CONFIRMED: u8 = b'!';

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
    /// Proposes with `$`, keeps the connection the follower confirms.
    Leader,
    /// Waits for `$`, confirms it with `!`.
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
