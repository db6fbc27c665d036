//! A small session-locked target for the store's tests: it keeps one session at a time, opens it
//! on a call that finds none (`Set-Cookie: JSESSIONID`), refuses a call without the open
//! session's cookie with 401, and can rotate the id or end the session on demand. It is the
//! behaviour the single-flight and jar tests need from the field case, without the demo.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

const SESSION_COOKIE: &str = "JSESSIONID";

#[derive(Default)]
struct State {
    /// The open session's id and the calls made in it.
    open: Mutex<Option<(String, u64)>>,
    rotate_every: Option<u64>,
    next_id: AtomicU64,
    sessions_opened: AtomicU64,
    refused: AtomicU64,
}

impl State {
    fn open(&self) -> MutexGuard<'_, Option<(String, u64)>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn new_id(&self) -> String {
        format!("S{:08}", self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// `Ok(Some(id))` when the reply sets a (new) session id, `Err` for the lock's refusal.
    fn admit(&self, headers: &HeaderMap) -> Result<Option<String>, ()> {
        let mut open = self.open();
        let Some((id, calls)) = open.as_mut() else {
            let id = self.new_id();
            *open = Some((id.clone(), 1));
            self.sessions_opened.fetch_add(1, Ordering::Relaxed);
            return Ok(Some(id));
        };
        let presented = headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .any(|(name, value)| name == SESSION_COOKIE && value == id);
        if !presented {
            return Err(());
        }
        *calls += 1;
        if self.rotate_every.is_some_and(|n| *calls % n == 0) {
            *id = self.new_id();
            return Ok(Some(id.clone()));
        }
        Ok(None)
    }

    fn reply(&self, headers: &HeaderMap) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(Bytes::new()));
        match self.admit(headers) {
            Err(()) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                *response.status_mut() = StatusCode::UNAUTHORIZED;
            }
            Ok(new_id) => {
                *response.status_mut() = StatusCode::CREATED;
                if let Some(id) = new_id {
                    let cookie = format!("{SESSION_COOKIE}={id}; Path=/; HttpOnly");
                    if let Ok(value) = HeaderValue::try_from(cookie) {
                        response.headers_mut().insert(SET_COOKIE, value);
                    }
                }
            }
        }
        response
    }
}

/// The running target; dropping it stops it.
pub(crate) struct LockedTarget {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl LockedTarget {
    /// Starts the target on `127.0.0.1:0`, rotating the session id every `rotate_every` calls.
    pub(crate) async fn spawn(rotate_every: Option<u64>) -> LockedTarget {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            rotate_every: rotate_every.filter(|n| *n > 0),
            ..State::default()
        });
        let serving = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = serving.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let state = state.clone();
                        async move {
                            let (parts, body) = request.into_parts();
                            let _ = body.collect().await;
                            Ok::<_, Infallible>(state.reply(&parts.headers))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        LockedTarget { addr, state, task }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(crate) fn sessions_opened(&self) -> u64 {
        self.state.sessions_opened.load(Ordering::Relaxed)
    }

    /// Calls refused for want of the open session's cookie.
    pub(crate) fn refused(&self) -> u64 {
        self.state.refused.load(Ordering::Relaxed)
    }

    /// Ends the open session as a timeout would; true when one was open.
    pub(crate) fn expire_session(&self) -> bool {
        self.state.open().take().is_some()
    }
}

impl Drop for LockedTarget {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a call got back.
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
}

/// `POST url` on a connection of its own, with the cookie line when given.
pub(crate) async fn post(url: &str, cookie: Option<&str>) -> Reply {
    let uri: http::Uri = url.parse().unwrap();
    let authority = uri.authority().unwrap().as_str().to_owned();
    let stream = tokio::net::TcpStream::connect(&authority).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let connection = tokio::spawn(connection);
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(uri.path())
        .header(http::header::HOST, authority);
    if let Some(cookie) = cookie {
        request = request.header(COOKIE, cookie);
    }
    let response = sender
        .send_request(request.body(Full::new(Bytes::from_static(b"{}"))).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    body.collect().await.unwrap();
    drop(sender);
    connection.await.unwrap().unwrap();
    Reply {
        status: parts.status,
        headers: parts.headers,
    }
}
