//! DNS-01 providers: putting the ACME challenge TXT record into DNS and
//! waiting until the zone's servers answer with it (RFC 8555 §8.4).
//!
//! Why: DNS-01 is the only challenge that proves control of a wildcard name
//! and the only one that works for a PBX unreachable from the Internet. The
//! ACME client (`acme::issue`) uses `Challenge`: `prepare` picks the stored
//! provider covering the name (`provider_for`), `publish` adds the TXT record
//! at `challenge_name(name)` and waits (`propagation::wait_for_txt`) until the
//! zone's servers answer it, then the CA is told to validate, and `cleanup`
//! removes the record whatever the outcome. `DnsProvider` is the one provider
//! trait.
//!
//! Providers are configured with `pbx-certd dns add` and stored in the store's
//! settings tree under the prefix `dns-provider/` (one JSON record per name).
//! Implemented: RFC 2136 dynamic update signed with TSIG (RFC 8945), in
//! `rfc2136`; Cloudflare's API v4 over the ACME HTTPS client (trusting the
//! Root CA list), in `cloudflare`; DigitalOcean's API v2 (the same client),
//! in `digitalocean`.
//!
//! What must hold: a secret (TSIG secret, API token) is never shown back in
//! full (`dns list` masks it); every DNS answer is untrusted input, parsed
//! without panics, and each failure is a `DnsError` with a stable code;
//! `provider_for` picks the longest zone that contains the name.

pub mod api;
pub mod cloudflare;
pub mod digitalocean;
pub mod propagation;
pub mod rfc2136;
pub mod wire;

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::limits::{
    DNS_PROPAGATION_INTERVAL_SECS, DNS_PROPAGATION_TIMEOUT_SECS, MAX_DNS_PROVIDERS,
    MAX_DNS_PROVIDER_NAME_LEN, MAX_DNS_SECRET_LEN,
};
use crate::model::{mask, ProviderConfig};
use crate::names;
use crate::store::{Batch, Store};

/// The future a provider returns.
pub type DnsFuture<'a> = Pin<Box<dyn Future<Output = Result<(), DnsError>> + Send + 'a>>;

/// Puts and removes the TXT record of a DNS-01 challenge (RFC 8555 §8.4).
/// Runs on smol (no tokio). `fqdn` is the full record name, e.g.
/// `_acme-challenge.example.com` (see `challenge_name`), `value` the
/// Base64url digest of the key authorization.
pub trait DnsProvider: Send + Sync {
    /// Add a TXT record `value` at `fqdn` (other TXT values there stay).
    fn add_txt<'a>(&'a self, fqdn: &'a str, value: &'a str) -> DnsFuture<'a>;
    /// Remove exactly that TXT record (absent is fine).
    fn remove_txt<'a>(&'a self, fqdn: &'a str, value: &'a str) -> DnsFuture<'a>;
    /// Servers (`HOST:PORT`) to ask whether the record is visible.
    fn authoritative_servers(&self) -> Vec<String>;
}

/// Why a DNS operation failed. Codes are stable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsError {
    /// The server did not answer in time.
    Timeout(String),
    /// Socket or connection failure.
    Io(String),
    /// The answer is malformed, does not match the request, or its TSIG does
    /// not verify.
    BadResponse(String),
    /// The server rejected our TSIG signature (BADKEY, BADSIG, BADTIME).
    TsigRejected(String),
    /// An HTTP API rejected the credentials (401/403: bad token or missing
    /// permission).
    Unauthorized(String),
    /// The server refused the update (REFUSED or NOTAUTH: policy).
    Refused(String),
    /// Any other error RCODE.
    ServerError(String),
    /// The name is not inside the provider's zone.
    NotInZone(String, String),
    /// The TXT value did not appear on every server in time.
    NotPropagated(String),
    /// The stored or given configuration is unusable.
    BadConfig(String),
}

