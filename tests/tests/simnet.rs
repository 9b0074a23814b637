//! Self-tests of the simulated network (`punchwire_tests::simnet`): path
//! impairments against their configured rates on seeded runs, determinism,
//! the local TCP semantics, the transfer app and the runner.

use std::net::{Ipv4Addr, SocketAddrV4};

use punchwire_core::net::{ConnectStatus, NetError, Tcp, Udp, Wait};
use punchwire_core::time::{Instant, at_micros, at_millis, micros};
use punchwire_tests::simnet::{
    DropReason, GilbertElliott, PathConfig, QueueLimit, RunError, Service, SimNet, Stepper,
    TcpHandle, TraceWhat, TransferError, TransferSpec, UdpHandle, UplinkConfig, World, fill_stream,
};

const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

fn world(seed: u64, ab: PathConfig) -> (World, SimNet, SimNet) {
    let w = World::new(seed);
    let a = w.add_node(A);
    let b = w.add_node(B);
    w.set_path(a, b, ab);
    (w.clone(), w.net(a), w.net(b))
}

/// Sends datagram `i` (its index in the first 4 bytes, `len` bytes long) at
/// `schedule[i].0` µs.
struct Source {
    sock: UdpHandle,
    to: SocketAddrV4,
    schedule: Vec<(u64, usize)>,
    next: usize,
}

impl Source {
    fn new(net: &mut SimNet, to: SocketAddrV4, schedule: Vec<(u64, usize)>) -> Source {
        Source {
            sock: net.udp_bind(1000).unwrap(),
            to,
            schedule,
            next: 0,
        }
    }

    /// `n` datagrams of `len` bytes, one every `every_us`.
    fn periodic(net: &mut SimNet, n: usize, every_us: u64, len: usize) -> Source {
        let to = SocketAddrV4::new(B, 2000);
        Source::new(
            net,
            to,
            (0..n).map(|i| (i as u64 * every_us, len)).collect(),
        )
    }
}

impl Stepper for Source {
    fn poll(&mut self, net: &mut SimNet) -> Option<Instant> {
        let now = micros(net.now());
        while let Some(&(at, len)) = self.schedule.get(self.next) {
            if at > now {
                return Some(at_micros(at));
            }
            let mut d = vec![0u8; len.max(4)];
            d[..4].copy_from_slice(&(self.next as u32).to_le_bytes());
            net.udp_send_to(self.sock, &d[..len.max(4)], self.to)
                .unwrap();
            self.next += 1;
        }
        None
    }
}

/// Receives everything on port 2000 and records (index, arrival µs, from).
struct Sink {
    sock: UdpHandle,
    got: Vec<(u32, u64, SocketAddrV4)>,
}

impl Sink {
    fn new(net: &mut SimNet) -> Sink {
        Sink {
            sock: net.udp_bind(2000).unwrap(),
            got: Vec::new(),
        }
    }

    fn indices(&self) -> Vec<u32> {
        self.got.iter().map(|g| g.0).collect()
    }
}

impl Stepper for Sink {
    fn poll(&mut self, net: &mut SimNet) -> Option<Instant> {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = net.udp_recv_from(self.sock, &mut buf) {
            assert!(n >= 4);
            let i = u32::from_le_bytes(buf[..4].try_into().unwrap());
            self.got.push((i, micros(net.now()), from));
        }
        None
    }
}

/// Runs a source on A and a sink on B until nothing is left to happen.
fn pump(seed: u64, cfg: PathConfig, n: usize, every_us: u64, len: usize) -> (World, Sink) {
    let (w, mut na, mut nb) = world(seed, cfg);
    let mut src = Source::periodic(&mut na, n, every_us, len);
    let mut sink = Sink::new(&mut nb);
    let r = w.run(
        &mut [(&mut na, &mut src), (&mut nb, &mut sink)],
        |_| false,
        at_millis(3_600_000),
    );
    assert!(matches!(r, Err(RunError::Idle { .. })), "{r:?}");
    (w, sink)
}

fn ab(w: &World) -> punchwire_tests::simnet::PathStats {
    w.path_stats(
        punchwire_tests::simnet::NodeId(0),
        punchwire_tests::simnet::NodeId(1),
    )
}

#[test]
fn delay_is_exact_and_jitter_is_bounded_and_seeded() {
    let (_, sink) = pump(1, PathConfig::new().delay_ms(25), 50, 1000, 100);
    for &(i, at, from) in &sink.got {
        assert_eq!(at, u64::from(i) * 1000 + 25_000);
        assert_eq!(from, SocketAddrV4::new(A, 1000));
    }
    assert_eq!(sink.got.len(), 50);

    let cfg = PathConfig::new().delay_ms(25).jitter_ms(5);
    let (_, s1) = pump(1, cfg, 500, 1000, 100);
    let (_, s2) = pump(1, cfg, 500, 1000, 100);
    let (_, s3) = pump(2, cfg, 500, 1000, 100);
    assert_eq!(s1.got, s2.got, "same seed, same arrivals");
    assert_ne!(s1.got, s3.got, "another seed, other arrivals");
    // FIFO by default: jitter alone never reorders, and never makes a
    // datagram early.
    assert_eq!(s1.indices(), (0..500).collect::<Vec<_>>());
    let mut late = 0;
    for &(i, at, _) in &s1.got {
        let sent = u64::from(i) * 1000;
        assert!(
            at >= sent + 20_000 && at <= sent + 30_000 + 5_000,
            "{i} at {at}"
        );
        late = late.max(at - sent);
    }
    assert!(late > 29_000, "jitter reaches its bound: {late}");

    // Netem-style: jitter reorders, each arrival within ±5 ms exactly.
    let (_, s) = pump(1, cfg.keep_order(false), 500, 1000, 100);
    let mut delays: Vec<u64> = s
        .got
        .iter()
        .map(|&(i, at, _)| at - u64::from(i) * 1000)
        .collect();
    assert!(delays.iter().all(|&d| (20_000..=30_000).contains(&d)));
    assert_ne!(s.indices(), (0..500).collect::<Vec<_>>(), "reordered");
    delays.sort_unstable();
    let mean = delays.iter().sum::<u64>() / delays.len() as u64;
    assert!((24_500..=25_500).contains(&mean), "mean delay {mean}");
}

/// Lengths of the runs of consecutive lost datagrams.
fn loss_runs(got: &[u32], n: u32) -> Vec<u32> {
    let mut seen = vec![false; n as usize];
    for &i in got {
        seen[i as usize] = true;
    }
    let mut runs = Vec::new();
    let mut run = 0;
    for s in seen {
        if s {
            if run > 0 {
                runs.push(run);
            }
            run = 0;
        } else {
            run += 1;
        }
    }
    if run > 0 {
        runs.push(run);
    }
    runs
}

#[test]
fn random_loss_rate_within_tolerance() {
    let n = 20_000;
    let (w, sink) = pump(3, PathConfig::new().delay_ms(5).loss(0.05), n, 100, 200);
    let st = ab(&w);
    assert_eq!(st.sent, n as u64);
    assert_eq!(st.delivered + st.dropped_loss, st.sent);
    assert_eq!(st.delivered, sink.got.len() as u64);
    let rate = st.dropped_loss as f64 / n as f64;
    assert!((0.045..0.055).contains(&rate), "loss {rate}");
    let runs = loss_runs(&sink.indices(), n as u32);
    let mean_run = runs.iter().sum::<u32>() as f64 / runs.len() as f64;
    assert!(mean_run < 1.15, "random loss is not bursty: {mean_run}");
}

