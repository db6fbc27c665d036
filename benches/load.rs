//! Load benchmark (issue 8): provproxy against the upstream directly and against nginx and
//! haproxy doing the same header injection, measured in one run.
//!
//! `cargo bench --bench load` (or `scripts/bench`, which installs wrk, nginx-light and haproxy
//! first) runs the full benchmark; without `--bench` (as `cargo test --all-targets` runs it) it
//! only proves in about a second that the upstream, the proxy config and the session step work.
//!
//! Every proxy and the upstream run as separate processes pinned to CPU 1 so that their CPU time
//! and peak RSS can be read from /proc; the load generator (wrk, one thread) is pinned to CPU 0.
//! Targets are measured round-robin, several rounds, so that drift hits all of them alike.
//!
//! After the main table (issue 22): the aggregation case (a 1 MiB JSON page, 16 connections,
//! provproxy with trace bodies on against nginx, RSS before and after) and `workers = 1` against
//! `workers = 2` (not pinned, so the second worker can use the second core).
//!
//! Then, when valgrind is installed, the comparison the machine's load cannot move: user-space
//! instructions per proxied request of the whole process, counted by callgrind, for provproxy
//! (the `provproxy` line's config), `provproxy+trace` (the trace line's), nginx and haproxy
//! (`instructions_case`). Wall-clock CPU on a
//! shared VM moves by 10-20 % between runs; one of these counts by up to 4 % (haproxy; nginx 3 %,
//! provproxy under 1 %), the median of three that the report gives by about 1 %.
//!
//! Knobs (environment): BENCH_ROUNDS (3), BENCH_SECONDS (5), BENCH_CONNECTIONS (64),
//! BENCH_SESSIONS (100000), BENCH_OUT (also write the markdown report to this file),
//! BENCH_REDIS_URL (adds the Redis state backend's line; see `redis_state` in `full`),
//! BENCH_ONLY (a comma-separated list of target names, `direct,provproxy,nginx` say: only those
//! run, and the aggregation, workers and sessions cases are skipped; for A/B runs of one change;
//! `instructions` in the list runs the callgrind case too, so `BENCH_ONLY=instructions` runs it
//! alone, without wrk), BENCH_INSTR_REQUESTS (`20,120`: the requests per connection of the
//! callgrind case's two runs, whose difference is divided out), BENCH_INSTR_PAIRS (3: how often
//! the two runs are repeated; the report gives the median and the range), BENCH_CALLGRIND_DIR
//! (keep the callgrind case's files there, `NAME.REQUESTS.PID`, for `callgrind_annotate`).

use std::convert::Infallible;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, SET_COOKIE, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use provproxy::config;
use provproxy::session::Sessions;

#[path = "support/configs.rs"]
mod configs;
use configs::{provproxy_toml, Features, PASSWORD, USER};

/// The allocator the `provproxy` binary uses, so that the idle-sessions figure is the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PATH: &str = "/scim/v2/Users/2819c223-7f76-453a-919d-413861904646";
/// Seals the sessions the Redis case keeps in Redis (the backend requires a key).
const STATE_KEY: &str = "bench-state-key-not-a-secret-0123456789abcdef";
/// What a connector that keeps no cookies still sends: provproxy strips it (the proxy owns the
/// session), nginx and haproxy pass it on, so the upstream does the same work for every target.
const CLIENT_COOKIE: &str = "JSESSIONID=from-client";

/// A typical SCIM user, about 500 bytes.
const USER_JSON: &str = r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"id":"2819c223-7f76-453a-919d-413861904646","externalId":"bjensen","userName":"bjensen@example.com","name":{"formatted":"Ms. Barbara J Jensen III","familyName":"Jensen","givenName":"Barbara"},"displayName":"Babs Jensen","active":true,"emails":[{"value":"bjensen@example.com","type":"work","primary":true}],"groups":[{"value":"e9e30dba-f08f-4109-8486-d5c6a331660a","display":"Tour Guides"}],"meta":{"resourceType":"User","created":"2010-01-23T04:56:22Z","lastModified":"2011-05-13T04:42:34Z","version":"W/\"3694e05e9dff591\""}}"#;
/// The aggregation case: a connector paging through every user gets pages of this size.
const PAGE_PATH: &str = "/scim/v2/Users";
const PAGE_BYTES: usize = 1024 * 1024;
const AGGREGATION_CONNECTIONS: u32 = 16;

/// A SCIM ListResponse of `USER_JSON` resources, padded with spaces to exactly `PAGE_BYTES`.
fn page_json() -> &'static Bytes {
    static PAGE: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    PAGE.get_or_init(|| {
        let head =
            r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:ListResponse"],"Resources":["#;
        let tail = "]}";
        let mut page = String::with_capacity(PAGE_BYTES);
        page.push_str(head);
        let mut count = 0;
        while page.len() + USER_JSON.len() + 1 + tail.len() + 64 <= PAGE_BYTES {
            if count > 0 {
                page.push(',');
            }
            page.push_str(USER_JSON);
            count += 1;
        }
        page.push_str(&format!(
            r#"],"totalResults":{count},"itemsPerPage":{count}}}"#
        ));
        while page.len() < PAGE_BYTES {
            page.push(' ');
        }
        Bytes::from(page)
    })
}

const UNAUTHORIZED_JSON: &str = r#"{"code":401,"description":"The request requires user authentication","reasonPhrase":"Unauthorized"}"#;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("upstream") => run_upstream_process(),
        Some("sessions") => sessions_process(&args),
        Some("subscribe") => subscribe_process(&args),
        _ if args.iter().any(|a| a == "--bench") => full(),
        _ => smoke(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench load: {err}");
            ExitCode::FAILURE
        }
    }
}

type BenchResult<T> = Result<T, String>;

fn err<E: std::fmt::Display>(context: &str) -> impl FnOnce(E) -> String + '_ {
    move |e| format!("{context}: {e}")
}

// ---------------------------------------------------------------------------------------------
// The upstream: keep-alive, ~500-byte JSON, a session cookie when none is sent, 401 without
// Authorization.

async fn upstream_reply(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let authorized = req.headers().contains_key(AUTHORIZATION);
    let has_cookie = req.headers().contains_key(COOKIE);
    let page = req.uri().path() == PAGE_PATH;
    // Requests carry no body here, but a keep-alive connection must not be left with one unread.
    let _ = req.into_body().collect().await;
    let mut response = Response::new(Full::new(match (authorized, page) {
        (true, true) => page_json().clone(),
        (true, false) => Bytes::from_static(USER_JSON.as_bytes()),
        (false, _) => Bytes::from_static(UNAUTHORIZED_JSON.as_bytes()),
    }));
    if !authorized {
        *response.status_mut() = StatusCode::UNAUTHORIZED;
    }
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/scim+json"),
    );
    if !authorized {
        headers.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Bearer realm="bench""#),
        );
    } else if !has_cookie {
        headers.insert(
            SET_COOKIE,
            HeaderValue::from_static("JSESSIONID=5f1d0c2a9be84e51a1c3; Path=/; HttpOnly"),
        );
    }
    Ok(response)
}

async fn serve_upstream(listener: tokio::net::TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(upstream_reply))
                .await;
        });
    }
}

/// `load upstream`: serve on an ephemeral port, print it, run until killed.
fn run_upstream_process() -> BenchResult<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(err("runtime"))?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(err("bind upstream"))?;
        let addr = listener.local_addr().map_err(err("upstream addr"))?;
        println!("{addr}");
        std::io::stdout().flush().map_err(err("stdout"))?;
        serve_upstream(listener).await;
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// Configs.

fn basic_value() -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    format!("Basic {encoded}")
}

fn nginx_conf(dir: &Path, listen: u16, upstream: SocketAddr) -> String {
    let dir = dir.display();
    format!(
        r#"worker_processes 1;
master_process off;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/nginx-body;
    proxy_temp_path {dir}/nginx-proxy;
    upstream target {{ server {upstream}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{listen};
        location /scim/ {{
            proxy_pass http://target;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "{auth}";
        }}
    }}
}}
"#,
        auth = basic_value()
    )
}

fn haproxy_cfg(listen: u16, upstream: SocketAddr) -> String {
    format!(
        r#"global
    nbthread 1
    maxconn 4096
defaults
    mode http
    option http-keep-alive
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend bench
    bind 127.0.0.1:{listen}
    default_backend target
backend target
    http-reuse always
    http-request set-header Authorization "{auth}"
    server up {upstream}
"#,
        auth = basic_value()
    )
}

// ---------------------------------------------------------------------------------------------
// Processes and /proc.

