//! A backend for tests: it records what the pipeline asked of it, and answers from a local
//! backend, or with [`Unavailable`] once told the store is down.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::auth::oauth::{Token, TokenSource};
use crate::session::{Lease, Relogin, SessionKey, TokenTurn};

use super::{LeaseFailure, LocalState, SessionStore, TokenFailure, TokenStore, Unavailable};

pub struct FakeState {
    behind: LocalState,
    down: AtomicBool,
    calls: Mutex<Vec<String>>,
}

impl FakeState {
    pub(crate) fn new(behind: LocalState) -> FakeState {
        FakeState {
            behind,
            down: AtomicBool::new(false),
            calls: Mutex::new(Vec::new()),
        }
    }

    /// From now on every call answers [`Unavailable`].
    pub(crate) fn go_down(&self) {
        self.down.store(true, Ordering::SeqCst);
    }

    /// `lease <route>` and `token` in the order the pipeline asked.
    pub(crate) fn calls(&self) -> Vec<String> {
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn record(&self, what: &'static str, call: String) -> Result<(), Unavailable> {
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(call);
        if self.down.load(Ordering::SeqCst) {
            return Err(Unavailable { what });
        }
        Ok(())
    }
}

impl SessionStore for FakeState {
    async fn lease(&self, route: &str, key: SessionKey) -> Result<Lease, LeaseFailure> {
        self.record("session lease", format!("lease {route}"))?;
        self.behind.lease(route, key).await
    }

    async fn commit(&self, _lease: &mut Lease) {}

    async fn begin_relogin(&self, lease: &mut Lease) -> Relogin {
        lease.begin_relogin().await
    }

    async fn begin_token_fetch(&self, lease: &mut Lease, name: &str) -> TokenTurn {
        lease.begin_token_fetch(name).await
    }
}

impl TokenStore for FakeState {
    async fn token(&self, source: &TokenSource) -> Result<Token, TokenFailure> {
        self.record("token", "token".to_owned())?;
        self.behind.token(source).await
    }

    async fn invalidate(&self, source: &TokenSource, generation: u64) {
        if self
            .record("token", format!("invalidate {generation}"))
            .is_ok()
        {
            self.behind.invalidate(source, generation).await;
        }
    }
}
