//! A CSRF-token target like SAP Gateway (OData) and many on-premise appliances.
//!
//! Every call needs valid Basic credentials. A call without a known session cookie opens a
//! session (`SAP_SESSIONID`). `GET` with `X-CSRF-Token: Fetch` answers the session's token in
//! `X-CSRF-Token`; the token is bound to that session. Every modifying call (`POST`, `PUT`,
//! `PATCH`, `DELETE`) must carry both the session cookie and its token, or it gets `403` with
//! `X-CSRF-Token: Required` — which is all a connector that sends one request per operation
//! ever sees.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use base64::Engine;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use subtle::ConstantTimeEq;

use super::server::{json, serve, TargetServer};

/// The service root the token is fetched from.
pub const SERVICE: &str = "/sap/opu/odata/sap/API_USER/";
const SESSION_COOKIE: &str = "SAP_SESSIONID";
const CSRF: &str = "x-csrf-token";

/// One request as the target saw it.
#[derive(Debug, Clone)]
pub struct CsrfSeen {
    pub method: Method,
    pub path: String,
    pub body: Bytes,
    pub status: StatusCode,
}

/// What the target saw, and handles to invalidate tokens and to make fetches fail.
#[derive(Clone)]
pub struct CsrfStats {
    target: Arc<Target>,
}

struct Target {
    expected_basic: Vec<u8>,
    ids: RandomState,
    next: AtomicU64,
    /// Session id → its token, once fetched.
    sessions: Mutex<HashMap<String, Option<String>>>,
    /// Every token handed out, so a test can look for them where they must not be.
    issued: Mutex<Vec<String>>,
    seen: Mutex<Vec<CsrfSeen>>,
    fail_fetches: Mutex<Option<StatusCode>>,
    /// While true, token fetches wait before they are answered.
    hold: tokio::sync::watch::Sender<bool>,
    /// Hand out a new token with every successful modifying call (the old one stops working).
    rotate: std::sync::atomic::AtomicBool,
    fetches: AtomicU64,
    sessions_opened: AtomicU64,
    required: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl CsrfStats {
    /// Token fetches answered with a token.
    pub fn fetches(&self) -> u64 {
        self.target.fetches.load(Ordering::SeqCst)
    }

    pub fn sessions_opened(&self) -> u64 {
        self.target.sessions_opened.load(Ordering::SeqCst)
    }

    /// Modifying calls refused with `403` and `X-CSRF-Token: Required`.
    pub fn required(&self) -> u64 {
        self.target.required.load(Ordering::SeqCst)
    }

    /// Every request so far, in arrival order.
    pub fn seen(&self) -> Vec<CsrfSeen> {
        lock(&self.target.seen).clone()
    }

    /// Every token handed out so far.
    pub fn issued(&self) -> Vec<String> {
        lock(&self.target.issued).clone()
    }

    /// Forgets every session's token, as the target does when a token times out: the next
    /// modifying call with the old one gets `403 Required`; the next fetch hands out a new one.
    pub fn invalidate_tokens(&self) {
        for token in lock(&self.target.sessions).values_mut() {
            *token = None;
        }
    }

    /// Holds every token fetch unanswered until called again with `false`, so that a test can
    /// have many requests arrive while a fetch is under way.
    pub fn hold_fetches(&self, hold: bool) {
        self.target.hold.send_replace(hold);
    }

    /// Makes every successful modifying call answer a new token in `X-CSRF-Token`, and the
    /// old one stop working, as targets that rotate the token per call do.
    pub fn rotate_tokens(&self, rotate: bool) {
        self.target.rotate.store(rotate, Ordering::SeqCst);
    }

    /// Makes every token fetch answer `status` (`None`: back to normal).
    pub fn fail_fetches(&self, status: Option<StatusCode>) {
        *lock(&self.target.fail_fetches) = status;
    }
}

impl Target {
    fn basic_ok(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get(AUTHORIZATION).map(HeaderValue::as_bytes) else {
            return false;
        };
        value.len() > 6
            && value[..6].eq_ignore_ascii_case(b"Basic ")
            && bool::from(value[6..].trim_ascii().ct_eq(&self.expected_basic[6..]))
    }

    fn new_id(&self, label: u8) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!(
            "{:016X}{:016X}",
            self.ids.hash_one((n, label, 0u8)),
            self.ids.hash_one((n, label, 1u8))
        )
    }

