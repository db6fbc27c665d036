//! The habits of a service, through the real binary: `check` away from the secrets, shell
//! completions and the man page, readiness while draining, trace files reopened on SIGUSR1.

mod common;
#[path = "support/service.rs"]
mod service;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::{header, Request, StatusCode};
use provproxy::body::full;
use serde_json::Value;
use tokio::sync::{mpsc, Notify};

use service::{output, provproxy, Service};

const SECRET_ENV: &str = "H9_MISSING_PASSWORD";

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("provproxy.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

fn config_with_missing_secret(dir: &Path) -> PathBuf {
    write_config(
        dir,
        &format!(
            r#"[server]
listen = "127.0.0.1:0"

[[routes]]
name = "osmc"
prefix = "/osmc/"
upstream = "http://127.0.0.1:9"

[routes.auth]
kind = "basic"
username = "svc"
password = {{ env = "{SECRET_ENV}" }}
"#
        ),
    )
}

fn check(config: &Path, strict: bool) -> (Option<i32>, String, String) {
    let mut command = provproxy();
    command
        .args(["check", "--config"])
        .arg(config)
        .env_remove(SECRET_ENV);
    if strict {
        command.arg("--strict");
    }
    let (status, stdout, stderr) = output(&mut command);
    (status.code(), stdout, stderr)
}

#[test]
fn check_with_a_missing_env_secret_warns_naming_the_key_and_variable_and_exits_0() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_with_missing_secret(dir.path());
    let (code, stdout, stderr) = check(&config, false);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("warning")
            && stderr.contains("routes[0].auth.password")
            && stderr.contains(SECRET_ENV),
        "{stderr}"
    );
    assert!(stdout.contains(&format!("<env {SECRET_ENV}>")), "{stdout}");
}

#[test]
fn check_strict_with_a_missing_env_secret_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_with_missing_secret(dir.path());
    let (code, _, stderr) = check(&config, true);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains(SECRET_ENV), "{stderr}");
    assert!(stderr.contains("--strict"), "{stderr}");
}

#[test]
fn check_with_a_missing_secret_file_warns_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(
        dir.path(),
        r#"[[routes]]
name = "osmc"
prefix = "/osmc/"
upstream = "http://127.0.0.1:9"

[routes.auth]
kind = "bearer"
token = { file = "secrets/token" }
"#,
    );
    let (code, _, stderr) = check(&config, false);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("routes[0].auth.token") && stderr.contains("secrets/token"),
        "{stderr}"
    );
    assert_eq!(check(&config, true).0, Some(1));
}

#[test]
fn run_with_a_missing_env_secret_still_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_with_missing_secret(dir.path());
    let mut command = provproxy();
    command
        .args(["run", "--config"])
        .arg(&config)
        .env_remove(SECRET_ENV);
    let (status, _, stderr) = output(&mut command);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("environment variable {SECRET_ENV} is not set")),
        "{stderr}"
    );
}

#[test]
fn completions_for_bash_zsh_and_fish_name_every_subcommand() {
    for shell in ["bash", "zsh", "fish"] {
        let mut command = provproxy();
        command.args(["completions", shell]);
        let (status, stdout, stderr) = output(&mut command);
        assert!(status.success(), "{shell}: {stderr}");
        for subcommand in ["run", "check", "diagnose", "demo", "completions", "man"] {
            assert!(stdout.contains(subcommand), "{shell} lacks {subcommand}");
        }
        assert!(stdout.contains("strict"), "{shell} lacks check's --strict");
    }
}

#[test]
fn bash_completion_script_is_valid_bash() {
    let mut command = provproxy();
    command.args(["completions", "bash"]);
    let (_, script, _) = output(&mut command);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("provproxy.bash");
    std::fs::write(&file, script).expect("write script");
    let mut bash = std::process::Command::new("bash");
    bash.arg("-n").arg(&file);
    let (status, _, stderr) = output(&mut bash);
    assert!(status.success(), "{stderr}");
}

#[test]
fn man_page_is_roff_with_the_commands_and_exit_codes() {
    let mut command = provproxy();
    command.arg("man");
    let (status, page, stderr) = output(&mut command);
    assert!(status.success(), "{stderr}");
    assert!(
        page.starts_with(".ie") || page.contains(".TH provproxy"),
        "{page}"
    );
    assert!(
        page.contains("Exit codes"),
        "the exit codes are in the page"
    );
    assert!(page.contains("diagnose"), "subcommands are listed");
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/provproxy.service"
    ))
    .expect("contrib/provproxy.service");
    for directive in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "StateDirectory=provproxy",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
    ] {
        assert!(unit.contains(directive), "the unit has {directive}");
    }
    let mut probe = std::process::Command::new("systemd-analyze");
    probe.arg("--version");
    if probe.output().is_err() {
        eprintln!("skipped: systemd-analyze is not installed here");
        return;
    }
    // verify insists that ExecStart's binary exists: point it at the one under test.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("provproxy.service");
    let unit = unit.replace("/usr/local/bin/provproxy", env!("CARGO_BIN_EXE_provproxy"));
    std::fs::write(&file, unit).expect("write unit");
    let mut verify = std::process::Command::new("systemd-analyze");
    verify.args(["verify", "--man=no"]).arg(&file);
    let (status, stdout, stderr) = output(&mut verify);
    assert!(status.success(), "{stdout}{stderr}");
    assert!(stderr.trim().is_empty(), "no warning: {stderr}");
}

