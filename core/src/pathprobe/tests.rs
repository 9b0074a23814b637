//! Path-probe machine cases with explicit times. Paths are written as the
//! answer of each hop, as a traceroute would show them.

use core::net::{Ipv4Addr, SocketAddrV4};

use super::*;
use crate::time::at_millis;

const PEER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const HOME: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);
const CARRIER: Ipv4Addr = Ipv4Addr::new(100, 64, 1, 1);
const ISP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const ISP2: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 77);

/// What a hop of a simulated path answers to a probe that dies there.
#[derive(Clone, Copy)]
enum On {
    /// Time exceeded from this address.
    Router(Ipv4Addr),
    /// Port unreachable from the peer's address (its router's firewall).
    PeerRejects,
    /// Nothing (a silent router, or the peer's dropping firewall).
    Nothing,
}

fn machine() -> PathProbe {
    PathProbe::new(ProbeConfig::new(PEER))
}

/// Drains the probes due at `now`.
fn drain(m: &mut PathProbe, now: Instant) -> heapless::Vec<Probe, 16> {
    let mut v = heapless::Vec::new();
    while let Some(p) = m.poll_transmit(now) {
        v.push(p).unwrap();
    }
    v
}

/// Answers each probe as the path does: a probe with TTL t meets hop
/// `path[t-1]`, or the last entry when the path is shorter.
fn answer(m: &mut PathProbe, now: Instant, probes: &[Probe], path: &[On]) {
    for p in probes {
        let on = path[usize::from(p.ttl - 1).min(path.len() - 1)];
        match on {
            On::Router(ip) => {
                assert!(m.handle_icmp(now, p.to, ip, IcmpKind::TimeExceeded));
            }
            On::PeerRejects => {
                assert!(m.handle_icmp(now, p.to, PEER, IcmpKind::Unreachable(3)));
            }
            On::Nothing => {}
        }
    }
}

/// Runs the machine over `path` with answers 5 ms after each send; returns
/// the outcome and the instant it was decided.
fn run(path: &[On]) -> (Outcome, u64) {
    let mut m = machine();
    let mut now = 0;
    for _ in 0..100 {
        let probes = drain(&mut m, at_millis(now));
        if let Some(o) = m.result() {
            return (o, now);
        }
        now += 5;
        answer(&mut m, at_millis(now), &probes, path);
        if let Some(o) = m.result() {
            return (o, now);
        }
        let t = m.poll_timeout().expect("undecided machine has a timer");
        now = time::micros(t) / 1000;
        m.handle_timeout(at_millis(now));
        if let Some(o) = m.result() {
            return (o, now);
        }
    }
    panic!("never decided");
}

#[test]
fn public_addresses() {
    for ip in [
        [10, 1, 2, 3],
        [172, 16, 0, 1],
        [172, 31, 255, 255],
        [192, 168, 0, 1],
        [100, 64, 0, 1],
        [100, 127, 255, 254],
        [127, 0, 0, 1],
        [169, 254, 1, 1],
        [0, 0, 0, 0],
        [192, 0, 0, 1],
        [198, 18, 0, 1],
        [224, 0, 0, 1],
        [255, 255, 255, 255],
    ] {
        assert!(!is_public(Ipv4Addr::from(ip)), "{ip:?}");
    }
    for ip in [
        [8, 8, 8, 8],
        [172, 15, 255, 255],
        [172, 32, 0, 0],
        [100, 63, 255, 255],
        [100, 128, 0, 0],
        [192, 169, 0, 1],
        [203, 0, 113, 1],
        [198, 51, 100, 1],
        [192, 0, 2, 1],
        [198, 20, 0, 1],
        [223, 255, 255, 255],
    ] {
        assert!(is_public(Ipv4Addr::from(ip)), "{ip:?}");
    }
}

#[test]
fn first_round_sends_every_ttl_at_once_to_its_own_port() {
    let mut m = machine();
    let probes = drain(&mut m, at_millis(0));
    assert_eq!(probes.len(), usize::from(DEFAULT_MAX_TTL));
    for (i, p) in probes.iter().enumerate() {
        assert_eq!(usize::from(p.ttl), i + 1);
        assert_eq!(
            p.to,
            SocketAddrV4::new(PEER, DEFAULT_BASE_PORT + u16::from(p.ttl))
        );
    }
    assert_eq!(m.poll_timeout(), Some(at_millis(DEFAULT_ROUND_MS)));
    assert!(m.result().is_none());
    // Nothing more until the round ends; an early timeout changes nothing.
    m.handle_timeout(at_millis(100));
    assert!(drain(&mut m, at_millis(100)).is_empty());
}

