//! A guard in front of hyper's HTTP/1 parser. hyper accepts some ambiguous framing on its own
//! (Content-Length with Transfer-Encoding treated as chunked, `gzip, chunked`, duplicate
//! Content-Length, bare LF line ends, control bytes in chunk extensions, whitespace after a
//! chunk size) and some request-targets and `Host` lines that RFC 9112 §3.2 refuses (no `Host`,
//! two of them, a fragment, an absolute-form authority that disagrees with `Host`); a proxy
//! that forwards such a request to a target that reads it differently is a request-smuggling
//! or routing-confusion vector. The guard reads ahead, scans the raw bytes of every request on
//! the connection before hyper sees them and, at the first violation, ends the stream for hyper
//! before the offending request (or, when its head already went through, right before the bad
//! bytes, so its body fails), then answers 400 and closes. Nothing after a violation is ever
//! parsed, so nothing half-parsed is forwarded. HTTP/2 connections pass untouched once their
//! preface is seen: their framing is binary and hyper's h2 codec validates it.
//!
//! The guard also keeps the deadlines hyper has no setting for: the first byte of a connection
//! must arrive within one, and a request head (or the HTTP/2 preface) must be complete within
//! another counted from its first byte.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::body::consume;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Longest header line the guard keeps to look into (Content-Length, Transfer-Encoding, Host:
/// a 253-byte DNS name with a port fits); longer lines are still scanned for bad bytes, and
/// hyper's own size limit answers 431.
pub(crate) const MAX_KEPT_LINE: usize = 320;

/// Longest request line accepted. hyper cannot take a longer URI either (the `http` crate's
/// limit is 65,534 bytes).
pub(crate) const MAX_REQUEST_LINE: usize = 64 * 1024;

/// Longest chunk-size line (digits and extensions) accepted.
pub(crate) const MAX_CHUNK_LINE: usize = 4096;

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
    ChunkSizeWhitespace,
    InvalidChunkExtension,
    MissingChunkCrlf,
    MalformedRequestLine,
    RequestLineTooLong,
    Fragment,
    UnsupportedTarget,
    MissingHost,
    DuplicateHost,
    InvalidHost,
    AuthorityMismatch,
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
            Violation::ChunkSizeWhitespace => "whitespace after a chunk size not followed by ';'",
            Violation::InvalidChunkExtension => "invalid chunk extension",
            Violation::MissingChunkCrlf => "chunk data not followed by CRLF",
            Violation::MalformedRequestLine => "malformed request line",
            Violation::RequestLineTooLong => "request line too long",
            Violation::Fragment => "fragment in the request-target",
            Violation::UnsupportedTarget => {
                "request-target neither origin-form, http(s) absolute-form nor OPTIONS *"
            }
            Violation::MissingHost => "HTTP/1.1 request without Host",
            Violation::DuplicateHost => "more than one Host",
            Violation::InvalidHost => "invalid Host",
            Violation::AuthorityMismatch => {
                "absolute-form authority with userinfo or disagreeing with Host"
            }
        }
    }
}

/// Sees the requests as the guard frames them: what the conformance tests and the fuzz target
/// compare with hyper. The proxy's guard uses `()`, which compiles to nothing.
pub trait Observer {
    /// A complete request line.
    fn request_line(&mut self, _line: &[u8]) {}
    /// Body bytes the framing announces: a Content-Length, or one chunk's size.
    fn body(&mut self, _length: u64) {}
    /// The request (head, body and trailers) ends here.
    fn end(&mut self) {}
    /// The guard refuses the stream here.
    fn refused(&mut self, _violation: Violation) {}
}

impl Observer for () {}

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
    ChunkSize(ChunkLine),
    ChunkData(u64),
    ChunkDataCr,
    ChunkDataLf,
    /// After the last chunk: trailer lines, scanned like header lines.
    Trailers(Head),
    Rejected,
}

/// The scan of one chunk-size line: `size [BWS ";" extension] CRLF`.
#[derive(Debug, Default)]
struct ChunkLine {
    digits: usize,
    size: u64,
    /// Whitespace after the digits: legal only before a `;` (RFC 9112 §7.1.1 BWS).
    space: bool,
    in_extension: bool,
    line: usize,
    cr: bool,
}

/// The absolute-form request-target's authority, kept to compare with `Host`.
#[derive(Debug)]
pub(crate) struct Authority {
    /// Lower-case, without a default or empty port.
    pub(crate) host: Vec<u8>,
    pub(crate) default_port: &'static [u8],
}

