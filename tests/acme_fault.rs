//! ACME under fault (issue 9), driven as an admin does: the running daemon
//! with default settings (default check interval: the orders run because
//! `acme set` and `cert reissue` wake the renewal loop), the CLI over the
//! control socket (`import`, `tenant add|set`, `dns add`, `system set`,
//! `acme set`, `cert reissue`, `acme status --json`), against Debian's
//! pebble and BIND9 on loopback (`tests/common/fault_peers.rs`: a separate
//! peers instance whose pebble rejects 50 % of all nonces and validates
//! without sleeping).
//!
//! What must hold (RFC 8555 §6.5, §8.3, §8.4; RFC 8737 §3):
//! - badNonce is retried with the fresh nonce: orders whose challenges can be
//!   answered converge to a stored certificate despite the rejections;
//! - orders with a challenge that cannot be answered (a name the CA cannot
//!   resolve) fail with their stable code in `acme status` (never a panic,
//!   never a hang, never `internal`);
//! - whatever the outcome, nothing is left behind: no HTTP-01 token answers
//!   on port 80, no TLS-ALPN-01 certificate is shown to an `acme-tls/1`
//!   client, no DNS-01 TXT record stays in BIND (asked with `dig`).
//!
//! Every wait is bounded and waits for an event (a log line); assertions are
//! on contents, never on durations. `PBX_CERTD_NO_PEERS=1` skips the tests
//! where the peers cannot run, through `skip::require` (recorded; a failure
//! with `PBX_CERTD_REQUIRE_PEERS=1`, as in CI).

#[path = "common/accept_any.rs"]
mod accept_any;
#[path = "common/fault_peers.rs"]
mod fault_peers;

use fault_peers::{enable_acme, ok, status_of};
#[path = "common/serve.rs"]
mod serve;
#[path = "common/skip.rs"]
mod skip;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use fault_peers::dig::dig_txt;
use fault_peers::{alpn_challenge_cert, http01_answer, pebble_root};

/// Hang guard for the outcome of all orders of one pass (native: a second
/// or two; under qemu-user several times that). Not a timing assertion.
const OUTCOME_GUARD: Duration = Duration::from_secs(300);

/// The daemon on the ports the fault pebble validates: HTTPS on the
/// TLS-ALPN-01 port, port-80 listener on the HTTP-01 port. Everything else
/// is default.
struct Daemon {
    d: serve::Daemon,
    https: SocketAddr,
    http: SocketAddr,
    seen: Vec<String>,
}

impl Daemon {
    fn start(dir: &Path, env: &HashMap<String, String>) -> Daemon {
        let d = fault_peers::serve_command(dir, env).start();
        let mut seen = d.startup.clone();
        // The lines before `ready:` (the ready line is not an outcome).
        seen.pop();
        Daemon {
            https: d.https,
            http: d.http.expect("port-80 listener"),
            seen,
            d,
        }
    }

