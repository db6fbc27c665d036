//! Sessions through the proxy (the session-locked API case): a connector that keeps no cookies
//! runs its whole sequence inside one target session; parallel first calls open one session;
//! an ended session is renewed and the request replayed once; sessions survive a restart and
//! never cross keys; the admin endpoints show and drop them.

#[path = "support/sessions.rs"]
mod support_sessions;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use http::header::{SET_COOKIE, WWW_AUTHENTICATE};
use http::{Method, StatusCode};
use provproxy::demo::session_locked::{self, SessionLockedStats};
use provproxy::server::{Running, StartOptions};
use serde_json::{json, Value};

use support_sessions::{
    admin_get, body_json, client, curl, get, metric, send, start, try_start, write_file, Binary,
    SessionTarget, EXPIRED_BODY, PATIENCE, TENANT,
};

const USER: &str = "svc_provision";
const PASSWORD: &str = "osmc-pw-7Qe!session-tests";
const ACCOUNTS: &str = "/osmc/api/accounts";
const JSON: (&str, &str) = ("content-type", "application/json");

/// A route to the field target: the proxy injects Basic and keeps the session for everyone.
fn locked_route(target: &str, session_extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[admin]
listen = "127.0.0.1:0"

[[routes]]
name = "osmc"
prefix = "/osmc/"
upstream = "{target}"

[routes.auth]
kind = "basic"
username = "{USER}"
password = {{ env = "OSMC_PASSWORD" }}

[routes.session]
key = "route"
relogin_on = [401]
{session_extra}
"#
    )
}

async fn locked_target() -> (provproxy::demo::server::TargetServer, SessionLockedStats) {
    session_locked::spawn(USER, PASSWORD)
        .await
        .expect("start the session-locked target")
}

async fn locked_proxy(target: &str, session_extra: &str) -> Running {
    start(
        &locked_route(target, session_extra),
        &[("OSMC_PASSWORD", PASSWORD)],
    )
    .await
}

/// A route to [`SessionTarget`] with no stored credential.
fn app_route(target: &str, extra: &str, session_extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[admin]
listen = "127.0.0.1:0"
{extra}

[[routes]]
name = "app"
prefix = "/"
upstream = "{target}"

[routes.session]
relogin_on = [401]
{session_extra}
"#
    )
}

fn basic_header() -> String {
    format!("Basic {}", STANDARD.encode(format!("{USER}:{PASSWORD}")))
}

