//! Alerts (issue 11) against real peers, through the running daemon with
//! default settings: Python `aiosmtpd` (PyPI; installed by `.ci/run`) as the
//! SMTP submission server with STARTTLS and AUTH, and an HTTPS receiver here
//! that verifies the webhook's HMAC-SHA256 signature. Both present a
//! certificate from a CA made by the test and imported into pbx-certd's Root
//! CA list (the only trust the daemon has).
//!
//! What is shown: `alert test` reports each channel's outcome (one sent, one
//! failed); an uploaded certificate 5 days from expiry gives one mail and
//! one webhook (the 7-day threshold, not 30 or 14); a webhook answering 503
//! is retried (back-off) until accepted; a daemon restart sends nothing
//! again. Waits are bounded (hang guards), never timed assertions.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{ca, leaf, Issued, Pbx};
use serde_json::Value;

/// Longest wait for a mail or webhook that must come (a hang guard; the
/// first retry of a failed channel is 2 s after the failure).
const WAIT: Duration = Duration::from_secs(60);

const PASSWORD: &str = "correct horse battery";

const SMTP_SERVER: &str = r#"
import os, ssl, sys, time
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

cert, key, port, maildir, user, password, mode = sys.argv[1:8]
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)

class Handler:
    n = 0
    async def handle_DATA(self, server, session, envelope):
        Handler.n += 1
        tmp = os.path.join(maildir, "tmp-%d" % Handler.n)
        with open(tmp, "wb") as f:
            f.write(("X-Rcpt: %s\r\nX-Mail-From: %s\r\nX-Tls: %s\r\nX-Auth: %s\r\n" % (
                ",".join(envelope.rcpt_tos), envelope.mail_from,
                session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None,
                session.authenticated)).encode())
            f.write(envelope.original_content or envelope.content)
        os.rename(tmp, os.path.join(maildir, "mail-%d.eml" % Handler.n))
        return "250 OK"

def auth(server, session, envelope, mechanism, data):
    return AuthResult(success=(data.login == user.encode() and data.password == password.encode()))

if mode == "implicit":
    # aiosmtpd does not count implicit TLS as TLS for `auth_require_tls`
    # (it hides AUTH then); the connection is TLS from its first byte.
    c = Controller(Handler(), hostname="127.0.0.1", port=int(port), ssl_context=ctx,
                   authenticator=auth, auth_require_tls=False)
else:
    c = Controller(Handler(), hostname="127.0.0.1", port=int(port), tls_context=ctx,
                   require_starttls=True, authenticator=auth, auth_require_tls=True)
c.start()
print("READY", flush=True)
while True:
    time.sleep(3600)
"#;

