//! A target that hands out its session id in a login body.
//!
//! `POST /api/login` with `{"username": .., "password": ..}` answers `{"sessionId": ".."}`;
//! every other call must carry `Authorization: Session <id>` until the session expires, and
//! gets `401` without it. A connector that makes one request per operation never logs in.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use subtle::ConstantTimeEq;

use super::server::{json, serve, TargetServer};

pub const LOGIN: &str = "/api/login";

/// What the target saw, and handles to expire sessions and to refuse logins.
#[derive(Clone)]
pub struct LoginStats {
    target: Arc<Target>,
}

struct Target {
    username: String,
    password: String,
    ids: RandomState,
    next: AtomicU64,
    open: Mutex<HashSet<String>>,
    issued: Mutex<Vec<String>>,
    refuse_logins: AtomicBool,
    logins: AtomicU64,
    failed_logins: AtomicU64,
    refused: AtomicU64,
    calls: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl LoginStats {
    /// Logins answered with a session id.
    pub fn logins(&self) -> u64 {
        self.target.logins.load(Ordering::SeqCst)
    }

    pub fn failed_logins(&self) -> u64 {
        self.target.failed_logins.load(Ordering::SeqCst)
    }

    /// Calls refused with `401` for want of a live session.
    pub fn refused(&self) -> u64 {
        self.target.refused.load(Ordering::SeqCst)
    }

    /// Calls served within a session.
    pub fn calls(&self) -> u64 {
        self.target.calls.load(Ordering::SeqCst)
    }

    /// Every session id handed out so far.
    pub fn issued(&self) -> Vec<String> {
        lock(&self.target.issued).clone()
    }

    /// Ends every open session, as a timeout would.
    pub fn expire_sessions(&self) {
        lock(&self.target.open).clear();
    }

    /// Refuses every login with `401` (credentials changed on the target), or stops refusing.
    pub fn refuse_logins(&self, refuse: bool) {
        self.target.refuse_logins.store(refuse, Ordering::SeqCst);
    }
}

impl Target {
    fn handle(&self, request: Request<Bytes>) -> Response<Full<Bytes>> {
        if request.uri().path() == LOGIN && *request.method() == Method::POST {
            return self.login(request.body());
        }
        let presented = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Session "))
            .map(str::trim);
        if !presented.is_some_and(|id| lock(&self.open).contains(id)) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return json(
                StatusCode::UNAUTHORIZED,
                r#"{"error":"session expired or missing; log in at /api/login"}"#,
            );
        }
        self.calls.fetch_add(1, Ordering::SeqCst);
        let received = request.body().len();
        let status = if *request.method() == Method::POST {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        json(
            status,
            format!(
                r#"{{"method":"{}","received":{received}}}"#,
                request.method()
            ),
        )
    }

    fn login(&self, body: &[u8]) -> Response<Full<Bytes>> {
        let credentials: Option<(String, String)> =
            serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|value| {
                    Some((
                        value.get("username")?.as_str()?.to_owned(),
                        value.get("password")?.as_str()?.to_owned(),
                    ))
                });
        let valid = credentials.is_some_and(|(username, password)| {
            username == self.username
                && bool::from(password.as_bytes().ct_eq(self.password.as_bytes()))
        });
        if !valid || self.refuse_logins.load(Ordering::SeqCst) {
            self.failed_logins.fetch_add(1, Ordering::SeqCst);
            return json(
                StatusCode::UNAUTHORIZED,
                r#"{"error":"invalid credentials"}"#,
            );
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let id = format!(
            "{:016x}{:016x}",
            self.ids.hash_one((n, 0u8)),
            self.ids.hash_one((n, 1u8))
        );
        lock(&self.open).insert(id.clone());
        lock(&self.issued).push(id.clone());
        self.logins.fetch_add(1, Ordering::SeqCst);
        json(
            StatusCode::OK,
            format!(r#"{{"sessionId":"{id}","expiresIn":900}}"#),
        )
    }
}

/// Starts the target on `127.0.0.1:0` for the user `username` with `password`.
pub async fn spawn(username: &str, password: &str) -> std::io::Result<(TargetServer, LoginStats)> {
    let target = Arc::new(Target {
        username: username.to_owned(),
        password: password.to_owned(),
        ids: RandomState::new(),
        next: AtomicU64::new(1),
        open: Mutex::new(HashSet::new()),
        issued: Mutex::new(Vec::new()),
        refuse_logins: AtomicBool::new(false),
        logins: AtomicU64::new(0),
        failed_logins: AtomicU64::new(0),
        refused: AtomicU64::new(0),
        calls: AtomicU64::new(0),
    });
    let handler = target.clone();
    let server = serve(move |request| {
        let response = handler.handle(request);
        async move { response }
    })
    .await?;
    Ok((server, LoginStats { target }))
}
