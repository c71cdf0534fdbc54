//! One function per CLI/API command, returning its typed `Reply`.
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
use serde_json::Value;

use crate::certs;
use crate::clock;
use crate::error::Error;
use crate::limits::{ID_LEN, MIN_ID_PREFIX_LEN};
use crate::model::{ChallengeChoice, KeyType, Override, Source, UnknownValue};
use crate::pki::KindRequest;
use crate::roots::{self, TrustList};
use crate::snapshot::Snapshot;
use crate::store::{Batch, Store, Tree};
use crate::tenant::{self, SystemChange};

/// A command of the CLI contract, with file contents already read.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum Command {
    /// `tenant add NAME --dns HOST... --ip ADDR...`
    TenantAdd {
        name: String,
        dns: Vec<String>,
        #[serde(default)]
        ip: Vec<String>,
    },
    /// `tenant list`
    TenantList,
    /// `tenant remove NAME`
    TenantRemove { name: String },
    /// `tenant remove NAME --dry-run`: its names and certificates, and what
    /// each of its names gets once it is gone
    TenantRemovePreview { name: String },
    /// `tenant set|edit NAME [--dns HOST...] [--ip ADDR...|none]
    /// [--acme-challenge C] [--acme-key-type K] [--acme-profile P]`
    TenantSet {
        name: String,
        /// New DNS names (all of them); `None` keeps them.
        #[serde(default)]
        dns: Option<Vec<String>>,
        /// New IP addresses (all of them, possibly none); `None` keeps them.
        #[serde(default)]
        ip: Option<Vec<String>>,
        #[serde(default)]
        acme_challenge: Option<Override<ChallengeChoice>>,
        #[serde(default)]
        acme_key_type: Option<Override<KeyType>>,
        #[serde(default)]
        acme_profile: Option<String>,
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
        /// `--kind ca --replace`: replace an existing local CA.
        #[serde(default)]
        replace: bool,
    },
    /// `certs`
    Certs,
    /// `served`: who gets which certificate
    Served,
    /// `handshakes [--listener L]`: the running daemon's recent handshakes
    /// (its own state: answered by `daemon::Shared::execute`).
    Handshakes {
        #[serde(default)]
        listener: Option<String>,
    },
    /// `cert show ID`
    CertShow { id: String },
    /// `cert delete ID`
    CertDelete { id: String },
    /// `cert delete ID --dry-run`: what each name it serves gets instead
    CertDeletePreview { id: String },
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
    /// `phone-roots import --cert FILE`
    PhoneRootsImport { cert: Vec<u8> },
    /// `phone-roots list`
    PhoneRoots,
    /// `phone-roots show ID`
    PhoneRootsShow { id: String },
    /// `phone-roots delete ID`
    PhoneRootsDelete { id: String },
    /// `resolve [SNI] [--local-address ADDR]`
    Resolve {
        sni: Option<String>,
        /// The address the client connected to (matters without SNI).
        #[serde(default)]
        local_address: Option<std::net::IpAddr>,
    },
    /// `stir-shaken select --tenant NAME`
    StirShakenSelect { tenant: String },
    /// `stir-shaken sign --tenant T --orig TN --dest TN,... --attest A|B|C`
    StirShakenSign(crate::stir::SignRequest),
    /// `stir-shaken verify --identity HEADER --orig TN --dest TN`
    StirShakenVerify(crate::stir::VerifyRequest),
    /// `stir-shaken set [--x5u-base URL|none] [--iat-skew S]` (none: show)
    StirShakenSet(crate::stir::StirChange),
    /// `sti-roots import --cert FILE`
    StiRootsImport { cert: Vec<u8> },
    /// `sti-roots list`
    StiRoots,
    /// `sti-roots show ID`
    StiRootsShow { id: String },
    /// `sti-roots delete ID`
    StiRootsDelete { id: String },
    /// `client-cas import --cert FILE`
    ClientCasImport { cert: Vec<u8> },
    /// `client-cas list`
    ClientCas,
    /// `client-cas show ID`
    ClientCasShow { id: String },
    /// `client-cas delete ID`
    ClientCasDelete { id: String },
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
    /// `acme retry KEY` (a name set as `acme status` lists it)
    AcmeRetry { key: String },
    /// `dns add NAME --provider P --zone Z ...`
    DnsAdd {
        name: String,
        zone: String,
        config: crate::model::ProviderConfig,
    },
    /// `dns list`
    DnsList,
    /// `csr --name HOST... [--key-type T] [--org O --org-unit OU --locality
    /// L --state ST --country C]`
    Csr {
        names: Vec<String>,
        key_type: crate::model::KeyType,
        #[serde(default)]
        subject: crate::localca::CsrSubject,
    },
    /// `csr-keys list`
    CsrKeys,
    /// `dns propagation` (the settings `dns set` changes)
    DnsPropagation,
    /// `csr-keys delete KEY_ID`
    CsrKeyDelete { key_id: String },
    /// `ca init`
    CaInit,
    /// `ca show`
    CaShow,
    /// `cluster status`: this node, the store's health and revision, the
    /// nodes seen (heartbeats) and who holds which ACME lease.
    ClusterStatus,
    /// `backup --out FILE`: every tree but the leases into one file, mode
    /// 0600 (`crate::backup`); `out` is absolute (the daemon may write it).
    Backup {
        out: String,
        /// `--sealed`: values of the sealed trees sealed with the store key.
        #[serde(default)]
        sealed: bool,
    },
    /// `restore --in FILE [--replace]`: the store made equal to a backup
    /// (refused over certificates, keys or tenants without `replace`).
    Restore { input: String, replace: bool },
    /// `store copy --to URL|DIR [--replace]`: this store's contents into
    /// another (an `etcd+http(s)://` URL with `tls`, or a sled data dir).
    StoreCopy {
        to: String,
        replace: bool,
        tls: crate::etcd::StoreTls,
    },
    /// `store rekey`: every value of the sealed trees sealed again with
    /// the first key of the key file (`crate::seal::rekey`; plaintext
    /// values get sealed).
    StoreRekey,
    /// `ca issue --tenant NAME [--client]`
    CaIssue {
        /// The tenant whose DNS names the certificate carries.
        tenant: String,
        /// Add the clientAuth EKU (mutual TLS to trunks).
        client: bool,
    },
    /// `dns remove NAME`
    DnsRemove { name: String },
    /// `dns set [--propagation-timeout S] [--propagation-interval S]`
    DnsSet {
        propagation_timeout: Option<u64>,
        propagation_interval: Option<u64>,
        #[serde(default)]
        check_ns: Option<bool>,
    },
    /// `alert set --smtp-server … --webhook …`
    AlertSet(crate::alert::AlertChange),
    /// `alert show`
    AlertShow,
    /// `alert test` (sent by the daemon or the CLI, see `crate::notify::test`)
    AlertTest,
    /// `alerts`
    Alerts,
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
    /// Reads every tree as one view (a backup, a store copy): runs under the
    /// write lock although it writes nothing, so no write lands between two
    /// trees (a certificate record without its chain).
    pub whole_store: bool,
}

