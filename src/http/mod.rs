//! HTTP on the daemon's listeners: the web admin and JSON API (HTTPS) and the
//! port-80 listener (ACME HTTP-01 challenges, redirect to HTTPS), served with
//! picoserve on smol.
//!
//! Why: the admin page must be reachable on a fresh appliance, work without
//! JavaScript, and never weaken the PBX's keys; the port-80 listener must
//! answer ACME validation and nothing else.
//!
//! Layout: `io` (picoserve's `Socket`/`Timer` for smol), `server` (one
//! connection: owned request values, per-route body limits, security
//! headers), `admin` (routing, login gate, pages), `api` (the JSON API; its
//! doc comment lists the routes), `html` (page rendering), `session`
//! (sessions, CSRF tokens, login rate limit), `form` (urlencoded parsing),
//! `plain` (port 80), `msg` (request/response values).
//!
//! What must hold: each connection is its own task with its own buffers and
//! timeouts, so a slow client only ever holds its own connection; every
//! bound below is a named constant; no handler panics on client input.

use std::net::SocketAddr;
use std::sync::Arc;

use futures_rustls::server::TlsStream;
use smol::net::TcpStream;

use crate::daemon::Shared;

pub mod admin;
pub mod api;
pub mod form;
pub mod head;
pub mod html;
pub mod io;
pub mod msg;
pub mod plain;
mod server;

pub use crate::session::WebState;
pub use admin::Admin;

// The HTTP limits live in `crate::limits` with every other bound.
pub use crate::limits::{
    HTTPS_HEAD_BUFFER_BYTES, HTTP_FIRST_REQUEST_TIMEOUT, HTTP_HEAD_BUFFER_BYTES,
    HTTP_KEEP_ALIVE_IDLE, HTTP_MAX_CONNECTION_LIFETIME, HTTP_MAX_REQUESTS_PER_CONNECTION,
    HTTP_READ_REQUEST_TIMEOUT, HTTP_WRITE_TIMEOUT, LOGIN_FREE_FAILURES, LOGIN_LIMITER_SLOTS,
    LOGIN_LOCKOUT_BASE, LOGIN_LOCKOUT_MAX, LOGIN_LOCKOUT_RESET, MAX_ACME_TOKEN_LEN,
    MAX_FORM_BODY_BYTES, MAX_FORM_FIELDS, MAX_IMPORT_BODY_BYTES, MAX_LOGIN_BODY_BYTES,
    MAX_SESSIONS, SESSION_IDLE, SESSION_MAX_AGE, TOKEN_BYTES,
};

/// Name of the session cookie (`__Host-`: Secure, Path=/, no Domain).
pub const SESSION_COOKIE: &str = "__Host-pbx-certd";

/// One HTTPS connection after the TLS handshake: admin pages + /api/.
pub async fn serve_https(shared: Arc<Shared>, stream: TlsStream<TcpStream>, peer: SocketAddr) {
    let web = shared.web.clone();
    serve_https_with(shared, web, stream, peer).await
}

/// `serve_https` with an explicit session table (tests run several daemons
/// in one process).
pub async fn serve_https_with<S>(
    shared: Arc<Shared>,
    web: Arc<WebState>,
    stream: S,
    peer: SocketAddr,
) where
    S: smol::io::AsyncRead + smol::io::AsyncWrite + Unpin,
{
    let handler = Admin::new(shared, web, peer.ip());
    server::serve(stream, handler, HTTPS_HEAD_BUFFER_BYTES).await
}

/// One plain-HTTP connection on the port-80 listener: ACME challenge answers
/// from the snapshot, everything else redirected to HTTPS.
pub async fn serve_http(shared: Arc<Shared>, stream: TcpStream, https_port: u16) {
    let local = stream.local_addr().ok().map(|a| a.ip());
    let handler = plain::Plain {
        shared,
        https_port,
        local,
    };
    server::serve(stream, handler, HTTP_HEAD_BUFFER_BYTES).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::MAX_BOX_BYTES;

    /// Bytes a browser posts for `text` in an urlencoded form field.
    fn form_encoded_len(text: &str) -> usize {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' | b' ' => 1,
                _ => 3,
            })
            .sum()
    }

    #[test]
    fn import_limit_fits_two_full_pem_boxes() {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut pem = String::from("-----BEGIN CERTIFICATE-----\r\n");
        let mut i = 0usize;
        while pem.len() + 66 + 27 < MAX_BOX_BYTES {
            pem.extend((0..64).map(|j| ALPHABET[(i * 31 + j * 7) % 64] as char));
            pem.push_str("\r\n");
            i += 1;
        }
        pem.push_str("-----END CERTIFICATE-----\r\n");
        assert!(pem.len() <= MAX_BOX_BYTES);
        let body = "csrf=".len() + 43 + "&cert=".len() + "&key=".len() + "&kind=stir-shaken".len();
        let needed = body + 2 * form_encoded_len(&pem);
        assert!(
            needed <= MAX_IMPORT_BODY_BYTES,
            "{needed} > {MAX_IMPORT_BODY_BYTES}"
        );
        // ... and the limit is not much more than that.
        assert!(MAX_IMPORT_BODY_BYTES < needed + needed / 4);
    }
}
