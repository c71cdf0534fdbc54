//! DNS-01 through RFC 2136 + TSIG against a real BIND9 (Debian `bind9`),
//! started per test by `scripts/dns-peer.sh up` on a free port of 127.0.0.1
//! and stopped by its PID (`down`) when the test ends. (The zones' NS host
//! has address 127.0.0.1, so the NS check asks 127.0.0.1:53, where no peer
//! of ours listens: used to prove the NS check is real.) Records are checked with
//! `dig` (an independent client) and with our own query.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

use common::*;
use pbx_certd::dns::{challenge_name, DnsError, PropagationSettings};
use pbx_certd::dns01::{propagation, rfc2136::Rfc2136, DnsProvider};
use pbx_certd::model::TsigAlgorithm;

/// One running BIND9.
struct Peer {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    env: HashMap<String, String>,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/dns-peer.sh")
}

impl Peer {
    fn start() -> Peer {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("peer");
        let mut last = None;
        for _ in 0..3 {
            let mut cmd = Command::new(script());
            cmd.arg("up")
                .env("DNS_PEER_DIR", &dir)
                .env("DNS_PEER_PORT", free_port().to_string());
            let out = run_command(cmd, None);
            if out.status == 0 {
                let env = out
                    .stdout
                    .lines()
                    .filter_map(|l| l.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                return Peer {
                    _dir: tmp,
                    dir,
                    env,
                };
            }
            last = Some(out);
        }
        panic!("BIND did not start\n{}", last.unwrap().describe());
    }

    fn server(&self) -> &str {
        &self.env["DNS_SERVER"]
    }

    fn provider(&self, alg: TsigAlgorithm) -> Rfc2136 {
        let (name, secret) = match alg {
            TsigAlgorithm::HmacSha256 => ("TSIG256_NAME", "TSIG256_SECRET"),
            TsigAlgorithm::HmacSha512 => ("TSIG512_NAME", "TSIG512_SECRET"),
        };
        self.provider_with("example.test", &self.env[name], alg, &self.env[secret])
    }

    /// A provider for `zone` at this BIND with any key (right or wrong).
    fn provider_with(
        &self,
        zone: &str,
        key_name: &str,
        alg: TsigAlgorithm,
        secret: &str,
    ) -> Rfc2136 {
        Rfc2136::new(zone, self.server(), key_name, alg, secret).unwrap()
    }

    /// TXT values at `name` according to `dig` (quotes removed, sorted).
    fn dig_txt(&self, name: &str) -> Vec<String> {
        let (host, port) = self.server().rsplit_once(':').unwrap();
        let mut cmd = Command::new("dig");
        cmd.args([
            "+short",
            "+norecurse",
            "+tcp",
            &format!("@{host}"),
            "-p",
            port,
            name,
            "TXT",
        ]);
        let out = run_command(cmd, None);
        out.success();
        let mut v: Vec<String> = out
            .stdout
            .lines()
            .map(|l| l.replace("\" \"", "").trim_matches('"').to_string())
            .filter(|l| !l.is_empty())
            .collect();
        v.sort();
        v
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let mut cmd = Command::new(script());
        cmd.arg("down").env("DNS_PEER_DIR", &self.dir);
        let _ = cmd.status();
    }
}

fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    smol::block_on(f)
}

/// Wait (at most 30 s, polling every second, NS check on) until `p`'s
/// servers answer `value` at `name`.
fn wait_visible(p: &Rfc2136, name: &str, value: &str) {
    let settings = PropagationSettings {
        timeout_secs: 30,
        interval_secs: 1,
        check_ns: true,
    };
    block(propagation::wait_for_txt(
        &p.authoritative_servers(),
        name,
        value,
        settings,
    ))
    .unwrap();
}

/// A value shaped like a DNS-01 digest (43 Base64url characters), unique.
fn value(tag: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, tag.as_bytes());
    base64_encode(digest.as_ref())
        .replace('+', "-")
        .replace('/', "_")
        .trim_end_matches('=')
        .to_string()
}