#[test]
fn burst_loss_rate_and_burst_length_within_tolerance() {
    let ge = GilbertElliott {
        enter_bad: 0.01,
        leave_bad: 0.25,
        loss_good: 0.0,
        loss_bad: 1.0,
    };
    assert!((ge.mean_loss() - 0.0385).abs() < 0.001);
    let n = 50_000;
    let (w, sink) = pump(4, PathConfig::new().burst(ge), n, 100, 200);
    let st = ab(&w);
    assert_eq!(st.dropped_burst + st.delivered, n as u64);
    let rate = st.dropped_burst as f64 / n as f64;
    assert!((0.033..0.044).contains(&rate), "burst loss {rate}");
    let runs = loss_runs(&sink.indices(), n as u32);
    let mean_run = runs.iter().sum::<u32>() as f64 / runs.len() as f64;
    assert!(
        (3.5..4.5).contains(&mean_run),
        "mean burst {mean_run}, want 1/leave_bad = 4"
    );
}

#[test]
fn duplication() {
    let n = 10_000;
    let (w, sink) = pump(5, PathConfig::new().delay_ms(1).duplicate(0.1), n, 100, 200);
    let st = ab(&w);
    let dup = st.duplicated as f64 / n as f64;
    assert!((0.09..0.11).contains(&dup), "dup {dup}");
    assert_eq!(st.delivered, n as u64 + st.duplicated);
    let mut count = vec![0; n];
    for i in sink.indices() {
        count[i as usize] += 1;
    }
    assert!(count.iter().all(|&c| c == 1 || c == 2));
    assert_eq!(
        count.iter().filter(|&&c| c == 2).count() as u64,
        st.duplicated
    );
}

#[test]
fn reordering() {
    let n = 10_000;
    // One datagram a millisecond; a reordered one is 3.5 ms late, so it
    // lands behind the next three.
    let cfg = PathConfig::new()
        .delay_ms(10)
        .reorder(0.05, 3)
        .delay_us(10_500);
    let (w, sink) = pump(6, cfg, n, 1000, 200);
    let st = ab(&w);
    let frac = st.reordered as f64 / n as f64;
    assert!((0.044..0.056).contains(&frac), "reordered {frac}");
    assert_eq!(sink.got.len(), n);
    // Every reordered datagram arrives after a later one, exactly 3 ms late.
    let late: Vec<_> = sink
        .got
        .iter()
        .filter(|g| g.1 - u64::from(g.0) * 1000 != 10_500)
        .collect();
    assert_eq!(late.len() as u64, st.reordered);
    assert!(late.iter().all(|g| g.1 - u64::from(g.0) * 1000 == 13_500));
    let inversions = sink.got.windows(2).filter(|p| p[1].0 < p[0].0).count() as u64;
    assert!(inversions > 0 && inversions <= st.reordered);
}

#[test]
fn rate_limit_gives_the_configured_throughput() {
    // 1 MB/s bottleneck, 50 ms queue, offered 2 MB/s of 1000-byte payloads
    // for 2 s.
    let cfg = PathConfig::new()
        .delay_ms(10)
        .rate(1_000_000)
        .queue(QueueLimit::Millis(50));
    let (w, sink) = pump(7, cfg, 4000, 514, 1000);
    let st = ab(&w);
    assert_eq!(st.delivered + st.dropped_queue, 4000);
    let first = sink.got.first().unwrap().1;
    let last = sink.got.last().unwrap().1;
    let bytes = (sink.got.len() as u64 - 1) * 1028;
    let rate = bytes as f64 / ((last - first) as f64 / 1e6);
    assert!(
        (990_000.0..1_010_000.0).contains(&rate),
        "throughput {rate}"
    );
    // The queue never holds more than 50 ms.
    for &(i, at, _) in &sink.got {
        let sent = u64::from(i) * 514;
        assert!(at - sent <= 10_000 + 50_000 + 1_100, "{i}: {}", at - sent);
    }
    // An idle bottleneck adds only the transmission time (1028 µs).
    let (_, s) = pump(7, cfg, 3, 100_000, 1000);
    assert_eq!(s.got[1].1, 100_000 + 1028 + 10_000);
}

#[test]
fn bottleneck_queue_in_bytes_drops_tail() {
    let cfg = PathConfig::new()
        .rate(1_000_000)
        .queue(QueueLimit::Bytes(5000));
    // Ten 1000-byte datagrams at once: 4 × 1028 bytes fit in 5000.
    let (w, sink) = pump(8, cfg, 10, 0, 1000);
    assert_eq!(sink.indices(), vec![0, 1, 2, 3]);
    assert_eq!(ab(&w).dropped_queue, 6);
    let times: Vec<u64> = sink.got.iter().map(|g| g.1).collect();
    assert_eq!(times, vec![1028, 2056, 3084, 4112]);
}

#[test]
fn mtu_drops_datagrams_above_it() {
    let (w, mut na, mut nb) = world(9, PathConfig::new().mtu(1400));
    let s = na.udp_bind(0).unwrap();
    let r = nb.udp_bind(2000).unwrap();
    let to = SocketAddrV4::new(B, 2000);
    na.udp_send_to(s, &[1; 1372], to).unwrap();
    na.udp_send_to(s, &[2; 1373], to).unwrap();
    w.advance_to(at_millis(1));
    let mut buf = [0; 2000];
    assert_eq!(nb.udp_recv_from(r, &mut buf).unwrap().0, 1372);
    assert_eq!(nb.udp_recv_from(r, &mut buf), Err(NetError::WouldBlock));
    assert_eq!(ab(&w).dropped_mtu, 1);
    assert_eq!(na.udp_send_to(s, &[0; 65_508], to), Err(NetError::TooLong));
}

#[test]
fn receive_queue_overflow_is_dropped_and_counted() {
    let (w, mut na, mut nb) = world(10, PathConfig::new());
    // Ten datagrams of 1000 bytes, each charged 768 bytes besides.
    w.set_udp_rx_limit(nb.node(), 10 * 1768);
    let s = na.udp_bind(0).unwrap();
    let r = nb.udp_bind(2000).unwrap();
    for _ in 0..20 {
        na.udp_send_to(s, &[7; 1000], SocketAddrV4::new(B, 2000))
            .unwrap();
    }
    w.advance_to(at_millis(1));
    assert_eq!(ab(&w).dropped_rx_overflow, 10);
    assert_eq!(w.udp_overflows(nb.node(), 2000), 10);
    let mut buf = [0; 100];
    // A datagram larger than the buffer is consumed with TooLong.
    assert_eq!(nb.udp_recv_from(r, &mut buf), Err(NetError::TooLong));
    let mut buf = [0; 1000];
    let mut n = 0;
    while nb.udp_recv_from(r, &mut buf).is_ok() {
        n += 1;
    }
    assert_eq!(n, 9);
}

