//! provproxy: a session-aware reverse proxy for identity provisioning connectors.
//!
//! Data flows one way: listener → route → session → auth → upstream → challenge → trace.

pub mod access_log;
pub mod admin;
pub mod auth;
pub mod challenge;
pub mod clock;
pub mod config;
pub mod demo;
pub mod diagnose;
pub mod hardening;
pub mod lockfile;
pub mod proxy;
pub mod reload;
pub mod server;
pub mod session;
pub mod state;
pub mod trace;
pub mod upstream;
