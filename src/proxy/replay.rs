//! Request bodies kept for one replay. A session re-login and a refreshed OAuth token both
//! replay the original request once; both use this, so the buffering rule is the same: bodies
//! up to the limit are held in memory, larger ones stream and are not replayed.

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http_body::{Body, Frame};
use http_body_util::{BodyExt, StreamBody};

use crate::body::{self, BoxError, ProxyBody};

/// The request body, either whole in memory (replayable) or streaming (sent once).
pub enum ReplayBody {
    Buffered(Bytes),
    Streaming(ProxyBody),
}

impl ReplayBody {
    /// Reads `incoming` until it ends or passes `limit`. A declared `Content-Length` over the
    /// limit skips buffering entirely, so large uploads are not delayed.
    pub async fn read(
        incoming: ProxyBody,
        limit: usize,
        declared_length: Option<u64>,
    ) -> Result<Self, BoxError> {
        if declared_length.is_some_and(|length| length > limit as u64) {
            return Ok(ReplayBody::Streaming(incoming));
        }
        let mut incoming = incoming;
        let mut buffered = BytesMut::new();
        while let Some(frame) = incoming.frame().await {
            let frame = frame?;
            let Ok(data) = frame.into_data() else {
                // Trailers: a body with trailers is rare in provisioning; send it once as is.
                continue;
            };
            buffered.extend_from_slice(&data);
            if buffered.len() > limit {
                let head = buffered.freeze();
                let rest =
                    futures_util::stream::once(async move { Ok::<_, BoxError>(Frame::data(head)) })
                        .chain(BodyStream { body: incoming });
                return Ok(ReplayBody::Streaming(body::stream(StreamBody::new(rest))));
            }
        }
        Ok(ReplayBody::Buffered(buffered.freeze()))
    }

    pub fn is_replayable(&self) -> bool {
        matches!(self, ReplayBody::Buffered(_))
    }

    /// The body for the first attempt. A buffered body stays available for the replay.
    pub fn take(&mut self) -> ProxyBody {
        match self {
            // The same body to the target as an empty `Full`, without boxing one.
            ReplayBody::Buffered(bytes) if bytes.is_empty() => body::empty(),
            ReplayBody::Buffered(bytes) => body::full(bytes.clone()),
            ReplayBody::Streaming(stream) => std::mem::replace(stream, body::empty()),
        }
    }

    /// The body for the replay, if the request can be replayed.
    pub fn replay(&self) -> Option<ProxyBody> {
        match self {
            ReplayBody::Buffered(bytes) if bytes.is_empty() => Some(body::empty()),
            ReplayBody::Buffered(bytes) => Some(body::full(bytes.clone())),
            ReplayBody::Streaming(_) => None,
        }
    }

    /// The buffered bytes, for the trace.
    pub fn buffered(&self) -> Option<&Bytes> {
        match self {
            ReplayBody::Buffered(bytes) => Some(bytes),
            ReplayBody::Streaming(_) => None,
        }
    }
}

/// The rest of a body as a stream of frames.
struct BodyStream {
    body: ProxyBody,
}

impl futures_util::Stream for BodyStream {
    type Item = Result<Frame<Bytes>, BoxError>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    async fn collect(body: ProxyBody) -> Bytes {
        body.collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default()
    }

    fn chunked(parts: &[&'static [u8]]) -> ProxyBody {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = parts
            .iter()
            .map(|part| Ok(Frame::data(Bytes::from_static(part))))
            .collect();
        body::stream(StreamBody::new(futures_util::stream::iter(frames)))
    }

    #[tokio::test]
    async fn a_body_within_the_limit_is_replayable_and_identical_both_times() {
        let mut body = ReplayBody::read(chunked(&[b"{\"a\":", b"1}"]), 64, None)
            .await
            .unwrap();
        assert!(body.is_replayable());
        assert_eq!(collect(body.take()).await, Bytes::from_static(b"{\"a\":1}"));
        assert_eq!(
            collect(body.replay().unwrap()).await,
            Bytes::from_static(b"{\"a\":1}")
        );
    }

    #[tokio::test]
    async fn a_body_past_the_limit_streams_whole_and_is_not_replayable() {
        let mut body = ReplayBody::read(chunked(&[b"0123", b"4567", b"89"]), 5, None)
            .await
            .unwrap();
        assert!(!body.is_replayable());
        assert!(body.replay().is_none());
        assert_eq!(
            collect(body.take()).await,
            Bytes::from_static(b"0123456789")
        );
    }

    #[tokio::test]
    async fn a_declared_length_over_the_limit_is_not_read_at_all() {
        let full = body::stream(Full::new(Bytes::from_static(b"0123456789")));
        let mut body = ReplayBody::read(full, 5, Some(10)).await.unwrap();
        assert!(!body.is_replayable());
        assert_eq!(
            collect(body.take()).await,
            Bytes::from_static(b"0123456789")
        );
    }
}
