//! Issue 12, a forward's per-listener settings against the running daemon:
//! `alpn=` (the protocols offered, server preference, RFC 7301 §3.2),
//! `min-tls=1.3` (a TLS 1.2 client is refused), `idle=SECONDS` (a silent
//! forwarded connection is closed), `max-conns=N` (the listener's
//! established budget) and `default-cert=ID` (clients without SNI, or with
//! one nothing covers, get that certificate on this listener; the global
//! default elsewhere). The options go through the one parser of the flag
//! and the config file; a bad one is a usage error naming it. The TLS
//! clients are rustls; the target is a TCP echo service.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::accept_any::{client_config, AcceptAny};
use common::*;
use rustls::pki_types::ServerName;

/// Hang guard of every read and wait (a hang is a failure).
const GUARD: Duration = Duration::from_secs(60);

/// A TCP echo service: every byte read is written back, until EOF.
fn echo_target() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut r = s.try_clone().unwrap();
                let _ = std::io::copy(&mut r, &mut s);
            });
        }
    });
    addr
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// How a test client connects.
#[derive(Clone, Copy)]
struct Client<'a> {
    sni: Option<&'a str>,
    alpn: &'a [&'a [u8]],
    tls12_only: bool,
}

const PLAIN: Client<'static> = Client {
    sni: Some("sip.acme.test"),
    alpn: &[],
    tls12_only: false,
};

/// A rustls client to `fwd` through its handshake: the stream and the
/// leaf the daemon presented, or the handshake's error.
fn connect(fwd: SocketAddr, c: Client<'_>) -> Result<(Tls, Vec<u8>), std::io::Error> {
    let tcp = TcpStream::connect(fwd).unwrap();
    tcp.set_read_timeout(Some(GUARD)).unwrap();
    let verifier = AcceptAny::new();
    let mut config = client_config(verifier.clone(), c.alpn);
    if c.tls12_only {
        config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    }
    config.enable_sni = c.sni.is_some();
    let name = ServerName::try_from(c.sni.unwrap_or("pbx.invalid").to_owned()).unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok((tls, verifier.leaf().unwrap_or_default()))
}

/// Sends `line` and reads its echo (`Err` when the connection closed).
fn echo(tls: &mut Tls, line: &str) -> std::io::Result<String> {
    tls.write_all(line.as_bytes())?;
    tls.flush()?;
    let mut buf = vec![0u8; line.len()];
    tls.read_exact(&mut buf)?;
    Ok(String::from_utf8(buf).unwrap())
}

/// A pbx-certd data dir serving `sip.acme.test`.
fn pbx_with_server_cert() -> Pbx {
    let pbx = Pbx::new();
    let pki = Pki::new();
    pbx.import_ok(pki.root.pem(), None, &[]);
    pki.import(&pbx, &pki.leaf(leaf(&["sip.acme.test"])), &[]);
    pbx
}

/// Each new option's bad values are usage errors naming the option, from
/// the flag and from the config file alike.
#[test]
fn forward_settings_are_checked_by_one_parser() {
    let pbx = Pbx::new();
    let base = "127.0.0.1:0=127.0.0.1:9";
    for (bad, says) in [
        ("min-tls=1.1", "min-tls must be 1.2 or 1.3"),
        ("idle=0", "idle must be none or seconds"),
        ("idle=soon", "idle must be none or seconds"),
        ("idle=604801", "idle must be none or seconds"),
        ("max-conns=0", "max-conns must be a number"),
        ("max-conns=many", "max-conns must be a number"),
        ("alpn=", "alpn protocol"),
        ("alpn=http/1.1,http/1.1", "given twice"),
        ("alpn=h2,a b", "alpn protocol"),
        ("alpn=a,b,c,d,e,f,g,h,i", "at most 8"),
        ("default-cert=", "default-cert needs a certificate ID"),
        ("proxy=v2,h2", "bad forward option"),
        ("idle=5,idle=none", "given twice"),
    ] {
        let spec = format!("{base},{bad}");
        let out = run_command(pbx.daemon().arg("--tls-forward").arg(&spec).command(), None);
        out.usage_error();
        assert!(out.stderr.contains(says), "flag {spec}: {}", out.describe());
        let config = pbx.file("serve.conf", format!("tls-forward = {spec}\n"));
        let out = run_command(pbx.daemon().args(&["--config", &config]).command(), None);
        out.usage_error();
        assert!(
            out.stderr.contains(says),
            "config {spec}: {}",
            out.describe()
        );
    }
}

