//! What goes to the token endpoint (RFC 6749 §2.3.1, §4.3, §4.4, §6) and what comes back
//! (§5.1, §5.2). The request bodies are built once per route; only the refresh body, which
//! carries the latest refresh token, is built per fetch.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use serde_json::Value;
use url::form_urlencoded;

use super::error::Failure;
use crate::config::{ClientAuth, Grant, OAuthPlan};

/// Lifetime assumed when the endpoint sends no `expires_in` (§5.1 makes it optional). An hour
/// is what most providers issue; a bounded guess means a token whose real lifetime is unknown
/// is still replaced periodically, and the 401 → invalidate path covers an earlier expiry.
pub(super) const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// Lifetimes are clamped to this so that `Instant + lifetime` cannot overflow.
const MAX_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);

/// The prepared requests of one route. Holds secrets; deliberately not `Debug`.
pub(super) struct Requests {
    /// `Authorization: Basic ...` for `client_auth = basic`, marked sensitive.
    pub(super) basic: Option<HeaderValue>,
    /// The whole form body of the route's primary grant.
    pub(super) primary: Bytes,
    /// Client credentials (for `post`) and extra parameters, already encoded; appended to the
    /// refresh body too because the refresh request must authenticate the client the same way.
    common: String,
    /// The encoded forms of the client secret and password, as an endpoint might echo them.
    pub(super) encoded_secrets: Vec<String>,
}

impl Requests {
    pub(super) fn new(plan: &OAuthPlan) -> Result<Requests, Failure> {
        let mut encoded_secrets = Vec::new();
        let mut common = form_urlencoded::Serializer::new(String::new());
        let basic = match (&plan.client_secret, plan.client_auth) {
            (Some(secret), ClientAuth::Basic) => {
                // §2.3.1: id and secret are form-urlencoded before they are joined and encoded.
                let id = encode_component(&plan.client_id);
                let secret = encode_component(secret.expose());
                let credentials = STANDARD.encode(format!("{id}:{secret}"));
                let mut value =
                    HeaderValue::try_from(format!("Basic {credentials}")).map_err(|_| {
                        Failure::Setup {
                            reason: "client credentials do not fit in a header".into(),
                        }
                    })?;
                value.set_sensitive(true);
                encoded_secrets.push(secret);
                encoded_secrets.push(credentials);
                Some(value)
            }
            (Some(secret), ClientAuth::Post) => {
                common.append_pair("client_id", &plan.client_id);
                common.append_pair("client_secret", secret.expose());
                encoded_secrets.push(encode_component(secret.expose()));
                None
            }
            // A public client has no secret and identifies itself in the body (§2.3.1).
            (None, _) => {
                common.append_pair("client_id", &plan.client_id);
                None
            }
        };
        for (name, value) in &plan.extra_params {
            common.append_pair(name, value);
        }
        let common = common.finish();

        let mut primary = form_urlencoded::Serializer::new(String::new());
        match &plan.grant {
            Grant::ClientCredentials => {
                primary.append_pair("grant_type", "client_credentials");
            }
            Grant::Password { username, password } => {
                primary.append_pair("grant_type", "password");
                primary.append_pair("username", username);
                primary.append_pair("password", password.expose());
                encoded_secrets.push(encode_component(password.expose()));
            }
        }
        if !plan.scopes.is_empty() {
            primary.append_pair("scope", &plan.scopes.join(" "));
        }
        let primary = join_forms(primary.finish(), &common);
        Ok(Requests {
            basic,
            primary: Bytes::from(primary),
            common,
            encoded_secrets,
        })
    }

    /// §6: no `scope`, so the endpoint grants what the original token had.
    pub(super) fn refresh(&self, refresh_token: &str) -> Bytes {
        let grant = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "refresh_token")
            .append_pair("refresh_token", refresh_token)
            .finish();
        Bytes::from(join_forms(grant, &self.common))
    }
}

