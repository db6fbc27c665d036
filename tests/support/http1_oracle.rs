//! The proxy's own HTTP/1 request framing (`server::http1::parse` and `chunked`) against the
//! framing guard in front of hyper (`framing_oracle.rs`), for any bytes: the requests the new
//! parser completes are exactly the ones guard + hyper completed, with the same method and body
//! length, in the same order. One parse replaces two only if nothing that got through both
//! before is refused now, and nothing is framed differently.
//!
//! The new parser is stricter than guard + hyper nowhere: no exception is needed. What each
//! side refuses may carry a different `Violation` (hyper's refusals have none; the new parser
//! names them `MalformedRequestLine`), and the new parser may refuse a head only once it is
//! whole where the guard refused at its first bad byte: neither changes which requests
//! complete, and only that is compared.
//!
//! Shared by `tests/http1_vs_guard.rs` (a generated corpus in `cargo test`) and the
//! `http1_vs_guard` fuzz target; needs `framing_oracle` as a sibling module at the crate root.

use bytes::BytesMut;
use provproxy::server::framing::Violation;
use provproxy::server::http1::chunked::{Chunked, Decoded};
use provproxy::server::http1::parse::{parse, Framing, HeadError, Limits};

/// hyper's server defaults, which the guard + hyper oracle runs with: a read buffer of
/// 8 KiB + 100 × 4 KiB, 100 headers.
pub const LIMITS: Limits = Limits {
    max_head_bytes: 8192 + 4096 * 100,
    max_headers: 100,
};

/// A request the new parser read whole: its method and body length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub body: u64,
}

/// Why the new parser stopped reading the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The bytes ended (between requests or inside one).
    End,
    /// The last request did not keep the connection alive.
    Close,
    Head(HeadError),
    Body(Violation),
}

#[derive(Debug)]
pub struct Framed {
    pub requests: Vec<Request>,
    pub stop: Stop,
}

/// The stream, delivered in reads of the given sizes (the last size repeats), as the new
/// parser frames it: each head parsed when a read completes it, each body decoded as it comes.
pub fn frame(bytes: &[u8], reads: &[usize]) -> Framed {
    let mut input = Reads {
        bytes,
        at: 0,
        sizes: reads,
        next: 0,
    };
    let mut buf = BytesMut::new();
    let mut requests = Vec::new();
    let stop = loop {
        let (head, len) = match parse(&buf, &LIMITS) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => {
                if !input.read_into(&mut buf) {
                    break Stop::End;
                }
                continue;
            }
            Err(err) => break Stop::Head(err),
        };
        let _ = buf.split_to(len);
        let body = match head.framing {
            Framing::Empty => Ok(0),
            Framing::Length(length) => fixed(length, &mut buf, &mut input),
            Framing::Chunked => chunked(&mut buf, &mut input),
        };
        match body {
            Ok(body) => requests.push(Request {
                method: head.method.as_str().to_owned(),
                body,
            }),
            Err(stop) => break stop,
        }
        if !head.keep_alive {
            break Stop::Close;
        }
    };
    Framed { requests, stop }
}

struct Reads<'a> {
    bytes: &'a [u8],
    at: usize,
    sizes: &'a [usize],
    next: usize,
}

impl Reads<'_> {
    /// One more read into `buf`; false at the end of the bytes.
    fn read_into(&mut self, buf: &mut BytesMut) -> bool {
        if self.at == self.bytes.len() {
            return false;
        }
        let size = self
            .sizes
            .get(self.next)
            .or(self.sizes.last())
            .copied()
            .unwrap_or(usize::MAX)
            .max(1);
        self.next += 1;
        let count = size.min(self.bytes.len() - self.at);
        buf.extend_from_slice(&self.bytes[self.at..self.at + count]);
        self.at += count;
        true
    }
}

fn fixed(length: u64, buf: &mut BytesMut, input: &mut Reads<'_>) -> Result<u64, Stop> {
    let mut remaining = length;
    while remaining > 0 {
        if buf.is_empty() && !input.read_into(buf) {
            return Err(Stop::End);
        }
        let n = buf
            .len()
            .min(usize::try_from(remaining).unwrap_or(usize::MAX));
        let _ = buf.split_to(n);
        remaining -= n as u64;
    }
    Ok(length)
}

fn chunked(buf: &mut BytesMut, input: &mut Reads<'_>) -> Result<u64, Stop> {
    let mut decoder = Chunked::default();
    let mut length = 0;
    loop {
        match decoder.decode(buf) {
            Ok(Decoded::Data(data)) => length += data.len() as u64,
            Ok(Decoded::Trailers(_)) => {}
            Ok(Decoded::NeedMore) => {
                if !input.read_into(buf) {
                    return Err(Stop::End);
                }
            }
            Ok(Decoded::End) => return Ok(length),
            Err(violation) => return Err(Stop::Body(violation)),
        }
    }
}

/// Runs `bytes` through both and checks that they agree (and that guard and hyper agree, as
/// `framing_oracle::check` does); the error says how they did not.
pub fn check(
    bytes: &[u8],
    reads: &[usize],
) -> Result<(Framed, crate::framing_oracle::Outcome), String> {
    let outcome = crate::framing_oracle::check(bytes, reads)?;
    let framed = frame(bytes, reads);
    if outcome.http2 {
        // The connection's HTTP/2 detection takes these bytes before any parse of a head.
        return Ok((framed, outcome));
    }
    let completed: Vec<Request> = outcome
        .parsed
        .iter()
        .map_while(|parsed| {
            parsed.body.map(|body| Request {
                method: parsed.method.clone(),
                body,
            })
        })
        .collect();
    if framed.requests != completed {
        return Err(format!(
            "the new parser completed {:?} and stopped at {:?}; guard + hyper completed {completed:?} (guard: {:?}, refused {:?})",
            framed.requests, framed.stop, outcome.framed, outcome.refused
        ));
    }
    Ok((framed, outcome))
}
