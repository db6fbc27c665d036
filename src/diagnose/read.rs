//! Reading a trace: a HAR (ours, a browser's, Fiddler's, Charles', mitmproxy's) or provproxy's
//! JSON lines, told apart by their content, into one list of exchanges.
//!
//! Foreign HARs miss optional fields and carry no `_provproxy` data, so every field is read
//! leniently.

use base64::Engine as _;
use serde_json::Value;

use crate::trace::redact::Redactor;

/// Why a file could not be read as a trace.
#[derive(Debug, thiserror::Error)]
pub enum DiagnoseError {
    #[error("the trace is empty")]
    Empty,
    #[error("the trace is neither a HAR nor JSON lines: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("the trace is not a HAR: it has no log.entries array")]
    NotHar,
    #[error("line {line} of the JSON lines is not JSON: {source}")]
    BadLine {
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("line {line} is not a provproxy trace record (no url, method or status)")]
    NotRecord { line: usize },
}

/// Which part of an exchange a record is; foreign HARs only have client exchanges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Client,
    Login,
    Replay,
    TokenFetch,
}

/// One recorded request and its response, as `diagnose` needs them.
pub(super) struct Entry {
    /// 1-based position in the file: the HAR entry, or the JSON line among the records.
    pub position: usize,
    /// provproxy's exchange id and the record it follows from, when the trace is ours.
    pub id: Option<u64>,
    pub parent: Option<u64>,
    pub role: Role,
    pub method: String,
    /// Redacted.
    pub url: String,
    pub host: String,
    /// 0 when no response arrived.
    pub status: u16,
    /// Lower-case names.
    pub request_headers: Vec<(String, String)>,
    pub response_headers: Vec<(String, String)>,
    pub cookies_sent: Vec<String>,
    pub cookies_set: Vec<String>,
    pub body: String,
    /// The request's body as recorded (redacted), for comparing two calls.
    pub request_body: String,
    /// A transport or proxy error: ours (`kind: detail`) or a browser's (`response._error`).
    pub error: Option<String>,
    /// Our error's stable kind and side, when the trace is ours.
    pub error_kind: Option<String>,
    pub error_side: Option<String>,
    /// The proxy found the session gone in this response and dropped it.
    pub relogin: bool,
    /// The target refused the token the proxy injected in this request.
    pub token_refused: bool,
}

