//! What reaches the target through the proxy: stored auth, routing, header hygiene,
//! `X-Forwarded-*`, `Host`, `Location` rewriting, HTTP/2 clients and the body limit.

mod common;

use base64::Engine;
use http::{Request, Response, StatusCode, Version};
use provproxy::body::full;

use common::{error_body, get, ok, proxy, request_h1, request_h2c, Recorded, Upstream};

const USER: &str = "svc_provision";
const PASSWORD: &str = "Pw-of-the-route-7f3a";
const TOKEN: &str = "tok-route-b41c";
const API_KEY: &str = "key-route-93d2";

fn basic() -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    format!("Basic {encoded}")
}

/// One route per stored-auth kind, all with the same `when`: `/basic/`, `/bearer/`, `/header/`.
fn auth_routes(when: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[[routes]]
name = "basic"
prefix = "/basic/"
upstream = "{{upstream}}"
[routes.auth]
kind = "basic"
when = "{when}"
username = "{USER}"
password = {{ env = "PASSWORD" }}

[[routes]]
name = "bearer"
prefix = "/bearer/"
upstream = "{{upstream}}"
[routes.auth]
kind = "bearer"
when = "{when}"
token = {{ env = "TOKEN" }}

[[routes]]
name = "header"
prefix = "/header/"
upstream = "{{upstream}}"
[routes.auth]
kind = "header"
when = "{when}"
name = "X-API-Key"
value = {{ env = "API_KEY" }}
"#
    )
}

const SECRETS: &[(&str, &str)] = &[
    ("PASSWORD", PASSWORD),
    ("TOKEN", TOKEN),
    ("API_KEY", API_KEY),
];

/// (route prefix, header the credential goes in, the stored credential as sent)
fn stored() -> [(&'static str, &'static str, String); 3] {
    [
        ("/basic/", "authorization", basic()),
        ("/bearer/", "authorization", format!("Bearer {TOKEN}")),
        ("/header/", "x-api-key", API_KEY.to_owned()),
    ]
}

