//! Entry points for the fuzz targets (`tests/fuzz`, run by `scripts/fuzz.sh`)
//! and for their corpus regression test (`tests/fuzz_corpus.rs`).
//!
//! Why: "untrusted input never panics" is a rule of the whole project; each
//! function here feeds arbitrary bytes to the code that reads one kind of
//! untrusted input in the daemon, through the same public path the daemon
//! uses: the certificate and key boxes of `pbx-certd import` (PEM, DER,
//! keys; rules 1–7), one HTTPS connection to the web admin (request heads,
//! framing, routing, login gate), a TLS ClientHello against the SNI resolver
//! (rustls `ServerConnection` over a snapshot, in memory), an ACME server's
//! HTTP response and JSON (RFC 8555 §6.7 problems, RFC 9773 renewalInfo,
//! the directory's `renewalInfo`), and DNS answers (RFC 1035 §4 messages,
//! RFC 2136 UPDATE answers with RFC 8945 TSIG, the propagation check).
//!
//! What must hold: every function returns normally for every input (a panic
//! is a bug in the code under test, never in the caller); nothing touches the
//! disk or the network (the store is an in-memory `Kv`); the fixtures are
//! built once per process and `self_check` reports when they could not be.

use std::net::SocketAddr;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use crate::daemon::Shared;
use crate::dns01::rfc2136::Rfc2136;
use crate::dns01::{propagation, wire};
use crate::model::TsigAlgorithm;
use crate::ops::{self, Command};
use crate::pki::KindRequest;
use crate::snapshot::Snapshot;
use crate::store::{MemKv, Store};

/// A fuzz target: its name (also its corpus folder) and its entry function,
/// which says how far the input got (a stable code, for tests).
pub type Target = (&'static str, fn(&[u8]) -> &'static str);

/// Every target, by name.
pub const TARGETS: [Target; 5] = [
    ("import", import),
    ("http_request", http_request),
    ("tls_client_hello", tls_client_hello),
    ("acme_response", acme_response),
    ("dns_answer", dns_answer),
];

/// The tenant every fixture store has, and its one DNS name.
pub const TENANT: (&str, &str) = ("acme", "pbx.acme.test");

/// Names of the server certificate in the TLS fixture.
pub const SERVER_NAMES: [&str; 2] = ["exact.example.test", "*.example.test"];

/// The zone, TSIG key and record name of the DNS fixture.
pub const DNS_ZONE: &str = "example.test";
/// The TXT record name the DNS fixture updates and queries.
pub const DNS_RECORD: &str = "_acme-challenge.pbx.example.test";
/// The TSIG key name of the DNS fixture.
pub const DNS_TSIG_NAME: &str = "fuzz-key.";
/// The TSIG secret (Base64) of the DNS fixture.
pub const DNS_TSIG_SECRET: &str = "ZnV6ei1rZXktZm9yLXBieC1jZXJ0ZC10ZXN0cw==";

/// Built once per process.
struct Fixtures {
    /// A store with the bundled roots, the tenant and a system DNS name.
    template: Arc<MemKv>,
    /// The daemon's HTTPS TLS config over a snapshot with a domain, a server
    /// certificate and a TLS-ALPN-01 challenge certificate.
    tls: Arc<rustls::ServerConfig>,
    /// An RFC 2136 provider for `DNS_ZONE`.
    dns: Rfc2136,
}

static FIXTURES: OnceLock<Result<Fixtures, String>> = OnceLock::new();

fn fixtures() -> Result<&'static Fixtures, &'static str> {
    FIXTURES
        .get_or_init(build_fixtures)
        .as_ref()
        .map_err(String::as_str)
}

/// `Ok` when the fixtures every target needs could be built (tests assert
/// this, so a broken fixture cannot make every target a silent no-op).
pub fn self_check() -> Result<(), String> {
    fixtures().map(|_| ()).map_err(str::to_owned)
}

fn self_signed(names: &[&str]) -> Result<(Vec<u8>, Vec<u8>), String> {
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let cert = rcgen::CertificateParams::new(names)
        .and_then(|p| p.self_signed(&key))
        .map_err(|e| e.to_string())?;
    Ok((cert.pem().into_bytes(), key.serialize_pem().into_bytes()))
}

