//! Redaction: the only path from a raw [`ExchangeRecord`] to anything that is written or shown.
//!
//! The rules keep what a human needs to diagnose a failure (auth schemes, cookie names, the shape
//! of a JSON body, error messages) and drop every value that could be a credential. When a body
//! cannot be parsed well enough to redact it, it is withheld rather than risk a leak.
//!
//! A [`RedactedRecord`] borrows every part that redaction leaves as it was from the
//! [`ExchangeRecord`], and owns only what it rewrote: the writer thread renders it and drops it
//! before the next record, so copying the untouched parts would be wasted work.

use std::borrow::Cow;

use base64::Engine as _;
use http::header::{self, HeaderMap, HeaderName};
use http::Version;
use serde_json::Value;
use url::form_urlencoded;

use super::json_body::{self, Mode};
use super::record::{Actions, CapturedBody, ErrorInfo, ExchangeRecord, Role, Timings};
use super::text::{Addr, Timestamp};
use crate::config::{TracePlan, DEFAULT_REDACT_FIELDS};

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
    /// The [`signature`] bits of the field names. Every key of every JSON body is looked up,
    /// and most have a signature bit no field has.
    field_signatures: u64,
    /// [`pair_bit`]s of the first two and of the last two bytes of the field names, which a
    /// header name matching a field must start or end with; all bits when a field is shorter.
    field_heads: u64,
    field_tails: u64,
    bodies: bool,
    max_body: usize,
}

/// A record after redaction: safe to write, keep in memory and serve.
#[derive(Debug, Clone)]
pub struct RedactedRecord<'a> {
    pub id: u64,
    pub parent: Option<u64>,
    pub role: Role,
    /// Formatted once here for both the JSON line and the HAR entry.
    pub started: Timestamp,
    pub timings: Timings,
    pub client_addr: Option<Addr>,
    pub client_name: Option<&'a str>,
    pub route: Option<&'a str>,
    pub session_key: Option<&'a str>,
    pub request: RedactedRequest<'a>,
    pub response: Option<RedactedResponse<'a>>,
    /// Borrowed unless a cookie name had to be cut short.
    pub actions: Cow<'a, Actions>,
    pub error: Option<&'a ErrorInfo>,
}

#[derive(Debug, Clone)]
pub struct RedactedRequest<'a> {
    pub method: &'a str,
    pub url: Cow<'a, str>,
    pub http_version: &'static str,
    pub headers: Vec<(&'a str, Cow<'a, str>)>,
    /// Cookie names sent; values are never kept.
    pub cookies: Vec<&'a str>,
    /// Decoded query pairs of the redacted URL.
    pub query: Vec<(String, String)>,
    pub body: Option<RedactedBody<'a>>,
    /// Bytes on the wire, -1 when unknown.
    pub body_size: i64,
}

#[derive(Debug, Clone)]
pub struct RedactedResponse<'a> {
    pub status: u16,
    pub status_text: &'static str,
    pub http_version: &'static str,
    pub headers: Vec<(&'a str, Cow<'a, str>)>,
    pub cookies: Vec<SetCookie<'a>>,
    pub body: Option<RedactedBody<'a>>,
    pub body_size: i64,
}

/// A `Set-Cookie` with its value removed.
#[derive(Debug, Clone, Default)]
pub struct SetCookie<'a> {
    pub name: &'a str,
    pub path: Option<&'a str>,
    pub domain: Option<&'a str>,
    pub expires: Option<&'a str>,
    pub http_only: bool,
    pub secure: bool,
}

#[derive(Debug, Clone)]
pub struct RedactedBody<'a> {
    /// The full `Content-Type`, or `application/octet-stream` when none was sent.
    pub mime_type: &'a str,
    pub size: u64,
    pub truncated: bool,
    pub content: BodyContent<'a>,
}

