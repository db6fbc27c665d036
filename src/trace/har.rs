//! HAR 1.2: one entry per redacted record, provproxy's own data under `_provproxy`.
//!
//! An entry holds both sides of the exchange: the request as it was forwarded and the response
//! as the target sent it (its `Set-Cookie`, `Location` and `WWW-Authenticate` included, values
//! redacted). What the client got instead is told by `_provproxy.actions`: the challenge
//! before and after, the cookies withheld, the headers removed, the rewritten `Location`.
//!
//! The file is a complete HAR document after every record: it is created as an empty log whose
//! last bytes are [`TAIL`], and each entry overwrites that tail with `,entry` followed by the
//! tail again (see [`super::file::TraceFile`]).
//!
//! An entry is serialised straight from the record through the borrowing views below, with no
//! JSON tree in between. Their fields are declared in sorted key order, which is the order our
//! HAR files have always had. The views' derived `Serialize` is the definition of an entry's
//! bytes; [`Entry::write`] writes the same bytes by hand for a quarter less work (12.3k → 9.4k
//! instructions for the load bench's entry): an entry's keys and punctuation are known in
//! advance, so each run of them goes out as one literal, and its integers without a serializer.
//! The trace writer, which has just written the record's JSON line, uses
//! [`Entry::write_from_line`]: what the line shows alike is copied from it (5.0k instead of
//! 7.9k). The golden-file tests hold all three to the same bytes.

use std::borrow::Cow;
use std::ops::Range;
use std::time::Duration;

use serde::{Serialize, Serializer};

use super::json_out::{self, Memo, Out, Str};
use super::jsonl::{HeaderMarks, Marks};
use super::record::{Actions, ErrorInfo};
use super::redact::{BodyContent, RedactedBody, RedactedRecord, SetCookie, REDACTED};
use super::text::{Addr, Timestamp};

pub const HEAD: &str = concat!(
    r#"{"log":{"version":"1.2","creator":{"name":"provproxy","version":""#,
    env!("CARGO_PKG_VERSION"),
    r#""},"pages":[],"entries":["#,
    "\n"
);
pub const TAIL: &str = "\n]}}\n";
pub const SEPARATOR: &str = ",\n";

/// The HAR entry for one record. Failed exchanges get status 0 and `_provproxy.error`.
pub fn entry<'r>(rec: &'r RedactedRecord<'_>) -> Entry<'r> {
    let req = &rec.request;
    let t = &rec.timings;
    let connect = t.connect.unwrap_or_default();
    let first_byte = t.first_byte.unwrap_or(t.total);
    Entry {
        provproxy: Provproxy {
            actions: ActionsView::new(&rec.actions),
            client: rec.client_name,
            client_addr: rec.client_addr.as_ref(),
            error: rec.error.map(ErrorView::new),
            id: rec.id,
            parent: rec.parent,
            role: rec.role.as_str(),
            route: rec.route,
            session: rec.session_key,
        },
        cache: Cache {},
        request: Request {
            body_size: req.body_size,
            cookies: RequestCookies(&req.cookies),
            headers: NameValues(&req.headers),
            headers_size: -1,
            http_version: req.http_version,
            method: req.method,
            post_data: req.body.as_ref().map(PostData::new),
            query_string: NameValues(&req.query),
            url: &req.url,
        },
        response: match &rec.response {
            Some(res) => Response {
                body_size: res.body_size,
                content: Content::new(res.body.as_ref()),
                cookies: ResponseCookies(&res.cookies),
                headers: NameValues(&res.headers),
                headers_size: -1,
                http_version: res.http_version,
                redirect_url: res
                    .headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("location"))
                    .map_or("", |(_, v)| v.as_ref()),
                status: res.status,
                status_text: res.status_text,
            },
            None => Response {
                body_size: -1,
                content: Content::new(None),
                cookies: ResponseCookies(&[]),
                headers: NameValues(&[]),
                headers_size: -1,
                http_version: req.http_version,
                redirect_url: "",
                status: 0,
                status_text: "",
            },
        },
        started_date_time: &rec.started,
        time: Ms(t.total),
        timings: Timings {
            connect: t.connect.map(Ms),
            receive: Ms(t.total.saturating_sub(first_byte)),
            send: Ms(Duration::ZERO),
            wait: Ms(first_byte.saturating_sub(connect)),
        },
    }
}