#[test]
fn add_is_seen_by_bind_then_remove_removes_it() {
    let peer = Peer::start();
    let p = peer.provider(TsigAlgorithm::HmacSha256);
    let name = challenge_name("www.example.test");
    let (a, b) = (value("a"), value("b"));
    assert!(peer.dig_txt(&name).is_empty());
    block(p.add_txt(&name, &a)).unwrap();
    block(p.add_txt(&name, &b)).unwrap();
    let mut both = vec![a.clone(), b.clone()];
    both.sort();
    assert_eq!(peer.dig_txt(&name), both);
    let mut ours = block(propagation::query_txt(peer.server(), &name)).unwrap();
    ours.sort();
    assert_eq!(ours, both);
    wait_visible(&p, &name, &a);
    // Removing one value leaves the other (only that RR is deleted).
    block(p.remove_txt(&name, &a)).unwrap();
    assert_eq!(peer.dig_txt(&name), vec![b.clone()]);
    block(p.remove_txt(&name, &b)).unwrap();
    assert!(peer.dig_txt(&name).is_empty());
    assert!(block(propagation::query_txt(peer.server(), &name))
        .unwrap()
        .is_empty());
    // Removing what is not there is fine (cleanup after a failed order).
    block(p.remove_txt(&name, &b)).unwrap();
}

#[test]
fn wrong_tsig_secret_is_a_named_error_and_changes_nothing() {
    let peer = Peer::start();
    let name = challenge_name("example.test");
    let wrong = base64_encode(&[7u8; 32]);
    let p = peer.provider_with(
        "example.test",
        &peer.env["TSIG256_NAME"],
        TsigAlgorithm::HmacSha256,
        &wrong,
    );
    let e = block(p.add_txt(&name, &value("x"))).unwrap_err();
    assert_eq!(e.code(), "dns-tsig-rejected", "{e}");
    assert!(peer.dig_txt(&name).is_empty());
    // An unknown key name: also rejected by TSIG, nothing changed.
    let p = peer.provider_with(
        "example.test",
        "nosuchkey.",
        TsigAlgorithm::HmacSha256,
        &peer.env["TSIG256_SECRET"],
    );
    let e = block(p.add_txt(&name, &value("x"))).unwrap_err();
    assert_eq!(e.code(), "dns-tsig-rejected", "{e}");
    // The right secret with the wrong algorithm.
    let p = peer.provider_with(
        "example.test",
        &peer.env["TSIG256_NAME"],
        TsigAlgorithm::HmacSha512,
        &peer.env["TSIG256_SECRET"],
    );
    let e = block(p.add_txt(&name, &value("x"))).unwrap_err();
    assert_eq!(e.code(), "dns-tsig-rejected", "{e}");
    assert!(peer.dig_txt(&name).is_empty());
}

#[test]
fn hmac_sha512_key_works() {
    let peer = Peer::start();
    let p = peer.provider(TsigAlgorithm::HmacSha512);
    let name = challenge_name("sip.example.test");
    let v = value("512");
    block(p.add_txt(&name, &v)).unwrap();
    assert_eq!(peer.dig_txt(&name), vec![v.clone()]);
    block(p.remove_txt(&name, &v)).unwrap();
    assert!(peer.dig_txt(&name).is_empty());
}

#[test]
fn wildcard_challenge_goes_to_the_base_name() {
    let peer = Peer::start();
    let p = peer.provider(TsigAlgorithm::HmacSha256);
    let name = challenge_name("*.example.test");
    assert_eq!(name, "_acme-challenge.example.test");
    let v = value("wild");
    block(p.add_txt(&name, &v)).unwrap();
    assert_eq!(
        peer.dig_txt("_acme-challenge.example.test"),
        vec![v.clone()]
    );
    wait_visible(&p, &name, &v);
    block(p.remove_txt(&name, &v)).unwrap();
    assert!(peer.dig_txt(&name).is_empty());
}

#[test]
fn name_outside_the_zone_is_refused_before_sending() {
    let peer = Peer::start();
    let p = peer.provider(TsigAlgorithm::HmacSha256);
    let e = block(p.add_txt("_acme-challenge.pbx.test", &value("z"))).unwrap_err();
    assert!(matches!(e, DnsError::NotInZone(..)), "{e}");
    assert_eq!(e.code(), "dns-not-in-zone");
    assert!(peer.dig_txt("_acme-challenge.pbx.test").is_empty());
}

