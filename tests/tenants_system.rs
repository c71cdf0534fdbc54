//! `tenant add/list/remove/set` and `system set/show`, including the default
//! cert.

mod common;

use common::*;
use serde_json::{json, Value};

fn tenant_list(pbx: &Pbx) -> Vec<Value> {
    as_array(pbx.ok(&["tenant", "list"]))
}

#[test]
fn tenant_add_and_list() {
    let pbx = Pbx::new();
    assert_eq!(pbx.ok(&["tenant", "list"]), json!([]));
    pbx.tenant_add("acme", &["pbx.acme.example.com", "sip.acme.example.com"]);
    pbx.tenant_add("globex", &["pbx.globex.example.com"]);
    let list = tenant_list(&pbx);
    assert_eq!(list.len(), 2);
    let acme = list
        .iter()
        .find(|t| t["name"] == "acme")
        .expect("acme listed");
    let mut dns = str_list(acme, "dns");
    dns.sort();
    assert_eq!(dns, vec!["pbx.acme.example.com", "sip.acme.example.com"]);
    let globex = list
        .iter()
        .find(|t| t["name"] == "globex")
        .expect("globex listed");
    assert_eq!(str_list(globex, "dns"), vec!["pbx.globex.example.com"]);
}

#[test]
fn tenant_set_acme_options_round_trip_and_errors_are_named() {
    let pbx = Pbx::new();
    pbx.tenant_add("acme", &["pbx.acme.example.com"]);
    pbx.tenant_add("globex", &["pbx.globex.example.com"]);
    let find = |name: &str| {
        tenant_list(&pbx)
            .into_iter()
            .find(|t| t["name"] == name)
            .expect("tenant listed")
    };
    // New tenants follow the global settings.
    assert_eq!(find("acme")["acme_challenge"], "default");
    assert_eq!(find("acme")["acme_key_type"], "default");

    let v = pbx.ok(&[
        "tenant",
        "set",
        "acme",
        "--acme-challenge",
        "tls-alpn-01",
        "--acme-key-type",
        "rsa2048",
    ]);
    assert_eq!(v["acme_challenge"], "tls-alpn-01");
    assert_eq!(v["acme_key_type"], "rsa2048");
    let acme = find("acme");
    assert_eq!(acme["acme_challenge"], "tls-alpn-01");
    assert_eq!(acme["acme_key_type"], "rsa2048");
    assert_eq!(str_list(&acme, "dns"), vec!["pbx.acme.example.com"]);
    // The other tenant is untouched.
    assert_eq!(find("globex")["acme_challenge"], "default");

    // One option alone leaves the other as it is.
    pbx.ok(&["tenant", "set", "acme", "--acme-key-type", "p256"]);
    let acme = find("acme");
    assert_eq!(acme["acme_challenge"], "tls-alpn-01");
    assert_eq!(acme["acme_key_type"], "p256");
    // `default` goes back to following `acme set`.
    pbx.ok(&[
        "tenant",
        "set",
        "acme",
        "--acme-challenge",
        "default",
        "--acme-key-type",
        "default",
    ]);
    let acme = find("acme");
    assert_eq!(acme["acme_challenge"], "default");
    assert_eq!(acme["acme_key_type"], "default");

    // Bad values are named errors and change nothing.
    pbx.ok(&["tenant", "set", "acme", "--acme-challenge", "dns-01"]);
    pbx.err(&["tenant", "set", "acme", "--acme-challenge", "smtp-01"])
        .expect("bad-setting");
    pbx.err(&[
        "tenant",
        "set",
        "acme",
        "--acme-key-type",
        "rsa1024",
        "--acme-challenge",
        "http-01",
    ])
    .expect("unsupported-key-type");
    assert_eq!(find("acme")["acme_challenge"], "dns-01");
    pbx.err(&["tenant", "set", "nobody", "--acme-challenge", "auto"])
        .expect("no-such-tenant");
    // Text output of the list names the non-default choice.
    let text = pbx.run(&["tenant", "list"]);
    text.success();
    assert!(
        text.stdout.contains("acme challenge dns-01"),
        "{}",
        text.stdout
    );
}

