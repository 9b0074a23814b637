//! The tunnel as one sans-IO machine: the UDP punch, the peer's address,
//! the protocol choice (udphp v0.12 or pw1), restarts, and the local
//! streams, over either transport. The [`driver`](super::driver) only
//! moves bytes between sockets and this machine.
//!
//! ## Inputs, outputs, call order
//!
//! * Inputs: [`Tunnel::handle_datagram`] (every datagram from the UDP
//!   socket, with its source), [`Tunnel::handle_timeout`], and the local
//!   side: [`Tunnel::accept_local`] (a local client connected to `-l`),
//!   [`Tunnel::local_connected`] / [`Tunnel::local_refused`] (the `-c`
//!   side's connect to its service), [`Tunnel::stream_send`],
//!   [`Tunnel::stream_finish`], [`Tunnel::stream_reset`],
//!   [`Tunnel::stream_consume`].
//! * Outputs: [`Tunnel::poll_transmit`] (a datagram, its destination and
//!   IP TTL), [`Tunnel::poll_event`], [`Tunnel::stream_peek`],
//!   [`Tunnel::poll_timeout`].
//! * After every input, drain `poll_transmit` and `poll_event` until
//!   `None`, then wait for I/O or `poll_timeout`.
//!
//! ## What it decides
//!
//! * **Punch**: heartbeats every [`PUNCH_INTERVAL_MS`] until the peer is
//!   heard, the first [`PRIME_COUNT`] at the priming TTL; afterwards every
//!   `heartbeat_ms`. Every heartbeat carries our capabilities (a tail
//!   udphp.py ignores): our incarnation token and the pw1 limits.
//! * **Protocol** (`Auto`): a peer whose heartbeat carries capabilities
//!   with the pw1 flag gets pw1; any other first word (a bare heartbeat, a
//!   v0.12 frame) means v0.12, exactly as udphp.py expects. pw1 packets are
//!   sent only after the peer's capabilities were heard, so udphp.py never
//!   sees one. `Pw1` refuses a v0.12 peer ([`Event::ProtocolRefused`]).
//! * **The peer's address**: before first contact, a well-formed datagram
//!   from any port of the peer's IP is the peer (its NAT may have moved its
//!   port). After it, the port moves only on a datagram validated as the
//!   peer's: a pw1 packet accepted by the connection, or a heartbeat with
//!   the peer's token; in v0.12 a well-formed datagram moves it only after
//!   the current port has been silent for [`PORT_SILENCE_MS`].
//! * **Restarts**: a heartbeat with a new token means the peer restarted:
//!   the transport starts over (pw1: a new connection; v0.12: sequence
//!   numbers and sessions from the start) and every stream is reset
//!   ([`Event::AllStreamsReset`]). A udphp.py peer has no token; its
//!   restart is not detectable.
//! * **Birthday punching** (optional, [`Tunnel::enable_birthday`]): after
//!   the ordinary punch's silence, extra sockets and probes through the
//!   driver; see `birthday.rs` ([`Escalation`], [`BirthdayEvent`]).

use core::net::SocketAddr;

// Birthday punching (issue 14): the escalation state and its methods.
#[path = "birthday.rs"]
mod birthday;
pub use birthday::{BirthdayEvent, Escalation};

use super::pw1::{self, Connection, PeerParams, Storage, StreamRead as Pw1Read};
use super::{Endpoint, Local};
use crate::frame::tail::{Caps, FLAG_PW1, Tail};
use crate::frame::{Repr, pw1 as wire};
use crate::time::{Instant, add_millis, earliest, micros, micros_between};

/// Heartbeat spacing while punching (until the peer is heard) and during
/// the pw1 handshake.
pub const PUNCH_INTERVAL_MS: u64 = 200;
/// Heartbeats sent with the priming TTL at the start of the punch.
pub const PRIME_COUNT: u32 = 5;
/// Retry spacing of a v0.12 local connect that failed.
pub const LOCAL_RETRY_MS: u64 = 1000;
/// v0.12 `-c`: connects to a refusing local service per session before the
/// session is ended (EOF to the peer's client; v0.12 has no reset).
pub const V012_LOCAL_TRIES: u32 = 3;
/// Resend spacing of a v0.12 session announcement until it is echoed.
pub const ANNOUNCE_INTERVAL_MS: u64 = 200;
/// After [`Tunnel::close`], keep answering this long (v0.12: a lost ack
/// of the peer's last frame is answered again).
pub const LINGER_MS: u64 = 1000;
/// A heartbeat or v0.12 datagram from another port of the peer moves the
/// tunnel only after this much silence from the current port.
pub const PORT_SILENCE_MS: u64 = 5000;
/// A pw1 packet (accepted, newest) from another port moves the tunnel after
/// this much silence from the current port (NAT rebinding).
pub const PW1_PORT_SILENCE_MS: u64 = 1000;
/// Shortest spacing of immediate capability replies.
const CAPS_REPLY_MS: u64 = 100;
/// `Auto` on `-l`: a local client has waited this long and the peer has
/// not answered our heartbeats (a punchwire peer answers them at once):
/// the peer is taken for udphp.py, which says nothing until it gets data.
pub const SILENT_PEER_V012_MS: u64 = 3000;

/// Which protocols this side speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// pw1 with punchwire peers, v0.12 with any other.
    Auto,
    /// Only udphp v0.12.
    V012,
    /// Only pw1; a v0.12 peer is refused.
    Pw1,
}

/// The protocol in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chosen {
    /// Not known yet (the peer has not been heard).
    Undecided,
    /// udphp v0.12.
    V012,
    /// pw1.
    Pw1,
}

/// Settings of a [`Tunnel`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MachineConfig {
    /// The peer's public address and UDP port.
    pub peer: SocketAddr,
    /// The local side.
    pub local: Local,
    /// Protocols spoken.
    pub protocol: Protocol,
    /// TTL of the priming heartbeats (0: no priming).
    pub prime_ttl: u8,
    /// TTL of everything else.
    pub normal_ttl: u8,
    /// Heartbeat spacing once the peer is heard.
    pub heartbeat_ms: u64,
    /// [`Event::PeerSilent`] after hearing nothing this long.
    pub silence_ms: u64,
    /// pw1 settings (`accept_streams` is set from `local`).
    pub pw1: pw1::Config,
    /// Our incarnation token: random per start, never 0 (from the
    /// caller's random source).
    pub token: u64,
}