impl DnsError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            DnsError::Timeout(_) => "dns-timeout",
            DnsError::Io(_) => "dns-io",
            DnsError::BadResponse(_) => "dns-bad-response",
            DnsError::TsigRejected(_) => "dns-tsig-rejected",
            DnsError::Unauthorized(_) => "dns-unauthorized",
            DnsError::Refused(_) => "dns-refused",
            DnsError::ServerError(_) => "dns-server-error",
            DnsError::NotInZone(..) => "dns-not-in-zone",
            DnsError::NotPropagated(_) => "dns-not-propagated",
            DnsError::BadConfig(_) => "bad-dns-config",
        }
    }
}

impl core::fmt::Display for DnsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DnsError::Timeout(what) => write!(f, "no DNS answer in time: {what}"),
            DnsError::Io(e) => write!(f, "DNS connection failed: {e}"),
            DnsError::BadResponse(e) => write!(f, "unusable DNS answer: {e}"),
            DnsError::TsigRejected(e) => write!(
                f,
                "the DNS server rejected the TSIG signature ({e}): check key name, algorithm and secret"
            ),
            DnsError::Refused(e) => write!(f, "the DNS server refused the update: {e}"),
            DnsError::Unauthorized(e) => write!(
                f,
                "the DNS provider rejected the credentials ({e}): check the token and its permissions"
            ),
            DnsError::ServerError(e) => write!(f, "the DNS server answered with an error: {e}"),
            DnsError::NotInZone(name, zone) => write!(f, "{name} is not inside the zone {zone}"),
            DnsError::NotPropagated(e) => write!(f, "the TXT record did not propagate: {e}"),
            DnsError::BadConfig(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for DnsError {}

/// A configured provider: a name, the zone it covers, how to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderEntry {
    /// Unique name chosen by the admin.
    pub name: String,
    /// The zone (normalised DNS name) whose records it can change.
    pub zone: String,
    /// Provider kind and credentials.
    pub config: ProviderConfig,
}

/// Store key prefix of provider records in the settings tree.
const PREFIX: &str = crate::settings::Family::DnsProvider.prefix();
/// Store key of the propagation settings.
const SETTING_PROPAGATION: &str = crate::settings::Setting::DnsPropagation.name();

impl ProviderEntry {
    /// The `dns list --json` entry: secrets masked.
    pub fn listing(&self) -> serde_json::Value {
        match &self.config {
            ProviderConfig::Rfc2136 {
                server,
                tsig_name,
                tsig_algorithm,
                tsig_secret,
            } => serde_json::json!({
                "name": self.name,
                "provider": "rfc2136",
                "zone": self.zone,
                "server": server,
                "tsig_name": tsig_name,
                "tsig_algorithm": tsig_algorithm.as_str(),
                "tsig_secret": mask(tsig_secret),
            }),
            ProviderConfig::Cloudflare { token, api_base } => serde_json::json!({
                "name": self.name,
                "provider": "cloudflare",
                "zone": self.zone,
                "token": mask(token),
                "api_base": api_base,
            }),
            ProviderConfig::Digitalocean { token, api_base } => serde_json::json!({
                "name": self.name,
                "provider": "digitalocean",
                "zone": self.zone,
                "token": mask(token),
                "api_base": api_base,
            }),
        }
    }

    /// A provider object for this entry (an HTTP API provider trusts the
    /// store's Root CA list).
    pub fn provider(&self, store: &Store) -> Result<Box<dyn DnsProvider>, DnsError> {
        match &self.config {
            ProviderConfig::Rfc2136 {
                server,
                tsig_name,
                tsig_algorithm,
                tsig_secret,
            } => Ok(Box::new(rfc2136::Rfc2136::new(
                &self.zone,
                server,
                tsig_name,
                *tsig_algorithm,
                tsig_secret,
            )?)),
            ProviderConfig::Cloudflare { token, api_base } => {
                let client = self.api_client(store, "Cloudflare")?;
                Ok(Box::new(cloudflare::Cloudflare::new(
                    &self.zone, api_base, token, client,
                )?))
            }
            ProviderConfig::Digitalocean { token, api_base } => {
                let client = self.api_client(store, "DigitalOcean")?;
                Ok(Box::new(digitalocean::DigitalOcean::new(
                    &self.zone, api_base, token, client,
                )?))
            }
        }
    }

