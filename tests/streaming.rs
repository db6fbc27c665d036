//! Bodies stream through the proxy: 100 MiB up and 100 MiB down arrive whole while the
//! process's peak resident memory barely moves. Its own test binary, so that nothing else
//! runs in the process while the peak is measured.

mod common;

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Incoming;
use provproxy::body::{full, stream, ProxyBody};

use common::{proxy, send_h1, serve, ConnMeta};

const CHUNK_SIZE: usize = 64 * 1024;
const CHUNKS: usize = 1600;
/// 100 MiB.
const TOTAL: u64 = (CHUNK_SIZE * CHUNKS) as u64;
/// How much the peak resident set may grow while 100 MiB go through.
const PEAK_GROWTH_LIMIT_KIB: u64 = 20 * 1024;

static CHUNK: [u8; CHUNK_SIZE] = [b'x'; CHUNK_SIZE];

/// The transfers measure the process-wide peak, so they must not overlap.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// 100 MiB generated as it is read: the same static chunk over and over, never allocated whole.
fn hundred_mib() -> ProxyBody {
    let chunks = (0..CHUNKS).map(|_| Ok::<_, Infallible>(Frame::data(Bytes::from_static(&CHUNK))));
    stream(StreamBody::new(futures_util::stream::iter(chunks)))
}

/// Reads a body to its end, keeping only the count.
async fn count(mut body: Incoming) -> u64 {
    let mut total = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("body frame").into_data() {
            total += data.len() as u64;
        }
    }
    total
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/self/status"))
}

/// Resets the peak resident set to the current one (Linux ≥ 4.0), so each transfer is measured
/// from where it starts rather than from an earlier peak.
fn reset_peak() -> u64 {
    std::fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM through clear_refs");
    status_kib("VmHWM:")
}

fn route() -> &'static str {
    r#"
[server]
listen = "127.0.0.1:0"
[[routes]]
name = "bulk"
prefix = "/"
upstream = "{upstream}"
"#
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_100_mib_upload_streams_to_the_target_without_growing_peak_memory() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let target = serve(None, |request: Request<Incoming>, _: ConnMeta| async move {
        let received = count(request.into_body()).await;
        Response::new(full(received.to_string()))
    })
    .await;
    let proxy = proxy(route(), &target.url(), &[]).await;
    let request = Request::post("/upload")
        .header("host", proxy.addr().to_string())
        .body(hundred_mib())
        .expect("request");

    let before = reset_peak();
    let response = send_h1(proxy.addr(), request).await;
    assert_eq!(response.status(), StatusCode::OK);
    let reported = response
        .into_body()
        .collect()
        .await
        .expect("reply body")
        .to_bytes();
    let peak = status_kib("VmHWM:");

    assert_eq!(
        String::from_utf8_lossy(&reported),
        TOTAL.to_string(),
        "bytes the target received"
    );
    assert!(
        peak.saturating_sub(before) < PEAK_GROWTH_LIMIT_KIB,
        "peak resident memory grew by {} KiB for a {TOTAL}-byte upload",
        peak - before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_100_mib_download_streams_to_the_client_without_growing_peak_memory() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let target = serve(None, |_request, _: ConnMeta| async move {
        Response::new(hundred_mib())
    })
    .await;
    let proxy = proxy(route(), &target.url(), &[]).await;
    let request = Request::get("/download")
        .header("host", proxy.addr().to_string())
        .body(full(""))
        .expect("request");

    let before = reset_peak();
    let response = send_h1(proxy.addr(), request).await;
    assert_eq!(response.status(), StatusCode::OK);
    let received = count(response.into_body()).await;
    let peak = status_kib("VmHWM:");

    assert_eq!(received, TOTAL, "bytes the client received");
    assert!(
        peak.saturating_sub(before) < PEAK_GROWTH_LIMIT_KIB,
        "peak resident memory grew by {} KiB for a {TOTAL}-byte download",
        peak - before
    );
}
