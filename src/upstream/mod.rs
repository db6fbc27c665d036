//! The upstream side: rustls connector, hyper client pool, timeouts.

pub mod tls;
