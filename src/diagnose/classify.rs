//! The likely cause of one failed answer, from its status, challenge, body and the cookies set
//! earlier in the trace; and the setting or the target-side change that fixes it.

use http::header::AUTHORIZATION;
use serde::Serialize;
use serde_json::Value;

use super::read::Entry;
use crate::trace::redact::{authorization, Redactor};

/// How much of a body is quoted as evidence.
const EXCERPT_CHARS: usize = 200;

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
    LoginFailed,
    TokenFetchFailed,
    CsrfTokenRequired,
    SessionLoginRequired,
    SessionTokenFetchFailed,
    RefusedByProxy,
    ResponseCutShort,
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
            Class::LoginFailed => "login_failed",
            Class::TokenFetchFailed => "token_fetch_failed",
            Class::CsrfTokenRequired => "csrf_token_required",
            Class::SessionLoginRequired => "session_login_required",
            Class::SessionTokenFetchFailed => "session_token_fetch_failed",
            Class::RefusedByProxy => "refused_by_proxy",
            Class::ResponseCutShort => "response_cut_short",
            Class::Unauthorized => "unauthorized",
            Class::Forbidden => "forbidden",
            Class::NotFound => "not_found",
            Class::ClientError => "client_error",
            Class::ServerError => "server_error",
        }
    }
}

pub(super) fn classify(
    ex: &Entry,
    set_before: &[(&str, usize)],
    all: &[Entry],
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

    if let Some(class) = proxy_failure(ex) {
        if let Some(error) = &ex.error {
            evidence.insert(0, format!("the proxy answered: {error}"));
        }
        return (class, with_body(evidence));
    }
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

    if ex.status == 403 && csrf_required(ex, &lower_body) {
        evidence.push("response X-CSRF-Token: Required".to_owned());
        return (Class::CsrfTokenRequired, with_body(evidence));
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
            // A login-session target: its 401 asks for a session the client never logged in
            // to get (or sent under the `Session` scheme and the target no longer knows).
            let sent_session = sent_scheme.is_some_and(|s| s.eq_ignore_ascii_case("session"));
            let asks_for_login = lower_body.contains("session")
                && (lower_body.contains("login") || lower_body.contains("log in"));
            if challenges.is_empty() && (sent_session || asks_for_login) {
                return (Class::SessionLoginRequired, with_body(evidence));
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

/// A failure the proxy recorded that is not about reaching the target: its own login request
/// or token fetch failed, it refused the client's request, or a response was cut short.
fn proxy_failure(ex: &Entry) -> Option<Class> {
    // A browser-side HAR sees our error only as the JSON body of a 502.
    let body_kind = serde_json::from_str::<Value>(&ex.body)
        .ok()
        .filter(|v| v.get("route").is_some() && v.get("side").is_some())
        .and_then(|v| v.get("error")?.as_str().map(str::to_owned));
    let kind = ex.error_kind.clone().or(body_kind)?;
    if kind == "login_failed" {
        Some(Class::LoginFailed)
    } else if kind == "token_fetch_failed" {
        Some(Class::SessionTokenFetchFailed)
    } else if kind.starts_with("oauth_") {
        Some(Class::TokenFetchFailed)
    } else if kind == "response_cut_short" {
        Some(Class::ResponseCutShort)
    } else if ex.error_side.as_deref() == Some("client") {
        Some(Class::RefusedByProxy)
    } else {
        None
    }
}

/// The CSRF protocol's refusal: `X-CSRF-Token: Required` (SAP Gateway and others), or a body
/// that says the CSRF token failed validation.
fn csrf_required(ex: &Entry, lower_body: &str) -> bool {
    ex.response_headers
        .iter()
        .any(|(name, value)| name == "x-csrf-token" && value.eq_ignore_ascii_case("required"))
        || lower_body.contains("csrf token")
}

/// Status 0, a recorded transport error, or the proxy's own 502/504 JSON error body.
fn transport_failure(ex: &Entry) -> Option<Class> {
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

pub(super) fn fix(class: Class, ex: &Entry) -> String {
    let realm = ex
        .challenges()
        .find_map(|c| param(c, "realm"))
        .unwrap_or_else(|| "api".to_owned());
    match class {
        Class::SessionLocked => "[routes.session] cookies = true, key = \"route\": the proxy keeps the target's session cookie and replays it on every call (the first call opens the session alone; serialize = true only if the target also refuses parallel calls within one session)".into(),
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
        Class::ExpiredToken => "[routes.auth] kind = \"oauth2\": the proxy refreshes the token before expiry, and on a 401 drops it, fetches a new one and replays the request once".into(),
        Class::UpstreamUnreachable => "check the route's upstream URL, DNS and firewall from the proxy host, and connect_timeout / request_timeout under [[routes]]".into(),
        Class::TlsFailure => "[[routes]] ca_file = \"...\" with the target's CA (private CAs are common), and check that the upstream host name matches the certificate".into(),
        Class::LoginFailed => "[routes.session] login: check its path, body and expect_status against what the target's login answers (the login record is in the trace), and the stored credential".into(),
        Class::TokenFetchFailed => "[routes.auth] token_url, client_id, client_secret (and grant, scopes): the token endpoint refused or could not be reached; its answer is in the trace's token record".into(),
        Class::CsrfTokenRequired => "[[routes.session.tokens]] name = \"csrf\", fetch = { method = \"GET\", path = \"<service root>\", headers = { \"X-CSRF-Token\" = \"Fetch\" } }, from = \"header:X-CSRF-Token\", to = \"header:X-CSRF-Token\", methods = [\"POST\", \"PUT\", \"PATCH\", \"DELETE\"], refetch_on = [403], with [routes.session] key = \"route\": the proxy fetches the token once per session, keeps the session cookie it is bound to, and sends both on every modifying call".into(),
        Class::SessionLoginRequired => "[[routes.session.tokens]] name = \"session\", fetch = { method = \"POST\", path = \"/api/login\", body = { env = \"LOGIN_BODY\" }, content_type = \"application/json\" }, from = \"json:/sessionId\", to = \"header:Authorization\", format = \"Session {}\", refetch_on = [401]: the proxy logs in once per session, sends the session id on every call, and logs in again when it expires".into(),
        Class::SessionTokenFetchFailed => "[[routes.session.tokens]] fetch: check its method, path, headers and body (and the route's stored credential) against what the target answers; the fetch is in the trace as a token_fetch record, and the error names the token".into(),
        Class::RefusedByProxy => "the client's request broke a rule of the proxy (size, time, credential, route): read the error detail; the target never saw the request".into(),
        Class::ResponseCutShort => "the response ended midway: if the target's side failed, check its logs; if the client went away, check the client's timeout".into(),
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
