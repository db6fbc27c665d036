//! Who may use the admin API, decided in this one place. The admin API shows redacted exchanges
//! and drops sessions, so: it answers only to its own names (421 otherwise, against DNS
//! rebinding), a state change never comes cross-site from a browser (403), and with `[admin]
//! token` set every endpoint but `/healthz` needs that token (401), as a bearer credential or as
//! the console's `provproxy_admin` cookie.

use std::net::SocketAddr;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::body::{full, ProxyBody};
use crate::config::AdminPlan;
use crate::ingress::origin::{self, ServedNames};

/// The cookie a console session carries the token in (HttpOnly, SameSite=Strict).
pub const COOKIE: &str = "provproxy_admin";

/// Endpoints that answer without the token: liveness and readiness probes (a load balancer's,
/// Kubernetes') carry none and show only the process's state, and the console's page and assets
/// (no data in them) must load to ask for it.
const PUBLIC: &[&str] = &[
    "healthz",
    "readyz",
    "ui",
    "ui/index.html",
    "ui/console.js",
    "ui/console.css",
];

pub struct Access {
    /// SHA-256 of the token, so comparisons take the same time whatever the lengths.
    token: Option<[u8; 32]>,
    served: ServedNames,
}

/// Why an admin request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Misdirected,
    CrossSite,
    Unauthenticated,
}

impl Access {
    pub fn new(plan: &AdminPlan) -> Self {
        Access {
            token: plan
                .token
                .as_ref()
                .map(|token| digest(token.expose().as_bytes())),
            // The admin listener has no TLS of its own.
            served: ServedNames::new(plan.listen, false, plan.hosts.iter().map(String::as_str)),
        }
    }

    /// Admits a request, or says why not. `local` is the connection's own address.
    pub fn check<B>(&self, request: &Request<B>, local: SocketAddr) -> Result<(), Refusal> {
        if !self.served.serves_request(request, local) {
            return Err(Refusal::Misdirected);
        }
        if !request.method().is_safe()
            && origin::is_cross_site(
                request.headers(),
                self.served.scheme(),
                origin::request_authority(request),
            )
        {
            return Err(Refusal::CrossSite);
        }
        let public = PUBLIC.contains(&request.uri().path().trim_matches('/'));
        match &self.token {
            Some(expected) if !public && !presents(request.headers(), expected) => {
                Err(Refusal::Unauthenticated)
            }
            _ => Ok(()),
        }
    }
}

/// Whether the request carries the token: `Authorization: Bearer <token>` or the console cookie.
/// Every candidate is compared, in constant time each.
fn presents(headers: &HeaderMap, expected: &[u8; 32]) -> bool {
    let bearer = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter_map(|value| {
            let (scheme, token) = value.to_str().ok()?.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    let cookies = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE).then(|| {
                let value = value.trim();
                value
                    .strip_prefix('"')
                    .and_then(|quoted| quoted.strip_suffix('"'))
                    .unwrap_or(value)
            })
        });
    bearer.chain(cookies).fold(false, |found, candidate| {
        found | bool::from(digest(candidate.as_bytes()).ct_eq(expected))
    })
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

