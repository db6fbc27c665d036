//! Who may use the proxy. A request must be addressed to a name the proxy serves and, unless
//! browsers are allowed, must not come cross-site from a browser; then each configured client
//! proves itself with a bearer token, Basic credentials or a client certificate; the credential
//! is checked in constant time and removed before the request goes anywhere, so it never
//! reaches a target.

pub mod origin;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, PROXY_AUTHORIZATION};
use http::Request;
use rustls_pki_types::{CertificateDer, ServerName};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{ClientCredential, ClientPlan};
use origin::{ServedHost, ServedNames};

/// The authenticated client of a connection or request.
pub type ClientName = Arc<str>;

enum Check {
    /// SHA-256 of the token, so comparisons take the same time whatever the lengths.
    Token([u8; 32]),
    /// SHA-256 of `username:password`.
    Basic([u8; 32]),
    Certificate,
}

struct Known {
    name: ClientName,
    check: Check,
}

/// The configured clients, with their secrets reduced to digests once at startup.
pub struct Ingress {
    clients: Vec<Known>,
    denials: AtomicU64,
    last_logged_second: AtomicU64,
    served: ServedNames,
    allow_browsers: bool,
}

/// Why a request was refused; the message is safe to log and send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    NoCredential,
    WrongCredential,
}

/// Why a request was refused before anyone looked at its credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screened {
    /// Addressed to a name the proxy does not serve (DNS rebinding, a stray virtual host).
    Misdirected,
    /// Sent by a browser from another site or origin.
    CrossSite,
}

impl Ingress {
    /// `served`: the names the proxy answers to; `allow_browsers`: serve cross-site requests.
    pub fn new(clients: &[ClientPlan], served: ServedNames, allow_browsers: bool) -> Self {
        let clients = clients
            .iter()
            .map(|client| Known {
                name: client.name.as_str().into(),
                check: match &client.credential {
                    ClientCredential::Token(token) => {
                        Check::Token(digest(token.expose().as_bytes()))
                    }
                    ClientCredential::Basic { username, password } => Check::Basic(digest(
                        format!("{username}:{}", password.expose()).as_bytes(),
                    )),
                    ClientCredential::Certificate => Check::Certificate,
                },
            })
            .collect();
        Ingress {
            clients,
            denials: AtomicU64::new(0),
            last_logged_second: AtomicU64::new(0),
            served,
            allow_browsers,
        }
    }

    /// The checks that come before everything else, so that nothing of a refused request is
    /// injected or forwarded: it is addressed to a served name, and it is not a browser's
    /// cross-site request (unless browsers are allowed). `local` is the connection's own address.
    /// `known` is the connection's memo of the `Host` found served on it.
    pub fn screen<B>(
        &self,
        request: &Request<B>,
        local: SocketAddr,
        known: &ServedHost,
    ) -> Result<(), Screened> {
        match self
            .served
            .screen(request, local, known, !self.allow_browsers)
        {
            (false, _) => Err(Screened::Misdirected),
            (true, true) => Err(Screened::CrossSite),
            (true, false) => Ok(()),
        }
    }

    /// Whether anyone must authenticate at all (with no clients, the listener is loopback-only
    /// or explicitly open, which config validation already decided).
    pub fn is_required(&self) -> bool {
        !self.clients.is_empty()
    }

    /// The client named by a verified certificate: a certificate client whose name is one of
    /// the certificate's DNS names. rustls has already verified the chain against `client_ca`.
    pub fn identify_certificate(&self, certificate: &CertificateDer<'_>) -> Option<ClientName> {
        let cert = webpki::EndEntityCert::try_from(certificate).ok()?;
        self.clients
            .iter()
            .filter(|known| matches!(known.check, Check::Certificate))
            .find(|known| {
                ServerName::try_from(known.name.as_ref())
                    .is_ok_and(|name| cert.verify_is_valid_for_subject_name(&name).is_ok())
            })
            .map(|known| known.name.clone())
    }

