//! Keys sealed at rest (issue 16) as an admin uses them: `store keygen`,
//! `--store-key-file` (flag, `PBX_CERTD_STORE_KEY_FILE`, a `serve
//! --config` line), `store rekey` and rotation, the CLI on a data dir with
//! and without the daemon, and a client's TLS handshake to see what a
//! sealed store serves.
//!
//! What must hold: with a key file no file under the data dir holds a
//! private key or a secret setting in the clear (and without one they are
//! there: the check can fail); a sealed store read without its key, or
//! with another key, is refused with `store-key-missing` naming the key
//! ID, a bad key file with `store-key-file`, and `serve` does not start;
//! `store rekey` seals a plaintext store and moves a store from an old key
//! to a new one, after which the new key alone reads it and the old alone
//! does not; a daemon started with the key serves the store's
//! certificates and runs `store rekey` for a CLI that has no key.
//! The etcd side is in tests/cluster.rs.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::accept_any::{client_config, AcceptAny};
use common::*;
use rustls::pki_types::ServerName;
use serde_json::{json, Value};

/// The TSIG secret of the DNS provider (Base64 of the bytes below).
const TSIG_B64: &str = "dHNpZy1zZWNyZXQtc2VhbGVkLWF0LXJlc3Q=";
const TSIG_BYTES: &[u8] = b"tsig-secret-sealed-at-rest";
/// The SMTP password of the alert settings.
const SMTP_PASSWORD: &str = "smtp-password-sealed-at-rest";

/// `store keygen --out FILES/NAME --json`: the file and its key ID.
fn keygen(pbx: &Pbx, name: &str) -> (String, String) {
    let path = pbx.files.join(name);
    let made = pbx.ok(&["store", "keygen", "--out", path.to_str().unwrap()]);
    (
        path.to_str().unwrap().to_owned(),
        made["key_id"].as_str().unwrap().to_owned(),
    )
}

/// `ARGS` with `--store-key-file KEY` when a key is given.
fn with_key<'a>(key: Option<&'a str>, args: &[&'a str]) -> Vec<&'a str> {
    let mut v = args.to_vec();
    if let Some(k) = key {
        v.extend(["--store-key-file", k]);
    }
    v
}

/// What an admin puts in a store: a tenant with a certificate and its
/// private key, a DNS provider with a TSIG secret, an SMTP password.
fn fill(pbx: &Pbx, key: Option<&str>) -> Issued {
    let pki = Pki::new();
    pbx.ok(&with_key(
        key,
        &["tenant", "add", "alpha", "--dns", "pbx.alpha.test"],
    ));
    let alpha = pki.leaf(leaf(&["pbx.alpha.test"]));
    pki.import(pbx, &alpha, &with_key(key, &[]));
    pbx.ok(&with_key(key, &rfc2136_provider("acme-key", TSIG_B64)));
    pbx.ok(&with_key(
        key,
        &[
            "alert",
            "set",
            "--smtp-server",
            "127.0.0.1:2525",
            "--smtp-user",
            "alice",
            "--smtp-password",
            SMTP_PASSWORD,
            "--from",
            "pbx@alpha.test",
        ],
    ));
    alpha
}

/// The files under `dir` whose bytes contain `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    found.push(path.display().to_string());
                }
            }
        }
    }
    found
}

