//! The request as bytes on the wire: the head written into one buffer, the body framed as
//! hyper's client frames it, and both written with back-pressure as the body arrives.

use std::io::Write as _;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Buf;
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderValue, Method, Request, Version};
use http_body::Body as _;
use tokio::io::AsyncWrite;

use super::{Error, Io};
use crate::body::ProxyBody;

/// How much of the body is gathered before it is written: small bodies go out with the head
/// in one write, a large one in pieces of about this size as the target takes them.
const GATHER: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// `Content-Length`: the bytes still to send.
    Length(u64),
    Chunked,
}

/// A request being written: its encoded bytes not yet written and the body still to read.
/// Until its first byte is written it can be sent as it is on another connection.
pub struct Outgoing {
    /// What the response's framing depends on (a HEAD's has no body).
    pub method: Method,
    /// The request's header map, emptied once written: the response's headers reuse it.
    pub spare: HeaderMap,
    /// When the target must have answered with a head; it stays with a request sent again.
    pub deadline: Option<tokio::time::Instant>,
    out: Vec<u8>,
    written: usize,
    /// `None` once the body has ended (or for a request without one).
    body: Option<ProxyBody>,
    framing: Framing,
    started: bool,
    flushed: bool,
}

impl Outgoing {
    /// Encodes the request's head as hyper's `Client::encode` does (method, the URI as given,
    /// the headers in order), with the framing hyper chooses for its body.
    pub fn new(request: Request<ProxyBody>) -> Outgoing {
        let (mut parts, body) = request.into_parts();
        let can_chunk = parts.version != Version::HTTP_10;
        let (framing, body) = framing(&parts.method, &mut parts.headers, body, can_chunk);
        let path = parts
            .uri
            .path_and_query()
            .map_or(0, |path| path.as_str().len());
        let size = parts.method.as_str().len()
            + path
            + parts
                .headers
                .iter()
                .map(|(name, value)| name.as_str().len() + value.len() + 4)
                .sum::<usize>()
            + 16;
        let mut out = Vec::with_capacity(size);
        out.extend_from_slice(parts.method.as_str().as_bytes());
        out.push(b' ');
        match parts.uri.path_and_query() {
            Some(path) => out.extend_from_slice(path.as_str().as_bytes()),
            // An origin-less URI with nothing in it: what hyper writes for it.
            None => {
                let _ = write!(out, "{}", parts.uri);
            }
        }
        out.extend_from_slice(if can_chunk {
            b" HTTP/1.1\r\n"
        } else {
            b" HTTP/1.0\r\n"
        });
        for (name, value) in &parts.headers {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        parts.headers.clear();
        Outgoing {
            method: parts.method,
            spare: parts.headers,
            deadline: None,
            out,
            written: 0,
            body,
            framing,
            started: false,
            flushed: false,
        }
    }

    /// Whether any byte of the request went out.
    pub fn started(&self) -> bool {
        self.started
    }

    /// Writes what it can of the request; ready once all of it is written and flushed.
    pub fn poll_write(&mut self, io: &mut Io, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        loop {
            self.gather(cx)?;
            if self.written == self.out.len() {
                if !self.flushed {
                    ready!(Pin::new(&mut *io).poll_flush(cx)).map_err(Error::Write)?;
                    self.flushed = true;
                }
                return if self.body.is_none() {
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Pending
                };
            }
            let n = ready!(Pin::new(&mut *io).poll_write(cx, &self.out[self.written..]))
                .map_err(Error::Write)?;
            if n == 0 {
                return Poll::Ready(Err(Error::Write(std::io::ErrorKind::WriteZero.into())));
            }
            self.started = true;
            self.flushed = false;
            self.written += n;
            if self.written == self.out.len() {
                self.out.clear();
                self.written = 0;
            }
        }
    }

    /// Encodes the body's frames that are ready into the buffer, up to [`GATHER`] bytes.
    fn gather(&mut self, cx: &mut Context<'_>) -> Result<(), Error> {
        while self.out.len() - self.written < GATHER {
            let Some(body) = self.body.as_mut() else {
                return Ok(());
            };
            let frame = match Pin::new(body).poll_frame(cx) {
                Poll::Pending => return Ok(()),
                Poll::Ready(Some(Ok(frame))) => frame,
                Poll::Ready(Some(Err(err))) => return Err(Error::RequestBody(err)),
                Poll::Ready(None) => {
                    self.body = None;
                    match self.framing {
                        Framing::Chunked => self.out.extend_from_slice(b"0\r\n\r\n"),
                        Framing::Length(0) => {}
                        Framing::Length(_) => return Err(Error::BodyLength),
                    }
                    return Ok(());
                }
            };
            // Trailers from a client's body are not forwarded, as hyper did not.
            let Ok(mut data) = frame.into_data() else {
                continue;
            };
            let len = data.remaining();
            if len == 0 {
                continue;
            }
            match &mut self.framing {
                Framing::Length(remaining) => {
                    *remaining = remaining.checked_sub(len as u64).ok_or(Error::BodyLength)?;
                    self.out.extend_from_slice(data.chunk());
                    data.advance(len);
                }
                Framing::Chunked => {
                    let _ = write!(self.out, "{len:X}\r\n");
                    self.out.extend_from_slice(data.chunk());
                    self.out.extend_from_slice(b"\r\n");
                }
            }
        }
        Ok(())
    }
}

/// hyper's `Client::set_length`: headers the request already carries are respected, an
/// exact size becomes `Content-Length`, an unknown one chunked (none at all for GET, HEAD and
/// CONNECT), and a body that has ended before it started sends no framing header of its own.
fn framing(
    method: &Method,
    headers: &mut HeaderMap,
    body: ProxyBody,
    can_chunk: bool,
) -> (Framing, Option<ProxyBody>) {
    if body.is_end_stream() {
        headers.remove(TRANSFER_ENCODING);
        return (Framing::Length(0), None);
    }
    let exact = body.size_hint().exact();
    let declared = declared_length(headers);
    if !can_chunk {
        headers.remove(TRANSFER_ENCODING);
        let length = match (declared, exact) {
            (Some(len), _) => len,
            (None, Some(len)) => {
                headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
                len
            }
            (None, None) => 0,
        };
        return sized(length, body);
    }
    if let Some(coding) = headers.get_all(TRANSFER_ENCODING).iter().next_back() {
        let chunked = coding
            .to_str()
            .ok()
            .and_then(|text| text.rsplit(',').next())
            .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        if !chunked {
            let mut value = coding.as_bytes().to_vec();
            value.extend_from_slice(b", chunked");
            if let Ok(value) = HeaderValue::from_bytes(&value) {
                if let Some(last) = headers
                    .get_all(TRANSFER_ENCODING)
                    .iter()
                    .count()
                    .checked_sub(1)
                {
                    replace_nth(headers, last, value);
                }
            }
        }
        headers.remove(CONTENT_LENGTH);
        return (Framing::Chunked, Some(body));
    }
    let length = match (declared, exact) {
        (Some(len), _) => len,
        (None, Some(len)) => {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
            len
        }
        // GET, HEAD and CONNECT almost never have a body: hyper sends none rather than an
        // empty chunked one.
        (None, None) if matches!(*method, Method::GET | Method::HEAD | Method::CONNECT) => 0,
        (None, None) => {
            headers.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
            return (Framing::Chunked, Some(body));
        }
    };
    sized(length, body)
}

/// A body framed by its length; with nothing to send it is not read at all, as in hyper.
fn sized(length: u64, body: ProxyBody) -> (Framing, Option<ProxyBody>) {
    (Framing::Length(length), (length > 0).then_some(body))
}

/// The `Content-Length` the request's headers agree on.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    let mut length = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        for part in value.to_str().ok()?.split(',') {
            let n: u64 = part.trim().parse().ok()?;
            if length.is_some_and(|seen| seen != n) {
                return None;
            }
            length = Some(n);
        }
    }
    length
}

/// Replaces the `n`th `Transfer-Encoding` value, keeping the others in order.
fn replace_nth(headers: &mut HeaderMap, n: usize, value: HeaderValue) {
    let mut values: Vec<HeaderValue> = headers.get_all(TRANSFER_ENCODING).iter().cloned().collect();
    if let Some(slot) = values.get_mut(n) {
        *slot = value;
    }
    headers.remove(TRANSFER_ENCODING);
    for value in values {
        headers.append(TRANSFER_ENCODING, value);
    }
}
