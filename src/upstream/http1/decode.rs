//! A response body's framing, decoded from the bytes the connection has read: a known length,
//! chunked (RFC 9112 §7.1, trailers included) or until the target closes. Each decision depends on one byte at a
//! time or on the bytes at hand, so any split of the same bytes across reads gives the same body.

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};

use super::Error;
use crate::body::split_framed;

/// hyper's bounds on a chunk's extensions (which are ignored) and on trailers.
const CHUNK_EXTENSIONS_LIMIT: u64 = 16 * 1024;
const TRAILERS_LIMIT: usize = 16 * 1024;
const MAX_TRAILERS: usize = 100;

#[derive(Debug)]
pub enum Decoder {
    /// `Content-Length`: the bytes still to come.
    Length(u64),
    Chunked(Chunked),
    /// Until the target closes; `true` once it has.
    Eof(bool),
}

/// What one step of decoding gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    Data(Bytes),
    /// A chunked body's trailer fields, given once after its data.
    Trailers(HeaderMap),
    /// The bytes read so far end inside the body's framing: read more.
    NeedMore,
    End,
}

#[derive(Debug)]
pub struct Chunked {
    state: State,
    /// The chunk size being read, then the bytes of the chunk still to come.
    size: u64,
    /// Bytes of extensions seen, against their limit.
    extensions: u64,
    /// The trailer lines as they came, until the body ends.
    trailers: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The first digit of a chunk size.
    Start,
    Size,
    /// Whitespace after the size: no more digits may come.
    SizeLws,
    Extension,
    SizeLf,
    Body,
    BodyCr,
    BodyLf,
    /// After the last chunk: the empty line that ends the body, or a trailer line.
    EndCr,
    EndLf,
    Trailer,
    TrailerLf,
    End,
}

impl Decoder {
    pub fn chunked() -> Decoder {
        Decoder::Chunked(Chunked {
            state: State::Start,
            size: 0,
            extensions: 0,
            trailers: Vec::new(),
        })
    }

    /// The body's next piece from `buf`, consuming what it decodes.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, Error> {
        match self {
            Decoder::Length(0) | Decoder::Eof(true) => Ok(Decoded::End),
            // Its trailers may be given without a byte more.
            Decoder::Chunked(chunked) => chunked.decode(buf),
            _ if buf.is_empty() => Ok(Decoded::NeedMore),
            Decoder::Length(remaining) => Ok(Decoded::Data(split_framed(buf, remaining))),
            Decoder::Eof(false) => Ok(Decoded::Data(buf.split().freeze())),
        }
    }

    /// The target closed the connection: the end of a close-delimited body, an error otherwise.
    pub fn at_eof(&mut self) -> Result<(), Error> {
        match self {
            Decoder::Eof(done) => {
                *done = true;
                Ok(())
            }
            _ if self.is_end() => Ok(()),
            _ => Err(Error::IncompleteBody),
        }
    }

    pub fn is_end(&self) -> bool {
        match self {
            Decoder::Length(remaining) => *remaining == 0,
            Decoder::Chunked(chunked) => chunked.state == State::End && chunked.trailers.is_empty(),
            Decoder::Eof(done) => *done,
        }
    }

    /// Whether the body's end is known without the connection closing.
    pub fn is_delimited(&self) -> bool {
        !matches!(self, Decoder::Eof(_))
    }
}

