//! `punchwire udp`: UDP hole punch + a TCP-over-UDP tunnel, wire-compatible
//! with udphp.py v0.12.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use lexopt::prelude::*;
use log::{debug, info, warn};
use punchwire_core::birthday::{self, Birthday, BirthdayConfig};
use punchwire_core::frame::{MAX_FRAME_LEN, MAX_PAYLOAD};
use punchwire_core::time::{Milliseconds, UnixClock};
use punchwire_core::tunnel::pw1::{self, Chunk, SentPacket, Stream};
use punchwire_core::tunnel::{
    self, BirthdayEvent, Chosen, Config, Driver, DriverConfig, Endpoint, Flow, Local, LocalSlot,
    MachineConfig, Protocol, Snapshot, Tunnel, TunnelError, TunnelEvent,
};

use crate::args::{UsageError, parse_seconds_ms, port, text, ttl, usage};
use punchwire_linux::clock;
use punchwire_linux::net::LinuxNet;
use punchwire_linux::status;

/// Help text.
pub const HELP: &str = "\
Punch a UDP hole to PEER_IP and carry local TCP sessions through it. Two
punchwire peers speak pw1 (many sessions at once, fast on lossy long paths);
any other peer gets udphp.py v0.12's format (either side may be udphp.py).

Usage: punchwire udp -c PORT PEER_IP [UDP_PORT] [OPTIONS]
       punchwire udp -l PORT PEER_IP [UDP_PORT] [OPTIONS]

  -c PORT          the 'server' side: connect to the local TCP service on
                   127.0.0.1:PORT for each session
  -l PORT          the 'client' side: listen on 127.0.0.1:PORT and carry each
                   accepted connection (pw1: all at once; v0.12: in turn)
  UDP_PORT         UDP port on both sides [default: 5555]

