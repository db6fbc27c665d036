//! The evidence an operator reaches for when a connector breaks, through the real binary: a live
//! instance's files are its own (a second `run` touches nothing), restarts do not push evidence
//! out, the trace holds both sides of an exchange, `diagnose` judges what the client saw (on the
//! HAR and on the JSON lines alike) and says so in its exit code, and the access log has one
//! line per exchange without a secret in it.

#[path = "support/binary.rs"]
mod binary;
mod common;
#[path = "support/har_validator.rs"]
mod har_validator;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use http::{header, Response, StatusCode};
use provproxy::body::{full, ProxyBody};
use serde_json::Value;

use binary::{eventually, output, provproxy, Instance};
use common::{get, Recorded, Upstream};

const PASSWORD: &str = "h5-password-secret-31c9";
const COOKIE_SECRET: &str = "cookie-secret-77e1";
const ENV: &[(&str, &str)] = &[("H5_PASSWORD", PASSWORD)];
const ACL_BODY: &str = r#"{"error":{"message":"Operation Failed","detail":"ACL Exception Insert Failed due to security constraints"},"status":"failure"}"#;

/// A session-locked target: a request without a cookie opens a session; one with the current
/// session's cookie is served; one with any other cookie (an expired session) gets the 401 of
/// the field case. `/osmc/acl` answers ServiceNow's ACL 403.
#[derive(Clone, Default)]
struct Target {
    current: Arc<Mutex<Option<String>>>,
    opened: Arc<Mutex<u32>>,
}

impl Target {
    fn expire(&self) {
        *self.current.lock().expect("target state") = None;
    }

