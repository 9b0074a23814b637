//! The generic tunnel driver: runs an [`Endpoint`] over any backend with
//! the core's [`Udp`], [`Tcp`] and [`Wait`] traits, carrying local TCP
//! sessions one after another.
//!
//! * **The UDP punch.** Both sides send to `PEER:UDP_PORT`. Until the peer
//!   is heard, a heartbeat goes every [`PUNCH_INTERVAL_MS`]; the first
//!   [`PRIME_COUNT`] of them with a small TTL that opens this side's NAT
//!   mapping but dies before the peer's router (a router without an input
//!   firewall would otherwise keep a conntrack entry that moves the peer's
//!   port, SPEC §3).
//! * **Only the peer's address counts.** Datagrams from any other IP are
//!   counted and dropped. The peer's *port* is learned from its datagrams:
//!   if its router had to move the mapping (the collision above), replies go
//!   where its datagrams come from.
//! * **Sessions.** `Listen` accepts one local connection at a time and
//!   carries it; `Connect` connects to the local service for each session —
//!   for the first at once (as udphp.py does, so a service that speaks first
//!   is heard), for later ones when the peer announces the session. The
//!   announcement is a heartbeat whose tail is `PWS` + the session number
//!   (udphp.py ignores heartbeat tails); `Connect` echoes it once connected.
//!   A session ends when both directions have ended (EOF both ways, sent as
//!   empty frames); then the next one starts on the same frame stream.
//!   A local reset ends our direction like an EOF.

use core::fmt;
use core::net::SocketAddrV4;

use super::{DatagramError, Endpoint, Event, Stats};
use crate::frame::{MAX_FRAME_LEN, Repr, Role};
use crate::net::{ConnectStatus, NetError, Tcp, Udp, Wait};
use crate::time::{self, Instant};

/// Heartbeat spacing while punching (until the peer is heard).
pub const PUNCH_INTERVAL_MS: u64 = 200;
/// Heartbeats sent with the priming TTL at the start of the punch.
pub const PRIME_COUNT: u32 = 5;
/// Retry spacing when the local service refuses a connection.
pub const LOCAL_RETRY_MS: u64 = 1000;
/// Resend spacing of a session announcement until it is echoed.
pub const ANNOUNCE_INTERVAL_MS: u64 = 200;
/// After the handler says stop, keep answering the peer this long (like
/// TCP's TIME-WAIT): if our ack of its last frame is lost, its resend is
/// acked again instead of the peer waiting out its silence timeout.
pub const LINGER_MS: u64 = 1000;
/// Tail that announces a session (followed by its number, u32 BE).
pub const SESSION_TAG: &[u8; 3] = b"PWS";

/// Which local side this tunnel end serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Local {
    /// `-c PORT`: connect to the local TCP service on PORT.
    Connect(u16),
    /// `-l PORT`: listen for local TCP clients on PORT.
    Listen(u16),
}

impl Local {
    /// The udphp role of this side.
    pub fn role(self) -> Role {
        match self {
            Local::Connect(_) => Role::Connect,
            Local::Listen(_) => Role::Listen,
        }
    }
}

/// Settings of [`run`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TunnelConfig {
    /// The peer's public address and UDP port.
    pub peer: SocketAddrV4,
    /// Our UDP port.
    pub udp_port: u16,
    /// The local side.
    pub local: Local,
    /// TTL of the priming heartbeats (0: no priming).
    pub prime_ttl: u8,
    /// TTL of everything else.
    pub normal_ttl: u8,
    /// Emit [`TunnelEvent::Stats`] this often (ms), if set.
    pub stats_every_ms: Option<u64>,
}

/// What the driver reports.
// `Stats` is a few hundred bytes, handed over once per stats interval; no
// heap in the core to box it.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TunnelEvent {
    /// The first datagram from the peer arrived (the hole is open).
    PeerHeard(SocketAddrV4),
    /// The peer's datagrams now come from another port.
    PeerMoved(SocketAddrV4),
    /// Nothing heard from the peer for the silence timeout.
    PeerSilent,
    /// A local session started.
    SessionStarted(u32),
    /// A local session ended.
    SessionEnded(u32),
    /// The local service could not be reached (retried).
    LocalConnectFailed(NetError),
    /// A datagram from the peer was malformed (dropped, counted).
    BadDatagram(DatagramError),
    /// A datagram from another address (dropped, counted).
    Foreign(SocketAddrV4),
    /// Periodic statistics.
    Stats(Stats),
}

