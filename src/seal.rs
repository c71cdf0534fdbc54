//! Keys sealed at rest: the values of the secret trees encrypted with
//! AES-256-GCM under a key the store does not hold (issue 16).
//!
//! Why: the store holds every private key (`Tree::Keys`) and every secret
//! setting (`Tree::Settings`: DNS API tokens, TSIG secrets, the EAB HMAC,
//! the SMTP password, the webhook secret, the local CA and ACME account
//! records). A copy of the sled files or a read of the etcd prefix must not
//! give them away. `SealedKv` wraps any `Kv` backend (sled, etcd, memory),
//! so everything above the storage trait is unchanged: it seals on the way
//! in and unseals on the way out.
//!
//! The key file (`--store-key-file FILE`, `PBX_CERTD_STORE_KEY_FILE`, a
//! `store-key-file =` line of `serve --config`) holds one or more 32-byte
//! keys concatenated, nothing else (`KeyRing::load`, the one parser of the
//! setting). The first key seals; every key unseals (rotation: `store
//! rekey` re-seals everything with the first). A key's ID is the first 8
//! bytes of its SHA-256 (hex), stored beside each value.
//!
//! Stored form of a sealed value: `PBXSEAL1` (8 bytes) ‖ key ID (8) ‖ nonce
//! (12, random) ‖ ciphertext ‖ tag (16) — AES-256-GCM as NIST SP 800-38D
//! defines it, through ring's AEAD API (`ring::aead::LessSafeKey` with
//! `AES_256_GCM`, `seal_in_place_append_tag` / `open_in_place`). The
//! additional authenticated data is the tree's name, `/` and the key, so a
//! value copied under another key or into another tree does not open.
//!
//! What must hold:
//! - every value put into `Tree::Keys` or `Tree::Settings` through the
//!   wrapper is sealed when a key is given; other trees pass through as
//!   they are (certificates, chains and roots are public; leases must stay
//!   readable by etcd's lease calls);
//! - a value without the magic reads as it is (stores made before keep
//!   working; `store rekey` seals them); a sealed value whose key ID is not
//!   in the key file, or any sealed value when none was given, is
//!   `StoreError::KeyMissing` (`store-key-missing`, naming the ID); one
//!   that fails to open is `StoreError::UnsealFailed`; a bad key file is
//!   `StoreError::KeyFile`. No message carries key material;
//! - nonces are 96 random bits from the system's generator (SP 800-38D
//!   §8.2.2): a store writes far fewer than the 2^32 values per key that
//!   §8.3 allows with random nonces;
//! - the wrapper forwards every `Kv` method to the backend explicitly, the
//!   provided ones too (etcd overrides the lease calls with etcd leases; a
//!   default here would turn them back into compare-and-swap loops).
//!   `compare_and_swap` on a sealed tree compares the unsealed current
//!   value with `expected`, then swaps the stored bytes it read;
//! - `watch_prefix` unseals the values it reports; `watch_all` (a cluster
//!   node's wake-ups, keys `TREE/KEY`) reports them as stored.
//!
//! A plaintext value that begins with the 8 bytes `PBXSEAL1` would be taken
//! for a sealed one: no record of ours does (keys begin with a format tag
//! byte, settings are JSON, text or a big-endian counter).

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use crate::limits::{MAX_SEAL_KEYS, SEAL_KEY_BYTES, SEAL_KEY_ID_BYTES};
use crate::store::{Cas, Change, Entry, Kv, Op, StoreError, Tree, Watch};

/// The first bytes of every sealed value (format 1).
pub const MAGIC: &[u8; 8] = b"PBXSEAL1";

/// The trees whose values are sealed.
pub const SEALED_TREES: [Tree; 2] = [Tree::Keys, Tree::Settings];

/// The environment variable naming the key file (`--store-key-file`).
pub const KEY_FILE_ENV: &str = "PBX_CERTD_STORE_KEY_FILE";

/// Whether `tree`'s values are sealed.
pub fn sealed_tree(tree: Tree) -> bool {
    SEALED_TREES.contains(&tree)
}

/// A key's ID: the first `SEAL_KEY_ID_BYTES` of its SHA-256.
fn key_id(key: &[u8]) -> [u8; SEAL_KEY_ID_BYTES] {
    let digest = ring::digest::digest(&ring::digest::SHA256, key);
    let mut id = [0u8; SEAL_KEY_ID_BYTES];
    id.copy_from_slice(digest.as_ref().get(..SEAL_KEY_ID_BYTES).unwrap_or(&[0; 8]));
    id
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One key of the key file.
struct SealKey {
    id: [u8; SEAL_KEY_ID_BYTES],
    key: LessSafeKey,
}

/// The keys of a key file, the sealing one first; empty when no key file
/// was given (then nothing is sealed, and a sealed value is refused).
#[derive(Default)]
pub struct KeyRing {
    keys: Vec<SealKey>,
}

/// Key IDs only: never the keys.
impl core::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("KeyRing").field("ids", &self.ids()).finish()
    }
}

