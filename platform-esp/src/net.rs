//! [`SmolNet`]: the core's socket traits on a smoltcp interface.

use core::net::{Ipv4Addr, SocketAddrV4};

use heapless::Vec;
use punchwire_core::net::{ConnectStatus, NetError, NetResult, Tcp, Udp, Wait};
use punchwire_core::time::{self, Instant};
use smoltcp::iface::{Interface, PollResult, SocketHandle, SocketSet};
use smoltcp::phy::Device;
use smoltcp::socket::{Socket, tcp, udp};
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::{IpAddress, IpEndpoint};

/// Most TCP sockets the pool takes from the socket set (more are left
/// alone). A punch over four candidate buckets keeps up to 64 connects in
/// flight; a firmware gives it far fewer and the punch re-arms what it can.
pub const MAX_TCP_SOCKETS: usize = 80;
/// Most UDP sockets the pool takes from the socket set.
pub const MAX_UDP_SOCKETS: usize = 4;
/// Most listening ports at once.
const MAX_LISTENERS: usize = 4;
/// Local ports for `tcp_connect_local` and `udp_bind(0)`.
const EPHEMERAL: core::ops::RangeInclusive<u16> = 49152..=65535;
/// A closed socket that still has bytes or its FIN unacknowledged (FIN-WAIT-1,
/// CLOSING, LAST-ACK) keeps retransmitting for this long after the close,
/// then is aborted (one RST) and returns to the pool: the peer is gone.
/// It must outlast smoltcp's retransmission backoff (the RTO doubles up to
/// 60 s): a limit on the peer's *silence* is wrong here, because a peer in
/// FIN-WAIT-2 rightly says nothing until our FIN arrives. (A 20 s silence
/// timeout aborted live connections whose RTO had backed off beyond 20 s,
/// and the peer read "connection reset" after the last byte: issue 13.)
const DRAIN_LIMIT_S: u64 = 120;
/// A closed socket whose every byte and FIN the peer acknowledged
/// (FIN-WAIT-2), still waiting for the peer's FIN, is dropped silently
/// after this long: nothing of ours is lost, and no RST is sent (the
/// peer's late FIN then finds no socket, as after Linux's
/// `tcp_fin_timeout`).
const FIN_WAIT_LIMIT_S: u64 = 20;
/// The port a socket is briefly "listening" on while it is forgotten (see
/// [`forget`]); never polled in that state, so never seen on the wire.
const FORGET_PORT: u16 = 1;

/// The clock and the sleep of the machine the interface runs on.
pub trait Platform {
    /// Monotonic time on the core's base (µs since any origin).
    fn now(&mut self) -> Instant;

    /// Sleeps until `until` (forever if `None`), or until the device may
    /// have received a frame. Returning early is always allowed.
    fn idle(&mut self, until: Option<Instant>);
}

/// A TCP socket of the pool: index and generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TcpHandle {
    index: u8,
    generation: u16,
}

/// A UDP socket of the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UdpHandle {
    index: u8,
    generation: u16,
}

/// A listening port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Listener {
    index: u8,
    generation: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TcpUse {
    Free,
    /// Owned by a handle. `connecting`: a connect was started; `connected`:
    /// the socket has been seen synchronised (so a later CLOSED is a reset,
    /// not a refusal).
    Stream {
        connecting: bool,
        connected: bool,
    },
    /// The socket listening for listener `0`.
    Listening(u8),
    /// Closed by its owner, finishing its FIN exchange.
    Draining,
}

struct TcpSlot {
    handle: SocketHandle,
    generation: u16,
    usage: TcpUse,
    /// The port given to `tcp_bind_reuse` (0: pick one at connect).
    port: u16,
    /// When its owner closed it (meaningful while `Draining`).
    closed_at: Instant,
    /// The owner asked for FIN; it goes once every queued byte is
    /// acknowledged (see [`SmolNet::send_fins`]).
    fin_pending: bool,
}

struct UdpSlot {
    handle: SocketHandle,
    generation: u16,
    port: Option<u16>,
}

struct ListenSlot {
    port: u16,
    generation: u16,
    active: bool,
    /// Pool index of the socket in LISTEN for this port, if one was free.
    socket: Option<u8>,
}

