//! The DigitalOcean DNS provider against a local HTTPS server that follows
//! DigitalOcean's documented API v2 (`tests/common/fake_digitalocean.rs`:
//! record names relative to the domain, the list filter taking the full
//! name, DELETE → 204, bearer token, `{"id","message"}` errors). The
//! server's CA is imported into the Root CA list, so the tests also prove the
//! provider trusts exactly that list; the base URL comes from
//! `dns add --api-base`.

#[path = "common/api_provider.rs"]
mod api_provider;
#[path = "common/fake_digitalocean.rs"]
mod fake_digitalocean;
#[path = "common/https_server.rs"]
mod https_server;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use api_provider::{cli, trust, BIN};
use fake_digitalocean::{start_api, Api, TOKEN};

fn add_provider(dir: &Path, base: &str, token: &str) {
    api_provider::add_provider(dir, "do", "digitalocean", base, token);
}

fn started() -> (Arc<Mutex<Api>>, String, String) {
    let api = Arc::new(Mutex::new(Api::new("example.test")));
    let (base, ca_pem) = start_api(api.clone());
    (api, base, ca_pem)
}

#[test]
fn digitalocean_adds_the_apex_wildcard_record_relative_to_the_zone_and_removes_exactly_it() {
    let (api, base, ca_pem) = started();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    trust(d, &ca_pem);
    // The token from stdin (`--token -`), masked in the listing.
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(d)
        .args(["dns", "add", "do", "--provider", "digitalocean"])
        .args([
            "--zone",
            "example.test",
            "--token",
            "-",
            "--api-base",
            &base,
        ])
        .arg("--json")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{TOKEN}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    cli(d, &["dns", "set", "--check-ns", "false"]);
    let listed = cli(d, &["dns", "list"]);
    let text = listed.to_string();
    assert!(!text.contains(TOKEN), "token shown: {text}");
    assert_eq!(listed[0]["provider"], "digitalocean");
    assert_eq!(listed[0]["api_base"], base.as_str());

    // A TXT value of someone else at the same name stays.
    api.lock()
        .unwrap()
        .records
        .push((7, "_acme-challenge".into(), "someone-else".into(), 300));
    let store = pbx_certd::ops::open_store(d).unwrap();
    let ch = pbx_certd::dns01::Challenge::prepare(&store, "*.example.test", "dns01-value")
        .unwrap()
        .unwrap();
    assert_eq!(ch.provider_name, "do");
    smol::block_on(ch.publish()).unwrap();
    {
        let api = api.lock().unwrap();
        // The zone apex wildcard's record: the name relative to the domain.
        assert!(
            api.records
                .iter()
                .any(|r| r.1 == "_acme-challenge" && r.2 == "dns01-value" && r.3 == 60),
            "{:?}",
            api.records
        );
        assert!(api
            .log
            .iter()
            .all(|l| l.ends_with(&format!("Bearer {TOKEN}"))));
        assert!(api.log[0].starts_with("GET /v2/domains/example.test "));
        assert!(api.log[1].starts_with("POST /v2/domains/example.test/records "));
    }
    smol::block_on(ch.cleanup()).unwrap();
    let api = api.lock().unwrap();
    let left: Vec<&str> = api.records.iter().map(|r| r.2.as_str()).collect();
    assert_eq!(left, ["someone-else"]);
    assert!(api.log.iter().any(|l| l.starts_with(
        "GET /v2/domains/example.test/records?type=TXT&name=_acme-challenge.example.test&"
    )));
    assert!(api
        .log
        .iter()
        .any(|l| l.starts_with("DELETE /v2/domains/example.test/records/1001 ")));
    assert!(!api.log.iter().any(|l| l.contains("/records/7 ")));
}

