//! `provproxy run` as an operator drives it: started on a config file, signalled (HUP, USR1,
//! TERM), and watched through its log lines, each waited for with a deadline. Built on the
//! binary harness (`binary.rs`).

// Shared by tests/reload.rs and tests/operations.rs; each uses part of it.
#![allow(dead_code)]

#[path = "binary.rs"]
mod binary;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ExitStatus, Stdio};

// tests/reload.rs runs no command to its end and sets no deadline of its own.
#[allow(unused_imports)]
pub use binary::{eventually, output, provproxy, PATIENCE};
use binary::{exited, listening, signal, Log};

pub struct Service {
    child: Child,
    lines: Log,
    /// Every line read so far.
    pub log: String,
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
}

impl Service {
    /// Starts `provproxy run --config CONFIG` and waits until it listens.
    pub fn start(config: &Path) -> Service {
        let mut child = provproxy()
            .args(["run", "--config"])
            .arg(config)
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start provproxy run");
        let lines = Log::capture(&mut child);
        let mut service = Service {
            child,
            lines,
            log: String::new(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin: None,
        };
        let line = service.wait_for_line("provproxy listening");
        (service.addr, service.admin) = listening(&line).expect("proxy address");
        service
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `kill -SIGNAL`.
    pub fn signal(&self, name: &str) {
        signal(self.pid(), name);
    }

    /// Waits for the next log line containing `needle` and returns it; lines before it are
    /// kept in `log` but otherwise passed over.
    pub fn wait_for_line(&mut self, needle: &str) -> String {
        let found = self
            .lines
            .wait_for(|line| line.contains(needle).then(|| line.to_owned()));
        self.log.clone_from(&self.lines.text);
        found.unwrap_or_else(|| {
            panic!(
                "no log line with {needle:?} in time; the log:\n{}",
                self.log
            )
        })
    }

    /// Sends SIGHUP and waits for its outcome: the "config reloaded" or "reload failed" line.
    pub fn reload(&mut self) -> String {
        self.signal("HUP");
        let found = self.lines.wait_for(|line| {
            (line.contains("config reloaded") || line.contains("reload failed"))
                .then(|| line.to_owned())
        });
        self.log.clone_from(&self.lines.text);
        found.unwrap_or_else(|| panic!("no reload outcome in time; the log:\n{}", self.log))
    }

    /// Whether the process still runs.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("wait").is_none()
    }

    /// Waits for the process to end (after a signal sent by the test) and returns its status.
    pub fn wait(&mut self) -> ExitStatus {
        let Some(status) = exited(&mut self.child) else {
            panic!("provproxy did not stop:\n{}", self.log);
        };
        self.lines.finish();
        self.log.clone_from(&self.lines.text);
        status
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
