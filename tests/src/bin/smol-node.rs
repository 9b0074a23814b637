//! `smol-node`: the smoltcp backend (`punchwire-esp`) on a TAP device, so
//! the code the ESP32-C3 firmware runs can meet the Linux `punchwire`
//! through the NAT lab. See `HELP`.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::unix::io::{AsRawFd, RawFd};
use std::process::ExitCode;
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::thread;
use std::time::{Duration, Instant as StdInstant, SystemTime, UNIX_EPOCH};

use punchwire_core::net::{NetError, Tcp, Wait};
use punchwire_core::punch::{
    self, DEFAULT_PRIME_TTL, Event, PunchConfig, PunchDriverError, PunchError, PunchMachine,
};
use punchwire_core::schedule::{MAX_SKEW_BOUND_MS, UnixTime};
use punchwire_core::time::{self, Instant};
use punchwire_core::tunnel::{self, Local, Protocol, TunnelEvent};
use punchwire_esp::{Platform, SmolNet};
use punchwire_tests::host_tunnel::{self, Options};
use punchwire_tests::smol::{Sizes, since, socket_set};
use smoltcp::iface::{Config as IfaceConfig, Interface};
use smoltcp::phy::{self, Medium, TunTapInterface};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr};

const HELP: &str = "\
Run punchwire's smoltcp backend (the ESP32-C3 code) on a TAP device: punch
a TCP connection or carry a UDP tunnel, against the Linux `punchwire`.

Usage: smol-node NODE_OPTIONS tcp PEER_IP [--timeout S] [--clock-offset S]
                 [--max-clock-error S] [--ttl N]
       smol-node NODE_OPTIONS udp PEER_IP (-c HOST:PORT | -l PORT) [--port P]
                 [--sessions N] [--silence S] [--stats S] [--ttl N] [--protocol P]

Node options:
  --tap NAME          TAP device to attach to (created if missing; root)
  --addr IP/PREFIX    the node's IPv4 address on the TAP's segment
  --gateway IP        default gateway (the kernel side of the TAP)
  --mac MAC           the node's MAC [default: 02:70:77:00:00:02]
  -v, --verbose       print every punch / tunnel event on stderr
  -h, --help          print this help

tcp: punch PEER_IP by the shared clock (as `punchwire tcp`), then stdin ->
connection and connection -> stdout, byte-exact, until both directions end.
  --timeout S [120]  --clock-offset S [0]  --max-clock-error S [20]
  --ttl N             TTL of the priming SYNs, 0: no priming [3]

