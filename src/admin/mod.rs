//! The admin listener: `/healthz`, `/readyz`, `/metrics`, `/sessions`, `/exchanges` and
//! `POST /reload`. It shows cookie names and redacted exchanges only, never a secret; `access`
//! decides who may ask.

pub mod access;
pub mod console;
mod fleet;
pub mod stats;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use crate::body::{full, ProxyBody};
use crate::metrics::Metrics;
use crate::reload::Status;
use crate::session::Sessions;
use crate::state::RedisShared;
use crate::trace::Tracer;
use access::Access;

/// The largest `POST /api/compare` body: a HAR the user imported.
const COMPARE_BODY_LIMIT: usize = 32 << 20;

/// Exchanges returned by `GET /exchanges` unless `limit` says otherwise.
const DEFAULT_EXCHANGES: usize = 50;

pub struct Admin {
    metrics: Arc<Metrics>,
    sessions: Sessions,
    tracer: Option<Tracer>,
    access: Access,
    /// Readiness and reloads; `None` for a proxy that cannot reload (the demo).
    status: Option<Arc<Status>>,
    /// `[state] backend = "redis"`: readiness and sessions are the fleet's.
    redis: Option<RedisShared>,
}

impl Admin {
    pub fn new(
        metrics: Arc<Metrics>,
        sessions: Sessions,
        tracer: Option<Tracer>,
        access: Access,
    ) -> Self {
        Admin {
            metrics,
            sessions,
            tracer,
            access,
            status: None,
            redis: None,
        }
    }

    /// Serves `/readyz` and `POST /reload` from this status.
    pub fn with_status(mut self, status: Arc<Status>) -> Self {
        self.status = Some(status);
        self
    }

    /// Answers `/readyz` and `/sessions` for the fleet sharing state through `redis`.
    pub fn with_redis(mut self, redis: Option<RedisShared>) -> Self {
        self.redis = redis;
        self
    }

    /// Answers one admin request; `local` is the connection's own address.
    pub async fn handle<B>(&self, request: Request<B>, local: SocketAddr) -> Response<ProxyBody>
    where
        B: http_body::Body<Data = bytes::Bytes>,
        B::Error: Into<crate::body::BoxError>,
    {
        if let Err(refusal) = self.access.check(&request, local) {
            return refusal.response();
        }
        let path = request.uri().path();
        if path == "/ui" || path.starts_with("/ui/") || path.starts_with("/api/") {
            return self.console(request).await;
        }
        if path == "/reload" && request.method() == Method::POST {
            return self.reload().await;
        }
        if let Some(redis) = &self.redis {
            let segments = path_segments(path);
            let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
            match (request.method(), segments.as_slice()) {
                (&Method::GET, ["readyz"]) => {
                    return fleet::readyz(self.status.as_deref(), redis).await
                }
                (&Method::GET, ["sessions"]) => return fleet::list(&self.sessions, redis).await,
                (&Method::DELETE, ["sessions", route, key]) => {
                    return fleet::delete(&self.sessions, redis, route, key).await
                }
                _ => {}
            }
        }
        self.endpoints(request)
    }

    /// `POST /reload`: 200 JSON saying what the new plan kept, or 400 JSON with the error.
    async fn reload(&self) -> Response<ProxyBody> {
        match &self.status {
            Some(status) => match status.reload().await {
                Ok(reloaded) => json_response(StatusCode::OK, &reloaded.to_json()),
                Err(failed) => json_response(StatusCode::BAD_REQUEST, &failed.to_json()),
            },
            None => not_found("this proxy was not started from a config file"),
        }
    }

    /// The console's page and its API (`/ui/…`, `/api/…`); the other endpoints otherwise.
    async fn console<B>(&self, request: Request<B>) -> Response<ProxyBody>
    where
        B: http_body::Body<Data = bytes::Bytes>,
        B::Error: Into<crate::body::BoxError>,
    {
        let path = request.uri().path().to_owned();
        if path == "/ui" {
            let mut response = text(StatusCode::MOVED_PERMANENTLY, "text/plain", "");
            response
                .headers_mut()
                .insert(header::LOCATION, HeaderValue::from_static("/ui/"));
            return response;
        }
        let method = request.method().clone();
        let query = request.uri().query().map(str::to_owned);
        let query = query.as_deref();
        if let Some(name) = path.strip_prefix("/ui/") {
            return match method {
                Method::GET => console::asset(name).unwrap_or_else(|| not_found("no such page")),
                Method::POST if name == "login" => console::login(request.headers()),
                _ => not_found("unknown console page"),
            };
        }
        let api = path.strip_prefix("/api/").unwrap_or_default();
        let Some(tracer) = &self.tracer else {
            return not_found("no exchange records: the admin listener has no tracer");
        };
        let segments: Vec<&str> = api.split('/').collect();
        match (method, segments.as_slice()) {
            (Method::GET, ["feed"]) => console::feed(tracer),
            (Method::GET, ["exchanges"]) => console::exchanges(tracer, query),
            (Method::GET, ["exchanges", id]) => match id.parse() {
                Ok(id) => console::detail(tracer, id),
                Err(_) => not_found("exchange ids are numbers"),
            },
            (Method::GET, ["exchanges", id, "curl"]) => match id.parse() {
                Ok(id) => console::curl(tracer, id),
                Err(_) => not_found("exchange ids are numbers"),
            },
            (Method::GET, ["export.har"]) => console::export_har(tracer, query),
            (Method::GET, ["compare"]) => console::compare_ids(tracer, query),
            (Method::POST, ["compare"]) => {
                // An imported HAR is the largest thing the console sends.
                let limited = http_body_util::Limited::new(request.into_body(), COMPARE_BODY_LIMIT);
                match http_body_util::BodyExt::collect(limited).await {
                    Ok(body) => console::compare_posted(tracer, &body.to_bytes()),
                    Err(_) => json_response(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        &json!({ "error": "too_large", "detail": "the compare request is larger than 32 MiB or was cut off" }),
                    ),
                }
            }
            _ => not_found("unknown console API endpoint"),
        }
    }

