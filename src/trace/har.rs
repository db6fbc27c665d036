//! HAR 1.2: one entry per redacted record, provproxy's own data under `_provproxy`.
//!
//! The file is a complete HAR document after every record: it is created as an empty log whose
//! last bytes are [`TAIL`], and each entry overwrites that tail with `,entry` followed by the
//! tail again (see [`super::file::TraceFile`]).
//!
//! An entry is serialised straight from the record through the borrowing views below, with no
//! JSON tree in between. Their fields are declared in sorted key order, which is the order our
//! HAR files have always had.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use serde::{Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::record::{Actions, ErrorInfo};
use super::redact::{BodyContent, RedactedBody, RedactedRecord, SetCookie, REDACTED};

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
            client_addr: rec.client_addr.map(Addr),
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
        started_date_time: Timestamp(rec.started),
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
    started_date_time: Timestamp,
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
    client_addr: Option<Addr>,
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
    text: Option<&'r str>,
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
    text: Option<&'r str>,
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
) -> (Option<&'r str>, Option<&'static str>, Option<&'r str>) {
    match content {
        BodyContent::Text(text) => (Some(text.as_ref()), None, None),
        BodyContent::Base64(b64) => (Some(b64.as_str()), Some("base64"), None),
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
    relogin: bool,
    replayed: bool,
    session_opened: bool,
    token_fetched: bool,
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
            relogin: a.relogin,
            replayed: a.replayed,
            session_opened: a.session_opened,
            token_fetched: a.token_fetched,
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

/// RFC 3339 in UTC, with as many fraction digits as the time needs.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timestamp(pub(super) SystemTime);

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match rfc3339(self.0) {
            Some(text) => serializer.serialize_str(text.as_str()),
            None => serializer.serialize_str(
                &before_1970(self.0).unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned()),
            ),
        }
    }
}

/// `t` as the `time` crate writes it in RFC 3339 (`2023-11-14T22:13:20.1234Z`: UTC, trailing
/// zeros of the fraction cut), from 1970 to 9999. Done here on the stack because it runs twice
/// for every record, and the general formatter costs ten times as much.
fn rfc3339(t: SystemTime) -> Option<Ascii<30>> {
    let since = t.duration_since(SystemTime::UNIX_EPOCH).ok()?;
    let secs = since.as_secs();
    let (days, of_day) = (secs / 86_400, secs % 86_400);
    // Days to a civil date, counting in 400-year eras from 0000-03-01 (Howard Hinnant's
    // `civil_from_days`), so that leap days fall at the end of a year.
    let z = days + 719_468;
    let (era, day_of_era) = (z / 146_097, z % 146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    if year > 9999 {
        return None;
    }
    let mut text = Ascii::default();
    text.digits(year, 4);
    text.push(b'-');
    text.digits(month, 2);
    text.push(b'-');
    text.digits(day, 2);
    text.push(b'T');
    text.digits(of_day / 3600, 2);
    text.push(b':');
    text.digits(of_day / 60 % 60, 2);
    text.push(b':');
    text.digits(of_day % 60, 2);
    let mut nanos = since.subsec_nanos();
    if nanos != 0 {
        let mut width = 9;
        while nanos % 10 == 0 {
            nanos /= 10;
            width -= 1;
        }
        text.push(b'.');
        text.digits(u64::from(nanos), width);
    }
    text.push(b'Z');
    Some(text)
}

/// A clock gone wrong, through the general formatter; `None` past its range (and past 9999,
/// which RFC 3339 cannot write), where `OffsetDateTime::from` would panic.
fn before_1970(t: SystemTime) -> Option<String> {
    let back = SystemTime::UNIX_EPOCH.duration_since(t).ok()?;
    let back = time::Duration::try_from(back).ok()?;
    OffsetDateTime::UNIX_EPOCH
        .checked_sub(back)?
        .format(&Rfc3339)
        .ok()
}

/// A socket address as its `Display` form: IPv4 written digit by digit, IPv6 (rare in a
/// trace) through `Display`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Addr(pub(super) SocketAddr);

impl Serialize for Addr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let SocketAddr::V4(v4) = self.0 else {
            return serializer.collect_str(&self.0);
        };
        let mut text = Ascii::<21>::default();
        for (i, octet) in v4.ip().octets().into_iter().enumerate() {
            if i > 0 {
                text.push(b'.');
            }
            text.number(u64::from(octet));
        }
        text.push(b':');
        text.number(u64::from(v4.port()));
        serializer.serialize_str(text.as_str())
    }
}

