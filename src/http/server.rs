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
//! What must hold: a body is never read past the route's limit; requests with
//! `Transfer-Encoding` or a bad `Content-Length` are refused and the
//! connection closed (picoserve frames by `Content-Length` only); a connection
//! ends after `HTTP_MAX_REQUESTS_PER_CONNECTION` requests or
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

/// Framing problems picoserve would misread: refuse them.
pub fn framing_error(head: &Head) -> Option<Resp> {
    if head.header("transfer-encoding").is_some() {
        return Some(Resp::text(
            411,
            "chunked or encoded request bodies are not supported; send Content-Length\n",
        ));
    }
    let lengths: Vec<&str> = head
        .headers
        .iter()
        .filter(|(n, _)| n == "content-length")
        .map(|(_, v)| v.trim())
        .collect();
    let parsed: Vec<Option<usize>> = lengths.iter().map(|v| v.parse().ok()).collect();
    if parsed.iter().any(Option::is_none) || parsed.windows(2).any(|w| w[0] != w[1]) {
        return Some(Resp::text(400, "bad Content-Length\n"));
    }
    None
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
        let mut resp = match framing_error(&head) {
            Some(resp) => resp,
            None => match self.handler.begin(&head).await {
                Err(resp) => resp,
                Ok((_, limit)) if head.content_length > limit => {
                    self.handler.too_large(&head, limit)
                }
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
            },
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
    let socket = SmolSocket::new(stream);
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

    fn head(headers: &[(&str, &str)]) -> Head {
        Head::for_test("POST", headers)
    }

    #[test]
    fn framing_is_checked() {
        assert!(framing_error(&head(&[("content-length", "12")])).is_none());
        assert!(framing_error(&head(&[])).is_none());
        assert_eq!(
            framing_error(&head(&[("transfer-encoding", "chunked")]))
                .unwrap()
                .status,
            411
        );
        assert_eq!(
            framing_error(&head(&[("content-length", "-1")]))
                .unwrap()
                .status,
            400
        );
        assert_eq!(
            framing_error(&head(&[("content-length", "1"), ("content-length", "2")]))
                .unwrap()
                .status,
            400
        );
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
