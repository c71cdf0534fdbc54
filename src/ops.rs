//! One function per CLI/API command, returning the `--json` value.
//!
//! Why: the CLI, the web admin's JSON API and (later) the control socket of the
//! running daemon must give the same answers with the same codes. Each
//! `Command` is plain data (serde), so it can cross a socket unchanged, and
//! `execute` is the only place that maps a command to library calls.
//!
//! What must hold: commands taking several IDs are all-or-nothing; every
//! write goes through one `Batch`; `Command::changes_serving` says whether the
//! SNI snapshot must be rebuilt afterwards.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::certs;
use crate::clock;
use crate::error::Error;
use crate::limits::{ID_LEN, MIN_ID_PREFIX_LEN};
use crate::pki::KindRequest;
use crate::roots;
use crate::snapshot::Snapshot;
use crate::store::{Batch, Source, Store, Tree};
use crate::tenant::{self, SystemChange};

/// A command of the CLI contract, with file contents already read.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum Command {
    /// `tenant add NAME --dns HOST...`
    TenantAdd { name: String, dns: Vec<String> },
    /// `tenant list`
    TenantList,
    /// `tenant remove NAME`
    TenantRemove { name: String },
    /// `tenant set NAME [--acme-challenge C] [--acme-key-type K]`
    TenantSet {
        name: String,
        #[serde(default)]
        acme_challenge: Option<String>,
        #[serde(default)]
        acme_key_type: Option<String>,
    },
    /// `system set`
    SystemSet {
        dns: Option<String>,
        admin_email: Option<String>,
        /// An ID prefix, or `none`.
        default_cert: Option<String>,
    },
    /// `system show`
    SystemShow,
    /// `import --cert FILE [--key FILE] [--kind K]` (boxes travel as Base64)
    Import {
        #[serde(with = "b64")]
        cert: Vec<u8>,
        #[serde(with = "b64_opt", default)]
        key: Option<Vec<u8>>,
        kind: KindRequest,
    },
    /// `certs`
    Certs,
    /// `cert show ID`
    CertShow { id: String },
    /// `cert delete ID`
    CertDelete { id: String },
    /// `roots`
    Roots,
    /// `roots show ID`
    RootsShow { id: String },
    /// `roots delete ID...`
    RootsDelete { ids: Vec<String> },
    /// `roots reset`
    RootsReset,
    /// `resolve [SNI]`
    Resolve { sni: Option<String> },
    /// `stir-shaken select --tenant NAME`
    StirShakenSelect { tenant: String },
    /// `admin password` (the password read from the terminal or stdin)
    AdminPassword { password: String },
    /// `acme set`
    AcmeSet(crate::acme::AcmeChange),
    /// `acme show`
    AcmeShow,
    /// `acme status`
    AcmeStatus,
    /// `cert reissue ID`
    CertReissue { id: String },
    /// `dns add NAME --provider P --zone Z ...`
    DnsAdd {
        name: String,
        zone: String,
        config: crate::dns::ProviderConfig,
    },
    /// `dns list`
    DnsList,
    /// `csr --name HOST... [--key-type T]`
    Csr {
        names: Vec<String>,
        key_type: crate::localca::KeyType,
    },
    /// `ca init`
    CaInit,
    /// `ca show`
    CaShow,
    /// `ca issue --tenant NAME`
    CaIssue { tenant: String },
    /// `dns remove NAME`
    DnsRemove { name: String },
    /// `dns set [--propagation-timeout S] [--propagation-interval S]`
    DnsSet {
        propagation_timeout: Option<u64>,
        propagation_interval: Option<u64>,
        #[serde(default)]
        check_ns: Option<bool>,
    },
}

/// Bytes as a Base64 string in JSON (compact on the control socket).
mod b64 {
    use base64ct::{Base64, Encoding};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&Base64::encode_string(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        Base64::decode_vec(&text).map_err(serde::de::Error::custom)
    }
}

