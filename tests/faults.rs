//! Faults the proxy must survive: a target that breaks off or stalls its response body, state
//! and trace files that become unwritable while serving, and SIGTERM under load.
//!
//! Covered elsewhere, not repeated here: a target that stalls before its response head is a 504
//! within `request_timeout` (tests/failures.rs), and a target certificate that fails
//! verification is a 502 naming `tls` (tests/tls.rs).
//!
//! A target that stalls *after* its response head is bounded by `request_timeout`, which also
//! limits each pause in the response body: the client's response is cut off and the session is
//! freed. When the client gives up first, the target connection is closed, the session lease is
//! released and the record says so.

#[path = "support/binary.rs"]
mod binary;
mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use provproxy::body::full;
use provproxy::server::Running;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use binary::{Binary, Options};
use common::{get, json, proxy, read_head, send_h1, serve, ConnMeta, Recorded, Upstream, PATIENCE};

/// What a scripted connection of [`raw_target`] does after sending its response head and the
/// first 100 of 1000 announced body bytes.
#[derive(Debug, Clone, Copy)]
enum After {
    /// Closes the connection (FIN).
    Close,
    /// Resets the connection (RST).
    Reset,
    /// Keeps the connection open and sends nothing more, until the peer closes it.
    Stall,
    /// Sends the rest of the body: a healthy response.
    Finish,
}

/// What the raw target reports per connection.
#[derive(Debug, PartialEq, Eq)]
enum Event {
    /// A request head arrived and the response head and first bytes were sent.
    Sent,
    /// A stalled connection was closed by the proxy.
    PeerClosed,
}

/// A raw TCP target speaking just enough HTTP/1.1 to misbehave: connection `n` follows
/// `script[n]` (the last entry repeats). Each connection serves one request.
async fn raw_target(script: Vec<After>) -> (SocketAddr, mpsc::UnboundedReceiver<Event>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let (events, received) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        for n in 0.. {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let after = script[n.min(script.len() - 1)];
            tokio::spawn(misbehave(stream, after, events.clone()));
        }
    });
    (addr, received)
}

async fn misbehave(mut stream: TcpStream, after: After, events: mpsc::UnboundedSender<Event>) {
    if read_head(&mut stream).await.is_none() {
        return;
    }
    let start = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\n";
    if stream.write_all(start).await.is_err() || stream.write_all(&[b'a'; 100]).await.is_err() {
        return;
    }
    let _ = stream.flush().await;
    let _ = events.send(Event::Sent);
    match after {
        After::Close => drop(stream),
        After::Reset => {
            let _ = stream.set_zero_linger();
            drop(stream);
        }
        After::Stall => {
            // Anything the proxy sends or its close ends this read.
            let _ = stream.read(&mut [0u8; 1024]).await;
            let _ = events.send(Event::PeerClosed);
        }
        After::Finish => {
            let _ = stream.write_all(&[b'a'; 900]).await;
            let _ = stream.shutdown().await;
        }
    }
}

/// A route to `upstream` with a JSON-lines trace in `dir` and these extra route keys.
fn traced_route(dir: &Path, extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[trace]
jsonl = "{}"

[[routes]]
name = "faulty"
prefix = "/"
upstream = "{{upstream}}"
{extra}
"#,
        dir.join("trace.jsonl").display()
    )
}

/// Every record of the JSON-lines trace in `dir`, once the proxy has shut down and closed it.
async fn records(proxy: Running, dir: &Path) -> Vec<serde_json::Value> {
    proxy.shutdown().await;
    std::fs::read_to_string(dir.join("trace.jsonl"))
        .expect("trace file")
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON record per line"))
        .collect()
}

/// Reads a response body to its end or its first error; `Err` carries the bytes read before it.
async fn read_to_end(
    response: Response<hyper::body::Incoming>,
) -> Result<Bytes, (Bytes, hyper::Error)> {
    let mut body = response.into_body();
    let mut read = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    read.extend_from_slice(&data);
                }
            }
            Err(err) => return Err((read.freeze(), err)),
        }
    }
    Ok(read.freeze())
}