/// Each secret of `fill` (by name) and the files of the data dir holding
/// it in any stored form.
fn secrets_in_data_dir(pbx: &Pbx, alpha: &Issued) -> Vec<(&'static str, Vec<String>)> {
    let key_pem = alpha.key_pem();
    let (_, pkcs8) = pem_blocks(&key_pem)
        .into_iter()
        .find(|(l, _)| l == "PRIVATE KEY")
        .unwrap();
    let forms: Vec<(&'static str, Vec<u8>)> = vec![
        ("private key (PKCS#8 DER)", pkcs8),
        ("private key (its scalar)", key_secret(&key_pem)),
        ("TSIG secret (Base64)", TSIG_B64.as_bytes().to_vec()),
        ("TSIG secret (bytes)", TSIG_BYTES.to_vec()),
        ("SMTP password", SMTP_PASSWORD.as_bytes().to_vec()),
    ];
    forms
        .into_iter()
        .map(|(what, bytes)| (what, files_holding(&pbx.data, &bytes)))
        .collect()
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

/// Every answer the sealed trees feed (keys through `served`).
fn answers(pbx: &Pbx, key: Option<&str>) -> Value {
    json!({
        "certs": pbx.ok(&with_key(key, &["certs"])),
        "served": pbx.ok(&with_key(key, &["served"])),
        "dns": pbx.ok(&with_key(key, &["dns", "list"])),
        "alert": pbx.ok(&with_key(key, &["alert", "show"])),
        "resolve": pbx.ok(&with_key(key, &["resolve", "pbx.alpha.test"])),
    })
}

#[test]
fn keygen_writes_32_random_bytes_mode_0600_once_and_names_the_key() {
    let pbx = Pbx::new();
    let (path, id) = keygen(&pbx, "store.key");
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len(), 32);
    assert_eq!(
        id,
        sha256_hex(&bytes)[..16],
        "the ID is SHA-256's first 8 bytes"
    );
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(!pbx.data.exists(), "keygen opens no store");
    // Never over an existing file.
    let e = pbx.err(&["store", "keygen", "--out", &path]);
    e.expect("store-key-file");
    assert!(e.message.contains("exists"), "{}", e.message);
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    // The text form names the key too; two keys differ.
    let other = pbx.files.join("other.key");
    let out = pbx.run(&["store", "keygen", "--out", other.to_str().unwrap()]);
    out.success();
    let other_id = sha256_hex(&std::fs::read(&other).unwrap())[..16].to_owned();
    assert!(out.stdout.contains(&other_id), "{}", out.describe());
    assert_ne!(other_id, id);
}

#[test]
fn with_a_key_file_no_secret_is_in_the_data_dir_and_without_one_they_are() {
    // Control first: the same store without a key file holds every secret
    // in the clear somewhere under its data dir (so the check can fail).
    let plain = Pbx::new();
    let alpha = fill(&plain, None);
    for (what, files) in secrets_in_data_dir(&plain, &alpha) {
        if what == "TSIG secret (bytes)" {
            continue; // stored as its Base64 text
        }
        assert!(!files.is_empty(), "{what} not found in the plaintext store");
    }

    let pbx = Pbx::new();
    let (key, id) = keygen(&pbx, "store.key");
    let alpha = fill(&pbx, Some(&key));
    for (what, files) in secrets_in_data_dir(&pbx, &alpha) {
        assert!(files.is_empty(), "{what} stored in the clear in {files:?}");
    }
    // Everything reads back with the key, as entered.
    let dns = pbx.ok(&with_key(Some(&key), &["dns", "list"]));
    assert_eq!(dns[0]["tsig_name"], "acme-key", "{dns}");
    assert_eq!(
        pbx.ok(&with_key(Some(&key), &["certs"]))[0]["id"],
        alpha.id()
    );
    let system = pbx.ok(&with_key(Some(&key), &["system", "show"]));
    assert_eq!(system["keys_sealed"], true, "{system}");
    assert_eq!(system["seal_key_id"], id.as_str(), "{system}");
    let text = pbx.run(&with_key(Some(&key), &["system", "show"]));
    assert!(
        text.success()
            .stdout
            .contains(&format!("keys sealed:   yes, with key {id}")),
        "{}",
        text.describe()
    );
    let system = plain.ok(&["system", "show"]);
    assert_eq!(system["keys_sealed"], false, "{system}");
    assert_eq!(system["seal_key_id"], Value::Null, "{system}");
}

