//! "SNI choice": every rule, through `resolve --json`.
//!
//! Expired certificates cannot be imported (rule 5 rejects them), so the
//! "expired only when nothing valid" rule is exercised with not-yet-valid
//! certificates, which are outside their validity window just the same.

mod common;

use common::*;
use serde_json::{json, Value};

/// (id, match, tenant) of a resolve answer.
fn pick(r: &Value) -> (Value, Value, Value) {
    (r["id"].clone(), r["match"].clone(), r["tenant"].clone())
}

fn server(pki: &Pki, pbx: &Pbx, names: &[&str], days_left: i64) -> Issued {
    let c = pki.leaf(leaf(names).valid_days(-1, days_left));
    let v = pki.import(pbx, &c, &["--kind", "server"]);
    assert_eq!(v["kind"], "server");
    c
}

fn domain(pki: &Pki, pbx: &Pbx, names: &[&str], days_left: i64) -> Issued {
    let c = pki.leaf(leaf(names).valid_days(-1, days_left));
    let v = pki.import(pbx, &c, &[]);
    assert_eq!(v["kind"], "domain");
    c
}

#[test]
fn nothing_to_serve_is_none() {
    let pbx = Pbx::new();
    assert_eq!(
        pbx.resolve(None),
        json!({"sni": null, "id": null, "match": "none", "tenant": null})
    );
    assert_eq!(
        pbx.resolve(Some("www.example.com")),
        json!({"sni": "www.example.com", "id": null, "match": "none", "tenant": null})
    );
}

#[test]
fn only_domain_certs_give_no_default() {
    // The implicit default is a *server* cert; a domain cert only serves its
    // tenant's names.
    let pbx = Pbx::new();
    pbx.tenant_add("acme", &["pbx.acme.example.com"]);
    let pki = Pki::new();
    let d = domain(
        &pki,
        &pbx,
        &["pbx.acme.example.com", "extra.example.net"],
        90,
    );
    assert_eq!(
        pick(&pbx.resolve(Some("pbx.acme.example.com"))).0,
        json!(d.id())
    );
    let r = pbx.resolve(Some("extra.example.net"));
    assert_eq!(pick(&r), (Value::Null, json!("none"), Value::Null));
    assert_eq!(
        pick(&pbx.resolve(None)),
        (Value::Null, json!("none"), Value::Null)
    );
}

#[test]
fn domain_beats_server() {
    let pbx = Pbx::new();
    pbx.tenant_add("acme", &["pbx.acme.example.com"]);
    let pki = Pki::new();
    let s = server(&pki, &pbx, &["pbx.acme.example.com"], 300);
    let d = domain(&pki, &pbx, &["pbx.acme.example.com"], 30);
    let r = pbx.resolve(Some("pbx.acme.example.com"));
    assert_eq!(pick(&r), (json!(d.id()), json!("domain"), json!("acme")));
    assert_eq!(r["sni"], "pbx.acme.example.com");
    // Without the domain cert, the server cert serves.
    pbx.ok_true(&["cert", "delete", &d.id()]);
    let r = pbx.resolve(Some("pbx.acme.example.com"));
    assert_eq!(pick(&r), (json!(s.id()), json!("server"), json!("acme")));
}

#[test]
fn domain_cert_serves_only_names_its_tenant_owns() {
    let pbx = Pbx::new();
    pbx.tenant_add("acme", &["pbx.acme.example.com"]);
    let pki = Pki::new();
    let d = domain(
        &pki,
        &pbx,
        &[
            "pbx.acme.example.com",
            "shared.example.net",
            "free.example.org",
        ],
        300,
    );
    // Another tenant later owns one of the cert's names.
    pbx.tenant_add("globex", &["shared.example.net"]);
    let s = server(&pki, &pbx, &["shared.example.net", "free.example.org"], 30);
    let r = pbx.resolve(Some("shared.example.net"));
    assert_eq!(pick(&r), (json!(s.id()), json!("server"), json!("globex")));
    // A name of the domain cert that no tenant owns: not a domain match.
    let r = pbx.resolve(Some("free.example.org"));
    assert_eq!(pick(&r), (json!(s.id()), json!("server"), Value::Null));
    // Its own tenant's name still goes to it.
    let r = pbx.resolve(Some("pbx.acme.example.com"));
    assert_eq!(pick(&r), (json!(d.id()), json!("domain"), json!("acme")));
}

