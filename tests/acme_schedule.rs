//! The ACME scheduler, account sync and profiles (issue 11) as an admin
//! meets them: the running daemon with DEFAULT settings (check interval 6 h,
//! default back-off), the CLI over its control socket, against Debian's
//! pebble and BIND9 on loopback (`scripts/acme-peers.sh`, a peers instance
//! of its own: `PEERS_INSTANCE=sched`, ports from `PEERS_SCHED_PORT_BASE`,
//! default 18310, so it never disturbs the other test binaries' peers).
//!
//! What must hold:
//! - `acme status`'s `next_attempt` is when the next attempt happens: a
//!   failed order (pebble's HTTPS CA not trusted: `tls-failed`) is retried
//!   when its back-off ends (the attempt's log line arrives within 2 s of
//!   the shown time), not at the next periodic check hours later;
//! - a change that can cure a failure (importing the missing root) ends the
//!   back-off: the attempt starts at once and the certificate is issued;
//! - `cert delete` of the ACME certificate starts an order at once;
//! - the account contact follows `acme set --email` and `system set
//!   --admin-email`: the daemon sends an account update (RFC 8555 §7.3.2)
//!   that pebble receives (its log's `POST /my-account/` lines: pebble 2.4
//!   exposes no account listing) and accepts (instant-acme checks the
//!   answer says the account is `valid`; the daemon logs the new contact);
//! - an ACME profile (draft-ietf-acme-profiles) is sent in newOrder only when
//!   the directory's `meta.profiles` lists it, else the order fails with
//!   `acme-profile-unknown` and no newOrder is sent; a tenant's own profile
//!   (`tenant set --acme-profile`) wins over `acme set --profile`. Pebble 2.4 has no
//!   profiles: a local stand-in serves pebble's directory plus
//!   `meta.profiles` with `newOrder` pointing at itself, records the
//!   newOrder bodies and refuses them (pebble checks the JWS `url` header,
//!   so the order cannot be passed on).
//!
//! Waits are bounded (hang guards) and wait for events (log lines). The one
//! time comparison is the scheduling promise itself (next attempt vs. the
//! shown `next_attempt`), not a speed. The back-off test waits the first
//! back-off (60 s, `ACME_BACKOFF_BASE_SECS`) in wall time, natively and
//! emulated alike. `PBX_CERTD_NO_PEERS=1` skips (and says so).

#[path = "common/accept_any.rs"]
mod accept_any;
#[path = "common/fault_peers.rs"]
mod fault_peers;
#[path = "common/https_server.rs"]
mod https_server;
#[path = "common/serve.rs"]
mod serve;
#[path = "common/skip.rs"]
mod skip;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fault_peers::{ok, status_of};
use serde_json::Value;

/// The peers instance of this binary (`target/acme-peers-sched`).
const INSTANCE: &str = "sched";

/// The tests share the validation ports: one at a time.
static LOCK: Mutex<()> = Mutex::new(());

fn emulated() -> bool {
    std::env::var_os("PBX_CERTD_EMULATED").is_some()
}

/// Hang guard for one event (an order against local pebble takes a second
/// or two natively). Not a timing assertion.
fn guard() -> Duration {
    Duration::from_secs(if emulated() { 400 } else { 120 })
}

/// The peers (`None` with `PBX_CERTD_NO_PEERS=1`) and the lock.
fn peers() -> Option<(MutexGuard<'static, ()>, HashMap<String, String>)> {
    if std::env::var("PBX_CERTD_NO_PEERS").as_deref() == Ok("1") {
        eprintln!("PBX_CERTD_NO_PEERS=1: ACME schedule tests skipped");
        return None;
    }
    let lock = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let base = fault_peers::instance_port_base("PEERS_SCHED_PORT_BASE", 18310);
    Some((
        lock,
        fault_peers::instance_script(INSTANCE, base, "0", "up"),
    ))
}

/// Unix time in seconds, with fractions.
fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The running daemon; its log lines stamped with the (Unix) time they
/// arrived, by a thread that does nothing else.
struct Daemon {
    /// Kept for its drop (stops the daemon).
    _daemon: serve::Daemon,
    log: mpsc::Receiver<(f64, String)>,
    seen: Vec<(f64, String)>,
}