/// A target that answers each request only when the test releases it, after saying it arrived.
async fn held_target() -> (common::Server, Arc<Notify>, mpsc::UnboundedReceiver<()>) {
    let release = Arc::new(Notify::new());
    let (arrived, arrivals) = mpsc::unbounded_channel();
    let held = release.clone();
    let server = common::serve(None, move |_request, _| {
        let release = held.clone();
        let arrived = arrived.clone();
        async move {
            let _ = arrived.send(());
            release.notified().await;
            common::json(StatusCode::OK, r#"{"held":true}"#)
        }
    })
    .await;
    (server, release, arrivals)
}

async fn readyz(admin: SocketAddr) -> Option<(StatusCode, Value)> {
    let request = Request::get("/readyz")
        .header(header::HOST, admin.to_string())
        .body(full(""))
        .expect("request");
    let reply = common::try_request_h1(admin, request).await.ok()?;
    Some((reply.status, serde_json::from_slice(&reply.body).ok()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_fails_while_draining_and_the_request_in_flight_still_completes() {
    let (target, release, mut arrivals) = held_target().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(
        dir.path(),
        &format!(
            r#"[server]
listen = "127.0.0.1:0"
shutdown_grace = "20s"

[admin]
listen = "127.0.0.1:0"

[[routes]]
name = "held"
prefix = "/held/"
upstream = "{}"
"#,
            target.url()
        ),
    );
    let mut service = Service::start(&config);
    let admin = service.admin.expect("admin listener");
    let (status, body) = readyz(admin).await.expect("readyz answers");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ready"], true);
    assert!(body["config"]["hash"]
        .as_str()
        .is_some_and(|h| h.starts_with("sha256:")));
    assert!(body["config"]["loaded_at"].is_string());

    let addr = service.addr;
    let in_flight = tokio::spawn(async move { common::get(addr, "/held/x", &[]).await });
    arrivals
        .recv()
        .await
        .expect("the request reached the target");
    service.signal("TERM");

    let deadline = std::time::Instant::now() + service::PATIENCE;
    let body = loop {
        if let Some((StatusCode::SERVICE_UNAVAILABLE, body)) = readyz(admin).await {
            break body;
        }
        assert!(std::time::Instant::now() < deadline, "readyz never failed");
        tokio::task::yield_now().await;
    };
    assert_eq!(body["ready"], false);
    assert_eq!(body["draining"], true);
    assert!(service.is_running(), "still draining the request in flight");

    release.notify_one();
    let reply = in_flight.await.expect("request task");
    assert_eq!(reply.status, 200);
    assert!(service.wait().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr1_after_moving_the_trace_files_writes_the_next_records_to_new_files_none_lost() {
    let upstream = common::Upstream::start(common::ok).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(
        dir.path(),
        &format!(
            r#"[server]
listen = "127.0.0.1:0"

[admin]
listen = "127.0.0.1:0"

[trace]
har = "traces/p.har"
jsonl = "traces/p.jsonl"

[[routes]]
name = "r"
prefix = "/r/"
upstream = "{}"
"#,
            upstream.url()
        ),
    );
    let mut service = Service::start(&config);
    let traces = dir.path().join("traces");
    let (jsonl, har) = (traces.join("p.jsonl"), traces.join("p.har"));
    let lines = |path: &Path| {
        std::fs::read_to_string(path)
            .map(|text| text.lines().count())
            .unwrap_or(0)
    };
    for n in 1..=2 {
        assert_eq!(
            common::get(service.addr, &format!("/r/{n}"), &[])
                .await
                .status,
            200
        );
    }
    service::eventually("two records in the JSON lines", || lines(&jsonl) == 2);

    // logrotate without copytruncate: move, then signal.
    let (jsonl_moved, har_moved) = (traces.join("p.jsonl.old"), traces.join("p.har.old"));
    std::fs::rename(&jsonl, &jsonl_moved).expect("move jsonl");
    std::fs::rename(&har, &har_moved).expect("move har");
    service.signal("USR1");
    service.wait_for_line("trace files reopened");
    for n in 3..=4 {
        assert_eq!(
            common::get(service.addr, &format!("/r/{n}"), &[])
                .await
                .status,
            200
        );
    }
    service::eventually("two records in the new JSON lines", || lines(&jsonl) == 2);

    let paths = |path: &Path| -> Vec<String> {
        std::fs::read_to_string(path)
            .expect("read trace")
            .lines()
            .map(|line| {
                let record: Value = serde_json::from_str(line).expect("JSON line");
                record["url"].as_str().unwrap_or_default().to_owned()
            })
            .collect()
    };
    let old = paths(&jsonl_moved);
    let new = paths(&jsonl);
    assert!(
        old[0].ends_with("/r/1") && old[1].ends_with("/r/2"),
        "{old:?}"
    );
    assert!(
        new[0].ends_with("/r/3") && new[1].ends_with("/r/4"),
        "{new:?}"
    );
    // The moved HAR was completed where it now is: a whole document with its two entries.
    let moved: Value =
        serde_json::from_slice(&std::fs::read(&har_moved).expect("moved HAR")).expect("HAR JSON");
    assert_eq!(moved["log"]["entries"].as_array().map(Vec::len), Some(2));
    let metrics = common::get(service.admin.expect("admin"), "/metrics", &[]).await;
    assert!(
        String::from_utf8_lossy(&metrics.body).contains("provproxy_trace_reopens_total 1"),
        "counted"
    );
    assert!(service.stop().success());
    let current: Value =
        serde_json::from_slice(&std::fs::read(&har).expect("new HAR")).expect("HAR JSON");
    assert_eq!(current["log"]["entries"].as_array().map(Vec::len), Some(2));
}
