//! Issue 12, a forward's PROXY protocol v2 header and mutual TLS, against the
//! running daemon: `--tls-forward L=T,proxy=v2` (and the config file's
//! `tls-forward = ...` line) sends the target the client's address and port,
//! the listener's address, the SNI, the TLS version and, for a verified
//! client certificate, its CN (haproxy's proxy-protocol.txt §2.2), before
//! the first decrypted byte; `client-auth=required|optional` with
//! `client-ca=roots|local-ca|imported` admits clients whose certificate chains to the
//! trust set and refuses the others with a TLS alert and a log line saying
//! why. The TLS clients are rustls (bound to 127.0.0.2, so the source
//! differs from pbx-certd's) and `openssl s_client` (client certificates).
//! The header is decoded here independently of `src/proxy.rs`.
//! (Kamailio reading the header: tests/sip_kamailio.rs, native only.)
//! Also the forward's clean close (a peer that keeps its half of a closed
//! connection open is cut after `FORWARD_HALF_CLOSE_SECS`) and TCP keepalive
//! on both of its sockets (seen by `ss`).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use common::accept_any::{client_config, AcceptAny};
use common::*;
use rustls::pki_types::ServerName;

/// Hang guard of every read and wait (a hang is a failure).
const GUARD: Duration = Duration::from_secs(60);

/// A PROXY v2 header as the target read it.
#[derive(Debug, Default)]
struct Header {
    source: Option<SocketAddr>,
    destination: Option<SocketAddr>,
    authority: Option<String>,
    /// PP2_TYPE_SSL: client flags, verify, version and CN sub-TLVs.
    ssl_client: u8,
    ssl_verify: u32,
    ssl_version: Option<String>,
    ssl_cn: Option<String>,
}

