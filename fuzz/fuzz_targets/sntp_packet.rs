#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| punchwire_fuzz::sntp_packet::run(data));
