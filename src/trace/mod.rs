//! Exchange records, redaction, HAR and JSON-lines writers, the recent-exchanges ring, and body
//! capture. `diagnose` reads what these write (see [`crate::diagnose`]).
//!
//! The pipeline builds an [`ExchangeRecord`] only when something subscribes (a `[trace]` table,
//! or an `[admin]` listener whose ring and console want records) and hands it to
//! [`Tracer::submit`]; everything after that happens on the writer thread, and only a
//! [`redact::RedactedRecord`], rendered once, ever reaches the [`feed`]'s subscribers: the
//! files, the ring buffer behind the admin API, and the console's live streams.

pub mod feed;
pub mod file;
pub mod files;
pub mod from_lines;
pub mod har;
mod json_body;
pub mod json_out;
mod json_scan;
pub mod jsonl;
pub mod record;
pub mod redact;
pub mod ring;
pub mod tap;
pub mod text;
pub mod writer;
mod xml_body;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use files::Sink;
pub use record::ExchangeRecord;
pub use redact::Redactor;
pub use tap::{BodyEnd, TapBody};
pub use writer::{TraceStats, TraceWriter, Tracer};

/// Why tracing could not start.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("cannot open trace file {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the trace writer thread: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("the trace writer has stopped")]
    Stopped,
}
