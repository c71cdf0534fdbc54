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
        self.rebuild_locked()
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
                    }
                    while result.is_ok() {
                        result = match watch.next_timeout(STORE_FOLLOW_POLL) {
                            Ok(None) => Ok(()),
                            Ok(Some(_)) => drain(watch.as_mut()).and_then(|()| self.resync()),
                            Err(e) => Err(e),
                        };
                    }
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
        next.set_challenges(&self.challenges.lock().unwrap_or_else(|p| p.into_inner()));
        self.snapshot.store(Arc::new(next));
        Ok(())
    }
}

/// Take the changes that already arrived (one rebuild per burst).
fn drain(watch: &mut dyn crate::store::Watch) -> Result<(), StoreError> {
    while watch.next_timeout(std::time::Duration::ZERO)?.is_some() {}
    Ok(())
}
