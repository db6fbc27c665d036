//! Comparing two exchanges: the call that works (Postman, curl, a browser) and the one that
//! fails. Serves `provproxy diagnose --compare` and the console's compare view alike.
//!
//! Differences are ranked by how often they are the cause in the field: a session cookie the
//! target set that the failing call did not send, then a different auth scheme, then a header
//! the working call had; method, URL, values and body fields after that.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::Value;

use super::read::{self, Entry};
use super::DiagnoseError;

/// Which exchange of a trace to compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// 1-based position in the file (HAR entry, or JSON line).
    Position(usize),
    /// provproxy's exchange id.
    Id(u64),
    /// The first exchange that succeeded (the usual "good" side).
    FirstOk,
    /// The first exchange that failed (the usual "bad" side).
    FirstFailed,
}

#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("{side}: {source}")]
    Read {
        side: &'static str,
        #[source]
        source: DiagnoseError,
    },
    #[error("{side}: {what}")]
    NoSuchEntry { side: &'static str, what: String },
}

/// One side of a comparison, as much of it as the differences speak of.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    pub entry: usize,
    pub id: Option<u64>,
    pub method: String,
    pub url: String,
    pub status: u16,
    pub auth_scheme: Option<String>,
    pub cookies: Vec<String>,
    pub headers: Vec<(String, String)>,
    pub body_fields: Vec<String>,
}

/// How much a difference is likely to matter: lower first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Weight {
    /// A session cookie the failing call did not send.
    MissingCookie,
    AuthScheme,
    MissingHeader,
    Method,
    Url,
    BodyField,
    HeaderValue,
    ExtraHeader,
    ExtraCookie,
}

#[derive(Debug, Clone, Serialize)]
pub struct Difference {
    pub weight: Weight,
    /// `cookie`, `auth scheme`, `header`, `method`, `url`, `body field`.
    pub what: &'static str,
    /// The header, cookie or field name; empty for method and URL.
    pub name: String,
    pub good: Option<String>,
    pub bad: Option<String>,
    /// Why it may matter, in a sentence.
    pub note: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub good: Side,
    pub bad: Side,
    /// Most telling first.
    pub differences: Vec<Difference>,
}

/// Headers that differ between any two calls and say nothing about why one failed; the
/// `cookie` and `authorization` headers are compared by name and scheme instead.
const NOISE: &[&str] = &[
    "cookie",
    "authorization",
    "content-length",
    "date",
    "host",
    "traceparent",
    "x-request-id",
    "postman-token",
];

/// Compares an exchange of `good` (a HAR or JSON lines) with one of `bad`.
pub fn compare(
    good: &str,
    pick_good: Pick,
    bad: &str,
    pick_bad: Pick,
) -> Result<Comparison, CompareError> {
    let good_trace = read::read(good).map_err(|source| CompareError::Read {
        side: "good",
        source,
    })?;
    let bad_trace = read::read(bad).map_err(|source| CompareError::Read {
        side: "bad",
        source,
    })?;
    let g = pick(&good_trace.entries, pick_good, "good")?;
    let b = pick(&bad_trace.entries, pick_bad, "bad")?;
    let set_before_bad = cookies_set_before(&bad_trace.entries, b);
    Ok(entries(
        &good_trace.entries[g],
        &bad_trace.entries[b],
        &set_before_bad,
    ))
}

fn pick(entries: &[Entry], pick: Pick, side: &'static str) -> Result<usize, CompareError> {
    let found = match pick {
        Pick::Position(n) => entries.iter().position(|e| e.position == n),
        // Ids restart with each run: the latest record with the id is the one meant.
        Pick::Id(id) => entries.iter().rposition(|e| e.id == Some(id)),
        Pick::FirstOk => entries.iter().position(|e| !e.failed()),
        Pick::FirstFailed => entries.iter().position(Entry::failed),
    };
    found.ok_or_else(|| CompareError::NoSuchEntry {
        side,
        what: match pick {
            Pick::Position(n) => format!("the trace has no entry {n} ({} entries)", entries.len()),
            Pick::Id(id) => format!("no exchange with id {id}"),
            Pick::FirstOk => "no exchange in the trace succeeded".into(),
            Pick::FirstFailed => "no exchange in the trace failed".into(),
        },
    })
}

