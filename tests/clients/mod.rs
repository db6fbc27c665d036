//! Real HTTP clients that choose their auth scheme from the challenge, for integration tests:
//! Apache HttpClient 4.5 (non-preemptive, as provisioning connectors use it) and curl.
//!
//! Use from a test file with `mod clients;`. The helpers block, so the async ones run them on
//! tokio's blocking pool: a test's target server keeps serving on the runtime meanwhile.
//! A missing tool fails the test with what to install; it never passes silently.

// Shared by several test binaries, each of which uses a subset.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// What a client ended up doing: the final status and the `Authorization` schemes it sent, in
/// order (empty when it never sent credentials).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRun {
    pub status: u16,
    pub sent: Vec<String>,
}

impl ClientRun {
    pub fn sent_scheme(&self, scheme: &str) -> bool {
        self.sent.iter().any(|s| s.eq_ignore_ascii_case(scheme))
    }
}

const HTTPCLIENT_JARS: &[&str] = &[
    "/usr/share/java/httpclient.jar",
    "/usr/share/java/httpcore.jar",
    "/usr/share/java/commons-logging.jar",
    "/usr/share/java/commons-codec.jar",
];

const JAVA_SOURCE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/clients/ChallengeClient.java"
);

/// Non-preemptive Apache HttpClient 4.5 GET with `BasicCredentialsProvider`.
pub async fn http_client(url: &str, username: &str, password: &str) -> ClientRun {
    let args = [url.to_owned(), username.to_owned(), password.to_owned()];
    blocking(move || {
        let [url, username, password] = &args;
        http_client_get(url, username, password)
    })
    .await
}

/// `curl --anyauth -u user:pass`: curl asks first, then picks the best scheme it supports.
pub async fn curl_anyauth(url: &str, username: &str, password: &str) -> ClientRun {
    let args = [url.to_owned(), username.to_owned(), password.to_owned()];
    blocking(move || {
        let [url, username, password] = &args;
        curl_get(url, username, password, &["--anyauth"])
    })
    .await
}

/// `curl -u user:pass`: preemptive Basic, the way Postman works.
pub async fn curl_basic(url: &str, username: &str, password: &str) -> ClientRun {
    let args = [url.to_owned(), username.to_owned(), password.to_owned()];
    blocking(move || {
        let [url, username, password] = &args;
        curl_get(url, username, password, &["--basic"])
    })
    .await
}

async fn blocking(run: impl FnOnce() -> ClientRun + Send + 'static) -> ClientRun {
    match tokio::task::spawn_blocking(run).await {
        Ok(run) => run,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

pub fn http_client_get(url: &str, username: &str, password: &str) -> ClientRun {
    let classes = match compiled_client() {
        Ok(dir) => dir,
        Err(message) => panic!("{message}"),
    };
    let output = run(
        Command::new("java")
            .arg("-cp")
            .arg(classpath(Some(classes)))
            .arg("ChallengeClient")
            .args([url, username, password]),
        "java not found: install a JRE (apt-get install -y default-jre-headless)",
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "ChallengeClient failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    parse_java_line(stdout.trim())
        .unwrap_or_else(|| panic!("unexpected ChallengeClient output: {stdout:?}"))
}

fn parse_java_line(line: &str) -> Option<ClientRun> {
    let (status, sent) = line.strip_prefix("status=")?.split_once(" sent=")?;
    let sent = match sent {
        "none" => Vec::new(),
        list => list.split(',').map(str::to_owned).collect(),
    };
    Some(ClientRun {
        status: status.parse().ok()?,
        sent,
    })
}

/// Compiles `ChallengeClient.java` once per test binary, into its own directory so that test
/// binaries running side by side never see each other's half-written class files.
fn compiled_client() -> &'static Result<PathBuf, String> {
    static COMPILED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    COMPILED.get_or_init(|| {
        if let Some(missing) = HTTPCLIENT_JARS.iter().find(|jar| !Path::new(jar).exists()) {
            return Err(format!(
                "{missing} is missing: install Apache HttpClient 4.5 \
                 (apt-get install -y libhttpclient-java)"
            ));
        }
        let dir = tempfile::Builder::new()
            .prefix("challenge-client-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .map_err(|e| format!("cannot create a directory for the Java classes: {e}"))?
            .keep();
        let output = run(
            Command::new("javac")
                .arg("-d")
                .arg(&dir)
                .arg("-cp")
                .arg(classpath(None))
                .arg(JAVA_SOURCE),
            "javac not found: install a JDK (apt-get install -y default-jdk-headless)",
        );
        if !output.status.success() {
            return Err(format!(
                "javac failed on {JAVA_SOURCE}:\n{}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(dir)
    })
}

fn classpath(classes: Option<&Path>) -> String {
    let mut entries: Vec<String> = HTTPCLIENT_JARS.iter().map(|s| (*s).to_owned()).collect();
    if let Some(dir) = classes {
        entries.insert(0, dir.display().to_string());
    }
    entries.join(":")
}

fn curl_get(url: &str, username: &str, password: &str, auth: &[&str]) -> ClientRun {
    let output = run(
        Command::new("curl")
            .args(auth)
            .arg("-u")
            .arg(format!("{username}:{password}"))
            .args(["-s", "-v", "-o", "/dev/null", "-w", "%{http_code}"])
            .args(["--max-time", "20"])
            .arg(url),
        "curl not found: install it (apt-get install -y curl)",
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let status = stdout.trim().parse().unwrap_or_else(|_| {
        panic!(
            "curl printed no status code ({}): {stdout:?}",
            output.status
        )
    });
    // `-v` shows request headers as "> Authorization: Scheme credentials"; keep only the scheme.
    let sent = String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter_map(|line| line.strip_prefix("> Authorization: "))
        .filter_map(|value| value.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    ClientRun { status, sent }
}

fn run(command: &mut Command, missing: &str) -> Output {
    match command.output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{missing}"),
        Err(e) => panic!("cannot run {:?}: {e}", command.get_program()),
    }
}