    /// The session the request presents, or a new one (and its `Set-Cookie`).
    fn session(&self, headers: &HeaderMap) -> (String, Option<String>) {
        let presented = headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == SESSION_COOKIE)
            .map(|(_, value)| value.to_owned());
        let mut sessions = lock(&self.sessions);
        if let Some(id) = presented.filter(|id| sessions.contains_key(id)) {
            return (id, None);
        }
        let id = self.new_id(0);
        sessions.insert(id.clone(), None);
        self.sessions_opened.fetch_add(1, Ordering::SeqCst);
        let cookie = id_cookie(&id);
        (id, Some(cookie))
    }

    fn handle(&self, request: Request<Bytes>) -> Response<Full<Bytes>> {
        let response = self.answer(&request);
        lock(&self.seen).push(CsrfSeen {
            method: request.method().clone(),
            path: request.uri().path().to_owned(),
            body: request.body().clone(),
            status: response.status(),
        });
        response
    }

    fn answer(&self, request: &Request<Bytes>) -> Response<Full<Bytes>> {
        let headers = request.headers();
        if !self.basic_ok(headers) {
            let mut response = json(
                StatusCode::UNAUTHORIZED,
                r#"{"error":{"code":"/IWFND/CM_CONSUMER/101","message":"Logon failed"}}"#,
            );
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Basic realm="SAP NetWeaver Application Server""#),
            );
            return response;
        }
        let (session, set_cookie) = self.session(headers);
        let fetch = headers
            .get(CSRF)
            .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"fetch"));
        let modifying = matches!(
            *request.method(),
            Method::POST | Method::PUT | Method::PATCH | Method::DELETE
        );
        let mut response = if fetch && *request.method() == Method::GET {
            self.fetch(&session)
        } else if modifying && !self.token_ok(&session, headers) {
            self.required.fetch_add(1, Ordering::SeqCst);
            let mut response = Response::new(Full::new(Bytes::from_static(
                b"CSRF token validation failed",
            )));
            *response.status_mut() = StatusCode::FORBIDDEN;
            response
                .headers_mut()
                .insert(CSRF, HeaderValue::from_static("Required"));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            response
        } else if modifying && self.rotate.load(Ordering::SeqCst) {
            let mut response = self.operation(request);
            let token = self.new_token(&session);
            if let Ok(value) = HeaderValue::try_from(token) {
                response.headers_mut().insert(CSRF, value);
            }
            response
        } else {
            self.operation(request)
        };
        if let Some(cookie) = set_cookie.and_then(|c| HeaderValue::try_from(c).ok()) {
            response.headers_mut().append(SET_COOKIE, cookie);
        }
        response
    }

    fn fetch(&self, session: &str) -> Response<Full<Bytes>> {
        if let Some(status) = *lock(&self.fail_fetches) {
            return json(
                status,
                r#"{"error":{"message":"token service unavailable"}}"#,
            );
        }
        let current = lock(&self.sessions).get(session).cloned().flatten();
        let token = current.unwrap_or_else(|| self.new_token(session));
        self.fetches.fetch_add(1, Ordering::SeqCst);
        let mut response = json(StatusCode::OK, r#"{"d":{"EntitySets":["Users"]}}"#);
        if let Ok(value) = HeaderValue::try_from(token) {
            response.headers_mut().insert(CSRF, value);
        }
        response
    }

    /// A new token for `session`, in place of any earlier one.
    fn new_token(&self, session: &str) -> String {
        let token = base64::engine::general_purpose::STANDARD.encode(self.new_id(1));
        lock(&self.issued).push(token.clone());
        lock(&self.sessions).insert(session.to_owned(), Some(token.clone()));
        token
    }

    fn token_ok(&self, session: &str, headers: &HeaderMap) -> bool {
        let Some(sent) = headers.get(CSRF) else {
            return false;
        };
        lock(&self.sessions)
            .get(session)
            .and_then(Option::as_ref)
            .is_some_and(|token| bool::from(sent.as_bytes().ct_eq(token.as_bytes())))
    }

    fn operation(&self, request: &Request<Bytes>) -> Response<Full<Bytes>> {
        let received = request.body().len();
        match *request.method() {
            Method::POST => {
                let id = self.next.fetch_add(1, Ordering::Relaxed);
                json(
                    StatusCode::CREATED,
                    format!(r#"{{"d":{{"UserID":"U{id}","received":{received}}}}}"#),
                )
            }
            Method::DELETE => json(StatusCode::NO_CONTENT, Bytes::new()),
            Method::GET => json(StatusCode::OK, r#"{"d":{"results":[]}}"#),
            _ => json(
                StatusCode::OK,
                format!(r#"{{"d":{{"received":{received}}}}}"#),
            ),
        }
    }
}

fn id_cookie(id: &str) -> String {
    format!("{SESSION_COOKIE}={id}; Path=/; HttpOnly")
}

/// Starts the target on `127.0.0.1:0` for the user `username` with `password`.
pub async fn spawn(username: &str, password: &str) -> std::io::Result<(TargetServer, CsrfStats)> {
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
    );
    let target = Arc::new(Target {
        expected_basic: basic.into_bytes(),
        ids: RandomState::new(),
        next: AtomicU64::new(1),
        sessions: Mutex::new(HashMap::new()),
        issued: Mutex::new(Vec::new()),
        seen: Mutex::new(Vec::new()),
        fail_fetches: Mutex::new(None),
        hold: tokio::sync::watch::Sender::new(false),
        rotate: std::sync::atomic::AtomicBool::new(false),
        fetches: AtomicU64::new(0),
        sessions_opened: AtomicU64::new(0),
        required: AtomicU64::new(0),
    });
    let handler = target.clone();
    let server = serve(move |request: Request<Bytes>| {
        let handler = handler.clone();
        async move {
            let fetch = request
                .headers()
                .get(CSRF)
                .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"fetch"));
            if fetch {
                let mut held = handler.hold.subscribe();
                // The sender lives as long as the target: this only ends when released.
                let _ = held.wait_for(|held| !held).await;
            }
            handler.handle(request)
        }
    })
    .await?;
    Ok((server, CsrfStats { target }))
}
