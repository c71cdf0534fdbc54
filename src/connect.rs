//! `--tls-connect LISTEN=HOST:PORT[,sni=NAME][,client-cert=ID]`: the PBX as
//! a TLS client of a SIP trunk (issue 12).
//!
//! Why: SIP servers speak TLS to carriers badly or not at all, and trust
//! their own CA bundle. The SIP server sends plain TCP to a local port;
//! pbx-certd opens TLS to the trunk and verifies it against the Root CA
//! list ("when the PBX acts as a client … it uses the list of Root CA"),
//! optionally presenting a stored certificate for mutual TLS (carriers and
//! Teams Direct Routing require it). This module holds the setting (its one
//! parser, for the flag and the config file), the start-up check of the
//! client certificate and the TLS client configuration; `serve` runs the
//! listeners and copies the bytes. Layer 4: it needs the store and
//! `snapshot::certified_key`, nothing above.
//!
//! What must hold: the trunk's chain and name are verified (RFC 5280 §6,
//! RFC 6125 §6 via rustls-webpki) against the Root CA list as stored when
//! the connection is opened (a root deleted now fails the next connection);
//! the name checked and sent as SNI (RFC 6066 §3) is `sni`, else HOST; a
//! `client-cert` must allow TLS client authentication (EKU clientAuth, or
//! no EKU restriction; RFC 5280 §4.2.1.12), checked at start-up and at each
//! connection; connecting is bounded by `TRUNK_CONNECT_TIMEOUT_SECS`; every
//! failure is a `ConnectError` with a stable code, nothing panics.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_rustls::client::TlsStream;
use futures_rustls::TlsConnector;
use rustls::client::ResolvesClientCert;
use rustls::pki_types::ServerName;
use rustls::sign::CertifiedKey;
use rustls::ClientConfig;
use smol::future::FutureExt as _;
use smol::net::TcpStream;

use crate::limits::TRUNK_CONNECT_TIMEOUT_SECS;
use crate::store::{CertRecord, Store, StoreError};

/// One `--tls-connect LISTEN=HOST:PORT[,sni=NAME][,client-cert=ID]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// Where the local SIP server connects (plain TCP).
    pub listen: SocketAddr,
    /// The trunk's host name or IP address.
    pub host: String,
    /// The trunk's TLS port.
    pub port: u16,
    /// The name to send as SNI and to verify; `None`: `host`.
    pub sni: Option<String>,
    /// ID (or unique ID prefix) of the stored certificate presented as
    /// client certificate; `None`: no client certificate.
    pub client_cert: Option<String>,
}

impl Connect {
    /// The name sent as SNI and verified in the trunk's certificate.
    pub fn server_name(&self) -> &str {
        self.sni.as_deref().unwrap_or(&self.host)
    }

    /// `HOST:PORT` as given (IPv6 in brackets), for log lines.
    pub fn trunk(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl std::str::FromStr for Connect {
    type Err = String;

    fn from_str(s: &str) -> Result<Connect, String> {
        let usage = "expected LISTEN=HOST:PORT[,sni=NAME][,client-cert=ID], \
                     e.g. 127.0.0.1:5071=sip.carrier.example:5061";
        let (listen, rest) = s
            .split_once('=')
            .ok_or_else(|| format!("{usage}, got {s}"))?;
        let listen = listen
            .trim()
            .parse()
            .map_err(|e| format!("bad listen address {listen}: {e}"))?;
        let mut parts = rest.split(',');
        let trunk = parts.next().unwrap_or_default().trim();
        let bad_trunk = || format!("bad trunk address {trunk}: {usage}");
        let (host, port) = if let Some(v6) = trunk.strip_prefix('[') {
            let (h, p) = v6.split_once("]:").ok_or_else(bad_trunk)?;
            (h, p)
        } else {
            trunk.rsplit_once(':').ok_or_else(bad_trunk)?
        };
        let port: u16 = port.parse().map_err(|_| bad_trunk())?;
        if host.is_empty() || port == 0 {
            return Err(bad_trunk());
        }
        let mut c = Connect {
            listen,
            host: host.to_owned(),
            port,
            sni: None,
            client_cert: None,
        };
        for part in parts {
            let (k, v) = part
                .split_once('=')
                .map(|(k, v)| (k.trim(), v.trim()))
                .ok_or_else(|| format!("bad option {part}: {usage}"))?;
            let slot = match k {
                "sni" => &mut c.sni,
                "client-cert" => &mut c.client_cert,
                other => return Err(format!("unknown option {other}: {usage}")),
            };
            if v.is_empty() || slot.replace(v.to_owned()).is_some() {
                return Err(format!("{k} given empty or twice: {usage}"));
            }
        }
        if let Some(id) = &c.client_cert {
            if !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!(
                    "client-cert must be a certificate ID (hex), got {id}"
                ));
            }
        }
        ServerName::try_from(c.server_name().to_owned())
            .map_err(|_| format!("not a DNS name or IP address: {}", c.server_name()))?;
        Ok(c)
    }
}

