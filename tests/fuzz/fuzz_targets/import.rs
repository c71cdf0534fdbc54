//! Fuzz target `import`: see `pbx_certd::fuzz_entry::import`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pbx_certd::fuzz_entry::import(data);
});
