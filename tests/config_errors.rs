//! Every config mistake is one line that says where (`file:line:col`), which key, and what to
//! write instead; the example configs all load; `provproxy check` exits 1 with that line on a
//! bad file and prints a plan without the secret on a good one.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A valid config that each case breaks in one place. Lines are numbered in the comments.
const BASE: &str = r#"[server]
listen = "127.0.0.1:8080"

[[routes]]
name = "osmc"
prefix = "/osmc/"
upstream = "https://osmc.example.com"

[routes.auth]
kind = "basic"
username = "svc"
password = { env = "OSMC_PASSWORD" }
"#;
// 1 [server]   2 listen   4 [[routes]]   5 name   6 prefix   7 upstream
// 9 [routes.auth]   10 kind   11 username   12 password

fn env(name: &str) -> Option<String> {
    match name {
        "OSMC_PASSWORD" => Some("not-a-real-password".to_owned()),
        "EMPTY_PASSWORD" => Some(String::new()),
        "MULTILINE_PASSWORD" => Some("first\nsecond".to_owned()),
        _ => None,
    }
}

fn replaced(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "the case edits {from:?}");
    BASE.replacen(from, to, 1)
}

fn appended(extra: &str) -> String {
    format!("{BASE}{extra}")
}

fn load(text: &str) -> Result<provproxy::config::Plan, provproxy::config::ConfigError> {
    provproxy::config::load_str(text, "x.toml", Path::new("/etc/provproxy"), &env)
}

#[test]
fn the_base_config_of_the_error_table_is_valid() {
    if let Err(err) = load(BASE) {
        panic!("{err}");
    }
}

