//! The connection to Redis that every route of one process shares, the Lua scripts that make
//! each step one round trip, and the fleet lease (`SET NX PX` with a random token, renewed
//! while held, released by compare-and-delete).
//!
//! Every command is bounded by `command_timeout` here, whatever the client library does, so
//! that a request needing state gets its answer (or its 503) in bounded time. Reconnecting is
//! the library's `ConnectionManager`'s job: after a failed command the next one reconnects.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, Script, Value};
use ring::rand::{SecureRandom, SystemRandom};
use tokio::task::JoinHandle;

use crate::config::{OnUnavailable, RedisPlan};
use crate::state::Unavailable;

/// How long a fleet lease lives unless renewed: a holder killed mid-login blocks the others
/// for at most this long.
pub(crate) const LEASE_TTL: Duration = Duration::from_secs(5);

/// A held lease is renewed this often (a third of its life: two renewals may fail).
const RENEW_EVERY: Duration = Duration::from_millis(1_600);

/// How often a replica waiting for another's lease asks again.
const POLL_EVERY: Duration = Duration::from_millis(25);

/// Reads a session and touches it (its idle TTL, its last use): the common path's one trip.
const READ_SESSION: &str = r"
local v = redis.call('HMGET', KEYS[1], 'rev', 'doc')
if not v[1] then return {0} end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], 'used', ARGV[2])
return {tonumber(v[1]), v[2]}
";

/// Takes the lease if free and reads the value it guards in the same trip; otherwise says how
/// long the current holder's lease still runs.
const ACQUIRE: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local v = redis.call('HMGET', KEYS[2], 'rev', 'doc')
  return {1, tonumber(v[1] or '0'), v[2]}
end
return {0, redis.call('PTTL', KEYS[1])}
";

/// Writes a session if it is still at the revision the writer read (compare-and-set), and
/// releases the writer's lease in the same trip; otherwise answers the newer copy.
const WRITE_SESSION: &str = r"
local rev = tonumber(redis.call('HGET', KEYS[1], 'rev') or '0')
if rev ~= tonumber(ARGV[1]) then
  return {0, rev, redis.call('HGET', KEYS[1], 'doc')}
end
rev = rev + 1
redis.call('HSET', KEYS[1], 'rev', rev, 'doc', ARGV[2], 'used', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if ARGV[4] ~= '' and redis.call('GET', KEYS[2]) == ARGV[4] then
  redis.call('DEL', KEYS[2])
end
return {1, rev}
";

/// Extends a lease only while it is still the caller's.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

/// Releases a lease only while it is still the caller's: never another holder's.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// Deletes a session for every replica, leaving a tombstone (its next revision, no document)
/// so that a replica that still holds the jar drops it instead of publishing it again.
const DELETE_SESSION: &str = r"
local rev = redis.call('HGET', KEYS[1], 'rev')
if not rev then return 0 end
local had = redis.call('HEXISTS', KEYS[1], 'doc')
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'rev', tonumber(rev) + 1)
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return had
";

/// Reads a route's shared token.
const READ_TOKEN: &str = r"
return redis.call('HMGET', KEYS[1], 'id', 'salt', 'sealed', 'expires_ms')
";

/// Takes the token lease if free and reads the token in the same trip.
const ACQUIRE_TOKEN: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local v = redis.call('HMGET', KEYS[2], 'id', 'salt', 'sealed', 'expires_ms')
  return {1, v[1], v[2], v[3], v[4]}
end
return {0, redis.call('PTTL', KEYS[1])}
";

/// Stores a fetched token and releases the fetcher's lease.
const WRITE_TOKEN: &str = r"
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'salt', ARGV[2], 'sealed', ARGV[3], 'expires_ms', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
if redis.call('GET', KEYS[2]) == ARGV[6] then
  redis.call('DEL', KEYS[2])
end
return 1
";

/// Drops a token only while it is the refused one, never a fresher one fetched meanwhile.
const INVALIDATE_TOKEN: &str = r"
if redis.call('HGET', KEYS[1], 'id') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// The Redis connection of this process. Cheap to clone.
#[derive(Clone)]
pub struct Fleet {
    inner: Arc<Inner>,
}

