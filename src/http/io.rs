//! picoserve's runtime hooks for smol: a `Timer` and a `Socket`.
//!
//! Why: picoserve is runtime-agnostic; it asks for a timer (timeouts) and a
//! socket it can split into a read half and a write half. Our streams are
//! futures-io `AsyncRead + AsyncWrite` (a smol `TcpStream`, or a futures-rustls
//! `TlsStream` over one), so one generic adapter serves both listeners.
//!
//! The read half is also the gate against request smuggling (RFC 9112
//! §11.2): picoserve's own parser is lenient (it trims names, drops NULs,
//! takes `Content-Length: +5` as 5 and ignores `Transfer-Encoding`), so each
//! request head is first read here whole and checked by
//! `server::HeadScanner`; picoserve then gets exactly that head and its
//! declared body, and nothing of the next request until its head is whole
//! and accepted. A refused head is never handed on: picoserve sees the end
//! of the stream, and `shutdown` writes our answer (with the security
//! headers and a body saying what was wrong) and closes the connection.
//!
//! What must hold: no `unsafe`, no panics on I/O results (embedded-io's
//! `write_all` panics on `Ok(0)`, so a zero-length write becomes an error);
//! a socket marked `closing` reads as end-of-stream, which makes picoserve
//! stop after the current response (our keep-alive request limit); no byte
//! after a refused head is ever read as a request; reads are cancel-safe
//! (picoserve drops them on its timeouts): state changes only after an
//! `await` returned.

use std::cell::Cell;
use std::rc::Rc;

use picoserve::io::{ErrorKind, ErrorType, Read, Write};
use picoserve::time::Duration;
use smol::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};

use super::head::{HeadError, HeadScanner, Scan};
use crate::limits::HTTP_HEAD_READ_CHUNK;

/// Marker type naming the smol runtime in picoserve's generic parameters.
pub struct SmolRuntime;

/// picoserve timer backed by `smol::Timer`.
#[derive(Clone, Copy, Default)]
pub struct SmolTimer;

impl picoserve::Timer<SmolRuntime> for SmolTimer {
    fn delay(&self, duration: Duration) -> impl core::future::Future<Output = ()> {
        let timer = smol::Timer::after(std::time::Duration::from_millis(duration.as_millis()));
        async move {
            timer.await;
        }
    }
}

/// An I/O error of the underlying stream, in embedded-io's error shape.
#[derive(Debug)]
pub struct IoError(pub std::io::Error);

impl core::fmt::Display for IoError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for IoError {}

impl picoserve::io::Error for IoError {
    fn kind(&self) -> ErrorKind {
        match self.0.kind() {
            std::io::ErrorKind::TimedOut => ErrorKind::TimedOut,
            std::io::ErrorKind::ConnectionReset => ErrorKind::ConnectionReset,
            std::io::ErrorKind::ConnectionAborted => ErrorKind::ConnectionAborted,
            std::io::ErrorKind::BrokenPipe => ErrorKind::BrokenPipe,
            std::io::ErrorKind::WriteZero => ErrorKind::WriteZero,
            _ => ErrorKind::Other,
        }
    }
}

/// The request-head gate of one connection (see the module header).
#[derive(Debug)]
pub struct Gate {
    /// Largest head accepted (picoserve's buffer holds it whole).
    limit: usize,
    /// Bytes received and not yet handed to picoserve.
    pending: Vec<u8>,
    /// Bytes of the current message (accepted head + declared body) still
    /// to hand on; 0: the next head must be read and checked first.
    allowed: usize,
    scanner: HeadScanner,
    /// The refused head's error, answered in `shutdown`.
    refused: Option<HeadError>,
    /// A head read was under way (set before, cleared after its `await`):
    /// still set at `shutdown`, it was cut by picoserve's timeout.
    reading_head: bool,
}

impl Gate {
    fn new(limit: usize) -> Gate {
        Gate {
            limit,
            pending: Vec::new(),
            allowed: 0,
            scanner: HeadScanner::default(),
            refused: None,
            reading_head: false,
        }
    }

    fn refuse(&mut self, error: HeadError) {
        log::debug!("http request head refused: {}", error.code());
        self.refused = Some(error);
    }

    /// The answer still owed when the connection ends: a refused head, or
    /// a head cut off by the timeout.
    fn owed(&self, closing: bool) -> Option<HeadError> {
        if closing {
            return None;
        }
        self.refused.or_else(|| {
            (self.reading_head && self.allowed == 0 && !self.pending.is_empty())
                .then_some(HeadError::Timeout)
        })
    }

    /// Hand `pending[..n]` on.
    fn take(&mut self, out: &mut [u8], n: usize) -> usize {
        let n = n.min(out.len()).min(self.pending.len());
        if let (Some(dst), Some(src)) = (out.get_mut(..n), self.pending.get(..n)) {
            dst.copy_from_slice(src);
            self.pending.drain(..n);
            n
        } else {
            0
        }
    }
}

/// A stream split once into halves (futures-lite's `split`: the halves share
/// the stream behind a lock that is only held inside each poll).
pub struct SmolSocket<S> {
    read: ReadHalf<S>,
    write: WriteHalf<S>,
    closing: Rc<Cell<bool>>,
    gate: Gate,
}

impl<S: AsyncRead + AsyncWrite + Unpin> SmolSocket<S> {
    /// Wrap a connected stream; request heads may be up to `head_limit`
    /// bytes (at most picoserve's buffer).
    pub fn new(stream: S, head_limit: usize) -> Self {
        let (read, write) = smol::io::split(stream);
        SmolSocket {
            read,
            write,
            closing: Rc::new(Cell::new(false)),
            gate: Gate::new(head_limit),
        }
    }

