//! The core against CPython's own struct/zlib/hashlib (tests/py/frames.py):
//! frames CPython makes decode in the core, and frames the core makes
//! decode in CPython.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use punchwire_core::compress::{DEFAULT_LEVEL, Deflater, Inflater};
use punchwire_core::digest::Digest;
use punchwire_core::frame::{DataRepr, HEADER_LEN, Repr};

fn frames_py() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("py/frames.py")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Payloads of many shapes: empty, tiny, text-like, repetitive, random.
fn payloads() -> Vec<Vec<u8>> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut out = vec![Vec::new(), b"x".to_vec(), vec![0u8; 101], vec![7u8; 40_000]];
    for i in 0..40 {
        let len = (next() % 9000) as usize;
        let alphabet = if i % 3 == 0 { 256 } else { 1 + next() % 16 };
        out.push((0..len).map(|_| (next() % alphabet) as u8).collect());
    }
    out.push(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".repeat(40));
    out
}

fn decode(frame: &[u8]) -> Vec<u8> {
    let Ok(Repr::Data(d)) = Repr::parse(frame) else {
        panic!("not a data frame")
    };
    let mut out = vec![0u8; usize::from(d.len)];
    if d.compressed {
        let n = Inflater::new().inflate(d.body, &mut out).expect("inflates");
        assert_eq!(n, out.len());
    } else {
        out.copy_from_slice(d.body);
    }
    assert!(d.digest.matches(&out));
    out
}

#[test]
fn cpython_frames_decode_in_the_core() {
    let mut compressed = 0;
    for (seq, payload) in payloads().iter().enumerate() {
        let o = Command::new("python3")
            .arg(frames_py())
            .args(["make", &seq.to_string(), &hex(payload)])
            .output()
            .expect("python3 runs");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let frame = unhex(String::from_utf8(o.stdout).unwrap().trim());
        compressed += usize::from(frame[0] == b'C');
        assert_eq!(&decode(&frame), payload);
    }
    assert!(compressed >= 5, "too few C frames exercised: {compressed}");
}

#[test]
fn core_frames_decode_in_cpython() {
    let mut deflater = Deflater::new(DEFAULT_LEVEL);
    let mut lines = String::new();
    let mut expected = Vec::new();
    for (seq, payload) in payloads().iter().enumerate() {
        let mut body = vec![0u8; payload.len()];
        let (compressed, body) = match deflater.compress_worthwhile(payload, &mut body) {
            Some(n) => (true, &body[..n]),
            None => (false, &payload[..]),
        };
        let repr = Repr::Data(DataRepr {
            compressed,
            seq: seq as u16,
            len: payload.len() as u16,
            digest: Digest::of(payload),
            body,
        });
        let mut frame = vec![0u8; repr.buffer_len()];
        repr.emit(&mut frame).unwrap();
        assert!(frame.len() >= HEADER_LEN);
        lines.push_str(&hex(&frame));
        lines.push('\n');
        expected.push(format!(
            "ok {seq} {} {}",
            payload.len(),
            if compressed { "C" } else { "U" }
        ));
    }
    let mut child = Command::new("python3")
        .arg(frames_py())
        .arg("check")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(lines.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let got: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(got, expected);
}
