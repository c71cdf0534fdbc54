//! The control socket: how the CLI talks to a running daemon.
//!
//! Why: the daemon holds the store's lock, yet scripts must run the same CLI
//! whether or not the daemon runs. When `Store::open` reports the lock, the
//! CLI sends its `ops::Command` as one JSON line over a Unix socket in the data
//! directory and prints the reply exactly as it would have locally.
//!
//! Protocol: request = one line of JSON (`ops::Command`); reply = one line,
//! `{"ok": VALUE}` or the `{"error":{"code","message"}}` of `Error::to_json`.
//!
//! What must hold: the socket is mode 0600 inside the 0700 data directory
//! (only the daemon's user can reach it); requests are bounded
//! (`MAX_CONTROL_REQUEST_BYTES`); one slow client does not block others.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::daemon::Shared;
use crate::error::Error;
use crate::limits::{CONTROL_CLIENT_TIMEOUT_SECS, MAX_CONTROL_REQUEST_BYTES};
use crate::ops::Command;

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

/// Serve one control connection.
pub async fn serve_connection(shared: Arc<Shared>, stream: smol::net::unix::UnixStream) {
    use smol::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let mut reader =
        smol::io::BufReader::new(stream.clone()).take(MAX_CONTROL_REQUEST_BYTES as u64);
    let mut line = Vec::new();
    let reply = match reader.read_until(b'\n', &mut line).await {
        Ok(_) if line.last() == Some(&b'\n') => match serde_json::from_slice::<Command>(&line) {
            Ok(command) => match shared.execute_async(command).await {
                Ok(value) => json!({ "ok": value }),
                Err(e) => e.to_json(),
            },
            Err(e) => {
                json!({"error": {"code": "bad-request", "message": format!("bad control request: {e}")}})
            }
        },
        Ok(_) => {
            json!({"error": {"code": "too-large", "message": "control request too large or incomplete"}})
        }
        Err(e) => json!({"error": {"code": "bad-request", "message": e.to_string()}}),
    };
    let mut stream = stream;
    let mut out = reply.to_string();
    out.push('\n');
    let _ = stream.write_all(out.as_bytes()).await;
    let _ = stream.flush().await;
}

/// Why the CLI could not use the daemon.
#[derive(Debug)]
pub enum ClientError {
    /// No daemon answers on the socket.
    NoDaemon,
    /// The daemon's reply could not be read.
    BadReply(String),
}

/// Send a command to the running daemon: `Ok(Ok(value))`, `Ok(Err(error json))`.
pub fn request(data_dir: &Path, command: &Command) -> Result<Result<Value, Value>, ClientError> {
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
    BufReader::new(stream.take(MAX_CONTROL_REQUEST_BYTES as u64))
        .read_line(&mut reply)
        .map_err(|e| ClientError::BadReply(e.to_string()))?;
    let mut value: Value =
        serde_json::from_str(&reply).map_err(|e| ClientError::BadReply(e.to_string()))?;
    if let Some(ok) = value.get_mut("ok") {
        return Ok(Ok(ok.take()));
    }
    if value.get("error").is_some() {
        return Ok(Err(value));
    }
    Err(ClientError::BadReply(
        "reply has neither ok nor error".into(),
    ))
}

/// An error reported by the daemon, re-raised in the CLI with its code.
#[derive(Debug)]
pub struct RemoteError {
    /// The stable code.
    pub code: String,
    /// The message.
    pub message: String,
}

impl RemoteError {
    /// From the `{"error":{...}}` reply.
    pub fn from_json(v: &Value) -> RemoteError {
        RemoteError {
            code: v["error"]["code"].as_str().unwrap_or("error").to_owned(),
            message: v["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        }
    }
}

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
