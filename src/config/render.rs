//! `provproxy check`: the resolved plan as an operator reads it, in the config file's own
//! spelling — its tables and keys, durations and sizes as they are written (`"14m"`, `"64KiB"`),
//! enums as their TOML words, relative paths resolved — with every default filled in. A secret
//! shows where it comes from (`<env OSMC_PASSWORD>`, `<file /etc/x>`, `<literal>`), never its value;
//! that is the one place where the output is not TOML.

use std::fmt::Write;
use std::path::Path;
use std::time::Duration;

use super::plan::*;
use super::secret::{Secret, SecretSource};

pub fn render(plan: &Plan) -> String {
    let mut out = Toml::default();
    out.comment("provproxy check: the config is valid. The resolved plan, defaults included;");
    out.comment("secrets show where they come from, never their value.");
    server(&mut out, &plan.server);
    if let Some(admin) = &plan.admin {
        out.table("admin");
        out.string("listen", &admin.listen.to_string());
        if let Some(token) = &admin.token {
            out.secret("token", token);
        }
        out.strings("hosts", &admin.hosts);
    }
    state(&mut out, &plan.state);
    out.table("log");
    out.string("access", plan.log.access.as_str());
    match &plan.trace {
        Some(trace) => self::trace(&mut out, trace),
        None => out.comment("no [trace]: no exchange is recorded"),
    }
    for route in &plan.routes {
        self::route(&mut out, route);
    }
    if !plan.warnings.is_empty() {
        out.0.push('\n');
    }
    for warning in &plan.warnings {
        out.comment(&format!("warning: {warning}"));
    }
    out.0
}

fn server(out: &mut Toml, server: &ServerPlan) {
    out.table("server");
    out.string("listen", &server.listen.to_string());
    if let Some(tls) = &server.tls {
        let mut inline = vec![
            ("cert", quote(&path(&tls.cert))),
            ("key", quote(&path(&tls.key))),
        ];
        if let Some(ca) = &tls.client_ca {
            inline.push(("client_ca", quote(&path(ca))));
        }
        out.inline("tls", &inline);
    }
    out.raw("allow_anyone", server.allow_anyone);
    out.raw("workers", server.workers);
    out.duration("shutdown_grace", server.shutdown_grace);
    let limits = &server.limits;
    out.raw("max_headers", limits.max_headers);
    out.size("max_header_size", limits.max_header_bytes as u64);
    out.duration("header_read_timeout", limits.header_read_timeout);
    out.duration("body_read_timeout", limits.body_read_timeout);
    if let Some(max) = limits.max_request_body {
        out.size("max_request_body", max);
    }
    out.duration("tls_handshake_timeout", limits.tls_handshake_timeout);
    out.duration("first_byte_timeout", limits.first_byte_timeout);
    out.duration("idle_timeout", limits.idle_timeout);
    out.duration(
        "http2_keep_alive_interval",
        limits.http2_keep_alive_interval,
    );
    out.duration("http2_keep_alive_timeout", limits.http2_keep_alive_timeout);
    match limits.max_connections {
        Some(max) => out.raw("max_connections", max),
        None => out.comment("no max_connections: client connections are not capped"),
    }
    out.strings("hosts", &server.hosts);
    out.raw("allow_browsers", server.allow_browsers);
    if server.clients.is_empty() && !server.allow_anyone {
        out.comment("no [[server.clients]]: only loopback clients can reach the listener");
    }
    for client in &server.clients {
        out.array_table("server.clients");
        out.string("name", &client.name);
        match &client.credential {
            ClientCredential::Token(token) => out.secret("token", token),
            ClientCredential::Basic { username, password } => {
                out.string("username", username);
                out.secret("password", password);
            }
            ClientCredential::Certificate => out.raw("certificate", true),
        }
    }
}

fn state(out: &mut Toml, state: &StatePlan) {
    out.table("state");
    out.string(
        "backend",
        if state.redis.is_some() {
            "redis"
        } else {
            "file"
        },
    );
    if let Some(redis) = &state.redis {
        out.string("url", redis.url.as_str());
        if let Some(username) = &redis.username {
            out.string("username", username);
        }
        if let Some(password) = &redis.password {
            out.secret("password", password);
        }
        out.string("key_prefix", &redis.key_prefix);
        out.string(
            "on_unavailable",
            match redis.on_unavailable {
                crate::config::OnUnavailable::Fail => "fail",
                crate::config::OnUnavailable::Local => "local",
            },
        );
        out.duration("connect_timeout", redis.connect_timeout);
        out.duration("command_timeout", redis.command_timeout);
    }
    match &state.encryption_key {
        Some(key) => out.secret("encryption_key", key),
        None => out.comment("no encryption_key: cookie values are stored in the clear"),
    }
    if let Some(previous) = &state.encryption_key_previous {
        out.secret("encryption_key_previous", previous);
    }
}