fn request(addr: SocketAddr, path: &str) -> Request<provproxy::body::ProxyBody> {
    Request::get(path)
        .header("host", addr.to_string())
        .body(full(""))
        .expect("request")
}

async fn a_target_breaking_off_its_body_cuts_the_clients_response_off(after: After) {
    let (target, mut events) = raw_target(vec![after]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let proxy = proxy(
        &traced_route(dir.path(), ""),
        &format!("http://{target}"),
        &[],
    )
    .await;
    let addr = proxy.addr();
    let response = send_h1(addr, request(addr, "/Users")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let outcome = tokio::time::timeout(PATIENCE, read_to_end(response))
        .await
        .expect("the cut-off body ended instead of hanging");
    match outcome {
        Err((read, _)) => assert!(read.len() <= 100, "read {} bytes", read.len()),
        Ok(read) => panic!("the body ended cleanly after {} of 1000 bytes", read.len()),
    }
    assert_eq!(events.recv().await, Some(Event::Sent));

    let records = records(proxy, dir.path()).await;
    assert_eq!(records.len(), 1, "{records:#?}");
    let error = &records[0]["error"];
    assert_eq!(error["kind"], "response_cut_short", "{error}");
    assert_eq!(error["side"], "upstream", "{error}");
    assert_eq!(records[0]["status"], 200);
}

#[tokio::test]
async fn a_target_closing_mid_body_cuts_the_clients_response_off_and_the_record_says_cut_short() {
    a_target_breaking_off_its_body_cuts_the_clients_response_off(After::Close).await;
}

#[tokio::test]
async fn a_target_resetting_mid_body_cuts_the_clients_response_off_and_the_record_says_cut_short() {
    a_target_breaking_off_its_body_cuts_the_clients_response_off(After::Reset).await;
}

#[tokio::test]
async fn a_client_giving_up_on_a_stalled_body_closes_the_target_connection_and_frees_the_session() {
    // The first connection stalls after 100 bytes; the next ones answer in full.
    let (target, mut events) = raw_target(vec![After::Stall, After::Finish]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let proxy = proxy(
        &traced_route(
            dir.path(),
            "[routes.session]\ncookies = true\nkey = \"route\"\nserialize = true",
        ),
        &format!("http://{target}"),
        &[],
    )
    .await;
    let addr = proxy.addr();

    // The client reads the head and the first bytes, then waits for the rest in vain.
    let response = send_h1(addr, request(addr, "/Users")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut read = 0;
    while read < 100 {
        let frame = tokio::time::timeout(PATIENCE, body.frame())
            .await
            .expect("the first bytes arrived")
            .expect("a frame")
            .expect("no error yet");
        read += frame.into_data().map_or(0, |data| data.len());
    }
    assert_eq!(events.recv().await, Some(Event::Sent));

    // The session is serialised: while the stalled exchange holds it, a second request of the
    // same session waits, so it is sent now and must complete once the first client gives up.
    let second = tokio::spawn(async move {
        let response = send_h1(addr, request(addr, "/Groups")).await;
        read_to_end(response).await.map_err(|(_, err)| err)
    });
    drop(body);

    let closed = tokio::time::timeout(PATIENCE, events.recv())
        .await
        .expect("the proxy closed the stalled target connection");
    assert_eq!(closed, Some(Event::PeerClosed));
    let second = tokio::time::timeout(PATIENCE, second)
        .await
        .expect("the next request of the session was not left waiting")
        .expect("client task")
        .expect("complete body");
    assert_eq!(second.len(), 1000);

    let records = records(proxy, dir.path()).await;
    let stalled = records
        .iter()
        .find(|r| r["url"].as_str().is_some_and(|u| u.ends_with("/Users")))
        .expect("a record of the stalled exchange");
    assert_eq!(stalled["error"]["kind"], "response_cut_short", "{stalled}");
    assert_eq!(stalled["error"]["side"], "client", "{stalled}");
}

#[tokio::test]
async fn a_target_stalling_mid_body_is_cut_off_after_request_timeout_and_frees_the_session() {
    let (target, mut events) = raw_target(vec![After::Stall, After::Finish]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let proxy = proxy(
        &traced_route(
            dir.path(),
            "request_timeout = \"300ms\"\n[routes.session]\ncookies = true\nkey = \"route\"\nserialize = true",
        ),
        &format!("http://{target}"),
        &[],
    )
    .await;
    let addr = proxy.addr();
    let response = send_h1(addr, request(addr, "/Users")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let outcome = tokio::time::timeout(PATIENCE, read_to_end(response))
        .await
        .expect("the stalled body was cut off instead of hanging");
    assert!(outcome.is_err(), "the body must not look complete");
    assert_eq!(events.recv().await, Some(Event::Sent));
    let next = tokio::time::timeout(PATIENCE, async {
        let response = send_h1(addr, request(addr, "/Groups")).await;
        read_to_end(response).await.map_err(|(_, err)| err)
    })
    .await
    .expect("the serialised session was freed")
    .expect("complete body");
    assert_eq!(next.len(), 1000);
    let records = records(proxy, dir.path()).await;
    let stalled = records
        .iter()
        .find(|r| r["url"].as_str().is_some_and(|u| u.ends_with("/Users")))
        .expect("a record of the stalled exchange");
    assert_eq!(stalled["error"]["kind"], "response_cut_short", "{stalled}");
    assert_eq!(stalled["error"]["side"], "upstream", "{stalled}");
}

/// The value of a counter in the Prometheus text from `/metrics`, 0 when absent.
async fn counter(admin: SocketAddr, name: &str) -> u64 {
    let metrics = get(admin, "/metrics", &[]).await.text();
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

/// Replaces the directory `dir` by a regular file, so that creating anything inside it fails
/// with ENOTDIR — also for root, whom a chmod would not stop.
fn make_unwritable(dir: &Path) {
    std::fs::remove_dir_all(dir).expect("remove directory");
    std::fs::write(dir, b"not a directory").expect("put a file in its place");
}

/// A target that opens a session: the first request without a cookie gets `SID=<n>`.
fn session_target(recorded: &Recorded) -> Response<provproxy::body::ProxyBody> {
    let mut response = json(StatusCode::OK, r#"{"ok":true}"#);
    if recorded.headers.get("cookie").is_none() {
        response.headers_mut().insert(
            "set-cookie",
            http::HeaderValue::from_static("SID=fault-session-1; Path=/; HttpOnly"),
        );
    }
    response
}

#[tokio::test]
async fn an_unwritable_session_state_file_is_counted_and_sessions_go_on_in_memory() {
    let mut upstream = Upstream::start(session_target).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let state_dir = dir.path().join("state");
    let toml = format!(
        r#"
[server]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
[[routes]]
name = "locked"
prefix = "/"
upstream = "{{upstream}}"
[routes.session]
cookies = true
key = "route"
persist = "{}"
"#,
        state_dir.join("sessions.json").display()
    );
    let proxy = proxy(&toml, &upstream.url(), &[]).await;
    let admin = proxy.admin_addr().expect("admin listener");
    make_unwritable(&state_dir);

    let first = get(proxy.addr(), "/Users", &[]).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    // The state file is written shortly after the session opened; wait for that write to fail.
    let mut poll = tokio::time::interval(Duration::from_millis(50));
    tokio::time::timeout(PATIENCE, async {
        while counter(admin, "provproxy_session_persist_failures_total").await == 0 {
            poll.tick().await;
        }
    })
    .await
    .expect("the failed state write was counted");

    let second = get(proxy.addr(), "/Groups", &[]).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.text());
    let seen = upstream.received();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[1].header("cookie"),
        Some("SID=fault-session-1"),
        "the session kept in memory is still used"
    );
    let sessions = get(admin, "/sessions", &[]).await.text();
    assert!(sessions.contains("locked"), "{sessions}");
    proxy.shutdown().await;
}

#[tokio::test]
async fn unwritable_trace_files_are_counted_and_requests_go_on_succeeding() {
    let mut upstream = Upstream::start(common::ok).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let trace_dir = dir.path().join("traces");
    let toml = format!(
        r#"
[server]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
[trace]
har = "{har}"
jsonl = "{jsonl}"
[[routes]]
name = "r"
prefix = "/"
upstream = "{{upstream}}"
"#,
        har = trace_dir.join("trace.har").display(),
        jsonl = trace_dir.join("trace.jsonl").display(),
    );
    let proxy = proxy(&toml, &upstream.url(), &[]).await;
    let admin = proxy.admin_addr().expect("admin listener");
    make_unwritable(&trace_dir);

    // The writer notices within seconds that its files are gone and cannot be recreated; every
    // request meanwhile must succeed.
    let mut requests = 0;
    let mut poll = tokio::time::interval(Duration::from_millis(100));
    tokio::time::timeout(PATIENCE, async {
        while counter(admin, "provproxy_trace_write_errors_total").await == 0 {
            let reply = get(proxy.addr(), "/Users", &[]).await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
            requests += 1;
            poll.tick().await;
        }
    })
    .await
    .expect("the failed trace writes were counted");
    let reply = get(proxy.addr(), "/Users", &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(upstream.received().len(), requests + 1);
    proxy.shutdown().await;
}

/// A target that answers `/slow` only once `release` is sent, reporting each arrival, and opens
/// a session on the first request without a cookie.
async fn held_target() -> (
    common::Server,
    mpsc::UnboundedReceiver<()>,
    watch::Sender<bool>,
) {
    let (arrived, arrivals) = mpsc::unbounded_channel();
    let (release, released) = watch::channel(false);
    let target = serve(None, move |request: Request<_>, _: ConnMeta| {
        let arrived = arrived.clone();
        let mut released = released.clone();
        async move {
            let mut response = Response::new(full("done"));
            if request.headers().get("cookie").is_none() {
                response.headers_mut().insert(
                    "set-cookie",
                    http::HeaderValue::from_static("SID=sigterm-session-42; Path=/"),
                );
            }
            if request.uri().path() == "/slow" {
                let _ = arrived.send(());
                let _ = released.wait_for(|go| *go).await;
            }
            response
        }
    })
    .await;
    (target, arrivals, release)
}

/// Waits until connecting to `addr` is refused, polling the condition itself.
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
    .expect("the listener closed after SIGTERM");
}

#[tokio::test]
async fn sigterm_under_load_finishes_requests_in_flight_refuses_new_ones_and_saves_the_session() {
    const IN_FLIGHT: usize = 8;
    let (target, mut arrivals, release) = held_target().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let state: PathBuf = dir.path().join("state").join("sessions.json");
    let toml = format!(
        r#"
[server]
listen = "127.0.0.1:0"
shutdown_grace = "30s"
[[routes]]
name = "locked"
prefix = "/"
upstream = "{}"
[routes.session]
cookies = true
key = "route"
serialize = false
persist = "{}"
"#,
        target.url(),
        state.display()
    );
    let (binary, addr, _) =
        tokio::task::spawn_blocking(move || Binary::start(&toml, Options::default()))
            .await
            .expect("provproxy started");

    let opened = get(addr, "/login", &[]).await;
    assert_eq!(opened.status, StatusCode::OK);
    let in_flight: Vec<_> = (0..IN_FLIGHT)
        .map(|_| tokio::spawn(common::try_request_h1(addr, request(addr, "/slow"))))
        .collect();
    for _ in 0..IN_FLIGHT {
        arrivals.recv().await.expect("a request reached the target");
    }

    binary::signal(binary.pid(), "TERM");
    until_refused(addr).await;
    release.send(true).expect("target still running");
    for request in in_flight {
        let reply = tokio::time::timeout(PATIENCE, request)
            .await
            .expect("the in-flight request finished")
            .expect("client task")
            .expect("the in-flight request got its response");
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.text(), "done");
    }
    let exit = tokio::task::spawn_blocking(move || binary.exit());
    let (exit, stderr) = tokio::time::timeout(PATIENCE, exit)
        .await
        .expect("provproxy exited once drained")
        .expect("wait task");
    assert!(exit.success(), "provproxy exited with {exit}:\n{stderr}");
    let saved = std::fs::read_to_string(&state).expect("session state saved at shutdown");
    assert!(
        saved.contains("sigterm-session-42"),
        "the session is in the state file: {saved}"
    );
}
