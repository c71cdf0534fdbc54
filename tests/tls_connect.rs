//! `--tls-connect LISTEN=HOST:PORT[,sni=NAME][,client-cert=ID]` (issue 12):
//! the SIP server's plain TCP goes out as TLS to a trunk, verified against
//! the Root CA list, with the local CA's `ca issue --client` certificate as
//! client certificate.
//!
//! The trunk is `openssl s_server -Verify 1 -verify_return_error` (a TLS
//! server that REQUIRES a client certificate from the local CA, `-rev`: it
//! answers each line reversed), not Kamailio's tls module: the test runs
//! everywhere, qemu-user included. The "SIP server" is a plain TCP client
//! of the test. Waits are hang guards only.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;

/// Hang guard of one read from the daemon.
const READ_GUARD: Duration = Duration::from_secs(60);

/// The trunk: `openssl s_server` with a certificate for `trunk.test` from
/// its own root, requiring a client certificate issued by `client_ca`.
struct Trunk {
    child: Child,
    addr: SocketAddr,
    /// The trunk's root (PEM), to put into the Root CA list.
    root_pem: String,
    root_id: String,
}

impl Drop for Trunk {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn trunk(pbx: &Pbx, client_ca_pem: &str) -> Trunk {
    let root = root("trunk test root");
    let mut b = leaf(&["trunk.test"]);
    b.params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = b.signed_by(&root);
    let cert_file = pbx.file("trunk.pem", cert.pem());
    let key_file = pbx.file("trunk.key", cert.key_pem());
    let ca_file = pbx.file("client-ca.pem", client_ca_pem);
    let mut child = Command::new("openssl")
        .args([
            "s_server",
            "-accept",
            "127.0.0.1:0",
            "-cert",
            &cert_file,
            "-key",
            &key_file,
            "-Verify",
            "1",
            "-verify_return_error",
            "-CAfile",
            &ca_file,
            "-rev",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_server");
    // `ACCEPT 127.0.0.1:PORT` on stdout (port 0: the OS chose).
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(a) = line.strip_prefix("ACCEPT ") {
                let _ = tx.send(a.trim().to_owned());
            }
        }
    });
    let addr = rx
        .recv_timeout(READ_GUARD)
        .expect("openssl s_server did not say ACCEPT")
        .parse()
        .unwrap();
    Trunk {
        child,
        addr,
        root_pem: root.pem(),
        root_id: root.id(),
    }
}

/// The local CA, a tenant, and two certificates from it: with clientAuth
/// (`ca issue --client`) and without; returns (CA PEM, client ID, server ID).
fn local_ca(pbx: &Pbx) -> (String, String, String) {
    let ca = pbx.ok(&["ca", "init"])["pem"].as_str().unwrap().to_owned();
    pbx.tenant_add("acme", &["pbx.acme.test"]);
    pbx.tenant_add("globex", &["pbx.globex.test"]);
    let client = pbx.ok(&["ca", "issue", "--tenant", "acme", "--client"]);
    let server = pbx.ok(&["ca", "issue", "--tenant", "globex"]);
    let id = |v: &serde_json::Value| v["id"].as_str().unwrap().to_owned();
    (ca, id(&client), id(&server))
}

/// The `connect=ADDR->TRUNK` listeners of the ready line, in order.
fn connect_addrs(daemon: &serve::Daemon) -> Vec<SocketAddr> {
    let ready = daemon.startup.last().unwrap();
    ready
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("connect="))
        .map(|a| a.split("->").next().unwrap().parse().unwrap())
        .collect()
}

