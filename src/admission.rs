//! Connection admission: which TCP connections may hold a slot of a listener.
//!
//! Why: a connection costs a file descriptor and buffers, so slots are
//! bounded; if the bound were one global count, 600 idle TCP connections from
//! one host (or a slowloris on port 80) would hold every slot and lock out
//! every phone and admin. So each listener has its own `Gate`, and each gate
//! splits its slots in two budgets:
//!
//! - *unproven* connections: still in their TLS handshake (or, on port 80,
//!   the whole short plain-HTTP connection). They cost the attacker nothing,
//!   so they get a short deadline, a small cap per client IP (the newcomer
//!   over it is refused) and, when the listener's unproven budget is full, the
//!   *oldest* unproven connection is dropped so that a newcomer always gets in;
//! - *established* connections: finished a TLS handshake. They get a larger
//!   budget and a generous per-IP cap (`serve --max-conns-per-ip`), because
//!   the phones of one office share their NAT's address.
//!
//! What must hold: budgets are per listener, so a flood of the HTTPS port
//! cannot starve a `--tls-forward` listener (SIP-TLS) and the reverse; every
//! count taken is given back exactly once (`Ticket`'s `Drop`); an IPv6 client
//! is counted per /64 (one host usually owns a whole /64), an IPv4-mapped
//! address as its IPv4 address; each dropped connection is logged at debug,
//! and at most one summary line per listener per `ADMISSION_LOG_INTERVAL`
//! at warn (failed handshakes likewise: one at info per interval, the rest at
//! debug), so a flood cannot fill the log. One gate per listener is shared
//! by every worker thread (`serve --workers`), so budgets hold for the whole
//! process: `Arc`/`Mutex`, taken only on accept, promotion and close (never
//! in the TLS handshake), and no guard is held across an await.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use smol::future::FutureExt as _;

use crate::limits::ADMISSION_LOG_INTERVAL;

/// The slots of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Unproven connections at once; beyond it the oldest is dropped.
    pub unproven: usize,
    /// Unproven connections at once from one client IP; beyond it the
    /// newcomer is refused.
    pub unproven_per_ip: usize,
    /// Established connections at once (0: the listener never promotes).
    pub established: usize,
    /// Established connections at once from one client IP.
    pub established_per_ip: usize,
}

/// Why admission dropped a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its client IP already has `unproven_per_ip` unproven connections.
    PerIpUnproven,
    /// It was the oldest unproven connection when the budget was full.
    Evicted,
    /// It did not prove itself (handshake, or the port-80 exchange) in time.
    Deadline,
    /// Its client IP already has `established_per_ip` established connections.
    PerIpEstablished,
    /// The listener's established budget is full.
    EstablishedFull,
}

const REFUSALS: [Refusal; 5] = [
    Refusal::PerIpUnproven,
    Refusal::Evicted,
    Refusal::Deadline,
    Refusal::PerIpEstablished,
    Refusal::EstablishedFull,
];

impl Refusal {
    /// Stable code (in the log).
    pub fn code(self) -> &'static str {
        match self {
            Refusal::PerIpUnproven => "per-ip-unproven",
            Refusal::Evicted => "evicted",
            Refusal::Deadline => "deadline",
            Refusal::PerIpEstablished => "per-ip-established",
            Refusal::EstablishedFull => "established-full",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl core::fmt::Display for Refusal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Refusal::PerIpUnproven => "too many unproven connections from this address",
            Refusal::Evicted => "oldest unproven connection dropped for a newcomer",
            Refusal::Deadline => "not proven within the deadline",
            Refusal::PerIpEstablished => "too many established connections from this address",
            Refusal::EstablishedFull => "the listener's established connections are full",
        })
    }
}

/// A client as admission counts it: an IPv4 address or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKey {
    /// An IPv4 client (also an IPv4-mapped IPv6 address).
    V4([u8; 4]),
    /// The /64 prefix of an IPv6 client.
    V6([u8; 8]),
}

impl ClientKey {
    /// The key of a peer address.
    pub fn of(ip: IpAddr) -> ClientKey {
        match ip {
            IpAddr::V4(v4) => ClientKey::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey::V4(v4.octets()),
                None => {
                    let o = v6.octets();
                    ClientKey::V6([o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]])
                }
            },
        }
    }
}

