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
//! bytes; [`Entry::write`], which the writers use, writes the same bytes by hand for a quarter
//! less work (12.3k → 9.4k instructions for the load bench's entry): an entry's keys and
//! punctuation are known in advance, so each run of them goes out as one literal, and its
//! integers without a serializer. The golden-file test holds the two to the same bytes.

use std::borrow::Cow;
use std::time::Duration;

use serde::{Serialize, Serializer};

use super::json_out::{self, Memo, Str};
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
        time: ms(t.total),
        timings: Timings {
            connect: t.connect.map_or(-1.0, ms),
            receive: ms(t.total.saturating_sub(first_byte)),
            send: 0.0,
            wait: ms(first_byte.saturating_sub(connect)),
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
    time: f64,
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
    connect: f64,
    receive: f64,
    send: f64,
    wait: f64,
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

impl Entry<'_> {
    /// Appends the entry to `out`: the bytes its derived `Serialize` gives, written directly.
    pub fn write(&self, out: &mut Vec<u8>, memo: &mut Memo) -> Result<(), json_out::Error> {
        let mut w = Out { out, memo };
        let p = &self.provproxy;
        w.raw(b"{\"_provproxy\":{\"actions\":");
        p.actions.write(&mut w)?;
        w.raw(b",\"client\":");
        w.opt_str(p.client)?;
        w.raw(b",\"clientAddr\":");
        w.opt_str(p.client_addr.map(Addr::as_str))?;
        w.raw(b",\"error\":");
        match &p.error {
            Some(error) => w.value(error)?,
            None => w.raw(b"null"),
        }
        w.raw(b",\"id\":");
        w.uint(p.id);
        w.raw(b",\"parent\":");
        match p.parent {
            Some(parent) => w.uint(parent),
            None => w.raw(b"null"),
        }
        w.raw(b",\"role\":");
        w.str(p.role)?;
        w.raw(b",\"route\":");
        w.opt_str(p.route)?;
        w.raw(b",\"session\":");
        w.opt_str(p.session)?;

        let req = &self.request;
        w.raw(b"},\"cache\":{},\"request\":{\"bodySize\":");
        w.int(req.body_size);
        w.raw(b",\"cookies\":");
        w.request_cookies(req.cookies.0)?;
        w.raw(b",\"headers\":");
        w.name_values(req.headers.0)?;
        w.raw(b",\"headersSize\":");
        w.int(req.headers_size);
        w.raw(b",\"httpVersion\":");
        w.str(req.http_version)?;
        w.raw(b",\"method\":");
        w.str(req.method)?;
        if let Some(post) = &req.post_data {
            w.raw(b",\"postData\":");
            post.write(&mut w)?;
        }
        w.raw(b",\"queryString\":");
        w.name_values(req.query_string.0)?;
        w.raw(b",\"url\":");
        w.str(req.url)?;

        let res = &self.response;
        w.raw(b"},\"response\":{\"bodySize\":");
        w.int(res.body_size);
        w.raw(b",\"content\":");
        res.content.write(&mut w)?;
        w.raw(b",\"cookies\":");
        w.response_cookies(res.cookies.0)?;
        w.raw(b",\"headers\":");
        w.name_values(res.headers.0)?;
        w.raw(b",\"headersSize\":");
        w.int(res.headers_size);
        w.raw(b",\"httpVersion\":");
        w.str(res.http_version)?;
        w.raw(b",\"redirectURL\":");
        w.str(res.redirect_url)?;
        w.raw(b",\"status\":");
        w.uint(u64::from(res.status));
        w.raw(b",\"statusText\":");
        w.str(res.status_text)?;

        w.raw(b"},\"startedDateTime\":");
        w.str(self.started_date_time.as_str())?;
        w.raw(b",\"time\":");
        w.float(self.time)?;
        let t = &self.timings;
        w.raw(b",\"timings\":{\"connect\":");
        w.float(t.connect)?;
        w.raw(b",\"receive\":");
        w.float(t.receive)?;
        w.raw(b",\"send\":");
        w.float(t.send)?;
        w.raw(b",\"wait\":");
        w.float(t.wait)?;
        w.raw(b"}}");
        Ok(())
    }
}

/// Where [`Entry::write`] puts an entry. Strings and floats go through [`json_out`] (escaped,
/// bodies remembered in `memo`; floats as serde_json writes them), the rest directly.
struct Out<'a> {
    out: &'a mut Vec<u8>,
    memo: &'a mut Memo,
}

