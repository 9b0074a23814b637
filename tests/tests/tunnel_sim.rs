//! The real tunnel machines and driver, both peers, on the deterministic
//! simulated network (virtual clock, seeded): byte-exact transfers, many
//! streams at once, goodput lower bounds on fixed paths, NAT rebinding and
//! a peer restart. Deterministic, so the bounds cannot flake.

use std::cell::RefCell;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::rc::Rc;

use punchwire_core::net::Wait;
use punchwire_core::time::{Instant, at_millis, micros};
use punchwire_core::tunnel::machine::{MachineConfig, Protocol, Tunnel};
use punchwire_core::tunnel::pw1::{self, Chunk, SentPacket, Storage, Stream};
use punchwire_core::tunnel::{Buffers, Driver, DriverConfig, Flow, Local, Poll, TunnelEvent};
use punchwire_tests::simnet::*;

const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const F: usize = 1024;

fn leak<T>(v: Vec<T>) -> &'static mut [T] {
    Box::leak(v.into_boxed_slice())
}

type D = Rc<RefCell<Driver<'static, SimNet, F>>>;

fn driver(net: &mut SimNet, local: Local, peer: Ipv4Addr, token: u64) -> D {
    let storage = Storage {
        send: leak(vec![Chunk::EMPTY; 1024]),
        recv: leak(vec![Chunk::EMPTY; 2048]),
        sent: leak(vec![SentPacket::EMPTY; 4096]),
        streams: leak(vec![Stream::EMPTY; 64]),
    };
    let mut p = pw1::Config::new(false);
    p.max_streams = 64;
    p.initial_chunks = 8;
    let cfg = MachineConfig {
        peer: SocketAddr::V4(SocketAddrV4::new(peer, 9000)),
        local,
        protocol: Protocol::Pw1,
        prime_ttl: 3,
        normal_ttl: 64,
        heartbeat_ms: 1000,
        silence_ms: 30_000,
        pw1: p,
        token,
    };
    let tunnel = Tunnel::new(cfg, None, Some(storage), net.now());
    let bufs = Buffers {
        rx: leak(vec![0u8; 1401]),
        tx: leak(vec![0u8; 1400]),
        local: leak(vec![0u8; 16384]),
        slots: leak(vec![None; 64]),
    };
    let dcfg = DriverConfig {
        udp_port: 9000,
        local,
        stats_every_ms: None,
    };
    Rc::new(RefCell::new(Driver::new(net, tunnel, dcfg, bufs).unwrap()))
}

fn stepper(d: D) -> impl FnMut(&mut SimNet) -> Option<Instant> {
    move |net: &mut SimNet| match d
        .borrow_mut()
        .poll(net, &mut |_e: TunnelEvent| Flow::Continue)
        .unwrap()
    {
        Poll::Wait(t) => t,
        Poll::Done => None,
    }
}

/// `n` transfers of `up`/`down` bytes through A (-l) and B (-c) on `path`;
/// asserts every one completes byte-exact and returns the aggregate
/// goodput in MB/s from their start to the last finish.
fn run_case(path: PathConfig, seed: u64, n: u64, up: u64, down: u64, limit_ms: u64) -> f64 {
    let w = World::new(seed);
    let a = w.add_node(A);
    let b = w.add_node(B);
    w.link(a, b, path);
    w.serve(b, 8000, Service::Transfer);
    let (mut na, mut nb) = (w.net(a), w.net(b));
    let mut sa = stepper(driver(&mut na, Local::Listen(7000), B, 11));
    let mut sb = stepper(driver(&mut nb, Local::Connect(8000), A, 22));
    let start_ms = 500;
    let ids: Vec<_> = (0..n)
        .map(|i| {
            w.start_transfer_at(
                at_millis(start_ms),
                a,
                7000,
                TransferSpec { seed: i, up, down },
            )
        })
        .collect();
    let r = w.run(
        &mut [(&mut na, &mut sa), (&mut nb, &mut sb)],
        World::transfers_settled,
        at_millis(limit_ms),
    );
    let reps: Vec<_> = ids.iter().map(|&i| w.transfer(i)).collect();
    for (k, t) in reps.iter().enumerate() {
        assert!(t.is_done(), "transfer {k} not done ({r:?}): {t:?}");
        assert!(t.error().is_none(), "transfer {k}: {:?}", t.error());
    }
    let last = reps
        .iter()
        .filter_map(|t| t.finished_at())
        .map(micros)
        .max()
        .unwrap();
    let secs = (last - start_ms * 1000) as f64 / 1e6;
    (n * (up + down)) as f64 / secs / 1e6
}