struct Proc {
    child: Child,
    /// SIGTERM rather than SIGKILL, so provproxy drains and closes its trace files.
    graceful: bool,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// utime and stime in clock ticks, all threads.
    fn cpu_ticks(&self) -> BenchResult<CpuTicks> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .map_err(err("read /proc/PID/stat"))?;
        // Fields after the parenthesised command name start at field 3 (state).
        let rest = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .ok_or("malformed /proc/PID/stat")?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| -> BenchResult<u64> {
            fields
                .get(n - 3)
                .and_then(|f| f.parse().ok())
                .ok_or_else(|| format!("no field {n} in /proc/PID/stat"))
        };
        Ok(CpuTicks {
            user: field(14)?,
            kernel: field(15)?,
        })
    }

    fn status_kib(&self, key: &str) -> BenchResult<u64> {
        status_kib(&format!("/proc/{}/status", self.pid()), key)
    }

    /// Sends `signal` (`TERM`, `QUIT`, ...) and waits for the process to end by itself, as it
    /// must for callgrind to write its counts.
    fn stop(&mut self, signal: &str, timeout: Duration) -> BenchResult<()> {
        let pid = self.pid().to_string();
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .map_err(err("run kill"))?;
        if !sent.success() {
            return Err(format!("kill -{signal} {pid} failed"));
        }
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.child.try_wait().map_err(err("wait"))?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "still running {} s after SIG{signal}",
            timeout.as_secs()
        ))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Already stopped (and reaped): its pid may belong to another process by now.
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        if self.graceful {
            let _ = Command::new("kill")
                .args(["-TERM", &self.pid().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn status_kib(path: &str, key: &str) -> BenchResult<u64> {
    let status = std::fs::read_to_string(path).map_err(err("read status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no {key} in {path}"))
}

fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100)
}

/// `taskset -c CPU program ...` when pinning is possible, else the program itself.
fn pinned(cpu: Option<u32>, program: impl AsRef<std::ffi::OsStr>) -> Command {
    match cpu {
        Some(cpu) => {
            let mut command = Command::new("taskset");
            command.args(["-c", &cpu.to_string()]).arg(program);
            command
        }
        None => Command::new(program),
    }
}

/// How a proxy process is started: pinned to a CPU for the wrk figures, or under callgrind for
/// the instruction counts, where start-up is slow (valgrind translates the code as it first runs;
/// provproxy loads the CA roots) but the CPU does not matter.
#[derive(Debug, Clone, Copy)]
enum Launch<'a> {
    Pinned(Option<u32>),
    /// `valgrind --tool=callgrind`, writing its counts to `out` (`%p` there is the pid).
    Callgrind {
        valgrind: &'a str,
        out: &'a Path,
    },
}

impl Launch<'_> {
    fn command(self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        match self {
            Launch::Pinned(cpu) => pinned(cpu, program),
            Launch::Callgrind { valgrind, out } => {
                let mut out_file = std::ffi::OsString::from("--callgrind-out-file=");
                out_file.push(out);
                let mut command = Command::new(valgrind);
                // Quiet: valgrind's banner would land on the bench's terminal (nginx's stderr).
                command
                    .args(["-q", "--tool=callgrind"])
                    .arg(out_file)
                    .arg(program);
                command
            }
        }
    }

    /// How long the process may take until it accepts connections.
    fn startup(self) -> Duration {
        match self {
            Launch::Pinned(_) => Duration::from_secs(10),
            Launch::Callgrind { .. } => Duration::from_secs(120),
        }
    }
}

fn free_port() -> BenchResult<u16> {
    let listener = StdListener::bind("127.0.0.1:0").map_err(err("bind"))?;
    Ok(listener.local_addr().map_err(err("addr"))?.port())
}

fn wait_connectable(addr: SocketAddr, child: &mut Child, timeout: Duration) -> BenchResult<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "process exited before listening on {addr}: {status}"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!(
        "nothing listening on {addr} after {} s",
        timeout.as_secs()
    ))
}

fn start_upstream(cpu: Option<u32>) -> BenchResult<(Proc, SocketAddr)> {
    let exe = std::env::current_exe().map_err(err("current exe"))?;
    let mut child = pinned(cpu, &exe)
        .arg("upstream")
        .stdout(Stdio::piped())
        .spawn()
        .map_err(err("spawn upstream"))?;
    let mut line = String::new();
    if let Some(stdout) = child.stdout.take() {
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(err("read upstream addr"))?;
    }
    let addr = line
        .trim()
        .parse()
        .map_err(|e| format!("upstream printed {line:?}: {e}"))?;
    Ok((
        Proc {
            child,
            graceful: false,
        },
        addr,
    ))
}

/// The proxy binary measured: `BENCH_PROVPROXY` when set (`scripts/bench` sets it to a copy of
/// `cargo build --release`'s binary), else the one `cargo bench` built. The latter links the
/// tokio of the dev-dependencies, whose `test-util` puts every clock reading behind a mutex
/// (about 0.5k instructions per request more than the shipped binary spends).
fn provproxy_binary() -> std::ffi::OsString {
    std::env::var_os("BENCH_PROVPROXY").unwrap_or_else(|| env!("CARGO_BIN_EXE_provproxy").into())
}

/// The release binary, `run --config`; its listen and admin addresses come from its log line
/// (the admin address is `None` without `[admin]`).
fn start_provproxy(
    launch: Launch,
    config_path: &Path,
) -> BenchResult<(Proc, SocketAddr, Option<SocketAddr>)> {
    let mut child = launch
        .command(provproxy_binary())
        .args(["--log-format", "json", "run", "--config"])
        .arg(config_path)
        .env("BENCH_PASSWORD", PASSWORD)
        .env("BENCH_STATE_KEY", STATE_KEY)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .map_err(err("spawn provproxy"))?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let proc = Proc {
        child,
        graceful: true,
    };
    // The log is read on a thread of its own so that a proxy that never logs the line (slow
    // under valgrind, or stuck) ends in a timeout here rather than a hang.
    let (found, listening) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stderr).lines();
        for line in lines.by_ref() {
            let Ok(line) = line else { return };
            if line.contains("provproxy listening") {
                let _ = found.send(listen_addresses(&line));
                break;
            }
        }
        // Keep draining so a chatty log can never block the proxy on a full pipe.
        lines.for_each(drop);
    });
    let timeout = launch.startup();
    let (addr, admin) = match listening.recv_timeout(timeout) {
        Ok(found) => found?,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            return Err(format!(
                "provproxy did not log its listen addresses within {} s",
                timeout.as_secs()
            ))
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            return Err("provproxy did not log its listen addresses".into())
        }
    };
    Ok((proc, addr, admin))
}

