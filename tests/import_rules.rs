//! Import rules 1–7 of the spec ("Import rules"): every error code, every
//! warning, rule-order precedence, accepted formats, kinds, update-without-key,
//! and a failed import leaving the store unchanged.

mod common;

use common::*;
use serde_json::Value;

const MIB: usize = 1024 * 1024;

/// Pads `pem` with text lines in front (allowed by rule 1) to exactly `len` bytes.
fn pad_to(pem: &str, len: usize) -> String {
    assert!(pem.len() + 2 <= len);
    let mut filler = String::new();
    let line = "Bag Attributes: padding text before the PEM blocks, ignored\n";
    while filler.len() + line.len() + pem.len() < len {
        filler.push_str(line);
    }
    let rest = len - filler.len() - pem.len();
    filler.push_str(&"x".repeat(rest - 1));
    filler.push('\n');
    let out = filler + pem;
    assert_eq!(out.len(), len);
    out
}

/// A valid server leaf signed by a fresh intermediate.
fn server_leaf() -> (Pki, Issued) {
    let pki = Pki::new();
    let leaf = pki.leaf(leaf(&["www.example.com"]));
    (pki, leaf)
}

// ----------------------------------------------------------------------------
// Rule 1: size and PEM
// ----------------------------------------------------------------------------

#[test]
fn too_large_cert_box() {
    let pbx = Pbx::new();
    let (pki, l) = server_leaf();
    let big = pad_to(&pki.chain_pem(&l), MIB + 1);
    pbx.import_err(&big, Some(&l.key_pem()), &[])
        .expect("too-large");
    assert!(pbx.certs().is_empty());
}

#[test]
fn cert_box_of_exactly_one_mib_is_accepted() {
    let pbx = Pbx::new();
    let (pki, l) = server_leaf();
    let exact = pad_to(&pki.chain_pem(&l), MIB);
    let v = pbx.import_ok(&exact, Some(&l.key_pem()), &[]);
    assert_eq!(v["id"], l.id());
}

#[test]
fn too_large_key_box() {
    let pbx = Pbx::new();
    let (pki, l) = server_leaf();
    let big_key = pad_to(&l.key_pem(), MIB + 1);
    pbx.import_err(pki.chain_pem(&l), Some(&big_key), &[])
        .expect("too-large");
}

#[test]
fn too_large_on_stdin() {
    let pbx = Pbx::new();
    let (pki, l) = server_leaf();
    let key = pbx.file("key.pem", l.key_pem());
    let big = pad_to(&pki.chain_pem(&l), MIB + 4096);
    pbx.run_stdin(
        &["import", "--cert", "-", "--key", &key, "--json"],
        big.as_bytes(),
    )
    .api_error()
    .expect("too-large");
}

#[test]
fn bad_pem_begin_without_end() {
    let pbx = Pbx::new();
    let (pki, l) = server_leaf();
    let pem = pki.chain_pem(&l);
    let cut = pem.rfind("-----END CERTIFICATE-----").unwrap();
    pbx.import_err(&pem[..cut], Some(&l.key_pem()), &[])
        .expect("bad-pem");
}

#[test]
fn bad_pem_base64_that_does_not_decode() {
    let pbx = Pbx::new();
    let (pki, l) = server_leaf();
    let pem = pki.chain_pem(&l);
    let mut lines: Vec<String> = pem.lines().map(str::to_string).collect();
    lines[2] = "!!!!****not base64 at all****!!!!".to_string();
    let broken = lines.join("\n") + "\n";
    pbx.import_err(&broken, Some(&l.key_pem()), &[])
        .expect("bad-pem");
}

#[test]
fn bad_certificate_when_der_is_not_x509() {
    let pbx = Pbx::new();
    let (_, l) = server_leaf();
    let garbage = pem_encode(
        "CERTIFICATE",
        b"this decodes as Base64 but it is not an X.509 certificate at all",
    );
    pbx.import_err(&garbage, Some(&l.key_pem()), &[])
        .expect("bad-certificate");
    // Also when a good certificate comes first.
    let mixed = format!("{}{}", l.pem(), garbage);
    pbx.import_err(&mixed, Some(&l.key_pem()), &[])
        .expect("bad-certificate");
}

#[test]
fn no_certificate_in_box() {
    let pbx = Pbx::new();
    let (_, l) = server_leaf();
    pbx.import_err(
        "just some text, no PEM block here\n",
        Some(&l.key_pem()),
        &[],
    )
    .expect("no-certificate");
    // A box with only a key block: named as such (the key went into the
    // wrong box).
    let e = pbx.import_err(l.key_pem(), Some(&l.key_pem()), &[]);
    e.expect("only-a-key");
    assert!(e.message.contains("key box"), "{}", e.message);
    // An empty box.
    pbx.import_err("", Some(&l.key_pem()), &[])
        .expect("no-certificate");
}

#[test]
fn crlf_and_bag_attributes_are_accepted() {
    let pbx = Pbx::new();
    let (pki, l) = server_leaf();
    let cert_box = format!(
        "Bag Attributes\n    localKeyID: 01 02 03 04\n    friendlyName: www.example.com\n\
         subject=CN = www.example.com\nissuer=CN = {}\n{}\n\
         Bag Attributes: <No Attributes>\nsubject=CN = intermediate\n\n{}\n\n",
        "Test Intermediate",
        l.pem(),
        pki.inter.pem()
    );
    let key_box = format!(
        "Bag Attributes\n    localKeyID: 01 02 03 04\nKey Attributes: <No Attributes>\n{}",
        l.key_pem()
    );
    let v = pbx.import_ok(crlf(&cert_box), Some(&crlf(&key_box)), &[]);
    assert_eq!(v["id"], l.id());
    assert_no_warning(&v, "chain-reordered");
}

// ----------------------------------------------------------------------------
// Rule 2: keys
// ----------------------------------------------------------------------------

fn expect_key_error(key_pem: &str, code: &str) -> ApiError {
    let pbx = Pbx::new();
    let (pki, l) = server_leaf();
    let e = pbx.import_err(pki.chain_pem(&l), Some(key_pem), &[]);
    e.expect(code);
    assert!(pbx.certs().is_empty());
    e
}

fn assert_says_encrypted(e: &ApiError) {
    let m = e.message.to_lowercase();
    assert!(
        m.contains("crypt") || m.contains("pass"),
        "the encrypted-key message must say the key is encrypted / cannot be decrypted: {}",
        e.message
    );
}

#[test]
fn encrypted_pkcs8_key() {
    let key = openssl_text(
        &[
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-passout",
            "pass:x",
        ],
        Some(KeyPairPem::p256().as_bytes()),
    );
    assert!(key.contains("ENCRYPTED PRIVATE KEY"));
    let e = expect_key_error(&key, "encrypted-key");
    assert_says_encrypted(&e);
}

#[test]
fn encrypted_pkcs1_proc_type_key() {
    let key = openssl_text(
        &[
            "genrsa",
            "-aes128",
            "-traditional",
            "-passout",
            "pass:x",
            "2048",
        ],
        None,
    );
    assert!(key.contains("Proc-Type: 4,ENCRYPTED"));
    let e = expect_key_error(&key, "encrypted-key");
    assert_says_encrypted(&e);
}

