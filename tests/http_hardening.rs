//! HTTP framing and error answers of the running daemon, on both listeners
//! (HTTPS admin/API and port 80), with raw sockets writing exact bytes.
//!
//! - Request smuggling (RFC 9112 §6, §11.2): a head whose body framing could
//!   be read two ways is answered once and the connection closed; the
//!   request written right after it (`GET /api/certs?smuggled=1`, a marker)
//!   never runs. Two accepted variants are the control: there the second
//!   request must run, so the check can see one.
//! - The parser's own refusals (a head over the buffer, garbage, a head cut
//!   off) carry the security headers and say what was wrong.
//! - Port 80 redirects only to names the PBX serves.
//!
//! The daemon runs with default settings; it serves a certificate for
//! `pbx.example.test` from a test CA, which the TLS client trusts. Waits are
//! bounded (a read timeout) and never asserted on.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use common::serve::Daemon;
use common::{leaf, root, Pbx};

/// The certificate's name, used as SNI and `Host`.
const NAME: &str = "pbx.example.test";

/// The system DNS name: where foreign hosts are redirected.
const SYSTEM: &str = "admin.example.test";

/// How long a read waits for the server (a hang guard: a connection still
/// open after this counts as not closed; the daemon's keep-alive idle is
/// longer, so a kept-alive connection is still open then).
const READ_WAIT: Duration = Duration::from_secs(12);

/// The request written after each refused head; it must never run.
const SMUGGLED: &str =
    "GET /api/certs?smuggled=1 HTTP/1.1\r\nHost: pbx.example.test\r\nConnection: close\r\n\r\n";

/// The daemon's listeners and a TLS client that trusts it.
struct Client {
    https: SocketAddr,
    http: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
}

/// A running daemon (killed when dropped) and its client.
struct Setup {
    _pbx: Pbx,
    _daemon: Daemon,
    client: Client,
}

fn start() -> Setup {
    let pbx = Pbx::new();
    let ca = root("http-hardening test CA");
    pbx.import_ok(ca.pem(), None, &[]);
    let server = leaf(&[NAME]).signed_by(&ca);
    pbx.import_chain(&server, &[&ca], &[]);
    pbx.ok_true(&["system", "set", "--dns", SYSTEM]);
    // Ports picked by the daemon: the redirect must name the port HTTPS
    // really listens on, not the `0` it was given.
    let daemon = pbx.daemon().http("127.0.0.1:0").echo(true).start();
    let (https, http) = (daemon.https, daemon.http());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().into()).expect("test CA");
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    Setup {
        _pbx: pbx,
        _daemon: daemon,
        client: Client {
            https,
            http,
            tls: Arc::new(tls),
        },
    }
}

/// What came back on one connection.
struct Exchange {
    /// Every byte the server sent.
    text: String,
    /// The server closed the connection (not our read timeout).
    closed: bool,
}

impl Exchange {
    /// Status lines in the answer: one per response.
    fn responses(&self) -> usize {
        self.text.matches("HTTP/1.1 ").count()
    }

    fn status(&self) -> &str {
        self.text.split(' ').nth(1).unwrap_or("")
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.text
            .split("\r\n\r\n")
            .next()?
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    }

    /// The status lines, for failure messages.
    fn summary(&self) -> String {
        let lines: Vec<&str> = self
            .text
            .lines()
            .filter(|l| l.starts_with("HTTP/1."))
            .collect();
        format!("{lines:?}")
    }

    fn body(&self) -> &str {
        self.text.split_once("\r\n\r\n").map_or("", |(_, b)| b)
    }
}

/// Read until the server closes or `READ_WAIT` passes.
fn read_all(mut stream: impl Read) -> Exchange {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match stream.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => {
                break !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                )
            }
        }
    };
    Exchange {
        text: String::from_utf8_lossy(&out).into_owned(),
        closed,
    }
}

fn tcp(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(READ_WAIT)).expect("timeout");
    s
}

/// One connection to port 80: write `request` (the server may refuse and
/// close before all is written), with `half_close` shut our sending side,
/// then read the answer.
fn plain(addr: SocketAddr, request: &[u8], half_close: bool) -> Exchange {
    let mut s = tcp(addr);
    let _ = s.write_all(request);
    if half_close {
        let _ = s.shutdown(Shutdown::Write);
    }
    read_all(s)
}

/// The same over TLS to the HTTPS port (`half_close`: send close_notify).
fn https(client: &Client, request: &[u8], half_close: bool) -> Exchange {
    let name = rustls::pki_types::ServerName::try_from(NAME).expect("name");
    let conn = rustls::ClientConnection::new(client.tls.clone(), name).expect("client");
    let mut tls = rustls::StreamOwned::new(conn, tcp(client.https));
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).expect("TLS handshake");
    }
    let _ = tls.write_all(request).and_then(|()| tls.flush());
    if half_close {
        tls.conn.send_close_notify();
        let _ = tls.conn.complete_io(&mut tls.sock);
    }
    read_all(tls)
}

