//! `diagnose` against realistic HARs: ours, and exports from Chrome, Firefox, Fiddler and
//! mitmproxy (no `_provproxy`, base64 bodies, missing optional fields).

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Version};
use provproxy::config::{TracePlan, DEFAULT_REDACT_FIELDS};
use provproxy::trace::diagnose::{diagnose, render_json, render_text, Class, Report};
use provproxy::trace::record::{
    Actions, CapturedBody, ExchangeRecord, RequestPart, ResponsePart, Role, Timings,
};
use provproxy::trace::Tracer;

fn fixture(name: &str) -> Report {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    diagnose(&text).unwrap()
}

fn classes(report: &Report) -> Vec<Class> {
    report.findings.iter().map(|f| f.class).collect()
}

#[test]
fn a_call_without_the_session_cookie_set_earlier_is_session_locked() {
    let report = fixture("sailpoint_session_locked.har");
    assert_eq!(
        classes(&report),
        [Class::SessionLocked, Class::SessionLocked]
    );
    let finding = &report.findings[0];
    assert_eq!(finding.method, "PATCH");
    assert!(finding.evidence[0].contains("cookie JSESSIONID set by entry 1"));
    assert!(finding
        .evidence
        .iter()
        .any(|e| e.contains(r#"Token Basic realm="OSMC""#)));
    assert!(finding.fix.contains("cookies = true"));
    assert!(finding.fix.contains(r#"key = "route""#));
}

#[test]
fn a_bearer_only_challenge_to_a_non_preemptive_client_is_a_scheme_mismatch() {
    // Chrome export: HTTP/2 pseudo-headers, base64 bodies, cookies set on the 401 itself.
    let report = fixture("servicenow_single_scheme_chrome.har");
    assert_eq!(classes(&report), [Class::ChallengeSchemeMismatch]);
    let f = &report.findings[0];
    assert!(f
        .evidence
        .iter()
        .any(|e| e.contains("User Not Authenticated")));
    assert!(f.fix.contains(r#"mode = "expand""#));
    assert!(f.fix.contains(r#"Basic realm="ServiceNow""#));
    assert!(f.fix.contains("Advertise all auth schemes"));
}

#[test]
fn basic_refused_by_an_oauth_policy_is_named_and_the_credential_not_quoted() {
    let report = fixture("servicenow_basic_blocked_firefox.har");
    assert_eq!(classes(&report), [Class::BasicRefusedOauthRequired]);
    assert!(report.findings[0].fix.contains(r#"kind = "oauth2""#));
    let text = render_text(&report);
    assert!(text.contains("Authorization: Basic [REDACTED]"));
    assert!(!text.contains("b2t0YV9zdmM6Q29ycmVjdEhvcnNlQmF0dGVyeQ=="));
}

#[test]
fn insufficient_scope_names_the_scope() {
    let report = fixture("onetrust_insufficient_scope_mitmproxy.har");
    assert_eq!(classes(&report), [Class::InsufficientScope]);
    let f = &report.findings[0];
    assert!(f.evidence.iter().any(|e| e == "required scope: SCIM"));
    assert!(f.fix.contains(r#"scopes = ["SCIM"]"#));
}

#[test]
fn a_doubled_bearer_prefix_is_recognised_in_a_redacted_trace() {
    let report = fixture("onetrust_doubled_bearer.har");
    assert_eq!(classes(&report), [Class::DoubledBearerPrefix]);
    assert!(report.findings[0]
        .evidence
        .iter()
        .any(|e| e.contains("Bearer Bearer [REDACTED]")));
}

#[test]
fn a_403_acl_exception_is_acl_denied() {
    let report = fixture("servicenow_acl_denied_chrome.har");
    assert_eq!(classes(&report), [Class::AclDenied]);
    assert!(report.findings[0]
        .evidence
        .iter()
        .any(|e| e.contains("ACL Exception Insert Failed due to security constraints")));
    assert!(report.findings[0].fix.contains("roles"));
}

#[test]
fn a_404_on_a_record_id_is_record_not_found() {
    let report = fixture("servicenow_record_not_found.har");
    assert_eq!(classes(&report), [Class::RecordNotFound]);
    assert!(report.findings[0].fix.contains("clone"));
}

#[test]
fn an_invalid_token_challenge_saying_expired_is_expired_token() {
    let report = fixture("expired_token_fiddler.har");
    assert_eq!(classes(&report), [Class::ExpiredToken]);
    assert!(!render_text(&report).contains("eyJzdWIiOiJzdmMifQ"));
}

#[test]
fn no_response_and_the_proxys_own_502_are_upstream_unreachable() {
    let report = fixture("upstream_unreachable.har");
    assert_eq!(
        classes(&report),
        [Class::UpstreamUnreachable, Class::UpstreamUnreachable]
    );
    assert_eq!(report.findings[0].status, 0);
    assert!(report.findings[0].evidence[0].contains("connect_refused"));
}

#[test]
fn certificate_errors_are_tls_failures_in_ours_and_in_a_browser_export() {
    let report = fixture("tls_failure.har");
    assert_eq!(classes(&report), [Class::TlsFailure, Class::TlsFailure]);
    assert!(report.findings[0].fix.contains("ca_file"));
}

#[test]
fn other_failures_fall_back_to_generic_classes_and_the_summary_counts_them() {
    let report = fixture("generic_failures.har");
    assert_eq!(
        classes(&report),
        [Class::Unauthorized, Class::Forbidden, Class::ServerError]
    );
    let text = render_text(&report);
    assert_eq!(
        text.lines().last(),
        Some("4 exchanges, 3 failed: 1 unauthorized, 1 forbidden, 1 server_error")
    );
    assert!(text.contains("#2 GET https://osmc.example.com/osmc/api/accounts -> 401: unauthorized"));
}

#[test]
fn the_summary_line_counts_classes_across_a_session_locked_trace() {
    let text = render_text(&fixture("sailpoint_session_locked.har"));
    assert_eq!(
        text.lines().last(),
        Some("3 exchanges, 2 failed: 2 session_locked")
    );
}

#[test]
fn json_rendering_carries_class_evidence_and_fix() {
    let report = fixture("servicenow_acl_denied_chrome.har");
    let json: serde_json::Value = serde_json::from_str(&render_json(&report)).unwrap();
    assert_eq!(json["exchanges"], 1);
    assert_eq!(json["findings"][0]["class"], "acl_denied");
    assert_eq!(json["findings"][0]["status"], 403);
    assert!(json["findings"][0]["fix"].is_string());
}

#[test]
fn text_that_is_not_a_har_is_an_error() {
    assert!(diagnose("not json").is_err());
    assert!(diagnose(r#"{"log":{}}"#).is_err());
}

fn exchange(id: u64, method: Method, url: &str, status: StatusCode) -> ExchangeRecord {
    let mut request_headers = HeaderMap::new();
    request_headers.insert("authorization", HeaderValue::from_static("Basic c3ZjOnB3"));
    ExchangeRecord {
        id,
        parent: None,
        role: Role::Client,
        started: SystemTime::now(),
        timings: Timings {
            connect: None,
            first_byte: Some(Duration::from_millis(5)),
            total: Duration::from_millis(6),
        },
        client_addr: None,
        client_name: None,
        route: Some("osmc".into()),
        session_key: None,
        request: RequestPart {
            method,
            url: url.into(),
            version: Version::HTTP_11,
            headers: request_headers,
            body: None,
        },
        response: Some(ResponsePart {
            status,
            version: Version::HTTP_11,
            headers: HeaderMap::new(),
            body: Some(CapturedBody {
                bytes: Bytes::from_static(b"{}"),
                total_size: 2,
                truncated: false,
            }),
        }),
        actions: Actions::default(),
        error: None,
    }
}

#[tokio::test]
async fn a_trace_written_by_provproxy_diagnoses_the_session_locked_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let har = dir.path().join("trace.har");
    let plan = TracePlan {
        har: Some(har.clone()),
        jsonl: None,
        bodies: true,
        max_body: 4096,
        redact_fields: DEFAULT_REDACT_FIELDS
            .iter()
            .map(|s| s.to_string())
            .collect(),
        rotate_bytes: 0,
        channel_capacity: 16,
        recent: 0,
        auth_headers: Vec::new(),
        raw_body_routes: Vec::new(),
    };
    let (tracer, writer) = Tracer::start(&plan).unwrap();
    let mut create = exchange(
        1,
        Method::POST,
        "https://osmc.test/api/accounts",
        StatusCode::CREATED,
    );
    create.response.as_mut().unwrap().headers.insert(
        "set-cookie",
        HeaderValue::from_static("JSESSIONID=abc123; Path=/; HttpOnly"),
    );
    tracer.submit(create);
    let mut patch = exchange(
        2,
        Method::PATCH,
        "https://osmc.test/api/accounts/7",
        StatusCode::UNAUTHORIZED,
    );
    patch.response.as_mut().unwrap().headers.insert(
        "www-authenticate",
        HeaderValue::from_static(r#"Token Basic realm="osmc""#),
    );
    tracer.submit(patch);
    writer.shutdown().await;

    let report = diagnose(&std::fs::read_to_string(&har).unwrap()).unwrap();
    assert_eq!(classes(&report), [Class::SessionLocked]);
    assert_eq!(report.findings[0].id, Some(2));
}
