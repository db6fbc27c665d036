//! The real `provproxy` binary as a child process, in the one harness every test of the binary
//! uses: started on a config file (or config text in a fresh directory), found listening from
//! its log line (text or JSON), stopped with SIGTERM, killed when dropped so a failing test
//! leaves no process behind; its stderr read line by line as it comes ([`Log`]).

// Each test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Long enough for a debug build on a busy machine, short enough that a hang fails the test.
pub const PATIENCE: Duration = Duration::from_secs(20);
/// How often a condition with a deadline is looked at again: std can neither wait for a child
/// process with a timeout nor be told when a file changes, so those are polled.
pub const POLL_EVERY: Duration = Duration::from_millis(10);

pub fn provproxy() -> Command {
    Command::new(env!("CARGO_BIN_EXE_provproxy"))
}

/// A child's stderr, read on a thread of its own line by line as it comes, and kept.
pub struct Log {
    lines: mpsc::Receiver<String>,
    reader: Option<JoinHandle<()>>,
    /// Every line read so far.
    pub text: String,
}

impl Log {
    /// A log of nothing, to put in the place of one moved out.
    fn empty() -> Log {
        Log {
            lines: mpsc::channel().1,
            reader: None,
            text: String::new(),
        }
    }

    /// Takes the child's stderr, which must be piped.
    pub fn capture(child: &mut Child) -> Log {
        let stderr = child.stderr.take().expect("stderr piped");
        let (send, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Log {
            lines,
            reader: Some(reader),
            text: String::new(),
        }
    }

    /// The next line, waiting until `deadline` at the most; `Disconnected` once stderr closed
    /// (the process is ending).
    pub fn next_line(&mut self, deadline: Instant) -> Result<String, RecvTimeoutError> {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = self.lines.recv_timeout(left)?;
        self.text.push_str(&line);
        self.text.push('\n');
        Ok(line)
    }

    /// Reads lines until `wanted` finds what it looks for in one; `None` when stderr closed or
    /// [`PATIENCE`] ran out first. Lines passed over are kept in `text`.
    pub fn wait_for<T>(&mut self, mut wanted: impl FnMut(&str) -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let line = self.next_line(deadline).ok()?;
            if let Some(found) = wanted(&line) {
                return Some(found);
            }
        }
    }

    /// Once the process has exited: joins the reader and keeps the lines not read yet.
    pub fn finish(&mut self) {
        if let Some(reader) = self.reader.take() {
            reader.join().expect("stderr reader");
        }
        self.text
            .extend(self.lines.try_iter().map(|line| line + "\n"));
    }
}

/// The proxy's and the admin listener's addresses from the "provproxy listening" line, in the
/// text format (`addr=127.0.0.1:P admin=Some(127.0.0.1:Q)`) or the JSON one.
pub fn listening(line: &str) -> Option<(SocketAddr, Option<SocketAddr>)> {
    if !line.contains("provproxy listening") {
        return None;
    }
    if let Ok(json) = serde_json::from_str::<serde_json::Value>(line) {
        let fields = &json["fields"];
        let addr = fields["addr"].as_str()?.parse().ok()?;
        let admin = fields["admin"]
            .as_str()
            .and_then(|admin| admin.strip_prefix("Some(")?.strip_suffix(')')?.parse().ok());
        return Some((addr, admin));
    }
    let after = |marker: &str| -> Option<SocketAddr> {
        let rest = &line[line.find(marker)? + marker.len()..];
        rest.split([' ', ')']).next()?.parse().ok()
    };
    Some((after(" addr=")?, after(" admin=Some(")))
}

/// Sends `kill -SIGNAL` to the process.
pub fn signal(pid: u32, signal: &str) {
    let sent = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -{signal} {pid}");
}

/// Waits for the child to exit with a deadline; `None` when it is still running after
/// [`PATIENCE`].
pub fn exited(child: &mut Child) -> Option<ExitStatus> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().expect("wait for provproxy") {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(POLL_EVERY);
    }
}

/// A running `provproxy run` with the default log format.
pub struct Instance {
    child: Child,
    log: Log,
    pub addr: SocketAddr,
}