#[test]
fn udp_bind_send_and_ttl() {
    let (w, mut na, mut nb) = world(11, PathConfig::new().delay_ms(1).hops(3));
    let s = na.udp_bind(5000).unwrap();
    assert_eq!(na.udp_bind(5000), Err(NetError::AddrInUse));
    assert!(nb.udp_bind(5000).is_ok(), "ports are per node");
    let e1 = na.udp_bind(0).unwrap();
    let e2 = na.udp_bind(0).unwrap();
    assert_ne!(e1, e2);
    w.trace(true);
    na.udp_set_ttl(s, 3).unwrap();
    na.udp_send_to(s, b"prime", SocketAddrV4::new(B, 5000))
        .unwrap();
    na.udp_set_ttl(s, 64).unwrap();
    na.udp_send_to(s, b"real", SocketAddrV4::new(B, 5000))
        .unwrap();
    na.udp_send_to(s, b"void", SocketAddrV4::new(Ipv4Addr::new(9, 9, 9, 9), 1))
        .unwrap();
    w.advance_to(at_millis(2));
    let t = w.take_trace();
    let ttls: Vec<(u8, TraceWhat)> = t.iter().map(|e| (e.ttl, e.what)).collect();
    assert_eq!(
        ttls,
        vec![
            (3, TraceWhat::Dropped(DropReason::Ttl)),
            (
                64,
                TraceWhat::Sent {
                    arrives: at_millis(1)
                }
            ),
            (64, TraceWhat::Dropped(DropReason::Unroutable)),
            (64, TraceWhat::Delivered),
        ]
    );
    assert_eq!(w.stats().unroutable, 1);
    na.udp_close(s);
    assert_eq!(
        na.udp_send_to(s, b"x", SocketAddrV4::new(B, 5000)),
        Err(NetError::Closed)
    );
    assert!(na.udp_bind(5000).is_ok());
}

#[test]
fn blackout_for_a_while() {
    let cfg = PathConfig::new().delay_ms(5);
    let (w, mut na, mut nb) = world(12, cfg);
    w.schedule_path(at_millis(100), na.node(), nb.node(), cfg.down(true));
    w.schedule_path(at_millis(300), na.node(), nb.node(), cfg);
    let mut src = Source::periodic(&mut na, 50, 10_000, 100);
    let mut sink = Sink::new(&mut nb);
    let _ = w.run(
        &mut [(&mut na, &mut src), (&mut nb, &mut sink)],
        |_| false,
        at_millis(10_000),
    );
    let want: Vec<u32> = (0..10).chain(30..50).collect();
    assert_eq!(sink.indices(), want);
    assert_eq!(ab(&w).dropped_down, 20);
}

/// Answers every datagram on port 7 with the same bytes.
struct Echo(UdpHandle);

impl Stepper for Echo {
    fn poll(&mut self, net: &mut SimNet) -> Option<Instant> {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = net.udp_recv_from(self.0, &mut buf) {
            net.udp_send_to(self.0, &buf[..n], from).unwrap();
        }
        None
    }
}

/// Pings every 10 ms, records round trips.
struct Pinger {
    sock: UdpHandle,
    to: SocketAddrV4,
    next_at: u64,
    sent: u32,
    rtts: Vec<u64>,
}

impl Stepper for Pinger {
    fn poll(&mut self, net: &mut SimNet) -> Option<Instant> {
        let now = micros(net.now());
        let mut buf = [0u8; 64];
        while let Ok((n, _)) = net.udp_recv_from(self.sock, &mut buf) {
            let sent_at = u64::from_le_bytes(buf[..n].try_into().unwrap());
            self.rtts.push(now - sent_at);
        }
        if now >= self.next_at {
            net.udp_send_to(self.sock, &now.to_le_bytes(), self.to)
                .unwrap();
            self.sent += 1;
            self.next_at = now + 10_000;
        }
        Some(at_micros(self.next_at))
    }
}

fn echo_run(seed: u64) -> (Vec<u64>, Vec<punchwire_tests::simnet::TraceEntry>) {
    let w = World::new(seed);
    let a = w.add_node(A);
    let b = w.add_node(B);
    w.link(a, b, PathConfig::new().delay_ms(20).jitter_ms(3).loss(0.1));
    w.trace(true);
    let (mut na, mut nb) = (w.net(a), w.net(b));
    let mut echo = Echo(nb.udp_bind(7).unwrap());
    let mut ping = Pinger {
        sock: na.udp_bind(0).unwrap(),
        to: SocketAddrV4::new(B, 7),
        next_at: 0,
        sent: 0,
        rtts: Vec::new(),
    };
    let end = w
        .run(
            &mut [(&mut na, &mut ping), (&mut nb, &mut echo)],
            |_| false,
            at_millis(2_000),
        )
        .unwrap_err();
    assert_eq!(
        end,
        RunError::TimeLimit {
            now: at_millis(2_000)
        }
    );
    assert_eq!(ping.sent, 201);
    (ping.rtts, w.take_trace())
}

#[test]
fn udp_echo_stepper_and_determinism() {
    let (rtts, trace) = echo_run(42);
    assert!(
        rtts.len() > 140 && rtts.len() < 180,
        "{} replies",
        rtts.len()
    );
    assert!(rtts.iter().all(|&r| (34_000..=46_000).contains(&r)));
    let (rtts2, trace2) = echo_run(42);
    assert_eq!(rtts, rtts2);
    assert_eq!(trace, trace2, "one seed, one trace");
    let (_, trace3) = echo_run(43);
    assert_ne!(trace, trace3);
}

#[test]
fn local_tcp_accept_partial_writes_fin() {
    let w = World::new(1);
    let a = w.add_node(A);
    let mut net = w.net(a);
    let l = net.tcp_listen(8080).unwrap();
    assert_eq!(net.tcp_listen(8080), Err(NetError::AddrInUse));
    assert_eq!(net.tcp_accept(l), Err(NetError::WouldBlock));
    assert_eq!(w.connect_client(a, 8081).unwrap_err(), NetError::Refused);
    let app = w.connect_client(a, 8080).unwrap();
    let s = net.tcp_accept(l).unwrap();
    assert_eq!(net.tcp_status(s), ConnectStatus::Connected);

    // Node → app: a 64 KiB socket buffer, partial writes, then WouldBlock.
    let big = vec![5u8; 100_000];
    assert_eq!(net.tcp_write(s, &big), Ok(65_536));
    assert_eq!(net.tcp_write(s, &big), Err(NetError::WouldBlock));
    let mut buf = vec![0; 50_000];
    assert_eq!(app.read(&mut buf), Ok(50_000));
    assert_eq!(net.tcp_write(s, &big), Ok(50_000));
    // Receive limit: a slow reader takes 10 bytes, then nothing.
    app.set_receive_limit(Some(10));
    assert_eq!(app.read(&mut buf), Ok(10));
    assert_eq!(app.read(&mut buf), Err(NetError::WouldBlock));
    app.resume();
    let (got, fin) = app.read_available().unwrap();
    assert_eq!((got.len(), fin), (65_526, false));

    // App → node, then FIN each way.
    assert_eq!(app.write(b"hello"), Ok(5));
    app.shutdown_write().unwrap();
    assert_eq!(app.write(b"more"), Err(NetError::Closed));
    let mut b = [0; 16];
    assert_eq!(net.tcp_read(s, &mut b), Ok(5));
    assert_eq!(net.tcp_read(s, &mut b), Ok(0));
    assert_eq!(net.tcp_read(s, &mut b), Ok(0));
    net.tcp_write(s, b"bye").unwrap();
    net.tcp_shutdown_write(s).unwrap();
    assert_eq!(app.read_available().unwrap(), (b"bye".to_vec(), true));
    net.tcp_close(s);
    assert_eq!(net.tcp_read(s, &mut b), Err(NetError::Closed));
    assert!(app.peer_closed());
}

