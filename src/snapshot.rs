//! The SNI snapshot: an immutable map from names to ready-to-serve
//! certificates, rebuilt whole after every committed change.
//!
//! Why: every TLS handshake (HTTPS admin, SIP-TLS) asks "which certificate for
//! this SNI?". rustls calls `ResolvesServerCert::resolve` inside the handshake,
//! so the answer must come without locks, I/O or heap allocation; all the work
//! (parsing keys, classifying names, sorting candidates) happens in `build`.
//!
//! The choice (README, "SNI rules"; certmagic `handshake.go` has the same
//! exact → wildcard → default order):
//! 1. a domain certificate of the tenant owning the SNI name → `domain`;
//! 2. a server certificate naming it exactly, then by wildcard (RFC 6125
//!    §6.4.3, one label) → `server`;
//! 3. the default certificate (also with no SNI) → `default`;
//! 4. nothing → `none`.
//!
//! Among candidates of one step the latest `notAfter` wins; a certificate
//! outside its validity is used only when no valid one qualifies at any step.
//!
//! What must hold: `resolve` is a pure read of `&self` and allocates nothing.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::sign::CertifiedKey;

use crate::names::{self, NameBuf};
use crate::pki::{self, Kind};
use crate::store::{CertRecord, Store, StoreError, SystemSettings, Tenant};

/// A certificate ready to serve.
pub struct Served {
    /// Certificate ID.
    pub id: Box<str>,
    /// Server or domain.
    pub kind: Kind,
    /// Owner of a domain certificate.
    pub tenant: Option<Box<str>>,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
    /// Import order.
    pub seq: u64,
    /// Names (normalised), for the default-by-system-name rule.
    pub names: Box<[Box<str>]>,
    /// Chain and signing key, as rustls serves them.
    pub certified: Arc<CertifiedKey>,
}

impl Served {
    fn valid_at(&self, now: i64) -> bool {
        self.not_before <= now && now < self.not_after
    }
}

/// Which rule picked the certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// A domain certificate of the owning tenant.
    Domain,
    /// A server certificate, exact or wildcard.
    Server,
    /// The default certificate.
    Default,
    /// Nothing to serve.
    None,
}

impl Match {
    /// The name used by the CLI and API.
    pub fn as_str(self) -> &'static str {
        match self {
            Match::Domain => "domain",
            Match::Server => "server",
            Match::Default => "default",
            Match::None => "none",
        }
    }
}

/// The answer for one SNI value.
pub struct Resolution<'a> {
    /// The chosen certificate.
    pub served: Option<&'a Served>,
    /// Which rule chose it.
    pub matched: Match,
    /// The tenant owning the SNI name.
    pub tenant: Option<&'a str>,
}

#[derive(Default)]
struct NameEntry {
    tenant: Option<u32>,
    domain: Vec<u32>,
    server: Vec<u32>,
}

/// The immutable SNI map.
#[derive(Default)]
pub struct Snapshot {
    served: Vec<Served>,
    names: HashMap<Box<str>, NameEntry>,
    wildcards: HashMap<Box<str>, Vec<u32>>,
    default: Vec<u32>,
    tenants: Vec<Box<str>>,
    ids: HashMap<Box<str>, u32>,
}

/// One certificate handed to `build`.
pub struct Input {
    /// Its stored metadata.
    pub record: CertRecord,
    /// Its chain and key.
    pub certified: Arc<CertifiedKey>,
}

