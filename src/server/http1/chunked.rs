//! A chunked request body (RFC 9112 §7.1), decoded from the bytes the connection has read, by
//! the framing guard's rules (`server::framing`) and within hyper's limits, so that the proxy
//! ends the body exactly where the guard and hyper together did, or refuses it:
//! - chunk size: 1 to 16 hex digits, then CRLF, `;` and an extension, or whitespace that only
//!   a `;` may follow (`4 \r\n` is refused); no control byte in an extension; extensions
//!   together under hyper's 16 KiB;
//! - chunk data followed by CRLF;
//! - trailer lines scanned like header lines (bare CR or LF, control bytes, obs-fold,
//!   malformed Content-Length or Transfer-Encoding), at most 100 of them in under 16 KiB, and
//!   readable as fields.
//!
//! Each decision depends on one byte of framing at a time (data is taken in bulk), so any split
//! of the same bytes across reads gives the same body, trailers and verdict.

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};

use super::parse::{content_length, is_chunked};
use crate::body::split_framed;
use crate::server::framing::{chunk_size_digit, Violation, MAX_CHUNK_LINE, MAX_KEPT_LINE};

/// hyper's bounds on a body's chunk extensions (which are ignored) and on its trailers.
const CHUNK_EXTENSIONS_LIMIT: u64 = 16 * 1024;
const TRAILERS_LIMIT: usize = 16 * 1024;
const MAX_TRAILERS: usize = 100;

/// Trailers hyper could not read (a line without a colon, a name that is not a token) or over
/// its limits: `Violation` has no variant for them, the guard left them to hyper, and this is
/// the nearest (the message is not HTTP).
const UNREADABLE: Violation = Violation::MalformedRequestLine;

/// What one step of decoding gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    Data(Bytes),
    /// The trailer fields, given once after the data when there are any.
    Trailers(HeaderMap),
    /// The bytes read so far end inside the framing: read more and call again.
    NeedMore,
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The chunk size's digits.
    Size,
    /// Whitespace after the digits: only more of it or a `;` may follow.
    SizeSpace,
    Extension,
    /// The LF owed after the chunk-size line's CR.
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// A trailer line, or the empty line that ends the body.
    Trailer,
    TrailerLf,
    /// The body ended with trailers, not given yet.
    Trailers,
    End,
}

#[derive(Debug)]
pub struct Chunked {
    state: State,
    /// The chunk size being read, then the chunk's bytes still to come.
    size: u64,
    digits: usize,
    /// Bytes of the current chunk-size line, against the guard's limit.
    line: usize,
    /// Bytes of extensions in the whole body, against hyper's limit.
    extensions: u64,
    /// The trailer lines as they came (with their CRLF), then the empty line.
    trailers: Vec<u8>,
    /// Where the current trailer line starts in `trailers`.
    line_start: usize,
    trailer_lines: usize,
}

impl Default for Chunked {
    fn default() -> Self {
        Chunked {
            state: State::Size,
            size: 0,
            digits: 0,
            line: 0,
            extensions: 0,
            trailers: Vec::new(),
            line_start: 0,
            trailer_lines: 0,
        }
    }
}

