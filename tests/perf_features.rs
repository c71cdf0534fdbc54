//! Performance features that change behaviour (issue 13), driven through the
//! real daemon with default settings: `--workers 2` serves every tenant's
//! certificate by SNI from both workers and stops cleanly on SIGTERM; a
//! reconnecting TLS 1.3 client resumes its session (a stateless ticket) even
//! after many other clients connected in between; `--workers` out of range is
//! a usage error. Speed itself is measured by `scripts/bench-tls.sh`, never
//! asserted here.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::accept_any::{client_config, AcceptAny};
use common::{leaf, sha256_hex, Pbx, Pki};
use pbx_certd::limits::MAX_WORKERS;
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, HandshakeKind, StreamOwned};

/// Hang guard for waits on the daemon (not a timing assertion).
const GUARD: Duration = Duration::from_secs(60);

/// A pbx with two tenants, each with its own certificate: SNI -> leaf sha256.
fn two_tenants(pbx: &Pbx) -> BTreeMap<&'static str, String> {
    let pki = Pki::new();
    pbx.import_ok(pki.root.pem(), None, &[]);
    let mut expected = BTreeMap::new();
    for (tenant, name) in [("alpha", "sip.alpha.test"), ("beta", "sip.beta.test")] {
        pbx.tenant_add(tenant, &[name]);
        let cert = pki.leaf(leaf(&[name]));
        pki.import(pbx, &cert, &[]);
        expected.insert(name, sha256_hex(&cert.der()));
    }
    expected
}

/// One TLS handshake with `sni`: the presented leaf's sha256 and the stream.
fn handshake(
    addr: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
    capture: &AcceptAny,
    sni: &str,
) -> Result<(String, StreamOwned<ClientConnection, TcpStream>), String> {
    let name = ServerName::try_from(sni.to_string()).map_err(|e| e.to_string())?;
    let conn = ClientConnection::new(config.clone(), name).map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let mut tls = StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .map_err(|e| format!("handshake with {sni}: {e}"))?;
    }
    let leaf = match tls.conn.handshake_kind() {
        // A resumed session shows the certificate it was made with.
        Some(HandshakeKind::Resumed) => tls
            .conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec()),
        _ => capture.leaf(),
    }
    .ok_or("no certificate")?;
    Ok((sha256_hex(&leaf), tls))
}

