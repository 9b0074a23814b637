//! Birthday machine cases on a virtual clock, and the probability model in
//! simulation (`sim.rs`).
extern crate std;

use core::net::Ipv4Addr;
use std::vec::Vec;

use super::sim::{KNOWN_PORT, Nat, simulate};
use super::*;
use crate::time::{at_millis, micros};

const PEER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 2), KNOWN_PORT);
/// Unix time 1 800 000 000 s: on every slot boundary.
const UNIX0_MS: i64 = 1_800_000_000_000;

fn clock_at(unix_ms: i64) -> UnixClock {
    UnixClock::from_micros(at_millis(0), unix_ms * 1000)
}

fn machine(cfg: BirthdayConfig, unix_ms: i64) -> Birthday {
    Birthday::new(cfg, at_millis(0), clock_at(unix_ms), 7)
}

fn small() -> BirthdayConfig {
    let mut c = BirthdayConfig::new(PEER);
    c.extra_sockets = 3;
    c.round_budget = 10;
    c.rounds = 2;
    c
}

fn drain(m: &mut Birthday, now_ms: u64) -> Vec<Action> {
    let mut v = Vec::new();
    while let Some(a) = m.poll_action(at_millis(now_ms)) {
        v.push(a);
    }
    v
}

fn ms(t: Option<Instant>) -> u64 {
    micros(t.expect("a timer")) / 1000
}

#[test]
fn quiet_until_the_silence_then_waits_for_the_shared_slot() {
    // Unix time at start is 1.2 s past a boundary: the silence ends at
    // 3 s (4.2 s past), the round begins at the next boundary, 5 s.
    let mut m = machine(small(), UNIX0_MS + 1200);
    assert!(drain(&mut m, 0).is_empty());
    assert_eq!(ms(m.poll_timeout()), DEFAULT_SILENCE_MS);
    m.handle_timeout(at_millis(2999));
    assert!(drain(&mut m, 2999).is_empty());
    m.handle_timeout(at_millis(3000));
    assert_eq!(ms(m.poll_timeout()), 3800);
    assert!(drain(&mut m, 3000).is_empty());
    assert!(!m.escalated());
    m.handle_timeout(at_millis(3800));
    assert!(m.escalated());
    assert_eq!(m.round(), 1);
}

#[test]
fn a_round_opens_each_socket_with_its_first_datagram_then_probes_paced() {
    let mut m = machine(small(), UNIX0_MS - 3000);
    m.handle_timeout(at_millis(3000)); // on a boundary: starts at once
    assert_eq!(m.round(), 1);
    let mut log = Vec::new();
    let mut t = 3000;
    while m.result().is_none() && t < 3000 + small().round_ms() {
        for a in drain(&mut m, t) {
            log.push((t, a));
        }
        t = ms(m.poll_timeout()).max(t + 1);
        m.handle_timeout(at_millis(t));
    }
    // 3 opens, each followed by its datagram to the known port, 10 ms apart,
    // then 7 probes from the main socket, all distinct, all 10 ms apart.
    let (opens, rest) = log.split_at(6);
    for (k, pair) in opens.chunks(2).enumerate() {
        assert_eq!(pair[0], (3000 + 10 * k as u64, Action::Open(k as u16)));
        let want = Action::Send {
            from: Socket::Extra(k as u16),
            to: PEER,
        };
        assert_eq!(pair[1], (3000 + 10 * k as u64, want));
    }
    let probes: Vec<_> = rest
        .iter()
        .take_while(|(_, a)| matches!(a, Action::Send { .. }))
        .collect();
    assert_eq!(probes.len(), 7);
    let mut ports = Vec::new();
    for (k, (t, a)) in probes.iter().enumerate() {
        assert_eq!(*t, 3030 + 10 * k as u64);
        let Action::Send {
            from: Socket::Main,
            to,
        } = a
        else {
            panic!("{a:?}")
        };
        assert_eq!(to.ip(), PEER.ip());
        assert!(to.port() >= DEFAULT_LOW_PORT);
        ports.push(to.port());
    }
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 7, "probe ports repeat within a round");
    // The budget is spent: nothing until the round's end (100 ms later).
    assert_eq!(m.stats().probes_sent, 7);
    assert_eq!(m.stats().extra_sent, 3);
}

