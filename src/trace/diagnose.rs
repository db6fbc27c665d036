//! `diagnose`: reads a HAR (ours, or a browser's, Fiddler's, Charles's, mitmproxy's) and names
//! the likely cause of each failed exchange, with the evidence and the fix.
//!
//! Foreign HARs miss optional fields and carry no `_provproxy` data, so every field is read
//! leniently; evidence quoted from them goes through the same redaction as our own traces.

use std::collections::HashMap;
use std::fmt::Write as _;

use base64::Engine as _;
use http::header::AUTHORIZATION;
use serde::Serialize;
use serde_json::Value;

use super::redact::{authorization, Redactor};

/// How much of a body is quoted as evidence.
const EXCERPT_CHARS: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum DiagnoseError {
    #[error("the trace is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the trace is not a HAR: it has no log.entries array")]
    NotHar,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    SessionLocked,
    ChallengeSchemeMismatch,
    BasicRefusedOauthRequired,
    InsufficientScope,
    DoubledBearerPrefix,
    AclDenied,
    RecordNotFound,
    ExpiredToken,
    UpstreamUnreachable,
    TlsFailure,
    Unauthorized,
    Forbidden,
    NotFound,
    ClientError,
    ServerError,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::SessionLocked => "session_locked",
            Class::ChallengeSchemeMismatch => "challenge_scheme_mismatch",
            Class::BasicRefusedOauthRequired => "basic_refused_oauth_required",
            Class::InsufficientScope => "insufficient_scope",
            Class::DoubledBearerPrefix => "doubled_bearer_prefix",
            Class::AclDenied => "acl_denied",
            Class::RecordNotFound => "record_not_found",
            Class::ExpiredToken => "expired_token",
            Class::UpstreamUnreachable => "upstream_unreachable",
            Class::TlsFailure => "tls_failure",
            Class::Unauthorized => "unauthorized",
            Class::Forbidden => "forbidden",
            Class::NotFound => "not_found",
            Class::ClientError => "client_error",
            Class::ServerError => "server_error",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub exchanges: usize,
    pub findings: Vec<Finding>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// 1-based position of the entry in the HAR.
    pub entry: usize,
    /// provproxy's exchange id, when the HAR is ours.
    pub id: Option<u64>,
    pub method: String,
    pub url: String,
    /// 0 when no response arrived.
    pub status: u16,
    pub class: Class,
    pub evidence: Vec<String>,
    pub fix: String,
}

/// One HAR entry, read leniently.
struct Exchange {
    id: Option<u64>,
    method: String,
    url: String,
    host: String,
    status: u16,
    request_headers: Vec<(String, String)>,
    response_headers: Vec<(String, String)>,
    cookies_sent: Vec<String>,
    cookies_set: Vec<String>,
    body: String,
    /// A transport error: ours (`_provproxy.error`) or a browser's (`response._error`).
    error: Option<String>,
}

impl Exchange {
    fn parse(entry: &Value, redactor: &Redactor) -> Self {
        let request = &entry["request"];
        let response = &entry["response"];
        let url = str_at(request, "url");
        let request_headers = headers(&request["headers"]);
        let response_headers = headers(&response["headers"]);
        let mut cookies_sent = names(&request["cookies"]);
        for (_, v) in request_headers.iter().filter(|(n, _)| n == "cookie") {
            cookies_sent.extend(v.split(';').filter_map(cookie_name));
        }
        let mut cookies_set = names(&response["cookies"]);
        for (_, v) in response_headers.iter().filter(|(n, _)| n == "set-cookie") {
            // Browsers join several Set-Cookie lines with newlines in one HAR header.
            cookies_set.extend(v.lines().filter_map(|l| cookie_name(l.split(';').next()?)));
        }
        let provproxy_error = entry["_provproxy"]["error"].as_object().map(|e| {
            format!(
                "{}: {}",
                e.get("kind").and_then(Value::as_str).unwrap_or("error"),
                e.get("detail").and_then(Value::as_str).unwrap_or("")
            )
        });
        let browser_error = response["_error"].as_str().map(str::to_owned);
        Exchange {
            id: entry["_provproxy"]["id"].as_u64(),
            method: str_at(request, "method"),
            host: host(&url).to_owned(),
            url: redactor.url(&url).into_owned(),
            status: response["status"]
                .as_u64()
                .and_then(|s| u16::try_from(s).ok())
                .unwrap_or(0),
            request_headers,
            response_headers,
            cookies_sent,
            cookies_set,
            body: body_text(&response["content"]),
            error: provproxy_error.or(browser_error),
        }
    }

