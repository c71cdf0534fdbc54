//! `csr` and the local CA (`ca init|issue|show`) through the real binary,
//! with `openssl` as the independent peer: it signs our CSR as a test CA (the
//! bought certificate, imported later with no key), verifies the local CA's
//! chains, and handshakes with the daemon serving the issued certificate.

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

fn openssl_ok(args: &[&str], stdin: Option<&[u8]>) -> Out {
    let mut cmd = Command::new("openssl");
    cmd.args(args);
    let out = run_command(cmd, stdin.map(|s| s.to_vec()));
    out.success();
    out
}

/// An openssl test CA (root key + self-signed root) in `pbx.files`.
fn openssl_ca(pbx: &Pbx) -> (String, String) {
    let key = pbx.files.join("testca.key");
    let cert = pbx.files.join("testca.pem");
    openssl_ok(
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "30",
            "-subj",
            "/CN=openssl test CA",
            "-keyout",
            path_str(&key),
            "-out",
            path_str(&cert),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
        None,
    );
    (path_str(&key).to_string(), path_str(&cert).to_string())
}

/// "Buy" a certificate: the openssl test CA signs the CSR at `csr_path`,
/// keeping its SANs; returns the chain (leaf, then the CA) as PEM.
fn buy(pbx: &Pbx, csr_path: &str, file: &str) -> String {
    let (ca_key, ca_cert) = openssl_ca(pbx);
    let bought = pbx.files.join(file);
    openssl_ok(
        &[
            "x509",
            "-req",
            "-in",
            csr_path,
            "-CA",
            &ca_cert,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "20",
            "-copy_extensions",
            "copy",
            "-out",
            path_str(&bought),
        ],
        None,
    );
    let mut chain = std::fs::read_to_string(&bought).unwrap();
    chain += &std::fs::read_to_string(&ca_cert).unwrap();
    chain
}

#[test]
fn csr_key_stays_in_the_store_and_the_bought_cert_imports_without_key() {
    let pbx = Pbx::new();
    pbx.tenant_add("acme", &["pbx.acme.test", "sip.acme.test"]);
    let v = pbx.ok(&["csr", "--name", "pbx.acme.test", "--name", "SIP.acme.test."]);
    let csr = v["csr"].as_str().unwrap().to_string();
    assert!(
        csr.starts_with("-----BEGIN CERTIFICATE REQUEST-----"),
        "{csr}"
    );
    assert!(!v.to_string().contains("PRIVATE KEY"));
    assert_eq!(v["key_type"], "p256");
    assert_eq!(
        str_list(&v, "names"),
        vec!["pbx.acme.test", "sip.acme.test"]
    );
    // The text form prints just the PEM CSR on stdout.
    let text = pbx.run(&["csr", "--name", "other.acme.test"]);
    text.success();
    assert!(text
        .stdout
        .starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
    assert!(!text.stdout.contains("PRIVATE KEY"));

    // openssl checks the CSR's signature and sees the names.
    let csr_path = pbx.file("req.csr", &csr);
    let out = openssl_ok(
        &["req", "-in", &csr_path, "-noout", "-verify", "-text"],
        None,
    );
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        all.contains("verify OK") || all.contains("Certificate request self-signature verify OK"),
        "{all}"
    );
    assert!(
        all.contains("DNS:pbx.acme.test") && all.contains("DNS:sip.acme.test"),
        "{all}"
    );
    assert!(
        all.contains("CN = pbx.acme.test") || all.contains("CN=pbx.acme.test"),
        "{all}"
    );

    // "Buy" it: the openssl test CA signs the CSR, keeping its SANs.
    let chain = buy(&pbx, &csr_path, "bought.crt");
    // Import with NO key: rule 7 finds the key the csr command stored.
    let imported = pbx.import_ok(chain.as_bytes(), None, &[]);
    assert_eq!(imported["kind"], "domain");
    assert_eq!(imported["tenant"], "acme");
    let id = imported["id"].as_str().unwrap().to_string();
    let certs = pbx.certs();
    let c = by_id(&certs, &id);
    assert_eq!(c["key_type"], "p256");
    assert_eq!(c["source"], "upload");
    let r = pbx.resolve(Some("sip.acme.test"));
    assert_eq!(r["id"], id.as_str());
    assert_eq!(r["match"], "domain");

    // Control: a certificate for a key the PBX never made still needs its key.
    let stranger = leaf(&["pbx.acme.test"]).self_signed();
    pbx.import_err(stranger.pem(), None, &[])
        .expect("key-required");
}