/// The listen and admin addresses of provproxy's `provproxy listening` log line.
fn listen_addresses(line: &str) -> BenchResult<(SocketAddr, Option<SocketAddr>)> {
    let value: serde_json::Value = serde_json::from_str(line).map_err(err("provproxy log line"))?;
    let fields = &value["fields"];
    let addr = fields["addr"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .ok_or("provproxy did not log its listen addresses")?;
    let admin = fields["admin"]
        .as_str()
        .and_then(|a| a.strip_prefix("Some(")?.strip_suffix(')')?.parse().ok());
    Ok((addr, admin))
}

fn start_nginx(
    launch: Launch,
    dir: &Path,
    upstream: SocketAddr,
) -> BenchResult<Option<(Proc, SocketAddr)>> {
    let Some(nginx) = find_program(&["nginx", "/usr/sbin/nginx"]) else {
        println!("nginx: not installed (Debian package nginx-light); skipped");
        return Ok(None);
    };
    let port = free_port()?;
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, nginx_conf(dir, port, upstream)).map_err(err("write nginx.conf"))?;
    let child = launch
        .command(&nginx)
        .args(["-p", &dir.display().to_string(), "-c"])
        .arg(&conf)
        .stdout(Stdio::null())
        .spawn()
        .map_err(err("spawn nginx"))?;
    // A Proc first, so that the process is killed if it never listens.
    let mut proc = Proc {
        child,
        graceful: false,
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_connectable(addr, &mut proc.child, launch.startup())?;
    Ok(Some((proc, addr)))
}

fn start_haproxy(
    launch: Launch,
    dir: &Path,
    upstream: SocketAddr,
) -> BenchResult<Option<(Proc, SocketAddr)>> {
    let Some(haproxy) = find_program(&["haproxy", "/usr/sbin/haproxy"]) else {
        println!("haproxy: not installed (Debian package haproxy); skipped");
        return Ok(None);
    };
    let port = free_port()?;
    let cfg = dir.join("haproxy.cfg");
    std::fs::write(&cfg, haproxy_cfg(port, upstream)).map_err(err("write haproxy.cfg"))?;
    let child = launch
        .command(&haproxy)
        .args(["-db", "-f"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(err("spawn haproxy"))?;
    // A Proc first, so that the process is killed if it never listens.
    let mut proc = Proc {
        child,
        graceful: false,
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_connectable(addr, &mut proc.child, launch.startup())?;
    Ok(Some((proc, addr)))
}

fn find_program(candidates: &[&str]) -> Option<String> {
    candidates.iter().find_map(|name| {
        if name.contains('/') {
            Path::new(name).exists().then(|| (*name).to_owned())
        } else {
            let out = Command::new("sh")
                .args(["-c", &format!("command -v {name}")])
                .output()
                .ok()?;
            let path = String::from_utf8(out.stdout).ok()?.trim().to_owned();
            (!path.is_empty()).then_some(path)
        }
    })
}

/// A plain HTTP/1.1 GET with `Connection: close`; enough for the admin endpoint.
fn http_get(addr: SocketAddr, path: &str) -> BenchResult<String> {
    let mut stream = TcpStream::connect(addr).map_err(err("connect"))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(err("write"))?;
    let mut text = String::new();
    stream.read_to_string(&mut text).map_err(err("read"))?;
    Ok(text)
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|line| !line.starts_with('#') && line.contains(name))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

// ---------------------------------------------------------------------------------------------
// The console's live feed (issue 19), read as a browser's EventSource reads it.

/// What a feed reader counted.
#[derive(Debug, Default, Clone, Copy)]
struct FeedCount {
    /// `data:` events: one per record.
    events: u64,
    /// The highest `dropped` figure of the `lagging` events the proxy sent.
    lagging: u64,
}

/// `load subscribe ADMIN_ADDR`, a process of its own pinned with the load generator, as the
/// browser would be on a machine of its own: the proxy's CPU is measured, not the reader's.
struct FeedSubscriber {
    child: Child,
    stdout: BufReader<std::process::ChildStdout>,
}

impl FeedSubscriber {
    /// Starts the reader and returns once the proxy has subscribed it.
    fn start(cpu: Option<u32>, admin: SocketAddr) -> BenchResult<FeedSubscriber> {
        let exe = std::env::current_exe().map_err(err("current exe"))?;
        let mut child = pinned(cpu, &exe)
            .args(["subscribe", &admin.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(err("spawn feed reader"))?;
        let stdout = child.stdout.take().ok_or("feed reader: no stdout")?;
        let mut subscriber = FeedSubscriber {
            child,
            stdout: BufReader::new(stdout),
        };
        let line = subscriber.line()?;
        if line.trim() != "SUBSCRIBED" {
            return Err(format!("feed reader did not subscribe: {line:?}"));
        }
        Ok(subscriber)
    }

    fn line(&mut self) -> BenchResult<String> {
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .map_err(err("read feed reader"))?;
        Ok(line)
    }

    /// Once the proxy has ended the stream (it does at shutdown): what the reader counted.
    fn finish(&mut self) -> BenchResult<FeedCount> {
        let line = self.line()?;
        let _ = self.child.wait();
        let fields: Vec<u64> = line
            .strip_prefix("FEED ")
            .ok_or_else(|| format!("feed reader printed {line:?}"))?
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        match fields[..] {
            [events, lagging] => Ok(FeedCount { events, lagging }),
            _ => Err(format!("feed reader printed {line:?}")),
        }
    }
}

impl Drop for FeedSubscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn subscribe_process(args: &[String]) -> BenchResult<()> {
    let admin: SocketAddr = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .ok_or("usage: load subscribe ADMIN_ADDR")?;
    let count = read_feed(admin, || {
        println!("SUBSCRIBED");
        let _ = std::io::stdout().flush();
    })?;
    println!("FEED {} {}", count.events, count.lagging);
    Ok(())
}

/// Reads the console's feed until the proxy ends it: `GET /api/feed` (no token: the admin
/// listener is on loopback without one), the chunked body decoded, the Server-Sent Events split
/// at their blank lines. `subscribed` runs once the response head has arrived: the proxy
/// subscribes the stream before it answers.
fn read_feed(admin: SocketAddr, subscribed: impl FnOnce()) -> BenchResult<FeedCount> {
    let mut stream = TcpStream::connect(admin).map_err(err("connect to the admin listener"))?;
    write!(
        stream,
        "GET /api/feed HTTP/1.1\r\nHost: {admin}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .map_err(err("write feed request"))?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).map_err(err("feed head"))?;
    if !line.starts_with("HTTP/1.1 200") {
        return Err(format!("feed answered {line:?}"));
    }
    let mut chunked = false;
    loop {
        line.clear();
        if reader.read_line(&mut line).map_err(err("feed head"))? == 0 {
            return Err("feed closed in its head".into());
        }
        if line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        chunked |= lower.starts_with("transfer-encoding:") && lower.contains("chunked");
    }
    if !chunked {
        return Err("feed is not chunked".into());
    }
    subscribed();
    let mut count = FeedCount::default();
    let mut pending = Vec::new();
    // An error or a close without the last chunk ends the count as the stream's end would.
    loop {
        line.clear();
        if !matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
            break;
        }
        let size = line.trim().split(';').next().unwrap_or("");
        let size = usize::from_str_radix(size, 16).map_err(err("chunk size"))?;
        if size == 0 {
            break;
        }
        let start = pending.len();
        pending.resize(start + size + 2, 0);
        if reader.read_exact(&mut pending[start..]).is_err() {
            break;
        }
        pending.truncate(start + size);
        while let Some(end) = pending.windows(2).position(|w| w == b"\n\n") {
            let event = &pending[..end];
            if let Some(data) = event.strip_prefix(b"event: lagging\ndata: ".as_slice()) {
                let text = String::from_utf8_lossy(data);
                let dropped = text
                    .split_once("\"dropped\":")
                    .and_then(|(_, n)| n.trim_end_matches('}').trim().parse().ok())
                    .unwrap_or(0);
                count.lagging = count.lagging.max(dropped);
            } else if event.starts_with(b"data: ") {
                count.events += 1;
            }
            pending.drain(..end + 2);
        }
    }
    Ok(count)
}

// ---------------------------------------------------------------------------------------------
// Load generation (wrk).

const WRK_SCRIPT: &str = r#"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), e.status,
    e.connect + e.read + e.write + e.timeout))
end
"#;

struct Sample {
    requests: u64,
    micros: u64,
    p50_us: u64,
    p99_us: u64,
    bad_status: u64,
    socket_errors: u64,
}

fn wrk(
    cpu: Option<u32>,
    script: &Path,
    url: &str,
    headers: &[String],
    connections: u32,
    seconds: u64,
) -> BenchResult<Sample> {
    let mut command = pinned(cpu, "wrk");
    command.args([
        "-t1",
        &format!("-c{connections}"),
        &format!("-d{seconds}s"),
        "--timeout",
        "5s",
        "-s",
    ]);
    command.arg(script);
    for header in headers {
        command.args(["-H", header]);
    }
    let out = command.arg(url).output().map_err(err("run wrk"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .ok_or_else(|| format!("wrk printed no result: {text}"))?;
    let n: Vec<u64> = line
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    match n[..] {
        [requests, micros, p50_us, p99_us, bad_status, socket_errors] => Ok(Sample {
            requests,
            micros,
            p50_us,
            p99_us,
            bad_status,
            socket_errors,
        }),
        _ => Err(format!("unexpected wrk result line: {line}")),
    }
}

// ---------------------------------------------------------------------------------------------
// The full run.

/// A process's CPU time split by where it was spent: the proxy's own code against the kernel's
/// socket work, which every proxy pays about equally.
#[derive(Debug, Clone, Copy, Default)]
struct CpuTicks {
    user: u64,
    kernel: u64,
}

impl CpuTicks {
    fn total(self) -> u64 {
        self.user + self.kernel
    }
}

impl std::ops::Sub for CpuTicks {
    type Output = CpuTicks;
    fn sub(self, earlier: CpuTicks) -> CpuTicks {
        CpuTicks {
            user: self.user - earlier.user,
            kernel: self.kernel - earlier.kernel,
        }
    }
}

impl std::ops::AddAssign for CpuTicks {
    fn add_assign(&mut self, more: CpuTicks) {
        self.user += more.user;
        self.kernel += more.kernel;
    }
}

struct Target {
    name: &'static str,
    url: String,
    headers: Vec<String>,
    /// None for "direct": there is no proxy process.
    proc: Option<Proc>,
    admin: Option<SocketAddr>,
    /// The console feed's reader, for the target measured with one.
    subscriber: Option<FeedSubscriber>,
    samples: Vec<Sample>,
    cpu_ticks: CpuTicks,
    upstream_ticks: u64,
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}

fn full() -> BenchResult<()> {
    let rounds = env_num("BENCH_ROUNDS", 3);
    let seconds = env_num("BENCH_SECONDS", 5);
    let connections = u32::try_from(env_num("BENCH_CONNECTIONS", 64)).unwrap_or(64);
    let session_count = env_num("BENCH_SESSIONS", 100_000);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pin = cpus >= 2 && find_program(&["taskset"]).is_some();
    let (gen_cpu, server_cpu) = if pin {
        (Some(0), Some(1))
    } else {
        (None, None)
    };
    let only: Option<Vec<String>> = std::env::var("BENCH_ONLY")
        .ok()
        .map(|names| names.split(',').map(|n| n.trim().to_owned()).collect());
    let wanted = |name: &str| {
        only.as_ref()
            .is_none_or(|names| names.iter().any(|n| n == name))
    };
    // `BENCH_ONLY=instructions` runs the callgrind case alone, which needs no wrk.
    let instructions_only = only
        .as_ref()
        .is_some_and(|names| names.iter().all(|n| n == "instructions"));
    if !instructions_only && find_program(&["wrk"]).is_none() {
        return Err("wrk is not installed (Debian package wrk; scripts/bench installs it)".into());
    }
    let instr_requests = instr_requests()?;
    let instr_pairs = env_num("BENCH_INSTR_PAIRS", 3).max(1);
    let mut report = String::new();
    let _ = writeln!(
        report,
        "provproxy binary: {}",
        std::path::Path::new(&provproxy_binary()).display()
    );

    let dir = tempfile::tempdir().map_err(err("temp dir"))?;
    let script = dir.path().join("report.lua");
    std::fs::write(&script, WRK_SCRIPT).map_err(err("write wrk script"))?;
    let trace_dir = dir.path().join("traces");
    let jsonl_dir = dir.path().join("traces-jsonl");

    let (upstream, upstream_addr) = start_upstream(server_cpu)?;

    let cookie = format!("Cookie: {CLIENT_COOKIE}");
    let mut targets = vec![Target {
        name: "direct",
        url: format!("http://{upstream_addr}{PATH}"),
        headers: vec![format!("Authorization: {}", basic_value()), cookie.clone()],
        proc: None,
        admin: None,
        subscriber: None,
        samples: Vec::new(),
        cpu_ticks: CpuTicks::default(),
        upstream_ticks: 0,
    }];
    targets.retain(|t| wanted(t.name));
    let mut add = |name, proc: Proc, addr: SocketAddr, admin, subscriber| {
        targets.push(Target {
            name,
            url: format!("http://{addr}{PATH}"),
            headers: vec![cookie.clone()],
            proc: Some(proc),
            admin,
            subscriber,
            samples: Vec::new(),
            cpu_ticks: CpuTicks::default(),
            upstream_ticks: 0,
        })
    };
    // "provproxy" records nothing. "+admin ring": `[admin]` alone makes the proxy record every
    // exchange in memory for the admin API's ring and the console. "+console feed": the same
    // config with a browser's stand-in reading the console's live feed throughout. "+trace":
    // HAR + JSON lines with bodies; its `[admin]` lets the bench read the writer's counters, and
    // the ring only keeps the record the writer has rendered for the files anyway.
    let with_admin = Features {
        admin: true,
        ..Features::PLAIN
    };
    // Issue 22's Redis case: with `BENCH_REDIS_URL` set, one more line keeps the sessions in
    // that Redis (`[state] backend = "redis"`, sealed with a bench key as the backend requires)
    // and the report gives its CPU per request against `provproxy`'s in-process state.
    let redis_state = std::env::var("BENCH_REDIS_URL").ok().map(|url| {
        format!(
            "backend = \"redis\"\nurl = \"{url}\"\nencryption_key = {{ env = \"BENCH_STATE_KEY\" }}"
        )
    });
    let mut variants = vec![
        ("provproxy", Features::PLAIN, false),
        ("provproxy+admin ring", with_admin, false),
        ("provproxy+console feed", with_admin, true),
        (
            "provproxy+trace",
            Features {
                trace: Some(&trace_dir),
                ..with_admin
            },
            false,
        ),
        // JSON lines with bodies and no live HAR: the HAR is made from them on demand
        // (`provproxy har FILE.jsonl`), as issue 22 suggests; what the live HAR costs is the
        // difference to the line above.
        (
            "provproxy+trace jsonl",
            Features {
                trace: Some(&jsonl_dir),
                har: false,
                ..with_admin
            },
            false,
        ),
    ];
    if let Some(table) = &redis_state {
        let features = Features {
            state: Some(table),
            ..Features::PLAIN
        };
        variants.push(("provproxy+redis state", features, false));
    }
    variants.retain(|(name, _, _)| wanted(name));
    for (index, (name, features, subscribe)) in variants.into_iter().enumerate() {
        let cfg = dir.path().join(format!("provproxy-{index}.toml"));
        std::fs::write(&cfg, provproxy_toml(upstream_addr, features)).map_err(err("write"))?;
        let (proc, addr, admin) = start_provproxy(Launch::Pinned(server_cpu), &cfg)?;
        let subscriber = match (subscribe, admin) {
            (false, _) => None,
            (true, Some(admin)) => Some(FeedSubscriber::start(gen_cpu, admin)?),
            (true, None) => return Err(format!("{name}: no admin listener to subscribe to")),
        };
        add(name, proc, addr, admin, subscriber);
    }
    if wanted("nginx") {
        if let Some((proc, addr)) =
            start_nginx(Launch::Pinned(server_cpu), dir.path(), upstream_addr)?
        {
            add("nginx", proc, addr, None, None);
        }
    }
    if wanted("haproxy") {
        if let Some((proc, addr)) =
            start_haproxy(Launch::Pinned(server_cpu), dir.path(), upstream_addr)?
        {
            add("haproxy", proc, addr, None, None);
        }
    }

    let upstream_proc = upstream;
    let measure = Measure {
        gen_cpu,
        script: &script,
        rounds,
        seconds,
        connections,
        upstream: &upstream_proc,
    };
    if !targets.is_empty() {
        // First in the report as before, but only when there is a wrk table to describe.
        report.insert_str(
            0,
            &format!(
                "{} CPUs; {}; wrk -t1 -c{connections}, {rounds} rounds x {seconds}s per target, \
                 targets alternated within each round; HTTP/1.1 keep-alive on loopback.\n",
                cpus,
                if pin {
                    "load generator pinned to CPU 0, upstream and proxy to CPU 1 (taskset)"
                } else {
                    "NOT pinned (needs 2 CPUs and taskset)"
                }
            ),
        );
        let table = main_table(&measure, &mut targets)?;
        let _ = write!(report, "{table}");
    }
    drop(targets);
    if wanted("instructions") {
        match find_program(&["valgrind"]) {
            Some(valgrind) => {
                let case = instructions_case(
                    &valgrind,
                    dir.path(),
                    upstream_addr,
                    instr_requests,
                    instr_pairs,
                )?;
                let _ = writeln!(report, "\n{case}");
            }
            None => {
                let _ = writeln!(
                    report,
                    "\nInstructions per request: skipped, valgrind is not installed (Debian \
                     package valgrind; scripts/bench installs it)."
                );
            }
        }
    }
    if only.is_some() {
        return finish(&report);
    }

    let aggregation = aggregation_case(&measure, dir.path(), upstream_addr, server_cpu)?;
    let _ = writeln!(report, "\n{aggregation}");
    let scaling = workers_case(&measure, dir.path(), upstream_addr)?;
    let _ = writeln!(report, "\n{scaling}");
    drop(upstream_proc);

    let sessions = measure_sessions(session_count)?;
    let _ = writeln!(report, "\n{sessions}");
    finish(&report)
}

/// The main table: every target's throughput, latency, CPU and RSS under wrk, and the goals of
/// issues 8 and 22 checked against them.
fn main_table(measure: &Measure, targets: &mut [Target]) -> BenchResult<String> {
    let mut report = String::new();
    measure.run(targets)?;

    let tick_us = 1e6 / clock_ticks_per_second() as f64;
    struct Row {
        name: &'static str,
        rps: f64,
        p50: u64,
        p99: u64,
        cpu_us: Option<f64>,
        user_kernel_us: Option<(f64, f64)>,
        upstream_cpu_us: f64,
        rss_kib: Option<u64>,
        errors: u64,
    }
    let mut rows = Vec::new();
    for target in targets.iter() {
        let requests: u64 = target.samples.iter().map(|s| s.requests).sum();
        let micros: u64 = target.samples.iter().map(|s| s.micros).sum();
        let errors: u64 = target
            .samples
            .iter()
            .map(|s| s.bad_status + s.socket_errors)
            .sum();
        let per_req = |ticks: u64| ticks as f64 * tick_us / requests.max(1) as f64;
        rows.push(Row {
            name: target.name,
            rps: requests as f64 / (micros.max(1) as f64 / 1e6),
            p50: median(target.samples.iter().map(|s| s.p50_us).collect()),
            p99: median(target.samples.iter().map(|s| s.p99_us).collect()),
            cpu_us: target
                .proc
                .as_ref()
                .map(|_| per_req(target.cpu_ticks.total())),
            user_kernel_us: target.proc.as_ref().map(|_| {
                (
                    per_req(target.cpu_ticks.user),
                    per_req(target.cpu_ticks.kernel),
                )
            }),
            upstream_cpu_us: per_req(target.upstream_ticks),
            rss_kib: target
                .proc
                .as_ref()
                .map(|p| p.status_kib("VmHWM:"))
                .transpose()?,
            errors,
        });
    }
    let find = |name: &str| rows.iter().find(|r| r.name == name);
    let direct_rps = find("direct").map(|r| r.rps);
    let nginx = find("nginx");
    let _ = writeln!(
        report,
        "\n| target | req/s | p50 µs | p99 µs | proxy CPU µs/req | user + kernel | \
         upstream CPU µs/req | proxy peak RSS MiB | req/s vs direct | CPU vs nginx | \
         p99 vs nginx | errors |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "–".into(),
    };
    for row in &rows {
        let _ = writeln!(
            report,
            "| {} | {:.0} | {} | {} | {} | {} | {:.1} | {} | {} | {} | {} | {} |",
            row.name,
            row.rps,
            row.p50,
            row.p99,
            row.cpu_us.map_or("–".into(), |c| format!("{c:.1}")),
            row.user_kernel_us
                .map_or("–".into(), |(u, k)| format!("{u:.1} + {k:.1}")),
            row.upstream_cpu_us,
            row.rss_kib
                .map_or("–".into(), |k| format!("{:.1}", k as f64 / 1024.0)),
            ratio(Some(row.rps), direct_rps),
            ratio(row.cpu_us, nginx.and_then(|n| n.cpu_us)),
            ratio(Some(row.p99 as f64), nginx.map(|n| n.p99 as f64)),
            row.errors,
        );
    }
    if let Some(admin) = targets
        .iter()
        .find(|t| t.name == "provproxy+trace")
        .and_then(|t| t.admin)
    {
        let metrics = http_get(admin, "/metrics")?;
        let _ = writeln!(
            report,
            "\nprovproxy+trace: {} records written, {} dropped (writer behind), {} write errors.",
            metric(&metrics, "trace_records_written"),
            metric(&metrics, "trace_records_dropped"),
            metric(&metrics, "trace_write_errors"),
        );
    }
    let cpu: Vec<(&'static str, Option<f64>)> = rows.iter().map(|r| (r.name, r.cpu_us)).collect();
    let console = console_feed_report(targets, &cpu)?;
    let _ = write!(report, "{console}");

    // The targets of issue 8.
    let _ = writeln!(report);
    let plain = find("provproxy");
    let traced = find("provproxy+trace");
    let ring = find("provproxy+admin ring");
    let ring_ratio = ring
        .and_then(|r| r.cpu_us)
        .zip(plain.and_then(|p| p.cpu_us))
        .map(|(r, p)| r / p);
    let _ = writeln!(
        report,
        "- admin ring on / records off CPU (no goal; what `[admin]` alone costs): {}",
        ring_ratio.map_or("not measured".into(), |r| format!("{r:.2}x"))
    );
    if let Some((redis, local)) = find("provproxy+redis state")
        .and_then(|r| r.cpu_us)
        .zip(plain.and_then(|p| p.cpu_us))
    {
        let _ = writeln!(
            report,
            "- Redis state backend: {redis:.1} µs/req against {local:.1} in-process: +{:.1} µs \
             per request ({:.2}x)",
            redis - local,
            redis / local
        );
    }
    let mut check = |what: &str, value: Option<f64>, limit: Option<f64>, unit: &str| {
        let line = match (value, limit) {
            (Some(v), Some(l)) => format!(
                "- {what}: {v:.2}{unit} vs limit {l:.2}{unit}: {}",
                if v <= l { "met" } else { "NOT met" }
            ),
            _ => format!("- {what}: not measured"),
        };
        let _ = writeln!(report, "{line}");
    };
    // Issue 22's goals.
    check(
        "CPU per request ≤ 1.0 × nginx",
        plain.and_then(|r| r.cpu_us),
        nginx.and_then(|n| n.cpu_us),
        " µs",
    );
    // CPU of one line over another's.
    let over = |line: &str, base: Option<&Row>| {
        find(line)
            .and_then(|t| t.cpu_us)
            .zip(base.and_then(|b| b.cpu_us))
            .map(|(t, b)| t / b)
    };
    check(
        "trace on / trace off CPU ≤ 1.3",
        over("provproxy+trace", plain),
        Some(1.3),
        "x",
    );
    check(
        "trace on (JSON lines, HAR on demand) / trace off CPU ≤ 1.3",
        over("provproxy+trace jsonl", plain),
        Some(1.3),
        "x",
    );
    // The trace lines have `[admin]` too (for the writer's counters): the same proxy without
    // `[trace]` is the admin ring line, which records every exchange in memory as the proxy
    // the issue first measured did.
    check(
        "trace on / the same config without [trace] (admin ring) CPU ≤ 1.3",
        over("provproxy+trace", ring),
        Some(1.3),
        "x",
    );
    check(
        "trace on (JSON lines, HAR on demand) / the same config without [trace] CPU ≤ 1.3",
        over("provproxy+trace jsonl", ring),
        Some(1.3),
        "x",
    );
    check(
        "CPU per request ≤ 0.8 × nginx",
        plain.and_then(|r| r.cpu_us),
        nginx.and_then(|n| n.cpu_us).map(|c| 0.8 * c),
        " µs",
    );
    check(
        "tracing adds ≤ 15 % CPU",
        traced.and_then(|r| r.cpu_us),
        plain.and_then(|r| r.cpu_us).map(|c| 1.15 * c),
        " µs",
    );
    check(
        "p99 ≤ nginx p99",
        plain.map(|r| r.p99 as f64),
        nginx.map(|n| n.p99 as f64),
        " µs",
    );
    check(
        "RSS under load ≤ 32 MiB (provproxy)",
        plain.and_then(|r| r.rss_kib).map(|k| k as f64 / 1024.0),
        Some(32.0),
        " MiB",
    );
    check(
        "RSS under load ≤ 32 MiB (provproxy+trace)",
        traced.and_then(|r| r.rss_kib).map(|k| k as f64 / 1024.0),
        Some(32.0),
        " MiB",
    );
    Ok(report)
}

/// Prints the report, and writes it to `BENCH_OUT` when that is set.
fn finish(report: &str) -> BenchResult<()> {
    print!("{report}");
    if let Ok(path) = std::env::var("BENCH_OUT") {
        std::fs::write(&path, report).map_err(err("write BENCH_OUT"))?;
    }
    Ok(())
}

/// Issue 19's figure: the proxy's CPU per request with the console's live feed read throughout,
/// against the same config without a reader; and whether the reader got every record. The
/// proxy is stopped here (SIGTERM ends the live stream), so this runs after the table's figures.
fn console_feed_report(
    targets: &mut [Target],
    cpu: &[(&'static str, Option<f64>)],
) -> BenchResult<String> {
    let Some(target) = targets.iter_mut().find(|t| t.subscriber.is_some()) else {
        return Ok(String::new());
    };
    let metrics = match target.admin {
        Some(admin) => http_get(admin, "/metrics")?,
        None => String::new(),
    };
    let published = metric(&metrics, "trace_records_written");
    let writer_dropped = metric(&metrics, "trace_records_dropped");
    let feed_dropped = metric(&metrics, "feed_records_dropped");
    drop(target.proc.take());
    let count = match target.subscriber.as_mut() {
        Some(subscriber) => subscriber.finish()?,
        None => FeedCount::default(),
    };
    let cpu_of = |name: &str| cpu.iter().find(|(n, _)| *n == name).and_then(|(_, c)| *c);
    let with = cpu_of("provproxy+console feed");
    let without = cpu_of("provproxy+admin ring");
    let fmt = |c: Option<f64>| c.map_or("–".into(), |c| format!("{c:.1}"));
    let ratio = with
        .zip(without)
        .filter(|(_, w)| *w > 0.0)
        .map_or("–".into(), |(a, b)| format!("{:.2}x", a / b));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nConsole feed (issue 19): provproxy+console feed had one reader of `GET /api/feed` on \
         its admin listener for the whole run (a plain HTTP/1.1 client parsing the chunked \
         Server-Sent Events as a browser's EventSource does, in a process pinned with wrk to the \
         load generator's CPU). Proxy CPU: {} µs/req with the reader, {} µs/req without \
         (provproxy+admin ring, same config): {ratio}.",
        fmt(with),
        fmt(without),
    );
    let _ = writeln!(
        out,
        "The reader received {} records as `data:` events of the {published} the writer \
         published ({writer_dropped} more dropped before the feed, the writer being behind); \
         {feed_dropped} were dropped for the reader (its queue full), {} of them announced to it \
         by `lagging` events; {} unaccounted for.",
        count.events,
        count.lagging,
        published
            .saturating_sub(feed_dropped)
            .saturating_sub(count.events),
    );
    Ok(out)
}

/// One measurement setup: the same rounds, load generator and upstream for every table.
struct Measure<'a> {
    gen_cpu: Option<u32>,
    script: &'a Path,
    rounds: u64,
    seconds: u64,
    connections: u32,
    upstream: &'a Proc,
}

impl Measure<'_> {
    /// Warms each target up, then measures them round-robin, rotating the order each round.
    fn run(&self, targets: &mut [Target]) -> BenchResult<()> {
        for target in targets.iter() {
            let warm = wrk(
                self.gen_cpu,
                self.script,
                &target.url,
                &target.headers,
                self.connections,
                1,
            )?;
            if warm.requests == 0 || warm.bad_status > 0 {
                return Err(format!(
                    "{}: warm-up got {} requests, {} non-2xx",
                    target.name, warm.requests, warm.bad_status
                ));
            }
        }
        for round in 0..self.rounds {
            // Rotate the order each round as well, so no target always runs right after another.
            let n = targets.len();
            for i in 0..n {
                let target = &mut targets[(i + round as usize) % n];
                let cpu0 = target.proc.as_ref().map(Proc::cpu_ticks).transpose()?;
                let up0 = self.upstream.cpu_ticks()?.total();
                let sample = wrk(
                    self.gen_cpu,
                    self.script,
                    &target.url,
                    &target.headers,
                    self.connections,
                    self.seconds,
                )?;
                if let (Some(proc), Some(before)) = (&target.proc, cpu0) {
                    target.cpu_ticks += proc.cpu_ticks()? - before;
                }
                target.upstream_ticks += self.upstream.cpu_ticks()?.total() - up0;
                eprintln!(
                    "round {}: {:<22} {:>8.0} req/s p50 {:>5} us p99 {:>5} us",
                    round + 1,
                    target.name,
                    sample.requests as f64 / (sample.micros as f64 / 1e6),
                    sample.p50_us,
                    sample.p99_us
                );
                target.samples.push(sample);
            }
        }
        Ok(())
    }
}

impl Target {
    fn proxy(name: &'static str, url: String, proc: Proc) -> Target {
        Target {
            name,
            url,
            headers: vec![format!("Cookie: {CLIENT_COOKIE}")],
            proc: Some(proc),
            admin: None,
            subscriber: None,
            samples: Vec::new(),
            cpu_ticks: CpuTicks::default(),
            upstream_ticks: 0,
        }
    }

    fn rps(&self) -> f64 {
        let requests: u64 = self.samples.iter().map(|s| s.requests).sum();
        let micros: u64 = self.samples.iter().map(|s| s.micros).sum();
        requests as f64 / (micros.max(1) as f64 / 1e6)
    }

    fn errors(&self) -> u64 {
        self.samples
            .iter()
            .map(|s| s.bad_status + s.socket_errors)
            .sum()
    }
}

/// The aggregation case: 1 MiB pages over 16 connections, provproxy with trace bodies captured
/// (`max_body` 64 KiB) against nginx; RSS after the warm-up, after the rounds, and the peak.
fn aggregation_case(
    base: &Measure,
    dir: &Path,
    upstream: SocketAddr,
    server_cpu: Option<u32>,
) -> BenchResult<String> {
    let measure = Measure {
        connections: AGGREGATION_CONNECTIONS,
        ..*base
    };
    let trace_cfg = dir.join("provproxy-aggregation.toml");
    let trace_dir = dir.join("traces-aggregation");
    let features = Features {
        trace: Some(&trace_dir),
        ..Features::PLAIN
    };
    std::fs::write(&trace_cfg, provproxy_toml(upstream, features)).map_err(err("write"))?;
    let mut targets = Vec::new();
    let (proc, addr, _) = start_provproxy(Launch::Pinned(server_cpu), &trace_cfg)?;
    targets.push(Target::proxy(
        "provproxy+trace",
        format!("http://{addr}{PAGE_PATH}"),
        proc,
    ));
    if let Some((proc, addr)) = start_nginx(Launch::Pinned(server_cpu), dir, upstream)? {
        targets.push(Target::proxy(
            "nginx",
            format!("http://{addr}{PAGE_PATH}"),
            proc,
        ));
    }
    // Warm-up happens in `run`; "before" is taken after one short pass so it is the settled
    // process, not the freshly started one.
    for target in &targets {
        wrk(
            measure.gen_cpu,
            measure.script,
            &target.url,
            &target.headers,
            measure.connections,
            1,
        )?;
    }
    let rss = |t: &Target, key| t.proc.as_ref().map(|p| p.status_kib(key)).transpose();
    let before: Vec<Option<u64>> = targets
        .iter()
        .map(|t| rss(t, "VmRSS:"))
        .collect::<BenchResult<_>>()?;
    measure.run(&mut targets)?;
    let mib = |k: Option<u64>| k.map_or("–".into(), |k| format!("{:.1}", k as f64 / 1024.0));
    let nginx_rps = targets.iter().find(|t| t.name == "nginx").map(Target::rps);
    let mut out = format!(
        "Aggregation: GET of a {} KiB SCIM ListResponse, wrk -c{}, trace bodies on (max_body \
         64 KiB) for provproxy.\n\n\
         | target | req/s | MiB/s | req/s vs nginx | RSS after warm-up MiB | RSS after MiB | \
         peak RSS MiB | errors |\n|---|---:|---:|---:|---:|---:|---:|---:|\n",
        PAGE_BYTES / 1024,
        measure.connections
    );
    let mut ratio = None;
    for (target, before) in targets.iter().zip(before) {
        let rps = target.rps();
        let vs = nginx_rps.filter(|n| *n > 0.0).map(|n| rps / n);
        if target.name != "nginx" {
            ratio = vs;
        }
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.0} | {} | {} | {} | {} | {} |",
            target.name,
            rps,
            rps * PAGE_BYTES as f64 / (1024.0 * 1024.0),
            vs.map_or("–".into(), |v| format!("{v:.2}x")),
            mib(before),
            mib(rss(target, "VmRSS:")?),
            mib(rss(target, "VmHWM:")?),
            target.errors(),
        );
    }
    let _ = writeln!(
        out,
        "\n- aggregation throughput ≥ 0.9 × nginx: {}",
        match ratio {
            Some(r) if r >= 0.9 => format!("{r:.2}x: met"),
            Some(r) => format!("{r:.2}x: NOT met"),
            None => "not measured (no nginx)".into(),
        }
    );
    Ok(out)
}

/// `workers = 1` against `workers = 2`, neither pinned: on this machine the second worker only
/// helps as far as wrk and the upstream leave the cores free, which is what the figure shows.
fn workers_case(measure: &Measure, dir: &Path, upstream: SocketAddr) -> BenchResult<String> {
    let mut targets = Vec::new();
    for (name, workers) in [("workers = 1", 1), ("workers = 2", 2)] {
        let cfg = dir.join(format!("provproxy-workers-{workers}.toml"));
        let features = Features {
            workers,
            ..Features::PLAIN
        };
        std::fs::write(&cfg, provproxy_toml(upstream, features)).map_err(err("write"))?;
        let (proc, addr, _) = start_provproxy(Launch::Pinned(None), &cfg)?;
        targets.push(Target::proxy(name, format!("http://{addr}{PATH}"), proc));
    }
    measure.run(&mut targets)?;
    let tick_us = 1e6 / clock_ticks_per_second() as f64;
    let mut out = format!(
        "Workers (provproxy not pinned; wrk -c{}):\n\n\
         | target | req/s | CPU µs/req | errors |\n|---|---:|---:|---:|\n",
        measure.connections
    );
    for target in &targets {
        let requests: u64 = target.samples.iter().map(|s| s.requests).sum();
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.1} | {} |",
            target.name,
            target.rps(),
            target.cpu_ticks.total() as f64 * tick_us / requests.max(1) as f64,
            target.errors(),
        );
    }
    if let [one, two] = &targets[..] {
        let _ = writeln!(
            out,
            "\nworkers = 2 / workers = 1: {:.2}x req/s",
            two.rps() / one.rps().max(1.0)
        );
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Instructions per request (callgrind): the comparison the shared VM's noise cannot move.

/// Keep-alive connections the callgrind case drives, as wrk's `-c64` in the main table.
const INSTR_CONNECTIONS: u64 = 64;

/// `BENCH_INSTR_REQUESTS=FEW,MANY` (20,120): the requests per connection of the two runs.
fn instr_requests() -> BenchResult<(u64, u64)> {
    let Ok(text) = std::env::var("BENCH_INSTR_REQUESTS") else {
        return Ok((20, 120));
    };
    let numbers: Vec<u64> = text
        .split(',')
        .map(|n| n.trim().parse())
        .collect::<Result<_, _>>()
        .map_err(err("BENCH_INSTR_REQUESTS"))?;
    match numbers[..] {
        [few, many] if many > few => Ok((few, many)),
        _ => Err(format!(
            "BENCH_INSTR_REQUESTS={text:?}: want FEW,MANY requests per connection, MANY > FEW"
        )),
    }
}

/// provproxy (the `provproxy` line's config), `provproxy+trace` (the trace line's), nginx and
/// haproxy, each run twice under callgrind
/// with `few` and then `many` requests on each of `INSTR_CONNECTIONS` connections: the
/// difference of the two counts over the requests between them is the instructions per
/// request, start-up, warm-up and shutdown cancelling out. One process each: nginx runs with
/// `master_process off`, haproxy with `-db` and `nbthread 1`.
///
/// The pair of runs is repeated `pairs` times and the median taken. A count is not the same in
/// every run: how the 64 connections' requests interleave decides the state of the allocator's
/// free lists, and glibc's `_int_malloc` in nginx then costs 750 or 1,000 instructions per
/// request for a whole run (measured: 19.1k against 19.5k). haproxy's figure spreads most
/// (31.1k to 32.5k over 15 pairs; not analysed), provproxy's least (0.4 %). The report's range
/// shows how far they moved.
fn instructions_case(
    valgrind: &str,
    dir: &Path,
    upstream: SocketAddr,
    (few, many): (u64, u64),
    pairs: u64,
) -> BenchResult<String> {
    // BENCH_CALLGRIND_DIR keeps the files, for `callgrind_annotate`.
    let out_dir = std::env::var_os("BENCH_CALLGRIND_DIR")
        .map_or_else(|| dir.join("callgrind"), std::path::PathBuf::from);
    std::fs::create_dir_all(&out_dir).map_err(err("create callgrind dir"))?;
    let cfg = dir.join("provproxy-instructions.toml");
    std::fs::write(&cfg, provproxy_toml(upstream, Features::PLAIN)).map_err(err("write"))?;
    // The `provproxy+trace` line's config (HAR + JSON lines with bodies, `[admin]`): the
    // writer's threads are the process's too, so the trace's cost shows against the line above
    // it, user space only (its file writes are kernel time).
    let traces = dir.join("traces-instructions");
    let traced_cfg = dir.join("provproxy-instructions-trace.toml");
    let traced = Features {
        trace: Some(&traces),
        admin: true,
        ..Features::PLAIN
    };
    std::fs::write(&traced_cfg, provproxy_toml(upstream, traced)).map_err(err("write"))?;
    let requests = INSTR_CONNECTIONS * (many - few);
    // Per target: the figure of each pair, sorted.
    let mut rows: Vec<(&str, Vec<f64>)> = Vec::new();
    'targets: for name in ["provproxy", "provproxy+trace", "nginx", "haproxy"] {
        let mut figures = Vec::new();
        for _ in 0..pairs {
            let mut counts = [0u64; 2];
            for (run, per) in [few, many].into_iter().enumerate() {
                let out = out_dir.join(format!("{name}.{per}.%p"));
                let launch = Launch::Callgrind {
                    valgrind,
                    out: &out,
                };
                let (mut proc, addr, _) = match name {
                    "provproxy" => start_provproxy(launch, &cfg)?,
                    "provproxy+trace" => {
                        // Each run starts with no trace files, as the run it is paired with.
                        let _ = std::fs::remove_dir_all(&traces);
                        start_provproxy(launch, &traced_cfg)?
                    }
                    "nginx" => match start_nginx(launch, dir, upstream)? {
                        Some((proc, addr)) => (proc, addr, None),
                        None => continue 'targets,
                    },
                    _ => match start_haproxy(launch, dir, upstream)? {
                        Some((proc, addr)) => (proc, addr, None),
                        None => continue 'targets,
                    },
                };
                // Each stopped as it stops gracefully: callgrind writes its file at the exit.
                let signal = match name {
                    "provproxy" | "provproxy+trace" => "TERM",
                    "nginx" => "QUIT",
                    _ => "USR1",
                };
                let context = |e: String| format!("{name} under callgrind: {e}");
                drive(addr, per).map_err(context)?;
                proc.stop(signal, Duration::from_secs(120))
                    .map_err(context)?;
                // One file: the threads are in it, and no child is traced (none is started).
                let file = out_dir.join(format!("{name}.{per}.{}", proc.pid()));
                counts[run] = callgrind_count(&file).map_err(context)?;
            }
            let figure = per_request(counts[0], counts[1], requests);
            eprintln!(
                "instructions: {name:<9} {} and {} instructions with {few} and {many} requests \
                 x {INSTR_CONNECTIONS} connections: {figure:.0} per request",
                counts[0], counts[1]
            );
            figures.push(figure);
        }
        figures.sort_by(f64::total_cmp);
        rows.push((name, figures));
    }
    let median = |figures: &[f64]| figures.get(figures.len() / 2).copied().unwrap_or(0.0);
    let nginx = rows
        .iter()
        .find(|(name, _)| *name == "nginx")
        .map(|(_, figures)| median(figures));
    let repeated = match pairs {
        1 => "One such pair.".to_owned(),
        _ => format!("The median of {pairs} such pairs, and their range."),
    };
    let mut out = format!(
        "Instructions per request (callgrind): user-space instructions of the whole proxy \
         process (every thread), the difference of two runs with {few} and {many} requests on \
         each of {INSTR_CONNECTIONS} keep-alive connections divided by the {requests} requests \
         between them, so start-up, warm-up and shutdown cancel out; the kernel's socket work is \
         not counted. {repeated} Unlike CPU time under wrk, it does not move with the machine's \
         load.\n\n\
         | target | instructions/req (k) | range (k) | vs nginx |\n|---|---:|---:|---:|\n"
    );
    for (name, figures) in &rows {
        let instructions = median(figures);
        let k = |i: Option<&f64>| i.map_or("–".into(), |i| format!("{:.1}", i / 1000.0));
        let _ = writeln!(
            out,
            "| {name} | {:.1} | {}–{} | {} |",
            instructions / 1000.0,
            k(figures.first()),
            k(figures.last()),
            nginx
                .filter(|n| *n > 0.0)
                .map_or("–".into(), |n| format!("{:.2}x", instructions / n)),
        );
    }
    Ok(out)
}

/// Instructions per request from the counts of the runs with fewer and more requests.
fn per_request(few_count: u64, many_count: u64, requests_between: u64) -> f64 {
    (many_count as f64 - few_count as f64) / requests_between.max(1) as f64
}

/// The instructions callgrind counted in its output file `file`.
fn callgrind_count(file: &Path) -> BenchResult<u64> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("read callgrind's {}: {e}", file.display()))?;
    callgrind_totals(&text).ok_or_else(|| format!("no `totals:` line in {}", file.display()))
}

/// The instructions (Ir) of a callgrind output file: its `totals:` lines, one per part of the
/// dump, which is what callgrind reports as collected. The `summary:` line is not added: it
/// counts (nearly) the same instructions again.
fn callgrind_totals(text: &str) -> Option<u64> {
    let mut totals = text
        .lines()
        .filter_map(|line| line.strip_prefix("totals:"))
        .map(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .peekable();
    totals.peek()?;
    totals.sum()
}

/// `per` requests, one at a time, on each of `INSTR_CONNECTIONS` keep-alive connections, as wrk
/// sends them to the proxies (`Host`, the client's cookie), after one warm-up request on every
/// connection: by then the connections, the upstream pool and the session exist.
fn drive(addr: SocketAddr, per: u64) -> BenchResult<()> {
    let request = format!("GET {PATH} HTTP/1.1\r\nHost: {addr}\r\nCookie: {CLIENT_COOKIE}\r\n\r\n");
    let request = request.as_bytes();
    let warmed = std::sync::Barrier::new(INSTR_CONNECTIONS as usize);
    std::thread::scope(|scope| {
        let clients: Vec<_> = (0..INSTR_CONNECTIONS)
            .map(|_| {
                scope.spawn(|| {
                    let warm = Client::connect(addr).and_then(|mut client| {
                        client.exchange(request)?;
                        Ok(client)
                    });
                    // Every thread reaches the barrier, failed or not, so none waits forever.
                    warmed.wait();
                    let mut client = warm?;
                    for _ in 0..per {
                        client.exchange(request)?;
                    }
                    Ok(())
                })
            })
            .collect();
        clients.into_iter().try_for_each(|client| {
            client
                .join()
                .unwrap_or_else(|_| Err("a client thread panicked".into()))
        })
    })
}

/// One keep-alive connection of the callgrind case's load.
struct Client {
    reader: BufReader<TcpStream>,
    line: String,
    body: Vec<u8>,
}

impl Client {
    fn connect(addr: SocketAddr) -> BenchResult<Client> {
        let stream = TcpStream::connect(addr).map_err(err("connect"))?;
        let _ = stream.set_nodelay(true);
        // A stuck proxy ends the run with an error instead of a hang; valgrind is slow, not
        // this slow.
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(err("set read timeout"))?;
        Ok(Client {
            reader: BufReader::new(stream),
            line: String::new(),
            body: Vec::new(),
        })
    }

    /// Sends `request` and reads the whole response, which must be a 200 with Content-Length
    /// (the upstream always sends one).
    fn exchange(&mut self, request: &[u8]) -> BenchResult<()> {
        self.reader
            .get_mut()
            .write_all(request)
            .map_err(err("write request"))?;
        self.line.clear();
        self.reader
            .read_line(&mut self.line)
            .map_err(err("read status line"))?;
        if self.line.split_whitespace().nth(1) != Some("200") {
            return Err(format!("answered {:?}", self.line.trim_end()));
        }
        let mut length = None;
        loop {
            self.line.clear();
            let read = self
                .reader
                .read_line(&mut self.line)
                .map_err(err("read response head"))?;
            if read == 0 {
                return Err("connection closed in the response head".into());
            }
            if self.line == "\r\n" {
                break;
            }
            if let Some((name, value)) = self.line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse::<usize>().ok();
                }
            }
        }
        let length = length.ok_or("response without Content-Length")?;
        self.body.resize(length, 0);
        self.reader
            .read_exact(&mut self.body)
            .map_err(err("read response body"))
    }
}