#[test]
fn tenant_dns_names_are_case_insensitive_and_ignore_trailing_dot() {
    let pbx = Pbx::new();
    pbx.tenant_add("acme", &["PBX.Acme.Example.COM."]);
    let r = pbx.resolve(Some("pbx.acme.example.com"));
    assert_eq!(r["tenant"], "acme");
    // The same name in another spelling is taken.
    let e = pbx.err(&["tenant", "add", "other", "--dns", "pbx.acme.example.com"]);
    e.expect("dns-name-taken");
}

/// An IP address is not a DNS name: a tenant or system name that is one
/// would be ordered as a `dns` identifier, which every CA refuses, forever
/// (issue 11, defect 4). Refused at the input with `bad-name`, saying why.
#[test]
fn an_ip_address_is_refused_as_a_dns_name() {
    let pbx = Pbx::new();
    for ip in ["192.0.2.10", "192.0.2.10.", "2001:db8::1"] {
        let e = pbx.err(&["tenant", "add", "t", "--dns", ip]);
        e.expect("bad-name");
        assert!(e.message.contains("IP address"), "{ip}: {}", e.message);
        assert!(e.message.contains("--ip"), "{ip}: {}", e.message);
        let e = pbx.err(&["system", "set", "--dns", ip]);
        e.expect("bad-name");
    }
    assert!(tenant_list(&pbx).is_empty());
    // A name that only starts with digits is a name.
    pbx.tenant_add("t", &["10.example.com"]);
}

#[test]
fn a_tenant_owns_ip_addresses_given_with_ip() {
    let pbx = Pbx::new();
    pbx.ok(&[
        "tenant",
        "add",
        "phones",
        "--dns",
        "pbx.phones.example.com",
        "--ip",
        "192.0.2.10",
        "--ip",
        "2001:DB8:0:0::10",
    ]);
    // IP-only tenants are fine: phones provisioned by address.
    pbx.ok(&["tenant", "add", "lobby", "--ip", "198.51.100.7"]);
    let list = tenant_list(&pbx);
    let phones = list.iter().find(|t| t["name"] == "phones").unwrap();
    assert_eq!(str_list(phones, "dns"), vec!["pbx.phones.example.com"]);
    // One text form (RFC 5952 for IPv6).
    assert_eq!(str_list(phones, "ip"), vec!["192.0.2.10", "2001:db8::10"]);
    // An address belongs to one tenant, in any spelling.
    pbx.err(&["tenant", "add", "other", "--ip", "2001:db8::0:10"])
        .expect("dns-name-taken");
    pbx.err(&["tenant", "add", "other", "--ip", "pbx.example.com"])
        .expect("bad-name");
    pbx.err(&["tenant", "add", "other", "--ip", "192.0.2.300"])
        .expect("bad-name");
    // A tenant owns at least one name.
    let out = pbx.run(&["tenant", "add", "empty"]);
    assert_ne!(out.status, 0, "tenant add without --dns or --ip");
    assert_eq!(tenant_list(&pbx).len(), 2);
    // The text listing shows the addresses too.
    let text = pbx.run(&["tenant", "list"]);
    assert!(text.stdout.contains("198.51.100.7"), "{}", text.stdout);
}

#[test]
fn tenant_exists() {
    let pbx = Pbx::new();
    pbx.tenant_add("acme", &["pbx.acme.example.com"]);
    pbx.err(&["tenant", "add", "acme", "--dns", "other.example.com"])
        .expect("tenant-exists");
    let list = tenant_list(&pbx);
    assert_eq!(list.len(), 1);
    assert_eq!(str_list(&list[0], "dns"), vec!["pbx.acme.example.com"]);
}

#[test]
fn dns_name_taken() {
    let pbx = Pbx::new();
    pbx.tenant_add("acme", &["pbx.acme.example.com"]);
    pbx.err(&[
        "tenant",
        "add",
        "globex",
        "--dns",
        "pbx.globex.example.com",
        "--dns",
        "pbx.acme.example.com",
    ])
    .expect("dns-name-taken");
    assert_eq!(tenant_list(&pbx).len(), 1, "nothing added");
}

