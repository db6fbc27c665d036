use std::path::Path;
use std::sync::atomic::AtomicUsize;

use futures_util::FutureExt;
use http::{HeaderName, StatusCode};
use tokio::sync::Barrier;
use tokio::time::timeout;

use super::*;
use crate::config::{
    AuthKind, AuthPlan, ChallengePlan, ClientCookies, RouteMatch, SessionKeyKind, StatePlan,
    Upstream, When,
};
use crate::session::is_session_gone;
use crate::session::locked_target::{post, LockedTarget};

const PATH: &str = "/osmc/api/accounts";
const BOUND: Duration = Duration::from_secs(10);

fn plan() -> SessionPlan {
    SessionPlan {
        cookies: true,
        key: SessionKeyKind::Route,
        idle_timeout: Duration::from_secs(900),
        serialize: false,
        relogin_on: vec![StatusCode::UNAUTHORIZED],
        relogin_body_contains: None,
        replay_body_limit: 1 << 20,
        persist: None,
        client_cookies: ClientCookies::Strip,
        login: None,
        max_sessions: 10_000,
        default_key: None,
        tokens: Vec::new(),
    }
}

fn route(name: &str, upstream: &str, session: SessionPlan) -> RoutePlan {
    let url = Url::parse(upstream).unwrap();
    RoutePlan {
        name: name.to_owned(),
        matcher: RouteMatch::Prefix(format!("/{name}/")),
        strip_prefix: false,
        upstream: Upstream {
            origin: url.origin().ascii_serialization(),
            authority: url[url::Position::BeforeHost..url::Position::AfterPort].to_owned(),
            url,
            ca_file: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(60),
            trust: Default::default(),
            pin_sha256: Vec::new(),
        },
        preserve_host: false,
        clients: None,
        max_request_body: None,
        auth: AuthPlan {
            when: When::Always,
            kind: AuthKind::None,
            normalize: true,
        },
        session: Some(session),
        challenge: ChallengePlan::default(),
        raw_bodies: false,
        allow_encoded_slashes: false,
    }
}

fn open(session: SessionPlan) -> Sessions {
    Sessions::open(
        &[route("osmc", "https://osmc.example.com/", session)],
        &StatePlan::default(),
        false,
    )
    .unwrap()
}

fn set_cookie(line: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.append(SET_COOKIE, HeaderValue::from_str(line).unwrap());
    headers
}

fn key(name: &str) -> SessionKey {
    SessionKey::from_display(name)
}

fn cookie_of(lease: &Lease) -> Option<String> {
    lease
        .cookie_header(PATH)
        .map(|(value, _)| value.to_str().unwrap().to_owned())
}

