//! The JSON API under `/api/`: the CLI's commands over HTTPS, with the same
//! JSON shapes and error codes as `pbx-certd --json` (README, "CLI reference").
//!
//! Authentication, either:
//! - HTTP Basic with the admin password (any user name), e.g.
//!   `curl -k -u admin:PASSWORD https://pbx:443/api/certs`; each request is
//!   a login, through the same path and per-IP limit as the login page: it
//!   is counted before the password hash is checked, one IP gets one check
//!   at a time (a concurrent request from the same IP gets 429
//!   `rate-limited`; run Basic requests one after another, or use a
//!   session), and `MAX_CONCURRENT_PASSWORD_CHECKS` run in all (beyond
//!   them 503 `busy`); or
//! - the web admin's session cookie, plus the header `X-CSRF-Token: TOKEN` (the
//!   value of the pages' hidden `csrf` field) on every POST and DELETE.
//!
//! Every POST sends `Content-Type: application/json` (an empty body counts
//! as `{}`). Requests a browser marks as cross-site are refused.
//!
//! | method | path | CLI | request body / query | answer |
//! |---|---|---|---|---|
//! | GET | `/api/certs` | `certs` | | `[{"id","kind","names","tenant","not_before","not_after","source","key_type","eku"}]` |
//! | GET | `/api/certs/{id}` | `cert show ID` | | `{"id","pem"}` (chain, never the key) |
//! | DELETE | `/api/certs/{id}` | `cert delete ID` | | `{"ok":true}` |
//! | POST | `/api/import` | `import` | `{"cert":"PEM","key":"PEM"\|null,"kind":"auto"\|"root"\|"server"\|"domain"\|"stir-shaken"\|"client-ca"}` (`key`, `kind` optional) | `{"id","kind","tenant","names","not_after","warnings":[{"code","message"}]}` (+ `"ids"` for roots) |
//! | GET | `/api/roots` | `roots` | | `[{"id","subject","not_after"}]` |
//! | GET | `/api/roots/{id}` | `roots show ID` | | `{"id","pem"}` |
//! | DELETE | `/api/roots/{id}` | `roots delete ID` | | `{"ok":true}` |
//! | POST | `/api/roots/delete` | `roots delete ID...` | `{"ids":["ID",...]}` (all or nothing) | `{"ok":true}` |
//! | POST | `/api/roots/reset` | `roots reset` | | `{"ok":true}` |
//! | GET | `/api/tenants` | `tenant list` | | `[{"name","dns":[...]}]` |
//! | POST | `/api/tenants` | `tenant add` | `{"name":"NAME","dns":["HOST",...]}` | `{"ok":true}` |
//! | DELETE | `/api/tenants/{name}` | `tenant remove` | | `{"ok":true}` |
//! | GET | `/api/system` | `system show` | | `{"dns","admin_email","default_cert","roots_version","bundled_roots_version","roots_update_available"}` |
//! | POST | `/api/system` | `system set` | `{"dns","admin_email","default_cert"}`, each optional; `"none"` clears | `{"ok":true}` |
//! | GET | `/api/resolve` | `resolve [SNI]` | `?sni=NAME` (omit: a client without SNI) | `{"sni","id","match","tenant"}` |
//! | GET | `/api/stir-shaken/select` | `stir-shaken select` | `?tenant=NAME` | `{"id","match"}` |
//! | POST | `/api/stir-shaken/sign` | `stir-shaken sign` | `{"tenant","orig","dest":["TN",...],"attest":"A"\|"B"\|"C","origid"?,"iat"?}` | `{"identity","cert","x5u","header","payload"}` |
//! | POST | `/api/stir-shaken/verify` | `stir-shaken verify` | `{"identity","orig","dest","now"?}` | `{"verstat","reason"?:{"code","text"},"error"?:{"code","message"},"attest"?,"origid"?,"x5u"?}` |
//! | POST | `/api/admin/password` | `admin password` | `{"password":"..."}` | `{"ok":true}` |
//! | GET | `/api/acme` | `acme show` | | `{"directory","email","contact","enabled","challenge","eab_kid","eab_hmac","check_interval","profile","account"}` |
//! | POST | `/api/acme` | `acme set` | `{"directory","email","enabled","challenge","eab_kid","eab_hmac","check_interval","profile"}`, each optional | `{"ok":true}` |
//! | GET | `/api/acme/status` | `acme status` | | `[{"key","tenant","names","state","cert_id","not_after","last_error","failures","last_attempt","next_attempt"}]` |
//! | POST | `/api/certs/{id}/reissue` | `cert reissue ID` | | `{"ok":true,"key","names"}` |
//! | POST | `/api/acme/retry` | `acme retry KEY` | `{"key":"system"\|"tenant:NAME"}` | `{"ok":true,"key","names"}` |
//! | GET | `/api/dns` | `dns list` | | `[{"name","provider","zone",...}]` (secrets masked) |
//! | POST | `/api/dns` | `dns add` | `{"name","provider":"rfc2136"\|"cloudflare"\|"digitalocean","zone","server","tsig_name","tsig_algorithm","tsig_secret"}` or `{..,"token","api_base"?}` | `{"ok":true}` |
//! | DELETE | `/api/dns/{name}` | `dns remove` | | `{"ok":true}` |
//! | GET | `/api/dns/settings` | `dns propagation` | | `{"propagation_timeout","propagation_interval","check_ns"}` |
//! | POST | `/api/dns/settings` | `dns set` | `{"propagation_timeout","propagation_interval","check_ns"}` (seconds, bool; each optional) | `{"propagation_timeout","propagation_interval","check_ns"}` |
//! | POST | `/api/csr` | `csr` | `{"names":["HOST",...],"key_type":"p256"}` | `{"csr","names","key_type","key_id"}` |
//! | GET | `/api/csr/keys` | `csr-keys list` | | `[{"key_id","names","key_type","created"}]` |
//! | DELETE | `/api/csr/keys/{id}` | `csr-keys delete ID` | | `{"key_id","names","key_type","created"}` |
//! | GET | `/api/ca` | `ca show` | | `{"id","subject","not_after","pem"}` |
//! | POST | `/api/ca/init` | `ca init` | | as `GET /api/ca` |
//! | POST | `/api/ca/issue` | `ca issue` | `{"tenant":"NAME","client":false}` | as `/api/import` |
//!
//! IDs are full IDs or unique prefixes of at least 8 hex digits, as on the CLI.
//!
//! Errors are `{"error":{"code","message"}}` with the CLI's codes and status:
//! 400 for import-rule failures (`bad-pem`, `key-mismatch`, ...) and other
//! refused input (`bad-name`, `ambiguous-id`, `bad-request` for malformed
//! JSON, a bad ID or a missing parameter), 401 `unauthenticated`, 403 `csrf` /
//! `cross-site` / `password-required`, 404 `not-found` / `no-such-tenant` /
//! `no-such-route`, 405 `method-not-allowed`, 409 `tenant-in-use` /
//! `tenant-exists` / `dns-name-taken`, 413 `too-large` (request body),
//! 415 `unsupported-media-type`, 429 `rate-limited` (with `Retry-After`),
//! 503 `busy` (login checks, with `Retry-After`) / `store-locked`, 500 other
//! store failures.
//!
//! What must hold: each route maps to exactly one `ops::Command`, so the API
//! cannot drift from the CLI; writes go through `Shared::execute_async`.

