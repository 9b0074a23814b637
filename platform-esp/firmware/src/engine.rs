//! The engine's run loop on the device: the clock (SNTP), then the TCP
//! punch and splice or the UDP tunnel, over and over.
//!
//! ```text
//! loop {
//!     online: rejoin Wi-Fi if the link dropped, wait for a DHCP lease
//!     tcp: SNTP if there is no clock or it is older than RESYNC_AFTER_MS
//!          (failure: log, pause, loop; never punch on a wrong clock)
//!          punch → local stream (connect or accept) → splice → close
//!     udp: tunnel::run_with until the peer falls silent or the network goes
//!     settle: let closed streams finish their FIN exchange
//!     pause RESTART_PAUSE_MS
//! }
//! ```
//!
//! Every step runs over the core's traits on [`Net`], whose `wait` fails
//! when the link or the lease is lost, which ends the step.

use core::net::{SocketAddr, SocketAddrV4};

use embassy_net_driver::Driver;
use esp_hal::rng::Rng;
use esp_println::println;
use esp_radio::wifi::WifiController;
use punchwire_core::net::{ConnectStatus, NetError, Tcp, Udp, Wait};
use punchwire_core::punch::{self, Event, PunchConfig, PunchMachine};
use punchwire_core::schedule::{self, MAX_SKEW_BOUND_MS};
use punchwire_core::sntp::{self, SntpClient, SntpError, SntpSync};
use punchwire_core::time::{self, Instant};
use punchwire_core::tunnel::{
    self, Buffers, Driver as TunnelDriver, DriverConfig, Flow, Local, LocalSlot, MachineConfig,
    Protocol, Tunnel, TunnelError, TunnelEvent, pw1,
};
use punchwire_esp::TcpHandle;

use crate::config::{Config, Mode, Role};
use crate::net::Net;
use crate::ram::{EngineRam, FRAME, PW1_STREAMS, PW1_WINDOW, Pw1Ram, SPLICE_BUF, TunnelEndpoint};
use punchwire_esp::splice::{self, SpliceError};

/// Pause between rounds (after a tunnel or a spliced connection ended, or
/// a punch failed).
const RESTART_PAUSE_MS: u64 = 5_000;
/// Pause before asking the SNTP server again after a failed sync.
const SNTP_RETRY_MS: u64 = 30_000;
/// Sync the clock again before a punch when the last sync is this old.
const RESYNC_AFTER_MS: u64 = 3_600_000;
/// Drift allowed for the monotonic clock between syncs, in parts per
/// million (the C3's 40 MHz crystal is specified to ±10 ppm; this leaves
/// room for temperature and ageing).
const DRIFT_PPM: u64 = 50;
/// Added to our own clock error for the peer's: the punch needs a bound on
/// the difference of the two clocks. One second covers a peer kept by NTP
/// (milliseconds) or by one SNTP exchange over any sane path; each side
/// sprays every bucket its own bound admits, so a peer with a larger bound
/// (Linux's default is 20 s) still meets us.
const PEER_CLOCK_MARGIN_MS: i64 = 1_000;
/// How long the connect role waits for the local service.
const LOCAL_CONNECT_TIMEOUT_MS: u64 = 10_000;
/// How long the listen role waits for a LAN client after the punch (the
/// punched connection idles meanwhile).
const LOCAL_ACCEPT_TIMEOUT_MS: u64 = 300_000;
/// A spliced connection with no byte either way for this long is closed.
/// The streams have no keep-alive, so this is what notices a peer that
/// vanished without FIN or RST.
const SPLICE_IDLE_MS: u64 = 3_600_000;
/// How long closed streams may take to finish their FIN exchange.
const SETTLE_MS: u64 = 10_000;
/// Tunnel statistics interval.
const STATS_EVERY_MS: u64 = 60_000;
/// TTL of the first punch heartbeats / priming SYNs (as the Linux default):
/// it must cover this side's NAT layers and expire before the peer's router.
const PRIME_TTL: u8 = punch::DEFAULT_PRIME_TTL;

/// The clock from the last SNTP sync.
#[derive(Clone, Copy)]
struct Clock {
    sync: SntpSync,
}

