//! Birthday punching inside the real tunnel machine and driver (issue 14),
//! both peers on the deterministic simulated network behind simulated NATs
//! (`World::set_nat`: Linux-conntrack-like, port-preserving or
//! port-randomising, port-restricted filtering), on a virtual clock.
//!
//! The tunnel escalates by itself after 3 s of silence; the session after
//! the win is a byte-exact pw1 transfer over the socket and port that won.

use std::cell::RefCell;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::rc::Rc;

use punchwire_core::birthday::{self, Birthday, BirthdayConfig, Socket};
use punchwire_core::net::Wait;
use punchwire_core::time::{Instant, UnixClock, at_millis, micros};
use punchwire_core::tunnel::machine::{Chosen, MachineConfig, Protocol, Tunnel};
use punchwire_core::tunnel::pw1::{self, Chunk, SentPacket, Storage, Stream};
use punchwire_core::tunnel::{
    BirthdayEvent, Buffers, Config, Driver, DriverConfig, Endpoint, Flow, Local, Poll, TunnelEvent,
};
use punchwire_tests::simnet::*;

const A: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const B: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
const F: usize = 1024;
const PORT: u16 = 9000;

fn leak<T>(v: Vec<T>) -> &'static mut [T] {
    Box::leak(v.into_boxed_slice())
}

type D = Rc<RefCell<Driver<'static, SimNet, F>>>;
type Log = Rc<RefCell<Vec<(u64, TunnelEvent)>>>;

/// A pw1 tunnel end; birthday punching when `birthday`, with `k` extra
/// socket slots.
fn driver(
    net: &mut SimNet,
    local: Local,
    peer: Ipv4Addr,
    seed: u64,
    birthday: bool,
    k: usize,
    protocol: Protocol,
) -> D {
    let storage = Storage {
        send: leak(vec![Chunk::EMPTY; 256]),
        recv: leak(vec![Chunk::EMPTY; 512]),
        sent: leak(vec![SentPacket::EMPTY; 1024]),
        streams: leak(vec![Stream::EMPTY; 8]),
    };
    let mut p = pw1::Config::new(false);
    p.max_streams = 8;
    p.initial_chunks = 8;
    let cfg = MachineConfig {
        peer: SocketAddr::V4(SocketAddrV4::new(peer, PORT)),
        local,
        protocol,
        prime_ttl: 3,
        normal_ttl: 64,
        heartbeat_ms: 1000,
        silence_ms: 120_000,
        pw1: p,
        token: seed | 1,
    };
    let now = net.now();
    let v012 = (protocol == Protocol::Auto).then(|| {
        let mut c = Config::new(local.role());
        c.frame_size = 1000;
        Box::leak(Box::new(Endpoint::<1, F>::new(c, now)))
    });
    let mut tunnel = Tunnel::new(cfg, v012, Some(storage), now);
    if birthday {
        // Both sides read the same unix time (a shared clock within ms).
        let unix = UnixClock::from_micros(now, 1_764_000_000_123_456);
        let bc = BirthdayConfig::new(SocketAddrV4::new(peer, PORT));
        tunnel.enable_birthday(Birthday::new(bc, now, unix, seed));
    }
    let bufs = Buffers {
        rx: leak(vec![0u8; 2049]),
        tx: leak(vec![0u8; 2048]),
        local: leak(vec![0u8; 16384]),
        slots: leak(vec![None; 8]),
    };
    let dcfg = DriverConfig {
        udp_port: PORT,
        local,
        stats_every_ms: None,
    };
    let d = Driver::new(net, tunnel, dcfg, bufs).unwrap();
    Rc::new(RefCell::new(d.with_extra_sockets(leak(vec![None; k]))))
}

