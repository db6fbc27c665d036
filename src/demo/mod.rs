//! The built-in demo targets (also used by tests and benches).

pub mod server;
pub mod session_locked;
