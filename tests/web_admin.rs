//! The web admin and the port-80 listener, end to end against the real
//! binary (`pbx-certd serve` on loopback ports).
//!
//! `admin_pages_in_headless_chromium` runs `scripts/web-test/admin.mjs` in
//! real headless Chromium (Debian's `/usr/bin/chromium` through
//! playwright-core): setup-token login, setting the password, logout, a
//! wrong password refused, import through the form, listing, PEM download
//! without key, CSRF refusals, delete, Root CA delete + reset with
//! confirmation, tenants and system settings, and the JSON API. Screenshots
//! land in `target/screenshots/`. It fails when Chromium or node are
//! missing (run `scripts/web-test/setup.sh` as root first); it skips only
//! when emulated (`PBX_CERTD_EMULATED`, set by `cross test` through
//! Cross.toml) in a container that has no browser, through
//! `common/skip.rs` (listed in `target/skipped-tests.txt`; a failure with
//! `PBX_CERTD_REQUIRE_PEERS=1`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "common/accept_any.rs"]
mod accept_any;
#[path = "common/browser.rs"]
mod browser;
#[path = "common/serve.rs"]
mod serve;
#[path = "common/skip.rs"]
mod skip;

use accept_any::{client_config, AcceptAny};
use browser::browser_or_skip;

/// A running `pbx-certd serve` on two free loopback ports (started
/// through `serve::Serve`, the one way), logging at info.
struct Daemon {
    d: serve::Daemon,
    https: SocketAddr,
    http: SocketAddr,
    setup_token: Option<String>,
    dir: tempfile::TempDir,
}

impl Daemon {
    /// Everything the daemon logged so far.
    fn log(&self) -> String {
        self.d.log_text()
    }

    fn is_running(&self) -> bool {
        self.d.is_running()
    }
}

fn start_daemon() -> Daemon {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = serve::Serve::on(dir.path())
        .http("127.0.0.1:0")
        .env("PBX_CERTD_LOG", "info")
        .start();
    Daemon {
        https: d.https,
        http: d.http(),
        setup_token: d.setup_token(),
        d,
        dir,
    }
}

/// A STIR/SHAKEN certificate (TNAuthList, RFC 8226) for `pbx.acme.example`
/// under a test root, imported through the running daemon: the page's
/// STIR/SHAKEN step finds it as tenant acme's (once the test adds acme).
/// It expires in 10 days: the alerts banner step finds its
/// `cert-expiring` alert on every page.
fn import_stir_certificate(daemon: &Daemon) {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "Web Test STI Root");
    let ca = ca.self_signed(&ca_key).expect("root");
    let key = rcgen::KeyPair::generate().expect("key");
    let mut leaf =
        rcgen::CertificateParams::new(vec!["pbx.acme.example".to_owned()]).expect("params");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock");
    leaf.not_before = rcgen::date_time_ymd(1970, 1, 1) + (now - Duration::from_secs(3600));
    leaf.not_after = rcgen::date_time_ymd(1970, 1, 1) + (now + Duration::from_secs(10 * 86_400));
    // TNAuthorizationList ::= SEQUENCE OF TNEntry; spc [0] EXPLICIT IA5String "1234"
    leaf.custom_extensions
        .push(rcgen::CustomExtension::from_oid_content(
            &[1, 3, 6, 1, 5, 5, 7, 1, 26],
            vec![0x30, 0x08, 0xa0, 0x06, 0x16, 0x04, b'1', b'2', b'3', b'4'],
        ));
    let leaf = leaf.signed_by(&key, &ca, &ca_key).expect("leaf");
    let chain = daemon.dir.path().join("sti.pem");
    let key_file = daemon.dir.path().join("sti.key");
    std::fs::write(&chain, format!("{}{}", leaf.pem(), ca.pem())).expect("write");
    std::fs::write(&key_file, key.serialize_pem()).expect("write");
    let (code, out, err) = daemon.d.cli(&[
        "import",
        "--cert",
        chain.to_str().unwrap(),
        "--key",
        key_file.to_str().unwrap(),
        "--kind",
        "stir-shaken",
    ]);
    assert_eq!(code, 0, "STIR/SHAKEN import: {out} {err}");
}