    fn request_header(&self, name: &str) -> Option<&str> {
        self.request_headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn challenges(&self) -> impl Iterator<Item = &str> {
        self.response_headers
            .iter()
            .filter(|(n, _)| n == "www-authenticate")
            .map(|(_, v)| v.as_str())
    }

    fn failed(&self) -> bool {
        self.status == 0 || self.status >= 400 || self.error.is_some()
    }
}

/// Reads a HAR and produces one finding per failed exchange.
pub fn diagnose(har_text: &str) -> Result<Report, DiagnoseError> {
    let doc: Value = serde_json::from_str(har_text)?;
    let entries = doc["log"]["entries"]
        .as_array()
        .ok_or(DiagnoseError::NotHar)?;
    let redactor = Redactor::with_default_fields();
    let exchanges: Vec<Exchange> = entries
        .iter()
        .map(|e| Exchange::parse(e, &redactor))
        .collect();

    // Cookies each host has set so far in successful responses, with the entry that set them.
    let mut jar: HashMap<&str, Vec<(&str, usize)>> = HashMap::new();
    let mut findings = Vec::new();
    for (i, ex) in exchanges.iter().enumerate() {
        if ex.failed() {
            let set_before = jar.get(ex.host.as_str()).map_or(&[][..], Vec::as_slice);
            let (class, evidence) = classify(ex, set_before, &exchanges, &redactor);
            findings.push(Finding {
                entry: i + 1,
                id: ex.id,
                method: ex.method.clone(),
                url: ex.url.clone(),
                status: ex.status,
                class,
                evidence,
                fix: fix(class, ex),
            });
        }
        // A session is opened by a call that succeeded; cookies on failures do not count.
        if ex.failed() {
            continue;
        }
        let set = jar.entry(ex.host.as_str()).or_default();
        for name in &ex.cookies_set {
            set.retain(|(n, _)| n != name);
            set.push((name.as_str(), i));
        }
    }
    Ok(Report {
        exchanges: exchanges.len(),
        findings,
    })
}

fn classify(
    ex: &Exchange,
    set_before: &[(&str, usize)],
    all: &[Exchange],
    redactor: &Redactor,
) -> (Class, Vec<String>) {
    let mut evidence = Vec::new();
    let challenges: Vec<&str> = ex.challenges().collect();
    for c in &challenges {
        evidence.push(format!("WWW-Authenticate: {c}"));
    }
    let auth = ex.request_header(AUTHORIZATION.as_str());
    let sent_scheme = auth.and_then(|a| a.split_whitespace().next());
    if let Some(a) = auth {
        evidence.push(format!("request Authorization: {}", authorization(a)));
    }
    let excerpt = excerpt(&ex.body, redactor);
    let with_body = |mut evidence: Vec<String>| {
        if !excerpt.is_empty() {
            evidence.push(format!("response body: {excerpt}"));
        }
        evidence
    };

    if let Some(class) = transport_failure(ex) {
        let detail = ex
            .error
            .clone()
            .unwrap_or_else(|| format!("proxy error {}", ex.status));
        evidence.insert(0, format!("no response from the target: {detail}"));
        return (class, with_body(evidence));
    }
    if let Some(a) = auth {
        let mut words = a.split_whitespace();
        if let (Some(first), Some(second)) = (words.next(), words.next()) {
            if first.eq_ignore_ascii_case(second) {
                return (Class::DoubledBearerPrefix, evidence);
            }
        }
    }
    let error_param = challenges.iter().find_map(|c| param(c, "error"));
    if error_param.as_deref() == Some("insufficient_scope")
        || ex.body.contains("insufficient_scope")
    {
        if let Some(scope) = challenges.iter().find_map(|c| param(c, "scope")) {
            evidence.push(format!("required scope: {scope}"));
        }
        return (Class::InsufficientScope, with_body(evidence));
    }
    let lower_body = ex.body.to_ascii_lowercase();
    let description = challenges
        .iter()
        .find_map(|c| param(c, "error_description"))
        .unwrap_or_default()
        .to_ascii_lowercase();
    let invalid_token = error_param.as_deref() == Some("invalid_token");
    if ex.status == 401
        && (invalid_token || lower_body.contains("token"))
        && (description.contains("expired") || lower_body.contains("expired"))
    {
        return (Class::ExpiredToken, with_body(evidence));
    }

    match ex.status {
        401 => {
            let missing: Vec<_> = set_before
                .iter()
                .filter(|(name, _)| !ex.cookies_sent.iter().any(|s| s == name))
                .collect();
            if !missing.is_empty() {
                for (name, at) in missing {
                    let by = &all[*at];
                    evidence.insert(
                        0,
                        format!(
                            "cookie {name} set by entry {} ({} {}) was not sent back",
                            at + 1,
                            by.method,
                            by.url
                        ),
                    );
                }
                return (Class::SessionLocked, with_body(evidence));
            }
            let offered = offered_schemes(&challenges);
            let offers = |s: &str| offered.iter().any(|o| o.eq_ignore_ascii_case(s));
            let sent_basic = sent_scheme.is_some_and(|s| s.eq_ignore_ascii_case("basic"));
            let bearer_only = offers("bearer") && !offers("basic");
            if sent_basic
                && (bearer_only || lower_body.contains("oauth") || lower_body.contains("policy"))
            {
                return (Class::BasicRefusedOauthRequired, with_body(evidence));
            }
            let mismatch = match sent_scheme {
                Some(s) => !offered.is_empty() && !offers(s),
                // A client that waits for the challenge never sends Basic when it is not offered.
                None => !offered.is_empty() && !offers("basic"),
            };
            if mismatch {
                evidence.push(format!(
                    "client sent {}; challenge offers only {}",
                    sent_scheme.unwrap_or("no credentials"),
                    offered.join(", ")
                ));
                return (Class::ChallengeSchemeMismatch, with_body(evidence));
            }
            (Class::Unauthorized, with_body(evidence))
        }
        403 if ex.body.contains("ACL") || lower_body.contains("security constraints") => {
            (Class::AclDenied, with_body(evidence))
        }
        403 => (Class::Forbidden, with_body(evidence)),
        404 if lower_body.contains("no record found") || ends_in_record_id(&ex.url) => {
            (Class::RecordNotFound, with_body(evidence))
        }
        404 => (Class::NotFound, with_body(evidence)),
        s if s >= 500 => (Class::ServerError, with_body(evidence)),
        _ => (Class::ClientError, with_body(evidence)),
    }
}

/// Status 0, a recorded transport error, or the proxy's own 502/504 JSON error body.
fn transport_failure(ex: &Exchange) -> Option<Class> {
    let proxy_error = matches!(ex.status, 502 | 504)
        && serde_json::from_str::<Value>(&ex.body).is_ok_and(|v| {
            v.get("error").is_some() && v.get("route").is_some() && v.get("detail").is_some()
        });
    if ex.status != 0 && ex.error.is_none() && !proxy_error {
        return None;
    }
    let text = format!("{} {}", ex.error.as_deref().unwrap_or(""), ex.body).to_ascii_lowercase();
    let tls = ["tls", "ssl", "cert", "handshake"]
        .iter()
        .any(|w| text.contains(w));
    Some(if tls {
        Class::TlsFailure
    } else {
        Class::UpstreamUnreachable
    })
}

fn fix(class: Class, ex: &Exchange) -> String {
    let realm = ex
        .challenges()
        .find_map(|c| param(c, "realm"))
        .unwrap_or_else(|| "api".to_owned());
    match class {
        Class::SessionLocked => "[routes.session] cookies = true, key = \"route\" (serialize = true): the proxy keeps the target's session cookie and replays it on every call".into(),
        Class::ChallengeSchemeMismatch => format!("[routes.challenge] mode = \"expand\", add = ['Basic realm=\"{realm}\"'], or let the proxy inject the credential ([routes.auth] when = \"always\"); on ServiceNow, set \"Advertise all auth schemes\" in the API Access Policy"),
        Class::BasicRefusedOauthRequired => "[routes.auth] kind = \"oauth2\" (grant, token_url, client_id, client_secret): the target's authentication policy refuses Basic".into(),
        Class::InsufficientScope => {
            let scope = ex.challenges().find_map(|c| param(c, "scope")).unwrap_or_else(|| "<scope>".into());
            let scopes = scope.split_whitespace().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ");
            format!("[routes.auth] kind = \"oauth2\", scopes = [{scopes}]: the token was issued without the scope the target requires")
        }
        Class::DoubledBearerPrefix => "remove the \"Bearer \" prefix from the token configured in the connector (it adds its own), or let the proxy inject it: [routes.auth] kind = \"bearer\"".into(),
        Class::AclDenied => "target side: give the service account the roles the table's ACLs require (ServiceNow: check the create/write ACLs of the table); no proxy setting fixes this".into(),
        Class::RecordNotFound => "target side: the id the connector holds no longer exists or an ACL hides it; after an instance clone, re-aggregate so external ids match, and check the service account's read ACL".into(),
        Class::ExpiredToken => "[routes.auth] kind = \"oauth2\" so the proxy refreshes the token before expiry, with [routes.session] relogin_on = [401] to fetch anew and replay once".into(),
        Class::UpstreamUnreachable => "check the route's upstream URL, DNS and firewall from the proxy host, and connect_timeout / request_timeout under [[routes]]".into(),
        Class::TlsFailure => "[[routes]] ca_file = \"...\" with the target's CA (private CAs are common), and check that the upstream host name matches the certificate".into(),
        Class::Unauthorized => "check the stored credential under [routes.auth] (kind, username, secret source) and the challenge the target sends".into(),
        Class::Forbidden => "target side: the account is authenticated but lacks a permission for this operation".into(),
        Class::NotFound => "check the route's upstream base path and prefix/strip_prefix: the target has no such resource".into(),
        Class::ClientError => "the target rejected the request: read the response body for the field it refuses".into(),
        Class::ServerError => "target side error: read the response body and the target's logs; retry once it is healthy".into(),
    }
}

/// Scheme names a set of `WWW-Authenticate` values offers. Lenient: `Token Basic realm="x"`
/// (seen in the field) offers both Token and Basic.
fn offered_schemes(challenges: &[&str]) -> Vec<String> {
    let mut schemes = Vec::new();
    for value in challenges {
        for piece in split_outside_quotes(value, ',') {
            let mut words = piece.split_whitespace();
            let Some(first) = words.next() else { continue };
            if first.contains('=') {
                continue;
            }
            schemes.push(first.to_owned());
            for word in words {
                if word.contains('=') || word.starts_with('"') {
                    break;
                }
                if KNOWN_SCHEMES.iter().any(|s| s.eq_ignore_ascii_case(word)) {
                    schemes.push(word.to_owned());
                }
            }
        }
    }
    schemes
}

const KNOWN_SCHEMES: &[&str] = &["Basic", "Bearer", "Digest", "Negotiate", "NTLM", "Token"];

fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(s[start..].trim());
    parts
}

