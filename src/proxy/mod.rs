//! The per-request pipeline. Each exchange carries an [`Exchange`] context through named
//! phases — admit, prepare, session, authorize, forward, absorb, replay, respond, record — and
//! this module only sequences them; the work of each phase lives in the module that owns it.

pub mod error;
mod exchange;
mod forward;
pub mod headers;
mod next;
pub mod path;
pub mod replay;
mod respond;
pub mod route;
#[cfg(test)]
pub(crate) mod stand_in_tests;
mod token_fetch;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderMap, AUTHORIZATION};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;

use crate::access_log::{self, AccessLog, Did, Outcome, ReloginOutcome};
use crate::auth::oauth::{TokenSource, TokenVerdict};
use crate::auth::{Injected, Injector};
use crate::body::{self, ClientBody, ClientBodyFault, IdleTimeout, ProxyBody, RequestBody};
use crate::challenge::{ChallengeConfigError, Rewriter};
use crate::clock::SharedClock;
use crate::config::{ClientCookies, Plan, RoutePlan};
use crate::ingress::origin::ServedHost;
use crate::ingress::{ClientName, Ingress, Screened};
use crate::metrics::Metrics;
use crate::session::{Lease, LeaseError, Relogin, SessionVerdict, Sessions};
use crate::state::{LeaseFailure, SessionStore, StateBackend, TokenFailure, TokenStore};
use crate::trace::record::{CapturedBody, RequestPart, Role};
use crate::trace::{TapBody, Tracer};
use crate::upstream::{DynForward, Forward, TlsSetupError, UpstreamBody, UpstreamClient};
use error::ProxyError;
use exchange::{AttemptTrace, CaptureSlot, Exchange, TraceContext};
use forward::Head;
use headers::PathMap;
use next::Next;
use replay::ReplayBody;
use respond::PendingRecord;
use route::Router;

/// Bodies kept for a replay when an OAuth route has no session plan to say how much.
const DEFAULT_REPLAY_LIMIT: usize = 1 << 20;

/// How much of a `relogin_on` response body is read to look for `relogin_body_contains`.
const RELOGIN_BODY_PEEK: usize = 64 * 1024;

/// What the listener knows about the client connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub remote: SocketAddr,
    /// The proxy's own address this connection came in on.
    pub local: SocketAddr,
    pub tls: bool,
    /// The client named by its verified TLS certificate.
    pub client: Option<ClientName>,
    /// The client's address as it goes into `X-Forwarded-For`, rendered once per connection.
    pub forwarded_for: http::HeaderValue,
    /// The `Host` this connection's requests were found to be addressed to a served name with.
    pub served_host: ServedHost,
}

impl ConnInfo {
    pub fn new(remote: SocketAddr, local: SocketAddr, tls: bool) -> ConnInfo {
        ConnInfo {
            remote,
            local,
            tls,
            client: None,
            forwarded_for: headers::forwarded_for(remote.ip()),
            served_host: ServedHost::default(),
        }
    }

    /// The scheme the client used to reach the proxy.
    pub fn proto(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }
}

/// A route with everything it needs at request time, built once.
struct Route {
    plan: RoutePlan,
    /// The plan's name, shared by every trace record of the route instead of copied into each.
    name: Arc<str>,
    upstream: Forwarder,
    injector: Injector,
    tokens: Option<TokenSource>,
    /// The route's challenge policy, prepared from its plan.
    rewriter: Rewriter,
    target: forward::Target,
    paths: PathMap,
    /// Request bodies up to this size are kept for one replay (re-login or new token).
    replay_limit: Option<usize>,
}

/// Where a route's attempts go. An enum rather than a trait object, so that the real client is
/// called directly, with no boxed future per request.
enum Forwarder {
    Target(UpstreamClient),
    /// Put in place by a test through [`Proxy::forward_to`].
    StandIn(Arc<dyn DynForward>),
}

/// A route whose upstream client or token source could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RouteSetupError {
    #[error("route {route:?}: {source}")]
    Tls {
        route: String,
        source: TlsSetupError,
    },
    #[error("route {route:?}: {source}")]
    Target {
        route: String,
        source: forward::TargetError,
    },
    #[error("route {route:?}: {source}")]
    Challenge {
        route: String,
        source: ChallengeConfigError,
    },
    #[error("route {route:?}: {source}")]
    OAuth {
        route: String,
        source: crate::auth::oauth::OAuthError,
    },
}

/// What the pipeline shares with the rest of the process.
pub struct Shared {
    pub metrics: Arc<Metrics>,
    pub ingress: Arc<Ingress>,
    pub sessions: Sessions,
    pub tracer: Option<Tracer>,
    /// One per route, in route order; `Some` for OAuth routes.
    pub tokens: Vec<Option<TokenSource>>,
    /// `[state] backend = "redis"`: sessions and tokens are shared through it.
    pub redis: Option<crate::state::RedisShared>,
}

