//! One exchange as the pipeline saw it. Built only when tracing is on; it holds raw headers and
//! bodies, and is redacted by the trace module before it reaches a file, the ring buffer or the
//! admin API. Its `Debug` shows header names, body sizes and URLs without their query, never a
//! value that could carry a credential, so that a stray `{:?}` cannot leak one.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, Version};

#[derive(Debug, Clone)]
pub struct ExchangeRecord {
    pub id: u64,
    /// The record this one follows from: a login or a replay points at the request that caused it.
    pub parent: Option<u64>,
    pub role: Role,
    pub started: SystemTime,
    pub timings: Timings,
    pub client_addr: Option<SocketAddr>,
    /// Shared with the exchange (and the route's plan) rather than copied for each record.
    pub client_name: Option<Arc<str>>,
    pub route: Option<Arc<str>>,
    /// Already hashed: never the raw key.
    pub session_key: Option<Arc<str>>,
    pub request: RequestPart,
    pub response: Option<ResponsePart>,
    pub actions: Actions,
    pub error: Option<ErrorInfo>,
}

impl ExchangeRecord {
    /// The bytes of its captured bodies: what makes a record large, and what the writer's
    /// queue bound counts.
    pub fn body_bytes(&self) -> usize {
        let request = self.request.body.as_ref().map_or(0, |b| b.bytes.len());
        let response = self
            .response
            .as_ref()
            .and_then(|r| r.body.as_ref())
            .map_or(0, |b| b.bytes.len());
        request + response
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A client's request as forwarded to the target.
    Client,
    /// A login request the proxy made on its own to open a session.
    Login,
    /// The proxy's second attempt of a client request after re-login or a new token.
    Replay,
    /// A request to an OAuth token endpoint.
    TokenFetch,
    /// A request the proxy made to fetch a session token (`[[routes.session.tokens]]`).
    SessionTokenFetch,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Login => "login",
            Role::Replay => "replay",
            Role::TokenFetch => "token",
            Role::SessionTokenFetch => "token_fetch",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Timings {
    /// Time to get a connection from the pool or open one, when known.
    pub connect: Option<Duration>,
    /// Time until the response head arrived.
    pub first_byte: Option<Duration>,
    /// Time until the response body ended (or the exchange failed).
    pub total: Duration,
}

#[derive(Clone)]
pub struct RequestPart {
    pub method: Method,
    /// The URL as sent upstream (absolute).
    pub url: String,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Option<CapturedBody>,
}

#[derive(Clone)]
pub struct ResponsePart {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Option<CapturedBody>,
}

/// The first `max_body` bytes of a body, and how big it really was.
#[derive(Clone, Default)]
pub struct CapturedBody {
    pub bytes: Bytes,
    pub total_size: u64,
    pub truncated: bool,
}

/// What the proxy did in the attempt a record holds, for the trace and for `diagnose`. Every
/// field is true of that record alone (a replay that sent no cookie lists none), except
/// `authorization_normalised` and `warnings`, which are about the client's request.
#[derive(Debug, Clone, Default)]
pub struct Actions {
    /// The auth kind injected (`basic`, `bearer`, `header`, `oauth2`), never the value.
    pub auth_injected: Option<&'static str>,
    /// Names of the session cookies sent with this request, shared with the jar, which keeps
    /// them with the `Cookie` header it last built.
    pub cookies_replayed: Arc<[String]>,
    /// Names of the cookies this response put in the session's jar.
    pub cookies_stored: Vec<String>,
    pub session_opened: bool,
    /// This response showed the session gone: the proxy dropped it (and logged in again when
    /// the route has a login).
    pub relogin: bool,
    /// This request is the proxy's second attempt of the client's request.
    pub replayed: bool,
    /// The `WWW-Authenticate` values before and after the rewrite, when it changed them.
    pub challenge_before: Vec<String>,
    pub challenge_after: Vec<String>,
    /// What was wrong with the client's `Authorization` and was fixed (`doubled scheme Bearer`).
    pub authorization_normalised: Option<String>,
    pub token_fetched: bool,
    /// This response refused the token the proxy injected: it was dropped for a new one. On a
    /// session token fetch: the fetch replaces a token the target refused (a refetch).
    pub token_refused: bool,
    /// What the client's response lacks of the target's: the names of the cookies whose
    /// `Set-Cookie` the proxy kept for its session, and the response headers it removed.
    pub cookies_withheld: Vec<String>,
    pub headers_removed: Vec<String>,
    /// The client's `Location`, pointing back at the proxy, when it differs from the target's;
    /// without query or fragment, which are the target's (redacted in the response headers).
    pub location_rewritten: Option<String>,
    pub warnings: Vec<String>,
}

impl Actions {
    /// Forgets what belonged to the previous attempt; keeps what is about the client's request.
    pub fn next_attempt(&mut self) {
        let normalised = self.authorization_normalised.take();
        let warnings = std::mem::take(&mut self.warnings);
        *self = Actions {
            authorization_normalised: normalised,
            warnings,
            ..Actions::default()
        };
    }
}

#[derive(Debug, Clone)]
pub struct ErrorInfo {
    /// A stable short name: `connect_refused`, `tls`, `timeout`, `no_route`, ...
    pub kind: String,
    /// `client`, `upstream` or `proxy`.
    pub side: &'static str,
    pub detail: String,
}

impl fmt::Debug for RequestPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestPart")
            .field("method", &self.method)
            .field("url", &DebugUrl(&self.url))
            .field("version", &self.version)
            .field("headers", &DebugHeaders(&self.headers))
            .field("body", &self.body)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for ResponsePart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponsePart")
            .field("status", &self.status)
            .field("version", &self.version)
            .field("headers", &DebugHeaders(&self.headers))
            .field("body", &self.body)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for CapturedBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CapturedBody")
            .field("captured", &self.bytes.len())
            .field("total_size", &self.total_size)
            .field("truncated", &self.truncated)
            .finish()
    }
}

