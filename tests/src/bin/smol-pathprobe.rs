//! `smol-pathprobe`: `core::pathprobe` on the smoltcp backend
//! (`punchwire_esp::probe`, the code a device would run) on a TAP device —
//! the lab check of the smoltcp probe (`tests/lab/scenarios/15-pathprobe.sh`,
//! with `lab_smol`).
//!
//! ```text
//! smol-pathprobe --tap NAME --addr IP/PREFIX --gateway IP [--mac MAC] [--max-ttl N] PEER_IP
//! ```
//!
//! Prints one line per hop and `ttl N reason R`, like the Linux
//! `pathprobe` example; exits 0, 1 on a stack error, 2 for bad arguments or
//! no TAP.

use std::net::Ipv4Addr;
use std::os::unix::io::{AsRawFd, RawFd};
use std::process::ExitCode;
use std::time::Instant as StdInstant;

use punchwire_core::net::Wait;
use punchwire_core::pathprobe::{self, Hop, PathProbe, ProbeConfig, Reason, is_public};
use punchwire_core::time::{self, Instant};
use punchwire_esp::probe::SmolProbe;
use punchwire_esp::{Platform, SmolNet};
use punchwire_tests::smol::{Sizes, since, socket_set};
use smoltcp::iface::{Config as IfaceConfig, Interface};
use smoltcp::phy::{self, Medium, TunTapInterface};
use smoltcp::socket::{icmp, udp};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr};

/// The probes' local port.
const PROBE_PORT: u16 = 47001;

struct TapPlatform {
    fd: RawFd,
    origin: StdInstant,
}

impl Platform for TapPlatform {
    fn now(&mut self) -> Instant {
        since(self.origin)
    }

    fn idle(&mut self, until: Option<Instant>) {
        let now = self.now();
        let sleep =
            until.map(|t| smoltcp::time::Duration::from_micros(time::micros_between(now, t)));
        // EINTR only means an early return, which is allowed.
        let _ = phy::wait(self.fd, sleep);
    }
}

struct Args {
    tap: String,
    addr: IpCidr,
    gateway: Ipv4Addr,
    mac: EthernetAddress,
    peer: Ipv4Addr,
    max_ttl: Option<u8>,
}

fn parse() -> Result<Args, String> {
    let mut tap = None;
    let mut addr = None;
    let mut gateway = None;
    let mut mac = EthernetAddress([0x02, 0x70, 0x77, 0, 0, 0x02]);
    let mut peer = None;
    let mut max_ttl = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or(format!("{a}: needs a value"));
        match a.as_str() {
            "--tap" => tap = Some(value()?),
            "--addr" => addr = Some(value()?.parse().map_err(|_| "--addr: bad IP/PREFIX")?),
            "--gateway" => gateway = Some(value()?.parse().map_err(|_| "--gateway: bad IPv4")?),
            "--mac" => mac = value()?.parse().map_err(|_| "--mac: bad MAC")?,
            "--max-ttl" => max_ttl = Some(value()?.parse().map_err(|_| "--max-ttl: bad TTL")?),
            _ => peer = Some(a.parse().map_err(|_| format!("bad peer address {a:?}"))?),
        }
    }
    Ok(Args {
        tap: tap.ok_or("--tap is required")?,
        addr: addr.ok_or("--addr is required")?,
        gateway: gateway.ok_or("--gateway is required")?,
        mac,
        peer: peer.ok_or("the peer's address is required")?,
        max_ttl,
    })
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("smol-pathprobe: {e}");
            return ExitCode::from(2);
        }
    };
    let mut device = match TunTapInterface::new(&args.tap, Medium::Ethernet) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("smol-pathprobe: cannot open TAP device {:?}: {e}", args.tap);
            return ExitCode::from(2);
        }
    };
    let origin = StdInstant::now();
    let mut config = IfaceConfig::new(HardwareAddress::Ethernet(args.mac));
    config.random_seed = u64::from(std::process::id());
    let mut iface = Interface::new(config, &mut device, smoltcp::time::Instant::ZERO);
    iface.update_ip_addrs(|a| {
        let _ = a.push(args.addr);
    });
    if iface
        .routes_mut()
        .add_default_ipv4_route(args.gateway)
        .is_err()
    {
        eprintln!("smol-pathprobe: cannot add the default route");
        return ExitCode::from(2);
    }
    let platform = TapPlatform {
        fd: device.as_raw_fd(),
        origin,
    };
    let sizes = Sizes {
        tcp: 0,
        tcp_buf: 0,
        udp: 0,
        udp_buf: 0,
    };
    let mut net = SmolNet::new(iface, device, socket_set(sizes), platform);
    // The probe's two sockets, added after the pool was taken.
    let udp = net.sockets_mut().add(udp::Socket::new(
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 2], vec![0; 256]),
        // One packet: SmolProbe tells a probe has left by `can_send`.
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 1], vec![0; 64]),
    ));
    let icmp = net.sockets_mut().add(icmp::Socket::new(
        icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 16], vec![0; 16 * 600]),
        icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 1], vec![0; 64]),
    ));
    // A TAP just attached drops what the kernel sends through it until the
    // kernel's link watcher has brought it up (up to a second): the
    // gateway's ARP reply and the first ICMP errors would be lost.
    let settle = time::add_millis(net.now(), 1200);
    while time::micros(net.now()) < time::micros(settle) {
        let _ = net.wait(Some(settle));
    }
    let mut probe = SmolProbe::new(&mut net, udp, icmp, PROBE_PORT);
    let mut cfg = ProbeConfig::new(args.peer);
    if let Some(n) = args.max_ttl {
        cfg.max_ttl = n;
    }
    let mut machine = PathProbe::new(cfg);
    let started = StdInstant::now();
    let outcome = match pathprobe::learn_with(&mut probe, &mut machine) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("smol-pathprobe: {e}");
            return ExitCode::from(1);
        }
    };
    let took = started.elapsed();
    for t in 1..=machine.config().max_ttl {
        match machine.hop(t) {
            Hop::Silent => println!("hop {t} *"),
            Hop::Router(ip) => {
                let class = if is_public(ip) { "public" } else { "private" };
                println!("hop {t} {ip} {class}");
            }
            Hop::Peer => println!("hop {t} {} peer", args.peer),
            Hop::Unreachable(ip) => println!("hop {t} {ip} unreachable"),
        }
    }
    let reason = match outcome.reason {
        Reason::FirstPublicRouter(_) => "first-public-router",
        Reason::BelowPeer { .. } => "below-peer",
        Reason::Silent => "silent",
    };
    println!("{outcome}, decided in {} ms", took.as_millis());
    println!("ttl {} reason {reason}", outcome.ttl);
    ExitCode::SUCCESS
}