impl Out<'_> {
    fn raw(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    fn str(&mut self, s: &str) -> Result<(), json_out::Error> {
        json_out::write(self.out, s, self.memo)
    }

    fn opt_str(&mut self, s: Option<&str>) -> Result<(), json_out::Error> {
        match s {
            Some(s) => self.str(s),
            None => {
                self.raw(b"null");
                Ok(())
            }
        }
    }

    fn value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), json_out::Error> {
        json_out::write(self.out, value, self.memo)
    }

    fn float(&mut self, value: f64) -> Result<(), json_out::Error> {
        self.value(&value)
    }

    fn bool(&mut self, value: bool) {
        self.raw(if value { b"true" } else { b"false" });
    }

    fn uint(&mut self, mut n: u64) {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        loop {
            at -= 1;
            // The remainder is below 10.
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.raw(&digits[at..]);
    }

    fn int(&mut self, n: i64) {
        if n < 0 {
            self.raw(b"-");
        }
        self.uint(n.unsigned_abs());
    }

    /// `[` and `]` around the items, with commas between.
    fn list<T>(
        &mut self,
        items: &[T],
        mut item: impl FnMut(&mut Self, &T) -> Result<(), json_out::Error>,
    ) -> Result<(), json_out::Error> {
        self.raw(b"[");
        for (i, value) in items.iter().enumerate() {
            if i > 0 {
                self.raw(b",");
            }
            item(self, value)?;
        }
        self.raw(b"]");
        Ok(())
    }

    fn strings(&mut self, items: &[String]) -> Result<(), json_out::Error> {
        self.list(items, |w, s| w.str(s))
    }

    fn name_values<N: AsRef<str>, V: AsRef<str>>(
        &mut self,
        items: &[(N, V)],
    ) -> Result<(), json_out::Error> {
        self.list(items, |w, (name, value)| {
            w.raw(b"{\"name\":");
            w.str(name.as_ref())?;
            w.raw(b",\"value\":");
            w.str(value.as_ref())?;
            w.raw(b"}");
            Ok(())
        })
    }

    /// An optional key of a body's object before its `mimeType`: `"key":value,` when present.
    fn leading(&mut self, key: &[u8], value: Option<&str>) -> Result<(), json_out::Error> {
        if let Some(value) = value {
            self.raw(key);
            self.str(value)?;
            self.raw(b",");
        }
        Ok(())
    }

    fn truncated(&mut self, truncated: bool) {
        if truncated {
            self.raw(b"\"_truncated\":true,");
        }
    }

    /// A body's object ends with its text, when it has one.
    fn text_and_close(&mut self, text: Option<Str<'_>>) -> Result<(), json_out::Error> {
        if let Some(text) = text {
            self.raw(b",\"text\":");
            self.value(&text)?;
        }
        self.raw(b"}");
        Ok(())
    }

    fn request_cookies(&mut self, names: &[&str]) -> Result<(), json_out::Error> {
        self.list(names, |w, name| {
            w.raw(b"{\"name\":");
            w.str(name)?;
            w.raw(b",\"value\":");
            w.str(REDACTED)?;
            w.raw(b"}");
            Ok(())
        })
    }

    fn response_cookies(&mut self, cookies: &[SetCookie<'_>]) -> Result<(), json_out::Error> {
        self.list(cookies, |w, c| {
            w.raw(b"{");
            if let Some(domain) = c.domain {
                w.raw(b"\"domain\":");
                w.str(domain)?;
                w.raw(b",");
            }
            if let Some(expires) = c.expires {
                w.raw(b"\"expires\":");
                w.str(expires)?;
                w.raw(b",");
            }
            w.raw(b"\"httpOnly\":");
            w.bool(c.http_only);
            w.raw(b",\"name\":");
            w.str(c.name)?;
            if let Some(path) = c.path {
                w.raw(b",\"path\":");
                w.str(path)?;
            }
            w.raw(b",\"secure\":");
            w.bool(c.secure);
            w.raw(b",\"value\":");
            w.str(REDACTED)?;
            w.raw(b"}");
            Ok(())
        })
    }
}

impl PostData<'_> {
    fn write(&self, w: &mut Out<'_>) -> Result<(), json_out::Error> {
        // Every key but `mimeType` is optional: a comma goes before each key after the first.
        w.raw(b"{");
        w.leading(b"\"_encoding\":", self.encoding)?;
        w.truncated(self.truncated);
        w.leading(b"\"comment\":", self.comment)?;
        w.raw(b"\"mimeType\":");
        w.str(self.mime_type)?;
        w.text_and_close(self.text)
    }
}

impl Content<'_> {
    fn write(&self, w: &mut Out<'_>) -> Result<(), json_out::Error> {
        w.raw(b"{");
        w.truncated(self.truncated);
        w.leading(b"\"comment\":", self.comment)?;
        w.leading(b"\"encoding\":", self.encoding)?;
        w.raw(b"\"mimeType\":");
        w.str(self.mime_type)?;
        w.raw(b",\"size\":");
        w.uint(self.size);
        w.text_and_close(self.text)
    }
}

impl ActionsView<'_> {
    fn write(&self, w: &mut Out<'_>) -> Result<(), json_out::Error> {
        w.raw(b"{\"authInjected\":");
        w.opt_str(self.auth_injected)?;
        w.raw(b",\"authorizationNormalised\":");
        w.opt_str(self.authorization_normalised)?;
        w.raw(b",\"challengeAfter\":");
        w.strings(self.challenge_after)?;
        w.raw(b",\"challengeBefore\":");
        w.strings(self.challenge_before)?;
        w.raw(b",\"cookiesReplayed\":");
        w.strings(self.cookies_replayed)?;
        w.raw(b",\"cookiesStored\":");
        w.strings(self.cookies_stored)?;
        w.raw(b",\"cookiesWithheld\":");
        w.strings(self.cookies_withheld)?;
        w.raw(b",\"headersRemoved\":");
        w.strings(self.headers_removed)?;
        w.raw(b",\"locationRewritten\":");
        w.opt_str(self.location_rewritten)?;
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
        w.strings(self.warnings)?;
        w.raw(b"}");
        Ok(())
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