#[test]
fn single_nat() {
    // Home router, then the ISP (several hops of it), then the peer.
    let path = [
        On::Router(HOME),
        On::Router(ISP),
        On::Router(ISP2),
        On::Router(ISP2),
        On::PeerRejects,
    ];
    let (o, at) = run(&path);
    assert_eq!(o.ttl, 2);
    assert_eq!(o.reason, Reason::FirstPublicRouter(ISP));
    // Decided with the first answers, not at the end of the round.
    assert_eq!(at, 5);
}

#[test]
fn double_nat_behind_a_carrier() {
    let path = [
        On::Router(HOME),
        On::Router(CARRIER),
        On::Router(ISP),
        On::Router(ISP2),
        On::Router(ISP2),
        On::Nothing,
    ];
    let (o, _) = run(&path);
    assert_eq!(o.ttl, 3);
    assert_eq!(o.reason, Reason::FirstPublicRouter(ISP));
}

#[test]
fn one_isp_hop_stays_below_the_peers_router() {
    // wanem --hops 1: home router, one ISP hop, the peer's router at hop 3.
    // The fixed TTL 3 would reach it; the probe says 2.
    let path = [On::Router(HOME), On::Router(ISP), On::PeerRejects];
    let (o, at) = run(&path);
    assert_eq!(o.ttl, 2);
    assert_eq!(o.reason, Reason::FirstPublicRouter(ISP));
    assert_eq!(at, 5);
}

#[test]
fn peer_router_as_the_second_hop() {
    // Two homes on one ISP segment: the peer's router is hop 2, no public
    // router in between. Never reach it: TTL 1.
    let path = [On::Router(HOME), On::PeerRejects];
    let (o, at) = run(&path);
    assert_eq!(o.ttl, 1);
    assert_eq!(o.reason, Reason::BelowPeer { peer_hop: 2 });
    assert_eq!(at, 5);
}

#[test]
fn peer_answers_at_a_low_hop_before_a_silent_isp() {
    // ISP routers silent, the peer's router rejects at hop 3: the fallback
    // (3) would reach it, so one short.
    let path = [On::Router(HOME), On::Nothing, On::PeerRejects];
    let (o, at) = run(&path);
    assert_eq!(o.ttl, 2);
    assert_eq!(o.reason, Reason::BelowPeer { peer_hop: 3 });
    // Hop 2 never answers: decided when the rounds run out.
    assert_eq!(at, u64::from(DEFAULT_ROUNDS) * DEFAULT_ROUND_MS);
    // Time exceeded sent from the peer's own address counts as the peer.
    let path = [On::Router(HOME), On::Router(PEER)];
    assert_eq!(run(&path).0.reason, Reason::BelowPeer { peer_hop: 2 });
}

#[test]
fn peer_far_beyond_the_fallback_does_not_cap_it() {
    let path = [
        On::Router(HOME),
        On::Nothing,
        On::Nothing,
        On::Nothing,
        On::Nothing,
        On::PeerRejects,
    ];
    let (o, _) = run(&path);
    assert_eq!((o.ttl, o.reason), (FALLBACK_TTL, Reason::Silent));
}

#[test]
fn silent_path_falls_back_after_every_round() {
    let mut m = machine();
    let mut sent = 0;
    for round in 0..u64::from(DEFAULT_ROUNDS) {
        let t = round * DEFAULT_ROUND_MS;
        let probes = drain(&mut m, at_millis(t));
        assert_eq!(probes.len(), usize::from(DEFAULT_MAX_TTL), "round {round}");
        sent += probes.len();
        assert_eq!(m.poll_timeout(), Some(at_millis(t + DEFAULT_ROUND_MS)));
        assert!(m.result().is_none());
        m.handle_timeout(at_millis(t + DEFAULT_ROUND_MS));
    }
    let o = m.result().expect("decided after the last round");
    assert_eq!(o.ttl, FALLBACK_TTL);
    assert_eq!(o.reason, Reason::Silent);
    assert_eq!(usize::from(o.sent), sent);
    assert_eq!(o.answered, 0);
    assert_eq!(m.poll_timeout(), None);
    assert!(drain(&mut m, at_millis(10_000)).is_empty());
}

#[test]
fn private_answers_only_fall_back() {
    // Every hop answers, but privately (an ISP numbering its core in
    // 10/8): the fallback, decided as soon as nothing is left to ask.
    let path = [On::Router(HOME), On::Router(Ipv4Addr::new(10, 0, 0, 1))];
    let (o, at) = run(&path);
    assert_eq!((o.ttl, o.reason), (FALLBACK_TTL, Reason::Silent));
    assert_eq!(at, DEFAULT_ROUND_MS);
}

