//! Client connections on one listener: the cap on how many are open, the TLS handshake,
//! telling HTTP/1 from HTTP/2, the deadlines before and between requests, and graceful
//! shutdown. A connection that sends nothing, stops halfway through its handshake, preface or
//! head, or stays idle is closed on a deadline, so idle sockets cannot pile up on a listener
//! that faces the internet.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio_rustls::TlsAcceptor;

use super::framing::{Deadlines, FramingGuard, Protocol};
use super::ingress::Ingress;
use crate::config::Limits;
use crate::proxy::body::ProxyBody;
use crate::proxy::ConnInfo;

/// The header count hyper allows when none is configured.
const HYPER_DEFAULT_MAX_HEADERS: usize = 100;

/// A client connection, plain or TLS, as one type so that one code path serves both.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// Counters of a listener's connections, read by the metrics at scrape time.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    open: AtomicUsize,
    refused: AtomicU64,
    /// Woken when the last open connection closes, for the drain at shutdown.
    all_closed: Notify,
    last_logged_second: AtomicU64,
}

impl ConnectionStats {
    /// Client connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Connections closed at accept because `max_connections` were open.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// A slot for one more connection, or `None` when `cap` are open.
    fn admit(self: &Arc<Self>, cap: Option<usize>) -> Option<Slot> {
        let before = self.open.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(self.clone());
        if cap.is_some_and(|cap| before >= cap) {
            drop(slot);
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(slot)
    }

    /// Returns once no connection is open.
    async fn drained(&self) {
        loop {
            let mut closed = pin!(self.all_closed.notified());
            closed.as_mut().enable();
            if self.open.load(Ordering::Acquire) == 0 {
                return;
            }
            closed.await;
        }
    }

    /// At most one log line per second for refusals, so a flood cannot flood the log too (the
    /// count is in the metrics).
    fn should_log_refusal(&self) -> bool {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        self.last_logged_second.swap(now, Ordering::Relaxed) != now
    }
}

/// One open connection, counted until dropped.
struct Slot(Arc<ConnectionStats>);

impl Drop for Slot {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.all_closed.notify_waiters();
        }
    }
}

/// A bound listener and how its connections are served.
pub(super) struct Listener {
    pub tcp: TcpListener,
    pub tls: Option<TlsAcceptor>,
    /// Identifies clients by their TLS certificate (the proxy listener).
    pub ingress: Option<Arc<Ingress>>,
    pub limits: Limits,
    /// Caps open connections (the proxy listener's `max_connections`).
    pub cap: Option<usize>,
    pub stats: Arc<ConnectionStats>,
}

/// What every connection of a listener shares.
struct Shared<H> {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    tls: Option<TlsAcceptor>,
    ingress: Option<Arc<Ingress>>,
    handshake_timeout: Duration,
    deadlines: Deadlines,
    idle_timeout: Duration,
    handler: H,
}

/// Accepts connections until told to stop, then waits for open connections to finish their
/// in-flight requests (at most `grace`).
pub(super) async fn serve<H, F>(
    listener: Listener,
    mut stopped: watch::Receiver<bool>,
    grace: Duration,
    handler: H,
) where
    H: Fn(Request<Incoming>, ConnInfo) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let Listener {
        tcp,
        tls,
        ingress,
        limits,
        cap,
        stats,
    } = listener;
    let shared = Arc::new(Shared {
        http1: http1_builder(&limits),
        http2: http2_builder(&limits),
        tls,
        ingress,
        handshake_timeout: limits.tls_handshake_timeout,
        deadlines: Deadlines {
            first_byte: limits.first_byte_timeout,
            head: limits.header_read_timeout,
        },
        idle_timeout: limits.idle_timeout,
        handler,
    });
    // Fires when the grace period is over, so that connections still busy are closed rather
    // than outliving `shutdown()` (a library user's runtime would keep serving them).
    let (close, closed) = watch::channel(false);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = tcp.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    tracing::warn!("accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped.changed() => break,
        };
        let Some(slot) = stats.admit(cap) else {
            if stats.should_log_refusal() {
                tracing::warn!(
                    client = %remote,
                    max_connections = cap,
                    refused_so_far = stats.refused(),
                    "refused a connection: server.max_connections are open"
                );
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        // With a `0.0.0.0`/`::` listener, the address this connection came in on is the one its
        // client may name in `Host`; unknown, it is unspecified, which serves no name.
        let local = stream
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let shared = shared.clone();
        let stopped = stopped.clone();
        tokio::spawn(until_closed(closed.clone(), async move {
            let _slot = slot;
            connection(&shared, stream, remote, local, stopped).await;
        }));
    }
    drop(tcp);
    if tokio::time::timeout(grace, stats.drained()).await.is_err() {
        tracing::warn!(
            ?grace,
            "grace period over; closing connections with requests still in flight"
        );
        let _ = close.send(true);
    }
}

fn http1_builder(limits: &Limits) -> http1::Builder {
    let mut builder = http1::Builder::new();
    // hyper's header timer runs from the end of one response until the next request head is
    // in: the keep-alive idle time. The guard times each head from its first byte.
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    // hyper parses up to 100 headers in a stack array, but any explicit limit, 100 included,
    // makes it build and initialise a heap array for every request head.
    if limits.max_headers != HYPER_DEFAULT_MAX_HEADERS {
        builder.max_headers(limits.max_headers);
    }
    builder
}

