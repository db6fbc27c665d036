//! The state seam: where a route's sessions and its OAuth token live. The pipeline asks a
//! [`StateBackend`] for a session lease and a token and never touches a store directly, so that
//! state shared by several replicas (Redis, issue 18) is a second implementation of
//! [`SessionStore`] and [`TokenStore`], not a rewrite of the pipeline.
//!
//! The contract, written for the shared backend the local one already honours:
//! - A lease is the right to use one session; establishing and re-login hold it exclusively.
//!   Shared, it is a `SET NX PX` lease with a random token and a TTL, renewed while held and
//!   released by compare-and-delete, so a dead holder's lease expires by itself.
//! - A waiter that got the session after someone else established or renewed it re-reads the
//!   jar instead of logging in again (the [`Lease`] reports [`Relogin::AlreadyRenewed`]).
//! - A jar write carries the generation it read ([`Lease::generation`]): a compare-and-set,
//!   so a stale holder never overwrites a newer session.
//! - A token is invalidated by comparing its generation, never blindly, so a fresher token
//!   fetched by someone else survives a late 401.
//! - A backend that cannot answer says [`Unavailable`]; the pipeline answers 503
//!   `state_unavailable` naming the route, never hangs and never serves stale state silently.
//!
//! [`LocalState`] is today's in-process store; [`RedisState`] (`redis/`) shares sessions,
//! leases and tokens between replicas, with the local store as its cache and single flight.
//!
//! Dispatch is an enum, not a trait object: the established-session path pays no boxed future.

mod local;
pub mod redis;

use std::future::Future;

use crate::auth::oauth::{OAuthError, Token, TokenSource};
use crate::session::{Lease, LeaseError, Relogin, SessionKey, Sessions, TokenTurn};

pub use local::LocalState;
pub use redis::{RedisShared, RedisState};

#[cfg(test)]
pub use self::fake::FakeState;

/// The state backend could not be reached or did not answer in time. Names what was asked,
/// never a key or a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the state backend is unavailable ({what})")]
pub struct Unavailable {
    pub what: &'static str,
}

/// Why a session lease could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseFailure {
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
}

/// Why no token could be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenFailure {
    #[error(transparent)]
    Fetch(#[from] OAuthError),
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
}

/// Sessions: a lease on the session `key` of `route`, waiting as the session's rules require.
pub trait SessionStore {
    fn lease(
        &self,
        route: &str,
        key: SessionKey,
    ) -> impl Future<Output = Result<Lease, LeaseFailure>> + Send;

    /// The jar changed under `lease` (a response's `Set-Cookie`): a shared store writes it
    /// back now, before the response goes on, so another replica's next request sees it.
    fn commit(&self, lease: &mut Lease) -> impl Future<Output = ()> + Send;

    /// Single-flight re-login (see [`Lease::begin_relogin`]), across every replica for a
    /// shared store.
    fn begin_relogin(&self, lease: &mut Lease) -> impl Future<Output = Relogin> + Send;

    /// Single-flight fetch of the session token `name` (see [`Lease::begin_token_fetch`]),
    /// across every replica for a shared store.
    fn begin_token_fetch(
        &self,
        lease: &mut Lease,
        name: &str,
    ) -> impl Future<Output = TokenTurn> + Send;
}

/// OAuth tokens of the route `source` fetches for.
pub trait TokenStore {
    /// A valid token, from the cache or a fetch.
    fn token(
        &self,
        source: &TokenSource,
    ) -> impl Future<Output = Result<Token, TokenFailure>> + Send;

    /// The target refused the token of `generation`: drop it if it is still the current one.
    /// A backend that cannot do so leaves it to expire; the replay then fails on its own.
    fn invalidate(&self, source: &TokenSource, generation: u64) -> impl Future<Output = ()> + Send;
}

/// The backend a proxy runs with.
#[derive(Clone)]
pub enum StateBackend {
    /// In this process, persisted to each route's state file (the default).
    Local(LocalState),
    /// Shared by every replica through Redis (`[state] backend = "redis"`).
    Redis(RedisState),
    /// A stand-in put in place by a test.
    #[cfg(test)]
    Fake(std::sync::Arc<FakeState>),
}

impl StateBackend {
    /// The in-process backend over `sessions`.
    pub fn local(sessions: Sessions) -> StateBackend {
        StateBackend::Local(LocalState::new(sessions))
    }

    /// The backend `[state]` configures: Redis when `shared` is set, else in this process.
    pub fn new(sessions: Sessions, shared: Option<&RedisShared>) -> StateBackend {
        match shared {
            Some(shared) => StateBackend::Redis(RedisState::new(sessions, shared.clone())),
            None => StateBackend::local(sessions),
        }
    }
}

impl SessionStore for StateBackend {
    async fn lease(&self, route: &str, key: SessionKey) -> Result<Lease, LeaseFailure> {
        match self {
            StateBackend::Local(local) => local.lease(route, key).await,
            StateBackend::Redis(redis) => redis.lease(route, key).await,
            #[cfg(test)]
            StateBackend::Fake(fake) => fake.lease(route, key).await,
        }
    }

    async fn commit(&self, lease: &mut Lease) {
        if let StateBackend::Redis(redis) = self {
            redis.commit(lease).await;
        }
    }

    async fn begin_relogin(&self, lease: &mut Lease) -> Relogin {
        match self {
            StateBackend::Redis(redis) => redis.begin_relogin(lease).await,
            _ => lease.begin_relogin().await,
        }
    }

    async fn begin_token_fetch(&self, lease: &mut Lease, name: &str) -> TokenTurn {
        match self {
            StateBackend::Redis(redis) => redis.begin_token_fetch(lease, name).await,
            _ => lease.begin_token_fetch(name).await,
        }
    }
}

impl TokenStore for StateBackend {
    async fn token(&self, source: &TokenSource) -> Result<Token, TokenFailure> {
        match self {
            StateBackend::Local(local) => local.token(source).await,
            StateBackend::Redis(redis) => redis.token(source).await,
            #[cfg(test)]
            StateBackend::Fake(fake) => fake.token(source).await,
        }
    }

    async fn invalidate(&self, source: &TokenSource, generation: u64) {
        match self {
            StateBackend::Local(local) => local.invalidate(source, generation).await,
            StateBackend::Redis(redis) => redis.invalidate(source, generation).await,
            #[cfg(test)]
            StateBackend::Fake(fake) => fake.invalidate(source, generation).await,
        }
    }
}

#[cfg(test)]
mod fake;
#[cfg(test)]
mod pipeline_tests;
