//! The `provproxy` command line: parse arguments, call the library, map errors to exit codes.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// glibc's malloc was a fifth of the proxy's instructions per request (callgrind); mimalloc's
/// thread-local free lists make the many small, short-lived allocations of an exchange cheap.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit codes, as ripgrep's: scripts can tell "found something" from "could not look".
const EXIT_CODES: &str = "\
Exit codes:
  0  success; for diagnose: no exchange failed as the client saw it
  1  diagnose found failed exchanges; check found the config invalid; run could not start
     (a file locked by another instance, an address in use, a bad state file, ...)
  2  usage error, or a file that cannot be read (the config, the trace)";

#[derive(Parser)]
#[command(
    name = "provproxy",
    version,
    about = "A session-aware reverse proxy for identity provisioning connectors",
    after_help = EXIT_CODES
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
    #[command(after_help = EXIT_CODES)]
    Run {
        #[arg(long, short)]
        config: PathBuf,
        /// Move a corrupt session state file aside instead of refusing to start.
        #[arg(long)]
        reset_sessions: bool,
    },
    /// Validate a config and print the resolved plan (secrets masked).
    #[command(after_help = EXIT_CODES)]
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run the field cases against built-in targets, as they are and through the proxy.
    Demo {
        /// Where the demo writes its HAR and JSON-lines traces.
        #[arg(long, default_value_os_t = std::env::temp_dir().join("provproxy-demo"))]
        trace_dir: PathBuf,
        /// Afterwards, keep the session-locked case running behind a proxy with its admin
        /// listener on loopback and print the console's URL; Ctrl-C stops it.
        #[arg(long)]
        console: bool,
    },
    /// Read a trace — a HAR (provproxy's, a browser's, Fiddler's, Charles', mitmproxy's) or
    /// provproxy's JSON lines — and name the likely cause of each exchange that failed as the
    /// client saw it. Exchanges the proxy recovered (re-login, new token) are shown as such.
    #[command(after_help = EXIT_CODES)]
    Diagnose {
        /// The trace file; HAR or JSON lines, told apart by content.
        #[arg(required_unless_present = "compare")]
        trace: Option<PathBuf>,
        /// Print the report as JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Compare the call that works with the one that fails, differences that matter
        /// first: `GOOD.har#N BAD.har#M` (entry numbers from 1; without one, the first
        /// exchange that succeeded in GOOD and the first that failed in BAD). Exits 1 when
        /// they differ.
        #[arg(long, num_args = 2, value_names = ["GOOD[#N]", "BAD[#M]"], conflicts_with = "trace")]
        compare: Option<Vec<String>>,
    },
}

