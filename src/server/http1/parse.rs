//! One strict parse of a request head. httparse finds the lines (with SIMD), and the checks
//! here refuse what the framing guard (`server::framing`) refuses and what hyper refused
//! behind it, so that the head is parsed once and by one set of rules: two parsers that can
//! disagree on where a request ends are a request-smuggling vector.
//!
//! httparse already refuses control bytes, bare CR, obs-fold, header names that are not
//! tokens, more than two spaces between the request line's parts and versions other than
//! HTTP/1.0 and 1.1. It accepts a bare LF as a line end, which the guard refuses: each line end
//! it found is checked where it lies (one comparison per line rather than a pass over the
//! head). The rest — Content-Length, Transfer-Encoding, the request-target's form, `Host` —
//! is checked on the fields httparse found, in the guard's order, so that a head gets the
//! guard's `Violation`. A head httparse refuses is handed to the guard's own scanner to name
//! the violation (only refused heads pay for it).

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, Version};

use crate::server::framing::{
    absolute_authority, is_host_byte, without_default_port, Authority, Scanner, Violation,
    MAX_KEPT_LINE, MAX_REQUEST_LINE,
};

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

/// Header slots kept on the stack; a larger `max_headers` takes them from the heap.
const STACK_HEADERS: usize = 100;

/// `Violation` has no variant for a head that is not HTTP at all (a header line without a
/// colon, a method or header name that is not a token, a request-target `http::Uri` cannot
/// read): the guard left those to hyper, which answered 400. They are refused as a malformed
/// request line, the nearest the guard's vocabulary has.
const MALFORMED: HeadError = HeadError::Refused(Violation::MalformedRequestLine);

/// Parses the head at the start of `buf`: `Ok(None)` while it is incomplete (read more and
/// call again with the longer buffer), else the head and its length in bytes.
pub fn parse(buf: &[u8], limits: &Limits) -> Result<Option<(Head, usize)>, HeadError> {
    parse_into(buf, limits, &mut HeaderMap::new())
}

/// [`parse`], with the head's headers put into `spare` (taken once the head is complete): a
/// connection passes the last response's emptied map, which has room for the headers the
/// proxy adds, where a map sized to the request would grow, and saves building one per head.
pub fn parse_into(
    buf: &[u8],
    limits: &Limits,
    spare: &mut HeaderMap,
) -> Result<Option<(Head, usize)>, HeadError> {
    let mut stack = [httparse::EMPTY_HEADER; STACK_HEADERS];
    let mut heap;
    let slots: &mut [httparse::Header<'_>] = if limits.max_headers <= STACK_HEADERS {
        &mut stack[..limits.max_headers]
    } else {
        heap = vec![httparse::EMPTY_HEADER; limits.max_headers];
        &mut heap
    };
    let mut request = httparse::Request::new(slots);
    let len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > limits.max_head_bytes => {
            return Err(guard_verdict(buf).unwrap_or(HeadError::TooLarge))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(guard_verdict(buf).unwrap_or(HeadError::TooManyHeaders))
        }
        Err(_) => return Err(guard_verdict(buf).unwrap_or(MALFORMED)),
    };
    let head = check(buf, len, &request, spare)?;
    if len > limits.max_head_bytes {
        return Err(HeadError::TooLarge);
    }
    Ok(Some((head, len)))
}