#[test]
fn encrypted_sec1_proc_type_key() {
    let key = openssl_text(
        &["ec", "-aes128", "-passout", "pass:x"],
        Some(ec_sec1("prime256v1").as_bytes()),
    );
    assert!(key.contains("Proc-Type: 4,ENCRYPTED") && key.contains("EC PRIVATE KEY"));
    expect_key_error(&key, "encrypted-key");
}

#[test]
fn unsupported_key_ed448() {
    let key = openssl_text(&["genpkey", "-algorithm", "ED448"], None);
    expect_key_error(&key, "unsupported-key");
}

#[test]
fn unsupported_key_x25519() {
    let key = openssl_text(&["genpkey", "-algorithm", "X25519"], None);
    expect_key_error(&key, "unsupported-key");
}

#[test]
fn unsupported_key_p521_sec1_and_pkcs8() {
    let sec1 = ec_sec1("secp521r1");
    expect_key_error(&sec1, "unsupported-key");
    expect_key_error(&to_pkcs8(&sec1), "unsupported-key");
}

#[test]
fn bad_key_box_without_key_block() {
    expect_key_error("no key in here\n", "bad-key");
    let (_, other) = server_leaf();
    expect_key_error(&other.pem(), "bad-key");
}

#[test]
fn bad_key_undecodable() {
    let junk = b"definitely not a DER private key structure, just bytes";
    expect_key_error(&pem_encode("PRIVATE KEY", junk), "bad-key");
    expect_key_error(&pem_encode("RSA PRIVATE KEY", junk), "bad-key");
    expect_key_error(&pem_encode("EC PRIVATE KEY", junk), "bad-key");
}

/// A leaf certifying an RSA key of `bits` (from openssl), signed by a fresh
/// intermediate; returns (box, key PEM as given).
fn rsa_leaf(key_pem: &str) -> (String, rcgen::Certificate) {
    let pki = Pki::new();
    let cert = leaf(&["rsa.example.com"]).signed_by_public(&rsa_public(key_pem), &pki.inter);
    (format!("{}{}", cert.pem(), pki.inter.pem()), cert)
}

#[test]
fn weak_key_rsa1024_pkcs1() {
    let pbx = Pbx::new();
    let key = rsa_pkcs1(1024);
    let (cert_box, _) = rsa_leaf(&key);
    let e = pbx.import_err(&cert_box, Some(&key), &[]);
    e.expect("weak-key");
    assert_no_key_material(&format!("{}{}", e.out.stdout, e.out.stderr), &key);
}

#[test]
fn weak_key_rsa1024_pkcs8() {
    let pbx = Pbx::new();
    let key = rsa_pkcs8(1024);
    assert!(key.contains("BEGIN PRIVATE KEY"));
    let (cert_box, _) = rsa_leaf(&key);
    pbx.import_err(&cert_box, Some(&key), &[])
        .expect("weak-key");
}

#[test]
fn rsa2048_pkcs1_key_is_accepted() {
    let pbx = Pbx::new();
    let key = rsa_pkcs1(2048);
    assert!(key.contains("BEGIN RSA PRIVATE KEY"));
    let (cert_box, cert) = rsa_leaf(&key);
    let v = pbx.import_ok(&cert_box, Some(&key), &[]);
    assert_eq!(v["id"], sha256_hex(cert.der()));
    assert_eq!(
        by_id(&pbx.certs(), &sha256_hex(cert.der()))["key_type"],
        "rsa2048"
    );
}

#[test]
fn rsa2048_pkcs8_key_is_accepted() {
    let pbx = Pbx::new();
    let key = rsa_pkcs8(2048);
    let (cert_box, cert) = rsa_leaf(&key);
    pbx.import_ok(&cert_box, Some(&key), &[]);
    assert_eq!(
        by_id(&pbx.certs(), &sha256_hex(cert.der()))["key_type"],
        "rsa2048"
    );
}

/// Imports a leaf certifying `kp`, giving `key_text` as the key box.
fn import_with_key(kp: rcgen::KeyPair, key_text: &str, key_type: &str) {
    let pbx = Pbx::new();
    let pki = Pki::new();
    let l = pki.leaf(leaf(&["k.example.com"]).key(kp));
    let v = pbx.import_ok(pki.chain_pem(&l), Some(key_text), &[]);
    assert_eq!(v["id"], l.id());
    assert_eq!(by_id(&pbx.certs(), &l.id())["key_type"], key_type);
}

/// PEM helpers for rcgen-made keys.
struct KeyPairPem;
impl KeyPairPem {
    fn p256() -> String {
        rcgen::KeyPair::generate().unwrap().serialize_pem()
    }
}

#[test]
fn p256_pkcs8_key_is_accepted() {
    let kp = rcgen::KeyPair::generate().unwrap();
    let pem = kp.serialize_pem();
    assert!(pem.contains("BEGIN PRIVATE KEY"));
    import_with_key(kp, &pem, "p256");
}

#[test]
fn p384_pkcs8_key_is_accepted() {
    let kp = p384_key();
    let pem = kp.serialize_pem();
    import_with_key(kp, &pem, "p384");
}

#[test]
fn ed25519_pkcs8_key_is_accepted() {
    let kp = ed25519_key();
    let pem = kp.serialize_pem();
    import_with_key(kp, &pem, "ed25519");
}

#[test]
fn sec1_key_with_ec_parameters_block_is_accepted() {
    let sec1 = ec_sec1_with_params("prime256v1");
    assert!(sec1.contains("BEGIN EC PARAMETERS") && sec1.contains("BEGIN EC PRIVATE KEY"));
    import_with_key(keypair_of(&sec1), &sec1, "p256");
}

#[test]
fn sec1_p384_key_is_accepted() {
    let sec1 = ec_sec1("secp384r1");
    import_with_key(keypair_of(&sec1), &sec1, "p384");
}

// ----------------------------------------------------------------------------
// Rule 3: key and leaf
// ----------------------------------------------------------------------------

#[test]
fn key_mismatch() {
    let pbx = Pbx::new();
    let (pki, l) = server_leaf();
    let other = KeyPairPem::p256();
    let e = pbx.import_err(pki.chain_pem(&l), Some(&other), &[]);
    e.expect("key-mismatch");
    assert_no_key_material(&format!("{}{}", e.out.stdout, e.out.stderr), &other);
    // Human mode: no key material on stderr/stdout either.
    let cert = pbx.file("c.pem", pki.chain_pem(&l));
    let key = pbx.file("k.pem", &other);
    let out = pbx.run(&["import", "--cert", &cert, "--key", &key]);
    assert_eq!(out.status, 1, "{}", out.describe());
    assert_no_key_material(&format!("{}{}", out.stdout, out.stderr), &other);
    assert!(pbx.certs().is_empty());
}