impl Clock {
    /// Error bound at `now`: the sync's bound plus drift since.
    fn error_ms(&self, now: Instant) -> i64 {
        let age_us = time::micros_between(self.sync.clock.instant(), now);
        let drift_ms = (age_us / 1000).saturating_mul(DRIFT_PPM) / 1_000_000;
        self.sync
            .max_error_ms()
            .saturating_add(i64::try_from(drift_ms).unwrap_or(i64::MAX))
    }

    fn age_ms(&self, now: Instant) -> u64 {
        time::micros_between(self.sync.clock.instant(), now) / 1000
    }
}

/// Why a clock sync failed.
#[derive(Clone, Copy, Debug)]
enum ClockError {
    Sntp(SntpError),
    Net(NetError),
}

impl core::fmt::Display for ClockError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ClockError::Sntp(e) => e.fmt(f),
            ClockError::Net(e) => write!(f, "network: {e}"),
        }
    }
}

/// Runs the engine for ever. See the module docs.
pub fn run<D: Driver>(
    cfg: &Config,
    wifi: &mut WifiController<'_>,
    net: &mut Net<D>,
    rng: Rng,
    mut ram: EngineRam,
) -> ! {
    println!(
        "engine: mode {} peer {} role {} udp port {} local host {} sntp {}",
        cfg.mode, cfg.peer, cfg.role, cfg.udp_port, cfg.local_host, cfg.sntp_server
    );
    net.smol().set_local_host(cfg.local_host);
    let mut clock: Option<Clock> = None;
    let mut sntp_tried = false;
    loop {
        crate::online(wifi, net, cfg);
        crate::log_heap();
        let now = net.now();
        // The tunnel needs no clock: it syncs once for the log. The punch
        // does not start without one.
        let stale = clock.is_none_or(|c| c.age_ms(now) >= RESYNC_AFTER_MS);
        if (cfg.mode == Mode::Tcp && stale) || !sntp_tried {
            sntp_tried = true;
            match sync_clock(net, cfg, &rng) {
                Ok(c) => clock = Some(c),
                Err(e) => {
                    println!("SNTP: no time from {}: {e}", cfg.sntp_server);
                    if cfg.mode == Mode::Tcp {
                        println!("SNTP: the punch needs the clock; retrying in {SNTP_RETRY_MS} ms");
                        pause(net, SNTP_RETRY_MS);
                        continue;
                    }
                }
            }
        }
        match (&mut ram, clock) {
            (EngineRam::Tcp { splice }, Some(c)) => tcp_round(net, cfg, &rng, c, splice),
            (
                EngineRam::Udp {
                    endpoint,
                    rx,
                    tx,
                    pw1,
                    local,
                    slots,
                },
                _,
            ) => {
                let token = (u64::from(rng.random()) << 32) | u64::from(rng.random()) | 1;
                let mem = UdpMem {
                    rx: &mut rx[..],
                    tx: &mut tx[..],
                    pw1,
                    local: &mut local[..],
                    slots: &mut slots[..],
                };
                udp_round(net, cfg, endpoint, mem, token)
            }
            // The tcp arm above always has a clock (the sync retried).
            (EngineRam::Tcp { .. }, None) => {}
        }
        settle(net);
        pause(net, RESTART_PAUSE_MS);
    }
}

/// One SNTP exchange through the traits, with a cookie from the RNG.
fn sync_clock<N: Udp + Wait>(net: &mut N, cfg: &Config, rng: &Rng) -> Result<Clock, ClockError> {
    let server = SocketAddrV4::new(cfg.sntp_server, sntp::PORT);
    let cookie = (u64::from(rng.random()) << 32) | u64::from(rng.random());
    println!("SNTP: asking {server}");
    let sock = net.udp_bind(0).map_err(ClockError::Net)?;
    let mut client = SntpClient::new(server, cookie);
    // A reply may carry extensions; longer ones are dropped (TooLong).
    let mut buf = [0u8; 128];
    let result = loop {
        let now = net.now();
        client.handle_timeout(now);
        while let Some(n) = client.poll_transmit(now, &mut buf) {
            // A lost request is resent on the client's schedule.
            let _ = net.udp_send_to(sock, &buf[..n], server);
        }
        loop {
            match net.udp_recv_from(sock, &mut buf) {
                Ok((n, from)) => {
                    let at = net.now();
                    if let Err(e) = client.handle_datagram(at, from, &buf[..n]) {
                        println!("SNTP: ignored a reply: {e}");
                    }
                }
                Err(NetError::TooLong) => {}
                Err(_) => break,
            }
        }
        if let Some(outcome) = client.outcome() {
            break outcome.map_err(ClockError::Sntp);
        }
        if let Err(e) = net.wait(client.poll_timeout()) {
            break Err(ClockError::Net(e));
        }
    };
    net.udp_close(sock);
    let sync = result?;
    let now = net.now();
    let unix = sync.clock.unix_at(now);
    println!(
        "SNTP: unix time {}.{:03} s, error at most {} ms (delay {} us, stratum {})",
        unix.as_secs_floor(),
        unix.as_millis().rem_euclid(1000),
        sync.max_error_ms(),
        sync.delay_us,
        sync.stratum
    );
    let b = schedule::BucketPorts::new(schedule::bucket(unix));
    println!(
        "schedule now: bucket {} ports {:?}",
        b.bucket,
        b.ports.as_slice()
    );
    Ok(Clock { sync })
}

