//! wanem: a user-space WAN emulator and router hop for the punchwire NAT lab.
//!
//! It bridges IPv4 between two interfaces with AF_PACKET sockets (the kernel's
//! own forwarding must be off), acts as one router hop (TTL decrement, ICMP
//! time exceeded / fragmentation needed) and applies seeded impairments per
//! direction. See `wanem --help`.

mod packet;
mod pipeline;

use pipeline::{DirConfig, Direction, GeParams, Stats};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

const HELP: &str = "\
wanem - user-space WAN emulator and router hop (punchwire NAT lab)

USAGE:
    wanem --if-a IF --mac-a MAC --if-b IF --mac-b MAC [OPTIONS] [IMPAIRMENTS]

Forwards IPv4 between interface A and interface B (run it in a network
namespace whose ip_forward is 0; the kernel keeps answering ARP and traffic
addressed to the interfaces' own IPs, which wanem leaves alone). Frames sent
out of A go to the Ethernet address --mac-a (the one neighbour on that link),
frames sent out of B to --mac-b. Each forwarded packet has its TTL decremented by --hops
(checksum fixed); a packet arriving with TTL <= --hops is dropped and answered with
ICMP time exceeded, a packet larger than --mtu with DF set is dropped and
answered with ICMP fragmentation needed (without DF it is just dropped).
Offloads (TSO/GSO/GRO, tx checksum) must be off on the links.

REQUIRED:
    --if-a IF          interface of side A
    --mac-a MAC        neighbour on side A (next hop for traffic towards A)
    --if-b IF          interface of side B
    --mac-b MAC        neighbour on side B

OPTIONS:
    --seed N           seed for all random decisions (default 1)
    --no-icmp          do not send ICMP errors
    --hops N           count as N router hops: TTL is decremented by N and a
                       packet arriving with TTL <= N expires here (default 1;
                       real paths between two homes cross several routers)
    -h, --help         this text

IMPAIRMENTS (per direction: plain --NAME applies to both directions,
--NAME-ab only to traffic A->B, --NAME-ba only to traffic B->A):
    --delay MS         one-way delay in milliseconds (fractions allowed)
    --jitter MS        uniform jitter +-MS around the delay (never reorders)
    --loss PCT         random loss, percent
    --ge P,R[,LB[,LG]] Gilbert-Elliott loss, percent: P = good->bad per packet,
                       R = bad->good, LB = loss in bad state (default 100),
                       LG = loss in good state (default 0). Mean loss =
                       P/(P+R)*LB + R/(P+R)*LG, mean burst = 100/R packets
    --dup PCT          duplicate packets, percent
    --reorder PCT      hold PCT percent of packets back by --reorder-delay
                       so the following ones overtake them
    --reorder-delay MS extra delay of a reordered packet (default 10)
    --rate MBIT        rate limit, Mbit/s of IP+Ethernet bytes (token bucket)
    --burst BYTES      token bucket depth (default 3028)
    --queue MS         longest queueing delay at the rate limit before
                       tail drop (default 50)
    --mtu BYTES        largest IPv4 packet forwarded (default 1500)

Order: loss, GE loss, rate limit, delay+jitter, reorder, duplication.
SIGINT/SIGTERM: print counters to stderr and exit; SIGUSR1: print counters.
Prints 'wanem ready' to stderr once forwarding.
";

static TERM: AtomicBool = AtomicBool::new(false);
static DUMP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(sig: libc::c_int) {
    if sig == libc::SIGUSR1 {
        DUMP.store(true, Ordering::Relaxed);
    } else {
        TERM.store(true, Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct Args {
    if_a: String,
    if_b: String,
    mac_a: [u8; 6],
    mac_b: [u8; 6],
    seed: u64,
    icmp: bool,
    hops: u8,
    ab: DirConfig,
    ba: DirConfig,
}

fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(format!("bad MAC address '{s}'"));
    }
    let mut m = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        m[i] = u8::from_str_radix(p, 16).map_err(|_| format!("bad MAC address '{s}'"))?;
    }
    Ok(m)
}

fn num(name: &str, v: &str) -> Result<f64, String> {
    let x: f64 = v
        .parse()
        .map_err(|_| format!("{name}: '{v}' is not a number"))?;
    if !x.is_finite() || x < 0.0 {
        return Err(format!("{name}: '{v}' must be >= 0"));
    }
    Ok(x)
}

fn pct(name: &str, v: &str) -> Result<f64, String> {
    let x = num(name, v)?;
    if x > 100.0 {
        return Err(format!("{name}: '{v}' is more than 100 percent"));
    }
    Ok(x / 100.0)
}

fn ms(name: &str, v: &str) -> Result<u64, String> {
    Ok((num(name, v)? * 1e6).round() as u64)
}

/// Apply one impairment option to a direction's config; Ok(false) if `name`
/// is not an impairment.
fn apply(c: &mut DirConfig, name: &str, v: &str) -> Result<bool, String> {
    match name {
        "delay" => c.delay_ns = ms(name, v)?,
        "jitter" => c.jitter_ns = ms(name, v)?,
        "loss" => c.loss = pct(name, v)?,
        "ge" => {
            let f: Vec<&str> = v.split(',').collect();
            if !(2..=4).contains(&f.len()) {
                return Err(format!("ge: expected P,R[,LB[,LG]], got '{v}'"));
            }
            c.ge = Some(GeParams {
                p: pct("ge P", f[0])?,
                r: pct("ge R", f[1])?,
                loss_bad: f
                    .get(2)
                    .map(|s| pct("ge LB", s))
                    .transpose()?
                    .unwrap_or(1.0),
                loss_good: f
                    .get(3)
                    .map(|s| pct("ge LG", s))
                    .transpose()?
                    .unwrap_or(0.0),
            });
        }
        "dup" => c.dup = pct(name, v)?,
        "reorder" => c.reorder = pct(name, v)?,
        "reorder-delay" => c.reorder_delay_ns = ms(name, v)?,
        "rate" => {
            let r = num(name, v)?;
            c.rate_bps = if r > 0.0 {
                Some((r * 1e6) as u64)
            } else {
                None
            };
        }
        "burst" => c.burst_bytes = num(name, v)? as u64,
        "queue" => c.queue_ns = ms(name, v)?,
        "mtu" => {
            let m = num(name, v)? as usize;
            if m != 0 && m < 68 {
                return Err("mtu: must be at least 68".into());
            }
            c.mtu = m;
        }
        _ => return Ok(false),
    }
    Ok(true)
}

fn parse_args(argv: &[String]) -> Result<Option<Args>, String> {
    let mut a = Args {
        if_a: String::new(),
        if_b: String::new(),
        mac_a: [0; 6],
        mac_b: [0; 6],
        seed: 1,
        icmp: true,
        hops: 1,
        ab: DirConfig::default(),
        ba: DirConfig::default(),
    };
    let (mut got_mac_a, mut got_mac_b) = (false, false);
    let mut it = argv.iter();
    while let Some(opt) = it.next() {
        if opt == "-h" || opt == "--help" {
            return Ok(None);
        }
        if opt == "--no-icmp" {
            a.icmp = false;
            continue;
        }
        let Some(name) = opt.strip_prefix("--") else {
            return Err(format!("unexpected argument '{opt}'"));
        };
        let v = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
        match name {
            "if-a" => a.if_a = v.clone(),
            "if-b" => a.if_b = v.clone(),
            "mac-a" => {
                a.mac_a = parse_mac(v)?;
                got_mac_a = true;
            }
            "mac-b" => {
                a.mac_b = parse_mac(v)?;
                got_mac_b = true;
            }
            "seed" => a.seed = v.parse().map_err(|_| format!("bad seed '{v}'"))?,
            "hops" => {
                a.hops = match v.parse::<u8>() {
                    Ok(h) if (1..=32).contains(&h) => h,
                    _ => return Err(format!("--hops: expected 1-32, got '{v}'")),
                }
            }
            _ => {
                let ok = if let Some(n) = name.strip_suffix("-ab") {
                    apply(&mut a.ab, n, v)?
                } else if let Some(n) = name.strip_suffix("-ba") {
                    apply(&mut a.ba, n, v)?
                } else {
                    apply(&mut a.ab, name, v)? && apply(&mut a.ba, name, v)?
                };
                if !ok {
                    return Err(format!("unknown option '--{name}' (see --help)"));
                }
            }
        }
    }
    if a.if_a.is_empty() || a.if_b.is_empty() || !got_mac_a || !got_mac_b {
        return Err("--if-a, --mac-a, --if-b and --mac-b are required (see --help)".into());
    }
    Ok(Some(a))
}

fn os_err(what: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn setsockopt_int(fd: i32, level: i32, opt: i32, val: i32) -> io::Result<()> {
    // SAFETY: passing a pointer to a live c_int and its size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            &val as *const i32 as *const libc::c_void,
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(os_err("setsockopt"));
    }
    Ok(())
}

/// One side of the hop: its packet socket and addresses.
struct Side {
    name: String,
    fd: i32,
    own_mac: [u8; 6],
    own_ip: Option<[u8; 4]>,
    peer_mac: [u8; 6],
}

impl Drop for Side {
    fn drop(&mut self) {
        // SAFETY: we own the descriptor.
        unsafe { libc::close(self.fd) };
    }
}

fn if_index(name: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(name).map_err(|_| io::Error::other("bad interface name"))?;
    // SAFETY: valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(os_err(&format!("interface {name}")));
    }
    Ok(idx)
}

