//! The tracer: the proxy's non-blocking handle, and the writer thread behind it.
//!
//! Records travel through a bounded channel to one dedicated OS thread, which redacts them,
//! fills the ring buffer and writes the files. A plain thread (rather than a task calling
//! `spawn_blocking` per record) keeps every byte of file I/O and the redaction work off the
//! runtime's worker threads, writes records strictly in order, and costs one thread in total.
//! After the files, the rendered record goes to the [`Feed`]: the ring buffer and live streams.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::feed::{Feed, FeedRecord, FeedStats, Subscription};
use super::file::{Format, TraceFile};
use super::record::ExchangeRecord;
use super::redact::{RedactedRecord, Redactor};
use super::ring::Recent;
use super::{json_out, jsonl, TraceError};
use crate::config::TracePlan;

/// At most one warning per this long about failing trace writes.
const WARN_EVERY: Duration = Duration::from_secs(30);

/// How long the writer lets records gather after it has written everything queued. Waking it
/// for each record (a futex call and a context switch on the proxy's own core) cost more than
/// the record's rendering; this way it wakes once per batch, and records reach the files at
/// most this much later.
const GATHER: Duration = Duration::from_millis(2);

/// Where the writer thread puts redacted records. Files implement it; tests use it to stall the
/// writer.
pub trait Sink: Send {
    /// Names the sink in logs.
    fn name(&self) -> String;
    /// `line` is the record's JSON-lines form (UTF-8) without its newline, rendered once per
    /// record for the ring buffer and every sink that wants it; `memo` holds the record's long
    /// strings as escaped for it, for a sink that renders the record again with
    /// [`json_out::write`].
    fn write(
        &mut self,
        record: &RedactedRecord<'_>,
        line: &[u8],
        memo: &mut json_out::Memo,
    ) -> io::Result<()>;
    /// Writes what earlier calls to `write` gathered. Called whenever the writer has nothing
    /// more queued, and before a [`Tracer::flush`] is answered.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// Flushes and closes; called once at shutdown.
    fn close(&mut self) -> io::Result<()>;
}

/// Counters for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TraceStats {
    /// Records handed to [`Tracer::submit`].
    pub submitted: u64,
    /// Records the writer processed (ring buffer filled, every sink attempted).
    pub written: u64,
    /// Records lost because the channel was full or the writer had stopped.
    pub dropped: u64,
    /// Failed sink writes and closes.
    pub write_errors: u64,
    /// Times the files were reopened (SIGUSR1, or a reload that changed their paths).
    pub reopened: u64,
}

enum Msg {
    Record(Box<ExchangeRecord>),
    /// Answered once everything sent before it has been processed.
    Flush(oneshot::Sender<()>),
    Shutdown(oneshot::Sender<()>),
    /// Opens the plan's files anew and takes its redaction settings, after every record sent
    /// before it: SIGUSR1 after logrotate moved the files, or a reload that changed `[trace]`.
    Reopen(Box<TracePlan>, oneshot::Sender<Result<(), TraceError>>),
}

#[derive(Debug, Default)]
struct Counters {
    submitted: AtomicU64,
    written: AtomicU64,
    dropped: AtomicU64,
    write_errors: AtomicU64,
    reopened: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> TraceStats {
        TraceStats {
            submitted: self.submitted.load(Ordering::Relaxed),
            written: self.written.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            write_errors: self.write_errors.load(Ordering::Relaxed),
            reopened: self.reopened.load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug)]
struct Shared {
    next_id: AtomicU64,
    counters: Counters,
    /// Also the feed's first subscriber.
    recent: Arc<Recent>,
    feed: Feed,
}

/// The proxy's handle on tracing; cheap to clone.
#[derive(Debug, Clone)]
pub struct Tracer {
    tx: mpsc::Sender<Msg>,
    shared: Arc<Shared>,
}

/// Owns the writer thread; [`TraceWriter::shutdown`] drains it and closes the files.
#[derive(Debug)]
pub struct TraceWriter {
    tx: mpsc::Sender<Msg>,
    thread: JoinHandle<()>,
    shared: Arc<Shared>,
}

impl Tracer {
    /// Opens the configured files (parents created, files 0600) and starts the writer.
    pub fn start(plan: &TracePlan) -> Result<(Tracer, TraceWriter), TraceError> {
        Self::start_with_sinks(plan, open_files(plan)?)
    }