#[test]
fn a_sealed_store_needs_its_key_by_name_and_serve_does_not_start_without_it() {
    let pbx = Pbx::new();
    let (key, id) = keygen(&pbx, "store.key");
    fill(&pbx, Some(&key));
    let before = answers(&pbx, Some(&key));
    // No key file.
    for args in [&["dns", "list"][..], &["served"], &["certs"]] {
        let e = pbx.err(args);
        e.expect("store-key-missing");
        assert!(e.message.contains(&id), "{}", e.message);
    }
    // Another key: the missing ID and the one given are named.
    let (other, other_id) = keygen(&pbx, "other.key");
    let e = pbx.err(&with_key(Some(&other), &["dns", "list"]));
    e.expect("store-key-missing");
    assert!(
        e.message.contains(&id) && e.message.contains(&other_id),
        "{}",
        e.message
    );
    // A key file of 31 bytes, or none where one is named.
    let short = pbx.file("short.key", &std::fs::read(&key).unwrap()[..31]);
    let short_err = pbx.err(&with_key(Some(&short), &["dns", "list"]));
    short_err.expect("store-key-file");
    assert!(
        short_err.message.contains("31 bytes"),
        "{}",
        short_err.message
    );
    // The environment's bad file: the same refusal (one reader).
    let mut cmd = pbx.command(&["dns", "list", "--json"]);
    cmd.env("PBX_CERTD_STORE_KEY_FILE", &short);
    assert_eq!(
        run_command(cmd, None).api_error().message,
        short_err.message
    );
    let gone = pbx.files.join("absent.key");
    pbx.err(&with_key(Some(gone.to_str().unwrap()), &["certs"]))
        .expect("store-key-file");
    // No message echoes the key (the file's bytes in hex).
    let key_hex = hex(&std::fs::read(&key).unwrap());
    for args in [&["dns", "list"][..], &with_key(Some(&other), &["certs"])] {
        let out = pbx.run_json(args);
        assert!(
            !out.stdout.contains(&key_hex[..16]) && !out.stderr.contains(&key_hex[..16]),
            "{}",
            out.describe()
        );
    }
    // The environment names the file as the flag does.
    let mut cmd = pbx.command(&["dns", "list", "--json"]);
    cmd.env("PBX_CERTD_STORE_KEY_FILE", &key);
    let out = run_command(cmd, None);
    out.success();
    assert_eq!(out.json(), before["dns"]);
    // Nothing was changed by the refusals.
    assert_eq!(answers(&pbx, Some(&key)), before);

    // `serve` without the key: refused by name, exit non-zero.
    let out = run_command(
        pbx.daemon()
            .env_remove("PBX_CERTD_STORE_KEY_FILE")
            .command(),
        None,
    );
    assert_ne!(out.status, 0, "{}", out.describe());
    assert!(
        out.stderr.contains("[store-key-missing]") && out.stderr.contains(&id),
        "{}",
        out.describe()
    );
    // With a bad key file in its config file: refused by name too.
    let config = pbx.file("bad.conf", format!("store-key-file = {short}\n"));
    let out = run_command(pbx.daemon().args(&["--config", &config]).command(), None);
    assert_ne!(out.status, 0, "{}", out.describe());
    assert!(
        out.stderr.contains("[store-key-file]") && out.stderr.contains(&short_err.message),
        "the config file's key file is read as the flag's:\n{}",
        out.describe()
    );
}

#[test]
fn rekey_seals_a_plaintext_store_and_moves_it_to_a_new_key() {
    let pbx = Pbx::new();
    fill(&pbx, None);
    let before = answers(&pbx, None);
    // Nothing to seal with.
    pbx.err(&["store", "rekey"]).expect("store-key-file");
    assert_eq!(pbx.ok(&["system", "show"])["keys_sealed"], false);

    let (old, old_id) = keygen(&pbx, "old.key");
    let r = pbx.ok(&with_key(Some(&old), &["store", "rekey"]));
    assert_eq!(r["key_id"], old_id.as_str(), "{r}");
    // The certificate's key, the DNS provider, the alert settings and the
    // store's own settings at least.
    assert!(r["resealed"].as_u64().unwrap() >= 4, "{r}");
    let system = pbx.ok(&with_key(Some(&old), &["system", "show"]));
    assert_eq!(system["keys_sealed"], true, "{system}");
    assert_eq!(answers(&pbx, Some(&old)), before);
    // Sealed now: without the key it is refused (it was read before).
    pbx.err(&["dns", "list"]).expect("store-key-missing");

    // Rotation: a new key first, the old one after it.
    let (new, new_id) = keygen(&pbx, "new.key");
    let both = pbx.file(
        "both.key",
        [std::fs::read(&new).unwrap(), std::fs::read(&old).unwrap()].concat(),
    );
    // Both keys read the store sealed with the old one.
    assert_eq!(answers(&pbx, Some(&both)), before);
    let r = pbx.ok(&with_key(Some(&both), &["store", "rekey"]));
    assert_eq!(r["key_id"], new_id.as_str(), "{r}");
    let text = pbx.run(&with_key(Some(&both), &["store", "rekey"]));
    assert!(
        text.success().stdout.contains(&new_id),
        "{}",
        text.describe()
    );
    // The new key alone reads everything; the old alone reads nothing.
    assert_eq!(answers(&pbx, Some(&new)), before);
    let e = pbx.err(&with_key(Some(&old), &["dns", "list"]));
    e.expect("store-key-missing");
    assert!(e.message.contains(&new_id), "{}", e.message);
    let system = pbx.ok(&with_key(Some(&new), &["system", "show"]));
    assert_eq!(system["seal_key_id"], new_id.as_str(), "{system}");
}