/// The token source of every OAuth route, in route order, reading time from `clock`. Built
/// before the proxy so that the metrics can read their counters.
pub fn token_sources(
    plan: &Plan,
    clock: &SharedClock,
) -> Result<Vec<Option<TokenSource>>, RouteSetupError> {
    plan.routes
        .iter()
        .map(|route| match &route.auth.kind {
            crate::config::AuthKind::OAuth2(oauth) => {
                TokenSource::with_clock(&route.name, oauth, clock.clone())
                    .map(Some)
                    .map_err(|source| RouteSetupError::OAuth {
                        route: route.name.clone(),
                        source,
                    })
            }
            _ => Ok(None),
        })
        .collect()
}

pub struct Proxy {
    routes: Vec<Route>,
    router: Router,
    shared: Shared,
    /// Where leases and tokens come from: every session and token call goes through it.
    state: StateBackend,
    body_read_timeout: Duration,
    trace_max_body: usize,
    /// `None` when `[log] access = "off"`.
    access: Option<AccessLog>,
}

impl Proxy {
    pub fn new(plan: &Plan, shared: Shared) -> Result<Self, RouteSetupError> {
        Self::reusing(plan, shared, &|_| None)
    }

    /// The upstream client (and so the connection pool) of a route, for a reloaded plan to keep.
    pub fn upstream(&self, route: &str) -> Option<UpstreamClient> {
        self.routes
            .iter()
            .find(|r| r.plan.name == route)
            .and_then(|r| match &r.upstream {
                Forwarder::Target(upstream) => Some(upstream.clone()),
                Forwarder::StandIn(_) => None,
            })
    }

    /// As [`Proxy::new`], with the upstream clients `reuse` gives for routes that keep theirs
    /// across a reload; the others are built anew.
    pub fn reusing(
        plan: &Plan,
        shared: Shared,
        reuse: &dyn Fn(&RoutePlan) -> Option<UpstreamClient>,
    ) -> Result<Self, RouteSetupError> {
        let trace_max_body =
            plan.trace
                .as_ref()
                .map_or(0, |trace| if trace.bodies { trace.max_body } else { 0 });
        for (route, tokens) in plan.routes.iter().zip(&shared.tokens) {
            let Some(tokens) = tokens else { continue };
            let (tracer, route) = (shared.tracer.clone(), Arc::<str>::from(route.name.as_str()));
            tokens.observe(Arc::new(move |exchange| {
                if let (Some((status, ..)), None) = (&exchange.response, &exchange.error) {
                    access_log::token_fetched(&route, *status, exchange.elapsed);
                }
                if let Some(tracer) = &tracer {
                    let record = exchange::token_fetch_record(
                        tracer.next_id(),
                        &route,
                        exchange,
                        trace_max_body,
                    );
                    tracer.submit(record);
                }
            }));
        }
        let routes =
            plan.routes
                .iter()
                .zip(shared.tokens.iter().cloned())
                .map(|(route, tokens)| {
                    let session_replays = route.session.as_ref().filter(|session| {
                        !session.relogin_on.is_empty() || !session.tokens.is_empty()
                    });
                    let replay_limit = match (session_replays, &tokens) {
                        (Some(session), _) => Some(session.replay_body_limit),
                        (None, Some(_)) => Some(DEFAULT_REPLAY_LIMIT),
                        (None, None) => None,
                    };
                    let target =
                        forward::Target::new(route).map_err(|source| RouteSetupError::Target {
                            route: route.name.clone(),
                            source,
                        })?;
                    let upstream = match reuse(route) {
                        Some(upstream) => upstream,
                        None => UpstreamClient::new(&route.upstream, target.origin().clone())
                            .map_err(|source| RouteSetupError::Tls {
                                route: route.name.clone(),
                                source,
                            })?,
                    };
                    Ok(Route {
                        upstream: Forwarder::Target(upstream),
                        injector: Injector::new(&route.auth),
                        tokens,
                        rewriter: Rewriter::new(&route.challenge).map_err(|source| {
                            RouteSetupError::Challenge {
                                route: route.name.clone(),
                                source,
                            }
                        })?,
                        target,
                        paths: forward::path_map(route),
                        replay_limit,
                        name: Arc::from(route.name.as_str()),
                        plan: route.clone(),
                    })
                })
                .collect::<Result<Vec<_>, RouteSetupError>>()?;
        Ok(Proxy {
            router: Router::new(&plan.routes),
            routes,
            state: StateBackend::new(shared.sessions.clone(), shared.redis.as_ref()),
            shared,
            body_read_timeout: plan.server.limits.body_read_timeout,
            trace_max_body: plan.trace.as_ref().map_or(0, |trace| {
                if trace.bodies {
                    trace.max_body
                } else {
                    0
                }
            }),
            access: AccessLog::new(plan),
        })
    }