impl Effect {
    /// Reads only.
    pub const READ: Effect = Effect {
        write: false,
        changes_serving: false,
        wakes_renewal: false,
        whole_store: false,
    };
    /// Writes settings that neither TLS nor the renewal loop depend on.
    pub const WRITE: Effect = Effect {
        write: true,
        changes_serving: false,
        wakes_renewal: false,
        whole_store: false,
    };
    /// Writes what TLS serves.
    pub const SERVING: Effect = Effect {
        write: true,
        changes_serving: true,
        wakes_renewal: false,
        whole_store: false,
    };
    /// Writes what the renewal loop orders (or how).
    pub const RENEWAL: Effect = Effect {
        write: true,
        changes_serving: false,
        wakes_renewal: true,
        whole_store: false,
    };
    /// Writes both what TLS serves and what the renewal loop orders.
    pub const SERVING_AND_RENEWAL: Effect = Effect {
        write: true,
        changes_serving: true,
        wakes_renewal: true,
        whole_store: false,
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
            | Command::Served
            | Command::CertDeletePreview { .. }
            | Command::TenantRemovePreview { .. }
            | Command::Handshakes { .. }
            | Command::CertShow { .. }
            | Command::CertCheck { .. }
            | Command::Roots
            | Command::RootsShow { .. }
            | Command::PhoneRoots
            | Command::PhoneRootsShow { .. }
            | Command::ClientCas
            | Command::ClientCasShow { .. }
            | Command::Resolve { .. }
            | Command::StirShakenSelect { .. }
            | Command::AcmeShow
            | Command::AcmeStatus
            | Command::DnsList
            | Command::CsrKeys
            | Command::DnsPropagation
            | Command::CaShow
            | Command::ClusterStatus => Effect::READ,
            // The whole store read as one view; the source is not written.
            Command::Backup { .. } | Command::StoreCopy { .. } => Effect {
                whole_store: true,
                ..Effect::READ
            },
            // Everything may change: certificates served, names to order,
            // ACME and DNS settings.
            Command::Restore { .. } => Effect::SERVING_AND_RENEWAL,
            // A CSR key is used by no certificate (nothing served changes).
            Command::CsrKeyDelete { .. } => Effect::WRITE,
            // The same values written again, sealed: nothing read changes.
            Command::StoreRekey => Effect::WRITE,
            // Signing and verifying write nothing (verification fetches the
            // x5u and keeps it only in memory); the STI trust list is read.
            Command::StirShakenSign(_)
            | Command::StirShakenVerify(_)
            | Command::StiRoots
            | Command::StiRootsShow { .. } => Effect::READ,
            // STIR/SHAKEN settings and the STI trust list: read by signing
            // and verification only, nothing served or ordered changes.
            Command::StirShakenSet(_)
            | Command::StiRootsImport { .. }
            | Command::StiRootsDelete { .. } => Effect::WRITE,
            // Alerts: settings only the alert loop reads (it re-reads them
            // each tick); `alert test` sends but stores nothing.
            Command::AlertShow | Command::AlertTest | Command::Alerts => Effect::READ,
            Command::AlertSet(_) => Effect::WRITE,
            // A tenant's names are served (its own certificates, the SNI
            // owner) and need certificates.
            Command::TenantAdd { .. } | Command::TenantRemove { .. } => Effect::SERVING_AND_RENEWAL,
            // A tenant's challenge or key type: how its names are ordered;
            // its names (`tenant edit --dns/--ip`) are served as well.
            Command::TenantSet { dns, ip, .. } => match dns.is_some() || ip.is_some() {
                true => Effect::SERVING_AND_RENEWAL,
                false => Effect::RENEWAL,
            },
            // The system name (`--dns`) is served and needs certificates;
            // the admin e-mail is the ACME account's contact unless `acme
            // set --email` (an account update, RFC 8555 §7.3.2); the default
            // certificate changes no order.
            Command::SystemSet {
                dns, admin_email, ..
            } => Effect {
                wakes_renewal: dns.is_some() || admin_email.is_some(),
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
            // A name set marked for an order now: the loop is woken.
            Command::AcmeRetry { .. } => Effect::RENEWAL,
            // A DNS provider (and its propagation settings) decides whether
            // and how DNS-01 orders run.
            Command::DnsAdd { .. } | Command::DnsRemove { .. } | Command::DnsSet { .. } => {
                Effect::RENEWAL
            }
            Command::AdminPassword { .. } | Command::Csr { .. } | Command::CaInit => Effect::WRITE,
            // Phone roots judge future imports; nothing served changes.
            Command::PhoneRootsImport { .. } | Command::PhoneRootsDelete { .. } => Effect::WRITE,
            // Client CAs: each mutual-TLS forward rereads its trust set
            // itself (`CLIENT_TRUST_REFRESH_SECS`); no snapshot holds them.
            Command::ClientCasImport { .. } | Command::ClientCasDelete { .. } => Effect::WRITE,
        }
    }
}

impl Command {
    /// Can this change cure a failed ACME order (so the back-offs end at
    /// once, `acme::clear_backoffs`)? The Root CA list (the CA's HTTPS
    /// becomes trusted), DNS providers (DNS-01 becomes possible), the ACME
    /// settings and a tenant's challenge or key type. Implies
    /// `effect().wakes_renewal`.
    pub fn cures_failures(&self) -> bool {
        match self {
            Command::Import { kind, .. } => matches!(kind, KindRequest::Root | KindRequest::Auto),
            Command::RootsDelete { .. }
            | Command::RootsReset
            | Command::AcmeSet(_)
            | Command::TenantSet { .. }
            | Command::DnsAdd { .. }
            | Command::DnsRemove { .. }
            | Command::DnsSet { .. }
            | Command::Restore { .. } => true,
            _ => false,
        }
    }
}

/// An ID prefix as the CLI accepts it: 8 to 64 hex digits (lowercased).
pub fn valid_id(raw: &str) -> Option<String> {
    let ok = (MIN_ID_PREFIX_LEN..=ID_LEN).contains(&raw.len())
        && raw.bytes().all(|b| b.is_ascii_hexdigit());
    ok.then(|| raw.to_ascii_lowercase())
}

/// A refused administrator-typed word, with the code every input reports
/// for it (CLI, API and page alike): an unknown key type is
/// `unsupported-key-type`, any other unknown word (challenge, TSIG
/// algorithm) `bad-setting`; the message names the accepted words.
impl From<UnknownValue> for Error {
    fn from(e: UnknownValue) -> Error {
        if e.what == KeyType::WHAT {
            Error::UnsupportedKeyType(e.given)
        } else {
            Error::BadSetting(e.to_string())
        }
    }
}

/// A list flag that replaces a stored list (`tenant edit --dns/--ip`): not
/// given keeps it (`None`), the single word `none` empties it.
pub fn replacement_list(given: Vec<String>) -> Option<Vec<String>> {
    match given.as_slice() {
        [] => None,
        [word] if word == "none" => Some(Vec::new()),
        _ => Some(given),
    }
}

