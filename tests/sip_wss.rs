//! Issue 12, SIP over WebSocket (WSS, RFC 7118) through a forward, with the
//! real peer: Debian's Kamailio with its xhttp and websocket modules
//! (tests/sip/kamailio.cfg.in with `WITH_WEBSOCKET`) behind
//! `--tls-forward L=127.0.0.1:PORT,alpn=http/1.1`. A WebSocket client
//! (tests/common/websocket.rs over rustls, as a browser phone: ALPN
//! `http/1.1`, HTTP/1.1 Upgrade with `Sec-WebSocket-Protocol: sip`, masked
//! frames, RFC 6455) upgrades and registers: the forward passes the upgrade
//! through unchanged (Kamailio's 101 carries the accept key computed from
//! the client's key and the `sip` subprotocol), the REGISTER in a text
//! frame gets 200 OK in one, and Kamailio logs it as a WebSocket
//! registration (`src=ws:`).
//!
//! Native only (scripts/test-qemu.sh leaves this binary out, README "What
//! runs where"): Kamailio is an x86-64 Debian package; the forward's ALPN
//! setting itself is tested under emulation by tests/forward_settings.rs.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::accept_any::{client_config, AcceptAny};
use common::kamailio::{kamailio_bin, websocket_missing, Kamailio};
use common::websocket::{accept_key, read_message, send_text, upgrade};
use common::*;
use rustls::pki_types::ServerName;

/// Hang guard of every read (a hang is a failure).
const GUARD: Duration = Duration::from_secs(60);

/// The SIP domain Kamailio serves and pbx-certd has a certificate for.
const DOMAIN: &str = "sip.acme.test";

/// A TLS connection to `fwd` offering ALPN `http/1.1`, as a browser does
/// for `wss://`.
fn wss_connect(
    fwd: SocketAddr,
) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
    let tcp = std::net::TcpStream::connect(fwd).unwrap();
    tcp.set_read_timeout(Some(GUARD)).unwrap();
    let config = Arc::new(client_config(AcceptAny::new(), &[b"http/1.1"]));
    let conn =
        rustls::ClientConnection::new(config, ServerName::try_from(DOMAIN).unwrap()).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).unwrap();
    }
    tls
}

/// A REGISTER as a WebSocket phone sends it (RFC 7118 §5.2: Via transport
/// WSS, an `.invalid` host, `rport`; Contact with `transport=ws`).
fn register_request(n: u32) -> String {
    format!(
        "REGISTER sip:{DOMAIN} SIP/2.0\r\n\
         Via: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bK-wss-{n};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@{DOMAIN}>;tag=wss{n}\r\n\
         To: <sip:alice@{DOMAIN}>\r\n\
         Call-ID: wss-call@df7jal23ls0d.invalid\r\n\
         CSeq: {n} REGISTER\r\n\
         Contact: <sip:alice@df7jal23ls0d.invalid;transport=ws>\r\n\
         Expires: 60\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// The header `name`'s value in an HTTP head (names case-insensitive).
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[test]
fn a_wss_phone_registers_with_kamailio_through_a_forward_with_alpn_http11() {
    // The client's accept-key check itself: RFC 6455 §1.3's example.
    assert_eq!(
        accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
    let bin = kamailio_bin();
    if !skip::require("kamailio", bin.as_ref().err().map(String::as_str)) {
        return;
    }
    if !skip::require("kamailio websocket module", websocket_missing().as_deref()) {
        return;
    }
    let kamailio = Kamailio::start(&bin.unwrap(), &["WITH_WEBSOCKET"]);
    let pbx = Pbx::new();
    let pki = Pki::new();
    pbx.import_ok(pki.root.pem(), None, &[]);
    pki.import(&pbx, &pki.leaf(leaf(&[DOMAIN])), &[]);
    let daemon = pbx
        .daemon()
        .forward_with(kamailio.addr, "alpn=http/1.1")
        .start();

    let mut tls = wss_connect(daemon.forward.unwrap());
    assert_eq!(
        tls.conn.alpn_protocol(),
        Some(&b"http/1.1"[..]),
        "the forward must agree on http/1.1 for wss://"
    );
    let (head, key) = upgrade(&mut tls, DOMAIN, 0x5049_5058_5753_5331);
    let log = || kamailio.log_text();
    assert!(
        head.starts_with("HTTP/1.1 101"),
        "no 101 Switching Protocols:\n{head}\n--- kamailio:\n{}",
        log()
    );
    assert_eq!(
        header(&head, "Sec-WebSocket-Accept"),
        Some(accept_key(&key).as_str()),
        "the accept key of the key the client sent (the upgrade passed unchanged):\n{head}"
    );
    assert_eq!(
        header(&head, "Sec-WebSocket-Protocol"),
        Some("sip"),
        "{head}"
    );

    for n in 1..=2 {
        send_text(&mut tls, &register_request(n), [0x12, 0x34, 0x56, n as u8]);
        let reply = read_message(&mut tls).unwrap_or_else(|| {
            panic!(
                "no WebSocket message back for REGISTER {n}; kamailio:\n{}",
                log()
            )
        });
        assert!(
            reply.starts_with("SIP/2.0 200"),
            "REGISTER {n} over WSS not accepted:\n{reply}\n--- kamailio:\n{}",
            log()
        );
        assert!(reply.contains(&format!("CSeq: {n} REGISTER")), "{reply}");
    }
    let line = kamailio.registered_line();
    assert!(
        line.contains("src=ws:127.0.0.1:") && line.contains("transport=ws"),
        "Kamailio must see a WebSocket registration:\n{line}"
    );
}
