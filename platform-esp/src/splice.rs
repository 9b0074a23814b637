//! Splicing two TCP streams, written against the core's traits only (so it
//! runs on any backend; tested on the host in `tests/tests/smol_memory.rs`): what Linux `tcp --forward`/`--listen` do with
//! two threads, done here in one loop with two small caller-owned buffers.

use core::fmt;

use punchwire_core::net::{NetError, Tcp, Wait};
use punchwire_core::time::{self, Instant};

/// Bytes carried each way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// From the first stream to the second.
    pub forward: u64,
    /// From the second stream to the first.
    pub back: u64,
}

/// Why a splice ended early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpliceError {
    /// A stream failed (reset, closed under us); carries the error.
    Stream(NetError),
    /// Nothing moved either way for the idle limit.
    Idle,
    /// Waiting on the backend failed (link or lease lost).
    Wait(NetError),
}

impl fmt::Display for SpliceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpliceError::Stream(e) => write!(f, "stream failed: {e}"),
            SpliceError::Idle => f.write_str("nothing moved for the idle limit"),
            SpliceError::Wait(e) => write!(f, "network lost: {e}"),
        }
    }
}

/// One direction: bytes read from `from`, not yet written to `to`.
struct Pipe<'b> {
    buf: &'b mut [u8],
    at: usize,
    len: usize,
    /// `from` sent FIN.
    eof: bool,
    /// FIN passed on to `to`.
    shut: bool,
    moved: u64,
}

impl Pipe<'_> {
    /// Moves what it can; `Ok(true)` if anything happened.
    fn pump<N: Tcp>(
        &mut self,
        net: &mut N,
        from: N::TcpSocket,
        to: N::TcpSocket,
    ) -> Result<bool, NetError> {
        let mut progressed = false;
        loop {
            if self.at == self.len && !self.eof {
                match net.tcp_read(from, self.buf) {
                    Ok(0) => {
                        self.eof = true;
                        progressed = true;
                    }
                    Ok(n) => {
                        self.at = 0;
                        self.len = n;
                        progressed = true;
                    }
                    Err(NetError::WouldBlock) => {}
                    Err(e) => return Err(e),
                }
            }
            if self.at < self.len {
                match net.tcp_write(to, &self.buf[self.at..self.len]) {
                    Ok(n) => {
                        self.at += n;
                        self.moved += n as u64;
                        progressed |= n > 0;
                        if self.at == self.len {
                            continue;
                        }
                    }
                    Err(NetError::WouldBlock) => {}
                    Err(e) => return Err(e),
                }
            }
            break;
        }
        if self.eof && self.at == self.len && !self.shut {
            net.tcp_shutdown_write(to)?;
            self.shut = true;
            progressed = true;
        }
        Ok(progressed)
    }
}

/// Carries `a` ⇄ `b` until both have sent FIN and it was passed on (half
/// closes go through, as with `shutdown(SHUT_WR)`), a stream fails, or
/// nothing moves for `idle_limit_ms`. Leaves both sockets open: the caller
/// closes them (gracefully, FIN) whatever the result.
pub fn splice<N: Tcp + Wait>(
    net: &mut N,
    a: N::TcpSocket,
    b: N::TcpSocket,
    buf_ab: &mut [u8],
    buf_ba: &mut [u8],
    idle_limit_ms: u64,
) -> Result<Totals, SpliceError> {
    let new = |buf| Pipe {
        buf,
        at: 0,
        len: 0,
        eof: false,
        shut: false,
        moved: 0,
    };
    let (mut ab, mut ba) = (new(buf_ab), new(buf_ba));
    let mut now = net.now();
    let mut idle_until: Instant = time::add_millis(now, idle_limit_ms);
    loop {
        let forward = ab.pump(net, a, b).map_err(SpliceError::Stream)?;
        let back = ba.pump(net, b, a).map_err(SpliceError::Stream)?;
        if ab.shut && ba.shut {
            return Ok(Totals {
                forward: ab.moved,
                back: ba.moved,
            });
        }
        if forward || back {
            now = net.now();
            idle_until = time::add_millis(now, idle_limit_ms);
            continue;
        }
        if time::micros(now) >= time::micros(idle_until) {
            return Err(SpliceError::Idle);
        }
        now = net.wait(Some(idle_until)).map_err(SpliceError::Wait)?;
    }
}