/// A datagram to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Destination.
    pub to: SocketAddr,
    /// Bytes written at the start of the buffer.
    pub len: usize,
    /// IP TTL to send it with.
    pub ttl: u8,
}

/// What the driver must know or do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// First contact with the peer (the hole is open).
    PeerHeard(SocketAddr),
    /// The peer's datagrams (validated) now come from another port.
    PeerMoved(SocketAddr),
    /// Nothing heard from the peer for `silence_ms`.
    PeerSilent,
    /// The peer started again (a new incarnation token).
    PeerRestarted,
    /// The protocol was chosen.
    Protocol(Chosen),
    /// `Protocol::Pw1` met a v0.12 peer (or `V012` cannot be served).
    ProtocolRefused,
    /// `-c`: connect the local service for this stream.
    ConnectLocal(u32),
    /// The stream finished both ways: close its local socket.
    StreamClosed(u32),
    /// The stream was reset: close its local socket.
    StreamReset(u32),
    /// Every stream is gone (the peer restarted): close every local socket.
    AllStreamsReset,
    /// Birthday punching progressed (see [`Tunnel::enable_birthday`]).
    Birthday(BirthdayEvent),
}

/// What [`Tunnel::stream_peek`] found.
pub type StreamRead<'a> = Pw1Read<'a>;

/// Counters of the machine itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Heartbeats sent.
    pub heartbeats_sent: u64,
    /// Heartbeats received.
    pub heartbeats_received: u64,
    /// Datagrams from other addresses (dropped).
    pub foreign: u64,
    /// Datagrams from another port of the peer that were not validated.
    pub unvalidated: u64,
    /// Malformed datagrams from the peer.
    pub malformed: u64,
    /// Peer port changes accepted.
    pub moves: u64,
    /// Peer restarts seen.
    pub restarts: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timer {
    Heartbeat = 0,
    Announce = 1,
    LocalRetry = 2,
    Linger = 3,
}
const TIMERS: usize = 4;

/// v0.12 session state (one session at a time).
#[derive(Clone, Copy, Debug, Default)]
struct V012 {
    session: u32,
    /// The session's stream is with the driver.
    active: bool,
    /// `-c`: a ConnectLocal is due / was asked.
    connect_due: bool,
    /// `-c`: the newest session the peer announced.
    announced_up_to: u32,
    /// `-c`: echo the announcement of `session` once.
    echo_due: bool,
    /// The local side failed: the peer's bytes are dropped.
    broken: bool,
    /// `-l`: the announcement of `session` was echoed.
    echoed: bool,
    /// `-c`: refused connects of this session so far.
    refusals: u32,
}

/// The tunnel machine. See the module docs.
pub struct Tunnel<'a, const F: usize> {
    cfg: MachineConfig,
    timers: [Option<Instant>; TIMERS],
    peer: SocketAddr,
    heard: bool,
    last_heard: Instant,
    /// Last valid datagram from the current peer address.
    last_current: Instant,
    silent: bool,
    punches: u32,
    caps_reply_due: bool,
    last_caps_reply: Option<Instant>,
    peer_caps: Option<Caps>,
    handshake_done: bool,
    chosen: Chosen,
    ep: Option<&'a mut Endpoint<1, F>>,
    v: V012,
    storage: Option<Storage<'a>>,
    conn: Option<Connection<'a>>,
    // Pending events (flags: they cannot overflow).
    ev_heard: bool,
    ev_moved: bool,
    ev_silent: bool,
    ev_restarted: bool,
    ev_all_reset: bool,
    ev_protocol: bool,
    ev_refused: bool,
    ev_v012_closed: Option<(u32, bool)>,
    stopping: bool,
    /// `-l`: since when a local client waits for a stream.
    waiting_since: Option<Instant>,
    stats: LinkStats,
    /// Birthday punching, if enabled (birthday.rs).
    bday: birthday::Bday,
}

impl<'a, const F: usize> Tunnel<'a, F> {
    /// A tunnel started at `now`. `v012` is needed unless the protocol is
    /// `Pw1`; `storage` unless it is `V012`.
    pub fn new(
        mut cfg: MachineConfig,
        v012: Option<&'a mut Endpoint<1, F>>,
        storage: Option<Storage<'a>>,
        now: Instant,
    ) -> Self {
        cfg.pw1.accept_streams = matches!(cfg.local, Local::Connect(_));
        if cfg.token == 0 {
            cfg.token = 1;
        }
        let mut t = Tunnel {
            cfg,
            timers: [None; TIMERS],
            peer: cfg.peer,
            heard: false,
            last_heard: now,
            last_current: now,
            silent: false,
            punches: 0,
            caps_reply_due: false,
            last_caps_reply: None,
            peer_caps: None,
            handshake_done: false,
            chosen: Chosen::Undecided,
            ep: v012,
            v: V012 {
                session: 1,
                announced_up_to: 1,
                ..V012::default()
            },
            storage,
            conn: None,
            ev_heard: false,
            ev_moved: false,
            ev_silent: false,
            ev_restarted: false,
            ev_all_reset: false,
            ev_protocol: false,
            ev_refused: false,
            ev_v012_closed: None,
            stopping: false,
            waiting_since: None,
            stats: LinkStats::default(),
            bday: birthday::Bday::default(),
        };
        t.timers[Timer::Heartbeat as usize] = Some(now);
        if let Some(ep) = t.ep.as_deref_mut() {
            // The machine sends the heartbeats (with our capabilities).
            let mut c = *ep.config();
            c.heartbeat_interval = crate::time::Milliseconds(u32::MAX);
            c.silence_timeout = crate::time::Milliseconds(u32::MAX);
            ep.reset(c, now);
            ep.set_heartbeats(false);
        }
        t
    }

    // ---- getters ----

    /// The protocol in use.
    pub fn chosen(&self) -> Chosen {
        self.chosen
    }

    /// The peer's address as now known.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Whether the peer has been heard.
    pub fn is_heard(&self) -> bool {
        self.heard
    }

    /// Whether the peer has been silent for `silence_ms`.
    pub fn is_silent(&self) -> bool {
        self.silent
    }

    /// The machine's counters.
    pub fn link_stats(&self) -> LinkStats {
        self.stats
    }

