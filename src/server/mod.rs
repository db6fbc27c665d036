//! Listeners (plain, TLS), graceful shutdown, and the process-level start/stop of the proxy.

pub mod framing;
pub mod ingress;
mod listener;
pub mod origin;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::admin::{
    self,
    metrics::{Metrics, ModuleStats},
};
use crate::config::Plan;
use crate::lockfile::FileLock;
use crate::proxy::{ConnInfo, Proxy, Shared};
use crate::session::Sessions;
use crate::trace::{TraceWriter, Tracer};
use ingress::Ingress;
pub use listener::ConnectionStats;
use listener::Listener;

/// Why the proxy could not start. Rendered once by the CLI.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS setup failed for {path}: {reason}")]
    Tls { path: PathBuf, reason: String },
    #[error(transparent)]
    Route(#[from] crate::proxy::RouteSetupError),
    #[error(transparent)]
    Sessions(#[from] crate::session::SessionError),
    #[error(transparent)]
    Trace(#[from] crate::trace::TraceError),
    #[error(transparent)]
    Lock(#[from] crate::lockfile::LockError),
}

/// Choices made on the command line rather than in the config.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// Move a corrupt session state file aside and start with no sessions.
    pub reset_sessions: bool,
    /// Where token caches read the time; the system clock when `None`. Tests pass a manual one.
    pub clock: Option<crate::clock::SharedClock>,
}

/// A running proxy (and admin listener). `shutdown` drains in-flight requests.
pub struct Running {
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    sessions: Sessions,
    session_writer: JoinHandle<()>,
    trace_writer: Option<TraceWriter>,
    /// The state and trace files this instance owns; released once they are written for good.
    locks: Vec<FileLock>,
}

impl Running {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// Stops accepting, lets in-flight requests finish (up to the grace period), then saves
    /// the sessions and closes the trace files.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Some(writer) = &self.trace_writer {
            writer.end_streams();
        }
        for task in self.tasks {
            let _ = task.await;
        }
        self.session_writer.abort();
        if let Err(err) = self.sessions.persist_now().await {
            tracing::error!("sessions could not be saved at shutdown: {err}");
        }
        if let Some(writer) = self.trace_writer {
            writer.shutdown().await;
        }
        drop(self.locks);
    }
}

/// Binds the listeners and starts serving.
pub async fn start(plan: Plan) -> Result<Running, StartupError> {
    start_with(plan, StartOptions::default()).await
}

/// Takes every lock and binds every listener before it reads, rotates or writes any file: a start
/// that fails (a second instance on the same config, an address in use) changes nothing.
pub async fn start_with(plan: Plan, options: StartOptions) -> Result<Running, StartupError> {
    let locks = crate::lockfile::acquire_all(owned_files(&plan))?;
    let tcp = bind(plan.server.listen, "proxy").await?;
    let admin_tcp = match &plan.admin {
        Some(admin) => Some(bind(admin.listen, "admin").await?),
        None => None,
    };
    let sessions = Sessions::open(&plan.routes, &plan.state, options.reset_sessions)?;
    // The admin ring and the console subscribe to records too: with an admin listener they
    // are built even without a [trace] table (no files then).
    let in_memory = plan
        .admin
        .as_ref()
        .map(|_| crate::config::TracePlan::in_memory());
    let (tracer, trace_writer) = match plan.trace.as_ref().or(in_memory.as_ref()) {
        Some(trace) => {
            let (tracer, writer) = Tracer::start(trace)?;
            (Some(tracer), Some(writer))
        }
        None => (None, None),
    };
    let clock = options.clock.unwrap_or_else(crate::clock::system);
    let tokens = crate::proxy::token_sources(&plan, &clock)?;
    let ingress = Arc::new(Ingress::new(
        &plan.server.clients,
        origin::ServedNames::for_proxy(&plan),
        plan.server.allow_browsers,
    ));
    let connections = Arc::new(ConnectionStats::default());
    let metrics = Metrics::new(
        &plan.routes,
        ModuleStats {
            sessions: sessions.clone(),
            tracer: tracer.clone(),
            ingress: ingress.clone(),
            connections: connections.clone(),
            tokens: plan
                .routes
                .iter()
                .zip(&tokens)
                .filter_map(|(route, tokens)| Some((route.name.clone(), tokens.clone()?)))
                .collect(),
        },
    );
    let proxy = Arc::new(Proxy::new(
        &plan,
        Shared {
            metrics: metrics.clone(),
            ingress: ingress.clone(),
            sessions: sessions.clone(),
            tracer: tracer.clone(),
            tokens,
        },
    )?);
    let tls = plan
        .server
        .tls
        .as_ref()
        .map(tls::server_config)
        .transpose()?;
    let addr = local_addr(&tcp, plan.server.listen, "proxy")?;
    let (stop, stopped) = watch::channel(false);
    let grace = plan.server.shutdown_grace;
    let mut tasks = vec![tokio::spawn(listener::serve(
        Listener {
            tcp,
            tls: tls.map(TlsAcceptor::from),
            ingress: Some(ingress),
            limits: plan.server.limits.clone(),
            cap: plan.server.limits.max_connections,
            stats: connections,
        },
        stopped.clone(),
        grace,
        move |request, conn| {
            let proxy = proxy.clone();
            async move { proxy.handle(request, &conn).await }
        },
    ))];
    let mut admin_addr = None;
    if let (Some(admin_plan), Some(tcp)) = (&plan.admin, admin_tcp) {
        admin_addr = Some(local_addr(&tcp, admin_plan.listen, "admin")?);
        let admin = Arc::new(admin::Admin::new(
            metrics,
            sessions.clone(),
            tracer,
            admin::access::Access::new(admin_plan),
        ));
        tasks.push(tokio::spawn(listener::serve(
            Listener {
                tcp,
                tls: None,
                ingress: None,
                limits: plan.server.limits.clone(),
                cap: None,
                stats: Arc::default(),
            },
            stopped,
            grace,
            move |request, conn: ConnInfo| {
                let admin = admin.clone();
                async move { admin.handle(request, conn.local).await }
            },
        )));
    }
    tracing::info!(%addr, admin = ?admin_addr, routes = plan.routes.len(), "provproxy listening");
    let session_writer = sessions.spawn_background();
    Ok(Running {
        addr,
        admin_addr,
        stop,
        tasks,
        sessions,
        session_writer,
        trace_writer,
        locks,
    })
}

/// The files an instance writes and no other may: session state and trace files.
fn owned_files(plan: &Plan) -> impl Iterator<Item = &std::path::Path> {
    let state = plan
        .routes
        .iter()
        .filter_map(|route| route.session.as_ref()?.persist.as_deref());
    let traces = plan
        .trace
        .iter()
        .flat_map(|trace| trace.har.iter().chain(trace.jsonl.iter()))
        .map(PathBuf::as_path);
    state.chain(traces)
}

async fn bind(addr: SocketAddr, what: &'static str) -> Result<TcpListener, StartupError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartupError::Bind { what, addr, source })
}

fn local_addr(
    listener: &TcpListener,
    addr: SocketAddr,
    what: &'static str,
) -> Result<SocketAddr, StartupError> {
    listener
        .local_addr()
        .map_err(|source| StartupError::Bind { what, addr, source })
}
