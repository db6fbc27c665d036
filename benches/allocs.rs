//! Heap allocations per proxied request (issue 22), trace off and trace on.
//!
//! `cargo bench --bench allocs` prints the figures; under `cargo test --all-targets` it runs the
//! same measurement with fewer requests and only checks that it works.
//!
//! The global allocator is the binary's (mimalloc) behind a counter. Only the proxy's threads
//! are counted: the client (this thread, a raw `TcpStream` writing prebuilt bytes) and the
//! upstream mark their threads as not counted. The proxy runs on a current-thread runtime of its
//! own, as one worker does in the binary; the trace writer's thread counts, as it is the proxy's
//! work. Each figure is the difference of two runs (`few` and `many` requests, each from start
//! to shutdown, after a first run that takes the process's one-off costs), divided by the
//! difference in requests, so start-up and shutdown cancel out.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, SET_COOKIE};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

#[path = "support/configs.rs"]
mod configs;
use configs::PASSWORD;

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Const-initialised and without a destructor, so the allocator may read it at any time.
    static COUNTED: Cell<bool> = const { Cell::new(true) };
}

fn note(size: usize) {
    if COUNTED.try_with(Cell::get).unwrap_or(false) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(size as u64, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to mimalloc; the counting touches no heap memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const PATH: &str = "/scim/v2/Users/2819c223-7f76-453a-919d-413861904646";
const USER_JSON: &str = r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"id":"2819c223-7f76-453a-919d-413861904646","externalId":"bjensen","userName":"bjensen@example.com","name":{"formatted":"Ms. Barbara J Jensen III","familyName":"Jensen","givenName":"Barbara"},"displayName":"Babs Jensen","active":true,"emails":[{"value":"bjensen@example.com","type":"work","primary":true}],"groups":[{"value":"e9e30dba-f08f-4109-8486-d5c6a331660a","display":"Tour Guides"}],"meta":{"resourceType":"User","created":"2010-01-23T04:56:22Z","lastModified":"2011-05-13T04:42:34Z","version":"W/\"3694e05e9dff591\""}}"#;

type BenchResult<T> = Result<T, String>;

fn err<E: std::fmt::Display>(context: &str) -> impl FnOnce(E) -> String + '_ {
    move |e| format!("{context}: {e}")
}

fn main() -> ExitCode {
    COUNTED.with(|c| c.set(false));
    let bench = std::env::args().any(|a| a == "--bench");
    // `--trace=off`, `--trace=on` or `--trace=jsonl` (JSON lines only, no HAR) measures only
    // that case, for a profiler's run.
    let only = std::env::args().find_map(|a| {
        a.strip_prefix("--trace=")
            .and_then(|v| Trace::ALL.into_iter().find(|t| t.arg() == v))
    });
    match run(bench, only) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench allocs: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What the proxy records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trace {
    Off,
    On,
    JsonLinesOnly,
}

impl Trace {
    /// Measured without `--trace=`.
    const MEASURED: [Trace; 2] = [Trace::Off, Trace::On];
    const ALL: [Trace; 3] = [Trace::Off, Trace::On, Trace::JsonLinesOnly];

    fn arg(self) -> &'static str {
        match self {
            Trace::Off => "off",
            Trace::On => "on",
            Trace::JsonLinesOnly => "jsonl",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Trace::Off => "off",
            Trace::On => "on (HAR + JSONL + bodies)",
            Trace::JsonLinesOnly => "on (JSONL + bodies)",
        }
    }
}

fn run(bench: bool, only: Option<Trace>) -> BenchResult<()> {
    let (few, many) = if bench { (500, 5_500) } else { (20, 120) };
    let upstream = start_upstream()?;
    let trace_dir = tempfile::tempdir().map_err(err("temp dir"))?;
    let cases = match only {
        Some(trace) => vec![trace],
        None => Trace::MEASURED.to_vec(),
    };
    for trace in cases {
        let dir = (trace != Trace::Off).then(|| (trace_dir.path(), trace == Trace::On));
        // The first run pays the process's one-off costs (lazy statics, first-use tables).
        proxied(upstream, dir, few)?;
        let (a0, b0) = proxied(upstream, dir, few)?;
        let (a1, b1) = proxied(upstream, dir, many)?;
        let n = (many - few) as f64;
        let allocs = a1.saturating_sub(a0) as f64 / n;
        let bytes = b1.saturating_sub(b0) as f64 / n;
        println!(
            "allocations per proxied request, trace {}: {allocs:.1} ({bytes:.0} bytes)",
            trace.label()
        );
        if !(allocs > 0.0 && allocs < 10_000.0) {
            return Err(format!(
                "implausible count: {allocs} allocations per request"
            ));
        }
    }
    Ok(())
}

/// Basic injection + session jar + challenge expand: the load benchmark's config
/// (`benches/support/configs.rs`), without the admin listener; `trace` is the traces' directory
/// and whether a HAR is written besides the JSON lines.
fn proxy_toml(upstream: SocketAddr, trace: Option<(&std::path::Path, bool)>) -> String {
    configs::provproxy_toml(
        upstream,
        configs::Features {
            trace: trace.map(|(dir, _)| dir),
            har: trace.is_none_or(|(_, har)| har),
            ..configs::Features::PLAIN
        },
    )
}

