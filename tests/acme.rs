//! ACME end to end against real peers: Debian's pebble (a real ACME CA) and
//! BIND9, started by `scripts/acme-peers.sh up` on loopback (installed with
//! apt when missing). The daemon runs on the ports pebble validates
//! (HTTP-01 → `ACME_HTTP01_PORT`, TLS-ALPN-01 → `ACME_TLSALPN01_PORT`), so
//! the tests of this binary run one at a time (a lock). DNS-01 runs from a
//! provider stored with `pbx-certd dns add --provider rfc2136` pointed at that
//! BIND with the peers' TSIG key (pebble resolves through the same BIND).
//! Per-tenant options (`tenant set`): an RSA 2048 tenant's served leaf, and
//! a tenant's TLS-ALPN-01 overriding the global HTTP-01.
//! The peers' ports are `PEERS_*_PORT` (scripts/acme-peers.sh) when the
//! defaults are taken by another checkout's peers.
//!
//! Every wait is bounded and waits for an event (a log line or a state), never
//! for time; assertions are on contents, never on durations.
//! Set `PBX_CERTD_NO_PEERS=1` only where the peers cannot run: the tests then
//! skip through `skip::require` (listed in `target/skipped-tests.txt`; a
//! failure with `PBX_CERTD_REQUIRE_PEERS=1`, as in CI).

#[path = "common/accept_any.rs"]
mod accept_any;
#[path = "common/dig.rs"]
mod dig;
#[path = "common/fake_cloudflare.rs"]
mod fake_cloudflare;
#[path = "common/fake_digitalocean.rs"]
mod fake_digitalocean;
#[path = "common/https_server.rs"]
mod https_server;
#[path = "common/serve.rs"]
mod serve;
#[path = "common/skip.rs"]
mod skip;

use accept_any::{client_config, AcceptAny};
use dig::dig_txt;
use serve::cli;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};

/// Upper bound for one order against local pebble (normally under 2 s).
const ORDER_BOUND: Duration = Duration::from_secs(120);

static LOCK: Mutex<()> = Mutex::new(());

fn root_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn peers_script(args: &[&str], envs: &[(&str, &str)]) -> HashMap<String, String> {
    let status = Command::new(root_dir().join("scripts/acme-peers.sh"))
        .args(args)
        .envs(envs.iter().copied())
        .stdout(Stdio::null())
        .status()
        .expect("run scripts/acme-peers.sh");
    assert!(status.success(), "scripts/acme-peers.sh {args:?} failed");
    let text =
        std::fs::read_to_string(root_dir().join("target/acme-peers/env")).expect("peers env");
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The peers (started once, or restarted with other pebble settings), and
/// the lock that keeps the tests of this binary one at a time.
fn peers() -> Option<(MutexGuard<'static, ()>, HashMap<String, String>)> {
    if !skip::require_acme_peers() {
        return None;
    }
    let guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        peers_script(&["restart-pebble"], &[]);
    });
    let env = peers_script(&["up"], &[]);
    Some((guard, env))
}

fn sha256_hex(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn pem_certs(text: &str) -> Vec<Vec<u8>> {
    use base64ct::{Base64, Encoding};
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line == "-----BEGIN CERTIFICATE-----" {
            cur = Some(String::new());
        } else if line == "-----END CERTIFICATE-----" {
            out.push(Base64::decode_vec(&cur.take().unwrap()).unwrap());
        } else if let Some(c) = cur.as_mut() {
            c.push_str(line);
        }
    }
    out
}

/// Pebble's issuing root (new at every pebble start), from its management port.
fn pebble_root(env: &HashMap<String, String>) -> String {
    let out = Command::new("curl")
        .args(["-sf", "--cacert", &env["ACME_CA_FILE"]])
        .arg(format!("{}/roots/0", env["PEBBLE_MGMT_URL"]))
        .output()
        .unwrap();
    assert!(out.status.success(), "cannot fetch pebble's root");
    String::from_utf8(out.stdout).unwrap()
}

fn ok(dir: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = cli(dir, &all);
    assert_eq!(out.0, 0, "{args:?} failed: {} {}", out.1, out.2);
    serde_json::from_str(&out.1).unwrap()
}

/// The daemon (through `serve::Serve`, the one way to start it) and the
/// log lines read so far.
struct Daemon {
    d: serve::Daemon,
    https: SocketAddr,
    seen: Vec<String>,
}

impl Daemon {
    fn start(dir: &Path, env: &HashMap<String, String>, http: bool) -> Daemon {
        let http_addr = if http {
            format!("127.0.0.1:{}", env["ACME_HTTP01_PORT"])
        } else {
            "none".into()
        };
        let d = serve::Serve::on(dir)
            .https(format!("127.0.0.1:{}", env["ACME_TLSALPN01_PORT"]))
            .http(http_addr)
            .env("PBX_CERTD_LOG", "info")
            .start();
        Daemon {
            https: d.https,
            seen: d.startup.clone(),
            d,
        }
    }

