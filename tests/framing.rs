//! Requests with ambiguous or malformed framing are refused before anything reaches the target:
//! each case is sent as raw bytes to the real proxy, the client gets 400 (or 431/408/413 for
//! limits) and a closed connection, and the target never even sees a connection. The legal
//! forms next to them (chunk extensions, `Chunked`, HTTP/1.0 without `Host`, an absolute-form
//! target that agrees with `Host`) are forwarded with their exact body.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A target that counts the connections it accepts and answers every request with 200.
struct CountingTarget {
    url: String,
    connections: Arc<AtomicUsize>,
}

async fn counting_target() -> CountingTarget {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if stream.write_all(ok).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    CountingTarget { url, connections }
}

async fn proxy_for(
    target: &CountingTarget,
    extra_server: &str,
    extra_route: &str,
) -> provproxy::server::Running {
    provproxy::demo::start_proxy(
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nhosts = [\"x\"]\n{extra_server}\n\n[[routes]]\nname = \"t\"\nprefix = \"/\"\nupstream = \"{}\"\n{extra_route}",
            target.url
        ),
        &[],
    )
    .await
    .expect("proxy starts")
}

/// Sends raw bytes and reads until the proxy closes the connection; returns the status line.
async fn exchange_raw(proxy: &provproxy::server::Running, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(proxy.addr()).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("the proxy closes the connection")
        .expect("read");
    String::from_utf8_lossy(&response)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

async fn assert_refused(request: &[u8], status: &str) {
    let target = counting_target().await;
    let proxy = proxy_for(&target, "", "").await;
    let line = exchange_raw(&proxy, request).await;
    assert!(
        line.starts_with(&format!("HTTP/1.1 {status}")),
        "got {line:?} for {:?}",
        String::from_utf8_lossy(request)
    );
    assert_eq!(
        target.connections.load(Ordering::SeqCst),
        0,
        "the target saw a connection"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_well_framed_request_does_reach_the_target() {
    let target = counting_target().await;
    let proxy = proxy_for(&target, "", "").await;
    let line = exchange_raw(
        &proxy,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    )
    .await;
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    assert_eq!(target.connections.load(Ordering::SeqCst), 1);
    proxy.shutdown().await;
}

#[tokio::test]
async fn content_length_with_transfer_encoding_is_refused() {
    assert_refused(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "400").await;
}

#[tokio::test]
async fn duplicate_content_length_is_refused_even_when_equal() {
    assert_refused(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        "400",
    )
    .await;
}

#[tokio::test]
async fn malformed_content_length_is_refused() {
    assert_refused(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello",
        "400",
    )
    .await;
    assert_refused(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello",
        "400",
    )
    .await;
}

#[tokio::test]
async fn transfer_encoding_other_than_a_single_chunked_is_refused() {
    assert_refused(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "400").await;
    assert_refused(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "400").await;
    assert_refused(
        b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n",
        "400",
    )
    .await;
}

#[tokio::test]
async fn obsolete_line_folding_is_refused() {
    assert_refused(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", "400").await;
}

#[tokio::test]
async fn bare_lf_line_endings_are_refused() {
    assert_refused(b"GET / HTTP/1.1\nHost: x\n\n", "400").await;
}

#[tokio::test]
async fn nul_cr_and_control_bytes_in_headers_are_refused() {
    assert_refused(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", "400").await;
    assert_refused(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", "400").await;
    assert_refused(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n", "400").await;
    assert_refused(b"GET / HTTP/1.1\r\nHost: x\r\nX\x00A: a\r\n\r\n", "400").await;
}

#[tokio::test]
async fn invalid_chunk_sizes_are_refused() {
    assert_refused(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        "400",
    )
    .await;
    assert_refused(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n",
        "400",
    )
    .await;
    assert_refused(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
        "400",
    )
    .await;
}

#[tokio::test]
async fn control_bytes_in_chunk_extensions_are_refused() {
    assert_refused(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;a=\x01\r\nhello\r\n0\r\n\r\n", "400").await;
}

#[tokio::test]
async fn bare_lf_in_chunked_framing_is_refused() {
    assert_refused(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n",
        "400",
    )
    .await;
}

#[tokio::test]
async fn too_many_headers_get_431() {
    let mut request = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
    for index in 0..150 {
        request.extend_from_slice(format!("X-H{index}: v\r\n").as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    assert_refused(&request, "431").await;
}

#[tokio::test]
async fn a_head_larger_than_the_limit_gets_431() {
    let target = counting_target().await;
    let proxy = proxy_for(&target, "max_header_size = \"16KiB\"", "").await;
    let mut request = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    request.extend(std::iter::repeat_n(b'a', 64 * 1024));
    request.extend_from_slice(b"\r\n\r\n");
    let line = exchange_raw(&proxy, &request).await;
    assert!(line.starts_with("HTTP/1.1 431"), "{line}");
    assert_eq!(target.connections.load(Ordering::SeqCst), 0);
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_client_too_slow_with_its_head_is_cut_off_without_reaching_the_target() {
    let target = counting_target().await;
    let proxy = proxy_for(&target, "header_read_timeout = \"300ms\"", "").await;
    let mut stream = TcpStream::connect(proxy.addr()).await.expect("connect");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
        .await
        .expect("the proxy closes the slow connection")
        .ok();
    let text = String::from_utf8_lossy(&response);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    assert_eq!(target.connections.load(Ordering::SeqCst), 0);
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_client_too_slow_with_its_body_gets_408() {
    let target = counting_target().await;
    let proxy = proxy_for(
        &target,
        "body_read_timeout = \"300ms\"",
        "[routes.session]\nreplay_body_limit = \"1MiB\"\n",
    )
    .await;
    let mut stream = TcpStream::connect(proxy.addr()).await.expect("connect");
    stream
        .write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello")
        .await
        .expect("write");
    let mut response = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut response))
        .await
        .expect("the proxy answers the slow client")
        .expect("read");
    let text = String::from_utf8_lossy(&response[..n]);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert_eq!(
        target.connections.load(Ordering::SeqCst),
        0,
        "a replayable body is read whole before forwarding"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_body_larger_than_the_route_limit_gets_413() {
    let target = counting_target().await;
    let proxy = proxy_for(&target, "", "max_request_body = \"4\"\n").await;
    let line = exchange_raw(
        &proxy,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    )
    .await;
    assert!(line.starts_with("HTTP/1.1 413"), "{line}");
    assert_eq!(target.connections.load(Ordering::SeqCst), 0);
    proxy.shutdown().await;
}

#[tokio::test]
async fn an_http_1_1_request_without_host_is_refused() {
    assert_refused(b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", "400").await;
    assert_refused(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", "400").await;
}

#[tokio::test]
async fn two_host_lines_are_refused_even_when_equal() {
    assert_refused(b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", "400").await;
    assert_refused(b"GET / HTTP/1.1\r\nHost: x\r\nhost: x\r\n\r\n", "400").await;
}

#[tokio::test]
async fn a_fragment_in_the_request_target_is_refused() {
    assert_refused(b"GET /users#admin HTTP/1.1\r\nHost: x\r\n\r\n", "400").await;
    assert_refused(b"GET /users?q=1#x HTTP/1.1\r\nHost: x\r\n\r\n", "400").await;
}

#[tokio::test]
async fn an_absolute_form_authority_that_disagrees_with_host_or_has_userinfo_is_refused() {
    assert_refused(
        b"GET http://other.example/users HTTP/1.1\r\nHost: x\r\n\r\n",
        "400",
    )
    .await;
    assert_refused(
        b"GET http://x:8443/users HTTP/1.1\r\nHost: x\r\n\r\n",
        "400",
    )
    .await;
    assert_refused(
        b"GET http://user@x/users HTTP/1.1\r\nHost: x\r\n\r\n",
        "400",
    )
    .await;
}

#[tokio::test]
async fn request_targets_a_reverse_proxy_does_not_serve_are_refused() {
    assert_refused(b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n", "400").await;
    assert_refused(b"GET * HTTP/1.1\r\nHost: x\r\n\r\n", "400").await;
    assert_refused(b"GET users HTTP/1.1\r\nHost: x\r\n\r\n", "400").await;
}

#[tokio::test]
async fn whitespace_between_a_chunk_size_and_its_crlf_is_refused() {
    assert_refused(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4 \r\nabcd\r\n0\r\n\r\n",
        "400",
    )
    .await;
    assert_refused(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\t\r\nabcd\r\n0\r\n\r\n",
        "400",
    )
    .await;
}

/// Sends raw bytes to a proxy in front of a recording target and returns the status line and
/// what the target received.
async fn forwarded(request: &[u8]) -> (String, Vec<common::Recorded>) {
    let mut upstream = common::Upstream::start(common::ok).await;
    let proxy = common::proxy(
        "[server]\nlisten = \"127.0.0.1:0\"\nhosts = [\"x\"]\n[[routes]]\nname = \"t\"\nprefix = \"/\"\nupstream = \"{upstream}\"\n",
        &upstream.url(),
        &[],
    )
    .await;
    let line = exchange_raw(&proxy, request).await;
    proxy.shutdown().await;
    (line, upstream.received())
}

#[tokio::test]
async fn chunk_extensions_are_legal_and_the_body_is_forwarded_exactly() {
    let (line, received) = forwarded(
        b"POST /users HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
          4;name=value\r\nabcd\r\n5 ; name=\"quoted\"\r\nefghi\r\n1\t;a;b=c\r\nj\r\n0;last\r\n\r\n",
    )
    .await;
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    assert_eq!(received.len(), 1, "{received:#?}");
    assert_eq!(&received[0].body[..], b"abcdefghij");
}

#[tokio::test]
async fn transfer_coding_names_are_case_insensitive() {
    let (line, received) = forwarded(
        b"POST /users HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\nConnection: close\r\n\r\n\
          5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    assert_eq!(received.len(), 1, "{received:#?}");
    assert_eq!(&received[0].body[..], b"hello");
}

#[tokio::test]
async fn http_1_0_needs_no_host_and_an_agreeing_absolute_form_is_forwarded() {
    let (line, received) = forwarded(b"POST /users HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi").await;
    assert!(line.starts_with("HTTP/1.0 200"), "{line}");
    assert_eq!(received.len(), 1, "{received:#?}");
    assert_eq!(&received[0].body[..], b"hi");
    let (line, received) =
        forwarded(b"GET HTTP://X:80/users?id=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await;
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    assert_eq!(received.len(), 1, "{received:#?}");
    assert_eq!(
        received[0].uri.path_and_query().map(|p| p.as_str()),
        Some("/users?id=1")
    );
}