    /// Sends the attempts of the route named `route` to `stand_in` instead of its target, so
    /// that a test sees exactly what would reach the target. False when no route has that name.
    pub fn forward_to(&mut self, route: &str, stand_in: Arc<dyn DynForward>) -> bool {
        match self.routes.iter_mut().find(|r| r.plan.name == route) {
            Some(found) => {
                found.upstream = Forwarder::StandIn(stand_in);
                true
            }
            None => false,
        }
    }

    /// Takes leases and tokens from `state` instead of this process's stores.
    #[cfg(test)]
    pub(crate) fn use_state(&mut self, state: StateBackend) {
        self.state = state;
    }

    /// Runs one exchange. Never fails: every failure becomes a response (and a record). The
    /// access log's line is written once the response body has ended.
    pub async fn handle(
        &self,
        request: Request<RequestBody>,
        conn: &ConnInfo,
    ) -> Response<ProxyBody> {
        let mut outcome = Outcome::default();
        let Some(access) = &self.access else {
            return self.exchange(request, conn, &mut outcome).await;
        };
        let started = access.start(request.method(), request.uri());
        let response = self.exchange(request, conn, &mut outcome).await;
        let write = access.finish(started, conn.remote, outcome, response.status());
        response.map(|body| body::stream(TapBody::new(body, 0, write)))
    }

    async fn exchange(
        &self,
        mut request: Request<RequestBody>,
        conn: &ConnInfo,
        outcome: &mut Outcome,
    ) -> Response<ProxyBody> {
        if let Err(screened) = self
            .shared
            .ingress
            .screen(&request, conn.local, &conn.served_host)
        {
            return self.screened(screened, conn);
        }
        let early = self
            .shared
            .tracer
            .as_ref()
            .map(|_| EarlyRequest::of(&request));
        // Routes and client restrictions see the path the target will see.
        let encoded_separators = match path::normalize_request(&mut request) {
            Ok(encoded) => encoded,
            Err(err) => {
                let err = ProxyError::BadPath(err);
                self.shared.metrics.error(err.kind());
                return err.to_response(None);
            }
        };
        let Some(route_index) = self.router.find(&request) else {
            // An unknown client gets the same 401 for every path, so it cannot map the routes.
            let ingress = &self.shared.ingress;
            if ingress.is_required()
                && ingress
                    .authenticate(request.headers_mut(), conn.client.as_ref())
                    .is_err()
            {
                return self.unauthenticated();
            }
            self.shared.metrics.unrouted();
            let err = ProxyError::NoRoute {
                path: request.uri().path().to_owned(),
            };
            return err.to_response(None);
        };
        let route = &self.routes[route_index];
        let mut exchange = Exchange {
            conn,
            route_index,
            route,
            client: None,
            client_host: None,
            session_key: None,
            actions: Default::default(),
            trace: self.shared.tracer.as_ref().map(|tracer| TraceContext {
                tracer: tracer.clone(),
                max_body: self.trace_max_body,
                started: SystemTime::now(),
                clock: Instant::now(),
            }),
            attempted: false,
            replayed_from: None,
            reserved_id: None,
            did: Did::default(),
            upstream_status: None,
        };
        let response = match self.run(&mut exchange, request, encoded_separators).await {
            Ok(response) => response,
            Err(err) => self.fail(&mut exchange, err, early),
        };
        *outcome = Outcome {
            route: Some(route_index),
            client: exchange.client.take(),
            upstream_status: exchange.upstream_status,
            did: exchange.did,
        };
        self.shared
            .metrics
            .route(route_index)
            .response(response.status());
        response
    }

    /// A failed exchange: logged, counted, recorded (when no attempt was), and answered.
    fn fail(
        &self,
        exchange: &mut Exchange<'_>,
        err: ProxyError,
        early: Option<EarlyRequest>,
    ) -> Response<ProxyBody> {
        let route = &exchange.route.plan.name;
        self.shared.metrics.error(err.kind());
        tracing::warn!(route = %route, kind = err.kind(), side = err.side().as_str(), "{err}");
        if let (Some(trace), Some(request), false) = (&exchange.trace, early, exchange.attempted) {
            // After a refused attempt, this record is what the client got instead of its replay.
            let attempt = AttemptTrace {
                id: exchange
                    .reserved_id
                    .take()
                    .unwrap_or_else(|| trace.tracer.next_id()),
                role: Role::Client,
                parent: exchange.replayed_from,
                started: trace.started,
                clock: trace.clock,
                request: request.into_part(),
                request_capture: None,
            };
            trace
                .tracer
                .submit(exchange.record(attempt, None, None, Some(err.info())));
        }
        if matches!(err, ProxyError::Unauthenticated) {
            return self.unauthenticated();
        }
        err.to_response(Some(route))
    }

