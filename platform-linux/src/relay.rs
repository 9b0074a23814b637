//! Byte pumps for after a punch: netcat (stdin/stdout) and relaying to a
//! local TCP connection. Blocking I/O on two threads per relay — simple,
//! and the timing-critical part (the punch) is over by then. Each direction
//! ends with a half-close, so both sides see every byte and a clean EOF.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::thread;

use socket2::Socket;

/// Byte counts of a finished relay.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Bytes sent to the peer.
    pub sent: u64,
    /// Bytes received from the peer.
    pub received: u64,
}

/// Copies `from` to `to` until EOF; returns the count.
fn pump(mut from: impl Read, mut to: impl Write) -> io::Result<u64> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        to.flush()?;
        total += n as u64;
    }
    Ok(total)
}

fn blocking(s: &Socket) -> io::Result<()> {
    s.set_nonblocking(false)
}

/// netcat: stdin → `conn`, `conn` → stdout. At stdin EOF the write side is
/// shut; it returns once the peer has closed its side too.
pub fn netcat(conn: Socket) -> io::Result<Totals> {
    blocking(&conn)?;
    let writer = conn.try_clone()?;
    let up = thread::spawn(move || {
        let r = pump(io::stdin().lock(), &writer);
        // Tell the peer we are done even if the copy failed midway.
        let _ = writer.shutdown(Shutdown::Write);
        r
    });
    let received = pump(&conn, io::stdout().lock());
    let sent = up
        .join()
        .map_err(|_| io::Error::other("stdin thread panicked"))?;
    Ok(Totals {
        sent: sent?,
        received: received?,
    })
}

/// Relays `conn` (the peer) and `local` both ways until both are done.
pub fn relay(conn: Socket, local: Socket) -> io::Result<Totals> {
    blocking(&conn)?;
    blocking(&local)?;
    let (conn2, local2) = (conn.try_clone()?, local.try_clone()?);
    let up = thread::spawn(move || {
        let r = pump(&local2, &conn2);
        let _ = conn2.shutdown(Shutdown::Write);
        r
    });
    let received = pump(&conn, &local);
    let _ = local.shutdown(Shutdown::Write);
    let sent = up
        .join()
        .map_err(|_| io::Error::other("relay thread panicked"))?;
    Ok(Totals {
        sent: sent?,
        received: received?,
    })
}
