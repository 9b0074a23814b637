//! A deterministic network for the punch driver's tests: two nodes, one
//! world on a virtual clock, no threads, no sleeps. It models what the
//! punch depends on at the level of TCP segments, not bytes on a wire:
//!
//! * a SYN reaches the peer after `one_way` unless its TTL is below
//!   [`PATH_TTL`] (a prime: it only opens this node's NAT entry);
//! * with `nat` on, a node's router lets a SYN from the peer in only on a
//!   port where the node sent a SYN (a conntrack entry) and no RST has
//!   passed since (an RST closes the entry; the peer's SYN is then invalid
//!   and dropped, until the node's next SYN opens it again). A SYN with no
//!   entry is dropped, or with `reject` answered with RST by the router
//!   (the lab's `openwrt` profile: `reject with tcp reset`);
//! * a SYN that finds a socket in SYN-SENT on its port opens by
//!   simultaneous open (SYN-ACKs cross, both sides established); one that
//!   finds none is answered with RST, which fails the sender's connect;
//! * a SYN in SYN-SENT is retransmitted every [`SYN_RTO_US`];
//! * stream bytes and FINs take `one_way`; a direction of a port listed in
//!   `dead` (from node, port) silently loses them (a router dropping one
//!   direction of an established connection: the sender's stack would
//!   retransmit forever, so the sender sees nothing wrong).
//!
//! Every segment is appended to `trace`, so two runs can be compared.

extern crate std;

use core::cell::RefCell;
use core::net::SocketAddrV4;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::format;
use std::rc::Rc;
use std::string::String;
use std::vec::Vec;

use crate::net::{ConnectStatus, NetError, NetResult, Tcp, Wait};
use crate::time::{self, Instant};

/// A SYN with a TTL below this expires before the peer's router.
pub const PATH_TTL: u8 = 4;
/// SYN retransmission interval.
pub const SYN_RTO_US: u64 = 1_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Bound,
    SynSent,
    SynReceived,
    Established,
    Failed(NetError),
    /// Closed by its owner.
    Gone,
}

#[derive(Debug)]
struct Sock {
    node: usize,
    port: u16,
    state: State,
    ttl: u8,
    peer: Option<usize>,
    rx: VecDeque<u8>,
    rx_fin: bool,
    fin_sent: bool,
    next_syn_us: u64,
}

#[derive(Clone, Debug)]
enum Seg {
    Syn { from: usize },
    SynAck { from: usize, to: usize },
    Ack { from: usize, to: usize },
    Rst { to: usize },
    Data { to: usize, bytes: Vec<u8> },
    Fin { to: usize },
}

/// The shared world.
pub struct World {
    /// Virtual time, µs.
    pub now_us: u64,
    one_way_us: u64,
    socks: Vec<Sock>,
    flights: Vec<(u64, u64, Seg)>,
    seq: u64,
    /// Per (node, port): the node's router has an entry; `true` while open.
    conntrack: BTreeMap<(usize, u16), bool>,
    /// Routers filter SYNs from the peer (see the module docs).
    pub nat: bool,
    /// Routers answer a SYN with no entry with RST (else drop it).
    pub reject: bool,
    /// Directions (from node, port) that lose stream bytes and FINs.
    pub dead: BTreeSet<(usize, u16)>,
    /// Every segment sent, in order: `time node port kind`.
    pub trace: Vec<String>,
}

impl World {
    /// A world with a one-way delay of `one_way_ms`.
    pub fn new(one_way_ms: u64) -> Rc<RefCell<World>> {
        Rc::new(RefCell::new(World {
            now_us: 0,
            one_way_us: one_way_ms * 1000,
            socks: Vec::new(),
            flights: Vec::new(),
            seq: 0,
            conntrack: BTreeMap::new(),
            nat: false,
            reject: false,
            dead: BTreeSet::new(),
            trace: Vec::new(),
        }))
    }

    /// Virtual now.
    pub fn now(&self) -> Instant {
        time::at_micros(self.now_us)
    }

    fn send(&mut self, seg: Seg, from_node: usize, port: u16) {
        self.trace
            .push(format!("{} {from_node} {port} {seg:?}", self.now_us));
        let due = self.now_us + self.one_way_us;
        self.seq += 1;
        self.flights.push((due, self.seq, seg));
    }

    fn send_syn(&mut self, s: usize) {
        let (node, port, ttl) = (self.socks[s].node, self.socks[s].port, self.socks[s].ttl);
        self.conntrack.insert((node, port), true);
        self.socks[s].next_syn_us = self.now_us + SYN_RTO_US;
        if ttl < PATH_TTL {
            self.trace
                .push(format!("{} {node} {port} prime ttl {ttl}", self.now_us));
            return;
        }
        self.send(Seg::Syn { from: s }, node, port);
    }

