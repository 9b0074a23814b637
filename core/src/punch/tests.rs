extern crate std;

use super::*;
use crate::net::ConnectStatus;
use crate::schedule::{BucketPorts, UnixTime, bucket_start};
use crate::time::at_millis;
use std::collections::BTreeSet;
use std::vec::Vec as StdVec;

const PEER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

/// Middle of bucket 40476190 (1700000000 is 22 s into it... it starts at
/// 1699999978): 21 s in, so ±20 s stays inside.
fn mid_bucket() -> UnixTime {
    bucket_start(40_476_190).offset_millis(21_000)
}

/// A machine without re-arm spread, so tests can name exact times.
fn machine_at(unix: UnixTime, mut config: PunchConfig) -> PunchMachine {
    config.jitter_percent = 0;
    PunchMachine::new(config, at_millis(0), unix).unwrap()
}

/// Reports a status for the port's current attempt.
fn st(m: &mut PunchMachine, port: u16, status: ConnectStatus, now: crate::time::Instant) {
    let attempt = m.slot(port).map_or(0, |s| s.attempt);
    m.handle_status(port, attempt, status, now);
}

/// Reports a bind error for the port's current attempt.
fn bind_err(m: &mut PunchMachine, port: u16, error: NetError, now: crate::time::Instant) {
    let attempt = m.slot(port).map_or(0, |s| s.attempt);
    m.handle_bind_error(port, attempt, error, now);
}

fn drain(m: &mut PunchMachine) -> StdVec<Action> {
    core::iter::from_fn(|| m.poll_action()).collect()
}

fn events(m: &mut PunchMachine) -> StdVec<Event> {
    core::iter::from_fn(|| m.poll_event()).collect()
}

fn connects(actions: &[Action]) -> StdVec<(u16, u8)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Connect {
                port, prime_ttl, ..
            } => Some((*port, *prime_ttl)),
            _ => None,
        })
        .collect()
}

/// Ports of the `Connect` actions queued so far, in order.
fn connect_ports(m: &mut PunchMachine) -> StdVec<u16> {
    connects(&drain(m)).into_iter().map(|(p, _)| p).collect()
}

fn ports_of(b: i64) -> BTreeSet<u16> {
    BucketPorts::new(b)
        .ports
        .as_slice()
        .iter()
        .copied()
        .collect()
}

#[test]
fn sprays_at_once_priming_every_fire() {
    let mut m = machine_at(mid_bucket(), PunchConfig::new(PEER, 1));
    let first = drain(&mut m);
    let c = connects(&first);
    assert_eq!(c.len(), 16, "one bucket in the middle of a window");
    assert!(c.iter().all(|&(_, prime)| prime == DEFAULT_PRIME_TTL));
    let got: BTreeSet<u16> = c.iter().map(|&(p, _)| p).collect();
    assert_eq!(got, ports_of(40_476_190));
    for a in &first {
        if let Action::Connect { ttl, .. } = a {
            assert_eq!(*ttl, DEFAULT_NORMAL_TTL);
        }
    }
    // A fired SYN is left to the stack: no more connects while pending.
    for p in &got {
        st(&mut m, *p, ConnectStatus::Pending, at_millis(60));
    }
    m.handle_timeout(at_millis(100));
    // (Under a second: 21 s into the window, ±20 s reaches the next bucket
    // after one more second.)
    m.handle_timeout(at_millis(900));
    assert!(connects(&drain(&mut m)).is_empty());
}

/// Unix instants (ms) at which each port is re-armed after every port
/// failed at monotonic `fail_ms`, for a machine started at monotonic
/// `start_ms` when its clock read `unix`.
fn rearm_instants(
    unix: UnixTime,
    start_ms: u64,
    fail_ms: u64,
) -> std::collections::BTreeMap<u16, i64> {
    let mut cfg = PunchConfig::new(PEER, 1234);
    cfg.max_clock_error_ms = 0;
    let mut m = PunchMachine::new(cfg, at_millis(start_ms), unix).unwrap();
    let ports: StdVec<u16> = connect_ports(&mut m);
    for p in &ports {
        st(
            &mut m,
            *p,
            ConnectStatus::Failed(NetError::Refused),
            at_millis(fail_ms),
        );
    }
    let mut at = std::collections::BTreeMap::new();
    for t in fail_ms..=fail_ms + 200 {
        m.handle_timeout(at_millis(t));
        for (p, _) in connects(&drain(&mut m)) {
            let unix_ms = unix.as_millis() + (t - start_ms) as i64;
            at.entry(p).or_insert(unix_ms);
        }
    }
    at
}

