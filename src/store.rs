//! The persistent store: tenants, certificates (metadata + chain DER), private
//! keys, the Root CA list, settings and leases.
//!
//! Why: every change that alters what is served must be atomic and durable
//! before the CLI reports success, and a failed import must change nothing.
//! The typed `Store` sits on a small key-value trait (`Kv`) so that a
//! clustered backend (etcd, a later issue) can replace sled without touching
//! `pki` or `snapshot`. `Kv` is shaped after certmagic's Storage + Locker and
//! maps onto etcd v3: `get`/`scan_prefix` are Range requests, `apply` is one
//! Txn of Put/DeleteRange, `compare_and_swap` is a Txn whose If compares the
//! value (or `create_revision == 0` for "absent"), `watch_prefix` is a Watch
//! with a prefix range, and the lease calls are Lease Grant/KeepAlive/Revoke
//! with the record put `WithLease` (`etcd::EtcdKv` overrides the provided
//! lease methods so; sled and the in-memory store use the CAS-based
//! defaults).
//!
//! What must hold: one `Batch` = one transaction, flushed before `commit`
//! returns; a successful CAS is durable before it returns; a lease record
//! whose TTL passed reads as absent to every lease call; files are created
//! 0600 and the directory 0700; a store locked by another process is reported
//! as `StoreError::Locked`, never waited on. `MemKv` obeys the same contract
//! (minus durability) and the same test suite runs against both
//! (`tests/store_trait.rs`).
//!
//! Sealing at rest is a wrapper over any backend (`seal::SealedKv`,
//! layer 2 beside this one): the values of `Tree::Keys` and
//! `Tree::Settings` are AES-256-GCM sealed on the way in and unsealed on
//! the way out, so nothing here or above knows of it; `Kv::sealing` says
//! whether it is on.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::limits::{DEFAULT_CACHE_BYTES, MAX_CACHE_BYTES, MIN_CACHE_BYTES};
use crate::model::{Source, SystemSettings, Tenant};
use crate::pki::{KeyFormat, Kind};
use crate::settings::{Family, Setting};

/// A key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// The trees (tables) of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tree {
    /// Root CA list: ID → DER.
    Roots,
    /// Certificates: ID → JSON `CertRecord`.
    Certs,
    /// Certificate chains: ID → concatenated DER (leaf first).
    Chains,
    /// Private keys: key ID → format tag + DER.
    Keys,
    /// Tenants: name → JSON `Tenant`.
    Tenants,
    /// Settings: name → value (names in `crate::settings`).
    Settings,
    /// Leases: name → `LeaseRecord` (see `Kv::lease_acquire`).
    Leases,
    /// ACME challenge answers of orders running on any node of a shared
    /// store: `http:TOKEN` / `alpn:NAME` → JSON `acme::ChallengeRecord`
    /// (short-lived; not in backups).
    Challenges,
}

impl Tree {
    /// Every tree, in `index` order.
    pub const ALL: [Tree; 8] = [
        Tree::Roots,
        Tree::Certs,
        Tree::Chains,
        Tree::Keys,
        Tree::Tenants,
        Tree::Settings,
        Tree::Leases,
        Tree::Challenges,
    ];

    /// Whether the tree holds the store's lasting contents (what a backup
    /// keeps), not runtime state: leases (who orders now, which nodes are
    /// up) and challenge answers of running orders.
    pub fn lasting(self) -> bool {
        !matches!(self, Tree::Leases | Tree::Challenges)
    }

    /// The tree's name (an etcd backend's key segment).
    pub fn name(self) -> &'static str {
        match self {
            Tree::Roots => "roots",
            Tree::Certs => "certs",
            Tree::Chains => "chains",
            Tree::Keys => "keys",
            Tree::Tenants => "tenants",
            Tree::Settings => "settings",
            Tree::Leases => "leases",
            Tree::Challenges => "challenges",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One change in a batch.
#[derive(Debug, Clone)]
pub enum Op {
    /// Insert or replace.
    Put(Tree, Vec<u8>, Vec<u8>),
    /// Remove (absent keys are fine).
    Delete(Tree, Vec<u8>),
}

/// Why the store failed.
#[derive(Debug)]
pub enum StoreError {
    /// Another process (normally the running daemon) holds the store.
    Locked(PathBuf),
    /// The data directory could not be created or secured.
    Dir(PathBuf, std::io::Error),
    /// The storage engine failed (disk full, I/O error, corruption).
    Backend(String),
    /// A stored record does not decode (corruption or a newer version).
    Corrupt(String),
    /// `PBX_CERTD_CACHE_BYTES` is not a whole number of bytes in the
    /// allowed range (the raw value).
    BadCacheBytes(String),
    /// No member of the clustered store (etcd) answered: nothing was
    /// written (or, for a compare-and-swap whose answer was lost, the
    /// outcome is unknown and the caller must read again).
    Unavailable(String),
    /// The TLS files of an `etcd+https://` store are missing or unusable
    /// (or given for a plain `etcd+http://` store).
    BadTls(String),
    /// The clustered store refused the write because it raced another
    /// (etcd answered "aborted" or "failed precondition"): nothing changed.
    Conflict(String),
    /// A stored value is sealed (`crate::seal`) with a key that was not
    /// given: no `--store-key-file`, or one without that key ID.
    KeyMissing {
        /// The key ID the value names (16 hex digits).
        id: String,
        /// The key IDs of the key file given (empty: none was given).
        held: Vec<String>,
    },
    /// A sealed value does not open with the key of its ID: the value was
    /// altered, moved to another key, or sealed by a different key that
    /// has the same ID (what).
    UnsealFailed(String),
    /// The store key file (`--store-key-file`) is unreadable or not 32·n
    /// bytes, or `store keygen` cannot write its file (path and why).
    KeyFile(String),
}

impl StoreError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::Locked(_) => "store-locked",
            StoreError::Dir(..) | StoreError::Backend(_) => "store-error",
            StoreError::Corrupt(_) => "store-corrupt",
            StoreError::BadCacheBytes(_) => "bad-cache-bytes",
            StoreError::Unavailable(_) => "store-unavailable",
            StoreError::Conflict(_) => "store-conflict",
            StoreError::BadTls(_) => "store-tls",
            StoreError::KeyMissing { .. } => "store-key-missing",
            StoreError::UnsealFailed(_) => "store-unseal-failed",
            StoreError::KeyFile(_) => "store-key-file",
        }
    }
}