    fn respond(&self, request: &Recorded) -> Response<ProxyBody> {
        if request.uri.path().ends_with("/acl") {
            return common::json(StatusCode::FORBIDDEN, ACL_BODY);
        }
        let sent = request
            .headers
            .get(header::COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.split(';')
                    .find_map(|p| p.trim().strip_prefix("JSESSIONID="))
            })
            .map(str::to_owned);
        let mut current = self.current.lock().expect("target state");
        match sent {
            Some(id) if current.as_deref() == Some(id.as_str()) => {
                common::json(StatusCode::OK, r#"{"ok":true}"#)
            }
            Some(_) => Response::builder()
                .status(StatusCode::UNAUTHORIZED)
                .header(header::WWW_AUTHENTICATE, r#"Token Basic realm="osmc""#)
                .header(header::CONTENT_TYPE, "application/json")
                .body(full(
                    r#"{"code":401,"description":"The request requires user authentication"}"#,
                ))
                .expect("response"),
            None => {
                let mut opened = self.opened.lock().expect("target state");
                *opened += 1;
                let id = format!("{COOKIE_SECRET}-{opened}");
                *current = Some(id.clone());
                Response::builder()
                    .status(StatusCode::OK)
                    .header(
                        header::SET_COOKIE,
                        format!("JSESSIONID={id}; Path=/; HttpOnly"),
                    )
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(full(r#"{"ok":true,"session":"new"}"#))
                    .expect("response")
            }
        }
    }
}

async fn target() -> (Upstream, Target) {
    let target = Target::default();
    let responder = target.clone();
    let upstream = Upstream::start(move |request| responder.respond(request)).await;
    (upstream, target)
}

/// A config in `dir` whose relative paths resolve next to it, as an operator's would.
fn config(dir: &Path, upstream: &str, log: &str) -> PathBuf {
    let text = format!(
        r#"[server]
listen = "127.0.0.1:0"

[log]
{log}

[trace]
har = "traces/osmc.har"
jsonl = "traces/osmc.jsonl"

[[routes]]
name = "osmc"
prefix = "/osmc/"
strip_prefix = true
upstream = "{upstream}"

[routes.auth]
kind = "basic"
username = "svc_provision"
password = {{ env = "H5_PASSWORD" }}

[routes.session]
key = "route"
relogin_on = [401]
persist = "state/sessions.json"
"#
    );
    let path = dir.join("provproxy.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()))
}

fn har_entries(path: &Path) -> Vec<Value> {
    let doc: Value = serde_json::from_slice(&read(path)).expect("the HAR is JSON");
    doc["log"]["entries"].as_array().expect("entries").clone()
}

fn diagnose(trace: &Path, json: bool) -> (Option<i32>, String, String) {
    let mut command = provproxy();
    command.arg("diagnose").arg(trace);
    if json {
        command.arg("--json");
    }
    let (status, stdout, stderr) = output(&mut command);
    (status.code(), stdout, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_on_the_same_config_fails_naming_the_lock_holder_and_changes_none_of_the_first_ones_files(
) {
    let (upstream, _target) = target().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), &upstream.url(), r#"access = "off""#);
    let first = Instance::start(&config, ENV);
    assert_eq!(get(first.addr, "/osmc/Users", &[]).await.status, 200);
    let files = [
        dir.path().join("traces/osmc.har"),
        dir.path().join("traces/osmc.jsonl"),
        dir.path().join("state/sessions.json"),
    ];
    eventually("the first instance wrote its trace and its session", || {
        files
            .iter()
            .all(|file| std::fs::read_to_string(file).is_ok_and(|text| text.contains("osmc")))
    });
    let before: Vec<Vec<u8>> = files.iter().map(|file| read(file)).collect();

    let mut second = provproxy();
    second
        .args(["run", "--config"])
        .arg(&config)
        .envs(ENV.iter().copied());
    let (status, _, stderr) = output(&mut second);

    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("in use by process {}", first.pid())),
        "the message names the holder: {stderr}"
    );
    assert!(stderr.contains("sessions.json"), "and the file: {stderr}");
    let after: Vec<Vec<u8>> = files.iter().map(|file| read(file)).collect();
    for ((file, before), after) in files.iter().zip(&before).zip(&after) {
        assert!(before == after, "{} changed", file.display());
    }
    let rotated = dir.path().join("traces/osmc.har.1");
    assert!(!rotated.exists(), "nothing was rotated");
    // The first instance goes on serving and recording.
    assert_eq!(get(first.addr, "/osmc/Users", &[]).await.status, 200);
    let (status, _) = first.stop();
    assert!(status.success());
    assert_eq!(har_entries(&files[0]).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_without_traffic_leave_no_rotation_and_the_last_runs_trace_in_place() {
    let (upstream, _target) = target().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), &upstream.url(), r#"access = "off""#);
    let har = dir.path().join("traces/osmc.har");
    let rotated = |n: usize| PathBuf::from(format!("{}.{n}", har.display()));
    instance_without_traffic(&config);
    instance_without_traffic(&config);
    let mut traces: Vec<String> = std::fs::read_dir(dir.path().join("traces"))
        .expect("trace directory")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| !name.ends_with(".lock"))
        .collect();
    traces.sort();
    assert_eq!(traces, ["osmc.har", "osmc.jsonl"], "no rotation");

    let instance = Instance::start(&config, ENV);
    assert_eq!(get(instance.addr, "/osmc/Users", &[]).await.status, 200);
    let (status, stderr) = instance.stop();
    assert!(status.success(), "{status}: {stderr}");
    instance_without_traffic(&config);
    instance_without_traffic(&config);
    assert!(
        !rotated(1).exists(),
        "restarts without traffic rotate nothing"
    );
    assert_eq!(
        har_entries(&har).len(),
        1,
        "the last run's trace is where it was"
    );

    let instance = Instance::start(&config, ENV);
    assert_eq!(get(instance.addr, "/osmc/Users/1", &[]).await.status, 200);
    let (status, _) = instance.stop();
    assert!(status.success());
    assert_eq!(
        har_entries(&rotated(1)).len(),
        1,
        "rotated by the next run's first record"
    );
    assert_eq!(har_entries(&har).len(), 1);
    assert!(!rotated(2).exists());
    har_validator::assert_valid_har(&[har.clone(), rotated(1)]);
}

fn instance_without_traffic(config: &Path) {
    let (status, _) = Instance::start(config, ENV).stop();
    assert!(status.success());
}

/// Opens a session, lets the target forget it, and sends the request the proxy recovers with a
/// replay; then an ACL 403 when `forbidden`. Returns the stopped instance's stderr.
async fn session_story(config: &Path, target: &Target, forbidden: bool) -> (usize, String) {
    let instance = Instance::start(config, ENV);
    let mut requests = 0;
    for path in ["/osmc/Users", "/osmc/Users/1"] {
        assert_eq!(get(instance.addr, path, &[]).await.status, 200);
        requests += 1;
    }
    target.expire();
    let recovered = get(
        instance.addr,
        "/osmc/Users/2?filter=x&password=query-secret-5d",
        &[],
    )
    .await;
    assert_eq!(recovered.status, 200, "the client got the replay's answer");
    requests += 1;
    if forbidden {
        assert_eq!(get(instance.addr, "/osmc/acl", &[]).await.status, 403);
        requests += 1;
    }
    let (status, stderr) = instance.stop();
    assert!(status.success(), "{stderr}");
    (requests, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovered_relogin_is_diagnosed_as_recovered_with_exit_0_and_both_sides_are_recorded() {
    let (upstream, target) = target().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), &upstream.url(), r#"access = "off""#);
    session_story(&config, &target, false).await;
    let har = dir.path().join("traces/osmc.har");

    let (code, stdout, stderr) = diagnose(&har, false);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("-> 401, recovered (session_expired): the client got 200"),
        "{stdout}"
    );
    assert_eq!(
        stdout.lines().last(),
        Some("3 exchanges, 0 failed; 1 recovered: 1 session_expired")
    );

    let entries = har_entries(&har);
    // The session-opening exchange: the target's Set-Cookie is in the record (value redacted),
    // and the record says the client did not get it.
    let opening = &entries[0];
    let cookies = &opening["response"]["cookies"];
    assert_eq!(cookies[0]["name"], "JSESSIONID", "{opening:#}");
    assert_eq!(cookies[0]["value"], "[REDACTED]");
    assert_eq!(
        opening["_provproxy"]["actions"]["cookiesWithheld"][0],
        "JSESSIONID"
    );
    assert_eq!(opening["_provproxy"]["actions"]["sessionOpened"], true);
    // The refused attempt carried the old cookie and said it; the replay sent none and says so.
    let refused = &entries[2];
    assert_eq!(refused["response"]["status"], 401);
    assert_eq!(refused["_provproxy"]["actions"]["relogin"], true);
    assert_eq!(
        refused["_provproxy"]["actions"]["cookiesReplayed"][0],
        "JSESSIONID"
    );
    let replay = &entries[3];
    assert_eq!(replay["_provproxy"]["role"], "replay");
    assert_eq!(replay["_provproxy"]["parent"], refused["_provproxy"]["id"]);
    assert_eq!(
        replay["_provproxy"]["actions"]["cookiesReplayed"],
        Value::Array(vec![])
    );
    assert!(replay["request"]["cookies"]
        .as_array()
        .is_some_and(Vec::is_empty));
    assert_eq!(replay["response"]["cookies"][0]["name"], "JSESSIONID");
    let text = String::from_utf8_lossy(&read(&har)).into_owned();
    assert!(
        !text.contains(COOKIE_SECRET),
        "no cookie value in the trace"
    );
    har_validator::assert_valid_har(&[har]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_403_makes_diagnose_exit_1_and_the_json_lines_give_the_same_findings_as_the_har() {
    let (upstream, target) = target().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), &upstream.url(), r#"access = "off""#);
    session_story(&config, &target, true).await;
    let har = dir.path().join("traces/osmc.har");
    let jsonl = dir.path().join("traces/osmc.jsonl");

    let (code, text, _) = diagnose(&har, false);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("-> 403: acl_denied"), "{text}");
    assert_eq!(
        text.lines().last(),
        Some("4 exchanges, 1 failed: 1 acl_denied; 1 recovered: 1 session_expired")
    );
    let (jsonl_code, jsonl_text, _) = diagnose(&jsonl, false);
    assert_eq!(jsonl_code, Some(1));
    assert_eq!(jsonl_text, text, "the same report from the JSON lines");
    let (_, har_json, _) = diagnose(&har, true);
    let (_, jsonl_json, _) = diagnose(&jsonl, true);
    assert_eq!(jsonl_json, har_json);
    let report: Value = serde_json::from_str(&har_json).expect("JSON report");
    assert_eq!(report["findings"][0]["class"], "acl_denied");
    assert_eq!(report["recovered"][0]["cause"], "session_expired");
}

/// `provproxy har`: a trace kept as JSON lines gives the HAR the proxy would have written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn har_makes_from_the_json_lines_the_har_that_was_written_live_created_0600() {
    use std::os::unix::fs::PermissionsExt as _;
    let (upstream, target) = target().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), &upstream.url(), r#"access = "off""#);
    session_story(&config, &target, true).await;
    let live = dir.path().join("traces/osmc.har");
    let jsonl = dir.path().join("traces/osmc.jsonl");
    let made = dir.path().join("made.har");

    let mut har = provproxy();
    har.arg("har").arg(&jsonl).arg("-o").arg(&made);
    let (status, stdout, stderr) = output(&mut har);
    assert!(status.success(), "{stderr}");
    assert!(stdout.is_empty());
    let mode = std::fs::metadata(&made).expect("made").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    har_validator::assert_valid_har(std::slice::from_ref(&made));
    assert_eq!(har_entries(&made), har_entries(&live));

    let mut to_stdout = provproxy();
    to_stdout.arg("har").arg(&jsonl);
    let (status, stdout, _) = output(&mut to_stdout);
    assert!(status.success());
    assert_eq!(stdout.as_bytes(), read(&made));
    let mut unreadable = provproxy();
    unreadable.arg("har").arg(dir.path().join("missing.jsonl"));
    assert_eq!(output(&mut unreadable).0.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_has_one_line_per_exchange_and_no_secret_colour_or_cookie_value() {
    let (upstream, target) = target().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), &upstream.url(), r#"access = "text""#);
    let (requests, stderr) = session_story(&config, &target, true).await;

    let access: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("provproxy::access:") && line.contains(" upstream="))
        .collect();
    assert_eq!(access.len(), requests, "one line per exchange:\n{stderr}");
    let recovered = access
        .iter()
        .find(|line| line.contains("/osmc/Users/2"))
        .expect("the recovered exchange's line");
    assert!(recovered.contains("\"GET /osmc/Users/2?filter=x&password=[REDACTED]\" 200"));
    assert!(recovered.contains("upstream=200"), "{recovered}");
    assert!(
        recovered.contains("did=auth_injected,cookies_replayed,session_opened,relogin,replay"),
        "{recovered}"
    );
    assert!(access
        .iter()
        .any(|line| line.contains("\"GET /osmc/acl\" 403 upstream=403")));
    assert!(
        stderr.contains("re-login: the target no longer knew the session"),
        "{stderr}"
    );
    assert!(
        stderr.contains("replay after re-login succeeded"),
        "{stderr}"
    );
    for secret in [PASSWORD, COOKIE_SECRET, "query-secret-5d", "ok\":true"] {
        assert!(!stderr.contains(secret), "{secret} in the log:\n{stderr}");
    }
    assert!(
        !stderr.contains('\u{1b}'),
        "no colours when stderr is not a terminal"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_access_log_writes_one_json_object_per_exchange() {
    let (upstream, target) = target().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), &upstream.url(), r#"access = "json""#);
    let (requests, stderr) = session_story(&config, &target, false).await;
    let lines: Vec<Value> = stderr
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["target"] == "provproxy::access")
        .collect();
    assert_eq!(lines.len(), requests, "{stderr}");
    let last = &lines[requests - 1];
    assert_eq!(last["route"], "osmc");
    assert_eq!(last["method"], "GET");
    assert_eq!(last["status"], 200);
    assert_eq!(last["upstream_status"], 200);
    assert!(last["client"]
        .as_str()
        .is_some_and(|c| c.starts_with("127.0.0.1:")));
    assert!(last["bytes"].as_u64().is_some_and(|b| b > 0));
    assert!(last["actions"]
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x == "replay")));
    assert!(!stderr.contains(PASSWORD) && !stderr.contains(COOKIE_SECRET));
}

