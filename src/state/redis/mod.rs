//! The shared backend: sessions, leases and OAuth tokens in Redis, so that several replicas
//! behave towards a target like one proxy.
//!
//! Each process keeps its in-process [`Sessions`] as the local single flight and cache, and
//! syncs with Redis at the lease's edges:
//! - at the lease, one script reads the session document and touches it (1 round trip); the
//!   local jar takes it when its revision changed;
//! - when the jar changed (a cookie stored, a re-login), one script writes it back with a
//!   revision compare-and-set, so a stale replica never overwrites a newer jar (Redis wins);
//! - establishing, re-login and `serialize` also hold the fleet lease, taken together with a
//!   read of the jar and released together with its write: a replica that waited reads the jar
//!   another established instead of logging in again.
//!
//! So an established session costs one round trip per request, two when the target rotates
//! its cookie, and `serialize` two (take + read, write or release).
//!
//! Tokens are shared the same way: a replica uses its cached token until it is due; then it
//! reads Redis, and only the holder of the route's token lease fetches. A refused token is
//! dropped in Redis only while it is still the refused one (compared by a random id).

mod client;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;

use crate::auth::oauth::{Token, TokenSource};
use crate::config::{OnUnavailable, StatePlan};
use crate::session::{Lease, Relogin, SessionKey, Sessions, StateCipher, TokenTurn};

use super::{LeaseFailure, TokenFailure, Unavailable};

pub use client::{Fleet, FleetError, FleetStats};
use client::{FleetHold, SharedToken};

/// How long a request waits for another replica's fleet lease (its login) before it gives up
/// with `state_unavailable`. A holder that died frees it after the lease TTL (5 s).
const FLEET_PATIENCE: Duration = Duration::from_secs(60);

/// The Redis side of a process: its connection and the key that seals tokens. Cheap to clone;
/// built once at the start (changing `[state]` needs a restart).
#[derive(Clone)]
pub struct RedisShared {
    fleet: Fleet,
    cipher: StateCipher,
    previous: Option<StateCipher>,
    /// Per route: the local generation of the token adopted or fetched, and its id in Redis.
    tokens: Arc<DashMap<String, (u64, String)>>,
}

impl RedisShared {
    /// `None` for the file backend.
    pub fn from_plan(state: &StatePlan) -> Result<Option<RedisShared>, FleetError> {
        let (Some(redis), Some(key)) = (&state.redis, &state.encryption_key) else {
            return Ok(None);
        };
        Ok(Some(RedisShared {
            fleet: Fleet::new(redis)?,
            cipher: StateCipher::new(key.clone()),
            previous: state.encryption_key_previous.clone().map(StateCipher::new),
            tokens: Arc::new(DashMap::new()),
        }))
    }

    pub fn fleet(&self) -> &Fleet {
        &self.fleet
    }
}

/// The backend over one plan's [`Sessions`].
#[derive(Clone)]
pub struct RedisState {
    sessions: Sessions,
    shared: RedisShared,
    /// The last fallback was logged (`on_unavailable = "local"`): once per outage.
    falling_back: Arc<Mutex<bool>>,
}

impl RedisState {
    pub fn new(sessions: Sessions, shared: RedisShared) -> RedisState {
        RedisState {
            sessions,
            shared,
            falling_back: Arc::new(Mutex::new(false)),
        }
    }

    fn fleet(&self) -> &Fleet {
        &self.shared.fleet
    }

    /// Redis failed `down`: `fail` says so; `local` serves from this process, counted.
    fn unavailable(&self, down: Unavailable) -> Result<(), Unavailable> {
        match self.fleet().mode() {
            OnUnavailable::Fail => Err(down),
            OnUnavailable::Local => {
                self.fleet().count_fallback();
                let mut logged = self
                    .falling_back
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if !*logged {
                    *logged = true;
                    tracing::warn!(
                        failed = down.what,
                        "Redis is unavailable; serving from this replica's own state until it is back"
                    );
                }
                Ok(())
            }
        }
    }

    fn recovered(&self) {
        let mut logged = self
            .falling_back
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if *logged {
            *logged = false;
            tracing::info!("Redis is back; sessions and tokens are shared again");
        }
    }

