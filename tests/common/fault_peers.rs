//! ACME peers under fault for `tests/acme_fault.rs`: a second instance of
//! `scripts/acme-peers.sh` (`PEERS_INSTANCE=fault`, its own BIND9, zone,
//! TSIG key and Debian pebble in `target/acme-peers-fault`, on its own
//! loopback ports) whose pebble rejects half of all nonces
//! (`PEBBLE_WFE_NONCEREJECT=50`, RFC 8555 §6.5 badNonce) and validates at
//! once (`PEBBLE_VA_NOSLEEP=1`, set by the script). Being separate, it never
//! disturbs the default peers of `tests/acme.rs`, even when both test
//! binaries run at the same time.
//!
//! Also the outside views the leak checks use: `dig` for TXT records in
//! BIND, a raw HTTP/1.1 GET on the port-80 listener for an HTTP-01 token,
//! and a TLS handshake offering only `acme-tls/1` (RFC 8737 §3) for a
//! TLS-ALPN-01 certificate.
//!
//! Ports: `PEERS_FAULT_PORT_BASE` (default 18150) + 0 HTTP-01, + 1
//! TLS-ALPN-01, + 3 DNS, + 4 ACME directory, + 5 pebble management.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use rustls::pki_types::ServerName;

use super::accept_any::{client_config, AcceptAny};
use super::serve::Serve;

#[path = "dig.rs"]
pub mod dig;

/// The instance name (`target/acme-peers-fault`).
pub const INSTANCE: &str = "fault";

/// Percent of nonces the fault pebble rejects.
pub const NONCE_REJECT: &str = "50";

/// Hang guard of one socket read (not a timing assertion).
const IO_GUARD: Duration = Duration::from_secs(20);

static LOCK: Mutex<()> = Mutex::new(());

fn root_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn port_base() -> u16 {
    instance_port_base("PEERS_FAULT_PORT_BASE", 18150)
}

/// The first port of a peers instance: the environment variable `var`
/// when set (another checkout's peers may hold the default), else `default`.
pub fn instance_port_base(var: &str, default: u16) -> u16 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `scripts/acme-peers.sh ACTION` for the fault instance; its env file
/// (empty after `down`).
fn script(action: &str) -> HashMap<String, String> {
    instance_script(INSTANCE, port_base(), NONCE_REJECT, action)
}

/// `scripts/acme-peers.sh ACTION` for the peers instance `instance`
/// (`target/acme-peers-INSTANCE`) on ports from `base` (+0 HTTP-01, +1
/// TLS-ALPN-01, +3 DNS, +4 ACME, +5 pebble management), pebble rejecting
/// `nonce_reject` % of nonces; its env file (empty after `down`).
pub fn instance_script(
    instance: &str,
    base: u16,
    nonce_reject: &str,
    action: &str,
) -> HashMap<String, String> {
    let port = |off: u16| (base + off).to_string();
    let status = Command::new(root_dir().join("scripts/acme-peers.sh"))
        .arg(action)
        .env_remove("PEERS_DIR")
        .env("PEERS_INSTANCE", instance)
        .env("PEERS_HTTP01_PORT", port(0))
        .env("PEERS_TLSALPN01_PORT", port(1))
        .env("PEERS_DNS_PORT", port(3))
        .env("PEERS_ACME_PORT", port(4))
        .env("PEERS_MGMT_PORT", port(5))
        .env("PEBBLE_WFE_NONCEREJECT", nonce_reject)
        .env("PEBBLE_AUTHZREUSE", "0")
        .env_remove("PEBBLE_CERT_VALIDITY")
        .stdout(Stdio::null())
        .status()
        .expect("run scripts/acme-peers.sh");
    assert!(
        status.success(),
        "PEERS_INSTANCE={instance} scripts/acme-peers.sh {action} failed"
    );
    if action == "down" {
        return HashMap::new();
    }
    let path = root_dir().join(format!("target/acme-peers-{instance}/env"));
    let text = std::fs::read_to_string(&path).expect("peers env");
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The fault peers (restarted once per test binary: pebble gets our
/// settings and BIND a fresh zone whatever an earlier run left), and the
/// lock that keeps the tests
/// of the binary one at a time (they share the validation ports). `None`
/// with `PBX_CERTD_NO_PEERS=1` (a recorded skip, see `skip.rs`).
pub fn peers() -> Option<(MutexGuard<'static, ()>, HashMap<String, String>)> {
    if !super::skip::require_acme_peers() {
        return None;
    }
    let guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        script("down");
        script("up");
    });
    let env = script("up");
    assert_eq!(
        env["PEBBLE_NONCEREJECT"], NONCE_REJECT,
        "the fault pebble must reject nonces"
    );
    // Pebble's own word that the fault is on (it logs no single rejection).
    let said = format!("Configured to reject {NONCE_REJECT}% of good nonces");
    assert!(
        pebble_log().contains(&said),
        "pebble does not say {said:?}:\n{}",
        pebble_log()
    );
    Some((guard, env))
}

