//! HAR 1.2: one entry per redacted record, provproxy's own data under `_provproxy`.
//!
//! The file is a complete HAR document after every record: it is created as an empty log whose
//! last bytes are [`TAIL`], and each entry overwrites that tail with `,entry` followed by the
//! tail again (see [`super::file::TraceFile`]).

use std::time::{Duration, SystemTime};

use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::redact::{BodyContent, RedactedBody, RedactedRecord};

pub const HEAD: &str = concat!(
    r#"{"log":{"version":"1.2","creator":{"name":"provproxy","version":""#,
    env!("CARGO_PKG_VERSION"),
    r#""},"pages":[],"entries":["#,
    "\n"
);
pub const TAIL: &str = "\n]}}\n";
pub const SEPARATOR: &str = ",\n";

/// The HAR entry for one record. Failed exchanges get status 0 and `_provproxy.error`.
pub fn entry(rec: &RedactedRecord) -> Value {
    let req = &rec.request;
    let mut request = json!({
        "method": req.method,
        "url": req.url,
        "httpVersion": req.http_version,
        "cookies": req.cookies.iter().map(|name| json!({"name": name, "value": super::redact::REDACTED})).collect::<Vec<_>>(),
        "headers": name_values(&req.headers),
        "queryString": name_values(&req.query),
        "headersSize": -1,
        "bodySize": req.body_size,
    });
    if let Some(body) = &req.body {
        request["postData"] = post_data(body);
    }

    let response = match &rec.response {
        Some(res) => {
            let location = res
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("location"))
                .map_or("", |(_, v)| v.as_str());
            json!({
                "status": res.status,
                "statusText": res.status_text,
                "httpVersion": res.http_version,
                "cookies": res.cookies.iter().map(|c| {
                    let mut cookie = json!({"name": c.name, "value": super::redact::REDACTED});
                    if let Some(path) = &c.path { cookie["path"] = json!(path); }
                    if let Some(domain) = &c.domain { cookie["domain"] = json!(domain); }
                    if let Some(expires) = &c.expires { cookie["expires"] = json!(expires); }
                    cookie["httpOnly"] = json!(c.http_only);
                    cookie["secure"] = json!(c.secure);
                    cookie
                }).collect::<Vec<_>>(),
                "headers": name_values(&res.headers),
                "content": content(res.body.as_ref()),
                "redirectURL": location,
                "headersSize": -1,
                "bodySize": res.body_size,
            })
        }
        None => json!({
            "status": 0,
            "statusText": "",
            "httpVersion": req.http_version,
            "cookies": [],
            "headers": [],
            "content": {"size": 0, "mimeType": "x-unknown"},
            "redirectURL": "",
            "headersSize": -1,
            "bodySize": -1,
        }),
    };

    let t = &rec.timings;
    let connect = t.connect.unwrap_or_default();
    let first_byte = t.first_byte.unwrap_or(t.total);
    json!({
        "startedDateTime": datetime(rec.started),
        "time": ms(t.total),
        "request": request,
        "response": response,
        "cache": {},
        "timings": {
            "connect": t.connect.map_or(-1.0, ms),
            "send": 0.0,
            "wait": ms(first_byte.saturating_sub(connect)),
            "receive": ms(t.total.saturating_sub(first_byte)),
        },
        "_provproxy": provproxy_fields(rec),
    })
}

fn provproxy_fields(rec: &RedactedRecord) -> Value {
    let mut fields = Map::new();
    fields.insert("id".into(), json!(rec.id));
    fields.insert("parent".into(), json!(rec.parent));
    fields.insert("role".into(), json!(rec.role.as_str()));
    fields.insert("route".into(), json!(rec.route));
    fields.insert("session".into(), json!(rec.session_key));
    fields.insert("client".into(), json!(rec.client_name));
    fields.insert(
        "clientAddr".into(),
        json!(rec.client_addr.map(|a| a.to_string())),
    );
    fields.insert("actions".into(), actions(&rec.actions));
    fields.insert(
        "error".into(),
        rec.error.as_ref().map_or(
            Value::Null,
            |e| json!({"kind": e.kind, "side": e.side, "detail": e.detail}),
        ),
    );
    Value::Object(fields)
}

/// The actions as JSON; shared with the JSON-lines writer.
pub fn actions(a: &super::record::Actions) -> Value {
    json!({
        "authInjected": a.auth_injected,
        "cookiesReplayed": a.cookies_replayed,
        "cookiesStored": a.cookies_stored,
        "sessionOpened": a.session_opened,
        "relogin": a.relogin,
        "replayed": a.replayed,
        "challengeBefore": a.challenge_before,
        "challengeAfter": a.challenge_after,
        "authorizationNormalised": a.authorization_normalised,
        "tokenFetched": a.token_fetched,
        "warnings": a.warnings,
    })
}

fn post_data(body: &RedactedBody) -> Value {
    let mut data = json!({"mimeType": body.mime_type});
    match &body.content {
        BodyContent::Text(text) => data["text"] = json!(text),
        // HAR has no encoding for request bodies; the custom field says how to read `text`.
        BodyContent::Base64(b64) => {
            data["text"] = json!(b64);
            data["_encoding"] = json!("base64");
        }
        BodyContent::Omitted(reason) => data["comment"] = json!(reason),
    }
    if body.truncated {
        data["_truncated"] = json!(true);
    }
    data
}

fn content(body: Option<&RedactedBody>) -> Value {
    let Some(body) = body else {
        return json!({"size": 0, "mimeType": "x-unknown"});
    };
    let mut content = json!({"size": body.size, "mimeType": body.mime_type});
    match &body.content {
        BodyContent::Text(text) => content["text"] = json!(text),
        BodyContent::Base64(b64) => {
            content["text"] = json!(b64);
            content["encoding"] = json!("base64");
        }
        BodyContent::Omitted(reason) => content["comment"] = json!(reason),
    }
    if body.truncated {
        content["_truncated"] = json!(true);
    }
    content
}

fn name_values(pairs: &[(String, String)]) -> Vec<Value> {
    pairs
        .iter()
        .map(|(name, value)| json!({"name": name, "value": value}))
        .collect()
}

pub fn datetime(t: SystemTime) -> String {
    OffsetDateTime::from(t)
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
