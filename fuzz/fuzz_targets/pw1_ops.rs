#![no_main]
libfuzzer_sys::fuzz_target!(|input: punchwire_fuzz::pw1_ops::Input| {
    punchwire_fuzz::pw1_ops::run(input)
});