    /// Wait until every name set in `sets` has an order outcome logged
    /// after `from` (an index into `seen`); each set's last outcome:
    /// `Ok(cert id)` or `Err(code)`.
    fn outcomes(&mut self, from: usize, sets: &[&[&str]]) -> Vec<Result<String, String>> {
        let end = Instant::now() + OUTCOME_GUARD;
        loop {
            let found: Vec<Option<Result<String, String>>> = sets
                .iter()
                .map(|names| outcome_of(&self.seen[from..], &names.join(", ")))
                .collect();
            if found.iter().all(Option::is_some) {
                return found.into_iter().flatten().collect();
            }
            let left = end.saturating_duration_since(Instant::now());
            match self.d.log.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!(
                    "no outcome for all of {sets:?}; daemon log:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// The `answering ...` lines logged after `from` for `name`.
    fn answers(&self, from: usize, kind: &str, name: &str) -> Vec<String> {
        let needle = format!("ACME: answering {kind} for {name} ");
        self.seen[from..]
            .iter()
            .filter(|l| l.contains(&needle) || l.ends_with(needle.trim_end()))
            .cloned()
            .collect()
    }

    /// Wait for a log line (after `from`) containing `needle`.
    fn wait_for(&mut self, from: usize, needle: &str) -> String {
        let end = Instant::now() + OUTCOME_GUARD;
        loop {
            if let Some(l) = self.seen[from..].iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            let left = end.saturating_duration_since(Instant::now());
            match self.d.log.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!("no log line with {needle:?}:\n{}", self.seen.join("\n")),
            }
        }
    }

    fn log_text(&self) -> String {
        self.seen.join("\n")
    }

    fn stop(self) {
        self.d.stop();
    }
}

/// The last outcome logged for the name set `names` (joined by ", ") in
/// `lines`: `Ok(cert id)` or `Err(code)`.
fn outcome_of(lines: &[String], names: &str) -> Option<Result<String, String>> {
    lines.iter().rev().find_map(|l| {
        if let Some(rest) = l.split("ACME: certificate ").nth(1) {
            let (id, tail) = rest.split_once(" issued for ")?;
            return (tail == names).then(|| Ok(id.to_owned()));
        }
        let rest = l.split("ACME: order for ").nth(1)?;
        let tail = rest.strip_prefix(names)?.strip_prefix(" failed [")?;
        Some(Err(tail.split(']').next()?.to_owned()))
    })
}

/// The token of an `answering http-01 for NAME (token T)` line.
fn token_of(line: &str) -> String {
    line.rsplit("(token ")
        .next()
        .unwrap()
        .trim_end_matches(')')
        .to_owned()
}

/// A fresh data dir with the daemon running on it (nothing configured yet):
/// everything after this goes through the control socket.
fn running(env: &HashMap<String, String>) -> (tempfile::TempDir, Daemon) {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), env);
    // Trust the peers: the CA of pebble's HTTPS listener and its issuing root.
    let d = dir.path();
    ok(
        d,
        &["import", "--cert", &env["ACME_CA_FILE"], "--kind", "root"],
    );
    let root = d.join("pebble-root.pem");
    std::fs::write(&root, pebble_root(env)).unwrap();
    ok(
        d,
        &["import", "--cert", root.to_str().unwrap(), "--kind", "root"],
    );
    (dir, daemon)
}

/// `dns add peers --provider rfc2136` for the peers' zone on their BIND,
/// signed with their TSIG key.
fn add_peers_provider(d: &Path, env: &HashMap<String, String>) {
    ok(
        d,
        &[
            "dns",
            "add",
            "peers",
            "--provider",
            "rfc2136",
            "--zone",
            &env["DNS_ZONE"],
            "--server",
            &env["DNS_SERVER"],
            "--tsig-name",
            &env["TSIG_KEY_NAME"],
            "--tsig-algorithm",
            &env["TSIG_ALGORITHM"],
            "--tsig-secret",
            &env["TSIG_SECRET"],
        ],
    );
}

/// No HTTP-01 answer left on port 80 for any token answered after `from`,
/// and at least `min` such tokens existed (the check is not vacuous).
fn assert_no_http01_left(daemon: &Daemon, from: usize, names: &[&str], min: usize) {
    let mut tokens = Vec::new();
    for name in names {
        for line in daemon.answers(from, "http-01", name) {
            tokens.push((name.to_string(), token_of(&line)));
        }
    }
    assert!(
        tokens.len() >= min,
        "expected HTTP-01 answers for {names:?}:\n{}",
        daemon.log_text()
    );
    for (name, token) in tokens {
        let (status, body) = http01_answer(daemon.http, &name, &token);
        assert_eq!(
            status, 404,
            "HTTP-01 token {token} for {name} still answered after the order: {body:?}"
        );
    }
}