/// Parse one administrator-typed word with its type's one `FromStr`.
pub fn parse_word<T: core::str::FromStr<Err = UnknownValue>>(raw: &str) -> Result<T, Error> {
    raw.parse().map_err(Error::from)
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

/// Open the sled store in `dir` for use: a fresh store is seeded with the
/// bundled Root CA list, and stores of older releases are migrated (the
/// local CA key into the keys tree). Unsealed (tests, tools): every entry
/// point opens through `open_location`, which seeds and migrates the same
/// way behind the sealing wrapper.
pub fn open_store(dir: &std::path::Path) -> Result<Store, crate::store::StoreError> {
    prepare(Store::open(dir)?)
}

/// The store an entry point was pointed at: the etcd prefix of `--store`
/// when given (a cluster's shared store; `tls` its TLS files), else the
/// sled store in `dir`; its secret trees sealed with the keys of
/// `key_file` (`--store-key-file`; without one, sealed values are refused
/// by name: `crate::seal`); opened as `open_store` does.
pub fn open_location(
    dir: &std::path::Path,
    etcd: Option<&crate::etcd::EtcdUrl>,
    tls: &crate::etcd::StoreTls,
    key_file: Option<&std::path::Path>,
) -> Result<Store, crate::store::StoreError> {
    let keys = std::sync::Arc::new(crate::seal::KeyRing::load(key_file)?);
    let backend = open_backend(dir, etcd, tls)?;
    with_backend(Box::new(crate::seal::SealedKv::new(backend, keys)))
}

/// The raw backend `open_location` seals: etcd or the sled store in `dir`.
fn open_backend(
    dir: &std::path::Path,
    etcd: Option<&crate::etcd::EtcdUrl>,
    tls: &crate::etcd::StoreTls,
) -> Result<Box<dyn crate::store::Kv>, crate::store::StoreError> {
    match etcd {
        Some(url) => Ok(Box::new(crate::etcd::EtcdKv::new(url.clone(), tls)?)),
        None if !tls.is_empty() => Err(crate::store::StoreError::BadTls(
            "--store-ca/--store-cert/--store-key need --store etcd+https://...".into(),
        )),
        None => Ok(Box::new(crate::store::SledKv::open(dir)?)),
    }
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

/// The file in the data directory holding this node's ID.
pub const NODE_ID_FILE: &str = "node-id";

/// This node's name as a lease holder and in `cluster status`: a random ID
/// kept in the data directory (`NODE_ID_FILE`, not in the store, which a
/// cluster shares), so a daemon restarted after a crash holds its own stale
/// lease again at once. Made on first use.
pub fn node_id(data_dir: &std::path::Path) -> String {
    if let Some(id) = existing_node_id(data_dir) {
        return id;
    }
    let path = data_dir.join(NODE_ID_FILE);
    let id = crate::auth::random_token(12).unwrap_or_else(|_| std::process::id().to_string());
    if let Err(e) = std::fs::write(&path, &id) {
        log::warn!("cannot keep the node ID in {}: {e}", path.display());
    }
    id
}

/// The node ID kept in `data_dir`, if one was made.
pub fn existing_node_id(data_dir: &std::path::Path) -> Option<String> {
    let id = std::fs::read_to_string(data_dir.join(NODE_ID_FILE)).ok()?;
    let id = id.trim();
    (!id.is_empty() && id.len() <= 64).then(|| id.to_owned())
}

/// `cluster status --json`: one node's view of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterView {
    /// This node's ID (its data dir's `node-id`, the holder name of its
    /// leases); `None` when it has none yet (never served).
    pub node: Option<String>,
    /// Answered by this node's running daemon (then `applied_*` are set).
    pub daemon: bool,
    /// Where the store is (`sled DIR` or the etcd URL).
    pub store: String,
    /// Whether other nodes share the store (etcd).
    pub shared: bool,
    /// Whether the store answered just now.
    pub healthy: bool,
    /// Why not: `[code] message`.
    pub error: Option<String>,
    /// The store's revision now (etcd).
    pub revision: Option<u64>,
    /// The store revision the daemon's snapshot was last rebuilt at (etcd).
    pub applied_revision: Option<u64>,
    /// When the daemon last rebuilt its snapshot from the store (RFC 3339).
    pub applied_at: Option<String>,
    /// Whether the daemon's watch on the shared store is open now.
    pub following: Option<bool>,
    /// Nodes whose heartbeat is live (shared stores), by ID.
    pub nodes: Vec<NodeSeen>,
    /// Live ACME ordering leases, by name set.
    pub leases: Vec<LeaseView>,
}

/// A node seen through its heartbeat lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSeen {
    /// The node's ID.
    pub id: String,
    /// Until when its last heartbeat holds (RFC 3339).
    pub expires: String,
    /// It is the node answering.
    pub this: bool,
}

/// A live ACME lease: which node orders for which name set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseView {
    /// The name set (`system`, `tenant:NAME`).
    pub names: String,
    /// The ordering node's ID.
    pub holder: String,
    /// Until when (RFC 3339), unless kept alive.
    pub expires: String,
}

/// The store's part of `cluster status` (the daemon adds its own state,
/// the CLI the data dir's node ID). Never fails: an unreachable store is
/// reported as unhealthy with its error.
pub fn cluster_status(store: &Store) -> ClusterView {
    let kv = store.kv();
    let (healthy, error, revision) = match kv.revision() {
        Ok(r) => (true, None, r),
        Err(e) => (false, Some(format!("[{}] {e}", e.code())), None),
    };
    let mut nodes = Vec::new();
    let mut leases = Vec::new();
    let now_ms = clock::now().saturating_mul(1000);
    if healthy {
        for (name, value) in kv.scan_prefix(Tree::Leases, b"").unwrap_or_default() {
            let Some(rec) = crate::store::LeaseRecord::decode(&value) else {
                continue;
            };
            if rec.expires_ms <= now_ms {
                continue;
            }
            let name = String::from_utf8_lossy(&name).into_owned();
            let holder = String::from_utf8_lossy(&rec.holder).into_owned();
            let expires = clock::rfc3339(rec.expires_ms / 1000);
            if let Some(id) = name.strip_prefix(crate::settings::NODE_LEASE_PREFIX) {
                nodes.push(NodeSeen {
                    id: id.to_owned(),
                    expires,
                    this: false,
                });
            } else if let Some(names) = name.strip_prefix(crate::settings::ACME_LEASE_PREFIX) {
                leases.push(LeaseView {
                    names: names.to_owned(),
                    holder,
                    expires,
                });
            }
        }
    }
    ClusterView {
        node: None,
        daemon: false,
        store: kv.location(),
        shared: kv.shared(),
        healthy,
        error,
        revision,
        applied_revision: None,
        applied_at: None,
        following: None,
        nodes,
        leases,
    }
}

