//! The OAuth token source against a real RFC 6749 token endpoint and a scoped SCIM target,
//! all on 127.0.0.1:0.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use provproxy::auth::oauth::{OAuthError, Token, TokenSource};
use provproxy::clock::ManualClock;
use provproxy::config::{ClientAuth, Grant, OAuthPlan, Secret, SecretSource};
use provproxy::demo::oauth_target::{
    spawn_scim_target, spawn_token_endpoint, FailureMode, TokenEndpointConfig, TokenEndpointStats,
    SCIM_USERS_PATH, TOKEN_PATH,
};
use provproxy::demo::server::TargetServer;
use tokio::sync::Barrier;

const CLIENT_SECRET: &str = "cl1ent-s3cret";
const PASSWORD: &str = "pa55-w0rd";

fn endpoint_config() -> TokenEndpointConfig {
    TokenEndpointConfig {
        client_id: "provproxy".into(),
        client_secret: CLIENT_SECRET.into(),
        users: vec![("svc_provision".into(), PASSWORD.into())],
        ..TokenEndpointConfig::default()
    }
}

async fn endpoint(config: TokenEndpointConfig) -> (TargetServer, TokenEndpointStats) {
    spawn_token_endpoint(config).await.expect("token endpoint")
}

fn secret(value: &str) -> Secret {
    Secret::new(value, SecretSource::Env("TEST".into()))
}

fn plan(server: &TargetServer, grant: Grant, client_auth: ClientAuth) -> OAuthPlan {
    OAuthPlan {
        grant,
        token_url: format!("{}{TOKEN_PATH}", server.url()).parse().unwrap(),
        client_id: "provproxy".into(),
        client_secret: Some(secret(CLIENT_SECRET)),
        client_auth,
        scopes: vec!["scim".into()],
        extra_params: Vec::new(),
        ca_file: None,
        refresh_skew: None,
        timeout: Duration::from_secs(5),
    }
}

fn password_grant() -> Grant {
    Grant::Password {
        username: "svc_provision".into(),
        password: secret(PASSWORD),
    }
}

fn source(plan: &OAuthPlan) -> TokenSource {
    TokenSource::new("onetrust", plan).expect("token source")
}

/// A token source whose time moves only when the test advances `clock`.
fn source_at(plan: &OAuthPlan, clock: &std::sync::Arc<ManualClock>) -> TokenSource {
    TokenSource::with_clock("onetrust", plan, clock.clone()).expect("token source")
}

async fn assert_grant_reaches_endpoint(
    grant: Grant,
    client_auth: ClientAuth,
    expected: (&str, &str),
) {
    let (server, stats) = endpoint(endpoint_config()).await;
    let tokens = source(&plan(&server, grant, client_auth));
    let token = tokens.token().await.expect("token");
    assert!(token.fetched());
    assert_eq!(token.generation(), 1);
    assert!(stats
        .issued_tokens()
        .contains(&token.access_token().expose().to_owned()));
    let log = stats.requests();
    assert_eq!(log.len(), 1);
    assert_eq!((log[0].grant_type.as_str(), log[0].client_auth), expected);
    assert_eq!(log[0].status, 200);
}

#[tokio::test]
async fn client_credentials_with_basic_client_auth_gets_a_token() {
    assert_grant_reaches_endpoint(
        Grant::ClientCredentials,
        ClientAuth::Basic,
        ("client_credentials", "basic"),
    )
    .await;
}

#[tokio::test]
async fn client_credentials_with_post_client_auth_gets_a_token() {
    assert_grant_reaches_endpoint(
        Grant::ClientCredentials,
        ClientAuth::Post,
        ("client_credentials", "post"),
    )
    .await;
}

#[tokio::test]
async fn password_grant_with_basic_client_auth_gets_a_token() {
    assert_grant_reaches_endpoint(password_grant(), ClientAuth::Basic, ("password", "basic")).await;
}

#[tokio::test]
async fn password_grant_with_post_client_auth_gets_a_token() {
    assert_grant_reaches_endpoint(password_grant(), ClientAuth::Post, ("password", "post")).await;
}

