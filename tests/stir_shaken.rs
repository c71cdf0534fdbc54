//! STIR/SHAKEN: the choice (`stir-shaken select --tenant NAME`), signing
//! (`stir-shaken sign`), the x5u publication at `/sti/ID.pem`, the STI
//! trust list (`sti-roots`) and verification (`stir-shaken verify`, with
//! the negative corpus of issue 15), through the CLI on a running daemon
//! and the JSON API. Peers (secsipidx, PyJWT) are in `tests/stir_peers.rs`.

mod common;
#[path = "common/https_server.rs"]
mod https_server;

use common::*;
use rcgen::KeyPair;
use serde_json::json;

fn stir(pki: &Pki, pbx: &Pbx, names: &[&str]) -> Issued {
    let c = pki.leaf(leaf(names).tn_auth_list());
    assert_eq!(pki.import(pbx, &c, &[])["kind"], "stir-shaken");
    c
}

fn select(pbx: &Pbx, tenant: &str) -> serde_json::Value {
    pbx.ok(&["stir-shaken", "select", "--tenant", tenant])
}

#[test]
fn none_without_stir_shaken_certs() {
    let pbx = Pbx::new();
    pbx.tenant_add("acme", &["sip.acme.example.com"]);
    // Server and domain certs are not STIR/SHAKEN certs.
    let pki = Pki::new();
    let d = pki.leaf(leaf(&["sip.acme.example.com"]));
    pki.import(&pbx, &d, &[]);
    assert_eq!(select(&pbx, "acme"), json!({"id": null, "match": "none"}));
}

#[test]
fn tenant_match_then_first_in_import_order() {
    let pbx = Pbx::new();
    pbx.tenant_add("acme", &["sip.acme.example.com"]);
    pbx.tenant_add(
        "globex",
        &["sip.globex.example.com", "alt.globex.example.com"],
    );
    pbx.tenant_add("initech", &["sip.initech.example.com"]);
    let pki = Pki::new();
    // The first import has the larger ID and the earlier not_after, so neither
    // an ID order nor a validity order gives "first".
    let (first, second) = loop {
        let a = pki.leaf(
            leaf(&["alt.globex.example.com"])
                .valid_days(-1, 40)
                .tn_auth_list(),
        );
        let b = pki.leaf(
            leaf(&["sip.acme.example.com"])
                .valid_days(-1, 400)
                .tn_auth_list(),
        );
        if a.id() > b.id() {
            break (a, b);
        }
    };
    pki.import(&pbx, &first, &[]);
    pki.import(&pbx, &second, &[]);

    assert_eq!(
        select(&pbx, "acme"),
        json!({"id": second.id(), "match": "tenant"})
    );
    assert_eq!(
        select(&pbx, "globex"),
        json!({"id": first.id(), "match": "tenant"})
    );
    assert_eq!(
        select(&pbx, "initech"),
        json!({"id": first.id(), "match": "first"})
    );
}

#[test]
fn first_follows_deletes() {
    let pbx = Pbx::new();
    pbx.tenant_add("initech", &["sip.initech.example.com"]);
    let pki = Pki::new();
    let a = stir(&pki, &pbx, &["a.example.com"]);
    let b = stir(&pki, &pbx, &["b.example.com"]);
    assert_eq!(select(&pbx, "initech")["id"], a.id());
    pbx.ok_true(&["cert", "delete", &a.id()]);
    assert_eq!(
        select(&pbx, "initech"),
        json!({"id": b.id(), "match": "first"})
    );
}

#[test]
fn tenant_names_match_case_insensitively() {
    let pbx = Pbx::new();
    pbx.tenant_add("acme", &["sip.acme.example.com"]);
    let pki = Pki::new();
    let _other = stir(&pki, &pbx, &["other.example.com"]);
    let mine = stir(&pki, &pbx, &["SIP.Acme.Example.COM"]);
    assert_eq!(
        select(&pbx, "acme"),
        json!({"id": mine.id(), "match": "tenant"})
    );
}

#[test]
fn unknown_tenant() {
    let pbx = Pbx::new();
    let pki = Pki::new();
    stir(&pki, &pbx, &["a.example.com"]);
    pbx.err(&["stir-shaken", "select", "--tenant", "nobody"])
        .expect("no-such-tenant");
}