#[test]
fn key_mismatch_rsa_key_for_ec_leaf() {
    let pbx = Pbx::new();
    let (pki, l) = server_leaf();
    pbx.import_err(pki.chain_pem(&l), Some(&rsa_pkcs1(2048)), &[])
        .expect("key-mismatch");
}

// ----------------------------------------------------------------------------
// Rule 4: chain
// ----------------------------------------------------------------------------

#[test]
fn plain_leaf_first_import_has_no_warnings() {
    let pbx = Pbx::new();
    let (pki, l) = server_leaf();
    let v = pki.import(&pbx, &l, &[]);
    assert_eq!(warning_codes(&v), Vec::<String>::new());
    assert_eq!(v["id"], l.id());
}

// Issue 17: a certificate off the path is dropped with `not-on-path`
// (it was refused with `bad-chain` before: clients ignore it).
#[test]
fn unrelated_root_in_box_is_dropped_with_warning() {
    let pbx = Pbx::new();
    let (pki, l) = server_leaf();
    let stranger = root("Unrelated Root CA");
    let cert_box = format!("{}{}{}", l.pem(), pki.inter.pem(), stranger.pem());
    let v = pbx.import_ok(&cert_box, Some(&l.key_pem()), &[]);
    assert_warning(&v, "not-on-path");
    let shown = pbx.run(&["cert", "show", &l.id()]);
    shown.success();
    assert_eq!(pem_certs(&shown.stdout), vec![l.der(), pki.inter.der()]);
}

#[test]
fn unrelated_intermediate_in_box_is_dropped_with_warning() {
    let pbx = Pbx::new();
    let (pki, l) = server_leaf();
    let other = Pki::new();
    let cert_box = format!("{}{}{}", l.pem(), pki.inter.pem(), other.inter.pem());
    let v = pbx.import_ok(&cert_box, Some(&l.key_pem()), &[]);
    assert_warning(&v, "not-on-path");
    let shown = pbx.run(&["cert", "show", &l.id()]);
    shown.success();
    assert_eq!(pem_certs(&shown.stdout), vec![l.der(), pki.inter.der()]);
}

#[test]
fn bad_chain_signature_does_not_verify() {
    let pbx = Pbx::new();
    let pki = Pki::new();
    let l = pki.leaf(leaf(&["www.example.com"]));
    // Same subject name as the real intermediate, different key: the name
    // chain links up but the leaf's signature does not verify.
    let cn = pki.inter.cert.params().distinguished_name.clone();
    let mut impostor = ca("placeholder");
    impostor.params.distinguished_name = cn;
    let impostor = impostor.signed_by(&pki.root);
    let cert_box = format!("{}{}", l.pem(), impostor.pem());
    pbx.import_err(&cert_box, Some(&l.key_pem()), &[])
        .expect("bad-chain");
}

#[test]
fn incomplete_chain_names_missing_intermediate() {
    let pbx = Pbx::new();
    let t = tag();
    let r = root(&format!("Missing Root {t}"));
    let inter = intermediate(&format!("Missing Intermediate {t}"), &r);
    let l = leaf(&["www.example.com"]).signed_by(&inter);
    let e = pbx.import_err(l.pem(), Some(&l.key_pem()), &[]);
    e.expect("incomplete-chain");
    assert!(
        e.message.contains(&format!("Missing Intermediate {t}")),
        "the message must name the missing issuer: {}",
        e.message
    );
    assert!(
        e.message.to_lowercase().contains("android"),
        "the message must explain that Android clients fail without it: {}",
        e.message
    );
}

#[test]
fn incomplete_chain_leaf_signed_by_unknown_root() {
    let pbx = Pbx::new();
    let t = tag();
    let r = root(&format!("Private Root {t}"));
    let l = leaf(&["www.example.com"]).signed_by(&r);
    let e = pbx.import_err(l.pem(), Some(&l.key_pem()), &[]);
    e.expect("incomplete-chain");
    assert!(
        e.message.contains(&format!("Private Root {t}")),
        "{}",
        e.message
    );
}

#[test]
fn complete_when_issued_by_a_root_in_the_root_ca_list() {
    let pbx = Pbx::new();
    let r = root(&format!("Listed Root {}", tag()));
    let l = leaf(&["www.example.com"]).signed_by(&r);
    // Before the root is listed: incomplete.
    pbx.import_err(l.pem(), Some(&l.key_pem()), &[])
        .expect("incomplete-chain");
    let v = pbx.import_ok(r.pem(), None, &[]);
    assert_eq!(v["kind"], "root");
    let v = pbx.import_ok(l.pem(), Some(&l.key_pem()), &[]);
    assert_eq!(v["id"], l.id());
    assert_no_warning(&v, "root-included");
}

#[test]
fn complete_via_listed_root_through_intermediate() {
    let pbx = Pbx::new();
    let pki = Pki::new();
    pbx.import_ok(pki.root.pem(), None, &["--kind", "root"]);
    let l = pki.leaf(leaf(&["www.example.com"]));
    pki.import(&pbx, &l, &[]);
    assert_eq!(pbx.cert_ids(), vec![l.id()]);
}

#[test]
fn complete_when_top_is_an_intermediate_ca() {
    let pbx = Pbx::new();
    let pki = Pki::new();
    let l = pki.leaf(leaf(&["www.example.com"]));
    let v = pki.import(&pbx, &l, &[]);
    assert_eq!(v["id"], l.id());
    // Stored chain: leaf then intermediate.
    let shown = pbx.run(&["cert", "show", &l.id()]);
    shown.success();
    assert_eq!(pem_certs(&shown.stdout), vec![l.der(), pki.inter.der()]);
}

#[test]
fn root_included_is_dropped_with_warning() {
    let pbx = Pbx::new();
    let pki = Pki::new();
    let l = pki.leaf(leaf(&["www.example.com"]));
    let cert_box = format!("{}{}{}", l.pem(), pki.inter.pem(), pki.root.pem());
    let v = pbx.import_ok(&cert_box, Some(&l.key_pem()), &[]);
    assert_warning(&v, "root-included");
    assert_no_warning(&v, "chain-reordered");
    let shown = pbx.run(&["cert", "show", &l.id()]);
    shown.success();
    assert_eq!(pem_certs(&shown.stdout), vec![l.der(), pki.inter.der()]);
    // The root was not added to the Root CA list either.
    assert!(!pbx.root_ids().contains(&pki.root.id()));
}

#[test]
fn leaf_directly_under_included_root_is_complete() {
    let pbx = Pbx::new();
    let r = root(&format!("Direct Root {}", tag()));
    let l = leaf(&["www.example.com"]).signed_by(&r);
    let v = pbx.import_ok(format!("{}{}", l.pem(), r.pem()), Some(&l.key_pem()), &[]);
    assert_warning(&v, "root-included");
    let shown = pbx.run(&["cert", "show", &l.id()]);
    shown.success();
    assert_eq!(pem_certs(&shown.stdout), vec![l.der()]);
}

