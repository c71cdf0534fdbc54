//! "Who gets what": for every name the PBX answers for, the certificate a
//! client gets, by which rule, and what is wrong with that answer.
//!
//! Why: a tenant without a certificate of its own silently gets the default
//! or a wildcard for another domain, and every phone then rejects the name
//! mismatch; two certificates for one tenant leave the administrator
//! guessing which is served. `served` (CLI), `GET /api/served` and the
//! Certificates page answer it from the same rows.
//!
//! What must hold: every answer comes from `Snapshot::resolve`, the one rule
//! the handshake uses (README "SNI rules"), over a snapshot built from the
//! store as it is, so the page cannot say other than what TLS serves. The
//! rows: each tenant DNS name (SNI), each tenant IP address (a client
//! without SNI connected to it, RFC 8738 names), the system DNS name, a
//! client without SNI, and a name nobody owns (`unknown.invalid`, RFC 6761
//! §6.4: never a real name). Warnings: `name-not-covered` (the served
//! certificate does not name it: clients reject it, RFC 6125 §6.4),
//! `expired` / `not-yet-valid`, `nothing-served`.

use serde::{Deserialize, Serialize};

use crate::certs;
use crate::clock;
use crate::error::Error;
use crate::names;
use crate::snapshot::Snapshot;
use crate::store::Store;

/// The SNI of the "a name nobody owns" row (RFC 6761 §6.4 `.invalid`).
pub const UNKNOWN_NAME: &str = "unknown.invalid";

/// Something wrong with one row's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServedWarning {
    /// `name-not-covered`, `expired`, `not-yet-valid`, `nothing-served`.
    pub code: String,
    /// What it means for clients, in plain words.
    pub message: String,
}

/// One name and the certificate a client asking for it gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServedRow {
    /// What the client asks: the SNI, `no SNI at ADDR`, `no SNI`, or
    /// `unknown name`.
    pub asked: String,
    /// The SNI sent (`None`: none).
    pub sni: Option<String>,
    /// The address connected to, for a tenant's IP row.
    pub local_address: Option<String>,
    /// Who owns the name: a tenant, `system`, or nobody.
    pub owner: Option<String>,
    /// The certificate served (`None`: the handshake fails).
    pub id: Option<String>,
    /// The served certificate's first name, to name it by.
    pub cert_name: Option<String>,
    /// The served certificate's expiry, RFC 3339.
    pub not_after: Option<String>,
    /// The rule that chose it (`snapshot::Match`).
    #[serde(rename = "match")]
    pub matched: String,
    /// What clients will object to.
    pub warnings: Vec<ServedWarning>,
}

/// A tenant's STIR/SHAKEN certificate and the rule that chose it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StirRow {
    /// The tenant.
    pub tenant: String,
    /// The certificate used to sign its calls.
    pub id: Option<String>,
    /// `tenant`, `first` or `none` (`stir-shaken select`).
    #[serde(rename = "match")]
    pub matched: String,
    /// Where verifiers fetch its chain (`x5u`); `None` without a
    /// certificate or without an x5u base (`stir-shaken set`).
    #[serde(default)]
    pub x5u: Option<String>,
}

/// `served --json`, `GET /api/served`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServedView {
    /// Every name the PBX answers for, and the answer.
    pub names: Vec<ServedRow>,
    /// Each tenant's STIR/SHAKEN choice.
    pub stir_shaken: Vec<StirRow>,
    /// IDs of TLS certificates no row is served and no name of their own
    /// resolves to: stored but never sent to a client.
    pub not_served: Vec<String>,
}

/// One name whose certificate a delete changes: what it gets now and what
/// it would get instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServedChange {
    /// The answer today (served by the certificate to delete).
    pub now: ServedRow,
    /// The answer after the delete (with its warnings).
    pub instead: ServedRow,
}

/// `cert delete ID --dry-run`: every name the certificate serves today and
/// what it would get once the certificate is gone, by the same rule.
pub fn after_delete(store: &Store, id: &str) -> Result<Vec<ServedChange>, Error> {
    let now = clock::now();
    let (tenants, system) = (store.tenants()?, store.system()?);
    let before = rows(&Snapshot::load(store, None)?, &tenants, &system, now);
    let after = rows(
        &Snapshot::load_without(store, None, Some(id))?,
        &tenants,
        &system,
        now,
    );
    Ok(before
        .into_iter()
        .zip(after)
        .filter(|(b, _)| b.id.as_deref() == Some(id))
        .map(|(now, instead)| ServedChange { now, instead })
        .collect())
}

/// `tenant remove NAME --dry-run`: every name whose answer the removal
/// changes (the tenant's own names and addresses first) and what it would
/// get once the tenant is gone, by the same rule.
pub fn after_tenant_remove(store: &Store, tenant: &str) -> Result<Vec<ServedChange>, Error> {
    let now = clock::now();
    let (tenants, system) = (store.tenants()?, store.system()?);
    let before = rows(&Snapshot::load(store, None)?, &tenants, &system, now);
    // The same names asked of the store without the tenant.
    let after = rows(
        &Snapshot::load_without_tenant(store, tenant)?,
        &tenants,
        &system,
        now,
    );
    Ok(before
        .into_iter()
        .zip(after)
        .filter(|(b, a)| b.owner.as_deref() == Some(tenant) || b.id != a.id)
        .map(|(now, mut instead)| {
            if instead.owner.as_deref() == Some(tenant) {
                instead.owner = None;
            }
            ServedChange { now, instead }
        })
        .collect())
}