#[tokio::test]
async fn when_always_the_stored_credential_replaces_the_clients() {
    let mut upstream = Upstream::start(ok).await;
    let proxy = proxy(&auth_routes("always"), &upstream.url(), SECRETS).await;
    for (prefix, header, expected) in stored() {
        let reply = get(
            proxy.addr(),
            &format!("{prefix}users"),
            &[(header, "client-own-credential")],
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{prefix}: {}", reply.text());
        let seen = upstream.only();
        assert_eq!(seen.header(header), Some(expected.as_str()), "{prefix}");
    }
    for (prefix, header, expected) in stored() {
        get(proxy.addr(), &format!("{prefix}users"), &[]).await;
        assert_eq!(
            upstream.only().header(header),
            Some(expected.as_str()),
            "{prefix} without a client credential"
        );
    }
}

#[tokio::test]
async fn when_missing_the_clients_credential_is_kept() {
    let mut upstream = Upstream::start(ok).await;
    let proxy = proxy(&auth_routes("missing"), &upstream.url(), SECRETS).await;
    for (prefix, header, _) in stored() {
        get(
            proxy.addr(),
            &format!("{prefix}users"),
            &[(header, "client-own-credential")],
        )
        .await;
        assert_eq!(
            upstream.only().header(header),
            Some("client-own-credential"),
            "{prefix}"
        );
    }
}

#[tokio::test]
async fn when_missing_the_stored_credential_is_injected_if_the_client_sent_none() {
    let mut upstream = Upstream::start(ok).await;
    let proxy = proxy(&auth_routes("missing"), &upstream.url(), SECRETS).await;
    for (prefix, header, expected) in stored() {
        get(proxy.addr(), &format!("{prefix}users"), &[]).await;
        assert_eq!(
            upstream.only().header(header),
            Some(expected.as_str()),
            "{prefix}"
        );
    }
}

#[tokio::test]
async fn when_never_nothing_is_injected_and_the_clients_credential_passes() {
    let mut upstream = Upstream::start(ok).await;
    let proxy = proxy(&auth_routes("never"), &upstream.url(), SECRETS).await;
    for (prefix, header, _) in stored() {
        get(proxy.addr(), &format!("{prefix}users"), &[]).await;
        let seen = upstream.only();
        assert_eq!(seen.header(header), None, "{prefix}");
        assert_eq!(seen.header("authorization"), None, "{prefix}");
        get(
            proxy.addr(),
            &format!("{prefix}users"),
            &[(header, "client-own-credential")],
        )
        .await;
        assert_eq!(
            upstream.only().header(header),
            Some("client-own-credential"),
            "{prefix}"
        );
    }
}

#[tokio::test]
async fn a_stored_bearer_token_pasted_with_its_scheme_goes_out_with_one_scheme() {
    let mut upstream = Upstream::start(ok).await;
    let proxy = proxy(
        r#"
[server]
listen = "127.0.0.1:0"
[[routes]]
name = "scim"
prefix = "/scim/"
upstream = "{upstream}"
[routes.auth]
kind = "bearer"
token = { env = "TOKEN" }
"#,
        &upstream.url(),
        &[("TOKEN", "Bearer xyz")],
    )
    .await;
    get(proxy.addr(), "/scim/Users", &[]).await;
    assert_eq!(upstream.only().header("authorization"), Some("Bearer xyz"));
}

#[tokio::test]
async fn the_longest_matching_prefix_wins_and_a_host_route_wins_over_prefixes() {
    let mut short = Upstream::start(ok).await;
    let mut long = Upstream::start(ok).await;
    let mut by_host = Upstream::start(ok).await;
    let toml = format!(
        r#"
[server]
listen = "127.0.0.1:0"
[[routes]]
name = "short"
prefix = "/api/"
upstream = "{}"
[[routes]]
name = "long"
prefix = "/api/v2/"
upstream = "{}"
[[routes]]
name = "by-host"
host = "scim.proxy.local"
upstream = "{}"
"#,
        short.url(),
        long.url(),
        by_host.url()
    );
    let proxy = proxy(&toml, "", &[]).await;

    get(proxy.addr(), "/api/v2/Users", &[]).await;
    assert_eq!(long.only().uri, "/api/v2/Users");
    get(proxy.addr(), "/api/v1/Users", &[]).await;
    assert_eq!(short.only().uri, "/api/v1/Users");
    get(
        proxy.addr(),
        "/api/v2/Users",
        &[("host", "SCIM.proxy.local:8443")],
    )
    .await;
    assert_eq!(by_host.only().uri, "/api/v2/Users");
    assert!(short.received().is_empty() && long.received().is_empty());
}

#[tokio::test]
async fn strip_prefix_and_the_upstream_base_path_shape_the_target_path_and_keep_the_query() {
    let mut upstream = Upstream::start(ok).await;
    let proxy = proxy(
        r#"
[server]
listen = "127.0.0.1:0"
[[routes]]
name = "kept"
prefix = "/kept/"
upstream = "{upstream}"
[[routes]]
name = "stripped"
prefix = "/stripped"
strip_prefix = true
upstream = "{upstream}"
[[routes]]
name = "based"
prefix = "/based/"
strip_prefix = true
upstream = "{upstream}/identity/api/"
"#,
        &upstream.url(),
        &[],
    )
    .await;
    let query = "?filter=userName%20eq%20%22bob%22&count=2&empty=";
    for (sent, expected) in [
        ("/kept/Users/7", "/kept/Users/7".to_owned()),
        ("/stripped/Users/7", "/Users/7".to_owned()),
        ("/stripped", "/".to_owned()),
        ("/based/Users/7", "/identity/api/Users/7".to_owned()),
        (
            &format!("/based/Users{query}"),
            format!("/identity/api/Users{query}"),
        ),
    ] {
        let reply = get(proxy.addr(), sent, &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "{sent}: {}", reply.text());
        assert_eq!(upstream.only().uri.to_string(), expected, "{sent}");
    }
}

#[tokio::test]
async fn no_matching_route_is_a_404_json_body_naming_the_path_and_nothing_is_forwarded() {
    let mut upstream = Upstream::start(ok).await;
    let proxy = proxy(
        r#"
[server]
listen = "127.0.0.1:0"
[[routes]]
name = "osmc"
prefix = "/osmc/"
upstream = "{upstream}"
"#,
        &upstream.url(),
        &[],
    )
    .await;
    let reply = get(proxy.addr(), "/elsewhere/Users?x=1", &[]).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let body = error_body(&reply);
    assert_eq!(body["error"], "no_route");
    assert_eq!(body["side"], "client");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("/elsewhere/Users")),
        "{body}"
    );
    assert!(upstream.received().is_empty());
}

