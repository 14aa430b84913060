//! `sluice sync SRC DST`, and `sluice run` of a pipeline whose source has
//! `mode = "cdc"`: the copy of the tables, then their changes.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sluice_core::{BatchLimits, RetryPolicy};
use sluice_engine::sync::{SyncOptions, SyncProgress, stream_changes};
use tokio_util::sync::CancellationToken;
use toml::Value;

use sluice_engine::Pipeline;

use crate::cli::{CopyArgs, Global, OnErrorArg, SyncArgs};
use crate::{config_failure, copy, exit, failure, registry};

/// The job change positions are stored under, in the destination's own
/// checkpoint table beside the copy's.
const CHANGES_JOB: i64 = 0;

pub async fn sync(a: &SyncArgs, global: &Global) -> ExitCode {
    let args = CopyArgs {
        src: a.src.clone(),
        dst: a.dst.clone(),
        tables: a.tables.clone(),
        on_error: OnErrorArg::Stop,
        dlq: None,
        max_errors: None,
        format: None,
        input_format: None,
        delimiter: None,
        encoding: None,
        batch_rows: a.batch_rows,
        parallelism: None,
        state_dir: a.state_dir.clone(),
        fresh: false,
    };
    let name = copy::pipeline_name(&args, "sync");
    let mut source = match copy::source_table(&args) {
        Ok(t) => t,
        Err(e) => return config_failure(&e),
    };
    let slot = a.slot.clone().unwrap_or_else(|| name.replace('-', "_"));
    let publication = a.publication.clone().unwrap_or_else(|| slot.clone());
    source.insert("slot".into(), Value::String(slot));
    source.insert("publication".into(), Value::String(publication));
    match copy::pipeline_of(&args, "sync", source) {
        Ok(p) => run(p, a.resnapshot, global).await,
        Err(e) => config_failure(&e),
    }
}

/// Whether a pipeline's source asks for change capture (`mode = "cdc"`).
pub fn is_cdc(pipeline: &Pipeline) -> bool {
    pipeline.config.source.get("mode").and_then(Value::as_str) == Some("cdc")
}

/// The default slot of a pipeline: `sluice_` and its name, as PostgreSQL
/// spells slot names (lower case letters, digits, `_`; at most 63 bytes).
fn default_slot(pipeline: &str) -> String {
    let name: String = pipeline
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let mut slot = format!("sluice_{name}");
    slot.truncate(63);
    slot
}

/// Names the slot and the publication of a pipeline that does not.
fn name_capture(pipeline: &mut Pipeline) {
    let slot = default_slot(&pipeline.name);
    let source = &mut pipeline.config.source;
    if !source.contains_key("slot") {
        source.insert("slot".into(), Value::String(slot));
    }
    if let Some(slot) = source.get("slot").cloned()
        && !source.contains_key("publication")
    {
        source.insert("publication".into(), slot);
    }
}

/// What `sluice check` adds for a pipeline with `mode = "cdc"`: the
/// server's settings, the user's privilege, the slot.
pub async fn check(pipeline: &Pipeline) -> sluice_core::Result<Vec<String>> {
    let mut pipeline = pipeline.clone();
    name_capture(&mut pipeline);
    registry()
        .build_change_source(&pipeline.config.source)?
        .check(&[])
        .await
}

