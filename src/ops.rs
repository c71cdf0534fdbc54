//! One function per CLI/API command, returning the `--json` value.
//!
//! Why: the CLI, the web admin's JSON API and (later) the control socket of the
//! running daemon must give the same answers with the same codes. Each
//! `Command` is plain data (serde), so it can cross a socket unchanged, and
//! `execute` is the only place that maps a command to library calls.
//!
//! What must hold: commands taking several IDs are all-or-nothing; every
//! write goes through one `Batch`; `Command::effect` is the one table of what
//! each command does beyond its reply (writes, changes what TLS serves, wakes
//! the renewal loop), exhaustive so that no command can skip it.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::certs;
use crate::clock;
use crate::error::Error;
use crate::limits::{ID_LEN, MIN_ID_PREFIX_LEN};
use crate::model::Source;
use crate::pki::KindRequest;
use crate::roots;
use crate::snapshot::Snapshot;
use crate::store::{Batch, Store, Tree};
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
        /// `--aia-fetch on|off`: the import's chain doctor (issue 17).
        #[serde(default)]
        aia_fetch: Option<bool>,
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
    /// `cert check ID`: re-validate a stored chain now (issue 17)
    CertCheck { id: String },
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
        config: crate::model::ProviderConfig,
    },
    /// `dns list`
    DnsList,
    /// `csr --name HOST... [--key-type T]`
    Csr {
        names: Vec<String>,
        key_type: crate::model::KeyType,
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

/// What a successful run of a command does besides its reply: the one
/// table the daemon (write lock, snapshot rebuild, renewal wake-up), the CLI
/// and the control socket all read (`Command::effect`).
///
/// What must hold: `changes_serving` and `wakes_renewal` imply `write` (a
/// rebuild or a wake-up follows a committed write, under the write lock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Effect {
    /// Writes the store: the daemon runs it under its write lock, so a
    /// read-modify-write (e.g. `tenant set`) cannot undo a racing write.
    pub write: bool,
    /// Can change what TLS serves: the SNI snapshot is rebuilt afterwards.
    pub changes_serving: bool,
    /// Can change which names need certificates, or how and whether they can
    /// be ordered: the renewal loop runs a check at once.
    pub wakes_renewal: bool,
}

impl Effect {
    /// Reads only.
    pub const READ: Effect = Effect {
        write: false,
        changes_serving: false,
        wakes_renewal: false,
    };
    /// Writes settings that neither TLS nor the renewal loop depend on.
    pub const WRITE: Effect = Effect {
        write: true,
        changes_serving: false,
        wakes_renewal: false,
    };
    /// Writes what TLS serves.
    pub const SERVING: Effect = Effect {
        write: true,
        changes_serving: true,
        wakes_renewal: false,
    };
    /// Writes what the renewal loop orders (or how).
    pub const RENEWAL: Effect = Effect {
        write: true,
        changes_serving: false,
        wakes_renewal: true,
    };
    /// Writes both what TLS serves and what the renewal loop orders.
    pub const SERVING_AND_RENEWAL: Effect = Effect {
        write: true,
        changes_serving: true,
        wakes_renewal: true,
    };
}

