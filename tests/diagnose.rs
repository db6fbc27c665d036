//! `diagnose` against realistic HARs: ours, and exports from Chrome, Firefox, Fiddler and
//! mitmproxy (no `_provproxy`, base64 bodies, missing optional fields); and against traces the
//! proxy's own writer produced, HAR and JSON lines, where a replayed request is judged by the
//! answer the client got.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Version};
use provproxy::config::{TracePlan, DEFAULT_REDACT_FIELDS};
use provproxy::diagnose::{diagnose, render_json, render_text, Cause, Class, Report};
use provproxy::trace::record::{
    Actions, CapturedBody, ErrorInfo, ExchangeRecord, RequestPart, ResponsePart, Role, Timings,
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
fn text_that_is_not_a_trace_is_an_error() {
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
        keep: 10,
        channel_capacity: 16,
        queue_bytes: 1 << 20,
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

/// Writes `records` with provproxy's own tracer and returns its HAR and JSON lines.
async fn written(records: Vec<ExchangeRecord>) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let plan = TracePlan {
        har: Some(dir.path().join("t.har")),
        jsonl: Some(dir.path().join("t.jsonl")),
        bodies: true,
        max_body: 4096,
        redact_fields: DEFAULT_REDACT_FIELDS
            .iter()
            .map(|s| s.to_string())
            .collect(),
        rotate_bytes: 0,
        keep: 10,
        channel_capacity: 16,
        queue_bytes: 1 << 20,
        recent: 0,
        auth_headers: Vec::new(),
        raw_body_routes: Vec::new(),
    };
    let (tracer, writer) = Tracer::start(&plan).unwrap();
    for record in records {
        tracer.submit(record);
    }
    writer.shutdown().await;
    let read = |path: &Option<PathBuf>| std::fs::read_to_string(path.as_ref().unwrap()).unwrap();
    (read(&plan.har), read(&plan.jsonl))
}

/// Diagnoses both files and checks they tell the same story.
fn both(har: &str, jsonl: &str) -> Report {
    let from_har = diagnose(har).unwrap();
    let from_lines = diagnose(jsonl).unwrap();
    assert_eq!(render_json(&from_har), render_json(&from_lines));
    from_har
}

fn child(mut record: ExchangeRecord, role: Role, parent: u64) -> ExchangeRecord {
    record.role = role;
    record.parent = Some(parent);
    record
}

#[tokio::test]
async fn a_token_the_target_refused_and_the_replay_that_worked_are_recovered_not_failed() {
    let url = "https://scim.test/scim/v2/Users";
    let mut refused = exchange(1, Method::GET, url, StatusCode::UNAUTHORIZED);
    refused.actions.token_refused = true;
    refused.response.as_mut().unwrap().headers.insert(
        "www-authenticate",
        HeaderValue::from_static(r#"Bearer error="invalid_token""#),
    );
    let replay = child(
        exchange(2, Method::GET, url, StatusCode::OK),
        Role::Replay,
        1,
    );
    let (har, jsonl) = written(vec![refused, replay]).await;
    let report = both(&har, &jsonl);
    assert!(!report.has_failures());
    assert_eq!(report.exchanges, 1);
    let recovered = &report.recovered[0];
    assert_eq!(recovered.cause, Cause::TokenRevoked);
    assert_eq!((recovered.status, recovered.replay_status), (401, 200));
    assert_eq!(
        render_text(&report).lines().last(),
        Some("1 exchange, 0 failed; 1 recovered: 1 token_revoked")
    );
}

#[tokio::test]
async fn a_failed_relogin_is_the_clients_failure_with_the_login_as_evidence() {
    let url = "https://osmc.test/api/accounts/7";
    let mut refused = exchange(1, Method::PATCH, url, StatusCode::UNAUTHORIZED);
    refused.actions.relogin = true;
    let login = child(
        exchange(
            2,
            Method::POST,
            "https://osmc.test/login",
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
        Role::Login,
        1,
    );
    // What the client got: the proxy's own error, recorded after the refused attempt.
    let mut answer = child(
        exchange(3, Method::PATCH, url, StatusCode::OK),
        Role::Client,
        1,
    );
    answer.response = None;
    answer.error = Some(ErrorInfo {
        kind: "login_failed".into(),
        side: "upstream",
        detail: "the session login request to /login answered 500 Internal Server Error".into(),
    });
    let (har, jsonl) = written(vec![refused, login, answer]).await;
    let report = both(&har, &jsonl);
    assert_eq!(
        report.exchanges, 1,
        "the login is the proxy's, not the client's"
    );
    assert!(report.recovered.is_empty());
    assert_eq!(classes(&report), [Class::LoginFailed]);
    let evidence = &report.findings[0].evidence;
    assert!(
        evidence
            .iter()
            .any(|e| e.contains("the first attempt (entry 1) got 401")),
        "{evidence:?}"
    );
    assert!(evidence
        .iter()
        .any(|e| e.contains("login request (entry 2): POST https://osmc.test/login -> 500")));
    assert!(evidence.iter().any(|e| e == "the request was not replayed"));
}

#[tokio::test]
async fn a_replay_that_failed_too_is_one_failure_judged_on_the_replay() {
    let url = "https://osmc.test/api/accounts/7";
    let mut refused = exchange(1, Method::GET, url, StatusCode::UNAUTHORIZED);
    refused.actions.relogin = true;
    let mut replay = child(
        exchange(2, Method::GET, url, StatusCode::FORBIDDEN),
        Role::Replay,
        1,
    );
    // As ServiceNow words it. (A body of no type that is neither JSON nor XML would be withheld
    // from the trace: it cannot be redacted.)
    let acl: &[u8] = br#"{"error":{"message":"Operation Failed","detail":"ACL Exception Insert Failed due to security constraints"},"status":"failure"}"#;
    replay.response.as_mut().unwrap().body = Some(CapturedBody {
        bytes: Bytes::from_static(acl),
        total_size: acl.len() as u64,
        truncated: false,
    });
    let (har, jsonl) = written(vec![refused, replay]).await;
    let report = both(&har, &jsonl);
    assert_eq!(report.exchanges, 1);
    assert_eq!(classes(&report), [Class::AclDenied]);
    assert_eq!(report.findings[0].entry, 2);
    assert!(report.findings[0]
        .evidence
        .iter()
        .any(|e| e == "the replay (entry 2) failed too"));
}

#[test]
fn json_lines_appended_across_runs_link_each_replay_to_the_latest_record_with_its_parent_id() {
    // Two runs: ids restart at 1, and the second run's record 1 is refused and replayed.
    let lines = [
        r#"{"id":1,"role":"client","method":"GET","url":"https://t/a","status":200}"#,
        r#"{"id":1,"role":"client","method":"GET","url":"https://t/b","status":401,"actions":{"relogin":true}}"#,
        r#"{"id":2,"role":"replay","parent":1,"method":"GET","url":"https://t/b","status":200}"#,
    ];
    let report = diagnose(&(lines.join("\n") + "\n")).unwrap();
    assert_eq!(report.exchanges, 2);
    assert!(!report.has_failures());
    assert_eq!(report.recovered[0].entry, 2);
    assert_eq!(report.recovered[0].cause, Cause::SessionExpired);
}

/// A browser-style HAR of one request and its answer.
fn one_entry_har(
    method: &str,
    url: &str,
    request_auth: Option<&str>,
    status: u16,
    headers: &str,
    body: &str,
) -> String {
    let auth = request_auth.map_or(String::new(), |value| {
        format!(r#"{{"name":"Authorization","value":"{value}"}}"#)
    });
    format!(
        r#"{{"log":{{"version":"1.2","creator":{{"name":"test","version":"1"}},"entries":[{{
        "startedDateTime":"2026-01-01T00:00:00Z","time":1,
        "request":{{"method":"{method}","url":"{url}","httpVersion":"HTTP/1.1","headers":[{auth}],"cookies":[],"queryString":[],"headersSize":-1,"bodySize":0}},
        "response":{{"status":{status},"statusText":"","httpVersion":"HTTP/1.1","headers":[{headers}],"cookies":[],
          "content":{{"size":{},"mimeType":"application/json","text":{}}},"redirectURL":"","headersSize":-1,"bodySize":-1}},
        "cache":{{}},"timings":{{"send":0,"wait":1,"receive":0}}}}]}}}}"#,
        body.len(),
        serde_json::Value::String(body.to_owned())
    )
}

