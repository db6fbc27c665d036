//! The `provproxy` command line: parse arguments, call the library, map errors to exit codes.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// glibc's malloc was a fifth of the proxy's instructions per request (callgrind); mimalloc's
/// thread-local free lists make the many small, short-lived allocations of an exchange cheap.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit codes, as ripgrep's: scripts can tell "found something" from "could not look".
const EXIT_CODES: &str = "\
Exit codes:
  0  success; for diagnose: no exchange failed as the client saw it
  1  diagnose found failed exchanges; check found the config invalid (or, with --strict, a
     secret missing); run could not start
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
    /// Serve until SIGINT/SIGTERM, then drain in-flight requests. SIGHUP reloads the config,
    /// SIGUSR1 reopens the trace files.
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
        /// Fail (exit 1) when a secret's env var or file is missing; without it, a missing
        /// secret is a warning, so a config can be checked away from the secrets it runs with.
        #[arg(long)]
        strict: bool,
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
    /// Make a HAR 1.2 from provproxy's JSON-lines trace: the entries a live HAR file would hold.
    /// A trace kept as JSON lines only costs the proxy less per request; its HAR is made when
    /// someone needs one.
    #[command(after_help = EXIT_CODES)]
    Har {
        /// The JSON-lines trace.
        jsonl: PathBuf,
        /// Where to write the HAR (created 0600); without it, standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Print a shell completion script: `provproxy completions bash > /etc/bash_completion.d/provproxy`.
    Completions {
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Print the man page (roff): `provproxy man > /usr/share/man/man1/provproxy.1`.
    Man,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Shell {
    Bash,
    Zsh,
    Fish,
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
        Command::Check { config, strict } => check(&config, strict),
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
        Command::Har { jsonl, output } => har(&jsonl, output.as_deref()),
        Command::Completions { shell } => {
            let shell = match shell {
                Shell::Bash => clap_complete::Shell::Bash,
                Shell::Zsh => clap_complete::Shell::Zsh,
                Shell::Fish => clap_complete::Shell::Fish,
            };
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "provproxy", &mut script);
            print_out(&String::from_utf8_lossy(&script)).unwrap_or(ExitCode::SUCCESS)
        }
        Command::Man => {
            let mut page = Vec::new();
            if let Err(err) = clap_mangen::Man::new(Cli::command()).render(&mut page) {
                return fail(&format!("cannot render the man page: {err}"), FAILURE);
            }
            print_out(&String::from_utf8_lossy(&page)).unwrap_or(ExitCode::SUCCESS)
        }
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
            config: Some(config.to_owned()),
            ..Default::default()
        };
        let mut operator = match operator_signals() {
            Ok(operator) => operator,
            Err(err) => return fail(&format!("cannot handle signals: {err}"), FAILURE),
        };
        let running = match provproxy::server::start_with(plan, options).await {
            Ok(running) => running,
            Err(err) => return fail(&err, FAILURE),
        };
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                _ = operator.hangup.recv() => {
                    // Logged, counted and told to systemd by the server, whatever the outcome.
                    let _ = running.reload().await;
                }
                _ = operator.user1.recv() => match running.reopen_traces().await {
                    Ok(()) => tracing::info!("trace files reopened (SIGUSR1)"),
                    Err(err) => tracing::error!("trace files could not be reopened: {err}"),
                },
            }
        }
        tracing::info!("shutting down: draining in-flight requests");
        running.shutdown().await;
        ExitCode::SUCCESS
    })
}

fn check(config: &Path, strict: bool) -> ExitCode {
    let plan = match provproxy::config::load_without_secrets(config) {
        Ok(plan) => plan,
        Err(err) => return config_failure(&err),
    };
    for missing in &plan.missing_secrets {
        eprintln!("provproxy: warning: {}: {missing}", config.display());
    }
    if let Some(failed) = print_out(&provproxy::config::render(&plan)) {
        return failed;
    }
    if strict && !plan.missing_secrets.is_empty() {
        return fail(
            &format!(
                "{} secret(s) missing, and --strict makes that an error",
                plan.missing_secrets.len()
            ),
            FAILURE,
        );
    }
    ExitCode::SUCCESS
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

/// `har FILE.jsonl [-o OUT.har]`.
fn har(jsonl: &Path, output: Option<&Path>) -> ExitCode {
    use std::os::unix::fs::OpenOptionsExt as _;
    let text = match std::fs::read_to_string(jsonl) {
        Ok(text) => text,
        Err(err) => {
            return fail(
                &format!("cannot read {}: {err}", jsonl.display()),
                UNREADABLE,
            )
        }
    };
    let made = match provproxy::trace::from_lines::har(&text) {
        Ok(made) => made,
        Err(err) => return fail(&format!("{}: {err}", jsonl.display()), UNREADABLE),
    };
    if made.torn_last_line {
        eprintln!(
            "provproxy: {}: the last line was cut short (a crash while it was written) and is left out",
            jsonl.display()
        );
    }
    let Some(output) = output else {
        return print_out(&String::from_utf8_lossy(&made.har)).unwrap_or(ExitCode::SUCCESS);
    };
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(output)
        .and_then(|mut file| file.write_all(&made.har));
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(
            &format!("cannot write {}: {err}", output.display()),
            UNREADABLE,
        ),
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

/// SIGHUP reloads the config (nginx's habit, and systemd's `ExecReload`); SIGUSR1 reopens the
/// trace files after logrotate moved them. Installed before the proxy listens, as the stop
/// signals are: their default action would kill the process.
struct OperatorSignals {
    hangup: tokio::signal::unix::Signal,
    user1: tokio::signal::unix::Signal,
}

fn operator_signals() -> std::io::Result<OperatorSignals> {
    use tokio::signal::unix::{signal, SignalKind};
    Ok(OperatorSignals {
        hangup: signal(SignalKind::hangup())?,
        user1: signal(SignalKind::user_defined1())?,
    })
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
