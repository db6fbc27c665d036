//! The console: a page on the admin listener (`/ui/`) that shows exchanges live, what the proxy
//! did to each, why one failed (`diagnose`), and how two calls differ (`diagnose::compare`).
//!
//! Everything it shows comes from the trace module's redacted records (the ring buffer and the
//! record feed), so it can never show more than a trace file would. Its assets are built into
//! the binary and served under a strict Content-Security-Policy: no inline script or style, no
//! other origin.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use http_body::Frame;
use http_body_util::StreamBody;
use serde_json::{json, Value};

use crate::body::{self, full, ProxyBody};
use crate::diagnose::compare::{self, Pick};
use crate::trace::redact::REDACTED;
use crate::trace::Tracer;

use super::access::COOKIE;

const INDEX: &str = include_str!("ui/index.html");
const SCRIPT: &str = include_str!("ui/console.js");
const STYLE: &str = include_str!("ui/console.css");

/// Scripts, styles and connections from the admin listener itself only; no inline code, no
/// frames, no plugins.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; \
                   form-action 'self'";

/// Records one live stream may have waiting; a browser further behind loses records and is sent
/// a `lagging` event saying how many.
const STREAM_QUEUE: usize = 256;

/// A comment line this often keeps proxies from closing an idle stream and finds a browser that
/// went away.
const HEARTBEAT: Duration = Duration::from_secs(15);

/// Exchanges a list or an export returns unless `limit` says otherwise.
const DEFAULT_LIMIT: usize = 200;

/// The console's assets, by their name under `/ui/`.
pub fn asset(name: &str) -> Option<Response<ProxyBody>> {
    let (content_type, text) = match name {
        "" | "index.html" => ("text/html; charset=utf-8", INDEX),
        "console.js" => ("text/javascript; charset=utf-8", SCRIPT),
        "console.css" => ("text/css; charset=utf-8", STYLE),
        _ => return None,
    };
    Some(respond(StatusCode::OK, content_type, text))
}

/// `POST /ui/login`: the access rules have checked the bearer token already; this keeps it in
/// an HttpOnly, SameSite=Strict cookie so that the page (and its event stream, which cannot
/// send headers) need not hold it.
pub fn login(headers: &HeaderMap) -> Response<ProxyBody> {
    let mut response = respond(StatusCode::NO_CONTENT, "text/plain", "");
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    if let Some(token) = token {
        let cookie = format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/");
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().insert(header::SET_COOKIE, value);
        }
    }
    response
}

/// `GET /api/feed`: the record feed as Server-Sent Events, one `data:` line per record.
pub fn feed(tracer: &Tracer) -> Response<ProxyBody> {
    let subscription = tracer.subscribe(STREAM_QUEUE);
    let start = tokio::time::Instant::now() + HEARTBEAT;
    let beat = tokio::time::interval_at(start, HEARTBEAT);
    let state = (subscription, 0_u64, beat, true);
    let events = futures_util::stream::unfold(
        state,
        |(mut feed, mut reported, mut beat, first)| async move {
            let event = if first {
                b"retry: 2000\n: provproxy record feed\n\n".to_vec()
            } else {
                tokio::select! {
                    record = feed.next() => {
                        let record = record?;
                        let mut event = Vec::with_capacity(record.line.len() + 32);
                        let dropped = feed.dropped();
                        if dropped > reported {
                            event.extend_from_slice(
                                format!("event: lagging\ndata: {{\"dropped\":{dropped}}}\n\n")
                                    .as_bytes(),
                            );
                            reported = dropped;
                        }
                        event.extend_from_slice(b"data: ");
                        event.extend_from_slice(&record.line);
                        event.extend_from_slice(b"\n\n");
                        event
                    }
                    _ = beat.tick() => b": keep-alive\n\n".to_vec(),
                }
            };
            let frame = Ok::<_, Infallible>(Frame::data(Bytes::from(event)));
            Some((frame, (feed, reported, beat, false)))
        },
    );
    let mut response = Response::new(body::stream(StreamBody::new(events)));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    secure(headers);
    response
}