Options:
  --protocol P           auto, v012 or pw1 [default: auto: pw1 with a
                         punchwire peer, v0.12 with udphp.py; pw1 refuses a
                         v0.12 peer, exit 5]
  --max-streams N        pw1: sessions at once, 1-4096 [default: 256]
  --window N             pw1: chunks (~1.3 KB each) of send window; the
                         receive window is twice that [default: 1024]
  -d, --debug            debug log on stderr (as udphp.py's -d)
  --heartbeat S          seconds between heartbeats [default: 15; OpenWrt
                         forgets an unanswered UDP mapping after 60 s]
  --silence S            give up after hearing nothing for S seconds
                         [default: 120]
  --frame-size N         v0.12: largest payload per datagram, 1-40000
                         [default: 1400: fits a 1500-byte MTU, no IP
                         fragmentation; pw1 datagrams are at most 1400 bytes]
  --stats S              print a statistics line on stderr every S seconds
  --sessions N           exit 0 after N sessions have ended [default: run
                         until the peer falls silent]
  --ttl N                TTL of the first punch heartbeats, 0 to disable
                         [default: learned from the path (ICMP time
                         exceeded of TTL-limited probes: the first public
                         router beyond this side's NATs), 3 if it is silent]
  --no-compress          send every frame uncompressed
  --no-birthday          never escalate to birthday punching (by default,
                         after 3 s without a word from the peer, both sides
                         open up to 256 extra UDP sockets and probe random
                         ports of the peer, paced to 100 datagrams/s, at most
                         2048 a round, 3 rounds on the shared clock: this
                         reaches a peer whose NAT randomises ports; never
                         with a loopback PEER_IP)
  --bind-port N          bind this UDP port instead of UDP_PORT (still send to
                         PEER_IP:UDP_PORT): for both sides on one machine
  --name NAME            name in `punchwire status` [default: udp-PID]
  -v, --verbose          more log lines; -q, --quiet: errors only
  -h, --help             print this help

Only datagrams from PEER_IP are used; its port is learned from its first
datagram (its router may have had to move it) and moves later only on a
datagram shown to be the peer's. Others are counted and dropped, as are
malformed ones. A restarted punchwire peer is noticed (its sessions are
reset) and served again at once. Exit codes: 0 the requested sessions are
done; 1 I/O error; 2 bad arguments; 3 the UDP port cannot be bound; 4 the
peer fell silent; 5 the peer's protocol is refused (--protocol); 6 the local
port cannot be listened on.
";

/// Exit codes (documented in [`HELP`]).
mod exit {
    pub const OK: u8 = 0;
    pub const IO: u8 = 1;
    pub const UDP_BIND: u8 = 3;
    pub const SILENT: u8 = 4;
    pub const PROTOCOL: u8 = 5;
    pub const LOCAL: u8 = 6;
}

struct Options {
    local: Local,
    peer: Ipv4Addr,
    udp_port: u16,
    bind_port: Option<u16>,
    heartbeat_ms: u32,
    silence_ms: u32,
    frame_size: usize,
    stats_ms: Option<u64>,
    sessions: Option<u32>,
    /// `--ttl`: `None` learns it from the path.
    ttl: Option<u8>,
    compress: bool,
    name: Option<String>,
    verbosity: i32,
    protocol: Protocol,
    max_streams: u16,
    window: usize,
    /// `--no-birthday` clears it.
    birthday: bool,
}

fn seconds_u32(name: &str, v: &str, min_ms: i64) -> Result<u32, UsageError> {
    let ms = parse_seconds_ms(name, v)?;
    if ms < min_ms || ms > i64::from(u32::MAX) {
        return Err(usage(format!("{name}: out of range: {v}")));
    }
    Ok(ms as u32)
}

fn parse(mut p: lexopt::Parser) -> Result<Option<Options>, UsageError> {
    let mut local = None;
    let mut positional = Vec::new();
    let mut o = Options {
        local: Local::Connect(0),
        peer: Ipv4Addr::UNSPECIFIED,
        udp_port: 5555,
        bind_port: None,
        heartbeat_ms: 15_000,
        silence_ms: 120_000,
        frame_size: tunnel::DEFAULT_FRAME_SIZE,
        stats_ms: None,
        sessions: None,
        ttl: None,
        compress: true,
        name: None,
        verbosity: 0,
        protocol: Protocol::Auto,
        max_streams: 256,
        window: 1024,
        birthday: true,
    };
    while let Some(arg) = p.next()? {
        match arg {
            Short('c') | Long("connect") | Short('l') | Long("listen") => {
                let is_connect = matches!(arg, Short('c') | Long("connect"));
                if local.is_some() {
                    return Err(usage("-c and -l exclude each other (give one)"));
                }
                let v = text("-c/-l", p.value()?)?;
                let n = port(if is_connect { "-c" } else { "-l" }, &v)?;
                local = Some(if is_connect {
                    Local::Connect(n)
                } else {
                    Local::Listen(n)
                });
            }
            Short('d') | Long("debug") => o.verbosity = o.verbosity.max(1),
            Short('v') | Long("verbose") => o.verbosity += 1,
            Short('q') | Long("quiet") => o.verbosity = -1,
            Long("heartbeat") => {
                let v = text("--heartbeat", p.value()?)?;
                o.heartbeat_ms = seconds_u32("--heartbeat", &v, 100)?;
            }
            Long("silence") => {
                let v = text("--silence", p.value()?)?;
                o.silence_ms = seconds_u32("--silence", &v, 1000)?;
            }
            Long("frame-size") => {
                let v = text("--frame-size", p.value()?)?;
                o.frame_size = match v.parse::<usize>() {
                    Ok(n) if (1..=MAX_PAYLOAD).contains(&n) => n,
                    _ => return Err(usage(format!("--frame-size: expected 1-40000, got {v:?}"))),
                };
            }
            Long("stats") => {
                let v = text("--stats", p.value()?)?;
                o.stats_ms = Some(u64::from(seconds_u32("--stats", &v, 100)?));
            }
            Long("sessions") => {
                let v = text("--sessions", p.value()?)?;
                o.sessions = match v.parse::<u32>() {
                    Ok(n) if n > 0 => Some(n),
                    _ => {
                        return Err(usage(format!(
                            "--sessions: expected a positive count, got {v:?}"
                        )));
                    }
                };
            }
            Long("ttl") => {
                let v = text("--ttl", p.value()?)?;
                o.ttl = Some(ttl("--ttl", &v)?);
            }
            Long("no-compress") => o.compress = false,
            Long("no-birthday") => o.birthday = false,
            Long("protocol") => {
                let v = text("--protocol", p.value()?)?;
                o.protocol = match v.as_str() {
                    "auto" => Protocol::Auto,
                    "v012" | "v0.12" => Protocol::V012,
                    "pw1" => Protocol::Pw1,
                    _ => {
                        return Err(usage(format!(
                            "--protocol: expected auto, v012 or pw1, got {v:?}"
                        )));
                    }
                };
            }
            Long("max-streams") => {
                let v = text("--max-streams", p.value()?)?;
                o.max_streams = match v.parse::<u16>() {
                    Ok(n) if (1..=4096).contains(&n) => n,
                    _ => return Err(usage(format!("--max-streams: expected 1-4096, got {v:?}"))),
                };
            }
            Long("window") => {
                let v = text("--window", p.value()?)?;
                o.window = match v.parse::<usize>() {
                    Ok(n) if (16..=65536).contains(&n) => n,
                    _ => return Err(usage(format!("--window: expected 16-65536, got {v:?}"))),
                };
            }
            Long("bind-port") => {
                let v = text("--bind-port", p.value()?)?;
                o.bind_port = Some(port("--bind-port", &v)?);
            }
            Long("name") => o.name = Some(crate::args::name(text("--name", p.value()?)?)?),
            Short('h') | Long("help") => return Ok(None),
            Value(v) => positional.push(text("argument", v)?),
            other => return Err(other.unexpected().into()),
        }
    }
    o.local = local.ok_or_else(|| usage("give -c PORT or -l PORT (see `punchwire udp --help`)"))?;
    match positional.as_slice() {
        [ip] | [ip, _] => {
            o.peer = ip
                .parse()
                .map_err(|_| usage(format!("PEER_IP: not an IPv4 address: {ip:?}")))?;
        }
        [] => return Err(usage("missing PEER_IP (see `punchwire udp --help`)")),
        _ => return Err(usage(format!("too many arguments: {positional:?}"))),
    }
    if let [_, udp] = positional.as_slice() {
        o.udp_port = port("UDP_PORT", udp)?;
    }
    if o.peer.is_unspecified() || o.peer.is_broadcast() || o.peer.is_multicast() {
        return Err(usage(format!("PEER_IP: {} cannot be a peer", o.peer)));
    }
    Ok(Some(o))
}

fn stats_line(s: &Snapshot) -> String {
    let ms = |us: Option<u64>| {
        us.map(|us| format!("{:.1} ms", us as f64 / 1000.0))
            .unwrap_or_else(|| "-".into())
    };
    match (s.chosen, s.pw1, s.v012) {
        (Chosen::Pw1, Some(p), _) => format!(
            "stats: pw1, sent {} B, received {} B, rtt {} (min {}), cwnd {} KB, pacing {:.1} Mbit/s, {} packets lost, {} retransmits, {} probe timeouts, {} streams open ({} opened, {} reset), bad datagrams {}",
            p.stream_bytes_sent,
            p.stream_bytes_received,
            ms(p.srtt_us),
            ms(p.min_rtt_us),
            p.cwnd / 1024,
            p.pacing_rate as f64 * 8.0 / 1e6,
            p.packets_lost,
            p.retransmits,
            p.ptos,
            p.streams,
            p.streams_opened,
            p.streams_reset,
            p.bad.total() + s.link.malformed + s.link.unvalidated,
        ),
        (_, _, Some(v)) => format!(
            "stats: v0.12, sent {} B in {} frames ({} retransmits), received {} B in {} frames, compression {:.2}, rtt {}, bad datagrams {}",
            v.payload_bytes_sent,
            v.data_frames_sent,
            v.retransmits,
            v.payload_bytes_received,
            v.data_frames_received,
            v.compression_ratio(),
            ms(v.srtt_us),
            v.bad.total() + s.link.malformed + s.link.unvalidated
        ),
        _ => format!(
            "stats: waiting for the peer ({} heartbeats sent, {} foreign datagrams)",
            s.link.heartbeats_sent, s.link.foreign
        ),
    }
}

/// The pw1 memory of one tunnel, on the heap (sizes from the options).
struct Pw1Memory {
    send: Vec<Chunk>,
    recv: Vec<Chunk>,
    sent: Vec<SentPacket>,
    streams: Vec<Stream>,
}

impl Pw1Memory {
    fn new(window: usize, max_streams: u16) -> Self {
        Pw1Memory {
            send: vec![Chunk::EMPTY; window],
            recv: vec![Chunk::EMPTY; 2 * window],
            sent: vec![SentPacket::EMPTY; 4 * window],
            streams: vec![Stream::EMPTY; usize::from(max_streams)],
        }
    }

    fn storage(&mut self) -> pw1::Storage<'_> {
        pw1::Storage {
            send: &mut self.send,
            recv: &mut self.recv,
            sent: &mut self.sent,
            streams: &mut self.streams,
        }
    }
}

/// Runs the subcommand; returns the exit code.
pub fn run(parser: lexopt::Parser) -> Result<u8, UsageError> {
    let Some(o) = parse(parser)? else {
        print!("{HELP}");
        return Ok(0);
    };
    crate::logger::adjust(o.verbosity);
    let mut net = match LinuxNet::new() {
        Ok(n) => n,
        Err(e) => {
            log::error!("cannot create the event loop: {e}");
            return Ok(exit::IO);
        }
    };
    let mut config = Config::new(o.local.role());
    config.frame_size = o.frame_size;
    config.heartbeat_interval = Milliseconds(o.heartbeat_ms);
    config.silence_timeout = Milliseconds(o.silence_ms);
    config.compress = o.compress;
    // udphp-sized frames need udphp-sized slots: 40 000 bytes of payload.
    let mut ep: Option<Box<Endpoint<1, MAX_PAYLOAD>>> =
        (o.protocol != Protocol::Pw1).then(|| Box::new(Endpoint::new(config, clock::now())));
    // The initial credit of every stream the peer may open is kept free in
    // the receive pool (2 × window chunks): a quarter of it at most, so
    // one busy stream can use the rest.
    let initial_chunks = (2 * o.window / usize::from(o.max_streams) / 4).clamp(1, 8) as u16;
    let mut mem = (o.protocol != Protocol::V012).then(|| Pw1Memory::new(o.window, o.max_streams));
    let mut pw1_cfg = pw1::Config::new(matches!(o.local, Local::Connect(_)));
    pw1_cfg.max_streams = o.max_streams;
    pw1_cfg.initial_chunks = initial_chunks;
    pw1_cfg.keepalive_ms = o.heartbeat_ms;
    let peer = SocketAddr::V4(SocketAddrV4::new(o.peer, o.udp_port));
    let prime_ttl = o
        .ttl
        .unwrap_or_else(|| crate::cmd::learn_prime_ttl(o.peer, Some(o.udp_port)));
    let machine_cfg = MachineConfig {
        peer,
        local: o.local,
        protocol: o.protocol,
        prime_ttl,
        normal_ttl: 64,
        heartbeat_ms: u64::from(o.heartbeat_ms),
        silence_ms: u64::from(o.silence_ms),
        pw1: pw1_cfg,
        token: punchwire_linux::random::u64() | 1,
    };
    let now = clock::now();
    let mut tunnel = Tunnel::new(
        machine_cfg,
        ep.as_deref_mut(),
        mem.as_mut().map(|m| m.storage()),
        now,
    );
    // A loopback peer is never behind a NAT (and probing random local
    // ports would reach other programs on this host).
    if o.birthday && !o.peer.is_loopback() {
        // Rounds start on the shared unix clock (both sides' bursts overlap).
        let unix = UnixClock::new(now, clock::unix_now(0));
        let bcfg = BirthdayConfig::new(SocketAddrV4::new(o.peer, o.udp_port));
        tunnel.enable_birthday(Birthday::new(
            bcfg,
            now,
            unix,
            punchwire_linux::random::u64(),
        ));
    }
    let mut extra = vec![None; usize::from(birthday::MAX_EXTRA_SOCKETS)];
    let mut rx = vec![0u8; MAX_FRAME_LEN + 1];
    let mut tx = vec![0u8; Endpoint::<1, MAX_PAYLOAD>::MAX_DATAGRAM];
    let mut local = vec![0u8; 16 * 1024];
    let mut slots: Vec<Option<LocalSlot<punchwire_linux::net::Handle>>> =
        vec![None; usize::from(o.max_streams).max(1)];
    let buffers = tunnel::Buffers {
        rx: &mut rx,
        tx: &mut tx,
        local: &mut local,
        slots: &mut slots,
    };
    let dcfg = DriverConfig {
        udp_port: o.bind_port.unwrap_or(o.udp_port),
        local: o.local,
        stats_every_ms: Some(status_hook::tick_ms(o.stats_ms)),
    };
    let mut driver = match Driver::new(&mut net, tunnel, dcfg, buffers) {
        Ok(d) => d.with_extra_sockets(&mut extra),
        Err(e) => {
            log::error!("{e}");
            return Ok(match e {
                TunnelError::UdpBind(_) => exit::UDP_BIND,
                TunnelError::Listen(_) => exit::LOCAL,
                TunnelError::Wait(_) => exit::IO,
            });
        }
    };
    match o.local {
        Local::Connect(p) => info!(
            "tunnel to {}:{} (-c: local service 127.0.0.1:{p})",
            o.peer, o.udp_port
        ),
        Local::Listen(p) => info!(
            "tunnel to {}:{} (-l: listening on 127.0.0.1:{p})",
            o.peer, o.udp_port
        ),
    }
    let mut status = status_hook::publisher(&o);
    let mut stats_ticks = 0u64;
    let mut code = exit::OK;
    let mut done_sessions = 0u32;
    let (mut last_foreign, mut last_bad) = (0u64, 0u64);
    let result = tunnel::run(&mut net, &mut driver, |event| match event {
        TunnelEvent::PeerHeard(a) => {
            status.set_state(status::State::Connected);
            status.set_peer(a.to_string());
            info!("peer heard from {a}: the hole is open");
            Flow::Continue
        }
        TunnelEvent::PeerMoved(a) => {
            status.set_peer(a.to_string());
            warn!("peer's datagrams now come from {a}; answering there");
            Flow::Continue
        }
        TunnelEvent::PeerSilent => {
            status.set_state(status::State::PeerSilent);
            log::error!("peer silent for {} s: giving up", o.silence_ms / 1000);
            code = exit::SILENT;
            Flow::Stop
        }
        TunnelEvent::PeerRestarted => {
            warn!("the peer restarted: its sessions were reset; serving it again");
            Flow::Continue
        }
        TunnelEvent::Protocol(c) => {
            status.set_protocol(if c == Chosen::Pw1 {
                status::Protocol::Pw1
            } else {
                status::Protocol::V012
            });
            match c {
                Chosen::Pw1 => info!("protocol pw1 (the peer is punchwire)"),
                _ => info!("protocol udphp v0.12 (the peer did not offer pw1)"),
            }
            Flow::Continue
        }
        TunnelEvent::ProtocolRefused => {
            log::error!(
                "the peer speaks only udphp v0.12, and --protocol {} refuses it",
                if o.protocol == Protocol::Pw1 {
                    "pw1"
                } else {
                    "v012"
                }
            );
            code = exit::PROTOCOL;
            Flow::Stop
        }
        TunnelEvent::StreamStarted(n) => {
            status.session_started();
            info!("session {n} started");
            Flow::Continue
        }
        TunnelEvent::StreamEnded { id, reset } => {
            status.session_ended();
            if reset {
                warn!("session {id} was reset");
            } else {
                info!("session {id} ended");
            }
            done_sessions += 1;
            if o.sessions.is_some_and(|want| done_sessions >= want) {
                Flow::Stop
            } else {
                Flow::Continue
            }
        }
        TunnelEvent::LocalConnectFailed { id, error } => {
            warn!("session {id}: local service 127.0.0.1 refused ({error})");
            Flow::Continue
        }
        TunnelEvent::Dropped { foreign, bad } => {
            if foreign > last_foreign {
                if foreign.is_power_of_two() || foreign - last_foreign > 1 {
                    warn!("ignored {foreign} datagram(s) from addresses other than the peer");
                }
                last_foreign = foreign;
            }
            if bad > last_bad {
                debug!(
                    "dropped a datagram from the peer: {bad} malformed, damaged or unvalidated so far"
                );
                last_bad = bad;
            }
            Flow::Continue
        }
        TunnelEvent::Stats(s) => {
            status.update_stats(&status_hook::counters(&s));
            stats_ticks += 1;
            if let Some(ms) = o.stats_ms
                && stats_ticks.is_multiple_of(status_hook::ticks_per_line(ms))
            {
                info!("{}", stats_line(&s));
            }
            Flow::Continue
        }
        TunnelEvent::Birthday(b) => {
            match b {
                BirthdayEvent::Round {
                    round,
                    rounds,
                    extra_sockets,
                } => {
                    if round == 1 {
                        info!("the peer is silent: escalating to birthday punching");
                    }
                    debug!(
                        "birthday round {round}/{rounds}: {extra_sockets} extra sockets, probing random ports of {}",
                        o.peer
                    );
                }
                BirthdayEvent::Won {
                    socket,
                    peer,
                    round,
                    stats,
                } => {
                    let on = match socket {
                        birthday::Socket::Main => "the main socket".to_string(),
                        birthday::Socket::Extra(i) => format!("extra socket {i}"),
                    };
                    info!(
                        "birthday punching found a hole in round {round}: {on} to {peer} ({} extra sockets, {} datagrams from them, {} probes)",
                        stats.opened, stats.extra_sent, stats.probes_sent
                    );
                }
                BirthdayEvent::GaveUp(stats) => warn!(
                    "birthday punching gave up after {} rounds ({} extra datagrams, {} probes): no hole; still listening for the peer",
                    stats.rounds, stats.extra_sent, stats.probes_sent
                ),
            }
            Flow::Continue
        }
    });
    match result {
        Ok(()) => {
            info!("{}", stats_line(&driver.snapshot()));
            debug!("link: {:?}", driver.snapshot().link);
            Ok(code)
        }
        Err(e) => {
            log::error!("{e}");
            Ok(exit::IO)
        }
    }
}

// ---- status hook (`punchwire status`) --------------------------------------
// The publisher is created before the tunnel runs (state punching); the
// events set connected / peer silent, the protocol and the sessions; every
// Stats event (asked for at least once a second) updates the counters. The
// `--stats` log line keeps its own interval.
mod status_hook {
    use super::Options;
    use punchwire_core::tunnel::{Local, Snapshot};
    use punchwire_linux::status::{Counters, Info, Mode, Publisher, State};
    use std::time::Duration;

    /// Stats events this many ticks apart make one `--stats` line.
    pub fn ticks_per_line(stats_ms: u64) -> u64 {
        stats_ms.div_ceil(1000).max(1)
    }

    /// The driver's stats interval: 1 s, or `--stats` split evenly into
    /// ticks of at most 1 s.
    pub fn tick_ms(stats_ms: Option<u64>) -> u64 {
        stats_ms.map_or(1000, |ms| (ms / ticks_per_line(ms)).max(1))
    }

    pub fn publisher(o: &Options) -> Publisher {
        let mut p = Publisher::new(
            Info {
                name: o
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("udp-{}", std::process::id())),
                mode: Mode::Udp,
                role: match o.local {
                    Local::Connect(_) => "connect",
                    Local::Listen(_) => "listen",
                }
                .to_string(),
                peer: format!("{}:{}", o.peer, o.udp_port),
                // Known once the peer is heard.
                protocol: None,
            },
            State::Punching,
        );
        // Two heartbeats missed (and a second of slack): peer silent.
        p.set_silence_threshold(Duration::from_millis(2 * u64::from(o.heartbeat_ms) + 1000));
        p
    }

    pub fn counters(s: &Snapshot) -> Counters {
        let heard = s.link.heartbeats_received;
        match (s.pw1, s.v012) {
            (Some(p), _) => Counters {
                rtt_us: p.srtt_us,
                bytes_sent: p.stream_bytes_sent,
                bytes_received: p.stream_bytes_received,
                retransmits: p.retransmits,
                heard: heard + p.packets_received,
            },
            (None, Some(v)) => Counters {
                rtt_us: v.srtt_us,
                bytes_sent: v.payload_bytes_sent,
                bytes_received: v.payload_bytes_received,
                retransmits: v.retransmits,
                heard: heard + v.datagrams_received,
            },
            _ => Counters {
                heard,
                ..Counters::default()
            },
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn stats_ticks() {
            assert_eq!((tick_ms(None), ticks_per_line(1000)), (1000, 1));
            assert_eq!((tick_ms(Some(500)), ticks_per_line(500)), (500, 1));
            assert_eq!((tick_ms(Some(5000)), ticks_per_line(5000)), (1000, 5));
            assert_eq!((tick_ms(Some(2500)), ticks_per_line(2500)), (833, 3));
            assert_eq!(tick_ms(Some(1)), 1);
        }
    }
}
