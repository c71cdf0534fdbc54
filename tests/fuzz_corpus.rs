//! The fuzz corpus as a regression test: every committed input under
//! `tests/fuzz/corpus/<target>/` (seeds made from the tests' fixtures by
//! `write_seeds` below, plus every input a fuzz run found crashing, once
//! fixed) goes through its target's entry function in `pbx_certd::fuzz_entry`,
//! the same function the libFuzzer target calls (scripts/fuzz.sh).
//!
//! A panic fails the test with the target and file named. The corpus is
//! small (a few dozen files per target), so this runs in a second natively
//! and stays short under qemu-user.
//!
//! `cargo test --test fuzz_corpus -- --ignored write_seeds` rewrites the
//! seeds (`seed-*` files; found inputs are kept).

mod common;

use std::path::{Path, PathBuf};

use pbx_certd::fuzz_entry::{self, TARGETS};

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/corpus")
        .join(target)
}

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_input_runs_without_panic() {
    fuzz_entry::self_check().expect("fuzz fixtures");
    let mut failures = Vec::new();
    for (target, entry) in TARGETS {
        let files = corpus(target);
        assert!(
            files.len() >= 5,
            "{target}: only {} corpus files in {}",
            files.len(),
            corpus_dir(target).display()
        );
        for file in files {
            let data = std::fs::read(&file).unwrap();
            if std::panic::catch_unwind(|| entry(&data)).is_err() {
                failures.push(format!("{target}: {}", file.display()));
            }
        }
    }
    assert!(failures.is_empty(), "panicked on: {failures:#?}");
}

