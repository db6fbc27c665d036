//! The built-in demo targets (also used by tests and benches).

pub mod oauth_target;
pub mod server;
