//! `punchwire status`: list the running instances (see
//! [`punchwire_linux::status`]).

use std::path::PathBuf;

use lexopt::prelude::*;

use crate::args::{UsageError, text};
use punchwire_linux::status;

/// Help text.
pub const HELP: &str = "\
List the punchwire instances running on this machine (tcp and udp), one
line each, or one JSON document with --json.

Usage: punchwire status [--json] [--dir DIR]

Every running `punchwire tcp` / `punchwire udp` keeps a state file in the
run directory ($PUNCHWIRE_RUN_DIR, else /var/run/punchwire), rewritten at
most once a second and removed when it exits. An instance that died
without removing it (SIGKILL, a crash) is shown as `gone`.

Columns: NAME (--name, or the UCI section), MODE, ROLE, PEER, STATE
(waiting-for-network, punching, connected, peer-silent, gone), PROTO (the
tunnel's wire protocol: v012, pw1; - for tcp), SINCE (time in this state;
for gone, since the last update), RTT, TX/s RX/s (goodput over the last
second), TX RX (payload bytes), RETX (retransmissions), SESS (open
sessions), PID.

Options:
  --json       one JSON document: {\"instances\": [...]}, times in unix
               seconds, rates in bytes/s, rtt_us null when unknown
  --dir DIR    read DIR instead of the run directory
  -h, --help   print this help

Exit codes: 0 listed (also when there is nothing to list), 1 the directory
cannot be read, 2 bad arguments.
";

/// Runs the subcommand; returns the exit code.
pub fn run(mut p: lexopt::Parser) -> Result<u8, UsageError> {
    let mut json = false;
    let mut dir: Option<PathBuf> = None;
    while let Some(arg) = p.next()? {
        match arg {
            Long("json") => json = true,
            Long("dir") => dir = Some(PathBuf::from(text("--dir", p.value()?)?)),
            Short('h') | Long("help") => {
                print!("{HELP}");
                return Ok(0);
            }
            other => return Err(other.unexpected().into()),
        }
    }
    let dir = dir.unwrap_or_else(status::dir);
    let entries = match status::read_dir(&dir) {
        Ok(e) => e,
        Err(e) => {
            log::error!("cannot read {}: {e}", dir.display());
            return Ok(1);
        }
    };
    if json {
        print!("{}", status::to_json(&entries));
    } else if entries.is_empty() {
        eprintln!("no punchwire instances in {}", dir.display());
    } else {
        print!("{}", status::to_table(&entries, status::unix_now()));
    }
    Ok(0)
}
