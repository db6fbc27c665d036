//! The context one exchange carries through the phases, and the trace records built from it
//! (only when tracing is on).

use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::uri::Authority;
use http::{header, HeaderMap, HeaderValue, StatusCode, Uri, Version};

use super::forward::Head;
use super::{ConnInfo, Route};
use crate::access_log::Did;
use crate::auth::oauth::TokenExchange;
use crate::ingress::ClientName;
use crate::session::SessionKey;
use crate::trace::record::{
    Actions, CapturedBody, ErrorInfo, ExchangeRecord, RequestPart, ResponsePart, Role, Timings,
};
use crate::trace::Tracer;

pub struct Exchange<'a> {
    pub conn: &'a ConnInfo,
    pub route_index: usize,
    pub route: &'a Route,
    pub client: Option<ClientName>,
    /// The host the client used (its `Host` header), for rewriting `Location`.
    pub client_host: Option<HeaderValue>,
    pub session_key: Option<SessionKey>,
    /// What the proxy did, accumulated phase by phase; it goes into the final record.
    pub actions: Actions,
    pub trace: Option<TraceContext>,
    /// Whether a record of an attempt was submitted or is pending, so a failure is not
    /// recorded twice.
    pub attempted: bool,
    /// The record of the refused attempt a replay follows from.
    pub replayed_from: Option<u64>,
    /// The id a session token fetch gave as its parent before the attempt it was made for
    /// existed: that attempt's record (or the error record in its place) takes it.
    pub reserved_id: Option<u64>,
    /// What the proxy did over all attempts, for the access log.
    pub did: Did,
    /// The status of the last response the target sent.
    pub upstream_status: Option<StatusCode>,
}

/// Tracing state of one exchange: present only when tracing is on.
pub struct TraceContext {
    pub tracer: Tracer,
    pub max_body: usize,
    pub started: SystemTime,
    pub clock: Instant,
}

/// Where a streamed request body's capture lands once the target has read it.
pub type CaptureSlot = Arc<Mutex<Option<CapturedBody>>>;

/// One attempt as it went to the target, for its record.
pub struct AttemptTrace {
    pub id: u64,
    pub role: Role,
    pub parent: Option<u64>,
    pub started: SystemTime,
    pub clock: Instant,
    pub request: RequestPart,
    pub request_capture: Option<CaptureSlot>,
}

impl TraceContext {
    pub fn attempt(
        &self,
        role: Role,
        parent: Option<u64>,
        head: &Head,
        headers: &HeaderMap,
        body: Option<&Bytes>,
    ) -> AttemptTrace {
        AttemptTrace {
            id: self.tracer.next_id(),
            role,
            parent,
            started: SystemTime::now(),
            clock: Instant::now(),
            request: RequestPart {
                method: head.method.clone(),
                url: render_url(&head.uri),
                version: Version::HTTP_11,
                headers: headers.clone(),
                body: body.map(|bytes| capture(bytes, self.max_body)),
            },
            request_capture: None,
        }
    }
}

/// The URL as `Uri`'s `Display` writes it, into a string allocated once at its final size
/// (`to_string` grows it piece by piece, reallocating on the way).
pub fn render_url(uri: &Uri) -> String {
    let scheme = uri.scheme_str();
    let authority = uri.authority().map(Authority::as_str);
    let path = uri.path();
    let query = uri.query();
    let len = scheme.map_or(0, |scheme| scheme.len() + 3)
        + authority.map_or(0, str::len)
        + path.len()
        + query.map_or(0, |query| query.len() + 1);
    let mut url = String::with_capacity(len);
    if let Some(scheme) = scheme {
        url.push_str(scheme);
        url.push_str("://");
    }
    if let Some(authority) = authority {
        url.push_str(authority);
    }
    url.push_str(path);
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    url
}

/// The first `max` bytes of a whole body.
pub fn capture(bytes: &Bytes, max: usize) -> CapturedBody {
    CapturedBody {
        bytes: bytes.slice(..bytes.len().min(max)),
        total_size: bytes.len() as u64,
        truncated: bytes.len() > max,
    }
}

impl Exchange<'_> {
    /// The record of one attempt. `actions` go on the attempt the client's response came from;
    /// an attempt that was replayed gets a copy with what had happened up to then.
    /// Records a request the proxy made on its own behalf (a login, a session token fetch) with
    /// the HTTP/1.1 answer it got, when tracing is on.
    pub fn submit_own(
        &self,
        attempt: Option<AttemptTrace>,
        answer: (StatusCode, HeaderMap, CapturedBody),
        first_byte: std::time::Duration,
    ) {
        if let (Some(trace), Some(attempt)) = (&self.trace, attempt) {
            let (status, headers, body) = answer;
            let record = self.record(
                attempt,
                Some((status, Version::HTTP_11, headers, Some(body))),
                Some(first_byte),
                None,
            );
            trace.tracer.submit(record);
        }
    }

    pub fn record(
        &self,
        attempt: AttemptTrace,
        response: Option<(StatusCode, Version, HeaderMap, Option<CapturedBody>)>,
        first_byte: Option<std::time::Duration>,
        error: Option<ErrorInfo>,
    ) -> ExchangeRecord {
        self.record_with(attempt, response, first_byte, error, self.actions.clone())
    }

    /// [`Exchange::record`] with the actions given: the attempt the client's response comes
    /// from is the last, so its record takes them instead of a copy.
    pub fn record_with(
        &self,
        mut attempt: AttemptTrace,
        response: Option<(StatusCode, Version, HeaderMap, Option<CapturedBody>)>,
        first_byte: Option<std::time::Duration>,
        error: Option<ErrorInfo>,
        actions: Actions,
    ) -> ExchangeRecord {
        if let Some(slot) = attempt.request_capture.take() {
            if let Ok(mut captured) = slot.lock() {
                attempt.request.body = captured.take();
            }
        }
        ExchangeRecord {
            id: attempt.id,
            parent: attempt.parent,
            role: attempt.role,
            started: attempt.started,
            timings: Timings {
                connect: None,
                first_byte,
                total: attempt.clock.elapsed(),
            },
            client_addr: Some(self.conn.remote),
            client_name: self.client.clone(),
            route: Some(Arc::clone(&self.route.name)),
            session_key: self.session_key.as_ref().map(SessionKey::shared),
            request: attempt.request,
            response: response.map(|(status, version, headers, body)| ResponsePart {
                status,
                version,
                headers,
                body,
            }),
            actions,
            error,
        }
    }
}

