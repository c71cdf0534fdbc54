//! `pbx-certd serve`: the appliance service.
//!
//! Why: one smol runtime drives the store, the SNI snapshot, the HTTPS admin
//! listener, the port-80 listener (ACME HTTP-01, redirect), `--tls-forward`
//! listeners (TLS in front of local services such as SIP on 5060) and the
//! control socket the CLI uses while the daemon holds the store.
//!
//! Workers (`--workers N`, default: the CPUs the process may run on): TLS
//! handshakes are CPU work, so N threads each run a `LocalExecutor` that
//! accepts on the same HTTPS and `--tls-forward` listeners (the kernel wakes
//! an idle worker for a new connection); the snapshot stays one `ArcSwap`
//! read by all, each listener has one TLS config (tickets open on every
//! worker) and one admission gate for all workers. The first worker (the
//! main thread) also runs port 80, the control socket and ACME renewal.
//!
//! What must hold: every connection is its own task on its worker's
//! `LocalExecutor` (picoserve handlers are `!Send`), so a slow or idle client
//! never blocks another; store I/O runs on smol's blocking pool; every listener admits
//! connections through its own `admission::Gate` (unproven and established
//! budgets, per-IP caps, oldest unproven dropped first), so one client or one
//! listener's flood cannot lock others out; the process's RLIMIT_NOFILE is
//! raised (within the hard limit) to hold every budget; a failed handshake is
//! logged and the process lives on; SIGTERM/SIGINT stop accepting on every
//! worker, give open connections `SHUTDOWN_GRACE_SECS`, wait for the workers,
//! then flush the store and remove the socket.
//!
//! Forwards (issue 12): a `proxy=` header (`proxy` module, haproxy's
//! proxy-protocol.txt §2.1/§2.2) is written once to the target, before the
//! first decrypted byte; `client-auth=` listeners verify client certificates
//! against a trust set reread every `CLIENT_TRUST_REFRESH_SECS` (`tls`
//! module); after either side of a forwarded connection closes, the close is
//! passed on and the other direction gets `FORWARD_HALF_CLOSE_SECS`, then
//! both sockets close; both have TCP keepalive. Per-listener settings (one
//! parser, `Forward`'s `FromStr`): `alpn=` (RFC 7301; `http/1.1` for SIP
//! over WebSocket, RFC 7118, whose upgrade passes through as bytes),
//! `min-tls=` and `default-cert=` shape the listener's TLS config (`tls`
//! module; the default certificate is looked up by ID in the snapshot at
//! handshake time, allocation-free); `max-conns=` is the gate's
//! established budget; `idle=` closes a connection whose copy loops moved
//! no chunk for that long (default none: SIP keeps connections for hours).

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use smol::future::FutureExt as _;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::{TcpListener, TcpStream};
use smol::LocalExecutor;

use crate::admission::{Budget, Gate, Ticket};
use crate::certs;
use crate::clock;
use crate::daemon::Shared;
use crate::handshakes::{ListenerLog, Record, Rule};
use crate::limits::{
    CLIENT_TRUST_REFRESH_SECS, DEFAULT_MAX_CONNS_PER_IP, FD_RESERVE, FORWARD_CONNECT_TIMEOUT_SECS,
    FORWARD_COPY_BUFFER_BYTES, FORWARD_HALF_CLOSE_SECS, FORWARD_KEEPALIVE_IDLE_SECS,
    FORWARD_KEEPALIVE_INTERVAL_SECS, FORWARD_KEEPALIVE_PROBES, MAX_ALPN_PROTOCOLS,
    MAX_CONNS_PER_IP_SETTING, MAX_CONTROL_CLIENTS, MAX_ESTABLISHED_HTTPS,
    MAX_ESTABLISHED_PER_CONNECT, MAX_ESTABLISHED_PER_FORWARD, MAX_ESTABLISHED_PER_FORWARD_SETTING,
    MAX_FORWARD_IDLE_SECS, MAX_UNPROVEN_PER_IP, MAX_UNPROVEN_PER_LISTENER, MAX_WORKERS,
    PLAIN_HTTP_DEADLINE, SELF_SIGNED_DAYS, SHUTDOWN_GRACE_SECS, UNPROVEN_TLS_DEADLINE,
};
use crate::model::Source;
use crate::pki::{Kind, KindRequest};
use crate::store::{Store, StoreError};
use crate::tls::{
    Acceptors, ClientAuth, ClientCa, ClientTrust, ClientTrustError, ListenerTls, MinTls,
};

/// One `--tls-forward LISTEN=TARGET[,OPTION=VALUE...]` (also a config
/// file's `tls-forward = ...` line; this is the one parser of both).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// Where TLS clients connect.
    pub listen: SocketAddr,
    /// The local plain-TCP service that gets the decrypted stream.
    pub target: SocketAddr,
    /// `proxy=v2` (or `v1`): a PROXY protocol header (the client's address;
    /// v2 also the TLS facts) goes to the target before the first decrypted
    /// byte.
    pub proxy: Option<crate::proxy::Version>,
    /// `client-auth=none|optional|required` (default none).
    pub client_auth: ClientAuth,
    /// `client-ca=local-ca|imported|roots` (default local-ca): the trust set of
    /// client certificates.
    pub client_ca: ClientCa,
    /// `alpn=P1,P2,...`: the ALPN protocols offered, in server preference
    /// order (RFC 7301 §3.2; e.g. `http/1.1` for SIP over WebSocket, RFC
    /// 7118); empty (the default): no ALPN, a client offering some gets
    /// none back.
    pub alpn: Vec<String>,
    /// `min-tls=1.2|1.3` (default 1.2).
    pub min_tls: MinTls,
    /// `idle=SECONDS|none` (default none): close a forwarded connection
    /// after this long without a byte in either direction.
    pub idle: Option<u64>,
    /// `max-conns=N`: this listener's established connections (default
    /// `MAX_ESTABLISHED_PER_FORWARD`).
    pub max_conns: usize,
    /// `default-cert=ID` (full ID or unique prefix): the certificate this
    /// listener serves where the global default would serve (no SNI and no
    /// certificate of the local address, or an SNI nothing covers); the
    /// global default while it is not servable.
    pub default_cert: Option<String>,
}

/// The options a forward takes after `LISTEN=TARGET`.
const FORWARD_OPTIONS: &str = "proxy=v2|v1|none, client-auth=none|optional|required, \
     client-ca=local-ca|imported|roots, alpn=P1,P2,..., min-tls=1.2|1.3, idle=SECONDS|none, \
     max-conns=N, default-cert=ID";

