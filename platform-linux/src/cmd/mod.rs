//! The subcommands of the `punchwire` binary.

pub mod firmware_config;
pub mod schedule;
pub mod status;
pub mod tcp;
pub mod udp;

/// The prime TTL for a punch towards `peer`, learned from the path
/// (`core::pathprobe` over the Linux ICMP probe socket); the default when
/// probing is impossible. Logged at `-v`.
pub fn learn_prime_ttl(peer: std::net::Ipv4Addr, avoid_port: Option<u16>) -> u8 {
    use punchwire_core::pathprobe::{self, ProbeConfig};
    let mut cfg = ProbeConfig::new(peer);
    cfg.avoid_port = avoid_port;
    let started = std::time::Instant::now();
    match pathprobe::learn(&mut punchwire_linux::probe::LinuxProbe::new(), cfg) {
        Ok(o) => {
            log::debug!(
                "path to {peer}: {o}, in {} ms",
                started.elapsed().as_millis()
            );
            o.ttl
        }
        Err(e) => {
            log::debug!(
                "path to {peer}: cannot probe ({e}); prime TTL {}",
                pathprobe::FALLBACK_TTL
            );
            pathprobe::FALLBACK_TTL
        }
    }
}