#[test]
fn server_exact_beats_wildcard() {
    let pbx = Pbx::new();
    let pki = Pki::new();
    let wild = server(&pki, &pbx, &["*.example.com"], 300);
    let exact = server(&pki, &pbx, &["www.example.com"], 30);
    let r = pbx.resolve(Some("www.example.com"));
    assert_eq!(pick(&r), (json!(exact.id()), json!("server"), Value::Null));
    let r = pbx.resolve(Some("other.example.com"));
    assert_eq!(pick(&r), (json!(wild.id()), json!("server"), Value::Null));
}

#[test]
fn wildcard_matches_exactly_one_label() {
    let pbx = Pbx::new();
    let pki = Pki::new();
    let wild = server(&pki, &pbx, &["*.example.com"], 300);
    let fallback = server(&pki, &pbx, &["fallback.example.net"], 30);
    pbx.ok_true(&["system", "set", "--default-cert", &fallback.id()]);
    let r = pbx.resolve(Some("a.example.com"));
    assert_eq!(pick(&r), (json!(wild.id()), json!("server"), Value::Null));
    for sni in [
        "example.com",
        "a.b.example.com",
        "wwwexample.com",
        "a.example.com.evil.net",
    ] {
        let r = pbx.resolve(Some(sni));
        assert_eq!(
            pick(&r),
            (json!(fallback.id()), json!("default"), Value::Null),
            "{sni} must not match *.example.com"
        );
    }
}

#[test]
fn names_compare_case_insensitively_and_ignore_trailing_dot() {
    let pbx = Pbx::new();
    pbx.tenant_add("acme", &["pbx.acme.example.com"]);
    let pki = Pki::new();
    let s = server(&pki, &pbx, &["www.example.com"], 90);
    let w = server(&pki, &pbx, &["*.wild.example.com"], 90);
    let d = domain(&pki, &pbx, &["pbx.acme.example.com"], 90);
    for sni in ["WWW.Example.COM", "www.example.com.", "Www.Example.Com."] {
        let r = pbx.resolve(Some(sni));
        assert_eq!(
            pick(&r),
            (json!(s.id()), json!("server"), Value::Null),
            "{sni}"
        );
    }
    let r = pbx.resolve(Some("ABC.Wild.Example.com."));
    assert_eq!(pick(&r).0, json!(w.id()));
    let r = pbx.resolve(Some("PBX.ACME.example.com."));
    assert_eq!(pick(&r), (json!(d.id()), json!("domain"), json!("acme")));
}

#[test]
fn uppercase_names_in_the_certificate_match() {
    let pbx = Pbx::new();
    let pki = Pki::new();
    let s = server(&pki, &pbx, &["MiXeD.Example.COM"], 90);
    assert_eq!(pbx.resolve(Some("mixed.example.com"))["id"], s.id());
}

#[test]
fn default_by_explicit_setting() {
    let pbx = Pbx::new();
    pbx.ok_true(&["system", "set", "--dns", "pbx.example.com"]);
    let pki = Pki::new();
    let chosen = server(&pki, &pbx, &["chosen.example.com"], 30);
    let _sys = server(&pki, &pbx, &["pbx.example.com"], 60);
    let _late = server(&pki, &pbx, &["late.example.com"], 300);
    pbx.ok_true(&["system", "set", "--default-cert", &chosen.id()]);
    let r = pbx.resolve(Some("unknown.example.net"));
    assert_eq!(
        pick(&r),
        (json!(chosen.id()), json!("default"), Value::Null)
    );
    let r = pbx.resolve(None);
    assert_eq!(r["sni"], Value::Null);
    assert_eq!(
        pick(&r),
        (json!(chosen.id()), json!("default"), Value::Null)
    );
}

