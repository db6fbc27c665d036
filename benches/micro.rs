//! Micro-benchmarks of the per-request pieces (issue 8): route match, Cookie header build and
//! Set-Cookie absorb, challenge parse and rewrite, redaction and HAR / JSON-lines serialisation
//! of a typical SCIM exchange. `cargo bench --bench micro`; under `cargo test` criterion runs
//! each once.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, SET_COOKIE, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Version};
use provproxy::config::{self, Plan};
use provproxy::proxy::route::Router;
use provproxy::session::Jar;
use provproxy::trace::record::{
    Actions, CapturedBody, ExchangeRecord, RequestPart, ResponsePart, Role, Timings,
};
use provproxy::trace::{har, json_out, jsonl, Redactor};
use url::Url;

const PLAN: &str = r#"
[server]
listen = "127.0.0.1:0"

[[routes]]
name = "osmc"
prefix = "/osmc/"
upstream = "https://osmc.example.com"

[routes.challenge]
mode = "expand"
add = ['Basic realm="osmc"']
split = true

[[routes]]
name = "servicenow"
prefix = "/now/"
upstream = "https://example.service-now.com"

[[routes]]
name = "onetrust"
host = "onetrust.proxy.local"
upstream = "https://app.onetrust.com"

[[routes]]
name = "scim"
prefix = "/scim/v2/"
upstream = "https://scim.example.com"
"#;

const USER_JSON: &str = r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"id":"2819c223-7f76-453a-919d-413861904646","externalId":"bjensen","userName":"bjensen@example.com","password":"t1meMa$heen","name":{"formatted":"Ms. Barbara J Jensen III","familyName":"Jensen","givenName":"Barbara"},"displayName":"Babs Jensen","active":true,"emails":[{"value":"bjensen@example.com","type":"work","primary":true}],"groups":[{"value":"e9e30dba-f08f-4109-8486-d5c6a331660a","display":"Tour Guides"}]}"#;

fn plan() -> Plan {
    match config::load_str(PLAN, "micro.toml", Path::new("."), &|_| None) {
        Ok(plan) => plan,
        Err(err) => panic!("bench plan: {err}"),
    }
}

fn route_match(c: &mut Criterion) {
    let plan = plan();
    let router = Router::new(&plan.routes);
    let by_prefix = Request::get("/scim/v2/Users/2819c223?attributes=userName")
        .header("host", "127.0.0.1:8080")
        .body(())
        .unwrap();
    let by_host = Request::get("/api/scim/v2/Users")
        .header("host", "OneTrust.proxy.local:8443")
        .body(())
        .unwrap();
    c.bench_function("route match (prefix)", |b| {
        b.iter(|| router.find(black_box(&by_prefix)))
    });
    c.bench_function("route match (host)", |b| {
        b.iter(|| router.find(black_box(&by_host)))
    });
}

fn set_cookies() -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in [
        "JSESSIONID=0A1B2C3D4E5F60718293A4B5C6D7E8F9; Path=/; Secure; HttpOnly",
        "glide_user_route=glide.8f1e2d3c4b5a69788796a5b4c3d2e1f0; Path=/; Max-Age=2147483647; Secure; HttpOnly",
        "BIGipServerpool_osmc=1677787402.36895.0000; path=/; Httponly; Secure",
    ] {
        headers.append(SET_COOKIE, HeaderValue::from_static(line));
    }
    headers
}

fn cookie_jar(c: &mut Criterion) {
    let url =
        Url::parse("https://osmc.example.com/osmc/api/v1/accounts/1234/entitlements").unwrap();
    let headers = set_cookies();
    let mut full = Jar::new();
    full.absorb(&url, &headers, SystemTime::now());
    // Each iteration reads the clock, as the proxy does once per request.
    c.bench_function("jar cookie header (3 cookies)", |b| {
        b.iter(|| full.cookie_header(black_box(&url), black_box(url.path()), SystemTime::now()))
    });
    c.bench_function("jar absorb 3 Set-Cookie (rotation)", |b| {
        let mut jar = Jar::new();
        jar.absorb(&url, &headers, SystemTime::now());
        b.iter(|| jar.absorb(black_box(&url), black_box(&headers), SystemTime::now()))
    });
}

