//! The generic punch driver: runs a [`PunchMachine`] over any backend that
//! implements the core's [`Tcp`] and [`Wait`] traits (Linux sockets,
//! smoltcp), so both platforms share every decision.

use core::fmt;
use core::net::{Ipv4Addr, SocketAddrV4};

use heapless::Vec;

use super::{Action, Event, MAX_ELECTION_BYTES, MAX_SLOTS, PunchError, PunchMachine, Winner};
use crate::net::{ConnectStatus, NetError, Tcp, Wait};
use crate::time::Instant;

/// Why [`punch`] returned without a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PunchDriverError {
    /// The punch itself failed.
    Punch(PunchError),
    /// Waiting on the backend failed.
    Wait(NetError),
}

impl fmt::Display for PunchDriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PunchDriverError::Punch(e) => e.fmt(f),
            PunchDriverError::Wait(e) => write!(f, "waiting for sockets failed: {e}"),
        }
    }
}

/// Handles by port. The machine never has more than MAX_SLOTS ports and
/// `take` runs before every `put` of the same port, so pushes never fail.
struct Table<S> {
    entries: Vec<(u16, S), MAX_SLOTS>,
}

impl<S: Copy> Table<S> {
    fn new() -> Self {
        Table {
            entries: Vec::new(),
        }
    }

    fn get(&self, port: u16) -> Option<S> {
        self.entries
            .iter()
            .find(|(p, _)| *p == port)
            .map(|(_, s)| *s)
    }

    fn take(&mut self, port: u16) -> Option<S> {
        let i = self.entries.iter().position(|(p, _)| *p == port)?;
        Some(self.entries.swap_remove(i).1)
    }

    fn put(&mut self, port: u16, socket: S) {
        let _ = self.entries.push((port, socket));
    }
}

/// The driver's sockets: per sprayed port one connection (connecting or
/// open), with the attempt it belongs to.
struct Sockets<N: Tcp> {
    conns: Table<(N::TcpSocket, u32)>,
}

/// Runs `machine` to its outcome over `net` and returns the winning
/// connection's socket, every other socket closed gracefully. `on_event`
/// sees the machine's events (progress for the user) with the time.
pub fn punch<N: Tcp + Wait>(
    net: &mut N,
    machine: &mut PunchMachine,
    mut on_event: impl FnMut(Event, Instant),
) -> Result<(N::TcpSocket, Winner), PunchDriverError> {
    let peer = machine.config().peer;
    let mut sockets: Sockets<N> = Sockets {
        conns: Table::new(),
    };
    let mut now = net.now();
    loop {
        let mut progressed = false;
        // Sockets first, timers second: a socket that progressed since the
        // last look (the peer's SYN crossed ours) must be seen before a
        // timer replaces it with a new connect.
        let connecting: Vec<u16, MAX_SLOTS> = machine.connecting_ports().collect();
        for port in connecting {
            if let Some((s, attempt)) = sockets.conns.get(port) {
                let status = net.tcp_status(s);
                machine.handle_status(port, attempt, status, now);
            }
        }
        let open: Vec<u16, MAX_SLOTS> = machine.open_ports().collect();
        for port in open {
            let want = machine.read_len(port);
            let Some((s, _)) = sockets.conns.get(port) else {
                continue;
            };
            if want == 0 {
                continue;
            }
            let mut buf = [0u8; MAX_ELECTION_BYTES];
            match net.tcp_read(s, &mut buf[..want]) {
                Ok(0) => machine.handle_closed(port, now),
                Ok(n) => {
                    progressed = true;
                    machine.handle_data(port, &buf[..n]);
                }
                Err(NetError::WouldBlock) => {}
                Err(_) => machine.handle_closed(port, now),
            }
        }
        machine.handle_timeout(now);
        while let Some(action) = machine.poll_action() {
            progressed = true;
            carry_out(net, machine, &mut sockets, action, peer, now);
        }
        while let Some(e) = machine.poll_event() {
            on_event(e, now);
        }
        if let Some(outcome) = machine.outcome() {
            let result = match outcome {
                Ok(w) => match sockets.conns.take(w.port) {
                    Some((s, _)) => Ok((s, w)),
                    None => Err(PunchDriverError::Punch(PunchError::PeerClosed)),
                },
                Err(e) => Err(PunchDriverError::Punch(e)),
            };
            // Whatever is left (ports the machine stopped tracking) goes too.
            while let Some((_, (s, _))) = sockets.conns.entries.pop() {
                net.tcp_close(s);
            }
            return result;
        }

        if progressed {
            continue;
        }
        now = net
            .wait(machine.poll_timeout())
            .map_err(PunchDriverError::Wait)?;
    }
}

fn carry_out<N: Tcp>(
    net: &mut N,
    machine: &mut PunchMachine,
    sockets: &mut Sockets<N>,
    action: Action,
    peer: Ipv4Addr,
    now: Instant,
) {
    match action {
        Action::Connect {
            port,
            attempt,
            prime_ttl,
            ttl,
        } => {
            if !machine.is_current(port, attempt) {
                return;
            }
            if let Some((old, _)) = sockets.conns.take(port) {
                match net.tcp_status(old) {
                    // The peer's SYN reached the old socket after the last
                    // look: never replace a socket that made progress, adopt
                    // it as this attempt instead.
                    status @ (ConnectStatus::Handshaking | ConnectStatus::Connected) => {
                        sockets.conns.put(port, (old, attempt));
                        machine.handle_status(port, attempt, status, now);
                        return;
                    }
                    // In SYN-SENT or dead: dropping it sends nothing.
                    _ => net.tcp_close(old),
                }
            }
            let to = SocketAddrV4::new(peer, port);
            if prime_ttl > 0 {
                // The prime's socket dies of the ICMP its TTL provokes;
                // drop it at once (in SYN-SENT: silently). A prime that
                // cannot be sent still leaves the fire to try.
                if let Ok(p) = net.tcp_bind_reuse(port) {
                    let _ = net
                        .tcp_set_ttl(p, prime_ttl)
                        .and_then(|()| net.tcp_connect(p, to));
                    net.tcp_close(p);
                }
            }
            let s = match net.tcp_bind_reuse(port) {
                Ok(s) => s,
                Err(e) => {
                    machine.handle_bind_error(port, attempt, e, now);
                    return;
                }
            };
            sockets.conns.put(port, (s, attempt));
            let started = net
                .tcp_set_ttl(s, ttl)
                .and_then(|()| net.tcp_connect(s, to));
            if let Err(e) = started {
                machine.handle_connect_error(port, attempt, e, now);
            }
        }
        Action::Send { port, bytes } => {
            let Some((s, _)) = sockets.conns.get(port) else {
                return;
            };
            // A dozen bytes on a fresh connection always fit the send
            // buffer; anything short of all of them is a broken connection.
            match net.tcp_write(s, &bytes) {
                Ok(n) if n == bytes.len() => {}
                _ => machine.handle_closed(port, now),
            }
        }
        Action::Close { port } => {
            if let Some((s, _)) = sockets.conns.take(port) {
                net.tcp_close(s);
            }
        }
    }
}