/// One protocol name of `alpn=`: 1 to 255 bytes (RFC 7301 §3.1), here
/// visible ASCII (the IANA registry's names are), no `,` or `=`.
fn alpn_name(name: &str, list: &[String]) -> Result<String, String> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b',' && b != b'=');
    if !ok {
        return Err(format!(
            "alpn protocol `{name}` must be 1 to 255 visible ASCII characters (e.g. http/1.1)"
        ));
    }
    if list.iter().any(|p| p == name) {
        return Err(format!("alpn protocol {name} given twice"));
    }
    if list.len() >= MAX_ALPN_PROTOCOLS {
        return Err(format!("alpn takes at most {MAX_ALPN_PROTOCOLS} protocols"));
    }
    Ok(name.to_owned())
}

impl std::str::FromStr for Forward {
    type Err = String;

    fn from_str(s: &str) -> Result<Forward, String> {
        let mut parts = s.split(',');
        let first = parts.next().unwrap_or_default();
        let (listen, target) = first.split_once('=').ok_or_else(|| {
            format!("expected LISTEN=TARGET[,OPTION=VALUE...], e.g. 0.0.0.0:5061=127.0.0.1:5060,proxy=v2, got {s}")
        })?;
        let mut fwd = Forward {
            listen: listen
                .trim()
                .parse()
                .map_err(|e| format!("bad listen address {listen}: {e}"))?,
            target: target
                .trim()
                .parse()
                .map_err(|e| format!("bad target address {target}: {e}"))?,
            proxy: None,
            client_auth: ClientAuth::default(),
            client_ca: ClientCa::default(),
            alpn: Vec::new(),
            min_tls: MinTls::default(),
            idle: None,
            max_conns: MAX_ESTABLISHED_PER_FORWARD,
            default_cert: None,
        };
        let mut seen: Vec<&str> = Vec::new();
        for opt in parts {
            // `alpn=h2,http/1.1`: the names after the first continue the
            // list (they have no `=`).
            if !opt.contains('=') && seen.last() == Some(&"alpn") {
                let name = alpn_name(opt.trim(), &fwd.alpn)?;
                fwd.alpn.push(name);
                continue;
            }
            let (key, value) = opt
                .split_once('=')
                .map(|(k, v)| (k.trim(), v.trim()))
                .ok_or_else(|| {
                    format!("bad forward option `{opt}`: expected one of {FORWARD_OPTIONS}")
                })?;
            if seen.contains(&key) {
                return Err(format!("forward option {key} given twice in {s}"));
            }
            seen.push(key);
            match key {
                "proxy" => {
                    fwd.proxy = match value {
                        "v2" => Some(crate::proxy::Version::V2),
                        "v1" => Some(crate::proxy::Version::V1),
                        "none" => None,
                        _ => return Err(format!("proxy must be v2, v1 or none, got {value}")),
                    }
                }
                "client-auth" => fwd.client_auth = value.parse()?,
                "client-ca" => fwd.client_ca = value.parse()?,
                "alpn" => {
                    let name = alpn_name(value, &fwd.alpn)?;
                    fwd.alpn.push(name);
                }
                "min-tls" => fwd.min_tls = value.parse()?,
                "idle" => {
                    fwd.idle = match value {
                        "none" => None,
                        _ => match value.parse::<u64>() {
                            Ok(n) if (1..=MAX_FORWARD_IDLE_SECS).contains(&n) => Some(n),
                            _ => {
                                return Err(format!(
                                    "idle must be none or seconds from 1 to {MAX_FORWARD_IDLE_SECS}, got {value}"
                                ))
                            }
                        },
                    }
                }
                "max-conns" => {
                    fwd.max_conns = match value.parse::<usize>() {
                        Ok(n) if (1..=MAX_ESTABLISHED_PER_FORWARD_SETTING).contains(&n) => n,
                        _ => {
                            return Err(format!(
                                "max-conns must be a number from 1 to {MAX_ESTABLISHED_PER_FORWARD_SETTING}, got {value}"
                            ))
                        }
                    }
                }
                "default-cert" => {
                    if value.is_empty() {
                        return Err("default-cert needs a certificate ID".into());
                    }
                    fwd.default_cert = Some(value.to_owned());
                }
                _ => {
                    return Err(format!(
                        "unknown forward option `{key}`: expected one of {FORWARD_OPTIONS}"
                    ))
                }
            }
        }
        if fwd.client_auth == ClientAuth::None && seen.contains(&"client-ca") {
            return Err("client-ca needs client-auth=optional or client-auth=required".into());
        }
        Ok(fwd)
    }
}

/// `--max-conns-per-ip N` / `max-conns-per-ip = N`: established connections
/// from one client IP (IPv6: one /64) per listener. Parsed here only, for the
/// flag and the config file alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxConnsPerIp(pub usize);

impl Default for MaxConnsPerIp {
    fn default() -> MaxConnsPerIp {
        MaxConnsPerIp(DEFAULT_MAX_CONNS_PER_IP)
    }
}

impl std::str::FromStr for MaxConnsPerIp {
    type Err = String;

    fn from_str(s: &str) -> Result<MaxConnsPerIp, String> {
        match s.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_CONNS_PER_IP_SETTING).contains(&n) => Ok(MaxConnsPerIp(n)),
            _ => Err(format!(
                "max-conns-per-ip must be a number from 1 to {MAX_CONNS_PER_IP_SETTING}, got {s}"
            )),
        }
    }
}

/// `--workers N`: executor threads serving the TLS listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workers(pub usize);

impl Default for Workers {
    /// The CPUs this process may run on (affinity, cgroup quota), at most
    /// `MAX_WORKERS`; 1 when unknown.
    fn default() -> Workers {
        let n = std::thread::available_parallelism().map_or(1, usize::from);
        Workers(n.clamp(1, MAX_WORKERS))
    }
}

impl std::str::FromStr for Workers {
    type Err = String;

    fn from_str(s: &str) -> Result<Workers, String> {
        match s.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_WORKERS).contains(&n) => Ok(Workers(n)),
            _ => Err(format!(
                "workers must be a number from 1 to {MAX_WORKERS}, got {s}"
            )),
        }
    }
}

/// `--handshake-log on|off` (default on): whether TLS listeners keep the
/// handshake diagnostics (`handshakes`). Off exists to measure what they
/// cost (scripts/bench-tls.sh) and for appliances that want none of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeLog(pub bool);