/// Waits, without sleeping, until `count` leases hold or wait for the session `key`.
async fn until_active(sessions: &Sessions, key: &SessionKey, count: usize) {
    let route = sessions.inner.routes["osmc"].clone();
    timeout(BOUND, async {
        while route
            .map
            .get(key)
            .map_or(0, |s| s.active.load(Ordering::Acquire))
            < count
        {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the other leases never arrived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_parallel_first_calls_open_exactly_one_upstream_session() {
    let target = LockedTarget::spawn(None).await;
    let sessions = Sessions::open(
        &[route("osmc", &format!("{}/", target.url()), plan())],
        &StatePlan::default(),
        false,
    )
    .unwrap();
    let barrier = Arc::new(Barrier::new(16));
    let without_cookie = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (sessions, barrier, without_cookie) =
            (sessions.clone(), barrier.clone(), without_cookie.clone());
        let url = format!("{}{PATH}", target.url());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let lease = sessions.lease("osmc", key("route")).await.unwrap();
            let cookie = cookie_of(&lease);
            if cookie.is_none() {
                without_cookie.fetch_add(1, Ordering::Relaxed);
            }
            let reply = post(&url, cookie.as_deref()).await;
            lease.absorb(PATH, &reply.headers);
            reply.status
        }));
    }
    for task in tasks {
        assert_eq!(
            timeout(BOUND, task).await.unwrap().unwrap(),
            StatusCode::CREATED
        );
    }
    assert_eq!(without_cookie.load(Ordering::Relaxed), 1);
    assert_eq!(target.sessions_opened(), 1);
    assert_eq!(target.refused(), 0);
    assert_eq!(sessions.stats().opened, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn waiters_for_a_new_session_proceed_together_with_its_cookie() {
    let sessions = open(plan());
    let first = sessions.lease("osmc", key("route")).await.unwrap();
    assert!(first.is_exclusive());
    assert_eq!(cookie_of(&first), None);

    let waiters = 15;
    let together = Arc::new(Barrier::new(waiters));
    let mut tasks = Vec::new();
    for _ in 0..waiters {
        let (sessions, together) = (sessions.clone(), together.clone());
        tasks.push(tokio::spawn(async move {
            let lease = sessions.lease("osmc", key("route")).await.unwrap();
            let seen = (lease.is_exclusive(), cookie_of(&lease));
            // Every waiter holds its lease here at the same time: impossible if they were
            // serialised behind each other.
            together.wait().await;
            seen
        }));
    }
    until_active(&sessions, &key("route"), 1 + waiters).await;
    first.absorb(PATH, &set_cookie("JSESSIONID=s1; Path=/"));
    assert!(first.opened_session());
    drop(first);
    for task in tasks {
        let (exclusive, cookie) = timeout(BOUND, task).await.unwrap().unwrap();
        assert!(!exclusive);
        assert_eq!(cookie.as_deref(), Some("JSESSIONID=s1"));
    }
}

#[tokio::test]
async fn when_the_first_call_gets_no_cookie_the_next_goes_alone() {
    let sessions = open(plan());
    let first = sessions.lease("osmc", key("route")).await.unwrap();
    let mut second = Box::pin(sessions.lease("osmc", key("route")));
    assert!(
        second.as_mut().now_or_never().is_none(),
        "waits for the first"
    );
    drop(first);
    let second = timeout(BOUND, second).await.unwrap().unwrap();
    assert!(second.is_exclusive());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serialize_never_allows_two_holders_at_once() {
    let mut session = plan();
    session.serialize = true;
    let sessions = open(session);
    let lease = sessions.lease("osmc", key("route")).await.unwrap();
    lease.absorb(PATH, &set_cookie("JSESSIONID=s1; Path=/"));
    drop(lease);

    let current = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (sessions, current, max) = (sessions.clone(), current.clone(), max.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                let lease = sessions.lease("osmc", key("route")).await.unwrap();
                assert!(lease.is_exclusive());
                let now = current.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(now, Ordering::SeqCst);
                for _ in 0..3 {
                    tokio::task::yield_now().await;
                }
                current.fetch_sub(1, Ordering::SeqCst);
                drop(lease);
            }
        }));
    }
    for task in tasks {
        timeout(BOUND, task).await.unwrap().unwrap();
    }
    assert_eq!(max.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn established_sessions_are_shared_without_waiting() {
    let sessions = open(plan());
    let lease = sessions.lease("osmc", key("route")).await.unwrap();
    lease.absorb(PATH, &set_cookie("JSESSIONID=s1; Path=/"));
    drop(lease);
    let a = sessions
        .lease("osmc", key("route"))
        .now_or_never()
        .unwrap()
        .unwrap();
    let b = sessions
        .lease("osmc", key("route"))
        .now_or_never()
        .unwrap()
        .unwrap();
    assert!(!a.is_exclusive() && !b.is_exclusive());
}

#[tokio::test]
async fn a_held_exclusive_lease_does_not_delay_other_keys() {
    for serialize in [false, true] {
        let mut session = plan();
        session.serialize = serialize;
        let sessions = open(session);
        let held = sessions.lease("osmc", key("a")).await.unwrap();
        assert!(held.is_exclusive());
        assert!(
            sessions.lease("osmc", key("a")).now_or_never().is_none(),
            "same key waits"
        );
        let other = sessions.lease("osmc", key("b")).now_or_never();
        assert!(
            other.is_some(),
            "other key must not wait (serialize = {serialize})"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn interleaved_operations_never_mix_cookies_between_keys() {
    let mut session = plan();
    session.key = SessionKeyKind::Header(HeaderName::from_static("x-user"));
    let sessions = open(session);
    let tasks_n = 20;
    let ops_per_task = 100;
    let mut tasks = Vec::new();
    for t in 0..tasks_n {
        let sessions = sessions.clone();
        tasks.push(tokio::spawn(async move {
            let mut checked = 0;
            for op in 0..ops_per_task {
                let user = (t * 7 + op * 13) % 50;
                let mut headers = HeaderMap::new();
                headers.insert(
                    "x-user",
                    HeaderValue::from_str(&format!("u{user}")).unwrap(),
                );
                let session_key = sessions.key_for("osmc", None, &headers).unwrap().unwrap();
                let lease = sessions.lease("osmc", session_key).await.unwrap();
                if let Some((value, names)) = lease.cookie_header(PATH) {
                    let value = value.to_str().unwrap();
                    let expected = format!("sid=u{user}-");
                    assert!(
                        value.starts_with(&expected) && !value.contains(';'),
                        "{value}"
                    );
                    assert_eq!(*names, ["sid"]);
                    checked += 1;
                }
                tokio::task::yield_now().await;
                // Rotate now and then, as targets do.
                let line = format!("sid=u{user}-{t}-{op}; Path=/");
                lease.absorb(PATH, &set_cookie(&line));
            }
            checked
        }));
    }
    let mut checked = 0;
    for task in tasks {
        checked += timeout(BOUND, task).await.unwrap().unwrap();
    }
    assert!(checked >= tasks_n * ops_per_task - 50, "{checked}");
    assert_eq!(sessions.list().len(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_relogins_elect_one_leader_and_the_rest_replay_with_its_cookie() {
    let sessions = open(plan());
    let lease = sessions.lease("osmc", key("route")).await.unwrap();
    lease.absorb(PATH, &set_cookie("JSESSIONID=old; Path=/"));
    drop(lease);

    let n = 8;
    let all_hold = Arc::new(Barrier::new(n));
    let mut tasks = Vec::new();
    for _ in 0..n {
        let (sessions, all_hold) = (sessions.clone(), all_hold.clone());
        tasks.push(tokio::spawn(async move {
            let mut lease = sessions.lease("osmc", key("route")).await.unwrap();
            assert_eq!(cookie_of(&lease).as_deref(), Some("JSESSIONID=old"));
            all_hold.wait().await;
            let outcome = lease.begin_relogin().await;
            if outcome == Relogin::Leader {
                assert!(lease.is_exclusive());
                assert_eq!(
                    cookie_of(&lease),
                    None,
                    "the leader starts without the dead cookie"
                );
                lease.absorb(PATH, &set_cookie("JSESSIONID=new; Path=/"));
            }
            (outcome, cookie_of(&lease))
        }));
    }
    let mut leaders = 0;
    for task in tasks {
        let (outcome, cookie) = timeout(BOUND, task).await.unwrap().unwrap();
        leaders += usize::from(outcome == Relogin::Leader);
        assert_eq!(cookie.as_deref(), Some("JSESSIONID=new"));
    }
    assert_eq!(leaders, 1);
    assert_eq!(sessions.stats().relogins, 1);
}

#[tokio::test]
async fn relogin_under_serialize_leads_at_once() {
    let mut session = plan();
    session.serialize = true;
    let sessions = open(session);
    let mut lease = sessions.lease("osmc", key("route")).await.unwrap();
    lease.absorb(PATH, &set_cookie("JSESSIONID=old; Path=/"));
    let before = lease.generation();
    let outcome = lease.begin_relogin().now_or_never().expect("no waiting");
    assert_eq!(outcome, Relogin::Leader);
    assert!(lease.generation() > before);
    assert_eq!(cookie_of(&lease), None);
}

#[tokio::test]
async fn relogin_after_a_renewal_by_someone_else_does_not_drop_the_new_cookie() {
    let sessions = open(plan());
    let setup = sessions.lease("osmc", key("route")).await.unwrap();
    setup.absorb(PATH, &set_cookie("JSESSIONID=old; Path=/"));
    drop(setup);

    let mut slow = sessions.lease("osmc", key("route")).await.unwrap();
    let mut fast = sessions.lease("osmc", key("route")).await.unwrap();
    let mut leading = Box::pin(fast.begin_relogin());
    assert!(
        leading.as_mut().now_or_never().is_none(),
        "waits for `slow` to finish"
    );
    let mut following = Box::pin(slow.begin_relogin());
    assert!(following.as_mut().now_or_never().is_none());
    assert_eq!(timeout(BOUND, leading).await.unwrap(), Relogin::Leader);
    fast.absorb(PATH, &set_cookie("JSESSIONID=new; Path=/"));
    drop(fast);
    assert_eq!(
        timeout(BOUND, following).await.unwrap(),
        Relogin::AlreadyRenewed
    );
    assert_eq!(cookie_of(&slow).as_deref(), Some("JSESSIONID=new"));
}

#[tokio::test]
async fn idle_sessions_are_swept_but_sessions_in_use_are_not() {
    let sessions = open(plan());
    let idle = sessions.lease("osmc", key("idle")).await.unwrap();
    idle.absorb(PATH, &set_cookie("JSESSIONID=a; Path=/"));
    drop(idle);
    let busy = sessions.lease("osmc", key("busy")).await.unwrap();
    busy.absorb(PATH, &set_cookie("JSESSIONID=b; Path=/"));

    assert_eq!(sessions.sweep_at(Instant::now()), 0, "not idle yet");
    let later = Instant::now() + plan().idle_timeout + Duration::from_secs(1);
    assert_eq!(sessions.sweep_at(later), 1);
    let left: Vec<_> = sessions.list().into_iter().map(|s| s.key).collect();
    assert_eq!(left, ["busy"]);
    assert_eq!(sessions.stats().expired, 1);
}

#[tokio::test]
async fn an_idle_session_is_replaced_on_its_next_lease() {
    let sessions = open(plan());
    let lease = sessions.lease("osmc", key("route")).await.unwrap();
    lease.absorb(PATH, &set_cookie("JSESSIONID=a; Path=/"));
    drop(lease);
    let route = sessions.inner.routes["osmc"].clone();
    let later = Instant::now() + plan().idle_timeout + Duration::from_secs(1);
    let active = sessions.checkout(&route, &key("route"), later).unwrap();
    assert!(
        active.0.state().jar.is_empty(std::time::SystemTime::now()),
        "a fresh session"
    );
    drop(active);
    assert_eq!(sessions.stats().expired, 1);
    let lease = sessions.lease("osmc", key("route")).await.unwrap();
    assert!(lease.is_exclusive());
}

#[tokio::test]
async fn removed_session_starts_over_and_lists_show_names_not_values() {
    let sessions = open(plan());
    let lease = sessions.lease("osmc", key("client:iiq")).await.unwrap();
    lease.absorb(PATH, &set_cookie("JSESSIONID=topsecret; Path=/"));
    drop(lease);
    let listed = sessions.list();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].route, "osmc");
    assert_eq!(listed[0].key, "client:iiq");
    assert_eq!(listed[0].cookies, ["JSESSIONID"]);
    assert!(!format!("{listed:?}").contains("topsecret"));
    assert!(listed[0].expires_at.unwrap() > listed[0].last_used);

    assert!(sessions.remove("osmc", "client:iiq"));
    assert!(!sessions.remove("osmc", "client:iiq"));
    let lease = sessions.lease("osmc", key("client:iiq")).await.unwrap();
    assert!(lease.is_exclusive());
    assert_eq!(cookie_of(&lease), None);
}

#[tokio::test]
async fn routes_without_cookies_never_wait_to_establish() {
    let mut session = plan();
    session.cookies = false;
    let sessions = open(session);
    let a = sessions
        .lease("osmc", key("route"))
        .now_or_never()
        .unwrap()
        .unwrap();
    let b = sessions
        .lease("osmc", key("route"))
        .now_or_never()
        .unwrap()
        .unwrap();
    assert!(!a.is_exclusive() && !b.is_exclusive());
    assert!(a
        .absorb(PATH, &set_cookie("JSESSIONID=s; Path=/"))
        .is_empty());
    assert_eq!(cookie_of(&b), None);
}

#[tokio::test]
async fn routes_without_a_session_plan_get_no_lease() {
    let mut plain = route("plain", "https://plain.example.com/", plan());
    plain.session = None;
    let sessions = Sessions::open(&[plain], &StatePlan::default(), false).unwrap();
    assert!(matches!(
        sessions.lease("plain", key("route")).await,
        Err(LeaseError::NoSessions(_))
    ));
    assert!(matches!(
        sessions.lease("unknown", key("route")).await,
        Err(LeaseError::NoSessions(_))
    ));
}

#[tokio::test]
async fn cookies_follow_the_logical_upstream_host_and_path() {
    let sessions = Sessions::open(
        &[route("osmc", "https://osmc.example.com/base/", plan())],
        &StatePlan::default(),
        false,
    )
    .unwrap();
    let lease = sessions.lease("osmc", key("route")).await.unwrap();
    let names = lease.absorb(
        "/base/api/login?x=1",
        &set_cookie("a=1; Domain=osmc.example.com; Path=/base"),
    );
    assert_eq!(names, ["a"]);
    assert!(lease.cookie_header("/base/api/x").is_some());
    assert!(lease.cookie_header("/other").is_none());
}

fn persisted(path: &Path) -> SessionPlan {
    let mut session = plan();
    session.persist = Some(path.to_owned());
    session
}

#[tokio::test]
async fn persistence_round_trip_keeps_session_cookies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state").join("sessions.json");
    let routes = [
        route("osmc", "https://osmc.example.com/", persisted(&path)),
        route("snow", "https://snow.example.com/", persisted(&path)),
    ];
    let sessions = Sessions::open(&routes, &StatePlan::default(), false).unwrap();
    let lease = sessions.lease("osmc", key("route")).await.unwrap();
    lease.absorb(PATH, &set_cookie("JSESSIONID=s1; Path=/; HttpOnly"));
    lease.absorb(PATH, &set_cookie("lb=n2; Path=/; Max-Age=3600"));
    drop(lease);
    let lease = sessions.lease("snow", key("client:okta")).await.unwrap();
    lease.absorb(PATH, &set_cookie("glide_session=g1; Path=/"));
    drop(lease);
    sessions.persist_now().await.unwrap();

    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let reopened = Sessions::open(&routes, &StatePlan::default(), false).unwrap();
    let lease = reopened.lease("osmc", key("route")).await.unwrap();
    assert!(!lease.is_exclusive(), "restored sessions are established");
    assert_eq!(cookie_of(&lease).as_deref(), Some("JSESSIONID=s1; lb=n2"));
    drop(lease);
    let lease = reopened.lease("snow", key("client:okta")).await.unwrap();
    assert_eq!(cookie_of(&lease).as_deref(), Some("glide_session=g1"));
    assert_eq!(reopened.list().len(), 2);
}

#[tokio::test]
async fn restored_sessions_idle_past_their_timeout_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.json");
    let routes = [route("osmc", "https://osmc.example.com/", persisted(&path))];
    let sessions = Sessions::open(&routes, &StatePlan::default(), false).unwrap();
    let lease = sessions.lease("osmc", key("route")).await.unwrap();
    lease.absorb(PATH, &set_cookie("JSESSIONID=s1; Path=/"));
    drop(lease);
    sessions.persist_now().await.unwrap();

    let mut short = persisted(&path);
    short.idle_timeout = Duration::ZERO;
    let reopened = Sessions::open(
        &[route("osmc", "https://osmc.example.com/", short)],
        &StatePlan::default(),
        false,
    )
    .unwrap();
    assert!(reopened.list().is_empty());
}

#[tokio::test]
async fn changes_are_written_in_the_background_shortly_after() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.json");
    let sessions = Sessions::open(
        &[route("osmc", "https://osmc.example.com/", persisted(&path))],
        &StatePlan::default(),
        false,
    )
    .unwrap();
    let background = sessions.spawn_background();
    let mut writes = sessions.inner.writes.subscribe();
    let lease = sessions.lease("osmc", key("route")).await.unwrap();
    lease.absorb(PATH, &set_cookie("JSESSIONID=s1; Path=/"));
    drop(lease);
    timeout(BOUND, writes.wait_for(|n| *n >= 1))
        .await
        .unwrap()
        .unwrap();
    background.abort();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("JSESSIONID"));
}

#[tokio::test]
async fn a_failed_write_is_counted_and_sessions_stay_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");
    let path = state_dir.join("sessions.json");
    let sessions = Sessions::open(
        &[route("osmc", "https://osmc.example.com/", persisted(&path))],
        &StatePlan::default(),
        false,
    )
    .unwrap();
    // The directory disappears behind the proxy's back and a file takes its place.
    std::fs::remove_dir_all(&state_dir).unwrap();
    std::fs::write(&state_dir, b"not a directory").unwrap();

    let lease = sessions.lease("osmc", key("route")).await.unwrap();
    lease.absorb(PATH, &set_cookie("JSESSIONID=s1; Path=/"));
    drop(lease);
    let error = sessions.persist_now().await.unwrap_err();
    assert!(matches!(error, SessionError::Write { .. }));
    assert!(error.to_string().contains("sessions.json"));
    assert!(!error.to_string().contains("s1;"));
    assert_eq!(sessions.stats().persist_failures, 1);
    let lease = sessions.lease("osmc", key("route")).await.unwrap();
    assert_eq!(cookie_of(&lease).as_deref(), Some("JSESSIONID=s1"));
}

