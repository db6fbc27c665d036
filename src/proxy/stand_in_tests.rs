//! The pipeline in front of a stand-in [`Forward`]: what would reach the target, attempt by
//! attempt, with no target at all. The client side is real (a hyper connection on 127.0.0.1).

use std::convert::Infallible;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, HOST, SET_COOKIE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

use super::{token_sources, ConnInfo, Proxy, Shared};
use crate::admin::stats::ModuleStats;
use crate::body::{full, ProxyBody, RequestBody};
use crate::config::Plan;
use crate::ingress::origin::ServedNames;
use crate::ingress::Ingress;
use crate::metrics::Metrics;
use crate::session::Sessions;
use crate::upstream::{Forward, UpstreamError};

/// One attempt as the stand-in received it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    method: Method,
    path: String,
    cookie: Option<String>,
    authorization: Option<String>,
    body: Bytes,
}

/// A session-locked target: a request without a cookie opens session N (`SID=N`); session 1
/// has ended, so a request that presents it gets 401.
#[derive(Default)]
struct SessionLocked {
    seen: Mutex<Vec<Seen>>,
    sessions: AtomicU32,
}

impl Forward for SessionLocked {
    type Body = ProxyBody;

    async fn forward(
        &self,
        request: Request<ProxyBody>,
    ) -> Result<Response<ProxyBody>, UpstreamError> {
        let (parts, body) = request.into_parts();
        let body = body
            .collect()
            .await
            .map(|collected| collected.to_bytes())
            .unwrap_or_default();
        let text = |name| {
            parts
                .headers
                .get(name)
                .and_then(|value: &http::HeaderValue| value.to_str().ok())
                .map(str::to_owned)
        };
        let cookie = text(COOKIE);
        let seen = Seen {
            method: parts.method.clone(),
            path: parts.uri.path().to_owned(),
            cookie: cookie.clone(),
            authorization: text(AUTHORIZATION),
            body,
        };
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(seen);
        let response = Response::builder().header(CONTENT_TYPE, "application/json");
        let response = match cookie.as_deref() {
            None => {
                let session = self.sessions.fetch_add(1, Ordering::SeqCst) + 1;
                response
                    .status(StatusCode::OK)
                    .header(SET_COOKIE, format!("SID={session}; Path=/"))
                    .body(full(r#"{"ok":true}"#))
            }
            Some("SID=1") => response
                .status(StatusCode::UNAUTHORIZED)
                .body(full(r#"{"description":"Session expired"}"#)),
            Some(_) => response.status(StatusCode::OK).body(full(r#"{"ok":true}"#)),
        };
        Ok(response.expect("a valid response"))
    }
}

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"

[[routes]]
name = "osmc"
prefix = "/osmc/"
strip_prefix = true
upstream = "http://127.0.0.1:1"

[routes.auth]
kind = "basic"
username = "svc"
password = "pw"

[routes.session]
cookies = true
relogin_on = [401]
"#;

/// The proxy of [`CONFIG`] with `osmc` sent to `target`, serving on 127.0.0.1.
async fn proxy_in_front_of(target: Arc<SessionLocked>) -> std::net::SocketAddr {
    let plan = crate::config::load_str(CONFIG, "t.toml", std::path::Path::new("."), &|_| None)
        .expect("valid config");
    let (mut proxy, _) = untraced_proxy(&plan);
    assert!(proxy.forward_to("osmc", target));
    assert!(!proxy.forward_to("nosuch", Arc::new(SessionLocked::default())));
    serve(proxy).await
}

/// The pipeline of `plan` with no tracer, and the sessions it keeps: what a test puts its
/// stand-ins into.
pub(crate) fn untraced_proxy(plan: &Plan) -> (Proxy, Sessions) {
    let sessions = Sessions::open(&plan.routes, &plan.state, false).expect("sessions");
    let ingress = Arc::new(Ingress::new(
        &plan.server.clients,
        ServedNames::for_proxy(plan),
        plan.server.allow_browsers,
    ));
    let tokens = token_sources(plan, &crate::clock::system()).expect("token sources");
    let metrics = Metrics::new(
        &plan.routes,
        ModuleStats {
            sessions: sessions.clone(),
            tracer: None,
            ingress: ingress.clone(),
            tokens: Vec::new(),
            connections: Arc::default(),
            reload: None,
            redis: None,
        },
    );
    let shared = Shared {
        metrics,
        ingress,
        sessions: sessions.clone(),
        tracer: None,
        tokens,
        redis: None,
    };
    (Proxy::new(plan, shared).expect("proxy"), sessions)
}

/// Serves `proxy` over HTTP/1 on 127.0.0.1, one task per connection.
pub(crate) async fn serve(proxy: Proxy) -> std::net::SocketAddr {
    let proxy = Arc::new(proxy);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((stream, remote)) = listener.accept().await {
            let proxy = proxy.clone();
            let conn = ConnInfo::new(remote, addr, false);
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let (proxy, conn) = (proxy.clone(), conn.clone());
                    async move {
                        Ok::<_, Infallible>(
                            proxy.handle(request.map(RequestBody::Hyper), &conn).await,
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn the_stand_in_sees_each_attempt_and_a_dead_session_is_replayed_once_without_it() {
    let target = Arc::new(SessionLocked::default());
    let addr = proxy_in_front_of(target.clone()).await;
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut client, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    let create = Bytes::from_static(br#"{"userName":"jdoe"}"#);
    for (method, body) in [
        (Method::GET, Bytes::new()),
        (Method::POST, create.clone()),
        (Method::GET, Bytes::new()),
    ] {
        let request = Request::builder()
            .method(method)
            .uri("/osmc/Users")
            .header(HOST, addr.to_string())
            .body(Full::new(body))
            .expect("request");
        let response = client.send_request(request).await.expect("response");
        assert_eq!(response.status(), StatusCode::OK);
        assert!(!response.headers().contains_key(SET_COOKIE));
        response.into_body().collect().await.expect("body");
    }

    let basic = Some("Basic c3ZjOnB3".to_owned());
    let attempt = |method: Method, cookie: Option<&str>, body: &Bytes| Seen {
        method,
        path: "/Users".into(),
        cookie: cookie.map(str::to_owned),
        authorization: basic.clone(),
        body: body.clone(),
    };
    let seen = target.seen.lock().expect("seen").clone();
    assert_eq!(
        seen,
        [
            attempt(Method::GET, None, &Bytes::new()),
            // Session 1 is gone: the same request goes once more, without the dead cookie,
            // and opens session 2, which the next request carries.
            attempt(Method::POST, Some("SID=1"), &create),
            attempt(Method::POST, None, &create),
            attempt(Method::GET, Some("SID=2"), &Bytes::new()),
        ]
    );
}
