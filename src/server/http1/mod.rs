//! The proxy listener's HTTP/1 connections, served by our own code rather than hyper's: one
//! strict parse of each request head (`parse`), request bodies read by whoever polls them, and
//! responses written without a second task (issue 22). HTTP/2 and the admin listener stay on
//! hyper.

mod body;
pub mod chunked;
mod conn;
pub mod parse;
#[cfg(test)]
mod tests;
mod write;

pub use body::{Body, BodyError, Io};
pub use conn::{serve, Error, Settings};