#[test]
fn a_zone_the_server_is_not_primary_for_is_refused() {
    // The key is right, but BIND serves no zone lab.example.test: NOTAUTH.
    let peer = Peer::start();
    let p = peer.provider_with(
        "lab.example.test",
        &peer.env["TSIG256_NAME"],
        TsigAlgorithm::HmacSha256,
        &peer.env["TSIG256_SECRET"],
    );
    let name = challenge_name("lab.example.test");
    let e = block(p.add_txt(&name, &value("lab"))).unwrap_err();
    assert_eq!(e.code(), "dns-refused", "{e}");
    assert!(peer.dig_txt(&name).is_empty());
}

#[test]
fn big_answers_fall_back_to_tcp() {
    // 20 values of 43 characters do not fit a 512-byte UDP answer: BIND sets
    // TC and our query must retry over TCP to see them all.
    let peer = Peer::start();
    let p = peer.provider(TsigAlgorithm::HmacSha256);
    let name = challenge_name("big.example.test");
    let mut values: Vec<String> = (0..20).map(|i| value(&format!("v{i}"))).collect();
    for v in &values {
        block(p.add_txt(&name, v)).unwrap();
    }
    values.sort();
    let mut ours = block(propagation::query_txt(peer.server(), &name)).unwrap();
    ours.sort();
    assert_eq!(ours, values);
    assert_eq!(peer.dig_txt(&name), values);
}

#[test]
fn propagation_gives_up_with_a_named_error() {
    let peer = Peer::start();
    let settings = PropagationSettings {
        timeout_secs: 0,
        interval_secs: 1,
        check_ns: true,
    };
    let e = block(propagation::wait_for_txt(
        &[peer.server().to_string()],
        "_acme-challenge.never.example.test",
        &value("never"),
        settings,
    ))
    .unwrap_err();
    assert_eq!(e.code(), "dns-not-propagated", "{e}");
}

#[test]
fn unreachable_server_is_a_named_error() {
    // Nothing listens on this port (bound, never read): UDP times out.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let server = sock.local_addr().unwrap().to_string();
    let p = Rfc2136::new(
        "example.test",
        &server,
        "k.",
        TsigAlgorithm::HmacSha256,
        &base64_encode(&[1u8; 32]),
    )
    .unwrap();
    let e = block(p.add_txt("_acme-challenge.example.test", "v")).unwrap_err();
    assert_eq!(e.code(), "dns-timeout", "{e}");
}

