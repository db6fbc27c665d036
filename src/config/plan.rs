//! The validated runtime plan. Built once from the raw TOML; the hot path reads only these
//! types and never re-parses anything.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderName, Method, StatusCode};
use url::Url;

use super::secret::Secret;

#[derive(Debug, Clone)]
pub struct Plan {
    pub server: ServerPlan,
    pub admin: Option<AdminPlan>,
    /// `None` when the file has no `[trace]` table: no record is built at all.
    pub trace: Option<TracePlan>,
    pub routes: Vec<RoutePlan>,
    pub log: LogPlan,
    /// Things that are allowed but unwise (a literal secret in the file, say); `check` prints them.
    pub warnings: Vec<String>,
    pub state: StatePlan,
    /// Secrets whose env var or file was missing, when loaded with [`super::load_without_secrets`]
    /// (each message is also in `warnings`); always empty otherwise.
    pub missing_secrets: Vec<String>,
}

/// `[state]`: where sessions and tokens live and how they are kept at rest.
#[derive(Debug, Clone, Default)]
pub struct StatePlan {
    /// Present: cookie values in state files (and in Redis) are encrypted with a key derived
    /// from it.
    pub encryption_key: Option<Secret>,
    /// Opens values sealed under the key before `encryption_key` (rotation); never seals.
    pub encryption_key_previous: Option<Secret>,
    /// `backend = "redis"`: sessions, leases and tokens are shared by every replica.
    pub redis: Option<RedisPlan>,
}

/// `[state] backend = "redis"`.
#[derive(Debug, Clone)]
pub struct RedisPlan {
    /// `redis://` or `rediss://` (TLS), without a password (that is `password`).
    pub url: Url,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub key_prefix: String,
    pub on_unavailable: OnUnavailable,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
}

/// What a replica does while Redis cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUnavailable {
    /// Requests that need state are answered 503 `state_unavailable`.
    Fail,
    /// Serve from this process's own state until Redis is back.
    Local,
}

#[derive(Debug, Clone)]
pub struct ServerPlan {
    pub listen: SocketAddr,
    pub tls: Option<TlsPlan>,
    pub clients: Vec<ClientPlan>,
    pub allow_anyone: bool,
    /// Tokio worker threads.
    pub workers: usize,
    /// How long in-flight requests may take to finish after SIGINT/SIGTERM.
    pub shutdown_grace: Duration,
    pub limits: Limits,
    /// `Host` names served besides loopback names, host routes and the listen address, each
    /// `host` or `host:port`, lower-case.
    pub hosts: Vec<String>,
    /// Serve requests that a browser sent cross-site (refused with 403 unless set).
    pub allow_browsers: bool,
}