impl Daemon {
    fn start(dir: &Path, env: &HashMap<String, String>) -> Daemon {
        let mut daemon = fault_peers::serve_command(dir, env).start();
        // The lines after `ready:`, stamped here as they arrive.
        let (_unused, empty) = mpsc::channel();
        let raw = std::mem::replace(&mut daemon.log, empty);
        let (tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in raw.iter() {
                if tx.send((unix_now(), line)).is_err() {
                    break;
                }
            }
        });
        Daemon {
            _daemon: daemon,
            log,
            seen: Vec::new(),
        }
    }

    /// The index the next line will get.
    fn mark(&mut self) -> usize {
        while let Ok(l) = self.log.try_recv() {
            self.seen.push(l);
        }
        self.seen.len()
    }

    /// Wait for a line (at or after index `from`) containing `needle`:
    /// its arrival time and text.
    fn wait_for(&mut self, from: usize, needle: &str) -> (f64, String) {
        let end = Instant::now() + guard();
        loop {
            if let Some(l) = self.seen[from.min(self.seen.len())..]
                .iter()
                .find(|(_, l)| l.contains(needle))
            {
                return l.clone();
            }
            let left = end.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!(
                    "no log line with {needle:?} within the hang guard; daemon log:\n{}",
                    self.text()
                ),
            }
        }
    }

    fn text(&self) -> String {
        self.seen
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn unix(rfc3339: &Value) -> i64 {
    pbx_certd::clock::parse_rfc3339(rfc3339.as_str().expect("a time"))
        .unwrap_or_else(|| panic!("not RFC 3339: {rfc3339}"))
}

/// Import a PEM text as a root.
fn import_root(d: &Path, file: &str, pem: &str) {
    let path = d.join(file);
    std::fs::write(&path, pem).unwrap();
    ok(
        d,
        &["import", "--cert", path.to_str().unwrap(), "--kind", "root"],
    );
}

/// The ACME certificates stored for `name`.
fn acme_certs_for(d: &Path, name: &str) -> Vec<Value> {
    ok(d, &["certs"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["source"] == "acme" && c["names"].to_string().contains(name))
        .cloned()
        .collect()
}

/// A fresh data dir with the daemon running on it, pebble's issuing root
/// imported (and the CA of pebble's HTTPS listener when `trust_https`), and
/// the tenant `tenant` with the name `TENANT.ZONE` (returned).
fn running(
    env: &HashMap<String, String>,
    tenant: &str,
    trust_https: bool,
) -> (tempfile::TempDir, Daemon, String) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let name = format!("{tenant}.{}", env["DNS_ZONE"]);
    let daemon = Daemon::start(d, env);
    import_root(d, "pebble-root.pem", &fault_peers::pebble_root(env));
    if trust_https {
        let ca = std::fs::read_to_string(&env["ACME_CA_FILE"]).unwrap();
        import_root(d, "pebble-https-ca.pem", &ca);
    }
    ok(d, &["tenant", "add", tenant, "--dns", &name]);
    (dir, daemon, name)
}

#[test]
fn a_failed_order_is_retried_when_status_says_and_a_cure_retries_at_once() {
    let Some((_lock, env)) = peers() else { return };
    // Pebble's issuing root, but NOT the CA of its HTTPS listener: every
    // order fails with tls-failed.
    let (dir, mut daemon, name) = running(&env, "sched", false);
    let d = dir.path();
    let from = daemon.mark();
    fault_peers::enable_acme(d, &env);
    let failed = format!("order for {name} failed [tls-failed]");
    daemon.wait_for(from, &failed);
    let st = status_of(d, "tenant:sched");
    assert_eq!(st["state"], "failed", "{st}");
    assert_eq!(st["last_error"]["code"], "tls-failed", "{st}");
    let shown = unix(&st["next_attempt"]);

    // The retry comes when the status said (default check interval: 6 h).
    let from = daemon.mark();
    let ordering = format!("ACME: ordering a certificate for {name}");
    let (at, _) = daemon.wait_for(from, &ordering);
    eprintln!("retry logged at {at:.2}; acme status said {shown}");
    assert!(
        (at - shown as f64).abs() <= 2.0,
        "the retry came at {at:.1}, acme status said {shown} ({})",
        st["next_attempt"]
    );
    daemon.wait_for(from, &failed);
    let st = status_of(d, "tenant:sched");
    assert_eq!(st["failures"], 2, "{st}");
    let backoff_end = unix(&st["next_attempt"]);

    // The cure: trust pebble's HTTPS CA. The back-off ends at once.
    let from = daemon.mark();
    let ca = std::fs::read_to_string(&env["ACME_CA_FILE"]).unwrap();
    import_root(d, "pebble-https-ca.pem", &ca);
    let (at, _) = daemon.wait_for(from, &ordering);
    assert!(
        at < backoff_end as f64 - 30.0,
        "after the root import the retry came at {at:.1}, only at the back-off's end {backoff_end}"
    );
    daemon.wait_for(from, &format!(" issued for {name}"));
    let st = status_of(d, "tenant:sched");
    assert_eq!(st["state"], "valid", "{st}");
    assert_eq!(st["failures"], 0, "{st}");
    let certs = acme_certs_for(d, &name);
    assert_eq!(certs.len(), 1, "{certs:?}");

    // `cert delete` of the ACME certificate: an order starts at once.
    let id = certs[0]["id"].as_str().unwrap().to_owned();
    let from = daemon.mark();
    ok(d, &["cert", "delete", &id]);
    daemon.wait_for(from, &ordering);
    daemon.wait_for(from, &format!(" issued for {name}"));
    let certs = acme_certs_for(d, &name);
    assert_eq!(certs.len(), 1, "{certs:?}");
    assert_ne!(certs[0]["id"], id.as_str());
}

#[test]
fn the_account_contact_follows_acme_email_and_the_admin_email() {
    let Some((_lock, env)) = peers() else { return };
    let (dir, mut daemon, name) = running(&env, "contact", true);
    let d = dir.path();
    let from = daemon.mark();
    // Registers the account (contact admin@pbx.test) and orders.
    fault_peers::enable_acme(d, &env);
    daemon.wait_for(from, &format!(" issued for {name}"));
    let account = ok(d, &["acme", "show"])["account"]["url"].clone();
    assert!(account.is_string(), "{account}");

    // `acme set --email`: pebble receives an update of the same account.
    let before = pebble_account_posts();
    let from = daemon.mark();
    ok(d, &["acme", "set", "--email", "ops@pbx.test"]);
    wait_account_posts(before, &daemon);
    let (_, line) = daemon.wait_for(from, "updated: contact [mailto:ops@pbx.test]");
    assert!(line.contains(account.as_str().unwrap()), "{line}");

    // No ACME e-mail: the admin e-mail is the contact; changing it updates.
    ok(d, &["acme", "set", "--email", "none"]);
    let before = pebble_account_posts();
    let from = daemon.mark();
    ok(d, &["system", "set", "--admin-email", "boss@pbx.test"]);
    wait_account_posts(before, &daemon);
    let (_, line) = daemon.wait_for(from, "updated: contact [mailto:boss@pbx.test]");
    assert!(line.contains(account.as_str().unwrap()), "{line}");
    let show = ok(d, &["acme", "show"]);
    assert_eq!(show["contact"], "boss@pbx.test", "{show}");
    assert_eq!(
        show["account"]["url"], account,
        "same account, not a new one"
    );
    assert!(
        !daemon.text().contains("account update failed"),
        "{}",
        daemon.text()
    );
}

/// Account updates pebble received: its log has one `POST /my-account/`
/// line per POST to an account URL (RFC 8555 §7.3.2; nothing else the
/// daemon sends goes there).
fn pebble_account_posts() -> usize {
    let log = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("target/acme-peers-{INSTANCE}/run/pebble.log"));
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches("POST /my-account/")
        .count()
}

