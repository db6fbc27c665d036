//! Body redaction on JSON, form and XML bodies built from the fuzzer's bytes, with a secret value
//! planted under secret-named fields: no panic, and the planted value never survives (see
//! `planted_secrets.rs`, which `tests/redaction_property.rs` runs on every test run too).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use provproxy::trace::Redactor;

#[path = "planted_secrets.rs"]
mod planted_secrets;

fuzz_target!(|data: &[u8]| {
    static REDACTOR: OnceLock<Redactor> = OnceLock::new();
    planted_secrets::check(REDACTOR.get_or_init(planted_secrets::redactor), data);
});