#[derive(Debug, Clone)]
pub enum BodyContent<'a> {
    Text(Cow<'a, str>),
    Base64(String),
    /// Not recorded; the reason says why (too big, unparseable, bodies off).
    Omitted(Cow<'static, str>),
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
        Self::with_fields(&plan.redact_fields, plan.bodies, plan.max_body)
    }

    /// The built-in field names only, for text that comes from outside (a HAR to diagnose).
    pub fn with_default_fields() -> Self {
        Self::with_fields(DEFAULT_REDACT_FIELDS, true, 0)
    }

    fn with_fields(fields: &[impl AsRef<str>], bodies: bool, max_body: usize) -> Self {
        let fields: Vec<String> = fields
            .iter()
            .map(|f| f.as_ref().to_ascii_lowercase())
            .collect();
        let pairs = |pick: fn(&[u8]) -> Option<(u8, u8)>| {
            fields.iter().fold(0, |bits, f| match pick(f.as_bytes()) {
                Some((a, b)) => bits | pair_bit(a, b),
                None => u64::MAX,
            })
        };
        Redactor {
            field_signatures: fields.iter().fold(0, |bits, f| bits | signature(f)),
            field_heads: pairs(head_pair),
            field_tails: pairs(tail_pair),
            fields,
            bodies,
            max_body,
        }
    }

    /// Whether a query, form or JSON field of this name holds a secret.
    pub fn is_secret_field(&self, name: &str) -> bool {
        self.field_signatures & signature(name) != 0
            && self.fields.iter().any(|f| f.eq_ignore_ascii_case(name))
    }

    /// Whether a header of this name carries a credential in its value.
    pub fn is_secret_header(&self, name: &str) -> bool {
        if CREDENTIAL_HEADERS
            .iter()
            .any(|h| h.eq_ignore_ascii_case(name))
        {
            return true;
        }
        // `X-Client-Secret`, `X-Auth-Token`, `Api-Key`: compare in the fields' snake_case, byte
        // by byte, since this runs for every header of every traced exchange.
        let name = name.as_bytes();
        let bare = match name {
            [x, dash, rest @ ..] if snake(*x) == b'x' && snake(*dash) == b'_' => rest,
            _ => name,
        };
        // Equal to a field, or a field and `_` before or after it: either way the name starts
        // or ends with a field's first or last two bytes. Most headers do neither.
        // A name too short to have two bytes is not filtered.
        let bit = |pair: Option<(u8, u8)>| pair.map_or(u64::MAX, |(a, b)| pair_bit(a, b));
        if bit(head_pair(bare)) & self.field_heads == 0
            && bit(tail_pair(bare)) & self.field_tails == 0
        {
            return false;
        }
        self.fields.iter().any(|f| {
            let f = f.as_bytes();
            let n = f.len();
            same_snake(bare, f)
                || (bare.len() > n
                    && same_snake(&bare[bare.len() - n..], f)
                    && snake(bare[bare.len() - n - 1]) == b'_')
                || (bare.len() > n && same_snake(&bare[..n], f) && snake(bare[n]) == b'_')
        })
    }

    pub fn redact<'a>(&self, record: &'a ExchangeRecord) -> RedactedRecord<'a> {
        let req = &record.request;
        let url = self.url(&req.url);
        // A URL left as it was has neither a query nor a fragment.
        let query = match &url {
            Cow::Borrowed(_) => Vec::new(),
            Cow::Owned(url) => query_pairs(url),
        };
        let request = RedactedRequest {
            method: req.method.as_str(),
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
        RedactedRecord {
            id: record.id,
            parent: record.parent,
            role: record.role,
            started: Timestamp::new(record.started),
            timings: record.timings.clone(),
            client_addr: record.client_addr.map(Addr::new),
            client_name: record.client_name.as_deref(),
            route: record.route.as_deref(),
            session_key: record.session_key.as_deref(),
            request,
            response,
            actions: actions(&record.actions),
            error: record.error.as_ref(),
        }
    }

    pub fn headers<'a>(&self, headers: &'a HeaderMap) -> Vec<(&'a str, Cow<'a, str>)> {
        let mut shown = Vec::with_capacity(headers.len());
        shown.extend(headers.iter().map(|(name, value)| {
            let value = match std::str::from_utf8(value.as_bytes()) {
                Ok(raw) => self.header_value(name, raw),
                Err(_) => {
                    let raw = String::from_utf8_lossy(value.as_bytes());
                    Cow::Owned(self.header_value(name, &raw).into_owned())
                }
            };
            (name.as_str(), value)
        }));
        shown
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
        let Some(q) = url.bytes().position(|b| matches!(b, b'?' | b'#')) else {
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
    /// operation `{"path": "password", "value": ...}` has its `value` replaced too. Bodies of
    /// traced exchanges take the same rules without a tree (see [`json_body`]); this is for
    /// JSON already parsed (a HAR to diagnose).
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

    fn body<'a>(
        &self,
        captured: Option<&'a CapturedBody>,
        headers: &'a HeaderMap,
        role: Role,
    ) -> Option<RedactedBody<'a>> {
        let captured = captured?;
        let mime_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let content = self.body_content(captured, headers, mime_type, role);
        Some(RedactedBody {
            mime_type: if mime_type.is_empty() {
                "application/octet-stream"
            } else {
                mime_type
            },
            size: captured.total_size,
            truncated: captured.truncated,
            content,
        })
    }

    fn body_content<'a>(
        &self,
        captured: &'a CapturedBody,
        headers: &HeaderMap,
        mime_type: &str,
        role: Role,
    ) -> BodyContent<'a> {
        if !self.bodies {
            return BodyContent::Omitted("bodies are not recorded (trace.bodies = false)".into());
        }
        if captured.bytes.is_empty() {
            return BodyContent::Text(Cow::Borrowed(""));
        }
        let kind = self.body_kind(mime_type, &captured.bytes);
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
            BodyKind::Json => {
                let mode = if token {
                    Mode::PublicOnly
                } else {
                    Mode::Secrets
                };
                let redacted = std::str::from_utf8(&captured.bytes)
                    .ok()
                    .and_then(|text| json_body::redact(text, self, mode).ok());
                match redacted {
                    Some(text) => BodyContent::Text(text),
                    None => BodyContent::Omitted(withheld_reason("JSON", captured).into()),
                }
            }
            BodyKind::Form => match std::str::from_utf8(&captured.bytes) {
                Ok(text) if token => BodyContent::Text(Cow::Owned(
                    self.form_with(text, |name| !is_token_public_field(name)),
                )),
                Ok(text) => BodyContent::Text(Cow::Owned(self.form(text))),
                Err(_) => BodyContent::Omitted(withheld_reason("form", captured).into()),
            },
            _ if token => BodyContent::Omitted(
                "token endpoint body withheld: only JSON and form bodies can be redacted".into(),
            ),
            BodyKind::Text => BodyContent::Text(String::from_utf8_lossy(&captured.bytes)),
            BodyKind::Binary if captured.truncated || captured.bytes.len() > self.max_body => {
                BodyContent::Omitted(
                    format!(
                        "binary body of {} bytes not recorded (over max_body)",
                        captured.total_size
                    )
                    .into(),
                )
            }
            BodyKind::Binary => BodyContent::Base64(
                base64::engine::general_purpose::STANDARD.encode(&captured.bytes),
            ),
        }
    }

    fn body_kind(&self, mime: &str, bytes: &[u8]) -> BodyKind {
        let essence = mime.split(';').next().unwrap_or("").trim();
        if essence.is_empty() {
            // No declared type: sniff, and treat anything that parses as JSON or looks like a
            // form as such so that its secrets are redacted.
            if json_body::is_json(bytes, self) {
                return BodyKind::Json;
            }
            return match std::str::from_utf8(bytes) {
                Ok(t) if t.contains('=') && !t.contains(char::is_whitespace) => BodyKind::Form,
                Ok(_) => BodyKind::Text,
                Err(_) => BodyKind::Binary,
            };
        }
        let is = |name: &str| essence.eq_ignore_ascii_case(name);
        let ends_with = |suffix: &str| {
            essence.len() >= suffix.len()
                && essence.as_bytes()[essence.len() - suffix.len()..]
                    .eq_ignore_ascii_case(suffix.as_bytes())
        };
        if is("application/json") || ends_with("+json") {
            BodyKind::Json
        } else if is("application/x-www-form-urlencoded") {
            BodyKind::Form
        } else if essence.as_bytes()[..essence.len().min(5)].eq_ignore_ascii_case(b"text/")
            || ends_with("+xml")
            || is("application/xml")
            || is("application/javascript")
        {
            BodyKind::Text
        } else {
            BodyKind::Binary
        }
    }
}