impl Default for HandshakeLog {
    fn default() -> HandshakeLog {
        HandshakeLog(true)
    }
}

impl std::str::FromStr for HandshakeLog {
    type Err = String;

    fn from_str(s: &str) -> Result<HandshakeLog, String> {
        match s.trim() {
            "on" => Ok(HandshakeLog(true)),
            "off" => Ok(HandshakeLog(false)),
            _ => Err(format!("handshake-log must be on or off, got {s}")),
        }
    }
}

/// What `serve` runs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Data directory (the store and the control socket).
    pub data_dir: PathBuf,
    /// An etcd store shared with other nodes instead of the data dir's
    /// sled store (`--store`, `store =`).
    pub store: Option<crate::etcd::EtcdUrl>,
    /// Its TLS files (`etcd+https://`).
    pub store_tls: crate::etcd::StoreTls,
    /// The store key file sealing keys and secrets (`--store-key-file`,
    /// `store-key-file =`; `crate::seal`).
    pub store_key_file: Option<PathBuf>,
    /// HTTPS admin listener; `None` disables it.
    pub https: Option<SocketAddr>,
    /// Port-80 listener; `None` disables it.
    pub http: Option<SocketAddr>,
    /// Extra TLS listeners forwarding to local services.
    pub forwards: Vec<Forward>,
    /// Plain-TCP listeners whose connections go out as TLS to trunks.
    pub connects: Vec<crate::connect::Connect>,
    /// Established connections from one client IP per listener.
    pub max_conns_per_ip: MaxConnsPerIp,
    /// Executor threads accepting on the TLS listeners.
    pub workers: Workers,
    /// `--handshake-log on|off`: keep the handshake diagnostics.
    pub handshake_log: HandshakeLog,
}

impl ServeConfig {
    /// The HTTPS listener's admission budget.
    fn https_budget(&self) -> Budget {
        Budget {
            unproven: MAX_UNPROVEN_PER_LISTENER,
            unproven_per_ip: MAX_UNPROVEN_PER_IP,
            established: MAX_ESTABLISHED_HTTPS,
            established_per_ip: self.max_conns_per_ip.0,
        }
    }

    /// The port-80 listener's: every connection stays unproven.
    fn http_budget(&self) -> Budget {
        Budget {
            unproven: MAX_UNPROVEN_PER_LISTENER,
            unproven_per_ip: MAX_UNPROVEN_PER_IP,
            established: 0,
            established_per_ip: 0,
        }
    }

    /// A `--tls-forward` listener's (`max-conns=` its established budget).
    fn forward_budget(&self, fwd: &Forward) -> Budget {
        Budget {
            unproven: MAX_UNPROVEN_PER_LISTENER,
            unproven_per_ip: MAX_UNPROVEN_PER_IP,
            established: fwd.max_conns,
            established_per_ip: self.max_conns_per_ip.0.min(fwd.max_conns),
        }
    }

    /// Each `--tls-connect` listener's: local clients (the SIP server),
    /// established at once.
    fn connect_budget(&self) -> Budget {
        Budget {
            unproven: MAX_UNPROVEN_PER_LISTENER,
            unproven_per_ip: MAX_UNPROVEN_PER_IP,
            established: MAX_ESTABLISHED_PER_CONNECT,
            established_per_ip: MAX_ESTABLISHED_PER_CONNECT,
        }
    }

    /// File descriptors every budget together may hold (a forwarded
    /// connection holds two: client and target), plus the control clients
    /// and `FD_RESERVE`.
    pub fn fds_needed(&self) -> u64 {
        let conns = |b: Budget, fds_each: usize| b.unproven + b.established * fds_each;
        let mut n = MAX_CONTROL_CLIENTS;
        if self.https.is_some() {
            n += conns(self.https_budget(), 1);
        }
        if self.http.is_some() {
            n += conns(self.http_budget(), 1);
        }
        for fwd in &self.forwards {
            n += conns(self.forward_budget(fwd), 2);
        }
        n += self.connects.len() * conns(self.connect_budget(), 2);
        u64::try_from(n)
            .unwrap_or(u64::MAX)
            .saturating_add(FD_RESERVE)
    }
}

/// Raise the soft RLIMIT_NOFILE towards `needed` (never above the hard
/// limit) and say what the daemon can hold.
fn raise_fd_limit(needed: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let current = limit.current.unwrap_or(u64::MAX);
    let hard = limit.maximum.unwrap_or(u64::MAX);
    let mut have = current;
    if current < needed {
        let want = needed.min(hard);
        if want > current
            && setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: Some(want),
                    maximum: limit.maximum,
                },
            )
            .is_ok()
        {
            have = want;
        }
    }
    if have < needed {
        log::warn!(
            "open-file limit {have} (hard {hard}) is below the {needed} the connection budgets can use; \
             when it is reached new connections wait (raise LimitNOFILE)"
        );
    } else {
        log::debug!("open-file limit {have} (connection budgets need {needed})");
    }
}

/// Why the daemon could not start or stopped with an error.
#[derive(Debug)]
pub enum ServeError {
    /// The store could not be opened (e.g. another daemon holds it).
    Store(StoreError),
    /// A listener could not be bound.
    Bind(String, std::io::Error),
    /// The first-start certificate could not be made.
    SelfSigned(String),
    /// The TLS configuration was refused by rustls.
    Tls(rustls::Error),
    /// A `--tls-connect` cannot run (e.g. its `client-cert` does not allow
    /// TLS client authentication).
    Connect(SocketAddr, crate::connect::ConnectError),
    /// A forward's client trust set (`client-ca=`) could not be built.
    ClientTrust(SocketAddr, ClientTrustError),
    /// A forward's `default-cert=ID` names no server or domain certificate
    /// that can be served.
    DefaultCert(SocketAddr, String),
    /// A forward's `default-cert=` prefix names more than one certificate.
    AmbiguousDefaultCert(SocketAddr, String),
}

impl core::fmt::Display for ServeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ServeError::Store(e) => e.fmt(f),
            ServeError::Bind(what, e) => write!(f, "cannot listen on {what}: {e}"),
            ServeError::SelfSigned(e) => {
                write!(f, "cannot create the self-signed certificate: {e}")
            }
            ServeError::Tls(e) => write!(f, "TLS configuration refused: {e}"),
            ServeError::Connect(listen, e) => write!(f, "--tls-connect {listen}: {e}"),
            ServeError::ClientTrust(listen, e) => write!(f, "tls-forward {listen}: {e}"),
            ServeError::DefaultCert(listen, id) => write!(
                f,
                "tls-forward {listen}: default-cert={id} is not a server or domain certificate \
                 that can be served (see `pbx-certd certs`)"
            ),
            ServeError::AmbiguousDefaultCert(listen, id) => write!(
                f,
                "tls-forward {listen}: default-cert={id} is a prefix of more than one certificate ID"
            ),
        }
    }
}

