//! TLS on both sides: an HTTPS target behind a private CA (trusted through the route's
//! `ca_file`, refused without it), a target with its own self-signed certificate (trusted
//! through `ca_file` as curl and Java trust it), `[routes.tls]` trust modes and pins, and the
//! proxy's own TLS listener speaking HTTP/1.1 and HTTP/2.

mod common;
#[path = "support/binary.rs"]
mod support_binary;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use base64::Engine as _;
use http::{Request, StatusCode, Version};
use hyper::body::Incoming;
use provproxy::upstream::tls::provider;
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

use common::{error_body, get, get_tls, json, ok, proxy, serve, ConnMeta, Pki, Upstream};
use support_binary::{Binary, Options};

fn https_route(ca_file: Option<&std::path::Path>) -> String {
    let ca_file = ca_file
        .map(|path| format!("ca_file = \"{}\"", path.display()))
        .unwrap_or_default();
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
hosts = ["connector-facing.example"]

[[routes]]
name = "private-ca"
prefix = "/"
upstream = "{{upstream}}"
{ca_file}
"#
    )
}

#[tokio::test]
async fn an_https_target_signed_by_the_routes_ca_file_is_reached_with_its_own_sni_and_host() {
    let pki = Pki::new();
    let mut upstream = Upstream::start_tls(&pki, ok).await;
    let proxy = proxy(&https_route(Some(&pki.ca)), &upstream.url(), &[]).await;
    let reply = get(
        proxy.addr(),
        "/Users",
        &[("host", "connector-facing.example")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let seen = upstream.only();
    assert_eq!(seen.sni.as_deref(), Some("localhost"));
    let authority = format!("localhost:{}", upstream.addr().port());
    assert_eq!(seen.header("host"), Some(authority.as_str()));
    assert_eq!(seen.uri, "/Users");
}

#[tokio::test]
async fn without_ca_file_a_private_ca_target_is_a_502_tls_error_naming_the_certificate_problem() {
    let pki = Pki::new();
    let mut upstream = Upstream::start_tls(&pki, ok).await;
    let proxy = proxy(&https_route(None), &upstream.url(), &[]).await;
    let reply = get(proxy.addr(), "/Users", &[]).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.text());
    let body = error_body(&reply);
    assert_eq!(body["error"], "tls", "{body}");
    assert_eq!(body["side"], "upstream", "{body}");
    assert_eq!(body["route"], "private-ca", "{body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("certificate") && detail.contains("UnknownIssuer"),
        "the detail names the certificate problem: {detail}"
    );
    assert!(upstream.received().is_empty());
}

#[tokio::test]
async fn the_proxys_tls_listener_serves_http2_and_http1_as_alpn_negotiates() {
    let pki = Pki::new();
    let mut upstream = Upstream::start(ok).await;
    let toml = format!(
        r#"
[server]
listen = "127.0.0.1:0"
tls = {{ cert = "{}", key = "{}" }}

[[routes]]
name = "r"
prefix = "/"
upstream = "{{upstream}}"
"#,
        pki.cert.display(),
        pki.key.display()
    );
    let proxy = proxy(&toml, &upstream.url(), &[]).await;

    for (offered, negotiated, version) in [
        (
            &[&b"h2"[..], b"http/1.1"][..],
            Some(&b"h2"[..]),
            Version::HTTP_2,
        ),
        (
            &[&b"http/1.1"[..]][..],
            Some(&b"http/1.1"[..]),
            Version::HTTP_11,
        ),
        (&[][..], None, Version::HTTP_11),
    ] {
        let got = get_tls(&pki, proxy.addr(), offered, "/Users?x=1").await;
        assert_eq!(got.alpn.as_deref(), negotiated, "offered {offered:?}");
        assert_eq!(got.version, version, "offered {offered:?}");
        assert_eq!(got.reply.status, StatusCode::OK, "offered {offered:?}");
        let seen = upstream.only();
        assert_eq!(seen.uri, "/Users?x=1");
        assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    }
}

/// A certificate made the way `openssl req -x509 -newkey ... -subj /CN=localhost
/// -addext subjectAltName=...` makes one: self-signed, for `names`, and a CA (`CA:TRUE`, openssl's
/// default) unless `ca` is false (`-addext basicConstraints=CA:FALSE`).
struct SelfSigned {
    _dir: tempfile::TempDir,
    pem: PathBuf,
    config: Arc<ServerConfig>,
    /// The SPKI SHA-256 of its key, written as a pin.
    pin: String,
}

impl SelfSigned {
    fn new(ca: bool, names: &[&str], not_after_year: Option<i32>) -> SelfSigned {
        let key = rcgen::KeyPair::generate().expect("key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        params.is_ca = if ca {
            rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained)
        } else {
            rcgen::IsCa::ExplicitNoCa
        };
        if let Some(year) = not_after_year {
            params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
            params.not_after = rcgen::date_time_ymd(year, 1, 1);
        }
        let cert = params.self_signed(&key).expect("self-sign");
        let dir = tempfile::tempdir().expect("tempdir");
        let pem = dir.path().join("target.pem");
        std::fs::write(&pem, cert.pem()).expect("write PEM");
        let config = server_config(cert.der().clone(), key.serialize_der());
        SelfSigned {
            _dir: dir,
            pem,
            config,
            pin: pin_of(&key),
        }
    }

    /// A TLS target serving this certificate, answering `200 {"ok":true}`.
    async fn serve(&self) -> common::Server {
        serve(Some(self.config.clone()), answer_ok).await
    }
}

