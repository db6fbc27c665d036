//! The upstream side: an HTTP/1.1 keep-alive pool per route over rustls, with connect and
//! response-head timeouts, and failures classified for the client's error body.

mod http1;
mod pool;
pub mod tls;
mod trust;
mod validity;

use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;

use crate::body::{BoxError, ClientBodyFault, ProxyBody};
use crate::config::Upstream as UpstreamPlan;

use http1::{Conn, Outgoing};
use pool::Pool;
pub use pool::UpstreamBody;
pub use tls::{TlsSetupError, TrustSpec};
pub use trust::PinMismatch;

/// How long a connection may sit idle in the pool before it is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a request did not get a response head from the target.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connection refused by {authority}")]
    Refused { authority: String },
    #[error("cannot resolve {authority}: {detail}")]
    Dns { authority: String, detail: String },
    #[error("TLS handshake with {authority} failed: {detail}")]
    Tls { authority: String, detail: String },
    /// The certificate verified, but carries none of the route's pinned public keys.
    #[error("TLS handshake with {authority} failed: {detail}")]
    Pin { authority: String, detail: String },
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
            UpstreamError::Pin { .. } => "tls_pin",
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

/// The HTTP/1.1 connector over rustls that every outbound connection uses (targets and token
/// endpoints), trusting what `trust` says.
pub fn connector(
    trust: &TrustSpec<'_>,
    connect_timeout: Duration,
) -> Result<HttpsConnector<HttpConnector>, TlsSetupError> {
    let tls = tls::client_config(trust)?;
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

/// The seam in front of the target: the pipeline hands each attempt to a `Forward` and gets the
/// response head back (the body streams afterwards). [`UpstreamClient`] is the real one; a test
/// puts a stand-in in its place to see exactly what would reach the target.
pub trait Forward: Send + Sync {
    type Body: http_body::Body<Data = bytes::Bytes, Error: Into<BoxError>> + Send + 'static;

    fn forward(
        &self,
        request: Request<ProxyBody>,
    ) -> impl Future<Output = Result<Response<Self::Body>, UpstreamError>> + Send;
}

/// A [`Forward`] the pipeline holds behind a pointer: for stand-ins only, since each call boxes
/// its future and the response body (the real client is called directly).
pub trait DynForward: Send + Sync {
    fn forward_boxed(&self, request: Request<ProxyBody>) -> BoxedForward<'_>;
}

/// What [`DynForward::forward_boxed`] returns.
pub type BoxedForward<'a> =
    Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, UpstreamError>> + Send + 'a>>;

impl<F: Forward> DynForward for F {
    fn forward_boxed(&self, request: Request<ProxyBody>) -> BoxedForward<'_> {
        Box::pin(async move {
            let response = self.forward(request).await?;
            Ok(response.map(crate::body::stream))
        })
    }
}

impl Forward for UpstreamClient {
    type Body = UpstreamBody;

    fn forward(
        &self,
        request: Request<ProxyBody>,
    ) -> impl Future<Output = Result<Response<UpstreamBody>, UpstreamError>> + Send {
        self.send(request)
    }
}

/// The client for one route's target.
#[derive(Clone)]
pub struct UpstreamClient {
    pool: Arc<Pool>,
    authority: String,
    connect_timeout: Duration,
    request_timeout: Duration,
}

/// Where an exchange failed: setting up the connection or using it.
enum Failure {
    Connect(pool::ConnectError),
    Exchange(http1::Error),
    /// No response head within the request timeout, connecting included.
    TimedOut,
}

impl UpstreamClient {
    /// `origin` is the target's `scheme://authority`, the address every connection dials.
    pub fn new(plan: &UpstreamPlan, origin: Uri) -> Result<Self, TlsSetupError> {
        let trust = TrustSpec {
            ca_file: plan.ca_file.as_deref(),
            trust: plan.trust,
            pins: &plan.pin_sha256,
        };
        let connector = connector(&trust, plan.connect_timeout)?;
        Ok(UpstreamClient {
            pool: Pool::new(connector, origin, IDLE_TIMEOUT, crate::clock::system()),
            authority: plan.authority.clone(),
            connect_timeout: plan.connect_timeout,
            request_timeout: plan.request_timeout,
        })
    }

