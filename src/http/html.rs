//! Server-rendered HTML of the web admin: layout, one function per page.
//!
//! Why: the pages must work without JavaScript and load nothing from
//! elsewhere (CSP `default-src 'none'`), so they are plain forms and tables
//! with one inline `<style>` block allowed by its hash (`msg::CSP`).
//!
//! What must hold: every value from the store or the request passes through
//! `esc` (text and attribute context alike); every form that posts carries
//! the session's CSRF token; no page ever contains a private key.

use serde_json::Value;

use crate::clock;

/// The only style sheet (its SHA-256 is in the CSP).
pub const CSS: &str = "\
body{font-family:system-ui,sans-serif;margin:0;color:#1d232a;background:#f5f6f8}\
header{background:#20324a;color:#fff;padding:.6em 1.2em;display:flex;gap:1.2em;align-items:center;flex-wrap:wrap}\
header a{color:#fff;text-decoration:none}header a.on{text-decoration:underline}\
header strong{margin-right:1em}header form{margin-left:auto}\
main{padding:1em 1.2em;max-width:80em}\
table{border-collapse:collapse;width:100%;background:#fff;margin:.6em 0}\
th,td{border:1px solid #d3d8de;padding:.3em .5em;text-align:left;vertical-align:top;font-size:.92em}\
th{background:#e8ecf0}td form{display:inline}\
code{font-size:.9em}textarea{width:100%;font-family:monospace;font-size:.85em}\
label{display:block;margin:.6em 0 .2em;font-weight:600}label.inline{display:inline;font-weight:400}\
input[type=text],input[type=password],input[type=email],select{min-width:22em;padding:.25em}\
button{padding:.3em .9em;margin:.4em .3em .4em 0;cursor:pointer}\
button.danger{background:#b42318;color:#fff;border:1px solid #8a1a12}\
button:disabled{cursor:not-allowed}\
.msg{padding:.5em .8em;margin:.5em 0;border-radius:3px}\
.ok{background:#dcf2e3}.warn{background:#fff1cc}.err{background:#fbdcdc}\
.note{color:#5b6670;font-size:.9em}.expired{color:#b42318;font-weight:600}\
.box{background:#fff;border:1px solid #d3d8de;padding:1em;margin:1em 0;max-width:60em}";

/// Escape for HTML text and double-quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The pages of the navigation bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// Certificates.
    Certs,
    /// Root CA list.
    Roots,
    /// Import form.
    Import,
    /// Tenants and system settings.
    Tenants,
    /// ACME settings, status and DNS providers.
    Acme,
    /// Password change.
    Password,
    /// Pages outside the bar.
    None,
}

/// A message line: (`ok` | `warn` | `err`, code, message).
pub type Line = (&'static str, String, String);

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// The hidden CSRF field.
pub fn csrf_field(csrf: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(csrf)
    )
}

/// Message lines as HTML.
pub fn lines(lines: &[Line]) -> String {
    let mut out = String::new();
    for (class, code, message) in lines {
        let code = if code.is_empty() {
            String::new()
        } else {
            format!("<code>[{}]</code> ", esc(code))
        };
        out += &format!(
            "<p class=\"msg {}\" role=\"status\">{code}{}</p>",
            esc(class),
            esc(message)
        );
    }
    out
}

/// The whole document. `csrf` is `None` on pages outside a session.
pub fn layout(title: &str, nav: Nav, csrf: Option<&str>, body: &str) -> String {
    let bar = match csrf {
        Some(csrf) if nav != Nav::None => {
            let link = |n: Nav, href: &str, text: &str| {
                let on = if n == nav { " class=\"on\"" } else { "" };
                format!("<a href=\"{href}\"{on}>{text}</a>")
            };
            format!(
                "{}{}{}{}{}{}<form method=\"post\" action=\"/logout\">{}<button>Log out</button></form>",
                link(Nav::Certs, "/certs", "Certificates"),
                link(Nav::Roots, "/roots", "Root CA"),
                link(Nav::Import, "/import", "Import"),
                link(Nav::Tenants, "/tenants", "Tenants &amp; system"),
                link(Nav::Acme, "/acme", "ACME"),
                link(Nav::Password, "/password", "Password"),
                csrf_field(csrf)
            )
        }
        _ => String::new(),
    };
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title} · pbx-certd</title><style>{CSS}</style></head>\
<body><header><strong>pbx-certd</strong>{bar}</header><main><h1>{title}</h1>{body}</main></body></html>\n",
        title = esc(title),
    )
}

