//! The Cloudflare DNS provider against a local HTTPS server that follows
//! Cloudflare's documented API v4 (zones by name, TXT `dns_records` POST,
//! list and DELETE, bearer token, the `{"success","errors","result"}`
//! envelope). The server's CA is imported into the Root CA list, so the test
//! also proves the provider trusts exactly that list; the base URL comes from
//! `dns add --api-base`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_pbx-certd");
const ZONE_ID: &str = "023e105f4ecef8ad9ca31a8372d0c353";
const TOKEN: &str = "good-token-0123456789abcdef";

#[derive(Default)]
struct Api {
    /// (id, name, content, ttl)
    records: Vec<(String, String, String, u64)>,
    /// "METHOD PATH AUTHORIZATION" of every request.
    log: Vec<String>,
    next: u32,
}

fn reply(status: u16, body: Value) -> (u16, Value) {
    (status, body)
}

fn ok(result: Value) -> (u16, Value) {
    reply(
        200,
        json!({"success": true, "errors": [], "messages": [], "result": result}),
    )
}

fn handle(api: &mut Api, method: &str, path: &str, auth: &str, body: &[u8]) -> (u16, Value) {
    api.log.push(format!("{method} {path} {auth}"));
    if auth != format!("Bearer {TOKEN}") {
        return reply(
            403,
            json!({"success": false, "errors": [{"code": 9109, "message": "Invalid access token"}],
                   "messages": [], "result": null}),
        );
    }
    let Some(rest) = path.strip_prefix("/client/v4") else {
        return reply(404, json!({"success": false, "errors": [], "result": null}));
    };
    let (route, query) = rest.split_once('?').unwrap_or((rest, ""));
    let q: HashMap<&str, &str> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let records = format!("/zones/{ZONE_ID}/dns_records");
    match (method, route) {
        ("GET", "/zones") => {
            let zones = if q.get("name") == Some(&"example.test") {
                json!([{"id": ZONE_ID, "name": "example.test", "status": "active", "name_servers": []}])
            } else {
                json!([])
            };
            ok(zones)
        }
        ("POST", r) if r == records => {
            let b: Value = serde_json::from_slice(body).unwrap();
            assert_eq!(b["type"], "TXT");
            api.next += 1;
            let id = format!("{:032x}", api.next);
            api.records.push((
                id.clone(),
                b["name"].as_str().unwrap().to_owned(),
                b["content"].as_str().unwrap().to_owned(),
                b["ttl"].as_u64().unwrap(),
            ));
            ok(json!({"id": id, "type": "TXT", "name": b["name"], "content": b["content"]}))
        }
        ("GET", r) if r == records => {
            let list: Vec<Value> = api
                .records
                .iter()
                .filter(|r| q.get("name").is_none_or(|n| *n == r.1))
                // Cloudflare shows TXT content quoted.
                .map(|r| json!({"id": r.0, "type": "TXT", "name": r.1, "content": format!("\"{}\"", r.2)}))
                .collect();
            ok(json!(list))
        }
        ("DELETE", r) if r.starts_with(&format!("{records}/")) => {
            let id = &r[records.len() + 1..];
            let before = api.records.len();
            api.records.retain(|r| r.0 != id);
            if api.records.len() == before {
                return reply(
                    404,
                    json!({"success": false, "errors": [{"code": 81044, "message": "Record does not exist."}], "result": null}),
                );
            }
            ok(json!({"id": id}))
        }
        _ => reply(404, json!({"success": false, "errors": [], "result": null})),
    }
}

