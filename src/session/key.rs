//! Which session a request belongs to.

use std::fmt;
use std::sync::{Arc, LazyLock};

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::config::{SessionKeyKind, SessionPlan};

/// Bytes of the secret that keys the hashes.
pub(crate) const HASH_KEY_LEN: usize = 32;

/// 16 hex digits (64 bits): collisions stay negligible for any realistic number of sessions,
/// and the short form is readable in `/sessions` and traces.
const HASH_HEX_LEN: usize = 16;

/// The fixed keys, allocated once rather than per request.
static ROUTE: LazyLock<SessionKey> = LazyLock::new(|| SessionKey(Arc::from("route")));
static ANONYMOUS: LazyLock<SessionKey> = LazyLock::new(|| SessionKey(Arc::from("anonymous")));

/// Keys the hashes of session keys with a per-installation secret (HMAC-SHA256), so that a
/// hash shown by `/sessions` or a trace cannot be matched against guessed header values or
/// credentials by anyone who lacks that secret. Its `Debug` never shows the secret.
#[derive(Clone)]
pub struct KeyHasher {
    key: hmac::Key,
}

impl KeyHasher {
    pub(crate) fn new(secret: &[u8; HASH_KEY_LEN]) -> KeyHasher {
        KeyHasher {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    /// A secret for this process only: enough where sessions do not outlive it.
    pub(crate) fn random() -> Result<KeyHasher, ring::error::Unspecified> {
        Ok(KeyHasher::new(&random_secret()?))
    }

    /// `tag:` and the first 64 bits of the HMAC of `value`, within `scope` (the authenticated
    /// client) when there is one. Each part is framed, so no two (scope, value) pairs collide.
    pub(super) fn hashed(&self, tag: &str, scope: Option<&str>, value: &[u8]) -> SessionKey {
        let mut context = hmac::Context::with_key(&self.key);
        context.update(tag.as_bytes());
        match scope {
            Some(scope) => {
                context.update(&[1]);
                context.update(&(scope.len() as u64).to_be_bytes());
                context.update(scope.as_bytes());
            }
            None => context.update(&[0]),
        }
        context.update(value);
        let digest = context.sign();
        let mut text = String::with_capacity(tag.len() + 1 + HASH_HEX_LEN);
        text.push_str(tag);
        text.push(':');
        for byte in &digest.as_ref()[..HASH_HEX_LEN / 2] {
            text.push(char::from(HEX[usize::from(byte >> 4)]));
            text.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        SessionKey(Arc::from(text))
    }
}

impl fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyHasher([REDACTED])")
    }
}

pub(crate) fn random_secret() -> Result<[u8; HASH_KEY_LEN], ring::error::Unspecified> {
    let mut secret = [0u8; HASH_KEY_LEN];
    SystemRandom::new().fill(&mut secret)?;
    Ok(secret)
}

/// A request on a `header:NAME` route without that header and without a `default_key`: it
/// cannot be told apart from other clients' requests, so it must not share anyone's session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the request has no {header} header, which names its session on this route")]
pub struct MissingKeyHeader {
    pub header: HeaderName,
}

/// The identity of one session within a route. It never holds a raw credential or client
/// name: values that may be secret (an `Authorization` header, a configured key header, the
/// client's name) are keyed hashes. Its `Display` form is what `/sessions` and traces show,
/// and what the state file stores.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionKey(Arc<str>);

impl SessionKey {
    /// The key for a request, from the route's `session.key` setting.
    ///
    /// - `route`: one fixed key.
    /// - `client`: a hash of the authenticated ingress client's name, otherwise of the
    ///   client's `Authorization` value, otherwise `anonymous`.
    /// - `header:NAME`: a hash of that header's value (or of `default_key` when it is absent),
    ///   scoped to the authenticated client: client A's `X-Tenant: t1` is not client B's.
    pub fn derive(
        plan: &SessionPlan,
        client_name: Option<&str>,
        headers: &HeaderMap,
        hasher: &KeyHasher,
    ) -> Result<SessionKey, MissingKeyHeader> {
        match &plan.key {
            SessionKeyKind::Route => Ok(ROUTE.clone()),
            SessionKeyKind::Client => Ok(match (client_name, headers.get(AUTHORIZATION)) {
                (Some(name), _) => hasher.hashed("client", None, name.as_bytes()),
                (None, Some(value)) => hasher.hashed("auth", None, value.as_bytes()),
                (None, None) => ANONYMOUS.clone(),
            }),
            SessionKeyKind::Header(name) => {
                let value = match (headers.get(name), &plan.default_key) {
                    (Some(value), _) => value.as_bytes(),
                    (None, Some(default)) => default.as_bytes(),
                    (None, None) => {
                        return Err(MissingKeyHeader {
                            header: name.clone(),
                        })
                    }
                };
                Ok(hasher.hashed("header", client_name, value))
            }
        }
    }