    /// A request refused before routing, so that nothing of it is injected or forwarded: not
    /// addressed to the proxy, or a browser's cross-site request. Counted, and logged at a
    /// bounded rate like refused credentials.
    fn screened(&self, screened: Screened, conn: &ConnInfo) -> Response<ProxyBody> {
        let err = match screened {
            Screened::Misdirected => ProxyError::Misdirected,
            Screened::CrossSite => ProxyError::CrossSite,
        };
        self.shared.metrics.error(err.kind());
        if self.shared.ingress.should_log_denial() {
            tracing::warn!(client = %conn.remote, kind = err.kind(), "refused: {err}");
        }
        err.to_response(None)
    }

    /// 401 with the proxy's own challenge. It names no route: a client that has not proved who
    /// it is learns nothing about what lies behind the proxy.
    fn unauthenticated(&self) -> Response<ProxyBody> {
        let mut response = ProxyError::Unauthenticated.to_response(None);
        for challenge in self.shared.ingress.challenge() {
            response
                .headers_mut()
                .append(header::WWW_AUTHENTICATE, challenge);
        }
        response
    }

    // The rare paths (peeking, draining, re-login) are boxed where they are awaited: inline they
    // would grow this future, which is moved into place for every request, by kilobytes.
    async fn run(
        &self,
        x: &mut Exchange<'_>,
        mut request: Request<RequestBody>,
        encoded_separators: bool,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        self.admit(x, request.headers_mut())?;
        if encoded_separators && !x.route.plan.allow_encoded_slashes {
            return Err(ProxyError::BadPath(path::PathError::EncodedSeparator));
        }
        let declared_length = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let (mut head, incoming) = forward::prepare(x, request)?;
        if x.route.plan.auth.normalize {
            normalize_client_authorization(x, &mut head.headers);
        }
        let session_plan = x.route.plan.session.as_ref();
        if session_plan.is_some() {
            x.session_key = self
                .shared
                .sessions
                .key_for(&x.route.plan.name, x.client.as_deref(), &head.headers)
                .map_err(|missing| ProxyError::SessionKeyMissing {
                    header: missing.header,
                })?;
        }
        // The client's cookies give way to the session's on each attempt's headers (see
        // `apply_session`), which replaces them in the same lookup that sets the session's.
        let strip_client_cookies = session_plan
            .is_some_and(|plan| plan.cookies && plan.client_cookies == ClientCookies::Strip);
        // A request that has ended with its head (most GETs) has no body to bound, time or
        // read: it goes on as the empty body the reading would have produced.
        let ended = http_body::Body::is_end_stream(&incoming);
        let mut body = match x.route.replay_limit {
            Some(_) if ended => ReplayBody::Buffered(Bytes::new()),
            None if ended => ReplayBody::Streaming(body::empty()),
            Some(limit) => ReplayBody::read(self.client_body(x, incoming), limit, declared_length)
                .await
                .map_err(client_body_error)?,
            None => ReplayBody::Streaming(self.client_body(x, incoming)),
        };
        let mut lease = match &x.session_key {
            Some(key) => Some(
                self.state
                    .lease(&x.route.plan.name, key.clone())
                    .await
                    .map_err(lease_error)?,
            ),
            None => None,
        };
        let mut role = Role::Client;
        let mut parent = None;
        // Why the request is being replayed, once it is.
        let mut replay_after = None;
        loop {
            // Session tokens first: their fetch may set the cookies this attempt sends. Checked
            // before the boxed call, which would cost every session route an allocation.
            let mut held = token_fetch::Held::default();
            if let Some(lease) = lease.as_mut().filter(|_| token_fetch::configured(x)) {
                let refetch = role == Role::Replay;
                held =
                    Box::pin(self.ensure_tokens(x, lease, &head.method, parent, refetch)).await?;
            }
            // Only a record reads the actions: without one there is nothing to forget.
            if x.trace.is_some() {
                x.actions.next_attempt();
            }
            x.actions.replayed = role == Role::Replay;
            // The attempt takes the head's own map, which has room for the cookie and the
            // credential added next; a copy is sized to what it holds, so it stays behind for
            // the replay (if one may follow) rather than being grown on every request.
            let mut headers = if role == Role::Client && body.is_replayable() {
                let copy = head.headers.clone();
                std::mem::replace(&mut head.headers, copy)
            } else {
                std::mem::take(&mut head.headers)
            };
            apply_session(x, lease.as_ref(), &head, &mut headers, strip_client_cookies);
            let token_generation = self.authorize(x, &mut headers).await?;
            let sent_tokens = token_fetch::apply(x, held, &mut headers);
            let mut attempt = x.trace.as_ref().map(|trace| {
                let mut attempt = trace.attempt(role, parent, &head, &headers, body.buffered());
                // The id a token fetch made on this attempt's behalf already points at.
                attempt.id = x.reserved_id.take().unwrap_or(attempt.id);
                attempt
            });
            let request_body = tap_request_body(x, attempt.as_mut(), body.take());
            let (mut response, first_byte) = self
                .forward(x, &head, headers, request_body, &mut attempt)
                .await?;
            absorb(x, lease.as_ref(), &head, response.headers());
            if let Some(lease) = lease.as_mut() {
                self.state.commit(lease).await;
            }
            let status = response.status();
            x.upstream_status = Some(status);
            if let Some(why) = replay_after {
                access_log::replay(&x.route.plan.name, why, status);
            }
            let sent_cookie = lease.as_ref().is_some_and(Lease::sent_cookie);
            // Decided before any await: a borrow of the plan held across one trips rustc's
            // higher-ranked `Send` check on the spawned connection future.
            let needs_body = SessionVerdict::needs_body(session_plan, sent_cookie, status);
            let peeked = if needs_body {
                let (peeked_response, bytes) = Box::pin(peek_body(response)).await;
                response = peeked_response;
                Some(bytes)
            } else {
                None
            };
            let may_replay = role == Role::Client && body.is_replayable();
            let token_stale = lease.as_ref().is_some_and(|lease| {
                token_fetch::observe(
                    x,
                    lease,
                    &sent_tokens,
                    status,
                    response.headers(),
                    may_replay,
                )
            });
            let session = SessionVerdict::decide(
                session_plan,
                sent_cookie,
                status,
                peeked.as_deref(),
                may_replay,
            );
            let token = match (&x.route.tokens, token_generation) {
                (Some(tokens), Some(generation)) => {
                    let verdict = TokenVerdict::of(status);
                    if verdict == TokenVerdict::Refetch {
                        self.state.invalidate(tokens, generation).await;
                    }
                    verdict
                }
                _ => TokenVerdict::Keep,
            };
            // A stale session token asks for the same one replay as a refused OAuth token.
            let token = if token_stale {
                TokenVerdict::Refetch
            } else {
                token
            };
            x.actions.token_refused = token == TokenVerdict::Refetch;
            match Next::of(session, token, may_replay) {
                Next::Replay { relogin } => {
                    x.actions.relogin = relogin;
                    let drained = Box::pin(drain_body(
                        response,
                        x.trace.as_ref().map_or(0, |trace| trace.max_body),
                    ))
                    .await;
                    if let (Some(trace), Some(attempt)) = (&x.trace, attempt) {
                        parent = Some(attempt.id);
                        x.replayed_from = parent;
                        let (status, headers, captured) = drained;
                        let record = x.record(
                            attempt,
                            Some((status, http::Version::HTTP_11, headers, Some(captured))),
                            Some(first_byte),
                            None,
                        );
                        trace.tracer.submit(record);
                    }
                    if relogin {
                        x.did.add(Did::RELOGIN);
                        if let Some(lease) = lease.as_mut() {
                            Box::pin(self.relogin(x, lease, parent)).await?;
                        }
                    }
                    replay_after = Some(if relogin {
                        "re-login"
                    } else {
                        "a refused token"
                    });
                    role = Role::Replay;
                    x.did.add(Did::REPLAY);
                    continue;
                }
                Next::Respond { start_fresh: true } => {
                    if let Some(lease) = lease.as_mut() {
                        if Box::pin(self.state.begin_relogin(lease)).await == Relogin::Leader {
                            x.actions.relogin = true;
                            x.did.add(Did::RELOGIN);
                            access_log::relogin(
                                &x.route.plan.name,
                                ReloginOutcome::Dropped { replayed: false },
                            );
                        }
                    }
                }
                Next::Respond { start_fresh: false } => {}
            }
            // The record holds the response as the target sent it; the actions say what the
            // client got instead.
            let target_headers = x.trace.as_ref().map(|_| response.headers().clone());
            respond::rewrite_head(x, response.headers_mut(), status);
            if let Some(target_headers) = &target_headers {
                exchange::client_changes(&mut x.actions, target_headers, response.headers());
            }
            let pending = match (&x.trace, attempt, target_headers) {
                (Some(trace), Some(mut attempt), Some(target_headers)) => {
                    let request_capture = attempt.request_capture.take();
                    // Nothing reads the actions after this last record.
                    let actions = std::mem::take(&mut x.actions);
                    let record = x.record_with(
                        attempt,
                        Some((status, http::Version::HTTP_11, target_headers, None)),
                        Some(first_byte),
                        None,
                        actions,
                    );
                    Some(PendingRecord {
                        tracer: trace.tracer.clone(),
                        record: Box::new(record),
                        request_capture,
                        clock: Instant::now() - first_byte,
                        max_body: trace.max_body,
                    })
                }
                _ => None,
            };
            x.attempted = true;
            let read_ahead = respond::ReadAhead {
                bytes: session_plan.map_or(DEFAULT_REPLAY_LIMIT, |plan| plan.replay_body_limit),
                stall: x.route.plan.upstream.request_timeout,
            };
            return Ok(respond::respond(response, lease, pending, read_ahead));
        }
    }