#[test]
fn self_signed_leaf_is_accepted() {
    let pbx = Pbx::new();
    let l = leaf(&["selfsigned.example.com"]).self_signed();
    let v = pbx.import_ok(l.pem(), Some(&l.key_pem()), &[]);
    assert_eq!(v["id"], l.id());
    assert_eq!(v["kind"], "server");
}

#[test]
fn chain_reordered_warning_and_fixed_order() {
    let pbx = Pbx::new();
    let pki = Pki::new();
    let l = pki.leaf(leaf(&["www.example.com"]));
    let cert_box = format!("{}{}", pki.inter.pem(), l.pem());
    let v = pbx.import_ok(&cert_box, Some(&l.key_pem()), &[]);
    assert_warning(&v, "chain-reordered");
    assert_eq!(v["id"], l.id());
    let shown = pbx.run(&["cert", "show", &l.id()]);
    shown.success();
    assert_eq!(pem_certs(&shown.stdout), vec![l.der(), pki.inter.der()]);
}

#[test]
fn chain_reordered_with_two_intermediates_and_root() {
    let pbx = Pbx::new();
    let pki = Pki::new();
    let inter2 = intermediate(&format!("Second Intermediate {}", tag()), &pki.inter);
    let l = leaf(&["www.example.com"]).signed_by(&inter2);
    // root, inter, leaf, inter2: every position wrong.
    let cert_box = format!(
        "{}{}{}{}",
        pki.root.pem(),
        pki.inter.pem(),
        l.pem(),
        inter2.pem()
    );
    let v = pbx.import_ok(&cert_box, Some(&l.key_pem()), &[]);
    assert_warning(&v, "chain-reordered");
    assert_warning(&v, "root-included");
    let shown = pbx.run(&["cert", "show", &l.id()]);
    shown.success();
    assert_eq!(
        pem_certs(&shown.stdout),
        vec![l.der(), inter2.der(), pki.inter.der()]
    );
}

#[test]
fn godaddy_style_crt_plus_ca_bundle_on_stdin() {
    let pbx = Pbx::new();
    let t = tag();
    // Root G1 (self-signed), root G2 cross-signed by G1, intermediate under G2.
    let g1 = root(&format!("Go Test Class 2 Root {t}"));
    let g2_cross = intermediate(&format!("Go Test Root G2 {t}"), &g1);
    let inter = intermediate(&format!("Go Test Secure CA G2 {t}"), &g2_cross);
    let l = leaf(&["www.example.com", "example.com"]).signed_by(&inter);
    let crt = l.pem();
    // The bundle as downloaded: CRLF line ends, intermediate first.
    let bundle = crlf(&format!("{}{}{}", inter.pem(), g2_cross.pem(), g1.pem()));
    let combined = format!("{crt}{bundle}");
    let key = pbx.file("www.example.com.key", l.key_pem());
    let out = pbx.run_stdin(
        &["import", "--cert", "-", "--key", &key, "--json"],
        combined.as_bytes(),
    );
    out.success();
    let v = out.json();
    assert_eq!(v["id"], l.id());
    assert_warning(&v, "root-included");
    assert_no_warning(&v, "chain-reordered");
    let shown = pbx.run(&["cert", "show", &l.id()]);
    shown.success();
    assert_eq!(
        pem_certs(&shown.stdout),
        vec![l.der(), inter.der(), g2_cross.der()]
    );
}

#[test]
fn key_on_stdin() {
    let pbx = Pbx::new();
    let (pki, l) = server_leaf();
    let cert = pbx.file("c.pem", pki.chain_pem(&l));
    let out = pbx.run_stdin(
        &["import", "--cert", &cert, "--key", "-", "--json"],
        l.key_pem().as_bytes(),
    );
    out.success();
    assert_eq!(out.json()["id"], l.id());
}

// ----------------------------------------------------------------------------
// Rule 5: validity
// ----------------------------------------------------------------------------

#[test]
fn expired_leaf() {
    let pbx = Pbx::new();
    let pki = Pki::new();
    let l = pki.leaf(leaf(&["www.example.com"]).valid_days(-100, -1));
    pbx.import_err(pki.chain_pem(&l), Some(&l.key_pem()), &[])
        .expect("expired");
    assert!(pbx.certs().is_empty());
}

#[test]
fn not_yet_valid_warning() {
    let pbx = Pbx::new();
    let pki = Pki::new();
    let l = pki.leaf(leaf(&["www.example.com"]).valid_days(10, 100));
    let v = pki.import(&pbx, &l, &[]);
    assert_warning(&v, "not-yet-valid");
    assert_no_warning(&v, "expiring-soon");
    assert_eq!(pbx.cert_ids(), vec![l.id()]);
}

#[test]
fn expiring_soon_warning() {
    let pbx = Pbx::new();
    let pki = Pki::new();
    let l = pki.leaf(leaf(&["www.example.com"]).valid_days(-30, 5));
    let v = pki.import(&pbx, &l, &[]);
    assert_warning(&v, "expiring-soon");
    assert_no_warning(&v, "not-yet-valid");
}

#[test]
fn thirty_days_left_is_not_expiring_soon() {
    let pbx = Pbx::new();
    let pki = Pki::new();
    let l = pki.leaf(leaf(&["www.example.com"]).valid_days(-30, 30));
    let v = pki.import(&pbx, &l, &[]);
    assert_eq!(warning_codes(&v), Vec::<String>::new());
}

#[test]
fn expired_root_is_rejected() {
    let pbx = Pbx::new();
    let r = ca(&format!("Expired Root {}", tag()))
        .valid_days(-3650, -1)
        .self_signed();
    pbx.import_err(r.pem(), None, &[]).expect("expired");
    pbx.import_err(r.pem(), None, &["--kind", "root"])
        .expect("expired");
    assert!(!pbx.root_ids().contains(&r.id()));
}

// ----------------------------------------------------------------------------
// Rule 6: kind
// ----------------------------------------------------------------------------

#[test]
fn domain_kind_assigned_to_the_single_matching_tenant() {
    let pbx = Pbx::new();
    pbx.tenant_add("acme", &["pbx.acme.example.com"]);
    pbx.tenant_add("globex", &["pbx.globex.example.com"]);
    let pki = Pki::new();
    let na = now() + 60 * DAY;
    let l = pki
        .leaf(leaf(&["PBX.Acme.Example.com", "unowned.example.net"]).valid_unix(now() - DAY, na));
    let v = pki.import(&pbx, &l, &[]);
    assert_eq!(v["kind"], "domain");
    assert_eq!(v["tenant"], "acme");
    assert_eq!(v["id"], l.id());
    assert_eq!(v["not_after"], rfc3339(na));
    assert_eq!(
        str_list(&v, "names"),
        vec!["pbx.acme.example.com", "unowned.example.net"]
    );
    let c = by_id(&pbx.certs(), &l.id()).clone();
    assert_eq!(c["kind"], "domain");
    assert_eq!(c["tenant"], "acme");
}

