//! Who may use the proxy: bearer-token, Basic and client-certificate clients are admitted and
//! their own credential never reaches the target; everyone else is refused before anything is
//! forwarded, counted in `/metrics`, and logged at a bounded rate. A listener reachable from
//! other hosts needs clients (or an explicit `allow_anyone`). Requests addressed to names the
//! proxy does not serve (421) and browsers' cross-site requests (403) are refused before any
//! credential is injected; hop-by-hop headers never reach the target.

mod common;
#[path = "support/binary.rs"]
mod support_binary;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use base64::Engine;
use http::{Request, StatusCode};
use provproxy::body::full;
use provproxy::demo::client::Reply;
use provproxy::upstream::tls::provider;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use common::{get, ok, proxy, Pki, Recorded, Upstream, PATIENCE};
use support_binary::Binary;

const IIQ_TOKEN: &str = "iiq-client-token-7f3a";
const OKTA_PASSWORD: &str = "okta-client-password-19c2";
const ROUTE_PASSWORD: &str = "route-password-b41d";
/// What the target must see: the route's stored credential.
const ROUTE_AUTHORIZATION: &str = "Basic c3ZjOnJvdXRlLXBhc3N3b3JkLWI0MWQ=";

fn secrets() -> [(&'static str, &'static str); 3] {
    [
        ("IIQ_TOKEN", IIQ_TOKEN),
        ("OKTA_PASSWORD", OKTA_PASSWORD),
        ("ROUTE_PASSWORD", ROUTE_PASSWORD),
    ]
}

/// Two clients (token `iiq`, Basic `okta`), a route open to both and a route only `iiq` may use,
/// both injecting the route's Basic credential in place of whatever the client sent.
const TWO_CLIENTS: &str = r#"
[server]
listen = "127.0.0.1:0"

[[server.clients]]
name = "iiq"
token = { env = "IIQ_TOKEN" }

[[server.clients]]
name = "okta"
username = "okta-agent"
password = { env = "OKTA_PASSWORD" }

[[routes]]
name = "iiq-only"
prefix = "/iiq/"
upstream = "{upstream}"
clients = ["iiq"]
[routes.auth]
kind = "basic"
username = "svc"
password = { env = "ROUTE_PASSWORD" }

[[routes]]
name = "shared"
prefix = "/"
upstream = "{upstream}"
[routes.auth]
kind = "basic"
username = "svc"
password = { env = "ROUTE_PASSWORD" }
"#;

fn basic(username: &str, password: &str) -> String {
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    format!("Basic {encoded}")
}

/// Fails the test when any header the target received carries one of the client's secrets.
fn assert_no_client_credential(seen: &Recorded) {
    let okta_basic = basic("okta-agent", OKTA_PASSWORD);
    let okta_encoded = okta_basic.trim_start_matches("Basic ");
    for (name, value) in &seen.headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        for secret in [IIQ_TOKEN, OKTA_PASSWORD, okta_encoded] {
            assert!(
                !value.contains(secret),
                "the client's credential reached the target in {name}: {value}"
            );
        }
    }
    assert!(seen.headers.get("proxy-authorization").is_none());
}

/// The target got exactly one request, with the route's credential and none of the client's.
fn assert_route_credential_only(upstream: &mut Upstream) {
    let seen = upstream.only();
    assert_eq!(seen.header("authorization"), Some(ROUTE_AUTHORIZATION));
    assert_no_client_credential(&seen);
}

fn challenges(reply: &Reply) -> Vec<String> {
    reply
        .headers
        .get_all(http::header::WWW_AUTHENTICATE)
        .iter()
        .map(|v| v.to_str().expect("challenge is text").to_owned())
        .collect()
}