/// Response headers a target might send that must not cross the proxy.
fn hop_by_hop_response(_: &Recorded) -> Response<provproxy::body::ProxyBody> {
    Response::builder()
        .header("connection", "x-target-hop")
        .header("x-target-hop", "1")
        .header("keep-alive", "timeout=5")
        .header("proxy-connection", "keep-alive")
        .header("upgrade", "h2c")
        .header("te", "trailers")
        .header("x-target-end-to-end", "kept")
        .body(full("{}"))
        .expect("response")
}

const RESPONSE_HOP_BY_HOP: [&str; 6] = [
    "connection",
    "x-target-hop",
    "keep-alive",
    "proxy-connection",
    "upgrade",
    "te",
];

#[tokio::test]
async fn hop_by_hop_headers_are_removed_from_the_request_and_the_response() {
    let mut upstream = Upstream::start(hop_by_hop_response).await;
    let proxy = proxy(
        r#"
[server]
listen = "127.0.0.1:0"
[[routes]]
name = "r"
prefix = "/"
upstream = "{upstream}"
"#,
        &upstream.url(),
        &[],
    )
    .await;
    let request = |addr: std::net::SocketAddr| {
        Request::get("/Users")
            .header("host", addr.to_string())
            .header("connection", "keep-alive, x-client-hop")
            .header("x-client-hop", "1")
            .header("keep-alive", "timeout=5")
            .header("te", "trailers")
            .header("upgrade", "websocket")
            .header("proxy-connection", "keep-alive")
            .header("x-client-end-to-end", "kept")
            .body(full(""))
            .expect("request")
    };

    // Control: straight to the target every header arrives, so the proxy is what removes them.
    let direct = request_h1(upstream.addr(), request(upstream.addr())).await;
    for name in RESPONSE_HOP_BY_HOP {
        assert!(direct.headers.contains_key(name), "control: {name} sent");
    }
    let direct_seen = upstream.only();
    for name in [
        "connection",
        "x-client-hop",
        "keep-alive",
        "te",
        "upgrade",
        "proxy-connection",
    ] {
        assert!(direct_seen.headers.contains_key(name), "control: {name}");
    }

    let reply = request_h1(proxy.addr(), request(proxy.addr())).await;
    assert_eq!(reply.status, StatusCode::OK);
    let seen = upstream.only();
    for name in [
        "connection",
        "x-client-hop",
        "keep-alive",
        "te",
        "upgrade",
        "proxy-connection",
    ] {
        assert!(
            !seen.headers.contains_key(name),
            "{name} reached the target: {:?}",
            seen.headers
        );
    }
    assert_eq!(seen.header("x-client-end-to-end"), Some("kept"));
    for name in RESPONSE_HOP_BY_HOP {
        assert!(
            !reply.headers.contains_key(name),
            "{name} reached the client: {:?}",
            reply.headers
        );
    }
    assert_eq!(
        reply
            .headers
            .get("x-target-end-to-end")
            .map(|v| v.as_bytes()),
        Some(&b"kept"[..])
    );
}

