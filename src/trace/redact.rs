//! Redaction: the only path from a raw [`ExchangeRecord`] to anything that is written or shown.
//!
//! The rules keep what a human needs to diagnose a failure (auth schemes, cookie names, the shape
//! of a JSON or XML body, error messages) and drop every value that could be a credential. They
//! fail closed:
//! - a header value the proxy injected is marked sensitive when it is built, and the plan names
//!   every route's credential header: both are redacted by construction, whatever their name;
//! - a field is secret when its name contains a secret word (`password`, `token`, ...) or is one
//!   of a few short secret names (`code`, `sig`), so `user_password` or `newPassword` need no list;
//! - a body is shown only after a parser as strict as the target's has read it (JSON, forms,
//!   XML); anything else — another type, a body that does not parse, one cut short — is withheld
//!   and replaced by its size and type, unless the route opted in to raw bodies.
//!
//! A [`RedactedRecord`] borrows every part that redaction leaves as it was from the
//! [`ExchangeRecord`], and owns only what it rewrote: the writer thread renders it and drops it
//! before the next record, so copying the untouched parts would be wasted work.

use std::borrow::Cow;
use std::fmt;

use base64::Engine as _;
use http::header::{self, HeaderMap, HeaderName};
use http::Version;
use serde_json::Value;
use url::form_urlencoded;

use super::json_body::{self, Mode};
use super::json_out::{Str, Unescaped};
use super::record::{Actions, CapturedBody, ErrorInfo, ExchangeRecord, Role, Timings};
use super::text::{Addr, Timestamp};
use super::xml_body;
use crate::config::{TracePlan, DEFAULT_REDACT_FIELDS};

pub const REDACTED: &str = "[REDACTED]";

/// Names that are secret as a whole (the last segment of a URN): an OAuth authorization `code`,
/// a URL's `sig` or `signature`. As substrings they would match `postcode` or `design`.
const SECRET_NAMES: &[&str] = &["code", "sig", "signature"];

/// Charsets under which a body's bytes read as this module reads them (UTF-8, or ASCII for
/// every byte that gives a body its structure). Under any other (UTF-7, UTF-16) a target would
/// read different text, so such a body is withheld.
const READABLE_CHARSETS: &[&str] = &["utf-8", "utf8", "us-ascii", "ascii", "iso-8859-1", "latin1"];

/// Headers that carry credentials and hold none of the built-in patterns (`X-API-Key`,
/// `X-Auth-Token`, `Private-Token` and the like do).
const CREDENTIAL_HEADERS: &[&str] = &["ocp-apim-subscription-key", "x-functions-key"];

/// Header names decided once per redactor (see [`Redactor::header_rule`]): those a record most
/// often holds. Any other name is decided each time it is seen, by the same rules.
const COMMON_HEADERS: &[&str] = &[
    "accept",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "authorization",
    "cache-control",
    "connection",
    "content-encoding",
    "content-length",
    "content-location",
    "content-type",
    "cookie",
    "date",
    "etag",
    "expires",
    "forwarded",
    "host",
    "if-match",
    "if-none-match",
    "last-modified",
    "location",
    "origin",
    "pragma",
    "proxy-authorization",
    "referer",
    "server",
    "set-cookie",
    "transfer-encoding",
    "user-agent",
    "vary",
    "www-authenticate",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-request-id",
];

/// Slots of the table of [`COMMON_HEADERS`]' rules: a power of two, several times their count.
const HEADER_SLOTS: usize = 128;

/// Field names decided once per redactor (see [`Redactor::is_secret_field`]): the attributes of
/// SCIM's core and enterprise schemas and of its messages, which most bodies a provisioning
/// connector exchanges are made of, each decided by the patterns like any other name. Deciding
/// a name searches every pattern in it; a look-up here costs a fraction of that, and a JSON body
/// has a key every few bytes. Any other name is decided each time it is seen.
const COMMON_FIELDS: &[&str] = &[
    "schemas",
    "id",
    "externalId",
    "meta",
    "resourceType",
    "created",
    "lastModified",
    "location",
    "version",
    "userName",
    "name",
    "formatted",
    "familyName",
    "givenName",
    "middleName",
    "honorificPrefix",
    "honorificSuffix",
    "displayName",
    "nickName",
    "profileUrl",
    "title",
    "userType",
    "preferredLanguage",
    "locale",
    "timezone",
    "active",
    "password",
    "emails",
    "phoneNumbers",
    "ims",
    "photos",
    "addresses",
    "streetAddress",
    "locality",
    "region",
    "postalCode",
    "country",
    "groups",
    "entitlements",
    "roles",
    "x509Certificates",
    "value",
    "display",
    "type",
    "primary",
    "$ref",
    "employeeNumber",
    "costCenter",
    "organization",
    "division",
    "department",
    "manager",
    "members",
    "Operations",
    "op",
    "path",
    "totalResults",
    "itemsPerPage",
    "startIndex",
    "Resources",
    "detail",
    "status",
    "scimType",
    "method",
    "bulkId",
    "data",
];

/// Slots of the table of [`COMMON_FIELDS`]' decisions: a power of two, several times their count.
const FIELD_SLOTS: usize = 256;

/// Values of a CSRF token header that ask for or demand a token rather than carry one.
const CSRF_WORDS: &[&str] = &["Fetch", "Required"];

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
    /// The `redact_fields` patterns, built-in ones included: lower case, `-` written `_`, none
    /// containing another (it would add nothing).
    patterns: Vec<Box<[u8]>>,
    /// The length of the shortest pattern: shorter names are not searched.
    shortest: usize,
    /// For each byte, the patterns that start with it (one bit each, the last bit standing for
    /// the 64th pattern and all after it), and those whose second byte it is (or that have
    /// none). A name holds a pattern only where its two bytes share a bit, and most positions
    /// of most names share none: two loads rule a position out.
    firsts: Box<[u64; 256]>,
    seconds: Box<[u64; 256]>,
    /// Every route's credential header (`kind = "header"`).
    auth_headers: Vec<HeaderName>,
    /// The rules of [`COMMON_HEADERS`], decided when the redactor is made: each record has a
    /// dozen headers, nearly always the same names, and deciding one (the secret patterns
    /// searched in its name) costs several times a look-up here. A slot holds one name, or none
    /// when two names share it (the second is decided each time).
    header_rules: Box<[Option<(HeaderName, HeaderRule)>; HEADER_SLOTS]>,
    /// Whether each of [`COMMON_FIELDS`] is secret, decided when the redactor is made, like
    /// `header_rules`: a slot holds one name, or none when two names share it.
    field_rules: Box<[Option<(&'static str, bool)>; FIELD_SLOTS]>,
    /// Routes whose bodies of a type that cannot be redacted are recorded as they are.
    raw_body_routes: Vec<String>,
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
    Text(BodyText<'a>),
    Base64(String),
    /// Not recorded; the reason says why (too big, unparseable, bodies off).
    Omitted(Cow<'static, str>),
}

/// A body's text as shown; displayed as the text itself.
#[derive(Debug, Clone)]
pub enum BodyText<'a> {
    Plain(Cow<'a, str>),
    /// A JSON body's, escaped for a JSON string by the pass that redacted it (see
    /// [`json_body::redact`]): the JSON line and the HAR entry copy it as it is.
    /// Its bytes are UTF-8 (the body's, cut and added to only at ASCII bytes), not checked
    /// again once written: the two renderings copy them as bytes.
    Escaped(Vec<u8>),
}

impl BodyText<'_> {
    /// The text as `json_out` writes it.
    pub fn json(&self) -> Str<'_> {
        match self {
            BodyText::Plain(text) => Str::Plain(text),
            BodyText::Escaped(text) => Str::Escaped(text),
        }
    }
}

impl fmt::Display for BodyText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyText::Plain(text) => f.write_str(text),
            BodyText::Escaped(text) => {
                let text = std::str::from_utf8(text).map_err(|_| fmt::Error)?;
                write!(f, "{}", Unescaped(text))
            }
        }
    }
}

