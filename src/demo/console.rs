//! `provproxy demo --console`: the session-locked field case kept running behind one proxy with
//! its admin listener on loopback, so that the console shows the failure, its cause and the fix.
//!
//! Two routes on one proxy, each in front of its own session-locked target: `as-is` (prefix
//! `/osmc/`) forwards the connector's calls unchanged, as today; `osmc` (Host
//! `osmc.proxy.local`) injects the stored credential and keeps the target's session.

use std::io::Write;

use http::{Method, StatusCode};

use super::client::{CookielessClient, Reply};
use super::server::TargetServer;
use super::{basic, demo_secret, session_locked, start_proxy, DemoError};
use crate::server::Running;

/// The Host that selects the fixing route.
pub const FIXED_HOST: &str = "osmc.proxy.local";
const USERNAME: &str = "svc_provision";

/// The targets and the proxy, running until [`ConsoleDemo::stop`].
pub struct ConsoleDemo {
    proxy: Running,
    targets: Vec<TargetServer>,
    password: String,
    client: CookielessClient,
}

impl ConsoleDemo {
    /// Starts both targets and the proxy; `admin_token`, when given, is required by the admin
    /// listener (and so by the console).
    pub async fn start(admin_token: Option<&str>) -> Result<ConsoleDemo, DemoError> {
        let password = demo_secret("console");
        let (as_is, _) = session_locked::spawn(USERNAME, &password).await?;
        let (fixed, _) = session_locked::spawn(USERNAME, &password).await?;
        let token_line = if admin_token.is_some() {
            "token = { env = \"PROVPROXY_ADMIN_TOKEN\" }\n"
        } else {
            ""
        };
        let toml = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n\
             [admin]\nlisten = \"127.0.0.1:0\"\n{token_line}\n\
             [[routes]]\nname = \"as-is\"\nprefix = \"/osmc/\"\nupstream = \"{}\"\n\
             [routes.auth]\nkind = \"none\"\nnormalize = false\n\n\
             [[routes]]\nname = \"osmc\"\nhost = \"{FIXED_HOST}\"\nupstream = \"{}\"\n\
             [routes.auth]\nkind = \"basic\"\nusername = \"{USERNAME}\"\npassword = {{ env = \"OSMC_PASSWORD\" }}\n\
             [routes.session]\nkey = \"route\"\nrelogin_on = [401]\n",
            as_is.url(),
            fixed.url()
        );
        let mut secrets = vec![("OSMC_PASSWORD", password.as_str())];
        if let Some(token) = admin_token {
            secrets.push(("PROVPROXY_ADMIN_TOKEN", token));
        }
        let proxy = start_proxy(&toml, &secrets).await?;
        Ok(ConsoleDemo {
            proxy,
            targets: vec![as_is, fixed],
            password,
            client: CookielessClient::default(),
        })
    }

    /// `http://127.0.0.1:PORT/ui/`.
    pub fn console_url(&self) -> String {
        match self.proxy.admin_addr() {
            Some(addr) => format!("http://{addr}/ui/"),
            None => String::new(),
        }
    }

    pub fn proxy(&self) -> &Running {
        &self.proxy
    }

    /// The stored password, for tests that check it never reaches the console.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The connector's Create Account, Add Entitlement and Get Object, first as it is (the last
    /// two fail: 401), then through the fixing route (all succeed). The replies in that order.
    pub async fn connector_sequence(&self) -> Result<Vec<Reply>, DemoError> {
        let mut replies = self.sequence(None).await?;
        replies.extend(self.sequence(Some(FIXED_HOST)).await?);
        Ok(replies)
    }

    async fn sequence(&self, host: Option<&str>) -> Result<Vec<Reply>, DemoError> {
        let base = format!("http://{}", self.proxy.addr());
        let authorization = basic(USERNAME, &self.password);
        let mut headers = vec![("content-type", "application/json")];
        match host {
            Some(host) => headers.push(("host", host)),
            // As it is: the connector sends its own Basic credentials on every call.
            None => headers.push(("authorization", authorization.as_str())),
        }
        let created = self
            .client
            .send(
                Method::POST,
                &format!("{base}/osmc/api/accounts"),
                &headers,
                r#"{"userName":"ada.lovelace","displayName":"Ada Lovelace"}"#,
            )
            .await?;
        if created.status != StatusCode::CREATED {
            return Err(DemoError::Unexpected(format!(
                "Create Account answered {}",
                created.status
            )));
        }
        let id = serde_json::from_slice::<serde_json::Value>(&created.body)
            .ok()
            .and_then(|account| account.get("id")?.as_str().map(str::to_owned))
            .ok_or_else(|| DemoError::Unexpected(format!("no account id in {}", created.text())))?;
        let url = format!("{base}/osmc/api/accounts/{id}");
        let patched = self
            .client
            .send(
                Method::PATCH,
                &url,
                &headers,
                r#"{"entitlements":["SAP_FI_APPROVER"]}"#,
            )
            .await?;
        let fetched = self.client.get(&url, &headers).await?;
        Ok(vec![created, patched, fetched])
    }

    pub async fn stop(self) {
        self.proxy.shutdown().await;
        for target in self.targets {
            target.stop().await;
        }
    }
}

/// Runs the console demo until `stop` resolves (Ctrl-C from `main`).
pub async fn run(
    out: &mut dyn Write,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), DemoError> {
    let demo = ConsoleDemo::start(None).await?;
    demo.connector_sequence().await?;
    let _ = writeln!(
        out,
        "\n== console ==\n   The session-locked case runs behind one proxy: route `as-is` (prefix /osmc/) forwards\n   \
         the connector's calls unchanged and fails; route `osmc` (Host: {FIXED_HOST}) keeps the\n   \
         target's session and succeeds. Open the console, click a 401 to read its finding, select\n   \
         two PATCH calls and compare them.\n\n   console: {}\n   proxy:   http://{}/osmc/api/accounts\n\n   \
         Ctrl-C stops the demo.",
        demo.console_url(),
        demo.proxy.addr()
    );
    let _ = out.flush();
    stop.await;
    demo.stop().await;
    Ok(())
}
