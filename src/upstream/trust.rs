//! How a target's certificate is trusted: like curl `--cacert` and a Java truststore rather
//! than like webpki alone, plus optional public-key pins.
//!
//! webpki refuses a certificate that is itself the trust anchor when it is a CA
//! (`CaUsedAsEndEntity`), which is exactly what `openssl req -x509` makes by default and what
//! appliances and test systems serve. curl and Java accept it when it is in their trust store.
//! So a certificate byte-for-byte equal to one in the route's `ca_file` is trusted as it is,
//! once its name and validity period check out; every other certificate goes through webpki.
//! Pins are checked after either, never instead.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::{CertificateError, DigitallySignedStruct, OtherError, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};

use super::validity::Validity;

/// Verifies target certificates for one route (or token endpoint).
#[derive(Debug)]
pub struct TargetVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    /// The certificates of `ca_file`, trusted as they are when a target presents one of them.
    as_is: Vec<CertificateDer<'static>>,
    pins: Vec<[u8; 32]>,
}

/// The target's certificate verified, but its public key is none of the route's pins.
#[derive(Debug)]
pub struct PinMismatch {
    /// The SPKI SHA-256 the target presented, in the form a pin is written.
    pub presented: String,
}

impl fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the certificate's public key matches no pin_sha256 of the route (it has {})",
            self.presented
        )
    }
}

impl std::error::Error for PinMismatch {}

impl TargetVerifier {
    pub fn new(
        webpki: Arc<WebPkiServerVerifier>,
        as_is: Vec<CertificateDer<'static>>,
        pins: Vec<[u8; 32]>,
    ) -> Self {
        TargetVerifier {
            webpki,
            as_is,
            pins,
        }
    }

    /// Name and validity of a certificate that is itself trusted; nothing to chain.
    fn verify_as_is(
        &self,
        end_entity: &CertificateDer<'_>,
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_name(&parsed, server_name)?;
        let validity = Validity::of(end_entity.as_ref()).ok_or(
            rustls::Error::InvalidCertificate(CertificateError::BadEncoding),
        )?;
        if now.as_secs() < validity.not_before {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidYetContext {
                    time: now,
                    not_before: UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                        validity.not_before,
                    )),
                },
            ));
        }
        if !validity.contains(now) {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::ExpiredContext {
                    time: now,
                    not_after: UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                        validity.not_after,
                    )),
                },
            ));
        }
        Ok(())
    }

    fn check_pins(&self, end_entity: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        if self.pins.is_empty() {
            return Ok(());
        }
        let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
        let digest: [u8; 32] = Sha256::digest(parsed.subject_public_key_info().as_ref()).into();
        if self.pins.contains(&digest) {
            return Ok(());
        }
        use base64::Engine as _;
        let mismatch = PinMismatch {
            presented: base64::engine::general_purpose::STANDARD.encode(digest),
        };
        Err(rustls::Error::InvalidCertificate(CertificateError::Other(
            OtherError(Arc::new(mismatch)),
        )))
    }
}

impl ServerCertVerifier for TargetVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.as_is.iter().any(|trusted| trusted == end_entity) {
            self.verify_as_is(end_entity, server_name, now)?;
        } else {
            self.webpki.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            )?;
        }
        // Pins are matched against the end-entity key only (as curl's --pinnedpubkey does):
        // the other certificates a server sends are its own choice, so a pin found among them
        // would prove nothing.
        self.check_pins(end_entity)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}
