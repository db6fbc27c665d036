//! The console (`/ui/` on the admin listener) and its API, against the demo's session-locked
//! case: the live feed, filters, the diagnose finding, compare, HAR and curl export, the admin
//! rules; and the page itself in a real headless Chromium driven over WebDriver.

mod common;
#[path = "support/har_validator.rs"]
mod har_validator;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use http::{Request, StatusCode};
use http_body_util::BodyExt;
use provproxy::body::full;
use provproxy::demo::client::Reply;
use provproxy::demo::console::{ConsoleDemo, FIXED_HOST};
use serde_json::Value;

use common::{request_h1, send_h1, PATIENCE};

const ADMIN_TOKEN: &str = "console-admin-token-7c41-canary";

async fn admin(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut request = Request::builder().method(method).uri(path);
    if !headers.iter().any(|(name, _)| *name == "host") {
        request = request.header("host", addr.to_string());
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request_h1(addr, request.body(full(body.to_owned())).expect("request")).await
}

fn bearer() -> String {
    format!("Bearer {ADMIN_TOKEN}")
}

async fn api(demo: &ConsoleDemo, path: &str) -> Value {
    let addr = demo.proxy().admin_addr().expect("admin listener");
    let reply = admin(addr, "GET", path, &[("authorization", &bearer())], "").await;
    assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
    serde_json::from_slice(&reply.body).expect("JSON")
}

/// The ring's records once it holds `count`: a record reaches it from the trace writer's thread
/// just after the client has its answer, so this polls with a deadline.
async fn recorded(demo: &ConsoleDemo, count: usize) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let list = api(demo, "/api/exchanges").await;
        if list.as_array().map(Vec::len) == Some(count) {
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "the ring never held {count}: {list}"
        );
        tokio::task::yield_now().await;
    }
}