#[tokio::test]
async fn a_bearer_token_client_is_admitted_and_the_target_gets_the_routes_credential_instead() {
    let mut upstream = Upstream::start(ok).await;
    let proxy = proxy(TWO_CLIENTS, &upstream.url(), &secrets()).await;
    let auth = format!("Bearer {IIQ_TOKEN}");
    let reply = get(proxy.addr(), "/iiq/Users", &[("authorization", &auth)]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_route_credential_only(&mut upstream);
}

#[tokio::test]
async fn a_basic_client_is_admitted_and_the_target_gets_the_routes_credential_instead() {
    let mut upstream = Upstream::start(ok).await;
    let proxy = proxy(TWO_CLIENTS, &upstream.url(), &secrets()).await;
    let auth = basic("okta-agent", OKTA_PASSWORD);
    let reply = get(proxy.addr(), "/Users", &[("authorization", &auth)]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_route_credential_only(&mut upstream);
}

#[tokio::test]
async fn a_credential_in_proxy_authorization_admits_the_client_and_is_removed_before_the_target() {
    let mut upstream = Upstream::start(ok).await;
    let proxy = proxy(TWO_CLIENTS, &upstream.url(), &secrets()).await;
    let auth = format!("Bearer {IIQ_TOKEN}");
    let reply = get(
        proxy.addr(),
        "/iiq/Users",
        &[
            ("proxy-authorization", &auth),
            ("authorization", "Basic Y29ubmVjdG9yOmRlZmF1bHQ="),
        ],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_route_credential_only(&mut upstream);
}

#[tokio::test]
async fn a_wrong_token_is_a_401_with_the_proxys_own_challenge_and_nothing_reaches_the_target() {
    let mut upstream = Upstream::start(ok).await;
    let proxy = proxy(TWO_CLIENTS, &upstream.url(), &secrets()).await;
    let reply = get(
        proxy.addr(),
        "/Users",
        &[("authorization", "Bearer iiq-client-token-7f3b")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text());
    assert_eq!(
        challenges(&reply),
        [r#"Bearer realm="provproxy""#, r#"Basic realm="provproxy""#],
        "the challenge offers the schemes configured clients use"
    );
    assert!(upstream.received().is_empty(), "the target was reached");
}

#[tokio::test]
async fn a_request_without_any_credential_is_a_401_and_nothing_reaches_the_target() {
    let mut upstream = Upstream::start(ok).await;
    let proxy = proxy(TWO_CLIENTS, &upstream.url(), &secrets()).await;
    let reply = get(proxy.addr(), "/Users", &[]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text());
    assert!(!challenges(&reply).is_empty(), "a 401 carries a challenge");
    let wrong_scheme = get(
        proxy.addr(),
        "/Users",
        &[("authorization", "Digest username=\"iiq\"")],
    )
    .await;
    assert_eq!(wrong_scheme.status, StatusCode::UNAUTHORIZED);
    assert!(upstream.received().is_empty(), "the target was reached");
}

#[tokio::test]
async fn a_known_client_not_listed_on_the_route_is_a_403_and_nothing_reaches_the_target() {
    let mut upstream = Upstream::start(ok).await;
    let proxy = proxy(TWO_CLIENTS, &upstream.url(), &secrets()).await;
    let auth = basic("okta-agent", OKTA_PASSWORD);
    let reply = get(proxy.addr(), "/iiq/Users", &[("authorization", &auth)]).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text());
    assert!(
        !reply.text().contains(OKTA_PASSWORD),
        "the refusal echoes the client's password: {}",
        reply.text()
    );
    assert!(upstream.received().is_empty(), "the target was reached");
}

/// A client CA and certificates it signed, for mutual TLS.
struct ClientPki {
    dir: tempfile::TempDir,
    ca_pem: String,
    ca_cert: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
}

impl ClientPki {
    fn new(name: &str) -> ClientPki {
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca_cert = params.self_signed(&ca_key).expect("self-sign client CA");
        ClientPki {
            dir: tempfile::tempdir().expect("tempdir"),
            ca_pem: ca_cert.pem(),
            ca_cert,
            ca_key,
        }
    }

    /// A client certificate whose only DNS SAN is `dns_name` (its CN says something else, so
    /// the test proves the SAN is what names the client).
    fn client(&self, dns_name: &str) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let key = rcgen::KeyPair::generate().expect("client key");
        let mut params =
            rcgen::CertificateParams::new(vec![dns_name.to_owned()]).expect("client params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "not-the-client-name");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params
            .signed_by(&key, &self.ca_cert, &self.ca_key)
            .expect("sign client certificate");
        (
            cert.der().clone(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
    }
}

/// The proxy on TLS (its listener certificate from `server`), trusting client certificates from
/// `clients`, with a certificate client `cyberark.example.com` and a token client `iiq`.
async fn mtls_proxy(
    server: &Pki,
    clients: &ClientPki,
    upstream: &Upstream,
) -> provproxy::server::Running {
    let client_ca = clients.dir.path().join("clients-ca.pem");
    std::fs::write(&client_ca, &clients.ca_pem).expect("write client CA");
    let toml = format!(
        r#"
[server]
listen = "127.0.0.1:0"
tls = {{ cert = "{cert}", key = "{key}", client_ca = "{ca}" }}

[[server.clients]]
name = "cyberark.example.com"
certificate = true

[[server.clients]]
name = "iiq"
token = {{ env = "IIQ_TOKEN" }}

[[routes]]
name = "shared"
prefix = "/"
upstream = "{{upstream}}"
clients = ["cyberark.example.com", "iiq"]
[routes.auth]
kind = "basic"
username = "svc"
password = {{ env = "ROUTE_PASSWORD" }}
"#,
        cert = server.cert.display(),
        key = server.key.display(),
        ca = client_ca.display(),
    );
    proxy(&toml, &upstream.url(), &secrets()).await
}

/// A TLS client trusting the proxy's CA, presenting `identity` when given.
fn tls_client(
    server_ca: &Path,
    identity: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(server_ca).expect("read server CA") {
        roots.add(cert.expect("CA PEM")).expect("add server CA");
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots);
    let config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(vec![cert], key)
            .expect("client certificate"),
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// One HTTP/1.1 GET over TLS to the proxy; `Err` when the handshake or the exchange fails.
async fn get_over_tls(
    config: Arc<ClientConfig>,
    addr: SocketAddr,
    headers: &[(&str, &str)],
) -> Result<Reply, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").expect("server name");
    let stream = TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let mut request = Request::get("/Users").header("host", format!("localhost:{}", addr.port()));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(full("")).expect("request");
    let response = tokio::time::timeout(PATIENCE, sender.send_request(request))
        .await
        .map_err(|_| "no response in time".to_owned())?
        .map_err(|e| format!("exchange: {e}"))?;
    Ok(common::reply(response).await)
}

#[tokio::test]
async fn a_client_certificate_whose_dns_san_names_a_client_is_admitted_without_any_header() {
    let server = Pki::new();
    let clients = ClientPki::new("provproxy test client CA");
    let mut upstream = Upstream::start(ok).await;
    let proxy = mtls_proxy(&server, &clients, &upstream).await;
    let identity = clients.client("cyberark.example.com");
    let reply = get_over_tls(tls_client(&server.ca, Some(identity)), proxy.addr(), &[])
        .await
        .expect("exchange over mutual TLS");
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_route_credential_only(&mut upstream);
}

#[tokio::test]
async fn a_client_certificate_naming_no_configured_client_is_a_401_and_nothing_reaches_the_target()
{
    let server = Pki::new();
    let clients = ClientPki::new("provproxy test client CA");
    let mut upstream = Upstream::start(ok).await;
    let proxy = mtls_proxy(&server, &clients, &upstream).await;
    let identity = clients.client("someone-else.example.com");
    let reply = get_over_tls(tls_client(&server.ca, Some(identity)), proxy.addr(), &[])
        .await
        .expect("the handshake succeeds: the chain is valid");
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text());
    assert!(upstream.received().is_empty(), "the target was reached");
}

#[tokio::test]
async fn a_client_certificate_from_another_ca_fails_the_tls_handshake() {
    let server = Pki::new();
    let clients = ClientPki::new("provproxy test client CA");
    let strangers = ClientPki::new("some other CA");
    let mut upstream = Upstream::start(ok).await;
    let proxy = mtls_proxy(&server, &clients, &upstream).await;
    let identity = strangers.client("cyberark.example.com");
    let outcome = get_over_tls(tls_client(&server.ca, Some(identity)), proxy.addr(), &[]).await;
    assert!(
        outcome.is_err(),
        "a certificate from an untrusted CA got an answer: {outcome:?}"
    );
    assert!(upstream.received().is_empty(), "the target was reached");
}

#[tokio::test]
async fn on_the_mutual_tls_listener_a_token_client_without_a_certificate_is_still_admitted() {
    let server = Pki::new();
    let clients = ClientPki::new("provproxy test client CA");
    let mut upstream = Upstream::start(ok).await;
    let proxy = mtls_proxy(&server, &clients, &upstream).await;
    let auth = format!("Bearer {IIQ_TOKEN}");
    let reply = get_over_tls(
        tls_client(&server.ca, None),
        proxy.addr(),
        &[("authorization", &auth)],
    )
    .await
    .expect("exchange over TLS without a client certificate");
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_route_credential_only(&mut upstream);
    let refused = get_over_tls(tls_client(&server.ca, None), proxy.addr(), &[])
        .await
        .expect("exchange over TLS without a client certificate");
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(upstream.received().is_empty(), "the target was reached");
}

fn listen_config(server_extra: &str) -> String {
    format!(
        r#"
[server]
listen = "0.0.0.0:0"
{server_extra}

[[routes]]
name = "r"
prefix = "/"
upstream = "http://127.0.0.1:9"
"#
    )
}

fn load(toml: &str) -> Result<provproxy::config::Plan, provproxy::config::ConfigError> {
    let env = |name: &str| {
        secrets()
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    };
    provproxy::config::load_str(toml, "x.toml", Path::new("."), &env)
}

#[test]
fn a_non_loopback_listen_without_clients_is_refused_at_load_with_the_reason_and_the_ways_out() {
    let err = load(&listen_config("")).expect_err("an open non-loopback listener was accepted");
    let message = err.to_string();
    for expected in [
        "x.toml:3:",
        "server.listen",
        "reachable from other hosts",
        "[[server.clients]]",
        "allow_anyone = true",
    ] {
        assert!(
            message.contains(expected),
            "the message lacks {expected:?}: {message}"
        );
    }
}

#[test]
fn a_non_loopback_listen_is_accepted_with_allow_anyone_or_with_clients() {
    let open = load(&listen_config("allow_anyone = true")).expect("allow_anyone is accepted");
    assert!(open.server.allow_anyone);
    let guarded = load(&listen_config(
        "[[server.clients]]\nname = \"iiq\"\ntoken = { env = \"IIQ_TOKEN\" }",
    ))
    .expect("clients are accepted");
    assert_eq!(guarded.server.clients.len(), 1);
}

#[tokio::test]
async fn a_non_loopback_listener_with_clients_refuses_requests_without_a_credential() {
    let mut upstream = Upstream::start(ok).await;
    let toml = r#"
[server]
listen = "0.0.0.0:0"
[[server.clients]]
name = "iiq"
token = { env = "IIQ_TOKEN" }
[[routes]]
name = "r"
prefix = "/"
upstream = "{upstream}"
"#;
    let proxy = proxy(toml, &upstream.url(), &secrets()).await;
    let local: SocketAddr = ([127, 0, 0, 1], proxy.addr().port()).into();
    assert_eq!(
        get(local, "/Users", &[]).await.status,
        StatusCode::UNAUTHORIZED
    );
    let auth = format!("Bearer {IIQ_TOKEN}");
    assert_eq!(
        get(local, "/Users", &[("authorization", &auth)])
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(upstream.received().len(), 1);
}

/// The value of a counter in the Prometheus text from `/metrics`.
fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{metrics}"))
}

#[tokio::test]
async fn refusals_are_counted_in_metrics_and_the_real_binary_logs_them_at_a_bounded_rate() {
    let mut upstream = Upstream::start(ok).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("proxy.toml");
    let toml = r#"
[server]
listen = "127.0.0.1:0"
[[server.clients]]
name = "iiq"
token = { env = "IIQ_TOKEN" }
[admin]
listen = "127.0.0.1:0"
[[routes]]
name = "r"
prefix = "/"
upstream = "{upstream}"
"#
    .replace("{upstream}", &upstream.url());
    std::fs::write(&config, toml).expect("write config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_provproxy"))
        .args(["--log-format", "json", "run", "--config"])
        .arg(&config)
        .env("IIQ_TOKEN", IIQ_TOKEN)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start provproxy");
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<serde_json::Value>();
    let stderr = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let value =
                serde_json::from_str(&line).unwrap_or_else(|_| serde_json::json!({ "raw": line }));
            if lines_tx.send(value).is_err() {
                break;
            }
        }
    });
    let listening = tokio::time::timeout(PATIENCE, async {
        loop {
            let line = lines
                .recv()
                .await
                .expect("provproxy exited before listening");
            if line["fields"]["message"] == "provproxy listening" {
                return line;
            }
        }
    })
    .await
    .expect("provproxy started in time");
    let addr: SocketAddr = listening["fields"]["addr"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .expect("listening address");
    let admin: SocketAddr = listening["fields"]["admin"]
        .as_str()
        .and_then(|a| a.strip_prefix("Some(")?.strip_suffix(')')?.parse().ok())
        .expect("admin address");

    const BAD: u64 = 100;
    let started = Instant::now();
    for n in 0..BAD {
        let wrong = format!("Bearer wrong-{n}");
        let reply = get(addr, "/Users", &[("authorization", &wrong)]).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    let elapsed = started.elapsed();
    let metrics = get(admin, "/metrics", &[]).await.text();
    assert_eq!(counter(&metrics, "provproxy_ingress_denials_total"), BAD);
    assert!(upstream.received().is_empty(), "the target was reached");

    // The warnings are written before each 401 is sent; stopping the process flushes the rest.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("send SIGTERM");
    assert!(status.success());
    let exit = child.wait().expect("provproxy exits");
    assert!(exit.success(), "provproxy exited with {exit}");
    reader.join().expect("stderr reader");
    let mut warnings = 0u64;
    while let Ok(line) = lines.try_recv() {
        assert!(
            !line.to_string().contains("wrong-"),
            "a presented credential was logged: {line}"
        );
        if line["level"] == "WARN"
            && line["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("refused a client"))
        {
            warnings += 1;
        }
    }
    // At most one line per second of refusals (the second the first one falls in counts too).
    let bound = elapsed.as_secs() + 2;
    assert!(
        (1..=bound).contains(&warnings),
        "{warnings} refusal warnings for {BAD} refusals in {elapsed:?} (expected 1..={bound})"
    );
}

/// Without a credential every path gets the same 401 with no route named, known or not, so a
/// stranger cannot map which prefixes the proxy serves.
#[tokio::test]
async fn an_unknown_client_gets_the_same_401_for_unknown_and_known_paths() {
    let upstream = Upstream::start(ok).await;
    let proxy = proxy(
        &TWO_CLIENTS.replace("prefix = \"/\"", "prefix = \"/scim/\""),
        &upstream.url(),
        &secrets(),
    )
    .await;
    let known = get(proxy.addr(), "/scim/Users", &[]).await;
    let unknown = get(proxy.addr(), "/no-such-route/x", &[]).await;
    assert_eq!(known.status, StatusCode::UNAUTHORIZED, "{}", known.text());
    assert_eq!(
        unknown.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        unknown.text()
    );
    assert_eq!(known.text(), unknown.text());
    assert_eq!(challenges(&known), challenges(&unknown));
}

/// A route injecting the stored Basic credential, on a loopback proxy without clients: what a
/// web page in a browser on the connector host could reach.
/// `extra` goes at the end of `[server]` (and may open tables of its own).
fn browser_target_config(extra: &str, upstream: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
{extra}

[[routes]]
name = "scim"
prefix = "/"
upstream = "{upstream}"
[routes.auth]
kind = "basic"
username = "svc"
password = {{ env = "ROUTE_PASSWORD" }}
"#
    )
}

fn start_binary(toml: &str) -> (Binary, SocketAddr) {
    let env = secrets();
    let (binary, addr, _) = Binary::start(
        toml,
        support_binary::Options {
            env: &env,
            uid: None,
        },
    );
    (binary, addr)
}

/// `POST /Users` with these headers and a small text body, `Host` the proxy's unless given.
async fn post(addr: SocketAddr, headers: &[(&str, &str)]) -> Reply {
    let mut request = Request::post("/Users");
    if !headers.iter().any(|(name, _)| *name == "host") {
        request = request.header("host", addr.to_string());
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    common::request_h1(
        addr,
        request
            .body(full(r#"{"userName":"mallory"}"#))
            .expect("request"),
    )
    .await
}

#[tokio::test]
async fn a_browsers_cross_site_post_is_refused_before_any_credential_and_the_target_sees_nothing() {
    let mut upstream = Upstream::start(ok).await;
    let (binary, addr, admin) = Binary::start(
        &browser_target_config("[admin]\nlisten = \"127.0.0.1:0\"", &upstream.url()),
        support_binary::Options {
            env: &secrets(),
            uid: None,
        },
    );
    // What a page on evil.example makes a browser send (a "simple" request, no preflight), both
    // to the proxy's own name and through DNS rebinding to evil.example itself.
    let page = [
        ("origin", "http://evil.example"),
        ("content-type", "text/plain"),
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-mode", "no-cors"),
    ];
    let rebound = post(addr, &[&[("host", "evil.example")][..], &page].concat()).await;
    assert_eq!(rebound.status, StatusCode::MISDIRECTED_REQUEST);
    assert_eq!(common::error_body(&rebound)["error"], "misdirected_request");
    let direct = post(addr, &page).await;
    assert_eq!(direct.status, StatusCode::FORBIDDEN, "{}", direct.text());
    assert_eq!(common::error_body(&direct)["error"], "cross_site_request");
    for browser_headers in [
        [("origin", "http://evil.example")],
        [("origin", "null")],
        [("sec-fetch-site", "cross-site")],
        [("sec-fetch-site", "same-site")],
    ] {
        let reply = post(addr, &browser_headers).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{browser_headers:?}");
    }
    assert!(
        upstream.received().is_empty(),
        "a browser's request reached the target"
    );
    // The same request from a connector (no browser headers), or from the proxy's own origin.
    let own_origin = format!("http://{addr}");
    for headers in [
        &[][..],
        &[
            ("origin", own_origin.as_str()),
            ("sec-fetch-site", "same-origin"),
        ],
    ] {
        assert_eq!(post(addr, headers).await.status, StatusCode::OK);
        assert_eq!(
            upstream.only().header("authorization"),
            Some(ROUTE_AUTHORIZATION)
        );
    }
    let metrics = get(admin.expect("admin listener"), "/metrics", &[])
        .await
        .text();
    for (kind, refused) in [("misdirected_request", 1), ("cross_site_request", 5)] {
        let name = format!("provproxy_errors_total{{kind=\"{kind}\"}}");
        assert_eq!(counter(&metrics, &name), refused, "{name}");
    }
    drop(binary);
}

#[tokio::test]
async fn allow_browsers_lets_a_cross_site_request_through_but_still_checks_the_host() {
    let mut upstream = Upstream::start(ok).await;
    let (binary, addr) = start_binary(&browser_target_config(
        "allow_browsers = true",
        &upstream.url(),
    ));
    let reply = post(
        addr,
        &[
            ("origin", "http://console.example"),
            ("sec-fetch-site", "cross-site"),
        ],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(
        upstream.only().header("origin"),
        Some("http://console.example")
    );
    let rebound = post(addr, &[("host", "evil.example")]).await;
    assert_eq!(rebound.status, StatusCode::MISDIRECTED_REQUEST);
    assert!(upstream.received().is_empty());
    drop(binary);
}

#[tokio::test]
async fn the_proxy_answers_loopback_names_its_hosts_and_host_routes_and_421_otherwise() {
    let mut upstream = Upstream::start(ok).await;
    let toml = r#"
[server]
listen = "127.0.0.1:0"
hosts = ["provproxy.internal", "edge.internal:8443"]

[[routes]]
name = "scim"
host = "scim.proxy.local"
upstream = "{upstream}"

[[routes]]
name = "rest"
prefix = "/"
upstream = "{upstream}"
"#
    .replace("{upstream}", &upstream.url());
    let (binary, addr) = start_binary(&toml);
    let port = addr.port();
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        "provproxy.internal".to_owned(),
        "Provproxy.Internal:1234".to_owned(),
        "edge.internal:8443".to_owned(),
        "scim.proxy.local".to_owned(),
    ] {
        let reply = get(addr, "/Users", &[("host", &host)]).await;
        assert_eq!(reply.status, StatusCode::OK, "{host}: {}", reply.text());
        upstream.only();
    }
    for host in [
        "evil.example".to_owned(),
        format!("evil.example:{port}"),
        "edge.internal:9443".to_owned(),
        "provproxy.internal.evil.example".to_owned(),
        format!("0.0.0.0:{port}"),
    ] {
        let reply = get(addr, "/Users", &[("host", &host)]).await;
        assert_eq!(reply.status, StatusCode::MISDIRECTED_REQUEST, "{host}");
        let body = common::error_body(&reply);
        assert_eq!(body["error"], "misdirected_request", "{body}");
        assert!(body["route"].is_null(), "a refusal names no route: {body}");
    }
    assert!(upstream.received().is_empty(), "the target was reached");
    drop(binary);
}

#[test]
fn server_hosts_that_are_not_host_names_are_refused_at_load_naming_the_entry() {
    let err = load("[server]\nhosts = [\"provproxy.internal\", \"*.internal\"]\n")
        .expect_err("a wildcard was accepted as a host name");
    assert_eq!(err.key_path, "server.hosts[1]", "{err}");
    assert!(err.to_string().starts_with("x.toml:2:"), "{err}");
}

#[tokio::test]
async fn proxy_authorization_and_headers_named_on_a_second_connection_line_never_reach_the_target()
{
    let mut upstream = Upstream::start(ok).await;
    // No clients: nobody consumes Proxy-Authorization as a credential, it must still go.
    let toml = r#"
[server]
listen = "127.0.0.1:0"
[[routes]]
name = "r"
prefix = "/"
upstream = "{upstream}"
"#
    .replace("{upstream}", &upstream.url());
    let (binary, addr) = start_binary(&toml);
    let reply = get(
        addr,
        "/Users",
        &[
            ("proxy-authorization", "Basic Y29ubmVjdG9yOnByb3h5LXB3"),
            ("connection", "keep-alive"),
            ("connection", "X-Second-Line, x-third-line"),
            ("x-second-line", "hop"),
            ("x-third-line", "hop"),
            ("x-end-to-end", "kept"),
        ],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let seen = upstream.only();
    for hop in [
        "proxy-authorization",
        "x-second-line",
        "x-third-line",
        "connection",
    ] {
        assert!(
            seen.headers.get(hop).is_none(),
            "{hop} reached the target: {:?}",
            seen.headers
        );
    }
    assert_eq!(seen.header("x-end-to-end"), Some("kept"));
    drop(binary);
}

#[tokio::test]
async fn connection_naming_the_session_key_header_does_not_move_the_request_out_of_its_session() {
    // The target opens a session per tenant: its cookie carries the tenant it was opened for.
    let mut upstream = Upstream::start(|seen: &Recorded| {
        let mut response = http::Response::builder().status(StatusCode::OK);
        if seen.header("cookie").is_none() {
            let tenant = seen.header("x-tenant").unwrap_or("none");
            response = response.header("set-cookie", format!("SID={tenant}; Path=/"));
        }
        response.body(full("{}")).expect("response")
    })
    .await;
    let toml = r#"
[server]
listen = "127.0.0.1:0"
[[routes]]
name = "r"
prefix = "/"
upstream = "{upstream}"
[routes.session]
key = "header:X-Tenant"
"#
    .replace("{upstream}", &upstream.url());
    let (binary, addr) = start_binary(&toml);
    for tenant in ["t1", "t2"] {
        get(addr, "/Users", &[("x-tenant", tenant)]).await;
        assert_eq!(upstream.only().header("cookie"), None, "a new session");
    }
    for tenant in ["t1", "t2"] {
        let reply = get(
            addr,
            "/Users",
            &[("x-tenant", tenant), ("connection", "X-Tenant, keep-alive")],
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK);
        let seen = upstream.only();
        assert_eq!(seen.header("x-tenant"), Some(tenant));
        let expected = format!("SID={tenant}");
        assert_eq!(
            seen.header("cookie"),
            Some(expected.as_str()),
            "{tenant}'s request left its session"
        );
    }
    drop(binary);
}
