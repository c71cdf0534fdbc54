//! STIR/SHAKEN against independent implementations (issue 15), natively
//! only (peer-heavy; `scripts/test-qemu.sh` leaves this binary out by its
//! explicit list, README "What runs where"):
//!
//! - Debian's `secsipidx` (Go, libsecsipid 1.2) verifies the Identity
//!   headers pbx-certd signs, fetching the x5u from the running daemon over
//!   HTTPS (Go trusts the test root through `SSL_CERT_FILE`) and checking
//!   the chain against the test root and intermediate (`-cert-verify 13`:
//!   validity times, `-ca-file`, `-ca-inter`); and it signs headers with the
//!   tenant's key that pbx-certd verifies;
//! - PyJWT + cryptography (PyPI) decode and check our JWS as ES256 with the
//!   certificate's public key, and sign a PASSporT pbx-certd verifies;
//! - Kamailio with Debian's kamailio-secsipid-modules answers an INVITE
//!   carrying our Identity header 200 when `secsipid_check_identity("")`
//!   (the x5u fetched from the daemon over HTTPS, the chain checked as
//!   above) accepts it, and 438 for a tampered one.
//!
//! A missing peer skips through `common::skip::require` (recorded; a
//! failure with `PBX_CERTD_REQUIRE_PEERS=1`, as in CI).

mod common;

use std::process::Command;

use common::sti::{jws_part, Sti, DEST};
use common::*;
use serde_json::{json, Value};

const CANON_ORIG: &str = "12025550100";

/// Whether `secsipidx` is there (skipped out loud when not).
fn have_secsipidx() -> bool {
    let found = Command::new("secsipidx").arg("-version").output().is_ok();
    skip::require(
        "secsipidx (apt: secsipidx)",
        (!found).then_some("secsipidx is not installed"),
    )
}

/// Whether python3 has PyJWT and cryptography.
fn have_pyjwt() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import jwt, cryptography"])
        .output()
        .is_ok_and(|o| o.status.success());
    skip::require(
        "PyJWT + cryptography (pip)",
        (!ok).then_some("python3 cannot import jwt and cryptography"),
    )
}

/// `secsipidx ARGS` with the test root trusted for HTTPS.
fn secsipidx(sti: &Sti, args: &[&str]) -> Out {
    let mut cmd = Command::new("secsipidx");
    cmd.env("SSL_CERT_FILE", &sti.root_file).args(args);
    run_command(cmd, None)
}

/// `secsipidx` as its HTTP verification service (its CLI checks only with
/// a given public key; the service fetches the x5u, as Kamailio's secsipid
/// module does through the same library), killed on drop.
struct Checker {
    child: std::process::Child,
    port: u16,
}

impl Drop for Checker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Checker {
    /// Start it on a free loopback port (it cannot report one it chose:
    /// the port is taken from the OS and handed over, retried on a clash).
    fn start(sti: &Sti, ca_file: &str) -> Checker {
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let child = Command::new("secsipidx")
                .env("SSL_CERT_FILE", &sti.root_file)
                .args([
                    "-http-srv",
                    &format!("127.0.0.1:{port}"),
                    "-expire",
                    "60",
                    "-timeout",
                    "10",
                    "-cert-verify",
                    "13",
                    "-ca-file",
                    ca_file,
                    "-ca-inter",
                    &sti.inter_file,
                ])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("start secsipidx");
            let mut checker = Checker { child, port };
            // Hang guard: wait until it listens (or has exited).
            let guard = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while std::time::Instant::now() < guard {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return checker;
                }
                if checker.child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            let _ = checker.child.kill();
        }
        panic!("secsipidx did not start listening");
    }

    /// `POST /v1/check` with the Identity header: its status and answer.
    fn check(&self, identity: &str) -> (String, String) {
        let mut cmd = Command::new("curl");
        cmd.args([
            "-s",
            "-w",
            "\n%{http_code}",
            "--data-binary",
            identity,
            &format!("http://127.0.0.1:{}/v1/check", self.port),
        ]);
        let out = run_command(cmd, None);
        out.success();
        let (body, code) = out.stdout.rsplit_once('\n').unwrap();
        (code.to_owned(), body.to_owned())
    }
}

#[test]
fn secsipidx_verifies_what_we_sign() {
    if !have_secsipidx() {
        return;
    }
    let sti = Sti::start();
    let identity = sti.sign(&[])["identity"].as_str().unwrap().to_owned();
    let checker = Checker::start(&sti, &sti.root_file);
    let ok = checker.check(&identity);
    assert_eq!(ok.0, "200", "{ok:?}");

    // Not vacuous: the same header with its payload changed fails there too.
    let mut parts: Vec<String> = identity.split('.').map(str::to_owned).collect();
    let mut p = jws_part(&identity, 1);
    p["attest"] = json!("C");
    parts[1] = <base64ct::Base64UrlUnpadded as base64ct::Encoding>::encode_string(
        p.to_string().as_bytes(),
    );
    let tampered = checker.check(&parts.join("."));
    assert_ne!(tampered.0, "200", "{tampered:?}");
    // ... and so does the untouched one where the fetched chain is not
    // trusted (another root as its CA file): the x5u chain was checked.
    let other = sti.pbx.file("other-root.pem", Pki::new().root.pem());
    let distrusting = Checker::start(&sti, &other);
    let refused = distrusting.check(&identity);
    assert_ne!(refused.0, "200", "{refused:?}");
}