#[test]
fn rounds_close_their_sockets_and_the_last_gives_up() {
    let mut m = machine(small(), UNIX0_MS - 3000);
    let mut t = 3000;
    m.handle_timeout(at_millis(t));
    let mut closes = Vec::new();
    let mut gave_up_at = None;
    while t < 60_000 {
        for a in drain(&mut m, t) {
            match a {
                Action::Close(i) => closes.push((m.round(), i)),
                Action::GaveUp => gave_up_at = Some(t),
                _ => {}
            }
        }
        let Some(next) = m.poll_timeout() else { break };
        t = ms(Some(next)).max(t + 1);
        m.handle_timeout(at_millis(t));
    }
    // Round 1 (3 s, on a boundary) ends at 3.1 s; round 2 waits for the
    // next boundary of the 5 s grid, 8 s, and ends at 8.1 s.
    assert_eq!(m.stats().rounds, 2);
    assert_eq!(closes.len(), 6);
    assert_eq!(m.result(), Some(Outcome::GaveUp));
    assert_eq!(gave_up_at, Some(8000 + small().round_ms()));
    assert!((0..3).all(|i| !m.is_open(i)));
    assert_eq!(m.poll_timeout(), None);
    assert!(drain(&mut m, 100_000).is_empty());
}

#[test]
fn the_ordinary_punch_heard_first_means_not_needed() {
    let mut m = machine(small(), UNIX0_MS);
    // Junk, other addresses and extra sockets never count.
    assert!(!m.handle_datagram(at_millis(10), Socket::Main, PEER, false));
    let other = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 3), KNOWN_PORT);
    assert!(!m.handle_datagram(at_millis(10), Socket::Main, other, true));
    assert!(!m.handle_datagram(at_millis(10), Socket::Extra(0), PEER, true));
    assert!(m.result().is_none());
    assert!(m.handle_datagram(at_millis(20), Socket::Main, PEER, true));
    assert_eq!(m.result(), Some(Outcome::NotNeeded));
    assert!(drain(&mut m, 5000).is_empty());
    assert_eq!(m.poll_timeout(), None);
    assert_eq!(m.stats(), Stats::default());
}

#[test]
fn a_reply_on_an_extra_socket_wins_and_closes_the_others_at_once() {
    let mut m = machine(small(), UNIX0_MS - 3000);
    m.handle_timeout(at_millis(3000));
    for t in [3000, 3010, 3020] {
        drain(&mut m, t);
    }
    assert!((0..3).all(|i| m.is_open(i)));
    // Not open: ignored.
    assert!(!m.handle_datagram(at_millis(3025), Socket::Extra(7), PEER, true));
    let from = SocketAddrV4::new(*PEER.ip(), KNOWN_PORT);
    assert!(m.handle_datagram(at_millis(3025), Socket::Extra(1), from, true));
    let actions = drain(&mut m, 3025);
    assert_eq!(
        actions,
        [
            Action::Close(0),
            Action::Close(2),
            Action::Winner {
                socket: Socket::Extra(1),
                peer: from
            }
        ]
    );
    assert_eq!(
        m.result(),
        Some(Outcome::Winner {
            socket: Socket::Extra(1),
            peer: from,
            round: 1
        })
    );
    // Later replies change nothing.
    assert!(!m.handle_datagram(at_millis(3030), Socket::Main, from, true));
    assert_eq!(m.poll_timeout(), None);
}

#[test]
fn a_reply_on_the_main_socket_from_a_new_port_wins_there() {
    let mut m = machine(small(), UNIX0_MS - 3000);
    m.handle_timeout(at_millis(3000));
    drain(&mut m, 3000);
    let from = SocketAddrV4::new(*PEER.ip(), 40123);
    assert!(m.handle_datagram(at_millis(3005), Socket::Main, from, true));
    assert_eq!(
        drain(&mut m, 3005),
        [
            Action::Close(0),
            Action::Winner {
                socket: Socket::Main,
                peer: from
            }
        ]
    );
}

#[test]
fn a_socket_that_fails_to_open_is_skipped() {
    let mut m = machine(small(), UNIX0_MS - 3000);
    m.handle_timeout(at_millis(3000));
    assert_eq!(m.poll_action(at_millis(3000)), Some(Action::Open(0)));
    m.handle_open_failed(0);
    assert_eq!(m.poll_action(at_millis(3000)), Some(Action::Open(1)));
    assert!(!m.is_open(0));
    assert_eq!(m.stats().open_failed, 1);
    assert_eq!(m.stats().opened, 1);
    assert!(!m.handle_datagram(at_millis(3001), Socket::Extra(0), PEER, true));
}

