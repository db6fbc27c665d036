//! The session-locked target of the SailPoint field case.
//!
//! Every call needs valid Basic credentials. The first authenticated call without a session
//! opens one (`JSESSIONID`, a session cookie), but only if the user has no session open; while
//! one is open, a call with valid Basic but without that session's cookie is refused with the
//! target's peculiar 401 (`WWW-Authenticate: Token Basic realm="osmc"`). This is what breaks a
//! connector that forgets cookies between *Create Account*, *Add Entitlement* and *Get Object*.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http::header::{AUTHORIZATION, COOKIE, SET_COOKIE, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::{json, Map, Value};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;

use super::server::{json, serve_on, TargetServer};

const SESSION_COOKIE: &str = "JSESSIONID";
const ACCOUNTS: &str = "/osmc/api/accounts";
const LOCKED_BODY: &str = r#"{"code":401,"description":"The request requires user authentication","reasonPhrase":"Unauthorized"}"#;

/// How the target behaves.
#[derive(Debug, Clone)]
pub struct SessionLockedOptions {
    pub username: String,
    pub password: String,
    /// A session ends after this long without a call (the field target: 15 minutes).
    pub session_lifetime: Duration,
    /// Issue a new session id on every N-th call within a session (ServiceNow-style rotation).
    pub rotate_every: Option<u64>,
}

impl SessionLockedOptions {
    pub fn new(username: &str, password: &str) -> SessionLockedOptions {
        SessionLockedOptions {
            username: username.to_owned(),
            password: password.to_owned(),
            session_lifetime: Duration::from_secs(15 * 60),
            rotate_every: None,
        }
    }
}

/// What the target saw, and a handle to end its open session.
#[derive(Clone)]
pub struct SessionLockedStats {
    target: Arc<Target>,
}

impl SessionLockedStats {
    pub fn requests(&self) -> u64 {
        self.target.requests.load(Ordering::Relaxed)
    }

    pub fn sessions_opened(&self) -> u64 {
        self.target.sessions_opened.load(Ordering::Relaxed)
    }

    /// All 401s: bad credentials and calls refused for lack of the session cookie.
    pub fn unauthorized(&self) -> u64 {
        self.target.unauthorized.load(Ordering::Relaxed)
    }

    /// Ends the open session as a timeout would; true when one was open. The next call opens a
    /// new session, whether or not it carries the old (now unknown) id.
    pub fn expire_session(&self) -> bool {
        self.target.session().take().is_some()
    }

    pub fn session_open(&self) -> bool {
        let now = Instant::now();
        self.target
            .session()
            .as_ref()
            .is_some_and(|s| s.expires > now)
    }
}

struct OpenSession {
    id: String,
    expires: Instant,
    calls: u64,
}

struct Target {
    options: SessionLockedOptions,
    /// `Basic base64(user:pass)` as the header carries it, computed once.
    expected_basic: Vec<u8>,
    session: Mutex<Option<OpenSession>>,
    accounts: Mutex<HashMap<u64, Map<String, Value>>>,
    next_account: AtomicU64,
    next_session: AtomicU64,
    ids: RandomState,
    requests: AtomicU64,
    sessions_opened: AtomicU64,
    unauthorized: AtomicU64,
}

impl Target {
    fn session(&self) -> MutexGuard<'_, Option<OpenSession>> {
        self.session.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn accounts(&self) -> MutexGuard<'_, HashMap<u64, Map<String, Value>>> {
        self.accounts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn basic_ok(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get(AUTHORIZATION) else {
            return false;
        };
        let value = value.as_bytes();
        let Some(scheme) = value.get(..6) else {
            return false;
        };
        scheme.eq_ignore_ascii_case(b"Basic ")
            && bool::from(value[6..].trim_ascii().ct_eq(&self.expected_basic[6..]))
    }

    fn new_session_id(&self) -> String {
        let n = self.next_session.fetch_add(1, Ordering::Relaxed);
        format!(
            "{:016X}{:016X}",
            self.ids.hash_one((n, 0u8)),
            self.ids.hash_one((n, 1u8))
        )
    }

