//! The tracer: the proxy's non-blocking handle, and the feed thread behind it.
//!
//! Records travel through a bounded channel to one dedicated OS thread, which redacts each
//! record once, renders it once per format (its JSON line always, its HAR entry when a HAR is
//! written) and hands the result to the [`Feed`]: the ring buffer, the trace files (their own
//! thread and queue, see [`super::files`]) and each live console stream. A plain thread
//! (rather than a task calling `spawn_blocking` per record) keeps the redaction work off the
//! runtime's worker threads and keeps records strictly in order.

use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::feed::{Feed, FeedRecord, FeedStats, Subscription};
use super::files::{self, Files, Sink, WarnLimiter};
use super::record::ExchangeRecord;
use super::redact::{Lists, Redactor};
use super::ring::Recent;
use super::{har, json_out, jsonl, TraceError};
use crate::config::TracePlan;

/// How long the feed thread lets records gather after it has handed on everything queued.
/// Waking it for each record (a futex call and a context switch on the proxy's own core) cost
/// more than the record's rendering; this way it wakes once per batch, and so does the file
/// thread behind it, and records reach the files at most this much later. 10 ms rather than
/// 2: under the load benchmark, a traced request cost 0.5-1.5 µs less CPU (fewer wake-ups of
/// both threads on the proxy's core), and a record still reaches the files and the console
/// well inside what a person can notice.
const GATHER: Duration = Duration::from_millis(10);

/// Route names the feed thread keeps shared (see [`Worker::route`]).
const MAX_ROUTE_NAMES: usize = 256;

/// Counters for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TraceStats {
    /// Records handed to [`Tracer::submit`].
    pub submitted: u64,
    /// Records the feed thread redacted and handed to every subscriber.
    pub written: u64,
    /// Records lost because the channel was full or the writer had stopped, or because the
    /// trace files' queue was full (the ring buffer and live streams still got those).
    pub dropped: u64,
    /// Failed sink writes and closes.
    pub write_errors: u64,
    /// Times the files were reopened (SIGUSR1, or a reload that changed their paths).
    pub reopened: u64,
}

enum Msg {
    Record(Box<ExchangeRecord>),
    /// Answered once everything sent before it has been processed and written to the files.
    Flush(oneshot::Sender<()>),
    Shutdown(oneshot::Sender<()>),
    /// Opens the plan's files anew and takes its redaction settings, after every record sent
    /// before it: SIGUSR1 after logrotate moved the files, or a reload that changed `[trace]`.
    Reopen(Box<TracePlan>, oneshot::Sender<Result<(), TraceError>>),
}

#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) submitted: AtomicU64,
    pub(super) written: AtomicU64,
    pub(super) dropped: AtomicU64,
    pub(super) write_errors: AtomicU64,
    pub(super) reopened: AtomicU64,
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
    /// The captured body bytes of the records in the channel, held to `queue_bytes`.
    queued_bytes: AtomicUsize,
    queue_bytes: usize,
    counters: Arc<Counters>,
    /// The feed's first subscriber.
    recent: Arc<Recent>,
    feed: Feed,
}

impl Shared {
    /// Counts `weight` more bytes in the channel and says whether they fit. A record larger
    /// than the whole bound still goes through an empty channel. A record that does not fit
    /// is taken back out by the caller.
    fn admit(&self, weight: usize) -> bool {
        let queued = self.queued_bytes.fetch_add(weight, Ordering::Relaxed);
        queued == 0 || queued + weight <= self.queue_bytes
    }

    /// The feed thread has taken `record` out of the channel.
    fn taken(&self, record: &ExchangeRecord) {
        self.queued_bytes
            .fetch_sub(record.body_bytes(), Ordering::Relaxed);
    }
}

/// The proxy's handle on tracing; cheap to clone.
#[derive(Debug, Clone)]
pub struct Tracer {
    tx: mpsc::Sender<Msg>,
    shared: Arc<Shared>,
}

/// Owns the feed thread; [`TraceWriter::shutdown`] drains it and closes the files.
#[derive(Debug)]
pub struct TraceWriter {
    tx: mpsc::Sender<Msg>,
    thread: JoinHandle<()>,
    shared: Arc<Shared>,
}

