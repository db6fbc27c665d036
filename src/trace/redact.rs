//! Redaction: the only path from a raw [`ExchangeRecord`] to anything that is written or shown.
//!
//! The rules keep what a human needs to diagnose a failure (auth schemes, cookie names, the shape
//! of a JSON body, error messages) and drop every value that could be a credential. When a body
//! cannot be parsed well enough to redact it, it is withheld rather than risk a leak.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::SystemTime;

use base64::Engine as _;
use http::header::{self, HeaderMap, HeaderName};
use http::Version;
use serde_json::Value;
use url::form_urlencoded;

use super::record::{Actions, CapturedBody, ErrorInfo, ExchangeRecord, Role, Timings};
use crate::config::TracePlan;

pub const REDACTED: &str = "[REDACTED]";

/// Headers that carry credentials whatever the configured field names.
const CREDENTIAL_HEADERS: &[&str] = &[
    "x-api-key",
    "api-key",
    "apikey",
    "x-auth-token",
    "x-access-token",
    "x-csrf-token",
    "x-xsrf-token",
    "x-amz-security-token",
    "x-vault-token",
    "private-token",
    "ocp-apim-subscription-key",
];

/// Headers whose value is a URL: its query and fragment are redacted like the request URL's
/// (an OAuth redirect carries `access_token` in either).
const URL_HEADERS: &[HeaderName] = &[header::LOCATION, header::CONTENT_LOCATION, header::REFERER];

/// Auth scheme names kept when they repeat after the first scheme, so that a doubled
/// `Bearer Bearer` prefix stays visible to `diagnose`.
const SCHEME_NAMES: &[&str] = &[
    "basic",
    "bearer",
    "digest",
    "negotiate",
    "ntlm",
    "token",
    "oauth",
    "hoba",
    "mutual",
    "ssws",
    "apikey",
];

/// Fields of a token-endpoint exchange that carry no secret.
const TOKEN_PUBLIC_FIELDS: &[&str] = &[
    "token_type",
    "expires_in",
    "scope",
    "error",
    "error_description",
    "grant_type",
];

/// Redacts records according to one trace plan; built once at startup.
#[derive(Debug, Clone)]
pub struct Redactor {
    fields: Vec<String>,
    bodies: bool,
    max_body: usize,
}

/// A record after redaction: safe to write, keep in memory and serve.
#[derive(Debug, Clone)]
pub struct RedactedRecord {
    pub id: u64,
    pub parent: Option<u64>,
    pub role: Role,
    pub started: SystemTime,
    pub timings: Timings,
    pub client_addr: Option<SocketAddr>,
    pub client_name: Option<String>,
    pub route: Option<String>,
    pub session_key: Option<String>,
    pub request: RedactedRequest,
    pub response: Option<RedactedResponse>,
    pub actions: Actions,
    pub error: Option<ErrorInfo>,
}

#[derive(Debug, Clone)]
pub struct RedactedRequest {
    pub method: String,
    pub url: String,
    pub http_version: &'static str,
    pub headers: Vec<(String, String)>,
    /// Cookie names sent; values are never kept.
    pub cookies: Vec<String>,
    /// Decoded query pairs of the redacted URL.
    pub query: Vec<(String, String)>,
    pub body: Option<RedactedBody>,
    /// Bytes on the wire, -1 when unknown.
    pub body_size: i64,
}

#[derive(Debug, Clone)]
pub struct RedactedResponse {
    pub status: u16,
    pub status_text: &'static str,
    pub http_version: &'static str,
    pub headers: Vec<(String, String)>,
    pub cookies: Vec<SetCookie>,
    pub body: Option<RedactedBody>,
    pub body_size: i64,
}

/// A `Set-Cookie` with its value removed.
#[derive(Debug, Clone, Default)]
pub struct SetCookie {
    pub name: String,
    pub path: Option<String>,
    pub domain: Option<String>,
    pub expires: Option<String>,
    pub http_only: bool,
    pub secure: bool,
}

#[derive(Debug, Clone)]
pub struct RedactedBody {
    /// The full `Content-Type`, or `application/octet-stream` when none was sent.
    pub mime_type: String,
    pub size: u64,
    pub truncated: bool,
    pub content: BodyContent,
}

#[derive(Debug, Clone)]
pub enum BodyContent {
    Text(String),
    Base64(String),
    /// Not recorded; the reason says why (too big, unparseable, bodies off).
    Omitted(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Json,
    Form,
    Text,
    Binary,
}

impl Redactor {
    pub fn new(plan: &TracePlan) -> Self {
        Redactor {
            fields: plan.redact_fields.iter().map(|f| f.to_ascii_lowercase()).collect(),
            bodies: plan.bodies,
            max_body: plan.max_body,
        }
    }