impl core::fmt::Display for StoreError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StoreError::Locked(p) => write!(
                f,
                "the store {} is in use by another process (is pbx-certd serve running?)",
                p.display()
            ),
            StoreError::Dir(p, e) => write!(f, "cannot use data directory {}: {e}", p.display()),
            StoreError::Backend(e) => write!(f, "store failure: {e}"),
            StoreError::Corrupt(e) => write!(f, "a stored record is unreadable: {e}"),
            StoreError::BadCacheBytes(v) => write!(
                f,
                "{CACHE_BYTES_ENV}={v:?} is not a number of bytes from {MIN_CACHE_BYTES} to {MAX_CACHE_BYTES}"
            ),
            StoreError::Unavailable(e) => write!(f, "the store cluster is unavailable: {e}"),
            StoreError::Conflict(e) => write!(f, "the write raced another one: {e}"),
            StoreError::BadTls(e) => write!(f, "TLS to the store: {e}"),
            StoreError::KeyMissing { id, held } if held.is_empty() => write!(
                f,
                "the store holds values sealed with key {id}: give its key file \
                 (--store-key-file FILE or PBX_CERTD_STORE_KEY_FILE)"
            ),
            StoreError::KeyMissing { id, held } => write!(
                f,
                "the store holds values sealed with key {id}, which the key file given \
                 does not hold (it holds {})",
                held.join(", ")
            ),
            StoreError::UnsealFailed(e) => write!(f, "a sealed value does not open: {e}"),
            StoreError::KeyFile(e) => write!(f, "store key file: {e}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// The outcome of `Kv::compare_and_swap`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cas {
    /// The key held the expected value and now holds the new one.
    Swapped,
    /// The key held something else (its current value): nothing changed.
    Conflict(Option<Vec<u8>>),
}

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The key was inserted or replaced with the value.
    Put(Vec<u8>, Vec<u8>),
    /// The key was removed.
    Delete(Vec<u8>),
}

/// A live watch of one prefix of one tree (`Kv::watch_prefix`): the changes
/// committed after it was created, in commit order per key.
pub trait Watch: Send {
    /// The next change, waiting at most `timeout`; `Ok(None)`: none came.
    fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Change>, StoreError>;
}

/// A lease record as stored in `Tree::Leases`: expiry (Unix milliseconds,
/// big-endian `i64`) then the holder's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    /// Who holds it.
    pub holder: Vec<u8>,
    /// When it lapses, Unix milliseconds.
    pub expires_ms: i64,
}

impl LeaseRecord {
    /// The stored bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = self.expires_ms.to_be_bytes().to_vec();
        v.extend_from_slice(&self.holder);
        v
    }

    /// Parse stored bytes; `None` if too short.
    pub fn decode(bytes: &[u8]) -> Option<LeaseRecord> {
        let (ms, holder) = bytes.split_first_chunk::<8>()?;
        Some(LeaseRecord {
            holder: holder.to_vec(),
            expires_ms: i64::from_be_bytes(*ms),
        })
    }

    fn live(&self, now_ms: i64) -> bool {
        self.expires_ms > now_ms
    }
}

/// Now, Unix milliseconds (0 before 1970).
fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
}

/// The storage contract: everything above it uses only these calls.
pub trait Kv: Send + Sync {
    /// One value.
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// All entries whose key starts with `prefix`, in key order.
    fn scan_prefix(&self, tree: Tree, prefix: &[u8]) -> Result<Vec<Entry>, StoreError>;
    /// Apply all ops atomically and durably, or none.
    fn apply(&self, ops: &[Op]) -> Result<(), StoreError>;
    /// Make everything durable (at shutdown).
    fn flush(&self) -> Result<(), StoreError>;
    /// Atomically: if `key` holds `expected` (`None`: is absent), set it to
    /// `new` (`None`: remove it), durably. Otherwise change nothing and
    /// return the current value.
    fn compare_and_swap(
        &self,
        tree: Tree,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<Cas, StoreError>;
    /// Watch the keys of `tree` starting with `prefix`.
    fn watch_prefix(&self, tree: Tree, prefix: &[u8]) -> Result<Box<dyn Watch>, StoreError>;

    /// Watch every tree at once, for a store other processes write (a
    /// cluster node learns of changes made on other nodes); its changes'
    /// keys are `TREE/KEY` (e.g. `certs/ID`), values as stored (sealed
    /// ones sealed: a follower uses them as wake-ups). `None`: this process is the
    /// store's only writer (sled holds a lock; memory is private), so there
    /// is nothing to follow.
    fn watch_all(&self) -> Result<Option<Box<dyn Watch>>, StoreError> {
        Ok(None)
    }

    /// The most operations one `apply` may carry (`None`: no bound). A
    /// larger write (a restore) is split into batches of this size.
    fn max_batch_ops(&self) -> Option<usize> {
        None
    }

    /// Where the store is, for people (`cluster status`): `sled DIR`, an
    /// etcd URL (no credentials in it), `memory`.
    fn location(&self) -> String {
        "memory".into()
    }

    /// Whether other processes write this store too (a cluster's store):
    /// nodes then announce themselves in it (`cluster status`).
    fn shared(&self) -> bool {
        false
    }

    /// The store's current revision, when it has one (etcd's: the number of
    /// its last committed transaction); asking is also a health check.
    fn revision(&self) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }

    /// The ID of the key that seals new values of the secret trees
    /// (`crate::seal::SealedKv`, `--store-key-file`); `None`: values are
    /// written as they are.
    fn sealing(&self) -> Option<String> {
        None
    }

    /// `backend` sealed as this store is (same keys), for a store written
    /// from this one (`store copy --to`): a sealed store's copy is sealed.
    /// Unsealed stores give `backend` back as it is.
    fn seal_alike(&self, backend: Box<dyn Kv>) -> Box<dyn Kv> {
        backend
    }

    /// `plain` as this store would store it under `tree`/`key` (sealed in
    /// a sealed tree of a sealed store), for a sealed backup file; `None`:
    /// this store seals nothing.
    fn seal_value(
        &self,
        _tree: Tree,
        _key: &[u8],
        _plain: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(None)
    }

    /// The plain value of `stored` (from `seal_value` of a store with one of
    /// this store's keys); an unsealed value comes back as it is. Only a
    /// sealed store can open sealed values (the caller checks `sealing`).
    fn open_value(&self, _tree: Tree, _key: &[u8], stored: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        Ok(stored)
    }

