//! The tunnel machine and driver over any backend, with heap storage: what
//! the host harnesses (smoltcp hub, TAP node, simulations) run. The CLI and
//! the firmware do the same with their own memory.

use std::net::{SocketAddr, SocketAddrV4};

use punchwire_core::net::{Tcp, Udp, Wait};
use punchwire_core::tunnel::pw1::{self, Chunk, SentPacket, Stream};
use punchwire_core::tunnel::{
    self, Buffers, Config, Driver, DriverConfig, Endpoint, Flow, Local, LocalSlot, MachineConfig,
    Protocol, Snapshot, Tunnel, TunnelError, TunnelEvent,
};

/// Largest v0.12 payload the host harnesses use (MTU-sized frames).
pub const FRAME: usize = 1400;

/// What to run.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// The peer's address and UDP port.
    pub peer: SocketAddrV4,
    /// Our UDP port.
    pub udp_port: u16,
    /// The local side.
    pub local: Local,
    /// Protocols spoken.
    pub protocol: Protocol,
    /// Priming TTL (0: none).
    pub prime_ttl: u8,
    /// Stop after this many streams ended.
    pub sessions: u32,
    /// Give up after this much silence.
    pub silence_ms: u64,
    /// Stats events this often.
    pub stats_ms: Option<u64>,
    /// pw1 send window in chunks (receive: twice).
    pub window: usize,
    /// pw1 streams at once.
    pub max_streams: u16,
    /// Incarnation token (random in real use; fixed in tests).
    pub token: u64,
}

impl Options {
    /// Defaults for `local` towards `peer`, both on `port`.
    pub fn new(peer: SocketAddrV4, port: u16, local: Local, token: u64) -> Self {
        Options {
            peer,
            udp_port: port,
            local,
            protocol: Protocol::Auto,
            prime_ttl: 0,
            sessions: 1,
            silence_ms: 120_000,
            stats_ms: None,
            window: 256,
            max_streams: 32,
            token,
        }
    }
}

/// Heap memory of one tunnel end.
pub struct Memory {
    ep: Box<Endpoint<1, FRAME>>,
    send: Vec<Chunk>,
    recv: Vec<Chunk>,
    sent: Vec<SentPacket>,
    streams: Vec<Stream>,
    rx: Vec<u8>,
    tx: Vec<u8>,
    local: Vec<u8>,
}

impl Memory {
    /// Memory for `o`.
    pub fn new(o: &Options) -> Self {
        let mut c = Config::new(o.local.role());
        c.frame_size = FRAME;
        Memory {
            ep: Box::new(Endpoint::new(c, punchwire_core::time::at_micros(0))),
            send: vec![Chunk::EMPTY; o.window],
            recv: vec![Chunk::EMPTY; 2 * o.window],
            sent: vec![SentPacket::EMPTY; 4 * o.window],
            streams: vec![Stream::EMPTY; usize::from(o.max_streams)],
            rx: vec![0; punchwire_core::frame::MAX_FRAME_LEN + 1],
            tx: vec![0; Endpoint::<1, FRAME>::MAX_DATAGRAM.max(pw1::CHUNK_CAP + 200)],
            local: vec![0; 8192],
        }
    }
}

/// Builds the machine and driver for `o` over `net`.
pub fn driver<'a, N: Udp + Tcp + Wait>(
    net: &mut N,
    o: &Options,
    mem: &'a mut Memory,
    slots: &'a mut [Option<LocalSlot<N::TcpSocket>>],
) -> Result<Driver<'a, N, FRAME>, TunnelError> {
    let mut p = pw1::Config::new(matches!(o.local, Local::Connect(_)));
    p.max_streams = o.max_streams;
    p.initial_chunks = (o.window / usize::from(o.max_streams).max(1)).clamp(1, 8) as u16;
    let cfg = MachineConfig {
        peer: SocketAddr::V4(o.peer),
        local: o.local,
        protocol: o.protocol,
        prime_ttl: o.prime_ttl,
        normal_ttl: 64,
        heartbeat_ms: 15_000,
        silence_ms: o.silence_ms,
        pw1: p,
        token: o.token,
    };
    let now = net.now();
    let Memory {
        ep,
        send,
        recv,
        sent,
        streams,
        rx,
        tx,
        local,
    } = mem;
    let storage = pw1::Storage {
        send,
        recv,
        sent,
        streams,
    };
    let v012 = (o.protocol != Protocol::Pw1).then_some(&mut **ep);
    let pw1 = (o.protocol != Protocol::V012).then_some(storage);
    let tunnel = Tunnel::new(cfg, v012, pw1, now);
    Driver::new(
        net,
        tunnel,
        DriverConfig {
            udp_port: o.udp_port,
            local: o.local,
            stats_every_ms: o.stats_ms,
        },
        Buffers {
            rx,
            tx,
            local,
            slots,
        },
    )
}

/// Runs a tunnel end to the end of `o.sessions` streams (or silence, or a
/// refused protocol); every event goes to `seen` too. Returns the last
/// snapshot.
pub fn run<N: Udp + Tcp + Wait>(
    net: &mut N,
    o: &Options,
    mut seen: impl FnMut(&TunnelEvent),
) -> Result<Snapshot, TunnelError> {
    let mut mem = Memory::new(o);
    let mut slots = vec![None; usize::from(o.max_streams).max(1)];
    let mut d = driver(net, o, &mut mem, &mut slots)?;
    let mut ended = 0;
    tunnel::run(net, &mut d, |e| {
        seen(&e);
        match e {
            TunnelEvent::PeerSilent | TunnelEvent::ProtocolRefused => Flow::Stop,
            TunnelEvent::StreamEnded { .. } => {
                ended += 1;
                if ended >= o.sessions {
                    Flow::Stop
                } else {
                    Flow::Continue
                }
            }
            _ => Flow::Continue,
        }
    })?;
    Ok(d.snapshot())
}
