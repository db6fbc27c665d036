//! `provproxy run` as an operator drives it: started on a config file, signalled (HUP, USR1,
//! TERM), and watched through its log lines, each waited for with a deadline.

// Shared by tests/reload.rs and tests/operations.rs; each uses part of it.
#![allow(dead_code)]

#[path = "binary.rs"]
mod binary;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Long enough for a debug build on a busy machine, short enough that a hang fails the test.
pub const PATIENCE: Duration = Duration::from_secs(20);
/// std can neither wait for a child process with a timeout nor be told when a file changes:
/// those are polled this often.
const POLL_EVERY: Duration = Duration::from_millis(10);

pub struct Service {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Every line read so far.
    pub log: String,
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
}

impl Service {
    /// Starts `provproxy run --config CONFIG` and waits until it listens.
    pub fn start(config: &Path) -> Service {
        let mut child = Command::new(env!("CARGO_BIN_EXE_provproxy"))
            .args(["run", "--config"])
            .arg(config)
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start provproxy run");
        let stderr = child.stderr.take().expect("stderr");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let mut service = Service {
            child,
            lines,
            log: String::new(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin: None,
        };
        let line = service.wait_for_line("provproxy listening");
        service.addr = after(&line, " addr=").expect("proxy address");
        service.admin = after(&line, " admin=Some(");
        service
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `kill -SIGNAL`.
    pub fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -{signal}");
    }

    /// Waits for the next log line containing `needle` and returns it; lines before it are
    /// kept in `log` but otherwise passed over.
    pub fn wait_for_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = self.lines.recv_timeout(left) else {
                panic!(
                    "no log line with {needle:?} in time; the log:\n{}",
                    self.log
                );
            };
            self.log.push_str(&line);
            self.log.push('\n');
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// Sends SIGHUP and waits for its outcome: the "config reloaded" or "reload failed" line.
    pub fn reload(&mut self) -> String {
        self.signal("HUP");
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = self.lines.recv_timeout(left) else {
                panic!("no reload outcome in time; the log:\n{}", self.log);
            };
            self.log.push_str(&line);
            self.log.push('\n');
            if line.contains("config reloaded") || line.contains("reload failed") {
                return line;
            }
        }
    }

    /// Whether the process still runs.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("wait").is_none()
    }

    /// Waits for the process to end (after a signal sent by the test) and returns its status.
    pub fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for provproxy") {
                self.log
                    .extend(self.lines.try_iter().map(|line| line + "\n"));
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "provproxy did not stop:\n{}",
                self.log
            );
            std::thread::sleep(POLL_EVERY);
        }
    }

    /// SIGTERM, then the exit status.
    pub fn stop(mut self) -> ExitStatus {
        self.signal("TERM");
        self.wait()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // A failed assertion must not leave the process behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address after `marker` in a log line (`addr=127.0.0.1:P`, `admin=Some(127.0.0.1:P)`).
fn after(line: &str, marker: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(marker)? + marker.len()..];
    rest.split([' ', ')']).next()?.parse().ok()
}

/// Polls `condition` until it holds, failing the test after [`PATIENCE`].
pub fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(POLL_EVERY);
    }
}

// tests/reload.rs runs no command to its end.
#[allow(unused_imports)]
pub use binary::output;

pub fn provproxy() -> Command {
    Command::new(env!("CARGO_BIN_EXE_provproxy"))
}