// ---------------------------------------------------------------------------------------------
// Idle sessions in memory.

const SESSIONS_TOML: &str = r#"
[server]
listen = "127.0.0.1:0"

[[routes]]
name = "scim"
prefix = "/scim/"
upstream = "http://127.0.0.1:9"

[routes.session]
cookies = true
key = "header:X-Tenant"
idle_timeout = "15m"
max_sessions = 1000000
"#;

/// Opens `count` sessions, each holding one JSESSIONID as a target would set it, and leaves them
/// idle. Returns how many the store holds.
async fn open_sessions(count: u64) -> BenchResult<(Sessions, usize)> {
    let plan = config::load_str(SESSIONS_TOML, "sessions.toml", Path::new("."), &|_| None)
        .map_err(err("sessions config"))?;
    let route = &plan.routes[0];
    let sessions =
        Sessions::open(&plan.routes, &plan.state, false).map_err(err("open sessions"))?;
    let mut request = HeaderMap::new();
    let mut response = HeaderMap::new();
    for i in 0..count {
        let tenant = HeaderValue::from_str(&format!("tenant-{i:06}")).map_err(err("header"))?;
        request.insert("x-tenant", tenant);
        let key = sessions
            .key_for(&route.name, None, &request)
            .map_err(err("session key"))?
            .ok_or("route keeps no sessions")?;
        let lease = sessions
            .lease(&route.name, key)
            .await
            .map_err(err("lease"))?;
        let _ = lease.cookie_header(PATH);
        let cookie = format!("JSESSIONID={i:032x}; Path=/; HttpOnly");
        response.insert(
            SET_COOKIE,
            HeaderValue::from_str(&cookie).map_err(err("cookie"))?,
        );
        lease.absorb(PATH, &response);
    }
    let held = usize::try_from(sessions.stats().live).unwrap_or(usize::MAX);
    Ok((sessions, held))
}

