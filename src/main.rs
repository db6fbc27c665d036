//! The `provproxy` command line: parse arguments, call the library, map errors to exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// glibc's malloc was a fifth of the proxy's instructions per request (callgrind); mimalloc's
/// thread-local free lists make the many small, short-lived allocations of an exchange cheap.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "provproxy",
    version,
    about = "A session-aware reverse proxy for identity provisioning connectors"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve until SIGINT/SIGTERM, then drain in-flight requests.
    Run {
        #[arg(long, short)]
        config: PathBuf,
        /// Move a corrupt session state file aside instead of refusing to start.
        #[arg(long)]
        reset_sessions: bool,
    },
    /// Validate a config and print the resolved plan (secrets masked).
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run the field cases against built-in targets, as they are and through the proxy.
    Demo {
        /// Where the demo writes its HAR and JSON-lines traces.
        #[arg(long, default_value_os_t = std::env::temp_dir().join("provproxy-demo"))]
        trace_dir: PathBuf,
    },
    /// Read a HAR file (provproxy's, a browser's, Fiddler's, Charles', mitmproxy's) and name the
    /// likely cause of each failed exchange.
    Diagnose {
        /// The HAR file.
        trace: PathBuf,
        /// Print the findings as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo narrates on stdout; the proxies it starts should only speak up when worried.
    let default_level = if matches!(cli.command, Command::Demo { .. }) {
        "warn"
    } else {
        "info"
    };
    init_logging(cli.log_format, default_level);
    // Before any secret is read: `check` and `run` both resolve the config's secrets.
    if matches!(cli.command, Command::Check { .. } | Command::Run { .. }) {
        if let Err(err) = provproxy::hardening::disable_core_dumps() {
            return fail(&err);
        }
    }
    match cli.command {
        Command::Check { config } => match provproxy::config::load(&config) {
            Ok(plan) => {
                print!("{}", provproxy::config::render(&plan));
                ExitCode::SUCCESS
            }
            Err(err) => fail(&err),
        },
        Command::Run {
            config,
            reset_sessions,
        } => {
            let plan = match provproxy::config::load(&config) {
                Ok(plan) => plan,
                Err(err) => return fail(&err),
            };
            for warning in &plan.warnings {
                tracing::warn!("{warning}");
            }
            // One worker needs no work-stealing scheduler: a current-thread runtime spares every
            // task wake-up the cross-thread queue and its atomics.
            let mut builder = if plan.server.workers == 1 {
                tokio::runtime::Builder::new_current_thread()
            } else {
                let mut builder = tokio::runtime::Builder::new_multi_thread();
                builder.worker_threads(plan.server.workers);
                builder
            };
            let runtime = match builder.enable_all().build() {
                Ok(runtime) => runtime,
                Err(err) => return fail(&err),
            };
            runtime.block_on(async {
                let options = provproxy::server::StartOptions { reset_sessions };
                let running = match provproxy::server::start_with(plan, options).await {
                    Ok(running) => running,
                    Err(err) => return fail(&err),
                };
                wait_for_signal().await;
                tracing::info!("shutting down: draining in-flight requests");
                running.shutdown().await;
                ExitCode::SUCCESS
            })
        }
        Command::Diagnose { trace, json } => diagnose(&trace, json),
        Command::Demo { trace_dir } => {
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(runtime) => runtime,
                Err(err) => return fail(&err),
            };
            let mut stdout = std::io::stdout();
            match runtime.block_on(provproxy::demo::run(&mut stdout, &trace_dir)) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(err) => fail(&err),
            }
        }
    }
}

fn diagnose(trace: &std::path::Path, json: bool) -> ExitCode {
    let text = match std::fs::read_to_string(trace) {
        Ok(text) => text,
        Err(err) => return fail(&format!("cannot read {}: {err}", trace.display())),
    };
    match provproxy::trace::diagnose::diagnose(&text) {
        Ok(report) if json => {
            println!("{}", provproxy::trace::diagnose::render_json(&report));
            ExitCode::SUCCESS
        }
        Ok(report) => {
            print!("{}", provproxy::trace::diagnose::render_text(&report));
            ExitCode::SUCCESS
        }
        Err(err) => fail(&format!("{}: {err}", trace.display())),
    }
}

fn fail(err: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("provproxy: {err}");
    ExitCode::FAILURE
}

fn init_logging(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn wait_for_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