fn encode_component(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

fn join_forms(mut first: String, second: &str) -> String {
    if !second.is_empty() {
        first.push('&');
        first.push_str(second);
    }
    first
}

/// A successful token response.
pub(super) struct Issued {
    pub(super) access_token: String,
    pub(super) lifetime: Duration,
    pub(super) refresh_token: Option<String>,
    pub(super) scope: Option<String>,
}

/// Reads a token endpoint response. Reasons never quote a response value: the body holds the
/// very tokens that must not leak.
pub(super) fn interpret(status: StatusCode, body: &[u8]) -> Result<Issued, Failure> {
    let json = serde_json::from_slice::<Value>(body).ok();
    let field = |name: &str| {
        json.as_ref()
            .and_then(|v| v.get(name))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    if status.is_server_error() {
        return Err(Failure::ServerError {
            status: status.as_u16(),
            error: field("error"),
        });
    }
    let invalid = |reason: &str| Failure::InvalidResponse {
        status: status.as_u16(),
        reason: reason.to_owned(),
    };
    if status.is_client_error() {
        return match field("error") {
            Some(error) => Err(Failure::Rejected {
                status: status.as_u16(),
                error,
                description: field("error_description"),
            }),
            None => Err(invalid("an error status without an OAuth error body")),
        };
    }
    if !status.is_success() {
        return Err(invalid("neither a token nor an error response"));
    }
    let Some(json) = json.as_ref().filter(|v| v.is_object()) else {
        return Err(invalid("the body is not a JSON object"));
    };
    let access_token = match json.get("access_token").and_then(Value::as_str) {
        Some(token) if !token.is_empty() => token.to_owned(),
        _ => return Err(invalid("no access_token")),
    };
    match json.get("token_type") {
        None | Some(Value::Null) => {}
        Some(Value::String(kind)) if kind.eq_ignore_ascii_case("bearer") => {}
        Some(Value::String(kind)) if is_short_name(kind) => {
            return Err(invalid(&format!(
                "token_type {kind} is not Bearer, the only type provproxy can inject"
            )))
        }
        Some(_) => return Err(invalid("token_type is not Bearer")),
    }
    let lifetime = match json.get("expires_in") {
        None | Some(Value::Null) => DEFAULT_LIFETIME,
        // Some providers (Azure AD v1, older ADFS) send the number as a string.
        Some(value) => value
            .as_u64()
            .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
            .map(|secs| Duration::from_secs(secs).min(MAX_LIFETIME))
            .ok_or_else(|| invalid("expires_in is not a non-negative whole number"))?,
    };
    Ok(Issued {
        access_token,
        lifetime,
        refresh_token: json
            .get("refresh_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_owned),
        scope: json.get("scope").and_then(Value::as_str).map(str::to_owned),
    })
}

/// A token type worth quoting in an error: short and made of name characters, so it cannot be
/// a token that an endpoint put in the wrong field.
fn is_short_name(kind: &str) -> bool {
    kind.len() <= 16
        && kind
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Secret, SecretSource};

    fn plan(grant: Grant, client_auth: ClientAuth) -> OAuthPlan {
        OAuthPlan {
            grant,
            token_url: "https://idp.example/oauth/token".parse().unwrap(),
            client_id: "prov proxy".into(),
            client_secret: Some(Secret::new("s:e&c", SecretSource::Literal)),
            client_auth,
            scopes: vec!["scim".into(), "users.read".into()],
            extra_params: vec![("audience".into(), "https://api".into())],
            ca_file: None,
            refresh_skew: None,
            timeout: Duration::from_secs(5),
        }
    }

    fn form(body: &[u8]) -> Vec<(String, String)> {
        form_urlencoded::parse(body).into_owned().collect()
    }

    #[test]
    fn basic_client_auth_urlencodes_id_and_secret_before_base64() {
        let requests = Requests::new(&plan(Grant::ClientCredentials, ClientAuth::Basic)).unwrap();
        let header = requests.basic.expect("basic header");
        assert!(header.is_sensitive());
        let encoded = header.to_str().unwrap().strip_prefix("Basic ").unwrap();
        let decoded = String::from_utf8(STANDARD.decode(encoded).unwrap()).unwrap();
        assert_eq!(decoded, "prov+proxy:s%3Ae%26c");
        assert!(!form(&requests.primary)
            .iter()
            .any(|(k, _)| k == "client_secret"));
    }

    #[test]
    fn post_client_auth_and_password_grant_put_everything_in_the_form() {
        let password = Secret::new("pw&1", SecretSource::Literal);
        let grant = Grant::Password {
            username: "svc".into(),
            password,
        };
        let requests = Requests::new(&plan(grant, ClientAuth::Post)).unwrap();
        assert!(requests.basic.is_none());
        let pairs = form(&requests.primary);
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("grant_type"), Some("password"));
        assert_eq!(get("username"), Some("svc"));
        assert_eq!(get("password"), Some("pw&1"));
        assert_eq!(get("client_id"), Some("prov proxy"));
        assert_eq!(get("client_secret"), Some("s:e&c"));
        assert_eq!(get("scope"), Some("scim users.read"));
        assert_eq!(get("audience"), Some("https://api"));
    }

    #[test]
    fn refresh_body_carries_the_token_and_client_auth_but_no_scope() {
        let requests = Requests::new(&plan(Grant::ClientCredentials, ClientAuth::Post)).unwrap();
        let pairs = form(&requests.refresh("rt/+1"));
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("grant_type"), Some("refresh_token"));
        assert_eq!(get("refresh_token"), Some("rt/+1"));
        assert_eq!(get("client_secret"), Some("s:e&c"));
        assert_eq!(get("scope"), None);
    }

    #[test]
    fn token_type_bearer_any_case_or_missing_is_accepted_others_rejected() {
        for body in [
            r#"{"access_token":"a","token_type":"bEaReR"}"#,
            r#"{"access_token":"a"}"#,
        ] {
            assert!(interpret(StatusCode::OK, body.as_bytes()).is_ok(), "{body}");
        }
        let err = interpret(
            StatusCode::OK,
            br#"{"access_token":"a","token_type":"mac"}"#,
        )
        .err()
        .unwrap();
        assert!(
            matches!(err, Failure::InvalidResponse { ref reason, .. } if reason.contains("mac"))
        );
    }

    #[test]
    fn expires_in_is_read_as_number_or_string_and_defaults_to_an_hour() {
        let lifetime = |body: &str| interpret(StatusCode::OK, body.as_bytes()).unwrap().lifetime;
        assert_eq!(
            lifetime(r#"{"access_token":"a","expires_in":90}"#),
            Duration::from_secs(90)
        );
        assert_eq!(
            lifetime(r#"{"access_token":"a","expires_in":"90"}"#),
            Duration::from_secs(90)
        );
        assert_eq!(lifetime(r#"{"access_token":"a"}"#), DEFAULT_LIFETIME);
        assert!(interpret(StatusCode::OK, br#"{"access_token":"a","expires_in":-1}"#).is_err());
    }

    #[test]
    fn error_responses_are_classified_by_status() {
        let rejected = interpret(
            StatusCode::UNAUTHORIZED,
            br#"{"error":"invalid_client","error_description":"bad secret"}"#,
        );
        assert!(matches!(
            rejected,
            Err(Failure::Rejected { status: 401, ref error, description: Some(_) }) if error == "invalid_client"
        ));
        assert!(matches!(
            interpret(StatusCode::BAD_GATEWAY, b"<html>"),
            Err(Failure::ServerError { status: 502, .. })
        ));
        assert!(matches!(
            interpret(StatusCode::NOT_FOUND, b"<html>"),
            Err(Failure::InvalidResponse { status: 404, .. })
        ));
        assert!(matches!(
            interpret(StatusCode::OK, b"access_token=a"),
            Err(Failure::InvalidResponse { .. })
        ));
    }

    #[test]
    fn invalid_response_reasons_never_quote_the_token() {
        let err = interpret(
            StatusCode::OK,
            br#"{"access_token":"tok-SECRET","token_type":"tok-SECRET-looooooong-value"}"#,
        )
        .err()
        .unwrap();
        assert!(!format!("{err} {err:?}").contains("SECRET"));
    }
}