impl Chunked {
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, Error> {
        loop {
            match self.state {
                State::End if !self.trailers.is_empty() => {
                    return Ok(Decoded::Trailers(trailers(&std::mem::take(
                        &mut self.trailers,
                    ))?))
                }
                State::End => return Ok(Decoded::End),
                State::Body => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let data = split_framed(buf, &mut self.size);
                    if self.size == 0 {
                        self.state = State::BodyCr;
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

    /// The framing state after `byte` (hyper's rules: `\r\n` only, hex digits, whitespace
    /// after the size, extensions ignored up to a limit, trailers read and dropped).
    fn step(&mut self, byte: u8) -> Result<State, Error> {
        let invalid = |what: &'static str| Err(Error::Chunked(what));
        match self.state {
            State::Start | State::Size => match hex(byte) {
                Some(digit) => {
                    self.size = self
                        .size
                        .checked_mul(16)
                        .and_then(|size| size.checked_add(digit))
                        .ok_or(Error::Chunked("chunk size overflows"))?;
                    Ok(State::Size)
                }
                None if self.state == State::Start => invalid("missing chunk size"),
                None => match byte {
                    b'\t' | b' ' => Ok(State::SizeLws),
                    b';' => Ok(State::Extension),
                    b'\r' => Ok(State::SizeLf),
                    _ => invalid("invalid chunk size"),
                },
            },
            State::SizeLws => match byte {
                b'\t' | b' ' => Ok(State::SizeLws),
                b';' => Ok(State::Extension),
                b'\r' => Ok(State::SizeLf),
                _ => invalid("invalid whitespace after the chunk size"),
            },
            State::Extension => match byte {
                b'\r' => Ok(State::SizeLf),
                b'\n' => invalid("chunk extension contains a newline"),
                _ => {
                    self.extensions += 1;
                    if self.extensions >= CHUNK_EXTENSIONS_LIMIT {
                        invalid("chunk extensions over the limit")
                    } else {
                        Ok(State::Extension)
                    }
                }
            },
            State::SizeLf => match byte {
                b'\n' if self.size == 0 => Ok(State::EndCr),
                b'\n' => Ok(State::Body),
                _ => invalid("no LF after the chunk size"),
            },
            State::BodyCr => match byte {
                b'\r' => Ok(State::BodyLf),
                _ => invalid("no CR after the chunk data"),
            },
            State::BodyLf => match byte {
                b'\n' => Ok(State::Start),
                _ => invalid("no LF after the chunk data"),
            },
            State::EndCr => match byte {
                b'\r' => Ok(State::EndLf),
                _ => self.trailer_byte(byte, State::Trailer),
            },
            State::EndLf => match byte {
                b'\n' => Ok(State::End),
                _ => invalid("no LF at the end of the chunked body"),
            },
            State::Trailer => match byte {
                b'\r' => self.trailer_byte(byte, State::TrailerLf),
                _ => self.trailer_byte(byte, State::Trailer),
            },
            State::TrailerLf => match byte {
                b'\n' => self.trailer_byte(byte, State::EndCr),
                _ => invalid("no LF after a trailer"),
            },
            State::Body | State::End => Ok(self.state),
        }
    }

    fn trailer_byte(&mut self, byte: u8, next: State) -> Result<State, Error> {
        if self.trailers.len() >= TRAILERS_LIMIT {
            return Err(Error::Chunked("trailers over the limit"));
        }
        self.trailers.push(byte);
        Ok(next)
    }
}

/// The trailer lines (each ending in CRLF) as fields, as hyper's `decode_trailers` reads them:
/// a line it cannot read fails the body.
fn trailers(lines: &[u8]) -> Result<HeaderMap, Error> {
    let mut block = Vec::with_capacity(lines.len() + 2);
    block.extend_from_slice(lines);
    block.extend_from_slice(b"\r\n");
    let mut fields = [httparse::EMPTY_HEADER; MAX_TRAILERS];
    let parsed = match httparse::parse_headers(&block, &mut fields) {
        Ok(httparse::Status::Complete((_, parsed))) => parsed,
        _ => return Err(Error::Chunked("invalid trailers")),
    };
    let mut trailers = HeaderMap::with_capacity(parsed.len());
    for field in parsed.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(field.name.as_bytes()),
            HeaderValue::from_bytes(field.value),
        ) else {
            return Err(Error::Chunked("invalid trailers"));
        };
        trailers.append(name, value);
    }
    Ok(trailers)
}

fn hex(byte: u8) -> Option<u64> {
    match byte {
        b'0'..=b'9' => Some(u64::from(byte - b'0')),
        b'a'..=b'f' => Some(u64::from(byte - b'a' + 10)),
        b'A'..=b'F' => Some(u64::from(byte - b'A' + 10)),
        _ => None,
    }
}
