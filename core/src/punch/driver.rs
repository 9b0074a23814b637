//! The generic punch driver: runs a [`PunchMachine`] over any backend that
//! implements the core's [`Tcp`] and [`Wait`] traits (Linux sockets,
//! smoltcp), so both platforms share every decision.

use core::fmt;
use core::net::{Ipv4Addr, SocketAddrV4};

use heapless::Vec;

use super::{Action, Event, MAX_ELECTION_BYTES, MAX_SLOTS, PunchError, PunchMachine, Winner};
use crate::net::{ConnectStatus, NetError, Tcp, Wait};
use crate::time::{self, Instant};

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
/// `take` runs before every `put` of the same port, so a push never finds
/// the table full (checked in debug builds).
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

    /// Stores `socket` for `port`; `Err` gives it back when the table is
    /// full (the caller closes it: never a leaked socket).
    fn put(&mut self, port: u16, socket: S) -> Result<(), S> {
        debug_assert!(self.get(port).is_none(), "port {port} has a socket already");
        let r = self.entries.push((port, socket)).map_err(|(_, s)| s);
        debug_assert!(r.is_ok(), "the socket table is full");
        r
    }
}

/// What one [`PunchDriver::poll`] says.
#[derive(Debug, PartialEq, Eq)]
pub enum PunchPoll<S> {
    /// The punch is over: the winning connection's socket (every other
    /// socket closed gracefully), or why there is none.
    Done(Result<(S, Winner), PunchError>),
    /// Nothing more to do before a socket becomes ready or this deadline
    /// passes (`None`: only a socket can wake it).
    Wait(Option<Instant>),
}

/// Most rounds of one [`PunchDriver::poll`] before it yields with a
/// deadline of `now` (a socket that keeps producing cannot starve the
/// caller's other work).
const MAX_ROUNDS: usize = 16;

/// The punch driver as a steppable object: [`poll`](Self::poll) does
/// everything that can be done at `now` without blocking and says when to
/// call again. [`punch`] is the loop of `poll` and [`Wait::wait`] over it;
/// a harness (or a firmware with other work) calls `poll` itself, with its
/// own clock.
pub struct PunchDriver<S> {
    /// Per sprayed port one connection (connecting or open), with the
    /// attempt it belongs to.
    conns: Table<(S, u32)>,
    done: bool,
}

impl<S: Copy + Eq + fmt::Debug> Default for PunchDriver<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: Copy + Eq + fmt::Debug> PunchDriver<S> {
    /// A driver with no sockets yet.
    pub fn new() -> Self {
        PunchDriver {
            conns: Table::new(),
            done: false,
        }
    }

    /// Sockets the driver holds now (connecting or open).
    pub fn sockets(&self) -> usize {
        self.conns.entries.len()
    }

    /// Runs `machine` over `net` at `now`: reports every socket's progress,
    /// the timers, carries out the actions and hands the events to
    /// `on_event`, until nothing is left to do at `now`. After `Done` the
    /// driver holds no socket and further polls return `Wait(None)`.
    pub fn poll<N: Tcp<TcpSocket = S>>(
        &mut self,
        net: &mut N,
        machine: &mut PunchMachine,
        now: Instant,
        on_event: &mut impl FnMut(Event, Instant),
    ) -> PunchPoll<S> {
        if self.done {
            return PunchPoll::Wait(None);
        }
        let peer = machine.config().peer;
        for _ in 0..MAX_ROUNDS {
            let mut progressed = false;
            // Sockets first, timers second: a socket that progressed since
            // the last look (the peer's SYN crossed ours) must be seen
            // before a timer replaces it with a new connect.
            let connecting: Vec<u16, MAX_SLOTS> = machine.connecting_ports().collect();
            for port in connecting {
                if let Some((s, attempt)) = self.conns.get(port) {
                    let status = net.tcp_status(s);
                    machine.handle_status(port, attempt, status, now);
                }
            }
            let open: Vec<u16, MAX_SLOTS> = machine.open_ports().collect();
            for port in open {
                let want = machine.read_len(port);
                let Some((s, _)) = self.conns.get(port) else {
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
                        machine.handle_data(port, &buf[..n], now);
                    }
                    Err(NetError::WouldBlock) => {}
                    Err(_) => machine.handle_closed(port, now),
                }
            }
            machine.handle_timeout(now);
            while let Some(action) = machine.poll_action() {
                progressed = true;
                carry_out(net, machine, &mut self.conns, action, peer, now);
            }
            while let Some(e) = machine.poll_event() {
                on_event(e, now);
            }
            if let Some(outcome) = machine.outcome() {
                let result = match outcome {
                    Ok(w) => match self.conns.take(w.port) {
                        Some((s, _)) => Ok((s, w)),
                        None => Err(PunchError::PeerClosed),
                    },
                    Err(e) => Err(e),
                };
                // Whatever is left (ports the machine stopped tracking) goes too.
                while let Some((_, (s, _))) = self.conns.entries.pop() {
                    net.tcp_close(s);
                }
                self.done = true;
                return PunchPoll::Done(result);
            }
            if !progressed {
                return PunchPoll::Wait(machine.poll_timeout());
            }
        }
        PunchPoll::Wait(Some(now))
    }
}