impl std::error::Error for ServeError {}

impl ServeError {
    /// Stable code (for the CLI's error line).
    pub fn code(&self) -> &'static str {
        match self {
            ServeError::Store(e) => e.code(),
            ServeError::Bind(..) => "bind-failed",
            ServeError::SelfSigned(_) => "self-signed-failed",
            ServeError::Tls(_) => "tls-config",
            ServeError::Connect(_, e) => e.code(),
            ServeError::ClientTrust(_, e) => e.code(),
            ServeError::DefaultCert(..) => "unknown-default-cert",
            ServeError::AmbiguousDefaultCert(..) => "ambiguous-id",
        }
    }
}

impl From<StoreError> for ServeError {
    fn from(e: StoreError) -> ServeError {
        ServeError::Store(e)
    }
}

/// The host name for the first-start certificate: the system DNS name, else
/// the kernel's host name, else `pbx.local`.
fn self_signed_name(store: &Store) -> Result<String, StoreError> {
    if let Some(dns) = store.system()?.dns {
        return Ok(dns);
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    Ok(crate::names::normalize(host.trim(), false).unwrap_or_else(|_| "pbx.local".into()))
}

/// First start (or every valid server certificate gone): make a self-signed
/// server certificate so the admin page is reachable over HTTPS at once.
pub fn ensure_self_signed(store: &Store) -> Result<Option<String>, ServeError> {
    let now = clock::now();
    let has_server = store
        .certs()?
        .iter()
        .any(|c| c.kind == Kind::Server && c.not_after > now);
    if has_server {
        return Ok(None);
    }
    let name = self_signed_name(store)?;
    let fail = |e: &dyn core::fmt::Display| ServeError::SelfSigned(e.to_string());
    let key = rcgen::KeyPair::generate().map_err(|e| fail(&e))?;
    let mut params = rcgen::CertificateParams::new(vec![name.clone()]).map_err(|e| fail(&e))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name.as_str());
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "pbx-certd self-signed");
    let start = std::time::SystemTime::now() - Duration::from_secs(3600);
    let days = u64::try_from(SELF_SIGNED_DAYS).unwrap_or(1);
    params.not_before = start.into();
    params.not_after = (start + Duration::from_secs(days * 86_400)).into();
    let cert = params.self_signed(&key).map_err(|e| fail(&e))?;
    let imported = certs::import(
        store,
        cert.pem().as_bytes(),
        Some(key.serialize_pem().as_bytes()),
        KindRequest::Server,
        Source::SelfSigned,
    )
    .map_err(|e| fail(&e))?;
    log::info!("created self-signed certificate {} for {name}", imported.id);
    Ok(Some(imported.id))
}

fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener, ServeError> {
    // std bind, then hand to smol: same socket options, synchronous errors.
    let std = std::net::TcpListener::bind(addr)
        .map_err(|e| ServeError::Bind(format!("{what} {addr}"), e))?;
    TcpListener::try_from(std).map_err(|e| ServeError::Bind(format!("{what} {addr}"), e))
}

async fn with_timeout<T>(secs: u64, f: impl Future<Output = T>) -> Option<T> {
    async { Some(f.await) }
        .or(async {
            smol::Timer::after(Duration::from_secs(secs)).await;
            None
        })
        .await
}

/// The TLS handshake of an unproven connection (with the config of the
/// local address it arrived at), then its promotion to the established
/// budget; `None` when either fails (logged). The ClientHello is read
/// first (rustls' `Acceptor`), so the listener's handshake log
/// (`handshakes`) has the SNI even of a handshake that then fails; the
/// certificate and rule recorded are the snapshot's answer for the agreed
/// SNI and local address, as the resolver gave it. Recording allocates
/// nothing and never waits (`handshakes` module).
async fn tls_accept(
    acceptors: &Acceptors,
    log: &ListenerLog,
    shared: &Shared,
    tcp: TcpStream,
    peer: SocketAddr,
    ticket: &mut Ticket,
) -> Option<futures_rustls::server::TlsStream<TcpStream>> {
    let local = tcp.local_addr().ok().map(|a| a.ip().to_canonical());
    let mut rec = Record::new(clock::now(), peer, local);
    let mut acme_challenge = false;
    let handshake = async {
        let start =
            futures_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp)
                .await?;
        let hello = start.client_hello();
        if log.enabled() {
            rec.set_sni(hello.server_name());
        }
        acme_challenge = hello.alpn().is_some_and(|mut a| {
            a.next() == Some(crate::renewal::issue::ACME_TLS_ALPN) && a.next().is_none()
        });
        let config = match local {
            Some(ip) => acceptors.for_local(ip),
            None => acceptors.any(),
        };
        start.into_stream(config).await
    };
    let outcome = ticket.unproven(UNPROVEN_TLS_DEADLINE, handshake).await;
    match outcome {
        Ok(Ok(tls)) => {
            let conn = &tls.get_ref().1;
            if !log.enabled() {
                return ticket.establish().ok().map(|()| tls);
            }
            rec.version = match conn.protocol_version() {
                Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
                Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
                _ => "",
            };
            rec.set_alpn(conn.alpn_protocol());
            if acme_challenge {
                rec.set_served(None, Rule::AcmeChallenge);
            } else {
                let snapshot = shared.snapshot_cell().load();
                let r = snapshot.resolve_for(
                    conn.server_name(),
                    local,
                    acceptors.default_cert(),
                    clock::now(),
                );
                rec.set_served(r.served.map(|s| &*s.id), r.matched.into());
            }
            log.record(rec);
            ticket.establish().ok().map(|()| tls)
        }
        Ok(Err(e)) => {
            let why = HandshakeFailure(&e);
            rec.set_failure(&why);
            log.record(rec);
            ticket.gate().handshake_failed(peer.ip(), &why);
            None
        }
        // Logged by admission (rate-limited).
        Err(_) => {
            rec.set_failure(
                &"no complete handshake within the deadline (or dropped for a newer connection)",
            );
            log.record(rec);
            None
        }
    }
}

