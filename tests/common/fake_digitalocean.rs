//! A local HTTPS server that follows DigitalOcean's documented API v2
//! (`GET /v2/domains/ZONE` with its `zone_file`, TXT records by `POST
//! /v2/domains/ZONE/records` with a name RELATIVE to the zone or `@`, `GET
//! .../records?type=TXT&name=FQDN` answering relative names, `DELETE
//! .../records/ID` → 204, bearer token, errors `{"id","message"}` with the
//! HTTP status), for the DigitalOcean provider's tests. Its own CA (made
//! here) must be imported into the Root CA list. `Api::on_change` mirrors
//! each added/removed TXT record (by its full name) elsewhere. The TLS
//! server loop is `https_server.rs` (declared by the test binary).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::https_server;

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
    let (port, ca_pem) = https_server::serve("fake DigitalOcean API CA", move |r| {
        handle(
            &mut api.lock().unwrap(),
            &r.method,
            &r.path,
            &r.auth,
            &r.body,
        )
    });
    (format!("https://127.0.0.1:{port}/v2"), ca_pem)
}
