//! ACME on a cluster (issue 16), end to end: one etcd member, two
//! `pbx-certd serve` nodes on one `--store` prefix (default settings, the
//! default check interval), Debian's pebble and BIND9 as the CA and DNS
//! (`scripts/acme-peers.sh`, a peers instance of its own:
//! `PEERS_INSTANCE=cluster`, ports from `PEERS_CLUSTER_PORT_BASE`, default
//! 18190). In front of the nodes, where pebble validates (its HTTP-01 and
//! TLS-ALPN-01 ports), a TCP load balancer of the test's own sends each
//! connection to the node the test chooses, as a real one sends to any node.
//!
//! What must hold:
//! - a tenant added on node A wakes both nodes (B through its watch): they
//!   race, exactly one order is placed (pebble's log counts the orders);
//! - the node that did NOT order answers pebble's HTTP-01 and TLS-ALPN-01
//!   validation (the balancer sends pebble there): the answers are in the
//!   store, every node serves them;
//! - the ordering node killed (SIGKILL) mid-order, before it asked for
//!   validation: the other node takes the name set over when the lease runs
//!   out (`ACME_LEASE_SECS`, on etcd's clock) and the certificate is issued
//!   and served by it.
//!
//! Native only (scripts/test-qemu.sh): etcd, pebble, BIND and two daemons.
//! Waits are for log lines and states under hang guards, never for time.

mod common;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::etcd::{etcd_bin, Etcd};
use common::fault_peers;
use common::*;

/// The peers instance of this binary (`target/acme-peers-cluster`).
const INSTANCE: &str = "cluster";

/// Hang guard of one order (natively a few seconds; a takeover waits for
/// the 30 s lease first). Not a timing assertion.
const GUARD: Duration = Duration::from_secs(180);

fn peers() -> HashMap<String, String> {
    let base = fault_peers::instance_port_base("PEERS_CLUSTER_PORT_BASE", 18190);
    fault_peers::instance_script(INSTANCE, base, "0", "up")
}

/// Orders pebble has placed so far (its log says each one).
fn pebble_orders() -> usize {
    let log = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("target/acme-peers-{INSTANCE}/run/pebble.log"));
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches("Added order")
        .count()
}

/// A TCP balancer on `listen`: each connection goes to the address in
/// `to` at the time it arrives, bytes copied both ways.
fn balancer(listen: &str, to: Arc<Mutex<SocketAddr>>) {
    let listener = TcpListener::bind(listen).expect("balancer port");
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let target = *to.lock().unwrap();
            let Ok(node) = TcpStream::connect(target) else {
                continue;
            };
            let (mut c2, mut n2) = (client.try_clone().unwrap(), node.try_clone().unwrap());
            let (mut c1, mut n1) = (client, node);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c1, &mut n1);
                let _ = n1.shutdown(std::net::Shutdown::Write);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut n2, &mut c2);
                let _ = c2.shutdown(std::net::Shutdown::Write);
            });
        }
    });
}

/// A node: its daemon and the log lines it wrote so far.
struct Node {
    daemon: Option<Daemon>,
    seen: Vec<String>,
}

impl Node {
    /// Read the log lines that arrived (no wait).
    fn read(&mut self) {
        if let Some(d) = &self.daemon {
            while let Ok(line) = d.log.try_recv() {
                self.seen.push(line);
            }
        }
    }

    fn said(&mut self, text: &str) -> bool {
        self.read();
        self.seen.iter().any(|l| l.contains(text))
    }
}

