//! Issue 12, the client's address to the PBX, with the real peer: Debian's
//! Kamailio as a registrar behind `--tls-forward L=127.0.0.1:PORT,proxy=v2`
//! (and `proxy=v1`) (`tcp_accept_haproxy=yes`, tests/sip/kamailio.cfg.in).
//! A SIP client
//! (rustls, bound to 127.0.0.2 so its address differs from pbx-certd's
//! 127.0.0.1) registers over TLS through the forward; Kamailio must see the
//! client's address and port as the source: in its own log (`$si:$sp`) and
//! in the Via `received`/`rport` of the 200 OK it sends back. The control
//! test shows the same registration without `proxy=v2`: Kamailio sees
//! 127.0.0.1, pbx-certd's address, so the assertion of the first test can
//! fail.
//!
//! Native only (scripts/test-qemu.sh leaves this binary out, README "What
//! runs where"): Kamailio is an x86-64 Debian package; the forward's own
//! header is also tested under emulation by tests/forward_front.rs.
//! The Kamailio harness is tests/common/kamailio.rs.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::accept_any::{client_config, AcceptAny};
use common::kamailio::{kamailio_bin, Kamailio};
use common::*;
use rustls::pki_types::ServerName;

/// Hang guard of every wait and read (a hang is a failure).
const GUARD: Duration = Duration::from_secs(60);

/// The client's address: another loopback address than pbx-certd's.
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// The SIP domain Kamailio serves and pbx-certd has a certificate for.
const DOMAIN: &str = "sip.acme.test";

/// A REGISTER over TLS from `CLIENT_IP` to `fwd` (SNI `DOMAIN`): the
/// client's own address and Kamailio's reply (headers).
fn register(fwd: SocketAddr) -> (SocketAddr, String) {
    use rustix::net::{bind, connect, socket, AddressFamily, SocketType};
    let SocketAddr::V4(dst) = fwd else {
        panic!("IPv4 only")
    };
    let fd = socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
    bind(&fd, &SocketAddrV4::new(CLIENT_IP, 0)).unwrap();
    connect(&fd, &dst).unwrap();
    let tcp = TcpStream::from(fd);
    tcp.set_read_timeout(Some(GUARD)).unwrap();
    let me = tcp.local_addr().unwrap();
    let config = Arc::new(client_config(AcceptAny::new(), &[]));
    let conn =
        rustls::ClientConnection::new(config, ServerName::try_from(DOMAIN).unwrap()).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    // The Via names a host the registrar cannot have seen, with `rport`
    // (RFC 3581): the reply's Via says where the request really came from.
    let request = format!(
        "REGISTER sip:{DOMAIN} SIP/2.0\r\n\
         Via: SIP/2.0/TLS 192.0.2.10:5061;branch=z9hG4bK-front-{port};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@{DOMAIN}>;tag=front{port}\r\n\
         To: <sip:alice@{DOMAIN}>\r\n\
         Call-ID: front-{port}@192.0.2.10\r\n\
         CSeq: 1 REGISTER\r\n\
         Contact: <sip:alice@192.0.2.10:5061;transport=tls>\r\n\
         Expires: 60\r\n\
         Content-Length: 0\r\n\r\n",
        port = me.port()
    );
    tls.write_all(request.as_bytes()).unwrap();
    tls.flush().unwrap();
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    while !reply.windows(4).any(|w| w == b"\r\n\r\n") {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => reply.extend_from_slice(&buf[..n]),
            Err(e) => panic!("reading the reply: {e}; so far: {reply:?}"),
        }
    }
    (me, String::from_utf8_lossy(&reply).into_owned())
}

