//! DNS-01 machinery (RFC 8555 §8.4): the providers that put the challenge
//! TXT record into DNS, and the wait until the zone's servers answer it.
//!
//! Why here, above the daemon: a provider talks to the network (RFC 2136
//! dynamic updates with TSIG, RFC 8945, in `rfc2136`; Cloudflare's API v4 in
//! `cloudflare`; DigitalOcean's API v2 in `digitalocean`, both over the
//! outgoing HTTPS client that trusts the Root CA list), while what is
//! *configured* (providers, zones, propagation settings) is plain store data
//! in `crate::dns`, below the commands. The ACME order (`renewal::issue`)
//! uses `Challenge`: `prepare` picks the stored provider covering the name
//! (`dns::provider_for`), `publish` adds the TXT record at
//! `dns::challenge_name(name)` and waits (`propagation::wait_for_txt`) until
//! the zone's servers answer it, then the CA is told to validate, and
//! `cleanup` removes the record whatever the outcome. `DnsProvider` is the
//! one provider trait.
//!
//! What must hold: every DNS answer is untrusted input, parsed without
//! panics, and each failure is a `DnsError` with a stable code.

pub mod api;
pub mod cloudflare;
pub mod digitalocean;
pub mod propagation;
pub mod rfc2136;
pub mod wire;

use std::future::Future;
use std::pin::Pin;

pub use crate::dns::DnsError;
use crate::dns::{
    challenge_name, propagation_settings, provider_for, PropagationSettings, ProviderEntry,
};
use crate::error::Error;
use crate::model::ProviderConfig;
use crate::store::Store;

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

impl ProviderEntry {
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
    ) -> Result<crate::outbound::Client, DnsError> {
        crate::outbound::Client::from_store(store).map_err(|e| {
            DnsError::BadConfig(format!(
                "DNS provider {}: no HTTPS client for the {provider} API: {e}",
                self.name
            ))
        })
    }
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
