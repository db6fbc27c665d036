//! The stored secrets never show: not in the real binary's logs at debug level, not in any
//! response a client gets (success, 502, 404, 413), not in the trace files or the admin
//! endpoints, not in `check`, not in `Debug` of the plan; the state encryption key and a
//! captured CSRF token show nowhere either, the state file included. Nor do the secrets clients and targets
//! send in the fields that leaked through exact-name lists (issue 14): a credential header
//! under a custom name, SOAP `<password>`, ServiceNow `user_password`, SCIM enterprise
//! `password`, `newPassword`, `sessionToken`, `client_assertion`, query `sig`.

#[path = "support/binary.rs"]
mod binary;
mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use http::{Request, StatusCode};
use provproxy::body::full;
use provproxy::demo::client::Reply;

use binary::Process;
use common::{closed_port, get, ok, request_h1, request_h2c, Upstream, PATIENCE};

const USER: &str = "svc_provision";
const PASSWORD: &str = "Basic-pw-Zq8!leak-canary-1";
const TOKEN: &str = "bearer-tok-Vx3-leak-canary-2";
const API_KEY: &str = "api-key-Rr5-leak-canary-3";
/// Seals the session state file; 32 bytes and more.
const STATE_KEY: &str = "state-key-Tq9-leak-canary-4-0123456789abcdef";
/// What the target hands out as its CSRF token: a captured value, as secret as a password.
const CSRF_TOKEN: &str = "csrf-tok-Wm2-leak-canary-6";

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
shutdown_grace = "5s"

[admin]
listen = "127.0.0.1:0"

[trace]
har = "trace.har"
jsonl = "trace.jsonl"
bodies = true

[state]
encryption_key = { env = "LEAK_TEST_STATE_KEY" }

[[routes]]
name = "basic"
prefix = "/basic/"
upstream = "{upstream}"
[routes.auth]
kind = "basic"
username = "svc_provision"
password = { env = "LEAK_TEST_PASSWORD" }

[[routes]]
name = "bearer"
prefix = "/bearer/"
upstream = "{upstream}"
[routes.auth]
kind = "bearer"
token = { env = "LEAK_TEST_TOKEN" }

[[routes]]
name = "header"
prefix = "/header/"
upstream = "{upstream}"
max_request_body = "1KiB"
[routes.auth]
kind = "header"
name = "X-API-Key"
value = { env = "LEAK_TEST_API_KEY" }

[[routes]]
name = "down"
prefix = "/down/"
upstream = "{down}"
[routes.auth]
kind = "basic"
username = "svc_provision"
password = { env = "LEAK_TEST_PASSWORD" }

[[routes]]
name = "csrf"
prefix = "/csrf/"
upstream = "{upstream}"
[routes.session]
persist = "sessions.json"
[[routes.session.tokens]]
name = "csrf"
fetch = { method = "GET", path = "/csrf/token", headers = { "X-CSRF-Token" = "Fetch" } }
from = "header:X-CSRF-Token"
to = "header:X-CSRF-Token"
methods = ["POST"]
"#;

const ENV: [(&str, &str); 4] = [
    ("LEAK_TEST_PASSWORD", PASSWORD),
    ("LEAK_TEST_TOKEN", TOKEN),
    ("LEAK_TEST_API_KEY", API_KEY),
    ("LEAK_TEST_STATE_KEY", STATE_KEY),
];

/// Answers 200; a token fetch (`X-CSRF-Token: Fetch`) also gets the CSRF token.
fn csrf_target(request: &common::Recorded) -> http::Response<provproxy::body::ProxyBody> {
    let mut response = ok(request);
    if request.header("x-csrf-token") == Some("Fetch") {
        response
            .headers_mut()
            .insert("x-csrf-token", http::HeaderValue::from_static(CSRF_TOKEN));
    }
    response
}

/// Every form in which a secret could leak: as is, and base64 in the usual alphabets, alone
/// and as the `user:password` of a Basic header.
fn forbidden() -> Vec<String> {
    let mut forms = Vec::new();
    for plain in [
        PASSWORD.to_owned(),
        TOKEN.to_owned(),
        API_KEY.to_owned(),
        STATE_KEY.to_owned(),
        CSRF_TOKEN.to_owned(),
        format!("{USER}:{PASSWORD}"),
    ] {
        for engine in [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD] {
            forms.push(engine.encode(&plain));
        }
        forms.push(plain);
    }
    forms
}

fn assert_no_secret(what: &str, text: &str) {
    for form in forbidden() {
        assert!(
            !text.contains(&form),
            "{what} contains the secret form {form:?}"
        );
    }
}