/// Copies the pipeline's tables unless its sink holds them, then applies
/// their changes to its one sink until stopped.
pub async fn run(mut pipeline: Pipeline, resnapshot: bool, global: &Global) -> ExitCode {
    if pipeline.config.sinks.len() != 1 || !pipeline.config.transforms.is_empty() {
        return failure(&sluice_core::Error::config(
            "source.mode",
            "change capture (mode = \"cdc\") writes to one sink, without transforms",
        ));
    }
    name_capture(&mut pipeline);
    let slot = pipeline
        .config
        .source
        .get("slot")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let changes = match registry().build_change_source(&pipeline.config.source) {
        Ok(c) => c,
        Err(e) => return failure(&e),
    };
    if resnapshot {
        if let Err(e) = changes.reset().await {
            return failure(&e);
        }
        eprintln!("replication slot {slot} dropped: every table is copied again");
    }
    // A slot is made by the first run (as this state directory knows it) or
    // on request; one missing later means changes went uncaptured.
    let state_dir = pipeline.state_dir();
    let ran_before = sluice_state::StateStore::open(&state_dir)
        .ok()
        .and_then(|s| s.last_run(&pipeline.name).ok().flatten())
        .is_some();
    let create = resnapshot || !ran_before;
    // A server that is restarting is waited for, as once streaming.
    let mut retrier = sluice_core::Retrier::new(RetryPolicy::default());
    let prepared = loop {
        match changes.prepare(create).await {
            Ok(p) => break p,
            Err(e) if e.is_retryable() => match retrier.failure() {
                sluice_core::retry::Next::Wait { delay, .. } => {
                    tracing::warn!(error = %e, ?delay, "preparing change capture failed; trying again");
                    tokio::time::sleep(delay).await;
                    retrier.waited();
                }
                sluice_core::retry::Next::GiveUp { .. } => return failure(&e),
            },
            Err(e) => return failure(&e),
        }
    };
    for note in &prepared.notes {
        eprintln!("{note}");
    }
    // A slot created now starts after every row the destination may hold:
    // the copy starts over, and stays owed until it completes.
    let owed = state_dir.join(format!("{}.copy-owed", pipeline.name));
    if prepared.created
        && let Err(e) = std::fs::create_dir_all(&state_dir).and_then(|()| std::fs::write(&owed, slot.as_bytes()))
    {
        return failure(&sluice_core::Error::io(&owed, e));
    }
    let cancel = CancellationToken::new();
    let signal = crate::watch_signals(cancel.clone(), Duration::from_secs(30));
    let mut backfill = pipeline.clone();
    if let Some(snapshot) = &prepared.snapshot {
        backfill
            .config
            .source
            .insert("snapshot".into(), Value::String(snapshot.clone()));
    }
    backfill.fresh = copy_owed(&owed, &state_dir, &pipeline.name);
    let code = crate::execute_in(backfill, global, cancel.clone(), signal.clone()).await;
    if code != ExitCode::SUCCESS {
        return code;
    }
    let _ = std::fs::remove_file(&owed);
    let sink = match pipeline.build_sinks().map(|mut s| s.pop()) {
        Ok(Some(s)) => s,
        Ok(None) => return failure(&sluice_core::Error::config("sinks", "change capture needs a sink")),
        Err(e) => return failure(&e),
    };
    let progress = Arc::new(SyncProgress::default());
    let opts = SyncOptions {
        pipeline: pipeline.name.clone(),
        job: CHANGES_JOB,
        limits: BatchLimits {
            rows: pipeline.config.runtime.batch_rows,
            // How long an idle feed waits before it answers that nothing
            // came: each answer confirms the slot up to a heartbeat, so a
            // slot whose tables are idle does not hold the server's WAL.
            linger: Duration::from_millis(50),
            ..BatchLimits::default()
        },
        retry: RetryPolicy::default(),
        state_dir: Some(state_dir.clone()),
    };
    if !global.quiet {
        eprintln!(
            "streaming changes of {} tables (slot {slot}); Ctrl-C stops",
            prepared.streams.len()
        );
    }
    let shown = CancellationToken::new();
    let reporter = (!global.quiet).then(|| tokio::spawn(report(progress.clone(), shown.clone())));
    let outcome = stream_changes(
        changes.as_ref(),
        &prepared.streams,
        sink.as_ref(),
        &opts,
        progress.clone(),
        cancel.clone(),
    )
    .await;
    shown.cancel();
    if let Some(r) = reporter {
        let _ = r.await;
    }
    if !global.quiet {
        eprintln!("{} changes applied", progress.total.load(Ordering::Relaxed));
    }
    match outcome {
        Ok(()) if cancel.is_cancelled() => {
            let code = signal.load(Ordering::Relaxed);
            ExitCode::from(if code == 0 { exit::SIGINT } else { code })
        }
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => failure(&e),
    }
}

/// Whether the copy must start a new job: a slot was created (`owed`
/// exists) and no run of the copy started since, so the last job, if any,
/// copied the tables for an earlier slot. Once a run started after the
/// slot, an interrupted copy resumes where it stopped.
fn copy_owed(owed: &std::path::Path, state_dir: &std::path::Path, pipeline: &str) -> bool {
    let Ok(created) = std::fs::metadata(owed).and_then(|m| m.modified()) else {
        return false;
    };
    let last = sluice_state::StateStore::open(state_dir)
        .ok()
        .and_then(|s| s.last_run(pipeline).ok().flatten())
        .and_then(|r| chrono::DateTime::parse_from_rfc3339(&r.started_at).ok());
    match last {
        Some(started) => std::time::SystemTime::from(started) < created,
        None => true,
    }
}

/// A line every ten seconds while changes are applied.
async fn report(progress: Arc<SyncProgress>, stop: CancellationToken) {
    let mut last = 0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
        let total = progress.total.load(Ordering::Relaxed);
        let confirmed = progress.confirmed.lock().ok().and_then(|c| c.clone());
        eprintln!(
            "{total} changes applied ({}/s), confirmed {}",
            (total - last) / 10,
            confirmed.map_or("nothing yet".to_string(), |c| c.to_string())
        );
        last = total;
    }
}
