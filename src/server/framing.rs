//! A guard in front of hyper's HTTP/1 parser. hyper accepts some ambiguous framing on its own
//! (Content-Length with Transfer-Encoding treated as chunked, `gzip, chunked`, duplicate
//! Content-Length, bare LF line ends, control bytes in chunk extensions); a proxy that forwards
//! such a request to a target that frames it differently is a request-smuggling vector. The
//! guard scans the raw bytes of every request on the connection and, at the first violation,
//! hands hyper only the bytes before it plus one NUL byte, which hyper's own parser rejects with
//! 400 and a closed connection. Nothing after the violation is ever parsed, so nothing
//! half-parsed is forwarded. HTTP/2 connections (prior-knowledge preface) pass untouched: their
//! framing is binary and hyper's h2 codec validates it.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Longest header line the guard looks into (for Content-Length and Transfer-Encoding);
/// longer lines are still scanned for bad bytes, and hyper's own size limit answers 431.
const MAX_KEPT_LINE: usize = 256;

/// Longest chunk-size line (digits and extensions) accepted.
const MAX_CHUNK_LINE: usize = 4096;

/// Why a request was refused; logged, never echoed to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    BareLf,
    BareCr,
    ControlByte,
    ObsFold,
    ContentLengthWithTransferEncoding,
    DuplicateContentLength,
    MalformedContentLength,
    DuplicateTransferEncoding,
    UnsupportedTransferEncoding,
    InvalidChunkSize,
    InvalidChunkExtension,
    MissingChunkCrlf,
}

impl Violation {
    pub fn as_str(self) -> &'static str {
        match self {
            Violation::BareLf => "bare LF line ending",
            Violation::BareCr => "CR not followed by LF",
            Violation::ControlByte => "control byte in the request head",
            Violation::ObsFold => "obsolete line folding",
            Violation::ContentLengthWithTransferEncoding => {
                "Content-Length together with Transfer-Encoding"
            }
            Violation::DuplicateContentLength => "more than one Content-Length",
            Violation::MalformedContentLength => "malformed Content-Length",
            Violation::DuplicateTransferEncoding => "more than one Transfer-Encoding",
            Violation::UnsupportedTransferEncoding => {
                "Transfer-Encoding other than a single chunked"
            }
            Violation::InvalidChunkSize => "invalid chunk size",
            Violation::InvalidChunkExtension => "invalid chunk extension",
            Violation::MissingChunkCrlf => "chunk data not followed by CRLF",
        }
    }
}

/// Where the scan stands in the request stream.
#[derive(Debug)]
enum State {
    /// The first bytes of the connection, while they could still be the HTTP/2 preface.
    Start {
        matched: usize,
    },
    /// HTTP/2: not scanned.
    Passthrough,
    Head(Head),
    /// Bytes of a Content-Length body still to come.
    Fixed(u64),
    ChunkSize {
        digits: usize,
        size: u64,
        in_extension: bool,
        line: usize,
        cr: bool,
    },
    ChunkData(u64),
    ChunkDataCr,
    ChunkDataLf,
    /// After the last chunk: trailer lines, scanned like header lines.
    Trailers(Head),
    Rejected,
}

/// The scan of one request head (or trailer section).
#[derive(Debug, Default)]
struct Head {
    line: Vec<u8>,
    line_len: usize,
    cr: bool,
    /// Lines seen so far, the request line included.
    lines: usize,
    content_lengths: usize,
    content_length: Option<u64>,
    transfer_encodings: usize,
}

enum LineEnd {
    More,
    /// The empty line: the head is complete.
    Done,
}

