//! OAuth 2.0 token source: one per route with `kind = "oauth2"`. Turns the route's stored
//! credentials into a Bearer token, caches it, refreshes it ahead of expiry, and shields the
//! token endpoint from stampedes (single-flight fetches, backoff after failures).
//!
//! The pipeline calls [`TokenSource::token`] per request and injects
//! [`Token::authorization`]; on the target's answer it asks [`TokenSource::verdict`], which
//! drops a refused token and tells the pipeline to fetch once more and replay once. Expiry,
//! refresh ahead and backoff follow the source's injected clock.

mod error;
mod wire;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::watch;

pub use error::{Failure, OAuthError};

use crate::clock::SharedClock;
use crate::config::{Grant, OAuthPlan, Secret, SecretSource};
use wire::{Issued, Requests};

/// A token response larger than this is not a token response.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// First backoff window after a failure; it doubles per consecutive failure up to the cap.
const BACKOFF_START: Duration = Duration::from_millis(500);
const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// Refresh at most this long before expiry when the route sets no `refresh_skew`.
const MAX_DEFAULT_SKEW: Duration = Duration::from_secs(60);

/// Obtains and caches the Bearer token of one route. Cheap to clone; clones share the cache.
#[derive(Clone)]
pub struct TokenSource {
    inner: Arc<Inner>,
}

/// A token to inject. Cheap to clone.
#[derive(Clone)]
pub struct Token {
    value: Arc<TokenValue>,
    generation: u64,
    fetched: bool,
}

struct TokenValue {
    access_token: Secret,
    /// `Bearer <token>`, built once per fetch and marked sensitive.
    authorization: HeaderValue,
}

impl Token {
    /// The value for the `Authorization` header: `Bearer <access token>`.
    pub fn authorization(&self) -> &HeaderValue {
        &self.value.authorization
    }

    pub fn access_token(&self) -> &Secret {
        &self.value.access_token
    }

    /// Which fetch produced this token; pass it to [`TokenSource::invalidate`].
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// True when this call waited for a token request (its own or a concurrent caller's)
    /// instead of being served from the cache: the trace's `token_fetched`.
    pub fn fetched(&self) -> bool {
        self.fetched
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("access_token", &"[REDACTED]")
            .field("generation", &self.generation)
            .field("fetched", &self.fetched)
            .finish()
    }
}

/// The auth phase's verdict on the target's answer to a request that carried a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenVerdict {
    /// The target took the token, or said nothing about it.
    Keep,
    /// The target refused the token: the state backend drops it (compared with the refused
    /// generation), and the next attempt gets a new one (a token that is not dropped on a 401
    /// would be injected again and again).
    Refetch,
}

impl TokenVerdict {
    /// The verdict on the target's `status` for a request that carried a token: a 401
    /// refuses it.
    pub fn of(status: http::StatusCode) -> TokenVerdict {
        if status == http::StatusCode::UNAUTHORIZED {
            TokenVerdict::Refetch
        } else {
            TokenVerdict::Keep
        }
    }
}

/// Counters for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenStats {
    /// HTTP requests sent to the token endpoint (a refresh that falls back counts twice).
    pub fetches: u64,
    /// Fetches that produced no token; each one opens a backoff window.
    pub failures: u64,
}

type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;
type Outcome = Option<Result<Token, OAuthError>>;

struct Inner {
    route: Arc<str>,
    /// The token URL without user info, query or fragment: what errors and logs show.
    url: Arc<str>,
    uri: Uri,
    grant: &'static str,
    client: HttpsClient,
    requests: Requests,
    requested_scopes: Vec<String>,
    timeout: Duration,
    /// Expiry, refresh ahead and backoff are decided by this clock's time.
    clock: SharedClock,
    refresh_skew: Option<Duration>,
    /// The client secret and password, raw and encoded, to scrub from endpoint text.
    static_secrets: Vec<String>,
    state: Mutex<State>,
    fetches: AtomicU64,
    failures: AtomicU64,
    /// Told about every token request, for the trace; set once at startup.
    observer: std::sync::OnceLock<Observer>,
}