/// The core's [`Udp`], [`Tcp`] and [`Wait`] over a smoltcp interface.
/// See the crate docs for the mapping.
pub struct SmolNet<'a, D: Device, P: Platform> {
    iface: Interface,
    device: D,
    sockets: SocketSet<'a>,
    platform: P,
    tcp: Vec<TcpSlot, MAX_TCP_SOCKETS>,
    udp: Vec<UdpSlot, MAX_UDP_SOCKETS>,
    listeners: Vec<ListenSlot, MAX_LISTENERS>,
    local_host: Option<Ipv4Addr>,
    next_ephemeral: u16,
}

fn smol_instant(t: Instant) -> SmolInstant {
    SmolInstant::from_micros(i64::try_from(time::micros(t)).unwrap_or(i64::MAX))
}

fn core_instant(t: SmolInstant) -> Instant {
    time::at_micros(u64::try_from(t.total_micros()).unwrap_or(0))
}

fn is_synchronised(state: tcp::State) -> bool {
    !matches!(
        state,
        tcp::State::Closed | tcp::State::Listen | tcp::State::SynSent | tcp::State::SynReceived
    )
}

/// Puts a socket that is not (or no longer) synchronised back to CLOSED
/// without a packet: smoltcp's `close`/`abort` keep the remote endpoint and
/// answer it with RST on the next poll; `listen` clears everything, and a
/// socket closed from LISTEN has nothing to say.
fn forget(socket: &mut tcp::Socket<'_>) {
    if socket.state() == tcp::State::SynSent {
        socket.close();
    }
    if !socket.is_open() || socket.state() == tcp::State::Listen {
        let _ = socket.listen(FORGET_PORT);
        socket.close();
    }
}

impl<'a, D: Device, P: Platform> SmolNet<'a, D, P> {
    /// Takes over `iface` on `device` and the TCP and UDP sockets in
    /// `sockets` (the first [`MAX_TCP_SOCKETS`] and [`MAX_UDP_SOCKETS`]; any
    /// other socket kind, e.g. a DHCP client, is left to the caller through
    /// [`SmolNet::sockets_mut`]). The pool sockets must be closed.
    pub fn new(iface: Interface, device: D, sockets: SocketSet<'a>, platform: P) -> Self {
        let mut tcp = Vec::new();
        let mut udp = Vec::new();
        for (handle, socket) in sockets.iter() {
            match socket {
                Socket::Tcp(_) => {
                    let _ = tcp.push(TcpSlot {
                        handle,
                        generation: 0,
                        usage: TcpUse::Free,
                        port: 0,
                        closed_at: time::at_micros(0),
                        fin_pending: false,
                    });
                }
                Socket::Udp(_) => {
                    let _ = udp.push(UdpSlot {
                        handle,
                        generation: 0,
                        port: None,
                    });
                }
                #[allow(unreachable_patterns)]
                _ => {}
            }
        }
        SmolNet {
            iface,
            device,
            sockets,
            platform,
            tcp,
            udp,
            listeners: Vec::new(),
            local_host: None,
            next_ephemeral: *EPHEMERAL.start(),
        }
    }

    /// Where `tcp_connect_local` connects: the host of the tunnel's local
    /// service on the LAN.
    pub fn set_local_host(&mut self, host: Ipv4Addr) {
        self.local_host = Some(host);
    }

    /// Seeds the ephemeral port counter (so a reboot does not reuse the
    /// previous run's ports).
    pub fn seed_ephemeral(&mut self, seed: u32) {
        let span = u32::from(EPHEMERAL.end() - EPHEMERAL.start()) + 1;
        self.next_ephemeral = EPHEMERAL.start() + (seed % span) as u16;
    }

    /// The interface (addresses, routes).
    pub fn iface_mut(&mut self) -> &mut Interface {
        &mut self.iface
    }

