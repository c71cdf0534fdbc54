//! Certificate operations: import (rules 1–7), list, show, delete, and the
//! STIR/SHAKEN choice.
//!
//! Why: `pki::analyse` is pure (rules 1–6); this module adds what needs the
//! store: rule 7 (reuse of a stored key, replacement of older certificates
//! with the same key), import order, and the single transaction per change.
//!
//! The chain doctor (issue 17) lives here because it needs the network:
//! when rule 4 finds an issuer missing, the caIssuers URL `pki` names is
//! fetched once per round (`outbound`, bounded by `AIA_*` limits; off with
//! `system set --aia-fetch off`) and the box judged again. `cert check`
//! judges a stored chain again now.
//!
//! What must hold: a failed import commits nothing; a key is deleted only when
//! no remaining certificate uses it; deleting the default certificate clears
//! the setting. STIR/SHAKEN choice per RFC 8226 §9 / RFC 8224: a certificate
//! whose names match the tenant's, else the first imported.

use crate::clock;
use crate::error::Error;
use crate::limits::{AIA_FETCH_TIMEOUT, AIA_MAX_BYTES, AIA_MAX_FETCHES};
use crate::model::{Source, UnknownValue, Word};
use crate::pki::{self, Analysis, Context, Kind, KindRequest, Notice};
use crate::roots::TrustList;
use crate::store::{Batch, CertRecord, Store};

/// Every kind `import --kind` accepts, in the order the CLI lists them.
const KINDS: [KindRequest; 7] = [
    KindRequest::Auto,
    KindRequest::Root,
    KindRequest::Server,
    KindRequest::Domain,
    KindRequest::StirShaken,
    KindRequest::ClientCa,
    KindRequest::Ca,
];

/// Their words (the one parser: `KindRequest::from_str` below, used by the
/// CLI, the API and the import page).
pub const KIND_NAMES: &[&str] = &[
    "auto",
    "root",
    "server",
    "domain",
    "stir-shaken",
    "client-ca",
    "ca",
];

impl Word for KindRequest {
    fn word(self) -> &'static str {
        match self {
            KindRequest::Auto => "auto",
            KindRequest::Root => "root",
            KindRequest::Server => "server",
            KindRequest::Domain => "domain",
            KindRequest::StirShaken => "stir-shaken",
            KindRequest::ClientCa => "client-ca",
            KindRequest::Ca => "ca",
        }
    }
}

impl core::str::FromStr for KindRequest {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<KindRequest, UnknownValue> {
        KINDS
            .iter()
            .copied()
            .find(|k| k.word() == s)
            .ok_or_else(|| UnknownValue {
                what: "kind",
                given: s.to_owned(),
                accepted: KIND_NAMES,
            })
    }
}

/// The result of an import, as `import --json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Imported {
    /// ID of the (first) certificate.
    pub id: String,
    /// `root`, `server`, `domain`, `stir-shaken`.
    pub kind: String,
    /// Owning tenant of a domain certificate.
    pub tenant: Option<String>,
    /// DNS names of the leaf.
    pub names: Vec<String>,
    /// RFC 3339.
    pub not_after: String,
    /// Warnings (`code`, `message`).
    pub warnings: Vec<Warning>,
    /// For a root import: every added root.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ids: Option<Vec<String>>,
    /// Extended key usages of the (first) certificate (`pki::CertInfo::eku`):
    /// whether it may serve TLS (`server-auth`) and act as a TLS client
    /// (`client-auth`, needed by trunks that ask for mutual TLS).
    #[serde(default)]
    pub eku: Vec<String>,
}

/// A warning of an import as `import --json` shows it (a `pki::Notice`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Warning {
    /// Stable lowercase code.
    pub code: String,
    /// Text for a PBX admin.
    pub message: String,
}

impl From<Notice> for Warning {
    fn from(n: Notice) -> Warning {
        Warning {
            code: n.code.to_owned(),
            message: n.message,
        }
    }
}

