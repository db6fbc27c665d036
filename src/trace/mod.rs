//! Exchange records, redaction, HAR and JSON-lines writers, and `diagnose`.

pub mod record;
