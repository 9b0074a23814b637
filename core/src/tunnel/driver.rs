//! The generic tunnel driver: moves bytes between the sockets of any
//! backend (the core's [`Udp`], [`Tcp`] and [`Wait`] traits: Linux,
//! smoltcp, the test simulations) and a [`Tunnel`] machine. Every decision
//! is the machine's; the driver owns the sockets.
//!
//! [`Driver::poll`] does, without blocking, everything that is ready at
//! the backend's `now`: receive (at most [`RECV_BUDGET`] datagrams, so a
//! flood cannot starve the rest), the machine's timers, accepting and
//! connecting local sockets, moving stream bytes both ways, draining
//! events and datagrams. It returns when it next needs to run; [`run`]
//! loops `poll` and [`Wait::wait`]. A test harness calls `poll` itself on
//! a virtual clock.

use core::fmt;
use core::net::{SocketAddr, SocketAddrV4};

use super::machine::{BirthdayEvent, Chosen, Escalation, Event, LinkStats, StreamRead, Tunnel};
use super::{Local, Stats, pw1};
use crate::birthday::Socket;
use crate::net::{ConnectStatus, NetError, Tcp, Udp, Wait};
use crate::time::{self, Instant};

/// Datagrams handled per poll before the local side gets its turn.
pub const RECV_BUDGET: usize = 256;

/// Settings of a [`Driver`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DriverConfig {
    /// Our UDP port.
    pub udp_port: u16,
    /// The local side (the machine's too).
    pub local: Local,
    /// Emit [`TunnelEvent::Stats`] this often (ms), if set.
    pub stats_every_ms: Option<u64>,
}

/// A point-in-time picture of the tunnel, for `--stats` and status.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Snapshot {
    /// The protocol in use.
    pub chosen: Chosen,
    /// The machine's counters.
    pub link: LinkStats,
    /// v0.12 counters, in v0.12.
    pub v012: Option<Stats>,
    /// pw1 counters, in pw1.
    pub pw1: Option<pw1::Stats>,
    /// Streams open.
    pub streams: usize,
    /// The peer's address now.
    pub peer: SocketAddr,
}

/// What the driver reports.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TunnelEvent {
    /// First contact with the peer.
    PeerHeard(SocketAddr),
    /// The peer's (validated) datagrams come from another port now.
    PeerMoved(SocketAddr),
    /// Nothing heard from the peer for the silence timeout.
    PeerSilent,
    /// The peer restarted; every stream was reset.
    PeerRestarted,
    /// The protocol was chosen.
    Protocol(Chosen),
    /// The peer speaks only what this side refuses (e.g. `--protocol pw1`
    /// against udphp.py).
    ProtocolRefused,
    /// A local socket joined a stream (accepted on `-l`, connected on `-c`).
    StreamStarted(u32),
    /// A stream ended; `reset` if it did not finish cleanly.
    StreamEnded {
        /// Stream (v0.12: session) number.
        id: u32,
        /// Reset rather than finished.
        reset: bool,
    },
    /// The local service could not be reached for a stream.
    LocalConnectFailed {
        /// The stream.
        id: u32,
        /// Why.
        error: NetError,
    },
    /// Datagrams were dropped since the last report: totals so far.
    Dropped {
        /// From addresses other than the peer's IP.
        foreign: u64,
        /// From the peer's IP but malformed, damaged, or from another port
        /// and not shown to be the peer's.
        bad: u64,
    },
    /// Periodic statistics.
    Stats(Snapshot),
    /// Birthday punching progressed (a round began, it won, it gave up).
    Birthday(BirthdayEvent),
}

/// What the event handler wants next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Keep running.
    Continue,
    /// Close the tunnel (it lingers briefly) and return.
    Stop,
}

/// What [`Driver::poll`] says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Poll {
    /// Call again at this instant (or on I/O readiness); `None`: only on I/O.
    Wait(Option<Instant>),
    /// The tunnel is closed.
    Done,
}

/// Why the driver failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TunnelError {
    /// The UDP port could not be bound.
    UdpBind(NetError),
    /// The local listening port could not be bound.
    Listen(NetError),
    /// Waiting on the backend failed.
    Wait(NetError),
}

impl fmt::Display for TunnelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TunnelError::UdpBind(e) => write!(f, "cannot bind the UDP port: {e}"),
            TunnelError::Listen(e) => write!(f, "cannot listen on the local TCP port: {e}"),
            TunnelError::Wait(e) => write!(f, "waiting for sockets failed: {e}"),
        }
    }
}

