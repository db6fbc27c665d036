//! Soak: many session keys, many requests each, all at once, through one proxy to a target that
//! opens one session per tenant and refuses a tenant's request without its own cookie. Proves
//! zero errors, zero cookies crossing from one key to another, one session per key however many
//! requests race for it, and memory that stays flat across rounds.
//!
//! CI size: 100 keys × 20 requests × 3 rounds. `PROVPROXY_SOAK_FULL=1`: 1,000 keys × 20 requests.
//! Figures are printed (`cargo test --test soak -- --nocapture`).

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use provproxy::body::{full, ProxyBody};
use tokio::sync::Semaphore;

use common::{proxy, serve, ConnMeta, PATIENCE};

const ROUNDS: usize = 3;
/// Requests in flight at once, across all keys: enough that requests of one key race each other
/// for its session, few enough for a 2-core CI machine.
const IN_FLIGHT: usize = 128;
/// RSS growth allowed from the end of round 1 to the end of round 3. Round 1 opens every session
/// and warms every pool; later rounds only reuse them, so growth beyond allocator noise means
/// something accumulates per request.
const RSS_GROWTH_LIMIT_KIB: u64 = 16 * 1024;

/// What the target saw, by tenant.
#[derive(Default)]
struct TargetState {
    /// The cookie value issued to each tenant.
    issued: Mutex<HashMap<String, String>>,
    next: AtomicU64,
    requests: AtomicU64,
    /// Requests carrying a session cookie issued to another tenant (or never issued).
    foreign_cookie: AtomicU64,
    /// Requests of a tenant with an open session that came without its cookie.
    missing_cookie: AtomicU64,
}

impl TargetState {
    /// The session-locked rule per tenant: the first request opens the session (and gets its
    /// cookie); every later one must carry exactly that cookie.
    fn answer(&self, tenant: &str, cookie: Option<&str>) -> Response<ProxyBody> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let sid = cookie.and_then(|c| {
            c.split(';')
                .map(str::trim)
                .find_map(|pair| pair.strip_prefix("SID="))
        });
        let mut issued = self.issued.lock().expect("target state");
        let refuse = |counter: &AtomicU64| {
            counter.fetch_add(1, Ordering::Relaxed);
            Response::builder()
                .status(StatusCode::UNAUTHORIZED)
                .body(full("session refused"))
                .expect("response")
        };
        match (issued.get(tenant), sid) {
            (Some(own), Some(sid)) if own == sid => Response::new(full(tenant.to_owned())),
            (_, Some(_)) => refuse(&self.foreign_cookie),
            (Some(_), None) => refuse(&self.missing_cookie),
            (None, None) => {
                let n = self.next.fetch_add(1, Ordering::Relaxed);
                let sid = format!("{tenant}-{n}");
                issued.insert(tenant.to_owned(), sid.clone());
                Response::builder()
                    .header("set-cookie", format!("SID={sid}; Path=/; HttpOnly"))
                    .body(full(tenant.to_owned()))
                    .expect("response")
            }
        }
    }
}

/// Resident set size of this process (proxy, target and clients all live here), in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .expect("/proc/self/status")
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[derive(Debug, Default)]
struct RoundOutcome {
    errors: u64,
    /// Responses whose body named another tenant.
    crossed_responses: u64,
}

async fn round(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, ProxyBody>,
    addr: std::net::SocketAddr,
    keys: usize,
    per_key: usize,
) -> RoundOutcome {
    let gate = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut tasks = Vec::with_capacity(keys * per_key);
    // Interleaved so that each key's requests are in flight at the same time as each other.
    for n in 0..keys * per_key {
        let tenant = format!("tenant-{:04}", n % keys);
        let client = client.clone();
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.expect("semaphore");
            let request = Request::get(format!("http://{addr}/scim/Users?n={n}"))
                .header("x-tenant", &tenant)
                .body(full(""))
                .expect("request");
            let response = tokio::time::timeout(PATIENCE, client.request(request))
                .await
                .map_err(|_| "timeout".to_owned())?
                .map_err(|err| err.to_string())?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|err| err.to_string())?
                .to_bytes();
            if status != StatusCode::OK {
                return Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
            }
            Ok(body == tenant.as_bytes())
        }));
    }
    let mut outcome = RoundOutcome::default();
    let mut first_error = None;
    for task in tasks {
        match task.await.expect("request task") {
            Ok(true) => {}
            Ok(false) => outcome.crossed_responses += 1,
            Err(err) => {
                outcome.errors += 1;
                first_error.get_or_insert(err);
            }
        }
    }
    if let Some(err) = first_error {
        eprintln!("first error: {err}");
    }
    outcome
}

async fn soak(keys: usize, per_key: usize) {
    let state = Arc::new(TargetState::default());
    let target_state = state.clone();
    let target = serve(None, move |request: Request<_>, _: ConnMeta| {
        let state = target_state.clone();
        async move {
            let header = |name| {
                request
                    .headers()
                    .get(name)
                    .and_then(|v: &http::HeaderValue| v.to_str().ok())
            };
            state.answer(header("x-tenant").unwrap_or("none"), header("cookie"))
        }
    })
    .await;
    let config = r#"
[server]
listen = "127.0.0.1:0"

[[routes]]
name = "scim"
prefix = "/scim/"
upstream = "{upstream}"

[routes.session]
cookies = true
key = "header:X-Tenant"
serialize = true
"#;
    let proxy = proxy(config, &target.url(), &[]).await;
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(IN_FLIGHT)
        .build_http::<ProxyBody>();

    let started = Instant::now();
    let mut rss = Vec::new();
    for n in 1..=ROUNDS {
        let round_started = Instant::now();
        let outcome = round(&client, proxy.addr(), keys, per_key).await;
        rss.push(rss_kib());
        println!(
            "round {n}: {} requests, {} errors, {} crossed responses, RSS {} KiB, {:?}",
            keys * per_key,
            outcome.errors,
            outcome.crossed_responses,
            rss[n - 1],
            round_started.elapsed()
        );
        assert_eq!(outcome.errors, 0, "round {n}");
        assert_eq!(outcome.crossed_responses, 0, "round {n}");
    }
    let total = (keys * per_key * ROUNDS) as u64;
    let foreign = state.foreign_cookie.load(Ordering::Relaxed);
    let missing = state.missing_cookie.load(Ordering::Relaxed);
    let opened = state.next.load(Ordering::Relaxed);
    println!(
        "{keys} keys × {per_key} requests × {ROUNDS} rounds = {total} requests in {:?}; \
         target saw {} requests, {opened} sessions opened, {foreign} foreign cookies, \
         {missing} missing cookies; RSS per round {rss:?} KiB",
        started.elapsed(),
        state.requests.load(Ordering::Relaxed),
    );
    assert_eq!(foreign, 0, "a key's request carried another key's cookie");
    assert_eq!(
        missing, 0,
        "a request of an open session came without its cookie"
    );
    assert_eq!(opened, keys as u64, "each key opened exactly one session");
    assert_eq!(state.requests.load(Ordering::Relaxed), total);
    let growth = rss[ROUNDS - 1].saturating_sub(rss[0]);
    assert!(
        growth < RSS_GROWTH_LIMIT_KIB,
        "RSS grew {growth} KiB from round 1 to round {ROUNDS}: {rss:?}"
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_keys_each_keep_their_own_session_with_no_errors_or_leaks_and_flat_memory() {
    let full = std::env::var_os("PROVPROXY_SOAK_FULL").is_some_and(|v| v == "1");
    let keys = if full { 1000 } else { 100 };
    soak(keys, 20).await;
}