/// Set when admission drops an unproven connection; wakes its task.
#[derive(Default)]
struct Kill {
    killed: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Kill {
    fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        let waker = self.waker.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

struct Pending {
    id: u64,
    client: ClientKey,
    peer: IpAddr,
    kill: Arc<Kill>,
}

#[derive(Default)]
struct PerClient {
    unproven: usize,
    established: usize,
}

/// Dropped connections since the last summary line.
struct DropLog {
    counts: [u64; REFUSALS.len()],
    last: Option<Instant>,
}

/// Failed handshakes not logged at info since the last line that was.
#[derive(Default)]
struct FailLog {
    suppressed: u64,
    last: Option<Instant>,
}

fn within_interval(last: Option<Instant>, now: Instant) -> bool {
    last.is_some_and(|last| now.duration_since(last) < ADMISSION_LOG_INTERVAL)
}

struct State {
    name: String,
    budget: Budget,
    next_id: u64,
    /// Unproven connections, oldest first (ids ascending).
    queue: VecDeque<Pending>,
    clients: HashMap<ClientKey, PerClient>,
    established: usize,
    log: DropLog,
    failures: FailLog,
}

impl State {
    fn client(&mut self, key: ClientKey) -> &mut PerClient {
        self.clients.entry(key).or_default()
    }

    fn forget_if_idle(&mut self, key: ClientKey) {
        if self
            .clients
            .get(&key)
            .is_some_and(|c| c.unproven == 0 && c.established == 0)
        {
            self.clients.remove(&key);
        }
    }

    /// Remove unproven `id` from the queue (if still there) and its count.
    fn remove_pending(&mut self, id: u64) -> bool {
        let Ok(i) = self.queue.binary_search_by_key(&id, |p| p.id) else {
            return false;
        };
        if let Some(p) = self.queue.remove(i) {
            let c = self.client(p.client);
            c.unproven = c.unproven.saturating_sub(1);
            self.forget_if_idle(p.client);
        }
        true
    }

    fn dropped(&mut self, why: Refusal, peer: IpAddr) {
        log::debug!("{}: dropped {peer}: {why} [{}]", self.name, why.code());
        self.log.counts[why.index()] += 1;
        let now = Instant::now();
        if within_interval(self.log.last, now) {
            return;
        }
        let parts: Vec<String> = REFUSALS
            .iter()
            .filter(|r| self.log.counts[r.index()] > 0)
            .map(|r| format!("{} {}", r.code(), self.log.counts[r.index()]))
            .collect();
        let total: u64 = self.log.counts.iter().sum();
        log::warn!(
            "{}: admission dropped {total} connection(s) ({}); {} unproven and {} established open; \
             at most one such line per {} s, each drop at debug",
            self.name,
            parts.join(", "),
            self.queue.len(),
            self.established,
            ADMISSION_LOG_INTERVAL.as_secs()
        );
        self.log.counts = [0; REFUSALS.len()];
        self.log.last = Some(now);
    }
}

/// The admission state of one listener (cheap to clone: shared).
#[derive(Clone)]
pub struct Gate(Arc<Mutex<State>>);

/// The state behind a gate's lock (a panic elsewhere cannot poison it for
/// good: the counters stay usable).
trait Locked {
    fn state(&self) -> MutexGuard<'_, State>;
}

impl Locked for Arc<Mutex<State>> {
    fn state(&self) -> MutexGuard<'_, State> {
        self.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Gate {
    /// A gate named `name` (in log lines) with `budget`.
    pub fn new(name: impl Into<String>, budget: Budget) -> Gate {
        Gate(Arc::new(Mutex::new(State {
            name: name.into(),
            budget,
            next_id: 0,
            queue: VecDeque::new(),
            clients: HashMap::new(),
            established: 0,
            log: DropLog {
                counts: [0; REFUSALS.len()],
                last: None,
            },
            failures: FailLog::default(),
        })))
    }

    /// Log a failed TLS handshake: at info at most once per
    /// `ADMISSION_LOG_INTERVAL` (saying how many were not), else at debug,
    /// so clients that connect and hang up cannot fill the log.
    pub fn handshake_failed(&self, peer: IpAddr, why: &dyn core::fmt::Display) {
        let mut s = self.0.state();
        let now = Instant::now();
        if within_interval(s.failures.last, now) {
            s.failures.suppressed += 1;
            log::debug!("{}: TLS handshake with {peer} failed: {why}", s.name);
            return;
        }
        let more = match std::mem::take(&mut s.failures.suppressed) {
            0 => String::new(),
            n => format!(" ({n} more failed since the last such line; each at debug)"),
        };
        log::info!("TLS handshake with {peer} failed: {why}{more}");
        s.failures.last = Some(now);
    }

    /// Admit a new connection from `peer` as unproven, or refuse it. When
    /// the unproven budget is full the oldest unproven connection is dropped
    /// to make room.
    pub fn admit(&self, peer: IpAddr) -> Result<Ticket, Refusal> {
        let key = ClientKey::of(peer);
        let mut s = self.0.state();
        let budget = s.budget;
        let (unproven, established) = s
            .clients
            .get(&key)
            .map_or((0, 0), |c| (c.unproven, c.established));
        let refusal = if unproven >= budget.unproven_per_ip {
            Some(Refusal::PerIpUnproven)
        } else if budget.established > 0 && established >= budget.established_per_ip {
            // It could not be promoted anyway: spare the handshake.
            Some(Refusal::PerIpEstablished)
        } else {
            None
        };
        if let Some(why) = refusal {
            s.dropped(why, peer);
            return Err(why);
        }
        while s.queue.len() >= budget.unproven.max(1) {
            let Some(oldest) = s.queue.pop_front() else {
                break;
            };
            oldest.kill.kill();
            let c = s.client(oldest.client);
            c.unproven = c.unproven.saturating_sub(1);
            s.forget_if_idle(oldest.client);
            s.dropped(Refusal::Evicted, oldest.peer);
        }
        let id = s.next_id;
        s.next_id += 1;
        let kill = Arc::new(Kill::default());
        s.queue.push_back(Pending {
            id,
            client: key,
            peer,
            kill: kill.clone(),
        });
        s.client(key).unproven += 1;
        drop(s);
        Ok(Ticket {
            gate: self.clone(),
            id,
            client: key,
            peer,
            phase: Phase::Unproven,
            kill,
        })
    }

    /// Open connections: (unproven, established).
    pub fn open(&self) -> (usize, usize) {
        let s = self.0.state();
        (s.queue.len(), s.established)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Unproven,
    Established,
    Gone,
}

/// One admitted connection's slot; gives it back when dropped.
pub struct Ticket {
    gate: Gate,
    id: u64,
    client: ClientKey,
    peer: IpAddr,
    phase: Phase,
    kill: Arc<Kill>,
}

impl Ticket {
    /// Run `f` (the handshake, or a whole port-80 connection) while the
    /// connection is unproven: it ends early when admission drops the
    /// connection for a newcomer or when `deadline` passes.
    pub async fn unproven<T>(
        &mut self,
        deadline: Duration,
        f: impl Future<Output = T>,
    ) -> Result<T, Refusal> {
        let kill = self.kill.clone();
        let evicted = std::future::poll_fn(move |cx| {
            // Waker first, then the flag: a kill from another worker
            // between the two still finds the waker.
            *kill.waker.lock().unwrap_or_else(|p| p.into_inner()) = Some(cx.waker().clone());
            if kill.killed.load(Ordering::SeqCst) {
                return Poll::Ready(Err(Refusal::Evicted));
            }
            Poll::Pending
        });
        let timer = async {
            smol::Timer::after(deadline).await;
            Err(Refusal::Deadline)
        };
        let result = async { Ok(f.await) }.or(evicted).or(timer).await;
        if matches!(result, Err(Refusal::Deadline)) && self.phase == Phase::Unproven {
            let mut s = self.gate.0.state();
            if s.remove_pending(self.id) {
                self.phase = Phase::Gone;
            }
            s.dropped(Refusal::Deadline, self.peer);
        }
        result
    }

    /// The listener's gate.
    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    /// The connection proved itself (TLS handshake done): move it to the
    /// established budget, or refuse it when that is full.
    pub fn establish(&mut self) -> Result<(), Refusal> {
        if self.phase != Phase::Unproven || self.kill.killed.load(Ordering::SeqCst) {
            return Err(Refusal::Evicted);
        }
        let mut s = self.gate.0.state();
        let budget = s.budget;
        let per_client = s.clients.get(&self.client).map_or(0, |c| c.established);
        let refusal = if s.established >= budget.established {
            Some(Refusal::EstablishedFull)
        } else if per_client >= budget.established_per_ip {
            Some(Refusal::PerIpEstablished)
        } else {
            None
        };
        s.remove_pending(self.id);
        if let Some(why) = refusal {
            self.phase = Phase::Gone;
            s.dropped(why, self.peer);
            return Err(why);
        }
        s.client(self.client).established += 1;
        s.established += 1;
        self.phase = Phase::Established;
        Ok(())
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut s = self.gate.0.state();
        match self.phase {
            Phase::Unproven => {
                s.remove_pending(self.id);
            }
            Phase::Established => {
                s.established = s.established.saturating_sub(1);
                let c = s.client(self.client);
                c.established = c.established.saturating_sub(1);
                s.forget_if_idle(self.client);
            }
            Phase::Gone => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn budget() -> Budget {
        Budget {
            unproven: 4,
            unproven_per_ip: 2,
            established: 3,
            established_per_ip: 2,
        }
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, n))
    }

    #[test]
    fn per_ip_unproven_cap_refuses_the_newcomer() {
        let gate = Gate::new("t", budget());
        let _a = gate.admit(ip(1)).unwrap();
        let _b = gate.admit(ip(1)).unwrap();
        assert_eq!(gate.admit(ip(1)).err(), Some(Refusal::PerIpUnproven));
        assert!(gate.admit(ip(2)).is_ok());
    }

    #[test]
    fn full_unproven_budget_drops_the_oldest() {
        let gate = Gate::new("t", budget());
        let tickets: Vec<Ticket> = (1..=4).map(|n| gate.admit(ip(n)).unwrap()).collect();
        let newcomer = gate.admit(ip(9)).unwrap();
        assert!(
            tickets[0].kill.killed.load(Ordering::SeqCst),
            "the oldest is dropped"
        );
        assert!(tickets[1..]
            .iter()
            .all(|t| !t.kill.killed.load(Ordering::SeqCst)));
        assert_eq!(gate.open(), (4, 0));
        drop(tickets);
        assert_eq!(gate.open(), (1, 0));
        drop(newcomer);
        assert_eq!(gate.open(), (0, 0));
        assert!(gate.0.state().clients.is_empty());
    }

    #[test]
    fn established_budget_and_per_ip_cap() {
        let gate = Gate::new("t", budget());
        let mut a = gate.admit(ip(1)).unwrap();
        let mut b = gate.admit(ip(1)).unwrap();
        a.establish().unwrap();
        b.establish().unwrap();
        // ip 1 is at its established cap: refused before the handshake.
        assert_eq!(gate.admit(ip(1)).err(), Some(Refusal::PerIpEstablished));
        let mut c = gate.admit(ip(2)).unwrap();
        let mut d = gate.admit(ip(3)).unwrap();
        c.establish().unwrap();
        assert_eq!(d.establish(), Err(Refusal::EstablishedFull));
        assert_eq!(gate.open(), (0, 3));
        drop(d);
        drop(a);
        assert_eq!(gate.open(), (0, 2));
        let mut e = gate.admit(ip(1)).unwrap();
        e.establish().unwrap();
        drop((b, c, e));
        assert_eq!(gate.open(), (0, 0));
        assert!(gate.0.state().clients.is_empty());
    }

    #[test]
    fn evicted_connection_ends_its_unproven_phase() {
        let gate = Gate::new("t", budget());
        let mut first = gate.admit(ip(1)).unwrap();
        let held: Vec<Ticket> = (2..=5).map(|n| gate.admit(ip(n)).unwrap()).collect();
        let out =
            smol::block_on(first.unproven(Duration::from_secs(60), smol::future::pending::<()>()));
        assert_eq!(out, Err(Refusal::Evicted));
        assert_eq!(first.establish(), Err(Refusal::Evicted));
        drop(first);
        assert_eq!(gate.open(), (4, 0));
        drop(held);
    }

    #[test]
    fn deadline_ends_the_unproven_phase_and_frees_the_slot() {
        let gate = Gate::new("t", budget());
        let mut t = gate.admit(ip(1)).unwrap();
        let out =
            smol::block_on(t.unproven(Duration::from_millis(10), smol::future::pending::<()>()));
        assert_eq!(out, Err(Refusal::Deadline));
        assert_eq!(gate.open(), (0, 0));
        drop(t);
        assert_eq!(gate.open(), (0, 0));
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_as_v4() {
        let a: Ipv6Addr = "2001:db8:1:2::1".parse().unwrap();
        let b: Ipv6Addr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: Ipv6Addr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ClientKey::of(a.into()), ClientKey::of(b.into()));
        assert_ne!(ClientKey::of(a.into()), ClientKey::of(c.into()));
        let mapped: Ipv6Addr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(ClientKey::of(mapped.into()), ClientKey::of(ip(1)));
    }
}
