//! [`learn`]: one [`PathProbe`] run to its decision over a platform.

use super::net::IcmpProbe;
use super::{Outcome, PathProbe, ProbeConfig};
use crate::net::{NetResult, Wait};

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

fn run<N: IcmpProbe + Wait>(
    net: &mut N,
    socket: N::ProbeSocket,
    machine: &mut PathProbe,
) -> NetResult<Outcome> {
    let mut now = net.now();
    loop {
        while let Some(p) = machine.poll_transmit(now) {
            let _ = net.probe_send(socket, p.ttl, p.to, PROBE_PAYLOAD);
        }
        while let Ok(r) = net.probe_recv_error(socket) {
            machine.handle_icmp(now, r.to, r.offender, r.kind);
        }
        if let Some(o) = machine.result() {
            return Ok(o);
        }
        // After draining, the machine is either decided or waiting for its
        // round to end; an error other than WouldBlock also ends up here.
        now = net.wait(machine.poll_timeout())?;
        machine.handle_timeout(now);
    }
}
