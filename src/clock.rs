//! Where time comes from. Components that decide by time (expiry, refresh ahead, backoff) read
//! it from a [`Clock`] they are given, so that tests move time forward explicitly instead of
//! sleeping through it. Depends on nothing else in the crate.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A monotonic time source.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> Instant;
}

/// A clock as components hold it: shared, cheap to clone.
pub type SharedClock = Arc<dyn Clock>;

/// The operating system's monotonic clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// The clock of a running proxy.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// A clock that stands still until told to move: [`advance`](ManualClock::advance) is the only
/// way its time passes. For tests.
#[derive(Debug)]
pub struct ManualClock {
    origin: Instant,
    /// Nanoseconds advanced since `origin`; `u64` nanoseconds last 584 years.
    advanced: AtomicU64,
}

impl ManualClock {
    /// A clock standing at the real time of its creation.
    pub fn new() -> Arc<ManualClock> {
        Arc::new(ManualClock {
            origin: Instant::now(),
            advanced: AtomicU64::new(0),
        })
    }

    /// Moves the clock forward by `by`; every holder sees the new time at once.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        // fetch_update never fails with a closure that always returns Some.
        let _ = self
            .advanced
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| {
                Some(now.saturating_add(nanos))
            });
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.origin + Duration::from_nanos(self.advanced.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced_and_all_holders_see_it() {
        let clock = ManualClock::new();
        let shared: SharedClock = clock.clone();
        let start = shared.now();
        assert_eq!(shared.now(), start);
        clock.advance(Duration::from_millis(1500));
        assert_eq!(shared.now() - start, Duration::from_millis(1500));
        clock.advance(Duration::from_secs(60));
        assert_eq!(shared.now() - start, Duration::from_millis(61_500));
    }

    #[test]
    fn system_clock_is_monotonic() {
        let clock = system();
        let first = clock.now();
        assert!(clock.now() >= first);
    }
}