/// A HAR of `n` failed exchanges: enough output to fill a pipe's buffer.
fn many_failures(dir: &Path, n: usize) -> PathBuf {
    let entry = r#"{"request":{"method":"GET","url":"https://osmc.example.com/api/accounts/1","headers":[]},"response":{"status":403,"headers":[],"content":{"text":"ACL Exception Insert Failed due to security constraints"}}}"#;
    let entries = vec![entry; n].join(",");
    let path = dir.join("many.har");
    std::fs::write(&path, format!(r#"{{"log":{{"entries":[{entries}]}}}}"#)).expect("write HAR");
    path
}

#[test]
fn diagnose_piped_into_head_ends_quietly_with_its_own_exit_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let har = many_failures(dir.path(), 2000);
    let mut pipeline = std::process::Command::new("bash");
    pipeline.arg("-c").arg(format!(
        r#""{}" diagnose "{}" | head -1; echo "status=${{PIPESTATUS[0]}}" >&2"#,
        env!("CARGO_BIN_EXE_provproxy"),
        har.display()
    ));
    let (_, stdout, stderr) = output(&mut pipeline);
    assert_eq!(stdout.lines().count(), 1);
    assert!(stdout.starts_with("#1 GET"), "{stdout}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("Broken pipe"), "{stderr}");
    assert_eq!(stderr.trim(), "status=1", "findings, not a crash");
}

#[test]
fn diagnose_exits_2_on_a_file_it_cannot_read_or_that_is_no_trace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, _, stderr) = diagnose(&dir.path().join("missing.har"), false);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("missing.har"), "{stderr}");
    let junk = dir.path().join("junk.har");
    std::fs::write(&junk, "this is not a trace\n").expect("write");
    let (code, _, stderr) = diagnose(&junk, false);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("neither a HAR nor JSON lines"), "{stderr}");
}