#[test]
fn local_tcp_reset_and_close_with_unread_bytes() {
    let w = World::new(1);
    let a = w.add_node(A);
    let mut net = w.net(a);
    let l = net.tcp_listen(80).unwrap();
    let app = w.connect_client(a, 80).unwrap();
    let s = net.tcp_accept(l).unwrap();
    net.tcp_write(s, b"data").unwrap();
    app.reset();
    let mut b = [0; 16];
    assert_eq!(net.tcp_read(s, &mut b), Err(NetError::Reset));
    assert_eq!(net.tcp_write(s, b"x"), Err(NetError::Reset));
    net.tcp_close(s);

    // Closing with unread received bytes resets the peer (Linux).
    let app = w.connect_client(a, 80).unwrap();
    let s = net.tcp_accept(l).unwrap();
    app.write(b"unread").unwrap();
    net.tcp_close(s);
    assert!(app.is_reset());
    assert_eq!(app.read(&mut b), Err(NetError::Reset));

    // A graceful close: FIN; writing to the closed peer then resets.
    let app = w.connect_client(a, 80).unwrap();
    let s = net.tcp_accept(l).unwrap();
    net.tcp_close(s);
    assert_eq!(app.read(&mut b), Ok(0));
    assert_eq!(app.write(b"late"), Err(NetError::Reset));

    // Unlistening resets connections still in the backlog.
    let app = w.connect_client(a, 80).unwrap();
    net.tcp_unlisten(l);
    assert!(app.is_reset());
    assert_eq!(w.connect_client(a, 80).unwrap_err(), NetError::Refused);
}

fn status_after(w: &World, net: &mut SimNet, s: TcpHandle) -> (ConnectStatus, ConnectStatus) {
    let first = net.tcp_status(s);
    w.advance_to(at_micros(micros(w.now()) + 50));
    (first, net.tcp_status(s))
}

#[test]
fn local_connect_accept_refuse_and_never_read() {
    let w = World::new(1);
    let b = w.add_node(B);
    let mut net = w.net(b);
    w.serve(b, 22, Service::Accept);
    w.serve(b, 23, Service::Refuse);
    w.serve(b, 24, Service::AcceptNoRead);

    let s = net.tcp_connect_local(22).unwrap();
    let mut buf = [0; 8];
    assert_eq!(net.tcp_read(s, &mut buf), Err(NetError::WouldBlock));
    assert_eq!(
        status_after(&w, &mut net, s),
        (ConnectStatus::Pending, ConnectStatus::Connected)
    );
    let svc = w.accepted(b, 22).unwrap();
    net.tcp_write(s, b"ssh").unwrap();
    assert_eq!(svc.read_available().unwrap(), (b"ssh".to_vec(), false));

    let s = net.tcp_connect_local(23).unwrap();
    assert_eq!(
        status_after(&w, &mut net, s),
        (
            ConnectStatus::Pending,
            ConnectStatus::Failed(NetError::Refused)
        )
    );
    let s = net.tcp_connect_local(25).unwrap();
    assert_eq!(
        status_after(&w, &mut net, s),
        (
            ConnectStatus::Pending,
            ConnectStatus::Failed(NetError::Refused)
        )
    );

    let s = net.tcp_connect_local(24).unwrap();
    w.advance_to(at_micros(micros(w.now()) + 50));
    assert_eq!(net.tcp_status(s), ConnectStatus::Connected);
    let chunk = [1u8; 10_000];
    let mut total = 0;
    while let Ok(n) = net.tcp_write(s, &chunk) {
        total += n;
    }
    assert_eq!(total, 65_536, "a reader that never reads fills the buffer");
    assert_eq!(net.tcp_write(s, &chunk), Err(NetError::WouldBlock));
    let stalled = w.accepted(b, 24).unwrap();
    stalled.resume();
    assert_eq!(stalled.read_available().unwrap().0.len(), 65_536);
    assert_eq!(net.tcp_write(s, &chunk), Ok(10_000));
}

#[test]
fn wait_advances_to_the_next_event_or_deadline() {
    let (w, mut na, mut nb) = world(1, PathConfig::new().delay_ms(30));
    let s = na.udp_bind(0).unwrap();
    let r = nb.udp_bind(9).unwrap();
    na.udp_send_to(s, b"x", SocketAddrV4::new(B, 9)).unwrap();
    assert_eq!(nb.wait(Some(at_millis(10))), Ok(at_millis(10)));
    assert_eq!(nb.wait(Some(at_millis(100))), Ok(at_millis(30)));
    let mut buf = [0; 4];
    assert_eq!(nb.udp_recv_from(r, &mut buf).unwrap().0, 1);
    assert_eq!(
        nb.wait(Some(at_millis(5))),
        Ok(at_millis(30)),
        "past deadline"
    );
    assert_eq!(nb.wait(None), Err(NetError::TimedOut), "nothing can happen");
    assert_eq!(w.now(), at_millis(30));
}

/// A one-node splice standing in for the tunnel: every client accepted on
/// 7000 is connected to the service on 8000, bytes and FINs copied both
/// ways, partial writes kept for later. It polls every 100 µs while a pair
/// is open (no readiness in this little splice).
struct Splice {
    listener: <SimNet as Tcp>::Listener,
    pairs: Vec<SplicePair>,
}

struct SplicePair {
    ends: [TcpHandle; 2],
    /// Per direction (0: client → service): bytes read, not yet written.
    pending: [Vec<u8>; 2],
    fin: [bool; 2],
    closed: bool,
}

impl Splice {
    fn new(net: &mut SimNet) -> Splice {
        Splice {
            listener: net.tcp_listen(7000).unwrap(),
            pairs: Vec::new(),
        }
    }
}