/// One HAR entry, borrowing from its record.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry<'r> {
    #[serde(rename = "_provproxy")]
    provproxy: Provproxy<'r>,
    cache: Cache,
    request: Request<'r>,
    response: Response<'r>,
    started_date_time: &'r Timestamp,
    time: Ms,
    timings: Timings,
}

/// HAR requires the object; we never know anything about caches.
#[derive(Debug, Serialize)]
struct Cache {}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Provproxy<'r> {
    actions: ActionsView<'r>,
    client: Option<&'r str>,
    client_addr: Option<&'r Addr>,
    error: Option<ErrorView<'r>>,
    id: u64,
    parent: Option<u64>,
    role: &'static str,
    route: Option<&'r str>,
    session: Option<&'r str>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Request<'r> {
    body_size: i64,
    cookies: RequestCookies<'r>,
    headers: NameValues<'r, &'r str, Cow<'r, str>>,
    headers_size: i64,
    http_version: &'static str,
    method: &'r str,
    #[serde(skip_serializing_if = "Option::is_none")]
    post_data: Option<PostData<'r>>,
    query_string: NameValues<'r, String, String>,
    url: &'r str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Response<'r> {
    body_size: i64,
    content: Content<'r>,
    cookies: ResponseCookies<'r>,
    headers: NameValues<'r, &'r str, Cow<'r, str>>,
    headers_size: i64,
    http_version: &'static str,
    #[serde(rename = "redirectURL")]
    redirect_url: &'r str,
    status: u16,
    status_text: &'static str,
}

/// A request body. HAR has no encoding for request bodies; `_encoding` says how to read `text`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PostData<'r> {
    #[serde(rename = "_encoding", skip_serializing_if = "Option::is_none")]
    encoding: Option<&'static str>,
    #[serde(rename = "_truncated", skip_serializing_if = "is_false")]
    truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    comment: Option<&'r str>,
    mime_type: &'r str,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<Str<'r>>,
}

impl<'r> PostData<'r> {
    fn new(body: &'r RedactedBody<'_>) -> Self {
        let (text, encoding, comment) = content_parts(&body.content);
        PostData {
            encoding,
            truncated: body.truncated,
            comment,
            mime_type: body.mime_type,
            text,
        }
    }
}

/// A response body.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Content<'r> {
    #[serde(rename = "_truncated", skip_serializing_if = "is_false")]
    truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    comment: Option<&'r str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    encoding: Option<&'static str>,
    mime_type: &'r str,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<Str<'r>>,
}

impl<'r> Content<'r> {
    fn new(body: Option<&'r RedactedBody<'_>>) -> Self {
        let Some(body) = body else {
            return Content {
                truncated: false,
                comment: None,
                encoding: None,
                mime_type: "x-unknown",
                size: 0,
                text: None,
            };
        };
        let (text, encoding, comment) = content_parts(&body.content);
        Content {
            truncated: body.truncated,
            comment,
            encoding,
            mime_type: body.mime_type,
            size: body.size,
            text,
        }
    }
}

/// The text, its encoding and the reason it was left out: whichever apply.
fn content_parts<'r>(
    content: &'r BodyContent<'_>,
) -> (Option<Str<'r>>, Option<&'static str>, Option<&'r str>) {
    match content {
        BodyContent::Text(text) => (Some(text.json()), None, None),
        BodyContent::Base64(b64) => (Some(Str::Plain(b64)), Some("base64"), None),
        BodyContent::Omitted(reason) => (None, None, Some(reason.as_ref())),
    }
}

