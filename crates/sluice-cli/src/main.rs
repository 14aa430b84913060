//! The `sluice` binary: parse arguments, call the engine, map the error to
//! an exit code.

mod cli;
mod copy;
mod display;
mod sync;

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use sluice_core::ErrorKind;
use sluice_engine::{ConfigError, Pipeline, RunProgress};
use tokio_util::sync::CancellationToken;

use cli::{Cli, Command, LogFormat};

// Batches are allocated on decoder threads and freed on runtime threads;
// glibc's per-thread arenas fragment under that pattern (peak memory grew
// with input size), mimalloc does not, and it is faster here.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `println!` that ignores a closed stdout (`sluice list | head`).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `eprintln!` that ignores a closed stderr.
macro_rules! err {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// Exit codes, one per class of failure (documented in `--help` and the README).
mod exit {
    /// `sluice verify` found a difference.
    pub const DIFFERENT: u8 = 1;
    pub const CONFIG: u8 = 2;
    pub const CONNECTION: u8 = 3;
    pub const REJECTED: u8 = 4;
    pub const INTERNAL: u8 = 70;
    pub const SIGINT: u8 = 130;
    pub const SIGTERM: u8 = 143;
}

fn init_logging(global: &cli::Global) {
    let level = match (global.quiet, global.verbose) {
        (true, _) => "error",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal, never into log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    match global.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.global);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            err!("error: cannot start the runtime: {e}");
            return ExitCode::from(exit::INTERNAL);
        }
    };
    let code = runtime.block_on(dispatch(cli));
    // A reader blocked on a quiet stdin must not keep an interrupted run alive.
    runtime.shutdown_timeout(Duration::from_millis(200));
    code
}

/// The exit code of a command's outcome, printing the error.
fn report(outcome: sluice_core::Result<ExitCode>) -> ExitCode {
    match outcome {
        Ok(code) => code,
        Err(e) => failure(&e),
    }
}

fn failure(e: &sluice_core::Error) -> ExitCode {
    err!("error: {e}");
    ExitCode::from(match e.kind() {
        ErrorKind::Config => exit::CONFIG,
        ErrorKind::Connection => exit::CONNECTION,
        ErrorKind::DataRejected => exit::REJECTED,
        ErrorKind::Interrupted => exit::SIGINT,
        ErrorKind::Internal => exit::INTERNAL,
    })
}

fn config_failure(e: &ConfigError) -> ExitCode {
    err!("error: {e}");
    ExitCode::from(exit::CONFIG)
}