impl Stepper for Splice {
    fn poll(&mut self, net: &mut SimNet) -> Option<Instant> {
        while let Ok(c) = net.tcp_accept(self.listener) {
            let service = net.tcp_connect_local(8000).unwrap();
            self.pairs.push(SplicePair {
                ends: [c, service],
                pending: [Vec::new(), Vec::new()],
                fin: [false; 2],
                closed: false,
            });
        }
        for p in self.pairs.iter_mut().filter(|p| !p.closed) {
            match net.tcp_status(p.ends[1]) {
                ConnectStatus::Connected => {}
                ConnectStatus::Failed(_) => {
                    net.tcp_close(p.ends[0]);
                    p.closed = true;
                    continue;
                }
                _ => continue,
            }
            for dir in 0..2 {
                let (from, to) = (p.ends[dir], p.ends[1 - dir]);
                let mut buf = [0u8; 4096];
                while !p.fin[dir] {
                    if !p.pending[dir].is_empty() {
                        match net.tcp_write(to, &p.pending[dir]) {
                            Ok(n) => drop(p.pending[dir].drain(..n)),
                            Err(_) => break,
                        }
                        continue;
                    }
                    match net.tcp_read(from, &mut buf) {
                        Ok(0) => {
                            net.tcp_shutdown_write(to).unwrap();
                            p.fin[dir] = true;
                        }
                        Ok(n) => p.pending[dir].extend_from_slice(&buf[..n]),
                        Err(_) => break,
                    }
                }
            }
            if p.fin == [true; 2] {
                net.tcp_close(p.ends[0]);
                net.tcp_close(p.ends[1]);
                p.closed = true;
            }
        }
        self.pairs
            .iter()
            .any(|p| !p.closed)
            .then(|| at_micros(micros(net.now()) + 100))
    }
}

#[test]
fn transfer_app_32_concurrent_byte_exact() {
    let w = World::new(77);
    let a = w.add_node(A);
    let mut net = w.net(a);
    w.set_tcp_buffer(a, 1 << 20);
    w.serve(a, 8000, Service::Transfer);
    let mut splice = Splice::new(&mut net);
    let ids: Vec<_> = (0..32u64)
        .map(|i| {
            w.start_transfer(
                a,
                7000,
                TransferSpec {
                    seed: 1000 + i,
                    up: 10_000 + i * 3_001,
                    down: 50_000 - i * 999,
                },
            )
        })
        .collect();
    let done = w
        .run(
            &mut [(&mut net, &mut splice)],
            World::transfers_settled,
            at_millis(10_000),
        )
        .unwrap();
    assert!(micros(done) < 10_000);
    for id in ids {
        let t = w.transfer(id);
        assert!(t.is_done(), "{t:?}");
        let s = t.server.unwrap();
        assert_eq!((t.client.sent, s.received), (t.spec.up, t.spec.up));
        assert_eq!((s.sent, t.client.received), (t.spec.down, t.spec.down));
        assert!(t.finished_at().is_some());
    }
}

/// Copies bytes from the client on 7000 to the service on 8000, flipping
/// one byte at `corrupt_at` and optionally duplicating the first chunk.
#[test]
fn transfer_app_detects_corruption_short_and_excess() {
    let w = World::new(1);
    let a = w.add_node(A);
    let mut net = w.net(a);
    w.serve(a, 8000, Service::Transfer);
    let l = net.tcp_listen(7000).unwrap();
    let run = |f: &dyn Fn(&mut SimNet, TcpHandle, TcpHandle)| {
        let mut net = w.net(a);
        let id = w.start_transfer(
            a,
            7000,
            TransferSpec {
                seed: 9,
                up: 1000,
                down: 0,
            },
        );
        let c = net.tcp_accept(l).unwrap();
        let s = net.tcp_connect_local(8000).unwrap();
        w.advance_to(at_micros(micros(w.now()) + 100));
        f(&mut net, c, s);
        w.advance_to(at_micros(micros(w.now()) + 100));
        w.transfer(id)
    };
    let copy = |net: &mut SimNet, c: TcpHandle, s: TcpHandle, edit: &dyn Fn(&mut Vec<u8>)| {
        let mut buf = vec![0; 4096];
        let n = net.tcp_read(c, &mut buf).unwrap();
        buf.truncate(n);
        edit(&mut buf);
        net.tcp_write(s, &buf).unwrap();
        net.tcp_shutdown_write(s).unwrap();
    };
    let t = run(&|net, c, s| copy(net, c, s, &|b| b[32 + 700] ^= 1));
    assert_eq!(
        t.server.unwrap().error,
        Some(TransferError::Mismatch { offset: 700 })
    );
    let t = run(&|net, c, s| copy(net, c, s, &|b| b.truncate(32 + 999)));
    assert_eq!(
        t.server.unwrap().error,
        Some(TransferError::Short { received: 999 })
    );
    let t = run(&|net, c, s| copy(net, c, s, &|b| b.push(0)));
    assert_eq!(
        t.server.unwrap().error,
        Some(TransferError::Excess { received: 1001 })
    );
    let t = run(&|net, c, s| copy(net, c, s, &|_| {}));
    assert!(t.server.unwrap().done_at.is_some());
    // The server finished; the client still waits for the server's FIN
    // through a splice that is not there.
    assert!(!t.is_done() && t.error().is_none());

    let mut want = [0u8; 20];
    fill_stream(9, 5, &mut want);
    let mut whole = [0u8; 25];
    fill_stream(9, 0, &mut whole);
    assert_eq!(want, whole[5..]);
}

#[test]
fn transfer_to_nothing_is_refused() {
    let w = World::new(1);
    let a = w.add_node(A);
    let id = w.start_transfer(
        a,
        7000,
        TransferSpec {
            seed: 1,
            up: 1,
            down: 1,
        },
    );
    assert_eq!(w.transfer(id).error(), Some(TransferError::Refused));
    assert!(w.transfers_settled());
}

#[test]
fn inject_rebind_and_restart() {
    let (w, mut na, mut nb) = world(1, PathConfig::new().delay_ms(1));
    w.link(na.node(), nb.node(), PathConfig::new().delay_ms(1));
    let s = na.udp_bind(4000).unwrap();
    let r = nb.udp_bind(5000).unwrap();
    let forged = SocketAddrV4::new(Ipv4Addr::new(6, 6, 6, 6), 666);
    for i in 0..100u64 {
        w.inject(at_micros(i), forged, SocketAddrV4::new(B, 5000), b"junk");
    }
    w.inject(at_micros(0), forged, SocketAddrV4::new(B, 5001), b"junk");
    w.advance_to(at_millis(1));
    let mut buf = [0; 16];
    let mut n = 0;
    while let Ok((4, from)) = nb.udp_recv_from(r, &mut buf) {
        assert_eq!(from, forged);
        n += 1;
    }
    assert_eq!(n, 100);
    let st = w.stats();
    assert_eq!(
        (st.injected, st.injected_delivered, st.injected_dropped),
        (101, 100, 1)
    );

    // NAT rebinding: A's port 4000 now appears as 4444, both ways.
    w.rebind(na.node(), 4000, 4444);
    na.udp_send_to(s, b"hi", SocketAddrV4::new(B, 5000))
        .unwrap();
    w.advance_to(at_millis(3));
    let (_, from) = nb.udp_recv_from(r, &mut buf).unwrap();
    assert_eq!(from, SocketAddrV4::new(A, 4444));
    nb.udp_send_to(r, b"back", from).unwrap();
    w.advance_to(at_millis(5));
    assert_eq!(na.udp_recv_from(s, &mut buf).unwrap().0, 4);

    // Restart: sockets vanish, local streams see FIN, ports are free again.
    let l = nb.tcp_listen(80).unwrap();
    let app = w.connect_client(nb.node(), 80).unwrap();
    let t = nb.tcp_accept(l).unwrap();
    nb.tcp_write(t, b"last words").unwrap();
    w.restart(nb.node());
    assert_eq!(nb.udp_recv_from(r, &mut buf), Err(NetError::Closed));
    assert_eq!(nb.tcp_read(t, &mut buf), Err(NetError::Closed));
    assert_eq!(nb.tcp_accept(l), Err(NetError::Closed));
    assert_eq!(
        app.read_available().unwrap(),
        (b"last words".to_vec(), true)
    );
    na.udp_send_to(s, b"lost", SocketAddrV4::new(B, 5000))
        .unwrap();
    w.advance_to(at_millis(7));
    let r2 = nb.udp_bind(5000).unwrap();
    assert_eq!(nb.udp_recv_from(r2, &mut buf), Err(NetError::WouldBlock));
    assert_eq!(w.path_stats(na.node(), nb.node()).dropped_no_socket, 1);
    assert_eq!(w.restarts(nb.node()), 1);
}

