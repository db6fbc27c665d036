//! A HAR made from a JSON-lines trace (`provproxy har FILE.jsonl`): a trace kept as JSON lines
//! only spares the writer a second rendering of every record, and its HAR is made when someone
//! needs one. Each line is read back into the redacted record it was rendered from and written
//! by the live HAR writer, so an entry is the one a live HAR would hold; only the response's
//! HTTP version, which a line does not keep, is taken to be the request's.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;
use serde::Deserialize;

use super::har;
use super::json_out::Memo;
use super::record::{Actions, ErrorInfo, Role, Timings};
use super::redact::{
    parse_set_cookie, query_pairs, BodyContent, BodyText, RedactedBody, RedactedRecord,
    RedactedRequest, RedactedResponse,
};
use super::text::{Addr, Timestamp};

/// Why a JSON-lines trace could not be made into a HAR.
#[derive(Debug, thiserror::Error)]
pub enum FromLinesError {
    #[error("line {line} is not a provproxy trace record: {source}")]
    Line {
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("line {line}: {what}")]
    Value { line: usize, what: String },
}

/// The HAR document, and what went into it.
#[derive(Debug)]
pub struct FromLines {
    pub har: Vec<u8>,
    pub entries: usize,
    /// The last line was cut short (a crash while it was written) and was left out.
    pub torn_last_line: bool,
}

/// The HAR of every record in `text`, in order. Empty lines are skipped; a last line that is
/// not JSON is left out (and said so), any other line that is not a record is an error.
pub fn har(text: &str) -> Result<FromLines, FromLinesError> {
    let mut out = har::HEAD.as_bytes().to_vec();
    let mut memo = Memo::default();
    let mut entries = 0;
    let mut torn_last_line = false;
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .collect();
    for (index, &(number, line)) in lines.iter().enumerate() {
        let number = number + 1;
        let parsed: Line = match serde_json::from_str(line) {
            Ok(parsed) => parsed,
            Err(e) if index + 1 == lines.len() && e.is_eof() => {
                torn_last_line = true;
                break;
            }
            Err(source) => {
                return Err(FromLinesError::Line {
                    line: number,
                    source,
                })
            }
        };
        let owned = Owned::new(&parsed, number)?;
        let record = owned.record(&parsed);
        if entries > 0 {
            out.extend_from_slice(har::SEPARATOR.as_bytes());
        }
        memo.clear();
        har::entry(&record)
            .write(&mut out, &mut memo)
            .map_err(|e| FromLinesError::Value {
                line: number,
                what: e.to_string(),
            })?;
        entries += 1;
    }
    out.extend_from_slice(har::TAIL.as_bytes());
    Ok(FromLines {
        har: out,
        entries,
        torn_last_line,
    })
}