/// Receives each exchange with the token endpoint (the trace records it, redacted).
pub type Observer = Arc<dyn Fn(TokenExchange) + Send + Sync>;

/// One request to the token endpoint as it went over the wire. It holds the client secret and
/// the issued token: only the trace's redaction may look at it.
pub struct TokenExchange {
    pub started: std::time::SystemTime,
    pub elapsed: Duration,
    pub url: String,
    pub request_headers: http::HeaderMap,
    pub request_body: Bytes,
    /// Status, headers and body, when a response arrived.
    pub response: Option<(http::StatusCode, http::HeaderMap, Bytes)>,
    /// `(kind, detail)` of the failure, if the exchange failed.
    pub error: Option<(&'static str, String)>,
}

#[derive(Default)]
struct State {
    current: Option<Cached>,
    last_generation: u64,
    refresh_token: Option<Secret>,
    /// The fetch every caller without a valid token waits for; at most one at a time.
    in_flight: Option<watch::Receiver<Outcome>>,
    consecutive_failures: u32,
    backoff: Option<Backoff>,
}

struct Cached {
    token: Token,
    expires_at: Instant,
    refresh_at: Instant,
}

struct Backoff {
    until: Instant,
    error: OAuthError,
}

impl State {
    fn backoff_error(&self, now: Instant) -> Option<&OAuthError> {
        self.backoff
            .as_ref()
            .filter(|b| now < b.until)
            .map(|b| &b.error)
    }
}

impl TokenSource {
    /// Builds the token client and the prepared requests for `route_name`. Does not contact
    /// the endpoint: the first [`token`](Self::token) call does.
    pub fn new(route_name: &str, plan: &OAuthPlan) -> Result<TokenSource, OAuthError> {
        Self::with_clock(route_name, plan, crate::clock::system())
    }

    /// Like [`new`](Self::new), reading time from `clock`.
    pub fn with_clock(
        route_name: &str,
        plan: &OAuthPlan,
        clock: SharedClock,
    ) -> Result<TokenSource, OAuthError> {
        let route: Arc<str> = Arc::from(route_name);
        let url: Arc<str> = Arc::from(display_url(&plan.token_url).as_str());
        let setup = |reason: String| {
            OAuthError::new(&route, &url, Failure::Setup { reason }).scrub(&plan_secrets(plan))
        };
        if !plan.token_url.username().is_empty() || plan.token_url.password().is_some() {
            return Err(setup(
                "the token URL holds user info; use client_id and client_secret".into(),
            ));
        }
        if !matches!(plan.token_url.scheme(), "http" | "https") {
            return Err(setup("the token URL must be http or https".into()));
        }
        let uri: Uri = plan
            .token_url
            .as_str()
            .parse()
            .map_err(|_| setup("the token URL is not a valid request URI".into()))?;
        let trust = crate::upstream::TrustSpec {
            ca_file: plan.ca_file.as_deref(),
            ..Default::default()
        };
        let connector = crate::upstream::connector(&trust, plan.timeout)
            .map_err(|err| setup(err.to_string()))?;
        // One malformed header line in the endpoint's response is dropped, not fatal (as for
        // targets, see `upstream::pool`).
        let client = Client::builder(TokioExecutor::new())
            .http1_ignore_invalid_headers_in_responses(true)
            .build(connector);
        let requests = Requests::new(plan)
            .map_err(|failure| OAuthError::new(&route, &url, failure).scrub(&plan_secrets(plan)))?;
        let mut static_secrets: Vec<String> =
            plan_secrets(plan).into_iter().map(str::to_owned).collect();
        static_secrets.extend(requests.encoded_secrets.iter().cloned());
        let grant = match plan.grant {
            Grant::ClientCredentials => "client_credentials",
            Grant::Password { .. } => "password",
        };
        Ok(TokenSource {
            inner: Arc::new(Inner {
                route,
                url,
                uri,
                grant,
                client,
                requests,
                requested_scopes: plan.scopes.clone(),
                timeout: plan.timeout,
                clock,
                refresh_skew: plan.refresh_skew,
                static_secrets,
                state: Mutex::new(State::default()),
                fetches: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                observer: std::sync::OnceLock::new(),
            }),
        })
    }

