//! The smoltcp backend on the host: smoltcp interfaces joined by an
//! in-memory IP hub, with smoltcp's fault injector dropping and corrupting
//! packets, run a full TCP punch and a full tunnel session through the
//! core's generic drivers — the code the ESP32-C3 firmware runs.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use punchwire_core::net::{Tcp, Wait};
use punchwire_core::punch::{self, PunchConfig, PunchMachine};
use punchwire_core::schedule::UnixTime;
use punchwire_core::tunnel::{Local, Protocol, TunnelEvent};
use punchwire_tests::host_tunnel::{self, Options};
use punchwire_tests::smol::{
    Faults, Hub, Sizes, connect_wait, exchange, hub_node, run_for, run_until, serve_once, settle,
    test_bytes,
};

const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const A_APP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 11);
const B_APP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 12);

fn unix_now() -> UnixTime {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    UnixTime::from_millis(ms as i64)
}

fn spawn<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> thread::JoinHandle<T> {
    thread::Builder::new()
        .name(name.into())
        .stack_size(16 << 20)
        .spawn(f)
        .unwrap()
}

/// One side of a TCP punch: punch, then swap `len` bytes with the peer.
fn punch_side(
    hub: Arc<Hub>,
    me: Ipv4Addr,
    peer: Ipv4Addr,
    faults: Faults,
    seed: u32,
    done: Arc<AtomicUsize>,
) -> (u16, Vec<u8>, Vec<u8>) {
    let mut net = hub_node(&hub, me, Sizes::GATEWAY, Some(faults), seed);
    let mut config = PunchConfig::new(peer, u64::from(seed) * 7919);
    // One flat segment, no router: TTL is never decremented, so a priming
    // SYN would reach the peer (whose SYN-ACK to it then resets our real
    // connect). Priming is for paths through NAT routers (the lab).
    config.prime_ttl = 0;
    let mut machine = PunchMachine::new(config, net.now(), unix_now()).unwrap();
    let t0 = std::time::Instant::now();
    let (socket, winner) = punch::punch(&mut net, &mut machine, |e, t| {
        if std::env::var_os("PW_TRACE").is_some() {
            eprintln!("{me} {:>8} us {e:?}", punchwire_core::time::micros(t));
        }
    })
    .unwrap_or_else(|e| panic!("{me}: punch failed: {e}"));
    eprintln!(
        "{me}: connected on port {} after {:?}",
        winner.port,
        t0.elapsed()
    );
    let t0 = std::time::Instant::now();
    let out = test_bytes(100_000, u64::from(seed));
    let got = exchange(&mut net, socket, &out, Duration::from_secs(90))
        .unwrap_or_else(|e| panic!("{me}: {e}"));
    eprintln!("{me}: exchanged 100 KB each way in {:?}", t0.elapsed());
    net.tcp_close(socket);
    settle(&mut net, Duration::from_secs(10));
    // Our stack stays up until the peer has everything (a device does not
    // vanish after its last write).
    done.fetch_add(1, Ordering::SeqCst);
    run_until(&mut net, Duration::from_secs(90), || {
        done.load(Ordering::SeqCst) == 2
    });
    (winner.port, out, got)
}

fn punch_pair(faults: Faults, one_way: Duration) {
    let hub = Hub::new(one_way);
    let (h1, h2) = (hub.clone(), hub.clone());
    let done = Arc::new(AtomicUsize::new(0));
    let (d1, d2) = (done.clone(), done.clone());
    let a = spawn("punch-a", move || punch_side(h1, A, B, faults, 11, d1));
    let b = spawn("punch-b", move || punch_side(h2, B, A, faults, 22, d2));
    let (port_a, sent_a, got_a) = a.join().unwrap();
    let (port_b, sent_b, got_b) = b.join().unwrap();
    assert_eq!(port_a, port_b, "both sides must elect the same connection");
    assert!(
        got_b == sent_a,
        "B received {} bytes, A sent {}",
        got_b.len(),
        sent_a.len()
    );
    assert!(
        got_a == sent_b,
        "A received {} bytes, B sent {}",
        got_a.len(),
        sent_b.len()
    );
}

#[test]
fn tcp_punch_clean_medium() {
    punch_pair(Faults::default(), Duration::from_millis(5));
}

#[test]
fn tcp_punch_with_loss_and_corruption() {
    punch_pair(
        Faults {
            drop_pct: 5,
            corrupt_pct: 2,
        },
        Duration::from_millis(10),
    );
}