/// Cookies that successful responses from the same host set before entry `index`, with the
/// position of the entry that set each.
fn cookies_set_before(entries: &[Entry], index: usize) -> Vec<(String, usize)> {
    let host = &entries[index].host;
    let mut set: Vec<(String, usize)> = Vec::new();
    for entry in entries[..index]
        .iter()
        .filter(|e| &e.host == host && !e.failed())
    {
        for name in &entry.cookies_set {
            set.retain(|(n, _)| n != name);
            set.push((name.clone(), entry.position));
        }
    }
    set
}

fn side(entry: &Entry) -> Side {
    let mut cookies: Vec<String> = entry.cookies_sent.clone();
    cookies.dedup();
    Side {
        entry: entry.position,
        id: entry.id,
        method: entry.method.clone(),
        url: entry.url.clone(),
        status: entry.status,
        auth_scheme: entry.request_header("authorization").map(scheme),
        cookies,
        headers: entry.request_headers.clone(),
        body_fields: body_fields(&entry.request_body)
            .into_iter()
            .map(|(name, _)| name)
            .collect(),
    }
}

/// The scheme words of an `Authorization` value: `Basic`, or `Bearer Bearer` for a doubled one.
fn scheme(value: &str) -> String {
    let words: Vec<&str> = value.split_whitespace().collect();
    let Some(first) = words.first() else {
        return String::new();
    };
    match words.get(1) {
        Some(second) if second.eq_ignore_ascii_case(first) => format!("{first} {second}"),
        _ => (*first).to_owned(),
    }
}

fn entries(good: &Entry, bad: &Entry, set_before_bad: &[(String, usize)]) -> Comparison {
    let mut differences = Vec::new();
    let good_side = side(good);
    let bad_side = side(bad);

    let good_cookies: BTreeSet<&str> = good_side.cookies.iter().map(String::as_str).collect();
    let bad_cookies: BTreeSet<&str> = bad_side.cookies.iter().map(String::as_str).collect();
    for name in good_cookies.difference(&bad_cookies) {
        let set_by = set_before_bad.iter().find(|(n, _)| n == name);
        differences.push(Difference {
            weight: Weight::MissingCookie,
            what: "cookie",
            name: (*name).to_owned(),
            good: Some("sent".into()),
            bad: None,
            note: match set_by {
                Some((_, entry)) => format!(
                    "the target set {name} (entry {entry}) but the failing call did not send it: \
                     the session it opened is not carried on"
                ),
                None => format!("the working call sent cookie {name}; the failing call did not"),
            },
        });
    }
    // The target set a session cookie that neither call sent: the failing one still lacks it.
    for (name, entry) in set_before_bad {
        if !bad_cookies.contains(name.as_str()) && !good_cookies.contains(name.as_str()) {
            differences.push(Difference {
                weight: Weight::MissingCookie,
                what: "cookie",
                name: name.clone(),
                good: None,
                bad: None,
                note: format!(
                    "the target set {name} (entry {entry}) but the failing call did not send it"
                ),
            });
        }
    }
    if good_side.auth_scheme != bad_side.auth_scheme {
        differences.push(Difference {
            weight: Weight::AuthScheme,
            what: "auth scheme",
            name: "authorization".into(),
            good: good_side.auth_scheme.clone(),
            bad: bad_side.auth_scheme.clone(),
            note: match (&good_side.auth_scheme, &bad_side.auth_scheme) {
                (Some(g), None) => format!("the working call authenticated with {g}; the failing call sent no Authorization"),
                (None, Some(b)) => format!("the failing call sent {b} where the working call sent no Authorization"),
                (g, b) => format!(
                    "different auth schemes: {} vs {}",
                    g.as_deref().unwrap_or("none"),
                    b.as_deref().unwrap_or("none")
                ),
            },
        });
    }
    header_differences(&good_side.headers, &bad_side.headers, &mut differences);
    if !good_side.method.eq_ignore_ascii_case(&bad_side.method) {
        differences.push(Difference {
            weight: Weight::Method,
            what: "method",
            name: String::new(),
            good: Some(good_side.method.clone()),
            bad: Some(bad_side.method.clone()),
            note: "different methods: a target may allow one and refuse the other".into(),
        });
    }
    if path_of(&good_side.url) != path_of(&bad_side.url) {
        differences.push(Difference {
            weight: Weight::Url,
            what: "url",
            name: String::new(),
            good: Some(good_side.url.clone()),
            bad: Some(bad_side.url.clone()),
            note: "different paths or queries".into(),
        });
    }
    body_differences(&good.request_body, &bad.request_body, &mut differences);
    for name in bad_cookies.difference(&good_cookies) {
        differences.push(Difference {
            weight: Weight::ExtraCookie,
            what: "cookie",
            name: (*name).to_owned(),
            good: None,
            bad: Some("sent".into()),
            note: format!("only the failing call sent cookie {name}: a stale session?"),
        });
    }
    differences.sort_by_key(|d| d.weight);
    Comparison {
        good: good_side,
        bad: bad_side,
        differences,
    }
}

