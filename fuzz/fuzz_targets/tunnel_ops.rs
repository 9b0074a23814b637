#![no_main]
libfuzzer_sys::fuzz_target!(|input: punchwire_fuzz::tunnel_ops::Input| {
    punchwire_fuzz::tunnel_ops::run(input)
});
