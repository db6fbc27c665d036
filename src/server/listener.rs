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
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify};
use tokio_rustls::TlsAcceptor;

use super::framing::{Deadlines, FramingGuard, Protocol};
// A client connection, plain or TLS, as one type so that one code path serves both.
use super::http1::{parse::HeadError, Error as ConnectionError, Io};
use super::news::poll_on_news;
use super::{Current, Side};
use crate::admin;
use crate::body::ProxyBody;
use crate::config::Limits;
use crate::ingress::Ingress;
use crate::proxy::ConnInfo;

/// The header count hyper allows when none is configured.
const HYPER_DEFAULT_MAX_HEADERS: usize = 100;

/// Counts of the proxy listener's connections, read by the metrics at scrape time and kept
/// across reloads.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    open: AtomicUsize,
    refused: AtomicU64,
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
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How a plan's connections are served: hyper's settings, the deadlines, the connection cap.
pub(super) struct Connections {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    handshake_timeout: Duration,
    deadlines: Deadlines,
    idle_timeout: Duration,
    /// The proxy listener's HTTP/1 connections (our own server, not hyper's).
    proxy_http1: super::http1::Settings,
    /// The proxy listener's `max_connections`.
    cap: Option<usize>,
}

impl Connections {
    pub(super) fn new(limits: &Limits) -> Connections {
        let mut http1 = http1::Builder::new();
        // hyper's header timer runs from the end of one response until the next request head
        // is in: the keep-alive idle time. The guard times each head from its first byte.
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(limits.idle_timeout)
            .max_buf_size(limits.max_header_bytes.max(8192));
        // hyper parses up to 100 headers in a stack array, but any explicit limit, 100
        // included, makes it build and initialise a heap array for every request head.
        if limits.max_headers != HYPER_DEFAULT_MAX_HEADERS {
            http1.max_headers(limits.max_headers);
        }
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .keep_alive_interval(limits.http2_keep_alive_interval)
            .keep_alive_timeout(limits.http2_keep_alive_timeout);
        Connections {
            http1,
            http2,
            handshake_timeout: limits.tls_handshake_timeout,
            deadlines: Deadlines {
                first_byte: limits.first_byte_timeout,
                head: limits.header_read_timeout,
            },
            idle_timeout: limits.idle_timeout,
            proxy_http1: super::http1::Settings {
                limits: super::http1::parse::Limits {
                    max_head_bytes: limits.max_header_bytes,
                    max_headers: limits.max_headers,
                },
                idle_timeout: limits.idle_timeout,
                head_timeout: limits.header_read_timeout,
            },
            cap: limits.max_connections,
        }
    }
}

/// What one connection was accepted with: the settings, TLS and client identities of the plan
/// current at accept.
struct Accepted {
    connections: Arc<Connections>,
    tls: Option<TlsAcceptor>,
    ingress: Option<Arc<Ingress>>,
}

/// Accepts connections until told to stop, then waits for open connections to finish their
/// in-flight requests (at most the current plan's grace period). Each connection takes the TLS
/// and HTTP settings of the plan current when it was accepted; each request on it, the plan
/// current when the request arrived.
pub(super) async fn serve(
    socket: TcpListener,
    side: Side,
    current: Current,
    mut stopped: watch::Receiver<bool>,
) {
    // Fires when the grace period is over, so that connections still busy are closed rather
    // than outliving `shutdown()` (a library user's runtime would keep serving them).
    let (close, closed) = watch::channel(false);
    // Each connection holds a sender; the receiver sees the end once all of them are gone.
    let (open, mut all_closed) = mpsc::channel::<()>(1);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = socket.accept() => match accepted {
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
        let generation = current.load_full();
        let accepted = Accepted {
            connections: generation.connections.clone(),
            tls: match side {
                Side::Proxy => generation.tls.clone(),
                Side::Admin => None,
            },
            ingress: match side {
                Side::Proxy => Some(generation.ingress.clone()),
                Side::Admin => None,
            },
        };
        let slot = match side {
            Side::Proxy => {
                let stats = &generation.connection_stats;
                let Some(slot) = stats.admit(accepted.connections.cap) else {
                    if stats.should_log_refusal() {
                        tracing::warn!(
                            client = %remote,
                            max_connections = accepted.connections.cap,
                            refused_so_far = stats.refused(),
                            "refused a connection: server.max_connections are open"
                        );
                    }
                    continue;
                };
                Some(slot)
            }
            Side::Admin => None,
        };
        drop(generation);
        let _ = stream.set_nodelay(true);
        // With a `0.0.0.0`/`::` listener, the address this connection came in on is the one its
        // client may name in `Host`; unknown, it is unspecified, which serves no name.
        let local = stream
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let current = current.clone();
        let stopped = stopped.clone();
        let open = open.clone();
        tokio::spawn(until_closed(closed.clone(), async move {
            let _counted = (slot, open);
            connection(accepted, stream, remote, local, side, current, stopped).await;
        }));
    }
    drop(socket);
    drop(open);
    let grace = current.load().plan.server.shutdown_grace;
    if tokio::time::timeout(grace, all_closed.recv())
        .await
        .is_err()
    {
        tracing::warn!(
            ?grace,
            "grace period over; closing connections with requests still in flight"
        );
        let _ = close.send(true);
    }
}

