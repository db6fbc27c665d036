//! The access log: one line per exchange at `info` on stderr, written when the client's response
//! has ended — who (client name or address), which route, the request line with its query
//! redacted, the status the client got and the one the target sent, how long it took, how many
//! bytes went to the client, and what the proxy did. Never a secret, a cookie value or a body.
//!
//! `[log] access = "text"` writes a line for people through the log (its format, its filter);
//! `"json"` writes one JSON object per line, whatever the log's format, for log shippers; `"off"`
//! costs nothing: the pipeline does not even build the entry.
//!
//! Re-logins, replays and token fetches are logged here too, one line each with its outcome.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::{Method, StatusCode, Uri};
use serde::Serialize;

use crate::config::{AccessLog as Format, Plan};
use crate::ingress::ClientName;
use crate::trace::record::CapturedBody;
use crate::trace::text::Timestamp;
use crate::trace::{BodyEnd, Redactor};

/// Where the lines are filtered (`RUST_LOG=provproxy::access=warn` silences them).
const TARGET: &str = "provproxy::access";

/// What the proxy did in one exchange, over all its attempts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Did(u8);

impl Did {
    pub const AUTH_INJECTED: Did = Did(1);
    pub const COOKIES_REPLAYED: Did = Did(1 << 1);
    pub const SESSION_OPENED: Did = Did(1 << 2);
    pub const RELOGIN: Did = Did(1 << 3);
    pub const REPLAY: Did = Did(1 << 4);
    pub const CHALLENGE_REWRITTEN: Did = Did(1 << 5);
    pub const TOKEN_FETCHED: Did = Did(1 << 6);

    const NAMES: [(Did, &'static str); 7] = [
        (Did::AUTH_INJECTED, "auth_injected"),
        (Did::COOKIES_REPLAYED, "cookies_replayed"),
        (Did::SESSION_OPENED, "session_opened"),
        (Did::RELOGIN, "relogin"),
        (Did::REPLAY, "replay"),
        (Did::CHALLENGE_REWRITTEN, "challenge_rewritten"),
        (Did::TOKEN_FETCHED, "token_fetched"),
    ];

    pub fn add(&mut self, what: Did) {
        self.0 |= what.0;
    }

    pub fn contains(self, what: Did) -> bool {
        self.0 & what.0 == what.0
    }

    fn names(self) -> Vec<&'static str> {
        Did::NAMES
            .iter()
            .filter(|(did, _)| self.contains(*did))
            .map(|(_, name)| *name)
            .collect()
    }
}

/// The access log of one proxy listener; `None` from [`AccessLog::new`] when it is off.
#[derive(Debug)]
pub struct AccessLog {
    format: Format,
    /// Query parameters are redacted with the trace's rules (its configured fields, or the
    /// built-in ones when there is no trace).
    redactor: Redactor,
    /// Route names by index, shared with the lines that are written after the exchange.
    routes: Vec<Arc<str>>,
}

/// An exchange as it arrived, waiting for its outcome.
pub struct Started {
    time: SystemTime,
    clock: Instant,
    method: Method,
    path: String,
}

/// What the pipeline learned about the exchange.
#[derive(Debug, Default)]
pub struct Outcome {
    pub route: Option<usize>,
    pub client: Option<ClientName>,
    /// The status of the last response the target sent, if any.
    pub upstream_status: Option<StatusCode>,
    pub did: Did,
}

/// One line, ready to be written once the response body has ended.
struct Line {
    format: Format,
    started: Started,
    client: Client,
    route: Option<Arc<str>>,
    status: u16,
    upstream_status: Option<u16>,
    did: Did,
}

enum Client {
    Name(ClientName),
    Addr(SocketAddr),
}

impl AccessLog {
    pub fn new(plan: &Plan) -> Option<AccessLog> {
        if plan.log.access == Format::Off {
            return None;
        }
        Some(AccessLog {
            format: plan.log.access,
            redactor: plan
                .trace
                .as_ref()
                .map_or_else(Redactor::with_default_fields, Redactor::new),
            routes: plan
                .routes
                .iter()
                .map(|route| Arc::from(route.name.as_str()))
                .collect(),
        })
    }