/// A registration through a forward with `options` (empty: none); Kamailio
/// and the daemon are stopped on return. The client's address, the reply's
/// Via and Kamailio's REGISTERED line.
fn registration(options: &str) -> Option<(SocketAddr, String, String)> {
    let bin = kamailio_bin();
    if !skip::require("kamailio", bin.as_ref().err().map(String::as_str)) {
        return None;
    }
    let kamailio = Kamailio::start(&bin.unwrap(), &[]);
    let pbx = Pbx::new();
    let pki = Pki::new();
    pbx.import_ok(pki.root.pem(), None, &[]);
    pki.import(&pbx, &pki.leaf(leaf(&[DOMAIN])), &[]);
    let serve = if options.is_empty() {
        pbx.daemon().forward(kamailio.addr)
    } else {
        pbx.daemon().forward_with(kamailio.addr, options)
    };
    let daemon = serve.start();
    let (me, reply) = register(daemon.forward.unwrap());
    assert!(
        reply.starts_with("SIP/2.0 200"),
        "Kamailio did not accept the REGISTER:\n{reply}\n--- kamailio log:\n{}",
        kamailio.log_text()
    );
    let via = reply
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("via:"))
        .unwrap_or_else(|| panic!("no Via in the reply:\n{reply}"))
        .to_owned();
    Some((me, via, kamailio.registered_line()))
}

/// Kamailio's version as (major, minor, patch), from `kamailio -v`.
fn kamailio_version(bin: &Path) -> (u32, u32, u32) {
    let out = Command::new(bin).arg("-v").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let v = text
        .split_whitespace()
        .skip_while(|w| *w != "kamailio")
        .nth(1)
        .unwrap_or_else(|| panic!("no version in `kamailio -v`: {text}"));
    let n: Vec<u32> = v.split('.').map(|p| p.parse().unwrap()).collect();
    (n[0], n[1], n[2])
}

/// The port Kamailio shows for a client on `port` through a v2 header:
/// before 5.7.4 its v2 parser takes the port bytes in host order
/// (kamailio GH #3683, fixed by commit c5237830f3 "core: fixed haproxy
/// protocol parser"; Debian 12 ships 5.6.3), so it shows the bytes swapped.
fn port_as_kamailio_reads_v2(port: u16) -> u16 {
    let bin = kamailio_bin().unwrap();
    if kamailio_version(&bin) < (5, 7, 4) {
        port.swap_bytes()
    } else {
        port
    }
}

/// `proxy=v1`: Kamailio's source is the client's address and port, exactly.
#[test]
fn kamailio_sees_the_client_address_through_proxy_v1() {
    let Some((me, via, line)) = registration("proxy=v1") else {
        return;
    };
    let src = format!("src=tcp:{}:{}", me.ip(), me.port());
    assert!(
        line.contains(&src),
        "Kamailio must see the client {me} as the source, not pbx-certd:\n{line}"
    );
    assert!(
        via.contains(&format!("received={}", me.ip()))
            && via.contains(&format!("rport={}", me.port())),
        "the 200 OK's Via must carry the client's address and port {me}:\n{via}"
    );
}

/// `proxy=v2`: Kamailio's source is the client's address, and its port as
/// this Kamailio's v2 parser reads it (see `port_as_kamailio_reads_v2`).
#[test]
fn kamailio_sees_the_client_address_through_proxy_v2() {
    let Some((me, via, line)) = registration("proxy=v2") else {
        return;
    };
    let port = port_as_kamailio_reads_v2(me.port());
    let src = format!("src=tcp:{}:{port}", me.ip());
    assert!(
        line.contains(&src),
        "Kamailio must see the client {me} (port read as {port}) as the source, not pbx-certd:\n{line}"
    );
    assert!(
        via.contains(&format!("received={}", me.ip())) && via.contains(&format!("rport={port}")),
        "the 200 OK's Via must carry the client's address and port {me} (read as {port}):\n{via}"
    );
}