    /// Rebuilds a key from its displayed form (the state file, the admin API).
    pub(crate) fn from_display(text: &str) -> SessionKey {
        SessionKey(Arc::from(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The displayed form, shared: a trace record holds the key without copying it.
    pub fn shared(&self) -> Arc<str> {
        Arc::clone(&self.0)
    }
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
    use crate::config::ClientCookies;
    use http::{HeaderName, HeaderValue, StatusCode};
    use std::time::Duration;

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

    fn plan(key: SessionKeyKind, default_key: Option<&str>) -> SessionPlan {
        SessionPlan {
            cookies: true,
            key,
            idle_timeout: Duration::from_secs(900),
            serialize: false,
            relogin_on: vec![StatusCode::UNAUTHORIZED],
            relogin_body_contains: None,
            replay_body_limit: 1 << 20,
            persist: None,
            client_cookies: ClientCookies::Strip,
            login: None,
            max_sessions: 10,
            default_key: default_key.map(str::to_owned),
            tokens: Vec::new(),
        }
    }

    fn tenant() -> SessionPlan {
        plan(
            SessionKeyKind::Header(HeaderName::from_static("x-tenant")),
            None,
        )
    }

    fn hasher(byte: u8) -> KeyHasher {
        KeyHasher::new(&[byte; HASH_KEY_LEN])
    }

    fn derive(plan: &SessionPlan, client: Option<&str>, pairs: &[(&str, &str)]) -> SessionKey {
        SessionKey::derive(plan, client, &headers(pairs), &hasher(7)).unwrap()
    }

    #[test]
    fn route_key_is_the_same_for_every_request() {
        let route = plan(SessionKeyKind::Route, None);
        let a = derive(&route, Some("iiq"), &[]);
        let b = derive(&route, None, &[("authorization", "Basic eDp5")]);
        assert_eq!(a, b);
        assert_eq!(a.as_str(), "route");
    }

    #[test]
    fn client_key_hashes_the_ingress_client_name_and_never_shows_it() {
        let client = plan(SessionKeyKind::Client, None);
        let key = derive(&client, Some("iiq"), &[("authorization", "Basic eDp5")]);
        assert!(key.as_str().starts_with("client:"), "{key}");
        assert!(!key.as_str().contains("iiq"), "{key}");
        assert_eq!(key, derive(&client, Some("iiq"), &[]));
        assert_ne!(key, derive(&client, Some("okta"), &[]));
    }

    #[test]
    fn client_key_hashes_the_authorization_and_never_shows_it() {
        let client = plan(SessionKeyKind::Client, None);
        let secret = "Basic c3ZjOmh1bnRlcjI=";
        let key = derive(&client, None, &[("authorization", secret)]);
        let shown = format!("{key} {key:?}");
        assert!(!shown.contains(secret) && !shown.contains("c3ZjOmh1bnRlcjI"));
        assert!(key.as_str().starts_with("auth:"));
        assert_eq!(key.as_str().len(), "auth:".len() + HASH_HEX_LEN);
        let again = derive(&client, None, &[("authorization", secret)]);
        assert_eq!(key, again, "the hash is stable so persisted sessions match");
        let other = derive(
            &client,
            None,
            &[("authorization", "Basic b3RoZXI6b3RoZXI=")],
        );
        assert_ne!(key, other);
    }

    #[test]
    fn client_key_without_name_or_authorization_is_anonymous() {
        let key = derive(&plan(SessionKeyKind::Client, None), None, &[]);
        assert_eq!(key.as_str(), "anonymous");
    }

    #[test]
    fn header_key_hashes_the_named_header() {
        let a = derive(&tenant(), None, &[("x-tenant", "acme")]);
        let b = derive(&tenant(), None, &[("x-tenant", "globex")]);
        assert!(a.as_str().starts_with("header:"));
        assert!(!a.as_str().contains("acme"));
        assert_ne!(a, b);
    }

    #[test]
    fn the_same_header_value_from_two_clients_is_two_keys() {
        let a = derive(&tenant(), Some("iiq"), &[("x-tenant", "t1")]);
        let b = derive(&tenant(), Some("okta"), &[("x-tenant", "t1")]);
        let unscoped = derive(&tenant(), None, &[("x-tenant", "t1")]);
        assert_ne!(a, b);
        assert_ne!(a, unscoped);
        assert_eq!(a, derive(&tenant(), Some("iiq"), &[("x-tenant", "t1")]));
        // The framing keeps a client name from spilling into the value.
        let shifted = derive(&tenant(), Some("ii"), &[("x-tenant", "qt1")]);
        assert_ne!(a, shifted);
    }

    #[test]
    fn a_missing_key_header_is_an_error_naming_it_unless_a_default_is_set() {
        let missing = SessionKey::derive(&tenant(), None, &HeaderMap::new(), &hasher(7));
        let error = missing.unwrap_err();
        assert_eq!(error.header, "x-tenant");
        assert!(error.to_string().contains("x-tenant"), "{error}");

        let with_default = plan(
            SessionKeyKind::Header(HeaderName::from_static("x-tenant")),
            Some("shared"),
        );
        let defaulted = derive(&with_default, None, &[]);
        assert_eq!(
            defaulted,
            derive(&with_default, None, &[("x-tenant", "shared")]),
            "a missing header counts as the default value"
        );
        assert_ne!(
            defaulted,
            derive(&with_default, None, &[("x-tenant", "other")])
        );
    }

    #[test]
    fn hashes_depend_on_the_installation_secret() {
        let value = headers(&[("x-tenant", "acme")]);
        let a = SessionKey::derive(&tenant(), None, &value, &hasher(1)).unwrap();
        let b = SessionKey::derive(&tenant(), None, &value, &hasher(2)).unwrap();
        assert_ne!(a, b);
        let random = KeyHasher::random().unwrap();
        assert_eq!(format!("{random:?}"), "KeyHasher([REDACTED])");
    }
}
