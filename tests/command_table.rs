//! The command table (issue 10) as an admin meets it: the CLI talking to the
//! running daemon (`serve`, default settings) through its control socket.
//!
//! What must hold (`Command::effect`, the one table the daemon reads):
//! - every writing command runs under the daemon's write lock, so a
//!   `tenant set` (read, modify, write back) racing a `tenant remove` never
//!   brings the removed tenant back;
//! - every change to which names need certificates wakes the renewal loop:
//!   `tenant add` starts an ACME order at once although the check interval
//!   is its default 6 h (here against Debian's pebble and BIND9 on loopback,
//!   `scripts/acme-peers.sh`, a peers instance of its own:
//!   `PEERS_INSTANCE=cmdtable`).
//!
//! Waits are bounded (hang guards) and wait for events, never for time;
//! assertions are on contents. `PBX_CERTD_EMULATED` scales the race loop
//! down (qemu-user); `PBX_CERTD_NO_PEERS=1` skips the ACME test where the
//! peers cannot run, through `skip::require` (recorded; a failure with
//! `PBX_CERTD_REQUIRE_PEERS=1`, as in CI).

#[path = "common/accept_any.rs"]
mod accept_any;
#[path = "common/fault_peers.rs"]
mod fault_peers;

use fault_peers::{enable_acme, ok};
#[path = "common/serve.rs"]
mod serve;
#[path = "common/skip.rs"]
mod skip;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn emulated() -> bool {
    std::env::var_os("PBX_CERTD_EMULATED").is_some()
}

