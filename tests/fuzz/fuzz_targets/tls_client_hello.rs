//! Fuzz target `tls_client_hello`: see `pbx_certd::fuzz_entry::tls_client_hello`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pbx_certd::fuzz_entry::tls_client_hello(data);
});
