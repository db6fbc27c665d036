//! Listeners (plain, TLS), graceful shutdown, and the process-level start/stop of the proxy.

mod framing;
pub mod ingress;
pub mod origin;
mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
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
use framing::{Framing, FramingGuard};
use ingress::Ingress;

/// The header count hyper allows when none is configured.
const HYPER_DEFAULT_MAX_HEADERS: usize = 100;

/// A client connection, plain or TLS, as one type so that one code path serves both.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

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
    let listener = bind(plan.server.listen, "proxy").await?;
    let admin_listener = match &plan.admin {
        Some(admin) => Some(bind(admin.listen, "admin").await?),
        None => None,
    };
    let sessions = Sessions::open(&plan.routes, &plan.state, options.reset_sessions)?;
    // The admin ring and the console subscribe to records too: with an admin listener they
    // are built even without a [trace] table (no files then).
    let in_memory = plan
        .admin
        .as_ref()
        .map(|_| crate::config::TracePlan::in_memory().for_routes(&plan.routes));
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
    let metrics = Metrics::new(
        &plan.routes,
        ModuleStats {
            sessions: sessions.clone(),
            tracer: tracer.clone(),
            ingress: ingress.clone(),
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
    let addr = local_addr(&listener, plan.server.listen, "proxy")?;
    let (stop, stopped) = watch::channel(false);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(plan.server.limits.header_read_timeout)
        .max_buf_size(plan.server.limits.max_header_bytes.max(8192));
    // hyper parses up to 100 headers in a stack array, but any explicit limit, 100 included,
    // makes it build and initialise a heap array for every request head.
    if plan.server.limits.max_headers != HYPER_DEFAULT_MAX_HEADERS {
        builder.http1().max_headers(plan.server.limits.max_headers);
    }
    builder.http2().timer(TokioTimer::new());
    let grace = plan.server.shutdown_grace;
    let mut tasks = vec![tokio::spawn(serve(
        listener,
        builder.clone(),
        tls.map(TlsAcceptor::from),
        Some(ingress),
        stopped.clone(),
        grace,
        move |request, conn| {
            let proxy = proxy.clone();
            async move { proxy.handle(request, &conn).await }
        },
    ))];
    let mut admin_addr = None;
    if let (Some(admin_plan), Some(listener)) = (&plan.admin, admin_listener) {
        admin_addr = Some(local_addr(&listener, admin_plan.listen, "admin")?);
        let admin = Arc::new(admin::Admin::new(
            metrics,
            sessions.clone(),
            tracer,
            admin::access::Access::new(admin_plan),
        ));
        tasks.push(tokio::spawn(serve(
            listener,
            builder,
            None,
            None,
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

/// Accepts connections until told to stop, then waits for open connections to finish their
/// in-flight requests (at most `grace`).
async fn serve<H, F>(
    listener: TcpListener,
    builder: auto::Builder<TokioExecutor>,
    tls: Option<TlsAcceptor>,
    ingress: Option<Arc<Ingress>>,
    mut stopped: watch::Receiver<bool>,
    grace: Duration,
    handler: H,
) where
    H: Fn(http::Request<Incoming>, ConnInfo) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = http::Response<crate::proxy::body::ProxyBody>> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    // Fires when the grace period is over, so that connections still busy are closed rather
    // than outliving `shutdown()` (a library user's runtime would keep serving them).
    let (close, closed) = watch::channel(false);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    tracing::warn!("accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        // With a `0.0.0.0`/`::` listener, the address this connection came in on is the one its
        // client may name in `Host`; unknown, it is unspecified, which serves no name.
        let local = stream
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let builder = builder.clone();
        let handler = handler.clone();
        let tls = tls.clone();
        let ingress = ingress.clone();
        let watcher = graceful.watcher();
        tokio::spawn(until_closed(closed.clone(), async move {
            let mut conn = ConnInfo::new(remote, local, tls.is_some());
            let (stream, framing): (Box<dyn Io>, _) = match tls {
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(stream) => {
                        conn.client = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|chain| chain.first())
                            .and_then(|leaf| ingress.as_ref()?.identify_certificate(leaf));
                        // HTTP/2's binary framing is validated by hyper's h2 codec.
                        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                        (
                            Box::new(stream),
                            if h2 {
                                Framing::Unchecked
                            } else {
                                Framing::Checked
                            },
                        )
                    }
                    Err(err) => {
                        tracing::debug!(%remote, "TLS handshake failed: {err}");
                        return;
                    }
                },
                None => (Box::new(stream), Framing::Checked),
            };
            let service = service_fn(move |request| {
                let handler = handler.clone();
                let conn = conn.clone();
                async move { Ok::<_, Infallible>(handler(request, conn).await) }
            });
            let guarded = FramingGuard::new(stream, remote, framing);
            let result = watcher
                .watch(
                    builder
                        .serve_connection(TokioIo::new(guarded), service)
                        .into_owned(),
                )
                .await;
            if let Err(err) = result {
                tracing::debug!(%remote, "connection ended with an error: {err}");
            }
        }));
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?grace,
            "grace period over; closing connections with requests still in flight"
        );
        let _ = close.send(true);
    }
}

/// Runs one connection until it ends or the grace period is over; dropping it closes it.
async fn until_closed(mut closed: watch::Receiver<bool>, connection: impl Future<Output = ()>) {
    tokio::select! {
        () = connection => {}
        _ = closed.changed() => {}
    }
}