impl Instance {
    /// Starts `provproxy run --config CONFIG` with `env` and waits until it listens. `RUST_LOG`
    /// and `NO_COLOR` are left unset: the defaults are what is tested.
    pub fn start(config: &Path, env: &[(&str, &str)]) -> Instance {
        let mut child = provproxy()
            .args(["run", "--config"])
            .arg(config)
            .envs(env.iter().copied())
            .env_remove("RUST_LOG")
            .env_remove("NO_COLOR")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start provproxy run");
        let mut log = Log::capture(&mut child);
        let Some((addr, _)) = log.wait_for(listening) else {
            let _ = child.kill();
            panic!("provproxy did not report listening:\n{}", log.text);
        };
        Instance { child, log, addr }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops it with SIGTERM and returns its exit status and everything it wrote on stderr.
    pub fn stop(mut self) -> (ExitStatus, String) {
        signal(self.pid(), "TERM");
        let Some(status) = exited(&mut self.child) else {
            let _ = self.child.kill();
            panic!("provproxy did not stop after SIGTERM:\n{}", self.log.text);
        };
        self.log.finish();
        (status, std::mem::take(&mut self.log.text))
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // A failed assertion must not leave the process behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `provproxy --log-format json run` on config text written to a fresh directory, for what is
/// visible from outside.
pub struct Binary {
    child: Child,
    log: Log,
    /// What it wrote to stderr so far.
    pub stderr: String,
    pub config: PathBuf,
    _dir: tempfile::TempDir,
}

/// How to start a [`Binary`].
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
        let mut command = provproxy();
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
        let log = Log::capture(&mut child);
        Binary {
            child,
            log,
            stderr: String::new(),
            config,
            _dir: dir,
        }
    }

    /// Starts it and waits until it listens; returns it with the proxy's and admin's addresses.
    pub fn start(toml: &str, options: Options<'_>) -> (Binary, SocketAddr, Option<SocketAddr>) {
        let mut binary = Binary::spawn(toml, options);
        let found = binary.log.wait_for(listening);
        binary.stderr.clone_from(&binary.log.text);
        let Some((addr, admin)) = found else {
            panic!("provproxy never listened:\n{}", binary.stderr);
        };
        (binary, addr, admin)
    }

    /// For a binary expected to refuse to start: waits for it to exit by itself (its stderr
    /// closes when it does) and returns its status and stderr.
    pub fn exit(mut self) -> (ExitStatus, String) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match self.log.next_line(deadline) {
                Ok(_) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("provproxy is still running:\n{}", self.log.text)
                }
            }
        }
        let status = self.child.wait().expect("wait for provproxy");
        (status, std::mem::take(&mut self.log.text))
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

/// `provproxy run --config FILE` with the text log format, from async tests: its stdout kept for
/// the end, its exit awaited; killed when dropped before that.
pub struct Process {
    /// Taken by [`Process::wait`].
    child: Option<Child>,
    log: Log,
}

impl Process {
    pub fn run(config: &Path, env: &[(&str, &str)], extra_args: &[&str]) -> Process {
        let mut child = provproxy()
            .args(["run", "--config"])
            .arg(config)
            .args(extra_args)
            .envs(env.iter().copied())
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start provproxy run");
        let log = Log::capture(&mut child);
        Process {
            child: Some(child),
            log,
        }
    }

    /// The proxy's and the admin listener's addresses, from the "listening" log line.
    pub fn wait_listening(&mut self) -> (SocketAddr, Option<SocketAddr>) {
        self.log
            .wait_for(listening)
            .unwrap_or_else(|| panic!("provproxy never listened:\n{}", self.log.text))
    }

    /// Sends SIGTERM and waits for the exit; returns the status, stdout and stderr.
    pub async fn terminate(self) -> (ExitStatus, String, String) {
        if let Some(child) = &self.child {
            signal(child.id(), "TERM");
        }
        self.wait().await
    }

    /// Waits for the process to exit by itself; returns the status, stdout and stderr.
    pub async fn wait(mut self) -> (ExitStatus, String, String) {
        let mut child = self.child.take().expect("not waited for yet");
        let mut log = std::mem::replace(&mut self.log, Log::empty());
        let waited = tokio::task::spawn_blocking(move || {
            let status = child.wait().expect("wait for provproxy");
            let mut stdout = String::new();
            if let Some(mut out) = child.stdout.take() {
                out.read_to_string(&mut stdout).expect("read stdout");
            }
            log.finish();
            (status, stdout, log.text)
        });
        tokio::time::timeout(PATIENCE, waited)
            .await
            .expect("provproxy exited")
            .expect("waiting task")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs a command to its end with a deadline: exit status, stdout, stderr.
pub fn output(command: &mut Command) -> (ExitStatus, String, String) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start command");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let Some(status) = exited(&mut child) else {
        let _ = child.kill();
        panic!("the command did not end in time");
    };
    (
        status,
        out.join().expect("stdout reader"),
        err.join().expect("stderr reader"),
    )
}

/// Polls `condition` until it holds, failing the test after [`PATIENCE`].
pub fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(POLL_EVERY);
    }
}