fn is_false(value: &bool) -> bool {
    !value
}

#[derive(Debug, Serialize)]
struct Timings {
    /// -1 when not known, as HAR has it.
    #[serde(serialize_with = "ms_or_minus_one")]
    connect: Option<Ms>,
    receive: Ms,
    send: Ms,
    wait: Ms,
}

fn ms_or_minus_one<S: Serializer>(value: &Option<Ms>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(value) => value.serialize(serializer),
        None => serializer.serialize_f64(-1.0),
    }
}

/// A duration shown in milliseconds: as a float, and by [`Out::ms`] from its integers.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ms(pub(super) Duration);

impl Serialize for Ms {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(json_out::ms(self.0))
    }
}

/// `{"name": ..., "value": ...}`
#[derive(Debug, Serialize)]
struct NameValue<'r> {
    name: &'r str,
    value: &'r str,
}

/// Headers or query parameters as a HAR list of name-value objects.
#[derive(Debug)]
struct NameValues<'r, N, V>(&'r [(N, V)]);

impl<N: AsRef<str>, V: AsRef<str>> Serialize for NameValues<'_, N, V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|(name, value)| NameValue {
            name: name.as_ref(),
            value: value.as_ref(),
        }))
    }
}

/// Request cookies by name; the value shown is always [`REDACTED`].
#[derive(Debug)]
struct RequestCookies<'r>(&'r [&'r str]);

impl Serialize for RequestCookies<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|&name| NameValue {
            name,
            value: REDACTED,
        }))
    }
}

#[derive(Debug)]
struct ResponseCookies<'r>(&'r [SetCookie<'r>]);

impl Serialize for ResponseCookies<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|c| ResponseCookie {
            domain: c.domain,
            expires: c.expires,
            http_only: c.http_only,
            name: c.name,
            path: c.path,
            secure: c.secure,
            value: REDACTED,
        }))
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseCookie<'r> {
    #[serde(skip_serializing_if = "Option::is_none")]
    domain: Option<&'r str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires: Option<&'r str>,
    http_only: bool,
    name: &'r str,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<&'r str>,
    secure: bool,
    value: &'static str,
}

/// What the proxy did; shared with the JSON-lines writer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ActionsView<'r> {
    auth_injected: Option<&'static str>,
    authorization_normalised: Option<&'r str>,
    challenge_after: &'r [String],
    challenge_before: &'r [String],
    cookies_replayed: &'r [String],
    cookies_stored: &'r [String],
    cookies_withheld: &'r [String],
    headers_removed: &'r [String],
    location_rewritten: Option<&'r str>,
    relogin: bool,
    replayed: bool,
    session_opened: bool,
    token_fetched: bool,
    token_refused: bool,
    warnings: &'r [String],
}

impl<'r> ActionsView<'r> {
    pub(super) fn new(a: &'r Actions) -> Self {
        ActionsView {
            auth_injected: a.auth_injected,
            authorization_normalised: a.authorization_normalised.as_deref(),
            challenge_after: &a.challenge_after,
            challenge_before: &a.challenge_before,
            cookies_replayed: &a.cookies_replayed,
            cookies_stored: &a.cookies_stored,
            cookies_withheld: &a.cookies_withheld,
            headers_removed: &a.headers_removed,
            location_rewritten: a.location_rewritten.as_deref(),
            relogin: a.relogin,
            replayed: a.replayed,
            session_opened: a.session_opened,
            token_fetched: a.token_fetched,
            token_refused: a.token_refused,
            warnings: &a.warnings,
        }
    }
}

/// Why an exchange failed; shared with the JSON-lines writer.
#[derive(Debug, Serialize)]
pub(super) struct ErrorView<'r> {
    detail: &'r str,
    kind: &'r str,
    side: &'static str,
}

impl<'r> ErrorView<'r> {
    pub(super) fn new(e: &'r ErrorInfo) -> Self {
        ErrorView {
            detail: &e.detail,
            kind: &e.kind,
            side: e.side,
        }
    }
}

