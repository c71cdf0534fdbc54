//! Fuzz target `http_request`: see `pbx_certd::fuzz_entry::http_request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pbx_certd::fuzz_entry::http_request(data);
});
