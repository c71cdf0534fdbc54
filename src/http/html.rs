//! Server-rendered HTML of the web admin: layout, one function per page.
//!
//! Why: the pages must work without JavaScript and load nothing from
//! elsewhere (CSP `default-src 'none'`), so they are plain forms and tables
//! with one inline `<style>` block allowed by its hash (`msg::CSP`).
//!
//! What must hold: every value from the store or the request is escaped, by
//! construction: markup is written only with maud's `html!`, which escapes
//! every `(splice)` for text and double-quoted attribute context alike
//! (`&`, `<`, `>`, `"`), and fragments travel as `Markup`, never as a
//! `String` spliced back in. Nothing here wraps a value as pre-escaped or
//! implements maud's `Render` by hand (a unit test reads this file to hold
//! that), so no value can reach the page unescaped; a value inside an
//! attribute cannot leave its quotes. Every
//! form that posts carries the session's CSRF token; no page ever contains a
//! private key.

use crate::acme::{AcmeView, StatusRow};
use crate::certs::CertView;
use crate::dns::ProviderListing;
use crate::localca::CaView;
use crate::model::ProviderConfig;
use crate::model::Source;
use crate::roots::RootInfo;
use crate::served::ServedView;
use crate::tenant::{SystemView, TenantView};
use maud::{html, Markup, DOCTYPE};

use crate::clock;

