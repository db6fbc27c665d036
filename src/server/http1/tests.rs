//! The connection against raw clients on 127.0.0.1: what hyper's server did and the suite does
//! not already pin down (pipelining, 100-continue, HEAD, HTTP/1.0, chunked responses, unread
//! bodies, shutdown mid-request).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Request, Response};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Mutex};

use super::parse::HeadError;
use super::{parse, serve, Error, Settings};
use crate::body::{self, BoxError, ProxyBody, RequestBody};
use crate::server::framing::Violation;

const PATIENCE: Duration = Duration::from_secs(10);

/// What the test handler shares with the test: it reports each request it starts, and `/hold`
/// waits for the test's go-ahead.
struct Harness {
    started: mpsc::UnboundedSender<String>,
    go: Mutex<mpsc::UnboundedReceiver<()>>,
}

/// `/echo`: the path and the whole request body; `/ignore`: answers without reading the body;
/// `/stream`: a body of unknown length in three frames, one larger than a copy; `/hold`: waits
/// for the test, then answers.
async fn handle(harness: &Harness, request: Request<RequestBody>) -> Response<ProxyBody> {
    let path = request.uri().path().to_owned();
    let _ = harness.started.send(path.clone());
    match path.as_str() {
        "/echo" => {
            let received = request.into_body().collect().await;
            let text = match received {
                Ok(collected) => {
                    let mut text = b"echo:".to_vec();
                    text.extend_from_slice(&collected.to_bytes());
                    text
                }
                Err(err) => format!("failed:{err}").into_bytes(),
            };
            Response::new(body::full(text))
        }
        "/stream" => {
            let frames = [
                Bytes::from_static(b"abc"),
                Bytes::from(vec![b'x'; 20_000]),
                Bytes::from_static(b"def"),
            ]
            .map(|data| Ok::<_, BoxError>(Frame::data(data)));
            Response::new(body::stream(StreamBody::new(futures_util::stream::iter(
                frames,
            ))))
        }
        "/hold" => {
            let _ = harness.go.lock().await.recv().await;
            Response::new(body::full("held"))
        }
        "/forever" => {
            // Reports its own end: dropped, not answered.
            let _dropped = Dropped(harness.started.clone());
            std::future::pending::<Response<ProxyBody>>().await
        }
        _ => Response::new(body::full("ignored")),
    }
}

/// Says `dropped` when the handler that holds it is dropped.
struct Dropped(mpsc::UnboundedSender<String>);

impl Drop for Dropped {
    fn drop(&mut self) {
        let _ = self.0.send("dropped".to_owned());
    }
}

struct Running {
    addr: SocketAddr,
    started: mpsc::UnboundedReceiver<String>,
    go: mpsc::UnboundedSender<()>,
    stop: watch::Sender<bool>,
}

fn settings(idle_timeout: Duration) -> Settings {
    Settings {
        limits: parse::Limits {
            max_head_bytes: 16 * 1024,
            max_headers: 100,
        },
        idle_timeout,
        head_timeout: PATIENCE,
    }
}

/// Serves every connection on 127.0.0.1 with our connection and the test handler.
async fn start(idle_timeout: Duration) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let (started_tx, started) = mpsc::unbounded_channel();
    let (go, go_rx) = mpsc::unbounded_channel();
    let (stop, stopped) = watch::channel(false);
    let harness = std::sync::Arc::new(Harness {
        started: started_tx,
        go: Mutex::new(go_rx),
    });
    let settings = settings(idle_timeout);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let harness = harness.clone();
            let stopped = stopped.clone();
            tokio::spawn(async move {
                let handler = |request| {
                    let harness = harness.clone();
                    async move { handle(&harness, request).await }
                };
                let _ = serve(
                    Box::new(stream),
                    BytesMut::new(),
                    settings,
                    handler,
                    stopped,
                )
                .await;
            });
        }
    });
    Running {
        addr,
        started,
        go,
        stop,
    }
}

/// Sends `bytes` and reads until the server closes.
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    read_to_close(&mut stream).await
}

async fn read_to_close(stream: &mut (impl tokio::io::AsyncRead + Unpin)) -> String {
    let mut response = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut response))
        .await
        .expect("the server closes the connection")
        .expect("read");
    String::from_utf8_lossy(&response).into_owned()
}

