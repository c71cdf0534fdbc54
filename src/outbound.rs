//! A small HTTP/1.1 client over smol + futures-rustls whose TLS trust is
//! exactly the store's Root CA list.
//!
//! Why: the PBX as a TLS client must trust what the admin's Root CA list says
//! (issue 5; tests prove it by importing pebble's root), not a bundled list of
//! the TLS library; and hyper/tokio would double the runtime on a small
//! appliance. One request per connection (`Connection: close`), bounded in
//! time and size; used by the ACME client (RFC 8555 §6.1: HTTPS only) through
//! instant-acme's `HttpClient` trait, and through `request` by the
//! Cloudflare and DigitalOcean DNS APIs (`dns01`). Layer 4: it needs the
//! store (for the Root CA list) and nothing above it.
//!
//! What must hold: nothing from the network panics; every failure is an
//! `HttpError` with a stable code; response heads, bodies, header counts and
//! time are bounded by `limits::CLIENT_*`; the `Host` header carries the port
//! when it is not the scheme's default (pebble builds its URLs from it).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures_rustls::TlsConnector;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use smol::future::FutureExt as _;
use smol::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::limits::{
    CLIENT_CONNECT_TIMEOUT, CLIENT_MAX_HEAD, CLIENT_MAX_HEADERS, CLIENT_MAX_RESPONSE,
    CLIENT_REQUEST_TIMEOUT,
};

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The URL is not `http(s)://host[:port]/path`.
    BadUrl(String),
    /// DNS or TCP connection failed.
    Connect(String),
    /// The TLS handshake failed (e.g. the server's certificate is not trusted
    /// by the Root CA list).
    Tls(String),
    /// Reading or writing failed.
    Io(String),
    /// The response is not HTTP/1.x as expected.
    BadResponse(String),
    /// The response head or body exceeded a limit.
    TooLarge(&'static str),
    /// No answer in `CLIENT_REQUEST_TIMEOUT`.
    Timeout,
    /// The Root CA list is empty or unusable.
    NoRoots,
    /// The Root CA list could not be read from the store.
    Store(String),
}

impl HttpError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            HttpError::BadUrl(_) => "bad-url",
            HttpError::Connect(_) => "connect-failed",
            HttpError::Tls(_) => "tls-failed",
            HttpError::Io(_) => "io-failed",
            HttpError::BadResponse(_) => "bad-response",
            HttpError::TooLarge(_) => "response-too-large",
            HttpError::Timeout => "timeout",
            HttpError::NoRoots => "no-roots",
            HttpError::Store(_) => "store-error",
        }
    }
}

impl core::fmt::Display for HttpError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            HttpError::BadUrl(u) => write!(f, "bad URL {u}"),
            HttpError::Connect(e) => write!(f, "cannot connect: {e}"),
            HttpError::Tls(e) => write!(f, "TLS failed: {e}"),
            HttpError::Io(e) => write!(f, "connection failed: {e}"),
            HttpError::BadResponse(e) => write!(f, "bad HTTP response: {e}"),
            HttpError::TooLarge(what) => write!(f, "HTTP response {what} too large"),
            HttpError::Timeout => f.write_str("no HTTP response in time"),
            HttpError::NoRoots => f.write_str("the Root CA list has no usable root"),
            HttpError::Store(e) => write!(f, "cannot read the Root CA list: {e}"),
        }
    }
}

impl std::error::Error for HttpError {}

/// A complete response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header names (lowercase) and values, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl Response {
    /// First value of a header (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}

