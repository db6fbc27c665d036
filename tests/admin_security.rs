//! The admin API against strangers, web pages and careless configs, through the real binary: a
//! public admin listener without a token does not start; with a token every endpoint but
//! `/healthz` needs it; only the admin's own host names are answered (DNS rebinding); a state
//! change sent cross-site is refused even with the token. And the running process cannot dump
//! core.

mod common;
#[path = "support/binary.rs"]
mod support_binary;

use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;

use http::{Request, Response, StatusCode};
use provproxy::body::{full, ProxyBody};
use provproxy::demo::client::Reply;

use common::{error_body, get, request_h1, Recorded, Upstream};
use support_binary::{Binary, Options};

const ADMIN_TOKEN: &str = "admin-token-5d1e-canary";

/// A target that opens a session: a cookie for any request that brings none.
fn session_target(seen: &Recorded) -> Response<ProxyBody> {
    let mut response = Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json");
    if seen.header("cookie").is_none() {
        response = response.header("set-cookie", "JSESSIONID=s1; Path=/");
    }
    response.body(full(r#"{"ok":true}"#)).expect("response")
}

fn config(admin: &str, upstream: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[admin]
{admin}

[trace]
bodies = true

[[routes]]
name = "osmc"
prefix = "/osmc/"
upstream = "{upstream}"
[routes.session]
key = "route"
"#
    )
}

fn bearer() -> String {
    format!("Bearer {ADMIN_TOKEN}")
}

async fn send(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = Request::builder().method(method).uri(path);
    if !headers.iter().any(|(name, _)| *name == "host") {
        request = request.header("host", addr.to_string());
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request_h1(addr, request.body(full("")).expect("request")).await
}

#[test]
fn an_admin_listener_on_a_public_address_without_a_token_does_not_start_and_says_to_set_admin_token(
) {
    let toml = config(r#"listen = "0.0.0.0:0""#, "http://127.0.0.1:9");
    let (status, stderr) = Binary::spawn(&toml, Options::default()).exit();
    assert!(!status.success(), "it started:\n{stderr}");
    assert!(
        stderr
            .contains("provproxy.toml:6:10: admin.listen: 0.0.0.0:0 is reachable from other hosts"),
        "the error points at admin.listen:\n{stderr}"
    );
    assert!(
        stderr.contains("admin.token"),
        "the error names admin.token:\n{stderr}"
    );
    assert!(
        !stderr.contains("provproxy listening"),
        "it listened before refusing:\n{stderr}"
    );
}

#[test]
fn admin_hosts_that_are_not_host_names_are_refused_at_load_naming_the_entry() {
    let toml = config(
        "listen = \"127.0.0.1:0\"\nhosts = [\"ops.internal\", \"http://ops.internal/\"]",
        "http://127.0.0.1:9",
    );
    let err = provproxy::config::load_str(&toml, "x.toml", std::path::Path::new("."), &|_| None)
        .expect_err("a URL was accepted as a host name");
    assert_eq!(err.key_path, "admin.hosts[1]", "{err}");
    assert!(err.message.contains("not a host name"), "{err}");
}

#[tokio::test]
async fn with_a_token_the_admin_api_wants_it_answers_only_its_own_hosts_and_refuses_cross_site_changes(
) {
    let mut upstream = Upstream::start(session_target).await;
    // Reachable from other hosts: allowed because a token is set.
    let toml = config(
        "listen = \"0.0.0.0:0\"\ntoken = { env = \"PROVPROXY_ADMIN_TOKEN\" }\nhosts = [\"ops.internal\"]",
        &upstream.url(),
    );
    let env = [("PROVPROXY_ADMIN_TOKEN", ADMIN_TOKEN)];
    let (binary, proxy, admin) = Binary::start(
        &toml,
        Options {
            env: &env,
            uid: None,
        },
    );
    let admin: SocketAddr = ([127, 0, 0, 1], admin.expect("admin listener").port()).into();
    assert_eq!(get(proxy, "/osmc/Users", &[]).await.status, StatusCode::OK);
    upstream.only();

    // No token, a wrong one, or the token under another scheme: 401 with the admin challenge.
    let wrong = format!("Bearer {ADMIN_TOKEN}x");
    let basic = format!("Basic {ADMIN_TOKEN}");
    for path in ["/sessions", "/exchanges", "/metrics"] {
        for headers in [
            &[][..],
            &[("authorization", wrong.as_str())],
            &[("authorization", basic.as_str())],
        ] {
            let reply = get(admin, path, headers).await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{path} {headers:?}");
            assert_eq!(
                reply.headers["www-authenticate"],
                r#"Bearer realm="provproxy-admin""#
            );
            assert_eq!(error_body(&reply)["error"], "unauthorized");
        }
    }
    assert_eq!(get(admin, "/healthz", &[]).await.status, StatusCode::OK);

    // The right token, as a bearer credential or the console's cookie: 200.
    let sessions = get(admin, "/sessions", &[("authorization", &bearer())]).await;
    assert_eq!(sessions.status, StatusCode::OK, "{}", sessions.text());
    let listed: serde_json::Value = serde_json::from_slice(&sessions.body).expect("JSON");
    assert_eq!(listed[0]["route"], "osmc", "{listed}");
    let key = listed[0]["key"].as_str().expect("a session key").to_owned();
    let cookie = format!("provproxy_admin={ADMIN_TOKEN}");
    let reply = get(admin, "/exchanges", &[("cookie", &cookie)]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());

    // A name that is not the admin's (DNS rebinding): 421, even with the token, even /healthz.
    let port = admin.port();
    let evil = format!("evil.example:{port}");
    for path in ["/sessions", "/healthz"] {
        let reply = get(
            admin,
            path,
            &[("host", &evil), ("authorization", &bearer())],
        )
        .await;
        assert_eq!(reply.status, StatusCode::MISDIRECTED_REQUEST, "{path}");
        assert_eq!(error_body(&reply)["error"], "misdirected_request");
    }
    for host in [format!("localhost:{port}"), format!("ops.internal:{port}")] {
        let reply = get(
            admin,
            "/sessions",
            &[("host", &host), ("authorization", &bearer())],
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{host}");
    }

    // A state change sent cross-site is refused with the token, and changes nothing.
    let path = format!("/sessions/osmc/{key}");
    for cross_site in [
        ("origin", "http://evil.example"),
        ("origin", "null"),
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
    ] {
        let reply = send(
            admin,
            "DELETE",
            &path,
            &[("authorization", &bearer()), cross_site],
        )
        .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{cross_site:?}");
        assert_eq!(error_body(&reply)["error"], "cross_site_request");
    }
    let still = get(admin, "/sessions", &[("authorization", &bearer())]).await;
    assert!(still.text().contains(&key), "the session was dropped");

    // The same DELETE from the admin's own origin, with the token, goes through.
    let own_origin = format!("http://127.0.0.1:{port}");
    let reply = send(
        admin,
        "DELETE",
        &path,
        &[("authorization", &bearer()), ("origin", &own_origin)],
    )
    .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text());
    let after = get(admin, "/sessions", &[("authorization", &bearer())]).await;
    assert_eq!(after.text(), "[]");
    drop(binary);
}

/// `Max core file size  0  0  bytes` in `/proc/PID/limits`.
fn core_limit(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("read limits");
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max core file size"))
        .unwrap_or_else(|| panic!("no core limit in:\n{limits}"));
    let mut fields = line["Max core file size".len()..].split_whitespace();
    (
        fields.next().expect("soft limit").to_owned(),
        fields.next().expect("hard limit").to_owned(),
    )
}

/// The real user id of a process, from `/proc/PID/status`.
fn real_uid(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no Uid in:\n{status}"))
}

#[test]
fn the_running_binary_cannot_dump_core_and_cannot_be_inspected_by_its_own_user() {
    // A non-dumpable process's /proc files belong to root instead of its user, which shows
    // only for a user that is not root: run as `nobody` when the test is root.
    // SAFETY: geteuid has no preconditions.
    let as_root = unsafe { libc::geteuid() } == 0;
    let toml = "[server]\nlisten = \"127.0.0.1:0\"\n\n[[routes]]\nname = \"r\"\nprefix = \"/\"\nupstream = \"http://127.0.0.1:9\"\n";
    let options = Options {
        env: &[],
        uid: as_root.then_some(65534),
    };
    let (binary, _, _) = Binary::start(toml, options);
    let pid = binary.pid();
    assert_eq!(
        core_limit(pid),
        ("0".to_owned(), "0".to_owned()),
        "core dumps are limited to zero bytes, soft and hard"
    );
    let uid = real_uid(pid);
    assert_ne!(uid, 0, "the proxy runs as an ordinary user here");
    // (/proc/PID itself keeps the process's owner so that `ps` can show it; its files do not.)
    let owner = std::fs::metadata(format!("/proc/{pid}/status"))
        .expect("proc entry")
        .uid();
    assert_eq!(
        owner, 0,
        "/proc/{pid}/status belongs to uid {owner}, the process's own user {uid}: it is dumpable"
    );
}