#[test]
fn cli_add_list_remove_masks_secrets_and_the_provider_drives_bind() {
    let peer = Peer::start();
    let pbx = Pbx::new();
    let secret = peer.env["TSIG256_SECRET"].clone();
    pbx.ok_true(&[
        "dns",
        "add",
        "corp",
        "--provider",
        "rfc2136",
        "--zone",
        "Example.Test.",
        "--server",
        peer.server(),
        "--tsig-name",
        &peer.env["TSIG256_NAME"],
        "--tsig-algorithm",
        "hmac-sha256",
        "--tsig-secret",
        &secret,
    ]);
    // The secret from stdin, for the other zone with the sha512 key.
    let out = pbx.run_stdin(
        &[
            "dns",
            "add",
            "sub",
            "--provider",
            "rfc2136",
            "--zone",
            "pbx.test",
            "--server",
            peer.server(),
            "--tsig-name",
            &peer.env["TSIG512_NAME"],
            "--tsig-algorithm",
            "hmac-sha512",
            "--tsig-secret",
            "-",
            "--json",
        ],
        format!("{}\n", peer.env["TSIG512_SECRET"]).as_bytes(),
    );
    out.success();
    pbx.ok_true(&[
        "dns",
        "add",
        "cf",
        "--provider",
        "cloudflare",
        "--zone",
        "lab.example.test",
        "--token",
        "cf-token-0123456789abcdef",
    ]);
    pbx.err(&[
        "dns",
        "add",
        "corp",
        "--provider",
        "cloudflare",
        "--zone",
        "x.test",
        "--token",
        "t0123456789abcdefgh",
    ])
    .expect("dns-provider-exists");
    pbx.err(&[
        "dns",
        "add",
        "bad",
        "--provider",
        "rfc2136",
        "--zone",
        "x.test",
        "--server",
        "127.0.0.1:53",
        "--tsig-name",
        "k",
        "--tsig-algorithm",
        "hmac-sha256",
        "--tsig-secret",
        "not base64!",
    ])
    .expect("bad-dns-config");
    // Missing rfc2136 options: a usage error.
    pbx.run(&[
        "dns",
        "add",
        "x",
        "--provider",
        "rfc2136",
        "--zone",
        "x.test",
    ])
    .usage_error();

    // The peer is not on port 53, so the zone's NS servers cannot be asked
    // here (see ns_check_asks_the_servers_the_zone_names).
    let s = pbx.ok(&["dns", "set", "--check-ns", "false"]);
    assert_eq!(s["check_ns"], false);
    assert_eq!(s["propagation_timeout"], 120);
    let list = pbx.ok(&["dns", "list"]);
    let text = list.to_string();
    assert!(!text.contains(&secret), "{text}");
    assert!(!text.contains(&peer.env["TSIG512_SECRET"]), "{text}");
    assert!(!text.contains("cf-token-0123456789abcdef"), "{text}");
    let human = pbx.run(&["dns", "list"]);
    human.success();
    assert!(!human.stdout.contains(&secret));
    let rows = as_array(list);
    assert_eq!(rows.len(), 3);
    let corp = rows.iter().find(|r| r["name"] == "corp").unwrap();
    assert_eq!(corp["provider"], "rfc2136");
    assert_eq!(corp["zone"], "example.test");
    assert_eq!(corp["tsig_algorithm"], "hmac-sha256");
    assert_eq!(corp["server"], peer.server());

    // The stored provider for a name (longest zone) really drives BIND.
    let store_dir = pbx.data.clone();
    let store = pbx_certd::ops::open_store(&store_dir).unwrap();
    let pick = |n: &str| {
        pbx_certd::dns::provider_for(&store, n)
            .unwrap()
            .map(|p| p.name)
    };
    assert_eq!(pick("*.example.test").as_deref(), Some("corp"));
    assert_eq!(pick("www.example.test").as_deref(), Some("corp"));
    assert_eq!(pick("www.lab.example.test").as_deref(), Some("cf"));
    assert_eq!(pick("*.lab.example.test").as_deref(), Some("cf"));
    assert_eq!(pick("pbx.test").as_deref(), Some("sub"));
    assert_eq!(pick("other.test"), None);
    let entry = pbx_certd::dns::provider_for(&store, "*.pbx.test")
        .unwrap()
        .unwrap();
    let provider = entry.provider(&store).unwrap();
    let name = challenge_name("*.pbx.test");
    block(provider.add_txt(&name, &value("cli"))).unwrap();
    assert_eq!(peer.dig_txt(&name), vec![value("cli")]);
    block(provider.remove_txt(&name, &value("cli"))).unwrap();
    assert!(peer.dig_txt(&name).is_empty());
    let cf = pbx_certd::dns::provider_for(&store, "lab.example.test")
        .unwrap()
        .unwrap();
    // Cloudflare is usable (its API is tested in tests/dns_cloudflare.rs).
    assert!(cf.provider(&store).is_ok());

    // The ACME client's path: prepare (store) → publish (add + wait) → cleanup.
    let ch = pbx_certd::dns01::Challenge::prepare(&store, "*.pbx.test", &value("acme"))
        .unwrap()
        .unwrap();
    assert_eq!(ch.fqdn, "_acme-challenge.pbx.test");
    assert_eq!(ch.provider_name, "sub");
    block(ch.publish()).unwrap();
    assert_eq!(peer.dig_txt(&ch.fqdn), vec![value("acme")]);
    block(ch.cleanup()).unwrap();
    assert!(peer.dig_txt(&ch.fqdn).is_empty());
    assert!(
        pbx_certd::dns01::Challenge::prepare(&store, "www.other.test", "v")
            .unwrap()
            .is_none()
    );
    // With the NS check on, publish also waits for 127.0.0.1:53 (the zone's
    // NS): it gives up with the named error, and cleanup still works.
    pbx_certd::dns::set_propagation(&store, Some(0), None, Some(true)).unwrap();
    let ch = pbx_certd::dns01::Challenge::prepare(&store, "pbx.test", &value("ns"))
        .unwrap()
        .unwrap();
    assert_eq!(
        block(ch.servers()).unwrap(),
        vec![peer.server().to_string(), "127.0.0.1:53".to_string()]
    );
    let e = block(ch.publish()).unwrap_err();
    assert_eq!(e.code(), "dns-not-propagated", "{e}");
    block(ch.cleanup()).unwrap();
    assert!(peer.dig_txt(&ch.fqdn).is_empty());
    drop(store);

    pbx.ok_true(&["dns", "remove", "sub"]);
    pbx.err(&["dns", "remove", "sub"])
        .expect("no-such-dns-provider");
    assert_eq!(as_array(pbx.ok(&["dns", "list"])).len(), 2);
    let s = pbx.ok(&["dns", "set", "--propagation-timeout", "30"]);
    assert_eq!(s["propagation_timeout"], 30);
    assert_eq!(s["propagation_interval"], 2);
    assert_eq!(s["check_ns"], true);
    pbx.err(&["dns", "set", "--propagation-interval", "0"])
        .expect("bad-dns-config");
}

