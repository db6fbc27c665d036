//! Stored-credential injection and the OAuth 2.0 token cache.

pub mod hygiene;
mod inject;

pub use inject::{Injected, Injector};