    /// The client's request body, bounded by the route's size limit and the read timeout.
    fn client_body(&self, x: &Exchange<'_>, incoming: RequestBody) -> ProxyBody {
        body::stream(ClientBody::new(
            incoming,
            x.route.plan.max_request_body,
            self.body_read_timeout,
        ))
    }

    /// Phase: only known clients, and only on the routes they are allowed. Their own credential
    /// is removed here and never reaches the target.
    fn admit(&self, x: &mut Exchange<'_>, headers: &mut HeaderMap) -> Result<(), ProxyError> {
        let ingress = &self.shared.ingress;
        let client = ingress
            .authenticate(headers, x.conn.client.as_ref())
            .map_err(|denied| {
                if ingress.should_log_denial() {
                    tracing::warn!(
                        client = %x.conn.remote,
                        reason = ?denied,
                        refused_so_far = ingress.denials(),
                        "refused a client without valid proxy credentials"
                    );
                }
                ProxyError::Unauthenticated
            })?;
        if let (Some(allowed), Some(name)) = (&x.route.plan.clients, &client) {
            if !allowed
                .iter()
                .any(|allowed| allowed.as_str() == name.as_ref())
            {
                return Err(ProxyError::ClientNotAllowed {
                    client: name.to_string(),
                });
            }
        }
        x.client = client;
        Ok(())
    }