    fn send_stream(&mut self, from: usize, seg: Seg) {
        let (node, port) = (self.socks[from].node, self.socks[from].port);
        if self.dead.contains(&(node, port)) {
            self.trace
                .push(format!("{} {node} {port} lost {seg:?}", self.now_us));
            return;
        }
        self.send(seg, node, port);
    }

    /// The earliest moment something happens in the world.
    pub fn next_due(&self) -> Option<u64> {
        let flights = self.flights.iter().map(|f| f.0);
        let syns = self
            .socks
            .iter()
            .filter(|s| s.state == State::SynSent)
            .map(|s| s.next_syn_us);
        flights.chain(syns).min()
    }

    /// Moves the clock to `t` (never back) and delivers what is due.
    pub fn advance_to(&mut self, t: u64) {
        loop {
            let next = self.next_due().filter(|&d| d <= t);
            let Some(d) = next else { break };
            self.now_us = self.now_us.max(d);
            for s in 0..self.socks.len() {
                if self.socks[s].state == State::SynSent && self.socks[s].next_syn_us <= self.now_us
                {
                    self.send_syn(s);
                }
            }
            self.flights.sort_by_key(|f| (f.0, f.1));
            while self.flights.first().is_some_and(|f| f.0 <= self.now_us) {
                let (_, _, seg) = self.flights.remove(0);
                self.deliver(seg);
            }
        }
        self.now_us = self.now_us.max(t);
    }

    fn alive(&self, s: usize) -> bool {
        self.socks[s].state != State::Gone
    }

    fn deliver(&mut self, seg: Seg) {
        match seg {
            Seg::Syn { from } => {
                let (node, port) = (1 - self.socks[from].node, self.socks[from].port);
                if self.nat {
                    match self.conntrack.get(&(node, port)) {
                        Some(true) => {}
                        Some(false) => {
                            self.trace
                                .push(format!("{} {node} {port} router: invalid SYN", self.now_us));
                            return;
                        }
                        None if self.reject => {
                            self.trace
                                .push(format!("{} {node} {port} router rejects SYN", self.now_us));
                            self.send(Seg::Rst { to: from }, node, port);
                            return;
                        }
                        None => {
                            self.trace
                                .push(format!("{} {node} {port} router drops SYN", self.now_us));
                            return;
                        }
                    }
                }
                let target = self
                    .socks
                    .iter()
                    .position(|s| s.node == node && s.port == port && s.state == State::SynSent);
                let busy = self.socks.iter().any(|s| {
                    s.node == node
                        && s.port == port
                        && matches!(s.state, State::SynReceived | State::Established)
                });
                match target {
                    Some(x) => {
                        self.socks[x].state = State::SynReceived;
                        self.socks[x].peer = Some(from);
                        self.send(Seg::SynAck { from: x, to: from }, node, port);
                    }
                    // A retransmitted SYN of a connection that opened.
                    None if busy => {}
                    None => {
                        // The host's RST ends its own router's entry.
                        self.conntrack.remove(&(node, port));
                        self.send(Seg::Rst { to: from }, node, port);
                    }
                }
            }
            Seg::SynAck { from, to } => {
                let ok = matches!(self.socks[to].state, State::SynSent | State::SynReceived)
                    && self.socks[to].peer.is_none_or(|p| p == from);
                let (node, port) = (self.socks[to].node, self.socks[to].port);
                if ok {
                    self.socks[to].state = State::Established;
                    self.socks[to].peer = Some(from);
                    self.send(Seg::Ack { from: to, to: from }, node, port);
                } else if self.socks[to].state != State::Established {
                    self.send(Seg::Rst { to: from }, node, port);
                }
            }
            Seg::Ack { from, to } => {
                if self.socks[to].state == State::SynReceived && self.socks[to].peer == Some(from) {
                    self.socks[to].state = State::Established;
                }
            }
            Seg::Rst { to } => {
                // Passing the receiver's router ends its entry (Linux
                // destroys an unreplied entry at once on an RST: seen with
                // `conntrack -E` in the lab).
                let key = (self.socks[to].node, self.socks[to].port);
                self.conntrack.remove(&key);
                self.socks[to].state = match self.socks[to].state {
                    State::SynSent | State::SynReceived => State::Failed(NetError::Refused),
                    State::Established => State::Failed(NetError::Reset),
                    other => other,
                };
            }
            Seg::Data { to, bytes } => {
                if self.alive(to) {
                    self.socks[to].rx.extend(bytes);
                }
            }
            Seg::Fin { to } => self.socks[to].rx_fin = true,
        }
    }

    fn fin(&mut self, s: usize) {
        if self.socks[s].state == State::Established && !self.socks[s].fin_sent {
            self.socks[s].fin_sent = true;
            if let Some(to) = self.socks[s].peer {
                self.send_stream(s, Seg::Fin { to });
            }
        }
    }

    /// The (node, port) of every established pair of sockets both ends
    /// still hold.
    pub fn established(&self) -> Vec<(usize, u16)> {
        self.socks
            .iter()
            .filter(|s| s.state == State::Established)
            .map(|s| (s.node, s.port))
            .collect()
    }
}

