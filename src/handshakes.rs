//! Handshake diagnostics: the last handshakes of each TLS listener in a
//! fixed-size ring, and counters per listener × rule.
//!
//! Why: the question a SIP engineer asks first is "which phones send no
//! SNI, and which certificate did they get?" (RFC 6066 §3: SNI is optional;
//! phones provisioned by IP send none). `handshakes` (CLI, control socket,
//! `GET /api/handshakes`) answers it from what the daemon actually did.
//!
//! What must hold: recording allocates nothing and never waits. A record is
//! a fixed-size value (heapless strings, truncated where longer) built on the
//! stack and moved into its slot; each slot has its own mutex, taken with
//! `try_lock` only — a slot busy with a reader is skipped and counted as
//! `dropped` instead of waiting. The ring holds `HANDSHAKE_RING_RECORDS`
//! per listener (the memory is reserved once, at start). Times are Unix
//! seconds. Nothing here reads the store or the network.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::limits::{HANDSHAKE_RING_RECORDS, MAX_DNS_NAME_LEN};

/// A certificate ID's hex length (SHA-256).
const ID_LEN: usize = 64;
/// Longest ALPN protocol kept (RFC 7301 allows 255; every registered one
/// is shorter).
const ALPN_LEN: usize = 32;
/// Longest failure reason kept (longer ones are cut at a character).
const FAILURE_LEN: usize = 160;

/// How a ClientHello named the server (RFC 6066 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SniKind {
    /// No SNI (or no ClientHello was read).
    #[default]
    None,
    /// A host name.
    Name,
    /// An IP literal (which RFC 6066 does not allow; some phones send it).
    IpLiteral,
}

/// The rule that chose the certificate (`snapshot::Match`), or the
/// outcome when none was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rule {
    /// A domain certificate of the owning tenant.
    Domain,
    /// A server certificate, exact or wildcard.
    Server,
    /// No SNI: the certificate of the local address.
    Address,
    /// The default certificate.
    Default,
    /// Nothing to serve.
    #[default]
    None,
    /// An ACME TLS-ALPN-01 validation (RFC 8737).
    AcmeChallenge,
    /// The handshake failed.
    Failed,
}

impl Rule {
    /// Every rule, in counter order.
    pub const ALL: [Rule; 7] = [
        Rule::Domain,
        Rule::Server,
        Rule::Address,
        Rule::Default,
        Rule::None,
        Rule::AcmeChallenge,
        Rule::Failed,
    ];

    /// The name used by the CLI and API.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Domain => "domain",
            Rule::Server => "server",
            Rule::Address => "address",
            Rule::Default => "default",
            Rule::None => "none",
            Rule::AcmeChallenge => "acme-challenge",
            Rule::Failed => "failed",
        }
    }

    fn index(self) -> usize {
        Rule::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// Copy `s` into a fixed-size string, cut at a character boundary when
/// longer.
fn bounded<const N: usize>(s: &str) -> heapless::String<N> {
    let mut out = heapless::String::new();
    for c in s.chars() {
        if out.push(c).is_err() {
            break;
        }
    }
    out
}

/// A `core::fmt::Write` into a fixed-size string that cuts instead of
/// failing.
pub struct Cut<const N: usize>(pub heapless::String<N>);

impl<const N: usize> core::fmt::Write for Cut<N> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for c in s.chars() {
            if self.0.push(c).is_err() {
                break;
            }
        }
        Ok(())
    }
}

/// One handshake, as recorded. Fixed size: no heap.
#[derive(Debug, Clone, Default)]
pub struct Record {
    /// Unix seconds; 0 for an empty slot.
    pub at: i64,
    /// The client.
    pub peer: Option<SocketAddr>,
    /// The address it connected to.
    pub local: Option<IpAddr>,
    /// How it named the server.
    pub sni_kind: SniKind,
    /// The SNI (empty without).
    pub sni: heapless::String<MAX_DNS_NAME_LEN>,
    /// The certificate served (empty: none).
    pub cert: heapless::String<ID_LEN>,
    /// The rule that chose it.
    pub rule: Rule,
    /// The ALPN protocol agreed (empty: none).
    pub alpn: heapless::String<ALPN_LEN>,
    /// `TLSv1.3`, `TLSv1.2` (empty when the handshake failed early).
    pub version: &'static str,
    /// Why it failed (empty: it did not).
    pub failure: heapless::String<FAILURE_LEN>,
}