fn ids(list: &Value) -> Vec<u64> {
    list.as_array()
        .expect("array")
        .iter()
        .map(|r| r["id"].as_u64().expect("id"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_trace_table_the_feed_streams_each_record_and_a_stalled_reader_slows_nobody() {
    let demo = ConsoleDemo::start(Some(ADMIN_TOKEN)).await.expect("demo");
    let addr = demo.proxy().admin_addr().expect("admin listener");
    let feed = |addr: SocketAddr| {
        Request::get("/api/feed")
            .header("host", addr.to_string())
            .header("authorization", bearer())
            .body(full(""))
            .expect("request")
    };
    let live = send_h1(addr, feed(addr)).await;
    assert_eq!(live.status(), StatusCode::OK);
    assert_eq!(live.headers()["content-type"], "text/event-stream");
    // Opened and never read: its queue and socket fill while the other goes on.
    let stalled = send_h1(addr, feed(addr)).await;
    let mut body = live.into_body();
    // The stream's first event says it is open: every record from here on is on it.
    let first = tokio::time::timeout(PATIENCE, body.frame())
        .await
        .expect("first event in time")
        .expect("a frame")
        .expect("no error");
    assert!(first.into_data().expect("data").starts_with(b"retry:"));
    demo.connector_sequence().await.expect("sequence");
    let proxy = demo.proxy().addr();
    for _ in 0..50 {
        let reply = common::get(proxy, "/osmc/api/accounts/1", &[("host", FIXED_HOST)]).await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    let mut text = String::new();
    let deadline = Instant::now() + PATIENCE;
    while text.matches("data: {").count() < 56 {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = tokio::time::timeout(left, body.frame())
            .await
            .expect("56 records in time")
            .expect("stream open")
            .expect("no error");
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
    }
    let events: Vec<Value> = text
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .map(|data| serde_json::from_str(data).expect("each event is a JSON record"))
        .collect();
    let mut seen: Vec<u64> = events.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    seen.sort_unstable();
    assert_eq!(seen, (1..=56).collect::<Vec<_>>(), "every record, once");
    assert!(
        events
            .iter()
            .any(|e| e["status"] == 401 && e["route"] == "as-is"),
        "the connector's refused calls are on the feed"
    );
    assert!(!text.contains(demo.password()), "a secret reached the feed");
    drop(stalled);
    demo.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_filters_explains_a_failure_compares_and_exports() {
    let demo = ConsoleDemo::start(Some(ADMIN_TOKEN)).await.expect("demo");
    demo.connector_sequence().await.expect("sequence");
    let all = recorded(&demo, 6).await;
    assert_eq!(ids(&all), [6, 5, 4, 3, 2, 1], "newest first");

    // Filters: status class, route, method, session, text over URL and headers.
    assert_eq!(ids(&api(&demo, "/api/exchanges?status=4xx").await), [3, 2]);
    assert_eq!(
        ids(&api(&demo, "/api/exchanges?route=osmc").await),
        [6, 5, 4]
    );
    assert_eq!(
        ids(&api(&demo, "/api/exchanges?method=patch&route=as-is").await),
        [2]
    );
    let session = all[0]["session"]
        .as_str()
        .expect("the fixed route's session");
    assert_eq!(
        ids(&api(&demo, &format!("/api/exchanges?session={session}")).await),
        [6, 5, 4]
    );
    assert_eq!(
        ids(&api(&demo, "/api/exchanges?q=token%20basic").await),
        [3, 2],
        "the target's `WWW-Authenticate: Token Basic` is searched"
    );

    // Detail: the finding of diagnose, with its evidence and the fix.
    let detail = api(&demo, "/api/exchanges/2").await;
    let finding = &detail["finding"];
    assert_eq!(finding["class"], "session_locked", "{detail}");
    assert!(finding["evidence"][0]
        .as_str()
        .unwrap()
        .contains("cookie JSESSIONID set by entry 1"));
    assert!(finding["fix"]
        .as_str()
        .unwrap()
        .contains("[routes.session]"));
    assert!(api(&demo, "/api/exchanges/5").await["finding"].is_null());

    // Compare: the fixed PATCH (good) with the connector's (bad): the cookie comes first.
    let comparison = api(&demo, "/api/compare?good=5&bad=2").await;
    let first = &comparison["differences"][0];
    assert_eq!(first["what"], "cookie", "{comparison}");
    assert_eq!(first["name"], "JSESSIONID");
    // And against an imported HAR (the good call exported from a browser, say).
    let har = api(&demo, "/api/export.har?ids=4,5").await.to_string();
    let body = serde_json::json!({ "good": { "har": har, "entry": 2 }, "bad": { "id": 2 } });
    let addr = demo.proxy().admin_addr().expect("admin");
    let reply = admin(
        addr,
        "POST",
        "/api/compare",
        &[
            ("authorization", &bearer()),
            ("content-type", "application/json"),
        ],
        &body.to_string(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let posted: Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(posted["good"]["method"], "PATCH");
    assert_eq!(posted["differences"][0]["name"], "JSESSIONID");

    // Export: the filtered exchanges as a valid HAR; one as curl with placeholders.
    let export = admin(
        addr,
        "GET",
        "/api/export.har?status=4xx",
        &[("authorization", &bearer())],
        "",
    )
    .await;
    let text = export.text();
    assert!(!text.contains(demo.password()));
    let har: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(har["log"]["entries"].as_array().unwrap().len(), 2);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("console.har");
    std::fs::write(&file, &text).unwrap();
    har_validator::assert_valid_har(&[file]);
    // Our own export reads back in diagnose, finding for finding.
    let report = provproxy::diagnose::diagnose(&text).expect("diagnose reads the export");
    assert_eq!(report.findings.len(), 2);
    let curl = admin(
        addr,
        "GET",
        "/api/exchanges/2/curl",
        &[("authorization", &bearer())],
        "",
    )
    .await
    .text();
    assert!(
        curl.starts_with("curl -X 'PATCH' 'http://127.0.0.1:"),
        "{curl}"
    );
    assert!(
        curl.contains("'authorization: Basic <secret: authorization>'"),
        "{curl}"
    );
    assert!(!curl.contains("[REDACTED]") && !curl.contains(demo.password()));
    demo.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_obeys_the_admin_rules() {
    let demo = ConsoleDemo::start(Some(ADMIN_TOKEN)).await.expect("demo");
    let addr = demo.proxy().admin_addr().expect("admin");
    // The page loads without the token (it has no data in it) to ask for it, strictly fenced.
    let page = admin(addr, "GET", "/ui/", &[], "").await;
    assert_eq!(page.status, StatusCode::OK);
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.starts_with("default-src 'self'") && !csp.contains("unsafe"));
    assert_eq!(page.headers["x-frame-options"], "DENY");
    assert_eq!(page.headers["x-content-type-options"], "nosniff");
    assert_eq!(page.headers["referrer-policy"], "no-referrer");
    // Data needs the token.
    for path in [
        "/api/exchanges",
        "/api/feed",
        "/api/export.har",
        "/api/exchanges/1",
    ] {
        let reply = admin(addr, "GET", path, &[], "").await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{path}");
    }
    let wrong = admin(
        addr,
        "POST",
        "/ui/login",
        &[("authorization", "Bearer not-the-token")],
        "",
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.headers.get("set-cookie").is_none());
    // Login turns the bearer token into an HttpOnly, SameSite=Strict cookie that then works.
    let login = admin(
        addr,
        "POST",
        "/ui/login",
        &[("authorization", &bearer())],
        "",
    )
    .await;
    assert_eq!(login.status, StatusCode::NO_CONTENT);
    let cookie = login.headers["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && cookie.contains("Path=/")
    );
    let pair = cookie.split(';').next().unwrap();
    let listed = admin(addr, "GET", "/api/exchanges", &[("cookie", pair)], "").await;
    assert_eq!(listed.status, StatusCode::OK);
    // Cross-site: a login or a session drop from another site is refused, token or not.
    let evil = [
        ("authorization", bearer()),
        ("origin", "http://evil.example".into()),
    ];
    let evil: Vec<(&str, &str)> = evil.iter().map(|(n, v)| (*n, v.as_str())).collect();
    for (method, path) in [
        ("POST", "/ui/login"),
        ("DELETE", "/sessions/osmc/x"),
        ("POST", "/api/compare"),
    ] {
        let reply = admin(addr, method, path, &evil, "").await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{method} {path}");
    }
    // A foreign Host (DNS rebinding) is misdirected, page and data alike.
    for path in ["/ui/", "/api/exchanges", "/api/feed"] {
        let reply = admin(
            addr,
            "GET",
            path,
            &[("host", "evil.example"), ("authorization", &bearer())],
            "",
        )
        .await;
        assert_eq!(reply.status, StatusCode::MISDIRECTED_REQUEST, "{path}");
    }
    demo.stop().await;
    // Without a token the admin listener (and so the console) stays on loopback.
    let toml = "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"0.0.0.0:0\"\n\
                [[routes]]\nname = \"r\"\nprefix = \"/\"\nupstream = \"http://127.0.0.1:9\"\n";
    let err = provproxy::config::load_str(toml, "c.toml", std::path::Path::new("."), &|_| None)
        .expect_err("a public admin listener without a token was accepted");
    assert!(err.to_string().contains("admin.token"), "{err}");
}

#[test]
fn diagnose_compare_prints_the_cookie_the_failing_call_did_not_send_first() {
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/sailpoint_session_locked.har"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_provproxy"))
        .args(["diagnose", "--compare", &format!("{fixture}#1"), fixture])
        .output()
        .expect("run provproxy");
    assert_eq!(out.status.code(), Some(1), "differences exit 1");
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text
        .lines()
        .find(|line| line.trim_start().starts_with("- "))
        .unwrap_or_default();
    assert!(
        first.contains("cookie JSESSIONID") && first.contains("did not send it"),
        "{text}"
    );
    let missing = Command::new(env!("CARGO_BIN_EXE_provproxy"))
        .args(["diagnose", "--compare", &format!("{fixture}#99"), fixture])
        .output()
        .expect("run provproxy");
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no entry 99"));
}

// ---- the page in a real browser ----

/// `chromedriver --port=0` on loopback; killed (and reaped) when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start() -> Driver {
        let mut child = Command::new("chromedriver")
            .args(["--port=0", "--allowed-ips=127.0.0.1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("chromedriver is required (Debian chromium-driver; scripts/test installs it): {e}")
            });
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(port) = line
                    .split("started successfully on port ")
                    .nth(1)
                    .and_then(|rest| rest.trim_end_matches('.').parse::<u16>().ok())
                {
                    let _ = tx.send(port);
                }
            }
        });
        let port = rx
            .recv_timeout(PATIENCE)
            .expect("chromedriver said which port it listens on");
        Driver { child, port }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn browser(driver: &Driver, profile: &std::path::Path) -> fantoccini::Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1440,900",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a Chromium session")
}

