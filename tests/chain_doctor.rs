//! Issue 17: the import judges a chain the way phones and browsers will
//! (path validation as strict as rustls-webpki, best path instead of box
//! order, trust at import). One test per class of chain that was accepted
//! without a word though clients refuse it, one per false alarm (refused
//! though clients accept), and the `private-root` warning. Every
//! certificate is made here with rcgen (no x509-limbo files are copied).

mod common;

use common::*;
use rcgen::{
    BasicConstraints, CustomExtension, ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, KeyPair,
    NameConstraints,
};

/// Leaf + intermediate + root: a box whose root the path can end in.
fn full_box(l: &Issued, pki: &Pki) -> String {
    format!("{}{}{}", l.pem(), pki.inter.pem(), pki.root.pem())
}

/// The served chain of a stored certificate (`cert show`), as DER.
fn served(pbx: &Pbx, id: &str) -> Vec<Vec<u8>> {
    let shown = pbx.run(&["cert", "show", id]);
    shown.success();
    pem_certs(&shown.stdout)
}

#[track_caller]
fn refused(pbx: &Pbx, cert_box: &str, key: &Issued, code: &str) -> ApiError {
    let e = pbx.import_err(cert_box, Some(&key.key_pem()), &[]);
    e.expect(code);
    assert!(pbx.certs().is_empty(), "a refused import stored something");
    e
}

// ----------------------------------------------------------------------------
// Missed classes: now refused, each with its code
// ----------------------------------------------------------------------------

#[test]
fn eku_client_auth_only_is_refused() {
    let pbx = Pbx::new();
    let pki = Pki::new();
    let mut b = leaf(&["www.example.com"]);
    b.params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let l = pki.leaf(b);
    let e = refused(&pbx, &full_box(&l, &pki), &l, "wrong-usage");
    assert!(e.message.contains("serverAuth"), "{}", e.message);
}

#[test]
fn eku_empty_is_refused() {
    let pbx = Pbx::new();
    let pki = Pki::new();
    let mut b = leaf(&["www.example.com"]);
    // extKeyUsage (2.5.29.37) with an empty SEQUENCE OF KeyPurposeId.
    b.params
        .custom_extensions
        .push(CustomExtension::from_oid_content(
            &[2, 5, 29, 37],
            vec![0x30, 0x00],
        ));
    let l = pki.leaf(b);
    refused(&pbx, &full_box(&l, &pki), &l, "wrong-usage");
}

#[test]
fn expired_intermediate_is_refused() {
    let pbx = Pbx::new();
    let t = tag();
    let r = root(&format!("Root {t}"));
    let inter = ca(&format!("Old Intermediate {t}"))
        .valid_days(-800, -1)
        .signed_by(&r);
    let l = leaf(&["www.example.com"]).signed_by(&inter);
    // With the root in the box (the intermediate is on a checked path) ...
    let e = refused(
        &pbx,
        &format!("{}{}{}", l.pem(), inter.pem(), r.pem()),
        &l,
        "intermediate-expired",
    );
    assert!(
        e.message.contains(&format!("Old Intermediate {t}")),
        "the message must name the intermediate: {}",
        e.message
    );
    // ... and as the top of the box (clients hold its issuer).
    refused(
        &pbx,
        &format!("{}{}", l.pem(), inter.pem()),
        &l,
        "intermediate-expired",
    );
}

#[test]
fn intermediate_without_ca_bit_is_refused() {
    let pbx = Pbx::new();
    let t = tag();
    let r = root(&format!("Root {t}"));
    // A certificate without basicConstraints CA:TRUE that signs the leaf.
    let not_ca = leaf(&[])
        .cn(&format!("Not A CA {t}"))
        .valid_days(-10, 3000)
        .signed_by(&r);
    let l = leaf(&["www.example.com"]).signed_by(&not_ca);
    let e = refused(
        &pbx,
        &format!("{}{}{}", l.pem(), not_ca.pem(), r.pem()),
        &l,
        "issuer-not-a-ca",
    );
    assert!(
        e.message.contains(&format!("Not A CA {t}")),
        "{}",
        e.message
    );
}

