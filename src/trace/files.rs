//! The trace files as a subscriber of the record feed: a bounded queue and a thread of their
//! own, so that a slow or stalled disk costs records written to the files (dropped and counted
//! when the queue is full) and never delays the ring buffer, a live console or the proxy.
//!
//! Records arrive rendered (see [`FeedRecord`]): the thread only gathers their bytes and writes
//! them. It is woken once per batch of the feed, not per record: a futex call and a context
//! switch per record would cost more than the record's write.

use std::collections::VecDeque;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::feed::{FeedRecord, Offer, Subscriber};
use super::file::{Format, TraceFile};
use super::writer::Counters;
use super::TraceError;
use crate::config::TracePlan;

/// At most one warning per this long about failing trace writes.
const WARN_EVERY: Duration = Duration::from_secs(30);

/// Where the file thread puts records. Trace files implement it; tests use it to stall the
/// thread.
pub trait Sink: Send {
    /// Names the sink in logs.
    fn name(&self) -> String;
    /// `record` holds the record's JSON line and, when a HAR is written, its HAR entry, each
    /// rendered once for every sink.
    fn write(&mut self, record: &Arc<FeedRecord>) -> io::Result<()>;
    /// Writes what earlier calls to `write` gathered. Called whenever the thread has nothing
    /// more queued, and before a flush is answered.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// Flushes and closes; called once at shutdown.
    fn close(&mut self) -> io::Result<()>;
}