/// One JSON line as [`super::jsonl::record`] writes it.
#[derive(Debug, Deserialize)]
struct Line {
    actions: LineActions,
    client: Option<String>,
    client_addr: Option<String>,
    connect_ms: Option<f64>,
    error: Option<LineError>,
    first_byte_ms: Option<f64>,
    http_version: String,
    id: u64,
    method: String,
    parent: Option<u64>,
    request_body: Option<LineBody>,
    request_cookies: Vec<String>,
    request_headers: Vec<(String, String)>,
    response_body: Option<LineBody>,
    // `response_cookies` holds their names only: the entry's cookies come from the
    // `Set-Cookie` headers, whose attributes the redaction keeps.
    response_headers: Option<Vec<(String, String)>>,
    role: String,
    route: Option<String>,
    session: Option<String>,
    started: String,
    status: u16,
    total_ms: f64,
    url: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LineActions {
    auth_injected: Option<String>,
    authorization_normalised: Option<String>,
    challenge_after: Vec<String>,
    challenge_before: Vec<String>,
    cookies_replayed: Vec<String>,
    cookies_stored: Vec<String>,
    cookies_withheld: Vec<String>,
    headers_removed: Vec<String>,
    location_rewritten: Option<String>,
    relogin: bool,
    replayed: bool,
    session_opened: bool,
    token_fetched: bool,
    token_refused: bool,
    warnings: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct LineError {
    detail: String,
    kind: String,
    side: String,
}

#[derive(Debug, Deserialize)]
struct LineBody {
    base64: Option<String>,
    mime_type: String,
    omitted: Option<String>,
    size: u64,
    text: Option<String>,
    truncated: bool,
}

/// What a record holds by value rather than borrowed from the line.
struct Owned {
    role: Role,
    started: Timestamp,
    client_addr: Option<Addr>,
    http_version: &'static str,
    actions: Actions,
    error: Option<ErrorInfo>,
    timings: Timings,
}

impl Owned {
    fn new(line: &Line, number: usize) -> Result<Owned, FromLinesError> {
        let invalid = |what: String| FromLinesError::Value { line: number, what };
        let role = match line.role.as_str() {
            "client" => Role::Client,
            "login" => Role::Login,
            "replay" => Role::Replay,
            "token" => Role::TokenFetch,
            "token_fetch" => Role::SessionTokenFetch,
            other => return Err(invalid(format!("unknown role {other:?}"))),
        };
        let started = Timestamp::from_text(&line.started)
            .ok_or_else(|| invalid(format!("{:?} is not a timestamp", line.started)))?;
        let client_addr = match &line.client_addr {
            Some(text) => {
                Some(Addr::new(text.parse::<SocketAddr>().map_err(|_| {
                    invalid(format!("{text:?} is not a client address"))
                })?))
            }
            None => None,
        };
        let error = match &line.error {
            Some(e) => Some(ErrorInfo {
                kind: e.kind.clone(),
                side: known(&["client", "upstream", "proxy"], &e.side)
                    .ok_or_else(|| invalid(format!("unknown error side {:?}", e.side)))?,
                detail: e.detail.clone(),
            }),
            None => None,
        };
        let a = &line.actions;
        let auth_injected = match &a.auth_injected {
            Some(kind) => Some(
                known(&["none", "basic", "bearer", "header", "oauth2"], kind)
                    .ok_or_else(|| invalid(format!("unknown auth kind {kind:?}")))?,
            ),
            None => None,
        };
        Ok(Owned {
            role,
            started,
            client_addr,
            http_version: known(
                &["HTTP/0.9", "HTTP/1.0", "HTTP/1.1", "HTTP/2.0", "HTTP/3.0"],
                &line.http_version,
            )
            .ok_or_else(|| invalid(format!("unknown HTTP version {:?}", line.http_version)))?,
            actions: Actions {
                auth_injected,
                cookies_replayed: a.cookies_replayed.as_slice().into(),
                cookies_stored: a.cookies_stored.clone(),
                session_opened: a.session_opened,
                relogin: a.relogin,
                replayed: a.replayed,
                challenge_before: a.challenge_before.clone(),
                challenge_after: a.challenge_after.clone(),
                authorization_normalised: a.authorization_normalised.clone(),
                token_fetched: a.token_fetched,
                token_refused: a.token_refused,
                cookies_withheld: a.cookies_withheld.clone(),
                headers_removed: a.headers_removed.clone(),
                location_rewritten: a.location_rewritten.clone(),
                warnings: a.warnings.clone(),
            },
            error,
            timings: Timings {
                connect: line.connect_ms.map(duration),
                first_byte: line.first_byte_ms.map(duration),
                total: duration(line.total_ms),
            },
        })
    }

    fn record<'a>(&'a self, line: &'a Line) -> RedactedRecord<'a> {
        let request_headers = pairs(&line.request_headers);
        let request_body = line.request_body.as_ref().map(body);
        let response = line.response_headers.as_ref().map(|headers| {
            let headers = pairs(headers);
            let body = line.response_body.as_ref().map(body);
            RedactedResponse {
                status: line.status,
                status_text: StatusCode::from_u16(line.status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or(""),
                http_version: self.http_version,
                cookies: headers
                    .iter()
                    .filter(|(name, _)| name.eq_ignore_ascii_case("set-cookie"))
                    .map(|(_, value)| parse_set_cookie(value))
                    .collect(),
                body_size: body_size(body.as_ref(), &headers),
                body,
                headers: headers
                    .into_iter()
                    .map(|(name, value)| (name, Cow::Borrowed(value)))
                    .collect(),
            }
        });
        RedactedRecord {
            id: line.id,
            parent: line.parent,
            role: self.role,
            started: self.started.clone(),
            timings: self.timings.clone(),
            client_addr: self.client_addr.clone(),
            client_name: line.client.as_deref(),
            route: line.route.as_deref(),
            session_key: line.session.as_deref(),
            request: RedactedRequest {
                method: &line.method,
                url: Cow::Borrowed(&line.url),
                http_version: self.http_version,
                cookies: line.request_cookies.iter().map(String::as_str).collect(),
                query: query_pairs(&line.url),
                body_size: body_size(request_body.as_ref(), &request_headers),
                body: request_body,
                headers: request_headers
                    .into_iter()
                    .map(|(name, value)| (name, Cow::Borrowed(value)))
                    .collect(),
            },
            response,
            actions: Cow::Borrowed(&self.actions),
            error: self.error.as_ref(),
        }
    }
}

fn known(names: &[&'static str], name: &str) -> Option<&'static str> {
    names.iter().copied().find(|known| *known == name)
}

fn duration(ms: f64) -> Duration {
    Duration::try_from_secs_f64(ms / 1000.0).unwrap_or_default()
}

fn pairs(list: &[(String, String)]) -> Vec<(&str, &str)> {
    list.iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect()
}

fn body(line: &LineBody) -> RedactedBody<'_> {
    let content = match (&line.text, &line.base64, &line.omitted) {
        (_, Some(b64), _) => BodyContent::Base64(b64.clone()),
        (Some(text), None, _) => BodyContent::Text(BodyText::Plain(Cow::Borrowed(text))),
        (None, None, why) => BodyContent::Omitted(Cow::Owned(why.clone().unwrap_or_default())),
    };
    RedactedBody {
        mime_type: &line.mime_type,
        size: line.size,
        truncated: line.truncated,
        content,
    }
}

/// As the live record counts it: the captured body's size, or else the `Content-Length`.
fn body_size(body: Option<&RedactedBody<'_>>, headers: &[(&str, &str)]) -> i64 {
    if let Some(body) = body {
        return i64::try_from(body.size).unwrap_or(i64::MAX);
    }
    headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .unwrap_or(-1)
}
