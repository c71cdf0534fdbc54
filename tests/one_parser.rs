//! One parser per input (issue 10, item 4), end to end against the running
//! daemon: the CLI, the JSON API and the admin pages accept and refuse the
//! same words with the same codes, and build the same DNS provider config.
//!
//! Each test drives `pbx-certd serve` with default settings on a loopback
//! port, the CLI through the daemon's control socket, and the API and pages
//! with `curl` (as `tests/csr_ca.rs` does).

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

const PASSWORD: &str = "correct horse battery";

/// A daemon with an admin password, and a logged-in `curl` cookie jar.
struct Web {
    pbx: Pbx,
    daemon: serve::Daemon,
    jar: String,
}

impl Web {
    fn start() -> Web {
        let pbx = Pbx::new();
        pbx.run_stdin(&["admin", "password"], format!("{PASSWORD}\n").as_bytes())
            .success();
        let daemon = pbx.serve(false);
        let jar = pbx.files.join("cookies.txt").display().to_string();
        let web = Web { pbx, daemon, jar };
        web.curl(&[
            "-X",
            "POST",
            "--data-urlencode",
            &format!("password={PASSWORD}"),
            &web.url("/login"),
        ]);
        web
    }

    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.daemon.https)
    }

    /// `curl -sk` with the session's cookie jar; stdout.
    fn curl(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("curl");
        cmd.args(["-sk", "-c", &self.jar, "-b", &self.jar])
            .args(args);
        let out = run_command(cmd, None);
        out.success();
        out.stdout
    }

    /// The CSRF token on `page` (GET).
    fn csrf(&self, page: &str) -> String {
        let html = self.curl(&[&self.url(page)]);
        html.split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_else(|| panic!("no CSRF token on {page} (not logged in?):\n{html}"))
            .to_owned()
    }

    /// POST a page form (with its CSRF token from `page`) and follow the
    /// redirect; the page shown in the end (headers included).
    fn post_form(&self, page: &str, action: &str, fields: &[(&str, &str)]) -> String {
        let csrf = self.csrf(page);
        let mut args: Vec<String> = vec!["-i".into(), "-L".into()];
        for (k, v) in [("csrf", csrf.as_str())].iter().chain(fields) {
            args.push("--data-urlencode".into());
            args.push(format!("{k}={v}"));
        }
        args.push(self.url(action));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.curl(&refs)
    }

    /// The JSON API with HTTP Basic.
    fn api(&self, method: &str, path: &str, body: &str) -> Value {
        let mut cmd = Command::new("curl");
        cmd.args(["-sk", "-u", &format!("admin:{PASSWORD}"), "-X", method])
            .arg(self.url(&format!("/api{path}")));
        if method == "POST" {
            cmd.args(["-H", "Content-Type: application/json", "--data", body]);
        }
        let out = run_command(cmd, None);
        out.success();
        out.json()
    }
}

/// The code of the page's error message (`<p class="msg err">
/// <code>[CODE]</code> message`), or `None` when it shows none.
fn page_error(page: &str) -> Option<String> {
    let at = page.find("class=\"msg err\"")?;
    let rest = &page[at..];
    let code = rest.split("<code>[").nth(1)?.split("]</code>").next()?;
    Some(code.to_owned())
}

/// The error code of an API answer.
fn api_code(v: &Value) -> String {
    v["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {v}"))
        .to_owned()
}

/// The CLI's error (code, message) for `args`, through the running daemon.
fn cli_error(pbx: &Pbx, args: &[&str]) -> (String, String) {
    let e = pbx.err(args);
    (e.code.clone(), e.message.clone())
}

#[test]
fn the_csr_form_refuses_an_unknown_key_type_as_the_cli_does() {
    let web = Web::start();
    web.pbx.tenant_add("t", &["t.example"]);
    let (code, message) = cli_error(
        &web.pbx,
        &["tenant", "set", "t", "--acme-key-type", "ed25519"],
    );
    assert_eq!(code, "unsupported-key-type");
    let answer = web.post_form(
        "/csr",
        "/csr",
        &[("names", "page.example"), ("key_type", "ed25519")],
    );
    assert!(
        !answer.contains("BEGIN CERTIFICATE REQUEST"),
        "the page issued a CSR for key type ed25519 (as P-256):\n{answer}"
    );
    assert_eq!(
        page_error(&answer).as_deref(),
        Some(code.as_str()),
        "{answer}"
    );
    assert!(
        answer.contains(&message),
        "the page does not give the CLI's message {message:?}:\n{answer}"
    );
    // Not vacuous: a known key type through the same form is a CSR.
    let ok = web.post_form(
        "/csr",
        "/csr",
        &[("names", "page.example"), ("key_type", "p256")],
    );
    assert!(ok.contains("BEGIN CERTIFICATE REQUEST"), "{ok}");
}

/// `dns list --json` by name, the name itself left out (to compare the
/// entries of two names).
fn providers(pbx: &Pbx) -> Vec<(String, Value)> {
    as_array(pbx.ok(&["dns", "list"]))
        .into_iter()
        .map(|mut p| {
            let name = p["name"].as_str().unwrap_or_default().to_owned();
            p.as_object_mut().map(|o| o.remove("name"));
            (name, p)
        })
        .collect()
}