/// How a header's value is shown; it depends on the header's name only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeaderRule {
    /// `Authorization` and `Proxy-Authorization`: the scheme only.
    Authorization,
    Cookie,
    SetCookie,
    /// A credential header: redacted, but for the CSRF protocol's own words.
    Secret,
    /// A header whose value is a URL: its query and fragment are redacted.
    Url,
    Plain,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Json,
    Form,
    Xml,
    /// Any other type: there is no parser to redact it with.
    Other,
}

impl Redactor {
    pub fn new(plan: &TracePlan) -> Self {
        let mut redactor = Self::with_fields(
            &plan.redact_fields,
            plan.auth_headers.clone(),
            plan.bodies,
            plan.max_body,
        );
        redactor.raw_body_routes = plan.raw_body_routes.clone();
        redactor
    }

    /// Fills [`Redactor::header_rules`] from the patterns and the credential headers, which a
    /// rule depends on.
    fn decide_common_headers(&mut self) {
        let mut rules = Box::new([const { None }; HEADER_SLOTS]);
        for name in COMMON_HEADERS {
            let name = HeaderName::from_static(name);
            let slot = &mut rules[header_slot(&name)];
            if slot.is_none() {
                let rule = self.decide_header(&name);
                *slot = Some((name, rule));
            }
        }
        self.header_rules = rules;
    }

    /// Fills [`Redactor::field_rules`] from the patterns.
    fn decide_common_fields(&mut self) {
        let mut rules = Box::new([None; FIELD_SLOTS]);
        for &name in COMMON_FIELDS {
            let slot = &mut rules[field_slot(name.as_bytes())];
            if slot.is_none() {
                *slot = Some((name, self.decide_field(name)));
            }
        }
        self.field_rules = rules;
    }

    /// The built-in field names only, for text that comes from outside (a HAR to diagnose).
    pub fn with_default_fields() -> Self {
        Self::with_fields(DEFAULT_REDACT_FIELDS, Vec::new(), true, 0)
    }

    /// The built-in patterns hold whatever `fields` says; `auth_headers` are the routes'
    /// credential headers.
    fn with_fields(
        fields: &[impl AsRef<str>],
        auth_headers: Vec<HeaderName>,
        bodies: bool,
        max_body: usize,
    ) -> Self {
        let mut normal: Vec<Vec<u8>> = fields
            .iter()
            .map(AsRef::as_ref)
            .chain(DEFAULT_REDACT_FIELDS.iter().copied())
            .map(|f| f.bytes().map(snake).collect::<Vec<u8>>())
            .filter(|f| !f.is_empty())
            .collect();
        normal.sort_by_key(Vec::len);
        normal.dedup();
        let mut patterns: Vec<Box<[u8]>> = Vec::with_capacity(normal.len());
        for pattern in normal {
            if !patterns.iter().any(|kept| contains(&pattern, kept)) {
                patterns.push(pattern.into_boxed_slice());
            }
        }
        let mut firsts = Box::new([0u64; 256]);
        let mut seconds = Box::new([0u64; 256]);
        for (index, pattern) in patterns.iter().enumerate() {
            let bit = 1 << index.min(63);
            for byte in 0..=u8::MAX {
                if snake(byte) == pattern[0] {
                    firsts[usize::from(byte)] |= bit;
                }
                if pattern.get(1).is_none_or(|&second| snake(byte) == second) {
                    seconds[usize::from(byte)] |= bit;
                }
            }
        }
        let mut redactor = Redactor {
            shortest: patterns.iter().map(|p| p.len()).min().unwrap_or(usize::MAX),
            firsts,
            seconds,
            patterns,
            auth_headers,
            header_rules: Box::new([const { None }; HEADER_SLOTS]),
            field_rules: Box::new([None; FIELD_SLOTS]),
            raw_body_routes: Vec::new(),
            bodies,
            max_body,
        };
        redactor.decide_common_headers();
        redactor.decide_common_fields();
        redactor
    }

    /// Whether a query, form, JSON or XML field of this name holds a secret: its name contains
    /// a pattern (ignoring case, `-` and `_` alike), or its last `:` segment (the attribute of
    /// a SCIM URN) is one of [`SECRET_NAMES`].
    pub fn is_secret_field(&self, name: &str) -> bool {
        match self.field_rules[field_slot(name.as_bytes())] {
            Some((known, secret)) if same(known.as_bytes(), name.as_bytes()) => secret,
            _ => self.decide_field(name),
        }
    }

    /// [`Redactor::is_secret_field`], without the table of common names.
    fn decide_field(&self, name: &str) -> bool {
        let bytes = name.as_bytes();
        self.contains_pattern(bytes) || is_secret_name(bytes)
    }

    /// Runs for every key of every body and every header of every traced exchange, so it
    /// looks a position's two bytes up before comparing any pattern there.
    fn contains_pattern(&self, name: &[u8]) -> bool {
        let Some(last) = name.len().checked_sub(self.shortest) else {
            return false;
        };
        for (at, &byte) in name[..=last].iter().enumerate() {
            let first = self.firsts[usize::from(byte)];
            if first == 0 {
                continue;
            }
            let rest = &name[at..];
            let second = rest
                .get(1)
                .map_or(u64::MAX, |&b| self.seconds[usize::from(b)]);
            let mut candidates = first & second;
            while candidates != 0 {
                let index = candidates.trailing_zeros() as usize;
                let found = if index < 63 {
                    starts_with_snake(rest, &self.patterns[index])
                } else {
                    self.patterns[63..]
                        .iter()
                        .any(|p| starts_with_snake(rest, p))
                };
                if found {
                    return true;
                }
                candidates &= candidates - 1;
            }
        }
        false
    }

    /// Whether a header of this name carries a credential in its value: a route's credential
    /// header, a well-known one, or one named like a secret field (`X-Client-Secret`,
    /// `X-SN-Auth-Token`).
    pub fn is_secret_header(&self, name: &str) -> bool {
        self.auth_headers
            .iter()
            .any(|h| h.as_str().eq_ignore_ascii_case(name))
            || CREDENTIAL_HEADERS
                .iter()
                .any(|h| h.eq_ignore_ascii_case(name))
            || self.is_secret_field(name)
    }

