//! Probes the path to a peer and prints the prime TTL it learned — the lab
//! check of `punchwire_linux::probe` (`tests/lab/scenarios/15-pathprobe.sh`).
//!
//! ```sh
//! cargo build --release -p punchwire-linux --example pathprobe
//! target/release/examples/pathprobe 198.51.100.2
//! ```
//!
//! Prints one line per answered hop (`hop 2 203.0.113.1 public`) and a last
//! lines: the outcome with the time it took, and `ttl N reason R`; exits 0, or 1 when no probe socket can be opened.

use std::net::Ipv4Addr;
use std::process::ExitCode;

use punchwire_core::pathprobe::{self, Hop, ProbeConfig, Reason, is_public};
use punchwire_linux::probe::LinuxProbe;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(peer) = args.next().and_then(|a| a.parse::<Ipv4Addr>().ok()) else {
        eprintln!("usage: pathprobe PEER_IPV4 [MAX_TTL]");
        return ExitCode::from(2);
    };
    let mut cfg = ProbeConfig::new(peer);
    if let Some(n) = args.next().and_then(|a| a.parse().ok()) {
        cfg.max_ttl = n;
    }
    let mut net = LinuxProbe::new();
    let mut machine = pathprobe::PathProbe::new(cfg);
    let started = std::time::Instant::now();
    let outcome = match pathprobe::learn_with(&mut net, &mut machine) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("pathprobe: {e}");
            return ExitCode::from(1);
        }
    };
    for t in 1..=machine.config().max_ttl {
        match machine.hop(t) {
            Hop::Silent => println!("hop {t} *"),
            Hop::Router(ip) => {
                let class = if is_public(ip) { "public" } else { "private" };
                println!("hop {t} {ip} {class}");
            }
            Hop::Peer => println!("hop {t} {peer} peer"),
            Hop::Unreachable(ip) => println!("hop {t} {ip} unreachable"),
        }
    }
    let reason = match outcome.reason {
        Reason::FirstPublicRouter(_) => "first-public-router",
        Reason::BelowPeer { .. } => "below-peer",
        Reason::Silent => "silent",
    };
    println!("{outcome}, decided in {} ms", started.elapsed().as_millis());
    println!("ttl {} reason {reason}", outcome.ttl);
    ExitCode::SUCCESS
}