    /// Closes the trace files and opens the plan's anew, in order with the records: every
    /// record submitted before this call goes to the old files, every later one to the new.
    /// A file that cannot be opened leaves the old ones in place and says why.
    pub async fn reopen(&self, plan: &TracePlan) -> Result<(), TraceError> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Msg::Reopen(Box::new(plan.clone()), ack))
            .await
            .map_err(|_| TraceError::Stopped)?;
        done.await.map_err(|_| TraceError::Stopped)?
    }

    /// Starts the writer with these sinks instead of the plan's files.
    pub fn start_with_sinks(
        plan: &TracePlan,
        sinks: Vec<Box<dyn Sink>>,
    ) -> Result<(Tracer, TraceWriter), TraceError> {
        // tokio's bounded channel panics on 0; a 0 in the plan means "as small as possible".
        let (tx, rx) = mpsc::channel(plan.channel_capacity.max(1));
        let recent = Arc::new(Recent::new(plan.recent));
        let feed = Feed::default();
        feed.attach(recent.clone());
        let shared = Arc::new(Shared {
            next_id: AtomicU64::new(1),
            counters: Counters::default(),
            recent,
            feed,
        });
        let worker = Worker {
            rx,
            redactor: Redactor::new(plan),
            sinks,
            shared: Arc::clone(&shared),
            warn: WarnLimiter::default(),
            line: Vec::new(),
            memo: json_out::Memo::default(),
        };
        let thread = std::thread::Builder::new()
            .name("provproxy-trace".into())
            .spawn(move || worker.run())
            .map_err(TraceError::Spawn)?;
        let tracer = Tracer {
            tx: tx.clone(),
            shared: Arc::clone(&shared),
        };
        Ok((tracer, TraceWriter { tx, thread, shared }))
    }

    /// A new exchange id; ids increase monotonically from 1.
    pub fn next_id(&self) -> u64 {
        self.shared.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Hands a record to the writer. Never blocks: when the channel is full, or the writer has
    /// stopped, the record is dropped and counted.
    pub fn submit(&self, record: ExchangeRecord) {
        let counters = &self.shared.counters;
        counters.submitted.fetch_add(1, Ordering::Relaxed);
        // Boxed so that the channel's slots stay small whatever the record's size.
        if self.tx.try_send(Msg::Record(Box::new(record))).is_err() {
            counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits until every record submitted before this call has been processed.
    pub async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Msg::Flush(ack)).await.is_ok() {
            let _ = done.await;
        }
    }

    pub fn stats(&self) -> TraceStats {
        self.shared.counters.snapshot()
    }

    /// The most recent redacted records as JSON lines (UTF-8), newest first.
    pub fn recent(&self, route: Option<&str>, status: Option<u16>, limit: usize) -> Vec<Arc<[u8]>> {
        self.shared.recent.recent(route, status, limit)
    }

    /// One recent record as a JSON line (UTF-8).
    pub fn get(&self, id: u64) -> Option<Arc<[u8]>> {
        self.shared.recent.get(id)
    }

    /// A live stream of redacted records from now on, with room for `capacity` of them.
    pub fn subscribe(&self, capacity: usize) -> Subscription {
        self.shared.feed.subscribe(capacity)
    }

    pub fn feed_stats(&self) -> FeedStats {
        self.shared.feed.stats()
    }
}

impl TraceWriter {
    /// Ends the live streams, so that their connections can close before the writer stops.
    pub fn end_streams(&self) {
        self.shared.feed.end_streams();
    }

    /// Processes everything already submitted, closes the files (the HAR is complete on disk),
    /// and stops the thread. Records submitted afterwards are dropped and counted.
    pub async fn shutdown(self) -> TraceStats {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Msg::Shutdown(ack)).await.is_ok() {
            let _ = done.await;
        }
        let thread = self.thread;
        // The thread has answered and is returning; joining surfaces a panic in it.
        if let Ok(Err(_)) = tokio::task::spawn_blocking(move || thread.join()).await {
            tracing::warn!("trace writer thread panicked");
        }
        self.shared.counters.snapshot()
    }
}

struct Worker {
    rx: mpsc::Receiver<Msg>,
    redactor: Redactor,
    sinks: Vec<Box<dyn Sink>>,
    shared: Arc<Shared>,
    warn: WarnLimiter,
    /// The current record's JSON line; reused so that rendering does not allocate.
    line: Vec<u8>,
    memo: json_out::Memo,
}

