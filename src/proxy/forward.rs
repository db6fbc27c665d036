//! Phase "prepare": the request the target gets — its URL, `Host`, hop-by-hop removal and
//! `X-Forwarded-*` — kept as a [`Head`] so that a replay sends the same request again.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Uri, Version};
use hyper::body::Incoming;

use super::body::ProxyBody;
use super::error::ProxyError;
use super::exchange::Exchange;
use super::headers::{self, PathMap};
use crate::config::{RouteMatch, RoutePlan};

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

/// Splits the client's request into the upstream head and the client's body.
pub fn prepare(
    exchange: &mut Exchange<'_>,
    request: Request<Incoming>,
) -> Result<(Head, Incoming), ProxyError> {
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
    let uri = upstream_uri(route, &parts.uri)?;
    headers::remove_hop_by_hop(&mut parts.headers);
    headers::add_forwarded(
        &mut parts.headers,
        exchange.conn.remote.ip(),
        proto,
        client_host.as_ref(),
    );
    set_host(route, &mut parts.headers, client_host)?;
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
    route: &RoutePlan,
    method: &Method,
    path: &str,
    content_type: Option<&str>,
) -> Result<Head, ProxyError> {
    let client_uri: Uri = path
        .parse()
        .map_err(|_| ProxyError::Internal(format!("login path {path:?} is not a valid path")))?;
    let mut headers = HeaderMap::new();
    set_host(route, &mut headers, None)?;
    if let Some(content_type) = content_type.and_then(|c| HeaderValue::from_str(c).ok()) {
        headers.insert(header::CONTENT_TYPE, content_type);
    }
    Ok(Head {
        method: method.clone(),
        uri: upstream_uri(route, &client_uri)?,
        headers,
    })
}

fn set_host(
    route: &RoutePlan,
    headers: &mut HeaderMap,
    client_host: Option<HeaderValue>,
) -> Result<(), ProxyError> {
    let host = match client_host {
        Some(host) if route.preserve_host => host,
        _ => HeaderValue::from_str(&route.upstream.authority)
            .map_err(|_| ProxyError::Internal("upstream authority is not a header value".into()))?,
    };
    headers.insert(header::HOST, host);
    Ok(())
}

/// The target URL for a client URI: the route's base URL plus the path after the prefix
/// (or the whole path), plus the query.
fn upstream_uri(route: &RoutePlan, client: &Uri) -> Result<Uri, ProxyError> {
    let base = route.upstream.url.path().trim_end_matches('/');
    let path = client.path();
    let rest = match (&route.matcher, route.strip_prefix) {
        (RouteMatch::Prefix(prefix), true) => match path.get(prefix.len() - 1..) {
            Some(stripped) if !stripped.is_empty() => stripped,
            _ => "/",
        },
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
