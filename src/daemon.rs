//! The running service's shared state: the store, the current SNI snapshot
//! and the write path that keeps them in step.
//!
//! Why: the TLS resolver, the web admin, the JSON API and the control socket
//! all act on one store; every change must be serialised, committed, and then
//! published as a new immutable snapshot that the next handshake reads.
//!
//! What must hold: writes are serialised by `write_lock` (which commands
//! write, rebuild and wake comes from `Command::effect` alone, which end
//! ACME back-offs from `Command::cures_failures`); a snapshot is
//! swapped in only after its change committed; readers never block writers
//! (arc-swap), and the handshake path never touches the store. On a store
//! other nodes write (etcd), their changes arrive by watch and take the
//! same rebuild path (`follow_store`); a lost watch means a full resync.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::acme::AcmeError;
use crate::error::Error;
use crate::handshakes::{ListenerLog, ListenerView};
use crate::limits::{ETCD_WATCH_RETRY, STORE_FOLLOW_POLL};
use crate::ops::{self, Command, Reply};
use crate::snapshot::{Challenges, Snapshot};
use crate::store::{Store, StoreError};

/// State shared by every task of the daemon.
pub struct Shared {
    store: Store,
    snapshot: ArcSwap<Snapshot>,
    write_lock: Mutex<()>,
    /// One-time token accepted by the web admin until a password is set
    /// (printed to the log by `serve`); `None` once a password exists.
    pub setup_token: Mutex<Option<String>>,
    /// Web admin sessions and the login rate limiter (in memory only).
    pub web: Arc<crate::session::WebState>,
    /// ACME challenge answers while orders run (published in the snapshot).
    challenges: Mutex<Challenges>,
    /// Wakes the renewal loop (commands whose `Effect::wakes_renewal`).
    acme_wake: (smol::channel::Sender<()>, smol::channel::Receiver<()>),
    /// Each TLS listener's handshake diagnostics (registered at start;
    /// the accept path holds its own `Arc`, never this lock).
    handshakes: Mutex<Vec<Arc<ListenerLog>>>,
    /// This node's ID (`ops::node_id`), set once by `serve`.
    node_id: std::sync::OnceLock<String>,
    /// The store revision and time (Unix seconds) of the last rebuild from
    /// a shared store's watch (`cluster status`).
    applied: Mutex<(Option<u64>, Option<i64>)>,
    /// Whether the watch on a shared store is open now.
    following: std::sync::atomic::AtomicBool,
    /// TLS-ALPN-01 certificates made for answers other nodes published,
    /// by (SNI, key authorization).
    alpn_made: Mutex<HashMap<(String, String), Arc<rustls::sign::CertifiedKey>>>,
}

impl Shared {
    /// Wrap an open store and build the first snapshot.
    pub fn new(store: Store) -> Result<Arc<Shared>, StoreError> {
        let snapshot = Snapshot::load(&store, None)?;
        Ok(Arc::new(Shared {
            store,
            snapshot: ArcSwap::from_pointee(snapshot),
            write_lock: Mutex::new(()),
            setup_token: Mutex::new(None),
            web: Arc::new(crate::session::WebState::new()),
            challenges: Mutex::new(Challenges::default()),
            acme_wake: smol::channel::bounded(1),
            handshakes: Mutex::new(Vec::new()),
            node_id: std::sync::OnceLock::new(),
            applied: Mutex::new((None, None)),
            following: std::sync::atomic::AtomicBool::new(false),
            alpn_made: Mutex::new(HashMap::new()),
        }))
    }

    /// The store, for reads (writes go through `execute` or `write`).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The current snapshot (lock-free).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// The swap cell itself, for the TLS resolver.
    pub fn snapshot_cell(&self) -> &ArcSwap<Snapshot> {
        &self.snapshot
    }

