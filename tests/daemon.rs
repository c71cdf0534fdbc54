//! The daemon end to end: `pbx-certd serve` on loopback ports, real TLS
//! clients (rustls in-process, `openssl s_client`, `curl --resolve`) checking
//! which leaf each SNI gets, live CLI changes through the control socket,
//! `--tls-forward` to a local echo service, and a clean SIGTERM shutdown.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use rustls::pki_types::ServerName;

#[path = "common/accept_any.rs"]
mod accept_any;
#[path = "common/serve.rs"]
mod serve;

use accept_any::{client_config, AcceptAny};

use serve::cli;

fn sha256_hex(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The daemon (HTTPS and port 80 on free loopback ports, an optional
/// forward) and its data dir, which `stop` hands back.
struct Daemon {
    d: serve::Daemon,
    http: SocketAddr,
    dir: tempfile::TempDir,
}

impl std::ops::Deref for Daemon {
    type Target = serve::Daemon;
    fn deref(&self) -> &serve::Daemon {
        &self.d
    }
}

impl std::ops::DerefMut for Daemon {
    fn deref_mut(&mut self) -> &mut serve::Daemon {
        &mut self.d
    }
}

impl Daemon {
    fn start(dir: tempfile::TempDir, forward_target: Option<SocketAddr>) -> Daemon {
        let mut serve = serve::Serve::on(dir.path())
            .http("127.0.0.1:0")
            // The closed-log-pipe test drops the receiver to close the pipe.
            .drain(serve::Drain::WhileRead);
        if let Some(target) = forward_target {
            serve = serve.forward(target);
        }
        let d = serve.start();
        Daemon {
            http: d.http(),
            d,
            dir,
        }
    }

    /// SIGTERM; the exit status, the daemon's log and its data dir.
    fn stop(self) -> (std::process::ExitStatus, Vec<String>, tempfile::TempDir) {
        let (status, lines) = self.d.stop();
        (status, lines, self.dir)
    }
}

fn json(out: &(i32, String, String)) -> serde_json::Value {
    assert_eq!(out.0, 0, "command failed: {}", out.2);
    serde_json::from_str(&out.1).unwrap()
}

/// A CA, plus leaf certificates it signs, written as PEM files.
struct Pki {
    ca_key: rcgen::KeyPair,
    ca: rcgen::Certificate,
    dir: PathBuf,
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Daemon Test Root");
        let ca = params.self_signed(&ca_key).unwrap();
        std::fs::write(dir.join("root.pem"), ca.pem()).unwrap();
        Pki {
            ca_key,
            ca,
            dir: dir.to_owned(),
        }
    }

    /// Writes `<file>.pem` and `<file>.key`; returns the leaf's ID.
    fn leaf(&self, file: &str, names: &[&str]) -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let cert = rcgen::CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.ca, &self.ca_key)
            .unwrap();
        std::fs::write(self.dir.join(format!("{file}.pem")), cert.pem()).unwrap();
        std::fs::write(self.dir.join(format!("{file}.key")), key.serialize_pem()).unwrap();
        sha256_hex(cert.der())
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).to_string_lossy().into_owned()
    }
}

/// Handshake with `sni` (None: an IP address, so rustls sends no SNI); the
/// ID of the presented leaf, or the handshake error.
fn presented(addr: SocketAddr, sni: Option<&str>) -> Result<String, String> {
    presented_stream(addr, sni).map(|(id, _)| id)
}

fn presented_stream(
    addr: SocketAddr,
    sni: Option<&str>,
) -> Result<
    (
        String,
        rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    ),
    String,
> {
    presented_stream_rcvbuf(addr, sni, None)
}

fn presented_stream_rcvbuf(
    addr: SocketAddr,
    sni: Option<&str>,
    rcvbuf: Option<usize>,
) -> Result<
    (
        String,
        rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    ),
    String,
> {
    let capture = AcceptAny::new();
    let config = client_config(capture.clone(), &[]);
    let name = match sni {
        Some(s) => ServerName::try_from(s.to_string()).unwrap(),
        None => ServerName::IpAddress(addr.ip().into()),
    };
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    if let Some(bytes) = rcvbuf {
        // A small receive window, as on a congested link to a phone.
        rustix::net::sockopt::set_socket_recv_buffer_size(&tcp, bytes).unwrap();
    }
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .map_err(|e| e.to_string())?;
    }
    let der = capture.leaf().ok_or("no certificate")?;
    Ok((sha256_hex(&der), tls))
}

