//! One exchange as the pipeline saw it. Built only when tracing is on; it holds raw headers and
//! bodies, and is redacted by the trace module before it reaches a file, the ring buffer or the
//! admin API.

use std::net::SocketAddr;
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
    pub client_name: Option<String>,
    pub route: Option<String>,
    /// Already hashed: never the raw key.
    pub session_key: Option<String>,
    pub request: RequestPart,
    pub response: Option<ResponsePart>,
    pub actions: Actions,
    pub error: Option<ErrorInfo>,
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
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Login => "login",
            Role::Replay => "replay",
            Role::TokenFetch => "token",
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

#[derive(Debug, Clone)]
pub struct RequestPart {
    pub method: Method,
    /// The URL as sent upstream (absolute).
    pub url: String,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Option<CapturedBody>,
}

#[derive(Debug, Clone)]
pub struct ResponsePart {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Option<CapturedBody>,
}

/// The first `max_body` bytes of a body, and how big it really was.
#[derive(Debug, Clone, Default)]
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
    /// Names of the session cookies sent with this request.
    pub cookies_replayed: Vec<String>,
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
    /// This response refused the token the proxy injected: it was dropped for a new one.
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
