//! `provproxy demo` is the first thing a new user runs: every field case must behave as the
//! field says, every trace it writes must be valid HAR with no secret in it, and `diagnose` must
//! name the cause of each failure the "as is" runs recorded.

#[path = "support/har_validator.rs"]
mod har_validator;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use provproxy::diagnose::{diagnose, Class};

/// Runs the whole demo once per test binary (it starts 5 targets and 10 proxies).
fn demo_run() -> &'static (bool, String, PathBuf) {
    static RUN: std::sync::OnceLock<(bool, String, PathBuf)> = std::sync::OnceLock::new();
    RUN.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir").keep();
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let mut out = Vec::new();
        let ok = runtime
            .block_on(provproxy::demo::run(&mut out, &dir))
            .expect("the demo runs");
        (ok, String::from_utf8_lossy(&out).into_owned(), dir)
    })
}

fn files_with_extension(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("trace dir")
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == extension))
        .collect();
    files.sort();
    files
}

#[test]
fn every_field_case_behaves_as_the_field_says() {
    let (ok, output, _) = demo_run();
    assert!(ok, "demo reported failures:\n{output}");
    for heading in [
        "== stored credentials ==",
        "== session-locked API",
        "== single advertised scheme",
        "== scoped token",
        "== CSRF token",
    ] {
        assert!(
            output.contains(heading),
            "missing {heading:?} in:\n{output}"
        );
    }
    assert!(output.contains(", 0 not"), "{output}");
}

#[test]
fn every_demo_trace_is_valid_har_and_files_are_private() {
    let (_, _, dir) = demo_run();
    let hars = files_with_extension(dir, "har");
    assert_eq!(
        hars.len(),
        10,
        "an as-is and a fixed trace per scenario: {hars:?}"
    );
    har_validator::assert_valid_har(&hars);
    for file in hars.iter().chain(files_with_extension(dir, "jsonl").iter()) {
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(file).expect("metadata").permissions(),
        );
        assert_eq!(
            mode & 0o777,
            0o600,
            "{} is readable by others",
            file.display()
        );
    }
}

#[test]
fn diagnose_names_the_cause_of_each_failure_the_as_is_runs_recorded() {
    let (_, _, dir) = demo_run();
    let expected: BTreeMap<&str, Vec<Class>> = BTreeMap::from([
        ("stored-credentials", vec![Class::Unauthorized]),
        (
            "session-locked",
            vec![Class::SessionLocked, Class::SessionLocked],
        ),
        ("single-scheme", vec![Class::ChallengeSchemeMismatch]),
        (
            "scoped-token",
            vec![Class::InsufficientScope, Class::DoubledBearerPrefix],
        ),
        ("csrf-token", vec![Class::CsrfTokenRequired]),
    ]);
    for (scenario, classes) in expected {
        let text = std::fs::read_to_string(dir.join(format!("{scenario}-as-is.har")))
            .expect("as-is trace");
        let report = diagnose(&text).expect("our own HAR is readable");
        let found: Vec<Class> = report
            .findings
            .iter()
            .map(|finding| finding.class)
            .collect();
        assert_eq!(found, classes, "{scenario}");
    }
}

#[test]
fn the_fixed_runs_recorded_no_failure_but_the_expected_challenge() {
    let (_, _, dir) = demo_run();
    for scenario in [
        "stored-credentials",
        "session-locked",
        "scoped-token",
        "csrf-token",
    ] {
        let text = std::fs::read_to_string(dir.join(format!("{scenario}-fixed.har")))
            .expect("fixed trace");
        let report = diagnose(&text).expect("readable");
        assert!(
            report.findings.is_empty(),
            "{scenario}: {:?}",
            report.findings
        );
    }
    let text = std::fs::read_to_string(dir.join("single-scheme-fixed.har")).expect("fixed trace");
    let report = diagnose(&text).expect("readable");
    assert_eq!(
        report.findings.len(),
        1,
        "only the challenge round trip fails: {:?}",
        report.findings
    );
    assert_eq!(report.findings[0].status, 401);
}

/// Every demo secret has the shape `demo-` + 20 hex digits; none may appear in the output or any
/// trace, neither in clear nor inside anything base64-encoded (a Basic header, say).
#[test]
fn no_demo_secret_reaches_the_output_or_any_trace() {
    let (_, output, dir) = demo_run();
    let mut artifacts = vec![("stdout".to_owned(), output.clone())];
    for file in std::fs::read_dir(dir).expect("trace dir") {
        let path = file.expect("entry").path();
        artifacts.push((
            path.display().to_string(),
            std::fs::read_to_string(&path).expect("text trace"),
        ));
    }
    for (name, text) in &artifacts {
        assert!(!contains_demo_secret(text), "{name} contains a demo secret");
        for word in
            text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '+' || c == '/' || c == '='))
        {
            if word.len() < 16 {
                continue;
            }
            if let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(word) {
                assert!(
                    !contains_demo_secret(&String::from_utf8_lossy(&decoded)),
                    "{name} contains a base64-encoded demo secret"
                );
            }
        }
    }
}

fn contains_demo_secret(text: &str) -> bool {
    text.match_indices("demo-").any(|(at, _)| {
        let rest = &text[at + 5..];
        rest.len() >= 20 && rest[..20].chars().all(|c| c.is_ascii_hexdigit())
    })
}