#[test]
fn sni_choice_over_real_handshakes_and_live_changes() {
    let dir = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let pki = Pki::new(files.path());
    let domain = pki.leaf("domain", &["pbx.acme.test"]);
    let exact = pki.leaf("exact", &["sip.example.test"]);
    let wild = pki.leaf("wild", &["*.example.test"]);
    let d = dir.path();
    assert_eq!(cli(d, &["import", "--cert", &pki.path("root.pem")]).0, 0);
    assert_eq!(
        cli(d, &["tenant", "add", "acme", "--dns", "pbx.acme.test"]).0,
        0
    );
    for f in ["domain", "exact", "wild"] {
        let out = cli(
            d,
            &[
                "import",
                "--cert",
                &pki.path(&format!("{f}.pem")),
                "--key",
                &pki.path(&format!("{f}.key")),
            ],
        );
        assert_eq!(out.0, 0, "{}", out.2);
    }
    let daemon = Daemon::start(dir, None);
    let default = json(&daemon.cli(&["resolve", "--json"]));
    assert_eq!(default["match"], "default");

    assert_eq!(
        presented(daemon.https, Some("pbx.acme.test")).unwrap(),
        domain
    );
    assert_eq!(
        presented(daemon.https, Some("PBX.ACME.TEST")).unwrap(),
        domain
    );
    assert_eq!(
        presented(daemon.https, Some("sip.example.test")).unwrap(),
        exact
    );
    assert_eq!(
        presented(daemon.https, Some("other.example.test")).unwrap(),
        wild
    );
    let unknown = presented(daemon.https, Some("nobody.invalid")).unwrap();
    assert_eq!(unknown, default["id"].as_str().unwrap());
    assert_eq!(presented(daemon.https, None).unwrap(), unknown);

    // A change through the CLI (control socket) is served on the next handshake.
    let newer = pki.leaf("newer", &["pbx.acme.test"]);
    let out = daemon.cli(&[
        "import",
        "--cert",
        &pki.path("newer.pem"),
        "--key",
        &pki.path("newer.key"),
        "--json",
    ]);
    assert_eq!(json(&out)["id"], newer.as_str());
    let now_served = presented(daemon.https, Some("pbx.acme.test")).unwrap();
    assert!(now_served == newer || now_served == domain);
    assert_eq!(daemon.cli(&["cert", "delete", &domain]).0, 0);
    assert_eq!(
        presented(daemon.https, Some("pbx.acme.test")).unwrap(),
        newer
    );
    assert_eq!(daemon.cli(&["cert", "delete", &exact]).0, 0);
    assert_eq!(
        presented(daemon.https, Some("sip.example.test")).unwrap(),
        wild
    );

    // The same answers through the control socket as `resolve` gives.
    let r = json(&daemon.cli(&["resolve", "sip.example.test", "--json"]));
    assert_eq!(r["id"], wild.as_str());
    assert_eq!(r["match"], "server");

    // Errors keep their codes through the socket.
    let out = daemon.cli(&["tenant", "remove", "nosuch", "--json"]);
    assert_eq!(out.0, 1);
    let v: serde_json::Value = serde_json::from_str(&out.1).unwrap();
    assert_eq!(v["error"]["code"], "no-such-tenant");

    let (status, lines, dir) = daemon.stop();
    assert!(status.success(), "exit {status:?}: {lines:?}");
    assert!(!dir.path().join("control.sock").exists());
    // The store is intact and free again after shutdown.
    let certs = json(&cli(dir.path(), &["certs", "--json"]));
    let ids: Vec<&str> = certs
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&newer.as_str()) && !ids.contains(&domain.as_str()));
}