#[test]
fn corrupt_state_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.json");
    std::fs::write(&path, b"{\"version\":1,\"sessions\":[").unwrap();
    let routes = [route("osmc", "https://osmc.example.com/", persisted(&path))];
    let Err(error) = Sessions::open(&routes, &StatePlan::default(), false) else {
        panic!("a corrupt file must not load");
    };
    assert!(matches!(error, SessionError::Corrupt { .. }));
    assert!(error.to_string().contains(&path.display().to_string()));
    assert!(path.exists(), "without reset the file is left alone");
}

#[test]
fn reset_moves_a_corrupt_state_file_aside_and_starts_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.json");
    std::fs::write(&path, b"garbage").unwrap();
    let routes = [route("osmc", "https://osmc.example.com/", persisted(&path))];
    let sessions = Sessions::open(&routes, &StatePlan::default(), true).unwrap();
    assert!(sessions.list().is_empty());
    assert!(!path.exists());
    let moved: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name != salt::SALT_FILE)
        .collect();
    assert_eq!(moved.len(), 1);
    assert!(moved[0].starts_with("sessions.json.corrupt-"), "{moved:?}");
    assert_eq!(
        std::fs::read(dir.path().join(&moved[0])).unwrap(),
        b"garbage"
    );
}

#[test]
fn session_gone_needs_a_relogin_status_and_a_sent_cookie() {
    let plan = plan();
    assert!(is_session_gone(&plan, StatusCode::UNAUTHORIZED, true, None));
    assert!(!is_session_gone(
        &plan,
        StatusCode::UNAUTHORIZED,
        false,
        None
    ));
    assert!(!is_session_gone(&plan, StatusCode::FORBIDDEN, true, None));
}

