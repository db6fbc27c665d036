//! Secrets from the config: where they come from, and a value type that never shows itself.

use std::fmt;
use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};

/// Where a secret was read from; safe to print (it names the source, not the value).
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
    Literal,
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Env(name) => write!(f, "env {name}"),
            SecretSource::File(path) => write!(f, "file {}", path.display()),
            SecretSource::Literal => f.write_str("literal in config"),
        }
    }
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A resolved secret. `Debug` and `Display` print `[REDACTED]` and the source, never the value,
/// so a secret inside any struct is safe to log by construction.
#[derive(Clone)]
pub struct Secret {
    value: SecretString,
    source: SecretSource,
    /// The env var or file was not there and `check` went on without it: the value is empty.
    missing: bool,
}

impl Secret {
    pub fn new(value: impl Into<String>, source: SecretSource) -> Self {
        Secret {
            value: SecretString::from(value.into()),
            source,
            missing: false,
        }
    }

    /// A secret whose source is absent, for validating a config away from its secrets
    /// (`provproxy check` on a laptop or in CI). A plan holding one can be rendered, not run.
    pub fn missing(source: SecretSource) -> Self {
        Secret {
            value: SecretString::from(String::new()),
            source,
            missing: true,
        }
    }

    pub fn is_missing(&self) -> bool {
        self.missing
    }

    /// The value, for the few places that must put it on the wire or compare it.
    pub fn expose(&self) -> &str {
        self.value.expose_secret()
    }

    pub fn source(&self) -> &SecretSource {
        &self.source
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[REDACTED] ({})", self.source)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let secret = Secret::new("hunter2", SecretSource::Env("PW".into()));
        assert!(!format!("{secret:?}").contains("hunter2"));
        assert!(!format!("{secret}").contains("hunter2"));
        assert!(format!("{secret:?}").contains("env PW"));
        assert_eq!(secret.expose(), "hunter2");
    }
}
