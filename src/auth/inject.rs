//! Puts the route's stored credential on the forwarded request. Header values are built once at
//! startup and marked sensitive (so hyper and HPACK never index or print them).

use base64::Engine;
use http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};

use crate::config::{AuthKind, AuthPlan, When};

/// The credential of one route, ready to put on a request.
pub struct Injector {
    when: When,
    kind: &'static str,
    header: Option<(HeaderName, HeaderValue)>,
}

/// What `inject` did, for the trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injected {
    /// The stored credential of this kind is on the request.
    Stored(&'static str),
    /// The client's own credential went through.
    ClientKept,
    Nothing,
}

impl Injector {
    /// Builds the header once. OAuth routes get no static header: their token comes per request.
    pub fn new(plan: &AuthPlan) -> Self {
        let header = match &plan.kind {
            AuthKind::Basic { username, password } => {
                let encoded = base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{}", password.expose()));
                sensitive(&format!("Basic {encoded}")).map(|value| (AUTHORIZATION, value))
            }
            AuthKind::Bearer { token } => sensitive(&format!(
                "Bearer {}",
                without_scheme(token.expose(), "Bearer")
            ))
            .map(|value| (AUTHORIZATION, value)),
            AuthKind::Header { name, value } => {
                sensitive(value.expose()).map(|value| (name.clone(), value))
            }
            AuthKind::None | AuthKind::OAuth2(_) => None,
        };
        Injector {
            when: plan.when,
            kind: plan.kind.name(),
            header,
        }
    }

    pub fn when(&self) -> When {
        self.when
    }

    /// Whether a credential should go on this request, given what the client sent.
    pub fn applies(&self, headers: &HeaderMap, name: &HeaderName) -> bool {
        match self.when {
            When::Always => true,
            When::Missing => !headers.contains_key(name),
            When::Never => false,
        }
    }

    /// Injects the static credential, if this route has one.
    pub fn inject(&self, headers: &mut HeaderMap) -> Injected {
        let Some((name, value)) = &self.header else {
            return Injected::Nothing;
        };
        if self.applies(headers, name) {
            headers.insert(name.clone(), value.clone());
            Injected::Stored(self.kind)
        } else if headers.contains_key(name) {
            Injected::ClientKept
        } else {
            Injected::Nothing
        }
    }
}

/// A stored token pasted with its scheme (`Bearer xyz` into a field that adds `Bearer `) would
/// go out as `Bearer Bearer xyz`, which targets refuse: strip any leading copies of the scheme.
fn without_scheme<'a>(token: &'a str, scheme: &str) -> &'a str {
    let mut rest = token.trim();
    while let Some(head) = rest.get(..scheme.len()) {
        let after = &rest[scheme.len()..];
        if head.eq_ignore_ascii_case(scheme) && after.starts_with([' ', '\t']) {
            tracing::warn!(
                scheme,
                "stored token starts with its own scheme; sending it once"
            );
            rest = after.trim_start();
        } else {
            break;
        }
    }
    rest
}

/// A header value that hyper treats as sensitive, or `None` if it cannot be a header value
/// (config validation already refused such secrets).
pub fn sensitive(text: &str) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_str(text).ok()?;
    value.set_sensitive(true);
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_token_pasted_with_its_scheme_is_sent_with_one_scheme() {
        assert_eq!(without_scheme("Bearer xyz", "Bearer"), "xyz");
        assert_eq!(without_scheme("bearer  Bearer xyz", "Bearer"), "xyz");
        assert_eq!(without_scheme("Bearerxyz", "Bearer"), "Bearerxyz");
        assert_eq!(without_scheme("xyz", "Bearer"), "xyz");
    }
}