    /// Whether a query, form or JSON field of this name holds a secret.
    pub fn is_secret_field(&self, name: &str) -> bool {
        self.fields.iter().any(|f| f.eq_ignore_ascii_case(name))
    }

    /// Whether a header of this name carries a credential in its value.
    pub fn is_secret_header(&self, name: &str) -> bool {
        if CREDENTIAL_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name)) {
            return true;
        }
        // `X-Client-Secret`, `X-Auth-Token`, `Api-Key`: compare in the fields' snake_case.
        let normal = name.to_ascii_lowercase().replace('-', "_");
        let bare = normal.strip_prefix("x_").unwrap_or(&normal);
        self.fields.iter().any(|f| {
            bare == f
                || bare
                    .strip_suffix(f.as_str())
                    .is_some_and(|rest| rest.ends_with('_'))
                || bare
                    .strip_prefix(f.as_str())
                    .is_some_and(|rest| rest.starts_with('_'))
        })
    }

    pub fn redact(&self, record: &ExchangeRecord) -> RedactedRecord {
        let req = &record.request;
        let url = self.url(&req.url).into_owned();
        let query = query_pairs(&url);
        let request = RedactedRequest {
            method: req.method.as_str().to_owned(),
            http_version: version_str(req.version),
            headers: self.headers(&req.headers),
            cookies: cookie_names(&req.headers),
            query,
            body: self.body(req.body.as_ref(), &req.headers, record.role),
            body_size: body_size(req.body.as_ref(), &req.headers),
            url,
        };
        let response = record.response.as_ref().map(|res| RedactedResponse {
            status: res.status.as_u16(),
            status_text: res.status.canonical_reason().unwrap_or(""),
            http_version: version_str(res.version),
            headers: self.headers(&res.headers),
            cookies: set_cookies(&res.headers),
            body: self.body(res.body.as_ref(), &res.headers, record.role),
            body_size: body_size(res.body.as_ref(), &res.headers),
        });
        let mut actions = record.actions.clone();
        // The pipeline passes names, but a `name=value` slipping in must not reach a file.
        for name in actions
            .cookies_replayed
            .iter_mut()
            .chain(actions.cookies_stored.iter_mut())
        {
            if let Some(eq) = name.find('=') {
                name.truncate(eq);
            }
        }
        RedactedRecord {
            id: record.id,
            parent: record.parent,
            role: record.role,
            started: record.started,
            timings: record.timings.clone(),
            client_addr: record.client_addr,
            client_name: record.client_name.clone(),
            route: record.route.clone(),
            session_key: record.session_key.clone(),
            request,
            response,
            actions,
            error: record.error.clone(),
        }
    }

    pub fn headers(&self, headers: &HeaderMap) -> Vec<(String, String)> {
        headers
            .iter()
            .map(|(name, value)| {
                let raw = String::from_utf8_lossy(value.as_bytes());
                let redacted = self.header_value(name, &raw).into_owned();
                (name.as_str().to_owned(), redacted)
            })
            .collect()
    }

    /// One header value as it may be shown.
    pub fn header_value<'a>(&self, name: &HeaderName, value: &'a str) -> Cow<'a, str> {
        if name == header::AUTHORIZATION || name == header::PROXY_AUTHORIZATION {
            Cow::Owned(authorization(value))
        } else if name == header::COOKIE {
            Cow::Owned(cookie_header(value))
        } else if name == header::SET_COOKIE {
            Cow::Owned(set_cookie_header(value))
        } else if URL_HEADERS.contains(name) {
            self.url(value)
        } else if self.is_secret_header(name.as_str()) {
            Cow::Borrowed(REDACTED)
        } else {
            Cow::Borrowed(value)
        }
    }

    /// The URL with secret query and fragment parameters replaced.
    pub fn url<'a>(&self, url: &'a str) -> Cow<'a, str> {
        let Some(q) = url.find(['?', '#']) else {
            return Cow::Borrowed(url);
        };
        let mut out = String::with_capacity(url.len());
        out.push_str(&url[..q]);
        let mut rest = &url[q..];
        while let Some(delim) = rest.chars().next() {
            out.push(delim);
            rest = &rest[1..];
            // A query ends at the fragment; the fragment runs to the end.
            let end = if delim == '?' {
                rest.find('#').unwrap_or(rest.len())
            } else {
                rest.len()
            };
            out.push_str(&self.form(&rest[..end]));
            rest = &rest[end..];
        }
        Cow::Owned(out)
    }

    /// `a=1&password=x` → `a=1&password=[REDACTED]`, keeping the original encoding of the rest.
    pub fn form(&self, text: &str) -> String {
        self.form_with(text, |name| self.is_secret_field(name))
    }

    fn form_with(&self, text: &str, secret: impl Fn(&str) -> bool) -> String {
        let mut out = String::with_capacity(text.len());
        for (i, pair) in text.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            let raw_name = pair.split('=').next().unwrap_or("");
            let name = form_urlencoded::parse(raw_name.as_bytes())
                .next()
                .map(|(k, _)| k)
                .unwrap_or_default();
            if pair.contains('=') && secret(&name) {
                out.push_str(raw_name);
                out.push('=');
                out.push_str(REDACTED);
            } else {
                out.push_str(pair);
            }
        }
        out
    }

    /// Replaces the value of every secret field, at any depth and inside arrays. A SCIM patch
    /// operation `{"path": "password", "value": ...}` has its `value` replaced too.
    pub fn json(&self, value: &mut Value) {
        match value {
            Value::Object(map) => {
                let names_secret = ["path", "name"].iter().any(|k| {
                    map.get(*k)
                        .and_then(Value::as_str)
                        .is_some_and(|p| self.is_secret_field(scim_attribute(p)))
                });
                for (key, v) in map.iter_mut() {
                    if self.is_secret_field(key) || (names_secret && key == "value") {
                        *v = Value::String(REDACTED.to_owned());
                    } else {
                        self.json(v);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.json(v)),
            _ => {}
        }
    }

    fn body(
        &self,
        captured: Option<&CapturedBody>,
        headers: &HeaderMap,
        role: Role,
    ) -> Option<RedactedBody> {
        let captured = captured?;
        let mime_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let kind = body_kind(&mime_type, &captured.bytes);
        let content = self.body_content(captured, headers, role, kind);
        Some(RedactedBody {
            mime_type: if mime_type.is_empty() {
                "application/octet-stream".to_owned()
            } else {
                mime_type
            },
            size: captured.total_size,
            truncated: captured.truncated,
            content,
        })
    }

    fn body_content(
        &self,
        captured: &CapturedBody,
        headers: &HeaderMap,
        role: Role,
        kind: BodyKind,
    ) -> BodyContent {
        if !self.bodies {
            return BodyContent::Omitted("bodies are not recorded (trace.bodies = false)".into());
        }
        if captured.bytes.is_empty() {
            return BodyContent::Text(String::new());
        }
        let encoded = headers
            .get(header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| !v.eq_ignore_ascii_case("identity"));
        let structured = matches!(kind, BodyKind::Json | BodyKind::Form);
        if encoded && (structured || role == Role::TokenFetch) {
            return BodyContent::Omitted(
                "content-encoded body withheld: it cannot be redacted without decoding".into(),
            );
        }
        let token = role == Role::TokenFetch;
        match kind {
            BodyKind::Json => match serde_json::from_slice::<Value>(&captured.bytes) {
                Ok(mut value) => {
                    if token {
                        keep_only_public(&mut value);
                    } else {
                        self.json(&mut value);
                    }
                    BodyContent::Text(value.to_string())
                }
                Err(_) => BodyContent::Omitted(withheld_reason("JSON", captured)),
            },
            BodyKind::Form => match std::str::from_utf8(&captured.bytes) {
                Ok(text) if token => BodyContent::Text(self.form_with(text, |name| {
                    !TOKEN_PUBLIC_FIELDS.iter().any(|f| f.eq_ignore_ascii_case(name))
                })),
                Ok(text) => BodyContent::Text(self.form(text)),
                Err(_) => BodyContent::Omitted(withheld_reason("form", captured)),
            },
            _ if token => BodyContent::Omitted(
                "token endpoint body withheld: only JSON and form bodies can be redacted".into(),
            ),
            BodyKind::Text => {
                BodyContent::Text(String::from_utf8_lossy(&captured.bytes).into_owned())
            }
            BodyKind::Binary if captured.truncated || captured.bytes.len() > self.max_body => {
                BodyContent::Omitted(format!(
                    "binary body of {} bytes not recorded (over max_body)",
                    captured.total_size
                ))
            }
            BodyKind::Binary => BodyContent::Base64(
                base64::engine::general_purpose::STANDARD.encode(&captured.bytes),
            ),
        }
    }
}

fn withheld_reason(what: &str, captured: &CapturedBody) -> String {
    if captured.truncated {
        format!(
            "{what} body truncated at {} of {} bytes cannot be redacted: withheld",
            captured.bytes.len(),
            captured.total_size
        )
    } else {
        format!("{what} body did not parse and cannot be redacted: withheld")
    }
}

/// The attribute a SCIM path names: `password`, `urn:...:User:password`, `emails[type eq "x"]`.
fn scim_attribute(path: &str) -> &str {
    let path = path.split('[').next().unwrap_or(path);
    path.rsplit(':').next().unwrap_or(path)
}

/// Token-endpoint bodies: every field but the few public ones is replaced, at any depth.
fn keep_only_public(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if !TOKEN_PUBLIC_FIELDS.iter().any(|f| f.eq_ignore_ascii_case(key)) {
                    *v = Value::String(REDACTED.to_owned());
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(keep_only_public),
        _ => *value = Value::String(REDACTED.to_owned()),
    }
}

fn body_kind(mime: &str, bytes: &[u8]) -> BodyKind {
    let essence = mime
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence.is_empty() {
        // No declared type: sniff, and treat anything that parses as JSON or looks like a form
        // as such so that its secrets are redacted.
        if serde_json::from_slice::<Value>(bytes).is_ok() {
            return BodyKind::Json;
        }
        return match std::str::from_utf8(bytes) {
            Ok(t) if t.contains('=') && !t.contains(char::is_whitespace) => BodyKind::Form,
            Ok(_) => BodyKind::Text,
            Err(_) => BodyKind::Binary,
        };
    }
    if essence == "application/json" || essence.ends_with("+json") {
        BodyKind::Json
    } else if essence == "application/x-www-form-urlencoded" {
        BodyKind::Form
    } else if essence.starts_with("text/")
        || essence.ends_with("+xml")
        || essence == "application/xml"
        || essence == "application/javascript"
    {
        BodyKind::Text
    } else {
        BodyKind::Binary
    }
}

/// Keeps the scheme and any scheme word repeated after it: `Bearer Bearer [REDACTED]`.
pub fn authorization(value: &str) -> String {
    let mut words = value.split_whitespace();
    let Some(scheme) = words.next() else {
        return String::new();
    };
    let mut out = scheme.to_owned();
    for word in words {
        let is_scheme = word.eq_ignore_ascii_case(scheme)
            || SCHEME_NAMES.iter().any(|s| s.eq_ignore_ascii_case(word));
        if !is_scheme {
            out.push(' ');
            out.push_str(REDACTED);
            return out;
        }
        out.push(' ');
        out.push_str(word);
    }
    out
}

/// `a=1; b=2` → `a=[REDACTED]; b=[REDACTED]`.
fn cookie_header(value: &str) -> String {
    value
        .split(';')
        .map(|pair| pair.trim())
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let name = pair.split('=').next().unwrap_or("").trim();
            format!("{name}={REDACTED}")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// `SID=abc; Path=/; HttpOnly` → `SID=[REDACTED]; Path=/; HttpOnly`.
fn set_cookie_header(value: &str) -> String {
    let mut parts = value.splitn(2, ';');
    let name = parts
        .next()
        .and_then(|p| p.split('=').next())
        .unwrap_or("")
        .trim();
    match parts.next() {
        Some(attrs) => format!("{name}={REDACTED};{attrs}"),
        None => format!("{name}={REDACTED}"),
    }
}

fn cookie_names(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| {
            let name = pair.split('=').next()?.trim();
            (!name.is_empty()).then(|| name.to_owned())
        })
        .collect()
}

fn set_cookies(headers: &HeaderMap) -> Vec<SetCookie> {
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(parse_set_cookie)
        .collect()
}

fn parse_set_cookie(value: &str) -> SetCookie {
    let mut parts = value.split(';');
    let name = parts
        .next()
        .and_then(|p| p.split('=').next())
        .unwrap_or("")
        .trim()
        .to_owned();
    let mut cookie = SetCookie {
        name,
        ..SetCookie::default()
    };
    for attr in parts {
        let (key, val) = match attr.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim().to_owned())),
            None => (attr.trim(), None),
        };
        match key.to_ascii_lowercase().as_str() {
            "path" => cookie.path = val,
            "domain" => cookie.domain = val,
            "expires" => cookie.expires = val,
            "httponly" => cookie.http_only = true,
            "secure" => cookie.secure = true,
            _ => {}
        }
    }
    cookie
}

fn query_pairs(url: &str) -> Vec<(String, String)> {
    let Some((_, query)) = url.split_once('?') else {
        return Vec::new();
    };
    let query = query.split('#').next().unwrap_or("");
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn body_size(body: Option<&CapturedBody>, headers: &HeaderMap) -> i64 {
    if let Some(body) = body {
        return i64::try_from(body.total_size).unwrap_or(i64::MAX);
    }
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1)
}

pub fn version_str(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}