    /// The HTTPS client of an API provider (`provider` names it in the
    /// message), trusting the store's Root CA list.
    fn api_client(
        &self,
        store: &Store,
        provider: &str,
    ) -> Result<crate::acme::http::Client, DnsError> {
        crate::acme::http::Client::from_store(store).map_err(|e| {
            DnsError::BadConfig(format!(
                "DNS provider {}: no HTTPS client for the {provider} API: {e}",
                self.name
            ))
        })
    }
}

/// The record name of a DNS-01 challenge for `domain` (RFC 8555 §8.4): the
/// wildcard label dropped (`*.example.com` and `example.com` share
/// `_acme-challenge.example.com`).
pub fn challenge_name(domain: &str) -> String {
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    let base = domain.strip_prefix("*.").unwrap_or(domain);
    format!("_acme-challenge.{}", base.to_ascii_lowercase())
}

/// One DNS-01 challenge record, ready to publish: what the ACME client
/// holds between "challenge received" and "challenge done".
///
/// Use: `Challenge::prepare` (blocking: reads the store) → `publish` (add the
/// TXT record, then wait until the zone's servers answer it) → tell the CA to
/// validate → `cleanup` (always, also after a failure).
pub struct Challenge {
    /// The provider's name (for logs and errors).
    pub provider_name: String,
    /// `_acme-challenge.<domain>`.
    pub fqdn: String,
    /// The provider's zone.
    pub zone: String,
    value: String,
    provider: Box<dyn DnsProvider>,
    settings: PropagationSettings,
}

impl Challenge {
    /// The challenge for `domain` (a host or `*.host`) with the DNS-01
    /// `value` (Base64url SHA-256 of the key authorization, RFC 8555 §8.4),
    /// or `None` when no provider covers the domain.
    pub fn prepare(store: &Store, domain: &str, value: &str) -> Result<Option<Challenge>, Error> {
        let Some(entry) = provider_for(store, domain)? else {
            return Ok(None);
        };
        Ok(Some(Challenge {
            provider: entry.provider(store)?,
            provider_name: entry.name,
            zone: entry.zone,
            fqdn: challenge_name(domain),
            value: value.to_owned(),
            settings: propagation_settings(store)?,
        }))
    }

    /// The servers `publish` waits for: the provider's, plus (with
    /// `check_ns`) the zone's name servers as its NS RRset names them.
    pub async fn servers(&self) -> Result<Vec<String>, DnsError> {
        let mut servers = self.provider.authoritative_servers();
        if self.settings.check_ns {
            let primary = servers.first().cloned().unwrap_or_default();
            for s in propagation::zone_servers(&primary, &self.zone).await? {
                if !servers.contains(&s) {
                    servers.push(s);
                }
            }
        }
        Ok(servers)
    }

    /// Add the TXT record and wait until every authoritative server has it.
    pub async fn publish(&self) -> Result<(), DnsError> {
        self.provider.add_txt(&self.fqdn, &self.value).await?;
        let servers = self.servers().await?;
        propagation::wait_for_txt(&servers, &self.fqdn, &self.value, self.settings).await
    }

    /// Remove the TXT record (absent is fine).
    pub async fn cleanup(&self) -> Result<(), DnsError> {
        self.provider.remove_txt(&self.fqdn, &self.value).await
    }
}

/// Is the (normalised) `name` inside (normalised) `zone`?
pub fn in_zone(name: &str, zone: &str) -> bool {
    name == zone
        || (name.len() > zone.len()
            && name.ends_with(zone)
            && name.as_bytes().get(name.len() - zone.len() - 1) == Some(&b'.'))
}

/// All providers, by name.
pub fn list(store: &Store) -> Result<Vec<ProviderEntry>, Error> {
    store
        .settings_with_prefix(PREFIX)?
        .into_iter()
        .map(|(_, v)| {
            serde_json::from_slice(&v)
                .map_err(|e| Error::Store(crate::store::StoreError::Corrupt(e.to_string())))
        })
        .collect()
}

/// The provider whose zone covers `name` (a host, a wildcard, or a
/// `_acme-challenge` name); the longest zone wins.
pub fn provider_for(store: &Store, name: &str) -> Result<Option<ProviderEntry>, Error> {
    let name = names::normalize(name, true).map_err(|e| Error::bad_name(name, e))?;
    let name = name.strip_prefix("*.").unwrap_or(&name).to_owned();
    Ok(list(store)?
        .into_iter()
        .filter(|p| in_zone(&name, &p.zone))
        .max_by_key(|p| p.zone.len()))
}