    /// Phase: the route's credential — a stored one, or an OAuth token fetched and cached by
    /// the route's token source. Returns the token's generation when a token went on.
    async fn authorize(
        &self,
        x: &mut Exchange<'_>,
        headers: &mut HeaderMap,
    ) -> Result<Option<u64>, ProxyError> {
        let route = x.route;
        let Some(tokens) = &route.tokens else {
            if let Injected::Stored(kind) = route.injector.inject(headers) {
                x.actions.auth_injected = Some(kind);
                x.did.add(Did::AUTH_INJECTED);
            }
            return Ok(None);
        };
        if !route.injector.applies(headers, &AUTHORIZATION) {
            return Ok(None);
        }
        let token = self.state.token(tokens).await.map_err(token_error)?;
        headers.insert(AUTHORIZATION, token.authorization().clone());
        x.actions.auth_injected = Some("oauth2");
        x.did.add(Did::AUTH_INJECTED);
        if token.fetched() {
            x.actions.token_fetched = true;
            x.did.add(Did::TOKEN_FETCHED);
        }
        Ok(Some(token.generation()))
    }

    /// Phase: one attempt to the target, up to its response head. A failure is recorded here,
    /// with the request as it was sent.
    async fn forward(
        &self,
        x: &mut Exchange<'_>,
        head: &Head,
        headers: HeaderMap,
        body: ProxyBody,
        attempt: &mut Option<AttemptTrace>,
    ) -> Result<(Response<ProxyBody>, Duration), ProxyError> {
        let clock = Instant::now();
        let request = head.request(headers, body);
        let sent = match &x.route.upstream {
            Forwarder::Target(client) => client
                .forward(request)
                .await
                .map(|response| response.map(|incoming| upstream_body(x, incoming))),
            Forwarder::StandIn(stand_in) => stand_in.forward_boxed(request).await,
        };
        let elapsed = clock.elapsed();
        self.shared
            .metrics
            .route(x.route_index)
            .upstream_latency(elapsed);
        match sent {
            Ok(response) => Ok((response, elapsed)),
            Err(err) => {
                let err = ProxyError::from(err);
                if let (Some(trace), Some(attempt)) = (&x.trace, attempt.take()) {
                    // A failed login is not what the client gets: the proxy's error record is.
                    let login = matches!(attempt.role, Role::Login | Role::SessionTokenFetch);
                    trace
                        .tracer
                        .submit(x.record(attempt, None, None, Some(err.info())));
                    x.attempted |= !login;
                }
                Err(err)
            }
        }
    }

