//! Keep-alive HTTP/1.1 connections to one target. A request takes the most recently used idle
//! connection (so a burst's connections stay warm and the rest age out) and its response body
//! hands the connection back the moment it ends. hyper-util's pool spent a boxed future, a
//! mutex-guarded hash map lookup and a spawned task on every request to do the same; here it
//! is a `Vec` push and pop.

use std::error::Error as StdError;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::clock::SharedClock;

use bytes::Bytes;
use http::Uri;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use tower_service::Service;

use super::http1::{self, Conn, ResponseBody};

pub type ConnectError = Box<dyn StdError + Send + Sync>;

pub struct Pool {
    connector: HttpsConnector<HttpConnector>,
    /// `scheme://authority`, what the connector dials.
    dial: Uri,
    idle: Mutex<Vec<Idle>>,
    idle_timeout: Duration,
    reaper: OnceLock<()>,
    /// Dates idle connections; the reaper's period is real time, its judgement this clock's.
    clock: SharedClock,
}

struct Idle {
    conn: Conn,
    since: Instant,
}

impl Pool {
    pub fn new(
        connector: HttpsConnector<HttpConnector>,
        dial: Uri,
        idle_timeout: Duration,
        clock: SharedClock,
    ) -> Arc<Pool> {
        Arc::new(Pool {
            connector,
            dial,
            idle: Mutex::new(Vec::new()),
            idle_timeout,
            reaper: OnceLock::new(),
            clock,
        })
    }

    /// An idle connection ready for a request, newest first; `None` when none is left. One
    /// the target closed (or that has bytes nobody asked for) is dropped, never handed out.
    pub fn idle(&self) -> Option<Conn> {
        let now = self.clock.now();
        let mut idle = self.lock();
        while let Some(mut newest) = idle.pop() {
            if now.saturating_duration_since(newest.since) >= self.idle_timeout {
                // The newest is too old, so are all the others.
                idle.clear();
                return None;
            }
            if !newest.conn.is_closed() {
                return Some(newest.conn);
            }
        }
        None
    }

    /// A new connection (TCP, and TLS for `https`).
    pub async fn connect(self: &Arc<Self>) -> Result<Conn, ConnectError> {
        self.reaper.get_or_init(|| self.start_reaper());
        let mut connector = self.connector.clone();
        let io = connector.call(self.dial.clone()).await?;
        Ok(Conn::new(io))
    }

    /// The idle list; a panic elsewhere while it was held leaves it consistent (every change is
    /// one push, pop, clear or retain), so a poisoned lock is still used.
    fn lock(&self) -> MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn checkin(&self, conn: Conn) {
        let since = self.clock.now();
        let mut idle = self.lock();
        idle.push(Idle { conn, since });
    }

    /// Closes connections idle for longer than `idle_timeout` even when no request comes to
    /// find them stale; the task ends once the pool is gone.
    fn start_reaper(self: &Arc<Self>) {
        let pool: Weak<Pool> = Arc::downgrade(self);
        let period = self.idle_timeout;
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(pool) = pool.upgrade() else {
                    return;
                };
                pool.reap();
            }
        });
    }

    /// One round of the reaper: drops the connections idle past `idle_timeout` or closed.
    fn reap(&self) {
        let now = self.clock.now();
        self.lock().retain_mut(|entry| {
            now.saturating_duration_since(entry.since) < self.idle_timeout
                && !entry.conn.is_closed()
        });
    }

    #[cfg(test)]
    fn idle_count(&self) -> usize {
        self.lock().len()
    }
}

/// A target's response body that gives its connection back to the pool once it has been read
/// to the end. A body dropped earlier takes the connection with it: the unread rest of the
/// response makes it unusable.
pub struct UpstreamBody {
    inner: ResponseBody,
    pool: Option<Arc<Pool>>,
}

impl UpstreamBody {
    pub fn new(inner: ResponseBody, pool: Arc<Pool>) -> Self {
        UpstreamBody {
            inner,
            pool: Some(pool),
        }
    }