impl ClusterView {
    /// Name `node` as the answering node (and mark it among those seen).
    pub fn answered_by(mut self, node: Option<String>) -> ClusterView {
        for n in &mut self.nodes {
            n.this = node.as_deref() == Some(n.id.as_str());
        }
        self.node = node;
        self
    }
}

/// What `backup`, `restore` and `store copy` report.
fn transfer(
    location: &str,
    contents: &crate::backup::Contents,
    bytes: usize,
    replaced: bool,
) -> crate::backup::Transfer {
    crate::backup::Transfer {
        location: location.to_owned(),
        created: contents.created.clone(),
        entries: crate::backup::counts(contents),
        bytes: bytes as u64,
        replaced,
        sealed: contents.sealed.clone(),
    }
}

/// A backup is judged as the admin will read it: every listing command
/// must read it as a store (certificate records, chains, keys, tenants,
/// settings, roots) before anything is written; a refusal names the
/// command and its error.
fn judge_backup(contents: &crate::backup::Contents) -> Result<(), Error> {
    let bad = |what: &str, e: String| crate::error::BackupError::BadBackup(format!("{what}: {e}"));
    // Opened as every entry point opens a store (`prepare`: the local CA
    // record is read), then read as the admin will.
    let mem = crate::backup::mem_store(contents)
        .and_then(|kv| with_backend(Box::new(kv)))
        .map_err(|e| bad("store", format!("[{}] {e}", e.code())))?;
    mem.next_seq()
        .map_err(|e| bad("import sequence", format!("[{}] {e}", e.code())))?;
    for (what, command) in [
        ("certs", Command::Certs),
        ("served", Command::Served),
        ("tenant list", Command::TenantList),
        ("system show", Command::SystemShow),
        ("roots", Command::Roots),
        ("acme show", Command::AcmeShow),
        ("acme status", Command::AcmeStatus),
        ("dns list", Command::DnsList),
        ("alert show", Command::AlertShow),
        ("ca show", Command::CaShow),
    ] {
        match execute(&mem, &command) {
            Ok(_) | Err(Error::NoCa) => {}
            Err(e) => return Err(bad(what, format!("[{}] {e}", e.code_str())).into()),
        }
    }
    Ok(())
}

/// The store `store copy --to` names: an `etcd+http(s)://` URL (with its
/// TLS files) or the path of a sled data directory, sealed as `source` is
/// (a sealed store's copy is sealed with the same keys), opened as any
/// entry point opens a store.
fn open_copy_target(source: &Store, to: &str, tls: &crate::etcd::StoreTls) -> Result<Store, Error> {
    let backend = if to.starts_with("etcd+") {
        let url: crate::etcd::EtcdUrl = to
            .parse()
            .map_err(|e: String| Error::BadSetting(format!("--to {to}: {e}")))?;
        open_backend(std::path::Path::new(""), Some(&url), tls)?
    } else if !tls.is_empty() {
        return Err(crate::store::StoreError::BadTls(
            "--to-ca/--to-cert/--to-key need --to etcd+https://...".into(),
        )
        .into());
    } else {
        open_backend(std::path::Path::new(to), None, tls)?
    };
    Ok(with_backend(source.kv().seal_alike(backend))?)
}

/// `{"ok":true}`: the reply of a command with nothing to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    /// Always true.
    pub ok: bool,
}

/// `cert show` / `roots show`: one certificate's PEM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PemView {
    /// The full ID.
    pub id: String,
    /// The PEM (a chain for `cert show`, never a key).
    pub pem: String,
}

/// `cert delete ID --dry-run --json`: the certificate, and each name it
/// serves now with what that name gets once it is deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletePreview {
    /// The certificate to delete.
    pub cert: certs::CertView,
    /// The names whose answer changes.
    pub changes: Vec<crate::served::ServedChange>,
}

/// `tenant remove NAME --dry-run --json`: the tenant, its certificates,
/// and each name whose answer changes with what it gets instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantRemovePreview {
    /// The tenant to remove.
    pub tenant: tenant::TenantView,
    /// The certificates naming it as their tenant (domain ones block the
    /// removal: `tenant-in-use`).
    pub certs: Vec<certs::CertView>,
    /// The names whose answer changes.
    pub changes: Vec<crate::served::ServedChange>,
}

/// `resolve --json`: what a TLS client with this SNI gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolveView {
    /// The SNI asked about (`None`: no SNI).
    pub sni: Option<String>,
    /// The local address asked about (absent when not given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_address: Option<String>,
    /// The certificate served; `None` when there is none.
    pub id: Option<String>,
    /// How it was chosen (`snapshot::Match`).
    #[serde(rename = "match")]
    pub matched: String,
    /// The tenant owning the SNI name.
    pub tenant: Option<String>,
}

/// The typed result of a command: what `--json`, the API and the control
/// socket print (`to_json`) and what the CLI's text and the pages render
/// from. Each variant's JSON is the shape README documents for its
/// commands (serde `untagged`: the variant adds no key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Reply {
    /// `{"ok":true}`.
    Done(Done),
    /// `tenant list`.
    Tenants(Vec<tenant::TenantView>),
    /// `tenant set`.
    Tenant(tenant::TenantView),
    /// `system show`.
    System(tenant::SystemView),
    /// `import`, `ca issue`.
    Imported(certs::Imported),
    /// `certs`.
    Certs(Vec<certs::CertView>),
    /// `served`.
    Served(crate::served::ServedView),
    /// `cert delete --dry-run`.
    DeletePreview(DeletePreview),
    /// `tenant remove --dry-run`.
    TenantRemovePreview(TenantRemovePreview),
    /// `handshakes`.
    Handshakes(Vec<crate::handshakes::ListenerView>),
    /// `cert show`, `roots show`.
    Pem(PemView),
    /// `roots`.
    Roots(Vec<roots::RootInfo>),
    /// `resolve`.
    Resolved(ResolveView),
    /// `stir-shaken select`.
    Stir(certs::StirView),
    /// `stir-shaken sign`.
    Signed(crate::stir::Signed),
    /// `stir-shaken verify`.
    Verdict(crate::stir::Verdict),
    /// `stir-shaken set`.
    StirSettings(crate::stir::StirSettingsView),
    /// `acme show`.
    Acme(crate::acme::AcmeView),
    /// `acme status`.
    AcmeStatus(Vec<crate::acme::StatusRow>),
    /// `cert reissue`.
    Reissued(crate::acme::Reissued),
    /// `dns list`.
    DnsList(Vec<crate::dns::ProviderListing>),
    /// `dns set`.
    Propagation(crate::dns::PropagationView),
    /// `csr`.
    Csr(crate::localca::CsrView),
    /// `csr-keys list`.
    PendingCsrs(Vec<crate::localca::PendingCsr>),
    /// `csr-keys delete`.
    PendingCsrDeleted(crate::localca::PendingCsr),
    /// `ca init`, `ca show`.
    Ca(crate::localca::CaView),
    /// `cert check`.
    Check(certs::CheckView),
    /// `alert set`, `alert show`.
    AlertSettings(crate::alert::AlertView),
    /// `alerts`.
    Alerts(Vec<crate::alert::OpenAlert>),
    /// `alert test` (sent by the daemon or the CLI, not by `execute`).
    AlertTest(crate::alert::TestReport),
    /// `backup`, `restore`, `store copy`.
    Transfer(crate::backup::Transfer),
    /// `cluster status`.
    Cluster(ClusterView),
    /// `store rekey`.
    Rekeyed(crate::seal::Rekeyed),
}