    /// Notes the request line before the pipeline takes the request apart.
    pub fn start(&self, method: &Method, uri: &Uri) -> Started {
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        Started {
            time: SystemTime::now(),
            clock: Instant::now(),
            method: method.clone(),
            path: self.redactor.url(path).into_owned(),
        }
    }

    /// Returns what writes the line once the client's response body has ended (completely, in
    /// error, or dropped by a client that went away), with the bytes it carried.
    pub fn finish(
        &self,
        started: Started,
        remote: SocketAddr,
        outcome: Outcome,
        status: StatusCode,
    ) -> impl FnOnce(CapturedBody, BodyEnd) + Send + 'static {
        let line = Line {
            format: self.format,
            started,
            client: match outcome.client {
                Some(name) => Client::Name(name),
                None => Client::Addr(remote),
            },
            route: outcome.route.and_then(|i| self.routes.get(i).cloned()),
            status: status.as_u16(),
            upstream_status: outcome.upstream_status.map(|s| s.as_u16()),
            did: outcome.did,
        };
        move |body: CapturedBody, end: BodyEnd| line.write(body.total_size, end)
    }
}

impl Line {
    fn write(self, bytes: u64, end: BodyEnd) {
        if !tracing::enabled!(target: TARGET, tracing::Level::INFO) {
            return;
        }
        let millis = self.started.clock.elapsed().as_secs_f64() * 1000.0;
        let route = self.route.as_deref().unwrap_or("-");
        let did = self.did.names();
        let end = match end {
            BodyEnd::Complete => None,
            BodyEnd::Error => Some("target_failed_midway"),
            // hyper drops the body of a response to HEAD unread.
            BodyEnd::Dropped if self.started.method == Method::HEAD => None,
            BodyEnd::Dropped => Some("client_went_away"),
        };
        match self.format {
            Format::Json => {
                #[derive(Serialize)]
                struct Json<'a> {
                    time: &'a str,
                    level: &'static str,
                    target: &'static str,
                    client: String,
                    route: &'a str,
                    method: &'a str,
                    path: &'a str,
                    status: u16,
                    upstream_status: Option<u16>,
                    duration_ms: f64,
                    bytes: u64,
                    actions: &'a [&'static str],
                    #[serde(skip_serializing_if = "Option::is_none")]
                    cut_short: Option<&'static str>,
                }
                let time = Timestamp::new(self.started.time);
                let json = Json {
                    time: time.as_str(),
                    level: "INFO",
                    target: TARGET,
                    client: self.client.to_string(),
                    route,
                    method: self.started.method.as_str(),
                    path: &self.started.path,
                    status: self.status,
                    upstream_status: self.upstream_status,
                    duration_ms: (millis * 1000.0).round() / 1000.0,
                    bytes,
                    actions: &did,
                    cut_short: end,
                };
                if let Ok(mut text) = serde_json::to_vec(&json) {
                    text.push(b'\n');
                    // One write of the whole line, so that it never interleaves with another.
                    let _ = std::io::stderr().lock().write_all(&text);
                }
            }
            Format::Text | Format::Off => {
                let upstream = self
                    .upstream_status
                    .map_or_else(|| "-".to_owned(), |s| s.to_string());
                let did = if did.is_empty() {
                    "-".to_owned()
                } else {
                    did.join(",")
                };
                tracing::info!(
                    target: TARGET,
                    "{} {route} \"{} {}\" {} upstream={upstream} {millis:.1}ms {bytes}B did={did}{}",
                    self.client,
                    self.started.method,
                    self.started.path,
                    self.status,
                    end.map_or_else(String::new, |why| format!(" cut_short={why}")),
                );
            }
        }
    }
}

impl std::fmt::Display for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Client::Name(name) => f.write_str(name),
            Client::Addr(addr) => write!(f, "{addr}"),
        }
    }
}