/// A record's JSON line, written just before its entry, and where the line put the values the
/// entry shows as they are.
#[derive(Clone, Copy)]
struct FromLine<'l> {
    line: &'l [u8],
    marks: &'l Marks,
}

impl Entry<'_> {
    /// Appends the entry to `out`: the bytes its derived `Serialize` gives, written directly.
    pub fn write(&self, out: &mut Vec<u8>, memo: &mut Memo) -> Result<(), json_out::Error> {
        self.write_with(out, memo, None)
    }

    /// [`Entry::write`] for a record whose JSON line `line` is, written by `Line::write` with
    /// `marks`: the strings, numbers and objects the two show alike (headers, URL, actions,
    /// ...) are copied from the line instead of being escaped and written a second time.
    pub fn write_from_line(
        &self,
        out: &mut Vec<u8>,
        memo: &mut Memo,
        line: &[u8],
        marks: &Marks,
    ) -> Result<(), json_out::Error> {
        self.write_with(out, memo, Some(FromLine { line, marks }))
    }

    fn write_with(
        &self,
        out: &mut Vec<u8>,
        memo: &mut Memo,
        from: Option<FromLine<'_>>,
    ) -> Result<(), json_out::Error> {
        let mut w = Out::new(out, memo);
        let p = &self.provproxy;
        w.raw(b"{\"_provproxy\":{\"actions\":");
        shared(&mut w, from, |m| &m.actions, |w| p.actions.write(w));
        w.raw(b",\"client\":");
        shared(&mut w, from, |m| &m.client, |w| w.opt_str(p.client));
        w.raw(b",\"clientAddr\":");
        shared(
            &mut w,
            from,
            |m| &m.client_addr,
            |w| match p.client_addr {
                Some(addr) => w.ascii(addr.as_bytes()),
                None => w.raw(b"null"),
            },
        );
        w.raw(b",\"error\":");
        shared(
            &mut w,
            from,
            |m| &m.error,
            |w| match &p.error {
                Some(error) => error.write(w),
                None => w.raw(b"null"),
            },
        );
        w.raw(b",\"id\":");
        shared(&mut w, from, |m| &m.id, |w| w.uint(p.id));
        w.raw(b",\"parent\":");
        shared(
            &mut w,
            from,
            |m| &m.parent,
            |w| match p.parent {
                Some(parent) => w.uint(parent),
                None => w.raw(b"null"),
            },
        );
        w.raw(b",\"role\":");
        shared(&mut w, from, |m| &m.role, |w| w.str(p.role));
        w.raw(b",\"route\":");
        shared(&mut w, from, |m| &m.route, |w| w.opt_str(p.route));
        w.raw(b",\"session\":");
        shared(&mut w, from, |m| &m.session, |w| w.opt_str(p.session));

        let req = &self.request;
        w.raw(b"},\"cache\":{},\"request\":{\"bodySize\":");
        w.int(req.body_size);
        w.raw(b",\"cookies\":");
        match from.filter(|f| f.marks.request_cookies.len() == req.cookies.0.len()) {
            Some(f) => w.list(&f.marks.request_cookies, |w, name| {
                request_cookie(w, |w| w.copy(&f.line[name.clone()]));
            }),
            None => w.list(req.cookies.0, |w, name| request_cookie(w, |w| w.str(name))),
        }
        w.raw(b",\"headers\":");
        name_values(
            &mut w,
            req.headers.0,
            from.map(|f| (f.line, &f.marks.request_headers[..])),
        );
        w.raw(b",\"headersSize\":");
        w.int(req.headers_size);
        w.raw(b",\"httpVersion\":");
        shared(
            &mut w,
            from,
            |m| &m.http_version,
            |w| w.str(req.http_version),
        );
        w.raw(b",\"method\":");
        shared(&mut w, from, |m| &m.method, |w| w.str(req.method));
        if let Some(post) = &req.post_data {
            w.raw(b",\"postData\":");
            post.write(&mut w);
        }
        w.raw(b",\"queryString\":");
        name_values(&mut w, req.query_string.0, None);
        w.raw(b",\"url\":");
        shared(&mut w, from, |m| &m.url, |w| w.str(req.url));

        let res = &self.response;
        w.raw(b"},\"response\":{\"bodySize\":");
        w.int(res.body_size);
        w.raw(b",\"content\":");
        res.content.write(&mut w);
        w.raw(b",\"cookies\":");
        response_cookies(&mut w, res.cookies.0);
        w.raw(b",\"headers\":");
        name_values(
            &mut w,
            res.headers.0,
            from.map(|f| (f.line, &f.marks.response_headers[..])),
        );
        w.raw(b",\"headersSize\":");
        w.int(res.headers_size);
        w.raw(b",\"httpVersion\":");
        w.str(res.http_version);
        w.raw(b",\"redirectURL\":");
        w.str(res.redirect_url);
        w.raw(b",\"status\":");
        w.uint(u64::from(res.status));
        w.raw(b",\"statusText\":");
        w.str(res.status_text);

        w.raw(b"},\"startedDateTime\":");
        shared(
            &mut w,
            from,
            |m| &m.started,
            |w| w.ascii(self.started_date_time.as_bytes()),
        );
        w.raw(b",\"time\":");
        w.ms(self.time.0)?;
        let t = &self.timings;
        w.raw(b",\"timings\":{\"connect\":");
        match t.connect {
            Some(connect) => w.ms(connect.0)?,
            None => w.raw(b"-1.0"),
        }
        w.raw(b",\"receive\":");
        w.ms(t.receive.0)?;
        w.raw(b",\"send\":");
        w.ms(t.send.0)?;
        w.raw(b",\"wait\":");
        w.ms(t.wait.0)?;
        w.raw(b"}}");
        Ok(())
    }
}

