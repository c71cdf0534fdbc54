//! The picoserve glue: one connection = one picoserve `Server` whose single
//! service turns each request into owned `Head`/`Req` values, asks a
//! `Handler` for a `Resp`, and writes it with the security headers.
//!
//! Why: picoserve's typed router cannot bound the body per route before it is
//! read, nor check the login before a large upload is accepted. So the handler
//! first sees the head alone (`begin`: answer now, or say how many body bytes
//! it accepts), and only then is the body read, into a buffer of exactly the
//! declared length.
//!
//! Before picoserve parses a head, `HeadScanner` (`head.rs`; run by the
//! socket's read half in `io.rs`) checks it strictly (RFC 9112 §2-§6): one
//! `Content-Length` of plain digits, no `Transfer-Encoding`, no obs-fold, no
//! whitespace before a colon, no control characters, a well-formed request
//! line, at most the head buffer. A refused head is answered by `HeadError`
//! (status, code, a body saying what was wrong, the security headers) and the
//! connection closed before anything after the head is read, so no byte can
//! be taken for a second request (RFC 9112 §11.2). picoserve's own 400s are
//! never sent: every head it parses has passed the scanner.
//!
//! What must hold: a body is never read past the route's limit; a head the
//! scanner accepts frames the same way in picoserve (same end, same
//! `Content-Length`); a connection ends after
//! `HTTP_MAX_REQUESTS_PER_CONNECTION` requests or
//! `HTTP_MAX_CONNECTION_LIFETIME`, whichever comes first.

use std::cell::Cell;
use std::rc::Rc;

use picoserve::io::Read;
use picoserve::request::{Path, Request, RequestParts};
use picoserve::response::{Content, ResponseWriter, StatusCode};
use picoserve::routing::PathRouterService;
use picoserve::{ResponseSent, Timer};
use smol::io::{AsyncRead, AsyncWrite};

use super::io::{SmolSocket, SmolTimer};
use super::msg::{Head, Req, Resp};
use super::{
    HTTP_FIRST_REQUEST_TIMEOUT, HTTP_KEEP_ALIVE_IDLE, HTTP_MAX_CONNECTION_LIFETIME,
    HTTP_MAX_REQUESTS_PER_CONNECTION, HTTP_READ_REQUEST_TIMEOUT, HTTP_WRITE_TIMEOUT,
};

/// What serves the requests of one connection.
pub trait Handler {
    /// What `begin` hands to `finish`.
    type Ctx;

    /// From the head alone: an answer now (`Err`), or a context and the
    /// largest body this request may have.
    async fn begin(&self, head: &Head) -> Result<(Self::Ctx, usize), Resp>;

    /// The answer, with the body read.
    async fn finish(&self, ctx: Self::Ctx, req: Req) -> Resp;

    /// The answer when the declared body exceeds the limit.
    fn too_large(&self, head: &Head, limit: usize) -> Resp;
}

/// A response body of known type and length.
struct Bytes {
    content_type: &'static str,
    data: Vec<u8>,
}

impl Content for Bytes {
    fn content_type(&self) -> &'static str {
        self.content_type
    }

    fn content_length(&self) -> usize {
        self.data.len()
    }

    async fn write_content<W: picoserve::io::Write>(self, mut writer: W) -> Result<(), W::Error> {
        writer.write_all(&self.data).await
    }
}

struct Glue<H> {
    handler: H,
    closing: Rc<Cell<bool>>,
    served: Cell<usize>,
}

/// Copy what the handlers need out of picoserve's borrowed request.
fn head_of(parts: &RequestParts<'_>, content_length: usize) -> Head {
    Head {
        method: parts.method().to_owned(),
        path: parts.path().encoded().to_owned(),
        query: parts.query().map(|q| q.0.to_owned()),
        headers: parts
            .headers()
            .iter()
            .filter_map(|(name, value)| {
                Some((
                    name.as_str().ok()?.to_ascii_lowercase(),
                    value.as_str().ok()?.to_owned(),
                ))
            })
            .collect(),
        content_length,
    }
}

