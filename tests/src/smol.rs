//! Host harness for the smoltcp backend (`punchwire-esp`): a std platform,
//! socket sets on the heap, an in-memory IP hub joining any number of
//! smoltcp interfaces, and small TCP helpers written against the core's
//! traits (so they run on every backend).
//!
//! Two hubs:
//! * [`Sim`] (deterministic, preferred): a virtual clock, one thread. Each
//!   node is a [`SimNet`] plus an [`App`] that is stepped with `now` and
//!   says when it next needs a step; [`run_sim`] polls every stack, steps
//!   every app and jumps the clock to the earliest deadline, `poll_at` or
//!   packet arrival. Seeded faults, so the same seeds give the same
//!   packets ([`Sim::digest`]). A driver that blocks cannot run here
//!   (`Wait::wait` panics on a [`SimPlatform`]): port it to a `poll` first,
//!   as `PunchDriver` and `Splice` are.
//! * [`Hub`] (wall clock, threads): one thread per node, real sleeps; for
//!   drivers that still block (`tunnel::run`).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::rc::Rc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant as StdInstant};

use punchwire_core::net::{ConnectStatus, NetError, Tcp, Wait};
use punchwire_core::time::{self, Instant};
use punchwire_esp::{Platform, SmolNet};
use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, FaultInjector, Medium};
use smoltcp::socket::{tcp, udp};
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};

/// Socket counts and buffer sizes of one node.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    /// TCP sockets in the pool.
    pub tcp: usize,
    /// Receive and send buffer of each TCP socket.
    pub tcp_buf: usize,
    /// UDP sockets in the pool.
    pub udp: usize,
    /// Payload bytes of each UDP socket's receive and send buffer.
    pub udp_buf: usize,
}

impl Sizes {
    /// Enough for a punch over two candidate buckets and a tunnel.
    pub const GATEWAY: Sizes = Sizes {
        tcp: 40,
        tcp_buf: 8192,
        udp: 2,
        udp_buf: 16 * 1024,
    };
    /// A LAN host running one TCP connection.
    pub const APP: Sizes = Sizes {
        tcp: 4,
        tcp_buf: 16 * 1024,
        udp: 0,
        udp_buf: 0,
    };
}

/// A socket set on the heap with the given pool.
pub fn socket_set(sizes: Sizes) -> SocketSet<'static> {
    let mut set = SocketSet::new(Vec::new());
    for _ in 0..sizes.tcp {
        set.add(tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; sizes.tcp_buf]),
            tcp::SocketBuffer::new(vec![0; sizes.tcp_buf]),
        ));
    }
    for _ in 0..sizes.udp {
        let buffer =
            || udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 64], vec![0; sizes.udp_buf]);
        set.add(udp::Socket::new(buffer(), buffer()));
    }
    set
}

/// Monotonic µs since `origin`, on the core's base.
pub fn since(origin: StdInstant) -> Instant {
    time::at_micros(u64::try_from(origin.elapsed().as_micros()).unwrap_or(u64::MAX))
}

fn std_deadline(origin: StdInstant, t: Instant) -> StdInstant {
    origin + Duration::from_micros(time::micros(t))
}

struct Queued {
    due: StdInstant,
    packet: Vec<u8>,
}

/// Which queue of a node a packet lands in: `Wan` for packets between two
/// nodes marked WAN (the gateways), `Lan` for everything else. A gateway's
/// device can then apply faults to its WAN traffic only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Plane {
    /// Gateway to gateway.
    Wan,
    /// Anything else.
    Lan,
}

struct HubState {
    queues: HashMap<(Ipv4Addr, Plane), VecDeque<Queued>>,
    wan: Vec<Ipv4Addr>,
    delivered: u64,
    unroutable: u64,
}

/// An IP "switch" in memory: a packet sent by any port is delivered, after
/// a fixed one-way delay, to the port owning its destination address.
pub struct Hub {
    state: Mutex<HubState>,
    arrived: Condvar,
    delay: Duration,
    origin: StdInstant,
}

impl Hub {
    /// A hub delaying every packet by `one_way`.
    pub fn new(one_way: Duration) -> Arc<Hub> {
        Arc::new(Hub {
            state: Mutex::new(HubState {
                queues: HashMap::new(),
                wan: Vec::new(),
                delivered: 0,
                unroutable: 0,
            }),
            arrived: Condvar::new(),
            delay: one_way,
            origin: StdInstant::now(),
        })
    }