impl Record {
    /// A record for a connection from `peer` to `local` at `at`.
    pub fn new(at: i64, peer: SocketAddr, local: Option<IpAddr>) -> Record {
        Record {
            at,
            peer: Some(peer),
            local,
            ..Record::default()
        }
    }

    /// Note the ClientHello's SNI.
    pub fn set_sni(&mut self, sni: Option<&str>) {
        match sni {
            None => self.sni_kind = SniKind::None,
            Some(s) => {
                self.sni_kind = if s.parse::<IpAddr>().is_ok() {
                    SniKind::IpLiteral
                } else {
                    SniKind::Name
                };
                self.sni = bounded(s);
            }
        }
    }

    /// Note the certificate served and its rule.
    pub fn set_served(&mut self, id: Option<&str>, rule: Rule) {
        self.cert = bounded(id.unwrap_or(""));
        self.rule = rule;
    }

    /// Note the agreed ALPN protocol (bytes shown as text when UTF-8).
    pub fn set_alpn(&mut self, alpn: Option<&[u8]>) {
        self.alpn = bounded(
            alpn.and_then(|a| core::str::from_utf8(a).ok())
                .unwrap_or(""),
        );
    }

    /// Note a failure (`why` written through `Cut`, no heap).
    pub fn set_failure(&mut self, why: &dyn core::fmt::Display) {
        use core::fmt::Write as _;
        let mut cut = Cut::<FAILURE_LEN>(heapless::String::new());
        let _ = write!(cut, "{why}");
        self.failure = cut.0;
        self.rule = Rule::Failed;
    }
}

/// One listener's ring and counters.
pub struct ListenerLog {
    name: String,
    /// `--handshake-log off`: nothing recorded, nothing counted.
    enabled: bool,
    slots: Box<[Mutex<Record>]>,
    next: AtomicUsize,
    counters: [AtomicU64; 7],
    dropped: AtomicU64,
}

impl ListenerLog {
    /// The log of the listener called `name` (e.g. `forward 0.0.0.0:5061`);
    /// `enabled` false: a log that keeps nothing (`--handshake-log off`).
    pub fn new(name: String, enabled: bool) -> ListenerLog {
        ListenerLog {
            name,
            enabled,
            slots: (0..HANDSHAKE_RING_RECORDS)
                .map(|_| Mutex::new(Record::default()))
                .collect(),
            next: AtomicUsize::new(0),
            counters: Default::default(),
            dropped: AtomicU64::new(0),
        }
    }