#[test]
fn wildcard_is_server_even_when_a_tenant_matches() {
    let pbx = Pbx::new();
    pbx.tenant_add("acme", &["acme.example.com", "pbx.acme.example.com"]);
    let pki = Pki::new();
    let l = pki.leaf(leaf(&["*.acme.example.com", "acme.example.com"]));
    let v = pki.import(&pbx, &l, &[]);
    assert_eq!(v["kind"], "server");
    assert_eq!(v["tenant"], Value::Null);
}

#[test]
fn names_of_no_tenant_make_a_server_cert() {
    let pbx = Pbx::new();
    pbx.tenant_add("acme", &["pbx.acme.example.com"]);
    let pki = Pki::new();
    let l = pki.leaf(leaf(&["sip.provider.example.net"]));
    let v = pki.import(&pbx, &l, &[]);
    assert_eq!(v["kind"], "server");
    assert_eq!(v["tenant"], Value::Null);
}

#[test]
fn names_of_two_tenants_make_a_server_cert() {
    let pbx = Pbx::new();
    pbx.tenant_add("acme", &["pbx.acme.example.com"]);
    pbx.tenant_add("globex", &["pbx.globex.example.com"]);
    let pki = Pki::new();
    let l = pki.leaf(leaf(&["pbx.acme.example.com", "pbx.globex.example.com"]));
    let v = pki.import(&pbx, &l, &[]);
    assert_eq!(v["kind"], "server");
    assert_eq!(v["tenant"], Value::Null);
}

#[test]
fn tn_auth_list_makes_stir_shaken_even_with_tenant_names() {
    let pbx = Pbx::new();
    pbx.tenant_add("acme", &["sip.acme.example.com"]);
    let pki = Pki::new();
    let l = pki.leaf(leaf(&["sip.acme.example.com"]).tn_auth_list());
    let v = pki.import(&pbx, &l, &[]);
    assert_eq!(v["kind"], "stir-shaken");
    assert_eq!(by_id(&pbx.certs(), &l.id())["kind"], "stir-shaken");
    // Explicit kind works too.
    let l2 = pki.leaf(leaf(&["sip2.example.com"]).tn_auth_list());
    let v = pki.import(&pbx, &l2, &["--kind", "stir-shaken"]);
    assert_eq!(v["kind"], "stir-shaken");
}

#[test]
fn single_root_import() {
    let pbx = Pbx::new();
    let cn = format!("Imported Root {}", tag());
    let r = root(&cn);
    let v = pbx.import_ok(r.pem(), None, &[]);
    assert_eq!(v["kind"], "root");
    assert_eq!(v["id"], r.id());
    let roots = pbx.roots();
    let entry = by_id(&roots, &r.id());
    assert!(
        entry["subject"].as_str().unwrap().contains(&cn),
        "subject should name the CA: {entry}"
    );
    assert!(pbx.certs().is_empty(), "roots are not listed by `certs`");
}

#[test]
fn multi_root_import_lists_all_ids() {
    let pbx = Pbx::new();
    let t = tag();
    let r1 = root(&format!("Multi Root A {t}"));
    let r2 = root(&format!("Multi Root B {t}"));
    let r3 = root(&format!("Multi Root C {t}"));
    let before = pbx.root_ids();
    let v = pbx.import_ok(format!("{}{}{}", r1.pem(), r2.pem(), r3.pem()), None, &[]);
    assert_eq!(v["kind"], "root");
    assert_eq!(v["id"], r1.id(), "id is the first CA of the box");
    let mut ids = str_list(&v, "ids");
    ids.sort();
    let mut want = vec![r1.id(), r2.id(), r3.id()];
    want.sort();
    assert_eq!(ids, want);
    let after = pbx.root_ids();
    assert_eq!(after.len(), before.len() + 3);
    for id in want {
        assert!(after.contains(&id));
    }
}

#[test]
fn explicit_kinds_override_auto() {
    let pbx = Pbx::new();
    pbx.tenant_add("acme", &["pbx.acme.example.com"]);
    let pki = Pki::new();
    let l = pki.leaf(leaf(&["pbx.acme.example.com"]));
    let v = pki.import(&pbx, &l, &["--kind", "server"]);
    assert_eq!(v["kind"], "server");
    let l2 = pki.leaf(leaf(&["pbx.acme.example.com"]));
    let v = pki.import(&pbx, &l2, &["--kind", "domain"]);
    assert_eq!(v["kind"], "domain");
    assert_eq!(v["tenant"], "acme");
    let r = root(&format!("Explicit Root {}", tag()));
    let v = pbx.import_ok(r.pem(), None, &["--kind", "root"]);
    assert_eq!(v["kind"], "root");
    let l3 = pki.leaf(leaf(&["pbx.acme.example.com"]));
    let v = pki.import(&pbx, &l3, &["--kind", "auto"]);
    assert_eq!(v["kind"], "domain");
}

#[test]
fn not_a_ca() {
    let pbx = Pbx::new();
    let l = leaf(&["selfsigned.example.com"]).self_signed();
    pbx.import_err(l.pem(), None, &["--kind", "root"])
        .expect("not-a-ca");
    pbx.import_err(l.pem(), Some(&l.key_pem()), &["--kind", "root"])
        .expect("not-a-ca");
    assert!(!pbx.root_ids().contains(&l.id()));
}

#[test]
fn not_stir_shaken() {
    let pbx = Pbx::new();
    let (pki, l) = server_leaf();
    pbx.import_err(
        pki.chain_pem(&l),
        Some(&l.key_pem()),
        &["--kind", "stir-shaken"],
    )
    .expect("not-stir-shaken");
}

#[test]
fn wildcard_needs_server() {
    let pbx = Pbx::new();
    pbx.tenant_add("acme", &["pbx.acme.example.com"]);
    let pki = Pki::new();
    let l = pki.leaf(leaf(&["*.acme.example.com", "pbx.acme.example.com"]));
    pbx.import_err(pki.chain_pem(&l), Some(&l.key_pem()), &["--kind", "domain"])
        .expect("wildcard-needs-server");
    // Wildcard and no tenant at all: still wildcard-needs-server (written first).
    let l2 = pki.leaf(leaf(&["*.nobody.example.net"]));
    pbx.import_err(
        pki.chain_pem(&l2),
        Some(&l2.key_pem()),
        &["--kind", "domain"],
    )
    .expect("wildcard-needs-server");
}

#[test]
fn no_matching_tenant() {
    let pbx = Pbx::new();
    pbx.tenant_add("acme", &["pbx.acme.example.com"]);
    pbx.tenant_add("globex", &["pbx.globex.example.com"]);
    let pki = Pki::new();
    let none = pki.leaf(leaf(&["nobody.example.net"]));
    pbx.import_err(
        pki.chain_pem(&none),
        Some(&none.key_pem()),
        &["--kind", "domain"],
    )
    .expect("no-matching-tenant");
    let two = pki.leaf(leaf(&["pbx.acme.example.com", "pbx.globex.example.com"]));
    pbx.import_err(
        pki.chain_pem(&two),
        Some(&two.key_pem()),
        &["--kind", "domain"],
    )
    .expect("no-matching-tenant");
    assert!(pbx.certs().is_empty());
}