fn trace(out: &mut Toml, trace: &TracePlan) {
    out.table("trace");
    if let Some(har) = &trace.har {
        out.string("har", &path(har));
    }
    if let Some(jsonl) = &trace.jsonl {
        out.string("jsonl", &path(jsonl));
    }
    if !trace.writes_files() {
        out.comment("no har or jsonl: exchanges are kept in memory only (GET /exchanges)");
    }
    out.raw("bodies", trace.bodies);
    out.size("max_body", trace.max_body as u64);
    out.strings("redact_fields", &trace.redact_fields);
    out.size("rotate_size", trace.rotate_bytes);
    out.raw("keep", trace.keep);
    out.raw("channel_capacity", trace.channel_capacity);
    out.size("queue_size", trace.queue_bytes as u64);
    out.raw("recent", trace.recent);
}

fn route(out: &mut Toml, route: &RoutePlan) {
    out.array_table("routes");
    out.string("name", &route.name);
    match &route.matcher {
        RouteMatch::Prefix(prefix) => {
            out.string("prefix", prefix);
            out.raw("strip_prefix", route.strip_prefix);
        }
        RouteMatch::Host(host) => out.string("host", host),
    }
    let upstream = &route.upstream;
    out.string("upstream", upstream.url.as_str());
    if let Some(ca) = &upstream.ca_file {
        out.string("ca_file", &path(ca));
    }
    out.duration("connect_timeout", upstream.connect_timeout);
    out.duration("request_timeout", upstream.request_timeout);
    out.raw("preserve_host", route.preserve_host);
    if let Some(clients) = &route.clients {
        out.strings("clients", clients);
    }
    if let Some(max) = route.max_request_body {
        out.size("max_request_body", max);
    }
    out.raw("allow_encoded_slashes", route.allow_encoded_slashes);
    target_tls(out, upstream);
    auth(out, &route.auth);
    if let Some(session) = &route.session {
        self::session(out, session);
    }
    let challenge = &route.challenge;
    if challenge.mode != ChallengeMode::Keep {
        out.table("routes.challenge");
        out.string(
            "mode",
            match challenge.mode {
                ChallengeMode::Keep => "keep",
                ChallengeMode::Expand => "expand",
                ChallengeMode::Replace => "replace",
            },
        );
        out.strings("add", &challenge.add);
        out.strings("remove", &challenge.remove);
        out.raw("split", challenge.split);
    }
    if route.raw_bodies {
        out.table("routes.trace");
        out.raw("raw_bodies", true);
    }
}

/// What the route trusts for its target's certificate.
fn target_tls(out: &mut Toml, upstream: &Upstream) {
    use base64::Engine as _;
    if upstream.url.scheme() != "https" {
        out.comment("plain http: no TLS to the target");
        return;
    }
    out.table("routes.tls");
    out.string("trust", upstream.trust.as_str());
    if !upstream.pin_sha256.is_empty() {
        let pins: Vec<String> = upstream
            .pin_sha256
            .iter()
            .map(|pin| base64::engine::general_purpose::STANDARD.encode(pin))
            .collect();
        out.strings("pin_sha256", &pins);
    }
    match (&upstream.ca_file, upstream.trust) {
        (Some(ca), Trust::SystemAndCaFile) => out.comment(&format!(
            "trusted: the system and webpki roots, plus {}",
            path(ca)
        )),
        (Some(ca), Trust::CaFileOnly) => out.comment(&format!("trusted: only {}", path(ca))),
        (None, _) => out.comment("trusted: the system and webpki roots"),
    }
}

fn auth(out: &mut Toml, auth: &AuthPlan) {
    out.table("routes.auth");
    out.string("kind", auth.kind.name());
    out.string("when", auth.when.as_str());
    out.raw("normalize", auth.normalize);
    match &auth.kind {
        AuthKind::None => {}
        AuthKind::Basic { username, password } => {
            out.string("username", username);
            out.secret("password", password);
        }
        AuthKind::Bearer { token } => out.secret("token", token),
        AuthKind::Header { name, value } => {
            out.string("name", name.as_str());
            out.secret("value", value);
        }
        AuthKind::OAuth2(oauth) => {
            match &oauth.grant {
                Grant::ClientCredentials => out.string("grant", "client_credentials"),
                Grant::Password { username, password } => {
                    out.string("grant", "password");
                    out.string("username", username);
                    out.secret("password", password);
                }
            }
            out.string("token_url", oauth.token_url.as_str());
            out.string("client_id", &oauth.client_id);
            if let Some(secret) = &oauth.client_secret {
                out.secret("client_secret", secret);
            }
            out.string(
                "client_auth",
                match oauth.client_auth {
                    ClientAuth::Basic => "basic",
                    ClientAuth::Post => "post",
                },
            );
            out.strings("scopes", &oauth.scopes);
            if !oauth.extra_params.is_empty() {
                let params: Vec<(&str, String)> = oauth
                    .extra_params
                    .iter()
                    .map(|(key, value)| (key.as_str(), quote(value)))
                    .collect();
                out.inline("params", &params);
            }
            if let Some(ca) = &oauth.ca_file {
                out.string("ca_file", &path(ca));
            }
            match oauth.refresh_skew {
                Some(skew) => out.duration("refresh_skew", skew),
                None => out.comment("refresh_skew: min(60s, 10% of expires_in)"),
            }
            out.duration("timeout", oauth.timeout);
        }
    }
}

