//! Backup, restore and copy of a whole store (issue 16): one versioned file
//! with every certificate, chain, key, root, tenant and setting, and the same
//! contents moved between stores (sled ↔ etcd).
//!
//! Why: an appliance dies, a PBX moves to a cluster, an admin wants
//! yesterday's store back. The file is the store's own entries (tree, key,
//! value), so nothing is lost in a translation and a restore gives back
//! exactly what `certs`, `roots`, `tenant list` and `resolve` answered.
//!
//! Format (`limits::BACKUP_FORMAT_VERSION` 1): one JSON object
//! `{"format":"pbx-certd-backup","version":1,"created":RFC3339,
//! "trees":{"certs":[[KEY,VALUE],...],...}}`, keys and values in standard
//! Base64 (RFC 4648 §4). Leases are not in it: they say which node orders
//! now, which is no fact of the restored store.
//!
//! What must hold: the file holds private keys, so it is written mode 0600,
//! to a temporary name renamed into place (never a half-written backup
//! under the given name); a file is decoded and judged whole before anything
//! is written (`decode`, then the caller reads it as a store), so a damaged
//! or hostile file is refused with a named error and the target stays as it
//! was; a restore into a store holding certificates, keys or tenants is
//! refused unless asked to replace them. On sled a restore is one
//! transaction; on etcd it is batches of `limits::ETCD_MAX_TXN_OPS` (a
//! restore cut short there is repeated with `--replace`).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;

use base64ct::{Base64, Encoding};
use serde::{Deserialize, Serialize};

use crate::error::BackupError;
use crate::limits::{BACKUP_FORMAT_VERSION, MAX_BACKUP_BYTES};
use crate::store::{Entry, Kv, MemKv, Op, Store, StoreError, Tree};

/// The `format` word of a backup file.
pub const FORMAT: &str = "pbx-certd-backup";

/// The trees a backup holds: the lasting ones (`Tree::lasting`).
pub fn trees() -> impl Iterator<Item = Tree> {
    Tree::ALL.into_iter().filter(|t| t.lasting())
}

/// Trees whose entries make a store "not empty" for `restore`: what an
/// admin or ACME put there (a fresh store has only the bundled roots and
/// settings).
const CONTENT_TREES: [Tree; 3] = [Tree::Certs, Tree::Keys, Tree::Tenants];

/// A store's contents, as read for a backup or decoded from one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contents {
    /// When the contents were read (RFC 3339, UTC).
    pub created: String,
    /// Every entry of each tree of `trees()`, in key order.
    pub trees: Vec<(Tree, Vec<Entry>)>,
    /// The store key ID whose seal the values of the sealed trees carry
    /// (`backup --sealed`); `None`: every value is plain.
    pub sealed: Option<String>,
}

/// What `backup`, `restore` and `store copy` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    /// The backup file written or read, or the store copied to.
    pub location: String,
    /// When the contents were read from their store (RFC 3339).
    pub created: String,
    /// Entries per tree.
    pub entries: BTreeMap<String, usize>,
    /// Bytes of the backup file (0 for a copy).
    pub bytes: u64,
    /// The target held certificates, keys or tenants that were replaced.
    pub replaced: bool,
    /// The store key ID sealing the file's keys and secrets (`backup
    /// --sealed`, or a sealed file restored); `None`: a plain file.
    pub sealed: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileForm {
    format: String,
    version: u32,
    created: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sealed: Option<String>,
    trees: BTreeMap<String, Vec<(String, String)>>,
}

/// Read every tree of `trees()` from `store`.
pub fn read_all(store: &Store) -> Result<Contents, StoreError> {
    let mut out = Vec::new();
    for tree in trees() {
        out.push((tree, store.kv().scan_prefix(tree, b"")?));
    }
    Ok(Contents {
        created: crate::clock::rfc3339(crate::clock::now()),
        trees: out,
        sealed: None,
    })
}

