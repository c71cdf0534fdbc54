//! DigitalOcean DNS provider: the DNS-01 TXT record (RFC 8555 §8.4) through
//! DigitalOcean's API v2, over the HTTPS client of `acme::http` (which trusts
//! exactly the store's Root CA list).
//!
//! Why: DigitalOcean hosts many small PBX operators' zones and has no
//! RFC 2136.
//!
//! API (DigitalOcean's documentation, API v2, `Authorization: Bearer TOKEN`,
//! a token with the `domain` read and create/delete scopes):
//! `GET /v2/domains/ZONE` → the zone (404 when the account has no such
//! domain) with its `zone_file`, whose apex NS records name the servers to
//! check; `POST /v2/domains/ZONE/records` with
//! `{"type":"TXT","name","data","ttl"}` where `name` is RELATIVE to the zone
//! (`_acme-challenge.sub`, or `@` for the apex) → 201; `GET
//! /v2/domains/ZONE/records?type=TXT&name=FQDN` (the filter takes the fully
//! qualified name, the answer's `name` is relative) and `DELETE
//! /v2/domains/ZONE/records/ID` → 204 to remove exactly our value. Errors
//! are `{"id":"unauthorized","message":"..."}` with the HTTP status.
//!
//! What must hold: the token is sent only in the Authorization header to the
//! configured `api_base` (https only) and never logged; answers are
//! untrusted JSON (no panics); only records whose data is our value are
//! deleted.

use serde_json::{json, Value};

use super::api::{name_in_zone, status_error, unquote, Api, NameServers};
use super::{DnsError, DnsFuture, DnsProvider};
use crate::limits::{
    DIGITALOCEAN_TXT_TTL, MAX_DIGITALOCEAN_API_BASE_LEN, MAX_DIGITALOCEAN_RECORDS_LISTED,
    MAX_ZONE_NAME_SERVERS,
};
use crate::outbound::Client;

/// A zone (a "domain") at DigitalOcean.
pub struct DigitalOcean {
    zone: String,
    api: Api,
    /// The zone's name servers (`HOST:53`) as its zone file names them.
    name_servers: NameServers,
}

/// `fqdn` (normalised, inside `zone`) relative to `zone`: `@` for the apex.
pub fn relative_name(fqdn: &str, zone: &str) -> String {
    if fqdn == zone {
        return "@".to_owned();
    }
    fqdn.strip_suffix(zone)
        .and_then(|s| s.strip_suffix('.'))
        .unwrap_or(fqdn)
        .to_owned()
}

/// The apex NS host names in a zone file (BIND format as DigitalOcean
/// returns it), at most `MAX_ZONE_NAME_SERVERS`, as `HOST:53`.
pub fn zone_file_name_servers(zone_file: &str, zone: &str) -> Vec<String> {
    let apex = format!("{zone}.");
    let mut out = Vec::new();
    for line in zone_file.lines() {
        let line = line.split(';').next().unwrap_or("");
        let t: Vec<&str> = line.split_whitespace().collect();
        let Some(ns) = t.iter().position(|w| w.eq_ignore_ascii_case("NS")) else {
            continue;
        };
        let owner_ok = t
            .first()
            .is_some_and(|o| o.eq_ignore_ascii_case(&apex) || *o == "@");
        let Some(host) = t.get(ns + 1) else { continue };
        let Ok(host) = crate::names::normalize(host, false) else {
            continue;
        };
        let s = format!("{host}:53");
        if owner_ok && !out.contains(&s) && out.len() < MAX_ZONE_NAME_SERVERS {
            out.push(s);
        }
    }
    out
}

fn record_id(r: &Value) -> Option<u64> {
    r["id"].as_u64()
}

impl DigitalOcean {
    /// A provider for `zone` (normalised) at `api_base` with `token`,
    /// connecting through `client`.
    pub fn new(zone: &str, api_base: &str, token: &str, client: Client) -> Result<Self, DnsError> {
        Ok(DigitalOcean {
            zone: zone.to_owned(),
            api: Api::new(
                "DigitalOcean",
                api_base,
                MAX_DIGITALOCEAN_API_BASE_LEN,
                token,
                client,
            )?,
            name_servers: NameServers::default(),
        })
    }

    /// One API call; the JSON body (`null` for an empty 2xx body).
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, DnsError> {
        let resp = self.api.request(method, path, body).await?;
        let ok = (200..300).contains(&resp.status);
        if ok && resp.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        let v: Result<Value, _> = serde_json::from_slice(&resp.body);
        match v {
            Ok(v) if ok && v.is_object() => Ok(v),
            Ok(v) if !ok => {
                let why = format!(
                    "DigitalOcean API {method} {path}: HTTP {}: {} {}",
                    resp.status,
                    v["id"].as_str().unwrap_or(""),
                    v["message"].as_str().unwrap_or("")
                );
                Err(status_error(resp.status, why))
            }
            Ok(_) => Err(DnsError::BadResponse(format!(
                "DigitalOcean API {method} {path}: HTTP {} with a JSON body that is no object",
                resp.status
            ))),
            Err(e) => Err(match resp.status {
                401 | 403 => DnsError::Unauthorized(format!(
                    "DigitalOcean API {method} {path}: HTTP {}",
                    resp.status
                )),
                _ => DnsError::BadResponse(format!(
                    "DigitalOcean API {method} {path}: HTTP {} with no JSON ({e})",
                    resp.status
                )),
            }),
        }
    }