fn session(out: &mut Toml, session: &SessionPlan) {
    out.table("routes.session");
    out.raw("cookies", session.cookies);
    out.string("key", &session.key.to_string());
    out.duration("idle_timeout", session.idle_timeout);
    out.raw("serialize", session.serialize);
    let relogin_on: Vec<String> = session
        .relogin_on
        .iter()
        .map(|status| status.as_u16().to_string())
        .collect();
    out.raw("relogin_on", format!("[{}]", relogin_on.join(", ")));
    out.raw("max_sessions", session.max_sessions);
    if let Some(key) = &session.default_key {
        out.string("default_key", key);
    }
    if let Some(text) = &session.relogin_body_contains {
        out.string("relogin_body_contains", text);
    }
    out.size("replay_body_limit", session.replay_body_limit as u64);
    match &session.persist {
        Some(file) => out.string("persist", &path(file)),
        None => out.comment("no persist: sessions live in memory only"),
    }
    out.string(
        "client_cookies",
        match session.client_cookies {
            ClientCookies::Strip => "strip",
            ClientCookies::Pass => "pass",
        },
    );
    if let Some(login) = &session.login {
        let expect: Vec<String> = login
            .expect_status
            .iter()
            .map(|status| status.as_u16().to_string())
            .collect();
        let mut inline = vec![
            ("method", quote(login.method.as_str())),
            ("path", quote(&login.path)),
            ("expect_status", format!("[{}]", expect.join(", "))),
        ];
        if let Some(body) = &login.body {
            inline.push(("body", secret(body)));
        }
        if let Some(content_type) = &login.content_type {
            inline.push(("content_type", quote(content_type)));
        }
        out.inline("login", &inline);
    }
    for token in &session.tokens {
        self::token(out, token);
    }
}

fn token(out: &mut Toml, token: &TokenPlan) {
    out.array_table("routes.session.tokens");
    out.string("name", &token.name);
    let fetch = &token.fetch;
    let mut inline = vec![
        ("method", quote(fetch.method.as_str())),
        ("path", quote(&fetch.path)),
    ];
    if !fetch.headers.is_empty() {
        let headers: Vec<String> = fetch
            .headers
            .iter()
            .map(|(name, value)| {
                format!(
                    "{} = {}",
                    quote(name.as_str()),
                    quote(&String::from_utf8_lossy(value.as_bytes()))
                )
            })
            .collect();
        inline.push(("headers", format!("{{ {} }}", headers.join(", "))));
    }
    if let Some(body) = &fetch.body {
        inline.push(("body", secret(body)));
    }
    if let Some(content_type) = &fetch.content_type {
        inline.push(("content_type", quote(content_type)));
    }
    out.inline("fetch", &inline);
    out.string("from", &token.from.spelling());
    out.string("to", &format!("header:{}", token.to));
    out.string("format", &token.format.spelling());
    match &token.methods {
        Some(methods) => {
            let methods: Vec<String> = methods.iter().map(|m| m.as_str().to_owned()).collect();
            out.strings("methods", &methods);
        }
        None => out.comment("methods: all"),
    }
    let refetch_on: Vec<String> = token
        .refetch_on
        .iter()
        .map(|status| status.as_u16().to_string())
        .collect();
    out.raw("refetch_on", format!("[{}]", refetch_on.join(", ")));
}

/// The output, built line by line.
#[derive(Default)]
struct Toml(String);

impl Toml {
    fn comment(&mut self, text: &str) {
        let _ = writeln!(self.0, "# {text}");
    }

    fn table(&mut self, name: &str) {
        let _ = writeln!(self.0, "\n[{name}]");
    }

    fn array_table(&mut self, name: &str) {
        let _ = writeln!(self.0, "\n[[{name}]]");
    }