/// Headers whose values say how a message is framed or typed and never carry a credential;
/// every other value prints as `[REDACTED]`. A list of what is safe, not of what is secret, so
/// that a custom auth header (`X-Api-Key`, `X-CSRF-Token`, ...) is hidden without being known.
const SHOWN_HEADERS: &[http::HeaderName] = &[
    http::header::CONTENT_TYPE,
    http::header::CONTENT_LENGTH,
    http::header::CONTENT_ENCODING,
    http::header::TRANSFER_ENCODING,
    http::header::ACCEPT,
    http::header::DATE,
];

/// A header map as `Debug` shows it: every name, in order, with only harmless values.
struct DebugHeaders<'a>(&'a HeaderMap);

impl fmt::Debug for DebugHeaders<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (name, value) in self.0 {
            if SHOWN_HEADERS.contains(name) && !value.is_sensitive() {
                map.entry(&name.as_str(), &value);
            } else {
                map.entry(&name.as_str(), &"[REDACTED]");
            }
        }
        map.finish()
    }
}

/// A URL as `Debug` shows it: without its query and fragment, which may hold tokens
/// (`?access_token=`, `?code=`).
struct DebugUrl<'a>(&'a str);

impl fmt::Debug for DebugUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.find(['?', '#']) {
            Some(cut) => write!(f, "{:?}", format!("{}?[REDACTED]", &self.0[..cut])),
            None => write!(f, "{:?}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (
                    http::HeaderName::from_static(name),
                    HeaderValue::from_static(value),
                )
            })
            .collect()
    }

    fn body(text: &'static str) -> Option<CapturedBody> {
        Some(CapturedBody {
            bytes: Bytes::from_static(text.as_bytes()),
            total_size: text.len() as u64,
            truncated: false,
        })
    }

    #[test]
    fn debug_of_a_record_shows_names_and_sizes_but_no_credential_or_body() {
        let record = ExchangeRecord {
            id: 7,
            parent: None,
            role: Role::Client,
            started: SystemTime::UNIX_EPOCH,
            timings: Timings::default(),
            client_addr: None,
            client_name: Some("iiq".into()),
            route: Some("osmc".into()),
            session_key: None,
            request: RequestPart {
                method: Method::POST,
                url: "https://osmc.example/api/users?access_token=qs-t0ken#frag".into(),
                version: Version::HTTP_11,
                headers: headers(&[
                    ("authorization", "Basic c3ZjOnMzY3JldA=="),
                    ("cookie", "JSESSIONID=j5ess10n"),
                    ("x-api-key", "k3y-v4lue"),
                    ("content-type", "application/json"),
                ]),
                body: body(r#"{"userName":"jdoe","password":"b0dy-pw"}"#),
            },
            response: Some(ResponsePart {
                status: StatusCode::OK,
                version: Version::HTTP_11,
                headers: headers(&[("set-cookie", "JSESSIONID=n3w-s1d; Path=/")]),
                body: body(r#"{"id":"u-1","token":"r3sp-t0ken"}"#),
            }),
            actions: Actions::default(),
            error: None,
        };
        let shown = format!("{record:?} {record:#?}");
        for secret in [
            "c3ZjOnMzY3JldA",
            "j5ess10n",
            "k3y-v4lue",
            "qs-t0ken",
            "frag",
            "b0dy-pw",
            "jdoe",
            "n3w-s1d",
            "r3sp-t0ken",
        ] {
            assert!(!shown.contains(secret), "{secret} shows: {shown}");
        }
        for visible in [
            "\"authorization\": \"[REDACTED]\"",
            "\"set-cookie\": \"[REDACTED]\"",
            "\"content-type\": \"application/json\"",
            "https://osmc.example/api/users?[REDACTED]",
            "total_size: 40",
        ] {
            assert!(shown.contains(visible), "{visible} missing: {shown}");
        }
    }
}
