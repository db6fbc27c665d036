//! The flat JSON shape of a redacted record: one line per record in the JSON-lines file, and the
//! shape the admin API serves from the ring buffer.
//!
//! Serialised straight from the record like the HAR entry, with fields in sorted key order, the
//! order the lines have always had. As with the HAR entry, the view's derived `Serialize` is the
//! definition of a line's bytes and [`Line::write`], which the writer uses, writes the same bytes
//! by hand; the golden-file test holds the two to the same bytes.

use std::borrow::Cow;
use std::ops::Range;

use serde::{Serialize, Serializer};

use super::har::{ActionsView, ErrorView, Ms};
use super::json_out::{self, Memo, Out, Str};
use super::redact::{BodyContent, RedactedBody, RedactedRecord, SetCookie};
use super::text::{Addr, Timestamp};

pub fn record<'r>(rec: &'r RedactedRecord<'_>) -> Line<'r> {
    let req = &rec.request;
    let res = rec.response.as_ref();
    let t = &rec.timings;
    Line {
        actions: ActionsView::new(&rec.actions),
        client: rec.client_name,
        client_addr: rec.client_addr.as_ref(),
        connect_ms: t.connect.map(Ms),
        error: rec.error.map(ErrorView::new),
        first_byte_ms: t.first_byte.map(Ms),
        http_version: req.http_version,
        id: rec.id,
        method: req.method,
        parent: rec.parent,
        request_body: req.body.as_ref().map(Body::new),
        request_cookies: &req.cookies,
        request_headers: Pairs(&req.headers),
        response_body: res.and_then(|r| r.body.as_ref()).map(Body::new),
        response_cookies: res.map(|r| CookieNames(&r.cookies)),
        response_headers: res.map(|r| Pairs(&r.headers)),
        role: rec.role.as_str(),
        route: rec.route,
        session: rec.session_key,
        started: &rec.started,
        status: res.map_or(0, |r| r.status),
        total_ms: Ms(t.total),
        url: &req.url,
    }
}

/// One record as a JSON line, borrowing from the record.
#[derive(Debug, Serialize)]
pub struct Line<'r> {
    actions: ActionsView<'r>,
    client: Option<&'r str>,
    client_addr: Option<&'r Addr>,
    connect_ms: Option<Ms>,
    error: Option<ErrorView<'r>>,
    first_byte_ms: Option<Ms>,
    http_version: &'static str,
    id: u64,
    method: &'r str,
    parent: Option<u64>,
    request_body: Option<Body<'r>>,
    request_cookies: &'r [&'r str],
    request_headers: Pairs<'r>,
    response_body: Option<Body<'r>>,
    response_cookies: Option<CookieNames<'r>>,
    response_headers: Option<Pairs<'r>>,
    role: &'static str,
    route: Option<&'r str>,
    session: Option<&'r str>,
    started: &'r Timestamp,
    status: u16,
    total_ms: Ms,
    url: &'r str,
}

#[derive(Debug, Serialize)]
struct Body<'r> {
    #[serde(skip_serializing_if = "Option::is_none")]
    base64: Option<&'r str>,
    mime_type: &'r str,
    #[serde(skip_serializing_if = "Option::is_none")]
    omitted: Option<&'r str>,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<Str<'r>>,
    truncated: bool,
}

impl<'r> Body<'r> {
    fn new(body: &'r RedactedBody<'_>) -> Self {
        let (mut base64, mut omitted, mut text) = (None, None, None);
        match &body.content {
            BodyContent::Text(t) => text = Some(t.json()),
            BodyContent::Base64(b) => base64 = Some(b.as_str()),
            BodyContent::Omitted(why) => omitted = Some(why.as_ref()),
        }
        Body {
            base64,
            mime_type: body.mime_type,
            omitted,
            size: body.size,
            text,
            truncated: body.truncated,
        }
    }
}

/// Headers as `[name, value]` pairs.
#[derive(Debug)]
struct Pairs<'r>(&'r [(&'r str, Cow<'r, str>)]);

impl Serialize for Pairs<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|(name, value)| [*name, value.as_ref()]))
    }
}

#[derive(Debug)]
struct CookieNames<'r>(&'r [SetCookie<'r>]);

impl Serialize for CookieNames<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|c| c.name))
    }
}

/// Where [`Line::write`] put the values that the record's HAR entry shows as they are (strings
/// escaped, objects, numbers): byte ranges of the line, for the entry to copy rather than write
/// again (see `har::Entry::write_from_line`). Kept from record to record, so that marking
/// allocates nothing.
#[derive(Debug, Default)]
pub struct Marks {
    pub(super) actions: Range<usize>,
    pub(super) client: Range<usize>,
    pub(super) client_addr: Range<usize>,
    pub(super) error: Range<usize>,
    pub(super) http_version: Range<usize>,
    pub(super) id: Range<usize>,
    pub(super) method: Range<usize>,
    pub(super) parent: Range<usize>,
    pub(super) role: Range<usize>,
    pub(super) route: Range<usize>,
    pub(super) session: Range<usize>,
    pub(super) started: Range<usize>,
    pub(super) url: Range<usize>,
    /// Each cookie's name.
    pub(super) request_cookies: Vec<Range<usize>>,
    pub(super) request_headers: Vec<HeaderMarks>,
    pub(super) response_headers: Vec<HeaderMarks>,
}

/// Where a header's name and value went.
pub type HeaderMarks = [Range<usize>; 2];