    /// The socket set, for sockets outside the pool (DHCP, DNS).
    pub fn sockets_mut(&mut self) -> &mut SocketSet<'a> {
        &mut self.sockets
    }

    /// The device.
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// The platform.
    pub fn platform_mut(&mut self) -> &mut P {
        &mut self.platform
    }

    /// Number of pool sockets not owned by anyone (free or finishing a
    /// close).
    pub fn tcp_sockets_idle(&self) -> usize {
        self.tcp
            .iter()
            .filter(|s| matches!(s.usage, TcpUse::Free | TcpUse::Draining))
            .count()
    }

    /// Sockets closed by their owner that still have bytes or their FIN
    /// unacknowledged (FIN-WAIT-1, CLOSING, LAST-ACK). Keep polling until
    /// this is 0 before dropping the stack, or the peer loses the tail.
    /// (FIN-WAIT-2 and TIME-WAIT do not count: the peer has everything.)
    pub fn tcp_closing(&mut self) -> usize {
        let sockets = &self.sockets;
        self.tcp
            .iter()
            .filter(|s| {
                s.usage == TcpUse::Draining
                    && !matches!(
                        sockets.get::<tcp::Socket>(s.handle).state(),
                        tcp::State::TimeWait | tcp::State::Closed | tcp::State::FinWait2
                    )
            })
            .count()
    }

    /// Whether the peer has acknowledged our FIN on `h` (and so every byte
    /// before it): after `tcp_shutdown_write`, the point where the stream
    /// is delivered and the stack may go. Also true once the connection is
    /// closed (LAST-ACK answered, or a reset, which reads report); false
    /// for an unknown handle.
    pub fn tcp_write_acked(&mut self, h: TcpHandle) -> bool {
        let Some(slot) = self.tcp_slot(h) else {
            return false;
        };
        let handle = slot.handle;
        matches!(
            self.sockets.get::<tcp::Socket>(handle).state(),
            tcp::State::FinWait2 | tcp::State::TimeWait | tcp::State::Closed
        )
    }

    /// Polls the interface once: receives what the device has, sends what
    /// the sockets queued, and returns whether any socket may have changed.
    pub fn poll(&mut self) -> bool {
        let now = self.platform.now();
        let changed = self
            .iface
            .poll(smol_instant(now), &mut self.device, &mut self.sockets)
            == PollResult::SocketStateChanged;
        self.send_fins();
        self.reap(now);
        changed
    }

    /// Sends the FINs held back until their socket's queued bytes were
    /// all acknowledged.
    ///
    /// Why not at once: smoltcp 0.14 stalls a FIN for good when it is the
    /// only thing unacknowledged and three duplicate ACKs arrive (they do
    /// when a retransmission timeout resends data the peer already had:
    /// one challenge ACK each). The fast retransmit then has nothing to
    /// send and leaves the retransmission timer idle, so the FIN is never
    /// sent again; the peer waits in FIN-WAIT-2 for ever. (This was issue
    /// 13's RST: the old 20 s drain timeout then reset the stalled socket,
    /// and the peer read "connection reset" after the last byte.) A FIN
    /// sent after the last byte's ACK has no data behind it to provoke
    /// those ACKs. It costs one round trip per close.
    fn send_fins(&mut self) {
        for slot in self.tcp.iter_mut().filter(|s| s.fin_pending) {
            let socket = self.sockets.get_mut::<tcp::Socket>(slot.handle);
            if !socket.is_open() {
                slot.fin_pending = false;
            } else if socket.send_queue() == 0 {
                socket.close();
                slot.fin_pending = false;
            }
        }
    }

    /// FIN after the queued bytes: at once if nothing is queued, else when
    /// they are acknowledged ([`send_fins`](Self::send_fins)).
    fn fin_after_queue(&mut self, index: usize) {
        let slot = &mut self.tcp[index];
        let socket = self.sockets.get_mut::<tcp::Socket>(slot.handle);
        if socket.send_queue() == 0 {
            socket.close();
        } else {
            slot.fin_pending = true;
        }
    }

    /// When the interface next needs [`poll`](Self::poll) (smoltcp's
    /// timers; `Some(now)` or earlier: at once), for a caller that runs
    /// its own clock instead of [`Wait::wait`].
    pub fn poll_at(&mut self) -> Option<Instant> {
        let now = self.platform.now();
        let stack = self
            .iface
            .poll_at(smol_instant(now), &self.sockets)
            .map(core_instant);
        time::earliest(stack, self.drain_deadline())
    }

    /// The next moment [`reap`](Self::reap) has a limit to apply.
    fn drain_deadline(&self) -> Option<Instant> {
        let sockets = &self.sockets;
        self.tcp
            .iter()
            .filter(|s| s.usage == TcpUse::Draining)
            .filter_map(|s| {
                let limit = match sockets.get::<tcp::Socket>(s.handle).state() {
                    tcp::State::Closed | tcp::State::TimeWait => return None,
                    tcp::State::FinWait2 => FIN_WAIT_LIMIT_S,
                    _ => DRAIN_LIMIT_S,
                };
                Some(time::add_millis(s.closed_at, limit * 1000))
            })
            .min_by_key(|t| time::micros(*t))
    }

    /// Draining sockets whose close has finished go back to the pool; those
    /// past their limits are dropped (see [`DRAIN_LIMIT_S`] and
    /// [`FIN_WAIT_LIMIT_S`]).
    fn reap(&mut self, now: Instant) {
        for slot in self.tcp.iter_mut() {
            if slot.usage != TcpUse::Draining {
                continue;
            }
            let since_s = time::micros_between(slot.closed_at, now) / 1_000_000;
            let socket = self.sockets.get_mut::<tcp::Socket>(slot.handle);
            match socket.state() {
                tcp::State::Closed => {
                    forget(socket);
                    slot.usage = TcpUse::Free;
                }
                // Everything of ours is acknowledged: drop it silently.
                tcp::State::FinWait2 if since_s >= FIN_WAIT_LIMIT_S => {
                    // abort() only marks it (the RST goes at the next
                    // poll); forgetting it at once sends nothing.
                    socket.abort();
                    forget(socket);
                    slot.usage = TcpUse::Free;
                }
                // TIME-WAIT ends by itself (and may be taken over earlier).
                tcp::State::TimeWait => {}
                // Still retransmitting: the peer is gone after this long.
                _ if since_s >= DRAIN_LIMIT_S => socket.abort(),
                _ => {}
            }
        }
    }

    fn take_tcp(&mut self, usage: TcpUse) -> NetResult<u8> {
        let index = match self.tcp.iter().position(|s| s.usage == TcpUse::Free) {
            Some(i) => i,
            None => {
                // A socket in TIME-WAIT only guards against old duplicates,
                // one in FIN-WAIT-2 has delivered everything: reusing them
                // beats refusing a new connection. Failing those, the
                // socket closed longest ago, if that is FIN_WAIT_LIMIT_S
                // or more (a peer that long silent is most likely gone).
                let now = self.platform.now();
                let sockets = &mut self.sockets;
                let done = self.tcp.iter().position(|s| {
                    s.usage == TcpUse::Draining
                        && matches!(
                            sockets.get_mut::<tcp::Socket>(s.handle).state(),
                            tcp::State::TimeWait | tcp::State::Closed | tcp::State::FinWait2
                        )
                });
                let oldest = || {
                    self.tcp
                        .iter()
                        .enumerate()
                        .filter(|(_, s)| {
                            s.usage == TcpUse::Draining
                                && time::micros_between(s.closed_at, now) / 1_000_000
                                    >= FIN_WAIT_LIMIT_S
                        })
                        .min_by_key(|(_, s)| time::micros(s.closed_at))
                        .map(|(i, _)| i)
                };
                done.or_else(oldest).ok_or(NetError::NoBuffers)?
            }
        };
        let slot = &mut self.tcp[index];
        let socket = self.sockets.get_mut::<tcp::Socket>(slot.handle);
        if socket.is_open() && socket.state() != tcp::State::Listen {
            // Taken over while draining: silently (see reap).
            socket.abort();
        }
        forget(socket);
        socket.set_hop_limit(None);
        slot.generation = slot.generation.wrapping_add(1);
        slot.usage = usage;
        slot.port = 0;
        slot.fin_pending = false;
        // The pool holds at most MAX_TCP_SOCKETS (< 256) sockets.
        Ok(index as u8)
    }

    fn tcp_slot(&mut self, h: TcpHandle) -> Option<&mut TcpSlot> {
        self.tcp
            .get_mut(usize::from(h.index))
            .filter(|s| s.generation == h.generation && matches!(s.usage, TcpUse::Stream { .. }))
    }

    fn tcp_handle_of(&self, index: u8) -> TcpHandle {
        TcpHandle {
            index,
            generation: self.tcp[usize::from(index)].generation,
        }
    }

    fn ephemeral_port(&mut self) -> u16 {
        let p = self.next_ephemeral;
        self.next_ephemeral = if p >= *EPHEMERAL.end() {
            *EPHEMERAL.start()
        } else {
            p + 1
        };
        p
    }

    fn udp_slot(&mut self, h: UdpHandle) -> Option<&mut UdpSlot> {
        self.udp
            .get_mut(usize::from(h.index))
            .filter(|s| s.generation == h.generation && s.port.is_some())
    }

    /// Puts a pool socket into LISTEN for listener `li`, if one is free.
    fn relisten(&mut self, li: usize) {
        let port = self.listeners[li].port;
        let Ok(index) = self.take_tcp(TcpUse::Listening(li as u8)) else {
            return;
        };
        let handle = self.tcp[usize::from(index)].handle;
        if self
            .sockets
            .get_mut::<tcp::Socket>(handle)
            .listen(port)
            .is_ok()
        {
            self.listeners[li].socket = Some(index);
        } else {
            self.tcp[usize::from(index)].usage = TcpUse::Free;
        }
    }
}