#[test]
fn check_prints_every_example_in_the_configs_own_spelling_without_debug_text() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&examples)
        .expect("config directory")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    for file in files {
        let mut check = provproxy();
        check.args(["check", "--config"]).arg(&file);
        for name in [
            "OSMC_PASSWORD",
            "SN_PASSWORD",
            "SN_OAUTH_CLIENT_SECRET",
            "ONETRUST_CLIENT_SECRET",
        ] {
            check.env(name, "example-secret-value-0b1d");
        }
        let (status, stdout, stderr) = output(&mut check);
        assert!(status.success(), "{}: {stderr}", file.display());
        for debug in [
            "Some(",
            "None",
            "[REDACTED]",
            "example-secret-value-0b1d",
            "Expand",
        ] {
            assert!(
                !stdout.contains(debug),
                "{}: {debug} in\n{stdout}",
                file.display()
            );
        }
        assert!(stdout.contains("[[routes]]"), "{stdout}");
    }
    let mut check = provproxy();
    check
        .args(["check", "--config"])
        .arg(examples.join("session-locked.toml"))
        .env("OSMC_PASSWORD", "example-secret-value-0b1d");
    let (_, stdout, _) = output(&mut check);
    assert!(stdout.contains("idle_timeout = \"14m\""), "{stdout}");
    assert!(
        stdout.contains("password = <env OSMC_PASSWORD>"),
        "{stdout}"
    );
    assert!(stdout.contains("serialize = false"), "{stdout}");
}

