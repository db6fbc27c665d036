//! Stored-credential injection and the OAuth 2.0 token cache.

pub mod hygiene;
mod inject;
pub mod oauth;

pub use inject::{Injected, Injector};