fn bad(msg: impl Into<String>) -> Error {
    Error::Dns(DnsError::BadConfig(msg.into()))
}

fn check_secret(what: &str, secret: &str) -> Result<(), Error> {
    if secret.is_empty() || secret.len() > MAX_DNS_SECRET_LEN {
        return Err(bad(format!(
            "the {what} must be 1 to {MAX_DNS_SECRET_LEN} characters"
        )));
    }
    if secret.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad(format!("the {what} must not contain spaces")));
    }
    Ok(())
}

/// `dns add`: validate, then store (replacing nothing: names are unique).
pub fn add(store: &Store, name: &str, zone: &str, config: ProviderConfig) -> Result<(), Error> {
    let valid_name = !name.is_empty()
        && name.len() <= MAX_DNS_PROVIDER_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !valid_name {
        return Err(Error::BadName(
            name.to_owned(),
            format!(
                "a provider name is 1 to {MAX_DNS_PROVIDER_NAME_LEN} letters, digits, '-', '_' or '.'"
            ),
        ));
    }
    let zone = names::normalize(zone, false).map_err(|e| Error::bad_name(zone, e))?;
    let config = match config {
        ProviderConfig::Rfc2136 {
            server,
            tsig_name,
            tsig_algorithm,
            tsig_secret,
        } => {
            let tsig_name =
                names::normalize(&tsig_name, false).map_err(|e| Error::bad_name(&tsig_name, e))?;
            check_secret("TSIG secret", &tsig_secret)?;
            let config = ProviderConfig::Rfc2136 {
                server,
                tsig_name,
                tsig_algorithm,
                tsig_secret,
            };
            // Builds the key and checks the server address.
            ProviderEntry {
                name: name.to_owned(),
                zone: zone.clone(),
                config: config.clone(),
            }
            .provider(store)
            .map_err(Error::Dns)?;
            config
        }
        ProviderConfig::Cloudflare { token, api_base } => {
            check_secret("API token", &token)?;
            cloudflare::check_api_base(&api_base).map_err(Error::Dns)?;
            ProviderConfig::Cloudflare { token, api_base }
        }
        ProviderConfig::Digitalocean { token, api_base } => {
            check_secret("API token", &token)?;
            digitalocean::check_api_base(&api_base).map_err(Error::Dns)?;
            ProviderConfig::Digitalocean { token, api_base }
        }
    };
    let existing = list(store)?;
    if existing.iter().any(|p| p.name == name) {
        return Err(Error::DnsProviderExists(name.to_owned()));
    }
    if existing.len() >= MAX_DNS_PROVIDERS {
        return Err(Error::LimitExceeded(format!(
            "at most {MAX_DNS_PROVIDERS} DNS providers"
        )));
    }
    let entry = ProviderEntry {
        name: name.to_owned(),
        zone,
        config,
    };
    let mut batch = Batch::default();
    batch.put_setting(
        &format!("{PREFIX}{name}"),
        &serde_json::to_vec(&entry).unwrap_or_default(),
    );
    store.commit(batch)?;
    Ok(())
}

/// `dns remove NAME`
pub fn remove(store: &Store, name: &str) -> Result<(), Error> {
    let key = format!("{PREFIX}{name}");
    if store.setting(&key)?.is_none() {
        return Err(Error::NoSuchDnsProvider(name.to_owned()));
    }
    let mut batch = Batch::default();
    batch.delete_setting(&key);
    store.commit(batch)?;
    Ok(())
}

/// How long and how often to look for a TXT record before telling the CA
/// to validate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PropagationSettings {
    /// Give up after this many seconds.
    pub timeout_secs: u64,
    /// Ask again after this many seconds.
    pub interval_secs: u64,
    /// Also ask every name server of the zone's NS RRset (port 53), not only
    /// the provider's server.
    #[serde(default = "yes")]
    pub check_ns: bool,
}