/// The file form of `contents`.
pub fn encode(contents: &Contents) -> Vec<u8> {
    let trees = contents
        .trees
        .iter()
        .map(|(tree, entries)| {
            let pairs = entries
                .iter()
                .map(|(k, v)| (Base64::encode_string(k), Base64::encode_string(v)))
                .collect();
            (tree.name().to_owned(), pairs)
        })
        .collect();
    let form = FileForm {
        format: FORMAT.to_owned(),
        version: BACKUP_FORMAT_VERSION,
        created: contents.created.clone(),
        sealed: contents.sealed.clone(),
        trees,
    };
    serde_json::to_vec(&form).unwrap_or_default()
}

/// Decode a backup file: its format word and version, every tree name and
/// every Base64 key and value (the records themselves are judged by reading
/// them as a store, `mem_store`).
pub fn decode(bytes: &[u8]) -> Result<Contents, BackupError> {
    let bad = |why: String| BackupError::BadBackup(why);
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("not JSON ({e})")))?;
    if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
        return Err(bad(format!("no \"format\":\"{FORMAT}\"")));
    }
    match value.get("version").and_then(|v| v.as_u64()) {
        Some(v) if v > u64::from(BACKUP_FORMAT_VERSION) => {
            return Err(BackupError::NewerFormat(
                u32::try_from(v).unwrap_or(u32::MAX),
            ))
        }
        Some(v) if v == u64::from(BACKUP_FORMAT_VERSION) => {}
        _ => return Err(bad("no known format version".into())),
    }
    let form: FileForm = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
    if crate::clock::parse_rfc3339(&form.created).is_none() {
        return Err(bad(format!(
            "\"created\" is not a time: {:?}",
            form.created
        )));
    }
    let mut out = Vec::new();
    for tree in trees() {
        let pairs = form
            .trees
            .get(tree.name())
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let mut entries = Vec::with_capacity(pairs.len());
        for (k, v) in pairs {
            let key = Base64::decode_vec(k)
                .map_err(|_| bad(format!("a key of tree {} is not Base64", tree.name())))?;
            let value = Base64::decode_vec(v)
                .map_err(|_| bad(format!("a value of tree {} is not Base64", tree.name())))?;
            if key.is_empty() {
                return Err(bad(format!("an empty key in tree {}", tree.name())));
            }
            entries.push((key, value));
        }
        entries.sort();
        if entries.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(bad(format!("a key twice in tree {}", tree.name())));
        }
        out.push((tree, entries));
    }
    if let Some(unknown) = form
        .trees
        .keys()
        .find(|name| !trees().any(|t| t.name() == name.as_str()))
    {
        return Err(bad(format!("unknown tree {unknown:?}")));
    }
    Ok(Contents {
        created: form.created,
        trees: out,
        sealed: form.sealed,
    })
}

/// Seal the values of `contents` as `store` seals its own (`backup
/// --sealed`): refused (`backup-no-key`) when the store has no key.
pub fn seal_with(store: &Store, contents: &mut Contents) -> Result<(), BackupError> {
    let kv = store.kv();
    let id = kv.sealing().ok_or_else(|| {
        BackupError::NoKey("backup --sealed needs the store key (--store-key-file)".into())
    })?;
    for (tree, entries) in &mut contents.trees {
        for (key, value) in entries.iter_mut() {
            if let Some(sealed) = kv
                .seal_value(*tree, key, value)
                .map_err(|e| BackupError::NoKey(e.to_string()))?
            {
                *value = sealed;
            }
        }
    }
    contents.sealed = Some(id);
    Ok(())
}

/// Open the values of a sealed backup with `store`'s keys (the plain
/// contents judged and restored): a store without keys is refused with
/// `backup-no-key` naming the key ID; a key it lacks, or a value altered,
/// with the store's `store-key-missing` / `store-unseal-failed`.
pub fn open_with(store: &Store, contents: &mut Contents) -> Result<(), crate::error::Error> {
    let Some(id) = contents.sealed.take() else {
        return Ok(());
    };
    let kv = store.kv();
    if kv.sealing().is_none() {
        return Err(BackupError::NoKey(format!(
            "the backup is sealed with store key {id}: restore it with --store-key-file"
        ))
        .into());
    }
    for (tree, entries) in &mut contents.trees {
        for (key, value) in entries.iter_mut() {
            *value = kv.open_value(*tree, key, std::mem::take(value))?;
        }
    }
    Ok(())
}

