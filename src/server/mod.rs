//! Listeners (plain, TLS), graceful shutdown, and the process-level start/stop of the proxy.

pub mod framing;
pub mod http1;
mod listener;
mod news;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError};

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::admin::{self, stats::ModuleStats};
use crate::auth::oauth::TokenSource;
use crate::clock::SharedClock;
use crate::config::{Plan, RoutePlan};
use crate::ingress::{origin, Ingress};
use crate::lockfile::FileLock;
use crate::metrics::Metrics;
use crate::proxy::{Proxy, Shared};
use crate::reload::{route_identity, ReloadFailed, ReloadRequest, ReloadResult, Status};
use crate::session::Sessions;
use crate::state::RedisShared;
use crate::trace::{TraceWriter, Tracer};
pub use listener::ConnectionStats;

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
    #[error(transparent)]
    Redis(#[from] crate::state::redis::FleetError),
}

/// Choices made on the command line rather than in the config.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// Move a corrupt session state file aside and start with no sessions.
    pub reset_sessions: bool,
    /// The file the plan was read from: SIGHUP and `POST /reload` read it again.
    pub config: Option<PathBuf>,
    /// Where token caches and cookie jars read the time; the system clock when `None`. Tests
    /// pass a manual one.
    pub clock: Option<crate::clock::SharedClock>,
}

/// Everything built from one plan. A reload builds the next one beside it and swaps; requests
/// that started on this one hold it until they end.
struct Generation {
    plan: Plan,
    proxy: Arc<Proxy>,
    admin: Option<Arc<admin::Admin>>,
    sessions: Sessions,
    tokens: Vec<Option<TokenSource>>,
    metrics: Arc<Metrics>,
    ingress: Arc<Ingress>,
    tls: Option<TlsAcceptor>,
    /// How its connections are served: hyper's settings, deadlines, the connection cap.
    connections: Arc<listener::Connections>,
    /// The proxy listener's connection counts, carried over from plan to plan.
    connection_stats: Arc<ConnectionStats>,
}

type Current = Arc<ArcSwap<Generation>>;

/// One accepting socket and the task serving it.
struct Listener {
    /// What decides whether a new plan can keep this socket: its configured address, and
    /// whether it speaks TLS.
    key: (SocketAddr, bool),
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Listener {
    /// Stops accepting; the task drains its connections and ends.
    fn retire(self) -> JoinHandle<()> {
        let _ = self.stop.send(true);
        self.task
    }
}

/// The parts of a running proxy that a reload changes, behind one lock so that reloads run
/// one at a time.
struct Supervisor {
    config: Option<PathBuf>,
    /// Where the token caches of every plan read the time.
    clock: SharedClock,
    current: Current,
    status: Arc<Status>,
    proxy: Listener,
    admin: Option<Listener>,
    /// Listeners a reload replaced, draining; awaited at shutdown.
    retired: Vec<JoinHandle<()>>,
    session_writer: JoinHandle<()>,
    /// One writer for the life of the process, so that no record is lost across a reload.
    tracer: Option<Tracer>,
    trace_writer: Option<TraceWriter>,
    /// The state and trace files this instance owns; released once they are written for good.
    locks: Vec<FileLock>,
    /// `[state] backend = "redis"`: one connection for the life of the process.
    redis: Option<RedisShared>,
}

/// A running proxy (and admin listener). `shutdown` drains in-flight requests.
pub struct Running {
    supervisor: Arc<tokio::sync::Mutex<Supervisor>>,
    status: Arc<Status>,
    addrs: Arc<std::sync::Mutex<(SocketAddr, Option<SocketAddr>)>>,
    current: Current,
    reloader: JoinHandle<()>,
}

impl Running {
    /// The proxy listener's address (after a reload that moved it, the new one).
    pub fn addr(&self) -> SocketAddr {
        self.addrs.lock().unwrap_or_else(PoisonError::into_inner).0
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.addrs.lock().unwrap_or_else(PoisonError::into_inner).1
    }

    /// The current plan's session store.
    pub fn sessions(&self) -> Sessions {
        self.current.load().sessions.clone()
    }

    /// Re-reads the config file and swaps the plan, or changes nothing and says why.
    pub async fn reload(&self) -> ReloadResult {
        self.supervisor.lock().await.reload().await
    }