use std::net::IpAddr;

use serde::Deserialize;

use super::form::{decode_path, Form};
use super::msg::{Req, Resp};
use crate::daemon::Shared;
use crate::error::Error;
use crate::ops::{bad_id_message, valid_id, Command};
use crate::pki::KindRequest;
use crate::session::WebState;

/// An API route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiRoute {
    /// `GET /api/certs`
    Certs,
    /// `GET /api/served`
    Served,
    /// `GET /api/handshakes[?listener=L]`
    Handshakes(Option<String>),
    /// `GET /api/certs/{id}`
    CertShow(String),
    /// `DELETE /api/certs/{id}`
    CertDelete(String),
    /// `POST /api/import`
    Import,
    /// `GET /api/roots`
    Roots,
    /// `GET /api/roots/{id}`
    RootShow(String),
    /// `DELETE /api/roots/{id}`
    RootDelete(String),
    /// `POST /api/roots/delete`
    RootsDelete,
    /// `POST /api/roots/reset`
    RootsReset,
    /// `GET /api/tenants`
    Tenants,
    /// `POST /api/tenants`
    TenantAdd,
    /// `DELETE /api/tenants/{name}`
    TenantRemove(String),
    /// `POST /api/tenants/{name}` (`tenant set`)
    TenantSet(String),
    /// `GET /api/system`
    System,
    /// `POST /api/system`
    SystemSet,
    /// `GET /api/resolve[?sni=NAME][&local_address=ADDR]`
    Resolve(Option<String>, Option<IpAddr>),
    /// `GET /api/stir-shaken/select?tenant=NAME`
    StirSelect(String),
    /// `POST /api/stir-shaken/sign`
    StirSign,
    /// `POST /api/stir-shaken/verify`
    StirVerify,
    /// `POST /api/admin/password`
    AdminPassword,
    /// `GET /api/acme`
    AcmeShow,
    /// `POST /api/acme`
    AcmeSet,
    /// `GET /api/acme/status`
    AcmeStatus,
    /// `POST /api/certs/{id}/reissue`
    CertReissue(String),
    /// `POST /api/acme/retry`
    AcmeRetry,
    /// `GET /api/dns/settings` (`dns propagation`)
    DnsPropagation,
    /// `GET /api/csr/keys`
    CsrKeys,
    /// `DELETE /api/csr/keys/{id}`
    CsrKeyDelete(String),
    /// `GET /api/dns`
    DnsList,
    /// `POST /api/dns`
    DnsAdd,
    /// `DELETE /api/dns/{name}`
    DnsRemove(String),
    /// `POST /api/dns/settings`
    DnsSet,
    /// `POST /api/csr`
    Csr,
    /// `GET /api/ca`
    CaShow,
    /// `POST /api/ca/init`
    CaInit,
    /// `POST /api/ca/issue`
    CaIssue,
    /// `GET /api/alerts`
    Alerts,
    /// A malformed request (bad ID, missing parameter): 400.
    Bad(String),
    /// No such route: 404.
    NotFound,
    /// The route exists, not with this method: 405.
    MethodNotAllowed,
}

