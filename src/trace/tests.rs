//! The tracer end to end: real files, the real writer thread, the ring buffer.

use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};
use serde_json::Value;

use super::feed::FeedRecord;
use super::file::{rotated, Format, TraceFile};
use super::json_out::Memo;
use super::record::*;
use super::redact::RedactedRecord;
use super::{Sink, Tracer};
use crate::config::{TracePlan, DEFAULT_REDACT_FIELDS};

/// A seeded xorshift generator for the trace modules' property tests: the same inputs on every
/// run, so a failure can be replayed.
pub(crate) struct Xorshift(pub(crate) u64);

impl Xorshift {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `below`.
    pub(crate) fn below(&mut self, below: usize) -> usize {
        (self.next() % below as u64) as usize
    }
}

fn plan(dir: &Path) -> TracePlan {
    TracePlan {
        har: Some(dir.join("traces/provproxy.har")),
        jsonl: Some(dir.join("traces/provproxy.jsonl")),
        bodies: true,
        max_body: 64 * 1024,
        redact_fields: DEFAULT_REDACT_FIELDS
            .iter()
            .map(|s| s.to_string())
            .collect(),
        rotate_bytes: 0,
        keep: 10,
        channel_capacity: 64,
        queue_bytes: 1 << 20,
        recent: 16,
        auth_headers: Vec::new(),
        raw_body_routes: Vec::new(),
    }
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

pub(super) fn body(text: &str) -> Option<CapturedBody> {
    Some(CapturedBody {
        bytes: Bytes::copy_from_slice(text.as_bytes()),
        total_size: text.len() as u64,
        truncated: false,
    })
}

pub(super) fn record(id: u64, role: Role, url: &str) -> ExchangeRecord {
    ExchangeRecord {
        id,
        parent: None,
        role,
        started: SystemTime::now(),
        timings: Timings {
            connect: Some(Duration::from_millis(2)),
            first_byte: Some(Duration::from_millis(10)),
            total: Duration::from_millis(12),
        },
        client_addr: Some(SocketAddr::from(([127, 0, 0, 1], 40000))),
        client_name: Some("iiq".into()),
        route: Some("osmc".into()),
        session_key: Some("sha256:abcd".into()),
        request: RequestPart {
            method: Method::GET,
            url: url.into(),
            version: Version::HTTP_11,
            headers: HeaderMap::new(),
            body: None,
        },
        response: Some(ResponsePart {
            status: StatusCode::OK,
            version: Version::HTTP_11,
            headers: headers(&[("content-type", "application/json")]),
            body: body(r#"{"ok":true}"#),
        }),
        actions: Actions::default(),
        error: None,
    }
}

/// Every secret string that the records below carry somewhere.
const SECRETS: &[&str] = &[
    "S3cr3t-Basic-Pw",
    "SESSIONSECRET123",
    "OTHERCOOKIESECRET",
    "SETCOOKIESECRET",
    "APIKEYSECRET",
    "HDRCLIENTSECRET",
    "QUERYTOKENSECRET",
    "FRAGTOKENSECRET",
    "JSONPWSECRET",
    "ARRAYKEYSECRET",
    "SCIMPATCHSECRET",
    "FORMPWSECRET",
    "TOKCLIENTSECRET",
    "TOKACCESSSECRET",
    "TOKREFRESHSECRET",
    "BROKENJSONSECRET",
    "BEARERSECRET",
];

fn secret_records() -> Vec<ExchangeRecord> {
    let basic = base64::engine::general_purpose::STANDARD.encode("svc:S3cr3t-Basic-Pw");
    let mut client = record(
        1,
        Role::Client,
        "https://osmc.example.com/api/users?access_token=QUERYTOKENSECRET&user=bob",
    );
    client.request.method = Method::POST;
    client.request.headers = headers(&[
        ("authorization", &format!("Basic {basic}")),
        (
            "cookie",
            "JSESSIONID=SESSIONSECRET123; other=OTHERCOOKIESECRET",
        ),
        ("x-api-key", "APIKEYSECRET"),
        ("x-client-secret", "HDRCLIENTSECRET"),
        ("content-type", "application/scim+json"),
    ]);
    client.request.body = body(
        r#"{"user":{"password":"JSONPWSECRET"},"items":[{"apiKey":"ARRAYKEYSECRET"}],"Operations":[{"op":"replace","path":"password","value":"SCIMPATCHSECRET"}]}"#,
    );
    let response = client.response.as_mut().unwrap();
    response.status = StatusCode::FOUND;
    response.headers = headers(&[
        ("set-cookie", "JSESSIONID=SETCOOKIESECRET; Path=/; HttpOnly"),
        ("location", "https://app/cb#access_token=FRAGTOKENSECRET"),
        ("content-type", "application/json"),
    ]);
    response.body = body(r#"{"password":"BROKENJSONSECRET""#);

    let mut form = record(2, Role::Login, "https://osmc.example.com/login");
    form.request.method = Method::POST;
    form.request.headers = headers(&[
        ("content-type", "application/x-www-form-urlencoded"),
        ("authorization", "Bearer Bearer BEARERSECRET"),
    ]);
    form.request.body = body("username=svc&password=FORMPWSECRET");

    let mut token = record(3, Role::TokenFetch, "https://login.example.com/oauth/token");
    token.parent = Some(1);
    token.request.method = Method::POST;
    token.request.headers = headers(&[("content-type", "application/x-www-form-urlencoded")]);
    token.request.body =
        body("grant_type=client_credentials&client_id=cid&client_secret=TOKCLIENTSECRET");
    token.response.as_mut().unwrap().body = body(
        r#"{"access_token":"TOKACCESSSECRET","refresh_token":"TOKREFRESHSECRET","token_type":"Bearer","expires_in":3600}"#,
    );
    vec![client, form, token]
}

fn failed_record(id: u64) -> ExchangeRecord {
    let mut rec = record(id, Role::Client, "https://down.example.com/api/users");
    rec.response = None;
    rec.timings.first_byte = None;
    rec.error = Some(ErrorInfo {
        kind: "connect_refused".into(),
        side: "upstream",
        detail: "connection refused (os error 111)".into(),
    });
    rec
}

#[path = "../../tests/support/har_validator.rs"]
mod har_validator;
use har_validator::assert_valid_har;

fn har_entries(path: &Path) -> Vec<Value> {
    let doc: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    doc["log"]["entries"].as_array().unwrap().clone()
}

fn parse(line: &[u8]) -> Value {
    serde_json::from_slice(line).unwrap()
}

fn text(line: &[u8]) -> String {
    String::from_utf8(line.to_vec()).unwrap()
}

/// Written by the trace's own serializer rather than serde_json.
fn ours(value: &impl serde::Serialize) -> String {
    let mut out = Vec::new();
    super::json_out::write(&mut out, value, &mut Memo::default()).unwrap();
    String::from_utf8(out).unwrap()
}

/// A record as the writer hands it to the files: its JSON line and its HAR entry.
fn feed_record(redacted: &RedactedRecord<'_>) -> FeedRecord {
    FeedRecord {
        id: redacted.id,
        route: redacted.route.map(Arc::from),
        status: redacted.response.as_ref().map_or(0, |r| r.status),
        line: Arc::from(json_line(redacted).as_bytes()),
        har_entry: Some(har_entry(redacted).into_bytes().into()),
    }
}

/// The HAR entry as the writer renders it.
fn har_entry(redacted: &RedactedRecord<'_>) -> String {
    let mut out = Vec::new();
    super::har::entry(redacted)
        .write(&mut out, &mut Memo::default())
        .unwrap();
    String::from_utf8(out).unwrap()
}

fn json_line(redacted: &RedactedRecord<'_>) -> String {
    serde_json::to_string(&super::jsonl::record(redacted)).unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn no_secret_reaches_files_or_the_ring() {
    let dir = tempfile::tempdir().unwrap();
    let plan = plan(dir.path());
    let (tracer, writer) = Tracer::start(&plan).unwrap();
    for rec in secret_records() {
        tracer.submit(rec);
    }
    tracer.flush().await;
    let mut shown: Vec<String> = tracer
        .recent(None, None, 100)
        .iter()
        .map(|line| text(line))
        .collect();
    shown.extend((1..=3).map(|id| text(&tracer.get(id).unwrap())));
    writer.shutdown().await;

    for entry in std::fs::read_dir(dir.path().join("traces")).unwrap() {
        shown.push(String::from_utf8(std::fs::read(entry.unwrap().path()).unwrap()).unwrap());
    }
    let basic = base64::engine::general_purpose::STANDARD.encode("svc:S3cr3t-Basic-Pw");
    for text in &shown {
        for secret in SECRETS.iter().chain([&basic.as_str()]) {
            assert!(!text.contains(secret), "{secret} leaked into {text}");
        }
    }
    // What a human needs is still there.
    let all = shown.join("\n");
    for kept in [
        "Basic [REDACTED]",
        "Bearer Bearer [REDACTED]",
        "JSESSIONID=[REDACTED]; other=[REDACTED]",
        r#"token_type\":\"Bearer"#,
        "user=bob",
    ] {
        assert!(all.contains(kept), "{kept} missing");
    }
}

#[tokio::test]
async fn har_is_valid_when_empty_after_each_record_and_after_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let plan = plan(dir.path());
    let har = plan.har.clone().unwrap();
    let (tracer, writer) = Tracer::start(&plan).unwrap();
    assert_valid_har(std::slice::from_ref(&har));
    for rec in secret_records() {
        tracer.submit(rec);
    }
    tracer.submit(failed_record(4));
    tracer.flush().await;
    assert_valid_har(std::slice::from_ref(&har));
    writer.shutdown().await;
    assert_valid_har(std::slice::from_ref(&har));

    let entries = har_entries(&har);
    assert_eq!(entries.len(), 4);
    let failed = &entries[3];
    assert_eq!(failed["response"]["status"], 0);
    assert_eq!(failed["_provproxy"]["error"]["kind"], "connect_refused");
    assert_eq!(entries[2]["_provproxy"]["role"], "token");
    assert_eq!(entries[2]["_provproxy"]["parent"], 1);
    assert_eq!(entries[0]["timings"]["connect"], 2.0);
    assert_eq!(entries[0]["time"], 12.0);
    let jsonl = std::fs::read_to_string(plan.jsonl.unwrap()).unwrap();
    let lines: Vec<Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[3]["status"], 0);
    assert_eq!(lines[3]["error"]["side"], "upstream");
}

#[tokio::test]
async fn rotation_keeps_every_file_valid() {
    let dir = tempfile::tempdir().unwrap();
    let mut plan = plan(dir.path());
    plan.rotate_bytes = 3000;
    plan.keep = 3;
    let har = plan.har.clone().unwrap();
    let jsonl = plan.jsonl.clone().unwrap();
    let (tracer, writer) = Tracer::start(&plan).unwrap();
    for id in 1..=12 {
        tracer.submit(record(id, Role::Client, "https://t/api/users"));
    }
    writer.shutdown().await;

    let mut files = vec![har.clone()];
    files.extend((1..=plan.keep).map(|n| rotated(&har, n)));
    for file in &files {
        assert!(file.exists(), "{} missing", file.display());
        assert!(std::fs::metadata(file).unwrap().len() <= plan.rotate_bytes);
        assert!(!har_entries(file).is_empty());
    }
    assert!(!rotated(&har, plan.keep + 1).exists());
    assert_valid_har(&files);
    // Newest records in the live file, ids ascending across the rotated ones.
    let ids: Vec<u64> = files
        .iter()
        .rev()
        .flat_map(|f| har_entries(f))
        .map(|e| e["_provproxy"]["id"].as_u64().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert_eq!(ids.last(), Some(&12));
    for line in std::fs::read_to_string(rotated(&jsonl, 1)).unwrap().lines() {
        serde_json::from_str::<Value>(line).unwrap();
    }
}

#[tokio::test]
async fn files_are_created_0600_with_their_parent_directories() {
    let dir = tempfile::tempdir().unwrap();
    let mut plan = plan(dir.path());
    plan.rotate_bytes = 1500;
    let jsonl = plan.jsonl.clone().unwrap();
    std::fs::create_dir_all(jsonl.parent().unwrap()).unwrap();
    std::fs::write(&jsonl, "{}\n").unwrap();
    std::fs::set_permissions(&jsonl, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (tracer, writer) = Tracer::start(&plan).unwrap();
    for id in 1..=4 {
        tracer.submit(record(id, Role::Client, "https://t/"));
    }
    writer.shutdown().await;
    let har = plan.har.unwrap();
    for file in [&har, &rotated(&har, 1), &jsonl, &rotated(&jsonl, 1)] {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
}

#[tokio::test]
async fn a_har_that_already_exists_is_rotated_not_corrupted() {
    let dir = tempfile::tempdir().unwrap();
    let plan = plan(dir.path());
    let har = plan.har.clone().unwrap();
    let (tracer, writer) = Tracer::start(&plan).unwrap();
    tracer.submit(record(1, Role::Client, "https://t/first"));
    writer.shutdown().await;
    let (tracer, writer) = Tracer::start(&plan).unwrap();
    tracer.submit(record(1, Role::Client, "https://t/second"));
    writer.shutdown().await;
    assert_valid_har(&[har.clone(), rotated(&har, 1)]);
    assert_eq!(har_entries(&har)[0]["request"]["url"], "https://t/second");
    assert_eq!(
        har_entries(&rotated(&har, 1))[0]["request"]["url"],
        "https://t/first"
    );
}

#[tokio::test]
async fn an_earlier_har_is_rotated_only_by_a_run_that_records_and_only_if_it_has_entries() {
    let dir = tempfile::tempdir().unwrap();
    let plan = plan(dir.path());
    let har = plan.har.clone().unwrap();
    let run = |urls: &'static [&'static str]| {
        let plan = plan.clone();
        async move {
            let (tracer, writer) = Tracer::start(&plan).unwrap();
            for (id, url) in urls.iter().enumerate() {
                tracer.submit(record(id as u64 + 1, Role::Client, url));
            }
            writer.shutdown().await;
        }
    };
    run(&[]).await;
    run(&["https://t/first"]).await;
    assert!(
        !rotated(&har, 1).exists(),
        "an empty HAR is reused, not rotated"
    );
    run(&[]).await;
    run(&[]).await;
    assert!(
        !rotated(&har, 1).exists(),
        "runs without records rotate nothing"
    );
    assert_eq!(har_entries(&har)[0]["request"]["url"], "https://t/first");
    run(&["https://t/second"]).await;
    assert_eq!(har_entries(&har)[0]["request"]["url"], "https://t/second");
    assert_eq!(
        har_entries(&rotated(&har, 1))[0]["request"]["url"],
        "https://t/first"
    );
    assert!(!rotated(&har, 2).exists());
}

#[tokio::test]
async fn keep_zero_rotates_into_nothing_and_a_torn_har_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut plan = plan(dir.path());
    let har = plan.har.clone().unwrap();
    std::fs::create_dir_all(har.parent().unwrap()).unwrap();
    std::fs::write(&har, "{\"log\":{\"entries\":[{\"torn").unwrap();
    let (tracer, writer) = Tracer::start(&plan).unwrap();
    tracer.submit(record(1, Role::Client, "https://t/first"));
    writer.shutdown().await;
    assert!(std::fs::read_to_string(rotated(&har, 1))
        .unwrap()
        .ends_with("torn"));
    plan.keep = 0;
    std::fs::remove_file(rotated(&har, 1)).unwrap();
    let (tracer, writer) = Tracer::start(&plan).unwrap();
    tracer.submit(record(1, Role::Client, "https://t/second"));
    writer.shutdown().await;
    assert!(!rotated(&har, 1).exists());
    assert_eq!(har_entries(&har)[0]["request"]["url"], "https://t/second");
}

#[test]
fn a_removed_file_is_recreated_valid_on_the_next_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.har");
    let mut file = TraceFile::open(&path, Format::Har, 0, 3)
        .unwrap()
        .check_always();
    let redactor = super::Redactor::new(&plan(dir.path()));
    let first = record(1, Role::Client, "https://t/1");
    let redacted = redactor.redact(&first);
    file.write(&Arc::new(feed_record(&redacted))).unwrap();
    file.flush().unwrap();
    std::fs::remove_file(&path).unwrap();
    let second = record(2, Role::Client, "https://t/2");
    let redacted = redactor.redact(&second);
    file.write(&Arc::new(feed_record(&redacted))).unwrap();
    file.flush().unwrap();
    let entries = har_entries(&path);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["_provproxy"]["id"], 2);
    assert_eq!(mode(&path), 0o600);
}

/// Writes records to `file` as the writer thread does, without flushing.
fn write_records(file: &mut TraceFile, ids: std::ops::RangeInclusive<u64>) {
    let redactor = super::Redactor::new(&plan(Path::new("/unused")));
    for id in ids {
        let record = record(id, Role::Client, &format!("https://t/{id}"));
        let redacted = redactor.redact(&record);
        file.write(&Arc::new(feed_record(&redacted))).unwrap();
    }
}

#[test]
fn a_batch_reaches_the_file_in_one_flush_and_leaves_a_valid_har() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.har");
    let mut file = TraceFile::open(&path, Format::Har, 0, 3).unwrap();
    write_records(&mut file, 1..=3);
    assert!(har_entries(&path).is_empty(), "written before the flush");
    file.flush().unwrap();
    write_records(&mut file, 4..=5);
    file.flush().unwrap();
    assert_valid_har(std::slice::from_ref(&path));
    let ids: Vec<u64> = har_entries(&path)
        .iter()
        .map(|e| e["_provproxy"]["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [1, 2, 3, 4, 5]);
}

/// A batch is written with one `pwritev` of every record's parts, at most 1,024 of them per
/// call: a batch of more parts than that still reaches both files whole and in order.
#[test]
fn a_batch_of_more_parts_than_one_pwritev_takes_reaches_the_files_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (har, jsonl) = (dir.path().join("t.har"), dir.path().join("t.jsonl"));
    let mut files = [
        TraceFile::open(&har, Format::Har, 0, 3).unwrap(),
        TraceFile::open(&jsonl, Format::JsonLines, 0, 3).unwrap(),
    ];
    // Two parts per record in either file (separator and entry, entry and newline): 2,400.
    for id in 1..=1200u64 {
        let record = Arc::new(FeedRecord {
            id,
            route: None,
            status: 200,
            line: Arc::from(format!("{{\"id\":{id}}}").as_bytes()),
            har_entry: Some(
                format!("{{\"_provproxy\":{{\"id\":{id}}}}}")
                    .into_bytes()
                    .into(),
            ),
        });
        for file in &mut files {
            file.write(&record).unwrap();
        }
    }
    for file in &mut files {
        file.flush().unwrap();
    }
    let har_ids: Vec<u64> = har_entries(&har)
        .iter()
        .map(|e| e["_provproxy"]["id"].as_u64().unwrap())
        .collect();
    assert_eq!(har_ids, (1..=1200).collect::<Vec<_>>());
    let text = std::fs::read_to_string(&jsonl).unwrap();
    let line_ids: Vec<u64> = text
        .lines()
        .map(|l| parse(l.as_bytes())["id"].as_u64().unwrap())
        .collect();
    assert_eq!(line_ids, (1..=1200).collect::<Vec<_>>());
    assert!(text.ends_with("}\n"));
}

#[test]
fn records_gathered_before_a_logrotate_move_land_in_the_moved_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.har");
    let moved = dir.path().join("t.har.old");
    let mut file = TraceFile::open(&path, Format::Har, 0, 3)
        .unwrap()
        .check_always();
    write_records(&mut file, 1..=1);
    file.flush().unwrap();
    write_records(&mut file, 2..=2);
    std::fs::rename(&path, &moved).unwrap();
    write_records(&mut file, 3..=3);
    file.flush().unwrap();
    assert_valid_har(&[path.clone(), moved.clone()]);
    let ids = |p: &Path| -> Vec<u64> {
        har_entries(p)
            .iter()
            .map(|e| e["_provproxy"]["id"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(ids(&moved), [1, 2]);
    assert_eq!(ids(&path), [3]);
}

/// A sink that blocks inside its first write until the test releases it, and reports how many
/// records it was given when it is closed.
struct StallSink {
    entered: std_mpsc::Sender<()>,
    release: std_mpsc::Receiver<()>,
    stalled: bool,
    written: u64,
    closed: std_mpsc::Sender<u64>,
}

impl Sink for StallSink {
    fn name(&self) -> String {
        "stall".into()
    }

    fn write(&mut self, _: &Arc<FeedRecord>) -> io::Result<()> {
        self.written += 1;
        if !self.stalled {
            self.stalled = true;
            let _ = self.entered.send(());
            let _ = self.release.recv();
        }
        Ok(())
    }

    fn close(&mut self) -> io::Result<()> {
        let _ = self.closed.send(self.written);
        Ok(())
    }
}

/// The test's side of a [`StallSink`]: told when the file thread is stuck in its first write,
/// releases it, and hears how many records the sink got when it is closed.
struct Stall {
    entered: std_mpsc::Receiver<()>,
    release: std_mpsc::Sender<()>,
    closed: std_mpsc::Receiver<u64>,
}

/// A tracer whose only file is a [`StallSink`].
fn stalled(plan: &TracePlan) -> (Tracer, super::TraceWriter, Stall) {
    let (entered_tx, entered) = std_mpsc::channel();
    let (release, release_rx) = std_mpsc::channel();
    let (closed_tx, closed) = std_mpsc::channel();
    let sink = StallSink {
        entered: entered_tx,
        release: release_rx,
        stalled: false,
        written: 0,
        closed: closed_tx,
    };
    let (tracer, writer) = Tracer::start_with_sinks(plan, vec![Box::new(sink)]).unwrap();
    let stall = Stall {
        entered,
        release,
        closed,
    };
    (tracer, writer, stall)
}

/// Issue 17's record feed: the files are one subscriber with a queue of their own, so a disk
/// that stalls costs records in the files (dropped and counted) and nothing elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_file_writer_drops_and_counts_while_the_ring_and_a_live_stream_get_every_record()
{
    let dir = tempfile::tempdir().unwrap();
    let mut plan = plan(dir.path());
    plan.channel_capacity = 4;
    plan.recent = 100;
    let (tracer, writer, stall) = stalled(&plan);
    let mut live = tracer.subscribe(100);
    tracer.submit(record(1, Role::Client, "https://t/1"));
    assert_eq!(live.next().await.map(|r| r.id), Some(1));
    let entered = stall.entered;
    tokio::task::spawn_blocking(move || entered.recv())
        .await
        .unwrap()
        .unwrap();
    // The file thread is stuck in record 1. Each record is submitted once the stream has the
    // one before, so the writer's own channel never fills: the files' queue takes four records
    // and the other 45 are lost to the files alone.
    for id in 2..=50 {
        tracer.submit(record(id, Role::Client, &format!("https://t/{id}")));
        assert_eq!(live.next().await.map(|r| r.id), Some(id));
    }
    let ring: Vec<u64> = tracer
        .recent(None, None, 100)
        .iter()
        .map(|l| parse(l)["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ring, (1..=50).rev().collect::<Vec<_>>());
    assert_eq!(live.dropped(), 0);
    let stats = tracer.stats();
    assert_eq!(
        (stats.submitted, stats.written, stats.dropped),
        (50, 50, 45)
    );
    assert_eq!(
        tracer.feed_stats().dropped,
        0,
        "no live stream lost a record"
    );
    stall.release.send(()).unwrap();
    let stats = writer.shutdown().await;
    assert_eq!(
        stall.closed.recv().unwrap(),
        5,
        "record 1 and the four queued behind it"
    );
    assert_eq!(stats.dropped, 45);
    tracer.submit(record(51, Role::Client, "https://t/late"));
    assert_eq!(tracer.stats().dropped, 46);
}

/// The files' queue is bounded in bytes as well as in records: large records waiting for a
/// stalled disk cost records, not memory without end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_file_writer_queues_rendered_records_up_to_queue_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut plan = plan(dir.path());
    plan.channel_capacity = 100;
    // Each record below renders to about 21.5 kB (its 10 kB body in the JSON line and again in
    // the HAR entry): two fit in 50,000 bytes, a third does not.
    plan.queue_bytes = 50_000;
    let (tracer, writer, stall) = stalled(&plan);
    let mut live = tracer.subscribe(100);
    let large = |id: u64| {
        let mut record = record(id, Role::Client, &format!("https://t/{id}"));
        let text = format!(r#"{{"d":"{}"}}"#, "x".repeat(10_000));
        record.response.as_mut().unwrap().body = body(&text);
        record
    };
    tracer.submit(large(1));
    let first = live.next().await.unwrap();
    let weight = first.line.len() + first.har_entry.as_ref().map_or(0, |e| e.len());
    assert!(
        (16_700..25_000).contains(&weight),
        "the test's arithmetic holds: {weight}"
    );
    let entered = stall.entered;
    tokio::task::spawn_blocking(move || entered.recv())
        .await
        .unwrap()
        .unwrap();
    for id in 2..=8 {
        tracer.submit(large(id));
        assert_eq!(live.next().await.map(|r| r.id), Some(id));
    }
    assert_eq!(tracer.stats().dropped, 5, "two of the seven queued");
    stall.release.send(()).unwrap();
    let stats = writer.shutdown().await;
    assert_eq!(
        stall.closed.recv().unwrap(),
        3,
        "record 1 and the two queued"
    );
    assert_eq!(stats.dropped, 5);
}

struct FailingSink;

impl Sink for FailingSink {
    fn name(&self) -> String {
        "failing".into()
    }

    fn write(&mut self, _: &Arc<FeedRecord>) -> io::Result<()> {
        Err(io::Error::new(io::ErrorKind::StorageFull, "no space left"))
    }

    fn close(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn write_errors_are_counted_and_tracing_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let plan = plan(dir.path());
    let (tracer, writer) = Tracer::start_with_sinks(&plan, vec![Box::new(FailingSink)]).unwrap();
    for id in 1..=3 {
        tracer.submit(record(id, Role::Client, "https://t/"));
    }
    let stats = writer.shutdown().await;
    assert_eq!(stats.write_errors, 3);
    assert_eq!(stats.written, 3);
    assert!(tracer.get(3).is_some());
}

#[tokio::test]
async fn the_ring_keeps_the_most_recent_and_filters_by_route_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let mut plan = plan(dir.path());
    plan.har = None;
    plan.jsonl = None;
    plan.recent = 3;
    let (tracer, writer) = Tracer::start(&plan).unwrap();
    assert_eq!(tracer.next_id(), 1);
    assert_eq!(tracer.next_id(), 2);
    for id in 1..=5 {
        let mut rec = record(id, Role::Client, "https://t/");
        if id % 2 == 0 {
            rec.route = Some("other".into());
            rec.response.as_mut().unwrap().status = StatusCode::UNAUTHORIZED;
        }
        tracer.submit(rec);
    }
    tracer.flush().await;
    let ids = |lines: Vec<Arc<[u8]>>| -> Vec<u64> {
        lines
            .iter()
            .map(|l| parse(l)["id"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(ids(tracer.recent(None, None, 10)), [5, 4, 3]);
    assert_eq!(ids(tracer.recent(None, None, 2)), [5, 4]);
    assert_eq!(ids(tracer.recent(Some("osmc"), None, 10)), [5, 3]);
    assert_eq!(ids(tracer.recent(None, Some(401), 10)), [4]);
    assert!(tracer.get(1).is_none());
    assert_eq!(parse(&tracer.get(4).unwrap())["status"], 401);
    writer.shutdown().await;
}

/// Records that between them use every field of the HAR entry and the JSON line, with bodies whose
/// JSON is already compact and key-sorted so that redaction leaves their shape as it was.
fn golden_records() -> Vec<ExchangeRecord> {
    let started = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
    let mut client = record(
        7,
        Role::Client,
        "https://osmc.example.com/api/users?access_token=QTOK&user=bob%20b&x#frag=1&id_token=F",
    );
    client.started = started;
    client.parent = Some(3);
    client.request.method = Method::POST;
    client.request.headers = headers(&[
        ("authorization", "Basic c3ZjOnB3"),
        ("cookie", "JSESSIONID=S1; other=O2"),
        ("x-api-key", "AK"),
        ("referer", "https://app/x?client_secret=CS&k=v"),
        ("content-type", "application/scim+json"),
        ("x-note", "caf\u{e9} \"quoted\" back\\slash"),
    ]);
    client.request.body = body(
        r#"{"Operations":[{"op":"replace","path":"password","value":"PV"}],"items":[{"apiKey":"K","n":1.5,"z":null}],"user":{"password":"P"}}"#,
    );
    let response = client.response.as_mut().unwrap();
    response.status = StatusCode::FOUND;
    response.headers = headers(&[
        (
            "set-cookie",
            "JSESSIONID=S2; Path=/api; Domain=example.com; Expires=Wed, 21 Oct 2026 07:28:00 GMT; Secure; HttpOnly",
        ),
        ("set-cookie", "plain=v"),
        ("location", "https://app/cb#access_token=FT&state=s"),
        ("content-type", "application/json"),
    ]);
    response.body = body(r#"{"password":"BROKEN""#);
    client.actions = Actions {
        auth_injected: Some("basic"),
        cookies_replayed: vec!["JSESSIONID".into()].into(),
        cookies_stored: vec!["JSESSIONID=leak".into(), "other".into()],
        session_opened: true,
        relogin: true,
        replayed: false,
        challenge_before: vec!["Basic realm=\"a\", Bearer".into()],
        challenge_after: vec!["Basic realm=\"a\"".into(), "Bearer".into()],
        authorization_normalised: Some("doubled scheme Bearer".into()),
        token_fetched: true,
        token_refused: true,
        cookies_withheld: vec!["JSESSIONID".into(), "plain".into()],
        headers_removed: vec!["connection".into()],
        location_rewritten: Some("http://127.0.0.1:8080/cb".into()),
        warnings: vec!["w1".into(), "line\nbreak\u{1}".into()],
    };

    let mut login = record(8, Role::Login, "https://osmc.example.com/login");
    login.started = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_001, 500_000_000);
    login.client_addr = Some(SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], 8443)));
    login.client_name = None;
    login.request.method = Method::POST;
    login.request.version = Version::HTTP_2;
    login.request.headers = headers(&[
        ("content-type", "application/x-www-form-urlencoded"),
        ("authorization", "Bearer Bearer BT"),
    ]);
    login.request.body = body("username=svc&password=FP&remember=1");
    let response = login.response.as_mut().unwrap();
    response.version = Version::HTTP_2;
    response.headers = headers(&[("content-type", "image/png")]);
    response.body = Some(CapturedBody {
        bytes: Bytes::from_static(&[0x89, b'P', b'N', b'G', 0, 1]),
        total_size: 6,
        truncated: false,
    });

    let mut token = record(9, Role::TokenFetch, "https://login.example.com/oauth/token");
    token.started = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_002);
    token.parent = Some(7);
    token.session_key = None;
    token.timings.connect = None;
    token.request.method = Method::POST;
    token.request.headers = headers(&[("content-type", "application/x-www-form-urlencoded")]);
    token.request.body = body("grant_type=client_credentials&client_id=cid&client_secret=CS");
    token.response.as_mut().unwrap().body = body(
        r#"{"access_token":"AT","expires_in":3600,"refresh_token":"RT","scope":"a b","token_type":"Bearer"}"#,
    );

    let mut binary = record(10, Role::Replay, "https://t/upload");
    binary.started = started;
    binary.request.method = Method::PUT;
    binary.request.headers = headers(&[
        ("content-type", "application/octet-stream"),
        ("content-length", "4"),
    ]);
    binary.request.body = Some(CapturedBody {
        bytes: Bytes::from_static(&[0, 1, 2, 255]),
        total_size: 4,
        truncated: false,
    });
    let response = binary.response.as_mut().unwrap();
    response.status = StatusCode::from_u16(599).unwrap();
    response.headers = headers(&[("content-type", "text/plain; charset=utf-8")]);
    response.body = Some(CapturedBody {
        bytes: Bytes::from_static("tab\tnew\nline \u{7f} \u{2028} caf\u{e9}".as_bytes()),
        total_size: 90_000,
        truncated: true,
    });

    let mut failed = failed_record(11);
    failed.started = started;
    failed.timings.connect = None;
    failed.request.headers = headers(&[("content-length", "12")]);

    let mut truncated = record(12, Role::Client, "https://t/big");
    truncated.started = started;
    truncated.request.method = Method::POST;
    truncated.request.headers = headers(&[("content-type", "application/json")]);
    truncated.request.body = Some(CapturedBody {
        bytes: Bytes::from_static(br#"{"password":"hun"#),
        total_size: 70_000,
        truncated: true,
    });
    truncated.response.as_mut().unwrap().headers = HeaderMap::new();
    truncated.response.as_mut().unwrap().body = None;
    vec![client, login, token, binary, failed, truncated]
}

/// The golden records' route records bodies that cannot be redacted as they are, so that text
/// and base64 bodies keep their place in the golden files.
fn golden_plan(dir: &Path) -> TracePlan {
    TracePlan {
        raw_body_routes: vec!["osmc".into()],
        ..plan(dir)
    }
}

/// The golden files were written by the writers that built a `serde_json::Value` per entry; the
/// views that replaced them must produce the same bytes.
#[test]
fn har_entries_and_json_lines_are_byte_identical_to_the_golden_files() {
    let redactor = super::Redactor::new(&golden_plan(Path::new("/unused")));
    let records = golden_records();
    let redacted: Vec<RedactedRecord<'_>> = records.iter().map(|r| redactor.redact(r)).collect();
    let har = include_str!("testdata/golden.har-entries");
    let jsonl = include_str!("testdata/golden.jsonl");
    assert_eq!(har.lines().count(), redacted.len());
    assert_eq!(jsonl.lines().count(), redacted.len());
    for ((rec, want_har), want_line) in redacted.iter().zip(har.lines()).zip(jsonl.lines()) {
        for entry in [
            serde_json::to_string(&super::har::entry(rec)).unwrap(),
            ours(&super::har::entry(rec)),
            har_entry(rec),
        ] {
            assert_eq!(entry, want_har, "HAR entry of record {}", rec.id);
        }
        for line in [json_line(rec), ours(&super::jsonl::record(rec))] {
            assert_eq!(line, want_line, "JSON line of record {}", rec.id);
        }
    }
}

/// The writer renders a record once: its JSON line by hand (the line's view's derived
/// `Serialize` is the definition), then its HAR entry with the values the two show alike
/// copied from the line. Both must be the golden bytes, the marks reused from record to record
/// as the writer reuses them.
#[test]
fn a_line_and_the_entry_copied_from_it_are_byte_identical_to_the_golden_files() {
    let redactor = super::Redactor::new(&golden_plan(Path::new("/unused")));
    let records = golden_records();
    let jsonl = include_str!("testdata/golden.jsonl");
    let har = include_str!("testdata/golden.har-entries");
    assert_eq!(jsonl.lines().count(), records.len());
    let mut marks = super::jsonl::Marks::default();
    let mut memo = Memo::default();
    for ((record, want_line), want_entry) in records.iter().zip(jsonl.lines()).zip(har.lines()) {
        let redacted = redactor.redact(record);
        let (mut line, mut entry) = (Vec::new(), Vec::new());
        memo.clear();
        super::jsonl::record(&redacted)
            .write(&mut line, &mut memo, &mut marks)
            .unwrap();
        super::har::entry(&redacted)
            .write_from_line(&mut entry, &mut memo, &line, &marks)
            .unwrap();
        assert_eq!(
            text(&line),
            want_line,
            "JSON line of record {}",
            redacted.id
        );
        assert_eq!(
            text(&entry),
            want_entry,
            "HAR entry of record {}",
            redacted.id
        );
    }
}

#[tokio::test]
async fn the_ring_serves_the_same_bytes_as_the_json_lines_file() {
    let dir = tempfile::tempdir().unwrap();
    let plan = golden_plan(dir.path());
    let (tracer, writer) = Tracer::start(&plan).unwrap();
    for rec in golden_records() {
        tracer.submit(rec);
    }
    tracer.flush().await;
    let mut served: Vec<String> = tracer
        .recent(None, None, 100)
        .iter()
        .map(|l| text(l))
        .collect();
    served.reverse();
    writer.shutdown().await;
    let file = std::fs::read_to_string(plan.jsonl.unwrap()).unwrap();
    assert_eq!(served, file.lines().collect::<Vec<_>>());
    assert_eq!(
        served.join("\n") + "\n",
        include_str!("testdata/golden.jsonl")
    );
}

/// The golden JSON lines were rendered from the same records as the golden HAR entries.
#[test]
fn a_har_made_from_json_lines_holds_the_entries_the_live_har_holds() {
    let made = super::from_lines::har(include_str!("testdata/golden.jsonl")).unwrap();
    let doc: Value = serde_json::from_slice(&made.har).unwrap();
    let entries = doc["log"]["entries"].as_array().unwrap();
    let live: Vec<Value> = include_str!("testdata/golden.har-entries")
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(made.entries, live.len());
    assert!(!made.torn_last_line);
    assert_eq!(entries, &live);
}

#[tokio::test]
async fn a_har_made_from_the_json_lines_file_is_the_har_file_written_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let plan = plan(dir.path());
    let (tracer, writer) = Tracer::start(&plan).unwrap();
    for rec in secret_records() {
        tracer.submit(rec);
    }
    tracer.submit(failed_record(4));
    writer.shutdown().await;
    let lines = std::fs::read_to_string(plan.jsonl.as_ref().unwrap()).unwrap();
    let made = super::from_lines::har(&lines).unwrap();
    assert_eq!(made.entries, 4);
    let path = dir.path().join("made.har");
    std::fs::write(&path, &made.har).unwrap();
    assert_valid_har(std::slice::from_ref(&path));
    assert_eq!(har_entries(&path), har_entries(plan.har.as_ref().unwrap()));
}

#[test]
fn a_har_from_json_lines_leaves_out_a_torn_last_line_and_refuses_a_line_that_is_no_record() {
    let golden = include_str!("testdata/golden.jsonl");
    let first = golden.lines().next().unwrap();
    let torn = format!("{first}\n{}", &first[..first.len() / 2]);
    let made = super::from_lines::har(&torn).unwrap();
    assert_eq!((made.entries, made.torn_last_line), (1, true));
    let bad = format!("{{\"not\":\"a record\"}}\n{first}\n");
    assert!(matches!(
        super::from_lines::har(&bad),
        Err(super::from_lines::FromLinesError::Line { line: 1, .. })
    ));
    let empty = super::from_lines::har("").unwrap();
    let doc: Value = serde_json::from_slice(&empty.har).unwrap();
    assert_eq!(doc["log"]["entries"].as_array().map(Vec::len), Some(0));
}
