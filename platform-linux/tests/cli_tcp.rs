//! `punchwire tcp` run as a user would, on loopback only: the self-connect
//! demonstration, the relay roles and every documented exit code.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn punchwire() -> Command {
    Command::new(env!("CARGO_BIN_EXE_punchwire"))
}

fn run_with_stdin(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = punchwire()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("punchwire starts");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A free loopback port (bound, then released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn loopback_demo_echoes_stdin() {
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let o = run_with_stdin(&["tcp", "127.0.0.1", "--timeout", "20"], &payload);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(o.stdout.len(), payload.len());
    assert!(o.stdout == payload, "self-connection returns every byte");
    let err = stderr(&o);
    assert!(err.contains("connected to 127.0.0.1:"), "{err}");
    assert!(err.contains("connected to itself"), "{err}");
}

#[test]
fn quiet_prints_nothing_on_success() {
    let o = run_with_stdin(&["tcp", "127.0.0.1", "-q"], b"x");
    assert_eq!(o.status.code(), Some(0));
    assert!(o.stderr.is_empty(), "{}", stderr(&o));
}

#[test]
fn forward_relays_the_punched_connection_to_a_local_service() {
    let service = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = service.local_addr().unwrap().port();
    let server = thread::spawn(move || {
        let (mut s, _) = service.accept().unwrap();
        s.write_all(b"hello through the punch\n").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        got
    });
    let o = punchwire()
        .args(["tcp", "127.0.0.1", "--forward", &port.to_string()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // Connected to itself, the punched connection hands the service's bytes
    // straight back to it.
    assert_eq!(server.join().unwrap(), b"hello through the punch\n");
}

#[test]
fn listen_carries_one_local_connection() {
    let port = free_port();
    let child = punchwire()
        .args(["tcp", "127.0.0.1", "--listen", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut conn = None;
    for _ in 0..100 {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(c) => {
                conn = Some(c);
                break;
            }
            Err(_) => thread::sleep(Duration::from_millis(50)),
        }
    }
    let mut conn = conn.expect("punchwire listens");
    conn.write_all(b"abc").unwrap();
    conn.shutdown(Shutdown::Write).unwrap();
    let mut back = Vec::new();
    conn.read_to_end(&mut back).unwrap();
    assert_eq!(back, b"abc");
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn bad_arguments_exit_2_with_one_line() {
    for args in [
        &["tcp"][..],
        &["tcp", "not-an-ip"],
        &["tcp", "300.1.1.1"],
        &["tcp", "0.0.0.0"],
        &["tcp", "127.0.0.1", "--timeout", "0"],
        &["tcp", "127.0.0.1", "--timeout", "soon"],
        &["tcp", "127.0.0.1", "--ttl", "256"],
        &["tcp", "127.0.0.1", "--interval", "0"],
        &["tcp", "127.0.0.1", "--max-clock-error", "63"],
        &["tcp", "127.0.0.1", "--forward", "1", "--listen", "2"],
        &["tcp", "127.0.0.1", "--forward", "0"],
        &["tcp", "127.0.0.1", "--public-ip", "nope"],
        &["tcp", "127.0.0.1", "127.0.0.2"],
        &["tcp", "127.0.0.1", "--frobnicate"],
    ] {
        let o = punchwire()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert_eq!(stderr(&o).lines().count(), 1, "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn help_documents_every_exit_code() {
    let o = punchwire().args(["tcp", "--help"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    let help = String::from_utf8(o.stdout).unwrap();
    for code in ["0 ", "1 ", "2 ", "3 ", "4 ", "5 ", "6 "] {
        assert!(
            help.contains(&format!("\n  {code}")),
            "exit code {code}missing:\n{help}"
        );
    }
    for opt in [
        "--timeout",
        "--max-clock-error",
        "--clock-offset",
        "--public-ip",
        "--interval",
        "--ttl",
        "--reference",
        "--forward",
        "--listen",
    ] {
        assert!(help.contains(opt), "{opt} missing");
    }
}

#[test]
fn nobody_answering_times_out_with_exit_4() {
    // 127.0.0.2 refuses every port: nothing ever connects.
    let o = punchwire()
        .args(["tcp", "127.0.0.2", "--timeout", "1"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("no connection before the timeout"));
}

/// The 16 ports `punchwire schedule` gives for unix time `t`.
fn schedule_ports(t: i64) -> Vec<u16> {
    let o = punchwire()
        .args(["schedule", "--json", "--at", &t.to_string()])
        .output()
        .unwrap();
    let text = String::from_utf8(o.stdout).unwrap();
    let list = text
        .split("\"ports\":[")
        .nth(1)
        .unwrap()
        .split(']')
        .next()
        .unwrap();
    list.split(',').map(|p| p.parse().unwrap()).collect()
}

#[test]
fn no_bindable_port_exits_3() {
    // A moment 22 s into its bucket: with no clock-error margin the punch
    // uses exactly that bucket's 16 ports for the next 19 s. Take the first
    // such bucket whose ports are all free (other tests punch on today's).
    let mut chosen = None;
    for k in 0..20 {
        let t = 1_700_000_000 + 42 * k;
        let ports = schedule_ports(t);
        let held: Vec<TcpListener> = ports
            .iter()
            .filter_map(|p| TcpListener::bind(("0.0.0.0", *p)).ok())
            .collect();
        if held.len() == ports.len() {
            chosen = Some((t, held));
            break;
        }
    }
    let (t, held) = chosen.expect("no bucket with 16 free ports among 20");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let offset = format!("{:.3}", (t * 1000 - now) as f64 / 1000.0);
    let o = punchwire()
        .args([
            "tcp",
            "127.0.0.2",
            "--max-clock-error",
            "0",
            "--timeout",
            "5",
            "--clock-offset",
            &offset,
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    drop(held);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("none of the schedule ports could be bound"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn local_service_failures_exit_6() {
    // --listen on a port someone else holds.
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let o = punchwire()
        .args(["tcp", "127.0.0.1", "--listen", &port])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
    // --forward to a port nobody listens on.
    let closed = free_port().to_string();
    let o = punchwire()
        .args(["tcp", "127.0.0.1", "--forward", &closed])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("cannot connect to the local service"),
        "{}",
        stderr(&o)
    );
}
