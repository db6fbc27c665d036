//! A ServiceNow-like target with an API Access Policy active: it accepts `Authorization: Basic`
//! but its 401 advertises only one scheme (`Bearer`), so clients that wait for the challenge
//! before sending credentials never send Basic.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use subtle::ConstantTimeEq;

use super::server::{json, serve, TargetServer};

/// What the target's 401 advertises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advertise {
    /// `WWW-Authenticate: Bearer realm="servicenow"`, as with "Advertise all auth schemes" off.
    BearerOnly,
    /// One combined line, `Digest realm="t", nonce="abc", qop="auth", Basic realm="t"`: Apache
    /// HttpClient 4 sees only the first challenge of a line.
    DigestAndBasicCombined,
}

impl Advertise {
    fn header(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Advertise::BearerOnly => r#"Bearer realm="servicenow""#,
            Advertise::DigestAndBasicCombined => {
                r#"Digest realm="t", nonce="abc", qop="auth", Basic realm="t""#
            }
        })
    }
}

/// Counts shared with the running target; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct SingleSchemeStats {
    counters: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    unauthorized: AtomicU64,
    authorized: AtomicU64,
}

impl SingleSchemeStats {
    pub fn requests(&self) -> u64 {
        self.counters.requests.load(Ordering::Relaxed)
    }

    /// Requests answered with 401.
    pub fn unauthorized(&self) -> u64 {
        self.counters.unauthorized.load(Ordering::Relaxed)
    }

    /// Requests that carried the right Basic credentials.
    pub fn authorized(&self) -> u64 {
        self.counters.authorized.load(Ordering::Relaxed)
    }
}

const NOT_AUTHENTICATED: &str = r#"{"error":{"message":"User Not Authenticated","detail":"Required to provide Auth information"},"status":"failure"}"#;
const SYS_USER: &str = r#"{"result":[{"sys_id":"6816f79cc0a8016401c5a33be04be441","user_name":"svc_provision","name":"Provisioning Service","active":"true"}]}"#;
const EMPTY_RESULT: &str = r#"{"result":[]}"#;
const NO_RESOURCE: &str = r#"{"error":{"message":"Requested URI does not represent any resource","detail":null},"status":"failure"}"#;

/// The Bearer-only target (the ServiceNow field case).
pub async fn spawn(
    username: &str,
    password: &str,
) -> std::io::Result<(TargetServer, SingleSchemeStats)> {
    spawn_advertising(Advertise::BearerOnly, username, password).await
}

/// A target that accepts Basic with these credentials and whose 401 advertises `advertise`.
pub async fn spawn_advertising(
    advertise: Advertise,
    username: &str,
    password: &str,
) -> std::io::Result<(TargetServer, SingleSchemeStats)> {
    let expected: Arc<[u8]> = format!("{username}:{password}").into_bytes().into();
    let challenge = advertise.header();
    let stats = SingleSchemeStats::default();
    let counters = stats.counters.clone();
    let server = serve(move |request: Request<Bytes>| {
        let response = respond(&request, &expected, &challenge, &counters);
        async move { response }
    })
    .await?;
    Ok((server, stats))
}

fn respond(
    request: &Request<Bytes>,
    expected: &[u8],
    challenge: &HeaderValue,
    counters: &Counters,
) -> Response<Full<Bytes>> {
    counters.requests.fetch_add(1, Ordering::Relaxed);
    if !carries_basic(request, expected) {
        counters.unauthorized.fetch_add(1, Ordering::Relaxed);
        let mut response = json(StatusCode::UNAUTHORIZED, NOT_AUTHENTICATED);
        response
            .headers_mut()
            .insert(WWW_AUTHENTICATE, challenge.clone());
        return response;
    }
    counters.authorized.fetch_add(1, Ordering::Relaxed);
    let path = request.uri().path();
    if request.method() == Method::GET && path == "/api/now/table/sys_user" {
        json(StatusCode::OK, SYS_USER)
    } else if path.starts_with("/api/") {
        json(StatusCode::OK, EMPTY_RESULT)
    } else {
        json(StatusCode::NOT_FOUND, NO_RESOURCE)
    }
}

fn carries_basic(request: &Request<Bytes>, expected: &[u8]) -> bool {
    let Some(value) = request.headers().get(AUTHORIZATION) else {
        return false;
    };
    let Some((scheme, encoded)) = value.to_str().ok().and_then(|v| v.split_once(' ')) else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return false;
    }
    match base64::engine::general_purpose::STANDARD.decode(encoded.trim()) {
        Ok(decoded) => bool::from(decoded.ct_eq(expected)),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREDENTIALS: &[u8] = b"svc:pw";

    fn request(method: Method, path: &str, authorization: Option<&'static str>) -> Request<Bytes> {
        let mut builder = Request::builder().method(method).uri(path);
        if let Some(value) = authorization {
            builder = builder.header(AUTHORIZATION, value);
        }
        builder.body(Bytes::new()).expect("valid request")
    }

    fn call(advertise: Advertise, request: &Request<Bytes>) -> (Response<Full<Bytes>>, Counters) {
        let counters = Counters::default();
        let response = respond(request, CREDENTIALS, &advertise.header(), &counters);
        (response, counters)
    }

    #[test]
    fn unauthenticated_request_gets_servicenow_401_advertising_bearer_only() {
        let (response, counters) = call(
            Advertise::BearerOnly,
            &request(Method::GET, "/api/now/table/sys_user", None),
        );
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let challenges: Vec<_> = response
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .collect();
        assert_eq!(challenges, vec![r#"Bearer realm="servicenow""#]);
        assert_eq!(counters.unauthorized.load(Ordering::Relaxed), 1);
        assert_eq!(counters.authorized.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn combined_variant_advertises_digest_and_basic_on_one_line() {
        let (response, _) = call(
            Advertise::DigestAndBasicCombined,
            &request(Method::GET, "/api/now/table/sys_user", None),
        );
        let challenges: Vec<_> = response
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .collect();
        assert_eq!(
            challenges,
            vec![r#"Digest realm="t", nonce="abc", qop="auth", Basic realm="t""#]
        );
    }

    #[test]
    fn basic_with_the_right_credentials_is_accepted_in_any_scheme_case() {
        // base64("svc:pw") = "c3ZjOnB3"
        for authorization in ["Basic c3ZjOnB3", "basic c3ZjOnB3"] {
            let (response, counters) = call(
                Advertise::BearerOnly,
                &request(Method::GET, "/api/now/table/sys_user", Some(authorization)),
            );
            assert_eq!(response.status(), StatusCode::OK, "{authorization}");
            assert_eq!(counters.authorized.load(Ordering::Relaxed), 1);
        }
    }

    #[test]
    fn wrong_credentials_and_other_schemes_are_refused() {
        // base64("svc:no") = "c3ZjOm5v"
        for authorization in ["Basic c3ZjOm5v", "Bearer c3ZjOnB3", "Basic !!", "Basic"] {
            let (response, _) = call(
                Advertise::BearerOnly,
                &request(Method::GET, "/api/now/table/sys_user", Some(authorization)),
            );
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{authorization}"
            );
        }
    }

    #[test]
    fn authorised_requests_under_api_succeed_and_others_are_not_found() {
        let (response, _) = call(
            Advertise::BearerOnly,
            &request(
                Method::POST,
                "/api/now/table/sys_user_grmember",
                Some("Basic c3ZjOnB3"),
            ),
        );
        assert_eq!(response.status(), StatusCode::OK);
        let (response, _) = call(
            Advertise::BearerOnly,
            &request(Method::GET, "/login.do", Some("Basic c3ZjOnB3")),
        );
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }
}