impl<D: Device, P: Platform> Udp for SmolNet<'_, D, P> {
    type UdpSocket = UdpHandle;

    fn udp_bind(&mut self, port: u16) -> NetResult<UdpHandle> {
        if port != 0 && self.udp.iter().any(|s| s.port == Some(port)) {
            return Err(NetError::AddrInUse);
        }
        let port = if port == 0 {
            loop {
                let p = self.ephemeral_port();
                if !self.udp.iter().any(|s| s.port == Some(p)) {
                    break p;
                }
            }
        } else {
            port
        };
        let index = self
            .udp
            .iter()
            .position(|s| s.port.is_none())
            .ok_or(NetError::NoBuffers)?;
        let slot = &mut self.udp[index];
        let socket = self.sockets.get_mut::<udp::Socket>(slot.handle);
        socket.close();
        socket.set_hop_limit(None);
        socket.bind(port).map_err(|_| NetError::AddrInUse)?;
        slot.port = Some(port);
        slot.generation = slot.generation.wrapping_add(1);
        Ok(UdpHandle {
            index: index as u8,
            generation: slot.generation,
        })
    }

    fn udp_send_to(&mut self, h: UdpHandle, datagram: &[u8], to: SocketAddrV4) -> NetResult<()> {
        let handle = self.udp_slot(h).ok_or(NetError::Closed)?.handle;
        let socket = self.sockets.get_mut::<udp::Socket>(handle);
        if datagram.len() > socket.payload_send_capacity() {
            return Err(NetError::TooLong);
        }
        let endpoint = IpEndpoint::new(IpAddress::Ipv4(*to.ip()), to.port());
        socket.send_slice(datagram, endpoint).map_err(|e| match e {
            udp::SendError::BufferFull => NetError::WouldBlock,
            udp::SendError::Unaddressable => NetError::Unreachable,
        })
    }

    fn udp_recv_from(&mut self, h: UdpHandle, buf: &mut [u8]) -> NetResult<(usize, SocketAddrV4)> {
        let handle = self.udp_slot(h).ok_or(NetError::Closed)?.handle;
        let socket = self.sockets.get_mut::<udp::Socket>(handle);
        loop {
            match socket.recv_slice(buf) {
                Ok((n, meta)) => match meta.endpoint.addr {
                    IpAddress::Ipv4(ip) => {
                        return Ok((n, SocketAddrV4::new(ip, meta.endpoint.port)));
                    }
                    #[allow(unreachable_patterns)]
                    _ => continue,
                },
                Err(udp::RecvError::Exhausted) => return Err(NetError::WouldBlock),
                // recv_slice has dequeued the datagram: dropped, not cut.
                Err(udp::RecvError::Truncated) => return Err(NetError::TooLong),
            }
        }
    }

    fn udp_set_ttl(&mut self, h: UdpHandle, ttl: u8) -> NetResult<()> {
        let handle = self.udp_slot(h).ok_or(NetError::Closed)?.handle;
        self.sockets
            .get_mut::<udp::Socket>(handle)
            .set_hop_limit((ttl > 0).then_some(ttl));
        Ok(())
    }

    fn udp_close(&mut self, h: UdpHandle) {
        if let Some(slot) = self.udp_slot(h) {
            slot.port = None;
            let handle = slot.handle;
            self.sockets.get_mut::<udp::Socket>(handle).close();
        }
    }
}