/// Start the fake API over HTTPS on 127.0.0.1; its base URL and the CA PEM.
fn start_api(api: Arc<Mutex<Api>>) -> (String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "fake Cloudflare API CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { continue };
            let conn = rustls::ServerConnection::new(config.clone()).unwrap();
            let stream = rustls::StreamOwned::new(conn, tcp);
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue; // e.g. a client that does not trust us
            }
            let mut parts = line.split_whitespace();
            let (method, path) = (
                parts.next().unwrap_or("").to_owned(),
                parts.next().unwrap_or("").to_owned(),
            );
            let (mut auth, mut len) = (String::new(), 0usize);
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    match k.trim().to_ascii_lowercase().as_str() {
                        "authorization" => auth = v.trim().to_owned(),
                        "content-length" => len = v.trim().parse().unwrap_or(0),
                        _ => {}
                    }
                }
            }
            let mut body = vec![0; len];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let (status, json) = handle(&mut api.lock().unwrap(), &method, &path, &auth, &body);
            let text = json.to_string();
            let mut stream = reader.into_inner();
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
            let _ = stream.flush();
            stream.conn.send_close_notify();
            let _ = stream.flush();
        }
    });
    (format!("https://127.0.0.1:{port}/client/v4"), ca.pem())
}

fn cli(dir: &Path, args: &[&str]) -> Value {
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn add_provider(dir: &Path, base: &str, token: &str) {
    cli(
        dir,
        &[
            "dns",
            "add",
            "cf",
            "--provider",
            "cloudflare",
            "--zone",
            "example.test",
            "--token",
            token,
            "--api-base",
            base,
        ],
    );
    cli(dir, &["dns", "set", "--check-ns", "false"]);
}

#[test]
fn cloudflare_adds_the_txt_record_and_removes_exactly_it() {
    let api = Arc::new(Mutex::new(Api::default()));
    let (base, ca_pem) = start_api(api.clone());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = d.join("api-ca.pem");
    std::fs::write(&ca, &ca_pem).unwrap();
    cli(
        d,
        &["import", "--cert", ca.to_str().unwrap(), "--kind", "root"],
    );
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
    let store = pbx_certd::Store::open(d).unwrap();
    let ch = pbx_certd::dns::Challenge::prepare(&store, "*.example.test", "dns01-value")
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
    let api = Arc::new(Mutex::new(Api::default()));
    let (base, ca_pem) = start_api(api.clone());

    // Trusted, wrong token: the API's 403 → dns-unauthorized.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = d.join("api-ca.pem");
    std::fs::write(&ca, &ca_pem).unwrap();
    cli(
        d,
        &["import", "--cert", ca.to_str().unwrap(), "--kind", "root"],
    );
    add_provider(d, &base, "wrong-token-0123456789abcdef");
    let store = pbx_certd::Store::open(d).unwrap();
    let ch = pbx_certd::dns::Challenge::prepare(&store, "pbx.example.test", "v")
        .unwrap()
        .unwrap();
    let e = smol::block_on(ch.publish()).unwrap_err();
    assert_eq!(e.code(), "dns-unauthorized", "{e}");
    assert!(e.to_string().contains("Invalid access token"), "{e}");
    assert!(api.lock().unwrap().records.is_empty());

    // The API's CA not in the Root CA list: the TLS handshake fails, no
    // request (and no token) reaches the server.
    let dir2 = tempfile::tempdir().unwrap();
    add_provider(dir2.path(), &base, TOKEN);
    let store2 = pbx_certd::Store::open(dir2.path()).unwrap();
    let requests = api.lock().unwrap().log.len();
    let ch = pbx_certd::dns::Challenge::prepare(&store2, "pbx.example.test", "v")
        .unwrap()
        .unwrap();
    let e = smol::block_on(ch.publish()).unwrap_err();
    assert_eq!(e.code(), "dns-io", "{e}");
    assert!(e.to_string().contains("TLS"), "{e}");
    assert_eq!(api.lock().unwrap().log.len(), requests);
}

#[test]
fn cloudflare_api_base_must_be_https() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "dns",
            "add",
            "cf",
            "--provider",
            "cloudflare",
            "--zone",
            "example.test",
        ])
        .args([
            "--token",
            TOKEN,
            "--api-base",
            "http://127.0.0.1:1/client/v4",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["code"], "bad-dns-config", "{v}");
}