/// The scan of one request head (or trailer section).
#[derive(Debug, Default)]
struct Head {
    line: Vec<u8>,
    line_len: usize,
    cr: bool,
    /// Lines seen so far, the request line included.
    lines: usize,
    trailer: bool,
    content_lengths: usize,
    content_length: Option<u64>,
    transfer_encodings: usize,
    /// HTTP/1.1 rather than HTTP/1.0: `Host` is required.
    http11: bool,
    absolute: Option<Authority>,
    hosts: usize,
    host_disagrees: bool,
}

enum LineEnd {
    More,
    /// The empty line: the head is complete.
    Done,
}

impl Head {
    fn trailers() -> Head {
        Head {
            trailer: true,
            ..Head::default()
        }
    }

    /// Nothing of this head seen yet: the next byte starts a request.
    fn is_fresh(&self) -> bool {
        self.lines == 0 && self.line_len == 0 && !self.cr
    }

    fn kept_limit(&self) -> usize {
        if self.lines == 0 && !self.trailer {
            MAX_REQUEST_LINE
        } else {
            MAX_KEPT_LINE
        }
    }

    /// One byte of a head.
    fn byte(
        &mut self,
        byte: u8,
        observer: &mut impl Observer,
    ) -> Result<Option<LineEnd>, Violation> {
        if self.cr {
            self.cr = false;
            if byte != b'\n' {
                return Err(Violation::BareCr);
            }
            return self.line_end(observer).map(Some);
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
        let keep = run.min(self.kept_limit().saturating_sub(self.line.len()));
        self.line.extend_from_slice(&bytes[..keep]);
        self.line_len += run;
        run
    }

    fn push(&mut self, byte: u8) {
        if self.line.len() < self.kept_limit() {
            self.line.push(byte);
        }
        self.line_len += 1;
    }

    fn line_end(&mut self, observer: &mut impl Observer) -> Result<LineEnd, Violation> {
        let request_line = self.lines == 0 && !self.trailer;
        let length = std::mem::take(&mut self.line_len);
        if length == 0 {
            // RFC 9112 §2.2: empty lines before the request line are ignored.
            return Ok(if request_line {
                LineEnd::More
            } else {
                LineEnd::Done
            });
        }
        self.lines += 1;
        // Taken out and put back so that the next line reuses its buffer.
        let mut line = std::mem::take(&mut self.line);
        let whole = line.len() == length;
        let checked = if request_line {
            if whole {
                observer.request_line(&line);
                self.request_line(&line)
            } else {
                Err(Violation::RequestLineTooLong)
            }
        } else {
            self.header_line(&line, whole)
        };
        line.clear();
        self.line = line;
        checked.map(|()| LineEnd::More)
    }

    /// RFC 9112 §3: `method SP request-target SP HTTP-version`, with the request-target in
    /// origin-form, absolute-form (http or https), or `*` for OPTIONS. Authority-form (CONNECT)
    /// is refused: a reverse proxy does not tunnel.
    fn request_line(&mut self, line: &[u8]) -> Result<(), Violation> {
        let mut parts = line.split(|&b| b == b' ');
        let (Some(method), Some(target), Some(version), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Violation::MalformedRequestLine);
        };
        if method.is_empty() || target.is_empty() {
            return Err(Violation::MalformedRequestLine);
        }
        self.http11 = match version {
            b"HTTP/1.1" => true,
            b"HTTP/1.0" => false,
            _ => return Err(Violation::MalformedRequestLine),
        };
        if target.contains(&b'#') {
            return Err(Violation::Fragment);
        }
        match target {
            [b'/', ..] => Ok(()),
            b"*" if method == b"OPTIONS" => Ok(()),
            _ => {
                self.absolute = Some(absolute_authority(target)?);
                Ok(())
            }
        }
    }