udp: a udphp-compatible tunnel (as `punchwire udp`) to PEER_IP:P.
  -c HOST:PORT        connect each session to the LAN service HOST:PORT
  -l PORT             accept LAN clients on PORT (any of the node's addresses)
  --port P [5555]  --sessions N [1]  --silence S [120]  --stats S
  --ttl N             TTL of the first punch heartbeats, 0: none [3]

Exit codes (as punchwire's): 0 done; 1 I/O error; 2 bad arguments or no TAP;
3 no bindable port; 4 timed out / peer silent; 5 election incomplete or
peer reset; 6 the local service failed.
";

/// Socket pool: a punch keeps up to 64 connects in flight.
const TCP_SIZES: Sizes = Sizes {
    tcp: 80,
    tcp_buf: 64 * 1024,
    udp: 1,
    udp_buf: 1024,
};
/// Tunnel: one UDP socket (room for a burst of full datagrams) and the
/// local side's TCP sockets.
const UDP_SIZES: Sizes = Sizes {
    tcp: 4,
    tcp_buf: 64 * 1024,
    udp: 1,
    udp_buf: 64 * 1024,
};
/// How long a blocked stdin reader may go unnoticed (the TAP's fd is the
/// only thing the idle sleep watches).
const STDIN_POLL: Duration = Duration::from_millis(2);
/// How long closed sockets get to finish their FIN exchange at the end
/// (after a punch: the losing connections, which a lossy path may leave
/// unanswered; the winner has finished before).
const SETTLE: Duration = Duration::from_secs(3);

mod exit {
    pub const OK: u8 = 0;
    pub const IO: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const NO_PORT: u8 = 3;
    pub const TIMEOUT: u8 = 4;
    pub const PEER: u8 = 5;
    pub const LOCAL: u8 = 6;
}

/// Clock and sleep of a host process on a TAP device.
struct TapPlatform {
    fd: RawFd,
    origin: StdInstant,
    /// Wake at least this often (a stdin reader thread may have data).
    max_idle: Option<Duration>,
}

impl Platform for TapPlatform {
    fn now(&mut self) -> Instant {
        since(self.origin)
    }

    fn idle(&mut self, until: Option<Instant>) {
        let now = self.now();
        let mut sleep = until.map(|t| Duration::from_micros(time::micros_between(now, t)));
        if let Some(cap) = self.max_idle {
            sleep = Some(sleep.map_or(cap, |s| s.min(cap)));
        }
        let sleep = sleep.map(|s| smoltcp::time::Duration::from_micros(s.as_micros() as u64));
        // An error (EINTR) only means an early return, which is allowed.
        let _ = phy::wait(self.fd, sleep);
    }
}

type TapNet = SmolNet<'static, TunTapInterface, TapPlatform>;

struct Node {
    tap: String,
    addr: IpCidr,
    gateway: Ipv4Addr,
    mac: EthernetAddress,
    verbose: bool,
}

struct TcpOptions {
    peer: Ipv4Addr,
    timeout_ms: u64,
    offset_ms: i64,
    max_error_ms: i64,
    ttl: u8,
}

struct UdpOptions {
    peer: Ipv4Addr,
    port: u16,
    local: Local,
    local_host: Option<Ipv4Addr>,
    sessions: u32,
    silence_ms: u32,
    stats_ms: Option<u64>,
    ttl: u8,
    protocol: Protocol,
}

enum Command {
    Tcp(TcpOptions),
    Udp(UdpOptions),
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        print!("{HELP}");
        return ExitCode::SUCCESS;
    }
    let (node, command) = match parse(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("smol-node: {e} (see `smol-node --help`)");
            return ExitCode::from(exit::USAGE);
        }
    };
    let code = match command {
        Command::Tcp(o) => {
            let max_idle = Some(STDIN_POLL);
            match open(&node, TCP_SIZES, max_idle) {
                Ok(net) => run_tcp(net, &o, node.verbose),
                Err(code) => code,
            }
        }
        Command::Udp(o) => match open(&node, UDP_SIZES, None) {
            Ok(net) => run_udp(net, &o, node.verbose),
            Err(code) => code,
        },
    };
    ExitCode::from(code)
}

// ------------------------------------------------------------------ args

/// The next argument's value, or an error naming the option.
fn value<'a>(it: &mut impl Iterator<Item = &'a String>, opt: &str) -> Result<&'a str, String> {
    it.next()
        .map(String::as_str)
        .ok_or_else(|| format!("{opt} needs a value"))
}

fn num<T: std::str::FromStr>(opt: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("{opt}: not a valid number: {v:?}"))
}

fn ipv4(opt: &str, v: &str) -> Result<Ipv4Addr, String> {
    v.parse()
        .map_err(|_| format!("{opt}: not an IPv4 address: {v:?}"))
}

/// Seconds with up to millisecond precision ("1.5", "-2") to ms.
fn seconds_ms(opt: &str, v: &str) -> Result<i64, String> {
    let s: f64 = num(opt, v)?;
    if !s.is_finite() || s.abs() > 1e9 {
        return Err(format!("{opt}: out of range: {v}"));
    }
    Ok((s * 1000.0).round() as i64)
}

fn positive_ms(opt: &str, v: &str) -> Result<u64, String> {
    match seconds_ms(opt, v)? {
        ms if ms > 0 => Ok(ms as u64),
        _ => Err(format!("{opt}: must be positive, got {v}")),
    }
}