    /// The listener's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// False under `--handshake-log off`: the listener skips the work of
    /// filling a record (the certificate choice looked up again).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Keep one handshake: counted, and put in the next slot unless a
    /// reader holds it (then counted as dropped). Never waits, never
    /// allocates.
    pub fn record(&self, rec: Record) {
        if !self.enabled {
            return;
        }
        if let Some(c) = self.counters.get(rec.rule.index()) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len().max(1);
        match self.slots.get(i).map(Mutex::try_lock) {
            Some(Ok(mut slot)) => *slot = rec,
            _ => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The ring, oldest first, and the counters, for `handshakes`.
    pub fn view(&self) -> ListenerView {
        let n = self.slots.len();
        let start = self.next.load(Ordering::Relaxed);
        let mut recent = Vec::new();
        for k in 0..n {
            let Some(slot) = self.slots.get((start + k) % n) else {
                continue;
            };
            let r = slot.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if r.at != 0 {
                recent.push(HandshakeView::of(&r));
            }
        }
        recent.sort_by_key(|r| r.at);
        ListenerView {
            listener: self.name.clone(),
            enabled: self.enabled,
            counters: Rule::ALL
                .iter()
                .zip(self.counters.iter())
                .map(|(r, c)| (r.as_str().to_owned(), c.load(Ordering::Relaxed)))
                .collect(),
            dropped: self.dropped.load(Ordering::Relaxed),
            recent,
        }
    }
}

/// One handshake in `handshakes --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandshakeView {
    /// Unix seconds.
    pub at: i64,
    /// RFC 3339.
    pub time: String,
    /// The client's address and port.
    pub peer: Option<String>,
    /// The address it connected to.
    pub local: Option<String>,
    /// `none`, `name`, `ip-literal`.
    pub sni_kind: SniKind,
    /// The SNI sent.
    pub sni: Option<String>,
    /// The certificate served.
    pub cert: Option<String>,
    /// The rule that chose it, or `failed`.
    pub rule: String,
    /// The ALPN protocol agreed.
    pub alpn: Option<String>,
    /// The TLS version agreed.
    pub version: Option<String>,
    /// Why it failed.
    pub failure: Option<String>,
}

impl HandshakeView {
    fn of(r: &Record) -> HandshakeView {
        let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        HandshakeView {
            at: r.at,
            time: crate::clock::rfc3339(r.at),
            peer: r.peer.map(|p| p.to_string()),
            local: r.local.map(|l| l.to_string()),
            sni_kind: r.sni_kind,
            sni: some(&r.sni),
            cert: some(&r.cert),
            rule: r.rule.as_str().to_owned(),
            alpn: some(&r.alpn),
            version: some(r.version),
            failure: some(&r.failure),
        }
    }
}

/// One listener in `handshakes --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerView {
    /// `https ADDR`, `forward ADDR`.
    pub listener: String,
    /// False when the daemon runs with `--handshake-log off`.
    #[serde(default = "on")]
    pub enabled: bool,
    /// Handshakes since start, by rule (`failed` included).
    pub counters: std::collections::BTreeMap<String, u64>,
    /// Records not kept because a reader held their slot.
    pub dropped: u64,
    /// The last handshakes, oldest first.
    pub recent: Vec<HandshakeView>,
}

/// The default of `ListenerView::enabled` (views of older daemons).
fn on() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_last_records_and_counts_every_one() {
        let log = ListenerLog::new("forward 127.0.0.1:5061".into(), true);
        let peer: SocketAddr = "192.0.2.7:5060".parse().unwrap();
        for i in 0..(HANDSHAKE_RING_RECORDS as i64 + 5) {
            let mut r = Record::new(1_000 + i, peer, None);
            r.set_sni(if i % 2 == 0 {
                None
            } else {
                Some("pbx.example")
            });
            r.set_served(
                Some("ab"),
                if i % 2 == 0 {
                    Rule::Default
                } else {
                    Rule::Server
                },
            );
            log.record(r);
        }
        let v = log.view();
        assert_eq!(v.recent.len(), HANDSHAKE_RING_RECORDS);
        assert_eq!(v.recent[0].at, 1_005);
        let total: u64 = v.counters.values().sum();
        assert_eq!(total, HANDSHAKE_RING_RECORDS as u64 + 5);
        assert_eq!(v.dropped, 0);
    }

    #[test]
    fn long_values_are_cut_not_refused() {
        let mut r = Record::new(1, "192.0.2.7:1".parse().unwrap(), None);
        r.set_sni(Some(&"a".repeat(400)));
        r.set_failure(&"x".repeat(1000));
        assert_eq!(r.sni.len(), MAX_DNS_NAME_LEN);
        assert_eq!(r.failure.len(), FAILURE_LEN);
        r.set_sni(Some("192.0.2.1"));
        assert_eq!(r.sni_kind, SniKind::IpLiteral);
    }
}
