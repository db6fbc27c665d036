//! Real clients that choose their scheme from the challenge: straight against the targets they
//! fail when only Bearer is advertised and succeed when Basic is advertised on a line of its
//! own; through the proxy with `challenge.mode = "expand"` and `split = true` they succeed with
//! exactly one challenge round trip.

mod clients;

use bytes::Bytes;
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderValue, Request, StatusCode};
use provproxy::demo::server::{json, serve, TargetServer};
use provproxy::demo::single_scheme::{self, Advertise};
use provproxy::server::Running;

use clients::{curl_anyauth, curl_basic, http_client};

const USER: &str = "svc_provision";
const PASSWORD: &str = "pa:ss word";
const SYS_USER: &str = "/api/now/table/sys_user";

/// `Basic base64("svc_provision:pa:ss word")`
const BASIC: &str = "Basic c3ZjX3Byb3Zpc2lvbjpwYTpzcyB3b3Jk";

/// A target that accepts exactly [`BASIC`] and whose 401 carries these `WWW-Authenticate` lines.
async fn target_advertising(lines: &'static [&'static str]) -> TargetServer {
    serve(move |request: Request<Bytes>| {
        let authorised = request
            .headers()
            .get(AUTHORIZATION)
            .map(HeaderValue::as_bytes)
            == Some(BASIC.as_bytes());
        async move {
            if authorised {
                return json(StatusCode::OK, r#"{"result":[]}"#);
            }
            let mut response = json(StatusCode::UNAUTHORIZED, r#"{"status":"failure"}"#);
            for line in lines {
                response
                    .headers_mut()
                    .append(WWW_AUTHENTICATE, HeaderValue::from_static(line));
            }
            response
        }
    })
    .await
    .expect("bind target")
}

const SPLIT_LINES: &[&str] = &[r#"Bearer realm="x""#, r#"Basic realm="x""#];
const COMBINED_LINE: &[&str] = &[r#"Bearer realm="x", Basic realm="x""#];

fn url(target: &TargetServer) -> String {
    format!("{}{SYS_USER}", target.url())
}

#[tokio::test]
async fn bearer_only_target_accepts_preemptive_basic() {
    let (target, stats) = single_scheme::spawn(USER, PASSWORD).await.expect("spawn");
    let run = curl_basic(&url(&target), USER, PASSWORD).await;
    assert_eq!(run.status, 200, "{run:?}");
    assert_eq!(stats.authorized(), 1);
    assert_eq!(stats.unauthorized(), 0);
}

#[tokio::test]
async fn http_client_never_sends_basic_to_a_bearer_only_target() {
    let (target, stats) = single_scheme::spawn(USER, PASSWORD).await.expect("spawn");
    let run = http_client(&url(&target), USER, PASSWORD).await;
    assert_eq!(run.status, 401, "{run:?}");
    assert!(run.sent.is_empty(), "{run:?}");
    assert_eq!(stats.authorized(), 0);
    assert_eq!(stats.unauthorized(), stats.requests());
}

#[tokio::test]
async fn curl_anyauth_never_sends_basic_to_a_bearer_only_target() {
    let (target, stats) = single_scheme::spawn(USER, PASSWORD).await.expect("spawn");
    let run = curl_anyauth(&url(&target), USER, PASSWORD).await;
    assert_eq!(run.status, 401, "{run:?}");
    assert!(run.sent.is_empty(), "{run:?}");
    assert_eq!(stats.authorized(), 0);
}

#[tokio::test]
async fn http_client_sends_basic_when_basic_has_its_own_line() {
    let target = target_advertising(SPLIT_LINES).await;
    let run = http_client(&url(&target), USER, PASSWORD).await;
    assert_eq!(run.status, 200, "{run:?}");
    assert_eq!(run.sent, vec!["Basic"]);
}

#[tokio::test]
async fn curl_anyauth_sends_basic_when_basic_has_its_own_line() {
    let target = target_advertising(SPLIT_LINES).await;
    let run = curl_anyauth(&url(&target), USER, PASSWORD).await;
    assert_eq!(run.status, 200, "{run:?}");
    assert_eq!(run.sent, vec!["Basic"]);
}

/// Why `split = true` is the default: HttpClient 4 reads only the first challenge of a line.
#[tokio::test]
async fn http_client_misses_basic_after_bearer_on_a_combined_line() {
    let target = target_advertising(COMBINED_LINE).await;
    let run = http_client(&url(&target), USER, PASSWORD).await;
    assert_eq!(run.status, 401, "{run:?}");
    assert!(run.sent.is_empty(), "{run:?}");
}

#[tokio::test]
async fn curl_anyauth_finds_basic_after_bearer_on_a_combined_line() {
    let target = target_advertising(COMBINED_LINE).await;
    let run = curl_anyauth(&url(&target), USER, PASSWORD).await;
    assert_eq!(run.status, 200, "{run:?}");
    assert_eq!(run.sent, vec!["Basic"]);
}

/// With `Digest ..., Basic ...` on one line HttpClient sees Digest only, and prefers it anyway;
/// a Basic-only target then refuses it.
#[tokio::test]
async fn http_client_answers_a_combined_digest_basic_line_with_digest() {
    let (target, stats) =
        single_scheme::spawn_advertising(Advertise::DigestAndBasicCombined, USER, PASSWORD)
            .await
            .expect("spawn");
    let run = http_client(&url(&target), USER, PASSWORD).await;
    assert_eq!(run.status, 401, "{run:?}");
    assert!(run.sent_scheme("Digest"), "{run:?}");
    assert!(!run.sent_scheme("Basic"), "{run:?}");
    assert_eq!(stats.authorized(), 0);
}

#[tokio::test]
async fn curl_anyauth_prefers_digest_from_a_combined_digest_basic_line() {
    let (target, _stats) =
        single_scheme::spawn_advertising(Advertise::DigestAndBasicCombined, USER, PASSWORD)
            .await
            .expect("spawn");
    let run = curl_anyauth(&url(&target), USER, PASSWORD).await;
    assert_eq!(run.status, 401, "{run:?}");
    assert!(run.sent_scheme("Digest"), "{run:?}");
    assert!(!run.sent_scheme("Basic"), "{run:?}");
}

/// The proxy in front of `target`, fixing the challenge as `challenge` says and injecting
/// nothing: the client still authenticates itself.
async fn challenge_fixing_proxy(target: &TargetServer, challenge: &str) -> Running {
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:0"

[[routes]]
name = "servicenow"
prefix = "/"
upstream = "{}"

[routes.challenge]
{challenge}
"#,
        target.url()
    );
    let plan =
        provproxy::config::load_str(&config, "test.toml", std::path::Path::new("."), &|_| None)
            .expect("valid config");
    provproxy::start(plan).await.expect("start proxy")
}

const EXPAND_BASIC: &str = r#"mode = "expand"
add = ['Basic realm="servicenow"']
split = true"#;

#[tokio::test]
async fn http_client_succeeds_through_the_proxy_with_one_challenge_round_trip() {
    let (target, stats) = single_scheme::spawn(USER, PASSWORD).await.expect("spawn");
    let proxy = challenge_fixing_proxy(&target, EXPAND_BASIC).await;
    let run = http_client(
        &format!("http://{}{SYS_USER}", proxy.addr()),
        USER,
        PASSWORD,
    )
    .await;
    assert_eq!(run.status, 200, "{run:?}");
    assert_eq!(run.sent, vec!["Basic"]);
    assert_eq!(stats.unauthorized(), 1, "exactly one challenge round trip");
    assert_eq!(stats.authorized(), 1);
    proxy.shutdown().await;
}

#[tokio::test]
async fn curl_anyauth_succeeds_through_the_proxy_with_one_challenge_round_trip() {
    let (target, stats) = single_scheme::spawn(USER, PASSWORD).await.expect("spawn");
    let proxy = challenge_fixing_proxy(&target, EXPAND_BASIC).await;
    let run = curl_anyauth(
        &format!("http://{}{SYS_USER}", proxy.addr()),
        USER,
        PASSWORD,
    )
    .await;
    assert_eq!(run.status, 200, "{run:?}");
    assert_eq!(run.sent, vec!["Basic"]);
    assert_eq!(stats.unauthorized(), 1, "exactly one challenge round trip");
    assert_eq!(stats.authorized(), 1);
    proxy.shutdown().await;
}

/// Split into one line per challenge, HttpClient sees both Digest and Basic and picks the one it
/// prefers — Digest — which proves it read past the first challenge of the target's line.
#[tokio::test]
async fn http_client_picks_its_preferred_scheme_from_a_split_digest_basic_challenge() {
    let (target, _stats) =
        single_scheme::spawn_advertising(Advertise::DigestAndBasicCombined, USER, PASSWORD)
            .await
            .expect("spawn");
    let proxy = challenge_fixing_proxy(&target, "mode = \"expand\"\nsplit = true").await;
    let run = http_client(
        &format!("http://{}{SYS_USER}", proxy.addr()),
        USER,
        PASSWORD,
    )
    .await;
    assert!(run.sent_scheme("Digest"), "{run:?}");
    proxy.shutdown().await;
}

/// Removing Digest from the split challenge leaves Basic, which the target accepts.
#[tokio::test]
async fn http_client_sends_basic_when_the_proxy_removes_digest_from_the_challenge() {
    let (target, stats) =
        single_scheme::spawn_advertising(Advertise::DigestAndBasicCombined, USER, PASSWORD)
            .await
            .expect("spawn");
    let proxy = challenge_fixing_proxy(
        &target,
        "mode = \"expand\"\nremove = [\"Digest\"]\nsplit = true",
    )
    .await;
    let run = http_client(
        &format!("http://{}{SYS_USER}", proxy.addr()),
        USER,
        PASSWORD,
    )
    .await;
    assert_eq!(run.status, 200, "{run:?}");
    assert_eq!(run.sent, vec!["Basic"]);
    assert_eq!(stats.authorized(), 1);
    proxy.shutdown().await;
}