const CHALLENGE: &str = r#"Token realm="osmc", Bearer realm="osmc", error="invalid_token", error_description="The access token expired""#;

fn challenge(c: &mut Criterion) {
    let plan = plan();
    let rewriter = provproxy::challenge::Rewriter::new(&plan.routes[0].challenge)
        .expect("the bench route's challenge plan is valid");
    c.bench_function("challenge parse (2 challenges)", |b| {
        b.iter(|| provproxy::challenge::parse(black_box(CHALLENGE)))
    });
    let mut headers = HeaderMap::new();
    headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(CHALLENGE));
    c.bench_function("challenge rewrite 401 (expand + split)", |b| {
        b.iter_batched_ref(
            || headers.clone(),
            |h| rewriter.rewrite(StatusCode::UNAUTHORIZED, h),
            criterion::BatchSize::SmallInput,
        )
    });
    let mut ok = HeaderMap::new();
    ok.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    c.bench_function("challenge rewrite 200 (untouched)", |b| {
        b.iter(|| rewriter.rewrite(StatusCode::OK, black_box(&mut ok)))
    });
}

/// A SCIM create as a connector sends it through the proxy, with the injected credential and
/// the session cookie, and the target's answer.
fn scim_exchange() -> ExchangeRecord {
    let mut request_headers = HeaderMap::new();
    request_headers.insert(
        AUTHORIZATION,
        HeaderValue::from_static("Basic c3ZjX3Byb3Zpc2lvbjpzM2NyM3QtcGFzc3dvcmQ="),
    );
    request_headers.insert(
        COOKIE,
        HeaderValue::from_static("JSESSIONID=0A1B2C3D4E5F60718293A4B5C6D7E8F9"),
    );
    request_headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/scim+json"),
    );
    request_headers.insert(
        "user-agent",
        HeaderValue::from_static("Okta SCIM Client 1.0.0"),
    );
    request_headers.insert("accept", HeaderValue::from_static("application/scim+json"));
    let mut response_headers = set_cookies();
    response_headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/scim+json"),
    );
    response_headers.insert(
        "location",
        HeaderValue::from_static(
            "https://scim.example.com/scim/v2/Users/2819c223-7f76-453a-919d-413861904646",
        ),
    );
    let body = |text: &'static str| CapturedBody {
        bytes: Bytes::from_static(text.as_bytes()),
        total_size: text.len() as u64,
        truncated: false,
    };
    ExchangeRecord {
        id: 42,
        parent: None,
        role: Role::Client,
        started: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        timings: Timings {
            connect: Some(Duration::from_micros(350)),
            first_byte: Some(Duration::from_millis(12)),
            total: Duration::from_millis(13),
        },
        client_addr: Some(([127, 0, 0, 1], 50123).into()),
        client_name: Some("okta".into()),
        route: Some("scim".into()),
        session_key: Some("route".into()),
        request: RequestPart {
            method: Method::POST,
            url: "https://scim.example.com/scim/v2/Users?access_token=abc123".into(),
            version: Version::HTTP_11,
            headers: request_headers,
            body: Some(body(USER_JSON)),
        },
        response: Some(ResponsePart {
            status: StatusCode::CREATED,
            version: Version::HTTP_11,
            headers: response_headers,
            body: Some(body(USER_JSON)),
        }),
        actions: Actions {
            auth_injected: Some("basic"),
            cookies_replayed: vec!["JSESSIONID".into()].into(),
            cookies_stored: vec!["JSESSIONID".into(), "glide_user_route".into()],
            ..Actions::default()
        },
        error: None,
    }
}