    /// Insert or replace one key (durably).
    fn put(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.apply(&[Op::Put(tree, key.to_vec(), value.to_vec())])
    }

    /// Remove one key (durably; absent is fine).
    fn delete(&self, tree: Tree, key: &[u8]) -> Result<(), StoreError> {
        self.apply(&[Op::Delete(tree, key.to_vec())])
    }

    /// Take the lease `name` for `holder` for `ttl`: `Ok(true)` if it was
    /// free, lapsed, or already `holder`'s (then renewed); `Ok(false)` if
    /// another holder's lease is live. Two contenders: exactly one wins
    /// (compare-and-swap on the record). etcd: Lease Grant + Txn
    /// `If(create_revision == 0) Then(Put WithLease)`.
    fn lease_acquire(&self, name: &[u8], holder: &[u8], ttl: Duration) -> Result<bool, StoreError> {
        for _ in 0..crate::limits::LEASE_CAS_ATTEMPTS {
            let current = self.get(Tree::Leases, name)?;
            let now = unix_ms();
            if let Some(rec) = current.as_deref().and_then(LeaseRecord::decode) {
                if rec.holder != holder && rec.live(now) {
                    return Ok(false);
                }
            }
            let new = LeaseRecord {
                holder: holder.to_vec(),
                expires_ms: now.saturating_add(ttl_ms(ttl)),
            };
            let swapped =
                self.compare_and_swap(Tree::Leases, name, current.as_deref(), Some(&new.encode()))?;
            if swapped == Cas::Swapped {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Extend `holder`'s live lease `name` to `ttl` from now: `Ok(false)` if
    /// it lapsed or is not `holder`'s (etcd: LeaseKeepAlive).
    fn lease_keep_alive(
        &self,
        name: &[u8],
        holder: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let Some(current) = self.get(Tree::Leases, name)? else {
            return Ok(false);
        };
        let now = unix_ms();
        match LeaseRecord::decode(&current) {
            Some(rec) if rec.holder == holder && rec.live(now) => {}
            _ => return Ok(false),
        }
        let new = LeaseRecord {
            holder: holder.to_vec(),
            expires_ms: now.saturating_add(ttl_ms(ttl)),
        };
        Ok(
            self.compare_and_swap(Tree::Leases, name, Some(&current), Some(&new.encode()))?
                == Cas::Swapped,
        )
    }

    /// Give up `holder`'s lease `name` (nothing if it is not `holder`'s).
    /// etcd: LeaseRevoke.
    fn lease_release(&self, name: &[u8], holder: &[u8]) -> Result<(), StoreError> {
        let Some(current) = self.get(Tree::Leases, name)? else {
            return Ok(());
        };
        if LeaseRecord::decode(&current).is_some_and(|r| r.holder == holder) {
            // A conflict means someone else took it meanwhile: not ours to drop.
            self.compare_and_swap(Tree::Leases, name, Some(&current), None)?;
        }
        Ok(())
    }

    /// The live holder of lease `name`; `None` if free or lapsed.
    fn lease_holder(&self, name: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let now = unix_ms();
        Ok(self
            .get(Tree::Leases, name)?
            .as_deref()
            .and_then(LeaseRecord::decode)
            .filter(|r| r.live(now))
            .map(|r| r.holder))
    }
}

/// The environment variable that sizes sled's page cache.
pub const CACHE_BYTES_ENV: &str = "PBX_CERTD_CACHE_BYTES";

/// sled's page cache size from the raw `PBX_CERTD_CACHE_BYTES` value (read
/// once per store open): unset or empty is `DEFAULT_CACHE_BYTES`; anything
/// but a whole number of bytes within `MIN_CACHE_BYTES..=MAX_CACHE_BYTES` is
/// `StoreError::BadCacheBytes` (a mistyped bound fails loudly rather than
/// silently running with another cache).
pub fn cache_bytes(raw: Option<&str>) -> Result<u64, StoreError> {
    let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
        return Ok(DEFAULT_CACHE_BYTES);
    };
    raw.parse::<u64>()
        .ok()
        .filter(|n| (MIN_CACHE_BYTES..=MAX_CACHE_BYTES).contains(n))
        .ok_or_else(|| StoreError::BadCacheBytes(raw.chars().take(64).collect()))
}

/// Create the data directory `dir` if missing, mode 0700 either way (it
/// holds the sled store, or with an etcd store the node's own files).
pub fn secure_dir(dir: &Path) -> Result<(), StoreError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| StoreError::Dir(dir.to_owned(), e))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| StoreError::Dir(dir.to_owned(), e))
}

/// sled behind `Kv`.
pub struct SledKv {
    db: sled::Db,
    trees: Vec<sled::Tree>,
    /// The data dir (`location`).
    dir: std::path::PathBuf,
}