/// Build the view from the store.
pub fn view(store: &Store) -> Result<ServedView, Error> {
    let snapshot = Snapshot::load(store, None)?;
    let now = clock::now();
    let tenants = store.tenants()?;
    let system = store.system()?;
    let rows = rows(&snapshot, &tenants, &system, now);
    finish(store, &snapshot, &tenants, rows, now)
}

/// The rows of every name the PBX answers for, in a fixed order (tenants'
/// names, their addresses, the system name, no SNI, an unknown name).
fn rows(
    snapshot: &Snapshot,
    tenants: &[crate::model::Tenant],
    system: &crate::model::SystemSettings,
    now: i64,
) -> Vec<ServedRow> {
    let mut rows = Vec::new();
    let mut ask = |asked: String,
                   sni: Option<&str>,
                   local: Option<std::net::IpAddr>,
                   owner: Option<&str>| {
        let r = snapshot.resolve(sni, local, now);
        let name = sni.map(str::to_owned).or(local.map(|ip| ip.to_string()));
        let mut warnings = Vec::new();
        let warn = |code: &str, message: String| ServedWarning {
            code: code.into(),
            message,
        };
        match r.served {
            None => warnings.push(warn(
                "nothing-served",
                "no certificate to serve: the handshake fails".into(),
            )),
            Some(s) => {
                if let Some(n) = name.as_deref().filter(|n| *n != UNKNOWN_NAME) {
                    if !s.names.iter().any(|c| names::covers(c, n)) {
                        warnings.push(warn(
                            "name-not-covered",
                            format!(
                                "the certificate served does not name {n}: phones and browsers reject it; \
                                 give {} a certificate for it (import, ACME or the local CA)",
                                owner.unwrap_or("its owner")
                            ),
                        ));
                    }
                }
                if s.not_after <= now {
                    warnings.push(warn("expired", "the certificate served has expired".into()));
                } else if s.not_before > now {
                    warnings.push(warn(
                        "not-yet-valid",
                        "the certificate served is not valid yet".into(),
                    ));
                }
            }
        }
        rows.push(ServedRow {
            asked,
            sni: sni.map(str::to_owned),
            local_address: local.map(|ip| ip.to_string()),
            owner: owner.map(str::to_owned),
            id: r.served.map(|s| s.id.to_string()),
            cert_name: r
                .served
                .and_then(|s| s.names.first())
                .map(|n| n.to_string()),
            not_after: r.served.map(|s| clock::rfc3339(s.not_after)),
            matched: r.matched.as_str().to_owned(),
            warnings,
        });
    };
    for t in tenants {
        for dns in &t.dns {
            ask(dns.clone(), Some(dns), None, Some(&t.name));
        }
        for ip in &t.ip {
            if let Ok(addr) = ip.parse() {
                ask(format!("no SNI at {ip}"), None, Some(addr), Some(&t.name));
            }
        }
    }
    if let Some(dns) = &system.dns {
        ask(dns.clone(), Some(dns), None, Some("system"));
    }
    ask("no SNI".into(), None, None, None);
    ask("unknown name".into(), Some(UNKNOWN_NAME), None, None);
    rows
}

/// The view's STIR/SHAKEN choices and unserved certificates around `rows`.
fn finish(
    store: &Store,
    snapshot: &Snapshot,
    tenants: &[crate::model::Tenant],
    rows: Vec<ServedRow>,
    now: i64,
) -> Result<ServedView, Error> {
    let mut stir_shaken = Vec::new();
    for t in tenants {
        let (id, matched) = certs::stir_select(store, &t.name)?;
        let x5u = id
            .as_deref()
            .and_then(|id| crate::stir::x5u_of(store, id).ok());
        stir_shaken.push(StirRow {
            tenant: t.name.clone(),
            id,
            matched: matched.as_str().to_owned(),
            x5u,
        });
    }

    let served_ids: Vec<&str> = rows.iter().filter_map(|r| r.id.as_deref()).collect();
    let mut not_served = Vec::new();
    for c in store.certs()? {
        if !matches!(c.kind, crate::pki::Kind::Server | crate::pki::Kind::Domain)
            || served_ids.contains(&c.id.as_str())
        {
            continue;
        }
        // Its own names: a wildcard answered for a name under it.
        let own = c.names.iter().any(|n| {
            let probe = match names::wildcard_base(n) {
                Some(base) => format!("served-probe.{base}"),
                None => n.clone(),
            };
            let r = snapshot.resolve(Some(&probe), None, now);
            r.served.is_some_and(|s| *s.id == *c.id)
        });
        if !own {
            not_served.push(c.id);
        }
    }
    Ok(ServedView {
        names: rows,
        stir_shaken,
        not_served,
    })
}
