//! The plumbing shared by the HTTP+JSON DNS providers (`cloudflare`,
//! `digitalocean`): checking the API base URL, one request with the bearer
//! token, mapping transport failures and HTTP statuses to `DnsError`, and the
//! small helpers both need.
//!
//! Why: both providers talk to an HTTPS API with `Authorization: Bearer
//! TOKEN` and JSON bodies over the client of `acme::http`; only the shape of
//! their answers differs, so only that stays in each provider.
//!
//! What must hold: the token is sent only in the Authorization header to the
//! configured `api_base` (https only, no query) and never logged or put into
//! an error message.

use std::sync::Mutex;

use serde_json::Value;

use super::DnsError;
use crate::dns::{check_api_base, in_zone};
use crate::outbound::{Client, HttpError, Response};

/// The error of an HTTP answer that is not a success: 401 and 403 reject the
/// token, anything else is the server's error.
pub fn status_error(status: u16, why: String) -> DnsError {
    match status {
        401 | 403 => DnsError::Unauthorized(why),
        _ => DnsError::ServerError(why),
    }
}

/// TXT content as an API may return it (quoted or not).
pub fn unquote(s: &str) -> &str {
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s)
}

/// `fqdn` without a trailing dot, lowercase, when it is inside `zone`.
pub fn name_in_zone(fqdn: &str, zone: &str) -> Result<String, DnsError> {
    let name = fqdn.strip_suffix('.').unwrap_or(fqdn).to_ascii_lowercase();
    if !in_zone(&name, zone) {
        return Err(DnsError::NotInZone(name, zone.to_owned()));
    }
    Ok(name)
}

/// One provider's HTTPS API: base URL, bearer token and client.
pub struct Api {
    /// The provider's name in messages (`Cloudflare`).
    provider: &'static str,
    base: String,
    token: String,
    client: Client,
}

impl Api {
    /// The API of `provider` at `api_base` (checked, at most `max_len`
    /// characters) with `token`, connecting through `client`.
    pub fn new(
        provider: &'static str,
        api_base: &str,
        max_len: usize,
        token: &str,
        client: Client,
    ) -> Result<Self, DnsError> {
        check_api_base(provider, api_base, max_len)?;
        Ok(Api {
            provider,
            base: api_base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            client,
        })
    }

    fn http_error(&self, e: HttpError) -> DnsError {
        let provider = self.provider;
        match e {
            HttpError::Timeout => DnsError::Timeout(format!("{provider} API: {e}")),
            HttpError::BadResponse(_) | HttpError::TooLarge(_) => {
                DnsError::BadResponse(format!("{provider} API: {e}"))
            }
            _ => DnsError::Io(format!("{provider} API: {e}")),
        }
    }

    /// One request to `path` below the base, with the token and `body` as
    /// JSON; the answer whatever its status (transport failures mapped).
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Response, DnsError> {
        let url = format!("{}{path}", self.base);
        let auth = format!("Bearer {}", self.token);
        let mut headers = vec![
            ("Authorization", auth.as_str()),
            ("Accept", "application/json"),
        ];
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        if !body.is_empty() {
            headers.push(("Content-Type", "application/json"));
        }
        self.client
            .request(method, &url, &headers, body.as_bytes())
            .await
            .map_err(|e| self.http_error(e))
    }
}

/// A zone's name servers (`HOST:53`) as the provider last named them.
#[derive(Default)]
pub struct NameServers(Mutex<Vec<String>>);

impl NameServers {
    /// Remember `servers`.
    pub fn set(&self, servers: Vec<String>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = servers;
    }

    /// The servers remembered last.
    pub fn get(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_base_must_be_short_https_without_query() {
        assert!(check_api_base("X", "https://api.example.test/v4", 64).is_ok());
        let e = check_api_base("X", "http://api.example.test/v4", 64).unwrap_err();
        assert_eq!(e.code(), "bad-dns-config");
        assert!(e.to_string().starts_with("X API base http://"));
        assert!(check_api_base("X", "https://api.example.test/v4?a=b", 64).is_err());
        assert!(check_api_base("X", "https://api.example.test/v4", 10).is_err());
    }

    #[test]
    fn statuses_and_names() {
        assert_eq!(status_error(401, "a".into()).code(), "dns-unauthorized");
        assert_eq!(status_error(403, "a".into()).code(), "dns-unauthorized");
        assert_eq!(status_error(500, "a".into()).code(), "dns-server-error");
        assert_eq!(unquote("\"v\""), "v");
        assert_eq!(unquote("v"), "v");
        assert_eq!(
            name_in_zone("_acme-challenge.Example.test.", "example.test").unwrap(),
            "_acme-challenge.example.test"
        );
        assert_eq!(
            name_in_zone("other.test", "example.test")
                .unwrap_err()
                .code(),
            "dns-not-in-zone"
        );
    }
}