#[test]
fn default_by_system_dns_name() {
    let pbx = Pbx::new();
    pbx.ok_true(&["system", "set", "--dns", "pbx.example.com"]);
    let pki = Pki::new();
    let sys = server(&pki, &pbx, &["pbx.example.com"], 30);
    let _late = server(&pki, &pbx, &["late.example.com"], 300);
    let r = pbx.resolve(Some("unknown.example.net"));
    assert_eq!(pick(&r), (json!(sys.id()), json!("default"), Value::Null));
    assert_eq!(pick(&pbx.resolve(None)).0, json!(sys.id()));
    // Asking for the system name itself is a server match.
    assert_eq!(
        pick(&pbx.resolve(Some("pbx.example.com"))).1,
        json!("server")
    );
}

#[test]
fn default_by_system_dns_name_via_wildcard() {
    let pbx = Pbx::new();
    pbx.ok_true(&["system", "set", "--dns", "pbx.sys.example.com"]);
    let pki = Pki::new();
    let wild = server(&pki, &pbx, &["*.sys.example.com"], 30);
    let _late = server(&pki, &pbx, &["late.example.com"], 300);
    let r = pbx.resolve(None);
    assert_eq!(pick(&r), (json!(wild.id()), json!("default"), Value::Null));
}

#[test]
fn default_by_latest_not_after_among_server_certs() {
    let pbx = Pbx::new();
    pbx.tenant_add("acme", &["pbx.acme.example.com"]);
    let pki = Pki::new();
    let _a = server(&pki, &pbx, &["a.example.com"], 30);
    let b = server(&pki, &pbx, &["b.example.com"], 300);
    let _c = server(&pki, &pbx, &["c.example.com"], 100);
    // Later domain and STIR/SHAKEN certs are not candidates for the default.
    let _d = domain(&pki, &pbx, &["pbx.acme.example.com"], 900);
    let st = pki.leaf(
        leaf(&["sip.example.com"])
            .valid_days(-1, 1000)
            .tn_auth_list(),
    );
    pki.import(&pbx, &st, &[]);
    let r = pbx.resolve(Some("unknown.example.net"));
    assert_eq!(pick(&r), (json!(b.id()), json!("default"), Value::Null));
    // A system DNS name no cert covers changes nothing.
    pbx.ok_true(&["system", "set", "--dns", "uncovered.example.org"]);
    assert_eq!(pbx.resolve(None)["id"], b.id());
}

#[test]
fn latest_not_after_wins_within_a_step() {
    let pbx = Pbx::new();
    pbx.tenant_add("acme", &["pbx.acme.example.com"]);
    let pki = Pki::new();
    // Later one imported first, then earlier: order must not matter.
    let d_late = domain(&pki, &pbx, &["pbx.acme.example.com"], 300);
    let _d_early = domain(&pki, &pbx, &["pbx.acme.example.com"], 30);
    assert_eq!(pbx.resolve(Some("pbx.acme.example.com"))["id"], d_late.id());

    let _s_early = server(&pki, &pbx, &["www.example.com"], 30);
    let s_late = server(&pki, &pbx, &["www.example.com"], 300);
    assert_eq!(pbx.resolve(Some("www.example.com"))["id"], s_late.id());

    let w_late = server(&pki, &pbx, &["*.wild.example.com"], 200);
    let _w_early = server(&pki, &pbx, &["*.wild.example.com"], 20);
    assert_eq!(pbx.resolve(Some("x.wild.example.com"))["id"], w_late.id());
}

