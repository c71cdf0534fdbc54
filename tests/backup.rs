//! Backup, restore and `store copy` (issue 16) as an admin uses them: the
//! CLI on a data dir, with and without the daemon running on it, and a
//! client's TLS handshake to see what the restored store serves.
//!
//! What must hold: a backup restored into a fresh data dir gives back the
//! same answers to every listing (`certs`, `roots`, `tenant list`, `system
//! show`, `acme show`, `dns list`, `served`, `resolve`); the file is mode
//! 0600 (it holds keys); a store holding certificates, keys or tenants is
//! not overwritten without `--replace`; a damaged, foreign or newer file is
//! refused by name and the store is left as it was; a restore through the
//! running daemon is served at once. The etcd side (restore into a fresh
//! prefix, copy etcd → sled) is in tests/cluster.rs.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use common::accept_any::{client_config, AcceptAny};
use common::*;
use rustls::pki_types::ServerName;
use serde_json::{json, Value};

/// Names the sample store serves (and one it does not).
const NAMES: [&str; 4] = [
    "pbx.alpha.test",
    "sip.alpha.test",
    "pbx.beta.test",
    "unknown.test",
];

/// A store with what an admin makes: two tenants, a private root in the
/// Root CA list and a bundled root deleted, a domain and a server
/// certificate, the local CA with one issued certificate, a DNS provider
/// with a TSIG secret, ACME and system settings.
fn populated() -> (Pbx, Issued) {
    let pbx = Pbx::new();
    let pki = Pki::new();
    pbx.tenant_add("alpha", &["pbx.alpha.test", "sip.alpha.test"]);
    pbx.tenant_add("beta", &["pbx.beta.test"]);
    pbx.import_ok(pki.root.pem(), None, &["--kind", "root"]);
    let bundled = pbx
        .roots()
        .into_iter()
        .find(|r| r["id"] != pki.root.id())
        .expect("a bundled root");
    pbx.ok(&["roots", "delete", bundled["id"].as_str().unwrap()]);
    let alpha = pki.leaf(leaf(&["pbx.alpha.test"]));
    pki.import(&pbx, &alpha, &[]);
    pki.import(
        &pbx,
        &pki.leaf(leaf(&["server.pbx.test"])),
        &["--kind", "server"],
    );
    pbx.ok(&["ca", "init"]);
    pbx.ok(&["ca", "issue", "--tenant", "beta"]);
    pbx.ok(&rfc2136_provider(
        "acme-key",
        "c2VjcmV0LXNlY3JldC1zZWNyZXQ=",
    ));
    pbx.ok(&[
        "acme",
        "set",
        "--email",
        "ops@alpha.test",
        "--challenge",
        "dns-01",
    ]);
    pbx.ok(&["system", "set", "--dns", "pbx.system.test"]);
    (pbx, alpha)
}

/// Every answer an admin reads of a store.
fn answers(pbx: &Pbx) -> Value {
    let mut resolved = serde_json::Map::new();
    for name in NAMES {
        resolved.insert(name.to_owned(), pbx.resolve(Some(name)));
    }
    resolved.insert("(no SNI)".into(), pbx.resolve(None));
    json!({
        "certs": pbx.ok(&["certs"]),
        "roots": pbx.ok(&["roots"]),
        "tenants": pbx.ok(&["tenant", "list"]),
        "system": pbx.ok(&["system", "show"]),
        "acme": pbx.ok(&["acme", "show"]),
        "dns": pbx.ok(&["dns", "list"]),
        "served": pbx.ok(&["served"]),
        "ca": pbx.run_json(&["ca", "show"]).json(),
        "resolve": resolved,
    })
}

/// Handshake with `sni`: the hex SHA-256 of the presented leaf.
fn presented(addr: SocketAddr, sni: &str) -> String {
    let capture = AcceptAny::new();
    let config = client_config(capture.clone(), &[]);
    let name = ServerName::try_from(sni.to_string()).unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).unwrap();
    }
    sha256_hex(&capture.leaf().expect("a certificate"))
}

#[test]
fn a_backup_restored_into_a_fresh_data_dir_answers_everything_the_same() {
    let (a, _alpha) = populated();
    let before = answers(&a);
    let file = a.tmp.path().join("pbx.backup");
    let file_text = file.to_str().unwrap();
    let made = a.ok(&["backup", "--out", file_text]);
    assert_eq!(made["location"], file_text, "{made}");
    assert_eq!(made["entries"]["tenants"], 2, "{made}");
    assert_eq!(made["entries"]["certs"], 3, "{made}");
    assert_eq!(
        made["entries"]["keys"], 4,
        "three leaves and the local CA: {made}"
    );
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "it holds keys");
    assert_eq!(made["bytes"], meta.len());
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.starts_with("{\"format\":\"pbx-certd-backup\""),
        "{}",
        &text[..80]
    );
    // The store it came from is unchanged.
    assert_eq!(answers(&a), before);

    // A fresh data dir (never opened): restored, everything equal.
    let b = Pbx::new();
    let restored = b.ok(&["restore", "--in", file_text]);
    assert_eq!(restored["replaced"], false, "{restored}");
    assert_eq!(restored["entries"], made["entries"]);
    assert_eq!(answers(&b), before);

    // Again: B now holds certificates, keys and tenants.
    let e = b.err(&["restore", "--in", file_text]);
    e.expect("store-not-empty");
    assert!(e.message.contains("--replace"), "{}", e.message);
    assert_eq!(answers(&b), before);

    // A store with its own content, replaced on request only.
    let c = Pbx::new();
    c.tenant_add("gamma", &["pbx.gamma.test"]);
    c.err(&["restore", "--in", file_text])
        .expect("store-not-empty");
    assert_eq!(as_array(c.ok(&["tenant", "list"])).len(), 1);
    let replaced = c.ok(&["restore", "--in", file_text, "--replace"]);
    assert_eq!(replaced["replaced"], true, "{replaced}");
    assert_eq!(answers(&c), before);
    // Nothing of the replaced store is left.
    let tenants = c.ok(&["tenant", "list"]).to_string();
    assert!(!tenants.contains("gamma"), "{tenants}");
}

