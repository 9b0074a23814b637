//! Loads the CPython-made vectors in `../shared/vectors` for unit tests.
extern crate std;

use std::vec::Vec;

/// Parses `../shared/vectors/<name>`, with a clear message when it is absent.
pub fn load(name: &str) -> serde_json::Value {
    let path = std::format!("{}/../../shared/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e} (the shared/ folder must sit beside the repo)"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The payload of a compat_frames.json entry (hex, or one of its recipes).
pub fn compat_payload(case: &serde_json::Value) -> Vec<u8> {
    if let Some(hex) = case["payload_hex"].as_str() {
        return unhex(hex);
    }
    match case["payload_recipe"].as_str().unwrap() {
        "'abc'*2000" => b"abc".repeat(2000),
        "40000 zero bytes" => std::vec![0u8; 40_000],
        other => panic!("unknown payload recipe {other}"),
    }
}

/// Decodes a hex string.
pub fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// A deterministic xorshift generator for property tests.
pub struct XorShift(pub u64);

impl XorShift {
    /// Next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A value in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