    fn header_line(&mut self, line: &[u8], whole: bool) -> Result<(), Violation> {
        if matches!(line.first(), Some(b' ' | b'\t')) {
            return Err(Violation::ObsFold);
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            // Not a header line; hyper's parser refuses it with 400 on its own.
            return Ok(());
        };
        let name = &line[..colon];
        let value = trim(&line[colon + 1..]);
        if name.eq_ignore_ascii_case(b"content-length") {
            self.content_lengths += 1;
            if !whole
                || value.is_empty()
                || value.len() > 19
                || !value.iter().all(u8::is_ascii_digit)
            {
                return Err(Violation::MalformedContentLength);
            }
            let text = std::str::from_utf8(value).map_err(|_| Violation::MalformedContentLength)?;
            self.content_length = Some(
                text.parse()
                    .map_err(|_| Violation::MalformedContentLength)?,
            );
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.transfer_encodings += 1;
            // Transfer-coding names are case-insensitive (RFC 9112 §7).
            if !whole || !value.eq_ignore_ascii_case(b"chunked") {
                return Err(Violation::UnsupportedTransferEncoding);
            }
        } else if name.eq_ignore_ascii_case(b"host") && !self.trailer {
            self.hosts += 1;
            if self.hosts > 1 {
                return Err(Violation::DuplicateHost);
            }
            if !whole || !value.iter().all(|&b| is_host_byte(b)) {
                return Err(Violation::InvalidHost);
            }
            if let Some(authority) = &self.absolute {
                let host = without_default_port(value, authority.default_port);
                self.host_disagrees = !host.eq_ignore_ascii_case(&authority.host);
            }
        }
        Ok(())
    }

    /// The framing of the body that follows a complete request head, once the head as a whole
    /// is checked (RFC 9112 §3.2: exactly one `Host` in HTTP/1.1, matching an absolute-form
    /// authority).
    fn body(&self) -> Result<State, Violation> {
        if self.http11 && self.hosts == 0 {
            return Err(Violation::MissingHost);
        }
        if self.host_disagrees {
            return Err(Violation::AuthorityMismatch);
        }
        match (self.content_lengths, self.transfer_encodings) {
            (0, 0) => Ok(State::Head(Head::default())),
            (1, 0) => Ok(match self.content_length {
                Some(0) | None => State::Head(Head::default()),
                Some(length) => State::Fixed(length),
            }),
            (0, 1) => Ok(State::ChunkSize(ChunkLine::default())),
            (0, _) => Err(Violation::DuplicateTransferEncoding),
            (_, 0) => Err(Violation::DuplicateContentLength),
            _ => Err(Violation::ContentLengthWithTransferEncoding),
        }
    }
}

/// The authority of an absolute-form request-target (`http://host[:port]/...`). Userinfo is
/// refused (RFC 9110 §4.2.4 deprecates it; proxies have been fooled by `http://a@b/`).
pub(crate) fn absolute_authority(target: &[u8]) -> Result<Authority, Violation> {
    let separator = target
        .windows(3)
        .position(|window| window == b"://")
        .ok_or(Violation::UnsupportedTarget)?;
    let scheme = &target[..separator];
    let default_port: &'static [u8] = if scheme.eq_ignore_ascii_case(b"http") {
        b"80"
    } else if scheme.eq_ignore_ascii_case(b"https") {
        b"443"
    } else {
        return Err(Violation::UnsupportedTarget);
    };
    let rest = &target[separator + 3..];
    let end = rest
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority.contains(&b'@') {
        return Err(Violation::AuthorityMismatch);
    }
    if authority.is_empty() || !authority.iter().all(|&b| is_host_byte(b)) {
        return Err(Violation::UnsupportedTarget);
    }
    Ok(Authority {
        host: without_default_port(authority, default_port).to_ascii_lowercase(),
        default_port,
    })
}

/// `uri-host [":" port]` bytes: reg-name (unreserved, pct-encoded, sub-delims), IP literals in
/// brackets, and the port.
pub(crate) fn is_host_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
        || matches!(
            byte,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'%'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'['
                | b']'
        )
}