#[test]
fn we_verify_what_secsipidx_signs() {
    if !have_secsipidx() {
        return;
    }
    let sti = Sti::start();
    let key = sti.pbx.file("key.pem", sti.cert.key_pem());
    let out = secsipidx(
        &sti,
        &[
            "-sign-full",
            "-orig-tn",
            CANON_ORIG,
            "-dest-tn",
            DEST,
            "-attest",
            "B",
            "-x5u",
            &sti.x5u(),
            "-k",
            &key,
        ],
    );
    out.success();
    let identity = out.stdout.trim();
    assert!(identity.contains(";info=<"), "{}", out.describe());
    let verdict = sti.verify(identity, CANON_ORIG, DEST, &[]);
    assert_eq!(verdict["verstat"], "TN-Validation-Passed", "{verdict}");
    assert_eq!(verdict["attest"], "B");
    // And refused for another caller.
    let other = sti.verify(identity, "12025550111", DEST, &[]);
    assert_eq!(other["error"]["code"], "orig-mismatch", "{other}");
}

/// Runs a Python script with `ARGV`; stdout as JSON.
fn python(script: &str, args: &[&str]) -> Value {
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(script).args(args);
    let out = run_command(cmd, None);
    out.success();
    out.json()
}

const PYJWT_DECODE: &str = r#"
import json, sys, jwt
from cryptography.x509 import load_pem_x509_certificate
token, pem = sys.argv[1], open(sys.argv[2], 'rb').read()
key = load_pem_x509_certificate(pem).public_key()
payload = jwt.decode(token, key=key, algorithms=["ES256"])
print(json.dumps({"header": jwt.get_unverified_header(token), "payload": payload}))
"#;

const PYJWT_ENCODE: &str = r#"
import json, sys, jwt
from cryptography.hazmat.primitives.serialization import load_pem_private_key
key = load_pem_private_key(open(sys.argv[1], 'rb').read(), password=None)
header = {"ppt": "shaken", "typ": "passport", "x5u": sys.argv[2]}
payload = json.loads(sys.argv[3])
token = jwt.encode(payload, key, algorithm="ES256", headers=header)
print(json.dumps({"token": token}))
"#;

#[test]
fn pyjwt_checks_our_jws_and_signs_one_we_verify() {
    if !have_pyjwt() {
        return;
    }
    let sti = Sti::start();
    let signed = sti.sign(&[]);
    let identity = signed["identity"].as_str().unwrap();
    let token = identity.split(';').next().unwrap();
    let cert = sti.pbx.file("cert.pem", sti.cert.pem());
    let decoded = python(PYJWT_DECODE, &[token, &cert]);
    assert_eq!(
        decoded["header"],
        json!({"alg": "ES256", "ppt": "shaken", "typ": "passport", "x5u": sti.x5u()})
    );
    let payload: Value = serde_json::from_str(signed["payload"].as_str().unwrap()).unwrap();
    assert_eq!(decoded["payload"], payload);

    // PyJWT signs with the tenant's key; pbx-certd verifies.
    let key = sti.pbx.file("key.pem", sti.cert.key_pem());
    let claims = json!({
        "attest": "A", "dest": {"tn": [DEST]}, "iat": now(),
        "orig": {"tn": CANON_ORIG}, "origid": "123e4567-e89b-42d3-a456-426614174000",
    });
    let made = python(PYJWT_ENCODE, &[&key, &sti.x5u(), &claims.to_string()]);
    let header = format!(
        "{};info=<{}>;alg=ES256;ppt=shaken",
        made["token"].as_str().unwrap(),
        sti.x5u()
    );
    let verdict = sti.verify(&header, CANON_ORIG, DEST, &[]);
    assert_eq!(verdict["verstat"], "TN-Validation-Passed", "{verdict}");
}

/// Kamailio's modules directory holding `secsipid.so`, if installed.
fn kamailio_secsipid() -> Option<std::path::PathBuf> {
    let found = std::fs::read_dir("/usr/lib")
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path().join("kamailio/modules"))
        .chain([std::path::PathBuf::from("/usr/lib/kamailio/modules")])
        .find(|dir| dir.join("secsipid.so").exists());
    let kamailio = Command::new("kamailio").arg("-v").output().is_ok();
    if !skip::require(
        "Kamailio with kamailio-secsipid-modules (apt)",
        match (kamailio, &found) {
            (false, _) => Some("kamailio is not installed"),
            (true, None) => Some("kamailio-secsipid-modules is not installed"),
            _ => None,
        },
    ) {
        return None;
    }
    found
}

/// A Kamailio whose request route answers an INVITE 200 when
/// `secsipid_check_identity("")` (the x5u fetched over HTTPS) accepts its
/// Identity header, else 438; killed on drop.
struct Kamailio {
    child: std::process::Child,
    port: u16,
    socket: std::net::UdpSocket,
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        common::kamailio::stop(&mut self.child);
    }
}