/// What became of a session the target no longer knew.
pub enum ReloginOutcome<'a> {
    /// Dropped without a login request: the replay (or, when the request could not be
    /// replayed, the next request) opens a new session.
    Dropped {
        replayed: bool,
    },
    /// The route's login request answered this expected status.
    LoggedIn(StatusCode),
    Failed(&'a dyn std::fmt::Display),
}

/// One line per session the proxy found gone, with what it did about it.
pub fn relogin(route: &str, outcome: ReloginOutcome<'_>) {
    const GONE: &str = "re-login: the target no longer knew the session";
    match outcome {
        ReloginOutcome::Dropped { replayed: true } => tracing::info!(
            target: TARGET,
            route,
            "{GONE}; dropped it, the replay opens a new one"
        ),
        ReloginOutcome::Dropped { replayed: false } => tracing::info!(
            target: TARGET,
            route,
            "{GONE}; dropped it, the next request opens a new one (this one was not kept for a replay)"
        ),
        ReloginOutcome::LoggedIn(status) => tracing::info!(
            target: TARGET,
            route,
            status = status.as_u16(),
            "{GONE}; logged in again"
        ),
        ReloginOutcome::Failed(why) => {
            tracing::warn!(target: TARGET, route, "re-login failed: {why}")
        }
    }
}

/// The proxy's second attempt of a request, and what the target answered.
pub fn replay(route: &str, why: &str, status: StatusCode) {
    if status.is_client_error() || status.is_server_error() {
        tracing::warn!(target: TARGET, route, status = status.as_u16(), "replay after {why} failed too");
    } else {
        tracing::info!(target: TARGET, route, status = status.as_u16(), "replay after {why} succeeded");
    }
}

/// A session token the proxy fetched (`refetch`: in place of one the target called stale).
/// Failed fetches are logged where they fail, with their reason.
pub fn session_token_fetched(route: &str, token: &str, refetch: bool, status: StatusCode) {
    tracing::info!(
        target: TARGET,
        route,
        token,
        status = status.as_u16(),
        "{}",
        if refetch {
            "token refetched"
        } else {
            "token fetched"
        }
    );
}

/// A session token the target called stale; the request is replayed with a new one when it can.
pub fn session_token_stale(route: &str, token: &str, status: StatusCode, replayed: bool) {
    tracing::info!(
        target: TARGET,
        route,
        token,
        status = status.as_u16(),
        "{}",
        if replayed {
            "session token stale: dropped it, refetching and replaying"
        } else {
            "session token stale: dropped it, the next request fetches a new one (this one was not kept for a replay)"
        }
    );
}

/// A token the proxy fetched. Failed fetches are logged where they fail, with their reason.
pub fn token_fetched(route: &str, status: StatusCode, elapsed: std::time::Duration) {
    tracing::info!(
        target: TARGET,
        route,
        status = status.as_u16(),
        elapsed_ms = elapsed.as_millis() as u64,
        "token fetched"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn did_names_what_was_done_in_a_fixed_order() {
        let mut did = Did::default();
        assert!(did.names().is_empty());
        did.add(Did::REPLAY);
        did.add(Did::AUTH_INJECTED);
        did.add(Did::RELOGIN);
        assert_eq!(did.names(), ["auth_injected", "relogin", "replay"]);
        assert!(did.contains(Did::REPLAY) && !did.contains(Did::TOKEN_FETCHED));
    }

    #[test]
    fn the_request_line_keeps_its_path_and_redacts_secret_query_values() {
        let plan = crate::config::load_str(
            "[[routes]]\nname = \"r\"\nprefix = \"/\"\nupstream = \"http://127.0.0.1:1\"\n",
            "t.toml",
            std::path::Path::new("."),
            &|_| None,
        )
        .unwrap();
        let log = AccessLog::new(&plan).unwrap();
        let uri: Uri = "/scim/Users?filter=userName%20eq%20x&access_token=SECRET1"
            .parse()
            .unwrap();
        let started = log.start(&Method::GET, &uri);
        assert!(started
            .path
            .starts_with("/scim/Users?filter=userName%20eq%20x"));
        assert!(!started.path.contains("SECRET1"), "{}", started.path);
    }
}
