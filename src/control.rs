//! The control socket: how the CLI talks to a running daemon.
//!
//! Why: the daemon holds the store's lock, yet scripts must run the same CLI
//! whether or not the daemon runs. When `Store::open` reports the lock, the
//! CLI sends its `ops::Command` as one JSON line over a Unix socket in the data
//! directory and prints the reply exactly as it would have locally.
//!
//! Protocol: request = one line of JSON (`ops::Command`); reply = one line,
//! `{"ok": VALUE}` or the `{"error":{"code","message"}}` of `Error::to_json`.
//! `VALUE` is the command's typed `ops::Reply` as JSON (`Reply::to_json`,
//! exactly what `--json` prints), with no tag: the client knows which
//! command it sent and decodes it back with `Reply::decode(&command, VALUE)`
//! into the same typed value a local run returns (a reply that does not fit
//! its command is `bad-reply`, never a half-read value).
//!
//! Persistent mode (issue 15): a connection carries any number of requests,
//! one line each, answered one line each in the order sent, so a SIP server
//! signs call after call (`stir-shaken-sign`) over one connection and may
//! pipeline them. The CLI sends one and closes. Bytes after a line's newline
//! are kept for the next request; a clean close between requests, or
//! `CONTROL_IDLE_TIMEOUT` without one, ends the connection quietly; a
//! refused line (`too-large`, `bad-request`, ...) is answered and ends it.
//!
//! What must hold: the socket is mode 0600 inside the 0700 data directory
//! (only the daemon's user can reach it); one slow client does not block
//! others; and no client set can grow the daemon without bound: at most
//! `MAX_CONTROL_CLIENTS` are served at once (more get `busy`), a request line
//! is at most `MAX_CONTROL_REQUEST_BYTES` (`too-large`), all unfinished lines
//! together hold at most `MAX_CONTROL_BUFFERED_BYTES` (a line that would pass
//! it gets `busy`), a request must arrive within `CONTROL_READ_TIMEOUT`
//! (`timeout`; later lines of a persistent client within
//! `CONTROL_IDLE_TIMEOUT`) and each reply is written within
//! `CONTROL_WRITE_TIMEOUT`.

use std::cell::Cell;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use smol::future::FutureExt as _;

use serde_json::{json, Value};

use crate::daemon::Shared;
use crate::error::Error;
use crate::limits::{
    CONTROL_CLIENT_TIMEOUT_SECS, CONTROL_IDLE_TIMEOUT, CONTROL_READ_CHUNK, CONTROL_READ_TIMEOUT,
    CONTROL_WRITE_TIMEOUT, MAX_CONTROL_BATCH, MAX_CONTROL_BUFFERED_BYTES, MAX_CONTROL_CLIENTS,
    MAX_CONTROL_REPLY_BYTES, MAX_CONTROL_REQUEST_BYTES,
};
use crate::ops::{Command, Reply};

/// The socket's file name inside the data directory.
pub const SOCKET_NAME: &str = "control.sock";

/// The socket path for a data directory.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET_NAME)
}

/// Bind the control socket (replacing a stale one: we hold the store lock,
/// so no other daemon can be using it).
pub fn bind(data_dir: &Path) -> std::io::Result<smol::net::unix::UnixListener> {
    let path = socket_path(data_dir);
    let _ = std::fs::remove_file(&path);
    let listener = smol::net::unix::UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Why the daemon refused a control request before running it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// `MAX_CONTROL_CLIENTS` are being served, or the unfinished lines of all
    /// clients would pass `MAX_CONTROL_BUFFERED_BYTES`.
    Busy,
    /// The line is longer than `MAX_CONTROL_REQUEST_BYTES`.
    TooLarge,
    /// The client closed before the end of the line.
    Incomplete,
    /// The line did not arrive within `CONTROL_READ_TIMEOUT`.
    Timeout,
    /// The line is not a command (JSON error), or reading failed.
    BadRequest(String),
}

impl RequestError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            RequestError::Busy => "busy",
            RequestError::TooLarge => "too-large",
            RequestError::Incomplete => "incomplete",
            RequestError::Timeout => "timeout",
            RequestError::BadRequest(_) => "bad-request",
        }
    }

    fn to_json(&self) -> Value {
        let message = match self {
            RequestError::Busy => {
                "the daemon is serving too many control requests; try again".into()
            }
            RequestError::TooLarge => format!(
                "control request larger than {} bytes",
                MAX_CONTROL_REQUEST_BYTES
            ),
            RequestError::Incomplete => "control request ended before its newline".into(),
            RequestError::Timeout => format!(
                "control request not received within {} s",
                CONTROL_READ_TIMEOUT.as_secs()
            ),
            RequestError::BadRequest(why) => format!("bad control request: {why}"),
        };
        json!({"error": {"code": self.code(), "message": message}})
    }
}

