//! The engine's memory: every big buffer in a `static`, none on the stack.
//!
//! The two modes need different things, and an image runs one of them, so
//! their memory overlaps: [`ModeRam`] is an enum in one `static`, as large
//! as the larger mode, not the sum of both.
//!
//! * **tcp**: a pool of [`TCP_PUNCH_SOCKETS`] TCP sockets with
//!   [`TCP_PUNCH_BUF`] bytes each way. The punch over one candidate bucket
//!   sprays 16 ports, over two 32; the winner and the local stream are
//!   pool sockets too (the winner is whichever punch socket won), so every
//!   socket gets the same, usable buffer. A port that finds the pool empty
//!   is re-armed when a socket comes free (the core re-arms on
//!   `NoBuffers`), so fewer sockets than ports only thins the spray.
//! * **udp**: the tunnel [`Endpoint`] (its 40 KB receive buffer takes
//!   udphp.py's largest frames) and three TCP sockets for the local side
//!   (listen: the listening one plus the accepted one; connect: the session
//!   plus one still finishing its FIN), and the datagram buffers.
//!
//! Both: one UDP socket (SNTP, then the tunnel), the DHCP client.

use punchwire_core::time::Instant;
use punchwire_core::tunnel::pw1::{Chunk, SentPacket, Stream};
use punchwire_core::tunnel::{self, Endpoint, LocalSlot};
use punchwire_esp::TcpHandle;
use smoltcp::iface::{SocketSet, SocketStorage};
use smoltcp::socket::{tcp, udp};
use static_cell::{ConstStaticCell, StaticCell};

use crate::config::Mode;

/// TCP sockets in the tcp mode's pool.
pub const TCP_PUNCH_SOCKETS: usize = 24;
/// Receive and send buffer of each of them.
pub const TCP_PUNCH_BUF: usize = 1024;
/// TCP sockets for the tunnel's local side (udp mode).
pub const TCP_TUNNEL_SOCKETS: usize = PW1_STREAMS + 1;
/// Receive and send buffer of each of them.
pub const TCP_TUNNEL_BUF: usize = 2048;
/// pw1 streams at once (local connections through the tunnel).
pub const PW1_STREAMS: usize = 4;
/// pw1 window in chunks (packets) each way.
pub const PW1_WINDOW: usize = 16;
/// Splice buffer of each direction (tcp mode); the sockets buffer more.
pub const SPLICE_BUF: usize = 512;

/// Largest tunnel frame payload: 1400 + 16-byte header fits a 1500-byte
/// MTU unfragmented, and the firmware cannot reassemble fragments.
pub const FRAME: usize = 1400;
/// The tunnel endpoint this firmware runs.
pub type TunnelEndpoint = Endpoint<1, FRAME>;
/// Receive buffer for one datagram: a full Ethernet MTU's worth of UDP
/// payload (1472) rounded up, + 1 so that an over-long datagram is told
/// apart from one that fits exactly.
pub const DATAGRAM_RX: usize = 1500 + 1;

/// UDP socket payload buffer, each way: a few full datagrams (pw1 paces
/// its packets, the engine drains the socket at once).
const UDP_BUF: usize = 6 * 1024;
/// Datagrams queued per UDP socket direction.
const UDP_DATAGRAMS: usize = 16;
/// Socket storage: the largest pool, the UDP socket and the DHCP client.
pub const SOCKETS: usize = TCP_PUNCH_SOCKETS + 2;