#[test]
fn rearms_follow_clock_slots_spread_over_ports() {
    let unix = mid_bucket();
    let a = rearm_instants(unix, 0, 10);
    assert_eq!(a.len(), 16, "every port re-arms");
    let fail_unix = unix.as_millis() + 10;
    for (&p, &t) in &a {
        assert!(
            (fail_unix + 25..=fail_unix + 125).contains(&t),
            "port {p} at {t}"
        );
    }
    let distinct: BTreeSet<i64> = a.values().copied().collect();
    assert!(
        distinct.len() >= 8,
        "phases are spread over the ports: {a:?}"
    );
    // Another side with the same clock, started at another monotonic time
    // and failing at the same unix moment, re-arms every port at the very
    // same unix instants: the SYNs cross.
    let b = rearm_instants(unix.offset_millis(-3_000), 5_000, 8_010);
    assert_eq!(a, b);
    // A clock 1.234 s off gives unrelated phases.
    let c = rearm_instants(unix.offset_millis(1_234), 0, 10);
    assert_ne!(
        a.values().map(|t| t % 50).collect::<StdVec<_>>(),
        c.values().map(|t| (t - 1_234) % 50).collect::<StdVec<_>>()
    );
}

#[test]
fn without_priming_it_fires_straight_away() {
    let mut cfg = PunchConfig::new(PEER, 1);
    cfg.prime_ttl = 0;
    let mut m = machine_at(mid_bucket(), cfg);
    let c = connects(&drain(&mut m));
    assert_eq!(c.len(), 16);
    assert!(c.iter().all(|&(_, prime)| prime == 0));
}

#[test]
fn near_a_bucket_edge_it_sprays_both_buckets() {
    // 5 s before bucket 40476191 starts: ±20 s covers both.
    let t = bucket_start(40_476_191).offset_millis(-5_000);
    let mut m = machine_at(t, PunchConfig::new(PEER, 1));
    let got: BTreeSet<u16> = connect_ports(&mut m).into_iter().collect();
    let want: BTreeSet<u16> = ports_of(40_476_190)
        .union(&ports_of(40_476_191))
        .copied()
        .collect();
    assert_eq!(got, want);
    assert!(events(&mut m).contains(&Event::Buckets {
        first: 40_476_190,
        last: 40_476_191
    }));
}

#[test]
fn rolls_over_to_the_next_bucket_and_drops_the_old_one() {
    let start = mid_bucket(); // bucket 40476190, 21 s in
    let mut m = machine_at(start, PunchConfig::new(PEER, 1));
    drain(&mut m);
    let old = ports_of(40_476_190);
    let new = ports_of(40_476_191);
    // 22 s later the window [t-20, t+20] reaches bucket 40476191 (42 s wide).
    m.handle_timeout(at_millis(21_000));
    let a = drain(&mut m);
    let primed: BTreeSet<u16> = connects(&a)
        .into_iter()
        .filter(|(_, t)| *t == 3)
        .map(|(p, _)| p)
        .collect();
    let fresh: BTreeSet<u16> = new.difference(&old).copied().collect();
    assert!(fresh.is_subset(&primed), "new bucket's ports are armed");
    // 41 s later only the new bucket is a candidate; old ports are closed.
    m.handle_timeout(at_millis(42_000));
    let a = drain(&mut m);
    let closed: BTreeSet<u16> = a
        .iter()
        .filter_map(|a| {
            if let Action::Close { port } = a {
                Some(*port)
            } else {
                None
            }
        })
        .collect();
    let gone: BTreeSet<u16> = old.difference(&new).copied().collect();
    assert_eq!(closed, gone);
    assert!(events(&mut m).contains(&Event::Buckets {
        first: 40_476_191,
        last: 40_476_191
    }));
}