    /// Sends the request and waits for the response head (the body streams afterwards), for
    /// at most `request_timeout` from now, connecting included.
    pub async fn send(
        &self,
        request: Request<ProxyBody>,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        match self.exchange(request, deadline).await {
            Ok(response) => Ok(response),
            Err(Failure::Connect(err)) => Err(self.classify(&*err, true)),
            Err(Failure::TimedOut | Failure::Exchange(http1::Error::TimedOut)) => {
                Err(UpstreamError::ResponseTimeout {
                    authority: self.authority.clone(),
                    timeout: self.request_timeout,
                })
            }
            Err(Failure::Exchange(err)) => Err(self.classify(&err, false)),
        }
    }

    async fn exchange(
        &self,
        mut request: Request<ProxyBody>,
        deadline: tokio::time::Instant,
    ) -> Result<Response<UpstreamBody>, Failure> {
        // The target gets the path and query only; the pool's connection is the authority.
        if let Some(path_and_query) = request.uri().path_and_query() {
            *request.uri_mut() = Uri::from(path_and_query.clone());
        }
        let mut outgoing = Outgoing::new(request);
        // The connection bounds the wait for the head with a timer it keeps, rather than a
        // `tokio::time::timeout` around this future that registered a timer per request.
        outgoing.deadline = Some(deadline);
        // Connecting (TCP, TLS) is boxed where it is awaited: inline, its state would grow
        // this future, which is moved into place for every request, by kilobytes, while a
        // kept-alive connection skips it.
        let (conn, reused) = match self.pool.idle() {
            Some(conn) => (conn, true),
            None => (Box::pin(self.fresh(deadline)).await?, false),
        };
        let response = match http1::send(conn, outgoing).await {
            Ok(response) => response,
            Err(failed) => match failed.unsent {
                // The connection closed between its last use and this request, before a
                // byte of the request was written: the request goes again on a new one.
                Some(unsent) if reused => Box::pin(self.resend(unsent, deadline)).await?,
                _ => return Err(Failure::Exchange(failed.error)),
            },
        };
        let pool = self.pool.clone();
        Ok(response.map(|body| UpstreamBody::new(body, pool)))
    }

    /// Sends a request that a reused connection did not take on a new connection.
    async fn resend(
        &self,
        unsent: Outgoing,
        deadline: tokio::time::Instant,
    ) -> Result<Response<http1::ResponseBody>, Failure> {
        let conn = self.fresh(deadline).await?;
        http1::send(conn, unsent)
            .await
            .map_err(|failed| Failure::Exchange(failed.error))
    }

    async fn fresh(&self, deadline: tokio::time::Instant) -> Result<Conn, Failure> {
        match tokio::time::timeout_at(deadline, self.pool.connect()).await {
            Ok(connected) => connected.map_err(Failure::Connect),
            Err(_) => Err(Failure::TimedOut),
        }
    }

    fn classify(&self, err: &(dyn StdError + 'static), connecting: bool) -> UpstreamError {
        let authority = self.authority.clone();
        let mut source: Option<&(dyn StdError + 'static)> = Some(err);
        while let Some(cause) = source {
            if let Some(fault) = cause.downcast_ref::<ClientBodyFault>() {
                return UpstreamError::RequestBody(fault.clone());
            }
            if let Some(tls) = rustls_error(cause) {
                if let Some(mismatch) = pin_mismatch(tls) {
                    return UpstreamError::Pin {
                        authority,
                        detail: mismatch.to_string(),
                    };
                }
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
                    io::ErrorKind::TimedOut if connecting => {
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
        if connecting {
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

/// The pin failure inside a rustls certificate error, if that is what it is.
fn pin_mismatch(tls: &rustls::Error) -> Option<&PinMismatch> {
    match tls {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) => {
            other.0.downcast_ref::<PinMismatch>()
        }
        _ => None,
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
