//! Helpers for the through-the-proxy session and OAuth tests: the proxy started from TOML text
//! (with start options), a cookie-session target that records what reached it, the admin
//! endpoints, curl, and the real binary.

// Each test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

#[path = "binary.rs"]
mod binary;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use http::header::{COOKIE, SET_COOKIE, WWW_AUTHENTICATE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use provproxy::demo::client::{CookielessClient, Reply};
use provproxy::demo::server::{json, serve, TargetServer};
use provproxy::server::{Running, StartOptions, StartupError};

// Not every test binary that compiles this module uses both.
#[allow(unused_imports)]
pub use binary::{Process as Binary, PATIENCE};

/// The header that names the tenant (the session key) on [`SessionTarget`].
pub const TENANT: &str = "x-tenant";

/// The session cookie [`SessionTarget`] issues.
pub const SID: &str = "SID";

/// The body of [`SessionTarget`]'s refusal of a session it ended.
pub const EXPIRED_BODY: &str =
    r#"{"code":401,"description":"Session expired","reasonPhrase":"Unauthorized"}"#;

/// Loads config text (paths relative to `base`) and starts the proxy; `{ env = ".." }` is
/// resolved from `secrets`.
pub async fn try_start(
    toml: &str,
    base: &Path,
    secrets: &[(&str, &str)],
    options: StartOptions,
) -> Result<Running, StartupError> {
    let env = |name: &str| {
        secrets
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| (*value).to_owned())
    };
    let plan = provproxy::config::load_str(toml, "test.toml", base, &env)
        .unwrap_or_else(|err| panic!("test config is invalid: {err}\n{toml}"));
    provproxy::server::start_with(plan, options).await
}

pub async fn start(toml: &str, secrets: &[(&str, &str)]) -> Running {
    try_start(toml, Path::new("."), secrets, StartOptions::default())
        .await
        .expect("proxy starts")
}

pub fn client() -> CookielessClient {
    CookielessClient::default()
}

pub async fn send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Reply {
    client()
        .send(method.clone(), url, headers, body)
        .await
        .unwrap_or_else(|err| panic!("{method} {url}: {err}"))
}

pub async fn get(url: &str, headers: &[(&str, &str)]) -> Reply {
    send(Method::GET, url, headers, Bytes::new()).await
}

pub fn body_json(reply: &Reply) -> serde_json::Value {
    serde_json::from_slice(&reply.body)
        .unwrap_or_else(|err| panic!("not JSON ({err}): {}", reply.text()))
}

/// `GET` on the admin listener; panics unless it answers 200.
pub async fn admin_get(proxy: &Running, path: &str) -> Reply {
    let admin = proxy.admin_addr().expect("an [admin] listener");
    let reply = get(&format!("http://{admin}{path}"), &[]).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "admin {path}: {}",
        reply.text()
    );
    reply
}

/// The value of an un-labelled counter or gauge sample in OpenMetrics text.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter_map(|line| line.split_once(' '))
        .find(|(sample, _)| *sample == name)
        .and_then(|(_, value)| value.trim().parse().ok())
}

/// One request as [`SessionTarget`] saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub tenant: String,
    pub method: Method,
    pub path: String,
    /// The whole `Cookie` header, as it arrived.
    pub cookie: Option<String>,
    pub body: Bytes,
    pub status: StatusCode,
}

impl Seen {
    /// The session id it presented, if any.
    pub fn sid(&self) -> Option<&str> {
        self.cookie.as_deref().and_then(sid_of)
    }
}

fn sid_of(cookie: &str) -> Option<&str> {
    cookie
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SID)
        .map(|(_, value)| value)
}

/// A target that keeps one cookie session per tenant (the `X-Tenant` header, `-` when absent)
/// and records every request. A request without a valid session cookie opens a new session
/// (`Set-Cookie: SID=<tenant>.<n>`, so a cookie names the tenant it belongs to); a request with
/// an id the target ended (see [`SessionTarget::expire`]) is refused with 401, as targets that
/// time sessions out do. Everything else gets 200 with a JSON echo.
#[derive(Clone)]
pub struct SessionTarget {
    shared: Arc<TargetState>,
}

