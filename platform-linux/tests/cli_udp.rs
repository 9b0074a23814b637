//! `punchwire udp` run as a user would, on loopback only: two tunnel ends
//! (told apart by --bind-port), sessions one after another, forged and
//! foreign datagrams, and bad arguments.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

fn punchwire() -> Command {
    Command::new(env!("CARGO_BIN_EXE_punchwire"))
}

fn free_tcp() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_udp() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn(args: &[String]) -> Child {
    punchwire()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    let mut child = child;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > limit {
            child.kill().unwrap();
            let o = child.wait_with_output().unwrap();
            panic!(
                "punchwire did not exit in {limit:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn connect_retrying(port: u16) -> TcpStream {
    for _ in 0..200 {
        if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
            return s;
        }
        thread::sleep(Duration::from_millis(25));
    }
    panic!("nothing listens on {port}");
}

/// Sends `data`, half-closes, returns everything received until EOF.
fn exchange(mut s: TcpStream, data: &[u8]) -> Vec<u8> {
    let mut w = s.try_clone().unwrap();
    let data = data.to_vec();
    let sender = thread::spawn(move || {
        w.write_all(&data).unwrap();
        w.shutdown(Shutdown::Write).unwrap();
    });
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    sender.join().unwrap();
    got
}

fn payload(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            // Half noise, half text: both frame kinds go over the wire.
            if i % 2000 < 1000 {
                x as u8
            } else {
                b"punchwire "[i % 10]
            }
        })
        .collect()
}

/// Both tunnel ends on loopback for a local service on `svc_port`: returns
/// (-c child, -l child, the -l side's local port, the -c side's UDP port).
fn start_pair(svc_port: u16, sessions: u32, c_extra: &[&str]) -> (Child, Child, u16, u16) {
    let (lst, udp_c, udp_l) = (free_tcp(), free_udp(), free_udp());
    let mut c_args: Vec<String> = [
        "udp",
        "-c",
        &svc_port.to_string(),
        "127.0.0.1",
        &udp_l.to_string(),
        "--bind-port",
        &udp_c.to_string(),
        "--sessions",
        &sessions.to_string(),
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    c_args.extend(c_extra.iter().map(|a| a.to_string()));
    let l_args: Vec<String> = [
        "udp",
        "-l",
        &lst.to_string(),
        "127.0.0.1",
        &udp_c.to_string(),
        "--bind-port",
        &udp_l.to_string(),
        "--sessions",
        &sessions.to_string(),
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    (spawn(&c_args), spawn(&l_args), lst, udp_c)
}

#[test]
fn two_sessions_one_after_another_byte_exact_both_ways() {
    let svc = TcpListener::bind("127.0.0.1:0").unwrap();
    let svc_port = svc.local_addr().unwrap().port();
    // The local service: sends back each session's bytes reversed.
    let service = thread::spawn(move || {
        let mut lens = Vec::new();
        for _ in 0..2 {
            let (s, _) = svc.accept().unwrap();
            let mut r = s.try_clone().unwrap();
            let mut got = Vec::new();
            r.read_to_end(&mut got).unwrap();
            lens.push(got.len());
            let mut w = s;
            let reply: Vec<u8> = got.iter().rev().copied().collect();
            w.write_all(&reply).unwrap();
            w.shutdown(Shutdown::Write).unwrap();
        }
        lens
    });
    let (c, l, lst, _) = start_pair(svc_port, 2, &[]);
    for (i, len) in [(1u32, 300_000usize), (2, 123_457)] {
        let data = payload(i, len);
        let back = exchange(connect_retrying(lst), &data);
        let want: Vec<u8> = data.iter().rev().copied().collect();
        assert_eq!(back.len(), want.len(), "session {i}");
        assert!(back == want, "session {i} came back byte-exact");
    }
    assert_eq!(service.join().unwrap(), [300_000, 123_457]);
    let (oc, ol) = (
        finish(c, Duration::from_secs(20)),
        finish(l, Duration::from_secs(20)),
    );
    assert_eq!(
        oc.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&oc.stderr)
    );
    assert_eq!(
        ol.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ol.stderr)
    );
    let log = String::from_utf8_lossy(&ol.stderr);
    assert!(log.contains("session 2 ended"), "{log}");
}