/// What the pure rules need from the store (`pki::Context` borrows it).
struct StoreFacts {
    tenants: Vec<crate::model::Tenant>,
    roots: Vec<Vec<u8>>,
    local_ca: Option<Vec<u8>>,
    phone_roots: Vec<Vec<u8>>,
}

impl StoreFacts {
    fn read(store: &Store) -> Result<StoreFacts, Error> {
        Ok(StoreFacts {
            tenants: store.tenants()?,
            roots: store.roots()?.into_iter().map(|(_, der)| der).collect(),
            local_ca: local_ca_root(store)?,
            phone_roots: TrustList::Phone
                .entries(store)?
                .into_iter()
                .map(|(_, der)| der)
                .collect(),
        })
    }

    /// The rules' context, judged at now.
    fn context(&self) -> Context<'_> {
        Context {
            tenants: &self.tenants,
            roots: &self.roots,
            local_ca: self.local_ca.as_deref(),
            phone_roots: &self.phone_roots,
            now: clock::now(),
        }
    }
}

fn warnings(notices: Vec<Notice>) -> Vec<Warning> {
    notices.into_iter().map(Warning::from).collect()
}

/// `phone-roots|sti-roots|client-cas import`: CA certificates judged as a
/// `--kind root` import (rules 1, 5, 6) and kept in `list`, apart from the
/// Root CA list; returns the list after the import.
pub fn import_trust(
    store: &Store,
    list: TrustList,
    cert_box: &[u8],
) -> Result<Vec<crate::roots::RootInfo>, Error> {
    let ders = judge_roots(store, cert_box, list.what())?;
    list.add(store, &ders)?;
    Ok(list.list(store)?)
}

/// The CA certificates of a box, judged by the import rules as roots
/// (the trust lists' imports); `what` names them in the
/// refusal of a leaf.
pub fn judge_roots(store: &Store, cert_box: &[u8], what: &str) -> Result<Vec<Vec<u8>>, Error> {
    let facts = StoreFacts::read(store)?;
    let ctx = facts.context();
    match pki::analyse(cert_box, None, KindRequest::Root, &ctx)? {
        Analysis::Roots { certs, .. } => Ok(certs.into_iter().map(|c| c.der).collect()),
        // `KindRequest::Root` yields roots or a refusal (`not-a-ca`).
        Analysis::Leaf(_) => Err(Error::Import(pki::ImportError::NotACa(format!(
            "{what} must be a CA certificate"
        )))),
    }
}

