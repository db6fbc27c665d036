//! Reload in place, through the real binary: SIGHUP and `POST /reload` swap the plan without a
//! restart, keep the target sessions of routes the change does not touch, drop those whose
//! credentials changed, leave a broken config without effect, and refuse no connection.

mod common;
#[path = "support/service.rs"]
mod service;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use http::{header, Request, Response, StatusCode};
use provproxy::body::{full, ProxyBody};
use serde_json::Value;
use tokio::sync::{mpsc, Notify};

use common::{get, Recorded, Upstream};
use service::Service;

/// A session-locked target: a request without its current cookie opens a session (counted);
/// one with the current cookie is served in it; one with an old cookie gets a 401.
#[derive(Clone, Default)]
struct Target {
    current: Arc<Mutex<Option<String>>>,
    opened: Arc<AtomicU32>,
    /// The `Authorization` header of the request that opened the latest session.
    opened_with: Arc<Mutex<Option<String>>>,
}

impl Target {
    async fn start() -> (Upstream, Target) {
        let target = Target::default();
        let responder = target.clone();
        let upstream = Upstream::start(move |request| responder.respond(request)).await;
        (upstream, target)
    }

    fn opened(&self) -> u32 {
        self.opened.load(Ordering::SeqCst)
    }

    fn respond(&self, request: &Recorded) -> Response<ProxyBody> {
        let sent = request
            .header("cookie")
            .and_then(|v| v.split(';').find_map(|p| p.trim().strip_prefix("SID=")))
            .map(str::to_owned);
        let mut current = self.current.lock().expect("target state");
        match sent {
            Some(id) if current.as_deref() == Some(id.as_str()) => {
                common::json(StatusCode::OK, r#"{"session":"same"}"#)
            }
            Some(_) => common::json(StatusCode::UNAUTHORIZED, r#"{"error":"session"}"#),
            None => {
                let n = self.opened.fetch_add(1, Ordering::SeqCst) + 1;
                let id = format!("s{n}");
                *current = Some(id.clone());
                *self.opened_with.lock().expect("target state") =
                    request.header("authorization").map(str::to_owned);
                Response::builder()
                    .status(StatusCode::OK)
                    .header(header::SET_COOKIE, format!("SID={id}; Path=/"))
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(full(r#"{"session":"new"}"#))
                    .expect("response")
            }
        }
    }
}

/// One route whose password comes from a file next to the config.
fn route(name: &str, upstream: &str) -> String {
    format!(
        r#"
[[routes]]
name = "{name}"
prefix = "/{name}/"
strip_prefix = true
upstream = "{upstream}"

[routes.auth]
kind = "basic"
username = "svc"
password = {{ file = "secrets/{name}" }}

[routes.session]
key = "route"
relogin_on = [401]
"#
    )
}

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("secrets")).expect("secrets dir");
        Setup { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn password(&self, route: &str, password: &str) {
        std::fs::write(self.path().join("secrets").join(route), password).expect("password");
    }

    /// Writes the config: the server and admin tables, then `routes`.
    fn config(&self, routes: &str) -> PathBuf {
        let path = self.path().join("provproxy.toml");
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_grace = \"10s\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n{routes}"
        );
        std::fs::write(&path, text).expect("config");
        path
    }
}

async fn admin(service: &Service, method: &str, path: &str) -> (StatusCode, Value) {
    let admin = service.admin.expect("admin listener");
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, admin.to_string())
        .body(full(""))
        .expect("request");
    let reply = common::request_h1(admin, request).await;
    let body = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    (reply.status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_added_and_sighup_serves_it_without_a_restart_in_the_same_process() {
    let (first, _) = Target::start().await;
    let (second, _) = Target::start().await;
    let setup = Setup::new();
    setup.password("a", "pa");
    setup.password("b", "pb");
    let config = setup.config(&route("a", &first.url()));
    let mut service = Service::start(&config);
    let pid = service.pid();
    assert_eq!(get(service.addr, "/b/x", &[]).await.status, 404);

    setup.config(&(route("a", &first.url()) + &route("b", &second.url())));
    let outcome = service.reload();

    assert!(outcome.contains("config reloaded"), "{outcome}");
    assert_eq!(get(service.addr, "/b/x", &[]).await.status, 200);
    assert_eq!(get(service.addr, "/a/x", &[]).await.status, 200);
    assert!(service.is_running());
    assert_eq!(service.pid(), pid);
    assert!(service.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_routes_target_session_survives_and_a_changed_password_gets_a_new_one() {
    let (kept_upstream, kept) = Target::start().await;
    let (reset_upstream, reset) = Target::start().await;
    let setup = Setup::new();
    setup.password("kept", "same-password");
    setup.password("reset", "old-password");
    let routes = route("kept", &kept_upstream.url()) + &route("reset", &reset_upstream.url());
    let config = setup.config(&routes);
    let mut service = Service::start(&config);
    for path in ["/kept/x", "/reset/x"] {
        assert_eq!(get(service.addr, path, &[]).await.status, 200);
    }
    assert_eq!((kept.opened(), reset.opened()), (1, 1));

    setup.password("reset", "new-password");
    // An unrelated change to the kept route (its challenge) does not touch its session.
    setup.config(&(routes.clone() + "\n"));
    let outcome = service.reload();
    assert!(outcome.contains("config reloaded"), "{outcome}");
    assert!(
        service.log.contains("route=reset") && service.log.contains("dropped"),
        "the log says which route lost its sessions:\n{}",
        service.log
    );

    let reply = get(service.addr, "/kept/x", &[]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(&reply.body[..], br#"{"session":"same"}"#);
    assert_eq!(kept.opened(), 1, "the unchanged route's session survived");

    assert_eq!(get(service.addr, "/reset/x", &[]).await.status, 200);
    assert_eq!(reset.opened(), 2, "the changed route logged in again");
    let basic = reset.opened_with.lock().expect("state").clone();
    assert_eq!(
        basic.as_deref(),
        Some("Basic c3ZjOm5ldy1wYXNzd29yZA=="),
        "with the new password"
    );
    assert!(service.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_config_changes_nothing_and_the_log_names_file_and_line() {
    let (upstream, target) = Target::start().await;
    let setup = Setup::new();
    setup.password("a", "pa");
    let good = route("a", &upstream.url());
    let config = setup.config(&good);
    let mut service = Service::start(&config);
    assert_eq!(get(service.addr, "/a/x", &[]).await.status, 200);

    // Line 11 of the file: server (3 lines), blank, admin (2 lines), blank, [[routes]] at 8.
    setup.config(&good.replace("strip_prefix = true", "strip_prefix = \"yes\""));
    let outcome = service.reload();

    assert!(outcome.contains("reload failed"), "{outcome}");
    let place = format!("{}:11:", config.display());
    assert!(
        outcome.contains(&place),
        "names file and line {place}: {outcome}"
    );
    assert!(outcome.contains("strip_prefix"), "{outcome}");
    let reply = get(service.addr, "/a/x", &[]).await;
    assert_eq!(reply.status, 200, "the old plan serves");
    assert_eq!(
        &reply.body[..],
        br#"{"session":"same"}"#,
        "in the same session"
    );
    assert_eq!(target.opened(), 1);
    assert!(service.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_reload_answers_400_json_for_a_bad_config_and_200_for_a_good_one() {
    let (upstream, _) = Target::start().await;
    let setup = Setup::new();
    setup.password("a", "pa");
    let config = setup.config(&route("a", &upstream.url()));
    let service = Service::start(&config);
    let (_, ready) = admin(&service, "GET", "/readyz").await;
    let first_hash = ready["config"]["hash"].as_str().expect("hash").to_owned();
    assert!(first_hash.starts_with("sha256:"), "{ready}");

    std::fs::write(&config, "[server]\nlisten = 80\n").expect("bad config");
    let (status, body) = admin(&service, "POST", "/reload").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["result"], "failed");
    let detail = body["detail"].as_str().expect("detail");
    assert!(
        detail.starts_with(&format!("{}:2:", config.display())) && detail.contains("listen"),
        "{detail}"
    );

    setup.password("b", "pb");
    setup.config(&(route("a", &upstream.url()) + &route("b", &upstream.url())));
    let (status, body) = admin(&service, "POST", "/reload").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], "ok");
    assert_eq!(body["routes"]["added"], serde_json::json!(["b"]));
    assert_eq!(body["routes"]["kept"], serde_json::json!(["a"]));

    let (status, ready) = admin(&service, "GET", "/readyz").await;
    assert_eq!(status, 200);
    assert_eq!(ready["config"]["hash"], body["config_hash"]);
    assert_ne!(ready["config"]["hash"], first_hash.as_str());
    let metrics = get(service.admin.expect("admin"), "/metrics", &[]).await;
    let metrics = String::from_utf8_lossy(&metrics.body);
    assert!(
        metrics.contains(r#"provproxy_reloads_total{result="ok"} 1"#)
            && metrics.contains(r#"provproxy_reloads_total{result="failed"} 1"#),
        "{metrics}"
    );
    assert!(service.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_reload_from_another_site_is_refused() {
    let (upstream, _) = Target::start().await;
    let setup = Setup::new();
    setup.password("a", "pa");
    let config = setup.config(&route("a", &upstream.url()));
    let service = Service::start(&config);
    let admin = service.admin.expect("admin");
    let request = Request::post("/reload")
        .header(header::HOST, admin.to_string())
        .header(header::ORIGIN, "https://evil.example")
        .body(full(""))
        .expect("request");
    assert_eq!(common::request_h1(admin, request).await.status, 403);
    assert!(!service.log.contains("config reloaded"));
    assert!(service.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_request_in_flight_across_a_reload_completes() {
    let release = Arc::new(Notify::new());
    let (arrived, mut arrivals) = mpsc::unbounded_channel();
    let slow = {
        let release = release.clone();
        common::serve(None, move |_request, _| {
            let release = release.clone();
            let arrived = arrived.clone();
            async move {
                let _ = arrived.send(());
                release.notified().await;
                common::json(StatusCode::OK, r#"{"slow":true}"#)
            }
        })
        .await
    };
    let setup = Setup::new();
    setup.password("slow", "p");
    let config = setup.config(&route("slow", &slow.url()));
    let mut service = Service::start(&config);
    let addr = service.addr;
    let in_flight = tokio::spawn(async move { get(addr, "/slow/x", &[]).await });
    arrivals
        .recv()
        .await
        .expect("the request reached the target");

    setup.password("slow", "changed");
    setup.config(&route("slow", &slow.url()));
    let outcome = service.reload();
    assert!(outcome.contains("config reloaded"), "{outcome}");
    release.notify_one();

    let reply = in_flight.await.expect("request task");
    assert_eq!(reply.status, 200);
    assert_eq!(&reply.body[..], br#"{"slow":true}"#);
    assert!(service.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_connection_is_refused_while_1000_requests_run_across_5_reloads() {
    let upstream = Upstream::start(common::ok).await;
    let setup = Setup::new();
    setup.password("a", "p");
    let routes = |n: usize| {
        route("a", &upstream.url()).replace(
            "[routes.session]\nkey = \"route\"\nrelogin_on = [401]\n",
            "",
        ) + &format!("\n# generation {n}\n")
    };
    let config = setup.config(&routes(0));
    let mut service = Service::start(&config);
    let addr = service.addr;
    let done = Arc::new(AtomicU32::new(0));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let done = done.clone();
            tokio::spawn(async move {
                let mut failures = Vec::new();
                for _ in 0..250 {
                    // A fresh connection each time: a closed or re-bound socket would refuse one.
                    let request = Request::get("/a/x")
                        .header(header::HOST, addr.to_string())
                        .body(full(""))
                        .expect("request");
                    match tokio::net::TcpStream::connect(addr).await {
                        Ok(_) => {}
                        Err(err) => failures.push(format!("connect: {err}")),
                    }
                    match common::try_request_h1(addr, request).await {
                        Ok(reply) if reply.status == 200 => {}
                        Ok(reply) => failures.push(format!("status {}", reply.status)),
                        Err(err) => failures.push(format!("request: {err}")),
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                }
                failures
            })
        })
        .collect();
    for n in 1..=5u32 {
        // Spread the reloads over the run.
        let at = n * 150;
        service::eventually("the requests progressed", || {
            done.load(Ordering::SeqCst) >= at
        });
        setup.config(&routes(n as usize));
        let outcome = service.reload();
        assert!(outcome.contains("config reloaded"), "{outcome}");
    }
    let mut failures = Vec::new();
    for worker in workers {
        failures.extend(worker.await.expect("worker"));
    }
    assert_eq!(done.load(Ordering::SeqCst), 1000);
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(service.stop().success());
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_listen_address_serves_on_the_new_socket_and_the_old_one_closes() {
    let upstream = Upstream::start(common::ok).await;
    let setup = Setup::new();
    setup.password("a", "p");
    let (old_port, new_port) = (free_port(), free_port());
    let config_at = |port: u16| {
        let path = setup.config(&route("a", &upstream.url()));
        let text = std::fs::read_to_string(&path).expect("config");
        let text = text.replacen(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\""),
            1,
        );
        std::fs::write(&path, text).expect("config");
        path
    };
    let config = config_at(old_port);
    let mut service = Service::start(&config);
    assert_eq!(service.addr.port(), old_port);

    config_at(new_port);
    let outcome = service.reload();
    assert!(outcome.contains("config reloaded"), "{outcome}");
    assert!(
        service.log.contains("proxy listener moved"),
        "{}",
        service.log
    );
    let new_addr = std::net::SocketAddr::from(([127, 0, 0, 1], new_port));
    assert_eq!(get(new_addr, "/a/x", &[]).await.status, 200);
    // The old socket drains (nothing in flight) and closes.
    service::eventually("the old listener is closed", || {
        std::net::TcpStream::connect(service.addr).is_err()
    });
    assert!(service.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_the_trace_files_locked_and_says_changed_queue_sizes_wait_for_a_restart() {
    let (upstream, _) = Target::start().await;
    let setup = Setup::new();
    setup.password("a", "pa");
    let traced = |capacity: u32| {
        format!(
            "{}\n[trace]\njsonl = \"{}\"\nchannel_capacity = {capacity}\n",
            route("a", &upstream.url()),
            setup.path().join("t.jsonl").display()
        )
    };
    let config = setup.config(&traced(100));
    let mut service = Service::start(&config);
    const WARNING: &str = "they take effect at the next start";
    // After each reload the trace file is still this instance's: another cannot take it.
    let still_locked = |service: &Service| match provproxy::lockfile::FileLock::acquire(
        &setup.path().join("t.jsonl"),
    ) {
        Err(provproxy::lockfile::LockError::Held { pid, .. }) => {
            assert_eq!(pid, Some(service.pid()))
        }
        other => panic!("the trace file's lock was let go: {other:?}"),
    };

    setup.config(&(traced(100) + "recent = 256\n"));
    let outcome = service.reload();
    assert!(outcome.contains("config reloaded"), "{outcome}");
    assert!(!service.log.contains(WARNING), "{}", service.log);
    still_locked(&service);

    setup.config(&traced(200));
    assert!(service.reload().contains("config reloaded"));
    assert!(service.log.contains(WARNING), "{}", service.log);
    still_locked(&service);
    assert!(service.stop().success());
}
