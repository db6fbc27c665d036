//! The body type every response and forwarded request uses.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

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

/// How many of `available` bytes belong to a framed body (a Content-Length, or one chunk) that
/// has `remaining` still to come; they are counted off `remaining`.
pub fn consume(remaining: &mut u64, available: usize) -> usize {
    let used = available.min(usize::try_from(*remaining).unwrap_or(usize::MAX));
    *remaining -= used as u64;
    used
}

/// The bytes at the start of `buf` that belong to a framed body with `remaining` still to come,
/// split off without a copy.
pub fn split_framed(buf: &mut BytesMut, remaining: &mut u64) -> Bytes {
    let used = consume(remaining, buf.len());
    buf.split_to(used).freeze()
}

pub fn stream<B>(body: B) -> ProxyBody
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// A client's request body: from hyper (HTTP/2, and tests that serve the proxy with hyper) or
/// from our own HTTP/1 connection. An enum rather than a box, so that neither path allocates
/// for it.
#[derive(Debug)]
pub enum RequestBody {
    Hyper(hyper::body::Incoming),
    Own(crate::server::http1::Body),
}

impl From<hyper::body::Incoming> for RequestBody {
    fn from(incoming: hyper::body::Incoming) -> Self {
        RequestBody::Hyper(incoming)
    }
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        use std::task::Poll;
        let polled = match self.get_mut() {
            RequestBody::Hyper(incoming) => match std::pin::Pin::new(incoming).poll_frame(cx) {
                Poll::Ready(Some(Err(err))) => return Poll::Ready(Some(Err(err.into()))),
                Poll::Ready(Some(Ok(frame))) => Some(frame),
                Poll::Ready(None) => None,
                Poll::Pending => return Poll::Pending,
            },
            RequestBody::Own(own) => match std::pin::Pin::new(own).poll_frame(cx) {
                Poll::Ready(Some(Err(err))) => return Poll::Ready(Some(Err(err.into()))),
                Poll::Ready(Some(Ok(frame))) => Some(frame),
                Poll::Ready(None) => None,
                Poll::Pending => return Poll::Pending,
            },
        };
        Poll::Ready(polled.map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Hyper(incoming) => incoming.is_end_stream(),
            RequestBody::Own(own) => own.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Hyper(incoming) => incoming.size_hint(),
            RequestBody::Own(own) => own.size_hint(),
        }
    }
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
    /// must not hold a connection (and, with `serialize`, a session) forever. The time counts
    /// from when the body is found waiting after a frame (or at its start), so a reader that is
    /// slow to ask is not taken for a peer that is slow to send.
    pub struct IdleTimeout<B> {
        #[pin]
        inner: B,
        // Made the first time the body waits: a body whose frames are ready when asked (most
        // responses, read with their head) never reads the clock or touches the timer wheel.
        idle: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
        // A frame came since the timer was set: the next wait starts a new stall period.
        fresh: bool,
        timeout: std::time::Duration,
    }
}