async fn dispatch(cli: Cli) -> ExitCode {
    match &cli.command {
        Command::Validate { pipeline } => match sluice_engine::load(pipeline, registry()) {
            Ok(p) => {
                if !cli.global.quiet {
                    out!(
                        "{}: valid ({} transform(s), {} sink(s), plan hash {})",
                        pipeline.display(),
                        p.config.transforms.len(),
                        p.config.sinks.len(),
                        p.plan_hash
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => config_failure(&e),
        },
        Command::Run {
            pipeline,
            fresh,
            resnapshot,
        } => match sluice_engine::load(pipeline, registry()) {
            Ok(p) if sync::is_cdc(&p) => {
                if *fresh {
                    err!("--fresh: a pipeline with mode = \"cdc\" copies its tables again with --resnapshot");
                    return ExitCode::from(exit::CONFIG);
                }
                sync::run(p, *resnapshot, &cli.global).await
            }
            Ok(mut p) => {
                p.fresh = *fresh;
                execute(p, &cli.global).await
            }
            Err(e) => config_failure(&e),
        },
        Command::Copy(args) => match copy::pipeline(args) {
            Ok(mut p) => {
                p.fresh = args.fresh;
                execute(p, &cli.global).await
            }
            Err(e) => config_failure(&e),
        },
        Command::Sync(args) => sync::sync(args, &cli.global).await,
        Command::Status { pipeline, state_dir } => status(pipeline.as_deref(), state_dir.clone()),
        Command::Check { pipeline } => match sluice_engine::load(pipeline, registry()) {
            Ok(p) => {
                let mut checked = sluice_engine::inspect::check(&p).await;
                if sync::is_cdc(&p)
                    && let Ok(lines) = &mut checked
                {
                    match sync::check(&p).await {
                        Ok(more) => lines.extend(more.into_iter().map(|l| ("changes".to_string(), l))),
                        Err(e) => checked = Err(e),
                    }
                }
                report(checked.map(|lines| {
                    for (role, line) in lines {
                        out!("ok  {role}: {line}");
                    }
                    ExitCode::SUCCESS
                }))
            }
            Err(e) => config_failure(&e),
        },
        Command::Plan { pipeline } => match sluice_engine::load(pipeline, registry()) {
            Ok(p) => report(sluice_engine::inspect::plan(&p).await.map(|plan| {
                out!("{}", display::plan(&plan));
                ExitCode::SUCCESS
            })),
            Err(e) => config_failure(&e),
        },
        Command::Verify { pipeline, sample } => match sluice_engine::load(pipeline, registry()) {
            Ok(p) => {
                let cancel = CancellationToken::new();
                watch_signals(cancel.clone(), Duration::from_secs(p.config.runtime.shutdown_timeout_s));
                report(
                    sluice_engine::inspect::verify_sampled(&p, *sample, cancel)
                        .await
                        .map(|lines| {
                            out!("{}", display::verify(&lines));
                            if lines.iter().all(|l| l.matches()) {
                                ExitCode::SUCCESS
                            } else {
                                err!("verify: differences found");
                                ExitCode::from(exit::DIFFERENT)
                            }
                        }),
                )
            }
            Err(e) => config_failure(&e),
        },
        Command::List => {
            list();
            ExitCode::SUCCESS
        }
    }
}

/// Watches for SIGINT/SIGTERM: the first drains, the second aborts at once,
/// and so does a drain that takes longer than `timeout`. Aborting is safe:
/// every checkpoint is written in one transaction, with the data it covers
/// or after it is durable.
fn watch_signals(cancel: CancellationToken, timeout: Duration) -> Arc<std::sync::atomic::AtomicU8> {
    let code = Arc::new(std::sync::atomic::AtomicU8::new(0));
    let seen = code.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        loop {
            #[cfg(unix)]
            let which = tokio::select! {
                _ = tokio::signal::ctrl_c() => exit::SIGINT,
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => exit::SIGTERM,
            };
            #[cfg(not(unix))]
            let which = {
                let _ = tokio::signal::ctrl_c().await;
                exit::SIGINT
            };
            if cancel.is_cancelled() {
                err!("second signal: aborting now");
                std::process::exit(i32::from(which));
            }
            seen.store(which, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(
                "stopping: draining in-flight batches and closing outputs within {}s (signal again to abort)",
                timeout.as_secs()
            );
            cancel.cancel();
            tokio::spawn(async move {
                tokio::time::sleep(timeout).await;
                err!(
                    "the drain took longer than {}s (runtime.shutdown_timeout_s): aborting; the next run resumes \
                     from the last checkpoint",
                    timeout.as_secs()
                );
                std::process::exit(i32::from(which));
            });
        }
    });
    code
}

async fn execute(pipeline: Pipeline, global: &cli::Global) -> ExitCode {
    let cancel = CancellationToken::new();
    let signal = watch_signals(
        cancel.clone(),
        Duration::from_secs(pipeline.config.runtime.shutdown_timeout_s),
    );
    execute_in(pipeline, global, cancel, signal).await
}

/// Runs `pipeline` until done or `cancel` fires; `signal` holds the exit
/// code of the signal that fired it.
async fn execute_in(
    pipeline: Pipeline,
    global: &cli::Global,
    cancel: CancellationToken,
    signal: Arc<std::sync::atomic::AtomicU8>,
) -> ExitCode {
    let progress = Arc::new(RunProgress::default());
    let shown = CancellationToken::new();
    let display = if global.quiet {
        None
    } else {
        let interval = Duration::from_secs(pipeline.config.runtime.progress_interval_s.max(1));
        Some(tokio::spawn(display::progress(
            progress.clone(),
            shown.clone(),
            !global.no_progress,
            interval,
        )))
    };
    tracing::debug!(pipeline = %pipeline.name, plan = %pipeline.plan_hash, "starting");
    let outcome = sluice_engine::run(&pipeline, progress, cancel.clone()).await;
    shown.cancel();
    if let Some(d) = display {
        let _ = d.await;
    }
    if !global.quiet && (!outcome.report.streams.is_empty() || outcome.error.is_none()) {
        // Standard input is gone once read: an interrupted copy of it starts over.
        err!("{}", display::summary(&outcome.report, !outcome.report.consumable));
    }
    match outcome.error {
        None if cancel.is_cancelled() => {
            let code = signal.load(std::sync::atomic::Ordering::Relaxed);
            ExitCode::from(if code == 0 { exit::SIGINT } else { code })
        }
        None => ExitCode::SUCCESS,
        Some(e) => {
            // A closed stdout (`| head`) is the reader's choice, not a failure.
            if matches!(e, sluice_core::Error::OutputClosed) {
                return ExitCode::SUCCESS;
            }
            failure(&e)
        }
    }
}

fn status(pipeline: Option<&Path>, state_dir: Option<std::path::PathBuf>) -> ExitCode {
    let (name, dir) = match pipeline {
        Some(p) => match sluice_engine::load(p, registry()) {
            Ok(p) => (Some(p.name.clone()), p.state_dir()),
            Err(e) => return config_failure(&e),
        },
        None => (None, state_dir.unwrap_or_else(copy::default_state_dir)),
    };
    if !dir.join("state.db").is_file() {
        out!("no state yet in {}", dir.display());
        return ExitCode::SUCCESS;
    }
    let store = match sluice_state::StateStore::open(&dir) {
        Ok(s) => s,
        Err(e) => {
            err!("error: {e}");
            return ExitCode::from(exit::CONNECTION);
        }
    };
    let names = match name {
        Some(n) => vec![n],
        None => store.pipelines().unwrap_or_default(),
    };
    let mut rows = Vec::new();
    for n in &names {
        let running = sluice_engine::run::is_running(&dir, n);
        for s in store.streams(n).unwrap_or_default() {
            rows.push(display::StatusRow {
                pipeline: n.clone(),
                running,
                stream: s,
            });
        }
    }
    out!("{}", display::status(&rows, chrono::Utc::now()));
    let changes: Vec<_> = names
        .iter()
        .flat_map(|n| {
            store
                .changes(n)
                .unwrap_or_default()
                .into_iter()
                .map(move |c| (n.clone(), c))
        })
        .collect();
    if !changes.is_empty() {
        out!("{}", display::changes(&changes));
    }
    ExitCode::SUCCESS
}

/// Every connector this build has, for the engine.
fn registry() -> std::sync::Arc<sluice_core::Registry> {
    static REGISTRY: std::sync::OnceLock<std::sync::Arc<sluice_core::Registry>> = std::sync::OnceLock::new();
    REGISTRY
        .get_or_init(|| std::sync::Arc::new(sluice_connectors::registry()))
        .clone()
}

fn list() {
    out!("Connectors");
    let r = registry();
    let sources = r.sources().map(|f| ("source", f.info()));
    for (role, c) in sources.chain(r.sinks().map(|f| ("sink", f.info()))) {
        let aliases = match c.aliases {
            [] => String::new(),
            a => format!(" (also {})", a.join(", ")),
        };
        out!("\n  {} ({role}){aliases}: {}", c.name, c.summary);
        for (k, v) in c.options {
            out!("      {k:<40} {v}");
        }
    }
    out!("\nFormats\n  csv, tsv, json (array of objects), ndjson/jsonl, parquet; table (output preview only)");
    out!("  compression by extension: .gz (gzip), .zst (zstd)");
    out!("\nTransforms");
    for (name, opts) in sluice_transforms::CATALOG {
        out!("  {name:<12} {opts}");
    }
    out!("\nRuntime ([runtime])");
    for (k, v) in [
        ("batch_rows", "most rows per batch (32768)"),
        ("batch_bytes", "input bytes per decoding unit (2MiB)"),
        ("linger_ms", "longest a partial batch waits for slow input (500)"),
        (
            "parallelism",
            "decoding threads and partitions at once (0 = one per core)",
        ),
        ("channel_capacity", "batches buffered between stages (4)"),
        ("on_error", "stop | skip | dlq (stop)"),
        ("max_errors", "with skip/dlq: stop after this many rejected rows (none)"),
        ("dlq_path", "dead-letter NDJSON file (NAME.rejects.ndjson)"),
        (
            "state_dir",
            "state store directory (.sluice); relative paths resolve against the working directory",
        ),
        (
            "progress_interval_s",
            "seconds between progress lines when not on a terminal (10)",
        ),
        (
            "retry_initial_ms",
            "first retry waits up to this, doubling, full jitter (1000)",
        ),
        ("retry_max_ms", "longest wait; open circuit's probe delay (30000)"),
        ("retry_give_up_s", "give up after failing this long; 0 = never (600)"),
        ("breaker_threshold", "consecutive failures that open the circuit (4)"),
        (
            "shutdown_timeout_s",
            "after SIGINT/SIGTERM, abort if the drain takes longer (30)",
        ),
    ] {
        out!("  {k:<20} {v}");
    }
}