fn tenant_names(dir: &Path) -> Vec<String> {
    ok(dir, &["tenant", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

/// One request on the control socket, exactly as the CLI sends it (one
/// JSON line): the reply line as JSON.
fn control(socket: &Path, request: &Value) -> Value {
    let mut stream = UnixStream::connect(socket).expect("control socket");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    writeln!(stream, "{request}").unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
}

#[test]
fn tenant_set_racing_tenant_remove_never_brings_the_tenant_back() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // HTTPS on a free loopback port, no port 80, everything else default.
    let _daemon = serve::Serve::on(d).start();
    let socket = d.join("control.sock");
    // Bounded by count and by time (a round is a few CLI runs).
    let (rounds, budget) = if emulated() {
        (8, Duration::from_secs(120))
    } else {
        (25, Duration::from_secs(30))
    };
    const SETTERS: usize = 3;
    let start = Instant::now();
    let mut done = 0;
    let mut sets_after_remove = 0;
    while done < rounds && start.elapsed() < budget {
        let name = format!("race{done}");
        ok(
            d,
            &["tenant", "add", &name, "--dns", &format!("{name}.pbx.test")],
        );
        let removed = Arc::new(AtomicBool::new(false));
        let setters: Vec<_> = (0..SETTERS)
            .map(|i| {
                let (socket, name, removed) = (socket.clone(), name.clone(), removed.clone());
                thread::spawn(move || set_until_gone(&socket, &name, i, &removed))
            })
            .collect();
        // The remove goes through the CLI (its own process, the control
        // socket) while the setters write back as fast as they can.
        ok(d, &["tenant", "remove", &name]);
        removed.store(true, Ordering::SeqCst);
        for s in setters {
            sets_after_remove += s.join().unwrap();
        }
        let names = tenant_names(d);
        assert!(
            !names.contains(&name),
            "round {done}: `tenant set` brought back the removed tenant {name}: {names:?}"
        );
        done += 1;
    }
    assert!(done > 0, "no round ran");
    eprintln!("{done} rounds; {sets_after_remove} sets refused as no-such-tenant");
}

/// `tenant set NAME` through the control socket, back to back, until the
/// tenant is gone or one set has begun after the remove returned (bounded by
/// count); 1 when the daemon refused a set as `no-such-tenant`.
fn set_until_gone(socket: &Path, name: &str, i: usize, removed: &AtomicBool) -> usize {
    let challenge = ["http-01", "dns-01", "tls-alpn-01"][i % 3];
    let request = json!({"command": "tenant-set", "name": name, "acme_challenge": challenge});
    for _ in 0..10_000 {
        let after_remove = removed.load(Ordering::SeqCst);
        let reply = control(socket, &request);
        if reply.get("ok").is_none() {
            assert_eq!(reply["error"]["code"], "no-such-tenant", "{reply}");
            return 1;
        }
        if after_remove {
            return 0;
        }
    }
    panic!("setter {i}: `tenant remove {name}` did not return");
}

// ---------------------------------------------------------------------------
// `tenant add` wakes the renewal loop (ACME against pebble)
// ---------------------------------------------------------------------------

/// The peers instance of this binary (`target/acme-peers-cmdtable`).
const INSTANCE: &str = "cmdtable";

/// Hang guard for one order against local pebble (natively a second or
/// two; the loop's default interval is 6 h, so without the wake-up nothing
/// comes). Not a timing assertion.
fn order_guard() -> Duration {
    Duration::from_secs(if emulated() { 300 } else { 60 })
}

/// `scripts/acme-peers.sh up` for this binary's own instance, on its own
/// ports (`PEERS_CMDTABLE_PORT_BASE`, default 18170: + 0 HTTP-01, + 1
/// TLS-ALPN-01, + 3 DNS, + 4 ACME directory, + 5 pebble management), so it
/// never disturbs the peers of `tests/acme.rs` or `tests/acme_fault.rs`.
fn peers() -> HashMap<String, String> {
    let base = fault_peers::instance_port_base("PEERS_CMDTABLE_PORT_BASE", 18170);
    fault_peers::instance_script(INSTANCE, base, "0", "up")
}

/// Wait for a log line containing `needle` (hang guard `order_guard`).
fn wait_log(log: &mpsc::Receiver<String>, seen: &mut Vec<String>, needle: &str) -> String {
    let end = Instant::now() + order_guard();
    loop {
        if let Some(l) = seen.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        let left = end.saturating_duration_since(Instant::now());
        match log.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!(
                "no log line with {needle:?} within the hang guard; daemon log:\n{}",
                seen.join("\n")
            ),
        }
    }
}

#[test]
fn tenant_add_through_the_running_daemon_starts_an_order_at_once() {
    if !skip::require_acme_peers() {
        return;
    }
    let env = peers();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let zone = &env["DNS_ZONE"];
    // Before `serve`: trust the peers (pebble's HTTPS CA and its issuing
    // root) and enable ACME with the default check interval.
    ok(
        d,
        &["import", "--cert", &env["ACME_CA_FILE"], "--kind", "root"],
    );
    let root = d.join("pebble-root.pem");
    std::fs::write(&root, fault_peers::pebble_root(&env)).unwrap();
    ok(
        d,
        &["import", "--cert", root.to_str().unwrap(), "--kind", "root"],
    );
    enable_acme(d, &env);
    let first = format!("first.{zone}");
    ok(d, &["tenant", "add", "first", "--dns", &first]);

    // The daemon on the ports pebble validates (TLS-ALPN-01 and HTTP-01);
    // everything else default.
    let daemon = fault_peers::serve_command(d, &env).start();
    let (log, mut seen) = (&daemon.log, daemon.startup.clone());
    // The check `serve` starts with orders for `first`; its only name set,
    // so once issued the loop has read its targets and sleeps (6 h).
    wait_log(log, &mut seen, &format!(" issued for {first}"));

    // Now through the control socket: the new tenant's order starts at once.
    let second = format!("second.{zone}");
    ok(d, &["tenant", "add", "second", "--dns", &second]);
    let line = wait_log(log, &mut seen, &format!(" issued for {second}"));
    let certs = ok(d, &["certs"]);
    let issued = certs
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["source"] == "acme" && c["names"].to_string().contains(&second))
        .unwrap_or_else(|| panic!("{line}: no ACME certificate for {second} in {certs}"));
    let resolved = ok(d, &["resolve", &second]);
    assert_eq!(resolved["id"], issued["id"], "{resolved}");
    assert_eq!(resolved["tenant"], "second", "{resolved}");
}
