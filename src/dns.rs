//! DNS settings for DNS-01 (RFC 8555 §8.4): which providers are configured,
//! which zone each covers, and how long to wait for propagation.
//!
//! Why a module of its own below the commands: what is *configured* is plain
//! store data that `ops` changes and the ACME target planner (`acme`) reads;
//! the network side (the providers, the propagation check) is in `dns01`,
//! above the daemon. Providers are configured with `pbx-certd dns add` and
//! stored in the settings tree under `dns-provider/` (one JSON record per
//! name).
//!
//! What must hold: a secret (TSIG secret, API token) is never shown back in
//! full (`dns list` masks it); `provider_for` picks the longest zone that
//! contains the name; `DnsError` (defined with the other operation errors in
//! `crate::error`) has stable codes.

use serde::{Deserialize, Serialize};

pub use crate::error::DnsError;
use crate::error::Error;
use crate::limits::{
    DNS_PROPAGATION_INTERVAL_SECS, DNS_PROPAGATION_TIMEOUT_SECS, MAX_CLOUDFLARE_API_BASE_LEN,
    MAX_DIGITALOCEAN_API_BASE_LEN, MAX_DNS_PROVIDERS, MAX_DNS_PROVIDER_NAME_LEN,
    MAX_DNS_SECRET_LEN,
};
use crate::model::{ProviderConfig, TsigAlgorithm};
use crate::names;
use crate::store::{Batch, Store};

/// A DNS provider as an administrator describes it, the same fields on
/// every input (`dns add` flags, the `POST /api/dns` body, the ACME page's
/// provider forms). `config` is the one place that turns it into a
/// `ProviderConfig`: the provider and TSIG algorithm words go through their
/// one `FromStr`, an empty field counts as missing, and the default API
/// bases are applied here and nowhere else.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSpec {
    /// Unique name.
    pub name: String,
    /// `rfc2136`, `cloudflare` or `digitalocean`.
    pub provider: String,
    /// The zone the provider may change.
    pub zone: String,
    /// rfc2136: the primary, `HOST:PORT`.
    #[serde(default)]
    pub server: Option<String>,
    /// rfc2136: the TSIG key name.
    #[serde(default)]
    pub tsig_name: Option<String>,
    /// rfc2136: `hmac-sha256` or `hmac-sha512`.
    #[serde(default)]
    pub tsig_algorithm: Option<String>,
    /// rfc2136: the TSIG secret (Base64).
    #[serde(default)]
    pub tsig_secret: Option<String>,
    /// cloudflare, digitalocean: the API token.
    #[serde(default)]
    pub token: Option<String>,
    /// cloudflare, digitalocean: the API base (default: the provider's own).
    #[serde(default)]
    pub api_base: Option<String>,
}

/// The provider words `ProviderSpec::provider` accepts.
pub const PROVIDER_NAMES: &[&str] = &["rfc2136", "cloudflare", "digitalocean"];

impl ProviderSpec {
    /// The provider's configuration (`bad-setting` for an unknown provider,
    /// a missing field or an unknown TSIG algorithm; the values themselves
    /// are checked by `add`).
    pub fn config(&self) -> Result<ProviderConfig, Error> {
        let given = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let need = |v: &Option<String>, field: &str| {
            given(v).ok_or_else(|| {
                Error::BadSetting(format!(
                    "DNS provider {}: {field} is required",
                    self.provider
                ))
            })
        };
        Ok(match self.provider.as_str() {
            "rfc2136" => ProviderConfig::Rfc2136 {
                server: need(&self.server, "server")?,
                tsig_name: need(&self.tsig_name, "tsig_name")?,
                tsig_algorithm: need(&self.tsig_algorithm, "tsig_algorithm")?
                    .parse::<TsigAlgorithm>()
                    .map_err(|e| Error::BadSetting(e.to_string()))?,
                tsig_secret: need(&self.tsig_secret, "tsig_secret")?,
            },
            "cloudflare" => ProviderConfig::Cloudflare {
                token: need(&self.token, "token")?,
                api_base: given(&self.api_base).unwrap_or_else(crate::model::cloudflare_api_base),
            },
            "digitalocean" => ProviderConfig::Digitalocean {
                token: need(&self.token, "token")?,
                api_base: given(&self.api_base).unwrap_or_else(crate::model::digitalocean_api_base),
            },
            other => {
                return Err(Error::BadSetting(format!(
                    "unknown DNS provider {other:?}; use one of: {}",
                    PROVIDER_NAMES.join(", ")
                )))
            }
        })
    }
}

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
    pub fn listing(&self) -> ProviderListing {
        ProviderListing {
            name: self.name.clone(),
            zone: self.zone.clone(),
            access: self.config.masked(),
        }
    }
}