/// `import`: rules 1–7, then one transaction.
pub fn import(
    store: &Store,
    cert_box: &[u8],
    key_box: Option<&[u8]>,
    kind: KindRequest,
    source: Source,
) -> Result<Imported, Error> {
    let facts = StoreFacts::read(store)?;
    let ctx = facts.context();
    let mut cert_box = cert_box.to_vec();
    let mut fetched: Vec<Notice> = Vec::new();
    let analysis = loop {
        match pki::analyse(&cert_box, key_box, kind, &ctx) {
            // Chain doctor: the issuer is missing; fetch it from the AIA
            // caIssuers URL of the certificate that names it (RFC 5280
            // §4.2.2.1), then judge the box again.
            Err(e @ pki::ImportError::IncompleteChain(_))
                if fetched.len() < AIA_MAX_FETCHES && aia_fetch_enabled(store)? =>
            {
                let Some((subject, url)) = pki::missing_issuer_url(&cert_box) else {
                    break Err(e);
                };
                if fetched.iter().any(|n| n.message.contains(&url)) {
                    break Err(e);
                }
                let Ok(ders) = fetch_issuer(store, &url) else {
                    break Err(e);
                };
                for der in &ders {
                    cert_box.extend_from_slice(crate::pem::encode("CERTIFICATE", der).as_bytes());
                }
                fetched.push(Notice {
                    code: "intermediate-fetched",
                    message: format!(
                        "the issuer of \"{subject}\" was missing; it was fetched from {url} \
                         (the certificate's AIA caIssuers URL). Paste the CA's bundle to avoid the fetch"
                    ),
                });
            }
            other => break other,
        }
    };
    let leaf = match analysis? {
        Analysis::Roots { certs, warnings } if kind == KindRequest::ClientCa => {
            let ders: Vec<Vec<u8>> = certs.iter().map(|c| c.der.clone()).collect();
            TrustList::Client.add(store, &ders)?;
            let first = &certs[0];
            return Ok(Imported {
                id: first.id.clone(),
                kind: kind.word().to_owned(),
                tenant: None,
                names: Vec::new(),
                not_after: clock::rfc3339(first.not_after),
                warnings: self::warnings(warnings),
                ids: Some(certs.iter().map(|c| c.id.clone()).collect()),
                eku: first.eku.clone(),
            });
        }
        Analysis::Roots { certs, warnings } => {
            let mut batch = Batch::default();
            let mut ids: Vec<String> = Vec::new();
            for cert in &certs {
                if !ids.contains(&cert.id) {
                    batch.put_root(&cert.id, &cert.der);
                    ids.push(cert.id.clone());
                }
            }
            store.commit(batch)?;
            let first = &certs[0];
            return Ok(Imported {
                id: first.id.clone(),
                kind: "root".to_owned(),
                tenant: None,
                names: Vec::new(),
                not_after: clock::rfc3339(first.not_after),
                warnings: self::warnings(warnings),
                ids: Some(ids),
                eku: first.eku.clone(),
            });
        }
        Analysis::Leaf(leaf) => leaf,
    };
    let mut warnings = fetched;
    warnings.extend(leaf.warnings);
    let info = &leaf.chain[0];
    let done = |record: &CertRecord, warnings: Vec<Notice>| Imported {
        id: record.id.clone(),
        kind: record.kind.as_str().to_owned(),
        tenant: record.tenant.clone(),
        names: record.names.clone(),
        not_after: clock::rfc3339(record.not_after),
        warnings: self::warnings(warnings),
        ids: None,
        eku: record.eku.clone(),
    };
    if let Some(existing) = store.cert(&info.id)? {
        return Ok(done(&existing, warnings));
    }
    let key_id = info.key_id();
    let mut batch = Batch::default();
    let mut seq = None;
    match &leaf.key {
        Some(key) => batch.put_key(&key_id, key.format, &key.der),
        None => {
            // Rule 7: reuse a stored key; replace the certificates using it.
            if store.key(&key_id)?.is_none() {
                return Err(pki::ImportError::KeyRequired.into());
            }
            let replaced: Vec<CertRecord> = store
                .certs()?
                .into_iter()
                .filter(|c| c.key_id == key_id)
                .collect();
            let mut system = store.system()?;
            for old in &replaced {
                batch.delete_cert(&old.id);
                if system.default_cert.as_deref() == Some(old.id.as_str()) {
                    system.default_cert = Some(info.id.clone());
                    batch.put_system(&system);
                }
            }
            seq = replaced.iter().map(|c| c.seq).min();
            if !replaced.is_empty() {
                // By name and expiry (an admin knows certificates by
                // these), the ID prefix last to tell twins apart.
                let old: Vec<String> = replaced
                    .iter()
                    .map(|c| {
                        let v = CertView::of(c);
                        let short = c.id.get(..16).unwrap_or(&c.id);
                        match v.names.is_empty() {
                            true => format!("{short} (expires {})", v.not_after),
                            false => {
                                format!("{} (expires {}, {short})", v.names.join(", "), v.not_after)
                            }
                        }
                    })
                    .collect();
                warnings.push(Notice {
                    code: "replaced",
                    message: format!(
                        "this certificate uses the stored key and replaces {}",
                        old.join("; ")
                    ),
                });
            }
        }
    }
    let seq = match seq {
        Some(seq) => seq,
        None => {
            let next = store.next_seq()?;
            batch.put_next_seq(next + 1);
            next
        }
    };
    let record = CertRecord::from_leaf(info, leaf.kind, leaf.tenant.clone(), source, seq);
    let chain: Vec<Vec<u8>> = leaf.chain.iter().map(|c| c.der.clone()).collect();
    batch.put_cert(&record, &chain);
    store.commit(batch)?;
    Ok(done(&record, warnings))
}