/// Punch, open the local side, splice, close.
fn tcp_round<D: Driver>(
    net: &mut Net<D>,
    cfg: &Config,
    rng: &Rng,
    clock: Clock,
    bufs: &mut [[u8; SPLICE_BUF]; 2],
) {
    let now = net.now();
    let nonce = (u64::from(rng.random()) << 32) | u64::from(rng.random());
    let mut pc = PunchConfig::new(cfg.peer, nonce);
    pc.max_clock_error_ms = clock
        .error_ms(now)
        .saturating_add(PEER_CLOCK_MARGIN_MS)
        .min(MAX_SKEW_BOUND_MS - 1);
    pc.prime_ttl = PRIME_TTL;
    let mut machine = match PunchMachine::new(pc, now, clock.sync.clock.unix_at(now)) {
        Ok(m) => m,
        Err(e) => {
            println!("punch: bad configuration: {e}");
            return;
        }
    };
    println!(
        "punch: {} with clock error bound {} ms",
        cfg.peer, pc.max_clock_error_ms
    );
    let result = punch::punch(net, &mut machine, |e, _| log_punch_event(e));
    let (conn, winner) = match result {
        Ok(w) => w,
        Err(e) => {
            println!("punch: failed: {e}");
            return;
        }
    };
    println!(
        "punch: connected on port {} as {:?}",
        winner.port, winner.part
    );
    let Some(local) = open_local(net, cfg.role) else {
        net.tcp_close(conn);
        return;
    };
    let [ab, ba] = bufs;
    match splice::splice(net, conn, local, ab, ba, SPLICE_IDLE_MS) {
        Ok(t) => println!(
            "splice: done, {} B from the peer, {} B to it",
            t.forward, t.back
        ),
        Err(SpliceError::Wait(e)) => println!("splice: network lost ({e})"),
        Err(e) => println!("splice: ended: {e}"),
    }
    net.tcp_close(local);
    net.tcp_close(conn);
}

/// The LAN side of a punched connection: connect to the local service, or
/// accept one client.
fn open_local<N: Tcp + Wait>(net: &mut N, role: Role) -> Option<N::TcpSocket> {
    let start = net.now();
    match role {
        Role::Connect(port) => {
            let s = match net.tcp_connect_local(port) {
                Ok(s) => s,
                Err(e) => {
                    println!("local: cannot connect to port {port}: {e}");
                    return None;
                }
            };
            let end = time::add_millis(start, LOCAL_CONNECT_TIMEOUT_MS);
            loop {
                match net.tcp_status(s) {
                    ConnectStatus::Connected => {
                        println!("local: connected to port {port}");
                        return Some(s);
                    }
                    ConnectStatus::Failed(e) => {
                        println!("local: connect to port {port} failed: {e}");
                        break;
                    }
                    ConnectStatus::Pending | ConnectStatus::Handshaking => {}
                }
                match net.wait(Some(end)) {
                    Ok(now) if time::micros(now) < time::micros(end) => {}
                    Ok(_) => {
                        println!("local: connect to port {port} timed out");
                        break;
                    }
                    Err(e) => {
                        println!("local: network lost ({e})");
                        break;
                    }
                }
            }
            net.tcp_close(s);
            None
        }
        Role::Listen(port) => {
            let l = match net.tcp_listen(port) {
                Ok(l) => l,
                Err(e) => {
                    println!("local: cannot listen on port {port}: {e}");
                    return None;
                }
            };
            println!("local: waiting for a client on port {port}");
            let end = time::add_millis(start, LOCAL_ACCEPT_TIMEOUT_MS);
            let accepted = loop {
                match net.tcp_accept(l) {
                    Ok(s) => break Some(s),
                    Err(NetError::WouldBlock) => {}
                    Err(e) => {
                        println!("local: accept failed: {e}");
                        break None;
                    }
                }
                match net.wait(Some(end)) {
                    Ok(now) if time::micros(now) < time::micros(end) => {}
                    Ok(_) => {
                        println!("local: no client within {LOCAL_ACCEPT_TIMEOUT_MS} ms");
                        break None;
                    }
                    Err(e) => {
                        println!("local: network lost ({e})");
                        break None;
                    }
                }
            };
            net.tcp_unlisten(l);
            if accepted.is_some() {
                println!("local: client accepted on port {port}");
            }
            accepted
        }
    }
}

