//! Demo OAuth targets for the "Basic blocked, OAuth required" (ServiceNow) and "scoped token"
//! (OneTrust SCIM) cases: a real RFC 6749 token endpoint, and a SCIM API that accepts only
//! unexpired Bearer tokens from that endpoint carrying the `scim` scope. Failure modes are
//! switched at runtime through [`TokenEndpointStats`] so tests can break and heal the endpoint.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};
use tokio::time::Instant;
use url::form_urlencoded;

use super::server::{self, serve, TargetServer};

pub const TOKEN_PATH: &str = "/oauth/token";
pub const SCIM_USERS_PATH: &str = "/scim/v2/Users";
/// The scope the SCIM target demands.
pub const SCIM_SCOPE: &str = "scim";

/// How the token endpoint behaves.
#[derive(Debug, Clone)]
pub struct TokenEndpointConfig {
    pub client_id: String,
    pub client_secret: String,
    /// Resource owners accepted by the password grant: (username, password).
    pub users: Vec<(String, String)>,
    /// Scopes a client may ask for; asking for any other is `invalid_scope`.
    pub allowed_scopes: Vec<String>,
    /// Token lifetime; `None` omits `expires_in` and issues tokens that never expire.
    pub expires_in: Option<Duration>,
    pub issue_refresh_tokens: bool,
    /// The `token_type` sent back; `Bearer` unless a test wants a wrong one.
    pub token_type: String,
}

impl Default for TokenEndpointConfig {
    fn default() -> Self {
        TokenEndpointConfig {
            client_id: "provproxy".into(),
            client_secret: "demo-client-secret".into(),
            users: vec![("svc_provision".into(), "demo-password".into())],
            allowed_scopes: vec![SCIM_SCOPE.into(), "users.read".into()],
            expires_in: Some(Duration::from_secs(3600)),
            issue_refresh_tokens: false,
            token_type: "Bearer".into(),
        }
    }
}

/// A failure the token endpoint shows until told otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailureMode {
    #[default]
    None,
    /// Every request gets `500` with an HTML body.
    ServerError,
    /// Every request gets `401 invalid_client`, whatever the credentials.
    InvalidClient,
    /// Wait this long, then answer normally (a slow or hung endpoint).
    Delay(Duration),
    /// `400 invalid_grant` whose description echoes the credentials it received, as some
    /// badly written endpoints do; a client must not pass that on.
    EchoCredentials,
}

/// One request as the endpoint understood it (secrets left out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequestLog {
    pub grant_type: String,
    /// `basic`, `post` or `none`: how the client authenticated.
    pub client_auth: &'static str,
    pub scope: Option<String>,
    pub username: Option<String>,
    /// Form parameters that are not part of the grant or client authentication.
    pub extra: Vec<(String, String)>,
    pub status: u16,
}

/// Observes and steers a running token endpoint; also the registry the SCIM target checks.
#[derive(Clone)]
pub struct TokenEndpointStats {
    shared: Arc<Endpoint>,
}

struct Endpoint {
    config: TokenEndpointConfig,
    failure: Mutex<FailureMode>,
    hits: AtomicUsize,
    log: Mutex<Vec<TokenRequestLog>>,
    registry: Mutex<Registry>,
}

#[derive(Default)]
struct Registry {
    access: HashMap<String, AccessGrant>,
    refresh: HashMap<String, RefreshGrant>,
    /// Every access and refresh token ever issued, for leak tests.
    issued: Vec<String>,
}

struct AccessGrant {
    scopes: Vec<String>,
    expires_at: Option<Instant>,
}

#[derive(Clone)]
struct RefreshGrant {
    client_id: String,
    scopes: Vec<String>,
}

