//! Config text from an operator: loading must never panic, whatever the TOML, and an error must
//! point inside the text it names.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Every variable is set, so secrets resolve and validation runs past them.
    let env = |_: &str| Some("fuzz-secret".to_owned());
    // An empty directory: `{ file = "..." }` secrets and relative paths find nothing there.
    let base = Path::new("/nonexistent/provproxy-fuzz");
    if let Err(err) = provproxy::config::load_str(text, "fuzz.toml", base, &env) {
        let lines = text.split('\n').count();
        assert!(
            err.line <= lines.max(1),
            "error line {} past the end ({lines} lines): {err}",
            err.line
        );
    }
});