fn yes() -> bool {
    true
}

impl Default for PropagationSettings {
    fn default() -> Self {
        PropagationSettings {
            timeout_secs: DNS_PROPAGATION_TIMEOUT_SECS,
            interval_secs: DNS_PROPAGATION_INTERVAL_SECS,
            check_ns: true,
        }
    }
}

/// The stored propagation settings (defaults from `limits`).
pub fn propagation_settings(store: &Store) -> Result<PropagationSettings, Error> {
    Ok(match store.setting(SETTING_PROPAGATION)? {
        Some(v) => serde_json::from_slice(&v)
            .map_err(|e| Error::Store(crate::store::StoreError::Corrupt(e.to_string())))?,
        None => PropagationSettings::default(),
    })
}

/// `dns set`: change the propagation settings.
pub fn set_propagation(
    store: &Store,
    timeout_secs: Option<u64>,
    interval_secs: Option<u64>,
    check_ns: Option<bool>,
) -> Result<PropagationSettings, Error> {
    use crate::limits::{DNS_PROPAGATION_MAX_TIMEOUT_SECS, DNS_PROPAGATION_MIN_INTERVAL_SECS};
    let mut s = propagation_settings(store)?;
    if let Some(t) = timeout_secs {
        s.timeout_secs = t;
    }
    if let Some(i) = interval_secs {
        s.interval_secs = i;
    }
    if let Some(c) = check_ns {
        s.check_ns = c;
    }
    if s.timeout_secs > DNS_PROPAGATION_MAX_TIMEOUT_SECS {
        return Err(bad(format!(
            "the propagation timeout is at most {DNS_PROPAGATION_MAX_TIMEOUT_SECS} seconds"
        )));
    }
    if s.interval_secs < DNS_PROPAGATION_MIN_INTERVAL_SECS {
        return Err(bad(format!(
            "the propagation interval is at least {DNS_PROPAGATION_MIN_INTERVAL_SECS} second(s)"
        )));
    }
    let mut batch = Batch::default();
    batch.put_setting(
        SETTING_PROPAGATION,
        &serde_json::to_vec(&s).unwrap_or_default(),
    );
    store.commit(batch)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{cloudflare_api_base, digitalocean_api_base, TsigAlgorithm};

    #[test]
    fn challenge_names_drop_the_wildcard() {
        assert_eq!(
            challenge_name("*.Example.test."),
            "_acme-challenge.example.test"
        );
        assert_eq!(
            challenge_name("example.test"),
            "_acme-challenge.example.test"
        );
        assert_eq!(
            challenge_name("a.example.test"),
            "_acme-challenge.a.example.test"
        );
    }

    #[test]
    fn zone_containment_is_label_wise() {
        assert!(in_zone("example.test", "example.test"));
        assert!(in_zone("a.example.test", "example.test"));
        assert!(!in_zone("badexample.test", "example.test"));
        assert!(!in_zone("test", "example.test"));
    }

    #[test]
    fn debug_never_shows_a_secret() {
        let secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0";
        let c = ProviderConfig::Rfc2136 {
            server: "s:53".into(),
            tsig_name: "k".into(),
            tsig_algorithm: TsigAlgorithm::HmacSha256,
            tsig_secret: secret.into(),
        };
        assert!(!format!("{c:?}").contains("LXNlY3JldC1zZWNyZXQ"));
        let t = ProviderConfig::Cloudflare {
            token: secret.into(),
            api_base: cloudflare_api_base(),
        };
        assert!(!format!("{t:?}").contains("LXNlY3JldC1zZWNyZXQ"));
        let d = ProviderConfig::Digitalocean {
            token: secret.into(),
            api_base: digitalocean_api_base(),
        };
        assert!(!format!("{d:?}").contains("LXNlY3JldC1zZWNyZXQ"));
    }

    #[test]
    fn mask_never_shows_the_whole_secret() {
        let m = mask("c2VjcmV0LXNlY3JldC1zZWNyZXQ=");
        assert!(m.starts_with("c2Vj"));
        assert!(!m.contains("LXNlY3JldC1zZWNyZXQ="));
        assert!(!mask("abcdef").contains("abc"));
    }
}
