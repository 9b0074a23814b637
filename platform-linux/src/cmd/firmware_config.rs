//! `punchwire firmware-config`: write (or show) the ESP32-C3 firmware's
//! configuration partition ([`punchwire_core::devconfig`]).

use std::io::{IsTerminal, Write};
use std::net::Ipv4Addr;

use lexopt::prelude::*;
use punchwire_core::devconfig::{
    self, DevConfig, FLASH_OFFSET, KEY_LEN, Mode, PARTITION_SIZE, Role,
};

use crate::args::{UsageError, port, text, usage};

/// Help text.
pub const HELP: &str = "\
Write the configuration partition of the punchwire ESP32-C3 firmware: one
image built once (platform-esp/build-firmware.sh), configured per device.

Usage: punchwire firmware-config [FIELDS] [-o FILE]      (image to FILE or stdout)
       punchwire firmware-config --show FILE             (print an image's fields)

Fields (each optional: a field left out takes the image's build-time PW_*
value):
  --ssid SSID              Wi-Fi network (1-32 bytes)
  --password PASS          WPA2 passphrase (8-63 bytes or 64 hex digits;
                           \"\" for an open network)
  --mode tcp|udp           the transport
  --role connect:PORT|listen:PORT
                           connect to --local-host:PORT for each session, or
                           accept LAN connections on PORT
  --peer IP                the peer's public IPv4
  --udp-port N             the tunnel's UDP port
  --local-host IP          the LAN host of a connect role
  --sntp-server IP         the NTP server
  --key HEX                64 hex digits, reserved for the authenticated
                           protocol (stored, not used yet)
Output:
  -o, --output FILE        write the image there instead of stdout
  -h, --help               print this help

The image is one 4096-byte flash sector (header, CRC-32, fields; the rest
0xFF). Flash it at the pwconfig partition's offset 0x110000:
  espflash write-bin 0x110000 cfg.bin
(the firmware itself once with its partition table:
  espflash flash --partition-table platform-esp/firmware/partitions.csv ELF).
The firmware reads it at boot; a blank partition means the build-time
values, a corrupt one is logged and the device idles.
Exit codes: 0 written (or shown), 1 the file cannot be written or read or
the image is invalid (--show), 2 bad arguments.
";

fn ipv4(option: &str, v: &str) -> Result<Ipv4Addr, UsageError> {
    v.parse()
        .map_err(|_| usage(format!("{option}: not an IPv4 address: {v:?}")))
}

fn role(v: &str) -> Result<Role, UsageError> {
    let bad = || {
        usage(format!(
            "--role: expected connect:PORT or listen:PORT, got {v:?}"
        ))
    };
    let (kind, p) = v.split_once(':').ok_or_else(bad)?;
    let p = port("--role", p)?;
    match kind {
        "connect" => Ok(Role::Connect(p)),
        "listen" => Ok(Role::Listen(p)),
        _ => Err(bad()),
    }
}

fn key(v: &str) -> Result<[u8; KEY_LEN], UsageError> {
    let bad = || usage(format!("--key: expected {} hex digits", 2 * KEY_LEN));
    if v.len() != 2 * KEY_LEN || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let mut k = [0u8; KEY_LEN];
    for (i, b) in k.iter_mut().enumerate() {
        *b = u8::from_str_radix(&v[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(k)
}

/// The fields as lines, for --show and the summary.
fn describe(c: &DevConfig) -> String {
    let dflt = "(build-time default)";
    let ip = |a: Option<Ipv4Addr>| a.map_or_else(|| dflt.to_string(), |a| a.to_string());
    format!(
        "ssid         {}\npassword     {}\nmode         {}\nrole         {}\npeer         {}\n\
         udp port     {}\nlocal host   {}\nsntp server  {}\nkey          {}\n",
        c.ssid.as_ref().map_or(dflt, |s| s.as_str()),
        match &c.password {
            None => dflt.to_string(),
            Some(p) if p.is_empty() => "(open network)".to_string(),
            Some(p) => format!("({} bytes)", p.len()),
        },
        match c.mode {
            None => dflt,
            Some(Mode::Tcp) => "tcp",
            Some(Mode::Udp) => "udp",
        },
        match c.role {
            None => dflt.to_string(),
            Some(Role::Connect(p)) => format!("connect:{p}"),
            Some(Role::Listen(p)) => format!("listen:{p}"),
        },
        ip(c.peer),
        c.udp_port
            .map_or_else(|| dflt.to_string(), |p| p.to_string()),
        ip(c.local_host),
        ip(c.sntp_server),
        if c.key.is_some() { "(set)" } else { "(none)" },
    )
}

/// Runs the subcommand; returns the exit code.
pub fn run(mut p: lexopt::Parser) -> Result<u8, UsageError> {
    let mut c = DevConfig::default();
    let mut output: Option<String> = None;
    let mut show: Option<String> = None;
    while let Some(arg) = p.next()? {
        match arg {
            Long("ssid") => {
                let v = text("--ssid", p.value()?)?;
                if c.set_ssid(&v).is_err() {
                    return Err(usage(format!("--ssid: 1-32 bytes, got {}", v.len())));
                }
            }
            Long("password") => {
                let v = text("--password", p.value()?)?;
                if c.set_password(&v).is_err() {
                    return Err(usage(
                        "--password: 8-63 bytes, 64 hex digits, or \"\" for an open network",
                    ));
                }
            }
            Long("mode") => {
                c.mode = Some(match text("--mode", p.value()?)?.as_str() {
                    "tcp" => Mode::Tcp,
                    "udp" => Mode::Udp,
                    other => return Err(usage(format!("--mode: tcp or udp, got {other:?}"))),
                })
            }
            Long("role") => c.role = Some(role(&text("--role", p.value()?)?)?),
            Long("peer") => c.peer = Some(ipv4("--peer", &text("--peer", p.value()?)?)?),
            Long("udp-port") => {
                c.udp_port = Some(port("--udp-port", &text("--udp-port", p.value()?)?)?)
            }
            Long("local-host") => {
                c.local_host = Some(ipv4("--local-host", &text("--local-host", p.value()?)?)?)
            }
            Long("sntp-server") => {
                c.sntp_server = Some(ipv4("--sntp-server", &text("--sntp-server", p.value()?)?)?)
            }
            Long("key") => c.key = Some(key(&text("--key", p.value()?)?)?),
            Short('o') | Long("output") => output = Some(text("--output", p.value()?)?),
            Long("show") => show = Some(text("--show", p.value()?)?),
            Short('h') | Long("help") => {
                print!("{HELP}");
                return Ok(0);
            }
            other => return Err(other.unexpected().into()),
        }
    }
    if let Some(path) = show {
        if c != DevConfig::default() || output.is_some() {
            return Err(usage("--show takes no fields and no --output"));
        }
        let img = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                log::error!("cannot read {path}: {e}");
                return Ok(1);
            }
        };
        return Ok(match devconfig::parse(&img) {
            Ok(cfg) => {
                print!("{}", describe(&cfg));
                0
            }
            Err(e) => {
                log::error!("{path}: {e}");
                1
            }
        });
    }
    let mut img = [0xFFu8; PARTITION_SIZE];
    let n = match devconfig::encode(&c, &mut img) {
        Ok(n) => n,
        Err(e) => return Err(usage(format!("cannot encode the configuration: {e}"))),
    };
    let written = match &output {
        Some(path) => std::fs::write(path, img).map_err(|e| format!("cannot write {path}: {e}")),
        None => {
            let mut out = std::io::stdout().lock();
            if out.is_terminal() {
                return Err(usage(
                    "refusing to write a binary image to a terminal: redirect it (> cfg.bin) or use -o FILE",
                ));
            }
            out.write_all(&img)
                .and_then(|()| out.flush())
                .map_err(|e| format!("cannot write to stdout: {e}"))
        }
    };
    if let Err(e) = written {
        log::error!("{e}");
        return Ok(1);
    }
    let file = output.as_deref().unwrap_or("cfg.bin");
    eprint!(
        "{}wrote the configuration partition ({PARTITION_SIZE} bytes, {n} used)\n\
         flash it with:  espflash write-bin {FLASH_OFFSET:#x} {file}\n\
         (the firmware once with its partition table: espflash flash --partition-table \
         platform-esp/firmware/partitions.csv ELF)\n",
        describe(&c)
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(args: &[&str]) -> Result<u8, UsageError> {
        run(lexopt::Parser::from_args(args.iter().copied()))
    }

    #[test]
    fn writes_an_image_the_parser_reads_back() {
        let path = std::env::temp_dir().join(format!("pw-fwcfg-{}.bin", std::process::id()));
        let p = path.to_str().unwrap();
        let key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let code = run_args(&[
            "--ssid",
            "home",
            "--password",
            "secret passphrase",
            "--mode",
            "tcp",
            "--role",
            "listen:2222",
            "--peer",
            "198.51.100.2",
            "--udp-port",
            "6000",
            "--local-host",
            "192.168.1.10",
            "--sntp-server",
            "192.168.1.1",
            "--key",
            key,
            "-o",
            p,
        ])
        .unwrap();
        assert_eq!(code, 0);
        let img = std::fs::read(&path).unwrap();
        assert_eq!(img.len(), PARTITION_SIZE);
        let c = devconfig::parse(&img).unwrap();
        assert_eq!(c.ssid.as_deref(), Some("home"));
        assert_eq!(c.password.as_deref(), Some("secret passphrase"));
        assert_eq!(c.mode, Some(Mode::Tcp));
        assert_eq!(c.role, Some(Role::Listen(2222)));
        assert_eq!(c.peer, Some(Ipv4Addr::new(198, 51, 100, 2)));
        assert_eq!(c.udp_port, Some(6000));
        assert_eq!(c.local_host, Some(Ipv4Addr::new(192, 168, 1, 10)));
        assert_eq!(c.sntp_server, Some(Ipv4Addr::new(192, 168, 1, 1)));
        assert_eq!(c.key.unwrap()[..3], [0x00, 0x11, 0x22]);
        assert_eq!(run_args(&["--show", p]).unwrap(), 0);
        // The sector beyond the fields is erased flash.
        assert!(img[100..].iter().all(|&b| b == 0xFF));
        // A flipped bit: --show refuses it.
        let mut bad = img.clone();
        bad[20] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        assert_eq!(run_args(&["--show", p]).unwrap(), 1);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for args in [
            &["--ssid", ""][..],
            &["--ssid", "123456789012345678901234567890123"],
            &["--password", "short"],
            &["--mode", "sctp"],
            &["--role", "listen"],
            &["--role", "serve:22"],
            &["--role", "connect:0"],
            &["--peer", "300.1.1.1"],
            &["--udp-port", "0"],
            &["--key", "abcd"],
            &["--show", "x", "--ssid", "y"],
        ] {
            assert!(run_args(args).is_err(), "{args:?} accepted");
        }
    }
}