fn backend(e: impl core::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl SledKv {
    /// Open (creating) the sled store in `dir`.
    pub fn open(dir: &Path) -> Result<SledKv, StoreError> {
        secure_dir(dir)?;
        let db_dir = dir.join("db");
        let cache = cache_bytes(std::env::var(CACHE_BYTES_ENV).ok().as_deref())?;
        let recovery = crash::recover(dir, &db_dir)?;
        let db = sled::Config::new()
            .path(&db_dir)
            .cache_capacity(cache)
            .open()
            .map_err(|e| match e {
                sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
                    StoreError::Locked(dir.to_owned())
                }
                other => backend(other),
            })?;
        if recovery.conf_rewritten {
            crash::sync_new_conf(dir, &db_dir)?;
        }
        let trees = Tree::ALL
            .iter()
            .map(|t| db.open_tree(t.name()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend)?;
        secure_files(&db_dir);
        Ok(SledKv {
            db,
            trees,
            dir: dir.to_owned(),
        })
    }

    fn tree(&self, tree: Tree) -> Result<&sled::Tree, StoreError> {
        self.trees
            .get(tree.index())
            .ok_or_else(|| backend("missing tree"))
    }
}

/// What a process killed, or a power cut, inside sled 0.34.7's open leaves
/// behind, and its removal before sled opens (issue 9, item 1; upstream
/// spacejam/sled#1527, #1533).
///
/// sled cannot open read-only: every open runs `PageCache::start`, which
/// zeroes the tail of the active log segment and, when the log grew since the
/// last snapshot, writes a new snapshot file. So every command, `certs` too,
/// writes at open, and a kill there must be survivable. Two leftovers were
/// not, and both are provably never authoritative:
///
/// 1. `db/snap.{LSN:016X}.generating`. sled-0.34.7/src/pagecache/snapshot.rs,
///    `write_snapshot` (the file's only writer):
///    ```text
///    let mut f = std::fs::OpenOptions::new().write(true).create(true).open(&path_1)?;
///    f.write_all(&*bytes)?; f.write_all(&len_bytes)?; f.write_all(&crc32)?;
///    f.sync_all()?;
///    std::fs::rename(&path_1, &path_2)?;   // path_2 = snap.{LSN:016X}
///    ```
///    Its only caller is `advance_snapshot`
///    (`if snapshot.stable_lsn > old_stable_lsn { write_snapshot(config, &snapshot)?; }`),
///    called only from `read_snapshot_or_default`, called only from
///    `PageCache::start` (pagecache/mod.rs) while the store opens; the other
///    snapshot maker, `take_fuzzy_snapshot`, is `#[allow(unused)]` and never
///    called. So a `.generating` file exists only while an open is writing it,
///    and once the process is gone it is an unfinished copy: the log (which
///    `write_snapshot` never writes) and the older `snap.*` files are exactly
///    what a kill one step before its `open` would have left, a state sled
///    recovers from by design. But config.rs `RunningConfig::get_snapshot_files`
///    keeps every `snap.` file except `.in___motion` ones, and snapshot.rs
///    `read_snapshot` reads the greatest name
///    (`candidates.sort(); let path = candidates.pop().unwrap();`), which is
///    the `.generating` one since its LSN is above every renamed snapshot's;
///    when it is short (`if len <= 12 { ... return Err(Error::corruption(None)); }`)
///    or torn (`if crc_expected != crc_actual { ... return Err(Error::corruption(None)); }`)
///    the open fails, and `read_snapshot_or_default` says so on purpose
///    (`NB we want to error out if the read snapshot was corrupted.`). A kill
///    leaves it empty between the create and the first write; a power cut
///    before `sync_all` returns leaves it empty or torn. We delete it.
///    A renamed `snap.N` is always whole: its bytes were fsynced before the
///    rename (above), and older snapshots are removed only after the rename
///    (`// clean up any old snapshots`), so a cut keeps one whole snapshot.
/// 2. A torn `db/conf`. config.rs `write_config` (run by `verify_config` on
///    `Ok(None) => self.write_config()`, i.e. only when there is none) does
///    `f.write_all(&*bytes)?; f.write_all(&crc_arr)?;` with no fsync, and
///    `read_config` rewrites a file of 8 bytes or less
///    (`if f.metadata()?.len() <= 8 { ... return Ok(None); }`) but on a CRC
///    mismatch only warns (`"crc for settings file {:?} failed! can't verify
///    that config is safe"`) and parses the text without its last 4 bytes,
///    which fails: a kill between the two writes of the first-ever open
///    bricked the store. The file holds only `segment_size`,
///    `use_compression` and `version`, which `verify_config` compares with
///    the `Config` we open with (always sled's defaults here), so deleting a
///    torn one loses nothing: sled writes the same again, and we then fsync
///    it.
///
/// The cleanup holds the lock sled takes (config.rs `try_lock`: fs2
/// `try_lock_exclusive`, i.e. `flock(LOCK_EX|LOCK_NB)` on `db/db`), so the
/// files of a live process (the daemon) are never touched, and releases it
/// just before sled takes it (two open files' flocks conflict even in one
/// process). Cost: one open, flock, directory read and 62-byte read.
mod crash {
    use std::fs;
    use std::io::ErrorKind;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    use std::path::Path;

    use super::StoreError;

    /// What the cleanup found.
    pub(super) struct Recovery {
        /// sled writes `conf` in this open (first open, or a torn one was
        /// removed): it must be made durable afterwards.
        pub conf_rewritten: bool,
    }

    /// Remove what a dead open left in `db_dir` (see the module comment).
    pub(super) fn recover(dir: &Path, db_dir: &Path) -> Result<Recovery, StoreError> {
        let dir_err = |e: std::io::Error| StoreError::Dir(dir.to_owned(), e);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(db_dir)
            .map_err(dir_err)?;
        // sled opens its log with `options.create(true)` too.
        let log = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(db_dir.join("db"))
            .map_err(dir_err)?;
        match rustix::fs::flock(&log, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                return Err(StoreError::Locked(dir.to_owned()))
            }
            Err(e) => return Err(dir_err(e.into())),
        }
        let mut removed = false;
        for entry in fs::read_dir(db_dir).map_err(dir_err)? {
            let entry = entry.map_err(dir_err)?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("snap.") && name.ends_with(".generating") {
                log::warn!(
                    "store: removing {name}, a snapshot an interrupted open left unfinished"
                );
                fs::remove_file(entry.path()).map_err(dir_err)?;
                removed = true;
            }
        }
        let conf = db_dir.join("conf");
        let conf_rewritten = match fs::read(&conf) {
            Ok(bytes) if conf_is_whole(&bytes) => false,
            Ok(_) => {
                log::warn!("store: removing db/conf, torn by an interrupted first open");
                fs::remove_file(&conf).map_err(dir_err)?;
                removed = true;
                true
            }
            Err(e) if e.kind() == ErrorKind::NotFound => true,
            Err(e) => return Err(dir_err(e)),
        };
        if removed {
            sync_dir(db_dir).map_err(dir_err)?;
        }
        // Closing our descriptor releases the lock for sled's own.
        drop(log);
        Ok(Recovery { conf_rewritten })
    }

    /// After sled wrote `conf` (unsynced): make it and the new directory
    /// entries durable, so a power cut cannot tear it.
    pub(super) fn sync_new_conf(dir: &Path, db_dir: &Path) -> Result<(), StoreError> {
        let dir_err = |e: std::io::Error| StoreError::Dir(dir.to_owned(), e);
        fs::File::open(db_dir.join("conf"))
            .and_then(|f| f.sync_all())
            .map_err(dir_err)?;
        sync_dir(db_dir).map_err(dir_err)?;
        sync_dir(dir).map_err(dir_err)
    }

    fn sync_dir(dir: &Path) -> std::io::Result<()> {
        fs::File::open(dir)?.sync_all()
    }

    /// sled's `conf`: text, then the CRC-32 (IEEE, little-endian) of the
    /// text (config.rs `write_config`); more than 8 bytes, as `read_config`
    /// wants.
    fn conf_is_whole(bytes: &[u8]) -> bool {
        if bytes.len() <= 8 {
            return false;
        }
        let (text, crc) = bytes.split_at(bytes.len() - 4);
        crc.try_into()
            .map(u32::from_le_bytes)
            .is_ok_and(|crc| crc == crc32(text))
    }

    /// CRC-32/IEEE (what sled's `crc32fast` computes), bitwise: the input is
    /// sled's ~60-byte conf, once per open.
    fn crc32(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn crc32_is_ieee_and_conf_check_needs_the_whole_file() {
            // The standard check value of CRC-32/IEEE.
            assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
            let text = b"segment_size: 524288\nuse_compression: false\nversion: 0.34\n";
            let mut conf = text.to_vec();
            conf.extend_from_slice(&crc32(text).to_le_bytes());
            assert!(conf_is_whole(&conf));
            assert!(!conf_is_whole(&conf[..conf.len() - 4]));
            assert!(!conf_is_whole(&conf[..8]));
            assert!(!conf_is_whole(&[]));
        }
    }
}