/// What the event handler wants next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Keep running.
    Continue,
    /// Return from [`run`].
    Stop,
}

/// Why [`run`] failed.
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

/// The local side of the current session.
struct Session<S> {
    number: u32,
    socket: Option<S>,
    /// Connect role: the connect is in progress.
    connecting: bool,
    /// Local EOF (or reset) seen and passed to the endpoint.
    local_done: bool,
    /// Our write side towards the local socket was shut.
    shut: bool,
    /// The local socket failed: peer bytes for this session are dropped.
    broken: bool,
    /// Peer bytes taken from the endpoint, not yet written locally.
    pending: [u8; 4096],
    pending_at: usize,
    pending_len: usize,
}

impl<S> Session<S> {
    fn new(number: u32) -> Self {
        Session {
            number,
            socket: None,
            connecting: false,
            local_done: false,
            shut: false,
            broken: false,
            pending: [0; 4096],
            pending_at: 0,
            pending_len: 0,
        }
    }
}

/// The heartbeat that announces (or, from `Connect`, echoes) session `n`.
fn announcement(role: Role, n: u32, out: &mut [u8; 15]) -> usize {
    out[..8].copy_from_slice(role.greeting());
    out[8..11].copy_from_slice(SESSION_TAG);
    out[11..15].copy_from_slice(&n.to_be_bytes());
    15
}

fn announced(tail: &[u8]) -> Option<u32> {
    if tail.len() == 7 && &tail[..3] == SESSION_TAG {
        Some(u32::from_be_bytes([tail[3], tail[4], tail[5], tail[6]]))
    } else {
        None
    }
}

/// Datagram buffers of [`run_with`]: where the peer's datagrams are
/// received and ours are built.
pub struct Buffers<'a> {
    /// Receive buffer. A datagram longer than this is dropped (counted as
    /// bad): give it [`MAX_FRAME_LEN`] + 1 bytes to take any udphp.py frame,
    /// or the path MTU's payload on a device that cannot reassemble
    /// fragments anyway.
    pub rx: &'a mut [u8],
    /// Transmit buffer: at least the endpoint's `MAX_DATAGRAM` bytes.
    pub tx: &'a mut [u8],
}

/// Runs the tunnel until `on_event` says stop (or the backend fails), with
/// receive and transmit buffers of the largest frame on the stack (about
/// 80 KB); see [`run_with`] to bring your own.
pub fn run<N, const W: usize, const F: usize>(
    net: &mut N,
    ep: &mut Endpoint<W, F>,
    cfg: TunnelConfig,
    on_event: impl FnMut(TunnelEvent) -> Flow,
) -> Result<(), TunnelError>
where
    N: Udp + Tcp + Wait,
{
    let mut rx = [0u8; MAX_FRAME_LEN + 1];
    let mut tx = [0u8; MAX_FRAME_LEN];
    let buffers = Buffers {
        rx: &mut rx,
        tx: &mut tx[..Endpoint::<W, F>::MAX_DATAGRAM],
    };
    run_with(net, ep, cfg, buffers, on_event)
}

