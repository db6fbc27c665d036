//! `provproxy demo`: the built-in demo targets and the field cases, run directly (they fail)
//! and through the proxy (they work). The targets are also used by the tests and benches.

pub mod basic_target;
pub mod client;
pub mod console;
pub mod csrf_target;
pub mod login_session;
pub mod oauth_target;
pub mod server;
pub mod session_locked;
pub mod single_scheme;

use std::io::Write;
use std::path::{Path, PathBuf};

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
    #[error("cannot use the trace directory {}: {source}", .path.display())]
    TraceDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("a demo target answered something unexpected: {0}")]
    Unexpected(String),
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

/// Runs every scenario, writing each one's traces under `trace_dir`; `Ok(true)` when each
/// behaved as the field case says.
pub async fn run(out: &mut dyn Write, trace_dir: &Path) -> Result<bool, DemoError> {
    std::fs::create_dir_all(trace_dir).map_err(|source| DemoError::TraceDir {
        path: trace_dir.to_owned(),
        source,
    })?;
    let mut narrator = Narrator::new(out);
    let _ = writeln!(
        narrator.out,
        "provproxy demo: each field case runs against a built-in target on 127.0.0.1, first as\n\
         the connector does it today (through a provproxy route that only records), then through\n\
         provproxy configured for the case. Traces: {}",
        trace_dir.display()
    );
    let traces = Traces { dir: trace_dir };
    stored_credentials(&mut narrator, &traces).await?;
    session_locked(&mut narrator, &traces).await?;
    single_scheme_challenge(&mut narrator, &traces).await?;
    scoped_token(&mut narrator, &traces).await?;
    csrf_token(&mut narrator, &traces).await?;
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

/// Where a scenario's traces go: `<scenario>-as-is.har` and `<scenario>-fixed.har`, with their
/// JSON-lines twins.
struct Traces<'a> {
    dir: &'a Path,
}

impl Traces<'_> {
    fn trace_table(&self, scenario: &str, stage: &str) -> String {
        let base = self.dir.join(format!("{scenario}-{stage}"));
        format!(
            "[trace]\nhar = {:?}\njsonl = {:?}\n",
            base.with_extension("har").display().to_string(),
            base.with_extension("jsonl").display().to_string()
        )
    }

    fn har(&self, scenario: &str, stage: &str) -> PathBuf {
        self.dir.join(format!("{scenario}-{stage}.har"))
    }
}

/// A provproxy that forwards everything unchanged (not even a doubled `Bearer` is fixed) and
/// records it: the connector as it is today.
async fn recorder(traces: &Traces<'_>, scenario: &str, target: &str) -> Result<Running, DemoError> {
    start_proxy(
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n{}\n[[routes]]\nname = \"as-is\"\nprefix = \"/\"\nupstream = \"{target}\"\n\n[routes.auth]\nkind = \"none\"\nnormalize = false\n",
            traces.trace_table(scenario, "as-is")
        ),
        &[],
    )
    .await
}

/// The provproxy that fixes the case: `route` is the route's own tables (auth, session, ...).
async fn fixer(
    traces: &Traces<'_>,
    scenario: &str,
    target: &str,
    route: &str,
    secrets: &[(&str, &str)],
) -> Result<Running, DemoError> {
    start_proxy(
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n{}\n[[routes]]\nname = \"{scenario}\"\nprefix = \"/\"\nupstream = \"{target}\"\n{route}",
            traces.trace_table(scenario, "fixed")
        ),
        secrets,
    )
    .await
}

/// Stops the recorder (which closes its HAR) and prints what `diagnose` makes of it.
async fn explain(
    narrator: &mut Narrator<'_>,
    traces: &Traces<'_>,
    scenario: &str,
    recorder: Running,
) {
    recorder.shutdown().await;
    let path = traces.har(scenario, "as-is");
    narrator.note(&format!("provproxy diagnose {}:", path.display()));
    let report = std::fs::read_to_string(&path)
        .map_err(|err| err.to_string())
        .and_then(|text| crate::diagnose::diagnose(&text).map_err(|err| err.to_string()));
    match report {
        Ok(report) => {
            for line in crate::diagnose::render_text(&report).lines() {
                narrator.note(&format!("  {line}"));
            }
        }
        Err(err) => {
            narrator.check(
                &format!("the trace {} can be read ({err})", path.display()),
                false,
            );
        }
    }
}

fn url(proxy: &Running, path: &str) -> String {
    format!("http://{}{path}", proxy.addr())
}

fn basic(username: &str, password: &str) -> String {
    let encoded = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("{username}:{password}"),
    );
    format!("Basic {encoded}")
}