#[test]
fn not_yet_valid_used_only_when_nothing_valid_qualifies() {
    let pbx = Pbx::new();
    pbx.tenant_add("acme", &["pbx.acme.example.com"]);
    let pki = Pki::new();
    // Step 1 has only a not-yet-valid domain cert; step 2 a valid server cert.
    let future_d = pki.leaf(leaf(&["pbx.acme.example.com"]).valid_days(10, 400));
    let v = pki.import(&pbx, &future_d, &[]);
    assert_warning(&v, "not-yet-valid");
    let valid_s = server(&pki, &pbx, &["pbx.acme.example.com"], 30);
    let r = pbx.resolve(Some("pbx.acme.example.com"));
    assert_eq!(
        pick(&r),
        (json!(valid_s.id()), json!("server"), json!("acme"))
    );
    // Nothing valid left: the not-yet-valid domain cert is used.
    pbx.ok_true(&["cert", "delete", &valid_s.id()]);
    let r = pbx.resolve(Some("pbx.acme.example.com"));
    assert_eq!(
        pick(&r),
        (json!(future_d.id()), json!("domain"), json!("acme"))
    );
}

#[test]
fn valid_wildcard_beats_not_yet_valid_exact() {
    let pbx = Pbx::new();
    let pki = Pki::new();
    let future_exact = pki.leaf(leaf(&["www.example.com"]).valid_days(10, 400));
    pki.import(&pbx, &future_exact, &[]);
    let wild = server(&pki, &pbx, &["*.example.com"], 30);
    assert_eq!(pbx.resolve(Some("www.example.com"))["id"], wild.id());
}

#[test]
fn valid_beats_later_not_yet_valid_in_the_same_step() {
    let pbx = Pbx::new();
    let pki = Pki::new();
    let future = pki.leaf(leaf(&["www.example.com"]).valid_days(10, 900));
    pki.import(&pbx, &future, &[]);
    let valid = server(&pki, &pbx, &["www.example.com"], 30);
    assert_eq!(pbx.resolve(Some("www.example.com"))["id"], valid.id());
    // And for the implicit default.
    let r = pbx.resolve(None);
    assert_eq!(pick(&r), (json!(valid.id()), json!("default"), Value::Null));
}

#[test]
fn valid_default_beats_not_yet_valid_domain_cert() {
    // "Expired certs are considered only when no valid cert qualifies at any
    // step": a valid default (step 3) beats an invalid domain cert (step 1).
    let pbx = Pbx::new();
    pbx.tenant_add("acme", &["pbx.acme.example.com"]);
    let pki = Pki::new();
    let future_d = pki.leaf(leaf(&["pbx.acme.example.com"]).valid_days(10, 400));
    pki.import(&pbx, &future_d, &[]);
    let fallback = server(&pki, &pbx, &["fallback.example.net"], 30);
    let r = pbx.resolve(Some("pbx.acme.example.com"));
    assert_eq!(
        pick(&r),
        (json!(fallback.id()), json!("default"), json!("acme"))
    );
}

#[test]
fn only_not_yet_valid_server_certs_still_give_a_default() {
    let pbx = Pbx::new();
    let pki = Pki::new();
    let early = pki.leaf(leaf(&["a.example.com"]).valid_days(5, 100));
    let late = pki.leaf(leaf(&["b.example.com"]).valid_days(5, 200));
    pki.import(&pbx, &early, &[]);
    pki.import(&pbx, &late, &[]);
    let r = pbx.resolve(None);
    assert_eq!(pick(&r), (json!(late.id()), json!("default"), Value::Null));
}

