//! An HTTP/1.1 client connection of our own, driven by the request's own future: the request
//! is written and its response head read in the task that asked for it, and the response body
//! is read by whoever polls it. hyper's client connection spent a channel, a second task and
//! its wake-ups on every request to do the same (issue 22).

mod decode;
mod encode;
mod head;
mod io;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use http::Response;
use hyper_rustls::MaybeHttpsStream;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tokio_util::io::poll_read_buf;

use crate::body::BoxError;
use decode::{Decoded, Decoder};
pub use encode::Outgoing;

pub use io::Io;

/// How much the read buffer grows by when it is full.
const READ_CHUNK: usize = 8 * 1024;

/// What went wrong in an exchange on a connection.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("error reading from the connection")]
    Read(#[source] std::io::Error),
    #[error("error writing to the connection")]
    Write(#[source] std::io::Error),
    #[error("connection closed before message completed")]
    Closed,
    #[error("invalid response head: {0}")]
    Head(httparse::Error),
    #[error("response head larger than {} bytes", head::MAX_HEAD_BYTES)]
    HeadTooLarge,
    #[error("invalid response framing: {0}")]
    Framing(&'static str),
    #[error("invalid chunked response body: {0}")]
    Chunked(&'static str),
    #[error("connection closed before the response body ended")]
    IncompleteBody,
    #[error("request body does not match its Content-Length")]
    BodyLength,
    #[error("error reading the request body")]
    RequestBody(#[source] BoxError),
    #[error("no response head before the deadline")]
    TimedOut,
}

/// A kept-alive connection between exchanges: the stream and its read buffer.
pub struct Conn {
    io: Io,
    read: BytesMut,
    /// Bounds the wait for a response head; made at the connection's first wait and kept
    /// (boxed, as the connection moves) for the ones after it.
    timer: Option<Pin<Box<Sleep>>>,
}

impl Conn {
    /// A connection as the connector makes it (TCP, maybe TLS).
    pub fn new(stream: MaybeHttpsStream<TokioIo<TcpStream>>) -> Conn {
        Conn {
            io: Io::from(stream),
            read: BytesMut::new(),
            timer: None,
        }
    }

    /// Whether the target closed the connection (or sent bytes nobody asked for) since its
    /// last exchange; reads only what has already arrived.
    pub fn is_closed(&mut self) -> bool {
        if !self.read.is_empty() {
            return true;
        }
        let mut cx = Context::from_waker(Waker::noop());
        self.read.reserve(READ_CHUNK);
        poll_read_buf(Pin::new(&mut self.io), &mut cx, &mut self.read).is_ready()
    }

    /// Reads what has arrived into the buffer; `Ok(0)` when the target closed.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<usize, Error>> {
        if self.read.capacity() - self.read.len() < READ_CHUNK / 2 {
            self.read.reserve(READ_CHUNK);
        }
        poll_read_buf(Pin::new(&mut self.io), cx, &mut self.read).map_err(Error::Read)
    }

    /// Whether `deadline` has passed; if not, the task is woken by then. The timer is only
    /// moved when it would fire late (or has fired): one still set for an earlier request
    /// fires early, wakes the task and is moved then. Moving it registers it with the
    /// runtime's timer wheel, which a kept-alive connection then does about once per timeout
    /// instead of for every request (a `tokio::time::timeout` per request did).
    fn poll_deadline(&mut self, cx: &mut Context<'_>, deadline: Instant) -> bool {
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() > deadline {
            timer.as_mut().reset(deadline);
        }
        while timer.as_mut().poll(cx).is_ready() {
            if timer.deadline() >= deadline {
                return true;
            }
            timer.as_mut().reset(deadline);
        }
        false
    }
}

/// A failed exchange, and the request when none of it was written: it can go again as it is
/// on another connection.
pub struct SendError {
    pub error: Error,
    pub unsent: Option<Outgoing>,
}

/// Sends `outgoing` on `conn` and waits for the response head. A request body that is still
/// being sent when the head arrives goes on being sent as the response body is read.
pub async fn send(
    mut conn: Conn,
    mut outgoing: Outgoing,
) -> Result<Response<ResponseBody>, SendError> {
    let mut writing = true;
    // A write that failed: the target may still have answered (and closed), so the answer is
    // looked for before the failure is reported.
    let mut write_failed: Option<Error> = None;
    let mut parse = !conn.read.is_empty();
    let head = std::future::poll_fn(|cx| loop {
        if writing {
            match outgoing.poll_write(&mut conn.io, cx) {
                Poll::Ready(Ok(())) => writing = false,
                Poll::Ready(Err(err @ Error::Write(_))) if outgoing.started() => {
                    writing = false;
                    write_failed = Some(err);
                }
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => {}
            }
        }
        if parse {
            if let Some(head) = head::parse(&mut conn.read, &outgoing.method, &mut outgoing.spare)?
            {
                return Poll::Ready(Ok(head));
            }
            if conn.read.len() >= head::MAX_HEAD_BYTES {
                return Poll::Ready(Err(Error::HeadTooLarge));
            }
        }
        match conn.poll_fill(cx) {
            Poll::Pending => {
                return match outgoing.deadline {
                    Some(deadline) if conn.poll_deadline(cx, deadline) => {
                        Poll::Ready(Err(Error::TimedOut))
                    }
                    _ => Poll::Pending,
                }
            }
            Poll::Ready(Ok(0)) => {
                return Poll::Ready(Err(write_failed.take().unwrap_or(Error::Closed)))
            }
            Poll::Ready(Ok(_)) => parse = true,
            Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
        }
    })
    .await;
    let head = match head {
        Ok(head) => head,
        Err(error) => {
            // Only the connection's failure can be retried: a client's body that failed
            // would fail again.
            let connection_failed =
                matches!(error, Error::Read(_) | Error::Write(_) | Error::Closed);
            let unsent = (connection_failed && !outgoing.started()).then_some(outgoing);
            return Err(SendError { error, unsent });
        }
    };
    let mut response = Response::new(ResponseBody {
        conn: Some(conn),
        decoder: head.decoder,
        writing: (writing && write_failed.is_none()).then(|| Box::new(outgoing)),
        keep_alive: head.keep_alive && write_failed.is_none(),
        failed: None,
    });
    *response.status_mut() = head.status;
    *response.version_mut() = head.version;
    *response.headers_mut() = head.headers;
    if let Some(reason) = head.reason {
        response.extensions_mut().insert(reason);
    }
    Ok(response)
}

/// A response body read from its connection. Once it has ended, a connection that can carry
/// another exchange is given back by [`ResponseBody::take_reusable`].
pub struct ResponseBody {
    conn: Option<Conn>,
    decoder: Decoder,
    /// The request's body, when the target answered before it was all sent. Boxed: that is
    /// rare, and inline it would make every response, moved through each layer, larger by
    /// the whole request.
    writing: Option<Box<Outgoing>>,
    keep_alive: bool,
    /// A failure found after the data before it was handed out, reported at the next poll.
    failed: Option<Error>,
}

impl ResponseBody {
    /// The connection, when the body has ended and the connection is fit for another request:
    /// the request was all sent, the target keeps it alive, and nothing else came on it.
    pub fn take_reusable(&mut self) -> Option<Conn> {
        let reusable = self.decoder.is_end()
            && self.decoder.is_delimited()
            && self.keep_alive
            && self.writing.is_none()
            && self.conn.as_ref().is_some_and(|conn| conn.read.is_empty());
        if reusable {
            self.conn.take()
        } else {
            None
        }
    }

    /// Sends more of a request body the target answered early; a failure only means the
    /// connection is not reused, as the response is already on its way.
    fn poll_request(&mut self, cx: &mut Context<'_>) {
        let (Some(outgoing), Some(conn)) = (self.writing.as_mut(), self.conn.as_mut()) else {
            return;
        };
        match outgoing.poll_write(&mut conn.io, cx) {
            Poll::Pending => {}
            Poll::Ready(Ok(())) => self.writing = None,
            Poll::Ready(Err(_)) => {
                self.writing = None;
                self.keep_alive = false;
            }
        }
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Error>>> {
        let this = &mut *self;
        if let Some(err) = this.failed.take() {
            return Poll::Ready(Some(Err(err)));
        }
        this.poll_request(cx);
        let Some(conn) = this.conn.as_mut() else {
            return Poll::Ready(None);
        };
        let failure = loop {
            match this.decoder.decode(&mut conn.read) {
                Ok(Decoded::Data(data)) => {
                    return Poll::Ready(Some(Ok(http_body::Frame::data(data))))
                }
                Ok(Decoded::Trailers(trailers)) => {
                    return Poll::Ready(Some(Ok(http_body::Frame::trailers(trailers))))
                }
                Ok(Decoded::End) => return Poll::Ready(None),
                Ok(Decoded::NeedMore) => {}
                Err(err) => break err,
            }
            match conn.poll_fill(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) => {
                    if let Err(err) = this.decoder.at_eof() {
                        break err;
                    }
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(err)) => break err,
            }
        };
        // The failure waits one turn: the data read before it (often in the same read as the
        // target's close) goes out to the client first, as the server sends what it has when
        // a body waits. hyper's connection task, reading in a task of its own, made the same
        // pause.
        this.failed = Some(failure);
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.decoder.is_end()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self.decoder {
            Decoder::Length(remaining) => http_body::SizeHint::with_exact(remaining),
            _ => http_body::SizeHint::default(),
        }
    }
}
