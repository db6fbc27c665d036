//! A guard in front of hyper's HTTP/1 parser. hyper accepts some ambiguous framing on its own
//! (Content-Length with Transfer-Encoding treated as chunked, `gzip, chunked`, duplicate
//! Content-Length, bare LF line ends, control bytes in chunk extensions); a proxy that forwards
//! such a request to a target that frames it differently is a request-smuggling vector. The
//! guard reads ahead, scans the raw bytes of every request on the connection before hyper sees
//! them and, at the first violation, ends the stream for hyper before the offending request
//! (or, when its head already went through, right before the bad bytes, so its body fails),
//! then answers 400 and closes. Nothing after a violation is ever parsed, so nothing
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
    /// Nothing of this head seen yet: the next byte starts a request.
    fn is_fresh(&self) -> bool {
        self.lines == 0 && self.line_len == 0 && !self.cr
    }

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

    /// Takes the run of ordinary line bytes at the start of `bytes` at once, as [`Head::byte`]
    /// would one by one; 0 when the next byte needs its rules (CR, LF, a control byte, or the
    /// LF owed after a CR). Heads are mostly such runs, and a byte at a time cost about 100
    /// instructions each on the proxied path.
    fn plain_run(&mut self, bytes: &[u8]) -> usize {
        if self.cr {
            return 0;
        }
        let run = bytes
            .iter()
            .position(|&b| !(b == b'\t' || (b >= 0x20 && b != 0x7f)))
            .unwrap_or(bytes.len());
        let keep = run.min(MAX_KEPT_LINE.saturating_sub(self.line.len()));
        self.line.extend_from_slice(&bytes[..keep]);
        self.line_len += run;
        run
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

/// Takes up to `remaining` of the `available` body bytes in one step (bodies are not scanned
/// byte by byte) and returns how many.
fn consume(remaining: &mut u64, available: usize) -> usize {
    let used = available.min(usize::try_from(*remaining).unwrap_or(usize::MAX));
    *remaining -= used as u64;
    used
}

/// A refused stream: how many bytes of the last read may still go to hyper, why, and whether
/// the guard itself must answer 400 (hyper never saw the offending request's head whole).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub good: usize,
    pub violation: Violation,
    pub answer: bool,
}

/// The framing scan of a connection's request stream.
#[derive(Debug)]
pub struct Scanner {
    state: State,
    /// Bytes of the stream scanned so far.
    position: u64,
    /// Where the request being scanned began in the stream.
    request_start: u64,
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner {
            state: State::Start { matched: 0 },
            position: 0,
            request_start: 0,
        }
    }
}