/// The proxy holds the credential; the connector sends none.
async fn stored_credentials(
    narrator: &mut Narrator<'_>,
    traces: &Traces<'_>,
) -> Result<(), DemoError> {
    let scenario = "stored-credentials";
    narrator.heading(
        "stored credentials",
        "A REST target requires HTTP Basic. The connector has no credential configured;\n\
         provproxy injects the stored one (from an environment variable, never logged).",
    );
    let password = demo_secret("basic");
    let (target, stats) = basic_target::spawn("svc_provision", &password).await?;
    let as_is = recorder(traces, scenario, &target.url()).await?;
    let fixed = fixer(
        traces,
        scenario,
        &target.url(),
        "[routes.auth]\nkind = \"basic\"\nusername = \"svc_provision\"\npassword = { env = \"DEMO_PASSWORD\" }\n",
        &[("DEMO_PASSWORD", &password)],
    )
    .await?;
    let client = CookielessClient::default();
    let reply = client.get(&url(&as_is, "/api/users"), &[]).await?;
    narrator.step(
        "as is",
        "GET /api/users (no credentials)",
        &reply,
        StatusCode::UNAUTHORIZED,
    );
    let reply = client.get(&url(&fixed, "/api/users"), &[]).await?;
    narrator.step(
        "proxy",
        "GET /api/users (no credentials)",
        &reply,
        StatusCode::OK,
    );
    narrator.check(
        "the target saw exactly one authorised request",
        stats.authorised.load(std::sync::atomic::Ordering::Relaxed) == 1,
    );
    fixed.shutdown().await;
    explain(narrator, traces, scenario, as_is).await;
    target.stop().await;
    Ok(())
}

/// The SailPoint web-services connector against a session-locked API.
async fn session_locked(narrator: &mut Narrator<'_>, traces: &Traces<'_>) -> Result<(), DemoError> {
    let scenario = "session-locked";
    narrator.heading(
        "session-locked API (SailPoint web-services connector)",
        "The first authenticated call opens a session (JSESSIONID); while it is open, calls without\n\
         that cookie get 401 `Token Basic` although their Basic credentials are right. The\n\
         connector keeps no cookies: Create Account works, Add Entitlement and Get Object fail.\n\
         provproxy keeps the session's cookie and replays it.",
    );
    let password = demo_secret("osmc");
    let authorization = basic("svc_provision", &password);
    let headers = [
        ("authorization", authorization.as_str()),
        ("content-type", "application/json"),
    ];
    let client = CookielessClient::default();

    let (target, _) = session_locked::spawn("svc_provision", &password).await?;
    let as_is = recorder(traces, scenario, &target.url()).await?;
    run_connector_sequence(
        narrator,
        &client,
        "as is",
        &as_is,
        &headers,
        StatusCode::UNAUTHORIZED,
    )
    .await?;
    explain(narrator, traces, scenario, as_is).await;
    target.stop().await;

    let (target, stats) = session_locked::spawn("svc_provision", &password).await?;
    let fixed = fixer(
        traces,
        scenario,
        &target.url(),
        "[routes.auth]\nkind = \"basic\"\nusername = \"svc_provision\"\npassword = { env = \"OSMC_PASSWORD\" }\n\n\
         [routes.session]\nkey = \"route\"\nrelogin_on = [401]\n",
        &[("OSMC_PASSWORD", &password)],
    )
    .await?;
    run_connector_sequence(narrator, &client, "proxy", &fixed, &headers, StatusCode::OK).await?;
    narrator.check(
        "the target opened exactly one session for the whole sequence",
        stats.sessions_opened() == 1,
    );
    fixed.shutdown().await;
    target.stop().await;
    Ok(())
}

/// Create Account, Add Entitlement, Get Object — three operations, no cookies kept.
async fn run_connector_sequence(
    narrator: &mut Narrator<'_>,
    client: &CookielessClient,
    via: &str,
    proxy: &Running,
    headers: &[(&str, &str)],
    later_calls: StatusCode,
) -> Result<(), DemoError> {
    let created = client
        .send(
            http::Method::POST,
            &url(proxy, "/osmc/api/accounts"),
            headers,
            r#"{"userName":"ada.lovelace","displayName":"Ada Lovelace"}"#,
        )
        .await?;
    narrator.step(
        via,
        "POST /osmc/api/accounts (Create Account)",
        &created,
        StatusCode::CREATED,
    );
    let id = serde_json::from_slice::<serde_json::Value>(&created.body)
        .ok()
        .and_then(|account| account.get("id")?.as_str().map(str::to_owned))
        .ok_or_else(|| DemoError::Unexpected(format!("no account id in {}", created.text())))?;
    let path = format!("/osmc/api/accounts/{id}");
    let patched = client
        .send(
            http::Method::PATCH,
            &url(proxy, &path),
            headers,
            r#"{"entitlements":["SAP_FI_APPROVER"]}"#,
        )
        .await?;
    narrator.step(
        via,
        &format!("PATCH {path} (Add Entitlement)"),
        &patched,
        later_calls,
    );
    let fetched = client.get(&url(proxy, &path), headers).await?;
    narrator.step(
        via,
        &format!("GET {path} (Get Object)"),
        &fetched,
        later_calls,
    );
    Ok(())
}

