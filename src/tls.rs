//! TLS for the daemon's listeners: the SNI resolver and the rustls configs.
//!
//! Why: every HTTPS and SIP-TLS handshake asks for a certificate; rustls calls
//! `ResolvesServerCert::resolve` inside the handshake, and its docs ask for a
//! fast, non-blocking answer. The resolver reads the current immutable
//! `Snapshot` through arc-swap (no lock, no I/O, no allocation: `load()` only
//! bumps a counter) and applies the SNI rules (`snapshot` module).
//!
//! What must hold: the resolver never touches the store; "nothing to serve"
//! returns `None`, which rustls turns into a clean handshake failure (alert),
//! logged by the accept loop, never a crash.
//!
//! Session resumption (phones reconnect often; a resumed handshake skips the
//! signature and the certificate): TLS 1.3 PSK resumption with stateless
//! tickets (RFC 8446 §4.6.1, §2.2) sealed with ChaCha20-Poly1305 keys that
//! rotate every 6 hours (rustls' ring `Ticketer`: the previous key still
//! opens tickets for one more period); TLS 1.2 clients without tickets
//! resume from a bounded in-memory session cache
//! (`TLS12_SESSION_CACHE_ENTRIES`). A resumed session keeps the certificate
//! it was made with: RFC 8446 §4.6.1 lets the server resume only when the SNI
//! is the same, which rustls checks. Each listener's config is built once and
//! shared by every worker, so a ticket opens on any of them.
//!
//! The local address: a client without SNI (phones provisioned by IP, RFC
//! 6066 §3 allows no IP literal in SNI) gets the certificate of the address
//! it connected to (a tenant's IP name, RFC 8738). rustls' resolver sees
//! only the ClientHello, so each listener keeps one config per local
//! address (`Acceptors`), all sharing the ticket keys and the session cache,
//! each with a resolver that knows its address; the accept path picks the
//! config by the socket's local address, lock-free once seen (arc-swap),
//! built once per address (at most `MAX_LOCAL_ADDRESSES`).
//!
//! A listener's settings (`ListenerTls`, a forward's `alpn=`, `min-tls=`,
//! `default-cert=`): the ALPN list offered (RFC 7301 §3.2: a client offering
//! none of a non-empty list gets `no_application_protocol`), TLS 1.3 only
//! or 1.2 and 1.3, and a default certificate ID the resolver hands to
//! `Snapshot::resolve_for` (looked up in the current snapshot at each
//! handshake, so a replaced or deleted certificate is followed).
//!
//! Mutual TLS (a forward's `client-auth=optional|required`, RFC 8446 §4.3.2,
//! §4.4.2; RFC 5246 §7.4.4): the client's chain is checked by rustls'
//! `WebPkiClientVerifier` (path to a trust anchor, validity, clientAuth EKU)
//! against the listener's trust set, the local CA's root (`client-ca=local-ca`),
//! the imported client CAs (`client-ca=imported`) or the Root CA list
//! (`client-ca=roots`). `ClientTrust` holds the current
//! verifier in an `ArcSwap`: the handshake reads it without a lock, and
//! `serve` rebuilds it off the handshake path when the trust set in the store
//! changes (`ClientTrust::refresh`). No hint list is sent (an empty
//! `certificate_authorities`: the client sends the certificate it has), so a
//! change of trust set never needs a new config. A refused client certificate
//! (or none under `required`) fails the handshake with rustls' alert
//! (`unknown_ca`, `certificate_required`, ...). Such a listener resumes no
//! session (no tickets, no cache): a resumed handshake would skip the check
//! against the current trust set.

use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig};

use crate::daemon::Shared;
use crate::limits::MAX_LOCAL_ADDRESSES;
use crate::store::{Store, StoreError};

/// Picks the certificate for each ClientHello from the current snapshot.
#[derive(Clone)]
pub struct SniResolver {
    shared: Arc<Shared>,
    /// The local address of the connections this resolver serves.
    local: Option<IpAddr>,
    /// The listener's `default-cert=` (certificate ID), tried before the
    /// global default.
    default: Option<Arc<str>>,
}

impl core::fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SniResolver")
    }
}