/// Wait (hang guard) until pebble logged more account POSTs than `before`.
fn wait_account_posts(before: usize, daemon: &Daemon) {
    let end = Instant::now() + guard();
    while pebble_account_posts() <= before {
        assert!(
            Instant::now() < end,
            "pebble received no account update; daemon log:\n{}",
            daemon.text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The profiles stand-in: pebble's directory plus `meta.profiles`
/// (`classic`, `shortlived`) with `newOrder` pointing here; every newOrder
/// body is recorded (the JWS payload, decoded) and refused. Returns its
/// directory URL, its CA (PEM) and the recorded payloads.
fn profiles_stand_in(pebble_dir: Value) -> (String, String, Arc<Mutex<Vec<Value>>>) {
    use base64ct::{Base64UrlUnpadded, Encoding};
    let orders = Arc::new(Mutex::new(Vec::new()));
    let seen = orders.clone();
    let dir = Arc::new(Mutex::new(pebble_dir));
    let dir2 = dir.clone();
    let (port, ca) = https_server::serve("profiles stand-in CA", move |req| {
        if req.path == "/dir" {
            return (200, dir2.lock().unwrap().to_string());
        }
        if req.path == "/new-order" {
            let jws: Value = serde_json::from_slice(&req.body).unwrap_or_default();
            let payload = Base64UrlUnpadded::decode_vec(jws["payload"].as_str().unwrap_or(""))
                .unwrap_or_default();
            seen.lock()
                .unwrap()
                .push(serde_json::from_slice(&payload).unwrap_or_default());
            return (
                403,
                r#"{"type":"urn:ietf:params:acme:error:unauthorized","detail":"profiles stand-in: newOrder recorded"}"#
                    .into(),
            );
        }
        (404, "{}".into())
    });
    let base = format!("https://127.0.0.1:{port}");
    {
        let mut d = dir.lock().unwrap();
        d["newOrder"] = format!("{base}/new-order").into();
        d["meta"]["profiles"] = serde_json::json!({
            "classic": "the CA's default",
            "shortlived": "6-day certificates",
        });
    }
    (format!("{base}/dir"), ca, orders)
}

#[test]
fn a_profile_is_sent_only_when_the_directory_lists_it() {
    let Some((_lock, env)) = peers() else { return };
    let out = std::process::Command::new("curl")
        .args(["-sf", "--cacert", &env["ACME_CA_FILE"]])
        .arg(&env["ACME_DIRECTORY_URL"])
        .output()
        .unwrap();
    assert!(out.status.success(), "cannot fetch pebble's directory");
    let (stand_in, stand_in_ca, orders) =
        profiles_stand_in(serde_json::from_slice(&out.stdout).unwrap());

    let (dir, mut daemon, name) = running(&env, "profile", true);
    let d = dir.path();
    import_root(d, "stand-in-ca.pem", &stand_in_ca);
    // A profile the directory does not list: a named error, no newOrder.
    let from = daemon.mark();
    ok(
        d,
        &[
            "acme",
            "set",
            "--directory",
            &stand_in,
            "--profile",
            "tlsserver",
            "--enabled",
            "true",
        ],
    );
    daemon.wait_for(
        from,
        &format!("order for {name} failed [acme-profile-unknown]"),
    );
    let st = status_of(d, "tenant:profile");
    assert_eq!(st["last_error"]["code"], "acme-profile-unknown", "{st}");
    assert!(
        st["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("classic, shortlived")
            || st["last_error"]["message"]
                .as_str()
                .unwrap()
                .contains("shortlived, classic"),
        "{st}"
    );
    assert!(orders.lock().unwrap().is_empty(), "{:?}", orders.lock());

    // A listed profile: sent in newOrder (the stand-in refuses the order).
    let from = daemon.mark();
    ok(d, &["acme", "set", "--profile", "shortlived"]);
    assert_eq!(ok(d, &["acme", "show"])["profile"], "shortlived");
    daemon.wait_for(
        from,
        &format!("order for {name} failed [validation-failed]"),
    );
    let sent = orders.lock().unwrap().clone();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["profile"], "shortlived", "{}", sent[0]);
    assert_eq!(
        sent[0]["identifiers"][0]["value"],
        name.as_str(),
        "{}",
        sent[0]
    );

    // `none`: no profile field at all.
    let from = daemon.mark();
    ok(d, &["acme", "set", "--profile", "none"]);
    daemon.wait_for(
        from,
        &format!("order for {name} failed [validation-failed]"),
    );
    let sent = orders.lock().unwrap().clone();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(sent[1].get("profile").is_none(), "{}", sent[1]);

    // The tenant's own profile wins over the global one (none here).
    let from = daemon.mark();
    ok(
        d,
        &["tenant", "set", "profile", "--acme-profile", "classic"],
    );
    let tenants = ok(d, &["tenant", "list"]);
    assert_eq!(tenants[0]["acme_profile"], "classic", "{tenants}");
    daemon.wait_for(
        from,
        &format!("order for {name} failed [validation-failed]"),
    );
    let sent = orders.lock().unwrap().clone();
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert_eq!(sent[2]["profile"], "classic", "{}", sent[2]);
}