fn stepper(d: D, log: Log) -> impl FnMut(&mut SimNet) -> Option<Instant> {
    move |net: &mut SimNet| {
        let now = micros(net.now()) / 1000;
        let mut on = |e: TunnelEvent| {
            log.borrow_mut().push((now, e));
            Flow::Continue
        };
        match d.borrow_mut().poll(net, &mut on).unwrap() {
            Poll::Wait(t) => t,
            Poll::Done => None,
        }
    }
}

struct Case {
    nat_a: Nat,
    nat_b: Nat,
    birthday: bool,
    /// Extra socket slots on A and B.
    k: (usize, usize),
    seed: u64,
    limit_ms: u64,
    protocol: Protocol,
}

struct Ran {
    done: bool,
    /// When the transfer finished (ms).
    finished_ms: Option<u64>,
    log_a: Vec<(u64, TunnelEvent)>,
    log_b: Vec<(u64, TunnelEvent)>,
    bday_a: Option<birthday::Stats>,
    bday_b: Option<birthday::Stats>,
    socket_a: Socket,
    socket_b: Socket,
}

/// One 200 kB-each-way transfer from A (-l) to B (-c), started at 0.5 s,
/// on a 10 ms one-way path with 1 % loss.
fn run(c: Case) -> Ran {
    let w = World::new(c.seed);
    let a = w.add_node(A);
    let b = w.add_node(B);
    w.set_nat(a, c.nat_a);
    w.set_nat(b, c.nat_b);
    w.link(a, b, PathConfig::new().delay_ms(10).loss(0.01));
    w.serve(b, 8000, Service::Transfer);
    let (mut na, mut nb) = (w.net(a), w.net(b));
    let da = driver(
        &mut na,
        Local::Listen(7000),
        B,
        c.seed * 2 + 1,
        c.birthday,
        c.k.0,
        c.protocol,
    );
    let db = driver(
        &mut nb,
        Local::Connect(8000),
        A,
        c.seed * 2 + 2,
        c.birthday,
        c.k.1,
        c.protocol,
    );
    let (la, lb): (Log, Log) = Default::default();
    let mut sa = stepper(da.clone(), la.clone());
    let mut sb = stepper(db.clone(), lb.clone());
    let id = w.start_transfer_at(
        at_millis(500),
        a,
        7000,
        TransferSpec {
            seed: c.seed,
            up: 200_000,
            down: 200_000,
        },
    );
    let _ = w.run(
        &mut [(&mut na, &mut sa), (&mut nb, &mut sb)],
        |w| w.transfer(id).is_done() || w.transfer(id).error().is_some(),
        at_millis(c.limit_ms),
    );
    let t = w.transfer(id);
    assert!(t.error().is_none(), "transfer failed: {:?}", t.error());
    let (da, db) = (da.borrow(), db.borrow());
    Ran {
        done: t.is_done(),
        finished_ms: t.finished_at().map(|t| micros(t) / 1000),
        log_a: la.borrow().clone(),
        log_b: lb.borrow().clone(),
        bday_a: da.tunnel.birthday().map(|m| m.stats()),
        bday_b: db.tunnel.birthday().map(|m| m.stats()),
        socket_a: da.tunnel.socket(),
        socket_b: db.tunnel.socket(),
    }
}

fn won(log: &[(u64, TunnelEvent)]) -> Option<(u64, Socket, SocketAddrV4)> {
    log.iter().find_map(|(t, e)| match e {
        TunnelEvent::Birthday(BirthdayEvent::Won { socket, peer, .. }) => {
            Some((*t, *socket, *peer))
        }
        _ => None,
    })
}

fn gave_up(log: &[(u64, TunnelEvent)]) -> Option<u64> {
    log.iter().find_map(|(t, e)| match e {
        TunnelEvent::Birthday(BirthdayEvent::GaveUp(_)) => Some(*t),
        _ => None,
    })
}

fn rounds(log: &[(u64, TunnelEvent)]) -> Vec<u64> {
    log.iter()
        .filter_map(|(t, e)| match e {
            TunnelEvent::Birthday(BirthdayEvent::Round { .. }) => Some(*t),
            _ => None,
        })
        .collect()
}