fn header_differences(
    good: &[(String, String)],
    bad: &[(String, String)],
    out: &mut Vec<Difference>,
) {
    let values = |headers: &[(String, String)], name: &str| -> Vec<String> {
        headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect()
    };
    let names = |headers: &[(String, String)]| -> BTreeSet<String> {
        headers
            .iter()
            .map(|(n, _)| n.clone())
            .filter(|n| !NOISE.contains(&n.as_str()))
            .collect()
    };
    let (good_names, bad_names) = (names(good), names(bad));
    for name in good_names.union(&bad_names) {
        let (g, b) = (values(good, name), values(bad, name));
        let (weight, note) = match (g.is_empty(), b.is_empty()) {
            (false, true) => (
                Weight::MissingHeader,
                format!("the working call sent {name}; the failing call did not"),
            ),
            (true, false) => (
                Weight::ExtraHeader,
                format!("only the failing call sent {name}"),
            ),
            _ if g != b => (Weight::HeaderValue, format!("{name} differs")),
            _ => continue,
        };
        out.push(Difference {
            weight,
            what: "header",
            name: name.clone(),
            good: (!g.is_empty()).then(|| g.join(", ")),
            bad: (!b.is_empty()).then(|| b.join(", ")),
            note,
        });
    }
}

fn body_differences(good: &str, bad: &str, out: &mut Vec<Difference>) {
    let (g, b) = (body_fields(good), body_fields(bad));
    let names: BTreeSet<&String> = g.iter().chain(&b).map(|(n, _)| n).collect();
    for name in names {
        let gv = g.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        let bv = b.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        let note = match (&gv, &bv) {
            (Some(_), None) => {
                format!("the working call's body had {name}; the failing call's did not")
            }
            (None, Some(_)) => format!("only the failing call's body had {name}"),
            (g, b) if g != b => format!("{name} differs"),
            _ => continue,
        };
        out.push(Difference {
            weight: Weight::BodyField,
            what: "body field",
            name: name.clone(),
            good: gv,
            bad: bv,
            note,
        });
    }
}

/// A JSON body's fields as pointers (`/name/givenName`, up to three levels) with their values
/// as JSON; a form body's fields; nothing for other bodies.
fn body_fields(body: &str) -> Vec<(String, String)> {
    let body = body.trim();
    if body.is_empty() {
        return Vec::new();
    }
    if let Ok(value) = serde_json::from_str::<Value>(body) {
        let mut fields = Vec::new();
        flatten("", &value, 0, &mut fields);
        return fields;
    }
    if body.contains('=') && !body.contains(char::is_whitespace) {
        return url::form_urlencoded::parse(body.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    }
    Vec::new()
}

fn flatten(prefix: &str, value: &Value, depth: usize, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) if depth < 3 => {
            for (key, value) in map {
                flatten(&format!("{prefix}/{key}"), value, depth + 1, out);
            }
        }
        _ if prefix.is_empty() => {}
        _ => out.push((prefix.to_owned(), value.to_string())),
    }
}

fn path_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.find('/').map_or("/", |i| &rest[i..])
}

