//! Which session a request belongs to.

use std::fmt;
use std::sync::{Arc, LazyLock};

use http::header::AUTHORIZATION;
use http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::config::SessionKeyKind;

/// A fixed salt rather than a per-process one: the key is persisted with the session, and a
/// client that sends the same credential after a restart must find its session again. The salt
/// still keeps these hashes from matching plain SHA-256 tables of common credentials.
const SALT: &[u8] = b"provproxy/session-key/v1\0";

/// 16 hex digits (64 bits): collisions stay negligible for any realistic number of sessions,
/// and the short form is readable in `/sessions` and traces.
const HASH_HEX_LEN: usize = 16;

/// The fixed keys, allocated once rather than per request.
static ROUTE: LazyLock<SessionKey> = LazyLock::new(|| SessionKey(Arc::from("route")));
static ANONYMOUS: LazyLock<SessionKey> = LazyLock::new(|| SessionKey(Arc::from("anonymous")));

/// The identity of one session within a route. It never holds a raw credential: values that
/// may be secret (an `Authorization` header, a configured key header) are salted SHA-256 hashes.
/// Its `Display` form is what `/sessions` and traces show, and what the state file stores.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionKey(Arc<str>);

impl SessionKey {
    /// The key for a request, from the route's `session.key` setting.
    ///
    /// - `route`: one fixed key.
    /// - `client`: `client:NAME` for an authenticated ingress client, otherwise a hash of the
    ///   client's `Authorization` value, otherwise `anonymous`.
    /// - `header:NAME`: a hash of that header's value, or `anonymous` when it is absent.
    pub fn derive(
        kind: &SessionKeyKind,
        client_name: Option<&str>,
        headers: &HeaderMap,
    ) -> SessionKey {
        match kind {
            SessionKeyKind::Route => ROUTE.clone(),
            SessionKeyKind::Client => match (client_name, headers.get(AUTHORIZATION)) {
                (Some(name), _) => SessionKey(Arc::from(format!("client:{name}"))),
                (None, Some(value)) => hashed("auth", value.as_bytes()),
                (None, None) => SessionKey::anonymous(),
            },
            SessionKeyKind::Header(name) => match headers.get(name) {
                Some(value) => hashed("header", value.as_bytes()),
                None => SessionKey::anonymous(),
            },
        }
    }

    fn anonymous() -> SessionKey {
        ANONYMOUS.clone()
    }

    /// Rebuilds a key from its displayed form (the state file, the admin API).
    pub(crate) fn from_display(text: &str) -> SessionKey {
        SessionKey(Arc::from(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn hashed(tag: &str, value: &[u8]) -> SessionKey {
    let mut hasher = Sha256::new();
    hasher.update(SALT);
    hasher.update(tag.as_bytes());
    hasher.update([0]);
    hasher.update(value);
    let digest = hasher.finalize();
    let mut text = String::with_capacity(tag.len() + 1 + HASH_HEX_LEN);
    text.push_str(tag);
    text.push(':');
    for byte in &digest[..HASH_HEX_LEN / 2] {
        text.push(char::from(HEX[usize::from(byte >> 4)]));
        text.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    SessionKey(Arc::from(text))
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl fmt::Display for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionKey({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn route_key_is_the_same_for_every_request() {
        let a = SessionKey::derive(&SessionKeyKind::Route, Some("iiq"), &HeaderMap::new());
        let b = SessionKey::derive(
            &SessionKeyKind::Route,
            None,
            &headers(&[("authorization", "Basic eDp5")]),
        );
        assert_eq!(a, b);
    }

    #[test]
    fn client_key_prefers_the_ingress_client_name() {
        let key = SessionKey::derive(
            &SessionKeyKind::Client,
            Some("iiq"),
            &headers(&[("authorization", "Basic eDp5")]),
        );
        assert_eq!(key.as_str(), "client:iiq");
    }

    #[test]
    fn client_key_hashes_the_authorization_and_never_shows_it() {
        let secret = "Basic c3ZjOmh1bnRlcjI=";
        let key = SessionKey::derive(
            &SessionKeyKind::Client,
            None,
            &headers(&[("authorization", secret)]),
        );
        let shown = format!("{key} {key:?}");
        assert!(!shown.contains(secret) && !shown.contains("c3ZjOmh1bnRlcjI"));
        assert!(key.as_str().starts_with("auth:"));
        assert_eq!(key.as_str().len(), "auth:".len() + HASH_HEX_LEN);
        let again = SessionKey::derive(
            &SessionKeyKind::Client,
            None,
            &headers(&[("authorization", secret)]),
        );
        assert_eq!(key, again, "the hash is stable so persisted sessions match");
        let other = SessionKey::derive(
            &SessionKeyKind::Client,
            None,
            &headers(&[("authorization", "Basic b3RoZXI6b3RoZXI=")]),
        );
        assert_ne!(key, other);
    }

    #[test]
    fn client_key_without_name_or_authorization_is_anonymous() {
        let key = SessionKey::derive(&SessionKeyKind::Client, None, &HeaderMap::new());
        assert_eq!(key.as_str(), "anonymous");
    }

    #[test]
    fn header_key_hashes_the_named_header() {
        let kind = SessionKeyKind::Header(HeaderName::from_static("x-tenant"));
        let a = SessionKey::derive(&kind, None, &headers(&[("x-tenant", "acme")]));
        let b = SessionKey::derive(&kind, None, &headers(&[("x-tenant", "globex")]));
        assert!(a.as_str().starts_with("header:"));
        assert!(!a.as_str().contains("acme"));
        assert_ne!(a, b);
        let missing = SessionKey::derive(&kind, None, &HeaderMap::new());
        assert_eq!(missing.as_str(), "anonymous");
    }
}