/// Write a PEM CSR, check its signature with `openssl req -verify`; returns
/// the file's path and openssl's text.
fn verify_csr(pbx: &Pbx, name: &str, csr: &str) -> (String, String) {
    let csr_path = pbx.file(name, csr);
    let out = openssl_ok(
        &["req", "-in", &csr_path, "-noout", "-verify", "-text"],
        None,
    );
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(all.contains("verify OK"), "{all}");
    (csr_path.to_string(), all)
}

#[test]
fn csr_rsa2048_verifies_and_the_bought_cert_imports_without_key() {
    let pbx = Pbx::new();
    pbx.tenant_add("acme", &["pbx.acme.test"]);
    let v = pbx.ok(&["csr", "--name", "pbx.acme.test", "--key-type", "rsa2048"]);
    assert_eq!(v["key_type"], "rsa2048");
    assert!(!v.to_string().contains("PRIVATE KEY"));
    let csr = v["csr"].as_str().unwrap().to_string();
    let (csr_path, text) = verify_csr(&pbx, "rsa.csr", &csr);
    assert!(text.contains("Public-Key: (2048 bit)"), "{text}");
    assert!(text.contains("sha256WithRSAEncryption"), "{text}");
    assert!(text.contains("DNS:pbx.acme.test"), "{text}");

    let chain = buy(&pbx, &csr_path, "bought-rsa.crt");
    // No key: the stored RSA key from `csr` matches it.
    let imported = pbx.import_ok(chain.as_bytes(), None, &[]);
    let id = imported["id"].as_str().unwrap().to_string();
    let certs = pbx.certs();
    assert_eq!(by_id(&certs, &id)["key_type"], "rsa2048");
    assert_eq!(pbx.resolve(Some("pbx.acme.test"))["id"], id.as_str());
}

/// Issue 14 item 9: the subject OV/EV vendors ask for (RFC 5280 §4.1.2.4:
/// C, ST, L, O, OU before the CN), a country that is not two letters
/// refused by name, and the CSR keys listed while they wait for their
/// certificate (`csr-keys list`), gone once it is imported or deleted.
#[test]
fn csr_subject_attributes_and_pending_keys() {
    let pbx = Pbx::new();
    pbx.tenant_add("acme", &["pbx.acme.test"]);
    let subject = [
        "--org",
        "Example GmbH",
        "--org-unit",
        "Voice",
        "--locality",
        "Cologne",
        "--state",
        "NRW",
        "--country",
        "de",
    ];
    let mut args = vec!["csr", "--name", "pbx.acme.test"];
    args.extend(subject);
    let v = pbx.ok(&args);
    let (csr_path, text) = verify_csr(&pbx, "ov.csr", v["csr"].as_str().unwrap());
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("Subject:"))
        .unwrap_or_else(|| panic!("no Subject line:\n{text}"));
    assert_eq!(
        line.trim(),
        "Subject: C = DE, ST = NRW, L = Cologne, O = Example GmbH, OU = Voice, CN = pbx.acme.test",
        "{text}"
    );
    let other = pbx.ok(&["csr", "--name", "other.acme.test"]);

    for bad in ["DEU", "D", "1A"] {
        let a = ["csr", "--name", "x.acme.test", "--country", bad];
        assert_eq!(pbx.err(&a).code, "bad-country", "{bad}");
    }
    let long = "x".repeat(65);
    assert_eq!(
        pbx.err(&["csr", "--name", "x.acme.test", "--org", &long])
            .code,
        "bad-subject"
    );

    // Both keys wait; nothing was stored for the refused ones.
    let list = as_array(pbx.ok(&["csr-keys", "list"]));
    // Oldest first (both may carry the same second: then by name).
    let names: Vec<&str> = list
        .iter()
        .map(|p| p["names"][0].as_str().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(sorted, ["other.acme.test", "pbx.acme.test"], "{list:?}");
    let created: Vec<&str> = list
        .iter()
        .map(|p| p["created"].as_str().unwrap())
        .collect();
    assert!(created[0] <= created[1], "{list:?}");
    let pbx_key = list
        .iter()
        .find(|p| p["names"][0] == "pbx.acme.test")
        .unwrap();
    assert_eq!(pbx_key["key_id"], v["key_id"]);
    assert!(list.iter().all(|p| p["key_type"] == "p256"), "{list:?}");
    assert!(pbx_key["created"].as_str().unwrap().ends_with('Z'));

    // The bought certificate takes its key: no longer pending.
    let chain = buy(&pbx, &csr_path, "ov.crt");
    pbx.import_ok(chain.as_bytes(), None, &[]);
    let list = as_array(pbx.ok(&["csr-keys", "list"]));
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["key_id"], other["key_id"]);

    // Deleted: gone, and a second delete finds nothing.
    let key = other["key_id"].as_str().unwrap();
    let deleted = pbx.ok(&["csr-keys", "delete", &key[..12]]);
    assert_eq!(deleted["names"][0], "other.acme.test");
    assert!(as_array(pbx.ok(&["csr-keys", "list"])).is_empty());
    assert_eq!(pbx.err(&["csr-keys", "delete", key]).code, "not-found");
}