/// [`run`] with the caller's datagram buffers (e.g. `static`s sized for the
/// device's MTU on a microcontroller).
///
/// # Panics
/// If `buffers.tx` is shorter than the endpoint's `MAX_DATAGRAM`.
pub fn run_with<N, const W: usize, const F: usize>(
    net: &mut N,
    ep: &mut Endpoint<W, F>,
    cfg: TunnelConfig,
    buffers: Buffers<'_>,
    mut on_event: impl FnMut(TunnelEvent) -> Flow,
) -> Result<(), TunnelError>
where
    N: Udp + Tcp + Wait,
{
    assert!(
        buffers.tx.len() >= Endpoint::<W, F>::MAX_DATAGRAM,
        "the transmit buffer must hold the endpoint's MAX_DATAGRAM"
    );
    let Buffers { rx, tx } = buffers;
    let udp = net.udp_bind(cfg.udp_port).map_err(TunnelError::UdpBind)?;
    let listener = match cfg.local {
        Local::Listen(port) => Some(net.tcp_listen(port).map_err(TunnelError::Listen)?),
        Local::Connect(_) => None,
    };
    let role = cfg.local.role();
    let mut peer = cfg.peer;
    let mut heard = false;
    let mut punches: u32 = 0;
    let mut now = net.now();
    let mut next_punch = now;
    let mut next_stats = cfg.stats_every_ms.map(|ms| time::add_millis(now, ms));
    let mut session: Session<N::TcpSocket> = Session::new(1);
    let mut local_retry_at: Option<Instant> = None;
    // Connect: the newest session the peer announced; Listen: the session
    // being announced and not yet echoed.
    let mut announced_up_to: u32 = 1;
    let mut announce_at: Option<Instant> = None;
    let mut chunk = [0u8; 4096];
    let ttl_normal = cfg.normal_ttl;
    if cfg.prime_ttl > 0 {
        let _ = net.udp_set_ttl(udp, cfg.prime_ttl);
    }
    // Connect serves its first session at once, as udphp.py does.
    let mut want_connect = matches!(cfg.local, Local::Connect(_));

    // Set when the handler says stop: the loop lingers until then.
    let mut stop_at: Option<Instant> = None;
    macro_rules! emit {
        ($e:expr) => {
            if on_event($e) == Flow::Stop && stop_at.is_none() {
                stop_at = Some(time::add_millis(now, LINGER_MS));
            }
        };
    }

    loop {
        if let Some(at) = stop_at
            && time::micros(now) >= time::micros(at)
        {
            return Ok(());
        }
        // ---- the peer's datagrams ----
        let mut recv_errors = 0;
        loop {
            let (n, from) = match net.udp_recv_from(udp, rx) {
                Ok(r) => r,
                Err(NetError::WouldBlock) => break,
                // ICMP errors surface here on some stacks; they say nothing
                // the heartbeats will not. A socket that keeps failing is
                // left for the next wake-up instead of spun on.
                Err(_) => {
                    recv_errors += 1;
                    if recv_errors > 8 {
                        break;
                    }
                    continue;
                }
            };
            if from.ip() != peer.ip() {
                emit!(TunnelEvent::Foreign(from));
                continue;
            }
            // Only a well-formed frame may move the peer's port: a stray
            // datagram from the peer's address must not redirect us.
            if from.port() != peer.port() && Repr::parse(&rx[..n]).is_ok() {
                peer = from;
                emit!(TunnelEvent::PeerMoved(from));
            }
            if !heard {
                heard = true;
                let _ = net.udp_set_ttl(udp, ttl_normal);
                emit!(TunnelEvent::PeerHeard(from));
            }
            if let Ok(Repr::Heartbeat(h)) = Repr::parse(&rx[..n])
                && let Some(k) = announced(h.tail)
            {
                match cfg.local {
                    Local::Connect(_) if k > announced_up_to => {
                        announced_up_to = k;
                    }
                    Local::Listen(_) if announce_at.is_some() && k == session.number => {
                        announce_at = None;
                    }
                    _ => {}
                }
            }
            if let Err(e) = ep.handle_datagram(now, &rx[..n]) {
                emit!(TunnelEvent::BadDatagram(e));
            }
        }
        ep.handle_timeout(now);

        // ---- the local side ----
        match cfg.local {
            Local::Listen(_) => {
                if session.socket.is_none()
                    && stop_at.is_none()
                    && let Some(l) = listener
                    && let Ok(s) = net.tcp_accept(l)
                {
                    session.socket = Some(s);
                    if session.number > 1 {
                        announce_at = Some(now);
                    }
                    emit!(TunnelEvent::SessionStarted(session.number));
                }
            }
            Local::Connect(port) => {
                if session.number <= announced_up_to && session.socket.is_none() {
                    want_connect = true;
                }
                let retry_due = local_retry_at.is_none_or(|t| time::micros(now) >= time::micros(t));
                if want_connect && session.socket.is_none() && retry_due && stop_at.is_none() {
                    want_connect = false;
                    match net.tcp_connect_local(port) {
                        Ok(s) => {
                            session.socket = Some(s);
                            session.connecting = true;
                        }
                        Err(e) => {
                            want_connect = true;
                            local_retry_at = Some(time::add_millis(now, LOCAL_RETRY_MS));
                            emit!(TunnelEvent::LocalConnectFailed(e));
                        }
                    }
                }
                if session.connecting
                    && let Some(s) = session.socket
                {
                    match net.tcp_status(s) {
                        ConnectStatus::Connected => {
                            session.connecting = false;
                            local_retry_at = None;
                            if session.number > 1 {
                                // Echo the announcement: the listener stops
                                // repeating it.
                                let mut hb = [0u8; 15];
                                let len = announcement(role, session.number, &mut hb);
                                let _ = net.udp_send_to(udp, &hb[..len], peer);
                            }
                            emit!(TunnelEvent::SessionStarted(session.number));
                        }
                        ConnectStatus::Failed(e) => {
                            net.tcp_close(s);
                            session.socket = None;
                            session.connecting = false;
                            want_connect = true;
                            local_retry_at = Some(time::add_millis(now, LOCAL_RETRY_MS));
                            emit!(TunnelEvent::LocalConnectFailed(e));
                        }
                        ConnectStatus::Pending | ConnectStatus::Handshaking => {}
                    }
                }
            }
        }

        if let (Some(s), false) = (session.socket, session.connecting) {
            // Local → peer.
            while !session.local_done {
                let cap = ep.send_capacity().min(chunk.len());
                if cap == 0 {
                    break;
                }
                match net.tcp_read(s, &mut chunk[..cap]) {
                    Ok(0) => {
                        session.local_done = true;
                        ep.close_send();
                    }
                    Ok(n) => {
                        ep.send(&chunk[..n]);
                    }
                    Err(NetError::WouldBlock) => break,
                    Err(_) => {
                        session.local_done = true;
                        session.broken = true;
                        ep.close_send();
                    }
                }
            }
            // Peer → local.
            loop {
                if session.pending_at == session.pending_len {
                    session.pending_at = 0;
                    session.pending_len = ep.recv(&mut session.pending);
                    if session.pending_len == 0 {
                        break;
                    }
                }
                if session.broken {
                    session.pending_at = session.pending_len;
                    continue;
                }
                match net.tcp_write(s, &session.pending[session.pending_at..session.pending_len]) {
                    Ok(n) => session.pending_at += n,
                    Err(NetError::WouldBlock) => break,
                    Err(_) => {
                        session.broken = true;
                        if !session.local_done {
                            session.local_done = true;
                            ep.close_send();
                        }
                    }
                }
            }
            if ep.peer_finished() && session.pending_at == session.pending_len && !session.shut {
                session.shut = true;
                let _ = net.tcp_shutdown_write(s);
            }
            if session.shut && ep.send_finished() && ep.next_session() {
                net.tcp_close(s);
                emit!(TunnelEvent::SessionEnded(session.number));
                session = Session::new(session.number + 1);
                announce_at = None;
            }
        }

        // ---- timers: punch heartbeats, announcements, stats ----
        if !heard && time::micros(now) >= time::micros(next_punch) {
            let greeting = role.greeting();
            if punches == PRIME_COUNT && cfg.prime_ttl > 0 {
                let _ = net.udp_set_ttl(udp, ttl_normal);
            }
            let _ = net.udp_send_to(udp, greeting, peer);
            punches = punches.saturating_add(1);
            next_punch = time::add_millis(now, PUNCH_INTERVAL_MS);
        }
        if let Some(at) = announce_at
            && time::micros(now) >= time::micros(at)
        {
            let mut hb = [0u8; 15];
            let len = announcement(role, session.number, &mut hb);
            let _ = net.udp_send_to(udp, &hb[..len], peer);
            announce_at = Some(time::add_millis(now, ANNOUNCE_INTERVAL_MS));
        }
        if let Some(at) = next_stats
            && time::micros(now) >= time::micros(at)
        {
            next_stats = cfg.stats_every_ms.map(|ms| time::add_millis(now, ms));
            emit!(TunnelEvent::Stats(ep.stats()));
        }

        // ---- output ----
        while let Some(n) = ep.poll_transmit(now, tx) {
            match net.udp_send_to(udp, &tx[..n], peer) {
                // A full send queue loses this datagram like the network
                // would; the endpoint retransmits.
                Ok(()) | Err(_) => {}
            }
        }
        while let Some(e) = ep.poll_event() {
            match e {
                Event::PeerSilent => emit!(TunnelEvent::PeerSilent),
                Event::PeerHeard | Event::PeerFinished | Event::SendFinished => {}
                Event::RetransmitLimit { .. } => emit!(TunnelEvent::PeerSilent),
            }
        }

        // ---- sleep ----
        let mut deadline = ep.poll_timeout();
        if !heard {
            deadline = time::earliest(deadline, Some(next_punch));
        }
        deadline = time::earliest(deadline, announce_at);
        deadline = time::earliest(deadline, next_stats);
        if want_connect && stop_at.is_none() {
            deadline = time::earliest(deadline, local_retry_at.or(Some(now)));
        }
        deadline = time::earliest(deadline, stop_at);
        now = net.wait(deadline).map_err(TunnelError::Wait)?;
    }
}
