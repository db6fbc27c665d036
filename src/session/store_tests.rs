use std::path::Path;
use std::sync::atomic::AtomicUsize;

use futures_util::FutureExt;
use http::{HeaderName, Method, StatusCode};
use tokio::sync::Barrier;
use tokio::time::timeout;

use super::*;
use crate::config::{
    AuthKind, AuthPlan, ChallengePlan, ClientCookies, RouteMatch, SessionKeyKind, Upstream, When,
};
use crate::demo::session_locked;
use crate::demo::session_locked::tests::{basic, client, send};
use crate::session::is_session_gone;

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
        rewriter: crate::challenge::Rewriter::new(&ChallengePlan::default())
            .expect("the default challenge plan is valid"),
        challenge: ChallengePlan::default(),
        allow_encoded_slashes: false,
    }
}

fn open(session: SessionPlan) -> Sessions {
    Sessions::open(
        &[route("osmc", "https://osmc.example.com/", session)],
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
    let (target, stats) = session_locked::spawn("svc", "pw").await.unwrap();
    let sessions = Sessions::open(
        &[route("osmc", &format!("{}/", target.url()), plan())],
        false,
    )
    .unwrap();
    let client = client();
    let auth = basic("svc", "pw");
    let barrier = Arc::new(Barrier::new(16));
    let without_cookie = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (sessions, client, auth, barrier, without_cookie) = (
            sessions.clone(),
            client.clone(),
            auth.clone(),
            barrier.clone(),
            without_cookie.clone(),
        );
        let url = format!("{}{PATH}", target.url());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let lease = sessions.lease("osmc", key("route")).await.unwrap();
            let cookie = cookie_of(&lease);
            if cookie.is_none() {
                without_cookie.fetch_add(1, Ordering::Relaxed);
            }
            let body = format!(r#"{{"name":"user{i}"}}"#);
            let reply = send(
                &client,
                Method::POST,
                &url,
                Some(&auth),
                cookie.as_deref(),
                &body,
            )
            .await;
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
    assert_eq!(stats.sessions_opened(), 1);
    assert_eq!(stats.unauthorized(), 0);
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
                let session_key = SessionKey::derive(
                    &SessionKeyKind::Header(HeaderName::from_static("x-user")),
                    None,
                    &headers,
                );
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
    let active = sessions.checkout(&route, &key("route"), later);
    assert!(active.0.state().jar.is_empty(), "a fresh session");
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
    let sessions = Sessions::open(&[plain], false).unwrap();
    assert!(sessions.lease("plain", key("route")).await.is_none());
    assert!(sessions.lease("unknown", key("route")).await.is_none());
}

#[tokio::test]
async fn cookies_follow_the_logical_upstream_host_and_path() {
    let sessions = Sessions::open(
        &[route("osmc", "https://osmc.example.com/base/", plan())],
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
    let sessions = Sessions::open(&routes, false).unwrap();
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

    let reopened = Sessions::open(&routes, false).unwrap();
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
    let sessions = Sessions::open(&routes, false).unwrap();
    let lease = sessions.lease("osmc", key("route")).await.unwrap();
    lease.absorb(PATH, &set_cookie("JSESSIONID=s1; Path=/"));
    drop(lease);
    sessions.persist_now().await.unwrap();

    let mut short = persisted(&path);
    short.idle_timeout = Duration::ZERO;
    let reopened =
        Sessions::open(&[route("osmc", "https://osmc.example.com/", short)], false).unwrap();
    assert!(reopened.list().is_empty());
}

#[tokio::test]
async fn changes_are_written_in_the_background_shortly_after() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.json");
    let sessions = Sessions::open(
        &[route("osmc", "https://osmc.example.com/", persisted(&path))],
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
        false,
    )
    .unwrap();
    // The directory disappears behind the proxy's back and a file takes its place.
    std::fs::remove_dir(&state_dir).unwrap();
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
    let Err(error) = Sessions::open(&routes, false) else {
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
    let sessions = Sessions::open(&routes, true).unwrap();
    assert!(sessions.list().is_empty());
    assert!(!path.exists());
    let moved: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
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
    let mut options = session_locked::SessionLockedOptions::new("svc", "pw");
    options.rotate_every = Some(2);
    let (target, stats) = session_locked::spawn_with(options).await.unwrap();
    let sessions = Sessions::open(
        &[route("osmc", &format!("{}/", target.url()), plan())],
        false,
    )
    .unwrap();
    let client = client();
    let auth = basic("svc", "pw");
    let url = format!("{}{PATH}", target.url());
    for call in 0..8 {
        if call == 5 {
            assert!(stats.expire_session());
        }
        let lease = sessions.lease("osmc", key("route")).await.unwrap();
        let cookie = cookie_of(&lease);
        let reply = send(
            &client,
            Method::POST,
            &url,
            Some(&auth),
            cookie.as_deref(),
            "{}",
        )
        .await;
        assert_eq!(reply.status, StatusCode::CREATED, "call {call}");
        lease.absorb(PATH, &reply.headers);
    }
    assert_eq!(stats.unauthorized(), 0);
    assert_eq!(stats.sessions_opened(), 2);
}
