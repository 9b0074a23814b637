//! `H…` heartbeats.
//!
//! udphp.py counts any datagram that starts with `H` as a heartbeat and
//! ignores the rest, so bytes after the 8-byte greeting are free for
//! capability announcements between punchwire peers (SPEC §2, "planned
//! extension"); they are kept in [`HeartbeatRepr::tail`].

use super::{Error, Result};

/// Greeting of the `-c` ("server") side.
pub const CONNECT_GREETING: &[u8; 8] = b"HELOCLNT";
/// Greeting of the `-l` ("client") side.
pub const LISTEN_GREETING: &[u8; 8] = b"HELOSRVR";

/// Which side of the tunnel a peer runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// `-c`: connects to the local TCP service; sends `HELOCLNT`.
    Connect,
    /// `-l`: listens for the local TCP client; sends `HELOSRVR`.
    Listen,
}

impl Role {
    /// The 8-byte greeting this role sends.
    pub const fn greeting(self) -> &'static [u8; 8] {
        match self {
            Role::Connect => CONNECT_GREETING,
            Role::Listen => LISTEN_GREETING,
        }
    }
}

/// A view over an `H` datagram: at least the type byte.
#[derive(Debug, Clone)]
pub struct HeartbeatFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> HeartbeatFrame<T> {
    /// Wraps bytes without checking them.
    pub const fn new_unchecked(buffer: T) -> Self {
        HeartbeatFrame { buffer }
    }

    /// Wraps bytes that start with `H`.
    pub fn new_checked(buffer: T) -> Result<Self> {
        match buffer.as_ref().first() {
            None => Err(Error::Truncated),
            Some(b'H') => Ok(HeartbeatFrame { buffer }),
            Some(&other) => Err(Error::UnknownType(other)),
        }
    }

    /// The sender's role, when the greeting is one of the two udphp ones.
    pub fn role(&self) -> Option<Role> {
        match self.buffer.as_ref().get(..8) {
            Some(g) if g == CONNECT_GREETING => Some(Role::Connect),
            Some(g) if g == LISTEN_GREETING => Some(Role::Listen),
            _ => None,
        }
    }

    /// Bytes after a recognised 8-byte greeting (empty otherwise).
    pub fn tail(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        if self.role().is_some() { &b[8..] } else { &[] }
    }
}

/// A parsed heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeartbeatRepr<'a> {
    /// Sender's role, if it sent a standard greeting.
    pub role: Option<Role>,
    /// Bytes after the greeting (capabilities; empty from udphp.py).
    pub tail: &'a [u8],
}

impl<'a> HeartbeatRepr<'a> {
    /// A plain udphp heartbeat for `role`.
    pub const fn plain(role: Role) -> Self {
        HeartbeatRepr {
            role: Some(role),
            tail: &[],
        }
    }

    /// Reads a checked frame.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(frame: &HeartbeatFrame<&'a T>) -> Self {
        let bytes: &'a [u8] = frame.buffer.as_ref();
        let role = frame.role();
        HeartbeatRepr {
            role,
            tail: if role.is_some() { &bytes[8..] } else { &[] },
        }
    }

    /// Exact emitted length: the greeting (or a bare `H`) plus the tail.
    pub fn buffer_len(&self) -> usize {
        match self.role {
            Some(_) => 8 + self.tail.len(),
            None => 1,
        }
    }

    /// Writes the heartbeat into a buffer of exactly `buffer_len` bytes.
    ///
    /// # Panics
    /// If the buffer has a different length.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut HeartbeatFrame<T>) {
        let b = frame.buffer.as_mut();
        match self.role {
            Some(role) => {
                b[..8].copy_from_slice(role.greeting());
                b[8..].copy_from_slice(self.tail);
            }
            None => b[0] = b'H',
        }
    }
}
