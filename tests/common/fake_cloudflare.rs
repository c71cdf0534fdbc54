//! A local HTTPS server that follows Cloudflare's documented API v4 (zones by
//! name, TXT `dns_records` POST, list and DELETE, bearer token, the
//! `{"success","errors","result"}` envelope), for the Cloudflare provider's
//! tests. Its own CA (made here) must be imported into the Root CA list.
//! `Api::on_change` mirrors each added/removed TXT record elsewhere (the ACME
//! test puts it into BIND, where pebble looks). The TLS server loop is
//! `https_server.rs` (declared by the test binary).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::https_server;

/// A change hook: (`"add"` or `"delete"`, record name, content).
pub type OnChange = Box<dyn Fn(&str, &str, &str) + Send>;

pub const ZONE_ID: &str = "023e105f4ecef8ad9ca31a8372d0c353";
pub const TOKEN: &str = "good-token-0123456789abcdef";

/// The fake API's state.
pub struct Api {
    /// The one zone it has.
    pub zone: String,
    /// (id, name, content, ttl)
    pub records: Vec<(String, String, String, u64)>,
    /// "METHOD PATH AUTHORIZATION" of every request.
    pub log: Vec<String>,
    next: u32,
    /// Called for every record added or deleted.
    pub on_change: Option<OnChange>,
}

impl Api {
    /// An API with the one zone `zone`.
    pub fn new(zone: &str) -> Api {
        Api {
            zone: zone.to_owned(),
            records: Vec::new(),
            log: Vec::new(),
            next: 0,
            on_change: None,
        }
    }
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
            let zones = if q.get("name") == Some(&api.zone.as_str()) {
                json!([{"id": ZONE_ID, "name": api.zone, "status": "active", "name_servers": []}])
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
            let (name, content) = (b["name"].as_str().unwrap(), b["content"].as_str().unwrap());
            if let Some(hook) = &api.on_change {
                hook("add", name, content);
            }
            api.records.push((
                id.clone(),
                name.to_owned(),
                content.to_owned(),
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
            let Some(pos) = api.records.iter().position(|r| r.0 == id) else {
                return reply(
                    404,
                    json!({"success": false, "errors": [{"code": 81044, "message": "Record does not exist."}], "result": null}),
                );
            };
            let gone = api.records.remove(pos);
            if let Some(hook) = &api.on_change {
                hook("delete", &gone.1, &gone.2);
            }
            ok(json!({"id": id}))
        }
        _ => reply(404, json!({"success": false, "errors": [], "result": null})),
    }
}

/// Start the fake API over HTTPS on 127.0.0.1; its base URL and the CA PEM.
pub fn start_api(api: Arc<Mutex<Api>>) -> (String, String) {
    let (port, ca_pem) = https_server::serve("fake Cloudflare API CA", move |r| {
        let (status, json) = handle(
            &mut api.lock().unwrap(),
            &r.method,
            &r.path,
            &r.auth,
            &r.body,
        );
        (status, json.to_string())
    });
    (format!("https://127.0.0.1:{port}/client/v4"), ca_pem)
}