/// `Option` of `b64`.
mod b64_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(b) => super::b64::serialize(b, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        use base64ct::{Base64, Encoding};
        match Option::<String>::deserialize(d)? {
            Some(text) => Base64::decode_vec(&text)
                .map(Some)
                .map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

impl Command {
    /// True when a successful run can change what TLS serves.
    pub fn changes_serving(&self) -> bool {
        matches!(
            self,
            Command::TenantAdd { .. }
                | Command::TenantRemove { .. }
                | Command::SystemSet { .. }
                | Command::Import { .. }
                | Command::CertDelete { .. }
                | Command::CaIssue { .. }
        )
    }

    /// True when a successful run should wake the daemon's renewal loop.
    pub fn wakes_acme(&self) -> bool {
        // A DNS provider changes how (and for the system name, for which
        // names) certificates are ordered.
        matches!(
            self,
            Command::AcmeSet(_)
                | Command::TenantSet { .. }
                | Command::CertReissue { .. }
                | Command::DnsAdd { .. }
                | Command::DnsRemove { .. }
        )
    }
}

/// An ID prefix as the CLI accepts it: 8 to 64 hex digits (lowercased).
pub fn valid_id(raw: &str) -> Option<String> {
    let ok = (MIN_ID_PREFIX_LEN..=ID_LEN).contains(&raw.len())
        && raw.bytes().all(|b| b.is_ascii_hexdigit());
    ok.then(|| raw.to_ascii_lowercase())
}

/// Message for a malformed ID.
pub fn bad_id_message() -> String {
    format!(
        "an ID is {MIN_ID_PREFIX_LEN} to {ID_LEN} hexadecimal digits (a unique prefix of the full ID)"
    )
}

/// Resolve an ID prefix (already checked: ≥ 8 lowercase hex digits).
pub fn resolve_id(store: &Store, tree: Tree, prefix: &str) -> Result<String, Error> {
    let prefix = prefix.to_ascii_lowercase();
    let mut ids = store.ids_with_prefix(tree, &prefix)?;
    match ids.len() {
        0 => Err(Error::NotFound(prefix)),
        1 => Ok(ids.remove(0)),
        _ => Err(Error::AmbiguousId(prefix)),
    }
}

fn ok() -> Value {
    json!({"ok": true})
}

/// Run one command against the store.
pub fn execute(store: &Store, command: &Command) -> Result<Value, Error> {
    match command {
        Command::TenantAdd { name, dns } => {
            tenant::add(store, name, dns)?;
            Ok(ok())
        }
        Command::TenantList => Ok(Value::Array(
            store.tenants()?.iter().map(tenant::to_json).collect(),
        )),
        Command::TenantSet {
            name,
            acme_challenge,
            acme_key_type,
        } => tenant::set(
            store,
            name,
            acme_challenge.as_deref(),
            acme_key_type.as_deref(),
        )
        .map(|t| tenant::to_json(&t)),
        Command::TenantRemove { name } => tenant::remove(store, name).map(|()| ok()),
        Command::SystemSet {
            dns,
            admin_email,
            default_cert,
        } => {
            let default_cert = match default_cert.as_deref() {
                None => None,
                Some("none") => Some(None),
                Some(prefix) => Some(Some(resolve_id(store, Tree::Certs, prefix)?)),
            };
            let change = SystemChange {
                dns: dns.clone(),
                admin_email: admin_email.clone(),
                default_cert,
            };
            tenant::set_system(store, &change)?;
            Ok(ok())
        }
        Command::SystemShow => {
            let system = store.system()?;
            Ok(json!({
                "dns": system.dns,
                "admin_email": system.admin_email,
                "default_cert": system.default_cert,
                "roots_version": store.roots_version()?,
                "bundled_roots_version": roots::bundled_version(),
                "roots_update_available": roots::update_available(store)?,
            }))
        }
        Command::Import { cert, key, kind } => {
            let imported = certs::import(store, cert, key.as_deref(), *kind, Source::Upload)?;
            Ok(serde_json::to_value(imported).unwrap_or_default())
        }
        Command::Certs => Ok(Value::Array(
            store.certs()?.iter().map(certs::listing).collect(),
        )),
        Command::CertShow { id } => {
            let id = resolve_id(store, Tree::Certs, id)?;
            Ok(json!({"id": id, "pem": certs::chain_pem(store, &id)?}))
        }
        Command::CertDelete { id } => {
            let id = resolve_id(store, Tree::Certs, id)?;
            certs::delete(store, &id).map(|()| ok())
        }
        Command::Roots => Ok(json!(roots::list(store)?)),
        Command::RootsShow { id } => {
            let id = resolve_id(store, Tree::Roots, id)?;
            let der = store
                .roots()?
                .into_iter()
                .find(|(i, _)| *i == id)
                .map(|(_, der)| der)
                .ok_or_else(|| Error::NotFound(id.clone()))?;
            Ok(json!({"id": id, "pem": crate::pem::encode("CERTIFICATE", &der)}))
        }
        Command::RootsDelete { ids } => {
            let mut batch = Batch::default();
            for prefix in ids {
                batch.delete_root(&resolve_id(store, Tree::Roots, prefix)?);
            }
            store.commit(batch)?;
            Ok(ok())
        }
        Command::RootsReset => {
            let mut batch = Batch::default();
            roots::reset_ops(store, &mut batch)?;
            store.commit(batch)?;
            Ok(ok())
        }
        Command::Resolve { sni } => {
            let snapshot = Snapshot::load(store, None)?;
            let r = snapshot.resolve(sni.as_deref(), clock::now());
            Ok(json!({
                "sni": sni,
                "id": r.served.map(|s| &*s.id),
                "match": r.matched.as_str(),
                "tenant": r.tenant,
            }))
        }
        Command::AdminPassword { password } => {
            crate::auth::set_password(store, password)?;
            Ok(ok())
        }
        Command::AcmeSet(change) => {
            crate::acme::set(store, change)?;
            Ok(ok())
        }
        Command::AcmeShow => crate::acme::show(store),
        Command::AcmeStatus => crate::acme::status_report(store),
        Command::CertReissue { id } => {
            let id = resolve_id(store, Tree::Certs, id)?;
            crate::acme::reissue(store, &id)
        }
        Command::Csr { names, key_type } => crate::localca::csr(store, names, *key_type),
        Command::CaInit => crate::localca::init(store),
        Command::CaShow => crate::localca::show(store),
        Command::CaIssue { tenant } => {
            let imported = crate::localca::issue(store, tenant)?;
            Ok(serde_json::to_value(imported).unwrap_or_default())
        }
        Command::DnsAdd { name, zone, config } => {
            crate::dns::add(store, name, zone, config.clone())?;
            Ok(ok())
        }
        Command::DnsList => Ok(Value::Array(
            crate::dns::list(store)?
                .iter()
                .map(crate::dns::ProviderEntry::listing)
                .collect(),
        )),
        Command::DnsRemove { name } => crate::dns::remove(store, name).map(|()| ok()),
        Command::DnsSet {
            propagation_timeout,
            propagation_interval,
            check_ns,
        } => {
            let s = crate::dns::set_propagation(
                store,
                *propagation_timeout,
                *propagation_interval,
                *check_ns,
            )?;
            Ok(json!({
                "propagation_timeout": s.timeout_secs,
                "propagation_interval": s.interval_secs,
                "check_ns": s.check_ns,
            }))
        }
        Command::StirShakenSelect { tenant } => {
            let (id, matched) = certs::stir_select(store, tenant)?;
            Ok(json!({"id": id, "match": matched.as_str()}))
        }
    }
}