#[test]
fn leaf_with_ca_true_is_refused() {
    let pbx = Pbx::new();
    let pki = Pki::new();
    let l = pki.leaf(leaf(&["www.example.com"]).ca());
    refused(&pbx, &full_box(&l, &pki), &l, "leaf-is-a-ca");
}

#[test]
fn pathlen_violation_is_refused() {
    let pbx = Pbx::new();
    let t = tag();
    let r = root(&format!("Root {t}"));
    let mut b = ca(&format!("Pathlen0 {t}"));
    b.params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let i0 = b.signed_by(&r);
    let i1 = intermediate(&format!("Below Pathlen0 {t}"), &i0);
    let l = leaf(&["www.example.com"]).signed_by(&i1);
    refused(
        &pbx,
        &format!("{}{}{}{}", l.pem(), i1.pem(), i0.pem(), r.pem()),
        &l,
        "path-len-exceeded",
    );
}

#[test]
fn name_constraint_excluded_name_is_refused() {
    let pbx = Pbx::new();
    let t = tag();
    let r = root(&format!("Root {t}"));
    let mut b = ca(&format!("Constrained {t}"));
    b.params.name_constraints = Some(NameConstraints {
        permitted_subtrees: vec![],
        excluded_subtrees: vec![GeneralSubtree::DnsName("example.com".into())],
    });
    let inter = b.signed_by(&r);
    let l = leaf(&["www.example.com"]).signed_by(&inter);
    let e = refused(
        &pbx,
        &format!("{}{}{}", l.pem(), inter.pem(), r.pem()),
        &l,
        "name-constraint",
    );
    assert!(e.message.contains("www.example.com"), "{}", e.message);
    // The same CA may still issue outside the excluded subtree.
    let ok = leaf(&["www.example.org"]).signed_by(&inter);
    pbx.import_ok(
        format!("{}{}{}", ok.pem(), inter.pem(), r.pem()),
        Some(&ok.key_pem()),
        &[],
    );
}

#[test]
fn cn_only_leaf_is_refused() {
    let pbx = Pbx::new();
    let pki = Pki::new();
    let l = pki.leaf(leaf(&[]).cn("www.example.com"));
    let e = refused(&pbx, &full_box(&l, &pki), &l, "no-san");
    assert!(e.message.contains("CN"), "{}", e.message);
}

#[test]
fn wildcard_on_a_public_suffix_is_refused() {
    let pbx = Pbx::new();
    let pki = Pki::new();
    for name in ["*.com", "*.co.uk"] {
        let l = pki.leaf(leaf(&[name]));
        let e = refused(&pbx, &full_box(&l, &pki), &l, "wildcard-public-suffix");
        assert!(e.message.contains(name), "{}", e.message);
    }
    // A wildcard under a registrable domain is fine.
    let l = pki.leaf(leaf(&["*.example.co.uk"]));
    pbx.import_ok(full_box(&l, &pki), Some(&l.key_pem()), &[]);
}

#[test]
fn unknown_critical_extension_is_refused() {
    let pbx = Pbx::new();
    let pki = Pki::new();
    let mut b = leaf(&["www.example.com"]);
    // A private-arc OID nobody knows, marked critical (RFC 5280 §4.2).
    let mut ext =
        CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 55555, 1], vec![0x05, 0x00]);
    ext.set_criticality(true);
    b.params.custom_extensions.push(ext);
    let l = pki.leaf(b);
    refused(&pbx, &full_box(&l, &pki), &l, "unknown-critical-extension");
}

// ----------------------------------------------------------------------------
// False alarms: now accepted
// ----------------------------------------------------------------------------

