//! A route's sessions are bounded in number and in memory: 20,000 distinct keys, and 20,000
//! more after them, leave `max_sessions` sessions and a flat RSS. Alone in its test binary, so
//! that the process's RSS is the sessions' and no other test's.

use std::path::Path;

use http::header::SET_COOKIE;
use http::{HeaderMap, HeaderValue};
use provproxy::session::Sessions;

const CONFIG: &str = r#"
[[routes]]
name = "scim"
prefix = "/scim/"
upstream = "http://127.0.0.1:9"

[routes.session]
key = "header:X-Tenant"
"#;

/// The default `max_sessions`.
const MAX: u64 = 10_000;
const KEYS: usize = 20_000;

/// Bytes the process's RSS may grow while the second 20,000 keys replace sessions one for
/// one. Unbounded, those 20,000 sessions took 16 MiB more (measured in this test).
const CHURN_GROWTH_LIMIT_KIB: u64 = 4 * 1024;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// Opens one session per key in `keys`, each holding a JSESSIONID as a target sets it.
async fn open_sessions(sessions: &Sessions, keys: std::ops::Range<usize>) {
    let mut request = HeaderMap::new();
    let mut response = HeaderMap::new();
    for i in keys {
        let tenant = HeaderValue::from_str(&format!("tenant-{i:06}")).expect("header");
        request.insert("x-tenant", tenant);
        let key = sessions
            .key_for("scim", None, &request)
            .expect("the key header is there")
            .expect("the route keeps sessions");
        let lease = sessions.lease("scim", key).await.expect("a lease");
        let cookie = format!("JSESSIONID={i:032x}; Path=/; HttpOnly");
        response.insert(SET_COOKIE, HeaderValue::from_str(&cookie).expect("cookie"));
        lease.absorb("/scim/Users", &response);
        assert!(sessions.stats().live <= MAX);
    }
}

#[tokio::test]
async fn forty_thousand_distinct_keys_keep_max_sessions_and_a_flat_rss() {
    let plan = provproxy::config::load_str(CONFIG, "bounds.toml", Path::new("."), &|_| None)
        .expect("config");
    let sessions = Sessions::open(&plan.routes, &plan.state, false).expect("sessions");
    let start = rss_kib();
    open_sessions(&sessions, 0..KEYS).await;
    let filled = rss_kib();
    open_sessions(&sessions, KEYS..2 * KEYS).await;
    let churned = rss_kib();

    println!(
        "RSS {start} KiB at start, {filled} KiB after {KEYS} keys ({} KiB for {MAX} sessions), \
         {churned} KiB after {KEYS} more ({} KiB)",
        filled.saturating_sub(start),
        churned as i64 - filled as i64
    );
    let stats = sessions.stats();
    assert_eq!(stats.live, MAX);
    assert_eq!(stats.evicted, [("scim".to_owned(), 2 * KEYS as u64 - MAX)]);
    let growth = churned.saturating_sub(filled);
    assert!(
        growth < CHURN_GROWTH_LIMIT_KIB,
        "RSS grew {growth} KiB while {KEYS} new keys replaced sessions"
    );
}