/// A head whose framing is refused, the expected status, and what it is.
struct Variant {
    what: &'static str,
    head: &'static str,
    status: &'static str,
}

/// Heads that must be refused (`Host` and request line are added).
const REFUSED: &[Variant] = &[
    Variant {
        what: "TE chunked",
        head: "Transfer-Encoding: chunked\r\n\r\n",
        status: "411",
    },
    Variant {
        what: "TE chunked with its empty last chunk",
        head: "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        status: "411",
    },
    Variant {
        what: "TE + CL",
        head: "Transfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n",
        status: "400",
    },
    Variant {
        what: "CL + TE",
        head: "Content-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n",
        status: "400",
    },
    Variant {
        what: "two different CLs",
        head: "Content-Length: 0\r\nContent-Length: 5\r\n\r\n",
        status: "400",
    },
    Variant {
        what: "two identical CLs",
        head: "Content-Length: 0\r\nContent-Length: 0\r\n\r\n",
        status: "400",
    },
    Variant {
        what: "CL list 0, 0",
        head: "Content-Length: 0, 0\r\n\r\n",
        status: "400",
    },
    Variant {
        what: "CL -1",
        head: "Content-Length: -1\r\n\r\n",
        status: "400",
    },
    Variant {
        what: "CL +5",
        head: "Content-Length: +5\r\n\r\nhello",
        status: "400",
    },
    Variant {
        what: "CL huge",
        head: "Content-Length: 99999999999999999999999\r\n\r\n",
        status: "400",
    },
    Variant {
        what: "CL 1 0 (space inside)",
        head: "Content-Length: 1 0\r\n\r\n",
        status: "400",
    },
    Variant {
        what: "`Transfer-Encoding : chunked`",
        head: "Transfer-Encoding : chunked\r\n\r\n",
        status: "400",
    },
    Variant {
        what: "`Content-Length : 5`",
        head: "Content-Length : 5\r\n\r\nhello",
        status: "400",
    },
    Variant {
        what: "obs-fold",
        head: "X-Pad: a\r\n Transfer-Encoding: chunked\r\n\r\n",
        status: "400",
    },
    Variant {
        what: "TE identity",
        head: "Transfer-Encoding: identity\r\n\r\n",
        status: "411",
    },
    Variant {
        what: "TE in upper case",
        head: "TRANSFER-ENCODING: CHUNKED\r\n\r\n",
        status: "411",
    },
    Variant {
        what: "NUL inside the CL name",
        head: "Content-Len\0gth: 5\r\n\r\nhello",
        status: "400",
    },
    Variant {
        what: "bare CR hiding a TE",
        head: "X-Pad: a\rTransfer-Encoding: chunked\r\n\r\n",
        status: "400",
    },
];

/// Heads that are fine: the request after them must run (the control).
const ACCEPTED: &[Variant] = &[
    Variant {
        what: "CL with OWS around the value",
        head: "Content-Length: \t 0 \r\n\r\n",
        status: "",
    },
    Variant {
        what: "no body",
        head: "\r\n",
        status: "",
    },
];

/// Every variant on one listener, concurrently; the list of what went wrong.
fn smuggling_failures(send: &(dyn Fn(&[u8]) -> Exchange + Sync)) -> Vec<String> {
    let run = |v: &'static Variant| {
        let request = format!(
            "POST /login HTTP/1.1\r\nHost: {NAME}\r\n{}{SMUGGLED}",
            v.head
        );
        (v, send(request.as_bytes()))
    };
    std::thread::scope(|scope| {
        let refused: Vec<_> = REFUSED
            .iter()
            .map(|v| scope.spawn(move || run(v)))
            .collect();
        let accepted: Vec<_> = ACCEPTED
            .iter()
            .map(|v| scope.spawn(move || run(v)))
            .collect();
        let mut failures = Vec::new();
        for handle in refused {
            let (v, a) = handle.join().expect("variant thread");
            let mut wrong = Vec::new();
            if a.responses() != 1 || a.text.contains("smuggled") {
                wrong.push(format!(
                    "{} responses: the smuggled request ran",
                    a.responses()
                ));
            }
            if !a.closed {
                wrong.push("connection still open".to_owned());
            }
            if a.status() != v.status {
                wrong.push(format!("status {} (want {})", a.status(), v.status));
            }
            if a.header("connection") != Some("close") {
                wrong.push(format!("Connection: {:?}", a.header("connection")));
            }
            if a.header("x-frame-options") != Some("DENY") {
                wrong.push("no security headers".to_owned());
            }
            if !wrong.is_empty() {
                failures.push(format!(
                    "{}: {}; got: {}",
                    v.what,
                    wrong.join("; "),
                    a.summary()
                ));
            }
        }
        for handle in accepted {
            let (v, a) = handle.join().expect("control thread");
            if a.responses() != 2 {
                failures.push(format!(
                    "control {}: second request did not run; got: {}",
                    v.what,
                    a.summary()
                ));
            }
        }
        failures
    })
}