impl Command {
    /// What a successful run does (see `Effect`). One exhaustive match with
    /// no wildcard: a new command cannot compile without declaring it.
    pub fn effect(&self) -> Effect {
        match self {
            Command::TenantList
            | Command::SystemShow
            | Command::Certs
            | Command::CertShow { .. }
            | Command::CertCheck { .. }
            | Command::Roots
            | Command::RootsShow { .. }
            | Command::Resolve { .. }
            | Command::StirShakenSelect { .. }
            | Command::AcmeShow
            | Command::AcmeStatus
            | Command::DnsList
            | Command::CaShow => Effect::READ,
            // A tenant's names are served (its own certificates, the SNI
            // owner) and need certificates.
            Command::TenantAdd { .. } | Command::TenantRemove { .. } => Effect::SERVING_AND_RENEWAL,
            // A tenant's challenge or key type: how its names are ordered.
            Command::TenantSet { .. } => Effect::RENEWAL,
            // The system name (`--dns`) is served and needs certificates;
            // the admin e-mail and default certificate change no order.
            Command::SystemSet { dns, .. } => Effect {
                wakes_renewal: dns.is_some(),
                ..Effect::SERVING
            },
            // A root (`--kind root`, or `auto` that may classify as one) can
            // make an ACME directory's CA reachable (HTTPS is checked against
            // the Root CA list).
            Command::Import { kind, .. } => Effect {
                wakes_renewal: matches!(kind, KindRequest::Root | KindRequest::Auto),
                ..Effect::SERVING
            },
            // The deleted certificate may have been the one covering a name.
            Command::CertDelete { .. } => Effect::SERVING_AND_RENEWAL,
            Command::CaIssue { .. } => Effect::SERVING,
            // The Root CA list decides which ACME directories are reachable.
            Command::RootsDelete { .. } | Command::RootsReset => Effect::RENEWAL,
            Command::AcmeSet(_) | Command::CertReissue { .. } => Effect::RENEWAL,
            // A DNS provider (and its propagation settings) decides whether
            // and how DNS-01 orders run.
            Command::DnsAdd { .. } | Command::DnsRemove { .. } | Command::DnsSet { .. } => {
                Effect::RENEWAL
            }
            Command::AdminPassword { .. } | Command::Csr { .. } | Command::CaInit => Effect::WRITE,
        }
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

/// Open the sled store in `dir` for use: a fresh store is seeded with the
/// bundled Root CA list, and stores of older releases are migrated (the
/// local CA key into the keys tree). Every entry point opens through here.
pub fn open_store(dir: &std::path::Path) -> Result<Store, crate::store::StoreError> {
    prepare(Store::open(dir)?)
}

/// `open_store` for another backend (tests, clusters).
pub fn with_backend(kv: Box<dyn crate::store::Kv>) -> Result<Store, crate::store::StoreError> {
    prepare(Store::with_backend(kv)?)
}

fn prepare(store: Store) -> Result<Store, crate::store::StoreError> {
    if store.roots_version()?.is_none() {
        let mut batch = Batch::default();
        roots::reset_ops(&store, &mut batch)?;
        store.commit(batch)?;
    }
    crate::localca::migrate(&store)?;
    Ok(store)
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
            aia_fetch,
        } => {
            if let Some(on) = aia_fetch {
                let mut batch = crate::store::Batch::default();
                let value: &[u8] = if *on { b"on" } else { b"off" };
                batch.put_setting(crate::settings::Setting::AiaFetch.name(), value);
                store.commit(batch)?;
            }
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
                "aia_fetch": store.setting(crate::settings::Setting::AiaFetch.name())?.as_deref() != Some(b"off"),
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
        Command::CertCheck { id } => {
            let id = resolve_id(store, Tree::Certs, id)?;
            certs::check(store, &id)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// One command of every variant (with `SystemSet` and `Import` in each
    /// of the shapes whose effect differs).
    fn every_command() -> Vec<Command> {
        let s = String::new;
        let samples = vec![
            Command::TenantAdd {
                name: s(),
                dns: vec![],
            },
            Command::TenantList,
            Command::TenantRemove { name: s() },
            Command::TenantSet {
                name: s(),
                acme_challenge: None,
                acme_key_type: None,
            },
            Command::SystemSet {
                dns: Some(s()),
                admin_email: None,
                default_cert: None,
                aia_fetch: None,
            },
            Command::SystemSet {
                dns: None,
                admin_email: Some(s()),
                default_cert: Some(s()),
                aia_fetch: Some(false),
            },
            Command::SystemShow,
            Command::Import {
                cert: vec![],
                key: None,
                kind: KindRequest::Root,
            },
            Command::Import {
                cert: vec![],
                key: None,
                kind: KindRequest::Auto,
            },
            Command::Import {
                cert: vec![],
                key: None,
                kind: KindRequest::Server,
            },
            Command::Certs,
            Command::CertShow { id: s() },
            Command::CertDelete { id: s() },
            Command::CertCheck { id: s() },
            Command::Roots,
            Command::RootsShow { id: s() },
            Command::RootsDelete { ids: vec![] },
            Command::RootsReset,
            Command::Resolve { sni: None },
            Command::StirShakenSelect { tenant: s() },
            Command::AdminPassword { password: s() },
            Command::AcmeSet(crate::acme::AcmeChange::default()),
            Command::AcmeShow,
            Command::AcmeStatus,
            Command::CertReissue { id: s() },
            Command::DnsAdd {
                name: s(),
                zone: s(),
                config: crate::model::ProviderConfig::Cloudflare {
                    token: s(),
                    api_base: s(),
                },
            },
            Command::DnsList,
            Command::Csr {
                names: vec![],
                key_type: crate::model::KeyType::P256,
            },
            Command::CaInit,
            Command::CaShow,
            Command::CaIssue { tenant: s() },
            Command::DnsRemove { name: s() },
            Command::DnsSet {
                propagation_timeout: None,
                propagation_interval: None,
                check_ns: None,
            },
        ];
        // Every variant is sampled: this exhaustive match (no wildcard) stops
        // compiling when a command is added, and the count catches a variant
        // left out of the list above.
        let mut seen = std::collections::BTreeSet::new();
        for c in &samples {
            seen.insert(match c {
                Command::TenantAdd { .. } => 0,
                Command::TenantList => 1,
                Command::TenantRemove { .. } => 2,
                Command::TenantSet { .. } => 3,
                Command::SystemSet { .. } => 4,
                Command::SystemShow => 5,
                Command::Import { .. } => 6,
                Command::Certs => 7,
                Command::CertShow { .. } => 8,
                Command::CertDelete { .. } => 9,
                Command::Roots => 10,
                Command::RootsShow { .. } => 11,
                Command::RootsDelete { .. } => 12,
                Command::RootsReset => 13,
                Command::Resolve { .. } => 14,
                Command::StirShakenSelect { .. } => 15,
                Command::AdminPassword { .. } => 16,
                Command::AcmeSet(_) => 17,
                Command::AcmeShow => 18,
                Command::AcmeStatus => 19,
                Command::CertReissue { .. } => 20,
                Command::DnsAdd { .. } => 21,
                Command::DnsList => 22,
                Command::Csr { .. } => 23,
                Command::CaInit => 24,
                Command::CaShow => 25,
                Command::CaIssue { .. } => 26,
                Command::DnsRemove { .. } => 27,
                Command::DnsSet { .. } => 28,
                Command::CertCheck { .. } => 29,
            });
        }
        assert_eq!(seen.len(), 30, "a command variant has no sample");
        samples
    }

    /// The command's wire name (`"tenant-add"`), as the control socket sees it.
    fn name(c: &Command) -> String {
        serde_json::to_value(c).unwrap()["command"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn every_rebuild_or_wake_is_a_write_under_the_lock() {
        for c in every_command() {
            let e = c.effect();
            assert!(
                e.write || (!e.changes_serving && !e.wakes_renewal),
                "{} rebuilds or wakes without the write lock: {e:?}",
                name(&c)
            );
        }
    }

    /// What every reading command shows of a store (`roots` as the stored
    /// IDs: the listing parses every root, slow in a debug build).
    fn observe(store: &Store) -> Vec<String> {
        let mut seen: Vec<String> = every_command()
            .iter()
            .filter(|c| !c.effect().write && !matches!(c, Command::Roots))
            .map(|c| format!("{:?}", execute(store, c)))
            .collect();
        let roots = store
            .roots()
            .map(|r| r.into_iter().map(|(id, _)| id).collect::<Vec<_>>());
        seen.push(format!("{roots:?}"));
        seen
    }

    #[test]
    fn every_command_that_changes_what_reads_show_is_a_write() {
        // Runs every command in turn on one store with two tenants and
        // compares what the reading commands show before and after each: a
        // command that changed anything must declare `write` (the daemon
        // serialises it).
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path()).unwrap();
        tenant::add(&store, "t", &["t.example".into()]).unwrap();
        tenant::add(&store, "u", &["u.example".into()]).unwrap();
        let mut writes_seen = Vec::new();
        for c in every_command() {
            let before = observe(&store);
            let c = match c {
                // Make the writes succeed where a name is needed.
                Command::TenantSet { .. } => Command::TenantSet {
                    name: "t".into(),
                    acme_challenge: Some("dns-01".into()),
                    acme_key_type: None,
                },
                Command::TenantRemove { .. } => Command::TenantRemove { name: "u".into() },
                other => other,
            };
            let _ = execute(&store, &c);
            if observe(&store) != before {
                assert!(c.effect().write, "{} wrote without being a write", name(&c));
                writes_seen.push(name(&c));
            }
        }
        // Not vacuous: the read-modify-write of issue 10 is seen writing.
        assert!(
            writes_seen.iter().any(|n| n == "tenant-set"),
            "{writes_seen:?}"
        );
    }

    #[test]
    fn the_listed_changes_wake_the_renewal_loop() {
        let wakes: Vec<String> = every_command()
            .iter()
            .filter(|c| c.effect().wakes_renewal)
            .map(name)
            .collect();
        // Every change to which names need certificates, or to whether and
        // how they can be ordered (issue 10): `system-set` only with `--dns`,
        // `import` only for a root (`--kind root`, or `auto`).
        let expected = [
            "tenant-add",
            "tenant-remove",
            "tenant-set",
            "system-set",
            "import",
            "import",
            "cert-delete",
            "roots-delete",
            "roots-reset",
            "acme-set",
            "cert-reissue",
            "dns-add",
            "dns-remove",
            "dns-set",
        ];
        assert_eq!(wakes, expected);
        assert!(
            !Command::SystemSet {
                dns: None,
                admin_email: Some("a@b.c".into()),
                default_cert: None,
                aia_fetch: None,
            }
            .effect()
            .wakes_renewal
        );
    }

    #[test]
    fn what_tls_serves_is_rebuilt_after_the_serving_changes() {
        let serving: Vec<String> = every_command()
            .iter()
            .filter(|c| c.effect().changes_serving)
            .map(name)
            .collect();
        let expected = [
            "tenant-add",
            "tenant-remove",
            "system-set",
            "system-set",
            "import",
            "import",
            "import",
            "cert-delete",
            "ca-issue",
        ];
        assert_eq!(serving, expected);
    }
}