    pub fn redact<'a>(&self, record: &'a ExchangeRecord) -> RedactedRecord<'a> {
        self.redact_with(record, &mut Lists::default())
    }

    /// [`Redactor::redact`], with the record's header lists and cookie names in the room of
    /// `lists` (see [`Lists::keep`]).
    pub fn redact_with<'a>(
        &self,
        record: &'a ExchangeRecord,
        lists: &mut Lists,
    ) -> RedactedRecord<'a> {
        let req = &record.request;
        // A token fetch's body holds the token itself: never recorded as it is.
        let raw = !matches!(record.role, Role::TokenFetch | Role::SessionTokenFetch)
            && record
                .route
                .as_deref()
                .is_some_and(|route| self.raw_body_routes.iter().any(|r| r == route));
        let url = self.url(&req.url);
        // A URL left as it was has neither a query nor a fragment.
        let query = match &url {
            Cow::Borrowed(_) => Vec::new(),
            Cow::Owned(url) => query_pairs(url),
        };
        let request = RedactedRequest {
            method: req.method.as_str(),
            http_version: version_str(req.version),
            headers: self.headers_into(&req.headers, reuse(std::mem::take(&mut lists.request))),
            cookies: cookie_names(&req.headers, reuse(std::mem::take(&mut lists.cookies))),
            query,
            body: self.body(req.body.as_ref(), &req.headers, record.role, raw),
            body_size: body_size(req.body.as_ref(), &req.headers),
            url,
        };
        let response_headers = reuse(std::mem::take(&mut lists.response));
        let response = record.response.as_ref().map(|res| RedactedResponse {
            status: res.status.as_u16(),
            status_text: res.status.canonical_reason().unwrap_or(""),
            http_version: version_str(res.version),
            headers: self.headers_into(&res.headers, response_headers),
            cookies: set_cookies(&res.headers),
            body: self.body(res.body.as_ref(), &res.headers, record.role, raw),
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
        self.headers_into(headers, Vec::new())
    }

    /// [`Redactor::headers`] into `shown`, emptied.
    fn headers_into<'a>(
        &self,
        headers: &'a HeaderMap,
        mut shown: Vec<(&'a str, Cow<'a, str>)>,
    ) -> Vec<(&'a str, Cow<'a, str>)> {
        shown.clear();
        shown.reserve(headers.len());
        shown.extend(headers.iter().map(|(name, value)| {
            // The proxy marks every value it puts on a request itself (stored credentials, OAuth
            // tokens, a fixed client Authorization) sensitive when it builds it: such a value
            // never shows, whatever the header is called. Authorization shows its scheme only.
            let authorization =
                name == header::AUTHORIZATION || name == header::PROXY_AUTHORIZATION;
            if value.is_sensitive() && !authorization {
                return (name.as_str(), Cow::Borrowed(REDACTED));
            }
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
        match self.header_rule(name) {
            HeaderRule::Authorization => shown_authorization(value),
            HeaderRule::Cookie => Cow::Owned(cookie_header(value)),
            HeaderRule::SetCookie => Cow::Owned(set_cookie_header(value)),
            // The CSRF protocol's own words (`X-CSRF-Token: Fetch`, `Required`) are no secret,
            // and `diagnose` needs them to name the cause.
            HeaderRule::Secret
                if CSRF_WORDS
                    .iter()
                    .any(|word| word.eq_ignore_ascii_case(value)) =>
            {
                Cow::Borrowed(value)
            }
            HeaderRule::Secret => Cow::Borrowed(REDACTED),
            HeaderRule::Url => self.url(value),
            HeaderRule::Plain => Cow::Borrowed(value),
        }
    }

    /// The rule for a header of this name: decided already for a common name, else now.
    fn header_rule(&self, name: &HeaderName) -> HeaderRule {
        match &self.header_rules[header_slot(name)] {
            Some((known, rule)) if known == name => *rule,
            _ => self.decide_header(name),
        }
    }

    fn decide_header(&self, name: &HeaderName) -> HeaderRule {
        if name == header::AUTHORIZATION || name == header::PROXY_AUTHORIZATION {
            HeaderRule::Authorization
        } else if name == header::COOKIE {
            HeaderRule::Cookie
        } else if name == header::SET_COOKIE {
            HeaderRule::SetCookie
        } else if self.is_secret_header(name.as_str()) {
            HeaderRule::Secret
        } else if URL_HEADERS.contains(name) {
            HeaderRule::Url
        } else {
            HeaderRule::Plain
        }
    }

    /// The URL with secret query and fragment parameters replaced.
    pub fn url<'a>(&self, url: &'a str) -> Cow<'a, str> {
        let Some(q) = query_start(url.as_bytes()) else {
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
        raw: bool,
    ) -> Option<RedactedBody<'a>> {
        let captured = captured?;
        let mime_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let content = self.body_content(captured, headers, mime_type, role, raw);
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

    /// `raw`: the route records bodies it cannot redact as they are (never a token endpoint's).
    fn body_content<'a>(
        &self,
        captured: &'a CapturedBody,
        headers: &HeaderMap,
        mime_type: &str,
        role: Role,
        raw: bool,
    ) -> BodyContent<'a> {
        if !self.bodies {
            return BodyContent::Omitted("bodies are not recorded (trace.bodies = false)".into());
        }
        if captured.bytes.is_empty() {
            return BodyContent::Text(BodyText::Plain(Cow::Borrowed("")));
        }
        let kind = self.body_kind(mime_type, &captured.bytes);
        let token = role == Role::TokenFetch;
        let encoded = headers
            .get(header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| !v.eq_ignore_ascii_case("identity"));
        let as_is = raw && !token && kind == BodyKind::Other;
        if encoded && !as_is {
            return BodyContent::Omitted(
                "content-encoded body withheld: it cannot be redacted without decoding".into(),
            );
        }
        if let Some(charset) = charset(mime_type).filter(|c| {
            !READABLE_CHARSETS
                .iter()
                .any(|known| known.eq_ignore_ascii_case(c))
        }) {
            if !as_is {
                return BodyContent::Omitted(
                    format!("body in charset {charset} withheld: it cannot be redacted").into(),
                );
            }
        }
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
                    Some(text) => BodyContent::Text(BodyText::Escaped(text)),
                    None => BodyContent::Omitted(withheld_reason("JSON", captured).into()),
                }
            }
            BodyKind::Form => match std::str::from_utf8(&captured.bytes) {
                Ok(text) if token => BodyContent::Text(BodyText::Plain(Cow::Owned(
                    self.form_with(text, |name| !is_token_public_field(name)),
                ))),
                Ok(text) => BodyContent::Text(BodyText::Plain(Cow::Owned(self.form(text)))),
                Err(_) => BodyContent::Omitted(withheld_reason("form", captured).into()),
            },
            _ if token => BodyContent::Omitted(
                "token endpoint body withheld: only JSON and form bodies can be redacted".into(),
            ),
            BodyKind::Xml => {
                let redacted = std::str::from_utf8(&captured.bytes)
                    .ok()
                    .and_then(|text| xml_body::redact(text, self).ok());
                match redacted {
                    Some(text) => BodyContent::Text(BodyText::Plain(text)),
                    None => BodyContent::Omitted(withheld_reason("XML", captured).into()),
                }
            }
            BodyKind::Other if raw => self.as_is(captured, mime_type),
            BodyKind::Other => BodyContent::Omitted(
                format!(
                    "{} body of {} bytes withheld: provproxy cannot redact this type \
                     ([routes.trace] raw_bodies = true records it as it is)",
                    match mime_type.split(';').next().map(str::trim) {
                        Some(essence) if !essence.is_empty() => essence,
                        _ => "untyped",
                    },
                    captured.total_size
                )
                .into(),
            ),
        }
    }

    /// A body the route asked to see unredacted: text as text, anything else as base64 up to
    /// `max_body`.
    fn as_is<'a>(&self, captured: &'a CapturedBody, mime_type: &str) -> BodyContent<'a> {
        let bytes = &captured.bytes;
        let text_type =
            mime_type.as_bytes()[..mime_type.len().min(5)].eq_ignore_ascii_case(b"text/");
        let readable = || {
            !bytes
                .iter()
                .any(|&b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r'))
        };
        match std::str::from_utf8(bytes) {
            Ok(utf8) if text_type || readable() => {
                BodyContent::Text(BodyText::Plain(Cow::Borrowed(utf8)))
            }
            _ if text_type => BodyContent::Text(BodyText::Plain(String::from_utf8_lossy(bytes))),
            _ if captured.truncated || bytes.len() > self.max_body => BodyContent::Omitted(
                format!(
                    "binary body of {} bytes not recorded (over max_body)",
                    captured.total_size
                )
                .into(),
            ),
            _ => BodyContent::Base64(base64::engine::general_purpose::STANDARD.encode(bytes)),
        }
    }

    fn body_kind(&self, mime: &str, bytes: &[u8]) -> BodyKind {
        let essence = mime.split(';').next().unwrap_or("").trim();
        if essence.is_empty() {
            // No declared type: a body that parses as JSON or XML is redacted as such. A form
            // cannot be told from other text (`dG9rZW4=` reads as one), so it is not guessed.
            if json_body::is_json(bytes, self) {
                return BodyKind::Json;
            }
            let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
            if matches!(first, Some(b'<' | 0xef)) && xml_body::is_xml(bytes, self) {
                return BodyKind::Xml;
            }
            return BodyKind::Other;
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
        } else if is("application/xml") || is("text/xml") || ends_with("+xml") {
            BodyKind::Xml
        } else {
            BodyKind::Other
        }
    }
}