enum TokenCheck {
    Valid { scopes: Vec<String> },
    Invalid,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl TokenEndpointStats {
    /// Requests that reached `/oauth/token`, whatever their outcome.
    pub fn hits(&self) -> usize {
        self.shared.hits.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<TokenRequestLog> {
        lock(&self.shared.log).clone()
    }

    pub fn set_failure(&self, mode: FailureMode) {
        *lock(&self.shared.failure) = mode;
    }

    /// Forgets every access and refresh token, as a server restart or key rotation would.
    pub fn revoke_all(&self) {
        let mut registry = lock(&self.shared.registry);
        registry.access.clear();
        registry.refresh.clear();
    }

    /// Every token issued so far, access and refresh.
    pub fn issued_tokens(&self) -> Vec<String> {
        lock(&self.shared.registry).issued.clone()
    }

    fn check(&self, token: &str) -> TokenCheck {
        let registry = lock(&self.shared.registry);
        match registry.access.get(token) {
            Some(grant) if grant.expires_at.is_none_or(|at| Instant::now() < at) => {
                TokenCheck::Valid {
                    scopes: grant.scopes.clone(),
                }
            }
            _ => TokenCheck::Invalid,
        }
    }
}

/// Starts a token endpoint at `/oauth/token` on `127.0.0.1:0`.
pub async fn spawn_token_endpoint(
    config: TokenEndpointConfig,
) -> io::Result<(TargetServer, TokenEndpointStats)> {
    let stats = TokenEndpointStats {
        shared: Arc::new(Endpoint {
            config,
            failure: Mutex::new(FailureMode::None),
            hits: AtomicUsize::new(0),
            log: Mutex::new(Vec::new()),
            registry: Mutex::new(Registry::default()),
        }),
    };
    let handle = stats.clone();
    let server = serve(move |request| {
        let stats = handle.clone();
        async move { token_endpoint(&stats, request).await }
    })
    .await?;
    Ok((server, stats))
}

async fn token_endpoint(
    stats: &TokenEndpointStats,
    request: Request<Bytes>,
) -> Response<Full<Bytes>> {
    if request.uri().path() != TOKEN_PATH {
        return oauth_error(StatusCode::NOT_FOUND, "invalid_request", "no such endpoint");
    }
    stats.shared.hits.fetch_add(1, Ordering::SeqCst);
    if request.method() != Method::POST {
        return oauth_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request",
            "use POST",
        );
    }
    let failure = *lock(&stats.shared.failure);
    match failure {
        FailureMode::None | FailureMode::EchoCredentials => {}
        FailureMode::ServerError => {
            let mut response = server::json(StatusCode::INTERNAL_SERVER_ERROR, "<html>down</html>");
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
            return response;
        }
        FailureMode::InvalidClient => {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "Client authentication failed",
            )
        }
        FailureMode::Delay(delay) => tokio::time::sleep(delay).await,
    }
    let form: Vec<(String, String)> = form_urlencoded::parse(request.body())
        .into_owned()
        .collect();
    let param = |name: &str| {
        form.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    let mut log = TokenRequestLog {
        grant_type: param("grant_type").unwrap_or_default().to_owned(),
        client_auth: "none",
        scope: param("scope").map(str::to_owned),
        username: param("username").map(str::to_owned),
        extra: form
            .iter()
            .filter(|(key, _)| !STANDARD_PARAMS.contains(&key.as_str()))
            .cloned()
            .collect(),
        status: 0,
    };
    let response = if failure == FailureMode::EchoCredentials {
        let echoed: Vec<String> = form.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let header = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            &format!("rejected {} with {header}", echoed.join(" ")),
        )
    } else {
        grant(stats, &request, &param, &mut log)
    };
    log.status = response.status().as_u16();
    lock(&stats.shared.log).push(log);
    response
}

const STANDARD_PARAMS: &[&str] = &[
    "grant_type",
    "client_id",
    "client_secret",
    "scope",
    "username",
    "password",
    "refresh_token",
];