fn if_mac(name: &str) -> io::Result<[u8; 6]> {
    let s = std::fs::read_to_string(format!("/sys/class/net/{name}/address"))?;
    parse_mac(s.trim()).map_err(io::Error::other)
}

fn if_ipv4(name: &str) -> Option<[u8; 4]> {
    // SAFETY: plain ioctl on a throwaway socket with a zeroed ifreq.
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        if s < 0 {
            return None;
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (d, b) in req
            .ifr_name
            .iter_mut()
            .zip(name.bytes().take(libc::IFNAMSIZ - 1))
        {
            *d = b as libc::c_char;
        }
        let r = libc::ioctl(s, libc::SIOCGIFADDR, &mut req);
        libc::close(s);
        if r < 0 {
            return None;
        }
        let sin = &*(&req.ifr_ifru.ifru_addr as *const libc::sockaddr as *const libc::sockaddr_in);
        Some(sin.sin_addr.s_addr.to_ne_bytes())
    }
}

fn open_side(name: &str, peer_mac: [u8; 6]) -> io::Result<Side> {
    let ifindex = if_index(name)?;
    let proto = (libc::ETH_P_IP as u16).to_be();
    // SAFETY: plain socket creation.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            proto as i32,
        )
    };
    if fd < 0 {
        return Err(os_err("AF_PACKET socket (are you root?)"));
    }
    let side = Side {
        name: name.to_string(),
        fd,
        own_mac: if_mac(name)?,
        own_ip: if_ipv4(name),
        peer_mac,
    };
    // SAFETY: sockaddr_ll is plain data; zeroed is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: binding to a properly initialised sockaddr_ll.
    let r = unsafe {
        libc::bind(
            fd,
            &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(os_err(&format!("bind to {name}")));
    }
    setsockopt_int(fd, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, 1)?;
    // Best effort: bypass the qdisc, big buffers.
    let _ = setsockopt_int(fd, libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, 1);
    let _ = setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 8 << 20);
    let _ = setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, 4 << 20);
    Ok(side)
}