/// Map method, path (after `/api`) and query to a route.
pub fn route(method: &str, path: &str, query: Option<&str>) -> ApiRoute {
    let method = if method == "HEAD" { "GET" } else { method };
    let query = match Form::parse(query.unwrap_or("").as_bytes()) {
        Ok(q) => q,
        Err(e) => return ApiRoute::Bad(e.to_string()),
    };
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let id = |raw: &str, make: fn(String) -> ApiRoute| match valid_id(raw) {
        Some(id) => make(id),
        None => ApiRoute::Bad(bad_id_message()),
    };
    let pick = |options: &[(&str, ApiRoute)]| {
        options
            .iter()
            .find(|(m, _)| *m == method)
            .map(|(_, r)| r.clone())
            .unwrap_or(ApiRoute::MethodNotAllowed)
    };
    match segments.as_slice() {
        ["certs"] => pick(&[("GET", ApiRoute::Certs)]),
        ["served"] => pick(&[("GET", ApiRoute::Served)]),
        ["handshakes"] => pick(&[(
            "GET",
            ApiRoute::Handshakes(query.get("listener").map(str::to_owned)),
        )]),
        ["certs", raw] => match method {
            "GET" => id(raw, ApiRoute::CertShow),
            "DELETE" => id(raw, ApiRoute::CertDelete),
            _ => ApiRoute::MethodNotAllowed,
        },
        ["certs", raw, "reissue"] => match method {
            "POST" => id(raw, ApiRoute::CertReissue),
            _ => ApiRoute::MethodNotAllowed,
        },
        ["acme"] => pick(&[("GET", ApiRoute::AcmeShow), ("POST", ApiRoute::AcmeSet)]),
        ["acme", "status"] => pick(&[("GET", ApiRoute::AcmeStatus)]),
        ["acme", "retry"] => pick(&[("POST", ApiRoute::AcmeRetry)]),
        ["import"] => pick(&[("POST", ApiRoute::Import)]),
        ["roots"] => pick(&[("GET", ApiRoute::Roots)]),
        ["roots", "delete"] => pick(&[("POST", ApiRoute::RootsDelete)]),
        ["roots", "reset"] => pick(&[("POST", ApiRoute::RootsReset)]),
        ["roots", raw] => match method {
            "GET" => id(raw, ApiRoute::RootShow),
            "DELETE" => id(raw, ApiRoute::RootDelete),
            _ => ApiRoute::MethodNotAllowed,
        },
        ["tenants"] => pick(&[("GET", ApiRoute::Tenants), ("POST", ApiRoute::TenantAdd)]),
        ["tenants", raw] => match (method, decode_path(raw)) {
            ("DELETE", Ok(name)) => ApiRoute::TenantRemove(name),
            ("POST", Ok(name)) => ApiRoute::TenantSet(name),
            ("DELETE" | "POST", Err(e)) => ApiRoute::Bad(e.to_string()),
            _ => ApiRoute::MethodNotAllowed,
        },
        ["system"] => pick(&[("GET", ApiRoute::System), ("POST", ApiRoute::SystemSet)]),
        ["resolve"] => match query.get("local_address").map(str::parse::<IpAddr>) {
            Some(Err(_)) => ApiRoute::Bad("local_address must be an IP address".into()),
            local => pick(&[(
                "GET",
                ApiRoute::Resolve(
                    query.get("sni").map(str::to_owned),
                    local.and_then(Result::ok),
                ),
            )]),
        },
        ["stir-shaken", "select"] => match (method, query.get("tenant")) {
            ("GET", Some(t)) => ApiRoute::StirSelect(t.to_owned()),
            ("GET", None) => ApiRoute::Bad("give the tenant: ?tenant=NAME".into()),
            _ => ApiRoute::MethodNotAllowed,
        },
        ["stir-shaken", "sign"] => pick(&[("POST", ApiRoute::StirSign)]),
        ["stir-shaken", "verify"] => pick(&[("POST", ApiRoute::StirVerify)]),
        ["admin", "password"] => pick(&[("POST", ApiRoute::AdminPassword)]),
        ["dns"] => pick(&[("GET", ApiRoute::DnsList), ("POST", ApiRoute::DnsAdd)]),
        ["dns", "settings"] => pick(&[
            ("GET", ApiRoute::DnsPropagation),
            ("POST", ApiRoute::DnsSet),
        ]),
        ["dns", raw] => match (method, decode_path(raw)) {
            ("DELETE", Ok(name)) => ApiRoute::DnsRemove(name),
            ("DELETE", Err(e)) => ApiRoute::Bad(e.to_string()),
            _ => ApiRoute::MethodNotAllowed,
        },
        ["csr"] => pick(&[("POST", ApiRoute::Csr)]),
        ["csr", "keys"] => pick(&[("GET", ApiRoute::CsrKeys)]),
        ["csr", "keys", raw] => match method {
            "DELETE" => id(raw, ApiRoute::CsrKeyDelete),
            _ => ApiRoute::MethodNotAllowed,
        },
        ["ca"] => pick(&[("GET", ApiRoute::CaShow)]),
        ["ca", "init"] => pick(&[("POST", ApiRoute::CaInit)]),
        ["ca", "issue"] => pick(&[("POST", ApiRoute::CaIssue)]),
        ["alerts"] => pick(&[("GET", ApiRoute::Alerts)]),
        _ => ApiRoute::NotFound,
    }
}

