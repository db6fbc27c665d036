//! Raw TOML → runtime plan. Every field is checked here, once, against the others; errors carry
//! the key path so the loader can point at the line.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderName, Method, StatusCode};
use url::Url;

use super::error::KeyPath;
use super::plan::*;
use super::raw::*;
use super::secret::{Secret, SecretSource};
use super::units::{parse_duration, parse_size};
use crate::authority::Authority;
use crate::token_rules::{parse_to, TokenFormat, TokenFrom};
use crate::www_authenticate::configured;

/// A validation failure before it is placed in the file.
#[derive(Debug)]
pub struct Invalid {
    pub path: KeyPath,
    pub message: String,
}

type Checked<T> = Result<T, Invalid>;

/// Sessions a route keeps unless `max_sessions` says otherwise.
const DEFAULT_MAX_SESSIONS: usize = 10_000;

/// The state key is stretched by HKDF, not a password hash: it has to carry the entropy itself.
const MIN_ENCRYPTION_KEY_BYTES: usize = 32;

fn invalid<T>(path: &KeyPath, message: impl Into<String>) -> Checked<T> {
    Err(Invalid {
        path: path.clone(),
        message: message.into(),
    })
}

/// How secrets and relative paths are resolved; tests pass their own environment.
pub struct Resolver<'a> {
    pub base_dir: &'a Path,
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// A secret whose env var or file is missing is a warning, not an error (`check`).
    pub missing_secrets_ok: bool,
}

struct Validator<'a> {
    resolver: &'a Resolver<'a>,
    warnings: Vec<String>,
    missing_secrets: Vec<String>,
}

pub fn validate(raw: RawConfig, resolver: &Resolver<'_>) -> Result<Plan, Invalid> {
    let mut validator = Validator {
        resolver,
        warnings: Vec::new(),
        missing_secrets: Vec::new(),
    };
    let root = KeyPath::root();
    let server = validator.server(raw.server.unwrap_or_default(), &root.key("server"))?;
    let admin = raw
        .admin
        .map(|admin| validator.admin(admin, &root.key("admin")))
        .transpose()?;
    let trace = raw
        .trace
        .map(|trace| validator.trace(trace, &root.key("trace")))
        .transpose()?;
    let routes = validator.routes(raw.routes, &server, &root.key("routes"))?;
    let state = validator.state(raw.state.unwrap_or_default(), &root.key("state"))?;
    if state.redis.is_some() {
        for route in &routes {
            if route.session.as_ref().is_some_and(|s| s.persist.is_some()) {
                validator.warnings.push(format!(
                    "routes {:?}: session.persist is not used with state.backend = \"redis\" \
                     (sessions live in Redis)",
                    route.name
                ));
            }
        }
    }
    let log = log(raw.log.unwrap_or_default(), &root.key("log"))?;
    let trace = trace.map(|trace| trace.for_routes(&routes));
    Ok(Plan {
        server,
        admin,
        trace,
        routes,
        log,
        warnings: validator.warnings,
        state,
        missing_secrets: validator.missing_secrets,
    })
}

fn log(raw: RawLog, path: &KeyPath) -> Checked<LogPlan> {
    Ok(LogPlan {
        access: one_of(
            raw.access.as_deref(),
            AccessLog::Text,
            &[
                ("text", AccessLog::Text),
                ("json", AccessLog::Json),
                ("off", AccessLog::Off),
            ],
            "value",
            &path.key("access"),
        )?,
    })
}

fn socket_addr(text: &str, path: &KeyPath) -> Checked<SocketAddr> {
    text.parse().or_else(|_| {
        invalid(
            path,
            format!("invalid address {text:?}; write it as IP:PORT, like \"127.0.0.1:8080\""),
        )
    })
}

fn duration(text: Option<&str>, default: Duration, path: &KeyPath) -> Checked<Duration> {
    match text {
        None => Ok(default),
        Some(text) => parse_duration(text).or_else(|message| invalid(path, message)),
    }
}

/// A timeout that cannot be zero: zero would close every connection at once.
fn positive_duration(text: Option<&str>, default: Duration, path: &KeyPath) -> Checked<Duration> {
    let value = duration(text, default, path)?;
    if value.is_zero() {
        return invalid(path, "must be longer than 0s");
    }
    Ok(value)
}

fn size(text: Option<&str>, path: &KeyPath) -> Checked<Option<u64>> {
    text.map(|text| parse_size(text).or_else(|message| invalid(path, message)))
        .transpose()
}

/// Picks one of `allowed`, or explains which ones exist.
fn one_of<T: Copy>(
    value: Option<&str>,
    default: T,
    allowed: &[(&str, T)],
    what: &str,
    path: &KeyPath,
) -> Checked<T> {
    let Some(value) = value else {
        return Ok(default);
    };
    match allowed.iter().find(|(name, _)| *name == value) {
        Some((_, choice)) => Ok(*choice),
        None => {
            let names: Vec<&str> = allowed.iter().map(|(name, _)| *name).collect();
            invalid(
                path,
                format!(
                    "unknown {what} {value:?}, expected one of {}",
                    names.join(", ")
                ),
            )
        }
    }
}

fn status_codes(codes: &[u16], path: &KeyPath) -> Checked<Vec<StatusCode>> {
    codes
        .iter()
        .enumerate()
        .map(|(index, code)| match StatusCode::from_u16(*code) {
            Ok(status) if (100..=599).contains(code) => Ok(status),
            _ => invalid(&path.index(index), format!("{code} is not an HTTP status")),
        })
        .collect()
}

