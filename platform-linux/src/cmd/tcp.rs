//! `punchwire tcp`: shared-clock TCP hole punching, then netcat or a relay.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::time::Duration;

use lexopt::prelude::*;
use log::{debug, info, warn};
use punchwire_core::punch::{
    self, DEFAULT_INTERVAL_MS, DEFAULT_TIMEOUT_MS, Election, Event, Part, PunchConfig,
    PunchDriverError, PunchError, PunchMachine, Timing,
};
use punchwire_core::schedule::MAX_SKEW_BOUND_MS;
use punchwire_core::time;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::args::{UsageError, parse_seconds_ms, port, text, ttl, usage};
use punchwire_linux::net::{LinuxNet, close_gracefully};
use punchwire_linux::{clock, relay, status};

/// Help text.
pub const HELP: &str = "\
Punch a TCP connection to PEER_IP through both NATs, by the shared clock,
then act as netcat (stdin -> peer, peer -> stdout) or relay a local port.

Usage: punchwire tcp PEER_IP [OPTIONS]

Both sides run it with each other's public IPv4, in any order, any time
apart within the timeout. `punchwire tcp 127.0.0.1` connects to itself
(a one-machine demonstration: what you type comes back).

Options:
  --timeout S            give up after S seconds [default: 120]
  --max-clock-error S    bound on the clock difference between the two
                         sides, 0 to 62.999 s [default: 20]
  --clock-offset S       add S seconds (may be negative) to this side's clock
  --public-ip IP         this side's public IPv4: use the article's election
                         (greater address leads) instead of the nonce hello
  --interval MS          spray interval [default: 50]
  --ttl N                TTL of the priming SYNs, 0 to disable priming
                         [default: learned from the path: TTL-limited probes
                         find the first public router beyond this side's
                         NATs (3 if the path is silent)]
  --reference            behave like tcp_punch.py (one bucket, wait for its
                         rendezvous, spray 5 s, keep the first connection)
  --forward PORT         relay the connection to the local TCP service on
                         127.0.0.1:PORT (the tunnel's -c role)
  --listen PORT          accept one local connection on 127.0.0.1:PORT and
                         relay it (the tunnel's -l role)
  --name NAME            name in `punchwire status` [default: tcp-PID]
  -v, --verbose          more progress on stderr (repeat for more)
  -q, --quiet            nothing on stderr but errors
  -h, --help             print this help

Exit codes:
  0  the connection was made and both directions ended cleanly
  1  an I/O error after connecting (reset by the peer, local write failed)
  2  bad arguments (including an invalid address)
  3  none of the schedule ports could be bound
  4  timed out: no connection
  5  connected, but the election did not complete or the peer closed early
  6  the local service (--forward / --listen) failed
";

/// Exit codes of `punchwire tcp` (documented in [`HELP`]).
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// I/O error after connecting.
    pub const IO: u8 = 1;
    /// No bindable schedule port.
    pub const NO_PORT: u8 = 3;
    /// Timed out.
    pub const TIMEOUT: u8 = 4;
    /// Election incomplete or peer closed early.
    pub const PEER: u8 = 5;
    /// Local service failed.
    pub const LOCAL: u8 = 6;
}

#[derive(Debug)]
struct Options {
    peer: Ipv4Addr,
    timeout_ms: u64,
    max_error_ms: i64,
    offset_ms: i64,
    public_ip: Option<Ipv4Addr>,
    interval_ms: u64,
    /// `--ttl`: `None` learns it from the path.
    ttl: Option<u8>,
    reference: bool,
    forward: Option<u16>,
    listen: Option<u16>,
    name: Option<String>,
    verbosity: i32,
}

fn ipv4(option: &str, v: &str) -> Result<Ipv4Addr, UsageError> {
    v.parse()
        .map_err(|_| usage(format!("{option}: not an IPv4 address: {v:?}")))
}

fn parse(mut p: lexopt::Parser) -> Result<Option<Options>, UsageError> {
    let mut peer = None;
    let mut o = Options {
        peer: Ipv4Addr::UNSPECIFIED,
        timeout_ms: DEFAULT_TIMEOUT_MS,
        max_error_ms: 20_000,
        offset_ms: 0,
        public_ip: None,
        interval_ms: DEFAULT_INTERVAL_MS,
        ttl: None,
        reference: false,
        forward: None,
        listen: None,
        name: None,
        verbosity: 0,
    };
    while let Some(arg) = p.next()? {
        match arg {
            Long("timeout") => {
                let v = text("--timeout", p.value()?)?;
                let ms = parse_seconds_ms("--timeout", &v)?;
                if ms <= 0 {
                    return Err(usage(format!("--timeout: must be positive, got {v}")));
                }
                o.timeout_ms = ms as u64;
            }
            Long("max-clock-error") => {
                let v = text("--max-clock-error", p.value()?)?;
                let ms = parse_seconds_ms("--max-clock-error", &v)?;
                if !(0..MAX_SKEW_BOUND_MS).contains(&ms) {
                    return Err(usage(format!(
                        "--max-clock-error: must be between 0 and 62.999 seconds, got {v}"
                    )));
                }
                o.max_error_ms = ms;
            }
            Long("clock-offset") => {
                let v = text("--clock-offset", p.value()?)?;
                o.offset_ms = parse_seconds_ms("--clock-offset", &v)?;
            }
            Long("public-ip") => {
                let v = text("--public-ip", p.value()?)?;
                o.public_ip = Some(ipv4("--public-ip", &v)?);
            }
            Long("interval") => {
                let v = text("--interval", p.value()?)?;
                o.interval_ms = match v.parse::<u64>() {
                    Ok(ms) if (1..=10_000).contains(&ms) => ms,
                    _ => return Err(usage(format!("--interval: expected 1-10000 ms, got {v:?}"))),
                };
            }
            Long("ttl") => {
                let v = text("--ttl", p.value()?)?;
                o.ttl = Some(ttl("--ttl", &v)?);
            }
            Long("reference") => o.reference = true,
            Long("forward") => {
                let v = text("--forward", p.value()?)?;
                o.forward = Some(port("--forward", &v)?);
            }
            Long("listen") => {
                let v = text("--listen", p.value()?)?;
                o.listen = Some(port("--listen", &v)?);
            }
            Long("name") => o.name = Some(crate::args::name(text("--name", p.value()?)?)?),
            Short('v') | Long("verbose") => o.verbosity += 1,
            Short('q') | Long("quiet") => o.verbosity = -1,
            Short('h') | Long("help") => return Ok(None),
            Value(v) if peer.is_none() => {
                let v = text("PEER_IP", v)?;
                peer = Some(ipv4("PEER_IP", &v)?);
            }
            other => return Err(other.unexpected().into()),
        }
    }
    o.peer = peer.ok_or_else(|| usage("missing PEER_IP (see `punchwire tcp --help`)"))?;
    if o.peer.is_unspecified() || o.peer.is_broadcast() || o.peer.is_multicast() {
        return Err(usage(format!("PEER_IP: {} cannot be a peer", o.peer)));
    }
    if o.forward.is_some() && o.listen.is_some() {
        return Err(usage("--forward and --listen exclude each other"));
    }
    if o.public_ip == Some(o.peer) && !o.peer.is_loopback() {
        return Err(usage("--public-ip equals PEER_IP: neither side would lead"));
    }
    Ok(Some(o))
}

fn describe(part: Part) -> &'static str {
    match part {
        Part::Leader => "leader",
        Part::Follower => "follower",
        Part::SelfConnected => "connected to itself",
        Part::First => "first connection",
    }
}