fn log_punch_event(e: Event) {
    match e {
        Event::Buckets { first, last } => println!("punch: spraying buckets {first}..={last}"),
        Event::Connected { port } => println!("punch: connection opened on port {port}"),
        Event::Elected(part) => println!("punch: election part {part:?}"),
        Event::PortSkipped { port, error } => println!("punch: port {port} skipped: {error}"),
        Event::Refused {
            port,
            error: NetError::NoBuffers,
        } => println!("punch: port {port} waits for a free socket"),
        Event::Refused { port, error } => println!("punch: port {port}: {error} (re-armed)"),
    }
}

/// The udp mode's memory for one round.
struct UdpMem<'a> {
    rx: &'a mut [u8],
    tx: &'a mut [u8],
    pw1: &'a mut Pw1Ram,
    local: &'a mut [u8],
    slots: &'a mut [Option<LocalSlot<TcpHandle>>],
}

/// Runs the tunnel (pw1 with a punchwire peer, udphp v0.12 with any
/// other) until the peer falls silent or the network goes.
fn udp_round<D: Driver>(
    net: &mut Net<D>,
    cfg: &Config,
    ep: &mut TunnelEndpoint,
    mem: UdpMem<'_>,
    token: u64,
) {
    let local = local_of(cfg.role);
    // A fresh endpoint: the peer that fell silent restarts from seq 0.
    // In place: a second endpoint would not fit the stack comfortably.
    ep.reset(endpoint_config(local), net.now());
    let mut p = pw1::Config::new(matches!(local, Local::Connect(_)));
    p.max_streams = PW1_STREAMS as u16;
    p.initial_chunks = (PW1_WINDOW / PW1_STREAMS / 2).max(1) as u16;
    let mcfg = MachineConfig {
        peer: SocketAddr::V4(SocketAddrV4::new(cfg.peer, cfg.udp_port)),
        local,
        protocol: Protocol::Auto,
        prime_ttl: PRIME_TTL,
        normal_ttl: punch::DEFAULT_NORMAL_TTL,
        heartbeat_ms: 15_000,
        silence_ms: 120_000,
        pw1: p,
        token,
    };
    let storage = pw1::Storage {
        send: &mut mem.pw1.send[..],
        recv: &mut mem.pw1.recv[..],
        sent: &mut mem.pw1.sent[..],
        streams: &mut mem.pw1.streams[..],
    };
    let now = net.now();
    let machine = Tunnel::new(mcfg, Some(ep), Some(storage), now);
    println!(
        "tunnel: to {}:{} ({local:?}; pw1 with {PW1_STREAMS} streams, or v0.12 frames of {FRAME} B)",
        cfg.peer, cfg.udp_port
    );
    let dcfg = DriverConfig {
        udp_port: cfg.udp_port,
        local,
        stats_every_ms: Some(STATS_EVERY_MS),
    };
    let bufs = Buffers {
        rx: mem.rx,
        tx: mem.tx,
        local: mem.local,
        slots: mem.slots,
    };
    let mut driver = match TunnelDriver::new(net, machine, dcfg, bufs) {
        Ok(d) => d,
        Err(e) => {
            println!("tunnel: {e}");
            return;
        }
    };
    let mut foreign: u64 = 0;
    let result = tunnel::run(net, &mut driver, |e| match e {
        TunnelEvent::PeerHeard(a) => {
            println!("tunnel: peer heard from {a}: the hole is open");
            Flow::Continue
        }
        TunnelEvent::PeerMoved(a) => {
            println!("tunnel: peer now sends from {a}");
            Flow::Continue
        }
        TunnelEvent::PeerSilent => {
            println!("tunnel: peer silent; starting over");
            Flow::Stop
        }
        TunnelEvent::PeerRestarted => {
            println!("tunnel: the peer restarted; its sessions were reset");
            Flow::Continue
        }
        TunnelEvent::Protocol(c) => {
            println!("tunnel: protocol {c:?}");
            Flow::Continue
        }
        TunnelEvent::ProtocolRefused => {
            println!("tunnel: the peer's protocol is refused");
            Flow::Stop
        }
        TunnelEvent::StreamStarted(n) => {
            println!("tunnel: session {n} started");
            Flow::Continue
        }
        TunnelEvent::StreamEnded { id, reset } => {
            println!(
                "tunnel: session {id} {}",
                if reset { "reset" } else { "ended" }
            );
            Flow::Continue
        }
        TunnelEvent::LocalConnectFailed { id, error } => {
            println!("tunnel: session {id}: local service: {error}");
            Flow::Continue
        }
        TunnelEvent::Dropped { foreign: f, bad } => {
            if f > foreign && f.is_power_of_two() {
                println!("tunnel: ignored {f} datagram(s) from others ({bad} bad from the peer)");
            }
            foreign = f;
            Flow::Continue
        }
        // The firmware does not enable birthday punching (no extra
        // sockets in its pool); a symmetric peer is reached only by a
        // peer that does (see the README's NAT coverage).
        TunnelEvent::Birthday(b) => {
            println!("tunnel: birthday {b:?}");
            Flow::Continue
        }
        TunnelEvent::Stats(s) => {
            if let Some(p) = s.pw1 {
                println!(
                    "tunnel stats: pw1, sent {} B, received {} B, rtt {} us, {} lost, {} retransmits, {} streams",
                    p.stream_bytes_sent,
                    p.stream_bytes_received,
                    p.srtt_us.unwrap_or(0),
                    p.packets_lost,
                    p.retransmits,
                    p.streams
                );
            } else if let Some(v) = s.v012 {
                println!(
                    "tunnel stats: v0.12, sent {} B in {} frames ({} retransmits), received {} B in {} frames, rtt {} us, bad {}",
                    v.payload_bytes_sent,
                    v.data_frames_sent,
                    v.retransmits,
                    v.payload_bytes_received,
                    v.data_frames_received,
                    v.srtt_us.unwrap_or(0),
                    v.bad.total()
                );
            }
            Flow::Continue
        }
    });
    match result {
        Ok(()) => {}
        Err(TunnelError::Wait(e)) => println!("tunnel: network lost ({e})"),
        Err(e) => println!("tunnel: {e}"),
    }
}