/// Which exchanges a list or an export wants; from the query string, the same names the page
/// keeps in its URL.
#[derive(Debug, Default)]
pub struct Filter {
    route: Option<String>,
    /// 1..=5 for `1xx`..`5xx`; 0 for exchanges without a response.
    class: Option<u16>,
    method: Option<String>,
    session: Option<String>,
    /// Lower-case; matched against the URL and every header.
    text: Option<String>,
    ids: Option<Vec<u64>>,
    limit: usize,
}

impl Filter {
    pub fn parse(query: Option<&str>) -> Filter {
        let mut filter = Filter {
            limit: DEFAULT_LIMIT,
            ..Filter::default()
        };
        for (name, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let value = value.trim();
            if value.is_empty() {
                continue;
            }
            match name.as_ref() {
                "route" => filter.route = Some(value.to_owned()),
                "status" => {
                    filter.class = match value {
                        "error" | "none" => Some(0),
                        _ => value
                            .trim_end_matches(['x', 'X'])
                            .parse::<u16>()
                            .ok()
                            .map(|n| if n >= 100 { n / 100 } else { n }),
                    }
                }
                "method" => filter.method = Some(value.to_ascii_uppercase()),
                "session" => filter.session = Some(value.to_owned()),
                "q" => filter.text = Some(value.to_lowercase()),
                "ids" => {
                    filter.ids = Some(
                        value
                            .split(',')
                            .filter_map(|id| id.trim().parse().ok())
                            .collect(),
                    )
                }
                "limit" => filter.limit = value.parse().unwrap_or(DEFAULT_LIMIT),
                _ => {}
            }
        }
        filter
    }

    fn matches(&self, record: &Value) -> bool {
        let str_at = |key: &str| record[key].as_str().unwrap_or("");
        let status = record["status"].as_u64().unwrap_or(0);
        self.route.as_deref().is_none_or(|r| str_at("route") == r)
            && self
                .class
                .is_none_or(|class| status / 100 == u64::from(class))
            && self
                .method
                .as_deref()
                .is_none_or(|m| str_at("method").eq_ignore_ascii_case(m))
            && self
                .session
                .as_deref()
                .is_none_or(|s| str_at("session") == s)
            && self
                .ids
                .as_ref()
                .is_none_or(|ids| record["id"].as_u64().is_some_and(|id| ids.contains(&id)))
            && self.text.as_deref().is_none_or(|text| {
                let headers = ["request_headers", "response_headers"]
                    .iter()
                    .flat_map(|key| record[*key].as_array().into_iter().flatten())
                    .flat_map(|pair| pair.as_array().into_iter().flatten())
                    .filter_map(Value::as_str);
                std::iter::once(str_at("url"))
                    .chain(headers)
                    .any(|s| s.to_lowercase().contains(text))
            })
    }
}

/// The ring's records that pass the filter, newest first, parsed.
fn select(tracer: &Tracer, filter: &Filter) -> Vec<Value> {
    tracer
        .recent(None, None, usize::MAX)
        .iter()
        .filter_map(|line| serde_json::from_slice::<Value>(line).ok())
        .filter(|record| filter.matches(record))
        .take(filter.limit)
        .collect()
}

/// `GET /api/exchanges?route=&status=4xx&method=&session=&q=&ids=&limit=`.
pub fn exchanges(tracer: &Tracer, query: Option<&str>) -> Response<ProxyBody> {
    let records = select(tracer, &Filter::parse(query));
    json_response(StatusCode::OK, &Value::Array(records))
}

/// The ring's records, oldest first, as one JSON-lines text: what `diagnose` and `compare` read.
fn ring_as_trace(tracer: &Tracer) -> String {
    let mut lines = tracer.recent(None, None, usize::MAX);
    lines.reverse();
    let mut text = String::new();
    for line in lines {
        text.push_str(&String::from_utf8_lossy(&line));
        text.push('\n');
    }
    text
}