#[test]
fn session_gone_checks_the_body_when_configured() {
    let mut plan = plan();
    plan.relogin_body_contains = Some("requires user authentication".into());
    let body = br#"{"code":401,"description":"The request requires user authentication"}"#;
    assert!(is_session_gone(
        &plan,
        StatusCode::UNAUTHORIZED,
        true,
        Some(body)
    ));
    assert!(!is_session_gone(
        &plan,
        StatusCode::UNAUTHORIZED,
        true,
        Some(b"bad password")
    ));
    assert!(!is_session_gone(
        &plan,
        StatusCode::UNAUTHORIZED,
        true,
        None
    ));
}

#[test]
fn leases_and_lease_futures_can_cross_threads() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: &T) {}
    let sessions = open(plan());
    send_sync(&sessions);
    let lease = sessions.lease("osmc", key("route"));
    send(&lease);
    let mut lease = lease.now_or_never().unwrap().unwrap();
    send_sync(&lease);
    send(&lease.begin_relogin());
}

#[tokio::test]
async fn the_jar_follows_the_targets_session_id_rotation_and_expiry() {
    let target = LockedTarget::spawn(Some(2)).await;
    let sessions = Sessions::open(
        &[route("osmc", &format!("{}/", target.url()), plan())],
        &StatePlan::default(),
        false,
    )
    .unwrap();
    let url = format!("{}{PATH}", target.url());
    for call in 0..8 {
        if call == 5 {
            assert!(target.expire_session());
        }
        let lease = sessions.lease("osmc", key("route")).await.unwrap();
        let cookie = cookie_of(&lease);
        let reply = post(&url, cookie.as_deref()).await;
        assert_eq!(reply.status, StatusCode::CREATED, "call {call}");
        lease.absorb(PATH, &reply.headers);
    }
    assert_eq!(target.refused(), 0);
    assert_eq!(target.sessions_opened(), 2);
}