    /// Registers `addr` and returns its two ports (one per plane) and its
    /// platform. `wan`: traffic between this node and other WAN nodes
    /// arrives on the WAN port.
    pub fn attach(self: &Arc<Self>, addr: Ipv4Addr, wan: bool) -> (HubPort, HubPort, HubPlatform) {
        let mut s = self.state.lock().unwrap();
        s.queues.insert((addr, Plane::Wan), VecDeque::new());
        s.queues.insert((addr, Plane::Lan), VecDeque::new());
        if wan {
            s.wan.push(addr);
        }
        drop(s);
        let port = |plane| HubPort {
            hub: self.clone(),
            addr,
            plane,
        };
        (
            port(Plane::Wan),
            port(Plane::Lan),
            HubPlatform {
                hub: self.clone(),
                addr,
            },
        )
    }

    /// Packets delivered and packets to unknown addresses so far.
    pub fn counters(&self) -> (u64, u64) {
        let s = self.state.lock().unwrap();
        (s.delivered, s.unroutable)
    }

    fn send(&self, packet: Vec<u8>) {
        let mut s = self.state.lock().unwrap();
        if packet.len() < 20 || packet[0] >> 4 != 4 {
            s.unroutable += 1;
            return;
        }
        let src = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
        let dst = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
        let plane = if s.wan.contains(&src) && s.wan.contains(&dst) {
            Plane::Wan
        } else {
            Plane::Lan
        };
        let due = StdInstant::now() + self.delay;
        match s.queues.get_mut(&(dst, plane)) {
            Some(q) => {
                q.push_back(Queued { due, packet });
                s.delivered += 1;
                self.arrived.notify_all();
            }
            None => s.unroutable += 1,
        }
    }

    fn take(&self, addr: Ipv4Addr, plane: Plane) -> Option<Vec<u8>> {
        let mut s = self.state.lock().unwrap();
        let q = s.queues.get_mut(&(addr, plane))?;
        if q.front().is_some_and(|p| p.due <= StdInstant::now()) {
            q.pop_front().map(|p| p.packet)
        } else {
            None
        }
    }
}

/// One plane of a node's hub attachment: a smoltcp device (IP medium)
/// that receives that plane's packets and sends anything.
pub struct HubPort {
    hub: Arc<Hub>,
    addr: Ipv4Addr,
    plane: Plane,
}

/// A received packet.
pub struct HubRx(Vec<u8>);

/// Permission to send one packet.
pub struct HubTx<'a>(&'a Hub);

impl phy::RxToken for HubRx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for HubTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut packet = vec![0; len];
        let r = f(&mut packet);
        self.0.send(packet);
        r
    }
}

impl Device for HubPort {
    type RxToken<'a> = HubRx;
    type TxToken<'a> = HubTx<'a>;

    fn receive(
        &mut self,
        _now: smoltcp::time::Instant,
    ) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let packet = self.hub.take(self.addr, self.plane)?;
        Some((HubRx(packet), HubTx(&self.hub)))
    }

    fn transmit(&mut self, _now: smoltcp::time::Instant) -> Option<Self::TxToken<'_>> {
        Some(HubTx(&self.hub))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = 1500;
        caps
    }
}

/// The clock (the hub's origin, shared by all nodes) and an idle that
/// wakes when a packet for this port is due.
pub struct HubPlatform {
    hub: Arc<Hub>,
    addr: Ipv4Addr,
}

impl Platform for HubPlatform {
    fn now(&mut self) -> Instant {
        since(self.hub.origin)
    }

    fn idle(&mut self, until: Option<Instant>) {
        let until = until.map(|t| std_deadline(self.hub.origin, t));
        let mut s = self.hub.state.lock().unwrap();
        loop {
            let now = StdInstant::now();
            let head = [Plane::Wan, Plane::Lan]
                .iter()
                .filter_map(|&p| {
                    s.queues
                        .get(&(self.addr, p))
                        .and_then(|q| q.front().map(|p| p.due))
                })
                .min();
            if head.is_some_and(|due| due <= now) || until.is_some_and(|u| u <= now) {
                return;
            }
            let wake = match (head, until) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => a.or(b).unwrap_or(now + Duration::from_secs(1)),
            };
            s = self.hub.arrived.wait_timeout(s, wake - now).unwrap().0;
        }
    }
}