/// The parts of a URL the client needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `https` when true.
    pub tls: bool,
    /// Host name or IP (IPv6 without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Url {
    /// Parse `http(s)://host[:port][/path]`.
    pub fn parse(url: &str) -> Result<Url, HttpError> {
        let bad = || HttpError::BadUrl(url.chars().take(200).collect());
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(bad());
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        if authority.contains('@') || authority.is_empty() {
            return Err(bad());
        }
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(bad)?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad())?,
                None if after.is_empty() => default_port,
                None => return Err(bad()),
            };
            (h.to_owned(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), p.parse().map_err(|_| bad())?),
                None => (authority.to_owned(), default_port),
            }
        };
        if host.is_empty() || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(bad());
        }
        Ok(Url {
            tls,
            host,
            port,
            path,
        })
    }

    /// The `Host` header value: with the port unless it is the default.
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == if self.tls { 443 } else { 80 } {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// The client. Cheap to clone; build a new one after the Root CA list changes.
#[derive(Clone)]
pub struct Client {
    tls: TlsConnector,
    /// The last `Retry-After` seen, in seconds (RFC 8555 §8.2 polling).
    retry_after: Arc<std::sync::Mutex<Option<u64>>>,
}

impl core::fmt::Debug for Client {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("acme::http::Client")
    }
}

/// The trust anchors of a TLS client that trusts exactly these roots (DER;
/// the Root CA list): roots rustls cannot use are skipped; `None` when none
/// is usable. Also used by `connect` (`--tls-connect`).
pub fn root_cert_store<'a>(roots: impl IntoIterator<Item = &'a [u8]>) -> Option<RootCertStore> {
    let mut store = RootCertStore::empty();
    for der in roots {
        let _ = store.add(CertificateDer::from(der.to_vec()));
    }
    (!store.is_empty()).then_some(store)
}

impl Client {
    /// A client trusting exactly these roots (DER). Roots rustls cannot use
    /// are skipped; none usable is `NoRoots`.
    pub fn with_roots<'a>(roots: impl IntoIterator<Item = &'a [u8]>) -> Result<Client, HttpError> {
        let store = root_cert_store(roots).ok_or(HttpError::NoRoots)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| HttpError::Tls(e.to_string()))?
            .with_root_certificates(store)
            .with_no_client_auth();
        Ok(Client {
            tls: TlsConnector::from(Arc::new(config)),
            retry_after: Arc::default(),
        })
    }

    /// The TLS connector (trusting exactly the client's roots), for other
    /// protocols over TLS (the alert mail's SMTP).
    pub fn tls_connector(&self) -> TlsConnector {
        self.tls.clone()
    }

    /// The last `Retry-After` (delay-seconds form) seen, once.
    pub fn take_retry_after(&self) -> Option<u64> {
        self.retry_after
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// A client trusting exactly the store's Root CA list.
    pub fn from_store(store: &crate::Store) -> Result<Client, HttpError> {
        let roots = store.roots().map_err(|e| HttpError::Store(e.to_string()))?;
        Client::with_roots(roots.iter().map(|(_, der)| der.as_slice()))
    }

    /// One request. `headers` must not include Host, Content-Length or
    /// Connection (the client sets them).
    pub async fn request(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response, HttpError> {
        let url = Url::parse(url)?;
        let work = self.exchange(method, &url, headers, body);
        let timeout = async {
            smol::Timer::after(CLIENT_REQUEST_TIMEOUT).await;
            Err(HttpError::Timeout)
        };
        work.or(timeout).await
    }

    async fn exchange(
        &self,
        method: &str,
        url: &Url,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response, HttpError> {
        if !method.bytes().all(|b| b.is_ascii_uppercase())
            || headers.iter().any(|(n, v)| {
                n.bytes().any(|b| !b.is_ascii_graphic() || b == b':')
                    || v.bytes().any(|b| b == b'\r' || b == b'\n')
            })
        {
            return Err(HttpError::BadUrl("bad method or header".into()));
        }
        let connect = smol::net::TcpStream::connect((url.host.as_str(), url.port));
        let timeout = async {
            smol::Timer::after(CLIENT_CONNECT_TIMEOUT).await;
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connect timed out",
            ))
        };
        let tcp = connect
            .or(timeout)
            .await
            .map_err(|e| HttpError::Connect(format!("{}:{}: {e}", url.host, url.port)))?;
        let _ = tcp.set_nodelay(true);
        let mut head = format!(
            "{method} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            url.path,
            url.host_header()
        );
        for (n, v) in headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        if !body.is_empty() || method == "POST" || method == "PUT" {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let raw = if url.tls {
            let name = ServerName::try_from(url.host.clone())
                .map_err(|_| HttpError::BadUrl(url.host.clone()))?;
            let mut tls = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(|e| HttpError::Tls(e.to_string()))?;
            send_and_read(&mut tls, head.as_bytes(), body).await?
        } else {
            let mut tcp = tcp;
            send_and_read(&mut tcp, head.as_bytes(), body).await?
        };
        parse_response(&raw, method == "HEAD")
    }
}

async fn send_and_read<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    head: &[u8],
    body: &[u8],
) -> Result<Vec<u8>, HttpError> {
    let io = |e: std::io::Error| HttpError::Io(e.to_string());
    stream.write_all(head).await.map_err(io)?;
    stream.write_all(body).await.map_err(io)?;
    stream.flush().await.map_err(io)?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                if raw.len() + n > CLIENT_MAX_RESPONSE + CLIENT_MAX_HEAD {
                    return Err(HttpError::TooLarge("body"));
                }
                raw.extend_from_slice(buf.get(..n).unwrap_or_default());
                // A complete response ends the read early (servers that keep
                // the connection open despite `Connection: close`).
                if let Ok(Some(_)) = complete_len(&raw) {
                    break;
                }
            }
            // A peer closing without TLS close_notify: what we have is judged by its framing.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(io(e)),
        }
    }
    Ok(raw)
}

