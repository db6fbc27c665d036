//! Cookie jars per session key, single-flight establishment, re-login, bounds, persistence.
//!
//! The pipeline asks [`Sessions::key_for`] for the request's [`SessionKey`] (a keyed hash,
//! scoped to the authenticated client), takes a [`Lease`] from [`Sessions`], sends the jar's
//! `Cookie` header, absorbs every response's `Set-Cookie`, and on a response for which
//! [`is_session_gone`] holds, calls [`Lease::begin_relogin`] and replays once. Session tokens
//! ([`tokens`]) live next to the jar and go with it.

mod jar;
mod key;
#[cfg(test)]
mod locked_target;
mod persist;
mod psl;
mod salt;
mod seal;
mod store;
pub mod tokens;
mod verdict;

use std::path::PathBuf;

use http::StatusCode;

use crate::config::SessionPlan;

pub use jar::{Absorbed, Jar, Rejected};
pub use key::{KeyHasher, MissingKeyHeader, SessionKey};
pub(crate) use persist::from_unix_ms;
pub use seal::StateCipher;
pub use store::{Lease, LeaseError, Relogin, SessionInfo, SessionStats, Sessions, TokenTurn};
pub use verdict::SessionVerdict;

/// Startup and persistence errors. They name files and causes, never cookie values.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("cannot read session state file {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "session state file {} is corrupt: {reason} (start with --reset-sessions to move it aside)",
        .path.display()
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error("cannot move session state file {} aside to {}: {source}", .path.display(), .to.display())]
    MoveAside {
        path: PathBuf,
        to: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create session state directory {}: {source}", .path.display())]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write session state file {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "session key secret file {} is unusable: {reason} (delete it to start with a new one; \
         sessions keyed by client or header are then opened anew)",
        .path.display()
    )]
    Salt { path: PathBuf, reason: String },
    #[error("the system random number generator failed")]
    Random,
    #[error(
        "cannot decrypt the cookies in session state file {}: state.encryption_key is not the key \
         it was written with, or the file was altered (set the right key, or start with \
         --reset-sessions to move the file aside)",
        .path.display()
    )]
    WrongKey { path: PathBuf },
    #[error(
        "session state file {} holds encrypted cookies but state.encryption_key is not set \
         (set it, or start with --reset-sessions to move the file aside)",
        .path.display()
    )]
    NoKey { path: PathBuf },
}

/// Whether a response means the target dropped the session: its status is in `relogin_on`, the
/// request carried the session cookie, and, when `relogin_body_contains` is set, the body
/// contains that text (a body that was not captured does not count as a match).
pub fn is_session_gone(
    plan: &SessionPlan,
    status: StatusCode,
    sent_cookie: bool,
    body: Option<&[u8]>,
) -> bool {
    if !sent_cookie || !plan.relogin_on.contains(&status) {
        return false;
    }
    match &plan.relogin_body_contains {
        None => true,
        Some(needle) => body.is_some_and(|body| {
            needle.is_empty()
                || body
                    .windows(needle.len())
                    .any(|window| window == needle.as_bytes())
        }),
    }
}