#[derive(Default)]
struct TargetState {
    open: Mutex<HashMap<String, String>>,
    ended: Mutex<HashSet<String>>,
    seen: Mutex<Vec<Seen>>,
    next: AtomicU64,
    opened: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SessionTarget {
    pub async fn spawn() -> (TargetServer, SessionTarget) {
        let target = SessionTarget {
            shared: Arc::default(),
        };
        let handle = target.clone();
        let server = serve(move |request| {
            let response = handle.handle(request);
            async move { response }
        })
        .await
        .expect("start the session target");
        (server, target)
    }

    pub fn sessions_opened(&self) -> u64 {
        self.shared.opened.load(Ordering::SeqCst)
    }

    /// Every request so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        lock(&self.shared.seen).clone()
    }

    /// Ends the tenant's open session; the next call presenting its id gets 401.
    pub fn expire(&self, tenant: &str) -> bool {
        match lock(&self.shared.open).remove(tenant) {
            Some(id) => lock(&self.shared.ended).insert(id),
            None => false,
        }
    }

    fn handle(&self, request: Request<Bytes>) -> Response<Full<Bytes>> {
        let tenant = request
            .headers()
            .get(TENANT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned();
        let cookie = request
            .headers()
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>();
        let cookie = (!cookie.is_empty()).then(|| cookie.join("; "));
        let presented = cookie.as_deref().and_then(sid_of);
        let (status, new_id) = {
            let mut open = lock(&self.shared.open);
            let current = open.get(&tenant);
            if presented.is_some() && presented == current.map(String::as_str) {
                (StatusCode::OK, None)
            } else if presented.is_some_and(|id| lock(&self.shared.ended).contains(id)) {
                (StatusCode::UNAUTHORIZED, None)
            } else {
                let n = self.shared.next.fetch_add(1, Ordering::SeqCst);
                let id = format!("{tenant}.{n}");
                open.insert(tenant.clone(), id.clone());
                self.shared.opened.fetch_add(1, Ordering::SeqCst);
                (StatusCode::OK, Some(id))
            }
        };
        lock(&self.shared.seen).push(Seen {
            tenant: tenant.clone(),
            method: request.method().clone(),
            path: request.uri().path().to_owned(),
            cookie,
            body: request.body().clone(),
            status,
        });
        if status == StatusCode::UNAUTHORIZED {
            let mut response = json(status, EXPIRED_BODY);
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Token Basic realm="osmc""#),
            );
            return response;
        }
        let body = serde_json::json!({
            "tenant": tenant,
            "method": request.method().as_str(),
            "received": request.body().len(),
        });
        let mut response = json(status, body.to_string());
        if let Some(id) = new_id {
            if let Ok(value) = HeaderValue::try_from(format!("{SID}={id}; Path=/; HttpOnly")) {
                response.headers_mut().append(SET_COOKIE, value);
            }
        }
        response
    }
}

/// What `curl` printed and how it exited.
pub struct CurlOutput {
    pub status: u16,
    pub body: String,
}

/// Runs the real `curl` binary with no cookie options, like a connector that keeps no jar.
/// Panics with a clear message when curl is not installed.
pub async fn curl(method: &str, url: &str, json_body: Option<&str>) -> CurlOutput {
    let mut command = Command::new("curl");
    command.args(["-sS", "-X", method, "-w", "\n%{http_code}", url]);
    if let Some(body) = json_body {
        command.args([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
        ]);
    }
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("curl task")
        .unwrap_or_else(|err| {
            panic!("cannot run curl ({err}): install it (scripts/test does) to run this test")
        });
    assert!(
        output.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = stdout.rsplit_once('\n').expect("curl printed the status");
    CurlOutput {
        status: status.trim().parse().expect("a status code"),
        body: body.to_owned(),
    }
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write file");
    path
}