#[test]
fn refused_framing_closes_the_connection_before_the_next_request() {
    let setup = start();
    let failures = smuggling_failures(&|r: &[u8]| https(&setup.client, r, false));
    assert!(failures.is_empty(), "HTTPS:\n{}", failures.join("\n---\n"));
    let failures = smuggling_failures(&|r: &[u8]| plain(setup.client.http, r, false));
    assert!(
        failures.is_empty(),
        "port 80:\n{}",
        failures.join("\n---\n")
    );
}

/// The answer is one refusal with the security headers and this body.
fn assert_refusal(a: &Exchange, status: &str, body: &str, what: &str) {
    assert_eq!(a.responses(), 1, "{what}: {}", a.text);
    assert!(
        a.header("content-security-policy")
            .is_some_and(|c| c.starts_with("default-src 'none'")),
        "{what}: {}",
        a.text
    );
    assert_eq!(a.header("x-frame-options"), Some("DENY"), "{what}");
    assert_eq!(
        a.header("x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(a.header("referrer-policy"), Some("no-referrer"), "{what}");
    assert_eq!(a.status(), status, "{what}: {}", a.text);
    assert_eq!(a.body(), format!("{body}\n"), "{what}: {}", a.text);
    assert_eq!(a.header("connection"), Some("close"), "{what}");
    assert!(a.closed, "{what}: connection still open");
}

#[test]
fn parser_refusals_carry_security_headers_and_say_what_was_wrong() {
    let setup = start();
    let big = format!(
        "GET / HTTP/1.1\r\nHost: {NAME}\r\nX-Big: {}\r\n\r\n",
        "a".repeat(17 * 1024)
    );
    let garbage = b"\x16\x03\x01\x00\xc8\x01\x00\x00\xc4\x03\x03 not HTTP at all\r\n\r\n";
    let cut = format!("GET / HTTP/1.1\r\nHost: {NAME}\r\nX-Half: ");
    type Sender<'a> = Box<dyn Fn(&[u8], bool) -> Exchange + 'a>;
    let listeners: [(&str, Sender); 2] = [
        ("HTTPS", Box::new(|r: &[u8], h| https(&setup.client, r, h))),
        (
            "port 80",
            Box::new(|r: &[u8], h| plain(setup.client.http, r, h)),
        ),
    ];
    for (port, send) in &listeners {
        let a = send(big.as_bytes(), false);
        assert_refusal(
            &a,
            "431",
            "request head too large",
            &format!("{port} 17 KiB head"),
        );
        let a = send(garbage, false);
        assert_refusal(
            &a,
            "400",
            "malformed request line",
            &format!("{port} garbage"),
        );
        let a = send(b"hello there\r\n\r\n", false);
        assert_refusal(
            &a,
            "400",
            "malformed request line",
            &format!("{port} two words"),
        );
        let a = send(cut.as_bytes(), true);
        assert_refusal(
            &a,
            "400",
            "request head incomplete: the connection ended before its end",
            &format!("{port} head cut off"),
        );
    }
}

#[test]
fn port_80_redirects_only_to_names_the_pbx_serves() {
    let setup = start();
    let port = setup.client.https.port();
    let redirect = |host: &str| {
        let a = plain(
            setup.client.http,
            format!("GET /certs?x=1 HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
            false,
        );
        assert_eq!(a.status(), "301", "{host}: {}", a.text);
        assert_eq!(a.header("x-frame-options"), Some("DENY"), "{host}");
        a.header("location").map(str::to_owned)
    };
    let to = |host: &str| Some(format!("https://{host}:{port}/certs?x=1"));
    // A host the PBX does not serve goes to the system name.
    for foreign in [
        "evil.example",
        "evil.example:80",
        "10.9.9.9",
        "localhost",
        "[::1]",
    ] {
        assert_eq!(redirect(foreign), to(SYSTEM), "{foreign}");
    }
    // Served names (a certificate's name, the system name) and the address
    // the connection reached are kept.
    assert_eq!(redirect(&format!("{NAME}:80")), to(NAME));
    assert_eq!(redirect("PBX.Example.Test"), to(NAME));
    assert_eq!(redirect(SYSTEM), to(SYSTEM));
    assert_eq!(redirect(&setup.client.http.to_string()), to("127.0.0.1"));
}