/// The bounds all control connections share (one per daemon; cheap to clone).
#[derive(Clone, Default)]
pub struct ControlGate {
    clients: Rc<Cell<usize>>,
    buffered: Rc<Cell<usize>>,
}

/// A control client's place; given back on drop.
struct ClientSlot(Rc<Cell<usize>>);

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

/// Bytes of the shared line budget held by one client; given back on drop.
struct Reserved {
    pool: Rc<Cell<usize>>,
    bytes: usize,
}

impl Reserved {
    fn grow(&mut self, more: usize) -> Result<(), RequestError> {
        let used = self.pool.get();
        if used.saturating_add(more) > MAX_CONTROL_BUFFERED_BYTES {
            return Err(RequestError::Busy);
        }
        self.pool.set(used + more);
        self.bytes += more;
        Ok(())
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        self.pool.set(self.pool.get().saturating_sub(self.bytes));
    }
}

impl ControlGate {
    fn enter(&self) -> Option<ClientSlot> {
        let n = self.clients.get();
        if n >= MAX_CONTROL_CLIENTS {
            return None;
        }
        self.clients.set(n + 1);
        Some(ClientSlot(self.clients.clone()))
    }
}

/// One connection's read side: its stream and the bytes read past the end
/// of the last line (the next request of a persistent client), in one
/// `CONTROL_READ_CHUNK` buffer counted once in the shared budget.
struct Conn<'a> {
    stream: &'a mut smol::net::unix::UnixStream,
    chunk: Vec<u8>,
    /// `chunk[start..end]` is read and not yet taken.
    start: usize,
    end: usize,
    _budget: Reserved,
}

impl<'a> Conn<'a> {
    fn new(
        stream: &'a mut smol::net::unix::UnixStream,
        gate: &ControlGate,
    ) -> Result<Conn<'a>, RequestError> {
        let mut budget = Reserved {
            pool: gate.buffered.clone(),
            bytes: 0,
        };
        budget.grow(CONTROL_READ_CHUNK)?;
        Ok(Conn {
            stream,
            chunk: vec![0u8; CONTROL_READ_CHUNK],
            start: 0,
            end: 0,
            _budget: budget,
        })
    }
}

impl Conn<'_> {
    /// A whole request line is already read and waiting.
    fn has_line(&self) -> bool {
        self.chunk
            .get(self.start..self.end)
            .is_some_and(|b| b.contains(&b'\n'))
    }
}

/// Read one request line (with its newline), its buffer counted in the
/// shared budget: capacity grows by doubling, never past the request bound.
/// `Ok(None)`: the client closed cleanly between lines.
async fn read_line(
    conn: &mut Conn<'_>,
    gate: &ControlGate,
) -> Result<Option<(Vec<u8>, Reserved)>, RequestError> {
    use smol::io::AsyncReadExt;
    let mut reserved = Reserved {
        pool: gate.buffered.clone(),
        bytes: 0,
    };
    let mut line: Vec<u8> = Vec::new();
    loop {
        if conn.start >= conn.end {
            let n = conn
                .stream
                .read(&mut conn.chunk)
                .await
                .map_err(|e| RequestError::BadRequest(e.to_string()))?;
            if n == 0 {
                return if line.is_empty() {
                    Ok(None)
                } else {
                    Err(RequestError::Incomplete)
                };
            }
            conn.start = 0;
            conn.end = n;
        }
        let avail = conn.chunk.get(conn.start..conn.end).unwrap_or_default();
        let (data, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (avail.get(..=i).unwrap_or_default(), true),
            None => (avail, false),
        };
        let len = line.len() + data.len();
        if len > MAX_CONTROL_REQUEST_BYTES {
            return Err(RequestError::TooLarge);
        }
        if len > line.capacity() {
            let cap = len
                .max(line.capacity().saturating_mul(2))
                .min(MAX_CONTROL_REQUEST_BYTES);
            reserved.grow(cap - line.capacity())?;
            line.reserve_exact(cap - line.len());
        }
        line.extend_from_slice(data);
        conn.start += data.len();
        if done {
            return Ok(Some((line, reserved)));
        }
    }
}

async fn write_reply(stream: &mut smol::net::unix::UnixStream, reply: &Value) {
    let mut out = reply.to_string();
    out.push('\n');
    write_out(stream, out.as_bytes()).await;
}