/// Days from now until `not_after` (RFC 3339), for display.
fn days_left(not_after: &str, now: i64) -> String {
    match parse_rfc3339(not_after) {
        Some(t) if t <= now => "<span class=\"expired\">expired</span>".into(),
        Some(t) => {
            let days = (t - now) / clock::DAY;
            if days < crate::limits::EXPIRING_SOON_DAYS {
                format!("<span class=\"expired\">{days} days left</span>")
            } else {
                format!("{days} days left")
            }
        }
        None => String::new(),
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` → Unix seconds (the form `clock::rfc3339` writes).
pub fn parse_rfc3339(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    if b.len() != 20 || b.get(19) != Some(&b'Z') {
        return None;
    }
    let num = |r: core::ops::Range<usize>| -> Option<i64> { t.get(r)?.parse().ok() };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // Days from civil (H. Hinnant), inverse of clock's formatting.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * clock::DAY + hh * 3600 + mm * 60 + ss)
}

fn list(v: &Value) -> String {
    v.as_array()
        .map(|a| a.iter().map(|x| esc(s(x))).collect::<Vec<_>>().join("<br>"))
        .unwrap_or_default()
}

/// Login: the admin password, or the setup token before one is set.
pub fn login(password_set: bool, token_available: bool, message: &[Line]) -> String {
    let body = if password_set {
        format!(
            "{}<form method=\"post\" action=\"/login\" class=\"box\">\
<label for=\"password\">Password</label>\
<input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required autofocus>\
<div><button type=\"submit\">Log in</button></div></form>",
            lines(message)
        )
    } else if token_available {
        format!(
            "{}<div class=\"box\"><p>No admin password is set yet. Enter the one-time setup token \
that <code>pbx-certd serve</code> printed to its log (<code>setup-token=…</code>); you will then choose the password.</p>\
<form method=\"post\" action=\"/login\">\
<label for=\"password\">Setup token</label>\
<input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"off\" required autofocus>\
<div><button type=\"submit\">Continue</button></div></form></div>",
            lines(message)
        )
    } else {
        format!(
            "{}<div class=\"box\"><p>No admin password is set. Set one on the appliance with \
<code>pbx-certd admin password</code>, or restart <code>pbx-certd serve</code> for a new setup token.</p></div>",
            lines(message)
        )
    };
    layout("Log in", Nav::None, None, &body)
}

/// Choose the admin password (forced after the setup token).
pub fn password(csrf: &str, setup: bool, message: &[Line]) -> String {
    let intro = if setup {
        "<p>Choose the admin password before anything else. The setup token stops working once it is set.</p>"
    } else {
        "<p>Change the admin password. Other sessions are logged out.</p>"
    };
    let body = format!(
        "{}{intro}<form method=\"post\" action=\"/password\" class=\"box\">{}\
<label for=\"new\">New password ({}–{} characters)</label>\
<input type=\"password\" id=\"new\" name=\"password\" autocomplete=\"new-password\" minlength=\"{}\" maxlength=\"{}\" required>\
<label for=\"confirm\">Repeat it</label>\
<input type=\"password\" id=\"confirm\" name=\"confirm\" autocomplete=\"new-password\" required>\
<div><button type=\"submit\">Set password</button></div></form>",
        lines(message),
        csrf_field(csrf),
        crate::limits::MIN_PASSWORD_LEN,
        crate::limits::MAX_PASSWORD_LEN,
        crate::limits::MIN_PASSWORD_LEN,
        crate::limits::MAX_PASSWORD_LEN,
    );
    layout(
        "Admin password",
        if setup { Nav::None } else { Nav::Password },
        Some(csrf),
        &body,
    )
}

/// Certificates: `certs --json` rows.
/// `acme_enabled`: Reissue works for ACME and self-signed certificates.
pub fn certs(csrf: &str, certs: &Value, flash: &[Line], now: i64, acme_enabled: bool) -> String {
    let rows = certs.as_array().cloned().unwrap_or_default();
    let mut body = lines(flash);
    if rows.is_empty() {
        body += "<p>No certificates yet. <a href=\"/import\">Import one</a>.</p>";
    } else {
        body += "<table><thead><tr><th>Names</th><th>Kind</th><th>Tenant</th><th>Expires</th>\
<th>Source</th><th>Key</th><th>ID</th><th>Actions</th></tr></thead><tbody>";
        for c in &rows {
            let id = s(&c["id"]);
            let short = id.get(..16).unwrap_or(id);
            let managed = matches!(s(&c["source"]), "acme" | "self-signed");
            let reissue = match (acme_enabled, managed) {
                (true, true) => format!(
                    "<form method=\"post\" action=\"/certs/reissue\">{}<input type=\"hidden\" name=\"id\" \
value=\"{}\"><button type=\"submit\" title=\"HTTP-01: port 80 must be open to the CA\">Reissue</button></form>\
<span class=\"note\">HTTP-01 needs port 80 reachable from the Internet; TLS-ALPN-01 needs port 443; \
DNS-01 needs a <a href=\"/acme#dns\">DNS provider</a>.</span>",
                    csrf_field(csrf),
                    esc(id)
                ),
                (false, _) => "<button type=\"button\" disabled title=\"available once ACME is enabled\">Reissue</button>".into(),
                (true, false) => "<button type=\"button\" disabled title=\"uploaded certificates are never replaced by ACME\">Reissue</button>".into(),
            };
            body += &format!(
                "<tr data-id=\"{id}\"><td>{names}</td><td>{kind}</td><td>{tenant}</td>\
<td>{expires}<br><span class=\"note\">{days}</span></td><td>{source}</td><td>{key}</td>\
<td><code title=\"{id}\">{short}…</code></td><td>\
<a href=\"/certs/{id}.pem\" download>Download PEM</a> \
<form method=\"post\" action=\"/certs/delete\">{csrf}<input type=\"hidden\" name=\"id\" value=\"{id}\">\
<button class=\"danger\" type=\"submit\">Delete</button></form> {reissue}</td></tr>",
                id = esc(id),
                short = esc(short),
                names = list(&c["names"]),
                kind = esc(s(&c["kind"])),
                tenant = esc(c["tenant"].as_str().unwrap_or("—")),
                expires = esc(s(&c["not_after"])),
                days = days_left(s(&c["not_after"]), now),
                source = esc(s(&c["source"])),
                key = esc(s(&c["key_type"])),
                csrf = csrf_field(csrf),
                reissue = reissue,
            );
        }
        body += "</tbody></table><p class=\"note\">Download gives the certificate chain (PEM), never the key. \
Reissue orders a new certificate through ACME now (certificates from ACME or self-signed; uploaded ones \
are never replaced): the CA must reach this PBX on port 80 (HTTP-01) or, with port 80 closed, on \
port 443 (TLS-ALPN-01).</p>";
    }
    layout("Certificates", Nav::Certs, Some(csrf), &body)
}

/// Root CA list: `roots --json` rows.
pub fn roots(csrf: &str, roots: &Value, update: Option<&str>, flash: &[Line], now: i64) -> String {
    let rows = roots.as_array().cloned().unwrap_or_default();
    let mut body = lines(flash);
    if let Some(version) = update {
        body += &format!(
            "<p class=\"msg warn\">This release bundles a newer Root CA list ({}); Reset would install it.</p>",
            esc(version)
        );
    }
    body += &format!(
        "<p>{} roots. The PBX trusts these when it connects to other servers (ACME, provisioning). \
<a href=\"/roots/reset\">Reset to the bundled list…</a></p>\
<form method=\"post\" action=\"/roots/delete\">{}\
<table><thead><tr><th></th><th>Subject</th><th>Expires</th><th>ID</th><th>PEM</th></tr></thead><tbody>",
        rows.len(),
        csrf_field(csrf)
    );
    for r in &rows {
        let id = s(&r["id"]);
        let short = id.get(..16).unwrap_or(id);
        body += &format!(
            "<tr><td><input type=\"checkbox\" name=\"id\" value=\"{id}\" aria-label=\"select {subject}\"></td>\
<td>{subject}</td><td>{expires} <span class=\"note\">{days}</span></td><td><code title=\"{id}\">{short}…</code></td>\
<td><a href=\"/roots/{id}.pem\" download title=\"download PEM\">⬇ PEM</a></td></tr>",
            id = esc(id),
            short = esc(short),
            subject = esc(s(&r["subject"])),
            expires = esc(s(&r["not_after"])),
            days = days_left(s(&r["not_after"]), now),
        );
    }
    body +=
        "</tbody></table><button class=\"danger\" type=\"submit\">Delete selected</button></form>";
    layout("Root CA", Nav::Roots, Some(csrf), &body)
}

/// The confirmation step of a Root CA reset.
pub fn roots_reset_confirm(csrf: &str, stored: usize, bundled: &str) -> String {
    let body = format!(
        "<div class=\"box\"><p>Replace the {stored} stored roots with exactly the bundled list, {}? \
Roots you imported are removed; roots you deleted come back.</p>\
<form method=\"post\" action=\"/roots/reset\">{}<input type=\"hidden\" name=\"confirm\" value=\"yes\">\
<button class=\"danger\" type=\"submit\">Yes, reset the Root CA list</button> <a href=\"/roots\">Cancel</a></form></div>",
        esc(bundled),
        csrf_field(csrf)
    );
    layout("Reset the Root CA list", Nav::Roots, Some(csrf), &body)
}

/// The import form; `cert` is re-shown after an error, the key never is.
pub fn import(csrf: &str, cert: &str, kind: &str, message: &[Line]) -> String {
    let option = |value: &str, text: &str| {
        let sel = if value == kind { " selected" } else { "" };
        format!("<option value=\"{value}\"{sel}>{text}</option>")
    };
    let body = format!(
        "{}<form method=\"post\" action=\"/import\" class=\"box\">{}\
<label for=\"cert\">Certificate</label>\
<textarea id=\"cert\" name=\"cert\" rows=\"14\" spellcheck=\"false\" required \
placeholder=\"-----BEGIN CERTIFICATE-----&#10;(your certificate first, then the intermediates)\">{}</textarea>\
<p class=\"note\">Paste the certificate first, then the intermediate certificates, e.g. a GoDaddy-style \
<code>.crt</code> and <code>.ca-bundle</code> together. Root CA certificates go here too (kind: root).</p>\
<label for=\"key\">Private key</label>\
<textarea id=\"key\" name=\"key\" rows=\"6\" spellcheck=\"false\" autocomplete=\"off\" \
placeholder=\"-----BEGIN PRIVATE KEY-----\"></textarea>\
<p class=\"note\">May be left empty to update a certificate whose key is already stored. \
The key is stored on the PBX and never shown or sent again.</p>\
<label for=\"kind\">Kind</label><select id=\"kind\" name=\"kind\">{}{}{}{}{}</select>\
<div><button type=\"submit\">Import</button></div></form>\
<p class=\"note\">No certificate yet? <a href=\"/csr\">Make a key and a CSR</a> to buy one; \
its key stays on the PBX, so the bought certificate is imported here with an empty key box.</p>",
        lines(message),
        csrf_field(csrf),
        esc(cert),
        option("auto", "auto (decide from the certificate)"),
        option("root", "root (add to the Root CA list)"),
        option("server", "server (all tenants)"),
        option("domain", "domain (one tenant)"),
        option("stir-shaken", "STIR/SHAKEN"),
    );
    layout("Import", Nav::Import, Some(csrf), &body)
}

/// DNS providers (secrets already masked by `dns list`) and the local CA,
/// shown on the tenants page.
pub fn dns_and_ca(dns: &Value, ca: Option<&Value>) -> String {
    let mut out = String::from("<h2>DNS providers (ACME DNS-01)</h2>");
    out += &dns_table(dns, None);
    out += "<p class=\"note\">Add and remove them on the <a href=\"/acme#dns\">ACME page</a>, with \
<code>pbx-certd dns add|remove</code> or <code>/api/dns</code>; secrets are never shown in full.</p><h2>Local CA</h2>";
    match ca {
        Some(ca) => {
            out += &format!(
                "<p>{} · expires {} · <a href=\"/ca.pem\">download the root (PEM)</a> to load onto phones.</p>",
                esc(s(&ca["subject"])),
                esc(s(&ca["not_after"]))
            );
        }
        None => {
            out += "<p>No local CA. For closed networks: <code>pbx-certd ca init</code>, then \
<code>pbx-certd ca issue --tenant NAME</code>.</p>";
        }
    }
    out
}

/// The provider table (secrets already masked by `dns list`); with `csrf`,
/// each row has a Remove button.
fn dns_table(dns: &Value, csrf: Option<&str>) -> String {
    let rows = dns.as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        return "<p>No DNS providers.</p>".into();
    }
    let mut out =
        String::from("<table><tr><th>Name</th><th>Provider</th><th>Zone</th><th>Access</th>");
    if csrf.is_some() {
        out += "<th></th>";
    }
    out += "</tr>";
    for p in &rows {
        let access = match s(&p["provider"]) {
            "rfc2136" => format!(
                "{} · key {} ({}) · secret {}",
                esc(s(&p["server"])),
                esc(s(&p["tsig_name"])),
                esc(s(&p["tsig_algorithm"])),
                esc(s(&p["tsig_secret"]))
            ),
            _ => format!("{} · token {}", esc(s(&p["api_base"])), esc(s(&p["token"]))),
        };
        let remove = match csrf {
            Some(csrf) => format!(
                "<td><form method=\"post\" action=\"/acme/dns/remove\">{}\
<input type=\"hidden\" name=\"name\" value=\"{}\"><button class=\"danger\" type=\"submit\">Remove</button></form></td>",
                csrf_field(csrf),
                esc(s(&p["name"]))
            ),
            None => String::new(),
        };
        out += &format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{access}</td>{remove}</tr>",
            esc(s(&p["name"])),
            esc(s(&p["provider"])),
            esc(s(&p["zone"]))
        );
    }
    out += "</table>";
    out
}

/// ACME: the settings form (`acme show`), the status of each name set
/// (`acme status`) and the DNS providers with add/remove forms (`dns list`).
/// The EAB HMAC is never written into the page.
pub fn acme(csrf: &str, show: &Value, status: &Value, dns: &Value, flash: &[Line]) -> String {
    use crate::limits::{
        ACME_DEFAULT_DIRECTORY, ACME_MAX_CHECK_INTERVAL_SECS, ACME_MIN_CHECK_INTERVAL_SECS,
        ACME_STAGING_DIRECTORY,
    };
    let directory = s(&show["directory"]);
    let preset = match directory {
        ACME_DEFAULT_DIRECTORY => "production",
        ACME_STAGING_DIRECTORY => "staging",
        _ => "custom",
    };
    let radio = |value: &str, text: String| {
        let on = if value == preset { " checked" } else { "" };
        format!(
            "<div><input type=\"radio\" id=\"dir-{value}\" name=\"preset\" value=\"{value}\"{on}> \
<label for=\"dir-{value}\" class=\"inline\">{text}</label></div>"
        )
    };
    let challenge = s(&show["challenge"]);
    let option = |value: &str, text: &str| {
        let sel = if value == challenge { " selected" } else { "" };
        format!("<option value=\"{value}\"{sel}>{text}</option>")
    };
    let account = &show["account"];
    let eab_kid = show["eab_kid"].as_str().unwrap_or("");
    let mut body = lines(flash);
    body += &format!(
        "<h2>Settings</h2><form method=\"post\" action=\"/acme\" class=\"box\">{csrf_field}\
<div><input type=\"checkbox\" id=\"enabled\" name=\"enabled\" value=\"true\"{enabled}> \
<label for=\"enabled\" class=\"inline\">Enabled</label></div>\
<label>Directory</label>{prod}{staging}{custom}\
<input type=\"text\" id=\"directory\" name=\"directory\" value=\"{custom_url}\" aria-label=\"custom directory URL\" \
placeholder=\"https://ca.example/directory\">\
<label for=\"email\">Contact e-mail</label>\
<input type=\"email\" id=\"email\" name=\"email\" value=\"{email}\" placeholder=\"none\">\
<p class=\"note\">Empty: none (the admin e-mail is used when set). Contact now: {contact}.</p>\
<label for=\"challenge\">Challenge</label><select id=\"challenge\" name=\"challenge\">{auto}{http}{dns01}{alpn}</select>\
<p class=\"note\">auto: DNS-01 when a DNS provider covers the name, else HTTP-01 (port 80 must be \
reachable from the Internet), else TLS-ALPN-01 (port 443).</p>\
<label for=\"eab_kid\">External Account Binding key ID</label>\
<input type=\"text\" id=\"eab_kid\" name=\"eab_kid\" value=\"{eab_kid}\" autocomplete=\"off\">\
<label for=\"eab_hmac\">EAB HMAC key</label>\
<input type=\"password\" id=\"eab_hmac\" name=\"eab_hmac\" value=\"\" autocomplete=\"off\" placeholder=\"{hmac_hint}\">\
<p class=\"note\">Only for CAs that require it. The HMAC key is never shown; leave it empty to keep \
the stored one. An empty key ID removes the binding.</p>\
<label for=\"check_interval\">Check interval (seconds, {min}–{max})</label>\
<input type=\"number\" id=\"check_interval\" name=\"check_interval\" min=\"{min}\" max=\"{max}\" value=\"{interval}\">\
<div><button type=\"submit\">Save</button></div></form>\
<p>Account: {account_state}{account_url}</p>",
        csrf_field = csrf_field(csrf),
        enabled = if show["enabled"] == true { " checked" } else { "" },
        prod = radio(
            "production",
            format!("Let's Encrypt <code>{}</code>", esc(ACME_DEFAULT_DIRECTORY))
        ),
        staging = radio(
            "staging",
            format!(
                "Let's Encrypt staging (test certificates) <code>{}</code>",
                esc(ACME_STAGING_DIRECTORY)
            )
        ),
        custom = radio("custom", "Another ACME CA:".into()),
        custom_url = if preset == "custom" { esc(directory) } else { String::new() },
        email = esc(show["email"].as_str().unwrap_or("")),
        contact = esc(show["contact"].as_str().unwrap_or("none")),
        auto = option("auto", "auto"),
        http = option("http-01", "HTTP-01 (port 80)"),
        dns01 = option("dns-01", "DNS-01 (DNS provider)"),
        alpn = option("tls-alpn-01", "TLS-ALPN-01 (port 443)"),
        eab_kid = esc(eab_kid),
        hmac_hint = if eab_kid.is_empty() { "" } else { "(stored; unchanged)" },
        min = ACME_MIN_CHECK_INTERVAL_SECS,
        max = ACME_MAX_CHECK_INTERVAL_SECS,
        interval = show["check_interval"].as_u64().unwrap_or(0),
        account_state = esc(s(&account["state"])),
        account_url = account["url"]
            .as_str()
            .map(|u| format!(" <code>{}</code>", esc(u)))
            .unwrap_or_default(),
    );
    body += "<h2>Status</h2>";
    let rows = status.as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        body +=
            "<p>No names to certify: add tenants with DNS names or set the system DNS name.</p>";
    } else {
        body += "<table id=\"status\"><thead><tr><th>Name set</th><th>Names</th><th>State</th>\
<th>Certificate expires</th><th>Last error</th><th>Failures</th><th>Last attempt</th>\
<th>Next attempt</th></tr></thead><tbody>";
        for r in &rows {
            let state = s(&r["state"]);
            let class = match state {
                "valid" => "ok",
                "failed" => "err",
                _ => "warn",
            };
            let error = match r["last_error"].as_object() {
                Some(e) => format!(
                    "<code>[{}]</code> {}",
                    esc(e.get("code").and_then(Value::as_str).unwrap_or("")),
                    esc(e.get("message").and_then(Value::as_str).unwrap_or(""))
                ),
                None => "—".into(),
            };
            let or_dash = |v: &Value| esc(v.as_str().unwrap_or("—"));
            body += &format!(
                "<tr data-key=\"{key}\"><td>{key}</td><td>{names}</td><td class=\"{class}\">{state}</td>\
<td>{expires}</td><td>{error}</td><td>{failures}</td><td>{last}</td><td>{next}</td></tr>",
                key = esc(s(&r["key"])),
                names = list(&r["names"]),
                state = esc(state),
                expires = or_dash(&r["not_after"]),
                failures = r["failures"].as_u64().unwrap_or(0),
                last = or_dash(&r["last_attempt"]),
                next = or_dash(&r["next_attempt"]),
            );
        }
        body += "</tbody></table>";
    }
    body += "<p class=\"note\">Failures (the CA unreachable, rate limits, failed validation) back off \
and never remove the certificate being served. <a href=\"/certs\">Reissue</a> forces a renewal now.</p>";
    body += "<h2 id=\"dns\">DNS providers (DNS-01)</h2>";
    body += &dns_table(dns, Some(csrf));
    body += &format!(
        "<form method=\"post\" action=\"/acme/dns/add\" class=\"box\">{csrf}\
<input type=\"hidden\" name=\"provider\" value=\"rfc2136\"><strong>Add an RFC 2136 provider</strong> (dynamic update with TSIG)\
<label for=\"r-name\">Name</label><input type=\"text\" id=\"r-name\" name=\"name\" required>\
<label for=\"r-zone\">Zone</label><input type=\"text\" id=\"r-zone\" name=\"zone\" required placeholder=\"example.com\">\
<label for=\"r-server\">Primary server (HOST:PORT)</label><input type=\"text\" id=\"r-server\" name=\"server\" required placeholder=\"192.0.2.53:53\">\
<label for=\"r-tsig\">TSIG key name</label><input type=\"text\" id=\"r-tsig\" name=\"tsig_name\" required>\
<label for=\"r-alg\">TSIG algorithm</label><select id=\"r-alg\" name=\"tsig_algorithm\">\
<option value=\"hmac-sha256\" selected>hmac-sha256</option><option value=\"hmac-sha512\">hmac-sha512</option></select>\
<label for=\"r-secret\">TSIG secret (Base64)</label><input type=\"password\" id=\"r-secret\" name=\"tsig_secret\" required autocomplete=\"off\">\
<div><button type=\"submit\">Add RFC 2136 provider</button></div></form>\
<form method=\"post\" action=\"/acme/dns/add\" class=\"box\">{csrf}\
<input type=\"hidden\" name=\"provider\" value=\"cloudflare\"><strong>Add a Cloudflare provider</strong>\
<label for=\"c-name\">Name</label><input type=\"text\" id=\"c-name\" name=\"name\" required>\
<label for=\"c-zone\">Zone</label><input type=\"text\" id=\"c-zone\" name=\"zone\" required placeholder=\"example.com\">\
<label for=\"c-token\">API token (DNS Edit on the zone)</label><input type=\"password\" id=\"c-token\" name=\"token\" required autocomplete=\"off\">\
<div><button type=\"submit\">Add Cloudflare provider</button></div></form>\
<p class=\"note\">Secrets are stored on the PBX and never shown again in full.</p>",
        csrf = csrf_field(csrf),
    );
    layout("ACME", Nav::Acme, Some(csrf), &body)
}

/// The CSR form: names (one per line) and key type; the answer is a download.
pub fn csr(csrf: &str, names: &str, message: &[Line]) -> String {
    let body = format!(
        "{}<form method=\"post\" action=\"/csr\" class=\"box\">{}\
<label for=\"names\">DNS names</label>\
<textarea id=\"names\" name=\"names\" rows=\"5\" spellcheck=\"false\" required \
placeholder=\"pbx.example.com&#10;sip.example.com\">{}</textarea>\
<p class=\"note\">One name per line; the first is the certificate's common name.</p>\
<label for=\"key_type\">Key type</label><select id=\"key_type\" name=\"key_type\">\
<option value=\"p256\" selected>ECDSA P-256</option><option value=\"rsa2048\">RSA 2048 \
(not available in this build)</option></select>\
<p class=\"note\">A new private key is made and stored on the PBX; it is never shown. \
Send the downloaded <code>.csr</code> to the CA, then import the certificate it sends \
with an empty key box.</p>\
<div><button type=\"submit\">Make key and download CSR</button></div></form>",
        lines(message),
        csrf_field(csrf),
        esc(names),
    );
    layout(
        "Certificate signing request",
        Nav::Import,
        Some(csrf),
        &body,
    )
}

/// Tenants and system settings.
pub fn tenants(
    csrf: &str,
    tenants: &Value,
    system: &Value,
    certs: &Value,
    extra: &str,
    flash: &[Line],
) -> String {
    let mut body = lines(flash);
    body += "<h2>Tenants</h2>";
    let rows = tenants.as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        body += "<p>No tenants.</p>";
    } else {
        body += "<table><thead><tr><th>Tenant</th><th>DNS names</th><th></th></tr></thead><tbody>";
        for t in &rows {
            body += &format!(
                "<tr><td>{name}</td><td>{dns}</td><td><form method=\"post\" action=\"/tenants/remove\">{csrf}\
<input type=\"hidden\" name=\"name\" value=\"{name}\"><button class=\"danger\" type=\"submit\">Remove</button></form></td></tr>",
                name = esc(s(&t["name"])),
                dns = list(&t["dns"]),
                csrf = csrf_field(csrf),
            );
        }
        body += "</tbody></table>";
    }
    body += &format!(
        "<form method=\"post\" action=\"/tenants/add\" class=\"box\">{}\
<label for=\"tname\">New tenant</label><input type=\"text\" id=\"tname\" name=\"name\" required>\
<label for=\"tdns\">DNS names (one per line)</label><textarea id=\"tdns\" name=\"dns\" rows=\"3\" required></textarea>\
<div><button type=\"submit\">Add tenant</button></div></form>",
        csrf_field(csrf)
    );
    let default = system["default_cert"].as_str().unwrap_or("");
    let mut options = format!(
        "<option value=\"none\"{}>automatic (server certificate for the system name)</option>",
        if default.is_empty() { " selected" } else { "" }
    );
    for c in certs.as_array().into_iter().flatten() {
        let kind = s(&c["kind"]);
        if kind != "server" && kind != "domain" {
            continue;
        }
        let id = s(&c["id"]);
        let names = c["names"]
            .as_array()
            .map(|a| a.iter().map(s).collect::<Vec<_>>().join(", "))
            .unwrap_or_default();
        options += &format!(
            "<option value=\"{id}\"{sel}>{names} ({kind}, {short}…)</option>",
            id = esc(id),
            sel = if id == default { " selected" } else { "" },
            names = esc(&names),
            kind = esc(kind),
            short = esc(id.get(..12).unwrap_or(id)),
        );
    }
    body += &format!(
        "<h2>System</h2><form method=\"post\" action=\"/system\" class=\"box\">{}\
<label for=\"sdns\">System DNS name</label><input type=\"text\" id=\"sdns\" name=\"dns\" value=\"{}\">\
<label for=\"smail\">Admin e-mail</label><input type=\"email\" id=\"smail\" name=\"admin_email\" value=\"{}\">\
<label for=\"sdef\">Default certificate (clients without SNI)</label><select id=\"sdef\" name=\"default_cert\">{options}</select>\
<p class=\"note\">An empty field clears the setting. Root CA list: {}</p>\
<div><button type=\"submit\">Save</button></div></form>",
        csrf_field(csrf),
        esc(system["dns"].as_str().unwrap_or("")),
        esc(system["admin_email"].as_str().unwrap_or("")),
        esc(system["roots_version"].as_str().unwrap_or("-")),
    );
    body += extra;
    layout("Tenants & system", Nav::Tenants, Some(csrf), &body)
}

/// A page with just a message (errors such as 403, 404, 429).
pub fn message(title: &str, csrf: Option<&str>, line: &[Line]) -> String {
    let body = format!(
        "{}<p><a href=\"/\">Back to the admin pages</a></p>",
        lines(line)
    );
    layout(title, Nav::None, csrf, &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn rfc3339_round_trips_with_clock() {
        for t in [0, 951_782_400, 1_795_734_373, 253_402_300_799, -86_400] {
            assert_eq!(parse_rfc3339(&clock::rfc3339(t)), Some(t), "{t}");
        }
        assert_eq!(parse_rfc3339("2026-11-26"), None);
        assert_eq!(parse_rfc3339("2026-11-26T23:06:13+01"), None);
        assert_eq!(parse_rfc3339("20x6-11-26T23:06:13Z"), None);
    }

    #[test]
    fn reissue_is_a_form_only_for_acme_managed_certificates_with_acme_on() {
        let row = |source: &str| {
            json!([{"id": "ab".repeat(32), "kind": "server", "names": ["a.example"], "tenant": null,
                "not_after": "2030-01-01T00:00:00Z", "source": source, "key_type": "p256"}])
        };
        let on = super::certs("T", &row("acme"), &[], 0, true);
        assert!(on.contains("action=\"/certs/reissue\""), "{on}");
        for (source, enabled) in [("acme", false), ("upload", true), ("self-signed", false)] {
            let page = super::certs("T", &row(source), &[], 0, enabled);
            assert!(!page.contains("/certs/reissue"), "{source} {enabled}");
            assert!(page.contains("disabled"), "{source} {enabled}");
        }
        assert!(super::certs("T", &row("self-signed"), &[], 0, true).contains("/certs/reissue"));
    }

    #[test]
    fn every_form_carries_the_csrf_token() {
        let certs = json!([{"id": "ab".repeat(32), "kind": "server", "names": ["a.example"],
            "tenant": null, "not_after": "2030-01-01T00:00:00Z", "source": "upload", "key_type": "p256"}]);
        let roots = json!([{"id": "cd".repeat(32), "subject": "CN=R", "not_after": "2030-01-01T00:00:00Z"}]);
        let tenants = json!([{"name": "t", "dns": ["t.example"]}]);
        let system = json!({"dns": null, "admin_email": null, "default_cert": null});
        let pages = [
            super::certs("TOKEN", &certs, &[], 0, true),
            super::roots("TOKEN", &roots, Some("v2"), &[], 0),
            super::roots_reset_confirm("TOKEN", 1, "v"),
            super::import("TOKEN", "", "auto", &[]),
            super::csr("TOKEN", "a.example", &[]),
            super::tenants("TOKEN", &tenants, &system, &certs, "", &[]),
            super::password("TOKEN", false, &[]),
            super::acme(
                "TOKEN",
                &json!({"directory": "https://ca.example/dir", "enabled": true, "challenge": "dns-01",
                    "eab_kid": "kid", "eab_hmac": "********", "check_interval": 60,
                    "account": {"state": "none", "url": null}}),
                &json!([]),
                &json!([{"name": "d", "provider": "cloudflare", "zone": "z", "token": "ab…", "api_base": "u"}]),
                &[],
            ),
        ];
        for page in &pages {
            let forms = page.matches("<form method=\"post\"").count();
            let tokens = page
                .matches("<input type=\"hidden\" name=\"csrf\" value=\"TOKEN\">")
                .count();
            assert!(forms > 0);
            assert_eq!(forms, tokens, "{page}");
        }
    }

    #[test]
    fn store_values_are_escaped() {
        let certs = json!([{"id": "<id>", "kind": "server", "names": ["<script>x</script>"],
            "tenant": "a\"b", "not_after": "x", "source": "upload", "key_type": "p256"}]);
        let page = super::certs("t", &certs, &[("err", "c<".into(), "m>".into())], 0, false);
        assert!(!page.contains("<script>x"));
        assert!(!page.contains("a\"b"));
        assert!(page.contains("&lt;script&gt;"));
        assert!(page.contains("[c&lt;]"));
    }

    #[test]
    fn acme_page_shows_settings_status_and_errors_escaped() {
        let show = json!({"directory": crate::limits::ACME_STAGING_DIRECTORY, "email": "a@b.example",
            "contact": "a@b.example", "enabled": false, "challenge": "tls-alpn-01", "eab_kid": "k<1>",
            "eab_hmac": "********", "check_interval": 3600, "account": {"state": "registered", "url": "https://ca/acct/1"}});
        let status = json!([{"key": "tenant:t", "names": ["<b>t.example"], "state": "failed",
            "not_after": null, "last_error": {"code": "rate-limited", "message": "too many <certs>"},
            "failures": 3, "last_attempt": "2030-01-01T00:00:00Z", "next_attempt": "2030-01-01T01:00:00Z"}]);
        let page = super::acme("T", &show, &status, &json!([]), &[]);
        assert!(page.contains("value=\"staging\" checked"), "{page}");
        assert!(page.contains("<option value=\"tls-alpn-01\" selected>"));
        assert!(!page.contains("id=\"enabled\" name=\"enabled\" value=\"true\" checked"));
        assert!(page.contains("value=\"k&lt;1&gt;\""));
        assert!(page.contains("name=\"eab_hmac\" value=\"\""));
        assert!(!page.contains("********"));
        assert!(page.contains("<td class=\"err\">failed</td>"));
        assert!(page.contains("<code>[rate-limited]</code> too many &lt;certs&gt;"));
        assert!(page.contains("&lt;b&gt;t.example"));
        assert!(page.contains("https://ca/acct/1"));
    }

    #[test]
    fn import_page_never_echoes_a_key() {
        let page = super::import("t", "CERT TEXT", "server", &[]);
        assert!(page.contains("CERT TEXT"));
        assert!(page.contains("<option value=\"server\" selected>"));
        assert!(page.contains("name=\"key\" rows=\"6\" spellcheck=\"false\" autocomplete=\"off\" placeholder=\"-----BEGIN PRIVATE KEY-----\"></textarea>"));
    }

    #[test]
    fn days_left_marks_expired_and_soon() {
        let now = parse_rfc3339("2030-01-01T00:00:00Z").unwrap();
        assert!(days_left("2029-12-31T00:00:00Z", now).contains("expired"));
        assert!(days_left("2030-01-05T00:00:00Z", now).contains("4 days left"));
        assert_eq!(days_left("2031-01-01T00:00:00Z", now), "365 days left");
    }
}
