//! Birthday punching on real sockets — the lab check of `core::birthday`
//! (`tests/lab/scenarios/16-birthday-*.sh`), run the way the tunnel driver
//! would run it beside the tunnel.
//!
//! ```sh
//! cargo build --release -p punchwire-linux --example birthday
//! target/release/examples/birthday 198.51.100.2     # on both sides
//! ```
//!
//! Binds UDP 5555, sends the ordinary punch's heartbeat (`PWB1 …`) to
//! `PEER:5555` every 200 ms and runs the birthday machine beside it. Once a
//! side has a winner it sends `PWB1 confirm` on that path every 100 ms and
//! waits for the peer's datagram on it. Prints `winner …` and
//! `confirmed after MS ms`; exits 0 when confirmed, 4 when it gave up, 5
//! when it won but the path never carried the peer's datagram, 2 for bad
//! arguments. Options: `--k N` extra sockets (256), `--port P` (5555),
//! `--extra-ttl N` (the extra sockets' TTL; default: the prime TTL learned
//! by `core::pathprobe` before starting; 0: the system's).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::ExitCode;

use punchwire_core::birthday::{Birthday, BirthdayConfig, BirthdaySockets, Finish, Outcome};
use punchwire_core::net::{NetError, Udp, Wait};
use punchwire_core::pathprobe::{self, ProbeConfig};
use punchwire_core::time::{self, Instant, UnixClock};
use punchwire_linux::clock;
use punchwire_linux::net::{Handle, LinuxNet};
use punchwire_linux::probe::LinuxProbe;

const MAGIC: &[u8] = b"PWB1";

fn well_formed(d: &[u8]) -> bool {
    d.starts_with(MAGIC)
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut peer_ip = None;
    let mut k = 256u16;
    let mut port = 5555u16;
    let mut extra_ttl: Option<u8> = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--k" => k = args.next().and_then(|v| v.parse().ok()).unwrap_or(256),
            "--port" => port = args.next().and_then(|v| v.parse().ok()).unwrap_or(5555),
            "--extra-ttl" => extra_ttl = args.next().and_then(|v| v.parse().ok()),
            _ => peer_ip = a.parse::<Ipv4Addr>().ok(),
        }
    }
    let Some(peer_ip) = peer_ip else {
        eprintln!("usage: birthday PEER_IPV4 [--k N] [--port P] [--extra-ttl N]");
        return ExitCode::from(2);
    };
    match run(SocketAddrV4::new(peer_ip, port), port, k, extra_ttl) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("birthday: {e}");
            ExitCode::from(1)
        }
    }
}

fn ms_since(start: Instant, now: Instant) -> u64 {
    time::micros_between(start, now) / 1000
}

fn run(peer: SocketAddrV4, port: u16, k: u16, extra_ttl: Option<u8>) -> Result<u8, NetError> {
    // The extra sockets send at the prime TTL, learned from the path
    // unless given (0: the system's TTL).
    let extra_ttl = match extra_ttl {
        Some(t) => t,
        None => {
            let mut cfg = ProbeConfig::new(*peer.ip());
            cfg.avoid_port = Some(port);
            let o = pathprobe::learn(&mut LinuxProbe::new(), cfg)?;
            eprintln!("birthday: {o}");
            o.ttl
        }
    };
    let mut net = LinuxNet::new().map_err(|e| NetError::Other(e.raw_os_error().unwrap_or(0)))?;
    let main = net.udp_bind(port)?;
    let start = net.now();
    let unix = UnixClock::new(start, clock::unix_now(0));
    let mut cfg = BirthdayConfig::new(peer);
    cfg.extra_sockets = k;
    let seed = u64::from(std::process::id()) ^ unix.unix_micros_at(start) as u64;
    let mut m = Birthday::new(cfg, start, unix, seed);
    let mut extras: BirthdaySockets<Handle, 256> = BirthdaySockets::new();
    if extra_ttl > 0 {
        eprintln!("birthday: extra sockets send at TTL {extra_ttl}");
        extras = extras.with_ttl(extra_ttl, 64);
    }
    let mut buf = [0u8; 2048];
    let mut now = start;
    let mut next_heartbeat = start;
    let mut escalated = false;
    let finish = loop {
        if time::micros(now) >= time::micros(next_heartbeat) {
            let _ = net.udp_send_to(main, b"PWB1 heartbeat", peer);
            next_heartbeat = time::add_millis(now, 200);
        }
        while let Ok((n, from)) = net.udp_recv_from(main, &mut buf) {
            m.handle_datagram(
                now,
                punchwire_core::birthday::Socket::Main,
                from,
                well_formed(&buf[..n]),
            );
        }
        extras.read(&mut net, &mut m, now, &mut buf, well_formed);
        if let Some(f) = extras.act(&mut net, &mut m, main, now, b"PWB1 probe") {
            break f;
        }
        if m.escalated() && !escalated {
            escalated = true;
            eprintln!(
                "birthday: escalating at {} ms (round 1)",
                ms_since(start, now)
            );
        }
        if m.result() == Some(Outcome::NotNeeded) {
            break Finish::Winner {
                socket: main,
                which: punchwire_core::birthday::Socket::Main,
                peer,
            };
        }
        let deadline = time::earliest(m.poll_timeout(), Some(next_heartbeat));
        now = net.wait(deadline)?;
        m.handle_timeout(now);
    };
    let s = m.stats();
    eprintln!(
        "birthday: rounds {} opened {} (failed {}) extra datagrams {} probes {}",
        s.rounds, s.opened, s.open_failed, s.extra_sent, s.probes_sent
    );
    let (socket, mut peer) = match finish {
        Finish::GaveUp => {
            eprintln!("birthday: gave up after {} ms", ms_since(start, now));
            return Ok(4);
        }
        Finish::Winner {
            socket,
            which,
            peer,
        } => {
            let outcome = m.result().map(|o| o.to_string()).unwrap_or_default();
            println!(
                "winner {which:?} peer {peer} after {} ms: {outcome}",
                ms_since(start, now)
            );
            (socket, peer)
        }
    };
    // Confirm the path both ways: keep talking on it; done once the peer's
    // datagram arrived on it and we have talked another second.
    let won_at = now;
    let mut confirmed_at: Option<Instant> = None;
    let mut next_send = now;
    loop {
        if time::micros(now) >= time::micros(next_send) {
            let _ = net.udp_send_to(socket, b"PWB1 confirm", peer);
            next_send = time::add_millis(now, 100);
        }
        while let Ok((n, from)) = net.udp_recv_from(socket, &mut buf) {
            if from.ip() == peer.ip() && well_formed(&buf[..n]) {
                peer = from; // follow the port the peer's datagrams use
                if confirmed_at.is_none() {
                    confirmed_at = Some(now);
                    println!("confirmed after {} ms (peer {peer})", ms_since(start, now));
                }
            }
        }
        if let Some(c) = confirmed_at
            && ms_since(c, now) >= 1000
        {
            return Ok(0);
        }
        if confirmed_at.is_none() && ms_since(won_at, now) >= 5000 {
            eprintln!("birthday: won but the path carried nothing in 5 s");
            return Ok(5);
        }
        now = net.wait(Some(next_send))?;
    }
}