#[test]
fn digitalocean_names_deeper_in_the_zone_are_relative_and_name_servers_come_from_the_zone_file() {
    let (api, base, ca_pem) = started();
    api.lock().unwrap().zone_file.push_str(
        "example.test. 1800 IN NS ns1.digitalocean.com.\n\
         example.test. 1800 IN NS ns2.digitalocean.com.\n\
         a.example.test. 1800 IN NS ns.delegated.test.\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    trust(d, &ca_pem);
    add_provider(d, &base, TOKEN);
    let store = pbx_certd::ops::open_store(d).unwrap();
    let entry = pbx_certd::dns::provider_for(&store, "pbx.a.example.test")
        .unwrap()
        .unwrap();
    let p = entry.provider(&store).unwrap();
    let fqdn = pbx_certd::dns::challenge_name("pbx.a.example.test");
    // Same name, another value (e.g. an earlier order): stays.
    smol::block_on(p.add_txt(&fqdn, "other")).unwrap();
    smol::block_on(p.add_txt(&fqdn, "ours")).unwrap();
    assert_eq!(
        p.authoritative_servers(),
        ["ns1.digitalocean.com:53", "ns2.digitalocean.com:53"]
    );
    {
        let api = api.lock().unwrap();
        let names: Vec<&str> = api.records.iter().map(|r| r.1.as_str()).collect();
        assert_eq!(names, ["_acme-challenge.pbx.a", "_acme-challenge.pbx.a"]);
    }
    smol::block_on(p.remove_txt(&fqdn, "ours")).unwrap();
    // Removing again: absent is fine.
    smol::block_on(p.remove_txt(&fqdn, "ours")).unwrap();
    let n = {
        let api = api.lock().unwrap();
        let left: Vec<&str> = api.records.iter().map(|r| r.2.as_str()).collect();
        assert_eq!(left, ["other"]);
        api.log.len()
    };
    // A name outside the zone is refused before any request.
    let e = smol::block_on(p.add_txt("_acme-challenge.other.test", "v")).unwrap_err();
    assert_eq!(e.code(), "dns-not-in-zone", "{e}");
    assert_eq!(api.lock().unwrap().log.len(), n);
}

#[test]
fn digitalocean_wrong_token_is_dns_unauthorized_and_an_untrusted_api_is_refused() {
    let (api, base, ca_pem) = started();

    // Trusted, wrong token: the API's 401 → dns-unauthorized.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    trust(d, &ca_pem);
    add_provider(d, &base, "dop_v1_wrong0123456789abcdef");
    let e = api_provider::publish_error(d);
    assert_eq!(e.code(), "dns-unauthorized", "{e}");
    assert!(e.to_string().contains("Unable to authenticate you"), "{e}");
    assert!(api.lock().unwrap().records.is_empty());

    api_provider::assert_untrusted_api_is_refused(
        |d| add_provider(d, &base, TOKEN),
        || api.lock().unwrap().log.len(),
    );
}

#[test]
fn digitalocean_unknown_domain_and_garbage_answers_are_named_errors() {
    let (api, base, ca_pem) = started();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    trust(d, &ca_pem);
    // A provider for a zone the account does not have: 404 → bad-dns-config.
    cli(
        d,
        &[
            "dns",
            "add",
            "other",
            "--provider",
            "digitalocean",
            "--zone",
            "other.test",
            "--token",
            TOKEN,
            "--api-base",
            &base,
        ],
    );
    add_provider(d, &base, TOKEN);
    let store = pbx_certd::ops::open_store(d).unwrap();
    let ch = pbx_certd::dns01::Challenge::prepare(&store, "x.other.test", "v")
        .unwrap()
        .unwrap();
    let e = smol::block_on(ch.publish()).unwrap_err();
    assert_eq!(e.code(), "bad-dns-config", "{e}");
    assert!(e.to_string().contains("no domain other.test"), "{e}");

    let ch = pbx_certd::dns01::Challenge::prepare(&store, "pbx.example.test", "v")
        .unwrap()
        .unwrap();
    for garbage in [
        "<html>not json</html>",
        "[1,2,3]",
        r#"{"domain":{"name":"evil.test"}}"#,
        r#"{"domain_records":"nope","domain":7}"#,
        "{\"domain\":{\"name\":\"example.test\",\"zone_file\":\"\\u0000 NS \\u00ff\"}}",
    ] {
        api.lock().unwrap().garbage = Some(garbage.to_owned());
        let e = smol::block_on(ch.publish()).unwrap_err();
        assert_eq!(e.code(), "dns-bad-response", "{garbage}: {e}");
        let e = smol::block_on(ch.cleanup()).unwrap_err();
        assert_eq!(e.code(), "dns-bad-response", "{garbage}: {e}");
    }
    assert!(api.lock().unwrap().records.is_empty());
}

#[test]
fn digitalocean_api_base_must_be_https() {
    let dir = tempfile::tempdir().unwrap();
    api_provider::assert_http_api_base_is_refused(
        dir.path(),
        "do",
        "digitalocean",
        TOKEN,
        "http://127.0.0.1:1/v2",
    );
    // Without --token the CLI refuses (usage error).
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["dns", "add", "do", "--provider", "digitalocean"])
        .args(["--zone", "example.test"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(cli(dir.path(), &["dns", "list"])
        .as_array()
        .unwrap()
        .is_empty());
}