/// Reads until `text` has arrived; everything read so far.
async fn read_until(stream: &mut TcpStream, text: &str) -> String {
    let mut seen = Vec::new();
    tokio::time::timeout(PATIENCE, async {
        while !String::from_utf8_lossy(&seen).contains(text) {
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).await.expect("read");
            assert!(
                n > 0,
                "closed before {text:?}: {:?}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("in time");
    String::from_utf8_lossy(&seen).into_owned()
}

/// The response without its `date` line, which changes every second.
fn undated(response: &str) -> String {
    response
        .split("\r\n")
        .filter(|line| !line.starts_with("date: "))
        .collect::<Vec<_>>()
        .join("\r\n")
}

#[tokio::test]
async fn pipelined_requests_in_one_write_are_answered_in_order() {
    let server = start(PATIENCE).await;
    let response = exchange(
        server.addr,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\none\
          GET /echo HTTP/1.1\r\nHost: x\r\n\r\n\
          POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nthree\r\n0\r\n\r\n\
          GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(
        undated(&response),
        "HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\necho:one\
         HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\necho:\
         HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\necho:three\
         HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\necho:"
    );
    assert_eq!(response.matches("\r\ndate: ").count(), 4, "{response}");
}

#[tokio::test]
async fn a_date_header_is_an_imf_fixdate() {
    let server = start(PATIENCE).await;
    let response = exchange(
        server.addr,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    let date = response
        .split("\r\n")
        .find_map(|line| line.strip_prefix("date: "))
        .expect("a date header");
    assert_eq!(date.len(), 29, "{date}");
    assert!(
        date.ends_with(" GMT") && date.as_bytes()[3] == b',',
        "{date}"
    );
}

#[tokio::test]
async fn expect_100_continue_is_answered_when_the_body_is_first_read() {
    let server = start(PATIENCE).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\nConnection: close\r\n\r\n")
        .await
        .expect("write head");
    let interim = read_until(&mut stream, "\r\n\r\n").await;
    assert_eq!(interim, "HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(b"hello").await.expect("write body");
    let response = read_to_close(&mut stream).await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.ends_with("\r\n\r\necho:hello"), "{response}");
}

#[tokio::test]
async fn no_100_continue_when_the_handler_answers_without_reading_and_the_connection_closes() {
    let server = start(PATIENCE).await;
    let response = exchange(
        server.addr,
        b"POST /ignore HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    )
    .await;
    assert!(!response.contains("100 Continue"), "{response}");
    assert_eq!(
        undated(&response),
        "HTTP/1.1 200 OK\r\ncontent-length: 7\r\nconnection: close\r\n\r\nignored"
    );
}

#[tokio::test]
async fn an_unread_body_already_received_is_skipped_and_the_connection_kept() {
    let server = start(PATIENCE).await;
    let response = exchange(
        server.addr,
        b"POST /ignore HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
          GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(
        undated(&response),
        "HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\nignored\
         HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\necho:"
    );
}

#[tokio::test]
async fn an_unread_body_still_to_come_closes_the_connection_after_the_response() {
    let server = start(PATIENCE).await;
    // Half the body: the rest never comes, and the response must not wait for it.
    let response = exchange(
        server.addr,
        b"POST /ignore HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello",
    )
    .await;
    assert_eq!(
        undated(&response),
        "HTTP/1.1 200 OK\r\ncontent-length: 7\r\nconnection: close\r\n\r\nignored"
    );
}

#[tokio::test]
async fn a_body_cut_short_by_the_client_is_an_error_to_its_reader() {
    let server = start(PATIENCE).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello")
        .await
        .expect("write");
    stream.shutdown().await.expect("half-close");
    let response = read_to_close(&mut stream).await;
    assert!(
        response.ends_with("failed:connection closed before the request body ended"),
        "{response}"
    );
    assert!(response.contains("connection: close"), "{response}");
}

#[tokio::test]
async fn a_head_request_gets_the_length_and_no_body() {
    let server = start(PATIENCE).await;
    let response = exchange(
        server.addr,
        b"HEAD /ignore HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(
        undated(&response),
        "HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\n\
         HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\necho:"
    );
}

#[tokio::test]
async fn a_body_of_unknown_length_is_chunked_to_http_1_1_clients() {
    let server = start(PATIENCE).await;
    let response = exchange(
        server.addr,
        b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\nGET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    let big = "x".repeat(20_000);
    assert_eq!(
        undated(&response),
        format!(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
             3\r\nabc\r\n4E20\r\n{big}\r\n3\r\ndef\r\n0\r\n\r\n\
             HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\necho:"
        )
    );
}

#[tokio::test]
async fn an_http_1_0_client_gets_http_1_0_and_a_close_unless_it_asked_for_keep_alive() {
    let server = start(PATIENCE).await;
    let closed = exchange(server.addr, b"GET /echo HTTP/1.0\r\n\r\n").await;
    assert_eq!(
        undated(&closed),
        "HTTP/1.0 200 OK\r\ncontent-length: 5\r\n\r\necho:"
    );

    let kept = exchange(
        server.addr,
        b"GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /stream HTTP/1.0\r\n\r\n",
    )
    .await;
    let big = "x".repeat(20_000);
    assert_eq!(
        undated(&kept),
        format!(
            "HTTP/1.0 200 OK\r\ncontent-length: 5\r\nconnection: keep-alive\r\n\r\necho:\
             HTTP/1.0 200 OK\r\n\r\nabc{big}def"
        ),
        "the second, of unknown length, is delimited by the close"
    );
}

#[tokio::test]
async fn shutdown_answers_the_request_in_flight_with_close_and_closes_idle_connections() {
    let mut server = start(PATIENCE).await;
    let mut busy = TcpStream::connect(server.addr).await.expect("connect");
    busy.write_all(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut idle = TcpStream::connect(server.addr).await.expect("connect");
    idle.write_all(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut seen = Vec::new();
    while seen.len() < 2 {
        seen.push(server.started.recv().await.expect("a request started"));
    }
    read_until(&mut idle, "echo:").await;

    server.stop.send(true).expect("stop");
    assert_eq!(
        read_to_close(&mut idle).await,
        "",
        "the idle connection closes at once"
    );
    server.go.send(()).expect("release the held request");
    let response = read_to_close(&mut busy).await;
    assert_eq!(
        undated(&response),
        "HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\nheld"
    );
}

#[tokio::test]
async fn a_keep_alive_connection_idle_past_the_timeout_is_closed() {
    let server = start(Duration::from_millis(100)).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream
        .write_all(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    read_until(&mut stream, "echo:").await;
    assert_eq!(read_to_close(&mut stream).await, "");
}

#[tokio::test]
async fn a_body_kept_past_its_exchange_reads_nothing_of_the_next_request() {
    let wire = std::sync::Arc::new(std::sync::Mutex::new(super::body::Wire::new(
        Box::new(tokio::io::duplex(64).0),
        BytesMut::from(&b"next request"[..]),
    )));
    let mut stale = super::Body::wire(wire.clone(), 1, Some(5));
    {
        let mut locked = super::body::lock(&wire);
        locked.serial = 2;
        locked.reading = super::body::Reading::Length(12);
    }
    let frame = stale.frame().await.expect("a frame");
    assert!(matches!(frame, Err(super::BodyError::Gone)), "{frame:?}");
}

#[tokio::test]
async fn the_idle_time_counts_from_the_last_response_not_the_first() {
    let idle = Duration::from_millis(300);
    let server = start(idle).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let began = std::time::Instant::now();
    // Five requests 100 ms apart span more than one idle time; each one restarts it. The
    // pauses are the behaviour under test (time passing between requests), not a wait for
    // anything to happen.
    for _ in 0..5 {
        stream
            .write_all(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("the connection is still open");
        read_until(&mut stream, "echo:").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(began.elapsed() > idle, "the requests spanned the idle time");
    let last = std::time::Instant::now();
    assert_eq!(read_to_close(&mut stream).await, "");
    assert!(
        last.elapsed() >= idle - Duration::from_millis(100) - Duration::from_millis(20),
        "closed {:?} after the last request's pause, before the idle time",
        last.elapsed()
    );
}

#[tokio::test]
async fn a_client_that_closes_while_its_request_is_handled_ends_the_exchange() {
    let mut server = start(PATIENCE).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream
        .write_all(b"GET /forever HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    assert_eq!(server.started.recv().await.as_deref(), Some("/forever"));
    drop(stream);
    let ended = tokio::time::timeout(PATIENCE, server.started.recv())
        .await
        .expect("the handler was dropped once the client had gone");
    assert_eq!(ended.as_deref(), Some("dropped"));
}

/// The client hears only `400`; why it was refused comes back from `serve`, for the listener to
/// log with the client's address as the framing guard did, whether the head or a chunk that came
/// with it broke the rules.
#[tokio::test]
async fn a_refused_request_ends_the_connection_with_the_violation_that_refused_it() {
    let cases: [(&[u8], Violation); 2] = [
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            Violation::ContentLengthWithTransferEncoding,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
            Violation::InvalidChunkSize,
        ),
    ];
    for (request, violation) in cases {
        let (mut client, server) = tokio::io::duplex(4096);
        let (_stop, stopped) = watch::channel(false);
        client.write_all(request).await.expect("write");
        let handler = |_: Request<RequestBody>| async { Response::new(body::empty()) };
        let served = serve(
            Box::new(server),
            BytesMut::new(),
            settings(PATIENCE),
            handler,
            stopped,
        )
        .await;
        assert!(
            matches!(served, Err(Error::Refused(HeadError::Refused(seen))) if seen == violation),
            "{served:?} for {violation:?}"
        );
        let answer = read_to_close(&mut client).await;
        assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    }
}
