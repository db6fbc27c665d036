//! Connections that hold a socket without using it are closed on a deadline: an idle TCP
//! connection, a TLS connection that never sends its ClientHello, an HTTP/2 or HTTP/1
//! connection with no request, a preface that stops halfway, an HTTP/2 client that answers no
//! ping. Each test configures a short timeout, waits for the socket's EOF with a deadline well
//! under the defaults, and checks that the close came from the timer rather than at once. A
//! request slower than the idle timeout is not cut, and the connection cap refuses and counts
//! the connection past it.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use provproxy::body::full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::{get, ok, proxy, serve, ConnMeta, Pki, Upstream};

/// The timeouts under test.
const SHORT: Duration = Duration::from_millis(300);
/// Well under every default (10 s and more), so a close within it came from the configured
/// timeout; long enough for a debug build on a busy machine.
const DEADLINE: Duration = Duration::from_secs(5);
/// A close this early would not have come from a 300 ms timer.
const NOT_BEFORE: Duration = Duration::from_millis(250);

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame: what an HTTP/2 client sends right after the preface.
const EMPTY_SETTINGS: &[u8] = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00";

fn config(server: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{server}\n\n[[routes]]\nname = \"t\"\nprefix = \"/\"\nupstream = \"{{upstream}}\"\n"
    )
}

