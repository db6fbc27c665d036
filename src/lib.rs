//! provproxy: a session-aware reverse proxy for identity provisioning connectors.
//!
//! Data flows one way: listener (`server`) → `ingress` → route (`proxy`) → `session` → `auth` →
//! `upstream` → `challenge` → `trace`. Shared vocabulary (`body`, `metrics`, `clock`, `authority`,
//! `www_authenticate`, `token_rules`, `config`) depends on nothing above it; `proxy` only
//! sequences the phases the other modules own.

pub mod access_log;
pub mod admin;
pub mod auth;
pub mod authority;
pub mod body;
pub mod challenge;
pub mod clock;
pub mod config;
pub mod demo;
pub mod diagnose;
pub mod hardening;
pub mod ingress;
pub mod lockfile;
pub mod metrics;
pub mod proxy;
pub mod reload;
pub mod server;
pub mod session;
pub mod state;
pub mod token_rules;
pub mod trace;
pub mod upstream;
pub mod www_authenticate;

/// The library's entry point: a proxy and its admin listener started from a validated plan, with
/// a handle ([`Running`]) to reload, drain and stop it. `main.rs`, the demo and the tests all
/// start a proxy here.
pub use server::{start, start_with, Running, StartOptions, StartupError};