/// One of 64 bits for a name's length and first and last bytes, ignoring ASCII case: names
/// equal but for case have the same.
fn signature(name: &str) -> u64 {
    let bytes = name.as_bytes();
    let (first, last) = match bytes {
        [] => (0, 0),
        [first, .., last] => (*first, *last),
        [only] => (*only, *only),
    };
    let mix = (bytes.len() as u64)
        ^ u64::from(first.to_ascii_lowercase()) << 8
        ^ u64::from(last.to_ascii_lowercase()) << 16;
    1 << (mix.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58)
}

/// One of 64 bits for two bytes of a header name, as the fields spell them.
fn pair_bit(a: u8, b: u8) -> u64 {
    let mix = u64::from(snake(a)) << 8 | u64::from(snake(b));
    1 << (mix.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58)
}

fn head_pair(bytes: &[u8]) -> Option<(u8, u8)> {
    match bytes {
        [a, b, ..] => Some((*a, *b)),
        _ => None,
    }
}

fn tail_pair(bytes: &[u8]) -> Option<(u8, u8)> {
    match bytes {
        [.., a, b] => Some((*a, *b)),
        _ => None,
    }
}

/// A header name's byte as the fields spell it: lower case, `-` as `_`.
fn snake(byte: u8) -> u8 {
    if byte == b'-' {
        b'_'
    } else {
        byte.to_ascii_lowercase()
    }
}