impl KeyRing {
    /// The keys of `--store-key-file` (`None`: no key file, an empty
    /// ring). The one parser of the setting, whether it came from the
    /// flag, the environment or a config file.
    pub fn load(path: Option<&Path>) -> Result<KeyRing, StoreError> {
        let Some(path) = path else {
            return Ok(KeyRing::default());
        };
        let bad = |why: String| StoreError::KeyFile(format!("{}: {why}", path.display()));
        let file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
        let mut bytes = Vec::new();
        let bound = MAX_SEAL_KEYS
            .saturating_mul(SEAL_KEY_BYTES)
            .saturating_add(1);
        file.take(u64::try_from(bound).unwrap_or(u64::MAX))
            .read_to_end(&mut bytes)
            .map_err(|e| bad(e.to_string()))?;
        let ring = KeyRing::from_bytes(&bytes).map_err(bad);
        bytes.fill(0);
        ring
    }

    /// The keys of a key file's bytes: 32·n bytes, 1 ≤ n ≤ `MAX_SEAL_KEYS`.
    pub fn from_bytes(bytes: &[u8]) -> Result<KeyRing, String> {
        let n = bytes.len();
        if n == 0 || n % SEAL_KEY_BYTES != 0 {
            return Err(format!(
                "holds {n} bytes; a key file is one or more {SEAL_KEY_BYTES}-byte keys \
                 concatenated, nothing else (no newline, no hex): \
                 `pbx-certd store keygen --out FILE` makes one"
            ));
        }
        if n > MAX_SEAL_KEYS * SEAL_KEY_BYTES {
            return Err(format!("holds more than {MAX_SEAL_KEYS} keys"));
        }
        let keys = bytes
            .chunks(SEAL_KEY_BYTES)
            .map(|k| {
                UnboundKey::new(&AES_256_GCM, k)
                    .map(|key| SealKey {
                        id: key_id(k),
                        key: LessSafeKey::new(key),
                    })
                    .map_err(|_| "ring refused an AES-256 key".to_owned())
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(KeyRing { keys })
    }

    /// The key IDs, the sealing one first.
    pub fn ids(&self) -> Vec<String> {
        self.keys.iter().map(|k| hex(&k.id)).collect()
    }

    /// The sealing key's ID; `None` without keys.
    pub fn sealing_id(&self) -> Option<String> {
        self.keys.first().map(|k| hex(&k.id))
    }

    fn aad(tree: Tree, key: &[u8]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(tree.name().len() + 1 + key.len());
        aad.extend_from_slice(tree.name().as_bytes());
        aad.push(b'/');
        aad.extend_from_slice(key);
        aad
    }

    /// `plain` as stored under `tree`/`key`: sealed with the first key, or
    /// as it is without keys or outside the sealed trees.
    pub fn seal(
        &self,
        rng: &dyn SecureRandom,
        tree: Tree,
        key: &[u8],
        plain: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        let Some(k) = self.keys.first().filter(|_| sealed_tree(tree)) else {
            return Ok(plain.to_vec());
        };
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill(&mut nonce)
            .map_err(|_| StoreError::Backend("the system random generator failed".into()))?;
        let mut body = plain.to_vec();
        k.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(KeyRing::aad(tree, key)),
                &mut body,
            )
            .map_err(|_| StoreError::Backend("AES-256-GCM refused to seal a value".into()))?;
        let mut out = Vec::with_capacity(MAGIC.len() + k.id.len() + NONCE_LEN + body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&k.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// The plain value of `stored` under `tree`/`key`: unsealed when it
    /// carries the magic, else as it is.
    pub fn open(&self, tree: Tree, key: &[u8], stored: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        let Some(rest) = stored.strip_prefix(MAGIC.as_slice()) else {
            return Ok(stored);
        };
        let what = || format!("{}/{}", tree.name(), String::from_utf8_lossy(key));
        let (id, rest) = rest
            .split_first_chunk::<SEAL_KEY_ID_BYTES>()
            .ok_or_else(|| StoreError::UnsealFailed(format!("{}: cut short", what())))?;
        let (nonce, sealed) = rest
            .split_first_chunk::<NONCE_LEN>()
            .ok_or_else(|| StoreError::UnsealFailed(format!("{}: cut short", what())))?;
        let k = self
            .keys
            .iter()
            .find(|k| &k.id == id)
            .ok_or_else(|| StoreError::KeyMissing {
                id: hex(id),
                held: self.ids(),
            })?;
        let mut body = sealed.to_vec();
        let len = k
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(KeyRing::aad(tree, key)),
                &mut body,
            )
            .map_err(|_| {
                StoreError::UnsealFailed(format!(
                    "{} (key {}): altered, or moved from another key",
                    what(),
                    hex(id)
                ))
            })?
            .len();
        body.truncate(len);
        Ok(body)
    }
}

/// A `Kv` backend whose secret trees are sealed with a `KeyRing`.
pub struct SealedKv {
    inner: Box<dyn Kv>,
    ring: Arc<KeyRing>,
    rng: SystemRandom,
}

impl SealedKv {
    /// `inner` sealed with `ring` (an empty ring seals nothing but still
    /// refuses sealed values by name).
    pub fn new(inner: Box<dyn Kv>, ring: Arc<KeyRing>) -> SealedKv {
        SealedKv {
            inner,
            ring,
            rng: SystemRandom::new(),
        }
    }

    fn seal(&self, tree: Tree, key: &[u8], plain: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.ring.seal(&self.rng, tree, key, plain)
    }

    fn open(&self, tree: Tree, key: &[u8], stored: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        match sealed_tree(tree) {
            true => self.ring.open(tree, key, stored),
            false => Ok(stored),
        }
    }
}

impl Kv for SealedKv {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner
            .get(tree, key)?
            .map(|v| self.open(tree, key, v))
            .transpose()
    }

    fn scan_prefix(&self, tree: Tree, prefix: &[u8]) -> Result<Vec<Entry>, StoreError> {
        self.inner
            .scan_prefix(tree, prefix)?
            .into_iter()
            .map(|(k, v)| {
                let v = self.open(tree, &k, v)?;
                Ok((k, v))
            })
            .collect()
    }

    fn apply(&self, ops: &[Op]) -> Result<(), StoreError> {
        let sealed = ops
            .iter()
            .map(|op| match op {
                Op::Put(tree, k, v) => Ok(Op::Put(*tree, k.clone(), self.seal(*tree, k, v)?)),
                Op::Delete(..) => Ok(op.clone()),
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.inner.apply(&sealed)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush()
    }

    fn compare_and_swap(
        &self,
        tree: Tree,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<Cas, StoreError> {
        if !sealed_tree(tree) {
            return self.inner.compare_and_swap(tree, key, expected, new);
        }
        // Sealing is randomised: compare what the value says, swap the
        // bytes that say it.
        let stored = self.inner.get(tree, key)?;
        let current = stored
            .clone()
            .map(|v| self.open(tree, key, v))
            .transpose()?;
        if current.as_deref() != expected {
            return Ok(Cas::Conflict(current));
        }
        let new = new.map(|v| self.seal(tree, key, v)).transpose()?;
        match self
            .inner
            .compare_and_swap(tree, key, stored.as_deref(), new.as_deref())?
        {
            Cas::Swapped => Ok(Cas::Swapped),
            Cas::Conflict(now) => Ok(Cas::Conflict(
                now.map(|v| self.open(tree, key, v)).transpose()?,
            )),
        }
    }

    fn watch_prefix(&self, tree: Tree, prefix: &[u8]) -> Result<Box<dyn Watch>, StoreError> {
        let inner = self.inner.watch_prefix(tree, prefix)?;
        match sealed_tree(tree) {
            true => Ok(Box::new(SealedWatch {
                inner,
                tree,
                ring: self.ring.clone(),
            })),
            false => Ok(inner),
        }
    }

    fn watch_all(&self) -> Result<Option<Box<dyn Watch>>, StoreError> {
        self.inner.watch_all()
    }

    fn max_batch_ops(&self) -> Option<usize> {
        self.inner.max_batch_ops()
    }

    fn location(&self) -> String {
        self.inner.location()
    }

    fn shared(&self) -> bool {
        self.inner.shared()
    }

    fn revision(&self) -> Result<Option<u64>, StoreError> {
        self.inner.revision()
    }

    fn sealing(&self) -> Option<String> {
        self.ring.sealing_id()
    }

    fn seal_alike(&self, backend: Box<dyn Kv>) -> Box<dyn Kv> {
        Box::new(SealedKv::new(backend, self.ring.clone()))
    }

    fn seal_value(
        &self,
        tree: Tree,
        key: &[u8],
        plain: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        match self.ring.sealing_id() {
            Some(_) => self.seal(tree, key, plain).map(Some),
            None => Ok(None),
        }
    }

    fn open_value(&self, tree: Tree, key: &[u8], stored: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        self.open(tree, key, stored)
    }

    fn put(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.inner.put(tree, key, &self.seal(tree, key, value)?)
    }

    fn delete(&self, tree: Tree, key: &[u8]) -> Result<(), StoreError> {
        self.inner.delete(tree, key)
    }

    fn lease_acquire(&self, name: &[u8], holder: &[u8], ttl: Duration) -> Result<bool, StoreError> {
        self.inner.lease_acquire(name, holder, ttl)
    }

    fn lease_keep_alive(
        &self,
        name: &[u8],
        holder: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.inner.lease_keep_alive(name, holder, ttl)
    }

    fn lease_release(&self, name: &[u8], holder: &[u8]) -> Result<(), StoreError> {
        self.inner.lease_release(name, holder)
    }

    fn lease_holder(&self, name: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.lease_holder(name)
    }
}

/// A watch of a sealed tree reporting plain values.
struct SealedWatch {
    inner: Box<dyn Watch>,
    tree: Tree,
    ring: Arc<KeyRing>,
}

impl Watch for SealedWatch {
    fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Change>, StoreError> {
        match self.inner.next_timeout(timeout)? {
            Some(Change::Put(k, v)) => {
                let v = self.ring.open(self.tree, &k, v)?;
                Ok(Some(Change::Put(k, v)))
            }
            other => Ok(other),
        }
    }
}

/// `store keygen --json`: the file written and its key's ID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyMade {
    /// The key file.
    pub file: String,
    /// Its key's ID (16 hex digits).
    pub key_id: String,
}

/// `store keygen --out FILE`: 32 random bytes from the system's generator
/// into a new file of mode 0600; an existing file is never overwritten.
pub fn keygen(path: &Path) -> Result<KeyMade, StoreError> {
    let bad = |why: String| StoreError::KeyFile(format!("{}: {why}", path.display()));
    let mut key = [0u8; SEAL_KEY_BYTES];
    SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| bad("the system random generator failed".into()))?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                bad("exists; keygen never overwrites a key file".into())
            }
            _ => bad(e.to_string()),
        })?;
    let written = file.write_all(&key).and_then(|()| file.sync_all());
    let id = hex(&key_id(&key));
    key.fill(0);
    if let Err(e) = written {
        let _ = std::fs::remove_file(path);
        return Err(bad(e.to_string()));
    }
    Ok(KeyMade {
        file: path.display().to_string(),
        key_id: id,
    })
}