/// Whether the chain doctor may fetch a missing issuer (`system set
/// --aia-fetch off` for closed networks).
fn aia_fetch_enabled(store: &Store) -> Result<bool, Error> {
    Ok(store
        .setting(crate::settings::Setting::AiaFetch.name())?
        .as_deref()
        != Some(b"off"))
}

/// One caIssuers download (HTTP or HTTPS through `outbound`, HTTPS trusting
/// the Root CA list), bounded by `AIA_FETCH_TIMEOUT` and `AIA_MAX_BYTES`;
/// the CA certificates it holds (DER or PKCS#7, see `pki`).
fn fetch_issuer(store: &Store, url: &str) -> Result<Vec<Vec<u8>>, String> {
    use smol::future::FutureExt as _;
    let client = crate::outbound::Client::from_store(store).map_err(|e| e.to_string())?;
    let accept = [("Accept", "application/pkix-cert, application/pkcs7-mime")];
    let work = client.request("GET", url, &accept, b"");
    let timeout = async {
        smol::Timer::after(AIA_FETCH_TIMEOUT).await;
        Err(crate::outbound::HttpError::Timeout)
    };
    let resp = smol::block_on(work.or(timeout)).map_err(|e| e.to_string())?;
    if resp.status != 200 {
        return Err(format!("HTTP status {}", resp.status));
    }
    if resp.body.len() > AIA_MAX_BYTES {
        return Err("the answer is too large".into());
    }
    pki::issuer_certs_from_download(&resp.body).ok_or_else(|| "no certificate in the answer".into())
}

/// The local CA's root certificate (DER), a trust anchor of the import
/// (`localca` keeps it in the `local-ca` setting as `{"cert": base64}`).
fn local_ca_root(store: &Store) -> Result<Option<Vec<u8>>, Error> {
    use base64ct::{Base64, Encoding};
    let Some(raw) = store.setting(crate::settings::Setting::LocalCa.name())? else {
        return Ok(None);
    };
    let value: serde_json::Value = serde_json::from_slice(&raw).unwrap_or_default();
    Ok(value["cert"]
        .as_str()
        .and_then(|b| Base64::decode_vec(b).ok()))
}

/// `cert delete ID` (full ID).
pub fn delete(store: &Store, id: &str) -> Result<(), Error> {
    let record = store
        .cert(id)?
        .ok_or_else(|| Error::NotFound(id.to_owned()))?;
    let mut batch = Batch::default();
    batch.delete_cert(id);
    let key_shared = store
        .certs()?
        .iter()
        .any(|c| c.id != record.id && c.key_id == record.key_id);
    if !key_shared {
        batch.delete_key(&record.key_id);
    }
    let mut system = store.system()?;
    if system.default_cert.as_deref() == Some(id) {
        system.default_cert = None;
        batch.put_system(&system);
    }
    store.commit(batch)?;
    Ok(())
}

/// `cert check ID`: the stored chain judged again now, by the import's
/// rules 4–6 (issue 17): what a client would see today (an expired or
/// soon-expiring intermediate, a root removed from the Root CA list, ...).
/// `ok` is false with the refusal's `error`; `warnings` as on import.
pub fn check(store: &Store, id: &str) -> Result<CheckView, Error> {
    let record = store
        .cert(id)?
        .ok_or_else(|| Error::NotFound(id.to_owned()))?;
    let cert_box = chain_pem(store, id)?;
    let facts = StoreFacts::read(store)?;
    let ctx = facts.context();
    let kind = match record.kind {
        Kind::StirShaken => KindRequest::StirShaken,
        // The tenant was settled at import; only the chain is judged.
        Kind::Server | Kind::Domain => KindRequest::Server,
    };
    let refused = |code: &str, message: String| CheckView {
        id: id.to_owned(),
        ok: false,
        error: Some(Warning {
            code: code.to_owned(),
            message,
        }),
        warnings: Vec::new(),
    };
    Ok(match pki::analyse(cert_box.as_bytes(), None, kind, &ctx) {
        Ok(Analysis::Leaf(leaf)) => CheckView {
            id: id.to_owned(),
            ok: true,
            error: None,
            warnings: warnings(leaf.warnings),
        },
        Ok(Analysis::Roots { .. }) => {
            refused("not-a-leaf", "the stored chain holds no leaf".to_owned())
        }
        Err(e) => refused(e.code(), e.to_string()),
    })
}

