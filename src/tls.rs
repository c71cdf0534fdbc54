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

use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use futures_rustls::TlsAcceptor;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use crate::daemon::Shared;
use crate::limits::MAX_LOCAL_ADDRESSES;

/// Picks the certificate for each ClientHello from the current snapshot.
#[derive(Clone)]
pub struct SniResolver {
    shared: Arc<Shared>,
    /// The local address of the connections this resolver serves.
    local: Option<IpAddr>,
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
        let resolution =
            snapshot.resolve(client_hello.server_name(), self.local, crate::clock::now());
        resolution.served.map(|s| s.certified.clone())
    }
}

/// A rustls server config (TLS 1.2 and 1.3, ring) using the SNI resolver,
/// with session tickets and a bounded TLS 1.2 session cache. `alpn` lists
/// the protocols offered (e.g. `http/1.1`), empty for raw TLS.
pub fn server_config(
    shared: Arc<Shared>,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver::new(shared)));
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    config.session_storage =
        rustls::server::ServerSessionMemoryCache::new(crate::limits::TLS12_SESSION_CACHE_ENTRIES);
    Ok(Arc::new(config))
}

/// One listener's TLS acceptors: the config for an unknown local address,
/// and one per local address seen (same ALPN, ticket keys and session
/// cache; the resolver knows the address).
pub struct Acceptors {
    shared: Arc<Shared>,
    base: Arc<ServerConfig>,
    any: TlsAcceptor,
    by_local: ArcSwap<Vec<(IpAddr, TlsAcceptor)>>,
}

impl Acceptors {
    /// The acceptors of a listener offering `alpn`.
    pub fn new(shared: Arc<Shared>, alpn: &[&[u8]]) -> Result<Acceptors, rustls::Error> {
        let base = server_config(shared.clone(), alpn)?;
        Ok(Acceptors {
            shared,
            any: TlsAcceptor::from(base.clone()),
            base,
            by_local: ArcSwap::from_pointee(Vec::new()),
        })
    }

    /// The acceptor when the local address is unknown.
    pub fn any(&self) -> TlsAcceptor {
        self.any.clone()
    }

    /// The acceptor for a connection that arrived at `local` (an
    /// IPv4-mapped IPv6 address counts as the IPv4 address).
    pub fn for_local(&self, local: IpAddr) -> TlsAcceptor {
        let local = local.to_canonical();
        if let Some((_, a)) = self.by_local.load().iter().find(|(ip, _)| *ip == local) {
            return a.clone();
        }
        let mut config = (*self.base).clone();
        config.cert_resolver = Arc::new(SniResolver {
            shared: self.shared.clone(),
            local: Some(local),
        });
        let made = TlsAcceptor::from(Arc::new(config));
        let mut kept = self.any.clone();
        self.by_local.rcu(|list| {
            if let Some((_, a)) = list.iter().find(|(ip, _)| *ip == local) {
                kept = a.clone();
                return list.clone();
            }
            if list.len() >= MAX_LOCAL_ADDRESSES {
                kept = self.any.clone();
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