fn send_frame(side: &Side, frame: &[u8]) -> bool {
    // SAFETY: sending from a valid buffer on our bound socket.
    let r = unsafe {
        libc::send(
            side.fd,
            frame.as_ptr() as *const libc::c_void,
            frame.len(),
            0,
        )
    };
    r == frame.len() as isize
}

/// Frames the kernel dropped because the socket's receive queue was full
/// (cumulative; PACKET_STATISTICS resets on read).
fn socket_drops(side: &Side, total: &mut u64) -> u64 {
    // SAFETY: tpacket_stats is plain data; we pass its size.
    unsafe {
        let mut st: libc::tpacket_stats = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
        if libc::getsockopt(
            side.fd,
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            &mut st as *mut libc::tpacket_stats as *mut libc::c_void,
            &mut len,
        ) == 0
        {
            *total += st.tp_drops as u64;
        }
    }
    *total
}

/// Prints both directions' counters with the sockets' receive drops.
fn dump_stats(sides: &[Side; 2], rx_drops: &mut [u64; 2], dirs: &[Direction; 2]) {
    let (da, db) = (
        socket_drops(&sides[0], &mut rx_drops[0]),
        socket_drops(&sides[1], &mut rx_drops[1]),
    );
    print_stats(&[
        ("A->B".into(), &dirs[0].stats, da),
        ("B->A".into(), &dirs[1].stats, db),
    ]);
}