#[test]
fn a_daemon_with_the_key_serves_the_sealed_store_and_rekeys_for_the_cli() {
    let pbx = Pbx::new();
    let (key, id) = keygen(&pbx, "store.key");
    let alpha = fill(&pbx, Some(&key));
    let daemon = pbx.daemon().args(&["--store-key-file", &key]).start();
    assert_eq!(presented(daemon.https, "pbx.alpha.test"), alpha.id());
    // The CLI has no key: its commands run in the daemon, which has.
    let system = pbx.ok(&["system", "show"]);
    assert_eq!(system["seal_key_id"], id.as_str(), "{system}");
    let r = pbx.ok(&["store", "rekey"]);
    assert_eq!(r["key_id"], id.as_str(), "{r}");
    assert!(r["resealed"].as_u64().unwrap() >= 4, "{r}");
    assert!(!pbx.run_json(&["store", "rekey"]).stderr.contains("note:"));
    // A CLI given a new key while the daemon runs on the old: the daemon
    // seals with its own, and the CLI says so.
    let (new, new_id) = keygen(&pbx, "new.key");
    let out = pbx.run_json(&with_key(Some(&new), &["store", "rekey"]));
    out.success();
    assert_eq!(out.json()["key_id"], id.as_str(), "{}", out.describe());
    assert!(
        out.stderr.contains("note:") && out.stderr.contains(&new_id),
        "{}",
        out.describe()
    );
    // A certificate imported through the daemon is sealed and served.
    let pki = Pki::new();
    pbx.tenant_add("beta", &["pbx.beta.test"]);
    let beta = pki.leaf(leaf(&["pbx.beta.test"]));
    pki.import(&pbx, &beta, &[]);
    assert_eq!(presented(daemon.https, "pbx.beta.test"), beta.id());
    assert!(daemon.is_running());
    drop(daemon);
    let key_pem = beta.key_pem();
    let secret = key_secret(&key_pem);
    assert_eq!(files_holding(&pbx.data, &secret), Vec::<String>::new());

    // The key file from `serve --config` (`store-key-file = FILE`).
    let config = pbx.file("serve.conf", format!("store-key-file = {key}\n"));
    let daemon = pbx.daemon().args(&["--config", &config]).start();
    assert_eq!(presented(daemon.https, "pbx.beta.test"), beta.id());
    assert_eq!(presented(daemon.https, "pbx.alpha.test"), alpha.id());
}