const SIG: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// Reads one PROXY v2 header (PROXY command, TCP over IPv4) from `r`.
fn read_header(r: &mut impl Read) -> Header {
    let mut fixed = [0u8; 16];
    r.read_exact(&mut fixed).expect("16 header bytes");
    assert_eq!(&fixed[..12], SIG, "no PROXY v2 signature: {fixed:02x?}");
    assert_eq!(fixed[12], 0x21, "version 2, command PROXY");
    assert_eq!(fixed[13], 0x11, "TCP over IPv4");
    let len = u16::from_be_bytes([fixed[14], fixed[15]]) as usize;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).expect("header body");
    let ip = |b: &[u8]| IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]));
    let port = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
    let mut h = Header {
        source: Some(SocketAddr::new(ip(&body[0..4]), port(&body[8..10]))),
        destination: Some(SocketAddr::new(ip(&body[4..8]), port(&body[10..12]))),
        ..Header::default()
    };
    for (kind, value) in tlvs(&body[12..]) {
        match kind {
            0x02 => h.authority = Some(String::from_utf8(value.to_vec()).unwrap()),
            0x20 => {
                h.ssl_client = value[0];
                h.ssl_verify = u32::from_be_bytes([value[1], value[2], value[3], value[4]]);
                for (sub, v) in tlvs(&value[5..]) {
                    let text = String::from_utf8(v.to_vec()).unwrap();
                    match sub {
                        0x21 => h.ssl_version = Some(text),
                        0x22 => h.ssl_cn = Some(text),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    h
}

/// Splits a TLV list (type, 16-bit length, value), checking the lengths.
fn tlvs(mut b: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    while !b.is_empty() {
        assert!(b.len() >= 3, "truncated TLV: {b:02x?}");
        let len = u16::from_be_bytes([b[1], b[2]]) as usize;
        assert!(b.len() >= 3 + len, "TLV longer than the header: {b:02x?}");
        out.push((b[0], &b[3..3 + len]));
        b = &b[3 + len..];
    }
    out
}

/// What the target saw on one connection: the header (when `proxy`), then
/// the first line of data.
type Seen = (Option<Header>, String);

/// A target that, per connection, reads the PROXY header (when `proxy`) and
/// one line, reports both, answers `echo: LINE` and closes.
fn target(proxy: bool) -> (SocketAddr, mpsc::Receiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { continue };
            let tx = tx.clone();
            std::thread::spawn(move || {
                s.set_read_timeout(Some(GUARD)).unwrap();
                let header = proxy.then(|| read_header(&mut s));
                let mut line = String::new();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let _ = r.read_line(&mut line);
                let _ = s.write_all(format!("echo: {line}").as_bytes());
                let _ = tx.send((header, line));
            });
        }
    });
    (addr, rx)
}

/// A pbx-certd data dir serving `sip.acme.test` (its root imported).
fn pbx_with_server_cert() -> Pbx {
    let pbx = Pbx::new();
    let pki = Pki::new();
    pbx.import_ok(pki.root.pem(), None, &[]);
    pki.import(&pbx, &pki.leaf(leaf(&["sip.acme.test"])), &[]);
    pbx
}

/// A rustls client from `src` (port chosen by the OS) to `fwd` with SNI
/// `sip.acme.test`: sends `line`, returns its own address and the reply.
fn rustls_exchange(src: Ipv4Addr, fwd: SocketAddr, line: &str) -> (SocketAddr, String) {
    use rustix::net::{bind, connect, socket, AddressFamily, SocketType};
    let SocketAddr::V4(dst) = fwd else {
        panic!("IPv4 only")
    };
    let fd = socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
    bind(&fd, &SocketAddrV4::new(src, 0)).unwrap();
    connect(&fd, &dst).unwrap();
    let tcp = TcpStream::from(fd);
    tcp.set_read_timeout(Some(GUARD)).unwrap();
    let me = tcp.local_addr().unwrap();
    let config = Arc::new(client_config(AcceptAny::new(), &[]));
    let name = ServerName::try_from("sip.acme.test").unwrap();
    let conn = rustls::ClientConnection::new(config, name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(line.as_bytes()).unwrap();
    tls.flush().unwrap();
    let mut reply = String::new();
    let _ = tls.read_to_string(&mut reply);
    (me, reply)
}

/// `openssl s_client` to `fwd` with SNI `sip.acme.test`, optionally with a
/// client certificate, sending `hello`: what it printed (stdout + stderr)
/// and whether the target's echo came back.
fn s_client(pbx: &Pbx, fwd: SocketAddr, cert: Option<&Issued>) -> (String, bool) {
    let mut cmd = Command::new("openssl");
    cmd.args([
        "s_client",
        "-connect",
        &fwd.to_string(),
        "-servername",
        "sip.acme.test",
        "-quiet",
        "-ign_eof",
    ]);
    if let Some(c) = cert {
        let cert_path = pbx.file("client.pem", c.pem());
        let key_path = pbx.file("client.key", c.key_pem());
        cmd.args(["-cert", &cert_path, "-key", &key_path]);
    }
    let out = run_command(cmd, Some(b"hello\n".to_vec()));
    let text = format!("{}\n{}", out.stdout, out.stderr);
    let echoed = out.stdout.contains("echo: hello");
    (text, echoed)
}

/// Waits (hang guard) until the daemon's log has a line containing `what`.
#[track_caller]
fn wait_log(daemon: &Daemon, what: &str) {
    let start = std::time::Instant::now();
    while !daemon.log_text().contains(what) {
        assert!(
            start.elapsed() < GUARD,
            "no log line with {what:?}; the log:\n{}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `proxy=v2` from the config file: the target first reads a header with
/// the client's address (127.0.0.2 and its port), the listener's address,
/// the SNI and TLS 1.3, no client certificate (verify non-zero), then the
/// data. Without `proxy=v2` the data comes first, unchanged.
#[test]
fn proxy_v2_header_names_the_client_before_its_first_byte() {
    let pbx = pbx_with_server_cert();
    let (to, seen) = target(true);
    let config = pbx.file(
        "serve.conf",
        format!("tls-forward = 127.0.0.1:0={to},proxy=v2\n"),
    );
    let daemon = pbx.daemon().args(&["--config", &config]).start();
    let fwd = daemon.forward.expect("the config file's forward");

    let (me, reply) = rustls_exchange(Ipv4Addr::new(127, 0, 0, 2), fwd, "REGISTER\n");
    assert_eq!(reply, "echo: REGISTER\n");
    let (header, line) = seen.recv_timeout(GUARD).unwrap();
    let h = header.unwrap();
    assert_eq!(line, "REGISTER\n", "the data follows the header unchanged");
    assert_eq!(h.source, Some(me), "the client's address and port: {h:?}");
    assert_eq!(h.destination, Some(fwd), "the listener's address: {h:?}");
    assert_eq!(h.authority.as_deref(), Some("sip.acme.test"));
    assert_eq!(h.ssl_version.as_deref(), Some("TLSv1.3"));
    assert_eq!(h.ssl_client, 0x01, "TLS, no client certificate");
    assert_ne!(h.ssl_verify, 0, "no certificate: verify is non-zero");
    assert_eq!(h.ssl_cn, None);
    drop(daemon);

    // The same forward without proxy=v2: no header, the data first.
    let (to, seen) = target(false);
    let daemon = pbx.daemon().forward(to).start();
    let fwd = daemon.forward.unwrap();
    let (_, reply) = rustls_exchange(Ipv4Addr::new(127, 0, 0, 2), fwd, "REGISTER\n");
    assert_eq!(reply, "echo: REGISTER\n");
    assert_eq!(seen.recv_timeout(GUARD).unwrap().1, "REGISTER\n");
}

/// One parser for the flag and the config file: a bad option is a usage
/// error naming it, in both.
#[test]
fn forward_options_are_checked_by_one_parser() {
    let pbx = Pbx::new();
    for (bad, says) in [
        (
            "127.0.0.1:0=127.0.0.1:9,proxy=v3",
            "proxy must be v2, v1 or none",
        ),
        (
            "127.0.0.1:0=127.0.0.1:9,client-auth=maybe",
            "client-auth must be",
        ),
        (
            "127.0.0.1:0=127.0.0.1:9,client-auth=required,client-ca=web",
            "client-ca must be",
        ),
        (
            "127.0.0.1:0=127.0.0.1:9,client-ca=roots",
            "client-ca needs client-auth",
        ),
        ("127.0.0.1:0=127.0.0.1:9,proxy=v2,proxy=v2", "given twice"),
        ("127.0.0.1:0=127.0.0.1:9,sip=yes", "unknown forward option"),
    ] {
        let out = run_command(pbx.daemon().arg("--tls-forward").arg(bad).command(), None);
        out.usage_error();
        assert!(out.stderr.contains(says), "flag {bad}: {}", out.describe());
        let config = pbx.file("serve.conf", format!("tls-forward = {bad}\n"));
        let out = run_command(pbx.daemon().args(&["--config", &config]).command(), None);
        out.usage_error();
        assert!(
            out.stderr.contains(says),
            "config {bad}: {}",
            out.describe()
        );
    }
}

/// `client-auth=required,client-ca=roots`: a client certificate chaining to
/// a root of the Root CA list is admitted and its CN reaches the target in
/// the PROXY header and the log; no certificate, or one of an unknown CA, is
/// refused with an alert and a log line with the reason; once that root is
/// deleted, the same certificate is refused (the trust set is reread).
#[test]
fn mutual_tls_admits_trusted_client_certificates_and_refuses_others() {
    let pbx = pbx_with_server_cert();
    let phones = root(&format!("Phones CA {}", tag()));
    let phones_id = pbx.import_ok(phones.pem(), None, &[])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let phone = leaf(&[]).cn("phone-1001").client_auth().signed_by(&phones);
    let stranger = leaf(&[])
        .cn("phone-9999")
        .client_auth()
        .signed_by(&root("Unknown CA"));

    let (to, seen) = target(true);
    let daemon = pbx
        .daemon()
        .env("PBX_CERTD_LOG", "debug")
        .forward_with(to, "proxy=v2,client-auth=required,client-ca=roots")
        .start();
    let fwd = daemon.forward.unwrap();

    let (out, echoed) = s_client(&pbx, fwd, Some(&phone));
    assert!(echoed, "the trusted client certificate is admitted:\n{out}");
    let (header, _) = seen.recv_timeout(GUARD).unwrap();
    let h = header.unwrap();
    assert_eq!(h.ssl_cn.as_deref(), Some("phone-1001"), "{h:?}");
    assert_eq!(
        h.ssl_client, 0x07,
        "TLS + certificate on connection and session"
    );
    assert_eq!(h.ssl_verify, 0, "verified");
    wait_log(&daemon, "verified client certificate, CN=\"phone-1001\"");

    let (out, echoed) = s_client(&pbx, fwd, None);
    assert!(
        !echoed,
        "no certificate under required must be refused:\n{out}"
    );
    assert!(out.contains("alert certificate required"), "{out}");
    wait_log(&daemon, "client certificate refused: none presented");

    let (out, echoed) = s_client(&pbx, fwd, Some(&stranger));
    assert!(
        !echoed,
        "an unknown CA's certificate must be refused:\n{out}"
    );
    assert!(out.contains("alert unknown ca"), "{out}");
    wait_log(
        &daemon,
        "client certificate refused: invalid peer certificate: UnknownIssuer",
    );
    assert!(
        seen.try_recv().is_err(),
        "a refused client never reaches the target"
    );

    // The trust set follows the store: deleting the root refuses its phones.
    let (code, stdout, stderr) = daemon.cli(&["roots", "delete", &phones_id]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    wait_log(&daemon, "the client trust set changed; verifier rebuilt");
    let (out, echoed) = s_client(&pbx, fwd, Some(&phone));
    assert!(
        !echoed,
        "after its root is deleted the phone is refused:\n{out}"
    );
    assert!(out.contains("alert unknown ca"), "{out}");
}

/// `client-ca=imported`: the trust set is the client-CA list, apart from
/// the Root CA list. A carrier CA imported with `import --kind client-ca` is
/// listed by `client-cas` and not added to `roots`; its clients are
/// admitted and those of a Root CA list root are not; a CA added by
/// `client-cas import` on the running daemon admits its clients after the
/// reread, and `client-cas delete` refuses them again. With an empty list
/// the forward does not start (named error).
#[test]
fn imported_client_cas_are_the_trust_set_of_client_ca_imported() {
    let pbx = pbx_with_server_cert();
    let (to, seen) = target(false);
    let forward = "client-auth=required,client-ca=imported";
    let out = run_command(pbx.daemon().forward_with(to, forward).command(), None);
    assert_eq!(out.status, 1, "{}", out.describe());
    assert!(
        out.stderr.contains("[no-client-anchors]"),
        "{}",
        out.describe()
    );

    let carrier = root(&format!("Carrier Client CA {}", tag()));
    let imported = pbx.import_ok(carrier.pem(), None, &["--kind", "client-ca"]);
    assert_eq!(imported["kind"], "client-ca", "{imported}");
    let carrier_id = imported["id"].as_str().unwrap().to_owned();
    let listed = pbx.ok(&["client-cas"]);
    assert_eq!(listed[0]["id"], carrier_id.as_str(), "{listed}");
    let roots = pbx.ok(&["roots"]).to_string();
    assert!(
        !roots.contains(&carrier_id),
        "a client CA is not a root the PBX trusts as a TLS client"
    );
    // A root of the Root CA list is not a client CA here.
    let web = root(&format!("Web Root {}", tag()));
    pbx.import_ok(web.pem(), None, &[]);

    let daemon = pbx
        .daemon()
        .env("PBX_CERTD_LOG", "debug")
        .forward_with(to, forward)
        .start();
    let fwd = daemon.forward.unwrap();
    let trunk = leaf(&[]).cn("trunk-a").client_auth().signed_by(&carrier);
    let (out, echoed) = s_client(&pbx, fwd, Some(&trunk));
    assert!(echoed, "the carrier CA's client is admitted:\n{out}");
    seen.recv_timeout(GUARD).unwrap();
    let by_root = leaf(&[]).cn("trunk-w").client_auth().signed_by(&web);
    let (out, echoed) = s_client(&pbx, fwd, Some(&by_root));
    assert!(!echoed, "a Root CA list root admits no client here:\n{out}");
    assert!(out.contains("alert unknown ca"), "{out}");

    let second = root(&format!("Second Client CA {}", tag()));
    let file = pbx.file("second.pem", second.pem());
    let (code, stdout, stderr) = daemon.cli(&["client-cas", "import", "--cert", &file]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    wait_log(&daemon, "the client trust set changed; verifier rebuilt");
    let other = leaf(&[]).cn("trunk-b").client_auth().signed_by(&second);
    let (out, echoed) = s_client(&pbx, fwd, Some(&other));
    assert!(echoed, "a client CA added while running admits:\n{out}");
    seen.recv_timeout(GUARD).unwrap();

    let (code, stdout, stderr) = daemon.cli(&["client-cas", "delete", &carrier_id[..16]]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let start = std::time::Instant::now();
    loop {
        let (out, echoed) = s_client(&pbx, fwd, Some(&trunk));
        if !echoed {
            assert!(out.contains("alert unknown ca"), "{out}");
            break;
        }
        assert!(
            start.elapsed() < GUARD,
            "the deleted client CA still admits its client"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `client-auth=optional` (default `client-ca=local-ca`): a client without a
/// certificate is admitted (verify non-zero in the header), one with a
/// certificate of another CA is refused. Without a local CA the forward
/// cannot start (named error).
#[test]
fn optional_client_auth_admits_clients_without_certificate() {
    let pbx = pbx_with_server_cert();
    let (to, seen) = target(true);
    let out = run_command(
        pbx.daemon()
            .forward_with(to, "proxy=v2,client-auth=optional")
            .command(),
        None,
    );
    assert_eq!(out.status, 1, "{}", out.describe());
    assert!(out.stderr.contains("[no-local-ca]"), "{}", out.describe());

    pbx.ok(&["ca", "init"]);
    let daemon = pbx
        .daemon()
        .env("PBX_CERTD_LOG", "debug")
        .forward_with(to, "proxy=v2,client-auth=optional")
        .start();
    let fwd = daemon.forward.unwrap();
    let (out, echoed) = s_client(&pbx, fwd, None);
    assert!(echoed, "optional: no certificate is fine:\n{out}");
    let h = seen.recv_timeout(GUARD).unwrap().0.unwrap();
    assert_eq!(h.ssl_client, 0x01);
    assert_ne!(h.ssl_verify, 0);
    assert_eq!(h.ssl_cn, None);

    let other = leaf(&[])
        .cn("phone-1")
        .client_auth()
        .signed_by(&root("Other CA"));
    let (out, echoed) = s_client(&pbx, fwd, Some(&other));
    assert!(!echoed, "a certificate of another CA is refused:\n{out}");
    assert!(out.contains("alert unknown ca"), "{out}");
    wait_log(&daemon, "client certificate refused");
}

/// A forward to `to` with the server certificate, from a fresh data dir.
fn forward_to(to: SocketAddr) -> (Pbx, Daemon) {
    let pbx = pbx_with_server_cert();
    let daemon = pbx.daemon().forward(to).start();
    (pbx, daemon)
}

/// A rustls client to `fwd` (SNI `sip.acme.test`), handshake done.
fn tls_client(fwd: SocketAddr) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let tcp = TcpStream::connect(fwd).unwrap();
    tcp.set_read_timeout(Some(GUARD)).unwrap();
    let config = Arc::new(client_config(AcceptAny::new(), &[]));
    let name = ServerName::try_from("sip.acme.test").unwrap();
    let conn = rustls::ClientConnection::new(config, name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).unwrap();
    }
    tls
}

/// Whether a read that returned `r` saw the end of the connection (EOF,
/// with or without close_notify, or a reset), not the hang guard.
fn ended(r: std::io::Result<usize>) -> bool {
    match r {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

/// The phone closes (close_notify, FIN) and keeps reading; the target gets
/// the EOF but stays open and silent. pbx-certd must not keep the
/// half-closed connection: the phone's read ends (within the hang guard,
/// which is far above `FORWARD_HALF_CLOSE_SECS`).
#[test]
fn a_silent_target_cannot_hold_a_connection_the_client_closed() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let to = listener.local_addr().unwrap();
    let (eof_tx, eof_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(GUARD)).unwrap();
        let mut buf = [0u8; 64];
        let _ = eof_tx.send(ended(s.read(&mut buf)));
        // Open and silent until the test ends.
        std::thread::sleep(GUARD * 2);
        drop(s);
    });
    let (_pbx, daemon) = forward_to(to);
    let mut tls = tls_client(daemon.forward.unwrap());
    tls.conn.send_close_notify();
    tls.conn.complete_io(&mut tls.sock).unwrap();
    tls.sock.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(
        eof_rx.recv_timeout(GUARD).unwrap(),
        "the target got the client's close"
    );
    let mut buf = [0u8; 64];
    let r = tls.read(&mut buf);
    assert!(
        ended(r),
        "the forward kept the half-closed connection open while the target stayed silent"
    );
}

/// The target sends its last bytes and closes its side; the phone stays
/// open and silent. pbx-certd delivers the bytes and the close, then must
/// let go of the target's connection too: the target's read ends.
#[test]
fn a_silent_client_cannot_hold_a_connection_the_target_closed() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let to = listener.local_addr().unwrap();
    let (eof_tx, eof_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(GUARD)).unwrap();
        s.write_all(b"BYE\n").unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut buf = [0u8; 64];
        let _ = eof_tx.send(ended(s.read(&mut buf)));
    });
    let (_pbx, daemon) = forward_to(to);
    let mut tls = tls_client(daemon.forward.unwrap());
    let mut got = String::new();
    let r = tls.read_to_string(&mut got);
    assert!(
        r.is_ok(),
        "the target's close arrives as close_notify: {r:?}"
    );
    assert_eq!(got, "BYE\n");
    // The phone neither writes nor closes.
    assert!(
        eof_rx.recv_timeout(GUARD * 2).unwrap(),
        "the forward kept the target's connection open while the client stayed silent"
    );
    drop(tls);
}

/// Both sockets of a forwarded connection have TCP keepalive on (what `ss
/// -o` shows as the `keepalive` timer): the client's and the target's.
#[test]
fn forwarded_connections_have_tcp_keepalive_on_both_sides() {
    let ss = ["/usr/bin/ss", "/bin/ss", "/usr/sbin/ss", "/sbin/ss"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    if !skip::require("ss (iproute2)", ss.is_none().then_some("ss not installed")) {
        return;
    }
    // A target that reads one line, says so, and stays open.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let to = listener.local_addr().unwrap();
    let (seen_tx, seen) = mpsc::channel();
    std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(GUARD)).unwrap();
        let mut line = String::new();
        let _ = BufReader::new(&s).read_line(&mut line);
        let _ = seen_tx.send(line);
        let _ = (&s).read(&mut [0u8; 1]);
    });
    let (_pbx, daemon) = forward_to(to);
    let fwd = daemon.forward.unwrap();
    let mut tls = tls_client(fwd);
    tls.write_all(b"hello\n").unwrap();
    tls.flush().unwrap();
    // The target has the line: both connections are established.
    assert_eq!(seen.recv_timeout(GUARD).unwrap(), "hello\n");
    // `ss` shows the keepalive timer only while nothing is in flight (with
    // unacknowledged bytes it shows the retransmission timer, `timer:(on`),
    // which on a loaded, emulated machine can last a moment: look again
    // until both sockets show it (a hang guard, not a timing assertion).
    let deadline = std::time::Instant::now() + GUARD;
    loop {
        let out = run_command(
            {
                let mut c = Command::new(ss.unwrap());
                c.args(["-tnoH", "state", "established"]);
                c
            },
            None,
        );
        out.success();
        // pbx-certd's side of the client connection: local address = fwd.
        let client_side: Vec<&str> = out
            .stdout
            .lines()
            .filter(|l| l.split_whitespace().nth(2) == Some(&fwd.to_string()))
            .collect();
        // pbx-certd's side of the target connection: peer address = target.
        let target_side: Vec<&str> = out
            .stdout
            .lines()
            .filter(|l| l.split_whitespace().nth(3) == Some(&to.to_string()))
            .collect();
        assert_eq!(client_side.len(), 1, "{}", out.stdout);
        assert_eq!(target_side.len(), 1, "{}", out.stdout);
        let both = [client_side[0], target_side[0]];
        if both.iter().all(|l| l.contains("timer:(keepalive")) {
            break;
        }
        let busy = both.iter().any(|l| l.contains("timer:(on"));
        assert!(
            busy && std::time::Instant::now() < deadline,
            "no keepalive: {both:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(tls);
}

/// Under `client-auth`, every handshake checks the client certificate: no
/// session is resumed (a resumed one would skip the check, and a phone whose
/// root was deleted would still get in). The same rustls client, with its
/// session cache, connects twice: both handshakes are full.
#[test]
fn mutual_tls_never_resumes_a_session() {
    let pbx = pbx_with_server_cert();
    let phones = root(&format!("Phones CA {}", tag()));
    pbx.import_ok(phones.pem(), None, &[]);
    let phone = leaf(&[]).cn("phone-7").client_auth().signed_by(&phones);
    let (to, seen) = target(false);
    let daemon = pbx
        .daemon()
        .forward_with(to, "client-auth=required,client-ca=roots")
        .start();
    let fwd = daemon.forward.unwrap();
    let key = rustls::pki_types::PrivateKeyDer::try_from(phone.key.serialize_der()).unwrap();
    let config = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(AcceptAny::new())
        .with_client_auth_cert(vec![phone.cert.der().clone()], key)
        .unwrap(),
    );
    for round in 0..2 {
        let tcp = TcpStream::connect(fwd).unwrap();
        tcp.set_read_timeout(Some(GUARD)).unwrap();
        let name = ServerName::try_from("sip.acme.test").unwrap();
        let conn = rustls::ClientConnection::new(config.clone(), name).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        tls.write_all(b"hello\n").unwrap();
        tls.flush().unwrap();
        let mut reply = String::new();
        let _ = tls.read_to_string(&mut reply);
        assert_eq!(reply, "echo: hello\n", "round {round}");
        assert_eq!(seen.recv_timeout(GUARD).unwrap().1, "hello\n");
        assert_eq!(
            tls.conn.handshake_kind(),
            Some(rustls::HandshakeKind::Full),
            "round {round}: the session was resumed, the certificate not checked"
        );
    }
}