/// Why a `--tls-connect` could not start or a connection to the trunk failed.
#[derive(Debug)]
pub enum ConnectError {
    /// `client-cert=ID` names no stored certificate.
    NoSuchCert(String),
    /// `client-cert=ID` matches several stored certificates.
    AmbiguousCert(String),
    /// The client certificate's extended key usage does not allow TLS client
    /// authentication (id, its EKU names).
    NotClientAuth(String, Vec<String>),
    /// The client certificate's private key is missing or unusable.
    KeyMissing(String),
    /// The Root CA list holds no root rustls can use.
    NoRoots,
    /// The store could not be read.
    Store(StoreError),
    /// The TCP connection to the trunk failed.
    Connect(String),
    /// No connection and handshake within `TRUNK_CONNECT_TIMEOUT_SECS`.
    Timeout,
    /// The TLS handshake failed: the trunk's chain is not trusted by the
    /// Root CA list, its name does not match, or the trunk refused us.
    Tls(String),
}

impl ConnectError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            ConnectError::NoSuchCert(_) => "client-cert-not-found",
            ConnectError::AmbiguousCert(_) => "ambiguous-id",
            ConnectError::NotClientAuth(..) => "not-client-auth",
            ConnectError::KeyMissing(_) => "key-missing",
            ConnectError::NoRoots => "no-roots",
            ConnectError::Store(e) => e.code(),
            ConnectError::Connect(_) => "connect-failed",
            ConnectError::Timeout => "connect-timeout",
            ConnectError::Tls(_) => "tls-failed",
        }
    }
}

impl core::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ConnectError::NoSuchCert(id) => write!(f, "client-cert {id}: no such certificate"),
            ConnectError::AmbiguousCert(id) => {
                write!(
                    f,
                    "client-cert {id}: several certificates match; give more of the ID"
                )
            }
            ConnectError::NotClientAuth(id, eku) => write!(
                f,
                "client-cert {id} cannot authenticate a TLS client: its extended key usage is {} \
                 without client-auth (issue one with `pbx-certd ca issue --tenant NAME --client`, \
                 or import one made for clientAuth)",
                eku.join(", ")
            ),
            ConnectError::KeyMissing(id) => {
                write!(
                    f,
                    "client-cert {id}: its private key is missing or unusable"
                )
            }
            ConnectError::NoRoots => f.write_str("the Root CA list has no usable root"),
            ConnectError::Store(e) => e.fmt(f),
            ConnectError::Connect(e) => write!(f, "cannot connect: {e}"),
            ConnectError::Timeout => write!(
                f,
                "no connection and TLS handshake within {TRUNK_CONNECT_TIMEOUT_SECS} s"
            ),
            ConnectError::Tls(e) => write!(f, "TLS handshake failed: {e}"),
        }
    }
}

impl std::error::Error for ConnectError {}

impl From<StoreError> for ConnectError {
    fn from(e: StoreError) -> ConnectError {
        ConnectError::Store(e)
    }
}

/// The stored certificate `client-cert=ID` names (full ID or unique prefix),
/// refused unless its EKU allows TLS client authentication.
fn client_record(store: &Store, id: &str) -> Result<CertRecord, ConnectError> {
    let mut found = store.certs()?.into_iter().filter(|c| c.id.starts_with(id));
    let record = found
        .next()
        .ok_or_else(|| ConnectError::NoSuchCert(id.to_owned()))?;
    if found.next().is_some() {
        return Err(ConnectError::AmbiguousCert(id.to_owned()));
    }
    if !crate::pki::eku_allows_client_auth(&record.eku) {
        return Err(ConnectError::NotClientAuth(record.id, record.eku));
    }
    Ok(record)
}