#[test]
fn stir_shaken_and_roots_never_serve() {
    let pbx = Pbx::new();
    pbx.tenant_add("acme", &["sip.acme.example.com"]);
    let pki = Pki::new();
    let st = pki.leaf(leaf(&["sip.acme.example.com", "www.example.com"]).tn_auth_list());
    assert_eq!(pki.import(&pbx, &st, &[])["kind"], "stir-shaken");
    let st2 = pki.leaf(leaf(&["*.example.com"]).tn_auth_list());
    pki.import(&pbx, &st2, &["--kind", "stir-shaken"]);
    let r = root(&format!("Serving Root {}", tag()));
    pbx.import_ok(r.pem(), None, &[]);
    for sni in [Some("sip.acme.example.com"), Some("www.example.com"), None] {
        let res = pbx.resolve(sni);
        assert_eq!(res["id"], Value::Null, "{sni:?}: {res}");
        assert_eq!(res["match"], "none", "{sni:?}: {res}");
    }
    assert_eq!(pbx.resolve(Some("sip.acme.example.com"))["tenant"], "acme");
}

#[test]
fn tenant_field_names_the_owner_of_the_sni() {
    let pbx = Pbx::new();
    pbx.tenant_add("acme", &["pbx.acme.example.com"]);
    let pki = Pki::new();
    let w = server(&pki, &pbx, &["*.acme.example.com"], 90);
    let r = pbx.resolve(Some("pbx.acme.example.com"));
    assert_eq!(pick(&r), (json!(w.id()), json!("server"), json!("acme")));
    let r = pbx.resolve(Some("other.acme.example.com"));
    assert_eq!(pick(&r), (json!(w.id()), json!("server"), Value::Null));
    let r = pbx.resolve(None);
    assert_eq!(pick(&r), (json!(w.id()), json!("default"), Value::Null));
}

#[test]
fn answer_follows_every_change() {
    let pbx = Pbx::new();
    let pki = Pki::new();
    let s = server(&pki, &pbx, &["pbx.acme.example.com"], 90);
    assert_eq!(
        pbx.resolve(Some("pbx.acme.example.com"))["tenant"],
        Value::Null
    );
    pbx.tenant_add("acme", &["pbx.acme.example.com"]);
    assert_eq!(pbx.resolve(Some("pbx.acme.example.com"))["tenant"], "acme");
    let d = domain(&pki, &pbx, &["pbx.acme.example.com"], 30);
    assert_eq!(pbx.resolve(Some("pbx.acme.example.com"))["id"], d.id());
    pbx.ok_true(&["cert", "delete", &d.id()]);
    assert_eq!(pbx.resolve(Some("pbx.acme.example.com"))["id"], s.id());
    pbx.ok_true(&["tenant", "remove", "acme"]);
    assert_eq!(
        pbx.resolve(Some("pbx.acme.example.com"))["tenant"],
        Value::Null
    );
    pbx.ok_true(&["cert", "delete", &s.id()]);
    assert_eq!(pbx.resolve(Some("pbx.acme.example.com"))["match"], "none");
}

#[test]
fn human_resolve_output_names_the_cert() {
    let pbx = Pbx::new();
    let pki = Pki::new();
    let s = server(&pki, &pbx, &["www.example.com"], 90);
    let out = pbx.run(&["resolve", "www.example.com"]);
    out.success();
    assert!(out.stdout.contains(&s.id()[..8]), "{}", out.describe());
}