/// A failed handshake's reason for the log, naming a refused client
/// certificate as such (rustls has sent its alert by then).
struct HandshakeFailure<'a>(&'a std::io::Error);

impl core::fmt::Display for HandshakeFailure<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let tls = self
            .0
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>());
        match tls {
            Some(rustls::Error::NoCertificatesPresented) => f.write_str(
                "client certificate refused: none presented and client-auth=required \
                 (alert certificate_required)",
            ),
            // A server verifies no certificate but the client's.
            Some(e @ rustls::Error::InvalidCertificate(_)) => {
                write!(f, "client certificate refused: {e}")
            }
            _ => self.0.fmt(f),
        }
    }
}

/// Where a forward sends a client's decrypted stream, and how.
#[derive(Debug, Clone, Copy)]
struct ForwardTo {
    /// The local plain-TCP service.
    target: SocketAddr,
    /// Send a PROXY protocol header of this version first.
    proxy: Option<crate::proxy::Version>,
    /// `idle=`: close after this many seconds without a byte either way.
    idle: Option<u64>,
}

/// The TLS facts of an established connection, for the log and the PROXY
/// header, and that header when `proxy` asks for one.
fn tls_facts(
    tls: &futures_rustls::server::TlsStream<TcpStream>,
    peer: SocketAddr,
    proxy: Option<crate::proxy::Version>,
) -> Option<Vec<u8>> {
    let (tcp, conn) = tls.get_ref();
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "TLS",
    };
    let leaf = conn.peer_certificates().and_then(|c| c.first());
    let cn = leaf.and_then(|c| crate::pki::subject_cn(c.as_ref()));
    if leaf.is_some() {
        log::info!(
            "forward: {peer} presented a verified client certificate, CN={:?}",
            cn.as_deref().unwrap_or("")
        );
    }
    let proxy = proxy?;
    let local = tcp.local_addr().ok()?;
    let facts = crate::proxy::TlsFacts {
        version,
        sni: conn.server_name(),
        client_cert: leaf.is_some(),
        client_cn: cn.as_deref(),
    };
    Some(proxy.header(peer, local, &facts))
}

/// Pipe a TLS client to a local plain-TCP target until both sides close.
async fn forward(
    tls: futures_rustls::server::TlsStream<TcpStream>,
    to: ForwardTo,
    peer: SocketAddr,
) {
    let target = to.target;
    let header = tls_facts(&tls, peer, to.proxy);
    if to.proxy.is_some() && header.is_none() {
        log::warn!("forward for {peer}: no local address for the PROXY header; closed");
        return;
    }
    let upstream =
        match with_timeout(FORWARD_CONNECT_TIMEOUT_SECS, TcpStream::connect(target)).await {
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                log::warn!("forward for {peer}: cannot connect to {target}: {e}");
                return;
            }
            None => {
                log::warn!("forward for {peer}: connecting to {target} timed out");
                return;
            }
        };
    let mut up_write = upstream.clone();
    // Once, before the first decrypted byte (proxy-protocol.txt §2.2).
    if let Some(h) = header {
        if let Err(e) = up_write.write_all(&h).await {
            log::warn!("forward for {peer}: cannot send the PROXY header to {target}: {e}");
            return;
        }
    }
    keepalive(tls.get_ref().0);
    keepalive(&upstream);
    let client_raw = tls.get_ref().0.clone();
    let (tls_read, mut tls_write) = smol::io::split(tls);
    // Bumped by both directions at every chunk; `idle=` watches it.
    let moved = std::cell::Cell::new(0u64);
    let to_target = async {
        let _ = pump(tls_read, &client_raw, &mut up_write, &moved).await;
        let _ = up_write.shutdown(std::net::Shutdown::Write);
    };
    let to_client = async {
        let _ = pump(upstream.clone(), &upstream, &mut tls_write, &moved).await;
        let _ = tls_write.close().await;
    };
    let copy = both_then_bounded(to_target, to_client);
    match to.idle {
        None => copy.await,
        Some(secs) => {
            let idle = async {
                loop {
                    let before = moved.get();
                    smol::Timer::after(Duration::from_secs(secs)).await;
                    if moved.get() == before {
                        break;
                    }
                }
                log::info!("forward for {peer}: idle for {secs} s (idle={secs}); closed");
            };
            copy.or(idle).await
        }
    }
    // Both sockets close here (dropped), also when the other direction was
    // still open at the end of the half-close time.
}

/// Run `a` and `b` together until both end, but once either has ended the
/// other gets at most `FORWARD_HALF_CLOSE_SECS` (then it is dropped).
async fn both_then_bounded(a: impl Future<Output = ()>, b: impl Future<Output = ()>) {
    use std::task::Poll;
    let (mut a, mut b) = (std::pin::pin!(a), std::pin::pin!(b));
    let (mut a_done, mut b_done) = (false, false);
    let mut step = |cx: &mut std::task::Context<'_>| {
        if !a_done {
            a_done = a.as_mut().poll(cx).is_ready();
        }
        if !b_done {
            b_done = b.as_mut().poll(cx).is_ready();
        }
        (a_done, b_done)
    };
    smol::future::poll_fn(|cx| match step(cx) {
        (false, false) => Poll::Pending,
        _ => Poll::Ready(()),
    })
    .await;
    let rest = smol::future::poll_fn(|cx| match step(cx) {
        (true, true) => Poll::Ready(()),
        _ => Poll::Pending,
    });
    if with_timeout(FORWARD_HALF_CLOSE_SECS, rest).await.is_none() {
        log::debug!("forward: the other side stayed open {FORWARD_HALF_CLOSE_SECS} s after one closed; closed it");
    }
}

/// TCP keepalive on one socket of a forwarded connection (SIP keeps them
/// open for hours; a vanished phone or target is found by the kernel).
fn keepalive(s: &TcpStream) {
    use rustix::net::sockopt;
    let set = sockopt::set_socket_keepalive(s, true)
        .and_then(|()| {
            sockopt::set_tcp_keepidle(s, Duration::from_secs(FORWARD_KEEPALIVE_IDLE_SECS))
        })
        .and_then(|()| {
            sockopt::set_tcp_keepintvl(s, Duration::from_secs(FORWARD_KEEPALIVE_INTERVAL_SECS))
        })
        .and_then(|()| sockopt::set_tcp_keepcnt(s, FORWARD_KEEPALIVE_PROBES));
    if let Err(e) = set {
        log::debug!("forward: cannot set TCP keepalive: {e}");
    }
}