#[test]
fn clean_path_four_streams_byte_exact() {
    run_case(
        PathConfig::new().delay_ms(5),
        1,
        4,
        1_000_000,
        1_000_000,
        60_000,
    );
}

#[test]
fn thirty_two_streams_on_20ms_with_1pct_loss() {
    let path = PathConfig::new().delay_ms(10).loss(0.01);
    run_case(path, 2, 32, 300_000, 300_000, 120_000);
}

#[test]
fn goodput_lower_bound_50ms_2pct_100mbit() {
    // kcptun got 6.4 MB/s on this path in the lab; kernel BBR 8.75.
    let path = PathConfig::new().delay_ms(25).loss(0.02).rate_mbit(100);
    let g = run_case(path, 3, 4, 5_000_000, 100_000, 120_000);
    eprintln!("goodput {g:.2} MB/s on 50 ms RTT, 2 % loss, 100 Mbit/s");
    assert!(g > 6.0, "goodput {g:.2} MB/s");
}

#[test]
fn nat_rebinding_and_peer_restart() {
    let w = World::new(4);
    let a = w.add_node(A);
    let b = w.add_node(B);
    w.link(a, b, PathConfig::new().delay_ms(10).loss(0.01));
    w.serve(b, 8000, Service::Transfer);
    let (mut na, mut nb) = (w.net(a), w.net(b));
    let mut sa = stepper(driver(&mut na, Local::Listen(7000), B, 11));
    let mut sb = stepper(driver(&mut nb, Local::Connect(8000), A, 22));
    let spec = |seed| TransferSpec {
        seed,
        up: 1_000_000,
        down: 1_000_000,
    };
    let ids: Vec<_> = (0..4)
        .map(|i| w.start_transfer_at(at_millis(500), a, 7000, spec(i)))
        .collect();
    let _ = w.run(
        &mut [(&mut na, &mut sa), (&mut nb, &mut sb)],
        |_| false,
        at_millis(600),
    );
    // A's NAT moves its mapping mid-transfer.
    w.rebind(a, 9000, 9999);
    let settled = |w: &World, ids: &[TransferId]| {
        ids.iter()
            .all(|&i| w.transfer(i).is_done() || w.transfer(i).error().is_some())
    };
    let _ = w.run(
        &mut [(&mut na, &mut sa), (&mut nb, &mut sb)],
        |w| settled(w, &ids),
        at_millis(60_000),
    );
    for &i in &ids {
        assert!(
            w.transfer(i).is_done(),
            "after the rebind: {:?}",
            w.transfer(i)
        );
    }
    // B is killed and started again (a new incarnation): the survivor
    // notices and the next transfers go through, B never restarted by hand.
    let now = micros(w.now()) / 1000;
    w.restart(b);
    let mut sb2 = stepper(driver(&mut nb, Local::Connect(8000), A, 33));
    let ids2: Vec<_> = (10..12)
        .map(|i| w.start_transfer_at(at_millis(now + 2000), a, 7000, spec(i)))
        .collect();
    let _ = w.run(
        &mut [(&mut na, &mut sa), (&mut nb, &mut sb2)],
        |w| settled(w, &ids2),
        at_millis(now + 60_000),
    );
    for &i in &ids2 {
        assert!(
            w.transfer(i).is_done(),
            "after the restart: {:?}",
            w.transfer(i)
        );
    }
}