/// The guard's checks on a head httparse completed (`buf[..len]`), and the head built from it.
fn check(
    buf: &[u8],
    len: usize,
    request: &httparse::Request<'_, '_>,
    spare: &mut HeaderMap,
) -> Result<Head, HeadError> {
    let refuse = |violation| Err(HeadError::Refused(violation));
    let (Some(method), Some(target), Some(version)) =
        (request.method, request.path, request.version)
    else {
        return Err(MALFORMED);
    };
    let offset = |part: &[u8]| part.as_ptr() as usize - buf.as_ptr() as usize;
    // Empty lines before the request line are ignored (RFC 9112 §2.2), if they end in CRLF.
    let start = offset(method.as_bytes());
    if buf[..start].chunks(2).any(|pair| pair != b"\r\n") {
        return refuse(Violation::BareLf);
    }
    // Where each line after the request line starts (the last one is the empty line that ends
    // the head): every line before it must end in CRLF, not in the bare LF httparse accepts.
    let crlf_before = |at: usize| at >= 2 && &buf[at - 2..at] == b"\r\n";
    let empty_line = if crlf_before(len) { len - 2 } else { len - 1 };
    let headers = &*request.headers;
    let line_start = |index: usize| match headers.get(index) {
        Some(header) => offset(header.name.as_bytes()),
        None => empty_line,
    };
    let first_header = line_start(0);
    if !crlf_before(first_header) {
        return refuse(Violation::BareLf);
    }
    if first_header - 2 - start > MAX_REQUEST_LINE {
        return refuse(Violation::RequestLineTooLong);
    }

    let version = if version == 1 {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    let authority = request_target(method.as_bytes(), target.as_bytes())?;

    let mut fields = Fields {
        authority,
        ..Fields::default()
    };
    // One copy of the head that the values and the URI share, rather than one each: ten
    // allocations fewer on a typical head.
    let shared = Bytes::copy_from_slice(&buf[..len]);
    let share = |part: &[u8]| shared.slice(offset(part)..offset(part) + part.len());
    let mut map = std::mem::take(spare);
    map.reserve(headers.len());
    let mut keep_alive = version == Version::HTTP_11;
    let mut closed = false;
    let mut expect_continue = false;
    for (index, header) in headers.iter().enumerate() {
        let next = line_start(index + 1);
        if !crlf_before(next) {
            return refuse(Violation::BareLf);
        }
        let whole = next - 2 - offset(header.name.as_bytes()) <= MAX_KEPT_LINE;
        let name = HeaderName::from_bytes(header.name.as_bytes()).map_err(|_| MALFORMED)?;
        if name == http::header::CONTENT_LENGTH {
            fields.content_length(header.value, whole)?;
        } else if name == http::header::TRANSFER_ENCODING {
            fields.transfer_encoding(header.value, whole)?;
        } else if name == http::header::HOST {
            fields.host(header.value, whole)?;
        } else if name == http::header::CONNECTION {
            // As hyper reads it: once any line asks to close, a later keep-alive does not
            // undo it; HTTP/1.0 keeps the connection only when asked to.
            if closed || has_token(header.value, b"close") {
                closed = true;
                keep_alive = false;
            } else if !keep_alive {
                keep_alive = has_token(header.value, b"keep-alive");
            }
        } else if name == http::header::EXPECT {
            expect_continue = header.value.eq_ignore_ascii_case(b"100-continue");
        }
        // SAFETY: httparse took only HTAB, SP to `~` and obs-text (0x80-0xFF) into a value,
        // which are exactly the bytes a `HeaderValue` may hold (hyper relies on the same).
        let value = unsafe { HeaderValue::from_maybe_shared_unchecked(share(header.value)) };
        map.append(name, value);
    }
    // The empty line that ends the head.
    if !crlf_before(len) {
        return refuse(Violation::BareLf);
    }
    let framing = fields.framing(version == Version::HTTP_11)?;
    // What hyper refused behind the guard comes after the guard's own checks, as it did.
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| MALFORMED)?;
    let uri = Uri::from_maybe_shared(share(target.as_bytes())).map_err(|_| MALFORMED)?;
    Ok(Head {
        method,
        uri,
        version,
        headers: map,
        expect_continue: expect_continue && framing != Framing::Empty,
        framing,
        keep_alive,
    })
}

/// RFC 9112 §3.2: origin-form, absolute-form (http or https, whose authority is returned to
/// compare with `Host`) or `*` for OPTIONS; never a fragment. Authority-form (CONNECT) is
/// refused: a reverse proxy does not tunnel.
fn request_target(method: &[u8], target: &[u8]) -> Result<Option<Authority>, HeadError> {
    if target.contains(&b'#') {
        return Err(HeadError::Refused(Violation::Fragment));
    }
    match target {
        [b'/', ..] => Ok(None),
        b"*" if method == b"OPTIONS" => Ok(None),
        _ => absolute_authority(target)
            .map(Some)
            .map_err(HeadError::Refused),
    }
}

/// What the framing and routing fields said, line by line, to be judged at the head's end.
#[derive(Default)]
struct Fields {
    content_lengths: usize,
    content_length: u64,
    transfer_encodings: usize,
    hosts: usize,
    authority: Option<Authority>,
    host_disagrees: bool,
}

impl Fields {
    fn content_length(&mut self, value: &[u8], whole: bool) -> Result<(), HeadError> {
        self.content_lengths += 1;
        self.content_length = content_length(value, whole).map_err(HeadError::Refused)?;
        Ok(())
    }

