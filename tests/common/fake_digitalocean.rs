//! A local HTTPS server that follows DigitalOcean's documented API v2
//! (`GET /v2/domains/ZONE` with its `zone_file`, TXT records by `POST
//! /v2/domains/ZONE/records` with a name RELATIVE to the zone or `@`, `GET
//! .../records?type=TXT&name=FQDN` answering relative names, `DELETE
//! .../records/ID` → 204, bearer token, errors `{"id","message"}` with the
//! HTTP status), for the DigitalOcean provider's tests. Its own CA (made
//! here) must be imported into the Root CA list. `Api::on_change` mirrors
//! each added/removed TXT record (by its full name) elsewhere. The TLS
//! server loop is the one of `fake_cloudflare.rs`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

/// A change hook: (`"add"` or `"delete"`, full record name, data).
pub type OnChange = Box<dyn Fn(&str, &str, &str) + Send>;

pub const TOKEN: &str = "dop_v1_good0123456789abcdef0123456789";

/// The fake API's state.
pub struct Api {
    /// The one domain it has.
    pub zone: String,
    /// Its zone file (as `GET /v2/domains/ZONE` returns it).
    pub zone_file: String,
    /// (id, name relative to the zone or "@", data, ttl)
    pub records: Vec<(u64, String, String, u64)>,
    /// "METHOD PATH AUTHORIZATION" of every request.
    pub log: Vec<String>,
    /// Answer every request with 200 and this body instead (untrusted-input tests).
    pub garbage: Option<String>,
    next: u64,
    /// Called for every record added or deleted.
    pub on_change: Option<OnChange>,
}

impl Api {
    /// An API with the one domain `zone` (its zone file has no NS records).
    pub fn new(zone: &str) -> Api {
        Api {
            zone: zone.to_owned(),
            zone_file: format!("$ORIGIN {zone}.\n$TTL 1800\n{zone}. IN SOA ns.invalid. hostmaster.{zone}. 1 10800 3600 604800 1800\n"),
            records: Vec::new(),
            log: Vec::new(),
            garbage: None,
            next: 1000,
            on_change: None,
        }
    }

    /// The full name of a relative record name.
    pub fn fqdn(&self, rel: &str) -> String {
        if rel == "@" {
            self.zone.clone()
        } else {
            format!("{rel}.{}", self.zone)
        }
    }
}

fn err(status: u16, id: &str, message: &str) -> (u16, String) {
    (status, json!({"id": id, "message": message}).to_string())
}

fn record_json(r: &(u64, String, String, u64)) -> Value {
    json!({"id": r.0, "type": "TXT", "name": r.1, "data": r.2, "priority": null,
           "port": null, "ttl": r.3, "weight": null, "flags": null, "tag": null})
}

fn handle(api: &mut Api, method: &str, path: &str, auth: &str, body: &[u8]) -> (u16, String) {
    api.log.push(format!("{method} {path} {auth}"));
    if let Some(g) = &api.garbage {
        return (200, g.clone());
    }
    if auth != format!("Bearer {TOKEN}") {
        return err(401, "unauthorized", "Unable to authenticate you");
    }
    let not_found = || {
        err(
            404,
            "not_found",
            "The resource you were accessing could not be found.",
        )
    };
    let Some(rest) = path.strip_prefix("/v2") else {
        return not_found();
    };
    let (route, query) = rest.split_once('?').unwrap_or((rest, ""));
    let q: HashMap<&str, &str> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let domain = format!("/domains/{}", api.zone);
    let records = format!("{domain}/records");
    match (method, route) {
        ("GET", r) if r == domain => (
            200,
            json!({"domain": {"name": api.zone, "ttl": 1800, "zone_file": api.zone_file}})
                .to_string(),
        ),
        ("POST", r) if r == records => {
            let b: Value = serde_json::from_slice(body).unwrap();
            let (Some("TXT"), Some(name), Some(data), Some(ttl)) = (
                b["type"].as_str(),
                b["name"].as_str(),
                b["data"].as_str(),
                b["ttl"].as_u64(),
            ) else {
                return err(
                    422,
                    "unprocessable_entity",
                    "type, name, data and ttl are required",
                );
            };
            if ttl < 30 {
                return err(422, "unprocessable_entity", "TTL must be at least 30");
            }
            api.next += 1;
            let rec = (api.next, name.to_owned(), data.to_owned(), ttl);
            let full = api.fqdn(name);
            if let Some(hook) = &api.on_change {
                hook("add", &full, data);
            }
            let out = json!({"domain_record": record_json(&rec)}).to_string();
            api.records.push(rec);
            (201, out)
        }
        ("GET", r) if r == records => {
            let list: Vec<Value> = api
                .records
                .iter()
                .filter(|r| q.get("name").is_none_or(|n| *n == api.fqdn(&r.1)))
                .filter(|_| q.get("type").is_none_or(|t| *t == "TXT"))
                .map(record_json)
                .collect();
            let total = list.len();
            (
                200,
                json!({"domain_records": list, "links": {}, "meta": {"total": total}}).to_string(),
            )
        }
        ("DELETE", r) if r.starts_with(&format!("{records}/")) => {
            let id: Option<u64> = r[records.len() + 1..].parse().ok();
            let Some(pos) = api.records.iter().position(|r| Some(r.0) == id) else {
                return not_found();
            };
            let gone = api.records.remove(pos);
            let full = api.fqdn(&gone.1);
            if let Some(hook) = &api.on_change {
                hook("delete", &full, &gone.2);
            }
            (204, String::new())
        }
        _ => not_found(),
    }
}

/// Start the fake API over HTTPS on 127.0.0.1; its base URL and the CA PEM.
pub fn start_api(api: Arc<Mutex<Api>>) -> (String, String) {
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
        .push(rcgen::DnType::CommonName, "fake DigitalOcean API CA");
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
            let (status, text) = handle(&mut api.lock().unwrap(), &method, &path, &auth, &body);
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
    (format!("https://127.0.0.1:{port}/v2"), ca.pem())
}