/// A node's device: WAN packets pass smoltcp's fault injector on their way
/// in, LAN packets do not (a gateway's LAN is clean; its WAN is not).
pub struct NodeDevice {
    wan: FaultInjector<HubPort>,
    lan: HubPort,
}

/// A received packet from either plane.
pub enum NodeRx<'a> {
    /// Through the fault injector.
    Wan(<FaultInjector<HubPort> as Device>::RxToken<'a>),
    /// Straight from the hub.
    Lan(HubRx),
}

impl phy::RxToken for NodeRx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        match self {
            NodeRx::Wan(t) => t.consume(f),
            NodeRx::Lan(t) => t.consume(f),
        }
    }
}

impl Device for NodeDevice {
    type RxToken<'a> = NodeRx<'a>;
    type TxToken<'a> = HubTx<'a>;

    fn receive(
        &mut self,
        now: smoltcp::time::Instant,
    ) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        // The injector's own tx token is not used: faults apply on receipt
        // only, once per WAN packet.
        if let Some((rx, _)) = self.wan.receive(now) {
            return Some((NodeRx::Wan(rx), HubTx(&self.lan.hub)));
        }
        let (rx, tx) = self.lan.receive(now)?;
        Some((NodeRx::Lan(rx), tx))
    }

    fn transmit(&mut self, now: smoltcp::time::Instant) -> Option<Self::TxToken<'_>> {
        self.lan.transmit(now)
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.lan.capabilities()
    }
}

/// A node on the hub.
pub type HubNet = SmolNet<'static, NodeDevice, HubPlatform>;

/// Loss and corruption applied to the WAN packets a node receives.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    /// Percent of packets dropped.
    pub drop_pct: u8,
    /// Percent of packets with a flipped byte.
    pub corrupt_pct: u8,
}

/// A smoltcp node at `addr`/24 on `hub`; `faults`: a WAN node (a gateway)
/// whose traffic with other WAN nodes suffers these faults; `None`: a LAN
/// host.
pub fn hub_node(
    hub: &Arc<Hub>,
    addr: Ipv4Addr,
    sizes: Sizes,
    faults: Option<Faults>,
    seed: u32,
) -> HubNet {
    let (wan, lan, platform) = hub.attach(addr, faults.is_some());
    let faults = faults.unwrap_or_default();
    let mut wan = FaultInjector::new(wan, seed);
    wan.set_drop_chance(faults.drop_pct);
    wan.set_corrupt_chance(faults.corrupt_pct);
    let mut device = NodeDevice { wan, lan };
    let mut config = Config::new(HardwareAddress::Ip);
    config.random_seed = u64::from(seed) << 32 | u64::from(seed ^ 0x5eed);
    let now = smoltcp::time::Instant::from_micros(
        since(hub.origin).duration_since_epoch().integer() as i64,
    );
    let mut iface = Interface::new(config, &mut device, now);
    iface.update_ip_addrs(|a| {
        a.push(IpCidr::new(IpAddress::Ipv4(addr), 24)).unwrap();
    });
    let mut net = SmolNet::new(iface, device, socket_set(sizes), platform);
    net.seed_ephemeral(seed);
    net
}

