//! A target that requires HTTP Basic on every call, like most REST APIs a connector provisions.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use base64::Engine;
use http::{header, Method, StatusCode};

use super::server::{json, serve, TargetServer};

#[derive(Debug, Default)]
pub struct BasicTargetStats {
    pub requests: AtomicU64,
    pub authorised: AtomicU64,
}

/// Serves `GET /api/users` and `GET /api/users/{id}` to callers with the right Basic
/// credentials; everyone else gets 401 with `WWW-Authenticate: Basic realm="demo"`.
pub async fn spawn(
    username: &str,
    password: &str,
) -> std::io::Result<(TargetServer, Arc<BasicTargetStats>)> {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
    );
    let stats = Arc::new(BasicTargetStats::default());
    let counters = stats.clone();
    let server = serve(move |request| {
        let authorised = request
            .headers()
            .get(header::AUTHORIZATION)
            .is_some_and(|value| value.as_bytes() == expected.as_bytes());
        counters.requests.fetch_add(1, Ordering::Relaxed);
        if authorised {
            counters.authorised.fetch_add(1, Ordering::Relaxed);
        }
        let path = request.uri().path().to_owned();
        let method = request.method().clone();
        async move {
            if !authorised {
                let mut response = json(
                    StatusCode::UNAUTHORIZED,
                    r#"{"error":"authentication required"}"#,
                );
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static(r#"Basic realm="demo""#),
                );
                return response;
            }
            match (method, path.as_str()) {
                (Method::GET, "/api/users") => json(
                    StatusCode::OK,
                    r#"{"Resources":[{"id":"1001","userName":"ada.lovelace"}],"totalResults":1}"#,
                ),
                (Method::GET, user) if user.starts_with("/api/users/") => json(
                    StatusCode::OK,
                    format!(
                        r#"{{"id":"{}","userName":"ada.lovelace"}}"#,
                        &user["/api/users/".len()..]
                    ),
                ),
                _ => json(StatusCode::NOT_FOUND, r#"{"error":"not found"}"#),
            }
        }
    })
    .await?;
    Ok((server, stats))
}