impl Head {
    /// One byte of a head. `is_trailer` skips the request-line rules.
    fn byte(&mut self, byte: u8, is_trailer: bool) -> Result<Option<LineEnd>, Violation> {
        if self.cr {
            self.cr = false;
            if byte != b'\n' {
                return Err(Violation::BareCr);
            }
            return self.line_end(is_trailer).map(Some);
        }
        match byte {
            b'\r' => self.cr = true,
            b'\n' => return Err(Violation::BareLf),
            b'\t' => self.push(byte),
            0..=0x1f | 0x7f => return Err(Violation::ControlByte),
            _ => self.push(byte),
        }
        Ok(None)
    }

    fn push(&mut self, byte: u8) {
        if self.line.len() < MAX_KEPT_LINE {
            self.line.push(byte);
        }
        self.line_len += 1;
    }

    fn line_end(&mut self, is_trailer: bool) -> Result<LineEnd, Violation> {
        let empty = self.line_len == 0;
        let first_line = self.lines == 0 && !is_trailer;
        let line = std::mem::take(&mut self.line);
        self.line_len = 0;
        if empty {
            // RFC 9112 §2.2: empty lines before the request line are ignored.
            return Ok(if first_line {
                LineEnd::More
            } else {
                LineEnd::Done
            });
        }
        self.lines += 1;
        if first_line {
            return Ok(LineEnd::More);
        }
        if matches!(line.first(), Some(b' ' | b'\t')) {
            return Err(Violation::ObsFold);
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            // Not a header line; hyper's parser refuses it with 400 on its own.
            return Ok(LineEnd::More);
        };
        let name = &line[..colon];
        let value = trim(&line[colon + 1..]);
        if name.eq_ignore_ascii_case(b"content-length") {
            self.content_lengths += 1;
            if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
                return Err(Violation::MalformedContentLength);
            }
            let text = std::str::from_utf8(value).map_err(|_| Violation::MalformedContentLength)?;
            self.content_length = Some(
                text.parse()
                    .map_err(|_| Violation::MalformedContentLength)?,
            );
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.transfer_encodings += 1;
            if !value.eq_ignore_ascii_case(b"chunked") {
                return Err(Violation::UnsupportedTransferEncoding);
            }
        }
        Ok(LineEnd::More)
    }

    /// The framing of the body that follows a complete head.
    fn body(&self) -> Result<State, Violation> {
        match (self.content_lengths, self.transfer_encodings) {
            (0, 0) => Ok(State::Head(Head::default())),
            (1, 0) => Ok(match self.content_length {
                Some(0) | None => State::Head(Head::default()),
                Some(length) => State::Fixed(length),
            }),
            (0, 1) => Ok(State::ChunkSize {
                digits: 0,
                size: 0,
                in_extension: false,
                line: 0,
                cr: false,
            }),
            (0, _) => Err(Violation::DuplicateTransferEncoding),
            (_, 0) => Err(Violation::DuplicateContentLength),
            _ => Err(Violation::ContentLengthWithTransferEncoding),
        }
    }
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

/// The framing scan of a connection's request stream.
#[derive(Debug)]
pub struct Scanner {
    state: State,
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner {
            state: State::Start { matched: 0 },
        }
    }
}

impl Scanner {
    /// Scans the next bytes; on a violation, returns how many of them are good.
    pub fn scan(&mut self, bytes: &[u8]) -> Result<(), (usize, Violation)> {
        let mut at = 0;
        while at < bytes.len() {
            match self.step(&bytes[at..]) {
                Ok(used) => at += used,
                Err(violation) => {
                    self.state = State::Rejected;
                    return Err((at, violation));
                }
            }
        }
        Ok(())
    }

