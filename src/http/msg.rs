//! Owned request and response values, independent of picoserve.
//!
//! Why: handlers work on plain data (`Head`, `Req` → `Resp`), so they can be
//! unit-tested without sockets and picoserve's borrow-heavy types stay in
//! `server.rs`. Every response leaves through `Resp::finish_headers`, which
//! adds the security headers, so no route can forget them.
//!
//! What must hold: header values we emit never contain CR or LF (values
//! built from request data are checked or escaped first).

use std::sync::LazyLock;

use base64ct::{Base64, Encoding};

use super::html::CSS;

/// The request line and headers.
#[derive(Debug, Clone, Default)]
pub struct Head {
    /// Method as sent (`GET`, `POST`, ...).
    pub method: String,
    /// Path, still percent-encoded, without query.
    pub path: String,
    /// Raw query string (after `?`), if any.
    pub query: Option<String>,
    /// Headers, names in lowercase; values that are not UTF-8 are dropped.
    pub headers: Vec<(String, String)>,
    /// Declared body length.
    pub content_length: usize,
}

impl Head {
    /// The first header of this (lowercase) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of a cookie.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == "cookie")
            .flat_map(|(_, v)| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.trim())
    }

    /// `GET` or `HEAD`.
    pub fn is_read(&self) -> bool {
        self.method == "GET" || self.method == "HEAD"
    }

    /// The media type of the body, lowercase, without parameters.
    pub fn media_type(&self) -> String {
        self.header("content-type")
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .unwrap_or_default()
    }
}

/// A request with its body read.
#[derive(Debug, Clone, Default)]
pub struct Req {
    /// Request line and headers.
    pub head: Head,
    /// The body (at most the route's limit).
    pub body: Vec<u8>,
}

/// A response.
#[derive(Debug, Clone)]
pub struct Resp {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Extra headers (security headers are added on the way out).
    pub headers: Vec<(&'static str, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// `script-src` and friends fall back to `default-src 'none'`: the pages run
/// no script at all. The one `<style>` block is allowed by its hash.
pub static CSP: LazyLock<String> = LazyLock::new(|| {
    let hash = ring::digest::digest(&ring::digest::SHA256, CSS.as_bytes());
    format!(
        "default-src 'none'; style-src 'sha256-{}'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        Base64::encode_string(hash.as_ref())
    )
});

impl Resp {
    /// A response with a body.
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Resp {
        Resp {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// `text/html`.
    pub fn html(status: u16, body: String) -> Resp {
        Resp::new(status, "text/html; charset=utf-8", body)
    }

    /// `text/plain`.
    pub fn text(status: u16, body: impl Into<String>) -> Resp {
        Resp::new(status, "text/plain; charset=utf-8", body.into())
    }

    /// `application/json`.
    pub fn json(status: u16, value: &serde_json::Value) -> Resp {
        let mut body = serde_json::to_vec(value).unwrap_or_default();
        body.push(b'\n');
        Resp::new(status, "application/json", body)
    }

    /// `{"error":{"code","message"}}`.
    pub fn json_error(status: u16, code: &str, message: &str) -> Resp {
        Resp::json(
            status,
            &serde_json::json!({"error": {"code": code, "message": message}}),
        )
    }

    /// A redirect to a local path (`303 See Other` after a form, or 301/308).
    pub fn redirect(status: u16, location: &str) -> Resp {
        let location: String = location.chars().filter(|c| !c.is_control()).collect();
        let mut r = Resp::text(status, format!("see {location}\n"));
        r.headers.push(("Location", location));
        r
    }

    /// Add a header.
    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Resp {
        let value: String = value.into().chars().filter(|c| !c.is_control()).collect();
        self.headers.push((name, value));
        self
    }

    /// The value of a header we set.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Add the headers every response carries (a response that set one of
    /// them itself, e.g. the `Cache-Control` of a published x5u chain,
    /// keeps its own).
    pub fn finish_headers(&mut self) {
        let fixed: [(&'static str, &str); 7] = [
            ("Content-Security-Policy", CSP.as_str()),
            ("X-Frame-Options", "DENY"),
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "no-referrer"),
            ("Cache-Control", "no-store"),
            ("Cross-Origin-Opener-Policy", "same-origin"),
            ("Cross-Origin-Resource-Policy", "same-origin"),
        ];
        for (name, value) in fixed {
            if self.header(name).is_none() {
                self.headers.push((name, value.to_owned()));
            }
        }
    }
}

/// The reason phrase of a status we send (RFC 9110 §15; may be empty, RFC
/// 9112 §4).
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        301 => "Moved Permanently",
        303 => "See Other",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

impl Resp {
    /// The response as HTTP/1.1 bytes, for answers written without picoserve
    /// (a refused request head). Call `finish_headers` first.
    pub fn http1(&self) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        );
        for (name, value) in &self.headers {
            head.push_str(name);
            head.push_str(": ");
            head.push_str(value);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

/// Constant-time comparison of secrets (the length is not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
impl Head {
    /// A request head for unit tests.
    pub(crate) fn for_test(method: &str, headers: &[(&str, &str)]) -> Head {
        Head {
            method: method.into(),
            path: "/".into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            ..Head::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(headers: &[(&str, &str)]) -> Head {
        Head::for_test("GET", headers)
    }

    #[test]
    fn cookies_are_parsed() {
        let h = head(&[("cookie", "a=1; __Host-s=xyz ; b=2"), ("cookie", "c=3")]);
        assert_eq!(h.cookie("__Host-s"), Some("xyz"));
        assert_eq!(h.cookie("c"), Some("3"));
        assert_eq!(h.cookie("d"), None);
    }

    #[test]
    fn media_type_ignores_parameters() {
        let h = head(&[("content-type", "Application/JSON; charset=utf-8")]);
        assert_eq!(h.media_type(), "application/json");
        assert_eq!(head(&[]).media_type(), "");
    }

    #[test]
    fn headers_never_carry_line_breaks() {
        let r = Resp::redirect(303, "/x\r\nSet-Cookie: evil=1").with("X-T", "a\nb");
        assert_eq!(r.header("location"), Some("/xSet-Cookie: evil=1"));
        assert_eq!(r.header("x-t"), Some("ab"));
    }

    #[test]
    fn security_headers_are_added() {
        let mut r = Resp::text(200, "hi");
        r.finish_headers();
        let csp = r.header("content-security-policy").unwrap();
        assert!(csp.starts_with("default-src 'none'; style-src 'sha256-"));
        assert!(csp.contains("frame-ancestors 'none'"));
        assert_eq!(r.header("x-frame-options"), Some("DENY"));
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
        assert_eq!(r.header("cache-control"), Some("no-store"));
    }

    #[test]
    fn constant_time_compare() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(ct_eq(b"", b""));
    }
}