    fn raw(&mut self, key: &str, value: impl std::fmt::Display) {
        let _ = writeln!(self.0, "{key} = {value}");
    }

    fn string(&mut self, key: &str, value: &str) {
        self.raw(key, quote(value));
    }

    fn strings(&mut self, key: &str, values: &[String]) {
        let quoted: Vec<String> = values.iter().map(|value| quote(value)).collect();
        self.raw(key, format!("[{}]", quoted.join(", ")));
    }

    fn duration(&mut self, key: &str, value: Duration) {
        self.string(key, &duration(value));
    }

    fn size(&mut self, key: &str, bytes: u64) {
        self.string(key, &size(bytes));
    }

    fn secret(&mut self, key: &str, value: &Secret) {
        self.raw(key, secret(value));
    }

    /// `key = { a = 1, b = "x" }` from already rendered values.
    fn inline(&mut self, key: &str, pairs: &[(&str, String)]) {
        let pairs: Vec<String> = pairs
            .iter()
            .map(|(name, value)| format!("{name} = {value}"))
            .collect();
        self.raw(key, format!("{{ {} }}", pairs.join(", ")));
    }
}

/// Where a secret comes from: `<env NAME>`, `<file PATH>`, `<literal>`.
fn secret(secret: &Secret) -> String {
    match secret.source() {
        SecretSource::Env(name) => format!("<env {name}>"),
        SecretSource::File(file) => format!("<file {}>", path(file)),
        SecretSource::Literal => "<literal>".to_owned(),
    }
}

/// A TOML string: a literal string (`'Basic realm="x"'`) when the text has double quotes and
/// can be one, a basic string with escapes otherwise.
fn quote(text: &str) -> String {
    let plain = |c: char| !c.is_control();
    if text.contains('"') && !text.contains('\'') && text.chars().all(plain) {
        return format!("'{text}'");
    }
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `"14m"`, `"1h 30m"`, `"500ms"`, as the config writes durations.
fn duration(value: Duration) -> String {
    humantime::format_duration(value).to_string()
}

/// `"64KiB"`, `"1MiB"`, or the number of bytes when no binary unit divides it.
fn size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (unit, name) in UNITS {
        if bytes >= unit && bytes % unit == 0 {
            return format!("{}{name}", bytes / unit);
        }
    }
    bytes.to_string()
}

fn path(path: &Path) -> String {
    path.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_written_as_the_config_writes_them() {
        assert_eq!(duration(Duration::from_secs(14 * 60)), "14m");
        assert_eq!(duration(Duration::from_millis(1500)), "1s 500ms");
        assert_eq!(size(64 * 1024), "64KiB");
        assert_eq!(size(1 << 20), "1MiB");
        assert_eq!(size(1000), "1000");
        assert_eq!(quote(r#"Basic realm="osmc""#), r#"'Basic realm="osmc"'"#);
        assert_eq!(quote("a\"b'c\n"), r#""a\"b'c\n""#);
        assert_eq!(quote("plain"), r#""plain""#);
    }

    #[test]
    fn the_rendered_plan_loads_again_as_the_same_plan_once_secrets_are_filled_in() {
        let text = r#"
[server]
listen = "127.0.0.1:8080"
[log]
access = "json"
[trace]
har = "traces/x.har"
keep = 3
[[routes]]
name = "osmc"
prefix = "/osmc/"
upstream = "https://osmc.example.com/api/"
[routes.auth]
kind = "basic"
username = "svc"
password = { env = "PW" }
[routes.session]
idle_timeout = "14m"
relogin_on = [401, 419]
[routes.challenge]
add = ['Basic realm="osmc"']
[routes.trace]
raw_bodies = true
"#;
        let env = |_: &str| Some("not-shown-7f3a".to_owned());
        let base = Path::new("/etc/provproxy");
        let plan = crate::config::load_str(text, "x.toml", base, &env).unwrap();
        let rendered = render(&plan);
        assert!(!rendered.contains("not-shown-7f3a"));
        assert!(!rendered.contains("Some("), "{rendered}");
        assert!(rendered.contains("password = <env PW>"), "{rendered}");
        assert!(rendered.contains("idle_timeout = \"14m\""), "{rendered}");
        assert!(rendered.contains("har = \"/etc/provproxy/traces/x.har\""));
        assert!(
            rendered.contains("[routes.trace]\nraw_bodies = true"),
            "{rendered}"
        );
        let refilled = rendered.replace("<env PW>", "{ env = \"PW\" }");
        let again = crate::config::load_str(&refilled, "y.toml", base, &env)
            .unwrap_or_else(|err| panic!("{err}\n{refilled}"));
        assert_eq!(render(&again), rendered);
    }
}