#[test]
fn a_refused_port_is_armed_again_one_interval_later() {
    let mut m = machine_at(mid_bucket(), PunchConfig::new(PEER, 1));
    let port = connects(&drain(&mut m))[0].0;
    st(
        &mut m,
        port,
        ConnectStatus::Failed(NetError::Refused),
        at_millis(70),
    );
    assert!(drain(&mut m).is_empty());
    assert!(events(&mut m).contains(&Event::Refused {
        port,
        error: NetError::Refused
    }));
    m.handle_timeout(at_millis(119));
    assert!(connects(&drain(&mut m)).is_empty());
    m.handle_timeout(at_millis(120));
    assert_eq!(connects(&drain(&mut m)), [(port, DEFAULT_PRIME_TTL)]);
    // A second refusal is not reported again (logs stay short) but re-arms.
    st(
        &mut m,
        port,
        ConnectStatus::Failed(NetError::Unreachable),
        at_millis(130),
    );
    assert!(events(&mut m).is_empty());
    m.handle_timeout(at_millis(180));
    assert_eq!(connects(&drain(&mut m)), [(port, DEFAULT_PRIME_TTL)]);
}

#[test]
fn stale_reports_and_connects_are_ignored() {
    let mut m = machine_at(mid_bucket(), PunchConfig::new(PEER, 1));
    let port = connects(&drain(&mut m))[0].0;
    let first = m.slot(port).unwrap().attempt;
    st(
        &mut m,
        port,
        ConnectStatus::Failed(NetError::Refused),
        at_millis(10),
    );
    m.handle_timeout(at_millis(60));
    let second = match &drain(&mut m)[..] {
        [Action::Connect { attempt, .. }] => *attempt,
        other => panic!("{other:?}"),
    };
    assert!(m.is_current(port, second) && !m.is_current(port, first));
    // A late report about the first socket changes nothing.
    m.handle_status(
        port,
        first,
        ConnectStatus::Failed(NetError::Refused),
        at_millis(61),
    );
    m.handle_status(port, first, ConnectStatus::Connected, at_millis(61));
    assert!(drain(&mut m).is_empty());
    assert_eq!(m.open_ports().count(), 0);
    // Once open, a queued connect for the port is stale.
    m.handle_status(port, second, ConnectStatus::Connected, at_millis(62));
    assert!(!m.is_current(port, second));
}

#[test]
fn never_writes_while_spraying() {
    let mut m = machine_at(mid_bucket(), PunchConfig::new(PEER, 1));
    let ports: StdVec<u16> = connect_ports(&mut m);
    for step in 1..200u64 {
        let now = at_millis(step * 25);
        m.handle_timeout(now);
        for (i, p) in ports.iter().enumerate() {
            if (step as usize + i).is_multiple_of(3) {
                st(&mut m, *p, ConnectStatus::Failed(NetError::Refused), now);
            }
        }
        for a in drain(&mut m) {
            assert!(
                matches!(a, Action::Connect { .. } | Action::Close { .. }),
                "{a:?}"
            );
        }
    }
}

#[test]
fn unbindable_ports_are_skipped_and_all_skipped_is_an_error() {
    let mut m = machine_at(mid_bucket(), PunchConfig::new(PEER, 1));
    let ports: StdVec<u16> = connect_ports(&mut m);
    bind_err(&mut m, ports[0], NetError::AddrInUse, at_millis(1));
    assert!(events(&mut m).contains(&Event::PortSkipped {
        port: ports[0],
        error: NetError::AddrInUse
    }));
    assert_eq!(m.outcome(), None);
    // The skipped port is never armed again.
    m.handle_timeout(at_millis(50));
    assert!(!connects(&drain(&mut m)).iter().any(|(p, _)| *p == ports[0]));
    for p in &ports[1..] {
        bind_err(&mut m, *p, NetError::AddrInUse, at_millis(60));
    }
    assert_eq!(m.outcome(), Some(Err(PunchError::NoBindablePort)));
}

#[test]
fn an_empty_socket_pool_rearms_instead_of_skipping() {
    let mut m = machine_at(mid_bucket(), PunchConfig::new(PEER, 1));
    let ports: StdVec<u16> = connect_ports(&mut m);
    for p in &ports {
        bind_err(&mut m, *p, NetError::NoBuffers, at_millis(1));
    }
    assert_eq!(m.outcome(), None);
    assert!(
        !events(&mut m)
            .iter()
            .any(|e| matches!(e, Event::PortSkipped { .. }))
    );
    m.handle_timeout(at_millis(51));
    let again: BTreeSet<u16> = connect_ports(&mut m).into_iter().collect();
    assert_eq!(again, ports.iter().copied().collect());
}