#[test]
fn easy_nats_need_no_birthday_round() {
    let r = run(Case {
        nat_a: Nat::Preserving,
        nat_b: Nat::Preserving,
        birthday: true,
        k: (256, 256),
        seed: 1,
        limit_ms: 30_000,
        protocol: Protocol::Pw1,
    });
    assert!(r.done, "the ordinary punch connects port-preserving NATs");
    assert!(rounds(&r.log_a).is_empty() && rounds(&r.log_b).is_empty());
    for s in [r.bday_a, r.bday_b] {
        let s = s.unwrap();
        assert_eq!((s.opened, s.extra_sent, s.probes_sent), (0, 0, 0));
    }
    assert_eq!((r.socket_a, r.socket_b), (Socket::Main, Socket::Main));
}

#[test]
fn symmetric_side_without_birthday_never_connects() {
    let r = run(Case {
        nat_a: Nat::Random,
        nat_b: Nat::Preserving,
        birthday: false,
        k: (0, 0),
        seed: 2,
        limit_ms: 40_000,
        protocol: Protocol::Pw1,
    });
    assert!(!r.done);
    assert!(
        !r.log_a
            .iter()
            .any(|(_, e)| matches!(e, TunnelEvent::PeerHeard(_))),
        "a port-randomising NAT cannot be reached by the ordinary punch"
    );
}

/// The symmetric side (A, -l) wins on an extra socket that replaced its
/// main socket; the easy side (B) wins on its main socket, from the port
/// A's NAT gave that extra socket.
#[test]
fn symmetric_a_reached_and_session_byte_exact() {
    let r = run(Case {
        nat_a: Nat::Random,
        nat_b: Nat::Preserving,
        birthday: true,
        k: (256, 256),
        seed: 3,
        limit_ms: 60_000,
        protocol: Protocol::Pw1,
    });
    assert!(r.done, "no session; A: {:?}", r.log_a);
    let (ta, sa, pa) = won(&r.log_a).expect("A won");
    let (tb, sb, pb) = won(&r.log_b).expect("B won");
    assert!(matches!(sa, Socket::Extra(_)), "A won on {sa:?}");
    assert_eq!(sb, Socket::Main);
    assert_eq!(pa, SocketAddrV4::new(B, PORT));
    assert_eq!(*pb.ip(), A);
    assert_ne!(pb.port(), PORT, "A's NAT randomised the winning port");
    assert_eq!((r.socket_a, r.socket_b), (sa, Socket::Main));
    // Escalation after the 3 s silence, on the shared 5 s grid.
    let ra = rounds(&r.log_a);
    assert!(ra[0] >= 3000 && ra[0] <= 5000, "round 1 at {} ms", ra[0]);
    assert!(ta.max(tb) < 30_000, "won at {ta}/{tb} ms");
    let fin = r.finished_ms.unwrap();
    eprintln!("won at A {ta} ms, B {tb} ms; 200 kB each way done at {fin} ms");
    // Polite: the round's budget bounds what each side sent.
    let s = r.bday_a.unwrap();
    assert!(s.extra_sent + s.probes_sent <= 2048, "{s:?}");
}

/// The same with the roles swapped: the symmetric side is the -c side.
#[test]
fn symmetric_b_reached_and_session_byte_exact() {
    let r = run(Case {
        nat_a: Nat::Preserving,
        nat_b: Nat::Random,
        birthday: true,
        k: (256, 256),
        seed: 4,
        limit_ms: 60_000,
        protocol: Protocol::Pw1,
    });
    assert!(r.done, "no session; B: {:?}", r.log_b);
    let (_, sb, _) = won(&r.log_b).expect("B won");
    assert!(matches!(sb, Socket::Extra(_)));
    assert_eq!(r.socket_a, Socket::Main);
}