/// Waits for a local client on listener `l`.
pub fn accept_wait<N: Tcp + Wait>(net: &mut N, l: N::Listener) -> N::TcpSocket {
    loop {
        match net.tcp_accept(l) {
            Ok(s) => return s,
            Err(NetError::WouldBlock) => {
                net.wait(None).unwrap();
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

/// A LAN service for one client: listens on `port`, swaps bytes with the
/// first client (`reply` out, everything in), closes and lets the close
/// finish. Returns what the client sent.
pub fn serve_once(net: &mut HubNet, port: u16, reply: &[u8]) -> Vec<u8> {
    let l = net.tcp_listen(port).unwrap();
    let s = accept_wait(net, l);
    let got = exchange(net, s, reply, Duration::from_secs(90)).unwrap();
    net.tcp_close(s);
    settle(net, Duration::from_secs(10));
    got
}

/// Waits for a connect to finish, up to `limit`.
pub fn connect_wait<N: Tcp + Wait>(
    net: &mut N,
    s: N::TcpSocket,
    limit: Duration,
) -> Result<(), String> {
    let end = time::add_micros(net.now(), limit.as_micros() as u64);
    loop {
        match net.tcp_status(s) {
            ConnectStatus::Connected => return Ok(()),
            ConnectStatus::Failed(e) => return Err(format!("connect failed: {e}")),
            ConnectStatus::Pending | ConnectStatus::Handshaking => {}
        }
        let now = net.wait(Some(end)).map_err(|e| e.to_string())?;
        if time::micros(now) >= time::micros(end) {
            return Err("connect timed out".into());
        }
    }
}

/// Sends `out` (then FIN) while receiving until the peer's FIN; returns what
/// was received. Fails after `limit`.
pub fn exchange<N: Tcp + Wait>(
    net: &mut N,
    s: N::TcpSocket,
    out: &[u8],
    limit: Duration,
) -> Result<Vec<u8>, String> {
    let end = time::add_micros(net.now(), limit.as_micros() as u64);
    let (mut sent, mut shut, mut eof) = (0, false, false);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        while sent < out.len() {
            match net.tcp_write(s, &out[sent..out.len().min(sent + 4096)]) {
                Ok(n) => sent += n,
                Err(NetError::WouldBlock) => break,
                Err(e) => return Err(format!("write after {sent} bytes: {e}")),
            }
        }
        if sent == out.len() && !shut {
            net.tcp_shutdown_write(s)
                .map_err(|e| format!("shutdown: {e}"))?;
            shut = true;
        }
        while !eof {
            match net.tcp_read(s, &mut buf) {
                Ok(0) => eof = true,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(NetError::WouldBlock) => break,
                Err(e) => return Err(format!("read after {} bytes: {e}", got.len())),
            }
        }
        if eof && shut {
            return Ok(got);
        }
        let tick = time::add_millis(net.now(), 100);
        let now = net.wait(Some(tick)).map_err(|e| e.to_string())?;
        if time::micros(now) >= time::micros(end) {
            return Err(format!(
                "timed out: sent {sent}/{} bytes, received {} bytes, eof {eof}",
                out.len(),
                got.len()
            ));
        }
    }
}

/// Keeps the stack running until `done()` or for at most `d`.
pub fn run_until<N: Wait>(net: &mut N, d: Duration, done: impl Fn() -> bool) {
    let end = time::add_micros(net.now(), d.as_micros() as u64);
    while !done() {
        let tick = time::earliest(Some(end), Some(time::add_millis(net.now(), 50)));
        match net.wait(tick) {
            Ok(now) if time::micros(now) < time::micros(end) => {}
            _ => break,
        }
    }
}

/// Keeps a node's stack running until every closed socket has finished
/// its FIN exchange (at most `d`): dropping a smoltcp stack right after a
/// close loses whatever it had not delivered yet.
pub fn settle(net: &mut HubNet, d: Duration) {
    let end = StdInstant::now() + d;
    while net.tcp_closing() > 0 && StdInstant::now() < end {
        let tick = time::add_millis(net.now(), 50);
        if net.wait(Some(tick)).is_err() {
            break;
        }
    }
}

/// Keeps the stack running for `d` (FINs and acks go out).
pub fn run_for<N: Wait>(net: &mut N, d: Duration) {
    let end = time::add_micros(net.now(), d.as_micros() as u64);
    while let Ok(now) = net.wait(Some(end)) {
        if time::micros(now) >= time::micros(end) {
            break;
        }
    }
}

/// Deterministic test bytes: half pseudo-random, half text, so a tunnel
/// carries both plain and compressed frames.
pub fn test_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        if (out.len() / 8192) % 2 == 0 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend_from_slice(&x.to_le_bytes());
        } else {
            out.extend_from_slice(b"punchwire tunnels text too; ");
        }
    }
    out.truncate(len);
    out
}

// ---- deterministic harness ---------------------------------------------
//
// The same nodes on a virtual clock: one thread, no sleeps, no wall clock.
// The harness owns the clock; a node's stack is polled with
// `SmolNet::poll` at the harness's `now`, and the clock jumps to the
// earliest of every node's deadline, every stack's `poll_at` and the next
// packet's arrival. smoltcp's fault injector and the interfaces are seeded,
// so the same seeds give the same packets (`Sim::digest`).