/// No TLS-ALPN-01 certificate left for `names`, each of which was answered
/// after `from`.
fn assert_no_alpn_left(daemon: &Daemon, from: usize, names: &[&str]) {
    for name in names {
        assert!(
            !daemon.answers(from, "tls-alpn-01", name).is_empty(),
            "expected a TLS-ALPN-01 answer for {name}:\n{}",
            daemon.log_text()
        );
        assert_eq!(
            alpn_challenge_cert(daemon.https, name).map(|der| der.len()),
            None,
            "a TLS-ALPN-01 certificate for {name} is still shown after the order"
        );
    }
}

/// No TXT record left at `_acme-challenge.NAME` for `names`, each of which
/// was answered by DNS-01 after `from`.
fn assert_no_txt_left(daemon: &Daemon, env: &HashMap<String, String>, from: usize, names: &[&str]) {
    for name in names {
        let answered = daemon.answers(from, "dns-01", name);
        assert!(
            !answered.is_empty(),
            "expected a DNS-01 answer for {name}:\n{}",
            daemon.log_text()
        );
        let fqdn = format!("_acme-challenge.{}", name.trim_start_matches("*."));
        assert_eq!(
            dig_txt(env, &fqdn),
            Vec::<String>::new(),
            "TXT records left at {fqdn} after the order"
        );
    }
}

/// The failed set's `acme status`: failed with `code`, no certificate.
fn assert_failed_with(d: &Path, key: &str, code: &str) {
    let st = status_of(d, key);
    assert_eq!(st["state"], "failed", "{st}");
    assert_eq!(st["last_error"]["code"], code, "{st}");
    assert_eq!(st["cert_id"], serde_json::Value::Null, "{st}");
    assert!(st["next_attempt"].is_string(), "{st}");
}

/// The converged set's `acme status`: valid with certificate `id`.
fn assert_valid_with(d: &Path, key: &str, id: &str) {
    let st = status_of(d, key);
    assert_eq!(st["state"], "valid", "{st}");
    assert_eq!(st["cert_id"], id, "{st}");
    assert_eq!(st["last_error"], serde_json::Value::Null, "{st}");
}