#[test]
fn first_start_self_signed_then_real_server_cert_becomes_default() {
    let dir = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let pki = Pki::new(files.path());
    let daemon = Daemon::start(dir, None);
    let certs = json(&daemon.cli(&["certs", "--json"]));
    let certs = certs.as_array().unwrap();
    assert_eq!(certs.len(), 1);
    assert_eq!(certs[0]["source"], "self-signed");
    let self_signed = certs[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(presented(daemon.https, None).unwrap(), self_signed);
    let real = pki.leaf("real", &["pbx.example.test"]);
    assert_eq!(
        daemon.cli(&["import", "--cert", &pki.path("root.pem")]).0,
        0
    );
    let out = daemon.cli(&[
        "import",
        "--cert",
        &pki.path("real.pem"),
        "--key",
        &pki.path("real.key"),
    ]);
    assert_eq!(out.0, 0, "{}", out.2);
    assert_eq!(presented(daemon.https, None).unwrap(), real);
    // The setup token was logged because no admin password is set.
    let (_, lines, _) = daemon.stop();
    assert!(
        lines.iter().any(|l| l.contains("setup-token=")),
        "{lines:?}"
    );
}

#[test]
fn nothing_to_serve_fails_the_handshake_and_the_daemon_lives_on() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir, None);
    let certs = json(&daemon.cli(&["certs", "--json"]));
    let id = certs[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(daemon.cli(&["cert", "delete", &id]).0, 0);
    assert_eq!(json(&daemon.cli(&["resolve", "--json"]))["match"], "none");
    assert!(presented(daemon.https, Some("any.example.test")).is_err());
    assert!(presented(daemon.https, None).is_err());
    // Still alive and answering.
    assert_eq!(daemon.cli(&["tenant", "list", "--json"]).1.trim(), "[]");
}

#[test]
fn a_closed_log_pipe_does_not_stop_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(dir, None);
    // Stop reading the daemon's stderr: the reader thread ends at the next
    // line and closes the pipe, so later log lines meet a closed pipe.
    daemon.log = mpsc::channel().1;
    for _ in 0..4 {
        // Garbage instead of a ClientHello: the daemon logs the failed
        // handshake before it closes the connection, so EOF here means the
        // line was written (or its write failed).
        let mut tcp = std::net::TcpStream::connect(daemon.https).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let _ = tcp.write_all(b"GET / HTTP/1.0\r\n\r\n");
        let _ = tcp.read_to_end(&mut Vec::new());
    }
    assert!(
        daemon.is_running(),
        "the daemon exited when its log pipe closed"
    );
    assert!(presented(daemon.https, None).is_ok());
    assert_eq!(daemon.cli(&["tenant", "list", "--json"]).1.trim(), "[]");
    // The shutdown path logs from the main task: still a clean exit.
    let (status, _, _) = daemon.stop();
    assert!(status.success(), "exit after SIGTERM: {status:?}");
}

#[test]
fn openssl_and_curl_see_the_chosen_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let pki = Pki::new(files.path());
    pki.leaf("t1", &["pbx.one.test"]);
    pki.leaf("t2", &["pbx.two.test"]);
    let d = dir.path();
    assert_eq!(cli(d, &["import", "--cert", &pki.path("root.pem")]).0, 0);
    assert_eq!(
        cli(d, &["tenant", "add", "one", "--dns", "pbx.one.test"]).0,
        0
    );
    assert_eq!(
        cli(d, &["tenant", "add", "two", "--dns", "pbx.two.test"]).0,
        0
    );
    for f in ["t1", "t2"] {
        assert_eq!(
            cli(
                d,
                &[
                    "import",
                    "--cert",
                    &pki.path(&format!("{f}.pem")),
                    "--key",
                    &pki.path(&format!("{f}.key"))
                ]
            )
            .0,
            0
        );
    }
    let daemon = Daemon::start(dir, None);
    for (sni, cn) in [
        ("pbx.one.test", "pbx.one.test"),
        ("pbx.two.test", "pbx.two.test"),
    ] {
        let out = Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &daemon.https.to_string(),
                "-servername",
                sni,
            ])
            .stdin(Stdio::null())
            .output()
            .expect("openssl");
        let text = String::from_utf8_lossy(&out.stdout);
        let subject_line = text
            .lines()
            .find(|l| l.contains("DNS:") || l.starts_with("subject="))
            .unwrap_or("");
        // rcgen leaves the subject empty; the SAN shows in the -text output.
        let pem_start = text
            .find("-----BEGIN CERTIFICATE-----")
            .expect("no certificate printed");
        let pem_end =
            text.find("-----END CERTIFICATE-----").unwrap() + "-----END CERTIFICATE-----".len();
        let mut x509 = Command::new("openssl")
            .args(["x509", "-noout", "-ext", "subjectAltName"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        x509.stdin
            .take()
            .unwrap()
            .write_all(&text.as_bytes()[pem_start..pem_end])
            .unwrap();
        let san = String::from_utf8(x509.wait_with_output().unwrap().stdout).unwrap();
        assert!(
            san.contains(&format!("DNS:{cn}")),
            "sni {sni}: {san} ({subject_line})"
        );

        // curl with the test root as CA: verification by name succeeds only
        // if the right certificate is served.
        let port = daemon.https.port();
        let out = Command::new("curl")
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{ssl_verify_result}",
                "--cacert",
                &pki.path("root.pem"),
            ])
            .arg("--resolve")
            .arg(format!("{sni}:{port}:127.0.0.1"))
            .arg(format!("https://{sni}:{port}/"))
            .output()
            .expect("curl");
        assert!(
            out.status.success(),
            "curl {sni}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "0");
    }
    // Port 80 redirects to HTTPS.
    let mut tcp = TcpStream::connect(daemon.http).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.write_all(b"GET /admin HTTP/1.1\r\nHost: pbx.one.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    let _ = tcp.read_to_string(&mut resp);
    let status = resp.lines().next().unwrap_or("");
    assert!(
        status.contains(" 301 ") || status.contains(" 308 "),
        "{resp}"
    );
    assert!(
        resp.to_ascii_lowercase().contains("location: https://"),
        "{resp}"
    );
}

fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn tls_forward_serves_tenant_cert_and_echoes_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let pki = Pki::new(files.path());
    let sip = pki.leaf("sip", &["sip.acme.test"]);
    let d = dir.path();
    assert_eq!(cli(d, &["import", "--cert", &pki.path("root.pem")]).0, 0);
    assert_eq!(
        cli(d, &["tenant", "add", "acme", "--dns", "sip.acme.test"]).0,
        0
    );
    assert_eq!(
        cli(
            d,
            &[
                "import",
                "--cert",
                &pki.path("sip.pem"),
                "--key",
                &pki.path("sip.key")
            ]
        )
        .0,
        0
    );
    let target = echo_server();
    let daemon = Daemon::start(dir, Some(target));
    let fwd = daemon.forward.expect("forward listener");

    // A stalled client: TCP connected, no ClientHello; must not block others.
    let _stalled = TcpStream::connect(fwd).unwrap();
    // One that finished its handshake and then goes quiet.
    let (_, mut quiet) = presented_stream(fwd, Some("sip.acme.test")).unwrap();

    let threads: Vec<_> = (0..16)
        .map(|i| {
            std::thread::spawn(move || {
                let (id, mut tls) = presented_stream(fwd, Some("sip.acme.test")).unwrap();
                let msg = format!("REGISTER sip:acme {i}\r\n");
                tls.write_all(msg.as_bytes()).unwrap();
                tls.flush().unwrap();
                let mut got = vec![0u8; msg.len()];
                tls.read_exact(&mut got).unwrap();
                (id, String::from_utf8(got).unwrap(), msg)
            })
        })
        .collect();
    for t in threads {
        let (id, got, msg) = t.join().unwrap();
        assert_eq!(id, sip);
        assert_eq!(got, msg);
    }

    // A change (new certificate, snapshot rebuilt) drops no open connection:
    // the quiet one still works, and new handshakes get the new certificate.
    let newer = pki.leaf("newer", &["sip.acme.test"]);
    assert_eq!(daemon.cli(&["cert", "delete", &sip]).0, 0);
    assert_eq!(
        daemon
            .cli(&[
                "import",
                "--cert",
                &pki.path("newer.pem"),
                "--key",
                &pki.path("newer.key")
            ])
            .0,
        0
    );
    quiet.write_all(b"OPTIONS sip:still-here\r\n").unwrap();
    quiet.flush().unwrap();
    let mut got = [0u8; 24];
    quiet.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"OPTIONS sip:still-here\r\n");
    assert_eq!(presented(fwd, Some("sip.acme.test")).unwrap(), newer);
}

/// Bytes pushed through the forward in each direction by the stall test: more
/// than the kernel buffers between the peers hold, so pbx-certd's socket
/// fills while the reader pauses.
const STALL_BYTES: usize = 8 * 1024 * 1024;

fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