fn local_listener(port: u16) -> io::Result<TcpListener> {
    TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

fn local_connect(port: u16) -> io::Result<Socket> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    let addr = SockAddr::from(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)));
    s.connect_timeout(&addr, Duration::from_secs(10))?;
    Ok(s)
}

/// Runs the subcommand; returns the exit code.
pub fn run(parser: lexopt::Parser) -> Result<u8, UsageError> {
    let Some(o) = parse(parser)? else {
        print!("{HELP}");
        return Ok(0);
    };
    crate::logger::adjust(o.verbosity);
    // Bind the local side first: a busy port should fail before the punch.
    let listener = match o.listen.map(local_listener).transpose() {
        Ok(l) => l,
        Err(e) => {
            log::error!("cannot listen on 127.0.0.1:{}: {e}", o.listen.unwrap_or(0));
            return Ok(exit::LOCAL);
        }
    };

    let mut config = PunchConfig::new(o.peer, punchwire_linux::random::u64());
    config.max_clock_error_ms = o.max_error_ms;
    config.interval_ms = o.interval_ms;
    config.timeout_ms = o.timeout_ms;
    // The reference timing never primes; otherwise ask the path.
    let prime_ttl = match o.ttl {
        Some(t) => t,
        None if o.reference => 0,
        None => crate::cmd::learn_prime_ttl(o.peer, None),
    };
    config.prime_ttl = prime_ttl;
    if let Some(mine) = o.public_ip {
        config.election = Election::PublicIp { mine, peer: o.peer };
    }
    if o.reference {
        config.timing = Timing::Reference;
        if o.public_ip.is_none() {
            config.election = Election::FirstConnected;
        }
    }
    let mut net = match LinuxNet::new() {
        Ok(n) => n,
        Err(e) => {
            log::error!("cannot create the event loop: {e}");
            return Ok(exit::IO);
        }
    };
    // `punchwire status`: punching now, connected once a port wins.
    let mut status = status::Publisher::new(
        status::Info {
            name: o
                .name
                .clone()
                .unwrap_or_else(|| format!("tcp-{}", std::process::id())),
            mode: status::Mode::Tcp,
            role: match (o.forward, o.listen) {
                (Some(_), _) => "forward",
                (_, Some(_)) => "listen",
                _ => "netcat",
            }
            .to_string(),
            peer: o.peer.to_string(),
            protocol: None,
        },
        status::State::Punching,
    );
    let start = clock::now();
    let unix = clock::unix_now(o.offset_ms);
    let mut machine = match PunchMachine::new(config, start, unix) {
        Ok(m) => m,
        Err(e) => return Err(usage(e.to_string())),
    };
    if o.reference {
        let wait = time::micros_between(start, machine.spray_from()) as f64 / 1e6;
        info!("reference timing: spraying in {wait:.1} s, for 5 s");
    }
    info!(
        "punching {} (timeout {} s, clock error ±{} s, prime TTL {})",
        o.peer,
        o.timeout_ms as f64 / 1000.0,
        o.max_error_ms as f64 / 1000.0,
        if prime_ttl == 0 {
            "off".to_string()
        } else {
            prime_ttl.to_string()
        }
    );
    let mut skipped = 0usize;
    let result = punch::punch(&mut net, &mut machine, |event, now| {
        let _ = now;
        match event {
            Event::Buckets { first, last } => {
                info!("spraying the ports of bucket(s) {first}..={last}")
            }
            Event::PortSkipped { port, error } => {
                skipped += 1;
                warn!("port {port} skipped: {error}");
            }
            Event::Connected { port } => debug!("connection open on port {port}"),
            Event::Refused { port, error } => debug!("port {port}: {error}; re-arming"),
            Event::Elected(part) => debug!("election: {}", describe(part)),
        }
    });
    let elapsed = time::micros_between(start, clock::now()) as f64 / 1e6;
    let (handle, winner) = match result {
        Ok(w) => w,
        Err(e) => {
            log::error!("{e} (after {elapsed:.3} s)");
            return Ok(match e {
                PunchDriverError::Punch(PunchError::NoBindablePort) => exit::NO_PORT,
                PunchDriverError::Punch(PunchError::Timeout) => exit::TIMEOUT,
                PunchDriverError::Punch(PunchError::ElectionTimeout | PunchError::PeerClosed) => {
                    exit::PEER
                }
                PunchDriverError::Wait(_) => exit::IO,
            });
        }
    };
    if skipped > 0 {
        warn!("{skipped} schedule port(s) could not be bound and were skipped");
    }
    info!(
        "connected to {}:{} after {elapsed:.3} s ({})",
        o.peer,
        winner.port,
        describe(winner.part)
    );
    status.set_peer(format!("{}:{}", o.peer, winner.port));
    status.set_state(status::State::Connected);
    status.session_started();
    let Some(conn) = net.take_tcp(handle) else {
        log::error!("internal: the winning socket vanished");
        return Ok(exit::IO);
    };
    drop(net);

    let result = if let Some(port) = o.forward {
        match local_connect(port) {
            Ok(local) => relay::relay(conn, local),
            Err(e) => {
                log::error!("cannot connect to the local service 127.0.0.1:{port}: {e}");
                close_gracefully(&conn);
                return Ok(exit::LOCAL);
            }
        }
    } else if let Some(listener) = listener {
        info!(
            "waiting for a local connection on {}",
            listener
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default()
        );
        match listener.accept() {
            Ok((local, from)) => {
                info!("carrying the local connection from {from}");
                relay::relay(conn, Socket::from(local))
            }
            Err(e) => {
                log::error!("accepting the local connection failed: {e}");
                close_gracefully(&conn);
                return Ok(exit::LOCAL);
            }
        }
    } else {
        relay::netcat(conn)
    };
    match result {
        Ok(t) => {
            info!("done: {} bytes sent, {} bytes received", t.sent, t.received);
            Ok(exit::OK)
        }
        Err(e) => {
            // After connecting, a reset is an I/O error like any other
            // (exit 1, as `--help` says); 5 is for a punch whose election
            // did not complete.
            log::error!("connection failed: {e}");
            Ok(exit::IO)
        }
    }
}