/// Best effort 0600/0700 on what sled created (the process umask also says 077).
fn secure_files(dir: &Path) {
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                secure_files(&path);
            } else {
                let _ = fs::set_permissions(&path, fs::Permissions::from_mode(0o600));
            }
        }
    }
}

impl Kv for SledKv {
    fn location(&self) -> String {
        format!("sled {}", self.dir.display())
    }

    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .tree(tree)?
            .get(key)
            .map_err(backend)?
            .map(|v| v.to_vec()))
    }

    fn scan_prefix(&self, tree: Tree, prefix: &[u8]) -> Result<Vec<Entry>, StoreError> {
        self.tree(tree)?
            .scan_prefix(prefix)
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(backend))
            .collect()
    }

    fn apply(&self, ops: &[Op]) -> Result<(), StoreError> {
        use sled::Transactional;
        let result: Result<(), sled::transaction::TransactionError<()>> =
            self.trees.as_slice().transaction(|txs| {
                for op in ops {
                    match op {
                        Op::Put(tree, k, v) => {
                            if let Some(tx) = txs.get(tree.index()) {
                                tx.insert(k.as_slice(), v.as_slice())?;
                            }
                        }
                        Op::Delete(tree, k) => {
                            if let Some(tx) = txs.get(tree.index()) {
                                tx.remove(k.as_slice())?;
                            }
                        }
                    }
                }
                Ok(())
            });
        result.map_err(|e| backend(format!("{e:?}")))?;
        self.db.flush().map_err(backend)?;
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(|_| ()).map_err(backend)
    }

    fn compare_and_swap(
        &self,
        tree: Tree,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<Cas, StoreError> {
        let result = self
            .tree(tree)?
            .compare_and_swap(key, expected, new)
            .map_err(backend)?;
        match result {
            Ok(()) => {
                self.db.flush().map_err(backend)?;
                Ok(Cas::Swapped)
            }
            Err(e) => Ok(Cas::Conflict(e.current.map(|v| v.to_vec()))),
        }
    }

    fn watch_prefix(&self, tree: Tree, prefix: &[u8]) -> Result<Box<dyn Watch>, StoreError> {
        Ok(Box::new(SledWatch(self.tree(tree)?.watch_prefix(prefix))))
    }
}

/// sled's `Subscriber` behind `Watch`.
struct SledWatch(sled::Subscriber);

impl Watch for SledWatch {
    fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Change>, StoreError> {
        received(self.0.next_timeout(timeout), |event| match event {
            sled::Event::Insert { key, value } => Change::Put(key.to_vec(), value.to_vec()),
            sled::Event::Remove { key } => Change::Delete(key.to_vec()),
        })
    }
}

/// A watch's channel result as `Watch::next_timeout` reports it.
fn received<T>(
    result: Result<T, std::sync::mpsc::RecvTimeoutError>,
    change: impl FnOnce(T) -> Change,
) -> Result<Option<Change>, StoreError> {
    use std::sync::mpsc::RecvTimeoutError;
    match result {
        Ok(t) => Ok(Some(change(t))),
        Err(RecvTimeoutError::Timeout) => Ok(None),
        Err(RecvTimeoutError::Disconnected) => Err(backend("the store closed the watch")),
    }
}

/// A shared backend (e.g. one `MemKv` behind two `Store`s) is a backend.
impl<K: Kv + ?Sized> Kv for std::sync::Arc<K> {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        (**self).get(tree, key)
    }
    fn scan_prefix(&self, tree: Tree, prefix: &[u8]) -> Result<Vec<Entry>, StoreError> {
        (**self).scan_prefix(tree, prefix)
    }
    fn apply(&self, ops: &[Op]) -> Result<(), StoreError> {
        (**self).apply(ops)
    }
    fn flush(&self) -> Result<(), StoreError> {
        (**self).flush()
    }
    fn compare_and_swap(
        &self,
        tree: Tree,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<Cas, StoreError> {
        (**self).compare_and_swap(tree, key, expected, new)
    }
    fn watch_prefix(&self, tree: Tree, prefix: &[u8]) -> Result<Box<dyn Watch>, StoreError> {
        (**self).watch_prefix(tree, prefix)
    }
    fn watch_all(&self) -> Result<Option<Box<dyn Watch>>, StoreError> {
        (**self).watch_all()
    }
    fn max_batch_ops(&self) -> Option<usize> {
        (**self).max_batch_ops()
    }
    fn location(&self) -> String {
        (**self).location()
    }
    fn shared(&self) -> bool {
        (**self).shared()
    }
    fn revision(&self) -> Result<Option<u64>, StoreError> {
        (**self).revision()
    }
    fn sealing(&self) -> Option<String> {
        (**self).sealing()
    }
    fn seal_value(
        &self,
        tree: Tree,
        key: &[u8],
        plain: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        (**self).seal_value(tree, key, plain)
    }
    fn open_value(&self, tree: Tree, key: &[u8], stored: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        (**self).open_value(tree, key, stored)
    }
    fn seal_alike(&self, backend: Box<dyn Kv>) -> Box<dyn Kv> {
        (**self).seal_alike(backend)
    }
    fn put(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        (**self).put(tree, key, value)
    }
    fn delete(&self, tree: Tree, key: &[u8]) -> Result<(), StoreError> {
        (**self).delete(tree, key)
    }
    fn lease_acquire(&self, name: &[u8], holder: &[u8], ttl: Duration) -> Result<bool, StoreError> {
        (**self).lease_acquire(name, holder, ttl)
    }
    fn lease_keep_alive(
        &self,
        name: &[u8],
        holder: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        (**self).lease_keep_alive(name, holder, ttl)
    }
    fn lease_release(&self, name: &[u8], holder: &[u8]) -> Result<(), StoreError> {
        (**self).lease_release(name, holder)
    }
    fn lease_holder(&self, name: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        (**self).lease_holder(name)
    }
}