/// Start-up check of a `--tls-connect`: its client certificate exists,
/// allows clientAuth and has its key. (The Root CA list is read per
/// connection.)
pub fn check(store: &Store, c: &Connect) -> Result<(), ConnectError> {
    if let Some(id) = &c.client_cert {
        let record = client_record(store, id)?;
        crate::snapshot::certified_key(store, &record)?
            .ok_or_else(|| ConnectError::KeyMissing(record.id.clone()))?;
    }
    Ok(())
}

/// Presents the one configured client certificate when the trunk asks.
#[derive(Debug)]
struct ClientCert(Arc<CertifiedKey>);

impl ResolvesClientCert for ClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The TLS client configuration for one connection of `c`: the Root CA list
/// as stored now, and the client certificate when configured (its ID, for
/// the log). Store reads: call from a blocking thread.
pub fn client_config(
    store: &Store,
    c: &Connect,
) -> Result<(Arc<ClientConfig>, Option<String>), ConnectError> {
    let roots = store.roots()?;
    let roots = crate::outbound::root_cert_store(roots.iter().map(|(_, der)| der.as_slice()))
        .ok_or(ConnectError::NoRoots)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| ConnectError::Tls(e.to_string()))?
        .with_root_certificates(roots);
    let (config, id) = match &c.client_cert {
        None => (builder.with_no_client_auth(), None),
        Some(id) => {
            let record = client_record(store, id)?;
            let key = crate::snapshot::certified_key(store, &record)?
                .ok_or_else(|| ConnectError::KeyMissing(record.id.clone()))?;
            (
                builder.with_client_cert_resolver(Arc::new(ClientCert(key))),
                Some(record.id),
            )
        }
    };
    Ok((Arc::new(config), id))
}

/// Open TLS to the trunk of `c` with `config`, bounded by
/// `TRUNK_CONNECT_TIMEOUT_SECS`.
pub async fn open(
    config: Arc<ClientConfig>,
    c: &Connect,
) -> Result<TlsStream<TcpStream>, ConnectError> {
    let name = ServerName::try_from(c.server_name().to_owned())
        .map_err(|e| ConnectError::Tls(e.to_string()))?;
    let work = async {
        let tcp = TcpStream::connect((c.host.as_str(), c.port))
            .await
            .map_err(|e| ConnectError::Connect(format!("{}: {e}", c.trunk())))?;
        let _ = tcp.set_nodelay(true);
        TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| ConnectError::Tls(e.to_string()))
    };
    work.or(async {
        smol::Timer::after(Duration::from_secs(TRUNK_CONNECT_TIMEOUT_SECS)).await;
        Err(ConnectError::Timeout)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_setting_parses_and_refuses_with_reasons() {
        let c: Connect = "127.0.0.1:5071=sip.carrier.test:5061".parse().unwrap();
        assert_eq!(c.listen, "127.0.0.1:5071".parse().unwrap());
        assert_eq!((c.host.as_str(), c.port), ("sip.carrier.test", 5061));
        assert_eq!(c.server_name(), "sip.carrier.test");
        assert_eq!(c.client_cert, None);
        let c: Connect = "127.0.0.1:0=[::1]:5061, sni=trunk.test ,client-cert=abcdef12"
            .parse()
            .unwrap();
        assert_eq!((c.host.as_str(), c.port), ("::1", 5061));
        assert_eq!(c.trunk(), "[::1]:5061");
        assert_eq!(c.server_name(), "trunk.test");
        assert_eq!(c.client_cert.as_deref(), Some("abcdef12"));
        for bad in [
            "",
            "127.0.0.1:5071",
            "127.0.0.1:5071=host",
            "127.0.0.1:5071=host:0",
            "127.0.0.1:5071=:5061",
            "nope=host:5061",
            "127.0.0.1:5071=host:5061,sni=",
            "127.0.0.1:5071=host:5061,sni=a.test,sni=b.test",
            "127.0.0.1:5071=host:5061,color=red",
            "127.0.0.1:5071=host:5061,client-cert=../x",
            "127.0.0.1:5071=host:5061,sni=not a name",
        ] {
            assert!(bad.parse::<Connect>().is_err(), "{bad}");
        }
    }
}
