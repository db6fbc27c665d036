//! The flat JSON shape of a redacted record: one line per record in the JSON-lines file, and the
//! shape the admin API serves from the ring buffer.
//!
//! Serialised straight from the record like the HAR entry, with fields in sorted key order, the
//! order the lines have always had.

use std::borrow::Cow;

use serde::{Serialize, Serializer};

use super::har::{ms, ActionsView, ErrorView};
use super::json_out::Str;
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
        connect_ms: t.connect.map(ms),
        error: rec.error.map(ErrorView::new),
        first_byte_ms: t.first_byte.map(ms),
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
        total_ms: ms(t.total),
        url: &req.url,
    }
}

/// One record as a JSON line, borrowing from the record.
#[derive(Debug, Serialize)]
pub struct Line<'r> {
    actions: ActionsView<'r>,
    client: Option<&'r str>,
    client_addr: Option<&'r Addr>,
    connect_ms: Option<f64>,
    error: Option<ErrorView<'r>>,
    first_byte_ms: Option<f64>,
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
    total_ms: f64,
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