fn parse(args: &[String]) -> Result<(Node, Command), String> {
    let mut it = args.iter();
    let (mut tap, mut addr, mut gateway) = (None, None, None);
    let mut mac = EthernetAddress([0x02, 0x70, 0x77, 0x00, 0x00, 0x02]);
    let mut verbose = false;
    let mode = loop {
        let Some(arg) = it.next() else {
            return Err("missing the command (tcp or udp)".into());
        };
        match arg.as_str() {
            "--tap" => tap = Some(value(&mut it, "--tap")?.to_string()),
            "--addr" => {
                let v = value(&mut it, "--addr")?;
                let cidr: IpCidr = v
                    .parse()
                    .map_err(|_| format!("--addr: expected IPv4/PREFIX, got {v:?}"))?;
                if !matches!(cidr.address(), IpAddress::Ipv4(_)) {
                    return Err(format!("--addr: expected IPv4/PREFIX, got {v:?}"));
                }
                addr = Some(cidr);
            }
            "--gateway" => gateway = Some(ipv4("--gateway", value(&mut it, "--gateway")?)?),
            "--mac" => {
                let v = value(&mut it, "--mac")?;
                mac = v
                    .parse()
                    .ok()
                    .filter(|m: &EthernetAddress| m.is_unicast())
                    .ok_or_else(|| format!("--mac: expected a unicast MAC, got {v:?}"))?;
            }
            "-v" | "--verbose" => verbose = true,
            "tcp" | "udp" => break arg.as_str(),
            other => return Err(format!("unexpected argument {other:?}")),
        }
    };
    let node = Node {
        tap: tap.ok_or("missing --tap NAME")?,
        addr: addr.ok_or("missing --addr IP/PREFIX")?,
        gateway: gateway.ok_or("missing --gateway IP")?,
        mac,
        verbose,
    };
    let peer = ipv4("PEER_IP", value(&mut it, "the command")?)?;
    if peer.is_unspecified() || peer.is_broadcast() || peer.is_multicast() {
        return Err(format!("PEER_IP: {peer} cannot be a peer"));
    }
    let command = if mode == "tcp" {
        let mut o = TcpOptions {
            peer,
            timeout_ms: punch::DEFAULT_TIMEOUT_MS,
            offset_ms: 0,
            max_error_ms: 20_000,
            ttl: DEFAULT_PRIME_TTL,
        };
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--timeout" => o.timeout_ms = positive_ms("--timeout", value(&mut it, arg)?)?,
                "--clock-offset" => {
                    o.offset_ms = seconds_ms("--clock-offset", value(&mut it, arg)?)?
                }
                "--max-clock-error" => {
                    let ms = seconds_ms("--max-clock-error", value(&mut it, arg)?)?;
                    if !(0..MAX_SKEW_BOUND_MS).contains(&ms) {
                        return Err("--max-clock-error: must be 0 to 62.999 seconds".into());
                    }
                    o.max_error_ms = ms;
                }
                "--ttl" => o.ttl = num("--ttl", value(&mut it, arg)?)?,
                other => return Err(format!("tcp: unexpected argument {other:?}")),
            }
        }
        Command::Tcp(o)
    } else {
        let mut o = UdpOptions {
            peer,
            port: 5555,
            local: Local::Connect(0),
            local_host: None,
            sessions: 1,
            silence_ms: 120_000,
            stats_ms: None,
            ttl: 3,
            protocol: Protocol::Auto,
        };
        let mut local = None;
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "-c" | "-l" if local.is_some() => return Err("-c and -l exclude each other".into()),
                "-c" => {
                    let v = value(&mut it, "-c")?;
                    let svc: SocketAddrV4 = v
                        .parse()
                        .map_err(|_| format!("-c: expected HOST:PORT (IPv4), got {v:?}"))?;
                    o.local_host = Some(*svc.ip());
                    local = Some(Local::Connect(svc.port()));
                }
                "-l" => local = Some(Local::Listen(num("-l", value(&mut it, "-l")?)?)),
                "--port" => o.port = num("--port", value(&mut it, arg)?)?,
                "--sessions" => o.sessions = num("--sessions", value(&mut it, arg)?)?,
                "--silence" => {
                    let ms = positive_ms("--silence", value(&mut it, arg)?)?;
                    o.silence_ms = u32::try_from(ms).map_err(|_| "--silence: too long")?;
                }
                "--stats" => o.stats_ms = Some(positive_ms("--stats", value(&mut it, arg)?)?),
                "--ttl" => o.ttl = num("--ttl", value(&mut it, arg)?)?,
                "--protocol" => {
                    o.protocol = match value(&mut it, arg)? {
                        "auto" => Protocol::Auto,
                        "v012" => Protocol::V012,
                        "pw1" => Protocol::Pw1,
                        other => {
                            return Err(format!("--protocol: auto, v012 or pw1, not {other:?}"));
                        }
                    }
                }
                other => return Err(format!("udp: unexpected argument {other:?}")),
            }
        }
        o.local = local.ok_or("udp: give -c HOST:PORT or -l PORT")?;
        if matches!(o.local, Local::Connect(0) | Local::Listen(0)) || o.port == 0 {
            return Err("udp: ports must not be 0".into());
        }
        if o.sessions == 0 {
            return Err("--sessions: must be at least 1".into());
        }
        Command::Udp(o)
    };
    Ok((node, command))
}

