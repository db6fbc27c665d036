//! rustls client configuration for upstreams and token endpoints: system roots, webpki roots,
//! and an optional private CA or self-signed certificate per route (targets often sit behind
//! one), or that `ca_file` alone; optional public-key pins on top (see `trust`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::client::WebPkiServerVerifier;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use super::trust::TargetVerifier;
use crate::config::Trust;

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read CA file {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
    #[error("CA file {path} holds no usable certificate")]
    NoCertificate { path: PathBuf },
    #[error("cannot build TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("cannot build the certificate verifier: {0}")]
    Verifier(String),
}

/// The single crypto provider of the whole build.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// System and webpki roots, read once per process: reading the system store walks the disk.
fn public_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            // A single unparsable system certificate must not make every upstream unusable.
            let _ = roots.add(cert);
        }
        roots
    })
}

/// Reads every certificate of a PEM file.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|err| TlsSetupError::CaFile {
            path: path.to_owned(),
            reason: err.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsSetupError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// What one route (or token endpoint) trusts: see `[routes.tls]`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TrustSpec<'a> {
    pub ca_file: Option<&'a Path>,
    pub trust: Trust,
    pub pins: &'a [[u8; 32]],
}

/// A client configuration for `spec`: webpki over the chosen roots, the `ca_file`
/// certificates also trusted as they are (a self-signed target), and the pins on top.
pub fn client_config(spec: &TrustSpec<'_>) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let mut roots = match spec.trust {
        Trust::SystemAndCaFile => public_roots().clone(),
        Trust::CaFileOnly => RootCertStore::empty(),
    };
    let mut as_is = Vec::new();
    if let Some(path) = spec.ca_file {
        for cert in read_certificates(path)? {
            roots
                .add(cert.clone())
                .map_err(|err| TlsSetupError::CaFile {
                    path: path.to_owned(),
                    reason: err.to_string(),
                })?;
            as_is.push(cert);
        }
    }
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|err| TlsSetupError::Verifier(err.to_string()))?;
    let verifier = TargetVerifier::new(webpki, as_is, spec.pins.to_vec());
    // No ALPN here: hyper-rustls sets it from the HTTP versions it enables (HTTP/1.1 only).
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(Arc::new(config))
}