/// One tunnel gateway's part.
struct Gateway {
    me: Ipv4Addr,
    peer: Ipv4Addr,
    local: Local,
    local_host: Option<Ipv4Addr>,
    seed: u32,
    protocol: Protocol,
}

/// A tunnel gateway: runs one session and stops.
fn gateway(
    hub: Arc<Hub>,
    gw: Gateway,
    faults: Faults,
    apps_done: Arc<AtomicUsize>,
) -> Vec<TunnelEvent> {
    let Gateway {
        me,
        peer,
        local,
        local_host,
        seed,
        protocol,
    } = gw;
    let mut net = hub_node(&hub, me, Sizes::GATEWAY, Some(faults), seed);
    if let Some(h) = local_host {
        net.set_local_host(h);
    }
    let mut o = Options::new(
        SocketAddrV4::new(peer, 4000),
        4000,
        local,
        u64::from(seed) | 1,
    );
    o.stats_ms = Some(5000);
    o.protocol = protocol;
    let trace = std::env::var_os("PW_TRACE").is_some();
    let mut events = Vec::new();
    let started = std::time::Instant::now();
    host_tunnel::run(&mut net, &o, |e| {
        if trace {
            eprintln!("{me} {:?} {e:?}", started.elapsed());
        }
        events.push(*e);
    })
    .unwrap_or_else(|e| panic!("{me}: tunnel failed: {e}"));
    // The stack outlives the tunnel (as on the device): the local FIN's
    // retransmissions go on after the session ended.
    settle(&mut net, Duration::from_secs(10));
    run_until(&mut net, Duration::from_secs(30), || {
        apps_done.load(Ordering::SeqCst) == 2
    });
    events
}

#[test]
fn tunnel_session_with_loss_and_corruption_v012() {
    tunnel_session(Protocol::V012);
}

#[test]
fn tunnel_session_with_loss_and_corruption_pw1() {
    tunnel_session(Protocol::Auto);
}

fn tunnel_session(protocol: Protocol) {
    let hub = Hub::new(Duration::from_millis(5));
    let wan = Faults {
        drop_pct: 3,
        corrupt_pct: 1,
    };
    let to_server = test_bytes(300_000, 1);
    let apps_done = Arc::new(AtomicUsize::new(0));
    let to_client = test_bytes(250_000, 2);

    // The service behind B (a LAN host), listening before anything starts.
    let h = hub.clone();
    let reply = to_client.clone();
    let done = apps_done.clone();
    let server = spawn("b-app", move || {
        let mut net = hub_node(&h, B_APP, Sizes::APP, None, 3);
        let got = serve_once(&mut net, 9000, &reply);
        done.fetch_add(1, Ordering::SeqCst);
        got
    });
    let (h1, h2) = (hub.clone(), hub.clone());
    let (d1, d2) = (apps_done.clone(), apps_done.clone());
    let gw_b = spawn("b-gw", move || {
        let gw = Gateway {
            me: B,
            peer: A,
            local: Local::Connect(9000),
            local_host: Some(B_APP),
            seed: 4,
            protocol,
        };
        gateway(h2, gw, wan, d2)
    });
    let gw_a = spawn("a-gw", move || {
        let gw = Gateway {
            me: A,
            peer: B,
            local: Local::Listen(8000),
            local_host: None,
            seed: 5,
            protocol,
        };
        gateway(h1, gw, wan, d1)
    });

    // The client behind A, connecting to A's tunnel port.
    let h = hub.clone();
    let request = to_server.clone();
    let done2 = apps_done.clone();
    let client = spawn("a-app", move || {
        let mut net = hub_node(&h, A_APP, Sizes::APP, None, 6);
        net.set_local_host(A);
        // A's listener may not exist yet: retry refused connects.
        let s = loop {
            let s = net.tcp_connect_local(8000).unwrap();
            match connect_wait(&mut net, s, Duration::from_secs(5)) {
                Ok(()) => break s,
                Err(_) => {
                    net.tcp_close(s);
                    run_for(&mut net, Duration::from_millis(100));
                }
            }
        };
        let got = exchange(&mut net, s, &request, Duration::from_secs(90)).unwrap();
        net.tcp_close(s);
        settle(&mut net, Duration::from_secs(10));
        done2.fetch_add(1, Ordering::SeqCst);
        got
    });

    let client_got = client.join().unwrap();
    let server_got = server.join().unwrap();
    let events_a = gw_a.join().unwrap();
    let events_b = gw_b.join().unwrap();
    assert!(
        server_got == to_server,
        "service got {} of {} bytes",
        server_got.len(),
        to_server.len()
    );
    assert!(
        client_got == to_client,
        "client got {} of {} bytes",
        client_got.len(),
        to_client.len()
    );
    for events in [&events_a, &events_b] {
        assert!(
            events
                .iter()
                .any(|e| matches!(e, TunnelEvent::PeerHeard(_)))
        );
        assert!(events.iter().any(|e| matches!(
            e,
            TunnelEvent::StreamEnded {
                id: 1,
                reset: false
            }
        )));
    }
}

