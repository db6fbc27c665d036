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
    kept: Kept,
    total: u64,
    done: Option<F>,
}

/// The bytes kept so far. A body's first frame is kept as a slice of itself (no copy) and only
/// a second frame starts a copy, so that a body sent in one frame, the common small response,
/// is captured without allocating.
#[derive(Default)]
enum Kept {
    #[default]
    Nothing,
    Frame(Bytes),
    Copied(BytesMut),
}

impl Kept {
    fn len(&self) -> usize {
        match self {
            Kept::Nothing => 0,
            Kept::Frame(bytes) => bytes.len(),
            Kept::Copied(buf) => buf.len(),
        }
    }

    fn push(&mut self, data: &Bytes, take: usize) {
        match self {
            Kept::Nothing => *self = Kept::Frame(data.slice(..take)),
            Kept::Frame(first) => {
                let mut buf = BytesMut::with_capacity(first.len() + take);
                buf.extend_from_slice(first);
                buf.extend_from_slice(&data[..take]);
                *self = Kept::Copied(buf);
            }
            Kept::Copied(buf) => buf.extend_from_slice(&data[..take]),
        }
    }

    fn into_bytes(self) -> Bytes {
        match self {
            Kept::Nothing => Bytes::new(),
            Kept::Frame(bytes) => bytes,
            Kept::Copied(buf) => buf.freeze(),
        }
    }
}

impl<F: OnCaptured> Capture<F> {
    fn data(&mut self, data: &Bytes) {
        self.total += data.len() as u64;
        let room = self.max - self.kept.len();
        if room > 0 {
            self.kept.push(data, room.min(data.len()));
        }
    }

    fn finish(&mut self, end: BodyEnd) {
        if let Some(done) = self.done.take() {
            let bytes = std::mem::take(&mut self.kept).into_bytes();
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
            kept: Kept::Nothing,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    use http_body_util::{BodyExt, Full, StreamBody};

    type Slot = Arc<Mutex<Vec<(CapturedBody, BodyEnd)>>>;

    fn recorder() -> (Slot, impl FnOnce(CapturedBody, BodyEnd) + Send + 'static) {
        let slot: Slot = Arc::default();
        let sink = Arc::clone(&slot);
        (slot, move |body, end| {
            sink.lock().unwrap().push((body, end))
        })
    }

    type Frames = std::vec::IntoIter<Result<Frame<Bytes>, &'static str>>;

    fn chunks(
        parts: Vec<Result<&'static [u8], &'static str>>,
    ) -> StreamBody<futures_util::stream::Iter<Frames>> {
        let frames: Vec<_> = parts
            .into_iter()
            .map(|p| p.map(|b| Frame::data(Bytes::from_static(b))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    #[tokio::test]
    async fn frames_pass_through_and_the_first_max_bytes_are_captured() {
        let (slot, done) = recorder();
        let body = TapBody::new(chunks(vec![Ok(b"hello "), Ok(b"world")]), 8, done);
        let out = body.collect().await.unwrap().to_bytes();
        assert_eq!(&out[..], b"hello world");
        let calls = slot.lock().unwrap();
        assert_eq!(calls.len(), 1);
        let (captured, end) = &calls[0];
        assert_eq!(&captured.bytes[..], b"hello wo");
        assert_eq!(captured.total_size, 11);
        assert!(captured.truncated);
        assert_eq!(*end, BodyEnd::Complete);
    }

    #[tokio::test]
    async fn a_body_in_one_frame_is_kept_as_a_slice_of_it_not_a_copy() {
        let frame = Bytes::from(b"the whole body".to_vec());
        let (slot, done) = recorder();
        let body = TapBody::new(Full::new(frame.clone()), 8, done);
        body.collect().await.unwrap();
        let calls = slot.lock().unwrap();
        let captured = &calls[0].0;
        assert_eq!(&captured.bytes[..], b"the whol");
        assert_eq!(captured.bytes.as_ptr(), frame.as_ptr());
        assert_eq!(captured.total_size, 14);
        assert!(captured.truncated);
    }

    #[tokio::test]
    async fn frames_after_the_first_are_kept_after_it_up_to_max() {
        let (slot, done) = recorder();
        let body = TapBody::new(chunks(vec![Ok(b"ab"), Ok(b"cd"), Ok(b"ef")]), 5, done);
        body.collect().await.unwrap();
        let calls = slot.lock().unwrap();
        assert_eq!(&calls[0].0.bytes[..], b"abcde");
        assert_eq!(calls[0].0.total_size, 6);
        assert!(calls[0].0.truncated);
    }

    #[tokio::test]
    async fn a_body_that_reports_its_end_completes_without_a_final_poll() {
        let (slot, done) = recorder();
        let mut body = TapBody::new(Full::new(Bytes::from_static(b"abc")), 64, done);
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "abc");
        assert!(body.is_end_stream());
        let calls = slot.lock().unwrap();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].1, BodyEnd::Complete);
        assert!(!calls[0].0.truncated);
    }

    #[tokio::test]
    async fn an_empty_body_completes_at_once() {
        let (slot, done) = recorder();
        let body = TapBody::new(http_body_util::Empty::<Bytes>::new(), 64, done);
        assert_eq!(slot.lock().unwrap()[0].1, BodyEnd::Complete);
        drop(body);
        assert_eq!(slot.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn an_inner_error_is_reported_once() {
        let (slot, done) = recorder();
        let body = TapBody::new(chunks(vec![Ok(b"ab"), Err("reset")]), 64, done);
        assert!(body.collect().await.is_err());
        let calls = slot.lock().unwrap();
        assert_eq!(calls.len(), 1);
        assert_eq!(&calls[0].0.bytes[..], b"ab");
        assert_eq!(calls[0].1, BodyEnd::Error);
    }

    #[tokio::test]
    async fn dropping_before_the_end_reports_dropped() {
        let (slot, done) = recorder();
        let mut body = TapBody::new(chunks(vec![Ok(b"ab"), Ok(b"cd")]), 64, done);
        body.frame().await.unwrap().unwrap();
        drop(body);
        let calls = slot.lock().unwrap();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].1, BodyEnd::Dropped);
        assert_eq!(calls[0].0.total_size, 2);
    }

    #[tokio::test]
    async fn max_zero_copies_nothing_but_counts() {
        let (slot, done) = recorder();
        let body = TapBody::new(chunks(vec![Ok(b"abc"), Ok(b"de")]), 0, done);
        body.collect().await.unwrap();
        let calls = slot.lock().unwrap();
        assert!(calls[0].0.bytes.is_empty());
        assert_eq!(calls[0].0.total_size, 5);
    }
}
