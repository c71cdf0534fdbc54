//! What the tests of the HTTP API DNS providers (`dns_cloudflare.rs`,
//! `dns_digitalocean.rs`) share: the CLI with `--json`, trusting a fake
//! API's CA, adding a provider, and the checks that are the same for every
//! such provider (an untrusted API is refused before any request; an
//! `http://` API base is refused). Declared with `#[path =
//! "common/api_provider.rs"] mod api_provider;`.

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_pbx-certd");

/// `pbx-certd --data-dir DIR ARGS --json`, which must succeed: its JSON.
pub fn cli(dir: &Path, args: &[&str]) -> Value {
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Import `ca_pem` (a fake API's CA) into DIR's Root CA list.
pub fn trust(dir: &Path, ca_pem: &str) {
    let ca = dir.join("api-ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    cli(
        dir,
        &["import", "--cert", ca.to_str().unwrap(), "--kind", "root"],
    );
}

/// `dns add NAME --provider PROVIDER` for the zone `example.test` at
/// `base` with `token`, and no NS check (the fake zone is not in DNS).
pub fn add_provider(dir: &Path, name: &str, provider: &str, base: &str, token: &str) {
    cli(
        dir,
        &[
            "dns",
            "add",
            name,
            "--provider",
            provider,
            "--zone",
            "example.test",
            "--token",
            token,
            "--api-base",
            base,
        ],
    );
    cli(dir, &["dns", "set", "--check-ns", "false"]);
}

/// The error of publishing the DNS-01 record of `pbx.example.test` (value
/// `v`) through DIR's provider, which must fail.
pub fn publish_error(dir: &Path) -> pbx_certd::dns::DnsError {
    let store = pbx_certd::ops::open_store(dir).unwrap();
    let ch = pbx_certd::dns01::Challenge::prepare(&store, "pbx.example.test", "v")
        .unwrap()
        .unwrap();
    smol::block_on(ch.publish()).unwrap_err()
}

/// The API's CA not in the Root CA list: the TLS handshake fails, no
/// request (and no token) reaches the server. `add` adds the provider (the
/// right token) to a fresh data dir; `requests` counts the server's
/// requests so far.
pub fn assert_untrusted_api_is_refused(add: impl Fn(&Path), requests: impl Fn() -> usize) {
    let dir2 = tempfile::tempdir().unwrap();
    add(dir2.path());
    let before = requests();
    let e = publish_error(dir2.path());
    assert_eq!(e.code(), "dns-io", "{e}");
    assert!(e.to_string().contains("TLS"), "{e}");
    assert_eq!(requests(), before);
}

/// `dns add NAME --provider PROVIDER` with an `http://` API base
/// (`http_base`) fails with `bad-dns-config`.
pub fn assert_http_api_base_is_refused(
    dir: &Path,
    name: &str,
    provider: &str,
    token: &str,
    http_base: &str,
) {
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .args([
            "dns",
            "add",
            name,
            "--provider",
            provider,
            "--zone",
            "example.test",
        ])
        .args(["--token", token, "--api-base", http_base, "--json"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["code"], "bad-dns-config", "{v}");
}
