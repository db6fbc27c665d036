//! Session tokens (issue 21) through the proxy: a connector that knows nothing of CSRF tokens or
//! login sessions works against a SAP-like CSRF target and a login-body target. Tokens are
//! fetched once per session however many calls wait, refetched once when stale with the request
//! replayed, kept and dropped with the session, and never shown anywhere.

#[path = "support/sessions.rs"]
mod support_sessions;

use std::path::Path;

use bytes::Bytes;
use http::{Method, StatusCode};
use provproxy::demo::csrf_target::{self, CsrfStats, SERVICE};
use provproxy::demo::login_session::{self, LoginStats};
use provproxy::demo::server::TargetServer;
use provproxy::server::{Running, StartOptions};

use support_sessions::{
    admin_get, body_json, get, send, start, try_start, write_file, Binary, PATIENCE,
};

const USER: &str = "svc_provision";
const SAP_PASSWORD: &str = "sap-pw-Kd2!tokens-canary";
const LOGIN_PASSWORD: &str = "login-pw-Yt7!tokens-canary";
const JSON: (&str, &str) = ("content-type", "application/json");
const NEW_USER: &str = r#"{"UserName":"ADA.LOVELACE","FirstName":"Ada"}"#;

fn login_body() -> String {
    format!(r#"{{"username":"{USER}","password":"{LOGIN_PASSWORD}"}}"#)
}

/// The SAP-like route: Basic injected, one session for the route, the CSRF token on
/// modifying calls.
fn csrf_route(target: &str) -> String {
    format!(
        r#"
[[routes]]
name = "sap"
prefix = "/sap/"
upstream = "{target}"
{}"#,
        csrf_target::route_tables(USER, "SAP_PASSWORD")
    )
}

/// The login-body route: no stored credential, the session id from the login's JSON body.
fn login_route(target: &str, session_extra: &str) -> String {
    format!(
        r#"
[[routes]]
name = "app"
prefix = "/api/"
upstream = "{target}"

[routes.session]
key = "route"
{session_extra}

[[routes.session.tokens]]
name = "session"
fetch = {{ method = "POST", path = "/api/login", body = {{ env = "LOGIN_BODY" }}, content_type = "application/json" }}
from = "json:/sessionId"
to = "header:Authorization"
format = "Session {{}}"
refetch_on = [401]
"#
    )
}

const HEAD: &str = "[server]\nlisten = \"127.0.0.1:0\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n";

async fn csrf_target() -> (TargetServer, CsrfStats) {
    csrf_target::spawn(USER, SAP_PASSWORD)
        .await
        .expect("start the CSRF target")
}

async fn login_target() -> (TargetServer, LoginStats) {
    login_session::spawn(USER, LOGIN_PASSWORD)
        .await
        .expect("start the login-session target")
}

async fn csrf_proxy(target: &TargetServer) -> Running {
    start(
        &format!("{HEAD}{}", csrf_route(&target.url())),
        &[("SAP_PASSWORD", SAP_PASSWORD)],
    )
    .await
}

async fn login_proxy(target: &TargetServer, session_extra: &str) -> Running {
    let body = login_body();
    start(
        &format!("{HEAD}{}", login_route(&target.url(), session_extra)),
        &[("LOGIN_BODY", body.as_str())],
    )
    .await
}

/// The admin's `/exchanges`, once it holds at least `count` records.
async fn exchanges(proxy: &Running, count: usize) -> Vec<serde_json::Value> {
    let admin = proxy.admin_addr().expect("admin");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let reply = get(&format!("http://{admin}/exchanges?limit=100"), &[]).await;
        let listed = body_json(&reply);
        if let Some(all) = listed.as_array().filter(|all| all.len() >= count) {
            return all.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "only {listed}");
        tokio::task::yield_now().await;
    }
}

/// Waits until `count` requests hold or wait for the route's one session (`/sessions` counts
/// leases being acquired too), so that they are all in the proxy at once.
async fn until_in_use(proxy: &Running, count: u64) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let sessions = body_json(&admin_get(proxy, "/sessions").await);
        if sessions[0]["in_use"].as_u64() == Some(count) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{sessions}");
        tokio::task::yield_now().await;
    }
}