fn bounded(max: usize) -> Sessions {
    let mut session = plan();
    session.max_sessions = max;
    open(session)
}

/// Opens the session `name` with a cookie and releases it.
async fn use_session(sessions: &Sessions, name: &str) {
    let lease = sessions.lease("osmc", key(name)).await.unwrap();
    lease.absorb(PATH, &set_cookie(&format!("JSESSIONID={name}; Path=/")));
}

fn keys(sessions: &Sessions) -> Vec<String> {
    sessions.list().into_iter().map(|s| s.key).collect()
}

#[tokio::test]
async fn past_max_sessions_the_least_recently_used_idle_session_is_dropped_and_counted() {
    let sessions = bounded(3);
    for name in ["a", "b", "c"] {
        use_session(&sessions, name).await;
    }
    use_session(&sessions, "a").await;
    use_session(&sessions, "d").await;
    assert_eq!(
        keys(&sessions),
        ["a", "c", "d"],
        "b was the least recently used"
    );
    use_session(&sessions, "e").await;
    assert_eq!(keys(&sessions), ["a", "d", "e"]);
    assert_eq!(sessions.stats().evicted, [("osmc".to_owned(), 2)]);
    let lease = sessions.lease("osmc", key("b")).await.unwrap();
    assert!(lease.is_exclusive(), "an evicted session starts over");
    assert_eq!(cookie_of(&lease), None);
}

#[tokio::test]
async fn sessions_in_use_are_never_evicted_and_a_full_route_refuses_new_ones() {
    let sessions = bounded(2);
    use_session(&sessions, "old").await;
    let busy = sessions.lease("osmc", key("busy")).await.unwrap();
    let newer = sessions.lease("osmc", key("new")).await.unwrap();
    assert_eq!(keys(&sessions), ["busy", "new"], "the idle one made room");
    let Err(refused) = sessions.lease("osmc", key("third")).await else {
        panic!("no room while both sessions are in use");
    };
    assert_eq!(
        refused,
        LeaseError::Full {
            route: "osmc".into(),
            max: 2
        }
    );
    assert_eq!(
        keys(&sessions),
        ["busy", "new"],
        "the refused one left nothing behind"
    );
    drop(newer);
    let third = sessions.lease("osmc", key("third")).await.unwrap();
    assert!(third.is_exclusive());
    assert_eq!(keys(&sessions), ["busy", "third"]);
    drop(busy);
}

#[tokio::test]
async fn twenty_thousand_distinct_keys_stay_within_max_sessions() {
    const KEYS: usize = 20_000;
    const MAX: usize = 1_000;
    let sessions = bounded(MAX);
    for i in 0..KEYS {
        use_session(&sessions, &format!("k{i}")).await;
        assert!(sessions.stats().live <= MAX as u64);
    }
    let stats = sessions.stats();
    assert_eq!(stats.live, MAX as u64);
    assert_eq!(stats.evicted, [("osmc".to_owned(), (KEYS - MAX) as u64)]);
    let kept = keys(&sessions);
    assert!(
        kept.contains(&format!("k{}", KEYS - 1)),
        "the newest are kept"
    );
    assert!(!kept.contains(&"k0".to_owned()), "the oldest went first");
}

#[tokio::test]
async fn restoring_more_sessions_than_max_keeps_the_most_recently_used() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.json");
    let routes = [route("osmc", "https://osmc.example.com/", persisted(&path))];
    let sessions = Sessions::open(&routes, &StatePlan::default(), false).unwrap();
    for name in ["a", "b", "c"] {
        use_session(&sessions, name).await;
        // The file keeps milliseconds: make each use land in a later one.
        let used = sessions.list().into_iter().find(|s| s.key == name).unwrap();
        while SystemTime::now()
            .duration_since(used.last_used)
            .unwrap_or_default()
            < Duration::from_millis(2)
        {
            std::hint::spin_loop();
        }
    }
    sessions.persist_now().await.unwrap();
    let mut fewer = persisted(&path);
    fewer.max_sessions = 2;
    let reopened = Sessions::open(
        &[route("osmc", "https://osmc.example.com/", fewer)],
        &StatePlan::default(),
        false,
    )
    .unwrap();
    assert_eq!(keys(&reopened), ["b", "c"]);
}

#[test]
fn a_write_comes_shortly_after_a_change_but_never_within_a_second_of_the_last() {
    let now = tokio::time::Instant::now();
    assert_eq!(next_write_at(now, None), now + PERSIST_DEBOUNCE);
    let long_ago = now - Duration::from_secs(60);
    assert_eq!(next_write_at(now, Some(long_ago)), now + PERSIST_DEBOUNCE);
    let just_now = now - Duration::from_millis(100);
    assert_eq!(
        next_write_at(now, Some(just_now)),
        just_now + MIN_WRITE_INTERVAL
    );
}