struct Inner {
    connection: ConnectionManager,
    prefix: String,
    mode: OnUnavailable,
    command_timeout: Duration,
    /// Where the URL points, without credentials: what logs and `/readyz` show.
    target: String,
    scripts: Scripts,
    random: SystemRandom,
    round_trips: AtomicU64,
    errors: AtomicU64,
    lease_waits: AtomicU64,
    takeovers: AtomicU64,
    fallbacks: AtomicU64,
    /// The last command failed: Redis counts as unreachable until one succeeds.
    down: AtomicBool,
}

struct Scripts {
    read_session: Script,
    acquire: Script,
    write_session: Script,
    renew: Script,
    release: Script,
    delete_session: Script,
    read_token: Script,
    acquire_token: Script,
    write_token: Script,
    invalidate_token: Script,
}

/// Counters for `/metrics` and `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetStats {
    /// Commands sent (one per script or command: a round trip each).
    pub round_trips: u64,
    /// Commands that failed or timed out.
    pub errors: u64,
    /// Times a replica found the fleet lease held by another and waited.
    pub lease_waits: u64,
    /// Leases taken over after the holder's expired without a release (a holder that died).
    pub takeovers: u64,
    /// Requests served from this process's own state because Redis could not be reached
    /// (`on_unavailable = "local"`).
    pub fallbacks: u64,
    /// Whether the last command succeeded.
    pub reachable: bool,
}

/// Redis could not be set up (the URL cannot be used).
#[derive(Debug, thiserror::Error)]
#[error("state.url: cannot use the Redis URL: {0}")]
pub struct FleetError(String);

/// What [`Fleet::acquire`] got: the lease, and the value it guards as it was when taken.
pub(crate) struct Acquired {
    pub(crate) hold: FleetHold,
    pub(crate) value: Vec<Value>,
    /// It waited for another holder first.
    pub(crate) waited: bool,
}

/// A fleet lease this process holds. Renewed in the background while it lives; released by
/// compare-and-delete when dropped (unless a write already released it).
pub(crate) struct FleetHold {
    fleet: Fleet,
    key: String,
    token: String,
    renew: JoinHandle<()>,
    released: bool,
}

impl FleetHold {
    pub(crate) fn token(&self) -> &str {
        &self.token
    }

    /// A write released the lease along with it.
    pub(crate) fn mark_released(mut self) {
        self.released = true;
    }
}

impl Drop for FleetHold {
    fn drop(&mut self) {
        self.renew.abort();
        if self.released {
            return;
        }
        let (fleet, key, token) = (self.fleet.clone(), self.key.clone(), self.token.clone());
        // Dropped outside a runtime only at exit; the lease then expires by itself.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let script = &fleet.inner.scripts.release;
                let _ = fleet
                    .eval("lease release", script, &[&key], &[token.as_bytes()])
                    .await;
            });
        }
    }
}

