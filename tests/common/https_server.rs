//! The TLS side of the tests' fake HTTPS APIs: a CA made here with a
//! 127.0.0.1 leaf (`tls_config`), and a one-connection-at-a-time server loop
//! (`serve`) that reads one HTTP/1.1 request (request line, `Authorization`,
//! `Content-Length` body) and writes one JSON answer, then closes.
//! Each test binary using a fake declares it at its root with `#[path =
//! "common/https_server.rs"] mod https_server;` (the fakes reach it as
//! `crate::https_server`; `tests/acme.rs` also uses `tls_config`), so each
//! binary may use only part of it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;

/// One request as the server read it.
pub struct Request {
    pub method: String,
    pub path: String,
    /// The `Authorization` header's value ("" when absent).
    pub auth: String,
    pub body: Vec<u8>,
}

/// A new CA named `ca_name` (its PEM) and a server config whose leaf,
/// signed by it, names 127.0.0.1.
pub fn tls_config(ca_name: &str) -> (String, Arc<rustls::ServerConfig>) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, ca_name);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap(),
    );
    (ca.pem(), config)
}

/// Serve HTTPS on 127.0.0.1 (a new port) with a CA named `ca_name`:
/// `handle` answers each request with a status and a JSON text. Returns
/// the port and the CA PEM.
pub fn serve(
    ca_name: &str,
    mut handle: impl FnMut(Request) -> (u16, String) + Send + 'static,
) -> (u16, String) {
    let (ca_pem, config) = tls_config(ca_name);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { continue };
            let conn = rustls::ServerConnection::new(config.clone()).unwrap();
            let stream = rustls::StreamOwned::new(conn, tcp);
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue; // e.g. a client that does not trust us
            }
            let mut parts = line.split_whitespace();
            let (method, path) = (
                parts.next().unwrap_or("").to_owned(),
                parts.next().unwrap_or("").to_owned(),
            );
            let (mut auth, mut len) = (String::new(), 0usize);
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    match k.trim().to_ascii_lowercase().as_str() {
                        "authorization" => auth = v.trim().to_owned(),
                        "content-length" => len = v.trim().parse().unwrap_or(0),
                        _ => {}
                    }
                }
            }
            let mut body = vec![0; len];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let (status, text) = handle(Request {
                method,
                path,
                auth,
                body,
            });
            let mut stream = reader.into_inner();
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
            let _ = stream.flush();
            stream.conn.send_close_notify();
            let _ = stream.flush();
        }
    });
    (port, ca_pem)
}