/// As the SIP server: connect to `listen`, send `line`, read until the
/// trunk's reply line or EOF; what came back.
fn exchange(listen: SocketAddr, line: &str) -> String {
    let mut s = TcpStream::connect(listen).unwrap();
    s.set_read_timeout(Some(READ_GUARD)).unwrap();
    s.write_all(line.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(b"\n") {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            // Reset by the daemon: the connection is gone, nothing more.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("read from the tls-connect listener: {e} (hang guard)"),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// The next log line containing `what` (hang guard `READ_GUARD`).
fn wait_log(daemon: &serve::Daemon, what: &str) -> String {
    loop {
        match daemon.log.recv_timeout(READ_GUARD) {
            Ok(line) if line.contains(what) => return line,
            Ok(_) => {}
            Err(e) => panic!(
                "no log line with {what:?} ({e}); log:\n{}",
                daemon.log_text()
            ),
        }
    }
}

#[test]
fn verified_against_the_root_ca_list_with_client_cert_and_refused_after_roots_delete() {
    let pbx = Pbx::new();
    let (ca, client_id, _) = local_ca(&pbx);
    let trunk = trunk(&pbx, &ca);
    let root_file = pbx.file("trunk-root.pem", &trunk.root_pem);
    pbx.ok(&["import", "--cert", &root_file, "--kind", "root"]);
    let good = format!(
        "127.0.0.1:0={},sni=trunk.test,client-cert={}",
        trunk.addr,
        &client_id[..16]
    );
    // The same trunk under a name its certificate does not carry.
    let wrong_name = format!(
        "127.0.0.1:0={},sni=other.test,client-cert={client_id}",
        trunk.addr
    );
    let daemon = pbx
        .daemon()
        .args(&["--tls-connect", &good, "--tls-connect", &wrong_name])
        .start();
    let listeners = connect_addrs(&daemon);
    assert_eq!(listeners.len(), 2, "{:?}", daemon.startup);

    // Bytes pass both ways: the trunk answers the line reversed.
    assert_eq!(
        exchange(listeners[0], "INVITE sip:bob\n"),
        "bob:pis ETIVNI\n"
    );
    let line = wait_log(&daemon, "verified against the Root CA list");
    assert!(
        line.contains(&format!("client certificate {client_id}")),
        "{line}"
    );
    assert!(line.contains("trunk.test"), "{line}");

    // The name is verified: other.test is refused, nothing reaches the trunk.
    assert_eq!(exchange(listeners[1], "INVITE sip:bob\n"), "");
    let line = wait_log(&daemon, "not connected");
    assert!(line.contains("[tls-failed]"), "{line}");
    assert!(line.contains("other.test"), "{line}");

    // The Root CA list as stored at connect time: without the trunk's root
    // the next connection is refused (the daemon runs on).
    let (code, _, err) = daemon.cli(&["roots", "delete", &trunk.root_id]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(exchange(listeners[0], "INVITE sip:bob\n"), "");
    let line = wait_log(&daemon, "not connected");
    assert!(
        line.contains("[tls-failed]") && line.contains("UnknownIssuer"),
        "{line}"
    );

    // Back in the list: connected again.
    pbx.ok(&["import", "--cert", &root_file, "--kind", "root"]);
    assert_eq!(exchange(listeners[0], "REGISTER\n"), "RETSIGER\n");
}

#[test]
fn the_trunk_refuses_a_connection_without_client_cert() {
    let pbx = Pbx::new();
    let (ca, _, _) = local_ca(&pbx);
    let trunk = trunk(&pbx, &ca);
    let root_file = pbx.file("trunk-root.pem", &trunk.root_pem);
    pbx.ok(&["import", "--cert", &root_file, "--kind", "root"]);
    let spec = format!("127.0.0.1:0={},sni=trunk.test", trunk.addr);
    let daemon = pbx.daemon().args(&["--tls-connect", &spec]).start();
    let listen = connect_addrs(&daemon)[0];
    // The trunk's certificate is verified; the trunk then refuses us
    // (TLS 1.3: its alert arrives after our side of the handshake).
    assert_eq!(exchange(listen, "INVITE sip:bob\n"), "");
    let line = wait_log(&daemon, "closed by the trunk");
    assert!(line.contains("CertificateRequired"), "{line}");
    assert!(
        daemon.log_text().contains("no client certificate"),
        "{}",
        daemon.log_text()
    );
}

#[test]
fn a_client_cert_without_client_auth_is_refused_at_start() {
    let pbx = Pbx::new();
    let (_, client_id, server_id) = local_ca(&pbx);
    // Flag: a serverAuth-only certificate as client-cert.
    let spec = format!("127.0.0.1:0=127.0.0.1:5061,client-cert={server_id}");
    let out = run_command(pbx.daemon().args(&["--tls-connect", &spec]).command(), None);
    assert_eq!(out.status, 1, "{}", out.describe());
    assert!(out.stderr.contains("not-client-auth"), "{}", out.describe());
    assert!(out.stderr.contains("server-auth"), "{}", out.describe());
    // The config file's `tls-connect` line, the same parser and check.
    let config = pbx.file("serve.conf", format!("tls-connect = {spec}\n"));
    let out = run_command(pbx.daemon().args(&["--config", &config]).command(), None);
    assert_eq!(out.status, 1, "{}", out.describe());
    assert!(out.stderr.contains("not-client-auth"), "{}", out.describe());
    // An unknown ID is named too; a bad option is a usage error (exit 2).
    let spec = "127.0.0.1:0=127.0.0.1:5061,client-cert=00000000";
    let out = run_command(pbx.daemon().args(&["--tls-connect", spec]).command(), None);
    assert!(
        out.stderr.contains("client-cert-not-found"),
        "{}",
        out.describe()
    );
    let bad = pbx.file(
        "bad.conf",
        "tls-connect = 127.0.0.1:0=127.0.0.1:5061,color=red\n",
    );
    let out = run_command(pbx.daemon().args(&["--config", &bad]).command(), None);
    assert_eq!(out.status, 2, "{}", out.describe());
    assert!(
        out.stderr.contains("unknown option color"),
        "{}",
        out.describe()
    );
    // The clientAuth certificate starts (the trunk need not be up).
    let spec = format!("127.0.0.1:0=127.0.0.1:5061,client-cert={client_id}");
    let daemon = pbx.daemon().args(&["--tls-connect", &spec]).start();
    assert_eq!(connect_addrs(&daemon).len(), 1);
}