/// One client connection, from accept to close.
async fn connection(
    accepted: Accepted,
    stream: TcpStream,
    remote: SocketAddr,
    local: SocketAddr,
    side: Side,
    current: Current,
    stopped: watch::Receiver<bool>,
) {
    let Accepted {
        connections,
        tls,
        ingress,
    } = accepted;
    let mut conn = ConnInfo::new(remote, local, tls.is_some());
    let stream: Box<dyn Io> = match &tls {
        Some(acceptor) => {
            match tokio::time::timeout(connections.handshake_timeout, acceptor.accept(stream)).await
            {
                Ok(Ok(stream)) => {
                    conn.client = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .and_then(|leaf| ingress.as_ref()?.identify_certificate(leaf));
                    Box::new(stream)
                }
                Ok(Err(err)) => {
                    tracing::debug!(%remote, "TLS handshake failed: {err}");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%remote, timeout = ?connections.handshake_timeout, "TLS handshake not done in time");
                    return;
                }
            }
        }
        None => Box::new(stream),
    };
    // The guard reads the first bytes itself: the preface, not ALPN, says HTTP/2 (a client that
    // negotiated h2 and then speaks HTTP/1 gets the HTTP/1 checks).
    // The proxy's HTTP/1 connections are served by our own strict parser: the guard only tells
    // them from HTTP/2 there.
    let mut guarded = match side {
        Side::Proxy => FramingGuard::unscanned(stream, remote, connections.deadlines),
        Side::Admin => FramingGuard::new(stream, remote, connections.deadlines),
    };
    let protocol = match guarded.detect().await {
        Ok(protocol) => protocol,
        Err(err) => {
            tracing::debug!(%remote, "connection failed before its first request: {err}");
            return;
        }
    };
    if let (Side::Proxy, Protocol::Http1) = (side, protocol) {
        let conn = &conn;
        let handle = |request| {
            let generation = current.load_full();
            async move { generation.proxy.handle(request, conn).await }
        };
        let (stream, read) = guarded.into_parts();
        let served = super::http1::serve(stream, read, connections.proxy_http1, handle, stopped);
        match served.await {
            Ok(()) => {}
            // As the framing guard logged them: an operator sees why a client got a 400.
            Err(refused @ ConnectionError::Refused(HeadError::Refused(_))) => {
                tracing::warn!(client = %remote, "{refused}");
            }
            Err(err) => tracing::debug!(%remote, "connection ended with an error: {err}"),
        }
        return;
    }
    // HTTP/2 has no idle timer of its own: the connection counts its open streams.
    let activity = (protocol == Protocol::Http2).then(|| Arc::new(Activity::default()));
    let service = {
        let activity = activity.clone();
        service_fn(move |request: http::Request<hyper::body::Incoming>| {
            let busy = activity.as_ref().map(Activity::begin);
            let generation = current.load_full();
            let conn = conn.clone();
            async move {
                let response = match side {
                    Side::Proxy => {
                        generation
                            .proxy
                            .handle(request.map(Into::into), &conn)
                            .await
                    }
                    Side::Admin => match &generation.admin {
                        Some(admin) => admin.handle(request, conn.local).await,
                        None => admin::gone(),
                    },
                };
                Ok::<_, Infallible>(response.map(|body| Tracked { body, _busy: busy }))
            }
        })
    };
    let io = TokioIo::new(guarded);
    let result = match protocol {
        Protocol::Gone => return,
        Protocol::Http1 => {
            let served = pin!(connections.http1.serve_connection(io, service));
            drive(served, |c| c.graceful_shutdown(), stopped, None).await
        }
        Protocol::Http2 => {
            let served = pin!(connections.http2.serve_connection(io, service));
            let idle = activity.map(|activity| (activity, connections.idle_timeout));
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
    let mut connection = pin!(connection);
    let news = closed.clone();
    let mut closing = pin!(async move {
        let _ = closed.changed().await;
    });
    let mut watched = false;
    // Not a `select!`: that would poll the watch on every wake of the connection's task (with
    // a random pick each time), where it only matters once it has news.
    std::future::poll_fn(|cx| {
        if connection.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        poll_on_news(&news, &mut watched, closing.as_mut(), cx)
    })
    .await
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
    type Error = crate::body::BoxError;

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
