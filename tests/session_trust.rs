//! Sessions belong to their client and stay bounded and private: two clients that send the same
//! key header get two target sessions; a request without its key header is refused (or uses
//! `default_key`); a route keeps at most `max_sessions` and refuses new ones only when all are
//! busy; cookie values are encrypted in the state file, a wrong key stops the start; the secret
//! that keys session hashes is kept (0600) and reused; a login body from a secret shows nowhere.

mod common;
#[path = "support/sessions.rs"]
mod support_sessions;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderValue, Request, Response, StatusCode};
use provproxy::body::ProxyBody;
use serde_json::Value;
use tokio::sync::{mpsc, Notify};

use common::{get, json, Recorded, Upstream};
use support_sessions::{admin_get, body_json, metric, start, write_file, Binary};

/// Answers every request 200; one without a cookie opens a session `SID=<prefix><n>`.
fn opening_sessions(prefix: &'static str) -> impl Fn(&Recorded) -> Response<ProxyBody> {
    let next = AtomicU64::new(0);
    move |request: &Recorded| {
        let mut response = json(StatusCode::OK, r#"{"ok":true}"#);
        if !request.headers.contains_key(COOKIE) {
            let n = next.fetch_add(1, Ordering::SeqCst);
            if let Ok(cookie) = HeaderValue::try_from(format!("SID={prefix}{n}; Path=/")) {
                response.headers_mut().insert(SET_COOKIE, cookie);
            }
        }
        response
    }
}

fn cookie(request: &Recorded) -> Option<&str> {
    request.header("cookie")
}

/// A proxy in front of `upstream` with one route `app` keyed by `X-Tenant`.
fn tenant_route(upstream: &str, server_extra: &str, session_extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
{server_extra}

[admin]
listen = "127.0.0.1:0"

[[routes]]
name = "app"
prefix = "/app/"
upstream = "{upstream}"

[routes.session]
key = "header:X-Tenant"
{session_extra}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_with_the_same_tenant_header_get_separate_target_sessions() {
    let mut upstream = Upstream::start(opening_sessions("s")).await;
    let clients = r#"
[[server.clients]]
name = "iiq"
token = { env = "IIQ_TOKEN" }

[[server.clients]]
name = "okta"
token = { env = "OKTA_TOKEN" }
"#;
    let proxy = start(
        &tenant_route(&upstream.url(), clients, ""),
        &[("IIQ_TOKEN", "iiq-token-1"), ("OKTA_TOKEN", "okta-token-2")],
    )
    .await;
    let iiq = ("authorization", "Bearer iiq-token-1");
    let okta = ("authorization", "Bearer okta-token-2");
    let tenant = ("x-tenant", "t1");
    for client in [iiq, okta, iiq, okta] {
        let reply = get(proxy.addr(), "/app/Users", &[client, tenant]).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }
    let seen = upstream.received();
    let cookies: Vec<Option<&str>> = seen.iter().map(cookie).collect();
    assert_eq!(
        cookies,
        [None, None, Some("SID=s0"), Some("SID=s1")],
        "each client opened its own session and got only its own cookie back"
    );

    let listed = body_json(&admin_get(&proxy, "/sessions").await);
    let keys: Vec<&str> = listed
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|session| session["key"].as_str())
        .collect();
    assert_eq!(keys.len(), 2, "{listed}");
    for key in keys {
        assert!(key.starts_with("header:"), "{key}");
        for clear in ["iiq", "okta", "t1"] {
            assert!(!key.contains(clear), "{key} shows {clear}");
        }
    }
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_its_key_header_gets_400_naming_it_and_reaches_nothing() {
    let mut upstream = Upstream::start(opening_sessions("s")).await;
    let proxy = start(&tenant_route(&upstream.url(), "", ""), &[]).await;
    let reply = get(proxy.addr(), "/app/Users", &[]).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
    let body = body_json(&reply);
    assert_eq!(body["error"], "session_key_missing");
    assert_eq!(body["header"], "x-tenant");
    assert_eq!(body["route"], "app");
    assert_eq!(body["side"], "client");
    assert!(upstream.received().is_empty(), "the target saw nothing");
    assert_eq!(
        body_json(&admin_get(&proxy, "/sessions").await),
        Value::Array(Vec::new()),
        "no shared anonymous session either"
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_key_stands_in_for_a_missing_key_header() {
    let mut upstream = Upstream::start(opening_sessions("s")).await;
    let proxy = start(
        &tenant_route(&upstream.url(), "", r#"default_key = "shared""#),
        &[],
    )
    .await;
    for headers in [
        &[][..],
        &[("x-tenant", "shared")][..],
        &[][..],
        &[("x-tenant", "other")][..],
    ] {
        let reply = get(proxy.addr(), "/app/Users", headers).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }
    let seen = upstream.received();
    let cookies: Vec<Option<&str>> = seen.iter().map(cookie).collect();
    assert_eq!(
        cookies,
        [None, Some("SID=s0"), Some("SID=s0"), None],
        "no header and the default value share one session; another value has its own"
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_tenants_through_the_proxy_stay_within_max_sessions() {
    const TENANTS: usize = 2_000;
    const MAX: usize = 100;
    let mut upstream = Upstream::start(opening_sessions("s")).await;
    let proxy = start(
        &tenant_route(&upstream.url(), "", &format!("max_sessions = {MAX}")),
        &[],
    )
    .await;
    let addr = proxy.addr();
    let mut calls = tokio::task::JoinSet::new();
    let in_flight = Arc::new(tokio::sync::Semaphore::new(16));
    for n in 0..TENANTS {
        let permit = in_flight.clone().acquire_owned().await.expect("semaphore");
        calls.spawn(async move {
            let tenant = format!("tenant-{n}");
            let reply = get(addr, "/app/Users", &[("x-tenant", &tenant)]).await;
            drop(permit);
            reply
        });
    }
    while let Some(reply) = calls.join_next().await {
        let reply = reply.expect("call");
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }
    let sessions = body_json(&admin_get(&proxy, "/sessions").await);
    assert_eq!(sessions.as_array().expect("a list").len(), MAX);
    let metrics = admin_get(&proxy, "/metrics").await.text();
    assert_eq!(
        metric(&metrics, r#"provproxy_sessions_evicted_total{route="app"}"#),
        Some((TENANTS - MAX) as f64),
        "{metrics}"
    );
    upstream.received();

    // The most recent tenant kept its session; the first one was dropped and starts over.
    for (tenant, kept) in [
        (format!("tenant-{}", TENANTS - 1), true),
        ("tenant-0".into(), false),
    ] {
        let reply = get(addr, "/app/Users", &[("x-tenant", &tenant)]).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(cookie(&upstream.only()).is_some(), kept, "{tenant}");
    }
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_session_is_busy_a_new_one_gets_503_and_the_target_sees_nothing() {
    let release = Arc::new(Notify::new());
    let (arrived, mut arrivals) = mpsc::unbounded_channel::<String>();
    let target = {
        let release = release.clone();
        common::serve(None, move |request: Request<_>, _meta| {
            let release = release.clone();
            let arrived = arrived.clone();
            async move {
                let tenant = request
                    .headers()
                    .get("x-tenant")
                    .and_then(|v: &HeaderValue| v.to_str().ok())
                    .unwrap_or("-")
                    .to_owned();
                let _ = arrived.send(tenant);
                if request.uri().path() == "/app/hold" {
                    release.notified().await;
                }
                json(StatusCode::OK, r#"{"ok":true}"#)
            }
        })
        .await
    };
    let proxy = start(&tenant_route(&target.url(), "", "max_sessions = 1"), &[]).await;
    let addr = proxy.addr();
    let held = tokio::spawn(async move { get(addr, "/app/hold", &[("x-tenant", "a")]).await });
    assert_eq!(arrivals.recv().await.as_deref(), Some("a"));

    let refused = get(addr, "/app/Users", &[("x-tenant", "b")]).await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        refused.text()
    );
    let body = body_json(&refused);
    assert_eq!(body["error"], "sessions_full");
    assert_eq!(body["route"], "app");
    assert!(arrivals.try_recv().is_err(), "b never reached the target");

    release.notify_one();
    assert_eq!(held.await.expect("held call").status, StatusCode::OK);
    let later = get(addr, "/app/Users", &[("x-tenant", "b")]).await;
    assert_eq!(later.status, StatusCode::OK, "a's idle session made room");
    assert_eq!(arrivals.recv().await.as_deref(), Some("b"));
    proxy.shutdown().await;
}

const STATE_KEY: &str = "Rk2m9Qx7Lp4Vw8Zt3Nc6Hb1Jd5Fg0Se=";
const WRONG_KEY: &str = "another-32-character-state-key!!";

fn persisted_config(dir: &Path, upstream: &str) -> std::path::PathBuf {
    let text = tenant_route(
        upstream,
        "",
        r#"persist = "state/sessions.json"
idle_timeout = "1h""#,
    ) + r#"
[state]
backend = "file"
encryption_key = { env = "PROVPROXY_STATE_KEY" }
"#;
    write_file(dir, "provproxy.toml", &text)
}

/// One call through a freshly started binary; returns the cookie the target saw.
async fn one_call(config: &Path, key: &str, upstream: &mut Upstream) -> Option<String> {
    let mut binary = Binary::run(config, &[("PROVPROXY_STATE_KEY", key)], &[]);
    let (addr, _admin) = binary.wait_listening();
    let reply = get(addr, "/app/Users", &[("x-tenant", "acme")]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let (status, _stdout, stderr) = binary.terminate().await;
    assert!(status.success(), "{stderr}");
    cookie(&upstream.only()).map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_state_file_holds_no_cookie_value_reloads_and_refuses_a_wrong_key() {
    let mut upstream = Upstream::start(opening_sessions("sealed-canary-")).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = persisted_config(dir.path(), &upstream.url());
    let state = dir.path().join("state").join("sessions.json");
    let salt = dir.path().join("state").join("provproxy.salt");

    assert_eq!(one_call(&config, STATE_KEY, &mut upstream).await, None);
    let text = std::fs::read_to_string(&state).expect("state written at shutdown");
    assert!(
        text.contains("\"SID\""),
        "the cookie's name stays readable:\n{text}"
    );
    assert!(text.contains("\"sealed\""), "{text}");
    for clear in ["sealed-canary", STATE_KEY, "acme"] {
        assert!(!text.contains(clear), "{clear} in the state file:\n{text}");
    }
    let salt_text = std::fs::read_to_string(&salt).expect("salt file");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&salt).expect("salt").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "mode {mode:o}");

    // A restart with the key finds the tenant's session again: same cookie, same key hash.
    assert_eq!(
        one_call(&config, STATE_KEY, &mut upstream).await.as_deref(),
        Some("SID=sealed-canary-0")
    );
    assert_eq!(
        std::fs::read_to_string(&salt).expect("salt file"),
        salt_text,
        "the secret is reused, never replaced"
    );

    let before = std::fs::read(&state).expect("state");
    let (status, _stdout, stderr) =
        Binary::run(&config, &[("PROVPROXY_STATE_KEY", WRONG_KEY)], &[])
            .wait()
            .await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line:\n{stderr}");
    assert!(lines[0].contains(&state.display().to_string()), "{stderr}");
    assert!(lines[0].contains("state.encryption_key"), "{stderr}");
    assert_eq!(std::fs::read(&state).expect("state"), before, "left alone");
    assert!(upstream.received().is_empty(), "nothing reached the target");
}

const LOGIN_SECRET: &str = "login-body-canary-Zx81";

/// A target that ends the first session at once: `SID=s0` for the first call, 401 for that
/// cookie, and `SID=s1` for a login whose body is exactly `body`.
fn login_target(body: String) -> impl Fn(&Recorded) -> Response<ProxyBody> {
    move |request: &Recorded| {
        let with_cookie = |status, value: &'static str| {
            let mut response = json(status, r#"{"ok":true}"#);
            response
                .headers_mut()
                .insert(SET_COOKIE, HeaderValue::from_static(value));
            response
        };
        match (request.method.as_str(), request.uri.path(), cookie(request)) {
            ("POST", "/app/login", _) if request.body == body.as_bytes() => {
                with_cookie(StatusCode::OK, "SID=s1; Path=/")
            }
            ("POST", "/app/login", _) => json(StatusCode::FORBIDDEN, r#"{"error":"bad login"}"#),
            (_, _, None) => with_cookie(StatusCode::OK, "SID=s0; Path=/"),
            (_, _, Some("SID=s0")) => json(StatusCode::UNAUTHORIZED, r#"{"error":"ended"}"#),
            _ => json(StatusCode::OK, r#"{"ok":true}"#),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_body_from_an_env_secret_is_sent_and_never_appears_in_any_artifact() {
    let body = format!(r#"{{"user":"svc","pin":"{LOGIN_SECRET}"}}"#);
    let mut upstream = Upstream::start(login_target(body.clone())).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"

[admin]
listen = "127.0.0.1:0"

[trace]
har = "trace.har"
jsonl = "trace.jsonl"
bodies = true

[[routes]]
name = "app"
prefix = "/app/"
upstream = "{}"

[routes.session]
relogin_on = [401]
login = {{ method = "POST", path = "/app/login", body = {{ env = "LOGIN_BODY" }}, content_type = "application/json" }}
"#,
        upstream.url()
    );
    let config = write_file(dir.path(), "provproxy.toml", &text);
    let env = [("LOGIN_BODY", body.as_str()), ("RUST_LOG", "debug")];

    let mut binary = Binary::run(&config, &env, &[]);
    let (addr, admin) = binary.wait_listening();
    let admin = admin.expect("admin listener");
    for _ in 0..2 {
        let reply = get(addr, "/app/Users", &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }
    let seen = upstream.received();
    let login: Vec<&Recorded> = seen
        .iter()
        .filter(|r| r.uri.path() == "/app/login")
        .collect();
    assert_eq!(
        login.len(),
        1,
        "the ended session made the proxy log in once"
    );
    assert_eq!(login[0].body, body.as_bytes(), "the secret body was sent");
    assert_eq!(cookie(seen.last().expect("replay")), Some("SID=s1"));

    let exchanges = get(admin, "/exchanges", &[]).await;
    assert_eq!(exchanges.status, StatusCode::OK);
    let (status, stdout, stderr) = binary.terminate().await;
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("DEBUG"), "debug logging was on");

    let check = std::process::Command::new(env!("CARGO_BIN_EXE_provproxy"))
        .args(["check", "--config"])
        .arg(&config)
        .envs(env)
        .output()
        .expect("run provproxy check");
    assert!(check.status.success());
    let plan = provproxy::config::load_str(&text, "provproxy.toml", dir.path(), &|name| {
        (name == "LOGIN_BODY").then(|| body.clone())
    })
    .expect("config loads");

    let har = std::fs::read_to_string(dir.path().join("trace.har")).expect("HAR");
    let jsonl = std::fs::read_to_string(dir.path().join("trace.jsonl")).expect("JSONL");
    assert!(har.contains("/app/login"), "the login exchange is recorded");
    for (what, text) in [
        ("HAR", har),
        ("JSONL", jsonl),
        ("/exchanges", exchanges.text()),
        ("stderr", stderr),
        ("stdout", stdout),
        ("check", String::from_utf8_lossy(&check.stdout).into_owned()),
        (
            "check stderr",
            String::from_utf8_lossy(&check.stderr).into_owned(),
        ),
        ("Debug of the plan", format!("{plan:#?}")),
    ] {
        assert!(!text.contains(LOGIN_SECRET), "{what} shows the login body");
    }
}

fn config_error(text: &str, env: &[(&str, &str)]) -> String {
    let env = |name: &str| {
        env.iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| (*value).to_owned())
    };
    match provproxy::config::load_str(text, "x.toml", Path::new("."), &env) {
        Ok(_) => panic!("must not load:\n{text}"),
        Err(err) => err.to_string(),
    }
}

#[test]
fn state_and_session_bounds_are_checked_in_the_config() {
    let route = tenant_route("http://127.0.0.1:9", "", "");
    for (text, expected) in [
        (
            format!("{route}\n[state]\nbackend = \"redis\"\n"),
            "state.encryption_key: missing; required with backend = \"redis\"",
        ),
        (
            format!("{route}\n[state]\nencryption_key = {{ env = \"SHORT\" }}\n"),
            "state.encryption_key: too short",
        ),
        (
            format!("{route}\n[state]\nencryption_key = {{ env = \"UNSET\" }}\n"),
            "state.encryption_key: environment variable UNSET is not set",
        ),
        (
            format!("{route}\n[state]\nencrypton_key = \"x\"\n"),
            "did you mean `encryption_key`?",
        ),
        (
            format!("{route}max_sessions = 0\n"),
            "routes[0].session.max_sessions: must be at least 1",
        ),
        (
            tenant_route("http://127.0.0.1:9", "", "").replace(
                "key = \"header:X-Tenant\"",
                "key = \"route\"\ndefault_key = \"x\"",
            ),
            "routes[0].session.default_key: only used with key = \"header:NAME\"",
        ),
    ] {
        let error = config_error(&text, &[("SHORT", "too-short")]);
        assert!(error.contains(expected), "{error}\nexpected: {expected}");
    }
}

#[test]
fn a_literal_login_body_loads_with_a_warning_and_never_shows_in_debug() {
    let text = tenant_route("http://127.0.0.1:9", "", "")
        + "login = { path = \"/app/login\", body = \"pin=literal-canary-42\" }\n";
    let plan =
        provproxy::config::load_str(&text, "x.toml", Path::new("."), &|_| None).expect("loads");
    assert!(
        plan.warnings
            .iter()
            .any(|w| w.contains("routes[0].session.login.body")),
        "{:?}",
        plan.warnings
    );
    assert!(!format!("{plan:?}").contains("literal-canary-42"));
}
