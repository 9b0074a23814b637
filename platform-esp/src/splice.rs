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
struct Pipe<B> {
    buf: B,
    at: usize,
    len: usize,
    /// `from` sent FIN.
    eof: bool,
    /// FIN passed on to `to`.
    shut: bool,
    moved: u64,
}

impl<B: AsMut<[u8]>> Pipe<B> {
    fn new(buf: B) -> Self {
        Pipe {
            buf,
            at: 0,
            len: 0,
            eof: false,
            shut: false,
            moved: 0,
        }
    }

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
                match net.tcp_read(from, self.buf.as_mut()) {
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
                match net.tcp_write(to, &self.buf.as_mut()[self.at..self.len]) {
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

/// What one [`Splice::poll`] says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplicePoll {
    /// Both FINs passed on (the totals), or why it ended early.
    Done(Result<Totals, SpliceError>),
    /// Call again when a socket may be ready or at this deadline (the
    /// idle limit).
    Wait(Instant),
}

/// The splice as a steppable object over caller-owned buffers (`&mut
/// [u8]`, a `Vec`, a static array): [`splice`] is the loop of
/// [`poll`](Self::poll) and [`Wait::wait`] over it.
pub struct Splice<S, B> {
    a: S,
    b: S,
    ab: Pipe<B>,
    ba: Pipe<B>,
    idle_limit_ms: u64,
    idle_until: Option<Instant>,
}

impl<S: Copy, B: AsMut<[u8]>> Splice<S, B> {
    /// Carries `a` ⇄ `b` through `buf_ab` and `buf_ba`; gives up when
    /// nothing moved for `idle_limit_ms`.
    pub fn new(a: S, b: S, buf_ab: B, buf_ba: B, idle_limit_ms: u64) -> Self {
        Splice {
            a,
            b,
            ab: Pipe::new(buf_ab),
            ba: Pipe::new(buf_ba),
            idle_limit_ms,
            idle_until: None,
        }
    }

    /// Moves everything that can move at `now`.
    pub fn poll<N: Tcp<TcpSocket = S>>(&mut self, net: &mut N, now: Instant) -> SplicePoll {
        let idle_until = *self
            .idle_until
            .get_or_insert_with(|| time::add_millis(now, self.idle_limit_ms));
        let mut moved = false;
        loop {
            let forward = match self.ab.pump(net, self.a, self.b) {
                Ok(p) => p,
                Err(e) => return SplicePoll::Done(Err(SpliceError::Stream(e))),
            };
            let back = match self.ba.pump(net, self.b, self.a) {
                Ok(p) => p,
                Err(e) => return SplicePoll::Done(Err(SpliceError::Stream(e))),
            };
            if self.ab.shut && self.ba.shut {
                return SplicePoll::Done(Ok(Totals {
                    forward: self.ab.moved,
                    back: self.ba.moved,
                }));
            }
            if !(forward || back) {
                break;
            }
            moved = true;
        }
        if moved {
            let until = time::add_millis(now, self.idle_limit_ms);
            self.idle_until = Some(until);
            return SplicePoll::Wait(until);
        }
        if time::micros(now) >= time::micros(idle_until) {
            return SplicePoll::Done(Err(SpliceError::Idle));
        }
        SplicePoll::Wait(idle_until)
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
    let mut splice = Splice::new(a, b, buf_ab, buf_ba, idle_limit_ms);
    let mut now = net.now();
    loop {
        match splice.poll(net, now) {
            SplicePoll::Done(r) => return r,
            SplicePoll::Wait(until) => {
                now = net.wait(Some(until)).map_err(SpliceError::Wait)?;
            }
        }
    }
}