#[test]
fn a_damaged_foreign_or_newer_backup_is_refused_and_the_store_stays() {
    let (a, _alpha) = populated();
    let file = a.tmp.path().join("good.backup");
    a.ok(&["backup", "--out", file.to_str().unwrap()]);
    let good = std::fs::read_to_string(&file).unwrap();
    let doc: Value = serde_json::from_str(&good).unwrap();

    // One certificate record that is not a record (valid Base64, bad JSON).
    let mut bad_record = doc.clone();
    bad_record["trees"]["certs"][0][1] = json!("bm90IGEgcmVjb3Jk");
    // A key that is not a key.
    let mut bad_key = doc.clone();
    let keys = bad_key["trees"]["keys"].as_array_mut().unwrap();
    keys[0][1] = json!("AAAA");
    // Every setting garbled (the local CA record, the import sequence).
    let mut bad_settings = doc.clone();
    for entry in bad_settings["trees"]["settings"].as_array_mut().unwrap() {
        entry[1] = json!("AAAA");
    }
    let mut newer = doc.clone();
    newer["version"] = json!(7);
    let cases: Vec<(&str, String, &str)> = vec![
        ("empty", String::new(), "bad-backup"),
        ("truncated", good[..good.len() / 2].to_owned(), "bad-backup"),
        (
            "a PEM file",
            a.ok(&["ca", "show"])["pem"]
                .as_str()
                .unwrap_or("-----BEGIN")
                .to_owned(),
            "bad-backup",
        ),
        ("bad record", bad_record.to_string(), "bad-backup"),
        ("bad key", bad_key.to_string(), "bad-backup"),
        ("bad settings", bad_settings.to_string(), "bad-backup"),
        ("newer", newer.to_string(), "backup-too-new"),
    ];

    // The target: a store with its own content, restored over with
    // --replace, so only the file's faults can stop it.
    let b = Pbx::new();
    b.tenant_add("gamma", &["pbx.gamma.test"]);
    let kept = answers(&b);
    for (what, text, code) in cases {
        let path = b.file("damaged.backup", text);
        let e = b.err(&["restore", "--in", &path, "--replace"]);
        assert_eq!(e.code, code, "{what}: {}", e.out.describe());
        assert_eq!(answers(&b), kept, "{what} changed the store");
    }
    b.err(&["restore", "--in", "/nonexistent/pbx.backup"])
        .expect("backup-read-failed");
    // A backup cannot be written where no file can be.
    a.err(&["backup", "--out", "/proc/pbx-certd-none/x.backup"])
        .expect("backup-write-failed");
}

#[test]
fn backup_and_restore_go_through_the_running_daemon_and_are_served_at_once() {
    let (a, alpha) = populated();
    let daemon_a = a.serve(false);
    // The daemon holds the store: the CLI's backup goes through it.
    let file = a.tmp.path().join("live.backup");
    let file_text = file.to_str().unwrap();
    a.ok(&["backup", "--out", file_text]);
    let expected = answers(&a);
    assert_eq!(presented(daemon_a.https, "pbx.alpha.test"), alpha.id());
    drop(daemon_a);

    // A new appliance: its first start made a self-signed certificate.
    let b = Pbx::new();
    let daemon_b = b.serve(false);
    assert_ne!(presented(daemon_b.https, "pbx.alpha.test"), alpha.id());
    b.err(&["restore", "--in", file_text])
        .expect("store-not-empty");
    let r = b.ok(&["restore", "--in", file_text, "--replace"]);
    assert_eq!(r["replaced"], true);
    // Served by the running daemon at once (the restore's effect rebuilds
    // what TLS serves), and every answer is the backup's.
    assert_eq!(presented(daemon_b.https, "pbx.alpha.test"), alpha.id());
    assert_eq!(answers(&b), expected);
    assert!(daemon_b.is_running());
}

#[test]
fn store_copy_fills_another_data_dir_and_refuses_its_own() {
    let (a, _alpha) = populated();
    let before = answers(&a);
    let target = Pbx::new();
    let to = target.data.to_str().unwrap().to_owned();
    let copied = a.ok(&["store", "copy", "--to", &to]);
    assert_eq!(copied["location"], to.as_str());
    assert_eq!(copied["entries"]["tenants"], 2);
    assert_eq!(answers(&target), before);
    a.err(&["store", "copy", "--to", &to])
        .expect("store-not-empty");
    a.ok(&["store", "copy", "--to", &to, "--replace"]);
    assert_eq!(answers(&target), before);
    a.err(&["store", "copy", "--to", a.data.to_str().unwrap()])
        .expect("same-store");
    assert_eq!(answers(&a), before);
}