impl Reply {
    /// `{"ok":true}`.
    pub const DONE: Reply = Reply::Done(Done { ok: true });

    /// The JSON that `--json`, the API and the control socket carry (keys
    /// in the order `serde_json::Value` prints them).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The typed reply of `command` from its JSON (the control client's
    /// end: the CLI knows which command it sent, so the JSON carries no
    /// tag). The only place a reply's JSON is read back.
    pub fn decode(command: &Command, v: Value) -> Result<Reply, serde_json::Error> {
        use serde_json::from_value as from;
        Ok(match command {
            Command::TenantList => Reply::Tenants(from(v)?),
            Command::TenantSet { .. } => Reply::Tenant(from(v)?),
            Command::SystemShow => Reply::System(from(v)?),
            Command::Import { .. } | Command::CaIssue { .. } => Reply::Imported(from(v)?),
            Command::Certs => Reply::Certs(from(v)?),
            Command::Served => Reply::Served(from(v)?),
            Command::CertDeletePreview { .. } => Reply::DeletePreview(from(v)?),
            Command::TenantRemovePreview { .. } => Reply::TenantRemovePreview(from(v)?),
            Command::Handshakes { .. } => Reply::Handshakes(from(v)?),
            Command::CertShow { .. } | Command::RootsShow { .. } => Reply::Pem(from(v)?),
            Command::Roots
            | Command::PhoneRoots
            | Command::PhoneRootsImport { .. }
            | Command::StiRoots
            | Command::StiRootsImport { .. }
            | Command::ClientCas
            | Command::ClientCasImport { .. } => Reply::Roots(from(v)?),
            Command::StiRootsShow { .. }
            | Command::PhoneRootsShow { .. }
            | Command::ClientCasShow { .. } => Reply::Pem(from(v)?),
            Command::StirShakenSign(_) => Reply::Signed(from(v)?),
            Command::StirShakenVerify(_) => Reply::Verdict(from(v)?),
            Command::StirShakenSet(_) => Reply::StirSettings(from(v)?),
            Command::Resolve { .. } => Reply::Resolved(from(v)?),
            Command::StirShakenSelect { .. } => Reply::Stir(from(v)?),
            Command::AcmeShow => Reply::Acme(from(v)?),
            Command::AcmeStatus => Reply::AcmeStatus(from(v)?),
            Command::CertReissue { .. } | Command::AcmeRetry { .. } => Reply::Reissued(from(v)?),
            Command::DnsList => Reply::DnsList(from(v)?),
            Command::DnsSet { .. } => Reply::Propagation(from(v)?),
            Command::Csr { .. } => Reply::Csr(from(v)?),
            Command::CsrKeys => Reply::PendingCsrs(from(v)?),
            Command::DnsPropagation => Reply::Propagation(from(v)?),
            Command::CsrKeyDelete { .. } => Reply::PendingCsrDeleted(from(v)?),
            Command::CaInit | Command::CaShow => Reply::Ca(from(v)?),
            Command::AlertSet(_) | Command::AlertShow => Reply::AlertSettings(from(v)?),
            Command::Alerts => Reply::Alerts(from(v)?),
            Command::CertCheck { .. } => Reply::Check(from(v)?),
            Command::Backup { .. } | Command::Restore { .. } | Command::StoreCopy { .. } => {
                Reply::Transfer(from(v)?)
            }
            Command::ClusterStatus => Reply::Cluster(from(v)?),
            Command::StoreRekey => Reply::Rekeyed(from(v)?),
            Command::AlertTest => Reply::AlertTest(from(v)?),
            Command::TenantAdd { .. }
            | Command::TenantRemove { .. }
            | Command::SystemSet { .. }
            | Command::CertDelete { .. }
            | Command::RootsDelete { .. }
            | Command::RootsReset
            | Command::PhoneRootsDelete { .. }
            | Command::StiRootsDelete { .. }
            | Command::ClientCasDelete { .. }
            | Command::AdminPassword { .. }
            | Command::AcmeSet(_)
            | Command::DnsAdd { .. }
            | Command::DnsRemove { .. } => Reply::Done(from(v)?),
        })
    }

    /// The error for a reply of another variant than its command always
    /// gives (a bug, reported as `internal` rather than a panic).
    pub fn unexpected(&self) -> Error {
        Error::Remote(crate::error::RemoteError {
            code: "internal".into(),
            message: format!("unexpected reply {self:?}"),
        })
    }
}

/// Run one command against the store.
/// `LIST import`: the list after the import.
fn trust_import(store: &Store, list: TrustList, cert: &[u8]) -> Result<Reply, Error> {
    Ok(Reply::Roots(certs::import_trust(store, list, cert)?))
}

/// `LIST show ID`.
fn trust_show(store: &Store, list: TrustList, id: &str) -> Result<Reply, Error> {
    let (id, pem) = list.show(store, id)?;
    Ok(Reply::Pem(PemView { id, pem }))
}

/// `LIST delete ID`.
fn trust_delete(store: &Store, list: TrustList, id: &str) -> Result<Reply, Error> {
    list.delete(store, id)?;
    Ok(Reply::DONE)
}

