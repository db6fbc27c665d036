//! The record feed: one fan-out from the trace writer to everything that wants redacted
//! records as they happen — the admin ring buffer, the trace files (see [`super::files`]), and
//! each console browser's live stream.
//!
//! The writer redacts and renders a record once, then offers it to every subscriber. Each
//! subscriber has its own bound and its own drop count: an offer never waits, so a stalled
//! browser or a stalled disk loses records (and counts them) while the proxy and the other
//! subscribers go on as if it were not there.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

/// One redacted record as the feed carries it: rendered once, shared by every subscriber.
#[derive(Debug)]
pub struct FeedRecord {
    pub id: u64,
    pub route: Option<Arc<str>>,
    /// 0 when the exchange got no response.
    pub status: u16,
    /// The record's JSON line (UTF-8), the same bytes the JSON-lines file gets.
    pub line: Arc<[u8]>,
    /// The record's HAR entry, rendered only while a HAR file is written.
    pub har_entry: Option<Box<[u8]>>,
}

/// What became of one offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    Taken,
    /// The subscriber's queue was full: the record is lost to it, and counted.
    Dropped,
    /// The subscriber has gone away; it is removed.
    Gone,
}

/// Something that takes records from the feed. `offer` must not block.
pub trait Subscriber: Send + Sync {
    fn offer(&self, record: &Arc<FeedRecord>) -> Offer;
    /// The writer has offered everything it had: a subscriber that hands records to a thread
    /// of its own wakes it now, once per batch rather than once per record.
    fn end_batch(&self) {}
}

/// Counters for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeedStats {
    /// Subscribers now attached.
    pub subscribers: u64,
    /// Records lost to a live stream whose queue was full, summed over every stream so far.
    /// (The trace files count theirs in [`super::TraceStats::dropped`].)
    pub dropped: u64,
}

#[derive(Default)]
pub struct Feed {
    subscribers: Mutex<Vec<Attached>>,
    dropped: AtomicU64,
}

struct Attached {
    subscriber: Arc<dyn Subscriber>,
    /// Ended by [`Feed::end_streams`] at shutdown; the ring stays.
    stream: bool,
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed")
            .field("stats", &self.stats())
            .finish()
    }
}

impl Feed {
    /// Attaches a subscriber that lives as long as the feed (the ring buffer).
    pub fn attach(&self, subscriber: Arc<dyn Subscriber>) {
        self.lock().push(Attached {
            subscriber,
            stream: false,
        });
    }

    /// A new live stream with room for `capacity` records; it ends when the receiver is dropped
    /// or the feed ends its streams.
    pub fn subscribe(&self, capacity: usize) -> Subscription {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        self.lock().push(Attached {
            subscriber: Arc::new(Queue {
                tx,
                dropped: Arc::clone(&dropped),
            }),
            stream: true,
        });
        Subscription { rx, dropped }
    }

    /// Offers a record to every subscriber; never waits for one.
    pub fn publish(&self, record: FeedRecord) {
        let record = Arc::new(record);
        let mut subscribers = self.lock();
        subscribers.retain(|attached| match attached.subscriber.offer(&record) {
            Offer::Taken => true,
            Offer::Dropped => {
                if attached.stream {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
                true
            }
            Offer::Gone => false,
        });
    }

    /// Tells every subscriber that the records of this batch have all been offered.
    pub fn end_batch(&self) {
        for attached in self.lock().iter() {
            attached.subscriber.end_batch();
        }
    }

    /// Ends every live stream (their receivers see the end); at shutdown, so that an open
    /// console does not hold the admin listener's drain for its whole grace period.
    pub fn end_streams(&self) {
        self.lock().retain(|attached| !attached.stream);
    }

    pub fn stats(&self) -> FeedStats {
        FeedStats {
            subscribers: self.lock().len() as u64,
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Attached>> {
        self.subscribers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A live stream's bounded queue.
struct Queue {
    tx: mpsc::Sender<Arc<FeedRecord>>,
    dropped: Arc<AtomicU64>,
}

impl Subscriber for Queue {
    fn offer(&self, record: &Arc<FeedRecord>) -> Offer {
        match self.tx.try_send(Arc::clone(record)) {
            Ok(()) => Offer::Taken,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                Offer::Dropped
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Offer::Gone,
        }
    }
}

/// The receiving end of a live stream.
#[derive(Debug)]
pub struct Subscription {
    rx: mpsc::Receiver<Arc<FeedRecord>>,
    dropped: Arc<AtomicU64>,
}

impl Subscription {
    /// The next record; `None` once the feed has ended this stream.
    pub async fn next(&mut self) -> Option<Arc<FeedRecord>> {
        self.rx.recv().await
    }

    /// Records this stream has lost because its queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u64) -> FeedRecord {
        FeedRecord {
            id,
            route: Some("r".into()),
            status: 200,
            line: Arc::from(format!("{{\"id\":{id}}}").as_bytes()),
            har_entry: None,
        }
    }

    #[tokio::test]
    async fn a_stalled_subscriber_loses_records_and_the_other_still_receives_every_one() {
        let feed = Feed::default();
        let mut live = feed.subscribe(1000);
        // Never read: its queue fills after two records.
        let stalled = feed.subscribe(2);
        for id in 1..=1000 {
            feed.publish(record(id));
        }
        for id in 1..=1000 {
            assert_eq!(live.next().await.map(|r| r.id), Some(id));
        }
        assert_eq!(live.dropped(), 0);
        assert_eq!(stalled.dropped(), 998);
        assert_eq!(
            feed.stats(),
            FeedStats {
                subscribers: 2,
                dropped: 998
            }
        );
    }

    #[tokio::test]
    async fn a_subscriber_that_went_away_is_removed_at_the_next_record() {
        let feed = Feed::default();
        let gone = feed.subscribe(4);
        let _kept = feed.subscribe(4);
        drop(gone);
        feed.publish(record(1));
        assert_eq!(feed.stats().subscribers, 1);
    }

    #[tokio::test]
    async fn ending_the_streams_ends_each_receiver_and_keeps_attached_subscribers() {
        struct Count(AtomicU64);
        impl Subscriber for Count {
            fn offer(&self, _: &Arc<FeedRecord>) -> Offer {
                self.0.fetch_add(1, Ordering::Relaxed);
                Offer::Taken
            }
        }
        let feed = Feed::default();
        let ring = Arc::new(Count(AtomicU64::new(0)));
        feed.attach(ring.clone());
        let mut live = feed.subscribe(4);
        feed.end_streams();
        assert!(live.next().await.is_none());
        feed.publish(record(1));
        assert_eq!(ring.0.load(Ordering::Relaxed), 1);
    }
}