fn grant<'a>(
    stats: &TokenEndpointStats,
    request: &Request<Bytes>,
    param: &impl Fn(&str) -> Option<&'a str>,
    log: &mut TokenRequestLog,
) -> Response<Full<Bytes>> {
    let config = &stats.shared.config;
    let is_form = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "expected a form body",
        );
    }

    // §2.3.1: one client authentication method per request.
    let basic = request.headers().get(AUTHORIZATION).map(basic_credentials);
    let client = match (basic, param("client_secret")) {
        (Some(_), Some(_)) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "more than one client authentication method",
            )
        }
        (Some(Some(credentials)), None) => {
            log.client_auth = "basic";
            Some(credentials)
        }
        (Some(None), None) => None,
        (None, Some(secret)) => {
            log.client_auth = "post";
            param("client_id").map(|id| (id.to_owned(), secret.to_owned()))
        }
        (None, None) => None,
    };
    let authenticated = client
        .as_ref()
        .is_some_and(|(id, secret)| *id == config.client_id && *secret == config.client_secret);
    if !authenticated {
        let mut response = oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client authentication failed",
        );
        response.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"oauth\""),
        );
        return response;
    }

    let requested: Vec<String> = param("scope")
        .map(|s| s.split_ascii_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    if let Some(unknown) = requested
        .iter()
        .find(|s| !config.allowed_scopes.contains(s))
    {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            &format!("scope {unknown} is not allowed for this client"),
        );
    }
    let scopes = match param("grant_type") {
        Some("client_credentials") => requested,
        Some("password") => {
            let valid = config.users.iter().any(|(user, password)| {
                Some(user.as_str()) == param("username")
                    && Some(password.as_str()) == param("password")
            });
            if !valid {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "The user name or password is incorrect",
                );
            }
            requested
        }
        Some("refresh_token") => {
            // Rotation: a refresh token is good for one use.
            let presented = param("refresh_token").unwrap_or_default();
            let grant = lock(&stats.shared.registry).refresh.remove(presented);
            match grant {
                Some(grant)
                    if client
                        .as_ref()
                        .is_some_and(|(id, _)| *id == grant.client_id) =>
                {
                    grant.scopes
                }
                _ => {
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        "The refresh token is invalid or expired",
                    )
                }
            }
        }
        _ => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "grant_type must be client_credentials, password or refresh_token",
            )
        }
    };
    issue(stats, scopes)
}

