//! picoserve's runtime hooks for smol: a `Timer` and a `Socket`.
//!
//! Why: picoserve is runtime-agnostic; it asks for a timer (timeouts) and a
//! socket it can split into a read half and a write half. Our streams are
//! futures-io `AsyncRead + AsyncWrite` (a smol `TcpStream`, or a futures-rustls
//! `TlsStream` over one), so one generic adapter serves both listeners.
//!
//! What must hold: no `unsafe`, no panics on I/O results (embedded-io's
//! `write_all` panics on `Ok(0)`, so a zero-length write becomes an error);
//! a socket marked `closing` reads as end-of-stream, which makes picoserve
//! stop after the current response (our keep-alive request limit).

use std::cell::Cell;
use std::rc::Rc;

use picoserve::io::{ErrorKind, ErrorType, Read, Write};
use picoserve::time::Duration;
use smol::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};

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

/// A stream split once into halves (futures-lite's `split`: the halves share
/// the stream behind a lock that is only held inside each poll).
pub struct SmolSocket<S> {
    read: ReadHalf<S>,
    write: WriteHalf<S>,
    closing: Rc<Cell<bool>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> SmolSocket<S> {
    /// Wrap a connected stream.
    pub fn new(stream: S) -> Self {
        let (read, write) = smol::io::split(stream);
        SmolSocket {
            read,
            write,
            closing: Rc::new(Cell::new(false)),
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
        if self.closing.get() {
            return Ok(0);
        }
        self.inner.read(buf).await.map_err(IoError)
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