/// `host:80` and `host:` name the same origin as `host` for http (443 for https).
pub(crate) fn without_default_port<'a>(authority: &'a [u8], default_port: &[u8]) -> &'a [u8] {
    if let Some(host) = authority.strip_suffix(b":") {
        return host;
    }
    match authority.strip_suffix(default_port) {
        Some(host) if host.ends_with(b":") => &host[..host.len() - 1],
        _ => authority,
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

/// One more hex digit of a chunk size (`digits` so far): at most 16, so that the size fits.
pub(crate) fn chunk_size_digit(
    size: &mut u64,
    digits: &mut usize,
    byte: u8,
) -> Result<(), Violation> {
    let digit = (byte as char)
        .to_digit(16)
        .ok_or(Violation::InvalidChunkSize)?;
    *digits += 1;
    if *digits > 16 {
        return Err(Violation::InvalidChunkSize);
    }
    *size = (*size << 4) | u64::from(digit);
    Ok(())
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
pub struct Scanner<O = ()> {
    state: State,
    /// Bytes of the stream scanned so far.
    position: u64,
    /// Where the request being scanned began in the stream.
    request_start: u64,
    observer: O,
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner::observed(())
    }
}

impl<O: Observer> Scanner<O> {
    pub fn observed(observer: O) -> Self {
        Scanner {
            state: State::Start { matched: 0 },
            position: 0,
            request_start: 0,
            observer,
        }
    }

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
                    self.observer.refused(violation);
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

    /// The stream turned out to be HTTP/2.
    pub fn is_http2(&self) -> bool {
        matches!(self.state, State::Passthrough)
    }

    /// Whether the bytes so far leave HTTP/1 vs HTTP/2 undecided (none yet, or a prefix of the
    /// preface).
    pub fn is_undecided(&self) -> bool {
        matches!(self.state, State::Start { .. })
    }

    /// Part of a request head (or of the HTTP/2 preface) is in, the rest still to come.
    fn mid_head(&self) -> bool {
        match &self.state {
            State::Start { matched } => *matched > 0,
            State::Head(head) => !head.is_fresh(),
            _ => false,
        }
    }

    /// Consumes at least one byte of `bytes` (bodies in bulk) and returns how many.
    fn step(&mut self, bytes: &[u8]) -> Result<usize, Violation> {
        let byte = bytes[0];
        let observer = &mut self.observer;
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
                    head_byte(&mut self.state, observer, earlier)?;
                }
                head_byte(&mut self.state, observer, byte)?;
                Ok(1)
            }
            State::Passthrough | State::Rejected => Ok(bytes.len()),
            State::Head(head) => {
                let run = head.plain_run(bytes);
                if run > 0 {
                    return Ok(run);
                }
                head_byte(&mut self.state, observer, byte)?;
                Ok(1)
            }
            State::Fixed(remaining) => {
                let used = consume(remaining, bytes.len());
                if *remaining == 0 {
                    observer.end();
                    self.state = State::Head(Head::default());
                }
                Ok(used)
            }
            State::ChunkSize(chunk) => {
                chunk.line += 1;
                if chunk.line > MAX_CHUNK_LINE {
                    return Err(Violation::InvalidChunkExtension);
                }
                if chunk.cr {
                    if byte != b'\n' {
                        return Err(Violation::BareCr);
                    }
                    self.state = if chunk.size == 0 {
                        State::Trailers(Head::trailers())
                    } else {
                        observer.body(chunk.size);
                        State::ChunkData(chunk.size)
                    };
                    return Ok(1);
                }
                if chunk.in_extension {
                    // hyper skips extensions up to the CRLF; the guard ends them at the same
                    // place and lets no control byte through.
                    match byte {
                        b'\r' => chunk.cr = true,
                        b'\n' => return Err(Violation::BareLf),
                        b'\t' => {}
                        0..=0x1f | 0x7f => return Err(Violation::InvalidChunkExtension),
                        _ => {}
                    }
                    return Ok(1);
                }
                match byte {
                    b'\r' if chunk.digits > 0 && !chunk.space => chunk.cr = true,
                    b'\n' => return Err(Violation::BareLf),
                    b';' if chunk.digits > 0 => chunk.in_extension = true,
                    b' ' | b'\t' if chunk.digits > 0 => chunk.space = true,
                    // `4 \r\n`: hyper takes it, RFC 9112 §7.1 does not.
                    _ if chunk.space => return Err(Violation::ChunkSizeWhitespace),
                    _ => chunk_size_digit(&mut chunk.size, &mut chunk.digits, byte)?,
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
                self.state = State::ChunkSize(ChunkLine::default());
                Ok(1)
            }
            State::Trailers(trailers) => {
                if let Some(LineEnd::Done) = trailers.byte(byte, observer)? {
                    observer.end();
                    self.state = State::Head(Head::default());
                }
                Ok(1)
            }
        }
    }
}

/// One byte of a request head; at its end, the state moves on to the body.
fn head_byte(state: &mut State, observer: &mut impl Observer, byte: u8) -> Result<(), Violation> {
    let State::Head(head) = state else {
        return Ok(());
    };
    if let Some(LineEnd::Done) = head.byte(byte, observer)? {
        let mut next = head.body()?;
        match &mut next {
            State::Fixed(length) => observer.body(*length),
            State::Head(following) => {
                observer.end();
                // The next request's lines reuse this one's (empty) buffer: one allocation less
                // per request on a keep-alive connection.
                following.line = std::mem::take(&mut head.line);
            }
            _ => {}
        }
        *state = next;
    }
    Ok(())
}