/// A company CA ("Web Company CA") and its key as PEM files in the
/// daemon's directory: the browser imports it as the local CA.
fn company_ca(daemon: &Daemon) -> (std::path::PathBuf, std::path::PathBuf) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "Web Company CA");
    let cert = p.self_signed(&key).expect("ca");
    let (c, k) = (
        daemon.dir.path().join("company-ca.crt"),
        daemon.dir.path().join("company-ca.key"),
    );
    std::fs::write(&c, cert.pem()).expect("write");
    std::fs::write(&k, key.serialize_pem()).expect("write");
    (c, k)
}

/// A server certificate for `soon.example` that expires in 9 days and an
/// hour (red: within `EXPIRING_SOON_DAYS`), with its key, as PEM files in
/// the daemon's directory; the browser imports it through the form.
fn expiring_certificate(daemon: &Daemon) -> (std::path::PathBuf, std::path::PathBuf) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    let key = rcgen::KeyPair::generate().expect("key");
    let mut p = rcgen::CertificateParams::new(vec!["soon.example".to_owned()]).expect("params");
    p.not_before = epoch + Duration::from_secs(now - 86_400);
    p.not_after = epoch + Duration::from_secs(now + 9 * 86_400 + 3_600);
    let cert = p.self_signed(&key).expect("cert");
    let (c, k) = (
        daemon.dir.path().join("soon.crt"),
        daemon.dir.path().join("soon.key"),
    );
    std::fs::write(&c, cert.pem()).expect("write");
    std::fs::write(&k, key.serialize_pem()).expect("write");
    (c, k)
}

fn wait_with_timeout(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

#[test]
fn admin_pages_in_headless_chromium() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if !browser_or_skip(root) {
        return;
    }
    let daemon = start_daemon();
    let token = daemon
        .setup_token
        .clone()
        .unwrap_or_else(|| panic!("no setup-token= in the log:\n{}", daemon.log()));

    let name = "web-test.example";
    let generated = rcgen::generate_simple_self_signed(vec![name.to_owned()]).expect("rcgen");
    let cert = daemon.dir.path().join("web-test.crt");
    let key = daemon.dir.path().join("web-test.key");
    std::fs::write(&cert, generated.cert.pem()).expect("write cert");
    std::fs::write(&key, generated.key_pair.serialize_pem()).expect("write key");
    let shots = root.join("target/screenshots");
    import_stir_certificate(&daemon);
    let (soon_cert, soon_key) = expiring_certificate(&daemon);
    let (ca_cert, ca_key) = company_ca(&daemon);

    let mut child = Command::new("node")
        .arg(root.join("scripts/web-test/admin.mjs"))
        .current_dir(root)
        .env("PBX_URL", format!("https://{}", daemon.https))
        .env("PBX_SETUP_TOKEN", &token)
        .env("PBX_PASSWORD", "correct horse battery staple")
        .env("PBX_CERT", &cert)
        .env("PBX_KEY", &key)
        .env("PBX_CERT_NAME", name)
        .env("PBX_SOON_CERT", &soon_cert)
        .env("PBX_SOON_KEY", &soon_key)
        .env("PBX_CA_CERT", &ca_cert)
        .env("PBX_CA_KEY", &ca_key)
        .env("PBX_SCREENSHOTS", &shots)
        .spawn()
        .expect("start node");
    // Under qemu-user (scripts/test-qemu.sh) the page timeouts are raised
    // through PBX_WEB_TEST_TIMEOUT_MS; the whole run may take 40 of them.
    let overall = std::env::var("PBX_WEB_TEST_TIMEOUT_MS")
        .ok()
        .and_then(|ms| ms.parse::<u64>().ok())
        .map_or(300, |ms| (ms * 40 / 1000).max(300));
    let status = wait_with_timeout(&mut child, Duration::from_secs(overall));
    assert!(
        daemon.is_running(),
        "the daemon died during the browser test:\n{}",
        daemon.log()
    );
    assert!(
        status.is_some_and(|s| s.success()),
        "the browser test failed ({status:?}); daemon log:\n{}",
        daemon.log()
    );
    for shot in [
        "01-login-setup-token",
        "07-certificates-imported",
        "11-root-ca-after-reset",
    ] {
        assert!(
            shots.join(format!("{shot}.png")).exists(),
            "{shot}.png missing"
        );
    }
    let log = daemon.log();
    assert!(
        !log.contains("correct horse battery staple"),
        "the password reached the log"
    );
}