#[test]
fn a_copy_of_a_sealed_store_is_sealed_and_a_restore_with_the_key_seals_a_backup() {
    let a = Pbx::new();
    let (key, id) = keygen(&a, "store.key");
    let alpha = fill(&a, Some(&key));
    let before = answers(&a, Some(&key));

    // `store copy` into another data dir: sealed with the same key.
    let c = Pbx::new();
    let to = c.data.to_str().unwrap().to_owned();
    a.ok(&with_key(Some(&key), &["store", "copy", "--to", &to]));
    let e = c.err(&["dns", "list"]);
    e.expect("store-key-missing");
    assert!(e.message.contains(&id), "{}", e.message);
    assert_eq!(answers(&c, Some(&key)), before);
    for (what, files) in secrets_in_data_dir(&c, &alpha) {
        assert!(files.is_empty(), "{what} copied in the clear to {files:?}");
    }

    // A backup holds the secrets in the clear (README says so) ...
    let file = a.tmp.path().join("sealed.backup");
    let file = file.to_str().unwrap();
    a.ok(&with_key(Some(&key), &["backup", "--out", file]));
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let settings: Vec<Vec<u8>> = doc["trees"]["settings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| base64_decode(entry[1].as_str().unwrap()))
        .collect();
    assert!(
        settings
            .iter()
            .any(|v| v.windows(TSIG_B64.len()).any(|w| w == TSIG_B64.as_bytes())),
        "the TSIG secret is in the backup as entered"
    );
    // ... and restored into a fresh data dir with the key, it is sealed
    // there (the way to a data dir without sled's older plain copies).
    let b = Pbx::new();
    b.ok(&with_key(Some(&key), &["restore", "--in", file]));
    assert_eq!(answers(&b, Some(&key)), before);
    b.err(&["certs"]).expect("store-key-missing");
    for (what, files) in secrets_in_data_dir(&b, &alpha) {
        assert!(
            files.is_empty(),
            "{what} restored in the clear to {files:?}"
        );
    }
}

/// Whether any value of the backup `file` (each Base64-decoded, as the
/// store held it) contains `needle`.
fn backup_holds(file: &str, needle: &[u8]) -> bool {
    use base64ct::{Base64, Encoding};
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    doc["trees"].as_object().unwrap().values().any(|entries| {
        entries.as_array().unwrap().iter().any(|e| {
            let value = Base64::decode_vec(e[1].as_str().unwrap()).unwrap();
            value.windows(needle.len()).any(|w| w == needle)
        })
    })
}

#[test]
fn a_sealed_backup_holds_no_secret_and_restores_only_with_its_key() {
    let a = Pbx::new();
    let (key, id) = keygen(&a, "store.key");
    let alpha = fill(&a, Some(&key));
    let key_pem = alpha.key_pem();
    let (_, pkcs8) = pem_blocks(&key_pem)
        .into_iter()
        .find(|(l, _)| l == "PRIVATE KEY")
        .unwrap();
    let secrets: [(&str, &[u8]); 3] = [
        ("private key", &pkcs8),
        ("TSIG secret", TSIG_B64.as_bytes()),
        ("SMTP password", SMTP_PASSWORD.as_bytes()),
    ];
    // A plain backup holds them (the control of the check below).
    let plain = a.files.join("plain.backup");
    let plain = plain.to_str().unwrap();
    a.ok(&with_key(Some(&key), &["backup", "--out", plain]));
    for (what, bytes) in secrets {
        assert!(
            backup_holds(plain, bytes),
            "the plain backup lacks the {what}"
        );
    }
    // Sealed: none of them, and the file names its key.
    let sealed = a.files.join("sealed.backup");
    let sealed = sealed.to_str().unwrap();
    let made = a.ok(&with_key(
        Some(&key),
        &["backup", "--out", sealed, "--sealed"],
    ));
    assert_eq!(made["sealed"], id.as_str(), "{made}");
    for (what, bytes) in secrets {
        assert!(
            !backup_holds(sealed, bytes),
            "the sealed backup holds the {what}"
        );
    }
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(sealed).unwrap()).unwrap();
    assert_eq!(doc["sealed"], id.as_str());
    // Sealing needs a key: a store without one refuses.
    let plain_store = Pbx::new();
    plain_store.tenant_add("beta", &["pbx.beta.test"]);
    let out = plain_store.files.join("x.backup");
    plain_store
        .err(&["backup", "--out", out.to_str().unwrap(), "--sealed"])
        .expect("backup-no-key");
    assert!(!out.exists());

    // Restored: without a key file refused by name, with another key
    // refused, with the key every answer equal.
    let b = Pbx::new();
    let e = b.err(&["restore", "--in", sealed]);
    e.expect("backup-no-key");
    assert!(e.message.contains(&id), "{}", e.message);
    let (other, _) = keygen(&b, "other.key");
    b.err(&with_key(Some(&other), &["restore", "--in", sealed]))
        .expect("store-key-missing");
    let restored = b.ok(&with_key(Some(&key), &["restore", "--in", sealed]));
    assert_eq!(restored["sealed"], id.as_str());
    assert_eq!(answers(&b, Some(&key)), answers(&a, Some(&key)));
    // And the restored store is sealed with the key as well.
    for (what, files) in secrets_in_data_dir(&b, &alpha) {
        assert!(files.is_empty(), "{what} in the clear in {files:?}");
    }
}