/// The whole store in memory, behind the same contract (minus durability):
/// unit tests and the shared backend test suite use it.
#[derive(Default)]
pub struct MemKv {
    state: std::sync::Mutex<MemState>,
}

#[derive(Default)]
struct MemState {
    trees: [std::collections::BTreeMap<Vec<u8>, Vec<u8>>; Tree::ALL.len()],
    watchers: Vec<MemWatcher>,
}

struct MemWatcher {
    tree: Tree,
    prefix: Vec<u8>,
    tx: std::sync::mpsc::Sender<Change>,
}

impl MemState {
    fn map(
        &mut self,
        tree: Tree,
    ) -> Result<&mut std::collections::BTreeMap<Vec<u8>, Vec<u8>>, StoreError> {
        self.trees
            .get_mut(tree.index())
            .ok_or_else(|| backend("missing tree"))
    }

    /// Tell the watchers of `tree` about `change`; forget dropped watches.
    fn notify(&mut self, tree: Tree, change: &Change) {
        let key = match change {
            Change::Put(k, _) | Change::Delete(k) => k,
        };
        self.watchers.retain(|w| {
            w.tree != tree || !key.starts_with(&w.prefix) || w.tx.send(change.clone()).is_ok()
        });
    }
}

impl MemKv {
    /// An empty store.
    pub fn new() -> MemKv {
        MemKv::default()
    }

