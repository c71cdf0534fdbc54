//! The etcd backend of the storage trait (`Kv`, issue 16): one store shared
//! by every node of a cluster, over etcd's v3 JSON gateway
//! (`POST /v3/kv/range`, `/v3/kv/txn`, `/v3/watch`; keys and values Base64).
//!
//! Why: several PBX nodes behind one set of names must serve the same
//! certificates; etcd (Debian `etcd-server` 3.4) replicates and orders the
//! writes, so this module only maps `Kv` onto it. The gateway is plain
//! HTTP/1.1 + JSON, spoken here by a small blocking client of std
//! `TcpStream`s (`Kv` is a sync trait run on the blocking pool), so no gRPC
//! stack and no second async runtime enter the binary. `etcd+https://`
//! speaks TLS through rustls (blocking `StreamOwned`), with the members' CA
//! and optionally a client certificate (`StoreTls`).
//!
//! The mapping (`--store etcd+http://H1:2379,H2:2379/PREFIX`): tree `T`,
//! key `K` is the etcd key `PREFIX/T/K`; `get` and `scan_prefix` are Range
//! requests (a scan pages at the first page's revision: one consistent
//! view); `apply` is one Txn of Put/DeleteRange (atomic, committed through
//! raft and fsynced by etcd before it answers; a key written twice in one
//! batch keeps its last op, as etcd refuses duplicate keys in a Txn);
//! `compare_and_swap` is a Txn whose If compares the value (or
//! `create_revision == 0` for "absent") and whose Else reads the current
//! value; `watch_prefix`/`watch_all` are Watch streams; the lease calls put
//! the `LeaseRecord` with an etcd lease (Lease Grant + a Txn comparing the
//! record's revision; Lease Revoke), so a lease lapses on etcd's clock.
//!
//! What must hold: nothing etcd (or a stranger on its port) sends panics:
//! bounded reads (`limits::ETCD_*`), a named `StoreError` for every failure.
//! Endpoint failover: a request goes to the member that last answered,
//! then to the others in order, for `ETCD_ROUNDS` rounds; a request that
//! may have been applied already (its answer lost) is retried only when it
//! is idempotent (reads, `apply`), never a compare-and-swap, which then
//! reports `store-unavailable`. No member answering is
//! `StoreError::Unavailable` ("store-unavailable").

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64ct::{Base64, Encoding};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use serde_json::{json, Value};

use crate::limits::{
    CLIENT_MAX_HEAD, CLIENT_MAX_HEADERS, ETCD_CONNECT_TIMEOUT, ETCD_IO_TIMEOUT, ETCD_MAX_ENDPOINTS,
    ETCD_MAX_RESPONSE, ETCD_ROUNDS, ETCD_ROUND_PAUSE, ETCD_SCAN_PAGE, ETCD_WATCH_KEEPALIVE_IDLE,
    ETCD_WATCH_KEEPALIVE_INTERVAL, ETCD_WATCH_KEEPALIVE_PROBES,
};
use crate::store::{Cas, Change, Entry, Kv, LeaseRecord, Op, StoreError, Tree, Watch};

/// The URL scheme of an etcd store over plain HTTP (loopback, trusted LAN).
pub const SCHEME: &str = "etcd+http://";

/// The URL scheme of an etcd store over TLS (`--store-ca`, and for mutual
/// TLS `--store-cert` + `--store-key`).
pub const SCHEME_TLS: &str = "etcd+https://";

/// A parsed `--store` / `store =` value: etcd members and the key prefix.
/// Parsed here only (`FromStr`), for the flag, its environment variable and
/// the config file alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdUrl {
    /// `host:port` of each member, in the order given.
    pub endpoints: Vec<String>,
    /// The key prefix, without slashes at either end.
    pub prefix: String,
    /// `etcd+https://`: TLS to every member.
    pub tls: bool,
}

impl core::fmt::Display for EtcdUrl {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let scheme = if self.tls { SCHEME_TLS } else { SCHEME };
        write!(f, "{scheme}{}/{}", self.endpoints.join(","), self.prefix)
    }
}

impl std::str::FromStr for EtcdUrl {
    type Err = String;

    /// `etcd+http(s)://HOST:PORT[,HOST:PORT...]/PREFIX`: ports required,
    /// hosts names or IPv4 or `[IPv6]`, PREFIX one or more segments of
    /// letters, digits, `.`, `_`, `-` joined by `/`.
    fn from_str(s: &str) -> Result<EtcdUrl, String> {
        let usage = || {
            format!(
                "a store URL is etcd+http(s)://HOST:PORT[,HOST:PORT...]/PREFIX, got {:?}",
                s.chars().take(200).collect::<String>()
            )
        };
        let s = s.trim();
        let (tls, rest) = match (s.strip_prefix(SCHEME), s.strip_prefix(SCHEME_TLS)) {
            (Some(rest), _) => (false, rest),
            (_, Some(rest)) => (true, rest),
            _ => return Err(usage()),
        };
        let (hosts, prefix) = rest.split_once('/').ok_or_else(usage)?;
        let prefix = prefix.trim_end_matches('/');
        let segment_ok = |seg: &str| {
            !seg.is_empty()
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        };
        if !prefix.split('/').all(segment_ok) {
            return Err(usage());
        }
        let endpoints: Vec<String> = hosts.split(',').map(str::to_owned).collect();
        if endpoints.len() > ETCD_MAX_ENDPOINTS {
            return Err(format!(
                "a store URL lists at most {ETCD_MAX_ENDPOINTS} endpoints"
            ));
        }
        for ep in &endpoints {
            let (host, port) = ep.rsplit_once(':').ok_or_else(usage)?;
            let host_ok = match host.strip_prefix('[') {
                Some(v6) => v6
                    .strip_suffix(']')
                    .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok()),
                None => {
                    !host.is_empty()
                        && host
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b".-".contains(&b))
                }
            };
            if !host_ok || port.parse::<u16>().map_or(true, |p| p == 0) {
                return Err(usage());
            }
        }
        Ok(EtcdUrl {
            endpoints,
            prefix: prefix.to_owned(),
            tls,
        })
    }
}