/// The tcp mode's buffers.
pub struct TcpRam {
    storage: [SocketStorage<'static>; SOCKETS],
    socket_bufs: [[u8; TCP_PUNCH_BUF]; 2 * TCP_PUNCH_SOCKETS],
    pub splice: [[u8; SPLICE_BUF]; 2],
}

/// The udp mode's buffers.
pub struct UdpRam {
    storage: [SocketStorage<'static>; TCP_TUNNEL_SOCKETS + 2],
    socket_bufs: [[u8; TCP_TUNNEL_BUF]; 2 * TCP_TUNNEL_SOCKETS],
    pub endpoint: TunnelEndpoint,
    pub rx: [u8; DATAGRAM_RX],
    pub tx: [u8; TunnelEndpoint::MAX_DATAGRAM],
    pub pw1: Pw1Ram,
    pub local: [u8; FRAME],
    pub slots: [Option<LocalSlot<TcpHandle>>; PW1_STREAMS],
}

/// pw1's windows and tables.
pub struct Pw1Ram {
    pub send: [Chunk; PW1_WINDOW],
    pub recv: [Chunk; PW1_WINDOW],
    pub sent: [SentPacket; 4 * PW1_WINDOW],
    pub streams: [Stream; PW1_STREAMS],
}

/// One mode's memory.
// One of them lives in a static for the whole run; the size difference is
// the point of the enum.
#[allow(clippy::large_enum_variant)]
pub enum ModeRam {
    Tcp(TcpRam),
    Udp(UdpRam),
}

/// What the engine keeps after the sockets took their buffers.
pub enum EngineRam {
    Tcp {
        splice: &'static mut [[u8; SPLICE_BUF]; 2],
    },
    Udp {
        endpoint: &'static mut TunnelEndpoint,
        rx: &'static mut [u8; DATAGRAM_RX],
        tx: &'static mut [u8; TunnelEndpoint::MAX_DATAGRAM],
        pw1: &'static mut Pw1Ram,
        local: &'static mut [u8; FRAME],
        slots: &'static mut [Option<LocalSlot<TcpHandle>>; PW1_STREAMS],
    },
}

static MODE_RAM: StaticCell<ModeRam> = StaticCell::new();
static UDP_RX: ConstStaticCell<[u8; UDP_BUF]> = ConstStaticCell::new([0; UDP_BUF]);
static UDP_TX: ConstStaticCell<[u8; UDP_BUF]> = ConstStaticCell::new([0; UDP_BUF]);
static UDP_RX_META: ConstStaticCell<[udp::PacketMetadata; UDP_DATAGRAMS]> =
    ConstStaticCell::new([udp::PacketMetadata::EMPTY; UDP_DATAGRAMS]);
static UDP_TX_META: ConstStaticCell<[udp::PacketMetadata; UDP_DATAGRAMS]> =
    ConstStaticCell::new([udp::PacketMetadata::EMPTY; UDP_DATAGRAMS]);

/// Builds the socket set for `mode` (TCP pool and the UDP socket; the
/// caller adds DHCP) and hands out the rest of the mode's memory.
/// `endpoint` configures the tunnel endpoint (udp mode only), made at
/// `now`.
///
/// The mode's memory is built on the stack and moved into its static
/// (about 70 KB of stack for a moment, at boot): never inlined, so that
/// frame is gone before the engine runs.
///
/// # Panics
/// If called twice (the statics are handed out once).
#[inline(never)]
pub fn take(mode: Mode, endpoint: tunnel::Config, now: Instant) -> (SocketSet<'static>, EngineRam) {
    let ram = match mode {
        Mode::Tcp => init_tcp(),
        Mode::Udp => init_udp(endpoint, now),
    };
    let (mut set, engine) = match ram {
        ModeRam::Tcp(r) => {
            let mut set = SocketSet::new(&mut r.storage[..]);
            add_tcp(&mut set, &mut r.socket_bufs[..]);
            (
                set,
                EngineRam::Tcp {
                    splice: &mut r.splice,
                },
            )
        }
        ModeRam::Udp(r) => {
            let mut set = SocketSet::new(&mut r.storage[..]);
            add_tcp(&mut set, &mut r.socket_bufs[..]);
            (
                set,
                EngineRam::Udp {
                    endpoint: &mut r.endpoint,
                    rx: &mut r.rx,
                    tx: &mut r.tx,
                    pw1: &mut r.pw1,
                    local: &mut r.local,
                    slots: &mut r.slots,
                },
            )
        }
    };
    set.add(udp::Socket::new(
        udp::PacketBuffer::new(&mut UDP_RX_META.take()[..], &mut UDP_RX.take()[..]),
        udp::PacketBuffer::new(&mut UDP_TX_META.take()[..], &mut UDP_TX.take()[..]),
    ));
    (set, engine)
}

// One function per mode, never inlined: each has its own (transient)
// stack frame for the value it moves into the static.
#[inline(never)]
fn init_tcp() -> &'static mut ModeRam {
    MODE_RAM.init_with(|| {
        ModeRam::Tcp(TcpRam {
            storage: [SocketStorage::EMPTY; SOCKETS],
            socket_bufs: [[0; TCP_PUNCH_BUF]; 2 * TCP_PUNCH_SOCKETS],
            splice: [[0; SPLICE_BUF]; 2],
        })
    })
}

#[inline(never)]
fn init_udp(endpoint: tunnel::Config, now: Instant) -> &'static mut ModeRam {
    MODE_RAM.init_with(|| {
        ModeRam::Udp(UdpRam {
            storage: [SocketStorage::EMPTY; TCP_TUNNEL_SOCKETS + 2],
            socket_bufs: [[0; TCP_TUNNEL_BUF]; 2 * TCP_TUNNEL_SOCKETS],
            endpoint: TunnelEndpoint::new(endpoint, now),
            rx: [0; DATAGRAM_RX],
            tx: [0; TunnelEndpoint::MAX_DATAGRAM],
            pw1: Pw1Ram {
                send: [const { Chunk::EMPTY }; PW1_WINDOW],
                recv: [const { Chunk::EMPTY }; PW1_WINDOW],
                sent: [SentPacket::EMPTY; 4 * PW1_WINDOW],
                streams: [Stream::EMPTY; PW1_STREAMS],
            },
            local: [0; FRAME],
            slots: [None; PW1_STREAMS],
        })
    })
}

/// One TCP socket per pair of buffers (receive, send).
fn add_tcp<const N: usize>(set: &mut SocketSet<'static>, bufs: &'static mut [[u8; N]]) {
    let mut pairs = bufs.chunks_exact_mut(2);
    for pair in &mut pairs {
        let [rx, tx] = pair else { continue };
        set.add(tcp::Socket::new(
            tcp::SocketBuffer::new(&mut rx[..]),
            tcp::SocketBuffer::new(&mut tx[..]),
        ));
    }
}

/// Sizes of the engine's pieces on this target, for the boot log.
pub fn log_sizes() {
    use core::mem::size_of;
    esp_println::println!(
        "engine RAM: tcp mode {} B, udp mode {} B (static, overlapping: {} B) + udp socket {} B; \
         Endpoint<1,{FRAME}> {} B, pw1 windows {} B, tcp::Socket {} B, SocketStorage {} B, PunchMachine {} B (stack)",
        size_of::<TcpRam>(),
        size_of::<UdpRam>(),
        size_of::<ModeRam>(),
        2 * UDP_BUF + 2 * UDP_DATAGRAMS * size_of::<udp::PacketMetadata>(),
        size_of::<TunnelEndpoint>(),
        size_of::<Pw1Ram>(),
        size_of::<tcp::Socket<'static>>(),
        size_of::<SocketStorage<'static>>(),
        size_of::<punchwire_core::punch::PunchMachine>(),
    );
}