/// Pebble's log of the fault instance.
pub fn pebble_log() -> String {
    std::fs::read_to_string(root_dir().join(format!("target/acme-peers-{INSTANCE}/run/pebble.log")))
        .unwrap_or_default()
}

/// Pebble's issuing root (new at every pebble start), from its management port.
pub fn pebble_root(env: &HashMap<String, String>) -> String {
    let out = Command::new("curl")
        .args(["-sf", "--cacert", &env["ACME_CA_FILE"]])
        .arg(format!("{}/roots/0", env["PEBBLE_MGMT_URL"]))
        .output()
        .expect("run curl");
    assert!(out.status.success(), "cannot fetch pebble's root");
    String::from_utf8(out.stdout).expect("PEM is text")
}

/// The HTTP status and body the port-80 listener (`addr`) answers for an
/// HTTP-01 token (RFC 8555 §8.3), asked for `host`.
pub fn http01_answer(addr: SocketAddr, host: &str, token: &str) -> (u16, String) {
    let mut tcp = TcpStream::connect(addr).expect("connect to port 80 listener");
    tcp.set_read_timeout(Some(IO_GUARD)).unwrap();
    write!(
        tcp,
        "GET /.well-known/acme-challenge/{token} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    let _ = tcp.read_to_string(&mut resp);
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {resp:?}"));
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The certificate the HTTPS listener (`addr`) shows a TLS-ALPN-01
/// validator, i.e. a client offering only `acme-tls/1` with SNI `name`
/// (RFC 8737 §3): `None` when it shows none (no challenge pending).
pub fn alpn_challenge_cert(addr: SocketAddr, name: &str) -> Option<Vec<u8>> {
    let capture = AcceptAny::new();
    let config = client_config(capture.clone(), &[b"acme-tls/1"]);
    let server_name = ServerName::try_from(name.to_string()).expect("a DNS name");
    let mut conn = rustls::ClientConnection::new(Arc::new(config), server_name).unwrap();
    let mut tcp = TcpStream::connect(addr).expect("connect to the HTTPS listener");
    tcp.set_read_timeout(Some(IO_GUARD)).unwrap();
    while conn.is_handshaking() {
        if conn.complete_io(&mut tcp).is_err() {
            break;
        }
    }
    capture.leaf()
}

/// The CLI with `--json`; must succeed.
pub fn ok(dir: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = super::serve::cli(dir, &all);
    assert_eq!(out.0, 0, "{args:?} failed: {} {}", out.1, out.2);
    serde_json::from_str(&out.1).unwrap()
}

/// `acme status --json` entry for the name set `key`.
pub fn status_of(dir: &Path, key: &str) -> serde_json::Value {
    ok(dir, &["acme", "status"])
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == key)
        .cloned()
        .unwrap_or_else(|| panic!("no status for {key}"))
}

/// The `acme set` arguments that turn ACME on against the instance's pebble
/// (nothing else set: the default check interval).
pub fn acme_on(env: &HashMap<String, String>) -> [&str; 8] {
    [
        "acme",
        "set",
        "--directory",
        &env["ACME_DIRECTORY_URL"],
        "--email",
        "admin@pbx.test",
        "--enabled",
        "true",
    ]
}

/// `acme set` as an admin enables ACME (default check interval): wakes the
/// renewal loop, which orders for every name set now.
pub fn enable_acme(d: &Path, env: &HashMap<String, String>) {
    ok(d, &acme_on(env));
    assert_eq!(
        ok(d, &["acme", "show"])["check_interval"],
        21600,
        "default check interval"
    );
}

/// `pbx-certd serve` for `dir` on the ports the instance's pebble validates:
/// HTTPS on the TLS-ALPN-01 port, the port-80 listener on the HTTP-01 port;
/// everything else default, logging at info.
pub fn serve_command(dir: &Path, env: &HashMap<String, String>) -> Serve {
    Serve::on(dir)
        .https(format!("127.0.0.1:{}", env["ACME_TLSALPN01_PORT"]))
        .http(format!("127.0.0.1:{}", env["ACME_HTTP01_PORT"]))
        .env("PBX_CERTD_LOG", "info")
}
