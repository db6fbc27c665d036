//! One client connection's request loop: read a head, hand the request to the handler, write
//! its response, and either go on (keep-alive, pipelined requests in order) or close. All of it
//! runs in the connection's own task; the request body is read by whoever polls it.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex};
use std::task::{ready, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::Body as _;
use tokio::io::AsyncWrite;
use tokio::sync::watch;
use tokio::time::Instant;

use super::body::{lock, Body, Io, Reading, Shared, Wire};
use super::chunked::{Chunked, Decoded};
use super::parse::{self, Framing, HeadError};
use super::write::{self, Answering, Encoder};
use crate::body::{BoxError, ProxyBody, RequestBody};
use crate::server::framing::{Violation, BAD_REQUEST};
use crate::server::news::poll_on_news;

/// Body data up to this size is copied after the head (or the chunk size) so that both go in
/// one write; larger data is written from where it is.
const COPY_MAX: usize = 8 * 1024;

/// Buffered response bytes are written once they reach this much, even while the body has more
/// ready.
const WRITE_AT: usize = 64 * 1024;

/// A connection's settings, from the plan current when it was accepted.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub limits: parse::Limits,
    /// From the end of a response until the next head's first byte.
    pub idle_timeout: Duration,
    /// From a head's first byte until its end (`limits.header_read_timeout`).
    pub head_timeout: Duration,
}

/// Why a connection ended other than by a close at a request boundary.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("error reading from the connection")]
    Read(#[source] io::Error),
    #[error("error writing to the connection")]
    Write(#[source] io::Error),
    #[error("response body failed: {0}")]
    Body(#[source] BoxError),
    #[error("response body longer than its content-length")]
    TooLong,
    #[error("response body ended before its content-length")]
    TooShort,
    #[error("the client closed the connection before its response was written")]
    Gone,
    #[error("invalid content-length in the response")]
    BadContentLength,
    /// The client was answered 400 or 431 and the connection closed. The listener logs why (the
    /// client never hears it).
    #[error("refused a request: {0}")]
    Refused(HeadError),
}

/// What the timer is set for while a head is awaited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    Idle,
    Head,
}

/// What waiting for the next head gave. Unboxed: it lives once per request on the stack, and a
/// box would be an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Next {
    Head(parse::Head),
    Refused(HeadError),
    Close,
    Failed(io::Error),
}