impl Scanner {
    /// Scans the next bytes. On a violation, says how many of them may go to hyper: up to the
    /// start of the offending request when it began in these bytes (hyper then never sees it,
    /// so nothing of it reaches a target), else up to the violation itself.
    pub fn scan(&mut self, bytes: &[u8]) -> Result<(), Refusal> {
        let read_start = self.position;
        let mut at = 0;
        while at < bytes.len() {
            match self.step(&bytes[at..]) {
                Ok(used) => {
                    at += used;
                    self.position += used as u64;
                    if matches!(&self.state, State::Head(head) if head.is_fresh()) {
                        self.request_start = self.position;
                    }
                }
                Err(violation) => {
                    let in_head = matches!(self.state, State::Start { .. } | State::Head(_));
                    self.state = State::Rejected;
                    let withheld = self.request_start.checked_sub(read_start);
                    let good = match withheld {
                        Some(start) => at.min(usize::try_from(start).unwrap_or(at)),
                        None => at,
                    };
                    return Err(Refusal {
                        good,
                        violation,
                        // hyper answers a request whose head it parsed (the body then fails in
                        // the pipeline, which answers 400); the guard answers the others.
                        answer: withheld.is_some() || in_head,
                    });
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
            State::Head(head) => {
                let run = head.plain_run(bytes);
                if run > 0 {
                    return Ok(run);
                }
                self.head_byte(byte)?;
                Ok(1)
            }
            State::Fixed(remaining) => {
                let used = consume(remaining, bytes.len());
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
                let used = consume(remaining, bytes.len());
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

/// How much the guard reads from the socket at once; everything read is scanned before hyper
/// gets any of it, so a bad request that arrives whole never reaches hyper's parser.
const READ_AHEAD: usize = 16 * 1024;

/// What a refused client gets when hyper never saw its request.
const BAD_REQUEST: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n\
content-length: 81\r\nconnection: close\r\n\r\n\
{\"error\":\"bad_framing\",\"route\":null,\"side\":\"client\",\"detail\":\"malformed request\"}";

/// The connection as hyper sees it: reads pass through the [`Scanner`].
pub struct FramingGuard<IO> {
    io: IO,
    scanner: Scanner,
    remote: std::net::SocketAddr,
    /// Scanned bytes not yet handed to hyper: `inbox[start..end]`.
    inbox: Box<[u8]>,
    start: usize,
    end: usize,
    /// No more bytes for hyper: the client finished, or was refused.
    closed: bool,
    /// The guard's own 400, written before the connection shuts down.
    answer: Option<&'static [u8]>,
}

/// Whether a connection's bytes are scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Checked,
    /// HTTP/2 negotiated by ALPN: binary framing that hyper's h2 codec validates.
    Unchecked,
}

impl<IO> FramingGuard<IO> {
    pub fn new(io: IO, remote: std::net::SocketAddr, framing: Framing) -> Self {
        let scanner = match framing {
            Framing::Checked => Scanner::default(),
            Framing::Unchecked => Scanner {
                state: State::Passthrough,
                ..Scanner::default()
            },
        };
        FramingGuard {
            io,
            scanner,
            remote,
            inbox: vec![0; READ_AHEAD].into_boxed_slice(),
            start: 0,
            end: 0,
            closed: false,
            answer: None,
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
        if this.start == this.end {
            if this.closed {
                return Poll::Ready(Ok(()));
            }
            let mut read = ReadBuf::new(&mut this.inbox);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut read))?;
            let filled = read.filled().len();
            this.start = 0;
            this.end = filled;
            if filled == 0 {
                this.closed = true;
                return Poll::Ready(Ok(()));
            }
            if let Err(refusal) = this.scanner.scan(&this.inbox[..filled]) {
                tracing::warn!(client = %this.remote, "refused a request: {}", refusal.violation.as_str());
                this.end = refusal.good;
                this.closed = true;
                if refusal.answer {
                    this.answer = Some(BAD_REQUEST);
                }
            }
        }
        let count = (this.end - this.start).min(buf.remaining());
        buf.put_slice(&this.inbox[this.start..this.start + count]);
        this.start += count;
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
        let this = self.get_mut();
        while let Some(answer) = this.answer {
            let written = ready!(Pin::new(&mut this.io).poll_write(cx, answer))?;
            this.answer = match &answer[written..] {
                [] => None,
                rest => Some(rest),
            };
            if written == 0 {
                break;
            }
        }
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(stream: &[u8]) -> Result<(), Violation> {
        let mut scanner = Scanner::default();
        scanner.scan(stream).map_err(|refusal| refusal.violation)
    }

    /// The same verdict whatever the byte boundaries of the reads.
    fn verdict_bytewise(stream: &[u8]) -> Result<(), Violation> {
        let mut scanner = Scanner::default();
        for byte in stream {
            scanner
                .scan(std::slice::from_ref(byte))
                .map_err(|refusal| refusal.violation)?;
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
    fn the_guards_own_answer_declares_its_body_length() {
        let text = std::str::from_utf8(BAD_REQUEST).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
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
    fn a_bad_request_is_cut_at_its_start_when_it_began_in_the_same_read() {
        let good_request: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut stream = good_request.to_vec();
        stream.extend_from_slice(b"POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
        let mut scanner = Scanner::default();
        let refusal = scanner.scan(&stream).unwrap_err();
        assert_eq!(refusal.violation, Violation::InvalidChunkSize);
        assert_eq!(&stream[..refusal.good], good_request);
        assert!(
            refusal.answer,
            "hyper never sees the bad request, so the guard answers"
        );
    }

    #[test]
    fn a_bad_chunk_after_a_head_already_read_is_cut_right_before_it() {
        let head: &[u8] = b"POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut scanner = Scanner::default();
        assert_eq!(scanner.scan(head), Ok(()));
        let refusal = scanner.scan(b"5\r\nhello\r\nzz\r\n").unwrap_err();
        assert_eq!(refusal.violation, Violation::InvalidChunkSize);
        assert_eq!(refusal.good, b"5\r\nhello\r\n".len());
        assert!(
            !refusal.answer,
            "the pipeline answers a request whose body fails"
        );
    }
}