/// `GET /api/exchanges/{id}`: the record, the records linked to it (its parent, the logins and
/// replays it caused), and what `diagnose` says of it.
pub fn detail(tracer: &Tracer, id: u64) -> Response<ProxyBody> {
    let Some(line) = tracer.get(id) else {
        return not_found("no such exchange (it may have left the ring buffer)");
    };
    let Ok(record) = serde_json::from_slice::<Value>(&line) else {
        return not_found("the exchange's record cannot be read");
    };
    let parent = record["parent"].as_u64();
    let linked: Vec<Value> = select(
        tracer,
        &Filter {
            limit: usize::MAX,
            ..Filter::default()
        },
    )
    .into_iter()
    .filter(|other| {
        let other_id = other["id"].as_u64();
        let other_parent = other["parent"].as_u64();
        other_id != Some(id)
            && (other_parent == Some(id)
                || (parent.is_some() && (other_id == parent || other_parent == parent)))
    })
    .map(|other| {
        json!({
            "id": other["id"], "role": other["role"], "method": other["method"],
            "url": other["url"], "status": other["status"], "parent": other["parent"],
        })
    })
    .collect();
    let (finding, recovery) = match crate::diagnose::diagnose(&ring_as_trace(tracer)) {
        Ok(report) => (
            report
                .findings
                .into_iter()
                .rfind(|f| f.id == Some(id))
                .and_then(|f| serde_json::to_value(f).ok()),
            report
                .recovered
                .into_iter()
                .rfind(|r| r.id == Some(id))
                .and_then(|r| serde_json::to_value(r).ok()),
        ),
        Err(_) => (None, None),
    };
    json_response(
        StatusCode::OK,
        &json!({ "record": record, "linked": linked, "finding": finding, "recovery": recovery }),
    )
}

/// `GET /api/exchanges/{id}/curl`: the request as a `curl` command line; every redacted value
/// is a placeholder to fill in.
pub fn curl(tracer: &Tracer, id: u64) -> Response<ProxyBody> {
    let Some(record) = tracer
        .get(id)
        .and_then(|line| serde_json::from_slice::<Value>(&line).ok())
    else {
        return not_found("no such exchange (it may have left the ring buffer)");
    };
    respond(
        StatusCode::OK,
        "text/plain; charset=utf-8",
        curl_command(&record),
    )
}

fn curl_command(record: &Value) -> String {
    let placeholder = |text: &str, what: &str| text.replace(REDACTED, &format!("<{what}>"));
    let method = record["method"].as_str().unwrap_or("GET");
    let url = record["url"].as_str().unwrap_or("");
    let mut command = format!(
        "curl -X {} {}",
        shell_quote(method),
        shell_quote(&placeholder(url, "redacted"))
    );
    // curl writes these itself from the URL and the body.
    const OWN: &[&str] = &["host", "content-length", "connection", "transfer-encoding"];
    for pair in record["request_headers"].as_array().into_iter().flatten() {
        let (Some(name), Some(value)) = (pair[0].as_str(), pair[1].as_str()) else {
            continue;
        };
        if OWN.contains(&name.to_ascii_lowercase().as_str()) {
            continue;
        }
        let value = placeholder(value, &format!("secret: {name}"));
        command.push_str(&format!(
            " \\\n  -H {}",
            shell_quote(&format!("{name}: {value}"))
        ));
    }
    let body = &record["request_body"];
    if let Some(text) = body["text"].as_str() {
        command.push_str(&format!(
            " \\\n  --data-binary {}",
            shell_quote(&placeholder(text, "secret"))
        ));
    } else if body.is_object() {
        command.push_str(" \\\n  --data-binary @body  # the body was not recorded as text");
    }
    command.push('\n');
    command
}

