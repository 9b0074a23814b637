#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| punchwire_fuzz::pw1_packet::run(data));