#[tokio::test(start_paused = true)]
async fn a_flood_of_new_sessions_writes_the_state_file_at_most_once_per_second() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.json");
    let sessions = Sessions::open(
        &[route("osmc", "https://osmc.example.com/", persisted(&path))],
        &StatePlan::default(),
        false,
    )
    .unwrap();
    let background = sessions.spawn_background();
    let started = tokio::time::Instant::now();
    // 600 new sessions, one every 10 ms of the paused clock: 6 seconds of flood in no time.
    // The clock does not move while a write is running (tokio holds paused time still while
    // a blocking task runs), so each write costs no flood time, as a fast disk would.
    for i in 0..600 {
        use_session(&sessions, &format!("k{i}")).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut writes = sessions.inner.writes.subscribe();
    let before_last = *writes.borrow();
    // The last changes are written once the interval allows; the clock moves on its own
    // while the writer waits for it.
    timeout(BOUND, writes.wait_for(|n| *n > before_last))
        .await
        .unwrap()
        .unwrap();
    let elapsed = started.elapsed();
    let written = sessions.stats().persist_writes;
    background.abort();
    assert!(
        written <= elapsed.as_secs() + 1,
        "{written} writes in {elapsed:?}"
    );
    assert!(written >= 5, "the flood is written as it goes: {written}");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\"k599\""), "the last session is in the file");
}

fn encrypted(secret: &str) -> StatePlan {
    StatePlan {
        encryption_key: Some(crate::config::Secret::new(
            secret,
            crate::config::SecretSource::Env("PROVPROXY_STATE_KEY".into()),
        )),
        ..StatePlan::default()
    }
}

const STATE_KEY: &str = "k9Xw2pL7vQ4mZ8rT1yB6nC3hF5jD0sGe";

#[tokio::test]
async fn with_an_encryption_key_the_state_file_holds_cookie_names_but_no_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.json");
    let routes = [route("osmc", "https://osmc.example.com/", persisted(&path))];
    let sessions = Sessions::open(&routes, &encrypted(STATE_KEY), false).unwrap();
    let lease = sessions.lease("osmc", key("route")).await.unwrap();
    lease.absorb(
        PATH,
        &set_cookie("JSESSIONID=value-7f3a9; Path=/; HttpOnly"),
    );
    lease.absorb(PATH, &set_cookie("lb=node-b42; Path=/; Max-Age=3600"));
    drop(lease);
    sessions.persist_now().await.unwrap();

    let text = std::fs::read_to_string(&path).unwrap();
    for value in ["value-7f3a9", "node-b42"] {
        assert!(!text.contains(value), "{value} in clear:\n{text}");
    }
    for readable in [
        "JSESSIONID",
        "\"lb\"",
        "\"osmc\"",
        "\"route\"",
        "last_used_ms",
    ] {
        assert!(text.contains(readable), "{readable} missing:\n{text}");
    }

    let reopened = Sessions::open(&routes, &encrypted(STATE_KEY), false).unwrap();
    let lease = reopened.lease("osmc", key("route")).await.unwrap();
    assert_eq!(
        cookie_of(&lease).as_deref(),
        Some("JSESSIONID=value-7f3a9; lb=node-b42")
    );
}

#[tokio::test]
async fn a_wrong_or_missing_encryption_key_stops_the_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.json");
    let routes = [route("osmc", "https://osmc.example.com/", persisted(&path))];
    let sessions = Sessions::open(&routes, &encrypted(STATE_KEY), false).unwrap();
    use_session(&sessions, "route").await;
    sessions.persist_now().await.unwrap();
    let written = std::fs::read(&path).unwrap();

    let wrong = encrypted("another-key-of-32-characters-xyz");
    let Err(error) = Sessions::open(&routes, &wrong, false) else {
        panic!("a wrong key must not load");
    };
    assert!(matches!(error, SessionError::WrongKey { .. }), "{error}");
    let text = error.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("state.encryption_key"), "{text}");

    let Err(error) = Sessions::open(&routes, &StatePlan::default(), false) else {
        panic!("a sealed file must not load without a key");
    };
    assert!(matches!(error, SessionError::NoKey { .. }), "{error}");
    assert_eq!(std::fs::read(&path).unwrap(), written, "left alone");

    let reset = Sessions::open(&routes, &wrong, true).unwrap();
    assert!(reset.list().is_empty());
    assert!(!path.exists(), "moved aside");
}

#[tokio::test]
async fn a_plain_state_file_loads_with_a_new_key_and_is_written_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.json");
    let routes = [route("osmc", "https://osmc.example.com/", persisted(&path))];
    let plain = Sessions::open(&routes, &StatePlan::default(), false).unwrap();
    use_session(&plain, "route").await;
    plain.persist_now().await.unwrap();
    assert!(std::fs::read_to_string(&path)
        .unwrap()
        .contains("JSESSIONID=route"));

    let sealed = Sessions::open(&routes, &encrypted(STATE_KEY), false).unwrap();
    assert_eq!(keys(&sealed), ["route"]);
    sealed.persist_now().await.unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("JSESSIONID=route"), "{text}");
    let lease = Sessions::open(&routes, &encrypted(STATE_KEY), false)
        .unwrap()
        .lease("osmc", key("route"))
        .await
        .unwrap();
    assert_eq!(cookie_of(&lease).as_deref(), Some("JSESSIONID=route"));
}

fn tenant_headers(value: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("x-tenant", HeaderValue::from_str(value).unwrap());
    headers
}