/// The TLS files of an `etcd+https://` store (`--store-ca FILE`,
/// `--store-cert FILE`, `--store-key FILE`, or `store-ca = ...` lines).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoreTls {
    /// PEM CA certificate(s) the members' certificates must chain to.
    pub ca: Option<PathBuf>,
    /// PEM client certificate chain (mutual TLS), with `key`.
    pub cert: Option<PathBuf>,
    /// PEM client private key (PKCS#8, PKCS#1 or SEC1), with `cert`.
    pub key: Option<PathBuf>,
}

impl StoreTls {
    /// Whether any file is given.
    pub fn is_empty(&self) -> bool {
        self.ca.is_none() && self.cert.is_none() && self.key.is_none()
    }

    /// The rustls client config of these files (TLS 1.2/1.3, ring).
    fn client_config(&self) -> Result<Arc<ClientConfig>, StoreError> {
        let bad = |e: String| StoreError::BadTls(e);
        let read = |path: &Path| {
            let bytes = std::fs::read(path)
                .map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
            crate::pem::parse(&bytes).map_err(|e| bad(format!("{}: {e}", path.display())))
        };
        let ca = self
            .ca
            .as_deref()
            .ok_or_else(|| bad("etcd+https:// needs --store-ca (the members' CA)".into()))?;
        let mut roots = RootCertStore::empty();
        for block in read(ca)?.into_iter().filter(|b| b.label == "CERTIFICATE") {
            roots
                .add(CertificateDer::from(block.der))
                .map_err(|e| bad(format!("{}: {e}", ca.display())))?;
        }
        if roots.is_empty() {
            return Err(bad(format!("{}: no usable CA certificate", ca.display())));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| bad(e.to_string()))?
            .with_root_certificates(roots);
        let config = match (&self.cert, &self.key) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert), Some(key)) => {
                let chain: Vec<CertificateDer<'static>> = read(cert)?
                    .into_iter()
                    .filter(|b| b.label == "CERTIFICATE")
                    .map(|b| CertificateDer::from(b.der))
                    .collect();
                let key_der = read(key)?
                    .into_iter()
                    .find_map(|b| match b.label.as_str() {
                        "PRIVATE KEY" => Some(PrivateKeyDer::Pkcs8(b.der.into())),
                        "RSA PRIVATE KEY" => Some(PrivateKeyDer::Pkcs1(b.der.into())),
                        "EC PRIVATE KEY" => Some(PrivateKeyDer::Sec1(b.der.into())),
                        _ => None,
                    })
                    .ok_or_else(|| bad(format!("{}: no private key", key.display())))?;
                builder
                    .with_client_auth_cert(chain, key_der)
                    .map_err(|e| bad(format!("client certificate and key: {e}")))?
            }
            _ => {
                return Err(bad(
                    "--store-cert and --store-key go together (mutual TLS)".into()
                ))
            }
        };
        Ok(Arc::new(config))
    }
}

/// etcd behind `Kv`.
pub struct EtcdKv {
    url: EtcdUrl,
    /// TLS to the members (`etcd+https://`).
    tls: Option<Arc<ClientConfig>>,
    /// Index of the endpoint that answered last (tried first).
    current: AtomicUsize,
}

/// What one attempt on one endpoint ended with.
enum Attempt {
    /// An HTTP answer (status, body).
    Answer(u16, Vec<u8>),
    /// Nothing was sent (connection refused, timed out): safe to retry.
    NotSent(String),
    /// Sent, but no complete answer: it may have been applied.
    Lost(String),
}