/// `GET /` over `tls` to its end (reads the session tickets on the way).
fn get(tls: &mut StreamOwned<ClientConnection, TcpStream>) -> String {
    tls.write_all(b"GET / HTTP/1.1\r\nHost: pbx\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut body = Vec::new();
    let _ = tls.read_to_end(&mut body);
    String::from_utf8_lossy(&body).into_owned()
}

#[test]
fn two_workers_both_serve_each_tenant_by_sni_and_stop_cleanly() {
    let pbx = Pbx::new();
    let expected = two_tenants(&pbx);
    // Debug lines name the worker that took each TLS connection.
    let daemon = pbx
        .daemon()
        .args(&["--workers", "2"])
        .env("PBX_CERTD_LOG", "debug")
        .start();
    let ready = daemon.startup.last().cloned().unwrap_or_default();
    assert!(ready.contains("workers=2"), "{ready}");
    let https = daemon.https;

    // Clients in parallel, so a connection arrives while a worker is busy
    // with another handshake; each alternates the two tenants' names.
    const CLIENTS: usize = 8;
    const EACH: usize = 12;
    let handshakes: Vec<Result<(), String>> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let expected = &expected;
                s.spawn(move || {
                    let capture = AcceptAny::new();
                    let config = Arc::new(client_config(capture.clone(), &[b"http/1.1"]));
                    for i in 0..EACH {
                        let sni = if (c + i) % 2 == 0 {
                            "sip.alpha.test"
                        } else {
                            "sip.beta.test"
                        };
                        let (got, _tls) = handshake(https, &config, &capture, sni)?;
                        if got != expected[sni] {
                            return Err(format!("{sni} got the certificate {got}"));
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    for h in &handshakes {
        assert!(h.is_ok(), "{h:?}");
    }

    // Which worker took each connection (every one is logged).
    let mut per_worker: BTreeMap<String, usize> = BTreeMap::new();
    let deadline = Instant::now() + GUARD;
    let mut seen = 0;
    while seen < CLIENTS * EACH && Instant::now() < deadline {
        let Ok(line) = daemon.log.recv_timeout(Duration::from_secs(1)) else {
            continue;
        };
        if let Some(rest) = line.split("worker ").nth(1) {
            if rest.contains(": TLS connection from") {
                let w = rest.split(':').next().unwrap_or_default().to_string();
                *per_worker.entry(w).or_default() += 1;
                seen += 1;
            }
        }
    }
    assert_eq!(
        seen,
        CLIENTS * EACH,
        "every connection is logged with its worker: {per_worker:?}"
    );
    assert!(
        per_worker.get("1").copied().unwrap_or(0) > 0
            && per_worker.get("2").copied().unwrap_or(0) > 0,
        "both workers served: {per_worker:?}"
    );

    // SIGTERM stops both workers and the process exits 0.
    let (status, _) = daemon.stop();
    assert!(status.success(), "exit after SIGTERM: {status:?}");
}

#[test]
fn a_reconnecting_tls13_client_resumes_after_many_others_connected() {
    let pbx = Pbx::new();
    let expected = two_tenants(&pbx);
    let daemon = pbx.serve(false);

    // The phone: TLS 1.3 only, keeps its tickets.
    let capture = AcceptAny::new();
    let mut phone = client_config(capture.clone(), &[b"http/1.1"]);
    phone.enable_early_data = false;
    let phone = Arc::new(phone);
    let (got, mut tls) = handshake(daemon.https, &phone, &capture, "sip.alpha.test").unwrap();
    assert_eq!(got, expected["sip.alpha.test"]);
    assert_eq!(tls.conn.handshake_kind(), Some(HandshakeKind::Full));
    let first = get(&mut tls);
    assert!(first.starts_with("HTTP/1.1 "), "{first}");

    // Many other clients (no resumption) connect in between: a bounded
    // server-side session cache would have forgotten the phone's session
    // (rustls' default keeps 256 entries, 2 per full handshake).
    let others = 160;
    let other_capture = AcceptAny::new();
    let mut other = client_config(other_capture.clone(), &[b"http/1.1"]);
    other.resumption = rustls::client::Resumption::disabled();
    let other = Arc::new(other);
    for i in 0..others {
        let sni = if i % 2 == 0 {
            "sip.alpha.test"
        } else {
            "sip.beta.test"
        };
        let (got, _tls) = handshake(daemon.https, &other, &other_capture, sni).unwrap();
        assert_eq!(got, expected[sni]);
    }

    let (got, mut tls) = handshake(daemon.https, &phone, &capture, "sip.alpha.test").unwrap();
    assert_eq!(
        tls.conn.handshake_kind(),
        Some(HandshakeKind::Resumed),
        "the phone's TLS 1.3 session was not resumed after {others} other handshakes"
    );
    assert_eq!(got, expected["sip.alpha.test"]);
    let again = get(&mut tls);
    assert!(
        again.starts_with("HTTP/1.1 "),
        "resumed session serves: {again}"
    );
}

#[test]
fn workers_out_of_range_is_a_usage_error() {
    let pbx = Pbx::new();
    for bad in ["0", "65", "many"] {
        let out = pbx.run(&[
            "serve",
            "--https",
            "none",
            "--http",
            "none",
            "--workers",
            bad,
        ]);
        out.usage_error();
        let range = format!("workers must be a number from 1 to {MAX_WORKERS}");
        assert!(out.stderr.contains(&range), "{}", out.describe());
    }
}