    fn transfer_encoding(&mut self, value: &[u8], whole: bool) -> Result<(), HeadError> {
        self.transfer_encodings += 1;
        if !is_chunked(value, whole) {
            return Err(HeadError::Refused(Violation::UnsupportedTransferEncoding));
        }
        Ok(())
    }

    fn host(&mut self, value: &[u8], whole: bool) -> Result<(), HeadError> {
        self.hosts += 1;
        if self.hosts > 1 {
            return Err(HeadError::Refused(Violation::DuplicateHost));
        }
        if !whole || !value.iter().all(|&b| is_host_byte(b)) {
            return Err(HeadError::Refused(Violation::InvalidHost));
        }
        if let Some(authority) = &self.authority {
            let host = without_default_port(value, authority.default_port);
            self.host_disagrees = !host.eq_ignore_ascii_case(&authority.host);
        }
        Ok(())
    }

    /// The checks on the head as a whole, in the guard's order.
    fn framing(&self, http11: bool) -> Result<Framing, HeadError> {
        let refuse = |violation| Err(HeadError::Refused(violation));
        if http11 && self.hosts == 0 {
            return refuse(Violation::MissingHost);
        }
        if self.host_disagrees {
            return refuse(Violation::AuthorityMismatch);
        }
        match (self.content_lengths, self.transfer_encodings) {
            (0, 0) => Ok(Framing::Empty),
            (1, 0) if self.content_length == 0 => Ok(Framing::Empty),
            (1, 0) => Ok(Framing::Length(self.content_length)),
            // hyper's rule: HTTP/1.0 has no transfer codings.
            (0, 1) if !http11 => refuse(Violation::UnsupportedTransferEncoding),
            (0, 1) => Ok(Framing::Chunked),
            (0, _) => refuse(Violation::DuplicateTransferEncoding),
            (_, 0) => refuse(Violation::DuplicateContentLength),
            _ => refuse(Violation::ContentLengthWithTransferEncoding),
        }
    }
}

/// A Content-Length value (trimmed; `whole`: its line is within the guard's `MAX_KEPT_LINE`):
/// digits only (no sign, no list, no inner space), at most 19 of them so that they fit.
pub(super) fn content_length(value: &[u8], whole: bool) -> Result<u64, Violation> {
    if !whole || value.is_empty() || value.len() > 19 {
        return Err(Violation::MalformedContentLength);
    }
    let mut length = 0u64;
    for &byte in value {
        if !byte.is_ascii_digit() {
            return Err(Violation::MalformedContentLength);
        }
        length = length * 10 + u64::from(byte - b'0');
    }
    Ok(length)
}

/// A Transfer-Encoding value that is a single `chunked`, case-insensitively (RFC 9112 §7):
/// anything else is a coding the proxy would have to decode to find the body's end.
pub(super) fn is_chunked(value: &[u8], whole: bool) -> bool {
    whole && value.eq_ignore_ascii_case(b"chunked")
}

/// Whether a `Connection` value lists `token`, as hyper reads it: comma-separated, trimmed,
/// case-insensitive, and only in a value of visible ASCII.
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| b == b'\t' || (b' '..0x7f).contains(&b))
        && value
            .split(|&b| b == b',')
            .any(|item| item.trim_ascii().eq_ignore_ascii_case(token))
}

/// The guard's verdict on the head at the start of `buf`, for a head httparse refused or that
/// ran over a limit: the guard's violation if it finds one (it read the head before hyper
/// did, so its 400 came first), else `None`. Only the first head is scanned — up to its empty
/// line, or all of `buf` — so a later request's bytes cannot lend it their violation.
fn guard_verdict(buf: &[u8]) -> Option<HeadError> {
    let mut at = 0;
    while buf[at..].starts_with(b"\r\n") {
        at += 2;
    }
    let end = buf[at..]
        .windows(2)
        .position(|pair| pair == b"\n\n")
        .map(|found| at + found + 2);
    let end_crlf = buf[at..]
        .windows(3)
        .position(|triple| triple == b"\n\r\n")
        .map(|found| at + found + 3);
    let end = match (end, end_crlf) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b).unwrap_or(buf.len()),
    };
    Scanner::default()
        .scan(&buf[..end])
        .err()
        .map(|refusal| HeadError::Refused(refusal.violation))
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
