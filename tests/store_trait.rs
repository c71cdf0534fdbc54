//! The storage contract (`Kv`) run against every backend: sled (what the
//! daemon uses), the in-memory store (what unit tests use) and etcd (a
//! cluster's shared store; one real member per test, `common::etcd`),
//! sled and etcd also behind the sealing wrapper (`seal::SealedKv`, keys
//! and settings sealed at rest: the contract holds through it). Then what rides on it: the ACME lease
//! (two contenders, exactly one wins), `PBX_CERTD_CACHE_BYTES`, and the move
//! of the local CA key to the keys tree (an old-layout store still issues).
//!
//! Waits are bounded (a few seconds at most) and nothing asserts a duration.

mod common;

use std::sync::Barrier;
use std::time::{Duration, Instant};

use common::*;
use pbx_certd::etcd::{EtcdKv, EtcdUrl};
use pbx_certd::store::{Batch, Cas, Change, Entry, Kv, MemKv, Op, SledKv, StoreError, Tree, Watch};

/// Bound of every wait for a change or an expiry (a hang guard only).
const WAIT: Duration = Duration::from_secs(10);

/// What keeps a backend alive (sled's directory, the etcd member).
#[allow(dead_code)] // held for its drop, never read
enum Keep {
    Dir(tempfile::TempDir),
    Etcd(std::sync::Arc<common::etcd::Etcd>),
    Nothing,
}

/// `backend` behind the sealing wrapper with a fixed key.
fn sealed(backend: Box<dyn Kv>) -> Box<dyn Kv> {
    let keys = pbx_certd::seal::KeyRing::from_bytes(&[7u8; 32]).expect("a key");
    Box::new(pbx_certd::seal::SealedKv::new(
        backend,
        std::sync::Arc::new(keys),
    ))
}

/// Each backend, fresh, with what keeps it alive: sled, memory, and a
/// single etcd member started for the test (skipped out loud without etcd);
/// sled and etcd (another prefix of the same member) sealed too.
fn backends() -> Vec<(&'static str, Box<dyn Kv>, Keep)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let sled = SledKv::open(dir.path()).expect("open sled");
    let sealed_dir = tempfile::tempdir().expect("tempdir");
    let sealed_sled = SledKv::open(sealed_dir.path()).expect("open sled");
    let mut all: Vec<(&'static str, Box<dyn Kv>, Keep)> = vec![
        ("sled", Box::new(sled), Keep::Dir(dir)),
        ("memory", Box::new(MemKv::new()), Keep::Nothing),
        (
            "sealed sled",
            sealed(Box::new(sealed_sled)),
            Keep::Dir(sealed_dir),
        ),
    ];
    let bin = common::etcd::etcd_bin();
    if common::skip::require("etcd", bin.as_ref().err().map(String::as_str)) {
        if let Ok(bin) = bin {
            let etcd = std::sync::Arc::new(common::etcd::Etcd::start(&bin, 1));
            let client = |prefix: &str| {
                let url: EtcdUrl = etcd.store_url(prefix).parse().expect("store URL");
                EtcdKv::new(url, &Default::default()).expect("etcd client")
            };
            all.push((
                "etcd",
                Box::new(client("contract")),
                Keep::Etcd(etcd.clone()),
            ));
            all.push((
                "sealed etcd",
                sealed(Box::new(client("sealed"))),
                Keep::Etcd(etcd),
            ));
        }
    }
    all
}

