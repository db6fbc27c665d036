//! The per-request pipeline. Each exchange carries an [`Exchange`] context through named
//! phases — match route, prepare, inject auth, forward, finish response — and this module only
//! sequences them; the work of each phase lives in the module that owns it.

pub mod body;
pub mod error;
pub mod headers;
pub mod replay;
pub mod route;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;

use crate::admin::metrics::Metrics;
use crate::auth::{Injected, Injector};
use crate::challenge::Outcome;
use crate::config::{Plan, RouteMatch, RoutePlan};
use crate::server::ingress::{ClientName, Ingress};
use crate::upstream::{TlsSetupError, UpstreamClient};
use body::ProxyBody;
use error::ProxyError;
use headers::PathMap;
use route::Router;

/// What the listener knows about the client connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub remote: SocketAddr,
    pub tls: bool,
    /// The client named by its verified TLS certificate.
    pub client: Option<ClientName>,
}

/// A route with everything it needs at request time, built once.
struct Route {
    plan: RoutePlan,
    upstream: UpstreamClient,
    injector: Injector,
    paths: PathMap,
}

/// The context of one exchange as it moves through the phases.
struct Exchange<'a> {
    conn: &'a ConnInfo,
    route_index: usize,
    route: &'a Route,
    client: Option<ClientName>,
    /// `scheme://host` the client used, for rewriting `Location`.
    client_origin: Option<String>,
    injected: Injected,
    authorization_normalised: Option<String>,
    /// The `WWW-Authenticate` values before and after the rewrite.
    challenge: Option<(Vec<String>, Vec<String>)>,
    warnings: Vec<String>,
}

/// A route whose upstream client could not be built (its `ca_file`, say).
#[derive(Debug, thiserror::Error)]
#[error("route {route:?}: {source}")]
pub struct RouteSetupError {
    pub route: String,
    pub source: TlsSetupError,
}

pub struct Proxy {
    routes: Vec<Route>,
    router: Router,
    ingress: Arc<Ingress>,
    metrics: Arc<Metrics>,
}

impl Proxy {
    pub fn new(
        plan: &Plan,
        metrics: Arc<Metrics>,
        ingress: Arc<Ingress>,
    ) -> Result<Self, RouteSetupError> {
        let routes = plan
            .routes
            .iter()
            .map(|route| {
                Ok(Route {
                    upstream: UpstreamClient::new(&route.upstream).map_err(|source| {
                        RouteSetupError {
                            route: route.name.clone(),
                            source,
                        }
                    })?,
                    injector: Injector::new(&route.auth),
                    paths: path_map(route),
                    plan: route.clone(),
                })
            })
            .collect::<Result<Vec<_>, RouteSetupError>>()?;
        Ok(Proxy {
            router: Router::new(&plan.routes),
            routes,
            ingress,
            metrics,
        })
    }

    /// Runs one exchange. Never fails: every failure becomes a response.
    pub async fn handle(&self, request: Request<Incoming>, conn: &ConnInfo) -> Response<ProxyBody> {
        let Some(route_index) = self.router.find(&request) else {
            self.metrics.unrouted();
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
            client_origin: None,
            injected: Injected::Nothing,
            authorization_normalised: None,
            challenge: None,
            warnings: Vec::new(),
        };
        let response = match self.run(&mut exchange, request).await {
            Ok(response) => response,
            Err(err) => {
                self.metrics.error(err.kind());
                tracing::warn!(route = %route.plan.name, kind = err.kind(), side = err.side().as_str(), "{err}");
                let mut response = err.to_response(Some(&route.plan.name));
                if matches!(err, ProxyError::Unauthenticated) {
                    for challenge in self.ingress.challenge() {
                        response
                            .headers_mut()
                            .append(header::WWW_AUTHENTICATE, challenge);
                    }
                }
                response
            }
        };
        self.metrics.route(route_index).response(response.status());
        response
    }

    async fn run(
        &self,
        exchange: &mut Exchange<'_>,
        mut request: Request<Incoming>,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        self.admit(exchange, request.headers_mut())?;
        let mut upstream_request = prepare(exchange, request)?;
        normalize_client_authorization(exchange, upstream_request.headers_mut());
        exchange.injected = exchange
            .route
            .injector
            .inject(upstream_request.headers_mut());
        let started = Instant::now();
        let response = exchange.route.upstream.send(upstream_request).await?;
        self.metrics
            .route(exchange.route_index)
            .upstream_latency(started.elapsed());
        Ok(finish_response(exchange, response))
    }
}

impl Proxy {
    /// Phase: only known clients, and only on the routes they are allowed. Their own credential
    /// is removed here and never reaches the target.
    fn admit(
        &self,
        exchange: &mut Exchange<'_>,
        headers: &mut http::HeaderMap,
    ) -> Result<(), ProxyError> {
        let client = self
            .ingress
            .authenticate(headers, exchange.conn.client.as_ref())
            .map_err(|denied| {
                if self.ingress.should_log_denial() {
                    tracing::warn!(
                        client = %exchange.conn.remote,
                        reason = ?denied,
                        refused_so_far = self.ingress.denials(),
                        "refused a client without valid proxy credentials"
                    );
                }
                ProxyError::Unauthenticated
            })?;
        if let (Some(allowed), Some(name)) = (&exchange.route.plan.clients, &client) {
            if !allowed
                .iter()
                .any(|allowed| allowed.as_str() == name.as_ref())
            {
                return Err(ProxyError::ClientNotAllowed {
                    client: name.to_string(),
                });
            }
        }
        exchange.client = client;
        Ok(())
    }
}