    /// Run a CLI/API command as its `Command::effect` says: a write runs
    /// under the write lock, then (if it succeeded) republishes the snapshot
    /// and wakes the renewal loop. Blocking (store I/O): from async code use
    /// `execute_async`.
    pub fn execute(&self, command: &Command) -> Result<Reply, Error> {
        // The daemon's own state, not the store's.
        if let Command::Handshakes { listener } = command {
            return Ok(Reply::Handshakes(self.handshakes_view(listener.as_deref())));
        }
        if let Command::ClusterStatus = command {
            return Ok(Reply::Cluster(self.cluster_view()));
        }
        let effect = command.effect();
        if !effect.write && !effect.whole_store {
            return ops::execute(&self.store, command);
        }
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let value = ops::execute(&self.store, command)?;
        // A change that can cure failures ends the back-offs before the
        // loop re-plans (issue 11: a root import retries at once).
        if command.cures_failures() {
            match crate::acme::clear_backoffs(&self.store) {
                Ok(0) => {}
                Ok(n) => log::info!(
                    "ACME: a change that may cure earlier failures: {n} name set(s) retried now"
                ),
                Err(e) => log::warn!("ACME: cannot end the back-offs: {e}"),
            }
        }
        // Committed: the loop is woken even if the rebuild below fails.
        if effect.wakes_renewal {
            self.wake_acme();
        }
        if effect.changes_serving {
            self.rebuild_locked()?;
        }
        Ok(value)
    }

    /// `execute` on smol's blocking thread pool.
    pub async fn execute_async(self: &Arc<Self>, command: Command) -> Result<Reply, Error> {
        let shared = self.clone();
        smol::unblock(move || shared.execute(&command)).await
    }

    /// Run any other serialised write (e.g. the admin password), then
    /// republish the snapshot.
    pub fn write<T>(&self, f: impl FnOnce(&Store) -> Result<T, Error>) -> Result<T, Error> {
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let out = f(&self.store)?;
        self.rebuild_locked()?;
        Ok(out)
    }

