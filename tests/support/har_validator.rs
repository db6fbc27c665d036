//! Validates HAR files with the npm `har-validator` package, shared by the trace unit tests
//! and the integration tests.

use std::path::PathBuf;
use std::process::Command;

/// Runs the npm `har-validator` package on each file. Version 5 ships no CLI, so it is driven
/// through node from the global npm root.
pub fn assert_valid_har(files: &[PathBuf]) {
    const INSTALL: &str = "har-validator is required: install it with `npm install -g har-validator` (needs node and npm)";
    let root = Command::new("npm")
        .args(["root", "-g"])
        .output()
        .unwrap_or_else(|e| panic!("{INSTALL}: cannot run npm: {e}"));
    let module = PathBuf::from(String::from_utf8_lossy(&root.stdout).trim()).join("har-validator");
    assert!(module.is_dir(), "{INSTALL}: {} not found", module.display());
    let script = r#"
        const v = require(process.argv[1]);
        const fs = require('fs');
        const files = process.argv.slice(2);
        Promise.all(files.map(f => v.har(JSON.parse(fs.readFileSync(f, 'utf8')))
            .catch(e => { throw new Error(f + ': ' + JSON.stringify(e.errors)); })))
          .then(() => process.exit(0), e => { console.error(e.message); process.exit(1); });
    "#;
    let out = Command::new("node")
        .arg("-e")
        .arg(script)
        .arg(&module)
        .args(files)
        .output()
        .unwrap_or_else(|e| panic!("{INSTALL}: cannot run node: {e}"));
    assert!(
        out.status.success(),
        "har-validator rejected the trace: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
