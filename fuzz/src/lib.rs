//! Harnesses of the punchwire fuzz targets (issue 13 §2).
//!
//! Each module is one target: `fuzz_targets/<name>.rs` is a two-line
//! `fuzz_target!` that calls `<name>::run`. A harness panics (an `assert!`)
//! when an invariant breaks; libFuzzer then saves the input as a crash.
//!
//! Byte targets (`run(&[u8])`) take the peer's datagram as it arrives, so
//! their seeds are real datagrams (`fuzz/corpus/<name>/`). Operation
//! targets (`run(Input)`) take a structured `Input` decoded by
//! [`arbitrary`]; their seeds are inputs that earlier runs found to cover
//! most code.
//!
//! ## Adding a target
//! 1. `src/<name>.rs` with `pub fn run(data: &[u8])`, or a
//!    `#[derive(Arbitrary, Debug)] pub struct Input` and `pub fn run(input:
//!    Input)`; add `pub mod <name>;` below.
//! 2. `fuzz_targets/<name>.rs`, a copy of a sibling with the name changed.
//! 3. A `[[bin]]` entry in `fuzz/Cargo.toml`.
//! 4. A few seed files in `fuzz/corpus/<name>/`. For an `Input` target:
//!    `tests/fuzz 300 <name>`, then merge what it found
//!    (`cargo +nightly fuzz run -a -s none <name> MIN
//!    target/corpus-run/<name> -- -merge=1`) and keep the 16 largest files
//!    of MIN as `found-*`; check with `-runs=0` how many edges they reach.
//!
//! `tests/fuzz` finds targets with `cargo fuzz list`, so nothing else
//! changes; each target adds its SECONDS (30) to the CI step.

pub mod alloc_count;
pub mod election_hello;
pub mod frame;
pub mod inflate;
pub mod punch_ops;
pub mod pw1_ops;
pub mod pw1_packet;
pub mod sntp_client;
pub mod sntp_packet;
pub mod tunnel_ops;