/// Copy `from` to `to` until EOF, flushing after every chunk.
///
/// Why not `smol::io::copy`: it flushes only at EOF. The TLS writer accepts
/// plaintext into rustls' buffer even when the socket to the client is full,
/// so after a client paused reading, the last records could stay in that
/// buffer until the target sent more (a phone missing its last NOTIFY).
/// Flushing each chunk means a chunk is in the kernel before the next read.
///
/// An idle connection holds no copy buffer (SIP phones keep connections
/// for hours; issue 13's bytes per idle connection): between chunks the
/// pump waits on `raw`, the socket `from` reads, with a one-byte `peek`,
/// and takes a buffer only when bytes (or EOF) arrived. It waits so only
/// after a read that did not fill the buffer: for a TLS `from`, rustls
/// then holds no decrypted bytes (futures-rustls decrypts every complete
/// record it read, and rustls' reader drains all it has into the buffer),
/// so the rest needs the socket; the first read never waits, as plaintext
/// may have come with the handshake's last flight.
async fn pump<R, W>(
    mut from: R,
    raw: &TcpStream,
    to: &mut W,
    moved: &std::cell::Cell<u64>,
) -> std::io::Result<()>
where
    R: smol::io::AsyncRead + Unpin,
    W: smol::io::AsyncWrite + Unpin,
{
    let mut drained = false;
    loop {
        if drained {
            // Ok(0) at EOF and an error both end in the read below.
            let _ = raw.peek(&mut [0u8; 1]).await;
        }
        let mut buf = vec![0u8; FORWARD_COPY_BUFFER_BYTES];
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        drained = n < buf.len();
        moved.set(moved.get().wrapping_add(1));
        to.write_all(&buf[..n]).await?;
        to.flush().await?;
    }
}

/// One connection of a `--tls-connect` listener: TLS to the trunk (the
/// Root CA list read now, from the blocking pool), then bytes both ways
/// until both sides close; a log line when it is verified or refused and
/// when it ends.
async fn trunk(
    shared: Arc<Shared>,
    local: TcpStream,
    peer: SocketAddr,
    c: Arc<crate::connect::Connect>,
) {
    let what = format!(
        "tls-connect {peer} -> trunk {} (name {})",
        c.trunk(),
        c.server_name()
    );
    let config = {
        let c = c.clone();
        smol::unblock(move || crate::connect::client_config(shared.store(), &c)).await
    };
    let opened = match config {
        Ok((config, id)) => crate::connect::open(config, &c).await.map(|tls| (tls, id)),
        Err(e) => Err(e),
    };
    let (tls, id) = match opened {
        Ok(v) => v,
        Err(e) => {
            log::warn!("{what}: not connected [{}]: {e}", e.code());
            return;
        }
    };
    let version = tls
        .get_ref()
        .1
        .protocol_version()
        .map_or("TLS".into(), |v| format!("{v:?}"));
    log::info!(
        "{what}: verified against the Root CA list ({version}), {}",
        id.map_or("no client certificate".into(), |id| format!(
            "client certificate {id}"
        ))
    );
    let trunk_raw = tls.get_ref().0.clone();
    let (tls_read, mut tls_write) = smol::io::split(tls);
    let mut local_write = local.clone();
    let moved = std::cell::Cell::new(0u64);
    let to_local = async {
        let r = pump(tls_read, &trunk_raw, &mut local_write, &moved).await;
        let _ = local_write.shutdown(std::net::Shutdown::Write);
        r
    };
    let to_trunk = async {
        let r = pump(local.clone(), &local, &mut tls_write, &moved).await;
        let _ = tls_write.close().await;
        r
    };
    match smol::future::zip(to_local, to_trunk).await {
        (Ok(()), Ok(())) => log::info!("{what}: closed"),
        (Err(e), _) => log::warn!("{what}: closed by the trunk: {e}"),
        (_, Err(e)) => log::warn!("{what}: closed: {e}"),
    }
}

/// Run the daemon until `shutdown` completes.
pub fn run(config: ServeConfig, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
    let store = crate::ops::open_location(
        &config.data_dir,
        config.store.as_ref(),
        &config.store_tls,
        config.store_key_file.as_deref(),
    )?;
    // With an etcd store the data dir still holds this node's own files
    // (control socket, node ID).
    crate::store::secure_dir(&config.data_dir)?;
    raise_fd_limit(config.fds_needed());
    for c in &config.connects {
        crate::connect::check(&store, c).map_err(|e| ServeError::Connect(c.listen, e))?;
    }
    ensure_self_signed(&store)?;
    let setup_needed =
        !crate::auth::password_is_set(&store).map_err(|e| ServeError::SelfSigned(e.to_string()))?;
    let shared = Shared::new(store)?;
    {
        // A cluster node follows the changes other nodes make (nothing to
        // follow on sled: this process is its only writer).
        let shared = shared.clone();
        if let Err(e) = std::thread::Builder::new()
            .name("store-follow".into())
            .spawn(move || shared.follow_store())
        {
            log::warn!("cannot follow the store's changes: {e}");
        }
    }
    if setup_needed {
        let token =
            crate::auth::random_token(18).map_err(|e| ServeError::SelfSigned(e.to_string()))?;
        log::warn!(
            "no admin password is set: log in to the web admin once with setup-token={token} and choose one \
             (or run `pbx-certd admin password`)"
        );
        *shared.setup_token.lock().unwrap_or_else(|p| p.into_inner()) = Some(token);
    }
    let ex = LocalExecutor::new();
    // Closed (sender dropped) when the daemon stops: every worker stops
    // accepting then.
    let (stop_tx, stop_rx) = smol::channel::bounded::<()>(1);
    let mut workers = Vec::new();
    let result = smol::block_on(ex.run(serve_all(
        &ex,
        &config,
        shared.clone(),
        shutdown,
        Spawn {
            stop: &stop_rx,
            handles: &mut workers,
        },
    )));
    drop(stop_tx);
    grace(&ex);
    drop(ex);
    for w in workers {
        let _ = w.join();
    }
    let _ = std::fs::remove_file(crate::control::socket_path(&config.data_dir));
    shared.store().flush()?;
    log::info!("stopped");
    result
}

/// Let open connections on `ex` finish, bounded by `SHUTDOWN_GRACE_SECS`.
fn grace(ex: &LocalExecutor<'_>) {
    smol::block_on(ex.run(async {
        let deadline = std::time::Instant::now() + Duration::from_secs(SHUTDOWN_GRACE_SECS);
        while !ex.is_empty() && std::time::Instant::now() < deadline {
            smol::Timer::after(Duration::from_millis(50)).await;
        }
    }));
}

