//! The web admin's ACME page over a real logged-in HTTPS session against the
//! real daemon binary, with `curl` as the browser: the settings form (read
//! back through `acme show --json` on the CLI), CSRF refusal, the EAB HMAC
//! never written into a page, the status table showing a failed order with
//! its error code when the CA is unreachable (a closed loopback port), and
//! the DNS provider add/remove forms never echoing a secret.

mod common;

use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use common::serve::Daemon;
use common::*;

const PASSWORD: &str = "correct horse battery";

/// A logged-in browser: a cookie jar and the CSRF token.
struct Browser {
    jar: String,
    base: String,
}

impl Browser {
    fn login(pbx: &Pbx, daemon: &Daemon) -> Browser {
        let b = Browser {
            jar: path_str(&pbx.files.join("cookies.txt")).to_string(),
            base: format!("https://{}", daemon.https),
        };
        let (status, _) = b.request(
            &["--data-urlencode", &format!("password={PASSWORD}")],
            "/login",
        );
        assert_eq!(status, 303, "login");
        b
    }

    /// (HTTP status, body).
    fn request(&self, args: &[&str], path: &str) -> (u16, String) {
        let mut cmd = Command::new("curl");
        cmd.args([
            "-sk",
            "-c",
            &self.jar,
            "-b",
            &self.jar,
            "-w",
            "\n%{http_code}",
        ])
        .args(args)
        .arg(format!("{}{path}", self.base));
        let out = run_command(cmd, None);
        out.success();
        let (body, code) = out.stdout.rsplit_once('\n').unwrap();
        (code.trim().parse().unwrap(), body.to_string())
    }

    fn get(&self, path: &str) -> String {
        let (status, body) = self.request(&[], path);
        assert_eq!(status, 200, "GET {path}:\n{body}");
        body
    }

    /// POST a form; `fields` are url-encoded by curl.
    fn post<V: AsRef<str>>(&self, path: &str, fields: &[(&str, V)]) -> (u16, String) {
        let pairs: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_ref()))
            .collect();
        let mut args = vec![];
        for p in &pairs {
            args.extend(["--data-urlencode", p.as_str()]);
        }
        if args.is_empty() {
            args.extend(["-X", "POST"]);
        }
        self.request(&args, path)
    }

    fn csrf(&self) -> String {
        let page = self.get("/acme");
        page.split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_else(|| panic!("no CSRF token on the ACME page:\n{page}"))
            .to_string()
    }
}

fn closed_loopback_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
    // dropped here: nothing listens on the port any more
}

