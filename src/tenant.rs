//! Tenants (each owns DNS names) and the system settings.
//!
//! Why: a domain certificate belongs to the tenant owning its names, and the
//! SNI choice starts from the tenant owning the SNI name. A DNS name therefore
//! belongs to at most one tenant.
//!
//! Each tenant may override the global ACME challenge choice and key type
//! (`tenant set`); the renewal loop reads them per order.
//!
//! What must hold: names are stored normalised (`names::normalize`); tenant
//! changes never reclassify stored certificates; removing a tenant that still
//! owns domain certificates is refused.

use crate::error::Error;
use crate::limits::{MAX_DNS_NAMES_PER_TENANT, MAX_IPS_PER_TENANT, MAX_TENANT_NAME_LEN};
use serde::{Deserialize, Serialize};

use crate::model::ChallengeChoice;
use crate::model::KeyType;
use crate::model::Override;
use crate::model::{SystemSettings, Tenant};
use crate::names;
use crate::pki::Kind;
use crate::store::{Batch, Store};

/// A tenant name: 1 to `MAX_TENANT_NAME_LEN` of `[A-Za-z0-9._-]`, starting
/// with a letter or digit (so never `.`, `..` or anything else that reads as
/// a path in `/api/tenants/{name}` or as a flag on the command line).
fn check_tenant_name(name: &str) -> Result<(), Error> {
    let ok = name.len() <= MAX_TENANT_NAME_LEN
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::BadName(
            name.to_owned(),
            format!(
                "a tenant name has 1 to {MAX_TENANT_NAME_LEN} letters, digits, '-', '_' or '.', \
                 and starts with a letter or digit"
            ),
        ))
    }
}

/// `tenant add NAME --dns HOST... --ip ADDR...`: an IP address given as
/// `--dns` is refused (`names::NameError::IpAddress`, pointing at `--ip`);
/// IP names are stored in `names::ip_text` form. A name (DNS or IP) belongs
/// to one tenant.
pub fn add(store: &Store, name: &str, dns: &[String], ip: &[String]) -> Result<Tenant, Error> {
    check_tenant_name(name)?;
    let (names_ok, ips_ok) = owned_names(name, dns, ip)?;
    if store.tenant(name)?.is_some() {
        return Err(Error::TenantExists(name.to_owned()));
    }
    check_free(store, name, &names_ok, &ips_ok)?;
    let tenant = Tenant {
        name: name.to_owned(),
        dns: names_ok,
        ip: ips_ok,
        ..Tenant::default()
    };
    let mut batch = Batch::default();
    batch.put_tenant(&tenant);
    store.commit(batch)?;
    Ok(tenant)
}

/// The DNS names and IP addresses a tenant `name` is to own, normalised
/// and deduplicated (`tenant add`, `tenant set --dns/--ip`): within the
/// limits, at least one of them.
fn owned_names(
    name: &str,
    dns: &[String],
    ip: &[String],
) -> Result<(Vec<String>, Vec<String>), Error> {
    let mut names_ok = Vec::new();
    for raw in dns {
        let n = names::normalize_host(raw).map_err(|e| Error::bad_name(raw, e))?;
        if !names_ok.contains(&n) {
            names_ok.push(n);
        }
    }
    if names_ok.len() > MAX_DNS_NAMES_PER_TENANT {
        return Err(Error::LimitExceeded(format!(
            "a tenant may own at most {MAX_DNS_NAMES_PER_TENANT} DNS names"
        )));
    }
    let mut ips_ok = Vec::new();
    for raw in ip {
        let n = names::ip_text(raw).ok_or_else(|| {
            Error::BadName(
                raw.clone(),
                "not an IP address (IPv4 like 192.0.2.10, or IPv6 like 2001:db8::10)".into(),
            )
        })?;
        if !ips_ok.contains(&n) {
            ips_ok.push(n);
        }
    }
    if ips_ok.len() > MAX_IPS_PER_TENANT {
        return Err(Error::LimitExceeded(format!(
            "a tenant may own at most {MAX_IPS_PER_TENANT} IP addresses"
        )));
    }
    if names_ok.is_empty() && ips_ok.is_empty() {
        return Err(Error::BadName(
            name.to_owned(),
            "a tenant owns at least one DNS name (--dns) or IP address (--ip)".into(),
        ));
    }
    Ok((names_ok, ips_ok))
}

/// A name (DNS or IP) belongs to one tenant: none of these may be another
/// tenant's than `name`'s (`dns-name-taken`).
fn check_free(store: &Store, name: &str, dns: &[String], ip: &[String]) -> Result<(), Error> {
    for other in store.tenants()?.into_iter().filter(|t| t.name != name) {
        let mut mine = dns.iter().chain(ip.iter());
        if let Some(taken) = mine.find(|n| other.names().any(|o| o == *n)) {
            return Err(Error::DnsNameTaken(taken.clone(), other.name));
        }
    }
    Ok(())
}

/// `tenant remove NAME`
pub fn remove(store: &Store, name: &str) -> Result<(), Error> {
    if store.tenant(name)?.is_none() {
        return Err(Error::NoSuchTenant(name.to_owned()));
    }
    let owned = store
        .certs()?
        .iter()
        .filter(|c| c.kind == Kind::Domain && c.tenant.as_deref() == Some(name))
        .count();
    if owned > 0 {
        return Err(Error::TenantInUse(name.to_owned(), owned));
    }
    let mut batch = Batch::default();
    batch.delete_tenant(name);
    store.commit(batch)?;
    Ok(())
}

