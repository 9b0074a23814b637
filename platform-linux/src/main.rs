//! `punchwire`: NAT traversal with no server, from the command line.

mod args;
mod cmd;
mod logger;

use std::process::ExitCode;

use lexopt::prelude::*;

use args::{EXIT_USAGE, UsageError};

const HELP: &str = concat!(
    "punchwire ",
    env!("CARGO_PKG_VERSION"),
    " - connect two machines behind NAT routers, given only each other's public IPv4

Usage: punchwire [-v | -q] <COMMAND> [ARGS...]

Commands:
  tcp         punch a TCP connection to a peer, then netcat or relay a port
  udp         punch a UDP hole and tunnel local TCP sessions (udphp.py v0.12)
  schedule    print the shared-clock port schedule (bucket, ports, candidates)
  status      list the running tcp/udp instances and how they are doing
  firmware-config
              write the ESP32-C3 firmware's configuration partition image

Options:
  -v, --verbose   more log lines on stderr (repeat for even more)
  -q, --quiet     no log lines on stderr
  -h, --help      print help (`punchwire <COMMAND> --help` for a command)
  -V, --version   print the version

Exit codes:
  0  success
  2  bad command-line arguments
  (each command documents its own others: `punchwire tcp --help`, `punchwire udp --help`)
"
);

fn run() -> Result<u8, UsageError> {
    let mut parser = lexopt::Parser::from_env();
    let mut verbosity: i32 = 0;
    loop {
        let Some(arg) = parser.next()? else {
            eprint!("{HELP}");
            return Err(args::usage("missing command (see above)"));
        };
        match arg {
            Short('v') | Long("verbose") => verbosity += 1,
            Short('q') | Long("quiet") => verbosity = -1,
            Short('h') | Long("help") => {
                print!("{HELP}");
                return Ok(0);
            }
            Short('V') | Long("version") => {
                println!("punchwire {}", env!("CARGO_PKG_VERSION"));
                return Ok(0);
            }
            Value(command) => {
                logger::init(match verbosity {
                    i32::MIN..=-1 => log::LevelFilter::Off,
                    0 => log::LevelFilter::Info,
                    1 => log::LevelFilter::Debug,
                    _ => log::LevelFilter::Trace,
                });
                let command = args::text("command", command)?;
                return match command.as_str() {
                    "schedule" => cmd::schedule::run(parser),
                    "tcp" => cmd::tcp::run(parser),
                    "udp" => cmd::udp::run(parser),
                    "status" => cmd::status::run(parser),
                    "firmware-config" => cmd::firmware_config::run(parser),
                    other => Err(args::usage(format!(
                        "unknown command {other:?} (try `punchwire --help`)"
                    ))),
                };
            }
            other => return Err(other.unexpected().into()),
        }
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("punchwire: {e}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}
