//! Reload and readiness vocabulary shared by the listener (which swaps the plan) and the admin
//! API (which asks for a reload and reports readiness): what the process has loaded, whether it
//! is draining, how reloads went, and which per-route state a new plan may keep.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use crate::config::{AuthKind, Grant, Plan, RoutePlan};

/// What a successful reload did, as `POST /reload` answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    pub hash: String,
    /// Routes whose sessions, tokens and connections were kept.
    pub kept: Vec<String>,
    /// Routes whose credentials, session key or upstream changed: their sessions and tokens
    /// belonged to the old identity and were dropped.
    pub reset: Vec<String>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

impl Reloaded {
    pub fn to_json(&self) -> Value {
        json!({
            "result": "ok",
            "config_hash": self.hash,
            "routes": {
                "kept": self.kept,
                "reset": self.reset,
                "added": self.added,
                "removed": self.removed,
            },
        })
    }
}

/// Why a reload changed nothing. The message is the config error as `check` prints it
/// (`file:line:col: key: message`) or the start-up error of the new plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ReloadFailed {
    pub message: String,
}

impl ReloadFailed {
    pub fn to_json(&self) -> Value {
        json!({ "result": "failed", "error": "reload_failed", "detail": self.message })
    }
}

pub type ReloadResult = Result<Reloaded, ReloadFailed>;

/// A reload asked for by the admin API, answered by the listener's supervisor.
pub type ReloadRequest = oneshot::Sender<ReloadResult>;

/// The loaded config as `/readyz` shows it.
#[derive(Debug, Clone)]
struct Loaded {
    hash: String,
    at: SystemTime,
    routes: usize,
}

/// Process state that outlives any one plan. Cheap to share.
pub struct Status {
    draining: AtomicBool,
    loaded: Mutex<Loaded>,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    requests: mpsc::Sender<ReloadRequest>,
}

impl Status {
    /// The status, and where reload requests arrive.
    pub fn new(hash: String, routes: usize) -> (Arc<Status>, mpsc::Receiver<ReloadRequest>) {
        let (requests, arrivals) = mpsc::channel(4);
        let status = Status {
            draining: AtomicBool::new(false),
            loaded: Mutex::new(Loaded {
                hash,
                at: SystemTime::now(),
                routes,
            }),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            requests,
        };
        (Arc::new(status), arrivals)
    }

