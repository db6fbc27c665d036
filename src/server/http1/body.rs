//! A request body read by whoever polls it: the connection's stream and read buffer are shared
//! with the body, so the handler's own task reads the client's bytes when it wants them, with no
//! channel and no second task between them. A body already whole in the read buffer is handed
//! out as it is, without touching the stream.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::io::poll_read_buf;

use super::chunked::{Chunked, Decoded};
use crate::body::split_framed;
use crate::server::framing::Violation;

/// The client connection as the server reads and writes it.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// How much the read buffer grows by when it is nearly full.
const READ_CHUNK: usize = 8 * 1024;

/// How much of what follows a request is read while it is answered.
const KEEP_AHEAD: usize = 64 * 1024;

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Why a request body could not be read to its end.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("error reading the request body from the connection")]
    Read(#[source] io::Error),
    #[error("error writing 100 Continue to the connection")]
    Write(#[source] io::Error),
    #[error("connection closed before the request body ended")]
    Incomplete,
    #[error("invalid chunked request body: {}", .0.as_str())]
    Chunked(Violation),
    /// Its request's exchange is over and the connection has moved on or closed.
    #[error("the request body was read after its exchange ended")]
    Gone,
}

/// What is left of the current request's body on the connection.
#[derive(Debug)]
pub(super) enum Reading {
    Done,
    Length(u64),
    Chunked(Chunked),
    /// The body failed (or the connection closed under it); the connection cannot be reused.
    Failed,
}

/// The connection's stream and read buffer, shared by the connection and its request's body.
pub(super) struct Wire {
    pub(super) io: Box<dyn Io>,
    pub(super) read: BytesMut,
    pub(super) reading: Reading,
    /// Which request the body being read belongs to: a body kept past its exchange must not
    /// read the next request's bytes.
    pub(super) serial: u32,
    /// `Expect: 100-continue`: how much of the interim answer is still to be written when the
    /// body is first polled (`None`: nothing to write).
    pub(super) continue_at: Option<usize>,
}

pub(super) type Shared = Arc<Mutex<Wire>>;

/// The shared wire, even if a thread panicked while holding it: every state it can be left in
/// is one a later reader copes with.
pub(super) fn lock(wire: &Shared) -> MutexGuard<'_, Wire> {
    wire.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Wire {
    pub(super) fn new(io: Box<dyn Io>, read: BytesMut) -> Wire {
        Wire {
            io,
            read,
            reading: Reading::Done,
            serial: 0,
            continue_at: None,
        }
    }

    /// Reads what has arrived into the buffer; `Ok(0)` when the client closed.
    pub(super) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.read.capacity() - self.read.len() < READ_CHUNK / 2 {
            self.read.reserve(READ_CHUNK);
        }
        poll_read_buf(Pin::new(&mut self.io), cx, &mut self.read)
    }

    /// Whether the client closed (or the stream failed) while its request is being answered,
    /// watched as hyper's server watched it so that an exchange nobody waits for is dropped.
    /// Only once the request body is over: before that, its reader reads, perhaps in another
    /// task whose wake-up a read from here would take. What arrives meanwhile (a pipelined
    /// request) is kept, up to a bound.
    pub(super) fn poll_gone(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Error>> {
        if !matches!(self.reading, Reading::Done) {
            return Poll::Pending;
        }
        while self.read.len() < KEEP_AHEAD {
            match ready!(self.poll_fill(cx)) {
                Ok(0) => return Poll::Ready(None),
                Ok(_) => {}
                Err(err) => return Poll::Ready(Some(err)),
            }
        }
        Poll::Pending
    }

    /// Consumes what of the body is already buffered, without reading: whether the body is
    /// then over, so that the connection can carry another request.
    pub(super) fn drain_buffered(&mut self) -> bool {
        loop {
            match &mut self.reading {
                Reading::Done => return true,
                Reading::Failed => return false,
                Reading::Length(remaining) => {
                    if (self.read.len() as u64) < *remaining {
                        return false;
                    }
                    // Within the buffer's length, so it fits a usize.
                    self.read.advance(*remaining as usize);
                    self.reading = Reading::Done;
                }
                Reading::Chunked(decoder) => match decoder.decode(&mut self.read) {
                    Ok(Decoded::Data(_) | Decoded::Trailers(_)) => {}
                    Ok(Decoded::End) => self.reading = Reading::Done,
                    Ok(Decoded::NeedMore) => return false,
                    Err(_) => self.reading = Reading::Failed,
                },
            }
        }
    }

    fn poll_continue(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BodyError>> {
        while let Some(at) = self.continue_at {
            let written = ready!(Pin::new(&mut self.io).poll_write(cx, &CONTINUE[at..]))
                .map_err(BodyError::Write)?;
            if written == 0 {
                return Poll::Ready(Err(BodyError::Write(io::ErrorKind::WriteZero.into())));
            }
            self.continue_at = (at + written < CONTINUE.len()).then_some(at + written);
        }
        Pin::new(&mut self.io)
            .poll_flush(cx)
            .map_err(BodyError::Write)
    }

    fn poll_body(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if self.continue_at.is_some() {
            if let Err(err) = ready!(self.poll_continue(cx)) {
                self.reading = Reading::Failed;
                return Poll::Ready(Some(Err(err)));
            }
        }
        loop {
            match &mut self.reading {
                Reading::Done => return Poll::Ready(None),
                Reading::Failed => return Poll::Ready(Some(Err(BodyError::Incomplete))),
                Reading::Length(remaining) => {
                    if !self.read.is_empty() {
                        let data = split_framed(&mut self.read, remaining);
                        if *remaining == 0 {
                            self.reading = Reading::Done;
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                Reading::Chunked(decoder) => match decoder.decode(&mut self.read) {
                    Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Decoded::Trailers(trailers)) => {
                        return Poll::Ready(Some(Ok(Frame::trailers(trailers))))
                    }
                    Ok(Decoded::End) => {
                        self.reading = Reading::Done;
                        return Poll::Ready(None);
                    }
                    Ok(Decoded::NeedMore) => {}
                    Err(violation) => {
                        self.reading = Reading::Failed;
                        return Poll::Ready(Some(Err(BodyError::Chunked(violation))));
                    }
                },
            }
            match ready!(self.poll_fill(cx)) {
                Ok(0) => {
                    self.reading = Reading::Failed;
                    return Poll::Ready(Some(Err(BodyError::Incomplete)));
                }
                Ok(_) => {}
                Err(err) => {
                    self.reading = Reading::Failed;
                    return Poll::Ready(Some(Err(BodyError::Read(err))));
                }
            }
        }
    }
}

/// A request body on one of our HTTP/1 connections.
pub struct Body(Kind);

enum Kind {
    Empty,
    /// The whole body, read with the head.
    Full(Option<Bytes>),
    Wire {
        wire: Shared,
        serial: u32,
        /// What a Content-Length says is still to come (`None`: chunked).
        remaining: Option<u64>,
        ended: bool,
    },
}

impl Body {
    pub(super) fn empty() -> Body {
        Body(Kind::Empty)
    }

    pub(super) fn full(data: Bytes) -> Body {
        Body(Kind::Full(Some(data)))
    }

    pub(super) fn wire(wire: Shared, serial: u32, remaining: Option<u64>) -> Body {
        Body(Kind::Wire {
            wire,
            serial,
            remaining,
            ended: false,
        })
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Body").finish_non_exhaustive()
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match &mut self.get_mut().0 {
            Kind::Empty => Poll::Ready(None),
            Kind::Full(data) => Poll::Ready(data.take().map(|data| Ok(Frame::data(data)))),
            Kind::Wire {
                wire,
                serial,
                remaining,
                ended,
            } => {
                if *ended {
                    return Poll::Ready(None);
                }
                let polled = {
                    let mut wire = lock(wire);
                    if wire.serial != *serial {
                        return Poll::Ready(Some(Err(BodyError::Gone)));
                    }
                    ready!(wire.poll_body(cx))
                };
                match &polled {
                    None => *ended = true,
                    Some(Ok(frame)) => {
                        if let (Some(remaining), Some(data)) =
                            (remaining.as_mut(), frame.data_ref())
                        {
                            *remaining = remaining.saturating_sub(data.len() as u64);
                        }
                    }
                    Some(Err(_)) => {}
                }
                Poll::Ready(polled)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Kind::Empty => true,
            Kind::Full(data) => data.is_none(),
            Kind::Wire {
                remaining, ended, ..
            } => *ended || *remaining == Some(0),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            Kind::Wire { remaining, .. } => match remaining {
                Some(remaining) => SizeHint::with_exact(*remaining),
                None => SizeHint::default(),
            },
        }
    }
}