    /// The v0.12 endpoint's counters, when it is in use.
    pub fn v012_stats(&self) -> Option<super::Stats> {
        (self.chosen == Chosen::V012)
            .then(|| self.ep.as_deref().map(|e| e.stats()))
            .flatten()
    }

    /// The pw1 connection's counters, when it is in use.
    pub fn pw1_stats(&self) -> Option<pw1::Stats> {
        self.conn.as_ref().map(|c| c.stats())
    }

    /// Streams open now.
    pub fn open_streams(&self) -> usize {
        match self.chosen {
            Chosen::Pw1 => self.conn.as_ref().map_or(0, |c| c.open_streams()),
            Chosen::V012 => usize::from(self.v.active),
            Chosen::Undecided => 0,
        }
    }

    /// After [`close`](Self::close): whether the machine is done.
    pub fn is_done(&self, now: Instant) -> bool {
        self.stopping
            && (self.timers[Timer::Linger as usize].is_none_or(|t| micros(now) >= micros(t))
                || self.conn.as_ref().is_some_and(|c| c.peer_closed()))
    }

    // ---- input ----

    /// One datagram from `from`. Never fails: what is not the peer's, or
    /// not well-formed, is counted and dropped.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        if from.ip() != self.peer.ip() {
            self.stats.foreign += 1;
            return;
        }
        let same_port = from.port() == self.peer.port();
        if wire::Header::is_pw1(datagram) {
            self.on_pw1(now, from, same_port, datagram);
            return;
        }
        let Ok(repr) = Repr::parse(datagram) else {
            self.stats.malformed += 1;
            return;
        };
        let tail = match repr {
            // Only the peer's own greeting is a heartbeat of the peer
            // (udphp.py sends exactly it): any other datagram that starts
            // with `H` — one junk byte in 256 does — decides nothing.
            Repr::Heartbeat(h) if h.role != Some(self.peer_role()) => {
                self.stats.malformed += 1;
                return;
            }
            Repr::Heartbeat(h) => Tail::parse(h.tail),
            _ => Tail::None,
        };
        if !same_port {
            let validated = match (tail, self.peer_caps) {
                (Tail::Caps(c), Some(k)) => c.token == k.token,
                // A udphp.py peer has no token: a well-formed datagram is
                // all there is (v0.12).
                (_, None) => self.chosen == Chosen::V012,
                _ => false,
            };
            // First contact from another port (the peer's NAT moved it) is
            // its heartbeat: every peer heartbeats first.
            let first = !self.heard && matches!(repr, Repr::Heartbeat(_));
            // Afterwards a copy of an old datagram of the peer's (anyone
            // behind its NAT may have one) must not redirect a live
            // tunnel: only once the current port has gone silent.
            let silent = micros_between(self.last_current, now) >= PORT_SILENCE_MS * 1000;
            // The address the user gave is always the peer's (nobody else
            // can send from its NAT mapping): it takes the tunnel back from
            // a first contact that a replayed heartbeat won.
            let configured = from == self.cfg.peer && matches!(repr, Repr::Heartbeat(_));
            if first || configured || (validated && silent) {
                self.move_to(from);
            } else {
                self.stats.unvalidated += 1;
                return;
            }
        }
        self.last_current = now;
        self.heard_from(now);
        match repr {
            Repr::Heartbeat(_) => {
                self.stats.heartbeats_received += 1;
                match tail {
                    Tail::Caps(c) => self.on_caps(now, c),
                    Tail::Session(n) => {
                        self.decide_v012();
                        self.on_announcement(n);
                    }
                    Tail::None | Tail::Unknown => self.decide_v012(),
                }
            }
            _ => {
                // A data frame is a v0.12 peer (udphp.py's first heartbeat
                // may have been lost); a bare A/N decides nothing.
                if matches!(repr, Repr::Data(_)) {
                    self.decide_v012();
                }
                if self.chosen == Chosen::V012
                    && let Some(ep) = self.ep.as_deref_mut()
                {
                    let _ = ep.handle_datagram(now, datagram);
                    if self.v.broken {
                        let n = ep.recv_peek().len();
                        ep.recv_consume(n);
                    }
                    self.check_v012_session();
                }
            }
        }
    }

    fn on_pw1(&mut self, now: Instant, from: SocketAddr, same_port: bool, datagram: &[u8]) {
        let Some(conn) = self.conn.as_mut() else {
            // Before the peer's capabilities: we cannot answer yet (its
            // heartbeats, repeated until it hears from us, will come).
            self.stats.unvalidated += 1;
            return;
        };
        let newest = conn.largest_received();
        match conn.handle_packet(now, datagram) {
            Ok(pn) => {
                self.handshake_done = true;
                if same_port {
                    self.last_current = now;
                } else if from == self.cfg.peer
                    || (newest.is_none_or(|l| pn > l)
                        && micros_between(self.last_current, now) >= PW1_PORT_SILENCE_MS * 1000)
                {
                    // A packet for this incarnation, newer than any before,
                    // from a new port while the old one has gone quiet: the
                    // peer's NAT rebound. (A replay is old; a copy racing the
                    // real peer finds its port still talking.)
                    self.move_to(from);
                    self.last_current = now;
                }
                self.heard_from(now);
            }
            Err(_) if !same_port => self.stats.unvalidated += 1,
            Err(pw1::PacketError::Duplicate | pw1::PacketError::NoRoom) => self.heard_from(now),
            Err(_) => self.stats.malformed += 1,
        }
    }

    /// The greeting the peer sends: the other role's.
    fn peer_role(&self) -> crate::frame::Role {
        match self.cfg.local {
            Local::Connect(_) => crate::frame::Role::Listen,
            Local::Listen(_) => crate::frame::Role::Connect,
        }
    }

    fn move_to(&mut self, from: SocketAddr) {
        if from == self.peer {
            return;
        }
        self.peer = from;
        if self.heard {
            self.stats.moves += 1;
            self.ev_moved = true;
        }
    }

    fn heard_from(&mut self, now: Instant) {
        self.last_heard = now;
        if !self.heard {
            self.heard = true;
            self.ev_heard = true;
            self.timers[Timer::Heartbeat as usize] = Some(now);
        }
        self.silent = false;
    }

    fn on_caps(&mut self, now: Instant, c: Caps) {
        if let Some(old) = self.peer_caps
            && old.token != c.token
        {
            self.stats.restarts += 1;
            self.ev_restarted = true;
            self.restart_transport(now, c);
        }
        self.peer_caps = Some(c);
        if c.peer_token != self.cfg.token {
            self.caps_reply_due = true;
        }
        if self.chosen == Chosen::Undecided {
            let pw1_ok = self.cfg.protocol != Protocol::V012 && self.storage.is_some();
            if c.pw1() && pw1_ok {
                self.start_pw1(now, c);
            } else {
                self.decide_v012();
            }
        }
    }

    fn start_pw1(&mut self, now: Instant, c: Caps) {
        let Some(storage) = self.storage.take() else {
            return;
        };
        let peer = PeerParams {
            token: c.token,
            max_streams: c.max_streams,
            initial_chunks: c.initial_chunks.max(1),
            max_datagram: c.max_datagram.max(wire::MIN_MAX_DATAGRAM as u16),
        };
        match Connection::new(self.cfg.pw1, storage, self.cfg.token, peer, now) {
            Ok(conn) => {
                self.conn = Some(conn);
                self.chosen = Chosen::Pw1;
                self.ev_protocol = true;
                self.timers[Timer::Heartbeat as usize] = Some(now);
            }
            Err(_) => {
                // Storage validated by the caller; if not, fall back.
                self.ev_refused = true;
            }
        }
    }

    fn decide_v012(&mut self) {
        if self.chosen != Chosen::Undecided {
            return;
        }
        if self.cfg.protocol == Protocol::Pw1 || self.ep.is_none() {
            self.ev_refused = true;
            return;
        }
        self.chosen = Chosen::V012;
        self.ev_protocol = true;
        if matches!(self.cfg.local, Local::Connect(_)) {
            // Serve the first session at once, as udphp.py does.
            self.v.connect_due = true;
        }
    }

    fn restart_transport(&mut self, now: Instant, c: Caps) {
        self.handshake_done = false;
        match self.chosen {
            Chosen::Pw1 => {
                if let Some(conn) = self.conn.take() {
                    self.storage = Some(conn.into_storage());
                }
                self.ev_all_reset = true;
                self.start_pw1(now, c);
            }
            Chosen::V012 => {
                if let Some(ep) = self.ep.as_deref_mut() {
                    let cfg = *ep.config();
                    ep.reset(cfg, now);
                }
                self.v = V012 {
                    session: 1,
                    announced_up_to: 1,
                    connect_due: matches!(self.cfg.local, Local::Connect(_)),
                    ..V012::default()
                };
                self.ev_v012_closed = None;
                self.ev_all_reset = true;
            }
            Chosen::Undecided => {}
        }
    }

    fn on_announcement(&mut self, n: u32) {
        match self.cfg.local {
            Local::Connect(_) if n > self.v.announced_up_to => {
                self.v.announced_up_to = n;
                if !self.v.active && self.v.session <= n {
                    self.v.connect_due = true;
                }
            }
            Local::Listen(_) if n == self.v.session => {
                self.v.echoed = true;
                self.timers[Timer::Announce as usize] = None;
            }
            _ => {}
        }
    }

    /// `-l`: a local client is waiting for a stream (call while it waits).
    pub fn local_waiting(&mut self, now: Instant) {
        self.waiting_since.get_or_insert(now);
    }

    fn silent_peer_deadline(&self) -> Option<Instant> {
        let since = self.waiting_since?;
        (self.chosen == Chosen::Undecided
            && self.cfg.protocol == Protocol::Auto
            && self.peer_caps.is_none()
            && self.ep.is_some())
        .then(|| add_millis(since, SILENT_PEER_V012_MS))
    }

    /// Fires due timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self
            .silent_peer_deadline()
            .is_some_and(|t| micros(t) <= micros(now))
        {
            self.decide_v012();
        }
        self.birthday_timeout(now);
        if !self.silent && micros_between(self.last_heard, now) >= self.cfg.silence_ms * 1000 {
            self.silent = true;
            self.ev_silent = true;
        }
        let due = |t: Option<Instant>| t.is_some_and(|t| micros(t) <= micros(now));
        if due(self.timers[Timer::LocalRetry as usize]) {
            self.timers[Timer::LocalRetry as usize] = None;
            if !self.v.active && self.chosen == Chosen::V012 {
                self.v.connect_due = true;
            }
        }
        match self.chosen {
            Chosen::V012 => {
                if let Some(ep) = self.ep.as_deref_mut() {
                    ep.handle_timeout(now);
                }
            }
            Chosen::Pw1 => {
                if let Some(c) = self.conn.as_mut() {
                    c.handle_timeout(now);
                }
            }
            Chosen::Undecided => {}
        }
    }

    // ---- local side ----

    /// Whether [`accept_local`](Self::accept_local) would take a client now.
    pub fn can_accept(&self) -> bool {
        if self.stopping || !matches!(self.cfg.local, Local::Listen(_)) {
            return false;
        }
        match self.chosen {
            Chosen::Pw1 => self.conn.as_ref().is_some_and(|c| c.can_open()),
            Chosen::V012 => !self.v.active && self.ev_v012_closed.is_none(),
            Chosen::Undecided => false,
        }
    }

    /// `-l`: a local client connected; returns its stream, or `None` when
    /// none can be opened now (leave the client waiting).
    pub fn accept_local(&mut self, now: Instant) -> Option<u32> {
        if !self.can_accept() {
            return None;
        }
        match self.chosen {
            Chosen::Pw1 => {
                self.waiting_since = None;
                self.conn.as_mut()?.open_stream().ok()
            }
            Chosen::V012 => {
                self.waiting_since = None;
                self.v.active = true;
                self.v.broken = false;
                if self.v.session > 1 && !self.v.echoed {
                    self.timers[Timer::Announce as usize] = Some(now);
                }
                Some(self.v.session)
            }
            Chosen::Undecided => None,
        }
    }

    /// `-c`: the local service for `id` accepted the connection.
    pub fn local_connected(&mut self, id: u32) {
        if self.chosen == Chosen::V012 && id == self.v.session && !self.v.active {
            self.v.refusals = 0;
            self.v.active = true;
            self.v.broken = false;
            self.timers[Timer::LocalRetry as usize] = None;
            if id > 1 {
                self.v.echo_due = true;
            }
        }
    }

    /// `-c`: the local service for `id` refused (or failed). pw1 resets
    /// the stream (the peer's client is reset at once); v0.12 has no reset:
    /// the connect is retried every [`LOCAL_RETRY_MS`], and after
    /// [`V012_LOCAL_TRIES`] refusals the session ends with an EOF to the
    /// peer's client.
    pub fn local_refused(&mut self, now: Instant, id: u32) {
        match self.chosen {
            Chosen::Pw1 => {
                if let Some(c) = self.conn.as_mut() {
                    c.stream_reset(id, pw1::code::REFUSED);
                }
            }
            Chosen::V012 if id == self.v.session && !self.v.active => {
                self.v.refusals += 1;
                if self.v.refusals < V012_LOCAL_TRIES {
                    self.timers[Timer::LocalRetry as usize] = Some(add_millis(now, LOCAL_RETRY_MS));
                    return;
                }
                // v0.12 has no reset: the session ends as if the service
                // had closed at once (an empty frame: the peer's client gets
                // EOF), and the peer's bytes for it are dropped.
                self.v.refusals = 0;
                self.v.active = true;
                self.v.broken = true;
                if let Some(e) = self.ep.as_deref_mut() {
                    e.close_send();
                    let n = e.recv_peek().len();
                    e.recv_consume(n);
                }
                self.check_v012_session();
            }
            _ => {}
        }
    }

    /// Bytes [`stream_send`](Self::stream_send) takes now.
    pub fn stream_send_capacity(&self, id: u32) -> usize {
        match self.chosen {
            Chosen::Pw1 => self.conn.as_ref().map_or(0, |c| c.stream_send_capacity(id)),
            Chosen::V012 if self.v.active && id == self.v.session => {
                self.ep.as_deref().map_or(0, |e| e.send_capacity())
            }
            _ => 0,
        }
    }

    /// Takes local bytes for stream `id`; returns how many.
    pub fn stream_send(&mut self, id: u32, data: &[u8]) -> usize {
        match self.chosen {
            Chosen::Pw1 => self
                .conn
                .as_mut()
                .and_then(|c| c.stream_send(id, data).ok())
                .unwrap_or(0),
            Chosen::V012 if self.v.active && id == self.v.session => {
                self.ep.as_deref_mut().map_or(0, |e| e.send(data))
            }
            _ => 0,
        }
    }

    /// The local side of `id` reached end of stream.
    pub fn stream_finish(&mut self, id: u32) {
        match self.chosen {
            Chosen::Pw1 => {
                if let Some(c) = self.conn.as_mut() {
                    let _ = c.stream_finish(id);
                }
            }
            Chosen::V012 if self.v.active && id == self.v.session => {
                if let Some(e) = self.ep.as_deref_mut() {
                    e.close_send();
                }
                self.check_v012_session();
            }
            _ => {}
        }
    }

    /// The local socket of `id` failed.
    pub fn stream_reset(&mut self, id: u32) {
        match self.chosen {
            Chosen::Pw1 => {
                if let Some(c) = self.conn.as_mut() {
                    c.stream_reset(id, pw1::code::LOCAL_ERROR);
                }
            }
            Chosen::V012 if self.v.active && id == self.v.session => {
                // v0.12 has no reset: end our direction and drop the
                // peer's bytes until it ends its own.
                self.v.broken = true;
                if let Some(e) = self.ep.as_deref_mut() {
                    e.close_send();
                    let n = e.recv_peek().len();
                    e.recv_consume(n);
                }
                self.check_v012_session();
            }
            _ => {}
        }
    }

    /// The peer's bytes for `id`.
    pub fn stream_peek(&self, id: u32) -> StreamRead<'_> {
        match self.chosen {
            Chosen::Pw1 => self
                .conn
                .as_ref()
                .map_or(StreamRead::Unknown, |c| c.stream_peek(id)),
            Chosen::V012 if self.v.active && id == self.v.session => match self.ep.as_deref() {
                Some(e) if !e.recv_peek().is_empty() => StreamRead::Data(e.recv_peek()),
                Some(e) if e.peer_finished() => StreamRead::Finished,
                Some(_) => StreamRead::Blocked,
                None => StreamRead::Unknown,
            },
            _ => StreamRead::Unknown,
        }
    }

    /// `n` bytes of what [`stream_peek`](Self::stream_peek) showed were
    /// written locally.
    pub fn stream_consume(&mut self, id: u32, n: usize) {
        match self.chosen {
            Chosen::Pw1 => {
                if let Some(c) = self.conn.as_mut() {
                    c.stream_consume(id, n);
                }
            }
            Chosen::V012 if self.v.active && id == self.v.session => {
                if let Some(e) = self.ep.as_deref_mut() {
                    e.recv_consume(n);
                }
                self.check_v012_session();
            }
            _ => {}
        }
    }

    fn check_v012_session(&mut self) {
        if !self.v.active {
            return;
        }
        let Some(ep) = self.ep.as_deref_mut() else {
            return;
        };
        if ep.peer_finished() && ep.send_finished() && ep.next_session() {
            let n = self.v.session;
            self.ev_v012_closed = Some((n, self.v.broken));
            self.v.active = false;
            self.v.broken = false;
            self.v.echoed = false;
            self.v.session += 1;
            self.timers[Timer::Announce as usize] = None;
            if matches!(self.cfg.local, Local::Connect(_))
                && self.v.session <= self.v.announced_up_to
            {
                self.v.connect_due = true;
            }
        }
    }

    /// Stops the tunnel and lingers [`LINGER_MS`] answering the peer (pw1:
    /// ACK + CLOSE to whatever still comes, so its last FIN is settled even
    /// if our first CLOSE was lost; v0.12: a lost ack of its last frame is
    /// answered again). See [`is_done`](Self::is_done).
    pub fn close(&mut self, now: Instant) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        self.timers[Timer::Linger as usize] = Some(add_millis(now, LINGER_MS));
        if let Some(c) = self.conn.as_mut() {
            c.close(pw1::code::CLOSING);
        }
    }

    // ---- output ----

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        if core::mem::take(&mut self.ev_heard) {
            return Some(Event::PeerHeard(self.peer));
        }
        if core::mem::take(&mut self.ev_moved) {
            return Some(Event::PeerMoved(self.peer));
        }
        if core::mem::take(&mut self.ev_restarted) {
            return Some(Event::PeerRestarted);
        }
        if core::mem::take(&mut self.ev_all_reset) {
            return Some(Event::AllStreamsReset);
        }
        if core::mem::take(&mut self.ev_protocol) {
            return Some(Event::Protocol(self.chosen));
        }
        if core::mem::take(&mut self.ev_refused) {
            return Some(Event::ProtocolRefused);
        }
        if core::mem::take(&mut self.ev_silent) {
            return Some(Event::PeerSilent);
        }
        if let Some(b) = self.poll_birthday_event() {
            return Some(Event::Birthday(b));
        }
        if let Some((n, reset)) = self.ev_v012_closed.take() {
            return Some(if reset {
                Event::StreamReset(n)
            } else {
                Event::StreamClosed(n)
            });
        }
        if self.chosen == Chosen::V012
            && self.v.connect_due
            && !self.v.active
            && !self.stopping
            && self.timers[Timer::LocalRetry as usize].is_none()
        {
            self.v.connect_due = false;
            return Some(Event::ConnectLocal(self.v.session));
        }
        let conn = self.conn.as_mut()?;
        if let Some(id) = conn.poll_opened() {
            return Some(Event::ConnectLocal(id));
        }
        conn.poll_event().map(|e| match e {
            pw1::Event::StreamClosed(id) => Event::StreamClosed(id),
            pw1::Event::StreamReset(id) => Event::StreamReset(id),
        })
    }

    /// Writes the next datagram into `buf` (at least the transport's
    /// largest datagram: the v0.12 endpoint's `MAX_DATAGRAM`, or pw1's
    /// `max_datagram`).
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        let normal = self.cfg.normal_ttl;
        if let Some(len) = self.heartbeat(now, buf) {
            let priming = self.punches <= PRIME_COUNT && !self.heard && self.cfg.prime_ttl > 0;
            let ttl = if priming { self.cfg.prime_ttl } else { normal };
            return Some(Transmit {
                to: self.peer,
                len,
                ttl,
            });
        }
        let len = match self.chosen {
            Chosen::V012 => self.ep.as_deref_mut()?.poll_transmit(now, buf)?,
            Chosen::Pw1 if self.peer_caps.is_some() => {
                self.conn.as_mut()?.poll_transmit(now, buf)?
            }
            _ => return None,
        };
        Some(Transmit {
            to: self.peer,
            len,
            ttl: normal,
        })
    }

    /// A heartbeat, if one is due: punch, periodic, capability reply,
    /// v0.12 announcement or echo.
    fn heartbeat(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        let due = |t: Option<Instant>| t.is_some_and(|t| micros(t) <= micros(now));
        let role = self.cfg.local.role();
        let g = role.greeting();
        let mut tail = None;
        if self.v.echo_due {
            self.v.echo_due = false;
            tail = Some(Tail::Session(self.v.session));
        } else if self.chosen == Chosen::V012
            && due(self.timers[Timer::Announce as usize])
            && self.v.active
            && !self.v.echoed
        {
            self.timers[Timer::Announce as usize] = Some(add_millis(now, ANNOUNCE_INTERVAL_MS));
            tail = Some(Tail::Session(self.v.session));
        } else if self.caps_reply_due
            && self
                .last_caps_reply
                .is_none_or(|t| micros_between(t, now) >= CAPS_REPLY_MS * 1000)
        {
            self.caps_reply_due = false;
            self.last_caps_reply = Some(now);
            tail = Some(self.caps_tail());
        } else if due(self.timers[Timer::Heartbeat as usize]) {
            let fast = !self.heard || (self.chosen == Chosen::Pw1 && !self.handshake_done);
            let every = if fast {
                PUNCH_INTERVAL_MS
            } else {
                self.cfg.heartbeat_ms
            };
            self.timers[Timer::Heartbeat as usize] = Some(add_millis(now, every));
            if !self.heard {
                self.punches = self.punches.saturating_add(1);
            }
            tail = Some(self.caps_tail());
        }
        let tail = tail?;
        let total = g.len() + tail.buffer_len();
        let out = buf.get_mut(..total)?;
        out[..g.len()].copy_from_slice(g);
        tail.emit(&mut out[g.len()..])?;
        self.stats.heartbeats_sent += 1;
        Some(total)
    }

    fn caps_tail(&self) -> Tail {
        // Once v0.12 is chosen (perhaps by the silent-peer guess, before a
        // birthday round reached a punchwire peer), pw1 is not offered:
        // the peer follows into v0.12 instead of a mismatch.
        let pw1 = self.cfg.protocol != Protocol::V012
            && self.chosen != Chosen::V012
            && (self.storage.is_some() || self.conn.is_some());
        let max_streams = match (&self.storage, &self.conn) {
            (Some(s), _) => self.cfg.pw1.max_streams_for(s),
            (None, Some(_)) if self.cfg.pw1.accept_streams => self.cfg.pw1.max_streams,
            _ => 0,
        };
        Tail::Caps(Caps {
            flags: if pw1 { FLAG_PW1 } else { 0 },
            token: self.cfg.token,
            peer_token: self.peer_caps.map_or(0, |c| c.token),
            max_streams,
            initial_chunks: self.cfg.pw1.initial_chunks,
            max_datagram: self.cfg.pw1.max_datagram.min(usize::from(u16::MAX)) as u16,
        })
    }

    /// The next instant something is due (then call `handle_timeout` and
    /// drain `poll_transmit`).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = None;
        for x in self.timers {
            t = earliest(t, x);
        }
        t = earliest(t, self.silent_peer_deadline());
        t = earliest(t, self.birthday_deadline());
        if self.caps_reply_due {
            let at = self.last_caps_reply.map_or(self.last_heard, |l| {
                crate::time::add_millis(l, CAPS_REPLY_MS)
            });
            t = earliest(t, Some(at));
        }
        if !self.silent {
            t = earliest(t, Some(add_millis(self.last_heard, self.cfg.silence_ms)));
        }
        match self.chosen {
            Chosen::V012 => earliest(t, self.ep.as_deref().and_then(|e| e.poll_timeout())),
            Chosen::Pw1 => earliest(t, self.conn.as_ref().and_then(|c| c.poll_timeout())),
            Chosen::Undecided => t,
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::frame::Role;
    use crate::frame::tail::CAPS_LEN;
    use crate::time::at_millis;
    use crate::tunnel::Config;
    use crate::tunnel::pw1::{Chunk, SentPacket, Stream};
    use core::net::{Ipv4Addr, SocketAddrV4};
    use std::boxed::Box;
    use std::vec;
    use std::vec::Vec;

    const PEER: SocketAddr =
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 2), 5555));

    struct Mem {
        ep: Box<Endpoint<1, 1400>>,
        send: Vec<Chunk>,
        recv: Vec<Chunk>,
        sent: Vec<SentPacket>,
        streams: Vec<Stream>,
    }

    fn mem(role: Role) -> Mem {
        Mem {
            ep: Box::new(Endpoint::new(Config::new(role), at_millis(0))),
            send: vec![Chunk::EMPTY; 16],
            recv: vec![Chunk::EMPTY; 32],
            sent: vec![SentPacket::EMPTY; 64],
            streams: vec![Stream::EMPTY; 4],
        }
    }

    fn tunnel(m: &mut Mem, local: Local, protocol: Protocol) -> Tunnel<'_, 1400> {
        let mut p = pw1::Config::new(false);
        p.max_streams = 4;
        p.initial_chunks = 2;
        let cfg = MachineConfig {
            peer: PEER,
            local,
            protocol,
            prime_ttl: 2,
            normal_ttl: 64,
            heartbeat_ms: 15_000,
            silence_ms: 120_000,
            pw1: p,
            token: 0xAAAA,
        };
        let storage = Storage {
            send: &mut m.send,
            recv: &mut m.recv,
            sent: &mut m.sent,
            streams: &mut m.streams,
        };
        Tunnel::new(cfg, Some(&mut *m.ep), Some(storage), at_millis(0))
    }

    fn from(port: u16) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 2), port))
    }

    fn caps_heartbeat(token: u64, peer_token: u64) -> Vec<u8> {
        let mut b = vec![0u8; 8 + CAPS_LEN];
        b[..8].copy_from_slice(Role::Connect.greeting());
        Tail::Caps(Caps {
            flags: FLAG_PW1,
            token,
            peer_token,
            max_streams: 4,
            initial_chunks: 2,
            max_datagram: 1400,
        })
        .emit(&mut b[8..])
        .unwrap();
        b
    }

    fn events<const F: usize>(t: &mut Tunnel<'_, F>) -> Vec<Event> {
        core::iter::from_fn(|| t.poll_event()).collect()
    }

    #[test]
    fn first_heartbeats_prime_then_carry_capabilities() {
        let mut m = mem(Role::Listen);
        let mut t = tunnel(&mut m, Local::Listen(7000), Protocol::Auto);
        let mut buf = vec![0u8; 2000];
        let tx = t.poll_transmit(at_millis(0), &mut buf).unwrap();
        assert_eq!(tx.ttl, 2, "the first heartbeats prime");
        assert_eq!(&buf[..8], b"HELOSRVR");
        assert!(
            matches!(Tail::parse(&buf[8..tx.len]), Tail::Caps(c) if c.pw1() && c.token == 0xAAAA)
        );
        for k in 1..=PRIME_COUNT as u64 + 1 {
            t.handle_timeout(at_millis(200 * k));
            let tx = t.poll_transmit(at_millis(200 * k), &mut buf).unwrap();
            let want = if k < u64::from(PRIME_COUNT) { 2 } else { 64 };
            assert_eq!(tx.ttl, want, "heartbeat {k}");
        }
    }

    #[test]
    fn capabilities_negotiate_pw1_and_a_bare_heartbeat_v012() {
        let mut m = mem(Role::Listen);
        let mut t = tunnel(&mut m, Local::Listen(7000), Protocol::Auto);
        t.handle_datagram(at_millis(10), PEER, &caps_heartbeat(0xBBBB, 0));
        assert_eq!(t.chosen(), Chosen::Pw1);
        let ev = events(&mut t);
        assert!(ev.contains(&Event::PeerHeard(PEER)) && ev.contains(&Event::Protocol(Chosen::Pw1)));
        // It did not know us: our capabilities go back at once.
        let mut buf = vec![0u8; 2000];
        let tx = t.poll_transmit(at_millis(10), &mut buf).unwrap();
        assert!(matches!(Tail::parse(&buf[8..tx.len]), Tail::Caps(c) if c.peer_token == 0xBBBB));
        assert!(t.can_accept());

        let mut m = mem(Role::Listen);
        let mut t = tunnel(&mut m, Local::Listen(7000), Protocol::Auto);
        t.handle_datagram(at_millis(10), PEER, b"HELOCLNT");
        assert_eq!(t.chosen(), Chosen::V012);

        let mut m = mem(Role::Listen);
        let mut t = tunnel(&mut m, Local::Listen(7000), Protocol::Pw1);
        t.handle_datagram(at_millis(10), PEER, b"HELOCLNT");
        assert!(events(&mut t).contains(&Event::ProtocolRefused));
        assert_eq!(t.chosen(), Chosen::Undecided);
    }

    #[test]
    fn a_bare_heartbeat_from_another_port_does_not_redirect() {
        let mut m = mem(Role::Listen);
        let mut t = tunnel(&mut m, Local::Listen(7000), Protocol::V012);
        t.handle_datagram(at_millis(10), PEER, b"HELOCLNT");
        assert_eq!(t.peer(), PEER);
        // A third party on the peer's carrier NAT.
        t.handle_datagram(at_millis(20), from(40000), b"HELOCLNT");
        t.handle_datagram(at_millis(30), from(40000), b"A\x00\x01\xff\xfe");
        assert_eq!(t.peer(), PEER, "the tunnel stays with the peer");
        assert_eq!(t.link_stats().unvalidated, 2);
        // After the current port fell silent for PORT_SILENCE_MS, the peer
        // may really have moved: a well-formed datagram moves it.
        t.handle_datagram(
            at_millis(10 + PORT_SILENCE_MS + 1),
            from(40001),
            b"HELOCLNT",
        );
        assert_eq!(t.peer(), from(40001));
        assert!(events(&mut t).contains(&Event::PeerMoved(from(40001))));
    }

    #[test]
    fn before_first_contact_a_heartbeat_from_another_port_is_the_peer() {
        let mut m = mem(Role::Listen);
        let mut t = tunnel(&mut m, Local::Listen(7000), Protocol::Auto);
        // Junk first: a bare ack decides nothing and moves nothing.
        t.handle_datagram(at_millis(5), from(40000), b"A\x00\x01\xff\xfe");
        assert!(!t.is_heard());
        t.handle_datagram(at_millis(10), from(40002), &caps_heartbeat(0xBBBB, 0));
        assert_eq!(t.peer(), from(40002), "its NAT moved its port");
        // A copy of the peer's heartbeat from another port (anyone behind
        // its NAT may replay one) does not redirect a live tunnel...
        t.handle_datagram(at_millis(20), from(40003), &caps_heartbeat(0xBBBB, 0xAAAA));
        assert_eq!(t.peer(), from(40002));
        // ...but once the current port has gone silent, the peer's token
        // from a new port is the peer moved.
        let later = 10 + PORT_SILENCE_MS;
        t.handle_datagram(
            at_millis(later),
            from(40003),
            &caps_heartbeat(0xBBBB, 0xAAAA),
        );
        assert_eq!(t.peer(), from(40003));
        // Another token from another port is never the peer.
        let later = later + PORT_SILENCE_MS + 1;
        t.handle_datagram(
            at_millis(later),
            from(40004),
            &caps_heartbeat(0xCCCC, 0xAAAA),
        );
        assert_eq!(t.peer(), from(40003));
    }

    #[test]
    fn the_configured_address_takes_the_tunnel_back() {
        let mut m = mem(Role::Listen);
        let mut t = tunnel(&mut m, Local::Listen(7000), Protocol::Auto);
        // A replay of the peer's heartbeat from a flooder's port arrives
        // first and is taken for the peer's moved port...
        let hb = caps_heartbeat(0xBBBB, 0);
        t.handle_datagram(at_millis(5), from(40000), &hb);
        assert_eq!(t.peer(), from(40000));
        // ...the flooder keeps its port busy, but the real peer's heartbeat
        // from the address the user gave wins at once.
        t.handle_datagram(at_millis(6), from(40000), &hb);
        t.handle_datagram(at_millis(7), PEER, &hb);
        assert_eq!(t.peer(), PEER);
        t.handle_datagram(at_millis(8), from(40000), &hb);
        assert_eq!(t.peer(), PEER, "and keeps it");
    }

    #[test]
    fn junk_starting_with_h_decides_nothing() {
        let mut m = mem(Role::Listen);
        let mut t = tunnel(&mut m, Local::Listen(7000), Protocol::Pw1);
        // Random bytes that start with `H`, and our own role's greeting.
        t.handle_datagram(at_millis(5), from(40000), b"H\x13\x99junk");
        t.handle_datagram(at_millis(6), PEER, b"Hxyz");
        t.handle_datagram(at_millis(7), PEER, b"HELOSRVR");
        assert!(!t.is_heard());
        assert_eq!(t.chosen(), Chosen::Undecided);
        assert!(events(&mut t).is_empty(), "no refusal, no first contact");
        assert_eq!(t.link_stats().malformed, 3);
    }

    #[test]
    fn a_new_token_is_a_restart() {
        let mut m = mem(Role::Listen);
        let mut t = tunnel(&mut m, Local::Listen(7000), Protocol::Auto);
        t.handle_datagram(at_millis(10), PEER, &caps_heartbeat(0xBBBB, 0xAAAA));
        let id = t.accept_local(at_millis(20)).expect("a stream");
        assert_eq!(t.open_streams(), 1);
        let _ = events(&mut t);
        t.handle_datagram(at_millis(5000), PEER, &caps_heartbeat(0xDDDD, 0));
        let ev = events(&mut t);
        assert!(ev.contains(&Event::PeerRestarted) && ev.contains(&Event::AllStreamsReset));
        assert_eq!(t.chosen(), Chosen::Pw1);
        assert_eq!(t.open_streams(), 0);
        assert_eq!(t.stream_peek(id), StreamRead::Unknown);
        assert!(t.can_accept(), "the new incarnation is served at once");
    }

    #[test]
    fn a_client_waiting_on_a_silent_peer_means_udphp() {
        let mut m = mem(Role::Listen);
        let mut t = tunnel(&mut m, Local::Listen(7000), Protocol::Auto);
        assert!(!t.can_accept());
        t.local_waiting(at_millis(100));
        t.handle_timeout(at_millis(100 + SILENT_PEER_V012_MS - 1));
        assert_eq!(t.chosen(), Chosen::Undecided);
        assert!(
            t.poll_timeout()
                .is_some_and(|d| micros(d) <= micros(at_millis(100 + SILENT_PEER_V012_MS)))
        );
        t.handle_timeout(at_millis(100 + SILENT_PEER_V012_MS));
        assert_eq!(t.chosen(), Chosen::V012);
        assert!(t.can_accept());
    }

    #[test]
    fn v012_refused_service_ends_the_session_with_eof() {
        let mut m = mem(Role::Connect);
        let mut t = tunnel(&mut m, Local::Connect(22), Protocol::Auto);
        t.handle_datagram(at_millis(10), PEER, b"HELOSRVR");
        assert_eq!(t.chosen(), Chosen::V012);
        let mut buf = vec![0u8; 2000];
        let mut now = 10;
        for k in 0..V012_LOCAL_TRIES {
            let ev = events(&mut t);
            assert!(ev.contains(&Event::ConnectLocal(1)), "try {k}: {ev:?}");
            t.local_refused(at_millis(now), 1);
            now += LOCAL_RETRY_MS;
            t.handle_timeout(at_millis(now));
        }
        // The session's end of stream goes to the peer: an empty data frame.
        let mut eof = false;
        while let Some(tx) = t.poll_transmit(at_millis(now), &mut buf) {
            if let Ok(Repr::Data(d)) = Repr::parse(&buf[..tx.len]) {
                eof |= d.len == 0;
            }
        }
        assert!(eof, "an empty data frame ends the session");
    }

    #[test]
    fn silence_is_reported_once() {
        let mut m = mem(Role::Connect);
        let mut t = tunnel(&mut m, Local::Connect(22), Protocol::Auto);
        t.handle_datagram(at_millis(10), PEER, b"HELOSRVR");
        let _ = events(&mut t);
        t.handle_timeout(at_millis(10 + 120_000));
        assert!(events(&mut t).contains(&Event::PeerSilent));
        t.handle_timeout(at_millis(20 + 120_000));
        assert!(!events(&mut t).contains(&Event::PeerSilent));
        assert!(t.is_silent());
    }
}