impl<D: Device, P: Platform> Tcp for SmolNet<'_, D, P> {
    type TcpSocket = TcpHandle;
    type Listener = Listener;

    fn tcp_bind_reuse(&mut self, port: u16) -> NetResult<TcpHandle> {
        // smoltcp binds the local port at connect; sockets sharing a port
        // are told apart by their remote endpoint, as with SO_REUSEPORT.
        let index = self.take_tcp(TcpUse::Stream {
            connecting: false,
            connected: false,
        })?;
        self.tcp[usize::from(index)].port = port;
        Ok(self.tcp_handle_of(index))
    }

    fn tcp_connect(&mut self, h: TcpHandle, peer: SocketAddrV4) -> NetResult<()> {
        let port = self.tcp_slot(h).ok_or(NetError::Closed)?.port;
        let port = if port == 0 {
            self.ephemeral_port()
        } else {
            port
        };
        self.tcp_connect_from(h, peer, port)
    }

    fn tcp_status(&mut self, h: TcpHandle) -> ConnectStatus {
        let Some(slot) = self.tcp_slot(h) else {
            return ConnectStatus::Failed(NetError::Closed);
        };
        let handle = slot.handle;
        let TcpUse::Stream {
            connecting,
            connected,
        } = slot.usage
        else {
            return ConnectStatus::Failed(NetError::Closed);
        };
        let state = self.sockets.get_mut::<tcp::Socket>(handle).state();
        let status = match state {
            tcp::State::SynSent => ConnectStatus::Pending,
            tcp::State::SynReceived => ConnectStatus::Handshaking,
            tcp::State::Closed | tcp::State::Listen if connected => ConnectStatus::Connected,
            tcp::State::Closed | tcp::State::Listen if connecting => {
                ConnectStatus::Failed(NetError::Refused)
            }
            tcp::State::Closed | tcp::State::Listen => ConnectStatus::Failed(NetError::Closed),
            _ => ConnectStatus::Connected,
        };
        if is_synchronised(state)
            && let Some(slot) = self.tcp_slot(h)
        {
            slot.usage = TcpUse::Stream {
                connecting,
                connected: true,
            };
        }
        status
    }

    fn tcp_set_ttl(&mut self, h: TcpHandle, ttl: u8) -> NetResult<()> {
        let handle = self.tcp_slot(h).ok_or(NetError::Closed)?.handle;
        self.sockets
            .get_mut::<tcp::Socket>(handle)
            .set_hop_limit((ttl > 0).then_some(ttl));
        Ok(())
    }

    fn tcp_read(&mut self, h: TcpHandle, buf: &mut [u8]) -> NetResult<usize> {
        let slot = self.tcp_slot(h).ok_or(NetError::Closed)?;
        let (handle, usage) = (slot.handle, slot.usage);
        let socket = self.sockets.get_mut::<tcp::Socket>(handle);
        let state = socket.state();
        match socket.recv_slice(buf) {
            Ok(0) if !buf.is_empty() => Err(NetError::WouldBlock),
            Ok(n) => Ok(n),
            Err(tcp::RecvError::Finished) => Ok(0),
            Err(tcp::RecvError::InvalidState) => Err(stream_error(state, usage)),
        }
    }

    fn tcp_write(&mut self, h: TcpHandle, buf: &[u8]) -> NetResult<usize> {
        let slot = self.tcp_slot(h).ok_or(NetError::Closed)?;
        if slot.fin_pending {
            return Err(NetError::Closed);
        }
        let (handle, usage) = (slot.handle, slot.usage);
        let socket = self.sockets.get_mut::<tcp::Socket>(handle);
        let state = socket.state();
        match socket.send_slice(buf) {
            Ok(0) if !buf.is_empty() => Err(NetError::WouldBlock),
            Ok(n) => Ok(n),
            Err(tcp::SendError::InvalidState) => Err(stream_error(state, usage)),
        }
    }

    fn tcp_shutdown_write(&mut self, h: TcpHandle) -> NetResult<()> {
        let handle = self.tcp_slot(h).ok_or(NetError::Closed)?.handle;
        let socket = self.sockets.get_mut::<tcp::Socket>(handle);
        match socket.state() {
            tcp::State::SynSent | tcp::State::Closed | tcp::State::Listen => Err(NetError::Closed),
            _ => {
                self.fin_after_queue(usize::from(h.index));
                Ok(())
            }
        }
    }

    fn tcp_close(&mut self, h: TcpHandle) {
        let Some(slot) = self.tcp_slot(h) else {
            return;
        };
        let handle = slot.handle;
        if self.sockets.get_mut::<tcp::Socket>(handle).state() == tcp::State::SynSent {
            // A SYN queued by a connect moments ago (the prime) goes out
            // now; a socket that had its answer in the meantime is then
            // closed like any open one.
            self.poll();
        }
        let index = usize::from(h.index);
        let socket = self.sockets.get_mut::<tcp::Socket>(handle);
        match socket.state() {
            tcp::State::SynSent
            | tcp::State::Closed
            | tcp::State::Listen
            | tcp::State::TimeWait => {
                forget(socket);
                self.tcp[index].usage = TcpUse::Free;
            }
            _ => {
                if !self.tcp[index].fin_pending {
                    self.fin_after_queue(index);
                }
                // A peer that never answers our FIN (gone, or its RST
                // dropped on the way) would hold the socket forever while
                // smoltcp retransmits: `reap` ends it (DRAIN_LIMIT_S,
                // FIN_WAIT_LIMIT_S).
                let now = self.platform.now();
                self.tcp[index].closed_at = now;
                self.tcp[index].usage = TcpUse::Draining;
            }
        }
    }

    fn tcp_listen(&mut self, port: u16) -> NetResult<Listener> {
        if port == 0 {
            return Err(NetError::Other(0));
        }
        if self.listeners.iter().any(|l| l.active && l.port == port) {
            return Err(NetError::AddrInUse);
        }
        let li = match self.listeners.iter().position(|l| !l.active) {
            Some(i) => i,
            None => {
                self.listeners
                    .push(ListenSlot {
                        port,
                        generation: 0,
                        active: false,
                        socket: None,
                    })
                    .map_err(|_| NetError::NoBuffers)?;
                self.listeners.len() - 1
            }
        };
        let l = &mut self.listeners[li];
        l.port = port;
        l.active = true;
        l.socket = None;
        l.generation = l.generation.wrapping_add(1);
        let generation = l.generation;
        self.relisten(li);
        if self.listeners[li].socket.is_none() {
            self.listeners[li].active = false;
            return Err(NetError::NoBuffers);
        }
        Ok(Listener {
            index: li as u8,
            generation,
        })
    }

    fn tcp_accept(&mut self, l: Listener) -> NetResult<TcpHandle> {
        let li = usize::from(l.index);
        match self.listeners.get(li) {
            Some(slot) if slot.active && slot.generation == l.generation => {}
            _ => return Err(NetError::Closed),
        }
        let Some(index) = self.listeners[li].socket else {
            self.relisten(li);
            return Err(NetError::WouldBlock);
        };
        let handle = self.tcp[usize::from(index)].handle;
        let state = self.sockets.get_mut::<tcp::Socket>(handle).state();
        match state {
            tcp::State::Listen | tcp::State::SynReceived => Err(NetError::WouldBlock),
            tcp::State::Closed => {
                // The handshake was reset: listen again on the same socket.
                let port = self.listeners[li].port;
                let socket = self.sockets.get_mut::<tcp::Socket>(handle);
                forget(socket);
                if socket.listen(port).is_err() {
                    self.tcp[usize::from(index)].usage = TcpUse::Free;
                    self.listeners[li].socket = None;
                }
                Err(NetError::WouldBlock)
            }
            _ => {
                self.tcp[usize::from(index)].usage = TcpUse::Stream {
                    connecting: false,
                    connected: true,
                };
                self.listeners[li].socket = None;
                self.relisten(li);
                Ok(self.tcp_handle_of(index))
            }
        }
    }

    fn tcp_unlisten(&mut self, l: Listener) {
        let li = usize::from(l.index);
        let Some(slot) = self.listeners.get_mut(li) else {
            return;
        };
        if !slot.active || slot.generation != l.generation {
            return;
        }
        slot.active = false;
        if let Some(index) = slot.socket.take() {
            let tslot = &mut self.tcp[usize::from(index)];
            let socket = self.sockets.get_mut::<tcp::Socket>(tslot.handle);
            if socket.state() == tcp::State::Listen {
                forget(socket);
                tslot.usage = TcpUse::Free;
            } else {
                socket.close();
                tslot.closed_at = self.platform.now();
                tslot.usage = TcpUse::Draining;
            }
        }
    }

    fn tcp_connect_local(&mut self, port: u16) -> NetResult<TcpHandle> {
        let host = self.local_host.ok_or(NetError::Unreachable)?;
        let h = self.tcp_bind_reuse(0)?;
        let local_port = self.ephemeral_port();
        match self.tcp_connect_from(h, SocketAddrV4::new(host, port), local_port) {
            Ok(()) => Ok(h),
            Err(e) => {
                self.tcp_close(h);
                Err(e)
            }
        }
    }
}

