//! Two birthday machines on a virtual clock behind simulated NATs: the
//! probability model of the module docs, checked end to end.
//!
//! Each side is a host behind one NAT that behaves like Linux conntrack
//! masquerading: an outbound datagram from local port `lp` to remote `r`
//! gets a mapping `(lp, r) → external port` — `lp` itself when the NAT
//! preserves ports (OpenWrt), a fresh random port when it randomises
//! (`masquerade fully-random`, many carrier NATs) — and an inbound datagram
//! is let in only if it comes from exactly the remote of a mapping on its
//! external port (port-restricted filtering). Beside the machines, each
//! main socket sends the ordinary punch's heartbeat to the peer's known
//! port every 200 ms, and after winning a side sends its heartbeats from
//! the winning socket to the winning address, as the tunnel would.
extern crate std;

use std::collections::{BinaryHeap, HashMap};
use std::vec::Vec;

use super::*;
use crate::time::{at_micros, micros};

pub const KNOWN_PORT: u16 = 5555;
const HEARTBEAT_US: u64 = 200_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nat {
    Preserving,
    Random,
}

struct Side {
    m: Birthday,
    nat: Nat,
    ip: Ipv4Addr,
    started: u64,
    /// (local port, remote) → external port.
    out: HashMap<(u16, SocketAddrV4), u16>,
    /// (external port, remote) → local port.
    inb: HashMap<(u16, SocketAddrV4), u16>,
    /// Local port of each open extra socket.
    extra: HashMap<u16, u16>,
    next_local: u16,
    rng: Rng,
    won: Option<(Socket, SocketAddrV4, u64)>,
    next_heartbeat: u64,
    max_open: usize,
}

use core::net::Ipv4Addr;

impl Side {
    fn local_port(&self, s: Socket) -> Option<u16> {
        match s {
            Socket::Main => Some(KNOWN_PORT),
            Socket::Extra(i) => self.extra.get(&i).copied(),
        }
    }

    /// The NAT's external port for a datagram from `lp` to `to`.
    fn map_out(&mut self, lp: u16, to: SocketAddrV4) -> u16 {
        if let Some(&x) = self.out.get(&(lp, to)) {
            return x;
        }
        let x = match self.nat {
            Nat::Preserving => lp,
            Nat::Random => loop {
                let x = 1024 + (self.rng.next() % 64512) as u16;
                if !self.inb.contains_key(&(x, to)) {
                    break x;
                }
            },
        };
        self.out.insert((lp, to), x);
        self.inb.insert((x, to), lp);
        x
    }
}

#[derive(PartialEq, Eq)]
struct InFlight {
    at: u64,
    order: u64,
    to_b: bool,
    from: SocketAddrV4,
    to_port: u16,
}

impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        (other.at, other.order).cmp(&(self.at, self.order))
    }
}

impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// What one simulated run gave.
#[derive(Debug)]
pub struct SimResult {
    pub a: Option<Outcome>,
    pub b: Option<Outcome>,
    /// Both sides won, on matching addresses: µs after the later start.
    pub connected_after_us: Option<u64>,
    /// Both sides finished (won or gave up): µs after the later start.
    pub finished_after_us: Option<u64>,
    /// Birthday datagrams sent per side (opens + probes).
    pub sent: [u64; 2],
    /// Most extra sockets open at once on either side.
    pub max_open: usize,
    /// Most birthday datagrams either side sent in any one second.
    pub max_per_second: u64,
    /// Extra sockets left open at the end.
    pub left_open: usize,
}

