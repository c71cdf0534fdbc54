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

use serde_json::{json, Value};

use super::api::{name_in_zone, status_error, unquote, Api, NameServers};
use super::{DnsError, DnsFuture, DnsProvider};
use crate::limits::{CLOUDFLARE_TXT_TTL, MAX_CLOUDFLARE_API_BASE_LEN};
use crate::outbound::Client;

/// A zone at Cloudflare.
pub struct Cloudflare {
    zone: String,
    api: Api,
    /// The zone's name servers (`HOST:53`) as the API named them.
    name_servers: NameServers,
}

impl Cloudflare {
    /// A provider for `zone` (normalised) at `api_base` with `token`,
    /// connecting through `client`.
    pub fn new(zone: &str, api_base: &str, token: &str, client: Client) -> Result<Self, DnsError> {
        Ok(Cloudflare {
            zone: zone.to_owned(),
            api: Api::new(
                "Cloudflare",
                api_base,
                MAX_CLOUDFLARE_API_BASE_LEN,
                token,
                client,
            )?,
            name_servers: NameServers::default(),
        })
    }

    /// One API call; the envelope when `success` is true.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, DnsError> {
        let resp = self.api.request(method, path, body).await?;
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
        Err(status_error(resp.status, why))
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
        self.name_servers.set(servers);
        Ok(id.to_owned())
    }

    async fn add(&self, fqdn: &str, value: &str) -> Result<(), DnsError> {
        let name = name_in_zone(fqdn, &self.zone)?;
        let id = self.zone_id().await?;
        let body =
            json!({"type": "TXT", "name": name, "content": value, "ttl": CLOUDFLARE_TXT_TTL});
        self.call("POST", &format!("/zones/{id}/dns_records"), Some(body))
            .await?;
        Ok(())
    }

    async fn remove(&self, fqdn: &str, value: &str) -> Result<(), DnsError> {
        let name = name_in_zone(fqdn, &self.zone)?;
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
        self.name_servers.get()
    }
}