/// Eight parallel POSTs, all in the proxy while the one fetch they need is held by the target.
async fn eight_posts_during_one_fetch(proxy: &Running, stats: &CsrfStats) {
    stats.hold_fetches(true);
    let url = users(proxy);
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { send(Method::POST, &url, &[JSON], NEW_USER).await })
        })
        .collect();
    until_in_use(proxy, 8).await;
    stats.hold_fetches(false);
    for call in calls {
        let reply = call.await.expect("the call ran");
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    }
}

fn users(proxy: &Running) -> String {
    format!("http://{}{SERVICE}Users", proxy.addr())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_parallel_posts_without_a_token_all_succeed_in_one_session_with_one_fetch() {
    let (target, stats) = csrf_target().await;
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{USER}:{SAP_PASSWORD}")
        )
    );
    let direct = send(
        Method::POST,
        &format!("{}{SERVICE}Users", target.url()),
        &[("authorization", basic.as_str()), JSON],
        NEW_USER,
    )
    .await;
    assert_eq!(direct.status, StatusCode::FORBIDDEN, "the connector alone");
    assert_eq!(direct.headers.get("x-csrf-token").unwrap(), "Required");
    let sessions_before = stats.sessions_opened();

    let proxy = csrf_proxy(&target).await;
    eight_posts_during_one_fetch(&proxy, &stats).await;
    assert_eq!(stats.sessions_opened() - sessions_before, 1, "one session");
    assert_eq!(stats.fetches(), 1, "one fetch for eight first calls");
    assert_eq!(stats.required(), 1, "only the direct call was refused");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_session_a_read_opened_eight_parallel_posts_share_one_fetch() {
    let (target, stats) = csrf_target().await;
    let proxy = csrf_proxy(&target).await;
    let read = get(&users(&proxy), &[]).await;
    assert_eq!(read.status, StatusCode::OK, "a GET needs no token");
    assert_eq!((stats.sessions_opened(), stats.fetches()), (1, 0));

    eight_posts_during_one_fetch(&proxy, &stats).await;
    assert_eq!(
        stats.fetches(),
        1,
        "one fetch for eight calls that lacked the token"
    );
    assert_eq!(
        stats.sessions_opened(),
        1,
        "the fetch used the open session"
    );
    assert_eq!(stats.required(), 0);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidated_token_is_refetched_once_and_the_patch_replayed_with_its_body() {
    let (target, stats) = csrf_target().await;
    let proxy = csrf_proxy(&target).await;
    let created = send(Method::POST, &users(&proxy), &[JSON], NEW_USER).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    stats.invalidate_tokens();

    let patch = r#"{"Groups":["SAP_FI_APPROVER"]}"#;
    let url = format!("{}('U1')", users(&proxy));
    let patched = send(Method::PATCH, &url, &[JSON], patch).await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text());
    assert_eq!(stats.fetches(), 2, "one refetch");
    let seen = stats.seen();
    let tail: Vec<_> = seen[seen.len() - 3..]
        .iter()
        .map(|s| (s.method.clone(), s.status))
        .collect();
    assert_eq!(
        tail,
        [
            (Method::PATCH, StatusCode::FORBIDDEN),
            (Method::GET, StatusCode::OK),
            (Method::PATCH, StatusCode::OK),
        ],
        "refused, refetched, replayed"
    );
    let replayed = &seen[seen.len() - 1];
    assert_eq!(
        replayed.body,
        Bytes::from(patch),
        "the replay carries the body"
    );
    assert_eq!(seen[seen.len() - 3].body, replayed.body);
    assert_eq!(stats.sessions_opened(), 1, "the same session throughout");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_the_target_rotates_in_a_response_is_followed_without_a_refetch() {
    let (target, stats) = csrf_target().await;
    stats.rotate_tokens(true);
    let proxy = csrf_proxy(&target).await;
    for _ in 0..3 {
        let created = send(Method::POST, &users(&proxy), &[JSON], NEW_USER).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    }
    assert_eq!(
        stats.fetches(),
        1,
        "each call carried the token the last one rotated in"
    );
    assert_eq!(stats.required(), 0, "no call went with a rotated-out token");
    assert_eq!(
        stats.issued().len(),
        4,
        "the fetched token and three rotations"
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_body_target_logs_in_once_for_eight_parallel_gets() {
    let (target, stats) = login_target().await;
    let direct = get(&format!("{}/api/users", target.url()), &[]).await;
    assert_eq!(
        direct.status,
        StatusCode::UNAUTHORIZED,
        "the connector alone"
    );

    let proxy = login_proxy(&target, "").await;
    let url = format!("http://{}/api/users", proxy.addr());
    let calls = (0..8).map(|_| {
        let url = url.clone();
        tokio::spawn(async move { get(&url, &[]).await })
    });
    for call in calls {
        let reply = call.await.expect("the call ran");
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }
    assert_eq!(stats.logins(), 1, "one login for eight first calls");
    assert_eq!(stats.calls(), 8);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_login_session_costs_one_new_login_and_the_request_is_replayed() {
    let (target, stats) = login_target().await;
    let proxy = login_proxy(&target, "").await;
    let url = format!("http://{}/api/users", proxy.addr());
    assert_eq!(get(&url, &[]).await.status, StatusCode::OK);
    stats.expire_sessions();

    let created = send(Method::POST, &url, &[JSON], r#"{"name":"jdoe"}"#).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    assert_eq!(
        body_json(&created)["received"],
        15,
        "replayed with its body"
    );
    assert_eq!(stats.logins(), 2, "one new login");
    assert_eq!(stats.refused(), 1, "one refusal, then the replay");
    assert_eq!(get(&url, &[]).await.status, StatusCode::OK);
    assert_eq!(stats.logins(), 2, "the new session is kept");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_fetch_answers_502_naming_route_and_token_then_recovers() {
    let (target, stats) = csrf_target().await;
    let proxy = csrf_proxy(&target).await;
    stats.fail_fetches(Some(StatusCode::INTERNAL_SERVER_ERROR));
    let failed = send(Method::POST, &users(&proxy), &[JSON], NEW_USER).await;
    assert_eq!(failed.status, StatusCode::BAD_GATEWAY);
    let error = body_json(&failed);
    assert_eq!(error["error"], "token_fetch_failed");
    assert_eq!(error["route"], "sap");
    assert_eq!(error["token"], "csrf");
    assert!(error["detail"].as_str().unwrap().contains("500"), "{error}");
    // The failed fetch is recorded, linked to the error record the client's request got.
    let records = exchanges(&proxy, 2).await;
    let fetch = records
        .iter()
        .find(|r| r["role"] == "token_fetch")
        .expect("the fetch is recorded");
    assert_eq!(fetch["status"], 500, "{fetch}");
    let answer = records
        .iter()
        .find(|r| r["id"] == fetch["parent"])
        .expect("the fetch's parent is recorded");
    assert_eq!(answer["error"]["kind"], "token_fetch_failed", "{answer}");
    stats.fail_fetches(None);
    let created = send(Method::POST, &users(&proxy), &[JSON], NEW_USER).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    proxy.shutdown().await;

    let (target, stats) = login_target().await;
    let proxy = login_proxy(&target, "").await;
    let url = format!("http://{}/api/users", proxy.addr());
    stats.refuse_logins(true);
    let failed = get(&url, &[]).await;
    assert_eq!(failed.status, StatusCode::BAD_GATEWAY);
    let error = body_json(&failed);
    assert_eq!(error["error"], "token_fetch_failed");
    assert_eq!(error["route"], "app");
    assert_eq!(error["token"], "session");
    assert!(error["detail"].as_str().unwrap().contains("401"), "{error}");
    assert_eq!(
        stats.calls(),
        0,
        "the request never went without its session"
    );
    stats.refuse_logins(false);
    assert_eq!(get(&url, &[]).await.status, StatusCode::OK);
    assert_eq!(stats.logins(), 1);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_go_with_the_session_dropped_by_the_admin() {
    let (target, stats) = login_target().await;
    let proxy = login_proxy(&target, "").await;
    let url = format!("http://{}/api/users", proxy.addr());
    assert_eq!(get(&url, &[]).await.status, StatusCode::OK);
    let listed = body_json(&admin_get(&proxy, "/sessions").await);
    assert_eq!(
        listed[0]["tokens"],
        serde_json::json!(["session"]),
        "names, never values"
    );
    let admin = proxy.admin_addr().expect("admin");
    let deleted = send(
        Method::DELETE,
        &format!("http://{admin}/sessions/app/route"),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(get(&url, &[]).await.status, StatusCode::OK);
    assert_eq!(
        stats.logins(),
        2,
        "the dropped session's token went with it"
    );
    assert_eq!(stats.refused(), 0, "no stale token was ever sent");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_persisted_sealed_and_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state").join("sessions.json");
    let (target, stats) = login_target().await;
    let key = "k".repeat(40);
    let body = login_body();
    let config = format!(
        "{HEAD}\n[state]\nencryption_key = {{ env = \"STATE_KEY\" }}\n{}",
        login_route(
            &target.url(),
            &format!("persist = {:?}", state.display().to_string())
        )
    );
    let secrets = [("LOGIN_BODY", body.as_str()), ("STATE_KEY", key.as_str())];
    let run = || try_start(&config, Path::new("."), &secrets, StartOptions::default());
    let proxy = run().await.expect("proxy starts");
    let url = format!("http://{}/api/users", proxy.addr());
    assert_eq!(get(&url, &[]).await.status, StatusCode::OK);
    proxy.shutdown().await;

    let text = std::fs::read_to_string(&state).expect("state written at shutdown");
    let session_id = stats.issued().pop().expect("a session id was issued");
    assert!(!text.contains(&session_id), "sealed at rest: {text}");
    assert!(text.contains("\"tokens\""), "{text}");

    let proxy = run().await.expect("proxy restarts");
    let url = format!("http://{}/api/users", proxy.addr());
    assert_eq!(get(&url, &[]).await.status, StatusCode::OK);
    assert_eq!(stats.logins(), 1, "no new login after the restart");
    proxy.shutdown().await;
}

/// Through the real binary: every captured value, and the login body's password, are absent
/// from the HAR, the JSON lines, `/exchanges` and the logs, while the fetches are visible.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_captured_value_reaches_har_jsonl_exchanges_or_logs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (sap, sap_stats) = csrf_target().await;
    let (app, app_stats) = login_target().await;
    let har = dir.path().join("trace.har");
    let jsonl = dir.path().join("trace.jsonl");
    let config = format!(
        "{HEAD}\n[trace]\nhar = {:?}\njsonl = {:?}\nbodies = true\n{}{}",
        har.display().to_string(),
        jsonl.display().to_string(),
        csrf_route(&sap.url()),
        login_route(&app.url(), "")
    );
    let config = write_file(dir.path(), "provproxy.toml", &config);
    let body = login_body();
    let mut binary = Binary::run(
        &config,
        &[
            ("SAP_PASSWORD", SAP_PASSWORD),
            ("LOGIN_BODY", body.as_str()),
            ("RUST_LOG", "debug"),
        ],
        &[],
    );
    let (addr, admin) = binary.wait_listening();
    let admin = admin.expect("admin listener");
    let sap_users = format!("http://{addr}{SERVICE}Users");
    let app_users = format!("http://{addr}/api/users");

    let mut requests = 0;
    for _ in 0..2 {
        let created = send(Method::POST, &sap_users, &[JSON], NEW_USER).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
        assert_eq!(get(&app_users, &[]).await.status, StatusCode::OK);
        requests += 2;
        sap_stats.invalidate_tokens();
        app_stats.expire_sessions();
    }
    assert_eq!(sap_stats.fetches(), 2);
    assert_eq!(app_stats.logins(), 2);

    let deadline = tokio::time::Instant::now() + PATIENCE;
    let exchanges = loop {
        let reply = get(&format!("http://{admin}/exchanges?limit=100"), &[]).await;
        assert_eq!(reply.status, StatusCode::OK);
        let listed: serde_json::Value = body_json(&reply);
        // Each call, its refused first attempt on the second round, and each fetch.
        if listed
            .as_array()
            .is_some_and(|all| all.len() >= requests + 6)
        {
            break reply.text();
        }
        assert!(tokio::time::Instant::now() < deadline, "only {listed}");
        tokio::task::yield_now().await;
    };
    let (status, stdout, stderr) = binary.terminate().await;
    assert!(status.success(), "{stderr}");
    let har_text = std::fs::read_to_string(&har).expect("HAR written");
    let jsonl_text = std::fs::read_to_string(&jsonl).expect("JSONL written");

    let mut secrets: Vec<String> = sap_stats.issued();
    secrets.extend(app_stats.issued());
    secrets.push(LOGIN_PASSWORD.to_owned());
    secrets.push(SAP_PASSWORD.to_owned());
    assert_eq!(
        secrets.len(),
        6,
        "two tokens, two session ids, two passwords"
    );
    for (what, text) in [
        ("trace.har", &har_text),
        ("trace.jsonl", &jsonl_text),
        ("/exchanges", &exchanges),
        ("stderr", &stderr),
        ("stdout", &stdout),
    ] {
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{what} holds a captured value"
            );
        }
    }
    for (what, text) in [
        ("trace.har", &har_text),
        ("trace.jsonl", &jsonl_text),
        ("/exchanges", &exchanges),
    ] {
        assert!(text.contains("token_fetch"), "{what} shows the fetches");
    }
    // Each fetch is its own record, linked to the request that caused it: the first call it
    // was made for, or the refused attempt whose replay needed a new token.
    let records: Vec<serde_json::Value> = jsonl_text
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let fetches: Vec<&serde_json::Value> = records
        .iter()
        .filter(|r| r["role"] == "token_fetch")
        .collect();
    assert_eq!(fetches.len(), 4, "two CSRF fetches, two logins");
    for fetch in fetches {
        let parent = records
            .iter()
            .find(|r| r["id"] == fetch["parent"])
            .unwrap_or_else(|| panic!("the parent of {fetch} is recorded"));
        assert_eq!(parent["role"], "client", "{parent}");
    }
    assert!(stderr.contains("token fetched"), "{stderr}");
    assert!(stderr.contains("token refetched"), "{stderr}");
    assert!(har_text.contains("Session [REDACTED]"), "the scheme shows");
}

#[test]
fn a_misspelt_from_or_to_is_one_line_naming_place_key_and_fix() {
    let config = |from: &str, to: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:8080\"\n\n[[routes]]\nname = \"sap\"\nprefix = \"/sap/\"\n\
             upstream = \"https://sap.example.com\"\n\n[routes.session]\nkey = \"route\"\n\n\
             [[routes.session.tokens]]\nname = \"csrf\"\nfetch = {{ path = \"/sap/\" }}\n\
             from = \"{from}\"\nto = \"{to}\"\n"
        )
    };
    // 15 from   16 to
    let load = |text: &str| {
        provproxy::config::load_str(text, "x.toml", Path::new("/etc/provproxy"), &|_| None)
            .map(drop)
            .map_err(|err| err.to_string())
    };
    assert_eq!(
        load(&config("header:X-CSRF-Token", "header:X-CSRF-Token")),
        Ok(())
    );
    let from = load(&config("heder:X-CSRF-Token", "header:X-CSRF-Token")).unwrap_err();
    assert!(
        from.starts_with("x.toml:15:8: routes[0].session.tokens[0].from: unknown source \"heder\"; expected header:NAME, json:/json/pointer or cookie:NAME"),
        "{from}"
    );
    let to = load(&config("json:/d/token", "headr:X-CSRF-Token")).unwrap_err();
    assert!(
        to.starts_with("x.toml:16:6: routes[0].session.tokens[0].to: \"headr:X-CSRF-Token\" is not a destination; expected header:NAME"),
        "{to}"
    );
    let pointer = load(&config("json:sessionId", "header:Authorization")).unwrap_err();
    assert!(pointer.contains("tokens[0].from"), "{pointer}");
    assert!(pointer.contains("JSON pointer"), "{pointer}");
    let unknown = load(&config("header:X", "header:X").replace("from =", "form =")).unwrap_err();
    assert_eq!(
        unknown,
        "x.toml:15:1: routes[0].session.tokens[0].form: unknown key `form`, did you mean `format`?"
    );
}
