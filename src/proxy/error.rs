//! The per-request error tier: every failure becomes a status and a JSON body that says which
//! route and which side failed. Never a secret in it: details come from typed errors whose
//! messages hold addresses and reasons only.

use http::{header, HeaderValue, Response, StatusCode};
use serde::Serialize;

use crate::body::{full, ClientBodyFault, ProxyBody};
use crate::trace::record::ErrorInfo;
use crate::upstream::UpstreamError;

/// Who is at fault, for the operator reading the body or the trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Client,
    Upstream,
    Proxy,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Upstream => "upstream",
            Side::Proxy => "proxy",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no route matches {path}")]
    NoRoute { path: String },
    #[error(transparent)]
    Upstream(UpstreamError),
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    BadPath(super::path::PathError),
    #[error("this proxy requires a known client credential")]
    Unauthenticated,
    #[error("client {client:?} may not use this route")]
    ClientNotAllowed { client: String },
    #[error("request body larger than {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error("{0}")]
    ClientBody(ClientBodyFault),
    #[error(transparent)]
    Token(crate::auth::oauth::OAuthError),
    #[error("the session login request to {path} answered {status}")]
    LoginFailed { status: StatusCode, path: String },
    /// `why` names the fetch request and what was wrong with its answer, never a value.
    #[error("session token {token:?} could not be fetched: {why}")]
    TokenFetchFailed { token: String, why: String },
    #[error("the request has no {header} header, which names its session on this route")]
    SessionKeyMissing { header: http::HeaderName },
    #[error("all {max} sessions of this route are in use; retry when one is free")]
    SessionsFull { max: usize },
    #[error(transparent)]
    StateUnavailable(crate::state::Unavailable),
    #[error("{0}")]
    Internal(String),
    #[error(
        "this proxy does not serve the host this request is addressed to; add it to server.hosts"
    )]
    Misdirected,
    #[error("a browser's cross-site request is refused; set server.allow_browsers = true to serve browsers")]
    CrossSite,
}

impl From<UpstreamError> for ProxyError {
    fn from(err: UpstreamError) -> Self {
        match err {
            UpstreamError::RequestBody(fault) => ProxyError::ClientBody(fault),
            other => ProxyError::Upstream(other),
        }
    }
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoRoute { .. } => StatusCode::NOT_FOUND,
            ProxyError::Upstream(err) if err.is_timeout() => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ProxyError::BadRequest(_) | ProxyError::BadPath(_) => StatusCode::BAD_REQUEST,
            ProxyError::Unauthenticated => StatusCode::UNAUTHORIZED,
            ProxyError::ClientNotAllowed { .. } => StatusCode::FORBIDDEN,
            ProxyError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::ClientBody(ClientBodyFault::TooLarge(_)) => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::ClientBody(ClientBodyFault::Timeout(_)) => StatusCode::REQUEST_TIMEOUT,
            ProxyError::ClientBody(ClientBodyFault::Malformed(_)) => StatusCode::BAD_REQUEST,
            ProxyError::Token(_)
            | ProxyError::LoginFailed { .. }
            | ProxyError::TokenFetchFailed { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ProxyError::SessionKeyMissing { .. } => StatusCode::BAD_REQUEST,
            ProxyError::SessionsFull { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::StateUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Misdirected => StatusCode::MISDIRECTED_REQUEST,
            ProxyError::CrossSite => StatusCode::FORBIDDEN,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            ProxyError::NoRoute { .. } => "no_route",
            ProxyError::Upstream(err) => err.kind(),
            ProxyError::BadRequest(_) => "bad_request",
            ProxyError::BadPath(_) => "bad_path",
            ProxyError::Unauthenticated => "client_unauthenticated",
            ProxyError::ClientNotAllowed { .. } => "client_not_allowed",
            ProxyError::BodyTooLarge { .. } => "body_too_large",
            ProxyError::ClientBody(ClientBodyFault::TooLarge(_)) => "body_too_large",
            ProxyError::ClientBody(ClientBodyFault::Timeout(_)) => "client_body_timeout",
            ProxyError::ClientBody(ClientBodyFault::Malformed(_)) => "malformed_body",
            ProxyError::Token(err) => err.kind(),
            ProxyError::LoginFailed { .. } => "login_failed",
            ProxyError::TokenFetchFailed { .. } => "token_fetch_failed",
            ProxyError::Internal(_) => "internal",
            ProxyError::SessionKeyMissing { .. } => "session_key_missing",
            ProxyError::SessionsFull { .. } => "sessions_full",
            ProxyError::StateUnavailable(_) => "state_unavailable",
            ProxyError::Misdirected => "misdirected_request",
            ProxyError::CrossSite => "cross_site_request",
        }
    }

    pub fn side(&self) -> Side {
        match self {
            ProxyError::NoRoute { .. }
            | ProxyError::BadRequest(_)
            | ProxyError::BadPath(_)
            | ProxyError::BodyTooLarge { .. }
            | ProxyError::Unauthenticated
            | ProxyError::ClientNotAllowed { .. }
            | ProxyError::ClientBody(_)
            | ProxyError::SessionKeyMissing { .. }
            | ProxyError::Misdirected
            | ProxyError::CrossSite => Side::Client,
            ProxyError::Upstream(_)
            | ProxyError::Token(_)
            | ProxyError::LoginFailed { .. }
            | ProxyError::TokenFetchFailed { .. } => Side::Upstream,
            ProxyError::Internal(_)
            | ProxyError::SessionsFull { .. }
            | ProxyError::StateUnavailable(_) => Side::Proxy,
        }
    }

    /// The error as the trace records it.
    pub fn info(&self) -> ErrorInfo {
        ErrorInfo {
            kind: self.kind().to_owned(),
            side: self.side().as_str(),
            detail: self.to_string(),
        }
    }

    /// The response the client gets: `{"error", "route", "side", "detail"}`, and `header` when
    /// a header the route needs is missing.
    pub fn to_response(&self, route: Option<&str>) -> Response<ProxyBody> {
        #[derive(Serialize)]
        struct Body<'a> {
            error: &'a str,
            route: Option<&'a str>,
            side: Side,
            #[serde(skip_serializing_if = "Option::is_none")]
            header: Option<&'a str>,
            /// The session token that could not be fetched.
            #[serde(skip_serializing_if = "Option::is_none")]
            token: Option<&'a str>,
            detail: String,
        }
        let body = Body {
            error: self.kind(),
            route,
            side: self.side(),
            header: match self {
                ProxyError::SessionKeyMissing { header } => Some(header.as_str()),
                _ => None,
            },
            token: match self {
                ProxyError::TokenFetchFailed { token, .. } => Some(token.as_str()),
                _ => None,
            },
            detail: self.to_string(),
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
        let mut response = Response::new(full(bytes));
        *response.status_mut() = self.status();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
            .headers_mut()
            .insert("x-provproxy-error", HeaderValue::from_static("1"));
        response
    }
}
