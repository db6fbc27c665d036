//! The framing guard against hyper, for any bytes: the guard and hyper agree on where each
//! request ends, or the guard refuses. The bytes go, in reads of the given sizes, through the
//! proxy's own `FramingGuard` into hyper's HTTP/1 server, as on a client connection. The guard
//! reports the requests it framed (method, body length, whether it ended); hyper's service
//! reports the requests hyper parsed and how their bodies ended. Every request hyper completes
//! must be one the guard completed too, with the same method and body length. hyper may stop
//! earlier (its own parser refuses more than the guard does), but it may never complete a
//! request the guard did not, or read a body of another length.
//!
//! Shared by `tests/framing_vs_hyper.rs` (a generated corpus in `cargo test`) and the
//! `framing_vs_hyper` fuzz target.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use provproxy::server::framing::{Deadlines, FramingGuard, Observer, Protocol, Violation};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A request as the guard framed it.
#[derive(Debug, Clone, Default)]
pub struct Framed {
    pub method: Vec<u8>,
    pub body: u64,
    pub ended: bool,
}

/// A request as hyper parsed it: its method, and its body length once read whole.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub method: String,
    pub body: Option<u64>,
}

/// What one run saw.
#[derive(Debug, Default)]
pub struct Outcome {
    pub framed: Vec<Framed>,
    pub parsed: Vec<Parsed>,
    pub refused: Option<Violation>,
    pub http2: bool,
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Outcome>>);

impl Recorder {
    fn with<T>(&self, f: impl FnOnce(&mut Outcome) -> T) -> T {
        f(&mut self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()))
    }
}

impl Observer for Recorder {
    fn request_line(&mut self, line: &[u8]) {
        let method = line
            .split(|&b| b == b' ')
            .next()
            .unwrap_or_default()
            .to_vec();
        self.with(|outcome| {
            outcome.framed.push(Framed {
                method,
                ..Framed::default()
            })
        });
    }

    fn body(&mut self, length: u64) {
        self.with(|outcome| {
            if let Some(last) = outcome.framed.last_mut() {
                last.body += length;
            }
        });
    }

    fn end(&mut self) {
        self.with(|outcome| {
            if let Some(last) = outcome.framed.last_mut() {
                last.ended = true;
            }
        });
    }

    fn refused(&mut self, violation: Violation) {
        self.with(|outcome| outcome.refused = Some(violation));
    }
}

/// The client side of an in-memory connection: `bytes` in reads of the given sizes (the last
/// size repeats), then end of stream; whatever the server writes is dropped.
struct Scripted {
    bytes: Vec<u8>,
    at: usize,
    reads: Vec<usize>,
    next: usize,
}

impl AsyncRead for Scripted {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let size = this
            .reads
            .get(this.next)
            .or(this.reads.last())
            .copied()
            .unwrap_or(usize::MAX)
            .max(1);
        this.next += 1;
        let count = size.min(this.bytes.len() - this.at).min(buf.remaining());
        buf.put_slice(&this.bytes[this.at..this.at + count]);
        this.at += count;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Scripted {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime");
}

/// Runs `bytes` through the guard into hyper and checks that they agree; the error says how
/// they did not.
pub fn check(bytes: &[u8], reads: &[usize]) -> Result<Outcome, String> {
    RUNTIME.with(|runtime| runtime.block_on(run(bytes, reads)))
}

async fn run(bytes: &[u8], reads: &[usize]) -> Result<Outcome, String> {
    let recorder = Recorder::default();
    let client = Scripted {
        bytes: bytes.to_vec(),
        at: 0,
        reads: reads.to_vec(),
        next: 0,
    };
    // Deadlines far away: this is about framing, not time.
    let hour = Duration::from_secs(3600);
    let deadlines = Deadlines {
        first_byte: hour,
        head: hour,
    };
    let remote = "127.0.0.1:1".parse().map_err(|_| "address")?;
    let mut guard = FramingGuard::observed(client, remote, deadlines, recorder.clone());
    match guard.detect().await.map_err(|err| err.to_string())? {
        Protocol::Http1 => {}
        Protocol::Http2 => {
            // Binary framing after the preface: hyper's h2 codec's business, not the guard's.
            recorder.with(|outcome| outcome.http2 = true);
            return Ok(std::mem::take(
                &mut *recorder.0.lock().map_err(|_| "poisoned")?,
            ));
        }
        Protocol::Gone => {}
    }
    let parsed = Arc::new(Mutex::new(Vec::<Parsed>::new()));
    let service = {
        let parsed = parsed.clone();
        service_fn(move |request: http::Request<hyper::body::Incoming>| {
            let parsed = parsed.clone();
            async move {
                let index = {
                    let mut parsed = parsed.lock().unwrap_or_else(|p| p.into_inner());
                    parsed.push(Parsed {
                        method: request.method().as_str().to_owned(),
                        body: None,
                    });
                    parsed.len() - 1
                };
                if let Ok(body) = request.into_body().collect().await {
                    let length = body.to_bytes().len() as u64;
                    parsed.lock().unwrap_or_else(|p| p.into_inner())[index].body = Some(length);
                }
                Ok::<_, Infallible>(http::Response::new(Empty::<Bytes>::new()))
            }
        })
    };
    // half_close: the end of the scripted bytes must not cut short what hyper already has.
    let served = hyper::server::conn::http1::Builder::new()
        .half_close(true)
        .serve_connection(TokioIo::new(guard), service);
    if tokio::time::timeout(Duration::from_secs(10), served)
        .await
        .is_err()
    {
        return Err("hyper did not finish the connection".to_owned());
    }
    let mut outcome = std::mem::take(&mut *recorder.0.lock().map_err(|_| "poisoned")?);
    outcome.parsed = std::mem::take(&mut *parsed.lock().map_err(|_| "poisoned")?);
    compare(&outcome)?;
    Ok(outcome)
}

fn compare(outcome: &Outcome) -> Result<(), String> {
    for (index, parsed) in outcome.parsed.iter().enumerate() {
        let Some(framed) = outcome.framed.get(index) else {
            return Err(format!(
                "hyper parsed request {index} ({parsed:?}), the guard framed only {:?}",
                outcome.framed
            ));
        };
        if framed.method != parsed.method.as_bytes() {
            return Err(format!(
                "request {index}: hyper parsed method {:?}, the guard framed {:?}",
                parsed.method,
                String::from_utf8_lossy(&framed.method)
            ));
        }
        if let Some(length) = parsed.body {
            if !framed.ended {
                return Err(format!(
                    "request {index}: hyper read a whole body of {length} bytes, the guard's request has not ended ({framed:?})"
                ));
            }
            if framed.body != length {
                return Err(format!(
                    "request {index}: hyper read a body of {length} bytes, the guard framed {}",
                    framed.body
                ));
            }
        }
    }
    Ok(())
}

/// Read sizes from one byte, for the fuzz target: whole, byte by byte, or a mix.
pub fn reads_from_seed(seed: u8, total: usize) -> Vec<usize> {
    match seed % 4 {
        0 => vec![total.max(1)],
        1 => vec![1],
        _ => {
            let mut state = u64::from(seed) | 1;
            (0..8)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state % 24) as usize + 1
                })
                .collect()
        }
    }
}