/// `alpn=h2,http/1.1` (the second name continues the list): a client
/// offering `http/1.1` gets it, one offering both gets the server's first
/// (`h2`), one offering neither is refused (no_application_protocol), one
/// offering none gets none. Without `alpn=` nothing is chosen.
#[test]
fn alpn_offers_the_listed_protocols_only() {
    let pbx = pbx_with_server_cert();
    let to = echo_target();
    let config = pbx.file(
        "serve.conf",
        format!("tls-forward = 127.0.0.1:0={to},alpn=h2,http/1.1\n"),
    );
    let daemon = pbx.daemon().args(&["--config", &config]).start();
    let fwd = daemon.forward.unwrap();
    let chosen = |alpn: &[&[u8]]| {
        connect(fwd, Client { alpn, ..PLAIN })
            .map(|(tls, _)| tls.conn.alpn_protocol().map(<[u8]>::to_vec))
    };
    assert_eq!(chosen(&[b"http/1.1"]).unwrap(), Some(b"http/1.1".to_vec()));
    assert_eq!(
        chosen(&[b"http/1.1", b"h2"]).unwrap(),
        Some(b"h2".to_vec()),
        "the server's preference"
    );
    assert_eq!(chosen(&[]).unwrap(), None);
    let refused = chosen(&[b"sip"]).unwrap_err();
    assert!(
        refused.to_string().contains("NoApplicationProtocol"),
        "{refused}"
    );
    let (mut tls, _) = connect(
        fwd,
        Client {
            alpn: &[b"http/1.1"],
            ..PLAIN
        },
    )
    .unwrap();
    assert_eq!(
        echo(&mut tls, "GET / HTTP/1.1\r\n").unwrap(),
        "GET / HTTP/1.1\r\n"
    );
    drop(daemon);

    let daemon = pbx.daemon().forward(to).start();
    let fwd = daemon.forward.unwrap();
    let (tls, _) = connect(
        fwd,
        Client {
            alpn: &[b"http/1.1"],
            ..PLAIN
        },
    )
    .unwrap();
    assert_eq!(tls.conn.alpn_protocol(), None, "no alpn= offers nothing");
}

