//! OAuth 2.0 through the proxy (the "Basic blocked, OAuth required" and "scoped token" cases):
//! the proxy fetches, caches, shares and renews the token; the target's own refusals pass
//! through untouched; endpoint failures become 502s that name the route and the OAuth error;
//! no secret or token ever shows, not even in the real binary's debug logs.

#[path = "support/sessions.rs"]
mod support_sessions;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use http::header::WWW_AUTHENTICATE;
use http::{Method, StatusCode};
use provproxy::clock::ManualClock;
use provproxy::demo::client::Reply;
use provproxy::demo::demo_secret;
use provproxy::demo::oauth_target::{
    spawn_scim_target, spawn_token_endpoint, FailureMode, ScimStats, TokenEndpointConfig,
    TokenEndpointStats, SCIM_USERS_PATH, TOKEN_PATH,
};
use provproxy::demo::server::TargetServer;
use provproxy::server::StartOptions;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};

use support_sessions::{body_json, client, get, send, start, try_start, write_file, Binary};

const CLIENT_ID: &str = "provproxy";
const USER: &str = "svc_provision";
const SCIM_JSON: (&str, &str) = ("content-type", "application/scim+json");

/// An endpoint with fresh secrets (so nothing can depend on, or leak, a fixed one).
struct Endpoint {
    server: TargetServer,
    stats: TokenEndpointStats,
    secret: String,
    password: String,
}

impl Endpoint {
    async fn spawn() -> Endpoint {
        Endpoint::spawn_with(demo_secret("client-secret"), demo_secret("password")).await
    }

    /// Another endpoint that accepts the same client and user.
    async fn twin(&self) -> Endpoint {
        Endpoint::spawn_with(self.secret.clone(), self.password.clone()).await
    }

    async fn spawn_with(secret: String, password: String) -> Endpoint {
        let config = TokenEndpointConfig {
            client_id: CLIENT_ID.into(),
            client_secret: secret.clone(),
            users: vec![(USER.into(), password.clone())],
            ..TokenEndpointConfig::default()
        };
        let (server, stats) = spawn_token_endpoint(config)
            .await
            .expect("start the token endpoint");
        Endpoint {
            server,
            stats,
            secret,
            password,
        }
    }

    fn token_url(&self) -> String {
        format!("{}{TOKEN_PATH}", self.server.url())
    }

    async fn scim(&self) -> (TargetServer, ScimStats) {
        spawn_scim_target(&self.stats)
            .await
            .expect("start the SCIM target")
    }
}

/// One OAuth route; `grant` is `client_credentials` or `password`, `client_auth` `basic` or
/// `post`. The client secret comes from `SECRET_ENV`, the password from `PASSWORD_ENV`.
struct Route<'a> {
    name: &'a str,
    upstream: String,
    token_url: String,
    grant: &'a str,
    client_auth: &'a str,
    scopes: &'a str,
}

const SECRET_ENV: &str = "OAUTH_CLIENT_SECRET";
const PASSWORD_ENV: &str = "OAUTH_PASSWORD";

impl Route<'_> {
    fn client_credentials<'a>(
        name: &'a str,
        upstream: impl Into<String>,
        token_url: impl Into<String>,
    ) -> Route<'a> {
        Route {
            name,
            upstream: upstream.into(),
            token_url: token_url.into(),
            grant: "client_credentials",
            client_auth: "basic",
            scopes: r#"["scim"]"#,
        }
    }

    /// `prefix = "/NAME/"`, stripped, so `/NAME/scim/v2/Users` reaches the target's SCIM path.
    fn toml(&self) -> String {
        let Route {
            name,
            upstream,
            token_url,
            grant,
            client_auth,
            scopes,
        } = self;
        let password = if *grant == "password" {
            format!("username = \"{USER}\"\npassword = {{ env = \"{PASSWORD_ENV}\" }}\n")
        } else {
            String::new()
        };
        format!(
            r#"
[[routes]]
name = "{name}"
prefix = "/{name}/"
strip_prefix = true
upstream = "{upstream}"

[routes.auth]
kind = "oauth2"
grant = "{grant}"
token_url = "{token_url}"
client_id = "{CLIENT_ID}"
client_secret = {{ env = "{SECRET_ENV}" }}
client_auth = "{client_auth}"
scopes = {scopes}
{password}"#
        )
    }
}