struct Spinner;

impl Stepper for Spinner {
    fn poll(&mut self, net: &mut SimNet) -> Option<Instant> {
        Some(net.now())
    }
}

#[test]
#[should_panic(expected = "simnet livelock: node 0 (10.0.0.1) answered deadline 0 µs <= now 0 µs")]
fn runner_reports_a_node_spinning_on_now() {
    let w = World::new(1);
    let a = w.add_node(A);
    let mut net = w.net(a);
    let _ = w.run(&mut [(&mut net, &mut Spinner)], |_| false, at_millis(1000));
}

#[test]
fn slow_reader_paces_the_transfer_and_stall_blocks_it() {
    let w = World::new(5);
    let a = w.add_node(A);
    let mut net = w.net(a);
    w.serve(
        a,
        8000,
        Service::SlowTransfer {
            read_rate: 1_000_000,
        },
    );
    let mut splice = Splice::new(&mut net);
    let id = w.start_transfer(
        a,
        7000,
        TransferSpec {
            seed: 3,
            up: 2_000_000,
            down: 1000,
        },
    );
    w.run(
        &mut [(&mut net, &mut splice)],
        World::transfers_settled,
        at_millis(60_000),
    )
    .unwrap();
    let t = w.transfer(id);
    assert!(t.is_done(), "{t:?}");
    // 2 MB at 1 MB/s, the header and the first 16 KiB of burst aside.
    let took = micros(t.finished_at().unwrap());
    assert!((1_980_000..=2_001_000).contains(&took), "took {took} µs");
    let g = t.goodput().unwrap();
    assert!((1_000_000.0..1_012_000.0).contains(&g), "goodput {g}");

    // A stalled client reader: nothing moves until it resumes.
    w.serve(a, 8000, Service::Transfer);
    let id = w.start_transfer(
        a,
        7000,
        TransferSpec {
            seed: 4,
            up: 10,
            down: 5_000_000,
        },
    );
    w.transfer_stream(id, false).unwrap().stall();
    let mut stepper = |net: &mut SimNet| splice.poll(net);
    let stop = at_millis(micros(w.now()) / 1000 + 1000);
    let r = w.run(
        &mut [(&mut net, &mut stepper)],
        World::transfers_settled,
        stop,
    );
    assert_eq!(r, Err(RunError::TimeLimit { now: stop }));
    let stalled = w.transfer(id);
    assert_eq!(stalled.client.received, 0);
    assert!(stalled.server.unwrap().sent < 5_000_000);
    w.transfer_stream(id, false).unwrap().resume();
    w.run(
        &mut [(&mut net, &mut stepper)],
        World::transfers_settled,
        at_millis(60_000),
    )
    .unwrap();
    assert!(w.transfer(id).is_done());
}

#[test]
fn fill_stream_is_random_access() {
    let mut whole = vec![0u8; 4096];
    fill_stream(77, 0, &mut whole);
    let mut rng = punchwire_tests::simnet::Rng::new(1);
    for _ in 0..500 {
        let at = rng.below(4000) as usize;
        let len = rng.below((4096 - at) as u64) as usize;
        let mut part = vec![0u8; len];
        fill_stream(77, at as u64, &mut part);
        assert_eq!(part, whole[at..at + len], "at {at} len {len}");
    }
    let mut other = vec![0u8; 4096];
    fill_stream(78, 0, &mut other);
    assert_ne!(whole, other);
}

#[test]
fn staggered_transfer_starts() {
    let w = World::new(6);
    let a = w.add_node(A);
    let mut net = w.net(a);
    w.serve(a, 8000, Service::Transfer);
    let mut splice = Splice::new(&mut net);
    let ids: Vec<_> = (0..4u64)
        .map(|i| {
            w.start_transfer_at(
                at_millis(10 * i),
                a,
                7000,
                TransferSpec {
                    seed: i,
                    up: 1000,
                    down: 1000,
                },
            )
        })
        .collect();
    assert!(
        w.transfer_stream(ids[3], false).is_none(),
        "not started yet"
    );
    // One starts after the listener is gone: refused.
    let late = w.start_transfer_at(
        at_millis(100),
        a,
        7000,
        TransferSpec {
            seed: 9,
            up: 1,
            down: 1,
        },
    );
    w.run(
        &mut [(&mut net, &mut splice)],
        |w| (0..4).all(|i| w.transfer(ids[i]).is_done()),
        at_millis(1000),
    )
    .unwrap();
    for (i, &id) in ids.iter().enumerate() {
        let t = w.transfer(id);
        assert_eq!(t.started_at, at_millis(10 * i as u64));
        let took = micros(t.finished_at().unwrap()) - micros(t.started_at);
        assert!(took < 1000, "{i} took {took} µs");
    }
    net.tcp_unlisten(splice.listener);
    w.advance_to(at_millis(200));
    assert_eq!(w.transfer(late).error(), Some(TransferError::Refused));
}

#[test]
fn echo_service() {
    let w = World::new(1);
    let b = w.add_node(B);
    let mut net = w.net(b);
    w.serve(b, 7, Service::Echo);
    let s = net.tcp_connect_local(7).unwrap();
    w.advance_to(at_millis(1));
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let (mut sent, mut back) = (0, Vec::new());
    let mut buf = [0u8; 8192];
    while back.len() < data.len() {
        if sent < data.len()
            && let Ok(n) = net.tcp_write(s, &data[sent..])
        {
            sent += n;
            if sent == data.len() {
                net.tcp_shutdown_write(s).unwrap();
            }
        }
        w.advance_to(at_micros(micros(w.now()) + 10));
        while let Ok(n) = net.tcp_read(s, &mut buf) {
            if n == 0 {
                assert_eq!(back.len(), data.len(), "FIN only after everything");
                break;
            }
            back.extend_from_slice(&buf[..n]);
        }
    }
    assert_eq!(back, data);
    assert_eq!(net.tcp_read(s, &mut buf), Ok(0));
}

/// Sends `count` datagrams of 1400 bytes, one every `every_us`.
struct Blast {
    sock: UdpHandle,
    left: u32,
    every_us: u64,
    next: u64,
}