    /// Consumes at least one byte of `bytes` (bodies in bulk) and returns how many.
    fn step(&mut self, bytes: &[u8]) -> Result<usize, Violation> {
        let byte = bytes[0];
        match &mut self.state {
            State::Start { matched } => {
                if H2_PREFACE[*matched] == byte {
                    *matched += 1;
                    if *matched == H2_PREFACE.len() {
                        self.state = State::Passthrough;
                    }
                    return Ok(1);
                }
                // Not HTTP/2 after all: the bytes seen so far begin an HTTP/1 head.
                let seen = *matched;
                self.state = State::Head(Head::default());
                for &earlier in &H2_PREFACE[..seen] {
                    self.head_byte(earlier)?;
                }
                self.head_byte(byte)?;
                Ok(1)
            }
            State::Passthrough | State::Rejected => Ok(bytes.len()),
            State::Head(_) => {
                self.head_byte(byte)?;
                Ok(1)
            }
            State::Fixed(remaining) => {
                let used = bytes
                    .len()
                    .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                *remaining -= used as u64;
                if *remaining == 0 {
                    self.state = State::Head(Head::default());
                }
                Ok(used)
            }
            State::ChunkSize {
                digits,
                size,
                in_extension,
                line,
                cr,
            } => {
                *line += 1;
                if *line > MAX_CHUNK_LINE {
                    return Err(Violation::InvalidChunkExtension);
                }
                if *cr {
                    if byte != b'\n' {
                        return Err(Violation::BareCr);
                    }
                    self.state = if *size == 0 {
                        State::Trailers(Head::default())
                    } else {
                        State::ChunkData(*size)
                    };
                    return Ok(1);
                }
                match byte {
                    b'\r' if *digits > 0 => *cr = true,
                    b'\n' => return Err(Violation::BareLf),
                    _ if *in_extension => {
                        if byte != b'\t' && (byte < 0x20 || byte == 0x7f) {
                            return Err(Violation::InvalidChunkExtension);
                        }
                    }
                    b';' | b' ' | b'\t' if *digits > 0 => *in_extension = true,
                    _ => {
                        let digit = (byte as char)
                            .to_digit(16)
                            .ok_or(Violation::InvalidChunkSize)?;
                        *digits += 1;
                        if *digits > 16 {
                            return Err(Violation::InvalidChunkSize);
                        }
                        *size = (*size << 4) | u64::from(digit);
                    }
                }
                Ok(1)
            }
            State::ChunkData(remaining) => {
                let used = bytes
                    .len()
                    .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                *remaining -= used as u64;
                if *remaining == 0 {
                    self.state = State::ChunkDataCr;
                }
                Ok(used)
            }
            State::ChunkDataCr => {
                if byte != b'\r' {
                    return Err(Violation::MissingChunkCrlf);
                }
                self.state = State::ChunkDataLf;
                Ok(1)
            }
            State::ChunkDataLf => {
                if byte != b'\n' {
                    return Err(Violation::MissingChunkCrlf);
                }
                self.state = State::ChunkSize {
                    digits: 0,
                    size: 0,
                    in_extension: false,
                    line: 0,
                    cr: false,
                };
                Ok(1)
            }
            State::Trailers(trailers) => {
                if let Some(LineEnd::Done) = trailers.byte(byte, true)? {
                    self.state = State::Head(Head::default());
                }
                Ok(1)
            }
        }
    }

    fn head_byte(&mut self, byte: u8) -> Result<(), Violation> {
        let State::Head(head) = &mut self.state else {
            return Ok(());
        };
        if let Some(LineEnd::Done) = head.byte(byte, false)? {
            self.state = head.body()?;
        }
        Ok(())
    }
}

/// The connection as hyper sees it: reads pass through the [`Scanner`].
pub struct FramingGuard<IO> {
    io: IO,
    scanner: Scanner,
    remote: std::net::SocketAddr,
}