    /// Closes and reopens the trace files (logrotate moved them), in order with the records.
    pub async fn reopen_traces(&self) -> Result<(), crate::trace::TraceError> {
        let supervisor = self.supervisor.lock().await;
        let generation = supervisor.current.load();
        match (&supervisor.tracer, &generation.plan.trace) {
            (Some(tracer), Some(plan)) => tracer.reopen(plan).await,
            _ => Ok(()),
        }
    }

    /// `/readyz` fails from now on, then the proxy listener stops accepting and lets in-flight
    /// requests finish (up to the grace period); the admin listener closes last, so the probe
    /// sees "draining" rather than a refused connection. Then the sessions are saved and the
    /// trace files closed.
    pub async fn shutdown(self) {
        self.status.start_draining();
        notify(&[sd_notify::NotifyState::Stopping]);
        self.reloader.abort();
        let mut supervisor = self.supervisor.lock().await;
        let retired = std::mem::take(&mut supervisor.retired);
        let _ = supervisor.proxy.stop.send(true);
        let _ = (&mut supervisor.proxy.task).await;
        for task in retired {
            let _ = task.await;
        }
        // The console's live streams would hold the admin listener's connections open.
        if let Some(writer) = &supervisor.trace_writer {
            writer.end_streams();
        }
        if let Some(admin) = &mut supervisor.admin {
            let _ = admin.stop.send(true);
            let _ = (&mut admin.task).await;
        }
        supervisor.session_writer.abort();
        let sessions = supervisor.current.load().sessions.clone();
        if let Err(err) = sessions.persist_now().await {
            tracing::error!("sessions could not be saved at shutdown: {err}");
        }
        if let Some(writer) = supervisor.trace_writer.take() {
            writer.shutdown().await;
        }
        drop(std::mem::take(&mut supervisor.locks));
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
    let sessions = Sessions::open_with_clock(
        &plan.routes,
        &plan.state,
        options.reset_sessions,
        options.clock.clone().unwrap_or_else(crate::clock::system),
    )?;
    let (tracer, trace_writer) = match recording(&plan).as_ref() {
        Some(trace) => {
            let (tracer, writer) = Tracer::start(trace)?;
            (Some(tracer), Some(writer))
        }
        None => (None, None),
    };
    let hash = match &options.config {
        Some(path) => std::fs::read(path)
            .map(|text| crate::reload::config_hash(&text))
            .unwrap_or_default(),
        None => String::new(),
    };
    let (status, reloads) = Status::new(hash, plan.routes.len());
    let clock = options.clock.unwrap_or_else(crate::clock::system);
    let redis = RedisShared::from_plan(&plan.state)?;
    let generation = build(
        plan,
        sessions,
        None,
        (tracer.clone(), redis.clone()),
        &status,
        &clock,
    )?;
    let addr = local_addr(&listener, generation.plan.server.listen, "proxy")?;
    let current: Current = Arc::new(ArcSwap::from_pointee(generation));
    let plan = &current.load().plan;
    let proxy = spawn_listener(
        listener,
        (plan.server.listen, plan.server.tls.is_some()),
        addr,
        Side::Proxy,
        &current,
    );
    let admin = match (&plan.admin, admin_listener) {
        (Some(admin_plan), Some(listener)) => {
            let admin_addr = local_addr(&listener, admin_plan.listen, "admin")?;
            Some(spawn_listener(
                listener,
                (admin_plan.listen, false),
                admin_addr,
                Side::Admin,
                &current,
            ))
        }
        _ => None,
    };
    let admin_addr = admin.as_ref().map(|admin| admin.addr);
    tracing::info!(%addr, admin = ?admin_addr, routes = plan.routes.len(), "provproxy listening");
    let session_writer = current.load().sessions.spawn_background();
    let supervisor = Arc::new(tokio::sync::Mutex::new(Supervisor {
        config: options.config,
        clock,
        current: current.clone(),
        status: status.clone(),
        proxy,
        admin,
        retired: Vec::new(),
        session_writer,
        tracer,
        trace_writer,
        locks,
        redis,
    }));
    let addrs = Arc::new(std::sync::Mutex::new((addr, admin_addr)));
    let reloader = tokio::spawn(serve_reloads(supervisor.clone(), addrs.clone(), reloads));
    notify(&[sd_notify::NotifyState::Ready]);
    Ok(Running {
        supervisor,
        status,
        addrs,
        current,
        reloader,
    })
}

/// Answers `POST /reload`, one at a time, and keeps [`Running::addr`] up to date.
async fn serve_reloads(
    supervisor: Arc<tokio::sync::Mutex<Supervisor>>,
    addrs: Arc<std::sync::Mutex<(SocketAddr, Option<SocketAddr>)>>,
    mut requests: mpsc::Receiver<ReloadRequest>,
) {
    while let Some(answer) = requests.recv().await {
        let mut supervisor = supervisor.lock().await;
        let result = supervisor.reload().await;
        *addrs.lock().unwrap_or_else(PoisonError::into_inner) = supervisor.addrs();
        let _ = answer.send(result);
    }
}

/// Builds the runtime of a plan. With `previous`, routes whose identity did not change keep
/// their token source and (when their upstream settings are the same) their upstream client;
/// `sessions` is then the store carried over from it.
fn build(
    plan: Plan,
    sessions: Sessions,
    previous: Option<&Generation>,
    (tracer, redis): (Option<Tracer>, Option<RedisShared>),
    status: &Arc<Status>,
    clock: &SharedClock,
) -> Result<Generation, StartupError> {
    let same = |route: &RoutePlan| {
        previous.and_then(|previous| {
            let index = previous
                .plan
                .routes
                .iter()
                .position(|old| old.name == route.name)?;
            let old = &previous.plan.routes[index];
            (route_identity(old) == route_identity(route)).then_some((previous, index, old))
        })
    };
    let fresh = crate::proxy::token_sources(&plan, clock)?;
    let tokens: Vec<Option<TokenSource>> = plan
        .routes
        .iter()
        .zip(fresh)
        .map(|(route, fresh)| {
            let kept = same(route).and_then(|(previous, index, _)| previous.tokens[index].clone());
            match (kept, fresh) {
                (Some(kept), Some(_)) => Some(kept),
                (_, fresh) => fresh,
            }
        })
        .collect();
    let ingress = Arc::new(Ingress::new(
        &plan.server.clients,
        origin::ServedNames::for_proxy(&plan),
        plan.server.allow_browsers,
    ));
    let connection_stats =
        previous.map_or_else(Arc::default, |previous| previous.connection_stats.clone());
    let modules = ModuleStats {
        sessions: sessions.clone(),
        tracer: tracer.clone(),
        ingress: ingress.clone(),
        tokens: plan
            .routes
            .iter()
            .zip(&tokens)
            .filter_map(|(route, tokens)| Some((route.name.clone(), tokens.clone()?)))
            .collect(),
        reload: Some(status.clone()),
        redis: redis.as_ref().map(|redis| redis.fleet().clone()),
        connections: connection_stats.clone(),
    };
    let metrics = match previous {
        Some(previous) => previous.metrics.carry_over(&plan.routes, modules),
        None => Metrics::new(&plan.routes, modules),
    };
    let proxy = Arc::new(Proxy::reusing(
        &plan,
        Shared {
            metrics: metrics.clone(),
            ingress: ingress.clone(),
            sessions: sessions.clone(),
            tracer: tracer.clone(),
            tokens: tokens.clone(),
            redis: redis.clone(),
        },
        &|route| {
            let (previous, _, old) = same(route)?;
            crate::reload::same_upstream(old, route)
                .then(|| previous.proxy.upstream(&route.name))
                .flatten()
        },
    )?);
    let tls = plan
        .server
        .tls
        .as_ref()
        .map(tls::server_config)
        .transpose()?
        .map(TlsAcceptor::from);
    let admin = plan.admin.as_ref().map(|admin_plan| {
        Arc::new(
            admin::Admin::new(
                metrics.clone(),
                sessions.clone(),
                tracer,
                admin::access::Access::new(admin_plan),
            )
            .with_status(status.clone())
            .with_redis(redis.clone()),
        )
    });
    let connections = Arc::new(listener::Connections::new(&plan.server.limits));
    Ok(Generation {
        plan,
        proxy,
        admin,
        sessions,
        tokens,
        metrics,
        ingress,
        tls,
        connections,
        connection_stats,
    })
}

impl Supervisor {
    fn addrs(&self) -> (SocketAddr, Option<SocketAddr>) {
        (self.proxy.addr, self.admin.as_ref().map(|admin| admin.addr))
    }