/// Starts a proxy on a counted thread, sends `requests` requests through it on one keep-alive
/// connection, shuts it down; returns the counters' growth over the whole run.
fn proxied(
    upstream: SocketAddr,
    trace: Option<(&std::path::Path, bool)>,
    requests: u64,
) -> BenchResult<(u64, u64)> {
    if let Some((dir, _)) = trace {
        // A fresh pair of files each run, so both runs write the same way.
        for name in ["bench.har", "bench.jsonl"] {
            let _ = std::fs::remove_file(dir.join(name));
        }
    }
    let toml = proxy_toml(upstream, trace);
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let a0 = ALLOCS.load(Ordering::Relaxed);
    let b0 = BYTES.load(Ordering::Relaxed);
    let proxy = std::thread::spawn(move || -> BenchResult<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(err("runtime"))?;
        runtime.block_on(async move {
            let started = provproxy::demo::start_proxy(&toml, &[("BENCH_PASSWORD", PASSWORD)])
                .await
                .map_err(err("start proxy"));
            let running = match started {
                Ok(running) => running,
                Err(e) => {
                    let _ = addr_tx.send(None);
                    return Err(e);
                }
            };
            let _ = addr_tx.send(Some(running.addr()));
            let _ = stop_rx.await;
            running.shutdown().await;
            Ok(())
        })
    });
    let addr = addr_rx
        .recv()
        .map_err(err("proxy thread"))?
        .ok_or("proxy did not start")?;
    let sent = drive(addr, requests);
    let _ = stop_tx.send(());
    let joined = proxy
        .join()
        .map_err(|_| "proxy thread panicked".to_string())?;
    sent?;
    joined?;
    Ok((
        ALLOCS.load(Ordering::Relaxed) - a0,
        BYTES.load(Ordering::Relaxed) - b0,
    ))
}

/// The client: prebuilt request bytes and one reused buffer, so it allocates nothing per request
/// (and its thread is not counted anyway).
fn drive(addr: SocketAddr, requests: u64) -> BenchResult<()> {
    let mut stream = TcpStream::connect(addr).map_err(err("connect"))?;
    let _ = stream.set_nodelay(true);
    let request =
        format!("GET {PATH} HTTP/1.1\r\nHost: {addr}\r\nCookie: JSESSIONID=from-client\r\n\r\n");
    let mut buf = vec![0u8; 64 * 1024];
    for _ in 0..requests {
        stream
            .write_all(request.as_bytes())
            .map_err(err("write request"))?;
        read_response(&mut stream, &mut buf)?;
    }
    Ok(())
}

/// Reads one response with a `Content-Length` body; checks it is a 200.
fn read_response(stream: &mut TcpStream, buf: &mut [u8]) -> BenchResult<()> {
    let mut filled = 0;
    loop {
        let n = stream.read(&mut buf[filled..]).map_err(err("read"))?;
        if n == 0 {
            return Err("proxy closed the connection".into());
        }
        filled += n;
        let Some(head_end) = find(&buf[..filled], b"\r\n\r\n") else {
            continue;
        };
        let head = std::str::from_utf8(&buf[..head_end]).map_err(err("response head"))?;
        if !head.starts_with("HTTP/1.1 200") {
            return Err(format!("unexpected response: {head}"));
        }
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .ok_or("response without Content-Length")?;
        let total = head_end + 4 + length;
        while filled < total {
            let n = stream.read(&mut buf[filled..]).map_err(err("read"))?;
            if n == 0 {
                return Err("proxy closed the connection mid-body".into());
            }
            filled += n;
        }
        return Ok(());
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

async fn upstream_reply(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let has_cookie = req.headers().contains_key(COOKIE);
    let authorized = req.headers().contains_key(AUTHORIZATION);
    let _ = req.into_body().collect().await;
    let mut response = Response::new(Full::new(Bytes::from_static(USER_JSON.as_bytes())));
    if !authorized {
        *response.status_mut() = StatusCode::UNAUTHORIZED;
    }
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/scim+json"),
    );
    if !has_cookie {
        headers.insert(
            SET_COOKIE,
            HeaderValue::from_static("JSESSIONID=5f1d0c2a9be84e51a1c3; Path=/; HttpOnly"),
        );
    }
    Ok(response)
}

/// The upstream on a thread of its own, not counted; it lives as long as the process.
fn start_upstream() -> BenchResult<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(err("bind upstream"))?;
    let addr = listener.local_addr().map_err(err("upstream addr"))?;
    listener
        .set_nonblocking(true)
        .map_err(err("upstream nonblocking"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(err("upstream runtime"))?;
    std::thread::spawn(move || {
        COUNTED.with(|c| c.set(false));
        runtime.block_on(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                return;
            };
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service_fn(upstream_reply))
                        .await;
                });
            }
        });
    });
    Ok(addr)
}
