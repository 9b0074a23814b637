//! [`learn`]: one [`PathProbe`] run to its decision over a platform.

use super::net::IcmpProbe;
use super::{Outcome, PathProbe, Probe, ProbeConfig};
use crate::net::{NetError, NetResult, Wait};
use crate::time::{self, Instant};

/// The payload of every probe: none. An 8-byte UDP datagram fits whole in
/// the 8 bytes past the IP header that RFC 792 routers quote, so a stack
/// that checks the quoted datagram (smoltcp's ICMP socket verifies its UDP
/// checksum) still matches the error to the probe.
pub const PROBE_PAYLOAD: &[u8] = b"";

/// Probes the path to `cfg.peer` and returns the decision. Blocks for at
/// most `rounds × round_ms` (750 ms by default), usually one round trip to
/// the first public router. Fails only when no probe socket can be opened;
/// a send that fails counts as a silent hop.
pub fn learn<N: IcmpProbe + Wait>(net: &mut N, cfg: ProbeConfig) -> NetResult<Outcome> {
    learn_with(net, &mut PathProbe::new(cfg))
}

/// [`learn`] with a machine the caller keeps, to read its hops afterwards.
pub fn learn_with<N: IcmpProbe + Wait>(net: &mut N, machine: &mut PathProbe) -> NetResult<Outcome> {
    let socket = net.probe_open()?;
    let outcome = run(net, socket, machine);
    net.probe_close(socket);
    outcome
}

/// A probe the platform could not take yet is retried this long...
const SEND_RETRY_MS: u64 = 50;
/// ...and the first one longer: smoltcp holds a datagram while it resolves
/// the next hop's MAC, and retries a lost ARP request only after 1 s.
const FIRST_SEND_RETRY_MS: u64 = 1100;

fn run<N: IcmpProbe + Wait>(
    net: &mut N,
    socket: N::ProbeSocket,
    machine: &mut PathProbe,
) -> NetResult<Outcome> {
    let mut now = net.now();
    // A probe refused with WouldBlock (smoltcp: the previous one still
    // queued) and when it was first due.
    let mut pending: Option<(Probe, Instant)> = None;
    let mut sent_any = false;
    loop {
        loop {
            let (p, due) = match pending.take() {
                Some(p) => p,
                None => match machine.poll_transmit(now) {
                    Some(p) => (p, now),
                    None => break,
                },
            };
            // Any other failure costs the hop one answer.
            let window = if sent_any {
                SEND_RETRY_MS
            } else {
                FIRST_SEND_RETRY_MS
            };
            match net.probe_send(socket, p.ttl, p.to, PROBE_PAYLOAD) {
                Err(NetError::WouldBlock) if time::micros_between(due, now) < window * 1000 => {
                    pending = Some((p, due));
                    break;
                }
                Ok(()) => sent_any = true,
                Err(_) => {}
            }
        }
        while let Ok(r) = net.probe_recv_error(socket) {
            machine.handle_icmp(now, r.to, r.offender, r.kind);
        }
        if let Some(o) = machine.result() {
            return Ok(o);
        }
        // After draining, the machine is decided, waiting for its round to
        // end, or holding back a probe the platform could not take.
        let retry = pending.map(|_| time::add_millis(now, 1));
        now = net.wait(time::earliest(retry, machine.poll_timeout()))?;
        machine.handle_timeout(now);
    }
}