fn print_stats(dirs: &[(String, &Stats, u64); 2]) {
    for (name, s, rx_drops) in dirs {
        eprintln!(
            "wanem {name}: received {} sent {} lost_random {} lost_ge {} dropped_queue {} \
             dropped_mtu {} dropped_ttl {} dropped_send {} duplicated {} reordered {} \
             socket_rx_drops {rx_drops}",
            s.received,
            s.sent,
            s.lost_random,
            s.lost_ge,
            s.dropped_queue,
            s.dropped_mtu,
            s.dropped_ttl,
            s.dropped_send,
            s.duplicated,
            s.reordered
        );
    }
}

/// Handle one frame received on side `inp` that would leave on side `out`.
fn forward(
    mut frame: Vec<u8>,
    inp: &Side,
    out: &Side,
    dir: &mut Direction,
    now_ns: u64,
    icmp: bool,
    hops: u8,
) {
    let Some(info) = packet::parse(&frame) else {
        return;
    };
    // Traffic for the hop's own addresses is the kernel's business.
    if Some(info.dst) == inp.own_ip || Some(info.dst) == out.own_ip {
        return;
    }
    frame.truncate(packet::ETH_HLEN + info.total_len);
    let icmp_src = inp.own_ip.filter(|_| icmp);
    if info.ttl <= hops {
        dir.stats.dropped_ttl += 1;
        if let Some(ip) = icmp_src
            && packet::may_send_icmp_error(&frame, &info)
        {
            let e = packet::icmp_error(&frame, &info, inp.own_mac, ip, 11, 0, 0);
            send_frame(inp, &e);
        }
        return;
    }
    if dir.cfg.mtu != 0 && info.total_len > dir.cfg.mtu {
        dir.stats.dropped_mtu += 1;
        if info.dont_fragment
            && let Some(ip) = icmp_src
            && packet::may_send_icmp_error(&frame, &info)
        {
            let e = packet::icmp_error(&frame, &info, inp.own_mac, ip, 3, 4, dir.cfg.mtu as u32);
            send_frame(inp, &e);
        }
        return;
    }
    for _ in 0..hops {
        packet::decrement_ttl(&mut frame);
    }
    frame[0..6].copy_from_slice(&out.peer_mac);
    frame[6..12].copy_from_slice(&out.own_mac);
    let size = frame.len();
    dir.ingest(now_ns, frame, size);
}

