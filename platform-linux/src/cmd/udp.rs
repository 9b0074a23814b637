//! `punchwire udp`: UDP hole punch + a TCP-over-UDP tunnel, wire-compatible
//! with udphp.py v0.12.

use std::net::{Ipv4Addr, SocketAddrV4};

use lexopt::prelude::*;
use log::{debug, info, warn};
use punchwire_core::frame::MAX_PAYLOAD;
use punchwire_core::time::Milliseconds;
use punchwire_core::tunnel::{
    self, Config, Endpoint, Flow, Local, Stats, TunnelConfig, TunnelError, TunnelEvent,
};

use crate::args::{UsageError, parse_seconds_ms, port, text, ttl, usage};
use punchwire_linux::clock;
use punchwire_linux::net::LinuxNet;
use punchwire_linux::status;

/// Help text.
pub const HELP: &str = "\
Punch a UDP hole to PEER_IP and carry local TCP sessions through it, speaking
udphp.py v0.12's format (either side may be udphp.py).

Usage: punchwire udp -c PORT PEER_IP [UDP_PORT] [OPTIONS]
       punchwire udp -l PORT PEER_IP [UDP_PORT] [OPTIONS]

  -c PORT          the 'server' side: connect to the local TCP service on
                   127.0.0.1:PORT for each session
  -l PORT          the 'client' side: listen on 127.0.0.1:PORT and carry each
                   accepted connection, one after another
  UDP_PORT         UDP port on both sides [default: 5555]

Options:
  -d, --debug            debug log on stderr (as udphp.py's -d)
  --heartbeat S          seconds between heartbeats [default: 15; OpenWrt
                         forgets an unanswered UDP mapping after 60 s]
  --silence S            give up after hearing nothing for S seconds
                         [default: 120]
  --frame-size N         largest payload per datagram, 1-40000 [default: 1400:
                         fits a 1500-byte MTU, no IP fragmentation]
  --stats S              print a statistics line on stderr every S seconds
  --sessions N           exit 0 after N sessions [default: run until the peer
                         falls silent]
  --ttl N                TTL of the first punch heartbeats, 0 to disable
                         [default: 3]
  --no-compress          send every frame uncompressed
  --bind-port N          bind this UDP port instead of UDP_PORT (still send to
                         PEER_IP:UDP_PORT): for both sides on one machine
  --name NAME            name in `punchwire status` [default: udp-PID]
  -v, --verbose          more log lines; -q, --quiet: errors only
  -h, --help             print this help

Only datagrams from PEER_IP are used (the peer's port is learned from them,
in case its router had to move it); others are counted and dropped, as are
malformed ones. Exit codes: 0 the requested sessions are done; 1 I/O error;
2 bad arguments; 3 the UDP port cannot be bound; 4 the peer fell silent;
6 the local port cannot be listened on.
";

/// Exit codes (documented in [`HELP`]).
mod exit {
    pub const OK: u8 = 0;
    pub const IO: u8 = 1;
    pub const UDP_BIND: u8 = 3;
    pub const SILENT: u8 = 4;
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
    ttl: u8,
    compress: bool,
    name: Option<String>,
    verbosity: i32,
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
        ttl: 3,
        compress: true,
        name: None,
        verbosity: 0,
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
                o.ttl = ttl("--ttl", &v)?;
            }
            Long("no-compress") => o.compress = false,
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

fn stats_line(s: &Stats) -> String {
    let rtt = s
        .srtt_us
        .map(|us| format!("{:.1} ms", us as f64 / 1000.0))
        .unwrap_or_else(|| "-".into());
    format!(
        "stats: sent {} B in {} frames ({} retransmits), received {} B in {} frames, compression {:.2}, rtt {rtt}, bad datagrams {}",
        s.payload_bytes_sent,
        s.data_frames_sent,
        s.retransmits,
        s.payload_bytes_received,
        s.data_frames_received,
        s.compression_ratio(),
        s.bad.total()
    )
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
    let mut ep: Box<Endpoint<1, MAX_PAYLOAD>> = Box::new(Endpoint::new(config, clock::now()));
    let cfg = TunnelConfig {
        peer: SocketAddrV4::new(o.peer, o.udp_port),
        udp_port: o.bind_port.unwrap_or(o.udp_port),
        local: o.local,
        prime_ttl: o.ttl,
        normal_ttl: 64,
        stats_every_ms: Some(status_hook::tick_ms(o.stats_ms)),
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
    let mut foreign = 0u64;
    let result = tunnel::run(&mut net, &mut *ep, cfg, |event| match event {
        TunnelEvent::PeerHeard(a) => {
            status.set_state(status::State::Connected);
            info!("peer heard from {a}: the hole is open");
            Flow::Continue
        }
        TunnelEvent::PeerMoved(a) => {
            warn!("peer's datagrams now come from {a}; answering there");
            Flow::Continue
        }
        TunnelEvent::PeerSilent => {
            status.set_state(status::State::PeerSilent);
            log::error!("peer silent for {} s: giving up", o.silence_ms / 1000);
            code = exit::SILENT;
            Flow::Stop
        }
        TunnelEvent::SessionStarted(n) => {
            status.session_started();
            info!("session {n} started");
            Flow::Continue
        }
        TunnelEvent::SessionEnded(n) => {
            status.session_ended();
            info!("session {n} ended");
            done_sessions += 1;
            if o.sessions.is_some_and(|want| done_sessions >= want) {
                Flow::Stop
            } else {
                Flow::Continue
            }
        }
        TunnelEvent::LocalConnectFailed(e) => {
            warn!("local service refused ({e}); retrying every second");
            Flow::Continue
        }
        TunnelEvent::BadDatagram(e) => {
            debug!("dropped a datagram from the peer: {e}");
            Flow::Continue
        }
        TunnelEvent::Foreign(a) => {
            foreign += 1;
            if foreign.is_power_of_two() {
                warn!(
                    "ignored {foreign} datagram(s) from addresses other than the peer (latest {a})"
                );
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
    });
    match result {
        Ok(()) => {
            info!("{}", stats_line(&ep.stats()));
            Ok(code)
        }
        Err(e) => {
            log::error!("{e}");
            Ok(match e {
                TunnelError::UdpBind(_) => exit::UDP_BIND,
                TunnelError::Listen(_) => exit::LOCAL,
                TunnelError::Wait(_) => exit::IO,
            })
        }
    }
}

// ---- status hook (`punchwire status`) --------------------------------------
// Everything the udp command needs for `punchwire status`, kept apart so it
// can move into the new tunnel code: the publisher (created before the
// tunnel runs: state punching), set_state on PeerHeard (connected) and
// PeerSilent, session_started/ended on the session events, and
// update_stats on every Stats event. The driver's Stats event is asked for
// at least once a second; the `--stats` log line keeps its own interval.
mod status_hook {
    use super::Options;
    use punchwire_core::tunnel::{Local, Stats};
    use punchwire_linux::status::{Counters, Info, Mode, Protocol, Publisher, State};
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
                protocol: Some(Protocol::V012),
            },
            State::Punching,
        );
        // Two heartbeats missed (and a second of slack): peer silent.
        p.set_silence_threshold(Duration::from_millis(2 * u64::from(o.heartbeat_ms) + 1000));
        p
    }

    pub fn counters(s: &Stats) -> Counters {
        Counters {
            rtt_us: s.srtt_us,
            bytes_sent: s.payload_bytes_sent,
            bytes_received: s.payload_bytes_received,
            retransmits: s.retransmits,
            heard: s.datagrams_received,
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
