//! Serde types that mirror the TOML file one to one. Nothing here is validated beyond its
//! shape; `validate` turns it into the runtime plan.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub server: Option<RawServer>,
    pub admin: Option<RawAdmin>,
    pub trace: Option<RawTrace>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    pub state: Option<RawState>,
    pub log: Option<RawLog>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<String>,
    pub tls: Option<RawTls>,
    #[serde(default)]
    pub clients: Vec<RawClient>,
    pub allow_anyone: Option<bool>,
    pub workers: Option<usize>,
    pub shutdown_grace: Option<String>,
    pub max_headers: Option<usize>,
    pub max_header_size: Option<String>,
    pub header_read_timeout: Option<String>,
    pub body_read_timeout: Option<String>,
    pub max_request_body: Option<String>,
    pub tls_handshake_timeout: Option<String>,
    pub first_byte_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub http2_keep_alive_interval: Option<String>,
    pub http2_keep_alive_timeout: Option<String>,
    pub max_connections: Option<usize>,
    pub hosts: Option<Vec<String>>,
    pub allow_browsers: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert: String,
    pub key: String,
    pub client_ca: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClient {
    pub name: String,
    pub token: Option<RawSecret>,
    pub username: Option<String>,
    pub password: Option<RawSecret>,
    /// `true`: the client is identified by its TLS certificate (requires `server.tls.client_ca`).
    pub certificate: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: String,
    pub token: Option<RawSecret>,
    #[serde(default)]
    pub hosts: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrace {
    pub har: Option<String>,
    pub jsonl: Option<String>,
    pub bodies: Option<bool>,
    pub max_body: Option<String>,
    #[serde(default)]
    pub redact_fields: Vec<String>,
    pub rotate_size: Option<String>,
    pub channel_capacity: Option<usize>,
    pub recent: Option<usize>,
    pub keep: Option<usize>,
    pub queue_size: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub access: Option<String>,
}

/// `[state]`: where sessions live and how they are kept at rest.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    pub backend: Option<String>,
    pub encryption_key: Option<RawSecret>,
    pub encryption_key_previous: Option<RawSecret>,
    pub url: Option<String>,
    pub username: Option<String>,
    pub password: Option<RawSecret>,
    pub key_prefix: Option<String>,
    pub on_unavailable: Option<String>,
    pub connect_timeout: Option<String>,
    pub command_timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: String,
    pub prefix: Option<String>,
    pub host: Option<String>,
    pub strip_prefix: Option<bool>,
    pub upstream: String,
    pub ca_file: Option<String>,
    pub connect_timeout: Option<String>,
    pub request_timeout: Option<String>,
    pub preserve_host: Option<bool>,
    pub clients: Option<Vec<String>>,
    pub max_request_body: Option<String>,
    pub auth: Option<RawAuth>,
    pub session: Option<RawSession>,
    pub challenge: Option<RawChallenge>,
    pub allow_encoded_slashes: Option<bool>,
    pub tls: Option<RawTargetTls>,
    pub trace: Option<RawRouteTrace>,
}

/// `[routes.tls]`: how the target's certificate is trusted.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTargetTls {
    pub trust: Option<String>,
    pub pin_sha256: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouteTrace {
    /// Record bodies the trace cannot redact (text, binary, unknown types) as they are.
    pub raw_bodies: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    pub kind: String,
    pub when: Option<String>,
    pub normalize: Option<bool>,
    pub username: Option<String>,
    pub password: Option<RawSecret>,
    pub token: Option<RawSecret>,
    pub name: Option<String>,
    pub value: Option<RawSecret>,
    pub grant: Option<String>,
    pub token_url: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<RawSecret>,
    pub client_auth: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub params: Option<BTreeMap<String, String>>,
    pub ca_file: Option<String>,
    pub refresh_skew: Option<String>,
    pub timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSession {
    pub cookies: Option<bool>,
    pub key: Option<String>,
    pub idle_timeout: Option<String>,
    pub serialize: Option<bool>,
    pub relogin_on: Option<Vec<u16>>,
    pub relogin_body_contains: Option<String>,
    pub replay_body_limit: Option<String>,
    pub persist: Option<String>,
    pub client_cookies: Option<String>,
    pub login: Option<RawLogin>,
    pub max_sessions: Option<usize>,
    pub default_key: Option<String>,
    #[serde(default)]
    pub tokens: Vec<RawToken>,
}

/// `[[routes.session.tokens]]`: a value captured from a response and sent on later requests.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawToken {
    pub name: String,
    pub fetch: RawTokenFetch,
    pub from: String,
    pub to: String,
    pub format: Option<String>,
    pub methods: Option<Vec<String>>,
    pub refetch_on: Option<Vec<u16>>,
}

/// The request that fetches a token when the session has none.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTokenFetch {
    pub method: Option<String>,
    pub path: String,
    pub headers: Option<BTreeMap<String, String>>,
    pub body: Option<RawSecret>,
    pub content_type: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogin {
    pub method: Option<String>,
    pub path: String,
    pub expect_status: Option<Vec<u16>>,
    pub body: Option<RawSecret>,
    pub content_type: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChallenge {
    pub mode: Option<String>,
    #[serde(default)]
    pub add: Vec<String>,
    #[serde(default)]
    pub remove: Vec<String>,
    pub split: Option<bool>,
}

/// A secret as written: a literal string, `{ env = "NAME" }` or `{ file = "PATH" }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawSecret {
    Literal(String),
    Env(String),
    File(String),
}

impl<'de> Deserialize<'de> for RawSecret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SecretVisitor;

        impl<'de> Visitor<'de> for SecretVisitor {
            type Value = RawSecret;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"a string, { env = "NAME" } or { file = "PATH" }"#)
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<RawSecret, E> {
                Ok(RawSecret::Literal(value.to_owned()))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawSecret, A::Error> {
                let mut found: Option<RawSecret> = None;
                while let Some(key) = map.next_key::<String>()? {
                    let value: String = map.next_value()?;
                    let secret = match key.as_str() {
                        "env" => RawSecret::Env(value),
                        "file" => RawSecret::File(value),
                        _ => return Err(de::Error::unknown_field(&key, &["env", "file"])),
                    };
                    if found.is_some() {
                        return Err(de::Error::custom(
                            "a secret takes exactly one of `env` or `file`",
                        ));
                    }
                    found = Some(secret);
                }
                found.ok_or_else(|| de::Error::custom("a secret needs `env` or `file`"))
            }
        }

        deserializer.deserialize_any(SecretVisitor)
    }
}