#[derive(Debug, Clone)]
pub struct TlsPlan {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Present: clients must present a certificate signed by this CA (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_headers: usize,
    pub max_header_bytes: usize,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    /// Request body limit for routes that set none.
    pub max_request_body: Option<u64>,
    pub tls_handshake_timeout: Duration,
    /// From accepting a connection (after its TLS handshake) to its first byte.
    pub first_byte_timeout: Duration,
    /// How long a connection may stay open with no request in flight: an HTTP/1 connection
    /// waiting for its next request, an HTTP/2 connection with no open stream.
    pub idle_timeout: Duration,
    /// HTTP/2 pings after this long without a frame from the client...
    pub http2_keep_alive_interval: Duration,
    /// ...and the connection closes when a ping is not answered within this.
    pub http2_keep_alive_timeout: Duration,
    /// Client connections open at once on the proxy listener; more are closed at accept.
    pub max_connections: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct ClientPlan {
    pub name: String,
    pub credential: ClientCredential,
}

#[derive(Debug, Clone)]
pub enum ClientCredential {
    Token(Secret),
    Basic {
        username: String,
        password: Secret,
    },
    /// Mutual TLS: the name must match the certificate's common name or a DNS SAN.
    Certificate,
}

#[derive(Debug, Clone)]
pub struct AdminPlan {
    pub listen: SocketAddr,
    /// Bearer token every endpoint but `/healthz` needs; required off loopback.
    pub token: Option<Secret>,
    /// `Host` names served besides loopback names and the listen address, lower-case.
    pub hosts: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct TracePlan {
    pub har: Option<PathBuf>,
    pub jsonl: Option<PathBuf>,
    pub bodies: bool,
    pub max_body: usize,
    /// Built-in defaults plus the configured names; compared case-insensitively.
    pub redact_fields: Vec<String>,
    /// Rotate a trace file once it grows past this many bytes.
    pub rotate_bytes: u64,
    /// Records waiting for the writer, and again for the files; when either queue is full,
    /// records are dropped and counted.
    pub channel_capacity: usize,
    /// Bytes either queue may hold (captured bodies waiting for the writer, rendered records
    /// waiting for the files): the bound that keeps a stalled disk from costing unbounded
    /// memory when records are large.
    pub queue_bytes: usize,
    /// Recent exchanges kept in memory for `GET /exchanges`.
    pub recent: usize,
    /// Every route's credential header (`kind = "header"`): redacted whatever its name.
    /// Filled in from the routes by [`TracePlan::for_routes`].
    pub auth_headers: Vec<HeaderName>,
    /// Routes that record bodies the trace cannot redact as they are (`[routes.trace]
    /// raw_bodies = true`); other routes withhold them.
    pub raw_body_routes: Vec<String>,
    /// Rotated files kept next to each trace file (`file.1` newest .. `file.KEEP`).
    pub keep: usize,
}

/// Records a trace queue holds by default: at the ~20k requests a second one worker serves on
/// loopback, about 0.4 s of a writer that does not get the CPU (1,024, the earlier default, lost
/// records to a 47 ms stall under the load benchmark).
pub const DEFAULT_CHANNEL_CAPACITY: usize = 8192;

/// Bytes a trace queue holds by default: 500 records with 64 KiB of captured body each.
pub const DEFAULT_QUEUE_BYTES: usize = 32 << 20;

impl TracePlan {
    pub fn writes_files(&self) -> bool {
        self.har.is_some() || self.jsonl.is_some()
    }

    /// What redaction needs to know of the routes, which the plan knows and no list does:
    /// every route's credential header, and the routes that record raw bodies.
    pub fn for_routes(self, routes: &[RoutePlan]) -> TracePlan {
        let tokens = || {
            routes
                .iter()
                .filter_map(|route| route.session.as_ref())
                .flat_map(|session| &session.tokens)
        };
        // A session token's header (where it comes from and where it goes) and its JSON field
        // are credentials, whatever they are called.
        let mut redact_fields = self.redact_fields;
        redact_fields.extend(
            tokens()
                .filter_map(|token| token.from.json_field())
                .map(str::to_owned),
        );
        TracePlan {
            auth_headers: routes
                .iter()
                .filter_map(|route| match &route.auth.kind {
                    AuthKind::Header { name, .. } => Some(name.clone()),
                    _ => None,
                })
                .chain(tokens().map(|token| token.to.clone()))
                .chain(tokens().filter_map(|token| token.from.header().cloned()))
                .collect(),
            redact_fields,
            raw_body_routes: routes
                .iter()
                .filter(|route| route.raw_bodies)
                .map(|route| route.name.clone())
                .collect(),
            ..self
        }
    }

    /// Records for the admin ring and the console only, with `[trace]`'s defaults: what an
    /// `[admin]` listener without a `[trace]` table gets.
    pub fn in_memory() -> TracePlan {
        TracePlan {
            har: None,
            jsonl: None,
            bodies: true,
            max_body: 64 * 1024,
            redact_fields: DEFAULT_REDACT_FIELDS
                .iter()
                .map(|field| field.to_string())
                .collect(),
            rotate_bytes: 64 << 20,
            channel_capacity: DEFAULT_CHANNEL_CAPACITY,
            queue_bytes: DEFAULT_QUEUE_BYTES,
            recent: 256,
            keep: 10,
            auth_headers: Vec::new(),
            raw_body_routes: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogPlan {
    pub access: AccessLog,
}

/// How the access log writes its line per exchange on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLog {
    /// A line for people, in the log's own format.
    Text,
    /// One JSON object per line, whatever the log's format.
    Json,
    Off,
}

impl AccessLog {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessLog::Text => "text",
            AccessLog::Json => "json",
            AccessLog::Off => "off",
        }
    }
}

/// The patterns redacted in traces even when the config names none: a field whose name contains
/// one (ignoring case, `-` and `_` alike) is secret. (`code`, `sig` and `signature` are secret
/// as whole names too; see `trace::redact`.)
pub const DEFAULT_REDACT_FIELDS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "assertion",
    "apikey",
    "api_key",
    "credential",
];

#[derive(Debug, Clone)]
pub struct RoutePlan {
    pub name: String,
    pub matcher: RouteMatch,
    pub strip_prefix: bool,
    pub upstream: Upstream,
    pub preserve_host: bool,
    /// Ingress clients allowed on this route; `None` allows every authenticated client.
    pub clients: Option<Vec<String>>,
    pub max_request_body: Option<u64>,
    pub auth: AuthPlan,
    pub session: Option<SessionPlan>,
    /// Checked at load time; the pipeline builds its rewriter from it.
    pub challenge: ChallengePlan,
    /// `[routes.trace] raw_bodies`: bodies the trace cannot redact are recorded as they are.
    pub raw_bodies: bool,
    /// `%2F`, `%5C` and `%2E` in the path reach this route's target as sent instead of being
    /// refused (an encoded dot-segment is refused all the same).
    pub allow_encoded_slashes: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RouteMatch {
    /// Path prefix, always starting and (after normalisation) ending with `/`.
    Prefix(String),
    /// Host header (without port), lower-case.
    Host(String),
}

#[derive(Debug, Clone)]
pub struct Upstream {
    /// The upstream's logical base URL, e.g. `https://osmc.example.com/api/`.
    pub url: Url,
    /// `scheme://host[:port]` of `url`, used to rewrite `Location` and to key cookie jars.
    pub origin: String,
    /// `host[:port]` as it goes in the `Host` header.
    pub authority: String,
    pub ca_file: Option<PathBuf>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// Which roots the target's certificate may chain to (`[routes.tls] trust`).
    pub trust: Trust,
    /// SHA-256 digests of SubjectPublicKeyInfos; when any are given, the target's certificate
    /// must carry one of these public keys in addition to passing verification.
    pub pin_sha256: Vec<[u8; 32]>,
}

/// The roots a target's certificate is verified against. No choice turns verification off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Trust {
    /// The system's and webpki's public roots, plus the route's `ca_file`.
    #[default]
    SystemAndCaFile,
    /// Only the route's `ca_file`: a private CA or the target's own self-signed certificate.
    CaFileOnly,
}

impl Trust {
    pub fn as_str(self) -> &'static str {
        match self {
            Trust::SystemAndCaFile => "system+ca_file",
            Trust::CaFileOnly => "ca_file_only",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Replace whatever `Authorization` the client sent.
    Always,
    /// Inject only when the client sent none.
    Missing,
    /// Never inject; pass the client's credential through.
    Never,
}

impl When {
    pub fn as_str(self) -> &'static str {
        match self {
            When::Always => "always",
            When::Missing => "missing",
            When::Never => "never",
        }
    }
}

#[derive(Debug, Clone)]
pub struct AuthPlan {
    pub when: When,
    pub kind: AuthKind,
    /// Fix a client `Authorization` with a doubled scheme (`Bearer Bearer x`) before it goes on.
    pub normalize: bool,
}

#[derive(Debug, Clone)]
pub enum AuthKind {
    None,
    Basic {
        username: String,
        password: Secret,
    },
    Bearer {
        token: Secret,
    },
    Header {
        name: HeaderName,
        value: Secret,
    },
    /// Boxed: the OAuth plan is several times the size of the other kinds.
    OAuth2(Box<OAuthPlan>),
}

impl AuthKind {
    pub fn name(&self) -> &'static str {
        match self {
            AuthKind::None => "none",
            AuthKind::Basic { .. } => "basic",
            AuthKind::Bearer { .. } => "bearer",
            AuthKind::Header { .. } => "header",
            AuthKind::OAuth2(_) => "oauth2",
        }
    }
}

#[derive(Debug, Clone)]
pub struct OAuthPlan {
    pub grant: Grant,
    pub token_url: Url,
    pub client_id: String,
    pub client_secret: Option<Secret>,
    pub client_auth: ClientAuth,
    pub scopes: Vec<String>,
    /// Extra form parameters sent to the token endpoint (audience, resource, ...).
    pub extra_params: Vec<(String, String)>,
    pub ca_file: Option<PathBuf>,
    /// Refresh this long before expiry; `None` means min(60 s, 10% of `expires_in`).
    pub refresh_skew: Option<Duration>,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub enum Grant {
    ClientCredentials,
    Password { username: String, password: Secret },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// `Authorization: Basic base64(client_id:client_secret)`.
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Post,
}

#[derive(Debug, Clone)]
pub struct SessionPlan {
    pub cookies: bool,
    pub key: SessionKeyKind,
    pub idle_timeout: Duration,
    pub serialize: bool,
    pub relogin_on: Vec<StatusCode>,
    /// When set, a `relogin_on` status means "session gone" only if the body contains this text.
    pub relogin_body_contains: Option<String>,
    pub replay_body_limit: usize,
    pub persist: Option<PathBuf>,
    pub client_cookies: ClientCookies,
    pub login: Option<LoginPlan>,
    /// Sessions kept for the route; past it the least recently used idle one is dropped.
    pub max_sessions: usize,
    /// `header:NAME` keys: the value used when a request lacks the header (else it gets 400).
    pub default_key: Option<String>,
    /// `[[routes.session.tokens]]`, in file order.
    pub tokens: Vec<TokenPlan>,
}

/// A session token: fetched when the session lacks it, sent in a header, refetched when stale.
#[derive(Debug, Clone)]
pub struct TokenPlan {
    pub name: String,
    pub fetch: TokenFetchPlan,
    pub from: crate::token_rules::TokenFrom,
    pub to: HeaderName,
    pub format: crate::token_rules::TokenFormat,
    /// `None`: every method.
    pub methods: Option<Vec<Method>>,
    /// Statuses that mean the token is stale: dropped, fetched anew, the request replayed once.
    pub refetch_on: Vec<StatusCode>,
}

#[derive(Debug, Clone)]
pub struct TokenFetchPlan {
    pub method: Method,
    /// Path on the proxy side, like `login.path`.
    pub path: String,
    pub headers: Vec<(HeaderName, http::HeaderValue)>,
    /// A secret: a login body carries credentials.
    pub body: Option<Secret>,
    pub content_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionKeyKind {
    /// One session for everyone using the route.
    Route,
    /// One session per ingress client, or per distinct client `Authorization` without ingress auth.
    Client,
    /// One session per value of this request header.
    Header(HeaderName),
}

impl std::fmt::Display for SessionKeyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionKeyKind::Route => f.write_str("route"),
            SessionKeyKind::Client => f.write_str("client"),
            SessionKeyKind::Header(name) => write!(f, "header:{name}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCookies {
    /// The proxy owns the session: the client's `Cookie` and the managed `Set-Cookie` are removed.
    Strip,
    /// The client's cookies are merged with the jar's, and `Set-Cookie` passes through.
    Pass,
}

#[derive(Debug, Clone)]
pub struct LoginPlan {
    pub method: Method,
    /// Path on the proxy side (it goes through the route like any request).
    pub path: String,
    pub expect_status: Vec<StatusCode>,
    /// A secret: it usually carries the service account's password.
    pub body: Option<Secret>,
    pub content_type: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeMode {
    Keep,
    Expand,
    Replace,
}

#[derive(Debug, Clone)]
pub struct ChallengePlan {
    pub mode: ChallengeMode,
    /// Challenges as written in the config, each already checked by the challenge parser.
    pub add: Vec<String>,
    /// Scheme names to drop, compared case-insensitively.
    pub remove: Vec<String>,
    /// One `WWW-Authenticate` line per challenge.
    pub split: bool,
}

impl Default for ChallengePlan {
    fn default() -> Self {
        ChallengePlan {
            mode: ChallengeMode::Keep,
            add: Vec::new(),
            remove: Vec::new(),
            split: true,
        }
    }
}