    /// An independent copy of everything stored (no watchers): a fixture
    /// store built once, handed out fresh to each test or fuzz input.
    pub fn copy(&self) -> Result<MemKv, StoreError> {
        let trees = self.lock()?.trees.clone();
        Ok(MemKv {
            state: std::sync::Mutex::new(MemState {
                trees,
                watchers: Vec::new(),
            }),
        })
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, MemState>, StoreError> {
        self.state.lock().map_err(|_| backend("a writer panicked"))
    }
}

impl Kv for MemKv {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock()?.map(tree)?.get(key).cloned())
    }

    fn scan_prefix(&self, tree: Tree, prefix: &[u8]) -> Result<Vec<Entry>, StoreError> {
        Ok(self
            .lock()?
            .map(tree)?
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn apply(&self, ops: &[Op]) -> Result<(), StoreError> {
        let mut state = self.lock()?;
        for op in ops {
            let (tree, change) = match op {
                Op::Put(tree, k, v) => {
                    state.map(*tree)?.insert(k.clone(), v.clone());
                    (*tree, Change::Put(k.clone(), v.clone()))
                }
                Op::Delete(tree, k) => {
                    if state.map(*tree)?.remove(k).is_none() {
                        continue;
                    }
                    (*tree, Change::Delete(k.clone()))
                }
            };
            state.notify(tree, &change);
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn compare_and_swap(
        &self,
        tree: Tree,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<Cas, StoreError> {
        let mut state = self.lock()?;
        let map = state.map(tree)?;
        let current = map.get(key);
        if current.map(Vec::as_slice) != expected {
            return Ok(Cas::Conflict(current.cloned()));
        }
        let change = match new {
            Some(v) => {
                map.insert(key.to_vec(), v.to_vec());
                Change::Put(key.to_vec(), v.to_vec())
            }
            None => {
                if map.remove(key).is_none() {
                    return Ok(Cas::Swapped);
                }
                Change::Delete(key.to_vec())
            }
        };
        state.notify(tree, &change);
        Ok(Cas::Swapped)
    }

    fn watch_prefix(&self, tree: Tree, prefix: &[u8]) -> Result<Box<dyn Watch>, StoreError> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.lock()?.watchers.push(MemWatcher {
            tree,
            prefix: prefix.to_vec(),
            tx,
        });
        Ok(Box::new(MemWatch(rx)))
    }
}

/// A channel fed by `MemKv` writes.
struct MemWatch(std::sync::mpsc::Receiver<Change>);

impl Watch for MemWatch {
    fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Change>, StoreError> {
        received(self.0.recv_timeout(timeout), |c| c)
    }
}

/// The metadata of a stored certificate (its chain is in `Tree::Chains`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertRecord {
    /// Hex SHA-256 of the leaf DER.
    pub id: String,
    /// Server, domain or STIR/SHAKEN.
    pub kind: Kind,
    /// Owning tenant of a domain certificate.
    pub tenant: Option<String>,
    /// Normalised DNS names of the leaf.
    pub names: Vec<String>,
    /// Leaf subject (RFC 4514).
    pub subject: String,
    /// Leaf issuer (RFC 4514).
    pub issuer: String,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
    /// Upload, self-signed, ACME.
    pub source: Source,
    /// `rsa2048`, `p256`, ...
    pub key_type: String,
    /// ID of the private key (hex SHA-256 of the public key).
    pub key_id: String,
    /// Import order.
    pub seq: u64,
    /// Extended key usages of the leaf (`pki::CertInfo::eku`: names such as
    /// `server-auth`, `client-auth`; `any` without the extension). Records
    /// of older releases lack it: `Store` derives it from the stored leaf
    /// when it reads them (`with_eku`), so it is never empty once read.
    #[serde(default)]
    pub eku: Vec<String>,
}

impl CertRecord {
    /// The record of a parsed leaf.
    pub fn from_leaf(
        info: &crate::pki::CertInfo,
        kind: Kind,
        tenant: Option<String>,
        source: Source,
        seq: u64,
    ) -> CertRecord {
        CertRecord {
            id: info.id.clone(),
            kind,
            tenant,
            names: info.names.clone(),
            subject: info.subject.clone(),
            issuer: info.issuer.clone(),
            not_before: info.not_before,
            not_after: info.not_after,
            source,
            key_type: info.key_alg.name(),
            key_id: info.key_id(),
            seq,
            eku: info.eku.clone(),
        }
    }
}

/// A stored private key.
pub struct StoredKey {
    /// Encoding.
    pub format: KeyFormat,
    /// Secret bytes.
    pub der: Vec<u8>,
}

const SETTING_SYSTEM: &[u8] = Setting::System.name().as_bytes();
const SETTING_ROOTS_VERSION: &[u8] = Setting::RootsVersion.name().as_bytes();
const SETTING_NEXT_SEQ: &[u8] = Setting::NextSeq.name().as_bytes();

/// The typed store used by every operation.
pub struct Store {
    kv: Box<dyn Kv>,
}

fn corrupt(e: impl core::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

impl Store {
    /// Open the sled store in `dir` as it is: the store's own migrations
    /// run, nothing is seeded (`ops::open_store` seeds the Root CA list and
    /// migrates the local CA for use).
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Store::with_backend(Box::new(SledKv::open(dir)?))
    }

    /// Use another backend (tests, clusters); see `open`.
    pub fn with_backend(kv: Box<dyn Kv>) -> Result<Store, StoreError> {
        let store = Store { kv };
        // Leases of older releases lived in the settings tree.
        let legacy = Family::LegacyAcmeLease.prefix().as_bytes();
        let stale = store.kv.scan_prefix(Tree::Settings, legacy)?;
        if !stale.is_empty() {
            let ops: Vec<Op> = stale
                .into_iter()
                .map(|(k, _)| Op::Delete(Tree::Settings, k))
                .collect();
            store.kv.apply(&ops)?;
        }
        Ok(store)
    }

    /// The key-value backend (compare-and-swap, watches, leases).
    pub fn kv(&self) -> &dyn Kv {
        self.kv.as_ref()
    }

    /// Apply a batch atomically and durably.
    pub fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        if batch.ops.is_empty() {
            return Ok(());
        }
        self.kv.apply(&batch.ops)
    }

    /// Make everything durable.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.kv.flush()
    }

    /// All tenants, by name.
    pub fn tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        self.kv
            .scan_prefix(Tree::Tenants, b"")?
            .into_iter()
            .map(|(_, v)| serde_json::from_slice(&v).map_err(corrupt))
            .collect()
    }

    /// One tenant.
    pub fn tenant(&self, name: &str) -> Result<Option<Tenant>, StoreError> {
        self.kv
            .get(Tree::Tenants, name.as_bytes())?
            .map(|v| serde_json::from_slice(&v).map_err(corrupt))
            .transpose()
    }

    /// All certificates, in import order.
    pub fn certs(&self) -> Result<Vec<CertRecord>, StoreError> {
        let mut certs = self
            .kv
            .scan_prefix(Tree::Certs, b"")?
            .into_iter()
            .map(|(_, v)| self.cert_record(&v))
            .collect::<Result<Vec<_>, _>>()?;
        certs.sort_by_key(|c| c.seq);
        Ok(certs)
    }

    /// One certificate by full ID.
    pub fn cert(&self, id: &str) -> Result<Option<CertRecord>, StoreError> {
        self.kv
            .get(Tree::Certs, id.as_bytes())?
            .map(|v| self.cert_record(&v))
            .transpose()
    }

    /// Decode a stored `CertRecord`; one of an older release (no `eku`)
    /// gets its EKU from the stored leaf (`with_eku`).
    fn cert_record(&self, raw: &[u8]) -> Result<CertRecord, StoreError> {
        let record: CertRecord = serde_json::from_slice(raw).map_err(corrupt)?;
        self.with_eku(record)
    }

    /// `record` with `eku` filled from its stored leaf when it is empty.
    fn with_eku(&self, mut record: CertRecord) -> Result<CertRecord, StoreError> {
        if record.eku.is_empty() {
            let leaf = self
                .chain(&record.id)?
                .into_iter()
                .next()
                .and_then(crate::pki::CertInfo::parse)
                .ok_or_else(|| corrupt(format!("leaf of {}", record.id)))?;
            record.eku = leaf.eku;
        }
        Ok(record)
    }

    /// The chain (leaf first) of a certificate.
    pub fn chain(&self, id: &str) -> Result<Vec<Vec<u8>>, StoreError> {
        let bytes = self
            .kv
            .get(Tree::Chains, id.as_bytes())?
            .unwrap_or_default();
        split_der(&bytes).ok_or_else(|| corrupt(format!("chain of {id}")))
    }

    /// A private key by key ID.
    pub fn key(&self, key_id: &str) -> Result<Option<StoredKey>, StoreError> {
        let Some(bytes) = self.kv.get(Tree::Keys, key_id.as_bytes())? else {
            return Ok(None);
        };
        let (tag, der) = bytes.split_first().ok_or_else(|| corrupt("empty key"))?;
        let format = KeyFormat::from_tag(*tag).ok_or_else(|| corrupt("key format"))?;
        Ok(Some(StoredKey {
            format,
            der: der.to_vec(),
        }))
    }

    /// The Root CA list: (ID, DER), by ID.
    pub fn roots(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.kv
            .scan_prefix(Tree::Roots, b"")?
            .into_iter()
            .map(|(k, v)| Ok((String::from_utf8(k).map_err(corrupt)?, v)))
            .collect()
    }

    /// IDs of stored certificates (or roots) starting with `prefix`.
    pub fn ids_with_prefix(&self, tree: Tree, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.kv
            .scan_prefix(tree, prefix.as_bytes())?
            .into_iter()
            .map(|(k, _)| String::from_utf8(k).map_err(corrupt))
            .collect()
    }

    /// System settings.
    pub fn system(&self) -> Result<SystemSettings, StoreError> {
        self.kv
            .get(Tree::Settings, SETTING_SYSTEM)?
            .map(|v| serde_json::from_slice(&v).map_err(corrupt))
            .transpose()
            .map(Option::unwrap_or_default)
    }

    /// The version of the Root CA list the store holds (set by reset).
    pub fn roots_version(&self) -> Result<Option<String>, StoreError> {
        self.kv
            .get(Tree::Settings, SETTING_ROOTS_VERSION)?
            .map(|v| String::from_utf8(v).map_err(corrupt))
            .transpose()
    }

    /// Record a Root CA list version (used by reset, and by tests to
    /// simulate a store written by an older release).
    pub fn set_roots_version(&self, version: &str) -> Result<(), StoreError> {
        let mut batch = Batch::default();
        batch.put_roots_version(version);
        self.commit(batch)
    }

    /// A raw setting (daemon-owned values such as the admin password hash).
    pub fn setting(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.kv.get(Tree::Settings, name.as_bytes())
    }

    /// Raw settings whose name starts with `prefix` (DNS providers, ...).
    pub fn settings_with_prefix(&self, prefix: &str) -> Result<Vec<Entry>, StoreError> {
        self.kv.scan_prefix(Tree::Settings, prefix.as_bytes())
    }

    /// The next import sequence number (the batch must bump it).
    pub fn next_seq(&self) -> Result<u64, StoreError> {
        Ok(match self.kv.get(Tree::Settings, SETTING_NEXT_SEQ)? {
            Some(v) => u64::from_be_bytes(v.as_slice().try_into().map_err(corrupt)?),
            None => 1,
        })
    }
}

