//! The flat JSON shape of a redacted record: one line per record in the JSON-lines file, and the
//! shape the admin API serves from the ring buffer.

use serde_json::{json, Value};

use super::har::{actions, datetime, ms};
use super::redact::{BodyContent, RedactedBody, RedactedRecord};

pub fn record(rec: &RedactedRecord) -> Value {
    let req = &rec.request;
    let res = rec.response.as_ref();
    let t = &rec.timings;
    json!({
        "id": rec.id,
        "parent": rec.parent,
        "role": rec.role.as_str(),
        "started": datetime(rec.started),
        "connect_ms": t.connect.map(ms),
        "first_byte_ms": t.first_byte.map(ms),
        "total_ms": ms(t.total),
        "client": rec.client_name,
        "client_addr": rec.client_addr.map(|a| a.to_string()),
        "route": rec.route,
        "session": rec.session_key,
        "method": req.method,
        "url": req.url,
        "http_version": req.http_version,
        "request_headers": pairs(&req.headers),
        "request_cookies": req.cookies,
        "request_body": req.body.as_ref().map(body),
        "status": res.map_or(0, |r| r.status),
        "response_headers": res.map(|r| pairs(&r.headers)),
        "response_cookies": res.map(|r| r.cookies.iter().map(|c| c.name.as_str()).collect::<Vec<_>>()),
        "response_body": res.and_then(|r| r.body.as_ref()).map(body),
        "actions": actions(&rec.actions),
        "error": rec.error.as_ref().map(|e| json!({"kind": e.kind, "side": e.side, "detail": e.detail})),
    })
}

fn pairs(headers: &[(String, String)]) -> Vec<[&str; 2]> {
    headers
        .iter()
        .map(|(n, v)| [n.as_str(), v.as_str()])
        .collect()
}

fn body(body: &RedactedBody) -> Value {
    let mut out = json!({
        "mime_type": body.mime_type,
        "size": body.size,
        "truncated": body.truncated,
    });
    match &body.content {
        BodyContent::Text(text) => out["text"] = json!(text),
        BodyContent::Base64(b64) => out["base64"] = json!(b64),
        BodyContent::Omitted(reason) => out["omitted"] = json!(reason),
    }
    out
}