#[tokio::test]
async fn forwarded_headers_append_the_client_and_name_the_clients_scheme_and_host() {
    let mut upstream = Upstream::start(ok).await;
    let proxy = proxy(
        r#"
[server]
listen = "127.0.0.1:0"
hosts = ["connector-facing.example"]
[[routes]]
name = "r"
prefix = "/"
upstream = "{upstream}"
"#,
        &upstream.url(),
        &[],
    )
    .await;
    get(
        proxy.addr(),
        "/Users",
        &[
            ("host", "connector-facing.example:8443"),
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-proto", "https"),
        ],
    )
    .await;
    let seen = upstream.only();
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("203.0.113.7, 127.0.0.1")
    );
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(
        seen.header("x-forwarded-host"),
        Some("connector-facing.example:8443")
    );

    get(proxy.addr(), "/Users", &[]).await;
    assert_eq!(upstream.only().header("x-forwarded-for"), Some("127.0.0.1"));
}

#[tokio::test]
async fn host_is_the_upstreams_unless_preserve_host_is_set() {
    let mut upstream = Upstream::start(ok).await;
    let proxy = proxy(
        r#"
[server]
listen = "127.0.0.1:0"
hosts = ["connector-facing.example"]
[[routes]]
name = "rewritten"
prefix = "/rewritten/"
upstream = "{upstream}"
[[routes]]
name = "preserved"
prefix = "/preserved/"
preserve_host = true
upstream = "{upstream}"
"#,
        &upstream.url(),
        &[],
    )
    .await;
    let client_host = [("host", "connector-facing.example:8443")];
    get(proxy.addr(), "/rewritten/Users", &client_host).await;
    assert_eq!(
        upstream.only().header("host"),
        Some(upstream.addr().to_string().as_str())
    );
    get(proxy.addr(), "/preserved/Users", &client_host).await;
    assert_eq!(
        upstream.only().header("host"),
        Some("connector-facing.example:8443")
    );
}

#[tokio::test]
async fn locations_at_the_upstream_point_back_at_the_proxy_and_foreign_ones_are_untouched() {
    // The target's own origin is only known once it listens; it answers with it.
    let origin = std::sync::Arc::new(std::sync::OnceLock::<String>::new());
    let target_origin = origin.clone();
    let upstream = Upstream::start(move |seen: &Recorded| {
        let origin = target_origin.get().expect("origin set");
        let (location, content_location) = if seen.uri.path().ends_with("/foreign") {
            (
                "https://login.example.com/next?x=1".to_owned(),
                format!("{origin}.evil/identity/Users/7"),
            )
        } else {
            (
                format!("{origin}/identity/Users/7?attributes=id"),
                "/identity/Users/7".to_owned(),
            )
        };
        Response::builder()
            .status(StatusCode::CREATED)
            .header("location", location)
            .header("content-location", content_location)
            .body(full("{}"))
            .expect("response")
    })
    .await;
    origin.set(upstream.url()).expect("set once");
    let proxy = proxy(
        r#"
[server]
listen = "127.0.0.1:0"
hosts = ["connector-facing.example"]
[[routes]]
name = "osmc"
prefix = "/osmc/"
strip_prefix = true
upstream = "{upstream}/identity"
"#,
        &upstream.url(),
        &[],
    )
    .await;
    let host = [("host", "connector-facing.example:8443")];
    let reply = get(proxy.addr(), "/osmc/Users", &host).await;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert_eq!(
        reply.headers["location"],
        "http://connector-facing.example:8443/osmc/Users/7?attributes=id"
    );
    assert_eq!(reply.headers["content-location"], "/osmc/Users/7");

    let reply = get(proxy.addr(), "/osmc/foreign", &host).await;
    assert_eq!(
        reply.headers["location"],
        "https://login.example.com/next?x=1"
    );
    assert_eq!(
        reply.headers["content-location"],
        format!("{}.evil/identity/Users/7", upstream.url()).as_str()
    );
}

