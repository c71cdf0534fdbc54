//! Fuzz target `dns_answer`: see `pbx_certd::fuzz_entry::dns_answer`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pbx_certd::fuzz_entry::dns_answer(data);
});
