//! Token-source failures. Every message names the route and the token endpoint so an operator
//! can tell which route's credentials are wrong, and never carries a secret: text that comes
//! from the endpoint is scrubbed of every known secret before anyone can display it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A failed attempt to obtain a token for one route.
#[derive(Debug, Clone, thiserror::Error)]
#[error("route {route}: token endpoint {url}: {failure}")]
pub struct OAuthError {
    route: Arc<str>,
    /// The token URL without user info, query or fragment.
    url: Arc<str>,
    failure: Failure,
}

/// What went wrong, independent of the route.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Failure {
    /// The token client could not be built (TLS configuration, CA file, token URL).
    #[error("cannot set up the token client: {reason}")]
    Setup { reason: String },
    /// An RFC 6749 §5.2 error response: the endpoint understood the request and refused it.
    #[error("refused with HTTP {status}: {error}{}", Described(description.as_deref()))]
    Rejected {
        status: u16,
        error: String,
        description: Option<String>,
    },
    /// The endpoint failed on its side (HTTP 5xx).
    #[error("failed with HTTP {status}{}", Described(error.as_deref()))]
    ServerError { status: u16, error: Option<String> },
    /// No complete response within the route's OAuth timeout.
    #[error("no response within {}", humantime::format_duration(*timeout))]
    Timeout { timeout: Duration },
    /// Connecting, the TLS handshake, or the connection itself failed.
    #[error("cannot reach it: {reason}")]
    Connect { reason: String },
    /// A response that is not a usable token response.
    #[error("unusable response (HTTP {status}): {reason}")]
    InvalidResponse { status: u16, reason: String },
    /// The shared fetch ended without a result (its task was cancelled, say at shutdown).
    #[error("the token request was abandoned")]
    Abandoned,
}

struct Described<'a>(Option<&'a str>);

impl fmt::Display for Described<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(text) => write!(f, " ({text})"),
            None => Ok(()),
        }
    }
}

/// The RFC 6749 §5.2 codes, mapped to stable kinds; anything else is `oauth_rejected`.
const STANDARD_ERRORS: &[(&str, &str)] = &[
    ("invalid_request", "oauth_invalid_request"),
    ("invalid_client", "oauth_invalid_client"),
    ("invalid_grant", "oauth_invalid_grant"),
    ("unauthorized_client", "oauth_unauthorized_client"),
    ("unsupported_grant_type", "oauth_unsupported_grant_type"),
    ("invalid_scope", "oauth_invalid_scope"),
];

/// Longest endpoint-supplied text kept in an error; descriptions are for people, and a
/// misbehaving endpoint must not be able to flood logs and error bodies.
const MAX_TEXT: usize = 256;

impl OAuthError {
    pub(super) fn new(route: &Arc<str>, url: &Arc<str>, failure: Failure) -> Self {
        OAuthError {
            route: route.clone(),
            url: url.clone(),
            failure,
        }
    }

    pub fn route(&self) -> &str {
        &self.route
    }

    pub fn token_url(&self) -> &str {
        &self.url
    }

    pub fn failure(&self) -> &Failure {
        &self.failure
    }

    /// A stable short name for JSON error bodies and metric labels.
    pub fn kind(&self) -> &'static str {
        match &self.failure {
            Failure::Setup { .. } => "oauth_setup",
            Failure::Rejected { error, .. } => STANDARD_ERRORS
                .iter()
                .find(|(code, _)| code == error)
                .map_or("oauth_rejected", |(_, kind)| kind),
            Failure::ServerError { .. } => "oauth_server_error",
            Failure::Timeout { .. } => "oauth_timeout",
            Failure::Connect { .. } => "oauth_connect",
            Failure::InvalidResponse { .. } => "oauth_invalid_response",
            Failure::Abandoned => "oauth_abandoned",
        }
    }

    pub(super) fn is_invalid_grant(&self) -> bool {
        matches!(&self.failure, Failure::Rejected { error, .. } if error == "invalid_grant")
    }

    /// Removes every occurrence of `secrets` from the endpoint-supplied text, strips control
    /// characters (log injection) and bounds the length.
    pub(super) fn scrub(mut self, secrets: &[&str]) -> Self {
        let clean = |text: &mut String| *text = scrub_text(text, secrets);
        match &mut self.failure {
            Failure::Setup { reason }
            | Failure::Connect { reason }
            | Failure::InvalidResponse { reason, .. } => clean(reason),
            Failure::Rejected {
                error, description, ..
            } => {
                clean(error);
                if let Some(description) = description {
                    clean(description);
                }
            }
            Failure::ServerError { error, .. } => {
                if let Some(error) = error {
                    clean(error);
                }
            }
            Failure::Timeout { .. } | Failure::Abandoned => {}
        }
        self
    }
}

fn scrub_text(text: &str, secrets: &[&str]) -> String {
    let out = redact_values(text, secrets);
    // Truncate only after redaction: cutting first could leave half a secret behind.
    out.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_TEXT)
        .collect()
}

/// `text` with every occurrence of a known secret replaced by `[REDACTED]`.
pub(super) fn redact_values(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_owned();
    // Longest first, so a secret that contains another is removed whole.
    let mut secrets: Vec<&str> = secrets.iter().copied().filter(|s| !s.is_empty()).collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for secret in secrets {
        if out.contains(secret) {
            out = out.replace(secret, "[REDACTED]");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(failure: Failure) -> OAuthError {
        OAuthError::new(
            &Arc::from("sn"),
            &Arc::from("https://idp/oauth/token"),
            failure,
        )
    }

    #[test]
    fn scrub_removes_every_known_secret_from_endpoint_text() {
        let err = error(Failure::Rejected {
            status: 400,
            error: "invalid_grant".into(),
            description: Some("password hunter2 for secret s3cr3t-hunter2 is wrong".into()),
        })
        .scrub(&["hunter2", "s3cr3t-hunter2"]);
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("[REDACTED]"));
    }

    #[test]
    fn scrub_strips_control_characters_and_bounds_length() {
        let err = error(Failure::Connect {
            reason: format!("line\r\nforged log line{}", "x".repeat(1000)),
        })
        .scrub(&[]);
        let Failure::Connect { reason } = err.failure() else {
            panic!("variant changed");
        };
        assert!(!reason.contains('\n') && !reason.contains('\r'));
        assert_eq!(reason.chars().count(), MAX_TEXT);
    }

    #[test]
    fn display_names_route_and_token_url() {
        let err = error(Failure::ServerError {
            status: 503,
            error: None,
        });
        assert_eq!(
            err.to_string(),
            "route sn: token endpoint https://idp/oauth/token: failed with HTTP 503"
        );
    }

    #[test]
    fn kind_maps_standard_codes_and_falls_back_for_others() {
        let rejected = |code: &str| {
            error(Failure::Rejected {
                status: 400,
                error: code.into(),
                description: None,
            })
        };
        assert_eq!(rejected("invalid_scope").kind(), "oauth_invalid_scope");
        assert_eq!(rejected("invalid_client").kind(), "oauth_invalid_client");
        assert_eq!(rejected("access_denied").kind(), "oauth_rejected");
        assert_eq!(
            error(Failure::Timeout {
                timeout: Duration::from_secs(1)
            })
            .kind(),
            "oauth_timeout"
        );
    }
}