/// A `dns list --json` entry: `{"name","provider","zone",...}` with the
/// secrets masked (`ProviderConfig::masked`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderListing {
    /// Unique name.
    pub name: String,
    /// The zone it covers.
    pub zone: String,
    /// How it reaches the zone (the `provider` key and its fields), its
    /// secrets masked: never usable to reach it.
    #[serde(flatten)]
    pub access: ProviderConfig,
}

/// `dns set --json`: the DNS-01 propagation check settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PropagationView {
    /// Seconds to wait for the TXT record.
    pub propagation_timeout: u64,
    /// Seconds between two checks.
    pub propagation_interval: u64,
    /// Whether the zone's NS servers are checked too.
    pub check_ns: bool,
}

/// The record name of a DNS-01 challenge for `domain` (RFC 8555 §8.4): the
/// wildcard label dropped (`*.example.com` and `example.com` share
/// `_acme-challenge.example.com`).
pub fn challenge_name(domain: &str) -> String {
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    let base = domain.strip_prefix("*.").unwrap_or(domain);
    format!("_acme-challenge.{}", base.to_ascii_lowercase())
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

/// Check an API base URL: `https://host[:port]/path`, at most `max_len`
/// characters; `provider` names the provider in the message.
pub fn check_api_base(provider: &str, api_base: &str, max_len: usize) -> Result<(), DnsError> {
    let bad = |why: String| DnsError::BadConfig(format!("{provider} API base {api_base}: {why}"));
    if api_base.len() > max_len {
        return Err(bad(format!("longer than {max_len} characters")));
    }
    let url = crate::outbound::Url::parse(api_base).map_err(|e| bad(e.to_string()))?;
    if !url.tls {
        return Err(bad("must be an https:// URL (the token is a secret)".into()));
    }
    if url.path.contains('?') {
        return Err(bad("must not have a query".into()));
    }
    Ok(())
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
            check_api_base("Cloudflare", &api_base, MAX_CLOUDFLARE_API_BASE_LEN)
                .map_err(Error::Dns)?;
            ProviderConfig::Cloudflare { token, api_base }
        }
        ProviderConfig::Digitalocean { token, api_base } => {
            check_secret("API token", &token)?;
            check_api_base("DigitalOcean", &api_base, MAX_DIGITALOCEAN_API_BASE_LEN)
                .map_err(Error::Dns)?;
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
    use crate::model::{cloudflare_api_base, digitalocean_api_base, mask, TsigAlgorithm};

    #[test]
    fn one_spec_builds_every_config_with_the_defaults() {
        let spec = |provider: &str| ProviderSpec {
            name: "p".into(),
            provider: provider.into(),
            zone: "example.test".into(),
            token: Some("t".into()),
            // An empty field (an empty form box) is a missing one.
            api_base: Some(" ".into()),
            ..ProviderSpec::default()
        };
        assert_eq!(
            spec("digitalocean").config().unwrap(),
            ProviderConfig::Digitalocean {
                token: "t".into(),
                api_base: digitalocean_api_base()
            }
        );
        assert_eq!(
            spec("cloudflare").config().unwrap(),
            ProviderConfig::Cloudflare {
                token: "t".into(),
                api_base: cloudflare_api_base()
            }
        );
        for bad in [
            spec("route53"),
            spec("rfc2136"),
            ProviderSpec {
                token: Some(String::new()),
                ..spec("cloudflare")
            },
            ProviderSpec {
                server: Some("127.0.0.1:53".into()),
                tsig_name: Some("k.example.test".into()),
                tsig_algorithm: Some("hmac-md5".into()),
                tsig_secret: Some("c2VjcmV0".into()),
                ..spec("rfc2136")
            },
        ] {
            let e = bad.config().unwrap_err();
            assert_eq!(e.code(), "bad-setting", "{bad:?}: {e}");
        }
    }

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
