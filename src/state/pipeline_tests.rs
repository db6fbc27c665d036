//! The pipeline through the state seam: every lease comes from the backend it is given, and a
//! backend that cannot answer becomes a 503 `state_unavailable` naming the route.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST, SET_COOKIE};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

use super::{FakeState, LocalState, StateBackend};
use crate::admin::stats::ModuleStats;
use crate::body::{full, ProxyBody};
use crate::ingress::origin::ServedNames;
use crate::ingress::Ingress;
use crate::metrics::Metrics;
use crate::proxy::{token_sources, ConnInfo, Proxy, Shared};
use crate::session::Sessions;
use crate::upstream::{Forward, UpstreamError};

/// A target that opens a session on the first request and counts what reaches it.
#[derive(Default)]
struct Target {
    seen: AtomicUsize,
}

impl Forward for Target {
    type Body = ProxyBody;

    async fn forward(
        &self,
        _request: Request<ProxyBody>,
    ) -> Result<Response<ProxyBody>, UpstreamError> {
        self.seen.fetch_add(1, Ordering::SeqCst);
        Ok(Response::builder()
            .header(CONTENT_TYPE, "application/json")
            .header(SET_COOKIE, "SID=1; Path=/")
            .body(full(r#"{"ok":true}"#))
            .expect("a valid response"))
    }
}

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"

[[routes]]
name = "osmc"
prefix = "/osmc/"
upstream = "http://127.0.0.1:1"

[routes.session]
cookies = true
relogin_on = [401]
"#;

/// The proxy of [`CONFIG`] in front of `target`, taking its state from `state`.
async fn proxy_with(
    target: Arc<Target>,
    state: impl FnOnce(Sessions) -> StateBackend,
) -> std::net::SocketAddr {
    let plan = crate::config::load_str(CONFIG, "t.toml", std::path::Path::new("."), &|_| None)
        .expect("valid config");
    let sessions = Sessions::open(&plan.routes, &plan.state, false).expect("sessions");
    let ingress = Arc::new(Ingress::new(
        &plan.server.clients,
        ServedNames::for_proxy(&plan),
        plan.server.allow_browsers,
    ));
    let metrics = Metrics::new(
        &plan.routes,
        ModuleStats {
            sessions: sessions.clone(),
            tracer: None,
            ingress: ingress.clone(),
            tokens: Vec::new(),
            reload: None,
            connections: Arc::default(),
        },
    );
    let shared = Shared {
        metrics,
        ingress,
        sessions: sessions.clone(),
        tracer: None,
        tokens: token_sources(&plan, &crate::clock::system()).expect("token sources"),
    };
    let mut proxy = Proxy::new(&plan, shared).expect("proxy");
    assert!(proxy.forward_to("osmc", target));
    proxy.use_state(state(sessions));
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
                    async move { Ok::<_, Infallible>(proxy.handle(request, &conn).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// Status and body of one `GET /osmc/Users`.
async fn get(addr: std::net::SocketAddr) -> (StatusCode, Bytes) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut client, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    let request = Request::builder()
        .uri("/osmc/Users")
        .header(HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .expect("request");
    let response = client.send_request(request).await.expect("response");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, body)
}

#[tokio::test]
async fn every_lease_comes_through_the_state_backend() {
    let target = Arc::new(Target::default());
    let mut fake = None;
    let addr = proxy_with(target.clone(), |sessions| {
        let state = Arc::new(FakeState::new(LocalState::new(sessions)));
        fake = Some(state.clone());
        StateBackend::Fake(state)
    })
    .await;
    let fake = fake.expect("the backend was installed");
    for _ in 0..2 {
        assert_eq!(get(addr).await.0, StatusCode::OK);
    }
    assert_eq!(fake.calls(), ["lease osmc", "lease osmc"]);
    assert_eq!(target.seen.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_unavailable_state_backend_is_a_503_naming_the_route_and_nothing_reaches_the_target() {
    let target = Arc::new(Target::default());
    let addr = proxy_with(target.clone(), |sessions| {
        let state = FakeState::new(LocalState::new(sessions));
        state.go_down();
        StateBackend::Fake(Arc::new(state))
    })
    .await;
    let (status, body) = get(addr).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let json: serde_json::Value = serde_json::from_slice(&body).expect("a JSON body");
    assert_eq!(json["error"], "state_unavailable", "{json}");
    assert_eq!(json["route"], "osmc", "{json}");
    assert_eq!(json["side"], "proxy", "{json}");
    assert!(
        json["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains("session lease")),
        "{json}"
    );
    assert_eq!(target.seen.load(Ordering::SeqCst), 0);
}