impl<H: Handler> PathRouterService<()> for Glue<H> {
    async fn call_path_router_service<R: Read, W: ResponseWriter<Error = R::Error>>(
        &self,
        _state: &(),
        _path_parameters: (),
        _path: Path<'_>,
        request: Request<'_, R>,
        response_writer: W,
    ) -> Result<ResponseSent, W::Error> {
        let Request {
            parts,
            mut body_connection,
        } = request;
        let head = head_of(&parts, body_connection.content_length());
        let is_head = head.method == "HEAD";
        let mut body_read = head.content_length == 0;
        let mut resp = match self.handler.begin(&head).await {
            Err(resp) => resp,
            Ok((_, limit)) if head.content_length > limit => self.handler.too_large(&head, limit),
            Ok((ctx, _)) => {
                let mut body = vec![0u8; head.content_length];
                let read = body_connection.body().reader().read_exact(&mut body).await;
                match read {
                    Ok(()) => {
                        body_read = true;
                        self.handler.finish(ctx, Req { head, body }).await
                    }
                    Err(picoserve::io::ReadExactError::UnexpectedEof) => {
                        Resp::text(400, "the request body ended early\n")
                    }
                    Err(picoserve::io::ReadExactError::Other(e)) => return Err(e),
                }
            }
        };
        let served = self.served.get().saturating_add(1);
        self.served.set(served);
        let wants_close = resp
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        if !body_read || served >= HTTP_MAX_REQUESTS_PER_CONNECTION || wants_close {
            // Reads now end the stream: picoserve skips any unread body and
            // stops after this response.
            self.closing.set(true);
            if !wants_close {
                resp.headers.push(("Connection", "close".into()));
            }
        }
        resp.finish_headers();
        let Resp {
            status,
            content_type,
            headers,
            mut body,
        } = resp;
        if is_head {
            body.clear();
        }
        let response = picoserve::response::Response::new(
            StatusCode::new(status),
            Bytes {
                content_type,
                data: body,
            },
        )
        .with_headers(headers.as_slice());
        let connection = body_connection.finalize().await?;
        response_writer.write_response(connection, response).await
    }
}

