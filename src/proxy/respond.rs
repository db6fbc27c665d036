//! Phase "respond": the client's response. The target's head with hop-by-hop headers removed,
//! the challenge rewritten as the route says, the session's cookies kept from the client when
//! the proxy owns the session, and locations pointing back at the proxy. The body streams; it
//! holds the session lease until it ends, and completes the trace record when it does.

use std::time::Instant;

use http::header::{self, HeaderMap};
use http::Response;

use super::body::{self, ProxyBody};
use super::exchange::{CaptureSlot, Exchange};
use super::headers;
use crate::challenge::Outcome;
use crate::config::ClientCookies;
use crate::session::Lease;
use crate::trace::record::{CapturedBody, ErrorInfo, ExchangeRecord};
use crate::trace::{BodyEnd, TapBody, Tracer};

/// The record of the attempt whose response the client gets, waiting for its body to end.
pub struct PendingRecord {
    pub tracer: Tracer,
    pub record: ExchangeRecord,
    pub request_capture: Option<CaptureSlot>,
    pub clock: Instant,
    pub max_body: usize,
}

/// Rewrites the response head in place. Runs before the record of the head is taken, so the
/// record shows what the client got, with the challenge's before/after in its actions.
pub fn rewrite_head(
    exchange: &mut Exchange<'_>,
    headers: &mut HeaderMap,
    status: http::StatusCode,
) {
    headers::remove_hop_by_hop(headers, None);
    match exchange.route.plan.rewriter.rewrite(status, headers) {
        Outcome::Untouched => {}
        Outcome::Rewritten { before, after } => {
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
    let points_somewhere =
        headers.contains_key(header::LOCATION) || headers.contains_key(header::CONTENT_LOCATION);
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

/// The client's response around the target's body.
pub fn respond(
    response: Response<ProxyBody>,
    lease: Option<Lease>,
    pending: Option<PendingRecord>,
) -> Response<ProxyBody> {
    let (parts, incoming) = response.into_parts();
    let with_lease = LeaseBody {
        inner: incoming,
        _lease: lease,
    };
    let body = match pending {
        None => body::stream(with_lease),
        Some(pending) => {
            let max = pending.max_body;
            body::stream(TapBody::new(
                with_lease,
                max,
                move |captured: CapturedBody, end: BodyEnd| finish_record(pending, captured, end),
            ))
        }
    };
    Response::from_parts(parts, body)
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
        BodyEnd::Dropped => Some("the client went away before the response body ended"),
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

pin_project_lite::pin_project! {
    /// Keeps the session lease for as long as the response body is being sent: with
    /// `serialize = true` the next request of the session waits for the whole exchange.
    struct LeaseBody<B> {
        #[pin]
        inner: B,
        _lease: Option<Lease>,
    }
}

impl<B: http_body::Body> http_body::Body for LeaseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