/// Where `serve_all` starts the extra workers.
struct Spawn<'a> {
    /// Closed when the daemon stops.
    stop: &'a smol::channel::Receiver<()>,
    /// The workers' threads, joined after the shutdown grace time.
    handles: &'a mut Vec<std::thread::JoinHandle<()>>,
}

/// What a TLS listener does with a connection after its handshake.
#[derive(Debug, Clone, Copy)]
enum Role {
    /// The web admin and JSON API.
    Https,
    /// Pipe to a local plain-TCP service.
    Forward(ForwardTo),
}

/// A TLS listener every worker accepts on: one socket, one config, one gate.
#[derive(Clone)]
struct TlsListener {
    listener: TcpListener,
    acceptors: Arc<Acceptors>,
    /// Its handshake diagnostics (`handshakes`).
    log: Arc<ListenerLog>,
    gate: Gate,
    role: Role,
}

/// The accept loop of `l` on worker `worker`'s executor.
fn tls_loop<'a, 'ex: 'a>(
    ex: &'a LocalExecutor<'ex>,
    l: TlsListener,
    shared: Arc<Shared>,
    worker: usize,
) -> Loop<'a> {
    let TlsListener {
        listener,
        acceptors,
        log,
        gate,
        role,
    } = l;
    Box::pin(accept_loop(listener, gate, move |tcp, peer, mut ticket| {
        let (acceptors, log, shared) = (acceptors.clone(), log.clone(), shared.clone());
        ex.spawn(async move {
            if let Some(tls) = tls_accept(&acceptors, &log, &shared, tcp, peer, &mut ticket).await {
                log::debug!("worker {worker}: TLS connection from {peer}");
                match role {
                    Role::Https => crate::http::serve_https(shared, tls, peer).await,
                    Role::Forward(to) => forward(tls, to, peer).await,
                }
            }
        })
        .detach();
    }))
}

/// One of the loops an executor polls together.
type Loop<'a> = std::pin::Pin<Box<dyn Future<Output = ()> + 'a>>;

/// Poll every loop until all end (they do not; the caller races a stop).
async fn poll_all(mut loops: Vec<Loop<'_>>) {
    smol::future::poll_fn(|cx| {
        for l in loops.iter_mut() {
            let _ = l.as_mut().poll(cx);
        }
        std::task::Poll::<()>::Pending
    })
    .await;
}

/// Worker `worker` (2..=N): its own executor over the shared TLS listeners
/// until `stop` closes, then the shutdown grace time for its connections.
fn worker(
    worker: usize,
    listeners: Vec<TlsListener>,
    shared: Arc<Shared>,
    stop: smol::channel::Receiver<()>,
) {
    let ex = LocalExecutor::new();
    smol::block_on(ex.run(async {
        let loops = listeners
            .into_iter()
            .map(|l| tls_loop(&ex, l, shared.clone(), worker))
            .collect();
        poll_all(loops)
            .or(async {
                let _ = stop.recv().await;
            })
            .await;
    }));
    grace(&ex);
}