/// Reads until `want` bytes arrived or nothing more comes for `idle`;
/// returns how many arrived and whether they all matched `pattern`.
fn read_counted(r: &mut impl Read, want: usize) -> (usize, bool) {
    let mut got = 0;
    let mut intact = true;
    let mut buf = vec![0u8; 64 * 1024];
    while got < want {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                intact &= buf[..n]
                    .iter()
                    .enumerate()
                    .all(|(k, b)| *b == pattern(got + k));
                got += n;
            }
        }
    }
    (got, intact)
}

fn write_pattern(w: &mut impl Write, total: usize) {
    let mut sent = 0;
    while sent < total {
        let n = (64 * 1024).min(total - sent);
        let part: Vec<u8> = (sent..sent + n).map(pattern).collect();
        w.write_all(&part).unwrap();
        sent += n;
    }
    w.flush().unwrap();
}

/// Issue 12's defect: a client that stops reading until pbx-certd's socket to
/// it is full, then reads again, must get every byte the target sent, with no
/// further traffic from the target (which stays connected and silent, as a
/// SIP server does after its last NOTIFY). The same for the other direction.
#[test]
fn tls_forward_delivers_every_byte_to_a_reader_that_paused() {
    let dir = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let pki = Pki::new(files.path());
    pki.leaf("sip", &["sip.acme.test"]);
    let d = dir.path();
    assert_eq!(cli(d, &["import", "--cert", &pki.path("root.pem")]).0, 0);
    let import = [
        "import",
        "--cert",
        &pki.path("sip.pem"),
        "--key",
        &pki.path("sip.key"),
    ];
    assert_eq!(cli(d, &import).0, 0);

    // The target: on each connection, first pushes STALL_BYTES to the client
    // and stays silent; then reads what the client sends after a pause.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap();
    let (got_tx, got_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write_pattern(&mut s, STALL_BYTES);
        // Direction client -> target: let pbx-certd's socket to us fill.
        std::thread::sleep(Duration::from_millis(1500));
        got_tx.send(read_counted(&mut s, STALL_BYTES)).unwrap();
        // Stay connected and silent until the test ends.
        let _ = s.read(&mut [0u8; 1]);
    });

    let daemon = Daemon::start(dir, Some(target));
    let fwd = daemon.forward.expect("forward listener");
    let (_, mut tls) =
        presented_stream_rcvbuf(fwd, Some("sip.acme.test"), Some(64 * 1024)).unwrap();
    // Direction target -> client: pause until everything in between is full.
    std::thread::sleep(Duration::from_millis(1500));
    let (got, intact) = read_counted(&mut tls, STALL_BYTES);
    assert_eq!(
        got, STALL_BYTES,
        "the client got {got} of {STALL_BYTES} bytes; the rest stayed in pbx-certd"
    );
    assert!(intact, "the bytes arrived altered or out of order");

    write_pattern(&mut tls, STALL_BYTES);
    let (got, intact) = got_rx.recv_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!(
        got, STALL_BYTES,
        "the target got {got} of {STALL_BYTES} bytes; the rest stayed in pbx-certd"
    );
    assert!(intact, "the bytes arrived altered or out of order");
}

/// A store with tenant `phones` owning 127.0.0.1 and its certificate for
/// that address (`byip`), plus a server certificate for `pbx.example.test`
/// (the default), both under a test root in the Root CA list: the data dir,
/// the dir of the PKI files, and the two leaf IDs.
fn phones_by_ip() -> (tempfile::TempDir, tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let pki = Pki::new(files.path());
    let by_ip = pki.leaf("byip", &["127.0.0.1"]);
    let server = pki.leaf("server", &["pbx.example.test"]);
    let ok = |args: &[&str]| {
        let out = cli(dir.path(), args);
        assert_eq!(out.0, 0, "{args:?}: {} {}", out.1, out.2);
    };
    ok(&["import", "--cert", &pki.path("root.pem")]);
    ok(&["tenant", "add", "phones", "--ip", "127.0.0.1"]);
    for f in ["byip", "server"] {
        ok(&[
            "import",
            "--cert",
            &pki.path(&format!("{f}.pem")),
            "--key",
            &pki.path(&format!("{f}.key")),
        ]);
    }
    (dir, files, by_ip, server)
}