/// A header name's slot in [`Redactor::header_rules`]: its length and three of its bytes, mixed.
fn header_slot(name: &HeaderName) -> usize {
    let bytes = name.as_str().as_bytes();
    let byte = |at: usize| u32::from(bytes.get(at).copied().unwrap_or(0));
    let key = (bytes.len() as u32)
        ^ byte(0) << 8
        ^ byte(bytes.len() / 2) << 16
        ^ byte(bytes.len().wrapping_sub(1)) << 24;
    (key.wrapping_mul(0x9e37_79b1) >> (32 - HEADER_SLOTS.trailing_zeros())) as usize
}

/// The `charset` parameter of a `Content-Type`, unquoted.
fn charset(mime: &str) -> Option<&str> {
    mime.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| value.trim().trim_matches('"'))
    })
}

/// A name's byte as the patterns spell it: lower case, `-` as `_`.
fn snake(byte: u8) -> u8 {
    if byte == b'-' {
        b'_'
    } else {
        byte.to_ascii_lowercase()
    }
}

/// Whether the last `:` segment of `name` is one of [`SECRET_NAMES`], ignoring case: the name
/// ends with one, whole or after a `:`. A name that does not end in `e` or `g` is none of them.
fn is_secret_name(name: &[u8]) -> bool {
    if !matches!(name.last().map(u8::to_ascii_lowercase), Some(b'e' | b'g')) {
        return false;
    }
    SECRET_NAMES.iter().any(|secret| {
        let secret = secret.as_bytes();
        name.len() >= secret.len()
            && name[name.len() - secret.len()..].eq_ignore_ascii_case(secret)
            && (name.len() == secret.len() || name[name.len() - secret.len() - 1] == b':')
    })
}

/// `a == b`, for names of a few bytes: compared as two words (or two half-words) that overlap
/// in the middle, rather than through a call to `memcmp`.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    match (a.first_chunk::<8>(), b.first_chunk::<8>()) {
        (Some(a_head), Some(b_head)) if a.len() <= 16 => {
            a_head == b_head && a.last_chunk::<8>() == b.last_chunk::<8>()
        }
        _ => match (a.first_chunk::<4>(), b.first_chunk::<4>()) {
            (Some(a_head), Some(b_head)) if a.len() < 8 => {
                a_head == b_head && a.last_chunk::<4>() == b.last_chunk::<4>()
            }
            _ => a == b,
        },
    }
}

/// The slot of a field name in [`Redactor::field_rules`]: its length and its first and last
/// bytes, weighted so that [`COMMON_FIELDS`] share few slots.
fn field_slot(name: &[u8]) -> usize {
    let (first, last) = (name.first().copied(), name.last().copied());
    let (first, last) = (
        usize::from(first.unwrap_or(0)),
        usize::from(last.unwrap_or(0)),
    );
    (name.len() + 7 * first + 11 * last) % FIELD_SLOTS
}

/// Whether `name` starts with `pattern` (lower case, snake_case), ignoring case and `-` / `_`.
fn starts_with_snake(name: &[u8], pattern: &[u8]) -> bool {
    name.len() >= pattern.len() && name.iter().zip(pattern).all(|(&n, &p)| snake(n) == p)
}

/// Whether `pattern` occurs in `name`, both in snake_case.
fn contains(name: &[u8], pattern: &[u8]) -> bool {
    name.windows(pattern.len()).any(|w| w == pattern)
}

/// The actions as recorded; copied only when a cookie name carries a value. The pipeline passes
/// names, but a `name=value` slipping in must not reach a file.
fn actions(actions: &Actions) -> Cow<'_, Actions> {
    let has_value = |names: &[String]| names.iter().any(|n| n.contains('='));
    if !has_value(&actions.cookies_replayed) && !has_value(&actions.cookies_stored) {
        return Cow::Borrowed(actions);
    }
    let mut actions = actions.clone();
    let mut replayed = actions.cookies_replayed.to_vec();
    for name in replayed.iter_mut().chain(actions.cookies_stored.iter_mut()) {
        if let Some(eq) = name.find('=') {
            name.truncate(eq);
        }
    }
    actions.cookies_replayed = replayed.into();
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

