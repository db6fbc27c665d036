//! HAR files from anywhere (ours, browsers, Fiddler, Charles): `diagnose` must never panic and
//! its report must render as text and JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use provproxy::diagnose;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(report) = diagnose::diagnose(text) {
        let _ = diagnose::render_text(&report);
        let _ = diagnose::render_json(&report);
    }
});