    /// Checks the request's own credential (`Proxy-Authorization`, else `Authorization`) and
    /// removes it. `connection_client` is the certificate identity, which suffices alone.
    pub fn authenticate(
        &self,
        headers: &mut HeaderMap,
        connection_client: Option<&ClientName>,
    ) -> Result<Option<ClientName>, Denied> {
        if !self.is_required() {
            return Ok(None);
        }
        if let Some(client) = connection_client {
            headers.remove(PROXY_AUTHORIZATION);
            return Ok(Some(client.clone()));
        }
        let header: HeaderName = if headers.contains_key(PROXY_AUTHORIZATION) {
            PROXY_AUTHORIZATION
        } else {
            AUTHORIZATION
        };
        let Some(presented) = headers.get(&header).and_then(Presented::parse) else {
            self.note_denial();
            return Err(Denied::NoCredential);
        };
        let mut found = None;
        for known in &self.clients {
            let matches = match (&known.check, &presented) {
                (Check::Token(expected), Presented::Bearer(actual))
                | (Check::Basic(expected), Presented::Basic(actual)) => {
                    bool::from(expected.ct_eq(actual))
                }
                _ => false,
            };
            if matches && found.is_none() {
                found = Some(known.name.clone());
            }
        }
        match found {
            Some(name) => {
                headers.remove(header);
                Ok(Some(name))
            }
            None => {
                self.note_denial();
                Err(Denied::WrongCredential)
            }
        }
    }