/// When the head and a Content-Length body are complete, their total length.
fn complete_len(raw: &[u8]) -> Result<Option<usize>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; CLIENT_MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(raw) {
        Ok(httparse::Status::Complete(n)) => {
            let len = resp
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok())
                .and_then(|v| v.trim().parse::<usize>().ok());
            Ok(len.and_then(|l| (raw.len() >= n + l).then_some(n + l)))
        }
        _ => Ok(None),
    }
}

/// Parse a whole HTTP/1.x response (head + body framed by Content-Length,
/// chunked encoding or the end of the connection).
pub fn parse_response(raw: &[u8], head_only: bool) -> Result<Response, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; CLIENT_MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let n = match resp.parse(raw) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if raw.len() > CLIENT_MAX_HEAD => {
            return Err(HttpError::TooLarge("head"))
        }
        Ok(httparse::Status::Partial) => {
            return Err(HttpError::BadResponse(
                "connection closed before the end of the head".into(),
            ))
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::TooLarge("header count")),
        Err(e) => return Err(HttpError::BadResponse(e.to_string())),
    };
    if n > CLIENT_MAX_HEAD {
        return Err(HttpError::TooLarge("head"));
    }
    let status = resp.code.unwrap_or(0);
    let headers: Vec<(String, Vec<u8>)> = resp
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
        .collect();
    let rest = raw.get(n..).unwrap_or_default();
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    };
    let body = if head_only || status == 204 || status == 304 || (100..200).contains(&status) {
        Vec::new()
    } else if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case(b"chunked")) {
        dechunk(rest)?
    } else if let Some(len) = get("content-length") {
        let len: usize = std::str::from_utf8(len)
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| HttpError::BadResponse("bad Content-Length".into()))?;
        if len > CLIENT_MAX_RESPONSE {
            return Err(HttpError::TooLarge("body"));
        }
        rest.get(..len)
            .ok_or_else(|| HttpError::BadResponse("body shorter than Content-Length".into()))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    if body.len() > CLIENT_MAX_RESPONSE {
        return Err(HttpError::TooLarge("body"));
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, HttpError> {
    let bad = || HttpError::BadResponse("bad chunked encoding".into());
    let mut out = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n").ok_or_else(bad)?;
        let line = std::str::from_utf8(rest.get(..line_end).ok_or_else(bad)?).map_err(|_| bad())?;
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| bad())?;
        rest = rest.get(line_end + 2..).ok_or_else(bad)?;
        if size == 0 {
            return Ok(out);
        }
        if out.len().saturating_add(size) > CLIENT_MAX_RESPONSE {
            return Err(HttpError::TooLarge("body"));
        }
        out.extend_from_slice(rest.get(..size).ok_or_else(bad)?);
        rest = rest.get(size + 2..).ok_or_else(bad)?;
    }
}