#[test]
fn bad_names() {
    let pbx = Pbx::new();
    for dns in [
        "bad name.example.com",
        "a..example.com",
        "exa$mple.com",
        "*.*.example.com",
    ] {
        pbx.err(&["tenant", "add", "acme", "--dns", dns])
            .expect("bad-name");
    }
    let long_label = format!("{}.example.com", "a".repeat(64));
    pbx.err(&["tenant", "add", "acme", "--dns", &long_label])
        .expect("bad-name");
    let too_long_tenant = "t".repeat(65);
    pbx.err(&["tenant", "add", &too_long_tenant, "--dns", "ok.example.com"])
        .expect("bad-name");
    pbx.err(&["tenant", "add", "", "--dns", "ok.example.com"])
        .expect("bad-name");
    // Path-like names (they appear in /api/tenants/{name} URLs) and names
    // that do not start with a letter or digit.
    for name in [".", "..", ".hidden", "_t", "a/b"] {
        pbx.err(&["tenant", "add", name, "--dns", "ok.example.com"])
            .expect("bad-name");
    }
    assert_eq!(pbx.ok(&["tenant", "list"]), json!([]));
}

#[test]
fn tenant_add_without_dns_is_a_usage_error() {
    let pbx = Pbx::new();
    pbx.run_json(&["tenant", "add", "acme"]).usage_error();
    pbx.run_json(&["tenant", "add"]).usage_error();
}

#[test]
fn tenant_remove() {
    let pbx = Pbx::new();
    pbx.tenant_add("acme", &["pbx.acme.example.com"]);
    pbx.tenant_add("globex", &["pbx.globex.example.com"]);
    pbx.ok_true(&["tenant", "remove", "acme"]);
    let list = tenant_list(&pbx);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["name"], "globex");
    pbx.err(&["tenant", "remove", "acme"])
        .expect("no-such-tenant");
    // Its DNS name is free again.
    pbx.tenant_add("initech", &["pbx.acme.example.com"]);
}

#[test]
fn tenant_in_use_until_its_domain_certs_are_gone() {
    let pbx = Pbx::new();
    pbx.tenant_add("acme", &["pbx.acme.example.com"]);
    let pki = Pki::new();
    let d = pki.leaf(leaf(&["pbx.acme.example.com"]));
    assert_eq!(pki.import(&pbx, &d, &[])["kind"], "domain");
    pbx.err(&["tenant", "remove", "acme"])
        .expect("tenant-in-use");
    assert_eq!(tenant_list(&pbx).len(), 1);
    pbx.ok_true(&["cert", "delete", &d.id()]);
    pbx.ok_true(&["tenant", "remove", "acme"]);
    assert_eq!(pbx.ok(&["tenant", "list"]), json!([]));
}

/// `tenant remove --dry-run` (the web admin's confirmation): its
/// certificates and what each of its names gets once it is gone; nothing
/// is removed.
#[test]
fn tenant_remove_dry_run_names_its_certificates_and_what_its_names_get() {
    let pbx = Pbx::new();
    pbx.tenant_add("acme", &["pbx.acme.example.com"]);
    let pki = Pki::new();
    let d = pki.leaf(leaf(&["pbx.acme.example.com"]));
    assert_eq!(pki.import(&pbx, &d, &[])["kind"], "domain");
    let s = pki.leaf(leaf(&["*.acme.example.com"]));
    assert_eq!(pki.import(&pbx, &s, &[])["kind"], "server");
    let v = pbx.ok(&["tenant", "remove", "acme", "--dry-run"]);
    assert_eq!(v["tenant"]["name"], "acme");
    let certs = as_array(v["certs"].clone());
    assert_eq!(certs.len(), 1, "{v}");
    assert_eq!(certs[0]["id"], d.id());
    let row = as_array(v["changes"].clone())
        .into_iter()
        .find(|c| c["now"]["asked"] == "pbx.acme.example.com")
        .unwrap_or_else(|| panic!("its name is listed: {v}"));
    assert_eq!(row["now"]["id"], d.id());
    assert_eq!(tenant_list(&pbx).len(), 1, "a dry run removes nothing");

    pbx.ok_true(&["cert", "delete", &d.id()]);
    let v = pbx.ok(&["tenant", "remove", "acme", "--dry-run"]);
    let row = as_array(v["changes"].clone())
        .into_iter()
        .find(|c| c["now"]["asked"] == "pbx.acme.example.com")
        .unwrap_or_else(|| panic!("its name is listed: {v}"));
    assert_eq!(row["instead"]["id"], s.id(), "the wildcard still covers it");
    assert_eq!(row["instead"]["warnings"], json!([]));
    pbx.err(&["tenant", "remove", "nobody", "--dry-run"])
        .expect("no-such-tenant");
}

