//! Replicas (issue 18): two real `provproxy` processes sharing sessions, leases and OAuth
//! tokens through a real `redis-server`, in front of one session-locked target, behave towards
//! it like one proxy.

#[path = "support/binary.rs"]
mod support_binary;
#[path = "support/redis.rs"]
mod support_redis;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{COOKIE, SET_COOKIE, WWW_AUTHENTICATE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use provproxy::demo::client::{CookielessClient, Reply};
use provproxy::demo::csrf_target;
use provproxy::demo::oauth_target::{
    spawn_scim_target, spawn_token_endpoint, TokenEndpointConfig, SCIM_SCOPE, SCIM_USERS_PATH,
    TOKEN_PATH,
};
use provproxy::demo::server::{json, serve, TargetServer};
use support_binary::{Binary, Options};
use support_redis::RedisServer;
use tokio::sync::Notify;

const PASSWORD: &str = "app-pw-Zq8!replicas";
const STATE_KEY: &str = "rEpl1cas-state-key-0123456789-abcdef";
const REDIS_PASSWORD_ENV: &str = "APP_PASSWORD";
const COOKIE_NAME: &str = "JSESSIONID";
const PATIENCE: Duration = Duration::from_secs(20);
const POLL_EVERY: Duration = Duration::from_millis(20);

/// A session-locked target: one session at a time; while it is open, a call without its cookie
/// gets the `401 Token Basic` of the field case. An ended session's id gets a plain 401 (the
/// proxy re-logs in and replays). Counts the sessions it opened and every 401 it sent.
#[derive(Clone, Default)]
struct LockedTarget {
    state: Arc<TargetState>,
}

#[derive(Default)]
struct TargetState {
    open: Mutex<Option<(String, u64)>>,
    ended: Mutex<HashSet<String>>,
    issued: Mutex<Vec<String>>,
    next: AtomicU64,
    opened: AtomicU64,
    locked_out: AtomicU64,
    expired_refusals: AtomicU64,
    rotate_every: AtomicU64,
    /// The next call that opens a session waits until `release` is notified.
    stall_next_open: AtomicBool,
    /// Each call takes this long (a slow target), so that calls that may overlap do.
    work_ms: AtomicU64,
    in_flight: AtomicU64,
    most_in_flight: AtomicU64,
    stalled: Notify,
    release: Notify,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl LockedTarget {
    async fn spawn() -> (TargetServer, LockedTarget) {
        let target = LockedTarget::default();
        let handler = target.clone();
        let server = serve(move |request| {
            let target = handler.clone();
            async move { target.handle(request).await }
        })
        .await
        .expect("start the target");
        (server, target)
    }

    fn opened(&self) -> u64 {
        self.state.opened.load(Ordering::SeqCst)
    }

    fn locked_out(&self) -> u64 {
        self.state.locked_out.load(Ordering::SeqCst)
    }

    fn expired_refusals(&self) -> u64 {
        self.state.expired_refusals.load(Ordering::SeqCst)
    }

    fn issued(&self) -> Vec<String> {
        lock(&self.state.issued).clone()
    }

    /// Ends the open session: its id is refused from now on.
    fn expire(&self) {
        if let Some((id, _)) = lock(&self.state.open).take() {
            lock(&self.state.ended).insert(id);
        }
    }

    async fn handle(&self, request: Request<Bytes>) -> Response<Full<Bytes>> {
        let state = &self.state;
        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.most_in_flight.fetch_max(now, Ordering::SeqCst);
        let work = state.work_ms.load(Ordering::SeqCst);
        if work > 0 {
            tokio::time::sleep(Duration::from_millis(work)).await;
        }
        let response = self.answer(request).await;
        state.in_flight.fetch_sub(1, Ordering::SeqCst);
        response
    }

    async fn answer(&self, request: Request<Bytes>) -> Response<Full<Bytes>> {
        let state = &self.state;
        let presented: Option<String> = request
            .headers()
            .get_all(COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .find_map(|pair| {
                let (name, value) = pair.trim().split_once('=')?;
                (name == COOKIE_NAME).then(|| value.to_owned())
            });
        let mut set_cookie = None;
        {
            let mut open = lock(&state.open);
            match (open.as_mut(), &presented) {
                (Some((id, calls)), Some(sent)) if sent == id => {
                    *calls += 1;
                    let every = state.rotate_every.load(Ordering::SeqCst);
                    if every > 0 && *calls % every == 0 {
                        *id = self.new_id();
                        set_cookie = Some(id.clone());
                    }
                }
                (_, Some(sent)) if lock(&state.ended).contains(sent) => {
                    state.expired_refusals.fetch_add(1, Ordering::SeqCst);
                    return json(StatusCode::UNAUTHORIZED, r#"{"error":"session ended"}"#);
                }
                (Some(_), _) => {
                    state.locked_out.fetch_add(1, Ordering::SeqCst);
                    let mut response =
                        json(StatusCode::UNAUTHORIZED, r#"{"error":"session locked"}"#);
                    response.headers_mut().insert(
                        WWW_AUTHENTICATE,
                        HeaderValue::from_static(r#"Token Basic realm="app""#),
                    );
                    return response;
                }
                (None, _) => {
                    let id = self.new_id();
                    *open = Some((id.clone(), 1));
                    state.opened.fetch_add(1, Ordering::SeqCst);
                    set_cookie = Some(id);
                }
            }
        }
        let opening = presented.is_none() && set_cookie.is_some();
        if opening && state.stall_next_open.swap(false, Ordering::SeqCst) {
            state.stalled.notify_one();
            state.release.notified().await;
        }
        let mut response = json(
            StatusCode::OK,
            serde_json::json!({ "path": request.uri().path() }).to_string(),
        );
        if let Some(id) = set_cookie {
            response.headers_mut().insert(
                SET_COOKIE,
                HeaderValue::from_str(&format!("{COOKIE_NAME}={id}; Path=/; HttpOnly"))
                    .expect("cookie header"),
            );
        }
        response
    }

    fn new_id(&self) -> String {
        let n = self.state.next.fetch_add(1, Ordering::SeqCst);
        let id = format!("S{n:04}x{:08x}", rand_part(n));
        lock(&self.state.issued).push(id.clone());
        id
    }
}

/// A per-process varying part, so ids are not guessable from the test's own text.
fn rand_part(n: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()));
    (nanos ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)) & 0xffff_ffff
}

/// A replica's config: the session-locked route (and the OAuth route when given), state in
/// `redis`.
fn config(redis: &RedisServer, target: &str, on_unavailable: &str, extra_routes: &str) -> String {
    format!(
        r#"
{head}
[[routes]]
name = "app"
prefix = "/app/"
upstream = "{target}"

[routes.auth]
kind = "basic"
username = "svc_provision"
password = {{ env = "{REDIS_PASSWORD_ENV}" }}

[routes.session]
key = "route"
relogin_on = [401]
{extra_routes}
"#,
        head = head(redis, on_unavailable),
    )
}

/// The listeners and the `[state]` every replica of a test shares.
fn head(redis: &RedisServer, on_unavailable: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[admin]
listen = "127.0.0.1:0"

[state]
backend = "redis"
url = "{url}"
key_prefix = "replicas-test:"
encryption_key = {{ env = "PROVPROXY_STATE_KEY" }}
on_unavailable = "{on_unavailable}"
connect_timeout = "300ms"
command_timeout = "300ms"
"#,
        url = redis.url(),
    )
}

struct Replica {
    binary: Binary,
    addr: SocketAddr,
    admin: SocketAddr,
}

impl Replica {
    fn start(config: &str, env: &[(&str, &str)]) -> Replica {
        let mut all = vec![
            ("PROVPROXY_STATE_KEY", STATE_KEY),
            (REDIS_PASSWORD_ENV, PASSWORD),
        ];
        all.extend_from_slice(env);
        let (binary, addr, admin) = Binary::start(
            config,
            Options {
                env: &all,
                uid: None,
            },
        );
        Replica {
            binary,
            addr,
            admin: admin.expect("an admin listener"),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn admin(&self, method: Method, path: &str) -> Reply {
        CookielessClient::default()
            .send(
                method,
                &format!("http://{}{path}", self.admin),
                &[],
                Bytes::new(),
            )
            .await
            .expect("admin request")
    }

    async fn metric(&self, name: &str) -> u64 {
        let text = self.admin(Method::GET, "/metrics").await.text();
        text.lines()
            .find_map(|line| {
                let (metric, value) = line.split_once(' ')?;
                let metric = metric.strip_prefix("provproxy_")?;
                (metric == name || metric == format!("{name}_total"))
                    .then(|| value.parse::<f64>().ok())?
            })
            .unwrap_or_else(|| panic!("no metric {name}:\n{text}")) as u64
    }

    fn kill(self) {
        let status = std::process::Command::new("kill")
            .args(["-KILL", &self.binary.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        // Dropping the binary reaps it.
    }
}

async fn call(method: Method, url: &str) -> Reply {
    CookielessClient::default()
        .send(
            method.clone(),
            url,
            &[("content-type", "application/json")],
            Bytes::from_static(b"{}"),
        )
        .await
        .unwrap_or_else(|err| panic!("{method} {url}: {err}"))
}

async fn ok(method: Method, url: &str) -> Reply {
    let reply = call(method.clone(), url).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "{method} {url}: {}",
        reply.text()
    );
    reply
}

/// 16 calls at once, alternating between the two replicas; each must answer `expected`.
async fn parallel_over(replicas: &[Replica; 2], method: Method, path: &str, expected: StatusCode) {
    let mut calls = Vec::new();
    for i in 0..16 {
        let (method, url) = (method.clone(), replicas[i % 2].url(path));
        calls.push(tokio::spawn(async move { call(method, &url).await }));
    }
    for call in calls {
        let reply = call.await.expect("call");
        assert_eq!(reply.status, expected, "{}", reply.text());
    }
}

/// Polls `condition` until it holds or the deadline passes.
async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(POLL_EVERY).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn alternating_replicas_run_the_sequence_and_eighty_more_calls_in_one_target_session() {
    let redis = RedisServer::start();
    let (server, target) = LockedTarget::spawn().await;
    // The target rotates its session id every 7th call: each replica must see the other's.
    target.state.rotate_every.store(7, Ordering::SeqCst);
    let config = config(&redis, &server.url(), "fail", "");
    let replicas = [Replica::start(&config, &[]), Replica::start(&config, &[])];

    ok(Method::POST, &replicas[0].url("/app/accounts")).await;
    ok(
        Method::PATCH,
        &replicas[1].url("/app/accounts/1/entitlements"),
    )
    .await;
    ok(Method::GET, &replicas[0].url("/app/accounts/1")).await;
    let before = [
        replicas[0].metric("state_redis_round_trips").await,
        replicas[1].metric("state_redis_round_trips").await,
    ];
    for i in 0..80 {
        ok(Method::GET, &replicas[i % 2].url("/app/accounts/1")).await;
    }

    assert_eq!(target.opened(), 1, "one target session for the fleet");
    assert_eq!(target.locked_out(), 0, "no 401 Token Basic");
    assert!(
        target.issued().len() > 10,
        "the session id rotated along the way"
    );
    let after = [
        replicas[0].metric("state_redis_round_trips").await,
        replicas[1].metric("state_redis_round_trips").await,
    ];
    let trips = (after[0] - before[0]) + (after[1] - before[1]);
    assert!(
        trips <= 2 * 80,
        "at most 2 Redis round trips per request: {trips} for 80"
    );
    // Without rotation a call costs one: the 80 calls rotated 80/7 times at most.
    assert!(trips <= 80 + 80 / 7 + 2, "{trips} round trips for 80 calls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_and_eight_parallel_first_calls_on_two_replicas_open_one_session_without_a_401() {
    let redis = RedisServer::start();
    let (server, target) = LockedTarget::spawn().await;
    let config = config(&redis, &server.url(), "fail", "");
    let replicas = [Replica::start(&config, &[]), Replica::start(&config, &[])];

    parallel_over(&replicas, Method::GET, "/app/accounts", StatusCode::OK).await;

    assert_eq!(target.opened(), 1);
    assert_eq!(target.locked_out(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_ended_session_is_renewed_once_for_the_fleet_and_each_waiting_request_replayed_once() {
    let redis = RedisServer::start();
    let (server, target) = LockedTarget::spawn().await;
    let config = config(&redis, &server.url(), "fail", "");
    let replicas = [Replica::start(&config, &[]), Replica::start(&config, &[])];
    ok(Method::GET, &replicas[0].url("/app/accounts")).await;
    ok(Method::GET, &replicas[1].url("/app/accounts")).await;

    target.expire();
    parallel_over(&replicas, Method::GET, "/app/accounts", StatusCode::OK).await;

    assert_eq!(target.opened(), 2, "one re-login for the whole fleet");
    assert_eq!(
        target.locked_out(),
        0,
        "no replica logged in beside the other"
    );
    assert!(
        target.expired_refusals() <= 16,
        "each request was refused with the old session at most once: {}",
        target.expired_refusals()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_replica_and_a_lease_holder_killed_mid_login_leave_the_survivor_one_session() {
    let redis = RedisServer::start();
    let (server, target) = LockedTarget::spawn().await;
    let config = config(&redis, &server.url(), "fail", "");

    // A lease holder killed mid-login: its lease expires and the survivor takes over.
    let doomed = Replica::start(&config, &[]);
    let survivor = Replica::start(&config, &[]);
    target.state.stall_next_open.store(true, Ordering::SeqCst);
    let stalled = target.state.stalled.notified();
    let url = doomed.url("/app/accounts");
    let login = tokio::spawn(async move { CookielessClient::default().get(&url, &[]).await });
    stalled.await;
    doomed.kill();
    let _ = login.await;
    // The target never answered the dead replica's login: its session is not open yet.
    target.state.release.notify_one();
    target.expire();
    let started = Instant::now();
    ok(Method::GET, &survivor.url("/app/accounts")).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took over within the lease time: {:?}",
        started.elapsed()
    );
    assert_eq!(survivor.metric("state_lease_takeovers").await, 1);
    let opened = target.opened();

    // A replica killed with SIGKILL mid-sequence: the other carries on in the same session.
    let second = Replica::start(&config, &[]);
    for i in 0..10 {
        let replica = if i % 2 == 0 { &survivor } else { &second };
        ok(Method::GET, &replica.url("/app/accounts/1")).await;
    }
    second.kill();
    for _ in 0..10 {
        ok(Method::GET, &survivor.url("/app/accounts/1")).await;
    }
    assert_eq!(target.opened(), opened, "no new session after the kill");
    assert_eq!(target.locked_out(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_oauth_calls_over_two_replicas_fetch_one_token_and_a_revoked_one_is_refetched_once()
{
    let redis = RedisServer::start();
    let (server, _target) = LockedTarget::spawn().await;
    let (endpoint, tokens) = spawn_token_endpoint(TokenEndpointConfig::default())
        .await
        .expect("token endpoint");
    let (scim, scim_stats) = spawn_scim_target(&tokens).await.expect("scim target");
    let oauth = format!(
        r#"
[[routes]]
name = "scim"
prefix = "/scim/"
strip_prefix = true
upstream = "{scim}"

[routes.auth]
kind = "oauth2"
grant = "client_credentials"
token_url = "{token_url}{TOKEN_PATH}"
client_id = "provproxy"
client_secret = {{ env = "CLIENT_SECRET" }}
scopes = ["{SCIM_SCOPE}"]
"#,
        scim = scim.url(),
        token_url = endpoint.url(),
    );
    let config = config(&redis, &server.url(), "fail", &oauth);
    let env = [("CLIENT_SECRET", "demo-client-secret")];
    let replicas = [Replica::start(&config, &env), Replica::start(&config, &env)];
    let users = format!("/scim{SCIM_USERS_PATH}");

    let mut calls = Vec::new();
    for i in 0..20 {
        let url = replicas[i % 2].url(&users);
        calls.push(tokio::spawn(async move { call(Method::GET, &url).await }));
    }
    for call in calls {
        let reply = call.await.expect("call");
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }
    assert_eq!(tokens.hits(), 1, "one token for the fleet");

    tokens.revoke_all();
    for i in 0..6 {
        ok(Method::GET, &replicas[i % 2].url(&users)).await;
    }
    assert_eq!(
        tokens.hits(),
        2,
        "the revoked token was refetched once for both replicas"
    );
    assert!(
        scim_stats.rejected() <= 2,
        "each replica was refused at most once"
    );

    // Nothing readable at rest: no token, cookie, credential or key in any key or value.
    let dump = redis.dump();
    assert!(dump.contains("replicas-test:token:scim"), "{dump}");
    for secret in tokens.issued_tokens().into_iter().chain([
        PASSWORD.to_owned(),
        STATE_KEY.to_owned(),
        "demo-client-secret".to_owned(),
    ]) {
        assert!(
            !dump.contains(&secret),
            "a secret sits in Redis in clear:\n{dump}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nothing_sits_in_redis_in_clear_another_key_sends_no_garbage_and_rotation_reads_the_old() {
    let redis = RedisServer::start();
    let (server, target) = LockedTarget::spawn().await;
    target.state.rotate_every.store(3, Ordering::SeqCst);
    let config_text = config(&redis, &server.url(), "fail", "");
    let replica = Replica::start(&config_text, &[]);
    for _ in 0..10 {
        ok(Method::GET, &replica.url("/app/accounts")).await;
    }

    let dump = redis.dump();
    assert!(dump.contains("replicas-test:session:app:route"), "{dump}");
    assert!(
        dump.contains(COOKIE_NAME),
        "cookie names stay readable: {dump}"
    );
    let issued = target.issued();
    assert!(issued.len() >= 3);
    for secret in issued
        .iter()
        .map(String::as_str)
        .chain([PASSWORD, STATE_KEY])
    {
        assert!(
            !dump.contains(secret),
            "{secret:?} sits in Redis in clear:\n{dump}"
        );
    }

    // A replica with another state key cannot open the jar: it says so and never sends
    // garbage; the session it needs is then opened anew (here refused: the target is locked).
    let other_key = "another-state-key-9876543210-zyxwvu";
    let stranger = Replica::start(&config_text, &[("PROVPROXY_STATE_KEY", other_key)]);
    let reply = call(Method::GET, &stranger.url("/app/accounts")).await;
    assert_ne!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(stranger.metric("sessions_shared_unreadable").await, 1);
    assert_eq!(
        target.opened(),
        1,
        "the stranger's cookieless call opened nothing"
    );

    // Rotation: the new key, with the old one as previous, reads the jar the old key sealed,
    // and what it writes (the target rotates its id every third call) the new key opens.
    let rotated_config = config_text.replace(
        r#"encryption_key = { env = "PROVPROXY_STATE_KEY" }"#,
        r#"encryption_key = { env = "NEW_STATE_KEY" }
encryption_key_previous = { env = "PROVPROXY_STATE_KEY" }"#,
    );
    let rotated = Replica::start(&rotated_config, &[("NEW_STATE_KEY", other_key)]);
    for _ in 0..4 {
        ok(Method::GET, &rotated.url("/app/accounts")).await;
    }
    assert_eq!(rotated.metric("sessions_shared_unreadable").await, 0);
    ok(Method::GET, &stranger.url("/app/accounts")).await;
    assert_eq!(target.opened(), 1, "one session all along");
    let dump = redis.dump();
    for secret in target
        .issued()
        .iter()
        .map(String::as_str)
        .chain([other_key])
    {
        assert!(
            !dump.contains(secret),
            "{secret:?} sits in Redis in clear:\n{dump}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_fail_answers_503_json_in_time_local_keeps_serving_and_a_restart_heals() {
    let mut redis = RedisServer::start();
    let (server, target) = LockedTarget::spawn().await;
    let failing = Replica::start(&config(&redis, &server.url(), "fail", ""), &[]);
    let local = Replica::start(&config(&redis, &server.url(), "local", ""), &[]);
    ok(Method::GET, &failing.url("/app/accounts")).await;
    ok(Method::GET, &local.url("/app/accounts")).await;

    redis.kill();
    let started = Instant::now();
    let reply = call(Method::GET, &failing.url("/app/accounts")).await;
    let took = started.elapsed();
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.text()
    );
    let body: serde_json::Value = serde_json::from_slice(&reply.body).expect("JSON");
    assert_eq!(body["error"], "state_unavailable", "{body}");
    assert!(reply.text().contains("app"), "names the route: {body}");
    assert!(
        took < Duration::from_secs(2),
        "answered within the timeout: {took:?}"
    );
    let ready = failing.admin(Method::GET, "/readyz").await;
    assert_eq!(
        ready.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        ready.text()
    );

    ok(Method::GET, &local.url("/app/accounts")).await;
    assert!(local.metric("state_local_fallbacks").await >= 1);
    let ready = local.admin(Method::GET, "/readyz").await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text());
    assert!(
        ready.text().contains("\"serving_locally\":true"),
        "{}",
        ready.text()
    );

    // Redis back, empty: serving resumes by itself, and the replicas publish the jar they hold
    // again rather than log in beside the session the target still holds open.
    redis.restart();
    eventually("the failing replica serves again", || async {
        call(Method::GET, &failing.url("/app/accounts"))
            .await
            .status
            != StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    let ready = failing.admin(Method::GET, "/readyz").await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text());
    ok(Method::GET, &failing.url("/app/accounts")).await;
    ok(Method::GET, &local.url("/app/accounts")).await;
    assert_eq!(target.opened(), 1, "one target session all along");
    assert_eq!(target.locked_out(), 0);
    assert!(redis.dump().contains("replicas-test:session:app:route"));
    let ready = local.admin(Method::GET, "/readyz").await;
    assert!(
        ready.text().contains("\"serving_locally\":false"),
        "{}",
        ready.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_lists_the_fleets_sessions_and_a_delete_on_one_replica_drops_it_for_both() {
    let redis = RedisServer::start();
    let (server, target) = LockedTarget::spawn().await;
    let config = config(&redis, &server.url(), "fail", "");
    let replicas = [Replica::start(&config, &[]), Replica::start(&config, &[])];
    ok(Method::GET, &replicas[0].url("/app/accounts")).await;

    let listed = replicas[1].admin(Method::GET, "/sessions").await;
    assert_eq!(listed.status, StatusCode::OK);
    let sessions: serde_json::Value = serde_json::from_slice(&listed.body).expect("JSON");
    assert_eq!(sessions.as_array().map(Vec::len), Some(1), "{sessions}");
    assert_eq!(sessions[0]["route"], "app");
    assert_eq!(sessions[0]["key"], "route");
    assert_eq!(sessions[0]["cookies"], serde_json::json!([COOKIE_NAME]));
    for id in target.issued() {
        assert!(!listed.text().contains(&id), "no cookie value listed");
    }

    let deleted = replicas[1]
        .admin(Method::DELETE, "/sessions/app/route")
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text());
    let listed = replicas[0].admin(Method::GET, "/sessions").await;
    assert_eq!(listed.text(), "[]");
    // The target still holds the old session open: the next login is refused, which shows the
    // replica that had the jar no longer sends it.
    target.expire();
    ok(Method::GET, &replicas[0].url("/app/accounts")).await;
    assert_eq!(target.opened(), 2);
    assert_eq!(target.expired_refusals(), 0, "the dropped jar was not sent");
}

/// `[state]` for Redis: each mistake is one line naming the place, the key and the fix.
#[test]
fn redis_state_config_mistakes_get_one_line_naming_place_key_and_fix() {
    let env = |name: &str| match name {
        "KEY" => Some(STATE_KEY.to_owned()),
        "PW" => Some(PASSWORD.to_owned()),
        _ => None,
    };
    let load = |state: &str| {
        let text = format!(
            "[[routes]]\nname = \"app\"\nprefix = \"/app/\"\nupstream = \"http://127.0.0.1:1\"\n\n[state]\n{state}"
        );
        provproxy::config::load_str(&text, "x.toml", std::path::Path::new("/etc"), &env)
            .map_err(|err| err.to_string())
    };
    let good = "backend = \"redis\"\nurl = \"redis://127.0.0.1:6379/0\"\nencryption_key = { env = \"KEY\" }\npassword = { env = \"PW\" }\n";
    let plan = load(good).expect("valid");
    let redis = plan.state.redis.as_ref().expect("a redis plan");
    assert_eq!(redis.key_prefix, "provproxy:");
    assert_eq!(redis.command_timeout, Duration::from_millis(500));
    assert_eq!(redis.connect_timeout, Duration::from_secs(1));
    let rendered = provproxy::config::render(&plan);
    assert!(rendered.contains("backend = \"redis\""), "{rendered}");
    assert!(
        !rendered.contains(PASSWORD) && !rendered.contains(STATE_KEY),
        "{rendered}"
    );
    assert!(
        !format!("{plan:?}").contains(PASSWORD),
        "the password is a secret"
    );

    for (state, expected) in [
        (
            "backend = \"redis\"\nurl = \"redis://127.0.0.1:6379/0\"\n",
            "x.toml:6:2: state.encryption_key: missing; required with backend = \"redis\"",
        ),
        (
            "backend = \"redis\"\nencryption_key = { env = \"KEY\" }\n",
            "x.toml:6:2: state.url: missing; the Redis URL",
        ),
        (
            "backend = \"redis\"\nurl = \"http://127.0.0.1:6379\"\nencryption_key = { env = \"KEY\" }\n",
            "x.toml:8:7: state.url: must be redis:// or rediss:// (TLS)",
        ),
        (
            "backend = \"redis\"\nurl = \"redis://:pw@127.0.0.1:6379\"\nencryption_key = { env = \"KEY\" }\n",
            "x.toml:8:7: state.url: holds credentials; use state.username and state.password",
        ),
        (
            "backend = \"redis\"\nurl = \"redis://:s3cret-pw@127.0.0.1:port\"\nencryption_key = { env = \"KEY\" }\n",
            "x.toml:8:7: state.url: invalid URL: invalid port number",
        ),
        (
            "backend = \"redis\"\nurl = \"redis://127.0.0.1\"\nencryption_key = { env = \"KEY\" }\non_unavailable = \"ignore\"\n",
            "x.toml:10:18: state.on_unavailable: unknown value \"ignore\", expected one of fail, local",
        ),
        (
            "backend = \"redis\"\nurl = \"redis://127.0.0.1\"\nencryption_key = { env = \"KEY\" }\ncommand_timeout = \"0s\"\n",
            "x.toml:10:19: state.command_timeout: must be longer than 0s",
        ),
        (
            "backend = \"memcached\"\n",
            "x.toml:7:11: state.backend: unknown backend \"memcached\", expected one of file, redis",
        ),
        (
            "url = \"redis://127.0.0.1\"\n",
            "x.toml:7:7: state.url: not used with backend = \"file\"",
        ),
        (
            "backend = \"redis\"\nurl = \"redis://127.0.0.1\"\nencryption_key = { env = \"KEY\" }\nkey_prefx = \"a:\"\n",
            "x.toml:10:1: state.key_prefx: unknown key `key_prefx`, did you mean `key_prefix`?",
        ),
    ] {
        let error = load(state).expect_err(state);
        assert!(
            error.starts_with(expected),
            "{state}\n got: {error}\nwant: {expected}"
        );
        assert_eq!(error.lines().count(), 1, "{error}");
        assert!(!error.contains("s3cret"), "a password in a bad URL: {error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_changes_state_is_refused_and_the_running_config_stays() {
    let redis = RedisServer::start();
    let (server, _target) = LockedTarget::spawn().await;
    let text = config(&redis, &server.url(), "fail", "");
    let replica = Replica::start(&text, &[]);
    ok(Method::GET, &replica.url("/app/accounts")).await;

    std::fs::write(
        &replica.binary.config,
        text.replace("key_prefix = \"replicas-test:\"", "key_prefix = \"other:\""),
    )
    .expect("rewrite the config");
    let reloaded = replica.admin(Method::POST, "/reload").await;
    assert_eq!(
        reloaded.status,
        StatusCode::BAD_REQUEST,
        "{}",
        reloaded.text()
    );
    assert!(
        reloaded.text().contains("[state] changed") && reloaded.text().contains("restart"),
        "{}",
        reloaded.text()
    );
    ok(Method::GET, &replica.url("/app/accounts")).await;
    assert!(redis.dump().contains("replicas-test:session:app:route"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serialize_holds_across_replicas_at_two_round_trips_a_call() {
    let redis = RedisServer::start();
    let (server, target) = LockedTarget::spawn().await;
    target.state.work_ms.store(5, Ordering::SeqCst);
    let config = config(&redis, &server.url(), "fail", "serialize = true\n");
    let replicas = [Replica::start(&config, &[]), Replica::start(&config, &[])];
    ok(Method::GET, &replicas[0].url("/app/accounts")).await;

    parallel_over(&replicas, Method::GET, "/app/accounts", StatusCode::OK).await;

    assert_eq!(
        target.state.most_in_flight.load(Ordering::SeqCst),
        1,
        "never two calls at once, across both replicas"
    );
    assert_eq!(target.opened(), 1);
    let waits = replicas[0].metric("state_lease_waits").await
        + replicas[1].metric("state_lease_waits").await;
    assert!(waits > 0, "the replicas did wait for each other");

    // One call alone: take the lease with the jar, then release it (or write the jar back).
    let trips = || async {
        replicas[0].metric("state_redis_round_trips").await
            + replicas[1].metric("state_redis_round_trips").await
    };
    let before = trips().await;
    for i in 0..10 {
        ok(Method::GET, &replicas[i % 2].url("/app/accounts")).await;
    }
    // The last release may still be on its way: poll until it is counted, with a deadline.
    let deadline = Instant::now() + PATIENCE;
    let spent = loop {
        let spent = trips().await - before;
        if spent >= 20 || Instant::now() > deadline {
            break spent;
        }
        tokio::time::sleep(POLL_EVERY).await;
    };
    assert_eq!(spent, 20, "two round trips per serialized call");
}

/// A CSRF-token target (SAP Gateway-like) behind two replicas: the token travels with the
/// session through Redis, sealed, so the fleet fetches it once and refetches it once.
fn csrf_config(redis: &RedisServer, target: &str) -> String {
    format!(
        r#"{head}
[[routes]]
name = "sap"
prefix = "/sap/"
upstream = "{target}"
{tables}"#,
        head = head(redis, "fail"),
        tables = csrf_target::route_tables("SVC_PROVISION", REDIS_PASSWORD_ENV),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_csrf_token_is_fetched_once_for_the_fleet_refetched_once_and_never_in_redis_in_clear() {
    let redis = RedisServer::start();
    let (server, target) = csrf_target::spawn("SVC_PROVISION", PASSWORD)
        .await
        .expect("start the CSRF target");
    let config = csrf_config(&redis, &server.url());
    let replicas = [Replica::start(&config, &[]), Replica::start(&config, &[])];
    let users = format!("{}A_User", csrf_target::SERVICE);

    parallel_over(&replicas, Method::POST, &users, StatusCode::CREATED).await;
    assert_eq!(
        target.sessions_opened(),
        1,
        "one target session for the fleet"
    );
    assert_eq!(target.fetches(), 1, "one token fetch for the fleet");
    assert_eq!(target.required(), 0);

    // The target forgets the token: the calls on both replicas meet the 403 at once; one of
    // them refetches for the fleet and every call is replayed once with the new token.
    target.invalidate_tokens();
    parallel_over(&replicas, Method::POST, &users, StatusCode::CREATED).await;
    assert_eq!(target.fetches(), 2, "one refetch for the fleet");
    assert_eq!(target.sessions_opened(), 1);

    let dump = redis.dump();
    assert!(dump.contains("replicas-test:session:sap:route"), "{dump}");
    let issued = target.issued();
    assert_eq!(issued.len(), 2);
    for secret in issued
        .iter()
        .map(String::as_str)
        .chain([PASSWORD, STATE_KEY])
    {
        assert!(
            !dump.contains(secret),
            "{secret:?} sits in Redis in clear:\n{dump}"
        );
    }
}