/// A `hosts` list: each `host` or `host:port`, kept lower-case.
fn host_names(names: &[String], path: &KeyPath) -> Checked<Vec<String>> {
    names
        .iter()
        .enumerate()
        .map(
            |(index, name)| match Authority::parse(name) {
                Some(_) => Ok(name.to_ascii_lowercase()),
                None => invalid(
                    &path.index(index),
                    format!(
                        "{name:?} is not a host name; write it like \"provproxy.internal\" or \"provproxy.internal:8443\""
                    ),
                ),
            },
        )
        .collect()
}

fn require<'v, T>(value: &'v Option<T>, path: &KeyPath, why: &str) -> Checked<&'v T> {
    match value {
        Some(value) => Ok(value),
        None => invalid(path, format!("missing; {why}")),
    }
}

fn forbid<T>(value: &Option<T>, path: &KeyPath, why: &str) -> Checked<()> {
    match value {
        Some(_) => invalid(path, format!("not used {why}")),
        None => Ok(()),
    }
}

impl Validator<'_> {
    fn path(&self, text: &str) -> PathBuf {
        let path = Path::new(text);
        if path.is_absolute() {
            path.to_owned()
        } else {
            self.resolver.base_dir.join(path)
        }
    }

    fn secret(&mut self, raw: &RawSecret, path: &KeyPath) -> Checked<Secret> {
        match raw {
            RawSecret::Literal(value) => {
                self.warnings.push(format!(
                    "{path}: secret written literally in the config file; prefer {{ env = \"...\" }} or {{ file = \"...\" }}"
                ));
                Ok(Secret::new(value.clone(), SecretSource::Literal))
            }
            RawSecret::Env(name) => match (self.resolver.env)(name) {
                Some(value) if !value.is_empty() => {
                    Ok(Secret::new(value, SecretSource::Env(name.clone())))
                }
                Some(_) => invalid(path, format!("environment variable {name} is empty")),
                None if self.resolver.missing_secrets_ok => Ok(self.missing_secret(
                    path,
                    format!("environment variable {name} is not set"),
                    SecretSource::Env(name.clone()),
                )),
                None => invalid(path, format!("environment variable {name} is not set")),
            },
            RawSecret::File(file) => {
                let full = self.path(file);
                match std::fs::read_to_string(&full) {
                    Ok(contents) => {
                        let value = contents.trim_end_matches(['\r', '\n']);
                        if value.is_empty() {
                            return invalid(
                                path,
                                format!("secret file {} is empty", full.display()),
                            );
                        }
                        Ok(Secret::new(value, SecretSource::File(full)))
                    }
                    Err(err)
                        if self.resolver.missing_secrets_ok
                            && err.kind() == std::io::ErrorKind::NotFound =>
                    {
                        Ok(self.missing_secret(
                            path,
                            format!("secret file {} does not exist", full.display()),
                            SecretSource::File(full),
                        ))
                    }
                    Err(err) => invalid(
                        path,
                        format!("cannot read secret file {}: {err}", full.display()),
                    ),
                }
            }
        }
    }

    /// Records a secret that is not there, for `check` to report and `--strict` to fail on.
    fn missing_secret(&mut self, path: &KeyPath, reason: String, source: SecretSource) -> Secret {
        let message = format!("{path}: {reason}; `run` refuses to start without it");
        self.warnings.push(message.clone());
        self.missing_secrets.push(message);
        Secret::missing(source)
    }

    fn server(&mut self, raw: RawServer, path: &KeyPath) -> Checked<ServerPlan> {
        let listen = socket_addr(
            raw.listen.as_deref().unwrap_or("127.0.0.1:8080"),
            &path.key("listen"),
        )?;
        let tls = raw.tls.map(|tls| TlsPlan {
            cert: self.path(&tls.cert),
            key: self.path(&tls.key),
            client_ca: tls.client_ca.as_deref().map(|ca| self.path(ca)),
        });
        let mut clients = Vec::with_capacity(raw.clients.len());
        let mut names = HashSet::new();
        for (index, client) in raw.clients.iter().enumerate() {
            let client_path = path.key("clients").index(index);
            if !names.insert(client.name.clone()) {
                return invalid(
                    &client_path.key("name"),
                    format!("client {:?} is defined twice", client.name),
                );
            }
            clients.push(self.client(client, tls.as_ref(), &client_path)?);
        }
        let allow_anyone = raw.allow_anyone.unwrap_or(false);
        if !listen.ip().is_loopback() && clients.is_empty() && !allow_anyone {
            return invalid(
                &path.key("listen"),
                format!(
                    "{listen} is reachable from other hosts, but no [[server.clients]] are configured: \
                     anyone who can connect could act as the service account. Add [[server.clients]], \
                     listen on 127.0.0.1, or set server.allow_anyone = true"
                ),
            );
        }
        let workers = match raw.workers {
            Some(0) => return invalid(&path.key("workers"), "must be at least 1"),
            Some(workers) => workers,
            None => std::thread::available_parallelism().map_or(2, |n| n.get()),
        };
        let max_request_body = size(
            raw.max_request_body.as_deref(),
            &path.key("max_request_body"),
        )?;
        let max_header_bytes = size(raw.max_header_size.as_deref(), &path.key("max_header_size"))?
            .unwrap_or(64 * 1024);
        Ok(ServerPlan {
            listen,
            tls,
            clients,
            allow_anyone,
            workers,
            shutdown_grace: duration(
                raw.shutdown_grace.as_deref(),
                Duration::from_secs(30),
                &path.key("shutdown_grace"),
            )?,
            limits: Limits {
                max_headers: raw.max_headers.unwrap_or(100),
                max_header_bytes: usize::try_from(max_header_bytes).unwrap_or(usize::MAX),
                header_read_timeout: duration(
                    raw.header_read_timeout.as_deref(),
                    Duration::from_secs(10),
                    &path.key("header_read_timeout"),
                )?,
                body_read_timeout: duration(
                    raw.body_read_timeout.as_deref(),
                    Duration::from_secs(60),
                    &path.key("body_read_timeout"),
                )?,
                max_request_body,
                tls_handshake_timeout: positive_duration(
                    raw.tls_handshake_timeout.as_deref(),
                    Duration::from_secs(10),
                    &path.key("tls_handshake_timeout"),
                )?,
                first_byte_timeout: positive_duration(
                    raw.first_byte_timeout.as_deref(),
                    Duration::from_secs(10),
                    &path.key("first_byte_timeout"),
                )?,
                idle_timeout: positive_duration(
                    raw.idle_timeout.as_deref(),
                    Duration::from_secs(60),
                    &path.key("idle_timeout"),
                )?,
                http2_keep_alive_interval: positive_duration(
                    raw.http2_keep_alive_interval.as_deref(),
                    Duration::from_secs(30),
                    &path.key("http2_keep_alive_interval"),
                )?,
                http2_keep_alive_timeout: positive_duration(
                    raw.http2_keep_alive_timeout.as_deref(),
                    Duration::from_secs(10),
                    &path.key("http2_keep_alive_timeout"),
                )?,
                max_connections: match raw.max_connections {
                    Some(0) => return invalid(&path.key("max_connections"), "must be at least 1"),
                    other => other,
                },
            },
            hosts: host_names(raw.hosts.as_deref().unwrap_or_default(), &path.key("hosts"))?,
            allow_browsers: raw.allow_browsers.unwrap_or(false),
        })
    }

    fn admin(&mut self, raw: RawAdmin, path: &KeyPath) -> Checked<AdminPlan> {
        let listen = socket_addr(&raw.listen, &path.key("listen"))?;
        let token = raw
            .token
            .as_ref()
            .map(|token| self.secret(token, &path.key("token")))
            .transpose()?;
        if !listen.ip().is_loopback() && token.is_none() {
            return invalid(
                &path.key("listen"),
                format!(
                    "{listen} is reachable from other hosts, but admin.token is not set: anyone who \
                     can connect could read the exchanges and drop sessions. Set admin.token = \
                     {{ env = \"PROVPROXY_ADMIN_TOKEN\" }} or listen on 127.0.0.1"
                ),
            );
        }
        Ok(AdminPlan {
            listen,
            token,
            hosts: host_names(&raw.hosts, &path.key("hosts"))?,
        })
    }

    fn client(
        &mut self,
        raw: &RawClient,
        tls: Option<&TlsPlan>,
        path: &KeyPath,
    ) -> Checked<ClientPlan> {
        let credential = match (&raw.token, &raw.username, &raw.password, raw.certificate) {
            (Some(token), None, None, None | Some(false)) => {
                ClientCredential::Token(self.secret(token, &path.key("token"))?)
            }
            (None, Some(username), Some(password), None | Some(false)) => ClientCredential::Basic {
                username: username.clone(),
                password: self.secret(password, &path.key("password"))?,
            },
            (None, None, None, Some(true)) => {
                if tls.and_then(|tls| tls.client_ca.as_ref()).is_none() {
                    return invalid(
                        &path.key("certificate"),
                        "client certificates need server.tls.client_ca",
                    );
                }
                ClientCredential::Certificate
            }
            _ => return invalid(
                path,
                "a client takes exactly one of: token, username + password, or certificate = true",
            ),
        };
        Ok(ClientPlan {
            name: raw.name.clone(),
            credential,
        })
    }

    fn trace(&mut self, raw: RawTrace, path: &KeyPath) -> Checked<TracePlan> {
        let mut redact_fields: Vec<String> = DEFAULT_REDACT_FIELDS
            .iter()
            .map(|f| f.to_string())
            .collect();
        for (index, field) in raw.redact_fields.into_iter().enumerate() {
            if field.is_empty() {
                return invalid(
                    &path.key("redact_fields").index(index),
                    "an empty pattern would match every field",
                );
            }
            if !redact_fields
                .iter()
                .any(|known| known.eq_ignore_ascii_case(&field))
            {
                redact_fields.push(field);
            }
        }
        let max_body = size(raw.max_body.as_deref(), &path.key("max_body"))?.unwrap_or(64 * 1024);
        Ok(TracePlan {
            har: raw.har.as_deref().map(|file| self.path(file)),
            jsonl: raw.jsonl.as_deref().map(|file| self.path(file)),
            bodies: raw.bodies.unwrap_or(true),
            max_body: usize::try_from(max_body).unwrap_or(usize::MAX),
            redact_fields,
            rotate_bytes: size(raw.rotate_size.as_deref(), &path.key("rotate_size"))?
                .unwrap_or(64 << 20),
            channel_capacity: raw
                .channel_capacity
                .unwrap_or(DEFAULT_CHANNEL_CAPACITY)
                .max(1),
            queue_bytes: size(raw.queue_size.as_deref(), &path.key("queue_size"))?
                .map_or(DEFAULT_QUEUE_BYTES, |bytes| {
                    usize::try_from(bytes).unwrap_or(usize::MAX)
                }),
            recent: raw.recent.unwrap_or(256),
            auth_headers: Vec::new(),
            raw_body_routes: Vec::new(),
            keep: raw.keep.unwrap_or(10),
        })
    }

    fn routes(
        &mut self,
        raw: Vec<RawRoute>,
        server: &ServerPlan,
        path: &KeyPath,
    ) -> Checked<Vec<RoutePlan>> {
        let mut names = HashSet::new();
        let mut matchers = HashSet::new();
        let mut routes = Vec::with_capacity(raw.len());
        for (index, route) in raw.into_iter().enumerate() {
            let route_path = path.index(index);
            if !names.insert(route.name.clone()) {
                return invalid(
                    &route_path.key("name"),
                    format!("route {:?} is defined twice", route.name),
                );
            }
            let plan = self.route(route, server, &route_path)?;
            if !matchers.insert(plan.matcher.clone()) {
                return invalid(
                    &route_path,
                    format!(
                        "route {:?} matches the same requests as an earlier route",
                        plan.name
                    ),
                );
            }
            routes.push(plan);
        }
        Ok(routes)
    }

    fn route(&mut self, raw: RawRoute, server: &ServerPlan, path: &KeyPath) -> Checked<RoutePlan> {
        let matcher = match (&raw.prefix, &raw.host) {
            (Some(prefix), None) => {
                if !prefix.starts_with('/') {
                    return invalid(&path.key("prefix"), format!("{prefix:?} must start with /"));
                }
                let mut prefix = prefix.clone();
                if !prefix.ends_with('/') {
                    prefix.push('/');
                }
                RouteMatch::Prefix(prefix)
            }
            (None, Some(host)) => {
                if host.is_empty() || host.contains(['/', ' ']) {
                    return invalid(&path.key("host"), format!("{host:?} is not a host name"));
                }
                RouteMatch::Host(host.to_ascii_lowercase())
            }
            (Some(_), Some(_)) => {
                return invalid(
                    &path.key("host"),
                    "a route matches by prefix or by host, not both",
                )
            }
            (None, None) => return invalid(path, "a route needs `prefix` or `host`"),
        };
        let upstream = self.upstream(&raw, path)?;
        if let Some(clients) = &raw.clients {
            for (index, client) in clients.iter().enumerate() {
                if !server.clients.iter().any(|known| &known.name == client) {
                    return invalid(
                        &path.key("clients").index(index),
                        format!("no [[server.clients]] is named {client:?}"),
                    );
                }
            }
        }
        let auth = match &raw.auth {
            Some(auth) => self.auth(auth, &path.key("auth"))?,
            None => AuthPlan {
                when: When::Never,
                kind: AuthKind::None,
                normalize: true,
            },
        };
        let session = raw
            .session
            .as_ref()
            .map(|session| self.session(session, &path.key("session")))
            .transpose()?;
        let challenge = match &raw.challenge {
            Some(challenge) => self.challenge(challenge, &path.key("challenge"))?,
            None => ChallengePlan::default(),
        };
        Ok(RoutePlan {
            name: raw.name,
            matcher,
            strip_prefix: raw.strip_prefix.unwrap_or(false),
            upstream,
            preserve_host: raw.preserve_host.unwrap_or(false),
            clients: raw.clients,
            max_request_body: size(
                raw.max_request_body.as_deref(),
                &path.key("max_request_body"),
            )?
            .or(server.limits.max_request_body),
            auth,
            session,
            challenge,
            raw_bodies: raw
                .trace
                .as_ref()
                .and_then(|trace| trace.raw_bodies)
                .unwrap_or(false),
            allow_encoded_slashes: raw.allow_encoded_slashes.unwrap_or(false),
        })
    }

    fn upstream(&mut self, raw: &RawRoute, path: &KeyPath) -> Checked<Upstream> {
        let url_path = path.key("upstream");
        let url = Url::parse(&raw.upstream)
            .or_else(|err| invalid(&url_path, format!("invalid URL {:?}: {err}", raw.upstream)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return invalid(
                &url_path,
                format!("scheme {:?} is not http or https", url.scheme()),
            );
        }
        let Some(host) = url.host_str() else {
            return invalid(&url_path, "the URL has no host");
        };
        if url.query().is_some() || url.fragment().is_some() {
            return invalid(&url_path, "the URL must not have a query or fragment");
        }
        let authority = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        let origin = format!("{}://{authority}", url.scheme());
        self.warn_if_plain_http_off_host(&url, &url_path);
        let ca_file = raw.ca_file.as_deref().map(|file| self.path(file));
        let (trust, pin_sha256) = match &raw.tls {
            Some(tls) => target_tls(tls, &url, ca_file.is_some(), path)?,
            None => (Trust::default(), Vec::new()),
        };
        Ok(Upstream {
            origin,
            authority,
            ca_file,
            connect_timeout: duration(
                raw.connect_timeout.as_deref(),
                Duration::from_secs(5),
                &path.key("connect_timeout"),
            )?,
            request_timeout: duration(
                raw.request_timeout.as_deref(),
                Duration::from_secs(60),
                &path.key("request_timeout"),
            )?,
            url,
            trust,
            pin_sha256,
        })
    }

    /// Credentials and session cookies go in clear text over `http://`; on loopback that is a
    /// local sidecar, anywhere else it is worth a warning (allowed: some targets sit on a
    /// trusted segment behind a TLS-terminating load balancer).
    fn warn_if_plain_http_off_host(&mut self, url: &Url, path: &KeyPath) {
        let loopback = match url.host() {
            Some(url::Host::Domain(name)) => {
                name.eq_ignore_ascii_case("localhost")
                    || name.to_ascii_lowercase().ends_with(".localhost")
            }
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => true,
        };
        if url.scheme() == "http" && !loopback {
            self.warnings.push(format!(
                "{path}: {url} is plain http to a host that is not loopback: credentials, tokens \
                 and session cookies cross the network unencrypted; prefer https://"
            ));
        }
    }

    fn auth(&mut self, raw: &RawAuth, path: &KeyPath) -> Checked<AuthPlan> {
        let when = one_of(
            raw.when.as_deref(),
            When::Always,
            &[
                ("always", When::Always),
                ("missing", When::Missing),
                ("never", When::Never),
            ],
            "value",
            &path.key("when"),
        )?;
        let kinds = ["none", "basic", "bearer", "header", "oauth2"];
        let kind = raw.kind.as_str();
        if !kinds.contains(&kind) {
            return invalid(
                &path.key("kind"),
                format!(
                    "unknown kind {kind:?}, expected one of {}",
                    kinds.join(", ")
                ),
            );
        }
        let not_for = format!("with kind = {kind:?}");
        let oauth_only = |raw: &RawAuth| -> Checked<()> {
            forbid(&raw.grant, &path.key("grant"), &not_for)?;
            forbid(&raw.token_url, &path.key("token_url"), &not_for)?;
            forbid(&raw.client_id, &path.key("client_id"), &not_for)?;
            forbid(&raw.client_secret, &path.key("client_secret"), &not_for)?;
            forbid(&raw.client_auth, &path.key("client_auth"), &not_for)?;
            forbid(&raw.scopes, &path.key("scopes"), &not_for)?;
            forbid(&raw.params, &path.key("params"), &not_for)?;
            forbid(&raw.ca_file, &path.key("ca_file"), &not_for)?;
            forbid(&raw.refresh_skew, &path.key("refresh_skew"), &not_for)?;
            forbid(&raw.timeout, &path.key("timeout"), &not_for)
        };
        let kind = match kind {
            "none" => {
                oauth_only(raw)?;
                forbid(&raw.username, &path.key("username"), &not_for)?;
                forbid(&raw.password, &path.key("password"), &not_for)?;
                forbid(&raw.token, &path.key("token"), &not_for)?;
                forbid(&raw.value, &path.key("value"), &not_for)?;
                AuthKind::None
            }
            "basic" => {
                oauth_only(raw)?;
                forbid(&raw.token, &path.key("token"), &not_for)?;
                forbid(&raw.value, &path.key("value"), &not_for)?;
                forbid(&raw.name, &path.key("name"), &not_for)?;
                let username = require(
                    &raw.username,
                    &path.key("username"),
                    "basic auth needs a username",
                )?;
                if username.contains(':') {
                    return invalid(&path.key("username"), "a Basic username cannot contain ':'");
                }
                let password = require(
                    &raw.password,
                    &path.key("password"),
                    "basic auth needs a password",
                )?;
                AuthKind::Basic {
                    username: username.clone(),
                    password: self.secret(password, &path.key("password"))?,
                }
            }
            "bearer" => {
                oauth_only(raw)?;
                forbid(&raw.username, &path.key("username"), &not_for)?;
                forbid(&raw.password, &path.key("password"), &not_for)?;
                forbid(&raw.value, &path.key("value"), &not_for)?;
                forbid(&raw.name, &path.key("name"), &not_for)?;
                let token = require(&raw.token, &path.key("token"), "bearer auth needs a token")?;
                AuthKind::Bearer {
                    token: self.secret(token, &path.key("token"))?,
                }
            }
            "header" => {
                oauth_only(raw)?;
                forbid(&raw.username, &path.key("username"), &not_for)?;
                forbid(&raw.password, &path.key("password"), &not_for)?;
                forbid(&raw.token, &path.key("token"), &not_for)?;
                let name = require(
                    &raw.name,
                    &path.key("name"),
                    "header auth needs the header name, like \"X-API-Key\"",
                )?;
                let name = HeaderName::from_bytes(name.as_bytes()).or_else(|_| {
                    invalid(
                        &path.key("name"),
                        format!("{name:?} is not a valid header name"),
                    )
                })?;
                let value = require(&raw.value, &path.key("value"), "header auth needs a value")?;
                AuthKind::Header {
                    name,
                    value: self.secret(value, &path.key("value"))?,
                }
            }
            _ => AuthKind::OAuth2(Box::new(self.oauth(raw, path)?)),
        };
        let header_secret = match &kind {
            AuthKind::Basic { password, .. } => Some(("password", password)),
            AuthKind::Bearer { token } => Some(("token", token)),
            AuthKind::Header { value, .. } => Some(("value", value)),
            _ => None,
        };
        if let Some((key, secret)) = header_secret {
            if !secret.is_missing() && http::HeaderValue::from_str(secret.expose()).is_err() {
                return invalid(
                    &path.key(key),
                    "the secret contains characters that cannot go in an HTTP header",
                );
            }
        }
        Ok(AuthPlan {
            when,
            kind,
            normalize: raw.normalize.unwrap_or(true),
        })
    }

    fn oauth(&mut self, raw: &RawAuth, path: &KeyPath) -> Checked<OAuthPlan> {
        forbid(
            &raw.token,
            &path.key("token"),
            "with kind = \"oauth2\" (the proxy fetches the token)",
        )?;
        forbid(&raw.value, &path.key("value"), "with kind = \"oauth2\"")?;
        forbid(&raw.name, &path.key("name"), "with kind = \"oauth2\"")?;
        #[derive(Clone, Copy)]
        enum GrantKind {
            ClientCredentials,
            Password,
        }
        let grant_kind = one_of(
            raw.grant.as_deref(),
            GrantKind::ClientCredentials,
            &[
                ("client_credentials", GrantKind::ClientCredentials),
                ("password", GrantKind::Password),
            ],
            "grant",
            &path.key("grant"),
        )?;
        let grant = match grant_kind {
            GrantKind::ClientCredentials => {
                forbid(
                    &raw.username,
                    &path.key("username"),
                    "with grant = \"client_credentials\"",
                )?;
                forbid(
                    &raw.password,
                    &path.key("password"),
                    "with grant = \"client_credentials\"",
                )?;
                Grant::ClientCredentials
            }
            GrantKind::Password => Grant::Password {
                username: require(
                    &raw.username,
                    &path.key("username"),
                    "the password grant needs a username",
                )?
                .clone(),
                password: self.secret(
                    require(
                        &raw.password,
                        &path.key("password"),
                        "the password grant needs a password",
                    )?,
                    &path.key("password"),
                )?,
            },
        };
        let token_url_text = require(
            &raw.token_url,
            &path.key("token_url"),
            "oauth2 needs the token endpoint URL",
        )?;
        let token_url = Url::parse(token_url_text)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https") && url.host_str().is_some())
            .map_or_else(
                || {
                    invalid(
                        &path.key("token_url"),
                        format!("{token_url_text:?} is not an http(s) URL"),
                    )
                },
                Ok,
            )?;
        self.warn_if_plain_http_off_host(&token_url, &path.key("token_url"));
        let client_id = require(
            &raw.client_id,
            &path.key("client_id"),
            "oauth2 needs a client_id",
        )?
        .clone();
        let client_secret = match (&raw.client_secret, grant_kind) {
            (Some(secret), _) => Some(self.secret(secret, &path.key("client_secret"))?),
            (None, GrantKind::ClientCredentials) => {
                return invalid(
                    &path.key("client_secret"),
                    "missing; the client_credentials grant needs a client_secret",
                )
            }
            (None, GrantKind::Password) => None,
        };
        let client_auth = one_of(
            raw.client_auth.as_deref(),
            ClientAuth::Basic,
            &[("basic", ClientAuth::Basic), ("post", ClientAuth::Post)],
            "client_auth",
            &path.key("client_auth"),
        )?;
        let scopes = raw.scopes.clone().unwrap_or_default();
        for (index, scope) in scopes.iter().enumerate() {
            if scope.is_empty() || scope.contains(char::is_whitespace) {
                return invalid(
                    &path.key("scopes").index(index),
                    format!("{scope:?} is not a single scope"),
                );
            }
        }
        Ok(OAuthPlan {
            grant,
            token_url,
            client_id,
            client_secret,
            client_auth,
            scopes,
            extra_params: raw
                .params
                .clone()
                .map(|params| params.into_iter().collect())
                .unwrap_or_default(),
            ca_file: raw.ca_file.as_deref().map(|file| self.path(file)),
            refresh_skew: raw
                .refresh_skew
                .as_deref()
                .map(|skew| {
                    parse_duration(skew)
                        .or_else(|message| invalid(&path.key("refresh_skew"), message))
                })
                .transpose()?,
            timeout: duration(
                raw.timeout.as_deref(),
                Duration::from_secs(10),
                &path.key("timeout"),
            )?,
        })
    }

    fn session(&mut self, raw: &RawSession, path: &KeyPath) -> Checked<SessionPlan> {
        let key = match raw.key.as_deref() {
            None | Some("route") => SessionKeyKind::Route,
            Some("client") => SessionKeyKind::Client,
            Some(other) => match other.strip_prefix("header:") {
                Some(name) => SessionKeyKind::Header(
                    HeaderName::from_bytes(name.trim().as_bytes()).or_else(|_| {
                        invalid(
                            &path.key("key"),
                            format!("{name:?} is not a valid header name"),
                        )
                    })?,
                ),
                None => {
                    return invalid(
                        &path.key("key"),
                        format!(
                            "unknown key {other:?}, expected one of route, client, header:NAME"
                        ),
                    )
                }
            },
        };
        let relogin_on = status_codes(
            raw.relogin_on.as_deref().unwrap_or(&[401]),
            &path.key("relogin_on"),
        )?;
        let replay_body_limit = size(
            raw.replay_body_limit.as_deref(),
            &path.key("replay_body_limit"),
        )?
        .unwrap_or(1 << 20);
        let login = raw
            .login
            .as_ref()
            .map(|login| {
                let login_path = path.key("login");
                let method =
                    Method::from_bytes(login.method.as_deref().unwrap_or("POST").as_bytes())
                        .or_else(|_| invalid(&login_path.key("method"), "not an HTTP method"))?;
                if !login.path.starts_with('/') {
                    return invalid(&login_path.key("path"), "must start with /");
                }
                Ok(LoginPlan {
                    method,
                    path: login.path.clone(),
                    expect_status: status_codes(
                        login.expect_status.as_deref().unwrap_or(&[200, 204]),
                        &login_path.key("expect_status"),
                    )?,
                    body: login
                        .body
                        .as_ref()
                        .map(|body| self.secret(body, &login_path.key("body")))
                        .transpose()?,
                    content_type: login.content_type.clone(),
                })
            })
            .transpose()?;
        let max_sessions = match raw.max_sessions {
            Some(0) => return invalid(&path.key("max_sessions"), "must be at least 1"),
            Some(max) => max,
            None => DEFAULT_MAX_SESSIONS,
        };
        if raw.default_key.is_some() && !matches!(key, SessionKeyKind::Header(_)) {
            return invalid(
                &path.key("default_key"),
                "only used with key = \"header:NAME\" (it stands in for a missing header)",
            );
        }
        Ok(SessionPlan {
            cookies: raw.cookies.unwrap_or(true),
            key,
            idle_timeout: duration(
                raw.idle_timeout.as_deref(),
                Duration::from_secs(15 * 60),
                &path.key("idle_timeout"),
            )?,
            serialize: raw.serialize.unwrap_or(false),
            relogin_on,
            relogin_body_contains: raw.relogin_body_contains.clone(),
            replay_body_limit: usize::try_from(replay_body_limit).unwrap_or(usize::MAX),
            persist: raw.persist.as_deref().map(|file| self.path(file)),
            client_cookies: one_of(
                raw.client_cookies.as_deref(),
                ClientCookies::Strip,
                &[
                    ("strip", ClientCookies::Strip),
                    ("pass", ClientCookies::Pass),
                ],
                "value",
                &path.key("client_cookies"),
            )?,
            login,
            max_sessions,
            default_key: raw.default_key.clone(),
            tokens: self.tokens(&raw.tokens, &path.key("tokens"))?,
        })
    }

    /// `[[routes.session.tokens]]`: each spelling checked here, so the pipeline only reads.
    fn tokens(&mut self, raw: &[RawToken], path: &KeyPath) -> Checked<Vec<TokenPlan>> {
        let mut names = HashSet::new();
        let mut tokens = Vec::with_capacity(raw.len());
        for (index, token) in raw.iter().enumerate() {
            let path = path.index(index);
            if token.name.trim().is_empty() {
                return invalid(&path.key("name"), "must not be empty");
            }
            if !names.insert(token.name.as_str()) {
                return invalid(
                    &path.key("name"),
                    format!("{:?} names another token of this route too", token.name),
                );
            }
            let fetch_path = path.key("fetch");
            let fetch = &token.fetch;
            let method = Method::from_bytes(fetch.method.as_deref().unwrap_or("GET").as_bytes())
                .or_else(|_| invalid(&fetch_path.key("method"), "not an HTTP method"))?;
            if !fetch.path.starts_with('/') {
                return invalid(&fetch_path.key("path"), "must start with /");
            }
            let mut headers = Vec::new();
            for (name, value) in fetch.headers.iter().flatten() {
                let at = fetch_path.key("headers").key(name);
                let header = HeaderName::from_bytes(name.as_bytes())
                    .or_else(|_| invalid(&at, format!("{name:?} is not a header name")))?;
                let value = http::HeaderValue::from_str(value)
                    .or_else(|_| invalid(&at, "not a valid header value"))?;
                headers.push((header, value));
            }
            let methods = token
                .methods
                .as_ref()
                .map(|methods| {
                    methods
                        .iter()
                        .enumerate()
                        .map(|(at, method)| {
                            Method::from_bytes(method.as_bytes()).or_else(|_| {
                                invalid(&path.key("methods").index(at), "not an HTTP method")
                            })
                        })
                        .collect::<Checked<Vec<_>>>()
                })
                .transpose()?;
            tokens.push(TokenPlan {
                name: token.name.clone(),
                fetch: TokenFetchPlan {
                    method,
                    path: fetch.path.clone(),
                    headers,
                    body: fetch
                        .body
                        .as_ref()
                        .map(|body| self.secret(body, &fetch_path.key("body")))
                        .transpose()?,
                    content_type: fetch.content_type.clone(),
                },
                from: TokenFrom::parse(&token.from)
                    .or_else(|message| invalid(&path.key("from"), message))?,
                to: parse_to(&token.to).or_else(|message| invalid(&path.key("to"), message))?,
                format: token
                    .format
                    .as_deref()
                    .map(TokenFormat::parse)
                    .transpose()
                    .or_else(|message| invalid(&path.key("format"), message))?
                    .unwrap_or_default(),
                methods,
                refetch_on: status_codes(
                    token.refetch_on.as_deref().unwrap_or(&[401, 403]),
                    &path.key("refetch_on"),
                )?,
            });
        }
        Ok(tokens)
    }

    fn state(&mut self, raw: RawState, path: &KeyPath) -> Checked<StatePlan> {
        let redis = match raw.backend.as_deref() {
            None | Some("file") => false,
            Some("redis") => true,
            Some(other) => {
                return invalid(
                    &path.key("backend"),
                    format!("unknown backend {other:?}, expected one of file, redis"),
                )
            }
        };
        let encryption_key =
            self.state_key(raw.encryption_key.as_ref(), &path.key("encryption_key"))?;
        let encryption_key_previous = self.state_key(
            raw.encryption_key_previous.as_ref(),
            &path.key("encryption_key_previous"),
        )?;
        if encryption_key_previous.is_some() && encryption_key.is_none() {
            return invalid(
                &path.key("encryption_key_previous"),
                "only used next to encryption_key (it opens what the previous key sealed)",
            );
        }
        if !redis {
            let because = "with backend = \"file\" (only with \"redis\")";
            forbid(&raw.url, &path.key("url"), because)?;
            forbid(&raw.username, &path.key("username"), because)?;
            forbid(&raw.password, &path.key("password"), because)?;
            forbid(&raw.key_prefix, &path.key("key_prefix"), because)?;
            forbid(&raw.on_unavailable, &path.key("on_unavailable"), because)?;
            forbid(&raw.connect_timeout, &path.key("connect_timeout"), because)?;
            forbid(&raw.command_timeout, &path.key("command_timeout"), because)?;
            return Ok(StatePlan {
                encryption_key,
                encryption_key_previous,
                redis: None,
            });
        }
        if encryption_key.is_none() {
            return invalid(
                &path.key("encryption_key"),
                "missing; required with backend = \"redis\": cookie values and tokens never sit \
                 in Redis in clear (for example { env = \"PROVPROXY_STATE_KEY\" } holding the \
                 output of `openssl rand -base64 32`)",
            );
        }
        let url_path = path.key("url");
        let text = require(
            &raw.url,
            &url_path,
            "the Redis URL, like \"redis://127.0.0.1:6379/0\"",
        )?;
        let url = Url::parse(text)
            // Not quoted: a URL that does not parse may still hold a password.
            .or_else(|err| invalid(&url_path, format!("invalid URL: {err}")))?;
        if !matches!(url.scheme(), "redis" | "rediss") {
            return invalid(&url_path, "must be redis:// or rediss:// (TLS)");
        }
        if url.host_str().is_none_or(str::is_empty) {
            return invalid(&url_path, "names no host");
        }
        if url.password().is_some() || !url.username().is_empty() {
            return invalid(
                &url_path,
                "holds credentials; use state.username and state.password (a secret) instead",
            );
        }
        if url.query().is_some() || url.fragment().is_some() {
            return invalid(&url_path, "must not have a query or fragment");
        }
        let database = url.path().trim_start_matches('/');
        if !database.is_empty() && database.parse::<u16>().is_err() {
            return invalid(
                &url_path,
                format!("the path {database:?} is not a database number"),
            );
        }
        let password = raw
            .password
            .as_ref()
            .map(|password| self.secret(password, &path.key("password")))
            .transpose()?;
        let key_prefix = raw
            .key_prefix
            .clone()
            .unwrap_or_else(|| "provproxy:".to_owned());
        if key_prefix.is_empty()
            || key_prefix
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return invalid(
                &path.key("key_prefix"),
                "must be non-empty, without spaces or control characters, like \"provproxy:\"",
            );
        }
        Ok(StatePlan {
            encryption_key,
            encryption_key_previous,
            redis: Some(RedisPlan {
                url,
                username: raw.username.clone(),
                password,
                key_prefix,
                on_unavailable: one_of(
                    raw.on_unavailable.as_deref(),
                    OnUnavailable::Fail,
                    &[
                        ("fail", OnUnavailable::Fail),
                        ("local", OnUnavailable::Local),
                    ],
                    "value",
                    &path.key("on_unavailable"),
                )?,
                connect_timeout: positive_duration(
                    raw.connect_timeout.as_deref(),
                    Duration::from_secs(1),
                    &path.key("connect_timeout"),
                )?,
                command_timeout: positive_duration(
                    raw.command_timeout.as_deref(),
                    Duration::from_millis(500),
                    &path.key("command_timeout"),
                )?,
            }),
        })
    }

    /// A state key (`encryption_key`, `encryption_key_previous`): a secret long enough to carry
    /// the key's entropy itself.
    fn state_key(&mut self, raw: Option<&RawSecret>, path: &KeyPath) -> Checked<Option<Secret>> {
        let key = raw.map(|key| self.secret(key, path)).transpose()?;
        if let Some(key) = &key {
            if !key.is_missing() && key.expose().len() < MIN_ENCRYPTION_KEY_BYTES {
                return invalid(
                    path,
                    format!(
                        "too short: at least {MIN_ENCRYPTION_KEY_BYTES} characters of random text \
                         (for example the output of `openssl rand -base64 32`)"
                    ),
                );
            }
        }
        Ok(key)
    }

    fn challenge(&mut self, raw: &RawChallenge, path: &KeyPath) -> Checked<ChallengePlan> {
        let mode = one_of(
            raw.mode.as_deref(),
            ChallengeMode::Expand,
            &[
                ("keep", ChallengeMode::Keep),
                ("expand", ChallengeMode::Expand),
                ("replace", ChallengeMode::Replace),
            ],
            "mode",
            &path.key("mode"),
        )?;
        configured(&raw.add, &raw.remove, mode == ChallengeMode::Replace)
            .or_else(|err| invalid(path, err.to_string()))?;
        Ok(ChallengePlan {
            mode,
            add: raw.add.clone(),
            remove: raw.remove.clone(),
            split: raw.split.unwrap_or(true),
        })
    }
}