#[test]
fn forged_and_foreign_datagrams_are_dropped_not_fatal() {
    let svc = TcpListener::bind("127.0.0.1:0").unwrap();
    let svc_port = svc.local_addr().unwrap().port();
    let service = thread::spawn(move || {
        let (mut s, _) = svc.accept().unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        s.write_all(&got).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        got.len()
    });
    let (c, l, lst, udp_c) = start_pair(svc_port, 1, &["-d"]);
    // Garbage at the -c side: unknown types, truncated frames, a zlib bomb
    // header, bad digests — from a foreign address (127.0.0.2) and from the
    // peer's address but another port.
    let junk: Vec<Vec<u8>> = vec![
        b"X".to_vec(),
        b"".to_vec(),
        b"U\x00".to_vec(),
        b"C\x00\x00\x00\x10abcdefghijkxxxx".to_vec(),
        b"U\x00\x00\x00\x03abcdefghijkxyz".to_vec(),
        b"A".to_vec(),
        vec![b'N'; 3],
        vec![0xff; 2000],
    ];
    let foreign = UdpSocket::bind("127.0.0.2:0").unwrap();
    let local = UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..20 {
        for j in &junk {
            let _ = foreign.send_to(j, ("127.0.0.1", udp_c));
            let _ = local.send_to(j, ("127.0.0.1", udp_c));
        }
        thread::sleep(Duration::from_millis(5));
    }
    let data = payload(7, 200_000);
    let back = exchange(connect_retrying(lst), &data);
    assert!(back == data, "the session is unharmed");
    assert_eq!(service.join().unwrap(), data.len());
    let (oc, ol) = (
        finish(c, Duration::from_secs(20)),
        finish(l, Duration::from_secs(20)),
    );
    assert_eq!(oc.status.code(), Some(0));
    assert_eq!(ol.status.code(), Some(0));
    let log = String::from_utf8_lossy(&oc.stderr);
    assert!(
        log.contains("other than the peer"),
        "foreign datagrams are reported: {log}"
    );
    assert!(
        log.contains("dropped a datagram from the peer"),
        "malformed ones too: {log}"
    );
}

#[test]
fn bad_arguments_exit_2_with_one_line() {
    for args in [
        &["udp"][..],
        &["udp", "-c", "80"],
        &["udp", "127.0.0.1"],
        &["udp", "-c", "0", "127.0.0.1"],
        &["udp", "-c", "80", "-l", "81", "127.0.0.1"],
        &["udp", "-c", "80", "nope"],
        &["udp", "-c", "80", "127.0.0.1", "70000"],
        &["udp", "-c", "80", "127.0.0.1", "5555", "extra"],
        &["udp", "-c", "80", "127.0.0.1", "--frame-size", "40001"],
        &["udp", "-c", "80", "127.0.0.1", "--frame-size", "0"],
        &["udp", "-c", "80", "127.0.0.1", "--heartbeat", "x"],
        &["udp", "-c", "80", "127.0.0.1", "--sessions", "0"],
        &["udp", "-l", "80", "255.255.255.255"],
    ] {
        let o = punchwire()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(
            o.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&o.stderr).lines().count(),
            1,
            "{args:?}"
        );
    }
}

#[test]
fn busy_ports_have_their_own_exit_codes() {
    let held = UdpSocket::bind("0.0.0.0:0").unwrap();
    let udp = held.local_addr().unwrap().port().to_string();
    let o = punchwire()
        .args(["udp", "-c", "80", "127.0.0.1", &udp])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp = busy.local_addr().unwrap().port().to_string();
    let udp = free_udp().to_string();
    let o = punchwire()
        .args(["udp", "-l", &tcp, "127.0.0.1", &udp])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn a_silent_peer_ends_with_exit_4() {
    silent_peer_exit_4(&[]);
}

#[test]
fn no_birthday_is_accepted() {
    silent_peer_exit_4(&["--no-birthday"]);
}

fn silent_peer_exit_4(extra: &[&str]) {
    let udp = free_udp().to_string();
    let bind = free_udp().to_string();
    let start = Instant::now();
    let tcp = free_tcp().to_string();
    let mut args = vec![
        "udp",
        "-l",
        &tcp,
        "127.0.0.1",
        &udp,
        "--bind-port",
        &bind,
        "--silence",
        "1",
    ];
    args.extend_from_slice(extra);
    let o = punchwire()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(String::from_utf8_lossy(&o.stderr).contains("peer silent"));
}