fn pico(d: std::time::Duration) -> picoserve::time::Duration {
    picoserve::time::Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// picoserve's configuration: the timeouts, keep-alive on.
pub fn config() -> picoserve::Config {
    picoserve::Config::new(picoserve::Timeouts {
        start_read_request: pico(HTTP_FIRST_REQUEST_TIMEOUT),
        persistent_start_read_request: pico(HTTP_KEEP_ALIVE_IDLE),
        read_request: pico(HTTP_READ_REQUEST_TIMEOUT),
        write: pico(HTTP_WRITE_TIMEOUT),
    })
    .keep_connection_alive()
}

/// Serve one connection until it closes, fails or reaches its lifetime.
pub async fn serve<S, H>(stream: S, handler: H, head_buffer: usize)
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Handler,
{
    let socket = SmolSocket::new(stream, head_buffer);
    let router = picoserve::Router::from_service(Glue {
        handler,
        closing: socket.closing(),
        served: Cell::new(0),
    });
    let config = config();
    let mut buffer = vec![0u8; head_buffer];
    let server = picoserve::Server::custom(&router, SmolTimer, &config, &mut buffer);
    match SmolTimer
        .run_with_timeout(pico(HTTP_MAX_CONNECTION_LIFETIME), server.serve(socket))
        .await
    {
        Ok(Ok(info)) => log::debug!(
            "http connection closed after {} request(s)",
            info.handled_requests_count
        ),
        Ok(Err(e)) => log::debug!("http connection ended: {e}"),
        Err(_) => log::debug!("http connection reached its lifetime limit"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head::*;

    const LIMIT: usize = 256;

    /// The scan of a whole input, and the same input fed one byte per read
    /// (both must agree).
    fn scan_all(input: &[u8]) -> Scan {
        let whole = scan_fed(input, input.len().max(1));
        assert_eq!(
            whole,
            scan_fed(input, 1),
            "{:?}",
            String::from_utf8_lossy(input)
        );
        whole
    }

    fn scan_fed(input: &[u8], step: usize) -> Scan {
        let mut scanner = HeadScanner::default();
        let mut buf: Vec<u8> = Vec::new();
        let mut fed = 0;
        loop {
            match scanner.scan(&buf, LIMIT) {
                Scan::Skip(n) => {
                    buf.drain(..n);
                }
                Scan::NeedMore if fed < input.len() => {
                    let next = (fed + step).min(input.len());
                    buf.extend_from_slice(&input[fed..next]);
                    fed = next;
                }
                other => return other,
            }
        }
    }

    fn refused(input: &str) -> HeadError {
        match scan_all(input.as_bytes()) {
            Scan::Refused(e) => e,
            other => panic!("{input:?} was not refused: {other:?}"),
        }
    }

    #[test]
    fn good_heads_are_framed_by_content_length() {
        let head = "POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: \t 12 \r\n\r\n";
        assert_eq!(
            scan_all(format!("{head}body").as_bytes()),
            Scan::Complete {
                head: head.len(),
                body: 12
            }
        );
        let head: &[u8] = b"GET / HTTP/1.0\nX-A: b\x80\xff \"q\"\n\n";
        assert_eq!(
            scan_all(head),
            Scan::Complete {
                head: head.len(),
                body: 0
            }
        );
        // Empty lines before the request line are skipped (RFC 9112 §2.2).
        let mut scanner = HeadScanner::default();
        assert_eq!(scanner.scan(b"\r\n\nGET", LIMIT), Scan::Skip(3));
        assert_eq!(scanner.scan(b"\r", LIMIT), Scan::NeedMore);
        let head = "GET / HTTP/1.1\r\nContent-Length: 007\r\n\r\n";
        assert_eq!(
            scan_all(head.as_bytes()),
            Scan::Complete {
                head: head.len(),
                body: 7
            }
        );
    }

    #[test]
    fn framing_that_could_be_read_two_ways_is_refused() {
        use HeadError::*;
        let cases: &[(&str, HeadError)] = &[
            ("Transfer-Encoding: chunked", TransferEncoding),
            ("transfer-encoding: identity", TransferEncoding),
            ("TRANSFER-ENCODING: CHUNKED", TransferEncoding),
            (
                "Transfer-Encoding: chunked\r\nContent-Length: 5",
                TransferEncodingWithLength,
            ),
            (
                "Content-Length: 5\r\nTransfer-Encoding: chunked",
                TransferEncodingWithLength,
            ),
            ("Transfer-Encoding : chunked", SpaceBeforeColon),
            ("Content-Length\t: 5", SpaceBeforeColon),
            (
                "Content-Length: 5\r\nContent-Length: 6",
                DuplicateContentLength,
            ),
            (
                "Content-Length: 5\r\nContent-Length: 5",
                DuplicateContentLength,
            ),
            ("Content-Length: 5, 5", BadContentLength),
            ("Content-Length: -1", BadContentLength),
            ("Content-Length: +5", BadContentLength),
            ("Content-Length: 1 0", BadContentLength),
            ("Content-Length: 0x5", BadContentLength),
            ("Content-Length:", BadContentLength),
            ("Content-Length: 99999999999999999999999", BadContentLength),
            ("X-A: a\r\n Transfer-Encoding: chunked", ObsFold),
            ("X-A: a\r\n\tb", ObsFold),
            ("Content-Len\0gth: 5", ControlCharacter),
            ("X-A: a\rTransfer-Encoding: chunked", ControlCharacter),
            ("X-A: a\x7f", ControlCharacter),
            ("Host: a\r\nHost: b", DuplicateHost),
            ("No colon here", BadHeaderLine),
            (": empty name", BadHeaderLine),
            ("X(A): b", BadHeaderLine),
        ];
        for (header, error) in cases {
            let input = format!("POST / HTTP/1.1\r\n{header}\r\n\r\nhello");
            assert_eq!(refused(&input), *error, "{header:?}");
        }
    }

    #[test]
    fn bad_request_lines_and_sizes_are_refused() {
        use HeadError::*;
        for line in [
            "GET /",
            "GET  / HTTP/1.1",
            "GET / HTTP/1.1 x",
            "GET /a\tb HTTP/1.1",
            "G(T / HTTP/1.1",
            "GET / FTP/1.0",
            "\x16\x03\x01\x02\x00\x01",
        ] {
            assert_eq!(
                refused(&format!("{line}\r\n\r\n")),
                BadRequestLine,
                "{line:?}"
            );
        }
        assert_eq!(refused("GET / HTTP/2.0\r\n\r\n"), UnsupportedVersion);
        assert_eq!(refused("GET / HTTP/1.1\r\r\n\r\n"), ControlCharacter);
        // Garbage is refused at its first impossible byte, before any LF.
        let mut scanner = HeadScanner::default();
        assert_eq!(
            scanner.scan(b"\x16\x03\x01", LIMIT),
            Scan::Refused(BadRequestLine)
        );
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(LIMIT));
        assert_eq!(refused(&big), TooLarge);
        // Exactly at the limit is fine.
        let at = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(LIMIT - 23));
        assert_eq!(at.len(), LIMIT);
        assert_eq!(
            scan_all(at.as_bytes()),
            Scan::Complete {
                head: LIMIT,
                body: 0
            }
        );
    }

    #[test]
    fn refusals_carry_security_headers_and_close() {
        let text = String::from_utf8(HeadError::TooLarge.response()).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{text}"
        );
        for header in [
            "Connection: close\r\n",
            "X-Frame-Options: DENY\r\n",
            "X-Content-Type-Options: nosniff\r\n",
            "Referrer-Policy: no-referrer\r\n",
            "Content-Security-Policy: default-src 'none'",
            "Content-Length: 23\r\n",
        ] {
            assert!(text.contains(header), "{header}: {text}");
        }
        assert!(text.ends_with("\r\n\r\nrequest head too large\n"), "{text}");
    }

    #[test]
    fn timeouts_are_configured() {
        let c = config();
        assert_eq!(
            c.timeouts.read_request.as_millis(),
            HTTP_READ_REQUEST_TIMEOUT.as_millis() as u64
        );
        assert!(matches!(c.connection, picoserve::KeepAlive::KeepAlive));
    }
}
