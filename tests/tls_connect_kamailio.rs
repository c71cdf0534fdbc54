//! `--tls-connect` against a real SIP trunk: Debian's Kamailio with its tls
//! module (`kamailio-tls-modules`) on loopback, REQUIRING a client
//! certificate from the local CA (`verify_certificate`,
//! `require_certificate`), as carriers and Teams Direct Routing do (issue
//! 12). The "SIP server" is the test, sending an OPTIONS request in plain
//! TCP to the `--tls-connect` listener; the trunk answers 200 OK with the
//! client certificate's CN it verified (`$tls_peer_subject_cn`).
//!
//! Native only (peer-heavy; `scripts/test-qemu.sh` leaves this binary out
//! by name, README "What runs where"). Kamailio cannot bind port 0: the
//! test asks the OS for a free port, closes it and hands it to Kamailio.
//! The Kamailio config is made here from the tested recipe of
//! `../shared/reference/sip/` (Kamailio 5.6.3), reduced to OPTIONS over
//! TLS. Waits are hang guards only. SIPp (Debian `sip-tester`, built
//! without TLS: exactly the plain-TCP SIP server `--tls-connect` is for)
//! sends the same OPTIONS as a second, independent SIP client.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Hang guard of a read, and of Kamailio's start.
const GUARD: Duration = Duration::from_secs(60);

/// Debian's module directory of Kamailio (amd64 and arm64).
const MODULE_DIRS: [&str; 2] = [
    "/usr/lib/x86_64-linux-gnu/kamailio/modules",
    "/usr/lib/aarch64-linux-gnu/kamailio/modules",
];

/// Kamailio and its tls module, or why not.
fn kamailio_missing() -> Option<String> {
    if !Path::new("/usr/sbin/kamailio").exists() {
        return Some("/usr/sbin/kamailio missing (apt-get install kamailio)".into());
    }
    if !MODULE_DIRS
        .iter()
        .any(|d| Path::new(d).join("tls.so").exists())
    {
        return Some("Kamailio's tls.so missing (apt-get install kamailio-tls-modules)".into());
    }
    None
}

/// A Kamailio trunk on TLS, killed when dropped.
struct Trunk {
    child: Child,
    addr: SocketAddr,
    log: std::path::PathBuf,
}

impl Drop for Trunk {
    fn drop(&mut self) {
        common::kamailio::stop(&mut self.child);
    }
}