/// The virtual clock, shared by the hub and every node (µs).
#[derive(Clone, Default)]
pub struct SimClock(Rc<Cell<u64>>);

impl SimClock {
    /// Now.
    pub fn now(&self) -> Instant {
        time::at_micros(self.0.get())
    }

    fn set(&self, us: u64) {
        self.0.set(self.0.get().max(us));
    }
}

struct SimQueued {
    due: u64,
    packet: Vec<u8>,
}

struct SimHubState {
    queues: HashMap<(Ipv4Addr, Plane), VecDeque<SimQueued>>,
    wan: Vec<Ipv4Addr>,
    delay_us: u64,
    delivered: u64,
    unroutable: u64,
    /// FNV-1a over every packet sent, with its time.
    digest: u64,
}

/// The in-memory IP hub of [`Hub`] on the virtual clock.
#[derive(Clone)]
pub struct Sim {
    state: Rc<RefCell<SimHubState>>,
    clock: SimClock,
}

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl Sim {
    /// A hub delaying every packet by `one_way`, at virtual time 0.
    pub fn new(one_way: Duration) -> Sim {
        Sim {
            state: Rc::new(RefCell::new(SimHubState {
                queues: HashMap::new(),
                wan: Vec::new(),
                delay_us: one_way.as_micros() as u64,
                delivered: 0,
                unroutable: 0,
                digest: 0xcbf2_9ce4_8422_2325,
            })),
            clock: SimClock::default(),
        }
    }

    /// The clock.
    pub fn clock(&self) -> &SimClock {
        &self.clock
    }

    /// Virtual now.
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// Moves the clock to `t` (never back).
    pub fn advance_to(&self, t: Instant) {
        self.clock.set(time::micros(t));
    }

    /// When the next packet arrives anywhere.
    pub fn next_arrival(&self) -> Option<Instant> {
        let s = self.state.borrow();
        s.queues
            .values()
            .filter_map(|q| q.front().map(|p| p.due))
            .min()
            .map(time::at_micros)
    }

    /// Packets delivered and packets to unknown addresses so far.
    pub fn counters(&self) -> (u64, u64) {
        let s = self.state.borrow();
        (s.delivered, s.unroutable)
    }

    /// A digest of every packet sent so far and when: equal digests, equal
    /// runs.
    pub fn digest(&self) -> u64 {
        self.state.borrow().digest
    }

    fn send(&self, packet: Vec<u8>) {
        let now = self.clock.0.get();
        let mut s = self.state.borrow_mut();
        s.digest = fnv(fnv(s.digest, &now.to_le_bytes()), &packet);
        if packet.len() < 20 || packet[0] >> 4 != 4 {
            s.unroutable += 1;
            return;
        }
        let src = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
        let dst = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
        let plane = if s.wan.contains(&src) && s.wan.contains(&dst) {
            Plane::Wan
        } else {
            Plane::Lan
        };
        let due = now + s.delay_us;
        match s.queues.get_mut(&(dst, plane)) {
            Some(q) => {
                q.push_back(SimQueued { due, packet });
                s.delivered += 1;
            }
            None => s.unroutable += 1,
        }
    }

    fn take(&self, addr: Ipv4Addr, plane: Plane) -> Option<Vec<u8>> {
        let now = self.clock.0.get();
        let mut s = self.state.borrow_mut();
        let q = s.queues.get_mut(&(addr, plane))?;
        if q.front().is_some_and(|p| p.due <= now) {
            q.pop_front().map(|p| p.packet)
        } else {
            None
        }
    }

    /// A smoltcp node at `addr`/24, like [`hub_node`] but on the virtual
    /// clock.
    pub fn node(&self, addr: Ipv4Addr, sizes: Sizes, faults: Option<Faults>, seed: u32) -> SimNet {
        {
            let mut s = self.state.borrow_mut();
            s.queues.insert((addr, Plane::Wan), VecDeque::new());
            s.queues.insert((addr, Plane::Lan), VecDeque::new());
            if faults.is_some() {
                s.wan.push(addr);
            }
        }
        let port = |plane| SimPort {
            sim: self.clone(),
            addr,
            plane,
        };
        let f = faults.unwrap_or_default();
        let mut wan = FaultInjector::new(port(Plane::Wan), seed);
        wan.set_drop_chance(f.drop_pct);
        wan.set_corrupt_chance(f.corrupt_pct);
        let mut device = SimDevice {
            wan,
            lan: port(Plane::Lan),
        };
        let mut config = Config::new(HardwareAddress::Ip);
        config.random_seed = u64::from(seed) << 32 | u64::from(seed ^ 0x5eed);
        let now = smoltcp::time::Instant::from_micros(time::micros(self.now()) as i64);
        let mut iface = Interface::new(config, &mut device, now);
        iface.update_ip_addrs(|a| {
            a.push(IpCidr::new(IpAddress::Ipv4(addr), 24)).unwrap();
        });
        let platform = SimPlatform {
            clock: self.clock.clone(),
        };
        let mut net = SmolNet::new(iface, device, socket_set(sizes), platform);
        net.seed_ephemeral(seed);
        net
    }
}