/// A short ASCII text on the stack; `N` is chosen to fit the longest text written.
#[derive(Debug)]
struct Ascii<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> Default for Ascii<N> {
    fn default() -> Self {
        Ascii {
            bytes: [0; N],
            len: 0,
        }
    }
}

impl<const N: usize> Ascii<N> {
    fn push(&mut self, byte: u8) {
        if let Some(slot) = self.bytes.get_mut(self.len) {
            *slot = byte;
            self.len += 1;
        }
    }

    /// `n` in exactly `width` digits: zero-padded, or its last `width` digits.
    fn digits(&mut self, mut n: u64, width: usize) {
        let end = (self.len + width).min(N);
        for slot in self.bytes[self.len..end].iter_mut().rev() {
            // The remainder is below 10.
            *slot = b'0' + (n % 10) as u8;
            n /= 10;
        }
        self.len = end;
    }

    fn number(&mut self, n: u64) {
        let width = n.checked_ilog10().map_or(1, |log| log as usize + 1);
        self.digits(n, width);
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddrV4};

    use super::*;

    fn json(value: &impl Serialize) -> String {
        serde_json::to_string(value).unwrap()
    }

    /// What the `time` crate writes; past its range, where `OffsetDateTime::from` would panic,
    /// the fallback.
    fn time_crate(t: SystemTime) -> String {
        let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap();
        let text = time::Duration::try_from(since)
            .ok()
            .and_then(|d| OffsetDateTime::UNIX_EPOCH.checked_add(d))
            .and_then(|t| t.format(&Rfc3339).ok())
            .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned());
        json(&text)
    }

    #[test]
    fn timestamps_are_written_as_the_time_crate_writes_them() {
        let mut state = 0x853c_49e6_748f_ea9bu64;
        let mut random = move |below: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % below
        };
        let last_second = 253_402_300_799; // 9999-12-31T23:59:59Z
        let mut times: Vec<Duration> = [
            0,
            951_782_400,   // 2000-02-29
            4_107_542_400, // 2100-03-01
            4_107_455_999, // 2100-02-28T23:59:59
            last_second,
            last_second + 1,
        ]
        .iter()
        .flat_map(|&s| [0, 1, 10, 999_999_999, 500_000_000].map(|n| Duration::new(s, n)))
        .collect();
        for _ in 0..20_000 {
            let nanos = match random(4) {
                0 => 0,
                1 => random(1000) as u32 * 1_000_000,
                _ => random(1_000_000_000) as u32,
            };
            times.push(Duration::new(random(last_second + 2), nanos));
        }
        for since in times {
            let t = SystemTime::UNIX_EPOCH + since;
            assert_eq!(json(&Timestamp(t)), time_crate(t), "{since:?}");
        }
        // Past what `time` can hold, where it would panic: the fallback.
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::MAX / 4);
        assert_eq!(json(&Timestamp(far)), r#""1970-01-01T00:00:00Z""#);
        let before = SystemTime::UNIX_EPOCH - Duration::new(86_401, 5);
        assert_eq!(
            json(&Timestamp(before)),
            r#""1969-12-30T23:59:58.999999995Z""#
        );
    }

    #[test]
    fn socket_addresses_are_written_as_display_writes_them() {
        let v4 = [
            ([0, 0, 0, 0], 0),
            ([127, 0, 0, 1], 40000),
            ([255, 255, 255, 255], 65535),
            ([10, 9, 100, 1], 9),
        ];
        for (ip, port) in v4 {
            let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port));
            assert_eq!(json(&Addr(addr)), json(&addr.to_string()));
        }
        let v6: SocketAddr = "[2001:db8::1%3]:443"
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1], 443)));
        assert_eq!(json(&Addr(v6)), json(&v6.to_string()));
    }
}