impl SniResolver {
    /// A resolver over the daemon's snapshot.
    pub fn new(shared: Arc<Shared>) -> SniResolver {
        SniResolver {
            shared,
            local: None,
            default: None,
        }
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let snapshot = self.shared.snapshot_cell().load();
        // TLS-ALPN-01 (RFC 8737 §3): only a ClientHello offering exactly
        // `acme-tls/1` gets the challenge certificate.
        if let Some(mut alpn) = client_hello.alpn() {
            if alpn.next() == Some(crate::renewal::issue::ACME_TLS_ALPN) && alpn.next().is_none() {
                return client_hello
                    .server_name()
                    .and_then(|sni| snapshot.tls_alpn_challenge(sni))
                    .cloned();
            }
        }
        let resolution = snapshot.resolve_for(
            client_hello.server_name(),
            self.local,
            self.default.as_deref(),
            crate::clock::now(),
        );
        resolution.served.map(|s| s.certified.clone())
    }
}

/// A listener's TLS settings besides client authentication (a forward's
/// `alpn=`, `min-tls=`, `default-cert=`).
#[derive(Debug, Clone, Default)]
pub struct ListenerTls {
    /// The ALPN protocols offered, in preference order; empty: none.
    pub alpn: Vec<Vec<u8>>,
    /// The lowest TLS version accepted.
    pub min_tls: MinTls,
    /// The certificate served where the global default would be.
    pub default_cert: Option<Arc<str>>,
}

impl ListenerTls {
    /// Offering `alpn`, TLS 1.2 and 1.3, the global default.
    pub fn with_alpn(alpn: &[&[u8]]) -> ListenerTls {
        ListenerTls {
            alpn: alpn.iter().map(|p| p.to_vec()).collect(),
            ..ListenerTls::default()
        }
    }
}

/// A forward's `min-tls=`: the lowest TLS version accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MinTls {
    /// TLS 1.2 and 1.3 (the default; phones still speak 1.2).
    #[default]
    Tls12,
    /// TLS 1.3 only (RFC 8446); a 1.2-only client gets a
    /// `protocol_version` alert.
    Tls13,
}

impl std::str::FromStr for MinTls {
    type Err = String;

    fn from_str(s: &str) -> Result<MinTls, String> {
        match s {
            "1.2" => Ok(MinTls::Tls12),
            "1.3" => Ok(MinTls::Tls13),
            _ => Err(format!("min-tls must be 1.2 or 1.3, got {s}")),
        }
    }
}

/// A rustls server config (TLS 1.2 and 1.3, ring) using the SNI resolver,
/// with session tickets and a bounded TLS 1.2 session cache. `alpn` lists
/// the protocols offered (e.g. `http/1.1`), empty for raw TLS.
pub fn server_config(
    shared: Arc<Shared>,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, rustls::Error> {
    server_config_with(shared, &ListenerTls::with_alpn(alpn), None)
}

/// A server config with `settings`, asking for client certificates as
/// `client_auth` says (`None`: no client authentication).
pub fn server_config_with(
    shared: Arc<Shared>,
    settings: &ListenerTls,
    client_auth: Option<Arc<ClientTrust>>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&'static rustls::SupportedProtocolVersion] = match settings.min_tls {
        MinTls::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        MinTls::Tls13 => &[&rustls::version::TLS13],
    };
    let builder = ServerConfig::builder_with_provider(provider).with_protocol_versions(versions)?;
    let mutual = client_auth.is_some();
    let builder = match client_auth {
        Some(trust) => builder.with_client_cert_verifier(trust),
        None => builder.with_no_client_auth(),
    };
    let resolver = SniResolver {
        default: settings.default_cert.clone(),
        ..SniResolver::new(shared)
    };
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = settings.alpn.clone();
    if mutual {
        // No resumption: a resumed session skips the client certificate
        // check, so a certificate whose root was since removed from the
        // trust set would still get in. Every handshake verifies it.
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
    } else {
        config.ticketer = rustls::crypto::ring::Ticketer::new()?;
        config.session_storage = rustls::server::ServerSessionMemoryCache::new(
            crate::limits::TLS12_SESSION_CACHE_ENTRIES,
        );
    }
    Ok(Arc::new(config))
}

/// A forward's `client-auth=`: whether clients must present a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// No certificate is asked for (the default).
    #[default]
    None,
    /// Asked for; a client without one is let in, one with a certificate
    /// that does not verify is refused.
    Optional,
    /// A certificate that verifies is required.
    Required,
}

impl std::str::FromStr for ClientAuth {
    type Err = String;

    fn from_str(s: &str) -> Result<ClientAuth, String> {
        match s {
            "none" => Ok(ClientAuth::None),
            "optional" => Ok(ClientAuth::Optional),
            "required" => Ok(ClientAuth::Required),
            _ => Err(format!(
                "client-auth must be none, optional or required, got {s}"
            )),
        }
    }
}