    /// Set to `true` to end the connection after the current response.
    pub fn closing(&self) -> Rc<Cell<bool>> {
        self.closing.clone()
    }
}

/// The read half handed to picoserve.
pub struct SocketReader<'a, S> {
    inner: &'a mut ReadHalf<S>,
    closing: &'a Cell<bool>,
    gate: &'a mut Gate,
}

/// The write half handed to picoserve.
pub struct SocketWriter<'a, S> {
    inner: &'a mut WriteHalf<S>,
}

impl<S> ErrorType for SocketReader<'_, S> {
    type Error = IoError;
}

impl<S> ErrorType for SocketWriter<'_, S> {
    type Error = IoError;
}

impl<S: AsyncRead + AsyncWrite + Unpin> Read for SocketReader<'_, S> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, IoError> {
        if self.closing.get() || buf.is_empty() {
            return Ok(0);
        }
        let gate = &mut *self.gate;
        while gate.allowed == 0 {
            if gate.refused.is_some() {
                return Ok(0);
            }
            match gate.scanner.scan(&gate.pending, gate.limit) {
                Scan::Complete { head, body } => {
                    gate.allowed = head.saturating_add(body);
                    gate.scanner = HeadScanner::default();
                }
                Scan::Skip(n) => {
                    gate.pending.drain(..n.min(gate.pending.len()));
                }
                Scan::Refused(error) => {
                    gate.refuse(error);
                    return Ok(0);
                }
                Scan::NeedMore => {
                    let mut chunk = [0u8; HTTP_HEAD_READ_CHUNK];
                    gate.reading_head = true;
                    let n = self.inner.read(&mut chunk).await.map_err(IoError)?;
                    gate.reading_head = false;
                    match chunk.get(..n) {
                        Some([]) | None => {
                            if !gate.pending.is_empty() {
                                gate.refuse(HeadError::Incomplete);
                            }
                            return Ok(0);
                        }
                        Some(data) => gate.pending.extend_from_slice(data),
                    }
                }
            }
        }
        let want = buf.len().min(gate.allowed);
        let n = if gate.pending.is_empty() {
            match buf.get_mut(..want) {
                Some(part) => self.inner.read(part).await.map_err(IoError)?,
                None => 0,
            }
        } else {
            gate.take(buf, want)
        };
        gate.allowed -= n.min(gate.allowed);
        Ok(n)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> picoserve::io::BaseWrite for SocketWriter<'_, S> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, IoError> {
        match self.inner.write(buf).await {
            Ok(0) if !buf.is_empty() => Err(IoError(std::io::ErrorKind::WriteZero.into())),
            other => other.map_err(IoError),
        }
    }

    async fn flush(&mut self) -> Result<(), IoError> {
        self.inner.flush().await.map_err(IoError)
    }
}

/// Size of the stack buffer picoserve formats response heads into.
const FORMAT_CHUNK: usize = 1024;

impl<S: AsyncRead + AsyncWrite + Unpin> Write for SocketWriter<'_, S> {
    async fn write_with<F: FnOnce(picoserve::mem::BorrowedCursor<'_>) -> R, R>(
        &mut self,
        f: F,
    ) -> Result<R, IoError> {
        let mut chunk = [0u8; FORMAT_CHUNK];
        let mut buffer = picoserve::mem::BorrowedBuffer::new(&mut chunk);
        let out = f(buffer.unfilled());
        self.inner
            .write_all(buffer.filled())
            .await
            .map_err(IoError)?;
        Ok(out)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> picoserve::io::Socket<SmolRuntime> for SmolSocket<S> {
    type Error = IoError;
    type ReadHalf<'a>
        = SocketReader<'a, S>
    where
        S: 'a;
    type WriteHalf<'a>
        = SocketWriter<'a, S>
    where
        S: 'a;

    fn split(&mut self) -> (Self::ReadHalf<'_>, Self::WriteHalf<'_>) {
        (
            SocketReader {
                inner: &mut self.read,
                closing: &self.closing,
                gate: &mut self.gate,
            },
            SocketWriter {
                inner: &mut self.write,
            },
        )
    }

    async fn abort<T: picoserve::Timer<SmolRuntime>>(
        self,
        _timeouts: &picoserve::Timeouts,
        _timer: &T,
    ) -> Result<(), picoserve::Error<IoError>> {
        // Dropping both halves closes the stream.
        Ok(())
    }

    async fn shutdown<T: picoserve::Timer<SmolRuntime>>(
        mut self,
        timeouts: &picoserve::Timeouts,
        timer: &T,
    ) -> Result<(), picoserve::Error<IoError>> {
        // A refused (or timed-out) head is answered here, picoserve having
        // seen only the end of the stream.
        if let Some(error) = self.gate.owed(self.closing.get()) {
            let answer = error.response();
            timer
                .run_with_timeout(timeouts.write, self.write.write_all(&answer))
                .await
                .map_err(picoserve::Error::WriteTimeout)?
                .map_err(|e| picoserve::Error::Write(IoError(e)))?;
        }
        // Flush, send TLS close_notify (for TLS) and FIN; then read what the
        // client still sends until it closes too, within the read timeout.
        timer
            .run_with_timeout(timeouts.write, self.write.close())
            .await
            .map_err(picoserve::Error::WriteTimeout)?
            .map_err(|e| picoserve::Error::Write(IoError(e)))?;
        let mut scratch = [0u8; 256];
        let drain = async {
            while self.read.read(&mut scratch).await? > 0 {}
            Ok::<(), std::io::Error>(())
        };
        // A client that never closes, or resets, is not an error of ours.
        let _ = timer.run_with_timeout(timeouts.read_request, drain).await;
        Ok(())
    }
}