    /// A valid token: from the cache, or from the one fetch in flight, or from a new fetch.
    /// Within the backoff window after a failure it returns that failure without a request.
    pub async fn token(&self) -> Result<Token, OAuthError> {
        let mut outcome = {
            let mut state = self.inner.lock();
            let now = self.inner.clock.now();
            if let Some(cached) = state.current.as_ref().filter(|c| now < c.expires_at) {
                let token = cached.token.clone();
                // Refresh ahead: this caller starts the fetch but keeps the still-valid token.
                if now >= cached.refresh_at
                    && state.in_flight.is_none()
                    && state.backoff_error(now).is_none()
                {
                    self.inner.start_fetch(&mut state);
                }
                return Ok(token);
            }
            match &state.in_flight {
                Some(in_flight) => in_flight.clone(),
                None => {
                    if let Some(error) = state.backoff_error(now) {
                        return Err(error.clone());
                    }
                    self.inner.start_fetch(&mut state)
                }
            }
        };
        let result = outcome
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|settled| settled.clone());
        match result {
            Some(result) => result,
            None => {
                // The fetch task died without settling; unblock the next caller.
                let mut state = self.inner.lock();
                if state
                    .in_flight
                    .as_ref()
                    .is_some_and(|f| f.same_channel(&outcome))
                {
                    state.in_flight = None;
                }
                Err(self.inner.error(Failure::Abandoned))
            }
        }
    }

    /// Drops the cached token if it is still `generation`, so that N requests failing with
    /// the same dead token cause one new fetch, not N.
    pub fn invalidate(&self, generation: u64) {
        let mut state = self.inner.lock();
        if state
            .current
            .as_ref()
            .is_some_and(|c| c.token.generation == generation)
        {
            state.current = None;
        }
    }

    pub fn route(&self) -> &str {
        &self.inner.route
    }

    /// The cached token when it is valid and not yet due for refresh, and how long it stays
    /// valid; `None` otherwise. Never fetches: the shared backend decides where a token comes
    /// from.
    pub fn cached_fresh(&self) -> Option<(Token, Duration)> {
        let state = self.inner.lock();
        let now = self.inner.clock.now();
        state
            .current
            .as_ref()
            .filter(|cached| now < cached.refresh_at)
            .map(|cached| (cached.token.clone(), cached.expires_at - now))
    }

    /// Whether a token with `remaining` validity is still worth using rather than refreshing.
    pub fn usable_for(&self, remaining: Duration) -> bool {
        remaining > refresh_skew(self.inner.refresh_skew, remaining).min(remaining / 2)
    }

    /// Caches a token fetched elsewhere (another replica), valid for `remaining`, as the
    /// current one; `None` when it cannot be sent in a header.
    pub fn adopt(&self, access_token: String, remaining: Duration) -> Option<Token> {
        let mut authorization = HeaderValue::try_from(format!("Bearer {access_token}")).ok()?;
        authorization.set_sensitive(true);
        let mut state = self.inner.lock();
        state.last_generation += 1;
        let token = Token {
            value: Arc::new(TokenValue {
                access_token: Secret::new(access_token, SecretSource::Literal),
                authorization,
            }),
            generation: state.last_generation,
            fetched: true,
        };
        let expires_at = self.inner.clock.now() + remaining;
        state.current = Some(Cached {
            token: Token {
                fetched: false,
                ..token.clone()
            },
            expires_at,
            refresh_at: expires_at - refresh_skew(self.inner.refresh_skew, remaining),
        });
        Some(token)
    }

