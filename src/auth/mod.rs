//! Stored-credential injection and the OAuth 2.0 token cache.

pub mod oauth;
