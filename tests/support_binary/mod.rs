//! The real `provproxy` binary as a child process, for what is visible from outside: started
//! from config text written to a temporary directory, its addresses read from its JSON log, and
//! killed when dropped, so a failing test leaves no process behind.

// Each test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Long enough for a debug build on a busy machine, short enough that a hang fails the test.
const PATIENCE: Duration = Duration::from_secs(20);

pub struct Binary {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// What it wrote to stderr so far.
    pub stderr: String,
    pub config: PathBuf,
    _dir: tempfile::TempDir,
}

/// How to start it.
#[derive(Default)]
pub struct Options<'a> {
    /// `{ env = "..." }` secrets.
    pub env: &'a [(&'a str, &'a str)],
    /// Run as this user and group id (the test must be root to use it).
    pub uid: Option<u32>,
}

impl Binary {
    /// `provproxy --log-format json run --config provproxy.toml` in a fresh directory.
    pub fn spawn(toml: &str, options: Options<'_>) -> Binary {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("provproxy.toml");
        std::fs::write(&config, toml).expect("write config");
        let mut command = Command::new(env!("CARGO_BIN_EXE_provproxy"));
        command
            .args(["--log-format", "json", "run", "--config"])
            .arg(&config)
            .envs(options.env.iter().copied())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(uid) = options.uid {
            // The other user must be able to read the config in its directory.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
                .expect("open the directory to the other user");
            command.uid(uid).gid(uid);
        }
        let mut child = command.spawn().expect("start provproxy");
        let stderr = child.stderr.take().expect("stderr");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Binary {
            child,
            lines,
            stderr: String::new(),
            config,
            _dir: dir,
        }
    }

    /// Starts it and waits until it listens; returns it with the proxy's and admin's addresses.
    pub fn start(toml: &str, options: Options<'_>) -> (Binary, SocketAddr, Option<SocketAddr>) {
        let mut binary = Binary::spawn(toml, options);
        loop {
            let Ok(line) = binary.next_line() else {
                panic!("provproxy never listened:\n{}", binary.stderr);
            };
            let Ok(line) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if line["fields"]["message"] != "provproxy listening" {
                continue;
            }
            let addr = line["fields"]["addr"]
                .as_str()
                .and_then(|addr| addr.parse().ok())
                .expect("the proxy's address");
            let admin = line["fields"]["admin"]
                .as_str()
                .and_then(|admin| admin.strip_prefix("Some(")?.strip_suffix(')')?.parse().ok());
            return (binary, addr, admin);
        }
    }

    /// The next stderr line; `Disconnected` once stderr closed (the process is ending).
    fn next_line(&mut self) -> Result<String, mpsc::RecvTimeoutError> {
        let line = self.lines.recv_timeout(PATIENCE)?;
        self.stderr.push_str(&line);
        self.stderr.push('\n');
        Ok(line)
    }

    /// For a binary expected to refuse to start: waits for it to exit by itself (its stderr
    /// closes when it does) and returns its status and stderr.
    pub fn exit(mut self) -> (ExitStatus, String) {
        loop {
            match self.next_line() {
                Ok(_) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("provproxy is still running:\n{}", self.stderr)
                }
            }
        }
        let status = self.child.wait().expect("wait for provproxy");
        (status, std::mem::take(&mut self.stderr))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