fn build_fixtures() -> Result<Fixtures, String> {
    let err = |e: crate::Error| format!("{}: {e}", e.code());
    let template = Arc::new(MemKv::new());
    let store = crate::ops::with_backend(Box::new(template.clone())).map_err(|e| e.to_string())?;
    let (tenant, name) = TENANT;
    ops::execute(
        &store,
        &Command::TenantAdd {
            name: tenant.into(),
            dns: vec![name.into()],
            ip: vec![],
        },
    )
    .map_err(err)?;
    ops::execute(
        &store,
        &Command::SystemSet {
            dns: Some("pbx.example.test".into()),
            admin_email: None,
            default_cert: None,
            aia_fetch: None,
        },
    )
    .map_err(err)?;

    let tls_kv = template.copy().map_err(|e| e.to_string())?;
    let shared =
        Shared::new(crate::ops::with_backend(Box::new(tls_kv)).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    for (names, kind) in [
        (&[name][..], KindRequest::Domain),
        (&SERVER_NAMES[..], KindRequest::Server),
    ] {
        let (cert, key) = self_signed(names)?;
        shared
            .execute(&Command::Import {
                cert,
                key: Some(key),
                kind,
                replace: false,
            })
            .map_err(err)?;
    }
    let alpn = crate::renewal::issue::alpn_cert(name, &[7; 32]).map_err(|e| e.to_string())?;
    shared
        .set_challenges(|c| {
            c.alpn.insert(name.to_owned(), alpn);
        })
        .map_err(|e| e.to_string())?;
    if shared.snapshot().len() != 2 {
        return Err(format!(
            "the TLS snapshot serves {} certificates, not 2",
            shared.snapshot().len()
        ));
    }
    let tls =
        crate::tls::server_config(shared, &[b"http/1.1", crate::renewal::issue::ACME_TLS_ALPN])
            .map_err(|e| e.to_string())?;

    let dns = Rfc2136::new(
        DNS_ZONE,
        "127.0.0.1:53",
        DNS_TSIG_NAME,
        TsigAlgorithm::HmacSha256,
        DNS_TSIG_SECRET,
    )
    .map_err(|e| e.to_string())?;
    Ok(Fixtures { template, tls, dns })
}

/// A fresh store holding the fixture's roots, tenant and settings.
fn fresh_store() -> Option<Store> {
    let template = &fixtures().ok()?.template;
    crate::ops::with_backend(Box::new(template.copy().ok()?)).ok()
}

/// `pbx-certd import`: byte 0 picks `--kind` (`r` root, `s` server, `d`
/// domain, `t` stir-shaken, anything else auto); the rest up to the first
/// NUL byte is the certificate box, the rest after it the key box. A
/// successful import is then loaded the way the daemon serves it.
/// Outcome: `ok`, or the import error's code.
pub fn import(data: &[u8]) -> &'static str {
    let Some((&selector, rest)) = data.split_first() else {
        return "empty";
    };
    let kind = match selector {
        b'r' => KindRequest::Root,
        b's' => KindRequest::Server,
        b'd' => KindRequest::Domain,
        b't' => KindRequest::StirShaken,
        b'c' => KindRequest::ClientCa,
        _ => KindRequest::Auto,
    };
    let (cert, key) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (
            rest.get(..i).unwrap_or_default(),
            Some(rest.get(i + 1..).unwrap_or_default().to_vec()),
        ),
        None => (rest, None),
    };
    let Some(store) = fresh_store() else {
        return "no-fixture";
    };
    let command = Command::Import {
        cert: cert.to_vec(),
        key,
        kind,
        replace: false,
    };
    match ops::execute(&store, &command) {
        Ok(_) => match Snapshot::load(&store, None) {
            Ok(_) => "ok",
            Err(e) => e.code(),
        },
        Err(e) => {
            let _ = e.to_string();
            e.code()
        }
    }
}

/// An in-memory connection: reads `input` in small pieces (so heads arrive
/// split, as over TCP), then end-of-stream; writes are counted and dropped.
struct MemStream<'a> {
    input: &'a [u8],
    written: &'a std::cell::Cell<usize>,
}

/// Bytes per read, a prime so pieces end at varied places.
const MEM_READ_CHUNK: usize = 61;

impl smol::io::AsyncRead for MemStream<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let n = buf.len().min(self.input.len()).min(MEM_READ_CHUNK);
        let (head, rest) = self.input.split_at(n);
        if let Some(out) = buf.get_mut(..n) {
            out.copy_from_slice(head);
        }
        self.input = rest;
        Poll::Ready(Ok(n))
    }
}

impl smol::io::AsyncWrite for MemStream<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.written
            .set(self.written.get().saturating_add(buf.len()));
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// One HTTPS connection (after TLS) to the web admin and JSON API of a fresh
/// daemon state (no admin password, no setup token): `data` is everything
/// the client sends, then it closes. Outcome: `answered` when the server
/// wrote anything, else `silent`.
pub fn http_request(data: &[u8]) -> &'static str {
    let Some(store) = fresh_store() else {
        return "no-fixture";
    };
    let Ok(shared) = Shared::new(store) else {
        return "no-fixture";
    };
    let written = std::cell::Cell::new(0);
    let web = Arc::new(crate::session::WebState::new());
    let peer = SocketAddr::from(([192, 0, 2, 7], 50_000));
    let stream = MemStream {
        input: data,
        written: &written,
    };
    smol::block_on(crate::http::serve_https_with(shared, web, stream, peer));
    if written.get() > 0 {
        "answered"
    } else {
        "silent"
    }
}