/// [`authorization`] of the common values without building a string: a scheme spelled as one of
/// these, one space, and one credential word (that is not a scheme name) show as the entry.
/// Every entry is a scheme of [`SCHEME_NAMES`], a space and [`REDACTED`].
const SHOWN_SCHEMES: &[&str] = &[
    "Basic [REDACTED]",
    "Bearer [REDACTED]",
    "Digest [REDACTED]",
    "Negotiate [REDACTED]",
    "NTLM [REDACTED]",
    "Token [REDACTED]",
    "OAuth [REDACTED]",
    "SSWS [REDACTED]",
    "basic [REDACTED]",
    "bearer [REDACTED]",
];

/// [`authorization`], borrowed from [`SHOWN_SCHEMES`] for the usual `Scheme credential`: the
/// header is on most records, and building its string (and splitting the credential on
/// Unicode whitespace) cost more than the rest of its record's headers.
fn shown_authorization(value: &str) -> Cow<'static, str> {
    let shown = value.split_once(' ').and_then(|(scheme, credential)| {
        // One word to `split_whitespace`: no ASCII whitespace and no byte of a multi-byte
        // character (the other whitespace is all outside ASCII).
        let one_word = !credential.is_empty()
            && credential
                .bytes()
                .all(|b| b.is_ascii() && !matches!(b, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' '));
        let repeated = SCHEME_NAMES
            .iter()
            .any(|s| s.eq_ignore_ascii_case(credential));
        if !one_word || repeated {
            return None;
        }
        SHOWN_SCHEMES.iter().find(|shown| {
            shown.len() == scheme.len() + 1 + REDACTED.len() && shown.starts_with(scheme)
        })
    });
    match shown {
        Some(shown) => Cow::Borrowed(shown),
        None => Cow::Owned(authorization(value)),
    }
}

/// Keeps the scheme and any scheme word repeated after it: `Bearer Bearer [REDACTED]`.
/// A value that does not start with what can be a scheme (a lone word is a bare credential;
/// a long first word or one with `=` or `.` in it looks like a token) is redacted whole.
pub fn authorization(value: &str) -> String {
    let mut words = value.split_whitespace().peekable();
    let Some(scheme) = words.next() else {
        return String::new();
    };
    let known = SCHEME_NAMES.iter().any(|s| s.eq_ignore_ascii_case(scheme));
    let scheme_like = scheme.len() <= 24
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let shows_scheme = known || (scheme_like && words.peek().is_some());
    if !shows_scheme {
        return REDACTED.to_owned();
    }
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
    let pairs = pieces(value, b';').map(str::trim).filter(|p| !p.is_empty());
    for pair in pairs {
        if !out.is_empty() {
            out.push_str("; ");
        }
        out.push_str(until(pair, b'=').trim());
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

/// The names of the cookies sent, into `names`, emptied.
fn cookie_names<'a>(headers: &'a HeaderMap, mut names: Vec<&'a str>) -> Vec<&'a str> {
    names.clear();
    names.extend(
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| pieces(v, b';'))
            .filter_map(|pair| {
                let name = until(pair, b'=').trim();
                (!name.is_empty()).then_some(name)
            }),
    );
    names
}

/// The room of a record's header lists and cookie names, handed from one record to the next
/// by the writer: three allocations fewer per record (and their frees), with no other change
/// to what a record holds.
#[derive(Debug, Default)]
pub struct Lists {
    request: Vec<(&'static str, Cow<'static, str>)>,
    response: Vec<(&'static str, Cow<'static, str>)>,
    cookies: Vec<&'static str>,
}

impl Lists {
    /// Takes back the room of a record's lists, once the record has been written.
    pub fn keep(&mut self, record: RedactedRecord<'_>) {
        self.request = reuse(record.request.headers);
        self.cookies = reuse(record.request.cookies);
        if let Some(response) = record.response {
            self.response = reuse(response.headers);
        }
    }
}

/// `list` emptied, as a list of another lifetime with its room: its values are dropped, and
/// collecting the empty iterator into elements of the same size reuses the allocation (std
/// collects in place; were it not to, this would allocate as before, nothing else).
fn reuse<T, U>(mut list: Vec<T>) -> Vec<U> {
    list.clear();
    list.into_iter().filter_map(|_| None).collect()
}

/// The pieces of `text` between each `byte` (ASCII), as `str::split` gives them. Cookie values
/// are a few dozen bytes: a plain scan costs less than the setup of `split`'s `memchr`.
fn pieces(text: &str, byte: u8) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let text = rest?;
        match text.bytes().position(|b| b == byte) {
            Some(at) => {
                rest = text.get(at + 1..);
                text.get(..at)
            }
            None => {
                rest = None;
                Some(text)
            }
        }
    })
}

/// `text` up to the first `byte` (ASCII), or all of it: the first of [`pieces`].
fn until(text: &str, byte: u8) -> &str {
    pieces(text, byte).next().unwrap_or(text)
}

/// Where a URL's query or fragment starts: eight bytes at a time, then the byte in the word
/// that has it. A URL is some 80 bytes, and a byte at a time was most of its redaction's cost.
fn query_start(url: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    // Non-zero exactly when one of the word's bytes is `byte`.
    let holds = |word: u64, byte: u8| {
        let x = word ^ (ONES * u64::from(byte));
        x.wrapping_sub(ONES) & !x & HIGHS
    };
    let mut at = 0;
    while let Some(word) = url.get(at..).and_then(<[u8]>::first_chunk::<8>) {
        let word = u64::from_le_bytes(*word);
        if holds(word, b'?') | holds(word, b'#') != 0 {
            break;
        }
        at += 8;
    }
    let rest = url.get(at..)?;
    rest.iter()
        .position(|b| matches!(b, b'?' | b'#'))
        .map(|found| at + found)
}

fn set_cookies(headers: &HeaderMap) -> Vec<SetCookie<'_>> {
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(parse_set_cookie)
        .collect()
}

pub(super) fn parse_set_cookie(value: &str) -> SetCookie<'_> {
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

