//! The Cloudflare DNS provider against a local HTTPS server that follows
//! Cloudflare's documented API v4 (zones by name, TXT `dns_records` POST,
//! list and DELETE, bearer token, the `{"success","errors","result"}`
//! envelope). The server's CA is imported into the Root CA list, so the test
//! also proves the provider trusts exactly that list; the base URL comes from
//! `dns add --api-base`.

#[path = "common/api_provider.rs"]
mod api_provider;
#[path = "common/fake_cloudflare.rs"]
mod fake_cloudflare;
#[path = "common/https_server.rs"]
mod https_server;

use std::path::Path;
use std::sync::{Arc, Mutex};

use api_provider::{cli, trust};
use fake_cloudflare::{start_api, Api, TOKEN, ZONE_ID};

fn add_provider(dir: &Path, base: &str, token: &str) {
    api_provider::add_provider(dir, "cf", "cloudflare", base, token);
}

#[test]
fn cloudflare_adds_the_txt_record_and_removes_exactly_it() {
    let api = Arc::new(Mutex::new(Api::new("example.test")));
    let (base, ca_pem) = start_api(api.clone());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    trust(d, &ca_pem);
    add_provider(d, &base, TOKEN);
    let listed = cli(d, &["dns", "list"]);
    let text = listed.to_string();
    assert!(!text.contains(TOKEN), "token shown: {text}");
    assert_eq!(listed[0]["api_base"], base.as_str());

    // A TXT value of someone else at the same name stays.
    api.lock().unwrap().records.push((
        "f".repeat(32),
        "_acme-challenge.example.test".into(),
        "someone-else".into(),
        120,
    ));
    let store = pbx_certd::ops::open_store(d).unwrap();
    let ch = pbx_certd::dns01::Challenge::prepare(&store, "*.example.test", "dns01-value")
        .unwrap()
        .unwrap();
    assert_eq!(ch.provider_name, "cf");
    smol::block_on(ch.publish()).unwrap();
    {
        let api = api.lock().unwrap();
        assert!(api
            .records
            .iter()
            .any(|r| r.1 == "_acme-challenge.example.test" && r.2 == "dns01-value" && r.3 == 120));
        assert!(api
            .log
            .iter()
            .all(|l| l.ends_with(&format!("Bearer {TOKEN}"))));
        assert!(api.log[0].starts_with("GET /client/v4/zones?name=example.test "));
    }
    smol::block_on(ch.cleanup()).unwrap();
    let api = api.lock().unwrap();
    let left: Vec<&str> = api.records.iter().map(|r| r.2.as_str()).collect();
    assert_eq!(left, ["someone-else"]);
    assert!(api
        .log
        .iter()
        .any(|l| l.starts_with(&format!("DELETE /client/v4/zones/{ZONE_ID}/dns_records/"))));
}

#[test]
fn cloudflare_wrong_token_is_dns_unauthorized_and_an_untrusted_api_is_refused() {
    let api = Arc::new(Mutex::new(Api::new("example.test")));
    let (base, ca_pem) = start_api(api.clone());

    // Trusted, wrong token: the API's 403 → dns-unauthorized.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    trust(d, &ca_pem);
    add_provider(d, &base, "wrong-token-0123456789abcdef");
    let e = api_provider::publish_error(d);
    assert_eq!(e.code(), "dns-unauthorized", "{e}");
    assert!(e.to_string().contains("Invalid access token"), "{e}");
    assert!(api.lock().unwrap().records.is_empty());

    api_provider::assert_untrusted_api_is_refused(
        |d| add_provider(d, &base, TOKEN),
        || api.lock().unwrap().log.len(),
    );
}

#[test]
fn cloudflare_api_base_must_be_https() {
    let dir = tempfile::tempdir().unwrap();
    api_provider::assert_http_api_base_is_refused(
        dir.path(),
        "cf",
        "cloudflare",
        TOKEN,
        "http://127.0.0.1:1/client/v4",
    );
}