impl Tracer {
    /// Opens the configured files (parents created, files 0600) and starts the writer.
    pub fn start(plan: &TracePlan) -> Result<(Tracer, TraceWriter), TraceError> {
        Self::start_with_sinks(plan, files::open(plan)?)
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
        let counters = Arc::new(Counters::default());
        let recent = Arc::new(Recent::new(plan.recent));
        let (files, file_thread) = Files::start(
            sinks,
            plan.channel_capacity,
            plan.queue_bytes,
            Arc::clone(&counters),
        )?;
        // Offered in this order: the ring, the files, then each live stream.
        let feed = Feed::default();
        feed.attach(recent.clone());
        feed.attach(files.clone());
        let shared = Arc::new(Shared {
            next_id: AtomicU64::new(1),
            queued_bytes: AtomicUsize::new(0),
            queue_bytes: plan.queue_bytes,
            counters,
            recent,
            feed,
        });
        let worker = Worker {
            rx,
            redactor: Redactor::new(plan),
            files: Arc::clone(&files),
            file_thread: Some(file_thread),
            har: plan.har.is_some(),
            shared: Arc::clone(&shared),
            warn: WarnLimiter::default(),
            line: Vec::new(),
            entry: Vec::new(),
            memo: json_out::Memo::default(),
            marks: jsonl::Marks::default(),
            lists: Lists::default(),
            routes: Vec::new(),
        };
        let thread = std::thread::Builder::new()
            .name("provproxy-trace".into())
            .spawn(move || worker.run());
        let thread = match thread {
            Ok(thread) => thread,
            Err(e) => {
                files.shutdown();
                return Err(TraceError::Spawn(e));
            }
        };
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

    /// Hands a record to the writer. Never blocks: when the channel is full (in records, or in
    /// captured body bytes past `queue_bytes`), or the writer has stopped, the record is dropped
    /// and counted. A record boxed already is sent as it is.
    pub fn submit(&self, record: impl Into<Box<ExchangeRecord>>) {
        let shared = &*self.shared;
        let counters = &shared.counters;
        counters.submitted.fetch_add(1, Ordering::Relaxed);
        let record = record.into();
        let weight = record.body_bytes();
        // Boxed so that the channel's slots stay small whatever the record's size.
        if !shared.admit(weight) || self.tx.try_send(Msg::Record(record)).is_err() {
            shared.queued_bytes.fetch_sub(weight, Ordering::Relaxed);
            counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits until every record submitted before this call has reached the ring buffer and the
    /// files.
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
    /// and stops the threads. Records submitted afterwards are dropped and counted.
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
    files: Arc<Files>,
    file_thread: Option<JoinHandle<()>>,
    /// Whether the files include a HAR, which needs each record's HAR entry.
    har: bool,
    shared: Arc<Shared>,
    warn: WarnLimiter,
    /// The current record's JSON line and HAR entry; reused so that rendering does not
    /// allocate.
    line: Vec<u8>,
    entry: Vec<u8>,
    memo: json_out::Memo,
    /// Where the JSON line put what the HAR entry copies from it.
    marks: jsonl::Marks,
    /// The room of each record's header lists and cookie names, kept for the next.
    lists: Lists,
    /// Route names as the feed hands them on, one allocation per name rather than per record.
    routes: Vec<Arc<str>>,
}

impl Worker {
    fn run(mut self) {
        while let Some(first) = self.rx.blocking_recv() {
            let mut next = Some(first);
            while let Some(msg) = next {
                if let Msg::Shutdown(ack) = msg {
                    self.shutdown();
                    let _ = ack.send(());
                    return;
                }
                self.handle(msg);
                next = self.rx.try_recv().ok();
            }
            self.shared.feed.end_batch();
            std::thread::sleep(GATHER);
        }
        // Every handle is gone without a shutdown: still leave complete files behind.
        self.stop_files();
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Record(record) => self.record(record),
            Msg::Flush(ack) | Msg::Shutdown(ack) => self.files.flush(ack),
            Msg::Reopen(plan, ack) => {
                // Waits for the file thread: a reopen takes the new redaction settings only if
                // the files it names could be opened.
                let reopened = self.files.reopen(&plan);
                if reopened.is_ok() {
                    self.redactor = Redactor::new(&plan);
                    self.har = plan.har.is_some();
                }
                let _ = ack.send(reopened);
            }
        }
    }

    fn shutdown(&mut self) {
        self.rx.close();
        while let Ok(msg) = self.rx.try_recv() {
            self.handle(msg);
        }
        self.stop_files();
    }

    fn stop_files(&mut self) {
        self.files.shutdown();
        if let Some(thread) = self.file_thread.take() {
            if thread.join().is_err() {
                tracing::warn!("trace file thread panicked");
            }
        }
    }

    /// The shared name of a route. Routes are few; a reload that renames them many times over
    /// starts the list again.
    fn route(&mut self, name: &str) -> Arc<str> {
        if let Some(known) = self.routes.iter().find(|known| ***known == *name) {
            return Arc::clone(known);
        }
        if self.routes.len() == MAX_ROUTE_NAMES {
            self.routes.clear();
        }
        let shared: Arc<str> = Arc::from(name);
        self.routes.push(Arc::clone(&shared));
        shared
    }

    fn record(&mut self, record: Box<ExchangeRecord>) {
        self.shared.taken(&record);
        let redacted = self.redactor.redact_with(&record, &mut self.lists);
        let (id, status) = (
            redacted.id,
            redacted.response.as_ref().map_or(0, |r| r.status),
        );
        let with_entry = self.har && self.files.active();
        self.line.clear();
        self.entry.clear();
        self.memo.clear();
        let mut rendered =
            jsonl::record(&redacted).write(&mut self.line, &mut self.memo, &mut self.marks);
        if rendered.is_ok() && with_entry {
            rendered = har::entry(&redacted).write_from_line(
                &mut self.entry,
                &mut self.memo,
                &self.line,
                &self.marks,
            );
        }
        self.lists.keep(redacted);
        let counters = &self.shared.counters;
        if let Err(e) = rendered {
            // Unreachable in practice (the record is strings and numbers rendered into memory),
            // but a record that cannot be rendered is a failed write, not a panic.
            counters.write_errors.fetch_add(1, Ordering::Relaxed);
            self.warn.warn("renderer", &io::Error::other(e));
            return;
        }
        // Counted first: a subscriber that has the record may read the counters.
        counters.written.fetch_add(1, Ordering::Relaxed);
        let route = record.route.as_deref().map(|name| self.route(name));
        self.shared.feed.publish(FeedRecord {
            id,
            route,
            status,
            line: Arc::from(self.line.as_slice()),
            har_entry: with_entry.then(|| Box::from(self.entry.as_slice())),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::record::Role;

    /// A record whose request carries `body` bytes.
    fn record(body: usize) -> ExchangeRecord {
        let mut record = crate::trace::tests::record(1, Role::Client, "https://t/x");
        record.request.body = crate::trace::tests::body(&"x".repeat(body));
        record.response = None;
        record
    }

    /// The channel in front of the feed thread, with nobody draining it but the test.
    fn tracer(capacity: usize, queue_bytes: usize) -> (Tracer, mpsc::Receiver<Msg>) {
        let (tx, rx) = mpsc::channel(capacity);
        let shared = Arc::new(Shared {
            next_id: AtomicU64::new(1),
            queued_bytes: AtomicUsize::new(0),
            queue_bytes,
            counters: Arc::default(),
            recent: Arc::new(Recent::new(1)),
            feed: Feed::default(),
        });
        (Tracer { tx, shared }, rx)
    }

    fn take(tracer: &Tracer, rx: &mut mpsc::Receiver<Msg>) {
        match rx.try_recv() {
            Ok(Msg::Record(record)) => tracer.shared.taken(&record),
            _ => panic!("a record was queued"),
        }
    }

    #[test]
    fn the_channel_holds_records_up_to_queue_bytes_of_body_and_a_larger_one_only_alone() {
        let (tracer, mut rx) = tracer(100, 2500);
        tracer.submit(record(3000));
        tracer.submit(record(1000));
        assert_eq!(
            tracer.stats().dropped,
            1,
            "nothing joins a record past the bound"
        );
        take(&tracer, &mut rx);
        for _ in 0..3 {
            tracer.submit(record(1000));
        }
        assert_eq!(
            tracer.stats().dropped,
            2,
            "two records of 1000 bytes fit in 2500, the third does not"
        );
        take(&tracer, &mut rx);
        tracer.submit(record(1000));
        assert_eq!(tracer.stats().dropped, 2, "a record taken makes room");
        assert_eq!(tracer.stats().submitted, 6);
    }

    #[test]
    fn the_channel_still_holds_channel_capacity_records_at_most() {
        let (tracer, _rx) = tracer(2, usize::MAX);
        for _ in 0..5 {
            tracer.submit(record(10));
        }
        assert_eq!(tracer.stats().dropped, 3);
        assert_eq!(
            tracer.shared.queued_bytes.load(Ordering::Relaxed),
            20,
            "a dropped record's bytes are not counted"
        );
    }
}
