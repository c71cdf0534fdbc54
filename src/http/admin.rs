//! The HTTPS side: routing, the login gate, and the admin pages.
//!
//! Why: one place decides, from the head of each request, whether it may go
//! on: the login and setup flow, sessions, HTTP Basic for API scripts,
//! CSRF and cross-site checks, and how large a body the route accepts. The
//! pages then call the same `ops::Command`s as the CLI (through
//! `Shared::execute_async`, so every write rebuilds the SNI snapshot).
//!
//! The login flow: while no admin password is set, `/login` accepts only the
//! setup token (`Shared::setup_token`), once: the login that presents it
//! takes it, and gets a session that can do nothing but set the password
//! (valid while no password is set); setting the password replaces that
//! session by a full one. Sessions live in `WebState`. The login form and
//! HTTP Basic on `/api/` share one path, `Admin::attempt_login`, and with it
//! the limiter of `session` (counted before the check; one check per IP at a
//! time; `MAX_CONCURRENT_PASSWORD_CHECKS` in all).
//!
//! What must hold: nothing but `/login` answers without a valid session (or
//! Basic auth on `/api/`); every POST from a page carries the session's CSRF
//! token and every API write by a session the `X-CSRF-Token` header; a
//! request marked cross-site by the browser never writes; failed logins are
//! rate-limited per IP, and a guess is counted before its password hash is
//! checked; the setup token opens at most one session; private keys never
//! appear in a response.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64ct::{Base64, Encoding};