/// What the firmware's `tcp` mode does with a punched connection: A
/// punches B, then splices the connection to a service on its LAN (the
/// firmware's `PW_ROLE=connect:PORT`); B talks to that service through it.
#[test]
fn tcp_punch_then_splice_to_a_lan_service() {
    let hub = Hub::new(Duration::from_millis(5));
    let wan = Faults {
        drop_pct: 3,
        corrupt_pct: 1,
    };
    let to_service = test_bytes(120_000, 7);
    let to_peer = test_bytes(90_000, 8);
    let done = Arc::new(AtomicUsize::new(0));

    let h = hub.clone();
    let reply = to_peer.clone();
    let d = done.clone();
    let service = spawn("a-service", move || {
        let mut net = hub_node(&h, A_APP, Sizes::APP, None, 31);
        let got = serve_once(&mut net, 7000, &reply);
        d.fetch_add(1, Ordering::SeqCst);
        run_until(&mut net, Duration::from_secs(30), || {
            d.load(Ordering::SeqCst) == 3
        });
        got
    });

    let punched =
        |me: Ipv4Addr, peer: Ipv4Addr, seed: u32, net: &mut punchwire_tests::smol::HubNet| {
            let mut config = PunchConfig::new(peer, u64::from(seed));
            config.prime_ttl = 0; // one flat segment, see punch_side
            let mut machine = PunchMachine::new(config, net.now(), unix_now()).unwrap();
            punch::punch(net, &mut machine, |_, _| {})
                .unwrap_or_else(|e| panic!("{me}: punch failed: {e}"))
                .0
        };

    let h = hub.clone();
    let d = done.clone();
    let gateway_a = spawn("a-gw", move || {
        let mut net = hub_node(&h, A, Sizes::GATEWAY, Some(wan), 32);
        net.set_local_host(A_APP);
        let conn = punched(A, B, 32, &mut net);
        let local = net.tcp_connect_local(7000).unwrap();
        connect_wait(&mut net, local, Duration::from_secs(10)).unwrap();
        let (mut ab, mut ba) = ([0u8; 1024], [0u8; 1024]);
        let totals = punchwire_esp::splice::splice(&mut net, conn, local, &mut ab, &mut ba, 60_000)
            .unwrap_or_else(|e| panic!("splice: {e}"));
        net.tcp_close(conn);
        net.tcp_close(local);
        settle(&mut net, Duration::from_secs(10));
        d.fetch_add(1, Ordering::SeqCst);
        run_until(&mut net, Duration::from_secs(30), || {
            d.load(Ordering::SeqCst) == 3
        });
        totals
    });

    let h = hub.clone();
    let request = to_service.clone();
    let d = done.clone();
    let peer_b = spawn("b-peer", move || {
        let mut net = hub_node(&h, B, Sizes::GATEWAY, Some(wan), 33);
        let conn = punched(B, A, 33, &mut net);
        let got = exchange(&mut net, conn, &request, Duration::from_secs(90)).unwrap();
        net.tcp_close(conn);
        settle(&mut net, Duration::from_secs(10));
        d.fetch_add(1, Ordering::SeqCst);
        run_until(&mut net, Duration::from_secs(30), || {
            d.load(Ordering::SeqCst) == 3
        });
        got
    });

    let service_got = service.join().unwrap();
    let totals = gateway_a.join().unwrap();
    let peer_got = peer_b.join().unwrap();
    assert!(
        service_got == to_service,
        "service got {} of {} bytes",
        service_got.len(),
        to_service.len()
    );
    assert!(
        peer_got == to_peer,
        "peer got {} of {} bytes",
        peer_got.len(),
        to_peer.len()
    );
    assert_eq!(totals.forward, to_service.len() as u64);
    assert_eq!(totals.back, to_peer.len() as u64);
}