#[test]
fn names_are_lowercased_and_cn_only_is_refused() {
    let pbx = Pbx::new();
    let pki = Pki::new();
    // Issue 17: clients ignore the CN, so a CN-only leaf serves no name.
    let l = pki.leaf(leaf(&[]).cn("Legacy.Example.COM"));
    pbx.import_err(pki.chain_pem(&l), Some(&l.key_pem()), &[])
        .expect("no-san");
    let l2 = pki.leaf(leaf(&["WWW.Example.COM"]).cn("Something Else"));
    let v = pki.import(&pbx, &l2, &[]);
    assert_eq!(str_list(&v, "names"), vec!["www.example.com"]);
}

#[test]
fn tenant_changes_do_not_reclassify_stored_certs() {
    let pbx = Pbx::new();
    let pki = Pki::new();
    let s = pki.leaf(leaf(&["pbx.acme.example.com"]));
    assert_eq!(pki.import(&pbx, &s, &[])["kind"], "server");
    pbx.tenant_add("acme", &["pbx.acme.example.com"]);
    let c = by_id(&pbx.certs(), &s.id()).clone();
    assert_eq!(c["kind"], "server");
    assert_eq!(c["tenant"], Value::Null);
    // A new import of the same names now is a domain cert.
    let d = pki.leaf(leaf(&["pbx.acme.example.com"]));
    assert_eq!(pki.import(&pbx, &d, &[])["kind"], "domain");
}

// ----------------------------------------------------------------------------
// Rule 7: no key
// ----------------------------------------------------------------------------

