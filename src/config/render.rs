//! `provproxy check`: the resolved plan as an operator reads it. Secrets show where they come
//! from, never their value.

use std::fmt::Write;

use super::plan::*;

pub fn render(plan: &Plan) -> String {
    let mut out = String::new();
    let server = &plan.server;
    let _ = writeln!(out, "config is valid");
    let _ = writeln!(
        out,
        "server   listen {}{}, {} workers, drain up to {:?}",
        server.listen,
        if server.tls.is_some() { " (TLS)" } else { "" },
        server.workers,
        server.shutdown_grace
    );
    let limits = &server.limits;
    let _ = writeln!(
        out,
        "         timeouts TLS handshake {:?}, first byte {:?}, head {:?}, idle {:?}, HTTP/2 ping every {:?} (answer within {:?}); {}",
        limits.tls_handshake_timeout,
        limits.first_byte_timeout,
        limits.header_read_timeout,
        limits.idle_timeout,
        limits.http2_keep_alive_interval,
        limits.http2_keep_alive_timeout,
        limits
            .max_connections
            .map_or("connections unlimited".to_owned(), |max| format!("at most {max} connections"))
    );
    if server.clients.is_empty() {
        let who = if server.allow_anyone {
            "anyone (allow_anyone = true)"
        } else {
            "loopback only"
        };
        let _ = writeln!(out, "clients  {who}");
    }
    for client in &server.clients {
        let how = match &client.credential {
            ClientCredential::Token(token) => format!("bearer token {token:?}"),
            ClientCredential::Basic { username, password } => {
                format!("basic {username} / {password:?}")
            }
            ClientCredential::Certificate => "client certificate".to_owned(),
        };
        let _ = writeln!(out, "client   {}: {how}", client.name);
    }
    if !server.hosts.is_empty() {
        let _ = writeln!(
            out,
            "hosts    {} (besides loopback names)",
            server.hosts.join(", ")
        );
    }
    if server.allow_browsers {
        let _ = writeln!(out, "browsers allowed (allow_browsers = true)");
    }
    if let Some(admin) = &plan.admin {
        let _ = writeln!(out, "admin    listen {}", admin.listen);
        if let Some(token) = &admin.token {
            let _ = writeln!(out, "admin    token {token:?}");
        }
        if !admin.hosts.is_empty() {
            let _ = writeln!(out, "admin    hosts {}", admin.hosts.join(", "));
        }
    }
    match &plan.trace {
        Some(trace) => {
            let files: Vec<String> = trace
                .har
                .iter()
                .chain(trace.jsonl.iter())
                .map(|path| path.display().to_string())
                .collect();
            let _ = writeln!(
                out,
                "trace    {} (bodies {}, up to {} bytes; redacting {})",
                if files.is_empty() {
                    "in memory only".to_owned()
                } else {
                    files.join(", ")
                },
                if trace.bodies { "on" } else { "off" },
                trace.max_body,
                trace.redact_fields.join(", ")
            );
        }
        None => {
            let _ = writeln!(out, "trace    off");
        }
    }
    for route in &plan.routes {
        let matcher = match &route.matcher {
            RouteMatch::Prefix(prefix) => format!(
                "prefix {prefix}{}",
                if route.strip_prefix {
                    " (stripped)"
                } else {
                    ""
                }
            ),
            RouteMatch::Host(host) => format!("host {host}"),
        };
        let _ = writeln!(
            out,
            "route    {}: {matcher} -> {}{}",
            route.name,
            route.upstream.url,
            if route.allow_encoded_slashes {
                " (encoded slashes allowed)"
            } else {
                ""
            }
        );
        let _ = writeln!(
            out,
            "           timeouts connect {:?}, response {:?}{}",
            route.upstream.connect_timeout,
            route.upstream.request_timeout,
            route
                .upstream
                .ca_file
                .as_ref()
                .map(|ca| format!(", CA {}", ca.display()))
                .unwrap_or_default()
        );
        let auth = match &route.auth.kind {
            AuthKind::None => "none".to_owned(),
            AuthKind::Basic { username, password } => format!("basic {username} / {password:?}"),
            AuthKind::Bearer { token } => format!("bearer {token:?}"),
            AuthKind::Header { name, value } => format!("header {name}: {value:?}"),
            AuthKind::OAuth2(oauth) => format!(
                "oauth2 {} at {} as {} (secret {:?}), scopes [{}]",
                match oauth.grant {
                    Grant::ClientCredentials => "client_credentials",
                    Grant::Password { .. } => "password",
                },
                oauth.token_url,
                oauth.client_id,
                oauth.client_secret,
                oauth.scopes.join(" ")
            ),
        };
        let _ = writeln!(
            out,
            "           auth {auth}, when {}",
            route.auth.when.as_str()
        );
        if let Some(session) = &route.session {
            let _ =
                writeln!(
                out,
                "           session key {}, idle {:?}, serialize {}, relogin on {:?}, persist {}",
                session.key,
                session.idle_timeout,
                session.serialize,
                session.relogin_on.iter().map(|s| s.as_u16()).collect::<Vec<_>>(),
                session
                    .persist
                    .as_ref()
                    .map_or("off".to_owned(), |path| path.display().to_string())
            );
        }
        if route.challenge.mode != ChallengeMode::Keep {
            let _ = writeln!(
                out,
                "           challenge {:?}, add {:?}, remove {:?}, split {}",
                route.challenge.mode,
                route.challenge.add,
                route.challenge.remove,
                route.challenge.split
            );
        }
    }
    for warning in &plan.warnings {
        let _ = writeln!(out, "warning: {warning}");
    }
    out
}