async fn answer_ok(
    _: Request<Incoming>,
    _: ConnMeta,
) -> http::Response<provproxy::body::ProxyBody> {
    json(StatusCode::OK, r#"{"ok":true}"#)
}

fn server_config(cert: CertificateDer<'static>, key: Vec<u8>) -> Arc<ServerConfig> {
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key));
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("server certificate");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// base64(SHA-256(SubjectPublicKeyInfo)), as `openssl pkey -pubin -outform der | openssl dgst
/// -sha256 -binary | base64` prints it.
fn pin_of(key: &rcgen::KeyPair) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(key.public_key_der()))
}

/// The pin of the test PKI's server certificate.
fn pki_server_pin(pki: &Pki) -> String {
    let pem = std::fs::read_to_string(&pki.key).expect("server key");
    pin_of(&rcgen::KeyPair::from_pem(&pem).expect("parse server key"))
}

/// A route to `{upstream}` with these keys after `upstream`.
fn route_with(keys: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[[routes]]
name = "target"
prefix = "/"
upstream = "{{upstream}}"
{keys}
"#
    )
}

async fn status_through(route: &str, target: &str) -> (StatusCode, String) {
    let proxy = proxy(route, target, &[]).await;
    let reply = get(proxy.addr(), "/Users", &[]).await;
    (reply.status, reply.text())
}