/// One plain HTTP/1.1 request to port 80; the whole answer.
fn http(addr: std::net::SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(request.as_bytes()).expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn status(answer: &str) -> &str {
    answer.split(' ').nth(1).unwrap_or("")
}

fn header<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    answer
        .split("\r\n\r\n")
        .next()?
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

#[test]
fn port_80_redirects_to_https_and_answers_only_challenges() {
    let daemon = start_daemon();
    let port = daemon.https.port();

    let a = http(
        daemon.http,
        "GET /certs?x=1 HTTP/1.1\r\nHost: pbx.example.com:80\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status(&a), "301", "{a}");
    // Not a name this PBX serves (no system name set): the address reached.
    assert_eq!(
        header(&a, "location"),
        Some(format!("https://127.0.0.1:{port}/certs?x=1").as_str())
    );
    assert_eq!(header(&a, "x-frame-options"), Some("DENY"));

    let a = http(
        daemon.http,
        "POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
    );
    assert_eq!(status(&a), "308", "{a}");
    assert_eq!(
        header(&a, "location"),
        Some(format!("https://127.0.0.1:{port}/login").as_str())
    );

    let a = http(
        daemon.http,
        "GET /.well-known/acme-challenge/NoSuchToken_1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status(&a), "404", "{a}");

    for bad_host in ["Host: evil.example/x", "Host: a b", "X-No-Host: 1"] {
        let a = http(
            daemon.http,
            &format!("GET / HTTP/1.1\r\n{bad_host}\r\nConnection: close\r\n\r\n"),
        );
        assert_eq!(status(&a), "400", "{bad_host}: {a}");
        assert_eq!(header(&a, "location"), None);
    }

    // Keep-alive: two requests on one connection.
    let a = http(
        daemon.http,
        "GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(a.matches("HTTP/1.1 301").count(), 2, "{a}");

    // A request head larger than the buffer is refused, not a crash.
    let a = http(
        daemon.http,
        &format!(
            "GET / HTTP/1.1\r\nHost: h\r\nX-Big: {}\r\n\r\n",
            "a".repeat(64 * 1024)
        ),
    );
    assert_eq!(status(&a), "431", "{a}");
    assert!(daemon.is_running(), "{}", daemon.log());
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn tls_connect(addr: SocketAddr) -> Tls {
    let config = client_config(AcceptAny::new(), &[]);
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
    let tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).expect("TLS handshake");
    }
    tls
}

/// Send raw bytes over TLS; everything read until the server closes.
fn https_raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut tls = tls_connect(addr);
    // The server may answer and close before the whole request is sent (it
    // refuses a huge body unread), so a failed write is no failure here: the
    // answer read below is what callers check.
    let _ = tls.write_all(request).and_then(|()| tls.flush());
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tls.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn body(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("")
}

#[test]
fn https_requires_login_and_bounds_every_connection() {
    let daemon = start_daemon();
    let addr = daemon.https;

    // Idle connections (TLS done, no request) are closed by the first-request
    // timeout; checked in the background while the rest runs.
    let idle = std::thread::spawn(move || {
        let mut tls = tls_connect(addr);
        let mut buf = [0u8; 64];
        // Closed by the server (EOF or reset), not our 30 s read timeout:
        // the server's first-request timeout is shorter.
        match tls.read(&mut buf) {
            Ok(0) => Ok(()),
            Ok(n) => Err(format!("{n} unexpected bytes")),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Err("still open after 30 s".to_owned())
            }
            Err(_) => Ok(()),
        }
    });
    // A client that stalls in the middle of its request head.
    let mut stalled = tls_connect(addr);
    stalled
        .write_all(b"GET /certs HTTP/1.1\r\nHost: x\r\n")
        .expect("write");
    stalled.flush().expect("flush");

    // Nothing without login; security headers on every answer.
    let a = https_raw(
        addr,
        b"GET /api/certs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status(&a), "401", "{a}");
    let v: serde_json::Value = serde_json::from_str(body(&a)).expect("JSON");
    assert_eq!(v["error"]["code"], "unauthenticated");
    assert_eq!(header(&a, "content-type"), Some("application/json"));
    assert_eq!(header(&a, "cache-control"), Some("no-store"));
    assert!(
        header(&a, "content-security-policy").is_some_and(|c| c.starts_with("default-src 'none'"))
    );
    assert_eq!(header(&a, "x-frame-options"), Some("DENY"));
    assert_eq!(header(&a, "x-content-type-options"), Some("nosniff"));
    assert_eq!(header(&a, "referrer-policy"), Some("no-referrer"));
    for path in ["/", "/certs", "/roots/reset", "/no-such-page"] {
        let a = https_raw(
            addr,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert_eq!(status(&a), "303", "{path}: {a}");
        assert_eq!(header(&a, "location"), Some("/login"), "{path}");
    }
    let a = https_raw(
        addr,
        b"HEAD /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status(&a), "200", "{a}");
    assert_eq!(body(&a), "");

    // A huge declared body is answered at once, unread, when not logged in
    // (were it read, only `{` of it comes and no answer would come before the
    // read timeout closes the connection).
    for path in ["/api/import", "/import"] {
        let a = https_raw(
            addr,
            format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n{{"
            )
            .as_bytes(),
        );
        assert!(matches!(status(&a), "401" | "303"), "{path}: {a}");
    }
    let a = https_raw(
        addr,
        b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n",
    );
    assert_eq!(status(&a), "413", "{a}");
    let a = https_raw(
        addr,
        b"POST /login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    );
    assert_eq!(status(&a), "411", "{a}");
    let a = https_raw(
        addr,
        format!(
            "GET /login HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "a".repeat(64 * 1024)
        )
        .as_bytes(),
    );
    assert_eq!(status(&a), "431", "{a}");
    let a = https_raw(
        addr,
        b"POST /login HTTP/1.1\r\nHost: x\r\nOrigin: https://evil.example\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status(&a), "403", "{a}");

    // Keep-alive: two requests on one connection.
    let a = https_raw(
        addr,
        b"GET /login HTTP/1.1\r\nHost: x\r\n\r\nGET /api/roots HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(
        a.contains("HTTP/1.1 200") && a.contains("HTTP/1.1 401"),
        "{a}"
    );

    // The stalled client blocks nobody: were it served first, these would
    // wait for the server's 60 s request timeout, past our 30 s read timeout.
    for _ in 0..10 {
        let a = https_raw(
            addr,
            b"GET /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(status(&a), "200");
    }
    drop(stalled);

    let idle = idle.join().expect("idle thread");
    assert_eq!(idle, Ok(()), "an idle connection (TLS done, no request)");
    assert!(daemon.is_running(), "{}", daemon.log());
}

/// `GET /ca.pem` needs no login (phones and provisioning servers fetch the
/// local CA's root before they trust anything): 404 until `ca init`, then
/// exactly the root `ca show` prints; every other page still needs login.
#[test]
fn the_local_ca_root_is_downloadable_without_login() {
    let daemon = start_daemon();
    let get = |path: &str| {
        https_raw(
            daemon.https,
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
    };
    let before = get("/ca.pem");
    assert_eq!(status(&before), "404", "{before}");
    let (code, out, err) = daemon.d.cli(&["ca", "init", "--json"]);
    assert_eq!(code, 0, "{out} {err}");
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    let after = get("/ca.pem");
    assert_eq!(status(&after), "200", "{after}");
    assert_eq!(body(&after), shown["pem"].as_str().unwrap(), "{after}");
    assert!(!after.contains("PRIVATE KEY"));
    assert_eq!(
        header(&after, "content-type"),
        Some("application/x-pem-file"),
        "{after}"
    );
    // Nothing else opens up.
    for path in ["/certs", "/tenants", "/roots"] {
        let a = get(path);
        assert_eq!(status(&a), "303", "{path}: {a}");
        assert_eq!(header(&a, "location"), Some("/login"), "{path}: {a}");
    }
    let a = get("/api/certs");
    assert_eq!(status(&a), "401", "{a}");
}