#[test]
fn tenant_option_is_required() {
    let pbx = Pbx::new();
    pbx.run_json(&["stir-shaken", "select"]).usage_error();
}

#[test]
fn human_output() {
    let pbx = Pbx::new();
    pbx.tenant_add("acme", &["sip.acme.example.com"]);
    let pki = Pki::new();
    let c = stir(&pki, &pbx, &["sip.acme.example.com"]);
    let out = pbx.run(&["stir-shaken", "select", "--tenant", "acme"]);
    out.success();
    assert!(out.stdout.contains(&c.id()[..8]), "{}", out.describe());
}

// ---------------------------------------------------------------------------
// Signing, x5u publication and verification (issue 15)
// ---------------------------------------------------------------------------

use common::sti::{jws, jws_part, Sti, DEST, ORIG};

#[test]
fn sign_makes_the_identity_header_and_verify_passes_it() {
    let sti = Sti::start();
    let origid = "123e4567-e89b-42d3-a456-426614174000";
    let iat = now().to_string();
    let signed = sti.sign(&["--origid", origid, "--iat", &iat]);
    let identity = signed["identity"].as_str().unwrap();
    let x5u = sti.x5u();
    assert_eq!(signed["cert"], sti.cert.id());
    assert_eq!(signed["x5u"], x5u);
    // `<JWS>;info=<x5u>;alg=ES256;ppt=shaken`, canonical JSON (sorted keys,
    // no whitespace, RFC 8224 §8.3 numbers).
    assert!(
        identity.ends_with(&format!(";info=<{x5u}>;alg=ES256;ppt=shaken")),
        "{identity}"
    );
    assert_eq!(
        signed["header"],
        format!(r#"{{"alg":"ES256","ppt":"shaken","typ":"passport","x5u":"{x5u}"}}"#)
    );
    assert_eq!(
        signed["payload"],
        format!(
            r#"{{"attest":"A","dest":{{"tn":["{DEST}"]}},"iat":{iat},"orig":{{"tn":"12025550100"}},"origid":"{origid}"}}"#
        )
    );
    assert_eq!(jws_part(identity, 1)["orig"]["tn"], "12025550100");
    // Text output: the header value alone.
    let text = sti.pbx.run(&[
        "stir-shaken",
        "sign",
        "--tenant",
        "acme",
        "--orig",
        ORIG,
        "--dest",
        DEST,
        "--attest",
        "B",
    ]);
    text.success();
    assert!(
        text.stdout.trim().ends_with(";ppt=shaken"),
        "{}",
        text.describe()
    );

    let verdict = sti.verify(identity, "12025550100", DEST, &[]);
    assert_eq!(
        verdict,
        json!({"verstat": "TN-Validation-Passed", "attest": "A", "origid": origid, "x5u": x5u})
    );
}

#[test]
fn origid_is_a_fresh_uuid_when_omitted() {
    let sti = Sti::start();
    let a = jws_part(sti.sign(&[])["identity"].as_str().unwrap(), 1)["origid"].clone();
    let b = jws_part(sti.sign(&[])["identity"].as_str().unwrap(), 1)["origid"].clone();
    let a = a.as_str().unwrap();
    assert_ne!(a, b.as_str().unwrap());
    assert_eq!(a.len(), 36);
    assert_eq!(&a[14..15], "4", "UUID v4: {a}");
}

#[test]
fn x5u_chain_is_public_and_nothing_else_is() {
    let sti = Sti::start();
    let curl = |url: &str| {
        let mut cmd = std::process::Command::new("curl");
        cmd.args(["-s", "-i", "--cacert", &sti.root_file, url]);
        let out = run_command(cmd, None);
        out.success();
        out.stdout
    };
    let answer = curl(&sti.x5u());
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let lower = answer.to_ascii_lowercase();
    assert!(
        lower.contains("content-type: application/pem-certificate-chain"),
        "{answer}"
    );
    assert!(
        lower.contains("cache-control: public, max-age=3600"),
        "{answer}"
    );
    assert_eq!(lower.matches("cache-control:").count(), 1, "{answer}");
    let certs = pem_certs(&answer);
    assert_eq!(certs, vec![sti.cert.der(), sti.pki.inter.der()]);
    // Not a STIR/SHAKEN certificate: the HTTPS one is not published.
    let web = sti.pbx.system()["default_cert"]
        .as_str()
        .unwrap()
        .to_owned();
    let other = curl(&format!("{}/{web}.pem", sti.base));
    assert!(other.starts_with("HTTP/1.1 404"), "{other}");
    // Only full IDs are published: a prefix is any other path, which (as
    // every page) needs a login.
    let prefix = curl(&format!("{}/{}.pem", sti.base, &sti.cert.id()[..16]));
    assert!(prefix.starts_with("HTTP/1.1 303"), "{prefix}");
    let certs_page = curl(
        &sti.base
            .replace("/sti", &format!("/certs/{}.pem", sti.cert.id())),
    );
    assert!(certs_page.starts_with("HTTP/1.1 303"), "{certs_page}");
}

#[test]
fn sign_refusals_are_named() {
    let sti = Sti::start();
    let pbx = &sti.pbx;
    let sign = |tenant: &str, orig: &str, attest: &str| {
        pbx.err(&[
            "stir-shaken",
            "sign",
            "--tenant",
            tenant,
            "--orig",
            orig,
            "--dest",
            DEST,
            "--attest",
            attest,
        ])
    };
    sign("acme", "12a", "A").expect("bad-tn");
    sign("acme", ORIG, "D").expect("bad-attest");
    sign("nobody", ORIG, "A").expect("no-such-tenant");
    pbx.err(&[
        "stir-shaken",
        "sign",
        "--tenant",
        "acme",
        "--orig",
        ORIG,
        "--dest",
        DEST,
        "--attest",
        "A",
        "--origid",
        "nope",
    ])
    .expect("bad-origid");

    // No certificate at all.
    let empty = Pbx::new();
    empty.tenant_add("t", &["t.example.com"]);
    empty
        .err(&[
            "stir-shaken",
            "sign",
            "--tenant",
            "t",
            "--orig",
            ORIG,
            "--dest",
            DEST,
            "--attest",
            "A",
        ])
        .expect("no-stir-certificate");
}

#[test]
fn expired_and_non_p256_certificates_do_not_sign() {
    let pki = Pki::new();
    let pbx = Pbx::new();
    pbx.ok(&["system", "set", "--dns", "pbx.example.com"]);
    let sign = |tenant: &str| {
        pbx.err(&[
            "stir-shaken",
            "sign",
            "--tenant",
            tenant,
            "--orig",
            ORIG,
            "--dest",
            DEST,
            "--attest",
            "A",
        ])
    };
    // A P-384 key: ES256 needs P-256.
    pbx.tenant_add("p384", &["p384.example.com"]);
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let c = pki.leaf(leaf(&["p384.example.com"]).tn_auth_list().key(key));
    pki.import(&pbx, &c, &[]);
    sign("p384").expect("stir-key-not-p256");

    // Expired: valid at its import, expired when the call is signed (the
    // import refuses certificates that have expired already).
    let pbx_old = Pbx::new();
    pbx_old.ok(&["system", "set", "--dns", "pbx.example.com"]);
    pbx_old.tenant_add("old", &["old.example.com"]);
    let until = now() + 2;
    let c = pki.leaf(
        leaf(&["old.example.com"])
            .tn_auth_list()
            .valid_unix(now() - DAY, until),
    );
    pki.import(&pbx_old, &c, &["--kind", "stir-shaken"]);
    while now() <= until {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    pbx_old
        .err(&[
            "stir-shaken",
            "sign",
            "--tenant",
            "old",
            "--orig",
            ORIG,
            "--dest",
            DEST,
            "--attest",
            "A",
        ])
        .expect("stir-certificate-expired");
}

#[test]
fn default_x5u_is_the_system_name_and_set_changes_it() {
    let pbx = Pbx::new();
    pbx.tenant_add("acme", &["sip.acme.example.com"]);
    let pki = Pki::new();
    let c = stir(&pki, &pbx, &["sip.acme.example.com"]);
    let sign = || {
        pbx.run_json(&[
            "stir-shaken",
            "sign",
            "--tenant",
            "acme",
            "--orig",
            ORIG,
            "--dest",
            DEST,
            "--attest",
            "C",
        ])
    };
    sign().api_error().expect("no-x5u-base");
    pbx.ok(&["system", "set", "--dns", "pbx.example.com"]);
    let v = sign();
    v.success();
    assert_eq!(
        v.json()["x5u"],
        format!("https://pbx.example.com/sti/{}.pem", c.id())
    );
    let set = pbx.ok(&[
        "stir-shaken",
        "set",
        "--x5u-base",
        "https://certs.example.net/stir/",
    ]);
    assert_eq!(
        set,
        json!({"x5u_base": "https://certs.example.net/stir", "x5u_base_effective": "https://certs.example.net/stir", "iat_skew": 60})
    );
    assert_eq!(
        sign().json()["x5u"],
        format!("https://certs.example.net/stir/{}.pem", c.id())
    );
    pbx.err(&[
        "stir-shaken",
        "set",
        "--x5u-base",
        "http://certs.example.net",
    ])
    .expect("bad-x5u-base");
    pbx.err(&["stir-shaken", "set", "--iat-skew", "100000"])
        .expect("bad-setting");
    pbx.ok(&["stir-shaken", "set", "--x5u-base", "none"]);
    assert_eq!(
        sign().json()["x5u"],
        format!("https://pbx.example.com/sti/{}.pem", c.id())
    );
}

#[test]
fn sti_roots_import_list_show_delete() {
    let pbx = Pbx::new();
    let pki = Pki::new();
    assert_eq!(pbx.ok(&["sti-roots"]), json!([]));
    let file = pbx.file("root.pem", pki.root.pem());
    let listed = pbx.ok(&["sti-roots", "import", "--cert", &file]);
    assert_eq!(listed[0]["id"], pki.root.id());
    assert_eq!(pbx.ok(&["sti-roots", "list"]), listed);
    let shown = pbx.ok(&["sti-roots", "show", &pki.root.id()[..12]]);
    assert_eq!(
        pem_certs(shown["pem"].as_str().unwrap()),
        vec![pki.root.der()]
    );
    // Not the Root CA list, not the phone roots.
    assert!(!pbx.root_ids().contains(&pki.root.id()));
    assert_eq!(pbx.ok(&["phone-roots"]), json!([]));
    let leaf_file = pbx.file("leaf.pem", pki.leaf(leaf(&["x.example.com"])).pem());
    pbx.err(&["sti-roots", "import", "--cert", &leaf_file])
        .expect("not-a-ca");
    pbx.ok_true(&["sti-roots", "delete", &pki.root.id()[..12]]);
    assert_eq!(pbx.ok(&["sti-roots"]), json!([]));
    pbx.err(&["sti-roots", "delete", &pki.root.id()[..12]])
        .expect("not-found");
}

/// The verdict's `verstat`, SIP reason code and named error.
fn reason(v: &serde_json::Value) -> (String, u64, String) {
    (
        v["verstat"].as_str().unwrap().to_owned(),
        v["reason"]["code"].as_u64().unwrap_or(0),
        v["error"]["code"].as_str().unwrap_or("").to_owned(),
    )
}

fn failed(code: u64, error: &str) -> (String, u64, String) {
    ("TN-Validation-Failed".into(), code, error.into())
}

fn no_validation(code: u64, error: &str) -> (String, u64, String) {
    ("No-TN-Validation".into(), code, error.into())
}

#[test]
fn negative_corpus_each_with_its_reason() {
    let sti = Sti::start();
    let good = sti.sign(&[]);
    let identity = good["identity"].as_str().unwrap().to_owned();
    let canon_orig = "12025550100";
    let header = jws_part(&identity, 0);
    let payload = jws_part(&identity, 1);
    let verify = |h: &str| reason(&sti.verify(h, canon_orig, DEST, &[]));
    // Sanity: the untouched header passes.
    assert_eq!(verify(&identity).0, "TN-Validation-Passed");

    // Tampered payload (attest A -> B, same signature).
    let mut parts: Vec<String> = identity.split('.').map(str::to_owned).collect();
    let mut p = payload.clone();
    p["attest"] = json!("B");
    parts[1] = <base64ct::Base64UrlUnpadded as base64ct::Encoding>::encode_string(
        p.to_string().as_bytes(),
    );
    assert_eq!(verify(&parts.join(".")), failed(438, "bad-signature"));

    // Wrong alg (signed correctly otherwise).
    let mut h = header.clone();
    h["alg"] = json!("ES384");
    assert_eq!(
        verify(&jws(&h, &payload, &sti.cert.key)),
        failed(438, "alg-not-es256")
    );

    // Header without ppt.
    let mut h = header.clone();
    h.as_object_mut().unwrap().remove("ppt");
    let no_ppt = jws(&h, &payload, &sti.cert.key).replace(";ppt=shaken", "");
    assert_eq!(verify(&no_ppt), failed(438, "ppt-not-shaken"));

    // Stale iat (two minutes old; the default skew is 60 s).
    let old = (now() - 120).to_string();
    let stale = sti.sign(&["--iat", &old]);
    assert_eq!(
        verify(stale["identity"].as_str().unwrap()),
        failed(403, "stale-iat")
    );
    // ... within a configured skew of 300 s, and with --now, it passes.
    sti.pbx.ok(&["stir-shaken", "set", "--iat-skew", "300"]);
    assert_eq!(
        verify(stale["identity"].as_str().unwrap()).0,
        "TN-Validation-Passed"
    );
    sti.pbx.ok(&["stir-shaken", "set", "--iat-skew", "60"]);
    let now_then = (now() - 110).to_string();
    let v = sti.verify(
        stale["identity"].as_str().unwrap(),
        canon_orig,
        DEST,
        &["--now", &now_then],
    );
    assert_eq!(v["verstat"], "TN-Validation-Passed", "{v}");

    // orig does not match the call; dest not among the called numbers.
    assert_eq!(
        reason(&sti.verify(&identity, "12025550111", DEST, &[])),
        failed(438, "orig-mismatch")
    );
    assert_eq!(
        reason(&sti.verify(&identity, canon_orig, "4930123", &[])),
        failed(438, "dest-mismatch")
    );

    // No header at all.
    assert_eq!(verify(""), no_validation(428, "no-identity"));
    assert_eq!(verify("garbage"), failed(438, "malformed-identity"));

    // x5u to an untrusted chain: a STIR/SHAKEN certificate of another PKI,
    // published by the same daemon (the STI trust list has only ours).
    let other = Pki::new();
    sti.pbx.tenant_add("globex", &["sip.globex.example.com"]);
    let foreign = other.leaf(leaf(&["sip.globex.example.com"]).tn_auth_list());
    other.import(&sti.pbx, &foreign, &[]);
    let signed = sti.pbx.ok(&[
        "stir-shaken",
        "sign",
        "--tenant",
        "globex",
        "--orig",
        canon_orig,
        "--dest",
        DEST,
        "--attest",
        "A",
    ]);
    assert_eq!(
        verify(signed["identity"].as_str().unwrap()),
        failed(437, "untrusted-chain")
    );

    // Certificate without TNAuthList, and an oversize answer: served by a
    // plain HTTPS server whose CA the Root CA list trusts.
    let plain = sti.pki.leaf(leaf(&["no-tn.example.com"]));
    let plain_chain = sti.pki.chain_pem(&plain);
    let big = "x".repeat(100 * 1024);
    let (port, ca_pem) = https_server::serve("x5u test CA", move |r| {
        if r.path.contains("big") {
            (200, big.clone())
        } else {
            (200, plain_chain.clone())
        }
    });
    sti.pbx.import_ok(ca_pem, None, &["--kind", "root"]);
    for (path, key, expected) in [
        ("/plain.pem", &plain.key, failed(437, "no-tn-auth-list")),
        (
            "/big.pem",
            &sti.cert.key,
            no_validation(436, "x5u-too-large"),
        ),
    ] {
        let mut h = header.clone();
        h["x5u"] = json!(format!("https://127.0.0.1:{port}{path}"));
        assert_eq!(verify(&jws(&h, &payload, key)), expected, "{path}");
    }

    // info differs from x5u.
    let bad_info = identity.replace(
        &format!(";info=<{}>", sti.x5u()),
        ";info=<https://127.0.0.1:1/other.pem>",
    );
    assert_eq!(verify(&bad_info), no_validation(436, "bad-identity-info"));
}

#[test]
fn api_signs_and_verifies_like_the_cli() {
    let sti = Sti::start();
    let password = "correct horse battery";
    sti.pbx
        .run_stdin(&["admin", "password"], format!("{password}\n").as_bytes())
        .success();
    let post = |path: &str, body: serde_json::Value| {
        let mut cmd = std::process::Command::new("curl");
        cmd.args([
            "-s",
            "--cacert",
            &sti.root_file,
            "-u",
            &format!("x:{password}"),
            "-H",
            "Content-Type: application/json",
            "--data",
            &body.to_string(),
            &format!("{}{path}", sti.base.replace("/sti", "/api/stir-shaken")),
        ]);
        let out = run_command(cmd, None);
        out.success();
        serde_json::from_str::<serde_json::Value>(&out.stdout).unwrap()
    };
    let iat = now();
    let signed = post(
        "/sign",
        json!({"tenant": "acme", "orig": ORIG, "dest": [DEST], "attest": "A",
               "origid": "123e4567-e89b-42d3-a456-426614174000", "iat": iat}),
    );
    let cli = sti.sign(&[
        "--origid",
        "123e4567-e89b-42d3-a456-426614174000",
        "--iat",
        &iat.to_string(),
    ]);
    assert_eq!(signed["payload"], cli["payload"]);
    assert_eq!(signed["header"], cli["header"]);
    let verdict = post(
        "/verify",
        json!({"identity": signed["identity"], "orig": ORIG, "dest": DEST}),
    );
    assert_eq!(verdict["verstat"], "TN-Validation-Passed", "{verdict}");
    let refused = post(
        "/sign",
        json!({"tenant": "acme", "orig": "x", "dest": [DEST], "attest": "A"}),
    );
    assert_eq!(refused["error"]["code"], "bad-tn", "{refused}");
}

#[test]
fn persistent_control_socket_answers_pipelined_requests_in_order() {
    use std::io::{BufRead, BufReader, Write};
    let sti = Sti::start();
    let mut stream =
        std::os::unix::net::UnixStream::connect(sti.daemon.data.join("control.sock")).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    let sign = |orig: &str, origid: &str| {
        json!({"command": "stir-shaken-sign", "tenant": "acme", "orig": orig,
               "dest": [DEST], "attest": "A", "origid": origid})
        .to_string()
    };
    let ids: Vec<String> = (0..50)
        .map(|i| format!("123e4567-e89b-42d3-a456-4266141740{i:02}"))
        .collect();
    // All requests in one write (pipelined), a refused one among them.
    let mut batch = String::new();
    for (i, id) in ids.iter().enumerate() {
        let orig = if i == 7 { "not a number" } else { ORIG };
        batch += &sign(orig, id);
        batch.push('\n');
    }
    batch += &json!({"command": "stir-shaken-select", "tenant": "acme"}).to_string();
    batch.push('\n');
    stream.write_all(batch.as_bytes()).unwrap();
    let mut lines = BufReader::new(stream.try_clone().unwrap()).lines();
    for (i, id) in ids.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        if i == 7 {
            assert_eq!(v["error"]["code"], "bad-tn", "{v}");
            continue;
        }
        let identity = v["ok"]["identity"]
            .as_str()
            .unwrap_or_else(|| panic!("{v}"));
        assert_eq!(
            jws_part(identity, 1)["origid"],
            id.as_str(),
            "reply {i} out of order"
        );
    }
    let v: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(v["ok"]["id"], sti.cert.id());
    // Still open for more; a clean close ends it quietly.
    stream
        .write_all(format!("{}\n", sign(ORIG, &ids[0])).as_bytes())
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert!(v["ok"]["identity"].is_string(), "{v}");
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(lines.next().is_none());
    // The CLI (one request per connection) is unchanged.
    assert_eq!(
        sti.pbx.ok(&["stir-shaken", "select", "--tenant", "acme"])["id"],
        sti.cert.id()
    );
}

#[test]
fn an_expiring_stir_shaken_certificate_is_alerted() {
    let pbx = Pbx::new();
    pbx.tenant_add("acme", &["sip.acme.example.com"]);
    let pki = Pki::new();
    let c = pki.leaf(
        leaf(&["sip.acme.example.com"])
            .tn_auth_list()
            .valid_days(-80, 5),
    );
    pki.import(&pbx, &c, &[]);
    let alerts = pbx.ok(&["alerts"]);
    let mine: Vec<&serde_json::Value> = alerts
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["cert_id"] == c.id())
        .collect();
    assert_eq!(mine.len(), 1, "{alerts}");
    assert_eq!(mine[0]["code"], "cert-expiring", "{alerts}");
    assert!(
        mine[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("STIR/SHAKEN certificate"),
        "{alerts}"
    );
}
