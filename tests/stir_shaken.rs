//! "STIR/SHAKEN choice": `stir-shaken select --tenant NAME`.

mod common;

use common::*;
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