/// `served`: every tenant name and address, the system name, no SNI and an
/// unknown name, each with the certificate TLS gives it; a tenant name
/// answered by a certificate that does not name it carries
/// `name-not-covered`; of two domain certificates of one tenant the one not
/// served is listed as such; a STIR/SHAKEN choice per tenant.
#[test]
fn served_says_who_gets_which_certificate_and_warns_on_a_mismatch() {
    let pbx = Pbx::new();
    let pki = Pki::new();
    pbx.tenant_add("acme", &["pbx.acme.example.com"]);
    pbx.tenant_add("globex", &["pbx.globex.example.net"]);
    pbx.ok(&["tenant", "add", "lobby", "--ip", "192.0.2.10"]);
    pbx.ok(&["system", "set", "--dns", "pbx.example.org"]);
    let default = server(&pki, &pbx, &["*.example.org"], 90);
    let older = domain(&pki, &pbx, &["pbx.globex.example.net"], 30);
    let newer = domain(&pki, &pbx, &["pbx.globex.example.net"], 60);
    let lobby = domain(&pki, &pbx, &["192.0.2.10"], 60);

    let v = pbx.ok(&["served"]);
    let row = |asked: &str| -> Value {
        v["names"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["asked"] == asked)
            .unwrap_or_else(|| panic!("no row {asked}: {v}"))
            .clone()
    };
    let codes = |r: &Value| -> Vec<String> {
        r["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["code"].as_str().unwrap().to_owned())
            .collect()
    };
    // acme has no certificate: the wildcard default for another domain,
    // which its phones reject.
    let acme = row("pbx.acme.example.com");
    assert_eq!(acme["id"], json!(default.id()));
    assert_eq!(acme["match"], "default");
    assert_eq!(acme["owner"], "acme");
    assert_eq!(codes(&acme), ["name-not-covered"]);
    let globex = row("pbx.globex.example.net");
    assert_eq!(globex["id"], json!(newer.id()));
    assert_eq!(globex["match"], "domain");
    assert!(codes(&globex).is_empty(), "{globex}");
    let by_ip = row("no SNI at 192.0.2.10");
    assert_eq!(by_ip["id"], json!(lobby.id()));
    assert_eq!(by_ip["match"], "address");
    assert!(codes(&by_ip).is_empty(), "{by_ip}");
    let system = row("pbx.example.org");
    assert_eq!(system["id"], json!(default.id()));
    assert!(codes(&system).is_empty(), "the wildcard names it: {system}");
    assert_eq!(row("no SNI")["match"], "default");
    assert_eq!(row("unknown name")["id"], json!(default.id()));
    assert_eq!(v["not_served"], json!([older.id()]));
    let stir: Vec<&str> = v["stir_shaken"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["match"].as_str().unwrap())
        .collect();
    assert_eq!(stir, ["none", "none", "none"]);
    // The text form names the warning too.
    let text = pbx.run(&["served"]);
    assert!(
        text.stdout.contains("warning [name-not-covered]"),
        "{}",
        text.stdout
    );
}

/// `cert delete --dry-run` deletes nothing and says, by the same rule as
/// `served`, what each name the certificate serves would get instead (the
/// page's delete confirmation shows the same).
#[test]
fn a_delete_dry_run_says_what_each_name_gets_instead() {
    let pbx = Pbx::new();
    let pki = Pki::new();
    pbx.tenant_add("acme", &["pbx.acme.example.com"]);
    let default = server(&pki, &pbx, &["pbx.example.org"], 90);
    let own = domain(&pki, &pbx, &["pbx.acme.example.com"], 60);
    let v = pbx.ok(&["cert", "delete", &own.id(), "--dry-run"]);
    assert_eq!(v["cert"]["id"], json!(own.id()));
    let changes = v["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{v}");
    let c = &changes[0];
    assert_eq!(c["now"]["asked"], "pbx.acme.example.com");
    assert_eq!(c["now"]["id"], json!(own.id()));
    assert_eq!(c["instead"]["id"], json!(default.id()));
    assert_eq!(c["instead"]["match"], "default");
    assert_eq!(
        c["instead"]["warnings"][0]["code"], "name-not-covered",
        "{v}"
    );
    // Nothing was deleted.
    assert!(pbx.cert_ids().contains(&own.id()));
    // The default serves several names: each is listed, and with it gone
    // they get nothing.
    let v = pbx.ok(&["cert", "delete", &default.id(), "--dry-run"]);
    let asked: Vec<&str> = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["now"]["asked"].as_str().unwrap())
        .collect();
    assert_eq!(asked, ["no SNI", "unknown name"], "{v}");
    assert!(v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["instead"]["match"] == "none"));
    let text = pbx.run(&["cert", "delete", &own.id(), "--dry-run"]);
    assert!(text.stdout.contains("name-not-covered"), "{}", text.stdout);
}