/// Split concatenated DER objects; `None` if a length is inconsistent.
fn split_der(mut bytes: &[u8]) -> Option<Vec<Vec<u8>>> {
    use der::{Decode, Encode};
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let mut reader = der::SliceReader::new(bytes).ok()?;
        let header = der::Header::decode(&mut reader).ok()?;
        let len = usize::try_from((header.encoded_len().ok()? + header.length).ok()?).ok()?;
        let (one, rest) = (bytes.get(..len)?, bytes.get(len..)?);
        out.push(one.to_vec());
        bytes = rest;
    }
    Some(out)
}

/// The changes of one operation, committed together.
#[derive(Debug, Default)]
pub struct Batch {
    ops: Vec<Op>,
}

impl Batch {
    fn put_json(&mut self, tree: Tree, key: &str, value: &impl Serialize) {
        // Serialising our own plain structs to JSON cannot fail.
        let bytes = serde_json::to_vec(value).unwrap_or_default();
        self.ops.push(Op::Put(tree, key.as_bytes().to_vec(), bytes));
    }

    /// Store a certificate and its chain.
    pub fn put_cert(&mut self, record: &CertRecord, chain: &[Vec<u8>]) {
        self.put_json(Tree::Certs, &record.id, record);
        self.ops.push(Op::Put(
            Tree::Chains,
            record.id.clone().into_bytes(),
            chain.concat(),
        ));
    }

    /// Remove a certificate and its chain.
    pub fn delete_cert(&mut self, id: &str) {
        self.ops
            .push(Op::Delete(Tree::Certs, id.as_bytes().to_vec()));
        self.ops
            .push(Op::Delete(Tree::Chains, id.as_bytes().to_vec()));
    }

    /// Store a private key.
    pub fn put_key(&mut self, key_id: &str, format: KeyFormat, der: &[u8]) {
        let mut value = vec![format.tag()];
        value.extend_from_slice(der);
        self.ops
            .push(Op::Put(Tree::Keys, key_id.as_bytes().to_vec(), value));
    }

    /// Remove a private key.
    pub fn delete_key(&mut self, key_id: &str) {
        self.ops
            .push(Op::Delete(Tree::Keys, key_id.as_bytes().to_vec()));
    }

    /// Add a root.
    pub fn put_root(&mut self, id: &str, der: &[u8]) {
        self.ops
            .push(Op::Put(Tree::Roots, id.as_bytes().to_vec(), der.to_vec()));
    }

    /// Remove a root.
    pub fn delete_root(&mut self, id: &str) {
        self.ops
            .push(Op::Delete(Tree::Roots, id.as_bytes().to_vec()));
    }

    /// Store a tenant.
    pub fn put_tenant(&mut self, tenant: &Tenant) {
        self.put_json(Tree::Tenants, &tenant.name, tenant);
    }

    /// Remove a tenant.
    pub fn delete_tenant(&mut self, name: &str) {
        self.ops
            .push(Op::Delete(Tree::Tenants, name.as_bytes().to_vec()));
    }

    /// Store system settings.
    pub fn put_system(&mut self, system: &SystemSettings) {
        self.put_json(Tree::Settings, Setting::System.name(), system);
    }

    /// Record the Root CA list version.
    pub fn put_roots_version(&mut self, version: &str) {
        self.ops.push(Op::Put(
            Tree::Settings,
            SETTING_ROOTS_VERSION.to_vec(),
            version.as_bytes().to_vec(),
        ));
    }

    /// Store a raw setting.
    pub fn put_setting(&mut self, name: &str, value: &[u8]) {
        self.ops.push(Op::Put(
            Tree::Settings,
            name.as_bytes().to_vec(),
            value.to_vec(),
        ));
    }

    /// Remove a raw setting.
    pub fn delete_setting(&mut self, name: &str) {
        self.ops
            .push(Op::Delete(Tree::Settings, name.as_bytes().to_vec()));
    }

    /// Record the next import sequence number.
    pub fn put_next_seq(&mut self, seq: u64) {
        self.ops.push(Op::Put(
            Tree::Settings,
            SETTING_NEXT_SEQ.to_vec(),
            seq.to_be_bytes().to_vec(),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_der_round_trips_and_rejects_truncation() {
        let a = vec![0x30, 0x03, 1, 2, 3];
        let b = vec![0x30, 0x81, 0x80];
        let mut b_full = b.clone();
        b_full.extend(std::iter::repeat_n(7, 0x80));
        let joined = [a.clone(), b_full.clone()].concat();
        assert_eq!(split_der(&joined).unwrap(), vec![a, b_full]);
        assert!(split_der(&joined[..joined.len() - 1]).is_none());
        assert_eq!(split_der(&[]).unwrap(), Vec::<Vec<u8>>::new());
    }

    #[test]
    fn batch_is_atomic_and_second_open_is_locked() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(
            store.roots().unwrap().is_empty(),
            "the store layer seeds nothing"
        );
        let t = Tenant {
            name: "a".into(),
            dns: vec!["a.example".into()],
            ..Default::default()
        };
        let mut batch = Batch::default();
        batch.put_tenant(&t);
        store.commit(batch).unwrap();
        assert_eq!(store.tenants().unwrap(), vec![t]);
        match Store::open(dir.path()) {
            Err(StoreError::Locked(_)) => {}
            other => panic!("expected Locked, got {:?}", other.map(|_| ())),
        }
        let mode = fs::metadata(dir.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