/// The HTTP status for an operation's error (by its stable code, so errors
/// relayed from elsewhere map the same way).
pub fn status_of(e: &Error) -> u16 {
    status_of_code(e.code_str())
}

/// The HTTP status for an error code.
pub fn status_of_code(code: &str) -> u16 {
    match code {
        "not-found" | "no-such-tenant" | "no-such-dns-provider" | "no-ca" => 404,
        "tenant-in-use"
        | "tenant-exists"
        | "dns-name-taken"
        | "dns-provider-exists"
        | "ca-exists" => 409,
        "store-locked" | "store-unavailable" => 503,
        "store-conflict" => 409,
        "store-error"
        | "store-corrupt"
        | "store-tls"
        | "store-key-missing"
        | "store-unseal-failed"
        | "store-key-file"
        | "remote"
        | "key-generation-failed" => 500,
        _ => 400,
    }
}

/// `{"error":{...}}` with the status for `e`.
pub fn error_resp(e: &Error) -> Resp {
    Resp::json(status_of(e), &e.to_json())
}

fn bad(message: impl Into<String>) -> Resp {
    Resp::json_error(400, "bad-request", &message.into())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportBody {
    cert: String,
    #[serde(default)]
    key: Option<String>,
    /// Parsed by `KindRequest`'s one `FromStr` (as on the CLI and page).
    #[serde(default)]
    kind: Option<String>,
    /// `import --kind ca --replace`.
    #[serde(default)]
    replace: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantBody {
    name: String,
    #[serde(default)]
    dns: Vec<String>,
    #[serde(default)]
    ip: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SystemBody {
    #[serde(default)]
    dns: Option<String>,
    #[serde(default)]
    admin_email: Option<String>,
    #[serde(default)]
    default_cert: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdsBody {
    ids: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryBody {
    key: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DnsSetBody {
    #[serde(default)]
    propagation_timeout: Option<u64>,
    #[serde(default)]
    propagation_interval: Option<u64>,
    #[serde(default)]
    check_ns: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CsrBody {
    names: Vec<String>,
    /// Parsed by `KeyType`'s one `FromStr` (`unsupported-key-type`, as
    /// on the CLI and the page).
    #[serde(default)]
    key_type: Option<String>,
    /// O, OU, L, ST, C (`localca::CsrSubject`).
    #[serde(default)]
    organization: Option<String>,
    #[serde(default)]
    organizational_unit: Option<String>,
    #[serde(default)]
    locality: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    country: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantSetBody {
    /// All its DNS names from now on (`tenant edit --dns`).
    #[serde(default)]
    dns: Option<Vec<String>>,
    /// All its IP addresses from now on; `[]` none.
    #[serde(default)]
    ip: Option<Vec<String>>,
    #[serde(default)]
    acme_challenge: Option<String>,
    #[serde(default)]
    acme_key_type: Option<String>,
    #[serde(default)]
    acme_profile: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaIssueBody {
    tenant: String,
    /// `ca issue --client`.
    #[serde(default)]
    client: bool,
}

fn dns_add(spec: crate::dns::ProviderSpec) -> Result<Command, Resp> {
    let config = spec.config().map_err(|e| error_resp(&e))?;
    Ok(Command::DnsAdd {
        name: spec.name,
        zone: spec.zone,
        config,
    })
}

/// An administrator-typed word through its type's one `FromStr`.
fn word<T: core::str::FromStr<Err = crate::model::UnknownValue>>(
    raw: Option<String>,
) -> Result<Option<T>, Resp> {
    raw.as_deref()
        .map(crate::ops::parse_word)
        .transpose()
        .map_err(|e| error_resp(&e))
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, Resp> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| bad(format!("the JSON body does not fit: {e}")))
}

fn check_ids(ids: Vec<String>) -> Result<Vec<String>, Resp> {
    if ids.is_empty() {
        return Err(bad("give at least one ID"));
    }
    ids.iter()
        .map(|i| valid_id(i).ok_or_else(|| bad(bad_id_message())))
        .collect()
}

/// The command for a route and body (pure: unit-tested without a store).
pub fn to_command(route: ApiRoute, body: &[u8]) -> Result<Command, Resp> {
    Ok(match route {
        ApiRoute::Certs => Command::Certs,
        ApiRoute::Served => Command::Served,
        ApiRoute::Handshakes(listener) => Command::Handshakes { listener },
        ApiRoute::CertShow(id) => Command::CertShow { id },
        ApiRoute::CertDelete(id) => Command::CertDelete { id },
        ApiRoute::Import => {
            let b: ImportBody = parse(body)?;
            Command::Import {
                cert: b.cert.into_bytes(),
                key: b
                    .key
                    .filter(|k| !k.trim().is_empty())
                    .map(String::into_bytes),
                kind: match b.kind.as_deref().map(str::parse::<KindRequest>) {
                    None => KindRequest::Auto,
                    Some(Ok(kind)) => kind,
                    Some(Err(e)) => return Err(bad(e.to_string())),
                },
                replace: b.replace,
            }
        }
        ApiRoute::Roots => Command::Roots,
        ApiRoute::RootShow(id) => Command::RootsShow { id },
        ApiRoute::RootDelete(id) => Command::RootsDelete { ids: vec![id] },
        ApiRoute::RootsDelete => {
            let b: IdsBody = parse(body)?;
            Command::RootsDelete {
                ids: check_ids(b.ids)?,
            }
        }
        ApiRoute::RootsReset => Command::RootsReset,
        ApiRoute::Tenants => Command::TenantList,
        ApiRoute::TenantAdd => {
            let b: TenantBody = parse(body)?;
            Command::TenantAdd {
                name: b.name,
                dns: b.dns,
                ip: b.ip,
            }
        }
        ApiRoute::TenantRemove(name) => Command::TenantRemove { name },
        ApiRoute::TenantSet(name) => {
            let b: TenantSetBody = parse(body)?;
            Command::TenantSet {
                name,
                dns: b.dns,
                ip: b.ip,
                acme_challenge: word(b.acme_challenge)?,
                acme_key_type: word(b.acme_key_type)?,
                acme_profile: b.acme_profile,
            }
        }
        ApiRoute::System => Command::SystemShow,
        ApiRoute::SystemSet => {
            let b: SystemBody = parse(body)?;
            if let Some(id) = b.default_cert.as_deref() {
                if id != "none" && valid_id(id).is_none() {
                    return Err(bad(bad_id_message()));
                }
            }
            Command::SystemSet {
                dns: b.dns,
                admin_email: b.admin_email,
                default_cert: b.default_cert.map(|d| d.to_ascii_lowercase()),
                aia_fetch: None,
            }
        }
        ApiRoute::Resolve(sni, local_address) => Command::Resolve { sni, local_address },
        ApiRoute::StirSelect(tenant) => Command::StirShakenSelect { tenant },
        ApiRoute::StirSign => Command::StirShakenSign(parse(body)?),
        ApiRoute::StirVerify => Command::StirShakenVerify(parse(body)?),
        ApiRoute::AdminPassword => {
            let b: PasswordBody = parse(body)?;
            Command::AdminPassword {
                password: b.password,
            }
        }
        ApiRoute::AcmeShow => Command::AcmeShow,
        ApiRoute::AcmeStatus => Command::AcmeStatus,
        ApiRoute::AcmeSet => Command::AcmeSet(parse(body)?),
        ApiRoute::CertReissue(id) => Command::CertReissue { id },
        ApiRoute::DnsList => Command::DnsList,
        ApiRoute::DnsAdd => dns_add(parse(body)?)?,
        ApiRoute::DnsRemove(name) => Command::DnsRemove { name },
        ApiRoute::DnsPropagation => Command::DnsPropagation,
        ApiRoute::AcmeRetry => {
            let b: RetryBody = parse(body)?;
            Command::AcmeRetry { key: b.key }
        }
        ApiRoute::CsrKeys => Command::CsrKeys,
        ApiRoute::CsrKeyDelete(key_id) => Command::CsrKeyDelete { key_id },
        ApiRoute::DnsSet => {
            let b: DnsSetBody = parse(body)?;
            Command::DnsSet {
                propagation_timeout: b.propagation_timeout,
                propagation_interval: b.propagation_interval,
                check_ns: b.check_ns,
            }
        }
        ApiRoute::Csr => {
            let b: CsrBody = parse(body)?;
            Command::Csr {
                names: b.names,
                key_type: word(b.key_type)?.unwrap_or(crate::model::KeyType::P256),
                subject: crate::localca::CsrSubject {
                    organization: b.organization,
                    organizational_unit: b.organizational_unit,
                    locality: b.locality,
                    state: b.state,
                    country: b.country,
                },
            }
        }
        ApiRoute::CaShow => Command::CaShow,
        ApiRoute::CaInit => Command::CaInit,
        ApiRoute::CaIssue => {
            let b: CaIssueBody = parse(body)?;
            Command::CaIssue {
                tenant: b.tenant,
                client: b.client,
            }
        }
        ApiRoute::Alerts => Command::Alerts,
        ApiRoute::Bad(message) => return Err(bad(message)),
        ApiRoute::NotFound => {
            return Err(Resp::json_error(
                404,
                "no-such-route",
                "no such API route (see the route list in the README)",
            ))
        }
        ApiRoute::MethodNotAllowed => {
            return Err(Resp::json_error(
                405,
                "method-not-allowed",
                "this API route does not take that method",
            ))
        }
    })
}

/// Answer one API request from `ip` (authentication is already checked).
pub async fn handle(
    shared: &std::sync::Arc<Shared>,
    web: &WebState,
    ip: std::net::IpAddr,
    route: ApiRoute,
    req: &Req,
) -> Resp {
    let command = match to_command(route, &req.body) {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let password = matches!(command, Command::AdminPassword { .. });
    match shared.execute_async(command).await {
        Ok(reply) => {
            if password {
                // A new password ends every browser session and the setup token.
                *shared.setup_token.lock().unwrap_or_else(|p| p.into_inner()) = None;
                web.remove_others("");
                log::info!("web admin: admin password set over the API from {}", ip);
            }
            Resp::json(200, &reply.to_json())
        }
        Err(e) => error_resp(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> String {
        "0123456789abcdef".repeat(4)
    }

    #[test]
    fn routes_map_like_the_cli() {
        let i = id();
        assert_eq!(route("GET", "/certs", None), ApiRoute::Certs);
        assert_eq!(route("HEAD", "/certs", None), ApiRoute::Certs);
        assert_eq!(
            route("GET", &format!("/certs/{}", &i[..8]), None),
            ApiRoute::CertShow(i[..8].into())
        );
        assert_eq!(
            route("DELETE", &format!("/certs/{}", i.to_uppercase()), None),
            ApiRoute::CertDelete(i.clone())
        );
        assert!(matches!(
            route("GET", "/certs/1234567", None),
            ApiRoute::Bad(_)
        ));
        assert!(matches!(
            route("GET", "/certs/zzzzzzzz", None),
            ApiRoute::Bad(_)
        ));
        assert_eq!(route("POST", "/certs", None), ApiRoute::MethodNotAllowed);
        assert_eq!(route("POST", "/import", None), ApiRoute::Import);
        assert_eq!(route("GET", "/import", None), ApiRoute::MethodNotAllowed);
        assert_eq!(route("POST", "/roots/reset", None), ApiRoute::RootsReset);
        assert_eq!(route("POST", "/roots/delete", None), ApiRoute::RootsDelete);
        assert_eq!(
            route("DELETE", &format!("/roots/{i}"), None),
            ApiRoute::RootDelete(i.clone())
        );
        assert_eq!(route("POST", "/tenants", None), ApiRoute::TenantAdd);
        assert_eq!(route("GET", "/dns", None), ApiRoute::DnsList);
        assert_eq!(route("POST", "/dns", None), ApiRoute::DnsAdd);
        assert_eq!(
            route("DELETE", "/dns/corp", None),
            ApiRoute::DnsRemove("corp".into())
        );
        assert_eq!(route("POST", "/dns/settings", None), ApiRoute::DnsSet);
        assert_eq!(route("POST", "/csr", None), ApiRoute::Csr);
        assert_eq!(
            route("POST", "/tenants/acme", None),
            ApiRoute::TenantSet("acme".into())
        );
        assert!(matches!(
            to_command(
                ApiRoute::TenantSet("acme".into()),
                br#"{"acme_challenge":"tls-alpn-01","acme_key_type":"rsa2048"}"#
            ),
            Ok(Command::TenantSet { .. })
        ));
        assert!(to_command(ApiRoute::TenantSet("acme".into()), br#"{"key":"x"}"#).is_err());
        assert_eq!(route("GET", "/ca", None), ApiRoute::CaShow);
        assert_eq!(route("POST", "/ca/init", None), ApiRoute::CaInit);
        assert_eq!(route("POST", "/ca/issue", None), ApiRoute::CaIssue);
        assert_eq!(route("GET", "/ca/issue", None), ApiRoute::MethodNotAllowed);
        assert!(to_command(
            ApiRoute::DnsAdd,
            br#"{"name":"a","provider":"rfc2136","zone":"x.test"}"#
        )
        .is_err());
        assert!(matches!(
            to_command(
                ApiRoute::DnsAdd,
                br#"{"name":"a","provider":"cloudflare","zone":"x.test","token":"t"}"#
            ),
            Ok(Command::DnsAdd { .. })
        ));
        match to_command(
            ApiRoute::DnsAdd,
            br#"{"name":"d","provider":"digitalocean","zone":"x.test","token":"t"}"#,
        ) {
            Ok(Command::DnsAdd { config, .. }) => assert_eq!(
                config,
                crate::model::ProviderConfig::Digitalocean {
                    token: "t".into(),
                    api_base: "https://api.digitalocean.com/v2".into()
                }
            ),
            _ => panic!("digitalocean not accepted"),
        }
        assert!(to_command(
            ApiRoute::DnsAdd,
            br#"{"name":"d","provider":"digitalocean","zone":"x.test"}"#
        )
        .is_err());
        assert!(matches!(
            to_command(
                ApiRoute::Csr,
                br#"{"names":["a.test"],"key_type":"rsa2048"}"#
            ),
            Ok(Command::Csr { .. })
        ));
        assert_eq!(
            route("DELETE", "/tenants/acme%2Dx", None),
            ApiRoute::TenantRemove("acme-x".into())
        );
        assert_eq!(route("POST", "/system", None), ApiRoute::SystemSet);
        assert_eq!(route("POST", "/acme/retry", None), ApiRoute::AcmeRetry);
        assert_eq!(
            route("GET", "/dns/settings", None),
            ApiRoute::DnsPropagation
        );
        assert_eq!(route("GET", "/csr/keys", None), ApiRoute::CsrKeys);
        let k = "ab".repeat(32);
        assert_eq!(
            route("DELETE", &format!("/csr/keys/{k}"), None),
            ApiRoute::CsrKeyDelete(k.clone())
        );
        assert!(matches!(
            route("DELETE", "/csr/keys/xyz", None),
            ApiRoute::Bad(_)
        ));
        assert!(matches!(
            to_command(ApiRoute::AcmeRetry, br#"{"key":"system"}"#),
            Ok(Command::AcmeRetry { .. })
        ));
        assert_eq!(
            route("GET", "/resolve", Some("sni=Pbx.Example.COM")),
            ApiRoute::Resolve(Some("Pbx.Example.COM".into()), None)
        );
        assert_eq!(
            route("GET", "/resolve", None),
            ApiRoute::Resolve(None, None)
        );
        assert_eq!(
            route("GET", "/resolve", Some("local_address=192.0.2.10")),
            ApiRoute::Resolve(None, Some("192.0.2.10".parse().unwrap()))
        );
        assert!(matches!(
            route("GET", "/resolve", Some("local_address=pbx")),
            ApiRoute::Bad(_)
        ));
        assert_eq!(
            route("GET", "/stir-shaken/select", Some("tenant=acme")),
            ApiRoute::StirSelect("acme".into())
        );
        assert!(matches!(
            route("GET", "/stir-shaken/select", None),
            ApiRoute::Bad(_)
        ));
        assert_eq!(route("POST", "/stir-shaken/sign", None), ApiRoute::StirSign);
        assert_eq!(
            route("POST", "/stir-shaken/verify", None),
            ApiRoute::StirVerify
        );
        assert_eq!(
            route("GET", "/stir-shaken/sign", None),
            ApiRoute::MethodNotAllowed
        );
        assert!(matches!(
            route("GET", "/resolve", Some("sni=%zz")),
            ApiRoute::Bad(_)
        ));
        assert_eq!(
            route("POST", "/admin/password", None),
            ApiRoute::AdminPassword
        );
        assert_eq!(route("GET", "/nope", None), ApiRoute::NotFound);
        assert_eq!(route("GET", "", None), ApiRoute::NotFound);
    }

    #[test]
    fn acme_routes_map_like_the_cli() {
        let i = id();
        assert_eq!(route("GET", "/acme", None), ApiRoute::AcmeShow);
        assert_eq!(route("POST", "/acme", None), ApiRoute::AcmeSet);
        assert_eq!(route("GET", "/acme/status", None), ApiRoute::AcmeStatus);
        assert_eq!(route("DELETE", "/acme", None), ApiRoute::MethodNotAllowed);
        assert_eq!(
            route("POST", &format!("/certs/{i}/reissue"), None),
            ApiRoute::CertReissue(i.clone())
        );
        assert_eq!(
            route("GET", &format!("/certs/{i}/reissue"), None),
            ApiRoute::MethodNotAllowed
        );
        assert!(matches!(
            route("POST", "/certs/xyz/reissue", None),
            ApiRoute::Bad(_)
        ));
        match to_command(
            ApiRoute::AcmeSet,
            br#"{"enabled":true,"check_interval":60}"#,
        ) {
            Ok(Command::AcmeSet(c)) => {
                assert_eq!(
                    (c.enabled, c.check_interval, c.directory),
                    (Some(true), Some(60), None)
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(to_command(ApiRoute::AcmeSet, br#"{"enabeld":true}"#).is_err());
        assert!(matches!(
            to_command(ApiRoute::AcmeSet, b""),
            Ok(Command::AcmeSet(_))
        ));
    }

    #[test]
    fn bodies_become_commands() {
        let c = to_command(
            ApiRoute::Import,
            br#"{"cert":"C","key":"","kind":"stir-shaken"}"#,
        )
        .unwrap();
        match c {
            Command::Import {
                cert, key, kind, ..
            } => {
                assert_eq!(cert, b"C");
                assert_eq!(key, None);
                assert_eq!(kind, KindRequest::StirShaken);
            }
            other => panic!("{other:?}"),
        }
        let c = to_command(ApiRoute::Import, br#"{"cert":"C","key":"K"}"#).unwrap();
        assert!(
            matches!(c, Command::Import { key: Some(k), kind: KindRequest::Auto, .. } if k == b"K")
        );
        let c = to_command(ApiRoute::SystemSet, b"").unwrap();
        assert!(matches!(
            c,
            Command::SystemSet {
                dns: None,
                admin_email: None,
                default_cert: None,
                aia_fetch: None,
            }
        ));
        let c = to_command(ApiRoute::RootsDelete, br#"{"ids":["ABCDEF0123"]}"#).unwrap();
        assert!(matches!(c, Command::RootsDelete { ids } if ids == vec!["abcdef0123"]));
    }

    #[test]
    fn bad_bodies_are_400_with_a_code() {
        for (route, body) in [
            (ApiRoute::Import, &b"{"[..]),
            (ApiRoute::Import, br#"{"cert":"C","kind":"banana"}"#),
            (ApiRoute::Import, br#"{"cert":"C","extra":1}"#),
            (ApiRoute::Import, br#"{}"#),
            (ApiRoute::TenantAdd, br#"{"dns":["a.example"]}"#),
            (ApiRoute::TenantAdd, br#"{"name":"a","ip":"192.0.2.1"}"#),
            (ApiRoute::RootsDelete, br#"{"ids":[]}"#),
            (ApiRoute::RootsDelete, br#"{"ids":["xyz"]}"#),
            (ApiRoute::SystemSet, br#"{"default_cert":"abc"}"#),
            (ApiRoute::Import, &[0xff, 0xfe][..]),
        ] {
            let r = to_command(route.clone(), body).unwrap_err();
            assert_eq!(r.status, 400, "{route:?} {body:?}");
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(v["error"]["code"], "bad-request");
        }
        assert_eq!(to_command(ApiRoute::NotFound, b"").unwrap_err().status, 404);
        assert_eq!(
            to_command(ApiRoute::MethodNotAllowed, b"")
                .unwrap_err()
                .status,
            405
        );
    }

    #[test]
    fn error_statuses() {
        assert_eq!(status_of(&Error::NotFound("x".into())), 404);
        assert_eq!(status_of(&Error::TenantInUse("t".into(), 1)), 409);
        assert_eq!(status_of(&Error::TenantExists("t".into())), 409);
        assert_eq!(status_of(&Error::BadEmail("x".into())), 400);
        assert_eq!(
            status_of(&Error::Store(crate::store::StoreError::Locked("/x".into()))),
            503
        );
        assert_eq!(status_of_code("key-mismatch"), 400);
        assert_eq!(status_of_code("dns-name-taken"), 409);
        // A clustered store (etcd) that does not answer is not the client's fault.
        assert_eq!(status_of_code("store-unavailable"), 503);
        assert_eq!(status_of_code("store-conflict"), 409);
        assert_eq!(status_of_code("store-key-missing"), 500);
        let r = error_resp(&Error::NoSuchTenant("t".into()));
        assert_eq!(r.status, 404);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["error"]["code"], "no-such-tenant");
    }
}