fn config(routes: &[Route<'_>], extra: &str) -> String {
    let mut text = format!("[server]\nlisten = \"127.0.0.1:0\"\n{extra}\n");
    for route in routes {
        text.push_str(&route.toml());
    }
    text
}

async fn proxy(routes: &[Route<'_>], endpoint: &Endpoint) -> provproxy::server::Running {
    start(
        &config(routes, ""),
        &[
            (SECRET_ENV, endpoint.secret.as_str()),
            (PASSWORD_ENV, endpoint.password.as_str()),
        ],
    )
    .await
}

fn users_url(addr: SocketAddr, route: &str) -> String {
    format!("http://{addr}/{route}{SCIM_USERS_PATH}")
}

fn new_user(name: &str) -> String {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": name,
        "active": true,
    })
    .to_string()
}

/// A token straight from the endpoint, as the connector would get it without the proxy.
async fn direct_token(endpoint: &Endpoint, scope: Option<&str>) -> String {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "client_credentials")
        .append_pair("client_id", CLIENT_ID)
        .append_pair("client_secret", &endpoint.secret);
    if let Some(scope) = scope {
        form.append_pair("scope", scope);
    }
    let reply = send(
        Method::POST,
        &endpoint.token_url(),
        &[("content-type", "application/x-www-form-urlencoded")],
        form.finish(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    body_json(&reply)["access_token"]
        .as_str()
        .expect("a token")
        .to_owned()
}

fn challenges(reply: &Reply) -> Vec<String> {
    reply
        .headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_client_credentials_token_serves_get_and_post_with_one_token_fetch() {
    let endpoint = Endpoint::spawn().await;
    let (scim, scim_stats) = endpoint.scim().await;
    let url = endpoint.token_url();
    let proxy = proxy(
        &[Route::client_credentials("onetrust", scim.url(), &url)],
        &endpoint,
    )
    .await;
    let users = users_url(proxy.addr(), "onetrust");
    let created = send(Method::POST, &users, &[SCIM_JSON], new_user("jdoe")).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    for _ in 0..10 {
        let listed = get(&users, &[]).await;
        assert_eq!(listed.status, StatusCode::OK, "{}", listed.text());
        assert_eq!(body_json(&listed)["Resources"][0]["userName"], "jdoe");
    }
    assert_eq!(endpoint.stats.hits(), 1, "one token for every request");
    assert_eq!(scim_stats.rejected(), 0);
    let asked = endpoint.stats.requests();
    assert_eq!(asked[0].scope.as_deref(), Some("scim"));
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_without_the_scope_gets_the_targets_403_insufficient_scope_untouched() {
    let endpoint = Endpoint::spawn().await;
    let (scim, _scim_stats) = endpoint.scim().await;
    let url = endpoint.token_url();
    let unscoped = Route {
        scopes: "[]",
        ..Route::client_credentials("unscoped", scim.url(), &url)
    };
    let proxy = proxy(&[unscoped], &endpoint).await;

    let token = direct_token(&endpoint, None).await;
    let bearer = format!("Bearer {token}");
    let direct = get(
        &format!("{}{SCIM_USERS_PATH}", scim.url()),
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(direct.status, StatusCode::FORBIDDEN);

    let proxied = get(&users_url(proxy.addr(), "unscoped"), &[]).await;
    assert_eq!(proxied.status, StatusCode::FORBIDDEN, "{}", proxied.text());
    assert_eq!(proxied.body, direct.body, "the target's body, unchanged");
    assert_eq!(challenges(&proxied), challenges(&direct));
    assert_eq!(
        challenges(&proxied),
        [r#"Bearer error="insufficient_scope", scope="scim""#]
    );
    let asked = endpoint.stats.requests();
    assert_eq!(asked.len(), 2, "a 403 is not a reason to fetch again");
    assert_eq!(asked[1].scope, None, "the proxy asked for no scope");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_grants_with_both_client_auth_methods_work_end_to_end() {
    let endpoint = Endpoint::spawn().await;
    let (scim, _scim_stats) = endpoint.scim().await;
    let (upstream, url) = (scim.url(), endpoint.token_url());
    let combinations = [
        ("ccbasic", "client_credentials", "basic"),
        ("ccpost", "client_credentials", "post"),
        ("pwbasic", "password", "basic"),
        ("pwpost", "password", "post"),
    ];
    let routes: Vec<Route<'_>> = combinations
        .iter()
        .map(|(name, grant, client_auth)| Route {
            grant,
            client_auth,
            ..Route::client_credentials(name, &upstream, &url)
        })
        .collect();
    let proxy = proxy(&routes, &endpoint).await;
    for (name, _, _) in combinations {
        let created = send(
            Method::POST,
            &users_url(proxy.addr(), name),
            &[SCIM_JSON],
            new_user(&format!("user.{name}")),
        )
        .await;
        assert_eq!(
            created.status,
            StatusCode::CREATED,
            "{name}: {}",
            created.text()
        );
    }
    let mut seen: Vec<(String, &str, Option<String>, u16)> = endpoint
        .stats
        .requests()
        .into_iter()
        .map(|r| (r.grant_type, r.client_auth, r.username, r.status))
        .collect();
    seen.sort();
    let user = Some(USER.to_owned());
    assert_eq!(
        seen,
        [
            ("client_credentials".into(), "basic", None, 200),
            ("client_credentials".into(), "post", None, 200),
            ("password".into(), "basic", user.clone(), 200),
            ("password".into(), "post", user, 200),
        ]
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_requests_on_an_empty_cache_cause_one_token_fetch() {
    let endpoint = Endpoint::spawn().await;
    let (scim, scim_stats) = endpoint.scim().await;
    let url = endpoint.token_url();
    let proxy = proxy(
        &[Route::client_credentials("scim", scim.url(), &url)],
        &endpoint,
    )
    .await;
    let users = users_url(proxy.addr(), "scim");
    let client = client();
    let calls: Vec<_> = (0..200)
        .map(|_| {
            let (client, users) = (client.clone(), users.clone());
            tokio::spawn(async move { client.get(&users, &[]).await })
        })
        .collect();
    for call in calls {
        let reply = call.await.expect("task").expect("request");
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }
    assert_eq!(endpoint.stats.hits(), 1);
    assert_eq!(scim_stats.requests(), 200);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_token_is_refetched_once_and_the_post_replayed_with_its_body() {
    let endpoint = Endpoint::spawn().await;
    let (scim, scim_stats) = endpoint.scim().await;
    let url = endpoint.token_url();
    let proxy = proxy(
        &[Route::client_credentials("scim", scim.url(), &url)],
        &endpoint,
    )
    .await;
    let users = users_url(proxy.addr(), "scim");
    assert_eq!(get(&users, &[]).await.status, StatusCode::OK);
    assert_eq!(endpoint.stats.hits(), 1);

    endpoint.stats.revoke_all();
    let created = send(Method::POST, &users, &[SCIM_JSON], new_user("after.revoke")).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    assert_eq!(body_json(&created)["userName"], "after.revoke");
    assert_eq!(
        scim_stats.user_names(),
        ["after.revoke"],
        "the replay carried the body"
    );
    assert_eq!(endpoint.stats.hits(), 2, "exactly one more token");
    assert_eq!(scim_stats.rejected(), 1, "one refused attempt, one replay");
    assert_eq!(scim_stats.requests(), 3);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_token_the_target_also_refuses_goes_back_as_401_without_looping() {
    // The target trusts one endpoint; the proxy gets its tokens from another, so every token it
    // injects is refused.
    let trusted = Endpoint::spawn().await;
    let (scim, scim_stats) = trusted.scim().await;
    let foreign = Endpoint::spawn().await;
    let url = foreign.token_url();
    let proxy = proxy(
        &[Route::client_credentials("scim", scim.url(), &url)],
        &foreign,
    )
    .await;
    let users = users_url(proxy.addr(), "scim");
    let refused = send(Method::POST, &users, &[SCIM_JSON], new_user("never")).await;
    assert_eq!(
        refused.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        refused.text()
    );
    assert_eq!(
        challenges(&refused),
        [r#"Bearer realm="scim", error="invalid_token""#]
    );
    assert_eq!(foreign.stats.hits(), 2, "the first token and one refetch");
    assert_eq!(scim_stats.requests(), 2, "one attempt and one replay");
    assert!(scim_stats.user_names().is_empty());
    proxy.shutdown().await;
}

/// A port nothing listens on: bound, then released.
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("addr")
}

/// Brings a closed port back: listens on it again and relays every connection to `to`.
async fn reopen(port: SocketAddr, to: SocketAddr) -> tokio::task::JoinHandle<()> {
    let listener = TcpListener::bind(port).await.expect("rebind the port");
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_failures_become_502s_naming_route_and_oauth_error_and_heal() {
    let failing = Endpoint::spawn().await;
    let refusing = failing.twin().await;
    let closed = failing.twin().await;
    failing.stats.set_failure(FailureMode::ServerError);
    refusing.stats.set_failure(FailureMode::InvalidClient);
    let (scim_a, _) = failing.scim().await;
    let (scim_b, _) = refusing.scim().await;
    let (scim_c, _) = closed.scim().await;
    let down = closed_port().await;
    let (url_a, url_b) = (failing.token_url(), refusing.token_url());
    let url_c = format!("http://{down}{TOKEN_PATH}");
    // The three endpoints share one client secret, so every 502 is checked against it.
    let secret = failing.secret.clone();
    let routes = [
        Route::client_credentials("down500", scim_a.url(), &url_a),
        Route::client_credentials("refused", scim_b.url(), &url_b),
        Route::client_credentials("closed", scim_c.url(), &url_c),
    ];
    let clock = ManualClock::new();
    let options = StartOptions {
        clock: Some(clock.clone()),
        ..StartOptions::default()
    };
    let secrets = [(SECRET_ENV, secret.as_str())];
    let proxy = try_start(&config(&routes, ""), Path::new("."), &secrets, options)
        .await
        .expect("proxy starts");

    for (route, kind) in [
        ("down500", "oauth_server_error"),
        ("refused", "oauth_invalid_client"),
        ("closed", "oauth_connect"),
    ] {
        let reply = get(&users_url(proxy.addr(), route), &[]).await;
        assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{route}");
        let body = body_json(&reply);
        assert_eq!(body["error"], kind, "{route}: {body}");
        assert_eq!(body["route"], route);
        assert_eq!(body["side"], "upstream");
        assert!(
            body["detail"].as_str().is_some_and(|d| d.contains(route)),
            "{body}"
        );
        assert!(!reply.text().contains(&secret), "{route}: {}", reply.text());
    }

    failing.stats.set_failure(FailureMode::None);
    refusing.stats.set_failure(FailureMode::None);
    let relay = reopen(down, closed.server.addr()).await;
    // Within the token source's 0.5 s backoff after a failure, the failure is answered again.
    let reply = get(&users_url(proxy.addr(), "down500"), &[]).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    clock.advance(Duration::from_millis(500));
    for route in ["down500", "refused", "closed"] {
        let reply = get(&users_url(proxy.addr(), route), &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "{route}: {}", reply.text());
    }
    relay.abort();
    proxy.shutdown().await;
}

/// Every form in which `plain` could leak: as is and base64 in the usual alphabets.
fn forms(plain: &str) -> Vec<String> {
    let mut forms: Vec<String> = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .map(|engine| engine.encode(plain))
        .collect();
    forms.push(plain.to_owned());
    forms
}

fn reply_text(reply: &Reply) -> String {
    let mut text = format!("{}\n", reply.status);
    for (name, value) in &reply.headers {
        text.push_str(&format!(
            "{name}: {}\n",
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    text.push_str(&reply.text());
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_binary_never_shows_the_client_secret_the_password_or_any_token() {
    let endpoint = Endpoint::spawn().await;
    let (scim, _scim_stats) = endpoint.scim().await;
    // Echoes the credentials it received in its error description, as bad endpoints do.
    let echoing = Endpoint::spawn().await;
    echoing.stats.set_failure(FailureMode::EchoCredentials);
    let down = closed_port().await;
    let (url, echo_url) = (endpoint.token_url(), echoing.token_url());
    let down_url = format!("http://{down}{TOKEN_PATH}");
    let upstream = scim.url();
    let routes = [
        Route::client_credentials("cc", &upstream, &url),
        Route {
            grant: "password",
            client_auth: "post",
            ..Route::client_credentials("pw", &upstream, &url)
        },
        Route {
            grant: "password",
            ..Route::client_credentials("echo", &upstream, &echo_url)
        },
        Route::client_credentials("down", &upstream, &down_url),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let trace = dir.path().join("trace.jsonl");
    let extra = format!(
        "\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[trace]\njsonl = {:?}\nbodies = true\n",
        trace.display().to_string()
    );
    let config_file = write_file(dir.path(), "provproxy.toml", &config(&routes, &extra));
    // The echoing endpoint has its own secrets; the route sends the main endpoint's, and the
    // echo must not carry them anywhere.
    let env = [
        (SECRET_ENV, endpoint.secret.as_str()),
        (PASSWORD_ENV, endpoint.password.as_str()),
        ("RUST_LOG", "debug"),
    ];
    let mut binary = Binary::run(&config_file, &env, &[]);
    let (addr, admin) = binary.wait_listening();
    let admin = admin.expect("admin listener");

    let mut replies = Vec::new();
    let mut expect = |reply: Reply, status: StatusCode, what: &str| {
        assert_eq!(reply.status, status, "{what}: {}", reply.text());
        replies.push(reply);
    };
    expect(get(&users_url(addr, "cc"), &[]).await, StatusCode::OK, "cc");
    expect(
        send(
            Method::POST,
            &users_url(addr, "pw"),
            &[SCIM_JSON],
            new_user("pw.user"),
        )
        .await,
        StatusCode::CREATED,
        "password grant",
    );
    endpoint.stats.revoke_all();
    expect(
        get(&users_url(addr, "cc"), &[]).await,
        StatusCode::OK,
        "refetch and replay",
    );
    let echoed = get(&users_url(addr, "echo"), &[]).await;
    assert_eq!(body_json(&echoed)["error"], "oauth_invalid_grant");
    expect(echoed, StatusCode::BAD_GATEWAY, "echoing endpoint");
    expect(
        get(&users_url(addr, "down"), &[]).await,
        StatusCode::BAD_GATEWAY,
        "closed port",
    );
    expect(
        get(
            &users_url(addr, "cc"),
            &[("authorization", "Bearer Bearer pasted")],
        )
        .await,
        StatusCode::OK,
        "client credential replaced",
    );
    for path in ["/metrics", "/sessions", "/exchanges"] {
        expect(
            get(&format!("http://{admin}{path}"), &[]).await,
            StatusCode::OK,
            path,
        );
    }

    let (status, stdout, stderr) = binary.terminate().await;
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("DEBUG"), "debug logging was on:\n{stderr}");
    let trace_text = std::fs::read_to_string(&trace).expect("trace written");
    assert!(
        trace_text.contains(r#""route":"cc""#),
        "the trace has the exchanges"
    );

    let mut secrets = vec![
        endpoint.secret.clone(),
        endpoint.password.clone(),
        format!("{CLIENT_ID}:{}", endpoint.secret),
    ];
    let tokens: Vec<String> = [&endpoint, &echoing]
        .iter()
        .flat_map(|e| e.stats.issued_tokens())
        .collect();
    assert!(tokens.len() >= 3, "tokens were issued: {}", tokens.len());
    secrets.extend(tokens);
    let mut places = vec![
        ("stderr".to_owned(), stderr),
        ("stdout".to_owned(), stdout),
        ("the JSON-lines trace".to_owned(), trace_text),
    ];
    places.extend(
        replies
            .iter()
            .map(|reply| (format!("a {} response", reply.status), reply_text(reply))),
    );
    for secret in &secrets {
        for form in forms(secret) {
            for (place, text) in &places {
                assert!(!text.contains(&form), "{place} contains {form:?}");
            }
        }
    }
    assert!(
        echoing.stats.hits() >= 1,
        "the echoing endpoint was asked (so its echo was there to leak)"
    );
}

/// The token request shows in the trace as its own record, with the client secret, the Basic
/// client credential and the issued token all redacted.
#[tokio::test]
async fn the_token_fetch_is_traced_without_the_secret_or_the_token() {
    let endpoint = Endpoint::spawn().await;
    let (scim, _) = endpoint.scim().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let har = dir.path().join("trace.har");
    let url = endpoint.token_url();
    let proxy = start(
        &config(
            &[Route::client_credentials("onetrust", scim.url(), &url)],
            &format!("\n[trace]\nhar = {:?}\n", har.display().to_string()),
        ),
        &[(SECRET_ENV, endpoint.secret.as_str())],
    )
    .await;
    let listed = get(&users_url(proxy.addr(), "onetrust"), &[]).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text());
    proxy.shutdown().await;
    let text = std::fs::read_to_string(&har).expect("trace written");
    let trace: serde_json::Value = serde_json::from_str(&text).expect("HAR is JSON");
    let entries = trace["log"]["entries"].as_array().expect("entries");
    let fetch = entries
        .iter()
        .find(|entry| entry["_provproxy"]["role"] == "token")
        .expect("a token-fetch record");
    assert_eq!(fetch["request"]["url"], url.as_str());
    assert_eq!(fetch["response"]["status"], 200);
    assert!(
        text.contains("expires_in"),
        "the token response's public fields are kept"
    );
    let mut secrets = forms(&endpoint.secret);
    secrets.extend(forms(&format!("{CLIENT_ID}:{}", endpoint.secret)));
    for token in endpoint.stats.issued_tokens() {
        secrets.extend(forms(&token));
    }
    for secret in secrets {
        assert!(!text.contains(&secret), "the trace holds a secret");
    }
}