#[test]
fn times_out_and_closes_what_is_in_flight() {
    let mut cfg = PunchConfig::new(PEER, 1);
    cfg.timeout_ms = 3_000;
    // A narrower bound keeps one bucket for the whole three seconds.
    cfg.max_clock_error_ms = 10_000;
    let mut m = machine_at(mid_bucket(), cfg);
    drain(&mut m);
    m.handle_timeout(at_millis(2_999));
    assert_eq!(m.outcome(), None);
    drain(&mut m);
    m.handle_timeout(at_millis(3_000));
    assert_eq!(m.outcome(), Some(Err(PunchError::Timeout)));
    let closes = drain(&mut m)
        .iter()
        .filter(|a| matches!(a, Action::Close { .. }))
        .count();
    assert_eq!(closes, 16);
    assert_eq!(m.poll_timeout(), None);
}

#[test]
fn bad_config_is_refused() {
    let mut cfg = PunchConfig::new(PEER, 1);
    cfg.max_clock_error_ms = 63_000;
    assert_eq!(
        PunchMachine::new(cfg, at_millis(0), mid_bucket()).err(),
        Some(ConfigError::SkewBound)
    );
    let mut cfg = PunchConfig::new(PEER, 1);
    cfg.interval_ms = 0;
    assert_eq!(
        PunchMachine::new(cfg, at_millis(0), mid_bucket()).err(),
        Some(ConfigError::Interval)
    );
    let mut cfg = PunchConfig::new(PEER, 1);
    cfg.election = Election::PublicIp {
        mine: PEER,
        peer: PEER,
    };
    assert_eq!(
        PunchMachine::new(cfg, at_millis(0), mid_bucket()).err(),
        Some(ConfigError::SameAddress)
    );
}

// ---- election ---------------------------------------------------------

fn sent(actions: &[Action], port: u16) -> StdVec<u8> {
    let mut out = StdVec::new();
    for a in actions {
        if let Action::Send { port: p, bytes } = a
            && *p == port
        {
            out.extend_from_slice(bytes);
        }
    }
    out
}

fn closed(actions: &[Action]) -> BTreeSet<u16> {
    actions
        .iter()
        .filter_map(|a| {
            if let Action::Close { port } = a {
                Some(*port)
            } else {
                None
            }
        })
        .collect()
}

/// Two machines with the same clock and the wire between them modelled by
/// hand: connections open when the test says so, bytes move when it says so.
struct Pair {
    a: PunchMachine,
    b: PunchMachine,
    ports: StdVec<u16>,
    /// Bytes in flight per (to_b, port).
    a_to_b: StdVec<(u16, StdVec<u8>)>,
    b_to_a: StdVec<(u16, StdVec<u8>)>,
    a_closed: BTreeSet<u16>,
    b_closed: BTreeSet<u16>,
}

impl Pair {
    fn new(ea: Election, eb: Election) -> Pair {
        let mut ca = PunchConfig::new(PEER, 0);
        ca.election = ea;
        let mut cb = PunchConfig::new(Ipv4Addr::new(203, 0, 113, 5), 0);
        cb.election = eb;
        let mut a = machine_at(mid_bucket(), ca);
        let mut b = machine_at(mid_bucket(), cb);
        // (jitter off: the pair is stepped by hand)
        let ports = connect_ports(&mut a);
        drain(&mut b);
        Pair {
            a,
            b,
            ports,
            a_to_b: StdVec::new(),
            b_to_a: StdVec::new(),
            a_closed: BTreeSet::new(),
            b_closed: BTreeSet::new(),
        }
    }

    fn collect(&mut self) {
        for act in drain(&mut self.a) {
            match act {
                Action::Send { port, bytes } => self.a_to_b.push((port, bytes.to_vec())),
                Action::Close { port } => {
                    self.a_closed.insert(port);
                }
                Action::Connect { .. } => {}
            }
        }
        for act in drain(&mut self.b) {
            match act {
                Action::Send { port, bytes } => self.b_to_a.push((port, bytes.to_vec())),
                Action::Close { port } => {
                    self.b_closed.insert(port);
                }
                Action::Connect { .. } => {}
            }
        }
    }

