//! The target's response head, parsed with `httparse` as hyper's client parses it: interim
//! (1xx) responses skipped, a malformed header line dropped, and the body's framing decided by
//! RFC 9112 §6.3.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};

use super::decode::Decoder;
use super::Error;

/// hyper's limits: a head may hold 100 header lines, and the bytes read while it is still
/// incomplete may not reach its read buffer's maximum.
const MAX_HEADERS: usize = 100;
pub const MAX_HEAD_BYTES: usize = 8192 + 4096 * 100;

/// A response head and how its body is framed.
#[derive(Debug)]
pub struct Head {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    /// The reason phrase when it is not the status's usual one, so the client sees it too.
    pub reason: Option<hyper::ext::ReasonPhrase>,
    pub decoder: Decoder,
    /// Whether the connection may carry another request after this response.
    pub keep_alive: bool,
}

/// The offsets of one header line's name and value in the head's bytes.
#[derive(Clone, Copy, Default)]
struct Line {
    name: [u32; 2],
    value: [u32; 2],
}

/// Which framing headers the head carries, noted as its lines are read.
#[derive(Clone, Copy, Default)]
struct Framing {
    transfer_encoding: bool,
    /// The one length all `Content-Length` values agree on (hyper's
    /// `content_length_parse_all`); `Some(None)` when a value is invalid or they disagree.
    content_length: Option<Option<u64>>,
}

impl Framing {
    fn content_length(&mut self, value: &[u8]) {
        for part in value.split(|&b| b == b',') {
            let n = digits(part.trim_ascii());
            self.content_length = match (self.content_length, n) {
                (None, n) => Some(n),
                (Some(Some(seen)), Some(n)) if seen == n => Some(Some(n)),
                _ => Some(None),
            };
        }
    }
}

/// Parses the final response head at the start of `buf`, consuming it (and any 1xx heads
/// before it); `None` while the head is incomplete.
///
/// `spare` is a map whose allocation the headers may take (the request's, emptied, as hyper
/// reuses it): one allocation less per exchange.
pub fn parse(
    buf: &mut BytesMut,
    method: &Method,
    spare: &mut HeaderMap,
) -> Result<Option<Head>, Error> {
    loop {
        // Where each line is, to take its name and value from the head's bytes once they are
        // split off. Offsets in `u32` (reading stops at `MAX_HEAD_BYTES` of an unfinished
        // head) keep the zeroed array small enough to be cleared without a `rep stos`.
        let mut lines = [Line::default(); MAX_HEADERS];
        let (len, code, reason, version, count) = {
            let mut slots = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
            let mut response = httparse::Response::new(&mut []);
            let bytes: &[u8] = buf;
            let parsed = httparse::ParserConfig::default()
                .ignore_invalid_headers_in_responses(true)
                .parse_response_with_uninit_headers(&mut response, bytes, &mut slots);
            let len = match parsed {
                Ok(httparse::Status::Complete(len)) => len,
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(err) => return Err(Error::Head(err)),
            };
            let (Some(code), Some(reason), Some(version)) =
                (response.code, response.reason, response.version)
            else {
                return Err(Error::Head(httparse::Error::Status));
            };
            let base = bytes.as_ptr() as usize;
            // Within the bytes read, which stop growing past `MAX_HEAD_BYTES`.
            let offset = |part: &[u8]| (part.as_ptr() as usize - base) as u32;
            for (line, header) in lines.iter_mut().zip(response.headers.iter()) {
                let name = offset(header.name.as_bytes());
                let value = offset(header.value);
                *line = Line {
                    name: [name, name + header.name.len() as u32],
                    value: [value, value + header.value.len() as u32],
                };
            }
            let reason = match StatusCode::from_u16(code) {
                Ok(status) if status.canonical_reason() == Some(reason) => None,
                _ => Some(Bytes::copy_from_slice(reason.as_bytes())),
            };
            (len, code, reason, version, response.headers.len())
        };
        let status =
            StatusCode::from_u16(code).map_err(|_| Error::Head(httparse::Error::Status))?;
        let version = if version == 1 {
            Version::HTTP_11
        } else {
            Version::HTTP_10
        };
        let bytes = buf.split_to(len).freeze();
        let mut headers = std::mem::take(spare);
        headers.reserve(count);
        let mut keep_alive = version == Version::HTTP_11;
        let mut saw_close = false;
        let mut framing = Framing::default();
        for line in &lines[..count] {
            let [name_start, name_end] = line.name.map(|at| at as usize);
            let [value_start, value_end] = line.value.map(|at| at as usize);
            let Ok(name) = HeaderName::from_bytes(&bytes[name_start..name_end]) else {
                continue;
            };
            // SAFETY: httparse took only HTAB, SP to `~` and obs-text (0x80-0xFF) into a value
            // (a line with any other byte is skipped, `ignore_invalid_headers_in_responses`),
            // which are exactly the bytes a `HeaderValue` may hold; the proxy listener's parse
            // relies on the same.
            let value = unsafe {
                HeaderValue::from_maybe_shared_unchecked(bytes.slice(value_start..value_end))
            };
            if name == CONNECTION {
                // Once a `Connection` line asks to close, a later `keep-alive` cannot undo it.
                if saw_close || has_token(&value, "close") {
                    saw_close = true;
                    keep_alive = false;
                } else if !keep_alive {
                    keep_alive = has_token(&value, "keep-alive");
                }
            } else if name == TRANSFER_ENCODING {
                framing.transfer_encoding = true;
            } else if name == CONTENT_LENGTH {
                framing.content_length(value.as_bytes());
            }
            headers.append(name, value);
        }
        let Some((decoder, upgrade)) = decoder(status, version, &headers, framing, method)? else {
            // An interim response (100 Continue, 103 Early Hints): the final one follows.
            if buf.is_empty() {
                return Ok(None);
            }
            continue;
        };
        return Ok(Some(Head {
            status,
            version,
            headers,
            reason: reason.and_then(|reason| hyper::ext::ReasonPhrase::try_from(reason).ok()),
            decoder,
            keep_alive: keep_alive && !upgrade,
        }));
    }
}