fn unavailable(e: impl core::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn bad_answer(e: impl core::fmt::Display) -> StoreError {
    StoreError::Backend(format!("etcd answered oddly: {e}"))
}

fn b64(bytes: &[u8]) -> String {
    Base64::encode_string(bytes)
}

/// A Base64 field of an etcd answer (absent: empty, proto3 JSON omits it).
fn field_bytes(v: &Value, name: &str) -> Result<Vec<u8>, StoreError> {
    match v.get(name).and_then(Value::as_str) {
        None => Ok(Vec::new()),
        Some(s) => Base64::decode_vec(s).map_err(|_| bad_answer(format!("{name} not Base64"))),
    }
}

/// The first key after every key starting with `prefix` (etcd's range_end
/// of a prefix); all-0xff (never here: prefixes are ASCII) is "\0", the
/// whole keyspace.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl EtcdKv {
    /// A client of the members in `url` (nothing is contacted yet); `tls`
    /// must be given for `etcd+https://` and only then.
    pub fn new(url: EtcdUrl, tls: &StoreTls) -> Result<EtcdKv, StoreError> {
        let tls = match (url.tls, tls.is_empty()) {
            (true, _) => Some(tls.client_config()?),
            (false, true) => None,
            (false, false) => {
                return Err(StoreError::BadTls(
                    "--store-ca/--store-cert/--store-key need an etcd+https:// store".into(),
                ))
            }
        };
        Ok(EtcdKv {
            url,
            tls,
            current: AtomicUsize::new(0),
        })
    }

    /// The URL this client uses.
    pub fn url(&self) -> &EtcdUrl {
        &self.url
    }

    /// `PREFIX/TREE/`.
    fn tree_prefix(&self, tree: Tree) -> Vec<u8> {
        format!("{}/{}/", self.url.prefix, tree.name()).into_bytes()
    }

    fn key(&self, tree: Tree, key: &[u8]) -> Vec<u8> {
        let mut k = self.tree_prefix(tree);
        k.extend_from_slice(key);
        k
    }

    /// POST `body` to `path` on the members, with failover; the answer's
    /// JSON. `idempotent`: may be sent again after an answer was lost.
    fn call(&self, path: &str, body: &Value, idempotent: bool) -> Result<Value, StoreError> {
        let body = body.to_string();
        let n = self.url.endpoints.len();
        let start = self.current.load(Ordering::Relaxed);
        let mut last = String::from("no endpoint");
        for round in 0..ETCD_ROUNDS {
            if round > 0 {
                std::thread::sleep(ETCD_ROUND_PAUSE);
            }
            for i in 0..n {
                let index = (start + i) % n;
                let Some(endpoint) = self.url.endpoints.get(index) else {
                    continue;
                };
                match exchange(self.tls.as_ref(), endpoint, path, body.as_bytes()) {
                    Attempt::Answer(status, raw) => {
                        let answer: Value = match serde_json::from_slice(&raw) {
                            Ok(v) => v,
                            Err(e) if status == 200 => {
                                return Err(bad_answer(format!("{endpoint}: {e}")))
                            }
                            // Not etcd's JSON (a proxy's error page): the
                            // next member, as for a lost answer.
                            Err(_) => {
                                last = format!("{endpoint}: HTTP {status}");
                                if !idempotent {
                                    return Err(unavailable(format!(
                                        "{last} (the write may or may not have been applied)"
                                    )));
                                }
                                continue;
                            }
                        };
                        if status == 200 {
                            self.current.store(index, Ordering::Relaxed);
                            return Ok(answer);
                        }
                        let code = answer.get("code").and_then(Value::as_u64).unwrap_or(0);
                        let message = answer
                            .get("message")
                            .or_else(|| answer.get("error"))
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .chars()
                            .take(300)
                            .collect::<String>();
                        match code {
                            // gRPC UNAVAILABLE / DEADLINE_EXCEEDED: no leader,
                            // member stopping, request timed out.
                            14 | 4 => {
                                last = format!("{endpoint}: {message}");
                                if !idempotent {
                                    return Err(unavailable(format!(
                                        "{last} (the write may or may not have been applied)"
                                    )));
                                }
                            }
                            // ABORTED / FAILED_PRECONDITION.
                            10 | 9 => return Err(StoreError::Conflict(message)),
                            _ => {
                                return Err(StoreError::Backend(format!(
                                    "etcd {endpoint} refused the request (HTTP {status}, code {code}): {message}"
                                )))
                            }
                        }
                    }
                    Attempt::NotSent(e) => last = format!("{endpoint}: {e}"),
                    Attempt::Lost(e) => {
                        last = format!("{endpoint}: {e}");
                        if !idempotent {
                            return Err(unavailable(format!(
                                "{last} (the write may or may not have been applied)"
                            )));
                        }
                    }
                }
            }
        }
        Err(unavailable(format!(
            "no etcd member of {} answered ({last})",
            self.url
        )))
    }

    /// Range over `[key, end)` (`end` None: one key), all pages at one
    /// revision; keys returned whole.
    fn range(&self, key: &[u8], end: Option<&[u8]>) -> Result<Vec<Entry>, StoreError> {
        let mut out = Vec::new();
        let mut from = key.to_vec();
        let mut revision: Option<String> = None;
        loop {
            let mut req = json!({ "key": b64(&from) });
            if let Some(end) = end {
                req["range_end"] = json!(b64(end));
                req["limit"] = json!(ETCD_SCAN_PAGE);
            }
            if let Some(rev) = &revision {
                req["revision"] = json!(rev);
            }
            let answer = self.call("/v3/kv/range", &req, true)?;
            if revision.is_none() {
                revision = answer
                    .pointer("/header/revision")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
            }
            let kvs = answer.get("kvs").and_then(Value::as_array);
            for kv in kvs.into_iter().flatten() {
                out.push((field_bytes(kv, "key")?, field_bytes(kv, "value")?));
            }
            let more = answer.get("more").and_then(Value::as_bool) == Some(true);
            match (end, out.last()) {
                (Some(_), Some((last, _))) if more => {
                    from = last.clone();
                    from.push(0);
                }
                _ => return Ok(out),
            }
        }
    }

    /// A Watch stream over `[key, end)`; changes' keys lose their first
    /// `strip` bytes.
    fn watch_range(&self, key: Vec<u8>, end: Vec<u8>) -> Result<EtcdWatch, StoreError> {
        let strip = key.len();
        self.watch_from(key, end, strip)
    }

    fn watch_from(
        &self,
        key: Vec<u8>,
        end: Vec<u8>,
        strip: usize,
    ) -> Result<EtcdWatch, StoreError> {
        let body =
            json!({ "create_request": { "key": b64(&key), "range_end": b64(&end) } }).to_string();
        let n = self.url.endpoints.len();
        let start = self.current.load(Ordering::Relaxed);
        let mut last = String::from("no endpoint");
        for i in 0..n {
            let Some(endpoint) = self.url.endpoints.get((start + i) % n) else {
                continue;
            };
            match EtcdWatch::open(self.tls.as_ref(), endpoint, body.as_bytes(), strip) {
                Ok(w) => return Ok(w),
                Err(e) => last = format!("{endpoint}: {e}"),
            }
        }
        Err(unavailable(format!(
            "cannot watch {} on any member ({last})",
            self.url
        )))
    }
}