/// The only style sheet (its SHA-256 is in the CSP). It must contain none of
/// `& < > "`: it is spliced (hence escaped) like any text, and the page must
/// carry it byte for byte for the hash to match (tested below).
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
a.button{display:inline-block;padding:.3em .9em;margin:.4em .3em .4em 0;text-decoration:none;border:1px solid #888}\
a.button.danger{background:#b42318;color:#fff;border-color:#8a1a12}\
button:disabled{cursor:not-allowed}\
nav{display:inline}fieldset{border:1px solid #ccc;margin:.6em 0}legend{font-weight:600}\
a:focus-visible,button:focus-visible,input:focus-visible,select:focus-visible,textarea:focus-visible{outline:3px solid #1a5fb4;outline-offset:2px}\
.msg{padding:.5em .8em;margin:.5em 0;border-radius:3px}\
.ok{background:#dcf2e3}.warn{background:#fff1cc}.err{background:#fbdcdc}\
.note{color:#5b6670;font-size:.9em}.expired{color:#b42318;font-weight:600}\
.box{background:#fff;border:1px solid #d3d8de;padding:1em;margin:1em 0;max-width:60em}\
main{overflow-wrap:break-word}pre{white-space:pre-wrap;overflow-wrap:anywhere}nav a{margin-right:.9em}time{white-space:nowrap}\
@media(max-width:48em){\
header{padding:.5em .8em;gap:.3em .9em}main{padding:.6em .8em}\
table,tbody,tr,td{display:block}thead,tr:has(th){display:none}\
tr{border:1px solid #d3d8de;margin:.5em 0;background:#fff}td{border:0;border-top:1px solid #eef0f3}td:first-child{font-weight:600;border:0}td[data-label]::before{content:attr(data-label) ': ';color:#5b6670;font-size:.85em}\
input[type=text],input[type=password],input[type=email],input[type=search],input[type=number],select{min-width:0;width:100%;box-sizing:border-box}\
.box{padding:.7em}}";

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
    /// STIR/SHAKEN: signing certificates, STI trust list, a test call.
    Stir,
    /// Password change.
    Password,
    /// Pages outside the bar.
    None,
}

/// A message line: (`ok` | `warn` | `err`, code, message).
pub type Line = (&'static str, String, String);

/// The hidden CSRF field.
fn csrf_field(csrf: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(csrf); }
}

/// A select option, selected when it is the `chosen` value.
fn choice(value: &str, text: &str, chosen: &str) -> Markup {
    html! { option value=(value) selected[value == chosen] { (text) } }
}

/// Message lines.
fn lines(lines: &[Line]) -> Markup {
    html! {
        @for (class, code, message) in lines {
            p class={ "msg " (class) } role="status" {
                @if !code.is_empty() {
                    code { "[" (code) "]" } " "
                }
                (message)
            }
        }
    }
}

/// Where an open alert's cause is shown: the certificate's row, the name
/// set's row on the ACME page (the alert key is `renewal:SET-KEY:...`,
/// `alert::evaluate`), the Root CA page.
fn alert_link(a: &crate::alert::AlertBody) -> String {
    match (a.code.as_str(), &a.cert_id) {
        ("renewal-failing", _) => {
            let set = a
                .key
                .strip_prefix("renewal:")
                .and_then(|k| k.rsplit_once(':'))
                .map_or("", |(set, _)| set);
            format!("/acme#acme-{set}")
        }
        ("roots-outdated", _) => "/roots".to_owned(),
        (_, Some(id)) => format!("/certs#cert-{id}"),
        _ => "/certs".to_owned(),
    }
}

/// A logged-in page with the alerts banner (`alerts`: expiring and expired
/// certificates, failing renewals, an outdated Root CA list) at the top of
/// its `main`, each line linking to its cause. The page unchanged when no
/// alert is open or it has no `main`.
pub fn with_alerts(page: String, alerts: &[crate::alert::OpenAlert]) -> String {
    const MAIN: &str = "<main>";
    let Some(at) = page.find(MAIN).map(|i| i + MAIN.len()) else {
        return page;
    };
    if alerts.is_empty() {
        return page;
    }
    let banner = html! {
        div id="alerts" class="msg warn" role="alert" {
            @for a in alerts {
                div data-code=(a.alert.code) {
                    strong { "⚠ " } (a.alert.subject) " "
                    a href=(alert_link(&a.alert)) { "show" }
                }
            }
        }
    }
    .into_string();
    let mut out = String::with_capacity(page.len() + banner.len());
    out.push_str(page.get(..at).unwrap_or_default());
    out.push_str(&banner);
    out.push_str(page.get(at..).unwrap_or_default());
    out
}

/// The whole document. `csrf` is `None` on pages outside a session.
fn layout(title: &str, nav: Nav, csrf: Option<&str>, body: Markup) -> String {
    let link = |n: Nav, href: &str, text: &str| {
        let here = n == nav;
        html! {
            a href=(href) class=[here.then_some("on")] aria-current=[here.then_some("page")] { (text) }
        }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · pbx-certd" }
                style { (CSS) }
            }
            body {
                header {
                    strong { "pbx-certd" }
                    @if let (Some(csrf), false) = (csrf, nav == Nav::None) {
                        nav aria-label="Main" {
                            (link(Nav::Certs, "/certs", "Certificates"))
                            (link(Nav::Roots, "/roots", "Root CA"))
                            (link(Nav::Import, "/import", "Import"))
                            (link(Nav::Tenants, "/tenants", "Tenants & system"))
                            (link(Nav::Acme, "/acme", "ACME"))
                            (link(Nav::Stir, "/stir", "STIR/SHAKEN"))
                            (link(Nav::Password, "/password", "Password"))
                        }
                        form method="post" action="/logout" {
                            (csrf_field(csrf))
                            button { "Log out" }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
    .into_string()
}

/// Days from now until `not_after` (RFC 3339), for display.
fn days_left(not_after: &str, now: i64) -> Markup {
    html! {
        @match parse_rfc3339(not_after) {
            Some(t) if t <= now => { span class="expired" { "expired" } }
            Some(t) => {
                @let days = (t - now) / clock::DAY;
                @if days < crate::limits::EXPIRING_SOON_DAYS {
                    span class="expired" { (days) " days left" }
                } @else {
                    (days) " days left"
                }
            }
            None => {}
        }
    }
}

/// An expiry as every page shows it: the timestamp in a `<time>` (never
/// wrapped) and the days left, red within `EXPIRING_SOON_DAYS` (the one
/// threshold, as on Certificates).
fn expiry(not_after: &str, now: i64) -> Markup {
    html! {
        time datetime=(not_after) { (not_after) }
        " " span class="note" { (days_left(not_after, now)) }
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

/// Strings, one per line.
fn list(v: &[String]) -> Markup {
    html! {
        @for (i, x) in v.iter().enumerate() {
            @if i > 0 { br; }
            (x)
        }
    }
}

/// Login: the admin password, or the setup token before one is set.
pub fn login(password_set: bool, token_available: bool, message: &[Line]) -> String {
    let body = html! {
        (lines(message))
        @if password_set {
            form method="post" action="/login" class="box" {
                label for="password" { "Password" }
                input type="password" id="password" name="password" autocomplete="current-password" required autofocus;
                div { button type="submit" { "Log in" } }
            }
        } @else if token_available {
            div class="box" {
                p {
                    "No admin password is set yet. Enter the one-time setup token that "
                    code { "pbx-certd serve" } " printed to its log (" code { "setup-token=…" }
                    "); you will then choose the password."
                }
                form method="post" action="/login" {
                    label for="password" { "Setup token" }
                    input type="password" id="password" name="password" autocomplete="off" required autofocus;
                    div { button type="submit" { "Continue" } }
                }
            }
        } @else {
            div class="box" {
                p {
                    "No admin password is set. Set one on the appliance with "
                    code { "pbx-certd admin password" } ", or restart " code { "pbx-certd serve" }
                    " for a new setup token."
                }
            }
        }
    };
    layout("Log in", Nav::None, None, body)
}

/// Choose the admin password (forced after the setup token).
pub fn password(csrf: &str, setup: bool, message: &[Line]) -> String {
    use crate::limits::{MAX_PASSWORD_LEN, MIN_PASSWORD_LEN};
    let body = html! {
        (lines(message))
        @if setup {
            p { "Choose the admin password before anything else. The setup token stops working once it is set." }
        } @else {
            p { "Change the admin password. Other sessions are logged out." }
        }
        form method="post" action="/password" class="box" {
            (csrf_field(csrf))
            label for="new" { "New password (" (MIN_PASSWORD_LEN) "–" (MAX_PASSWORD_LEN) " characters)" }
            input type="password" id="new" name="password" autocomplete="new-password"
                minlength=(MIN_PASSWORD_LEN) maxlength=(MAX_PASSWORD_LEN) required;
            label for="confirm" { "Repeat it" }
            input type="password" id="confirm" name="confirm" autocomplete="new-password" required;
            div { button type="submit" { "Set password" } }
        }
    };
    layout(
        "Admin password",
        if setup { Nav::None } else { Nav::Password },
        Some(csrf),
        body,
    )
}

/// Certificates: `certs --json` rows. `acme`: the `acme status` rows
/// when ACME is on (`None`: off): Reissue works for the certificates a name
/// set manages (`acme::manages`), and failed sets show their last error.
pub fn certs(
    csrf: &str,
    certs: &[CertView],
    served: Option<&ServedView>,
    flash: &[Line],
    now: i64,
    acme: Option<&[StatusRow]>,
    by_expiry: bool,
) -> String {
    let rows = certs;
    let failed: Vec<&StatusRow> = acme
        .unwrap_or_default()
        .iter()
        .filter(|r| r.state == "failed")
        .collect();
    let body = html! {
        (lines(flash))
        @if !failed.is_empty() {
            div id="acme-failures" class="box" {
                strong { "ACME orders failing" }
                @for r in &failed {
                    div class="msg err" id={ "acme-" (r.key) } data-key=(r.key) {
                        (r.names.join(", ")) ": "
                        @if let Some(e) = &r.last_error { code { "[" (e.code) "]" } " " (e.message) " " }
                        (retry_form_from(csrf, r, "certs"))
                        " " a href="/acme#status" { "ACME page" }
                    }
                }
            }
        }
        @if let Some(v) = served { (served_table(v, now)) }
        @if rows.is_empty() {
            p { "No certificates yet. " a href="/import" { "Import one" } "." }
        } @else {
            table {
                thead { tr {
                    th { @if by_expiry { a href="/certs" { "Names" } } @else { "Names" } }
                    th { "Kind" } th { "Tenant" }
                    th aria-sort=[by_expiry.then_some("ascending")] {
                        @if by_expiry { "Expires ▲" } @else { a href="/certs?sort=expiry" title="soonest first" { "Expires" } }
                    }
                    th { "Source" } th { "Key" } th { "Usage" } th { "ID" } th { "Served" } th { "Actions" }
                } }
                tbody {
                    @for c in rows { (cert_row(csrf, c, served, now, acme)) }
                }
            }
            p class="note" {
                "Download gives the certificate chain (PEM), never the key. Check judges the stored chain \
    again now, as a phone or browser would (an expired or soon-expiring intermediate, a root no \
    longer trusted). Reissue orders a new \
    certificate through ACME now (certificates from ACME or self-signed; uploaded ones are never \
    replaced): the CA must reach this PBX on port 80 (HTTP-01) or, with port 80 closed, on port 443 \
    (TLS-ALPN-01)."
            }
        }
    };
    layout("Certificates", Nav::Certs, Some(csrf), body)
}

/// "Who gets what" (`served`): each name a client may ask for, the
/// certificate it gets and by which rule, in red where clients object.
fn served_table(v: &ServedView, now: i64) -> Markup {
    html! {
        h2 id="served" { "Who gets which certificate" }
        table class="served" {
            thead { tr {
                th { "A client asking for" } th { "Owner" } th { "Gets" } th { "Expires" } th { "Rule" }
            } }
            tbody {
                @for r in &v.names {
                    tr class=[(!r.warnings.is_empty()).then_some("err")] data-asked=(r.asked) {
                        td { (r.asked) }
                        td data-label="Owner" { (r.owner.as_deref().unwrap_or("—")) }
                        td data-label="Gets" {
                            @match (&r.cert_name, &r.id) {
                                (Some(n), Some(id)) => { (n) " " code title=(id) { (id.get(..8).unwrap_or(id)) "…" } }
                                _ => { "nothing (the handshake fails)" }
                            }
                            @for w in &r.warnings {
                                br; strong { "⚠ " } span class="warning" data-code=(w.code) { (w.message) }
                            }
                        }
                        td data-label="Expires" { @match &r.not_after { Some(t) => { (expiry(t, now)) } None => { "—" } } }
                        td data-label="Rule" { (r.matched) }
                    }
                }
                @for s in &v.stir_shaken {
                    tr {
                        td { "STIR/SHAKEN signing for " (s.tenant) }
                        td data-label="Owner" { (s.tenant) }
                        td data-label="Gets" { @match &s.id { Some(id) => { code title=(id) { (id.get(..8).unwrap_or(id)) "…" } } None => { "nothing" } } }
                        td data-label="Expires" { "—" }
                        td data-label="Rule" { (s.matched) }
                    }
                }
            }
        }
        p class="note" {
            "What phones and browsers get, by the rules TLS itself uses: the SNI a client sends, or              with no SNI the address it connected to, then the default. A red row is one clients will              reject."
        }
    }
}

/// One row of the certificates table.
fn cert_row(
    csrf: &str,
    c: &CertView,
    served: Option<&ServedView>,
    now: i64,
    acme: Option<&[StatusRow]>,
) -> Markup {
    let id = c.id.as_str();
    let short = id.get(..16).unwrap_or(id);
    let acme_enabled = acme.is_some();
    // The name set ACME renews this certificate for (the same rule as
    // `cert reissue`).
    let set = acme.unwrap_or_default().iter().find(|r| {
        crate::acme::manages(
            r.tenant.as_deref(),
            &r.names,
            c.source,
            c.tenant.as_deref(),
            &c.names,
        )
    });
    let managed = set.is_some();
    let uses = served.map_or(0, |v| {
        v.names
            .iter()
            .filter(|r| r.id.as_deref() == Some(id))
            .count()
    });
    let tls = c.kind != "stir-shaken";
    let not_served = served.is_some_and(|v| v.not_served.iter().any(|n| n == id));
    // Each row's buttons get an accessible name of their own (a screen
    // reader lists "Delete pbx.acme.example", not five "Delete").
    let label = if c.names.is_empty() {
        short.to_owned()
    } else {
        c.names.join(", ")
    };
    html! {
        tr data-id=(id) id={ "cert-" (id) } {
            td {
                (list(&c.names))
                @if let Some(r) = set.filter(|r| r.state == "failed") {
                    span class="err" data-acme-error=(r.key) {
                        "ACME renewal failing"
                        @if let Some(e) = &r.last_error { " " code { "[" (e.code) "]" } }
                        " " a href={ "#acme-" (r.key) } { "details" }
                    }
                }
            }
            td data-label="Kind" { (c.kind) }
            td data-label="Tenant" { (c.tenant.as_deref().unwrap_or("—")) }
            td data-label="Expires" { (expiry(&c.not_after, now)) }
            td data-label="Source" { (c.source.as_str()) }
            td data-label="Key" { (c.key_type) }
            td data-label="Usage" { (c.eku.join(", ")) }
            td data-label="ID" { code title=(id) { (short) "…" } }
            td class="served-mark" data-label="Served" {
                @if not_served { span class="warn" { "not served" } }
                @else if tls && uses > 0 { "served (" (uses) ")" }
                @else if tls { "served for its own names" }
                @else { "—" }
            }
            td {
                a href={ "/certs/" (id) ".pem" } download aria-label={ "Download PEM of " (label) } { "Download PEM" }
                " "
                a class="button danger" href={ "/certs/delete?id=" (id) } aria-label={ "Delete " (label) } { "Delete" }
                " "
                form method="post" action="/certs/check" {
                    (csrf_field(csrf))
                    input type="hidden" name="id" value=(id);
                    button type="submit" aria-label={ "Check " (label) } title="judge the chain again now, as a phone or browser would" { "Check" }
                }
                " "
                @match (acme_enabled, managed) {
                    (true, true) => {
                        form method="post" action="/certs/reissue" {
                            (csrf_field(csrf))
                            input type="hidden" name="id" value=(id);
                            button type="submit" aria-label={ "Reissue " (label) } title="HTTP-01: port 80 must be open to the CA" { "Reissue" }
                        }
                        span class="note" {
                            "HTTP-01 needs port 80 reachable from the Internet; TLS-ALPN-01 needs port 443; DNS-01 needs a "
                            a href="/acme#dns" { "DNS provider" } "."
                        }
                    }
                    (false, _) => {
                        button type="button" disabled title="available once ACME is enabled" { "Reissue" }
                    }
                    (true, false) if c.source == Source::Upload => {
                        button type="button" disabled title="uploaded certificates are never replaced by ACME" { "Reissue" }
                    }
                    (true, false) => {
                        button type="button" disabled title="ACME manages none of its names (no tenant or system name)" { "Reissue" }
                    }
                }
            }
        }
    }
}

/// The delete confirmation: the certificate by its names, tenant and
/// expiry, and what each name it serves gets instead (`cert delete
/// --dry-run`), warnings in red.
pub fn cert_delete_confirm(csrf: &str, p: &crate::ops::DeletePreview, now: i64) -> String {
    let c = &p.cert;
    let body = html! {
        div class="box" {
            p {
                "Delete the " (c.kind) " certificate for " strong { (c.names.join(", ")) }
                @if let Some(t) = &c.tenant { " of tenant " (t) }
                " (expires " (expiry(&c.not_after, now)) ", " (c.source.as_str()) ")?"
            }
            @if p.changes.is_empty() {
                p { "No client is served this certificate now: nothing changes for them." }
            } @else {
                (changes_table(&p.changes))
            }
            form method="post" action="/certs/delete" {
                (csrf_field(csrf))
                input type="hidden" name="id" value=(c.id);
                button class="danger" type="submit" { "Yes, delete" }
                " "
                a href="/certs" { "Cancel" }
            }
        }
    };
    layout("Delete a certificate", Nav::Certs, Some(csrf), body)
}

/// What each name a delete or removal changes gets instead (`--dry-run`),
/// warnings in red: the one table of every confirmation that changes
/// serving.
fn changes_table(changes: &[crate::served::ServedChange]) -> Markup {
    html! {
        table class="served" {
            thead { tr { th { "A client asking for" } th { "Gets instead" } th { "Rule" } } }
            tbody {
                @for ch in changes {
                    tr class=[(!ch.instead.warnings.is_empty()).then_some("err")] data-asked=(ch.now.asked) {
                        td { (ch.now.asked) }
                        td data-label="Gets instead" {
                            @match (&ch.instead.cert_name, &ch.instead.id) {
                                (Some(n), Some(id)) => { (n) " " code title=(id) { (id.get(..8).unwrap_or(id)) "…" } }
                                _ => { "nothing (the handshake fails)" }
                            }
                            @for w in &ch.instead.warnings {
                                br; strong { "⚠ " } span class="warning" data-code=(w.code) { (w.message) }
                            }
                        }
                        td data-label="Rule" { (ch.instead.matched) }
                    }
                }
            }
        }
    }
}

/// The tenant removal confirmation: its names, addresses and certificates,
/// and what each of its names gets instead (`tenant remove --dry-run`). A
/// tenant that still owns domain certificates cannot be removed: the page
/// says so and links to their delete confirmations instead of a button.
pub fn tenant_remove_confirm(csrf: &str, p: &crate::ops::TenantRemovePreview, now: i64) -> String {
    let t = &p.tenant;
    let blocking: Vec<&CertView> = p.certs.iter().filter(|c| c.kind == "domain").collect();
    let body = html! {
        div class="box" {
            p {
                "Remove tenant " strong { (t.name) } "? DNS names: "
                @if t.dns.is_empty() { "none" } @else { (t.dns.join(", ")) }
                "; addresses: "
                @if t.ip.is_empty() { "none" } @else { (t.ip.join(", ")) }
                "."
            }
            @if !p.certs.is_empty() {
                p { "Its certificates:" }
                ul {
                    @for c in &p.certs {
                        li data-id=(c.id) {
                            (c.kind) " " strong { (c.names.join(", ")) } " (expires " (expiry(&c.not_after, now)) ") "
                            a href={ "/certs/delete?id=" (c.id) } aria-label={ "Delete " (c.names.join(", ")) } { "Delete…" }
                        }
                    }
                }
            }
            @if p.changes.is_empty() {
                p { "Nothing changes for any client." }
            } @else {
                (changes_table(&p.changes))
            }
            @if blocking.is_empty() {
                form method="post" action="/tenants/remove" {
                    (csrf_field(csrf))
                    input type="hidden" name="name" value=(t.name);
                    button class="danger" type="submit" { "Yes, remove" }
                    " "
                    a href="/tenants" { "Cancel" }
                }
            } @else {
                p class="msg err" role="status" {
                    code { "[tenant-in-use]" } " "
                    "The tenant still owns " (blocking.len()) " domain certificate(s): delete them first (links above). "
                    a href="/tenants" { "Back" }
                }
            }
        }
    };
    layout("Remove a tenant", Nav::Tenants, Some(csrf), body)
}

/// The Root CA delete confirmation: the ticked roots by name,
/// organisation and expiry (nothing served changes: roots are what the PBX
/// trusts as a client).
pub fn roots_delete_confirm(csrf: &str, roots: &[&RootInfo], now: i64) -> String {
    let body = html! {
        div class="box" {
            p {
                "Delete these " (roots.len()) " root(s) from the Root CA list? The PBX no longer \
    trusts servers whose chain ends at them (ACME directories, provisioning); Reset brings bundled ones back."
            }
            form method="post" action="/roots/delete" {
                (csrf_field(csrf))
                input type="hidden" name="confirm" value="yes";
                ul {
                    @for r in roots {
                        li {
                            input type="hidden" name="id" value=(r.id);
                            strong { (r.name) }
                            @if let Some(o) = &r.organization { " — " (o) }
                            " (expires " (expiry(&r.not_after, now)) ")"
                        }
                    }
                }
                button class="danger" type="submit" { "Yes, delete" }
                " "
                a href="/roots" { "Cancel" }
            }
        }
    };
    layout("Delete roots", Nav::Roots, Some(csrf), body)
}

/// The STIR/SHAKEN page: each tenant's signing certificate with its rule
/// and x5u URL, the STI trust list, and a form that signs a test call and
/// shows the Identity header with its decoded PASSporT.
pub fn stir(
    csrf: &str,
    rows: &[crate::served::StirRow],
    sti_roots: &[RootInfo],
    signed: Option<&crate::stir::Signed>,
    flash: &[Line],
    now: i64,
) -> String {
    let body = html! {
        (lines(flash))
        h2 { "Signing certificate per tenant" }
        @if rows.is_empty() {
            p { "No tenants." }
        } @else {
            table {
                thead { tr { th { "Tenant" } th { "Certificate" } th { "Rule" } th { "x5u (where verifiers fetch the chain)" } } }
                tbody {
                    @for r in rows {
                        tr data-tenant=(r.tenant) {
                            td { (r.tenant) }
                            td { @match &r.id { Some(id) => { code title=(id) { (id.get(..16).unwrap_or(id)) "…" } } None => { "none: import one with --kind stir-shaken" } } }
                            td { (r.matched) }
                            td { @match &r.x5u { Some(u) => { code { (u) } } None => { "—" } } }
                        }
                    }
                }
            }
        }
        h2 { "STI trust list" }
        p class="note" {
            "The STI-PA's CA roots that incoming Identity headers must chain to (not web roots): "
            code { "pbx-certd sti-roots import --cert FILE" } "."
        }
        @if sti_roots.is_empty() {
            p { "Empty: no incoming Identity header can pass." }
        } @else {
            ul { @for r in sti_roots { li { (r.name) @if let Some(o) = &r.organization { " — " (o) } " (expires " (expiry(&r.not_after, now)) ")" } } }
        }
        h2 { "Sign a test call" }
        form method="post" action="/stir/sign" class="box" {
            (csrf_field(csrf))
            label for="stenant" { "Tenant" }
            select id="stenant" name="tenant" {
                @for r in rows { option value=(r.tenant) { (r.tenant) } }
            }
            label for="orig" { "Calling number" }
            input type="text" id="orig" name="orig" required placeholder="+1 202 555 0100";
            label for="dest" { "Called number(s), comma-separated" }
            input type="text" id="dest" name="dest" required placeholder="12025550199";
            label for="attest" { "Attestation" }
            select id="attest" name="attest" {
                option value="A" { "A (full)" } option value="B" { "B (partial)" } option value="C" { "C (gateway)" }
            }
            div { button type="submit" { "Sign" } }
        }
        @if let Some(v) = signed {
            h3 { "Identity header" }
            pre id="identity" { (v.identity) }
            h3 { "PASSporT header" }
            pre id="passport-header" { (v.header) }
            h3 { "PASSporT payload" }
            pre id="passport-payload" { (v.payload) }
        }
    };
    layout("STIR/SHAKEN", Nav::Stir, Some(csrf), body)
}

/// Root CA list: `roots --json` rows.
pub fn roots(
    csrf: &str,
    roots: &[RootInfo],
    filter: Option<&str>,
    update: Option<&str>,
    flash: &[Line],
    now: i64,
) -> String {
    let want = filter.map(str::to_lowercase);
    let rows: Vec<&RootInfo> = roots
        .iter()
        .filter(|r| {
            want.as_deref().is_none_or(|w| {
                r.name.to_lowercase().contains(w)
                    || r.subject.to_lowercase().contains(w)
                    || r.organization
                        .as_deref()
                        .is_some_and(|o| o.to_lowercase().contains(w))
            })
        })
        .collect();
    let delete_button = html! { button class="danger" type="submit" { "Delete selected" } };
    let body = html! {
        (lines(flash))
        @if let Some(version) = update {
            p class="msg warn" {
                "This release bundles a newer Root CA list (" (version) "); Reset would install it."
            }
        }
        p {
            @if filter.is_some() { (rows.len()) " of " }
            (roots.len()) " roots stored. The PBX trusts these when it connects to other servers (ACME, provisioning). "
            a href="/roots/reset" { "Reset to the bundled list…" }
        }
        form method="get" action="/roots" class="filter" {
            label for="q" class="inline" { "Filter " }
            input type="search" id="q" name="q" value=(filter.unwrap_or("")) placeholder="name or organisation";
            " "
            button type="submit" { "Filter" }
            @if filter.is_some() { " " a href="/roots" { "Show all" } }
        }
        form method="post" action="/roots/delete" {
            (csrf_field(csrf))
            (delete_button)
            table {
                thead { tr { th {} th { "Name" } th { "Organisation" } th { "Expires" } th { "ID" } th { "PEM" } } }
                tbody {
                    @for r in &rows {
                        @let id = r.id.as_str();
                        tr {
                            td { input type="checkbox" name="id" value=(id) aria-label={ "select " (r.name) }; }
                            td title=(r.subject) { (r.name) }
                            td data-label="Organisation" { (r.organization.as_deref().unwrap_or("—")) }
                            td data-label="Expires" { (expiry(&r.not_after, now)) }
                            td data-label="ID" { code title=(id) { (id.get(..16).unwrap_or(id)) "…" } }
                            td { a href={ "/roots/" (id) ".pem" } download title="download PEM" aria-label={ "Download PEM of " (r.subject) } { "⬇ PEM" } }
                        }
                    }
                }
            }
            (delete_button)
        }
    };
    layout("Root CA", Nav::Roots, Some(csrf), body)
}

/// The confirmation step of a Root CA reset.
pub fn roots_reset_confirm(csrf: &str, stored: usize, bundled: &str) -> String {
    let body = html! {
        div class="box" {
            p {
                "Replace the " (stored) " stored roots with exactly the bundled list, " (bundled)
                "? Roots you imported are removed; roots you deleted come back."
            }
            form method="post" action="/roots/reset" {
                (csrf_field(csrf))
                input type="hidden" name="confirm" value="yes";
                button class="danger" type="submit" { "Yes, reset the Root CA list" }
                " "
                a href="/roots" { "Cancel" }
            }
        }
    };
    layout("Reset the Root CA list", Nav::Roots, Some(csrf), body)
}

/// The import form; `cert` is re-shown after an error, the key never is.
pub fn import(csrf: &str, cert: &str, kind: &str, message: &[Line]) -> String {
    let option = |value: &str, text: &str| choice(value, text, kind);
    let body = html! {
        (lines(message))
        form method="post" action="/import" class="box" {
            (csrf_field(csrf))
            label for="cert" { "Certificate" }
            textarea id="cert" name="cert" rows="14" spellcheck="false" required
                placeholder="-----BEGIN CERTIFICATE-----\n(your certificate first, then the intermediates)" { (cert) }
            p class="note" {
                "Paste the certificate first, then the intermediate certificates, e.g. a GoDaddy-style "
                code { ".crt" } " and " code { ".ca-bundle" } " together. Root CA certificates go here too (kind: root)."
            }
            label for="key" { "Private key" }
            textarea id="key" name="key" rows="6" spellcheck="false" autocomplete="off"
                placeholder="-----BEGIN PRIVATE KEY-----" {}
            p class="note" {
                "May be left empty to update a certificate whose key is already stored. \
    The key is stored on the PBX and never shown or sent again."
            }
            label for="kind" { "Kind" }
            select id="kind" name="kind" {
                (option("auto", "auto (decide from the certificate)"))
                (option("root", "root (add to the Root CA list)"))
                (option("server", "server (all tenants)"))
                (option("domain", "domain (one tenant)"))
                (option("stir-shaken", "STIR/SHAKEN"))
                (option("client-ca", "client CA (trusted for mutual-TLS clients only)"))
                (option("ca", "local CA (a CA certificate with its key; it then issues tenant certificates)"))
            }
            div {
                input type="checkbox" id="replace" name="replace" value="true";
                " "
                label for="replace" class="inline" { "With local CA: replace the local CA there is" }
            }
            div { button type="submit" { "Import" } }
        }
        p class="note" {
            "No certificate yet? " a href="/csr" { "Make a key and a CSR" }
            " to buy one; its key stays on the PBX, so the bought certificate is imported here with an empty key box."
        }
    };
    layout("Import", Nav::Import, Some(csrf), body)
}

/// DNS providers (secrets already masked by `dns list`) and the local CA,
/// shown on the tenants page.
pub fn dns_and_ca(dns: &[ProviderListing], ca: Option<&CaView>) -> Markup {
    html! {
        h2 { "DNS providers (ACME DNS-01)" }
        (dns_table(dns, None))
        p class="note" {
            "Add and remove them on the " a href="/acme#dns" { "ACME page" } ", with "
            code { "pbx-certd dns add|remove" } " or " code { "/api/dns" } "; secrets are never shown in full."
        }
        h2 { "Local CA" }
        @if let Some(ca) = ca {
            p {
                (ca.subject) " · expires " (ca.not_after) " · "
                a href="/ca.pem" { "download the root (PEM)" } " to load onto phones."
            }
        } @else {
            p {
                "No local CA. For closed networks: " code { "pbx-certd ca init" } ", then "
                code { "pbx-certd ca issue --tenant NAME" } "."
            }
        }
        p { a href="/ca" { "Local CA page" } ": create it, issue certificates for tenants." }
        h2 { "Alerts" }
        p { a href="/alerts" { "Alert settings" } ": e-mail (SMTP) and webhook, and a test alert." }
    }
}

/// The alert settings page (`alert set`, `alert show`, `alert test`):
/// secrets are never shown back, only whether one is stored.
pub fn alert_settings(
    csrf: &str,
    v: &crate::alert::AlertView,
    open: &[crate::alert::OpenAlert],
    flash: &[Line],
) -> String {
    let delivery = |c: &Option<crate::alert::ChannelView>| match c {
        None => "—".to_owned(),
        Some(c) => match (&c.sent, &c.last_error) {
            (Some(at), _) => format!("sent {at}"),
            (None, Some(e)) => format!("failed {} time(s): {e}", c.failures),
            (None, None) => "waiting".to_owned(),
        },
    };
    let or_empty = |o: &Option<String>| o.clone().unwrap_or_default();
    let stored = |o: &Option<String>| if o.is_some() { "set" } else { "not set" };
    let tls = v.smtp_tls.as_str();
    // `show` fills the sender in with the admin e-mail when none is set.
    let from = match (&v.from, &v.to) {
        (Some(f), Some(t)) if f == t => "",
        (Some(f), _) => f.as_str(),
        _ => "",
    };
    let body = html! {
        (lines(flash))
        form method="post" action="/alerts" class="box" {
            (csrf_field(csrf))
            p class="note" {
                "Alerts (expiring certificates, failing renewals, an outdated Root CA list) go by e-mail to the \
    admin e-mail (" (v.to.as_deref().unwrap_or("not set: see Tenants & system")) ") and/or to a signed webhook."
            }
            label for="a-smtp" { "SMTP submission server (HOST:PORT; empty: no e-mail)" }
            input type="text" id="a-smtp" name="smtp_server" value=(or_empty(&v.smtp_server)) placeholder="mail.example.com:587";
            label for="a-tls" { "TLS" }
            select id="a-tls" name="smtp_tls" {
                (choice("starttls", "STARTTLS (port 587)", tls))
                (choice("implicit", "implicit TLS (port 465)", tls))
            }
            label for="a-user" { "SMTP user (empty: no AUTH)" }
            input type="text" id="a-user" name="smtp_user" value=(or_empty(&v.smtp_user)) autocomplete="off";
            label for="a-pass" { "SMTP password (" span id="a-pass-state" { (stored(&v.smtp_password)) } "; empty keeps it)" }
            input type="password" id="a-pass" name="smtp_password" value="" autocomplete="off";
            label for="a-from" { "Sender (empty: the admin e-mail)" }
            input type="email" id="a-from" name="from" value=(from);
            label for="a-hook" { "Webhook URL (https; empty: no webhook)" }
            input type="text" id="a-hook" name="webhook" value=(or_empty(&v.webhook)) placeholder="https://hooks.example.com/pbx";
            label for="a-secret" { "Webhook secret (" span id="a-secret-state" { (stored(&v.webhook_secret)) } "; empty keeps it)" }
            input type="password" id="a-secret" name="webhook_secret" value="" autocomplete="off";
            label for="a-failures" { "Renewal failures in a row before an alert (1 to 100)" }
            input type="text" id="a-failures" name="failures" value=(v.failures);
            div { button type="submit" { "Save alert settings" } }
        }
        form method="post" action="/alerts/test" class="box" {
            (csrf_field(csrf))
            "One test alert on every configured channel, each outcome reported. "
            button type="submit" { "Send test alert" }
        }
        h2 { "Open alerts" }
        @if open.is_empty() {
            p class="note" { "None." }
        } @else {
            table id="open-alerts" {
                thead { tr { th { "Alert" } th { "Since" } th { "E-mail" } th { "Webhook" } } }
                tbody {
                    @for a in open {
                        tr data-code=(a.alert.code) {
                            td { a href=(alert_link(&a.alert)) { (a.alert.subject) } br; span class="note" { (a.alert.message) } }
                            td { (a.opened.as_deref().unwrap_or("—")) }
                            td { (delivery(&a.email)) }
                            td { (delivery(&a.webhook)) }
                        }
                    }
                }
            }
        }
    };
    layout("Alerts", Nav::Tenants, Some(csrf), body)
}

/// The local CA page (`ca init`, `ca issue --tenant NAME [--client]`, the
/// root at `/ca.pem`): the closed-network tasks without the CLI.
pub fn local_ca(csrf: &str, ca: Option<&CaView>, tenants: &[TenantView], flash: &[Line]) -> String {
    let body = html! {
        (lines(flash))
        @if let Some(ca) = ca {
            p id="ca-root" {
                (ca.subject) " · expires " (ca.not_after) " · "
                a href="/ca.pem" download { "Download the root (PEM)" }
                " to load onto phones (public at " code { "/ca.pem" } ", for provisioning)."
            }
            form method="post" action="/ca/issue" class="box" {
                (csrf_field(csrf))
                strong { "Issue a certificate for a tenant's DNS names" }
                label for="ca-tenant" { "Tenant" }
                select id="ca-tenant" name="tenant" required {
                    @for t in tenants { option value=(t.name) { (t.name) " (" (t.dns.join(", ")) ")" } }
                }
                div {
                    input type="checkbox" id="ca-client" name="client" value="true";
                    " "
                    label for="ca-client" class="inline" { "Also for TLS client authentication (a trunk that asks for mutual TLS)" }
                }
                div { button type="submit" { "Issue certificate" } }
            }
        } @else {
            form method="post" action="/ca/init" class="box" {
                (csrf_field(csrf))
                p {
                    "No local CA yet. For a closed network without a public CA: the PBX makes a CA key and a \
    root certificate (P-256, 10 years) whose certificate you load onto the phones; it then signs \
    certificates for the tenants."
                }
                button type="submit" { "Create the local CA" }
            }
        }
    };
    layout("Local CA", Nav::Tenants, Some(csrf), body)
}

/// The provider table (secrets already masked by `dns list`); with `csrf`,
/// each row has a Remove button.
fn dns_table(dns: &[ProviderListing], csrf: Option<&str>) -> Markup {
    let rows = dns;
    html! {
        @if rows.is_empty() {
            p { "No DNS providers." }
        } @else {
            table {
                tr {
                    th { "Name" } th { "Provider" } th { "Zone" } th { "Access" }
                    @if csrf.is_some() { th {} }
                }
                @for p in rows {
                    tr {
                        td { (p.name) }
                        td { (provider_word(&p.access)) }
                        td { (p.zone) }
                        td {
                            @match &p.access {
                                ProviderConfig::Rfc2136 { server, tsig_name, tsig_algorithm, tsig_secret } => {
                                    (server) " · key " (tsig_name) " ("
                                    (tsig_algorithm.as_str()) ") · secret " (tsig_secret)
                                }
                                ProviderConfig::Cloudflare { token, api_base }
                                | ProviderConfig::Digitalocean { token, api_base } => {
                                    (api_base) " · token " (token)
                                }
                            }
                        }
                        @if csrf.is_some() {
                            td {
                                // Provider names are letters, digits, '-', '_', '.' (dns add).
                                a class="button danger" href={ "/acme/dns/remove?name=" (p.name) }
                                    aria-label={ "Remove DNS provider " (p.name) } { "Remove" }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The confirmation before removing a DNS provider: what it is and the
/// names whose DNS-01 orders need it (they fail until another provider
/// covers the zone).
pub fn dns_remove_confirm(csrf: &str, p: &ProviderListing, names: &[String]) -> String {
    let body = html! {
        div class="box" {
            p {
                "Remove the " (provider_word(&p.access)) " DNS provider " strong { (p.name) }
                " for the zone " strong { (p.zone) } "?"
            }
            @if names.is_empty() {
                p { "No tenant or system name is in that zone." }
            } @else {
                p { "DNS-01 orders for these names then fail until another provider covers the zone:" }
                ul { @for n in names { li { (n) } } }
            }
            form method="post" action="/acme/dns/remove" {
                (csrf_field(csrf))
                input type="hidden" name="name" value=(p.name);
                input type="hidden" name="confirm" value="yes";
                button class="danger" type="submit" { "Yes, remove" }
                " "
                a href="/acme#dns" { "Cancel" }
            }
        }
    };
    layout("Remove a DNS provider", Nav::Acme, Some(csrf), body)
}

/// ACME: the settings form (`acme show`), the status of each name set
/// (`acme status`) and the DNS providers with add/remove forms (`dns list`).
/// The EAB HMAC is never written into the page.
pub fn acme(
    csrf: &str,
    show: &AcmeView,
    status: &[StatusRow],
    dns: &[ProviderListing],
    propagation: Option<&crate::dns::PropagationView>,
    flash: &[Line],
) -> String {
    use crate::limits::{
        ACME_DEFAULT_DIRECTORY, ACME_MAX_CHECK_INTERVAL_SECS, ACME_MIN_CHECK_INTERVAL_SECS,
        ACME_STAGING_DIRECTORY,
    };
    let directory = show.directory.as_str();
    let preset = match directory {
        ACME_DEFAULT_DIRECTORY => "production",
        ACME_STAGING_DIRECTORY => "staging",
        _ => "custom",
    };
    let radio = |value: &str, text: Markup| {
        html! {
            div {
                input type="radio" id={ "dir-" (value) } name="preset" value=(value) checked[value == preset];
                " "
                label for={ "dir-" (value) } class="inline" { (text) }
            }
        }
    };
    let challenge = show.challenge.as_str();
    let option = |value: &str, text: &str| choice(value, text, challenge);
    let account = &show.account;
    let eab_kid = show.eab_kid.as_deref().unwrap_or("");
    let status_rows = status;
    let body = html! {
        (lines(flash))
        h2 { "Settings" }
        form method="post" action="/acme" class="box" {
            (csrf_field(csrf))
            div {
                input type="checkbox" id="enabled" name="enabled" value="true" checked[show.enabled];
                " "
                label for="enabled" class="inline" { "Enabled" }
            }
            fieldset {
                legend { "Directory" }
                (radio("production", html! { "Let's Encrypt " code { (ACME_DEFAULT_DIRECTORY) } }))
                (radio("staging", html! { "Let's Encrypt staging (test certificates) " code { (ACME_STAGING_DIRECTORY) } }))
                (radio("custom", html! { "Another ACME CA:" }))
                input type="text" id="directory" name="directory" value=(if preset == "custom" { directory } else { "" })
                    aria-label="custom directory URL" placeholder="https://ca.example/directory";
            }
            label for="email" { "Contact e-mail" }
            input type="email" id="email" name="email" value=(show.email.as_deref().unwrap_or("")) placeholder="none";
            p class="note" {
                "Empty: none (the admin e-mail is used when set). Contact now: "
                (show.contact.as_deref().unwrap_or("none")) "."
            }
            label for="challenge" { "Challenge" }
            select id="challenge" name="challenge" {
                (option("auto", "auto"))
                (option("http-01", "HTTP-01 (port 80)"))
                (option("dns-01", "DNS-01 (DNS provider)"))
                (option("tls-alpn-01", "TLS-ALPN-01 (port 443)"))
            }
            p class="note" {
                "auto: DNS-01 when a DNS provider covers the name, else HTTP-01 (port 80 must be \
    reachable from the Internet), else TLS-ALPN-01 (port 443)."
            }
            label for="eab_kid" { "External Account Binding key ID" }
            input type="text" id="eab_kid" name="eab_kid" value=(eab_kid) autocomplete="off";
            label for="eab_hmac" { "EAB HMAC key" }
            input type="password" id="eab_hmac" name="eab_hmac" value="" autocomplete="off"
                placeholder=(if eab_kid.is_empty() { "" } else { "(stored; unchanged)" });
            p class="note" {
                "Only for CAs that require it. The HMAC key is never shown; leave it empty to keep \
    the stored one. An empty key ID removes the binding."
            }
            label for="check_interval" {
                "Check interval (e.g. 6h, 30m, 1h30m; "
                (clock::duration_text(ACME_MIN_CHECK_INTERVAL_SECS)) " to "
                (clock::duration_text(ACME_MAX_CHECK_INTERVAL_SECS)) ")"
            }
            input type="text" id="check_interval" name="check_interval"
                value=(clock::duration_text(show.check_interval));
            div { button type="submit" { "Save" } }
        }
        p id="account" {
            "Account: "
            @match account.state.as_str() {
                "registered" => { "registered with the CA" }
                "key-only" => { "key created, not yet registered with the CA (it registers at the first order)" }
                _ => { "none yet (created and registered at the first order)" }
            }
            @if let Some(url) = &account.url { " " code { (url) } }
        }
        h2 { "Status" }
        @if !show.enabled {
            p class="msg warn" { "ACME is off: nothing is ordered or renewed. Tick Enabled above to start." }
        }
        @if status_rows.is_empty() {
            p { "No names to certify: add tenants with DNS names or set the system DNS name." }
        } @else {
            table id="status" {
                thead { tr {
                    th { "Name set" } th { "Names" } th { "State" } th { "Certificate expires" }
                    th { "Last error" } th { "Failures" } th { "Last attempt" } th { "Next attempt" }
                    th { "Actions" }
                } }
                tbody { @for r in status_rows { (status_row(csrf, r)) } }
            }
        }
        p class="note" {
            "Failures (the CA unreachable, rate limits, failed validation) back off and never remove \
    the certificate being served. " a href="/certs" { "Reissue" } " forces a renewal now."
        }
        h2 id="dns" { "DNS providers (DNS-01)" }
        (dns_table(dns, Some(csrf)))
        form method="post" action="/acme/dns/add" class="box" {
            (csrf_field(csrf))
            input type="hidden" name="provider" value="rfc2136";
            strong { "Add an RFC 2136 provider" } " (dynamic update with TSIG)"
            label for="r-name" { "Name" }
            input type="text" id="r-name" name="name" required;
            label for="r-zone" { "Zone" }
            input type="text" id="r-zone" name="zone" required placeholder="example.com";
            label for="r-server" { "Primary server (HOST:PORT)" }
            input type="text" id="r-server" name="server" required placeholder="192.0.2.53:53";
            label for="r-tsig" { "TSIG key name" }
            input type="text" id="r-tsig" name="tsig_name" required;
            label for="r-alg" { "TSIG algorithm" }
            select id="r-alg" name="tsig_algorithm" {
                @for (i, alg) in crate::model::TsigAlgorithm::NAMES.iter().enumerate() {
                    option value=(alg) selected[i == 0] { (alg) }
                }
            }
            label for="r-secret" { "TSIG secret (Base64)" }
            input type="password" id="r-secret" name="tsig_secret" required autocomplete="off";
            div { button type="submit" { "Add RFC 2136 provider" } }
        }
        (token_provider_form(csrf, "cloudflare", "Cloudflare", "API token (DNS Edit on the zone)",
            crate::limits::CLOUDFLARE_DEFAULT_API_BASE))
        (token_provider_form(csrf, "digitalocean", "DigitalOcean",
            "API token (domain read, create and delete scopes)",
            crate::limits::DIGITALOCEAN_DEFAULT_API_BASE))
        p class="note" { "Secrets are stored on the PBX and never shown again in full." }
        @if let Some(p) = propagation { (propagation_form(csrf, p)) }
    };
    layout("ACME", Nav::Acme, Some(csrf), body)
}

/// The DNS-01 propagation settings (`dns set`): how long to wait for the
/// TXT record, how often to look, whether the zone's NS servers are asked.
fn propagation_form(csrf: &str, p: &crate::dns::PropagationView) -> Markup {
    html! {
        form method="post" action="/acme/dns/propagation" class="box" id="propagation" {
            (csrf_field(csrf))
            strong { "DNS-01 propagation check" }
            label for="p-timeout" { "Wait for the TXT record at most (e.g. 2m, 90s)" }
            input type="text" id="p-timeout" name="propagation_timeout" value=(clock::duration_text(p.propagation_timeout));
            label for="p-interval" { "Look again every (e.g. 5s)" }
            input type="text" id="p-interval" name="propagation_interval" value=(clock::duration_text(p.propagation_interval));
            div {
                input type="checkbox" id="p-ns" name="check_ns" value="true" checked[p.check_ns];
                " "
                label for="p-ns" class="inline" { "Also ask the zone's NS servers" }
            }
            div { button type="submit" { "Save propagation settings" } }
        }
    }
}

/// The add form of a provider reached with an API token (`dns add
/// --provider P --token T [--api-base URL]`); the ID prefix of its fields is
/// the provider word.
fn token_provider_form(
    csrf: &str,
    provider: &str,
    title: &str,
    token_label: &str,
    default_base: &str,
) -> Markup {
    let id = |field: &str| format!("{provider}-{field}");
    html! {
        form method="post" action="/acme/dns/add" class="box" {
            (csrf_field(csrf))
            input type="hidden" name="provider" value=(provider);
            strong { "Add a " (title) " provider" }
            label for=(id("name")) { "Name" }
            input type="text" id=(id("name")) name="name" required;
            label for=(id("zone")) { "Zone" }
            input type="text" id=(id("zone")) name="zone" required placeholder="example.com";
            label for=(id("token")) { (token_label) }
            input type="password" id=(id("token")) name="token" required autocomplete="off";
            label for=(id("base")) { "API base (empty: " (default_base) ")" }
            input type="text" id=(id("base")) name="api_base" placeholder=(default_base);
            div { button type="submit" { "Add " (title) " provider" } }
        }
    }
}

/// One row of the ACME status table; a failed set has a Retry button.
fn status_row(csrf: &str, r: &StatusRow) -> Markup {
    let state = r.state.as_str();
    let class = match state {
        "valid" => "ok",
        "failed" => "err",
        "off" => "note",
        _ => "warn",
    };
    let or_dash = |v: &Option<String>| v.as_deref().unwrap_or("—").to_owned();
    let key = r.key.as_str();
    html! {
        tr data-key=(key) id={ "acme-" (key) } {
            td { (key) }
            td { (list(&r.names)) }
            td class=(class) { (state) }
            td { (or_dash(&r.not_after)) }
            td {
                @if let Some(e) = &r.last_error {
                    code { "[" (e.code) "]" }
                    " " (e.message)
                } @else {
                    "—"
                }
            }
            td { (r.failures) }
            td { (or_dash(&r.last_attempt)) }
            td { (or_dash(&r.next_attempt)) }
            td { @if state == "failed" { (retry_form(csrf, r)) } }
        }
    }
}

/// The Retry button of a failed name set (`acme retry KEY`).
fn retry_form(csrf: &str, r: &StatusRow) -> Markup {
    retry_form_from(csrf, r, "acme")
}

/// The Retry button, coming back to the page `from` (`acme`, `certs`).
fn retry_form_from(csrf: &str, r: &StatusRow, from: &str) -> Markup {
    html! {
        form method="post" action="/acme/retry" {
            (csrf_field(csrf))
            input type="hidden" name="key" value=(r.key);
            input type="hidden" name="from" value=(from);
            button type="submit" aria-label={ "Retry " (r.names.join(", ")) } { "Retry" }
        }
    }
}

/// The `provider` word of a listed provider.
fn provider_word(access: &ProviderConfig) -> &'static str {
    match access {
        ProviderConfig::Rfc2136 { .. } => "rfc2136",
        ProviderConfig::Cloudflare { .. } => "cloudflare",
        ProviderConfig::Digitalocean { .. } => "digitalocean",
    }
}

/// The CSR form: names (one per line) and key type; the answer is a download.
/// `subject`: the O, OU, L, ST, C typed (kept after an error); `pending`:
/// the CSR keys waiting for their certificate, each with a Delete link to
/// its confirmation page.
pub fn csr(
    csrf: &str,
    names: &str,
    subject: &crate::localca::CsrSubject,
    pending: &[crate::localca::PendingCsr],
    message: &[Line],
) -> String {
    let text = |id: &str, name: &str, label: &str, value: &Option<String>, hint: &str| {
        html! {
            label for=(id) { (label) }
            input type="text" id=(id) name=(name) value=(value.as_deref().unwrap_or("")) placeholder=(hint);
        }
    };
    let body = html! {
        (lines(message))
        form method="post" action="/csr" class="box" {
            (csrf_field(csrf))
            label for="names" { "DNS names" }
            textarea id="names" name="names" rows="5" spellcheck="false" required
                placeholder="pbx.example.com\nsip.example.com" { (names) }
            p class="note" { "One name per line; the first is the certificate's common name." }
            fieldset {
                legend { "Organization (optional; OV/EV certificates)" }
                (text("csr-o", "org", "Organization (O)", &subject.organization, "Example GmbH"))
                (text("csr-ou", "org_unit", "Organizational unit (OU)", &subject.organizational_unit, ""))
                (text("csr-l", "locality", "City (L)", &subject.locality, "Berlin"))
                (text("csr-st", "state", "State or province (ST)", &subject.state, "Berlin"))
                label for="csr-c" { "Country (C, two letters)" }
                input type="text" id="csr-c" name="country" maxlength="2" size="2"
                    value=(subject.country.as_deref().unwrap_or("")) placeholder="DE";
            }
            label for="key_type" { "Key type" }
            select id="key_type" name="key_type" {
                option value="p256" selected { "ECDSA P-256" }
                option value="rsa2048" { "RSA 2048" }
            }
            p class="note" {
                "A new private key is made and stored on the PBX; it is never shown. Send the downloaded "
                code { ".csr" } " to the CA, then import the certificate it sends with an empty key box."
            }
            div { button type="submit" { "Make key and download CSR" } }
        }
        h2 { "Keys waiting for their certificate" }
        @if pending.is_empty() {
            p class="note" { "No CSR key is waiting for its certificate." }
        } @else {
            table id="pending-csr" {
                thead { tr { th { "Names" } th { "Created" } th { "Key type" } th { "Key ID" } th { "Actions" } } }
                tbody {
                    @for p in pending {
                        tr data-key=(p.key_id) {
                            td { (list(&p.names)) }
                            td { (p.created) }
                            td { (p.key_type.as_str()) }
                            td { code title=(p.key_id) { (p.key_id.get(..16).unwrap_or(&p.key_id)) "…" } }
                            td {
                                a class="button danger" href={ "/csr/delete?key=" (p.key_id) }
                                    aria-label={ "Delete the CSR key for " (p.names.join(", ")) } { "Delete" }
                            }
                        }
                    }
                }
            }
            p class="note" {
                "Import the certificate the CA sends with an empty key box: its stored key is found. \
    Deleting a key makes that certificate unusable here."
            }
        }
    };
    layout("Certificate signing request", Nav::Import, Some(csrf), body)
}

/// The confirmation before deleting a pending CSR key.
pub fn csr_delete_confirm(csrf: &str, p: &crate::localca::PendingCsr) -> String {
    let body = html! {
        div class="box" {
            p {
                "Delete the " (p.key_type.as_str()) " key of the CSR for " strong { (p.names.join(", ")) }
                " (made " (p.created) ")? A certificate bought with that CSR can then not be imported."
            }
            form method="post" action="/csr/delete" {
                (csrf_field(csrf))
                input type="hidden" name="key" value=(p.key_id);
                button class="danger" type="submit" { "Yes, delete" }
                " "
                a href="/csr" { "Cancel" }
            }
        }
    };
    layout("Delete a CSR key", Nav::Import, Some(csrf), body)
}

/// What was typed into a tenant form, shown again after an error (no
/// field of it is a secret).
#[derive(Debug, Clone, Default)]
pub struct TenantTyped {
    /// The tenant's name.
    pub name: String,
    /// DNS names as typed (one per line).
    pub dns: String,
    /// IP addresses as typed (one per line).
    pub ip: String,
}

/// The tenant edit form's values: from the stored tenant (`of`), or as
/// typed when the change was refused (none of them is a secret).
#[derive(Debug, Clone, Default)]
pub struct TenantEdit {
    /// The tenant (not editable: the key of its certificates).
    pub name: String,
    /// DNS names, one per line.
    pub dns: String,
    /// IP addresses, one per line.
    pub ip: String,
    /// `default` or a challenge word.
    pub challenge: String,
    /// `default` or a key type word.
    pub key_type: String,
    /// `default` or a profile name.
    pub profile: String,
}

impl TenantEdit {
    /// The form filled from the stored tenant.
    pub fn of(t: &TenantView) -> TenantEdit {
        TenantEdit {
            name: t.name.clone(),
            dns: t.dns.join("\n"),
            ip: t.ip.join("\n"),
            challenge: t.acme_challenge.word().to_owned(),
            key_type: t.acme_key_type.word().to_owned(),
            profile: t.acme_profile.clone(),
        }
    }
}

/// Edit a tenant (`tenant edit`): its DNS names and addresses (checked
/// against the other tenants' as `tenant add` does) and its ACME options.
pub fn tenant_edit(csrf: &str, t: &TenantEdit, flash: &[Line]) -> String {
    use crate::model::{ChallengeChoice, KeyType};
    let challenges = [
        ChallengeChoice::Auto,
        ChallengeChoice::Http01,
        ChallengeChoice::Dns01,
        ChallengeChoice::TlsAlpn01,
    ];
    let body = html! {
        (lines(flash))
        form method="post" action="/tenants/edit" class="box" {
            (csrf_field(csrf))
            input type="hidden" name="name" value=(t.name);
            p { "Tenant " strong { (t.name) } ". Its certificates stay its own; new names get certificates by ACME or import." }
            label for="edns" { "DNS names (one per line)" }
            textarea id="edns" name="dns" rows="4" spellcheck="false" { (t.dns) }
            label for="eip" { "IP addresses phones connect to without a name (one per line; may be empty)" }
            textarea id="eip" name="ip" rows="2" spellcheck="false" { (t.ip) }
            label for="echallenge" { "ACME challenge" }
            select id="echallenge" name="challenge" {
                (choice("default", "default (the ACME page's setting)", &t.challenge))
                @for c in challenges { (choice(c.as_str(), c.as_str(), &t.challenge)) }
            }
            label for="ekey" { "Key type" }
            select id="ekey" name="key_type" {
                (choice("default", "default (P-256)", &t.key_type))
                @for k in [KeyType::P256, KeyType::Rsa2048] { (choice(k.as_str(), k.as_str(), &t.key_type)) }
            }
            label for="eprofile" { "ACME profile (" code { "default" } ": the ACME page's)" }
            input type="text" id="eprofile" name="profile" value=(t.profile);
            div {
                button type="submit" { "Save tenant" }
                " "
                a href="/tenants" { "Cancel" }
            }
        }
    };
    layout("Edit a tenant", Nav::Tenants, Some(csrf), body)
}

/// Tenants and system settings; `extra` (from `dns_and_ca`) ends the page;
/// `add` fills the add form.
pub fn tenants(
    csrf: &str,
    tenants: &[TenantView],
    system: &SystemView,
    certs: &[CertView],
    extra: &Markup,
    add: &TenantTyped,
    flash: &[Line],
) -> String {
    let rows = tenants;
    let default = system.default_cert.as_deref().unwrap_or("");
    let choices = certs
        .iter()
        .filter(|c| matches!(c.kind.as_str(), "server" | "domain"));
    let body = html! {
        (lines(flash))
        h2 { "Tenants" }
        @if rows.is_empty() {
            p { "No tenants." }
        } @else {
            table {
                thead { tr { th { "Tenant" } th { "DNS names" } th { "IP addresses" } th {} } }
                tbody {
                    @for t in rows {
                        tr {
                            td { (t.name) }
                            td data-label="DNS names" { (list(&t.dns)) }
                            td data-label="IP addresses" { (list(&t.ip)) }
                            td {
                                a class="button" href={ "/tenants/edit?name=" (t.name) }
                                    aria-label={ "Edit " (t.name) } { "Edit" }
                                " "
                                a class="button danger" href={ "/tenants/remove?name=" (t.name) }
                                    aria-label={ "Remove " (t.name) } { "Remove" }
                            }
                        }
                    }
                }
            }
        }
        form method="post" action="/tenants/add" class="box" {
            (csrf_field(csrf))
            label for="tname" { "New tenant" }
            input type="text" id="tname" name="name" value=(add.name) required;
            label for="tdns" { "DNS names (one per line)" }
            textarea id="tdns" name="dns" rows="3" { (add.dns) }
            label for="tip" { "IP addresses phones connect to without a name (optional, one per line)" }
            textarea id="tip" name="ip" rows="2" { (add.ip) }
            div { button type="submit" { "Add tenant" } }
        }
        h2 { "System" }
        form method="post" action="/system" class="box" {
            (csrf_field(csrf))
            label for="sdns" { "System DNS name" }
            input type="text" id="sdns" name="dns" value=(system.dns.as_deref().unwrap_or(""));
            label for="smail" { "Admin e-mail" }
            input type="email" id="smail" name="admin_email" value=(system.admin_email.as_deref().unwrap_or(""));
            label for="sdef" { "Default certificate (clients without SNI)" }
            select id="sdef" name="default_cert" {
                option value="none" selected[default.is_empty()] {
                    "automatic (server certificate for the system name)"
                }
                @for c in choices {
                    @let id = c.id.as_str();
                    option value=(id) selected[id == default] {
                        @for (i, n) in c.names.iter().enumerate() {
                            @if i > 0 { ", " }
                            (n)
                        }
                        " (" (c.kind) ", " (id.get(..12).unwrap_or(id)) "…)"
                    }
                }
            }
            p class="note" {
                "An empty field clears the setting. Root CA list: "
                a href="/roots" id="roots-count" { (system.roots_stored) " roots stored" }
                @if let Some(v) = &system.roots_version { " (last reset to the bundled " (v) ")" }
                ". Private keys and secrets: "
                @match (&system.seal_key_id, system.keys_sealed) {
                    (Some(id), true) => { span id="keys-sealed" { "sealed at rest with key " code { (id) } } }
                    _ => { span id="keys-sealed" { "not sealed (no store key file)" } }
                }
                "."
            }
            div { button type="submit" { "Save" } }
        }
        (extra)
    };
    layout("Tenants & system", Nav::Tenants, Some(csrf), body)
}

/// A page with just a message (errors such as 403, 404, 429).
pub fn message(title: &str, csrf: Option<&str>, line: &[Line]) -> String {
    let body = html! {
        (lines(line))
        p { a href="/" { "Back to the admin pages" } }
    };
    layout(title, Nav::None, csrf, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A view from its documented JSON (as `--json` prints it).
    fn from<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
        serde_json::from_value(v).unwrap()
    }

    fn system(dns: Option<&str>) -> SystemView {
        from(
            json!({"dns": dns, "admin_email": dns, "default_cert": null, "aia_fetch": true, "roots_version": null,
            "bundled_roots_version": "v", "roots_update_available": false}),
        )
    }

    #[test]
    fn the_system_box_says_whether_keys_are_sealed() {
        let page = |system: &SystemView| {
            super::tenants(
                "t",
                &[],
                system,
                &[],
                &html! {},
                &super::TenantTyped::default(),
                &[],
            )
        };
        let plain = page(&system(None));
        assert!(plain.contains("not sealed (no store key file)"), "{plain}");
        let mut sealed = system(None);
        sealed.keys_sealed = true;
        sealed.seal_key_id = Some("786900c012409e59".into());
        let sealed = page(&sealed);
        assert!(
            sealed.contains("sealed at rest with key <code>786900c012409e59</code>"),
            "{sealed}"
        );
        assert!(!sealed.contains("not sealed"), "{sealed}");
    }

    #[test]
    fn values_are_escaped_in_text_and_attributes() {
        let v = "<a href=\"x\">'&'</a>";
        let page = super::tenants(
            "t",
            &from::<Vec<TenantView>>(json!([{"name": v, "dns": [v],
                "acme_challenge": "default", "acme_key_type": "default",
                "acme_profile": "default"}])),
            &system(Some(v)),
            &[],
            &dns_and_ca(&[], None),
            &super::TenantTyped {
                name: v.into(),
                dns: v.into(),
                ip: v.into(),
            },
            &[],
        );
        let text = "&lt;a href=&quot;x&quot;&gt;'&amp;'&lt;/a&gt;";
        assert!(page.contains(&format!("<td>{text}</td>")), "{page}");
        assert!(
            page.contains(&format!("name=\"name\" value=\"{text}\"")),
            "{page}"
        );
        assert!(
            page.contains(&format!("name=\"dns\" value=\"{text}\"")),
            "{page}"
        );
        assert!(!page.contains("<a href=\"x\">"), "{page}");
    }

    #[test]
    fn nothing_bypasses_the_escaping() {
        // The guarantee of this module: markup only from `html!`, no raw
        // splice (maud's escape hatches: the pre-escaped wrapper, building a
        // `Markup` by hand, a hand-written `Render`).
        let source = include_str!("html.rs");
        for bypass in [
            concat!("Pre", "Escaped"),
            concat!("{ ", "0:"),
            concat!("{", "0:"),
            concat!("Render", " for"),
            concat!("render", "_to"),
        ] {
            assert!(!source.contains(bypass), "html.rs must not use {bypass}");
        }
    }

    #[test]
    fn the_style_sheet_is_carried_verbatim() {
        // msg::CSP allows the sheet by hash: the page must hold it byte for byte.
        assert!(super::message("m", None, &[]).contains(&format!("<style>{CSS}</style>")));
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
        let row = |source: &str| -> Vec<CertView> {
            from(
                json!([{"id": "ab".repeat(32), "kind": "server", "names": ["a.example"], "tenant": null,
                "not_before": "2029-01-01T00:00:00Z", "not_after": "2030-01-01T00:00:00Z",
                "source": source, "key_type": "p256"}]),
            )
        };
        // The system name set covers a.example; another set covers b.example.
        let set = |names: &[&str]| -> Vec<StatusRow> {
            from(
                json!([{"key": "system", "tenant": null, "names": names, "state": "valid",
                "cert_id": null, "not_after": null, "last_error": null, "failures": 0,
                "last_attempt": null, "next_attempt": null}]),
            )
        };
        let mine = set(&["a.example"]);
        let other = set(&["b.example"]);
        let on = super::certs("T", &row("acme"), None, &[], 0, Some(&mine), false);
        assert!(on.contains("action=\"/certs/reissue\""), "{on}");
        for (source, acme) in [
            ("acme", None),
            ("upload", Some(&mine[..])),
            ("self-signed", None),
            // A self-signed certificate for a name no set has: ACME says
            // not-acme-managed, so no form.
            ("self-signed", Some(&other[..])),
        ] {
            let page = super::certs("T", &row(source), None, &[], 0, acme, false);
            assert!(!page.contains("/certs/reissue"), "{source} {acme:?}");
            assert!(page.contains("disabled"), "{source} {acme:?}");
        }
        assert!(
            super::certs("T", &row("self-signed"), None, &[], 0, Some(&mine), false)
                .contains("/certs/reissue")
        );
    }

    #[test]
    fn every_form_carries_the_csrf_token() {
        let certs: Vec<CertView> = from(json!([{"id": "ab".repeat(32), "kind": "server",
            "names": ["a.example"], "tenant": null, "not_before": "2029-01-01T00:00:00Z",
            "not_after": "2030-01-01T00:00:00Z", "source": "upload", "key_type": "p256"}]));
        let roots: Vec<RootInfo> = from(json!([{"id": "cd".repeat(32), "subject": "CN=R",
            "not_after": "2030-01-01T00:00:00Z"}]));
        let tenants: Vec<TenantView> = from(json!([{"name": "t", "dns": ["t.example"],
            "acme_challenge": "default", "acme_key_type": "default",
                "acme_profile": "default"}]));
        let system = system(None);
        let pages = [
            super::certs("TOKEN", &certs, None, &[], 0, Some(&[]), false),
            super::roots("TOKEN", &roots, None, Some("v2"), &[], 0),
            super::roots_reset_confirm("TOKEN", 1, "v"),
            super::import("TOKEN", "", "auto", &[]),
            super::csr(
                "TOKEN",
                "a.example",
                &crate::localca::CsrSubject::default(),
                &from::<Vec<crate::localca::PendingCsr>>(json!([{"key_id": "ab".repeat(32),
                    "names": ["a.example"], "key_type": "p256", "created": "2026-01-01T00:00:00Z"}])),
                &[],
            ),
            super::alert_settings(
                "TOKEN",
                &from(
                    json!({"smtp_server": "m:587", "smtp_tls": "starttls", "smtp_user": "u",
                    "smtp_password": "********", "from": null, "to": null, "webhook": null,
                    "webhook_secret": null, "failures": 3}),
                ),
                &[],
                &[],
            ),
            super::local_ca("TOKEN", None, &tenants, &[]),
            super::local_ca(
                "TOKEN",
                Some(&from(
                    json!({"id": "ab", "subject": "CN=x", "not_after": "x", "pem": "p"}),
                )),
                &tenants,
                &[],
            ),
            super::csr_delete_confirm(
                "TOKEN",
                &from(json!({"key_id": "ab".repeat(32), "names": ["a.example"],
                    "key_type": "p256", "created": "2026-01-01T00:00:00Z"})),
            ),
            super::tenants(
                "TOKEN",
                &tenants,
                &system,
                &certs,
                &html! {},
                &super::TenantTyped::default(),
                &[],
            ),
            super::password("TOKEN", false, &[]),
            super::acme(
                "TOKEN",
                &from(
                    json!({"directory": "https://ca.example/dir", "email": null, "contact": null,
                    "enabled": true, "challenge": "dns-01",
                    "eab_kid": "kid", "eab_hmac": "********", "check_interval": 60,
                    "account": {"state": "none", "url": null}}),
                ),
                &[],
                &from::<Vec<ProviderListing>>(json!([{"name": "d", "provider": "cloudflare",
                    "zone": "z", "token": "ab…", "api_base": "u"}])),
                Some(&from(
                    json!({"propagation_timeout": 120, "propagation_interval": 5,
                    "check_ns": true}),
                )),
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
    fn the_alerts_banner_is_escaped_and_links_each_cause() {
        let alerts: Vec<crate::alert::OpenAlert> = from(json!([
            {"key": "expiring:ab:7", "code": "cert-expiring", "subject": "<b>x</b>",
             "message": "m", "cert_id": "ab", "at": null, "opened": null, "email": null, "webhook": null},
            {"key": "renewal:tenant:t:failures", "code": "renewal-failing", "subject": "s",
             "message": "m", "cert_id": null, "at": null, "opened": null, "email": null, "webhook": null},
            {"key": "roots:v", "code": "roots-outdated", "subject": "r",
             "message": "m", "cert_id": null, "at": null, "opened": null, "email": null, "webhook": null}
        ]));
        let page = super::with_alerts(super::message("T", Some("c"), &[]), &alerts);
        let main = page.find("<main>").unwrap();
        assert!(page.find("id=\"alerts\"").unwrap() > main, "{page}");
        assert!(
            page.contains("&lt;b&gt;x&lt;/b&gt;") && !page.contains("<b>x"),
            "{page}"
        );
        for href in ["/certs#cert-ab", "/acme#acme-tenant:t", "/roots"] {
            assert!(page.contains(&format!("href=\"{href}\"")), "{href}: {page}");
        }
        let plain = super::message("T", Some("c"), &[]);
        assert_eq!(super::with_alerts(plain.clone(), &[]), plain);
    }

    #[test]
    fn store_values_are_escaped() {
        let certs: Vec<CertView> = from(json!([{"id": "<id>", "kind": "server",
            "names": ["<script>x</script>"], "tenant": "a\"b", "not_before": "x", "not_after": "x",
            "source": "upload", "key_type": "p256"}]));
        let page = super::certs(
            "t",
            &certs,
            None,
            &[("err", "c<".into(), "m>".into())],
            0,
            None,
            true,
        );
        assert!(!page.contains("<script>x"));
        assert!(!page.contains("a\"b"));
        assert!(page.contains("&lt;script&gt;"));
        assert!(page.contains("[c&lt;]"));
    }

    #[test]
    fn acme_page_shows_settings_status_and_errors_escaped() {
        let show: AcmeView = from(
            json!({"directory": crate::limits::ACME_STAGING_DIRECTORY, "email": "a@b.example",
            "contact": "a@b.example", "enabled": false, "challenge": "tls-alpn-01", "eab_kid": "k<1>",
            "eab_hmac": "********", "check_interval": 3600, "account": {"state": "registered", "url": "https://ca/acct/1"}}),
        );
        let status: Vec<StatusRow> = from(json!([{"key": "tenant:t", "tenant": "t",
            "names": ["<b>t.example"], "state": "failed", "cert_id": null, "not_after": null, "last_error": {"code": "rate-limited", "message": "too many <certs>"},
            "failures": 3, "last_attempt": "2030-01-01T00:00:00Z", "next_attempt": "2030-01-01T01:00:00Z"}]));
        let page = super::acme("T", &show, &status, &[], None, &[]);
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
        assert!(days_left("2029-12-31T00:00:00Z", now)
            .into_string()
            .contains("expired"));
        assert!(days_left("2030-01-05T00:00:00Z", now)
            .into_string()
            .contains("4 days left"));
        assert_eq!(
            days_left("2031-01-01T00:00:00Z", now).into_string(),
            "365 days left"
        );
    }
}