/// Runs both sides until both are finished (or `limit_us` passes). B
/// starts `offset_us` after A; the shared unix clock reads `unix0_ms` at
/// time 0 on both sides.
pub fn simulate(
    nats: [Nat; 2],
    cfg_of: impl Fn(SocketAddrV4) -> BirthdayConfig,
    seed: u64,
    offset_us: u64,
    unix0_ms: i64,
    delay_us: u64,
    limit_us: u64,
) -> SimResult {
    let ips = [
        Ipv4Addr::new(203, 0, 113, 2),
        Ipv4Addr::new(198, 51, 100, 2),
    ];
    let clock = UnixClock::from_micros(at_micros(0), unix0_ms * 1000);
    let starts = [0, offset_us];
    let mut sides: Vec<Side> = (0..2)
        .map(|k| {
            let peer = SocketAddrV4::new(ips[1 - k], KNOWN_PORT);
            Side {
                m: Birthday::new(
                    cfg_of(peer),
                    at_micros(starts[k]),
                    clock,
                    seed.wrapping_mul(2).wrapping_add(k as u64),
                ),
                nat: nats[k],
                ip: ips[k],
                started: starts[k],
                out: HashMap::new(),
                inb: HashMap::new(),
                extra: HashMap::new(),
                next_local: 40000,
                rng: Rng(seed ^ (0xA5A5 + k as u64)),
                won: None,
                next_heartbeat: starts[k],
                max_open: 0,
            }
        })
        .collect();
    let mut wire: BinaryHeap<InFlight> = BinaryHeap::new();
    let mut order = 0u64;
    let mut per_second: HashMap<(usize, u64), u64> = HashMap::new();
    let later = offset_us;
    let mut t = 0u64;
    let mut finished_at = None;
    let mut connected_at = None;

    let send = |side: &mut Side,
                k: usize,
                from: Socket,
                to: SocketAddrV4,
                t: u64,
                wire: &mut BinaryHeap<InFlight>,
                order: &mut u64| {
        let Some(lp) = side.local_port(from) else {
            return;
        };
        let x = side.map_out(lp, to);
        *order += 1;
        wire.push(InFlight {
            at: t + delay_us,
            order: *order,
            to_b: k == 0,
            from: SocketAddrV4::new(side.ip, x),
            to_port: to.port(),
        });
    };

    while t <= limit_us {
        // Arrivals due now.
        while wire.peek().is_some_and(|d| d.at <= t) {
            let d = wire.pop().unwrap();
            let k = usize::from(d.to_b);
            let side = &mut sides[k];
            if t < side.started {
                continue;
            }
            let Some(&lp) = side.inb.get(&(d.to_port, d.from)) else {
                continue; // filtered by the NAT
            };
            let on = if lp == KNOWN_PORT {
                Socket::Main
            } else if let Some((&i, _)) = side.extra.iter().find(|(_, p)| **p == lp) {
                Socket::Extra(i)
            } else {
                continue; // a closed socket
            };
            side.m.handle_datagram(at_micros(t), on, d.from, true);
            // The tunnel follows a won hole's well-formed datagrams.
            if let Some((s, _, at)) = side.won
                && s == on
            {
                side.won = Some((s, d.from, at));
            }
        }
        for (k, side) in sides.iter_mut().enumerate() {
            if t < side.started {
                continue;
            }
            side.m.handle_timeout(at_micros(t));
            while let Some(a) = side.m.poll_action(at_micros(t)) {
                match a {
                    Action::Open(i) => {
                        side.next_local = side.next_local.wrapping_add(1).max(40000);
                        side.extra.insert(i, side.next_local);
                        side.max_open = side.max_open.max(side.extra.len());
                    }
                    Action::Send { from, to } => {
                        *per_second.entry((k, t / 1_000_000)).or_default() += 1;
                        send(side, k, from, to, t, &mut wire, &mut order);
                    }
                    Action::Close(i) => {
                        side.extra.remove(&i);
                    }
                    Action::Winner { socket, peer } => side.won = Some((socket, peer, t)),
                    Action::GaveUp => {}
                }
            }
            if let Some(Outcome::NotNeeded) = side.m.result()
                && side.won.is_none()
            {
                side.won = Some((Socket::Main, side.m.config().peer, t));
            }
            // Heartbeats: the ordinary punch, then the tunnel on the hole.
            if t >= side.next_heartbeat {
                side.next_heartbeat = t + HEARTBEAT_US;
                let (from, to) = match side.won {
                    Some((s, p, _)) => (s, p),
                    None => (Socket::Main, side.m.config().peer),
                };
                send(side, k, from, to, t, &mut wire, &mut order);
            }
        }
        // Connected: each side's peer address is the other's external
        // address of its winning socket.
        if connected_at.is_none()
            && let (Some((sa, pa, _)), Some((sb, pb, _))) = (sides[0].won, sides[1].won)
        {
            let ext = |side: &Side, s: Socket, peer: SocketAddrV4| {
                side.local_port(s)
                    .and_then(|lp| side.out.get(&(lp, peer)).copied())
                    .map(|x| SocketAddrV4::new(side.ip, x))
            };
            if ext(&sides[0], sa, pa) == Some(pb) && ext(&sides[1], sb, pb) == Some(pa) {
                connected_at = Some(t.saturating_sub(later));
            }
        }
        let done = sides
            .iter()
            .all(|s| s.m.result().is_some() && s.m.poll_timeout().is_none());
        if done && finished_at.is_none() {
            finished_at = Some(t.saturating_sub(later));
        }
        if done && (connected_at.is_some() || wire.is_empty()) {
            break;
        }
        // Step to the earliest wake-up.
        let mut next = u64::MAX;
        if let Some(d) = wire.peek() {
            next = next.min(d.at);
        }
        for s in &sides {
            if t < s.started {
                next = next.min(s.started);
                continue;
            }
            if let Some(w) = s.m.poll_timeout() {
                next = next.min(micros(w));
            }
            if s.m.result().is_none() || connected_at.is_none() {
                next = next.min(s.next_heartbeat);
            }
        }
        if next == u64::MAX {
            break;
        }
        t = next.max(t + 1);
    }
    SimResult {
        a: sides[0].m.result(),
        b: sides[1].m.result(),
        connected_after_us: connected_at,
        finished_after_us: finished_at,
        sent: [0, 1].map(|k| {
            let s = sides[k].m.stats();
            u64::from(s.extra_sent + s.probes_sent)
        }),
        max_open: sides.iter().map(|s| s.max_open).max().unwrap_or(0),
        max_per_second: per_second.values().copied().max().unwrap_or(0),
        left_open: sides
            .iter()
            .map(|s| {
                let winner = matches!(s.won, Some((Socket::Extra(_), _, _)));
                s.extra.len() - usize::from(winner)
            })
            .sum(),
    }
}