/// A lease record as etcd holds it.
struct LeaseEntry {
    record: LeaseRecord,
    /// Its key's `mod_revision` (the compare of a renewal or release).
    mod_revision: String,
    /// The etcd lease it is attached to (none: a record without one).
    lease: Option<String>,
}

impl LeaseEntry {
    /// Live: attached to an etcd lease (etcd deletes the key when the lease
    /// expires, by the cluster's clock), or, without one, before its
    /// recorded expiry.
    fn live(&self) -> bool {
        self.lease.is_some() || self.record.expires_ms > unix_ms()
    }
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// etcd leases (`/v3/lease/grant`, `/v3/lease/revoke`) behind the lease
/// calls of `Kv`: a lease record is put with an etcd lease of the TTL, in a
/// Txn that compares the record's revision (absent: `create_revision ==
/// 0`), so of two contenders exactly one wins; a renewal puts it again
/// with a fresh lease and revokes the old one. A holder that dies loses
/// the record when its lease runs out, on etcd's clock (whole seconds,
/// at least etcd's minimum TTL).
impl EtcdKv {
    fn lease_entry(&self, key: &[u8]) -> Result<Option<LeaseEntry>, StoreError> {
        let answer = self.call("/v3/kv/range", &json!({ "key": b64(key) }), true)?;
        let Some(kv) = answer.pointer("/kvs/0") else {
            return Ok(None);
        };
        let value = field_bytes(kv, "value")?;
        let Some(record) = LeaseRecord::decode(&value) else {
            return Err(StoreError::Corrupt("a lease record is too short".into()));
        };
        let text = |name: &str| kv.get(name).and_then(Value::as_str).map(str::to_owned);
        Ok(Some(LeaseEntry {
            record,
            mod_revision: text("mod_revision").unwrap_or_default(),
            lease: text("lease").filter(|l| l != "0"),
        }))
    }

    /// A new etcd lease of `ttl` (whole seconds, at least 1); its ID.
    fn grant(&self, ttl: Duration) -> Result<String, StoreError> {
        let secs = ttl.as_millis().div_ceil(1000).max(1);
        let secs = u64::try_from(secs).unwrap_or(u64::MAX);
        // A repeated grant only leaves an unused lease to expire.
        let answer = self.call("/v3/lease/grant", &json!({ "TTL": secs }), true)?;
        answer
            .get("ID")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| bad_answer("a lease grant without an ID"))
    }

    /// Revoke an etcd lease (its keys go with it); best effort: a lease
    /// that already expired, or a failure, only leaves it to its TTL.
    fn revoke(&self, id: &str) {
        let _ = self.call("/v3/lease/revoke", &json!({ "ID": id }), true);
    }

    /// Put `record` at `key` with etcd lease `id` if the key is still at
    /// `seen` (`None`: absent), or delete it (`record` None).
    fn lease_txn(
        &self,
        key: &[u8],
        seen: Option<&str>,
        then: Option<(&LeaseRecord, &str)>,
    ) -> Result<bool, StoreError> {
        let k = b64(key);
        let compare = match seen {
            None => {
                json!({"target": "CREATE", "result": "EQUAL", "key": k, "create_revision": "0"})
            }
            Some(rev) => json!({"target": "MOD", "result": "EQUAL", "key": k, "mod_revision": rev}),
        };
        let then = match then {
            Some((record, id)) => json!({"request_put": {
                "key": k, "value": b64(&record.encode()), "lease": id
            }}),
            None => json!({"request_delete_range": {"key": k}}),
        };
        let answer = self.call(
            "/v3/kv/txn",
            &json!({ "compare": [compare], "success": [then] }),
            false,
        )?;
        Ok(answer.get("succeeded").and_then(Value::as_bool) == Some(true))
    }

    /// Put `holder`'s record for `ttl` under a fresh etcd lease if the key
    /// is still as `current` was read; the old lease (or the unused new
    /// one) is revoked.
    fn lease_put(
        &self,
        key: &[u8],
        current: Option<&LeaseEntry>,
        holder: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let id = self.grant(ttl)?;
        let record = LeaseRecord {
            holder: holder.to_vec(),
            expires_ms: unix_ms()
                .saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)),
        };
        let seen = current.map(|c| c.mod_revision.as_str());
        let won = self.lease_txn(key, seen, Some((&record, &id)))?;
        match (won, current.and_then(|c| c.lease.as_deref())) {
            (true, Some(old)) => self.revoke(old),
            (true, None) => {}
            (false, _) => self.revoke(&id),
        }
        Ok(won)
    }
}

