//! Identity (IDs and prefixes), `certs`, `cert show`, `cert delete`.

mod common;

use common::*;
use serde_json::Value;

#[test]
fn id_is_sha256_of_leaf_der() {
    let pbx = Pbx::new();
    let pki = Pki::new();
    let l = pki.leaf(leaf(&["www.example.com"]));
    let v = pki.import(&pbx, &l, &[]);
    let id = v["id"].as_str().unwrap();
    assert!(is_id(id), "lowercase hex SHA-256: {id}");
    assert_eq!(id, sha256_hex(&l.der()));
    assert_eq!(pbx.cert_ids(), vec![l.id()]);
}

#[test]
fn certs_json_fields() {
    let pbx = Pbx::new();
    pbx.tenant_add("acme", &["pbx.acme.example.com"]);
    let pki = Pki::new();
    let (nb, na) = (now() - 2 * DAY, now() + 77 * DAY);
    let d = pki.leaf(
        leaf(&["pbx.acme.example.com", "alt.acme.example.com"])
            .valid_unix(nb, na)
            .key(p384_key()),
    );
    pki.import(&pbx, &d, &[]);
    let s = pki.leaf(leaf(&["*.example.org"]).key(ed25519_key()));
    pki.import(&pbx, &s, &[]);
    let st = pki.leaf(leaf(&["sip.example.net"]).tn_auth_list());
    pki.import(&pbx, &st, &[]);

    let certs = pbx.certs();
    assert_eq!(certs.len(), 3);
    let c = by_id(&certs, &d.id());
    assert_eq!(c["kind"], "domain");
    assert_eq!(c["tenant"], "acme");
    assert_eq!(
        str_list(c, "names"),
        vec!["pbx.acme.example.com", "alt.acme.example.com"]
    );
    assert_eq!(c["not_before"], rfc3339(nb));
    assert_eq!(c["not_after"], rfc3339(na));
    assert_eq!(c["source"], "upload");
    assert_eq!(c["key_type"], "p384");

    let c = by_id(&certs, &s.id());
    assert_eq!(c["kind"], "server");
    assert_eq!(c["tenant"], Value::Null);
    assert_eq!(str_list(c, "names"), vec!["*.example.org"]);
    assert_eq!(c["key_type"], "ed25519");

    let c = by_id(&certs, &st.id());
    assert_eq!(c["kind"], "stir-shaken");
    assert_eq!(c["key_type"], "p256");

    for c in &certs {
        for k in [
            "id",
            "kind",
            "names",
            "tenant",
            "not_before",
            "not_after",
            "source",
            "key_type",
        ] {
            assert!(c.get(k).is_some(), "certs entry without {k}: {c}");
        }
        assert!(is_rfc3339_utc(c["not_before"].as_str().unwrap()), "{c}");
        assert!(is_rfc3339_utc(c["not_after"].as_str().unwrap()), "{c}");
    }
}

#[test]
fn certs_are_listed_in_import_order_not_by_id() {
    let pbx = Pbx::new();
    let pki = Pki::new();
    // Make the IDs descend so an ID-sorted listing would differ.
    let mut made: Vec<Issued> = Vec::new();
    while made.len() < 4 {
        let c = pki.leaf(leaf(&[&format!("n{}.example.com", made.len())]));
        if made.last().is_none_or(|p| p.id() > c.id()) {
            made.push(c);
        }
    }
    for c in &made {
        pki.import(&pbx, c, &[]);
    }
    let want: Vec<String> = made.iter().map(Issued::id).collect();
    assert_eq!(pbx.cert_ids(), want);
}

#[test]
fn roots_are_not_in_certs() {
    let pbx = Pbx::new();
    let r = root(&format!("Some Root {}", tag()));
    pbx.import_ok(r.pem(), None, &[]);
    assert!(pbx.certs().is_empty());
}

#[test]
fn fresh_store_has_no_certs() {
    let pbx = Pbx::new();
    assert_eq!(pbx.ok(&["certs"]), serde_json::json!([]));
}

#[test]
fn cert_show_prints_the_chain_and_never_the_key() {
    let pbx = Pbx::new();
    let pki = Pki::new();
    let l = pki.leaf(leaf(&["www.example.com"]));
    pki.import(&pbx, &l, &[]);
    for id in [l.id(), l.id()[..8].to_string(), l.id()[..20].to_string()] {
        let out = pbx.run(&["cert", "show", &id]);
        out.success();
        assert_eq!(pem_certs(&out.stdout), vec![l.der(), pki.inter.der()]);
        assert_no_key_material(&out.stdout, &l.key_pem());
        assert_no_key_material(&out.stderr, &l.key_pem());
    }
    // --json does not leak it either.
    let out = pbx.run_json(&["cert", "show", &l.id()]);
    out.success();
    assert_no_key_material(&out.stdout, &l.key_pem());
}

