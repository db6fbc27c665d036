//! The provproxy config both benchmarks measure (`benches/load.rs`, `benches/allocs.rs`), so
//! that their figures are of the same proxy: Basic injection + session jar + challenge expand,
//! with the trace files and the admin listener as separate switches.

use std::net::SocketAddr;
use std::path::Path;

/// The injected credentials; the password reaches the proxy as `{ env = "BENCH_PASSWORD" }`.
pub const USER: &str = "svc_bench";
pub const PASSWORD: &str = "bench-password-not-a-secret";

/// What is switched on besides injection + jar + challenge.
#[derive(Debug, Clone, Copy)]
pub struct Features<'a> {
    /// `[trace]` JSON lines with bodies (`max_body` 64 KiB), written into this directory as
    /// `bench.jsonl`, and with `har` a HAR file as `bench.har` too.
    pub trace: Option<&'a Path>,
    pub har: bool,
    /// `[admin]` on loopback: the exchange records' ring buffer (and the console's feed) exist,
    /// so every exchange is recorded in memory even with no trace files.
    pub admin: bool,
    pub workers: u32,
    /// The body of a `[state]` table (where sessions and tokens live); `None` keeps them in the
    /// process, as the default file backend does when no route persists.
    pub state: Option<&'a str>,
}

impl Features<'_> {
    /// Nothing but the proxy's own work: no trace, no admin listener, so no records at all.
    pub const PLAIN: Features<'static> = Features {
        trace: None,
        har: true,
        admin: false,
        workers: 1,
        state: None,
    };
}

pub fn provproxy_toml(upstream: SocketAddr, features: Features<'_>) -> String {
    let trace = match features.trace {
        Some(dir) => format!(
            "[trace]\n{har}jsonl = \"{jsonl}\"\nbodies = true\nmax_body = \"64KiB\"\n\
             rotate_size = \"256MiB\"\n",
            har = if features.har {
                format!("har = \"{}\"\n", dir.join("bench.har").display())
            } else {
                String::new()
            },
            jsonl = dir.join("bench.jsonl").display(),
        ),
        None => String::new(),
    };
    let admin = if features.admin {
        "[admin]\nlisten = \"127.0.0.1:0\"\n"
    } else {
        ""
    };
    let state = match features.state {
        Some(table) => format!("[state]\n{table}\n"),
        None => String::new(),
    };
    let workers = features.workers;
    format!(
        r#"[server]
listen = "127.0.0.1:0"
workers = {workers}

{admin}
{state}
[log]
access = "off"                     # as nginx's and haproxy's are in the load bench

{trace}
[[routes]]
name = "scim"
prefix = "/scim/"
upstream = "http://{upstream}"

[routes.auth]
kind = "basic"
username = "{USER}"
password = {{ env = "BENCH_PASSWORD" }}

[routes.session]
cookies = true
key = "route"
serialize = false
client_cookies = "strip"

[routes.challenge]
mode = "expand"
add = ['Basic realm="scim"']
split = true
"#
    )
}