/// The last op per key, in the batch's order of their last occurrence
/// (etcd refuses a Txn that names one key twice).
fn last_op_per_key<'a>(kv: &EtcdKv, ops: &'a [Op]) -> Vec<(Vec<u8>, &'a Op)> {
    let mut out: Vec<(Vec<u8>, &Op)> = Vec::with_capacity(ops.len());
    for op in ops {
        let key = match op {
            Op::Put(t, k, _) | Op::Delete(t, k) => kv.key(*t, k),
        };
        out.retain(|(k, _)| *k != key);
        out.push((key, op));
    }
    out
}

impl Kv for EtcdKv {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .range(&self.key(tree, key), None)?
            .into_iter()
            .next()
            .map(|(_, v)| v))
    }

    fn scan_prefix(&self, tree: Tree, prefix: &[u8]) -> Result<Vec<Entry>, StoreError> {
        let strip = self.tree_prefix(tree).len();
        let start = self.key(tree, prefix);
        let end = prefix_end(&start);
        Ok(self
            .range(&start, Some(&end))?
            .into_iter()
            .map(|(k, v)| (k.get(strip..).unwrap_or_default().to_vec(), v))
            .collect())
    }

    fn apply(&self, ops: &[Op]) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        let success: Vec<Value> = last_op_per_key(self, ops)
            .into_iter()
            .map(|(key, op)| match op {
                Op::Put(_, _, v) => json!({"request_put": {"key": b64(&key), "value": b64(v)}}),
                Op::Delete(..) => json!({"request_delete_range": {"key": b64(&key)}}),
            })
            .collect();
        let answer = self.call("/v3/kv/txn", &json!({ "success": success }), true)?;
        if answer.get("succeeded").and_then(Value::as_bool) != Some(true) {
            return Err(bad_answer(
                "a transaction without conditions did not succeed",
            ));
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        // etcd made each write durable (raft log, fsync) before answering.
        Ok(())
    }

    fn compare_and_swap(
        &self,
        tree: Tree,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<Cas, StoreError> {
        let k = b64(&self.key(tree, key));
        let compare = match expected {
            None => {
                json!({"target": "CREATE", "result": "EQUAL", "key": k, "create_revision": "0"})
            }
            // etcd fails a value compare on an absent key, as wanted.
            Some(v) => json!({"target": "VALUE", "result": "EQUAL", "key": k, "value": b64(v)}),
        };
        let then = match new {
            Some(v) => json!({"request_put": {"key": k, "value": b64(v)}}),
            None => json!({"request_delete_range": {"key": k}}),
        };
        let txn = json!({
            "compare": [compare],
            "success": [then],
            "failure": [{"request_range": {"key": k}}],
        });
        let answer = self.call("/v3/kv/txn", &txn, false)?;
        if answer.get("succeeded").and_then(Value::as_bool) == Some(true) {
            return Ok(Cas::Swapped);
        }
        let current = answer
            .pointer("/responses/0/response_range/kvs/0")
            .map(|kv| field_bytes(kv, "value"))
            .transpose()?;
        Ok(Cas::Conflict(current))
    }

    fn watch_prefix(&self, tree: Tree, prefix: &[u8]) -> Result<Box<dyn Watch>, StoreError> {
        let strip = self.tree_prefix(tree).len();
        let start = self.key(tree, prefix);
        let end = prefix_end(&start);
        Ok(Box::new(self.watch_from(start, end, strip)?))
    }

    fn watch_all(&self) -> Result<Option<Box<dyn Watch>>, StoreError> {
        let start = format!("{}/", self.url.prefix).into_bytes();
        let end = prefix_end(&start);
        Ok(Some(Box::new(self.watch_range(start, end)?)))
    }

    fn max_batch_ops(&self) -> Option<usize> {
        Some(crate::limits::ETCD_MAX_TXN_OPS)
    }

    fn location(&self) -> String {
        self.url.to_string()
    }

    fn shared(&self) -> bool {
        true
    }

    fn revision(&self) -> Result<Option<u64>, StoreError> {
        let start = format!("{}/", self.url.prefix).into_bytes();
        let req = json!({
            "key": b64(&start),
            "range_end": b64(&prefix_end(&start)),
            "count_only": true,
        });
        let answer = self.call("/v3/kv/range", &req, true)?;
        Ok(answer
            .pointer("/header/revision")
            .and_then(Value::as_str)
            .and_then(|r| r.parse().ok()))
    }

    fn lease_acquire(&self, name: &[u8], holder: &[u8], ttl: Duration) -> Result<bool, StoreError> {
        let key = self.key(Tree::Leases, name);
        // One read: the put compares this revision (a lapsed record without
        // an etcd lease is taken over at it).
        let current = self.lease_entry(&key)?;
        if current
            .as_ref()
            .is_some_and(|c| c.live() && c.record.holder != holder)
        {
            return Ok(false);
        }
        self.lease_put(&key, current.as_ref(), holder, ttl)
    }

    fn lease_keep_alive(
        &self,
        name: &[u8],
        holder: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let key = self.key(Tree::Leases, name);
        match self.lease_entry(&key)?.filter(LeaseEntry::live) {
            Some(c) if c.record.holder == holder => self.lease_put(&key, Some(&c), holder, ttl),
            _ => Ok(false),
        }
    }

    fn lease_release(&self, name: &[u8], holder: &[u8]) -> Result<(), StoreError> {
        let key = self.key(Tree::Leases, name);
        if let Some(c) = self.lease_entry(&key)? {
            if c.record.holder == holder && self.lease_txn(&key, Some(&c.mod_revision), None)? {
                if let Some(old) = &c.lease {
                    self.revoke(old);
                }
            }
        }
        Ok(())
    }

    fn lease_holder(&self, name: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .lease_entry(&self.key(Tree::Leases, name))?
            .filter(LeaseEntry::live)
            .map(|c| c.record.holder))
    }
}