    fn open(&mut self, port: u16) {
        st(&mut self.a, port, ConnectStatus::Connected, at_millis(100));
        st(&mut self.b, port, ConnectStatus::Connected, at_millis(100));
        self.collect();
    }

    /// Delivers everything in flight on `port` towards A (`to_a`) or B,
    /// honouring each side's read_len, and FINs for closed ports.
    fn deliver(&mut self, port: u16, to_a: bool) {
        let (queue, m, closed_by_other) = if to_a {
            (&mut self.b_to_a, &mut self.a, &self.b_closed)
        } else {
            (&mut self.a_to_b, &mut self.b, &self.a_closed)
        };
        let mut bytes = StdVec::new();
        queue.retain(|(p, b)| {
            if *p == port {
                bytes.extend_from_slice(b);
                false
            } else {
                true
            }
        });
        let mut off = 0;
        while off < bytes.len() {
            let n = m.read_len(port).min(bytes.len() - off);
            if n == 0 {
                break;
            }
            m.handle_data(port, &bytes[off..off + n], at_millis(150));
            off += n;
        }
        if closed_by_other.contains(&port) && off == bytes.len() {
            m.handle_closed(port, at_millis(200));
        }
        self.collect();
    }

    fn settle(&mut self) {
        for _ in 0..4 {
            for p in self.ports.clone() {
                self.deliver(p, true);
                self.deliver(p, false);
            }
        }
    }
}

#[test]
fn nonce_election_picks_one_connection_on_both_sides() {
    let mut pair = Pair::new(Election::Nonce(5), Election::Nonce(9));
    let (p1, p2, p3) = (pair.ports[0], pair.ports[3], pair.ports[7]);
    pair.open(p1);
    pair.open(p2);
    pair.open(p3);
    pair.settle();
    let wa = pair.a.outcome().unwrap().unwrap();
    let wb = pair.b.outcome().unwrap().unwrap();
    assert_eq!(wa.port, wb.port);
    assert_eq!(wa.part, Part::Follower);
    assert_eq!(wb.part, Part::Leader);
    // Every other open connection was closed by both.
    for p in [p1, p2, p3] {
        if p != wa.port {
            assert!(
                pair.a_closed.contains(&p) && pair.b_closed.contains(&p),
                "port {p}"
            );
        }
    }
    assert!(!pair.a_closed.contains(&wa.port) && !pair.b_closed.contains(&wb.port));
}

#[test]
fn a_late_connection_cannot_split_the_decision() {
    // B (leader) hears A's hello on p2 first and proposes p2, while A
    // learned it follows from p1; A must still end on p2, and B only once
    // A confirmed it (B keeps p1 open until then).
    let mut pair = Pair::new(Election::Nonce(5), Election::Nonce(9));
    let (p1, p2) = (pair.ports[1], pair.ports[2]);
    pair.open(p1);
    pair.open(p2);
    pair.deliver(p2, false); // A's hello reaches B on p2: B proposes p2
    assert_eq!(pair.b.outcome(), None, "B waits for A's confirmation");
    assert!(pair.b_to_a.contains(&(p2, StdVec::from(*b"$"))));
    assert!(!pair.b_closed.contains(&p1));
    pair.deliver(p1, true); // B's hello on p1 reaches A
    assert_eq!(pair.a.outcome(), None, "A waits for the leader's choice");
    pair.deliver(p2, true);
    assert_eq!(
        pair.a.outcome().unwrap().unwrap(),
        Winner {
            port: p2,
            part: Part::Follower
        }
    );
    assert!(pair.a_to_b.contains(&(p2, StdVec::from(*b"!"))));
    pair.deliver(p2, false); // the confirmation reaches B
    assert_eq!(
        pair.b.outcome().unwrap().unwrap(),
        Winner {
            port: p2,
            part: Part::Leader
        }
    );
    assert!(pair.b_closed.contains(&p1));
    // A third connection opening late at A changes nothing.
    st(
        &mut pair.a,
        pair.ports[5],
        ConnectStatus::Connected,
        at_millis(300),
    );
    assert_eq!(pair.a.outcome().unwrap().unwrap().port, p2);
}