/// Builds the request for the target: URL, `Host`, hop-by-hop removal, `X-Forwarded-*`, body
/// limit. The client's body streams through untouched.
fn prepare(
    exchange: &mut Exchange<'_>,
    request: Request<Incoming>,
) -> Result<Request<ProxyBody>, ProxyError> {
    let route = &exchange.route.plan;
    let (mut parts, body) = request.into_parts();
    if let Some(limit) = route.max_request_body {
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|length| length > limit) {
            return Err(ProxyError::BodyTooLarge { limit });
        }
    }
    let client_host = parts.headers.get(header::HOST).cloned().or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    let proto = if exchange.conn.tls { "https" } else { "http" };
    exchange.client_origin = client_host
        .as_ref()
        .and_then(|host| host.to_str().ok())
        .map(|host| format!("{proto}://{host}"));
    parts.uri = upstream_uri(route, &parts.uri)?;
    parts.version = Version::HTTP_11;
    headers::remove_hop_by_hop(&mut parts.headers);
    headers::add_forwarded(
        &mut parts.headers,
        exchange.conn.remote.ip(),
        proto,
        client_host.as_ref(),
    );
    if !route.preserve_host {
        let host = HeaderValue::from_str(&route.upstream.authority)
            .map_err(|_| ProxyError::Internal("upstream authority is not a header value".into()))?;
        parts.headers.insert(header::HOST, host);
    } else if let Some(host) = client_host {
        parts.headers.insert(header::HOST, host);
    }
    let body = match route.max_request_body {
        Some(limit) => body::stream(http_body_util::Limited::new(
            body,
            usize::try_from(limit).unwrap_or(usize::MAX),
        )),
        None => body::stream(body),
    };
    Ok(Request::from_parts(parts, body))
}

/// The target URL for a client URI: the route's base URL plus the path after the prefix
/// (or the whole path), plus the query.
fn upstream_uri(route: &RoutePlan, client: &Uri) -> Result<Uri, ProxyError> {
    let base = route.upstream.url.path().trim_end_matches('/');
    let path = client.path();
    let rest = match (&route.matcher, route.strip_prefix) {
        (RouteMatch::Prefix(prefix), true) => {
            let stripped = path.get(prefix.len() - 1..).unwrap_or("");
            if stripped.is_empty() {
                "/"
            } else {
                stripped
            }
        }
        _ => path,
    };
    let mut target =
        String::with_capacity(route.upstream.origin.len() + base.len() + rest.len() + 64);
    target.push_str(&route.upstream.origin);
    target.push_str(base);
    target.push_str(rest);
    if let Some(query) = client.query() {
        target.push('?');
        target.push_str(query);
    }
    target
        .parse()
        .map_err(|_| ProxyError::BadRequest(format!("cannot forward the path {path:?}")))
}

fn path_map(route: &RoutePlan) -> PathMap {
    let upstream_base = route.upstream.url.path().trim_end_matches('/').to_owned();
    let client_base = match (&route.matcher, route.strip_prefix) {
        (RouteMatch::Prefix(prefix), true) => prefix.trim_end_matches('/').to_owned(),
        _ => String::new(),
    };
    PathMap {
        upstream_origin: route.upstream.origin.clone(),
        upstream_base,
        client_base,
    }
}

/// Phase: a passed-through credential with a doubled scheme (`Bearer Bearer x`, a token pasted
/// with its prefix into a field that adds one) is fixed, and the exchange says so.
fn normalize_client_authorization(exchange: &mut Exchange<'_>, headers: &mut http::HeaderMap) {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return;
    };
    if let Some((fixed, what)) = crate::auth::hygiene::normalize_authorization(value) {
        tracing::warn!(route = %exchange.route.plan.name, "client Authorization fixed: {what}");
        headers.insert(header::AUTHORIZATION, fixed);
        exchange.authorization_normalised = Some(what);
    }
}

/// The client's response: the target's, minus hop-by-hop headers, with the challenge rewritten
/// as the route says and locations pointing back at the proxy; the body streams.
fn finish_response(
    exchange: &mut Exchange<'_>,
    response: Response<Incoming>,
) -> Response<ProxyBody> {
    let (mut parts, body) = response.into_parts();
    headers::remove_hop_by_hop(&mut parts.headers);
    match exchange
        .route
        .plan
        .rewriter
        .rewrite(parts.status, &mut parts.headers)
    {
        Outcome::Untouched => {}
        Outcome::Rewritten { before, after } => exchange.challenge = Some((before, after)),
        Outcome::Malformed { warning } => {
            tracing::warn!(route = %exchange.route.plan.name, "challenge passed through unchanged: {warning}");
            exchange.warnings.push(warning);
        }
    }
    if let Some(origin) = &exchange.client_origin {
        headers::rewrite_locations(&mut parts.headers, &exchange.route.paths, origin);
    }
    Response::from_parts(parts, body::stream(body))
}