/// A connection to one member, plain or TLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => &s.sock,
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

/// Connect to `endpoint` (`host:port`; TLS with `tls`, the name checked
/// being its host), bounded by `ETCD_CONNECT_TIMEOUT` per address, with
/// `ETCD_IO_TIMEOUT` on reads and writes. The TLS handshake happens on the
/// first write.
fn connect(tls: Option<&Arc<ClientConfig>>, endpoint: &str) -> Result<Conn, String> {
    let tcp = connect_tcp(endpoint)?;
    let Some(config) = tls else {
        return Ok(Conn::Plain(tcp));
    };
    let host = endpoint
        .rsplit_once(':')
        .map_or(endpoint, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let name = ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
    let conn = ClientConnection::new(config.clone(), name).map_err(|e| e.to_string())?;
    Ok(Conn::Tls(Box::new(StreamOwned::new(conn, tcp))))
}

fn connect_tcp(endpoint: &str) -> Result<TcpStream, String> {
    let addrs = endpoint.to_socket_addrs().map_err(|e| e.to_string())?;
    let mut last = String::from("no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, ETCD_CONNECT_TIMEOUT) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                s.set_read_timeout(Some(ETCD_IO_TIMEOUT))
                    .and_then(|()| s.set_write_timeout(Some(ETCD_IO_TIMEOUT)))
                    .map_err(|e| e.to_string())?;
                return Ok(s);
            }
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

/// TCP keepalive on a watch stream (`ETCD_WATCH_KEEPALIVE_*`).
fn keepalive(s: &TcpStream) -> rustix::io::Result<()> {
    use rustix::net::sockopt;
    sockopt::set_socket_keepalive(s, true)?;
    sockopt::set_tcp_keepidle(s, ETCD_WATCH_KEEPALIVE_IDLE)?;
    sockopt::set_tcp_keepintvl(s, ETCD_WATCH_KEEPALIVE_INTERVAL)?;
    sockopt::set_tcp_keepcnt(s, ETCD_WATCH_KEEPALIVE_PROBES)
}

/// The request head and body of a POST.
/// A watch asks for etcd's "require leader" (the gRPC metadata
/// `hasleader`, passed by the gateway from a `Grpc-Metadata-` header): a
/// member cut off from the quorum ends the stream instead of keeping it
/// silently stale, and the node fails over and resyncs.
fn request(endpoint: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let require_leader = if path == "/v3/watch" {
        "Grpc-Metadata-hasleader: true\r\n"
    } else {
        ""
    };
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {endpoint}\r\nContent-Type: application/json\r\n\
         {require_leader}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}

/// One request on one endpoint, read to the end of the connection.
fn exchange(tls: Option<&Arc<ClientConfig>>, endpoint: &str, path: &str, body: &[u8]) -> Attempt {
    let mut stream = match connect(tls, endpoint) {
        Ok(s) => s,
        Err(e) => return Attempt::NotSent(e),
    };
    if let Err(e) = stream.write_all(&request(endpoint, path, body)) {
        return Attempt::Lost(e.to_string());
    }
    let deadline = Instant::now() + ETCD_IO_TIMEOUT;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if Instant::now() > deadline {
            return Attempt::Lost("no complete answer in time".into());
        }
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(buf.get(..n).unwrap_or_default());
                if raw.len() > ETCD_MAX_RESPONSE {
                    return Attempt::Lost("answer too large".into());
                }
                if let Some(Ok((status, body))) = complete(&raw) {
                    return Attempt::Answer(status, body);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // A member closing TLS without close_notify: judged by framing.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Attempt::Lost(e.to_string()),
        }
    }
    match head(&raw) {
        // A body framed by the end of the connection: all of it is here.
        Some(Ok((status, n, Framing::Close))) => {
            Attempt::Answer(status, raw.get(n..).unwrap_or_default().to_vec())
        }
        Some(Err(e)) => Attempt::Lost(e),
        _ => Attempt::Lost("connection closed before a complete answer".into()),
    }
}

/// An HTTP response head: status and byte length; `None` if incomplete.
fn head(raw: &[u8]) -> Option<Result<(u16, usize, Framing), String>> {
    let mut headers = [httparse::EMPTY_HEADER; CLIENT_MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(raw) {
        Ok(httparse::Status::Complete(n)) => {
            let value = |name: &str| {
                resp.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| h.value)
            };
            let framing =
                if value("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case(b"chunked")) {
                    Framing::Chunked
                } else if let Some(len) = value("content-length") {
                    match std::str::from_utf8(len)
                        .ok()
                        .and_then(|v| v.trim().parse().ok())
                    {
                        Some(len) => Framing::Length(len),
                        None => return Some(Err("bad Content-Length".into())),
                    }
                } else {
                    Framing::Close
                };
            Some(Ok((resp.code.unwrap_or(0), n, framing)))
        }
        Ok(httparse::Status::Partial) if raw.len() > CLIENT_MAX_HEAD => {
            Some(Err("answer head too large".into()))
        }
        Ok(httparse::Status::Partial) => None,
        Err(e) => Some(Err(format!("not HTTP: {e}"))),
    }
}

/// How a response body ends.
#[derive(Debug, Clone, Copy)]
enum Framing {
    Length(usize),
    Chunked,
    Close,
}

/// The status and body of a complete response in `raw`; `None`: not yet
/// complete (for `Framing::Close`, complete means the caller saw the end).
fn complete(raw: &[u8]) -> Option<Result<(u16, Vec<u8>), String>> {
    let (status, n, framing) = match head(raw)? {
        Ok(h) => h,
        Err(e) => return Some(Err(e)),
    };
    let rest = raw.get(n..).unwrap_or_default();
    match framing {
        Framing::Length(len) => rest.get(..len).map(|b| Ok((status, b.to_vec()))),
        Framing::Chunked => {
            let mut pending = rest.to_vec();
            let mut body = Vec::new();
            match dechunk(&mut pending, &mut body) {
                Ok(true) => Some(Ok((status, body))),
                Ok(false) => None,
                Err(e) => Some(Err(e)),
            }
        }
        Framing::Close => None,
    }
}

/// Move the complete chunks at the front of `raw` into `out`; `true` once
/// the last (empty) chunk was seen.
fn dechunk(raw: &mut Vec<u8>, out: &mut Vec<u8>) -> Result<bool, String> {
    let bad = || String::from("bad chunked encoding");
    loop {
        let Some(line_end) = raw.windows(2).position(|w| w == b"\r\n") else {
            return if raw.len() > 64 {
                Err(bad())
            } else {
                Ok(false)
            };
        };
        let line =
            std::str::from_utf8(raw.get(..line_end).unwrap_or_default()).map_err(|_| bad())?;
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| bad())?;
        if size > ETCD_MAX_RESPONSE {
            return Err("chunk too large".into());
        }
        let data = line_end + 2;
        if size == 0 {
            raw.drain(..data.min(raw.len()));
            return Ok(true);
        }
        if raw.len() < data + size + 2 {
            return Ok(false);
        }
        out.extend_from_slice(raw.get(data..data + size).ok_or_else(bad)?);
        raw.drain(..data + size + 2);
    }
}