/// Single quotes, with each `'` closed, escaped and reopened.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// `GET /api/export.har?…`: the filtered (or `ids=`-selected) exchanges as a HAR 1.2 file,
/// oldest first, with provproxy's own data under `_provproxy` as in its trace files.
pub fn export_har(tracer: &Tracer, query: Option<&str>) -> Response<ProxyBody> {
    let mut records = select(tracer, &Filter::parse(query));
    records.reverse();
    let entries: Vec<Value> = records.iter().map(har_entry).collect();
    let har = json!({
        "log": {
            "version": "1.2",
            "creator": { "name": "provproxy", "version": env!("CARGO_PKG_VERSION") },
            "pages": [],
            "entries": entries,
        }
    });
    let mut response = json_response(StatusCode::OK, &har);
    response.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"provproxy-console.har\""),
    );
    response
}

fn har_entry(record: &Value) -> Value {
    let pairs = |key: &str| -> Vec<Value> {
        record[key]
            .as_array()
            .into_iter()
            .flatten()
            .map(|pair| json!({ "name": pair[0].as_str().unwrap_or(""), "value": pair[1].as_str().unwrap_or("") }))
            .collect()
    };
    let cookies = |key: &str| -> Vec<Value> {
        record[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(|name| json!({ "name": name, "value": REDACTED }))
            .collect()
    };
    let url = record["url"].as_str().unwrap_or("");
    let query: Vec<Value> = url::Url::parse(url)
        .map(|parsed| {
            parsed
                .query_pairs()
                .map(|(name, value)| json!({ "name": name, "value": value }))
                .collect()
        })
        .unwrap_or_default();
    let status = record["status"].as_u64().unwrap_or(0);
    let total = record["total_ms"].as_f64().unwrap_or(0.0);
    let wait = record["first_byte_ms"].as_f64().unwrap_or(total);
    let version = record["http_version"].as_str().unwrap_or("HTTP/1.1");
    let location = record["response_headers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|pair| pair[0].as_str() == Some("location"))
        .and_then(|pair| pair[1].as_str())
        .unwrap_or("");
    let request_body = &record["request_body"];
    let mut request = json!({
        "method": record["method"].as_str().unwrap_or("GET"),
        "url": url,
        "httpVersion": version,
        "cookies": cookies("request_cookies"),
        "headers": pairs("request_headers"),
        "queryString": query,
        "headersSize": -1,
        "bodySize": request_body["size"].as_i64().unwrap_or(0),
    });
    if request_body.is_object() {
        request["postData"] = json!({
            "mimeType": request_body["mime_type"].as_str().unwrap_or(""),
            "params": [],
            "text": request_body["text"].as_str().unwrap_or(""),
        });
    }
    let response_body = &record["response_body"];
    let mut content = json!({
        "size": response_body["size"].as_i64().unwrap_or(0),
        "mimeType": response_body["mime_type"].as_str().unwrap_or(""),
    });
    if let Some(text) = response_body["text"].as_str() {
        content["text"] = Value::from(text);
    } else if let Some(base64) = response_body["base64"].as_str() {
        content["text"] = Value::from(base64);
        content["encoding"] = Value::from("base64");
    }
    let status_text = u16::try_from(status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    json!({
        "startedDateTime": record["started"],
        "time": total,
        "request": request,
        "response": {
            "status": status,
            "statusText": status_text,
            "httpVersion": version,
            "cookies": cookies("response_cookies"),
            "headers": pairs("response_headers"),
            "content": content,
            "redirectURL": location,
            "headersSize": -1,
            "bodySize": -1,
        },
        "cache": {},
        "timings": {
            "send": 0,
            "wait": wait,
            "receive": (total - wait).max(0.0),
        },
        "_provproxy": {
            "id": record["id"],
            "parent": record["parent"],
            "role": record["role"],
            "route": record["route"],
            "session": record["session"],
            "actions": record["actions"],
            "error": record["error"],
        },
    })
}

/// `GET /api/compare?good=ID&bad=ID`: two exchanges of the ring.
pub fn compare_ids(tracer: &Tracer, query: Option<&str>) -> Response<ProxyBody> {
    let mut ids = (None, None);
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match name.as_ref() {
            "good" => ids.0 = value.parse::<u64>().ok(),
            "bad" => ids.1 = value.parse::<u64>().ok(),
            _ => {}
        }
    }
    let (Some(good), Some(bad)) = ids else {
        return bad_request("compare needs good=ID and bad=ID");
    };
    let ring = ring_as_trace(tracer);
    compared(compare::compare(
        &ring,
        Pick::Id(good),
        &ring,
        Pick::Id(bad),
    ))
}

/// `POST /api/compare`: `{"good": SIDE, "bad": SIDE}`, where a side is `{"id": N}` (an exchange
/// of the ring) or `{"har": "<HAR text>", "entry": N}` (a file the user imported in the page;
/// without `entry`, its first success for the good side and its first failure for the bad).
pub fn compare_posted(tracer: &Tracer, body: &[u8]) -> Response<ProxyBody> {
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return bad_request("the body must be JSON: {\"good\": {...}, \"bad\": {...}}");
    };
    let ring = ring_as_trace(tracer);
    let side = |side: &Value, default: Pick| -> Option<(String, Pick)> {
        if let Some(id) = side["id"].as_u64() {
            return Some((ring.clone(), Pick::Id(id)));
        }
        let har = side["har"].as_str()?;
        let pick = side["entry"]
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .map_or(default, Pick::Position);
        Some((har.to_owned(), pick))
    };
    let (Some((good, good_pick)), Some((bad, bad_pick))) = (
        side(&request["good"], Pick::FirstOk),
        side(&request["bad"], Pick::FirstFailed),
    ) else {
        return bad_request("each side is {\"id\": N} or {\"har\": \"...\", \"entry\": N}");
    };
    compared(compare::compare(&good, good_pick, &bad, bad_pick))
}

fn compared(result: Result<compare::Comparison, compare::CompareError>) -> Response<ProxyBody> {
    match result {
        Ok(comparison) => match serde_json::to_value(&comparison) {
            Ok(value) => json_response(StatusCode::OK, &value),
            Err(err) => bad_request(&err.to_string()),
        },
        Err(err) => bad_request(&err.to_string()),
    }
}

/// The console's headers on every answer of its own: no framing, no sniffing, no referrer,
/// and the policy that keeps any injected markup from running.
pub fn secure(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<ProxyBody> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    secure(headers);
    response
}

fn json_response(status: StatusCode, value: &Value) -> Response<ProxyBody> {
    respond(status, "application/json", value.to_string())
}

fn not_found(why: &str) -> Response<ProxyBody> {
    json_response(
        StatusCode::NOT_FOUND,
        &json!({ "error": "not_found", "detail": why }),
    )
}

fn bad_request(why: &str) -> Response<ProxyBody> {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({ "error": "bad_request", "detail": why }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Value {
        json!({
            "id": 4, "method": "PATCH", "url": "https://t.example/api/a/1?token=[REDACTED]&x=1",
            "status": 401, "route": "osmc", "session": "sha256:ab",
            "request_headers": [["host", "t.example"], ["authorization", "Basic [REDACTED]"],
                                ["x-note", "it's"]],
            "request_body": {"mime_type": "application/json", "size": 20, "truncated": false,
                             "text": "{\"password\":\"[REDACTED]\"}"},
            "response_headers": [["www-authenticate", "Token Basic realm=\"osmc\""]],
        })
    }

    #[test]
    fn filters_match_route_status_class_method_session_and_text_over_url_and_headers() {
        let r = record();
        for query in [
            "route=osmc",
            "status=4xx",
            "status=401",
            "method=patch",
            "session=sha256:ab",
            "q=TOKEN%20BASIC",
            "q=/api/a/1",
            "ids=3,4",
        ] {
            assert!(Filter::parse(Some(query)).matches(&r), "{query}");
        }
        for query in [
            "route=other",
            "status=2xx",
            "status=error",
            "method=GET",
            "q=nowhere",
            "ids=5",
        ] {
            assert!(!Filter::parse(Some(query)).matches(&r), "{query}");
        }
    }

    #[test]
    fn a_curl_command_leaves_every_redacted_value_as_a_placeholder_and_quotes_for_the_shell() {
        let command = curl_command(&record());
        assert!(!command.contains(REDACTED), "{command}");
        assert!(
            command.contains("'authorization: Basic <secret: authorization>'"),
            "{command}"
        );
        assert!(command.contains(r"'x-note: it'\''s'"), "{command}");
        assert!(command.contains("token=<redacted>"), "{command}");
        assert!(!command.contains("host:"), "{command}");
        assert!(
            command.contains("--data-binary '{\"password\":\"<secret>\"}'"),
            "{command}"
        );
    }

    fn exchange(id: u64) -> crate::trace::ExchangeRecord {
        use crate::trace::record::{Actions, RequestPart, Role, Timings};
        crate::trace::ExchangeRecord {
            id,
            parent: None,
            role: Role::Client,
            started: std::time::SystemTime::now(),
            timings: Timings::default(),
            client_addr: None,
            client_name: None,
            route: Some("r".into()),
            session_key: None,
            request: RequestPart {
                method: http::Method::GET,
                url: format!("http://t.example/{id}"),
                version: http::Version::HTTP_11,
                headers: HeaderMap::new(),
                body: None,
            },
            response: None,
            actions: Actions::default(),
            error: None,
        }
    }

    #[tokio::test]
    async fn a_browser_that_falls_behind_is_told_how_many_records_it_missed_and_the_stream_ends_at_shutdown(
    ) {
        use http_body_util::BodyExt;
        let (tracer, writer) =
            Tracer::start(&crate::config::TracePlan::in_memory()).expect("tracer");
        let mut body = feed(&tracer).into_body();
        // Nobody reads the stream while 300 records go by: its queue keeps the first 256.
        for id in 1..=300 {
            tracer.submit(exchange(id));
        }
        tracer.flush().await;
        let mut text = String::new();
        while text.matches("data: {\"actions").count() < 256 {
            let frame = body.frame().await.expect("open").expect("no error");
            text.push_str(&String::from_utf8_lossy(&frame.into_data().expect("data")));
        }
        let lagging = text
            .find("event: lagging\ndata: {\"dropped\":44}\n\n")
            .expect(&text);
        assert!(lagging < text.find("data: {\"actions").expect("a record"));
        assert!(text.contains("\"id\":256,") && !text.contains("\"id\":257,"));
        assert_eq!(tracer.feed_stats().dropped, 44);
        writer.end_streams();
        assert!(body.frame().await.is_none(), "the stream ends");
        writer.shutdown().await;
    }

    #[test]
    fn console_answers_carry_the_strict_policy() {
        let response = asset("").expect("index");
        let headers = response.headers();
        let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.starts_with("default-src 'self'"));
        assert!(!csp.contains("unsafe-inline"));
        assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(headers[header::REFERRER_POLICY], "no-referrer");
        assert!(asset("../Cargo.toml").is_none());
    }

    #[test]
    fn the_page_has_no_inline_script_or_style() {
        assert!(!INDEX.contains("<style"));
        assert!(!INDEX.contains("style="));
        for handler in [
            "onclick",
            "onload",
            "onsubmit",
            "onchange",
            "oninput",
            "javascript:",
        ] {
            assert!(!INDEX.contains(handler), "inline handler {handler}");
        }
        let scripts = INDEX.matches("<script").count();
        assert_eq!(scripts, INDEX.matches("<script src=").count());
    }
}