/// The control: without `proxy=v2` Kamailio sees pbx-certd (127.0.0.1,
/// another port), which is what the test above would see if the header
/// were missing or wrong.
#[test]
fn without_proxy_v2_kamailio_sees_pbx_certd() {
    let Some((me, via, line)) = registration("") else {
        return;
    };
    assert!(line.contains("src=tcp:127.0.0.1:"), "{line}");
    assert!(
        !line.contains(&format!("{}:{}", me.ip(), me.port())),
        "{line}"
    );
    assert!(via.contains("received=127.0.0.1"), "{via}");
}

/// baresip (Debian `baresip-core`), a real SIP phone, registering over TLS
/// through a `proxy=v1` forward to the Kamailio registrar: baresip sends
/// no SNI (the phones of issue 12's report), so it gets the default
/// certificate (baresip runs with `sip_verify_server yes` and the root it
/// was given), Kamailio registers it with baresip's own address and port
/// as the source (the PROXY header), and `handshakes` shows that no-SNI
/// handshake with the default certificate.
#[test]
fn baresip_registers_through_the_forward_without_sni() {
    let bin = kamailio_bin();
    if !skip::require("kamailio", bin.as_ref().err().map(String::as_str)) {
        return;
    }
    let baresip = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("baresip"))
        .find(|p| p.is_file());
    if !skip::require(
        "baresip",
        baresip
            .is_none()
            .then_some("baresip missing (apt-get install baresip-core)"),
    ) {
        return;
    }
    let kamailio = Kamailio::start(&bin.unwrap(), &[]);
    let pbx = Pbx::new();
    let pki = Pki::new();
    pbx.import_ok(pki.root.pem(), None, &[]);
    let id = pki.import(&pbx, &pki.leaf(leaf(&[DOMAIN])), &[])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    pbx.ok_true(&["system", "set", "--default-cert", &id]);
    let daemon = pbx.daemon().forward_with(kamailio.addr, "proxy=v1").start();
    let fwd = daemon.forward.unwrap();

    let conf = pbx.files.join("baresip");
    std::fs::create_dir_all(&conf).unwrap();
    let ca = pbx.file("baresip-ca.pem", pki.root.pem());
    std::fs::write(
        conf.join("config"),
        format!(
            "sip_listen\t{CLIENT_IP}:0\nsip_cafile\t{ca}\nsip_verify_server\tyes\n\
             module_path\t/usr/lib/baresip/modules\nmodule\tg711.so\n\
             module_app\taccount.so\nmodule_app\tmenu.so\n"
        ),
    )
    .unwrap();
    std::fs::write(
        conf.join("accounts"),
        format!(
            "<sip:alice@{DOMAIN};transport=tls>;outbound=\"sip:{fwd};transport=tls\";\
             regint=60;auth_pass=none\n"
        ),
    )
    .unwrap();
    std::fs::write(conf.join("contacts"), "").unwrap();
    let out = run_command(
        {
            let mut c = Command::new(baresip.unwrap());
            c.arg("-f").arg(&conf).args(["-t", "5"]);
            c
        },
        None,
    );
    let text = format!("{}\n{}", out.stdout, out.stderr);
    assert!(text.contains("200 OK"), "baresip saw no 200 OK:\n{text}");
    let line = kamailio.registered_line();
    let v: serde_json::Value = serde_json::from_str(
        &daemon
            .cli(&["handshakes", "--listener", "forward", "--json"])
            .1,
    )
    .unwrap();
    let phone = v[0]["recent"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["sni_kind"] == "none" && r["rule"] != "failed")
        .unwrap_or_else(|| panic!("no no-SNI handshake recorded: {v}"))
        .clone();
    assert_eq!(phone["rule"], "default", "{phone}");
    assert_eq!(phone["cert"], id.as_str(), "{phone}");
    // The PROXY v1 header gave Kamailio the phone's own address and port
    // (without it: pbx-certd's outgoing port).
    let peer = phone["peer"].as_str().unwrap();
    assert!(
        line.contains(&format!("src=tcp:{peer}")),
        "Kamailio must see baresip's address {peer}:\n{line}\n--- baresip:\n{text}"
    );
}
