//! The port-80 listener: ACME HTTP-01 challenge answers (RFC 8555 §8.3) from
//! the snapshot, and a redirect to HTTPS for everything else.
//!
//! Why: ACME servers validate over plain HTTP on port 80; nothing else may be
//! served without TLS, and an admin typing `http://pbx/` should land on the
//! HTTPS admin page.
//!
//! What must hold: only the challenge path answers with content; the redirect
//! target is built from a validated `Host` (no header injection, no other
//! scheme); the request body is never read.

use std::sync::Arc;

use super::msg::{Head, Req, Resp};
use super::server::Handler;
use super::MAX_ACME_TOKEN_LEN;
use crate::daemon::Shared;

const CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// The port-80 handler of one connection.
pub struct Plain {
    /// The daemon's state (only the snapshot is read).
    pub shared: Arc<Shared>,
    /// The HTTPS port to redirect to.
    pub https_port: u16,
}

/// The host part of a `Host` header, if it is a DNS name, an IPv4 address or
/// a bracketed IPv6 address (the port is dropped).
pub fn host_without_port(host: &str) -> Option<&str> {
    let host = host.trim();
    let name = if host.starts_with('[') {
        let end = host.find(']')?;
        let (v6, rest) = host.split_at(end + 1);
        if !(rest.is_empty() || rest.starts_with(':')) {
            return None;
        }
        let inner = v6.get(1..v6.len() - 1)?;
        inner.parse::<std::net::Ipv6Addr>().ok()?;
        v6
    } else {
        let name = host.split(':').next()?;
        let ok = !name.is_empty()
            && name.len() <= crate::limits::MAX_DNS_NAME_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
        if !ok {
            return None;
        }
        name
    };
    Some(name)
}

/// A token as ACME makes them: base64url characters.
pub fn valid_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= MAX_ACME_TOKEN_LEN
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The answer for one request (pure, for tests): `challenge` looks a token up.
pub fn answer<'a>(
    head: &Head,
    https_port: u16,
    challenge: impl FnOnce(&str) -> Option<&'a str>,
) -> Resp {
    if let Some(token) = head.path.strip_prefix(CHALLENGE_PREFIX) {
        if !head.is_read() {
            return Resp::text(405, "method not allowed\n").with("Allow", "GET, HEAD");
        }
        return match valid_token(token).then(|| challenge(token)).flatten() {
            Some(key_authorization) => Resp::new(
                200,
                "application/octet-stream",
                key_authorization.to_owned(),
            ),
            None => Resp::text(404, "no such challenge\n"),
        };
    }
    let Some(host) = head.header("host").and_then(host_without_port) else {
        return Resp::text(400, "a Host header naming this server is required\n");
    };
    let path = if head.path.starts_with('/') {
        head.path.as_str()
    } else {
        "/"
    };
    let query = head
        .query
        .as_deref()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let port = if https_port == 443 {
        String::new()
    } else {
        format!(":{https_port}")
    };
    let status = if head.is_read() { 301 } else { 308 };
    Resp::redirect(status, &format!("https://{host}{port}{path}{query}"))
}

impl Handler for Plain {
    type Ctx = ();

    async fn begin(&self, head: &Head) -> Result<((), usize), Resp> {
        let snapshot = self.shared.snapshot();
        Err(answer(head, self.https_port, |t| {
            snapshot.http_challenge(t)
        }))
    }

    async fn finish(&self, _ctx: (), _req: Req) -> Resp {
        Resp::text(500, "unreachable\n")
    }

    fn too_large(&self, _head: &Head, _limit: usize) -> Resp {
        Resp::text(413, "no request bodies here\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(method: &str, path: &str, query: Option<&str>, host: Option<&str>) -> Head {
        Head {
            method: method.into(),
            path: path.into(),
            query: query.map(Into::into),
            headers: host
                .map(|h| vec![("host".to_string(), h.to_string())])
                .unwrap_or_default(),
            content_length: 0,
        }
    }

    fn none(_: &str) -> Option<&'static str> {
        None
    }

    #[test]
    fn redirects_to_https_keeping_path_and_query() {
        let r = answer(
            &head("GET", "/certs", Some("a=1"), Some("pbx.example:80")),
            443,
            none,
        );
        assert_eq!(r.status, 301);
        assert_eq!(r.header("location"), Some("https://pbx.example/certs?a=1"));
        let r = answer(&head("POST", "/x", None, Some("pbx.example")), 8443, none);
        assert_eq!(r.status, 308);
        assert_eq!(r.header("location"), Some("https://pbx.example:8443/x"));
        let r = answer(&head("GET", "/", None, Some("[::1]:8080")), 8443, none);
        assert_eq!(r.header("location"), Some("https://[::1]:8443/"));
        let r = answer(
            &head("GET", "http://x/y", None, Some("127.0.0.1:8080")),
            443,
            none,
        );
        assert_eq!(r.header("location"), Some("https://127.0.0.1/"));
    }

    #[test]
    fn bad_hosts_are_refused() {
        for host in [
            None,
            Some(""),
            Some("a b"),
            Some("evil.com/x"),
            Some("[::1"),
            Some("[zz]"),
            Some("a@b"),
        ] {
            let r = answer(&head("GET", "/", None, host), 443, none);
            assert_eq!(r.status, 400, "{host:?}");
            assert!(r.header("location").is_none());
        }
    }

    #[test]
    fn challenges_come_from_the_lookup() {
        let lookup = |t: &str| (t == "tok_EN-1").then_some("tok_EN-1.thumb");
        let r = answer(
            &head("GET", "/.well-known/acme-challenge/tok_EN-1", None, None),
            443,
            lookup,
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"tok_EN-1.thumb");
        let r = answer(
            &head("GET", "/.well-known/acme-challenge/other", None, None),
            443,
            lookup,
        );
        assert_eq!(r.status, 404);
        let r = answer(
            &head("GET", "/.well-known/acme-challenge/a%2Fb", None, None),
            443,
            |_| -> Option<&str> { panic!("invalid tokens are not looked up") },
        );
        assert_eq!(r.status, 404);
        let r = answer(
            &head("POST", "/.well-known/acme-challenge/x", None, None),
            443,
            lookup,
        );
        assert_eq!(r.status, 405);
    }
}