/// `tenant edit` (= `tenant set`): new DNS names and addresses while the
/// tenant owns a certificate (which stays its own), names re-checked
/// against the other tenants (`dns-name-taken`, nothing changed), `--ip
/// none` empties the addresses.
#[test]
fn tenant_edit_replaces_names_while_it_owns_certificates() {
    let pbx = Pbx::new();
    pbx.tenant_add("acme", &["pbx.acme.example.com"]);
    pbx.tenant_add("globex", &["pbx.globex.example.com"]);
    let pki = Pki::new();
    let d = pki.leaf(leaf(&["pbx.acme.example.com"]));
    assert_eq!(pki.import(&pbx, &d, &[])["tenant"], "acme");
    let v = pbx.ok(&[
        "tenant",
        "edit",
        "acme",
        "--dns",
        "pbx.acme.example.com",
        "--dns",
        "SIP.acme.example.com.",
        "--ip",
        "192.0.2.5",
        "--challenge",
        "dns-01",
    ]);
    assert_eq!(
        str_list(&v, "dns"),
        vec!["pbx.acme.example.com", "sip.acme.example.com"]
    );
    assert_eq!(str_list(&v, "ip"), vec!["192.0.2.5"]);
    assert_eq!(v["acme_challenge"], "dns-01");
    assert_eq!(by_id(&pbx.certs(), &d.id())["tenant"], "acme");

    pbx.err(&["tenant", "edit", "acme", "--dns", "pbx.globex.example.com"])
        .expect("dns-name-taken");
    let acme = tenant_list(&pbx)
        .into_iter()
        .find(|t| t["name"] == "acme")
        .expect("acme");
    assert_eq!(
        str_list(&acme, "dns").len(),
        2,
        "a refused edit changes nothing"
    );

    let v = pbx.ok(&["tenant", "edit", "acme", "--ip", "none"]);
    assert_eq!(str_list(&v, "ip"), Vec::<String>::new());
    assert_eq!(str_list(&v, "dns").len(), 2, "--ip alone keeps the names");
    pbx.err(&["tenant", "edit", "nobody", "--dns", "x.example.com"])
        .expect("no-such-tenant");
}

#[test]
fn server_certs_do_not_keep_a_tenant_in_use() {
    let pbx = Pbx::new();
    pbx.tenant_add("acme", &["pbx.acme.example.com"]);
    let pki = Pki::new();
    let s = pki.leaf(leaf(&["*.acme.example.com"]));
    assert_eq!(pki.import(&pbx, &s, &[])["kind"], "server");
    pbx.ok_true(&["tenant", "remove", "acme"]);
}