    /// Tells systemd, logs and counts the outcome of [`Supervisor::swap`].
    async fn reload(&mut self) -> ReloadResult {
        let mut reloading = vec![sd_notify::NotifyState::Reloading];
        reloading.extend(sd_notify::NotifyState::monotonic_usec_now().ok());
        notify(&reloading);
        let started = std::time::Instant::now();
        let result = self.swap().await;
        let took_ms = started.elapsed().as_millis();
        match &result {
            Ok(reloaded) => {
                for route in &reloaded.reset {
                    tracing::warn!(
                        route = %route,
                        "route's credentials, session key or upstream changed: its sessions \
                         and tokens belonged to the old identity and were dropped"
                    );
                }
                tracing::info!(
                    config_hash = %reloaded.hash,
                    kept = ?reloaded.kept,
                    reset = ?reloaded.reset,
                    added = ?reloaded.added,
                    removed = ?reloaded.removed,
                    took_ms,
                    "config reloaded"
                );
            }
            Err(failed) => {
                tracing::error!("reload failed, the running config stays: {failed}");
            }
        }
        self.status
            .reloaded(&result, self.current.load().plan.routes.len());
        notify(&[sd_notify::NotifyState::Ready]);
        result
    }

    /// Loads the config, builds the new runtime beside the current one, opens what it needs
    /// that the current one lacks (locks, listeners, trace files), then swaps. Any failure
    /// before the swap leaves everything as it was.
    async fn swap(&mut self) -> ReloadResult {
        let failed = |message: String| ReloadFailed { message };
        let Some(path) = self.config.clone() else {
            return Err(failed(
                "this proxy was not started from a config file".into(),
            ));
        };
        let text = std::fs::read(&path).map_err(|err| {
            failed(format!(
                "{}: cannot read the config file: {err}",
                path.display()
            ))
        })?;
        let hash = crate::reload::config_hash(&text);
        let plan = crate::config::load(&path).map_err(|err| failed(err.to_string()))?;
        let current = self.current.load_full();
        // The Redis connection lives as long as the process; Debug shows every setting and each
        // secret's source, never its value.
        if format!("{:?}", plan.state.redis) != format!("{:?}", current.plan.state.redis)
            || plan.state.redis.is_some()
                && format!("{:?}", plan.state.encryption_key)
                    != format!("{:?}", current.plan.state.encryption_key)
        {
            return Err(failed(
                "[state] changed (backend, Redis settings or key): that takes a restart; \
                 the running config stays"
                    .into(),
            ));
        }
        if plan.server.workers != current.plan.server.workers {
            tracing::warn!("server.workers changed: it takes effect at the next start");
        }
        // The running writer keeps the queues and the ring it was started with.
        if let (Some(_), Some(old), Some(new)) =
            (&self.tracer, recording(&current.plan), recording(&plan))
        {
            let sizes =
                |t: &crate::config::TracePlan| (t.channel_capacity, t.queue_bytes, t.recent);
            if sizes(&old) != sizes(&new) {
                tracing::warn!(
                    "trace.channel_capacity, trace.queue_size or trace.recent changed: \
                     they take effect at the next start"
                );
            }
        }
        // Locks are known by their lock files' paths (`<file>.lock`): a file this instance
        // holds already is not locked again, which its own lock would refuse.
        let held: Vec<PathBuf> = self
            .locks
            .iter()
            .map(|lock| lock.path().to_owned())
            .collect();
        let new_locks = crate::lockfile::acquire_all(
            owned_files(&plan).filter(|file| !held.contains(&crate::lockfile::lock_path(file))),
        )
        .map_err(|err| failed(err.to_string()))?;
        let reloaded = crate::reload::compare(&current.plan, &plan, hash);
        let keep = |name: &str| reloaded.kept.iter().any(|kept| kept == name);
        let sessions = current
            .sessions
            .carry_over(&plan.routes, &plan.state, &keep)
            .map_err(|err| failed(err.to_string()))?;
        // A plan that adds [trace] gets a writer; one that drops it keeps the old writer for
        // the records of requests still in flight, and the new plan records nothing.
        let mut started_tracer = None;
        let recorded = recording(&plan);
        let tracer = match (&self.tracer, &recorded) {
            (Some(tracer), Some(_)) => Some(tracer.clone()),
            (None, Some(trace)) => {
                let (tracer, writer) =
                    Tracer::start(trace).map_err(|err| failed(err.to_string()))?;
                started_tracer = Some(writer);
                Some(tracer)
            }
            (_, None) => None,
        };
        let generation = build(
            plan,
            sessions,
            Some(&current),
            (tracer.clone(), self.redis.clone()),
            &self.status,
            &self.clock,
        )
        .map_err(|err| failed(err.to_string()))?;
        let plan = &generation.plan;
        let proxy_key = (plan.server.listen, plan.server.tls.is_some());
        let proxy_socket = if proxy_key == self.proxy.key {
            None
        } else {
            Some(
                bind(plan.server.listen, "proxy")
                    .await
                    .map_err(|err| failed(err.to_string()))?,
            )
        };
        let admin_key = plan.admin.as_ref().map(|admin| (admin.listen, false));
        let admin_socket = match admin_key {
            Some(key) if self.admin.as_ref().map(|admin| admin.key) != Some(key) => Some(
                bind(key.0, "admin")
                    .await
                    .map_err(|err| failed(err.to_string()))?,
            ),
            _ => None,
        };
        if let (Some(tracer), Some(old), Some(new)) =
            (&self.tracer, recording(&current.plan), &recorded)
        {
            if format!("{old:?}") != format!("{new:?}") {
                tracer
                    .reopen(new)
                    .await
                    .map_err(|err| failed(err.to_string()))?;
            }
        }
        // Nothing can fail from here on.
        let sessions = generation.sessions.clone();
        self.current.store(Arc::new(generation));
        if let Some(writer) = started_tracer {
            self.tracer = tracer;
            self.trace_writer = Some(writer);
        }
        self.session_writer.abort();
        self.session_writer = sessions.spawn_background();
        let plan = &self.current.load().plan;
        if let Some(socket) = proxy_socket {
            let addr = socket.local_addr().unwrap_or(plan.server.listen);
            let listener = spawn_listener(socket, proxy_key, addr, Side::Proxy, &self.current);
            tracing::info!(%addr, "proxy listener moved");
            let old = std::mem::replace(&mut self.proxy, listener);
            self.retired.push(old.retire());
        }
        match (admin_socket, admin_key) {
            (Some(socket), Some(key)) => {
                let addr = socket.local_addr().unwrap_or(key.0);
                tracing::info!(%addr, "admin listener moved");
                let listener = spawn_listener(socket, key, addr, Side::Admin, &self.current);
                if let Some(old) = self.admin.replace(listener) {
                    self.retired.push(old.retire());
                }
            }
            (_, None) => {
                if let Some(old) = self.admin.take() {
                    self.retired.push(old.retire());
                }
            }
            (None, Some(_)) => {}
        }
        let owned: Vec<PathBuf> = owned_files(plan).map(crate::lockfile::lock_path).collect();
        self.locks
            .retain(|lock| owned.iter().any(|path| path == lock.path()));
        self.locks.extend(new_locks);
        Ok(reloaded)
    }
}

/// Which of a generation's services a listener serves.
#[derive(Clone, Copy)]
enum Side {
    Proxy,
    Admin,
}

fn spawn_listener(
    socket: TcpListener,
    key: (SocketAddr, bool),
    addr: SocketAddr,
    side: Side,
    current: &Current,
) -> Listener {
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(listener::serve(socket, side, current.clone(), stopped));
    Listener {
        key,
        addr,
        stop,
        task,
    }
}

/// systemd's notification socket, when there is one (`Type=notify`); a no-op otherwise.
fn notify(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(err) = sd_notify::notify(false, states) {
        tracing::debug!("sd_notify failed: {err}");
    }
}

/// What the tracer records to: the `[trace]` table, or with an admin listener and no such table,
/// memory only — the admin ring and the console subscribe to records too.
fn recording(plan: &Plan) -> Option<crate::config::TracePlan> {
    plan.trace.clone().or_else(|| {
        plan.admin
            .as_ref()
            .map(|_| crate::config::TracePlan::in_memory().for_routes(&plan.routes))
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