    pub async fn lease(&self, route: &str, key: SessionKey) -> Result<Lease, LeaseFailure> {
        let session_key = self.fleet().session_key("session", route, &key.to_string());
        loop {
            let mut publish = false;
            let serialized = self.sessions.serializes(route);
            if !serialized {
                let ttl = self.sessions.idle_timeout(route);
                let read_as = self.sessions.synced_rev(route, &key);
                match self.fleet().read_session(&session_key, ttl, now_ms()).await {
                    Ok(remote) => {
                        self.recovered();
                        let remote = remote.as_ref().map(|(rev, doc)| (*rev, doc.as_slice()));
                        publish = self.sessions.adopt_shared(route, &key, read_as, remote);
                    }
                    Err(down) => {
                        self.unavailable(down)?;
                        return Ok(self.sessions.lease(route, key).await?);
                    }
                }
            }
            let mut lease = self.sessions.lease(route, key.clone()).await?;
            if !lease.is_exclusive() {
                if publish {
                    // Written back at the first response (see `commit`).
                    lease.mark_changed();
                }
                return Ok(lease);
            }
            // Alone in this process on a session to establish (or `serialize`): alone in the
            // fleet too, reading the jar in the same trip.
            let lease_key = self.fleet().session_key("lease", route, &key.to_string());
            let read_as = lease.synced_rev();
            let acquired = match self
                .fleet()
                .acquire(&lease_key, &session_key, false, FLEET_PATIENCE)
                .await
            {
                Ok(acquired) => acquired,
                Err(down) => {
                    self.unavailable(down)?;
                    return Ok(lease);
                }
            };
            lease.adopt(read_as, remote_session(&acquired.value));
            if !serialized && acquired.waited && lease.established() {
                // Another replica established it while this one waited: use it, shared.
                drop(acquired.hold);
                drop(lease);
                continue;
            }
            lease.hold(Box::new(acquired.hold));
            return Ok(lease);
        }
    }

    /// Writes the jar back when it changed under `lease` (and releases the fleet lease with
    /// it once the session is established). A failure leaves the jar to this process: the
    /// response is already there, and the next lease re-reads Redis anyway.
    pub async fn commit(&self, lease: &mut Lease) {
        if !lease.take_changed() {
            return;
        }
        let (doc, expected) = match lease.export() {
            Ok(exported) => exported,
            Err(error) => {
                tracing::error!(%error, "cannot seal a session for Redis");
                return;
            }
        };
        let (route, key) = (lease.route_name().to_owned(), lease.key().to_string());
        let session_key = self.fleet().session_key("session", &route, &key);
        let lease_key = self.fleet().session_key("lease", &route, &key);
        let hold = if lease.established() {
            lease
                .take_hold()
                .and_then(|hold| hold.downcast::<FleetHold>().ok())
        } else {
            None
        };
        let ttl = lease.plan().idle_timeout;
        let written = self
            .fleet()
            .write_session(
                (&session_key, &lease_key),
                expected,
                &doc,
                ttl,
                hold.as_ref().map(|hold| hold.token()),
                now_ms(),
            )
            .await;
        match written {
            Ok(Ok(rev)) => {
                lease.synced(rev);
                if let Some(hold) = hold {
                    hold.mark_released();
                }
            }
            Ok(Err(newer)) => {
                tracing::info!(
                    route,
                    "another replica wrote this session first; using its jar"
                );
                lease.adopt(
                    expected,
                    newer.as_ref().map(|(rev, doc)| (*rev, doc.as_slice())),
                );
            }
            Err(_) => {
                // Logged and counted by the client; written again at the next change.
                lease.mark_changed();
            }
        }
    }

    /// Single-flight re-login across the fleet: the local leader takes the fleet lease too,
    /// and a replica that finds the jar renewed by another replica replays with it.
    pub async fn begin_relogin(&self, lease: &mut Lease) -> Relogin {
        let held = lease.take_hold();
        let outcome = lease.begin_relogin().await;
        if let Some(held) = held {
            // Already alone in the fleet (serialize, establishing).
            lease.hold(held);
            return outcome;
        }
        if outcome != Relogin::Leader {
            return outcome;
        }
        if self.fleet_turn(lease, |lease| lease.established()).await {
            Relogin::AlreadyRenewed
        } else {
            Relogin::Leader
        }
    }

    /// Single-flight fetch of a session token across the fleet, like a re-login: the local
    /// fetcher takes the fleet lease too, and a replica that finds the token fetched by another
    /// replica meanwhile uses it.
    pub async fn begin_token_fetch(&self, lease: &mut Lease, name: &str) -> TokenTurn {
        let held = lease.take_hold();
        let turn = lease.begin_token_fetch(name).await;
        if let Some(held) = held {
            // Already alone in the fleet (serialize, establishing).
            lease.hold(held);
            return turn;
        }
        if turn != TokenTurn::Leader {
            return turn;
        }
        if self
            .fleet_turn(lease, |lease| lease.token(name).is_some())
            .await
        {
            TokenTurn::AlreadyFetched
        } else {
            TokenTurn::Leader
        }
    }

    /// The fleet half of a local leader's turn (re-login, token fetch): takes the session's
    /// fleet lease and adopts a jar another replica wrote meanwhile. True when that jar is
    /// already `done` (the lease is then released): the turn is over, with nothing to write
    /// back. Otherwise the lease stays with `lease` and this replica does the work; also when
    /// Redis fails (logged by the client), as this replica then works on its own.
    async fn fleet_turn(&self, lease: &mut Lease, done: impl Fn(&Lease) -> bool) -> bool {
        let read_as = lease.synced_rev();
        let (route, key) = (lease.route_name().to_owned(), lease.key().to_string());
        let session_key = self.fleet().session_key("session", &route, &key);
        let lease_key = self.fleet().session_key("lease", &route, &key);
        let Ok(acquired) = self
            .fleet()
            .acquire(&lease_key, &session_key, false, FLEET_PATIENCE)
            .await
        else {
            return false;
        };
        let remote = remote_session(&acquired.value);
        if remote.is_some_and(|(rev, _)| rev != read_as) {
            lease.adopt(read_as, remote);
            if done(lease) {
                lease.take_changed();
                drop(acquired.hold);
                return true;
            }
        }
        lease.hold(Box::new(acquired.hold));
        false
    }