impl Stepper for Blast {
    fn poll(&mut self, net: &mut SimNet) -> Option<Instant> {
        let now = micros(net.now());
        while self.left > 0 && self.next <= now {
            net.udp_send_to(self.sock, &[0x55; 1400], SocketAddrV4::new(B, 2000))
                .unwrap();
            self.left -= 1;
            self.next += self.every_us;
        }
        (self.left > 0).then(|| at_micros(self.next))
    }
}

#[test]
fn bulk_20_mb_through_an_impaired_100_mbit_path() {
    let cfg = PathConfig::new()
        .delay_ms(10)
        .jitter_ms(1)
        .loss(0.01)
        .reorder(0.01, 2)
        .duplicate(0.01)
        .rate_mbit(100);
    let (w, mut na, mut nb) = world(8, cfg);
    // Offered 1428 B every 100 µs: 14.28 MB/s into a 12.5 MB/s bottleneck.
    let mut blast = Blast {
        sock: na.udp_bind(1000).unwrap(),
        left: 14_300,
        every_us: 100,
        next: 0,
    };
    let mut sink = Sink::new(&mut nb);
    let r = w.run(
        &mut [(&mut na, &mut blast), (&mut nb, &mut sink)],
        |_| false,
        at_millis(60_000),
    );
    assert!(matches!(r, Err(RunError::Idle { .. })));
    let st = ab(&w);
    assert_eq!(st.sent, 14_300);
    assert_eq!(
        st.sent + st.duplicated,
        st.delivered + st.dropped_loss + st.dropped_queue
    );
    // About 1780 datagrams too many, less the 875 the 100 ms queue holds.
    assert!(
        (700..1000).contains(&st.dropped_queue),
        "the bottleneck overflows: {st:?}"
    );
    let first = sink.got.first().unwrap().1;
    let last = sink.got.last().unwrap().1;
    let rate = (st.delivered - 1) as f64 * 1428.0 / ((last - first) as f64 / 1e6);
    assert!((12_300_000.0..12_510_000.0).contains(&rate), "{rate} B/s");
}

/// Sends 1000-byte datagrams until the socket blocks, then waits for the
/// world to wake it (no timer at all).
struct Greedy {
    sock: UdpHandle,
    sent: u32,
    blocked: u32,
    until: u64,
}

impl Stepper for Greedy {
    fn poll(&mut self, net: &mut SimNet) -> Option<Instant> {
        while micros(net.now()) < self.until {
            match net.udp_send_to(self.sock, &[1; 1000], SocketAddrV4::new(B, 2000)) {
                Ok(()) => self.sent += 1,
                Err(NetError::WouldBlock) => {
                    self.blocked += 1;
                    break;
                }
                Err(e) => panic!("{e}"),
            }
        }
        None
    }
}

#[test]
fn uplink_backpressure_blocks_and_wakes_the_sender() {
    let (w, mut na, mut nb) = world(2, PathConfig::new().delay_ms(5));
    w.set_uplink(
        na.node(),
        Some(UplinkConfig {
            rate: 1_000_000,
            queue_bytes: 10_280,
        }),
    );
    let mut greedy = Greedy {
        sock: na.udp_bind(1000).unwrap(),
        sent: 0,
        blocked: 0,
        until: 1_000_000,
    };
    let mut sink = Sink::new(&mut nb);
    let r = w.run(
        &mut [(&mut na, &mut greedy), (&mut nb, &mut sink)],
        |_| false,
        at_millis(2_000),
    );
    assert!(matches!(r, Err(RunError::Idle { .. })), "{r:?}");
    // 1 MB/s of 1028-byte datagrams for 1 s, plus the 10-datagram queue.
    assert!((980..=985).contains(&greedy.sent), "sent {}", greedy.sent);
    assert_eq!(sink.got.len() as u32, greedy.sent, "nothing dropped");
    assert_eq!(u64::from(greedy.blocked), w.stats().send_blocked);
    // Woken at half a queue: five datagrams per wake-up.
    assert!(greedy.blocked >= 190, "blocked {}", greedy.blocked);
    let gaps: Vec<u64> = sink.got.windows(2).map(|p| p[1].1 - p[0].1).collect();
    assert!(gaps.iter().all(|&g| (1028..=1029).contains(&g)), "paced");
}

#[test]
fn restart_mid_transfer_ends_the_streams_cleanly() {
    let w = World::new(3);
    let a = w.add_node(A);
    let b = w.add_node(B);
    let mut net = w.net(a);
    // The transfer server reads slowly, so the transfers are mid-way when
    // the splice process dies. (B is only there to stay untouched.)
    w.serve(a, 8000, Service::SlowTransfer { read_rate: 100_000 });
    let mut splice = Splice::new(&mut net);
    let ids: Vec<_> = (0..4)
        .map(|i| {
            w.start_transfer(
                a,
                7000,
                TransferSpec {
                    seed: i,
                    up: 1_000_000,
                    down: 1000,
                },
            )
        })
        .collect();
    let r = w.run(&mut [(&mut net, &mut splice)], |_| false, at_millis(500));
    assert_eq!(
        r,
        Err(RunError::TimeLimit {
            now: at_millis(500)
        })
    );
    w.restart(a);
    assert_eq!(w.restarts(a), 1);
    assert_eq!(w.restarts(b), 0);
    w.advance_to(at_millis(10_000));
    for id in ids {
        let t = w.transfer(id);
        // The splice's sockets held unread bytes from the client: RST. The
        // server side had read everything the splice wrote: FIN early.
        assert_eq!(t.client.error, Some(TransferError::Reset), "{t:?}");
        let s = t.server.unwrap();
        assert!(
            matches!(s.error, Some(TransferError::Short { received }) if received < 1_000_000),
            "{s:?}"
        );
    }
    // A new process on A can listen again; a new transfer works.
    let mut splice = Splice::new(&mut net);
    w.serve(a, 8000, Service::Transfer);
    let id = w.start_transfer(
        a,
        7000,
        TransferSpec {
            seed: 9,
            up: 5000,
            down: 5000,
        },
    );
    w.run(
        &mut [(&mut net, &mut splice)],
        World::transfers_settled,
        at_millis(20_000),
    )
    .unwrap();
    assert!(w.transfer(id).is_done());
}

/// A toy tunnel end for one stream over UDP: go-back-N on byte offsets,
/// cumulative acks, a fixed retransmission timeout, FIN as one extra
/// sequence unit. Enough to carry a transfer across a lossy path; nothing
/// like the real tunnel.
struct Toy {
    udp: UdpHandle,
    peer: SocketAddrV4,
    listener: Option<<SimNet as Tcp>::Listener>,
    stream: Option<TcpHandle>,
    // Sending: bytes read from the local stream from offset `acked` on.
    unacked: std::collections::VecDeque<u8>,
    acked: u64,
    next: u64,
    eof: bool,
    rto_at: Option<u64>,
    // Receiving.
    expect: u64,
    peer_fin: bool,
    to_write: Vec<u8>,
    shut: bool,
    closed: bool,
}

const TOY_WINDOW: u64 = 64 * 1024;
const TOY_RTO_US: u64 = 100_000;