#[tokio::test]
async fn an_http2_client_is_forwarded_to_the_http1_target() {
    let mut upstream = Upstream::start(ok).await;
    let proxy = proxy(
        r#"
[server]
listen = "127.0.0.1:0"
[[routes]]
name = "scim"
prefix = "/scim/"
strip_prefix = true
upstream = "{upstream}"
[routes.auth]
kind = "bearer"
token = { env = "TOKEN" }
"#,
        &upstream.url(),
        &[("TOKEN", TOKEN)],
    )
    .await;
    let request = Request::post(format!("http://{}/scim/Users?count=1", proxy.addr()))
        .header("content-type", "application/scim+json")
        .body(full(r#"{"userName":"bob"}"#))
        .expect("request");
    let (version, reply) = request_h2c(request).await;
    assert_eq!(version, Version::HTTP_2);
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.text(), r#"{"ok":true}"#);
    let seen = upstream.only();
    assert_eq!(seen.method, http::Method::POST);
    assert_eq!(seen.uri, "/Users?count=1");
    assert_eq!(&seen.body[..], br#"{"userName":"bob"}"#);
    assert_eq!(
        seen.header("host"),
        Some(upstream.addr().to_string().as_str())
    );
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(
        seen.header("x-forwarded-host"),
        Some(proxy.addr().to_string().as_str())
    );
}

#[tokio::test]
async fn a_declared_body_over_max_request_body_is_refused_with_413_before_the_target() {
    let mut upstream = Upstream::start(ok).await;
    let proxy = proxy(
        r#"
[server]
listen = "127.0.0.1:0"
[[routes]]
name = "r"
prefix = "/"
max_request_body = "1KiB"
upstream = "{upstream}"
"#,
        &upstream.url(),
        &[],
    )
    .await;
    let request = Request::post("/Users")
        .header("host", proxy.addr().to_string())
        .header("content-length", "2048")
        .body(full(vec![b'x'; 2048]))
        .expect("request");
    let reply = request_h1(proxy.addr(), request).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    let body = error_body(&reply);
    assert_eq!(body["error"], "body_too_large");
    assert_eq!(body["route"], "r");
    assert!(upstream.received().is_empty());

    let at_limit = Request::post("/Users")
        .header("host", proxy.addr().to_string())
        .body(full(vec![b'x'; 1024]))
        .expect("request");
    assert_eq!(
        request_h1(proxy.addr(), at_limit).await.status,
        StatusCode::OK
    );
    assert_eq!(upstream.only().body.len(), 1024);
}

#[tokio::test]
async fn a_chunked_body_over_max_request_body_is_refused_with_413_and_never_completes_upstream() {
    let mut upstream = Upstream::start(ok).await;
    let proxy = proxy(
        r#"
[server]
listen = "127.0.0.1:0"
[[routes]]
name = "r"
prefix = "/"
max_request_body = "1KiB"
upstream = "{upstream}"
"#,
        &upstream.url(),
        &[],
    )
    .await;
    let chunks = (0..4).map(|_| {
        Ok::<_, std::convert::Infallible>(http_body::Frame::data(bytes::Bytes::from(vec![
            b'x';
            512
        ])))
    });
    let body = http_body_util::StreamBody::new(futures_util::stream::iter(chunks));
    let request = Request::post("/Users")
        .header("host", proxy.addr().to_string())
        .body(provproxy::body::stream(body))
        .expect("request");
    let reply = request_h1(proxy.addr(), request).await;
    assert_eq!(
        reply.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        reply.text()
    );
    assert_eq!(error_body(&reply)["error"], "body_too_large");
    assert!(upstream.received().is_empty());
}
