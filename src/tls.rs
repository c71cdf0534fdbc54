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

use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use crate::daemon::Shared;

/// Picks the certificate for each ClientHello from the current snapshot.
#[derive(Clone)]
pub struct SniResolver {
    shared: Arc<Shared>,
}

impl core::fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SniResolver")
    }
}

impl SniResolver {
    /// A resolver over the daemon's snapshot.
    pub fn new(shared: Arc<Shared>) -> SniResolver {
        SniResolver { shared }
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
        let resolution = snapshot.resolve(client_hello.server_name(), crate::clock::now());
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