/// Wait until one node says `text`: its index.
fn first_to_say(nodes: &mut [Node], text: &str) -> usize {
    let start = Instant::now();
    loop {
        for (i, n) in nodes.iter_mut().enumerate() {
            if n.said(text) {
                return i;
            }
        }
        assert!(
            start.elapsed() < GUARD,
            "no node said {text:?}; logs:\n{}",
            nodes
                .iter()
                .map(|n| n.seen.join("\n"))
                .collect::<Vec<_>>()
                .join("\n----\n")
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn one_order_per_name_set_any_node_answers_and_a_dead_orderer_is_replaced() {
    let bin = etcd_bin();
    if !skip::require("etcd", bin.as_ref().err().map(String::as_str)) {
        return;
    }
    if !skip::require_acme_peers() {
        return;
    }
    let Ok(bin) = bin else { return };
    let env = peers();
    let zone = env["DNS_ZONE"].clone();
    let etcd = Etcd::start(&bin, 1);
    let url = etcd.store_url("acme-cluster");

    // The shared store trusts the peers and has ACME on (default interval,
    // HTTP-01), set with node A's CLI before any node runs.
    let homes: Vec<Pbx> = (0..2).map(|_| Pbx::new()).collect();
    let cli = |i: usize, args: &[&str]| {
        let mut all = vec!["--store", url.as_str()];
        all.extend_from_slice(args);
        homes[i].ok(&all)
    };
    cli(
        0,
        &["import", "--cert", &env["ACME_CA_FILE"], "--kind", "root"],
    );
    let root = homes[0].file("pebble-root.pem", fault_peers::pebble_root(&env));
    cli(0, &["import", "--cert", &root, "--kind", "root"]);
    let mut on = fault_peers::acme_on(&env).to_vec();
    on.extend(["--challenge", "http-01"]);
    cli(0, &on);
    assert_eq!(cli(0, &["acme", "show"])["check_interval"], 21600);

    // Two nodes, each with its own port-80 and HTTPS listeners; pebble
    // reaches them through the balancers.
    let mut nodes: Vec<Node> = homes
        .iter()
        .map(|h| Node {
            daemon: Some(
                h.daemon()
                    .args(&["--store", url.as_str()])
                    .http("127.0.0.1:0")
                    .env("PBX_CERTD_LOG", "info")
                    .start(),
            ),
            seen: Vec::new(),
        })
        .collect();
    let addr = |n: &Node, http: bool| {
        let d = n.daemon.as_ref().unwrap();
        if http {
            d.http()
        } else {
            d.https
        }
    };
    let http_to = Arc::new(Mutex::new(addr(&nodes[0], true)));
    let alpn_to = Arc::new(Mutex::new(addr(&nodes[0], false)));
    balancer(
        &format!("127.0.0.1:{}", env["ACME_HTTP01_PORT"]),
        http_to.clone(),
    );
    balancer(
        &format!("127.0.0.1:{}", env["ACME_TLSALPN01_PORT"]),
        alpn_to.clone(),
    );

    // 1. The race, HTTP-01 then TLS-ALPN-01: a tenant added on node A.
    for (round, (tenant, challenge)) in [("alpha", "http-01"), ("bravo", "tls-alpn-01")]
        .into_iter()
        .enumerate()
    {
        let name = format!("{tenant}.{zone}");
        let orders = pebble_orders();
        cli(0, &["acme", "set", "--challenge", challenge]);
        homes[0].ok(&[
            "--store",
            url.as_str(),
            "tenant",
            "add",
            tenant,
            "--dns",
            &name,
        ]);
        let ordering = format!("ACME: ordering a certificate for {name}");
        let orderer = first_to_say(&mut nodes, &ordering);
        let other = 1 - orderer;
        // The balancer sends pebble to the node that did not order.
        *http_to.lock().unwrap() = addr(&nodes[other], true);
        *alpn_to.lock().unwrap() = addr(&nodes[other], false);
        let issued = format!("issued for {name}");
        assert_eq!(first_to_say(&mut nodes, &issued), orderer, "round {round}");
        assert_eq!(pebble_orders(), orders + 1, "exactly one order for {name}");
        assert!(
            !nodes[other].said(&ordering),
            "the other node ordered too:\n{}",
            nodes[other].seen.join("\n")
        );
        // The certificate, ordered by one node, is served by both.
        let id = as_array(cli(other, &["certs"]))
            .into_iter()
            .find(|c| c["source"] == "acme" && c["tenant"] == tenant)
            .expect("the ACME certificate")["id"]
            .as_str()
            .unwrap()
            .to_owned();
        for n in &nodes {
            let d = n.daemon.as_ref().unwrap();
            let start = Instant::now();
            while presented_id(d.https, &name) != id {
                assert!(start.elapsed() < GUARD, "{name} not served by a node");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    // 2. The ordering node dies mid-order: killed when it says it answers,
    // before the CA is asked to validate (`CLUSTER_CHALLENGE_SETTLE`).
    let name = format!("charlie.{zone}");
    cli(0, &["acme", "set", "--challenge", "http-01"]);
    homes[0].ok(&[
        "--store",
        url.as_str(),
        "tenant",
        "add",
        "charlie",
        "--dns",
        &name,
    ]);
    let answering = format!("ACME: answering http-01 for {name}");
    let dead = first_to_say(&mut nodes, &answering);
    drop(nodes[dead].daemon.take()); // SIGKILL
    let survivor = 1 - dead;
    *http_to.lock().unwrap() = addr(&nodes[survivor], true);
    // The survivor sees the lease held, then takes the set over once the
    // lease runs out, and the certificate is issued and served.
    let issued = format!("issued for {name}");
    assert_eq!(first_to_say(&mut nodes, &issued), survivor);
    assert!(
        nodes[survivor].said("tenant:charlie is being ordered elsewhere (lease held)"),
        "{}",
        nodes[survivor].seen.join("\n")
    );
    let d = nodes[survivor].daemon.as_ref().unwrap();
    let served = presented_id(d.https, &name);
    let listed = as_array(cli(survivor, &["certs"]))
        .into_iter()
        .any(|c| c["id"] == served.as_str() && c["source"] == "acme");
    assert!(listed, "the survivor serves the new ACME certificate");
}

/// Handshake with `sni` (any certificate accepted): the presented leaf's ID.
fn presented_id(addr: SocketAddr, sni: &str) -> String {
    use common::accept_any::{client_config, AcceptAny};
    let capture = AcceptAny::new();
    let config = client_config(capture.clone(), &[]);
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        if tls.conn.complete_io(&mut tls.sock).is_err() {
            return String::new();
        }
    }
    capture.leaf().map(|d| sha256_hex(&d)).unwrap_or_default()
}
