//! One parse of a request head. INTERFACE STUB (lead): lenient; the strict version, which
//! refuses everything the framing guard refuses, replaces the body of `parse` and keeps the
//! signatures.

use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, Version};

use crate::server::framing::Violation;

/// The listener's limits on a head.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `limits.max_header_bytes`: the whole head, request line included.
    pub max_head_bytes: usize,
    /// `limits.max_headers`.
    pub max_headers: usize,
}

/// How the request's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (no Content-Length, no Transfer-Encoding, or `Content-Length: 0`).
    Empty,
    Length(u64),
    Chunked,
}

/// A parsed request head.
#[derive(Debug)]
pub struct Head {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub headers: HeaderMap,
    pub framing: Framing,
    /// Whether the connection may carry another request after this one (HTTP/1.1 without
    /// `Connection: close`, HTTP/1.0 with `Connection: keep-alive`).
    pub keep_alive: bool,
    /// `Expect: 100-continue` on a request with a body.
    pub expect_continue: bool,
}

/// Why a head was refused, and so what the client is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// 400 with the guard's `bad_framing` body.
    #[error("{}", .0.as_str())]
    Refused(Violation),
    /// 431: more than `max_head_bytes` without the head's end.
    #[error("request head larger than the limit")]
    TooLarge,
    /// 431: more than `max_headers` header lines.
    #[error("more header lines than the limit")]
    TooManyHeaders,
}

/// Parses the head at the start of `buf`: `Ok(None)` while it is incomplete (read more and
/// call again with the longer buffer), else the head and its length in bytes.
pub fn parse(buf: &[u8], limits: &Limits) -> Result<Option<(Head, usize)>, HeadError> {
    let mut slots = [httparse::EMPTY_HEADER; 100];
    let mut heap;
    let slots: &mut [httparse::Header<'_>] = if limits.max_headers <= slots.len() {
        &mut slots[..limits.max_headers]
    } else {
        heap = vec![httparse::EMPTY_HEADER; limits.max_headers];
        &mut heap
    };
    let mut request = httparse::Request::new(slots);
    let len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > limits.max_head_bytes => {
            return Err(HeadError::TooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
        Err(_) => return Err(HeadError::Refused(Violation::MalformedRequestLine)),
    };
    if len > limits.max_head_bytes {
        return Err(HeadError::TooLarge);
    }
    let bad = || HeadError::Refused(Violation::MalformedRequestLine);
    let method =
        Method::from_bytes(request.method.ok_or_else(bad)?.as_bytes()).map_err(|_| bad())?;
    let uri: Uri = request.path.ok_or_else(bad)?.parse().map_err(|_| bad())?;
    let version = match request.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let mut headers = HeaderMap::with_capacity(request.headers.len());
    let mut framing = Framing::Empty;
    let mut close = version == Version::HTTP_10;
    let mut expect_continue = false;
    for header in request.headers.iter() {
        let name = HeaderName::from_bytes(header.name.as_bytes()).map_err(|_| bad())?;
        let value = HeaderValue::from_bytes(header.value).map_err(|_| bad())?;
        if name == http::header::CONTENT_LENGTH {
            let length = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or(HeadError::Refused(Violation::MalformedContentLength))?;
            framing = if length == 0 {
                Framing::Empty
            } else {
                Framing::Length(length)
            };
        } else if name == http::header::TRANSFER_ENCODING {
            framing = Framing::Chunked;
        } else if name == http::header::CONNECTION {
            let value = header.value.to_ascii_lowercase();
            if value.windows(5).any(|w| w == b"close") {
                close = true;
            } else if value.windows(10).any(|w| w == b"keep-alive") {
                close = false;
            }
        } else if name == http::header::EXPECT {
            expect_continue = header.value.eq_ignore_ascii_case(b"100-continue");
        }
        headers.append(name, value);
    }
    let head = Head {
        method,
        uri,
        version,
        headers,
        expect_continue: expect_continue && framing != Framing::Empty,
        framing,
        keep_alive: !close,
    };
    Ok(Some((head, len)))
}