/// ServiceNow advertising only Bearer: a challenge-driven client never sends Basic.
async fn single_scheme_challenge(
    narrator: &mut Narrator<'_>,
    traces: &Traces<'_>,
) -> Result<(), DemoError> {
    let scenario = "single-scheme";
    narrator.heading(
        "single advertised scheme (ServiceNow API Access Policy)",
        "The target accepts Basic but its 401 offers only `Bearer`. A Java connector (Apache\n\
         HttpClient: no credentials until challenged, first challenge of a line only) never\n\
         sends Basic. provproxy expands the challenge with `Basic`, one scheme per line.",
    );
    let password = demo_secret("servicenow");
    let (target, stats) = single_scheme::spawn("okta.provisioning", &password).await?;
    let as_is = recorder(traces, scenario, &target.url()).await?;
    let fixed = fixer(
        traces,
        scenario,
        &target.url(),
        "[routes.challenge]\nmode = \"expand\"\nadd = ['Basic realm=\"servicenow\"']\nsplit = true\n",
        &[],
    )
    .await?;
    let client = CookielessClient::default();
    let path = "/api/now/table/sys_user";
    let reply = client
        .challenge_driven_get(&url(&as_is, path), "okta.provisioning", &password)
        .await?;
    narrator.step(
        "as is",
        "GET sys_user (challenge-driven client)",
        &reply,
        StatusCode::UNAUTHORIZED,
    );
    let reply = client
        .challenge_driven_get(&url(&fixed, path), "okta.provisioning", &password)
        .await?;
    narrator.step(
        "proxy",
        "GET sys_user (challenge-driven client)",
        &reply,
        StatusCode::OK,
    );
    narrator.check(
        "through the proxy the client answered the expanded challenge with Basic",
        stats.authorized() == 1,
    );
    fixed.shutdown().await;
    explain(narrator, traces, scenario, as_is).await;
    target.stop().await;
    Ok(())
}

/// OneTrust's SCIM API accepts only tokens issued with the `scim` scope.
async fn scoped_token(narrator: &mut Narrator<'_>, traces: &Traces<'_>) -> Result<(), DemoError> {
    let scenario = "scoped-token";
    narrator.heading(
        "scoped token (OneTrust SCIM via Okta)",
        "Only an OAuth token issued with the `scim` scope is accepted. The connector sends a key\n\
         created without it (403 insufficient_scope), or pastes `Bearer xyz` into a field that\n\
         adds `Bearer ` itself. provproxy fetches a client-credentials token with scopes = [\"scim\"].",
    );
    let client_secret = demo_secret("onetrust");
    let config = oauth_target::TokenEndpointConfig {
        client_secret: client_secret.clone(),
        ..Default::default()
    };
    let client_id = config.client_id.clone();
    let (endpoint, endpoint_stats) = oauth_target::spawn_token_endpoint(config).await?;
    let (target, scim) = oauth_target::spawn_scim_target(&endpoint_stats).await?;
    let client = CookielessClient::default();
    let unscoped = client
        .send(
            http::Method::POST,
            &format!("{}/oauth/token", endpoint.url()),
            &[
                ("authorization", &basic(&client_id, &client_secret)),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            "grant_type=client_credentials&scope=users.read",
        )
        .await?;
    let pasted_key = serde_json::from_slice::<serde_json::Value>(&unscoped.body)
        .ok()
        .and_then(|token| token.get("access_token")?.as_str().map(str::to_owned))
        .ok_or_else(|| DemoError::Unexpected("the token endpoint issued no token".into()))?;
    let as_is = recorder(traces, scenario, &target.url()).await?;
    let fixed = fixer(
        traces,
        scenario,
        &target.url(),
        &format!(
            "[routes.auth]\nkind = \"oauth2\"\ngrant = \"client_credentials\"\ntoken_url = \"{}/oauth/token\"\n\
             client_id = \"{client_id}\"\nclient_secret = {{ env = \"ONETRUST_CLIENT_SECRET\" }}\nscopes = [\"scim\"]\n",
            endpoint.url()
        ),
        &[("ONETRUST_CLIENT_SECRET", &client_secret)],
    )
    .await?;
    let unscoped_key = format!("Bearer {pasted_key}");
    let doubled_key = format!("Bearer Bearer {pasted_key}");
    let reply = client
        .get(
            &url(&as_is, "/scim/v2/Users"),
            &[("authorization", &unscoped_key)],
        )
        .await?;
    narrator.step(
        "as is",
        "GET /scim/v2/Users (key without scim scope)",
        &reply,
        StatusCode::FORBIDDEN,
    );
    let reply = client
        .get(
            &url(&as_is, "/scim/v2/Users"),
            &[("authorization", &doubled_key)],
        )
        .await?;
    narrator.step(
        "as is",
        "GET /scim/v2/Users (`Bearer Bearer` key)",
        &reply,
        StatusCode::UNAUTHORIZED,
    );
    let reply = client
        .get(
            &url(&fixed, "/scim/v2/Users"),
            &[("authorization", &doubled_key)],
        )
        .await?;
    narrator.step(
        "proxy",
        "GET /scim/v2/Users (same key, replaced)",
        &reply,
        StatusCode::OK,
    );
    let reply = client
        .send(
            http::Method::POST,
            &url(&fixed, "/scim/v2/Users"),
            &[("content-type", "application/scim+json")],
            r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"ada.lovelace"}"#,
        )
        .await?;
    narrator.step(
        "proxy",
        "POST /scim/v2/Users (no key at all)",
        &reply,
        StatusCode::CREATED,
    );
    narrator.check(
        "one token fetched for both proxied calls, and the user was created",
        endpoint_stats.hits() == 2 && scim.user_names().iter().any(|name| name == "ada.lovelace"),
    );
    fixed.shutdown().await;
    explain(narrator, traces, scenario, as_is).await;
    target.stop().await;
    endpoint.stop().await;
    Ok(())
}