pub(super) fn query_pairs(url: &str) -> Vec<(String, String)> {
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
            queue_bytes: 1 << 20,
            recent: 8,
            auth_headers: Vec::new(),
            raw_body_routes: Vec::new(),
        }
    }

    fn redactor() -> Redactor {
        let mut plan = plan(&["tenantPin"]);
        plan.auth_headers = vec![HeaderName::from_static("x-sn-auth")];
        plan.raw_body_routes = vec!["raw".into()];
        Redactor::new(&plan)
    }

    fn header(name: HeaderName, value: &str) -> String {
        redactor().header_value(&name, value).into_owned()
    }

    fn body(content_type: &str, body: &str, role: Role) -> BodyContent<'static> {
        body_of(content_type, body.as_bytes(), role, false)
    }

    /// `raw`: as on a route with `raw_bodies = true`.
    fn body_of(content_type: &str, body: &[u8], role: Role, raw: bool) -> BodyContent<'static> {
        let mut headers = HeaderMap::new();
        if !content_type.is_empty() {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_str(content_type).unwrap(),
            );
        }
        let captured = CapturedBody {
            bytes: Bytes::copy_from_slice(body),
            total_size: body.len() as u64,
            truncated: false,
        };
        match redactor()
            .body(Some(&captured), &headers, role, raw)
            .unwrap()
            .content
        {
            BodyContent::Text(t) => BodyContent::Text(BodyText::Plain(Cow::Owned(t.to_string()))),
            BodyContent::Base64(b) => BodyContent::Base64(b),
            BodyContent::Omitted(why) => BodyContent::Omitted(why),
        }
    }

    fn text(content: BodyContent) -> String {
        match content {
            BodyContent::Text(t) => t.to_string(),
            other => panic!("expected text, got {other:?}"),
        }
    }

    /// The rules of common header names are decided once, when the redactor is made, by the
    /// same rules and with the plan's fields and credential headers: a common header that the
    /// plan makes secret is redacted, and so is one named like a secret that is not common.
    #[test]
    fn common_header_names_decided_ahead_follow_the_plan_and_fail_closed() {
        let mut plan = plan(&["agent", "forwarded_for"]);
        plan.auth_headers = vec![HeaderName::from_static("x-request-id")];
        let r = Redactor::new(&plan);
        let decided = r.header_rules.iter().flatten().count();
        assert!(
            decided * 4 >= COMMON_HEADERS.len() * 3,
            "{decided} decided ahead"
        );
        for name in COMMON_HEADERS {
            let name = HeaderName::from_static(name);
            assert_eq!(r.header_rule(&name), r.decide_header(&name), "{name}");
        }
        for name in [
            "user-agent",
            "x-forwarded-for",
            "x-request-id",
            "x-client-secret",
        ] {
            let name = HeaderName::from_static(name);
            assert_eq!(r.header_value(&name, "s3cr3t"), REDACTED, "{name}");
        }
        let host = HeaderName::from_static("host");
        assert_eq!(r.header_value(&host, "idp.example"), "idp.example");
        let plain = Redactor::new(&super::tests::plan(&[]));
        let agent = HeaderName::from_static("user-agent");
        assert_eq!(plain.header_value(&agent, "curl/8"), "curl/8");
    }

    /// Common field names are decided once, when the redactor is made, with the plan's
    /// patterns: a common name that the plan makes secret is secret, a name that only shares a
    /// slot with a common one is decided by the rules, and most common names have a slot.
    #[test]
    fn common_field_names_decided_ahead_follow_the_plan() {
        let r = Redactor::new(&plan(&["name", "Display"]));
        let decided = r.field_rules.iter().flatten().count();
        assert!(decided * 10 >= COMMON_FIELDS.len() * 9, "{decided} decided");
        for name in COMMON_FIELDS {
            assert_eq!(r.is_secret_field(name), r.decide_field(name), "{name}");
        }
        for name in [
            "userName",
            "displayName",
            "display",
            "password",
            "user_name",
        ] {
            assert!(r.is_secret_field(name), "{name}");
        }
        let plain = Redactor::new(&plan(&[]));
        for name in [
            "userName",
            "displayName",
            "value",
            "id",
            "userType",
            "postalCode",
        ] {
            assert!(!plain.is_secret_field(name), "{name}");
        }
        let names = [
            "",
            "a",
            "ab",
            "abc",
            "abcd",
            "abcde",
            "abcdefg",
            "abcdefgh",
            "abcdefghi",
        ];
        let longer = ["abcdefghijklmnop", "abcdefghijklmnopq", "abcdefghijklmnoq"];
        for a in names.iter().chain(&longer) {
            for b in names
                .iter()
                .chain(&longer)
                .chain(&["abcdefgi", "bbc", "abcdefgx"])
            {
                assert_eq!(same(a.as_bytes(), b.as_bytes()), a == b, "{a} {b}");
            }
        }
        // Same slot as `userName`, and not it.
        assert_eq!(field_slot(b"userName"), field_slot(b"userType"));
        assert!(plain.is_secret_field("userToken") && plain.is_secret_field("Password"));
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
    fn common_authorization_values_show_as_the_general_rule_shows_them() {
        for shown in SHOWN_SCHEMES {
            let scheme = shown
                .strip_suffix(REDACTED)
                .and_then(|s| s.strip_suffix(' '));
            assert!(scheme.is_some_and(|scheme| SCHEME_NAMES
                .iter()
                .any(|known| known.eq_ignore_ascii_case(scheme))));
        }
        let values = [
            "Basic c3ZjOmh1bnRlcjI=",
            "Bearer eyJhbGciOi.x.y",
            "bearer abc",
            "BEARER abc",
            "Bearer Bearer abc",
            "Bearer bearer",
            "Bearer basic",
            "Bearer ",
            "Bearer  abc",
            "Bearer abc def",
            "Bearer abc\tdef",
            "Bearer abc\u{a0}def",
            "Bearer abc\u{3000}",
            "Bearer\u{a0}abc",
            " Bearer abc",
            "Basic",
            "Custom abc",
            "NTLM TlRMTVNTUAAB",
            "Negotiate YII=",
            "",
        ];
        for value in values {
            let general = authorization(value);
            assert_eq!(shown_authorization(value), general, "{value:?}");
        }
        assert!(matches!(
            shown_authorization("Basic c3ZjOmh1bnRlcjI="),
            Cow::Borrowed("Basic [REDACTED]")
        ));
    }

    #[test]
    fn authorization_keeps_a_doubled_scheme_visible() {
        assert_eq!(
            header(header::AUTHORIZATION, "Bearer Bearer abc.def"),
            "Bearer Bearer [REDACTED]"
        );
    }

    #[test]
    fn a_query_or_fragment_is_found_wherever_it_starts() {
        let base = "https://h.example/scim/v2/Users/2819c223-7f76-453a-919d";
        for len in 0..=base.len() {
            for mark in ['?', '#'] {
                let url = format!("{}{mark}password=x", &base[..len]);
                assert_eq!(query_start(url.as_bytes()), Some(len), "{url}");
            }
            assert_eq!(query_start(&base.as_bytes()[..len]), None);
        }
        assert_eq!(query_start(b"/a#b?c"), Some(2));
    }

    #[test]
    fn the_lists_of_a_written_record_give_their_room_to_the_next() {
        let r = redactor();
        let mut record = record_with_body("application/json", "r");
        record
            .request
            .headers
            .insert(header::COOKIE, HeaderValue::from_static("a=1; b=2"));
        let mut lists = Lists::default();
        let first = r.redact_with(&record, &mut lists);
        let room = (
            first.request.headers.capacity(),
            first.request.cookies.capacity(),
        );
        assert_eq!(first.request.cookies, ["a", "b"]);
        lists.keep(first);
        assert_eq!((lists.request.capacity(), lists.cookies.capacity()), room);
        let second = r.redact_with(&record, &mut lists);
        assert_eq!(
            (
                second.request.headers.capacity(),
                second.request.cookies.capacity()
            ),
            room
        );
        assert_eq!(
            format!("{:?}", second.request.headers),
            format!("{:?}", r.redact(&record).request.headers)
        );
    }

    #[test]
    fn cookie_pieces_split_as_str_split_does() {
        for text in ["", ";", "a", "a;b", ";a;;b;", " a = 1 ; b=2;", "é=ü;ß"] {
            let expected: Vec<&str> = text.split(';').collect();
            assert_eq!(pieces(text, b';').collect::<Vec<_>>(), expected);
            assert_eq!(until(text, b';'), expected[0]);
        }
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
        for name in [
            "x-api-key",
            "api-key",
            "x-client-secret",
            "x-auth-token",
            "x-session-secret-value",
            "ocp-apim-subscription-key",
            "x-tenantpin",
            "sig",
        ] {
            let name = HeaderName::from_static(name);
            assert_eq!(header(name, "s3cret"), REDACTED);
        }
        for (name, value) in [
            (header::CONTENT_TYPE, "application/json"),
            (header::ACCEPT, "*/*"),
            (HeaderName::from_static("x-request-id"), "r-1"),
            (HeaderName::from_static("x-error-code"), "E42"),
        ] {
            assert_eq!(header(name, value), value);
        }
    }

    #[test]
    fn a_routes_credential_header_is_redacted_whatever_its_name() {
        // `X-SN-Auth` is on no list and names no secret; the plan says a route injects it.
        assert_eq!(
            header(HeaderName::from_static("x-sn-auth"), "s3cret"),
            REDACTED
        );
        assert_eq!(
            Redactor::new(&plan(&[])).header_value(&HeaderName::from_static("x-sn-auth"), "v"),
            "v"
        );
    }

    #[test]
    fn a_value_the_proxy_marked_sensitive_is_redacted_whatever_its_header() {
        let mut headers = HeaderMap::new();
        let mut injected = HeaderValue::from_static("injected-s3cret");
        injected.set_sensitive(true);
        headers.insert("x-custom", injected.clone());
        headers.insert(header::LOCATION, injected.clone());
        headers.insert("x-plain", HeaderValue::from_static("shown"));
        let mut bearer = HeaderValue::from_static("Bearer tok-s3cret");
        bearer.set_sensitive(true);
        headers.insert(header::AUTHORIZATION, bearer);
        let shown = redactor().headers(&headers);
        let value = |name: &str| {
            shown
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
                .unwrap()
        };
        assert_eq!(value("x-custom"), REDACTED);
        assert_eq!(value("location"), REDACTED);
        assert_eq!(value("x-plain"), "shown");
        assert_eq!(value("authorization"), "Bearer [REDACTED]");
    }

    #[test]
    fn an_authorization_value_without_a_scheme_is_redacted_whole() {
        for bare in ["s3cr3t-api-key", "dXNlcjpwYXNz", "a.b.c d", "key=value x"] {
            assert_eq!(header(header::AUTHORIZATION, bare), REDACTED, "{bare}");
        }
        assert_eq!(
            header(header::AUTHORIZATION, "SSWS 00abc"),
            "SSWS [REDACTED]"
        );
        assert_eq!(header(header::AUTHORIZATION, "Basic"), "Basic");
    }

    #[test]
    fn field_names_match_secret_words_anywhere_and_short_names_whole() {
        let r = redactor();
        for secret in [
            "password",
            "user_password",
            "newPassword",
            "PASSWD",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:password",
            "sessionToken",
            "activationToken",
            "client_assertion",
            "client_secret",
            "x-api-key",
            "apiKey",
            "API_KEY",
            "credentials",
            "code",
            "Sig",
            "signature",
            "urn:example:params:Code",
            "my_tenantpin",
        ] {
            assert!(r.is_secret_field(secret), "{secret}");
        }
        for plain in [
            "userName",
            "postcode",
            "codes",
            "signal",
            "design",
            "passage",
            "tok",
            "",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
            "id",
        ] {
            assert!(!r.is_secret_field(plain), "{plain}");
        }
    }

    /// The check as it reads in the issue, allocating and plainly right.
    fn reference(patterns: &[&str], name: &str) -> bool {
        let normal = |s: &str| s.to_ascii_lowercase().replace('-', "_");
        let name_normal = normal(name);
        let last = name.rsplit(':').next().unwrap_or(name);
        patterns
            .iter()
            .any(|p| !p.is_empty() && name_normal.contains(&normal(p)))
            || SECRET_NAMES.iter().any(|n| n.eq_ignore_ascii_case(last))
    }

    #[test]
    fn the_prefilters_never_hide_a_secret_field_or_header() {
        // More than 64 patterns share the last bit of the prefilter.
        let many: Vec<String> = (0..70).map(|i| format!("q{i}z")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let configs: [&[&str]; 5] = [
            &[],
            &["sessionSecret", "X"],
            &["a_b", "ToKeN2"],
            &["q-r"],
            &many,
        ];
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
            let patterns: Vec<&str> = DEFAULT_REDACT_FIELDS.iter().chain(extra).copied().collect();
            let mut names: Vec<String> = words.iter().map(|w| w.to_string()).collect();
            for field in patterns.iter().chain(SECRET_NAMES) {
                for form in [
                    field.to_string(),
                    field.to_ascii_uppercase(),
                    field.replace('_', "-"),
                    format!("x-{field}"),
                    format!("X-Client-{field}"),
                    format!("{field}-id"),
                    format!("{field}s"),
                    format!("my{field}"),
                    format!("x_{}", field.to_ascii_uppercase()),
                    format!("urn:a:b:{field}"),
                    format!("{field}:x"),
                    field[1..].to_string(),
                    field[..field.len() - 1].to_string(),
                ] {
                    names.push(form);
                }
            }
            for name in &names {
                assert_eq!(
                    r.is_secret_field(name),
                    reference(&patterns, name),
                    "field {name:?} with {extra:?}"
                );
                let header = reference(&patterns, name)
                    || CREDENTIAL_HEADERS
                        .iter()
                        .any(|h| h.eq_ignore_ascii_case(name));
                assert_eq!(
                    r.is_secret_header(name),
                    header,
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
            r#"{"userName":"bob","a":{"b":[{"PASSWORD":"p1"},{"x":{"client_secret":"c1"}}]},"tenantPin":{"n":1}}"#,
            Role::Client,
        ));
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["userName"], "bob");
        assert_eq!(v["a"]["b"][0]["PASSWORD"], REDACTED);
        assert_eq!(v["a"]["b"][1]["x"]["client_secret"], REDACTED);
        assert_eq!(v["tenantPin"], REDACTED);
    }

    #[test]
    fn json_fields_named_like_secrets_are_redacted_as_targets_name_them() {
        let out = text(body(
            "application/scim+json",
            concat!(
                r#"{"user_password":"sn1","newPassword":"n1","sessionToken":"st1","#,
                r#""activationToken":"at1","client_assertion":"ca1","code":"oc1","sig":"sg1","#,
                r#""urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"password":"e1","employeeNumber":"701"},"#,
                r#""urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:password":"e2","#,
                r#""userName":"bob","postcode":"12345"}"#
            ),
            Role::Client,
        ));
        for secret in ["sn1", "n1", "st1", "at1", "ca1", "oc1", "sg1", "e1", "e2"] {
            assert!(!out.contains(&format!("\"{secret}\"")), "{secret} in {out}");
        }
        for kept in ["bob", "12345", "701"] {
            assert!(out.contains(kept), "{kept} in {out}");
        }
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
        let input = r#"{"status":401,"description":"The request requires user authentication","list":[1,"two",{"three":null}]}"#;
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
            .body(Some(&truncated), &headers, Role::Client, true)
            .unwrap();
        assert!(matches!(out.content, BodyContent::Omitted(ref why) if why.contains("truncated")));
    }

    #[test]
    fn form_and_query_fields_named_like_secrets_are_redacted() {
        assert_eq!(
            text(body(
                "application/x-www-form-urlencoded",
                "sys_id=1&user_password=sn1&newPassword=n1&client_assertion=ca1&code=oc1&state=s",
                Role::Client
            )),
            "sys_id=1&user_password=[REDACTED]&newPassword=[REDACTED]&client_assertion=[REDACTED]&code=[REDACTED]&state=s"
        );
        assert_eq!(
            redactor().url("https://t/dl?file=a.pdf&se=2030&sig=abc%2Bdef&sp=r"),
            "https://t/dl?file=a.pdf&se=2030&sig=[REDACTED]&sp=r"
        );
    }

    #[test]
    fn xml_and_soap_bodies_are_redacted_by_element_and_attribute_name() {
        let soap = concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?>"#,
            r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">"#,
            r#"<soapenv:Header><wsse:Security><wsse:UsernameToken><wsse:Username>svc</wsse:Username>"#,
            r#"<wsse:Password Type="PasswordText">w1</wsse:Password></wsse:UsernameToken></wsse:Security></soapenv:Header>"#,
            r#"<soapenv:Body><ns:insert><user_name>bob</user_name><user_password>x1</user_password>"#,
            r#"<ns:Password>x2</ns:Password><login password="x3" id="7"/>"#,
            r#"<entry key="password" value="x4"/><Attribute name="newPassword"><Value>x5</Value></Attribute>"#,
            r#"</ns:insert></soapenv:Body></soapenv:Envelope>"#
        );
        for content_type in ["text/xml; charset=utf-8", "application/soap+xml", ""] {
            let out = text(body(content_type, soap, Role::Client));
            for secret in ["w1", "x1", "x2", "x3", "x4", "x5", "svc"] {
                assert!(!out.contains(&format!(">{secret}<")), "{secret} in {out}");
                assert!(!out.contains(&format!("\"{secret}\"")), "{secret} in {out}");
            }
            assert!(out.contains("<user_name>bob</user_name>"), "{out}");
            assert!(
                out.contains(r#"<login password="[REDACTED]" id="7"/>"#),
                "{out}"
            );
            assert!(
                out.contains("<user_password>[REDACTED]</user_password>"),
                "{out}"
            );
        }
    }

    #[test]
    fn bodies_that_cannot_be_redacted_are_withheld_with_their_size_and_type() {
        let cases: [(&str, &[u8]); 7] = [
            ("text/plain", b"password: hunter2"),
            ("text/html", b"<p>hunter2</p>"),
            ("application/octet-stream", &[0, 1, 2, 3]),
            ("", b"dXNlcjpodW50ZXIy"),
            ("", b"user=bob&password=hunter2"),
            ("application/xml", b"<password>hunter2</password"),
            (
                "text/xml; charset=utf-7",
                b"<a>+ADw-password+AD4-hunter2</a>",
            ),
        ];
        for (content_type, bytes) in cases {
            match body_of(content_type, bytes, Role::Client, false) {
                BodyContent::Omitted(why) => assert!(why.contains("withheld"), "{why}"),
                other => panic!("{content_type} {bytes:?} shown: {other:?}"),
            }
        }
        let BodyContent::Omitted(why) =
            body_of("text/plain; charset=utf-8", b"hello", Role::Client, false)
        else {
            panic!("text shown");
        };
        assert!(
            why.starts_with("text/plain body of 5 bytes withheld"),
            "{why}"
        );
        assert!(why.contains("raw_bodies = true"), "{why}");
    }

    #[test]
    fn a_route_that_opts_in_records_bodies_that_cannot_be_redacted_as_they_are() {
        let shown = text(body_of("text/plain", b"plain words", Role::Client, true));
        assert_eq!(shown, "plain words");
        // What can be redacted still is, and a token endpoint's body never shows raw.
        let json = text(body_of(
            "application/json",
            br#"{"password":"p"}"#,
            Role::Client,
            true,
        ));
        assert_eq!(json, r#"{"password":"[REDACTED]"}"#);
        let broken = body_of(
            "application/json",
            br#"{"password":"p""#,
            Role::Client,
            true,
        );
        assert!(matches!(broken, BodyContent::Omitted(_)));
        let mut record = record_with_body("text/plain", "raw");
        record.role = Role::TokenFetch;
        let r = redactor();
        let out = r.redact(&record);
        assert!(matches!(
            out.request.body.unwrap().content,
            BodyContent::Omitted(_)
        ));
        let record = record_with_body("text/plain", "raw");
        let out = r.redact(&record);
        assert!(
            matches!(out.request.body.unwrap().content, BodyContent::Text(ref t) if t.to_string() == "text")
        );
        let mut other = record_with_body("text/plain", "other");
        other.route = Some("other".into());
        let out = r.redact(&other);
        assert!(matches!(
            out.request.body.unwrap().content,
            BodyContent::Omitted(_)
        ));
    }

    fn record_with_body(content_type: &'static str, route: &str) -> ExchangeRecord {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        ExchangeRecord {
            id: 1,
            parent: None,
            role: Role::Client,
            started: SystemTime::now(),
            timings: Timings::default(),
            client_addr: None,
            client_name: None,
            route: Some(route.into()),
            session_key: None,
            request: RequestPart {
                method: Method::POST,
                url: "http://t/".into(),
                version: Version::HTTP_11,
                headers,
                body: Some(CapturedBody {
                    bytes: Bytes::from_static(b"text"),
                    total_size: 4,
                    truncated: false,
                }),
            },
            response: None,
            actions: Actions::default(),
            error: None,
        }
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
    fn raw_binary_bodies_are_base64_under_max_body_and_omitted_over_it() {
        let r = redactor();
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/png"));
        let small = CapturedBody {
            bytes: Bytes::from_static(&[0x89, b'P', b'N', b'G', 0, 1]),
            total_size: 6,
            truncated: false,
        };
        let out = r.body(Some(&small), &headers, Role::Client, true).unwrap();
        assert!(matches!(out.content, BodyContent::Base64(ref b) if b == "iVBORwAB"));
        assert_eq!(out.mime_type, "image/png");
        let big = CapturedBody {
            bytes: Bytes::from(vec![0u8; 1024]),
            total_size: 5000,
            truncated: true,
        };
        let out = r.body(Some(&big), &headers, Role::Client, true).unwrap();
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
            .body(Some(&captured), &headers, Role::Client, true)
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
            .body(Some(&captured), &headers, Role::Client, true)
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