#[test]
fn csr_errors_are_named() {
    let pbx = Pbx::new();
    pbx.err(&["csr", "--name", "not a name"]).expect("bad-name");
    pbx.run(&["csr"]).usage_error();
    pbx.run(&["csr", "--name", "a.test", "--key-type", "dsa"])
        .usage_error();
}

#[test]
fn local_ca_issues_a_chain_openssl_verifies_and_the_daemon_serves_it() {
    let pbx = Pbx::new();
    pbx.err(&["ca", "show"]).expect("no-ca");
    pbx.tenant_add("acme", &["pbx.acme.test", "sip.acme.test"]);
    pbx.err(&["ca", "issue", "--tenant", "acme"])
        .expect("no-ca");
    let init = pbx.ok(&["ca", "init"]);
    let root_pem = init["pem"].as_str().unwrap().to_string();
    pbx.err(&["ca", "init"]).expect("ca-exists");
    let show = pbx.run(&["ca", "show"]);
    show.success();
    assert_eq!(show.stdout, root_pem);
    assert!(!show.stdout.contains("PRIVATE KEY"));
    let root = pbx.file("localca.pem", &root_pem);
    let text = openssl_ok(&["x509", "-in", &root, "-noout", "-text"], None).stdout;
    assert!(text.contains("CA:TRUE"), "{text}");
    assert!(text.contains("Certificate Sign"), "{text}");

    pbx.err(&["ca", "issue", "--tenant", "nobody"])
        .expect("no-such-tenant");

    // Issue while the daemon runs: the command goes over the control socket.
    pbx.run_stdin(&["admin", "password"], b"correct horse battery\n")
        .success();
    let daemon = pbx.serve(false);
    let issued = pbx.ok(&["ca", "issue", "--tenant", "acme"]);
    assert_eq!(issued["kind"], "domain");
    assert_eq!(issued["tenant"], "acme");
    assert_eq!(
        str_list(&issued, "names"),
        vec!["pbx.acme.test", "sip.acme.test"]
    );
    let id = issued["id"].as_str().unwrap().to_string();
    let certs = pbx.certs();
    assert_eq!(by_id(&certs, &id)["source"], "local-ca");
    assert_eq!(by_id(&certs, &id)["key_type"], "p256");
    // Without --client: a server certificate only (EKU serverAuth).
    assert_eq!(issued["eku"], serde_json::json!(["server-auth"]));
    assert_eq!(
        by_id(&certs, &id)["eku"],
        serde_json::json!(["server-auth"])
    );

    // openssl verifies the stored chain against the local CA's root alone.
    let chain = pbx.ok(&["cert", "show", &id])["pem"]
        .as_str()
        .unwrap()
        .to_string();
    let leaf_pem = pem_certs(&chain);
    let leaf_file = pbx.file("leaf.pem", pem_encode("CERTIFICATE", &leaf_pem[0]));
    let out = openssl_ok(
        &[
            "verify",
            "-CAfile",
            &root,
            "-purpose",
            "sslserver",
            "-verify_hostname",
            "sip.acme.test",
            &leaf_file,
        ],
        None,
    );
    assert!(out.stdout.contains(": OK"), "{}", out.describe());

    // The running daemon serves it for the tenant's name, and a client that
    // trusts only the local CA's root accepts the handshake.
    let r = pbx.resolve(Some("pbx.acme.test"));
    assert_eq!(r["id"], id.as_str());
    assert_eq!(r["match"], "domain");
    let out = openssl_ok(
        &[
            "s_client",
            "-connect",
            &daemon.https.to_string(),
            "-servername",
            "pbx.acme.test",
            "-verify_hostname",
            "pbx.acme.test",
            "-CAfile",
            &root,
            "-verify_return_error",
        ],
        Some(b""),
    );
    assert!(
        out.stdout.contains("Verify return code: 0 (ok)"),
        "{}",
        out.describe()
    );
    let served = pem_certs(&out.stdout);
    assert_eq!(sha256_hex(&served[0]), id);

    // The same through the JSON API (HTTP Basic), and dns commands with the
    // daemon up.
    let api = |method: &str, path: &str, body: Option<&str>| -> Value {
        let mut cmd = Command::new("curl");
        cmd.args([
            "-sk",
            "-u",
            "admin:correct horse battery",
            "-X",
            method,
            &format!("https://{}/api{path}", daemon.https),
        ]);
        if method == "POST" {
            let b = body.unwrap_or("{}");
            cmd.args(["-H", "Content-Type: application/json", "--data", b]);
        }
        let out = run_command(cmd, None);
        out.success();
        out.json()
    };
    assert_eq!(api("GET", "/ca", None)["pem"], root_pem.as_str());
    let csr = api("POST", "/csr", Some(r#"{"names":["web.acme.test"]}"#));
    assert!(csr["csr"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
    assert!(api(
        "POST",
        "/csr",
        Some(r#"{"names":["a.test"],"key_type":"rsa4096"}"#)
    )["error"]["code"]
        .is_string());
    let rsa = api(
        "POST",
        "/csr",
        Some(r#"{"names":["rsa.acme.test"],"key_type":"rsa2048"}"#),
    );
    assert_eq!(rsa["key_type"], "rsa2048");
    assert_eq!(api("POST", "/ca/init", None)["error"]["code"], "ca-exists");
    pbx.ok_true(&[
        "dns",
        "add",
        "cf",
        "--provider",
        "cloudflare",
        "--zone",
        "acme.test",
        "--token",
        "cf-token-0123456789abcdef",
    ]);
    let list = api("GET", "/dns", None);
    assert_eq!(list[0]["name"], "cf");
    assert!(!list.to_string().contains("cf-token-0123456789abcdef"));
    assert_eq!(
        api("DELETE", "/dns/cf", None),
        serde_json::json!({"ok": true})
    );
    assert_eq!(as_array(pbx.ok(&["dns", "list"])).len(), 0);

    // The web admin's CSR page: log in, read the CSRF token, post the form,
    // get the CSR as a download.
    let jar = pbx.files.join("cookies.txt");
    let jar = path_str(&jar);
    let base = format!("https://{}", daemon.https);
    let curl = |args: &[&str]| {
        let mut cmd = Command::new("curl");
        cmd.args(["-sk", "-c", jar, "-b", jar]).args(args);
        let out = run_command(cmd, None);
        out.success();
        out.stdout
    };
    curl(&[
        "-X",
        "POST",
        "--data-urlencode",
        "password=correct horse battery",
        &format!("{base}/login"),
    ]);
    let page = curl(&[&format!("{base}/csr")]);
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("no CSRF token on the CSR page:\n{page}"))
        .to_string();
    let answer = curl(&[
        "-D",
        "-",
        "-X",
        "POST",
        "--data-urlencode",
        &format!("csrf={csrf}"),
        "--data-urlencode",
        "names=page.acme.test\nsip2.acme.test",
        "--data-urlencode",
        "key_type=p256",
        &format!("{base}/csr"),
    ]);
    let lower = answer.to_ascii_lowercase();
    assert!(
        lower.contains("content-disposition: attachment; filename=\"page.acme.test.csr\""),
        "{answer}"
    );
    let pem_start = answer.find("-----BEGIN CERTIFICATE REQUEST-----").unwrap();
    let csr_file = pbx.file("page.csr", &answer[pem_start..]);
    let out = openssl_ok(
        &["req", "-in", &csr_file, "-noout", "-verify", "-text"],
        None,
    );
    assert!(
        out.stdout.contains("DNS:sip2.acme.test"),
        "{}",
        out.describe()
    );
    assert!(!answer.contains("PRIVATE KEY"));

    // The tenants page lists DNS providers (masked) and links the CA root.
    pbx.ok_true(&[
        "dns",
        "add",
        "cf2",
        "--provider",
        "cloudflare",
        "--zone",
        "acme.test",
        "--token",
        "cf-token-0123456789abcdef",
    ]);
    let tenants = curl(&[&format!("{base}/tenants")]);
    assert!(tenants.contains("DNS providers"), "{tenants}");
    assert!(tenants.contains("cf2") && tenants.contains("acme.test"));
    assert!(!tenants.contains("cf-token-0123456789abcdef"));
    assert!(tenants.contains("href=\"/ca.pem\""));
    assert_eq!(curl(&[&format!("{base}/ca.pem")]), root_pem);
}

/// `ca issue --client` adds clientAuth (for `--tls-connect ...,client-cert=`);
/// `certs --json` and the import result say which EKU a certificate has
/// (`any` for an upload without the extension), and openssl agrees.
#[test]
fn ca_issue_client_adds_client_auth_and_certs_json_shows_eku() {
    let pbx = Pbx::new();
    pbx.tenant_add("acme", &["pbx.acme.test"]);
    pbx.tenant_add("globex", &["pbx.globex.test"]);
    pbx.ok(&["ca", "init"]);
    let client = pbx.ok(&["ca", "issue", "--tenant", "acme", "--client"]);
    assert_eq!(
        client["eku"],
        serde_json::json!(["server-auth", "client-auth"])
    );
    let server = pbx.ok(&["ca", "issue", "--tenant", "globex"]);
    assert_eq!(server["eku"], serde_json::json!(["server-auth"]));
    // An upload without the EKU extension: any usage (RFC 5280 §4.2.1.12).
    let pki = Pki::new();
    let l = pki.leaf(leaf(&["www.example.com"]));
    let upload = pbx.import_ok(pki.chain_pem(&l), Some(&l.key_pem()), &[]);
    assert_eq!(upload["eku"], serde_json::json!(["any"]));
    let certs = pbx.certs();
    let eku = |v: &Value| by_id(&certs, v["id"].as_str().unwrap())["eku"].clone();
    assert_eq!(
        eku(&client),
        serde_json::json!(["server-auth", "client-auth"])
    );
    assert_eq!(eku(&server), serde_json::json!(["server-auth"]));
    assert_eq!(eku(&upload), serde_json::json!(["any"]));
    // openssl reads the same usages from the stored leaf.
    let chain = pbx.ok(&["cert", "show", client["id"].as_str().unwrap()])["pem"]
        .as_str()
        .unwrap()
        .to_string();
    let leaf_file = pbx.file(
        "client.pem",
        pem_encode("CERTIFICATE", &pem_certs(&chain)[0]),
    );
    let text = openssl_ok(
        &[
            "x509",
            "-in",
            &leaf_file,
            "-noout",
            "-ext",
            "extendedKeyUsage",
        ],
        None,
    )
    .stdout;
    assert!(
        text.contains("TLS Web Server Authentication, TLS Web Client Authentication"),
        "{text}"
    );
    // The human text of an import says it too.
    let out = pbx.run(&["ca", "issue", "--tenant", "acme", "--client"]);
    out.success();
    assert!(
        out.stdout.contains("usage: server-auth, client-auth"),
        "{}",
        out.describe()
    );
}
