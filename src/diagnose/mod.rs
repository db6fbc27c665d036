//! `diagnose`: reads a trace and names the likely cause of each exchange that failed as the
//! client saw it, with the evidence and the fix.
//!
//! A trace of ours holds every attempt: a client request the proxy recovered from (the session
//! had expired, the token was revoked: it logged in again or fetched a new token, and replayed)
//! is two records, the refused one and the replay. What counts is the answer the client got:
//! a recovered exchange is reported as recovered with its cause, and only answers the client
//! got as failures are findings. Login and token requests are the proxy's own, not the
//! client's; they are quoted as evidence for the exchange they belong to.

mod classify;
pub mod compare;
mod read;
mod render;

use std::collections::HashMap;

use serde::Serialize;

use crate::trace::redact::Redactor;
pub use classify::Class;
pub use read::DiagnoseError;
use read::{Entry, Role};
pub use render::{render_json, render_text, summary};

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Exchanges as the client saw them: a request and its replay count once; the proxy's own
    /// login and token requests not at all.
    pub exchanges: usize,
    /// Exchanges whose answer to the client was a failure.
    pub findings: Vec<Finding>,
    /// Exchanges the proxy recovered: the target refused the first attempt, the client got
    /// the replay's success.
    pub recovered: Vec<Recovery>,
    /// Remarks about the file itself (a last line cut short, say).
    pub notes: Vec<String>,
}

impl Report {
    /// Whether any exchange failed as the client saw it.
    pub fn has_failures(&self) -> bool {
        !self.findings.is_empty()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// 1-based position of the record in the file (HAR entry, or JSON line among the records).
    pub entry: usize,
    /// provproxy's exchange id, when the trace is ours.
    pub id: Option<u64>,
    pub method: String,
    pub url: String,
    /// 0 when no response arrived.
    pub status: u16,
    pub class: Class,
    pub evidence: Vec<String>,
    pub fix: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Recovery {
    /// The refused attempt: its position, id and status.
    pub entry: usize,
    pub id: Option<u64>,
    pub method: String,
    pub url: String,
    pub status: u16,
    pub cause: Cause,
    /// The replay whose answer the client got.
    pub replay_entry: usize,
    pub replay_status: u16,
    pub evidence: Vec<String>,
}

/// Why the proxy had to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// The target no longer knew the session: the proxy logged in again and replayed.
    SessionExpired,
    /// The target refused the injected token: the proxy fetched a new one and replayed.
    TokenRevoked,
    /// A replay whose trigger the trace does not say.
    Retried,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::SessionExpired => "session_expired",
            Cause::TokenRevoked => "token_revoked",
            Cause::Retried => "retried",
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Cause::SessionExpired => "the target no longer knew the session",
            Cause::TokenRevoked => "the target refused the injected token",
            Cause::Retried => "the proxy tried again",
        }
    }

    fn what_the_proxy_did(self) -> &'static str {
        match self {
            Cause::SessionExpired => {
                "the proxy dropped the session, logged in again and replayed the request"
            }
            Cause::TokenRevoked => {
                "the proxy dropped the token, fetched a new one and replayed the request"
            }
            Cause::Retried => "the proxy replayed the request",
        }
    }
}

/// Reads a HAR or provproxy's JSON lines and judges each exchange by the answer the client got.
pub fn diagnose(text: &str) -> Result<Report, DiagnoseError> {
    let trace = read::read(text)?;
    let entries = &trace.entries;
    let redactor = Redactor::with_default_fields();
    let links = Links::new(entries);

    // Cookies each host has set so far in successful responses, with the entry that set them.
    let mut jar: HashMap<&str, Vec<(&str, usize)>> = HashMap::new();
    let mut findings = Vec::new();
    let mut recovered = Vec::new();
    let mut exchanges = 0;
    for (i, entry) in entries.iter().enumerate() {
        // Judged once its last record has been read, with the cookies set before that record.
        for &root in &links.answered_by[i] {
            exchanges += 1;
            let first = &entries[root];
            if !entry.failed() {
                if root != i && first.failed() {
                    recovered.push(recovery(first, entry));
                }
                continue;
            }
            let set_before = jar.get(entry.host.as_str()).map_or(&[][..], Vec::as_slice);
            let (class, mut evidence) = classify::classify(entry, set_before, entries, &redactor);
            if root != i {
                evidence.extend(retry_evidence(first, entry, &links.logins[root], entries));
            }
            findings.push(Finding {
                entry: entry.position,
                id: entry.id,
                method: entry.method.clone(),
                url: entry.url.clone(),
                status: entry.status,
                class,
                fix: classify::fix(class, entry),
                evidence,
            });
        }
        // A session is opened by a call that succeeded; cookies on failures do not count.
        if entry.failed() {
            continue;
        }
        let set = jar.entry(entry.host.as_str()).or_default();
        for name in &entry.cookies_set {
            set.retain(|(n, _)| n != name);
            set.push((name.as_str(), i));
        }
    }
    Ok(Report {
        exchanges,
        findings,
        recovered,
        notes: trace.notes,
    })
}