/// How much the guard reads from the socket at once; everything read is scanned before hyper
/// gets any of it, so a bad request that arrives whole never reaches hyper's parser.
const READ_AHEAD: usize = 16 * 1024;

/// What a refused client gets when hyper never saw its request.
pub(crate) const BAD_REQUEST: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n\
content-length: 81\r\nconnection: close\r\n\r\n\
{\"error\":\"bad_framing\",\"route\":null,\"side\":\"client\",\"detail\":\"malformed request\"}";

/// The guard's deadlines.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// From the connection (after the TLS handshake) to its first byte.
    pub first_byte: Duration,
    /// From the first byte of a request head, or of the HTTP/2 preface, to its end.
    pub head: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    FirstByte,
    Head,
}

/// What a connection speaks, as its first bytes tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
    /// Closed, or timed out, before sending anything worth an answer.
    Gone,
}

/// The connection as hyper sees it: reads pass through the [`Scanner`].
pub struct FramingGuard<IO, O = ()> {
    io: IO,
    scanner: Scanner<O>,
    remote: SocketAddr,
    /// Scanned bytes not yet handed to hyper: `inbox[start..end]`.
    inbox: Box<[u8]>,
    start: usize,
    end: usize,
    /// No more bytes for hyper: the client finished, was refused, or ran out of time.
    closed: bool,
    timed_out: bool,
    /// The guard's own 400, written before the connection shuts down.
    answer: Option<&'static [u8]>,
    deadlines: Deadlines,
    /// Fires at the deadline being waited for, if any; reset rather than re-created.
    timer: Pin<Box<Sleep>>,
    waiting: Option<Waiting>,
    /// Off: HTTP/1 bytes are not scanned but handed back by [`FramingGuard::into_parts`] to a
    /// server whose own parser is as strict; only the HTTP/2 preface is looked for.
    scan_http1: bool,
    /// HTTP/1 was seen, unscanned.
    unscanned_http1: bool,
}

impl<IO> FramingGuard<IO> {
    /// Must be called inside a tokio runtime: the first-byte deadline starts now.
    pub fn new(io: IO, remote: SocketAddr, deadlines: Deadlines) -> Self {
        FramingGuard::observed(io, remote, deadlines, ())
    }

    /// A guard that only tells HTTP/1 from HTTP/2 within the deadlines and scans HTTP/2's
    /// preface alone: after [`FramingGuard::detect`] says HTTP/1, [`FramingGuard::into_parts`]
    /// gives the stream and its first bytes to a server that parses them strictly itself.
    pub fn unscanned(io: IO, remote: SocketAddr, deadlines: Deadlines) -> Self {
        let mut guard = FramingGuard::new(io, remote, deadlines);
        guard.scan_http1 = false;
        guard
    }

    /// The stream and the bytes read from it but not handed on.
    pub fn into_parts(self) -> (IO, bytes::BytesMut) {
        let read = bytes::BytesMut::from(&self.inbox[self.start..self.end]);
        (self.io, read)
    }
}

impl<IO, O: Observer> FramingGuard<IO, O> {
    pub fn observed(io: IO, remote: SocketAddr, deadlines: Deadlines, observer: O) -> Self {
        FramingGuard {
            io,
            scanner: Scanner::observed(observer),
            remote,
            inbox: vec![0; READ_AHEAD].into_boxed_slice(),
            start: 0,
            end: 0,
            closed: false,
            timed_out: false,
            answer: None,
            timer: Box::pin(tokio::time::sleep(deadlines.first_byte)),
            deadlines,
            waiting: Some(Waiting::FirstByte),
            scan_http1: true,
            unscanned_http1: false,
        }
    }

    /// Reads until the first bytes tell HTTP/1 from HTTP/2, within the guard's deadlines.
    pub async fn detect(&mut self) -> io::Result<Protocol>
    where
        IO: AsyncRead + Unpin,
    {
        std::future::poll_fn(|cx| loop {
            if self.unscanned_http1 {
                return Poll::Ready(Ok(Protocol::Http1));
            }
            if self.scanner.is_http2() {
                return Poll::Ready(Ok(Protocol::Http2));
            }
            if !self.scanner.is_undecided() {
                return Poll::Ready(Ok(Protocol::Http1));
            }
            if self.closed {
                // A partial preface that ran out of time or ended is not worth an answer.
                let gone = self.timed_out || self.start == self.end;
                return Poll::Ready(Ok(if gone {
                    Protocol::Gone
                } else {
                    Protocol::Http1
                }));
            }
            ready!(self.poll_fill(cx))?;
        })
        .await
    }

