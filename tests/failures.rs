//! When the target cannot be reached or does not answer, the client gets a 502 or 504 with a
//! JSON body that names the route, the side at fault and the cause, and never a secret.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;
use provproxy::demo::client::Reply;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use common::{closed_port, error_body, get, proxy, read_head, serve, PATIENCE};

const PASSWORD: &str = "route-password-5e1b77";

/// A route `/r/` to `upstream` with Basic auth from [`PASSWORD`] and these extra route keys.
fn route(upstream: &str, extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[[routes]]
name = "target"
prefix = "/r/"
upstream = "{upstream}"
{extra}
[routes.auth]
kind = "basic"
username = "svc"
password = {{ env = "PASSWORD" }}
"#
    )
}

/// The error body's fields, after checking that the secret is nowhere in the reply.
fn failure(reply: &Reply) -> serde_json::Value {
    assert!(
        !reply.text().contains(PASSWORD),
        "the route's password leaked into the error body: {}",
        reply.text()
    );
    let body = error_body(reply);
    assert_eq!(body["route"], "target", "{body}");
    assert_eq!(body["side"], "upstream", "{body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
    body
}

#[tokio::test]
async fn a_refused_connection_is_a_502_naming_connect_refused() {
    let closed = closed_port().await;
    let proxy = proxy(
        &route(&format!("http://{closed}"), ""),
        "",
        &[("PASSWORD", PASSWORD)],
    )
    .await;
    let reply = get(proxy.addr(), "/r/Users", &[]).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    let body = failure(&reply);
    assert_eq!(body["error"], "connect_refused");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains(&closed.to_string())),
        "the detail names the target: {body}"
    );
}

/// A 504 naming the response timeout, answered after the route's 300 ms and well before 5 s.
fn answered_response_timeout(reply: &Reply, took: Duration) {
    assert_eq!(
        reply.status,
        StatusCode::GATEWAY_TIMEOUT,
        "{}",
        reply.text()
    );
    assert_eq!(failure(reply)["error"], "response_timeout");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "answered after {took:?}"
    );
}

#[tokio::test]
async fn a_target_that_never_answers_is_a_504_within_request_timeout() {
    let target = serve(None, |_request, _conn| std::future::pending()).await;
    let proxy = proxy(
        &route(&target.url(), r#"request_timeout = "300ms""#),
        "",
        &[("PASSWORD", PASSWORD)],
    )
    .await;
    let started = Instant::now();
    let reply = get(proxy.addr(), "/r/Users", &[]).await;
    let took = started.elapsed();
    answered_response_timeout(&reply, took);
}

/// A loopback listener whose accept queue is full and never drained: the kernel drops further
/// SYNs, so a new connection hangs in connect the way a firewalled target does. `None` when
/// this kernel answers instead (then no connect timeout can be made on loopback).
async fn unanswered_address() -> Option<(std::net::SocketAddr, Vec<TcpStream>, TcpListener)> {
    let socket = TcpSocket::new_v4().ok()?;
    socket.bind("127.0.0.1:0".parse().ok()?).ok()?;
    let addr = socket.local_addr().ok()?;
    let listener = socket.listen(0).ok()?;
    let mut queued = Vec::new();
    for _ in 0..16 {
        match tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => queued.push(stream),
            Ok(Err(_)) => return None,
            Err(_) => return Some((addr, queued, listener)),
        }
    }
    None
}

#[tokio::test]
async fn a_connection_that_is_never_accepted_is_a_504_within_connect_timeout() {
    let Some((addr, _queued, _listener)) = unanswered_address().await else {
        panic!("could not fill a loopback accept queue on this kernel");
    };
    let proxy = proxy(
        &route(
            &format!("http://{addr}"),
            r#"connect_timeout = "300ms"
request_timeout = "30s""#,
        ),
        "",
        &[("PASSWORD", PASSWORD)],
    )
    .await;
    let started = Instant::now();
    let reply = get(proxy.addr(), "/r/Users", &[]).await;
    let took = started.elapsed();
    assert_eq!(
        reply.status,
        StatusCode::GATEWAY_TIMEOUT,
        "{}",
        reply.text()
    );
    assert_eq!(failure(&reply)["error"], "connect_timeout");
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
}

#[tokio::test]
async fn an_unresolvable_host_is_a_502_naming_dns() {
    let proxy = proxy(
        &route(
            "http://provproxy-test.invalid:8080",
            r#"connect_timeout = "2s""#,
        ),
        "",
        &[("PASSWORD", PASSWORD)],
    )
    .await;
    let reply = tokio::time::timeout(PATIENCE, get(proxy.addr(), "/r/Users", &[]))
        .await
        .expect("answered in time");
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.text());
    let body = failure(&reply);
    assert_eq!(body["error"], "dns", "{body}");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("provproxy-test.invalid")),
        "{body}"
    );
}

/// A raw target that answers the first request on each connection and never the second, and
/// counts the connections it accepted.
async fn answers_once_per_connection() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind target");
    let addr = listener.local_addr().expect("target address");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if read_head(&mut stream).await.is_none() {
                    return;
                }
                let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                if stream.write_all(answer).await.is_err() {
                    return;
                }
                // The next request is read and never answered; the connection stays open.
                let _ = read_head(&mut stream).await;
                std::future::pending::<()>().await;
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn a_second_request_on_a_kept_alive_target_connection_still_times_out_on_time() {
    let (target, accepted) = answers_once_per_connection().await;
    let proxy = proxy(
        &route(&format!("http://{target}"), r#"request_timeout = "300ms""#),
        "",
        &[("PASSWORD", PASSWORD)],
    )
    .await;
    let first = get(proxy.addr(), "/r/Users", &[]).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    // The target connection was kept with the first request's deadline still set on it. Half
    // the timeout passes before the second request (the scenario, not a synchronisation): a
    // timer left at the first deadline would end the second request halfway.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let started = Instant::now();
    let reply = tokio::time::timeout(PATIENCE, get(proxy.addr(), "/r/Users", &[]))
        .await
        .expect("the proxy answered the second request");
    let took = started.elapsed();
    answered_response_timeout(&reply, took);
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "the second request went over the kept-alive connection"
    );
}