    /// Change the ACME challenge answers and republish the snapshot.
    pub fn set_challenges(&self, f: impl FnOnce(&mut Challenges)) -> Result<(), AcmeError> {
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut self.challenges.lock().unwrap_or_else(|p| p.into_inner()));
        self.rebuild_locked().map_err(AcmeError::from)
    }

    /// A new TLS listener's handshake log, registered for `handshakes`
    /// (`enabled` false: `--handshake-log off`, a log keeping nothing).
    pub fn handshake_log(&self, name: String, enabled: bool) -> Arc<ListenerLog> {
        let log = Arc::new(ListenerLog::new(name, enabled));
        self.handshakes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(log.clone());
        log
    }

    /// `handshakes [--listener L]`: every listener whose name contains `L`.
    pub fn handshakes_view(&self, listener: Option<&str>) -> Vec<ListenerView> {
        let logs = self
            .handshakes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        logs.iter()
            .filter(|l| listener.is_none_or(|want| l.name().contains(want)))
            .map(|l| l.view())
            .collect()
    }

    /// Wake the renewal loop (a check runs now).
    pub fn wake_acme(&self) {
        let _ = self.acme_wake.0.try_send(());
    }

    /// The renewal loop's end of the wake channel.
    pub fn acme_wake_receiver(&self) -> smol::channel::Receiver<()> {
        self.acme_wake.1.clone()
    }

    /// Rebuild the snapshot from the store as it is now (under the write
    /// lock, as after a local write).
    pub fn resync(&self) -> Result<(), StoreError> {
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        // The revision asked before the rebuild: the snapshot holds at
        // least everything up to it.
        let revision = self.store.kv().revision()?;
        self.rebuild_locked()?;
        self.set_applied(revision);
        Ok(())
    }

    /// Record the store's revision as applied without a rebuild (the
    /// changes seen held nothing served). Informational: a failure to ask
    /// leaves the record as it was and the watch open (the watch itself
    /// ends when its member is lost or leaderless).
    fn note_current(&self) {
        if let Ok(revision) = self.store.kv().revision() {
            self.set_applied(revision);
        }
    }

    /// The store revision the snapshot is current at, as of now.
    fn set_applied(&self, revision: Option<u64>) {
        *self.applied.lock().unwrap_or_else(|p| p.into_inner()) =
            (revision, Some(crate::clock::now()));
    }

    /// This node's ID, once `serve` named it.
    pub fn node_id(&self) -> Option<String> {
        self.node_id.get().cloned()
    }

    /// Name this node (`serve`, once): the holder of its leases and its
    /// heartbeat.
    pub fn set_node_id(&self, id: String) {
        let _ = self.node_id.set(id);
    }

    /// `cluster status` as this daemon sees it: the store's part
    /// (`ops::cluster_status`) with this node's ID, the revision it applied
    /// last and whether it follows the store now.
    pub fn cluster_view(&self) -> ops::ClusterView {
        let mut view = ops::cluster_status(&self.store).answered_by(self.node_id.get().cloned());
        view.daemon = true;
        if view.shared {
            let (revision, at) = *self.applied.lock().unwrap_or_else(|p| p.into_inner());
            view.applied_revision = revision;
            view.applied_at = at.map(crate::clock::rfc3339);
            view.following = Some(self.following.load(std::sync::atomic::Ordering::Relaxed));
        }
        view
    }

    /// Keep this node's heartbeat lease (`NODE_LEASE_PREFIX` + ID) alive
    /// in a shared store, every `NODE_HEARTBEAT_SECS`, until the daemon
    /// stops (it never returns; idle for a store only this process writes
    /// or before `set_node_id`). Logs when the heartbeat fails and when it
    /// works again.
    pub async fn heartbeat(self: Arc<Self>) {
        use crate::limits::{NODE_HEARTBEAT_SECS, NODE_HEARTBEAT_TTL_SECS};
        let Some((name, id)) = self.heartbeat_lease() else {
            return std::future::pending().await;
        };
        let ttl = std::time::Duration::from_secs(NODE_HEARTBEAT_TTL_SECS);
        let mut failing = false;
        loop {
            let (shared, name2, id2) = (self.clone(), name.clone(), id.clone());
            let beat = smol::unblock(move || {
                let kv = shared.store.kv();
                match kv.lease_keep_alive(name2.as_bytes(), id2.as_bytes(), ttl)? {
                    true => Ok(true),
                    false => kv.lease_acquire(name2.as_bytes(), id2.as_bytes(), ttl),
                }
            })
            .await;
            match beat {
                Ok(true) if std::mem::take(&mut failing) => {
                    log::info!("cluster: heartbeat of node {id} renewed again")
                }
                Ok(true) => {}
                Ok(false) => log::warn!("cluster: another holder has the heartbeat of node {id}"),
                Err(e) if !std::mem::replace(&mut failing, true) => {
                    log::warn!("cluster: cannot renew the heartbeat of node {id}: {e}")
                }
                Err(_) => {}
            }
            smol::Timer::after(std::time::Duration::from_secs(NODE_HEARTBEAT_SECS)).await;
        }
    }

    /// This node's heartbeat lease (`NODE_LEASE_PREFIX` + ID) and its
    /// holder (the ID), on a shared store once `serve` named the node.
    fn heartbeat_lease(&self) -> Option<(String, String)> {
        let id = self.node_id.get().filter(|_| self.store.kv().shared())?;
        Some((
            format!("{}{id}", crate::settings::NODE_LEASE_PREFIX),
            id.clone(),
        ))
    }

    /// Drop this node's heartbeat (a clean stop: other nodes stop listing
    /// it at once). Best effort.
    pub fn leave_cluster(&self) {
        if let Some((name, id)) = self.heartbeat_lease() {
            if let Err(e) = self
                .store
                .kv()
                .lease_release(name.as_bytes(), id.as_bytes())
            {
                log::warn!("cluster: cannot drop the heartbeat of node {id}: {e}");
            }
        }
    }

    /// Follow a store that other nodes write too (`Kv::watch_all`, an etcd
    /// cluster): each burst of changes seen rebuilds the snapshot through
    /// `resync`, the path of a local write, and every (re)opened watch is
    /// followed by a full resync, so a gap (etcd down, reconnect,
    /// compaction) loses nothing. While the store is unreachable the last
    /// snapshot keeps being served. Returns at once when this process is
    /// the store's only writer (sled). Blocking: run on its own thread.
    pub fn follow_store(&self) {
        let mut down = false;
        loop {
            match self.store.kv().watch_all() {
                Ok(None) => return,
                Ok(Some(mut watch)) => {
                    if std::mem::take(&mut down) {
                        log::info!("store: reachable again; resyncing");
                    }
                    let mut result = self.resync();
                    if result.is_ok() {
                        log::info!("store: following the changes of other nodes");
                        self.following
                            .store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    while result.is_ok() {
                        result = match watch.next_timeout(STORE_FOLLOW_POLL) {
                            Ok(None) => Ok(()),
                            Ok(Some(first)) => match drain(watch.as_mut(), Seen::of(&first)) {
                                // Only leases changed (heartbeats, ACME
                                // leases): nothing served changes; the
                                // snapshot is current at the new revision.
                                Ok(seen) if !seen.serving => {
                                    self.note_current();
                                    Ok(())
                                }
                                // Another node changed what is served:
                                // rebuilt; when it changed names or ACME
                                // settings or status, the renewal loop
                                // re-plans too (a name added elsewhere, an
                                // order elsewhere that ended or failed).
                                Ok(seen) => self.resync().inspect(|()| {
                                    if seen.ordering {
                                        self.wake_acme();
                                    }
                                }),
                                Err(e) => Err(e),
                            },
                            Err(e) => Err(e),
                        };
                    }
                    self.following
                        .store(false, std::sync::atomic::Ordering::Relaxed);
                    if let Err(e) = result {
                        log::warn!("store: lost the watch ({e}); serving the last snapshot");
                    }
                }
                Err(e) => {
                    if !std::mem::replace(&mut down, true) {
                        log::warn!("store: cannot watch ({e}); serving the last snapshot");
                    }
                }
            }
            std::thread::sleep(ETCD_WATCH_RETRY);
        }
    }

    fn rebuild_locked(&self) -> Result<(), StoreError> {
        let previous = self.snapshot.load_full();
        let mut next = Snapshot::load(&self.store, Some(&previous))?;
        let mut challenges = self
            .challenges
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if self.store.kv().shared() {
            self.add_published_challenges(&mut challenges)?;
        }
        next.set_challenges(&challenges);
        self.snapshot.store(Arc::new(next));
        Ok(())
    }

    /// Add the challenge answers other nodes of a shared store published
    /// for their orders (`acme::live_challenges`): this node answers them
    /// too. A TLS-ALPN-01 certificate is made here from the published name
    /// and digest, once per answer (kept in `alpn_made` while it is live).
    fn add_published_challenges(&self, challenges: &mut Challenges) -> Result<(), StoreError> {
        let live = crate::acme::live_challenges(&self.store).map_err(|e| match e {
            Error::Store(e) => e,
            other => StoreError::Corrupt(other.to_string()),
        })?;
        let mut made = self.alpn_made.lock().unwrap_or_else(|p| p.into_inner());
        let mut keep = std::collections::HashSet::new();
        for record in live {
            match record.answer {
                crate::acme::ChallengeAnswer::Http01 {
                    token,
                    key_authorization,
                } => {
                    challenges.http.entry(token).or_insert(key_authorization);
                }
                crate::acme::ChallengeAnswer::TlsAlpn01 {
                    sni,
                    name,
                    key_authorization,
                } => {
                    let id = (sni.clone(), key_authorization);
                    keep.insert(id.clone());
                    if challenges.alpn.contains_key(&sni) {
                        continue;
                    }
                    let cert = match made.get(&id) {
                        Some(c) => c.clone(),
                        None => {
                            let digest =
                                ring::digest::digest(&ring::digest::SHA256, id.1.as_bytes());
                            match crate::acme::alpn_cert(&name, digest.as_ref()) {
                                Ok(c) => {
                                    made.insert(id, c.clone());
                                    c
                                }
                                Err(e) => {
                                    log::warn!("ACME: published tls-alpn-01 answer for {sni}: {e}");
                                    continue;
                                }
                            }
                        }
                    };
                    challenges.alpn.insert(sni, cert);
                }
            }
        }
        made.retain(|id, _| keep.contains(id));
        Ok(())
    }
}

