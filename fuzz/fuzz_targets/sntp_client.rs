#![no_main]
libfuzzer_sys::fuzz_target!(|input: punchwire_fuzz::sntp_client::Input| {
    punchwire_fuzz::sntp_client::run(input)
});