#[test]
fn session_key_hashes_are_stable_across_restarts_with_persistence_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.json");
    let mut session = persisted(&path);
    session.key = SessionKeyKind::Header(HeaderName::from_static("x-tenant"));
    let routes = [route("osmc", "https://osmc.example.com/", session.clone())];
    let derive = |sessions: &Sessions| {
        sessions
            .key_for("osmc", Some("iiq"), &tenant_headers("acme"))
            .unwrap()
            .unwrap()
    };
    let first = derive(&Sessions::open(&routes, &StatePlan::default(), false).unwrap());
    let again = derive(&Sessions::open(&routes, &StatePlan::default(), false).unwrap());
    assert_eq!(first, again);
    let salt_file = dir.path().join(salt::SALT_FILE);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&salt_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    session.persist = None;
    let routes = [route("osmc", "https://osmc.example.com/", session)];
    let a = derive(&Sessions::open(&routes, &StatePlan::default(), false).unwrap());
    let b = derive(&Sessions::open(&routes, &StatePlan::default(), false).unwrap());
    assert_ne!(a, b, "without persistence each process keys its own hashes");
    assert_ne!(a, first);
}

/// Two replicas' stores sharing one state key, as the Redis backend builds them.
fn shared_pair(secret: &str) -> (Sessions, Sessions) {
    let state = StatePlan {
        redis: Some(crate::config::RedisPlan {
            url: Url::parse("redis://127.0.0.1:6379/0").unwrap(),
            username: None,
            password: None,
            key_prefix: "t:".into(),
            on_unavailable: crate::config::OnUnavailable::Fail,
            connect_timeout: Duration::from_secs(1),
            command_timeout: Duration::from_millis(500),
        }),
        ..encrypted(secret)
    };
    let routes = [route("osmc", "https://osmc.example.com/", plan())];
    (
        Sessions::open(&routes, &state, false).unwrap(),
        Sessions::open(&routes, &state, false).unwrap(),
    )
}

#[tokio::test]
async fn a_shared_jar_moves_between_stores_by_revision_and_a_sealed_one_needs_the_key() {
    const ONE: &str = "first-session-value-0123456789";
    let (first, second) = shared_pair(STATE_KEY);
    let a = first.lease("osmc", key("route")).await.unwrap();
    a.absorb(PATH, &set_cookie(&format!("JSESSIONID={ONE}; Path=/")));
    assert!(
        a.take_changed(),
        "a stored cookie is a change to write back"
    );
    assert!(!a.take_changed(), "once");
    let (doc, read_as) = a.export().unwrap();
    assert_eq!(read_as, 0);
    // A value long enough that the sealed document's base64 cannot hold it by chance: with
    // `one`, about 190 random base64 characters held those three letters about once in 1,400
    // runs, and the test failed.
    assert!(!String::from_utf8_lossy(&doc).contains(ONE), "sealed");
    a.synced(1);
    drop(a);

    second.adopt_shared("osmc", &key("route"), 0, Some((1, &doc)));
    let b = second.lease("osmc", key("route")).await.unwrap();
    assert!(!b.is_exclusive(), "established from the shared copy");
    assert_eq!(
        cookie_of(&b).as_deref(),
        Some(format!("JSESSIONID={ONE}").as_str())
    );
    b.absorb(PATH, &set_cookie("JSESSIONID=two; Path=/"));
    drop(b);

    // The same revision again changes nothing: the local jar (rotated meanwhile) stays.
    second.adopt_shared("osmc", &key("route"), 1, Some((1, &doc)));
    let b = second.lease("osmc", key("route")).await.unwrap();
    assert_eq!(cookie_of(&b).as_deref(), Some("JSESSIONID=two"));
    drop(b);

    // No copy in the store (a Redis that restarted empty): the jar stays, to be published
    // again, since the target still holds its session open.
    assert!(second.adopt_shared("osmc", &key("route"), 1, None));
    let b = second.lease("osmc", key("route")).await.unwrap();
    assert_eq!(cookie_of(&b).as_deref(), Some("JSESSIONID=two"));
    drop(b);

    // Deleted by an operator (a revision without a document): the jar goes.
    assert!(!second.adopt_shared("osmc", &key("route"), 0, Some((2, &[]))));
    let b = second.lease("osmc", key("route")).await.unwrap();
    assert!(b.is_exclusive(), "a new session is established");
    assert_eq!(cookie_of(&b), None);
    drop(b);

    // Another key cannot open it: counted, and the session is treated as absent.
    let (stranger, _) = shared_pair("another-key-0123456789abcdefghijkl");
    stranger.adopt_shared("osmc", &key("route"), 0, Some((1, &doc)));
    let c = stranger.lease("osmc", key("route")).await.unwrap();
    assert!(c.is_exclusive());
    assert_eq!(cookie_of(&c), None, "no garbage cookie");
    assert_eq!(stranger.unreadable_shared(), 1);
}

#[tokio::test]
async fn a_shared_copy_read_before_a_newer_sync_does_not_roll_the_session_back() {
    let (first, second) = shared_pair(STATE_KEY);
    let a = first.lease("osmc", key("route")).await.unwrap();
    a.absorb(PATH, &set_cookie("JSESSIONID=old; Path=/"));
    let (old, _) = a.export().unwrap();
    a.absorb(PATH, &set_cookie("JSESSIONID=new; Path=/"));
    let (new, _) = a.export().unwrap();
    drop(a);

    // Two leases on the second replica read the shared copy; the later read (revision 2)
    // is adopted first, then the earlier one (revision 1) arrives.
    let read_as = second.synced_rev("osmc", &key("route"));
    second.adopt_shared("osmc", &key("route"), read_as, Some((2, &new)));
    second.adopt_shared("osmc", &key("route"), read_as, Some((1, &old)));
    let b = second.lease("osmc", key("route")).await.unwrap();
    assert_eq!(cookie_of(&b).as_deref(), Some("JSESSIONID=new"));
    drop(b);
    assert_eq!(second.synced_rev("osmc", &key("route")), 2);

    // Nor does a stale "no copy" reset the revision the jar is synced with.
    assert!(!second.adopt_shared("osmc", &key("route"), read_as, None));
    assert_eq!(second.synced_rev("osmc", &key("route")), 2);

    // A copy newer than the jar is taken even when read before the jar moved.
    second.adopt_shared("osmc", &key("route"), read_as, Some((3, &old)));
    let b = second.lease("osmc", key("route")).await.unwrap();
    assert_eq!(cookie_of(&b).as_deref(), Some("JSESSIONID=old"));
    assert_eq!(second.synced_rev("osmc", &key("route")), 3);
}