impl Chunked {
    /// The body's next piece from `buf`, consuming what it decodes.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, Violation> {
        loop {
            match self.state {
                State::End => return Ok(Decoded::End),
                State::Trailers => {
                    self.state = State::End;
                    let lines = std::mem::take(&mut self.trailers);
                    return fields(&lines).map(Decoded::Trailers);
                }
                State::Data => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let data = split_framed(buf, &mut self.size);
                    if self.size == 0 {
                        self.state = State::DataCr;
                    }
                    return Ok(Decoded::Data(data));
                }
                _ => {
                    let Some(&byte) = buf.first() else {
                        return Ok(Decoded::NeedMore);
                    };
                    buf.advance(1);
                    self.state = self.step(byte)?;
                }
            }
        }
    }

    /// The state after one byte of framing.
    fn step(&mut self, byte: u8) -> Result<State, Violation> {
        match self.state {
            State::Size | State::SizeSpace | State::Extension | State::SizeLf => {
                self.line += 1;
                if self.line > MAX_CHUNK_LINE {
                    return Err(Violation::InvalidChunkExtension);
                }
                self.size_line(byte)
            }
            State::DataCr => match byte {
                b'\r' => Ok(State::DataLf),
                _ => Err(Violation::MissingChunkCrlf),
            },
            State::DataLf => match byte {
                b'\n' => {
                    self.size = 0;
                    self.digits = 0;
                    self.line = 0;
                    Ok(State::Size)
                }
                _ => Err(Violation::MissingChunkCrlf),
            },
            State::Trailer => match byte {
                b'\r' => self.keep(byte, State::TrailerLf),
                b'\n' => Err(Violation::BareLf),
                b'\t' => self.keep(byte, State::Trailer),
                0..=0x1f | 0x7f => Err(Violation::ControlByte),
                _ => self.keep(byte, State::Trailer),
            },
            State::TrailerLf => match byte {
                b'\n' => self.trailer_line_end(),
                _ => Err(Violation::BareCr),
            },
            State::Data | State::Trailers | State::End => Ok(self.state),
        }
    }

    /// One byte of the line `size [BWS ";" extension] CRLF`.
    fn size_line(&mut self, byte: u8) -> Result<State, Violation> {
        match (self.state, byte) {
            (State::SizeLf, b'\n') if self.size == 0 => Ok(State::Trailer),
            (State::SizeLf, b'\n') => Ok(State::Data),
            (State::SizeLf, _) => Err(Violation::BareCr),
            (_, b'\n') => Err(Violation::BareLf),
            (State::Extension, b'\r') => Ok(State::SizeLf),
            (State::Extension, _) => {
                if byte != b'\t' && (byte < 0x20 || byte == 0x7f) {
                    return Err(Violation::InvalidChunkExtension);
                }
                self.extensions += 1;
                if self.extensions >= CHUNK_EXTENSIONS_LIMIT {
                    return Err(Violation::InvalidChunkExtension);
                }
                Ok(State::Extension)
            }
            (_, b';') if self.digits > 0 => Ok(State::Extension),
            (_, b' ' | b'\t') if self.digits > 0 => Ok(State::SizeSpace),
            // `4 \r\n`: hyper took it, RFC 9112 §7.1 does not.
            (State::SizeSpace, _) => Err(Violation::ChunkSizeWhitespace),
            (_, b'\r') if self.digits > 0 => Ok(State::SizeLf),
            _ => {
                chunk_size_digit(&mut self.size, &mut self.digits, byte)?;
                Ok(State::Size)
            }
        }
    }

    /// Keeps a trailer byte, within hyper's limit on the trailers' size.
    fn keep(&mut self, byte: u8, next: State) -> Result<State, Violation> {
        self.trailers.push(byte);
        if self.trailers.len() >= TRAILERS_LIMIT {
            return Err(UNREADABLE);
        }
        Ok(next)
    }

    /// The LF that ends a trailer line, or the empty line that ends the body.
    fn trailer_line_end(&mut self) -> Result<State, Violation> {
        // Without the CR just kept.
        let line = &self.trailers[self.line_start..self.trailers.len() - 1];
        if line.is_empty() {
            if self.line_start == 0 {
                return Ok(State::End);
            }
            return self.keep(b'\n', State::Trailers);
        }
        trailer_line(line)?;
        if self.trailer_lines >= MAX_TRAILERS {
            return Err(UNREADABLE);
        }
        self.trailer_lines += 1;
        self.keep(b'\n', State::Trailer)?;
        self.line_start = self.trailers.len();
        Ok(State::Trailer)
    }
}

/// The guard's rules for a trailer line, as for a header line: no obs-fold, and
/// Content-Length or Transfer-Encoding well-formed even here (`Host` is not checked).
fn trailer_line(line: &[u8]) -> Result<(), Violation> {
    if matches!(line.first(), Some(b' ' | b'\t')) {
        return Err(Violation::ObsFold);
    }
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        // Not a field: hyper's reading of the trailers refuses it at the end.
        return Ok(());
    };
    let name = &line[..colon];
    let value = trim(&line[colon + 1..]);
    let whole = line.len() <= MAX_KEPT_LINE;
    if name.eq_ignore_ascii_case(b"content-length") {
        content_length(value, whole)?;
    } else if name.eq_ignore_ascii_case(b"transfer-encoding") && !is_chunked(value, whole) {
        return Err(Violation::UnsupportedTransferEncoding);
    }
    Ok(())
}

fn trim(mut value: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = value {
        value = rest;
    }
    value
}

/// The trailer lines (and the empty line after them) as fields, as hyper read them.
fn fields(lines: &[u8]) -> Result<HeaderMap, Violation> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_TRAILERS];
    let parsed = match httparse::parse_headers(lines, &mut slots) {
        Ok(httparse::Status::Complete((_, parsed))) => parsed,
        _ => return Err(UNREADABLE),
    };
    let mut trailers = HeaderMap::with_capacity(parsed.len());
    for field in parsed.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(field.name.as_bytes()),
            HeaderValue::from_bytes(field.value),
        ) else {
            return Err(UNREADABLE);
        };
        trailers.append(name, value);
    }
    Ok(trailers)
}

#[cfg(test)]
#[path = "chunked_tests.rs"]
mod tests;
