//! Build-time configuration, read from `PW_*` environment variables.
//!
//! Everything is parsed in `const` context, so a malformed value stops the
//! build with a message naming the variable instead of producing an image
//! that fails on the device. Unset variables take harmless defaults (RFC 5737
//! documentation addresses, an empty SSID) so CI builds without any of them;
//! the firmware refuses to join a network with an empty SSID.

use core::net::Ipv4Addr;

/// Which punchwire transport the device runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `punchwire tcp`: punch a direct TCP connection.
    Tcp,
    /// `punchwire udp`: the udphp v0.12 tunnel.
    Udp,
}

/// Which side of the local TCP connection the device is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Connect to `PW_LOCAL_HOST:PORT` for each session (Linux `udp -c PORT`,
    /// `tcp --forward PORT`).
    Connect(u16),
    /// Accept connections on this device's `PORT` (Linux `udp -l PORT`,
    /// `tcp --listen PORT`).
    Listen(u16),
}

/// The whole build-time configuration.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// `PW_WIFI_SSID`; empty means "not configured".
    pub ssid: &'static str,
    /// `PW_WIFI_PASSWORD`; empty means an open network.
    pub password: &'static str,
    /// `PW_MODE`.
    pub mode: Mode,
    /// `PW_PEER`: the peer's public IPv4 address.
    pub peer: Ipv4Addr,
    /// `PW_ROLE`.
    pub role: Role,
    /// `PW_UDP_PORT`: the tunnel's UDP port (udp mode).
    pub udp_port: u16,
    /// `PW_LOCAL_HOST`: the LAN host a `connect` role opens its TCP
    /// connection to.
    pub local_host: Ipv4Addr,
    /// `PW_SNTP_SERVER`: where the clock comes from.
    pub sntp_server: Ipv4Addr,
}

/// The configuration this image was built with.
pub const CONFIG: Config = Config {
    ssid: wifi_ssid(env_or(option_env!("PW_WIFI_SSID"), "")),
    password: wifi_password(env_or(option_env!("PW_WIFI_PASSWORD"), "")),
    mode: mode(env_or(option_env!("PW_MODE"), "udp")),
    peer: ipv4(env_or(option_env!("PW_PEER"), "192.0.2.1"), "PW_PEER"),
    role: role(env_or(option_env!("PW_ROLE"), "connect:22")),
    udp_port: port(env_or(option_env!("PW_UDP_PORT"), "5555"), "PW_UDP_PORT"),
    local_host: ipv4(
        env_or(option_env!("PW_LOCAL_HOST"), "192.0.2.10"),
        "PW_LOCAL_HOST",
    ),
    sntp_server: ipv4(
        env_or(option_env!("PW_SNTP_SERVER"), "192.0.2.123"),
        "PW_SNTP_SERVER",
    ),
};

const fn env_or(value: Option<&'static str>, default: &'static str) -> &'static str {
    match value {
        Some(v) => v,
        None => default,
    }
}

/// A const panic cannot format, so the message is chosen by variable name.
const fn bad(var: &str) -> ! {
    match var.as_bytes() {
        b"PW_PEER" => panic!("PW_PEER must be an IPv4 address like 198.51.100.2"),
        b"PW_LOCAL_HOST" => panic!("PW_LOCAL_HOST must be an IPv4 address like 192.168.1.10"),
        b"PW_SNTP_SERVER" => panic!("PW_SNTP_SERVER must be an IPv4 address like 192.168.1.1"),
        b"PW_UDP_PORT" => panic!("PW_UDP_PORT must be a port number 1-65535"),
        b"PW_ROLE" => panic!("PW_ROLE must be connect:PORT or listen:PORT (PORT 1-65535)"),
        _ => panic!("malformed PW_* build variable"),
    }
}

const fn wifi_ssid(s: &'static str) -> &'static str {
    if s.len() > 32 {
        panic!("PW_WIFI_SSID is longer than 32 bytes");
    }
    s
}

const fn wifi_password(s: &'static str) -> &'static str {
    // WPA2-PSK: a passphrase of 8-63 bytes, or 64 hex digits.
    if !s.is_empty() && (s.len() < 8 || s.len() > 64) {
        panic!("PW_WIFI_PASSWORD must be empty (open network) or 8-64 bytes (WPA2)");
    }
    s
}

const fn mode(s: &str) -> Mode {
    match s.as_bytes() {
        b"tcp" => Mode::Tcp,
        b"udp" => Mode::Udp,
        _ => panic!("PW_MODE must be tcp or udp"),
    }
}

/// `connect:PORT` or `listen:PORT`.
const fn role(s: &str) -> Role {
    let b = s.as_bytes();
    let mut colon = 0;
    while colon < b.len() && b[colon] != b':' {
        colon += 1;
    }
    if colon == b.len() {
        bad("PW_ROLE");
    }
    let (kind, rest) = b.split_at(colon);
    let (_, digits) = rest.split_at(1);
    let port = match parse_u16(digits) {
        Some(p) if p != 0 => p,
        _ => bad("PW_ROLE"),
    };
    match kind {
        b"connect" => Role::Connect(port),
        b"listen" => Role::Listen(port),
        _ => bad("PW_ROLE"),
    }
}

const fn port(s: &str, var: &str) -> u16 {
    match parse_u16(s.as_bytes()) {
        Some(p) if p != 0 => p,
        _ => bad(var),
    }
}

/// Decimal digits only, no sign, no leading `+`, at most 65535.
const fn parse_u16(b: &[u8]) -> Option<u16> {
    if b.is_empty() || b.len() > 5 {
        return None;
    }
    let mut value: u32 = 0;
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() {
            return None;
        }
        value = value * 10 + (b[i] - b'0') as u32;
        i += 1;
    }
    if value > u16::MAX as u32 {
        None
    } else {
        Some(value as u16)
    }
}

/// Dotted quad, four decimal octets of 1-3 digits.
const fn ipv4(s: &str, var: &str) -> Ipv4Addr {
    let b = s.as_bytes();
    let mut octets = [0u8; 4];
    let mut n = 0; // octets completed
    let mut value: u32 = 0;
    let mut digits = 0;
    let mut i = 0;
    while i <= b.len() {
        if i == b.len() || b[i] == b'.' {
            if digits == 0 || n == 4 {
                bad(var);
            }
            octets[n] = value as u8;
            n += 1;
            value = 0;
            digits = 0;
        } else if b[i].is_ascii_digit() && digits < 3 {
            value = value * 10 + (b[i] - b'0') as u32;
            digits += 1;
            if value > 255 {
                bad(var);
            }
        } else {
            bad(var);
        }
        i += 1;
    }
    if n != 4 {
        bad(var);
    }
    Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3])
}

impl core::fmt::Display for Mode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Mode::Tcp => "tcp",
            Mode::Udp => "udp",
        })
    }
}

impl core::fmt::Display for Role {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Role::Connect(p) => write!(f, "connect:{p}"),
            Role::Listen(p) => write!(f, "listen:{p}"),
        }
    }
}

// Compile-time checks of the parsers on good input (bad input is a build
// error by construction).
const _: () = {
    assert!(ipv4("198.51.100.2", "t").to_bits() == 0xC633_6402);
    assert!(ipv4("0.0.0.0", "t").to_bits() == 0);
    assert!(ipv4("255.255.255.255", "t").to_bits() == u32::MAX);
    assert!(matches!(role("connect:22"), Role::Connect(22)));
    assert!(matches!(role("listen:65535"), Role::Listen(65535)));
    assert!(port("5555", "t") == 5555);
    assert!(matches!(mode("tcp"), Mode::Tcp));
};