/// `load sessions N`: a process of its own, so its RSS is the sessions' and nothing else's.
fn sessions_process(args: &[String]) -> BenchResult<()> {
    let count: u64 = args
        .get(1)
        .and_then(|n| n.parse().ok())
        .ok_or("usage: load sessions N")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(err("runtime"))?;
    let before = status_kib("/proc/self/status", "VmRSS:")?;
    let (_sessions, held) = runtime.block_on(open_sessions(count))?;
    let after = status_kib("/proc/self/status", "VmRSS:")?;
    println!("SESSIONS {held} {before} {after}");
    Ok(())
}

fn measure_sessions(count: u64) -> BenchResult<String> {
    let exe = std::env::current_exe().map_err(err("current exe"))?;
    let out = Command::new(exe)
        .args(["sessions", &count.to_string()])
        .output()
        .map_err(err("run sessions step"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<u64> = text
        .lines()
        .find_map(|l| l.strip_prefix("SESSIONS "))
        .ok_or_else(|| format!("sessions step printed nothing: {text}"))?
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    let [held, before, after] = fields[..] else {
        return Err(format!("sessions step: unexpected output {text}"));
    };
    let mib = |kib: u64| kib as f64 / 1024.0;
    let grown = after.saturating_sub(before);
    Ok(format!(
        "Idle sessions: {held} sessions (key = \"header:X-Tenant\", one JSESSIONID each) through \
         provproxy::session::Sessions: process RSS {:.1} MiB ({:.1} MiB for the sessions, {:.0} \
         bytes each); limit 200 MiB: {}",
        mib(after),
        mib(grown),
        grown as f64 * 1024.0 / held.max(1) as f64,
        if mib(after) <= 200.0 {
            "met"
        } else {
            "NOT met"
        }
    ))
}

// ---------------------------------------------------------------------------------------------
// Test mode: a second's worth of proof that the pieces work.

fn smoke() -> BenchResult<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(err("runtime"))?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(err("bind"))?;
        let upstream = listener.local_addr().map_err(err("addr"))?;
        tokio::spawn(serve_upstream(listener));
        let trace_dir = tempfile::tempdir().map_err(err("temp dir"))?;
        let variants = [
            Features::PLAIN,
            Features {
                trace: Some(trace_dir.path()),
                ..Features::PLAIN
            },
            Features {
                admin: true,
                ..Features::PLAIN
            },
        ];
        for features in variants {
            let toml = provproxy_toml(upstream, features);
            let env = |name: &str| (name == "BENCH_PASSWORD").then(|| PASSWORD.to_owned());
            let plan = config::load_str(&toml, "bench.toml", Path::new("."), &env)
                .map_err(err("bench config"))?;
            let proxy = provproxy::start(plan).await.map_err(err("start proxy"))?;
            let addr = proxy.addr();
            let reader = match proxy.admin_addr() {
                Some(admin) => Some(feed_reader(admin).await?),
                None => None,
            };
            let (status, cookie_set) = get_once(addr).await?;
            if status != StatusCode::OK || cookie_set {
                return Err(format!(
                    "through provproxy: {status}, Set-Cookie passed to client: {cookie_set}"
                ));
            }
            // The aggregation case's page passes whole, trace bodies on or off.
            let page = send(addr, None, PAGE_PATH)
                .await?
                .into_body()
                .collect()
                .await
                .map_err(err("page body"))?
                .to_bytes();
            if page != *page_json() {
                return Err(format!(
                    "the {} byte page came back as {}",
                    PAGE_BYTES,
                    page.len()
                ));
            }
            if let Some(admin) = proxy.admin_addr() {
                records_published(admin, 2).await?;
            }
            proxy.shutdown().await;
            if let Some(reader) = reader {
                let count = tokio::task::spawn_blocking(move || reader.join())
                    .await
                    .map_err(err("feed reader"))?
                    .map_err(|_| "feed reader panicked".to_string())??;
                if count.events != 2 || count.lagging != 0 {
                    return Err(format!(
                        "the feed reader got {count:?} for the 2 proxied requests"
                    ));
                }
            }
        }
        let direct_unauthorized = send(upstream, None, PATH).await?.status();
        if direct_unauthorized != StatusCode::UNAUTHORIZED {
            return Err(format!(
                "upstream without Authorization answered {direct_unauthorized}"
            ));
        }
        let (_sessions, held) = open_sessions(1000).await?;
        if held != 1000 {
            return Err(format!("expected 1000 sessions, store holds {held}"));
        }
        instructions_arithmetic()?;
        println!("bench load: smoke run ok (run `cargo bench --bench load` for figures)");
        Ok(())
    })
}

