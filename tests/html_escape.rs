//! Values an attacker or a careless admin controls render inert on every
//! web admin page, against the real daemon binary: a root and a server
//! certificate whose subject CN/O hold markup (imported through the CLI),
//! the admin e-mail, the ACME contact e-mail, EAB key ID and directory URL,
//! a DNS provider's API base and (masked) token, and a form value reflected
//! in an error line. Every value below passes the CLI's validation as is.
//!
//! `every_page_escapes_hostile_values`: every page's HTML (curl as the
//! browser) holds the escaped form and never the raw markup.
//! `hostile_values_are_inert_in_headless_chromium`: the same pages in real
//! headless Chromium (`scripts/web-test/escape.mjs`, set up like
//! `tests/web_admin.rs`): no dialog fires, no `<img>`/`<script>` element
//! exists, and the payloads are visible as text (or as input values).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::serve::Daemon;
use common::*;

const PASSWORD: &str = "correct horse battery";
/// Breaks out of a double-quoted attribute.
const ATTR: &str = "\"><img src=x onerror=alert(1)>";
/// Text-context markup.
const SCRIPT: &str = "<script>alert(1)</script>";
/// What an escaped page shows of them.
const IMG_ESCAPED: &str = "&lt;img src=x onerror=alert(1)&gt;";
const SCRIPT_ESCAPED: &str = "&lt;script&gt;alert(1)&lt;/script&gt;";

/// The daemon, logged in (curl's cookie jar), with hostile values stored.
struct Site {
    pbx: Pbx,
    daemon: Daemon,
    jar: String,
}

impl Site {
    fn new() -> Site {
        let pbx = Pbx::new();
        // A root CA and a server certificate with markup in CN and O.
        let mut root = ca(ATTR);
        root.params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, SCRIPT);
        let root = root.self_signed();
        pbx.import_ok(root.pem(), None, &["--kind", "root"]);
        let mut leaf = leaf(&["xss.pbx.test"]).cn(SCRIPT);
        leaf.params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, ATTR);
        let leaf = leaf.signed_by(&root);
        pbx.import_ok(leaf.pem(), Some(&leaf.key_pem()), &["--kind", "server"]);
        // Settings whose validation lets markup through.
        let email = format!("{SCRIPT}@x.example");
        pbx.ok_true(&["system", "set", "--admin-email", &email]);
        let directory = format!("https://127.0.0.1:9/{SCRIPT}");
        let acme_email = format!("\"{SCRIPT}\"@x.example");
        pbx.ok_true(&[
            "acme",
            "set",
            "--directory",
            &directory,
            "--email",
            &acme_email,
            "--eab-kid",
            ATTR,
            "--eab-hmac",
            "c2VjcmV0LWhtYWMta2V5LTAxMjM0NTY3ODlhYmNkZWY",
        ]);
        let api = format!("https://127.0.0.1:9/{SCRIPT}");
        let token = format!("{SCRIPT}{SCRIPT}");
        pbx.ok_true(&[
            "dns",
            "add",
            "cf",
            "--provider",
            "cloudflare",
            "--zone",
            "pbx.test",
            "--token",
            &token,
            "--api-base",
            &api,
        ]);
        pbx.run_stdin(&["admin", "password"], format!("{PASSWORD}\n").as_bytes())
            .success();
        let daemon = pbx.serve(false);
        let jar = pbx.files.join("cookies.txt");
        let site = Site {
            jar: jar.to_str().expect("utf-8 path").to_string(),
            pbx,
            daemon,
        };
        let (status, _) = site.curl(
            &["--data-urlencode", &format!("password={PASSWORD}")],
            "/login",
        );
        assert_eq!(status, 303, "login");
        site
    }

    fn base(&self) -> String {
        format!("https://{}", self.daemon.https)
    }

    /// (HTTP status, body).
    fn curl(&self, args: &[&str], path: &str) -> (u16, String) {
        let mut cmd = Command::new("curl");
        cmd.args(["-sk", "-c", &self.jar, "-b", &self.jar])
            .args(["-w", "\n%{http_code}"])
            .args(args)
            .arg(format!("{}{path}", self.base()));
        let out = run_command(cmd, None);
        out.success();
        let (body, code) = out.stdout.rsplit_once('\n').expect("curl status line");
        (code.trim().parse().expect("HTTP status"), body.to_string())
    }

    fn get(&self, path: &str) -> String {
        let (status, body) = self.curl(&[], path);
        assert_eq!(status, 200, "GET {path}:\n{body}");
        body
    }

    fn csrf(&self) -> String {
        let page = self.get("/import");
        page.split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_else(|| panic!("no CSRF token:\n{page}"))
            .to_string()
    }

    /// Posts an import form with a hostile kind: the error line that echoes
    /// it is shown on the next page (the flash), which is returned.
    fn reflect_kind(&self) -> String {
        let csrf = self.csrf();
        let (status, body) = self.curl(
            &[
                "--data-urlencode",
                &format!("csrf={csrf}"),
                "--data-urlencode",
                "cert=x",
                "--data-urlencode",
                &format!("kind={ATTR}{SCRIPT}"),
            ],
            "/import",
        );
        assert!(status == 200 || status == 400, "{status}: {body}");
        body
    }
}