/// The body's framing (RFC 9112 §6.3, as hyper's `Client::decoder`), and whether the response
/// switches protocols; `None` for an interim response.
fn decoder(
    status: StatusCode,
    version: Version,
    headers: &HeaderMap,
    framing: Framing,
    method: &Method,
) -> Result<Option<(Decoder, bool)>, Error> {
    match status.as_u16() {
        101 => return Ok(Some((Decoder::Length(0), true))),
        100..=199 => return Ok(None),
        204 | 304 => return Ok(Some((Decoder::Length(0), false))),
        _ => {}
    }
    if *method == Method::HEAD {
        return Ok(Some((Decoder::Length(0), false)));
    }
    if *method == Method::CONNECT && status.is_success() {
        return Ok(Some((Decoder::Length(0), true)));
    }
    if framing.transfer_encoding {
        if version == Version::HTTP_10 {
            return Err(Error::Framing("HTTP/1.0 response with Transfer-Encoding"));
        }
        let chunked = headers
            .get_all(TRANSFER_ENCODING)
            .iter()
            .next_back()
            .and_then(|last| last.to_str().ok())
            .and_then(|last| last.rsplit(',').next())
            .is_some_and(|coding| coding.trim().eq_ignore_ascii_case("chunked"));
        return Ok(Some((
            if chunked {
                Decoder::chunked()
            } else {
                Decoder::Eof(false)
            },
            false,
        )));
    }
    match framing.content_length {
        Some(Some(len)) => Ok(Some((Decoder::Length(len), false))),
        Some(None) => Err(Error::Framing("invalid or conflicting Content-Length")),
        None => Ok(Some((Decoder::Eof(false), false))),
    }
}

/// A decimal number without sign or other characters.
fn digits(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() {
        return None;
    }
    bytes.iter().try_fold(0u64, |n, &b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

fn has_token(value: &HeaderValue, token: &str) -> bool {
    value.to_str().is_ok_and(|text| {
        text.split(',')
            .any(|part| part.trim().eq_ignore_ascii_case(token))
    })
}
