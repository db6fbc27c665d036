//! The most recent redacted records, for the admin API's `/exchanges`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use super::feed::{FeedRecord, Offer, Subscriber};

#[derive(Debug)]
struct Item {
    id: u64,
    route: Option<Arc<str>>,
    /// 0 when the exchange got no response.
    status: u16,
    /// The record's JSON line (UTF-8) as written to the JSON-lines file: the admin API serves
    /// it as it is, so it is rendered once per record and never parsed again.
    line: Arc<[u8]>,
}

/// A bounded buffer of records in their flat JSON shape, newest last. The lock is held only to
/// push or to copy matches out; records are rendered before it is taken.
#[derive(Debug)]
pub struct Recent {
    capacity: usize,
    items: Mutex<VecDeque<Item>>,
}

impl Recent {
    pub fn new(capacity: usize) -> Self {
        Recent {
            capacity,
            items: Mutex::new(VecDeque::with_capacity(capacity)),
        }
    }

    pub fn push(&self, id: u64, route: Option<Arc<str>>, status: u16, line: Arc<[u8]>) {
        if self.capacity == 0 {
            return;
        }
        let mut items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        if items.len() == self.capacity {
            items.pop_front();
        }
        items.push_back(Item {
            id,
            route,
            status,
            line,
        });
    }

    /// Newest first, at most `limit`, optionally only one route and/or one status.
    pub fn recent(&self, route: Option<&str>, status: Option<u16>, limit: usize) -> Vec<Arc<[u8]>> {
        let items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        items
            .iter()
            .rev()
            .filter(|i| route.is_none_or(|r| i.route.as_deref() == Some(r)))
            .filter(|i| status.is_none_or(|s| i.status == s))
            .take(limit)
            .map(|i| Arc::clone(&i.line))
            .collect()
    }

    pub fn get(&self, id: u64) -> Option<Arc<[u8]>> {
        let items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        items
            .iter()
            .rev()
            .find(|i| i.id == id)
            .map(|i| Arc::clone(&i.line))
    }
}

/// The ring keeps the newest records: it never refuses one, the oldest leaves instead.
impl Subscriber for Recent {
    fn offer(&self, record: &Arc<FeedRecord>) -> Offer {
        self.push(
            record.id,
            record.route.clone(),
            record.status,
            Arc::clone(&record.line),
        );
        Offer::Taken
    }
}