// ------------------------------------------------------------------ node

/// 64 bits from /dev/urandom (the clock if it is missing).
fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    match std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)) {
        Ok(()) => u64::from_le_bytes(b),
        Err(_) => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64 ^ u64::from(std::process::id())),
    }
}

/// Attaches to the TAP and builds the stack; an error is reported and
/// becomes the exit code.
fn open(node: &Node, sizes: Sizes, max_idle: Option<Duration>) -> Result<TapNet, u8> {
    let mut device = TunTapInterface::new(&node.tap, Medium::Ethernet).map_err(|e| {
        eprintln!(
            "smol-node: cannot open TAP device {:?}: {e} (root, and /dev/net/tun, needed)",
            node.tap
        );
        exit::USAGE
    })?;
    let origin = StdInstant::now();
    let seed = random_u64();
    let mut config = IfaceConfig::new(HardwareAddress::Ethernet(node.mac));
    config.random_seed = seed;
    let mut iface = Interface::new(config, &mut device, smoltcp::time::Instant::ZERO);
    iface.update_ip_addrs(|a| {
        let _ = a.push(node.addr);
    });
    iface
        .routes_mut()
        .add_default_ipv4_route(node.gateway)
        .map_err(|_| {
            eprintln!("smol-node: cannot add the default route");
            exit::USAGE
        })?;
    let platform = TapPlatform {
        fd: device.as_raw_fd(),
        origin,
        max_idle,
    };
    let mut net = SmolNet::new(iface, device, socket_set(sizes), platform);
    net.seed_ephemeral(seed as u32);
    eprintln!(
        "smol-node: {} on {} ({}), gateway {}",
        node.addr, node.tap, node.mac, node.gateway
    );
    Ok(net)
}

/// Runs the stack until every closed socket has finished its FIN exchange.
fn settle(net: &mut TapNet) {
    let t0 = StdInstant::now();
    while net.tcp_closing() > 0 && t0.elapsed() < SETTLE {
        let tick = time::add_millis(net.now(), 50);
        if net.wait(Some(tick)).is_err() {
            break;
        }
    }
    match net.tcp_closing() {
        0 => eprintln!(
            "smol-node: sockets closed after {:.3} s",
            t0.elapsed().as_secs_f64()
        ),
        n => eprintln!("smol-node: {n} socket(s) still closing after {SETTLE:?}; leaving"),
    }
}

fn unix_now(offset_ms: i64) -> UnixTime {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    UnixTime::from_millis(ms + offset_ms)
}

// ------------------------------------------------------------------ tcp