/// A ServiceNow SOAP insert of a user with its password, as XML redaction sees it.
const SOAP_INSERT: &str = concat!(
    r#"<?xml version="1.0" encoding="UTF-8"?>"#,
    r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:sys="http://www.service-now.com/sys_user">"#,
    "<soapenv:Header/><soapenv:Body><sys:insert>",
    "<active>true</active><email>bjensen@example.com</email><first_name>Barbara</first_name>",
    "<last_name>Jensen</last_name><user_name>bjensen</user_name>",
    "<user_password>t1meMa$heen</user_password><department>Tour Guides</department>",
    "</sys:insert></soapenv:Body></soapenv:Envelope>"
);

fn trace(c: &mut Criterion) {
    let redactor = Redactor::with_default_fields();
    let record = scim_exchange();
    c.bench_function("trace redact SCIM exchange", |b| {
        b.iter(|| redactor.redact(black_box(&record)))
    });
    let mut soap = scim_exchange();
    for part in [
        &mut soap.request.headers,
        &mut soap.response.as_mut().unwrap().headers,
    ] {
        part.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/xml; charset=utf-8"),
        );
    }
    let body = CapturedBody {
        bytes: Bytes::from_static(SOAP_INSERT.as_bytes()),
        total_size: SOAP_INSERT.len() as u64,
        truncated: false,
    };
    soap.request.body = Some(body.clone());
    soap.response.as_mut().unwrap().body = Some(body);
    c.bench_function("trace redact SOAP exchange", |b| {
        b.iter(|| redactor.redact(black_box(&soap)))
    });
    let redacted = redactor.redact(&record);
    // As the writer task does: one buffer and one memo of escaped bodies reused per record.
    let mut out = Vec::new();
    let mut memo = json_out::Memo::default();
    let mut marks = jsonl::Marks::default();
    c.bench_function("trace HAR entry to bytes", |b| {
        b.iter(|| {
            out.clear();
            memo.clear();
            har::entry(black_box(&redacted)).write(&mut out, &mut memo)
        })
    });
    c.bench_function("trace JSON line to bytes", |b| {
        b.iter(|| {
            out.clear();
            memo.clear();
            jsonl::record(black_box(&redacted)).write(&mut out, &mut memo, &mut marks)
        })
    });
}

/// A typical SCIM request head, as a connector sends it (10 header lines; shared with the parse
/// unit tests).
const SCIM_HEAD: &[u8] = include_bytes!("../tests/fixtures/scim_request_head.http");

/// One request head (issue 22): the strict parse of our own HTTP/1 server connection against
/// the two parses it replaces, the framing guard's scan (on a keep-alive connection, so its
/// buffers are warm) and httparse's (which hyper's parse is built on).
fn request_head(c: &mut Criterion) {
    use provproxy::server::framing::Scanner;
    use provproxy::server::http1::parse::{parse, Limits};
    let limits = Limits {
        max_head_bytes: 64 * 1024,
        max_headers: 100,
    };
    c.bench_function("request head: strict parse", |b| {
        b.iter(|| parse(black_box(SCIM_HEAD), &limits).map(|head| head.is_some()))
    });
    let body = [b'x'; 312];
    let mut scanner = Scanner::default();
    c.bench_function("request head: guard scan", |b| {
        b.iter(|| {
            let head = scanner.scan(black_box(SCIM_HEAD)).is_ok();
            head && scanner.scan(&body).is_ok()
        })
    });
    c.bench_function("request head: httparse", |b| {
        b.iter(|| {
            let mut headers = [httparse::EMPTY_HEADER; 100];
            let mut request = httparse::Request::new(&mut headers);
            request
                .parse(black_box(SCIM_HEAD))
                .map(|status| status.is_complete())
        })
    });
}

criterion_group!(
    benches,
    route_match,
    cookie_jar,
    challenge,
    trace,
    request_head
);
criterion_main!(benches);