pub fn execute(store: &Store, command: &Command) -> Result<Reply, Error> {
    Ok(match command {
        Command::TenantAdd { name, dns, ip } => {
            tenant::add(store, name, dns, ip)?;
            Reply::DONE
        }
        Command::TenantList => Reply::Tenants(
            store
                .tenants()?
                .iter()
                .map(tenant::TenantView::of)
                .collect(),
        ),
        Command::TenantSet {
            name,
            dns,
            ip,
            acme_challenge,
            acme_key_type,
            acme_profile,
        } => Reply::Tenant(tenant::TenantView::of(&tenant::set(
            store,
            name,
            (dns.as_deref(), ip.as_deref()),
            *acme_challenge,
            *acme_key_type,
            acme_profile.as_deref(),
        )?)),
        Command::TenantRemove { name } => {
            tenant::remove(store, name)?;
            Reply::DONE
        }
        Command::TenantRemovePreview { name } => {
            let t = store
                .tenant(name)?
                .ok_or_else(|| Error::NoSuchTenant(name.clone()))?;
            Reply::TenantRemovePreview(TenantRemovePreview {
                tenant: tenant::TenantView::of(&t),
                certs: store
                    .certs()?
                    .iter()
                    .filter(|c| c.tenant.as_deref() == Some(name.as_str()))
                    .map(certs::CertView::of)
                    .collect(),
                changes: crate::served::after_tenant_remove(store, name)?,
            })
        }
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
            Reply::DONE
        }
        Command::SystemShow => {
            let system = store.system()?;
            Reply::System(tenant::SystemView {
                dns: system.dns,
                admin_email: system.admin_email,
                default_cert: system.default_cert,
                aia_fetch: store
                    .setting(crate::settings::Setting::AiaFetch.name())?
                    .as_deref()
                    != Some(b"off"),
                roots_version: store.roots_version()?,
                roots_stored: store.roots()?.len(),
                bundled_roots_version: roots::bundled_version(),
                roots_update_available: roots::update_available(store)?,
                keys_sealed: store.kv().sealing().is_some(),
                seal_key_id: store.kv().sealing(),
            })
        }
        Command::Import {
            cert,
            key,
            kind: KindRequest::Ca,
            replace,
        } => Reply::Imported(crate::localca::adopt(
            store,
            cert,
            key.as_deref(),
            *replace,
        )?),
        Command::Import {
            cert, key, kind, ..
        } => Reply::Imported(certs::import(
            store,
            cert,
            key.as_deref(),
            *kind,
            Source::Upload,
        )?),
        Command::Certs => Reply::Certs(store.certs()?.iter().map(certs::CertView::of).collect()),
        Command::Served => Reply::Served(crate::served::view(store)?),
        Command::Handshakes { .. } => {
            return Err(Error::BadSetting(
                "`handshakes` reads the running daemon's memory: start `pbx-certd serve` first"
                    .into(),
            ))
        }
        Command::CertShow { id } => {
            let id = resolve_id(store, Tree::Certs, id)?;
            let pem = certs::chain_pem(store, &id)?;
            Reply::Pem(PemView { id, pem })
        }
        Command::CertDelete { id } => {
            let id = resolve_id(store, Tree::Certs, id)?;
            certs::delete(store, &id)?;
            Reply::DONE
        }
        Command::CertDeletePreview { id } => {
            let id = resolve_id(store, Tree::Certs, id)?;
            let cert = store
                .certs()?
                .iter()
                .find(|c| c.id == id)
                .map(certs::CertView::of)
                .ok_or_else(|| Error::NotFound(id.clone()))?;
            Reply::DeletePreview(DeletePreview {
                changes: crate::served::after_delete(store, &id)?,
                cert,
            })
        }
        Command::CertCheck { id } => {
            let id = resolve_id(store, Tree::Certs, id)?;
            Reply::Check(certs::check(store, &id)?)
        }
        Command::Roots => Reply::Roots(roots::list(store)?),
        Command::RootsShow { id } => {
            let id = resolve_id(store, Tree::Roots, id)?;
            let der = store
                .roots()?
                .into_iter()
                .find(|(i, _)| *i == id)
                .map(|(_, der)| der)
                .ok_or_else(|| Error::NotFound(id.clone()))?;
            let pem = crate::pem::encode("CERTIFICATE", &der);
            Reply::Pem(PemView { id, pem })
        }
        Command::RootsDelete { ids } => {
            let mut batch = Batch::default();
            for prefix in ids {
                batch.delete_root(&resolve_id(store, Tree::Roots, prefix)?);
            }
            store.commit(batch)?;
            Reply::DONE
        }
        Command::RootsReset => {
            let mut batch = Batch::default();
            roots::reset_ops(store, &mut batch)?;
            store.commit(batch)?;
            Reply::DONE
        }
        Command::PhoneRootsImport { cert } => trust_import(store, TrustList::Phone, cert)?,
        Command::PhoneRoots => Reply::Roots(TrustList::Phone.list(store)?),
        Command::PhoneRootsShow { id } => trust_show(store, TrustList::Phone, id)?,
        Command::PhoneRootsDelete { id } => trust_delete(store, TrustList::Phone, id)?,
        Command::ClientCasImport { cert } => trust_import(store, TrustList::Client, cert)?,
        Command::ClientCas => Reply::Roots(TrustList::Client.list(store)?),
        Command::ClientCasShow { id } => trust_show(store, TrustList::Client, id)?,
        Command::ClientCasDelete { id } => trust_delete(store, TrustList::Client, id)?,
        Command::Resolve { sni, local_address } => {
            let snapshot = Snapshot::load(store, None)?;
            let r = snapshot.resolve(sni.as_deref(), *local_address, clock::now());
            Reply::Resolved(ResolveView {
                sni: sni.clone(),
                local_address: local_address.map(|a| a.to_string()),
                id: r.served.map(|s| s.id.to_string()),
                matched: r.matched.as_str().to_owned(),
                tenant: r.tenant.map(str::to_owned),
            })
        }
        Command::AdminPassword { password } => {
            crate::auth::set_password(store, password)?;
            Reply::DONE
        }
        Command::AcmeSet(change) => {
            crate::acme::set(store, change)?;
            Reply::DONE
        }
        Command::AcmeShow => Reply::Acme(crate::acme::show(store)?),
        Command::AcmeStatus => Reply::AcmeStatus(crate::acme::status_report(store)?),
        Command::CertReissue { id } => {
            let id = resolve_id(store, Tree::Certs, id)?;
            Reply::Reissued(crate::acme::reissue(store, &id)?)
        }
        Command::AcmeRetry { key } => Reply::Reissued(crate::acme::retry(store, key)?),
        Command::Csr {
            names,
            key_type,
            subject,
        } => Reply::Csr(crate::localca::csr(store, names, *key_type, subject)?),
        Command::CsrKeys => Reply::PendingCsrs(crate::localca::pending(store)?),
        Command::DnsPropagation => {
            let s = crate::dns::propagation_settings(store)?;
            Reply::Propagation(crate::dns::PropagationView {
                propagation_timeout: s.timeout_secs,
                propagation_interval: s.interval_secs,
                check_ns: s.check_ns,
            })
        }
        Command::CsrKeyDelete { key_id } => {
            Reply::PendingCsrDeleted(crate::localca::delete_pending(store, key_id)?)
        }
        Command::CaInit => Reply::Ca(crate::localca::init(store)?),
        Command::CaShow => Reply::Ca(crate::localca::show(store)?),
        Command::ClusterStatus => Reply::Cluster(cluster_status(store)),
        Command::Backup { out, sealed } => {
            let mut contents = crate::backup::read_all(store)?;
            if *sealed {
                crate::backup::seal_with(store, &mut contents)?;
            }
            let bytes = crate::backup::encode(&contents);
            crate::backup::write_file(std::path::Path::new(out), &bytes)?;
            Reply::Transfer(transfer(out, &contents, bytes.len(), false))
        }
        Command::Restore { input, replace } => {
            let bytes = crate::backup::read_file(std::path::Path::new(input))?;
            let mut contents = crate::backup::decode(&bytes)?;
            let sealed = contents.sealed.clone();
            crate::backup::open_with(store, &mut contents)?;
            judge_backup(&contents)?;
            let replaced = crate::backup::load_into(store, &contents, *replace)?;
            let mut t = transfer(input, &contents, bytes.len(), replaced);
            t.sealed = sealed;
            Reply::Transfer(t)
        }
        Command::StoreCopy { to, replace, tls } => {
            let contents = crate::backup::read_all(store)?;
            let target = open_copy_target(store, to, tls)?;
            let replaced = crate::backup::load_into(&target, &contents, *replace)?;
            target.flush()?;
            Reply::Transfer(transfer(to, &contents, 0, replaced))
        }
        Command::StoreRekey => Reply::Rekeyed(crate::seal::rekey(store.kv())?),
        Command::CaIssue { tenant, client } => {
            Reply::Imported(crate::localca::issue(store, tenant, *client)?)
        }
        Command::DnsAdd { name, zone, config } => {
            crate::dns::add(store, name, zone, config.clone())?;
            Reply::DONE
        }
        Command::DnsList => Reply::DnsList(
            crate::dns::list(store)?
                .iter()
                .map(crate::dns::ProviderEntry::listing)
                .collect(),
        ),
        Command::DnsRemove { name } => {
            crate::dns::remove(store, name)?;
            Reply::DONE
        }
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
            Reply::Propagation(crate::dns::PropagationView {
                propagation_timeout: s.timeout_secs,
                propagation_interval: s.interval_secs,
                check_ns: s.check_ns,
            })
        }
        Command::StirShakenSelect { tenant } => {
            let (id, matched) = certs::stir_select(store, tenant)?;
            Reply::Stir(certs::StirView {
                id,
                matched: matched.as_str().to_owned(),
            })
        }
        Command::StirShakenSign(req) => Reply::Signed(crate::stir::sign(store, req, clock::now())?),
        Command::StirShakenVerify(req) => Reply::Verdict(crate::stir::verify(store, req)?),
        Command::StirShakenSet(change) => Reply::StirSettings(crate::stir::set(store, change)?),
        Command::StiRootsImport { cert } => trust_import(store, TrustList::Sti, cert)?,
        Command::StiRoots => Reply::Roots(TrustList::Sti.list(store)?),
        Command::StiRootsShow { id } => trust_show(store, TrustList::Sti, id)?,
        Command::StiRootsDelete { id } => trust_delete(store, TrustList::Sti, id)?,
        Command::AlertSet(change) => Reply::AlertSettings(crate::alert::set(store, change)?),
        Command::AlertShow => Reply::AlertSettings(crate::alert::show(store)?),
        Command::AlertTest => {
            return Err(Error::BadSetting(
                "`alert test` is sent by the daemon or the CLI (it needs the network)".into(),
            ))
        }
        Command::Alerts => Reply::Alerts(crate::alert::list(store)?),
    })
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
                ip: vec![],
            },
            Command::TenantList,
            Command::TenantRemove { name: s() },
            Command::TenantRemovePreview { name: s() },
            Command::TenantSet {
                name: s(),
                dns: None,
                ip: None,
                acme_challenge: None,
                acme_key_type: None,
                acme_profile: None,
            },
            Command::TenantSet {
                name: s(),
                dns: Some(vec![]),
                ip: None,
                acme_challenge: None,
                acme_key_type: None,
                acme_profile: None,
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
                replace: false,
            },
            Command::Import {
                cert: vec![],
                key: None,
                kind: KindRequest::Auto,
                replace: false,
            },
            Command::Import {
                cert: vec![],
                key: None,
                kind: KindRequest::Server,
                replace: false,
            },
            Command::Certs,
            Command::Served,
            Command::Handshakes { listener: None },
            Command::CertShow { id: s() },
            Command::CertDelete { id: s() },
            Command::CertDeletePreview { id: s() },
            Command::CertCheck { id: s() },
            Command::Roots,
            Command::RootsShow { id: s() },
            Command::RootsDelete { ids: vec![] },
            Command::RootsReset,
            Command::PhoneRootsImport { cert: vec![] },
            Command::PhoneRoots,
            Command::PhoneRootsDelete { id: s() },
            Command::PhoneRootsShow { id: s() },
            Command::ClientCasImport { cert: vec![] },
            Command::ClientCas,
            Command::ClientCasShow { id: s() },
            Command::ClientCasDelete { id: s() },
            Command::Resolve {
                sni: None,
                local_address: None,
            },
            Command::StirShakenSelect { tenant: s() },
            Command::StirShakenSign(crate::stir::SignRequest {
                tenant: s(),
                orig: s(),
                dest: vec![],
                attest: s(),
                origid: None,
                iat: None,
            }),
            Command::StirShakenVerify(crate::stir::VerifyRequest {
                identity: s(),
                orig: s(),
                dest: s(),
                now: None,
            }),
            Command::StirShakenSet(crate::stir::StirChange::default()),
            Command::StiRootsImport { cert: vec![] },
            Command::StiRoots,
            Command::StiRootsShow { id: s() },
            Command::StiRootsDelete { id: s() },
            Command::AdminPassword { password: s() },
            Command::AcmeSet(crate::acme::AcmeChange::default()),
            Command::AcmeShow,
            Command::AcmeStatus,
            Command::CertReissue { id: s() },
            Command::AcmeRetry { key: s() },
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
                subject: crate::localca::CsrSubject::default(),
            },
            Command::CsrKeys,
            Command::CsrKeyDelete { key_id: s() },
            Command::DnsPropagation,
            Command::CaInit,
            Command::CaShow,
            Command::Backup {
                out: "/proc/pbx-certd-none/backup.json".into(),
                sealed: false,
            },
            Command::Restore {
                input: "/proc/pbx-certd-none/backup.json".into(),
                replace: false,
            },
            Command::StoreCopy {
                to: "/proc/pbx-certd-none/copy".into(),
                replace: false,
                tls: crate::etcd::StoreTls::default(),
            },
            Command::StoreRekey,
            Command::ClusterStatus,
            Command::CaIssue {
                tenant: s(),
                client: false,
            },
            Command::DnsRemove { name: s() },
            Command::DnsSet {
                propagation_timeout: None,
                propagation_interval: None,
                check_ns: None,
            },
            Command::AlertSet(crate::alert::AlertChange::default()),
            Command::AlertShow,
            Command::AlertTest,
            Command::Alerts,
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
                Command::AlertSet(_) => 29,
                Command::AlertShow => 30,
                Command::AlertTest => 31,
                Command::Alerts => 32,
                Command::CertCheck { .. } => 33,
                Command::PhoneRootsImport { .. } => 34,
                Command::PhoneRoots => 35,
                Command::PhoneRootsDelete { .. } => 36,
                Command::Served => 37,
                Command::Handshakes { .. } => 38,
                Command::CertDeletePreview { .. } => 39,
                Command::StirShakenSign(_) => 40,
                Command::StirShakenVerify(_) => 41,
                Command::StirShakenSet(_) => 42,
                Command::StiRootsImport { .. } => 43,
                Command::StiRoots => 44,
                Command::StiRootsShow { .. } => 45,
                Command::StiRootsDelete { .. } => 46,
                Command::PhoneRootsShow { .. } => 47,
                Command::ClientCasImport { .. } => 48,
                Command::ClientCas => 49,
                Command::ClientCasShow { .. } => 50,
                Command::ClientCasDelete { .. } => 51,
                Command::TenantRemovePreview { .. } => 52,
                Command::AcmeRetry { .. } => 53,
                Command::CsrKeys => 54,
                Command::CsrKeyDelete { .. } => 55,
                Command::DnsPropagation => 56,
                Command::Backup { .. } => 57,
                Command::Restore { .. } => 58,
                Command::StoreCopy { .. } => 59,
                Command::ClusterStatus => 60,
                Command::StoreRekey => 61,
            });
        }
        assert_eq!(seen.len(), 62, "a command variant has no sample");
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
    fn cluster_status_lists_live_heartbeats_and_acme_leases_only() {
        let store =
            crate::store::Store::with_backend(Box::new(crate::store::MemKv::new())).unwrap();
        let kv = store.kv();
        let long = std::time::Duration::from_secs(60);
        let node = format!("{}n1", crate::settings::NODE_LEASE_PREFIX);
        let acme = format!("{}tenant:acme", crate::settings::ACME_LEASE_PREFIX);
        assert!(kv.lease_acquire(node.as_bytes(), b"n1", long).unwrap());
        assert!(kv.lease_acquire(acme.as_bytes(), b"n1", long).unwrap());
        // A lapsed heartbeat (as sled keeps it) is not listed.
        let lapsed = crate::store::LeaseRecord {
            holder: b"n2".to_vec(),
            expires_ms: 1000,
        };
        let n2 = format!("{}n2", crate::settings::NODE_LEASE_PREFIX);
        kv.put(Tree::Leases, n2.as_bytes(), &lapsed.encode())
            .unwrap();
        let view = cluster_status(&store).answered_by(Some("n1".into()));
        assert!(
            view.healthy && !view.shared && view.error.is_none(),
            "{view:?}"
        );
        assert_eq!(view.store, "memory");
        assert_eq!(view.nodes.len(), 1, "{view:?}");
        assert_eq!(
            (view.nodes[0].id.as_str(), view.nodes[0].this),
            ("n1", true)
        );
        assert_eq!(view.leases.len(), 1, "{view:?}");
        assert_eq!(
            (
                view.leases[0].names.as_str(),
                view.leases[0].holder.as_str()
            ),
            ("tenant:acme", "n1")
        );
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
        tenant::add(&store, "t", &["t.example".into()], &[]).unwrap();
        tenant::add(&store, "u", &["u.example".into()], &[]).unwrap();
        let mut writes_seen = Vec::new();
        for c in every_command() {
            let before = observe(&store);
            let c = match c {
                // Make the writes succeed where a name is needed.
                Command::TenantSet { .. } => Command::TenantSet {
                    name: "t".into(),
                    dns: None,
                    ip: None,
                    acme_challenge: Some(Override::Set(ChallengeChoice::Dns01)),
                    acme_key_type: None,
                    acme_profile: None,
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
    fn every_reply_decodes_back_from_its_json() {
        // What the control socket does: the daemon prints `to_json`, the
        // CLI decodes it by the command it sent; it must be the same typed
        // value a local run gives (no field lost or renamed).
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path()).unwrap();
        tenant::add(&store, "t", &["t.example".into()], &[]).unwrap();
        crate::localca::init(&store).unwrap();
        let mut decoded = std::collections::HashSet::new();
        for c in every_command() {
            // `roots` parses every bundled root (slow in a debug build).
            if matches!(c, Command::Roots) {
                continue;
            }
            let c = match c {
                Command::Csr {
                    key_type, subject, ..
                } => Command::Csr {
                    names: vec!["csr.example".into()],
                    key_type,
                    subject,
                },
                Command::CaIssue { client, .. } => Command::CaIssue {
                    tenant: "t".into(),
                    client,
                },
                Command::StirShakenSelect { .. } => {
                    Command::StirShakenSelect { tenant: "t".into() }
                }
                other => other,
            };
            if let Ok(reply) = execute(&store, &c) {
                let json = reply.to_json();
                assert_eq!(
                    Reply::decode(&c, json.clone()).ok().as_ref(),
                    Some(&reply),
                    "{} {json}",
                    name(&c)
                );
                decoded.insert(std::mem::discriminant(&reply));
            }
        }
        // Not vacuous: most reply shapes were seen.
        assert!(decoded.len() >= 10, "{} shapes", decoded.len());
    }

    #[test]
    fn the_listed_changes_wake_the_renewal_loop() {
        let wakes: Vec<String> = every_command()
            .iter()
            .filter(|c| c.effect().wakes_renewal)
            .map(name)
            .collect();
        // Every change to which names need certificates, or to whether and
        // how they can be ordered (issue 10): `system-set` only with `--dns`
        // or `--admin-email` (the account contact, issue 11), `import` only
        // for a root (`--kind root`, or `auto`); `tenant-set` both with and
        // without new names (`tenant edit --dns`).
        let expected = [
            "tenant-add",
            "tenant-remove",
            "tenant-set",
            "tenant-set",
            "system-set",
            "system-set",
            "import",
            "import",
            "cert-delete",
            "roots-delete",
            "roots-reset",
            "acme-set",
            "cert-reissue",
            "acme-retry",
            "dns-add",
            "restore",
            "dns-remove",
            "dns-set",
        ];
        assert_eq!(wakes, expected);
        assert!(
            Command::SystemSet {
                dns: None,
                admin_email: Some("a@b.c".into()),
                default_cert: None,
                aia_fetch: None,
            }
            .effect()
            .wakes_renewal
        );
        assert!(
            !Command::SystemSet {
                dns: None,
                admin_email: None,
                default_cert: Some("none".into()),
                aia_fetch: None,
            }
            .effect()
            .wakes_renewal
        );
        // Changes that can cure a failed order end the back-offs (issue 11);
        // each also wakes the loop.
        let cures: Vec<String> = every_command()
            .iter()
            .filter(|c| c.cures_failures())
            .inspect(|c| assert!(c.effect().wakes_renewal, "{}", name(c)))
            .map(name)
            .collect();
        let expected = [
            "tenant-set",
            "tenant-set",
            "import",
            "import",
            "roots-delete",
            "roots-reset",
            "acme-set",
            "dns-add",
            "restore",
            "dns-remove",
            "dns-set",
        ];
        assert_eq!(cures, expected);
    }

    #[test]
    fn what_tls_serves_is_rebuilt_after_the_serving_changes() {
        let serving: Vec<String> = every_command()
            .iter()
            .filter(|c| c.effect().changes_serving)
            .map(name)
            .collect();
        // `tenant-set` only with new names or addresses (`tenant edit`).
        let expected = [
            "tenant-add",
            "tenant-remove",
            "tenant-set",
            "system-set",
            "system-set",
            "import",
            "import",
            "import",
            "cert-delete",
            "restore",
            "ca-issue",
        ];
        assert_eq!(serving, expected);
    }
}