/// The contents as a store in memory, to be opened and read (judged)
/// before a restore.
pub fn mem_store(contents: &Contents) -> Result<MemKv, StoreError> {
    let kv = MemKv::new();
    let ops: Vec<Op> = contents
        .trees
        .iter()
        .flat_map(|(tree, entries)| {
            entries
                .iter()
                .map(|(k, v)| Op::Put(*tree, k.clone(), v.clone()))
        })
        .collect();
    kv.apply(&ops)?;
    Ok(kv)
}

/// Entries per tree, by tree name.
pub fn counts(contents: &Contents) -> BTreeMap<String, usize> {
    contents
        .trees
        .iter()
        .map(|(tree, entries)| (tree.name().to_owned(), entries.len()))
        .collect()
}

/// Write `bytes` to `path`: mode 0600, a temporary name in the same
/// directory, synced, then renamed over `path`.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), BackupError> {
    use std::os::unix::fs::OpenOptionsExt;
    let failed =
        |e: std::io::Error| BackupError::WriteFailed(path.display().to_string(), e.to_string());
    let name = path.file_name().ok_or_else(|| {
        BackupError::WriteFailed(path.display().to_string(), "not a file name".into())
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(failed)
}

/// Read a backup file, at most `MAX_BACKUP_BYTES`.
pub fn read_file(path: &Path) -> Result<Vec<u8>, BackupError> {
    use std::io::Read as _;
    let failed = |why: String| BackupError::ReadFailed(path.display().to_string(), why);
    let file = std::fs::File::open(path).map_err(|e| failed(e.to_string()))?;
    let mut bytes = Vec::new();
    file.take(MAX_BACKUP_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| failed(e.to_string()))?;
    if bytes.len() as u64 > MAX_BACKUP_BYTES {
        return Err(failed(format!(
            "larger than {MAX_BACKUP_BYTES} bytes (limits::MAX_BACKUP_BYTES)"
        )));
    }
    Ok(bytes)
}

/// What makes `store` not empty for a restore ("2 certificates, 1 tenant"),
/// or `None` when it holds no certificate, key or tenant.
pub fn held_content(store: &Store) -> Result<Option<String>, StoreError> {
    let mut parts = Vec::new();
    for tree in CONTENT_TREES {
        let n = store.kv().scan_prefix(tree, b"")?.len();
        if n > 0 {
            let what = match tree {
                Tree::Certs => "certificates",
                Tree::Keys => "keys",
                _ => "tenants",
            };
            parts.push(format!("{n} {what}"));
        }
    }
    Ok((!parts.is_empty()).then(|| parts.join(", ")))
}

/// Make `target` hold exactly `contents` in the trees of `trees()` (entries
/// it has beyond them are removed; its leases stay). Refused when the
/// target holds certificates, keys or tenants and `replace` is false.
/// Returns whether such content was replaced.
pub fn load_into(
    target: &Store,
    contents: &Contents,
    replace: bool,
) -> Result<bool, crate::error::Error> {
    let held = held_content(target)?;
    if let (Some(what), false) = (&held, replace) {
        return Err(BackupError::NotEmpty(what.clone()).into());
    }
    let mut ops = Vec::new();
    for (tree, entries) in &contents.trees {
        let keep: std::collections::BTreeSet<&[u8]> =
            entries.iter().map(|(k, _)| k.as_slice()).collect();
        for (k, _) in target.kv().scan_prefix(*tree, b"")? {
            if !keep.contains(k.as_slice()) {
                ops.push(Op::Delete(*tree, k));
            }
        }
        ops.extend(
            entries
                .iter()
                .map(|(k, v)| Op::Put(*tree, k.clone(), v.clone())),
        );
    }
    match target.kv().max_batch_ops() {
        None => target.kv().apply(&ops)?,
        Some(max) => {
            // Several batches, seen one by one by the nodes following the
            // store: chains, keys and roots before the certificate records
            // naming them, records before the deletions, and a record
            // deleted before its chain and key, so no node ever reads a
            // certificate without its chain, nor serves nothing meanwhile.
            let rank = |op: &Op| -> u8 {
                match op {
                    Op::Put(Tree::Chains | Tree::Keys | Tree::Roots, ..) => 0,
                    Op::Put(Tree::Certs, ..) => 1,
                    Op::Put(..) => 2,
                    Op::Delete(Tree::Chains | Tree::Keys | Tree::Roots, ..) => 4,
                    Op::Delete(..) => 3,
                }
            };
            ops.sort_by_key(rank);
            for chunk in ops.chunks(max.max(1)) {
                target.kv().apply(chunk)?;
            }
        }
    }
    Ok(held.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Contents {
        Contents {
            created: "2026-12-02T03:00:00Z".into(),
            sealed: None,
            trees: trees()
                .map(|t| {
                    (
                        t,
                        vec![
                            (b"k1".to_vec(), vec![0, 1, 2, 255]),
                            (b"k2".to_vec(), Vec::new()),
                        ],
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn a_backup_decodes_to_what_was_encoded() {
        let c = sample();
        assert_eq!(decode(&encode(&c)).unwrap(), c);
    }

    #[test]
    fn damaged_and_foreign_files_get_named_errors() {
        let good = String::from_utf8(encode(&sample())).unwrap();
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "bad-backup"),
            ("{}".into(), "bad-backup"),
            (good[..good.len() / 2].to_owned(), "bad-backup"),
            (
                good.replace("\"version\":1", "\"version\":2"),
                "backup-too-new",
            ),
            (good.replace("\"version\":1", "\"version\":0"), "bad-backup"),
            (good.replace("pbx-certd-backup", "other"), "bad-backup"),
            (good.replace("\"roots\"", "\"secrets\""), "bad-backup"),
            (good.replace("azE=", "a!E="), "bad-backup"),
            (
                good.replace("2026-12-02T03:00:00Z", "yesterday"),
                "bad-backup",
            ),
            (good.replace("azI=", "azE="), "bad-backup"),
            (good.replace("azE=", ""), "bad-backup"),
        ];
        for (text, code) in cases {
            let e = decode(text.as_bytes()).expect_err(&text);
            assert_eq!(e.code(), code, "{text}: {e}");
        }
        // Random bytes never panic.
        let mut x = 0x9e37_79b9_u32;
        for len in 0..300 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            assert!(decode(&bytes).is_err());
        }
    }

    #[test]
    fn load_into_replaces_only_when_asked_and_keeps_leases() {
        let target = Store::with_backend(Box::new(MemKv::new())).unwrap();
        target
            .kv()
            .apply(&[
                Op::Put(Tree::Roots, b"old-root".to_vec(), b"x".to_vec()),
                Op::Put(Tree::Leases, b"acme".to_vec(), b"held".to_vec()),
            ])
            .unwrap();
        // Roots and settings alone: empty for a restore.
        let c = sample();
        assert!(!load_into(&target, &c, false).unwrap());
        assert_eq!(target.kv().get(Tree::Roots, b"old-root").unwrap(), None);
        assert_eq!(
            target.kv().get(Tree::Leases, b"acme").unwrap(),
            Some(b"held".to_vec())
        );
        for tree in trees() {
            assert_eq!(target.kv().scan_prefix(tree, b"").unwrap().len(), 2);
        }
        // Now it holds certificates, keys and tenants.
        let e = load_into(&target, &c, false).unwrap_err();
        assert_eq!(e.code(), "store-not-empty");
        assert!(
            e.to_string().contains("2 certificates, 2 keys, 2 tenants"),
            "{e}"
        );
        assert!(load_into(&target, &c, true).unwrap());
    }
}
