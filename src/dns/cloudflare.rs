//! Cloudflare DNS provider: the DNS-01 TXT record (RFC 8555 §8.4) through
//! Cloudflare's API v4, over the HTTPS client of `acme::http` (which trusts
//! exactly the store's Root CA list).
//!
//! Why: many PBX domains are hosted at Cloudflare, which has no RFC 2136.
//!
//! API (Cloudflare's documentation, API v4, `Authorization: Bearer TOKEN`,
//! a token with DNS Edit permission on the zone): `GET /zones?name=ZONE` →
//! the zone's `id` and `name_servers`; `POST /zones/ID/dns_records` with
//! `{"type":"TXT","name","content","ttl"}`; `GET
//! /zones/ID/dns_records?type=TXT&name=FQDN` and `DELETE
//! /zones/ID/dns_records/RECORD_ID` to remove exactly our value. Every answer
//! is the envelope `{"success","errors":[{"code","message"}],"result"}`.
//!
//! What must hold: the token is sent only in the Authorization header to the
//! configured `api_base` (https only) and never logged; answers are
//! untrusted JSON (no panics); only records whose content is our value are
//! deleted.

use std::sync::Mutex;

use serde_json::{json, Value};

use super::{in_zone, DnsError, DnsFuture, DnsProvider};
use crate::acme::http::{Client, HttpError, Url};
use crate::limits::{CLOUDFLARE_TXT_TTL, MAX_CLOUDFLARE_API_BASE_LEN};

/// A zone at Cloudflare.
pub struct Cloudflare {
    zone: String,
    api_base: String,
    token: String,
    client: Client,
    /// The zone's name servers (`HOST:53`) as the API named them.
    name_servers: Mutex<Vec<String>>,
}

/// Check an API base URL: `https://host[:port]/path`.
pub fn check_api_base(api_base: &str) -> Result<(), DnsError> {
    let bad = |why: String| DnsError::BadConfig(format!("Cloudflare API base {api_base}: {why}"));
    if api_base.len() > MAX_CLOUDFLARE_API_BASE_LEN {
        return Err(bad(format!(
            "longer than {MAX_CLOUDFLARE_API_BASE_LEN} characters"
        )));
    }
    let url = Url::parse(api_base).map_err(|e| bad(e.to_string()))?;
    if !url.tls {
        return Err(bad("must be an https:// URL (the token is a secret)".into()));
    }
    if url.path.contains('?') {
        return Err(bad("must not have a query".into()));
    }
    Ok(())
}

fn http_error(e: HttpError) -> DnsError {
    match e {
        HttpError::Timeout => DnsError::Timeout(format!("Cloudflare API: {e}")),
        HttpError::BadResponse(_) | HttpError::TooLarge(_) => {
            DnsError::BadResponse(format!("Cloudflare API: {e}"))
        }
        _ => DnsError::Io(format!("Cloudflare API: {e}")),
    }
}

/// TXT content as Cloudflare may return it (quoted or not).
fn unquote(s: &str) -> &str {
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s)
}

impl Cloudflare {
    /// A provider for `zone` (normalised) at `api_base` with `token`,
    /// connecting through `client`.
    pub fn new(zone: &str, api_base: &str, token: &str, client: Client) -> Result<Self, DnsError> {
        check_api_base(api_base)?;
        Ok(Cloudflare {
            zone: zone.to_owned(),
            api_base: api_base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            client,
            name_servers: Mutex::new(Vec::new()),
        })
    }