/// A forward's `client-ca=`: the trust anchors client certificates must
/// chain to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientCa {
    /// The root of the local CA (`ca init`; the default).
    #[default]
    LocalCa,
    /// The imported client CAs (`client-cas import`, `import --kind
    /// client-ca`): a company or carrier CA trusted for clients only.
    Imported,
    /// The Root CA list (`roots`, including imported roots).
    Roots,
}

impl std::str::FromStr for ClientCa {
    type Err = String;

    fn from_str(s: &str) -> Result<ClientCa, String> {
        match s {
            "local-ca" => Ok(ClientCa::LocalCa),
            "imported" => Ok(ClientCa::Imported),
            "roots" => Ok(ClientCa::Roots),
            _ => Err(format!(
                "client-ca must be local-ca, imported or roots, got {s}"
            )),
        }
    }
}

impl core::fmt::Display for ClientCa {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ClientCa::LocalCa => "local-ca",
            ClientCa::Imported => "imported",
            ClientCa::Roots => "roots",
        })
    }
}

/// Why a listener's client trust set could not be built.
#[derive(Debug)]
pub enum ClientTrustError {
    /// `client-ca=local-ca` but no local CA exists (`ca init` first).
    NoLocalCa,
    /// The trust set holds no usable certificate.
    NoAnchors(ClientCa),
    /// The store could not be read.
    Store(StoreError),
    /// rustls refused the verifier.
    Verifier(String),
}

impl core::fmt::Display for ClientTrustError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ClientTrustError::NoLocalCa => f.write_str(
                "client-ca=local-ca but there is no local CA (run `pbx-certd ca init` first)",
            ),
            ClientTrustError::NoAnchors(ca) => {
                write!(f, "client-ca={ca}: no usable trust anchor in the store")
            }
            ClientTrustError::Store(e) => e.fmt(f),
            ClientTrustError::Verifier(e) => write!(f, "client verifier refused: {e}"),
        }
    }
}

impl std::error::Error for ClientTrustError {}

impl ClientTrustError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            ClientTrustError::NoLocalCa => "no-local-ca",
            ClientTrustError::NoAnchors(_) => "no-client-anchors",
            ClientTrustError::Store(e) => e.code(),
            ClientTrustError::Verifier(_) => "tls-config",
        }
    }
}

/// The trust anchors (DER) of `ca` in the store, sorted (so equal sets
/// compare equal).
pub fn client_anchors(store: &Store, ca: ClientCa) -> Result<Vec<Vec<u8>>, ClientTrustError> {
    let mut ders = match ca {
        ClientCa::LocalCa => match crate::localca::root_der(store) {
            Ok(der) => vec![der],
            Err(crate::error::Error::NoCa) => return Err(ClientTrustError::NoLocalCa),
            Err(crate::error::Error::Store(e)) => return Err(ClientTrustError::Store(e)),
            Err(e) => return Err(ClientTrustError::Verifier(e.to_string())),
        },
        ClientCa::Imported => crate::roots::TrustList::Client
            .entries(store)
            .map_err(ClientTrustError::Store)?
            .into_iter()
            .map(|(_, der)| der)
            .collect(),
        ClientCa::Roots => store
            .roots()
            .map_err(ClientTrustError::Store)?
            .into_iter()
            .map(|(_, der)| der)
            .collect(),
    };
    ders.sort();
    Ok(ders)
}

/// A verifier over `anchors` for `auth` (not `None`).
fn build_verifier(
    auth: ClientAuth,
    ca: ClientCa,
    anchors: &[Vec<u8>],
) -> Result<Arc<dyn ClientCertVerifier>, ClientTrustError> {
    let mut roots = RootCertStore::empty();
    for der in anchors {
        // An unusable entry of the Root CA list is skipped, as rustls does.
        let _ = roots.add(CertificateDer::from(der.as_slice()));
    }
    if roots.is_empty() {
        return Err(ClientTrustError::NoAnchors(ca));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    let builder = match auth {
        ClientAuth::Optional => builder.allow_unauthenticated(),
        ClientAuth::None | ClientAuth::Required => builder,
    };
    builder
        .build()
        .map_err(|e| ClientTrustError::Verifier(e.to_string()))
}

/// A listener's client-certificate verifier over the current trust set.
pub struct ClientTrust {
    auth: ClientAuth,
    ca: ClientCa,
    current: ArcSwap<Arc<dyn ClientCertVerifier>>,
    /// The anchors `current` was built from (only `refresh` reads it).
    anchors: std::sync::Mutex<Vec<Vec<u8>>>,
}

impl core::fmt::Debug for ClientTrust {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "ClientTrust({:?}, {})", self.auth, self.ca)
    }
}