impl Kamailio {
    fn start(sti: &Sti, modules: &std::path::Path) -> Kamailio {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(std::time::Duration::from_millis(500)))
            .unwrap();
        let run = sti.pbx.tmp.path().join("kamailio");
        std::fs::create_dir_all(&run).unwrap();
        for _ in 0..5 {
            // Kamailio cannot report a port it chose: one is taken from the
            // OS and handed over, retried on a clash.
            let port = std::net::UdpSocket::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let cfg = format!(
                r#"#!KAMAILIO
debug=2
log_stderror=yes
children=1
disable_tcp=yes
listen=udp:127.0.0.1:{port}
mpath="{modules}/"
loadmodule "sl.so"
loadmodule "textops.so"
loadmodule "secsipid.so"
modparam("secsipid", "expire", 60)
modparam("secsipid", "timeout", 10)
modparam("secsipid", "libopt", "CertVerify=13")
modparam("secsipid", "libopt", "CertCAFile={root}")
modparam("secsipid", "libopt", "CertCAInter={inter}")
request_route {{
    if (!is_method("INVITE")) {{ sl_send_reply("405", "Method Not Allowed"); exit; }}
    if (secsipid_check_identity("")) {{ sl_send_reply("200", "Identity Verified"); exit; }}
    sl_send_reply("438", "Invalid Identity Header");
    exit;
}}
"#,
                modules = modules.display(),
                root = sti.root_file,
                inter = sti.inter_file,
            );
            let cfg_file = sti.pbx.file("kamailio.cfg", cfg);
            let child = Command::new("kamailio")
                .env("SSL_CERT_FILE", &sti.root_file)
                .args(["-f", &cfg_file, "-DD", "-E", "-Y"])
                .arg(&run)
                .arg("-w")
                .arg(&run)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("start kamailio");
            let mut k = Kamailio {
                child,
                port,
                socket: socket.try_clone().unwrap(),
            };
            // Hang guard: until it answers an OPTIONS (or has exited).
            let guard = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while std::time::Instant::now() < guard {
                if k.child.try_wait().ok().flatten().is_some() {
                    break;
                }
                if k.request("OPTIONS", None).is_some() {
                    return k;
                }
            }
            common::kamailio::stop(&mut k.child);
        }
        panic!("kamailio did not start answering");
    }

    /// Send one request; the status line of the answer (None: no answer
    /// within the socket's read timeout).
    fn request(&self, method: &str, identity: Option<&str>) -> Option<String> {
        let local = self.socket.local_addr().unwrap();
        let branch = format!("z9hG4bK{}", tag());
        let mut msg = format!(
            "{method} sip:{DEST}@127.0.0.1:{port} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch={branch}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:{CANON_ORIG}@127.0.0.1>;tag={t}\r\n\
             To: <sip:{DEST}@127.0.0.1>\r\n\
             Call-ID: {t}@127.0.0.1\r\n\
             CSeq: 1 {method}\r\n",
            port = self.port,
            t = tag(),
        );
        if let Some(identity) = identity {
            msg += &format!("Identity: {identity}\r\n");
        }
        msg += "Content-Length: 0\r\n\r\n";
        self.socket
            .send_to(msg.as_bytes(), ("127.0.0.1", self.port))
            .ok()?;
        let mut buf = [0u8; 4096];
        loop {
            let (n, _) = self.socket.recv_from(&mut buf).ok()?;
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            // Skip answers to earlier requests (and provisional ones).
            if text.contains(&branch) && !text.starts_with("SIP/2.0 1") {
                return text.lines().next().map(str::to_owned);
            }
        }
    }

    /// An INVITE with this Identity header: the final answer's status line.
    fn invite(&self, identity: &str) -> String {
        // Hang guard: the answer comes once the x5u is fetched.
        for _ in 0..60 {
            if let Some(status) = self.request("INVITE", Some(identity)) {
                return status;
            }
        }
        panic!("no answer from kamailio to the INVITE");
    }
}

#[test]
fn kamailio_secsipid_verifies_an_invite_carrying_our_identity() {
    let Some(modules) = kamailio_secsipid() else {
        return;
    };
    let sti = Sti::start();
    let identity = sti.sign(&[])["identity"].as_str().unwrap().to_owned();
    let kamailio = Kamailio::start(&sti, &modules);
    assert_eq!(kamailio.invite(&identity), "SIP/2.0 200 Identity Verified");
    // Not vacuous: a tampered payload is refused there.
    let mut parts: Vec<String> = identity.split('.').map(str::to_owned).collect();
    let mut p = jws_part(&identity, 1);
    p["attest"] = json!("C");
    parts[1] = <base64ct::Base64UrlUnpadded as base64ct::Encoding>::encode_string(
        p.to_string().as_bytes(),
    );
    assert_eq!(
        kamailio.invite(&parts.join(".")),
        "SIP/2.0 438 Invalid Identity Header"
    );
}