#[test]
fn leader_waits_for_the_peers_hello_before_choosing() {
    let mut pair = Pair::new(Election::Nonce(5), Election::Nonce(9));
    let p = pair.ports[4];
    // Only B's side sees the connection open so far.
    st(&mut pair.b, p, ConnectStatus::Connected, at_millis(100));
    pair.collect();
    assert_eq!(pair.b.outcome(), None);
    assert_eq!(pair.b.read_len(p), HELLO_LEN);
    st(&mut pair.a, p, ConnectStatus::Connected, at_millis(101));
    pair.collect();
    pair.settle();
    assert_eq!(pair.a.outcome().unwrap().unwrap().port, p);
    assert_eq!(pair.b.outcome().unwrap().unwrap().port, p);
}

#[test]
fn reading_our_own_hello_is_a_self_connection() {
    let mut m = machine_at(mid_bucket(), PunchConfig::new(Ipv4Addr::LOCALHOST, 77));
    let port = connects(&drain(&mut m))[0].0;
    st(&mut m, port, ConnectStatus::Connected, at_millis(5));
    let hello = sent(&drain(&mut m), port);
    assert_eq!(hello.len(), HELLO_LEN);
    m.handle_data(port, &hello, at_millis(6));
    assert_eq!(
        m.outcome(),
        Some(Ok(Winner {
            port,
            part: Part::SelfConnected
        }))
    );
    // The other fifteen (still connecting) are closed.
    assert_eq!(closed(&drain(&mut m)).len(), 15);
}

#[test]
fn garbage_instead_of_a_hello_drops_only_that_connection() {
    let mut m = machine_at(mid_bucket(), PunchConfig::new(PEER, 77));
    let ports: StdVec<u16> = connect_ports(&mut m);
    st(&mut m, ports[0], ConnectStatus::Connected, at_millis(5));
    drain(&mut m);
    m.handle_data(ports[0], b"GET / HTTP/1", at_millis(6));
    assert_eq!(closed(&drain(&mut m)), BTreeSet::from([ports[0]]));
    assert_eq!(m.outcome(), None);
    assert_eq!(m.read_len(ports[0]), 0);
}

#[test]
fn follower_rejects_anything_but_the_choice_byte() {
    let mut m = machine_at(mid_bucket(), PunchConfig::new(PEER, 1));
    let ports: StdVec<u16> = connect_ports(&mut m);
    st(&mut m, ports[0], ConnectStatus::Connected, at_millis(5));
    drain(&mut m);
    let mut hello = StdVec::from(*b"PWH2");
    hello.extend_from_slice(&9u64.to_be_bytes());
    m.handle_data(ports[0], &hello, at_millis(6));
    assert_eq!(m.read_len(ports[0]), 1);
    m.handle_data(ports[0], b"#", at_millis(7));
    assert_eq!(closed(&drain(&mut m)), BTreeSet::from([ports[0]]));
    assert_eq!(m.outcome(), None);
}

#[test]
fn public_ip_rule_greater_address_leads() {
    let low = Ipv4Addr::new(198, 51, 100, 7);
    let high = Ipv4Addr::new(203, 0, 113, 5);
    let mut pair = Pair::new(
        Election::PublicIp {
            mine: low,
            peer: high,
        },
        Election::PublicIp {
            mine: high,
            peer: low,
        },
    );
    let (p1, p2) = (pair.ports[0], pair.ports[1]);
    pair.open(p1);
    // The leader (B) proposed at once with `$` and waits for the
    // follower's confirmation (no hello with this rule).
    assert_eq!(pair.b.outcome(), None);
    assert_eq!(pair.b_to_a, [(p1, StdVec::from(*b"$"))]);
    st(&mut pair.a, p2, ConnectStatus::Connected, at_millis(100));
    pair.collect();
    pair.settle();
    assert_eq!(
        pair.a.outcome().unwrap().unwrap(),
        Winner {
            port: p1,
            part: Part::Follower
        }
    );
    assert_eq!(
        pair.b.outcome().unwrap().unwrap(),
        Winner {
            port: p1,
            part: Part::Leader
        }
    );
    assert!(pair.a_closed.contains(&p2));
}