async fn serve_all(
    ex: &LocalExecutor<'_>,
    config: &ServeConfig,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()>,
    spawn: Spawn<'_>,
) -> Result<(), ServeError> {
    let mut gates = Vec::new();
    let mut ready = Vec::new();
    let mut loops: Vec<Loop<'_>> = Vec::new();
    let mut tls_listeners = Vec::new();

    // Port 80 redirects to the port HTTPS really listens on (`--https ADDR:0`
    // binds a free one), else to 443 (HTTPS behind a port forward).
    let mut https_port = 443;
    if let Some(addr) = config.https {
        let listener = bind(addr, "https")?;
        let local = listener
            .local_addr()
            .map_err(|e| ServeError::Bind(addr.to_string(), e))?;
        https_port = local.port();
        ready.push(format!("https={local}"));
        let acceptors = Acceptors::new(
            shared.clone(),
            &ListenerTls::with_alpn(&[b"http/1.1", crate::renewal::issue::ACME_TLS_ALPN]),
            None,
        )
        .map_err(ServeError::Tls)?;
        let gate = Gate::new(format!("https {local}"), config.https_budget());
        gates.push(gate.clone());
        tls_listeners.push(TlsListener {
            listener,
            acceptors: Arc::new(acceptors),
            log: shared.handshake_log(format!("https {local}"), config.handshake_log.0),
            gate,
            role: Role::Https,
        });
    }
    if let Some(addr) = config.http {
        let listener = bind(addr, "http")?;
        let local = listener
            .local_addr()
            .map_err(|e| ServeError::Bind(addr.to_string(), e))?;
        ready.push(format!("http={local}"));
        let shared = shared.clone();
        let gate = Gate::new(format!("http {local}"), config.http_budget());
        gates.push(gate.clone());
        loops.push(Box::pin(accept_loop(
            listener,
            gate,
            move |tcp, _peer, mut ticket| {
                let shared = shared.clone();
                ex.spawn(async move {
                    // The whole port-80 connection is unproven: deadline,
                    // and dropped first when the budget is full.
                    let serve = crate::http::serve_http(shared, tcp, https_port);
                    let _ = ticket.unproven(PLAIN_HTTP_DEADLINE, serve).await;
                })
                .detach();
            },
        )));
    }
    for fwd in &config.forwards {
        let listener = bind(fwd.listen, "tls-forward")?;
        let local = listener
            .local_addr()
            .map_err(|e| ServeError::Bind(fwd.listen.to_string(), e))?;
        ready.push(format!("forward={local}->{}", fwd.target));
        let trust = ClientTrust::new(shared.store(), fwd.client_auth, fwd.client_ca)
            .map_err(|e| ServeError::ClientTrust(fwd.listen, e))?;
        if let Some(trust) = &trust {
            loops.push(Box::pin(refresh_client_trust(
                shared.clone(),
                trust.clone(),
                local,
            )));
        }
        let default_cert = match &fwd.default_cert {
            Some(id) => Some(servable_id(&shared, fwd.listen, id)?),
            None => None,
        };
        let settings = ListenerTls {
            alpn: fwd.alpn.iter().map(|p| p.as_bytes().to_vec()).collect(),
            min_tls: fwd.min_tls,
            default_cert,
        };
        let acceptors =
            Acceptors::new(shared.clone(), &settings, trust).map_err(ServeError::Tls)?;
        let gate = Gate::new(format!("forward {local}"), config.forward_budget(fwd));
        gates.push(gate.clone());
        tls_listeners.push(TlsListener {
            listener,
            acceptors: Arc::new(acceptors),
            log: shared.handshake_log(format!("forward {local}"), config.handshake_log.0),
            gate,
            role: Role::Forward(ForwardTo {
                target: fwd.target,
                proxy: fwd.proxy,
                idle: fwd.idle,
            }),
        });
    }
    for l in &tls_listeners {
        loops.push(tls_loop(ex, l.clone(), shared.clone(), 1));
    }
    // `--tls-connect`: on the first worker only (a few long-lived
    // connections per trunk).
    for c in &config.connects {
        let listener = bind(c.listen, "tls-connect")?;
        let local = listener
            .local_addr()
            .map_err(|e| ServeError::Bind(c.listen.to_string(), e))?;
        ready.push(format!("connect={local}->{}", c.trunk()));
        let gate = Gate::new(format!("connect {local}"), config.connect_budget());
        gates.push(gate.clone());
        let (shared, c) = (shared.clone(), Arc::new(c.clone()));
        loops.push(Box::pin(accept_loop(
            listener,
            gate,
            move |tcp, peer, mut ticket| {
                let (shared, c) = (shared.clone(), c.clone());
                ex.spawn(async move {
                    // The ticket lives as long as the connection.
                    if ticket.establish().is_ok() {
                        trunk(shared, tcp, peer, c).await;
                    }
                })
                .detach();
            },
        )));
    }
    let workers = if tls_listeners.is_empty() {
        1
    } else {
        config.workers.0
    };
    for n in 2..=workers {
        let (listeners, shared, stop) = (tls_listeners.clone(), shared.clone(), spawn.stop.clone());
        match std::thread::Builder::new()
            .name(format!("worker-{n}"))
            .spawn(move || worker(n, listeners, shared, stop))
        {
            Ok(handle) => spawn.handles.push(handle),
            Err(e) => {
                log::warn!("cannot start worker {n}: {e}; serving with {}", n - 1);
                break;
            }
        }
    }
    ready.push(format!("workers={}", spawn.handles.len() + 1));
    let control = crate::control::bind(&config.data_dir).map_err(|e| {
        ServeError::Bind(
            format!("control socket in {}", config.data_dir.display()),
            e,
        )
    })?;
    {
        let shared = shared.clone();
        let control_gate = crate::control::ControlGate::default();
        loops.push(Box::pin(async move {
            loop {
                match control.accept().await {
                    Ok((stream, _)) => {
                        ex.spawn(crate::control::serve_connection(
                            shared.clone(),
                            stream,
                            control_gate.clone(),
                        ))
                        .detach();
                    }
                    Err(e) => {
                        log::warn!("control socket: {e}");
                        smol::Timer::after(Duration::from_millis(100)).await;
                    }
                }
            }
        }));
    }
    {
        // ACME renewal (reads its settings each pass; idle when disabled).
        let listeners = crate::renewal::issue::Listeners {
            http: config.http.is_some(),
            https: config.https.is_some(),
        };
        // Polled with the listeners (not spawned), so it stops with them
        // and does not hold the executor during the shutdown grace time.
        let node = crate::renewal::renew::node_id(&config.data_dir);
        shared.set_node_id(node.clone());
        // A node of a shared store announces itself (`cluster status`).
        loops.push(Box::pin(shared.clone().heartbeat()));
        loops.push(Box::pin(crate::renewal::renew::run(
            shared.clone(),
            listeners,
            node,
        )));
    }
    // Alerts (issue 11): evaluated and sent by their own loop.
    loops.push(Box::pin(crate::notify::run(shared.clone())));
    let snapshot = shared.snapshot();
    log::info!(
        "ready: {} ({} certificates to serve, data dir {})",
        ready.join(" "),
        snapshot.len(),
        config.data_dir.display()
    );
    poll_all(loops).or(shutdown).await;
    let open: usize = gates
        .iter()
        .map(|g| {
            let (unproven, established) = g.open();
            unproven + established
        })
        .sum();
    log::info!("shutting down: no new connections; {open} still open");
    {
        let shared = shared.clone();
        smol::unblock(move || shared.leave_cluster()).await;
    }
    Ok(())
}

/// The full ID of a forward's `default-cert=ID` (full ID or unique
/// prefix), which must be a certificate the snapshot serves.
fn servable_id(shared: &Shared, listen: SocketAddr, id: &str) -> Result<Arc<str>, ServeError> {
    let snapshot = shared.snapshot();
    let mut found = shared
        .store()
        .certs()?
        .into_iter()
        .filter(|c| c.id.starts_with(id));
    let not_servable = || ServeError::DefaultCert(listen, id.to_owned());
    let record = found.next().ok_or_else(not_servable)?;
    if found.next().is_some() {
        return Err(ServeError::AmbiguousDefaultCert(listen, id.to_owned()));
    }
    snapshot
        .by_id(&record.id)
        .map(|s| Arc::from(&*s.id))
        .ok_or_else(not_servable)
}

/// Reread a forward's client trust set every `CLIENT_TRUST_REFRESH_SECS`
/// (on the blocking pool) and rebuild its verifier when it changed.
async fn refresh_client_trust(shared: Arc<Shared>, trust: Arc<ClientTrust>, local: SocketAddr) {
    loop {
        smol::Timer::after(Duration::from_secs(CLIENT_TRUST_REFRESH_SECS)).await;
        let (shared, t) = (shared.clone(), trust.clone());
        match smol::unblock(move || t.refresh(shared.store())).await {
            Ok(true) => {
                log::info!("forward {local}: the client trust set changed; verifier rebuilt")
            }
            Ok(false) => {}
            Err(e) => log::warn!("forward {local}: cannot reread the client trust set: {e}"),
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    gate: Gate,
    on_conn: impl Fn(TcpStream, SocketAddr, Ticket),
) {
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => {
                // A refused connection is closed here (`tcp` dropped); the
                // gate logs it, rate-limited.
                if let Ok(ticket) = gate.admit(peer.ip()) {
                    let _ = tcp.set_nodelay(true);
                    on_conn(tcp, peer, ticket);
                }
                // Let the handshakes run between accepts, so a burst in the
                // backlog does not push them out of the budget unread.
                smol::future::yield_now().await;
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                log::warn!("accept failed: {e}");
                smol::Timer::after(Duration::from_millis(100)).await;
            }
        }
    }
}