#[test]
fn system_set_and_show() {
    let pbx = Pbx::new();
    let v = pbx.system();
    for k in [
        "dns",
        "admin_email",
        "default_cert",
        "roots_update_available",
    ] {
        assert!(v.get(k).is_some(), "system show without {k}: {v}");
    }
    assert_eq!(v["default_cert"], Value::Null);
    assert_eq!(v["roots_update_available"], false);
    pbx.ok_true(&[
        "system",
        "set",
        "--dns",
        "pbx.example.com",
        "--admin-email",
        "admin@example.com",
    ]);
    let v = pbx.system();
    assert_eq!(v["dns"], "pbx.example.com");
    assert_eq!(v["admin_email"], "admin@example.com");
    // Setting one field keeps the others.
    pbx.ok_true(&["system", "set", "--admin-email", "noc@example.com"]);
    let v = pbx.system();
    assert_eq!(v["dns"], "pbx.example.com");
    assert_eq!(v["admin_email"], "noc@example.com");
    // Human output mentions the values.
    let out = pbx.run(&["system", "show"]);
    out.success();
    assert!(out.stdout.contains("pbx.example.com"), "{}", out.describe());
}

#[test]
fn system_set_bad_dns_name() {
    let pbx = Pbx::new();
    let before = pbx.system();
    pbx.err(&["system", "set", "--dns", "not a name"])
        .expect("bad-name");
    assert_eq!(pbx.system(), before);
}

#[test]
fn default_cert_set_cleared_by_none_and_by_delete() {
    let pbx = Pbx::new();
    let pki = Pki::new();
    let a = pki.leaf(leaf(&["a.example.com"]).valid_days(-1, 30));
    let b = pki.leaf(leaf(&["b.example.com"]).valid_days(-1, 60));
    pki.import(&pbx, &a, &[]);
    pki.import(&pbx, &b, &[]);
    pbx.ok_true(&["system", "set", "--default-cert", &a.id()]);
    assert_eq!(pbx.system()["default_cert"], a.id());
    let r = pbx.resolve(None);
    assert_eq!(
        (r["id"].clone(), r["match"].clone()),
        (json!(a.id()), json!("default"))
    );

    pbx.ok_true(&["system", "set", "--default-cert", "none"]);
    assert_eq!(pbx.system()["default_cert"], Value::Null);
    // Back to the latest not_after.
    assert_eq!(pbx.resolve(None)["id"], b.id());

    pbx.ok_true(&["system", "set", "--default-cert", &a.id()[..10]]);
    assert_eq!(pbx.system()["default_cert"], a.id());
    pbx.ok_true(&["cert", "delete", &a.id()]);
    assert_eq!(pbx.system()["default_cert"], Value::Null);
    assert_eq!(pbx.resolve(None)["id"], b.id());
}

#[test]
fn default_cert_may_be_a_domain_cert() {
    let pbx = Pbx::new();
    pbx.tenant_add("acme", &["pbx.acme.example.com"]);
    let pki = Pki::new();
    let d = pki.leaf(leaf(&["pbx.acme.example.com"]));
    pki.import(&pbx, &d, &[]);
    pbx.ok_true(&["system", "set", "--default-cert", &d.id()]);
    let r = pbx.resolve(Some("unknown.example.net"));
    assert_eq!(r["id"], d.id());
    assert_eq!(r["match"], "default");
}

#[test]
fn default_cert_errors() {
    let pbx = Pbx::new();
    let pki = Pki::new();
    let st = pki.leaf(leaf(&["sip.example.com"]).tn_auth_list());
    pki.import(&pbx, &st, &[]);
    pbx.err(&["system", "set", "--default-cert", &st.id()])
        .expect("not-servable");
    pbx.err(&["system", "set", "--default-cert", &sha256_hex(b"nothing")])
        .expect("not-found");
    pbx.run_json(&["system", "set", "--default-cert", "abc"])
        .usage_error();
    assert_eq!(pbx.system()["default_cert"], Value::Null);
}

#[test]
fn failed_system_set_changes_nothing() {
    let pbx = Pbx::new();
    pbx.ok_true(&["system", "set", "--dns", "pbx.example.com"]);
    // One bad value among good ones: nothing applied.
    pbx.err(&[
        "system",
        "set",
        "--dns",
        "other.example.com",
        "--default-cert",
        &sha256_hex(b"nothing"),
    ])
    .expect("not-found");
    assert_eq!(pbx.system()["dns"], "pbx.example.com");
}
