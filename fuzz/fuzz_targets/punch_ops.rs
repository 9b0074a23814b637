#![no_main]
libfuzzer_sys::fuzz_target!(|input: punchwire_fuzz::punch_ops::Input| {
    punchwire_fuzz::punch_ops::run(input)
});