    /// Reads once more into the inbox (after what is already there) and scans what came.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>
    where
        IO: AsyncRead + Unpin,
    {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.inbox.len() {
            self.inbox.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let mut read = ReadBuf::new(&mut self.inbox[self.end..]);
        if Pin::new(&mut self.io)
            .poll_read(cx, &mut read)?
            .is_pending()
        {
            if self.waiting.is_some() && self.timer.as_mut().poll(cx).is_ready() {
                tracing::debug!(
                    client = %self.remote,
                    "closed a connection: {}",
                    match self.waiting {
                        Some(Waiting::FirstByte) => "no request within the first-byte timeout",
                        _ => "request head not complete within the header read timeout",
                    }
                );
                self.waiting = None;
                self.closed = true;
                self.timed_out = true;
                return Poll::Ready(Ok(()));
            }
            return Poll::Pending;
        }
        let filled = read.filled().len();
        if filled == 0 {
            self.closed = true;
            return Poll::Ready(Ok(()));
        }
        if !self.scan_http1 && self.scanner.is_undecided() {
            let seen = &self.inbox[self.start..self.end + filled];
            let compared = seen.len().min(H2_PREFACE.len());
            if seen[..compared] != H2_PREFACE[..compared] {
                self.end += filled;
                self.unscanned_http1 = true;
                self.waiting = None;
                return Poll::Ready(Ok(()));
            }
        }
        let fresh = self.end..self.end + filled;
        if let Err(refusal) = self.scanner.scan(&self.inbox[fresh]) {
            tracing::warn!(client = %self.remote, "refused a request: {}", refusal.violation.as_str());
            self.end += refusal.good;
            self.closed = true;
            self.waiting = None;
            if refusal.answer {
                self.answer = Some(BAD_REQUEST);
            }
            return Poll::Ready(Ok(()));
        }
        self.end += filled;
        // A head that has begun has its own deadline; between requests, hyper's keep-alive
        // timer applies, and bodies have theirs in the pipeline.
        match (self.scanner.mid_head(), self.waiting) {
            (true, Some(Waiting::Head)) => {}
            (true, _) => {
                let deadline = Instant::now() + self.deadlines.head;
                self.timer.as_mut().reset(deadline);
                self.waiting = Some(Waiting::Head);
            }
            (false, _) => self.waiting = None,
        }
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncRead + Unpin, O: Observer + Unpin> AsyncRead for FramingGuard<IO, O> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.start == this.end && !this.closed {
            ready!(this.poll_fill(cx))?;
        }
        let count = (this.end - this.start).min(buf.remaining());
        buf.put_slice(&this.inbox[this.start..this.start + count]);
        this.start += count;
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncWrite + Unpin, O: Unpin> AsyncWrite for FramingGuard<IO, O> {
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

    fn assert_verdict(stream: &[u8], expected: Result<(), Violation>) {
        let shown = String::from_utf8_lossy(stream);
        assert_eq!(verdict(stream), expected, "{shown:?}");
        assert_eq!(verdict_bytewise(stream), expected, "bytewise {shown:?}");
    }

    #[test]
    fn well_framed_pipelined_requests_pass() {
        let stream = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\
            POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
            POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;name=\"v\"\r\nhello\r\n0\r\nX-T: 1\r\n\r\n\
            GET /c HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_verdict(stream, Ok(()));
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
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", Violation::ContentLengthWithTransferEncoding),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", Violation::DuplicateContentLength),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n", Violation::MalformedContentLength),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\n", Violation::MalformedContentLength),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n", Violation::MalformedContentLength),
            (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", Violation::UnsupportedTransferEncoding),
            (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", Violation::DuplicateTransferEncoding),
            (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", Violation::ObsFold),
            (b"GET / HTTP/1.1\nHost: x\n\n", Violation::BareLf),
            (b"GET / HTTP/1.1\r\nHost: x\rX: y\r\n\r\n", Violation::BareCr),
            (b"GET / HTTP/1.1\r\nX-A: a\x00b\r\n\r\n", Violation::ControlByte),
            (b"GET / HTTP/1.1\r\nX-A: a\x7fb\r\n\r\n", Violation::ControlByte),
            (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", Violation::InvalidChunkSize),
            (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\n", Violation::InvalidChunkSize),
            (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n 5\r\n", Violation::InvalidChunkSize),
            (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n11111111111111111\r\n", Violation::InvalidChunkSize),
            (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;a=\x01\r\n", Violation::InvalidChunkExtension),
            (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello", Violation::BareLf),
            (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX", Violation::MissingChunkCrlf),
            (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: a\nb\r\n\r\n", Violation::BareLf),
        ];
        for (stream, expected) in cases {
            assert_verdict(stream, Err(*expected));
        }
    }

    #[test]
    fn whitespace_after_a_chunk_size_is_refused_unless_an_extension_follows() {
        let chunked = |chunk: &[u8]| {
            let mut stream =
                b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            stream.extend_from_slice(chunk);
            stream
        };
        for refused in [
            &b"4 \r\nabcd\r\n0\r\n\r\n"[..],
            b"4\t\r\nabcd\r\n",
            b"4 x\r\n",
            b"4 5\r\n",
        ] {
            assert_verdict(&chunked(refused), Err(Violation::ChunkSizeWhitespace));
        }
        for legal in [
            &b"4;name=value\r\nabcd\r\n0\r\n\r\n"[..],
            b"4 ; name=\"quoted\"\r\nabcd\r\n0\r\n\r\n",
            b"4\t;a\r\nabcd\r\n0;last\r\n\r\n",
            b"4;\r\nabcd\r\n0\r\n\r\n",
        ] {
            assert_verdict(&chunked(legal), Ok(()));
        }
    }

    #[test]
    fn transfer_coding_names_are_case_insensitive() {
        assert_verdict(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n",
            Ok(()),
        );
        assert_verdict(
            b"POST / HTTP/1.1\r\nHost: x\r\ntransfer-encoding:  CHUNKED \r\n\r\n0\r\n\r\n",
            Ok(()),
        );
    }

    #[test]
    fn host_is_required_once_in_http_1_1_and_optional_in_http_1_0() {
        assert_verdict(
            b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n",
            Err(Violation::MissingHost),
        );
        assert_verdict(
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
            Err(Violation::DuplicateHost),
        );
        assert_verdict(
            b"GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n",
            Err(Violation::DuplicateHost),
        );
        assert_verdict(
            b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
            Err(Violation::InvalidHost),
        );
        assert_verdict(
            b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
            Err(Violation::InvalidHost),
        );
        assert_verdict(
            b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n",
            Err(Violation::InvalidHost),
        );
        assert_verdict(b"GET / HTTP/1.0\r\n\r\n", Ok(()));
        assert_verdict(b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", Ok(()));
        // A Host line in the trailers is not a second Host.
        assert_verdict(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nHost: b\r\n\r\n",
            Ok(()),
        );
    }

    #[test]
    fn the_request_target_has_no_fragment_and_one_of_the_forms_a_reverse_proxy_serves() {
        assert_verdict(
            b"GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n",
            Err(Violation::Fragment),
        );
        assert_verdict(
            b"GET /a?q#b HTTP/1.1\r\nHost: a\r\n\r\n",
            Err(Violation::Fragment),
        );
        assert_verdict(
            b"GET * HTTP/1.1\r\nHost: a\r\n\r\n",
            Err(Violation::UnsupportedTarget),
        );
        assert_verdict(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", Ok(()));
        assert_verdict(
            b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
            Err(Violation::UnsupportedTarget),
        );
        assert_verdict(
            b"GET a HTTP/1.1\r\nHost: a\r\n\r\n",
            Err(Violation::UnsupportedTarget),
        );
        assert_verdict(
            b"GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
            Err(Violation::UnsupportedTarget),
        );
        assert_verdict(
            b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
            Err(Violation::MalformedRequestLine),
        );
        assert_verdict(
            b"GET / HTTP/1.2\r\nHost: a\r\n\r\n",
            Err(Violation::MalformedRequestLine),
        );
        assert_verdict(
            b"GET /\r\nHost: a\r\n\r\n",
            Err(Violation::MalformedRequestLine),
        );
    }

    #[test]
    fn an_absolute_form_authority_must_agree_with_host() {
        let cases: &[(&[u8], Result<(), Violation>)] = &[
            (
                b"GET http://a.example/x HTTP/1.1\r\nHost: a.example\r\n\r\n",
                Ok(()),
            ),
            (
                b"GET HTTP://A.example:80/x HTTP/1.1\r\nHost: a.EXAMPLE\r\n\r\n",
                Ok(()),
            ),
            (
                b"GET https://a.example/x HTTP/1.1\r\nHost: a.example:443\r\n\r\n",
                Ok(()),
            ),
            (
                b"GET http://a.example:8080?q HTTP/1.1\r\nHost: a.example:8080\r\n\r\n",
                Ok(()),
            ),
            (b"GET http://a.example/x HTTP/1.0\r\n\r\n", Ok(())),
            (
                b"GET http://b.example/x HTTP/1.1\r\nHost: a.example\r\n\r\n",
                Err(Violation::AuthorityMismatch),
            ),
            (
                b"GET https://a.example/x HTTP/1.1\r\nHost: a.example:80\r\n\r\n",
                Err(Violation::AuthorityMismatch),
            ),
            (
                b"GET http://a.example:8080/x HTTP/1.1\r\nHost: a.example\r\n\r\n",
                Err(Violation::AuthorityMismatch),
            ),
            (
                b"GET http://u@a.example/x HTTP/1.1\r\nHost: a.example\r\n\r\n",
                Err(Violation::AuthorityMismatch),
            ),
            (
                b"GET http://a.example/x HTTP/1.1\r\n\r\n",
                Err(Violation::MissingHost),
            ),
            (
                b"GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n",
                Err(Violation::UnsupportedTarget),
            ),
        ];
        for (stream, expected) in cases {
            assert_verdict(stream, *expected);
        }
    }

    #[test]
    fn a_request_line_longer_than_the_limit_is_refused_however_it_arrives() {
        let mut stream = b"GET /".to_vec();
        stream.extend(std::iter::repeat_n(b'a', MAX_REQUEST_LINE));
        stream.extend_from_slice(b" HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_verdict(&stream, Err(Violation::RequestLineTooLong));
    }

    #[test]
    fn a_bad_request_is_cut_at_its_start_when_it_began_in_the_same_read() {
        let good_request: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut stream = good_request.to_vec();
        stream.extend_from_slice(
            b"POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        );
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
    fn a_request_refused_for_its_whole_head_never_reaches_hyper() {
        let good_request: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut stream = good_request.to_vec();
        stream.extend_from_slice(b"GET /b HTTP/1.1\r\nAccept: */*\r\n\r\n");
        let refusal = Scanner::default().scan(&stream).unwrap_err();
        assert_eq!(refusal.violation, Violation::MissingHost);
        assert_eq!(&stream[..refusal.good], good_request);
        assert!(refusal.answer);
    }

    #[test]
    fn a_bad_chunk_after_a_head_already_read_is_cut_right_before_it() {
        let head: &[u8] = b"POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
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

    /// What an [`Observer`] saw: one entry per request, its request line and body length.
    #[derive(Default)]
    struct Seen(Vec<(String, u64, bool)>);

    impl Observer for Seen {
        fn request_line(&mut self, line: &[u8]) {
            self.0
                .push((String::from_utf8_lossy(line).into_owned(), 0, false));
        }
        fn body(&mut self, length: u64) {
            if let Some(last) = self.0.last_mut() {
                last.1 += length;
            }
        }
        fn end(&mut self) {
            if let Some(last) = self.0.last_mut() {
                last.2 = true;
            }
        }
    }

    #[test]
    fn the_observer_sees_each_request_end_with_its_body_length() {
        let stream = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\
            POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
            POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;x\r\nhello\r\n2\r\nhi\r\n0\r\nX-T: 1\r\n\r\n\
            POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\npart";
        let mut scanner = Scanner::observed(Seen::default());
        assert_eq!(scanner.scan(stream), Ok(()));
        let seen = &scanner.observer.0;
        let expected = [
            ("GET / HTTP/1.1", 0, true),
            ("POST /a HTTP/1.1", 5, true),
            ("POST /b HTTP/1.1", 7, true),
            ("POST /c HTTP/1.1", 9, false),
        ];
        assert_eq!(seen.len(), expected.len());
        for ((line, length, ended), (want_line, want_length, want_ended)) in
            seen.iter().zip(expected)
        {
            assert_eq!(
                (line.as_str(), *length, *ended),
                (want_line, want_length, want_ended)
            );
        }
    }
}
