//! Paths are normalised before routing and before any client restriction, and the normalised
//! path is what reaches the target: a client kept off `/admin/` cannot reach it through
//! `/./admin`, `//admin`, `/%61dmin` or `/x/../admin`; encodings a target may decode into a
//! separator are refused unless the route allows them; and `strip_prefix` never sends a path
//! above the upstream's base path. Requests are raw bytes, so no client library tidies them.

mod common;

use std::net::SocketAddr;

use http::{Request, StatusCode};
use provproxy::body::full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::{ok, proxy, request_h2c, Upstream, PATIENCE};

const OPS_TOKEN: &str = "ops-client-token-3c1d";
const IIQ_TOKEN: &str = "iiq-client-token-8e2a";

fn secrets() -> [(&'static str, &'static str); 2] {
    [("OPS_TOKEN", OPS_TOKEN), ("IIQ_TOKEN", IIQ_TOKEN)]
}

/// `/admin/` is for `ops` only; `/` is open to both clients and goes to the same target, as a
/// catch-all route often does; `/files/` lets encoded slashes through.
const RESTRICTED: &str = r#"
[server]
listen = "127.0.0.1:0"

[[server.clients]]
name = "ops"
token = { env = "OPS_TOKEN" }

[[server.clients]]
name = "iiq"
token = { env = "IIQ_TOKEN" }

[[routes]]
name = "admin"
prefix = "/admin/"
upstream = "{upstream}"
clients = ["ops"]

[[routes]]
name = "files"
prefix = "/files/"
upstream = "{upstream}"
allow_encoded_slashes = true

[[routes]]
name = "app"
prefix = "/"
upstream = "{upstream}"
"#;

/// A response as read off the socket: status and body text.
struct Raw {
    status: u16,
    body: String,
}

/// Sends `GET path` exactly as written, with the client's token, and reads the whole answer.
async fn raw_get(addr: SocketAddr, path: &str, token: &str) -> Raw {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut response))
        .await
        .expect("the proxy answers and closes")
        .expect("read");
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    Raw {
        status,
        body: body.to_owned(),
    }
}

#[tokio::test]
async fn each_bypass_of_a_restricted_route_is_normalised_onto_that_route_and_refused() {
    let mut upstream = Upstream::start(ok).await;
    let proxy = proxy(RESTRICTED, &upstream.url(), &secrets()).await;
    for path in [
        "/./admin/users",
        "//admin/users",
        "/%61dmin/users",
        "/%61%64%6D%69%6E/users",
        "/x/../admin/users",
        "/app/../admin/./users",
    ] {
        let refused = raw_get(proxy.addr(), path, IIQ_TOKEN).await;
        assert_eq!(refused.status, 403, "{path}: {}", refused.body);
        assert!(
            refused.body.contains("client_not_allowed"),
            "{path}: {}",
            refused.body
        );
        assert!(upstream.received().is_empty(), "{path} reached the target");
        // The client the route is for gets there, and the target sees the normalised path.
        let allowed = raw_get(proxy.addr(), path, OPS_TOKEN).await;
        assert_eq!(allowed.status, 200, "{path}: {}", allowed.body);
        assert_eq!(upstream.only().uri.path(), "/admin/users", "{path}");
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn encoded_separators_nul_and_backslashes_are_refused_before_anything_reaches_the_target() {
    let mut upstream = Upstream::start(ok).await;
    let proxy = proxy(RESTRICTED, &upstream.url(), &secrets()).await;
    for path in [
        "/%2Fadmin/users",
        "/%2fadmin/users",
        "/admin%2Fusers",
        "/x%5Cadmin/users",
        "/x%5c..%5cadmin/users",
        "/%2E/admin/users",
        "/x/%2e%2e/admin/users",
        "/admin/users%00",
        "/x/..;/admin/users",
        "/x\\..\\admin/users",
        "/x/%zz",
    ] {
        for token in [IIQ_TOKEN, OPS_TOKEN] {
            let refused = raw_get(proxy.addr(), path, token).await;
            assert_eq!(refused.status, 400, "{path}: {}", refused.body);
            assert!(
                refused.body.contains(r#""error":"bad_path""#),
                "{path}: {}",
                refused.body
            );
        }
        assert!(upstream.received().is_empty(), "{path} reached the target");
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_route_that_allows_encoded_slashes_gets_them_as_sent_but_never_an_encoded_dot_segment() {
    let mut upstream = Upstream::start(ok).await;
    let proxy = proxy(RESTRICTED, &upstream.url(), &secrets()).await;
    for path in ["/files/a%2Fb", "/files/dir%5Cname", "/files/report%2Etxt"] {
        let allowed = raw_get(proxy.addr(), path, IIQ_TOKEN).await;
        assert_eq!(allowed.status, 200, "{path}: {}", allowed.body);
        assert_eq!(upstream.only().uri.path(), path);
    }
    for path in [
        "/files/%2E%2E%2Fadmin/users",
        "/files/..%2F..%2Fadmin/users",
        "/files/x%5C..%5C..%5Cadmin",
        "/files/a%00",
    ] {
        let refused = raw_get(proxy.addr(), path, IIQ_TOKEN).await;
        assert_eq!(refused.status, 400, "{path}: {}", refused.body);
        assert!(upstream.received().is_empty(), "{path} reached the target");
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn strip_prefix_never_sends_a_path_above_the_upstreams_base_path() {
    let mut upstream = Upstream::start(ok).await;
    let config = r#"
[server]
listen = "127.0.0.1:0"

[[routes]]
name = "osmc"
prefix = "/osmc/"
strip_prefix = true
upstream = "{upstream}/api/"
"#;
    let proxy = proxy(config, &upstream.url(), &[]).await;
    // Resolved before routing, these leave the route altogether: nothing goes up.
    for path in [
        "/osmc/../../outside/x",
        "/osmc/../outside",
        "/osmc/a/../../../x",
    ] {
        let reply = raw_get(proxy.addr(), path, "none").await;
        assert_eq!(reply.status, 404, "{path}: {}", reply.body);
        assert!(upstream.received().is_empty(), "{path} reached the target");
    }
    for (path, upstream_path) in [
        ("/osmc/a/../b", "/api/b"),
        ("/osmc//./users/%61", "/api/users/a"),
        ("/osmc/users/..", "/api/"),
    ] {
        let reply = raw_get(proxy.addr(), path, "none").await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
        assert_eq!(upstream.only().uri.path(), upstream_path, "{path}");
    }
    let refused = raw_get(proxy.addr(), "/osmc/%2e%2e/%2e%2e/outside/x", "none").await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(upstream.received().is_empty());
    proxy.shutdown().await;
}

#[tokio::test]
async fn http2_paths_are_normalised_the_same_way() {
    let mut upstream = Upstream::start(ok).await;
    let proxy = proxy(RESTRICTED, &upstream.url(), &secrets()).await;
    let addr = proxy.addr();
    let request = |token: &str| {
        Request::get(format!("http://{addr}/x/../admin/./users"))
            .header("authorization", format!("Bearer {token}"))
            .body(full(""))
            .expect("request")
    };
    let (_, refused) = request_h2c(request(IIQ_TOKEN)).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text());
    assert!(upstream.received().is_empty());
    let (_, allowed) = request_h2c(request(OPS_TOKEN)).await;
    assert_eq!(allowed.status, StatusCode::OK, "{}", allowed.text());
    assert_eq!(upstream.only().uri.path(), "/admin/users");
    proxy.shutdown().await;
}
