//! The real `provproxy` binary as a child process: started on a config file, found listening
//! from its log line, stopped with SIGTERM; its stderr collected line by line as it comes.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Long enough for a debug build on a busy machine, short enough that a hang fails the test.
pub const PATIENCE: Duration = Duration::from_secs(20);
/// How often a condition with a deadline is looked at again: std can neither wait for a child
/// process with a timeout nor be told when a file changes, so those are polled.
const POLL_EVERY: Duration = Duration::from_millis(10);

pub fn provproxy() -> Command {
    Command::new(env!("CARGO_BIN_EXE_provproxy"))
}

/// A running `provproxy run`.
pub struct Instance {
    child: Child,
    lines: mpsc::Receiver<String>,
    reader: Option<JoinHandle<()>>,
    stderr: String,
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
        let stderr = child.stderr.take().expect("stderr");
        let (send, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let mut instance = Instance {
            child,
            lines,
            reader: Some(reader),
            stderr: String::new(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = instance.lines.recv_timeout(left) else {
                let _ = instance.child.kill();
                panic!("provproxy did not report listening:\n{}", instance.stderr);
            };
            instance.stderr.push_str(&line);
            instance.stderr.push('\n');
            if let Some(addr) = listening_addr(&line) {
                instance.addr = addr;
                return instance;
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops it with SIGTERM and returns its exit status and everything it wrote on stderr.
    pub fn stop(mut self) -> (ExitStatus, String) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success());
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for provproxy") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("provproxy did not stop after SIGTERM:\n{}", self.stderr);
            }
            std::thread::sleep(POLL_EVERY);
        };
        if let Some(reader) = self.reader.take() {
            reader.join().expect("stderr reader");
        }
        self.stderr
            .extend(self.lines.try_iter().map(|line| line + "\n"));
        (status, std::mem::take(&mut self.stderr))
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // A failed assertion must not leave the process behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
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
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the command did not end in time");
        }
        std::thread::sleep(POLL_EVERY);
    };
    (
        status,
        out.join().expect("stdout reader"),
        err.join().expect("stderr reader"),
    )
}

/// The proxy's address from `... provproxy listening addr=127.0.0.1:P admin=...`.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    if !line.contains("provproxy listening") {
        return None;
    }
    let rest = &line[line.find(" addr=")? + " addr=".len()..];
    rest.split(' ').next()?.parse().ok()
}

/// Polls `condition` until it holds, failing the test after [`PATIENCE`].
pub fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(POLL_EVERY);
    }
}