fn http2_builder(limits: &Limits) -> http2::Builder<TokioExecutor> {
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.http2_keep_alive_interval)
        .keep_alive_timeout(limits.http2_keep_alive_timeout);
    builder
}

/// One client connection, from accept to close.
async fn connection<H, F>(
    shared: &Shared<H>,
    stream: TcpStream,
    remote: SocketAddr,
    local: SocketAddr,
    stopped: watch::Receiver<bool>,
) where
    H: Fn(Request<Incoming>, ConnInfo) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let mut conn = ConnInfo::new(remote, local, shared.tls.is_some());
    let stream: Box<dyn Io> = match &shared.tls {
        Some(acceptor) => {
            match tokio::time::timeout(shared.handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => {
                    conn.client = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .and_then(|leaf| shared.ingress.as_ref()?.identify_certificate(leaf));
                    Box::new(stream)
                }
                Ok(Err(err)) => {
                    tracing::debug!(%remote, "TLS handshake failed: {err}");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%remote, timeout = ?shared.handshake_timeout, "TLS handshake not done in time");
                    return;
                }
            }
        }
        None => Box::new(stream),
    };
    // The guard reads the first bytes itself: the preface, not ALPN, says HTTP/2 (a client that
    // negotiated h2 and then speaks HTTP/1 gets the HTTP/1 checks).
    let mut guarded = FramingGuard::new(stream, remote, shared.deadlines);
    let protocol = match guarded.detect().await {
        Ok(protocol) => protocol,
        Err(err) => {
            tracing::debug!(%remote, "connection failed before its first request: {err}");
            return;
        }
    };
    // HTTP/2 has no idle timer of its own: the connection counts its open streams.
    let activity = (protocol == Protocol::Http2).then(|| Arc::new(Activity::default()));
    let service = {
        let handler = shared.handler.clone();
        let activity = activity.clone();
        service_fn(move |request| {
            let busy = activity.as_ref().map(Activity::begin);
            let handler = handler.clone();
            let conn = conn.clone();
            async move {
                let response = handler(request, conn).await;
                Ok::<_, Infallible>(response.map(|body| Tracked { body, _busy: busy }))
            }
        })
    };
    let io = TokioIo::new(guarded);
    let result = match protocol {
        Protocol::Gone => return,
        Protocol::Http1 => {
            let served = pin!(shared.http1.serve_connection(io, service));
            drive(served, |c| c.graceful_shutdown(), stopped, None).await
        }
        Protocol::Http2 => {
            let served = pin!(shared.http2.serve_connection(io, service));
            let idle = activity.map(|activity| (activity, shared.idle_timeout));
            drive(served, |c| c.graceful_shutdown(), stopped, idle).await
        }
    };
    if let Err(err) = result {
        tracing::debug!(%remote, "connection ended with an error: {err}");
    }
}

/// Serves a connection to its end; on shutdown, or once idle for long enough, it is asked to
/// finish what is in flight and close.
async fn drive<C>(
    mut served: Pin<&mut C>,
    graceful_shutdown: fn(Pin<&mut C>),
    mut stopped: watch::Receiver<bool>,
    idle: Option<(Arc<Activity>, Duration)>,
) -> hyper::Result<()>
where
    C: Future<Output = hyper::Result<()>>,
{
    let mut idle_for = pin!(async {
        match &idle {
            Some((activity, timeout)) => activity.idle_for(*timeout).await,
            None => std::future::pending().await,
        }
    });
    let mut closing = false;
    loop {
        tokio::select! {
            result = served.as_mut() => return result,
            _ = stopped.wait_for(|&stop| stop), if !closing => {}
            () = idle_for.as_mut(), if !closing => {
                tracing::debug!("closing an idle HTTP/2 connection");
            }
        }
        closing = true;
        graceful_shutdown(served.as_mut());
    }
}

/// Runs one connection until it ends or the grace period is over; dropping it closes it.
async fn until_closed(mut closed: watch::Receiver<bool>, connection: impl Future<Output = ()>) {
    tokio::select! {
        () = connection => {}
        _ = closed.changed() => {}
    }
}

/// Requests in flight on one HTTP/2 connection.
#[derive(Debug, Default)]
struct Activity {
    in_flight: AtomicUsize,
    changed: Notify,
}

impl Activity {
    fn begin(self: &Arc<Self>) -> Busy {
        if self.in_flight.fetch_add(1, Ordering::AcqRel) == 0 {
            self.changed.notify_waiters();
        }
        Busy(self.clone())
    }

    /// Returns once no request has been in flight for `timeout`.
    async fn idle_for(&self, timeout: Duration) {
        loop {
            let mut changed = pin!(self.changed.notified());
            changed.as_mut().enable();
            if self.in_flight.load(Ordering::Acquire) == 0 {
                if tokio::time::timeout(timeout, changed).await.is_err() {
                    return;
                }
            } else {
                changed.await;
            }
        }
    }
}

/// A request in flight, until its response body is done or dropped.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.changed.notify_waiters();
        }
    }
}

/// A response body that keeps its request counted as in flight (HTTP/2 only).
struct Tracked {
    body: ProxyBody,
    _busy: Option<Busy>,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = crate::proxy::body::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