/// The aiosmtpd server, killed when dropped.
struct Smtp {
    child: Child,
    port: u16,
    maildir: PathBuf,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Smtp {
    /// `mode`: `starttls` or `implicit`.
    fn start(dir: &Path, mode: &str, cert: &str, key: &str, user: &str, password: &str) -> Smtp {
        let maildir = dir.join("mail");
        std::fs::create_dir_all(&maildir).unwrap();
        let (cert_path, key_path) = (dir.join("smtp-cert.pem"), dir.join("smtp-key.pem"));
        std::fs::write(&cert_path, cert).unwrap();
        std::fs::write(&key_path, key).unwrap();
        let port = free_port();
        let mut child = Command::new("python3")
            .args(["-W", "ignore", "-c"])
            .arg(SMTP_SERVER)
            .arg(&cert_path)
            .arg(&key_path)
            .arg(port.to_string())
            .arg(&maildir)
            .args([user, password, mode])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(
            line.trim(),
            "READY",
            "aiosmtpd did not start: install it with `python3 -m pip install aiosmtpd` (.ci/run does)"
        );
        Smtp {
            child,
            port,
            maildir,
        }
    }

    /// The mails received so far, in order.
    fn mails(&self) -> Vec<String> {
        let mut names: Vec<(usize, PathBuf)> = std::fs::read_dir(&self.maildir)
            .unwrap()
            .filter_map(|e| {
                let p = e.ok()?.path();
                let n = p
                    .file_name()?
                    .to_str()?
                    .strip_prefix("mail-")?
                    .strip_suffix(".eml")?
                    .parse()
                    .ok()?;
                Some((n, p))
            })
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|(_, p)| std::fs::read_to_string(p).unwrap())
            .collect()
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One webhook request as received.
#[derive(Debug, Clone)]
struct Hook {
    signature_ok: bool,
    status: u16,
    body: Value,
}

/// An HTTPS webhook receiver verifying `X-Pbx-Certd-Signature`; answers
/// 503 while `fail` is above zero (counting it down), else 200 (or 401 for
/// a bad signature).
struct Receiver {
    port: u16,
    hooks: Arc<Mutex<Vec<Hook>>>,
    fail: Arc<AtomicUsize>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Receiver {
    fn start(cert: &Issued, ca: &Issued, secret: &str) -> Receiver {
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.cert.der().clone(), ca.cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key.serialize_der().into()),
            )
            .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hooks = Arc::new(Mutex::new(Vec::new()));
        let fail = Arc::new(AtomicUsize::new(0));
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
        let (h, f) = (hooks.clone(), fail.clone());
        std::thread::spawn(move || {
            for tcp in listener.incoming() {
                let Ok(tcp) = tcp else { continue };
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
                let conn = rustls::ServerConnection::new(config.clone()).unwrap();
                let mut reader = BufReader::new(rustls::StreamOwned::new(conn, tcp));
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() || !line.starts_with("POST /hook ") {
                    continue;
                }
                let (mut sig, mut len) = (String::new(), 0usize);
                loop {
                    let mut l = String::new();
                    if reader.read_line(&mut l).unwrap_or(0) == 0 || l.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = l.split_once(':') {
                        match k.trim().to_ascii_lowercase().as_str() {
                            "x-pbx-certd-signature" => sig = v.trim().to_owned(),
                            "content-length" => len = v.trim().parse().unwrap_or(0),
                            _ => {}
                        }
                    }
                }
                let mut body = vec![0; len];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                let want = format!("sha256={}", hex(ring::hmac::sign(&key, &body).as_ref()));
                let signature_ok = sig == want;
                let status = if !signature_ok {
                    401
                } else if f
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
                {
                    503
                } else {
                    200
                };
                h.lock().unwrap().push(Hook {
                    signature_ok,
                    status,
                    body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                });
                let mut stream = reader.into_inner();
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = stream.flush();
                stream.conn.send_close_notify();
                let _ = stream.flush();
            }
        });
        Receiver { port, hooks, fail }
    }

    fn hooks(&self) -> Vec<Hook> {
        self.hooks.lock().unwrap().clone()
    }
}

/// Wait (bounded) until `done` holds; panics with `what` otherwise.
#[track_caller]
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < WAIT, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Wait (bounded) for a daemon log line containing `needle`.
#[track_caller]
fn wait_log(log: &std::sync::mpsc::Receiver<String>, needle: &str) {
    let start = Instant::now();
    loop {
        let line = log
            .recv_timeout(WAIT.saturating_sub(start.elapsed()))
            .unwrap_or_else(|_| panic!("no daemon log line with {needle:?}"));
        if line.contains(needle) {
            return;
        }
    }
}

fn stop(d: common::serve::Daemon) {
    d.stop();
}

/// Asserts that `mail` came over TLS with AUTH and contains each of `has`.
#[track_caller]
fn assert_mail(mail: &str, has: &[&str]) {
    for h in ["X-Tls: True", "X-Auth: True"].iter().chain(has) {
        assert!(mail.contains(h), "no {h:?} in:\n{mail}");
    }
}

/// The peers' CA (trusted by pbx-certd through its Root CA list only,
/// once imported), a 127.0.0.1 certificate from it, and aiosmtpd serving
/// that certificate in `mode` with one AUTH user.
fn peers(pbx: &Pbx, mode: &str, user: &str, password: &str) -> (Issued, Issued, Smtp) {
    let peers_ca = ca(&format!("Alert Peers CA {}", common::tag())).self_signed();
    let mut server = leaf(&["localhost"]);
    server.params.subject_alt_names = vec![rcgen::SanType::IpAddress([127, 0, 0, 1].into())];
    let server = server.signed_by(&peers_ca);
    let smtp = Smtp::start(
        &pbx.files,
        mode,
        &format!("{}{}", server.pem(), peers_ca.pem()),
        &server.key_pem(),
        user,
        password,
    );
    (peers_ca, server, smtp)
}

#[test]
fn an_expiring_upload_is_mailed_and_posted_once_retried_and_not_resent_after_restart() {
    let pbx = Pbx::new();
    let (peers_ca, server, smtp) = peers(&pbx, "starttls", "alice", "wonderland");
    let secret = "webhook-s3cret";
    let hook = Receiver::start(&server, &peers_ca, secret);

    pbx.import_ok(peers_ca.pem(), None, &["--kind", "root"]);
    pbx.run_stdin(&["admin", "password"], format!("{PASSWORD}\n").as_bytes())
        .success();
    pbx.ok(&["system", "set", "--admin-email", "admin@pbx.example"]);
    let server_arg = format!("127.0.0.1:{}", smtp.port);
    let url = format!("https://127.0.0.1:{}/hook", hook.port);
    let set = pbx.run_stdin(
        &[
            "alert",
            "set",
            "--smtp-server",
            &server_arg,
            "--smtp-tls",
            "starttls",
            "--smtp-user",
            "alice",
            "--smtp-password",
            "-",
            "--from",
            "pbx@pbx.example",
            "--webhook",
            &url,
            "--webhook-secret",
            secret,
            "--json",
        ],
        b"wonderland\n",
    );
    set.success();
    let shown = pbx.ok(&["alert", "show"]);
    assert_eq!(shown["smtp_password"], "********", "{shown}");
    assert_eq!(shown["webhook_secret"], "********", "{shown}");
    assert!(!shown.to_string().contains("wonderland") && !shown.to_string().contains(secret));

    // `alert test` (no daemon: the CLI sends): the mail goes through, the
    // webhook answers 503 once: each outcome is reported.
    hook.fail.store(1, Ordering::SeqCst);
    let test = pbx.ok(&["alert", "test"]);
    assert_eq!(test["email"]["ok"], true, "{test}");
    assert_eq!(test["webhook"]["ok"], false, "{test}");
    assert_eq!(test["webhook"]["code"], "webhook-status", "{test}");
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert_mail(
        &mails[0],
        &[
            "X-Rcpt: admin@pbx.example",
            "Subject: pbx-certd alert: test alert",
        ],
    );
    let hooks = hook.hooks();
    assert_eq!(hooks.len(), 1);
    assert!(hooks[0].signature_ok, "the webhook's HMAC does not verify");

    // The daemon with default settings; an uploaded certificate 5 days
    // from expiry; the webhook fails once more (retried with back-off).
    let mut daemon = pbx.serve(true);
    hook.fail.store(1, Ordering::SeqCst);
    let site = common::Pki::new();
    let cert = site.leaf(leaf(&["pbx.example"]).valid_days(-80, 5));
    site.import(&pbx, &cert, &["--kind", "server"]);
    wait_for("the expiry mail", || smtp.mails().len() == 2);
    wait_for("the webhook retry", || hook.hooks().len() == 3);
    let mails = smtp.mails();
    assert!(
        mails[1]
            .contains("Subject: pbx-certd alert: certificate expires within 7 days: pbx.example"),
        "{}",
        mails[1]
    );
    assert!(mails[1].contains(&cert.id()[..12]), "{}", mails[1]);
    let hooks = hook.hooks();
    assert_eq!(hooks[1].status, 503);
    assert_eq!(hooks[2].status, 200);
    for h in &hooks[1..] {
        assert!(h.signature_ok);
        assert_eq!(h.body["code"], "cert-expiring", "{:?}", h.body);
        assert_eq!(h.body["key"], format!("expiring:{}:7", cert.id()));
        assert_eq!(h.body["cert_id"], cert.id());
    }
    let open = pbx.ok(&["alerts"]);
    let open = open.as_array().unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    assert!(open[0]["email"]["sent"].is_string(), "{open:?}");
    assert!(open[0]["webhook"]["sent"].is_string(), "{open:?}");
    assert_eq!(open[0]["webhook"]["failures"], 1, "{open:?}");
    // The same list over the JSON API.
    let api = api_alerts(&pbx, daemon.https);
    assert_eq!(api[0]["key"], open[0]["key"], "{api}");

    // A restart: the first evaluation finds the alert sent already.
    let log = std::mem::replace(&mut daemon.log, std::sync::mpsc::channel().1);
    drop(log);
    stop(daemon);
    let daemon = pbx.serve(true);
    wait_log(&daemon.log, "alerts: first evaluation done");
    assert_eq!(smtp.mails().len(), 2, "a restart resent the mail");
    assert_eq!(hook.hooks().len(), 3, "a restart resent the webhook");
    // `alert test` through the running daemon (control socket).
    let test = pbx.ok(&["alert", "test"]);
    assert_eq!(test["email"]["ok"], true, "{test}");
    assert_eq!(test["webhook"]["ok"], true, "{test}");
    assert_eq!(smtp.mails().len(), 3);
    let hooks = hook.hooks();
    assert_eq!(hooks.len(), 4);
    assert_eq!(hooks[3].body["code"], "test", "{:?}", hooks[3].body);
    stop(daemon);
}

#[test]
fn alert_test_over_implicit_tls_trusts_only_the_root_ca_list() {
    let pbx = Pbx::new();
    let (peers_ca, _, smtp) = peers(&pbx, "implicit", "bob", "builder");
    pbx.ok(&["system", "set", "--admin-email", "admin@pbx.example"]);
    let server_arg = format!("127.0.0.1:{}", smtp.port);
    pbx.ok(&[
        "alert",
        "set",
        "--smtp-server",
        &server_arg,
        "--smtp-tls",
        "implicit",
        "--smtp-user",
        "bob",
        "--smtp-password",
        "builder",
    ]);
    // The peers' CA is not in the Root CA list yet: refused, nothing sent.
    let test = pbx.ok(&["alert", "test"]);
    assert_eq!(test["email"]["ok"], false, "{test}");
    assert_eq!(test["email"]["code"], "smtp-tls", "{test}");
    assert!(test.get("webhook").is_none(), "{test}");
    assert!(smtp.mails().is_empty());
    // Trusted: sent over implicit TLS with AUTH, from the admin e-mail.
    pbx.import_ok(peers_ca.pem(), None, &["--kind", "root"]);
    let test = pbx.ok(&["alert", "test"]);
    assert_eq!(test["email"]["ok"], true, "{test}");
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert_mail(&mails[0], &["X-Mail-From: admin@pbx.example"]);
}

/// A logged-in `curl` session on the running daemon: `(status, body)`.
fn web_session(
    pbx: &Pbx,
    https: std::net::SocketAddr,
) -> impl Fn(&[&str], &str) -> (String, String) {
    let jar = pbx.files.join("web-cookies.txt");
    let curl = move |args: &[&str], path: &str| {
        let mut cmd = Command::new("curl");
        cmd.arg("-sk")
            .arg("-c")
            .arg(&jar)
            .arg("-b")
            .arg(&jar)
            .args(["-w", "\n%{http_code}"])
            .args(args)
            .arg(format!("https://{https}{path}"));
        let out = common::run_command(cmd, None);
        out.success();
        let (body, code) = out.stdout.rsplit_once('\n').unwrap();
        (code.trim().to_owned(), body.to_owned())
    };
    let (code, _) = curl(
        &["--data-urlencode", &format!("password={PASSWORD}")],
        "/login",
    );
    assert_eq!(code, "303", "login");
    curl
}

/// Issue 14 item 10: the alert settings as a page, its secret never shown
/// back (only "set"), and its "Send test alert" button: the mail arrives
/// at the aiosmtpd peer (STARTTLS, AUTH), the page reports the outcome.
#[test]
fn the_alerts_page_saves_settings_and_its_test_button_mails() {
    let pbx = Pbx::new();
    let (peers_ca, _, smtp) = peers(&pbx, "starttls", "carol", "page-s3cret-pw");
    pbx.import_ok(peers_ca.pem(), None, &["--kind", "root"]);
    pbx.run_stdin(&["admin", "password"], format!("{PASSWORD}\n").as_bytes())
        .success();
    pbx.ok(&["system", "set", "--admin-email", "admin@pbx.example"]);
    let daemon = pbx.serve(false);
    let web = web_session(&pbx, daemon.https);
    let (_, page) = web(&[], "/alerts");
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("no CSRF token:\n{page}"))
        .to_owned();
    assert!(page.contains("id=\"a-pass-state\">not set<"), "{page}");
    let server_arg = format!("127.0.0.1:{}", smtp.port);
    let form = |password: &str, with_csrf: bool| -> Vec<String> {
        let mut f = vec![
            format!("smtp_server={server_arg}"),
            "smtp_tls=starttls".into(),
            "smtp_user=carol".into(),
            format!("smtp_password={password}"),
            "from=".into(),
            "webhook=".into(),
            "webhook_secret=".into(),
            "failures=2".into(),
        ];
        if with_csrf {
            f.push(format!("csrf={csrf}"));
        }
        f.into_iter()
            .flat_map(|p| ["--data-urlencode".to_owned(), p])
            .collect()
    };
    let post = |fields: Vec<String>, path: &str| {
        let args: Vec<&str> = fields.iter().map(String::as_str).collect();
        web(&args, path)
    };
    assert_eq!(post(form("page-s3cret-pw", false), "/alerts").0, "403");
    assert!(pbx.ok(&["alert", "show"])["smtp_server"].is_null());
    assert_eq!(post(form("page-s3cret-pw", true), "/alerts").0, "303");
    let show = pbx.ok(&["alert", "show"]);
    assert_eq!(show["smtp_server"], server_arg.as_str(), "{show}");
    assert_eq!(show["smtp_user"], "carol");
    assert_eq!(show["smtp_password"], "********");
    assert_eq!(show["failures"], 2);
    // Saved again with the password box empty: the stored one is kept.
    assert_eq!(post(form("", true), "/alerts").0, "303");
    assert_eq!(pbx.ok(&["alert", "show"])["smtp_password"], "********");
    let (_, page) = web(&[], "/alerts");
    assert!(page.contains("alert settings saved"), "{page}");
    assert!(page.contains("id=\"a-pass-state\">set<"), "{page}");
    assert!(!page.contains("page-s3cret-pw"), "the password on the page");