impl Refusal {
    /// The JSON answer; a 401 says how to authenticate.
    pub fn response(self) -> Response<ProxyBody> {
        let (status, error, detail) = match self {
            Refusal::Misdirected => (
                StatusCode::MISDIRECTED_REQUEST,
                "misdirected_request",
                "the admin listener does not serve the host this request is addressed to; add it to admin.hosts",
            ),
            Refusal::CrossSite => (
                StatusCode::FORBIDDEN,
                "cross_site_request",
                "the admin API refuses state changes sent cross-site by a browser",
            ),
            Refusal::Unauthenticated => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this endpoint needs the admin token: Authorization: Bearer <admin.token>",
            ),
        };
        let body = json!({ "error": error, "detail": detail }).to_string();
        let mut response = Response::new(full(body));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self == Refusal::Unauthenticated {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer realm="provproxy-admin""#),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Secret, SecretSource};

    const TOKEN: &str = "admin-token-3f9c";

    fn access(token: Option<&str>) -> Access {
        Access::new(&AdminPlan {
            listen: ([127, 0, 0, 1], 9090).into(),
            token: token.map(|token| Secret::new(token, SecretSource::Literal)),
            hosts: vec!["ops.internal".into()],
        })
    }

    fn local() -> SocketAddr {
        ([127, 0, 0, 1], 9090).into()
    }

    fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::builder().method(method).uri(path);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn the_token_is_accepted_as_a_bearer_credential_or_as_the_console_cookie() {
        let access = access(Some(TOKEN));
        let bearer = format!("Bearer {TOKEN}");
        let lower = format!("bearer {TOKEN}");
        let cookie = format!("theme=dark; {COOKIE}={TOKEN}");
        let quoted = format!("{COOKIE}=\"{TOKEN}\"");
        for headers in [
            [
                ("host", "localhost:9090"),
                ("authorization", bearer.as_str()),
            ],
            [
                ("host", "localhost:9090"),
                ("authorization", lower.as_str()),
            ],
            [("host", "localhost:9090"), ("cookie", cookie.as_str())],
            [("host", "localhost:9090"), ("cookie", quoted.as_str())],
        ] {
            assert_eq!(
                access.check(&request("GET", "/sessions", &headers), local()),
                Ok(()),
                "{headers:?}"
            );
        }
    }

    #[test]
    fn without_the_token_only_healthz_answers() {
        let access = access(Some(TOKEN));
        let host = ("host", "127.0.0.1:9090");
        assert_eq!(
            access.check(&request("GET", "/healthz", &[host]), local()),
            Ok(())
        );
        for headers in [
            &[host][..],
            &[host, ("authorization", "Bearer admin-token-3f9d")],
            &[host, ("authorization", "Basic YWRtaW4tdG9rZW4tM2Y5Yw==")],
            &[
                host,
                ("cookie", "provproxy_admin=nope; other=admin-token-3f9c"),
            ],
        ] {
            assert_eq!(
                access.check(&request("GET", "/exchanges", headers), local()),
                Err(Refusal::Unauthenticated),
                "{headers:?}"
            );
        }
    }

    #[test]
    fn without_a_configured_token_a_loopback_admin_needs_none() {
        let access = access(None);
        let host = [("host", "localhost:9090")];
        assert_eq!(
            access.check(&request("GET", "/exchanges", &host), local()),
            Ok(())
        );
    }

    #[test]
    fn foreign_hosts_are_misdirected_even_for_healthz_and_configured_hosts_are_served() {
        let access = access(Some(TOKEN));
        let bearer = format!("Bearer {TOKEN}");
        let evil = [("host", "evil.example:9090"), ("authorization", &bearer)];
        assert_eq!(
            access.check(&request("GET", "/healthz", &evil), local()),
            Err(Refusal::Misdirected)
        );
        let ops = [("host", "ops.internal"), ("authorization", &bearer)];
        assert_eq!(
            access.check(&request("GET", "/sessions", &ops), local()),
            Ok(())
        );
    }

    #[test]
    fn state_changes_sent_cross_site_are_refused_even_with_the_token() {
        let access = access(Some(TOKEN));
        let bearer = format!("Bearer {TOKEN}");
        let path = "/sessions/r/k";
        for extra in [
            ("origin", "http://evil.example"),
            ("sec-fetch-site", "cross-site"),
            ("sec-fetch-site", "same-site"),
        ] {
            let headers = [
                ("host", "localhost:9090"),
                ("authorization", &bearer),
                extra,
            ];
            for method in ["DELETE", "POST"] {
                assert_eq!(
                    access.check(&request(method, path, &headers), local()),
                    Err(Refusal::CrossSite),
                    "{method} {extra:?}"
                );
            }
            assert_eq!(
                access.check(&request("GET", "/sessions", &headers), local()),
                Ok(()),
                "a cross-site GET cannot read the answer; the token guards it"
            );
        }
        let same_origin = [
            ("host", "localhost:9090"),
            ("authorization", &bearer),
            ("origin", "http://localhost:9090"),
        ];
        assert_eq!(
            access.check(&request("DELETE", path, &same_origin), local()),
            Ok(())
        );
    }

    #[test]
    fn a_401_carries_the_admin_bearer_challenge() {
        let response = Refusal::Unauthenticated.response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            r#"Bearer realm="provproxy-admin""#
        );
        assert_eq!(
            Refusal::Misdirected.response().status(),
            StatusCode::MISDIRECTED_REQUEST
        );
    }
}
