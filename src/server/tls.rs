//! The listener's rustls configuration: certificate chain and key from PEM files.

use std::path::Path;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;

use super::StartupError;
use crate::config::TlsPlan;
use crate::upstream::tls::{provider, read_certificates};

pub fn server_config(plan: &TlsPlan) -> Result<Arc<ServerConfig>, StartupError> {
    let tls_error = |path: &Path, reason: String| StartupError::Tls {
        path: path.to_owned(),
        reason,
    };
    let certs =
        read_certificates(&plan.cert).map_err(|err| tls_error(&plan.cert, err.to_string()))?;
    let key = PrivateKeyDer::from_pem_file(&plan.key)
        .map_err(|err| tls_error(&plan.key, format!("cannot read the private key: {err}")))?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|err| tls_error(&plan.cert, err.to_string()))?;
    let builder = match &plan.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certificates(ca).map_err(|err| tls_error(ca, err.to_string()))? {
                roots
                    .add(cert)
                    .map_err(|err| tls_error(ca, format!("unusable CA certificate: {err}")))?;
            }
            // Clients without a certificate may still connect and authenticate with a token;
            // those with one must present a certificate that chains to this CA.
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .allow_unauthenticated()
                .build()
                .map_err(|err| tls_error(ca, err.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|err| tls_error(&plan.cert, format!("certificate and key do not fit: {err}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