fn run(args: Args) -> io::Result<()> {
    let sides = [
        open_side(&args.if_a, args.mac_a)?,
        open_side(&args.if_b, args.mac_b)?,
    ];
    let mut dirs = [
        Direction::new(args.ab.clone(), args.seed.wrapping_mul(2).wrapping_add(1)),
        Direction::new(args.ba.clone(), args.seed.wrapping_mul(2).wrapping_add(2)),
    ];
    // SAFETY: installing a handler that only touches atomics.
    unsafe {
        let h = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        libc::signal(libc::SIGINT, h);
        libc::signal(libc::SIGTERM, h);
        libc::signal(libc::SIGUSR1, h);
        libc::prctl(libc::PR_SET_TIMERSLACK, 1000u64);
    }
    let start = Instant::now();
    let now = || start.elapsed().as_nanos() as u64;
    eprintln!(
        "wanem ready: A={} ({:?}) B={} ({:?}) seed={}\n  A->B {:?}\n  B->A {:?}",
        sides[0].name, sides[0].own_ip, sides[1].name, sides[1].own_ip, args.seed, args.ab, args.ba
    );
    for (name, c) in [("A->B", &args.ab), ("B->A", &args.ba)] {
        if let Some(g) = c.ge {
            eprintln!("  {name} GE mean loss {:.2}%", g.mean_loss() * 100.0);
        }
    }
    let mut buf = vec![0u8; 65536 + 64];
    let mut rx_drops = [0u64; 2];
    let mut pfd = [
        libc::pollfd {
            fd: sides[0].fd,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: sides[1].fd,
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    while !TERM.load(Ordering::Relaxed) {
        if DUMP.swap(false, Ordering::Relaxed) {
            dump_stats(&sides, &mut rx_drops, &dirs);
        }
        let t = now();
        let next = dirs.iter().filter_map(|d| d.next_release()).min();
        let timeout = match next {
            Some(r) => r.saturating_sub(t),
            None => 1_000_000_000,
        };
        let ts = libc::timespec {
            tv_sec: (timeout / 1_000_000_000) as libc::time_t,
            tv_nsec: (timeout % 1_000_000_000) as libc::c_long,
        };
        for p in &mut pfd {
            p.revents = 0;
        }
        // SAFETY: pfd and ts are valid for the call.
        let r = unsafe { libc::ppoll(pfd.as_mut_ptr(), 2, &ts, std::ptr::null()) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for i in 0..2 {
            if pfd[i].revents & libc::POLLIN == 0 {
                continue;
            }
            // Read a bounded batch so the other side is not starved.
            for _ in 0..256 {
                // SAFETY: sockaddr_ll is plain data.
                let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
                let mut sl = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
                // SAFETY: buf and sll are valid for writes of the given sizes.
                let n = unsafe {
                    libc::recvfrom(
                        sides[i].fd,
                        buf.as_mut_ptr() as *mut libc::c_void,
                        buf.len(),
                        libc::MSG_TRUNC,
                        &mut sll as *mut libc::sockaddr_ll as *mut libc::sockaddr,
                        &mut sl,
                    )
                };
                if n < 0 {
                    break;
                }
                let n = n as usize;
                if sll.sll_pkttype != libc::PACKET_HOST || n > buf.len() {
                    continue;
                }
                let t = now();
                let (inp, out) = (&sides[i], &sides[1 - i]);
                forward(
                    buf[..n].to_vec(),
                    inp,
                    out,
                    &mut dirs[i],
                    t,
                    args.icmp,
                    args.hops,
                );
            }
        }
        let t = now();
        for (i, d) in dirs.iter_mut().enumerate() {
            while let Some(f) = d.pop_due(t) {
                if send_frame(&sides[1 - i], &f) {
                    d.stats.sent += 1;
                } else {
                    d.stats.dropped_send += 1;
                }
            }
        }
    }
    dump_stats(&sides, &mut rx_drops, &dirs);
    Ok(())
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse_args(&argv) {
        Ok(Some(a)) => a,
        Ok(None) => {
            print!("{HELP}");
            return;
        }
        Err(e) => {
            eprintln!("wanem: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(args) {
        eprintln!("wanem: {e}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Result<Option<Args>, String> {
        let v: Vec<String> = s.split_whitespace().map(String::from).collect();
        parse_args(&v)
    }

    const BASE: &str = "--if-a a --if-b b --mac-a 02:00:00:00:00:01 --mac-b 02:00:00:00:00:02";

    #[test]
    fn cli_directions() {
        let a = args(&format!(
            "{BASE} --delay 20 --loss-ab 5 --rate-ba 10 --ge 1,25"
        ))
        .unwrap()
        .unwrap();
        assert_eq!(a.ab.delay_ns, 20_000_000);
        assert_eq!(a.ba.delay_ns, 20_000_000);
        assert!((a.ab.loss - 0.05).abs() < 1e-12);
        assert_eq!(a.ba.loss, 0.0);
        assert_eq!(a.ab.rate_bps, None);
        assert_eq!(a.ba.rate_bps, Some(10_000_000));
        assert_eq!(a.ab.ge.unwrap().loss_bad, 1.0);
        assert_eq!(a.mac_b, [2, 0, 0, 0, 0, 2]);
    }

    #[test]
    fn cli_errors() {
        assert!(args("--delay 5").is_err());
        assert!(args(&format!("{BASE} --loss 101")).is_err());
        assert!(args(&format!("{BASE} --bogus 1")).is_err());
        assert!(args(&format!("{BASE} --delay")).is_err());
        assert!(args(&format!("{BASE} --delay -3")).is_err());
        assert!(args("--help").unwrap().is_none());
    }
}
