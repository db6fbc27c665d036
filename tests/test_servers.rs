//! The test harness itself: a panic in a test server's handler fails the test that started the
//! server, instead of surfacing only as a closed connection.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};

use common::{ok, try_request_h1, Recorded, Upstream};
use http::{Request, Response, StatusCode};
use provproxy::body::{full, ProxyBody};

fn buggy(recorded: &Recorded) -> Response<ProxyBody> {
    if recorded.uri.path() == "/bug" {
        panic!("handler bug at /bug");
    }
    ok(recorded)
}

fn request(path: &str) -> Request<ProxyBody> {
    Request::get(path)
        .header(http::header::HOST, "upstream")
        .body(full(""))
        .expect("request")
}

fn message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

#[tokio::test]
#[should_panic(expected = "handler bug at /bug")]
async fn a_handler_panic_fails_the_test_when_the_server_is_dropped() {
    let upstream = Upstream::start(buggy).await;
    let sent = try_request_h1(upstream.addr(), request("/bug")).await;
    assert!(sent.is_err(), "the client sees the connection close");
    drop(upstream);
}

#[tokio::test]
async fn finish_raises_the_handler_panic_with_its_message() {
    let upstream = Upstream::start(buggy).await;
    let fine = try_request_h1(upstream.addr(), request("/fine"))
        .await
        .expect("a request the handler serves");
    assert_eq!(fine.status, StatusCode::OK);
    assert!(try_request_h1(upstream.addr(), request("/bug"))
        .await
        .is_err());
    let raised = catch_unwind(AssertUnwindSafe(|| upstream.finish()))
        .expect_err("finish raises the handler's panic");
    assert_eq!(message(&*raised), "handler bug at /bug");
}

#[tokio::test]
async fn a_server_whose_handler_never_panicked_finishes_quietly() {
    let upstream = Upstream::start(buggy).await;
    let fine = try_request_h1(upstream.addr(), request("/fine"))
        .await
        .expect("a request the handler serves");
    assert_eq!(fine.status, StatusCode::OK);
    upstream.finish();
}