/// A value the JSON line shows alike: copied from the line when there is one, else written.
fn shared(
    w: &mut Out<'_>,
    from: Option<FromLine<'_>>,
    mark: impl FnOnce(&Marks) -> &Range<usize>,
    write: impl FnOnce(&mut Out<'_>),
) {
    match from {
        Some(f) => w.copy(&f.line[mark(f.marks).clone()]),
        None => write(w),
    }
}

fn request_cookie(w: &mut Out<'_>, name: impl FnOnce(&mut Out<'_>)) {
    w.raw(b"{\"name\":");
    name(w);
    w.raw(b",\"value\":\"");
    w.raw(REDACTED.as_bytes());
    w.raw(b"\"}");
}

/// Name-value objects; the names and values copied from `line` where it holds them escaped.
fn name_values<N: AsRef<str>, V: AsRef<str>>(
    w: &mut Out<'_>,
    items: &[(N, V)],
    line: Option<(&[u8], &[HeaderMarks])>,
) {
    match line.filter(|(_, marks)| marks.len() == items.len()) {
        Some((line, marks)) => w.list(marks, |w, [name, value]| {
            w.raw(b"{\"name\":");
            w.copy(&line[name.clone()]);
            w.raw(b",\"value\":");
            w.copy(&line[value.clone()]);
            w.raw(b"}");
        }),
        None => w.list(items, |w, (name, value)| {
            w.raw(b"{\"name\":");
            w.str(name.as_ref());
            w.raw(b",\"value\":");
            w.str(value.as_ref());
            w.raw(b"}");
        }),
    }
}

/// An optional key of a body's object before its `mimeType`: `"key":value,` when present.
fn leading(w: &mut Out<'_>, key: &[u8], value: Option<&str>) {
    if let Some(value) = value {
        w.raw(key);
        w.str(value);
        w.raw(b",");
    }
}

fn truncated(w: &mut Out<'_>, truncated: bool) {
    if truncated {
        w.raw(b"\"_truncated\":true,");
    }
}