#[tokio::test]
async fn scopes_are_sent_space_separated_with_extra_params() {
    let (server, stats) = endpoint(endpoint_config()).await;
    let mut plan = plan(&server, Grant::ClientCredentials, ClientAuth::Basic);
    plan.scopes = vec!["scim".into(), "users.read".into()];
    plan.extra_params = vec![("audience".into(), "https://onetrust.example".into())];
    source(&plan).token().await.expect("token");
    let log = stats.requests();
    assert_eq!(log[0].scope.as_deref(), Some("scim users.read"));
    assert_eq!(
        log[0].extra,
        vec![("audience".to_owned(), "https://onetrust.example".to_owned())]
    );
}

#[tokio::test]
async fn cached_token_is_served_without_a_new_fetch() {
    let (server, stats) = endpoint(endpoint_config()).await;
    let tokens = source(&plan(&server, Grant::ClientCredentials, ClientAuth::Basic));
    let first = tokens.token().await.expect("token");
    let second = tokens.clone().token().await.expect("token");
    assert!(!second.fetched());
    assert_eq!(second.generation(), first.generation());
    assert_eq!(second.authorization(), first.authorization());
    assert_eq!(stats.hits(), 1);
    assert_eq!(tokens.stats().fetches, 1);
}

#[tokio::test]
async fn expired_token_causes_a_new_fetch() {
    let (server, stats) = endpoint(TokenEndpointConfig {
        expires_in: Some(Duration::from_secs(1)),
        ..endpoint_config()
    })
    .await;
    let clock = ManualClock::new();
    let tokens = source_at(
        &plan(&server, Grant::ClientCredentials, ClientAuth::Basic),
        &clock,
    );
    let first = tokens.token().await.expect("token");
    // The 1 s lifetime counts from when the request left, and ends exactly then.
    clock.advance(Duration::from_secs(1));
    let second = tokens.token().await.expect("token");
    assert!(second.fetched());
    assert_eq!(second.generation(), first.generation() + 1);
    assert_ne!(
        second.access_token().expose(),
        first.access_token().expose()
    );
    assert_eq!(stats.hits(), 2);
}

#[tokio::test]
async fn refresh_ahead_serves_the_valid_token_while_the_refresh_is_in_flight() {
    let (server, stats) = endpoint(TokenEndpointConfig {
        expires_in: Some(Duration::from_secs(60)),
        ..endpoint_config()
    })
    .await;
    let mut plan = plan(&server, Grant::ClientCredentials, ClientAuth::Basic);
    // A skew as long as the lifetime puts every token in its refresh window at once.
    plan.refresh_skew = Some(Duration::from_secs(60));
    let clock = ManualClock::new();
    let tokens = source_at(&plan, &clock);
    let first = tokens.token().await.expect("token");
    // Long enough that the refresh is still in flight for the next two callers.
    stats.set_failure(FailureMode::Delay(Duration::from_millis(500)));

    // The first caller in the window starts the refresh, the second finds it in flight; both
    // are served the still-valid token from the cache, without waiting for the refresh.
    for _ in 0..2 {
        let during = tokio::time::timeout(Duration::from_millis(400), tokens.token())
            .await
            .expect("a caller with a valid token must not wait for the refresh")
            .expect("token");
        assert_eq!(during.generation(), first.generation());
        assert!(!during.fetched());
    }

    // Once the old token has expired, a caller waits for the one refresh in flight.
    stats.set_failure(FailureMode::None);
    clock.advance(Duration::from_secs(60));
    let refreshed = tokio::time::timeout(Duration::from_secs(10), tokens.token())
        .await
        .expect("the refresh-ahead fetch completes")
        .expect("token");
    assert_eq!(refreshed.generation(), first.generation() + 1);
    assert!(refreshed.fetched());
    assert_ne!(
        refreshed.access_token().expose(),
        first.access_token().expose()
    );
    assert_eq!(stats.hits(), 2, "one fetch and one refresh");
}

#[tokio::test]
async fn refresh_token_grant_is_used_when_one_was_issued() {
    let (server, stats) = endpoint(TokenEndpointConfig {
        expires_in: Some(Duration::from_secs(1)),
        issue_refresh_tokens: true,
        ..endpoint_config()
    })
    .await;
    let clock = ManualClock::new();
    let tokens = source_at(&plan(&server, password_grant(), ClientAuth::Post), &clock);
    tokens.token().await.expect("token");
    clock.advance(Duration::from_secs(1));
    let second = tokens.token().await.expect("token");
    assert_eq!(second.generation(), 2);
    let grants: Vec<String> = stats.requests().into_iter().map(|r| r.grant_type).collect();
    assert_eq!(grants, ["password", "refresh_token"]);
    assert_eq!(stats.requests()[1].client_auth, "post");
}