#[test]
fn ns_check_asks_the_servers_the_zone_names() {
    // The zone's NS RRset names ns1.example.test, whose glue address is
    // 127.0.0.1: the NS check asks 127.0.0.1:53, not the peer's own port,
    // where the record is not (nothing of ours listens there), so the check
    // must not pass although the primary has the record.
    let peer = Peer::start();
    let ns = block(propagation::zone_servers(peer.server(), "example.test")).unwrap();
    assert_eq!(ns, vec!["127.0.0.1:53".to_string()]);
    let p = peer.provider(TsigAlgorithm::HmacSha256);
    let name = challenge_name("ns.example.test");
    let v = value("ns");
    block(p.add_txt(&name, &v)).unwrap();
    let only_primary = [peer.server().to_string()];
    let settings = PropagationSettings {
        timeout_secs: 0,
        interval_secs: 1,
        check_ns: true,
    };
    block(propagation::wait_for_txt(
        &only_primary,
        &name,
        &v,
        settings,
    ))
    .unwrap();
    let with_ns = [peer.server().to_string(), ns[0].clone()];
    let e = block(propagation::wait_for_txt(&with_ns, &name, &v, settings)).unwrap_err();
    assert_eq!(e.code(), "dns-not-propagated");
    assert!(e.to_string().contains("127.0.0.1:53"), "{e}");
}

fn free_port() -> u16 {
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A UDP "server" that answers each request once with `reply(request)`.
fn fake_server(reply: fn(&[u8]) -> Vec<u8>) -> String {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let _ = sock.send_to(&reply(&buf[..n]), from);
        }
    });
    addr
}

fn fake_provider(server: &str) -> Rfc2136 {
    Rfc2136::new(
        "example.test",
        server,
        "k.",
        TsigAlgorithm::HmacSha256,
        &base64_encode(&[1u8; 32]),
    )
    .unwrap()
}

#[test]
fn an_unsigned_success_answer_is_not_believed() {
    // A spoofed NOERROR without TSIG (the request echoed back as an answer)
    // must not count as a successful update.
    let server = fake_server(|req| {
        let mut a = req.to_vec();
        a[2] |= 0x80; // QR
        a[3] &= 0xf0; // RCODE NOERROR
        a[10] = 0; // ARCOUNT 0: drop the TSIG record
        a[11] = 0;
        a
    });
    let e = block(fake_provider(&server).add_txt("_acme-challenge.example.test", "v")).unwrap_err();
    assert_eq!(e.code(), "dns-bad-response", "{e}");
}

#[test]
fn garbage_answers_are_named_errors() {
    // Right ID and QR, then nonsense: a header claiming records that are not there.
    let server = fake_server(|req| {
        let mut a = req[..12].to_vec();
        a[2] |= 0x80;
        a[4..12].copy_from_slice(&[0, 1, 0, 9, 0, 9, 0, 9]);
        a.extend_from_slice(&[0xc0, 0xff, 0xff]);
        a
    });
    let e = block(fake_provider(&server).add_txt("_acme-challenge.example.test", "v")).unwrap_err();
    assert_eq!(e.code(), "dns-bad-response", "{e}");
    let e = block(propagation::query_txt(
        &server,
        "_acme-challenge.example.test",
    ))
    .unwrap_err();
    assert_eq!(e.code(), "dns-bad-response", "{e}");
}