    /// The session is gone: leader drops the jar and runs the route's login request, if any;
    /// otherwise the replay itself, sent without a cookie, opens the new session.
    async fn relogin(
        &self,
        x: &mut Exchange<'_>,
        lease: &mut Lease,
        parent: Option<u64>,
    ) -> Result<(), ProxyError> {
        if self.state.begin_relogin(lease).await != Relogin::Leader {
            return Ok(());
        }
        let Some(login) = x
            .route
            .plan
            .session
            .as_ref()
            .and_then(|plan| plan.login.as_ref())
        else {
            access_log::relogin(
                &x.route.plan.name,
                ReloginOutcome::Dropped { replayed: true },
            );
            return Ok(());
        };
        let logged_in = self.login(x, lease, parent, login).await;
        let outcome = match &logged_in {
            Ok(status) => ReloginOutcome::LoggedIn(*status),
            Err(err) => ReloginOutcome::Failed(err),
        };
        access_log::relogin(&x.route.plan.name, outcome);
        logged_in.map(drop)
    }

    /// The route's login request, on behalf of the request recorded as `parent`; its status.
    async fn login(
        &self,
        x: &mut Exchange<'_>,
        lease: &mut Lease,
        parent: Option<u64>,
        login: &crate::config::LoginPlan,
    ) -> Result<StatusCode, ProxyError> {
        // The login is an attempt of its own, recorded with its own actions.
        x.actions.next_attempt();
        let head = forward::login_head(
            &x.route.target,
            &login.method,
            &login.path,
            login.content_type.as_deref(),
        )?;
        let mut headers = head.headers.clone();
        self.authorize(x, &mut headers).await?;
        let login_body = login
            .body
            .as_ref()
            .map(|body| Bytes::copy_from_slice(body.expose().as_bytes()));
        let mut attempt = x.trace.as_ref().map(|trace| {
            let mut attempt = trace.attempt(Role::Login, parent, &head, &headers, None);
            // The login body is a secret: its record shows the size, never the bytes.
            attempt.request.body = login_body.as_ref().map(|body| CapturedBody {
                bytes: Bytes::new(),
                total_size: body.len() as u64,
                truncated: true,
            });
            attempt
        });
        let body = login_body.map_or_else(body::empty, body::full);
        let (response, first_byte) = self.forward(x, &head, headers, body, &mut attempt).await?;
        absorb(x, Some(&*lease), &head, response.headers());
        self.state.commit(lease).await;
        let (status, response_headers, captured) =
            drain_body(response, x.trace.as_ref().map_or(0, |trace| trace.max_body)).await;
        x.submit_own(attempt, (status, response_headers, captured), first_byte);
        if !login.expect_status.contains(&status) {
            return Err(ProxyError::LoginFailed {
                status,
                path: login.path.clone(),
            });
        }
        Ok(status)
    }
}

/// Phase: the session's cookies on the request (merged with the client's when it keeps its own;
/// with `strip_client`, the client's are removed, whether or not the session has any).
fn apply_session(
    x: &mut Exchange<'_>,
    lease: Option<&Lease>,
    head: &Head,
    headers: &mut HeaderMap,
    strip_client: bool,
) {
    let Some((cookie, names)) = lease.and_then(|lease| lease.cookie_header(head.path())) else {
        if strip_client {
            headers.remove(header::COOKIE);
        }
        return;
    };
    // One lookup of the name for reading and writing: this runs for every session request.
    match headers.entry(header::COOKIE) {
        header::Entry::Occupied(mut client) => {
            let client_kept = client.get().to_str().ok().filter(|_| !strip_client);
            let merged = client_kept.and_then(|client| {
                http::HeaderValue::from_str(&format!(
                    "{client}; {}",
                    cookie.to_str().unwrap_or_default()
                ))
                .ok()
            });
            client.insert(merged.unwrap_or(cookie));
        }
        header::Entry::Vacant(none) => {
            none.insert(cookie);
        }
    }
    x.did.add(Did::COOKIES_REPLAYED);
    // Only a trace record reads the names.
    if x.trace.is_some() {
        x.actions.cookies_replayed = names;
    }
}

/// Phase: every response updates the jar (targets rotate session ids).
fn absorb(x: &mut Exchange<'_>, lease: Option<&Lease>, head: &Head, headers: &HeaderMap) {
    if let Some(lease) = lease {
        let names = lease.absorb(head.path(), headers);
        x.actions.cookies_stored.extend(names);
        if lease.opened_session() {
            x.actions.session_opened = true;
            x.did.add(Did::SESSION_OPENED);
        }
    }
}

/// Phase: a passed-through credential with a doubled scheme (`Bearer Bearer x`, a token pasted
/// with its prefix into a field that adds one) is fixed, and the exchange says so.
fn normalize_client_authorization(x: &mut Exchange<'_>, headers: &mut HeaderMap) {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return;
    };
    if let Some((fixed, what)) = crate::auth::hygiene::normalize_authorization(value) {
        tracing::warn!(route = %x.route.plan.name, "client Authorization fixed: {what}");
        headers.insert(AUTHORIZATION, fixed);
        x.actions.authorization_normalised = Some(what);
    }
}