/// The comparison as text, most telling difference first.
pub fn render_text(comparison: &Comparison, good_name: &str, bad_name: &str) -> String {
    let line = |side: &Side| {
        format!(
            "{} {} -> {}{}",
            side.method,
            side.url,
            side.status,
            side.auth_scheme
                .as_deref()
                .map(|s| format!(" (Authorization: {s})"))
                .unwrap_or_default()
        )
    };
    let mut out = format!(
        "good: {good_name} entry {}: {}\nbad:  {bad_name} entry {}: {}\n",
        comparison.good.entry,
        line(&comparison.good),
        comparison.bad.entry,
        line(&comparison.bad)
    );
    if comparison.differences.is_empty() {
        out.push_str(
            "no differences in method, URL, headers, cookies, auth scheme or body fields\n",
        );
        return out;
    }
    out.push_str(&format!(
        "{} difference(s), most telling first:\n",
        comparison.differences.len()
    ));
    for d in &comparison.differences {
        let name = if d.name.is_empty() {
            String::new()
        } else {
            format!(" {}", d.name)
        };
        out.push_str(&format!("  - {}{name}: {}\n", d.what, d.note));
        if d.what != "cookie" {
            out.push_str(&format!(
                "      good: {}\n      bad:  {}\n",
                d.good.as_deref().unwrap_or("(absent)"),
                d.bad.as_deref().unwrap_or("(absent)")
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn har(entries: &[&str]) -> String {
        format!(r#"{{"log":{{"entries":[{}]}}}}"#, entries.join(","))
    }

    fn entry(
        method: &str,
        path: &str,
        status: u16,
        headers: &[(&str, &str)],
        set: &[&str],
    ) -> String {
        let headers: Vec<String> = headers
            .iter()
            .map(|(n, v)| format!(r#"{{"name":"{n}","value":"{v}"}}"#))
            .collect();
        let set: Vec<String> = set
            .iter()
            .map(|n| format!(r#"{{"name":"set-cookie","value":"{n}=x; Path=/"}}"#))
            .collect();
        format!(
            r#"{{"request":{{"method":"{method}","url":"https://t.example{path}","headers":[{}]}},"response":{{"status":{status},"headers":[{}]}}}}"#,
            headers.join(","),
            set.join(",")
        )
    }

    #[test]
    fn a_session_cookie_the_target_set_and_the_failing_call_did_not_send_comes_first() {
        let good = har(&[entry(
            "PATCH",
            "/api/accounts/1",
            200,
            &[
                ("authorization", "Basic [REDACTED]"),
                ("cookie", "JSESSIONID=[REDACTED]"),
                ("accept", "application/json"),
            ],
            &[],
        )
        .as_str()]);
        let bad = har(&[
            entry(
                "POST",
                "/api/accounts",
                201,
                &[("authorization", "Basic [REDACTED]")],
                &["JSESSIONID"],
            )
            .as_str(),
            entry(
                "PATCH",
                "/api/accounts/1",
                401,
                &[
                    ("authorization", "Bearer Bearer [REDACTED]"),
                    ("x-extra", "1"),
                ],
                &[],
            )
            .as_str(),
        ]);
        let c = compare(&good, Pick::FirstOk, &bad, Pick::FirstFailed).unwrap();
        assert_eq!(c.bad.entry, 2);
        let first = &c.differences[0];
        assert_eq!((first.what, first.name.as_str()), ("cookie", "JSESSIONID"));
        assert!(first.note.contains("entry 1"), "{}", first.note);
        assert_eq!(c.differences[1].what, "auth scheme");
        assert_eq!(c.differences[1].bad.as_deref(), Some("Bearer Bearer"));
        assert_eq!(
            (c.differences[2].what, c.differences[2].name.as_str()),
            ("header", "accept")
        );
        let text = render_text(&c, "good.har", "bad.har");
        let cookie = text.find("JSESSIONID").unwrap();
        let scheme = text.find("auth scheme").unwrap();
        assert!(cookie < scheme, "{text}");
    }

    #[test]
    fn body_fields_are_compared_by_name_and_value() {
        let line = |id: u64, status: u16, body: &str| {
            serde_json::json!({
                "id": id, "method": "POST", "url": "https://t/scim/v2/Users", "status": status,
                "request_body": {"text": body}, "request_headers": []
            })
            .to_string()
        };
        let trace = format!(
            "{}\n{}\n",
            line(1, 201, r#"{"userName":"ada","name":{"givenName":"Ada"}}"#),
            line(2, 400, r#"{"userName":"ada","active":true}"#)
        );
        let c = compare(&trace, Pick::Id(1), &trace, Pick::Id(2)).unwrap();
        let fields: Vec<&str> = c
            .differences
            .iter()
            .filter(|d| d.what == "body field")
            .map(|d| d.name.as_str())
            .collect();
        assert_eq!(fields, ["/active", "/name/givenName"]);
    }

    #[test]
    fn a_missing_entry_is_named() {
        let trace = har(&[entry("GET", "/", 200, &[], &[]).as_str()]);
        let err = compare(&trace, Pick::Position(3), &trace, Pick::Position(1)).unwrap_err();
        assert!(err.to_string().contains("no entry 3"), "{err}");
        let err = compare(&trace, Pick::FirstOk, &trace, Pick::FirstFailed).unwrap_err();
        assert!(
            err.to_string().contains("no exchange in the trace failed"),
            "{err}"
        );
    }
}