/// Whether a header name part equals a (lower-case, snake_case) field name.
fn same_snake(name: &[u8], field: &[u8]) -> bool {
    name.len() == field.len() && name.iter().zip(field).all(|(&n, &f)| snake(n) == f)
}

/// The actions as recorded; copied only when a cookie name carries a value. The pipeline passes
/// names, but a `name=value` slipping in must not reach a file.
fn actions(actions: &Actions) -> Cow<'_, Actions> {
    let has_value = |names: &[String]| names.iter().any(|n| n.contains('='));
    if !has_value(&actions.cookies_replayed) && !has_value(&actions.cookies_stored) {
        return Cow::Borrowed(actions);
    }
    let mut actions = actions.clone();
    for name in actions
        .cookies_replayed
        .iter_mut()
        .chain(actions.cookies_stored.iter_mut())
    {
        if let Some(eq) = name.find('=') {
            name.truncate(eq);
        }
    }
    Cow::Owned(actions)
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
pub(super) fn scim_attribute(path: &str) -> &str {
    let path = path.split('[').next().unwrap_or(path);
    path.rsplit(':').next().unwrap_or(path)
}

/// Whether a field of a token-endpoint exchange may be shown.
pub(super) fn is_token_public_field(name: &str) -> bool {
    TOKEN_PUBLIC_FIELDS
        .iter()
        .any(|f| f.eq_ignore_ascii_case(name))
}

/// Keeps the scheme and any scheme word repeated after it: `Bearer Bearer [REDACTED]`.
pub fn authorization(value: &str) -> String {
    let mut words = value.split_whitespace();
    let Some(scheme) = words.next() else {
        return String::new();
    };
    let mut out = String::with_capacity(scheme.len() + 1 + REDACTED.len());
    out.push_str(scheme);
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
    let mut out = String::with_capacity(value.len() + REDACTED.len());
    let pairs = value.split(';').map(str::trim).filter(|p| !p.is_empty());
    for pair in pairs {
        if !out.is_empty() {
            out.push_str("; ");
        }
        out.push_str(pair.split('=').next().unwrap_or("").trim());
        out.push('=');
        out.push_str(REDACTED);
    }
    out
}