#[test]
fn first_connected_keeps_the_first() {
    let mut cfg = PunchConfig::new(PEER, 1);
    cfg.election = Election::FirstConnected;
    let mut m = machine_at(mid_bucket(), cfg);
    let ports: StdVec<u16> = connect_ports(&mut m);
    st(&mut m, ports[3], ConnectStatus::Connected, at_millis(5));
    assert_eq!(
        m.outcome(),
        Some(Ok(Winner {
            port: ports[3],
            part: Part::First
        }))
    );
    assert_eq!(m.read_len(ports[3]), 0);
}

#[test]
fn open_connection_that_closes_is_not_rearmed() {
    let mut m = machine_at(mid_bucket(), PunchConfig::new(PEER, 1));
    let ports: StdVec<u16> = connect_ports(&mut m);
    st(&mut m, ports[0], ConnectStatus::Connected, at_millis(5));
    drain(&mut m);
    m.handle_closed(ports[0], at_millis(6));
    assert_eq!(closed(&drain(&mut m)), BTreeSet::from([ports[0]]));
    for t in 1..50 {
        m.handle_timeout(at_millis(t * 50));
        assert!(!connects(&drain(&mut m)).iter().any(|(p, _)| *p == ports[0]));
    }
}

#[test]
fn election_timeout_is_told_apart_from_no_connection() {
    let mut cfg = PunchConfig::new(PEER, 1);
    cfg.timeout_ms = 1_000;
    let mut m = machine_at(mid_bucket(), cfg);
    let ports: StdVec<u16> = connect_ports(&mut m);
    st(&mut m, ports[0], ConnectStatus::Connected, at_millis(5));
    m.handle_timeout(at_millis(1_000));
    assert_eq!(m.outcome(), Some(Err(PunchError::ElectionTimeout)));
}

// ---- reference timing -------------------------------------------------

#[test]
fn reference_timing_sleeps_at_most_ten_seconds_then_sprays_five() {
    let mut cfg = PunchConfig::new(PEER, 1);
    cfg.timing = Timing::Reference;
    cfg.election = Election::FirstConnected;
    // 1700000000: bucket 40476190, rendezvous 1700000042 (42 s away); the
    // reference sleeps only 10 s of that.
    let mut m = machine_at(UnixTime::from_secs(1_700_000_000), cfg);
    assert!(drain(&mut m).is_empty());
    assert_eq!(m.poll_timeout(), Some(at_millis(10_000)));
    m.handle_timeout(at_millis(9_999));
    assert!(drain(&mut m).is_empty());
    m.handle_timeout(at_millis(10_000));
    let c = connects(&drain(&mut m));
    assert_eq!(c.len(), 16);
    assert!(c.iter().all(|&(_, prime)| prime == 0), "no priming");
    let got: BTreeSet<u16> = c.iter().map(|&(p, _)| p).collect();
    assert_eq!(got, ports_of(40_476_190));
    // A refused port is reconnected at its own clock slot (here, without
    // spread, one interval after the failure), not at the next pass of a
    // 50 ms loop: lock-step passes on both sides can refuse each other for
    // the whole window (see sim_tests::reference_mode_meets_tcp_punch_py).
    st(
        &mut m,
        c[0].0,
        ConnectStatus::Failed(NetError::Refused),
        at_millis(10_010),
    );
    assert!(drain(&mut m).is_empty());
    m.handle_timeout(at_millis(10_050));
    assert!(drain(&mut m).is_empty());
    m.handle_timeout(at_millis(10_060));
    assert_eq!(connects(&drain(&mut m)), [(c[0].0, 0)]);
    m.handle_timeout(at_millis(15_000));
    assert_eq!(m.outcome(), Some(Err(PunchError::Timeout)));
}

#[test]
fn reference_timing_moves_past_a_close_rendezvous() {
    let mut cfg = PunchConfig::new(PEER, 1);
    cfg.timing = Timing::Reference;
    // 5 s before the rendezvous of bucket 40476190 (1700000042): it takes
    // bucket 40476191 and sleeps its 10 s.
    let mut m = machine_at(UnixTime::from_secs(1_700_000_037), cfg);
    assert_eq!(m.poll_timeout(), Some(at_millis(10_000)));
    m.handle_timeout(at_millis(10_000));
    let got: BTreeSet<u16> = connect_ports(&mut m).into_iter().collect();
    assert_eq!(got, ports_of(40_476_191));
    // A rendezvous is either 10 s or more away (capped) or skipped for one
    // at least 32 s away: the reference always sleeps exactly 10 s.
    for ms in [
        1_700_000_030_000,
        1_700_000_032_000,
        1_700_000_032_500,
        1_700_000_041_999,
    ] {
        let m = machine_at(UnixTime::from_millis(ms), cfg);
        assert_eq!(m.poll_timeout(), Some(at_millis(10_000)), "start {ms}");
    }
}