#[test]
fn cross_signed_extra_intermediate_is_dropped_not_refused() {
    let pbx = Pbx::new();
    let t = tag();
    let root_a = root(&format!("Root A {t}"));
    let root_b = root(&format!("Root B {t}"));
    let key = KeyPair::generate().unwrap();
    let same_key = || KeyPair::from_pem(&key.serialize_pem()).unwrap();
    // One CA key, certified by A and cross-signed by B (B is not in the box).
    let inter_a = ca(&format!("Issuing CA {t}"))
        .key(same_key())
        .signed_by(&root_a);
    let inter_b = ca(&format!("Issuing CA {t}"))
        .key(same_key())
        .signed_by(&root_b);
    let l = leaf(&["www.example.com"]).signed_by(&inter_a);
    // The vendor bundle lists the cross-sign first.
    let cert_box = format!(
        "{}{}{}{}",
        l.pem(),
        inter_b.pem(),
        inter_a.pem(),
        root_a.pem()
    );
    let v = pbx.import_ok(&cert_box, Some(&l.key_pem()), &[]);
    assert_warning(&v, "not-on-path");
    assert_eq!(served(&pbx, &l.id()), vec![l.der(), inter_a.der()]);
}

#[test]
fn intermediate_trusted_directly_with_root_swapped_in() {
    // x509-limbo rfc5280::root-and-intermediate-swapped: the trusted
    // certificate is the intermediate (in the Root CA list); the box holds
    // the leaf and the root above it instead.
    let pbx = Pbx::new();
    let pki = Pki::new();
    pbx.import_ok(pki.inter.pem(), None, &["--kind", "root"]);
    let l = pki.leaf(leaf(&["www.example.com"]));
    let v = pbx.import_ok(
        format!("{}{}", l.pem(), pki.root.pem()),
        Some(&l.key_pem()),
        &[],
    );
    assert_warning(&v, "not-on-path");
    assert_no_warning(&v, "private-root");
    assert_eq!(served(&pbx, &l.id()), vec![l.der()]);
}

#[test]
fn self_issued_intermediate_is_not_the_root() {
    // Key rollover: a self-issued (same name) CA certificate for a new key,
    // signed by the old key; the leaf is signed by the new key.
    let pbx = Pbx::new();
    let t = tag();
    let r = root(&format!("Rollover Root {t}"));
    let new_key = ca(&format!("Rollover Root {t}")).signed_by(&r);
    let l = leaf(&["www.example.com"]).signed_by(&new_key);
    let v = pbx.import_ok(
        format!("{}{}{}", l.pem(), new_key.pem(), r.pem()),
        Some(&l.key_pem()),
        &[],
    );
    assert_warning(&v, "root-included");
    assert_eq!(served(&pbx, &l.id()), vec![l.der(), new_key.der()]);
}

// notAfter is inclusive (RFC 5280 §4.1.2.5): a unit test in src/pki.rs
// (`not_after_is_inclusive`) sets "now" to the exact second, which a
// test of the binary cannot.

// ----------------------------------------------------------------------------
// Trust at import
// ----------------------------------------------------------------------------