impl Toy {
    fn new(net: &mut SimNet, port: u16, peer: SocketAddrV4, listen: Option<u16>) -> Toy {
        Toy {
            udp: net.udp_bind(port).unwrap(),
            peer,
            listener: listen.map(|p| net.tcp_listen(p).unwrap()),
            stream: None,
            unacked: Default::default(),
            acked: 0,
            next: 0,
            eof: false,
            rto_at: None,
            expect: 0,
            peer_fin: false,
            to_write: Vec::new(),
            shut: false,
            closed: false,
        }
    }

    /// Our FIN's sequence unit, once the local stream ended.
    fn end(&self) -> Option<u64> {
        self.eof.then(|| self.acked + self.unacked.len() as u64)
    }
}

impl Stepper for Toy {
    fn poll(&mut self, net: &mut SimNet) -> Option<Instant> {
        let now = micros(net.now());
        if self.stream.is_none() {
            match self.listener {
                Some(l) => self.stream = net.tcp_accept(l).ok(),
                None => self.stream = Some(net.tcp_connect_local(8000).unwrap()),
            }
        }
        // Datagrams: [0, off u64, fin u8, data..] or [1, cumulative ack u64].
        let mut buf = [0u8; 1500];
        while let Ok((n, _)) = net.udp_recv_from(self.udp, &mut buf) {
            let off = u64::from_le_bytes(buf[1..9].try_into().unwrap());
            if buf[0] == 1 {
                if off > self.acked {
                    let data_acked = (off - self.acked).min(self.unacked.len() as u64);
                    self.unacked.drain(..data_acked as usize);
                    self.acked = off;
                    self.next = self.next.max(off);
                    self.rto_at = Some(now + TOY_RTO_US);
                }
                continue;
            }
            let data = &buf[10..n];
            if off == self.expect && !self.peer_fin && self.to_write.len() < 1 << 20 {
                self.to_write.extend_from_slice(data);
                self.expect += data.len() as u64;
                if buf[9] == 1 {
                    self.peer_fin = true;
                    self.expect += 1;
                }
            }
            let mut ack = [1u8; 9];
            ack[1..].copy_from_slice(&self.expect.to_le_bytes());
            net.udp_send_to(self.udp, &ack, self.peer).unwrap();
        }
        // The local stream.
        if let Some(s) = self.stream
            && net.tcp_status(s) == ConnectStatus::Connected
            && !self.closed
        {
            while !self.to_write.is_empty() {
                match net.tcp_write(s, &self.to_write) {
                    Ok(n) => drop(self.to_write.drain(..n)),
                    Err(_) => break,
                }
            }
            if self.peer_fin && self.to_write.is_empty() && !self.shut {
                net.tcp_shutdown_write(s).unwrap();
                self.shut = true;
            }
            let mut chunk = [0u8; 8192];
            while !self.eof && self.unacked.len() < 1 << 20 {
                match net.tcp_read(s, &mut chunk) {
                    Ok(0) => self.eof = true,
                    Ok(n) => self.unacked.extend(&chunk[..n]),
                    Err(_) => break,
                }
            }
        }
        // Timeout: go back to the first unacked byte.
        if self.rto_at.is_some_and(|t| t <= now) {
            self.next = self.acked;
            self.rto_at = Some(now + TOY_RTO_US);
        }
        // Send what the window allows.
        let total = self.acked + self.unacked.len() as u64;
        while self.next < self.acked + TOY_WINDOW && self.next <= total {
            let start = (self.next - self.acked) as usize;
            let len = (total - self.next).min(1000) as usize;
            let fin = self.eof && self.next + len as u64 == total;
            if len == 0 && !(fin && self.next == total) {
                break;
            }
            let mut d = vec![0u8; 10 + len];
            d[1..9].copy_from_slice(&self.next.to_le_bytes());
            d[9] = u8::from(fin);
            for (i, b) in self.unacked.range(start..start + len).enumerate() {
                d[10 + i] = *b;
            }
            net.udp_send_to(self.udp, &d, self.peer).unwrap();
            self.next += len as u64 + u64::from(fin);
            self.rto_at.get_or_insert(now + TOY_RTO_US);
            if fin {
                break;
            }
        }
        let all_acked = self.end().is_some_and(|e| self.acked == e + 1);
        if all_acked {
            self.rto_at = None;
        }
        if all_acked
            && self.shut
            && !self.closed
            && let Some(s) = self.stream
        {
            net.tcp_close(s);
            self.closed = true;
        }
        self.rto_at.map(at_micros)
    }
}

#[test]
fn a_toy_tunnel_carries_a_transfer_over_a_lossy_path() {
    let w = World::new(2026);
    let a = w.add_node(A);
    let b = w.add_node(B);
    w.link(a, b, PathConfig::new().delay_ms(10).jitter_ms(1).loss(0.01));
    w.serve(b, 8000, Service::Transfer);
    let (mut na, mut nb) = (w.net(a), w.net(b));
    let mut ta = Toy::new(&mut na, 9000, SocketAddrV4::new(B, 9000), Some(7000));
    let mut tb = Toy::new(&mut nb, 9000, SocketAddrV4::new(A, 9000), None);
    let id = w.start_transfer(
        a,
        7000,
        TransferSpec {
            seed: 5,
            up: 1_000_000,
            down: 300_000,
        },
    );
    let end = w
        .run(
            &mut [(&mut na, &mut ta), (&mut nb, &mut tb)],
            World::transfers_settled,
            at_millis(60_000),
        )
        .unwrap();
    let t = w.transfer(id);
    assert!(t.is_done(), "{t:?}");
    // 64 KiB per 20 ms round trip is at most 3.2 MB/s; each loss costs
    // go-back-N a 100 ms timeout. Seed 2026 gives 0.90 MB/s (1.3 MB both
    // ways in 1.44 s, 39 datagrams lost); deterministic, so a lower bound
    // close to it is not flaky.
    let g = t.goodput().unwrap();
    assert!(g > 800_000.0, "goodput {g} B/s, done at {} µs", micros(end));
    let ab = w.path_stats(a, b);
    assert!(ab.dropped_loss > 0 && ab.delivered > 1000, "{ab:?}");
}

#[test]
fn corruption_flips_one_bit() {
    let n = 5000;
    let (w, mut na, mut nb) = world(13, PathConfig::new().corrupt(0.02).duplicate(0.5));
    w.set_udp_rx_limit(nb.node(), 16 << 20);
    let s = na.udp_bind(1).unwrap();
    let r = nb.udp_bind(2000).unwrap();
    for _ in 0..n {
        na.udp_send_to(s, &[0u8; 100], SocketAddrV4::new(B, 2000))
            .unwrap();
    }
    w.advance_to(at_millis(1));
    let mut buf = [0u8; 100];
    let (mut flipped, mut clean) = (0, 0);
    while let Ok((100, _)) = nb.udp_recv_from(r, &mut buf) {
        match buf.iter().map(|b| b.count_ones()).sum::<u32>() {
            0 => clean += 1,
            1 => flipped += 1,
            bits => panic!("{bits} bits flipped"),
        }
    }
    let st = ab(&w);
    assert_eq!(flipped, st.corrupted);
    assert_eq!(flipped + clean, n + st.duplicated);
    assert_eq!(st.delivered, n + st.duplicated);
    let frac = st.corrupted as f64 / n as f64;
    assert!((0.015..0.025).contains(&frac), "corrupted {frac}");
}