/// Write reply lines, bounded by `CONTROL_WRITE_TIMEOUT`.
async fn write_out(stream: &mut smol::net::unix::UnixStream, out: &[u8]) {
    use smol::io::AsyncWriteExt;
    let write = async {
        let _ = stream.write_all(out).await;
        let _ = stream.flush().await;
    };
    write
        .or(async {
            smol::Timer::after(CONTROL_WRITE_TIMEOUT).await;
            log::debug!("control socket: reply not taken in time");
        })
        .await;
}

/// Serve one control connection: one request line, one reply line, in
/// order, until the client closes (persistent mode: a SIP server keeps one
/// connection and pipelines its requests; the CLI sends one and closes).
pub async fn serve_connection(
    shared: Arc<Shared>,
    mut stream: smol::net::unix::UnixStream,
    gate: ControlGate,
) {
    let Some(_slot) = gate.enter() else {
        log::debug!("control socket: {MAX_CONTROL_CLIENTS} clients already; busy");
        write_reply(&mut stream, &RequestError::Busy.to_json()).await;
        return;
    };
    let refused = match Conn::new(&mut stream, &gate) {
        Ok(conn) => return serve_lines(&shared, conn, &gate).await,
        Err(e) => e,
    };
    write_reply(&mut stream, &refused.to_json()).await;
}

/// The request loop of one admitted connection.
async fn serve_lines(shared: &Arc<Shared>, mut conn: Conn<'_>, gate: &ControlGate) {
    let mut first = true;
    let mut out: Vec<u8> = Vec::new();
    loop {
        // The first line must arrive within `CONTROL_READ_TIMEOUT` (as a
        // one-shot CLI request); later ones within `CONTROL_IDLE_TIMEOUT`.
        let wait = if first {
            CONTROL_READ_TIMEOUT
        } else {
            CONTROL_IDLE_TIMEOUT
        };
        let read = async { read_line(&mut conn, gate).await }
            .or(async {
                smol::Timer::after(wait).await;
                Err(RequestError::Timeout)
            })
            .await;
        let command = match read {
            Ok(Some(line)) => parse(line),
            // A clean close between requests.
            Ok(None) if !first => return,
            Ok(None) => Err(RequestError::Incomplete),
            // An idle persistent client: closed without a word.
            Err(RequestError::Timeout) if !first => return,
            Err(e) => Err(e),
        };
        first = false;
        // Whole lines already read (a pipelining client) join the batch, up
        // to `MAX_CONTROL_BATCH`; a refused line or `alert test` ends it.
        let mut batch = vec![command];
        while batch.len() < MAX_CONTROL_BATCH
            && matches!(batch.last(), Some(Ok(c)) if !matches!(c, Command::AlertTest))
        {
            match take_line(&mut conn, gate) {
                Some(line) => batch.push(line.and_then(parse)),
                None => break,
            }
        }
        let special = match batch.last() {
            Some(Ok(Command::AlertTest) | Err(_)) => batch.pop(),
            _ => None,
        };
        // The plain commands in one trip to the blocking pool, in order.
        let commands: Vec<Command> = batch.into_iter().filter_map(Result::ok).collect();
        if !commands.is_empty() {
            let shared = shared.clone();
            let replies = smol::unblock(move || {
                commands
                    .iter()
                    .map(|c| match shared.execute(c) {
                        // `{"ok":VALUE}`, serialised straight from the reply.
                        Ok(reply) => serde_json::to_vec(&OkReply { ok: &reply })
                            .unwrap_or_else(|_| b"{\"ok\":null}".to_vec()),
                        Err(e) => e.to_json().to_string().into_bytes(),
                    })
                    .collect::<Vec<Vec<u8>>>()
            })
            .await;
            for reply in replies {
                out.extend_from_slice(&reply);
                out.push(b'\n');
            }
        }
        let go_on = match special {
            // Needs the network, so not `ops::execute`: sent from here.
            Some(Ok(_)) => {
                let reply = match crate::notify::test_in_daemon(shared).await {
                    Ok(value) => json!({ "ok": value }),
                    Err(e) => e.to_json(),
                };
                out.extend_from_slice(reply.to_string().as_bytes());
                out.push(b'\n');
                true
            }
            // Framing is lost (or the line was not a command): answer, close.
            Some(Err(e)) => {
                log::debug!("control socket: refused a request: {}", e.code());
                out.extend_from_slice(e.to_json().to_string().as_bytes());
                out.push(b'\n');
                false
            }
            None => true,
        };
        // Replies to pipelined requests go out together: written when no
        // further whole line is waiting (or a chunk's worth is pending), so
        // a busy SIP server costs one write per burst, not per call.
        if !go_on || !conn.has_line() || out.len() >= CONTROL_READ_CHUNK {
            write_out(conn.stream, &out).await;
            out.clear();
        }
        if !go_on {
            return;
        }
    }
}

