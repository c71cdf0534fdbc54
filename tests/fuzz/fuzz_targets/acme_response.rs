//! Fuzz target `acme_response`: see `pbx_certd::fuzz_entry::acme_response`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pbx_certd::fuzz_entry::acme_response(data);
});
