//! `provproxy demo`: the built-in demo targets and the field cases, run directly (they fail)
//! and through the proxy (they work). The targets are also used by the tests and benches.

pub mod basic_target;
pub mod client;
pub mod oauth_target;
pub mod server;
pub mod session_locked;
pub mod single_scheme;

use std::io::Write;
use std::path::Path;

use http::StatusCode;
use sha2::{Digest, Sha256};

use crate::config::{self, ConfigError};
use crate::server::{Running, StartupError};
use client::{ClientError, CookielessClient, Reply};

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot start a demo target: {0}")]
    Target(#[from] std::io::Error),
    #[error("demo config is invalid: {0}")]
    Config(#[from] ConfigError),
    #[error("cannot start the proxy: {0}")]
    Proxy(#[from] StartupError),
    #[error("{0}")]
    Client(#[from] ClientError),
}

/// Writes the demo's story and counts the steps that did not behave as the field case says.
pub struct Narrator<'a> {
    out: &'a mut dyn Write,
    failures: usize,
    steps: usize,
}

impl<'a> Narrator<'a> {
    pub fn new(out: &'a mut dyn Write) -> Self {
        Narrator {
            out,
            failures: 0,
            steps: 0,
        }
    }

    pub fn heading(&mut self, title: &str, story: &str) {
        let _ = writeln!(self.out, "\n== {title} ==");
        for line in story.lines() {
            let _ = writeln!(self.out, "   {line}");
        }
    }

    pub fn note(&mut self, text: &str) {
        let _ = writeln!(self.out, "   {text}");
    }

    /// One exchange: what was sent where, what came back, and whether that is what we expect.
    pub fn step(&mut self, via: &str, what: &str, reply: &Reply, expected: StatusCode) -> bool {
        self.steps += 1;
        let ok = reply.status == expected;
        if !ok {
            self.failures += 1;
        }
        let mark = if ok { "ok " } else { "FAIL" };
        let _ = writeln!(
            self.out,
            "   [{mark}] {via:<7} {what:<44} -> {} (expected {})",
            reply.status,
            expected.as_u16()
        );
        ok
    }

    /// A check that is not a single exchange (a count on the target, say).
    pub fn check(&mut self, what: &str, ok: bool) -> bool {
        self.steps += 1;
        if !ok {
            self.failures += 1;
        }
        let mark = if ok { "ok " } else { "FAIL" };
        let _ = writeln!(self.out, "   [{mark}] {what}");
        ok
    }

    pub fn failures(&self) -> usize {
        self.failures
    }
}

/// A fresh secret per run, so nothing in the demo can depend on (or leak) a fixed one.
pub fn demo_secret(label: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    let digest = Sha256::digest(format!("{label}:{nanos}:{}", std::process::id()));
    format!("demo-{}", &hex(&digest)[..20])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Starts the proxy from config text, resolving `{ env = "NAME" }` from `secrets`.
pub async fn start_proxy(toml: &str, secrets: &[(&str, &str)]) -> Result<Running, DemoError> {
    let env = |name: &str| {
        secrets
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| (*value).to_owned())
    };
    let plan = config::load_str(toml, "demo.toml", Path::new("."), &env)?;
    Ok(crate::server::start(plan).await?)
}

/// Runs every scenario; `Ok(true)` when each behaved as the field case says.
pub async fn run(out: &mut dyn Write) -> Result<bool, DemoError> {
    let mut narrator = Narrator::new(out);
    let _ = writeln!(
        narrator.out,
        "provproxy demo: each field case is run against a built-in target on 127.0.0.1,\n\
         first directly (as the connector does today), then through provproxy."
    );
    stored_credentials(&mut narrator).await?;
    single_scheme_challenge(&mut narrator).await?;
    let steps = narrator.steps;
    let failures = narrator.failures();
    let _ = writeln!(
        narrator.out,
        "\n{} checks, {} as expected, {} not",
        steps,
        steps - failures,
        failures
    );
    Ok(failures == 0)
}

/// The proxy holds the credential; the connector sends none.
async fn stored_credentials(narrator: &mut Narrator<'_>) -> Result<(), DemoError> {
    narrator.heading(
        "stored credentials",
        "A REST target requires HTTP Basic. The connector has no credential configured;\n\
         provproxy injects the stored one (from an environment variable, never logged).",
    );
    let password = demo_secret("basic");
    let (target, stats) = basic_target::spawn("svc_provision", &password).await?;
    let proxy = start_proxy(
        &format!(
            r#"
[server]
listen = "127.0.0.1:0"

[[routes]]
name = "rest"
prefix = "/rest/"
strip_prefix = true
upstream = "{}"

[routes.auth]
kind = "basic"
username = "svc_provision"
password = {{ env = "DEMO_PASSWORD" }}
"#,
            target.url()
        ),
        &[("DEMO_PASSWORD", &password)],
    )
    .await?;
    let client = CookielessClient::default();
    let direct = client
        .get(&format!("{}/api/users", target.url()), &[])
        .await?;
    narrator.step(
        "direct",
        "GET /api/users (no credentials)",
        &direct,
        StatusCode::UNAUTHORIZED,
    );
    let proxied = client
        .get(&format!("http://{}/rest/api/users", proxy.addr()), &[])
        .await?;
    narrator.step(
        "proxy",
        "GET /rest/api/users (no credentials)",
        &proxied,
        StatusCode::OK,
    );
    narrator.check(
        "the target saw exactly one authorised request",
        stats.authorised.load(std::sync::atomic::Ordering::Relaxed) == 1,
    );
    proxy.shutdown().await;
    target.stop().await;
    Ok(())
}

/// ServiceNow advertising only Bearer: a challenge-driven client never sends Basic.
async fn single_scheme_challenge(narrator: &mut Narrator<'_>) -> Result<(), DemoError> {
    narrator.heading(
        "single advertised scheme (ServiceNow API Access Policy)",
        "The target accepts Basic but its 401 offers only `Bearer`. A Java connector (Apache\n\
         HttpClient: no credentials until challenged, first challenge of a line only) never\n\
         sends Basic. provproxy expands the challenge with `Basic`, one scheme per line.",
    );
    let password = demo_secret("servicenow");
    let (target, stats) = single_scheme::spawn("okta.provisioning", &password).await?;
    let proxy = start_proxy(
        &format!(
            r#"
[server]
listen = "127.0.0.1:0"

[[routes]]
name = "servicenow"
prefix = "/"
upstream = "{}"

[routes.challenge]
mode = "expand"
add = ['Basic realm="servicenow"']
split = true
"#,
            target.url()
        ),
        &[],
    )
    .await?;
    let client = CookielessClient::default();
    let path = "/api/now/table/sys_user";
    let direct = client
        .challenge_driven_get(
            &format!("{}{path}", target.url()),
            "okta.provisioning",
            &password,
        )
        .await?;
    narrator.step(
        "direct",
        "GET sys_user (challenge-driven client)",
        &direct,
        StatusCode::UNAUTHORIZED,
    );
    let proxied = client
        .challenge_driven_get(
            &format!("http://{}{path}", proxy.addr()),
            "okta.provisioning",
            &password,
        )
        .await?;
    narrator.step(
        "proxy",
        "GET sys_user (challenge-driven client)",
        &proxied,
        StatusCode::OK,
    );
    narrator.check(
        "through the proxy the client answered the expanded challenge with Basic",
        stats.authorized() == 1,
    );
    proxy.shutdown().await;
    target.stop().await;
    Ok(())
}