/// `[routes.tls]`: the trust mode and the SPKI pins, checked against the upstream URL.
fn target_tls(
    raw: &RawTargetTls,
    url: &Url,
    has_ca_file: bool,
    route: &KeyPath,
) -> Checked<(Trust, Vec<[u8; 32]>)> {
    let path = route.key("tls");
    if url.scheme() != "https" {
        return invalid(
            &path,
            format!("not used with an http:// upstream ({url}): there is no certificate to trust"),
        );
    }
    let trust = one_of(
        raw.trust.as_deref(),
        Trust::SystemAndCaFile,
        &[
            ("system+ca_file", Trust::SystemAndCaFile),
            ("ca_file_only", Trust::CaFileOnly),
        ],
        "trust",
        &path.key("trust"),
    )?;
    if trust == Trust::CaFileOnly && !has_ca_file {
        return invalid(
            &path.key("trust"),
            "\"ca_file_only\" needs the route's ca_file (the private CA or the target's own certificate)",
        );
    }
    if raw.pin_sha256.as_ref().is_some_and(Vec::is_empty) {
        return invalid(
            &path.key("pin_sha256"),
            "empty; give at least one pin or leave the key out",
        );
    }
    let mut pins = Vec::new();
    for (index, text) in raw.pin_sha256.iter().flatten().enumerate() {
        pins.push(
            spki_pin(text)
                .or_else(|message| invalid(&path.key("pin_sha256").index(index), message))?,
        );
    }
    Ok((trust, pins))
}

/// A pin as `openssl ... | openssl dgst -sha256 -binary | base64` prints it, optionally in
/// curl's `sha256//` form.
fn spki_pin(text: &str) -> Result<[u8; 32], String> {
    use base64::Engine as _;
    let encoded = text.strip_prefix("sha256//").unwrap_or(text);
    let how = "expected the base64 of a SHA-256 digest of the certificate's public key (44 \
               characters), as printed by `openssl x509 -in cert.pem -pubkey -noout | openssl pkey \
               -pubin -outform der | openssl dgst -sha256 -binary | base64`";
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| format!("{text:?} is not base64; {how}"))?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| format!("{text:?} is {} bytes, not 32; {how}", bytes.len()))
}
