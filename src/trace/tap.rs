//! A body wrapper that lets frames through unchanged and keeps a copy of the first bytes.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::record::CapturedBody;

/// How a tapped body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEnd {
    /// Every frame was read.
    Complete,
    /// The inner body returned an error.
    Error,
    /// The body was dropped before its end (client went away, response abandoned).
    Dropped,
}

/// Receives the capture once the body has ended, failed or been dropped.
pub trait OnCaptured: Send + 'static {
    fn captured(self, body: CapturedBody, end: BodyEnd);
}

impl<F> OnCaptured for F
where
    F: FnOnce(CapturedBody, BodyEnd) + Send + 'static,
{
    fn captured(self, body: CapturedBody, end: BodyEnd) {
        self(body, end)
    }
}

/// The capture state, apart from the pinned body so that its `Drop` can report an early drop.
struct Capture<F: OnCaptured> {
    max: usize,
    buf: BytesMut,
    total: u64,
    done: Option<F>,
}

impl<F: OnCaptured> Capture<F> {
    fn data(&mut self, data: &Bytes) {
        self.total += data.len() as u64;
        let room = self.max - self.buf.len();
        if room > 0 {
            self.buf.extend_from_slice(&data[..room.min(data.len())]);
        }
    }

    fn finish(&mut self, end: BodyEnd) {
        if let Some(done) = self.done.take() {
            let bytes = std::mem::take(&mut self.buf).freeze();
            let truncated = self.total > bytes.len() as u64;
            done.captured(
                CapturedBody {
                    bytes,
                    total_size: self.total,
                    truncated,
                },
                end,
            );
        }
    }
}

impl<F: OnCaptured> Drop for Capture<F> {
    fn drop(&mut self) {
        self.finish(BodyEnd::Dropped);
    }
}

pin_project! {
    /// Wraps a body; `max == 0` copies nothing and only counts bytes.
    pub struct TapBody<B, F>
    where
        F: OnCaptured,
    {
        #[pin]
        inner: B,
        capture: Capture<F>,
    }
}

impl<B, F> TapBody<B, F>
where
    B: Body<Data = Bytes>,
    F: OnCaptured,
{
    pub fn new(inner: B, max: usize, on_captured: F) -> Self {
        let mut capture = Capture {
            max,
            buf: BytesMut::new(),
            total: 0,
            done: Some(on_captured),
        };
        // hyper never polls a body that says it is empty, so its end is known now.
        if inner.is_end_stream() {
            capture.finish(BodyEnd::Complete);
        }
        TapBody { inner, capture }
    }
}

impl<B, F> Body for TapBody<B, F>
where
    B: Body<Data = Bytes>,
    F: OnCaptured,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    this.capture.data(data);
                }
                // hyper stops polling once the body reports its end, so the end is seen here
                // rather than waiting for a `None` that may never be asked for.
                if this.inner.is_end_stream() {
                    this.capture.finish(BodyEnd::Complete);
                }
            }
            Some(Err(_)) => this.capture.finish(BodyEnd::Error),
            None => this.capture.finish(BodyEnd::Complete),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
