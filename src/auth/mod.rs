//! Stored-credential injection and the OAuth 2.0 token cache.

mod inject;

pub use inject::{Injected, Injector};
