//! The session store: one jar per (route, session key), leases that decide who may talk to the
//! target with which cookie, re-login, idle expiry, the `max_sessions` bound (least recently
//! used idle session out), and the persistence schedule.
//!
//! Each session has two async locks. `gate` (a RwLock) is held for the whole exchange: read =
//! shared use of an established session, write = alone (establishing, re-login, `serialize`).
//! `elect` (a Mutex) is held by whoever is establishing or re-logging in, and taken briefly by
//! anyone who found the session without a cookie: they then wait on `elect`, not on `gate`'s
//! write side, so that once the session exists they all proceed together instead of queueing
//! behind each other's reads.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime};

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use http::header::SET_COOKIE;
use http::{HeaderMap, HeaderValue};
use tokio::sync::{
    watch, Notify, OwnedMutexGuard, OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock,
};
use tokio::task::JoinHandle;
use url::Url;

use super::jar::{Jar, StoredCookie};
use super::key::{KeyHasher, MissingKeyHeader, SessionKey};
use super::persist::{self, DecodeError, PersistedSession, StateDoc, StoredToken};
use super::salt;
use super::seal::StateCipher;
use super::tokens::HeldTokens;
use super::SessionError;
use crate::clock::{Clock, SharedClock};
use crate::config::{RoutePlan, SessionPlan, StatePlan};

/// How long the writer waits after a change for more changes, so a burst costs one write.
const PERSIST_DEBOUNCE: Duration = Duration::from_millis(200);

/// The least time between the end of one state file write and the start of the next: a flood
/// of new sessions costs at most one write per second, whatever the size of the file.
const MIN_WRITE_INTERVAL: Duration = Duration::from_secs(1);

/// A scan for eviction candidates keeps this share of a route's `max_sessions` (the oldest
/// idle ones), so that one scan of the map pays for that many evictions.
const CANDIDATES_PER_SCAN_DIVISOR: usize = 8;

/// Which routes of a reloaded plan keep their sessions, by name.
type Keep<'a> = &'a dyn Fn(&str) -> bool;

/// The process-wide session store. Cheap to clone; all clones share the same sessions.
#[derive(Clone)]
pub struct Sessions {
    inner: Arc<Inner>,
}

/// The routes' session stores by route name, looked up twice on every session request. The
/// names are the config's, never a client's, so FNV-1a serves where the default SipHash, built
/// to resist chosen keys, cost about 150 instructions a lookup.
type ByName = HashMap<String, Arc<RouteSessions>, BuildHasherDefault<RouteNameHasher>>;

/// FNV-1a (64 bits) over the bytes written.
struct RouteNameHasher(u64);

impl Default for RouteNameHasher {
    fn default() -> Self {
        RouteNameHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for RouteNameHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

struct Inner {
    routes: ByName,
    files: Vec<StateFile>,
    /// Seals cookie values in the state files (`[state] encryption_key`).
    cipher: Option<StateCipher>,
    /// Opens values sealed before a key rotation (`encryption_key_previous`).
    previous: Option<StateCipher>,
    /// Shared documents (another replica's sessions) that could not be opened: treated as
    /// absent, so a new session is opened rather than garbage cookies sent.
    unreadable: AtomicU64,
    changed: Notify,
    opened: AtomicU64,
    relogins: AtomicU64,
    expired: AtomicU64,
    persist_failures: AtomicU64,
    /// Successful state file writes; a watch so that tests can wait for one without sleeping.
    writes: watch::Sender<u64>,
    /// Wall time for cookie expiry in the jars.
    clock: SharedClock,
}

struct RouteSessions {
    name: String,
    /// The logical upstream URL: jars are keyed by it, never by the address connected to.
    url: Url,
    plan: SessionPlan,
    /// Index into `Inner::files`.
    file: Option<usize>,
    map: DashMap<SessionKey, Arc<Session>>,
    /// Keys the hashes of this route's session keys.
    hasher: KeyHasher,
    /// Sessions dropped to stay within `max_sessions`.
    evicted: AtomicU64,
    /// The oldest idle sessions as of the last scan, newest first (the next to go is last).
    /// Held for the whole of a checkout's evictions, so that evictions on a route are serial.
    candidates: Mutex<Vec<Candidate>>,
}

/// A session that was idle, and among the least recently used, when the map was scanned. It is
/// still the least recently used one when it comes up if it is idle and unused since: every
/// session not in the list was used more recently at the scan, and a use only makes it newer.
struct Candidate {
    key: SessionKey,
    last_used: Instant,
    session: Weak<Session>,
}

struct StateFile {
    path: PathBuf,
    dirty: AtomicBool,
    /// Keeps snapshots and writes in order, so an older snapshot never overwrites a newer one.
    write: tokio::sync::Mutex<()>,
}

struct Session {
    key: SessionKey,
    gate: Arc<RwLock<()>>,
    elect: Arc<tokio::sync::Mutex<()>>,
    /// Leases held or being acquired; a session in use is never idle.
    active: AtomicUsize,
    /// Set when the session left the map (removed, expired); holders then start over.
    removed: AtomicBool,
    created: SystemTime,
    state: Mutex<State>,
}

struct State {
    jar: Jar,
    /// Session tokens (`[[routes.session.tokens]]`): they live and die with the jar.
    tokens: HeldTokens,
    /// Bumped whenever a new upstream session may begin (establishing, re-login), so a lease can
    /// tell whether the session it used is still the current one.
    generation: u64,
    last_used: Instant,
    last_used_wall: SystemTime,
    /// The revision of the shared copy (Redis) this jar was last read from or written as; 0
    /// when there is none. Only the shared backend uses it.
    synced_rev: u64,
}

impl State {
    /// Whether there is anything worth keeping: a live cookie or a token.
    fn holds_anything(&self, now: SystemTime) -> bool {
        !self.jar.is_empty(now) || !self.tokens.is_empty()
    }
}

impl Session {
    fn new(
        key: SessionKey,
        jar: Jar,
        created: SystemTime,
        last_used: (Instant, SystemTime),
    ) -> Self {
        Session {
            key,
            gate: Arc::new(RwLock::new(())),
            elect: Arc::new(tokio::sync::Mutex::new(())),
            active: AtomicUsize::new(0),
            removed: AtomicBool::new(false),
            created,
            state: Mutex::new(State {
                jar,
                tokens: HeldTokens::default(),
                generation: 0,
                last_used: last_used.0,
                last_used_wall: last_used.1,
                synced_rev: 0,
            }),
        }
    }

    /// Never held across an await; a panic while holding it cannot leave the jar half-updated
    /// in a way that matters more than losing the session, so poisoning is ignored.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A session that holds a token is established even when its target sets no cookie (a
    /// session id from a login body), so that its requests share it instead of queueing.
    fn established(&self, plan: &SessionPlan, now: SystemTime) -> bool {
        let state = self.state();
        !plan.cookies || !state.jar.is_empty(now) || !state.tokens.is_empty()
    }

    /// The session's generation when it is established (see [`Session::established`]).
    fn established_generation(&self, plan: &SessionPlan, now: SystemTime) -> Option<u64> {
        let state = self.state();
        let established = !plan.cookies || !state.jar.is_empty(now) || !state.tokens.is_empty();
        established.then_some(state.generation)
    }

    fn is_idle(&self, now: Instant, timeout: Duration) -> bool {
        self.active.load(Ordering::Acquire) == 0
            && now.saturating_duration_since(self.state().last_used) >= timeout
    }

    fn touch(&self) {
        let mut state = self.state();
        state.last_used = Instant::now();
        state.last_used_wall = SystemTime::now();
    }
}

/// Counts one holder of a session for as long as it lives, also while a lease is still being
/// acquired, so that a cancelled acquisition cannot leave the session looking busy forever.
struct Active(Arc<Session>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.touch();
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What `/sessions` shows about one session: names, never cookie values.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub route: String,
    pub key: String,
    pub cookies: Vec<String>,
    /// Names of the session tokens it holds.
    pub tokens: Vec<String>,
    pub created: SystemTime,
    pub last_used: SystemTime,
    /// When idle expiry will drop it if unused until then (`None`: too far ahead to represent).
    pub expires_at: Option<SystemTime>,
    pub generation: u64,
    pub in_use: usize,
}

/// Counters for the admin and metrics module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionStats {
    /// Sessions currently tracked.
    pub live: u64,
    /// Upstream sessions opened: a jar went from empty to holding a cookie.
    pub opened: u64,
    pub relogins: u64,
    pub expired: u64,
    pub persist_failures: u64,
    pub persist_writes: u64,
    /// Sessions dropped to stay within `max_sessions`, per route (routes in name order).
    pub evicted: Vec<(String, u64)>,
}

/// Why there is no lease.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    #[error("route {0:?} keeps no sessions")]
    NoSessions(String),
    /// Every one of the route's `max_sessions` sessions is in use, so none can make room.
    #[error(
        "all {max} sessions of route {route:?} are in use; no idle one can make room for a new one"
    )]
    Full { route: String, max: usize },
}