    fn give_back(&mut self) {
        if let Some(pool) = self.pool.take() {
            if let Some(conn) = self.inner.take_reusable() {
                pool.checkin(conn);
            }
        }
    }
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = http1::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, http1::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.give_back();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // An empty body (`Content-Length: 0`, a 204, a HEAD) is complete without being polled.
        if http_body::Body::is_end_stream(&self.inner) {
            self.give_back();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use http_body_util::BodyExt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// How the test target ends a connection after each response.
    #[derive(Clone, Copy)]
    enum Ending {
        KeepAlive,
        /// `Connection: close` on the response, then closes.
        Announced,
        /// Closes without a word after the response, as a target's idle timeout does.
        Silently,
    }

    /// A target that counts its connections and answers every request on them with `body`.
    async fn counting_target(body: &'static str, ending: Ending) -> (Uri, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut seen = Vec::new();
                    loop {
                        let Ok(n) = stream.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buf[..n]);
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.drain(..end + 4);
                            let close = match ending {
                                Ending::Announced => "connection: close\r\n",
                                _ => "",
                            };
                            let response = format!(
                                "HTTP/1.1 200 OK\r\n{close}content-length: {}\r\n\r\n{body}",
                                body.len()
                            );
                            if stream.write_all(response.as_bytes()).await.is_err() {
                                return;
                            }
                            match ending {
                                Ending::KeepAlive => {}
                                Ending::Announced => return,
                                Ending::Silently => return,
                            }
                        }
                    }
                });
            }
        });
        let uri = format!("http://{addr}").parse().expect("uri");
        (uri, accepted)
    }

    fn pool(dial: Uri, idle_timeout: Duration) -> Arc<Pool> {
        pool_at(dial, idle_timeout, crate::clock::system())
    }

    fn pool_at(dial: Uri, idle_timeout: Duration, clock: SharedClock) -> Arc<Pool> {
        let connector =
            crate::upstream::connector(&Default::default(), Duration::from_secs(2)).expect("tls");
        Pool::new(connector, dial, idle_timeout, clock)
    }

    async fn get(pool: &Arc<Pool>) -> UpstreamBody {
        let conn = match pool.idle() {
            Some(conn) => conn,
            None => pool.connect().await.expect("connect"),
        };
        let request = http::Request::builder()
            .uri("/")
            .header(http::header::HOST, "target")
            .body(crate::body::empty())
            .expect("request");
        let response = match http1::send(conn, http1::Outgoing::new(request)).await {
            Ok(response) => response,
            Err(failed) => panic!("exchange failed: {}", failed.error),
        };
        UpstreamBody::new(response.into_body(), pool.clone())
    }

    /// One request's body, read to its end.
    async fn fetch(pool: &Arc<Pool>) -> Bytes {
        get(pool).await.collect().await.expect("body").to_bytes()
    }

    #[tokio::test]
    async fn a_body_read_to_the_end_returns_its_connection_for_the_next_request() {
        let (dial, accepted) = counting_target("{\"ok\":true}", Ending::KeepAlive).await;
        let pool = pool(dial, Duration::from_secs(60));
        for _ in 0..5 {
            let body = fetch(&pool).await;
            assert_eq!(&body[..], b"{\"ok\":true}");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(pool.idle_count(), 1);
    }

    #[tokio::test]
    async fn a_body_dropped_before_its_end_does_not_return_its_connection() {
        let (dial, accepted) = counting_target("unread", Ending::KeepAlive).await;
        let pool = pool(dial, Duration::from_secs(60));
        drop(get(&pool).await);
        assert_eq!(pool.idle_count(), 0);
        fetch(&pool).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_empty_body_returns_its_connection_when_dropped_unread() {
        let (dial, accepted) = counting_target("", Ending::KeepAlive).await;
        let pool = pool(dial, Duration::from_secs(60));
        drop(get(&pool).await);
        drop(get(&pool).await);
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_idle_connection_past_the_idle_timeout_is_not_reused() {
        let (dial, accepted) = counting_target("x", Ending::KeepAlive).await;
        let clock = ManualClock::new();
        let pool = pool_at(dial, Duration::from_secs(50), clock.clone());
        fetch(&pool).await;
        clock.advance(Duration::from_secs(49));
        fetch(&pool).await;
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "reused within the timeout"
        );
        clock.advance(Duration::from_secs(50));
        fetch(&pool).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn the_reaper_closes_idle_connections_when_no_request_comes() {
        let (dial, _) = counting_target("x", Ending::KeepAlive).await;
        let clock = ManualClock::new();
        let pool = pool_at(dial, Duration::from_secs(40), clock.clone());
        fetch(&pool).await;
        pool.reap();
        assert_eq!(pool.idle_count(), 1, "kept while fresh");
        clock.advance(Duration::from_secs(40));
        pool.reap();
        assert_eq!(pool.idle_count(), 0);
    }

    #[tokio::test]
    async fn a_connection_the_target_announced_closing_is_replaced() {
        let (dial, accepted) = counting_target("x", Ending::Announced).await;
        let pool = pool(dial, Duration::from_secs(60));
        for _ in 0..3 {
            let body = fetch(&pool).await;
            assert_eq!(&body[..], b"x");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_connection_the_target_closed_while_idle_is_not_reused() {
        let (dial, accepted) = counting_target("x", Ending::Silently).await;
        let pool = pool(dial, Duration::from_secs(60));
        fetch(&pool).await;
        // The runtime learns of the target's close on its own; wait for that, no longer.
        tokio::time::timeout(Duration::from_secs(5), async {
            while !pool.lock().iter_mut().all(|entry| entry.conn.is_closed()) {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the client side never saw the close");
        let body = fetch(&pool).await;
        assert_eq!(&body[..], b"x");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }
}