use super::api::{self, ApiRoute};
use super::form::Form;
use super::html::{self, Line};
use super::msg::{ct_eq, Head, Req, Resp};
use super::server::Handler;
use super::{MAX_FORM_BODY_BYTES, MAX_IMPORT_BODY_BYTES, MAX_LOGIN_BODY_BYTES, SESSION_COOKIE};
use crate::acme::AcmeChange;
use crate::auth;
use crate::clock;
use crate::daemon::Shared;
use crate::error::Error;
use crate::ops::{Command, Reply};
use crate::pki::KindRequest;
use crate::session::{Flash, Grant, LoginRefused, SessionView, WebState};

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /`
    Home,
    /// `GET /login`
    Login,
    /// `POST /login`
    LoginPost,
    /// `POST /logout`
    Logout,
    /// `GET /password`
    Password,
    /// `POST /password`
    PasswordPost,
    /// `GET /certs[?sort=expiry]` (true: soonest expiry first)
    Certs(bool),
    /// `GET /certs/{id}.pem`
    CertPem(String),
    /// `POST /certs/delete`
    CertDelete,
    /// `GET /certs/delete?id=ID`: the confirmation (what each name gets
    /// instead).
    CertDeleteConfirm(String),
    /// `POST /certs/reissue`
    CertReissue,
    /// `POST /certs/check`
    CertCheck,
    /// `GET /stir`
    Stir,
    /// `POST /stir/sign`: sign a test call
    StirSign,
    /// `GET /roots[?q=FILTER]`
    Roots(Option<String>),
    /// `GET /roots/{id}.pem`
    RootPem(String),
    /// `POST /roots/delete`: the confirmation of the ticked roots, or with
    /// `confirm=yes` the delete.
    RootsDelete,
    /// `GET /roots/reset` (the confirmation step)
    RootsResetConfirm,
    /// `POST /roots/reset`
    RootsReset,
    /// `GET /import`
    Import,
    /// `POST /import`
    ImportPost,
    /// `GET /ca.pem` (the local CA's root)
    CaPem,
    /// `GET /csr`
    Csr,
    /// `POST /csr` (answers with the CSR as a download)
    CsrPost,
    /// `GET /csr/delete?key=ID`: confirm deleting a pending CSR key
    CsrDeleteConfirm(String),
    /// `POST /csr/delete` (`csr-keys delete ID`)
    CsrDelete,
    /// `GET /tenants`
    Tenants,
    /// `POST /tenants/add`
    TenantAdd,
    /// `POST /tenants/remove`
    TenantRemove,
    /// `GET /tenants/edit?name=NAME`: the edit form
    TenantEditForm(String),
    /// `POST /tenants/edit` (`tenant edit`)
    TenantEdit,
    /// `GET /tenants/remove?name=NAME`: the confirmation (its names,
    /// certificates, and what each name gets instead).
    TenantRemoveConfirm(String),
    /// `POST /system`
    SystemPost,
    /// `GET /acme`
    Acme,
    /// `POST /acme` (`acme set`)
    AcmePost,
    /// `POST /acme/dns/add` (`dns add`)
    DnsAdd,
    /// `POST /acme/retry` (`acme retry KEY`)
    AcmeRetry,
    /// `POST /acme/dns/propagation` (`dns set`)
    DnsPropagation,
    /// `GET /alerts`: alert settings
    Alerts,
    /// `POST /alerts` (`alert set`)
    AlertsPost,
    /// `POST /alerts/test` (`alert test`)
    AlertsTest,
    /// `GET /ca`: the local CA page
    LocalCa,
    /// `POST /ca/init` (`ca init`)
    CaInit,
    /// `POST /ca/issue` (`ca issue --tenant NAME [--client]`)
    CaIssue,
    /// `GET /acme/dns/remove?name=NAME`: the confirmation naming the
    /// provider and the names whose DNS-01 orders depend on it.
    DnsRemoveConfirm(String),
    /// `POST /acme/dns/remove` (`dns remove`, after the confirmation)
    DnsRemove,
    /// `/api/...`
    Api(ApiRoute),
    /// `GET /sti/{id}.pem`: a STIR/SHAKEN chain for x5u, without login.
    StiPem(String),
    /// No such page.
    NotFound,
    /// The page exists, not with this method.
    MethodNotAllowed,
}

pub use crate::ops::{bad_id_message, valid_id};

/// Map method and path to a route (`HEAD` is routed as `GET`).
pub fn route(method: &str, path: &str, query: Option<&str>) -> Route {
    let get = method == "GET" || method == "HEAD";
    let post = method == "POST";
    if path == "/api" || path.starts_with("/api/") {
        return Route::Api(api::route(method, &path[4..], query));
    }
    let page = |r: Route, ok: bool| if ok { r } else { Route::MethodNotAllowed };
    let pem = |rest: &str, make: fn(String) -> Route| match rest
        .strip_suffix(".pem")
        .and_then(valid_id)
    {
        Some(id) => page(make(id), get),
        None => Route::NotFound,
    };
    match path {
        "/" => page(Route::Home, get),
        "/login" => match method {
            "POST" => Route::LoginPost,
            _ => page(Route::Login, get),
        },
        "/logout" => page(Route::Logout, post),
        "/password" => match method {
            "POST" => Route::PasswordPost,
            _ => page(Route::Password, get),
        },
        "/certs" => {
            let by_expiry = Form::parse(query.unwrap_or("").as_bytes())
                .ok()
                .is_some_and(|f| f.get("sort") == Some("expiry"));
            page(Route::Certs(by_expiry), get)
        }
        "/certs/delete" => match method {
            "POST" => Route::CertDelete,
            _ => {
                let id = Form::parse(query.unwrap_or("").as_bytes())
                    .ok()
                    .and_then(|q| q.get("id").and_then(valid_id));
                match id {
                    Some(id) => page(Route::CertDeleteConfirm(id), get),
                    None => Route::NotFound,
                }
            }
        },
        "/certs/reissue" => page(Route::CertReissue, post),
        "/certs/check" => page(Route::CertCheck, post),
        "/roots" => {
            let q = Form::parse(query.unwrap_or("").as_bytes())
                .ok()
                .and_then(|f| f.get("q").map(|q| q.trim().to_owned()))
                .filter(|q| !q.is_empty());
            page(Route::Roots(q), get)
        }
        "/roots/delete" => page(Route::RootsDelete, post),
        "/roots/reset" => match method {
            "POST" => Route::RootsReset,
            _ => page(Route::RootsResetConfirm, get),
        },
        "/import" => match method {
            "POST" => Route::ImportPost,
            _ => page(Route::Import, get),
        },
        "/ca.pem" => page(Route::CaPem, get),
        "/csr" => match method {
            "POST" => Route::CsrPost,
            _ => page(Route::Csr, get),
        },
        "/csr/delete" => match method {
            "POST" => Route::CsrDelete,
            _ => match Form::parse(query.unwrap_or("").as_bytes())
                .ok()
                .and_then(|f| f.get("key").and_then(valid_id))
            {
                Some(key) => page(Route::CsrDeleteConfirm(key), get),
                None => Route::NotFound,
            },
        },
        "/tenants" => page(Route::Tenants, get),
        "/tenants/add" => page(Route::TenantAdd, post),
        "/tenants/edit" => match method {
            "POST" => Route::TenantEdit,
            _ => {
                let name = Form::parse(query.unwrap_or("").as_bytes())
                    .ok()
                    .and_then(|q| q.get("name").map(|n| n.trim().to_owned()))
                    .filter(|n| !n.is_empty());
                match name {
                    Some(name) => page(Route::TenantEditForm(name), get),
                    None => Route::NotFound,
                }
            }
        },
        "/tenants/remove" => match method {
            "POST" => Route::TenantRemove,
            _ => {
                let name = Form::parse(query.unwrap_or("").as_bytes())
                    .ok()
                    .and_then(|q| q.get("name").map(|n| n.trim().to_owned()))
                    .filter(|n| !n.is_empty());
                match name {
                    Some(name) => page(Route::TenantRemoveConfirm(name), get),
                    None => Route::NotFound,
                }
            }
        },
        "/system" => page(Route::SystemPost, post),
        "/acme" => match method {
            "POST" => Route::AcmePost,
            _ => page(Route::Acme, get),
        },
        "/acme/dns/add" => page(Route::DnsAdd, post),
        "/acme/retry" => page(Route::AcmeRetry, post),
        "/acme/dns/propagation" => page(Route::DnsPropagation, post),
        "/ca" => page(Route::LocalCa, get),
        "/alerts" => match method {
            "POST" => Route::AlertsPost,
            _ => page(Route::Alerts, get),
        },
        "/alerts/test" => page(Route::AlertsTest, post),
        "/ca/init" => page(Route::CaInit, post),
        "/ca/issue" => page(Route::CaIssue, post),
        "/stir" => page(Route::Stir, get),
        "/stir/sign" => page(Route::StirSign, post),
        "/acme/dns/remove" => match method {
            "POST" => Route::DnsRemove,
            _ => {
                let name = Form::parse(query.unwrap_or("").as_bytes())
                    .ok()
                    .and_then(|q| q.get("name").map(|n| n.trim().to_owned()))
                    .filter(|n| !n.is_empty());
                match name {
                    Some(name) => page(Route::DnsRemoveConfirm(name), get),
                    None => Route::NotFound,
                }
            }
        },
        _ => {
            if let Some(rest) = path.strip_prefix("/certs/") {
                pem(rest, Route::CertPem)
            } else if let Some(rest) = path.strip_prefix("/roots/") {
                pem(rest, Route::RootPem)
            } else if let Some(rest) = path.strip_prefix(crate::stir::PUBLISH_PATH) {
                // Full IDs only: the URL is published, never typed.
                match rest.strip_suffix(".pem").and_then(valid_id) {
                    Some(id) if id.len() == crate::limits::ID_LEN => page(Route::StiPem(id), get),
                    _ => Route::NotFound,
                }
            } else {
                Route::NotFound
            }
        }
    }
}

/// The `acme set` change of the ACME page's form. Every field is sent; the
/// EAB HMAC only when typed (empty keeps the stored one, which is never
/// shown), an empty EAB key ID removes the binding. `stored_kid` is the key
/// ID stored now.
pub fn acme_change(form: &Form, stored_kid: Option<&str>) -> Result<AcmeChange, Error> {
    let bad = |m: &str| Error::BadSetting(m.to_owned());
    let directory = match form.get("preset").unwrap_or("custom") {
        "production" => crate::limits::ACME_DEFAULT_DIRECTORY.to_owned(),
        "staging" => crate::limits::ACME_STAGING_DIRECTORY.to_owned(),
        _ => form.get("directory").unwrap_or("").trim().to_owned(),
    };
    if directory.is_empty() {
        return Err(bad(
            "directory: choose a preset or give the CA's directory URL",
        ));
    }
    let email = match form.get("email").unwrap_or("").trim() {
        "" => "none".to_owned(),
        e => e.to_owned(),
    };
    let check_interval = match form.get("check_interval").unwrap_or("").trim() {
        "" => None,
        n => Some(
            crate::clock::parse_duration(n)
                .ok_or_else(|| bad("check interval: a time such as 6h, 30m, 1h30m or 45s"))?,
        ),
    };
    let kid = form.get("eab_kid").unwrap_or("").trim();
    let hmac = form.get("eab_hmac").unwrap_or("").trim();
    let (eab_kid, eab_hmac) = match (kid.is_empty(), hmac.is_empty()) {
        (false, false) => (Some(kid.to_owned()), Some(hmac.to_owned())),
        (true, false) => return Err(bad("EAB: the HMAC key needs its key ID")),
        (true, true) if stored_kid.is_some() => (Some("none".to_owned()), Some(String::new())),
        (true, true) => (None, None),
        (false, true) if stored_kid == Some(kid) => (None, None),
        (false, true) => return Err(bad("EAB: a new key ID needs its HMAC key")),
    };
    Ok(AcmeChange {
        directory: Some(directory),
        email: Some(email),
        enabled: Some(form.get("enabled") == Some("true")),
        challenge: Some(form.get("challenge").unwrap_or("auto").to_owned()),
        eab_kid,
        eab_hmac,
        check_interval,
        ..AcmeChange::default()
    })
}

/// The `alert set` change of the alert settings form. Every field is sent:
/// an empty one clears its setting (`none`), except the two secrets, which
/// an empty field keeps (they are never shown back) unless what they belong
/// to is cleared (no SMTP user: no password; no webhook: no secret).
pub fn alert_change(form: &Form) -> Result<crate::alert::AlertChange, Error> {
    let field = |k: &str| form.get(k).map(str::trim).unwrap_or("");
    let or_none = |k: &str| match field(k) {
        "" => "none".to_owned(),
        v => v.to_owned(),
    };
    let secret = |k: &str, owner: &str| match (field(k), field(owner)) {
        (_, "") => Some("none".to_owned()),
        ("", _) => None,
        (v, _) => Some(v.to_owned()),
    };
    let failures = match field("failures") {
        "" => None,
        n => Some(
            n.parse::<u32>()
                .map_err(|_| Error::BadSetting("failures: a number from 1 to 100".into()))?,
        ),
    };
    Ok(crate::alert::AlertChange {
        smtp_server: Some(or_none("smtp_server")),
        smtp_tls: Some(match field("smtp_tls") {
            "" => "starttls".to_owned(),
            v => v.to_owned(),
        }),
        smtp_user: Some(or_none("smtp_user")),
        smtp_password: secret("smtp_password", "smtp_user"),
        from: Some(or_none("from")),
        webhook: Some(or_none("webhook")),
        webhook_secret: secret("webhook_secret", "webhook"),
        failures,
    })
}

/// The `dns add` command of one of the ACME page's provider forms: the
/// same `dns::ProviderSpec` (and so the same defaults and refusals) as
/// `dns add` on the CLI and `POST /api/dns`.
pub fn dns_add_command(form: &Form) -> Result<Command, Error> {
    let field = |k: &str| form.get(k).map(str::to_owned);
    let spec = crate::dns::ProviderSpec {
        name: form.get("name").unwrap_or("").trim().to_owned(),
        provider: form.get("provider").unwrap_or("").to_owned(),
        zone: form.get("zone").unwrap_or("").trim().to_owned(),
        server: field("server"),
        tsig_name: field("tsig_name"),
        tsig_algorithm: field("tsig_algorithm"),
        tsig_secret: field("tsig_secret"),
        token: field("token"),
        api_base: field("api_base"),
    };
    let config = spec.config()?;
    Ok(Command::DnsAdd {
        name: spec.name,
        zone: spec.zone,
        config,
    })
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// Nobody.
    None,
    /// A browser session.
    Session(SessionView),
    /// HTTP Basic with the admin password (API only).
    Basic,
}

/// What `begin` found out.
#[derive(Debug)]
pub struct Ctx {
    route: Route,
    auth: Auth,
}

/// True when the browser says the request comes from another site.
pub fn cross_site(head: &Head) -> bool {
    if let Some(site) = head.header("sec-fetch-site") {
        if !matches!(site, "same-origin" | "none") {
            return true;
        }
    }
    match (head.header("origin"), head.header("host")) {
        (None | Some("null"), _) => false,
        (Some(origin), Some(host)) => !origin.eq_ignore_ascii_case(&format!("https://{host}")),
        (Some(_), None) => true,
    }
}

/// The password of an `Authorization: Basic` header (any user name).
pub fn basic_password(head: &Head) -> Option<String> {
    let value = head.header("authorization")?;
    let (scheme, b64) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = Base64::decode_vec(b64.trim()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (_, password) = text.split_once(':')?;
    Some(password.to_owned())
}

/// The session cookie.
pub fn set_cookie(id: &str) -> String {
    format!("{SESSION_COOKIE}={id}; HttpOnly; Secure; SameSite=Strict; Path=/")
}

fn clear_cookie() -> String {
    format!("{SESSION_COOKIE}=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0")
}

/// The HTTPS handler of one connection.
pub struct Admin {
    /// The daemon's state.
    pub shared: Arc<Shared>,
    /// Sessions and limiter.
    pub web: Arc<WebState>,
    /// The client, for the login limiter and the log.
    pub ip: IpAddr,
}

fn is_api(route: &Route) -> bool {
    matches!(route, Route::Api(_))
}

fn forbidden(api: bool, code: &str, message: &str) -> Resp {
    if api {
        Resp::json_error(403, code, message)
    } else {
        Resp::html(
            403,
            html::message("Forbidden", None, &[("err", code.into(), message.into())]),
        )
    }
}

/// Why a login attempt did not log in.
#[derive(Debug)]
enum LoginError {
    /// Refused before any check (429 `rate-limited` or 503 `busy`).
    Refused(LoginRefused),
    /// Checked, and wrong (401 `unauthenticated`); the lockout it caused.
    Wrong(Option<Duration>),
    /// The store failed (its own code and status).
    Store(Error),
}

/// `, locked out for N s` for the log line of a failed login.
fn lockout_note(lockout: Option<Duration>) -> String {
    lockout
        .map(|d| format!(", locked out for {} s", d.as_secs()))
        .unwrap_or_default()
}

/// Run a command and take its reply as the variant its command always gives
/// (another is `Reply::unexpected`, an `internal` error, never a panic).
macro_rules! run_as {
    ($admin:expr, $command:expr, $variant:path) => {
        match $admin.run($command).await {
            Ok($variant(v)) => Ok(v),
            Ok(other) => Err(other.unexpected()),
            Err(e) => Err(e),
        }
    };
}

impl Admin {
    /// A handler for a connection from `ip`.
    pub fn new(shared: Arc<Shared>, web: Arc<WebState>, ip: IpAddr) -> Admin {
        Admin { shared, web, ip }
    }

    async fn run(&self, command: Command) -> Result<Reply, Error> {
        self.shared.execute_async(command).await
    }

    async fn password_is_set(&self) -> Result<bool, Error> {
        let shared = self.shared.clone();
        smol::unblock(move || auth::password_is_set(shared.store())).await
    }

    fn setup_token(&self) -> Option<String> {
        self.shared
            .setup_token
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// True while a setup session may still act: no password is set (the
    /// token itself is gone once its one login took it).
    async fn setup_session_valid(&self) -> bool {
        matches!(self.password_is_set().await, Ok(false))
    }

    /// Take the setup token if `given` is it (constant-time compare under
    /// the token's lock, so two logins cannot both take it).
    fn take_setup_token(&self, given: &str) -> bool {
        let mut token = self
            .shared
            .setup_token
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let matches = token
            .as_deref()
            .is_some_and(|t| !given.is_empty() && ct_eq(t.as_bytes(), given.as_bytes()));
        if matches {
            *token = None;
        }
        matches
    }

    /// One login attempt, for the login form and HTTP Basic alike: reserve
    /// it in the limiter (counted as a failure until it succeeds), then
    /// check `given` against the admin password (PBKDF2 on a blocking thread
    /// that holds the reservation until the hash is done) or, with `setup`
    /// and while no password is set, take the single-use setup token.
    async fn attempt_login(&self, given: String, setup: bool) -> Result<Grant, LoginError> {
        let set = self.password_is_set().await.map_err(LoginError::Store)?;
        let attempt = self
            .web
            .begin_login(self.ip, Instant::now())
            .map_err(|refused| {
                log::debug!(
                    "web admin: login from {} refused unchecked: {:?}",
                    self.ip,
                    refused
                );
                LoginError::Refused(refused)
            })?;
        if !set && setup {
            return if self.take_setup_token(&given) {
                attempt.succeeded();
                log::info!(
                    "web admin: setup token used from {}; it is void now",
                    self.ip
                );
                Ok(Grant::Setup)
            } else {
                Err(LoginError::Wrong(attempt.failed(Instant::now())))
            };
        }
        let shared = self.shared.clone();
        smol::unblock(move || match auth::check_password(shared.store(), &given) {
            Ok(true) => {
                attempt.succeeded();
                Ok(Grant::Admin)
            }
            Ok(false) => Err(LoginError::Wrong(attempt.failed(Instant::now()))),
            // `attempt` drops: counted, as a failure.
            Err(e) => Err(LoginError::Store(e)),
        })
        .await
    }

    async fn check_basic(&self, password: String) -> Result<Auth, Resp> {
        match self.attempt_login(password, false).await {
            Ok(_) => Ok(Auth::Basic),
            Err(LoginError::Refused(r)) => {
                Err(Resp::json_error(r.status(), r.code(), &r.message())
                    .with("Retry-After", r.retry_after_secs().to_string()))
            }
            Err(LoginError::Wrong(lockout)) => {
                log::warn!(
                    "web admin: failed API login from {}{}",
                    self.ip,
                    lockout_note(lockout)
                );
                Err(Resp::json_error(
                    401,
                    "unauthenticated",
                    "wrong password (HTTP Basic, any user name, the admin password)",
                ))
            }
            Err(LoginError::Store(e)) => Err(api::error_resp(&e)),
        }
    }

    fn flash_lines(&self, session: &SessionView) -> Vec<Line> {
        self.web
            .take_flash(&session.id)
            .map(|f| f.lines)
            .unwrap_or_default()
    }

    fn back(&self, session: &SessionView, to: &str, flash: Flash) -> Resp {
        self.web.set_flash(&session.id, flash);
        Resp::redirect(303, to)
    }

    fn outcome(&self, session: &SessionView, to: &str, r: Result<Reply, Error>, ok: &str) -> Resp {
        let flash = match r {
            Ok(_) => Flash::one("ok", "", ok),
            Err(e) => Flash::one("err", e.code_str(), e.to_string()),
        };
        self.back(session, to, flash)
    }

    /// The form of a POST, after checking its CSRF field.
    fn form(&self, req: &Req, session: &SessionView) -> Result<Form, Resp> {
        let form = Form::parse(&req.body).map_err(|e| {
            Resp::html(
                400,
                html::message(
                    "Bad request",
                    Some(&session.csrf),
                    &[("err", "bad-request".into(), e.to_string())],
                ),
            )
        })?;
        match form.get("csrf") {
            Some(token) if ct_eq(token.as_bytes(), session.csrf.as_bytes()) => Ok(form),
            _ => Err(forbidden(
                false,
                "csrf",
                "the form's security token is missing or out of date; reload the page and try again",
            )),
        }
    }

    fn error_page(
        &self,
        status: u16,
        title: &str,
        session: Option<&SessionView>,
        e: &Error,
    ) -> Resp {
        Resp::html(
            status,
            html::message(
                title,
                session.map(|s| s.csrf.as_str()),
                &[("err", e.code_str().into(), e.to_string())],
            ),
        )
    }

    async fn login_page(&self, status: u16, message: &[Line]) -> Resp {
        let set = match self.password_is_set().await {
            Ok(set) => set,
            Err(e) => return self.error_page(500, "Error", None, &e),
        };
        Resp::html(
            status,
            html::login(set, self.setup_token().is_some(), message),
        )
    }

    async fn login_post(&self, req: &Req, old: Option<&SessionView>) -> Resp {
        let form = match Form::parse(&req.body) {
            Ok(f) => f,
            Err(e) => {
                return self
                    .login_page(400, &[("err", "bad-request".into(), e.to_string())])
                    .await
            }
        };
        let given = form.get("password").unwrap_or("").to_owned();
        let grant = match self.attempt_login(given, true).await {
            Ok(grant) => grant,
            Err(LoginError::Refused(r)) => {
                return self
                    .login_page(r.status(), &[("err", r.code().into(), r.message())])
                    .await
                    .with("Retry-After", r.retry_after_secs().to_string())
            }
            Err(LoginError::Store(e)) => return self.error_page(500, "Error", None, &e),
            Err(LoginError::Wrong(lockout)) => {
                log::warn!(
                    "web admin: failed login from {}{}",
                    self.ip,
                    lockout_note(lockout)
                );
                let what = match self.password_is_set().await {
                    Ok(true) => "wrong password",
                    _ if self.setup_token().is_some() => "wrong setup token",
                    _ => {
                        "no setup token is open: it works for one login only; restart \
                         `pbx-certd serve` for a new one, or run `pbx-certd admin password` \
                         on the appliance"
                    }
                };
                return self
                    .login_page(401, &[("err", "unauthenticated".into(), what.into())])
                    .await;
            }
        };
        let now = Instant::now();
        if let Some(old) = old {
            self.web.remove(&old.id);
        }
        let session = match self.web.create(grant, now) {
            Ok(s) => s,
            Err(e) => return self.error_page(500, "Error", None, &e),
        };
        log::info!("web admin: login from {} ({:?})", self.ip, grant);
        let to = if grant == Grant::Setup {
            "/password"
        } else {
            "/certs"
        };
        Resp::redirect(303, to).with("Set-Cookie", set_cookie(&session.id))
    }

    async fn password_post(&self, req: &Req, session: &SessionView) -> Resp {
        let form = match self.form(req, session) {
            Ok(f) => f,
            Err(r) => return r,
        };
        let setup = session.grant == Grant::Setup;
        let password = form.get("password").unwrap_or("").to_owned();
        if form.get("confirm") != Some(password.as_str()) {
            return Resp::html(
                400,
                html::password(
                    &session.csrf,
                    setup,
                    &[(
                        "err",
                        "bad-password".into(),
                        "the two passwords differ".into(),
                    )],
                ),
            );
        }
        if let Err(e) = self.run(Command::AdminPassword { password }).await {
            return Resp::html(
                400,
                html::password(
                    &session.csrf,
                    setup,
                    &[("err", e.code_str().into(), e.to_string())],
                ),
            );
        }
        *self
            .shared
            .setup_token
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
        log::info!("web admin: admin password set from {}", self.ip);
        // A new session ID for the new privilege; every other session ends.
        self.web.remove(&session.id);
        self.web.remove_others("");
        let fresh = match self.web.create(Grant::Admin, Instant::now()) {
            Ok(s) => s,
            Err(e) => return self.error_page(500, "Error", None, &e),
        };
        self.web
            .set_flash(&fresh.id, Flash::one("ok", "", "the admin password is set"));
        Resp::redirect(303, "/certs").with("Set-Cookie", set_cookie(&fresh.id))
    }

    async fn import_post(&self, req: &Req, session: &SessionView) -> Resp {
        let form = match self.form(req, session) {
            Ok(f) => f,
            Err(r) => return r,
        };
        let cert = form.get("cert").unwrap_or("").to_owned();
        let kind_name = form.get("kind").unwrap_or("auto");
        let kind = match kind_name.parse::<KindRequest>() {
            Ok(kind) => kind,
            Err(e) => {
                return Resp::html(
                    400,
                    html::import(
                        &session.csrf,
                        &cert,
                        "auto",
                        &[("err", "bad-request".into(), e.to_string())],
                    ),
                )
            }
        };
        let key = form
            .get("key")
            .filter(|k| !k.trim().is_empty())
            .map(|k| k.as_bytes().to_vec());
        let had_key = key.is_some();
        let command = Command::Import {
            cert: cert.as_bytes().to_vec(),
            key,
            kind,
            replace: form.get("replace") == Some("true"),
        };
        match run_as!(self, command, Reply::Imported) {
            Ok(v) => {
                let mut lines: Vec<Line> = vec![(
                    "ok",
                    String::new(),
                    format!(
                        "imported {} certificate {} (expires {}){}",
                        v.kind,
                        cert_label(&v.names, &v.id),
                        v.not_after,
                        v.tenant
                            .as_deref()
                            .map(|t| format!(" for tenant {t}"))
                            .unwrap_or_default()
                    ),
                )];
                for w in v.warnings {
                    lines.push(("warn", w.code, w.message));
                }
                let to = match v.kind.as_str() {
                    "root" => "/roots",
                    "ca" => "/tenants",
                    _ => "/certs",
                };
                self.back(session, to, Flash { lines })
            }
            Err(e) => {
                let mut lines: Vec<Line> = vec![("err", e.code_str().into(), e.to_string())];
                if had_key {
                    lines.push((
                        "warn",
                        String::new(),
                        "the private key is not shown again; paste it once more".into(),
                    ));
                }
                Resp::html(
                    api::status_of(&e),
                    html::import(&session.csrf, &cert, kind_name, &lines),
                )
            }
        }
    }

    async fn csr_post(&self, req: &Req, session: &SessionView) -> Resp {
        let form = match self.form(req, session) {
            Ok(f) => f,
            Err(r) => return r,
        };
        let raw = form.get("names").unwrap_or("").to_owned();
        let names: Vec<String> = raw
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .collect();
        // The one `FromStr` of key types: an unknown word is refused as on
        // the CLI and the API (never issued as P-256).
        let field = |k: &str| form.get(k).map(str::to_owned);
        let subject = crate::localca::CsrSubject {
            organization: field("org"),
            organizational_unit: field("org_unit"),
            locality: field("locality"),
            state: field("state"),
            country: field("country"),
        };
        let r = match crate::ops::parse_word(form.get("key_type").unwrap_or("p256")) {
            Ok(key_type) => run_as!(
                self,
                Command::Csr {
                    names,
                    key_type,
                    subject: subject.clone(),
                },
                Reply::Csr
            ),
            Err(e) => Err(e),
        };
        match r {
            Ok(v) => {
                let first = v.names.first().map_or("request", String::as_str);
                let file: String = first
                    .chars()
                    .map(|c| if c == '*' { '_' } else { c })
                    .collect();
                Resp::new(200, "application/pkcs10", v.csr).with(
                    "Content-Disposition",
                    format!("attachment; filename=\"{file}.csr\""),
                )
            }
            Err(e) => {
                let pending =
                    run_as!(self, Command::CsrKeys, Reply::PendingCsrs).unwrap_or_default();
                Resp::html(
                    api::status_of(&e),
                    html::csr(
                        &session.csrf,
                        &raw,
                        &subject,
                        &pending,
                        &[("err", e.code_str().into(), e.to_string())],
                    ),
                )
            }
        }
    }

    /// `GET /csr/delete?key=ID`: the confirmation page naming the pending
    /// CSR key (its names, created, key type).
    async fn csr_delete_confirm(&self, key: &str, session: &SessionView) -> Resp {
        let pending = run_as!(self, Command::CsrKeys, Reply::PendingCsrs).unwrap_or_default();
        match pending.iter().find(|p| p.key_id.starts_with(key)) {
            Some(p) => Resp::html(200, html::csr_delete_confirm(&session.csrf, p)),
            None => self.back(
                session,
                "/csr",
                Flash::one("err", "not-found", "no pending CSR key with that ID"),
            ),
        }
    }

    /// `POST /csr/delete`: `csr-keys delete ID`.
    async fn csr_delete(&self, req: &Req, session: &SessionView) -> Resp {
        let form = match self.form(req, session) {
            Ok(f) => f,
            Err(r) => return r,
        };
        let Some(key_id) = form.get("key").and_then(valid_id) else {
            return self.back(
                session,
                "/csr",
                Flash::one("err", "bad-request", bad_id_message()),
            );
        };
        let flash = match self.run(Command::CsrKeyDelete { key_id }).await {
            Ok(Reply::PendingCsrDeleted(p)) => Flash::one(
                "ok",
                "",
                format!("CSR key for {} deleted", p.names.join(", ")),
            ),
            Ok(_) => Flash::one("ok", "", "CSR key deleted"),
            Err(e) => Flash::one("err", e.code_str(), e.to_string()),
        };
        self.back(session, "/csr", flash)
    }

    /// An admin's HTML page gets the alerts banner (`alerts`, the one
    /// evaluation the alert loop sends from); anything else passes as is.
    async fn alerts_banner(&self, resp: Resp, session: &SessionView) -> Resp {
        if session.grant != Grant::Admin || !resp.content_type.starts_with("text/html") {
            return resp;
        }
        let Ok(alerts) = run_as!(self, Command::Alerts, Reply::Alerts) else {
            return resp;
        };
        if alerts.is_empty() {
            return resp;
        }
        match String::from_utf8(resp.body) {
            Ok(page) => Resp {
                body: html::with_alerts(page, &alerts).into_bytes(),
                ..resp
            },
            Err(e) => Resp {
                body: e.into_bytes(),
                ..resp
            },
        }
    }

    /// The Retry button of a failed name set (ACME and Certificates pages):
    /// `acme retry KEY`; back to the page it came from.
    async fn acme_retry(&self, req: &Req, session: &SessionView) -> Resp {
        let form = match self.form(req, session) {
            Ok(f) => f,
            Err(r) => return r,
        };
        let to = match form.get("from") {
            Some("certs") => "/certs",
            _ => "/acme",
        };
        let key = form.get("key").unwrap_or("").to_owned();
        let r = self.run(Command::AcmeRetry { key: key.clone() }).await;
        let flash = match r {
            Ok(Reply::Reissued(v)) => Flash::one(
                "ok",
                "",
                format!("order for {} queued; it runs now", v.names.join(", ")),
            ),
            Ok(_) => Flash::one("ok", "", format!("order for {key} queued; it runs now")),
            Err(e) => Flash::one("err", e.code_str(), e.to_string()),
        };
        self.back(session, to, flash)
    }

    async fn acme_post(&self, req: &Req, session: &SessionView) -> Resp {
        let form = match self.form(req, session) {
            Ok(f) => f,
            Err(r) => return r,
        };
        let current = match run_as!(self, Command::AcmeShow, Reply::Acme) {
            Ok(v) => v,
            Err(e) => return self.error_page(500, "Error", Some(session), &e),
        };
        let r = match acme_change(&form, current.eab_kid.as_deref()) {
            Ok(change) => self.run(Command::AcmeSet(change)).await,
            Err(e) => Err(e),
        };
        self.outcome(session, "/acme", r, "ACME settings saved")
    }

    /// The STIR/SHAKEN page (`html::stir`), with a signed test call or an
    /// error when there is one.
    /// The Tenants & system page; `add` is what the add form shows,
    /// `system` (DNS name, admin e-mail, default certificate) replaces the
    /// stored values in the system form (both after an error).
    async fn tenants_page(
        &self,
        session: &SessionView,
        status: u16,
        add: &html::TenantTyped,
        system: Option<(Option<String>, Option<String>, Option<String>)>,
        lines: &[Line],
    ) -> Resp {
        let tenants = run_as!(self, Command::TenantList, Reply::Tenants);
        let shown = run_as!(self, Command::SystemShow, Reply::System);
        let certs = run_as!(self, Command::Certs, Reply::Certs);
        let dns = run_as!(self, Command::DnsList, Reply::DnsList).unwrap_or_default();
        let ca = run_as!(self, Command::CaShow, Reply::Ca).ok();
        let extra = html::dns_and_ca(&dns, ca.as_ref());
        match (tenants, shown, certs) {
            (Ok(t), Ok(mut s), Ok(c)) => {
                if let Some((dns, admin_email, default_cert)) = system {
                    s.dns = dns;
                    s.admin_email = admin_email;
                    s.default_cert = default_cert.filter(|d| d != "none");
                }
                Resp::html(
                    status,
                    html::tenants(&session.csrf, &t, &s, &c, &extra, add, lines),
                )
            }
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                self.error_page(500, "Error", Some(session), &e)
            }
        }
    }

    async fn stir_page(
        &self,
        session: &SessionView,
        signed: Option<&crate::stir::Signed>,
        flash: &[Line],
    ) -> Resp {
        let served = run_as!(self, Command::Served, Reply::Served);
        let sti = run_as!(self, Command::StiRoots, Reply::Roots);
        match (served, sti) {
            (Ok(v), Ok(roots)) => Resp::html(
                if flash.is_empty() { 200 } else { 400 },
                html::stir(
                    &session.csrf,
                    &v.stir_shaken,
                    &roots,
                    signed,
                    flash,
                    clock::now(),
                ),
            ),
            (Err(e), _) | (_, Err(e)) => self.error_page(500, "Error", Some(session), &e),
        }
    }

    /// `GET /ca.pem`, without login: the local CA's root certificate (only
    /// the certificate; a phone provisioning server or a phone fetches it to
    /// trust the PBX). 404 until `ca init`.
    async fn ca_pem(&self) -> Resp {
        match run_as!(self, Command::CaShow, Reply::Ca) {
            Ok(v) => Resp::new(200, "application/x-pem-file", v.pem)
                .with(
                    "Content-Disposition",
                    "attachment; filename=\"local-ca-root.pem\"".to_owned(),
                )
                .with("Cache-Control", "no-cache".to_owned()),
            Err(e) => Resp::html(
                404,
                html::message(
                    "Not found",
                    None,
                    &[(
                        "err",
                        e.code_str().into(),
                        "this PBX has no local CA (an administrator creates it with `pbx-certd ca init`)"
                            .into(),
                    )],
                ),
            ),
        }
    }

    /// How messages name the certificate with this ID (prefix): its names
    /// and expiry (`cert_label`), or the ID given when it is not found.
    async fn cert_named(&self, id: &str) -> String {
        let certs = run_as!(self, Command::Certs, Reply::Certs).unwrap_or_default();
        certs.iter().find(|c| c.id.starts_with(id)).map_or_else(
            || id.to_owned(),
            |c| format!("{} (expires {})", cert_label(&c.names, &c.id), c.not_after),
        )
    }

    /// A PEM download named `stem.pem` (`file_stem` made it safe).
    async fn pem(&self, command: Command, stem: &str, session: &SessionView) -> Resp {
        let pem = match self.run(command).await {
            Ok(Reply::Pem(v)) => Ok(v.pem),
            Ok(Reply::Ca(v)) => Ok(v.pem),
            Ok(other) => Err(other.unexpected()),
            Err(e) => Err(e),
        };
        match pem {
            Ok(pem) => Resp::new(200, "application/x-pem-file", pem).with(
                "Content-Disposition",
                format!("attachment; filename=\"{stem}.pem\""),
            ),
            Err(e) => self.error_page(api::status_of(&e), "Not found", Some(session), &e),
        }
    }

    /// `GET /sti/{id}.pem`: the chain of a STIR/SHAKEN certificate (and of
    /// nothing else), for verifiers fetching our x5u (ATIS-1000074 §5.3.1).
    async fn sti_pem(&self, id: String) -> Resp {
        let shared = self.shared.clone();
        match smol::unblock(move || crate::stir::published_chain(shared.store(), &id)).await {
            Ok(Some(pem)) => Resp::new(200, crate::stir::PEM_CHAIN_TYPE, pem).with(
                "Cache-Control",
                format!(
                    "public, max-age={}",
                    crate::limits::STI_PUBLISH_MAX_AGE_SECS
                ),
            ),
            Ok(None) => Resp::text(404, "not found\n"),
            Err(e) => Resp::text(500, format!("{}\n", e.code_str())),
        }
    }

    async fn page(&self, route: Route, req: &Req, session: &SessionView) -> Resp {
        let now = clock::now();
        let csrf = session.csrf.as_str();
        match route {
            Route::Home => Resp::redirect(303, "/certs"),
            Route::Logout => {
                if let Err(r) = self.form(req, session) {
                    return r;
                }
                self.web.remove(&session.id);
                Resp::redirect(303, "/login").with("Set-Cookie", clear_cookie())
            }
            Route::Password => Resp::html(
                200,
                html::password(
                    csrf,
                    session.grant == Grant::Setup,
                    &self.flash_lines(session),
                ),
            ),
            Route::PasswordPost => self.password_post(req, session).await,
            Route::Certs(by_expiry) => match run_as!(self, Command::Certs, Reply::Certs) {
                Ok(mut v) => {
                    if by_expiry {
                        // RFC 3339 UTC (`clock::rfc3339`) sorts as text.
                        v.sort_by(|a, b| a.not_after.cmp(&b.not_after));
                    }
                    let acme_on =
                        run_as!(self, Command::AcmeShow, Reply::Acme).is_ok_and(|a| a.enabled);
                    let status = match acme_on {
                        true => run_as!(self, Command::AcmeStatus, Reply::AcmeStatus).ok(),
                        false => None,
                    };
                    let served = run_as!(self, Command::Served, Reply::Served).ok();
                    let flash = self.flash_lines(session);
                    Resp::html(
                        200,
                        html::certs(
                            csrf,
                            &v,
                            served.as_ref(),
                            &flash,
                            now,
                            status.as_deref(),
                            by_expiry,
                        ),
                    )
                }
                Err(e) => self.error_page(500, "Error", Some(session), &e),
            },
            Route::CertReissue => {
                let form = match self.form(req, session) {
                    Ok(f) => f,
                    Err(r) => return r,
                };
                let Some(id) = form.get("id").and_then(valid_id) else {
                    return self.back(
                        session,
                        "/certs",
                        Flash::one("err", "bad-request", bad_id_message()),
                    );
                };
                let what = self.cert_named(&id).await;
                let r = self.run(Command::CertReissue { id: id.clone() }).await;
                self.outcome(
                    session,
                    "/certs",
                    r,
                    &format!("renewal of certificate {what} requested; it runs now"),
                )
            }
            Route::CertCheck => {
                let form = match self.form(req, session) {
                    Ok(f) => f,
                    Err(r) => return r,
                };
                let Some(id) = form.get("id").and_then(valid_id) else {
                    return self.back(
                        session,
                        "/certs",
                        Flash::one("err", "bad-request", bad_id_message()),
                    );
                };
                let what = self.cert_named(&id).await;
                let flash = match run_as!(self, Command::CertCheck { id }, Reply::Check) {
                    Ok(v) => {
                        let mut lines = vec![match &v.error {
                            None => (
                                "ok",
                                String::new(),
                                format!("certificate {what}: clients accept the chain now"),
                            ),
                            Some(e) => (
                                "err",
                                e.code.clone(),
                                format!(
                                    "certificate {what}: clients refuse the chain now: {}",
                                    e.message
                                ),
                            ),
                        }];
                        lines.extend(v.warnings.into_iter().map(|w| ("warn", w.code, w.message)));
                        Flash { lines }
                    }
                    Err(e) => Flash::one("err", e.code_str(), e.to_string()),
                };
                self.back(session, "/certs", flash)
            }
            Route::CertPem(id) => {
                let certs = run_as!(self, Command::Certs, Reply::Certs).unwrap_or_default();
                let name = certs
                    .iter()
                    .find(|c| c.id.starts_with(id.as_str()))
                    .and_then(|c| c.names.first());
                let stem = file_stem(name.map(String::as_str), &id);
                self.pem(Command::CertShow { id: id.clone() }, &stem, session)
                    .await
            }
            Route::Stir => self.stir_page(session, None, &[]).await,
            Route::StirSign => {
                let form = match self.form(req, session) {
                    Ok(f) => f,
                    Err(r) => return r,
                };
                let field = |k: &str| form.get(k).unwrap_or("").trim().to_owned();
                let request = crate::stir::SignRequest {
                    tenant: field("tenant"),
                    orig: field("orig"),
                    dest: field("dest")
                        .split(',')
                        .map(|d| d.trim().to_owned())
                        .filter(|d| !d.is_empty())
                        .collect(),
                    attest: field("attest"),
                    origid: None,
                    iat: None,
                };
                match run_as!(self, Command::StirShakenSign(request), Reply::Signed) {
                    Ok(signed) => self.stir_page(session, Some(&signed), &[]).await,
                    Err(e) => {
                        let line: Line = ("err", e.code_str().into(), e.to_string());
                        self.stir_page(session, None, &[line]).await
                    }
                }
            }
            Route::CertDeleteConfirm(id) => {
                match run_as!(
                    self,
                    Command::CertDeletePreview { id },
                    Reply::DeletePreview
                ) {
                    Ok(p) => Resp::html(200, html::cert_delete_confirm(csrf, &p, now)),
                    Err(e) => self.error_page(api::status_of(&e), "Not found", Some(session), &e),
                }
            }
            Route::CertDelete => {
                let form = match self.form(req, session) {
                    Ok(f) => f,
                    Err(r) => return r,
                };
                let Some(id) = form.get("id").and_then(valid_id) else {
                    return self.back(
                        session,
                        "/certs",
                        Flash::one("err", "bad-request", bad_id_message()),
                    );
                };
                let what = self.cert_named(&id).await;
                let r = self.run(Command::CertDelete { id: id.clone() }).await;
                self.outcome(session, "/certs", r, &format!("certificate {what} deleted"))
            }
            Route::Roots(filter) => {
                let roots = run_as!(self, Command::Roots, Reply::Roots);
                let system = run_as!(self, Command::SystemShow, Reply::System);
                match (roots, system) {
                    (Ok(roots), Ok(system)) => {
                        let update = system
                            .roots_update_available
                            .then_some(system.bundled_roots_version.as_str());
                        Resp::html(
                            200,
                            html::roots(
                                csrf,
                                &roots,
                                filter.as_deref(),
                                update,
                                &self.flash_lines(session),
                                now,
                            ),
                        )
                    }
                    (Err(e), _) | (_, Err(e)) => self.error_page(500, "Error", Some(session), &e),
                }
            }
            Route::RootPem(id) => {
                let roots = run_as!(self, Command::Roots, Reply::Roots).unwrap_or_default();
                let name = roots
                    .iter()
                    .find(|r| r.id.starts_with(id.as_str()))
                    .map(|r| r.name.as_str());
                let stem = file_stem(name, &id);
                self.pem(Command::RootsShow { id: id.clone() }, &stem, session)
                    .await
            }
            Route::RootsDelete => {
                let form = match self.form(req, session) {
                    Ok(f) => f,
                    Err(r) => return r,
                };
                let raw = form.all("id");
                if raw.is_empty() {
                    return self.back(
                        session,
                        "/roots",
                        Flash::one("err", "bad-request", "tick the roots to delete first"),
                    );
                }
                let Some(ids) = raw.iter().map(|i| valid_id(i)).collect::<Option<Vec<_>>>() else {
                    return self.back(
                        session,
                        "/roots",
                        Flash::one("err", "bad-request", bad_id_message()),
                    );
                };
                if form.get("confirm") != Some("yes") {
                    return match run_as!(self, Command::Roots, Reply::Roots) {
                        Ok(all) => {
                            let picked: Vec<&crate::roots::RootInfo> = all
                                .iter()
                                .filter(|r| ids.iter().any(|i| r.id.starts_with(i.as_str())))
                                .collect();
                            Resp::html(200, html::roots_delete_confirm(csrf, &picked, now))
                        }
                        Err(e) => self.error_page(500, "Error", Some(session), &e),
                    };
                }
                let n = ids.len();
                let all = run_as!(self, Command::Roots, Reply::Roots).unwrap_or_default();
                let names: Vec<&str> = all
                    .iter()
                    .filter(|r| ids.iter().any(|i| r.id.starts_with(i.as_str())))
                    .map(|r| r.name.as_str())
                    .collect();
                let r = self.run(Command::RootsDelete { ids }).await;
                self.outcome(
                    session,
                    "/roots",
                    r,
                    &format!("{n} root(s) deleted: {}", names.join(", ")),
                )
            }
            Route::RootsResetConfirm => match run_as!(self, Command::Roots, Reply::Roots) {
                Ok(v) => Resp::html(
                    200,
                    html::roots_reset_confirm(csrf, v.len(), &crate::roots::bundled_version()),
                ),
                Err(e) => self.error_page(500, "Error", Some(session), &e),
            },
            Route::RootsReset => {
                let form = match self.form(req, session) {
                    Ok(f) => f,
                    Err(r) => return r,
                };
                if form.get("confirm") != Some("yes") {
                    return Resp::redirect(303, "/roots/reset");
                }
                let r = self.run(Command::RootsReset).await;
                self.outcome(
                    session,
                    "/roots",
                    r,
                    "the Root CA list is the bundled list again",
                )
            }
            Route::Import => Resp::html(
                200,
                html::import(csrf, "", "auto", &self.flash_lines(session)),
            ),
            Route::ImportPost => self.import_post(req, session).await,
            Route::Csr => {
                let pending =
                    run_as!(self, Command::CsrKeys, Reply::PendingCsrs).unwrap_or_default();
                Resp::html(
                    200,
                    html::csr(
                        csrf,
                        "",
                        &crate::localca::CsrSubject::default(),
                        &pending,
                        &self.flash_lines(session),
                    ),
                )
            }
            Route::CsrDeleteConfirm(key) => self.csr_delete_confirm(&key, session).await,
            Route::CsrDelete => self.csr_delete(req, session).await,
            Route::CsrPost => self.csr_post(req, session).await,
            Route::Acme => {
                let show = run_as!(self, Command::AcmeShow, Reply::Acme);
                let status = run_as!(self, Command::AcmeStatus, Reply::AcmeStatus);
                let dns = run_as!(self, Command::DnsList, Reply::DnsList);
                let propagation = run_as!(self, Command::DnsPropagation, Reply::Propagation).ok();
                match (show, status, dns) {
                    (Ok(a), Ok(st), Ok(d)) => Resp::html(
                        200,
                        html::acme(
                            csrf,
                            &a,
                            &st,
                            &d,
                            propagation.as_ref(),
                            &self.flash_lines(session),
                        ),
                    ),
                    (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                        self.error_page(500, "Error", Some(session), &e)
                    }
                }
            }
            Route::AcmePost => self.acme_post(req, session).await,
            Route::AcmeRetry => self.acme_retry(req, session).await,
            Route::DnsPropagation => {
                let form = match self.form(req, session) {
                    Ok(f) => f,
                    Err(r) => return r,
                };
                // The one duration parser (`clock::parse_duration`), as the CLI.
                let time = |k: &str| match form.get(k).map(str::trim).unwrap_or("") {
                    "" => Ok(None),
                    t => clock::parse_duration(t).map(Some).ok_or_else(|| {
                        Error::BadSetting(format!("{k}: a time such as 2m, 90s or 5s, not {t}"))
                    }),
                };
                let r = match (time("propagation_timeout"), time("propagation_interval")) {
                    (Ok(timeout), Ok(interval)) => {
                        self.run(Command::DnsSet {
                            propagation_timeout: timeout,
                            propagation_interval: interval,
                            check_ns: Some(form.get("check_ns") == Some("true")),
                        })
                        .await
                    }
                    (Err(e), _) | (_, Err(e)) => Err(e),
                };
                self.outcome(
                    session,
                    "/acme#propagation",
                    r,
                    "propagation settings saved",
                )
            }
            Route::Alerts => match run_as!(self, Command::AlertShow, Reply::AlertSettings) {
                Ok(v) => {
                    let open = run_as!(self, Command::Alerts, Reply::Alerts).unwrap_or_default();
                    Resp::html(
                        200,
                        html::alert_settings(csrf, &v, &open, &self.flash_lines(session)),
                    )
                }
                Err(e) => self.error_page(500, "Error", Some(session), &e),
            },
            Route::AlertsPost => {
                let form = match self.form(req, session) {
                    Ok(f) => f,
                    Err(r) => return r,
                };
                let r = match alert_change(&form) {
                    Ok(change) => self.run(Command::AlertSet(change)).await,
                    Err(e) => Err(e),
                };
                self.outcome(session, "/alerts", r, "alert settings saved")
            }
            Route::AlertsTest => {
                if let Err(r) = self.form(req, session) {
                    return r;
                }
                let flash = match crate::notify::test_in_daemon(&self.shared).await {
                    Ok(report) => {
                        let line = |what: &str, o: &crate::alert::ChannelOutcome| match o.ok {
                            true => ("ok", String::new(), format!("{what}: test alert sent")),
                            false => (
                                "err",
                                o.code.clone().unwrap_or_default(),
                                format!("{what}: {}", o.message.as_deref().unwrap_or("failed")),
                            ),
                        };
                        let mut lines = Vec::new();
                        if let Some(o) = &report.email {
                            lines.push(line("e-mail", o));
                        }
                        if let Some(o) = &report.webhook {
                            lines.push(line("webhook", o));
                        }
                        Flash { lines }
                    }
                    Err(e) => Flash::one("err", e.code_str(), e.to_string()),
                };
                self.back(session, "/alerts", flash)
            }
            Route::LocalCa => {
                let ca = run_as!(self, Command::CaShow, Reply::Ca).ok();
                match run_as!(self, Command::TenantList, Reply::Tenants) {
                    Ok(t) => Resp::html(
                        200,
                        html::local_ca(csrf, ca.as_ref(), &t, &self.flash_lines(session)),
                    ),
                    Err(e) => self.error_page(500, "Error", Some(session), &e),
                }
            }
            Route::CaInit => {
                if let Err(r) = self.form(req, session) {
                    return r;
                }
                let r = self.run(Command::CaInit).await;
                self.outcome(session, "/ca", r, "local CA created")
            }
            Route::CaIssue => {
                let form = match self.form(req, session) {
                    Ok(f) => f,
                    Err(r) => return r,
                };
                let tenant = form.get("tenant").unwrap_or("").to_owned();
                let client = form.get("client") == Some("true");
                let flash = match self.run(Command::CaIssue { tenant, client }).await {
                    Ok(Reply::Imported(v)) => Flash::one(
                        "ok",
                        "",
                        format!(
                            "issued a certificate for {} ({})",
                            v.names.join(", "),
                            v.eku.join(", ")
                        ),
                    ),
                    Ok(_) => Flash::one("ok", "", "certificate issued"),
                    Err(e) => Flash::one("err", e.code_str(), e.to_string()),
                };
                self.back(session, "/ca", flash)
            }
            Route::DnsAdd => {
                let form = match self.form(req, session) {
                    Ok(f) => f,
                    Err(r) => return r,
                };
                let r = match dns_add_command(&form) {
                    Ok(command) => self.run(command).await,
                    Err(e) => Err(e),
                };
                let name = form.get("name").unwrap_or("").trim().to_owned();
                self.outcome(
                    session,
                    "/acme#dns",
                    r,
                    &format!("DNS provider {name} added"),
                )
            }
            Route::DnsRemoveConfirm(name) => {
                let providers = run_as!(self, Command::DnsList, Reply::DnsList).unwrap_or_default();
                let Some(p) = providers.iter().find(|p| p.name == name) else {
                    return self.back(
                        session,
                        "/acme#dns",
                        Flash::one("err", "not-found", format!("no DNS provider {name}")),
                    );
                };
                let mut names: Vec<String> = run_as!(self, Command::TenantList, Reply::Tenants)
                    .unwrap_or_default()
                    .into_iter()
                    .flat_map(|t| t.dns)
                    .collect();
                if let Ok(Some(dns)) =
                    run_as!(self, Command::SystemShow, Reply::System).map(|s| s.dns)
                {
                    names.push(dns);
                }
                let zone = p.zone.trim_end_matches('.').to_ascii_lowercase();
                names.retain(|n| {
                    let n = n.trim_start_matches("*.").to_ascii_lowercase();
                    n == zone || n.ends_with(&format!(".{zone}"))
                });
                names.sort();
                Resp::html(200, html::dns_remove_confirm(csrf, p, &names))
            }
            Route::DnsRemove => {
                let form = match self.form(req, session) {
                    Ok(f) => f,
                    Err(r) => return r,
                };
                let name = form.get("name").unwrap_or("").to_owned();
                if form.get("confirm") != Some("yes") {
                    return self.back(
                        session,
                        "/acme#dns",
                        Flash::one(
                            "err",
                            "bad-request",
                            "removing a DNS provider needs its confirmation page",
                        ),
                    );
                }
                let r = self.run(Command::DnsRemove { name: name.clone() }).await;
                self.outcome(
                    session,
                    "/acme#dns",
                    r,
                    &format!("DNS provider {name} removed"),
                )
            }
            Route::Tenants => {
                let lines = self.flash_lines(session);
                self.tenants_page(session, 200, &html::TenantTyped::default(), None, &lines)
                    .await
            }
            Route::TenantAdd => {
                let form = match self.form(req, session) {
                    Ok(f) => f,
                    Err(r) => return r,
                };
                let name = form.get("name").unwrap_or("").trim().to_owned();
                let words = |field: &str| -> Vec<String> {
                    form.get(field)
                        .unwrap_or("")
                        .split(|c: char| c.is_whitespace() || c == ',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                };
                let r = self
                    .run(Command::TenantAdd {
                        name: name.clone(),
                        dns: words("dns"),
                        ip: words("ip"),
                    })
                    .await;
                match r {
                    Ok(_) => self.back(
                        session,
                        "/tenants",
                        Flash::one("ok", "", format!("tenant {name} added")),
                    ),
                    // The form again with what was typed (issue 14).
                    Err(e) => {
                        let typed = html::TenantTyped {
                            name,
                            dns: form.get("dns").unwrap_or("").to_owned(),
                            ip: form.get("ip").unwrap_or("").to_owned(),
                        };
                        let line: Line = ("err", e.code_str().into(), e.to_string());
                        self.tenants_page(session, api::status_of(&e), &typed, None, &[line])
                            .await
                    }
                }
            }
            Route::TenantEditForm(name) => {
                let tenants = run_as!(self, Command::TenantList, Reply::Tenants);
                match tenants.map(|ts| ts.into_iter().find(|t| t.name == name)) {
                    Ok(Some(t)) => {
                        Resp::html(200, html::tenant_edit(csrf, &html::TenantEdit::of(&t), &[]))
                    }
                    Ok(None) => {
                        let e = Error::NoSuchTenant(name);
                        self.error_page(404, "Not found", Some(session), &e)
                    }
                    Err(e) => self.error_page(500, "Error", Some(session), &e),
                }
            }
            Route::TenantEdit => {
                let form = match self.form(req, session) {
                    Ok(f) => f,
                    Err(r) => return r,
                };
                let field = |k: &str| form.get(k).unwrap_or("").to_owned();
                let typed = html::TenantEdit {
                    name: field("name").trim().to_owned(),
                    dns: field("dns"),
                    ip: field("ip"),
                    challenge: field("challenge").trim().to_owned(),
                    key_type: field("key_type").trim().to_owned(),
                    profile: field("profile").trim().to_owned(),
                };
                let words = |v: &str| -> Vec<String> {
                    v.split(|c: char| c.is_whitespace() || c == ',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                };
                let r = match (
                    crate::ops::parse_word(&typed.challenge),
                    crate::ops::parse_word(&typed.key_type),
                ) {
                    (Ok(challenge), Ok(key_type)) => {
                        self.run(Command::TenantSet {
                            name: typed.name.clone(),
                            dns: Some(words(&typed.dns)),
                            ip: Some(words(&typed.ip)),
                            acme_challenge: Some(challenge),
                            acme_key_type: Some(key_type),
                            acme_profile: Some(typed.profile.clone()).filter(|p| !p.is_empty()),
                        })
                        .await
                    }
                    (Err(e), _) | (_, Err(e)) => Err(e),
                };
                match r {
                    Ok(_) => self.back(
                        session,
                        "/tenants",
                        Flash::one("ok", "", format!("tenant {} saved", typed.name)),
                    ),
                    Err(e) => {
                        let line: Line = ("err", e.code_str().into(), e.to_string());
                        Resp::html(api::status_of(&e), html::tenant_edit(csrf, &typed, &[line]))
                    }
                }
            }
            Route::TenantRemoveConfirm(name) => {
                match run_as!(
                    self,
                    Command::TenantRemovePreview { name },
                    Reply::TenantRemovePreview
                ) {
                    Ok(p) => Resp::html(200, html::tenant_remove_confirm(csrf, &p, now)),
                    Err(e) => self.error_page(api::status_of(&e), "Not found", Some(session), &e),
                }
            }
            Route::TenantRemove => {
                let form = match self.form(req, session) {
                    Ok(f) => f,
                    Err(r) => return r,
                };
                let name = form.get("name").unwrap_or("").to_owned();
                let r = self.run(Command::TenantRemove { name: name.clone() }).await;
                self.outcome(session, "/tenants", r, &format!("tenant {name} removed"))
            }
            Route::SystemPost => {
                let form = match self.form(req, session) {
                    Ok(f) => f,
                    Err(r) => return r,
                };
                let or_none = |k: &str| {
                    let v = form.get(k).unwrap_or("").trim();
                    if v.is_empty() {
                        "none".to_owned()
                    } else {
                        v.to_owned()
                    }
                };
                let default_cert = or_none("default_cert");
                if default_cert != "none" && valid_id(&default_cert).is_none() {
                    return self.back(
                        session,
                        "/tenants",
                        Flash::one("err", "bad-request", bad_id_message()),
                    );
                }
                let command = Command::SystemSet {
                    dns: Some(or_none("dns")),
                    admin_email: Some(or_none("admin_email")),
                    default_cert: Some(default_cert),
                    aia_fetch: None,
                };
                let r = self.run(command).await;
                match r {
                    Ok(_) => self.back(
                        session,
                        "/tenants",
                        Flash::one("ok", "", "system settings saved"),
                    ),
                    // The form again with what was typed (no field is a secret).
                    Err(e) => {
                        let typed = |k: &str| {
                            Some(form.get(k).unwrap_or("").trim().to_owned())
                                .filter(|v| !v.is_empty())
                        };
                        let system = (typed("dns"), typed("admin_email"), typed("default_cert"));
                        let line: Line = ("err", e.code_str().into(), e.to_string());
                        self.tenants_page(
                            session,
                            api::status_of(&e),
                            &html::TenantTyped::default(),
                            Some(system),
                            &[line],
                        )
                        .await
                    }
                }
            }
            Route::NotFound => Resp::html(
                404,
                html::message(
                    "Not found",
                    Some(csrf),
                    &[(
                        "err",
                        "no-such-page".into(),
                        format!("there is no page {}", req.head.path),
                    )],
                ),
            ),
            Route::MethodNotAllowed => Resp::html(
                405,
                html::message(
                    "Method not allowed",
                    Some(csrf),
                    &[(
                        "err",
                        "method-not-allowed".into(),
                        format!("{} is not allowed here", req.head.method),
                    )],
                ),
            ),
            // Handled before a session exists or by the API module.
            Route::Login | Route::LoginPost | Route::CaPem | Route::StiPem(_) | Route::Api(_) => {
                Resp::redirect(303, "/")
            }
        }
    }
}

impl Handler for Admin {
    type Ctx = Ctx;

    async fn begin(&self, head: &Head) -> Result<(Ctx, usize), Resp> {
        let route = route(&head.method, &head.path, head.query.as_deref());
        let api = is_api(&route);
        if !head.is_read() && cross_site(head) {
            return Err(forbidden(
                api,
                "cross-site",
                "the browser marked this request as coming from another site",
            ));
        }
        let now = Instant::now();
        let mut auth = Auth::None;
        if let Some(session) = head
            .cookie(SESSION_COOKIE)
            .and_then(|id| self.web.get(id, now))
        {
            if session.grant == Grant::Setup && !self.setup_session_valid().await {
                self.web.remove(&session.id);
            } else {
                auth = Auth::Session(session);
            }
        } else if api {
            if let Some(password) = basic_password(head) {
                auth = self.check_basic(password).await?;
            }
        }
        // The login, the local CA's root for phone provisioning (public by
        // nature: phones fetch it before they trust anything) and published
        // STIR/SHAKEN chains (x5u: verifiers anywhere fetch them).
        if matches!(
            route,
            Route::Login | Route::LoginPost | Route::CaPem | Route::StiPem(_)
        ) {
            return Ok((Ctx { route, auth }, MAX_LOGIN_BODY_BYTES));
        }
        match &auth {
            Auth::None if api => {
                return Err(Resp::json_error(
                    401,
                    "unauthenticated",
                    "log in first: a session cookie with X-CSRF-Token, or HTTP Basic with the admin password",
                ))
            }
            Auth::None => return Err(Resp::redirect(303, "/login")),
            Auth::Session(s)
                if s.grant == Grant::Setup
                    && !matches!(route, Route::Password | Route::PasswordPost | Route::Logout) =>
            {
                return Err(if api {
                    Resp::json_error(403, "password-required", "set the admin password first")
                } else {
                    Resp::redirect(303, "/password")
                });
            }
            _ => {}
        }
        if api && !head.is_read() {
            if let Auth::Session(s) = &auth {
                let ok = head
                    .header("x-csrf-token")
                    .is_some_and(|t| ct_eq(t.as_bytes(), s.csrf.as_bytes()));
                if !ok {
                    return Err(forbidden(
                        true,
                        "csrf",
                        "API writes with a session cookie need the X-CSRF-Token header",
                    ));
                }
            }
            if head.method == "POST" && head.media_type() != "application/json" {
                return Err(Resp::json_error(
                    415,
                    "unsupported-media-type",
                    "send the request body as Content-Type: application/json",
                ));
            }
        }
        let limit = match route {
            Route::ImportPost | Route::Api(ApiRoute::Import) => MAX_IMPORT_BODY_BYTES,
            _ => MAX_FORM_BODY_BYTES,
        };
        Ok((Ctx { route, auth }, limit))
    }

    async fn finish(&self, ctx: Ctx, req: Req) -> Resp {
        let Ctx { route, auth } = ctx;
        let session = match &auth {
            Auth::Session(s) => Some(s),
            _ => None,
        };
        match (route, session) {
            (Route::Login, Some(s)) if s.grant == Grant::Admin => Resp::redirect(303, "/certs"),
            (Route::Login, _) => self.login_page(200, &[]).await,
            (Route::LoginPost, old) => self.login_post(&req, old).await,
            (Route::CaPem, _) => self.ca_pem().await,
            (Route::StiPem(id), _) => self.sti_pem(id).await,
            (Route::Api(r), _) => api::handle(&self.shared, &self.web, self.ip, r, &req).await,
            (route, Some(s)) => {
                let resp = self.page(route, &req, s).await;
                self.alerts_banner(resp, s).await
            }
            (_, None) => Resp::redirect(303, "/login"),
        }
    }

    fn too_large(&self, head: &Head, limit: usize) -> Resp {
        let message = format!(
            "the request body has {} bytes; at most {limit} are accepted here",
            head.content_length
        );
        if head.path.starts_with("/api/") {
            Resp::json_error(413, "too-large", &message)
        } else {
            Resp::html(
                413,
                html::message("Too large", None, &[("err", "too-large".into(), message)]),
            )
        }
    }
}

/// How messages name a certificate: its DNS names, or its ID's first 16
/// hex digits when it has none (issue 14: never a 64-hex ID alone).
fn cert_label(names: &[String], id: &str) -> String {
    if names.is_empty() {
        id.get(..16).unwrap_or(id).to_owned()
    } else {
        names.join(", ")
    }
}

/// A download's file name without `.pem`: the name (`pbx.acme.example`,
/// a wildcard's `*` as `_`), or the ID's first 16 hex digits when there is
/// none. Only `A-Z a-z 0-9 . - _` survive (the name goes into a quoted
/// `Content-Disposition` value and onto a disk).
fn file_stem(name: Option<&str>, id: &str) -> String {
    let stem: String = name
        .unwrap_or("")
        .chars()
        .map(|c| match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '.' | '-' | '_' => c,
            _ => '_',
        })
        .take(crate::limits::MAX_DOWNLOAD_NAME_LEN)
        .collect();
    if stem.trim_matches(|c| c == '.' || c == '_').is_empty() {
        id.get(..16).unwrap_or(id).to_owned()
    } else {
        stem
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_names_are_the_certificates_name_in_safe_characters() {
        let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(file_stem(Some("pbx.acme.example"), id), "pbx.acme.example");
        assert_eq!(file_stem(Some("*.acme.example"), id), "_.acme.example");
        assert_eq!(file_stem(Some("ISRG Root X1"), id), "ISRG_Root_X1");
        assert_eq!(file_stem(Some("a\"b/c\\d"), id), "a_b_c_d");
        assert_eq!(file_stem(None, id), "0123456789abcdef");
        assert_eq!(file_stem(Some("//.."), id), "0123456789abcdef");
        assert_eq!(file_stem(Some(&"x".repeat(999)), id).len(), 100);
    }

    fn id() -> String {
        "ab".repeat(32)
    }

    #[test]
    fn routes() {
        let i = id();
        assert_eq!(route("GET", "/", None), Route::Home);
        assert_eq!(route("HEAD", "/certs", None), Route::Certs(false));
        assert_eq!(
            route("GET", "/certs", Some("sort=expiry")),
            Route::Certs(true)
        );
        assert_eq!(route("POST", "/certs", None), Route::MethodNotAllowed);
        assert_eq!(route("GET", "/login", None), Route::Login);
        assert_eq!(route("POST", "/login", None), Route::LoginPost);
        assert_eq!(route("GET", "/logout", None), Route::MethodNotAllowed);
        assert_eq!(
            route("GET", &format!("/certs/{i}.pem"), None),
            Route::CertPem(i.clone())
        );
        assert_eq!(
            route(
                "GET",
                &format!("/roots/{}.pem", &i[..8].to_uppercase()),
                None
            ),
            Route::RootPem(i[..8].to_owned())
        );
        assert_eq!(route("GET", "/certs/abc.pem", None), Route::NotFound);
        // Published STIR/SHAKEN chains: full IDs only, GET/HEAD only.
        let full = "ab".repeat(32);
        assert_eq!(
            route("GET", &format!("/sti/{full}.pem"), None),
            Route::StiPem(full.clone())
        );
        assert_eq!(
            route("GET", &format!("/sti/{}.pem", &full[..16]), None),
            Route::NotFound
        );
        assert_eq!(
            route("POST", &format!("/sti/{full}.pem"), None),
            Route::MethodNotAllowed
        );
        assert_eq!(route("GET", &format!("/certs/{i}"), None), Route::NotFound);
        assert_eq!(route("GET", "/roots/reset", None), Route::RootsResetConfirm);
        assert_eq!(route("POST", "/roots/reset", None), Route::RootsReset);
        assert_eq!(route("POST", "/import", None), Route::ImportPost);
        assert_eq!(route("GET", "/csr", None), Route::Csr);
        assert_eq!(route("GET", "/ca.pem", None), Route::CaPem);
        assert_eq!(route("POST", "/csr", None), Route::CsrPost);
        assert_eq!(route("DELETE", "/csr", None), Route::MethodNotAllowed);
        assert_eq!(
            route("GET", "/api/certs", None),
            Route::Api(ApiRoute::Certs)
        );
        assert_eq!(route("GET", "/acme", None), Route::Acme);
        assert_eq!(route("POST", "/acme", None), Route::AcmePost);
        assert_eq!(route("POST", "/acme/dns/add", None), Route::DnsAdd);
        assert_eq!(route("POST", "/acme/retry", None), Route::AcmeRetry);
        assert_eq!(
            route("POST", "/acme/dns/propagation", None),
            Route::DnsPropagation
        );
        assert_eq!(route("GET", "/ca", None), Route::LocalCa);
        assert_eq!(route("POST", "/ca/init", None), Route::CaInit);
        assert_eq!(route("POST", "/ca/issue", None), Route::CaIssue);
        assert_eq!(route("GET", "/alerts", None), Route::Alerts);
        assert_eq!(route("POST", "/alerts", None), Route::AlertsPost);
        assert_eq!(route("POST", "/alerts/test", None), Route::AlertsTest);
        let k = "ab".repeat(32);
        assert_eq!(
            route("GET", "/csr/delete", Some(&format!("key={k}"))),
            Route::CsrDeleteConfirm(k)
        );
        assert_eq!(route("GET", "/csr/delete", Some("key=zz")), Route::NotFound);
        assert_eq!(route("POST", "/csr/delete", None), Route::CsrDelete);
        assert_ne!(route("GET", "/acme/retry", None), Route::AcmeRetry);
        assert_eq!(route("GET", "/acme/dns/remove", None), Route::NotFound);
        assert_eq!(
            route("GET", "/acme/dns/remove", Some("name=cf")),
            Route::DnsRemoveConfirm("cf".into())
        );
        assert_eq!(route("POST", "/acme/dns/remove", None), Route::DnsRemove);
        assert_eq!(route("GET", "/apix", None), Route::NotFound);
        assert_eq!(route("GET", "/../etc/passwd", None), Route::NotFound);
    }

    #[test]
    fn alert_form_keeps_an_empty_secret_and_clears_it_with_its_owner() {
        let f = |body: &str| Form::parse(body.as_bytes()).unwrap();
        let keep = alert_change(&f(
            "smtp_server=m%3A587&smtp_user=u&smtp_password=&webhook=&webhook_secret=&failures=2",
        ))
        .unwrap();
        assert_eq!(keep.smtp_password, None);
        assert_eq!(keep.webhook.as_deref(), Some("none"));
        assert_eq!(keep.webhook_secret.as_deref(), Some("none"));
        assert_eq!(keep.failures, Some(2));
        let set = alert_change(&f("smtp_user=u&smtp_password=p")).unwrap();
        assert_eq!(set.smtp_password.as_deref(), Some("p"));
        let cleared = alert_change(&f("smtp_user=&smtp_password=")).unwrap();
        assert_eq!(cleared.smtp_password.as_deref(), Some("none"));
        assert!(alert_change(&f("failures=many")).is_err());
    }

    #[test]
    fn acme_form_keeps_or_removes_the_eab_hmac() {
        let f = |body: &str| Form::parse(body.as_bytes()).unwrap();
        let c = acme_change(
            &f("preset=staging&email=&challenge=dns-01&eab_kid=&eab_hmac=&check_interval=60"),
            None,
        )
        .unwrap();
        assert_eq!(
            c.directory.as_deref(),
            Some(crate::limits::ACME_STAGING_DIRECTORY)
        );
        assert_eq!(
            (c.email.as_deref(), c.enabled, c.check_interval),
            (Some("none"), Some(false), Some(60))
        );
        assert_eq!((c.eab_kid, c.eab_hmac), (None, None));
        let keep = acme_change(
            &f("preset=custom&directory=https://x/d&enabled=true&eab_kid=k&eab_hmac="),
            Some("k"),
        )
        .unwrap();
        assert_eq!(
            (keep.enabled, keep.eab_kid, keep.eab_hmac),
            (Some(true), None, None)
        );
        let clear = acme_change(&f("preset=production&eab_kid=&eab_hmac="), Some("k")).unwrap();
        assert_eq!(clear.eab_kid.as_deref(), Some("none"));
        assert!(acme_change(&f("preset=production&eab_kid=new&eab_hmac="), Some("k")).is_err());
        assert!(acme_change(&f("preset=custom&directory="), None).is_err());
        assert!(acme_change(&f("preset=production&check_interval=x"), None).is_err());
    }

    fn head(method: &str, path: &str, headers: &[(&str, &str)], len: usize) -> Head {
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
            None => (path.to_owned(), None),
        };
        Head {
            method: method.into(),
            path,
            query,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            content_length: len,
        }
    }

    #[test]
    fn cross_site_detection() {
        let h = |hs: &[(&str, &str)]| cross_site(&head("POST", "/", hs, 0));
        assert!(!h(&[]));
        assert!(!h(&[("sec-fetch-site", "same-origin")]));
        assert!(!h(&[("sec-fetch-site", "none")]));
        assert!(h(&[("sec-fetch-site", "cross-site")]));
        assert!(h(&[("sec-fetch-site", "same-site")]));
        assert!(!h(&[("origin", "null"), ("host", "pbx:8443")]));
        assert!(!h(&[("origin", "https://pbx:8443"), ("host", "pbx:8443")]));
        assert!(h(&[
            ("origin", "https://evil.example"),
            ("host", "pbx:8443")
        ]));
        assert!(h(&[("origin", "http://pbx:8443"), ("host", "pbx:8443")]));
    }

    #[test]
    fn basic_auth_is_parsed() {
        let h = |v: &str| basic_password(&head("GET", "/", &[("authorization", v)], 0));
        // admin:s3cret pa:ss
        assert_eq!(
            h("Basic YWRtaW46czNjcmV0IHBhOnNz").as_deref(),
            Some("s3cret pa:ss")
        );
        assert_eq!(h("basic OnB3").as_deref(), Some("pw"));
        assert_eq!(h("Bearer abc"), None);
        assert_eq!(h("Basic !!!"), None);
        assert_eq!(h("Basic bm9jb2xvbg=="), None);
    }

    struct Client {
        admin: Admin,
        cookie: Option<String>,
        _dir: tempfile::TempDir,
    }

    impl Client {
        fn new() -> Client {
            let dir = tempfile::tempdir().unwrap();
            let store = crate::ops::open_store(dir.path()).unwrap();
            let shared = Shared::new(store).unwrap();
            *shared.setup_token.lock().unwrap() = Some("the-setup-token".into());
            Client {
                admin: Admin::new(
                    shared,
                    Arc::new(WebState::new()),
                    IpAddr::from([127, 0, 0, 1]),
                ),
                cookie: None,
                _dir: dir,
            }
        }

        fn call(&mut self, method: &str, path: &str, extra: &[(&str, &str)], body: &[u8]) -> Resp {
            let mut headers: Vec<(&str, &str)> = vec![("host", "pbx:8443")];
            let cookie = self
                .cookie
                .as_ref()
                .map(|c| format!("{SESSION_COOKIE}={c}"));
            if let Some(c) = &cookie {
                headers.push(("cookie", c));
            }
            headers.extend_from_slice(extra);
            let h = head(method, path, &headers, body.len());
            let resp = smol::block_on(async {
                match self.admin.begin(&h).await {
                    Err(r) => r,
                    Ok((_, limit)) if body.len() > limit => self.admin.too_large(&h, limit),
                    Ok((ctx, _)) => {
                        self.admin
                            .finish(
                                ctx,
                                Req {
                                    head: h.clone(),
                                    body: body.to_vec(),
                                },
                            )
                            .await
                    }
                }
            });
            if let Some(c) = resp.header("set-cookie") {
                let value = c.split(';').next().unwrap().split_once('=').unwrap().1;
                self.cookie = (!value.is_empty()).then(|| value.to_owned());
            }
            resp
        }

        fn form(&mut self, path: &str, body: &str) -> Resp {
            self.call(
                "POST",
                path,
                &[("content-type", "application/x-www-form-urlencoded")],
                body.as_bytes(),
            )
        }

        fn csrf(&mut self) -> String {
            let page = self.call("GET", "/password", &[], b"");
            let html = String::from_utf8(page.body).unwrap();
            let start = html.find("name=\"csrf\" value=\"").unwrap() + 19;
            html[start..].split('"').next().unwrap().to_owned()
        }
    }

    fn json(r: &Resp) -> serde_json::Value {
        serde_json::from_slice(&r.body).unwrap()
    }

    #[test]
    fn login_setup_csrf_and_api_flow() {
        let mut c = Client::new();
        // Nothing works before login.
        let r = c.call("GET", "/certs", &[], b"");
        assert_eq!((r.status, r.header("location")), (303, Some("/login")));
        let r = c.call("GET", "/api/certs", &[], b"");
        assert_eq!(r.status, 401);
        assert_eq!(json(&r)["error"]["code"], "unauthenticated");
        let r = c.call("GET", "/nope", &[], b"");
        assert_eq!(r.status, 303);
        let r = c.call("GET", "/login", &[], b"");
        assert_eq!(r.status, 200);
        assert!(String::from_utf8_lossy(&r.body).contains("Setup token"));

        // The setup token, not a guess, opens a setup-only session.
        let r = c.form("/login", "password=wrong");
        assert_eq!(r.status, 401);
        assert!(c.cookie.is_none());
        let r = c.form("/login", "password=the-setup-token");
        assert_eq!((r.status, r.header("location")), (303, Some("/password")));
        let setup_cookie = c.cookie.clone().unwrap();
        // The token is single-use: a second login with it fails.
        c.cookie = None;
        assert_eq!(c.form("/login", "password=the-setup-token").status, 401);
        assert!(c.admin.shared.setup_token.lock().unwrap().is_none());
        c.cookie = Some(setup_cookie.clone());
        let r = c.call("GET", "/certs", &[], b"");
        assert_eq!((r.status, r.header("location")), (303, Some("/password")));
        let r = c.call("GET", "/api/certs", &[], b"");
        assert_eq!(r.status, 403);
        assert_eq!(json(&r)["error"]["code"], "password-required");

        // Setting the password needs the CSRF token and matching fields.
        let csrf = c.csrf();
        let r = c.form(
            "/password",
            "password=correct+horse+battery&confirm=correct+horse+battery",
        );
        assert_eq!(r.status, 403);
        let r = c.form(
            "/password",
            &format!("csrf={csrf}&password=correct+horse+battery&confirm=other"),
        );
        assert_eq!(r.status, 400);
        let r = c.form(
            "/password",
            &format!("csrf={csrf}&password=short&confirm=short"),
        );
        assert_eq!(r.status, 400);
        assert!(String::from_utf8_lossy(&r.body).contains("bad-password"));
        let r = c.form(
            "/password",
            &format!("csrf={csrf}&password=correct+horse+battery&confirm=correct+horse+battery"),
        );
        assert_eq!((r.status, r.header("location")), (303, Some("/certs")));
        assert_ne!(c.cookie.as_deref(), Some(setup_cookie.as_str()));
        assert!(c.admin.shared.setup_token.lock().unwrap().is_none());
        let r = c.call("GET", "/certs", &[], b"");
        assert_eq!(r.status, 200);
        let page = String::from_utf8(r.body).unwrap();
        assert!(page.contains("the admin password is set"));
        assert!(page.contains("No certificates yet"));

        // The old setup session is gone; the token no longer logs in.
        let admin_cookie = c.cookie.replace(setup_cookie);
        assert_eq!(c.call("GET", "/password", &[], b"").status, 303);
        c.cookie = None;
        assert_eq!(c.form("/login", "password=the-setup-token").status, 401);
        c.cookie = admin_cookie;

        // Page POSTs need the CSRF field; API writes need the header.
        let csrf = c.csrf();
        let r = c.form("/tenants/add", "name=acme&dns=pbx.acme.example");
        assert_eq!(r.status, 403);
        let r = c.form(
            "/tenants/add",
            &format!("csrf={csrf}X&name=acme&dns=pbx.acme.example"),
        );
        assert_eq!(r.status, 403);
        let r = c.form(
            "/tenants/add",
            &format!("csrf={csrf}&name=acme&dns=pbx.acme.example+b.acme.example"),
        );
        assert_eq!((r.status, r.header("location")), (303, Some("/tenants")));
        let body = br#"{"name":"beta","dns":["pbx.beta.example"]}"#;
        let ct = ("content-type", "application/json");
        let r = c.call("POST", "/api/tenants", &[ct], body);
        assert_eq!(r.status, 403);
        assert_eq!(json(&r)["error"]["code"], "csrf");
        let r = c.call("POST", "/api/tenants", &[ct, ("x-csrf-token", &csrf)], body);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(json(&r), serde_json::json!({"ok": true}));
        let r = c.call("POST", "/api/tenants", &[("x-csrf-token", &csrf)], body);
        assert_eq!(r.status, 415);
        let r = c.call("POST", "/api/tenants", &[ct, ("x-csrf-token", &csrf)], body);
        assert_eq!(r.status, 409);
        assert_eq!(json(&r)["error"]["code"], "tenant-exists");
        let r = c.call("GET", "/api/tenants", &[], b"");
        assert_eq!(json(&r)[1]["dns"][0], "pbx.beta.example");
        let r = c.call(
            "POST",
            "/api/tenants",
            &[
                ct,
                ("x-csrf-token", &csrf),
                ("sec-fetch-site", "cross-site"),
            ],
            body,
        );
        assert_eq!(r.status, 403);
        assert_eq!(json(&r)["error"]["code"], "cross-site");

        // Errors keep their codes; IDs are checked like the CLI's.
        let r = c.call("GET", "/api/certs/0123456789", &[], b"");
        assert_eq!(
            (r.status, json(&r)["error"]["code"].as_str()),
            (404, Some("not-found"))
        );
        let r = c.call("GET", "/api/certs/012", &[], b"");
        assert_eq!(
            (r.status, json(&r)["error"]["code"].as_str()),
            (400, Some("bad-request"))
        );
        let r = c.call(
            "POST",
            "/api/import",
            &[ct, ("x-csrf-token", &csrf)],
            br#"{"cert":"junk"}"#,
        );
        assert_eq!(
            (r.status, json(&r)["error"]["code"].as_str()),
            (400, Some("no-certificate"))
        );
        let r = c.call("GET", "/api/resolve?sni=pbx.acme.example", &[], b"");
        assert_eq!(json(&r)["match"], "none");
        assert_eq!(json(&r)["tenant"], "acme");

        // The import route accepts a large body; others do not.
        let big = vec![b'a'; MAX_FORM_BODY_BYTES + 1];
        let r = c.call("POST", "/tenants/add", &[], &big);
        assert_eq!(r.status, 413);
        let r = c.form(
            "/import",
            &format!(
                "csrf={csrf}&cert={}&kind=auto",
                "a".repeat(MAX_FORM_BODY_BYTES)
            ),
        );
        assert_eq!(r.status, 400);
        assert!(String::from_utf8_lossy(&r.body).contains("no-certificate"));

        // HTTP Basic for scripts: the admin password, rate limited.
        c.cookie = None;
        let good = format!(
            "Basic {}",
            Base64::encode_string(b"admin:correct horse battery")
        );
        let bad = format!("Basic {}", Base64::encode_string(b"admin:nope"));
        let r = c.call("GET", "/api/tenants", &[("authorization", &good)], b"");
        assert_eq!(r.status, 200);
        let r = c.call("GET", "/api/tenants", &[("authorization", &bad)], b"");
        assert_eq!(r.status, 401);
        let r = c.call("GET", "/certs", &[("authorization", &good)], b"");
        assert_eq!(r.status, 303, "Basic auth is for the API only");
        let r = c.call("POST", "/api/roots/reset", &[("authorization", &good)], b"");
        assert_eq!(r.status, 415);
        let r = c.call(
            "POST",
            "/api/roots/reset",
            &[("authorization", &good), ct],
            b"",
        );
        assert_eq!(r.status, 200);

        // Logging in with the password, then out.
        let r = c.form("/login", "password=correct+horse+battery");
        assert_eq!((r.status, r.header("location")), (303, Some("/certs")));
        let csrf = c.csrf();
        let sessions = c.admin.web.session_count();
        let last = c.cookie.clone();
        let r = c.form("/logout", &format!("csrf={csrf}"));
        assert_eq!((r.status, r.header("location")), (303, Some("/login")));
        assert!(c.cookie.is_none());
        assert_eq!(c.admin.web.session_count(), sessions - 1);
        c.cookie = last;
        assert_eq!(c.call("GET", "/certs", &[], b"").status, 303);
    }

    #[test]
    fn login_is_rate_limited() {
        let mut c = Client::new();
        for _ in 0..crate::http::LOGIN_FREE_FAILURES {
            assert_eq!(c.form("/login", "password=guess").status, 401);
        }
        assert_eq!(c.form("/login", "password=guess").status, 401);
        let r = c.form("/login", "password=the-setup-token");
        assert_eq!(r.status, 429, "locked out even with the right token");
        assert!(r.header("retry-after").is_some());
        assert!(c.cookie.is_none());
    }
}