impl Sessions {
    /// Builds the store for the routes that have a session plan, loading persisted sessions.
    /// A state file that cannot be read or parsed is an error naming it; with `reset`, it is
    /// moved aside to `<file>.corrupt-<unix seconds>` and the store starts empty for it.
    ///
    /// Session keys of routes that persist are hashed with the secret kept in their state
    /// directory (created at the first start); the others with a secret of this process.
    pub fn open(
        routes: &[RoutePlan],
        state: &StatePlan,
        reset: bool,
    ) -> Result<Sessions, SessionError> {
        Sessions::open_with_clock(routes, state, reset, crate::clock::system())
    }

    /// [`Sessions::open`] with the clock that dates cookie expiry in the jars.
    pub fn open_with_clock(
        routes: &[RoutePlan],
        state: &StatePlan,
        reset: bool,
        clock: SharedClock,
    ) -> Result<Sessions, SessionError> {
        Self::build(routes, state, reset, clock, None)
    }

    /// The store for a reloaded plan, beside this one. Routes that `keep` names take their
    /// sessions (the very same jars and leases, so requests in flight on this store and new
    /// ones on the returned store share them) and their key hasher along; every other route
    /// starts from its state file, as at a start. Counters carry over.
    pub fn carry_over(
        &self,
        routes: &[RoutePlan],
        state: &StatePlan,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<Sessions, SessionError> {
        let sessions = Self::build(
            routes,
            state,
            false,
            self.inner.clock.clone(),
            Some((self, keep)),
        )?;
        let (old, new) = (&self.inner, &sessions.inner);
        for (from, to) in [
            (&old.opened, &new.opened),
            (&old.relogins, &new.relogins),
            (&old.expired, &new.expired),
            (&old.persist_failures, &new.persist_failures),
        ] {
            to.store(from.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        new.writes.send_replace(*old.writes.borrow());
        // The files are rewritten from the new routes soon, whatever changes next: a route
        // that was reset must not come back from the file at the next start.
        for file in &new.files {
            file.dirty.store(true, Ordering::Release);
        }
        if !new.files.is_empty() {
            new.changed.notify_one();
        }
        Ok(sessions)
    }

    /// Sessions tracked for `route` (0 for a route without sessions).
    pub fn count(&self, route: &str) -> usize {
        self.inner.routes.get(route).map_or(0, |r| r.map.len())
    }

    fn build(
        routes: &[RoutePlan],
        state: &StatePlan,
        reset: bool,
        clock: SharedClock,
        previous: Option<(&Sessions, Keep<'_>)>,
    ) -> Result<Sessions, SessionError> {
        let kept = |name: &str| {
            previous.and_then(|(sessions, keep)| {
                keep(name)
                    .then(|| sessions.inner.routes.get(name))
                    .flatten()
            })
        };
        let cipher = state.encryption_key.clone().map(StateCipher::new);
        let previous = state.encryption_key_previous.clone().map(StateCipher::new);
        // Shared state: every replica must hash a client to the same session, and the state
        // key is the one secret they all have. Sessions live in the shared store, not in files.
        // While a key is being rotated the previous one keys the hashes, so that replicas
        // restarted with the new key and those not yet restarted agree.
        let shared_hasher = match (&state.redis, previous.as_ref().or(cipher.as_ref())) {
            (Some(_), Some(cipher)) => Some(cipher.key_hasher().map_err(|_| SessionError::Random)?),
            _ => None,
        };
        let process_hasher = KeyHasher::random().map_err(|_| SessionError::Random)?;
        let mut hashers: HashMap<PathBuf, KeyHasher> = HashMap::new();
        let mut files: Vec<StateFile> = Vec::new();
        let mut by_name = ByName::default();
        for route in routes {
            let Some(plan) = &route.session else { continue };
            let persist = plan.persist.as_ref().filter(|_| shared_hasher.is_none());
            let file = persist.map(|path| {
                files
                    .iter()
                    .position(|f| &f.path == path)
                    .unwrap_or_else(|| {
                        files.push(StateFile {
                            path: path.clone(),
                            dirty: AtomicBool::new(false),
                            write: tokio::sync::Mutex::new(()),
                        });
                        files.len() - 1
                    })
            });
            let hasher = match (kept(&route.name), persist, &shared_hasher) {
                // Its sessions' keys were hashed with it.
                (Some(old), _, _) => old.hasher.clone(),
                (None, _, Some(shared)) => shared.clone(),
                (None, Some(path), None) => {
                    let dir = persist::ensure_dir(path)?;
                    match hashers.get(dir) {
                        Some(hasher) => hasher.clone(),
                        None => {
                            let hasher = salt::load_or_create(dir)?;
                            hashers.insert(dir.to_owned(), hasher.clone());
                            hasher
                        }
                    }
                }
                (None, None, None) => process_hasher.clone(),
            };
            by_name.insert(
                route.name.clone(),
                Arc::new(RouteSessions {
                    name: route.name.clone(),
                    url: route.upstream.url.clone(),
                    plan: plan.clone(),
                    file,
                    map: DashMap::new(),
                    hasher,
                    evicted: AtomicU64::new(0),
                    candidates: Mutex::new(Vec::new()),
                }),
            );
        }
        for (index, file) in files.iter().enumerate() {
            let doc = match persist::read_state(&file.path, cipher.as_ref(), previous.as_ref()) {
                Ok(doc) => doc,
                Err(error) if reset => {
                    let moved = persist::move_aside(&file.path)?;
                    tracing::warn!(%error, moved_to = %moved.display(), "session state reset");
                    None
                }
                Err(error) => return Err(error),
            };
            if let Some(doc) = doc {
                restore(&by_name, index, doc, clock.wall());
            }
        }
        for (name, route) in &by_name {
            if let Some(old) = kept(name) {
                route.map.clear();
                for entry in old.map.iter() {
                    route.map.insert(entry.key().clone(), entry.value().clone());
                }
            }
        }
        Ok(Sessions {
            inner: Arc::new(Inner {
                routes: by_name,
                files,
                cipher,
                previous,
                unreadable: AtomicU64::new(0),
                changed: Notify::new(),
                opened: AtomicU64::new(0),
                relogins: AtomicU64::new(0),
                expired: AtomicU64::new(0),
                persist_failures: AtomicU64::new(0),
                writes: watch::Sender::new(0),
                clock,
            }),
        })
    }

    /// The session key of a request on `route`, hashed with the route's secret (see
    /// [`SessionKey::derive`]); `Ok(None)` when the route keeps no sessions.
    pub fn key_for(
        &self,
        route: &str,
        client: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<Option<SessionKey>, MissingKeyHeader> {
        let Some(route) = self.inner.routes.get(route) else {
            return Ok(None);
        };
        SessionKey::derive(&route.plan, client, headers, &route.hasher).map(Some)
    }

    /// A lease on the session `key` of `route`, waiting as the session's rules require.
    /// Dropping the lease releases it.
    pub async fn lease(&self, route: &str, key: SessionKey) -> Result<Lease, LeaseError> {
        let route = self
            .inner
            .routes
            .get(route)
            .ok_or_else(|| LeaseError::NoSessions(route.to_owned()))?
            .clone();
        loop {
            let active = self.checkout(&route, &key, Instant::now())?;
            let acquired = if route.plan.serialize {
                acquire_serialized(&active.0, &*self.inner.clock).await
            } else {
                acquire_shared_or_establish(&route.plan, &active.0, &*self.inner.clock).await
            };
            if let Some((guard, generation)) = acquired {
                return Ok(Lease {
                    inner: self.inner.clone(),
                    route,
                    active,
                    guard,
                    generation,
                    sent_cookie: AtomicBool::new(false),
                    opened: AtomicBool::new(false),
                    changed: AtomicBool::new(false),
                    hold: None,
                });
            }
        }
    }

    /// The session for `key`, counted as active; a new one when there is none or the old one
    /// sat idle past its timeout (the lazy half of idle expiry). A new session beyond the
    /// route's `max_sessions` makes room by dropping the least recently used idle one, or is
    /// refused when every session is in use.
    fn checkout(
        &self,
        route: &RouteSessions,
        key: &SessionKey,
        now: Instant,
    ) -> Result<Active, LeaseError> {
        let timeout = route.plan.idle_timeout;
        // The map shard stays locked while `active` is raised, so a sweep cannot remove the
        // session between the idle check and the increment.
        if let Some(session) = route.map.get(key) {
            if !session.is_idle(now, timeout) {
                session.active.fetch_add(1, Ordering::AcqRel);
                return Ok(Active(session.clone()));
            }
        }
        let fresh = || {
            Arc::new(Session::new(
                key.clone(),
                Jar::new(),
                SystemTime::now(),
                (now, SystemTime::now()),
            ))
        };
        let (session, added) = match route.map.entry(key.clone()) {
            Entry::Occupied(mut entry) => {
                if entry.get().is_idle(now, timeout) {
                    self.retire(route, entry.get());
                    entry.insert(fresh());
                }
                entry.get().active.fetch_add(1, Ordering::AcqRel);
                (entry.get().clone(), false)
            }
            Entry::Vacant(entry) => {
                let session = entry.insert(fresh());
                session.active.fetch_add(1, Ordering::AcqRel);
                (session.clone(), true)
            }
        };
        // No map shard is locked any more: evicting may lock any of them.
        let active = Active(session);
        if added {
            // One eviction at a time per route: two checkouts that both saw the map one over
            // its bound would otherwise both evict, leaving it one under.
            let mut candidates = lock(&route.candidates);
            while route.map.len() > route.plan.max_sessions {
                if !self.evict_one(route, &mut candidates) {
                    if route
                        .map
                        .remove_if(key, |_, held| Arc::ptr_eq(held, &active.0))
                        .is_some()
                    {
                        active.0.removed.store(true, Ordering::Release);
                    }
                    return Err(LeaseError::Full {
                        route: route.name.clone(),
                        max: route.plan.max_sessions,
                    });
                }
            }
        }
        Ok(active)
    }

    /// Drops the least recently used idle session of `route` (whose `candidates` the caller
    /// holds locked); false when none is idle.
    fn evict_one(&self, route: &RouteSessions, candidates: &mut Vec<Candidate>) -> bool {
        // A candidate used since the scan is skipped; only a scan that finds no idle session
        // means every session is busy.
        loop {
            let Some(candidate) = candidates.pop() else {
                if !self.scan_candidates(route, candidates) {
                    return false;
                }
                continue;
            };
            let removed = route.map.remove_if(&candidate.key, |_, session| {
                std::ptr::eq(Arc::as_ptr(session), candidate.session.as_ptr())
                    && session.active.load(Ordering::Acquire) == 0
                    && session.state().last_used == candidate.last_used
            });
            if let Some((_, session)) = removed {
                session.removed.store(true, Ordering::Release);
                route.evicted.fetch_add(1, Ordering::Relaxed);
                if session.state().holds_anything(self.inner.clock.wall()) {
                    self.inner.mark_dirty(route);
                }
                return true;
            }
        }
    }

    /// Refills the route's candidates with its oldest idle sessions; false when none is idle.
    fn scan_candidates(&self, route: &RouteSessions, candidates: &mut Vec<Candidate>) -> bool {
        let mut idle: Vec<Candidate> = route
            .map
            .iter()
            .filter(|entry| entry.value().active.load(Ordering::Acquire) == 0)
            .map(|entry| Candidate {
                key: entry.key().clone(),
                last_used: entry.value().state().last_used,
                session: Arc::downgrade(entry.value()),
            })
            .collect();
        let keep = (route.plan.max_sessions / CANDIDATES_PER_SCAN_DIVISOR).max(1);
        if idle.len() > keep {
            idle.select_nth_unstable_by_key(keep - 1, |candidate| candidate.last_used);
            idle.truncate(keep);
        }
        // Newest first, so that `pop` yields the oldest.
        idle.sort_unstable_by_key(|candidate| std::cmp::Reverse(candidate.last_used));
        let found = !idle.is_empty();
        *candidates = idle;
        found
    }

    /// Marks a session that left the map as gone, and its state file as due for a rewrite.
    fn retire(&self, route: &RouteSessions, session: &Session) {
        session.removed.store(true, Ordering::Release);
        self.inner.expired.fetch_add(1, Ordering::Relaxed);
        if session.state().holds_anything(self.inner.clock.wall()) {
            self.inner.mark_dirty(route);
        }
    }

    /// Drops every session unused for its route's `idle_timeout` as of `now`; returns how many.
    fn sweep_at(&self, now: Instant) -> usize {
        let mut dropped = 0;
        for route in self.inner.routes.values() {
            route.map.retain(|_, session| {
                if session.is_idle(now, route.plan.idle_timeout) {
                    self.retire(route, session);
                    dropped += 1;
                    false
                } else {
                    true
                }
            });
        }
        dropped
    }

    /// Brings the session `key` of `route` up to its shared copy before it is leased (see
    /// [`Lease::adopt`]); a session the store has and this process does not is added. True
    /// when the store has no copy while this process holds a jar: the lease should publish it.
    ///
    /// `read_as` is [`Sessions::synced_rev`] taken before the copy was read.
    pub(crate) fn adopt_shared(
        &self,
        route: &str,
        key: &SessionKey,
        read_as: u64,
        remote: Option<(u64, &[u8])>,
    ) -> bool {
        let Some(route) = self.inner.routes.get(route) else {
            return false;
        };
        let session = match (route.map.get(key), remote) {
            (Some(session), _) => session.clone(),
            (None, None) => return false,
            (None, Some(_)) => {
                let now = SystemTime::now();
                route
                    .map
                    .entry(key.clone())
                    .or_insert_with(|| {
                        Arc::new(Session::new(
                            key.clone(),
                            Jar::new(),
                            now,
                            (Instant::now(), now),
                        ))
                    })
                    .clone()
            }
        };
        let mut state = session.state();
        adopt_shared(&self.inner, route, key, &mut state, read_as, remote)
    }

    /// The shared copy's revision that the session `key` of `route` was last synced with (0:
    /// none, or no such session here): taken before reading the copy, for `adopt_shared`.
    pub(crate) fn synced_rev(&self, route: &str, key: &SessionKey) -> u64 {
        self.inner
            .routes
            .get(route)
            .and_then(|route| route.map.get(key).map(|session| session.state().synced_rev))
            .unwrap_or(0)
    }

    /// Whether `route` holds every lease alone (`serialize = true`).
    pub(crate) fn serializes(&self, route: &str) -> bool {
        self.inner
            .routes
            .get(route)
            .is_some_and(|r| r.plan.serialize)
    }

    /// `route`'s idle timeout: how long a shared session lives unused.
    pub(crate) fn idle_timeout(&self, route: &str) -> Duration {
        self.inner
            .routes
            .get(route)
            .map_or(Duration::from_secs(60), |r| r.plan.idle_timeout)
    }

    /// Shared documents that could not be opened (wrong key, altered), since the start.
    pub fn unreadable_shared(&self) -> u64 {
        self.inner.unreadable.load(Ordering::Relaxed)
    }

    /// Every tracked session, for `/sessions`: cookie names, never values.
    pub fn list(&self) -> Vec<SessionInfo> {
        let mut out = Vec::new();
        for route in self.inner.routes.values() {
            for entry in route.map.iter() {
                let session = entry.value();
                let state = session.state();
                out.push(SessionInfo {
                    route: route.name.clone(),
                    key: session.key.to_string(),
                    cookies: state.jar.names(self.inner.clock.wall()),
                    tokens: state.tokens.names(),
                    created: session.created,
                    last_used: state.last_used_wall,
                    expires_at: state.last_used_wall.checked_add(route.plan.idle_timeout),
                    generation: state.generation,
                    in_use: session.active.load(Ordering::Acquire),
                });
            }
        }
        out.sort_by(|a, b| (&a.route, &a.key).cmp(&(&b.route, &b.key)));
        out
    }

    /// Forgets a session (the admin's "log out"); requests in flight on it finish with its old
    /// jar, later ones start a new session. True when it existed.
    pub fn remove(&self, route: &str, key: &str) -> bool {
        let Some(route) = self.inner.routes.get(route) else {
            return false;
        };
        match route.map.remove(&SessionKey::from_display(key)) {
            Some((_, session)) => {
                session.removed.store(true, Ordering::Release);
                self.inner.mark_dirty(route);
                true
            }
            None => false,
        }
    }

    pub fn stats(&self) -> SessionStats {
        let live = self.inner.routes.values().map(|r| r.map.len() as u64).sum();
        SessionStats {
            live,
            opened: self.inner.opened.load(Ordering::Relaxed),
            relogins: self.inner.relogins.load(Ordering::Relaxed),
            expired: self.inner.expired.load(Ordering::Relaxed),
            persist_failures: self.inner.persist_failures.load(Ordering::Relaxed),
            persist_writes: *self.inner.writes.borrow(),
            evicted: {
                let mut evicted: Vec<(String, u64)> = self
                    .inner
                    .routes
                    .values()
                    .map(|route| (route.name.clone(), route.evicted.load(Ordering::Relaxed)))
                    .collect();
                evicted.sort();
                evicted
            },
        }
    }

    /// The background work: writes changed state files shortly after each change, and sweeps
    /// idle sessions. Runs until aborted; call [`Sessions::persist_now`] after aborting it.
    pub fn spawn_background(&self) -> JoinHandle<()> {
        let sessions = self.clone();
        let shortest_idle = self
            .inner
            .routes
            .values()
            .map(|r| r.plan.idle_timeout)
            .min()
            .unwrap_or(Duration::from_secs(60));
        let sweep_every =
            (shortest_idle / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
        tokio::spawn(async move {
            let mut sweep = tokio::time::interval(sweep_every);
            sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut last_write: Option<tokio::time::Instant> = None;
            loop {
                tokio::select! {
                    _ = sessions.inner.changed.notified() => {
                        tokio::time::sleep_until(next_write_at(
                            tokio::time::Instant::now(),
                            last_write,
                        ))
                        .await;
                        // Failures are logged and counted inside; the next change retries.
                        let _ = sessions.write_files(true).await;
                        last_write = Some(tokio::time::Instant::now());
                    }
                    _ = sweep.tick() => {
                        sessions.sweep_at(Instant::now());
                    }
                }
            }
        })
    }

    /// Writes every state file now (at shutdown). Failures are also logged and counted.
    pub async fn persist_now(&self) -> Result<(), SessionError> {
        self.write_files(false).await
    }

    async fn write_files(&self, only_dirty: bool) -> Result<(), SessionError> {
        let mut first_error = None;
        for (index, file) in self.inner.files.iter().enumerate() {
            let _order = file.write.lock().await;
            if !file.dirty.swap(false, Ordering::AcqRel) && only_dirty {
                continue;
            }
            let doc = self.snapshot(index);
            let path = file.path.clone();
            let cipher = self.inner.cipher.clone();
            let written = tokio::task::spawn_blocking(move || {
                persist::write_state(&path, doc, cipher.as_ref())
            })
            .await
            .unwrap_or_else(|join| Err(std::io::Error::other(join.to_string())));
            if written.is_ok() {
                self.inner.writes.send_modify(|n| *n += 1);
            }
            if let Err(source) = written {
                // Still dirty: the next write, whatever triggers it, tries again.
                file.dirty.store(true, Ordering::Release);
                self.inner.persist_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    path = %file.path.display(),
                    error = %source,
                    "cannot write session state; sessions stay in memory"
                );
                first_error.get_or_insert(SessionError::Write {
                    path: file.path.clone(),
                    source,
                });
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn snapshot(&self, file: usize) -> StateDoc {
        let mut sessions = Vec::new();
        let now = self.inner.clock.wall();
        for route in self.inner.routes.values().filter(|r| r.file == Some(file)) {
            for entry in route.map.iter() {
                let session = entry.value();
                let state = session.state();
                if !state.holds_anything(now) {
                    continue;
                }
                sessions.push(persisted(&route.name, session, &state, now));
            }
        }
        StateDoc::new(sessions)
    }
}

/// A session as the state file and the shared store keep it (sealed later, by `persist`).
fn persisted(
    route: &str,
    session: &Session,
    state: &State,
    now: SystemTime,
) -> PersistedSession<StoredCookie> {
    PersistedSession {
        route: route.to_owned(),
        key: session.key.to_string(),
        created_ms: persist::to_unix_ms(session.created),
        last_used_ms: persist::to_unix_ms(state.last_used_wall),
        generation: state.generation,
        cookies: state.jar.to_stored(now),
        tokens: state
            .tokens
            .iter()
            .map(|(name, value)| StoredToken {
                name: name.to_owned(),
                value: value.to_owned(),
            })
            .collect(),
    }
}

impl Inner {
    fn mark_dirty(&self, route: &RouteSessions) {
        if let Some(file) = route.file {
            self.files[file].dirty.store(true, Ordering::Release);
            self.changed.notify_one();
        }
    }
}

/// When the writer may write after a change at `now`: shortly after it (so that a burst of
/// changes costs one write), and never sooner than [`MIN_WRITE_INTERVAL`] after the last write.
fn next_write_at(
    now: tokio::time::Instant,
    last_write: Option<tokio::time::Instant>,
) -> tokio::time::Instant {
    let soonest = now + PERSIST_DEBOUNCE;
    match last_write {
        Some(last) => soonest.max(last + MIN_WRITE_INTERVAL),
        None => soonest,
    }
}

/// Replaces `state`'s jar with the shared copy `remote` (revision and document) when it is
/// another revision than the one the jar was synced with; an empty document is a session an
/// operator deleted, dropped here too. A copy that cannot be opened is counted, logged and
/// treated as absent (a new session is opened), never turned into cookies.
///
/// No copy at all (a Redis that restarted empty, or a jar that was only ever local) keeps the
/// jar and returns true: it is published again rather than dropped, because a session-locked
/// target still holds that session open and would refuse a new login. (A session idle past its
/// timeout in Redis is idle here too, and goes by the local idle expiry.)
///
/// `read_as` is the revision the jar was synced with when the copy was read. If the jar has
/// been synced since (this process wrote it, or adopted a copy read later) with a revision at
/// least as new as the copy's, the copy is stale and is ignored: taking it would roll the
/// session back, and a session token fetched meanwhile would be lost and the refused one sent
/// again. (Revisions only grow while the shared copy exists; when the jar has not moved since
/// the read, any other revision is taken, as one that restarted after the copy expired.)
fn adopt_shared(
    inner: &Inner,
    route: &RouteSessions,
    key: &SessionKey,
    state: &mut State,
    read_as: u64,
    remote: Option<(u64, &[u8])>,
) -> bool {
    let moved = state.synced_rev != read_as;
    if moved && remote.is_none_or(|(rev, _)| rev <= state.synced_rev) {
        return false;
    }
    let Some((rev, bytes)) = remote else {
        state.synced_rev = 0;
        return state.holds_anything(inner.clock.wall());
    };
    if rev == state.synced_rev {
        return false;
    }
    if bytes.is_empty() {
        state.jar.clear();
        state.tokens.clear();
        state.generation += 1;
        state.synced_rev = rev;
        return false;
    }
    let now = inner.clock.wall();
    let opened =
        persist::decode(bytes, inner.cipher.as_ref(), inner.previous.as_ref()).and_then(|doc| {
            doc.sessions
                .into_iter()
                .next()
                .filter(|saved| saved.route == route.name && saved.key == key.to_string())
                .ok_or_else(|| DecodeError::Corrupt("it is not this session's document".into()))
        });
    match opened {
        Ok(saved) => {
            state.jar = Jar::from_stored(saved.cookies, now);
            state.tokens = saved
                .tokens
                .into_iter()
                .map(|token| (token.name, token.value))
                .collect();
            state.generation = saved.generation.max(state.generation + 1);
        }
        Err(error) => {
            inner.unreadable.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                route = %route.name,
                key = %key,
                %error,
                "cannot open the shared session document; opening a new session instead"
            );
            state.jar.clear();
            state.tokens.clear();
            state.generation += 1;
        }
    }
    state.synced_rev = rev;
    false
}

/// Never held across an await; what it guards stays consistent whatever a panicking holder
/// did, so poisoning is ignored.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Puts the sessions of one state file back, skipping those of routes no longer configured
/// (or moved to another file), those idle past their timeout, and those whose cookies expired.
fn restore(routes: &ByName, file: usize, mut doc: StateDoc, now_wall: SystemTime) {
    let now = Instant::now();
    // Most recently used first, so that a route over its (lowered) `max_sessions` keeps those.
    doc.sessions
        .sort_by_key(|saved| std::cmp::Reverse(saved.last_used_ms));
    for saved in doc.sessions {
        let Some(route) = routes.get(&saved.route).filter(|r| r.file == Some(file)) else {
            continue;
        };
        if route.map.len() >= route.plan.max_sessions {
            route.evicted.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let last_used_wall = persist::from_unix_ms(saved.last_used_ms);
        let idle = now_wall.duration_since(last_used_wall).unwrap_or_default();
        if idle >= route.plan.idle_timeout {
            continue;
        }
        let jar = Jar::from_stored(saved.cookies, now_wall);
        if jar.is_empty(now_wall) && saved.tokens.is_empty() {
            continue;
        }
        let key = SessionKey::from_display(&saved.key);
        let session = Session::new(
            key.clone(),
            jar,
            persist::from_unix_ms(saved.created_ms),
            (now.checked_sub(idle).unwrap_or(now), last_used_wall),
        );
        {
            let mut state = session.state();
            state.generation = saved.generation;
            state.tokens = saved
                .tokens
                .into_iter()
                .map(|token| (token.name, token.value))
                .collect();
        }
        route.map.insert(key, Arc::new(session));
    }
}

enum Guard {
    Shared {
        _read: OwnedRwLockReadGuard<()>,
    },
    Exclusive {
        _write: OwnedRwLockWriteGuard<()>,
        _elect: Option<OwnedMutexGuard<()>>,
    },
    /// Between giving up one guard and getting the next inside `begin_relogin`.
    Released,
}

/// `serialize = true`: always alone.
async fn acquire_serialized(session: &Arc<Session>, clock: &dyn Clock) -> Option<(Guard, u64)> {
    let write = session.gate.clone().write_owned().await;
    if session.removed.load(Ordering::Acquire) {
        return None;
    }
    let generation = begin_exclusive(session, clock.wall());
    Some((
        Guard::Exclusive {
            _write: write,
            _elect: None,
        },
        generation,
    ))
}

/// Under the session's read lock: `Break(None)` when the session was removed, `Break(Some)`
/// with a shared guard when it is established, `Continue` (lock released) when it is not yet.
async fn shared_if_established(
    plan: &SessionPlan,
    session: &Arc<Session>,
    clock: &dyn Clock,
) -> ControlFlow<Option<(Guard, u64)>> {
    let read = session.gate.clone().read_owned().await;
    if session.removed.load(Ordering::Acquire) {
        return ControlFlow::Break(None);
    }
    // One look at the state for both questions: this runs for every request on the route.
    if let Some(generation) = session.established_generation(plan, clock.wall()) {
        return ControlFlow::Break(Some((Guard::Shared { _read: read }, generation)));
    }
    ControlFlow::Continue(())
}

/// Shared when the session is established; otherwise the first caller goes alone and the others
/// wait for it, then go shared with its cookie (or the next goes alone if it got none).
/// `None` when the session was removed meanwhile and the caller must start over.
async fn acquire_shared_or_establish(
    plan: &SessionPlan,
    session: &Arc<Session>,
    clock: &dyn Clock,
) -> Option<(Guard, u64)> {
    if let ControlFlow::Break(found) = shared_if_established(plan, session, clock).await {
        return found;
    }
    let elect = session.elect.clone().lock_owned().await;
    if let ControlFlow::Break(found) = shared_if_established(plan, session, clock).await {
        return found;
    }
    let write = session.gate.clone().write_owned().await;
    if session.removed.load(Ordering::Acquire) {
        return None;
    }
    if session.established(plan, clock.wall()) {
        let generation = session.state().generation;
        return Some((
            Guard::Shared {
                _read: write.downgrade(),
            },
            generation,
        ));
    }
    let generation = begin_exclusive(session, clock.wall());
    Some((
        Guard::Exclusive {
            _write: write,
            _elect: Some(elect),
        },
        generation,
    ))
}

/// An exclusive holder that finds no cookie is about to open a new upstream session.
fn begin_exclusive(session: &Session, now: SystemTime) -> u64 {
    let mut state = session.state();
    if state.jar.is_empty(now) {
        state.generation += 1;
    }
    state.generation
}

/// The outcome of [`Lease::begin_relogin`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relogin {
    /// This lease dropped the jar and is now alone on the session: log in (or replay without a
    /// cookie), absorb the new cookie, then drop the lease.
    Leader,
    /// Another request renewed the session meanwhile: replay with the current cookie.
    AlreadyRenewed,
}

/// The outcome of [`Lease::begin_token_fetch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenTurn {
    /// This lease is alone on the session and the token is still missing: fetch it.
    Leader,
    /// Another request fetched it meanwhile: use the session's value.
    AlreadyFetched,
}

/// The right to use one session for one exchange (and its replay).
pub struct Lease {
    inner: Arc<Inner>,
    route: Arc<RouteSessions>,
    active: Active,
    guard: Guard,
    generation: u64,
    sent_cookie: AtomicBool,
    opened: AtomicBool,
    /// The jar changed under this lease since it was last written to the shared store.
    changed: AtomicBool,
    /// The shared backend's hold on the session across replicas (its fleet lease), released
    /// when dropped.
    hold: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl Lease {
    pub fn key(&self) -> &SessionKey {
        &self.active.0.key
    }

    /// True when this lease is alone on the session (establishing, re-login or `serialize`).
    pub fn is_exclusive(&self) -> bool {
        matches!(self.guard, Guard::Exclusive { .. })
    }

    /// The session generation this lease works with.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The `Cookie` header for the upstream request `path` (as [`http::Uri::path`] gives it,
    /// without the query) and the names in it. The host is always the route's logical upstream
    /// URL.
    pub fn cookie_header(&self, path: &str) -> Option<(HeaderValue, Arc<[String]>)> {
        if !self.route.plan.cookies {
            return None;
        }
        let header =
            self.active
                .0
                .state()
                .jar
                .cookie_header(&self.route.url, path, self.inner.clock.wall());
        self.sent_cookie.store(header.is_some(), Ordering::Relaxed);
        header
    }

    /// Stores the `Set-Cookie`s of a response to `path` (every response: targets rotate
    /// session ids) and returns the names stored or deleted.
    pub fn absorb(&self, path: &str, headers: &HeaderMap) -> Vec<String> {
        if !self.route.plan.cookies || !headers.contains_key(SET_COOKIE) {
            return Vec::new();
        }
        let url = self.url_for(path);
        let session = &self.active.0;
        let now = self.inner.clock.wall();
        let (names, opened) = {
            let mut state = session.state();
            let was_empty = state.jar.is_empty(now);
            let names = state.jar.absorb(&url, headers, now);
            (names, was_empty && !state.jar.is_empty(now))
        };
        if opened {
            self.opened.store(true, Ordering::Relaxed);
            self.inner.opened.fetch_add(1, Ordering::Relaxed);
        }
        if !names.is_empty() {
            self.changed.store(true, Ordering::Release);
            self.inner.mark_dirty(&self.route);
        }
        names
    }

    /// Whether the last `cookie_header` call produced a header: only then can a 401 mean the
    /// session is gone.
    pub fn sent_cookie(&self) -> bool {
        self.sent_cookie.load(Ordering::Relaxed)
    }

    /// Whether a response absorbed under this lease opened the session.
    pub fn opened_session(&self) -> bool {
        self.opened.load(Ordering::Relaxed)
    }

    /// Single-flight re-login after the target dropped the session. See [`Relogin`].
    pub async fn begin_relogin(&mut self) -> Relogin {
        let session = self.active.0.clone();
        if !matches!(self.guard, Guard::Exclusive { .. }) {
            self.guard = Guard::Released;
            let elect = session.elect.clone().lock_owned().await;
            let read = session.gate.clone().read_owned().await;
            let current = session.state().generation;
            let now = self.inner.clock.wall();
            if current != self.generation && session.established(&self.route.plan, now) {
                self.generation = current;
                self.guard = Guard::Shared { _read: read };
                return Relogin::AlreadyRenewed;
            }
            drop(read);
            let write = session.gate.clone().write_owned().await;
            self.guard = Guard::Exclusive {
                _write: write,
                _elect: Some(elect),
            };
            if current != self.generation {
                // Renewed, but the leader got no cookie: this replay goes alone, like a first call.
                self.generation = begin_exclusive(&session, self.inner.clock.wall());
                return Relogin::AlreadyRenewed;
            }
        }
        // Alone on the session now, and nobody renewed it since this lease looked: lead.
        let mut state = session.state();
        state.jar.clear();
        // Tokens belong to the session the target ended.
        state.tokens.clear();
        state.generation += 1;
        self.generation = state.generation;
        drop(state);
        self.sent_cookie.store(false, Ordering::Relaxed);
        self.changed.store(true, Ordering::Release);
        self.inner.relogins.fetch_add(1, Ordering::Relaxed);
        self.inner.mark_dirty(&self.route);
        Relogin::Leader
    }

    /// The route this lease is on.
    pub(crate) fn route_name(&self) -> &str {
        &self.route.name
    }

    /// The route's session rules.
    pub(crate) fn plan(&self) -> &SessionPlan {
        &self.route.plan
    }

    /// Whether the session holds a cookie (or the route keeps none): usable as it is.
    pub(crate) fn established(&self) -> bool {
        self.active
            .0
            .established(&self.route.plan, self.inner.clock.wall())
    }

    /// True once, after the jar changed under this lease (a cookie stored or deleted, a
    /// re-login): the shared backend then writes it back.
    pub(crate) fn take_changed(&self) -> bool {
        self.changed.swap(false, Ordering::AcqRel)
    }

    /// The session as the shared store keeps it (cookie values sealed under the state key), and
    /// the revision of the shared copy it was last read as.
    pub(crate) fn export(&self) -> std::io::Result<(Vec<u8>, u64)> {
        let now = self.inner.clock.wall();
        let session = &self.active.0;
        let (saved, rev) = {
            let state = session.state();
            (
                persisted(&self.route.name, session, &state, now),
                state.synced_rev,
            )
        };
        let bytes = persist::encode(
            StateDoc::new(vec![saved]),
            self.inner.cipher.as_ref(),
            false,
        )?;
        Ok((bytes, rev))
    }

    /// The jar still has to be written to the shared store (the last write failed).
    pub(crate) fn mark_changed(&self) {
        self.changed.store(true, Ordering::Release);
    }

    /// The revision of the shared copy the jar was last read as or written as.
    pub(crate) fn synced_rev(&self) -> u64 {
        self.active.0.state().synced_rev
    }

    /// The shared copy now has revision `rev`: this lease wrote it.
    pub(crate) fn synced(&self, rev: u64) {
        self.active.0.state().synced_rev = rev;
    }

    /// Takes the shared copy of the session (revision and document; `None`: the store has
    /// none) in place of the jar when it is newer, and works with its generation from now on.
    /// `read_as` is [`Lease::synced_rev`] taken before the copy was read.
    pub(crate) fn adopt(&mut self, read_as: u64, remote: Option<(u64, &[u8])>) {
        let mut state = self.active.0.state();
        if adopt_shared(
            &self.inner,
            &self.route,
            &self.active.0.key,
            &mut state,
            read_as,
            remote,
        ) {
            self.changed.store(true, Ordering::Release);
        }
        self.generation = state.generation;
    }

    /// Keeps the shared backend's hold on the session until this lease is dropped.
    pub(crate) fn hold(&mut self, hold: Box<dyn std::any::Any + Send + Sync>) {
        self.hold = Some(hold);
    }

    /// Gives up the shared backend's hold (released by the caller).
    pub(crate) fn take_hold(&mut self) -> Option<Box<dyn std::any::Any + Send + Sync>> {
        self.hold.take()
    }

    /// The value of the session token `name`, if the session holds it.
    pub fn token(&self, name: &str) -> Option<String> {
        self.active.0.state().tokens.get(name).map(str::to_owned)
    }

    /// Stores a captured (or rotated) token; true when the value changed.
    pub fn store_token(&self, name: &str, value: String) -> bool {
        let changed = self.active.0.state().tokens.store(name, value);
        if changed {
            self.changed.store(true, Ordering::Release);
            self.inner.mark_dirty(&self.route);
        }
        changed
    }

    /// The target refused the token value `sent`: drops it unless a newer one replaced it
    /// meanwhile. True when it was dropped.
    pub fn drop_token(&self, name: &str, sent: &str) -> bool {
        let dropped = self.active.0.state().tokens.drop_if(name, sent);
        if dropped {
            self.changed.store(true, Ordering::Release);
            self.inner.mark_dirty(&self.route);
        }
        dropped
    }

    /// Single-flight fetch of the token `name`, which the session lacks: the first caller gets
    /// the session alone (the same exclusive path as establishing and re-login, so a fetch and
    /// a re-login never run at once) and fetches; the others wait for it and use its token.
    pub async fn begin_token_fetch(&mut self, name: &str) -> TokenTurn {
        let session = self.active.0.clone();
        if !matches!(self.guard, Guard::Exclusive { .. }) {
            self.guard = Guard::Released;
            let elect = session.elect.clone().lock_owned().await;
            let read = session.gate.clone().read_owned().await;
            if session.state().tokens.get(name).is_some() {
                self.generation = session.state().generation;
                self.guard = Guard::Shared { _read: read };
                return TokenTurn::AlreadyFetched;
            }
            drop(read);
            let write = session.gate.clone().write_owned().await;
            self.generation = session.state().generation;
            self.guard = Guard::Exclusive {
                _write: write,
                _elect: Some(elect),
            };
        }
        let fetched = session.state().tokens.get(name).is_some();
        if fetched {
            TokenTurn::AlreadyFetched
        } else {
            TokenTurn::Leader
        }
    }

    fn url_for(&self, path: &str) -> Url {
        let mut url = self.route.url.clone();
        url.set_path(path.split('?').next().unwrap_or(path));
        url.set_query(None);
        url
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