/// instant-acme's transport, on this client.
impl instant_acme::HttpClient for Client {
    fn request(
        &self,
        req: http::Request<instant_acme::BodyWrapper<bytes::Bytes>>,
    ) -> Pin<
        Box<dyn Future<Output = Result<instant_acme::BytesResponse, instant_acme::Error>> + Send>,
    > {
        let client = self.clone();
        Box::pin(async move {
            use http_body_util::BodyExt as _;
            let (parts, body) = req.into_parts();
            let body = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(never) => match never {},
            };
            let url = parts.uri.to_string();
            let headers: Vec<(String, String)> = parts
                .headers
                .iter()
                .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
                .collect();
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            let resp = client
                .request(parts.method.as_str(), &url, &headers, &body)
                .await
                .map_err(|e| instant_acme::Error::Other(Box::new(e)))?;
            // Only ACME POSTs (polls, orders) carry a Retry-After that
            // paces us (RFC 8555 §7.4, §6.6); a GET's would be stale.
            if let Some(secs) = (parts.method == http::Method::POST)
                .then(|| resp.header("retry-after"))
                .flatten()
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
            {
                *client.retry_after.lock().unwrap_or_else(|p| p.into_inner()) = Some(secs);
            }
            let mut builder = http::Response::builder().status(resp.status);
            for (n, v) in &resp.headers {
                builder = builder.header(n.as_str(), v.as_slice());
            }
            let response = builder
                .body(())
                .map_err(|e| instant_acme::Error::Other(Box::new(e)))?;
            let (parts, ()) = response.into_parts();
            Ok(instant_acme::BytesResponse {
                parts,
                body: Box::new(bytes::Bytes::from(resp.body)),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = Url::parse("https://127.0.0.1:14000/dir").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.path.as_str()),
            (true, "127.0.0.1", 14000, "/dir")
        );
        assert_eq!(u.host_header(), "127.0.0.1:14000");
        let u = Url::parse("https://acme.example").unwrap();
        assert_eq!(
            (u.port, u.path.as_str(), u.host_header().as_str()),
            (443, "/", "acme.example")
        );
        let u = Url::parse("http://[::1]:8080/a?b").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.host_header().as_str()),
            ("::1", 8080, "[::1]:8080")
        );
        for bad in [
            "ftp://x/",
            "https://",
            "https://u@h/",
            "https://h:99999/",
            "https://h/a b",
            "https://[::1/",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn responses() {
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nReplay-Nonce: n\r\n\r\nabcdef",
            false,
        )
        .unwrap();
        assert_eq!(
            (r.status, r.body.as_slice(), r.header("replay-nonce")),
            (200, &b"abc"[..], Some(&b"n"[..]))
        );
        let r = parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x\r\nde\r\n0\r\n\r\n", false).unwrap();
        assert_eq!(r.body, b"abcde");
        let r = parse_response(b"HTTP/1.1 201 Created\r\n\r\nall of it", false).unwrap();
        assert_eq!(r.body, b"all of it");
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", true)
                .unwrap()
                .body,
            b""
        );
    }

    #[test]
    fn hostile_responses_are_errors_not_panics() {
        let cases: &[&[u8]] = &[
            b"",
            b"garbage\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
            b"HTTP/1.1 200 OK\r\nX: y",
        ];
        for raw in cases {
            assert!(
                parse_response(raw, false).is_err(),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..=CLIENT_MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(
            parse_response(&many, false).unwrap_err().code(),
            "response-too-large"
        );
    }
}