impl<IO> FramingGuard<IO> {
    pub fn new(io: IO, remote: std::net::SocketAddr) -> Self {
        FramingGuard {
            io,
            scanner: Scanner::default(),
            remote,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for FramingGuard<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if matches!(this.scanner.state, State::Rejected) {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        if let Err((good, violation)) = this.scanner.scan(&buf.filled()[before..]) {
            tracing::warn!(client = %this.remote, "refused a request: {}", violation.as_str());
            buf.set_filled(before + good);
            // A byte hyper's parser rejects wherever it stands: it answers 400 and closes.
            buf.put_slice(b"\0");
        }
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for FramingGuard<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(stream: &[u8]) -> Result<(), Violation> {
        let mut scanner = Scanner::default();
        scanner.scan(stream).map_err(|(_, violation)| violation)
    }

    /// The same verdict whatever the byte boundaries of the reads.
    fn verdict_bytewise(stream: &[u8]) -> Result<(), Violation> {
        let mut scanner = Scanner::default();
        for byte in stream {
            scanner
                .scan(std::slice::from_ref(byte))
                .map_err(|(_, violation)| violation)?;
        }
        Ok(())
    }

    #[test]
    fn well_framed_pipelined_requests_pass() {
        let stream = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\
            POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
            POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;name=\"v\"\r\nhello\r\n0\r\nX-T: 1\r\n\r\n\
            GET /c HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(verdict(stream), Ok(()));
        assert_eq!(verdict_bytewise(stream), Ok(()));
    }

    #[test]
    fn http2_prior_knowledge_passes_untouched() {
        let mut stream = H2_PREFACE.to_vec();
        stream.extend_from_slice(b"\x00\x00\x12\x04\x00\x00\x00\x00\x00\n\r\x01");
        assert_eq!(verdict(&stream), Ok(()));
    }

    #[test]
    fn a_request_that_starts_like_the_preface_is_still_scanned() {
        assert_eq!(
            verdict(b"PRI * HTTP/1.1\nHost: x\r\n\r\n"),
            Err(Violation::BareLf)
        );
        assert_eq!(
            verdict(
                b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx"
            ),
            Err(Violation::DuplicateContentLength)
        );
    }

    #[test]
    fn each_ambiguous_framing_is_refused() {
        let cases: &[(&[u8], Violation)] = &[
            (b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", Violation::ContentLengthWithTransferEncoding),
            (b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", Violation::DuplicateContentLength),
            (b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n", Violation::MalformedContentLength),
            (b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n", Violation::MalformedContentLength),
            (b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", Violation::MalformedContentLength),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", Violation::UnsupportedTransferEncoding),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", Violation::DuplicateTransferEncoding),
            (b"GET / HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n", Violation::ObsFold),
            (b"GET / HTTP/1.1\nHost: x\n\n", Violation::BareLf),
            (b"GET / HTTP/1.1\r\nHost: x\rX: y\r\n\r\n", Violation::BareCr),
            (b"GET / HTTP/1.1\r\nX-A: a\x00b\r\n\r\n", Violation::ControlByte),
            (b"GET / HTTP/1.1\r\nX-A: a\x7fb\r\n\r\n", Violation::ControlByte),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", Violation::InvalidChunkSize),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\n", Violation::InvalidChunkSize),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n11111111111111111\r\n", Violation::InvalidChunkSize),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;a=\x01\r\n", Violation::InvalidChunkExtension),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello", Violation::BareLf),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX", Violation::MissingChunkCrlf),
            (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: a\nb\r\n\r\n", Violation::BareLf),
        ];
        for (stream, expected) in cases {
            assert_eq!(
                verdict(stream),
                Err(*expected),
                "{:?}",
                String::from_utf8_lossy(stream)
            );
            assert_eq!(
                verdict_bytewise(stream),
                Err(*expected),
                "bytewise {:?}",
                String::from_utf8_lossy(stream)
            );
        }
    }

    #[test]
    fn the_good_prefix_ends_right_before_the_violation() {
        let stream = b"GET / HTTP/1.1\r\nHost: x\nX: y\r\n\r\n";
        let mut scanner = Scanner::default();
        let (good, violation) = scanner.scan(stream).unwrap_err();
        assert_eq!(violation, Violation::BareLf);
        assert_eq!(&stream[..good], b"GET / HTTP/1.1\r\nHost: x");
    }
}