    /// Decides whether the call may proceed within the session, and which `Set-Cookie` (if any)
    /// goes back. `Err` is the locked-session refusal.
    fn admit(&self, headers: &HeaderMap) -> Result<Option<String>, ()> {
        let now = Instant::now();
        let lifetime = self.options.session_lifetime;
        let mut open = self.session();
        if open.as_ref().is_some_and(|s| s.expires <= now) {
            *open = None;
        }
        match open.as_mut() {
            Some(session) => {
                if !presented_ids(headers).any(|id| id == session.id) {
                    return Err(());
                }
                session.expires = now + lifetime;
                session.calls += 1;
                let rotate = self
                    .options
                    .rotate_every
                    .is_some_and(|n| n > 0 && session.calls % n == 0);
                if rotate {
                    session.id = self.new_session_id();
                    Ok(Some(session.id.clone()))
                } else {
                    Ok(None)
                }
            }
            None => {
                let id = self.new_session_id();
                *open = Some(OpenSession {
                    id: id.clone(),
                    expires: now + lifetime,
                    calls: 1,
                });
                self.sessions_opened.fetch_add(1, Ordering::Relaxed);
                Ok(Some(id))
            }
        }
    }

    fn handle(&self, request: Request<Bytes>) -> Response<Full<Bytes>> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if !self.basic_ok(request.headers()) {
            self.unauthorized.fetch_add(1, Ordering::Relaxed);
            let mut response = json(
                StatusCode::UNAUTHORIZED,
                r#"{"code":401,"description":"Invalid credentials","reasonPhrase":"Unauthorized"}"#,
            );
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Basic realm="osmc""#),
            );
            return response;
        }
        let new_id = match self.admit(request.headers()) {
            Ok(new_id) => new_id,
            Err(()) => {
                self.unauthorized.fetch_add(1, Ordering::Relaxed);
                let mut response = json(StatusCode::UNAUTHORIZED, LOCKED_BODY);
                response.headers_mut().insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Token Basic realm="osmc""#),
                );
                return response;
            }
        };
        let mut response = self.route(request.method(), request.uri().path(), request.body());
        if let Some(id) = new_id {
            // The id is hex, so the header value is always valid.
            if let Ok(value) =
                HeaderValue::try_from(format!("{SESSION_COOKIE}={id}; Path=/; HttpOnly"))
            {
                response.headers_mut().append(SET_COOKIE, value);
            }
        }
        response
    }

    fn route(&self, method: &Method, path: &str, body: &Bytes) -> Response<Full<Bytes>> {
        if path == ACCOUNTS {
            return match *method {
                Method::POST => self.create(body),
                _ => error(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed"),
            };
        }
        let Some(id) = path
            .strip_prefix(ACCOUNTS)
            .and_then(|rest| rest.strip_prefix('/'))
            .and_then(|id| id.parse::<u64>().ok())
        else {
            return error(StatusCode::NOT_FOUND, "Not Found");
        };
        match *method {
            Method::GET => match self.accounts().get(&id) {
                Some(account) => json(StatusCode::OK, Value::Object(account.clone()).to_string()),
                None => error(StatusCode::NOT_FOUND, "Not Found"),
            },
            Method::PATCH => self.add_entitlement(id, body),
            _ => error(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed"),
        }
    }

    fn create(&self, body: &Bytes) -> Response<Full<Bytes>> {
        let Ok(Value::Object(mut account)) = serde_json::from_slice::<Value>(body) else {
            return error(StatusCode::BAD_REQUEST, "Bad Request");
        };
        let id = self.next_account.fetch_add(1, Ordering::Relaxed);
        account.insert("id".into(), json!(id.to_string()));
        self.accounts().insert(id, account.clone());
        json(StatusCode::CREATED, Value::Object(account).to_string())
    }

    fn add_entitlement(&self, id: u64, body: &Bytes) -> Response<Full<Bytes>> {
        let Ok(Value::Object(changes)) = serde_json::from_slice::<Value>(body) else {
            return error(StatusCode::BAD_REQUEST, "Bad Request");
        };
        let mut accounts = self.accounts();
        let Some(account) = accounts.get_mut(&id) else {
            return error(StatusCode::NOT_FOUND, "Not Found");
        };
        for (name, value) in changes {
            if name != "id" {
                account.insert(name, value);
            }
        }
        json(StatusCode::OK, Value::Object(account.clone()).to_string())
    }
}

fn presented_ids(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, id)| id)
}

fn error(status: StatusCode, reason: &str) -> Response<Full<Bytes>> {
    json(
        status,
        json!({"code": status.as_u16(), "reasonPhrase": reason}).to_string(),
    )
}

/// Starts the target on `127.0.0.1:0` with a 15-minute session and no rotation.
pub async fn spawn(
    username: &str,
    password: &str,
) -> io::Result<(TargetServer, SessionLockedStats)> {
    spawn_with(SessionLockedOptions::new(username, password)).await
}

pub async fn spawn_with(
    options: SessionLockedOptions,
) -> io::Result<(TargetServer, SessionLockedStats)> {
    spawn_on(TcpListener::bind("127.0.0.1:0").await?, options)
}