    pub async fn token(&self, source: &TokenSource) -> Result<Token, TokenFailure> {
        if let Some((token, _)) = source.cached_fresh() {
            return Ok(token);
        }
        let route = source.route().to_owned();
        let token_key = self.fleet().token_key("token", &route);
        let lease_key = self.fleet().token_key("token-lease", &route);
        match self.fleet().read_token(&token_key).await {
            Ok(shared) => {
                self.recovered();
                if let Some(token) = shared.and_then(|shared| self.adopt_token(source, &shared)) {
                    return Ok(token);
                }
            }
            Err(down) => {
                self.unavailable(down)?;
                return Ok(source.token().await?);
            }
        }
        let acquired = match self
            .fleet()
            .acquire(&lease_key, &token_key, true, FLEET_PATIENCE)
            .await
        {
            Ok(acquired) => acquired,
            Err(down) => {
                self.unavailable(down)?;
                return Ok(source.token().await?);
            }
        };
        if let Some(token) = SharedToken::from_items(&acquired.value)
            .and_then(|shared| self.adopt_token(source, &shared))
        {
            // Fetched by another replica while this one waited.
            return Ok(token);
        }
        let (token, remaining) = source.fetch_fresh().await?;
        let shared = self.seal_token(&route, &token, remaining)?;
        self.shared
            .tokens
            .insert(route.clone(), (token.generation(), shared.id.clone()));
        if let Err(down) = self
            .fleet()
            .write_token((&token_key, &lease_key), &shared, remaining, acquired.hold)
            .await
        {
            self.unavailable(down)?;
        }
        Ok(token)
    }

    pub async fn invalidate(&self, source: &TokenSource, generation: u64) {
        let route = source.route();
        let id = self
            .shared
            .tokens
            .get(route)
            .filter(|entry| entry.0 == generation)
            .map(|entry| entry.1.clone());
        if let Some(id) = id {
            let key = self.fleet().token_key("token", route);
            // A failure is logged by the client; the token then expires in Redis by itself.
            let _ = self.fleet().invalidate_token(&key, &id).await;
        }
        source.invalidate(generation);
    }

    /// A shared token still worth using, cached in `source`; `None` when it is due, or cannot
    /// be opened (a wrong key is logged: the token is then fetched anew).
    fn adopt_token(&self, source: &TokenSource, shared: &SharedToken) -> Option<Token> {
        let remaining = Duration::from_millis(shared.expires_ms.saturating_sub(now_ms()));
        if !source.usable_for(remaining) {
            return None;
        }
        let context = token_context(source.route());
        let opened = self
            .shared
            .cipher
            .open_value(&context, &shared.salt, &shared.sealed)
            .or_else(|| {
                self.shared.previous.as_ref().and_then(|previous| {
                    previous.open_value(&context, &shared.salt, &shared.sealed)
                })
            });
        let Some(plain) = opened.and_then(|plain| String::from_utf8(plain).ok()) else {
            tracing::error!(
                route = source.route(),
                "cannot open the shared token: state.encryption_key is not the key it was \
                 sealed with; fetching a new one"
            );
            return None;
        };
        let token = source.adopt(plain, remaining)?;
        self.shared.tokens.insert(
            source.route().to_owned(),
            (token.generation(), shared.id.clone()),
        );
        Some(token)
    }

    fn seal_token(
        &self,
        route: &str,
        token: &Token,
        remaining: Duration,
    ) -> Result<SharedToken, Unavailable> {
        let sealing = Unavailable {
            what: "token sealing",
        };
        let (salt, sealed) = self
            .shared
            .cipher
            .seal_value(
                &token_context(route),
                token.access_token().expose().as_bytes(),
            )
            .map_err(|_| sealing)?;
        Ok(SharedToken {
            id: self.fleet().random_id()?,
            salt,
            sealed,
            expires_ms: now_ms()
                .saturating_add(u64::try_from(remaining.as_millis()).unwrap_or(u64::MAX)),
        })
    }
}

/// What a sealed token is bound to: moving it to another route breaks it.
fn token_context(route: &str) -> Vec<u8> {
    [b"token".as_slice(), route.as_bytes()].join(&0u8)
}

/// The `(rev, doc)` part of an acquire's answer (an empty doc: deleted by an operator); `None`
/// when Redis has no session.
fn remote_session(value: &[redis::Value]) -> Option<(u64, &[u8])> {
    let rev = match value.first()? {
        redis::Value::Int(rev) => u64::try_from(*rev).ok().filter(|rev| *rev > 0)?,
        _ => return None,
    };
    match value.get(1) {
        Some(redis::Value::BulkString(doc)) => Some((rev, doc.as_slice())),
        _ => Some((rev, &[])),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