/// Pages, and the escaped forms each must show (each page also must never
/// hold `<img` or `<script`: no page has such an element).
fn expected() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        // Server certificate: its name, and the subject nowhere else; the
        // page must still be clean.
        ("/certs", vec!["xss.pbx.test"]),
        // Root subject: CN and O (RFC 4514 backslash-quotes `<>"`).
        (
            "/roots",
            vec![
                "O=\\&lt;script\\&gt;alert(1)\\&lt;/script\\&gt;,",
                "CN=\\&quot;\\&gt;\\&lt;img src=x onerror=alert(1)\\&gt;",
            ],
        ),
        // Admin e-mail (attribute), DNS provider API base and masked token.
        (
            "/tenants",
            vec![SCRIPT_ESCAPED, "value=\"&lt;script&gt;alert(1)"],
        ),
        // ACME e-mail and contact, EAB key ID (attribute), the provider.
        (
            "/acme",
            vec![
                "value=\"&quot;&lt;script&gt;alert(1)&lt;/script&gt;&quot;@x.example\"",
                "value=\"&quot;&gt;&lt;img src=x onerror=alert(1)&gt;\"",
                SCRIPT_ESCAPED,
            ],
        ),
        ("/import", vec![]),
        ("/csr", vec![]),
        ("/password", vec![]),
        // The admin e-mail as the alerts' recipient.
        ("/alerts", vec![SCRIPT_ESCAPED]),
        ("/ca", vec![]),
    ]
}

fn assert_inert(path: &str, page: &str, escaped: &[&str]) {
    for raw in ["<img", "<script", ATTR, SCRIPT] {
        assert!(!page.contains(raw), "{path} holds raw {raw:?}:\n{page}");
    }
    for e in escaped {
        assert!(page.contains(e), "{path} lacks the escaped {e:?}:\n{page}");
    }
}

#[test]
fn every_page_escapes_hostile_values() {
    let site = Site::new();
    for (path, escaped) in expected() {
        assert_inert(path, &site.get(path), &escaped);
    }
    // The store really holds the markup the pages escaped.
    let roots = site.pbx.roots();
    assert!(
        roots.iter().any(|r| r["subject"]
            .as_str()
            .is_some_and(|s| s.contains("<script") && s.contains("<img src=x"))),
        "the hostile root is stored"
    );
    assert_eq!(
        site.pbx.system()["admin_email"],
        format!("{SCRIPT}@x.example")
    );
    // A form value echoed in an error line.
    let page = site.reflect_kind();
    assert_inert("/import (posted)", &page, &[IMG_ESCAPED, SCRIPT_ESCAPED]);
}
#[test]
fn hostile_values_are_inert_in_headless_chromium() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if !common::browser::browser_or_skip(root) {
        return;
    }
    let site = Site::new();
    let texts = serde_json::json!({
        "/certs": ["xss.pbx.test"],
        // The root's name (its CN) and organisation, shown as text.
        "/roots": [SCRIPT, "\"><img src=x onerror=alert(1)>"],
        "/tenants": [SCRIPT],
        "/acme": [SCRIPT],
        "/import": [],
        "/csr": [],
        // The admin e-mail as the alerts' recipient.
        "/alerts": [SCRIPT],
        "/ca": [],
    });
    let values = serde_json::json!([
        ["/tenants", "#smail", format!("{SCRIPT}@x.example")],
        ["/acme", "#email", format!("\"{SCRIPT}\"@x.example")],
        ["/acme", "#eab_kid", ATTR],
    ]);
    let mut child = Command::new("node")
        .arg(root.join("scripts/web-test/escape.mjs"))
        .env("PBX_URL", site.base())
        .env("PBX_PASSWORD", PASSWORD)
        .env("PBX_TEXTS", texts.to_string())
        .env("PBX_VALUES", values.to_string())
        .env("PBX_KIND", format!("{ATTR}{SCRIPT}"))
        .spawn()
        .expect("start node");
    // A hang guard only (scripts/test-qemu.sh raises the page timeout).
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("escape.mjs did not finish");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "escape.mjs failed: {status}");
}