impl Worker {
    fn run(mut self) {
        while let Some(first) = self.rx.blocking_recv() {
            let mut next = Some(first);
            while let Some(msg) = next {
                if let Msg::Shutdown(ack) = msg {
                    self.shutdown(ack);
                    return;
                }
                self.handle(msg);
                next = self.rx.try_recv().ok();
            }
            self.flush();
            std::thread::sleep(GATHER);
        }
        // Every handle is gone without a shutdown: still leave complete files behind.
        self.close();
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Record(record) => self.record(&record),
            Msg::Flush(ack) | Msg::Shutdown(ack) => {
                self.flush();
                let _ = ack.send(());
            }
            Msg::Reopen(plan, ack) => {
                let _ = ack.send(self.reopen(&plan));
            }
        }
    }

    fn shutdown(&mut self, ack: oneshot::Sender<()>) {
        self.rx.close();
        while let Ok(msg) = self.rx.try_recv() {
            self.handle(msg);
        }
        self.close();
        let _ = ack.send(());
    }

    fn flush(&mut self) {
        for sink in &mut self.sinks {
            if let Err(e) = sink.flush() {
                self.shared
                    .counters
                    .write_errors
                    .fetch_add(1, Ordering::Relaxed);
                self.warn.warn(&sink.name(), &e);
            }
        }
    }

    fn record(&mut self, record: &ExchangeRecord) {
        let redacted = self.redactor.redact(record);
        let status = redacted.response.as_ref().map_or(0, |r| r.status);
        self.line.clear();
        self.memo.clear();
        let rendered = json_out::write(&mut self.line, &jsonl::record(&redacted), &mut self.memo);
        let counters = &self.shared.counters;
        if let Err(e) = rendered {
            // Unreachable in practice (the record is strings and numbers rendered into memory),
            // but a record that cannot be rendered is a failed write, not a panic.
            counters.write_errors.fetch_add(1, Ordering::Relaxed);
            self.warn.warn("renderer", &io::Error::other(e));
            return;
        }
        let line = self.line.as_slice();
        for sink in &mut self.sinks {
            if let Err(e) = sink.write(&redacted, line, &mut self.memo) {
                counters.write_errors.fetch_add(1, Ordering::Relaxed);
                self.warn.warn(&sink.name(), &e);
            }
        }
        self.shared.feed.publish(FeedRecord {
            id: redacted.id,
            route: redacted.route.map(str::to_owned),
            status,
            line: Arc::from(line),
        });
        counters.written.fetch_add(1, Ordering::Relaxed);
    }

    /// Everything written so far goes out through the old files before the new ones are opened
    /// (a JSON-lines file left in place is then appended to where the old one ended); the old
    /// ones are closed after, so a HAR that was moved away is completed where it now is.
    fn reopen(&mut self, plan: &TracePlan) -> Result<(), TraceError> {
        self.flush();
        let sinks = open_files(plan)?;
        self.close();
        self.sinks = sinks;
        self.redactor = Redactor::new(plan);
        self.shared
            .counters
            .reopened
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn close(&mut self) {
        for sink in &mut self.sinks {
            if let Err(e) = sink.close() {
                self.shared
                    .counters
                    .write_errors
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(sink = %sink.name(), error = %e, "closing trace file failed");
            }
        }
    }
}

fn open_files(plan: &TracePlan) -> Result<Vec<Box<dyn Sink>>, TraceError> {
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    let files = [(&plan.har, Format::Har), (&plan.jsonl, Format::JsonLines)];
    for (path, format) in files {
        if let Some(path) = path {
            let file =
                TraceFile::open(path, format, plan.rotate_bytes, plan.keep).map_err(|source| {
                    TraceError::Open {
                        path: PathBuf::from(path),
                        source,
                    }
                })?;
            sinks.push(Box::new(file));
        }
    }
    Ok(sinks)
}

/// One warning per [`WARN_EVERY`], saying how many were held back, instead of one per record.
#[derive(Debug, Default)]
struct WarnLimiter {
    last: Option<Instant>,
    suppressed: u64,
}

impl WarnLimiter {
    fn warn(&mut self, sink: &str, error: &io::Error) {
        let now = Instant::now();
        if self.last.is_some_and(|last| now < last + WARN_EVERY) {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(
            sink,
            error = %error,
            suppressed = self.suppressed,
            "trace write failed; tracing continues and the file is reopened when possible"
        );
        self.last = Some(now);
        self.suppressed = 0;
    }
}