/// Serves requests on `io` (whose first bytes, already read, are in `read`) until the client
/// closes, a response says close, the idle time passes, or `stopped` turns true (then the
/// request in flight is answered with `connection: close` and an idle connection closes at
/// once).
pub async fn serve<H, F>(
    io: Box<dyn Io>,
    read: BytesMut,
    settings: Settings,
    mut handle: H,
    mut stopped: watch::Receiver<bool>,
) -> Result<(), Error>
where
    H: FnMut(Request<RequestBody>) -> F,
    F: Future<Output = Response<ProxyBody>>,
{
    let wire: Shared = Arc::new(Mutex::new(Wire::new(io, read)));
    let mut out = Vec::with_capacity(4096);
    let mut timer = pin!(tokio::time::sleep(settings.idle_timeout));
    // Looked at when a response is written, rather than woken on: a request in flight finishes
    // either way, and only its `connection` header depends on it.
    let shutting_down = stopped.clone();
    // Any end of the watch counts: a sender gone is a server going away.
    let mut stop = pin!(async move {
        let _ = stopped.wait_for(|&stop| stop).await;
    });
    let mut stop_watched = false;
    // The timer has been polled since it was last moved, so it wakes this task when it fires.
    let mut armed = false;
    let mut serial = 0u32;
    // The last response's map, emptied: the next head's headers go into it (see
    // `parse::parse_into`). hyper recycled its maps the same way.
    let mut spare_headers = HeaderMap::new();
    let result = loop {
        let mut parse_now = true;
        let mut waiting = None;
        let mut due = timer.deadline();
        let next = std::future::poll_fn(|cx| {
            let mut wire = lock(&wire);
            loop {
                if parse_now && !wire.read.is_empty() {
                    match parse::parse_into(&wire.read, &settings.limits, &mut spare_headers) {
                        Ok(Some((head, len))) => {
                            wire.read.advance(len);
                            return Poll::Ready(Next::Head(head));
                        }
                        Ok(None) => {}
                        Err(refused) => return Poll::Ready(Next::Refused(refused)),
                    }
                }
                parse_now = false;
                match wire.poll_fill(cx) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Next::Close),
                    Poll::Ready(Ok(_)) => parse_now = true,
                    Poll::Ready(Err(err)) => return Poll::Ready(Next::Failed(err)),
                    Poll::Pending => {
                        // Ready once: the connection closes right after.
                        let stopping =
                            poll_on_news(&shutting_down, &mut stop_watched, stop.as_mut(), cx);
                        if stopping.is_ready() {
                            return Poll::Ready(Next::Close);
                        }
                        // The timer runs from the end of the response until the head's first
                        // byte, then from that byte (about now, as it was just read) to the
                        // head's end. It is only moved when it would fire late (or has fired):
                        // one that fires early wakes the task and is moved then, so a busy
                        // connection does not touch the timer wheel for every request.
                        let phase = if wire.read.is_empty() {
                            Waiting::Idle
                        } else {
                            Waiting::Head
                        };
                        let first = waiting != Some(phase);
                        if first {
                            waiting = Some(phase);
                            let now = Instant::now();
                            due = now
                                + match phase {
                                    Waiting::Idle => settings.idle_timeout,
                                    Waiting::Head => settings.head_timeout,
                                };
                            let at = timer.deadline();
                            if !armed || at > due || at <= now {
                                timer.as_mut().reset(due);
                                armed = false;
                            }
                        }
                        if !first || !armed {
                            armed = true;
                            while timer.as_mut().poll(cx).is_ready() {
                                if timer.deadline() >= due {
                                    tracing::debug!(
                                        "closed a connection: {}",
                                        match phase {
                                            Waiting::Idle => "idle past the idle timeout",
                                            Waiting::Head => "request head not complete in time",
                                        }
                                    );
                                    return Poll::Ready(Next::Close);
                                }
                                timer.as_mut().reset(due);
                            }
                        }
                        return Poll::Pending;
                    }
                }
            }
        })
        .await;
        let head = match next {
            Next::Head(head) => head,
            Next::Close => break Ok(()),
            Next::Failed(err) => break Err(Error::Read(err)),
            Next::Refused(refused) => {
                out.clear();
                match refused {
                    HeadError::Refused(_) => out.extend_from_slice(BAD_REQUEST),
                    HeadError::TooLarge | HeadError::TooManyHeaders => {
                        write::refusal(&mut out, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
                    }
                }
                break write_all(&wire, &out)
                    .await
                    .and(Err(Error::Refused(refused)));
            }
        };

        serial = serial.wrapping_add(1);
        let body = {
            let mut locked = lock(&wire);
            locked.serial = serial;
            match head.framing {
                // As the framing guard did: a chunked body whose bad framing is already here
                // refuses the whole request before anything of it reaches a target.
                Framing::Chunked => match chunked_refusal(&locked.read) {
                    Some(violation) => Err(violation),
                    None => {
                        locked.reading = Reading::Chunked(Chunked::default());
                        locked.continue_at = head.expect_continue.then_some(0);
                        Ok(Body::wire(wire.clone(), serial, None))
                    }
                },
                Framing::Empty => Ok(Body::empty()),
                Framing::Length(length) if locked.read.len() as u64 >= length => {
                    // Within the buffer's length, so it fits a usize.
                    Ok(Body::full(locked.read.split_to(length as usize).freeze()))
                }
                Framing::Length(length) => {
                    locked.reading = Reading::Length(length);
                    locked.continue_at = head.expect_continue.then_some(0);
                    Ok(Body::wire(wire.clone(), serial, Some(length)))
                }
            }
        };
        let body = match body {
            Ok(body) => body,
            Err(violation) => {
                break write_all(&wire, BAD_REQUEST)
                    .await
                    .and(Err(Error::Refused(HeadError::Refused(violation))))
            }
        };
        let method = head.method.clone();
        let answering = Answering {
            method: &method,
            version: head.version,
            keep_alive: head.keep_alive,
        };
        let mut request = Request::new(RequestBody::Own(body));
        *request.method_mut() = head.method;
        *request.uri_mut() = head.uri;
        *request.version_mut() = head.version;
        *request.headers_mut() = head.headers;

        let response = {
            let mut handling = pin!(handle(request));
            std::future::poll_fn(|cx| {
                if let Poll::Ready(response) = handling.as_mut().poll(cx) {
                    return Poll::Ready(Ok(response));
                }
                match lock(&wire).poll_gone(cx) {
                    Poll::Ready(None) => Poll::Ready(Err(Error::Gone)),
                    Poll::Ready(Some(err)) => Poll::Ready(Err(Error::Read(err))),
                    Poll::Pending => Poll::Pending,
                }
            })
            .await
        };
        let response = match response {
            Ok(response) => response,
            Err(err) => break Err(err),
        };

        // A request body not read to its end is skipped when it is already here; otherwise the
        // connection cannot find the next request and closes after this response.
        let body_over = {
            let mut wire = lock(&wire);
            let over = wire.drain_buffered();
            wire.continue_at = None;
            over
        };
        let (parts, body) = response.into_parts();
        out.clear();
        let (encoder, close) = match write::head(
            &mut out,
            &parts,
            (body.size_hint(), body.is_end_stream()),
            &answering,
            *shutting_down.borrow() || !body_over,
        ) {
            Ok(framed) => framed,
            Err(write::BadLength) => break Err(Error::BadContentLength),
        };
        spare_headers = parts.headers;
        spare_headers.clear();
        if let Err(err) = send(&wire, &mut out, encoder, body).await {
            break Err(err);
        }
        if close {
            break Ok(());
        }
    };
    // Whatever the end, the stream is shut down and a body still held somewhere reads no more.
    let _ = std::future::poll_fn(|cx| {
        let mut wire = lock(&wire);
        wire.reading = Reading::Failed;
        wire.serial = wire.serial.wrapping_add(1);
        Pin::new(&mut wire.io).poll_shutdown(cx)
    })
    .await;
    result
}