fn reply_text(reply: &Reply) -> String {
    let mut text = format!("{}\n", reply.status);
    for (name, value) in &reply.headers {
        text.push_str(&format!(
            "{name}: {}\n",
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    text.push_str(&reply.text());
    text
}

fn write_config(dir: &Path, config: &str, upstream: &str, down: SocketAddr) -> std::path::PathBuf {
    let path = dir.join("provproxy.toml");
    let text = config
        .replace("{upstream}", upstream)
        .replace("{down}", &format!("http://{down}"));
    std::fs::write(&path, text).expect("write config");
    path
}

/// `provproxy run` at debug level, through the binary harness, once it listens.
fn start_debug(config: &Path, env: &[(&str, &str)]) -> (Process, SocketAddr, SocketAddr) {
    let env: Vec<(&str, &str)> = env.iter().copied().chain([("RUST_LOG", "debug")]).collect();
    let mut process = Process::run(config, &env, &[]);
    let (addr, admin) = process.wait_listening();
    (process, addr, admin.expect("an admin listener"))
}

/// SIGTERM, then the whole stderr and stdout once it has exited 0.
async fn stop(process: Process) -> (String, String) {
    let (status, stdout, stderr) = process.terminate().await;
    assert!(status.success(), "provproxy exited with {status}");
    (stderr, stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_logs_responses_check_output_or_debug_output() {
    let mut upstream = Upstream::start(csrf_target).await;
    let down = closed_port().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), CONFIG, &upstream.url(), down);

    let (binary, addr, admin) = start_debug(&config, &ENV);

    let mut seen_by_clients = Vec::new();
    for (path, header, expected) in [
        (
            "/basic/Users",
            "authorization",
            format!("Basic {}", STANDARD.encode(format!("{USER}:{PASSWORD}"))),
        ),
        ("/bearer/Users", "authorization", format!("Bearer {TOKEN}")),
        ("/header/Users", "x-api-key", API_KEY.to_owned()),
    ] {
        let reply = get(addr, path, &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
        assert_eq!(
            upstream.only().header(header),
            Some(expected.as_str()),
            "{path}: the stored secret was injected"
        );
        seen_by_clients.push(reply);
    }
    let (_, h2) = request_h2c(
        Request::get(format!("http://{addr}/bearer/Users"))
            .body(full(""))
            .expect("request"),
    )
    .await;
    assert_eq!(h2.status, StatusCode::OK);
    seen_by_clients.push(h2);
    upstream.received();
    let created = request_h1(
        addr,
        Request::post("/csrf/Users")
            .header("host", addr.to_string())
            .body(full(r#"{"userName":"a"}"#))
            .expect("request"),
    )
    .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text());
    let sent = upstream.received();
    assert_eq!(sent.len(), 2, "the token fetch, then the POST");
    assert_eq!(
        sent[1].header("x-csrf-token"),
        Some(CSRF_TOKEN),
        "the captured token was sent"
    );
    seen_by_clients.push(created);
    let bad_gateway = get(addr, "/down/Users", &[]).await;
    assert_eq!(bad_gateway.status, StatusCode::BAD_GATEWAY);
    seen_by_clients.push(bad_gateway);
    let not_found = get(addr, "/nowhere/Users", &[]).await;
    assert_eq!(not_found.status, StatusCode::NOT_FOUND);
    seen_by_clients.push(not_found);
    let too_large = request_h1(
        addr,
        Request::post("/header/Users")
            .header("host", addr.to_string())
            .body(full(vec![b'x'; 4096]))
            .expect("request"),
    )
    .await;
    assert_eq!(too_large.status, StatusCode::PAYLOAD_TOO_LARGE);
    seen_by_clients.push(too_large);
    for path in ["/exchanges", "/sessions", "/metrics"] {
        let reply = get(admin, path, &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "admin {path}");
        seen_by_clients.push(reply);
    }

    let (stderr_text, stdout) = stop(binary).await;

    assert!(
        stderr_text.contains("DEBUG"),
        "debug logging was on:\n{stderr_text}"
    );
    assert!(
        stderr_text.contains("connection refused"),
        "the 502 was logged:\n{stderr_text}"
    );
    assert_no_secret("stderr of provproxy run", &stderr_text);
    assert_no_secret("stdout of provproxy run", &stdout);
    for reply in &seen_by_clients {
        assert_no_secret("a response the clients got", &reply_text(reply));
    }
    for trace in ["trace.har", "trace.jsonl"] {
        let text = std::fs::read_to_string(dir.path().join(trace)).expect("trace file written");
        assert!(
            text.contains("/basic/Users"),
            "{trace} records the exchanges"
        );
        assert_no_secret(trace, &text);
    }
    let state = std::fs::read_to_string(dir.path().join("sessions.json")).expect("state file");
    assert!(
        state.contains("csrf"),
        "the session and its token were kept"
    );
    assert_no_secret("the state file", &state);

    let check = Command::new(env!("CARGO_BIN_EXE_provproxy"))
        .args(["check", "--config"])
        .arg(&config)
        .envs(ENV)
        .env("RUST_LOG", "debug")
        .output()
        .expect("run provproxy check");
    assert!(check.status.success());
    assert_no_secret("stdout of check", &String::from_utf8_lossy(&check.stdout));
    assert_no_secret("stderr of check", &String::from_utf8_lossy(&check.stderr));

    let text = std::fs::read_to_string(&config).expect("read config");
    let env = |name: &str| {
        ENV.iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| (*value).to_owned())
    };
    let plan = provproxy::config::load_str(&text, "provproxy.toml", dir.path(), &env)
        .expect("config loads");
    assert_no_secret("Debug of the plan", &format!("{plan:?}"));
    assert_no_secret("pretty Debug of the plan", &format!("{plan:#?}"));
}

const SN_AUTH: &str = "sn-auth-Kq1-leak-canary-5";

/// Routes whose credential header is on no list, and one that records raw bodies.
const FAIL_CLOSED_CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
shutdown_grace = "5s"

[admin]
listen = "127.0.0.1:0"

[trace]
har = "trace.har"
jsonl = "trace.jsonl"
bodies = true

[[routes]]
name = "sn"
prefix = "/sn/"
upstream = "{upstream}"
[routes.auth]
kind = "header"
name = "X-SN-Auth"
value = { env = "LEAK_TEST_SN_AUTH" }

[[routes]]
name = "raw"
prefix = "/raw/"
upstream = "{upstream}"
[routes.trace]
raw_bodies = true
"#;

/// Each request carries one secret where the issue found it leaking; the target answers one of
/// them (Okta's authn) with a secret of its own.
fn leaking_requests() -> Vec<(&'static str, &'static str, &'static str, String)> {
    let enterprise = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    vec![
        ("GET", "/sn/api/now/table/sys_user?sysparm_limit=1", "", String::new()),
        (
            "POST",
            "/sn/api/now/table/sys_user",
            "application/json",
            r#"{"user_name":"bob","user_password":"user-password-leak-canary-6"}"#.into(),
        ),
        (
            "POST",
            "/sn/soap/sys_user.do?SOAP",
            "text/xml; charset=utf-8",
            concat!(
                r#"<?xml version="1.0"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">"#,
                "<soapenv:Body><insert><user_name>bob</user_name>",
                "<password>soap-password-leak-canary-7</password></insert></soapenv:Body></soapenv:Envelope>"
            )
            .into(),
        ),
        (
            "PATCH",
            "/sn/scim/v2/Users/1",
            "application/scim+json",
            format!(
                r#"{{"Operations":[{{"op":"replace","path":"{enterprise}:password","value":"scim-path-leak-canary-8"}},{{"op":"add","value":{{"{enterprise}:password":"scim-key-leak-canary-9","{enterprise}":{{"password":"scim-nested-leak-canary-10"}}}}}}]}}"#
            ),
        ),
        (
            "POST",
            "/sn/api/v1/users/me/credentials/change_password",
            "application/json",
            r#"{"oldPassword":{"value":"old"},"newPassword":{"value":"new-password-leak-canary-11"}}"#
                .into(),
        ),
        (
            "POST",
            "/sn/api/v1/authn",
            "application/json",
            r#"{"username":"bob"}"#.into(),
        ),
        (
            "POST",
            "/sn/oauth/token",
            "application/x-www-form-urlencoded",
            "grant_type=authorization_code&client_assertion=client-assertion-leak-canary-13&code=auth-code-leak-canary-14".into(),
        ),
        (
            "GET",
            "/sn/files/report.pdf?se=2030-01-01&sp=r&sig=query-sig-leak-canary-15",
            "",
            String::new(),
        ),
        (
            "POST",
            "/sn/api/echo",
            "text/plain",
            "password: text-body-leak-canary-16".into(),
        ),
        ("POST", "/raw/api/echo", "text/plain", "raw body shown on purpose".into()),
    ]
}

/// Everything of the requests above that must not show anywhere.
const LEAK_CANARIES: &[&str] = &[
    SN_AUTH,
    "user-password-leak-canary-6",
    "soap-password-leak-canary-7",
    "scim-path-leak-canary-8",
    "scim-key-leak-canary-9",
    "scim-nested-leak-canary-10",
    "new-password-leak-canary-11",
    "session-token-leak-canary-12",
    "client-assertion-leak-canary-13",
    "auth-code-leak-canary-14",
    "query-sig-leak-canary-15",
    "text-body-leak-canary-16",
];

fn target(request: &common::Recorded) -> http::Response<provproxy::body::ProxyBody> {
    if request.uri.path().ends_with("/authn") {
        return common::json(
            StatusCode::OK,
            r#"{"status":"SUCCESS","sessionToken":"session-token-leak-canary-12"}"#,
        );
    }
    ok(request)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_under_custom_headers_and_secret_like_fields_reach_no_trace_exchange_or_log() {
    let mut upstream = Upstream::start(target).await;
    let down = closed_port().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), FAIL_CLOSED_CONFIG, &upstream.url(), down);
    let (binary, addr, admin) = start_debug(&config, &[("LEAK_TEST_SN_AUTH", SN_AUTH)]);

    let requests = leaking_requests();
    for (method, path, content_type, body) in &requests {
        let mut request = Request::builder()
            .method(*method)
            .uri(*path)
            .header("host", addr.to_string());
        if !content_type.is_empty() {
            request = request.header("content-type", *content_type);
        }
        let reply = request_h1(addr, request.body(full(body.clone())).expect("request")).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
        let received = upstream.only();
        assert_eq!(
            received.body,
            body.as_bytes(),
            "{path}: the target got the body"
        );
        if path.starts_with("/sn/") {
            assert_eq!(
                received.header("x-sn-auth"),
                Some(SN_AUTH),
                "{path}: the stored credential was injected under its custom name"
            );
        }
    }

    // Every exchange is in the ring before anything is read from it.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let exchanges = loop {
        let reply = get(admin, "/exchanges?limit=100", &[]).await;
        assert_eq!(reply.status, StatusCode::OK);
        let listed: serde_json::Value = serde_json::from_slice(&reply.body).expect("JSON array");
        if listed
            .as_array()
            .is_some_and(|all| all.len() >= requests.len())
        {
            break reply.text();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {listed} recorded"
        );
        tokio::task::yield_now().await;
    };
    let (stderr, stdout) = stop(binary).await;
    let har = std::fs::read_to_string(dir.path().join("trace.har")).expect("HAR written");
    let jsonl = std::fs::read_to_string(dir.path().join("trace.jsonl")).expect("JSONL written");

    for (what, text) in [
        ("trace.har", &har),
        ("trace.jsonl", &jsonl),
        ("/exchanges", &exchanges),
        ("stderr of provproxy run", &stderr),
        ("stdout of provproxy run", &stdout),
    ] {
        for canary in LEAK_CANARIES {
            assert!(!text.contains(canary), "{what} contains {canary}");
        }
    }
    for (what, text) in [
        ("trace.har", &har),
        ("trace.jsonl", &jsonl),
        ("/exchanges", &exchanges),
    ] {
        // The exchanges are there, their shape kept, the values replaced.
        for shown in [
            "sys_user?sysparm_limit=1",
            "x-sn-auth",
            r#"user_password\":\"[REDACTED]\""#,
            "<password>[REDACTED]</password>",
            "<user_name>bob</user_name>",
            "sig=[REDACTED]",
            "text/plain body of 34 bytes withheld",
            "raw body shown on purpose",
        ] {
            assert!(text.contains(shown), "{what} lacks {shown:?}");
        }
    }
}

/// The client's own credential under a route's custom header name (`when = "missing"` lets it
/// through): `/exchanges` shows the name, never the value, also when the admin listener records
/// exchanges without a `[trace]` table.
#[tokio::test]
async fn a_client_credential_under_a_routes_header_name_is_redacted_without_a_trace_table() {
    const CLIENT_KEY: &str = "client-sn-auth-leak-canary-17";
    let mut upstream = Upstream::start(ok).await;
    let proxy = common::proxy(
        r#"
[server]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
[[routes]]
name = "sn"
prefix = "/sn/"
upstream = "{upstream}"
[routes.auth]
kind = "header"
name = "X-SN-Auth"
when = "missing"
value = { env = "SN_AUTH" }
"#,
        &upstream.url(),
        &[("SN_AUTH", SN_AUTH)],
    )
    .await;
    let admin = proxy.admin_addr().expect("admin listener");
    let reply = get(
        proxy.addr(),
        "/sn/api/now/table/sys_user",
        &[("x-sn-auth", CLIENT_KEY)],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(upstream.only().header("x-sn-auth"), Some(CLIENT_KEY));
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let exchanges = loop {
        let reply = get(admin, "/exchanges", &[]).await;
        assert_eq!(reply.status, StatusCode::OK);
        if reply.text().contains("sys_user") {
            break reply.text();
        }
        assert!(tokio::time::Instant::now() < deadline, "not recorded");
        tokio::task::yield_now().await;
    };
    assert!(exchanges.contains("x-sn-auth"), "{exchanges}");
    assert!(!exchanges.contains(CLIENT_KEY), "{exchanges}");
    proxy.shutdown().await;
}