/// The tunnel's local side for a role.
pub fn local_of(role: Role) -> Local {
    match role {
        Role::Connect(p) => Local::Connect(p),
        Role::Listen(p) => Local::Listen(p),
    }
}

/// The endpoint's settings: MTU-sized frames, no compression (the core is
/// built without `deflate`; the peer's compressed frames are still
/// inflated).
pub fn endpoint_config(local: Local) -> tunnel::Config {
    let mut c = tunnel::Config::new(local.role());
    c.frame_size = FRAME;
    c.compress = false;
    c
}

/// Lets closed streams finish their FIN exchange (their owners are gone).
fn settle<D: Driver>(net: &mut Net<D>) {
    let end = time::add_millis(net.now(), SETTLE_MS);
    while net.smol().tcp_closing() > 0 {
        match net.wait(Some(end)) {
            Ok(now) if time::micros(now) < time::micros(end) => {}
            _ => break,
        }
    }
}

/// Keeps the network polled for `ms` (a lost link just sleeps).
fn pause<N: Wait>(net: &mut N, ms: u64) {
    let end = time::add_millis(net.now(), ms);
    loop {
        let now = match net.wait(Some(end)) {
            Ok(now) => now,
            Err(_) => {
                crate::sleep(esp_hal::time::Duration::from_millis(100));
                net.now()
            }
        };
        if time::micros(now) >= time::micros(end) {
            return;
        }
    }
}
