//! TLS on both sides: an HTTPS target behind a private CA (trusted through the route's
//! `ca_file`, refused without it) and the proxy's own TLS listener speaking HTTP/1.1 and HTTP/2.

mod common;

use http::{StatusCode, Version};

use common::{error_body, get, get_tls, ok, proxy, Pki, Upstream};

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