/// One plane of a node on the [`Sim`] hub.
pub struct SimPort {
    sim: Sim,
    addr: Ipv4Addr,
    plane: Plane,
}

/// Permission to send one packet on the [`Sim`] hub.
pub struct SimTx<'a>(&'a Sim);

impl phy::TxToken for SimTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut packet = vec![0; len];
        let r = f(&mut packet);
        self.0.send(packet);
        r
    }
}

impl Device for SimPort {
    type RxToken<'a> = HubRx;
    type TxToken<'a> = SimTx<'a>;

    fn receive(
        &mut self,
        _now: smoltcp::time::Instant,
    ) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let packet = self.sim.take(self.addr, self.plane)?;
        Some((HubRx(packet), SimTx(&self.sim)))
    }

    fn transmit(&mut self, _now: smoltcp::time::Instant) -> Option<Self::TxToken<'_>> {
        Some(SimTx(&self.sim))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = 1500;
        caps
    }
}

/// A [`Sim`] node's device: faults on WAN packets received, as
/// [`NodeDevice`].
pub struct SimDevice {
    wan: FaultInjector<SimPort>,
    lan: SimPort,
}

/// A received packet from either plane of a [`SimDevice`].
pub enum SimRx<'a> {
    /// Through the fault injector.
    Wan(<FaultInjector<SimPort> as Device>::RxToken<'a>),
    /// Straight from the hub.
    Lan(HubRx),
}

impl phy::RxToken for SimRx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        match self {
            SimRx::Wan(t) => t.consume(f),
            SimRx::Lan(t) => t.consume(f),
        }
    }
}

impl Device for SimDevice {
    type RxToken<'a> = SimRx<'a>;
    type TxToken<'a> = SimTx<'a>;

    fn receive(
        &mut self,
        now: smoltcp::time::Instant,
    ) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        if let Some((rx, _)) = self.wan.receive(now) {
            return Some((SimRx::Wan(rx), SimTx(&self.lan.sim)));
        }
        let (rx, tx) = self.lan.receive(now)?;
        Some((SimRx::Lan(rx), tx))
    }

    fn transmit(&mut self, now: smoltcp::time::Instant) -> Option<Self::TxToken<'_>> {
        self.lan.transmit(now)
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.lan.capabilities()
    }
}

/// The virtual clock as a node's platform. It never sleeps: a harness on
/// the virtual clock never calls `Wait::wait` (that would need another
/// thread to move the clock), so `idle` panics to catch one that does.
pub struct SimPlatform {
    clock: SimClock,
}

impl Platform for SimPlatform {
    fn now(&mut self) -> Instant {
        self.clock.now()
    }

    fn idle(&mut self, until: Option<Instant>) {
        panic!("a node on the virtual clock waited (until {until:?}): step it with poll() instead");
    }
}

/// A node on the [`Sim`] hub.
pub type SimNet = SmolNet<'static, SimDevice, SimPlatform>;

/// What a stepped application says after a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Finished.
    Done,
    /// Call again when a socket may be ready, or at this deadline.
    Wait(Option<Instant>),
}

/// Something that runs on a [`SimNet`] node, one step at a time.
pub trait App {
    /// Does what can be done at `now`.
    fn step(&mut self, net: &mut SimNet, now: Instant) -> Step;
}