    /// A token from a new fetch (the cached one is dropped first), and how long it is valid.
    pub async fn fetch_fresh(&self) -> Result<(Token, Duration), OAuthError> {
        {
            let mut state = self.inner.lock();
            if state.in_flight.is_none() {
                state.current = None;
            }
        }
        let token = self.token().await?;
        let state = self.inner.lock();
        let now = self.inner.clock.now();
        let remaining = state
            .current
            .as_ref()
            .filter(|cached| cached.token.generation == token.generation)
            .map_or(Duration::ZERO, |cached| {
                cached.expires_at.saturating_duration_since(now)
            });
        Ok((token, remaining))
    }

    /// Reports every later token request to `observer`; the first observer set stays.
    pub fn observe(&self, observer: Observer) {
        let _ = self.inner.observer.set(observer);
    }

    pub fn stats(&self) -> TokenStats {
        TokenStats {
            fetches: self.inner.fetches.load(Ordering::Relaxed),
            failures: self.inner.failures.load(Ordering::Relaxed),
        }
    }
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSource")
            .field("route", &self.inner.route)
            .field("token_url", &self.inner.url)
            .field("grant", &self.inner.grant)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Critical sections never panic half-way, so a poisoned state is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn error(&self, failure: Failure) -> OAuthError {
        OAuthError::new(&self.route, &self.url, failure)
    }

    /// Spawns the fetch so that it completes for every waiter even if the caller that started
    /// it goes away (a client disconnect must not strand the others).
    fn start_fetch(self: &Arc<Self>, state: &mut State) -> watch::Receiver<Outcome> {
        let (settle, outcome) = watch::channel(None);
        state.in_flight = Some(outcome.clone());
        let refresh_token = state.refresh_token.clone();
        let inner = self.clone();
        tokio::spawn(async move {
            let result = inner.fetch(refresh_token).await;
            let _ = settle.send(Some(inner.settle(result)));
        });
        outcome
    }

    /// One token request, or two when a refresh token was rejected (§5.2 `invalid_grant`:
    /// expired or revoked) and the primary grant must start over.
    async fn fetch(
        &self,
        refresh_token: Option<Secret>,
    ) -> Result<(Issued, Instant, bool), OAuthError> {
        if let Some(refresh_token) = refresh_token {
            match self
                .request(self.requests.refresh(refresh_token.expose()))
                .await
            {
                Ok((issued, sent_at)) => return Ok((issued, sent_at, true)),
                Err(err) if err.is_invalid_grant() => {
                    tracing::info!(route = %self.route, "refresh token refused; using the {} grant", self.grant);
                }
                Err(err) => return Err(err),
            }
        }
        let (issued, sent_at) = self.request(self.requests.primary.clone()).await?;
        Ok((issued, sent_at, false))
    }