/// Phones provisioned by IP send no SNI: a tenant's IP name (`tenant add
/// --ip`) gets them its certificate when they connect to that address; a
/// connection to another address of the same wildcard listener gets the
/// default; an SNI wins over the address. `openssl s_client -noservername`
/// verifies the certificate for the IP (`-verify_ip`), and `resolve
/// --local-address` says the same as the handshakes.
#[test]
fn a_client_without_sni_gets_the_certificate_of_the_address_it_connected_to() {
    let (dir, files, by_ip, server) = phones_by_ip();
    let d = dir.path();
    let pki_root = files.path().join("root.pem");
    let certs = json(&cli(d, &["certs", "--json"]));
    let ip_cert = certs
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == by_ip.as_str())
        .unwrap();
    assert_eq!(ip_cert["kind"], "domain", "{ip_cert}");
    assert_eq!(ip_cert["tenant"], "phones", "{ip_cert}");

    let daemon = serve::Serve::on(d).https("0.0.0.0:0").start();
    let port = daemon.https.port();
    let at = |ip: &str| SocketAddr::new(ip.parse().unwrap(), port);
    assert_eq!(presented(at("127.0.0.1"), None), Ok(by_ip.clone()));
    assert_eq!(presented(at("127.0.0.2"), None), Ok(server.clone()));
    assert_eq!(
        presented(at("127.0.0.1"), Some("pbx.example.test")),
        Ok(server.clone())
    );
    // Again on the same address: the per-address config is reused.
    assert_eq!(presented(at("127.0.0.1"), None), Ok(by_ip.clone()));

    let out = Command::new("openssl")
        .args(["s_client", "-noservername", "-verify_return_error"])
        .args(["-connect", &at("127.0.0.1").to_string()])
        .args([
            "-CAfile",
            pki_root.to_str().unwrap(),
            "-verify_ip",
            "127.0.0.1",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("openssl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("Verify return code: 0 (ok)"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    for (local, id, rule) in [
        ("127.0.0.1", &by_ip, "address"),
        ("127.0.0.2", &server, "default"),
    ] {
        let r = json(&daemon.cli(&["resolve", "--local-address", local, "--json"]));
        assert_eq!(r["id"], id.as_str(), "{r}");
        assert_eq!(r["match"], rule, "{r}");
    }
    daemon.stop();
}

/// `handshakes` (through the control socket of the running daemon) answers
/// "which phones send no SNI, and which certificate did they get?": each
/// handshake of a listener with the SNI or none, the certificate and rule,
/// version, and for a failed one the reason — with the SNI even when the
/// handshake then failed — and counters per rule.
#[test]
fn handshakes_show_which_clients_send_no_sni_and_what_they_got() {
    let (dir, _files, by_ip, server) = phones_by_ip();
    let d = dir.path();
    // Without the daemon there is nothing to show, and it says so.
    let out = cli(d, &["handshakes"]);
    assert_ne!(out.0, 0);
    assert!(out.2.contains("serve"), "{}", out.2);

    let daemon = serve::Serve::on(d).forward(echo_server()).start();
    let fwd = daemon.forward.expect("forward address");
    // A phone without SNI, one with SNI, one that refuses our certificate
    // (no roots: it sends an alert after the server's flight), and a
    // client that speaks no TLS at all.
    assert_eq!(presented(fwd, None), Ok(by_ip.clone()));
    assert_eq!(presented(fwd, Some("pbx.example.test")), Ok(server.clone()));
    let strict = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    let name = ServerName::try_from("pbx.example.test").unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(strict), name).unwrap();
    let mut tcp = TcpStream::connect(fwd).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut refused = false;
    while conn.is_handshaking() {
        if conn.complete_io(&mut tcp).is_err() {
            refused = true;
            break;
        }
    }
    assert!(refused, "an empty root store refuses the certificate");
    let _ = conn.complete_io(&mut tcp); // the alert goes out
    drop(tcp);
    let mut plain = TcpStream::connect(fwd).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    plain.write_all(b"OPTIONS sip:pbx SIP/2.0\r\n\r\n").unwrap();
    let _ = plain.read(&mut [0u8; 64]);

    // The daemon records after each handshake ends: wait (hang guard).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let listener = loop {
        let v = json(&daemon.cli(&["handshakes", "--listener", "forward", "--json"]));
        let list = v.as_array().unwrap().clone();
        assert_eq!(list.len(), 1, "only the forward listener: {v}");
        if list[0]["recent"].as_array().unwrap().len() >= 4 {
            break list[0].clone();
        }
        assert!(std::time::Instant::now() < deadline, "not recorded: {v}");
        std::thread::sleep(Duration::from_millis(100));
    };
    // Each is recorded when its handshake ends on the server, so the order
    // of near-simultaneous ones may differ from the clients' order.
    let recent = listener["recent"].as_array().unwrap();
    let find = |what: &str, f: &dyn Fn(&serde_json::Value) -> bool| {
        recent
            .iter()
            .find(|r| f(r))
            .unwrap_or_else(|| panic!("no {what} record: {recent:?}"))
            .clone()
    };
    let no_sni = &find("no-SNI success", &|r| {
        r["sni_kind"] == "none" && r["rule"] != "failed"
    });
    assert_eq!(no_sni["sni_kind"], "none", "{no_sni}");
    assert_eq!(no_sni["cert"], by_ip.as_str(), "{no_sni}");
    assert_eq!(no_sni["rule"], "address", "{no_sni}");
    assert_eq!(no_sni["local"], "127.0.0.1", "{no_sni}");
    assert_eq!(no_sni["version"], "TLSv1.3", "{no_sni}");
    let named = &find("named success", &|r| {
        r["sni"] == "pbx.example.test" && r["rule"] != "failed"
    });
    assert_eq!(named["sni"], "pbx.example.test", "{named}");
    assert_eq!(named["cert"], server.as_str(), "{named}");
    assert_eq!(named["rule"], "server", "{named}");
    let alert = &find("refused", &|r| {
        r["sni"] == "pbx.example.test" && r["rule"] == "failed"
    });
    assert_eq!(alert["rule"], "failed", "{alert}");
    assert_eq!(
        alert["sni"], "pbx.example.test",
        "the SNI of a failed handshake: {alert}"
    );
    assert!(
        alert["failure"].as_str().unwrap().contains("alert"),
        "{alert}"
    );
    let garbage = &find("no-TLS", &|r| {
        r["sni_kind"] == "none" && r["rule"] == "failed"
    });
    assert_eq!(garbage["rule"], "failed", "{garbage}");
    assert_eq!(garbage["sni_kind"], "none", "{garbage}");
    let counters = &listener["counters"];
    assert_eq!(counters["address"], 1, "{counters}");
    assert_eq!(counters["server"], 1, "{counters}");
    assert_eq!(counters["failed"], 2, "{counters}");
    // The text form shows the no-SNI phone.
    let (code, text, _) = daemon.cli(&["handshakes"]);
    assert_eq!(code, 0);
    assert!(text.contains("no SNI"), "{text}");
    assert!(text.contains("https "), "both listeners: {text}");
    daemon.stop();
}