/// `tenant set|edit NAME [--dns HOST...] [--ip ADDR...] [--acme-challenge C]
/// [--acme-key-type K] [--acme-profile P]`: `dns` / `ip` replace the
/// tenant's names or addresses (checked as `tenant add` checks them, against
/// the other tenants; allowed while it owns certificates, which keep their
/// tenant), and the tenant's ACME options; `None` leaves one as it is, `Override::Default` follows the
/// global setting (`acme set --challenge`; P-256 for the key type; `acme
/// set --profile` for the profile, given as a word: `default` or a name). The
/// words were parsed at the input (`model::Override`'s one `FromStr`).
pub fn set(
    store: &Store,
    name: &str,
    names: (Option<&[String]>, Option<&[String]>),
    acme_challenge: Option<Override<ChallengeChoice>>,
    acme_key_type: Option<Override<KeyType>>,
    acme_profile: Option<&str>,
) -> Result<Tenant, Error> {
    let profile = acme_profile
        .map(|p| crate::acme::parse_profile(p, "--acme-profile"))
        .transpose()?;
    let challenge = acme_challenge.map(Override::into_option);
    let key_type = acme_key_type.map(Override::into_option);
    let mut tenant = store
        .tenant(name)?
        .ok_or_else(|| Error::NoSuchTenant(name.to_owned()))?;
    if names.0.is_some() || names.1.is_some() {
        let dns = names.0.unwrap_or(&tenant.dns);
        let ip = names.1.unwrap_or(&tenant.ip);
        let (dns, ip) = owned_names(name, dns, ip)?;
        check_free(store, name, &dns, &ip)?;
        tenant.dns = dns;
        tenant.ip = ip;
    }
    if let Some(c) = challenge {
        tenant.acme_challenge = c;
    }
    if let Some(k) = key_type {
        tenant.acme_key_type = k;
    }
    if let Some(p) = profile {
        tenant.acme_profile = p;
    }
    let mut batch = Batch::default();
    batch.put_tenant(&tenant);
    store.commit(batch)?;
    Ok(tenant)
}

/// A tenant as `tenant list --json` shows it: the ACME options are
/// `"default"` when they follow the global setting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantView {
    /// Unique name.
    pub name: String,
    /// Owned DNS names.
    pub dns: Vec<String>,
    /// Owned IP addresses (RFC 8738).
    #[serde(default)]
    pub ip: Vec<String>,
    /// `default` or the tenant's challenge.
    pub acme_challenge: Override<ChallengeChoice>,
    /// `default` or the tenant's key type.
    pub acme_key_type: Override<KeyType>,
    /// `default` or the tenant's ACME profile.
    pub acme_profile: String,
}

impl TenantView {
    /// The view of a stored tenant.
    pub fn of(t: &Tenant) -> TenantView {
        TenantView {
            name: t.name.clone(),
            dns: t.dns.clone(),
            ip: t.ip.clone(),
            acme_challenge: t.acme_challenge.map_or(Override::Default, Override::Set),
            acme_key_type: t.acme_key_type.map_or(Override::Default, Override::Set),
            acme_profile: t
                .acme_profile
                .clone()
                .unwrap_or_else(|| "default".to_owned()),
        }
    }
}

/// `system show --json`: the system settings and the Root CA list's
/// version (stored, bundled, whether a reset would update it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemView {
    /// The PBX's own DNS name.
    pub dns: Option<String>,
    /// The admin's e-mail address.
    pub admin_email: Option<String>,
    /// The certificate served without SNI, when set explicitly.
    pub default_cert: Option<String>,
    /// Whether a missing issuer is fetched from AIA caIssuers at import
    /// (`system set --aia-fetch on|off`).
    pub aia_fetch: bool,
    /// The stored Root CA list's version (the bundled list it was last
    /// reset to; its root count is that list's, not the store's).
    pub roots_version: Option<String>,
    /// How many roots are stored now (after imports and deletes).
    #[serde(default)]
    pub roots_stored: usize,
    /// The Root CA list this release bundles.
    pub bundled_roots_version: String,
    /// True when `roots reset` would install a newer list.
    pub roots_update_available: bool,
    /// Whether private keys and secret settings are sealed at rest: a
    /// store key file was given (`--store-key-file`; `crate::seal`), so
    /// every value written is sealed (older ones once `store rekey` ran).
    #[serde(default)]
    pub keys_sealed: bool,
    /// The ID of the key that seals (16 hex digits), when sealed.
    #[serde(default)]
    pub seal_key_id: Option<String>,
}

/// What `system set` changes; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct SystemChange {
    /// The PBX's DNS name.
    pub dns: Option<String>,
    /// The admin e-mail (`none` clears it).
    pub admin_email: Option<String>,
    /// A certificate ID (already resolved) or `None` inside to clear.
    pub default_cert: Option<Option<String>>,
}

/// `system set`
pub fn set_system(store: &Store, change: &SystemChange) -> Result<SystemSettings, Error> {
    let mut system = store.system()?;
    if let Some(dns) = &change.dns {
        system.dns = match dns.as_str() {
            "none" => None,
            raw => Some(names::normalize_host(raw).map_err(|e| Error::bad_name(raw, e))?),
        };
    }
    if let Some(email) = &change.admin_email {
        system.admin_email = match email.as_str() {
            "none" => None,
            e => {
                if !crate::model::valid_email(e) {
                    return Err(Error::BadEmail(e.to_owned()));
                }
                Some(e.to_owned())
            }
        };
    }
    if let Some(default) = &change.default_cert {
        if let Some(id) = default {
            let record = store.cert(id)?.ok_or_else(|| Error::NotFound(id.clone()))?;
            if record.kind == Kind::StirShaken {
                return Err(Error::NotServable(id.clone()));
            }
        }
        system.default_cert = default.clone();
    }
    let mut batch = Batch::default();
    batch.put_system(&system);
    store.commit(batch)?;
    Ok(system)
}