/// Reads (and drops) whatever the proxy sends until it closes the connection; returns how long
/// that took. Fails the test if the connection is still open at the deadline.
async fn closed_within(stream: &mut (impl AsyncReadExt + Unpin), deadline: Duration) -> Duration {
    let started = Instant::now();
    let mut buffer = [0u8; 4096];
    tokio::time::timeout(deadline, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the proxy closes the connection before the deadline");
    started.elapsed()
}

#[tokio::test]
async fn an_idle_tcp_connection_is_closed_after_the_first_byte_timeout() {
    let mut upstream = Upstream::start(ok).await;
    let proxy = proxy(
        &config("first_byte_timeout = \"300ms\""),
        &upstream.url(),
        &[],
    )
    .await;
    let mut stream = TcpStream::connect(proxy.addr()).await.expect("connect");
    let took = closed_within(&mut stream, DEADLINE).await;
    assert!(
        took >= NOT_BEFORE,
        "closed after {took:?}, before the timeout"
    );
    assert!(upstream.received().is_empty());
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_tls_connection_without_a_client_hello_is_closed_after_the_handshake_timeout() {
    let pki = Pki::new();
    let server = format!(
        "tls = {{ cert = {:?}, key = {:?} }}\ntls_handshake_timeout = \"300ms\"",
        pki.cert, pki.key
    );
    let proxy = proxy(&config(&server), "http://127.0.0.1:9", &[]).await;
    let mut stream = TcpStream::connect(proxy.addr()).await.expect("connect");
    let took = closed_within(&mut stream, DEADLINE).await;
    assert!(
        took >= NOT_BEFORE,
        "closed after {took:?}, before the timeout"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_preface_or_head_that_stops_halfway_is_closed_after_the_header_read_timeout() {
    let proxy = proxy(
        &config("header_read_timeout = \"300ms\""),
        "http://127.0.0.1:9",
        &[],
    )
    .await;
    for partial in [&PREFACE[..16], b"GET / HTTP/1.1\r\nHost: x\r\n"] {
        let mut stream = TcpStream::connect(proxy.addr()).await.expect("connect");
        stream.write_all(partial).await.expect("write");
        let took = closed_within(&mut stream, DEADLINE).await;
        assert!(
            took >= NOT_BEFORE,
            "closed after {took:?}, before the timeout"
        );
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn an_http2_connection_without_a_request_is_closed_after_the_idle_timeout() {
    let proxy = proxy(
        &config("idle_timeout = \"300ms\""),
        "http://127.0.0.1:9",
        &[],
    )
    .await;
    let stream = TcpStream::connect(proxy.addr()).await.expect("connect");
    // A real HTTP/2 client: it sends the preface and settings, answers pings, and sends nothing
    // else.
    let (_sender, connection) = hyper::client::conn::http2::handshake::<
        _,
        _,
        provproxy::body::ProxyBody,
    >(TokioExecutor::new(), TokioIo::new(stream))
    .await
    .expect("HTTP/2 handshake");
    let started = Instant::now();
    tokio::time::timeout(DEADLINE, connection)
        .await
        .expect("the proxy closes the idle HTTP/2 connection before the deadline")
        .expect("a graceful close");
    let took = started.elapsed();
    assert!(
        took >= NOT_BEFORE,
        "closed after {took:?}, before the timeout"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn an_http2_client_that_answers_no_ping_is_closed_after_the_keep_alive_timeout() {
    let proxy = proxy(
        &config("http2_keep_alive_interval = \"200ms\"\nhttp2_keep_alive_timeout = \"200ms\""),
        "http://127.0.0.1:9",
        &[],
    )
    .await;
    let mut stream = TcpStream::connect(proxy.addr()).await.expect("connect");
    stream.write_all(PREFACE).await.expect("write preface");
    stream
        .write_all(EMPTY_SETTINGS)
        .await
        .expect("write settings");
    let took = closed_within(&mut stream, DEADLINE).await;
    assert!(
        took >= NOT_BEFORE,
        "closed after {took:?}, before the pings went unanswered"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn an_http1_keep_alive_connection_is_closed_after_the_idle_timeout_between_requests() {
    let upstream = Upstream::start(ok).await;
    let proxy = proxy(&config("idle_timeout = \"300ms\""), &upstream.url(), &[]).await;
    let mut stream = TcpStream::connect(proxy.addr()).await.expect("connect");
    let request = format!("GET /a HTTP/1.1\r\nHost: {}\r\n\r\n", proxy.addr());
    stream.write_all(request.as_bytes()).await.expect("write");
    // The response (its length is known) comes first, then the idle close.
    let mut response = Vec::new();
    let mut buffer = [0u8; 4096];
    while !response.ends_with(br#"{"ok":true}"#) {
        let read = tokio::time::timeout(DEADLINE, stream.read(&mut buffer))
            .await
            .expect("response in time")
            .expect("read");
        assert_ne!(read, 0, "closed before the response: {response:?}");
        response.extend_from_slice(&buffer[..read]);
    }
    assert!(response.starts_with(b"HTTP/1.1 200"));
    let took = closed_within(&mut stream, DEADLINE).await;
    assert!(
        took >= NOT_BEFORE,
        "closed after {took:?}, before the timeout"
    );
    proxy.shutdown().await;
}

/// A target that takes three idle timeouts to answer.
async fn slow_target() -> common::Server {
    serve(None, |_request, _: ConnMeta| async {
        tokio::time::sleep(SHORT * 3).await;
        Response::new(full("slow"))
    })
    .await
}

#[tokio::test]
async fn a_request_slower_than_the_idle_timeout_is_not_cut_over_http1_or_http2() {
    let target = slow_target().await;
    let proxy = proxy(&config("idle_timeout = \"300ms\""), &target.url(), &[]).await;
    let addr = proxy.addr();
    let reply = get(addr, "/slow", &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "slow");
    let (version, reply) = common::request_h2c(
        Request::get(format!("http://{addr}/slow"))
            .body(full(""))
            .expect("request"),
    )
    .await;
    assert_eq!(version, http::Version::HTTP_2);
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), "slow");
    proxy.shutdown().await;
}

/// Opens an HTTP/1 connection and completes one request on it; the connection stays open as
/// long as the returned sender lives.
async fn open_connection(
    addr: SocketAddr,
) -> Option<hyper::client::conn::http1::SendRequest<provproxy::body::ProxyBody>> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(connection);
    let request = Request::get("/held")
        .header("host", addr.to_string())
        .body(full(""))
        .expect("request");
    let response = sender.send_request(request).await.ok()?;
    response.into_body().collect().await.ok()?;
    Some(sender)
}

fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{metrics}"))
}

#[tokio::test]
async fn the_connection_cap_refuses_the_connection_past_it_and_counts_it() {
    let upstream = Upstream::start(ok).await;
    let proxy = proxy(
        &format!(
            "{}\n[admin]\nlisten = \"127.0.0.1:0\"\n",
            config("max_connections = 2")
        ),
        &upstream.url(),
        &[],
    )
    .await;
    let addr = proxy.addr();
    let admin = proxy.admin_addr().expect("admin listener");
    let first = open_connection(addr)
        .await
        .expect("first connection served");
    let _second = open_connection(addr)
        .await
        .expect("second connection served");

    let mut third = TcpStream::connect(addr).await.expect("the kernel accepts");
    let request = format!("GET /held HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    // The proxy may close before the write lands; what matters is that nothing comes back.
    let _ = third.write_all(request.as_bytes()).await;
    let mut answer = Vec::new();
    tokio::time::timeout(DEADLINE, third.read_to_end(&mut answer))
        .await
        .expect("the proxy closes the connection past the cap")
        .ok();
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));

    let metrics = get(admin, "/metrics", &[]).await.text();
    assert_eq!(counter(&metrics, "provproxy_connections_refused_total"), 1);
    assert_eq!(counter(&metrics, "provproxy_connections_open"), 2);

    // Once a connection closes, its slot is free again.
    drop(first);
    let reopened = tokio::time::timeout(DEADLINE, async {
        loop {
            if let Some(sender) = open_connection(addr).await {
                return sender;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("a connection is served again once one closed");
    drop(reopened);
    proxy.shutdown().await;
}

fn load(server: &str) -> Result<provproxy::config::Plan, String> {
    let text = config(server).replace("{upstream}", "http://127.0.0.1:9");
    provproxy::config::load_str(&text, "x.toml", std::path::Path::new("/etc"), &|_| None)
        .map_err(|err| err.to_string())
}

#[test]
fn the_defaults_suit_an_internet_facing_listener_and_each_key_is_checked() {
    let limits = load("").expect("valid").server.limits;
    assert_eq!(limits.tls_handshake_timeout, Duration::from_secs(10));
    assert_eq!(limits.first_byte_timeout, Duration::from_secs(10));
    assert_eq!(limits.header_read_timeout, Duration::from_secs(10));
    assert_eq!(limits.idle_timeout, Duration::from_secs(60));
    assert_eq!(limits.http2_keep_alive_interval, Duration::from_secs(30));
    assert_eq!(limits.http2_keep_alive_timeout, Duration::from_secs(10));
    assert_eq!(limits.max_connections, None);
    let cases = [
        (
            "idle_timeout = \"0s\"",
            "x.toml:3:16: server.idle_timeout: must be longer than 0s",
        ),
        (
            "max_connections = 0",
            "x.toml:3:19: server.max_connections: must be at least 1",
        ),
        (
            "first_byte_timout = \"5s\"",
            "x.toml:3:1: server.first_byte_timout: unknown key `first_byte_timout`, did you mean `first_byte_timeout`?",
        ),
    ];
    for (server, expected) in cases {
        assert_eq!(load(server).err().as_deref(), Some(expected), "{server}");
    }
}