fn account_id(reply: &provproxy::demo::client::Reply) -> String {
    body_json(reply)["id"]
        .as_str()
        .expect("the created account has an id")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookieless_sequence_fails_directly_and_runs_in_one_session_through_the_proxy() {
    let (direct_target, direct_stats) = locked_target().await;
    let basic = basic_header();
    let auth = ("authorization", basic.as_str());
    let base = format!("{}{ACCOUNTS}", direct_target.url());
    let created = send(Method::POST, &base, &[auth, JSON], r#"{"name":"jdoe"}"#).await;
    assert_eq!(created.status, StatusCode::CREATED);
    let account = format!("{base}/{}", account_id(&created));
    let patched = send(
        Method::PATCH,
        &account,
        &[auth, JSON],
        r#"{"groups":["g1"]}"#,
    )
    .await;
    assert_eq!(
        patched.status,
        StatusCode::UNAUTHORIZED,
        "directly, the PATCH without the session cookie is refused"
    );
    assert_eq!(
        patched.headers[WWW_AUTHENTICATE],
        r#"Token Basic realm="osmc""#
    );
    assert_eq!(
        get(&account, &[auth]).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(direct_stats.sessions_opened(), 1);

    let (target, stats) = locked_target().await;
    let proxy = locked_proxy(&target.url(), "").await;
    let base = format!("http://{}{ACCOUNTS}", proxy.addr());
    let created = send(Method::POST, &base, &[JSON], r#"{"name":"jdoe"}"#).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    assert!(
        created.headers.get(SET_COOKIE).is_none(),
        "the proxy owns the session cookie"
    );
    let account = format!("{base}/{}", account_id(&created));
    let patched = send(Method::PATCH, &account, &[JSON], r#"{"groups":["g1"]}"#).await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text());
    let fetched = get(&account, &[]).await;
    assert_eq!(fetched.status, StatusCode::OK, "{}", fetched.text());
    assert_eq!(body_json(&fetched)["groups"], json!(["g1"]));
    assert_eq!(stats.sessions_opened(), 1);
    assert_eq!(stats.unauthorized(), 0);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_without_a_cookie_jar_runs_the_sequence_in_one_session_through_the_proxy() {
    let (target, stats) = locked_target().await;
    let proxy = locked_proxy(&target.url(), "").await;
    let base = format!("http://{}{ACCOUNTS}", proxy.addr());
    let created = curl("POST", &base, Some(r#"{"name":"asmith"}"#)).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id: Value = serde_json::from_str(&created.body).expect("JSON account");
    let account = format!("{base}/{}", id["id"].as_str().expect("id"));
    let patched = curl("PATCH", &account, Some(r#"{"groups":["admins"]}"#)).await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    let fetched = curl("GET", &account, None).await;
    assert_eq!(fetched.status, 200, "{}", fetched.body);
    let fetched: Value = serde_json::from_str(&fetched.body).expect("JSON account");
    assert_eq!(fetched["groups"], json!(["admins"]));
    assert_eq!(stats.sessions_opened(), 1);
    assert_eq!(stats.unauthorized(), 0);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_parallel_first_calls_open_exactly_one_upstream_session() {
    let (target, stats) = locked_target().await;
    let proxy = locked_proxy(&target.url(), "").await;
    let url = format!("http://{}{ACCOUNTS}", proxy.addr());
    let calls: Vec<_> = (0..16)
        .map(|n| {
            let url = url.clone();
            tokio::spawn(async move {
                send(Method::POST, &url, &[JSON], format!(r#"{{"name":"u{n}"}}"#)).await
            })
        })
        .collect();
    for call in calls {
        let reply = call.await.expect("call task");
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    }
    assert_eq!(stats.sessions_opened(), 1);
    assert_eq!(stats.unauthorized(), 0);
    assert_eq!(stats.requests(), 16);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_target_reopening_an_ended_session_is_followed_without_an_error() {
    // This target answers a call with an ended session's id by opening a new session (200 and a
    // new JSESSIONID): the proxy must take the new cookie, not keep sending the old one.
    let (target, stats) = locked_target().await;
    let proxy = locked_proxy(&target.url(), "").await;
    let base = format!("http://{}{ACCOUNTS}", proxy.addr());
    let created = send(Method::POST, &base, &[JSON], r#"{"name":"jdoe"}"#).await;
    let account = format!("{base}/{}", account_id(&created));
    assert!(stats.expire_session());
    let patched = send(Method::PATCH, &account, &[JSON], r#"{"groups":["g2"]}"#).await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text());
    let fetched = get(&account, &[]).await;
    assert_eq!(fetched.status, StatusCode::OK, "{}", fetched.text());
    assert_eq!(stats.sessions_opened(), 2);
    assert_eq!(stats.unauthorized(), 0);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_session_is_renewed_and_the_patch_replayed_once_with_its_body_and_a_linked_trace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let har = dir.path().join("trace.har");
    let (server, target) = SessionTarget::spawn().await;
    let trace = format!(
        "\n[trace]\nhar = {:?}\nbodies = true\n",
        har.display().to_string()
    );
    let proxy = start(&app_route(&server.url(), &trace, ""), &[]).await;
    let base = format!("http://{}/api/accounts", proxy.addr());
    let opened = send(Method::POST, &base, &[JSON], r#"{"name":"jdoe"}"#).await;
    assert_eq!(opened.status, StatusCode::OK);
    assert!(target.expire("-"));

    let patch = r#"{"op":"add","groups":["g1","g2"],"note":"replayed intact"}"#;
    let patched = send(Method::PATCH, &format!("{base}/1"), &[JSON], patch).await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text());
    assert_eq!(body_json(&patched)["received"], json!(patch.len()));

    let seen = target.seen();
    let statuses: Vec<(Method, StatusCode)> =
        seen.iter().map(|s| (s.method.clone(), s.status)).collect();
    assert_eq!(
        statuses,
        [
            (Method::POST, StatusCode::OK),
            (Method::PATCH, StatusCode::UNAUTHORIZED),
            (Method::PATCH, StatusCode::OK),
        ]
    );
    assert!(
        seen[1].sid().is_some(),
        "the first attempt carried the old session"
    );
    assert_eq!(
        seen[2].sid(),
        None,
        "the replay went without the dead cookie"
    );
    assert_eq!(seen[1].body, patch.as_bytes());
    assert_eq!(
        seen[2].body,
        patch.as_bytes(),
        "the replay carried the body"
    );
    assert_eq!(target.sessions_opened(), 2);

    proxy.shutdown().await;
    let har: Value =
        serde_json::from_str(&std::fs::read_to_string(&har).expect("HAR written")).expect("HAR");
    let entries = har["log"]["entries"].as_array().expect("entries");
    let patches: Vec<&Value> = entries
        .iter()
        .filter(|e| e["request"]["method"] == "PATCH")
        .collect();
    assert_eq!(patches.len(), 2, "{entries:#?}");
    let failed = patches
        .iter()
        .find(|e| e["response"]["status"] == 401)
        .expect("the failed attempt is recorded");
    let replay = patches
        .iter()
        .find(|e| e["response"]["status"] == 200)
        .expect("the replay is recorded");
    assert_eq!(replay["_provproxy"]["role"], "replay");
    assert_eq!(replay["_provproxy"]["parent"], failed["_provproxy"]["id"]);
    assert!(failed["_provproxy"]["id"].is_u64());
    // The redaction pass re-serialises JSON bodies, so compare them as JSON.
    let recorded: Value = serde_json::from_str(
        replay["request"]["postData"]["text"]
            .as_str()
            .expect("the replay's body is recorded"),
    )
    .expect("a JSON body");
    assert_eq!(
        recorded,
        serde_json::from_str::<Value>(patch).expect("JSON")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_the_replay_limit_gets_the_targets_401_and_the_next_request_a_new_session() {
    let (server, target) = SessionTarget::spawn().await;
    let proxy = start(
        &app_route(&server.url(), "", r#"replay_body_limit = "1KiB""#),
        &[],
    )
    .await;
    let base = format!("http://{}/api/accounts", proxy.addr());
    assert_eq!(
        send(Method::POST, &base, &[JSON], "{}").await.status,
        StatusCode::OK
    );
    assert!(target.expire("-"));

    let large = json!({ "groups": ["g1"], "pad": "x".repeat(4096) }).to_string();
    let refused = send(Method::PATCH, &format!("{base}/1"), &[JSON], large.clone()).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        refused.body, EXPIRED_BODY,
        "the target's own 401 comes back"
    );
    let patches: Vec<_> = target
        .seen()
        .into_iter()
        .filter(|s| s.method == Method::PATCH)
        .collect();
    assert_eq!(patches.len(), 1, "not replayed");
    assert_eq!(patches[0].body, large.as_bytes());

    let next = get(&format!("{base}/1"), &[]).await;
    assert_eq!(next.status, StatusCode::OK, "{}", next.text());
    let last = target.seen().pop().expect("the GET reached the target");
    assert_eq!(last.sid(), None, "the dead cookie was dropped");
    assert_eq!(target.sessions_opened(), 2);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_survives_a_restart_and_its_state_file_is_private() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state").join("sessions.json");
    let (target, stats) = locked_target().await;
    let config = locked_route(
        &target.url(),
        &format!("persist = {:?}", state.display().to_string()),
    );
    let secrets = [("OSMC_PASSWORD", PASSWORD)];

    let proxy = start(&config, &secrets).await;
    let created = send(
        Method::POST,
        &format!("http://{}{ACCOUNTS}", proxy.addr()),
        &[JSON],
        r#"{"name":"jdoe"}"#,
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let id = account_id(&created);
    proxy.shutdown().await;
    let mode = std::fs::metadata(&state)
        .expect("state file written at shutdown")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");

    let proxy = start(&config, &secrets).await;
    let account = format!("http://{}{ACCOUNTS}/{id}", proxy.addr());
    let patched = send(Method::PATCH, &account, &[JSON], r#"{"groups":["g1"]}"#).await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text());
    let fetched = get(&account, &[]).await;
    assert_eq!(fetched.status, StatusCode::OK, "{}", fetched.text());
    assert_eq!(
        stats.sessions_opened(),
        1,
        "no new session after the restart"
    );
    assert_eq!(stats.unauthorized(), 0);
    proxy.shutdown().await;
}

const GARBAGE: &str = "{\"version\": 1, \"sessions\": [ truncated";

fn corrupt_aside(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("state dir")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("sessions.json.corrupt-"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_state_file_stops_the_start_naming_it_and_reset_moves_it_aside() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = write_file(dir.path(), "sessions.json", GARBAGE);
    let (target, _stats) = locked_target().await;
    let config = locked_route(
        &target.url(),
        &format!("persist = {:?}", state.display().to_string()),
    );
    let secrets = [("OSMC_PASSWORD", PASSWORD)];

    let err = match try_start(&config, dir.path(), &secrets, StartOptions::default()).await {
        Ok(_) => panic!("a corrupt state file must stop the start"),
        Err(err) => err.to_string(),
    };
    assert!(err.contains(&state.display().to_string()), "{err}");
    assert!(
        !err.contains("truncated"),
        "no file content in the error: {err}"
    );
    assert_eq!(std::fs::read_to_string(&state).expect("kept"), GARBAGE);

    let proxy = try_start(
        &config,
        dir.path(),
        &secrets,
        StartOptions {
            reset_sessions: true,
            ..StartOptions::default()
        },
    )
    .await
    .expect("reset starts");
    let moved = corrupt_aside(dir.path());
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join(&moved[0])).expect("moved aside, not deleted"),
        GARBAGE
    );
    let created = send(
        Method::POST,
        &format!("http://{}{ACCOUNTS}", proxy.addr()),
        &[JSON],
        "{}",
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_refuses_a_corrupt_state_file_in_one_line_and_starts_with_reset_sessions() {
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_provproxy"))
        .args(["run", "--help"])
        .output()
        .expect("provproxy run --help");
    assert!(
        String::from_utf8_lossy(&help.stdout).contains("--reset-sessions"),
        "run --help lists --reset-sessions"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let state = write_file(dir.path(), "sessions.json", GARBAGE);
    let (target, _stats) = locked_target().await;
    let config = write_file(
        dir.path(),
        "provproxy.toml",
        &locked_route(
            &target.url(),
            &format!("persist = {:?}", state.display().to_string()),
        ),
    );
    let env = [("OSMC_PASSWORD", PASSWORD)];

    let (status, _stdout, stderr) = Binary::run(&config, &env, &[]).wait().await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line:\n{stderr}");
    assert!(lines[0].contains(&state.display().to_string()), "{stderr}");

    let mut binary = Binary::run(&config, &env, &["--reset-sessions"]);
    let (addr, _admin) = binary.wait_listening();
    let created = send(
        Method::POST,
        &format!("http://{addr}{ACCOUNTS}"),
        &[JSON],
        "{}",
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let (status, _stdout, stderr) = binary.terminate().await;
    assert!(status.success(), "{stderr}");
    assert_eq!(corrupt_aside(dir.path()).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_interleaved_requests_over_fifty_keys_never_carry_another_keys_cookie() {
    const KEYS: usize = 50;
    const REQUESTS: usize = 2000;
    let (server, target) = SessionTarget::spawn().await;
    let proxy = start(
        &app_route(&server.url(), "", &format!(r#"key = "header:{TENANT}""#)),
        &[],
    )
    .await;
    let base = format!("http://{}/api/items", proxy.addr());
    let in_flight = Arc::new(tokio::sync::Semaphore::new(32));
    let client = client();
    let mut calls = tokio::task::JoinSet::new();
    for n in 0..REQUESTS {
        let permit = in_flight.clone().acquire_owned().await.expect("semaphore");
        let (client, url) = (client.clone(), format!("{base}/{n}"));
        calls.spawn(async move {
            let tenant = format!("t{:02}", n % KEYS);
            let reply = client
                .send(
                    Method::GET,
                    &url,
                    &[(TENANT, tenant.as_str())],
                    Bytes::new(),
                )
                .await
                .expect("request");
            drop(permit);
            (tenant, reply)
        });
    }
    let mut done = 0;
    while let Some(joined) = tokio::time::timeout(PATIENCE, calls.join_next())
        .await
        .expect("requests finish")
    {
        let (tenant, reply) = joined.expect("request task");
        assert_eq!(reply.status, StatusCode::OK, "{tenant}: {}", reply.text());
        assert_eq!(body_json(&reply)["tenant"], tenant.as_str());
        done += 1;
    }
    assert_eq!(done, REQUESTS);

    let seen = target.seen();
    assert_eq!(seen.len(), REQUESTS);
    for request in &seen {
        if let Some(sid) = request.sid() {
            assert!(
                sid.starts_with(&format!("{}.", request.tenant)),
                "{} carried {sid}",
                request.tenant
            );
        }
    }
    assert_eq!(target.sessions_opened(), KEYS as u64);
    assert_eq!(
        seen.iter().filter(|s| s.sid().is_none()).count(),
        KEYS,
        "only each key's first request went without its cookie"
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strip_keeps_the_clients_cookies_and_the_targets_set_cookie_apart() {
    let (server, target) = SessionTarget::spawn().await;
    let proxy = start(
        &app_route(&server.url(), "", r#"client_cookies = "strip""#),
        &[],
    )
    .await;
    let url = format!("http://{}/api/me", proxy.addr());
    let own = ("cookie", "pref=client-own; SID=forged");
    for _ in 0..2 {
        let reply = get(&url, &[own]).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert!(
            reply.headers.get(SET_COOKIE).is_none(),
            "the session's Set-Cookie stays in the proxy"
        );
    }
    let seen = target.seen();
    assert_eq!(
        seen[0].cookie, None,
        "the client's cookie never reaches the target"
    );
    assert_eq!(seen[1].cookie.as_deref(), Some("SID=-.0"));
    assert_eq!(target.sessions_opened(), 1);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pass_merges_the_clients_cookies_with_the_session_and_passes_set_cookie() {
    let (server, target) = SessionTarget::spawn().await;
    let proxy = start(
        &app_route(&server.url(), "", r#"client_cookies = "pass""#),
        &[],
    )
    .await;
    let url = format!("http://{}/api/me", proxy.addr());
    let own = ("cookie", "pref=client-own");
    let first = get(&url, &[own]).await;
    assert_eq!(first.status, StatusCode::OK);
    let set_cookie = first.headers.get(SET_COOKIE).expect("Set-Cookie passed");
    assert!(set_cookie.to_str().expect("ascii").starts_with("SID=-.0"));
    let second = get(&url, &[own]).await;
    assert_eq!(second.status, StatusCode::OK);

    let seen = target.seen();
    assert_eq!(seen[0].cookie.as_deref(), Some("pref=client-own"));
    let merged = seen[1].cookie.as_deref().expect("cookies sent");
    let mut pairs: Vec<&str> = merged.split("; ").collect();
    pairs.sort_unstable();
    assert_eq!(pairs, ["SID=-.0", "pref=client-own"], "{merged}");
    assert_eq!(target.sessions_opened(), 1);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_lists_sessions_by_cookie_name_and_delete_makes_the_next_request_open_a_new_one() {
    let (server, target) = SessionTarget::spawn().await;
    let proxy = start(&app_route(&server.url(), "", ""), &[]).await;
    let url = format!("http://{}/api/me", proxy.addr());
    let acme = (TENANT, "acme");
    for _ in 0..2 {
        assert_eq!(get(&url, &[acme]).await.status, StatusCode::OK);
    }
    let value = target.seen()[1]
        .sid()
        .expect("the session cookie")
        .to_owned();
    assert_eq!(value, "acme.0");

    let listed = admin_get(&proxy, "/sessions").await;
    assert!(
        !listed.text().contains(&value),
        "no cookie value in /sessions: {}",
        listed.text()
    );
    let sessions = body_json(&listed);
    let sessions = sessions.as_array().expect("a list");
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let session = &sessions[0];
    assert_eq!(session["route"], "app");
    assert_eq!(session["key"], "route");
    assert_eq!(session["cookies"], json!(["SID"]));
    for field in ["created", "last_used", "expires_at"] {
        assert!(session[field].is_string(), "{field}: {session}");
    }
    let metrics = admin_get(&proxy, "/metrics").await.text();
    assert_eq!(
        metric(&metrics, "provproxy_sessions_opened_total"),
        Some(1.0),
        "{metrics}"
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
    assert_eq!(body_json(&admin_get(&proxy, "/sessions").await), json!([]));

    assert_eq!(get(&url, &[acme]).await.status, StatusCode::OK);
    let last = target.seen().pop().expect("seen");
    assert_eq!(last.sid(), None, "the dropped session's cookie is gone");
    assert_eq!(target.sessions_opened(), 2);
    let metrics = admin_get(&proxy, "/metrics").await.text();
    assert_eq!(
        metric(&metrics, "provproxy_sessions_opened_total"),
        Some(2.0),
        "{metrics}"
    );
    let missing = send(
        Method::DELETE,
        &format!("http://{admin}/sessions/app/nobody"),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    proxy.shutdown().await;
}