impl Trunk {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A free loopback port (the OS chooses; closed again for Kamailio).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Start Kamailio on `tls:127.0.0.1:PORT` with `cert` for `trunk.test`,
/// requiring a client certificate issued by `client_ca_pem`.
fn kamailio(pbx: &Pbx, cert: &Issued, client_ca_pem: &str) -> Trunk {
    let dir = pbx.files.join("kamailio");
    std::fs::create_dir_all(dir.join("run")).unwrap();
    let file = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let cert_file = file("trunk.pem", &cert.pem());
    let key_file = file("trunk.key", &cert.key_pem());
    let ca_file = file("client-ca.pem", client_ca_pem);
    let tls_cfg = file(
        "tls.cfg",
        &format!(
            "[server:default]\nmethod = TLSv1.2+\nverify_certificate = yes\n\
             require_certificate = yes\nprivate_key = {key_file}\ncertificate = {cert_file}\n\
             ca_list = {ca_file}\n\n[client:default]\nverify_certificate = no\n"
        ),
    );
    let port = free_port();
    let cfg = file(
        "kamailio.cfg",
        &format!(
            r#"#!KAMAILIO
debug=2
log_stderror=yes
children=1
tcp_children=2
auto_aliases=no
dns=no
rev_dns=no
use_dns_cache=off
enable_tls=yes
listen=tls:127.0.0.1:{port}
tcp_accept_no_cl=no
loadmodule "kex.so"
loadmodule "corex.so"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "textops.so"
loadmodule "xlog.so"
loadmodule "tls.so"
modparam("tls", "config", "{tls_cfg}")
request_route {{
	xlog("L_NOTICE", "SIPREQ $rm ci=$ci proto=$proto peer-cn=$tls_peer_subject_cn verified=$tls_peer_verified\n");
	if (is_method("OPTIONS")) {{
		append_to_reply("X-Peer-CN: $tls_peer_subject_cn\r\n");
		sl_send_reply("200", "OK");
		exit;
	}}
	sl_send_reply("501", "Not Implemented");
	exit;
}}
"#
        ),
    );
    let log = dir.join("kamailio.log");
    let check = Command::new("/usr/sbin/kamailio")
        .args(["-c", "-f", &cfg])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "kamailio -c: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let child = Command::new("/usr/sbin/kamailio")
        .args(["-f", &cfg, "-DD", "-E", "-m", "64", "-M", "8", "-Y"])
        .arg(dir.join("run"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("kamailio");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut trunk = Trunk { child, addr, log };
    // Listening? (a hang guard: Kamailio starts in well under a second).
    let start = Instant::now();
    while TcpStream::connect(addr).is_err() {
        if let Ok(Some(status)) = trunk.child.try_wait() {
            panic!("kamailio exited ({status}):\n{}", trunk.log());
        }
        assert!(
            start.elapsed() < GUARD,
            "kamailio not listening:\n{}",
            trunk.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    trunk
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

/// As the SIP server: an OPTIONS request in plain TCP to `listen`; the
/// response head, or "" when the connection closed without one.
fn options(listen: SocketAddr, n: u32) -> String {
    let mut s = TcpStream::connect(listen).unwrap();
    s.set_read_timeout(Some(GUARD)).unwrap();
    let local = s.local_addr().unwrap();
    let request = format!(
        "OPTIONS sip:trunk.test SIP/2.0\r\n\
         Via: SIP/2.0/TLS {local};rport;branch=z9hG4bK-opt-{n}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:pbx@pbx.acme.test>;tag=t{n}\r\n\
         To: <sip:trunk.test>\r\n\
         Call-ID: options-{n}@pbx.acme.test\r\n\
         CSeq: {n} OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    );
    s.write_all(request.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => got.extend_from_slice(&buf[..k]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("read from the tls-connect listener: {e} (hang guard)"),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// SIPp's OPTIONS scenario: the 200 OK must name the client certificate's
/// CN (`check_it`: a mismatch fails the call, and SIPp exits non-zero).
const SIPP_OPTIONS: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="options through --tls-connect">
  <send>
    <![CDATA[
OPTIONS sip:trunk.test SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];rport;branch=[branch]
Max-Forwards: 70
From: <sip:pbx@pbx.acme.test>;tag=[pid]SIPpTag[call_number]
To: <sip:trunk.test>
Call-ID: [call_id]
CSeq: 1 OPTIONS
Content-Length: 0

    ]]>
  </send>
  <recv response="200">
    <action>
      <ereg regexp="CN_PATTERN" search_in="hdr" header="X-Peer-CN:" check_it="true" assign_to="cn"/>
    </action>
  </recv>
  <Reference variables="cn"/>
</scenario>
"#;

/// SIPp on the PATH, or why not.
fn sipp_missing() -> Option<&'static str> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path).any(|d| d.join("sipp").is_file());
    (!found).then_some("sipp missing (apt-get install sip-tester)")
}

/// SIPp as the SIP server: one OPTIONS call over plain TCP to `listen`,
/// its 200 OK required to carry `cn` in X-Peer-CN; SIPp's exit status (0:
/// the call succeeded) and what it printed, with its error trace.
fn sipp_options(pbx: &Pbx, listen: SocketAddr, cn: &str) -> (i32, String) {
    let dir = pbx.files.join("sipp");
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = dir.join("options.xml");
    let pattern = cn.replace('.', "\\.");
    std::fs::write(&scenario, SIPP_OPTIONS.replace("CN_PATTERN", &pattern)).unwrap();
    let mut cmd = Command::new("sipp");
    cmd.current_dir(&dir)
        .arg("-sf")
        .arg(&scenario)
        .args(["-t", "t1", "-m", "1", "-i", "127.0.0.1", "-timeout", "30s"])
        .args(["-timeout_error", "-trace_err", "-nostdin"])
        .args(["-cid_str", "sipp-%u-%p@%s"])
        .arg(listen.to_string());
    let out = run_command(cmd, None);
    let mut text = format!("{}\n{}", out.stdout, out.stderr);
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        if entry.file_name().to_string_lossy().ends_with("_errors.log") {
            text += &std::fs::read_to_string(entry.path()).unwrap_or_default();
        }
    }
    (out.status, text)
}

/// The next log line containing `what` (hang guard `GUARD`).
fn wait_log(daemon: &serve::Daemon, what: &str) -> String {
    loop {
        match daemon.log.recv_timeout(GUARD) {
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
fn kamailio_trunk_requiring_a_client_cert_verified_against_the_root_ca_list() {
    if !skip::require("Kamailio with tls module", kamailio_missing().as_deref()) {
        return;
    }
    let pbx = Pbx::new();
    let ca = pbx.ok(&["ca", "init"])["pem"].as_str().unwrap().to_owned();
    pbx.tenant_add("acme", &["pbx.acme.test"]);
    let client = pbx.ok(&["ca", "issue", "--tenant", "acme", "--client"]);
    let client_id = client["id"].as_str().unwrap().to_owned();
    // The trunk's own PKI; its root goes into the Root CA list.
    let root = root("kamailio trunk root");
    let mut b = leaf(&["trunk.test"]);
    b.params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = b.signed_by(&root);
    let trunk = kamailio(&pbx, &cert, &ca);
    let root_file = pbx.file("trunk-root.pem", root.pem());
    pbx.ok(&["import", "--cert", &root_file, "--kind", "root"]);

    let with_cert = format!(
        "127.0.0.1:0={},sni=trunk.test,client-cert={client_id}",
        trunk.addr
    );
    let without = format!("127.0.0.1:0={},sni=trunk.test", trunk.addr);
    let daemon = pbx
        .daemon()
        .args(&["--tls-connect", &with_cert, "--tls-connect", &without])
        .start();
    let listeners = connect_addrs(&daemon);

    // Verified both ways: the trunk answers and names our client cert.
    let reply = options(listeners[0], 1);
    assert!(
        reply.starts_with("SIP/2.0 200 OK\r\n"),
        "{reply}\n{}",
        trunk.log()
    );
    assert!(reply.contains("X-Peer-CN: pbx.acme.test\r\n"), "{reply}");
    assert!(reply.contains("CSeq: 1 OPTIONS\r\n"), "{reply}");
    let line = wait_log(&daemon, "verified against the Root CA list");
    assert!(
        line.contains(&format!("client certificate {client_id}")),
        "{line}"
    );
    // SIPp, a SIP client of its own, gets the same answer (and fails on a
    // CN the trunk did not see: the check can fail).
    if skip::require("SIPp", sipp_missing()) {
        let (status, text) = sipp_options(&pbx, listeners[0], "pbx.acme.test");
        assert_eq!(
            status,
            0,
            "SIPp's OPTIONS call failed:\n{text}\n{}",
            trunk.log()
        );
        assert!(trunk.log().contains("ci=sipp-"), "{}", trunk.log());
        let (status, text) = sipp_options(&pbx, listeners[0], "other.acme.test");
        assert_ne!(status, 0, "SIPp must fail on another CN:\n{text}");
    }

    // Without a client certificate the trunk refuses the connection.
    assert_eq!(options(listeners[1], 2), "", "{}", trunk.log());
    let line = wait_log(&daemon, "closed by the trunk");
    assert!(line.contains("(name trunk.test)"), "{line}");

    // The trunk's root deleted: the next connection is refused by us.
    let root_id = root.id();
    let (code, _, err) = daemon.cli(&["roots", "delete", &root_id]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(options(listeners[0], 3), "");
    let line = wait_log(&daemon, "not connected");
    assert!(line.contains("UnknownIssuer"), "{line}");
    // The trunk never saw that request.
    assert!(!trunk.log().contains("options-3@"), "{}", trunk.log());
}