/// The callgrind case's reading and arithmetic, checked without valgrind: a file's `totals:`
/// line counted once (not with its `summary:` line, which valgrind writes first and which can
/// be a few hundred lower), and the difference of two runs divided out.
fn instructions_arithmetic() -> BenchResult<()> {
    let file = "# callgrind format\nversion: 1\ncreator: callgrind-3.19.0\npid: 4242\n\
                cmd:  haproxy -db -f h.cfg\npart: 1\n\npositions: line\nevents: Ir\n\
                summary: 235684180\n\n\nfn=(458) fma\n49 5\n\ntotals: 235684381\n";
    let count = callgrind_totals(file);
    if count != Some(235_684_381) {
        return Err(format!("callgrind file read as {count:?} instructions"));
    }
    if callgrind_totals("summary: 5\n").is_some() {
        return Err("a callgrind file without `totals:` read as a count".into());
    }
    let per = per_request(1_000_000, 1_000_000 + 6_400 * 18_800, 6_400);
    if per != 18_800.0 {
        return Err(format!("18.8k instructions per request computed as {per}"));
    }
    Ok(())
}

/// A feed reader on a thread of its own, returned once the proxy has subscribed it.
async fn feed_reader(
    admin: SocketAddr,
) -> BenchResult<std::thread::JoinHandle<BenchResult<FeedCount>>> {
    let (subscribed, on_subscribed) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        read_feed(admin, move || {
            let _ = subscribed.send(());
        })
    });
    let waited =
        tokio::task::spawn_blocking(move || on_subscribed.recv_timeout(Duration::from_secs(10)))
            .await
            .map_err(err("feed reader"))?;
    match waited {
        Ok(()) => Ok(reader),
        Err(_) => match reader.join() {
            Ok(Err(e)) => Err(e),
            _ => Err("the feed reader did not subscribe within 10 s".into()),
        },
    }
}