fn run_tcp(mut net: TapNet, o: &TcpOptions, verbose: bool) -> u8 {
    let mut config = PunchConfig::new(o.peer, random_u64());
    config.max_clock_error_ms = o.max_error_ms;
    config.timeout_ms = o.timeout_ms;
    config.prime_ttl = o.ttl;
    let start = net.now();
    let mut machine = match PunchMachine::new(config, start, unix_now(o.offset_ms)) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("smol-node: {e}");
            return exit::USAGE;
        }
    };
    eprintln!(
        "smol-node: punching {} (timeout {} s, prime TTL {})",
        o.peer,
        o.timeout_ms as f64 / 1000.0,
        o.ttl
    );
    let result = punch::punch(&mut net, &mut machine, |e, t| {
        if verbose || matches!(e, Event::Buckets { .. }) {
            eprintln!(
                "smol-node: {:>9.3} s {e:?}",
                time::micros_between(start, t) as f64 / 1e6
            );
        }
    });
    let elapsed = time::micros_between(start, net.now()) as f64 / 1e6;
    let (socket, winner) = match result {
        Ok(w) => w,
        Err(e) => {
            eprintln!("smol-node: {e} (after {elapsed:.3} s)");
            return match e {
                PunchDriverError::Punch(PunchError::NoBindablePort) => exit::NO_PORT,
                PunchDriverError::Punch(PunchError::Timeout) => exit::TIMEOUT,
                PunchDriverError::Punch(_) => exit::PEER,
                PunchDriverError::Wait(_) => exit::IO,
            };
        }
    };
    // Same wording as `punchwire tcp`, which the lab's case script parses.
    eprintln!(
        "smol-node: connected to {}:{} after {elapsed:.3} s ({:?})",
        o.peer, winner.port, winner.part
    );
    let t0 = StdInstant::now();
    let result = netcat(&mut net, socket);
    let secs = t0.elapsed().as_secs_f64();
    net.tcp_close(socket);
    settle(&mut net);
    match result {
        Ok((sent, received)) => {
            eprintln!(
                "smol-node: done: {sent} bytes sent, {received} bytes received in {secs:.3} s"
            );
            exit::OK
        }
        Err((NetError::Reset, what)) => {
            eprintln!("smol-node: connection reset by the peer ({what})");
            exit::PEER
        }
        Err((e, what)) => {
            eprintln!("smol-node: connection failed: {e} ({what})");
            exit::IO
        }
    }
}

/// Reads stdin on a thread (smoltcp's loop must not block on it), in
/// chunks; `Err` ends the stream with a read error.
fn stdin_reader() -> Receiver<io::Result<Vec<u8>>> {
    let (tx, rx) = mpsc::sync_channel(8);
    thread::spawn(move || {
        let mut stdin = io::stdin().lock();
        loop {
            let mut buf = vec![0u8; 64 * 1024];
            match stdin.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    buf.truncate(n);
                    if tx.send(Ok(buf)).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.send(Err(e));
                    break;
                }
            }
        }
    });
    rx
}