impl Fleet {
    /// The client for `plan`. Connects lazily: a Redis that is down at the start is the same
    /// as one that goes down later.
    pub fn new(plan: &RedisPlan) -> Result<Fleet, FleetError> {
        let mut info = plan
            .url
            .as_str()
            .into_connection_info()
            .map_err(|err| FleetError(err.to_string()))?;
        let mut settings = info.redis_settings().clone();
        if let Some(username) = &plan.username {
            settings = settings.set_username(username);
        }
        if let Some(password) = &plan.password {
            settings = settings.set_password(password.expose());
        }
        info = info.set_redis_settings(settings);
        let client = redis::Client::open(info).map_err(|err| FleetError(err.to_string()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(plan.connect_timeout))
            .set_response_timeout(Some(plan.command_timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(1));
        let connection = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|err| FleetError(err.to_string()))?;
        let mut target = plan.url.clone();
        let _ = target.set_password(None);
        let _ = target.set_username("");
        Ok(Fleet {
            inner: Arc::new(Inner {
                connection,
                prefix: plan.key_prefix.clone(),
                mode: plan.on_unavailable,
                command_timeout: plan.command_timeout,
                target: target.to_string(),
                scripts: Scripts {
                    read_session: Script::new(READ_SESSION),
                    acquire: Script::new(ACQUIRE),
                    write_session: Script::new(WRITE_SESSION),
                    renew: Script::new(RENEW),
                    release: Script::new(RELEASE),
                    delete_session: Script::new(DELETE_SESSION),
                    read_token: Script::new(READ_TOKEN),
                    acquire_token: Script::new(ACQUIRE_TOKEN),
                    write_token: Script::new(WRITE_TOKEN),
                    invalidate_token: Script::new(INVALIDATE_TOKEN),
                },
                random: SystemRandom::new(),
                round_trips: AtomicU64::new(0),
                errors: AtomicU64::new(0),
                lease_waits: AtomicU64::new(0),
                takeovers: AtomicU64::new(0),
                fallbacks: AtomicU64::new(0),
                down: AtomicBool::new(false),
            }),
        })
    }

    pub fn mode(&self) -> OnUnavailable {
        self.inner.mode
    }

    /// The Redis URL without credentials.
    pub fn target(&self) -> &str {
        &self.inner.target
    }

    pub fn stats(&self) -> FleetStats {
        let inner = &self.inner;
        FleetStats {
            round_trips: inner.round_trips.load(Ordering::Relaxed),
            errors: inner.errors.load(Ordering::Relaxed),
            lease_waits: inner.lease_waits.load(Ordering::Relaxed),
            takeovers: inner.takeovers.load(Ordering::Relaxed),
            fallbacks: inner.fallbacks.load(Ordering::Relaxed),
            reachable: !inner.down.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn count_fallback(&self) {
        self.inner.fallbacks.fetch_add(1, Ordering::Relaxed);
    }

    /// `PING`, for `/readyz`: true when Redis answered within the command timeout.
    pub async fn ping(&self) -> bool {
        self.query::<String>("ping", redis::cmd("PING"))
            .await
            .is_ok()
    }

    /// The Redis key of a session (`kind` "session") or its lease (`kind` "lease").
    pub(crate) fn session_key(&self, kind: &str, route: &str, key: &str) -> String {
        format!("{}{kind}:{route}:{key}", self.inner.prefix)
    }

    /// The Redis key of a route's token (`kind` "token") or its fetch lease ("token-lease").
    pub(crate) fn token_key(&self, kind: &str, route: &str) -> String {
        format!("{}{kind}:{route}", self.inner.prefix)
    }

    /// One script call, bounded by the command timeout and counted.
    async fn eval(
        &self,
        what: &'static str,
        script: &Script,
        keys: &[&str],
        args: &[&[u8]],
    ) -> Result<Value, Unavailable> {
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(*key);
        }
        for arg in args {
            invocation.arg(*arg);
        }
        let mut connection = self.inner.connection.clone();
        self.settle(
            what,
            tokio::time::timeout(
                self.inner.command_timeout,
                invocation.invoke_async::<Value>(&mut connection),
            )
            .await,
        )
    }

    async fn query<T: redis::FromRedisValue>(
        &self,
        what: &'static str,
        command: redis::Cmd,
    ) -> Result<T, Unavailable> {
        let mut connection = self.inner.connection.clone();
        self.settle(
            what,
            tokio::time::timeout(
                self.inner.command_timeout,
                command.query_async::<T>(&mut connection),
            )
            .await,
        )
    }

    fn settle<T>(
        &self,
        what: &'static str,
        outcome: Result<redis::RedisResult<T>, tokio::time::error::Elapsed>,
    ) -> Result<T, Unavailable> {
        let inner = &self.inner;
        inner.round_trips.fetch_add(1, Ordering::Relaxed);
        let error = match outcome {
            Ok(Ok(value)) => {
                if inner.down.swap(false, Ordering::Relaxed) {
                    tracing::info!(redis = %inner.target, "Redis answers again");
                }
                return Ok(value);
            }
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("no answer within {:?}", inner.command_timeout),
        };
        inner.errors.fetch_add(1, Ordering::Relaxed);
        if !inner.down.swap(true, Ordering::Relaxed) {
            tracing::error!(redis = %inner.target, what, %error, "Redis is unavailable");
        }
        Err(Unavailable { what })
    }

    /// A session's revision and sealed document, touched (idle TTL, last use); `None` when
    /// Redis has none.
    pub(crate) async fn read_session(
        &self,
        key: &str,
        ttl: Duration,
        now_ms: u64,
    ) -> Result<Option<(u64, Vec<u8>)>, Unavailable> {
        let value = self
            .eval(
                "session read",
                &self.inner.scripts.read_session,
                &[key],
                &[millis(ttl).as_bytes(), now_ms.to_string().as_bytes()],
            )
            .await?;
        let items = array(value);
        // A revision without a document is a session an operator deleted (a tombstone).
        Ok(revision(&items, 0)
            .filter(|rev| *rev > 0)
            .map(|rev| (rev, bytes(&items, 1).unwrap_or_default())))
    }

    /// Writes a session at revision `expected` (compare-and-set), releasing `release` (a lease
    /// token) in the same trip. `Ok(Ok(rev))`: written as `rev`; `Ok(Err(newer))`: Redis holds
    /// another revision (and its document, if any), which wins.
    pub(crate) async fn write_session(
        &self,
        (key, lease): (&str, &str),
        expected: u64,
        doc: &[u8],
        ttl: Duration,
        release: Option<&str>,
        now_ms: u64,
    ) -> Result<Result<u64, Option<(u64, Vec<u8>)>>, Unavailable> {
        let value = self
            .eval(
                "session write",
                &self.inner.scripts.write_session,
                &[key, lease],
                &[
                    expected.to_string().as_bytes(),
                    doc,
                    millis(ttl).as_bytes(),
                    release.unwrap_or("").as_bytes(),
                    now_ms.to_string().as_bytes(),
                ],
            )
            .await?;
        let items = array(value);
        let rev = revision(&items, 1).unwrap_or(0);
        if revision(&items, 0) == Some(1) {
            return Ok(Ok(rev));
        }
        Ok(Err(
            (rev > 0).then(|| (rev, bytes(&items, 2).unwrap_or_default()))
        ))
    }

    /// Waits until this process holds the lease `lease` (polling every few milliseconds, up to
    /// `patience`), and reads what it guards (`guarded`, a session or a token) in the same trip.
    pub(crate) async fn acquire(
        &self,
        lease: &str,
        guarded: &str,
        token_lease: bool,
        patience: Duration,
    ) -> Result<Acquired, Unavailable> {
        let token = self.random_id()?;
        let script = if token_lease {
            &self.inner.scripts.acquire_token
        } else {
            &self.inner.scripts.acquire
        };
        let what = if token_lease {
            "token lease"
        } else {
            "session lease"
        };
        let deadline = tokio::time::Instant::now() + patience;
        let mut waited = false;
        let mut expiring = false;
        loop {
            let value = self
                .eval(
                    what,
                    script,
                    &[lease, guarded],
                    &[token.as_bytes(), millis(LEASE_TTL).as_bytes()],
                )
                .await?;
            let items = array(value);
            if revision(&items, 0) == Some(1) {
                if expiring {
                    // The holder's lease ran out instead of being released: it died.
                    self.inner.takeovers.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        lease,
                        "took over a fleet lease whose holder did not release it"
                    );
                }
                return Ok(Acquired {
                    hold: self.hold(lease, token),
                    value: items.into_iter().skip(1).collect(),
                    waited,
                });
            }
            if !waited {
                waited = true;
                self.inner.lease_waits.fetch_add(1, Ordering::Relaxed);
            }
            let remaining_ms = match items.get(1) {
                Some(Value::Int(ms)) => *ms,
                _ => 0,
            };
            expiring = (0..=millis_i64(POLL_EVERY) * 2).contains(&remaining_ms);
            if tokio::time::Instant::now() >= deadline {
                return Err(Unavailable {
                    what: "fleet lease (another replica holds it)",
                });
            }
            // Polling with a deadline: Redis has no "wait for a key to go" that works across
            // restarts and failovers, and a wait is rare (establishing, re-login).
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    fn hold(&self, lease: &str, token: String) -> FleetHold {
        let (fleet, key, renewing) = (self.clone(), lease.to_owned(), token.clone());
        let renew = tokio::spawn(async move {
            let mut every = tokio::time::interval(RENEW_EVERY);
            every.tick().await;
            loop {
                every.tick().await;
                let renewed = fleet
                    .eval(
                        "lease renewal",
                        &fleet.inner.scripts.renew,
                        &[&key],
                        &[renewing.as_bytes(), millis(LEASE_TTL).as_bytes()],
                    )
                    .await;
                if matches!(renewed, Ok(Value::Int(0))) {
                    tracing::warn!(lease = %key, "lost a fleet lease before releasing it");
                    return;
                }
            }
        });
        FleetHold {
            fleet: self.clone(),
            key: lease.to_owned(),
            token,
            renew,
            released: false,
        }
    }

    /// A route's token as Redis keeps it: `(id, salt, sealed, expires_ms)`.
    pub(crate) async fn read_token(&self, key: &str) -> Result<Option<SharedToken>, Unavailable> {
        let value = self
            .eval("token read", &self.inner.scripts.read_token, &[key], &[])
            .await?;
        Ok(SharedToken::from_items(&array(value)))
    }

    /// Stores a fetched token (`ttl`: until it expires) and releases the fetch lease.
    pub(crate) async fn write_token(
        &self,
        (key, lease): (&str, &str),
        token: &SharedToken,
        ttl: Duration,
        hold: FleetHold,
    ) -> Result<(), Unavailable> {
        self.eval(
            "token write",
            &self.inner.scripts.write_token,
            &[key, lease],
            &[
                token.id.as_bytes(),
                token.salt.as_bytes(),
                token.sealed.as_bytes(),
                token.expires_ms.to_string().as_bytes(),
                millis(ttl.max(Duration::from_millis(1))).as_bytes(),
                hold.token().as_bytes(),
            ],
        )
        .await?;
        hold.mark_released();
        Ok(())
    }

    /// Drops the route's token if it is still the one with `id`.
    pub(crate) async fn invalidate_token(&self, key: &str, id: &str) -> Result<bool, Unavailable> {
        let value = self
            .eval(
                "token invalidate",
                &self.inner.scripts.invalidate_token,
                &[key],
                &[id.as_bytes()],
            )
            .await?;
        Ok(matches!(value, Value::Int(1)))
    }

    /// Every session key under the prefix, with its fields (`rev`, `doc`, `used`), for
    /// `/sessions`. A SCAN, so a large fleet does not block Redis.
    pub(crate) async fn scan_sessions(&self) -> Result<Vec<(u64, Vec<u8>, u64)>, Unavailable> {
        let pattern = format!("{}session:*", self.inner.prefix);
        let mut cursor: u64 = 0;
        let mut keys: Vec<String> = Vec::new();
        loop {
            let mut command = redis::cmd("SCAN");
            command
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(500);
            let (next, batch): (u64, Vec<String>) = self.query("session scan", command).await?;
            keys.extend(batch);
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let mut command = redis::cmd("HMGET");
            command.arg(&key).arg("rev").arg("doc").arg("used");
            let (rev, doc, used): (Option<u64>, Option<Vec<u8>>, Option<u64>) =
                self.query("session list", command).await?;
            if let (Some(rev), Some(doc)) = (rev, doc) {
                out.push((rev, doc, used.unwrap_or(0)));
            }
        }
        Ok(out)
    }

    /// Deletes a session for every replica (see the script); true when Redis had it. The
    /// tombstone lives `ttl`, the route's idle timeout: by then every replica's jar is idle.
    pub(crate) async fn delete(&self, key: &str, ttl: Duration) -> Result<bool, Unavailable> {
        let value = self
            .eval(
                "session delete",
                &self.inner.scripts.delete_session,
                &[key],
                &[millis(ttl).as_bytes()],
            )
            .await?;
        Ok(matches!(value, Value::Int(1)))
    }

    /// A random lease token or token id.
    pub(crate) fn random_id(&self) -> Result<String, Unavailable> {
        let mut bytes = [0u8; 16];
        self.inner
            .random
            .fill(&mut bytes)
            .map_err(|_| Unavailable {
                what: "random number generator",
            })?;
        Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
    }
}

/// A route's token as Redis keeps it: the value sealed, its expiry readable.
pub(crate) struct SharedToken {
    pub(crate) id: String,
    pub(crate) salt: String,
    pub(crate) sealed: String,
    pub(crate) expires_ms: u64,
}

impl SharedToken {
    pub(crate) fn from_items(items: &[Value]) -> Option<SharedToken> {
        let text = |index: usize| bytes(items, index).and_then(|b| String::from_utf8(b).ok());
        Some(SharedToken {
            id: text(0)?,
            salt: text(1)?,
            sealed: text(2)?,
            expires_ms: text(3)?.parse().ok()?,
        })
    }
}

fn array(value: Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items,
        _ => Vec::new(),
    }
}

fn revision(items: &[Value], index: usize) -> Option<u64> {
    match items.get(index)? {
        Value::Int(n) => u64::try_from(*n).ok(),
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok()?.parse().ok(),
        _ => None,
    }
}

fn bytes(items: &[Value], index: usize) -> Option<Vec<u8>> {
    match items.get(index)? {
        Value::BulkString(bytes) => Some(bytes.clone()),
        Value::SimpleString(text) => Some(text.clone().into_bytes()),
        _ => None,
    }
}

fn millis(duration: Duration) -> String {
    millis_i64(duration).max(1).to_string()
}

fn millis_i64(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