/// A body's object ends with its text, when it has one.
fn text_and_close(w: &mut Out<'_>, text: Option<Str<'_>>) {
    if let Some(text) = text {
        w.raw(b",\"text\":");
        w.text(text);
    }
    w.raw(b"}");
}

fn response_cookies(w: &mut Out<'_>, cookies: &[SetCookie<'_>]) {
    w.list(cookies, |w, c| {
        w.raw(b"{");
        if let Some(domain) = c.domain {
            w.raw(b"\"domain\":");
            w.str(domain);
            w.raw(b",");
        }
        if let Some(expires) = c.expires {
            w.raw(b"\"expires\":");
            w.str(expires);
            w.raw(b",");
        }
        w.raw(b"\"httpOnly\":");
        w.bool(c.http_only);
        w.raw(b",\"name\":");
        w.str(c.name);
        if let Some(path) = c.path {
            w.raw(b",\"path\":");
            w.str(path);
        }
        w.raw(b",\"secure\":");
        w.bool(c.secure);
        w.raw(b",\"value\":\"");
        w.raw(REDACTED.as_bytes());
        w.raw(b"\"}");
    });
}

impl PostData<'_> {
    fn write(&self, w: &mut Out<'_>) {
        // Every key but `mimeType` is optional: a comma goes before each key after the first.
        w.raw(b"{");
        leading(w, b"\"_encoding\":", self.encoding);
        truncated(w, self.truncated);
        leading(w, b"\"comment\":", self.comment);
        w.raw(b"\"mimeType\":");
        w.str(self.mime_type);
        text_and_close(w, self.text);
    }
}

impl Content<'_> {
    fn write(&self, w: &mut Out<'_>) {
        w.raw(b"{");
        truncated(w, self.truncated);
        leading(w, b"\"comment\":", self.comment);
        leading(w, b"\"encoding\":", self.encoding);
        w.raw(b"\"mimeType\":");
        w.str(self.mime_type);
        w.raw(b",\"size\":");
        w.uint(self.size);
        text_and_close(w, self.text);
    }
}

impl ActionsView<'_> {
    /// The bytes of its derived `Serialize`, written directly; the JSON line's too.
    pub(super) fn write(&self, w: &mut Out<'_>) {
        w.raw(b"{\"authInjected\":");
        w.opt_str(self.auth_injected);
        w.raw(b",\"authorizationNormalised\":");
        w.opt_str(self.authorization_normalised);
        w.raw(b",\"challengeAfter\":");
        w.strings(self.challenge_after);
        w.raw(b",\"challengeBefore\":");
        w.strings(self.challenge_before);
        w.raw(b",\"cookiesReplayed\":");
        w.strings(self.cookies_replayed);
        w.raw(b",\"cookiesStored\":");
        w.strings(self.cookies_stored);
        w.raw(b",\"cookiesWithheld\":");
        w.strings(self.cookies_withheld);
        w.raw(b",\"headersRemoved\":");
        w.strings(self.headers_removed);
        w.raw(b",\"locationRewritten\":");
        w.opt_str(self.location_rewritten);
        w.raw(b",\"relogin\":");
        w.bool(self.relogin);
        w.raw(b",\"replayed\":");
        w.bool(self.replayed);
        w.raw(b",\"sessionOpened\":");
        w.bool(self.session_opened);
        w.raw(b",\"tokenFetched\":");
        w.bool(self.token_fetched);
        w.raw(b",\"tokenRefused\":");
        w.bool(self.token_refused);
        w.raw(b",\"warnings\":");
        w.strings(self.warnings);
        w.raw(b"}");
    }
}

impl ErrorView<'_> {
    /// The bytes of its derived `Serialize`, written directly; the JSON line's too.
    pub(super) fn write(&self, w: &mut Out<'_>) {
        w.raw(b"{\"detail\":");
        w.str(self.detail);
        w.raw(b",\"kind\":");
        w.str(self.kind);
        w.raw(b",\"side\":");
        w.str(self.side);
        w.raw(b"}");
    }
}