/// A device with no extra sockets (firmware-sized table 0) still reaches a
/// symmetric peer: it probes, the peer opens the mappings.
#[test]
fn easy_side_with_no_extra_sockets_reaches_symmetric_peer() {
    let r = run(Case {
        nat_a: Nat::Random,
        nat_b: Nat::Preserving,
        birthday: true,
        k: (256, 0),
        seed: 5,
        limit_ms: 60_000,
        protocol: Protocol::Pw1,
    });
    assert!(r.done);
    let s = r.bday_b.unwrap();
    assert_eq!(s.opened, 0);
    assert!(s.open_failed > 0);
}

/// Both symmetric: no hole; both give up after the 3 rounds, within the
/// budget, and the tunnel goes on listening (no session, no panic).
#[test]
fn both_symmetric_give_up_cleanly() {
    let r = run(Case {
        nat_a: Nat::Random,
        nat_b: Nat::Random,
        birthday: true,
        k: (256, 256),
        seed: 6,
        limit_ms: 100_000,
        protocol: Protocol::Pw1,
    });
    assert!(!r.done);
    for (log, s) in [(&r.log_a, r.bday_a), (&r.log_b, r.bday_b)] {
        assert!(won(log).is_none());
        let t = gave_up(log).expect("gave up");
        assert!((60_000..85_000).contains(&t), "gave up at {t} ms");
        assert_eq!(rounds(log).len(), 3);
        let s = s.unwrap();
        assert!(s.extra_sent + s.probes_sent <= 3 * 2048, "{s:?}");
    }
}

/// The probability model end to end through the tunnel: one symmetric
/// side (A or B, alternating), 100 seeds: at least 95 must connect (and
/// finish the session) within 30 s of the start.
#[test]
fn one_symmetric_side_connects_in_95_of_100_seeds() {
    let mut ok = 0;
    let mut times = Vec::new();
    for seed in 100..200 {
        let hard_a = seed % 2 == 0;
        let r = run(Case {
            nat_a: if hard_a { Nat::Random } else { Nat::Preserving },
            nat_b: if hard_a { Nat::Preserving } else { Nat::Random },
            birthday: true,
            k: (256, 256),
            seed,
            limit_ms: 30_000,
            protocol: Protocol::Pw1,
        });
        if r.done {
            ok += 1;
            let (ta, ..) = won(&r.log_a).unwrap();
            times.push(ta);
        }
    }
    times.sort();
    eprintln!(
        "{ok}/100 connected; won at {:?}..{:?} ms, median {:?} ms",
        times.first(),
        times.last(),
        times.get(times.len() / 2)
    );
    assert!(ok >= 95, "{ok}/100");
}

/// `--protocol auto` on the -l side with a local client waiting from
/// 0.5 s: at 3.5 s the silent peer is taken for udphp.py (v0.12, as
/// without birthday punching: udphp.py says nothing until it gets data);
/// a birthday round then reaches the punchwire peer behind its symmetric
/// NAT, and since this side no longer offers pw1 once it chose v0.12, the
/// peer follows into v0.12: the session is byte-exact, not a mismatch.
#[test]
fn auto_protocol_waiting_client_guessed_v012_and_the_peer_follows() {
    let r = run(Case {
        nat_a: Nat::Random,
        nat_b: Nat::Preserving,
        birthday: true,
        k: (256, 256),
        seed: 7,
        limit_ms: 60_000,
        protocol: Protocol::Auto,
    });
    assert!(r.done, "no session; A: {:?}", r.log_a);
    for log in [&r.log_a, &r.log_b] {
        let chosen: Vec<_> = log
            .iter()
            .filter_map(|(_, e)| match e {
                TunnelEvent::Protocol(c) => Some(*c),
                _ => None,
            })
            .collect();
        assert_eq!(chosen, [Chosen::V012]);
    }
    assert!(won(&r.log_a).is_some());
}
