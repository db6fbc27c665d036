//! Where time comes from. Components that decide by time (expiry, refresh ahead, backoff) read
//! it from a [`Clock`] they are given, so that tests move time forward explicitly instead of
//! sleeping through it. Depends on nothing else in the crate.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// A time source: monotonic time for intervals, wall time for what is dated by the calendar
/// (cookie `Expires`/`Max-Age`). Both move together on a manual clock.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> Instant;
    fn wall(&self) -> SystemTime;
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

    fn wall(&self) -> SystemTime {
        SystemTime::now()
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
    wall_origin: SystemTime,
    /// Nanoseconds advanced since `origin`; `u64` nanoseconds last 584 years.
    advanced: AtomicU64,
}

impl ManualClock {
    /// A clock standing at the real time of its creation.
    pub fn new() -> Arc<ManualClock> {
        Arc::new(ManualClock {
            origin: Instant::now(),
            wall_origin: SystemTime::now(),
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

impl ManualClock {
    fn advanced(&self) -> Duration {
        Duration::from_nanos(self.advanced.load(Ordering::SeqCst))
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.origin + self.advanced()
    }

    fn wall(&self) -> SystemTime {
        self.wall_origin + self.advanced()
    }
}

/// The civil date (year, month 1-12, day 1-31) of a day counted from 1970-01-01, in the
/// proleptic Gregorian calendar: Howard Hinnant's `civil_from_days`, counting in 400-year eras
/// from 0000-03-01 so that leap days fall at the end of a year. Timestamps are written by hand
/// in the trace and in response heads, where a general formatter costs ten times as much.
pub fn civil_date(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let (era, day_of_era) = (z / 146_097, z % 146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year, month, day)
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
    fn manual_wall_time_moves_with_monotonic_time() {
        let clock = ManualClock::new();
        let (start, wall_start) = (clock.now(), clock.wall());
        clock.advance(Duration::from_secs(90));
        assert_eq!(clock.now() - start, Duration::from_secs(90));
        assert_eq!(
            clock.wall().duration_since(wall_start).ok(),
            Some(Duration::from_secs(90))
        );
    }

    #[test]
    fn system_clock_is_monotonic() {
        let clock = system();
        let first = clock.now();
        assert!(clock.now() >= first);
    }
}