/// Runs `machine` to its outcome over `net` and returns the winning
/// connection's socket, every other socket closed gracefully. `on_event`
/// sees the machine's events (progress for the user) with the time. This
/// is [`PunchDriver::poll`] in a loop with [`Wait::wait`].
pub fn punch<N: Tcp + Wait>(
    net: &mut N,
    machine: &mut PunchMachine,
    mut on_event: impl FnMut(Event, Instant),
) -> Result<(N::TcpSocket, Winner), PunchDriverError> {
    let mut driver = PunchDriver::new();
    let mut now = net.now();
    loop {
        match driver.poll(net, machine, now, &mut on_event) {
            PunchPoll::Done(r) => return r.map_err(PunchDriverError::Punch),
            PunchPoll::Wait(Some(t)) if time::micros(t) <= time::micros(now) => {
                now = net.now();
            }
            PunchPoll::Wait(deadline) => {
                now = net.wait(deadline).map_err(PunchDriverError::Wait)?;
            }
        }
    }
}

fn carry_out<N: Tcp>(
    net: &mut N,
    machine: &mut PunchMachine,
    conns: &mut Table<(N::TcpSocket, u32)>,
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
            if let Some((old, _)) = conns.take(port) {
                match net.tcp_status(old) {
                    // The peer's SYN reached the old socket after the last
                    // look: never replace a socket that made progress, adopt
                    // it as this attempt instead.
                    status @ (ConnectStatus::Handshaking | ConnectStatus::Connected) => {
                        if let Err(old) = conns.put(port, (old, attempt)) {
                            net.tcp_close(old.0);
                        }
                        machine.handle_status(port, attempt, status, now);
                        return;
                    }
                    // Failed (a port is armed only from idle), or in
                    // SYN-SENT: dropping it sends nothing.
                    _ => net.tcp_close(old),
                }
            }
            let to = SocketAddrV4::new(peer, port);
            // The prime goes out first, then the fire at once, and no SYN
            // of the peer may find the port without a socket in between
            // (the kernel would answer it with RST, which a router applies
            // to the entry the prime pinned). So the fire's socket is made
            // and bound *before* the prime's socket is dropped, and nothing
            // but the prime's close stands between the two connects. (Linux
            // refuses a second connect on the same four-tuple while the
            // first is in SYN-SENT, so the prime must go before the fire
            // connects: the window left is two adjacent system calls. On
            // smoltcp nothing reaches a socket between them.)
            let prime = if prime_ttl > 0 {
                // The prime's socket dies of the ICMP its TTL provokes. A
                // prime that cannot be sent still leaves the fire to try.
                net.tcp_bind_reuse(port).ok().map(|p| {
                    let _ = net
                        .tcp_set_ttl(p, prime_ttl)
                        .and_then(|()| net.tcp_connect(p, to));
                    p
                })
            } else {
                None
            };
            let mut prime = prime;
            let bound = match net.tcp_bind_reuse(port) {
                // A pool one socket short for both: the prime gives its
                // socket to the fire (the old order; smoltcp sees no
                // packet between the two calls anyway).
                Err(NetError::NoBuffers) if prime.is_some() => {
                    if let Some(p) = prime.take() {
                        net.tcp_close(p);
                    }
                    net.tcp_bind_reuse(port)
                }
                r => r,
            };
            let s = match bound {
                Ok(s) => s,
                Err(e) => {
                    if let Some(p) = prime {
                        net.tcp_close(p);
                    }
                    machine.handle_bind_error(port, attempt, e, now);
                    return;
                }
            };
            let ttl_set = net.tcp_set_ttl(s, ttl);
            if let Some(p) = prime {
                // In SYN-SENT: closing it is silent.
                net.tcp_close(p);
            }
            let started = ttl_set.and_then(|()| net.tcp_connect(s, to));
            if let Err((s, _)) = conns.put(port, (s, attempt)) {
                net.tcp_close(s);
                return;
            }
            if let Err(e) = started {
                machine.handle_connect_error(port, attempt, e, now);
            }
        }
        Action::Send { port, bytes } => {
            let Some((s, _)) = conns.get(port) else {
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
            if let Some((s, _)) = conns.take(port) {
                net.tcp_close(s);
            }
        }
    }
}