/// A streamed request body is captured for the trace as it goes to the target.
fn tap_request_body(
    x: &Exchange<'_>,
    attempt: Option<&mut AttemptTrace>,
    body: ProxyBody,
) -> ProxyBody {
    let (Some(trace), Some(attempt)) = (&x.trace, attempt) else {
        return body;
    };
    if attempt.request.body.is_some() {
        return body;
    }
    let slot: CaptureSlot = Arc::new(Mutex::new(None));
    attempt.request_capture = Some(slot.clone());
    body::stream(TapBody::new(body, trace.max_body, move |captured, _end| {
        if let Ok(mut slot) = slot.lock() {
            *slot = Some(captured);
        }
    }))
}

/// The target's response body. `request_timeout` bounds each pause in it as it bounds the wait
/// for the head: a target that stops sending midway must not hold the client (and, with
/// `serialize`, the whole session) forever.
fn upstream_body(x: &Exchange<'_>, incoming: UpstreamBody) -> ProxyBody {
    body::stream(IdleTimeout::new(
        incoming,
        x.route.plan.upstream.request_timeout,
    ))
}

/// Reads a response that will not reach the client (it is replayed), so the connection can be
/// reused and the trace can show it.
async fn drain_body(
    response: Response<ProxyBody>,
    max: usize,
) -> (StatusCode, HeaderMap, CapturedBody) {
    let (parts, body) = response.into_parts();
    let (kept, total) = read_body(body, max).await;
    let captured = CapturedBody {
        truncated: total > kept.len() as u64,
        bytes: kept,
        total_size: total,
    };
    (parts.status, parts.headers, captured)
}

/// Reads the start of a response body to look for `relogin_body_contains`, and puts it back.
async fn peek_body(response: Response<ProxyBody>) -> (Response<ProxyBody>, Bytes) {
    let (parts, body) = response.into_parts();
    let (bytes, _) = read_body(body, RELOGIN_BODY_PEEK).await;
    (
        Response::from_parts(parts, body::full(bytes.clone())),
        bytes,
    )
}

/// Reads a whole body, keeping its first `keep` bytes; returns them and the total size.
/// Frame by frame rather than `BodyExt::collect`, whose future over a boxed body trips rustc's
/// higher-ranked `Send` check when awaited inside the pipeline.
async fn read_body(mut body: ProxyBody, keep: usize) -> (Bytes, u64) {
    let mut kept = bytes::BytesMut::new();
    let mut total = 0u64;
    while let Some(Ok(frame)) = body.frame().await {
        if let Ok(data) = frame.into_data() {
            total += data.len() as u64;
            let room = keep.saturating_sub(kept.len());
            kept.extend_from_slice(&data[..data.len().min(room)]);
        }
    }
    (kept.freeze(), total)
}

/// The client's request as it arrived, for the record of an exchange that fails early. Its
/// URL stays a `Uri` (a shared clone) and is rendered only for such a record.
struct EarlyRequest {
    method: http::Method,
    uri: http::Uri,
    version: http::Version,
    headers: HeaderMap,
}

impl EarlyRequest {
    fn of(request: &Request<RequestBody>) -> EarlyRequest {
        EarlyRequest {
            method: request.method().clone(),
            uri: request.uri().clone(),
            version: request.version(),
            headers: request.headers().clone(),
        }
    }

    fn into_part(self) -> RequestPart {
        RequestPart {
            method: self.method,
            url: exchange::render_url(&self.uri),
            version: self.version,
            headers: self.headers,
            body: None,
        }
    }
}

fn lease_error(err: LeaseFailure) -> ProxyError {
    match err {
        LeaseFailure::Lease(LeaseError::Full { max, .. }) => ProxyError::SessionsFull { max },
        // The proxy and the store are built from one plan: a route with a key keeps sessions.
        LeaseFailure::Lease(err @ LeaseError::NoSessions(_)) => {
            ProxyError::Internal(err.to_string())
        }
        LeaseFailure::Unavailable(down) => ProxyError::StateUnavailable(down),
    }
}

fn token_error(err: TokenFailure) -> ProxyError {
    match err {
        TokenFailure::Fetch(err) => ProxyError::Token(err),
        TokenFailure::Unavailable(down) => ProxyError::StateUnavailable(down),
    }
}

fn client_body_error(err: body::BoxError) -> ProxyError {
    match err.downcast::<ClientBodyFault>() {
        Ok(fault) => ProxyError::ClientBody(*fault),
        Err(other) => ProxyError::ClientBody(ClientBodyFault::Malformed(other.to_string())),
    }
}
