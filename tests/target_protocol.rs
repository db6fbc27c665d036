//! What the proxy tolerates from a target, and what it does not let a client do to a session:
//! a malformed response header line is dropped instead of failing the exchange (a `Set-Cookie`
//! with a control character among them, while the response's other cookies are kept), and a
//! client that stops reading its response does not hold a `serialize = true` session.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Incoming;
use provproxy::body::{full, stream, ProxyBody};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use common::{proxy, send_h1, serve, ConnMeta, PATIENCE};

/// A raw TCP target that answers the n-th request (over any connection, keep-alive) with
/// `responses[n]` (the last one repeats) and reports every request head it read.
async fn raw_target(
    responses: Vec<&'static [u8]>,
) -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let (heads, received) = mpsc::unbounded_channel();
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (heads, served, responses) = (heads.clone(), served.clone(), responses.clone());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head: Vec<u8> = seen.drain(..end + 4).collect();
                        let _ = heads.send(String::from_utf8_lossy(&head).into_owned());
                        let n = served.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let response = responses[n.min(responses.len() - 1)];
                        if stream.write_all(response).await.is_err() {
                            return;
                        }
                    }
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
            });
        }
    });
    (addr, received)
}

fn route(extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[[routes]]
name = "target"
prefix = "/"
upstream = "{{upstream}}"
{extra}
"#
    )
}

fn get_request(addr: SocketAddr, path: &str) -> Request<ProxyBody> {
    Request::get(path)
        .header(http::header::HOST, addr.to_string())
        .body(full(""))
        .expect("request")
}