// ---- skew ---------------------------------------------------------------

/// Ports a machine has armed since `from` (Connect actions).
fn armed_ports(m: &mut PunchMachine) -> BTreeSet<u16> {
    connect_ports(m).into_iter().collect()
}

#[test]
fn any_skew_within_the_bound_shares_ports_even_across_bucket_edges() {
    let edge = bucket_start(40_476_191);
    for offset_ms in [
        -30_000i64, -20_001, -20_000, -1, 0, 1, 999, 19_999, 20_000, 21_000,
    ] {
        for skew_ms in [
            -19_000i64, -10_000, -1_000, 0, 1_000, 10_000, 19_000, 19_999,
        ] {
            let a_time = edge.offset_millis(offset_ms);
            let b_time = a_time.offset_millis(skew_ms);
            let mut a = machine_at(a_time, PunchConfig::new(PEER, 1));
            let mut b = machine_at(b_time, PunchConfig::new(PEER, 2));
            let shared: StdVec<u16> = armed_ports(&mut a)
                .intersection(&armed_ports(&mut b))
                .copied()
                .collect();
            assert!(
                shared.len() >= NUM_PORTS,
                "offset {offset_ms} skew {skew_ms}: only {} shared ports",
                shared.len()
            );
        }
    }
}

#[test]
fn a_side_starting_sixty_seconds_late_meets_the_ports_still_sprayed() {
    let t0 = mid_bucket();
    let mut a = machine_at(t0, PunchConfig::new(PEER, 1));
    drain(&mut a);
    // A runs for 60 s, failing everything now and then.
    let mut live = BTreeSet::new();
    for step in 1..=1200u64 {
        let now = at_millis(step * 50);
        a.handle_timeout(now);
        for act in drain(&mut a) {
            match act {
                Action::Connect { port, .. } => {
                    live.insert(port);
                }
                Action::Close { port } => {
                    live.remove(&port);
                }
                Action::Send { .. } => {}
            }
        }
    }
    let mut b = PunchMachine::new(
        PunchConfig::new(PEER, 2),
        at_millis(0),
        t0.offset_millis(60_000),
    )
    .unwrap();
    let b_ports = armed_ports(&mut b);
    assert!(live.intersection(&b_ports).count() >= NUM_PORTS);
}

/// Found by the `punch_ops` fuzz target: reference timing at a clock near
/// the ends of the `i64` range overflowed computing its wait.
#[test]
fn reference_timing_survives_the_ends_of_time() {
    for ms in [i64::MIN, i64::MAX - 30_000, i64::MAX] {
        let mut cfg = PunchConfig::new(PEER, 1);
        cfg.timing = Timing::Reference;
        let m = machine_at(UnixTime::from_millis(ms), cfg);
        let wait = m.poll_timeout().map(crate::time::micros).unwrap();
        assert!(
            wait <= REFERENCE_MAX_SLEEP_MS * 1000,
            "waits {wait} us at {ms}"
        );
    }
}

/// Found by the `punch_ops` fuzz target: re-arming after a failure with a
/// clock near the end of the `i64` range overflowed in `rearm_at`.
#[test]
fn rearm_survives_the_ends_of_time() {
    for ms in [i64::MIN, i64::MAX - 214, i64::MAX] {
        let mut cfg = PunchConfig::new(PEER, 1);
        cfg.interval_ms = 8_708;
        cfg.jitter_percent = 9;
        let mut m = PunchMachine::new(cfg, at_millis(0), UnixTime::from_millis(ms)).unwrap();
        let ports = connect_ports(&mut m);
        assert!(!ports.is_empty());
        for &p in &ports {
            st(
                &mut m,
                p,
                ConnectStatus::Failed(NetError::Refused),
                at_millis(5),
            );
        }
        // Every port is re-armed within two intervals.
        m.handle_timeout(at_millis(5 + 2 * 8_708));
        assert_eq!(connect_ports(&mut m).len(), ports.len(), "at {ms}");
    }
}