fn provider(list: &[(String, Value)], name: &str) -> Value {
    list.iter()
        .find(|(n, _)| n == name)
        .map(|(_, p)| p.clone())
        .unwrap_or_else(|| panic!("no provider {name} in {list:?}"))
}

/// A provider word, its page form fields and its `dns add` flags.
type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<&'a str>);

#[test]
fn the_dns_page_offers_every_provider_and_stores_what_the_cli_stores() {
    let web = Web::start();
    let page = web.curl(&[&web.url("/acme")]);
    for p in ["rfc2136", "cloudflare", "digitalocean"] {
        assert!(
            page.contains(&format!("name=\"provider\" value=\"{p}\"")),
            "the ACME page has no form for DNS provider {p}"
        );
    }
    let token = "tok-0123456789abcdef-0123456789";
    let secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQ=";
    let cases: [Case; 3] = [
        (
            "digitalocean",
            vec![("token", token), ("api_base", "")],
            vec!["--token", token],
        ),
        (
            "cloudflare",
            vec![("token", token), ("api_base", "")],
            vec!["--token", token],
        ),
        (
            "rfc2136",
            vec![
                ("server", "127.0.0.1:53"),
                ("tsig_name", "key.example.test"),
                ("tsig_algorithm", "hmac-sha512"),
                ("tsig_secret", secret),
            ],
            vec![
                "--server",
                "127.0.0.1:53",
                "--tsig-name",
                "key.example.test",
                "--tsig-algorithm",
                "hmac-sha512",
                "--tsig-secret",
                secret,
            ],
        ),
    ];
    for (provider_word, form, flags) in &cases {
        let page_name = format!("page-{provider_word}");
        let cli_name = format!("cli-{provider_word}");
        let mut fields = vec![
            ("provider", *provider_word),
            ("name", page_name.as_str()),
            ("zone", "example.test"),
        ];
        fields.extend(form.iter().copied());
        let answer = web.post_form("/acme", "/acme/dns/add", &fields);
        assert_eq!(page_error(&answer), None, "{provider_word}: {answer}");
        let mut args = vec![
            "dns",
            "add",
            cli_name.as_str(),
            "--provider",
            provider_word,
            "--zone",
            "example.test",
        ];
        args.extend(flags.iter().copied());
        web.pbx.ok_true(&args);
        let list = providers(&web.pbx);
        assert_eq!(
            provider(&list, &page_name),
            provider(&list, &cli_name),
            "{provider_word}: the page and the CLI stored different configs"
        );
    }
}