impl Entry {
    pub fn request_header(&self, name: &str) -> Option<&str> {
        self.request_headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn challenges(&self) -> impl Iterator<Item = &str> {
        self.response_headers
            .iter()
            .filter(|(n, _)| n == "www-authenticate")
            .map(|(_, v)| v.as_str())
    }

    pub fn failed(&self) -> bool {
        self.status == 0 || self.status >= 400 || self.error.is_some()
    }
}

/// What was read, and what was said about the file while reading it.
pub(super) struct Trace {
    pub entries: Vec<Entry>,
    pub notes: Vec<String>,
}

/// Reads a HAR or JSON lines. A HAR is one JSON document with `log.entries`; JSON lines are one
/// record per line. A last line cut short by a crash is skipped with a note.
pub(super) fn read(text: &str) -> Result<Trace, DiagnoseError> {
    if text.trim().is_empty() {
        return Err(DiagnoseError::Empty);
    }
    let redactor = Redactor::with_default_fields();
    match serde_json::from_str::<Value>(text) {
        Ok(doc) if doc.get("log").is_some() => {
            let entries = doc["log"]["entries"]
                .as_array()
                .ok_or(DiagnoseError::NotHar)?;
            Ok(Trace {
                entries: entries
                    .iter()
                    .enumerate()
                    .map(|(i, e)| from_har(i + 1, e, &redactor))
                    .collect(),
                notes: Vec::new(),
            })
        }
        // One JSON line on its own is also a whole document.
        Ok(doc) if is_record(&doc) => Ok(Trace {
            entries: vec![from_line(1, &doc, &redactor)],
            notes: Vec::new(),
        }),
        Ok(_) => Err(DiagnoseError::NotHar),
        Err(whole) => json_lines(text, whole, &redactor),
    }
}

fn json_lines(
    text: &str,
    whole: serde_json::Error,
    redactor: &Redactor,
) -> Result<Trace, DiagnoseError> {
    let mut trace = Trace {
        entries: Vec::new(),
        notes: Vec::new(),
    };
    let lines: Vec<&str> = text.lines().collect();
    for (index, line) in lines.iter().enumerate() {
        let number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let value = match serde_json::from_str::<Value>(line) {
            Ok(value) => value,
            // Nothing read yet: this is no JSON-lines file, and the first error says why.
            Err(_) if trace.entries.is_empty() => return Err(DiagnoseError::NotJson(whole)),
            Err(_) if number == lines.len() && !text.ends_with('\n') => {
                trace.notes.push(format!(
                    "line {number} is cut short (the writer stopped midway) and was skipped"
                ));
                break;
            }
            Err(source) => {
                return Err(DiagnoseError::BadLine {
                    line: number,
                    source,
                })
            }
        };
        if !is_record(&value) {
            return Err(DiagnoseError::NotRecord { line: number });
        }
        let position = trace.entries.len() + 1;
        trace.entries.push(from_line(position, &value, redactor));
    }
    Ok(trace)
}

fn is_record(value: &Value) -> bool {
    value.is_object()
        && (value.get("url").is_some()
            || value.get("method").is_some()
            || value.get("status").is_some())
}

fn role(text: Option<&str>) -> Role {
    match text {
        Some("login") => Role::Login,
        Some("replay") => Role::Replay,
        // An OAuth token request or a session token fetch: the proxy's own request, never
        // what the client got.
        Some("token" | "token_fetch") => Role::TokenFetch,
        _ => Role::Client,
    }
}

fn from_har(position: usize, entry: &Value, redactor: &Redactor) -> Entry {
    let request = &entry["request"];
    let response = &entry["response"];
    let ours = &entry["_provproxy"];
    let url = str_at(request, "url");
    let request_headers = har_headers(&request["headers"]);
    let response_headers = har_headers(&response["headers"]);
    let mut cookies_sent = names(&request["cookies"]);
    cookies_sent.extend(cookie_header_names(&request_headers));
    let mut cookies_set = names(&response["cookies"]);
    cookies_set.extend(set_cookie_names(&response_headers));
    let browser_error = response["_error"].as_str().map(str::to_owned);
    let mut entry = Entry {
        position,
        id: ours["id"].as_u64(),
        parent: ours["parent"].as_u64(),
        role: role(ours["role"].as_str()),
        method: str_at(request, "method"),
        host: host(&url).to_owned(),
        url: redactor.url(&url).into_owned(),
        status: status(&response["status"]),
        request_headers,
        response_headers,
        cookies_sent,
        cookies_set,
        body: body_text(
            &response["content"]["text"],
            &response["content"]["encoding"],
        ),
        request_body: body_text(&request["postData"]["text"], &Value::Null),
        error: None,
        error_kind: None,
        error_side: None,
        relogin: ours["actions"]["relogin"].as_bool().unwrap_or(false),
        token_refused: ours["actions"]["tokenRefused"].as_bool().unwrap_or(false),
    };
    set_error(&mut entry, &ours["error"]);
    if entry.error.is_none() {
        entry.error = browser_error;
    }
    entry
}

fn from_line(position: usize, line: &Value, redactor: &Redactor) -> Entry {
    let url = str_at(line, "url");
    let request_headers = pair_headers(&line["request_headers"]);
    let response_headers = pair_headers(&line["response_headers"]);
    let mut cookies_sent = strings(&line["request_cookies"]);
    cookies_sent.extend(cookie_header_names(&request_headers));
    let mut cookies_set = strings(&line["response_cookies"]);
    cookies_set.extend(set_cookie_names(&response_headers));
    let line_body = |body: &Value| match body["base64"].as_str() {
        Some(_) => body_text(&body["base64"], &Value::from("base64")),
        None => body_text(&body["text"], &Value::Null),
    };
    let body = line_body(&line["response_body"]);
    let request_body = line_body(&line["request_body"]);
    let mut entry = Entry {
        position,
        id: line["id"].as_u64(),
        parent: line["parent"].as_u64(),
        role: role(line["role"].as_str()),
        method: str_at(line, "method"),
        host: host(&url).to_owned(),
        url: redactor.url(&url).into_owned(),
        status: status(&line["status"]),
        request_headers,
        response_headers,
        cookies_sent,
        cookies_set,
        body,
        request_body,
        error: None,
        error_kind: None,
        error_side: None,
        relogin: line["actions"]["relogin"].as_bool().unwrap_or(false),
        token_refused: line["actions"]["tokenRefused"].as_bool().unwrap_or(false),
    };
    set_error(&mut entry, &line["error"]);
    entry
}

/// Our `{kind, side, detail}` error object.
fn set_error(entry: &mut Entry, error: &Value) {
    let Some(error) = error.as_object() else {
        return;
    };
    let kind = error.get("kind").and_then(Value::as_str).unwrap_or("error");
    let detail = error.get("detail").and_then(Value::as_str).unwrap_or("");
    entry.error = Some(format!("{kind}: {detail}"));
    entry.error_kind = Some(kind.to_owned());
    entry.error_side = error.get("side").and_then(Value::as_str).map(str::to_owned);
}

fn status(value: &Value) -> u16 {
    value
        .as_u64()
        .and_then(|s| u16::try_from(s).ok())
        .unwrap_or(0)
}

fn body_text(text: &Value, encoding: &Value) -> String {
    let text = text.as_str().unwrap_or("");
    if encoding.as_str() == Some("base64") {
        let compact: String = text.split_whitespace().collect();
        return base64::engine::general_purpose::STANDARD
            .decode(compact)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
    }
    text.to_owned()
}

/// HAR headers: `[{"name": .., "value": ..}]`.
fn har_headers(list: &Value) -> Vec<(String, String)> {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|h| {
                    let name = h["name"].as_str()?.to_ascii_lowercase();
                    Some((name, h["value"].as_str().unwrap_or("").to_owned()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// JSON-lines headers: `[[name, value]]`.
fn pair_headers(list: &Value) -> Vec<(String, String)> {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|pair| {
                    let name = pair[0].as_str()?.to_ascii_lowercase();
                    Some((name, pair[1].as_str().unwrap_or("").to_owned()))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn cookie_header_names(headers: &[(String, String)]) -> Vec<String> {
    headers
        .iter()
        .filter(|(n, _)| n == "cookie")
        .flat_map(|(_, v)| v.split(';').filter_map(cookie_name))
        .collect()
}

fn set_cookie_names(headers: &[(String, String)]) -> Vec<String> {
    headers
        .iter()
        .filter(|(n, _)| n == "set-cookie")
        // Browsers join several Set-Cookie lines with newlines in one HAR header.
        .flat_map(|(_, v)| v.lines().filter_map(|l| cookie_name(l.split(';').next()?)))
        .collect()
}

fn names(cookies: &Value) -> Vec<String> {
    cookies
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|c| c["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn strings(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn cookie_name(pair: &str) -> Option<String> {
    let name = pair.split('=').next()?.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

fn str_at(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or("").to_owned()
}

fn host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split(['/', '?', '#']).next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_are_told_from_a_har_by_content() {
        let lines = concat!(
            r#"{"id":1,"method":"GET","url":"https://t/a","status":200,"role":"client"}"#,
            "\n",
            r#"{"id":2,"method":"GET","url":"https://t/b","status":403,"role":"client"}"#,
            "\n"
        );
        let trace = read(lines).unwrap();
        assert_eq!(trace.entries.len(), 2);
        assert_eq!(trace.entries[1].status, 403);
        assert_eq!(trace.entries[1].position, 2);
        let har =
            r#"{"log":{"entries":[{"request":{"url":"https://t/a"},"response":{"status":201}}]}}"#;
        assert_eq!(read(har).unwrap().entries[0].status, 201);
    }

    #[test]
    fn a_last_line_cut_short_is_skipped_with_a_note_and_a_bad_line_inside_is_an_error() {
        let torn = "{\"id\":1,\"url\":\"https://t/a\",\"status\":200}\n{\"id\":2,\"url\":\"htt";
        let trace = read(torn).unwrap();
        assert_eq!(trace.entries.len(), 1);
        assert!(trace.notes[0].contains("line 2"), "{:?}", trace.notes);
        let inside =
            "{\"id\":1,\"url\":\"https://t/a\"}\nnot json\n{\"id\":2,\"url\":\"https://t/b\"}\n";
        assert!(matches!(
            read(inside),
            Err(DiagnoseError::BadLine { line: 2, .. })
        ));
    }

    #[test]
    fn text_that_is_no_trace_is_refused() {
        assert!(matches!(read(""), Err(DiagnoseError::Empty)));
        assert!(matches!(read("not json"), Err(DiagnoseError::NotJson(_))));
        assert!(matches!(read(r#"{"log":{}}"#), Err(DiagnoseError::NotHar)));
        assert!(matches!(read("[1,2]"), Err(DiagnoseError::NotHar)));
        assert!(matches!(
            read("{\"a\":1}\n{\"b\":2}\n"),
            Err(DiagnoseError::NotRecord { line: 1 })
        ));
    }
}