#[test]
fn settings_are_clamped() {
    let mut c = BirthdayConfig::new(PEER);
    c.extra_sockets = 1000;
    c.rate_per_s = 0;
    c.round_budget = 5;
    c.rounds = 0;
    c.slot_ms = 0;
    let m = machine(c, UNIX0_MS);
    assert_eq!(m.config().extra_sockets, MAX_EXTRA_SOCKETS);
    assert_eq!(m.config().rate_per_s, 1);
    assert_eq!(m.config().round_budget, MAX_EXTRA_SOCKETS);
    assert_eq!(m.config().rounds, 1);
    assert_eq!(m.config().slot_ms, 1);
    // The defaults: 20.48 s a round.
    assert_eq!(BirthdayConfig::new(PEER).round_ms(), 20_480);
}

#[test]
fn probe_ports_are_a_permutation_of_the_range() {
    // With the whole range as budget, every port 1024..=65535 once.
    let mut c = BirthdayConfig::new(PEER);
    c.extra_sockets = 0;
    c.round_budget = u16::MAX;
    c.rate_per_s = 1_000_000;
    let mut m = machine(c, UNIX0_MS - 3000);
    m.handle_timeout(at_millis(3000));
    let mut seen = std::vec![false; 65536];
    let mut t_us = 3_000_000u64;
    let mut n = 0;
    while n < 64512 {
        match m.poll_action(crate::time::at_micros(t_us)) {
            Some(Action::Send { to, .. }) => {
                assert!(!seen[usize::from(to.port())], "port {} twice", to.port());
                seen[usize::from(to.port())] = true;
                n += 1;
            }
            Some(a) => panic!("{a:?}"),
            None => t_us += 1,
        }
    }
    assert!(seen[1024..].iter().all(|s| *s));
}

// ---- the probability model ----

fn defaults(peer: SocketAddrV4) -> BirthdayConfig {
    BirthdayConfig::new(peer)
}

/// One symmetric side, one port-preserving side, both orders, the later
/// side 1 s behind, 10 ms one way, the shared clock at a random phase:
/// connected in ≥ 95 % of seeds within the default budget (in fact all but
/// a fraction of a percent), within 30 s of the later start.
#[test]
fn one_symmetric_side_is_reached_in_95_percent_of_seeds() {
    const SEEDS: u64 = 120;
    for nats in [
        [Nat::Random, Nat::Preserving],
        [Nat::Preserving, Nat::Random],
    ] {
        let mut ok = 0;
        let mut times = Vec::new();
        for seed in 0..SEEDS {
            let phase = (seed * 7919 % 5000) as i64;
            let r = simulate(
                nats,
                defaults,
                seed,
                1_000_000,
                UNIX0_MS + phase,
                10_000,
                120_000_000,
            );
            assert!(r.max_open <= 256);
            assert!(r.max_per_second <= 101, "{} per second", r.max_per_second);
            assert!(r.sent.iter().all(|&n| n <= 3 * 2048));
            assert_eq!(r.left_open, 0, "extra sockets left open");
            if let Some(us) = r.connected_after_us
                && us <= 30_000_000
            {
                ok += 1;
                times.push(us / 1000);
            }
        }
        times.sort_unstable();
        let median = times[times.len() / 2];
        std::println!(
            "{nats:?}: {ok}/{SEEDS} connected within 30 s; {}..{} ms, median {median} ms",
            times[0],
            times[times.len() - 1]
        );
        assert!(ok * 100 >= SEEDS * 95, "{nats:?}: {ok}/{SEEDS}");
    }
}

#[test]
fn two_easy_sides_never_escalate() {
    let r = simulate(
        [Nat::Preserving, Nat::Preserving],
        defaults,
        3,
        1_000_000,
        UNIX0_MS,
        10_000,
        60_000_000,
    );
    assert_eq!(r.a, Some(Outcome::NotNeeded));
    assert_eq!(r.b, Some(Outcome::NotNeeded));
    assert_eq!(r.sent, [0, 0]);
    assert!(r.connected_after_us.is_some_and(|us| us < 1_000_000));
}