/// `handshake-log = off` (config file; the flag `--handshake-log off` has
/// the same parser): the listener still serves by address and SNI, and
/// `handshakes` says the diagnostics are off instead of listing nothing.
#[test]
fn handshake_log_off_keeps_no_records_and_says_so() {
    let (dir, files, by_ip, server) = phones_by_ip();
    let d = dir.path();
    let conf = files.path().join("serve.conf");
    std::fs::write(&conf, "handshake-log = off\n").unwrap();
    let daemon = serve::Serve::on(d)
        .forward(echo_server())
        .arg("--config")
        .arg(&conf)
        .start();
    let fwd = daemon.forward.expect("forward address");
    assert_eq!(presented(fwd, None), Ok(by_ip));
    assert_eq!(presented(fwd, Some("pbx.example.test")), Ok(server));
    let v = json(&daemon.cli(&["handshakes", "--listener", "forward", "--json"]));
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), 1, "{v}");
    assert_eq!(list[0]["enabled"], false, "{v}");
    assert_eq!(list[0]["recent"].as_array().unwrap().len(), 0, "{v}");
    assert!(
        list[0]["counters"]
            .as_object()
            .unwrap()
            .values()
            .all(|n| n == 0),
        "{v}"
    );
    let (code, text, _) = daemon.cli(&["handshakes"]);
    assert_eq!(code, 0);
    assert!(text.contains("off (serve --handshake-log off)"), "{text}");
    daemon.stop();

    let conf_bad = files.path().join("bad.conf");
    std::fs::write(&conf_bad, "handshake-log = maybe\n").unwrap();
    let out = cli(d, &["serve", "--config", conf_bad.to_str().unwrap()]);
    assert_eq!(out.0, 2, "{out:?}");
    assert!(out.2.contains("handshake-log must be on or off"), "{out:?}");
}