impl Snapshot {
    /// Build from certificates, tenants and settings. STIR/SHAKEN
    /// certificates are ignored: they never serve TLS.
    pub fn build(inputs: Vec<Input>, tenants: &[Tenant], system: &SystemSettings) -> Snapshot {
        let served: Vec<Served> = inputs
            .into_iter()
            .filter(|i| matches!(i.record.kind, Kind::Server | Kind::Domain))
            .map(|i| Served {
                id: i.record.id.into(),
                kind: i.record.kind,
                tenant: i.record.tenant.map(Into::into),
                not_before: i.record.not_before,
                not_after: i.record.not_after,
                seq: i.record.seq,
                names: i.record.names.into_iter().map(Into::into).collect(),
                certified: i.certified,
            })
            .collect();
        let mut snap = Snapshot {
            tenants: tenants.iter().map(|t| t.name.as_str().into()).collect(),
            ..Snapshot::default()
        };
        for (ti, tenant) in tenants.iter().enumerate() {
            for dns in &tenant.dns {
                snap.names.entry(dns.as_str().into()).or_default().tenant = u32::try_from(ti).ok();
            }
        }
        for (i, cert) in served.iter().enumerate() {
            let Ok(i) = u32::try_from(i) else { break };
            for name in cert.names.iter() {
                match (cert.kind, names::wildcard_base(name)) {
                    (Kind::Domain, None) => {
                        if let Some(entry) = snap.names.get_mut(&**name) {
                            let owner = entry.tenant.and_then(|t| snap.tenants.get(t as usize));
                            if owner.is_some() && owner == cert.tenant.as_ref() {
                                entry.domain.push(i);
                            }
                        }
                    }
                    (Kind::Server, None) => {
                        snap.names.entry(name.clone()).or_default().server.push(i)
                    }
                    (Kind::Server, Some(base)) => {
                        snap.wildcards.entry(base.into()).or_default().push(i)
                    }
                    _ => {}
                }
            }
        }
        let explicit = system
            .default_cert
            .as_deref()
            .and_then(|id| served.iter().position(|s| &*s.id == id));
        snap.default = match explicit.and_then(|i| u32::try_from(i).ok()) {
            Some(i) => vec![i],
            None => {
                let servers = (0..served.len()).filter(|&i| served[i].kind == Kind::Server);
                let covering: Vec<usize> = match system.dns.as_deref() {
                    Some(dns) => servers
                        .clone()
                        .filter(|&i| served[i].names.iter().any(|n| names::covers(n, dns)))
                        .collect(),
                    None => Vec::new(),
                };
                let chosen = if covering.is_empty() {
                    servers.collect()
                } else {
                    covering
                };
                chosen
                    .into_iter()
                    .filter_map(|i| u32::try_from(i).ok())
                    .collect()
            }
        };
        let order = |list: &mut Vec<u32>| {
            list.sort_by(|&a, &b| {
                let (a, b) = (&served[a as usize], &served[b as usize]);
                b.not_after.cmp(&a.not_after).then(b.seq.cmp(&a.seq))
            });
            list.dedup();
        };
        for entry in snap.names.values_mut() {
            order(&mut entry.domain);
            order(&mut entry.server);
        }
        snap.wildcards.values_mut().for_each(order);
        order(&mut snap.default);
        snap.ids = served
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((s.id.clone(), u32::try_from(i).ok()?)))
            .collect();
        snap.served = served;
        snap
    }

    /// Build from the store. A certificate whose key no longer loads is left
    /// out (and logged) rather than failing the whole snapshot. Certificates
    /// already in `previous` are reused without re-parsing their keys.
    pub fn load(store: &Store, previous: Option<&Snapshot>) -> Result<Snapshot, StoreError> {
        let mut inputs = Vec::new();
        for record in store.certs()? {
            if record.kind == Kind::StirShaken {
                continue;
            }
            if let Some(old) = previous.and_then(|p| p.by_id(&record.id)) {
                inputs.push(Input {
                    certified: old.certified.clone(),
                    record,
                });
                continue;
            }
            match certified_key(store, &record)? {
                Some(certified) => inputs.push(Input { record, certified }),
                None => log::warn!("certificate {} has no usable key; not served", record.id),
            }
        }
        Ok(Snapshot::build(inputs, &store.tenants()?, &store.system()?))
    }

    /// The served certificate with this ID.
    pub fn by_id(&self, id: &str) -> Option<&Served> {
        self.ids.get(id).and_then(|&i| self.served.get(i as usize))
    }

    /// Number of servable certificates.
    pub fn len(&self) -> usize {
        self.served.len()
    }

    /// Nothing to serve.
    pub fn is_empty(&self) -> bool {
        self.served.is_empty()
    }

    /// Pick the certificate for an SNI value (`None`: no SNI). Allocation-free.
    pub fn resolve(&self, sni: Option<&str>, now: i64) -> Resolution<'_> {
        let mut buf = NameBuf::new();
        let name = sni.and_then(|raw| names::normalize_into(raw, &mut buf).map(|()| buf.as_str()));
        let entry = name.and_then(|n| self.names.get(n));
        let wild = name
            .and_then(names::parent)
            .and_then(|p| self.wildcards.get(p));
        let tenant = entry
            .and_then(|e| e.tenant)
            .and_then(|t| self.tenants.get(t as usize))
            .map(|t| &**t);
        let none: &[u32] = &[];
        let steps: [(&[u32], Match); 4] = [
            (entry.map_or(none, |e| &e.domain), Match::Domain),
            (entry.map_or(none, |e| &e.server), Match::Server),
            (wild.map_or(none, |w| w.as_slice()), Match::Server),
            (&self.default, Match::Default),
        ];
        let pick = |valid_only: bool| {
            steps.iter().find_map(|(list, matched)| {
                list.iter()
                    .filter_map(|&i| self.served.get(i as usize))
                    .find(|s| !valid_only || s.valid_at(now))
                    .map(|s| (s, *matched))
            })
        };
        match pick(true).or_else(|| pick(false)) {
            Some((served, matched)) => Resolution {
                served: Some(served),
                matched,
                tenant,
            },
            None => Resolution {
                served: None,
                matched: Match::None,
                tenant,
            },
        }
    }
}

/// Load one stored certificate's chain and key as a rustls `CertifiedKey`.
pub fn certified_key(
    store: &Store,
    record: &CertRecord,
) -> Result<Option<Arc<CertifiedKey>>, StoreError> {
    let chain = store.chain(&record.id)?;
    let Some(key) = store.key(&record.key_id)? else {
        return Ok(None);
    };
    let Ok(parsed) = pki::load_key(key.format, &key.der) else {
        return Ok(None);
    };
    let chain = chain.into_iter().map(CertificateDer::from).collect();
    Ok(Some(Arc::new(CertifiedKey::new(chain, parsed.signer))))
}
