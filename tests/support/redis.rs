//! A real `redis-server` for the replica tests: on a free loopback port, with no persistence,
//! killed when dropped. `scripts/test` installs the Debian package when it is missing.

// Each test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Long enough for a busy machine, short enough that a hang fails the test.
const PATIENCE: Duration = Duration::from_secs(20);
/// How often a starting server is asked whether it answers: std cannot wait on a port.
const POLL_EVERY: Duration = Duration::from_millis(10);

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
}

impl RedisServer {
    /// Starts `redis-server` on a free loopback port and waits until it answers `PING`.
    pub fn start() -> RedisServer {
        let port = {
            let probe = TcpListener::bind("127.0.0.1:0").expect("bind a probe socket");
            probe.local_addr().expect("probe address").port()
        };
        let mut server = RedisServer { child: None, port };
        server.restart();
        server
    }

    /// `redis://127.0.0.1:PORT/0`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills it with SIGKILL (a crash: nothing is saved) and waits until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it (again) on the same port, empty, and waits until it answers.
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot start redis-server ({err}): install the Debian package redis-server \
                     (scripts/test does when it is missing)"
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + PATIENCE;
        while self.command(&["PING"]).as_deref() != Some("+PONG") {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING"
            );
            std::thread::sleep(POLL_EVERY);
        }
    }

    /// One command; its reply in RESP (the first line for simple replies), `None` when the
    /// server does not answer.
    pub fn command(&self, args: &[&str]) -> Option<String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut request = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            request.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
        }
        stream.write_all(&request).ok()?;
        read_reply(&mut stream)
    }

    /// Every key and every value in the database (strings, hash fields and values), as text:
    /// what an operator (or an attacker) reading Redis sees.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        let keys = self.command(&["KEYS", "*"]).unwrap_or_default();
        for key in keys.lines().filter(|line| !line.starts_with(['*', '$'])) {
            out.push_str(key);
            out.push('\n');
            let kind = self.command(&["TYPE", key]).unwrap_or_default();
            let value = match kind.trim() {
                "+hash" => self.command(&["HGETALL", key]),
                "+string" => self.command(&["GET", key]),
                other => Some(format!("(a {other})")),
            };
            out.push_str(&value.unwrap_or_default());
            out.push('\n');
        }
        out
    }

    /// Calls of each command since the start (`INFO commandstats`), e.g. `evalsha`.
    pub fn calls(&self, command: &str) -> u64 {
        let stats = self.command(&["INFO", "commandstats"]).unwrap_or_default();
        stats
            .lines()
            .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
            .and_then(|rest| rest.split(',').next()?.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads one RESP reply and renders it as text lines (arrays flattened, bulk strings as-is).
fn read_reply(stream: &mut TcpStream) -> Option<String> {
    let line = read_line(stream)?;
    match line.as_bytes().first()? {
        b'$' => {
            let len: i64 = line[1..].parse().ok()?;
            if len < 0 {
                return Some("(nil)".into());
            }
            let mut data = vec![0u8; usize::try_from(len).ok()? + 2];
            stream.read_exact(&mut data).ok()?;
            data.truncate(data.len() - 2);
            Some(String::from_utf8_lossy(&data).into_owned())
        }
        b'*' => {
            let len: i64 = line[1..].parse().ok()?;
            let mut out = Vec::new();
            for _ in 0..len.max(0) {
                out.push(read_reply(stream)?);
            }
            Some(out.join("\n"))
        }
        _ => Some(line),
    }
}

fn read_line(stream: &mut TcpStream) -> Option<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        stream.read_exact(&mut byte).ok()?;
        if byte[0] == b'\n' {
            break;
        }
        line.push(byte[0]);
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line).ok()
}