/// `{"ok":VALUE}`: a reply as the protocol carries it.
#[derive(serde::Serialize)]
struct OkReply<'a> {
    ok: &'a Reply,
}

/// A request line as a command (the line and its share of the budget are
/// dropped before the command runs).
fn parse((line, reserved): (Vec<u8>, Reserved)) -> Result<Command, RequestError> {
    let command = serde_json::from_slice::<Command>(&line)
        .map_err(|e| RequestError::BadRequest(e.to_string()));
    drop((line, reserved));
    command
}

/// The next whole line if it is already read (no socket read).
fn take_line(
    conn: &mut Conn<'_>,
    gate: &ControlGate,
) -> Option<Result<(Vec<u8>, Reserved), RequestError>> {
    let avail = conn.chunk.get(conn.start..conn.end)?;
    let end = avail.iter().position(|&b| b == b'\n')? + 1;
    let mut reserved = Reserved {
        pool: gate.buffered.clone(),
        bytes: 0,
    };
    if let Err(e) = reserved.grow(end) {
        return Some(Err(e));
    }
    let line = avail.get(..end)?.to_vec();
    conn.start += end;
    Some(Ok((line, reserved)))
}

/// Why the CLI could not use the daemon.
#[derive(Debug)]
pub enum ClientError {
    /// No daemon answers on the socket.
    NoDaemon,
    /// The daemon's reply could not be read.
    BadReply(String),
}

/// Send a command to the running daemon: `Ok(Ok(reply))`, `Ok(Err(error json))`.
pub fn request(data_dir: &Path, command: &Command) -> Result<Result<Reply, Value>, ClientError> {
    let mut stream = std::os::unix::net::UnixStream::connect(socket_path(data_dir))
        .map_err(|_| ClientError::NoDaemon)?;
    let timeout = Some(std::time::Duration::from_secs(CONTROL_CLIENT_TIMEOUT_SECS));
    let _ = stream.set_read_timeout(timeout);
    let _ = stream.set_write_timeout(timeout);
    let mut line = serde_json::to_vec(command).map_err(|e| ClientError::BadReply(e.to_string()))?;
    line.push(b'\n');
    stream
        .write_all(&line)
        .map_err(|e| ClientError::BadReply(e.to_string()))?;
    let mut reply = String::new();
    BufReader::new(stream.take(MAX_CONTROL_REPLY_BYTES as u64))
        .read_line(&mut reply)
        .map_err(|e| ClientError::BadReply(e.to_string()))?;
    let mut value: Value =
        serde_json::from_str(&reply).map_err(|e| ClientError::BadReply(e.to_string()))?;
    if let Some(ok) = value.get_mut("ok") {
        return Reply::decode(command, ok.take())
            .map(Ok)
            .map_err(|e| ClientError::BadReply(e.to_string()));
    }
    if value.get("error").is_some() {
        return Ok(Err(value));
    }
    Err(ClientError::BadReply(
        "reply has neither ok nor error".into(),
    ))
}

pub use crate::error::RemoteError;

impl From<ClientError> for Error {
    fn from(e: ClientError) -> Error {
        match e {
            ClientError::NoDaemon => Error::Store(crate::store::StoreError::Backend(
                "the control socket does not answer".into(),
            )),
            ClientError::BadReply(why) => Error::Store(crate::store::StoreError::Backend(format!(
                "bad reply from the daemon: {why}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::MAX_BOX_BYTES;
    use crate::pki::KindRequest;

    #[test]
    fn request_bound_fits_an_import_of_two_maximal_boxes() {
        // The CLI reads each box bounded to MAX_BOX_BYTES + 1 and sends it on,
        // so the import rule (not the socket) refuses a box that is too big.
        let command = Command::Import {
            cert: vec![b'x'; MAX_BOX_BYTES + 1],
            key: Some(vec![b'y'; MAX_BOX_BYTES + 1]),
            kind: KindRequest::StirShaken,
            replace: false,
        };
        let len = serde_json::to_vec(&command).unwrap().len() + 1;
        assert!(
            len <= MAX_CONTROL_REQUEST_BYTES,
            "{len} > {MAX_CONTROL_REQUEST_BYTES}"
        );
        // ... and not much more than that.
        assert!(MAX_CONTROL_REQUEST_BYTES < len + len / 4);
        const { assert!(MAX_CONTROL_BUFFERED_BYTES >= MAX_CONTROL_REQUEST_BYTES) };
    }
}
