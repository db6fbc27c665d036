//! Configuration: raw TOML types, validation into a runtime plan, secrets.

pub mod plan;
pub mod secret;

pub use plan::*;
pub use secret::{Secret, SecretSource};