/// A combined PEM (chain and key in one file, as many panels export it)
/// pasted into the certificate box: the key is used, with a notice; a key
/// in the key box wins over one in the certificate box.
#[test]
fn a_key_pasted_with_the_chain_in_the_certificate_box_is_used() {
    let pbx = Pbx::new();
    let (pki, l) = server_leaf();
    let combined = format!("{}{}", pki.chain_pem(&l), l.key_pem());
    let v = pbx.import_ok(&combined, None, &[]);
    assert_eq!(v["id"], l.id());
    let codes: Vec<&str> = v["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"key-from-certificate-box"), "{v}");
    // Key first, then the chain: the same.
    let pbx2 = Pbx::new();
    let v = pbx2.import_ok(format!("{}{}", l.key_pem(), pki.chain_pem(&l)), None, &[]);
    assert_eq!(v["id"], l.id());
    // The key stays secret: `cert show` gives the chain only.
    let shown = pbx.ok(&["cert", "show", &l.id()]);
    assert!(!shown.to_string().contains("PRIVATE KEY"), "{shown}");
    // Both boxes: the key box wins, and a wrong one there is still refused.
    let other = pki.leaf(leaf(&["www.example.com"]));
    let pbx3 = Pbx::new();
    pbx3.import_err(&combined, Some(&other.key_pem()), &[])
        .expect("key-mismatch");
    let v = pbx3.import_ok(&combined, Some(&l.key_pem()), &[]);
    assert!(
        v.to_string().contains("key-in-certificate-box-ignored"),
        "{v}"
    );
}

#[test]
fn key_required_without_key_and_no_stored_match() {
    let pbx = Pbx::new();
    let (pki, l) = server_leaf();
    pbx.import_err(pki.chain_pem(&l), None, &[])
        .expect("key-required");
    // A stored cert with the same names but another key does not help.
    let other = pki.leaf(leaf(&["www.example.com"]));
    pki.import(&pbx, &other, &[]);
    pbx.import_err(pki.chain_pem(&l), None, &[])
        .expect("key-required");
    assert_eq!(pbx.cert_ids(), vec![other.id()]);
}

#[test]
fn update_without_key_replaces_in_place() {
    let pbx = Pbx::new();
    let pki = Pki::new();
    let a = pki.leaf(leaf(&["a.example.com"]));
    let old = pki.leaf(leaf(&["www.example.com"]).valid_days(-300, 20));
    let b = pki.leaf(leaf(&["b.example.com"]));
    for c in [&a, &old, &b] {
        pki.import(&pbx, c, &[]);
    }
    let same_key = rcgen::KeyPair::from_pem(&old.key_pem()).unwrap();
    let new = pki.leaf(leaf(&["www.example.com"]).valid_days(-1, 365).key(same_key));
    assert_ne!(new.id(), old.id());
    let v = pbx.import_ok(pki.chain_pem(&new), None, &[]);
    assert_warning(&v, "replaced");
    // Named as an admin knows it, not by a 64-hex ID alone (issue 14).
    let said = v["warnings"]
        .as_array()
        .and_then(|w| w.iter().find(|w| w["code"] == "replaced"))
        .map(|w| w["message"].to_string())
        .unwrap_or_default();
    assert!(
        said.contains("replaces www.example.com (expires "),
        "{said}"
    );
    assert_eq!(v["id"], new.id());
    assert_eq!(pbx.cert_ids(), vec![a.id(), new.id(), b.id()]);
    pbx.err(&["cert", "show", &old.id()]).expect("not-found");
    // The kept key serves the new cert.
    let r = pbx.resolve(Some("www.example.com"));
    assert_eq!(r["id"], new.id());
    assert_eq!(r["match"], "server");
    assert_eq!(by_id(&pbx.certs(), &new.id())["key_type"], "p256");
}

#[test]
fn update_without_key_finds_the_leaf_in_a_reordered_box() {
    // Without a key, the leaf is the cert that issues no other in the box.
    let pbx = Pbx::new();
    let pki = Pki::new();
    let old = pki.leaf(leaf(&["www.example.com"]).valid_days(-300, 20));
    pki.import(&pbx, &old, &[]);
    let new = pki.leaf(
        leaf(&["www.example.com"])
            .valid_days(-1, 365)
            .key(rcgen::KeyPair::from_pem(&old.key_pem()).unwrap()),
    );
    let v = pbx.import_ok(format!("{}{}", pki.inter.pem(), new.pem()), None, &[]);
    assert_eq!(v["id"], new.id());
    assert_warning(&v, "replaced");
    assert_warning(&v, "chain-reordered");
    assert_eq!(pbx.cert_ids(), vec![new.id()]);
}

#[test]
fn update_without_key_keeps_domain_tenant_and_default() {
    let pbx = Pbx::new();
    pbx.tenant_add("acme", &["pbx.acme.example.com"]);
    let pki = Pki::new();
    let old = pki.leaf(leaf(&["pbx.acme.example.com"]).valid_days(-300, 20));
    pki.import(&pbx, &old, &[]);
    let new = pki.leaf(
        leaf(&["pbx.acme.example.com"])
            .valid_days(-1, 365)
            .key(rcgen::KeyPair::from_pem(&old.key_pem()).unwrap()),
    );
    let v = pbx.import_ok(pki.chain_pem(&new), None, &[]);
    assert_warning(&v, "replaced");
    assert_eq!(v["kind"], "domain");
    assert_eq!(v["tenant"], "acme");
    assert_eq!(pbx.cert_ids(), vec![new.id()]);
    let r = pbx.resolve(Some("pbx.acme.example.com"));
    assert_eq!(r["id"], new.id());
    assert_eq!(r["match"], "domain");
}

#[test]
fn reimporting_the_same_cert_is_not_an_error() {
    let pbx = Pbx::new();
    let (pki, l) = server_leaf();
    pki.import(&pbx, &l, &[]);
    let v = pki.import(&pbx, &l, &[]);
    assert_eq!(v["id"], l.id());
    assert_eq!(pbx.cert_ids(), vec![l.id()]);
    // Without the key too.
    let v = pbx.import_ok(pki.chain_pem(&l), None, &[]);
    assert_eq!(v["id"], l.id());
    assert_eq!(pbx.cert_ids(), vec![l.id()]);
    // And a root twice.
    let r = root(&format!("Twice Root {}", tag()));
    pbx.import_ok(r.pem(), None, &[]);
    let n = pbx.roots().len();
    pbx.import_ok(r.pem(), None, &[]);
    assert_eq!(pbx.roots().len(), n);
}

// ----------------------------------------------------------------------------
// Precedence: the first failing rule wins
// ----------------------------------------------------------------------------

#[test]
fn precedence_size_before_key_problems() {
    let pbx = Pbx::new();
    let (pki, _) = server_leaf();
    let l = pki.leaf(leaf(&["www.example.com"]));
    let enc = openssl_text(
        &[
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-passout",
            "pass:x",
        ],
        Some(l.key_pem().as_bytes()),
    );
    let big = pad_to(&pki.chain_pem(&l), MIB + 1);
    pbx.import_err(&big, Some(&enc), &[]).expect("too-large");
}

#[test]
fn precedence_bad_pem_before_bad_certificate_and_key() {
    let pbx = Pbx::new();
    let (pki, l) = server_leaf();
    let garbage = pem_encode("CERTIFICATE", b"not a certificate, but valid base64 bytes");
    let pem = pki.chain_pem(&l);
    let unterminated = &pem[..pem.rfind("-----END CERTIFICATE-----").unwrap()];
    let cert_box = format!("{garbage}{unterminated}");
    let ed448 = openssl_text(&["genpkey", "-algorithm", "ED448"], None);
    pbx.import_err(&cert_box, Some(&ed448), &[])
        .expect("bad-pem");
}

#[test]
fn precedence_bad_certificate_before_key_problems() {
    let pbx = Pbx::new();
    let garbage = pem_encode("CERTIFICATE", b"not a certificate, but valid base64 bytes");
    pbx.import_err(&garbage, Some(&rsa_pkcs1(1024)), &[])
        .expect("bad-certificate");
}

#[test]
fn precedence_key_rules_before_mismatch() {
    let pbx = Pbx::new();
    let (pki, l) = server_leaf();
    // Encrypted key that would not match anyway.
    let enc = openssl_text(
        &[
            "genrsa",
            "-aes128",
            "-traditional",
            "-passout",
            "pass:x",
            "2048",
        ],
        None,
    );
    pbx.import_err(pki.chain_pem(&l), Some(&enc), &[])
        .expect("encrypted-key");
    // Weak key that does not match.
    pbx.import_err(pki.chain_pem(&l), Some(&rsa_pkcs8(1024)), &[])
        .expect("weak-key");
}

#[test]
fn precedence_mismatch_before_chain_and_validity() {
    let pbx = Pbx::new();
    let t = tag();
    let r = root(&format!("Absent Root {t}"));
    let l = leaf(&["www.example.com"])
        .valid_days(-100, -1)
        .signed_by(&r);
    // Expired, incomplete chain, and the wrong key: key-mismatch first.
    pbx.import_err(l.pem(), Some(&KeyPairPem::p256()), &[])
        .expect("key-mismatch");
}

#[test]
fn precedence_chain_before_validity() {
    let pbx = Pbx::new();
    let pki = Pki::new();
    let l = pki.leaf(leaf(&["www.example.com"]).valid_days(-100, -1));
    let stranger = root("Stranger Root");
    let cert_box = format!("{}{}{}", l.pem(), pki.inter.pem(), stranger.pem());
    // Issue 17: the stranger is only dropped (`not-on-path`), so the
    // leaf's own expiry is what is left.
    pbx.import_err(&cert_box, Some(&l.key_pem()), &[])
        .expect("expired");
    // Incomplete and expired: incomplete-chain.
    pbx.import_err(l.pem(), Some(&l.key_pem()), &[])
        .expect("incomplete-chain");
}

#[test]
fn stray_root_does_not_hide_incomplete_chain() {
    let pbx = Pbx::new();
    let pki = Pki::new();
    let l = pki.leaf(leaf(&["www.example.com"]));
    // Missing intermediate AND an unrelated root in the box: the root is
    // off the path (issue 17: no longer `bad-chain`), the gap remains.
    let stranger = root("Stranger Root");
    pbx.import_err(
        format!("{}{}", l.pem(), stranger.pem()),
        Some(&l.key_pem()),
        &[],
    )
    .expect("incomplete-chain");
}

#[test]
fn precedence_validity_before_kind_and_key() {
    let pbx = Pbx::new();
    pbx.tenant_add("acme", &["pbx.acme.example.com"]);
    let pki = Pki::new();
    let l = pki.leaf(leaf(&["nobody.example.net"]).valid_days(-100, -1));
    // Expired and no key: expired (rule 5) before key-required (rule 7).
    pbx.import_err(pki.chain_pem(&l), None, &[])
        .expect("expired");
    // Expired and no matching tenant: expired before no-matching-tenant.
    pbx.import_err(pki.chain_pem(&l), Some(&l.key_pem()), &["--kind", "domain"])
        .expect("expired");
    // Expired non-CA as root: expired before not-a-ca.
    let s = leaf(&["selfsigned.example.com"])
        .valid_days(-100, -1)
        .self_signed();
    pbx.import_err(s.pem(), None, &["--kind", "root"])
        .expect("expired");
}

#[test]
fn precedence_kind_before_key_required() {
    let pbx = Pbx::new();
    pbx.tenant_add("acme", &["pbx.acme.example.com"]);
    let pki = Pki::new();
    let w = pki.leaf(leaf(&["*.acme.example.com"]));
    pbx.import_err(pki.chain_pem(&w), None, &["--kind", "domain"])
        .expect("wildcard-needs-server");
    let n = pki.leaf(leaf(&["nobody.example.net"]));
    pbx.import_err(pki.chain_pem(&n), None, &["--kind", "domain"])
        .expect("no-matching-tenant");
    pbx.import_err(pki.chain_pem(&n), None, &["--kind", "stir-shaken"])
        .expect("not-stir-shaken");
}

// ----------------------------------------------------------------------------
// A failed import changes nothing
// ----------------------------------------------------------------------------

#[test]
fn failed_imports_leave_the_store_unchanged() {
    let pbx = Pbx::new();
    pbx.tenant_add("acme", &["pbx.acme.example.com"]);
    pbx.ok_true(&["system", "set", "--dns", "pbx.example.com"]);
    let pki = Pki::new();
    let d = pki.leaf(leaf(&["pbx.acme.example.com"]));
    let s = pki.leaf(leaf(&["pbx.example.com"]));
    pki.import(&pbx, &d, &[]);
    pki.import(&pbx, &s, &[]);
    let my_root = root(&format!("Kept Root {}", tag()));
    pbx.import_ok(my_root.pem(), None, &[]);
    let before = pbx.state();

    let check = |e: &ApiError, code: &str| {
        e.expect(code);
        assert_eq!(
            pbx.state(),
            before,
            "store changed after a failed import ({code})"
        );
    };

    // too-large
    check(
        &pbx.import_err(pad_to(&pki.chain_pem(&s), MIB + 1), Some(&s.key_pem()), &[]),
        "too-large",
    );
    // key-mismatch
    check(
        &pbx.import_err(pki.chain_pem(&s), Some(&KeyPairPem::p256()), &[]),
        "key-mismatch",
    );
    // bad-chain: an impostor intermediate (same name, other key)
    let other = pki.leaf(leaf(&["other.example.com"]));
    let mut impostor = ca("placeholder");
    impostor.params.distinguished_name = pki.inter.cert.params().distinguished_name.clone();
    let impostor = impostor.signed_by(&pki.root);
    check(
        &pbx.import_err(
            format!("{}{}", other.pem(), impostor.pem()),
            Some(&other.key_pem()),
            &[],
        ),
        "bad-chain",
    );
    // expired
    let old = pki.leaf(leaf(&["old.example.com"]).valid_days(-100, -1));
    check(
        &pbx.import_err(pki.chain_pem(&old), Some(&old.key_pem()), &[]),
        "expired",
    );
    // no-matching-tenant
    check(
        &pbx.import_err(
            pki.chain_pem(&other),
            Some(&other.key_pem()),
            &["--kind", "domain"],
        ),
        "no-matching-tenant",
    );
    // key-required: an update without key whose key is not stored
    check(
        &pbx.import_err(pki.chain_pem(&other), None, &[]),
        "key-required",
    );
    // A root box with one expired CA adds none of them.
    let good = root(&format!("Good New Root {}", tag()));
    let expired = ca(&format!("Expired New Root {}", tag()))
        .valid_days(-900, -1)
        .self_signed();
    check(
        &pbx.import_err(format!("{}{}", good.pem(), expired.pem()), None, &[]),
        "expired",
    );
}

// ----------------------------------------------------------------------------
// Issue 14: a CA with its key, a glued PEM
// ----------------------------------------------------------------------------

/// A company CA pasted with its key is no server certificate (it used to
/// become a nameless one, and the TLS default): refused with `ca-with-key`,
/// the message pointing to `import --kind ca`; nothing stored.
#[test]
fn a_ca_with_its_key_is_refused_and_points_to_kind_ca() {
    let pbx = Pbx::new();
    let company = root("Company Root CA");
    let e = pbx.import_err(company.pem(), Some(&company.key_pem()), &[]);
    e.expect("ca-with-key");
    assert!(e.message.contains("--kind ca"), "{}", e.message);
    assert!(pbx.certs().is_empty(), "a refused import stored something");
    // Without its key it is a root, as before.
    let v = pbx.import_ok(company.pem(), None, &[]);
    assert_eq!(v["kind"], "root");
}

/// `cat leaf.crt bundle.crt` where `leaf.crt` has no final newline glues
/// `-----END CERTIFICATE----------BEGIN CERTIFICATE-----` onto one line:
/// read as two lines.
#[test]
fn a_pem_with_glued_boundaries_is_accepted() {
    let pbx = Pbx::new();
    let (pki, l) = server_leaf();
    let glued = format!("{}{}", l.pem().trim_end(), pki.inter.pem());
    assert!(glued.contains("-----END CERTIFICATE----------BEGIN CERTIFICATE-----"));
    let v = pbx.import_ok(&glued, Some(&l.key_pem()), &[]);
    assert_eq!(v["id"], l.id());
    assert_eq!(pbx.cert_ids(), vec![l.id()]);
}

/// A company CA (C and O as PrintableString, CN as UTF8String: its subject
/// must come back byte for byte in what it issues).
fn company_ca(cn: &str) -> Issued {
    let mut params = rcgen::CertificateParams::default();
    let mut d = rcgen::DistinguishedName::new();
    d.push(
        rcgen::DnType::CountryName,
        rcgen::DnValue::PrintableString("DE".try_into().unwrap()),
    );
    d.push(
        rcgen::DnType::OrganizationName,
        rcgen::DnValue::PrintableString("Example Company".try_into().unwrap()),
    );
    d.push(rcgen::DnType::CommonName, cn);
    params.distinguished_name = d;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    CertBuilder::with_params(params)
        .valid_days(-10, 3650)
        .self_signed()
}

/// `import --kind ca`: a company CA with its key becomes the local CA; `ca
/// issue` then signs tenant certificates that chain to it (imported through
/// the same rules). A second one is refused (`ca-exists`) unless
/// `--replace`; without its key, `key-required`.
#[test]
fn import_kind_ca_makes_a_company_ca_the_local_ca() {
    let pbx = Pbx::new();
    let company = company_ca("Company Root CA");
    pbx.import_err(company.pem(), None, &["--kind", "ca"])
        .expect("key-required");
    let v = pbx.import_ok(company.pem(), Some(&company.key_pem()), &["--kind", "ca"]);
    assert_eq!(v["kind"], "ca");
    assert!(pbx.certs().is_empty(), "the CA is no served certificate");
    let shown = pbx.ok(&["ca", "show"]);
    assert!(
        shown["subject"]
            .as_str()
            .unwrap_or("")
            .contains("Company Root CA"),
        "{shown}"
    );
    pbx.err(&["ca", "init"]).expect("ca-exists");

    pbx.tenant_add("acme", &["pbx.acme.example.com"]);
    let issued = pbx.ok(&["ca", "issue", "--tenant", "acme"]);
    assert_eq!(issued["kind"], "domain", "{issued}");
    assert_eq!(
        by_id(&pbx.certs(), issued["id"].as_str().unwrap())["source"],
        "local-ca"
    );
    let r = pbx.resolve(Some("pbx.acme.example.com"));
    assert_eq!(r["id"], issued["id"]);

    let other = company_ca("Second Company CA");
    pbx.import_err(other.pem(), Some(&other.key_pem()), &["--kind", "ca"])
        .expect("ca-exists");
    pbx.import_ok(
        other.pem(),
        Some(&other.key_pem()),
        &["--kind", "ca", "--replace"],
    );
    let shown = pbx.ok(&["ca", "show"]);
    assert!(
        shown["subject"]
            .as_str()
            .unwrap_or("")
            .contains("Second Company CA"),
        "{shown}"
    );
    pbx.tenant_add("globex", &["pbx.globex.example.com"]);
    let issued = pbx.ok(&["ca", "issue", "--tenant", "globex"]);
    assert_eq!(issued["kind"], "domain", "{issued}");
}