impl<B> IdleTimeout<B> {
    pub fn new(inner: B, timeout: std::time::Duration) -> Self {
        IdleTimeout {
            inner,
            idle: None,
            fresh: true,
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
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                *this.fresh = true;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(IdleError::Inner(err)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let timeout = *this.timeout;
                let idle = match this.idle {
                    Some(idle) if *this.fresh => {
                        idle.as_mut().reset(tokio::time::Instant::now() + timeout);
                        idle
                    }
                    Some(idle) => idle,
                    None => this.idle.insert(Box::pin(tokio::time::sleep(timeout))),
                };
                *this.fresh = false;
                match std::future::Future::poll(idle.as_mut(), cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(IdleError::Stalled(timeout)))),
                    Poll::Pending => Poll::Pending,
                }
            }
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

/// The client stopped reading a response while the target's body was still coming.
#[derive(Debug, thiserror::Error)]
#[error("the client took no response data for {0:?}; the exchange was cut off to free its session")]
pub struct ClientStalled(pub Duration);

type AheadItem = Result<(Frame<Bytes>, OwnedSemaphorePermit), BoxError>;

/// Reads `body` on a task of its own, up to `ahead` bytes ahead of the client, and drops
/// `hold` (a session lease) as soon as the target's body has ended: a client that stops
/// reading then holds nothing but its own buffered response.
///
/// A body longer than `ahead` keeps `hold` until the client has taken all but the last
/// `ahead` bytes; when the client takes nothing for `stall` while the buffer is full, the
/// exchange is cut off (target connection closed, `hold` dropped) and the client's response
/// ends in an error, so that it cannot mistake it for a complete one.
pub fn read_ahead<H>(body: ProxyBody, hold: H, ahead: usize, stall: Duration) -> ProxyBody
where
    H: Send + 'static,
{
    if http_body::Body::is_end_stream(&body) {
        return body;
    }
    let ahead = u32::try_from(ahead).unwrap_or(u32::MAX).max(1);
    let remaining = http_body::Body::size_hint(&body);
    let room = Arc::new(Semaphore::new(ahead as usize));
    let (frames, received) = mpsc::unbounded_channel();
    tokio::spawn(pump(body, hold, room, frames, ahead, stall));
    stream(ReadAhead {
        frames: received,
        remaining,
    })
}

async fn pump<H>(
    mut body: ProxyBody,
    hold: H,
    room: Arc<Semaphore>,
    frames: mpsc::UnboundedSender<AheadItem>,
    ahead: u32,
    stall: Duration,
) {
    loop {
        let next = tokio::select! {
            next = body.frame() => next,
            // The client's response was dropped (the client went away): stop reading.
            () = frames.closed() => return,
        };
        let frame = match next {
            None => break,
            Some(Ok(frame)) => frame,
            Some(Err(err)) => {
                let _ = frames.send(Err(err));
                return;
            }
        };
        // Every frame takes room, at least one unit, so that empty frames are bounded too.
        let size = frame.data_ref().map_or(0, Bytes::len);
        let wanted = u32::try_from(size).unwrap_or(u32::MAX).clamp(1, ahead);
        let permit = tokio::select! {
            permit = tokio::time::timeout(stall, room.clone().acquire_many_owned(wanted)) => {
                match permit {
                    Ok(Ok(permit)) => permit,
                    // The semaphore is never closed; should it be, there is no room ever again.
                    Ok(Err(_)) => return,
                    Err(_) => {
                        let _ = frames.send(Err(Box::new(ClientStalled(stall))));
                        return;
                    }
                }
            }
            () = frames.closed() => return,
        };
        if frames.send(Ok((frame, permit))).is_err() {
            return;
        }
    }
    // The whole body has been read: the lease goes now, whatever the client does next.
    drop(hold);
}

/// The client's side of [`read_ahead`]: each frame gives its room back as it is taken.
struct ReadAhead {
    frames: mpsc::UnboundedReceiver<AheadItem>,
    remaining: SizeHint,
}

impl http_body::Body for ReadAhead {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        use std::task::Poll;
        match self.frames.poll_recv(cx) {
            Poll::Ready(Some(Ok((frame, _room)))) => {
                if let Some(data) = frame.data_ref() {
                    let taken = data.len() as u64;
                    let lower = self.remaining.lower().saturating_sub(taken);
                    let upper = self.remaining.upper().map(|u| u.saturating_sub(taken));
                    let mut remaining = SizeHint::new();
                    remaining.set_lower(lower);
                    if let Some(upper) = upper {
                        remaining.set_upper(upper);
                    }
                    self.remaining = remaining;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(err))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> SizeHint {
        self.remaining
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body of `chunks` frames of `size` bytes each.
    fn chunks(chunks: usize, size: usize) -> ProxyBody {
        let frames =
            (0..chunks).map(move |_| Ok::<_, BoxError>(Frame::data(Bytes::from(vec![b'x'; size]))));
        stream(http_body_util::StreamBody::new(futures_util::stream::iter(
            frames,
        )))
    }

    /// A body whose frames are sent one at a time through the returned sender.
    fn sent() -> (tokio::sync::mpsc::Sender<Bytes>, ProxyBody) {
        let (send, receive) = tokio::sync::mpsc::channel::<Bytes>(1);
        let frames = futures_util::stream::unfold(receive, |mut receive| async move {
            let data = receive.recv().await?;
            Some((Ok::<_, BoxError>(Frame::data(data)), receive))
        });
        (send, stream(http_body_util::StreamBody::new(frames)))
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_stalls_a_whole_timeout_after_it_is_found_waiting_not_after_its_last_frame() {
        let timeout = Duration::from_secs(10);
        let (send, body) = sent();
        let mut body = std::pin::pin!(IdleTimeout::new(body, timeout));
        send.send(Bytes::from_static(b"one"))
            .await
            .expect("body alive");
        let frame = body.frame().await.expect("a frame").expect("not stalled");
        assert_eq!(frame.into_data().ok().as_deref(), Some(&b"one"[..]));
        // The reader is slow to ask again (its own client reads slowly): three timeouts pass.
        tokio::time::advance(timeout * 3).await;
        let waited = tokio::time::Instant::now();
        // The body's end would not be a stall: the sender stays alive here.
        let later = send.clone();
        let second = tokio::spawn(async move {
            tokio::time::sleep(timeout - Duration::from_secs(1)).await;
            later.send(Bytes::from_static(b"two")).await
        });
        let frame = body
            .frame()
            .await
            .expect("a frame")
            .expect("within the timeout");
        assert_eq!(frame.into_data().ok().as_deref(), Some(&b"two"[..]));
        second.await.expect("sender ran").expect("body alive");
        let started = tokio::time::Instant::now();
        match body.frame().await {
            Some(Err(IdleError::Stalled(after))) => assert_eq!(after, timeout),
            other => panic!("expected a stall, got {:?}", other.map(|f| f.is_ok())),
        }
        assert_eq!(started - waited, timeout - Duration::from_secs(1));
        assert_eq!(tokio::time::Instant::now() - started, timeout);
        drop(send);
    }

    /// Something to hold whose release can be awaited.
    fn hold() -> (
        tokio::sync::oneshot::Sender<()>,
        tokio::sync::oneshot::Receiver<()>,
    ) {
        tokio::sync::oneshot::channel()
    }

    #[tokio::test]
    async fn the_hold_is_released_once_the_body_is_read_even_if_the_client_has_read_nothing() {
        let (held, released) = hold();
        let body = read_ahead(chunks(4, 1000), held, 8000, Duration::from_secs(3600));
        released
            .await
            .expect_err("the hold is dropped, never sent on");
        let read = body.collect().await.expect("whole body").to_bytes();
        assert_eq!(read.len(), 4000);
    }

    #[tokio::test]
    async fn a_client_taking_nothing_while_the_buffer_is_full_is_cut_off_after_the_stall_time() {
        let (held, released) = hold();
        let mut body = read_ahead(chunks(10, 1000), held, 2000, Duration::from_millis(100));
        let clock = std::time::Instant::now();
        released.await.expect_err("the hold is dropped");
        assert!(
            clock.elapsed() >= Duration::from_millis(100),
            "not before the stall time"
        );
        let mut taken = 0;
        let error = loop {
            match body.frame().await {
                Some(Ok(frame)) => taken += frame.into_data().map_or(0, |d| d.len()),
                Some(Err(err)) => break err,
                None => panic!("a cut-off body must not end cleanly"),
            }
        };
        assert_eq!(taken, 2000, "what was read ahead still reaches the client");
        assert!(error.downcast_ref::<ClientStalled>().is_some(), "{error}");
    }

    #[tokio::test]
    async fn a_client_going_away_releases_the_hold_without_reading_the_rest() {
        let (held, released) = hold();
        let endless = futures_util::stream::repeat_with(|| {
            Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"x")))
        });
        let body = read_ahead(
            stream(http_body_util::StreamBody::new(endless)),
            held,
            16,
            Duration::from_secs(3600),
        );
        drop(body);
        released.await.expect_err("the hold is dropped");
    }
}