/// `store rekey --json`: the sealing key and how many values it sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rekeyed {
    /// The key every value of the sealed trees is sealed with now.
    pub key_id: String,
    /// Values written again (every value of `SEALED_TREES`).
    pub resealed: u64,
}

/// `store rekey`: every value of the sealed trees read (unsealed with
/// whichever key of the file sealed it, or plaintext) and written again,
/// so sealed with the first key; in batches of the backend's
/// `max_batch_ops` (etcd's transaction limit).
pub fn rekey(kv: &dyn Kv) -> Result<Rekeyed, StoreError> {
    let key_id = kv.sealing().ok_or_else(|| {
        StoreError::KeyFile(
            "`store rekey` needs --store-key-file FILE (its first key seals)".into(),
        )
    })?;
    let mut ops = Vec::new();
    for tree in SEALED_TREES {
        ops.extend(
            kv.scan_prefix(tree, b"")?
                .into_iter()
                .map(|(k, v)| Op::Put(tree, k, v)),
        );
    }
    let batch = kv.max_batch_ops().unwrap_or(ops.len()).max(1);
    for chunk in ops.chunks(batch) {
        kv.apply(chunk)?;
    }
    Ok(Rekeyed {
        key_id,
        resealed: u64::try_from(ops.len()).unwrap_or(u64::MAX),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemKv;

    fn ring(keys: &[[u8; 32]]) -> Arc<KeyRing> {
        Arc::new(KeyRing::from_bytes(&keys.concat()).unwrap())
    }

    /// A sealed store over a shared in-memory backend, to look at what is
    /// stored.
    fn sealed(keys: &[[u8; 32]]) -> (SealedKv, Arc<MemKv>) {
        let mem = Arc::new(MemKv::new());
        (SealedKv::new(Box::new(mem.clone()), ring(keys)), mem)
    }

    const A: [u8; 32] = [1; 32];
    const B: [u8; 32] = [2; 32];

    #[test]
    fn secret_trees_are_sealed_other_trees_pass_through() {
        let (kv, raw) = sealed(&[A]);
        kv.apply(&[
            Op::Put(Tree::Keys, b"k1".to_vec(), b"secret key".to_vec()),
            Op::Put(Tree::Certs, b"c1".to_vec(), b"public".to_vec()),
        ])
        .unwrap();
        kv.put(Tree::Settings, b"dns:x", b"token").unwrap();
        let stored = raw.get(Tree::Keys, b"k1").unwrap().unwrap();
        assert!(stored.starts_with(MAGIC), "{stored:?}");
        assert_eq!(&stored[8..16], &key_id(&A));
        assert_eq!(stored.len(), 8 + 8 + 12 + b"secret key".len() + 16);
        assert!(!stored.windows(6).any(|w| w == b"secret"));
        let setting = raw.get(Tree::Settings, b"dns:x").unwrap().unwrap();
        assert!(setting.starts_with(MAGIC));
        assert_eq!(raw.get(Tree::Certs, b"c1").unwrap().unwrap(), b"public");
        // Read back plain, by get, scan and a watch.
        assert_eq!(kv.get(Tree::Keys, b"k1").unwrap().unwrap(), b"secret key");
        assert_eq!(
            kv.scan_prefix(Tree::Settings, b"").unwrap(),
            vec![(b"dns:x".to_vec(), b"token".to_vec())]
        );
        let mut w = kv.watch_prefix(Tree::Keys, b"").unwrap();
        kv.put(Tree::Keys, b"k2", b"two").unwrap();
        assert_eq!(
            w.next_timeout(Duration::from_secs(1)).unwrap(),
            Some(Change::Put(b"k2".to_vec(), b"two".to_vec()))
        );
        // Two seals of one value differ (random nonces).
        kv.put(Tree::Keys, b"k3", b"secret key").unwrap();
        assert_ne!(raw.get(Tree::Keys, b"k3").unwrap().unwrap(), stored);
        assert_eq!(kv.sealing(), Some(hex(&key_id(&A))));
    }

    #[test]
    fn plaintext_values_read_as_they_are_and_an_empty_ring_refuses_sealed_ones() {
        let mem = Arc::new(MemKv::new());
        mem.put(Tree::Keys, b"old", b"plain").unwrap();
        let none = SealedKv::new(Box::new(mem.clone()), Arc::new(KeyRing::default()));
        assert_eq!(none.sealing(), None);
        assert_eq!(none.get(Tree::Keys, b"old").unwrap().unwrap(), b"plain");
        // Without keys nothing is sealed.
        none.put(Tree::Keys, b"new", b"plain too").unwrap();
        assert_eq!(mem.get(Tree::Keys, b"new").unwrap().unwrap(), b"plain too");
        let with = SealedKv::new(Box::new(mem.clone()), ring(&[A]));
        assert_eq!(with.get(Tree::Keys, b"old").unwrap().unwrap(), b"plain");
        with.put(Tree::Keys, b"sealed", b"x").unwrap();
        match none.get(Tree::Keys, b"sealed") {
            Err(e @ StoreError::KeyMissing { .. }) => {
                assert_eq!(e.code(), "store-key-missing");
                assert!(e.to_string().contains(&hex(&key_id(&A))), "{e}");
                assert!(e.to_string().contains("--store-key-file"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        // Another key: missing too, naming both IDs.
        let other = SealedKv::new(Box::new(mem.clone()), ring(&[B]));
        let e = other.scan_prefix(Tree::Keys, b"").unwrap_err();
        assert_eq!(e.code(), "store-key-missing");
        let text = e.to_string();
        assert!(
            text.contains(&hex(&key_id(&A))) && text.contains(&hex(&key_id(&B))),
            "{text}"
        );
    }

    #[test]
    fn a_value_moved_or_altered_does_not_open() {
        let (kv, raw) = sealed(&[A]);
        kv.put(Tree::Keys, b"k1", b"secret").unwrap();
        let stored = raw.get(Tree::Keys, b"k1").unwrap().unwrap();
        // Moved to another key, or another tree.
        raw.put(Tree::Keys, b"k2", &stored).unwrap();
        raw.put(Tree::Settings, b"k1", &stored).unwrap();
        for (tree, key) in [(Tree::Keys, b"k2"), (Tree::Settings, b"k1")] {
            let e = kv.get(tree, key).unwrap_err();
            assert_eq!(e.code(), "store-unseal-failed", "{e}");
        }
        // One bit flipped anywhere after the magic and ID.
        for at in [16, 20, stored.len() - 1] {
            let mut bad = stored.clone();
            bad[at] ^= 1;
            raw.put(Tree::Keys, b"k1", &bad).unwrap();
            assert_eq!(
                kv.get(Tree::Keys, b"k1").unwrap_err().code(),
                "store-unseal-failed"
            );
        }
        raw.put(Tree::Keys, b"k1", &stored[..20]).unwrap();
        assert_eq!(
            kv.get(Tree::Keys, b"k1").unwrap_err().code(),
            "store-unseal-failed"
        );
        // Control: the stored bytes put back open again.
        raw.put(Tree::Keys, b"k1", &stored).unwrap();
        assert_eq!(kv.get(Tree::Keys, b"k1").unwrap().unwrap(), b"secret");
    }

    #[test]
    fn compare_and_swap_compares_plain_values() {
        let (kv, raw) = sealed(&[A]);
        assert_eq!(
            kv.compare_and_swap(Tree::Settings, b"s", None, Some(b"v1"))
                .unwrap(),
            Cas::Swapped
        );
        assert!(raw
            .get(Tree::Settings, b"s")
            .unwrap()
            .unwrap()
            .starts_with(MAGIC));
        assert_eq!(
            kv.compare_and_swap(Tree::Settings, b"s", Some(b"v0"), Some(b"v2"))
                .unwrap(),
            Cas::Conflict(Some(b"v1".to_vec()))
        );
        assert_eq!(
            kv.compare_and_swap(Tree::Settings, b"s", Some(b"v1"), Some(b"v2"))
                .unwrap(),
            Cas::Swapped
        );
        assert_eq!(kv.get(Tree::Settings, b"s").unwrap().unwrap(), b"v2");
        assert_eq!(
            kv.compare_and_swap(Tree::Settings, b"s", Some(b"v2"), None)
                .unwrap(),
            Cas::Swapped
        );
        assert_eq!(kv.get(Tree::Settings, b"s").unwrap(), None);
    }

    #[test]
    fn rotation_reseals_with_the_first_key() {
        let mem = Arc::new(MemKv::new());
        mem.put(Tree::Settings, b"plain", b"p").unwrap();
        SealedKv::new(Box::new(mem.clone()), ring(&[A]))
            .put(Tree::Keys, b"k", b"under A")
            .unwrap();
        let both = SealedKv::new(Box::new(mem.clone()), ring(&[B, A]));
        let r = rekey(&both).unwrap();
        assert_eq!(r.key_id, hex(&key_id(&B)));
        assert_eq!(r.resealed, 2);
        for (tree, key) in [(Tree::Keys, &b"k"[..]), (Tree::Settings, b"plain")] {
            let raw = mem.get(tree, key).unwrap().unwrap();
            assert_eq!(&raw[..16], [&MAGIC[..], &key_id(&B)].concat());
        }
        let new_only = SealedKv::new(Box::new(mem.clone()), ring(&[B]));
        assert_eq!(new_only.get(Tree::Keys, b"k").unwrap().unwrap(), b"under A");
        let old_only = SealedKv::new(Box::new(mem.clone()), ring(&[A]));
        assert_eq!(
            old_only.get(Tree::Keys, b"k").unwrap_err().code(),
            "store-key-missing"
        );
        // Without a key file there is nothing to seal with.
        let none = SealedKv::new(Box::new(mem), Arc::new(KeyRing::default()));
        assert_eq!(rekey(&none).unwrap_err().code(), "store-key-file");
    }

    #[test]
    fn a_rekey_is_written_in_batches_of_the_backends_limit() {
        /// A backend taking at most 3 operations per `apply`.
        struct Small(MemKv);
        impl Kv for Small {
            fn get(&self, t: Tree, k: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
                self.0.get(t, k)
            }
            fn scan_prefix(&self, t: Tree, p: &[u8]) -> Result<Vec<Entry>, StoreError> {
                self.0.scan_prefix(t, p)
            }
            fn apply(&self, ops: &[Op]) -> Result<(), StoreError> {
                match ops.len() <= 3 {
                    true => self.0.apply(ops),
                    false => Err(StoreError::Backend("too many operations".into())),
                }
            }
            fn flush(&self) -> Result<(), StoreError> {
                Ok(())
            }
            fn compare_and_swap(
                &self,
                t: Tree,
                k: &[u8],
                e: Option<&[u8]>,
                n: Option<&[u8]>,
            ) -> Result<Cas, StoreError> {
                self.0.compare_and_swap(t, k, e, n)
            }
            fn watch_prefix(&self, t: Tree, p: &[u8]) -> Result<Box<dyn Watch>, StoreError> {
                self.0.watch_prefix(t, p)
            }
            fn max_batch_ops(&self) -> Option<usize> {
                Some(3)
            }
        }
        let small = Small(MemKv::new());
        for i in 0..10u8 {
            small.0.put(Tree::Settings, &[i], b"v").unwrap();
        }
        let kv = SealedKv::new(Box::new(small), ring(&[A]));
        assert_eq!(rekey(&kv).unwrap().resealed, 10);
        assert_eq!(kv.scan_prefix(Tree::Settings, b"").unwrap().len(), 10);
    }

    #[test]
    fn key_files_of_32_n_bytes_only() {
        for n in [0, 31, 33, 64 + 1] {
            let e = KeyRing::from_bytes(&vec![7u8; n]).unwrap_err();
            assert!(e.contains(&format!("holds {n} bytes")), "{e}");
        }
        let too_many = vec![7u8; (MAX_SEAL_KEYS + 1) * 32];
        assert!(KeyRing::from_bytes(&too_many).is_err());
        let two = KeyRing::from_bytes(&[A, B].concat()).unwrap();
        assert_eq!(two.ids(), vec![hex(&key_id(&A)), hex(&key_id(&B))]);
        assert_eq!(two.sealing_id().unwrap().len(), 16);
        // Debug shows IDs, never key bytes.
        let shown = format!("{two:?}");
        assert!(shown.contains(&hex(&key_id(&A))) && !shown.contains("1, 1, 1"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, [0u8; 31]).unwrap();
        let e = KeyRing::load(Some(&path)).unwrap_err();
        assert_eq!(e.code(), "store-key-file");
        assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        assert_eq!(
            KeyRing::load(Some(&dir.path().join("none")))
                .unwrap_err()
                .code(),
            "store-key-file"
        );
        assert!(KeyRing::load(None).unwrap().ids().is_empty());
    }

    #[test]
    fn keygen_writes_a_new_0600_file_once() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.key");
        let made = keygen(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 32);
        assert_eq!(made.key_id, hex(&key_id(&bytes)));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(keygen(&path).unwrap_err().code(), "store-key-file");
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "not overwritten");
        assert_ne!(
            keygen(&dir.path().join("other")).unwrap().key_id,
            made.key_id
        );
    }

    /// A backend that overrides every provided `Kv` method and records
    /// which of its methods ran.
    #[derive(Default)]
    struct Spy {
        calls: std::sync::Mutex<Vec<&'static str>>,
        mem: MemKv,
    }

    impl Spy {
        fn saw(&self, name: &'static str) {
            self.calls.lock().unwrap().push(name);
        }
    }

    impl Kv for Spy {
        fn get(&self, t: Tree, k: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            self.saw("get");
            self.mem.get(t, k)
        }
        fn scan_prefix(&self, t: Tree, p: &[u8]) -> Result<Vec<Entry>, StoreError> {
            self.saw("scan_prefix");
            self.mem.scan_prefix(t, p)
        }
        fn apply(&self, ops: &[Op]) -> Result<(), StoreError> {
            self.saw("apply");
            self.mem.apply(ops)
        }
        fn flush(&self) -> Result<(), StoreError> {
            self.saw("flush");
            Ok(())
        }
        fn compare_and_swap(
            &self,
            t: Tree,
            k: &[u8],
            e: Option<&[u8]>,
            n: Option<&[u8]>,
        ) -> Result<Cas, StoreError> {
            self.saw("compare_and_swap");
            self.mem.compare_and_swap(t, k, e, n)
        }
        fn watch_prefix(&self, t: Tree, p: &[u8]) -> Result<Box<dyn Watch>, StoreError> {
            self.saw("watch_prefix");
            self.mem.watch_prefix(t, p)
        }
        fn watch_all(&self) -> Result<Option<Box<dyn Watch>>, StoreError> {
            self.saw("watch_all");
            Ok(None)
        }
        fn max_batch_ops(&self) -> Option<usize> {
            self.saw("max_batch_ops");
            Some(7)
        }
        fn location(&self) -> String {
            self.saw("location");
            "spy".into()
        }
        fn shared(&self) -> bool {
            self.saw("shared");
            true
        }
        fn revision(&self) -> Result<Option<u64>, StoreError> {
            self.saw("revision");
            Ok(Some(9))
        }
        fn put(&self, t: Tree, k: &[u8], v: &[u8]) -> Result<(), StoreError> {
            self.saw("put");
            self.mem.put(t, k, v)
        }
        fn delete(&self, t: Tree, k: &[u8]) -> Result<(), StoreError> {
            self.saw("delete");
            self.mem.delete(t, k)
        }
        fn lease_acquire(&self, _: &[u8], _: &[u8], _: Duration) -> Result<bool, StoreError> {
            self.saw("lease_acquire");
            Ok(true)
        }
        fn lease_keep_alive(&self, _: &[u8], _: &[u8], _: Duration) -> Result<bool, StoreError> {
            self.saw("lease_keep_alive");
            Ok(true)
        }
        fn lease_release(&self, _: &[u8], _: &[u8]) -> Result<(), StoreError> {
            self.saw("lease_release");
            Ok(())
        }
        fn lease_holder(&self, _: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            self.saw("lease_holder");
            Ok(Some(b"spy".to_vec()))
        }
    }

    /// Calls every `Kv` method once on `kv` (results ignored: which
    /// backend method ran is what counts).
    fn call_everything(kv: &dyn Kv) {
        let ttl = Duration::from_secs(5);
        let _ = kv.get(Tree::Roots, b"r");
        let _ = kv.scan_prefix(Tree::Roots, b"");
        let _ = kv.apply(&[]);
        let _ = kv.flush();
        let _ = kv.compare_and_swap(Tree::Roots, b"r", None, Some(b"x"));
        let _ = kv.watch_prefix(Tree::Roots, b"");
        let _ = kv.watch_all();
        let _ = kv.max_batch_ops();
        let _ = kv.location();
        let _ = kv.shared();
        let _ = kv.revision();
        let _ = kv.put(Tree::Roots, b"r", b"y");
        let _ = kv.delete(Tree::Roots, b"r");
        let _ = kv.lease_acquire(b"l", b"h", ttl);
        let _ = kv.lease_keep_alive(b"l", b"h", ttl);
        let _ = kv.lease_release(b"l", b"h");
        let _ = kv.lease_holder(b"l");
    }

    const EVERY_METHOD: [&str; 17] = [
        "get",
        "scan_prefix",
        "apply",
        "flush",
        "compare_and_swap",
        "watch_prefix",
        "watch_all",
        "max_batch_ops",
        "location",
        "shared",
        "revision",
        "put",
        "delete",
        "lease_acquire",
        "lease_keep_alive",
        "lease_release",
        "lease_holder",
    ];

    #[test]
    fn the_wrapper_forwards_every_method_to_the_backend() {
        let spy = Arc::new(Spy::default());
        call_everything(&SealedKv::new(Box::new(spy.clone()), ring(&[A])));
        let calls = spy.calls.lock().unwrap().clone();
        for m in EVERY_METHOD {
            assert!(
                calls.contains(&m),
                "{m} did not reach the backend: {calls:?}"
            );
        }
        // Control: a wrapper relying on the provided methods (no
        // overrides) misses the backend's lease calls.
        struct Lazy(Arc<Spy>);
        impl Kv for Lazy {
            fn get(&self, t: Tree, k: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
                self.0.get(t, k)
            }
            fn scan_prefix(&self, t: Tree, p: &[u8]) -> Result<Vec<Entry>, StoreError> {
                self.0.scan_prefix(t, p)
            }
            fn apply(&self, ops: &[Op]) -> Result<(), StoreError> {
                self.0.apply(ops)
            }
            fn flush(&self) -> Result<(), StoreError> {
                self.0.flush()
            }
            fn compare_and_swap(
                &self,
                t: Tree,
                k: &[u8],
                e: Option<&[u8]>,
                n: Option<&[u8]>,
            ) -> Result<Cas, StoreError> {
                self.0.compare_and_swap(t, k, e, n)
            }
            fn watch_prefix(&self, t: Tree, p: &[u8]) -> Result<Box<dyn Watch>, StoreError> {
                self.0.watch_prefix(t, p)
            }
        }
        let spy = Arc::new(Spy::default());
        call_everything(&Lazy(spy.clone()));
        let calls = spy.calls.lock().unwrap().clone();
        let missed: Vec<&str> = EVERY_METHOD
            .into_iter()
            .filter(|m| !calls.contains(m))
            .collect();
        assert!(missed.contains(&"lease_acquire"), "{missed:?}");
        assert!(missed.contains(&"max_batch_ops"), "{missed:?}");
    }
}