#[test]
fn acme_page_sets_settings_refuses_without_csrf_hides_the_hmac_and_shows_failures() {
    let pbx = Pbx::new();
    pbx.tenant_add("gamma", &["gamma.pbx.test"]);
    pbx.run_stdin(&["admin", "password"], format!("{PASSWORD}\n").as_bytes())
        .success();
    let daemon = pbx.serve(true);
    let web = Browser::login(&pbx, &daemon);

    let page = web.get("/acme");
    assert!(
        page.contains("href=\"/acme\" class=\"on\""),
        "nav link:\n{page}"
    );
    assert!(
        page.contains("value=\"production\" checked"),
        "default preset:\n{page}"
    );
    // ACME is off: nothing will be ordered, so not "pending".
    assert!(page.contains("<td class=\"note\">off</td>"), "{page}");
    assert!(!page.contains(">pending<"), "{page}");
    let before = pbx.ok(&["acme", "show"]);
    assert_eq!(before["enabled"], false);

    let hmac = "c2VjcmV0LWhtYWMta2V5LTAxMjM0NTY3ODlhYmNkZWY";
    let directory = format!("https://127.0.0.1:{}/dir", closed_loopback_port());
    let fields = |csrf: Option<&str>| -> Vec<(&'static str, String)> {
        let mut f = vec![
            ("preset", "custom".to_string()),
            ("directory", directory.clone()),
            ("email", "ops@pbx.test".into()),
            ("enabled", "true".into()),
            ("challenge", "tls-alpn-01".into()),
            ("eab_kid", "kid-1".into()),
            ("eab_hmac", hmac.into()),
            ("check_interval", "3600".into()),
        ];
        if let Some(c) = csrf {
            f.push(("csrf", c.into()));
        }
        f
    };

    // Without the CSRF token (or with a wrong one): refused, nothing changes.
    let (status, body) = web.post("/acme", &fields(None));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("[csrf]"), "{body}");
    let (status, _) = web.post("/acme", &fields(Some("not-the-token")));
    assert_eq!(status, 403);
    assert_eq!(pbx.ok(&["acme", "show"]), before);

    // With it: the CLI sees the new settings.
    let csrf = web.csrf();
    let (status, body) = web.post("/acme", &fields(Some(&csrf)));
    assert_eq!(status, 303, "{body}");
    let show = pbx.ok(&["acme", "show"]);
    assert_eq!(show["directory"], directory.as_str(), "{show}");
    assert_eq!(show["email"], "ops@pbx.test");
    assert_eq!(show["enabled"], true);
    assert_eq!(show["challenge"], "tls-alpn-01");
    assert_eq!(show["eab_kid"], "kid-1");
    assert_eq!(show["check_interval"], 3600);
    let page = web.get("/acme");
    assert!(page.contains("ACME settings saved"), "{page}");
    assert!(page.contains("value=\"custom\" checked"), "{page}");
    assert!(page.contains(&format!("value=\"{directory}\"")), "{page}");
    assert!(page.contains("<option value=\"tls-alpn-01\" selected>"));
    assert!(page.contains("value=\"kid-1\""));

    // Saving again with an empty HMAC field keeps the stored binding; the
    // HMAC is in no page.
    let mut again = fields(Some(&csrf));
    again.retain(|(k, _)| *k != "eab_hmac");
    again.push(("eab_hmac", String::new()));
    again.retain(|(k, _)| *k != "challenge");
    again.push(("challenge", "auto".into()));
    let (status, _) = web.post("/acme", &again);
    assert_eq!(status, 303);
    let show = pbx.ok(&["acme", "show"]);
    assert_eq!(
        (show["eab_kid"].as_str(), show["challenge"].as_str()),
        (Some("kid-1"), Some("auto"))
    );
    assert_eq!(show["eab_hmac"], "********", "binding kept");
    for path in ["/acme", "/certs", "/tenants", "/api/acme"] {
        let (_, body) = web.request(&[], path);
        assert!(!body.contains(hmac), "EAB HMAC in {path}:\n{body}");
    }

    // A bad value comes back as an error with its code; nothing changes.
    let mut bad = fields(Some(&csrf));
    bad.retain(|(k, _)| *k != "check_interval");
    bad.push(("check_interval", "0".into()));
    let (status, _) = web.post("/acme", &bad);
    assert_eq!(status, 303);
    assert!(web.get("/acme").contains("[bad-setting]"));
    assert_eq!(pbx.ok(&["acme", "show"])["check_interval"], 3600);

    // The CA is a closed port: the status table shows the failure and its
    // code (bounded wait for the daemon's attempt).
    let deadline = Instant::now() + Duration::from_secs(90);
    let page = loop {
        let page = web.get("/acme");
        if page.contains("<td class=\"err\">failed</td>") {
            break page;
        }
        assert!(
            Instant::now() < deadline,
            "no failed state on the page:\n{page}"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    let status = pbx.ok(&["acme", "status"]);
    let code = status[0]["last_error"]["code"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(code, "ca-unreachable", "{status}");
    assert!(page.contains(&format!("<code>[{code}]</code>")), "{page}");
    assert!(page.contains("gamma.pbx.test"));
    assert!(page.contains("tenant:gamma"), "{page}");

    // The page's Retry button is `acme retry KEY` on the CLI: the set is
    // queued now; an unknown set is refused with its code. The interval is
    // typed as a time, read back in seconds.
    let retried = pbx.ok(&["acme", "retry", "tenant:gamma"]);
    assert_eq!(retried["names"], serde_json::json!(["gamma.pbx.test"]));
    assert_eq!(
        pbx.err(&["acme", "retry", "tenant:nobody"]).code,
        "not-acme-managed"
    );
    // The same over the JSON API (session cookie + X-CSRF-Token), and the
    // other new routes: propagation settings, pending CSR keys.
    let csrf = web.csrf();
    let api = |method: &str, path: &str, body: Option<&str>| {
        let header = format!("X-CSRF-Token: {csrf}");
        let mut args = vec!["-X", method, "-H", &header];
        if let Some(b) = body {
            args.extend(["-H", "Content-Type: application/json", "--data", b]);
        }
        let (status, text) = web.request(&args, path);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        (status, v)
    };
    let (status, v) = api("POST", "/api/acme/retry", Some(r#"{"key":"tenant:gamma"}"#));
    assert_eq!(
        (status, &v["names"]),
        (200, &serde_json::json!(["gamma.pbx.test"])),
        "{v}"
    );
    let (status, v) = api("POST", "/api/acme/retry", Some(r#"{"key":"nope"}"#));
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("not-acme-managed")),
        "{v}"
    );
    let (status, v) = api("GET", "/api/dns/settings", None);
    assert_eq!(status, 200, "{v}");
    assert!(v["propagation_timeout"].is_u64(), "{v}");
    let (status, made) = api(
        "POST",
        "/api/csr",
        Some(r#"{"names":["api.pbx.test"],"country":"FR"}"#),
    );
    assert_eq!(status, 200, "{made}");
    let (_, keys) = api("GET", "/api/csr/keys", None);
    assert_eq!(keys[0]["key_id"], made["key_id"], "{keys}");
    let key = made["key_id"].as_str().unwrap();
    let (status, v) = api("DELETE", &format!("/api/csr/keys/{key}"), None);
    assert_eq!(
        (status, &v["names"][0]),
        (200, &serde_json::json!("api.pbx.test")),
        "{v}"
    );
    let (_, keys) = api("GET", "/api/csr/keys", None);
    assert_eq!(keys, serde_json::json!([]));
    let (status, v) = api(
        "POST",
        "/api/csr",
        Some(r#"{"names":["api.pbx.test"],"country":"France"}"#),
    );
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("bad-country")),
        "{v}"
    );

    pbx.ok_true(&["acme", "set", "--check-interval", "1h30m"]);
    assert_eq!(pbx.ok(&["acme", "show"])["check_interval"], 5400);
    assert_ne!(
        pbx.run(&["acme", "set", "--check-interval", "90x"]).status,
        0
    );
    assert_eq!(pbx.ok(&["acme", "show"])["check_interval"], 5400);

    // The Certificates page says what the challenges need.
    let pbx_certs = web.get("/certs");
    assert!(pbx_certs.contains("port 80"), "{pbx_certs}");
}

#[test]
fn dns_provider_forms_add_and_remove_without_showing_secrets() {
    let pbx = Pbx::new();
    pbx.run_stdin(&["admin", "password"], format!("{PASSWORD}\n").as_bytes())
        .success();
    let daemon = pbx.serve(true);
    let web = Browser::login(&pbx, &daemon);
    let csrf = web.csrf();
    let tsig = "dHNpZy1zZWNyZXQtMDEyMzQ1Njc4OWFiY2RlZg==";
    let token = "cf-token-0123456789abcdefghij";

    let rfc = [
        ("provider", "rfc2136"),
        ("name", "bind"),
        ("zone", "pbx.test"),
        ("server", "127.0.0.1:53"),
        ("tsig_name", "acme-key"),
        ("tsig_algorithm", "hmac-sha512"),
        ("tsig_secret", tsig),
    ];
    let (status, _) = web.post("/acme/dns/add", &rfc);
    assert_eq!(status, 403, "no CSRF token");
    assert_eq!(as_array(pbx.ok(&["dns", "list"])).len(), 0);

    let mut with = rfc.to_vec();
    with.push(("csrf", csrf.as_str()));
    let (status, _) = web.post("/acme/dns/add", &with);
    assert_eq!(status, 303);
    let cf = [
        ("csrf", csrf.as_str()),
        ("provider", "cloudflare"),
        ("name", "cf"),
        ("zone", "other.test"),
        ("token", token),
    ];
    let (status, _) = web.post("/acme/dns/add", &cf);
    assert_eq!(status, 303);
    let list = pbx.ok(&["dns", "list"]);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{list}");
    assert!(names.contains(&"bind") && names.contains(&"cf"), "{list}");
    let bind = list
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "bind")
        .unwrap();
    assert_eq!(bind["tsig_algorithm"], "hmac-sha512");
    assert_eq!(bind["server"], "127.0.0.1:53");

    let page = web.get("/acme");
    assert!(page.contains("DNS provider cf added"), "{page}");
    assert!(
        page.contains("acme-key") && page.contains("other.test"),
        "{page}"
    );
    for path in ["/acme", "/tenants"] {
        let body = web.get(path);
        assert!(
            !body.contains(tsig) && !body.contains(&tsig[..24]),
            "TSIG secret in {path}"
        );
        assert!(
            !body.contains(token) && !body.contains(&token[..20]),
            "token in {path}"
        );
    }

    // A form with a missing field is refused with its code.
    let (status, _) = web.post(
        "/acme/dns/add",
        &[
            ("csrf", csrf.as_str()),
            ("provider", "cloudflare"),
            ("name", "x"),
            ("zone", "x.test"),
            ("token", ""),
        ],
    );
    assert_eq!(status, 303);
    assert!(web.get("/acme").contains("[bad-setting]"));
    assert_eq!(as_array(pbx.ok(&["dns", "list"])).len(), 2);

    // Remove: a confirmation page names the provider and its zone first.
    let confirm = web.get("/acme/dns/remove?name=bind");
    assert!(
        confirm.contains("Remove the") && confirm.contains("bind") && confirm.contains("pbx.test"),
        "{confirm}"
    );
    assert!(
        confirm.contains(r#"name="confirm" value="yes""#),
        "{confirm}"
    );
    // CSRF needed.
    let (status, _) = web.post("/acme/dns/remove", &[("name", "bind"), ("confirm", "yes")]);
    assert_eq!(status, 403);
    // A post that skipped the confirmation is refused; the provider stays.
    let (status, _) = web.post(
        "/acme/dns/remove",
        &[("csrf", csrf.as_str()), ("name", "bind")],
    );
    assert_eq!(status, 303);
    assert_eq!(as_array(pbx.ok(&["dns", "list"])).len(), 2);
    assert!(web.get("/acme").contains("needs its confirmation page"));
    // Confirmed: gone.
    let (status, _) = web.post(
        "/acme/dns/remove",
        &[
            ("csrf", csrf.as_str()),
            ("name", "bind"),
            ("confirm", "yes"),
        ],
    );
    assert_eq!(status, 303);
    let list = pbx.ok(&["dns", "list"]);
    assert_eq!(as_array(list.clone()).len(), 1, "{list}");
    assert_eq!(list[0]["name"], "cf");
    let page = web.get("/acme");
    assert!(page.contains("DNS provider bind removed"), "{page}");
    assert!(!page.contains("acme-key"), "{page}");
}