#[test]
fn later_rounds_resend_only_silent_hops_below_the_answer() {
    let mut m = machine();
    let probes = drain(&mut m, at_millis(0));
    // Hop 1 lost, hop 3 public: not settled, hop 1 might still be public.
    answer(&mut m, at_millis(5), &probes[2..3], &[On::Router(ISP)]);
    assert!(m.result().is_none());
    m.handle_timeout(at_millis(DEFAULT_ROUND_MS));
    let again = drain(&mut m, at_millis(DEFAULT_ROUND_MS));
    let ttls: heapless::Vec<u8, 16> = again.iter().map(|p| p.ttl).collect();
    assert_eq!(ttls.as_slice(), [1, 2]);
    // Hop 1 private, hop 2 silent still; hop 2 then answers public.
    m.handle_icmp(at_millis(260), again[0].to, HOME, IcmpKind::TimeExceeded);
    assert!(m.result().is_none());
    m.handle_icmp(at_millis(261), again[1].to, ISP2, IcmpKind::TimeExceeded);
    let o = m.result().unwrap();
    assert_eq!((o.ttl, o.reason), (2, Reason::FirstPublicRouter(ISP2)));
    assert_eq!(o.sent, u16::from(DEFAULT_MAX_TTL) + 2);
}

#[test]
fn reports_that_are_not_ours_are_ignored() {
    let mut m = machine();
    let probes = drain(&mut m, at_millis(0));
    let other = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 3), probes[1].to.port());
    assert!(!m.handle_icmp(at_millis(1), other, ISP, IcmpKind::TimeExceeded));
    let below = SocketAddrV4::new(PEER, DEFAULT_BASE_PORT);
    assert!(!m.handle_icmp(at_millis(1), below, ISP, IcmpKind::TimeExceeded));
    let above = SocketAddrV4::new(PEER, DEFAULT_BASE_PORT + 9);
    assert!(!m.handle_icmp(at_millis(1), above, ISP, IcmpKind::TimeExceeded));
    assert!(!m.handle_icmp(
        at_millis(1),
        SocketAddrV4::new(PEER, 5555),
        ISP,
        IcmpKind::TimeExceeded
    ));
    assert_eq!(m.hop(2), Hop::Silent);
    // A router's unreachable does not count as the peer nor as public.
    m.handle_icmp(at_millis(2), probes[1].to, ISP, IcmpKind::Unreachable(1));
    assert_eq!(m.hop(2), Hop::Unreachable(ISP));
    assert!(m.result().is_none());
    // Out-of-range hop numbers are silent, never a panic.
    assert_eq!(m.hop(0), Hop::Silent);
    assert_eq!(m.hop(200), Hop::Silent);
}

#[test]
fn probe_ports_avoid_the_punch_port() {
    let mut cfg = ProbeConfig::new(PEER);
    cfg.avoid_port = Some(DEFAULT_BASE_PORT + 3);
    let mut m = PathProbe::new(cfg);
    for p in drain(&mut m, at_millis(0)) {
        assert_ne!(p.to.port(), DEFAULT_BASE_PORT + 3);
    }
    for avoid in [1u16, 17, 18, 5555, 65535] {
        let mut cfg = ProbeConfig::new(PEER);
        cfg.base_port = avoid.saturating_sub(4);
        cfg.avoid_port = Some(avoid);
        cfg.max_ttl = MAX_PROBE_TTL;
        let mut m = PathProbe::new(cfg);
        for p in drain(&mut m, at_millis(0)) {
            assert_ne!(p.to.port(), avoid);
            assert_ne!(p.to.port(), 0);
        }
    }
}

#[test]
fn clamps_its_settings() {
    let mut cfg = ProbeConfig::new(PEER);
    cfg.max_ttl = 200;
    cfg.rounds = 0;
    let m = PathProbe::new(cfg);
    assert_eq!(m.config().max_ttl, MAX_PROBE_TTL);
    assert_eq!(m.config().rounds, 1);
    let mut cfg = ProbeConfig::new(PEER);
    cfg.max_ttl = 0;
    let mut m = PathProbe::new(cfg);
    assert_eq!(drain(&mut m, at_millis(0)).len(), 1);
}

#[test]
fn outcome_reads_well() {
    let (o, _) = run(&[On::Router(HOME), On::Router(ISP)]);
    let mut s: heapless::String<128> = heapless::String::new();
    core::fmt::write(&mut s, format_args!("{o}")).unwrap();
    assert_eq!(
        s.as_str(),
        "prime TTL 2: first public router 203.0.113.1 at hop 2 (8 probes, 2 hops answered)"
    );
}

// ---- learn() over a fake platform ----