#[tokio::test]
async fn a_self_signed_ca_certificate_made_like_openssl_req_x509_is_trusted_through_ca_file() {
    let own = SelfSigned::new(true, &["localhost", "127.0.0.1"], None);
    let target = own.serve().await;
    let ca_file = format!("ca_file = \"{}\"", own.pem.display());
    let (status, body) = status_through(&route_with(&ca_file), &target.url()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Also when the public roots are left out: the certificate is its own trust anchor.
    let only = format!("{ca_file}\ntls = {{ trust = \"ca_file_only\" }}");
    let (status, body) = status_through(&route_with(&only), &target.url()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn a_self_signed_leaf_certificate_without_ca_is_trusted_through_ca_file() {
    let own = SelfSigned::new(false, &["localhost", "127.0.0.1"], None);
    let target = own.serve().await;
    let ca_file = format!("ca_file = \"{}\"", own.pem.display());
    let (status, body) = status_through(&route_with(&ca_file), &target.url()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn a_self_signed_certificate_is_refused_without_ca_file_or_with_another_one_in_it() {
    let own = SelfSigned::new(true, &["localhost", "127.0.0.1"], None);
    let other = SelfSigned::new(true, &["localhost", "127.0.0.1"], None);
    let target = own.serve().await;
    for keys in [
        String::new(),
        format!("ca_file = \"{}\"", other.pem.display()),
    ] {
        let proxy = proxy(&route_with(&keys), &target.url(), &[]).await;
        let reply = get(proxy.addr(), "/Users", &[]).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_GATEWAY,
            "{keys}: {}",
            reply.text()
        );
        let body = error_body(&reply);
        assert_eq!(body["error"], "tls", "{keys}: {body}");
    }
}

#[tokio::test]
async fn a_self_signed_certificate_in_ca_file_is_still_checked_for_its_name_and_validity() {
    for (own, expect) in [
        (
            SelfSigned::new(true, &["appliance.example"], None),
            "not valid for name",
        ),
        (
            SelfSigned::new(true, &["localhost", "127.0.0.1"], Some(2020)),
            "expired",
        ),
    ] {
        let target = own.serve().await;
        let ca_file = format!("ca_file = \"{}\"", own.pem.display());
        let proxy = proxy(&route_with(&ca_file), &target.url(), &[]).await;
        let reply = get(proxy.addr(), "/Users", &[]).await;
        assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.text());
        let body = error_body(&reply);
        assert_eq!(body["error"], "tls", "{body}");
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(expect), "{expect:?} in {detail}");
    }
}

#[tokio::test]
async fn a_wrong_pin_fails_with_a_502_naming_the_pin_and_the_right_pin_works() {
    let pki = Pki::new();
    let mut upstream = Upstream::start_tls(&pki, ok).await;
    let right = pki_server_pin(&pki);
    let wrong = SelfSigned::new(false, &["localhost"], None).pin;
    let pinned = |pins: &[&str]| {
        let pins: Vec<String> = pins.iter().map(|p| format!("\"{p}\"")).collect();
        route_with(&format!(
            "ca_file = \"{}\"\ntls = {{ pin_sha256 = [{}] }}",
            pki.ca.display(),
            pins.join(", ")
        ))
    };

    let proxy_wrong = proxy(&pinned(&[&wrong]), &upstream.url(), &[]).await;
    let reply = get(proxy_wrong.addr(), "/Users", &[]).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.text());
    let body = error_body(&reply);
    assert_eq!(body["error"], "tls_pin", "{body}");
    assert_eq!(body["side"], "upstream", "{body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("pin_sha256") && detail.contains(&right),
        "the detail names the pin failure and the key the target has: {detail}"
    );
    assert!(
        upstream.received().is_empty(),
        "nothing was sent to the target"
    );

    // One right pin among several is enough, in plain base64 or in curl's sha256// form.
    for pins in [
        vec![wrong.as_str(), right.as_str()],
        vec![&format!("sha256//{right}")],
    ] {
        let proxy_right = proxy(&pinned(&pins), &upstream.url(), &[]).await;
        let reply = get(proxy_right.addr(), "/Users", &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "{pins:?}: {}", reply.text());
        upstream.only();
    }
}

#[tokio::test]
async fn a_pin_also_holds_for_a_self_signed_target() {
    let own = SelfSigned::new(true, &["localhost"], None);
    let target = own.serve().await;
    let other = SelfSigned::new(true, &["localhost"], None);
    for (pin, expected) in [
        (&own.pin, StatusCode::OK),
        (&other.pin, StatusCode::BAD_GATEWAY),
    ] {
        let keys = format!(
            "ca_file = \"{}\"\ntls = {{ trust = \"ca_file_only\", pin_sha256 = [\"{pin}\"] }}",
            own.pem.display()
        );
        let (status, body) = status_through(&route_with(&keys), &target.url()).await;
        assert_eq!(status, expected, "{body}");
    }
}

/// The real binary on `toml`, with `SSL_CERT_FILE` standing in for the system's roots.
fn binary_with_system_roots(toml: &str, system_roots: &Path) -> (Binary, SocketAddr) {
    let roots = system_roots.to_str().expect("a UTF-8 path");
    let options = Options {
        env: &[("SSL_CERT_FILE", roots)],
        ..Options::default()
    };
    let (binary, addr, _) = Binary::start(toml, options);
    (binary, addr)
}

#[tokio::test]
async fn ca_file_only_refuses_a_certificate_that_chains_only_to_a_system_root() {
    // The target's CA stands in for a public root: the binary's SSL_CERT_FILE holds it, so
    // `system+ca_file` trusts the target through it, and `ca_file_only` must not.
    let system = Pki::new();
    let private = Pki::new();
    let target = Upstream::start_tls(&system, ok).await;
    let route = |name: &str, trust: &str, ca: &Path| {
        format!(
            "[[routes]]\nname = \"{name}\"\nprefix = \"/{name}/\"\nstrip_prefix = true\n\
             upstream = \"{}\"\nca_file = \"{}\"\ntls = {{ trust = \"{trust}\" }}\n",
            target.url(),
            ca.display()
        )
    };
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{}{}{}",
        route("system", "system+ca_file", &private.ca),
        route("only", "ca_file_only", &private.ca),
        route("own", "ca_file_only", &system.ca),
    );
    let (_binary, addr) = binary_with_system_roots(&toml, &system.ca);

    let reply = get(addr, "/system/Users", &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let reply = get(addr, "/only/Users", &[]).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.text());
    let body = error_body(&reply);
    assert_eq!(body["error"], "tls", "{body}");
    assert_eq!(body["route"], "only", "{body}");
    // Both test CAs carry the same name, so webpki tries the private one and finds its
    // signature wrong (BadSignature); with differently named CAs it is UnknownIssuer.
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("invalid peer certificate"),
        "{body}"
    );
    let reply = get(addr, "/own/Users", &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
}