/// By default TLS 1.2 and 1.3 are served; `min-tls=1.3` refuses a TLS 1.2
/// client and serves a TLS 1.3 one.
#[test]
fn min_tls_13_refuses_tls12_clients() {
    let pbx = pbx_with_server_cert();
    let to = echo_target();
    let daemon = pbx.daemon().forward(to).start();
    let fwd = daemon.forward.unwrap();
    let tls12 = Client {
        tls12_only: true,
        ..PLAIN
    };
    let (mut tls, _) = connect(fwd, tls12).unwrap();
    assert_eq!(
        tls.conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    assert_eq!(echo(&mut tls, "OPTIONS\n").unwrap(), "OPTIONS\n");
    drop(daemon);

    let daemon = pbx.daemon().forward_with(to, "min-tls=1.3").start();
    let fwd = daemon.forward.unwrap();
    let refused = connect(fwd, tls12).map(|_| ()).unwrap_err();
    assert!(refused.to_string().contains("ProtocolVersion"), "{refused}");
    let (mut tls, _) = connect(fwd, PLAIN).unwrap();
    assert_eq!(
        tls.conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    assert_eq!(echo(&mut tls, "OPTIONS\n").unwrap(), "OPTIONS\n");
}

/// `idle=1`: a forwarded connection that carried data and then fell silent
/// is closed by the daemon (the client reads EOF) and the log says why.
#[test]
fn idle_closes_a_silent_forwarded_connection() {
    let pbx = pbx_with_server_cert();
    let to = echo_target();
    let daemon = pbx.daemon().forward_with(to, "idle=1").start();
    let fwd = daemon.forward.unwrap();
    let (mut tls, _) = connect(fwd, PLAIN).unwrap();
    assert_eq!(echo(&mut tls, "REGISTER\n").unwrap(), "REGISTER\n");
    let mut rest = Vec::new();
    // EOF (or a reset) is the close; a hang is the guard's failure.
    let _ = tls.read_to_end(&mut rest);
    assert!(rest.is_empty(), "nothing more was sent: {rest:?}");
    let start = Instant::now();
    while !daemon.log_text().contains("idle for 1 s") {
        assert!(
            start.elapsed() < GUARD,
            "no idle log line:\n{}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `max-conns=1`: while one forwarded connection is open a second is not
/// served; once the first closes, a new one is.
#[test]
fn max_conns_caps_the_listeners_established_connections() {
    let pbx = pbx_with_server_cert();
    let to = echo_target();
    let daemon = pbx.daemon().forward_with(to, "max-conns=1").start();
    let fwd = daemon.forward.unwrap();
    let (mut first, _) = connect(fwd, PLAIN).unwrap();
    assert_eq!(echo(&mut first, "one\n").unwrap(), "one\n");
    let second = connect(fwd, PLAIN).and_then(|(mut tls, _)| echo(&mut tls, "two\n"));
    assert!(
        second.is_err(),
        "a second connection was served: {second:?}"
    );
    drop(first);
    let start = Instant::now();
    loop {
        let third = connect(fwd, PLAIN).and_then(|(mut tls, _)| echo(&mut tls, "three\n"));
        if third.is_ok() {
            break;
        }
        assert!(
            start.elapsed() < GUARD,
            "the slot was never released: {third:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `default-cert=ID`: on that listener a client without SNI, or with an SNI
/// no certificate covers, gets that certificate instead of the global
/// default; an SNI a certificate names still gets that one; a listener
/// without the option serves the global default. The ID may be a unique
/// prefix; one that is not a servable certificate stops the daemon with
/// `unknown-default-cert`.
#[test]
fn default_cert_serves_clients_without_sni_on_its_listener() {
    let pbx = Pbx::new();
    let pki = Pki::new();
    pbx.import_ok(pki.root.pem(), None, &[]);
    // The global default: the server certificate valid longest.
    let global = pki.leaf(leaf(&["a.acme.test"]).valid_days(-1, 400));
    let own = pki.leaf(leaf(&["b.acme.test"]).valid_days(-1, 200));
    pki.import(&pbx, &global, &[]);
    let own_id = pki.import(&pbx, &own, &[])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let to = echo_target();

    // A unique prefix names it, as everywhere.
    let daemon = pbx
        .daemon()
        .forward_with(to, &format!("default-cert={}", &own_id[..12]))
        .start();
    let fwd = daemon.forward.unwrap();
    let leaf_for = |fwd, sni| connect(fwd, Client { sni, ..PLAIN }).unwrap().1;
    assert_eq!(
        leaf_for(fwd, None),
        own.der(),
        "no SNI: the listener's default"
    );
    assert_eq!(
        leaf_for(fwd, Some("nobody.acme.test")),
        own.der(),
        "an SNI nothing covers: the listener's default"
    );
    assert_eq!(
        leaf_for(fwd, Some("a.acme.test")),
        global.der(),
        "an SNI match wins"
    );
    drop(daemon);

    let daemon = pbx.daemon().forward(to).start();
    let fwd = daemon.forward.unwrap();
    assert_eq!(
        leaf_for(fwd, None),
        global.der(),
        "no default-cert: the global default"
    );
    drop(daemon);

    let out = run_command(
        pbx.daemon()
            .forward_with(to, "default-cert=0123456789abcdef")
            .command(),
        None,
    );
    assert_ne!(out.status, 0, "{}", out.describe());
    assert!(
        out.stderr.contains("unknown-default-cert"),
        "{}",
        out.describe()
    );
}