    async fn request(&self, body: Bytes) -> Result<(Issued, Instant), OAuthError> {
        let observed = self.observer.get().map(|_| body.clone());
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(self.uri.clone())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .header(CACHE_CONTROL, "no-store");
        if let Some(basic) = &self.requests.basic {
            builder = builder.header(AUTHORIZATION, basic.clone());
        }
        let request = builder.body(Full::new(body)).map_err(|err| {
            self.error(Failure::Setup {
                reason: err.to_string(),
            })
        })?;
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let request_headers = observed.as_ref().map(|_| request.headers().clone());
        let started = std::time::SystemTime::now();
        // Expiry counts from when the request left: the endpoint's clock started no earlier.
        let sent_at = self.clock.now();
        let mut received = None;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|err| {
                self.error(Failure::Connect {
                    reason: error_chain(&err),
                })
            })?;
            let (parts, body) = response.into_parts();
            let status = parts.status;
            let body = Limited::new(body, MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|err| {
                    self.error(Failure::InvalidResponse {
                        status: status.as_u16(),
                        reason: format!("cannot read the body: {err}"),
                    })
                })?
                .to_bytes();
            received = Some((status, parts.headers, body.clone()));
            wire::interpret(status, &body).map_err(|failure| self.error(failure))
        };
        let result = match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result.map(|issued| (issued, sent_at)),
            Err(_) => Err(self.error(Failure::Timeout {
                timeout: self.timeout,
            })),
        };
        if let (Some(observer), Some(request_body), Some(request_headers)) =
            (self.observer.get(), observed, request_headers)
        {
            // The trace redacts token bodies by field name; an endpoint that echoes a
            // credential in free text (`error_description`) is caught here, by value.
            let secrets = self.known_secrets(&result);
            let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
            let scrub = |bytes: &Bytes| {
                Bytes::from(error::redact_values(
                    &String::from_utf8_lossy(bytes),
                    &secrets,
                ))
            };
            observer(TokenExchange {
                started,
                elapsed: self.clock.now().saturating_duration_since(sent_at),
                url: self.uri.to_string(),
                request_headers,
                request_body,
                response: received.map(|(status, headers, body)| (status, headers, scrub(&body))),
                error: result
                    .as_ref()
                    .err()
                    .map(|err| (err.kind(), error::redact_values(&err.to_string(), &secrets))),
            });
        }
        result
    }

    /// Records the outcome of a fetch and ends the single flight, atomically, so that a caller
    /// arriving afterwards sees either the new token or the new backoff window.
    fn settle(
        &self,
        result: Result<(Issued, Instant, bool), OAuthError>,
    ) -> Result<Token, OAuthError> {
        let mut state = self.lock();
        state.in_flight = None;
        let (issued, sent_at, via_refresh) = match result {
            Ok(fetched) => fetched,
            Err(error) => return Err(self.fail(&mut state, error)),
        };
        let mut authorization =
            match HeaderValue::try_from(format!("Bearer {}", issued.access_token)) {
                Ok(value) => value,
                Err(_) => {
                    let error = self.error(Failure::InvalidResponse {
                        status: 200,
                        reason: "the access_token cannot be sent in a header".into(),
                    });
                    return Err(self.fail(&mut state, error));
                }
            };
        authorization.set_sensitive(true);
        self.warn_on_narrowed_scope(issued.scope.as_deref());

        state.consecutive_failures = 0;
        state.backoff = None;
        state.last_generation += 1;
        match issued.refresh_token {
            Some(refresh_token) => {
                state.refresh_token = Some(Secret::new(refresh_token, SecretSource::Literal));
            }
            // §6: a refresh response may omit the refresh token, and then the old one stays
            // valid; a primary-grant response without one means there is none.
            None if !via_refresh => state.refresh_token = None,
            None => {}
        }
        let expires_at = sent_at + issued.lifetime;
        let skew = refresh_skew(self.refresh_skew, issued.lifetime);
        let token = Token {
            value: Arc::new(TokenValue {
                access_token: Secret::new(issued.access_token, SecretSource::Literal),
                authorization,
            }),
            generation: state.last_generation,
            fetched: false,
        };
        state.current = Some(Cached {
            token: token.clone(),
            expires_at,
            refresh_at: expires_at - skew,
        });
        Ok(Token {
            fetched: true,
            ..token
        })
    }

    /// Every secret value this source knows: the configured ones, the refresh token, the
    /// current token and the one just issued.
    fn known_secrets(&self, issued: &Result<(Issued, Instant), OAuthError>) -> Vec<String> {
        let mut secrets = self.static_secrets.clone();
        {
            let state = self.lock();
            if let Some(refresh_token) = &state.refresh_token {
                secrets.push(refresh_token.expose().to_owned());
            }
            if let Some(current) = &state.current {
                secrets.push(current.token.value.access_token.expose().to_owned());
            }
        }
        if let Ok((issued, _)) = issued {
            secrets.push(issued.access_token.clone());
            secrets.extend(issued.refresh_token.clone());
        }
        secrets
    }

    fn fail(&self, state: &mut State, error: OAuthError) -> OAuthError {
        self.failures.fetch_add(1, Ordering::Relaxed);
        state.consecutive_failures = state.consecutive_failures.saturating_add(1);
        let mut secrets: Vec<&str> = self.static_secrets.iter().map(String::as_str).collect();
        if let Some(refresh_token) = &state.refresh_token {
            secrets.push(refresh_token.expose());
        }
        if let Some(current) = &state.current {
            secrets.push(current.token.value.access_token.expose());
        }
        let error = error.scrub(&secrets);
        tracing::warn!(route = %self.route, kind = error.kind(), "token fetch failed: {error}");
        state.backoff = Some(Backoff {
            until: self.clock.now() + backoff_delay(state.consecutive_failures),
            error: error.clone(),
        });
        error
    }

    /// The OneTrust case: an endpoint that silently grants fewer scopes than asked for yields
    /// a token the target refuses with 403 `insufficient_scope`; say so where it starts.
    fn warn_on_narrowed_scope(&self, granted: Option<&str>) {
        let Some(granted) = granted else { return };
        let granted: Vec<&str> = granted.split_ascii_whitespace().collect();
        let missing: Vec<&str> = self
            .requested_scopes
            .iter()
            .map(String::as_str)
            .filter(|s| !granted.contains(s))
            .collect();
        if !missing.is_empty() {
            tracing::warn!(route = %self.route, missing = ?missing, "token endpoint granted fewer scopes than requested");
        }
    }
}