/// stdin → `s` (then FIN), `s` → stdout, until both are done. Returns
/// the byte counts, or the error and where it happened.
fn netcat(
    net: &mut TapNet,
    s: <TapNet as Tcp>::TcpSocket,
) -> Result<(u64, u64), (NetError, String)> {
    let input = stdin_reader();
    let mut stdout = io::stdout().lock();
    let mut pending: Vec<u8> = Vec::new();
    let mut offset = 0;
    let (mut sent, mut received) = (0u64, 0u64);
    let (mut stdin_done, mut shut, mut eof) = (false, false, false);
    let mut buf = vec![0u8; 64 * 1024];
    let mut failure = None;
    loop {
        // stdin -> connection
        while !shut {
            if offset == pending.len() && !stdin_done {
                match input.try_recv() {
                    Ok(Ok(chunk)) => (pending, offset) = (chunk, 0),
                    Ok(Err(e)) => {
                        failure = Some(format!("reading stdin: {e}"));
                        stdin_done = true;
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => stdin_done = true,
                }
            }
            if offset == pending.len() {
                if stdin_done {
                    net.tcp_shutdown_write(s)
                        .map_err(|e| (e, format!("shutdown after {sent} bytes")))?;
                    shut = true;
                }
                break;
            }
            match net.tcp_write(s, &pending[offset..]) {
                Ok(n) => {
                    offset += n;
                    sent += n as u64;
                }
                Err(NetError::WouldBlock) => break,
                Err(e) => return Err((e, format!("write after {sent} bytes"))),
            }
        }
        // connection -> stdout
        while !eof {
            match net.tcp_read(s, &mut buf) {
                Ok(0) => eof = true,
                Ok(n) => {
                    received += n as u64;
                    stdout
                        .write_all(&buf[..n])
                        .map_err(|e| (NetError::Other(0), format!("writing stdout: {e}")))?;
                }
                Err(NetError::WouldBlock) => break,
                Err(e) => return Err((e, format!("read after {received} bytes"))),
            }
        }
        // Done when the peer has every byte (our FIN acknowledged) and we
        // have its FIN; a stack that went earlier could lose the tail.
        if eof && shut && net.tcp_write_acked(s) {
            stdout
                .flush()
                .map_err(|e| (NetError::Other(0), format!("writing stdout: {e}")))?;
            return match failure {
                Some(what) => Err((NetError::Other(0), what)),
                None => Ok((sent, received)),
            };
        }
        let tick = time::add_millis(net.now(), 100);
        net.wait(Some(tick))
            .map_err(|e| (e, "waiting on the stack".to_string()))?;
    }
}

// ------------------------------------------------------------------ udp

fn run_udp(mut net: TapNet, o: &UdpOptions, verbose: bool) -> u8 {
    if let Some(host) = o.local_host {
        net.set_local_host(host);
    }
    let token = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64 ^ u64::from(std::process::id()))
        | 1;
    let mut opts = Options::new(SocketAddrV4::new(o.peer, o.port), o.port, o.local, token);
    opts.prime_ttl = o.ttl;
    opts.sessions = o.sessions;
    opts.silence_ms = u64::from(o.silence_ms);
    opts.stats_ms = o.stats_ms;
    opts.protocol = o.protocol;
    match (o.local, o.local_host) {
        (Local::Connect(p), Some(h)) => eprintln!(
            "smol-node: tunnel to {}:{} (-c: local service {h}:{p})",
            o.peer, o.port
        ),
        (Local::Listen(p), _) | (Local::Connect(p), None) => eprintln!(
            "smol-node: tunnel to {}:{} (-l: listening on port {p})",
            o.peer, o.port
        ),
    }
    let started = StdInstant::now();
    let mut code = exit::OK;
    let result = host_tunnel::run(&mut net, &opts, |e| {
        let at = started.elapsed().as_secs_f64();
        match e {
            TunnelEvent::Stats(s) => {
                let (sent, received, retransmits) = match (s.pw1, s.v012) {
                    (Some(p), _) => (p.stream_bytes_sent, p.stream_bytes_received, p.retransmits),
                    (None, Some(v)) => (
                        v.payload_bytes_sent,
                        v.payload_bytes_received,
                        v.retransmits,
                    ),
                    _ => (0, 0, 0),
                };
                eprintln!(
                    "smol-node: {at:>8.3} s stats: {:?}, sent {sent} B, received {received} B, {retransmits} retransmits",
                    s.chosen
                )
            }
            TunnelEvent::Dropped { .. } | TunnelEvent::LocalConnectFailed { .. } if !verbose => {}
            e => eprintln!("smol-node: {at:>8.3} s {e:?}"),
        }
        match e {
            TunnelEvent::PeerSilent => code = exit::TIMEOUT,
            TunnelEvent::ProtocolRefused => code = exit::IO,
            _ => {}
        }
    });
    // The local FIN may still be in flight (a device's stack outlives the
    // tunnel, so does ours).
    settle(&mut net);
    match result {
        Ok(s) => {
            eprintln!(
                "smol-node: done: {:?}",
                s.pw1.map(|p| (
                    p.stream_bytes_sent,
                    p.stream_bytes_received,
                    p.retransmits,
                    p.srtt_us
                ))
            );
            code
        }
        Err(e) => {
            eprintln!("smol-node: {e}");
            match e {
                tunnel::TunnelError::UdpBind(_) => exit::NO_PORT,
                tunnel::TunnelError::Listen(_) => exit::LOCAL,
                tunnel::TunnelError::Wait(_) => exit::IO,
            }
        }
    }
}
