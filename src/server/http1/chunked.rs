//! A chunked request body, decoded from the bytes the connection has read. INTERFACE STUB
//! (lead): delegates to the client connection's decoder; the strict version refuses what the
//! framing guard refuses (chunk-size whitespace, control bytes in extensions, bare LF...) and
//! keeps these signatures.

use bytes::{Bytes, BytesMut};
use http::HeaderMap;

use crate::server::framing::Violation;
use crate::upstream::http1::decode;

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

#[derive(Debug)]
pub struct Chunked(decode::Decoder);

impl Default for Chunked {
    fn default() -> Self {
        Chunked(decode::Decoder::chunked())
    }
}

impl Chunked {
    /// The body's next piece from `buf`, consuming what it decodes.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, Violation> {
        match self.0.decode(buf) {
            Ok(decode::Decoded::Data(data)) => Ok(Decoded::Data(data)),
            Ok(decode::Decoded::Trailers(trailers)) => Ok(Decoded::Trailers(trailers)),
            Ok(decode::Decoded::NeedMore) => Ok(Decoded::NeedMore),
            Ok(decode::Decoded::End) => Ok(Decoded::End),
            Err(_) => Err(Violation::InvalidChunkSize),
        }
    }
}