/// Starts the target on a listener the caller bound (to restart it on the same port, say).
pub fn spawn_on(
    listener: TcpListener,
    options: SessionLockedOptions,
) -> io::Result<(TargetServer, SessionLockedStats)> {
    let credentials = format!("{}:{}", options.username, options.password);
    let expected_basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    )
    .into_bytes();
    let target = Arc::new(Target {
        options,
        expected_basic,
        session: Mutex::new(None),
        accounts: Mutex::new(HashMap::new()),
        next_account: AtomicU64::new(1),
        next_session: AtomicU64::new(0),
        ids: RandomState::new(),
        requests: AtomicU64::new(0),
        sessions_opened: AtomicU64::new(0),
        unauthorized: AtomicU64::new(0),
    });
    let handler_target = target.clone();
    let server = serve_on(listener, move |request| {
        let response = handler_target.handle(request);
        async move { response }
    })?;
    Ok((server, SessionLockedStats { target }))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    pub(crate) type TestClient = Client<HttpConnector, Full<Bytes>>;

    pub(crate) fn client() -> TestClient {
        Client::builder(TokioExecutor::new()).build_http()
    }

    pub(crate) fn basic(user: &str, password: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    }

    pub(crate) struct Reply {
        pub(crate) status: StatusCode,
        pub(crate) headers: HeaderMap,
        pub(crate) body: Bytes,
    }

    impl Reply {
        pub(crate) fn session_id(&self) -> Option<String> {
            self.headers
                .get_all(SET_COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(|v| v.strip_prefix("JSESSIONID="))
                .and_then(|v| v.split(';').next())
                .map(str::to_owned)
        }

        fn json(&self) -> Value {
            serde_json::from_slice(&self.body).unwrap()
        }
    }

    pub(crate) async fn send(
        client: &TestClient,
        method: Method,
        url: &str,
        authorization: Option<&str>,
        cookie: Option<&str>,
        body: &str,
    ) -> Reply {
        let mut request = Request::builder().method(method).uri(url);
        if let Some(authorization) = authorization {
            request = request.header(AUTHORIZATION, authorization);
        }
        if let Some(cookie) = cookie {
            request = request.header(COOKIE, cookie);
        }
        let request = request
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap();
        let response = client.request(request).await.unwrap();
        let (parts, body) = response.into_parts();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    }

    #[tokio::test]
    async fn every_call_needs_valid_basic_credentials() {
        let (server, stats) = spawn("svc", "pw").await.unwrap();
        let client = client();
        let url = format!("{}{ACCOUNTS}", server.url());
        for authorization in [
            None,
            Some(basic("svc", "wrong")),
            Some("Bearer x".to_owned()),
        ] {
            let reply = send(
                &client,
                Method::POST,
                &url,
                authorization.as_deref(),
                None,
                "{}",
            )
            .await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
            assert_eq!(reply.headers[WWW_AUTHENTICATE], r#"Basic realm="osmc""#);
            assert!(reply.session_id().is_none());
        }
        assert_eq!(stats.sessions_opened(), 0);
        assert_eq!(stats.unauthorized(), 3);
    }

    #[tokio::test]
    async fn calls_without_the_open_sessions_cookie_are_refused_like_the_field_target() {
        let (server, stats) = spawn("svc", "pw").await.unwrap();
        let client = client();
        let auth = basic("svc", "pw");
        let base = format!("{}{ACCOUNTS}", server.url());

        let created = send(
            &client,
            Method::POST,
            &base,
            Some(&auth),
            None,
            r#"{"name":"jdoe"}"#,
        )
        .await;
        assert_eq!(created.status, StatusCode::CREATED);
        let session = created
            .session_id()
            .expect("the first call opens a session");
        let set_cookie = created.headers[SET_COOKIE].to_str().unwrap();
        assert!(set_cookie.ends_with("; Path=/; HttpOnly"), "{set_cookie}");
        let id = created.json()["id"].as_str().unwrap().to_owned();
        let account = format!("{base}/{id}");

        // What the connector does: valid Basic, no cookie.
        let refused = send(
            &client,
            Method::PATCH,
            &account,
            Some(&auth),
            None,
            r#"{"groups":["g1"]}"#,
        )
        .await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            refused.headers[WWW_AUTHENTICATE],
            r#"Token Basic realm="osmc""#
        );
        assert_eq!(refused.body, LOCKED_BODY);
        assert!(
            refused.session_id().is_none(),
            "no second session while one is open"
        );

        // What curl -b jar does.
        let cookie = format!("{SESSION_COOKIE}={session}");
        let patched = send(
            &client,
            Method::PATCH,
            &account,
            Some(&auth),
            Some(&cookie),
            r#"{"groups":["g1"]}"#,
        )
        .await;
        assert_eq!(patched.status, StatusCode::OK);
        let fetched = send(
            &client,
            Method::GET,
            &account,
            Some(&auth),
            Some(&cookie),
            "",
        )
        .await;
        assert_eq!(fetched.status, StatusCode::OK);
        assert_eq!(fetched.json()["groups"], json!(["g1"]));
        assert_eq!(fetched.json()["name"], "jdoe");

        assert_eq!(stats.sessions_opened(), 1);
        assert_eq!(stats.unauthorized(), 1);
        assert_eq!(stats.requests(), 4);
    }

    #[tokio::test]
    async fn an_expired_session_lets_the_next_call_open_a_new_one() {
        let (server, stats) = spawn("svc", "pw").await.unwrap();
        let client = client();
        let auth = basic("svc", "pw");
        let url = format!("{}{ACCOUNTS}", server.url());
        let first = send(&client, Method::POST, &url, Some(&auth), None, "{}").await;
        let old = first.session_id().unwrap();
        assert!(stats.expire_session());
        assert!(!stats.session_open());

        let cookie = format!("{SESSION_COOKIE}={old}");
        let second = send(
            &client,
            Method::POST,
            &url,
            Some(&auth),
            Some(&cookie),
            "{}",
        )
        .await;
        assert_eq!(second.status, StatusCode::CREATED);
        let new = second.session_id().expect("a new session");
        assert_ne!(new, old);
        let stale = send(
            &client,
            Method::POST,
            &url,
            Some(&auth),
            Some(&cookie),
            "{}",
        )
        .await;
        assert_eq!(stale.status, StatusCode::UNAUTHORIZED);
        assert_eq!(stats.sessions_opened(), 2);
    }

    #[tokio::test]
    async fn a_session_ends_after_its_lifetime() {
        let mut options = SessionLockedOptions::new("svc", "pw");
        options.session_lifetime = Duration::ZERO;
        let (server, stats) = spawn_with(options).await.unwrap();
        let client = client();
        let auth = basic("svc", "pw");
        let url = format!("{}{ACCOUNTS}", server.url());
        for _ in 0..2 {
            let reply = send(&client, Method::POST, &url, Some(&auth), None, "{}").await;
            assert_eq!(reply.status, StatusCode::CREATED);
            assert!(reply.session_id().is_some());
        }
        assert_eq!(stats.sessions_opened(), 2);
    }

    #[tokio::test]
    async fn rotation_replaces_the_session_id_and_refuses_the_old_one() {
        let mut options = SessionLockedOptions::new("svc", "pw");
        options.rotate_every = Some(2);
        let (server, _stats) = spawn_with(options).await.unwrap();
        let client = client();
        let auth = basic("svc", "pw");
        let url = format!("{}{ACCOUNTS}", server.url());
        let first = send(&client, Method::POST, &url, Some(&auth), None, "{}").await;
        let old = format!("{SESSION_COOKIE}={}", first.session_id().unwrap());
        let second = send(&client, Method::POST, &url, Some(&auth), Some(&old), "{}").await;
        assert_eq!(second.status, StatusCode::CREATED);
        let rotated = second.session_id().expect("rotated on the second call");
        assert_ne!(format!("{SESSION_COOKIE}={rotated}"), old);
        let stale = send(&client, Method::POST, &url, Some(&auth), Some(&old), "{}").await;
        assert_eq!(stale.status, StatusCode::UNAUTHORIZED);
        let fresh = format!("lb=1; {SESSION_COOKIE}={rotated}");
        let third = send(&client, Method::POST, &url, Some(&auth), Some(&fresh), "{}").await;
        assert_eq!(third.status, StatusCode::CREATED);
    }

    #[tokio::test]
    async fn unknown_paths_and_accounts_are_404() {
        let (server, _stats) = spawn("svc", "pw").await.unwrap();
        let client = client();
        let auth = basic("svc", "pw");
        let first = send(
            &client,
            Method::GET,
            &format!("{}/osmc/api/other", server.url()),
            Some(&auth),
            None,
            "",
        )
        .await;
        assert_eq!(first.status, StatusCode::NOT_FOUND);
        let cookie = format!("{SESSION_COOKIE}={}", first.session_id().unwrap());
        let missing = send(
            &client,
            Method::GET,
            &format!("{}{ACCOUNTS}/999", server.url()),
            Some(&auth),
            Some(&cookie),
            "",
        )
        .await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
    }
}
