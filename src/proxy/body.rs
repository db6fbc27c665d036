//! The body type every response and forwarded request uses.

use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Streams in both directions; boxed because it is an upstream's body, a client's body or
/// a body the proxy made itself.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

pub fn stream<B>(body: B) -> ProxyBody
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// A fault in the client's request body, found while reading or forwarding it. It is the
/// client's fault, so it must not turn into a 502.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientBodyFault {
    #[error("request body larger than {0} bytes")]
    TooLarge(u64),
    #[error("the client sent no body data for {0:?}")]
    Timeout(std::time::Duration),
    #[error("malformed request body: {0}")]
    Malformed(String),
}

/// Why an [`IdleTimeout`] body ended early.
#[derive(Debug, thiserror::Error)]
pub enum IdleError<E> {
    #[error("no body data for {0:?}")]
    Stalled(std::time::Duration),
    #[error(transparent)]
    Inner(E),
}

pin_project_lite::pin_project! {
    /// A body that fails when no frame arrives for `timeout`: a peer that stops sending midway
    /// must not hold a connection (and, with `serialize`, a session) forever.
    pub struct IdleTimeout<B> {
        #[pin]
        inner: B,
        #[pin]
        idle: tokio::time::Sleep,
        timeout: std::time::Duration,
    }
}

impl<B> IdleTimeout<B> {
    pub fn new(inner: B, timeout: std::time::Duration) -> Self {
        IdleTimeout {
            inner,
            idle: tokio::time::sleep(timeout),
            timeout,
        }
    }
}

impl<B: http_body::Body> http_body::Body for IdleTimeout<B> {
    type Data = B::Data;
    type Error = IdleError<B::Error>;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<B::Data>, Self::Error>>> {
        use std::task::Poll;
        let mut this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let deadline = tokio::time::Instant::now() + *this.timeout;
                this.idle.as_mut().reset(deadline);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(IdleError::Inner(err)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match std::future::Future::poll(this.idle, cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(IdleError::Stalled(*this.timeout)))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// The client's request body with the route's size limit and the idle read timeout applied,
    /// and errors tagged as [`ClientBodyFault`].
    pub struct ClientBody<B> {
        #[pin]
        inner: IdleTimeout<B>,
        limit: Option<u64>,
        received: u64,
    }
}

impl<B> ClientBody<B> {
    pub fn new(inner: B, limit: Option<u64>, timeout: std::time::Duration) -> Self {
        ClientBody {
            inner: IdleTimeout::new(inner, timeout),
            limit,
            received: 0,
        }
    }
}

impl<B> http_body::Body for ClientBody<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    type Data = Bytes;
    type Error = ClientBodyFault;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, ClientBodyFault>>> {
        use std::task::Poll;
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    *this.received += data.len() as u64;
                    if let Some(limit) = *this.limit {
                        if *this.received > limit {
                            return Poll::Ready(Some(Err(ClientBodyFault::TooLarge(limit))));
                        }
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(IdleError::Stalled(timeout)))) => {
                Poll::Ready(Some(Err(ClientBodyFault::Timeout(timeout))))
            }
            Poll::Ready(Some(Err(IdleError::Inner(err)))) => {
                Poll::Ready(Some(Err(ClientBodyFault::Malformed(err.to_string()))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
