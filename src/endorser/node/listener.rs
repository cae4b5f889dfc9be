//! Accepting connections without letting idle or hostile clients use up the process: a cap on open
//! connections (new ones wait in the listen backlog, with one log line when the cap is reached), a
//! deadline for a connection's first byte (a TLS ClientHello or the HTTP/2 preface), and an idle
//! deadline between reads. Every connection holds one file descriptor; without these, 1,005 idle
//! TLS connections used up `ulimit -n 1024` and stalled every client.
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// How connections to one listener are bounded.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Open connections at most; more wait in the kernel's listen backlog.
    pub max_connections: usize,
    /// From accept to the first byte read.
    pub first_byte_timeout: Duration,
    /// Between two reads once the connection is in use; None: no limit (the chaincode stream,
    /// which may be silent for hours between transactions). Client connections stay readable
    /// through HTTP/2 keepalive pings, which a live client answers.
    pub idle_timeout: Option<Duration>,
}

impl ConnectionLimits {
    /// Limits for the client port (Endorser, Gateway, Deliver).
    pub fn clients(max_connections: usize) -> Self {
        Self {
            max_connections,
            first_byte_timeout: FIRST_BYTE_TIMEOUT,
            idle_timeout: Some(CLIENT_IDLE_TIMEOUT),
        }
    }

    /// Limits for the chaincode port: no idle deadline.
    pub fn chaincode(max_connections: usize) -> Self {
        Self {
            max_connections,
            first_byte_timeout: FIRST_BYTE_TIMEOUT,
            idle_timeout: None,
        }
    }
}

/// Time a new connection has to send its first byte; the TLS handshake then has its own deadline.
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time to complete a TLS handshake on either port.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The server pings idle clients this often (HTTP/2 PING); a client that does not answer within
/// [`KEEPALIVE_TIMEOUT`] is dropped.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// A client connection with nothing read for this long is closed (several missed pings).
pub const CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Concurrent requests (HTTP/2 streams) on one client connection.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 1024;
/// File descriptors kept free for the ledger, block files, chaincode and outgoing connections.
const RESERVED_FDS: u64 = 256;
const DEFAULT_MAX_CONNECTIONS: u64 = 4096;

/// Raises the soft limit on open files to the hard limit (the soft default of 1024 is far below
/// what a busy endorser needs) and returns the limit now in force, if it can be read.
pub fn raise_open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
        if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
            tracing::debug!(from = soft, to = hard, "raised the open-file limit");
            return Some(hard);
        }
        Some(soft)
    }
    #[cfg(not(unix))]
    None
}

/// The default connection cap: 4,096, or less where the open-file limit would not hold them.
pub fn default_max_connections(open_file_limit: Option<u64>) -> usize {
    let fit = open_file_limit.map_or(DEFAULT_MAX_CONNECTIONS, |limit| {
        limit.saturating_sub(RESERVED_FDS).max(16)
    });
    usize::try_from(fit.min(DEFAULT_MAX_CONNECTIONS)).unwrap_or(usize::MAX)
}

/// Accepted connections within `limits`, for `serve_with_incoming*`.
pub fn limited_incoming(
    listener: TcpListener,
    name: &'static str,
    limits: ConnectionLimits,
) -> impl futures::Stream<Item = io::Result<LimitedStream>> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let last_warning: Arc<Mutex<Option<Instant>>> = Arc::default();
    futures::stream::unfold(
        (listener, slots, limits),
        move |(listener, slots, limits)| {
            let last_warning = last_warning.clone();
            async move {
                let permit = match slots.clone().try_acquire_owned() {
                    Ok(permit) => permit,
                    Err(_) => {
                        warn_full(name, limits.max_connections, &last_warning);
                        slots.clone().acquire_owned().await.ok()?
                    }
                };
                let accepted = listener.accept().await.and_then(|(stream, _)| {
                    stream.set_nodelay(true)?;
                    Ok(LimitedStream::new(stream, permit, &limits))
                });
                Some((accepted, (listener, slots, limits)))
            }
        },
    )
}

/// Says the cap is reached, once a minute at most: a flood must not flood the log too.
fn warn_full(name: &str, max_connections: usize, last: &Mutex<Option<Instant>>) {
    let Ok(mut last) = last.lock() else { return };
    if last.is_some_and(|at| at.elapsed() < Duration::from_secs(60)) {
        return;
    }
    *last = Some(Instant::now());
    tracing::warn!(
        listener = name,
        max_connections,
        "connection limit reached; new connections wait until one closes (--max-connections)"
    );
}

/// A TCP connection holding one of its listener's slots until it is dropped, closed with
/// `TimedOut` when a read deadline passes.
pub struct LimitedStream {
    inner: TcpStream,
    _slot: OwnedSemaphorePermit,
    deadline: Pin<Box<Sleep>>,
    idle_timeout: Option<Duration>,
    read_any: bool,
}

impl LimitedStream {
    fn new(inner: TcpStream, slot: OwnedSemaphorePermit, limits: &ConnectionLimits) -> Self {
        Self {
            inner,
            _slot: slot,
            deadline: Box::pin(tokio::time::sleep(limits.first_byte_timeout)),
            idle_timeout: limits.idle_timeout,
            read_any: false,
        }
    }
}

impl Connected for LimitedStream {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl AsyncRead for LimitedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.read_any = true;
                    if let Some(idle) = self.idle_timeout {
                        self.deadline.as_mut().reset(Instant::now() + idle);
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let waiting_for_first = !self.read_any;
                if (waiting_for_first || self.idle_timeout.is_some())
                    && self.deadline.as_mut().poll(cx).is_ready()
                {
                    let what = if waiting_for_first {
                        "no data from the client after connecting"
                    } else {
                        "connection idle"
                    };
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, what)));
                }
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for LimitedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_fits_the_open_file_limit() {
        assert_eq!(default_max_connections(Some(1024)), 768);
        assert_eq!(default_max_connections(Some(1_048_576)), 4096);
        assert_eq!(default_max_connections(Some(100)), 16);
        assert_eq!(default_max_connections(None), 4096);
    }
}