/// What the client's response lacks or has instead of the target's, into the actions of the
/// record that holds the target's response. Framing headers are not named: hyper frames the
/// client's body itself.
pub fn client_changes(actions: &mut Actions, target: &HeaderMap, client: &HeaderMap) {
    // The common response loses no header: the client's map then starts with the target's
    // names in the target's order, which a comparison in step shows without hashing each name.
    // A removal moves the map's last name into its place, so only then is each name looked up.
    let kept_all = client.keys_len() >= target.keys_len()
        && target
            .keys()
            .zip(client.keys())
            .all(|(kept, sent)| kept == sent);
    if !kept_all {
        for name in target.keys() {
            let framing = name == header::TRANSFER_ENCODING || name == header::CONTENT_LENGTH;
            if !framing && !client.contains_key(name) {
                actions.headers_removed.push(name.as_str().to_owned());
            }
        }
    }
    if !client.contains_key(header::SET_COOKIE) {
        actions.cookies_withheld = target
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .filter_map(|value| value.split(['=', ';']).next())
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty())
            .collect();
    }
    let location = client.get(header::LOCATION);
    if location.is_some() && location != target.get(header::LOCATION) {
        // The query and fragment are the target's, redacted in the response headers.
        actions.location_rewritten = location
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(['?', '#']).next())
            .map(str::to_owned);
    }
}

/// The record of a request the proxy made to an OAuth token endpoint on a route's behalf.
pub fn token_fetch_record(
    id: u64,
    route: &Arc<str>,
    exchange: TokenExchange,
    max_body: usize,
) -> ExchangeRecord {
    let TokenExchange {
        started,
        elapsed,
        url,
        request_headers,
        request_body,
        response,
        error,
    } = exchange;
    ExchangeRecord {
        id,
        parent: None,
        role: Role::TokenFetch,
        started,
        timings: Timings {
            connect: None,
            first_byte: None,
            total: elapsed,
        },
        client_addr: None,
        client_name: None,
        route: Some(Arc::clone(route)),
        session_key: None,
        request: RequestPart {
            method: http::Method::POST,
            url,
            version: Version::HTTP_11,
            headers: request_headers,
            body: Some(capture(&request_body, max_body)),
        },
        response: response.map(|(status, headers, body)| ResponsePart {
            status,
            version: Version::HTTP_11,
            headers,
            body: Some(capture(&body, max_body)),
        }),
        actions: Actions {
            token_fetched: true,
            ..Actions::default()
        },
        error: error.map(|(kind, detail)| ErrorInfo {
            kind: kind.to_owned(),
            side: "upstream",
            detail,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(names: &[&'static str]) -> HeaderMap {
        names
            .iter()
            .map(|name| {
                (
                    header::HeaderName::from_static(name),
                    HeaderValue::from_static("v"),
                )
            })
            .collect()
    }

    fn removed(target: &HeaderMap, client: &HeaderMap) -> Vec<String> {
        let mut actions = Actions::default();
        client_changes(&mut actions, target, client);
        actions.headers_removed
    }

    #[test]
    fn a_response_that_lost_no_header_names_none_removed() {
        let target = map(&["content-type", "x-request-id", "date"]);
        assert!(removed(&target, &target.clone()).is_empty());
        let mut client = target.clone();
        client.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
        client.insert(header::DATE, HeaderValue::from_static("w"));
        assert!(removed(&target, &client).is_empty());
    }

    #[test]
    fn every_header_the_client_did_not_get_is_named_in_the_targets_order() {
        let target = map(&["connection", "content-type", "keep-alive", "x-a"]);
        let mut client = target.clone();
        // A removal puts the last name in the removed one's place; the names added keep the
        // count of names the target's.
        client.remove(header::CONNECTION);
        client.remove("keep-alive");
        client.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
        client.insert(header::LOCATION, HeaderValue::from_static("/x"));
        assert_eq!(client.keys_len(), target.keys_len());
        assert_eq!(removed(&target, &client), ["connection", "keep-alive"]);
        let fewer = map(&["x-a", "content-type"]);
        assert_eq!(
            removed(&map(&["content-type", "x-a", "x-b"]), &fewer),
            ["x-b"]
        );
    }

    #[test]
    fn a_rendered_url_is_what_the_uri_displays() {
        for text in [
            "http://127.0.0.1:8080/scim/v2/Users/2819c223?filter=userName%20eq%20%22x%22",
            "https://osmc.example/",
            "https://osmc.example",
            "http://[::1]:9/a/b?",
            "/scim/v2/Users?startIndex=1&count=100",
            "/",
            "*",
            "osmc.example:443",
            "custom+scheme://host/p?q#frag",
        ] {
            let uri: Uri = text.parse().unwrap();
            let rendered = render_url(&uri);
            assert_eq!(rendered, uri.to_string(), "{text}");
            assert_eq!(rendered.capacity(), rendered.len(), "{text}");
        }
    }
}