fn v(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

#[test]
fn get_put_delete_scan_and_atomic_batch() {
    for (name, kv, _dir) in backends() {
        assert_eq!(kv.get(Tree::Settings, b"a/1").unwrap(), None, "{name}");
        kv.put(Tree::Settings, b"a/1", b"one").unwrap();
        kv.put(Tree::Settings, b"b/1", b"other").unwrap();
        assert_eq!(kv.get(Tree::Settings, b"a/1").unwrap(), Some(v("one")));
        // Trees are separate namespaces.
        assert_eq!(kv.get(Tree::Keys, b"a/1").unwrap(), None, "{name}");
        kv.apply(&[
            Op::Put(Tree::Settings, v("a/2"), v("two")),
            Op::Put(Tree::Keys, v("k"), v("key")),
            Op::Delete(Tree::Settings, v("b/1")),
            Op::Delete(Tree::Settings, v("never-there")),
        ])
        .unwrap();
        assert_eq!(
            kv.scan_prefix(Tree::Settings, b"a/").unwrap(),
            vec![(v("a/1"), v("one")), (v("a/2"), v("two"))],
            "{name}"
        );
        assert_eq!(kv.scan_prefix(Tree::Settings, b"b/").unwrap(), vec![]);
        assert_eq!(kv.get(Tree::Keys, b"k").unwrap(), Some(v("key")), "{name}");
        kv.delete(Tree::Settings, b"a/1").unwrap();
        assert_eq!(
            kv.scan_prefix(Tree::Settings, b"").unwrap(),
            vec![(v("a/2"), v("two"))],
            "{name}"
        );
    }
}

#[test]
fn compare_and_swap_by_value() {
    for (name, kv, _dir) in backends() {
        let t = Tree::Settings;
        // Create only if absent.
        assert_eq!(
            kv.compare_and_swap(t, b"k", None, Some(b"1")).unwrap(),
            Cas::Swapped
        );
        assert_eq!(
            kv.compare_and_swap(t, b"k", None, Some(b"2")).unwrap(),
            Cas::Conflict(Some(v("1"))),
            "{name}: create over an existing key"
        );
        assert_eq!(
            kv.compare_and_swap(t, b"k", Some(b"9"), Some(b"2"))
                .unwrap(),
            Cas::Conflict(Some(v("1"))),
            "{name}: wrong expected value"
        );
        assert_eq!(kv.get(t, b"k").unwrap(), Some(v("1")), "{name}");
        assert_eq!(
            kv.compare_and_swap(t, b"k", Some(b"1"), Some(b"2"))
                .unwrap(),
            Cas::Swapped
        );
        assert_eq!(kv.get(t, b"k").unwrap(), Some(v("2")), "{name}");
        // Delete only if unchanged.
        assert_eq!(
            kv.compare_and_swap(t, b"k", Some(b"1"), None).unwrap(),
            Cas::Conflict(Some(v("2"))),
            "{name}"
        );
        assert_eq!(
            kv.compare_and_swap(t, b"k", Some(b"2"), None).unwrap(),
            Cas::Swapped
        );
        assert_eq!(kv.get(t, b"k").unwrap(), None, "{name}");
        assert_eq!(
            kv.compare_and_swap(t, b"k", Some(b"2"), Some(b"3"))
                .unwrap(),
            Cas::Conflict(None),
            "{name}: expected a value on an absent key"
        );
    }
}

#[test]
fn watch_sees_changes_under_its_prefix_only() {
    for (name, kv, _dir) in backends() {
        let mut watch = kv.watch_prefix(Tree::Tenants, b"a/").unwrap();
        kv.put(Tree::Tenants, b"b/1", b"elsewhere").unwrap();
        kv.put(Tree::Settings, b"a/1", b"other tree").unwrap();
        kv.put(Tree::Tenants, b"a/1", b"one").unwrap();
        kv.apply(&[
            Op::Put(Tree::Tenants, v("a/2"), v("two")),
            Op::Put(Tree::Tenants, v("b/2"), v("elsewhere")),
        ])
        .unwrap();
        kv.compare_and_swap(Tree::Tenants, b"a/1", Some(b"one"), None)
            .unwrap();
        let mut seen = Vec::new();
        while seen.len() < 3 {
            match watch.next_timeout(WAIT).unwrap() {
                Some(c) => seen.push(c),
                None => panic!("{name}: only {seen:?} arrived"),
            }
        }
        assert_eq!(
            seen,
            vec![
                Change::Put(v("a/1"), v("one")),
                Change::Put(v("a/2"), v("two")),
                Change::Delete(v("a/1")),
            ],
            "{name}"
        );
        // Nothing else is queued (all writes above already returned).
        assert_eq!(
            watch.next_timeout(Duration::from_millis(50)).unwrap(),
            None,
            "{name}"
        );
    }
}

#[test]
fn watch_all_follows_every_tree_of_a_shared_store_only() {
    for (name, kv, _keep) in backends() {
        let Some(mut watch) = kv.watch_all().unwrap() else {
            // sled and memory: this process is the only writer.
            assert!(!name.ends_with("etcd"), "a shared store must be followable");
            continue;
        };
        assert!(
            name.ends_with("etcd"),
            "{name} is not shared, yet offers a watch"
        );
        kv.put(Tree::Certs, b"id-1", b"record").unwrap();
        kv.apply(&[
            Op::Put(Tree::Tenants, v("acme"), v("tenant")),
            Op::Delete(Tree::Certs, v("id-1")),
        ])
        .unwrap();
        let mut seen = Vec::new();
        while seen.len() < 3 {
            match watch.next_timeout(WAIT).unwrap() {
                Some(c) => seen.push(c),
                None => panic!("{name}: only {seen:?} arrived"),
            }
        }
        assert_eq!(
            seen,
            vec![
                Change::Put(v("certs/id-1"), v("record")),
                Change::Put(v("tenants/acme"), v("tenant")),
                Change::Delete(v("certs/id-1")),
            ],
            "{name}"
        );
    }
}

#[test]
fn lease_is_exclusive_renewable_releasable_and_lapses() {
    for (name, kv, _dir) in backends() {
        let long = Duration::from_secs(600);
        assert!(kv.lease_acquire(b"job", b"node-a", long).unwrap(), "{name}");
        assert!(
            !kv.lease_acquire(b"job", b"node-b", long).unwrap(),
            "{name}"
        );
        // The holder takes it again (a restarted daemon): a renewal.
        assert!(kv.lease_acquire(b"job", b"node-a", long).unwrap(), "{name}");
        assert!(
            kv.lease_keep_alive(b"job", b"node-a", long).unwrap(),
            "{name}"
        );
        assert!(
            !kv.lease_keep_alive(b"job", b"node-b", long).unwrap(),
            "{name}"
        );
        assert_eq!(kv.lease_holder(b"job").unwrap(), Some(v("node-a")));
        // Someone else's release changes nothing.
        kv.lease_release(b"job", b"node-b").unwrap();
        assert_eq!(kv.lease_holder(b"job").unwrap(), Some(v("node-a")));
        kv.lease_release(b"job", b"node-a").unwrap();
        assert_eq!(kv.lease_holder(b"job").unwrap(), None, "{name}");
        assert!(kv.lease_acquire(b"job", b"node-b", long).unwrap(), "{name}");

        // A lease not kept alive lapses: then it reads as free, its holder
        // cannot keep it alive, and another node takes it.
        let short = Duration::from_millis(20);
        assert!(kv.lease_acquire(b"short", b"node-a", short).unwrap());
        let start = Instant::now();
        while kv.lease_holder(b"short").unwrap().is_some() {
            assert!(start.elapsed() < WAIT, "{name}: the lease never lapsed");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!kv.lease_keep_alive(b"short", b"node-a", long).unwrap());
        assert!(
            kv.lease_acquire(b"short", b"node-b", long).unwrap(),
            "{name}"
        );
        assert_eq!(kv.lease_holder(b"short").unwrap(), Some(v("node-b")));
    }
}

/// Rounds of the two-contender races (each a fresh lease name).
fn rounds() -> usize {
    if std::env::var_os("PBX_CERTD_EMULATED").is_some() {
        8
    } else {
        40
    }
}

#[test]
fn two_contenders_for_a_lease_exactly_one_wins() {
    for (name, kv, _dir) in backends() {
        for round in 0..rounds() {
            let lease = format!("race-{round}");
            let barrier = Barrier::new(2);
            let wins: Vec<bool> = std::thread::scope(|s| {
                let handles: Vec<_> = ["node-a", "node-b"]
                    .into_iter()
                    .map(|holder| {
                        let (kv, barrier, lease) = (&kv, &barrier, &lease);
                        s.spawn(move || {
                            barrier.wait();
                            kv.lease_acquire(
                                lease.as_bytes(),
                                holder.as_bytes(),
                                Duration::from_secs(600),
                            )
                            .unwrap()
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            assert_eq!(
                wins.iter().filter(|w| **w).count(),
                1,
                "{name}, round {round}: winners {wins:?}"
            );
        }
    }
}

/// Two nodes' store calls in the worst order a shared store allows: both
/// read the lease record before either writes (a barrier after each
/// thread's first read), then the second writer's writes wait until the first node's
/// `take_lease` has returned. Armed after the store is set up.
#[derive(Default)]
struct Lockstep {
    inner: MemKv,
    state: std::sync::Mutex<LockstepState>,
    turn: std::sync::Condvar,
}

#[derive(Default)]
struct LockstepState {
    armed: bool,
    readers: Vec<std::thread::ThreadId>,
    first_writer: Option<std::thread::ThreadId>,
    finished: usize,
}

impl Lockstep {
    /// Wait (bounded by `WAIT`, a hang guard) until `ready` holds.
    fn wait_until(&self, ready: impl Fn(&LockstepState) -> bool) {
        let start = Instant::now();
        let mut st = self.state.lock().unwrap();
        while st.armed && !ready(&st) && start.elapsed() < WAIT {
            st = self
                .turn
                .wait_timeout(st, Duration::from_millis(50))
                .unwrap()
                .0;
        }
    }

    fn after_read(&self) {
        let me = std::thread::current().id();
        {
            let mut st = self.state.lock().unwrap();
            if !st.armed || st.readers.contains(&me) {
                return;
            }
            st.readers.push(me);
            self.turn.notify_all();
        }
        self.wait_until(|st| st.readers.len() >= 2);
    }

    fn before_write(&self) {
        let me = std::thread::current().id();
        {
            let mut st = self.state.lock().unwrap();
            if !st.armed || *st.first_writer.get_or_insert(me) == me {
                return;
            }
        }
        self.wait_until(|st| st.finished >= 1);
    }

    fn finished(&self) {
        self.state.lock().unwrap().finished += 1;
        self.turn.notify_all();
    }
}

/// The store's handle on a shared `Lockstep`.
struct Node(std::sync::Arc<Lockstep>);

impl std::ops::Deref for Node {
    type Target = Lockstep;
    fn deref(&self) -> &Lockstep {
        &self.0
    }
}

impl Kv for Node {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let value = self.inner.get(tree, key);
        self.after_read();
        value
    }
    fn scan_prefix(&self, tree: Tree, prefix: &[u8]) -> Result<Vec<Entry>, StoreError> {
        self.inner.scan_prefix(tree, prefix)
    }
    fn apply(&self, ops: &[Op]) -> Result<(), StoreError> {
        self.before_write();
        self.inner.apply(ops)
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
        self.before_write();
        self.inner.compare_and_swap(tree, key, expected, new)
    }
    fn watch_prefix(&self, tree: Tree, prefix: &[u8]) -> Result<Box<dyn Watch>, StoreError> {
        self.inner.watch_prefix(tree, prefix)
    }
}

#[test]
fn acme_lease_two_nodes_exactly_one_wins() {
    // The daemon's ACME lease (`acme::take_lease`), two nodes on one shared
    // store, in the interleaving a write-then-read-back lease loses.
    let kv = std::sync::Arc::new(Lockstep::default());
    let store = pbx_certd::ops::with_backend(Box::new(Node(kv.clone()))).unwrap();
    kv.state.lock().unwrap().armed = true;
    let wins: Vec<bool> = std::thread::scope(|s| {
        let handles: Vec<_> = ["node-a", "node-b"]
            .into_iter()
            .map(|holder| {
                let (store, kv) = (&store, &kv);
                s.spawn(move || {
                    let won =
                        pbx_certd::acme::take_lease(store, "tenant:acme", holder, 600).unwrap();
                    kv.finished();
                    won
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        wins.iter().filter(|w| **w).count(),
        1,
        "both or neither node took the ACME lease: {wins:?}"
    );
}

#[test]
fn cache_bytes_setting_is_honoured_or_refused_by_name() {
    let pbx = Pbx::new();
    pbx.tenant_add("acme", &["pbx.acme.example.com"]);
    for bad in ["lots", "4", "-1", "99999999999999999999", "1 MiB"] {
        let mut cmd = pbx.command(&["tenant", "list", "--json"]);
        cmd.env("PBX_CERTD_CACHE_BYTES", bad);
        let out = run_command(cmd, None);
        out.api_error().expect("bad-cache-bytes");
    }
    for good in ["1048576", " 8388608 ", ""] {
        let mut cmd = pbx.command(&["tenant", "list", "--json"]);
        cmd.env("PBX_CERTD_CACHE_BYTES", good);
        let out = run_command(cmd, None);
        out.success();
        assert_eq!(out.json().as_array().map(Vec::len), Some(1), "{good:?}");
    }
    // The daemon honours it too (refuses to start on a bad one).
    let cmd = pbx.daemon().env("PBX_CERTD_CACHE_BYTES", "lots").command();
    let out = run_command(cmd, None);
    assert_ne!(out.status, 0, "{}", out.describe());
    assert!(
        out.stderr.contains("PBX_CERTD_CACHE_BYTES"),
        "{}",
        out.describe()
    );
}

#[test]
fn old_layout_local_ca_is_migrated_and_still_issues() {
    use base64ct::{Base64, Encoding};
    let pbx = Pbx::new();
    pbx.tenant_add("acme", &["pbx.acme.test"]);
    // An older release's store: the CA key inside the `local-ca` setting.
    let cn = "pbx-certd local CA old";
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, cn);
    dn.push(rcgen::DnType::OrganizationName, "pbx-certd local CA");
    params.distinguished_name = dn;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let root = params.self_signed(&key).unwrap();
    let old = serde_json::json!({
        "cn": cn,
        "key": Base64::encode_string(&key.serialize_der()),
        "cert": Base64::encode_string(root.der()),
    });
    {
        let store = pbx_certd::ops::open_store(&pbx.data).unwrap();
        let mut batch = Batch::default();
        batch.put_setting("local-ca", old.to_string().as_bytes());
        // ... and an ACME lease in the settings tree (now in the leases tree).
        batch.put_setting("acme_lease:system", br#"{"holder":"x","until":0}"#);
        store.commit(batch).unwrap();
    }
    // The next open migrates; the CA still issues, chained to the same root.
    let issued = pbx.ok(&["ca", "issue", "--tenant", "acme"]);
    let id = issued["id"].as_str().unwrap().to_string();
    let chain = pbx.ok(&["cert", "show", &id])["pem"]
        .as_str()
        .unwrap()
        .to_string();
    // openssl verifies the new leaf against the old root alone.
    let leaf = pem_certs(&chain).into_iter().next().unwrap();
    let leaf_file = pbx.file("leaf.pem", pem_encode("CERTIFICATE", &leaf));
    let root_file = pbx.file("root.pem", root.pem());
    let out = openssl_text(
        &[
            "verify",
            "-CAfile",
            &root_file,
            "-purpose",
            "sslserver",
            &leaf_file,
        ],
        None,
    );
    assert!(out.contains(": OK"), "{out}");
    let shown = pbx.ok(&["ca", "show"]);
    assert_eq!(shown["pem"].as_str(), Some(root.pem().as_str()));

    let store = pbx_certd::ops::open_store(&pbx.data).unwrap();
    let record: serde_json::Value =
        serde_json::from_slice(&store.setting("local-ca").unwrap().unwrap()).unwrap();
    assert!(
        record.get("key").is_none(),
        "the CA key is still in the settings tree: {record}"
    );
    let in_keys = store.kv().scan_prefix(Tree::Keys, b"local-ca:").unwrap();
    assert_eq!(in_keys.len(), 1, "the CA key is not in the keys tree");
    assert_eq!(in_keys[0].1[1..], key.serialize_der()[..]);
    assert_eq!(
        store.setting("acme_lease:system").unwrap(),
        None,
        "an old release's lease record stays in the settings tree"
    );
    drop(store);
    // A second issue (after the migration) works as well.
    pbx.ok(&["ca", "issue", "--tenant", "acme"]);
}