/// HTTP-01 and TLS-ALPN-01 under 50 % badNonce: two tenants whose names
/// the CA can reach converge (and again on `cert reissue`), two with a name
/// the CA cannot resolve fail with `validation-failed`; no token and no
/// challenge certificate is left for any of them.
#[test]
fn http01_and_tls_alpn01_under_bad_nonces_and_failed_validation_leave_no_challenge() {
    let Some((_lock, env)) = fault_peers::peers() else {
        return;
    };
    let (dir, mut daemon) = running(&env);
    let d = dir.path();
    // Port 80 runs: `auto` answers HTTP-01.
    ok(
        d,
        &[
            "tenant",
            "add",
            "web",
            "--dns",
            "web.pbx.test",
            "--dns",
            "www.web.pbx.test",
        ],
    );
    // `nowhere.test` is in no zone the CA's resolver (the peers' BIND)
    // serves: the CA cannot reach that name, its challenge cannot be met.
    ok(
        d,
        &[
            "tenant",
            "add",
            "webfail",
            "--dns",
            "webfail.pbx.test",
            "--dns",
            "webfail.nowhere.test",
        ],
    );
    ok(d, &["tenant", "add", "alpn", "--dns", "alpn.pbx.test"]);
    ok(
        d,
        &[
            "tenant",
            "add",
            "alpnfail",
            "--dns",
            "alpnfail.pbx.test",
            "--dns",
            "alpnfail.nowhere.test",
        ],
    );
    for t in ["alpn", "alpnfail"] {
        ok(d, &["tenant", "set", t, "--acme-challenge", "tls-alpn-01"]);
    }
    let from = daemon.seen.len();
    enable_acme(d, &env);

    let web: &[&str] = &["web.pbx.test", "www.web.pbx.test"];
    let webfail: &[&str] = &["webfail.pbx.test", "webfail.nowhere.test"];
    let alpn: &[&str] = &["alpn.pbx.test"];
    let alpnfail: &[&str] = &["alpnfail.pbx.test", "alpnfail.nowhere.test"];
    let got = daemon.outcomes(from, &[web, webfail, alpn, alpnfail]);
    let log = daemon.log_text();
    let web_id = got[0]
        .clone()
        .unwrap_or_else(|c| panic!("web: [{c}]\n{log}"));
    assert_eq!(got[1], Err("validation-failed".into()), "webfail\n{log}");
    let alpn_id = got[2]
        .clone()
        .unwrap_or_else(|c| panic!("alpn: [{c}]\n{log}"));
    assert_eq!(got[3], Err("validation-failed".into()), "alpnfail\n{log}");

    assert_valid_with(d, "tenant:web", &web_id);
    assert_failed_with(d, "tenant:webfail", "validation-failed");
    assert_valid_with(d, "tenant:alpn", &alpn_id);
    assert_failed_with(d, "tenant:alpnfail", "validation-failed");
    // The failure says what the CA saw about the name it could not reach.
    let st = status_of(d, "tenant:webfail");
    assert!(
        st["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("webfail.nowhere.test"),
        "{st}"
    );

    // Nothing left: every name of every order was answered, none still is.
    assert_no_http01_left(&daemon, from, &[web, webfail].concat(), 3);
    assert_no_alpn_left(&daemon, from, &[alpn, alpnfail].concat());

    // `cert reissue` orders again at once, still under badNonce.
    let from = daemon.seen.len();
    let r = ok(d, &["cert", "reissue", &web_id]);
    assert_eq!(r["key"], "tenant:web");
    let got = daemon.outcomes(from, &[web]);
    let log = daemon.log_text();
    let new_id = got[0]
        .clone()
        .unwrap_or_else(|c| panic!("reissue: [{c}]\n{log}"));
    assert_ne!(new_id, web_id);
    assert_valid_with(d, "tenant:web", &new_id);
    assert_no_http01_left(&daemon, from, web, 2);
    daemon.stop();
}

/// DNS-01 under 50 % badNonce through an RFC 2136 provider on the peers'
/// BIND: the system name and its wildcard converge; a tenant order in which
/// the DNS-01 name validates but another name cannot be reached fails with
/// `validation-failed`; in both cases `dig` finds no TXT record left, and
/// the HTTP-01 token of the failed order is withdrawn too.
#[test]
fn dns01_under_bad_nonces_and_failed_validation_leaves_no_txt_record() {
    let Some((_lock, env)) = fault_peers::peers() else {
        return;
    };
    let (dir, mut daemon) = running(&env);
    let d = dir.path();
    // The zone's NS host (ns1.pbx.test) is 127.0.0.1:53, where no peer
    // listens: check propagation at the provider's server only.
    ok(d, &["dns", "set", "--check-ns", "false"]);
    add_peers_provider(d, &env);
    ok(d, &["system", "set", "--dns", "sys.pbx.test"]);
    // `auto`: DNS-01 for the name in the provider's zone, HTTP-01 for the
    // one outside it, which the CA cannot resolve.
    ok(
        d,
        &[
            "tenant",
            "add",
            "mixed",
            "--dns",
            "mixed.pbx.test",
            "--dns",
            "mixed.nowhere.test",
        ],
    );
    assert!(dig_txt(&env, "_acme-challenge.sys.pbx.test").is_empty());
    let from = daemon.seen.len();
    enable_acme(d, &env);

    let system: &[&str] = &["sys.pbx.test", "*.sys.pbx.test"];
    let mixed: &[&str] = &["mixed.pbx.test", "mixed.nowhere.test"];
    let got = daemon.outcomes(from, &[system, mixed]);
    let log = daemon.log_text();
    let sys_id = got[0]
        .clone()
        .unwrap_or_else(|c| panic!("system: [{c}]\n{log}"));
    assert_eq!(got[1], Err("validation-failed".into()), "mixed\n{log}");
    assert_valid_with(d, "system", &sys_id);
    assert_failed_with(d, "tenant:mixed", "validation-failed");

    assert_no_txt_left(&daemon, &env, from, &["sys.pbx.test", "*.sys.pbx.test"]);
    assert_no_txt_left(&daemon, &env, from, &["mixed.pbx.test"]);
    assert_no_http01_left(&daemon, from, &["mixed.nowhere.test"], 1);

    // `cert reissue` of the system certificate: again under badNonce.
    let from = daemon.seen.len();
    ok(d, &["cert", "reissue", &sys_id]);
    let got = daemon.outcomes(from, &[system]);
    let log = daemon.log_text();
    let new_id = got[0]
        .clone()
        .unwrap_or_else(|c| panic!("reissue: [{c}]\n{log}"));
    assert_ne!(new_id, sys_id);
    assert_valid_with(d, "system", &new_id);
    // The CA may hand back the wildcard's authorization still valid from
    // the first order (RFC 8555 §7.1.4; pebble does under load), so only
    // the base name is sure to be answered again; both share
    // `_acme-challenge.sys.pbx.test`, whose emptiness this checks.
    assert_no_txt_left(&daemon, &env, from, &["sys.pbx.test"]);
    daemon.stop();
}

/// The daemon stopped (SIGTERM, e.g. an upgrade or a reboot) while a DNS-01
/// order waits with its TXT record published: the record must not stay in
/// the zone for good. Default DNS settings: the propagation check also asks
/// the zone's NS (`ns1.pbx.test` = 127.0.0.1:53, where nobody answers), so
/// the order waits (up to the default 120 s) with the record in BIND; the
/// daemon is stopped then. The next start removes what the stopped order
/// left (here with ACME switched off meanwhile, so no new order adds one).
#[test]
fn a_txt_record_left_by_a_daemon_stopped_mid_order_is_removed_at_the_next_start() {
    let Some((_lock, env)) = fault_peers::peers() else {
        return;
    };
    let (dir, mut daemon) = running(&env);
    let d = dir.path();
    add_peers_provider(d, &env);
    ok(d, &["system", "set", "--dns", "halt.pbx.test"]);
    let fqdn = "_acme-challenge.halt.pbx.test";
    assert!(dig_txt(&env, fqdn).is_empty());
    let from = daemon.seen.len();
    enable_acme(d, &env);
    daemon.wait_for(
        from,
        "at _acme-challenge.halt.pbx.test through DNS provider",
    );
    // The record is in the zone (seen by dig), the order still runs.
    let left = poll(|| {
        let v = dig_txt(&env, fqdn);
        (!v.is_empty()).then_some(v)
    })
    .unwrap_or_else(|| panic!("the TXT record never appeared\n{}", daemon.log_text()));
    assert!(
        outcome_of(&daemon.seen, "halt.pbx.test, *.halt.pbx.test").is_none(),
        "the order ended before the stop:\n{}",
        daemon.log_text()
    );
    daemon.stop();

    // Stopped (ACME switched off meanwhile), then started again.
    ok(d, &["acme", "set", "--enabled", "false"]);
    let daemon = Daemon::start(d, &env);
    let gone = poll(|| dig_txt(&env, fqdn).is_empty().then_some(()));
    assert!(
        gone.is_some(),
        "TXT record(s) {left:?} of the stopped order still at {fqdn} after the restart: {:?}\n{}",
        dig_txt(&env, fqdn),
        daemon.log_text()
    );
    daemon.stop();
}

/// Ask `f` until it gives `Some` (a bounded wait for an outside event:
/// ~60 s, scaled up under emulation; not a timing assertion).
fn poll<T>(mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let rounds = if std::env::var_os("PBX_CERTD_EMULATED").is_some() {
        1200
    } else {
        600
    };
    let end = Instant::now() + Duration::from_millis(100 * rounds);
    for _ in 0..rounds {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= end {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}
