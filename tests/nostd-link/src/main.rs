//! Links every heap-free piece of punchwire-core into a `no_main` binary
//! without a global allocator: if the core ever allocated, this would fail
//! to link.
#![no_std]
#![no_main]

use core::hint::black_box;
use core::panic::PanicInfo;
use punchwire_core::compress::Inflater;
use punchwire_core::digest::Digest;
use punchwire_core::frame::Repr;
use punchwire_core::schedule::{self, UnixTime};

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    loop {}
}

/// The reset entry a linker script would call.
#[unsafe(no_mangle)]
pub extern "C" fn _start() -> ! {
    let t = UnixTime::from_secs(black_box(1_700_000_000));
    let candidates = schedule::candidate_buckets(t, 20_000);
    if let Ok(range) = candidates {
        for b in range {
            black_box(schedule::BucketPorts::new(b));
        }
    }
    let datagram = black_box([b'C', 0, 1, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x78, 0x9c]);
    let mut out = [0u8; 64];
    if let Ok(Repr::Data(d)) = Repr::parse(&datagram) {
        let mut inflater = Inflater::new();
        let n = inflater.inflate(d.body, &mut out[..usize::from(d.len)]).unwrap_or(0);
        black_box(Digest::of(&out[..n]).matches(&out[..n]));
    }
    loop {
        black_box(());
    }
}