/// How the records of one client exchange hang together.
struct Links {
    /// For each record, the exchanges (by their first record) whose answer it is.
    answered_by: Vec<Vec<usize>>,
    /// For each record, the login records made on its behalf.
    logins: Vec<Vec<usize>>,
}

impl Links {
    fn new(entries: &[Entry]) -> Links {
        let n = entries.len();
        // Ids restart with every run and JSON lines are appended across runs: a parent is the
        // latest earlier record with that id.
        let mut latest: HashMap<u64, usize> = HashMap::new();
        let mut parent = vec![None; n];
        for (i, entry) in entries.iter().enumerate() {
            parent[i] = entry.parent.and_then(|id| latest.get(&id).copied());
            if let Some(id) = entry.id {
                latest.insert(id, i);
            }
        }
        let mut answer: Vec<usize> = (0..n).collect();
        let mut logins = vec![Vec::new(); n];
        let mut root = vec![false; n];
        for (i, entry) in entries.iter().enumerate() {
            match (entry.role, parent[i]) {
                (Role::Login, Some(p)) => logins[p].push(i),
                (Role::Login | Role::TokenFetch, _) => {}
                // The replay, or the proxy's error after a failed re-login: what the client got.
                (_, Some(p)) => answer[p] = i,
                (_, None) => root[i] = true,
            }
        }
        let mut answered_by = vec![Vec::new(); n];
        for i in (0..n).filter(|&i| root[i]) {
            answered_by[answer[i]].push(i);
        }
        Links {
            answered_by,
            logins,
        }
    }
}

fn cause(first: &Entry) -> Cause {
    if first.relogin {
        Cause::SessionExpired
    } else if first.token_refused {
        Cause::TokenRevoked
    } else {
        Cause::Retried
    }
}

fn recovery(first: &Entry, replay: &Entry) -> Recovery {
    let cause = cause(first);
    let mut evidence: Vec<String> = first
        .challenges()
        .map(|c| format!("WWW-Authenticate: {c}"))
        .collect();
    evidence.push(format!(
        "{}; the client got {} (entry {})",
        cause.what_the_proxy_did(),
        replay.status,
        replay.position
    ));
    Recovery {
        entry: first.position,
        id: first.id,
        method: first.method.clone(),
        url: first.url.clone(),
        status: first.status,
        cause,
        replay_entry: replay.position,
        replay_status: replay.status,
        evidence,
    }
}

/// What happened before the failed answer: the refused first attempt, the login requests, and
/// the replay or why there was none.
fn retry_evidence(
    first: &Entry,
    answer: &Entry,
    logins: &[usize],
    entries: &[Entry],
) -> Vec<String> {
    let mut evidence = vec![format!(
        "the first attempt (entry {}) got {}: {}",
        first.position,
        first.status,
        cause(first).reason()
    )];
    for &login in logins {
        let login = &entries[login];
        evidence.push(format!(
            "login request (entry {}): {} {} -> {}",
            login.position,
            login.method,
            login.url,
            match (&login.error, login.status) {
                (Some(error), 0) => error.clone(),
                _ => login.status.to_string(),
            }
        ));
    }
    match answer.role {
        Role::Replay => evidence.push(format!("the replay (entry {}) failed too", answer.position)),
        _ => evidence.push("the request was not replayed".into()),
    }
    evidence
}