#[test]
fn private_root_is_warned_and_named() {
    let pbx = Pbx::new();
    let pki = Pki::new();
    let l = pki.leaf(leaf(&["www.example.com"]));
    let v = pbx.import_ok(full_box(&l, &pki), Some(&l.key_pem()), &[]);
    assert_warning(&v, "private-root");
    let w = v["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["code"] == "private-root")
        .unwrap();
    let msg = w["message"].as_str().unwrap();
    assert!(msg.contains("Test Root CA"), "{msg}");
    assert!(msg.contains("phones must trust"), "{msg}");

    // Once the root is in the Root CA list, the same chain is not private.
    let pbx = Pbx::new();
    pbx.import_ok(pki.root.pem(), None, &["--kind", "root"]);
    let v = pbx.import_ok(full_box(&l, &pki), Some(&l.key_pem()), &[]);
    assert_no_warning(&v, "private-root");
    assert_warning(&v, "root-included");
}

/// A root recorded as distributed to phones (`phone-roots import`) is a
/// trust anchor of the import: the chain that ends in it imports without
/// `private-root`, with or without the root in the box, and the root stays
/// out of the Root CA list (the PBX does not trust it as a client).
#[test]
fn a_root_distributed_to_phones_is_a_trust_anchor() {
    let pbx = Pbx::new();
    let pki = Pki::new();
    let roots_before = pbx.root_ids();
    let root_file = pbx.file("phone-root.pem", pki.root.pem());
    let listed = pbx.ok(&["phone-roots", "import", "--cert", &root_file]);
    let ids: Vec<&str> = listed
        .as_array()
        .expect("the phone roots")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(ids, vec![pki.root.id().as_str()], "{listed}");
    assert_eq!(pbx.root_ids(), roots_before, "not in the Root CA list");

    let l = pki.leaf(leaf(&["www.example.com"]));
    let v = pbx.import_ok(full_box(&l, &pki), Some(&l.key_pem()), &[]);
    assert_no_warning(&v, "private-root");
    // Without the root in the box the chain ends in the phone root too.
    let l2 = pki.leaf(leaf(&["sip.example.com"]));
    let v = pbx.import_ok(
        format!("{}{}", l2.pem(), pki.inter.pem()),
        Some(&l2.key_pem()),
        &[],
    );
    assert_no_warning(&v, "private-root");
    assert_eq!(served(&pbx, &l2.id()), vec![l2.der(), pki.inter.der()]);

    // A leaf is not a root for the phones.
    let leaf_file = pbx.file("leaf.pem", l.pem());
    let e = pbx.err(&["phone-roots", "import", "--cert", &leaf_file]);
    assert_eq!(e.code, "not-a-ca", "{e:?}");

    // Forgotten again: the same chain is private once more.
    pbx.ok_true(&["phone-roots", "delete", &pki.root.id()[..16]]);
    assert_eq!(pbx.ok(&["phone-roots"]), serde_json::json!([]));
    let l3 = pki.leaf(leaf(&["pbx.example.com"]));
    let v = pbx.import_ok(full_box(&l3, &pki), Some(&l3.key_pem()), &[]);
    assert_warning(&v, "private-root");
}

#[test]
fn intermediate_expiring_before_the_leaf_is_warned() {
    let pbx = Pbx::new();
    let t = tag();
    let r = root(&format!("Root {t}"));
    let inter = ca(&format!("Short Intermediate {t}"))
        .valid_days(-10, 30)
        .signed_by(&r);
    let l = leaf(&["www.example.com"])
        .valid_days(-1, 90)
        .signed_by(&inter);
    let v = pbx.import_ok(
        format!("{}{}", l.pem(), inter.pem()),
        Some(&l.key_pem()),
        &[],
    );
    assert_warning(&v, "intermediate-expires-first");
    let w = v["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["code"] == "intermediate-expires-first")
        .unwrap();
    assert!(
        w["message"]
            .as_str()
            .unwrap()
            .contains(&format!("Short Intermediate {t}")),
        "{w}"
    );
}

// ----------------------------------------------------------------------------
// `cert check ID`: what a client sees now
// ----------------------------------------------------------------------------

#[test]
fn cert_check_reports_what_a_client_sees_now() {
    let pbx = Pbx::new();
    let t = tag();
    let r = root(&format!("Listed Root {t}"));
    pbx.import_ok(r.pem(), None, &["--kind", "root"]);
    let l = leaf(&["www.example.com"]).signed_by(&r);
    pbx.import_ok(l.pem(), Some(&l.key_pem()), &[]);
    let v = pbx.ok(&["cert", "check", &l.id()]);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["error"], serde_json::Value::Null, "{v}");

    // The root leaves the Root CA list: clients of that list now lack it.
    pbx.ok(&["roots", "delete", &r.id()]);
    let v = pbx.ok(&["cert", "check", &l.id()]);
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["error"]["code"], "incomplete-chain", "{v}");

    // An intermediate that expires before the leaf is reported.
    let pki = Pki::new();
    let short = ca(&format!("Short {t}"))
        .valid_days(-10, 20)
        .signed_by(&pki.root);
    let l2 = leaf(&["short.example.com"]).signed_by(&short);
    pbx.import_ok(
        format!("{}{}", l2.pem(), short.pem()),
        Some(&l2.key_pem()),
        &[],
    );
    let v = pbx.ok(&["cert", "check", &l2.id()]);
    assert_eq!(v["ok"], true, "{v}");
    assert!(
        v["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["code"] == "intermediate-expires-first"),
        "{v}"
    );
}

// ----------------------------------------------------------------------------
// Chain doctor: AIA caIssuers fetch
// ----------------------------------------------------------------------------

/// DER TLV with a definite length.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|&b| b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// An authorityInfoAccess extension with one caIssuers URL (RFC 5280 §4.2.2.1).
fn aia(url: &str) -> CustomExtension {
    let oid_ca_issuers = der(0x06, &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x02]);
    let location = der(0x86, url.as_bytes());
    let ad = der(0x30, &[oid_ca_issuers, location].concat());
    CustomExtension::from_oid_content(&[1, 3, 6, 1, 5, 5, 7, 1, 1], der(0x30, &ad))
}