#[test]
fn prefix_of_at_least_eight_hex_digits_works_everywhere() {
    let pbx = Pbx::new();
    let pki = Pki::new();
    let l = pki.leaf(leaf(&["www.example.com"]));
    pki.import(&pbx, &l, &[]);
    let p = &l.id()[..8];
    pbx.ok_true(&["system", "set", "--default-cert", p]);
    assert_eq!(pbx.system()["default_cert"], l.id());
    pbx.ok_true(&["cert", "delete", p]);
    assert!(pbx.certs().is_empty());
}

#[test]
fn short_or_non_hex_prefix_is_a_usage_error() {
    let pbx = Pbx::new();
    let pki = Pki::new();
    let l = pki.leaf(leaf(&["www.example.com"]));
    pki.import(&pbx, &l, &[]);
    pbx.run_json(&["cert", "show", &l.id()[..7]]).usage_error();
    pbx.run_json(&["cert", "delete", &l.id()[..7]])
        .usage_error();
    pbx.run_json(&["cert", "show", "ghijklmnop"]).usage_error();
    pbx.run_json(&["cert", "show", ""]).usage_error();
    // Nothing was deleted by the refused commands.
    assert_eq!(pbx.cert_ids(), vec![l.id()]);
}

#[test]
fn unknown_id_is_not_found() {
    let pbx = Pbx::new();
    let pki = Pki::new();
    let l = pki.leaf(leaf(&["www.example.com"]));
    pki.import(&pbx, &l, &[]);
    let missing = sha256_hex(b"no certificate has this DER");
    pbx.err(&["cert", "show", &missing]).expect("not-found");
    pbx.err(&["cert", "show", &missing[..8]])
        .expect("not-found");
    pbx.err(&["cert", "delete", &missing]).expect("not-found");
    // A root ID is not a cert ID.
    let some_root = pbx.roots()[0]["id"].as_str().unwrap().to_string();
    pbx.err(&["cert", "show", &some_root]).expect("not-found");
    assert_eq!(pbx.cert_ids(), vec![l.id()]);
}

#[test]
fn ambiguous_prefix_among_certs() {
    let pbx = Pbx::new();
    let (a, b, prefix) = collision_pair(false);
    pbx.import_ok(a.pem(), Some(&a.key_pem()), &[]);
    pbx.import_ok(b.pem(), Some(&b.key_pem()), &[]);
    assert_eq!(pbx.cert_ids(), vec![a.id(), b.id()]);
    pbx.err(&["cert", "show", prefix]).expect("ambiguous-id");
    pbx.err(&["cert", "delete", prefix]).expect("ambiguous-id");
    assert_eq!(pbx.cert_ids(), vec![a.id(), b.id()], "nothing deleted");
    // A longer prefix that tells them apart works.
    let n = (0..64)
        .find(|&i| a.id().as_bytes()[i] != b.id().as_bytes()[i])
        .unwrap()
        + 1;
    let out = pbx.run(&["cert", "show", &a.id()[..n.max(8)]]);
    out.success();
    assert_eq!(pem_certs(&out.stdout), vec![a.der()]);
}

#[test]
fn cert_delete() {
    let pbx = Pbx::new();
    let pki = Pki::new();
    let a = pki.leaf(leaf(&["a.example.com"]));
    let b = pki.leaf(leaf(&["b.example.com"]));
    pki.import(&pbx, &a, &[]);
    pki.import(&pbx, &b, &[]);
    assert_eq!(pbx.resolve(Some("a.example.com"))["id"], a.id());
    pbx.ok_true(&["cert", "delete", &a.id()]);
    assert_eq!(pbx.cert_ids(), vec![b.id()]);
    // Not served any more.
    assert_ne!(pbx.resolve(Some("a.example.com"))["id"], a.id());
    pbx.err(&["cert", "show", &a.id()]).expect("not-found");
    pbx.err(&["cert", "delete", &a.id()]).expect("not-found");
    // Re-import after delete works and appends.
    pki.import(&pbx, &a, &[]);
    assert_eq!(pbx.cert_ids(), vec![b.id(), a.id()]);
}

#[test]
fn human_certs_output_shows_ids_and_names() {
    let pbx = Pbx::new();
    let pki = Pki::new();
    let l = pki.leaf(leaf(&["human.example.com"]));
    pki.import(&pbx, &l, &[]);
    let out = pbx.run(&["certs"]);
    out.success();
    assert!(out.stdout.contains(&l.id()[..8]), "{}", out.describe());
    assert!(
        out.stdout.contains("human.example.com"),
        "{}",
        out.describe()
    );
    assert!(
        serde_json::from_str::<Value>(out.stdout.trim()).is_err(),
        "without --json the output is for humans"
    );
}