/// One node's view of the world: the core's `Tcp` and `Wait`.
pub struct SimNet {
    /// The world.
    pub world: Rc<RefCell<World>>,
    /// Which node (0 or 1).
    pub node: usize,
}

impl Tcp for SimNet {
    type TcpSocket = usize;
    type Listener = ();

    fn tcp_bind_reuse(&mut self, port: u16) -> NetResult<usize> {
        let mut w = self.world.borrow_mut();
        w.socks.push(Sock {
            node: self.node,
            port,
            state: State::Bound,
            ttl: 64,
            peer: None,
            rx: VecDeque::new(),
            rx_fin: false,
            fin_sent: false,
            next_syn_us: 0,
        });
        Ok(w.socks.len() - 1)
    }

    fn tcp_connect(&mut self, s: usize, peer: SocketAddrV4) -> NetResult<()> {
        let mut w = self.world.borrow_mut();
        assert_eq!(peer.port(), w.socks[s].port, "punches connect port to port");
        match w.socks[s].state {
            State::Bound | State::Failed(_) => {}
            _ => return Err(NetError::Other(0)),
        }
        // Like Linux: one socket in SYN-SENT per four-tuple.
        let node = self.node;
        let port = w.socks[s].port;
        if w.socks
            .iter()
            .any(|o| o.node == node && o.port == port && o.state == State::SynSent)
        {
            return Err(NetError::AddrInUse);
        }
        w.socks[s].state = State::SynSent;
        w.socks[s].peer = None;
        w.send_syn(s);
        Ok(())
    }

    fn tcp_status(&mut self, s: usize) -> ConnectStatus {
        match self.world.borrow().socks[s].state {
            State::SynSent => ConnectStatus::Pending,
            State::SynReceived => ConnectStatus::Handshaking,
            State::Established => ConnectStatus::Connected,
            State::Failed(e) => ConnectStatus::Failed(e),
            State::Bound | State::Gone => ConnectStatus::Failed(NetError::Closed),
        }
    }

    fn tcp_set_ttl(&mut self, s: usize, ttl: u8) -> NetResult<()> {
        self.world.borrow_mut().socks[s].ttl = ttl;
        Ok(())
    }

    fn tcp_read(&mut self, s: usize, buf: &mut [u8]) -> NetResult<usize> {
        let mut w = self.world.borrow_mut();
        let sock = &mut w.socks[s];
        match sock.state {
            State::Established => {}
            State::Failed(e) => return Err(e),
            State::Gone | State::Bound => return Err(NetError::Closed),
            _ => return Err(NetError::WouldBlock),
        }
        if sock.rx.is_empty() {
            return if sock.rx_fin {
                Ok(0)
            } else {
                Err(NetError::WouldBlock)
            };
        }
        let n = buf.len().min(sock.rx.len());
        for b in buf.iter_mut().take(n) {
            *b = sock.rx.pop_front().unwrap_or(0);
        }
        Ok(n)
    }

    fn tcp_write(&mut self, s: usize, buf: &[u8]) -> NetResult<usize> {
        let mut w = self.world.borrow_mut();
        match w.socks[s].state {
            State::Established if !w.socks[s].fin_sent => {}
            State::Failed(e) => return Err(e),
            State::SynSent | State::SynReceived => return Err(NetError::WouldBlock),
            _ => return Err(NetError::Closed),
        }
        if let Some(to) = w.socks[s].peer {
            w.send_stream(
                s,
                Seg::Data {
                    to,
                    bytes: buf.to_vec(),
                },
            );
        }
        Ok(buf.len())
    }

    fn tcp_shutdown_write(&mut self, s: usize) -> NetResult<()> {
        self.world.borrow_mut().fin(s);
        Ok(())
    }

    fn tcp_close(&mut self, s: usize) {
        let mut w = self.world.borrow_mut();
        w.fin(s);
        w.socks[s].state = State::Gone;
    }

    fn tcp_listen(&mut self, _port: u16) -> NetResult<()> {
        Err(NetError::Other(0))
    }

    fn tcp_accept(&mut self, _l: ()) -> NetResult<usize> {
        Err(NetError::Other(0))
    }

    fn tcp_unlisten(&mut self, _l: ()) {}

    fn tcp_connect_local(&mut self, _port: u16) -> NetResult<usize> {
        Err(NetError::Other(0))
    }
}

impl Wait for SimNet {
    fn now(&mut self) -> Instant {
        self.world.borrow().now()
    }

    /// Runs the world to the deadline or its next event (one node driving
    /// the world alone, e.g. against a silent peer).
    fn wait(&mut self, deadline: Option<Instant>) -> NetResult<Instant> {
        let mut w = self.world.borrow_mut();
        let next = w.next_due();
        let until = match (next, deadline.map(time::micros)) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).ok_or(NetError::TimedOut)?,
        };
        let t = until.max(w.now_us);
        w.advance_to(t);
        Ok(w.now())
    }
}
