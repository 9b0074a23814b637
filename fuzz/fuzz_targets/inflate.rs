#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| punchwire_fuzz::inflate::run(data));