/// `data` as the client's side of a TLS connection to the daemon's HTTPS
/// listener config (SNI resolver over a snapshot; TLS-ALPN-01 challenge for
/// the tenant's name), fully in memory; the server's answers are dropped.
/// Outcome: `alert` (the server refused the input), `answered` (it sent its
/// handshake flight) or `waiting` (it wants more).
pub fn tls_client_hello(data: &[u8]) -> &'static str {
    let Ok(fixtures) = fixtures() else {
        return "no-fixture";
    };
    let Ok(mut conn) = rustls::ServerConnection::new(fixtures.tls.clone()) else {
        return "no-fixture";
    };
    let mut rest = data;
    let mut refused = false;
    while !rest.is_empty() {
        match conn.read_tls(&mut rest) {
            Ok(0) => break,
            Err(_) => {
                refused = true;
                break;
            }
            Ok(_) => {}
        }
        if conn.process_new_packets().is_err() {
            refused = true;
            break;
        }
    }
    let mut sink = std::io::sink();
    let mut wrote = false;
    while conn.wants_write() {
        match conn.write_tls(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(_) => wrote = true,
        }
    }
    match (refused, wrote) {
        (true, _) => "alert",
        (false, true) => "answered",
        (false, false) => "waiting",
    }
}

/// An ACME server's answer: `data` as a raw HTTP/1.x response (the ACME
/// client's parser), its body (or `data` itself when it is no response) as
/// a problem document, a renewalInfo object, a directory and an issued
/// certificate's DER. Outcome: what the body was last read as: a problem
/// (its `AcmeError` code), `ari`, `directory` or `certificate`, else `none`.
pub fn acme_response(data: &[u8]) -> &'static str {
    use crate::acme::AcmeError;
    use crate::outbound::parse_response;
    use crate::renewal::ari;
    let _ = parse_response(data, true);
    let body = match parse_response(data, false) {
        Ok(resp) => {
            let _ = resp.header("retry-after");
            resp.body
        }
        Err(e) => {
            let _ = (e.code(), e.to_string());
            data.to_vec()
        }
    };
    let mut outcome = "none";
    if let Ok(problem) = serde_json::from_slice::<instant_acme::Problem>(&body) {
        let e = AcmeError::from(instant_acme::Error::Api(problem));
        let _ = e.is_bad_nonce();
        outcome = e.code;
    }
    if ari::suggested_window(&body).is_ok() {
        outcome = "ari";
    }
    if let Ok(Some(_)) = ari::renewal_info_of(&body) {
        outcome = "directory";
    }
    if ari::cert_id(&body).is_some() {
        outcome = "certificate";
    }
    outcome
}

/// A DNS server's answer: to an RFC 2136 UPDATE (TSIG checked), to the
/// propagation check's TXT and NS queries, and `data` as the zone file
/// DigitalOcean's API returns. Outcome: the RFC 2136 check's error code
/// (an unsigned answer never passes it), `txt` when the propagation check
/// found TXT values, `ns` when it found name servers with addresses, or
/// `zone-file` when the text named name servers.
pub fn dns_answer(data: &[u8]) -> &'static str {
    use domain::base::{Message, Name};
    let Ok(fixtures) = fixtures() else {
        return "no-fixture";
    };
    let mut outcome = "none";
    let _ = wire::truncated(data);
    if let Ok((request, tran)) = fixtures.dns.message(DNS_RECORD, "fuzz", true) {
        let _ = wire::is_reply(&request, data);
        outcome = match fixtures.dns.check_answer(&tran, data.to_vec()) {
            Ok(()) => "update-ok",
            Err(e) => {
                let _ = e.to_string();
                e.code()
            }
        };
    }
    let (Ok(record), Ok(zone)) = (
        Name::<Vec<u8>>::from_str(&format!("{DNS_RECORD}.")),
        Name::<Vec<u8>>::from_str(&format!("{DNS_ZONE}.")),
    ) else {
        return "no-fixture";
    };
    if propagation::txt_values("fuzz", &record, data).is_ok_and(|v| !v.is_empty()) {
        outcome = "txt";
    }
    if let Ok(msg) = Message::from_octets(data.to_vec()) {
        if let Ok(hosts) = propagation::ns_hosts("fuzz", &msg, &zone) {
            for host in &hosts {
                if !propagation::addresses(&msg, host, true).is_empty() {
                    outcome = "ns";
                }
                let _ = propagation::addresses(&msg, host, false);
            }
        }
    }
    let servers = crate::dns01::digitalocean::zone_file_name_servers(
        &String::from_utf8_lossy(data),
        DNS_ZONE,
    );
    if !servers.is_empty() {
        outcome = "zone-file";
    }
    outcome
}