    // The test button: the mail arrives, the page says so.
    let (code, _) = post(
        vec!["--data-urlencode".into(), format!("csrf={csrf}")],
        "/alerts/test",
    );
    assert_eq!(code, "303");
    wait_for("the test mail", || smtp.mails().len() == 1);
    assert_mail(&smtp.mails()[0], &["X-Mail-From: admin@pbx.example"]);
    let (_, page) = web(&[], "/alerts");
    assert!(page.contains("e-mail: test alert sent"), "{page}");
    stop(daemon);
}

/// `GET /api/alerts`, logged in with `PASSWORD` (curl, cookie jar).
fn api_alerts(pbx: &Pbx, https: std::net::SocketAddr) -> Value {
    let jar = pbx.files.join("cookies.txt");
    let curl = |args: &[&str], path: &str| {
        let mut cmd = Command::new("curl");
        cmd.arg("-sk")
            .arg("-c")
            .arg(&jar)
            .arg("-b")
            .arg(&jar)
            .args(["-w", "\n%{http_code}"])
            .args(args)
            .arg(format!("https://{https}{path}"));
        let out = common::run_command(cmd, None);
        out.success();
        let (body, code) = out.stdout.rsplit_once('\n').unwrap();
        (code.trim().to_owned(), body.to_owned())
    };
    let (code, _) = curl(
        &["--data-urlencode", &format!("password={PASSWORD}")],
        "/login",
    );
    assert_eq!(code, "303", "login");
    let (code, body) = curl(&[], "/api/alerts");
    assert_eq!(code, "200", "{body}");
    serde_json::from_str(&body).unwrap()
}
