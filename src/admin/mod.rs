//! Admin endpoints and metrics: `/healthz`, `/metrics`.

pub mod metrics;

use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};

use crate::proxy::body::{full, ProxyBody};
use metrics::Metrics;

pub struct Admin {
    metrics: Arc<Metrics>,
}

impl Admin {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Admin { metrics }
    }

    pub async fn handle<B>(&self, request: Request<B>) -> Response<ProxyBody> {
        match (request.method(), request.uri().path()) {
            (&Method::GET, "/healthz") => text(StatusCode::OK, "text/plain", "ok\n".into()),
            (&Method::GET, "/metrics") => text(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                self.metrics.encode(),
            ),
            _ => text(
                StatusCode::NOT_FOUND,
                "application/json",
                r#"{"error":"not_found"}"#.into(),
            ),
        }
    }
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<ProxyBody> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