#[tokio::test]
async fn rejected_refresh_token_falls_back_to_the_primary_grant() {
    let (server, stats) = endpoint(TokenEndpointConfig {
        issue_refresh_tokens: true,
        ..endpoint_config()
    })
    .await;
    let tokens = source(&plan(&server, Grant::ClientCredentials, ClientAuth::Basic));
    let first = tokens.token().await.expect("token");
    stats.revoke_all();
    tokens.invalidate(first.generation());
    let second = tokens
        .token()
        .await
        .expect("fallback to client_credentials");
    assert_eq!(second.generation(), 2);
    let log = stats.requests();
    let outcomes: Vec<(&str, u16)> = log
        .iter()
        .map(|r| (r.grant_type.as_str(), r.status))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("client_credentials", 200),
            ("refresh_token", 400),
            ("client_credentials", 200)
        ]
    );
    assert_eq!(tokens.stats().fetches, 3);
    assert_eq!(tokens.stats().failures, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_calls_on_an_empty_cache_cause_one_fetch() {
    let (server, stats) = endpoint(endpoint_config()).await;
    // Slow enough that every caller arrives while the one fetch is in flight.
    stats.set_failure(FailureMode::Delay(Duration::from_millis(300)));
    let tokens = source(&plan(&server, Grant::ClientCredentials, ClientAuth::Basic));
    let barrier = Arc::new(Barrier::new(200));
    let calls: Vec<_> = (0..200)
        .map(|_| {
            let (tokens, barrier) = (tokens.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                tokens.token().await
            })
        })
        .collect();
    let mut results = Vec::new();
    for call in calls {
        results.push(call.await.unwrap().expect("token"));
    }
    assert_eq!(stats.hits(), 1);
    assert_eq!(tokens.stats().fetches, 1);
    assert!(results.iter().all(|t| t.generation() == 1));
    assert!(results.iter().all(Token::fetched));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_invalidations_of_one_generation_cause_one_refetch() {
    let (server, stats) = endpoint(endpoint_config()).await;
    let tokens = source(&plan(&server, Grant::ClientCredentials, ClientAuth::Basic));
    let dead = tokens.token().await.expect("token");
    stats.set_failure(FailureMode::Delay(Duration::from_millis(200)));
    let barrier = Arc::new(Barrier::new(50));
    let calls: Vec<_> = (0..50)
        .map(|_| {
            let (tokens, barrier) = (tokens.clone(), barrier.clone());
            let generation = dead.generation();
            tokio::spawn(async move {
                barrier.wait().await;
                tokens.invalidate(generation);
                tokens.token().await
            })
        })
        .collect();
    for call in calls {
        let token = call.await.unwrap().expect("token");
        assert_eq!(token.generation(), dead.generation() + 1);
    }
    assert_eq!(stats.hits(), 2);
}

#[tokio::test]
async fn invalidating_an_old_generation_keeps_the_current_token() {
    let (server, stats) = endpoint(endpoint_config()).await;
    let tokens = source(&plan(&server, Grant::ClientCredentials, ClientAuth::Basic));
    let first = tokens.token().await.expect("token");
    tokens.invalidate(first.generation());
    let second = tokens.token().await.expect("token");
    tokens.invalidate(first.generation());
    let third = tokens.token().await.expect("token");
    assert_eq!(third.generation(), second.generation());
    assert!(!third.fetched());
    assert_eq!(stats.hits(), 2);
}

async fn failing_kind(
    config: TokenEndpointConfig,
    mode: FailureMode,
    timeout: Duration,
) -> OAuthError {
    let (server, stats) = endpoint(config).await;
    stats.set_failure(mode);
    let mut plan = plan(&server, Grant::ClientCredentials, ClientAuth::Basic);
    plan.timeout = timeout;
    source(&plan).token().await.expect_err("the endpoint fails")
}

#[tokio::test]
async fn endpoint_500_is_a_server_error() {
    let err = failing_kind(
        endpoint_config(),
        FailureMode::ServerError,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(err.kind(), "oauth_server_error");
    assert!(err.to_string().contains("HTTP 500"), "{err}");
}

#[tokio::test]
async fn forced_invalid_client_is_reported_with_its_description() {
    let err = failing_kind(
        endpoint_config(),
        FailureMode::InvalidClient,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(err.kind(), "oauth_invalid_client");
    let shown = err.to_string();
    assert!(
        shown.starts_with("route onetrust: token endpoint http://127.0.0.1:"),
        "{shown}"
    );
    assert!(
        shown.contains("invalid_client (Client authentication failed)"),
        "{shown}"
    );
}

#[tokio::test]
async fn wrong_client_secret_is_invalid_client() {
    let (server, _stats) = endpoint(endpoint_config()).await;
    let mut plan = plan(&server, Grant::ClientCredentials, ClientAuth::Post);
    plan.client_secret = Some(secret("not-the-secret"));
    let err = source(&plan).token().await.expect_err("refused");
    assert_eq!(err.kind(), "oauth_invalid_client");
}

#[tokio::test]
async fn scope_the_client_may_not_have_is_invalid_scope() {
    let (server, _stats) = endpoint(endpoint_config()).await;
    let mut plan = plan(&server, Grant::ClientCredentials, ClientAuth::Basic);
    plan.scopes = vec!["admin".into()];
    let err = source(&plan).token().await.expect_err("refused");
    assert_eq!(err.kind(), "oauth_invalid_scope");
}

#[tokio::test]
async fn non_bearer_token_type_is_an_invalid_response() {
    let err = failing_kind(
        TokenEndpointConfig {
            token_type: "mac".into(),
            ..endpoint_config()
        },
        FailureMode::None,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(err.kind(), "oauth_invalid_response");
}

#[tokio::test]
async fn hanging_endpoint_times_out() {
    let started = tokio::time::Instant::now();
    let err = failing_kind(
        endpoint_config(),
        FailureMode::Delay(Duration::from_secs(30)),
        Duration::from_millis(300),
    )
    .await;
    assert_eq!(err.kind(), "oauth_timeout");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn closed_port_is_a_connect_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut plan = plan_for_url(&format!("http://{addr}{TOKEN_PATH}"));
    plan.timeout = Duration::from_secs(5);
    let err = source(&plan).token().await.expect_err("nothing listens");
    assert_eq!(err.kind(), "oauth_connect");
}

fn plan_for_url(url: &str) -> OAuthPlan {
    OAuthPlan {
        grant: Grant::ClientCredentials,
        token_url: url.parse().unwrap(),
        client_id: "provproxy".into(),
        client_secret: Some(secret(CLIENT_SECRET)),
        client_auth: ClientAuth::Basic,
        scopes: Vec::new(),
        extra_params: Vec::new(),
        ca_file: None,
        refresh_skew: None,
        timeout: Duration::from_secs(5),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backoff_answers_callers_with_the_last_error_without_hitting_the_endpoint() {
    let (server, stats) = endpoint(endpoint_config()).await;
    stats.set_failure(FailureMode::ServerError);
    let tokens = source(&plan(&server, Grant::ClientCredentials, ClientAuth::Basic));
    let first = tokens.token().await.expect_err("down");
    let calls: Vec<_> = (0..50)
        .map(|_| {
            let tokens = tokens.clone();
            tokio::spawn(async move { tokens.token().await })
        })
        .collect();
    for call in calls {
        let err = call.await.unwrap().expect_err("still in backoff");
        assert_eq!(err.kind(), first.kind());
    }
    assert_eq!(stats.hits(), 1);
    assert_eq!(tokens.stats().failures, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_backoff_window_one_caller_retries_and_all_recover() {
    let (server, stats) = endpoint(endpoint_config()).await;
    stats.set_failure(FailureMode::ServerError);
    let clock = ManualClock::new();
    let tokens = source_at(
        &plan(&server, Grant::ClientCredentials, ClientAuth::Basic),
        &clock,
    );
    tokens.token().await.expect_err("down");
    stats.set_failure(FailureMode::Delay(Duration::from_millis(100)));
    // The backoff window after the first failure is 0.5 s: one tick short of it, callers still
    // get the failure without a request; at its end, one caller retries for all.
    clock.advance(Duration::from_millis(499));
    tokens.token().await.expect_err("still in backoff");
    assert_eq!(stats.hits(), 1);
    clock.advance(Duration::from_millis(1));
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let tokens = tokens.clone();
            tokio::spawn(async move { tokens.token().await })
        })
        .collect();
    for call in calls {
        call.await.unwrap().expect("recovered");
    }
    assert_eq!(stats.hits(), 2);
    assert_eq!(
        tokens.stats(),
        provproxy::auth::oauth::TokenStats {
            fetches: 2,
            failures: 1
        }
    );
}

#[tokio::test]
async fn no_display_or_debug_contains_a_secret_or_token() {
    for client_auth in [ClientAuth::Basic, ClientAuth::Post] {
        let (server, stats) = endpoint(TokenEndpointConfig {
            issue_refresh_tokens: true,
            ..endpoint_config()
        })
        .await;
        let tokens = source(&plan(&server, password_grant(), client_auth));
        let token = tokens.token().await.expect("token");
        // Echoes every form field and the Authorization header back in error_description.
        stats.set_failure(FailureMode::EchoCredentials);
        tokens.invalidate(token.generation());
        let err = tokens.token().await.expect_err("echoing endpoint");
        assert_eq!(err.kind(), "oauth_invalid_grant");

        let shown = format!(
            "{err} | {err:?} | {tokens:?} | {token:?} | {:?} | {:?}",
            token.authorization(),
            token.access_token()
        );
        assert!(
            shown.contains("[REDACTED]"),
            "the echo must be scrubbed, not dropped: {shown}"
        );
        let basic = STANDARD.encode(format!("provproxy:{CLIENT_SECRET}"));
        let mut secrets = vec![CLIENT_SECRET.to_owned(), PASSWORD.to_owned(), basic];
        secrets.extend(stats.issued_tokens());
        assert!(secrets.len() >= 5);
        for secret in secrets {
            assert!(!shown.contains(&secret), "{secret} leaked: {shown}");
        }
    }
}

async fn call(
    url: &str,
    method: Method,
    authorization: Option<&HeaderValue>,
    body: &str,
) -> (StatusCode, HeaderMap, serde_json::Value) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = Request::builder().method(method).uri(url);
    if let Some(value) = authorization {
        request = request.header(http::header::AUTHORIZATION, value);
    }
    let request = request
        .header(http::header::CONTENT_TYPE, "application/scim+json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let response = client.request(request).await.expect("scim target answers");
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        serde_json::from_slice(&bytes).unwrap_or_default(),
    )
}

#[tokio::test]
async fn token_with_the_scim_scope_is_accepted_by_the_scim_target() {
    let (server, stats) = endpoint(endpoint_config()).await;
    let (scim, scim_stats) = spawn_scim_target(&stats).await.unwrap();
    let users = format!("{}{SCIM_USERS_PATH}", scim.url());
    let token = source(&plan(&server, Grant::ClientCredentials, ClientAuth::Basic))
        .token()
        .await
        .expect("token");
    let (status, headers, _) = call(
        &users,
        Method::POST,
        Some(token.authorization()),
        r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"jdoe"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(headers.contains_key(http::header::LOCATION));
    let (status, _, list) = call(&users, Method::GET, Some(token.authorization()), "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["totalResults"], 1);
    assert_eq!(scim_stats.user_names(), ["jdoe"]);
}

#[tokio::test]
async fn token_without_the_scim_scope_gets_403_insufficient_scope() {
    let (server, stats) = endpoint(endpoint_config()).await;
    let (scim, scim_stats) = spawn_scim_target(&stats).await.unwrap();
    let mut plan = plan(&server, Grant::ClientCredentials, ClientAuth::Basic);
    plan.scopes = vec!["users.read".into()];
    let token = source(&plan).token().await.expect("token");
    let users = format!("{}{SCIM_USERS_PATH}", scim.url());
    let (status, headers, body) = call(&users, Method::GET, Some(token.authorization()), "").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        headers[http::header::WWW_AUTHENTICATE],
        r#"Bearer error="insufficient_scope", scope="scim""#
    );
    assert_eq!(
        body["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:Error"
    );
    assert_eq!(body["status"], "403");
    assert_eq!(scim_stats.rejected(), 1);
}

#[tokio::test]
async fn basic_credentials_get_a_bearer_challenge_from_the_scim_target() {
    let (_server, stats) = endpoint(endpoint_config()).await;
    let (scim, _) = spawn_scim_target(&stats).await.unwrap();
    let users = format!("{}{SCIM_USERS_PATH}", scim.url());
    let basic = HeaderValue::from_static("Basic c3ZjOnB3");
    let (status, headers, _) = call(&users, Method::GET, Some(&basic), "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        headers[http::header::WWW_AUTHENTICATE],
        r#"Bearer realm="scim""#
    );
}

#[tokio::test]
async fn revoked_token_gets_401_and_one_invalidation_and_refetch_recovers() {
    let (server, stats) = endpoint(endpoint_config()).await;
    let (scim, _) = spawn_scim_target(&stats).await.unwrap();
    let users = format!("{}{SCIM_USERS_PATH}", scim.url());
    let tokens = source(&plan(&server, Grant::ClientCredentials, ClientAuth::Basic));
    let dead = tokens.token().await.expect("token");
    stats.revoke_all();
    let (status, headers, _) = call(&users, Method::GET, Some(dead.authorization()), "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        headers[http::header::WWW_AUTHENTICATE],
        r#"Bearer realm="scim", error="invalid_token""#
    );
    // What the pipeline does on a 401: invalidate this generation, fetch once, replay once.
    tokens.invalidate(dead.generation());
    let fresh = tokens.token().await.expect("token");
    assert!(fresh.fetched());
    let (status, _, _) = call(&users, Method::GET, Some(fresh.authorization()), "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stats.hits(), 2);
}

/// A TLS front for a plain endpoint, with a certificate from a private CA written to `ca_file`.
struct TlsFront {
    url: String,
    ca_file: tempfile::NamedTempFile,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn tls_front(target: std::net::SocketAddr) -> TlsFront {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    use rustls_pki_types::PrivatePkcs8KeyDer;

    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provproxy::upstream::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            PrivatePkcs8KeyDer::from(leaf_key.serialize_der()).into(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}{TOKEN_PATH}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                if let Ok(mut plain) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                }
            });
        }
    });
    let mut ca_file = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut ca_file, ca.pem().as_bytes()).unwrap();
    TlsFront { url, ca_file, task }
}

#[tokio::test]
async fn https_token_endpoint_behind_a_private_ca_is_trusted_with_ca_file() {
    let (server, stats) = endpoint(endpoint_config()).await;
    let front = tls_front(server.addr()).await;
    let mut plan = plan_for_url(&front.url);
    plan.ca_file = Some(front.ca_file.path().to_owned());
    let token = source(&plan).token().await.expect("token over TLS");
    assert_eq!(token.generation(), 1);
    assert_eq!(stats.hits(), 1);
}

#[tokio::test]
async fn https_token_endpoint_with_an_untrusted_certificate_is_a_connect_error() {
    let (server, stats) = endpoint(endpoint_config()).await;
    let front = tls_front(server.addr()).await;
    let err = source(&plan_for_url(&front.url))
        .token()
        .await
        .expect_err("unknown CA");
    assert_eq!(err.kind(), "oauth_connect");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    assert_eq!(stats.hits(), 0);
}

#[tokio::test]
async fn unreadable_ca_file_fails_at_setup() {
    let mut plan = plan_for_url("https://127.0.0.1:1/oauth/token");
    plan.ca_file = Some("/nonexistent/ca.pem".into());
    let err = TokenSource::new("onetrust", &plan).expect_err("no CA file");
    assert_eq!(err.kind(), "oauth_setup");
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
}

#[tokio::test]
async fn a_token_response_with_one_malformed_header_line_still_yields_the_token() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}{TOKEN_PATH}", listener.local_addr().unwrap());
    let body = r#"{"access_token":"t0k3n-from-a-sloppy-endpoint","token_type":"Bearer","expires_in":3600}"#;
    let task = tokio::spawn(async move {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        // The request head, then its form body (Content-Length), before answering.
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                return;
            }
            request.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&request);
            let Some((head, form)) = text.split_once("\r\n\r\n") else {
                continue;
            };
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if form.len() >= length {
                break;
            }
        }
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Trace: a\x01b\r\n\
             Cache-Control: no-store\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.read(&mut buf).await;
    });
    let token = source(&plan_for_url(&url))
        .token()
        .await
        .expect("the token despite the bad header line");
    assert_eq!(
        token.authorization().to_str().unwrap(),
        "Bearer t0k3n-from-a-sloppy-endpoint"
    );
    task.abort();
}