/// A live Watch stream: changes are read off the socket as they come.
struct EtcdWatch {
    stream: Conn,
    /// Received bytes not yet de-chunked.
    raw: Vec<u8>,
    /// De-chunked bytes not yet split into JSON lines.
    body: Vec<u8>,
    /// Decoded changes not yet handed out.
    queue: VecDeque<Change>,
    /// Bytes of each etcd key dropped in the changes handed out.
    strip: usize,
    /// The stream ended (reported once the messages before it are taken).
    ended: bool,
}

impl EtcdWatch {
    /// Open the stream and wait for etcd's "created" answer: changes
    /// committed after this returns are all seen.
    fn open(
        tls: Option<&Arc<ClientConfig>>,
        endpoint: &str,
        body: &[u8],
        strip: usize,
    ) -> Result<EtcdWatch, String> {
        let mut stream = connect(tls, endpoint)?;
        keepalive(stream.tcp()).map_err(|e| format!("TCP keepalive: {e}"))?;
        stream
            .write_all(&request(endpoint, "/v3/watch", body))
            .map_err(|e| e.to_string())?;
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        let (status, n) = loop {
            let got = stream.read(&mut buf).map_err(|e| e.to_string())?;
            if got == 0 {
                return Err("closed before answering the watch".into());
            }
            raw.extend_from_slice(buf.get(..got).unwrap_or_default());
            if let Some(h) = head(&raw) {
                let (status, n, framing) = h?;
                if !matches!(framing, Framing::Chunked) && status == 200 {
                    return Err("the watch answer is not a stream".into());
                }
                break (status, n);
            }
        };
        if status != 200 {
            return Err(format!("HTTP {status}"));
        }
        let mut watch = EtcdWatch {
            stream,
            raw: raw.get(n..).unwrap_or_default().to_vec(),
            body: Vec::new(),
            queue: VecDeque::new(),
            strip,
            ended: false,
        };
        if dechunk(&mut watch.raw, &mut watch.body)? {
            return Err("the watch stream ended at once".into());
        }
        let deadline = Instant::now() + ETCD_IO_TIMEOUT;
        loop {
            if let Some(message) = watch.next_message().map_err(|e| e.to_string())? {
                if message.pointer("/result/created").and_then(Value::as_bool) == Some(true) {
                    return Ok(watch);
                }
                return Err(format!("unexpected first watch message: {message}"));
            }
            if watch.ended {
                return Err("the watch stream ended before etcd confirmed it".into());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !watch.fill(left).map_err(|e| e.to_string())? {
                return Err("etcd did not confirm the watch".into());
            }
        }
    }

    /// Read more bytes (waiting at most `wait`); `false`: none came in time.
    fn fill(&mut self, wait: Duration) -> Result<bool, StoreError> {
        self.stream
            .tcp()
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
            .map_err(unavailable)?;
        let mut buf = [0u8; 16 * 1024];
        match self.stream.read(&mut buf) {
            Ok(0) => {
                self.ended = true;
                Ok(true)
            }
            Ok(n) => {
                self.raw.extend_from_slice(buf.get(..n).unwrap_or_default());
                // The messages before the end (e.g. etcd's "no leader") are
                // still taken; the end is reported after them.
                if dechunk(&mut self.raw, &mut self.body).map_err(bad_answer)? {
                    self.ended = true;
                }
                if self.raw.len() + self.body.len() > ETCD_MAX_RESPONSE {
                    return Err(bad_answer("a watch message is too large"));
                }
                Ok(true)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(unavailable(format!("the etcd watch stream failed: {e}"))),
        }
    }

    /// The next complete JSON line of the stream, if one arrived.
    fn next_message(&mut self) -> Result<Option<Value>, StoreError> {
        let end = match self.body.iter().position(|b| *b == b'\n') {
            Some(end) => end,
            // etcd's last message (an error) may end the stream unterminated.
            None if self.ended && !self.body.trim_ascii().is_empty() => self.body.len() - 1,
            None => return Ok(None),
        };
        let line: Vec<u8> = self.body.drain(..=end).collect();
        if line.trim_ascii().is_empty() {
            return self.next_message();
        }
        let message: Value = serde_json::from_slice(&line).map_err(bad_answer)?;
        Ok(Some(message))
    }

    /// Queue the changes of one message; a cancel (compaction) or error
    /// ends the watch with an error (the caller then resyncs).
    fn take(&mut self, message: &Value) -> Result<(), StoreError> {
        if let Some(e) = message.get("error") {
            return Err(unavailable(format!("the etcd watch failed: {e}")));
        }
        let Some(result) = message.get("result") else {
            return Err(bad_answer(format!("watch message {message}")));
        };
        if result.get("canceled").and_then(Value::as_bool) == Some(true) {
            return Err(unavailable(format!(
                "etcd cancelled the watch: {}",
                result
                    .get("cancel_reason")
                    .and_then(Value::as_str)
                    .unwrap_or("compacted")
            )));
        }
        for event in result
            .get("events")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(kv) = event.get("kv") else { continue };
            let key = field_bytes(kv, "key")?
                .get(self.strip..)
                .unwrap_or_default()
                .to_vec();
            // PUT is proto3's default (0): its "type" is omitted.
            let change = match event.get("type").and_then(Value::as_str) {
                Some("DELETE") => Change::Delete(key),
                _ => Change::Put(key, field_bytes(kv, "value")?),
            };
            self.queue.push_back(change);
        }
        Ok(())
    }
}

impl Watch for EtcdWatch {
    fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Change>, StoreError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(change) = self.queue.pop_front() {
                return Ok(Some(change));
            }
            if let Some(message) = self.next_message()? {
                self.take(&message)?;
                continue;
            }
            if self.ended {
                return Err(unavailable("the etcd watch stream ended"));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.fill(left)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_parse_or_are_refused() {
        let u: EtcdUrl = "etcd+http://127.0.0.1:2379,[::1]:2380,etcd-b.lan:2379/pbx/one"
            .parse()
            .unwrap();
        assert_eq!(
            u.endpoints,
            ["127.0.0.1:2379", "[::1]:2380", "etcd-b.lan:2379"]
        );
        assert_eq!(u.prefix, "pbx/one");
        assert_eq!(u.to_string().parse::<EtcdUrl>().unwrap(), u);
        assert!(!u.tls);
        let t: EtcdUrl = "etcd+https://etcd-a.lan:2379/p".parse().unwrap();
        assert!(t.tls);
        assert_eq!(t.to_string(), "etcd+https://etcd-a.lan:2379/p");
        for bad in [
            "http://127.0.0.1:2379/p",
            "etcd+http://127.0.0.1:2379",
            "etcd+http://127.0.0.1:2379/",
            "etcd+http://127.0.0.1/p",
            "etcd+http://127.0.0.1:0/p",
            "etcd+http://a b:1/p",
            "etcd+http://h:1/p//q",
            "etcd+http://h:1/p?x",
            "etcds://h:1/p",
        ] {
            assert!(bad.parse::<EtcdUrl>().is_err(), "{bad}");
        }
    }

    #[test]
    fn prefix_end_and_dechunk() {
        assert_eq!(prefix_end(b"p/certs/"), b"p/certs0".to_vec());
        assert_eq!(prefix_end(&[b'a', 0xff]), b"b".to_vec());
        let mut raw = b"3\r\nabc\r\n2\r\nde".to_vec();
        let mut out = Vec::new();
        assert_eq!(dechunk(&mut raw, &mut out), Ok(false));
        assert_eq!(out, b"abc");
        raw.extend_from_slice(b"\r\n0\r\n\r\n");
        assert_eq!(dechunk(&mut raw, &mut out), Ok(true));
        assert_eq!(out, b"abcde");
        assert!(dechunk(&mut b"zz\r\n".to_vec(), &mut out).is_err());
    }
}
