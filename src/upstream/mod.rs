//! The upstream side: a hyper-util HTTP/1.1 keep-alive pool per route over rustls, with
//! connect and response-head timeouts, and failures classified for the client's error body.

pub mod tls;

use std::error::Error as StdError;
use std::io;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::Upstream as UpstreamPlan;
use crate::proxy::body::{ClientBodyFault, ProxyBody};

pub use tls::TlsSetupError;

/// Why a request did not get a response head from the target.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connection refused by {authority}")]
    Refused { authority: String },
    #[error("cannot resolve {authority}: {detail}")]
    Dns { authority: String, detail: String },
    #[error("TLS handshake with {authority} failed: {detail}")]
    Tls { authority: String, detail: String },
    #[error("no connection to {authority} within {timeout:?}")]
    ConnectTimeout {
        authority: String,
        timeout: Duration,
    },
    #[error("{authority} sent no response within {timeout:?}")]
    ResponseTimeout {
        authority: String,
        timeout: Duration,
    },
    #[error("cannot connect to {authority}: {detail}")]
    Connect { authority: String, detail: String },
    #[error("exchange with {authority} failed: {detail}")]
    Protocol { authority: String, detail: String },
    /// The client's body failed while it was forwarded (over the limit, too slow, malformed):
    /// the client's fault, not the target's.
    #[error("{0}")]
    RequestBody(ClientBodyFault),
}

impl UpstreamError {
    /// Stable short name for error bodies, traces and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Refused { .. } => "connect_refused",
            UpstreamError::Dns { .. } => "dns",
            UpstreamError::Tls { .. } => "tls",
            UpstreamError::ConnectTimeout { .. } => "connect_timeout",
            UpstreamError::ResponseTimeout { .. } => "response_timeout",
            UpstreamError::Connect { .. } => "connect",
            UpstreamError::Protocol { .. } => "upstream_protocol",
            UpstreamError::RequestBody(_) => "request_body",
        }
    }

    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            UpstreamError::ConnectTimeout { .. } | UpstreamError::ResponseTimeout { .. }
        )
    }
}

type HttpsClient = Client<HttpsConnector<HttpConnector>, ProxyBody>;

/// The HTTP/1.1 connector over rustls that every outbound connection uses (targets and token
/// endpoints), trusting the public roots plus `ca_file`.
pub fn connector(
    ca_file: Option<&std::path::Path>,
    connect_timeout: Duration,
) -> Result<HttpsConnector<HttpConnector>, TlsSetupError> {
    let tls = tls::client_config(ca_file)?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config((*tls).clone())
        .https_or_http()
        .enable_http1()
        .wrap_connector(http))
}

/// The client for one route's target.
#[derive(Clone)]
pub struct UpstreamClient {
    client: HttpsClient,
    authority: String,
    connect_timeout: Duration,
    request_timeout: Duration,
}

impl UpstreamClient {
    pub fn new(plan: &UpstreamPlan) -> Result<Self, TlsSetupError> {
        let connector = connector(plan.ca_file.as_deref(), plan.connect_timeout)?;
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Ok(UpstreamClient {
            client,
            authority: plan.authority.clone(),
            connect_timeout: plan.connect_timeout,
            request_timeout: plan.request_timeout,
        })
    }

    /// Sends the request and waits for the response head (the body streams afterwards).
    pub async fn send(
        &self,
        request: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        match tokio::time::timeout(self.request_timeout, self.client.request(request)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(err)) => Err(self.classify(&err)),
            Err(_) => Err(UpstreamError::ResponseTimeout {
                authority: self.authority.clone(),
                timeout: self.request_timeout,
            }),
        }
    }

    fn classify(&self, err: &hyper_util::client::legacy::Error) -> UpstreamError {
        let authority = self.authority.clone();
        let mut source: Option<&(dyn StdError + 'static)> = err.source();
        while let Some(cause) = source {
            if let Some(fault) = cause.downcast_ref::<ClientBodyFault>() {
                return UpstreamError::RequestBody(fault.clone());
            }
            if let Some(tls) = rustls_error(cause) {
                return UpstreamError::Tls {
                    authority,
                    detail: tls.to_string(),
                };
            }
            if let Some(io) = cause.downcast_ref::<io::Error>() {
                match io.kind() {
                    io::ErrorKind::ConnectionRefused => {
                        return UpstreamError::Refused { authority }
                    }
                    io::ErrorKind::TimedOut if err.is_connect() => {
                        return UpstreamError::ConnectTimeout {
                            authority,
                            timeout: self.connect_timeout,
                        }
                    }
                    _ => {}
                }
            }
            let text = cause.to_string();
            if text.contains("dns error") || text.contains("failed to lookup address") {
                return UpstreamError::Dns {
                    authority,
                    detail: innermost(cause),
                };
            }
            source = cause.source();
        }
        if err.is_connect() {
            UpstreamError::Connect {
                authority,
                detail: innermost(err),
            }
        } else {
            UpstreamError::Protocol {
                authority,
                detail: innermost(err),
            }
        }
    }
}

/// The rustls error in `cause`, looking inside `io::Error`s that wrap other errors: hyper-rustls
/// wraps tokio-rustls's `io::Error` in another one, and `io::Error::source` skips the error it
/// wraps, so walking `source()` alone never reaches the certificate problem.
fn rustls_error<'a>(cause: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut current = cause;
    loop {
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        current = current.downcast_ref::<io::Error>()?.get_ref()?;
    }
}

/// The deepest cause's message: the most specific thing that went wrong.
fn innermost(err: &(dyn StdError + 'static)) -> String {
    let mut current = err;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}