/// SAP Gateway's CSRF protocol: a modifying call needs a token fetched first in the same session.
async fn csrf_token(narrator: &mut Narrator<'_>, traces: &Traces<'_>) -> Result<(), DemoError> {
    let scenario = "csrf-token";
    narrator.heading(
        "CSRF token (SAP Gateway OData)",
        "Every POST, PUT, PATCH or DELETE must carry a token fetched with `X-CSRF-Token: Fetch`\n\
         in the same session (its cookie), or it gets 403 `X-CSRF-Token: Required`. The connector\n\
         sends one request per operation and never fetches. provproxy fetches the token once per\n\
         session, keeps the cookie it is bound to, and sends both.",
    );
    let password = demo_secret("sap");
    let authorization = basic("svc_provision", &password);
    let users = format!("{}Users", csrf_target::SERVICE);
    let body = r#"{"UserName":"ADA.LOVELACE","FirstName":"Ada","LastName":"Lovelace"}"#;
    let client = CookielessClient::default();
    let (target, stats) = csrf_target::spawn("svc_provision", &password).await?;
    let as_is = recorder(traces, scenario, &target.url()).await?;
    let fixed = fixer(
        traces,
        scenario,
        &target.url(),
        &format!(
            "[routes.auth]\nkind = \"basic\"\nusername = \"svc_provision\"\npassword = {{ env = \"SAP_PASSWORD\" }}\n\n\
             [routes.session]\nkey = \"route\"\n\n\
             [[routes.session.tokens]]\nname = \"csrf\"\n\
             fetch = {{ method = \"GET\", path = \"{}\", headers = {{ \"X-CSRF-Token\" = \"Fetch\" }} }}\n\
             from = \"header:X-CSRF-Token\"\nto = \"header:X-CSRF-Token\"\n\
             methods = [\"POST\", \"PUT\", \"PATCH\", \"DELETE\"]\nrefetch_on = [403]\n",
            csrf_target::SERVICE
        ),
        &[("SAP_PASSWORD", &password)],
    )
    .await?;
    let headers = [
        ("authorization", authorization.as_str()),
        ("content-type", "application/json"),
    ];
    let reply = client
        .send(http::Method::POST, &url(&as_is, &users), &headers, body)
        .await?;
    narrator.step(
        "as is",
        "POST .../API_USER/Users (no CSRF token)",
        &reply,
        StatusCode::FORBIDDEN,
    );
    let (sessions_before, fetches_before) = (stats.sessions_opened(), stats.fetches());
    let reply = client
        .send(
            http::Method::POST,
            &url(&fixed, &users),
            &[("content-type", "application/json")],
            body,
        )
        .await?;
    narrator.step(
        "proxy",
        "POST .../API_USER/Users (no CSRF token)",
        &reply,
        StatusCode::CREATED,
    );
    narrator.check(
        "through the proxy: one session, one token fetch",
        stats.sessions_opened() - sessions_before == 1 && stats.fetches() - fetches_before == 1,
    );
    fixed.shutdown().await;
    explain(narrator, traces, scenario, as_is).await;
    target.stop().await;
    Ok(())
}