    /// The challenge a refused client gets: the schemes some client may use.
    pub fn challenge(&self) -> Vec<HeaderValue> {
        let mut challenges = Vec::new();
        if self
            .clients
            .iter()
            .any(|known| matches!(known.check, Check::Token(_)))
        {
            challenges.push(HeaderValue::from_static(r#"Bearer realm="provproxy""#));
        }
        if self
            .clients
            .iter()
            .any(|known| matches!(known.check, Check::Basic(_)))
        {
            challenges.push(HeaderValue::from_static(r#"Basic realm="provproxy""#));
        }
        challenges
    }

    pub fn denials(&self) -> u64 {
        self.denials.load(Ordering::Relaxed)
    }

    fn note_denial(&self) {
        self.denials.fetch_add(1, Ordering::Relaxed);
    }

    /// At most one log line per second for refusals, so a client hammering with a wrong token
    /// cannot flood the log (the count is in the metrics).
    pub fn should_log_denial(&self) -> bool {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        self.last_logged_second.swap(now, Ordering::Relaxed) != now
    }
}

/// A credential as the client presented it, already digested.
enum Presented {
    Bearer([u8; 32]),
    Basic([u8; 32]),
}

impl Presented {
    fn parse(value: &HeaderValue) -> Option<Self> {
        let text = value.to_str().ok()?.trim();
        let (scheme, credential) = text.split_once(' ')?;
        let credential = credential.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            Some(Presented::Bearer(digest(credential.as_bytes())))
        } else if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(credential)
                .ok()?;
            Some(Presented::Basic(digest(&decoded)))
        } else {
            None
        }
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Secret, SecretSource};

    fn ingress() -> Ingress {
        let served = ServedNames::new(([127, 0, 0, 1], 8080).into(), false, ["p.internal"]);
        Ingress::new(
            &[
                ClientPlan {
                    name: "iiq".into(),
                    credential: ClientCredential::Token(Secret::new(
                        "t0ken",
                        SecretSource::Literal,
                    )),
                },
                ClientPlan {
                    name: "okta".into(),
                    credential: ClientCredential::Basic {
                        username: "okta".into(),
                        password: Secret::new("pw", SecretSource::Literal),
                    },
                },
            ],
            served,
            false,
        )
    }

    fn headers(name: HeaderName, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn a_known_token_names_its_client_and_is_removed() {
        let mut headers = headers(AUTHORIZATION, "Bearer t0ken");
        assert_eq!(
            ingress()
                .authenticate(&mut headers, None)
                .unwrap()
                .as_deref(),
            Some("iiq")
        );
        assert!(!headers.contains_key(AUTHORIZATION));
    }

    #[test]
    fn basic_credentials_in_proxy_authorization_name_their_client_and_leave_authorization() {
        let mut headers = headers(PROXY_AUTHORIZATION, "Basic b2t0YTpwdw==");
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Basic dGFyZ2V0"));
        assert_eq!(
            ingress()
                .authenticate(&mut headers, None)
                .unwrap()
                .as_deref(),
            Some("okta")
        );
        assert!(!headers.contains_key(PROXY_AUTHORIZATION));
        assert!(headers.contains_key(AUTHORIZATION));
    }

    fn request(headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::post("/scim/Users");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn a_request_to_a_name_not_served_is_misdirected_before_anything_else() {
        let local = ([127, 0, 0, 1], 8080).into();
        for host in ["evil.example", "evil.example:8080"] {
            assert_eq!(
                ingress().screen(&request(&[("host", host)]), local, &ServedHost::default()),
                Err(Screened::Misdirected)
            );
        }
        for host in ["localhost:8080", "127.0.0.1:8080", "P.internal"] {
            assert_eq!(
                ingress().screen(&request(&[("host", host)]), local, &ServedHost::default()),
                Ok(())
            );
        }
    }

    #[test]
    fn a_host_served_earlier_on_a_connection_lets_no_other_name_or_reloaded_names_pass() {
        let local = ([127, 0, 0, 1], 8080).into();
        let known = ServedHost::default();
        let ingress = ingress();
        let served = request(&[("host", "p.internal")]);
        assert_eq!(ingress.screen(&served, local, &known), Ok(()));
        assert_eq!(ingress.screen(&served, local, &known), Ok(()));
        let other = request(&[("host", "evil.example")]);
        assert_eq!(
            ingress.screen(&other, local, &known),
            Err(Screened::Misdirected)
        );
        // A reload's names that no longer include it refuse it on the same connection.
        let reloaded = Ingress::new(&[], ServedNames::new(local, false, []), false);
        assert_eq!(
            reloaded.screen(&served, local, &known),
            Err(Screened::Misdirected)
        );
    }

    #[test]
    fn a_browsers_cross_site_request_is_refused_unless_browsers_are_allowed() {
        let local = ([127, 0, 0, 1], 8080).into();
        let cross_site = request(&[
            ("host", "localhost:8080"),
            ("origin", "http://evil.example"),
            ("content-type", "text/plain"),
        ]);
        assert_eq!(
            ingress().screen(&cross_site, local, &ServedHost::default()),
            Err(Screened::CrossSite)
        );
        let fetched = request(&[("host", "localhost:8080"), ("sec-fetch-site", "cross-site")]);
        assert_eq!(
            ingress().screen(&fetched, local, &ServedHost::default()),
            Err(Screened::CrossSite)
        );
        let allowing = Ingress::new(
            &[],
            ServedNames::new(([127, 0, 0, 1], 8080).into(), false, []),
            true,
        );
        assert_eq!(
            allowing.screen(&cross_site, local, &ServedHost::default()),
            Ok(())
        );
        assert_eq!(
            allowing.screen(&fetched, local, &ServedHost::default()),
            Ok(())
        );
    }

    #[test]
    fn a_wrong_or_missing_credential_is_denied_and_counted() {
        let ingress = ingress();
        let mut wrong = headers(AUTHORIZATION, "Bearer t0kem");
        assert_eq!(
            ingress.authenticate(&mut wrong, None),
            Err(Denied::WrongCredential)
        );
        let mut swapped = headers(AUTHORIZATION, "Basic dDBrZW4=");
        assert_eq!(
            ingress.authenticate(&mut swapped, None),
            Err(Denied::WrongCredential)
        );
        assert_eq!(
            ingress.authenticate(&mut HeaderMap::new(), None),
            Err(Denied::NoCredential)
        );
        assert_eq!(ingress.denials(), 3);
    }
}