/// A PKCS#7 "certs-only" SignedData (RFC 5652 §5.1) holding `certs`.
fn pkcs7(certs: &[Vec<u8>]) -> Vec<u8> {
    let signed_data_oid = der(
        0x06,
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02],
    );
    let data_oid = der(
        0x06,
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01],
    );
    let signed_data = der(
        0x30,
        &[
            der(0x02, &[1]),
            der(0x31, &[]),
            der(0x30, &data_oid),
            der(0xa0, &certs.concat()),
            der(0x31, &[]),
        ]
        .concat(),
    );
    der(0x30, &[signed_data_oid, der(0xa0, &signed_data)].concat())
}

/// A one-thread HTTP/1.1 server on loopback answering every request with
/// `body`; returns its base URL and a counter of requests served. Bounded:
/// it stops after a few requests (the test process ends it otherwise).
fn serve_body(body: Vec<u8>) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(8) {
            let Ok(mut s) = stream else { continue };
            let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(5)));
            let mut buf = [0u8; 4096];
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&body);
        }
    });
    (url, hits)
}

/// A leaf whose intermediate is only reachable through its AIA URL.
fn leaf_with_aia(pki: &Pki, url: &str) -> Issued {
    let mut b = leaf(&["www.example.com"]);
    b.params.custom_extensions.push(aia(url));
    pki.leaf(b)
}

#[test]
fn missing_intermediate_is_fetched_from_aia_der() {
    let pbx = Pbx::new();
    let pki = Pki::new();
    let (base, hits) = serve_body(pki.inter.der());
    let l = leaf_with_aia(&pki, &format!("{base}/inter.crt"));
    let v = pbx.import_ok(l.pem(), Some(&l.key_pem()), &[]);
    assert_warning(&v, "intermediate-fetched");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(served(&pbx, &l.id()), vec![l.der(), pki.inter.der()]);
}

#[test]
fn missing_intermediate_is_fetched_from_aia_pkcs7() {
    let pbx = Pbx::new();
    let pki = Pki::new();
    let (base, _) = serve_body(pkcs7(&[pki.inter.der()]));
    let l = leaf_with_aia(&pki, &format!("{base}/inter.p7c"));
    let v = pbx.import_ok(l.pem(), Some(&l.key_pem()), &[]);
    assert_warning(&v, "intermediate-fetched");
    assert_eq!(served(&pbx, &l.id()), vec![l.der(), pki.inter.der()]);
}

#[test]
fn aia_fetch_off_keeps_incomplete_chain() {
    let pbx = Pbx::new();
    let pki = Pki::new();
    let (base, hits) = serve_body(pki.inter.der());
    let l = leaf_with_aia(&pki, &format!("{base}/inter.crt"));
    pbx.ok(&["system", "set", "--aia-fetch", "off"]);
    pbx.import_err(l.pem(), Some(&l.key_pem()), &[])
        .expect("incomplete-chain");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    pbx.ok(&["system", "set", "--aia-fetch", "on"]);
    let v = pbx.import_ok(l.pem(), Some(&l.key_pem()), &[]);
    assert_warning(&v, "intermediate-fetched");
}