#[test]
fn a_config_error_on_column_15_says_column_15() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("bad.toml");
    let text = "[[routes]]\nname = \"sn\"\nprefix = \"/\"\nupstream = \"https://sn.example.com\"\n\n[routes.auth]\nkind = \"oauth2\"\ntoken_url = \"https://sn.example.com/oauth_token.do\"\nclient_id = \"provproxy\"\nclient_secret = \"literal\"\nclient_auth = \"secret_post\"\n";
    std::fs::write(&config, text).expect("write config");
    let mut check = provproxy();
    check.args(["check", "--config"]).arg(&config);
    let (status, stdout, stderr) = output(&mut check);
    assert_eq!(status.code(), Some(1));
    assert!(stdout.is_empty());
    assert_eq!(
        stderr,
        format!(
            "provproxy: {}:11:15: routes[0].auth.client_auth: unknown client_auth \"secret_post\", expected one of basic, post\n",
            config.display()
        )
    );
}

#[test]
fn version_and_help_tell_the_version_and_the_exit_codes() {
    let mut version = provproxy();
    version.arg("--version");
    let (status, stdout, _) = output(&mut version);
    assert!(status.success());
    assert_eq!(
        stdout.trim(),
        format!("provproxy {}", env!("CARGO_PKG_VERSION"))
    );
    for args in [&["--help"][..], &["diagnose", "--help"]] {
        let mut help = provproxy();
        help.args(args);
        let (status, stdout, _) = output(&mut help);
        assert!(status.success());
        assert!(stdout.contains("Exit codes:"), "{stdout}");
        assert!(stdout.contains("2  usage error"), "{stdout}");
    }
    let mut unreadable = provproxy();
    unreadable.args(["check", "--config", "/nonexistent/provproxy.toml"]);
    let (status, _, stderr) = output(&mut unreadable);
    assert_eq!(status.code(), Some(2), "{stderr}");
}