/// One local socket and the stream it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalSlot<S> {
    id: u32,
    socket: S,
    connecting: bool,
    eof: bool,
    shut: bool,
}

/// The driver's memory, from the caller.
pub struct Buffers<'a, S> {
    /// Receive buffer: the largest datagram the peer may send plus one
    /// (udphp.py: 40 017 bytes; pw1 only: its `max_datagram` + 1).
    pub rx: &'a mut [u8],
    /// Transmit buffer: the largest datagram we send.
    pub tx: &'a mut [u8],
    /// Local read buffer (a few KB: bytes per read from a local socket).
    pub local: &'a mut [u8],
    /// One slot per local socket at once (streams at most).
    pub slots: &'a mut [Option<LocalSlot<S>>],
}

/// The tunnel driver. See the module docs.
pub struct Driver<'a, N: Udp + Tcp, const F: usize> {
    /// The machine (public for its getters).
    pub tunnel: Tunnel<'a, F>,
    cfg: DriverConfig,
    udp: N::UdpSocket,
    listener: Option<N::Listener>,
    bufs: Buffers<'a, N::TcpSocket>,
    ttl: u8,
    next_stats: Option<Instant>,
    stopped: bool,
    /// Dropped-datagram totals last reported.
    dropped: (u64, u64),
    /// `-l`: an accepted client the machine cannot take yet.
    parked: Option<N::TcpSocket>,
    /// Birthday punching's extra sockets (caller storage; empty: none).
    extra: &'a mut [Option<N::UdpSocket>],
}

impl<'a, N: Udp + Tcp + Wait, const F: usize> Driver<'a, N, F> {
    /// Binds the UDP port (and the local listener for `-l`).
    pub fn new(
        net: &mut N,
        tunnel: Tunnel<'a, F>,
        cfg: DriverConfig,
        bufs: Buffers<'a, N::TcpSocket>,
    ) -> Result<Self, TunnelError> {
        let udp = net.udp_bind(cfg.udp_port).map_err(TunnelError::UdpBind)?;
        let listener = match cfg.local {
            Local::Listen(port) => match net.tcp_listen(port) {
                Ok(l) => Some(l),
                Err(e) => {
                    net.udp_close(udp);
                    return Err(TunnelError::Listen(e));
                }
            },
            Local::Connect(_) => None,
        };
        for s in bufs.slots.iter_mut() {
            *s = None;
        }
        let now = net.now();
        Ok(Driver {
            tunnel,
            cfg,
            udp,
            listener,
            bufs,
            ttl: 0,
            next_stats: cfg.stats_every_ms.map(|ms| time::add_millis(now, ms)),
            stopped: false,
            dropped: (0, 0),
            parked: None,
            extra: &mut [],
        })
    }

    /// Gives the driver a table of extra UDP sockets for birthday punching
    /// (see [`Tunnel::enable_birthday`]): index `i` of the machine's
    /// `Open(i)` is slot `i`; a machine asking for more sockets than slots
    /// gets failed opens (it probes only).
    pub fn with_extra_sockets(mut self, extra: &'a mut [Option<N::UdpSocket>]) -> Self {
        for s in extra.iter_mut() {
            *s = None;
        }
        self.extra = extra;
        self
    }

