//! Phase "respond": the client's response. The target's head with hop-by-hop headers removed,
//! the challenge rewritten as the route says, the session's cookies kept from the client when
//! the proxy owns the session, and locations pointing back at the proxy. The body streams and
//! completes the trace record when it ends; no client can hold the session by not reading it.

use std::time::Instant;

use http::header::{self, HeaderMap};
use http::Response;

use super::exchange::{CaptureSlot, Exchange};
use super::headers;
use crate::access_log::Did;
use crate::body::{self, ProxyBody};
use crate::challenge::Outcome;
use crate::config::ClientCookies;
use crate::session::Lease;
use crate::trace::record::{CapturedBody, ErrorInfo, ExchangeRecord};
use crate::trace::{BodyEnd, TapBody, Tracer};

/// The record of the attempt whose response the client gets, waiting for its body to end.
pub struct PendingRecord {
    pub tracer: Tracer,
    /// Boxed from the start: it moves into the body's tap and on to the writer, whose channel
    /// takes boxes, without being copied on each move.
    pub record: Box<ExchangeRecord>,
    pub request_capture: Option<CaptureSlot>,
    pub clock: Instant,
    pub max_body: usize,
}

/// Rewrites the response head in place. The record keeps the target's head, taken before;
/// the challenge's before/after go into its actions.
pub fn rewrite_head(
    exchange: &mut Exchange<'_>,
    headers: &mut HeaderMap,
    status: http::StatusCode,
) {
    headers::remove_hop_by_hop(headers, None);
    match exchange.route.rewriter.rewrite(status, headers) {
        Outcome::Untouched => {}
        Outcome::Rewritten { before, after } => {
            exchange.did.add(Did::CHALLENGE_REWRITTEN);
            exchange.actions.challenge_before = before;
            exchange.actions.challenge_after = after;
        }
        Outcome::Malformed { warning } => {
            tracing::warn!(route = %exchange.route.plan.name, "challenge passed through unchanged: {warning}");
            exchange.actions.warnings.push(warning);
        }
    }
    let proxy_owns_session =
        exchange.route.plan.session.as_ref().is_some_and(|session| {
            session.cookies && session.client_cookies == ClientCookies::Strip
        });
    if proxy_owns_session {
        headers.remove(header::SET_COOKIE);
    }
    // One pass over the few names present instead of a lookup of each: most responses have
    // neither.
    let points_somewhere = headers
        .keys()
        .any(|name| name == header::LOCATION || name == header::CONTENT_LOCATION);
    if points_somewhere {
        let host = exchange
            .client_host
            .as_ref()
            .and_then(|host| host.to_str().ok());
        if let Some(host) = host {
            let origin = format!("{}://{host}", exchange.conn.proto());
            headers::rewrite_locations(headers, &exchange.route.paths, &origin);
        }
    }
}

/// The client's response around the target's body. The record is completed as the target's
/// body ends. An exclusive session lease (`serialize`, or opening or renewing the session) is
/// released once the target's body has been read, up to `read_ahead` bytes ahead of the client
/// (see [`body::read_ahead`]); a shared lease is released now: the jar has absorbed this
/// response's cookies, and nothing after the head touches the session.
pub fn respond(
    response: Response<ProxyBody>,
    lease: Option<Lease>,
    pending: Option<PendingRecord>,
    read_ahead: ReadAhead,
) -> Response<ProxyBody> {
    let (parts, body) = response.into_parts();
    let body = match pending {
        None => body,
        Some(pending) => {
            let max = pending.max_body;
            body::stream(TapBody::new(
                body,
                max,
                move |captured: CapturedBody, end: BodyEnd| finish_record(pending, captured, end),
            ))
        }
    };
    let body = match lease {
        Some(lease) if lease.is_exclusive() => {
            body::read_ahead(body, lease, read_ahead.bytes, read_ahead.stall)
        }
        _ => body,
    };
    Response::from_parts(parts, body)
}

/// How far an exclusive lease's response is read ahead of the client, and how long the client
/// may take nothing once that much is waiting.
#[derive(Debug, Clone, Copy)]
pub struct ReadAhead {
    pub bytes: usize,
    pub stall: std::time::Duration,
}

fn finish_record(pending: PendingRecord, captured: CapturedBody, end: BodyEnd) {
    let PendingRecord {
        tracer,
        mut record,
        request_capture,
        clock,
        ..
    } = pending;
    if let Some(slot) = request_capture {
        if let Ok(mut body) = slot.lock() {
            if let Some(body) = body.take() {
                record.request.body = Some(body);
            }
        }
    }
    if let Some(response) = record.response.as_mut() {
        response.body = Some(captured);
    }
    record.timings.total = clock.elapsed();
    let cut_short = match end {
        BodyEnd::Complete => None,
        BodyEnd::Error => {
            Some("the target's response body failed midway; the client's response was cut off")
        }
        BodyEnd::Dropped => {
            Some("the client went away, or stopped reading, before the response body ended")
        }
    };
    if let Some(detail) = cut_short {
        record.error.get_or_insert(ErrorInfo {
            kind: "response_cut_short".into(),
            side: if end == BodyEnd::Error {
                "upstream"
            } else {
                "client"
            },
            detail: detail.into(),
        });
    }
    tracer.submit(record);
}