/// Runs `nodes` (each a stack and its application) until every
/// application is done, or `limit` of virtual time has passed (then it
/// panics naming the unfinished nodes). Every stack keeps running until
/// the last application is done. Returns the virtual time taken.
pub fn run_sim(
    sim: &Sim,
    nodes: &mut [(&str, &mut SimNet, &mut dyn App)],
    limit: Duration,
) -> Duration {
    let start = time::micros(sim.now());
    let end = start + limit.as_micros() as u64;
    let mut done = vec![false; nodes.len()];
    let mut deadline: Vec<Option<Instant>> = vec![None; nodes.len()];
    let mut same_instant = 0u32;
    let mut last = u64::MAX;
    loop {
        let now = sim.now();
        for (i, (_, net, app)) in nodes.iter_mut().enumerate() {
            net.poll();
            if !done[i] {
                match app.step(net, now) {
                    Step::Done => done[i] = true,
                    Step::Wait(d) => deadline[i] = d,
                }
            }
            net.poll();
        }
        if done.iter().all(|d| *d) {
            return Duration::from_micros(time::micros(now) - start);
        }
        let t = time::micros(now);
        assert!(
            t < end,
            "not done after {limit:?} of virtual time: {:?}",
            nodes
                .iter()
                .zip(&done)
                .filter(|(_, d)| !**d)
                .map(|(n, _)| n.0)
                .collect::<Vec<_>>()
        );
        let mut next = sim.next_arrival().map(time::micros);
        let mut consider = |x: Option<Instant>| {
            if let Some(x) = x {
                let x = time::micros(x);
                next = Some(next.map_or(x, |n: u64| n.min(x)));
            }
        };
        for (i, (_, net, _)) in nodes.iter_mut().enumerate() {
            consider(net.poll_at());
            if !done[i] {
                consider(deadline[i]);
            }
        }
        let mut next = next.unwrap_or(end).min(end);
        // Whatever wanted `now` has had its poll; a stack or an app that
        // keeps asking for `now` gets the next microsecond.
        if next <= t {
            same_instant += 1;
            if last == t && same_instant > 64 {
                next = t + 1;
            }
        } else {
            same_instant = 0;
        }
        last = t;
        sim.advance_to(time::at_micros(next));
    }
}

/// Sends `out` (then FIN) while receiving until the peer's FIN, one step
/// at a time: [`exchange`] for the virtual clock.
pub struct Exchange {
    socket: Option<punchwire_esp::TcpHandle>,
    out: Vec<u8>,
    sent: usize,
    shut: bool,
    eof: bool,
    /// What was received.
    pub got: Vec<u8>,
}

impl Exchange {
    /// An exchange of `out`, on a socket given later with [`start`](Self::start).
    pub fn new(out: Vec<u8>) -> Self {
        Exchange {
            socket: None,
            out,
            sent: 0,
            shut: false,
            eof: false,
            got: Vec::new(),
        }
    }

    /// The bytes it sends.
    pub fn out_bytes(&self) -> &[u8] {
        &self.out
    }

    /// Sets the socket.
    pub fn start(&mut self, s: punchwire_esp::TcpHandle) {
        self.socket = Some(s);
    }

    /// Moves what can move; `Ok(true)` when both FINs are through.
    pub fn step(&mut self, net: &mut SimNet) -> Result<bool, String> {
        let s = self.socket.expect("Exchange::start first");
        while self.sent < self.out.len() {
            let chunk = &self.out[self.sent..self.out.len().min(self.sent + 4096)];
            match net.tcp_write(s, chunk) {
                Ok(n) => self.sent += n,
                Err(NetError::WouldBlock) => break,
                Err(e) => return Err(format!("write after {} bytes: {e}", self.sent)),
            }
        }
        if self.sent == self.out.len() && !self.shut {
            net.tcp_shutdown_write(s)
                .map_err(|e| format!("shutdown: {e}"))?;
            self.shut = true;
        }
        let mut buf = [0u8; 4096];
        while !self.eof {
            match net.tcp_read(s, &mut buf) {
                Ok(0) => self.eof = true,
                Ok(n) => self.got.extend_from_slice(&buf[..n]),
                Err(NetError::WouldBlock) => break,
                Err(e) => return Err(format!("read after {} bytes: {e}", self.got.len())),
            }
        }
        Ok(self.eof && self.shut)
    }
}
