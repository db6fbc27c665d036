//! Admin endpoints and metrics.