/// Opens the plan's files (parents created, files 0600).
pub fn open(plan: &TracePlan) -> Result<Vec<Box<dyn Sink>>, TraceError> {
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

enum Item {
    Record(Arc<FeedRecord>),
    /// Answered once every record queued before it has been written and flushed.
    Flush(oneshot::Sender<()>),
    /// Opens the plan's files in place of the current ones, after every record queued before.
    Reopen(Box<TracePlan>, std_mpsc::Sender<Result<(), TraceError>>),
    /// Writes what is queued, closes the files and ends the thread.
    Shutdown,
}

#[derive(Default)]
struct State {
    items: VecDeque<Item>,
    /// Records in `items` and their rendered bytes, which the queue's bounds count; control
    /// items are never refused.
    records: usize,
    bytes: usize,
}

struct Queue {
    state: Mutex<State>,
    ready: Condvar,
    capacity: usize,
    max_bytes: usize,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn control(&self, item: Item) {
        self.lock().items.push_back(item);
        self.ready.notify_one();
    }
}

/// The feed's side of the file thread: the subscriber that queues records for it.
pub(super) struct Files {
    queue: Arc<Queue>,
    /// False while no file is open (a trace kept only in memory): records are not queued.
    active: AtomicBool,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Files")
            .field("active", &self.active.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Files {
    /// Starts the file thread over `sinks`, with room for `capacity` records and `max_bytes`
    /// of them rendered in its queue.
    pub(super) fn start(
        sinks: Vec<Box<dyn Sink>>,
        capacity: usize,
        max_bytes: usize,
        counters: Arc<Counters>,
    ) -> Result<(Arc<Files>, JoinHandle<()>), TraceError> {
        let queue = Arc::new(Queue {
            state: Mutex::new(State::default()),
            ready: Condvar::new(),
            capacity: capacity.max(1),
            max_bytes,
        });
        let files = Arc::new(Files {
            queue: Arc::clone(&queue),
            active: AtomicBool::new(!sinks.is_empty()),
            counters: Arc::clone(&counters),
        });
        let thread = FileThread {
            queue,
            sinks,
            counters,
            warn: WarnLimiter::default(),
        };
        let handle = std::thread::Builder::new()
            .name("provproxy-trace-files".into())
            .spawn(move || thread.run())
            .map_err(TraceError::Spawn)?;
        Ok((files, handle))
    }

    /// Whether records go to files at all.
    pub(super) fn active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// Answers `ack` once every record offered before has been written and flushed.
    pub(super) fn flush(&self, ack: oneshot::Sender<()>) {
        self.queue.control(Item::Flush(ack));
    }

    /// Replaces the files by the plan's, after every record offered before; waits for the
    /// outcome. A file that cannot be opened leaves the old ones in place.
    pub(super) fn reopen(&self, plan: &TracePlan) -> Result<(), TraceError> {
        let (ack, done) = std_mpsc::channel();
        self.queue
            .control(Item::Reopen(Box::new(plan.clone()), ack));
        let reopened = done.recv().map_err(|_| TraceError::Stopped)?;
        if reopened.is_ok() {
            self.active.store(
                plan.har.is_some() || plan.jsonl.is_some(),
                Ordering::Relaxed,
            );
        }
        reopened
    }

    /// Ends the thread after it has written everything queued and closed the files.
    pub(super) fn shutdown(&self) {
        self.queue.control(Item::Shutdown);
    }
}

/// A full queue costs the record its place in the files, counted as dropped; the ring and the
/// live streams have it all the same.
impl Subscriber for Files {
    fn offer(&self, record: &Arc<FeedRecord>) -> Offer {
        if !self.active() {
            return Offer::Taken;
        }
        let weight = record.line.len() + record.har_entry.as_ref().map_or(0, |entry| entry.len());
        let mut state = self.queue.lock();
        // A record larger than the whole bound still goes into an empty queue.
        let too_big = state.records > 0 && state.bytes + weight > self.queue.max_bytes;
        if state.records >= self.queue.capacity || too_big {
            drop(state);
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return Offer::Dropped;
        }
        state.records += 1;
        state.bytes += weight;
        state.items.push_back(Item::Record(Arc::clone(record)));
        Offer::Taken
    }

    fn end_batch(&self) {
        self.queue.ready.notify_one();
    }
}

struct FileThread {
    queue: Arc<Queue>,
    sinks: Vec<Box<dyn Sink>>,
    counters: Arc<Counters>,
    warn: WarnLimiter,
}

impl FileThread {
    fn run(mut self) {
        let mut batch = VecDeque::new();
        loop {
            {
                let mut state = self.queue.lock();
                while state.items.is_empty() {
                    state = self
                        .queue
                        .ready
                        .wait(state)
                        .unwrap_or_else(|p| p.into_inner());
                }
                std::mem::swap(&mut state.items, &mut batch);
                state.records = 0;
                state.bytes = 0;
            }
            for item in batch.drain(..) {
                match item {
                    Item::Record(record) => self.write(&record),
                    Item::Flush(ack) => {
                        self.flush();
                        let _ = ack.send(());
                    }
                    Item::Reopen(plan, ack) => {
                        let _ = ack.send(self.reopen(&plan));
                    }
                    Item::Shutdown => {
                        self.close();
                        return;
                    }
                }
            }
            self.flush();
        }
    }

    fn write(&mut self, record: &Arc<FeedRecord>) {
        for sink in &mut self.sinks {
            if let Err(e) = sink.write(record) {
                self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
                self.warn.warn(&sink.name(), &e);
            }
        }
    }

    fn flush(&mut self) {
        for sink in &mut self.sinks {
            if let Err(e) = sink.flush() {
                self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
                self.warn.warn(&sink.name(), &e);
            }
        }
    }

    /// Everything written so far goes out through the old files before the new ones are opened
    /// (a JSON-lines file left in place is then appended to where the old one ended); the old
    /// ones are closed after, so a HAR that was moved away is completed where it now is.
    fn reopen(&mut self, plan: &TracePlan) -> Result<(), TraceError> {
        self.flush();
        let sinks = open(plan)?;
        self.close();
        self.sinks = sinks;
        self.counters.reopened.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn close(&mut self) {
        for sink in &mut self.sinks {
            if let Err(e) = sink.close() {
                self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(sink = %sink.name(), error = %e, "closing trace file failed");
            }
        }
    }
}

/// One warning per [`WARN_EVERY`], saying how many were held back, instead of one per record.
#[derive(Debug, Default)]
pub(super) struct WarnLimiter {
    last: Option<Instant>,
    suppressed: u64,
}

impl WarnLimiter {
    pub(super) fn warn(&mut self, sink: &str, error: &io::Error) {
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