/// The seeds reach the paths they were made for (so a target that stopped
/// at its first check, or a broken fixture, cannot pass unnoticed).
#[test]
fn seeds_reach_their_paths() {
    let expected: [(&str, &str, &str); 23] = [
        ("import", "domain-chain-key", "ok"),
        ("import", "server-chain-key", "ok"),
        ("import", "root", "ok"),
        ("import", "stir-shaken", "ok"),
        ("import", "sec1-key", "ok"),
        ("import", "rsa-pkcs1", "ok"),
        ("import", "pasted-crlf", "ok"),
        ("import", "domain-no-key", "key-required"),
        ("import", "key-mismatch", "key-mismatch"),
        ("import", "pkcs8-encrypted-key", "encrypted-key"),
        ("import", "unterminated", "bad-pem"),
        ("http_request", "get-root", "answered"),
        ("http_request", "chunked", "answered"),
        ("http_request", "pipelined", "answered"),
        ("tls_client_hello", "domain", "answered"),
        ("tls_client_hello", "acme-tls-alpn", "answered"),
        ("tls_client_hello", "tls12-wildcard", "answered"),
        ("acme_response", "rate-limited", "rate-limited"),
        ("acme_response", "ari", "ari"),
        ("acme_response", "directory-chunked", "directory"),
        ("acme_response", "certificate-der", "certificate"),
        ("dns_answer", "ns-with-glue", "ns"),
        ("dns_answer", "txt-answer", "txt"),
    ];
    let mut wrong = Vec::new();
    for (target, seed, want) in expected {
        let entry = TARGETS.iter().find(|(t, _)| *t == target).unwrap().1;
        let data = std::fs::read(corpus_dir(target).join(format!("seed-{seed}"))).unwrap();
        let got = entry(&data);
        if got != want {
            wrong.push(format!("{target}/seed-{seed}: {got}, expected {want}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

// ---------------------------------------------------------------------------
// Seeds
// ---------------------------------------------------------------------------

use common::{leaf, openssl_text, Pki};

fn write(target: &str, name: &str, data: impl AsRef<[u8]>) {
    let dir = corpus_dir(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("seed-{name}")), data).unwrap();
}

/// `import` input: kind byte, certificate box, NUL, key box.
fn import_input(kind: u8, cert: &str, key: Option<&str>) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(cert.as_bytes());
    if let Some(key) = key {
        out.push(0);
        out.extend_from_slice(key.as_bytes());
    }
    out
}

fn openssl_file(dir: &Path, name: &str, contents: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path.to_str().unwrap().to_owned()
}

fn import_seeds() {
    let (_, tenant_name) = fuzz_entry::TENANT;
    let pki = Pki::new();
    let tmp = tempfile::tempdir().unwrap();
    let domain = pki.leaf(leaf(&[tenant_name]).valid_days(-1, 3650));
    let server = pki.leaf(leaf(&fuzz_entry::SERVER_NAMES).valid_days(-1, 3650));
    let key = domain.key_pem();
    write(
        "import",
        "domain-chain-key",
        import_input(b'a', &pki.chain_pem(&domain), Some(&key)),
    );
    write(
        "import",
        "server-chain-key",
        import_input(b's', &pki.chain_pem(&server), Some(&server.key_pem())),
    );
    write(
        "import",
        "domain-no-key",
        import_input(b'd', &pki.chain_pem(&domain), None),
    );
    write(
        "import",
        "key-mismatch",
        import_input(b'a', &pki.chain_pem(&domain), Some(&server.key_pem())),
    );
    write("import", "root", import_input(b'a', &pki.root.pem(), None));
    write(
        "import",
        "roots-two",
        import_input(
            b'r',
            &format!("{}{}", pki.root.pem(), pki.inter.pem()),
            None,
        ),
    );
    let stir = pki.leaf(leaf(&[]).cn("SHAKEN 1234").tn_auth_list());
    write(
        "import",
        "stir-shaken",
        import_input(b't', &pki.chain_pem(&stir), Some(&stir.key_pem())),
    );
    let expired = pki.leaf(leaf(&["old.example.test"]).valid_days(-100, -10));
    write(
        "import",
        "expired",
        import_input(b'a', &pki.chain_pem(&expired), Some(&expired.key_pem())),
    );
    let self_signed = leaf(&["self.example.test"]).self_signed();
    write(
        "import",
        "self-signed",
        import_input(b'a', &self_signed.pem(), Some(&self_signed.key_pem())),
    );
    // What admins paste: CRLF, bag attributes, text between blocks.
    let pasted = format!(
        "Bag Attributes\r\n    localKeyID: 01 02 03\r\nsubject=/CN={tenant_name}\r\n{}\r\nissuer text\r\n{}",
        common::crlf(&domain.pem()),
        common::crlf(&pki.inter.pem())
    );
    write(
        "import",
        "pasted-crlf",
        import_input(b'a', &pasted, Some(&common::crlf(&key))),
    );
    // Other key formats (openssl): SEC1, legacy encrypted, PKCS#8 encrypted.
    let key_file = openssl_file(tmp.path(), "k.pem", &key);
    let sec1 = openssl_text(&["ec", "-in", &key_file], None);
    write(
        "import",
        "sec1-key",
        import_input(b'a', &pki.chain_pem(&domain), Some(&sec1)),
    );
    let legacy = openssl_text(
        &["ec", "-in", &key_file, "-aes128", "-passout", "pass:fuzz"],
        None,
    );
    write(
        "import",
        "legacy-encrypted-key",
        import_input(b'a', &pki.chain_pem(&domain), Some(&legacy)),
    );
    let pkcs8_enc = openssl_text(
        &[
            "pkcs8",
            "-topk8",
            "-in",
            &key_file,
            "-v2",
            "aes-256-cbc",
            "-passout",
            "pass:fuzz",
        ],
        None,
    );
    write(
        "import",
        "pkcs8-encrypted-key",
        import_input(b'a', &pki.chain_pem(&domain), Some(&pkcs8_enc)),
    );
    // RSA 2048 (PKCS#1 key) and Ed25519, self-signed by openssl.
    for (name, kind, genkey) in [
        ("rsa-pkcs1", b's', &["genrsa", "-traditional", "2048"][..]),
        ("ed25519", b'a', &["genpkey", "-algorithm", "ed25519"][..]),
    ] {
        let key = openssl_text(genkey, None);
        let key_file = openssl_file(tmp.path(), &format!("{name}.pem"), &key);
        let host = format!("{name}.example.test");
        let cert = openssl_text(
            &[
                "req",
                "-x509",
                "-key",
                &key_file,
                "-subj",
                &format!("/CN={host}"),
                "-addext",
                &format!("subjectAltName=DNS:{host}"),
                "-days",
                "3650",
            ],
            None,
        );
        write("import", name, import_input(kind, &cert, Some(&key)));
    }
    // Broken boxes.
    write(
        "import",
        "unterminated",
        import_input(b'a', "-----BEGIN CERTIFICATE-----\nAAEC\n", None),
    );
    write(
        "import",
        "bad-base64",
        import_input(
            b'a',
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
            None,
        ),
    );
    let der = domain.der();
    let truncated = common::pem_encode("CERTIFICATE", &der[..der.len() / 2]);
    write(
        "import",
        "truncated-der",
        import_input(b'a', &truncated, None),
    );
}

fn http_seeds() {
    let requests: [(&str, String); 14] = [
        ("get-root", "GET / HTTP/1.1\r\nHost: pbx.example.test\r\n\r\n".into()),
        (
            "get-login",
            "GET /login HTTP/1.1\r\nHost: pbx.example.test\r\nAccept: text/html\r\n\r\n".into(),
        ),
        (
            "post-login",
            "POST /login HTTP/1.1\r\nHost: pbx.example.test\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 36\r\nOrigin: https://pbx.example.test\r\nSec-Fetch-Site: same-origin\r\n\r\npassword=correct+horse&csrf=abc%2Fd".into(),
        ),
        (
            "api-basic",
            "GET /api/certs HTTP/1.1\r\nHost: pbx\r\nAuthorization: Basic YWRtaW46c2VjcmV0LXBhc3N3b3Jk\r\n\r\n".into(),
        ),
        (
            "api-import-json",
            "POST /api/import HTTP/1.1\r\nHost: pbx\r\nAuthorization: Basic YWRtaW46eA==\r\nContent-Type: application/json\r\nContent-Length: 43\r\n\r\n{\"cert\":\"-----BEGIN\",\"key\":null,\"kind\":\"x\"}".into(),
        ),
        (
            "api-cookie-csrf",
            "DELETE /api/certs/abcdef HTTP/1.1\r\nHost: pbx\r\nCookie: a=b; __Host-pbx-certd=0123456789abcdef\r\nX-CSRF-Token: t\r\n\r\n".into(),
        ),
        (
            "chunked",
            "POST /api/tenants HTTP/1.1\r\nHost: pbx\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".into(),
        ),
        (
            "two-lengths",
            "POST /login HTTP/1.1\r\nHost: pbx\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd".into(),
        ),
        (
            "huge-length",
            "POST /api/import HTTP/1.1\r\nHost: pbx\r\nContent-Length: 99999999999\r\n\r\n".into(),
        ),
        ("head", "HEAD /ca.pem HTTP/1.1\r\nHost: pbx\r\n\r\n".into()),
        (
            "pipelined",
            "GET /acme HTTP/1.1\r\nHost: pbx\r\n\r\nGET /api/resolve?sni=pbx.acme.test HTTP/1.1\r\nHost: pbx\r\n\r\nGET /.well-known/acme-challenge/tok-en_1 HTTP/1.1\r\nHost: pbx\r\nConnection: close\r\n\r\n".into(),
        ),
        (
            "cross-site-post",
            "POST /api/system HTTP/1.1\r\nHost: pbx\r\nSec-Fetch-Site: cross-site\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}".into(),
        ),
        (
            "http10-percent",
            "GET /certs/%2e%2e/%00?x=%zz HTTP/1.0\r\n\r\n".into(),
        ),
        (
            "long-header",
            format!("GET / HTTP/1.1\r\nHost: pbx\r\nX-Long: {}\r\n\r\n", "a".repeat(3000)),
        ),
    ];
    for (name, request) in requests {
        write("http_request", name, request);
    }
}

fn client_hello(sni: &str, alpn: &[&[u8]], tls12_only: bool) -> Vec<u8> {
    use std::sync::Arc;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let name = rustls::pki_types::ServerName::try_from(sni.to_owned()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

fn tls_seeds() {
    let (_, tenant_name) = fuzz_entry::TENANT;
    let cases: [(&str, &str, &[&[u8]], bool); 8] = [
        ("domain", tenant_name, &[b"http/1.1"], false),
        ("server-exact", "exact.example.test", &[], false),
        ("server-wildcard", "a.example.test", &[b"http/1.1"], false),
        ("unknown", "nobody.invalid", &[], false),
        ("no-sni-ip", "127.0.0.1", &[], false),
        ("acme-tls-alpn", tenant_name, &[b"acme-tls/1"], false),
        ("tls12-domain", tenant_name, &[b"http/1.1"], true),
        ("tls12-wildcard", "b.example.test", &[], true),
    ];
    for (name, sni, alpn, tls12) in cases {
        write("tls_client_hello", name, client_hello(sni, alpn, tls12));
    }
}

fn http_response(status: &str, headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\n");
    for h in headers {
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

fn acme_seeds() {
    let json = ["Content-Type: application/json"];
    let problem = ["Content-Type: application/problem+json"];
    write(
        "acme_response",
        "ari",
        http_response(
            "200 OK",
            &json,
            br#"{"suggestedWindow":{"start":"2026-01-02T03:04:05Z","end":"2026-01-03T03:04:05.123+01:00"},"explanationURL":"https://ca.test/x"}"#,
        ),
    );
    write(
        "acme_response",
        "ari-backwards",
        http_response(
            "200 OK",
            &json,
            br#"{"suggestedWindow":{"start":"2026-02-01T00:00:00Z","end":"2026-01-01T00:00:00Z"}}"#,
        ),
    );
    let dir = br#"{"newNonce":"https://ca.test/nonce","newAccount":"https://ca.test/acct","newOrder":"https://ca.test/order","revokeCert":"https://ca.test/revoke","keyChange":"https://ca.test/kc","renewalInfo":"https://ca.test/ari","meta":{"termsOfService":"https://ca.test/tos","externalAccountRequired":false}}"#;
    let mut chunked =
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    for part in dir.chunks(50) {
        chunked.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        chunked.extend_from_slice(part);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    write("acme_response", "directory-chunked", chunked);
    write(
        "acme_response",
        "rate-limited",
        http_response(
            "429 Too Many Requests",
            &[problem[0], "Retry-After: 3600", "Replay-Nonce: abc"],
            br#"{"type":"urn:ietf:params:acme:error:rateLimited","detail":"too many certificates","status":429}"#,
        ),
    );
    write(
        "acme_response",
        "subproblems",
        http_response(
            "403 Forbidden",
            &problem,
            br#"{"type":"urn:ietf:params:acme:error:rejectedIdentifier","detail":"some names","status":403,"subproblems":[{"type":"urn:ietf:params:acme:error:caa","detail":"CAA forbids","identifier":{"type":"dns","value":"pbx.acme.test"}},{"type":"urn:ietf:params:acme:error:dns"}]}"#,
        ),
    );
    write(
        "acme_response",
        "bad-nonce-bare-json",
        br#"{"type":"urn:ietf:params:acme:error:badNonce","detail":"JWS has an invalid anti-replay nonce"}"#,
    );
    write(
        "acme_response",
        "no-content",
        b"HTTP/1.1 204 No Content\r\nReplay-Nonce: n\r\n\r\n",
    );
    write(
        "acme_response",
        "short-body",
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"a\":1}",
    );
    // The issued certificate (DER, with AKI) as ARI's cert_id reads it.
    let pki = Pki::new();
    let mut builder = leaf(&["pbx.acme.test"]).serial(0x8765_4321);
    builder.params.use_authority_key_identifier_extension = true;
    let issued = pki.leaf(builder);
    write(
        "acme_response",
        "certificate-der",
        http_response(
            "200 OK",
            &["Content-Type: application/pkix-cert"],
            &issued.der(),
        ),
    );
    write(
        "acme_response",
        "certificate-chain-pem",
        http_response(
            "200 OK",
            &["Content-Type: application/pem-certificate-chain"],
            pki.chain_pem(&issued).as_bytes(),
        ),
    );
}

fn dns_seeds() {
    use domain::base::iana::{Class, Opcode, Rcode, Rtype};
    use domain::base::{Message, MessageBuilder, Name, Ttl};
    use domain::rdata::rfc1035::{Ns, Txt, A};
    use domain::rdata::Aaaa;
    use std::str::FromStr;

    let zone: Name<Vec<u8>> = Name::from_str(&format!("{}.", fuzz_entry::DNS_ZONE)).unwrap();
    let record: Name<Vec<u8>> = Name::from_str(&format!("{}.", fuzz_entry::DNS_RECORD)).unwrap();
    let query = |name: &Name<Vec<u8>>, rtype: Rtype, opcode: Opcode| {
        let mut b = MessageBuilder::new_vec();
        b.header_mut().set_id(0x1234);
        b.header_mut().set_opcode(opcode);
        let mut q = b.question();
        q.push((name, rtype, Class::IN)).unwrap();
        Message::from_octets(q.finish()).unwrap()
    };

    let update = query(&zone, Rtype::SOA, Opcode::UPDATE);
    for (name, rcode) in [
        ("update-noerror", Rcode::NOERROR),
        ("update-refused", Rcode::REFUSED),
        ("update-notauth", Rcode::NOTAUTH),
        ("update-notzone", Rcode::NOTZONE),
    ] {
        let answer = MessageBuilder::new_vec()
            .start_answer(&update, rcode)
            .unwrap()
            .finish();
        write("dns_answer", name, answer);
    }

    let txt_query = query(&record, Rtype::TXT, Opcode::QUERY);
    let mut txt = MessageBuilder::new_vec()
        .start_answer(&txt_query, Rcode::NOERROR)
        .unwrap();
    for value in ["fuzz", &"long-value-".repeat(30)] {
        let data = Txt::<Vec<u8>>::build_from_slice(value.as_bytes()).unwrap();
        txt.push((&record, Class::IN, Ttl::from_secs(60), data))
            .unwrap();
    }
    write("dns_answer", "txt-answer", txt.finish());
    let nx = MessageBuilder::new_vec()
        .start_answer(&txt_query, Rcode::NXDOMAIN)
        .unwrap()
        .finish();
    write("dns_answer", "nxdomain", nx);
    let mut tc = MessageBuilder::new_vec()
        .start_answer(&txt_query, Rcode::NOERROR)
        .unwrap();
    tc.header_mut().set_tc(true);
    write("dns_answer", "truncated", tc.finish());

    let ns_query = query(&zone, Rtype::NS, Opcode::QUERY);
    let mut ns = MessageBuilder::new_vec()
        .start_answer(&ns_query, Rcode::NOERROR)
        .unwrap();
    let ns1: Name<Vec<u8>> = Name::from_str("ns1.example.test.").unwrap();
    let ns2: Name<Vec<u8>> = Name::from_str("ns2.elsewhere.test.").unwrap();
    for host in [&ns1, &ns2] {
        ns.push((
            &zone,
            Class::IN,
            Ttl::from_secs(3600),
            Ns::new(host.clone()),
        ))
        .unwrap();
    }
    let mut glue = ns.additional();
    glue.push((
        &ns1,
        Class::IN,
        Ttl::from_secs(3600),
        A::from_octets(192, 0, 2, 53),
    ))
    .unwrap();
    glue.push((
        &ns1,
        Class::IN,
        Ttl::from_secs(3600),
        Aaaa::new("2001:db8::53".parse().unwrap()),
    ))
    .unwrap();
    write("dns_answer", "ns-with-glue", glue.finish());

    // A name whose compression pointer points at itself.
    let mut looped = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
    looped.extend_from_slice(&[0xc0, 12, 0, 16, 0, 1]);
    looped.extend_from_slice(&[
        0xc0, 12, 0, 16, 0, 1, 0, 0, 0, 60, 0, 5, 4, b't', b'e', b'x', b't',
    ]);
    write("dns_answer", "pointer-loop", looped);

    write(
        "dns_answer",
        "zone-file",
        "$ORIGIN example.test.\n$TTL 1800\nexample.test. IN SOA ns1.digitalocean.com. hostmaster.example.test. 1 10800 3600 604800 1800\nexample.test. 1800 IN NS ns1.digitalocean.com.\n@ IN NS ns2.digitalocean.com.\nwww 300 IN A 192.0.2.1\n",
    );
}

/// Rewrites the `seed-*` files of every target from the tests' fixtures.
#[test]
#[ignore = "writes tests/fuzz/corpus; run by hand"]
fn write_seeds() {
    for (target, _) in TARGETS {
        let dir = corpus_dir(target);
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with("seed-") {
                    std::fs::remove_file(e.path()).unwrap();
                }
            }
        }
    }
    import_seeds();
    http_seeds();
    tls_seeds();
    acme_seeds();
    dns_seeds();
}
