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
//!
//! The redirect never sends a browser to a host the PBX does not serve (no
//! open redirect): it keeps the request's `Host` only when that is a name
//! the PBX serves — the system DNS name, a tenant's DNS name, a name (exact
//! or by wildcard) of a stored server or domain certificate, a name of the
//! default certificate (the first-start self-signed one included) — or the
//! IP address this connection reached. Any other host is replaced by the
//! system DNS name, else by the address the connection reached.

use std::net::IpAddr;
use std::sync::Arc;

use super::msg::{Head, Req, Resp};
use super::server::Handler;
use super::MAX_ACME_TOKEN_LEN;
use crate::daemon::Shared;
use crate::names;
use crate::snapshot::{Match, Snapshot};

const CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// The port-80 handler of one connection.
pub struct Plain {
    /// The daemon's state (only the snapshot is read).
    pub shared: Arc<Shared>,
    /// The HTTPS port to redirect to.
    pub https_port: u16,
    /// The local address this connection reached (a redirect target of
    /// last resort, and the only IP address a `Host` may name).
    pub local: Option<IpAddr>,
}

/// Does the PBX serve `name` (normalised) by the snapshot: a tenant's DNS
/// name, a certificate naming it (exact or wildcard), or a name of the
/// default certificate?
pub fn snapshot_serves(snapshot: &Snapshot, name: &str, now: i64) -> bool {
    let r = snapshot.resolve(Some(name), None, now);
    r.tenant.is_some()
        || matches!(r.matched, Match::Domain | Match::Server)
        || r.served
            .is_some_and(|s| s.names.iter().any(|n| names::covers(n, name)))
}

fn ip_host(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// The host to redirect to for a validated `Host` (from `host_without_port`):
/// itself when the PBX serves it (`serves` is asked about normalised DNS
/// names; the system name always counts) or it is the connection's local
/// address; else the system DNS name, else the local address; `None` when
/// there is neither.
pub fn redirect_host(
    host: &str,
    system: Option<&str>,
    local: Option<IpAddr>,
    serves: impl FnOnce(&str) -> bool,
) -> Option<String> {
    let literal = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
    let allowed = match literal.unwrap_or(host).parse::<IpAddr>() {
        Ok(ip) => local
            .filter(|l| l.to_canonical() == ip.to_canonical())
            .map(ip_host),
        Err(_) => names::normalize(host, false)
            .ok()
            .filter(|n| system == Some(n.as_str()) || serves(n)),
    };
    allowed
        .or_else(|| system.map(str::to_owned))
        .or_else(|| local.map(ip_host))
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

/// The answer for one request (pure, for tests): `challenge` looks a token
/// up, `target` turns the validated `Host` into the redirect's host
/// (`redirect_host`).
pub fn answer<'a>(
    head: &Head,
    https_port: u16,
    challenge: impl FnOnce(&str) -> Option<&'a str>,
    target: impl FnOnce(&str) -> Option<String>,
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
    let Some(host) = target(host) else {
        return Resp::text(
            400,
            "this server has no DNS name to redirect to (pbx-certd system set --dns NAME)\n",
        );
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
        let system = if head.path.starts_with(CHALLENGE_PREFIX) {
            None
        } else {
            let shared = self.shared.clone();
            smol::unblock(move || match shared.store().system() {
                Ok(system) => system.dns,
                Err(e) => {
                    log::warn!("port 80: cannot read the system DNS name: {e}");
                    None
                }
            })
            .await
        };
        let now = crate::clock::now();
        Err(answer(
            head,
            self.https_port,
            |t| snapshot.http_challenge(t),
            |host| {
                redirect_host(host, system.as_deref(), self.local, |name| {
                    snapshot_serves(&snapshot, name, now)
                })
            },
        ))
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

    /// Every host kept as it is (for the tests of everything but the host).
    fn same(host: &str) -> Option<String> {
        Some(host.to_owned())
    }

    #[test]
    fn redirects_to_https_keeping_path_and_query() {
        let r = answer(
            &head("GET", "/certs", Some("a=1"), Some("pbx.example:80")),
            443,
            none,
            same,
        );
        assert_eq!(r.status, 301);
        assert_eq!(r.header("location"), Some("https://pbx.example/certs?a=1"));
        let r = answer(
            &head("POST", "/x", None, Some("pbx.example")),
            8443,
            none,
            same,
        );
        assert_eq!(r.status, 308);
        assert_eq!(r.header("location"), Some("https://pbx.example:8443/x"));
        let r = answer(
            &head("GET", "/", None, Some("[::1]:8080")),
            8443,
            none,
            same,
        );
        assert_eq!(r.header("location"), Some("https://[::1]:8443/"));
        let r = answer(
            &head("GET", "http://x/y", None, Some("127.0.0.1:8080")),
            443,
            none,
            same,
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
            let r = answer(&head("GET", "/", None, host), 443, none, same);
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
            same,
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"tok_EN-1.thumb");
        let r = answer(
            &head("GET", "/.well-known/acme-challenge/other", None, None),
            443,
            lookup,
            same,
        );
        assert_eq!(r.status, 404);
        let r = answer(
            &head("GET", "/.well-known/acme-challenge/a%2Fb", None, None),
            443,
            |_| -> Option<&str> { panic!("invalid tokens are not looked up") },
            same,
        );
        assert_eq!(r.status, 404);
        let r = answer(
            &head("POST", "/.well-known/acme-challenge/x", None, None),
            443,
            lookup,
            same,
        );
        assert_eq!(r.status, 405);
    }

    #[test]
    fn redirects_only_to_names_the_pbx_serves() {
        let local: Option<IpAddr> = "192.0.2.7".parse().ok();
        let served = |n: &str| n == "t1.example.com";
        let to = |host: &str, system: Option<&str>| redirect_host(host, system, local, served);
        // Served names and the reached address are kept.
        assert_eq!(
            to("T1.Example.COM.", None).as_deref(),
            Some("t1.example.com")
        );
        assert_eq!(
            to("pbx.example.com", Some("pbx.example.com")).as_deref(),
            Some("pbx.example.com")
        );
        assert_eq!(to("192.0.2.7", None).as_deref(), Some("192.0.2.7"));
        // Anything else goes to the system name, else the reached address.
        for foreign in ["evil.example", "192.0.2.8", "[::1]", "localhost", "127.1"] {
            assert_eq!(
                to(foreign, Some("pbx.example.com")).as_deref(),
                Some("pbx.example.com"),
                "{foreign}"
            );
            assert_eq!(to(foreign, None).as_deref(), Some("192.0.2.7"), "{foreign}");
        }
        let v6: Option<IpAddr> = "::ffff:192.0.2.7".parse().ok();
        assert_eq!(
            redirect_host("192.0.2.7", None, v6, served).as_deref(),
            Some("192.0.2.7")
        );
        let v6: Option<IpAddr> = "2001:db8::1".parse().ok();
        assert_eq!(
            redirect_host("[2001:DB8::1]", None, v6, served).as_deref(),
            Some("[2001:db8::1]")
        );
        assert_eq!(redirect_host("evil.example", None, None, served), None);
        // No name at all: refused, not redirected anywhere.
        let r = answer(
            &head("GET", "/", None, Some("evil.example")),
            443,
            none,
            |_| None,
        );
        assert_eq!(r.status, 400);
        assert!(r.header("location").is_none());
        let r = answer(
            &head("GET", "/x", None, Some("evil.example")),
            443,
            none,
            |h| redirect_host(h, Some("pbx.example.com"), local, served),
        );
        assert_eq!(r.header("location"), Some("https://pbx.example.com/x"));
    }
}