#[test]
fn cli_api_and_page_give_the_same_code_for_the_same_bad_input() {
    let web = Web::start();
    web.pbx.tenant_add("t", &["t.example"]);
    let pbx = &web.pbx;

    // A key type no input knows.
    let (cli, _) = cli_error(pbx, &["tenant", "set", "t", "--acme-key-type", "ed25519"]);
    let api_tenant = api_code(&web.api("POST", "/tenants/t", r#"{"acme_key_type":"ed25519"}"#));
    let api_csr = api_code(&web.api(
        "POST",
        "/csr",
        r#"{"names":["a.example"],"key_type":"ed25519"}"#,
    ));
    let page = page_error(&web.post_form(
        "/csr",
        "/csr",
        &[("names", "a.example"), ("key_type", "ed25519")],
    ));
    assert_eq!(
        (api_tenant.as_str(), api_csr.as_str(), page.as_deref()),
        (cli.as_str(), cli.as_str(), Some(cli.as_str())),
        "key type ed25519: CLI {cli}, API tenant set / API csr / page csr differ"
    );

    // A challenge no input knows.
    let (cli, _) = cli_error(
        pbx,
        &["tenant", "set", "t", "--acme-challenge", "smoke-signals"],
    );
    let api_tenant = api_code(&web.api(
        "POST",
        "/tenants/t",
        r#"{"acme_challenge":"smoke-signals"}"#,
    ));
    let api_acme = api_code(&web.api("POST", "/acme", r#"{"challenge":"smoke-signals"}"#));
    let page = page_error(&web.post_form(
        "/acme",
        "/acme",
        &[
            ("preset", "staging"),
            ("challenge", "smoke-signals"),
            ("check_interval", ""),
        ],
    ));
    assert_eq!(
        (api_tenant.as_str(), api_acme.as_str(), page.as_deref()),
        (cli.as_str(), cli.as_str(), Some(cli.as_str())),
        "challenge smoke-signals: CLI {cli}, API tenant set / API acme set / page differ"
    );

    // A DNS provider spec with an unknown TSIG algorithm, and one with a
    // field missing: the API body and the page form (the CLI refuses both
    // as usage errors, before any command exists).
    let bad_alg = r#"{"name":"r","provider":"rfc2136","zone":"example.test","server":"127.0.0.1:53","tsig_name":"k.example.test","tsig_algorithm":"hmac-md5","tsig_secret":"c2VjcmV0"}"#;
    let api_alg = api_code(&web.api("POST", "/dns", bad_alg));
    let page_alg = page_error(&web.post_form(
        "/acme",
        "/acme/dns/add",
        &[
            ("provider", "rfc2136"),
            ("name", "r"),
            ("zone", "example.test"),
            ("server", "127.0.0.1:53"),
            ("tsig_name", "k.example.test"),
            ("tsig_algorithm", "hmac-md5"),
            ("tsig_secret", "c2VjcmV0"),
        ],
    ));
    assert_eq!(Some(api_alg.as_str()), page_alg.as_deref(), "TSIG hmac-md5");
    let api_missing = api_code(&web.api(
        "POST",
        "/dns",
        r#"{"name":"r","provider":"rfc2136","zone":"example.test"}"#,
    ));
    let page_missing = page_error(&web.post_form(
        "/acme",
        "/acme/dns/add",
        &[
            ("provider", "rfc2136"),
            ("name", "r"),
            ("zone", "example.test"),
        ],
    ));
    assert_eq!(
        Some(api_missing.as_str()),
        page_missing.as_deref(),
        "rfc2136 without server"
    );
    // Nothing of it was stored.
    assert_eq!(as_array(pbx.ok(&["dns", "list"])).len(), 0);
}

/// The Certificates page's Check button says what `cert check` says (issue
/// 17: "`cert check ID` (and a button)"): a chain whose intermediate
/// expires before the leaf is accepted with that warning, on both.
#[test]
fn the_check_button_says_what_cert_check_says() {
    let web = Web::start();
    let t = tag();
    let r = root(&format!("Check Root {t}"));
    let inter = ca(&format!("Check Intermediate {t}"))
        .valid_days(-10, 30)
        .signed_by(&r);
    let l = leaf(&["check.example.com"])
        .valid_days(-1, 90)
        .signed_by(&inter);
    let cert = web
        .pbx
        .file("chain.pem", format!("{}{}", l.pem(), inter.pem()));
    let key = web.pbx.file("key.pem", l.key_pem());
    web.pbx.ok(&["import", "--cert", &cert, "--key", &key]);
    let id = l.id();

    let cli = web.pbx.ok(&["cert", "check", &id]);
    assert_eq!(cli["ok"], true, "{cli}");
    let codes: Vec<&str> = cli["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["code"].as_str())
        .collect();
    assert!(codes.contains(&"intermediate-expires-first"), "{cli}");

    let page = web.post_form("/certs", "/certs/check", &[("id", &id)]);
    assert!(
        page.contains("certificate check.example.com (expires ")
            && page.contains(": clients accept the chain now"),
        "the page does not say the chain is accepted:\n{page}"
    );
    for code in codes {
        assert!(
            page.contains(&format!("[{code}]")),
            "the page does not show warning {code}:\n{page}"
        );
    }
    assert!(page_error(&page).is_none(), "{page}");
}

/// Times (`1h30m`, `45m`, `3m`, `10s`, or bare seconds) have one parser,
/// `clock::parse_duration`: the CLI's `acme set --check-interval` and `dns
/// set --propagation-timeout` and the ACME page's boxes store the same
/// seconds for the same text, and refuse the same text (the CLI as a usage
/// error, before any command exists; the page with `bad-setting`).
#[test]
fn times_typed_on_the_cli_and_the_page_store_the_same_seconds() {
    let web = Web::start();
    let pbx = &web.pbx;
    let interval = |pbx: &Pbx| pbx.ok(&["acme", "show"])["check_interval"].clone();
    for (text, secs) in [("1h30m", 5400), ("45m", 2700), ("7200", 7200)] {
        pbx.ok_true(&["acme", "set", "--check-interval", text]);
        let by_cli = interval(pbx);
        pbx.ok_true(&["acme", "set", "--check-interval", "6h"]);
        let page = web.post_form(
            "/acme",
            "/acme",
            &[("preset", "production"), ("check_interval", text)],
        );
        assert_eq!(page_error(&page), None, "{text}:\n{page}");
        assert_eq!(
            (by_cli, interval(pbx)),
            (secs.into(), secs.into()),
            "{text}"
        );
    }
    let page = web.post_form(
        "/acme",
        "/acme",
        &[("preset", "production"), ("check_interval", "90x")],
    );
    assert_eq!(page_error(&page).as_deref(), Some("bad-setting"), "{page}");
    pbx.run(&["acme", "set", "--check-interval", "90x"])
        .usage_error();
    assert_eq!(interval(pbx), 7200);

    pbx.run_json(&["dns", "set", "--propagation-timeout", "3m"])
        .success();
    assert_eq!(pbx.ok(&["dns", "propagation"])["propagation_timeout"], 180);
    let page = web.post_form(
        "/acme",
        "/acme/dns/propagation",
        &[
            ("propagation_timeout", "4m"),
            ("propagation_interval", "10s"),
            ("check_ns", "true"),
        ],
    );
    assert_eq!(page_error(&page), None, "{page}");
    let p = pbx.ok(&["dns", "propagation"]);
    assert_eq!(
        (&p["propagation_timeout"], &p["propagation_interval"]),
        (&240.into(), &10.into()),
        "{p}"
    );
}
