//! Graceful shutdown: a request in flight finishes, new connections are refused meanwhile,
//! `shutdown()` returns once drained, and a request outliving the grace period does not keep
//! it waiting.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use provproxy::body::full;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use common::{proxy, serve, try_request_h1, ConnMeta, Server, PATIENCE};

/// A target that reports each request as it arrives and answers only once `release` is sent.
async fn held_target() -> (Server, mpsc::UnboundedReceiver<()>, watch::Sender<bool>) {
    let (arrived, arrivals) = mpsc::unbounded_channel();
    let (release, released) = watch::channel(false);
    let target = serve(None, move |_request, _: ConnMeta| {
        let arrived = arrived.clone();
        let mut released = released.clone();
        async move {
            let _ = arrived.send(());
            let _ = released.wait_for(|go| *go).await;
            Response::new(full("finished"))
        }
    })
    .await;
    (target, arrivals, release)
}

fn config(grace: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
shutdown_grace = "{grace}"
[[routes]]
name = "slow"
prefix = "/"
upstream = "{{upstream}}"
"#
    )
}

fn slow_request(addr: SocketAddr) -> Request<provproxy::body::ProxyBody> {
    Request::get("/slow")
        .header("host", addr.to_string())
        .body(full(""))
        .expect("request")
}

/// Waits until connecting to `addr` is refused, i.e. until the listener is closed. Polls the
/// condition itself rather than sleeping for a guessed time.
async fn until_refused(addr: SocketAddr) {
    tokio::time::timeout(PATIENCE, async {
        loop {
            match TcpStream::connect(addr).await {
                Err(err) if err.kind() == std::io::ErrorKind::ConnectionRefused => return,
                _ => tokio::task::yield_now().await,
            }
        }
    })
    .await
    .expect("the listener closed after shutdown began");
}

#[tokio::test]
async fn shutdown_lets_the_request_in_flight_finish_refuses_new_connections_and_returns_once_drained(
) {
    let (target, mut arrivals, release) = held_target().await;
    let proxy = proxy(&config("30s"), &target.url(), &[]).await;
    let addr = proxy.addr();
    let in_flight = tokio::spawn(try_request_h1(addr, slow_request(addr)));
    arrivals
        .recv()
        .await
        .expect("the request reached the target");

    let mut shutdown = tokio::spawn(proxy.shutdown());
    until_refused(addr).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(200), &mut shutdown)
            .await
            .is_err(),
        "shutdown returned while a request was still in flight"
    );

    release.send(true).expect("target still running");
    let reply = tokio::time::timeout(PATIENCE, in_flight)
        .await
        .expect("in-flight request finished")
        .expect("client task")
        .expect("the in-flight request got its response");
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "finished");
    tokio::time::timeout(PATIENCE, shutdown)
        .await
        .expect("shutdown returned once drained")
        .expect("shutdown task");
}

#[tokio::test]
async fn a_request_outliving_the_grace_period_does_not_keep_shutdown_waiting() {
    let (target, mut arrivals, _never_released) = held_target().await;
    let proxy = proxy(&config("300ms"), &target.url(), &[]).await;
    let addr = proxy.addr();
    let in_flight = tokio::spawn(try_request_h1(addr, slow_request(addr)));
    arrivals
        .recv()
        .await
        .expect("the request reached the target");

    let started = Instant::now();
    tokio::time::timeout(PATIENCE, proxy.shutdown())
        .await
        .expect("shutdown returned after the grace period");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300),
        "shutdown did not wait the grace period: {took:?}"
    );

    let outcome = tokio::time::timeout(PATIENCE, in_flight)
        .await
        .expect("the connection was closed once the grace period was over")
        .expect("client task");
    assert!(
        outcome.is_err(),
        "the request outliving the grace period got an answer: {outcome:?}"
    );
}