    /// A snapshot of the tunnel.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            chosen: self.tunnel.chosen(),
            link: self.tunnel.link_stats(),
            v012: self.tunnel.v012_stats(),
            pw1: self.tunnel.pw1_stats(),
            streams: self.tunnel.open_streams(),
            peer: self.tunnel.peer(),
        }
    }

    /// Everything that is ready now; see the module docs.
    pub fn poll(
        &mut self,
        net: &mut N,
        on_event: &mut impl FnMut(TunnelEvent) -> Flow,
    ) -> Result<Poll, TunnelError> {
        let mut now = net.now();
        // ---- the peer's datagrams ----
        let mut more = false;
        let mut errors = 0;
        for k in 0..RECV_BUDGET {
            if k > 0 && k % 32 == 0 {
                now = net.now();
            }
            match net.udp_recv_from(self.udp, self.bufs.rx) {
                Ok((n, from)) => {
                    let on = self.tunnel.socket();
                    self.tunnel.handle_datagram_on(
                        now,
                        on,
                        SocketAddr::V4(from),
                        &self.bufs.rx[..n],
                    );
                }
                Err(NetError::WouldBlock) => break,
                // ICMP errors and oversized datagrams surface here; a socket
                // that keeps failing is left for the next wake-up.
                Err(_) => {
                    errors += 1;
                    if errors > 8 {
                        break;
                    }
                }
            }
            if k == RECV_BUDGET - 1 {
                more = true;
            }
        }
        self.read_extra(net, now);
        let l = self.tunnel.link_stats();
        let pw1_bad = self.tunnel.pw1_stats().map_or(0, |p| p.bad.total());
        let v012_bad = self.tunnel.v012_stats().map_or(0, |v| v.bad.total());
        let bad = l.malformed + l.unvalidated + pw1_bad + v012_bad;
        if (l.foreign, bad) != self.dropped {
            self.dropped = (l.foreign, bad);
            self.emit(
                now,
                on_event,
                TunnelEvent::Dropped {
                    foreign: l.foreign,
                    bad,
                },
            );
        }
        self.tunnel.handle_timeout(now);
        self.escalate(net, now);
        self.events(net, now, on_event);
        self.local(net, now, on_event);
        self.events(net, now, on_event);
        self.transmit(net, now);
        if let Some(at) = self.next_stats
            && time::micros(now) >= time::micros(at)
        {
            self.next_stats = self.cfg.stats_every_ms.map(|ms| time::add_millis(now, ms));
            let s = self.snapshot();
            self.emit(now, on_event, TunnelEvent::Stats(s));
        }
        if self.stopped && self.tunnel.is_done(now) {
            self.shutdown(net);
            return Ok(Poll::Done);
        }
        let mut deadline = time::earliest(self.tunnel.poll_timeout(), self.next_stats);
        if more {
            deadline = Some(now);
        }
        Ok(Poll::Wait(deadline))
    }

    fn emit(
        &mut self,
        now: Instant,
        on_event: &mut impl FnMut(TunnelEvent) -> Flow,
        e: TunnelEvent,
    ) {
        if on_event(e) == Flow::Stop && !self.stopped {
            self.stopped = true;
            self.tunnel.close(now);
        }
    }

    fn events(
        &mut self,
        net: &mut N,
        now: Instant,
        on_event: &mut impl FnMut(TunnelEvent) -> Flow,
    ) {
        while let Some(e) = self.tunnel.poll_event() {
            let report = match e {
                Event::PeerHeard(a) => Some(TunnelEvent::PeerHeard(a)),
                Event::PeerMoved(a) => Some(TunnelEvent::PeerMoved(a)),
                Event::PeerSilent => Some(TunnelEvent::PeerSilent),
                Event::PeerRestarted => Some(TunnelEvent::PeerRestarted),
                Event::Protocol(c) => Some(TunnelEvent::Protocol(c)),
                Event::ProtocolRefused => Some(TunnelEvent::ProtocolRefused),
                Event::Birthday(b) => Some(TunnelEvent::Birthday(b)),
                Event::ConnectLocal(id) => self.connect_local(net, now, id),
                Event::StreamClosed(id) => self.release(net, id, false),
                Event::StreamReset(id) => self.release(net, id, true),
                Event::AllStreamsReset => {
                    for i in 0..self.bufs.slots.len() {
                        if let Some(s) = self.bufs.slots[i].take() {
                            net.tcp_abort(s.socket);
                            self.emit(
                                now,
                                on_event,
                                TunnelEvent::StreamEnded {
                                    id: s.id,
                                    reset: true,
                                },
                            );
                        }
                    }
                    None
                }
            };
            if let Some(r) = report {
                self.emit(now, on_event, r);
            }
        }
    }

    fn connect_local(&mut self, net: &mut N, now: Instant, id: u32) -> Option<TunnelEvent> {
        let Local::Connect(port) = self.cfg.local else {
            return None;
        };
        let Some(free) = self.bufs.slots.iter().position(|s| s.is_none()) else {
            // More streams than slots: the caller sized them wrong; the
            // peer's client is refused rather than waiting forever.
            self.tunnel.local_refused(now, id);
            return Some(TunnelEvent::LocalConnectFailed {
                id,
                error: NetError::NoBuffers,
            });
        };
        match net.tcp_connect_local(port) {
            Ok(socket) => {
                self.bufs.slots[free] = Some(LocalSlot {
                    id,
                    socket,
                    connecting: true,
                    eof: false,
                    shut: false,
                });
                None
            }
            Err(error) => {
                self.tunnel.local_refused(now, id);
                Some(TunnelEvent::LocalConnectFailed { id, error })
            }
        }
    }

    fn release(&mut self, net: &mut N, id: u32, reset: bool) -> Option<TunnelEvent> {
        let i = self
            .bufs
            .slots
            .iter()
            .position(|s| s.is_some_and(|s| s.id == id))?;
        let s = self.bufs.slots[i].take()?;
        // A reset stream is cut locally too (RST), so the local client can
        // tell a truncated session from a complete one.
        if reset {
            net.tcp_abort(s.socket);
        } else {
            net.tcp_close(s.socket);
        }
        Some(TunnelEvent::StreamEnded { id, reset })
    }

    fn local(&mut self, net: &mut N, now: Instant, on_event: &mut impl FnMut(TunnelEvent) -> Flow) {
        // New local clients. One that the machine cannot take yet waits
        // here (the machine is told: with udphp.py it decides on it).
        if let Some(l) = self.listener {
            if self.parked.is_none()
                && !self.tunnel.can_accept()
                && let Ok(s) = net.tcp_accept(l)
            {
                self.parked = Some(s);
            }
            if self.parked.is_some() && !self.tunnel.can_accept() {
                self.tunnel.local_waiting(now);
            }
            while self.tunnel.can_accept() && self.bufs.slots.iter().any(|s| s.is_none()) {
                let socket = match self.parked.take() {
                    Some(s) => s,
                    None => match net.tcp_accept(l) {
                        Ok(s) => s,
                        Err(_) => break,
                    },
                };
                match self.tunnel.accept_local(now) {
                    Some(id) => {
                        let free = self.bufs.slots.iter().position(|s| s.is_none());
                        if let Some(free) = free {
                            self.bufs.slots[free] = Some(LocalSlot {
                                id,
                                socket,
                                connecting: false,
                                eof: false,
                                shut: false,
                            });
                        }
                        self.emit(now, on_event, TunnelEvent::StreamStarted(id));
                    }
                    None => net.tcp_close(socket),
                }
            }
        }
        for i in 0..self.bufs.slots.len() {
            let Some(mut s) = self.bufs.slots[i] else {
                continue;
            };
            if s.connecting {
                match net.tcp_status(s.socket) {
                    ConnectStatus::Connected => {
                        s.connecting = false;
                        self.tunnel.local_connected(s.id);
                        self.emit(now, on_event, TunnelEvent::StreamStarted(s.id));
                    }
                    ConnectStatus::Failed(error) => {
                        net.tcp_close(s.socket);
                        self.bufs.slots[i] = None;
                        self.tunnel.local_refused(now, s.id);
                        self.emit(
                            now,
                            on_event,
                            TunnelEvent::LocalConnectFailed { id: s.id, error },
                        );
                        continue;
                    }
                    ConnectStatus::Pending | ConnectStatus::Handshaking => {
                        self.bufs.slots[i] = Some(s);
                        continue;
                    }
                }
            }
            // Local → peer.
            while !s.eof {
                let cap = self
                    .tunnel
                    .stream_send_capacity(s.id)
                    .min(self.bufs.local.len());
                if cap == 0 {
                    break;
                }
                match net.tcp_read(s.socket, &mut self.bufs.local[..cap]) {
                    Ok(0) => {
                        s.eof = true;
                        self.tunnel.stream_finish(s.id);
                    }
                    Ok(n) => {
                        let taken = self.tunnel.stream_send(s.id, &self.bufs.local[..n]);
                        debug_assert_eq!(taken, n, "the machine took less than its capacity");
                    }
                    Err(NetError::WouldBlock) => break,
                    Err(_) => {
                        s.eof = true;
                        self.tunnel.stream_reset(s.id);
                    }
                }
            }
            // Peer → local.
            loop {
                match self.tunnel.stream_peek(s.id) {
                    StreamRead::Data(d) => match net.tcp_write(s.socket, d) {
                        Ok(0) | Err(NetError::WouldBlock) => break,
                        Ok(n) => self.tunnel.stream_consume(s.id, n),
                        Err(_) => {
                            s.eof = true;
                            self.tunnel.stream_reset(s.id);
                            break;
                        }
                    },
                    StreamRead::Finished => {
                        if !s.shut {
                            s.shut = true;
                            let _ = net.tcp_shutdown_write(s.socket);
                        }
                        break;
                    }
                    _ => break,
                }
            }
            self.bufs.slots[i] = Some(s);
        }
    }

    fn transmit(&mut self, net: &mut N, now: Instant) {
        while let Some(t) = self.tunnel.poll_transmit(now, self.bufs.tx) {
            let SocketAddr::V4(to) = t.to else {
                // The backends are IPv4 only for now.
                continue;
            };
            if t.ttl != self.ttl && net.udp_set_ttl(self.udp, t.ttl).is_ok() {
                self.ttl = t.ttl;
            }
            // A full send queue loses the datagram as the network would;
            // the transport sends it again.
            let _ = net.udp_send_to(
                self.udp,
                &self.bufs.tx[..t.len],
                SocketAddrV4::new(*to.ip(), to.port()),
            );
        }
    }

    /// Birthday punching: every open extra socket's datagrams, into the
    /// machine (bounded per socket, as the main socket is).
    fn read_extra(&mut self, net: &mut N, now: Instant) {
        for i in 0..self.extra.len() {
            for _ in 0..64 {
                let Some(s) = self.extra[i] else { break };
                match net.udp_recv_from(s, self.bufs.rx) {
                    Ok((n, from)) => self.tunnel.handle_datagram_on(
                        now,
                        Socket::Extra(i as u16),
                        SocketAddr::V4(from),
                        &self.bufs.rx[..n],
                    ),
                    Err(NetError::WouldBlock) => break,
                    Err(_) => continue,
                }
            }
        }
    }

    /// Birthday punching: carries out the machine's escalation actions.
    fn escalate(&mut self, net: &mut N, now: Instant) {
        while let Some(e) = self.tunnel.poll_birthday(now, self.bufs.tx) {
            match e {
                Escalation::Open { index, ttl } => {
                    let opened = match self.extra.get_mut(usize::from(index)) {
                        Some(slot) => match net.udp_bind(0) {
                            Ok(s) => {
                                let _ = net.udp_set_ttl(s, ttl);
                                *slot = Some(s);
                                true
                            }
                            Err(_) => false,
                        },
                        None => false,
                    };
                    if !opened {
                        self.tunnel.birthday_open_failed(index);
                    }
                }
                Escalation::Send { from, to, len, ttl } => {
                    let s = match from {
                        Socket::Main => {
                            if ttl != self.ttl && net.udp_set_ttl(self.udp, ttl).is_ok() {
                                self.ttl = ttl;
                            }
                            Some(self.udp)
                        }
                        Socket::Extra(i) => self.extra.get(usize::from(i)).copied().flatten(),
                    };
                    if let Some(s) = s {
                        // A full queue or an ICMP error costs one probe.
                        let _ = net.udp_send_to(s, &self.bufs.tx[..len], to);
                    }
                }
                Escalation::Close(i) => {
                    if let Some(s) = self.extra.get_mut(usize::from(i)).and_then(Option::take) {
                        net.udp_close(s);
                    }
                }
                Escalation::Switch { socket, .. } => {
                    if let Socket::Extra(i) = socket
                        && let Some(s) = self.extra.get_mut(usize::from(i)).and_then(Option::take)
                    {
                        // The winner replaces the main socket (its TTL is
                        // set again by the next transmit).
                        net.udp_close(self.udp);
                        self.udp = s;
                        self.ttl = 0;
                    }
                }
            }
        }
    }

    fn shutdown(&mut self, net: &mut N) {
        for slot in self.extra.iter_mut() {
            if let Some(s) = slot.take() {
                net.udp_close(s);
            }
        }
        if let Some(p) = self.parked.take() {
            net.tcp_close(p);
        }
        for s in self.bufs.slots.iter_mut() {
            if let Some(s) = s.take() {
                net.tcp_close(s.socket);
            }
        }
        if let Some(l) = self.listener.take() {
            net.tcp_unlisten(l);
        }
        net.udp_close(self.udp);
    }
}

/// Runs `driver` until the handler says stop (and the tunnel lingered) or
/// the backend fails.
pub fn run<N, const F: usize>(
    net: &mut N,
    driver: &mut Driver<'_, N, F>,
    mut on_event: impl FnMut(TunnelEvent) -> Flow,
) -> Result<(), TunnelError>
where
    N: Udp + Tcp + Wait,
{
    loop {
        match driver.poll(net, &mut on_event)? {
            Poll::Done => return Ok(()),
            Poll::Wait(deadline) => {
                net.wait(deadline).map_err(TunnelError::Wait)?;
            }
        }
    }
}
