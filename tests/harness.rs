//! Self-checks of the test helpers, so that a passing suite means something:
//! the no-key-echo check really catches a key, the PEM/Base64/time helpers
//! agree with openssl, the collision certificates really collide, a skip
//! for a missing peer is recorded (or fails the test when peers are
//! required), never a silent pass.

mod common;

use std::panic::catch_unwind;
use std::path::Path;
use std::process::Command;

use common::*;

fn leaks_detected(text: &str, key_pem: &str) -> bool {
    let (text, key) = (text.to_string(), key_pem.to_string());
    catch_unwind(move || assert_no_key_material(&text, &key)).is_err()
}

/// The key's PEM with its header lines removed (a leak without labels).
fn bare_base64(key_pem: &str) -> String {
    key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn no_key_echo_check_catches_keys_in_every_format() {
    let p256 = rcgen::KeyPair::generate().unwrap().serialize_pem();
    let ed = ed25519_key().serialize_pem();
    let sec1 = ec_sec1_with_params("prime256v1");
    let rsa1 = rsa_pkcs1(2048);
    let rsa8 = to_pkcs8(&rsa1);
    for key in [&p256, &ed, &sec1, &rsa1, &rsa8] {
        assert!(leaks_detected(key, key), "PEM not caught:\n{key}");
        assert!(
            leaks_detected(&bare_base64(key), key),
            "bare Base64 not caught:\n{key}"
        );
        let secret = key_secret(key);
        assert!(leaks_detected(&hex(&secret), key), "hex not caught");
        // Not fooled by a harmless text.
        assert!(!leaks_detected("certificate www.example.com imported", key));
    }
    // A SEC1 key leaked after re-encoding as PKCS#8 (other alignment).
    assert!(leaks_detected(&bare_base64(&to_pkcs8(&sec1)), &sec1));
    // The certificate of the key (its public half) is not a leak.
    let kp = rcgen::KeyPair::from_pem(&p256).unwrap();
    let cert = leaf(&["www.example.com"]).key(kp).self_signed();
    assert!(!leaks_detected(&cert.pem(), &p256));
}

#[test]
fn pem_and_base64_helpers_agree_with_openssl() {
    let c = leaf(&["www.example.com"]).self_signed();
    assert_eq!(pem_certs(&c.pem()), vec![c.der()]);
    assert_eq!(
        pem_encode("CERTIFICATE", &c.der()),
        c.pem().replace("\r\n", "\n")
    );
    let der = openssl_raw(&["x509", "-outform", "DER"], c.pem().as_bytes());
    assert_eq!(der, c.der());
    for n in 0..8 {
        let data: Vec<u8> = (0..n as u8).collect();
        assert_eq!(base64_decode(&base64_encode(&data)), data);
    }
}

#[test]
fn rfc3339_helper_matches_openssl_dates() {
    let na = 1_795_734_373; // 2026-11-26T23:06:13Z
    assert_eq!(rfc3339(na), "2026-11-26T23:06:13Z");
    assert!(is_rfc3339_utc(&rfc3339(now())));
    let c = leaf(&["www.example.com"])
        .valid_unix(na - DAY, na)
        .self_signed();
    let text = openssl_text(&["x509", "-noout", "-enddate"], Some(c.pem().as_bytes()));
    assert_eq!(text.trim(), "notAfter=Nov 26 23:06:13 2026 GMT");
}

#[test]
fn id_helper_matches_openssl_fingerprint() {
    let c = leaf(&["www.example.com"]).self_signed();
    let text = openssl_text(
        &["x509", "-noout", "-fingerprint", "-sha256"],
        Some(c.pem().as_bytes()),
    );
    let fp = text
        .trim()
        .rsplit('=')
        .next()
        .unwrap()
        .replace(':', "")
        .to_lowercase();
    assert_eq!(fp, c.id());
    assert!(is_id(&c.id()));
}

#[test]
fn collision_certificates_share_their_prefix() {
    for ca in [true, false] {
        let (a, b, prefix) = collision_pair(ca);
        assert_eq!(&a.id()[..8], prefix);
        assert_eq!(&b.id()[..8], prefix);
    }
}

#[test]
fn tn_auth_list_extension_is_present() {
    let pki = Pki::new();
    let c = pki.leaf(leaf(&["sip.example.com"]).tn_auth_list());
    let text = openssl_text(&["x509", "-noout", "-text"], Some(c.pem().as_bytes()));
    assert!(
        text.contains("1.3.6.1.5.5.7.1.26") || text.contains("TNAuthList"),
        "{text}"
    );
    let plain = pki.leaf(leaf(&["sip.example.com"]));
    let text = openssl_text(&["x509", "-noout", "-text"], Some(plain.pem().as_bytes()));
    assert!(!text.contains("1.3.6.1.5.5.7.1.26") && !text.contains("TNAuthList"));
}

#[test]
fn chains_made_by_the_helpers_verify_with_openssl() {
    let pki = Pki::new();
    let l = pki.leaf(leaf(&["www.example.com"]));
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root.pem");
    let inter = dir.path().join("inter.pem");
    std::fs::write(&root, pki.root.pem()).unwrap();
    std::fs::write(&inter, pki.inter.pem()).unwrap();
    let out = openssl_text(
        &[
            "verify",
            "-CAfile",
            path_str(&root),
            "-untrusted",
            path_str(&inter),
        ],
        Some(l.pem().as_bytes()),
    );
    assert!(out.contains("OK"), "{out}");
}

/// Not run by the suite (`#[ignore]`): the child run of
/// `skip_require_*` below. A peer that is there, the ACME peers (skipped
/// only with `PBX_CERTD_NO_PEERS=1`), and a peer that is missing.
#[test]
#[ignore = "a child run of skip_require_* (tests/harness.rs)"]
fn skip_probe() {
    assert!(common::skip::require("present-peer", None));
    let acme = common::skip::require_acme_peers();
    eprintln!("probe: ACME peers usable: {acme}");
    assert!(!common::skip::require(
        "probe-peer",
        Some("made missing by the harness test")
    ));
}

/// Runs `skip_probe` in a child of this test binary, with a skip list of
/// its own at `list`, `PBX_CERTD_REQUIRE_PEERS` as `require` and
/// `PBX_CERTD_NO_PEERS` as `no_peers` (whatever the suite runs with).
fn run_skip_probe(list: &Path, require: bool, no_peers: bool) -> Out {
    let mut cmd = Command::new(std::env::current_exe().expect("this test binary"));
    cmd.args(["skip_probe", "--exact", "--ignored", "--nocapture"])
        .env(common::skip::FILE_ENV, list)
        .env_remove(common::skip::REQUIRE_ENV)
        .env_remove(common::skip::NO_PEERS_ENV);
    if require {
        cmd.env(common::skip::REQUIRE_ENV, "1");
    }
    if no_peers {
        cmd.env(common::skip::NO_PEERS_ENV, "1");
    }
    run_command(cmd, None)
}

#[test]
fn skip_require_records_the_skip_and_the_test_goes_on_as_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("skipped-tests.txt");
    let line = "SKIPPED harness::skip_probe: probe-peer: made missing by the harness test";
    let out = run_skip_probe(&list, false, false);
    assert_eq!(out.status, 0, "{}", out.describe());
    assert!(out.stderr.contains(line), "{}", out.describe());
    assert!(
        out.stderr.contains("ACME peers usable: true"),
        "{}",
        out.describe()
    );
    let recorded = std::fs::read_to_string(&list)
        .unwrap_or_else(|e| panic!("no skip list written ({e})\n{}", out.describe()));
    assert_eq!(
        recorded,
        format!("{line}\n"),
        "only the missing peer is listed"
    );

    // PBX_CERTD_NO_PEERS=1: the ACME peers are a recorded skip too; the
    // list is appended to, not replaced.
    let out = run_skip_probe(&list, false, true);
    assert_eq!(out.status, 0, "{}", out.describe());
    assert!(
        out.stderr.contains("ACME peers usable: false"),
        "{}",
        out.describe()
    );
    let recorded = std::fs::read_to_string(&list).unwrap();
    let lines: Vec<&str> = recorded.lines().collect();
    assert_eq!(lines.len(), 3, "{recorded}");
    assert_eq!(lines[0], line);
    assert!(
        lines[1].starts_with("SKIPPED harness::skip_probe: ACME peers")
            && lines[1].contains("PBX_CERTD_NO_PEERS=1"),
        "{recorded}"
    );
    assert_eq!(lines[2], line);
}

#[test]
fn skip_require_fails_the_test_when_peers_are_required() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("skipped-tests.txt");
    for no_peers in [false, true] {
        let out = run_skip_probe(&list, true, no_peers);
        assert_ne!(
            out.status,
            0,
            "a missing peer must fail the test with PBX_CERTD_REQUIRE_PEERS=1\n{}",
            out.describe()
        );
        let (peer, why) = if no_peers {
            ("ACME peers", "PBX_CERTD_NO_PEERS=1")
        } else {
            ("probe-peer", "made missing by the harness test")
        };
        let text = format!("{}{}", out.stdout, out.stderr);
        assert!(
            text.contains("panicked")
                && text.contains(&format!("SKIPPED harness::skip_probe: {peer}"))
                && text.contains(why)
                && text.contains("PBX_CERTD_REQUIRE_PEERS=1: a missing peer fails the test"),
            "{}",
            out.describe()
        );
        assert!(!list.exists(), "a failed test is not listed as skipped");
    }
}