/// `cert check --json`: what a client would see of a stored chain now.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CheckView {
    /// The certificate.
    pub id: String,
    /// Clients accept the chain.
    pub ok: bool,
    /// Why they refuse it (code and words, as an import refusal).
    pub error: Option<Warning>,
    /// Warnings, as on import.
    pub warnings: Vec<Warning>,
}

/// `cert show ID`: the PEM chain, never the key.
pub fn chain_pem(store: &Store, id: &str) -> Result<String, Error> {
    if store.cert(id)?.is_none() {
        return Err(Error::NotFound(id.to_owned()));
    }
    Ok(store
        .chain(id)?
        .iter()
        .map(|der| crate::pem::encode("CERTIFICATE", der))
        .collect())
}

/// A `certs --json` entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CertView {
    /// Hex SHA-256 of the leaf DER.
    pub id: String,
    /// `server`, `domain`, `stir-shaken`.
    pub kind: String,
    /// DNS names of the leaf.
    pub names: Vec<String>,
    /// Owning tenant of a domain certificate.
    pub tenant: Option<String>,
    /// RFC 3339.
    pub not_before: String,
    /// RFC 3339.
    pub not_after: String,
    /// Where it came from.
    pub source: Source,
    /// The key's algorithm (`p256`, `rsa2048`, `ed25519`, ...).
    pub key_type: String,
    /// Extended key usages (`server-auth`, `client-auth`, other names or
    /// dotted OIDs; `any` when the certificate has no EKU extension).
    #[serde(default)]
    pub eku: Vec<String>,
}

impl CertView {
    /// The `certs --json` entry of a stored certificate.
    pub fn of(record: &CertRecord) -> CertView {
        CertView {
            id: record.id.clone(),
            kind: record.kind.as_str().to_owned(),
            names: record.names.clone(),
            tenant: record.tenant.clone(),
            not_before: clock::rfc3339(record.not_before),
            not_after: clock::rfc3339(record.not_after),
            source: record.source,
            key_type: record.key_type.clone(),
            eku: record.eku.clone(),
        }
    }
}

/// `stir-shaken select --json`: the certificate chosen and how.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StirView {
    /// The chosen certificate's ID; `None` when there is none.
    pub id: Option<String>,
    /// `tenant`, `first` or `none` (`StirMatch`).
    #[serde(rename = "match")]
    pub matched: String,
}

/// How `stir-shaken select` chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StirMatch {
    /// A certificate naming one of the tenant's DNS names.
    Tenant,
    /// No such certificate: the earliest imported.
    First,
    /// No STIR/SHAKEN certificate at all.
    None,
}

impl StirMatch {
    /// The name used by the CLI and API.
    pub fn as_str(self) -> &'static str {
        match self {
            StirMatch::Tenant => "tenant",
            StirMatch::First => "first",
            StirMatch::None => "none",
        }
    }
}

/// `stir-shaken select --tenant NAME`
pub fn stir_select(store: &Store, tenant: &str) -> Result<(Option<String>, StirMatch), Error> {
    let tenant = store
        .tenant(tenant)?
        .ok_or_else(|| Error::NoSuchTenant(tenant.to_owned()))?;
    let stir: Vec<CertRecord> = store
        .certs()?
        .into_iter()
        .filter(|c| c.kind == Kind::StirShaken)
        .collect();
    if let Some(c) = stir
        .iter()
        .find(|c| c.names.iter().any(|n| tenant.dns.contains(n)))
    {
        return Ok((Some(c.id.clone()), StirMatch::Tenant));
    }
    Ok(match stir.first() {
        Some(c) => (Some(c.id.clone()), StirMatch::First),
        None => (None, StirMatch::None),
    })
}