#[test]
fn the_readme_names_the_paths_the_examples_write_and_diagnose_advises_what_they_set() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README");
    let any_env = |_: &str| Some("example-secret".to_owned());
    let load = |name: &str| {
        let text = std::fs::read_to_string(root.join("config").join(name)).expect("example");
        provproxy::config::load_str(&text, name, Path::new("config"), &any_env)
            .unwrap_or_else(|err| panic!("{err}"))
    };
    let locked = load("session-locked.toml");
    let har = locked
        .trace
        .as_ref()
        .and_then(|t| t.har.clone())
        .expect("a HAR");
    assert!(
        readme.contains(&format!("provproxy diagnose {}", har.display())),
        "the README's diagnose command reads {}",
        har.display()
    );
    let jsonl = load("scoped-token.toml")
        .trace
        .and_then(|t| t.jsonl)
        .expect("JSON lines");
    assert!(readme.contains(&format!("provproxy diagnose {}", jsonl.display())));

    // What diagnose advises for a session-locked target is what the example sets.
    let report = provproxy::diagnose::diagnose(
        &std::fs::read_to_string(root.join("tests/fixtures/sailpoint_session_locked.har"))
            .expect("fixture"),
    )
    .expect("diagnose");
    let fix = &report.findings[0].fix;
    let session = locked.routes[0].session.as_ref().expect("a session");
    assert!(fix.contains("cookies = true") && session.cookies);
    assert!(fix.contains(r#"key = "route""#) && session.key.to_string() == "route");
    assert!(
        !session.serialize && fix.contains("serialize = true only if"),
        "serialize = false is what the advice allows: {fix}"
    );
    let ignored = std::fs::read_to_string(root.join(".gitignore")).expect(".gitignore");
    for dir in ["/config/state/", "/config/traces/"] {
        assert!(ignored.lines().any(|line| line == dir), "{dir} is ignored");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_logged_recovered_and_diagnosed_as_token_revoked_from_json_lines() {
    use provproxy::demo::oauth_target::{
        spawn_scim_target, spawn_token_endpoint, TokenEndpointConfig, SCIM_USERS_PATH, TOKEN_PATH,
    };
    const CLIENT_SECRET: &str = "client-secret-h5-4a0c";
    let (endpoint, tokens) = spawn_token_endpoint(TokenEndpointConfig {
        client_id: "provproxy".into(),
        client_secret: CLIENT_SECRET.into(),
        ..TokenEndpointConfig::default()
    })
    .await
    .expect("token endpoint");
    let (scim, _) = spawn_scim_target(&tokens).await.expect("SCIM target");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("scoped.toml");
    std::fs::write(
        &config,
        format!(
            r#"[server]
listen = "127.0.0.1:0"
[trace]
jsonl = "traces/onetrust.jsonl"
[[routes]]
name = "onetrust"
prefix = "/scim/"
strip_prefix = true
upstream = "{}/scim/"
[routes.auth]
kind = "oauth2"
token_url = "{}{TOKEN_PATH}"
client_id = "provproxy"
client_secret = {{ env = "H5_CLIENT_SECRET" }}
scopes = ["scim"]
"#,
            scim.url(),
            endpoint.url()
        ),
    )
    .expect("write config");
    let instance = Instance::start(&config, &[("H5_CLIENT_SECRET", CLIENT_SECRET)]);
    let users = SCIM_USERS_PATH.trim_start_matches("/scim/");
    assert_eq!(
        get(instance.addr, &format!("/scim/{users}"), &[])
            .await
            .status,
        200
    );
    tokens.revoke_all();
    assert_eq!(
        get(instance.addr, &format!("/scim/{users}"), &[])
            .await
            .status,
        200
    );
    let (status, stderr) = instance.stop();
    assert!(status.success(), "{stderr}");

    assert_eq!(stderr.matches("token fetched").count(), 2, "{stderr}");
    assert!(
        stderr.contains("replay after a refused token succeeded"),
        "{stderr}"
    );
    let access = stderr.lines().filter(|l| l.contains(" upstream=")).count();
    assert_eq!(access, 2, "{stderr}");
    for secret in std::iter::once(CLIENT_SECRET.to_owned()).chain(tokens.issued_tokens()) {
        assert!(!stderr.contains(&secret), "a secret in the log:\n{stderr}");
    }
    let (code, stdout, _) = diagnose(&dir.path().join("traces/onetrust.jsonl"), false);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("recovered (token_revoked)"), "{stdout}");
    assert_eq!(
        stdout.lines().last(),
        Some("2 exchanges, 0 failed; 1 recovered: 1 token_revoked")
    );
}
