//! `punchwire schedule` and the top-level CLI, run as a user would.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn punchwire(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_punchwire"))
        .args(args)
        .output()
        .expect("runs punchwire")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn shared(rel: &str) -> String {
    format!("{}/../../shared/{rel}", env!("CARGO_MANIFEST_DIR"))
}

fn schedule_json(at: &str) -> Value {
    let o = punchwire(&["schedule", "--json", "--at", at]);
    assert!(o.status.success(), "schedule --at {at}: {}", stderr(&o));
    let text = stdout(&o);
    assert_eq!(text.lines().count(), 1, "exactly one line of JSON: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn json_matches_every_cpython_vector() {
    let text = std::fs::read_to_string(shared("vectors/port_schedule.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    for case in v["schedule"].as_array().unwrap() {
        let at = case["unix_time"].to_string();
        let got = schedule_json(&at);
        assert_eq!(got["unix_time"].to_string(), at);
        for key in ["bucket", "boundary", "ports", "rendezvous_time"] {
            assert_eq!(got[key], case[key], "{key} at {at}");
        }
        let candidates = got["candidates"].as_array().unwrap();
        assert!((1..=2).contains(&candidates.len()));
        assert!(
            candidates
                .iter()
                .any(|c| c["bucket"] == case["bucket"] && c["ports"] == case["ports"])
        );
    }
}

#[test]
fn json_agrees_with_cpython_at_random_times() {
    // Times across the whole range, bucket edges and fractions included.
    let mut times: Vec<String> = Vec::new();
    let mut x: u64 = 0x1234_5678_9abc_def1;
    for i in 0..120 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let secs = (x % 4_200_000_000) as i64;
        times.push(match i % 4 {
            0 => secs.to_string(),
            1 => format!("{secs}.{}", x % 1000),
            // Just before and at a bucket edge: t = 20 + 42k.
            2 => (20 + 42 * (secs / 42)).to_string(),
            _ => format!("{}.999", 19 + 42 * (secs / 42)),
        });
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/py/schedule.py");
    let py = Command::new("python3")
        .arg(&script)
        .args(&times)
        .output()
        .expect("python3 runs");
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
    let expected: Vec<Value> = stdout(&py)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(expected.len(), times.len());
    for (at, want) in times.iter().zip(&expected) {
        let got = schedule_json(at);
        for key in ["bucket", "boundary", "ports", "rendezvous_time"] {
            assert_eq!(got[key], want[key], "{key} at {at}");
        }
    }
}

#[test]
fn candidates_follow_the_skew_bound() {
    // 62 s opens bucket 1; ±20 s reaches back into bucket 0.
    let got = schedule_json("62");
    let buckets: Vec<i64> = got["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["bucket"].as_i64().unwrap())
        .collect();
    assert_eq!(buckets, [0, 1]);
    let o = punchwire(&["schedule", "--json", "--at", "83", "--max-clock-error", "0"]);
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["candidates"].as_array().unwrap().len(), 1);
    assert_eq!(v["max_clock_error"], 0);
}

#[test]
fn reference_timing_skips_a_close_rendezvous() {
    let v = schedule_json("19");
    assert_eq!(v["rendezvous_time"], 20);
    assert_eq!(v["reference"]["bucket"], 0);
    assert_eq!(v["reference"]["rendezvous_time"], 62);
}

#[test]
fn text_output_names_everything() {
    let o = punchwire(&["schedule", "--at", "1700000000"]);
    assert!(o.status.success());
    let s = stdout(&o);
    for needle in [
        "bucket           40476190 (boundary 347223595)",
        "48983 48206",
        "1700000042",
        "candidates",
    ] {
        assert!(s.contains(needle), "{needle:?} missing from:\n{s}");
    }
}

#[test]
fn bad_arguments_are_one_line_and_exit_2() {
    for args in [
        &["schedule", "--at", "garbage"][..],
        &["schedule", "--bogus"],
        &["schedule", "--at"],
        &["schedule", "--max-clock-error", "63"],
        &["schedule", "--max-clock-error", "-1"],
        &["schedule", "stray"],
        &["no-such-command"],
        &["--bogus"],
    ] {
        let o = punchwire(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("punchwire: "), "{args:?}: {err}");
        assert!(o.stdout.is_empty());
    }
}

#[test]
fn help_and_version() {
    let o = punchwire(&["--help"]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("schedule"));
    assert!(stdout(&o).contains("Exit codes"));
    let o = punchwire(&["schedule", "--help"]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("--max-clock-error"));
    let o = punchwire(&["--version"]);
    assert_eq!(
        stdout(&o).trim(),
        format!("punchwire {}", env!("CARGO_PKG_VERSION"))
    );
}