/// The client id and secret of a well-formed Basic header (§2.3.1 encoding), `None` otherwise.
fn basic_credentials(value: &HeaderValue) -> Option<(String, String)> {
    let encoded = value.to_str().ok()?.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape = |s: &str| -> String {
        form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some((unescape(id), unescape(secret)))
}

fn issue(stats: &TokenEndpointStats, scopes: Vec<String>) -> Response<Full<Bytes>> {
    let config = &stats.shared.config;
    let (Some(access_token), Some(refresh_token)) = (random_token(), random_token()) else {
        return oauth_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "no randomness",
        );
    };
    let mut body = json!({
        "access_token": access_token,
        "token_type": config.token_type,
    });
    if let Some(lifetime) = config.expires_in {
        body["expires_in"] = json!(lifetime.as_secs());
    }
    if !scopes.is_empty() {
        body["scope"] = json!(scopes.join(" "));
    }
    let mut registry = lock(&stats.shared.registry);
    if config.issue_refresh_tokens {
        body["refresh_token"] = json!(refresh_token);
        registry.refresh.insert(
            refresh_token.clone(),
            RefreshGrant {
                client_id: config.client_id.clone(),
                scopes: scopes.clone(),
            },
        );
        registry.issued.push(refresh_token);
    }
    registry.access.insert(
        access_token.clone(),
        AccessGrant {
            scopes,
            expires_at: config.expires_in.map(|lifetime| Instant::now() + lifetime),
        },
    );
    registry.issued.push(access_token);
    drop(registry);
    let mut response = server::json(StatusCode::OK, body.to_string());
    // §5.1: token responses must not be cached.
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn random_token() -> Option<String> {
    let mut bytes = [0u8; 32];
    crate::upstream::tls::provider()
        .secure_random
        .fill(&mut bytes)
        .ok()?;
    Some(URL_SAFE_NO_PAD.encode(bytes))
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response<Full<Bytes>> {
    let body = json!({"error": error, "error_description": description});
    let mut response = server::json(status, body.to_string());
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Observes a running SCIM target.
#[derive(Clone, Default)]
pub struct ScimStats {
    shared: Arc<Scim>,
}

#[derive(Default)]
struct Scim {
    requests: AtomicUsize,
    rejected: AtomicUsize,
    users: Mutex<Vec<(String, String)>>,
}

impl ScimStats {
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Requests refused with 401 or 403.
    pub fn rejected(&self) -> usize {
        self.shared.rejected.load(Ordering::SeqCst)
    }

    pub fn user_names(&self) -> Vec<String> {
        lock(&self.shared.users)
            .iter()
            .map(|(_, name)| name.clone())
            .collect()
    }
}

/// Starts a OneTrust-like SCIM target on `127.0.0.1:0` that trusts tokens from `tokens`.
pub async fn spawn_scim_target(
    tokens: &TokenEndpointStats,
) -> io::Result<(TargetServer, ScimStats)> {
    let stats = ScimStats::default();
    let (tokens, handle) = (tokens.clone(), stats.clone());
    let server = serve(move |request| {
        let response = scim(&tokens, &handle, request);
        async move { response }
    })
    .await?;
    Ok((server, stats))
}

fn scim(
    tokens: &TokenEndpointStats,
    stats: &ScimStats,
    request: Request<Bytes>,
) -> Response<Full<Bytes>> {
    stats.shared.requests.fetch_add(1, Ordering::SeqCst);
    if let Some(refusal) = scim_refusal(tokens, &request) {
        stats.shared.rejected.fetch_add(1, Ordering::SeqCst);
        return refusal;
    }
    if request.uri().path() != SCIM_USERS_PATH {
        return scim_error(StatusCode::NOT_FOUND, None, "Resource not found");
    }
    match *request.method() {
        Method::GET => {
            let users = lock(&stats.shared.users);
            let resources: Vec<Value> = users.iter().map(|(id, name)| user(id, name)).collect();
            scim_json(
                StatusCode::OK,
                json!({
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
                    "totalResults": resources.len(),
                    "startIndex": 1,
                    "itemsPerPage": resources.len(),
                    "Resources": resources,
                }),
            )
        }
        Method::POST => {
            let name = serde_json::from_slice::<Value>(request.body())
                .ok()
                .and_then(|v| v.get("userName").and_then(Value::as_str).map(str::to_owned));
            let Some(name) = name.filter(|n| !n.is_empty()) else {
                return scim_error(
                    StatusCode::BAD_REQUEST,
                    Some("invalidValue"),
                    "userName is required",
                );
            };
            let mut users = lock(&stats.shared.users);
            if users.iter().any(|(_, existing)| *existing == name) {
                return scim_error(
                    StatusCode::CONFLICT,
                    Some("uniqueness"),
                    "userName is already taken",
                );
            }
            let id = format!("u{}", users.len() + 1);
            users.push((id.clone(), name.clone()));
            let mut response = scim_json(StatusCode::CREATED, user(&id, &name));
            if let Ok(location) = HeaderValue::try_from(format!("{SCIM_USERS_PATH}/{id}")) {
                response.headers_mut().insert(LOCATION, location);
            }
            response
        }
        _ => scim_error(StatusCode::METHOD_NOT_ALLOWED, None, "Method not allowed"),
    }
}

/// RFC 6750 §3: no credentials or another scheme get a bare challenge, a bad token gets
/// `invalid_token`, a token without the scope gets 403 `insufficient_scope`.
fn scim_refusal(
    tokens: &TokenEndpointStats,
    request: &Request<Bytes>,
) -> Option<Response<Full<Bytes>>> {
    let unauthorized = |challenge: &'static str, detail: &str| {
        let mut response = scim_error(StatusCode::UNAUTHORIZED, None, detail);
        response
            .headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        response
    };
    let authorization = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let token = authorization.and_then(|value| {
        let (scheme, token) = value.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then_some(token)
    });
    let Some(token) = token else {
        return Some(unauthorized(
            "Bearer realm=\"scim\"",
            "Authentication with an OAuth 2.0 Bearer token is required",
        ));
    };
    match tokens.check(token) {
        TokenCheck::Invalid => Some(unauthorized(
            "Bearer realm=\"scim\", error=\"invalid_token\"",
            "The access token is invalid or expired",
        )),
        TokenCheck::Valid { scopes } if !scopes.iter().any(|s| s == SCIM_SCOPE) => {
            let mut response = scim_error(
                StatusCode::FORBIDDEN,
                None,
                "The access token lacks the scim scope",
            );
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"insufficient_scope\", scope=\"scim\""),
            );
            Some(response)
        }
        TokenCheck::Valid { .. } => None,
    }
}

fn user(id: &str, name: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": id,
        "userName": name,
        "meta": {"resourceType": "User", "location": format!("{SCIM_USERS_PATH}/{id}")},
    })
}

fn scim_error(status: StatusCode, scim_type: Option<&str>, detail: &str) -> Response<Full<Bytes>> {
    let mut body = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
        "status": status.as_str(),
        "detail": detail,
    });
    if let Some(scim_type) = scim_type {
        body["scimType"] = json!(scim_type);
    }
    scim_json(status, body)
}

fn scim_json(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut response = server::json(status, body.to_string());
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/scim+json"),
    );
    response
}