/// Evaluates `expression` in the page until it is truthy, and returns it; fails after PATIENCE.
async fn until(client: &fantoccini::Client, expression: &str) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let value = client
            .execute(&format!("return ({expression});"), vec![])
            .await
            .unwrap_or(Value::Null);
        let truthy = match &value {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Number(n) => n.as_f64() != Some(0.0),
            Value::String(s) => !s.is_empty(),
            _ => true,
        };
        if truthy {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "the page never showed: {expression}"
        );
        // Polling with a deadline: WebDriver has no event to wait on for a page condition.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn click(client: &fantoccini::Client, css: &str) {
    client
        .find(fantoccini::Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_headless_chromium_shows_live_rows_filters_explains_compares_and_exports() {
    let demo = ConsoleDemo::start(Some(ADMIN_TOKEN)).await.expect("demo");
    let driver = Driver::start();
    let profile = tempfile::tempdir().expect("profile dir");
    let client = browser(&driver, profile.path()).await;
    let result = drive(&client, &demo).await;
    let _ = client.close().await;
    drop(driver);
    demo.stop().await;
    if let Err(err) = result {
        panic!("{err}");
    }
}

async fn drive(client: &fantoccini::Client, demo: &ConsoleDemo) -> Result<(), String> {
    let url = demo.console_url();
    client.goto(&url).await.map_err(|e| e.to_string())?;
    // The token is asked for once and kept in an HttpOnly cookie.
    until(client, "!document.getElementById('login').hidden").await;
    client
        .find(fantoccini::Locator::Id("token"))
        .await
        .map_err(|e| e.to_string())?
        .send_keys(ADMIN_TOKEN)
        .await
        .map_err(|e| e.to_string())?;
    click(client, "#login-form button[type=submit]").await;
    until(client, "document.body.dataset.feed === 'open'").await;
    assert_eq!(
        until(
            client,
            "document.getElementById('rows').children.length === 0 ? 'empty' : 'rows'"
        )
        .await,
        "empty"
    );

    // Requests made after the page loaded appear as rows without a reload.
    demo.connector_sequence().await.map_err(|e| e.to_string())?;
    until(client, "document.querySelectorAll('#rows tr').length === 6").await;
    let badges = until(
        client,
        "document.querySelector('#rows tr[data-id=\"4\"] .badges').textContent",
    )
    .await;
    let badges = badges.as_str().unwrap_or_default();
    assert!(
        badges.contains("auth: basic") && badges.contains("session opened"),
        "{badges}"
    );
    let replayed = until(
        client,
        "document.querySelector('#rows tr[data-id=\"5\"] .badges').textContent",
    )
    .await;
    assert!(
        replayed
            .as_str()
            .unwrap_or_default()
            .contains("cookies: JSESSIONID"),
        "{replayed}"
    );

    // Filter to 4xx: the list and the page's URL follow.
    client
        .find(fantoccini::Locator::Id("f-status"))
        .await
        .map_err(|e| e.to_string())?
        .select_by_value("4xx")
        .await
        .map_err(|e| e.to_string())?;
    until(
        client,
        "document.querySelectorAll('#rows tr').length === 2 && \
         [...document.querySelectorAll('#rows tr')].every(r => r.classList.contains('status-4xx'))",
    )
    .await;
    until(client, "location.hash.includes('status=4xx')").await;

    // Open a failed exchange: the finding, its evidence and the fix.
    click(client, "#rows tr[data-id=\"2\"] td.path").await;
    let finding = until(
        client,
        "document.getElementById('finding') && document.getElementById('finding').textContent",
    )
    .await;
    let finding = finding.as_str().unwrap_or_default();
    assert!(finding.contains("session locked"), "{finding}");
    assert!(
        finding.contains("JSESSIONID") && finding.contains("Fix: [routes.session]"),
        "{finding}"
    );

    // Nothing secret anywhere in the page: not the stored password, not the connector's Basic
    // credential, not the admin token.
    let dom = client.source().await.map_err(|e| e.to_string())?;
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("svc_provision:{}", demo.password()),
    );
    for secret in [demo.password(), basic.as_str(), ADMIN_TOKEN] {
        assert!(!dom.contains(secret), "a secret is in the DOM");
    }
    let inputs = until(
        client,
        "[...document.querySelectorAll('input')].map(i => i.value).join('|') + '.'",
    )
    .await;
    assert!(!inputs.as_str().unwrap_or_default().contains(ADMIN_TOKEN));

    // Screenshot for the README: the list with the failure explained.
    client
        .goto(&format!("{url}#id=2"))
        .await
        .map_err(|e| e.to_string())?;
    until(
        client,
        "document.body.dataset.feed === 'open' && document.getElementById('finding')",
    )
    .await;
    let png = client.screenshot().await.map_err(|e| e.to_string())?;
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console.png");
    std::fs::write(&shot, &png).map_err(|e| e.to_string())?;
    if std::env::var_os("PROVPROXY_UPDATE_SCREENSHOT").is_some() {
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/console.png");
        std::fs::write(docs, &png).map_err(|e| e.to_string())?;
    }

    // Sessions: the fixed route's session with its timeline; dropped from the page.
    click(client, "#tab-sessions").await;
    let timeline = until(
        client,
        "document.querySelector('#sessions .timeline') && \
         document.querySelector('#sessions .timeline').children.length === 3 && \
         document.querySelector('#sessions div.session').textContent",
    )
    .await;
    assert!(
        timeline.as_str().unwrap_or_default().contains("JSESSIONID"),
        "{timeline}"
    );
    click(client, "#sessions div.session button").await;
    until(
        client,
        "document.getElementById('sessions').textContent.includes('No sessions open')",
    )
    .await;
    click(client, "#tab-exchanges").await;
    until(client, "document.querySelectorAll('#rows tr').length === 6").await;

    // Compare the fixed PATCH (5) with the connector's (2): the missing cookie is named first.
    click(client, "#rows tr[data-id=\"5\"] input[type=checkbox]").await;
    click(client, "#rows tr[data-id=\"2\"] input[type=checkbox]").await;
    click(client, "#compare-selected").await;
    let first = until(
        client,
        "document.querySelector('#differences tr.weight-missing_cookie') && \
         document.querySelector('#differences tr:nth-child(2)').textContent",
    )
    .await;
    assert!(
        first
            .as_str()
            .unwrap_or_default()
            .starts_with("cookie JSESSIONID"),
        "{first}"
    );

    // Export what the page shows as HAR, from the page's own export, and validate it.
    let har = client
        .execute_async(
            "const done = arguments[arguments.length - 1]; \
             window.provproxy.exportHar('status=4xx').then(done, e => done('error: ' + e));",
            vec![],
        )
        .await
        .map_err(|e| e.to_string())?;
    let har = har.as_str().unwrap_or_default().to_owned();
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let file = dir.path().join("export.har");
    std::fs::write(&file, &har).map_err(|e| e.to_string())?;
    har_validator::assert_valid_har(&[file]);
    let parsed: Value = serde_json::from_str(&har).map_err(|e| e.to_string())?;
    assert_eq!(parsed["log"]["entries"].as_array().map(Vec::len), Some(2));
    Ok(())
}