/// Polls the admin metrics until the writer has published `count` records (10 s at most).
async fn records_published(admin: SocketAddr, count: u64) -> BenchResult<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = tokio::task::spawn_blocking(move || http_get(admin, "/metrics"))
            .await
            .map_err(err("metrics"))??;
        if metric(&metrics, "trace_records_written") >= count {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("fewer than {count} records published after 10 s"));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn send(addr: SocketAddr, auth: Option<&str>, path: &str) -> BenchResult<Response<Incoming>> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(err("connect"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(err("handshake"))?;
    tokio::spawn(conn);
    let mut request = Request::get(path)
        .header("host", addr.to_string())
        .header(COOKIE, CLIENT_COOKIE);
    if let Some(auth) = auth {
        request = request.header(AUTHORIZATION, auth);
    }
    let request = request
        .body(Full::new(Bytes::new()))
        .map_err(err("request"))?;
    sender.send_request(request).await.map_err(err("send"))
}

async fn get_once(addr: SocketAddr) -> BenchResult<(StatusCode, bool)> {
    let response = send(addr, None, PATH).await?;
    let status = response.status();
    let cookie_set = response.headers().contains_key(SET_COOKIE);
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(err("body"))?
        .to_bytes();
    if status == StatusCode::OK && body != USER_JSON.as_bytes() {
        return Err("the proxy changed the body".into());
    }
    Ok((status, cookie_set))
}