/// `SID=abc; Path=/; HttpOnly` → `SID=[REDACTED]; Path=/; HttpOnly`.
fn set_cookie_header(value: &str) -> String {
    let (pair, attrs) = match value.split_once(';') {
        Some((pair, attrs)) => (pair, Some(attrs)),
        None => (value, None),
    };
    let name = pair.split('=').next().unwrap_or("").trim();
    let mut out = String::with_capacity(value.len() + REDACTED.len());
    out.push_str(name);
    out.push('=');
    out.push_str(REDACTED);
    if let Some(attrs) = attrs {
        out.push(';');
        out.push_str(attrs);
    }
    out
}

fn cookie_names(headers: &HeaderMap) -> Vec<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| {
            let name = pair.split('=').next()?.trim();
            (!name.is_empty()).then_some(name)
        })
        .collect()
}

fn set_cookies(headers: &HeaderMap) -> Vec<SetCookie<'_>> {
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(parse_set_cookie)
        .collect()
}

fn parse_set_cookie(value: &str) -> SetCookie<'_> {
    let mut parts = value.split(';');
    let name = parts
        .next()
        .and_then(|p| p.split('=').next())
        .unwrap_or("")
        .trim();
    let mut cookie = SetCookie {
        name,
        ..SetCookie::default()
    };
    for attr in parts {
        let (key, val) = match attr.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (attr.trim(), None),
        };
        if key.eq_ignore_ascii_case("path") {
            cookie.path = val;
        } else if key.eq_ignore_ascii_case("domain") {
            cookie.domain = val;
        } else if key.eq_ignore_ascii_case("expires") {
            cookie.expires = val;
        } else if key.eq_ignore_ascii_case("httponly") {
            cookie.http_only = true;
        } else if key.eq_ignore_ascii_case("secure") {
            cookie.secure = true;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::record::{RequestPart, ResponsePart};
    use bytes::Bytes;
    use http::{HeaderValue, Method, StatusCode};
    use std::time::SystemTime;

    fn plan(extra: &[&str]) -> TracePlan {
        TracePlan {
            har: None,
            jsonl: None,
            bodies: true,
            max_body: 1024,
            redact_fields: DEFAULT_REDACT_FIELDS
                .iter()
                .chain(extra)
                .map(|s| s.to_string())
                .collect(),
            rotate_bytes: 0,
            keep: 10,
            channel_capacity: 8,
            recent: 8,
        }
    }

    fn redactor() -> Redactor {
        Redactor::new(&plan(&["sessionSecret"]))
    }

    fn header(name: HeaderName, value: &str) -> String {
        redactor().header_value(&name, value).into_owned()
    }

    fn body(content_type: &str, body: &str, role: Role) -> BodyContent<'static> {
        let mut headers = HeaderMap::new();
        if !content_type.is_empty() {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_str(content_type).unwrap(),
            );
        }
        let captured = CapturedBody {
            bytes: Bytes::copy_from_slice(body.as_bytes()),
            total_size: body.len() as u64,
            truncated: false,
        };
        match redactor()
            .body(Some(&captured), &headers, role)
            .unwrap()
            .content
        {
            BodyContent::Text(t) => BodyContent::Text(Cow::Owned(t.into_owned())),
            BodyContent::Base64(b) => BodyContent::Base64(b),
            BodyContent::Omitted(why) => BodyContent::Omitted(why),
        }
    }

    fn text(content: BodyContent) -> String {
        match content {
            BodyContent::Text(t) => t.into_owned(),
            other => panic!("expected text, got {other:?}"),
        }
    }

    #[test]
    fn authorization_keeps_the_scheme_only() {
        assert_eq!(
            header(header::AUTHORIZATION, "Basic c3ZjOmh1bnRlcjI="),
            "Basic [REDACTED]"
        );
        assert_eq!(
            header(header::PROXY_AUTHORIZATION, "Bearer eyJhbGciOi.x.y"),
            "Bearer [REDACTED]"
        );
        assert_eq!(
            header(
                header::AUTHORIZATION,
                r#"Digest username="a", response="b""#
            ),
            "Digest [REDACTED]"
        );
    }

    #[test]
    fn authorization_keeps_a_doubled_scheme_visible() {
        assert_eq!(
            header(header::AUTHORIZATION, "Bearer Bearer abc.def"),
            "Bearer Bearer [REDACTED]"
        );
    }

    #[test]
    fn cookie_keeps_names_only() {
        assert_eq!(
            header(header::COOKIE, "JSESSIONID=abc123; other=xyz"),
            "JSESSIONID=[REDACTED]; other=[REDACTED]"
        );
    }

    #[test]
    fn set_cookie_keeps_name_and_attributes() {
        assert_eq!(
            header(
                header::SET_COOKIE,
                "JSESSIONID=abc123; Path=/api; Secure; HttpOnly"
            ),
            "JSESSIONID=[REDACTED]; Path=/api; Secure; HttpOnly"
        );
    }

    #[test]
    fn credential_headers_and_headers_named_like_fields_are_redacted() {
        for name in ["x-api-key", "api-key", "x-client-secret", "x-auth-token"] {
            let name = HeaderName::from_static(name);
            assert_eq!(header(name, "s3cret"), REDACTED);
        }
        let name = HeaderName::from_static("x-session-secret-value");
        assert_eq!(header(name, "kept"), "kept");
        assert_eq!(
            header(header::CONTENT_TYPE, "application/json"),
            "application/json"
        );
    }

    /// The checks as they were written before the prefilters: allocating, and plainly right.
    fn reference(fields: &[String], name: &str, header: bool) -> bool {
        if !header {
            return fields.iter().any(|f| f.eq_ignore_ascii_case(name));
        }
        if CREDENTIAL_HEADERS
            .iter()
            .any(|h| h.eq_ignore_ascii_case(name))
        {
            return true;
        }
        let normal = name.to_ascii_lowercase().replace('-', "_");
        let bare = normal.strip_prefix("x_").unwrap_or(&normal);
        fields.iter().any(|f| {
            bare == f
                || bare
                    .strip_suffix(f.as_str())
                    .is_some_and(|rest| rest.ends_with('_'))
                || bare
                    .strip_prefix(f.as_str())
                    .is_some_and(|rest| rest.starts_with('_'))
        })
    }

    #[test]
    fn the_prefilters_never_hide_a_secret_field_or_header() {
        let configs: [&[&str]; 3] = [&[], &["sessionSecret", "X"], &["a_b", "ToKeN2"]];
        let words = [
            "",
            "x",
            "X-",
            "x-",
            "host",
            "date",
            "content-type",
            "user-agent",
            "accept",
            "x-forwarded-for",
            "authorization",
            "cookie",
            "id",
            "schemas",
            "userName",
            "value",
        ];
        for extra in configs {
            let r = Redactor::new(&plan(extra));
            let mut names: Vec<String> = words.iter().map(|w| w.to_string()).collect();
            for field in r.fields.clone() {
                for form in [
                    field.clone(),
                    field.to_ascii_uppercase(),
                    field.replace('_', "-"),
                    format!("x-{field}"),
                    format!("X-Client-{field}"),
                    format!("{field}-id"),
                    format!("{field}s"),
                    format!("my{field}"),
                    format!("x_{}", field.to_ascii_uppercase()),
                ] {
                    names.push(form);
                }
            }
            for name in &names {
                assert_eq!(
                    r.is_secret_field(name),
                    reference(&r.fields, name, false),
                    "field {name:?} with {extra:?}"
                );
                assert_eq!(
                    r.is_secret_header(name),
                    reference(&r.fields, name, true),
                    "header {name:?} with {extra:?}"
                );
            }
        }
    }

    #[test]
    fn query_and_fragment_fields_are_redacted_case_insensitively() {
        let r = redactor();
        assert_eq!(
            r.url("https://t/x?user=bob&Access_Token=abc&apikey=k#id_token=zz&state=1"),
            "https://t/x?user=bob&Access_Token=[REDACTED]&apikey=[REDACTED]#id_token=[REDACTED]&state=1"
        );
        assert_eq!(
            r.url("https://t/x?pass%77ord=abc"),
            "https://t/x?pass%77ord=[REDACTED]"
        );
        assert_eq!(
            header(header::LOCATION, "https://app/cb#access_token=abc"),
            "https://app/cb#access_token=[REDACTED]"
        );
    }

    #[test]
    fn json_fields_are_redacted_at_any_depth_and_inside_arrays() {
        let out = text(body(
            "application/scim+json",
            r#"{"userName":"bob","a":{"b":[{"PASSWORD":"p1"},{"x":{"client_secret":"c1"}}]},"sessionSecret":{"n":1}}"#,
            Role::Client,
        ));
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["userName"], "bob");
        assert_eq!(v["a"]["b"][0]["PASSWORD"], REDACTED);
        assert_eq!(v["a"]["b"][1]["x"]["client_secret"], REDACTED);
        assert_eq!(v["sessionSecret"], REDACTED);
    }

    #[test]
    fn scim_patch_value_of_a_secret_path_is_redacted() {
        let out = text(body(
            "application/json",
            r#"{"Operations":[{"op":"replace","path":"password","value":"p1"},{"op":"replace","path":"urn:ietf:params:scim:schemas:core:2.0:User:password","value":"p2"},{"op":"replace","path":"active","value":false}]}"#,
            Role::Client,
        ));
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["Operations"][0]["value"], REDACTED);
        assert_eq!(v["Operations"][1]["value"], REDACTED);
        assert_eq!(v["Operations"][2]["value"], false);
    }

    #[test]
    fn json_without_secrets_is_kept_intact() {
        let input = r#"{"code":401,"description":"The request requires user authentication","list":[1,"two",{"three":null}]}"#;
        let out = text(body("application/json; charset=utf-8", input, Role::Client));
        assert_eq!(
            serde_json::from_str::<Value>(&out).unwrap(),
            serde_json::from_str::<Value>(input).unwrap()
        );
    }

    #[test]
    fn form_fields_are_redacted() {
        assert_eq!(
            text(body(
                "application/x-www-form-urlencoded",
                "username=bob&password=hunter2&remember=1",
                Role::Client
            )),
            "username=bob&password=[REDACTED]&remember=1"
        );
    }

    #[test]
    fn unparseable_json_or_form_is_withheld() {
        let out = body("application/json", r#"{"password":"hunter2""#, Role::Client);
        assert!(matches!(out, BodyContent::Omitted(ref why) if why.contains("withheld")));
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let truncated = CapturedBody {
            bytes: Bytes::from_static(br#"{"password":"hun"#),
            total_size: 40,
            truncated: true,
        };
        let out = redactor()
            .body(Some(&truncated), &headers, Role::Client)
            .unwrap();
        assert!(matches!(out.content, BodyContent::Omitted(ref why) if why.contains("truncated")));
    }

    #[test]
    fn token_bodies_keep_only_public_fields() {
        let out = text(body(
            "application/json",
            r#"{"access_token":"at","refresh_token":"rt","custom":"c","token_type":"Bearer","expires_in":3600,"scope":"scim"}"#,
            Role::TokenFetch,
        ));
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["access_token"], REDACTED);
        assert_eq!(v["refresh_token"], REDACTED);
        assert_eq!(v["custom"], REDACTED);
        assert_eq!(v["token_type"], "Bearer");
        assert_eq!(v["expires_in"], 3600);
        assert_eq!(v["scope"], "scim");
        assert_eq!(
            text(body(
                "application/x-www-form-urlencoded",
                "grant_type=client_credentials&client_id=cid&assertion=xyz&scope=scim",
                Role::TokenFetch
            )),
            "grant_type=client_credentials&client_id=[REDACTED]&assertion=[REDACTED]&scope=scim"
        );
        let out = body("text/plain", "access_token=zzz", Role::TokenFetch);
        assert!(matches!(out, BodyContent::Omitted(_)));
    }

    #[test]
    fn binary_bodies_are_base64_under_max_body_and_omitted_over_it() {
        let r = redactor();
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/png"));
        let small = CapturedBody {
            bytes: Bytes::from_static(&[0x89, b'P', b'N', b'G', 0, 1]),
            total_size: 6,
            truncated: false,
        };
        let out = r.body(Some(&small), &headers, Role::Client).unwrap();
        assert!(matches!(out.content, BodyContent::Base64(ref b) if b == "iVBORwAB"));
        assert_eq!(out.mime_type, "image/png");
        let big = CapturedBody {
            bytes: Bytes::from(vec![0u8; 1024]),
            total_size: 5000,
            truncated: true,
        };
        let out = r.body(Some(&big), &headers, Role::Client).unwrap();
        assert!(matches!(out.content, BodyContent::Omitted(ref why) if why.contains("5000")));
    }

    #[test]
    fn bodies_off_records_size_but_no_content() {
        let mut p = plan(&[]);
        p.bodies = false;
        let captured = CapturedBody {
            bytes: Bytes::from_static(b"hello"),
            total_size: 5,
            truncated: false,
        };
        let headers = HeaderMap::new();
        let out = Redactor::new(&p)
            .body(Some(&captured), &headers, Role::Client)
            .unwrap();
        assert_eq!(out.size, 5);
        assert!(matches!(out.content, BodyContent::Omitted(_)));
    }

    #[test]
    fn gzip_json_is_withheld_not_base64_encoded() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        let captured = CapturedBody {
            bytes: Bytes::from_static(&[0x1f, 0x8b, 8, 0]),
            total_size: 4,
            truncated: false,
        };
        let out = redactor()
            .body(Some(&captured), &headers, Role::Client)
            .unwrap();
        assert!(matches!(out.content, BodyContent::Omitted(_)));
    }

    #[test]
    fn record_cookie_lists_and_action_names_carry_no_values() {
        let mut req_headers = HeaderMap::new();
        req_headers.insert(header::COOKIE, HeaderValue::from_static("A=1; B=2"));
        let mut res_headers = HeaderMap::new();
        res_headers.append(
            header::SET_COOKIE,
            HeaderValue::from_static("JSESSIONID=s1; Path=/; HttpOnly"),
        );
        let mut actions = Actions::default();
        actions.cookies_stored.push("JSESSIONID=s1".into());
        let record = ExchangeRecord {
            id: 1,
            parent: None,
            role: Role::Client,
            started: SystemTime::now(),
            timings: Timings::default(),
            client_addr: None,
            client_name: None,
            route: None,
            session_key: None,
            request: RequestPart {
                method: Method::GET,
                url: "http://t/".into(),
                version: Version::HTTP_11,
                headers: req_headers,
                body: None,
            },
            response: Some(ResponsePart {
                status: StatusCode::OK,
                version: Version::HTTP_11,
                headers: res_headers,
                body: None,
            }),
            actions,
            error: None,
        };
        let out = redactor().redact(&record);
        assert_eq!(out.request.cookies, ["A", "B"]);
        let res = out.response.unwrap();
        assert_eq!(res.cookies[0].name, "JSESSIONID");
        assert_eq!(res.cookies[0].path, Some("/"));
        assert!(res.cookies[0].http_only);
        assert_eq!(out.actions.cookies_stored, ["JSESSIONID"]);
    }
}
