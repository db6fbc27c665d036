//! The pipeline through the state seam: every lease comes from the backend it is given, and a
//! backend that cannot answer becomes a 503 `state_unavailable` naming the route.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST, SET_COOKIE};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::{FakeState, LocalState, StateBackend};
use crate::body::{full, ProxyBody};
use crate::proxy::stand_in_tests::{serve, untraced_proxy};
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
    let (mut proxy, sessions) = untraced_proxy(&plan);
    assert!(proxy.forward_to("osmc", target));
    proxy.use_state(state(sessions));
    serve(proxy).await
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