/// Findings, an invalid config, a failed start.
const FAILURE: u8 = 1;
/// A file that cannot be read.
const UNREADABLE: u8 = 2;

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
            return fail(&err, FAILURE);
        }
    }
    match cli.command {
        Command::Check { config } => match provproxy::config::load(&config) {
            Ok(plan) => print_out(&provproxy::config::render(&plan)).unwrap_or(ExitCode::SUCCESS),
            Err(err) => config_failure(&err),
        },
        Command::Run {
            config,
            reset_sessions,
        } => run(&config, reset_sessions),
        Command::Diagnose {
            compare: Some(sides),
            json,
            ..
        } => compare(&sides, json),
        Command::Diagnose {
            trace: Some(trace),
            json,
            ..
        } => diagnose(&trace, json),
        Command::Diagnose { .. } => fail(&"diagnose needs a trace file or --compare", UNREADABLE),
        Command::Demo { trace_dir, console } => {
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(runtime) => runtime,
                Err(err) => return fail(&err, FAILURE),
            };
            let mut stdout = std::io::stdout();
            let passed = match runtime.block_on(provproxy::demo::run(&mut stdout, &trace_dir)) {
                Ok(passed) => passed,
                Err(err) => return fail(&err, FAILURE),
            };
            if console {
                let stop = async {
                    let _ = tokio::signal::ctrl_c().await;
                };
                let served = provproxy::demo::console::run(&mut stdout, stop);
                if let Err(err) = runtime.block_on(served) {
                    return fail(&err, FAILURE);
                }
            }
            if passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn run(config: &Path, reset_sessions: bool) -> ExitCode {
    let plan = match provproxy::config::load(config) {
        Ok(plan) => plan,
        Err(err) => return config_failure(&err),
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
        Err(err) => return fail(&err, FAILURE),
    };
    runtime.block_on(async {
        let stop = match stop_signals() {
            Ok(stop) => stop,
            Err(err) => return fail(&format!("cannot handle signals: {err}"), FAILURE),
        };
        let options = provproxy::server::StartOptions {
            reset_sessions,
            ..Default::default()
        };
        let running = match provproxy::server::start_with(plan, options).await {
            Ok(running) => running,
            Err(err) => return fail(&err, FAILURE),
        };
        stop.await;
        tracing::info!("shutting down: draining in-flight requests");
        running.shutdown().await;
        ExitCode::SUCCESS
    })
}

fn diagnose(trace: &Path, json: bool) -> ExitCode {
    let text = match std::fs::read_to_string(trace) {
        Ok(text) => text,
        Err(err) => {
            return fail(
                &format!("cannot read {}: {err}", trace.display()),
                UNREADABLE,
            )
        }
    };
    let report = match provproxy::diagnose::diagnose(&text) {
        Ok(report) => report,
        Err(err) => return fail(&format!("{}: {err}", trace.display()), UNREADABLE),
    };
    let text = if json {
        format!("{}\n", provproxy::diagnose::render_json(&report))
    } else {
        provproxy::diagnose::render_text(&report)
    };
    if let Some(failed) = print_out(&text) {
        return failed;
    }
    if report.has_failures() {
        ExitCode::from(FAILURE)
    } else {
        ExitCode::SUCCESS
    }
}

/// `diagnose --compare GOOD[#N] BAD[#M]`.
fn compare(sides: &[String], json: bool) -> ExitCode {
    use provproxy::diagnose::compare::{self, Pick};
    let [good, bad] = sides else {
        return fail(&"--compare takes two traces", UNREADABLE);
    };
    // `trace.har#3`: the number after the last `#`, when it is one, picks the entry.
    let split = |arg: &str, default: Pick| match arg.rsplit_once('#') {
        Some((path, n)) if n.parse::<usize>().is_ok_and(|n| n > 0) => {
            (path.to_owned(), n.parse().map_or(default, Pick::Position))
        }
        _ => (arg.to_owned(), default),
    };
    let (good_path, good_pick) = split(good, Pick::FirstOk);
    let (bad_path, bad_pick) = split(bad, Pick::FirstFailed);
    let mut texts = Vec::new();
    for path in [&good_path, &bad_path] {
        match std::fs::read_to_string(path) {
            Ok(text) => texts.push(text),
            Err(err) => return fail(&format!("cannot read {path}: {err}"), UNREADABLE),
        }
    }
    let comparison = match compare::compare(&texts[0], good_pick, &texts[1], bad_pick) {
        Ok(comparison) => comparison,
        Err(err) => return fail(&err, UNREADABLE),
    };
    let text = if json {
        format!(
            "{}\n",
            serde_json::to_string_pretty(&comparison).unwrap_or_default()
        )
    } else {
        compare::render_text(&comparison, &good_path, &bad_path)
    };
    if let Some(failed) = print_out(&text) {
        return failed;
    }
    if comparison.differences.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(FAILURE)
    }
}

/// Writes to stdout; `Some` exit code when that failed. A reader that went away
/// (`provproxy diagnose x.har | head -1`) is a normal end of the output, not an error: what is
/// left is dropped quietly.
fn print_out(text: &str) -> Option<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => {
            Some(fail(&format!("cannot write the output: {err}"), UNREADABLE))
        }
        _ => None,
    }
}

/// A config that cannot be read is an I/O error (2); one that says something wrong is invalid (1).
fn config_failure(err: &provproxy::config::ConfigError) -> ExitCode {
    let code = if err.line == 0 { UNREADABLE } else { FAILURE };
    fail(err, code)
}

fn fail(err: &dyn std::fmt::Display, code: u8) -> ExitCode {
    eprintln!("provproxy: {err}");
    ExitCode::from(code)
}

/// Colours only for a person at a terminal, and not when they asked for none
/// (<https://no-color.org>): a log file or a pipe gets plain text.
fn use_colours() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty());
    !no_color && std::io::stderr().is_terminal()
}

fn init_logging(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(use_colours())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// SIGINT or SIGTERM. Installed before the proxy listens: a SIGTERM that arrives as soon as it
/// does (systemd stopping a unit that just started) must drain and exit 0, not kill it.
fn stop_signals() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}