    /// One API call; the envelope when `success` is true.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, DnsError> {
        let url = format!("{}{path}", self.api_base);
        let auth = format!("Bearer {}", self.token);
        let mut headers = vec![
            ("Authorization", auth.as_str()),
            ("Accept", "application/json"),
        ];
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        if !body.is_empty() {
            headers.push(("Content-Type", "application/json"));
        }
        let resp = self
            .client
            .request(method, &url, &headers, body.as_bytes())
            .await
            .map_err(http_error)?;
        let envelope: Value = serde_json::from_slice(&resp.body).map_err(|e| {
            DnsError::BadResponse(format!(
                "Cloudflare API {method} {path}: HTTP {} with no JSON envelope ({e})",
                resp.status
            ))
        })?;
        if (200..300).contains(&resp.status) && envelope["success"] == Value::Bool(true) {
            return Ok(envelope);
        }
        let errors: Vec<String> = envelope["errors"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| format!("{} {}", e["code"], e["message"].as_str().unwrap_or("")))
                    .collect()
            })
            .unwrap_or_default();
        let why = format!(
            "Cloudflare API {method} {path}: HTTP {}: {}",
            resp.status,
            errors.join("; ")
        );
        Err(match resp.status {
            401 | 403 => DnsError::Unauthorized(why),
            _ => DnsError::ServerError(why),
        })
    }

    /// The zone's ID (and remember its name servers).
    async fn zone_id(&self) -> Result<String, DnsError> {
        let v = self
            .call("GET", &format!("/zones?name={}", self.zone), None)
            .await?;
        let zone = v["result"]
            .as_array()
            .and_then(|zones| {
                zones.iter().find(|z| {
                    z["name"]
                        .as_str()
                        .is_some_and(|n| n.eq_ignore_ascii_case(&self.zone))
                })
            })
            .ok_or_else(|| {
                DnsError::BadConfig(format!(
                    "Cloudflare has no zone {} that this token can see",
                    self.zone
                ))
            })?;
        let id = zone["id"]
            .as_str()
            .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric()))
            .ok_or_else(|| DnsError::BadResponse("Cloudflare zone without a usable id".into()))?;
        let servers: Vec<String> = zone["name_servers"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(|h| format!("{h}:53"))
                    .collect()
            })
            .unwrap_or_default();
        *self.name_servers.lock().unwrap_or_else(|p| p.into_inner()) = servers;
        Ok(id.to_owned())
    }

    fn check_name(&self, fqdn: &str) -> Result<String, DnsError> {
        let name = fqdn.strip_suffix('.').unwrap_or(fqdn).to_ascii_lowercase();
        if !in_zone(&name, &self.zone) {
            return Err(DnsError::NotInZone(name, self.zone.clone()));
        }
        Ok(name)
    }

    async fn add(&self, fqdn: &str, value: &str) -> Result<(), DnsError> {
        let name = self.check_name(fqdn)?;
        let id = self.zone_id().await?;
        let body =
            json!({"type": "TXT", "name": name, "content": value, "ttl": CLOUDFLARE_TXT_TTL});
        self.call("POST", &format!("/zones/{id}/dns_records"), Some(body))
            .await?;
        Ok(())
    }

    async fn remove(&self, fqdn: &str, value: &str) -> Result<(), DnsError> {
        let name = self.check_name(fqdn)?;
        let id = self.zone_id().await?;
        let v = self
            .call(
                "GET",
                &format!("/zones/{id}/dns_records?type=TXT&name={name}"),
                None,
            )
            .await?;
        let ours: Vec<String> = v["result"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|r| r["content"].as_str().map(unquote) == Some(value))
                    .filter_map(|r| r["id"].as_str())
                    .filter(|rid| !rid.is_empty() && rid.bytes().all(|b| b.is_ascii_alphanumeric()))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        for rid in ours {
            self.call("DELETE", &format!("/zones/{id}/dns_records/{rid}"), None)
                .await?;
        }
        Ok(())
    }
}

impl DnsProvider for Cloudflare {
    fn add_txt<'a>(&'a self, fqdn: &'a str, value: &'a str) -> DnsFuture<'a> {
        Box::pin(self.add(fqdn, value))
    }

    fn remove_txt<'a>(&'a self, fqdn: &'a str, value: &'a str) -> DnsFuture<'a> {
        Box::pin(self.remove(fqdn, value))
    }

    fn authoritative_servers(&self) -> Vec<String> {
        self.name_servers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