    /// Check the domain exists for this token and remember its name servers.
    async fn domain(&self) -> Result<(), DnsError> {
        let v = match self
            .call("GET", &format!("/domains/{}", self.zone), None)
            .await
        {
            Err(DnsError::ServerError(e)) if e.contains("HTTP 404") => {
                return Err(DnsError::BadConfig(format!(
                    "DigitalOcean has no domain {} that this token can see ({e})",
                    self.zone
                )))
            }
            other => other?,
        };
        let d = &v["domain"];
        if !d["name"]
            .as_str()
            .is_some_and(|n| n.eq_ignore_ascii_case(&self.zone))
        {
            return Err(DnsError::BadResponse(format!(
                "DigitalOcean API GET /domains/{}: no domain object with that name",
                self.zone
            )));
        }
        let servers = zone_file_name_servers(d["zone_file"].as_str().unwrap_or(""), &self.zone);
        self.name_servers.set(servers);
        Ok(())
    }

    async fn add(&self, fqdn: &str, value: &str) -> Result<(), DnsError> {
        let name = name_in_zone(fqdn, &self.zone)?;
        self.domain().await?;
        let body = json!({
            "type": "TXT",
            "name": relative_name(&name, &self.zone),
            "data": value,
            "ttl": DIGITALOCEAN_TXT_TTL,
        });
        let v = self
            .call(
                "POST",
                &format!("/domains/{}/records", self.zone),
                Some(body),
            )
            .await?;
        if record_id(&v["domain_record"]).is_none() {
            return Err(DnsError::BadResponse(format!(
                "DigitalOcean API POST /domains/{}/records: no domain_record with an id",
                self.zone
            )));
        }
        Ok(())
    }

    async fn remove(&self, fqdn: &str, value: &str) -> Result<(), DnsError> {
        let name = name_in_zone(fqdn, &self.zone)?;
        let rel = relative_name(&name, &self.zone);
        let v = self
            .call(
                "GET",
                &format!(
                    "/domains/{}/records?type=TXT&name={name}&per_page={MAX_DIGITALOCEAN_RECORDS_LISTED}",
                    self.zone
                ),
                None,
            )
            .await?;
        let Some(records) = v["domain_records"].as_array() else {
            return Err(DnsError::BadResponse(format!(
                "DigitalOcean API GET /domains/{}/records: no domain_records list",
                self.zone
            )));
        };
        let ours: Vec<u64> = records
            .iter()
            .take(MAX_DIGITALOCEAN_RECORDS_LISTED)
            .filter(|r| r["type"].as_str() == Some("TXT"))
            .filter(|r| {
                r["name"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(&rel))
            })
            .filter(|r| r["data"].as_str().map(unquote) == Some(value))
            .filter_map(record_id)
            .collect();
        for id in ours {
            self.call(
                "DELETE",
                &format!("/domains/{}/records/{id}", self.zone),
                None,
            )
            .await?;
        }
        Ok(())
    }
}

impl DnsProvider for DigitalOcean {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_relative_to_the_zone() {
        assert_eq!(
            relative_name("_acme-challenge.example.test", "example.test"),
            "_acme-challenge"
        );
        assert_eq!(
            relative_name("_acme-challenge.a.b.example.test", "example.test"),
            "_acme-challenge.a.b"
        );
        assert_eq!(relative_name("example.test", "example.test"), "@");
    }

    #[test]
    fn zone_file_apex_ns_records_only() {
        let zf = "$ORIGIN example.test.\n$TTL 1800\n\
                  example.test. IN SOA ns1.digitalocean.com. hostmaster.example.test. 1 10800 3600 604800 1800\n\
                  example.test. 1800 IN NS ns1.digitalocean.com.\n\
                  example.test. 1800 IN NS NS2.digitalocean.com. ; comment\n\
                  sub.example.test. 1800 IN NS ns.elsewhere.test.\n\
                  example.test. 1800 IN NS\n\
                  example.test. 1800 IN NS bad..name.\n\
                  www.example.test. 1800 IN TXT \"NS x\"\n";
        assert_eq!(
            zone_file_name_servers(zf, "example.test"),
            ["ns1.digitalocean.com:53", "ns2.digitalocean.com:53"]
        );
        assert!(zone_file_name_servers("", "example.test").is_empty());
    }
}