/// Take the changes that already arrived (one rebuild per burst), with
/// what the first (`seen`) and they may change.
fn drain(watch: &mut dyn crate::store::Watch, mut seen: Seen) -> Result<Seen, StoreError> {
    while let Some(change) = watch.next_timeout(std::time::Duration::ZERO)? {
        let more = Seen::of(&change);
        seen.serving |= more.serving;
        seen.ordering |= more.ordering;
    }
    Ok(seen)
}

/// What a burst of changes seen by `Kv::watch_all` (keys `TREE/KEY`) may
/// change.
#[derive(Clone, Copy)]
struct Seen {
    /// What is served: any tree but the leases (heartbeats, ACME ordering
    /// leases), which no snapshot holds.
    serving: bool,
    /// Which names need orders and how (tenants, settings: ACME settings
    /// and per-set status).
    ordering: bool,
}

impl Seen {
    fn of(change: &crate::store::Change) -> Seen {
        use crate::store::Tree;
        let key = match change {
            crate::store::Change::Put(k, _) | crate::store::Change::Delete(k) => k,
        };
        let in_tree = |tree: Tree| {
            let name = tree.name().as_bytes();
            key.starts_with(name) && key.get(name.len()) == Some(&b'/')
        };
        Seen {
            serving: !in_tree(Tree::Leases),
            ordering: in_tree(Tree::Tenants) || in_tree(Tree::Settings),
        }
    }
}