#[test]
fn a_403_demanding_a_csrf_token_is_named_with_the_tokens_table_as_fix() {
    let har = one_entry_har(
        "POST",
        "https://sap.example.com/sap/opu/odata/sap/API_USER/Users",
        Some("Basic c3ZjOnB3"),
        403,
        r#"{"name":"x-csrf-token","value":"Required"}"#,
        "CSRF token validation failed",
    );
    let report = diagnose(&har).unwrap();
    assert_eq!(classes(&report), [Class::CsrfTokenRequired]);
    let finding = &report.findings[0];
    assert!(finding
        .evidence
        .iter()
        .any(|e| e == "response X-CSRF-Token: Required"));
    assert!(finding.fix.contains("[[routes.session.tokens]]"));
    assert!(finding.fix.contains(r#"from = "header:X-CSRF-Token""#));
    assert!(render_text(&report).contains("csrf_token_required"));
}

#[test]
fn a_401_asking_for_a_login_session_suggests_a_login_token() {
    let har = one_entry_har(
        "GET",
        "https://app.example.com/api/users",
        None,
        401,
        "",
        r#"{"error":"session expired or missing; log in at /api/login"}"#,
    );
    let report = diagnose(&har).unwrap();
    assert_eq!(classes(&report), [Class::SessionLoginRequired]);
    let fix = &report.findings[0].fix;
    assert!(fix.contains(r#"from = "json:/sessionId""#), "{fix}");
    assert!(fix.contains(r#"format = "Session {}""#), "{fix}");
    // A session id the target no longer knows, sent under the `Session` scheme, too.
    let har = one_entry_har(
        "GET",
        "https://app.example.com/api/users",
        Some("Session [REDACTED]"),
        401,
        "",
        r#"{"error":"unauthorized"}"#,
    );
    assert_eq!(
        classes(&diagnose(&har).unwrap()),
        [Class::SessionLoginRequired]
    );
}
