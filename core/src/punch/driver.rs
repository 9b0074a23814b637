//! The generic punch driver: runs a [`PunchMachine`] over any backend that
//! implements the core's [`Tcp`] and [`Wait`] traits (Linux sockets,
//! smoltcp), so both platforms share every decision.

use core::fmt;
use core::net::SocketAddrV4;

use heapless::Vec;

use super::{Action, Event, MAX_ELECTION_BYTES, MAX_SLOTS, PunchError, PunchMachine, Winner};
use crate::net::{NetError, Tcp, Wait};
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

struct Table<S> {
    sockets: Vec<(u16, S), MAX_SLOTS>,
}

impl<S: Copy> Table<S> {
    fn get(&self, port: u16) -> Option<S> {
        self.sockets
            .iter()
            .find(|(p, _)| *p == port)
            .map(|(_, s)| *s)
    }

    fn take(&mut self, port: u16) -> Option<S> {
        let i = self.sockets.iter().position(|(p, _)| *p == port)?;
        Some(self.sockets.swap_remove(i).1)
    }

    fn put(&mut self, port: u16, socket: S) {
        // The machine never has more than MAX_SLOTS ports, and `take` runs
        // before every `put` of the same port.
        let _ = self.sockets.push((port, socket));
    }
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
    let mut table: Table<N::TcpSocket> = Table {
        sockets: Vec::new(),
    };
    let mut now = net.now();
    machine.handle_timeout(now);
    loop {
        let mut progressed = false;
        while let Some(action) = machine.poll_action() {
            progressed = true;
            carry_out(net, machine, &mut table, action, peer, now);
        }
        while let Some(e) = machine.poll_event() {
            on_event(e, now);
        }
        if let Some(outcome) = machine.outcome() {
            let result = match outcome {
                Ok(w) => match table.take(w.port) {
                    Some(s) => Ok((s, w)),
                    None => Err(PunchDriverError::Punch(PunchError::PeerClosed)),
                },
                Err(e) => Err(PunchDriverError::Punch(e)),
            };
            // Whatever is left (ports the machine stopped tracking) goes too.
            while let Some((_, s)) = table.sockets.pop() {
                net.tcp_close(s);
            }
            return result;
        }

        let connecting: Vec<u16, MAX_SLOTS> = machine.connecting_ports().collect();
        for port in connecting {
            if let Some(s) = table.get(port) {
                let status = net.tcp_status(s);
                machine.handle_status(port, status, now);
            }
        }
        let open: Vec<u16, MAX_SLOTS> = machine.open_ports().collect();
        for port in open {
            let want = machine.read_len(port);
            let Some(s) = table.get(port) else { continue };
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
        if progressed || machine.outcome().is_some() {
            continue;
        }
        now = net
            .wait(machine.poll_timeout())
            .map_err(PunchDriverError::Wait)?;
        machine.handle_timeout(now);
    }
}

fn carry_out<N: Tcp>(
    net: &mut N,
    machine: &mut PunchMachine,
    table: &mut Table<N::TcpSocket>,
    action: Action,
    peer: core::net::Ipv4Addr,
    now: Instant,
) {
    match action {
        Action::Connect {
            port,
            ttl,
            then_ttl,
        } => {
            // The old socket is in SYN-SENT or closed: dropping it is silent.
            if let Some(old) = table.take(port) {
                net.tcp_close(old);
            }
            let s = match net.tcp_bind_reuse(port) {
                Ok(s) => s,
                Err(e) => {
                    machine.handle_connect_error(port, e, now);
                    return;
                }
            };
            table.put(port, s);
            let started = net
                .tcp_set_ttl(s, ttl)
                .and_then(|()| net.tcp_connect(s, SocketAddrV4::new(peer, port)))
                .and_then(|()| {
                    if then_ttl != ttl {
                        net.tcp_set_ttl(s, then_ttl)
                    } else {
                        Ok(())
                    }
                });
            if let Err(e) = started {
                machine.handle_connect_error(port, e, now);
            }
        }
        Action::Send { port, bytes } => {
            let Some(s) = table.get(port) else { return };
            // A dozen bytes on a fresh connection always fit the send
            // buffer; anything short of all of them is a broken connection.
            match net.tcp_write(s, &bytes) {
                Ok(n) if n == bytes.len() => {}
                _ => machine.handle_closed(port, now),
            }
        }
        Action::Close { port } => {
            if let Some(s) = table.take(port) {
                net.tcp_close(s);
            }
        }
    }
}