/// Writes `out` whole.
async fn write_all(wire: &Shared, out: &[u8]) -> Result<(), Error> {
    let mut at = 0;
    std::future::poll_fn(|cx| {
        let mut wire = lock(wire);
        while at < out.len() {
            let written =
                ready!(Pin::new(&mut wire.io).poll_write(cx, &out[at..])).map_err(Error::Write)?;
            if written == 0 {
                return Poll::Ready(Err(Error::Write(io::ErrorKind::WriteZero.into())));
            }
            at += written;
        }
        Pin::new(&mut wire.io).poll_flush(cx).map_err(Error::Write)
    })
    .await
}

/// Writes the head in `out` and the body after it as `encoder` says. Body data is gathered
/// while the body has it ready and written when it waits (or when enough is gathered), so a
/// head and a small body go out in one write.
async fn send(
    wire: &Shared,
    out: &mut Vec<u8>,
    encoder: Encoder,
    mut body: ProxyBody,
) -> Result<(), Error> {
    let mut remaining = match encoder {
        Encoder::Length(length) => length,
        _ => 0,
    };
    let mut ended = encoder == Encoder::None;
    if ended {
        drop(std::mem::replace(&mut body, crate::body::empty()));
    }
    let mut at = 0;
    // Large data written from where it is, and whether a chunk's CRLF follows it.
    let mut data = Bytes::new();
    let mut crlf = false;
    std::future::poll_fn(|cx| loop {
        let unwritten = out.len() > at || !data.is_empty();
        if !ended && data.is_empty() && out.len() - at < WRITE_AT {
            match Pin::new(&mut body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(chunk) = frame.into_data() else {
                        // Trailers: hyper sent none unless the response declared them, and
                        // no response here does.
                        continue;
                    };
                    if chunk.is_empty() {
                        continue;
                    }
                    match encoder {
                        Encoder::Length(_) => {
                            if chunk.len() as u64 > remaining {
                                return Poll::Ready(Err(Error::TooLong));
                            }
                            remaining -= chunk.len() as u64;
                        }
                        Encoder::Chunked => {
                            chunk_size(out, chunk.len());
                            crlf = true;
                        }
                        Encoder::Close | Encoder::None => {}
                    }
                    if chunk.len() <= COPY_MAX {
                        out.extend_from_slice(&chunk);
                        if crlf {
                            out.extend_from_slice(b"\r\n");
                            crlf = false;
                        }
                    } else {
                        data = chunk;
                    }
                    continue;
                }
                Poll::Ready(Some(Err(err))) => return Poll::Ready(Err(Error::Body(err))),
                Poll::Ready(None) => {
                    ended = true;
                    match encoder {
                        Encoder::Chunked => out.extend_from_slice(b"0\r\n\r\n"),
                        Encoder::Length(_) if remaining > 0 => {
                            return Poll::Ready(Err(Error::TooShort))
                        }
                        _ => {}
                    }
                    continue;
                }
                Poll::Pending if !unwritten => {
                    return match lock(wire).poll_gone(cx) {
                        Poll::Ready(None) => Poll::Ready(Err(Error::Gone)),
                        Poll::Ready(Some(err)) => Poll::Ready(Err(Error::Read(err))),
                        Poll::Pending => Poll::Pending,
                    }
                }
                Poll::Pending => {}
            }
        }
        let mut locked = lock(wire);
        if out.len() == at && data.is_empty() {
            ready!(Pin::new(&mut locked.io).poll_flush(cx)).map_err(Error::Write)?;
            if ended {
                return Poll::Ready(Ok(()));
            }
            continue;
        }
        let written = if data.is_empty() {
            ready!(Pin::new(&mut locked.io).poll_write(cx, &out[at..]))
        } else {
            let slices = [IoSlice::new(&out[at..]), IoSlice::new(&data)];
            ready!(Pin::new(&mut locked.io).poll_write_vectored(cx, &slices))
        }
        .map_err(Error::Write)?;
        if written == 0 {
            return Poll::Ready(Err(Error::Write(io::ErrorKind::WriteZero.into())));
        }
        let from_out = written.min(out.len() - at);
        at += from_out;
        data.advance(written - from_out);
        if at == out.len() {
            out.clear();
            at = 0;
            if data.is_empty() && crlf {
                out.extend_from_slice(b"\r\n");
                crlf = false;
            }
        }
    })
    .await
}

/// How the chunked body at the start of `buffered` breaks its framing in what has arrived, if it
/// does (decoded on a copy: the body's reader decodes it again).
fn chunked_refusal(buffered: &BytesMut) -> Option<Violation> {
    let mut copy = BytesMut::from(&buffered[..]);
    let mut decoder = Chunked::default();
    loop {
        match decoder.decode(&mut copy) {
            Ok(Decoded::Data(_) | Decoded::Trailers(_)) => {}
            Ok(Decoded::NeedMore | Decoded::End) => return None,
            Err(violation) => return Some(violation),
        }
    }
}

/// A chunk's size line.
fn chunk_size(out: &mut Vec<u8>, size: usize) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut digits = [0u8; 16];
    let mut at = digits.len();
    let mut size = size;
    loop {
        at -= 1;
        digits[at] = HEX[size & 0xf];
        size >>= 4;
        if size == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
    out.extend_from_slice(b"\r\n");
}