/// Writes a value with `write` and notes where it went.
fn marked(w: &mut Out<'_>, mark: &mut Range<usize>, write: impl FnOnce(&mut Out<'_>)) {
    let start = w.position();
    write(w);
    *mark = start..w.position();
}

impl Line<'_> {
    /// Appends the line to `out`: the bytes its derived `Serialize` gives, written directly,
    /// with `marks` noting where the values the HAR entry shares went.
    pub fn write(
        &self,
        out: &mut Vec<u8>,
        memo: &mut Memo,
        marks: &mut Marks,
    ) -> Result<(), json_out::Error> {
        let mut w = Out::new(out, memo);
        w.raw(b"{\"actions\":");
        marked(&mut w, &mut marks.actions, |w| self.actions.write(w));
        w.raw(b",\"client\":");
        marked(&mut w, &mut marks.client, |w| w.opt_str(self.client));
        w.raw(b",\"client_addr\":");
        marked(&mut w, &mut marks.client_addr, |w| match self.client_addr {
            Some(addr) => w.ascii(addr.as_bytes()),
            None => w.raw(b"null"),
        });
        w.raw(b",\"connect_ms\":");
        opt_ms(&mut w, self.connect_ms)?;
        w.raw(b",\"error\":");
        marked(&mut w, &mut marks.error, |w| match &self.error {
            Some(error) => error.write(w),
            None => w.raw(b"null"),
        });
        w.raw(b",\"first_byte_ms\":");
        opt_ms(&mut w, self.first_byte_ms)?;
        w.raw(b",\"http_version\":");
        marked(&mut w, &mut marks.http_version, |w| {
            w.str(self.http_version)
        });
        w.raw(b",\"id\":");
        marked(&mut w, &mut marks.id, |w| w.uint(self.id));
        w.raw(b",\"method\":");
        marked(&mut w, &mut marks.method, |w| w.str(self.method));
        w.raw(b",\"parent\":");
        marked(&mut w, &mut marks.parent, |w| match self.parent {
            Some(parent) => w.uint(parent),
            None => w.raw(b"null"),
        });
        w.raw(b",\"request_body\":");
        opt_body(&mut w, self.request_body.as_ref());
        w.raw(b",\"request_cookies\":");
        marks.request_cookies.clear();
        w.list(self.request_cookies, |w, name| {
            let start = w.position();
            w.str(name);
            marks.request_cookies.push(start..w.position());
        });
        w.raw(b",\"request_headers\":");
        pairs(&mut w, self.request_headers.0, &mut marks.request_headers);
        w.raw(b",\"response_body\":");
        opt_body(&mut w, self.response_body.as_ref());
        w.raw(b",\"response_cookies\":");
        match &self.response_cookies {
            Some(cookies) => w.list(cookies.0, |w, c| w.str(c.name)),
            None => w.raw(b"null"),
        }
        w.raw(b",\"response_headers\":");
        match &self.response_headers {
            Some(headers) => pairs(&mut w, headers.0, &mut marks.response_headers),
            None => {
                w.raw(b"null");
                marks.response_headers.clear();
            }
        }
        w.raw(b",\"role\":");
        marked(&mut w, &mut marks.role, |w| w.str(self.role));
        w.raw(b",\"route\":");
        marked(&mut w, &mut marks.route, |w| w.opt_str(self.route));
        w.raw(b",\"session\":");
        marked(&mut w, &mut marks.session, |w| w.opt_str(self.session));
        w.raw(b",\"started\":");
        marked(&mut w, &mut marks.started, |w| {
            w.ascii(self.started.as_bytes())
        });
        w.raw(b",\"status\":");
        w.uint(u64::from(self.status));
        w.raw(b",\"total_ms\":");
        w.ms(self.total_ms.0)?;
        w.raw(b",\"url\":");
        marked(&mut w, &mut marks.url, |w| w.str(self.url));
        w.raw(b"}");
        Ok(())
    }
}

fn opt_ms(w: &mut Out<'_>, value: Option<Ms>) -> Result<(), json_out::Error> {
    match value {
        Some(value) => w.ms(value.0),
        None => {
            w.raw(b"null");
            Ok(())
        }
    }
}

/// Headers as `[name, value]` pairs, noting where each name and value went.
fn pairs(w: &mut Out<'_>, headers: &[(&str, Cow<'_, str>)], marks: &mut Vec<HeaderMarks>) {
    marks.clear();
    w.list(headers, |w, (name, value)| {
        w.raw(b"[");
        let name_at = w.position();
        w.str(name);
        let value_at = w.position();
        w.raw(b",");
        w.str(value);
        let end = w.position();
        // The comma between the two is not part of either.
        marks.push([name_at..value_at, value_at + 1..end]);
        w.raw(b"]");
    });
}

fn opt_body(w: &mut Out<'_>, body: Option<&Body<'_>>) {
    let Some(body) = body else {
        w.raw(b"null");
        return;
    };
    w.raw(b"{");
    if let Some(base64) = body.base64 {
        w.raw(b"\"base64\":");
        w.text(Str::Plain(base64));
        w.raw(b",");
    }
    w.raw(b"\"mime_type\":");
    w.str(body.mime_type);
    if let Some(omitted) = body.omitted {
        w.raw(b",\"omitted\":");
        w.str(omitted);
    }
    w.raw(b",\"size\":");
    w.uint(body.size);
    if let Some(text) = body.text {
        w.raw(b",\"text\":");
        w.text(text);
    }
    w.raw(b",\"truncated\":");
    w.bool(body.truncated);
    w.raw(b"}");
}
