//! The in-process backend: sessions in [`Sessions`] (persisted to the routes' state files) and
//! each route's token cached in its [`TokenSource`]. In one process the lease is a lock and a
//! generation is a counter, so nothing here can be unavailable.

use crate::auth::oauth::{Token, TokenSource};
use crate::session::{Lease, Relogin, SessionKey, Sessions, TokenTurn};

use super::{LeaseFailure, SessionStore, TokenFailure, TokenStore};

#[derive(Clone)]
pub struct LocalState {
    sessions: Sessions,
}

impl LocalState {
    pub fn new(sessions: Sessions) -> LocalState {
        LocalState { sessions }
    }
}

impl SessionStore for LocalState {
    async fn lease(&self, route: &str, key: SessionKey) -> Result<Lease, LeaseFailure> {
        Ok(self.sessions.lease(route, key).await?)
    }

    async fn commit(&self, _lease: &mut Lease) {}

    async fn begin_relogin(&self, lease: &mut Lease) -> Relogin {
        lease.begin_relogin().await
    }

    async fn begin_token_fetch(&self, lease: &mut Lease, name: &str) -> TokenTurn {
        lease.begin_token_fetch(name).await
    }
}

impl TokenStore for LocalState {
    async fn token(&self, source: &TokenSource) -> Result<Token, TokenFailure> {
        Ok(source.token().await?)
    }

    async fn invalidate(&self, source: &TokenSource, generation: u64) {
        source.invalidate(generation);
    }
}
