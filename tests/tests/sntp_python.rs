//! The core's SNTP client against an independent server: CPython's
//! struct/socket (tests/py/sntp_server.py) on 127.0.0.1, whose clock reads a
//! fake time. One real UDP exchange per test, over loopback only.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use punchwire_core::sntp::{PACKET_LEN, SntpClient, SntpError, SntpSync};
use punchwire_core::time::{Instant, at_micros, micros_between};

/// 2026-11-22T00:00:00Z.
const NOV_2026_MS: i64 = 1_795_305_600_000;
/// 2040-01-01T00:00:00Z: NTP era 1.
const JAN_2040_MS: i64 = 2_208_988_800_000;
const COOKIE: u64 = 0x7075_6e63_6877_6972;
/// The whole exchange must finish well before the client's first resend.
const DEADLINE: Duration = Duration::from_secs(10);

/// The Python server, killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddrV4,
    /// Fake unix time = system time + this.
    delta_ns: i128,
}

impl Server {
    fn start(fake_unix_ms: i64, flags: &[&str]) -> Server {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("py/sntp_server.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(fake_unix_ms.to_string())
            .args(flags)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let words: Vec<&str> = line.split_whitespace().collect();
        let ["port", port, "delta_ns", delta] = words[..] else {
            let _ = child.kill();
            panic!("sntp_server.py said {line:?}");
        };
        Server {
            child,
            addr: SocketAddrV4::new([127, 0, 0, 1].into(), port.parse().unwrap()),
            delta_ns: delta.parse().unwrap(),
        }
    }

    /// The server's fake clock now, in µs.
    fn fake_micros_now(&self) -> i64 {
        let real = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        ((real.as_nanos() as i128 + self.delta_ns) / 1000) as i64
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one run of the client saw.
struct Run {
    outcome: Result<SntpSync, SntpError>,
    /// The server's fake clock read right at the receive instant, in µs.
    fake_at_receive: i64,
    /// Our round trip in µs: last send to the reply.
    rtt_us: u64,
    /// Datagrams the client refused without failing.
    refused: Vec<SntpError>,
}

/// Runs the client against `server` over a real socket until it has an
/// outcome, with the monotonic clock of this process.
fn run(server: &Server) -> Run {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let origin = std::time::Instant::now();
    let now = || -> Instant { at_micros(origin.elapsed().as_micros() as u64) };
    let mut client = SntpClient::new(server.addr, COOKIE);
    let (mut sent, mut fake_at_receive, mut rtt_us) = (now(), 0, 0);
    let mut refused = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        if let Some(outcome) = client.outcome() {
            return Run {
                outcome,
                fake_at_receive,
                rtt_us,
                refused,
            };
        }
        assert!(origin.elapsed() < DEADLINE, "no outcome in {DEADLINE:?}");
        let mut out = [0u8; PACKET_LEN];
        while let Some(n) = client.poll_transmit(now(), &mut out) {
            sent = now();
            sock.send_to(&out[..n], client.server()).unwrap();
        }
        match sock.recv_from(&mut buf) {
            Ok((n, SocketAddr::V4(from))) => {
                let t4 = now();
                let fake = server.fake_micros_now();
                match client.handle_datagram(t4, from, &buf[..n]) {
                    Ok(Some(_)) => {
                        fake_at_receive = fake;
                        rtt_us = micros_between(sent, t4);
                    }
                    Ok(None) => {}
                    Err(e) if e.is_from_server() => {}
                    Err(e) => refused.push(e),
                }
            }
            Ok(_) => {}
            Err(e) => assert!(
                matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "{e}"
            ),
        }
        client.handle_timeout(now());
    }
}

/// The synced clock agrees with the fake one within its own error bound
/// (plus 2 ms for reading the two clocks apart); on an idle loopback that
/// is about a millisecond.
fn check_agrees(run: &Run, sync: &SntpSync) {
    let ours = sync.clock.unix_micros_at(sync.clock.instant());
    let diff = (ours - run.fake_at_receive).abs();
    let bound = sync.max_error_ms() * 1000 + 2_000;
    assert!(
        diff <= bound,
        "off by {diff} µs, bound {bound} µs (delay {} µs)",
        sync.delay_us
    );
    assert!(sync.max_error_ms() < 1_000, "{sync:?}");
}

#[test]
fn reads_the_python_servers_fake_time() {
    let server = Server::start(NOV_2026_MS, &["--processing-ms", "25"]);
    let run = run(&server);
    let sync = run.outcome.expect("a sync");
    check_agrees(&run, &sync);
    // The server's 25 ms of processing were taken out of the delay.
    assert!(
        run.rtt_us >= 25_000 && run.rtt_us - sync.delay_us >= 24_000,
        "rtt {} µs, delay {} µs",
        run.rtt_us,
        sync.delay_us
    );
    assert_eq!(sync.stratum, 1);
    assert!(run.refused.is_empty());
    let unix = sync.clock.unix_at(sync.clock.instant()).as_millis();
    assert!(
        (NOV_2026_MS..NOV_2026_MS + 10_000).contains(&unix),
        "{unix}"
    );
}

#[test]
fn reads_a_fake_time_after_the_2036_rollover() {
    let server = Server::start(JAN_2040_MS, &[]);
    let run = run(&server);
    let sync = run.outcome.expect("a sync");
    check_agrees(&run, &sync);
    let unix = sync.clock.unix_at(sync.clock.instant()).as_millis();
    assert!(
        (JAN_2040_MS..JAN_2040_MS + 10_000).contains(&unix),
        "{unix}"
    );
}

#[test]
fn a_forged_reply_is_refused_and_the_echo_accepted() {
    let server = Server::start(NOV_2026_MS, &["--forge-first"]);
    let run = run(&server);
    assert_eq!(run.refused, [SntpError::Originate]);
    let sync = run.outcome.expect("a sync after the forgery");
    check_agrees(&run, &sync);
}

#[test]
fn a_kiss_of_death_ends_the_sync() {
    let server = Server::start(NOV_2026_MS, &["--kiss", "RATE"]);
    let run = run(&server);
    assert_eq!(run.outcome, Err(SntpError::KissOfDeath(*b"RATE")));
    assert!(run.refused.is_empty());
}