impl ClientTrust {
    /// The verifier for `auth` (`None` for `ClientAuth::None`) over the
    /// store's current trust set `ca`.
    pub fn new(
        store: &Store,
        auth: ClientAuth,
        ca: ClientCa,
    ) -> Result<Option<Arc<ClientTrust>>, ClientTrustError> {
        if auth == ClientAuth::None {
            return Ok(None);
        }
        let anchors = client_anchors(store, ca)?;
        let verifier = build_verifier(auth, ca, &anchors)?;
        Ok(Some(Arc::new(ClientTrust {
            auth,
            ca,
            current: ArcSwap::from_pointee(verifier),
            anchors: std::sync::Mutex::new(anchors),
        })))
    }

    /// Rebuild the verifier when the trust set in the store changed (store
    /// I/O: call it off the handshake path). A trust set that became empty
    /// refuses every client certificate. `Ok(true)` when it changed.
    pub fn refresh(&self, store: &Store) -> Result<bool, ClientTrustError> {
        let anchors = match client_anchors(store, self.ca) {
            Ok(a) => a,
            Err(ClientTrustError::NoLocalCa) => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut held = self.anchors.lock().unwrap_or_else(|p| p.into_inner());
        if *held == anchors {
            return Ok(false);
        }
        let verifier: Arc<dyn ClientCertVerifier> =
            match build_verifier(self.auth, self.ca, &anchors) {
                Ok(v) => v,
                Err(ClientTrustError::NoAnchors(_)) => Arc::new(RefuseAll(self.auth)),
                Err(e) => return Err(e),
            };
        self.current.store(Arc::new(verifier));
        *held = anchors;
        Ok(true)
    }

    /// Whether clients must present a certificate.
    pub fn auth(&self) -> ClientAuth {
        self.auth
    }
}

impl ClientCertVerifier for ClientTrust {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.auth == ClientAuth::Required
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.current
            .load()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current
            .load()
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current
            .load()
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.current.load().supported_verify_schemes()
    }
}

/// The verifier of an empty trust set: every client certificate is refused
/// (`unknown_ca`); without one, `optional` still lets the client in.
#[derive(Debug)]
struct RefuseAll(ClientAuth);

impl ClientCertVerifier for RefuseAll {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.0 == ClientAuth::Required
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        ))
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        ))
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        ))
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// One listener's TLS acceptors: the config for an unknown local address,
/// and one per local address seen (same ALPN, ticket keys and session
/// cache; the resolver knows the address).
pub struct Acceptors {
    shared: Arc<Shared>,
    default: Option<Arc<str>>,
    base: Arc<ServerConfig>,
    by_local: ArcSwap<Vec<(IpAddr, Arc<ServerConfig>)>>,
}

impl Acceptors {
    /// The acceptors of a listener with `settings`, asking for client
    /// certificates as `client_auth` says (`server_config_with`).
    pub fn new(
        shared: Arc<Shared>,
        settings: &ListenerTls,
        client_auth: Option<Arc<ClientTrust>>,
    ) -> Result<Acceptors, rustls::Error> {
        let base = server_config_with(shared.clone(), settings, client_auth)?;
        Ok(Acceptors {
            shared,
            default: settings.default_cert.clone(),
            base,
            by_local: ArcSwap::from_pointee(Vec::new()),
        })
    }

    /// The listener's own default certificate (`default-cert=ID`).
    pub fn default_cert(&self) -> Option<&str> {
        self.default.as_deref()
    }

    /// The config when the local address is unknown.
    pub fn any(&self) -> Arc<ServerConfig> {
        self.base.clone()
    }

    /// The config for a connection that arrived at `local` (an
    /// IPv4-mapped IPv6 address counts as the IPv4 address).
    pub fn for_local(&self, local: IpAddr) -> Arc<ServerConfig> {
        let local = local.to_canonical();
        if let Some((_, a)) = self.by_local.load().iter().find(|(ip, _)| *ip == local) {
            return a.clone();
        }
        let mut config = (*self.base).clone();
        config.cert_resolver = Arc::new(SniResolver {
            shared: self.shared.clone(),
            local: Some(local),
            default: self.default.clone(),
        });
        let made = Arc::new(config);
        let mut kept = self.base.clone();
        self.by_local.rcu(|list| {
            if let Some((_, a)) = list.iter().find(|(ip, _)| *ip == local) {
                kept = a.clone();
                return list.clone();
            }
            if list.len() >= MAX_LOCAL_ADDRESSES {
                kept = self.base.clone();
                return list.clone();
            }
            kept = made.clone();
            let mut more = Vec::clone(list);
            more.push((local, made.clone()));
            Arc::new(more)
        });
        kept
    }
}