/// A platform whose path answers like `path` after `rtt_ms`, on a virtual
/// clock that `wait` advances.
struct FakePath {
    path: &'static [On],
    now_ms: u64,
    rtt_ms: u64,
    queued: heapless::Vec<(u64, net::IcmpReport), 64>,
    sent: usize,
    closed: bool,
    /// Refuse this many sends with WouldBlock (a stack resolving the next
    /// hop), each until 10 ms have passed.
    refuse: u32,
    refused_at: Option<u64>,
}

impl net::IcmpProbe for FakePath {
    type ProbeSocket = u8;
    fn probe_open(&mut self) -> crate::net::NetResult<u8> {
        Ok(7)
    }
    fn probe_send(
        &mut self,
        s: u8,
        ttl: u8,
        to: SocketAddrV4,
        payload: &[u8],
    ) -> crate::net::NetResult<()> {
        assert_eq!(s, 7);
        assert!(payload.is_empty());
        if self.refuse > 0 {
            let since = *self.refused_at.get_or_insert(self.now_ms);
            if self.now_ms < since + 10 {
                return Err(crate::net::NetError::WouldBlock);
            }
            self.refuse -= 1;
            self.refused_at = None;
        }
        self.sent += 1;
        let on = self.path[usize::from(ttl - 1).min(self.path.len() - 1)];
        let report = match on {
            On::Router(ip) => Some((ip, IcmpKind::TimeExceeded)),
            On::PeerRejects => Some((PEER, IcmpKind::Unreachable(3))),
            On::Nothing => None,
        };
        if let Some((offender, kind)) = report {
            let r = net::IcmpReport { to, offender, kind };
            self.queued.push((self.now_ms + self.rtt_ms, r)).unwrap();
        }
        Ok(())
    }
    fn probe_recv_error(&mut self, _s: u8) -> crate::net::NetResult<net::IcmpReport> {
        let now = self.now_ms;
        match self.queued.iter().position(|(at, _)| *at <= now) {
            Some(i) => Ok(self.queued.swap_remove(i).1),
            None => Err(crate::net::NetError::WouldBlock),
        }
    }
    fn probe_close(&mut self, _s: u8) {
        self.closed = true;
    }
}

impl crate::net::Wait for FakePath {
    fn now(&mut self) -> Instant {
        at_millis(self.now_ms)
    }
    fn wait(&mut self, deadline: Option<Instant>) -> crate::net::NetResult<Instant> {
        // Wake at the next answer or the deadline, whichever is first.
        let next = self.queued.iter().map(|(at, _)| *at).min();
        let dl = deadline.map(|d| time::micros(d) / 1000);
        self.now_ms = match (next, dl) {
            (Some(a), Some(d)) => a.min(d),
            (Some(a), None) => a,
            (None, Some(d)) => d,
            (None, None) => panic!("wait forever"),
        }
        .max(self.now_ms);
        Ok(at_millis(self.now_ms))
    }
}

fn fake(path: &'static [On]) -> FakePath {
    FakePath {
        path,
        now_ms: 1000,
        rtt_ms: 40,
        queued: heapless::Vec::new(),
        sent: 0,
        closed: false,
        refuse: 0,
        refused_at: None,
    }
}

#[test]
fn learn_decides_after_one_round_trip() {
    static PATH: [On; 3] = [On::Router(HOME), On::Router(ISP), On::PeerRejects];
    let mut net = fake(&PATH);
    let o = learn(&mut net, ProbeConfig::new(PEER)).unwrap();
    assert_eq!((o.ttl, o.reason), (2, Reason::FirstPublicRouter(ISP)));
    assert_eq!(net.now_ms, 1040);
    assert_eq!(net.sent, usize::from(DEFAULT_MAX_TTL));
    assert!(net.closed);
}

#[test]
fn learn_falls_back_on_a_silent_path_within_its_rounds() {
    static PATH: [On; 1] = [On::Nothing];
    let mut net = fake(&PATH);
    let o = learn(&mut net, ProbeConfig::new(PEER)).unwrap();
    assert_eq!((o.ttl, o.reason), (FALLBACK_TTL, Reason::Silent));
    assert_eq!(
        net.now_ms,
        1000 + u64::from(DEFAULT_ROUNDS) * DEFAULT_ROUND_MS
    );
    assert!(net.closed);
}

#[test]
fn learn_retries_a_probe_the_platform_cannot_take_yet() {
    static PATH: [On; 3] = [On::Router(HOME), On::Router(ISP), On::PeerRejects];
    let mut net = fake(&PATH);
    net.refuse = 2;
    let o = learn(&mut net, ProbeConfig::new(PEER)).unwrap();
    assert_eq!((o.ttl, o.reason), (2, Reason::FirstPublicRouter(ISP)));
    // Every probe went out; two of them 10 ms late each.
    assert_eq!(net.sent, usize::from(DEFAULT_MAX_TTL));
    assert_eq!(net.now_ms, 1000 + 20 + 40);
}