    fn endpoints<B>(&self, request: Request<B>) -> Response<ProxyBody> {
        let path = request.uri().path();
        let segments = path_segments(path);
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        match (request.method(), segments.as_slice()) {
            (&Method::GET, ["healthz"]) => text(StatusCode::OK, "text/plain", "ok\n"),
            (&Method::GET, ["readyz"]) => match &self.status {
                Some(status) => {
                    let (ready, body) = status.readiness();
                    let code = if ready {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    };
                    json_response(code, &body)
                }
                None => json_response(StatusCode::OK, &json!({ "ready": true })),
            },
            (&Method::GET, ["metrics"]) => text(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                self.metrics.encode(),
            ),
            (&Method::GET, ["sessions"]) => self.sessions(),
            (&Method::DELETE, ["sessions", route, key]) => {
                if self.sessions.remove(route, key) {
                    text(StatusCode::NO_CONTENT, "application/json", String::new())
                } else {
                    not_found("no such session")
                }
            }
            (&Method::GET, ["exchanges"]) => self.exchanges(request.uri().query()),
            (&Method::GET, ["exchanges", id]) => match (id.parse::<u64>().ok(), &self.tracer) {
                (Some(id), Some(tracer)) => match tracer.get(id) {
                    Some(exchange) => text(StatusCode::OK, "application/json", exchange.to_vec()),
                    None => not_found("no such exchange (it may have left the ring buffer)"),
                },
                (None, _) => not_found("exchange ids are numbers"),
                (_, None) => not_found("tracing is off: add a [trace] table to the config"),
            },
            _ => not_found("unknown admin endpoint"),
        }
    }

    fn sessions(&self) -> Response<ProxyBody> {
        let sessions: Vec<Value> = self
            .sessions
            .list()
            .into_iter()
            .map(|session| {
                json!({
                    "route": session.route,
                    "key": session.key,
                    "cookies": session.cookies,
                    "tokens": session.tokens,
                    "created": timestamp(session.created),
                    "last_used": timestamp(session.last_used),
                    "expires_at": session.expires_at.map(timestamp),
                    "generation": session.generation,
                    "in_use": session.in_use,
                })
            })
            .collect();
        json_response(StatusCode::OK, &Value::Array(sessions))
    }

    fn exchanges(&self, query: Option<&str>) -> Response<ProxyBody> {
        let Some(tracer) = &self.tracer else {
            return not_found("tracing is off: add a [trace] table to the config");
        };
        let mut route = None;
        let mut status = None;
        let mut limit = DEFAULT_EXCHANGES;
        for (name, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match name.as_ref() {
                "route" => route = Some(value.into_owned()),
                "status" => status = value.parse().ok(),
                "limit" => limit = value.parse().unwrap_or(DEFAULT_EXCHANGES),
                _ => {}
            }
        }
        // Each exchange is a rendered JSON object already: splice them into an array.
        let exchanges = tracer.recent(route.as_deref(), status, limit);
        let mut body = Vec::with_capacity(2 + exchanges.iter().map(|e| e.len() + 1).sum::<usize>());
        body.push(b'[');
        for (i, exchange) in exchanges.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(exchange);
        }
        body.push(b']');
        text(StatusCode::OK, "application/json", body)
    }
}

/// The answer on an admin listener whose `[admin]` a reload removed, while it drains.
pub fn gone() -> Response<ProxyBody> {
    not_found("the admin API was removed from the config")
}

fn timestamp(time: SystemTime) -> String {
    time::OffsetDateTime::from(time)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn json_response(status: StatusCode, value: &Value) -> Response<ProxyBody> {
    text(status, "application/json", value.to_string())
}

fn not_found(why: &str) -> Response<ProxyBody> {
    json_response(
        StatusCode::NOT_FOUND,
        &json!({ "error": "not_found", "detail": why }),
    )
}

fn text(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<bytes::Bytes>,
) -> Response<ProxyBody> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// The percent-decoded segments of an admin path (`/sessions/{route}/{key}`): a route name or a
/// session key may hold any character.
fn path_segments(path: &str) -> Vec<String> {
    path.trim_matches('/')
        .split('/')
        .map(|segment| {
            percent_encoding::percent_decode_str(segment)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect()
}
