//! `punchwire schedule`: print the shared-clock port schedule.

use std::fmt::Write as _;

use lexopt::prelude::*;
use punchwire_core::schedule::{self, BucketPorts, MAX_SKEW_BOUND_MS, UnixTime};

use punchwire_linux::clock;

use crate::args::{UsageError, parse_seconds_ms, text, usage};

/// Help text of the subcommand.
pub const HELP: &str = "\
Print the shared-clock port schedule: the bucket, its boundary seed, its 16
ports, tcp_punch.py's rendezvous time, and every candidate bucket a punch
sprays for the given clock-error bound.

Usage: punchwire schedule [--at UNIX_TIME] [--max-clock-error S] [--json]

Options:
  --at UNIX_TIME          compute for this unix time in seconds (decimals
                          allowed, e.g. 2000000000.5) instead of now
  --max-clock-error S     clock-error bound for the candidate buckets,
                          0 to 62.999 seconds [default: 20]
  --json                  print exactly one JSON object
  -h, --help              print this help

JSON: {\"unix_time\":T,\"bucket\":B,\"boundary\":X,\"ports\":[16 ports, descending],
       \"rendezvous_time\":R,\"candidates\":[{\"bucket\":B,\"ports\":[...]},...],
       \"max_clock_error\":S,\"reference\":{\"bucket\":B,\"rendezvous_time\":R}}
rendezvous_time is (bucket+1)*42+20; \"reference\" is what tcp_punch.py started
at this time would actually do (it skips a rendezvous less than 10 s away).
";

struct Options {
    at_ms: Option<i64>,
    max_error_ms: i64,
    json: bool,
}

fn parse(mut parser: lexopt::Parser) -> Result<Option<Options>, UsageError> {
    let mut opts = Options {
        at_ms: None,
        max_error_ms: 20_000,
        json: false,
    };
    while let Some(arg) = parser.next()? {
        match arg {
            Long("at") => {
                let v = text("--at", parser.value()?)?;
                opts.at_ms = Some(parse_seconds_ms("--at", &v)?);
            }
            Long("max-clock-error") => {
                let v = text("--max-clock-error", parser.value()?)?;
                let ms = parse_seconds_ms("--max-clock-error", &v)?;
                if !(0..MAX_SKEW_BOUND_MS).contains(&ms) {
                    return Err(usage(format!(
                        "--max-clock-error: must be between 0 and 62.999 seconds, got {v}"
                    )));
                }
                opts.max_error_ms = ms;
            }
            Long("json") => opts.json = true,
            Short('h') | Long("help") => return Ok(None),
            other => return Err(other.unexpected().into()),
        }
    }
    Ok(Some(opts))
}

fn port_list(b: &BucketPorts) -> String {
    let mut s = String::new();
    for (i, p) in b.ports.as_slice().iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{p}");
    }
    s
}

/// Renders the schedule at `t` as one JSON object.
pub fn render_json(t: UnixTime, max_error_ms: i64) -> String {
    let here = BucketPorts::new(schedule::bucket(t));
    let reference = schedule::reference_start(t);
    let mut s = String::new();
    let _ = write!(
        s,
        "{{\"unix_time\":{t},\"bucket\":{},\"boundary\":{},\"ports\":[{}],\"rendezvous_time\":{},\"candidates\":[",
        here.bucket,
        here.boundary,
        port_list(&here),
        schedule::rendezvous_time(here.bucket),
    );
    // The caller validated the bound, so the range exists.
    let range = schedule::candidate_buckets(t, max_error_ms).unwrap_or(here.bucket..=here.bucket);
    for (i, b) in range.enumerate() {
        let c = BucketPorts::new(b);
        let sep = if i > 0 { "," } else { "" };
        let _ = write!(
            s,
            "{sep}{{\"bucket\":{},\"boundary\":{},\"ports\":[{}]}}",
            c.bucket,
            c.boundary,
            port_list(&c)
        );
    }
    let _ = write!(
        s,
        "],\"max_clock_error\":{},\"reference\":{{\"bucket\":{},\"rendezvous_time\":{}}}}}",
        UnixTime::from_millis(max_error_ms),
        reference.bucket,
        reference.rendezvous
    );
    s
}

/// Renders the schedule at `t` for people.
pub fn render_text(t: UnixTime, max_error_ms: i64) -> String {
    let here = BucketPorts::new(schedule::bucket(t));
    let reference = schedule::reference_start(t);
    let rendezvous = schedule::rendezvous_time(here.bucket);
    let mut s = String::new();
    let _ = writeln!(s, "unix time        {t}");
    let _ = writeln!(
        s,
        "bucket           {} (boundary {})",
        here.bucket, here.boundary
    );
    let _ = writeln!(s, "ports            {}", port_list(&here).replace(',', " "));
    let _ = writeln!(
        s,
        "rendezvous time  {rendezvous} (in {} s)",
        UnixTime::from_millis(rendezvous * 1000 - t.as_millis())
    );
    let _ = writeln!(
        s,
        "tcp_punch.py     would spray bucket {} at {}",
        reference.bucket, reference.rendezvous
    );
    let _ = writeln!(
        s,
        "candidates (clock error ±{} s):",
        UnixTime::from_millis(max_error_ms)
    );
    if let Ok(range) = schedule::candidate_buckets(t, max_error_ms) {
        for b in range {
            let c = BucketPorts::new(b);
            let _ = writeln!(
                s,
                "  bucket {:<10} {}",
                c.bucket,
                port_list(&c).replace(',', " ")
            );
        }
    }
    s
}

/// Runs the subcommand; returns the process exit code.
pub fn run(parser: lexopt::Parser) -> Result<u8, UsageError> {
    let Some(opts) = parse(parser)? else {
        print!("{HELP}");
        return Ok(0);
    };
    let t = opts
        .at_ms
        .map(UnixTime::from_millis)
        .unwrap_or_else(|| clock::unix_now(0));
    if opts.json {
        println!("{}", render_json(t, opts.max_error_ms));
    } else {
        print!("{}", render_text(t, opts.max_error_ms));
    }
    Ok(0)
}