    /// From now on `/readyz` fails, so load balancers stop sending before connections close.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Records a reload's outcome (counted for `reloads_total{result}`).
    pub fn reloaded(&self, result: &ReloadResult, routes: usize) {
        match result {
            Ok(reloaded) => {
                self.reloads_ok.fetch_add(1, Ordering::Relaxed);
                *self.loaded.lock().unwrap_or_else(PoisonError::into_inner) = Loaded {
                    hash: reloaded.hash.clone(),
                    at: SystemTime::now(),
                    routes,
                };
            }
            Err(_) => {
                self.reloads_failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// `(succeeded, failed)` reloads since the start.
    pub fn reload_counts(&self) -> (u64, u64) {
        (
            self.reloads_ok.load(Ordering::Relaxed),
            self.reloads_failed.load(Ordering::Relaxed),
        )
    }

    /// Asks the supervisor to reload and waits for the outcome.
    pub async fn reload(&self) -> ReloadResult {
        let (answer, outcome) = oneshot::channel();
        let gone = || ReloadFailed {
            message: "the proxy is shutting down".into(),
        };
        self.requests.send(answer).await.map_err(|_| gone())?;
        outcome.await.map_err(|_| gone())?
    }

    /// Ready to serve: a plan is loaded (a generation exists only once every route's TLS and
    /// credentials were built), the state backend is reachable (the file backend always is:
    /// its files were read at load) and the process is not draining.
    pub fn readiness(&self) -> (bool, Value) {
        let draining = self.is_draining();
        let loaded = self
            .loaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let at = time::OffsetDateTime::from(loaded.at)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let ready = !draining;
        let body = json!({
            "ready": ready,
            "draining": draining,
            "config": { "hash": loaded.hash, "loaded_at": at, "routes": loaded.routes },
            "state": { "backend": "file", "reachable": true },
        });
        (ready, body)
    }
}

/// SHA-256 of the config file's text, as `/readyz` and `POST /reload` name the loaded config.
pub fn config_hash(text: &[u8]) -> String {
    let digest = Sha256::digest(text);
    let mut hex = String::with_capacity(7 + 64);
    hex.push_str("sha256:");
    for byte in digest {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

/// What a route's sessions and tokens belong to: the target (upstream URL), the session key
/// and state file, and the credentials, secret values included. Two plans' routes with the same
/// identity may share sessions and tokens; any difference means a different identity at the
/// target, whose sessions must not be reused. Only compared, never shown.
pub fn route_identity(route: &RoutePlan) -> [u8; 32] {
    let mut hash = Sha256::new();
    let mut part = |bytes: &[u8]| {
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(bytes);
    };
    part(route.upstream.url.as_str().as_bytes());
    // Debug of the plans shows every setting and each secret's source, never its value.
    part(format!("{:?}", route.auth.kind).as_bytes());
    if let Some(session) = &route.session {
        part(session.key.to_string().as_bytes());
        part(format!("{:?}", session.persist).as_bytes());
        part(format!("{:?}", session.login).as_bytes());
        if let Some(body) = session.login.as_ref().and_then(|login| login.body.as_ref()) {
            part(body.expose().as_bytes());
        }
        // The session's tokens were fetched by these requests, with these bodies.
        part(format!("{:?}", session.tokens).as_bytes());
        for body in session
            .tokens
            .iter()
            .filter_map(|token| token.fetch.body.as_ref())
        {
            part(body.expose().as_bytes());
        }
    }
    for secret in credentials(&route.auth.kind) {
        part(secret.as_bytes());
    }
    hash.finalize().into()
}

/// Whether a kept route may also keep its connection pool: everything the upstream client was
/// built from (TLS trust, pins, CA file, timeouts) is the same.
pub fn same_upstream(old: &RoutePlan, new: &RoutePlan) -> bool {
    format!("{:?}", old.upstream) == format!("{:?}", new.upstream)
}

fn credentials(kind: &AuthKind) -> Vec<&str> {
    match kind {
        AuthKind::None => Vec::new(),
        AuthKind::Basic { password, .. } => vec![password.expose()],
        AuthKind::Bearer { token } => vec![token.expose()],
        AuthKind::Header { value, .. } => vec![value.expose()],
        AuthKind::OAuth2(oauth) => {
            let mut secrets: Vec<&str> = oauth.client_secret.iter().map(|s| s.expose()).collect();
            if let Grant::Password { password, .. } = &oauth.grant {
                secrets.push(password.expose());
            }
            secrets
        }
    }
}

/// Sorts the routes of two plans into kept, reset, added and removed (names), by
/// [`route_identity`].
pub fn compare(old: &Plan, new: &Plan, hash: String) -> Reloaded {
    let mut reloaded = Reloaded {
        hash,
        kept: Vec::new(),
        reset: Vec::new(),
        added: Vec::new(),
        removed: Vec::new(),
    };
    for route in &new.routes {
        match old.routes.iter().find(|old| old.name == route.name) {
            Some(old) if route_identity(old) == route_identity(route) => {
                reloaded.kept.push(route.name.clone());
            }
            Some(_) => reloaded.reset.push(route.name.clone()),
            None => reloaded.added.push(route.name.clone()),
        }
    }
    for route in &old.routes {
        if !new.routes.iter().any(|new| new.name == route.name) {
            reloaded.removed.push(route.name.clone());
        }
    }
    reloaded
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(password: &str, upstream: &str, key: &str) -> Plan {
        let toml = format!(
            r#"[[routes]]
name = "osmc"
prefix = "/osmc/"
upstream = "{upstream}"
[routes.auth]
kind = "basic"
username = "svc"
password = {{ env = "PW" }}
[routes.session]
key = "{key}"
"#
        );
        let password = password.to_owned();
        let env = move |name: &str| (name == "PW").then(|| password.clone());
        crate::config::load_str(&toml, "x.toml", std::path::Path::new("."), &env)
            .expect("valid config")
    }

    #[test]
    fn a_route_with_the_same_target_key_and_credentials_is_kept() {
        let old = plan("one", "http://127.0.0.1:1", "route");
        let new = plan("one", "http://127.0.0.1:1", "route");
        assert_eq!(compare(&old, &new, String::new()).kept, ["osmc"]);
    }

    #[test]
    fn a_changed_session_token_or_its_fetch_body_resets_the_route() {
        let with_token = |from: &str, body: &str| {
            let toml = format!(
                "[[routes]]\nname = \"osmc\"\nprefix = \"/osmc/\"\nupstream = \"http://127.0.0.1:1\"\n\
                 [routes.session]\n[[routes.session.tokens]]\nname = \"session\"\n\
                 fetch = {{ method = \"POST\", path = \"/osmc/login\", body = {{ env = \"BODY\" }} }}\n\
                 from = \"{from}\"\nto = \"header:Authorization\"\n"
            );
            let body = body.to_owned();
            let env = move |name: &str| (name == "BODY").then(|| body.clone());
            crate::config::load_str(&toml, "x.toml", std::path::Path::new("."), &env)
                .expect("valid config")
        };
        let old = with_token("json:/sessionId", "one");
        assert_eq!(
            compare(&old, &with_token("json:/sessionId", "one"), String::new()).kept,
            ["osmc"]
        );
        for new in [
            with_token("json:/id", "one"),
            with_token("json:/sessionId", "two"),
        ] {
            assert_eq!(compare(&old, &new, String::new()).reset, ["osmc"]);
        }
    }

    #[test]
    fn a_changed_password_upstream_or_session_key_resets_the_route() {
        let old = plan("one", "http://127.0.0.1:1", "route");
        for new in [
            plan("two", "http://127.0.0.1:1", "route"),
            plan("one", "http://127.0.0.1:2", "route"),
            plan("one", "http://127.0.0.1:1", "client"),
        ] {
            assert_eq!(compare(&old, &new, String::new()).reset, ["osmc"]);
        }
    }

    #[test]
    fn added_and_removed_routes_are_named() {
        let old = plan("one", "http://127.0.0.1:1", "route");
        let mut new = old.clone();
        new.routes[0].name = "other".into();
        let reloaded = compare(&old, &new, String::new());
        assert_eq!(reloaded.added, ["other"]);
        assert_eq!(reloaded.removed, ["osmc"]);
    }

    #[test]
    fn a_failed_reload_is_counted_and_keeps_the_loaded_hash() {
        let (status, _requests) = Status::new("sha256:a".into(), 1);
        status.reloaded(
            &Err(ReloadFailed {
                message: "x.toml:1:1: bad".into(),
            }),
            2,
        );
        assert_eq!(status.reload_counts(), (0, 1));
        assert_eq!(status.readiness().1["config"]["hash"], "sha256:a");
        status.start_draining();
        assert!(!status.readiness().0, "draining is not ready");
    }
}