#[tokio::test]
async fn a_response_with_one_malformed_header_line_reaches_the_client_without_that_line() {
    let (target, mut heads) = raw_target(vec![
        b"HTTP/1.1 200 OK\r\n\
          Content-Type: application/json\r\n\
          Bad Header: a space in the name\r\n\
          X-Before: kept\r\n\
          X-Control: a\x01b\r\n\
          X-After: kept too\r\n\
          Content-Length: 11\r\n\
          \r\n\
          {\"ok\":true}",
    ])
    .await;
    let proxy = proxy(&route(""), &format!("http://{target}"), &[]).await;
    let addr = proxy.addr();
    let reply = common::request_h1(addr, get_request(addr, "/Users")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.text(), r#"{"ok":true}"#);
    let header = |name: &str| reply.headers.get(name).and_then(|v| v.to_str().ok());
    assert_eq!(header("x-before"), Some("kept"));
    assert_eq!(header("x-after"), Some("kept too"));
    assert_eq!(header("content-type"), Some("application/json"));
    assert!(
        !reply.headers.contains_key("x-control")
            && !reply
                .headers
                .keys()
                .any(|name| name.as_str().starts_with("bad")),
        "the malformed lines are dropped: {:?}",
        reply.headers
    );
    assert!(heads
        .recv()
        .await
        .is_some_and(|head| head.starts_with("GET /Users ")));
}

#[tokio::test]
async fn a_set_cookie_with_a_control_character_is_ignored_and_the_responses_other_cookies_kept() {
    let (target, mut heads) = raw_target(vec![
        b"HTTP/1.1 200 OK\r\n\
          Set-Cookie: SID=s1; Path=/\r\n\
          Set-Cookie: bad=x\x01y; Path=/\r\n\
          Set-Cookie: lb=node2; Path=/\r\n\
          Content-Length: 0\r\n\
          \r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    ])
    .await;
    let proxy = proxy(
        &route("[routes.session]\nkey = \"route\""),
        &format!("http://{target}"),
        &[],
    )
    .await;
    let addr = proxy.addr();
    let first = common::request_h1(addr, get_request(addr, "/login")).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    let second = common::request_h1(addr, get_request(addr, "/Users")).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.text());

    let _login = heads.recv().await.expect("the first request");
    let next = heads.recv().await.expect("the second request");
    let cookie = next
        .lines()
        .find_map(|line| line.strip_prefix("cookie: "))
        .unwrap_or_else(|| panic!("the session's cookies go on the next request: {next}"));
    assert_eq!(cookie, "SID=s1; lb=node2");
}

/// 24 MiB: more than the kernel's socket buffers between the proxy and a client hold, so a
/// client that stops reading leaves the proxy with most of the body still to send.
const BIG_CHUNKS: usize = 384;
const CHUNK_SIZE: usize = 64 * 1024;
const BIG: usize = BIG_CHUNKS * CHUNK_SIZE;
static CHUNK: [u8; CHUNK_SIZE] = [b'x'; CHUNK_SIZE];

/// A target that answers `/big` with 24 MiB and anything else with `{"ok":true}`, and opens
/// the session (sets `SID`) on a request that has no cookie.
async fn big_body_target() -> common::Server {
    serve(None, |request: Request<Incoming>, _: ConnMeta| async move {
        let body = if request.uri().path() == "/big" {
            let chunks = (0..BIG_CHUNKS)
                .map(|_| Ok::<_, Infallible>(Frame::data(Bytes::from_static(&CHUNK))));
            stream(StreamBody::new(futures_util::stream::iter(chunks)))
        } else {
            full(r#"{"ok":true}"#)
        };
        let mut response = Response::builder().status(StatusCode::OK);
        if request.uri().path() == "/big" {
            response = response.header(http::header::CONTENT_LENGTH, BIG.to_string());
        }
        if !request.headers().contains_key(http::header::COOKIE) {
            response = response.header(http::header::SET_COOKIE, "SID=big-1; Path=/");
        }
        response.body(body).expect("response")
    })
    .await
}

/// A `serialize = true` route with one session, and these extra route and session keys.
fn serialized(route_keys: &str, session_keys: &str) -> String {
    route(&format!(
        "{route_keys}\n[routes.session]\nkey = \"route\"\nserialize = true\n{session_keys}"
    ))
}

/// The second client of the session: its whole response, within `PATIENCE`.
async fn second_client(addr: SocketAddr) -> (StatusCode, Bytes) {
    let response = tokio::time::timeout(PATIENCE, async {
        let response = send_h1(addr, get_request(addr, "/Users")).await;
        let status = response.status();
        (
            status,
            response.into_body().collect().await.map(|c| c.to_bytes()),
        )
    })
    .await
    .expect("the second client was served while the first had stopped reading");
    (response.0, response.1.expect("the second client's body"))
}

#[tokio::test]
async fn a_serialized_session_serves_a_second_client_while_the_first_has_stopped_reading() {
    let target = big_body_target().await;
    // The whole 24 MiB fit the read-ahead, so the lease goes as soon as the target is done.
    let proxy = proxy(
        &serialized("", "replay_body_limit = \"32MiB\""),
        &target.url(),
        &[],
    )
    .await;
    let addr = proxy.addr();

    let first = send_h1(addr, get_request(addr, "/big")).await;
    assert_eq!(first.status(), StatusCode::OK);
    let (status, body) = second_client(addr).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], br#"{"ok":true}"#);

    // The first client, reading again, still gets all of its response.
    let read = tokio::time::timeout(PATIENCE, first.into_body().collect())
        .await
        .expect("the first response in time")
        .expect("the first response whole");
    assert_eq!(read.to_bytes().len(), BIG);
}

#[tokio::test]
async fn a_response_longer_than_the_read_ahead_is_cut_off_once_its_client_stops_reading_for_request_timeout(
) {
    let target = big_body_target().await;
    let proxy = proxy(
        &serialized("request_timeout = \"1s\"", "replay_body_limit = \"64KiB\""),
        &target.url(),
        &[],
    )
    .await;
    let addr = proxy.addr();

    let first = send_h1(addr, get_request(addr, "/big")).await;
    assert_eq!(first.status(), StatusCode::OK);
    let (status, body) = second_client(addr).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], br#"{"ok":true}"#);

    // The first client's response was cut off: it must not look complete.
    let read = tokio::time::timeout(PATIENCE, first.into_body().collect())
        .await
        .expect("the first response ends in time");
    assert!(read.is_err(), "a cut-off response must end in an error");
}
