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
use punchwire_core::sntp::{PACKET_LEN, SntpClient};
use punchwire_core::time::at_micros;

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
    let server = core::net::SocketAddrV4::new([192, 0, 2, 1].into(), 123);
    let mut sntp = SntpClient::new(server, black_box(0x5eed));
    let mut request = [0u8; PACKET_LEN];
    if let Some(n) = sntp.poll_transmit(at_micros(black_box(1)), &mut request) {
        let reply = black_box(request);
        if let Ok(Some(sync)) = sntp.handle_datagram(at_micros(black_box(9)), server, &reply[..n]) {
            black_box(sync.clock.unix_at(at_micros(black_box(10))));
        }
    }
    loop {
        black_box(());
    }
}