#[test]
fn replicas_with_one_state_key_hash_a_client_to_the_same_session() {
    let (first, second) = shared_pair(STATE_KEY);
    let mut headers = HeaderMap::new();
    headers.insert("x-tenant", HeaderValue::from_static("t1"));
    let hashed = |sessions: &Sessions| {
        let route = sessions.inner.routes.get("osmc").unwrap();
        route.hasher.hashed("header", None, b"t1").to_string()
    };
    assert_eq!(hashed(&first), hashed(&second));
    let (other, _) = shared_pair("another-key-0123456789abcdefghijkl");
    assert_ne!(hashed(&first), hashed(&other));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_holders_lacking_a_token_elect_one_fetcher_and_the_rest_use_its_token() {
    let sessions = open(plan());
    let lease = sessions.lease("osmc", key("route")).await.unwrap();
    lease.absorb(PATH, &set_cookie("SAP_SESSIONID=s1; Path=/"));
    drop(lease);

    let n = 8;
    let all_hold = Arc::new(Barrier::new(n));
    let mut tasks = Vec::new();
    for _ in 0..n {
        let (sessions, all_hold) = (sessions.clone(), all_hold.clone());
        tasks.push(tokio::spawn(async move {
            let mut lease = sessions.lease("osmc", key("route")).await.unwrap();
            assert_eq!(lease.token("csrf"), None);
            all_hold.wait().await;
            let turn = lease.begin_token_fetch("csrf").await;
            if turn == TokenTurn::Leader {
                assert!(lease.is_exclusive(), "the fetcher is alone on the session");
                assert!(lease.store_token("csrf", "t-1".into()));
            }
            (turn, lease.token("csrf"))
        }));
    }
    let mut leaders = 0;
    for task in tasks {
        let (turn, token) = timeout(BOUND, task).await.unwrap().unwrap();
        leaders += usize::from(turn == TokenTurn::Leader);
        assert_eq!(token.as_deref(), Some("t-1"));
    }
    assert_eq!(leaders, 1);
}

#[tokio::test]
async fn a_session_holding_only_a_token_is_established_and_a_relogin_drops_its_tokens() {
    let sessions = open(plan());
    let first = sessions.lease("osmc", key("route")).await.unwrap();
    assert!(first.is_exclusive(), "a new session is opened alone");
    first.store_token("session", "id-1".into());
    drop(first);
    let shared = sessions.lease("osmc", key("route")).await.unwrap();
    assert!(
        !shared.is_exclusive(),
        "a token is a session: no more queueing"
    );
    assert!(
        !shared.drop_token("session", "id-0"),
        "a refusal of an older value keeps the current one"
    );
    drop(shared);
    let mut lease = sessions.lease("osmc", key("route")).await.unwrap();
    assert_eq!(lease.begin_relogin().await, Relogin::Leader);
    assert_eq!(lease.token("session"), None);
}

#[tokio::test]
async fn tokens_are_sealed_in_the_state_file_and_come_back_with_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.json");
    let routes = [route("osmc", "https://osmc.example.com/", persisted(&path))];
    let sessions = Sessions::open(&routes, &encrypted(STATE_KEY), false).unwrap();
    let lease = sessions.lease("osmc", key("route")).await.unwrap();
    lease.store_token("session", "sid-4c1e9b".into());
    drop(lease);
    sessions.persist_now().await.unwrap();

    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("sid-4c1e9b"), "in clear:\n{text}");
    assert!(
        text.contains("\"session\""),
        "the name stays readable:\n{text}"
    );

    let reopened = Sessions::open(&routes, &encrypted(STATE_KEY), false).unwrap();
    let lease = reopened.lease("osmc", key("route")).await.unwrap();
    assert_eq!(lease.token("session").as_deref(), Some("sid-4c1e9b"));

    // A file written before tokens existed has no `tokens` key and loads as it did.
    let old = dir.path().join("old.json");
    std::fs::write(
        &old,
        br#"{"version":1,"sessions":[{"route":"osmc","key":"route","created_ms":1,
        "last_used_ms":1,"generation":1,"cookies":[]}]}"#,
    )
    .unwrap();
    assert!(persist::read_state(&old, None, None).unwrap().is_some());
}

#[tokio::test]
async fn an_idle_session_is_swept_with_its_tokens() {
    let sessions = open(plan());
    let lease = sessions.lease("osmc", key("route")).await.unwrap();
    lease.store_token("csrf", "t-9".into());
    drop(lease);
    let timeout = plan().idle_timeout;
    assert_eq!(sessions.sweep_at(Instant::now() + timeout), 1);
    let lease = sessions.lease("osmc", key("route")).await.unwrap();
    assert_eq!(
        lease.token("csrf"),
        None,
        "a new session starts without tokens"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn new_sessions_opened_in_parallel_make_room_while_most_sessions_are_idle() {
    const MAX: usize = 100;
    const PARALLEL: usize = 16;
    const EACH: usize = 500;
    let sessions = bounded(MAX);
    let start = Arc::new(Barrier::new(PARALLEL));
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..PARALLEL {
        let sessions = sessions.clone();
        let start = start.clone();
        workers.spawn(async move {
            start.wait().await;
            for n in 0..EACH {
                let name = format!("w{worker}-{n}");
                let lease = sessions.lease("osmc", key(&name)).await;
                if let Err(refused) = lease {
                    return Err(format!("{name}: {refused:?}"));
                }
            }
            Ok(())
        });
    }
    while let Some(worker) = workers.join_next().await {
        // At most PARALLEL of MAX sessions are ever in use: there is always an idle one to drop.
        worker.unwrap().unwrap();
    }
    let stats = sessions.stats();
    assert_eq!(stats.live, MAX as u64);
    assert_eq!(
        stats.evicted,
        [("osmc".to_owned(), (PARALLEL * EACH - MAX) as u64)]
    );
}