impl<D: Device, P: Platform> SmolNet<'_, D, P> {
    fn tcp_connect_from(
        &mut self,
        h: TcpHandle,
        peer: SocketAddrV4,
        local_port: u16,
    ) -> NetResult<()> {
        let slot = self.tcp_slot(h).ok_or(NetError::Closed)?;
        let handle = slot.handle;
        slot.usage = TcpUse::Stream {
            connecting: true,
            connected: false,
        };
        let socket = self.sockets.get_mut::<tcp::Socket>(handle);
        if socket.is_open() {
            // Only a failed (closed) socket may be connected again.
            return Err(NetError::Other(0));
        }
        forget(socket);
        let remote = IpEndpoint::new(IpAddress::Ipv4(*peer.ip()), peer.port());
        socket
            .connect(self.iface.context(), remote, local_port)
            .map_err(|e| match e {
                tcp::ConnectError::Unaddressable => NetError::Unreachable,
                tcp::ConnectError::InvalidState => NetError::Other(0),
            })
    }
}

/// What a failed read or write on a stream means.
fn stream_error(state: tcp::State, usage: TcpUse) -> NetError {
    match (state, usage) {
        (tcp::State::SynSent | tcp::State::SynReceived, _) => NetError::WouldBlock,
        (
            tcp::State::Closed,
            TcpUse::Stream {
                connected: true, ..
            },
        ) => NetError::Reset,
        _ => NetError::Closed,
    }
}

impl<D: Device, P: Platform> Wait for SmolNet<'_, D, P> {
    fn now(&mut self) -> Instant {
        self.platform.now()
    }

    fn wait(&mut self, deadline: Option<Instant>) -> NetResult<Instant> {
        loop {
            let now = self.platform.now();
            if self.poll() {
                return Ok(now);
            }
            if deadline.is_some_and(|d| time::micros(d) <= time::micros(now)) {
                return Ok(now);
            }
            let stack = self
                .iface
                .poll_at(smol_instant(now), &self.sockets)
                .map(core_instant);
            let stack = time::earliest(stack, self.drain_deadline());
            let mut until = time::earliest(deadline, stack);
            if let Some(t) = until
                && time::micros(t) <= time::micros(now)
            {
                // smoltcp wants to send now but could not (a full device
                // queue): give the device a moment instead of spinning.
                until = Some(time::add_millis(now, 1));
            }
            self.platform.idle(until);
        }
    }
}
