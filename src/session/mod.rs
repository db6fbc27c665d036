//! Cookie jars per session key, single-flight establishment, re-login, persistence.

mod jar;
mod key;
mod psl;

pub use jar::{Absorbed, Jar, Rejected};
pub use key::SessionKey;