    /// The next log line containing one of `needles` (bounded wait).
    fn wait_log(&mut self, needles: &[&str]) -> String {
        let end = Instant::now() + ORDER_BOUND;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.d.log.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if needles.iter().any(|n| line.contains(n)) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no log line with {needles:?}; daemon log:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Wait for the outcome of the next order: Ok(line) issued, Err(line) failed.
    fn next_outcome(&mut self) -> Result<String, String> {
        let line = self.wait_log(&["ACME: certificate ", "ACME: order for "]);
        if line.contains(" issued for ") {
            Ok(line)
        } else {
            Err(line)
        }
    }

    fn stop(self) {
        self.d.stop();
    }
}

/// A store trusting the peers: the CA of pebble's HTTPS listener (what the
/// client checks) and pebble's issuing root, both in the Root CA list.
fn setup(env: &HashMap<String, String>, trust: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    if trust {
        ok(
            d,
            &["import", "--cert", &env["ACME_CA_FILE"], "--kind", "root"],
        );
        let root = d.join("pebble-root.pem");
        std::fs::write(&root, pebble_root(env)).unwrap();
        ok(
            d,
            &["import", "--cert", root.to_str().unwrap(), "--kind", "root"],
        );
    }
    ok(
        d,
        &[
            "acme",
            "set",
            "--directory",
            &env["ACME_DIRECTORY_URL"],
            "--enabled",
            "true",
            "--email",
            "admin@pbx.test",
            "--check-interval",
            "86400",
        ],
    );
    dir
}

fn acme_certs(dir: &Path) -> Vec<serde_json::Value> {
    ok(dir, &["certs"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["source"] == "acme")
        .cloned()
        .collect()
}

fn status_of(dir: &Path, key: &str) -> serde_json::Value {
    ok(dir, &["acme", "status"])
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == key)
        .cloned()
        .unwrap_or_else(|| panic!("no status for {key}"))
}

/// HTTP status of the daemon's port-80 answer for an HTTP-01 token.
fn challenge_status(env: &HashMap<String, String>, token: &str) -> u16 {
    use std::io::{Read, Write};
    let mut tcp = TcpStream::connect(format!("127.0.0.1:{}", env["ACME_HTTP01_PORT"])).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        tcp,
        "GET /.well-known/acme-challenge/{token} HTTP/1.1\r\nHost: alpha.pbx.test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    let _ = tcp.read_to_string(&mut resp);
    resp.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A TLS handshake with `sni` that verifies the chain against `root_pem` only
/// (and the name); returns the leaf ID.
fn verified_leaf(addr: SocketAddr, sni: &str, root_pem: &str) -> Result<String, String> {
    let mut roots = rustls::RootCertStore::empty();
    for der in pem_certs(root_pem) {
        roots.add(CertificateDer::from(der)).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = ServerName::try_from(sni.to_string()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(|e| e.to_string())?;
    }
    let leaf = conn.peer_certificates().ok_or("no certificate")?[0].to_vec();
    Ok(sha256_hex(&leaf))
}

/// The issued chain verifies (openssl) against pebble's issuing root.
fn assert_chain_verifies(dir: &Path, id: &str, root_pem: &str) {
    let pem = ok(dir, &["cert", "show", id])["pem"]
        .as_str()
        .unwrap()
        .to_owned();
    let certs = pem_certs(&pem);
    assert!(certs.len() >= 2, "leaf + intermediate expected");
    assert_eq!(sha256_hex(&certs[0]), id);
    let tmp = tempfile::tempdir().unwrap();
    let (chain, root) = (tmp.path().join("chain.pem"), tmp.path().join("root.pem"));
    std::fs::write(&chain, &pem).unwrap();
    std::fs::write(&root, root_pem).unwrap();
    let out = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(&root)
        .arg("-untrusted")
        .arg(&chain)
        .arg(&chain)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chain does not verify against pebble's root: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn http01_issues_verifies_serves_survives_restart_and_reissues() {
    let Some((_lock, env)) = peers() else { return };
    let dir = setup(&env, true);
    let d = dir.path();
    ok(
        d,
        &[
            "tenant",
            "add",
            "alpha",
            "--dns",
            "alpha.pbx.test",
            "--dns",
            "www.alpha.pbx.test",
        ],
    );
    ok(d, &["acme", "set", "--challenge", "http-01"]);
    let root = pebble_root(&env);

    let mut daemon = Daemon::start(d, &env, true);
    let answering = daemon.wait_log(&["answering http-01 for "]);
    let token = answering
        .rsplit("(token ")
        .next()
        .unwrap()
        .trim_end_matches(')')
        .to_owned();
    daemon.next_outcome().expect("first order");
    // The challenge answer was withdrawn after the order.
    assert_eq!(challenge_status(&env, &token), 404);
    let certs = acme_certs(d);
    assert_eq!(certs.len(), 1, "{certs:?}");
    let cert = &certs[0];
    let id = cert["id"].as_str().unwrap().to_owned();
    assert_eq!(cert["kind"], "domain");
    assert_eq!(cert["tenant"], "alpha");
    assert_eq!(cert["key_type"], "p256");
    let mut names: Vec<&str> = cert["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["alpha.pbx.test", "www.alpha.pbx.test"]);
    assert_chain_verifies(d, &id, &root);
    assert_eq!(
        verified_leaf(daemon.https, "alpha.pbx.test", &root),
        Ok(id.clone())
    );
    assert_eq!(
        verified_leaf(daemon.https, "www.alpha.pbx.test", &root),
        Ok(id.clone())
    );
    let st = status_of(d, "tenant:alpha");
    assert_eq!(st["state"], "valid", "{st}");
    assert_eq!(st["cert_id"], id.as_str());
    // The challenge was withdrawn: nothing under the token path answers.
    let show = ok(d, &["acme", "show"]);
    assert_eq!(show["account"]["state"], "registered", "{show}");
    assert_eq!(show["contact"], "admin@pbx.test");
    let account = show["account"]["url"].as_str().unwrap().to_owned();
    daemon.stop();

    // Restart: same account, same certificate, nothing ordered.
    let mut daemon = Daemon::start(d, &env, true);
    assert_eq!(
        verified_leaf(daemon.https, "alpha.pbx.test", &root),
        Ok(id.clone())
    );
    assert_eq!(ok(d, &["acme", "show"])["account"]["url"], account.as_str());
    assert_eq!(acme_certs(d).len(), 1);

    // Reissue through the control socket: a new certificate, new key, same
    // account; the old one is gone only after the new one is stored.
    let r = ok(d, &["cert", "reissue", &id[..12]]);
    assert_eq!(r["key"], "tenant:alpha");
    daemon.next_outcome().expect("reissue");
    let certs = acme_certs(d);
    assert_eq!(certs.len(), 1);
    let new_id = certs[0]["id"].as_str().unwrap().to_owned();
    assert_ne!(new_id, id);
    assert_eq!(
        verified_leaf(daemon.https, "alpha.pbx.test", &root),
        Ok(new_id.clone())
    );
    assert_eq!(ok(d, &["acme", "show"])["account"]["url"], account.as_str());
    daemon.stop();
}

#[test]
fn tls_alpn01_issues_for_the_system_name_without_port_80() {
    let Some((_lock, env)) = peers() else { return };
    let dir = setup(&env, true);
    let d = dir.path();
    ok(d, &["system", "set", "--dns", "pbx.pbx.test"]);
    // auto + no port-80 listener → TLS-ALPN-01 on the HTTPS listener.
    let root = pebble_root(&env);
    let mut daemon = Daemon::start(d, &env, false);
    daemon.next_outcome().expect("TLS-ALPN-01 order");
    let certs = acme_certs(d);
    assert_eq!(certs.len(), 1, "{certs:?}");
    let id = certs[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(certs[0]["kind"], "server");
    assert_chain_verifies(d, &id, &root);
    // It serves for the name, and (as the real server certificate for the
    // system name) also as the default instead of the self-signed one.
    assert_eq!(
        verified_leaf(daemon.https, "pbx.pbx.test", &root),
        Ok(id.clone())
    );
    assert_eq!(ok(d, &["resolve"])["id"], id.as_str());
    // A normal client (no acme-tls/1) never sees a challenge certificate.
    assert_eq!(status_of(d, "system")["state"], "valid");
    daemon.stop();
}

#[test]
fn without_the_peers_ca_in_the_root_list_the_client_refuses_pebble() {
    let Some((_lock, env)) = peers() else { return };
    let dir = setup(&env, false);
    let d = dir.path();
    ok(d, &["tenant", "add", "beta", "--dns", "beta.pbx.test"]);
    let mut daemon = Daemon::start(d, &env, true);
    let line = daemon.next_outcome().expect_err("must not trust pebble");
    assert!(line.contains("[tls-failed]"), "{line}");
    let st = status_of(d, "tenant:beta");
    assert_eq!(st["state"], "failed");
    assert_eq!(st["last_error"]["code"], "tls-failed");
    assert!(st["next_attempt"].is_string());
    assert!(acme_certs(d).is_empty());
    daemon.stop();
}

#[test]
fn failing_validation_and_unreachable_ca_keep_the_old_cert_and_report() {
    let Some((_lock, env)) = peers() else { return };
    let dir = setup(&env, true);
    let d = dir.path();
    ok(d, &["tenant", "add", "gamma", "--dns", "gamma.pbx.test"]);
    ok(d, &["acme", "set", "--challenge", "http-01"]);
    let root = pebble_root(&env);
    let mut daemon = Daemon::start(d, &env, true);
    daemon.next_outcome().expect("first order");
    let id = acme_certs(d)[0]["id"].as_str().unwrap().to_owned();
    daemon.stop();

    // No port-80 listener, HTTP-01 forced: pebble's validation fails.
    let mut daemon = Daemon::start(d, &env, false);
    ok(d, &["cert", "reissue", &id]);
    let line = daemon.next_outcome().expect_err("validation must fail");
    assert!(line.contains("[validation-failed]"), "{line}");
    let st = status_of(d, "tenant:gamma");
    assert_eq!(st["state"], "failed", "{st}");
    assert_eq!(st["last_error"]["code"], "validation-failed");
    assert_eq!(
        verified_leaf(daemon.https, "gamma.pbx.test", &root),
        Ok(id.clone())
    );

    // Unreachable CA: a closed port.
    ok(
        d,
        &["acme", "set", "--directory", "https://127.0.0.1:9/dir"],
    );
    ok(d, &["cert", "reissue", &id]);
    let line = daemon.next_outcome().expect_err("CA is unreachable");
    assert!(line.contains("[ca-unreachable]"), "{line}");
    let st = status_of(d, "tenant:gamma");
    assert_eq!(st["last_error"]["code"], "ca-unreachable");
    assert_eq!(st["failures"], 2);
    let text = cli(d, &["acme", "status"]);
    assert!(text.1.contains("ca-unreachable"), "{}", text.1);
    assert_eq!(
        verified_leaf(daemon.https, "gamma.pbx.test", &root),
        Ok(id.clone())
    );
    assert_eq!(acme_certs(d).len(), 1);
    daemon.stop();
}

#[test]
fn a_tenant_with_rsa2048_gets_and_serves_an_rsa_2048_certificate() {
    let Some((_lock, env)) = peers() else { return };
    let dir = setup(&env, true);
    let d = dir.path();
    ok(d, &["tenant", "add", "rsa", "--dns", "rsa.pbx.test"]);
    let t = ok(d, &["tenant", "set", "rsa", "--acme-key-type", "rsa2048"]);
    assert_eq!(t["acme_key_type"], "rsa2048");
    let root = pebble_root(&env);
    let mut daemon = Daemon::start(d, &env, true);
    daemon.next_outcome().expect("order for the RSA tenant");
    let certs = acme_certs(d);
    assert_eq!(certs.len(), 1, "{certs:?}");
    assert_eq!(certs[0]["key_type"], "rsa2048", "{certs:?}");
    assert_eq!(certs[0]["tenant"], "rsa");
    let id = certs[0]["id"].as_str().unwrap().to_owned();
    assert_chain_verifies(d, &id, &root);
    // The handshake serves that very leaf (its key is the RSA one).
    assert_eq!(verified_leaf(daemon.https, "rsa.pbx.test", &root), Ok(id));
    daemon.stop();
}

#[test]
fn a_tenant_choosing_tls_alpn01_overrides_the_global_http01() {
    let Some((_lock, env)) = peers() else { return };
    let dir = setup(&env, true);
    let d = dir.path();
    ok(d, &["acme", "set", "--challenge", "http-01"]);
    ok(d, &["tenant", "add", "alpn", "--dns", "alpn.pbx.test"]);
    ok(
        d,
        &["tenant", "set", "alpn", "--acme-challenge", "tls-alpn-01"],
    );
    let root = pebble_root(&env);
    // Port 80 runs too: only the tenant's choice makes it TLS-ALPN-01.
    let mut daemon = Daemon::start(d, &env, true);
    let line = daemon.wait_log(&["ACME: answering "]);
    assert!(
        line.contains("answering tls-alpn-01 for alpn.pbx.test"),
        "{line}"
    );
    daemon
        .next_outcome()
        .expect("TLS-ALPN-01 order for the tenant");
    assert!(
        !daemon.seen.iter().any(|l| l.contains("answering http-01")),
        "{:?}",
        daemon.seen
    );
    let certs = acme_certs(d);
    assert_eq!(certs.len(), 1, "{certs:?}");
    assert_eq!(certs[0]["key_type"], "p256");
    let id = certs[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(verified_leaf(daemon.https, "alpn.pbx.test", &root), Ok(id));
    assert_eq!(status_of(d, "tenant:alpn")["state"], "valid");
    daemon.stop();
}

#[test]
fn the_running_daemon_orders_for_a_tenant_added_while_running() {
    let Some((_lock, env)) = peers() else { return };
    let dir = setup(&env, true);
    let d = dir.path();
    ok(d, &["acme", "set", "--check-interval", "1"]);
    let root = pebble_root(&env);
    let mut daemon = Daemon::start(d, &env, true);
    // `tenant add` wakes the renewal loop (issue 10; with the default
    // interval in tests/command_table.rs), and the 1 s timer would find the
    // tenant too: either way the running daemon orders for it.
    ok(d, &["tenant", "add", "delta", "--dns", "delta.pbx.test"]);
    daemon.next_outcome().expect("order for the added tenant");
    let id = acme_certs(d)[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(verified_leaf(daemon.https, "delta.pbx.test", &root), Ok(id));
    daemon.stop();
}

#[test]
fn pebble_restart_forgets_the_account_and_fifty_percent_bad_nonces_still_succeed() {
    let Some((_lock, env)) = peers() else { return };
    let dir = setup(&env, true);
    let d = dir.path();
    ok(
        d,
        &[
            "tenant",
            "add",
            "eps",
            "--dns",
            "eps.pbx.test",
            "--dns",
            "www.eps.pbx.test",
        ],
    );
    let mut daemon = Daemon::start(d, &env, true);
    daemon.next_outcome().expect("first order");
    let id = acme_certs(d)[0]["id"].as_str().unwrap().to_owned();
    let account = ok(d, &["acme", "show"])["account"]["url"].clone();

    // Pebble forgets everything (accountDoesNotExist) and now rejects half
    // of all nonces (badNonce).
    let env2 = peers_script(&["restart-pebble"], &[("PEBBLE_WFE_NONCEREJECT", "50")]);
    assert_eq!(env2["PEBBLE_NONCEREJECT"], "50");
    // The issuing root changed with the restart; trust it for the chain check.
    let root = pebble_root(&env2);
    ok(d, &["cert", "reissue", &id]);
    let outcome = daemon.next_outcome();
    // Back to normal for the other tests whatever happened.
    peers_script(&["restart-pebble"], &[]);
    outcome.expect("reissue under 50% badNonce after pebble forgot the account");
    let certs = acme_certs(d);
    let new_id = certs[0]["id"].as_str().unwrap().to_owned();
    assert_ne!(new_id, id);
    assert_chain_verifies(d, &new_id, &root);
    assert_ne!(ok(d, &["acme", "show"])["account"]["url"], account);
    daemon.stop();
}

#[test]
fn acme_settings_are_validated_and_secrets_masked() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let show = ok(d, &["acme", "show"]);
    assert_eq!(show["enabled"], false);
    assert_eq!(
        show["directory"],
        "https://acme-v02.api.letsencrypt.org/directory"
    );
    assert_eq!(show["check_interval"], 21600);
    assert_eq!(show["account"]["state"], "none");
    for (args, code) in [
        (&["--directory", "http://ca.example/dir"][..], "bad-setting"),
        (&["--directory", "not a url"][..], "bad-setting"),
        (&["--email", "nobody"][..], "bad-email"),
        (&["--check-interval", "0"][..], "bad-setting"),
        (&["--check-interval", "90000"][..], "bad-setting"),
        (&["--eab-kid", "k", "--eab-hmac", "!!"][..], "bad-setting"),
    ] {
        let mut all = vec!["acme", "set"];
        all.extend_from_slice(args);
        all.push("--json");
        let out = cli(d, &all);
        assert_eq!(out.0, 1, "{args:?}: {}", out.1);
        let v: serde_json::Value = serde_json::from_str(&out.1).unwrap();
        assert_eq!(v["error"]["code"], code, "{args:?}");
    }
    assert_eq!(
        cli(d, &["acme", "set", "--challenge", "smoke-signals"]).0,
        2
    );
    assert_eq!(cli(d, &["acme", "set", "--eab-kid", "k"]).0, 2);
    ok(
        d,
        &[
            "acme",
            "set",
            "--eab-kid",
            "kid-1",
            "--eab-hmac",
            "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W",
            "--challenge",
            "tls-alpn-01",
            "--enabled",
            "true",
            "--check-interval",
            "5",
        ],
    );
    let show = ok(d, &["acme", "show"]);
    assert_eq!(show["eab_kid"], "kid-1");
    assert_eq!(show["eab_hmac"], "********");
    assert_eq!(show["challenge"], "tls-alpn-01");
    assert_eq!(
        (show["enabled"].clone(), show["check_interval"].clone()),
        (true.into(), 5.into())
    );
    let text = cli(d, &["acme", "show"]).1;
    assert!(!text.contains("zWNDZM6"), "{text}");
    // Status: per name set, pending until ordered; uploaded certs excluded.
    ok(
        d,
        &[
            "tenant",
            "add",
            "t1",
            "--dns",
            "a.example.com",
            "--dns",
            "b.example.com",
        ],
    );
    let st = ok(d, &["acme", "status"]);
    assert_eq!(st[0]["key"], "tenant:t1");
    assert_eq!(st[0]["state"], "pending");
    // Reissue of an uploaded certificate is refused.
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["a.example.com".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (c, k) = (d.join("c.pem"), d.join("k.pem"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    let imported = ok(
        d,
        &[
            "import",
            "--cert",
            c.to_str().unwrap(),
            "--key",
            k.to_str().unwrap(),
        ],
    );
    let out = cli(
        d,
        &[
            "cert",
            "reissue",
            imported["id"].as_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(out.0, 1);
    assert!(out.1.contains("not-acme-managed"), "{}", out.1);
    ok(d, &["acme", "set", "--enabled", "false"]);
    let out = cli(
        d,
        &[
            "cert",
            "reissue",
            imported["id"].as_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(out.0, 1);
    assert!(out.1.contains("acme-disabled"), "{}", out.1);
    // The uploaded cert covers a.example.com: only b.example.com stays for ACME.
    let st = ok(d, &["acme", "status"]);
    assert_eq!(st[0]["names"], serde_json::json!(["b.example.com"]));
}

#[test]
fn an_authorization_the_ca_still_holds_valid_is_reused_without_a_challenge() {
    let Some((_lock, _)) = peers() else { return };
    // Pebble reuses every valid authorization (RFC 8555 §7.5 allows it).
    let env = peers_script(&["restart-pebble"], &[("PEBBLE_AUTHZREUSE", "100")]);
    let result = std::panic::catch_unwind(|| {
        let dir = setup(&env, true);
        let d = dir.path();
        ok(d, &["tenant", "add", "zeta", "--dns", "zeta.pbx.test"]);
        ok(d, &["acme", "set", "--challenge", "http-01"]);
        let mut daemon = Daemon::start(d, &env, true);
        daemon.next_outcome().expect("first order");
        let id = acme_certs(d)[0]["id"].as_str().unwrap().to_owned();
        daemon.stop();
        // No port-80 listener: only a reused authorization can succeed.
        let mut daemon = Daemon::start(d, &env, false);
        ok(d, &["cert", "reissue", &id]);
        daemon
            .next_outcome()
            .expect("reissue with the reused authorization");
        assert_ne!(acme_certs(d)[0]["id"], id.as_str());
        daemon.stop();
    });
    peers_script(&["restart-pebble"], &[]);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

/// A tiny RFC 9773 server: `/dir` is pebble's directory plus `renewalInfo`
/// pointing here; `/ari/{certID}` suggests a window that has already begun.
/// Pebble 2.4 has no ARI, hence this stand-in. Returns its CA (PEM), its
/// directory URL and the certIDs it was asked about.
fn ari_server(pebble_dir: serde_json::Value) -> (String, String, Arc<Mutex<Vec<String>>>) {
    use std::io::{Read, Write};
    let (ca_pem, config) = https_server::tls_config("ARI test CA");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("https://{}", listener.local_addr().unwrap());
    let mut dir = pebble_dir;
    dir["renewalInfo"] = format!("{base}/ari").into();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        for tcp in listener.incoming().map_while(Result::ok) {
            let (config, dir, seen) = (config.clone(), dir.clone(), seen2.clone());
            std::thread::spawn(move || {
                let mut tcp = tcp;
                let mut conn = rustls::ServerConnection::new(config).unwrap();
                let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match tls.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
                let body = if path == "/dir" {
                    Some(dir.to_string())
                } else if let Some(id) = path.strip_prefix("/ari/") {
                    seen.lock().unwrap().push(id.to_owned());
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_secs() as i64;
                    let t = |u: i64| pbx_certd::clock::rfc3339(u);
                    Some(format!(
                        r#"{{"suggestedWindow":{{"start":"{}","end":"{}"}}}}"#,
                        t(now - 7200),
                        t(now - 3600)
                    ))
                } else {
                    None
                };
                let resp = match body {
                    Some(b) => format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nRetry-After: 21600\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
                        b.len()
                    ),
                    None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
                };
                let _ = tls.write_all(resp.as_bytes());
                let _ = tls.flush();
                tls.conn.send_close_notify();
                let _ = tls.conn.complete_io(tls.sock);
            });
        }
    });
    (ca_pem, format!("{base}/dir"), seen)
}

#[test]
fn ari_window_that_has_begun_renews_a_certificate_with_most_of_its_life_left() {
    let Some((_lock, env)) = peers() else { return };
    let dir = setup(&env, true);
    let d = dir.path();
    ok(d, &["tenant", "add", "eta", "--dns", "eta.pbx.test"]);
    let mut daemon = Daemon::start(d, &env, true);
    daemon.next_outcome().expect("first order");
    let old = acme_certs(d)[0].clone();
    let old_id = old["id"].as_str().unwrap().to_owned();
    daemon.stop();
    // Pebble's certificates live 5 years: the 1/3 rule says "not due".
    let pem = ok(d, &["cert", "show", &old_id])["pem"]
        .as_str()
        .unwrap()
        .to_owned();
    let leaf = pem_certs(&pem).remove(0);
    let expected_id = pbx_certd::renewal::ari::cert_id(&leaf).expect("pebble leaf has an AKI");

    let out = Command::new("curl")
        .args([
            "-sf",
            "--cacert",
            &env["ACME_CA_FILE"],
            &env["ACME_DIRECTORY_URL"],
        ])
        .output()
        .unwrap();
    let pebble_dir: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (ca_pem, ari_dir, seen) = ari_server(pebble_dir);
    let ca = d.join("ari-ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    ok(
        d,
        &["import", "--cert", ca.to_str().unwrap(), "--kind", "root"],
    );
    ok(d, &["acme", "set", "--directory", &ari_dir]);

    let mut daemon = Daemon::start(d, &env, true);
    let window = daemon.wait_log(&["renewal window for eta.pbx.test"]);
    assert!(window.contains("renewing after"), "{window}");
    daemon.next_outcome().expect("renewal by ARI");
    assert_eq!(seen.lock().unwrap().first(), Some(&expected_id));
    let certs = acme_certs(d);
    assert_eq!(certs.len(), 1);
    assert_ne!(certs[0]["id"], old_id.as_str());
    daemon.stop();
}

/// `dns add peers --provider rfc2136` for the peers' zone on their BIND,
/// signed with `secret`. The zone's NS host (ns1.pbx.test) is 127.0.0.1:53,
/// where no peer listens, so propagation is checked at the provider's
/// server only (`--check-ns false`, as for split DNS).
fn add_peers_provider(d: &Path, env: &HashMap<String, String>, secret: &str) {
    ok(d, &["dns", "set", "--check-ns", "false"]);
    ok(
        d,
        &[
            "dns",
            "add",
            "peers",
            "--provider",
            "rfc2136",
            "--zone",
            &env["DNS_ZONE"],
            "--server",
            &env["DNS_SERVER"],
            "--tsig-name",
            &env["TSIG_KEY_NAME"],
            "--tsig-algorithm",
            &env["TSIG_ALGORITHM"],
            "--tsig-secret",
            secret,
        ],
    );
}

/// DNS-01 from the stored provider: `dns add` + a system name in its zone →
/// the system name set is `NAME` and `*.NAME`, ordered by DNS-01 with no
/// port-80 listener; the chain verifies against pebble's root and serves for
/// a name under the wildcard; no TXT record is left in the zone.
#[test]
fn dns01_from_a_stored_rfc2136_provider_issues_the_system_wildcard_and_removes_the_records() {
    let Some((_lock, env)) = peers() else { return };
    let dir = setup(&env, true);
    let d = dir.path();
    let root = pebble_root(&env);
    add_peers_provider(d, &env, &env["TSIG_SECRET"]);
    ok(d, &["system", "set", "--dns", "w.pbx.test"]);
    let st = status_of(d, "system");
    assert_eq!(
        st["names"],
        serde_json::json!(["w.pbx.test", "*.w.pbx.test"])
    );

    let mut daemon = Daemon::start(d, &env, false);
    daemon.next_outcome().expect("DNS-01 order");
    let answered: Vec<&String> = daemon
        .seen
        .iter()
        .filter(|l| l.contains("answering dns-01 for"))
        .collect();
    assert_eq!(answered.len(), 2, "{answered:?}");
    assert!(answered
        .iter()
        .all(|l| l.contains("_acme-challenge.w.pbx.test through DNS provider peers")));

    let certs = acme_certs(d);
    assert_eq!(certs.len(), 1, "{certs:?}");
    let id = certs[0]["id"].as_str().unwrap().to_owned();
    let mut names: Vec<String> = certs[0]["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["*.w.pbx.test", "w.pbx.test"]);
    assert_chain_verifies(d, &id, &root);
    assert_eq!(
        verified_leaf(daemon.https, "phone7.w.pbx.test", &root),
        Ok(id.clone())
    );
    assert_eq!(verified_leaf(daemon.https, "w.pbx.test", &root), Ok(id));
    let st = status_of(d, "system");
    assert_eq!(st["state"], "valid", "{st}");
    assert_eq!(st["last_error"], serde_json::Value::Null);
    assert!(
        dig_txt(&env, "_acme-challenge.w.pbx.test").is_empty(),
        "TXT records left in the zone"
    );
    daemon.stop();
}

/// One RFC 2136 update to the peers' BIND, sent by BIND's own `nsupdate`
/// with the peers' TSIG key (the fake Cloudflare API's back end).
fn nsupdate(env: &HashMap<String, String>, line: &str) {
    use std::io::Write;
    let (host, port) = env["DNS_SERVER"].split_once(':').unwrap();
    let key = format!(
        "{}:{}:{}",
        env["TSIG_ALGORITHM"], env["TSIG_KEY_NAME"], env["TSIG_SECRET"]
    );
    let mut child = Command::new("nsupdate")
        .args(["-y", &key])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let script = format!(
        "server {host} {port}\nzone {}\n{line}\nsend\n",
        env["DNS_ZONE"]
    );
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "nsupdate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `on_change` hook of the fake DNS APIs: mirror each TXT record into the
/// peers' BIND, where pebble looks.
fn mirror_into_bind(env: &HashMap<String, String>) -> fake_cloudflare::OnChange {
    let env = env.clone();
    Box::new(move |op, name, content| {
        let line = if op == "add" {
            format!("update add {name}. 60 TXT \"{content}\"")
        } else {
            format!("update delete {name}. TXT \"{content}\"")
        };
        nsupdate(&env, &line);
    })
}

/// Trust a fake DNS API (`ca_pem`), add it as provider `provider` at `base`,
/// set the system name `system` and let the daemon order `system` +
/// `*.system` by DNS-01: the chain verifies against pebble's root and is
/// served for a name under the wildcard. Returns the running daemon.
fn order_system_wildcard_through_api(
    d: &Path,
    env: &HashMap<String, String>,
    provider: &str,
    token: &str,
    (base, ca_pem): (String, String),
    system: &str,
) -> Daemon {
    let root = pebble_root(env);
    let ca = d.join("api-ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    ok(
        d,
        &["import", "--cert", ca.to_str().unwrap(), "--kind", "root"],
    );
    ok(d, &["dns", "set", "--check-ns", "false"]);
    ok(
        d,
        &[
            "dns",
            "add",
            provider,
            "--provider",
            provider,
            "--zone",
            &env["DNS_ZONE"],
            "--token",
            token,
            "--api-base",
            &base,
        ],
    );
    ok(d, &["system", "set", "--dns", system]);
    let mut daemon = Daemon::start(d, env, false);
    daemon
        .next_outcome()
        .unwrap_or_else(|e| panic!("DNS-01 order through {provider}: {e:?}"));
    let certs = acme_certs(d);
    assert_eq!(certs.len(), 1, "{certs:?}");
    assert_eq!(
        certs[0]["names"],
        serde_json::json!([system, format!("*.{system}")])
    );
    let id = certs[0]["id"].as_str().unwrap().to_owned();
    assert_chain_verifies(d, &id, &root);
    assert_eq!(
        verified_leaf(daemon.https, &format!("phone.{system}"), &root),
        Ok(id)
    );
    assert!(dig_txt(env, &format!("_acme-challenge.{system}")).is_empty());
    daemon
}

/// After a two-name DNS-01 order through a fake DNS API: no record left,
/// one POST and one DELETE per challenge.
fn assert_api_cleaned_up(no_records_left: bool, log: &[String]) {
    assert!(no_records_left, "records left at the API");
    let posts = log.iter().filter(|l| l.starts_with("POST ")).count();
    let deletes = log.iter().filter(|l| l.starts_with("DELETE ")).count();
    assert_eq!((posts, deletes), (2, 2), "{log:?}");
}

/// DNS-01 through the Cloudflare provider: a local HTTPS server following
/// Cloudflare's API v4 (its CA in the Root CA list, `--api-base` pointing at
/// it) that mirrors each TXT record into the peers' BIND, where pebble looks.
#[test]
fn dns01_through_the_cloudflare_api_issues_the_system_wildcard() {
    let Some((_lock, env)) = peers() else { return };
    let dir = setup(&env, true);
    let api = Arc::new(Mutex::new(fake_cloudflare::Api::new(&env["DNS_ZONE"])));
    api.lock().unwrap().on_change = Some(mirror_into_bind(&env));
    let served = fake_cloudflare::start_api(api.clone());
    let daemon = order_system_wildcard_through_api(
        dir.path(),
        &env,
        "cloudflare",
        fake_cloudflare::TOKEN,
        served,
        "c.pbx.test",
    );
    let api = api.lock().unwrap();
    assert_api_cleaned_up(api.records.is_empty(), &api.log);
    drop(api);
    daemon.stop();
}

/// DNS-01 through the DigitalOcean provider: a local HTTPS server following
/// DigitalOcean's API v2 (record names relative to the domain; its CA in the
/// Root CA list, `--api-base` pointing at it) that mirrors each TXT record
/// into the peers' BIND, where pebble looks.
#[test]
fn dns01_through_the_digitalocean_api_issues_the_system_wildcard() {
    let Some((_lock, env)) = peers() else { return };
    let dir = setup(&env, true);
    let api = Arc::new(Mutex::new(fake_digitalocean::Api::new(&env["DNS_ZONE"])));
    api.lock().unwrap().on_change = Some(mirror_into_bind(&env));
    let served = fake_digitalocean::start_api(api.clone());
    let daemon = order_system_wildcard_through_api(
        dir.path(),
        &env,
        "digitalocean",
        fake_digitalocean::TOKEN,
        served,
        "dgo.pbx.test",
    );
    let api = api.lock().unwrap();
    assert_api_cleaned_up(api.records.is_empty(), &api.log);
    drop(api);
    daemon.stop();
}

/// A provider added while the daemon runs: the system name set becomes
/// `NAME` + `*.NAME`, ordered at once by DNS-01, and the HTTP-01 certificate
/// for `NAME` alone is replaced.
#[test]
fn dns_add_while_running_reorders_the_system_name_with_its_wildcard() {
    let Some((_lock, env)) = peers() else { return };
    let dir = setup(&env, true);
    let d = dir.path();
    let root = pebble_root(&env);
    ok(d, &["system", "set", "--dns", "u.pbx.test"]);
    let mut daemon = Daemon::start(d, &env, true);
    daemon.next_outcome().expect("HTTP-01 order");
    let first = acme_certs(d);
    assert_eq!(first[0]["names"], serde_json::json!(["u.pbx.test"]));
    let old = first[0]["id"].as_str().unwrap().to_owned();

    add_peers_provider(d, &env, &env["TSIG_SECRET"]);
    daemon.next_outcome().expect("DNS-01 order after dns add");
    assert!(daemon
        .seen
        .iter()
        .any(|l| l.contains("answering dns-01 for *.u.pbx.test")));
    let certs = acme_certs(d);
    assert_eq!(
        certs.len(),
        1,
        "the narrower certificate is replaced: {certs:?}"
    );
    let id = certs[0]["id"].as_str().unwrap().to_owned();
    assert_ne!(id, old);
    assert_eq!(
        verified_leaf(daemon.https, "phone.u.pbx.test", &root),
        Ok(id.clone())
    );
    assert_eq!(verified_leaf(daemon.https, "u.pbx.test", &root), Ok(id));
    assert!(dig_txt(&env, "_acme-challenge.u.pbx.test").is_empty());
    daemon.stop();
}

/// A wrong TSIG secret: the order fails with the DNS error's code in
/// `acme status`, nothing is added to the zone, and the certificate issued
/// before keeps being served.
#[test]
fn dns01_with_a_wrong_tsig_secret_fails_with_the_dns_code_and_keeps_the_served_cert() {
    let Some((_lock, env)) = peers() else { return };
    let dir = setup(&env, true);
    let d = dir.path();
    let root = pebble_root(&env);
    add_peers_provider(d, &env, &env["TSIG_SECRET"]);
    ok(d, &["system", "set", "--dns", "v.pbx.test"]);
    let mut daemon = Daemon::start(d, &env, false);
    daemon.next_outcome().expect("first DNS-01 order");
    let id = acme_certs(d)[0]["id"].as_str().unwrap().to_owned();

    // Same key name and algorithm, another secret (valid Base64, 32 bytes).
    // Changed with the daemon stopped: `dns remove`/`dns add` wake the
    // renewal loop, and only the reissue's order is wanted here.
    daemon.stop();
    ok(d, &["dns", "remove", "peers"]);
    add_peers_provider(d, &env, "d3JvbmctdHNpZy1zZWNyZXQtd3JvbmctdHNpZy1zZWM=");
    ok(d, &["cert", "reissue", &id]);
    let mut daemon = Daemon::start(d, &env, false);
    let line = daemon
        .next_outcome()
        .expect_err("BIND must reject the TSIG");
    assert!(line.contains("[dns-tsig-rejected]"), "{line}");
    let st = status_of(d, "system");
    assert_eq!(st["state"], "failed", "{st}");
    assert_eq!(st["last_error"]["code"], "dns-tsig-rejected", "{st}");
    let text = cli(d, &["acme", "status"]);
    assert!(text.1.contains("dns-tsig-rejected"), "{}", text.1);
    assert_eq!(
        verified_leaf(daemon.https, "phone7.v.pbx.test", &root),
        Ok(id.clone())
    );
    assert_eq!(acme_certs(d).len(), 1);
    assert!(dig_txt(&env, "_acme-challenge.v.pbx.test").is_empty());
    daemon.stop();
}

/// No stored provider covers the name and DNS-01 is forced: `no-dns-provider`.
#[test]
fn dns01_without_a_provider_for_the_name_is_no_dns_provider() {
    let Some((_lock, env)) = peers() else { return };
    let dir = setup(&env, true);
    let d = dir.path();
    ok(d, &["tenant", "add", "eps", "--dns", "eps.pbx.test"]);
    ok(d, &["acme", "set", "--challenge", "dns-01"]);
    let mut daemon = Daemon::start(d, &env, true);
    let line = daemon.next_outcome().expect_err("no provider");
    assert!(line.contains("[no-dns-provider]"), "{line}");
    assert_eq!(
        status_of(d, "tenant:eps")["last_error"]["code"],
        "no-dns-provider"
    );
    assert!(acme_certs(d).is_empty());
    daemon.stop();
}

/// An in-memory handshake; the leaf the server presented.
fn leaf_in_memory(
    server: &Arc<rustls::ServerConfig>,
    sni: &str,
    alpn: &[&[u8]],
) -> Option<Vec<u8>> {
    let capture = AcceptAny::new();
    let config = client_config(capture.clone(), alpn);
    let name = ServerName::try_from(sni.to_string()).unwrap();
    let mut client = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut srv = rustls::ServerConnection::new(server.clone()).unwrap();
    for _ in 0..10 {
        let mut buf = Vec::new();
        client.write_tls(&mut buf).unwrap();
        if srv.read_tls(&mut buf.as_slice()).is_err() || srv.process_new_packets().is_err() {
            break;
        }
        let mut back = Vec::new();
        srv.write_tls(&mut back).unwrap();
        if client.read_tls(&mut back.as_slice()).is_err() || client.process_new_packets().is_err() {
            break;
        }
        if !client.is_handshaking() {
            break;
        }
    }
    capture.leaf()
}

#[test]
fn only_a_client_offering_exactly_acme_tls_1_gets_the_challenge_certificate() {
    // RFC 8737 §3/§6.2, in memory (no peers needed).
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["x.example".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (c, k) = (d.join("c.pem"), d.join("k.pem"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    ok(
        d,
        &[
            "import",
            "--cert",
            c.to_str().unwrap(),
            "--key",
            k.to_str().unwrap(),
            "--kind",
            "server",
        ],
    );
    let shared = pbx_certd::daemon::Shared::new(pbx_certd::ops::open_store(d).unwrap()).unwrap();
    let server = pbx_certd::tls::server_config(
        shared.clone(),
        &[b"http/1.1", pbx_certd::renewal::issue::ACME_TLS_ALPN],
    )
    .unwrap();
    let acme: &[u8] = b"acme-tls/1";
    let normal = cert.der().to_vec();
    // A validation client with no challenge pending gets no certificate at
    // all (never the normal one, which it would take as a wrong answer).
    assert_eq!(
        leaf_in_memory(&server, "x.example", &[acme]),
        None,
        "no challenge yet"
    );
    assert_eq!(
        leaf_in_memory(&server, "x.example", &[]),
        Some(normal.clone())
    );

    let challenge = pbx_certd::renewal::issue::alpn_cert("x.example", &[7u8; 32]).unwrap();
    let challenge_der = challenge.cert[0].to_vec();
    shared
        .set_challenges(|c| {
            c.alpn.insert("x.example".into(), challenge);
        })
        .unwrap();
    assert_eq!(
        leaf_in_memory(&server, "X.Example", &[acme]),
        Some(challenge_der.clone())
    );
    assert_eq!(
        leaf_in_memory(&server, "x.example", &[]),
        Some(normal.clone())
    );
    assert_eq!(
        leaf_in_memory(&server, "x.example", &[b"http/1.1"]),
        Some(normal.clone())
    );
    assert_eq!(
        leaf_in_memory(&server, "x.example", &[b"http/1.1", acme]),
        Some(normal.clone()),
        "acme-tls/1 among others is a normal client"
    );
    assert_eq!(
        leaf_in_memory(&server, "other.example", &[acme]),
        None,
        "no challenge for that name"
    );
    // The challenge certificate carries the critical acmeIdentifier (1.3.6.1.5.5.7.1.31).
    let oid_der = [
        0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x1f, 0x01, 0x01, 0xff,
    ];
    assert!(challenge_der.windows(oid_der.len()).any(|w| w == oid_der));
    shared.set_challenges(|c| c.alpn.clear()).unwrap();
    assert_eq!(leaf_in_memory(&server, "x.example", &[acme]), None);
    assert_eq!(leaf_in_memory(&server, "x.example", &[]), Some(normal));
}

#[test]
fn the_timer_renews_when_a_third_of_the_lifetime_is_left() {
    let Some((_lock, _)) = peers() else { return };
    // 30-second certificates: due 15 s after issuance (short-lived: 1/2 of the
    // lifetime left), no trigger.
    let env = peers_script(&["restart-pebble"], &[("PEBBLE_CERT_VALIDITY", "30")]);
    let result = std::panic::catch_unwind(|| {
        let dir = setup(&env, true);
        let d = dir.path();
        ok(d, &["tenant", "add", "theta", "--dns", "theta.pbx.test"]);
        ok(d, &["acme", "set", "--check-interval", "1"]);
        let mut daemon = Daemon::start(d, &env, true);
        daemon.next_outcome().expect("first order");
        let first = acme_certs(d)[0].clone();
        let life = parse_time(first["not_after"].as_str().unwrap())
            - parse_time(first["not_before"].as_str().unwrap());
        assert!(
            life <= 60,
            "pebble ignored certificateValidityPeriod: {first}"
        );
        daemon.next_outcome().expect("renewal by the timer");
        let certs = acme_certs(d);
        assert_eq!(
            certs.len(),
            1,
            "the renewed certificate replaced the old one"
        );
        assert_ne!(certs[0]["id"], first["id"]);
        daemon.stop();
    });
    peers_script(&["restart-pebble"], &[]);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

fn parse_time(s: &str) -> i64 {
    pbx_certd::clock::parse_rfc3339(s).unwrap()
}

/// Concurrent triggers for one name set run as one order at a time: several
/// `cert reissue` and `tenant set` calls at once through the control socket
/// (the latter also checks `tenant set` on the running daemon). The log never
/// shows a second order start for the names before the first one's outcome.
#[test]
fn concurrent_triggers_for_the_same_names_never_overlap() {
    let Some((_lock, env)) = peers() else { return };
    let dir = setup(&env, true);
    let d = dir.path();
    ok(d, &["tenant", "add", "conc", "--dns", "conc.pbx.test"]);
    ok(d, &["acme", "set", "--challenge", "http-01"]);
    let mut daemon = Daemon::start(d, &env, true);
    daemon.next_outcome().expect("first order");
    let id = acme_certs(d)[0]["id"].as_str().unwrap().to_owned();

    let threads: Vec<_> = (0..6)
        .map(|i| {
            let (d, id) = (d.to_path_buf(), id.clone());
            std::thread::spawn(move || {
                if i % 2 == 0 {
                    ok(&d, &["cert", "reissue", &id]);
                } else {
                    ok(
                        &d,
                        &["tenant", "set", "conc", "--acme-challenge", "http-01"],
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // The running daemon took `tenant set` through its control socket.
    let tenants = ok(d, &["tenant", "list"]);
    assert_eq!(tenants[0]["acme_challenge"], "http-01", "{tenants}");
    // At least the reissue's order runs; wait for its outcome.
    daemon.next_outcome().expect("reissue order");

    let starts_and_outcomes: Vec<&String> = daemon
        .seen
        .iter()
        .filter(|l| {
            l.contains("conc.pbx.test")
                && (l.contains("ACME: ordering a certificate for ")
                    || l.contains("ACME: certificate ")
                    || l.contains("ACME: order for "))
        })
        .collect();
    let mut open = false;
    for line in &starts_and_outcomes {
        let start = line.contains("ordering a certificate");
        assert!(
            !(start && open),
            "a second order started before the first ended:\n{}",
            daemon.seen.join("\n")
        );
        open = start;
    }
    assert!(starts_and_outcomes.len() >= 4, "{starts_and_outcomes:?}");
    daemon.stop();
}

/// RFC 8738: a tenant's IP name is ordered as an `ip` identifier beside its
/// DNS name in one order (HTTP-01 at the address itself), and the issued
/// certificate is served to a client that connects to that address without
/// SNI, verified for the IP against pebble's root (rustls sends no SNI for
/// an IP and checks the iPAddress SAN).
#[test]
fn an_ip_name_is_ordered_as_an_ip_identifier_and_served_to_clients_without_sni() {
    let Some((_lock, env)) = peers() else { return };
    let dir = setup(&env, true);
    let d = dir.path();
    ok(
        d,
        &[
            "tenant",
            "add",
            "lobby",
            "--dns",
            "lobby.pbx.test",
            "--ip",
            "127.0.0.1",
        ],
    );
    let root = pebble_root(&env);
    let mut daemon = Daemon::start(d, &env, true);
    daemon
        .next_outcome()
        .expect("order for a DNS name and an IP address");
    assert!(
        daemon
            .seen
            .iter()
            .any(|l| l.contains("answering http-01 for 127.0.0.1")),
        "{:?}",
        daemon.seen
    );
    let certs = acme_certs(d);
    assert_eq!(certs.len(), 1, "{certs:?}");
    let mut names: Vec<&str> = certs[0]["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["127.0.0.1", "lobby.pbx.test"]);
    assert_eq!(certs[0]["tenant"], "lobby");
    let id = certs[0]["id"].as_str().unwrap().to_owned();
    assert_chain_verifies(d, &id, &root);
    // No SNI, connected to 127.0.0.1: the tenant's certificate, not the
    // self-signed default; with its DNS name as SNI: the same one.
    assert_eq!(
        verified_leaf(daemon.https, "127.0.0.1", &root),
        Ok(id.clone())
    );
    assert_eq!(verified_leaf(daemon.https, "lobby.pbx.test", &root), Ok(id));
    assert_eq!(status_of(d, "tenant:lobby")["state"], "valid");
    daemon.stop();
}

/// An IP address has no DNS zone (RFC 8738 §7): a tenant that chose DNS-01
/// gets its IP name validated by TLS-ALPN-01 when port 80 is off, answered
/// on the reverse-DNS SNI the CA sends (§6) with the address as the
/// challenge certificate's SAN.
#[test]
fn an_ip_name_of_a_dns01_tenant_is_validated_by_tls_alpn01_without_port_80() {
    let Some((_lock, env)) = peers() else { return };
    let dir = setup(&env, true);
    let d = dir.path();
    ok(d, &["tenant", "add", "desk", "--ip", "127.0.0.1"]);
    ok(d, &["tenant", "set", "desk", "--acme-challenge", "dns-01"]);
    let root = pebble_root(&env);
    let mut daemon = Daemon::start(d, &env, false);
    let line = daemon.wait_log(&["ACME: answering "]);
    assert!(
        line.contains("answering tls-alpn-01 for 127.0.0.1"),
        "{line}"
    );
    daemon.next_outcome().expect("TLS-ALPN-01 order for an IP");
    let certs = acme_certs(d);
    assert_eq!(certs.len(), 1, "{certs:?}");
    assert_eq!(certs[0]["names"], serde_json::json!(["127.0.0.1"]));
    let id = certs[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(verified_leaf(daemon.https, "127.0.0.1", &root), Ok(id));
    daemon.stop();
}