#[tokio::test]
async fn check_prints_each_routes_trust_and_run_warns_about_plain_http_to_a_remote_host() {
    let pki = Pki::new();
    let pin = pki_server_pin(&pki);
    let toml = format!(
        r#"[server]
listen = "127.0.0.1:0"

[[routes]]
name = "pinned"
prefix = "/pinned/"
upstream = "https://localhost:1"
ca_file = "{ca}"
tls = {{ trust = "ca_file_only", pin_sha256 = ["{pin}"] }}

[[routes]]
name = "public"
prefix = "/public/"
upstream = "https://api.example.com"

[[routes]]
name = "cleartext"
prefix = "/cleartext/"
upstream = "http://192.0.2.10:8080"

[[routes]]
name = "sidecar"
prefix = "/sidecar/"
upstream = "http://127.0.0.1:8081"
"#,
        ca = pki.ca.display()
    );
    let (binary, _) = binary_with_system_roots(&toml, &pki.ca);
    let warnings: Vec<&str> = binary
        .stderr
        .lines()
        .filter(|line| line.contains("WARN") && line.contains("plain http"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", binary.stderr);
    assert!(
        warnings[0].contains("routes[2].upstream"),
        "{}",
        warnings[0]
    );

    let check = Command::new(env!("CARGO_BIN_EXE_provproxy"))
        .args(["check", "--config"])
        .arg(&binary.config)
        .env_remove("RUST_LOG")
        .output()
        .expect("run provproxy check");
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(0), "{stdout}");
    // The lines of one route, from its name to the next route.
    let route_block = |route: &str| -> Vec<String> {
        stdout
            .lines()
            .skip_while(|l| *l != format!("name = \"{route}\""))
            .take_while(|l| *l != "[[routes]]")
            .map(str::to_owned)
            .collect()
    };
    let pinned = route_block("pinned");
    for line in [
        "[routes.tls]".to_owned(),
        "trust = \"ca_file_only\"".to_owned(),
        format!("pin_sha256 = [\"{pin}\"]"),
        format!("# trusted: only {}", pki.ca.display()),
    ] {
        assert!(pinned.contains(&line), "{line} in {pinned:#?}");
    }
    let public = route_block("public");
    assert!(
        public.contains(&"trust = \"system+ca_file\"".to_owned()),
        "{public:#?}"
    );
    assert!(public.contains(&"# trusted: the system and webpki roots".to_owned()));
    let cleartext = route_block("cleartext");
    assert!(cleartext.contains(&"# plain http: no TLS to the target".to_owned()));
    assert!(!cleartext.contains(&"[routes.tls]".to_owned()));
    assert!(stdout.contains("# warning: routes[2].upstream: http://192.0.2.10:8080/ is plain http"));
    assert!(
        !stdout.contains("routes[3].upstream"),
        "loopback is not warned about: {stdout}"
    );
}

fn load(text: &str) -> Result<provproxy::config::Plan, provproxy::config::ConfigError> {
    provproxy::config::load_str(text, "x.toml", Path::new("/etc/provproxy"), &|_| {
        Some("secret-value".to_owned())
    })
}

#[test]
fn routes_tls_mistakes_are_one_line_naming_the_key_and_the_fix() {
    let route = |keys: &str| {
        format!(
            "[[routes]]\nname = \"r\"\nprefix = \"/\"\nupstream = \"https://t.example\"\n{keys}\n"
        )
    };
    let pin_32 = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let pin_20 = base64::engine::general_purpose::STANDARD.encode([7u8; 20]);
    let cases = [
        (
            route("tls = { trust = \"ca_file_only\" }"),
            "x.toml:5:17: routes[0].tls.trust: \"ca_file_only\" needs the route's ca_file",
        ),
        (
            route("ca_file = \"ca.pem\"\ntls = { trust = \"system\" }"),
            "x.toml:6:17: routes[0].tls.trust: unknown trust \"system\", expected one of system+ca_file, ca_file_only",
        ),
        (
            route(&format!("tls = {{ pin_sha256 = [\"{pin_32}\", \"{pin_20}\"] }}")),
            "routes[0].tls.pin_sha256[1]: \"BwcHBwcHBwcHBwcHBwcHBwcHBwc=\" is 20 bytes, not 32",
        ),
        (
            route("tls = { pin_sha256 = [\"not base64!\"] }"),
            "routes[0].tls.pin_sha256[0]: \"not base64!\" is not base64",
        ),
        (
            route("tls = { pin_sha256 = [] }"),
            "routes[0].tls.pin_sha256: empty",
        ),
        (
            route("tls = { pins = [] }"),
            "routes[0].tls.pins: unknown key `pins`, did you mean `pin_sha256`?",
        ),
        (
            route("tls = { trust = \"system+ca_file\" }").replace("https://", "http://"),
            "routes[0].tls: not used with an http:// upstream",
        ),
    ];
    for (text, expected) in cases {
        let err = load(&text).expect_err(&text).to_string();
        assert!(err.contains(expected), "{expected:?}\nnot in\n{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    let plan = load(&route(&format!(
        "tls = {{ pin_sha256 = [\"sha256//{pin_32}\"] }}"
    )))
    .expect("a curl-style pin loads");
    assert_eq!(plan.routes[0].upstream.pin_sha256, vec![[7u8; 32]]);
}

#[test]
fn plain_http_upstream_and_token_urls_off_loopback_are_warned_about_and_loopback_is_not() {
    let plan = load(
        r#"
[[routes]]
name = "remote"
prefix = "/remote/"
upstream = "http://osmc.example.com/api/"
[routes.auth]
kind = "oauth2"
token_url = "http://login.example.com/oauth/token"
client_id = "provproxy"
client_secret = { env = "SECRET" }

[[routes]]
name = "local"
prefix = "/local/"
upstream = "http://localhost:8080"
[routes.auth]
kind = "oauth2"
token_url = "http://127.0.0.1:9000/token"
client_id = "provproxy"
client_secret = { env = "SECRET" }

[[routes]]
name = "v6"
prefix = "/v6/"
upstream = "http://[::1]:8080"
"#,
    )
    .expect("valid config");
    let plain: Vec<&String> = plan
        .warnings
        .iter()
        .filter(|w| w.contains("plain http"))
        .collect();
    assert_eq!(plain.len(), 2, "{plain:#?}");
    assert!(plain[0].starts_with("routes[0].upstream: http://osmc.example.com/api/ is plain http"));
    assert!(plain[1].starts_with("routes[0].auth.token_url: http://login.example.com/oauth/token"));
}
