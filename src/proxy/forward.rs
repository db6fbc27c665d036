//! Phase "prepare": the request the target gets — its URL, `Host`, hop-by-hop removal and
//! `X-Forwarded-*` — kept as a [`Head`] so that a replay sends the same request again.

use http::header::{self, HeaderMap, HeaderValue};
use http::uri::{self, Authority, PathAndQuery, Scheme};
use http::{Method, Request, Uri, Version};

use super::error::ProxyError;
use super::exchange::Exchange;
use super::headers::{self, PathMap};
use crate::body::{ProxyBody, RequestBody};
use crate::config::{RouteMatch, RoutePlan, SessionKeyKind};

/// Method, URL and headers of the upstream request; the body travels separately.
pub struct Head {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
}

impl Head {
    /// The path the session jar matches cookies against.
    pub fn path(&self) -> &str {
        self.uri.path()
    }

    pub fn request(&self, headers: HeaderMap, body: ProxyBody) -> Request<ProxyBody> {
        let mut request = Request::new(body);
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.version_mut() = Version::HTTP_11;
        *request.headers_mut() = headers;
        request
    }
}

/// Where a route's requests go, parsed once from the plan so that building each request's
/// URI and `Host` header copies instead of parsing.
pub struct Target {
    /// `scheme://authority/`: what the route's connections dial, and the scheme and authority
    /// of every request URI.
    origin: Uri,
    host: HeaderValue,
    /// The upstream URL's path without its trailing `/` (maybe empty).
    base: String,
    matcher: RouteMatch,
    strip_prefix: bool,
    preserve_host: bool,
}

/// A route's upstream URL that `http` cannot represent (validation normally rules this out).
#[derive(Debug, thiserror::Error)]
#[error("upstream URL {url} cannot be used in a request: {reason}")]
pub struct TargetError {
    url: String,
    reason: &'static str,
}

impl Target {
    pub fn new(route: &RoutePlan) -> Result<Target, TargetError> {
        let upstream = &route.upstream;
        let invalid = |reason| TargetError {
            url: upstream.url.to_string(),
            reason,
        };
        let scheme = Scheme::try_from(upstream.url.scheme()).map_err(|_| invalid("scheme"))?;
        let authority = Authority::try_from(upstream.authority.as_str())
            .map_err(|_| invalid("host and port"))?;
        let origin = Uri::builder()
            .scheme(scheme)
            .authority(authority)
            .path_and_query("/")
            .build()
            .map_err(|_| invalid("host and port"))?;
        Ok(Target {
            origin,
            host: HeaderValue::from_str(&upstream.authority)
                .map_err(|_| invalid("host and port"))?,
            base: upstream.url.path().trim_end_matches('/').to_owned(),
            matcher: route.matcher.clone(),
            strip_prefix: route.strip_prefix,
            preserve_host: route.preserve_host,
        })
    }

    pub fn origin(&self) -> &Uri {
        &self.origin
    }

    /// The target URI for a client URI: the base URL plus the path after the prefix (or the
    /// whole path), plus the query.
    fn uri(&self, client: &Uri) -> Result<Uri, ProxyError> {
        let path = client.path();
        let rest = match (&self.matcher, self.strip_prefix) {
            (RouteMatch::Prefix(prefix), true) => match path.get(prefix.len() - 1..) {
                Some(stripped) if !stripped.is_empty() => stripped,
                _ => "/",
            },
            _ => path,
        };
        let path_and_query = match client.path_and_query() {
            // The common case, a target at the root and the path kept: reuse the parsed path.
            Some(unchanged) if self.base.is_empty() && rest.len() == path.len() => {
                unchanged.clone()
            }
            _ => {
                let query = client.query();
                let mut target = String::with_capacity(
                    self.base.len() + rest.len() + query.map_or(0, |q| q.len() + 1),
                );
                target.push_str(&self.base);
                target.push_str(rest);
                if let Some(query) = query {
                    target.push('?');
                    target.push_str(query);
                }
                PathAndQuery::try_from(target).map_err(|_| {
                    ProxyError::BadRequest(format!("cannot forward the path {path:?}"))
                })?
            }
        };
        let mut parts = uri::Parts::default();
        parts.scheme = self.origin.scheme().cloned();
        parts.authority = self.origin.authority().cloned();
        parts.path_and_query = Some(path_and_query);
        Uri::from_parts(parts)
            .map_err(|_| ProxyError::BadRequest(format!("cannot forward the path {path:?}")))
    }

    fn set_host(&self, headers: &mut HeaderMap, client_host: Option<HeaderValue>) {
        let host = match client_host {
            Some(host) if self.preserve_host => host,
            _ => self.host.clone(),
        };
        headers.insert(header::HOST, host);
    }
}

/// Splits the client's request into the upstream head and the client's body.
pub fn prepare(
    exchange: &mut Exchange<'_>,
    request: Request<RequestBody>,
) -> Result<(Head, RequestBody), ProxyError> {
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
    let target = &exchange.route.target;
    let uri = target.uri(&parts.uri)?;
    let session_key_header = route
        .session
        .as_ref()
        .and_then(|session| match &session.key {
            SessionKeyKind::Header(name) => Some(name),
            _ => None,
        });
    headers::remove_hop_by_hop(&mut parts.headers, session_key_header);
    headers::add_forwarded(
        &mut parts.headers,
        &exchange.conn.forwarded_for,
        exchange.conn.proto(),
        client_host.as_ref(),
    );
    target.set_host(&mut parts.headers, client_host.clone());
    exchange.client_host = client_host;
    Ok((
        Head {
            method: parts.method,
            uri,
            headers: parts.headers,
        },
        body,
    ))
}

/// The head of a login request the proxy sends on its own (`[routes.session] login`).
pub fn login_head(
    target: &Target,
    method: &Method,
    path: &str,
    content_type: Option<&str>,
) -> Result<Head, ProxyError> {
    let client_uri: Uri = path
        .parse()
        .map_err(|_| ProxyError::Internal(format!("login path {path:?} is not a valid path")))?;
    let mut headers = HeaderMap::new();
    target.set_host(&mut headers, None);
    if let Some(content_type) = content_type.and_then(|c| HeaderValue::from_str(c).ok()) {
        headers.insert(header::CONTENT_TYPE, content_type);
    }
    Ok(Head {
        method: method.clone(),
        uri: target.uri(&client_uri)?,
        headers,
    })
}

/// How the route's paths map back from the target to the client, for `Location`.
pub fn path_map(route: &RoutePlan) -> PathMap {
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