/// The client secret and the password as configured.
fn plan_secrets(plan: &OAuthPlan) -> Vec<&str> {
    let mut secrets = Vec::new();
    if let Some(secret) = &plan.client_secret {
        secrets.push(secret.expose());
    }
    if let Grant::Password { password, .. } = &plan.grant {
        secrets.push(password.expose());
    }
    secrets
}

fn display_url(url: &url::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// hyper-util's top-level error says only "client error (Connect)"; the cause is in the chain.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// How long before expiry to refresh: the configured skew, else min(60 s, 10% of the
/// lifetime), never more than the lifetime itself.
fn refresh_skew(configured: Option<Duration>, lifetime: Duration) -> Duration {
    configured
        .unwrap_or_else(|| MAX_DEFAULT_SKEW.min(lifetime / 10))
        .min(lifetime)
}

/// 0.5 s after the first consecutive failure, doubling, capped at 30 s.
fn backoff_delay(consecutive_failures: u32) -> Duration {
    let doublings = consecutive_failures.saturating_sub(1).min(16);
    BACKOFF_START
        .saturating_mul(1 << doublings)
        .min(BACKOFF_CAP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_half_a_second_and_caps_at_thirty() {
        let delays: Vec<u128> = (1..=9).map(|n| backoff_delay(n).as_millis()).collect();
        assert_eq!(
            delays,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        assert_eq!(backoff_delay(u32::MAX), BACKOFF_CAP);
    }

    #[test]
    fn default_refresh_skew_is_a_tenth_of_the_lifetime_up_to_a_minute() {
        let secs = Duration::from_secs;
        assert_eq!(refresh_skew(None, secs(3600)), secs(60));
        assert_eq!(refresh_skew(None, secs(300)), secs(30));
        assert_eq!(refresh_skew(Some(secs(120)), secs(3600)), secs(120));
        assert_eq!(refresh_skew(Some(secs(120)), secs(60)), secs(60));
    }

    #[test]
    fn display_url_drops_query_and_fragment() {
        let url: url::Url = "https://idp.example/oauth/token?api-version=1&code=x#frag"
            .parse()
            .unwrap();
        assert_eq!(display_url(&url), "https://idp.example/oauth/token");
    }
}