#[test]
fn each_bad_config_gets_one_exact_line_naming_place_key_and_fix() {
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "a status code that does not exist",
            appended("\n[routes.session]\nrelogin_on = [401, 999]\n"),
            "x.toml:15:20: routes[0].session.relogin_on[1]: 999 is not an HTTP status",
        ),
        (
            "a secret that cannot go in a header is reported at its own key",
            replaced("OSMC_PASSWORD", "MULTILINE_PASSWORD"),
            "x.toml:12:12: routes[0].auth.password: the secret contains characters that cannot go in an HTTP header",
        ),
        (
            "unknown key, with the nearest valid one",
            replaced("listen =", "listn ="),
            "x.toml:2:1: server.listn: unknown key `listn`, did you mean `listen`?",
        ),
        (
            "unknown key inside a route's auth",
            replaced("username =", "usrname ="),
            "x.toml:11:1: routes[0].auth.usrname: unknown key `usrname`, did you mean `username`?",
        ),
        (
            "unknown table",
            appended("\n[tracing]\nhar = \"x.har\"\n"),
            "x.toml:14:2: tracing: unknown key `tracing`, did you mean `trace`?",
        ),
        (
            "unknown auth kind",
            replaced(r#""basic""#, r#""basci""#),
            r#"x.toml:10:8: routes[0].auth.kind: unknown kind "basci", expected one of none, basic, bearer, header, oauth2"#,
        ),
        (
            "secret from an unset environment variable",
            replaced("OSMC_PASSWORD", "NOT_SET"),
            "x.toml:12:12: routes[0].auth.password: environment variable NOT_SET is not set",
        ),
        (
            "secret from an empty environment variable",
            replaced("OSMC_PASSWORD", "EMPTY_PASSWORD"),
            "x.toml:12:12: routes[0].auth.password: environment variable EMPTY_PASSWORD is empty",
        ),
        (
            "unreadable secret file",
            replaced(
                r#"{ env = "OSMC_PASSWORD" }"#,
                r#"{ file = "/nonexistent/osmc-password" }"#,
            ),
            "x.toml:12:12: routes[0].auth.password: cannot read secret file /nonexistent/osmc-password: No such file or directory (os error 2)",
        ),
        (
            "secret with both env and file",
            replaced(
                r#"{ env = "OSMC_PASSWORD" }"#,
                r#"{ env = "OSMC_PASSWORD", file = "pw" }"#,
            ),
            "x.toml:12:12: routes[0].auth.password: a secret takes exactly one of `env` or `file`",
        ),
        (
            "bad duration",
            replaced(
                "upstream = \"https://osmc.example.com\"",
                "upstream = \"https://osmc.example.com\"\nconnect_timeout = \"5 parsecs\"",
            ),
            r#"x.toml:8:19: routes[0].connect_timeout: invalid duration "5 parsecs" (unknown time unit "parsecs", supported units: ns, us/µs, ms, sec, min, hours, days, weeks, months, years (and few variations)); write it like "5s", "15m" or "500ms""#,
        ),
        (
            "bad size",
            replaced(
                "upstream = \"https://osmc.example.com\"",
                "upstream = \"https://osmc.example.com\"\nmax_request_body = \"10 furlongs\"",
            ),
            r#"x.toml:8:20: routes[0].max_request_body: invalid size "10 furlongs"; write it like "64KiB", "1MiB" or "1048576""#,
        ),
        (
            "non-loopback listen without clients",
            replaced("127.0.0.1:8080", "0.0.0.0:8080"),
            "x.toml:2:10: server.listen: 0.0.0.0:8080 is reachable from other hosts, but no [[server.clients]] are configured: anyone who can connect could act as the service account. Add [[server.clients]], listen on 127.0.0.1, or set server.allow_anyone = true",
        ),
        (
            "listen address that is not IP:PORT",
            replaced("127.0.0.1:8080", "localhost:8080"),
            r#"x.toml:2:10: server.listen: invalid address "localhost:8080"; write it as IP:PORT, like "127.0.0.1:8080""#,
        ),
        (
            "prefix without a leading slash",
            replaced(r#""/osmc/""#, r#""osmc/""#),
            r#"x.toml:6:10: routes[0].prefix: "osmc/" must start with /"#,
        ),
        (
            "route with both prefix and host",
            replaced(
                "prefix = \"/osmc/\"",
                "prefix = \"/osmc/\"\nhost = \"osmc.proxy.local\"",
            ),
            "x.toml:7:8: routes[0].host: a route matches by prefix or by host, not both",
        ),
        (
            "route with neither prefix nor host",
            replaced("prefix = \"/osmc/\"\n", ""),
            "x.toml:4:1: routes[0]: a route needs `prefix` or `host`",
        ),
        (
            "duplicate route name",
            appended("\n[[routes]]\nname = \"osmc\"\nprefix = \"/other/\"\nupstream = \"https://other.example.com\"\n"),
            r#"x.toml:15:8: routes[1].name: route "osmc" is defined twice"#,
        ),
        (
            "two routes matching the same requests",
            appended("\n[[routes]]\nname = \"other\"\nprefix = \"/osmc\"\nupstream = \"https://other.example.com\"\n"),
            r#"x.toml:14:1: routes[1]: route "other" matches the same requests as an earlier route"#,
        ),
        (
            "`when` typo",
            replaced("kind = \"basic\"", "kind = \"basic\"\nwhen = \"allways\""),
            r#"x.toml:11:8: routes[0].auth.when: unknown value "allways", expected one of always, missing, never"#,
        ),
        (
            "basic auth without a username",
            replaced("username = \"svc\"\n", ""),
            "x.toml:9:9: routes[0].auth.username: missing; basic auth needs a username",
        ),
        (
            "a key of another auth kind",
            replaced("username = \"svc\"", "username = \"svc\"\ntoken = \"x\""),
            r#"x.toml:12:9: routes[0].auth.token: not used with kind = "basic""#,
        ),
        (
            "header auth without the header name",
            replaced(
                "kind = \"basic\"\nusername = \"svc\"\npassword",
                "kind = \"header\"\nvalue",
            ),
            r#"x.toml:9:9: routes[0].auth.name: missing; header auth needs the header name, like "X-API-Key""#,
        ),
        (
            "oauth2 without token_url",
            replaced(
                "kind = \"basic\"\nusername = \"svc\"\npassword",
                "kind = \"oauth2\"\nclient_id = \"provproxy\"\nclient_secret",
            ),
            "x.toml:9:9: routes[0].auth.token_url: missing; oauth2 needs the token endpoint URL",
        ),
        (
            "upstream scheme that is not http(s)",
            replaced("https://osmc", "ftp://osmc"),
            r#"x.toml:7:12: routes[0].upstream: scheme "ftp" is not http or https"#,
        ),
        (
            "value of the wrong type",
            replaced(r#""/osmc/""#, "42"),
            "x.toml:6:10: routes[0].prefix: invalid type: integer `42`, expected a string",
        ),
        (
            "challenge mode typo",
            appended("\n[routes.challenge]\nmode = \"expnd\"\n"),
            r#"x.toml:15:8: routes[0].challenge.mode: unknown mode "expnd", expected one of keep, expand, replace"#,
        ),
        (
            "challenge entry holding two challenges",
            appended("\n[routes.challenge]\nadd = ['Basic realm=\"a\", Bearer']\n"),
            r#"x.toml:14:9: routes[0].challenge: challenge.add entry "Basic realm=\"a\", Bearer" holds 2 challenges; write one per entry"#,
        ),
        (
            "replace without a challenge to replace with",
            appended("\n[routes.challenge]\nmode = \"replace\"\n"),
            r#"x.toml:14:9: routes[0].challenge: challenge.mode = "replace" needs at least one challenge in challenge.add"#,
        ),
        (
            "route restricted to an undefined client",
            replaced(
                "upstream = \"https://osmc.example.com\"",
                "upstream = \"https://osmc.example.com\"\nclients = [\"iiq\"]",
            ),
            r#"x.toml:8:12: routes[0].clients[0]: no [[server.clients]] is named "iiq""#,
        ),
        (
            "TOML syntax error: unterminated string",
            replaced("name = \"osmc\"", "name = \"osmc"),
            "x.toml:5:13: invalid basic string",
        ),
        (
            "TOML syntax error: unclosed table header",
            replaced("[routes.auth]", "[routes.auth"),
            "x.toml:9:13: invalid table header; expected `.`, `]`",
        ),
    ];
    assert!(cases.len() >= 15);
    let mut wrong = Vec::new();
    for (what, text, expected) in &cases {
        match load(text) {
            Ok(_) => wrong.push(format!("{what}: accepted\n{text}")),
            Err(err) => {
                let got = err.to_string();
                if got != *expected {
                    wrong.push(format!("{what}:\n  got      {got}\n  expected {expected}"));
                }
                assert!(!got.contains('\n'), "{what}: not one line: {got}");
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn redaction_keys_are_checked_and_reach_the_trace_plan() {
    let trace = "\n[trace]\nredact_fields = [\"tenantPin\"]\n";
    let header_route = concat!(
        "\n[[routes]]\nname = \"sn\"\nprefix = \"/sn/\"\nupstream = \"https://sn.example.com\"\n",
        "[routes.auth]\nkind = \"header\"\nname = \"X-SN-Auth\"\nvalue = \"v\"\n",
        "[routes.trace]\nraw_bodies = true\n"
    );
    let plan = load(&format!("{BASE}{header_route}{trace}")).unwrap_or_else(|e| panic!("{e}"));
    let trace_plan = plan.trace.expect("trace plan");
    assert_eq!(trace_plan.auth_headers, ["x-sn-auth"]);
    assert_eq!(trace_plan.raw_body_routes, ["sn"]);
    assert!(trace_plan.redact_fields.iter().any(|f| f == "tenantPin"));
    for (text, expected) in [
        (
            appended("\n[routes.trace]\nraw_body = true\n"),
            "x.toml:15:1: routes[0].trace.raw_body: unknown key `raw_body`, did you mean `raw_bodies`?",
        ),
        (
            appended("\n[trace]\nredact_fields = [\"pin\", \"\"]\n"),
            "x.toml:15:25: trace.redact_fields[1]: an empty pattern would match every field",
        ),
    ] {
        match load(&text) {
            Ok(_) => panic!("accepted {text}"),
            Err(err) => assert_eq!(err.to_string(), expected),
        }
    }
}

#[test]
fn every_example_config_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("read {}: {err}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no example configs in {}", dir.display());
    // Long enough for a state key (32 characters), which config/replicas.toml requires.
    let any_env = |_: &str| Some("dummy-secret-value-long-enough-for-a-state-key".to_owned());
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read example config");
        let name = file.display().to_string();
        if let Err(err) = provproxy::config::load_str(&text, &name, &dir, &any_env) {
            panic!("{err}");
        }
    }
}

fn provproxy() -> Command {
    Command::new(env!("CARGO_BIN_EXE_provproxy"))
}

#[test]
fn check_exits_1_with_the_one_line_message_on_a_bad_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, replaced("listen =", "listn =")).expect("write config");
    let output = provproxy()
        .args(["check", "--config"])
        .arg(&path)
        .env("OSMC_PASSWORD", "not-a-real-password")
        .env_remove("RUST_LOG")
        .output()
        .expect("run provproxy check");
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        format!(
            "provproxy: {}:2:1: server.listn: unknown key `listn`, did you mean `listen`?\n",
            path.display()
        )
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn check_exits_0_and_prints_the_plan_without_the_secret_on_a_good_file() {
    const SECRET: &str = "check-must-not-print-this-8c1f";
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("good.toml");
    std::fs::write(&path, BASE).expect("write config");
    let output = provproxy()
        .args(["check", "--config"])
        .arg(&path)
        .env("OSMC_PASSWORD", SECRET)
        .env_remove("RUST_LOG")
        .output()
        .expect("run provproxy check");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.contains("osmc"),
        "the plan names the route: {stdout}"
    );
    assert!(
        stdout.contains("env OSMC_PASSWORD"),
        "the plan names where the secret comes from: {stdout}"
    );
    assert!(!stdout.contains(SECRET) && !stderr.contains(SECRET));
}

#[test]
fn trace_queues_hold_8192_records_and_32_mib_by_default_and_their_bounds_are_checked() {
    let trace_plan = |extra: &str| {
        load(&appended(extra))
            .unwrap_or_else(|e| panic!("{e}"))
            .trace
            .expect("trace plan")
    };
    let default = trace_plan("\n[trace]\njsonl = \"t.jsonl\"\n");
    assert_eq!(
        (default.channel_capacity, default.queue_bytes),
        (8192, 32 << 20)
    );
    let set = trace_plan("\n[trace]\nchannel_capacity = 100\nqueue_size = \"1MiB\"\n");
    assert_eq!((set.channel_capacity, set.queue_bytes), (100, 1 << 20));
    match load(&appended("\n[trace]\nqueue_size = \"lots\"\n")) {
        Ok(_) => panic!("accepted a queue size that is no size"),
        Err(err) => assert_eq!(
            err.to_string(),
            r#"x.toml:15:14: trace.queue_size: invalid size "lots"; write it like "64KiB", "1MiB" or "1048576""#
        ),
    }
}