/// Both symmetric: no hole, and a clean give-up within the budget: every
/// round's sockets closed, at most 3 × 2 048 datagrams a side, finished
/// within silence + slot waits + 3 rounds.
#[test]
fn two_symmetric_sides_give_up_cleanly_within_the_budget() {
    for seed in 0..5 {
        let r = simulate(
            [Nat::Random, Nat::Random],
            defaults,
            seed,
            1_000_000,
            UNIX0_MS + 1234,
            10_000,
            200_000_000,
        );
        assert_eq!(r.a, Some(Outcome::GaveUp));
        assert_eq!(r.b, Some(Outcome::GaveUp));
        assert_eq!(r.connected_after_us, None);
        assert_eq!(r.sent, [3 * 2048, 3 * 2048]);
        assert_eq!(r.left_open, 0);
        assert!(r.max_per_second <= 101);
        let bound_ms = DEFAULT_SILENCE_MS + 3 * (20_480 + DEFAULT_SLOT_MS);
        let took = r.finished_after_us.unwrap() / 1000;
        assert!(took <= bound_ms, "gave up after {took} ms");
    }
}

// ---- BirthdaySockets over a fake backend ----

/// A `Udp` backend that records what it is asked and delivers queued
/// datagrams.
#[derive(Default)]
struct FakeUdp {
    next: u32,
    open: Vec<u32>,
    sent: Vec<(u32, SocketAddrV4)>,
    inbox: Vec<(u32, SocketAddrV4, &'static [u8])>,
    fail_binds: u32,
}

impl crate::net::Udp for FakeUdp {
    type UdpSocket = u32;
    fn udp_bind(&mut self, _port: u16) -> crate::net::NetResult<u32> {
        if self.fail_binds > 0 {
            self.fail_binds -= 1;
            return Err(crate::net::NetError::NoBuffers);
        }
        self.next += 1;
        self.open.push(self.next);
        Ok(self.next)
    }
    fn udp_send_to(&mut self, s: u32, _d: &[u8], to: SocketAddrV4) -> crate::net::NetResult<()> {
        self.sent.push((s, to));
        Ok(())
    }
    fn udp_recv_from(
        &mut self,
        s: u32,
        buf: &mut [u8],
    ) -> crate::net::NetResult<(usize, SocketAddrV4)> {
        match self.inbox.iter().position(|(on, _, _)| *on == s) {
            Some(k) => {
                let (_, from, d) = self.inbox.remove(k);
                buf[..d.len()].copy_from_slice(d);
                Ok((d.len(), from))
            }
            None => Err(crate::net::NetError::WouldBlock),
        }
    }
    fn udp_set_ttl(&mut self, _s: u32, _ttl: u8) -> crate::net::NetResult<()> {
        Ok(())
    }
    fn udp_close(&mut self, s: u32) {
        self.open.retain(|o| *o != s);
    }
}

#[test]
fn sockets_follow_the_machine_and_hand_over_the_winner() {
    const MAIN: u32 = 1000;
    let mut net = FakeUdp {
        fail_binds: 1,
        ..FakeUdp::default()
    };
    let mut m = machine(small(), UNIX0_MS - 3000);
    let mut socks: BirthdaySockets<u32, 4> = BirthdaySockets::new();
    m.handle_timeout(at_millis(3000));
    // Socket 0 fails to bind (skipped without spending a tick), 1 and 2
    // open and send, then probes leave from the main socket.
    for t in [3000, 3010, 3020] {
        assert_eq!(socks.act(&mut net, &mut m, MAIN, at_millis(t), b"hb"), None);
    }
    assert_eq!(net.open, [1, 2]);
    assert_eq!(&net.sent[..2], [(1, PEER), (2, PEER)]);
    assert_eq!(net.sent[2].0, MAIN);
    assert_eq!(socks.open_count(), 2);
    assert_eq!(m.stats().open_failed, 1);
    // Junk on socket 2 is ignored; a well-formed datagram wins.
    net.inbox.push((2, PEER, b"junk"));
    net.inbox.push((2, PEER, b"PWB1"));
    let mut buf = [0u8; 64];
    socks.read(&mut net, &mut m, at_millis(3035), &mut buf, |d| {
        d.starts_with(b"PWB1")
    });
    let f = socks.act(&mut net, &mut m, MAIN, at_millis(3035), b"hb");
    assert_eq!(
        f,
        Some(Finish::Winner {
            socket: 2,
            which: Socket::Extra(2),
            peer: PEER
        })
    );
    // The loser closed, the winner is the caller's (still open).
    assert_eq!(net.open, [2]);
    assert_eq!(socks.open_count(), 0);
}