/// An auth-param's value (`error="invalid_token"`), unquoted.
fn param(challenge: &str, name: &str) -> Option<String> {
    for piece in split_outside_quotes(challenge, ',') {
        // The first piece of a challenge starts with its scheme: `Bearer realm="x"`.
        let param = piece
            .split_once(char::is_whitespace)
            .filter(|(scheme, _)| !scheme.contains('='))
            .map_or(piece, |(_, rest)| rest.trim());
        let Some((key, value)) = param.split_once('=') else {
            continue;
        };
        if key.trim().eq_ignore_ascii_case(name) {
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            return Some(value.replace("\\\"", "\""));
        }
    }
    None
}

/// A ServiceNow sys_id, a UUID, or a number as the last path segment.
fn ends_in_record_id(url: &str) -> bool {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let last = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    let hex32 = last.len() == 32 && last.bytes().all(|b| b.is_ascii_hexdigit());
    let uuid = last.len() == 36
        && last.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
        && last.matches('-').count() == 4;
    let number = !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit());
    hex32 || uuid || number
}

/// The body, redacted and cut short, on one line.
fn excerpt(body: &str, redactor: &Redactor) -> String {
    let text = match serde_json::from_str::<Value>(body) {
        Ok(mut value) => {
            redactor.json(&mut value);
            value.to_string()
        }
        Err(_) if body.contains('=') && !body.contains(char::is_whitespace) => redactor.form(body),
        Err(_) => body.split_whitespace().collect::<Vec<_>>().join(" "),
    };
    match text.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

fn body_text(content: &Value) -> String {
    let text = content["text"].as_str().unwrap_or("");
    if content["encoding"].as_str() == Some("base64") {
        let compact: String = text.split_whitespace().collect();
        return base64::engine::general_purpose::STANDARD
            .decode(compact)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
    }
    text.to_owned()
}

fn headers(list: &Value) -> Vec<(String, String)> {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|h| {
                    let name = h["name"].as_str()?.to_ascii_lowercase();
                    Some((name, h["value"].as_str().unwrap_or("").to_owned()))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn names(cookies: &Value) -> Vec<String> {
    cookies
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|c| c["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn cookie_name(pair: &str) -> Option<String> {
    let name = pair.split('=').next()?.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

fn str_at(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or("").to_owned()
}

fn host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split(['/', '?', '#']).next().unwrap_or("")
}

/// One block per finding, then the summary line.
pub fn render_text(report: &Report) -> String {
    let mut out = String::new();
    for f in &report.findings {
        let status = if f.status == 0 {
            "no response".to_owned()
        } else {
            f.status.to_string()
        };
        let _ = writeln!(
            out,
            "#{} {} {} -> {}: {}",
            f.entry,
            f.method,
            f.url,
            status,
            f.class.as_str()
        );
        for e in &f.evidence {
            let _ = writeln!(out, "  evidence: {e}");
        }
        let _ = writeln!(out, "  fix: {}\n", f.fix);
    }
    out.push_str(&summary(report));
    out.push('\n');
    out
}

/// `3 exchanges, 2 failed: 1 session_locked, 1 acl_denied` (classes in order of first failure).
pub fn summary(report: &Report) -> String {
    let mut counts: Vec<(Class, usize)> = Vec::new();
    for f in &report.findings {
        match counts.iter_mut().find(|(c, _)| *c == f.class) {
            Some((_, n)) => *n += 1,
            None => counts.push((f.class, 1)),
        }
    }
    let mut line = format!(
        "{} exchange{}, {} failed",
        report.exchanges,
        if report.exchanges == 1 { "" } else { "s" },
        report.findings.len()
    );
    if !counts.is_empty() {
        let parts: Vec<String> = counts
            .iter()
            .map(|(c, n)| format!("{n} {}", c.as_str()))
            .collect();
        line.push_str(": ");
        line.push_str(&parts.join(", "));
    }
    line
}

pub fn render_json(report: &Report) -> String {
    // Plain structs with string keys: serialization cannot fail.
    serde_json::to_string_pretty(report)
        .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }).to_string())
}
