//! Running a pipeline: one stream at a time, its partitions read in
//! parallel, its batches transformed and fanned out to every sink.
//!
//! ```text
//! readers (one per partition, ≤ parallelism at once)
//!    │  bounded channel of SourceEvents (back-pressure)
//!    ▼
//! coordinator: transforms → seq number → fan-out ──► sink task × N
//!    ▲                                                 │ write, flush
//!    └──────────── acked seq per sink ◄────────────────┘
//! ```
//!
//! Every batch leaving the transforms gets a sequence number; each sink task
//! reports the highest sequence it has made durable (after `flush`, or at
//! `finish` for sinks that are only durable then). A source position is
//! checkpointed once the smallest acknowledged sequence over all sinks has
//! passed the batch that carried it, so nothing is checkpointed before every
//! sink holds it. The dead-letter file is flushed before each checkpoint.
//!
//! Cancellation (Ctrl-C) stops the readers at a batch boundary; what was
//! already read is drained through the transforms into the sinks, which are
//! finished so every output stays valid, and the final checkpoint is written.
//!
//! # Jobs and resume
//!
//! A run after an unfinished one (interrupted, failed, or killed while
//! `running`) continues it when the plan hash is the same, and refuses when
//! it changed (`--fresh` starts over). Streams the job completed are skipped;
//! the others read the partitions stored when the job first met them, from
//! the resume point of each partition: the smallest of the positions every
//! exactly-once sink stored with its data ([`Sink::committed`]) and, when a
//! sink keeps no positions of its own, of the state store's checkpoint. A
//! sink that got further than that point skips the batches it already holds.
//!
//! # Retries
//!
//! A read, write or reconnection that fails with a retryable error waits
//! (capped exponential backoff with full jitter, a circuit breaker after
//! consecutive failures; [`sluice_core::retry`]) and tries again. A reader
//! resumes its partition after the last batch it handed over; a sink is
//! reopened and asked what it committed, so a batch whose commit
//! acknowledgement was lost is not written twice (and counts as written),
//! and a row refused again when a batch is written again counts once.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sluice_core::retry::Next;
use sluice_core::{
    Batch, BatchLimits, Error, PartitionSpec, PayloadFormat, Position, ReadContext, Result, Retrier, RetryPolicy, Sink,
    SinkConnector, Source, SourceEvent, StreamInfo, StreamSpec, Transform, TransformFactory,
};
use sluice_state::{StateStore, Status, StreamCounts};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Pipeline;
use crate::dlq::Rejections;
use crate::progress::{RunProgress, StreamStats};

/// The coordinator's error when a sink task ended early; replaced by the sink's own.
const SINK_STOPPED: &str = "a sink stopped early";

/// How long readers may take to stop once cancelled.
const READER_GRACE: Duration = Duration::from_secs(3);

/// What one stream did.
#[derive(Debug, Clone)]
pub struct StreamReport {
    pub name: String,
    pub read: u64,
    /// Rows every sink holds (the smallest count over the sinks).
    pub written: u64,
    /// Rows refused by the source, a transform or a sink.
    pub rejected: u64,
    /// Rows a transform removed (a filter): read = written + rejected + filtered.
    pub filtered: u64,
    pub duration: Duration,
    /// Where each sink wrote the stream.
    pub targets: Vec<String>,
    /// Failed attempts that were retried.
    pub retries: u64,
    /// Rows an earlier run of the job had delivered (a resumed stream).
    pub resumed_from: u64,
    /// The job had already completed the stream; nothing was read.
    pub skipped: bool,
    /// Skipped because every sink's destination already held the whole
    /// stream, loaded by an earlier job of the pipeline.
    pub held: bool,
    /// The rows went from source to sink in the source's encoding, not
    /// decoded ([`sluice_core::Payload`]): the format's id.
    pub passthrough: Option<String>,
}

/// What a run did, also when it failed or was interrupted.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    pub streams: Vec<StreamReport>,
    pub rejected: u64,
    /// The dead-letter file, if any row went there.
    pub dlq: Option<PathBuf>,
    pub interrupted: bool,
    pub duration: Duration,
    /// The earlier run this one continued, if any.
    pub resumed_run: Option<i64>,
    /// The run that completed the job, when this one found it complete
    /// (and so had nothing to do).
    pub complete_run: Option<i64>,
    /// The source can be read only once (standard input): an interrupted
    /// run starts over instead of resuming.
    pub consumable: bool,
}

/// The report and, if the run failed, why.
pub struct RunOutcome {
    pub report: RunReport,
    pub error: Option<Error>,
}

struct Shared {
    limits: BatchLimits,
    threads: usize,
    capacity: usize,
    rejections: Arc<Rejections>,
    cancel: CancellationToken,
    policy: RetryPolicy,
}

/// Runs a pipeline to the end, to its first fatal error, or until `cancel`.
pub async fn run(pipeline: &Pipeline, progress: Arc<RunProgress>, cancel: CancellationToken) -> RunOutcome {
    let started = Instant::now();
    let rt = &pipeline.config.runtime;
    let rejections = Arc::new(Rejections::new(rt.on_error, rt.max_errors, pipeline.dlq_path()));
    let shared = Shared {
        limits: rt.limits(),
        threads: rt.threads(),
        capacity: rt.channel_capacity,
        rejections: rejections.clone(),
        cancel: cancel.clone(),
        policy: rt.retry(),
    };
    let mut report = RunReport::default();
    let error = run_streams(pipeline, &shared, &progress, &mut report).await.err();
    if let Err(e) = rejections.flush() {
        tracing::error!(error = %e, "cannot flush the dead-letter file");
    }
    report.rejected = rejections.count();
    report.dlq = rejections.written_path();
    report.interrupted = cancel.is_cancelled();
    report.duration = started.elapsed();
    RunOutcome { report, error }
}

async fn run_streams(
    pipeline: &Pipeline,
    shared: &Shared,
    progress: &Arc<RunProgress>,
    report: &mut RunReport,
) -> Result<()> {
    let cfg = &pipeline.config;
    let source: Arc<dyn Source> = Arc::from(pipeline.build_source()?);
    report.consumable = source.consumable();
    let sinks: Vec<Arc<dyn SinkConnector>> = pipeline.build_sinks()?.into_iter().map(Arc::from).collect();
    let factories = sluice_transforms::build(&cfg.transforms)?;
    let mut state = StateStore::open(&pipeline.state_dir())?;
    let _lock = lock_pipeline(&pipeline.state_dir(), &pipeline.name)?;
    let incremental = source.incremental();
    let last = state.last_run(&pipeline.name).map_err(state_err)?;
    let mut resuming = false;
    if let Some(r) = last.as_ref().filter(|_| !pipeline.fresh) {
        if r.status != "completed" {
            if r.plan_hash != pipeline.plan_hash {
                return Err(Error::config(
                    "plan",
                    format!(
                        "pipeline `{}` changed since its unfinished run #{} of {} (plan hash {} then, {} now); resuming it \
                         could lose or repeat rows. Run again with --fresh to start over, or restore the configuration \
                         of that run to resume it",
                        pipeline.name, r.id, r.started_at, r.plan_hash, pipeline.plan_hash
                    ),
                ));
            }
            tracing::info!(pipeline = %pipeline.name, run = r.id, "resuming the unfinished run #{} (status {})", r.id, r.status);
            report.resumed_run = Some(r.id);
            resuming = true;
        } else if !incremental {
            // A complete job is done: running it again skips every stream
            // it completed, so it never loads its rows a second time.
            if r.plan_hash != pipeline.plan_hash {
                return Err(Error::config(
                    "plan",
                    format!(
                        "pipeline `{}` changed since its job completed in run #{} of {} (plan hash {} then, {} now); \
                         running it again would load its rows a second time. Run with --fresh to start a new job, \
                         which replaces what the last one wrote (in the default mode)",
                        pipeline.name, r.id, r.started_at, r.plan_hash, pipeline.plan_hash
                    ),
                ));
            }
            if source.consumable() {
                return Err(Error::config(
                    "plan",
                    format!(
                        "pipeline `{}` reads standard input and its job completed in run #{} of {}; this input was \
                         not read. Run with --fresh to load it as a new job (in the default mode it replaces what \
                         the last one loaded; with mode = \"append\" it adds to it)",
                        pipeline.name, r.id, r.started_at
                    ),
                ));
            }
            tracing::info!(pipeline = %pipeline.name, run = r.id, "the job completed in run #{}: nothing to do", r.id);
            report.complete_run = Some(r.id);
            resuming = true;
        }
    }
    // A new job forgets the last one's progress; an incremental source keeps
    // its cursors unless told to start over.
    let continuing = resuming || (incremental && !pipeline.fresh);
    if !continuing {
        state.reset(&pipeline.name).map_err(state_err)?;
    }
    shared.rejections.continue_file(resuming);
    let job = last.filter(|_| continuing).map(|r| r.job);
    let run_id = state
        .begin_run(&pipeline.name, &pipeline.plan_hash, job)
        .map_err(state_err)?;
    // A new job's number is drawn by the state store (random, so that the
    // jobs of two state directories never meet in a destination).
    let job = match job {
        Some(j) => j,
        None => state
            .last_run(&pipeline.name)
            .map_err(state_err)?
            .map_or(run_id, |r| r.job),
    };
    // A job that followed others here was started with --fresh: what they
    // wrote is replaced, also by the runs that resume it.
    let fresh = pipeline.fresh || state.other_jobs(&pipeline.name, job).map_err(state_err)?;
    // Discovery may wait on a pipe for its first rows; Ctrl-C still ends it.
    let discovered = tokio::select! {
        biased;
        _ = shared.cancel.cancelled() => Err(Error::Interrupted),
        r = source.discover() => r,
    };
    let streams = match discovered {
        Ok(s) => s,
        Err(e) => {
            let _ = state.end_run(run_id, Status::Failed, Some(&e.to_string()));
            return Err(e);
        }
    };
    warn_not_copied(source.as_ref()).await;
    let mut result = Ok(());
    for mut spec in streams {
        if shared.cancel.is_cancelled() {
            break;
        }
        let layout = state.stream_layout(&pipeline.name, &spec.name).map_err(state_err)?;
        if resuming
            && !incremental
            && let Some((status, partitions)) = &layout
        {
            if status == "completed" {
                tracing::info!(stream = %spec.name, "already completed by this job; skipped");
                report.streams.push(StreamReport {
                    name: spec.name.to_string(),
                    read: 0,
                    written: 0,
                    rejected: 0,
                    filtered: 0,
                    duration: Duration::ZERO,
                    targets: sinks.iter().map(|s| s.target(&spec.name)).collect(),
                    retries: 0,
                    resumed_from: 0,
                    skipped: true,
                    held: false,
                    passthrough: None,
                });
                continue;
            }
            // Read what the job started reading, however discovery would cut it now.
            let stored = match partitions
                .as_deref()
                .map(|p| stored_partitions(pipeline, &spec.name, p))
            {
                None => None,
                Some(Ok(stored)) => Some(stored),
                Some(Err(e)) => {
                    result = Err(e);
                    break;
                }
            };
            if let Some(stored) = stored
                && stored != spec.partitions
            {
                tracing::info!(stream = %spec.name, "reading the {} partition(s) the job started with", stored.len());
                spec.partitions = stored;
            }
        }
        let stats = progress.start_stream(&spec.name, spec.total_bytes(), spec.total_rows());
        let mut run = StreamRun {
            pipeline,
            shared,
            state: &mut state,
            run_id,
            stats: stats.clone(),
            pending: VecDeque::new(),
            // Only a stream this job already started has anything to resume.
            resume: (resuming && layout.is_some()) || (incremental && !pipeline.fresh),
            job,
            fresh,
            incremental,
            passthrough: None,
        };
        let outcome = run.go(&source, &spec, &factories, &sinks).await;
        let passthrough = run.passthrough.take().map(|f| f.id.to_string());
        stats.finish();
        let counts = StreamCounts {
            read: stats.read.load(Ordering::Relaxed),
            written: stats.written.load(Ordering::Relaxed),
            rejected: stats.rejected.load(Ordering::Relaxed),
            filtered: stats.filtered.load(Ordering::Relaxed),
        };
        // A stream whose sinks all finished a complete load is complete, even
        // if a signal came in while they were finishing.
        let status = match &outcome {
            Err(_) => Status::Failed,
            Ok(StreamEnd::Interrupted) => Status::Interrupted,
            Ok(StreamEnd::Complete | StreamEnd::Held) => Status::Completed,
        };
        let held = matches!(outcome, Ok(StreamEnd::Held));
        let last_error = outcome.as_ref().err().map(|e| e.to_string());
        if let Err(e) = state.update_stream(
            &pipeline.name,
            &spec.name,
            run_id,
            status,
            &counts,
            last_error.as_deref(),
        ) {
            tracing::error!(error = %e, "cannot record stream state");
        }
        report.streams.push(StreamReport {
            name: spec.name.to_string(),
            read: counts.read,
            written: counts.written,
            rejected: counts.rejected,
            filtered: counts.filtered,
            duration: stats.elapsed(),
            targets: sinks.iter().map(|s| s.target(&spec.name)).collect(),
            retries: stats.retries.load(Ordering::Relaxed),
            resumed_from: stats.resumed_from.load(Ordering::Relaxed),
            skipped: held,
            held,
            passthrough,
        });
        if let Err(e) = outcome {
            result = Err(e);
            break;
        }
    }
    let status = match (&result, shared.cancel.is_cancelled()) {
        (Err(_), _) => Status::Failed,
        (Ok(_), true) => Status::Interrupted,
        (Ok(_), false) => Status::Completed,
    };
    let msg = result.as_ref().err().map(|e| e.to_string());
    state.end_run(run_id, status, msg.as_deref()).map_err(state_err)?;
    result
}

/// The partitions a job stored for `stream` when it started it. Text that
/// does not parse is an error: reading other partitions than the job began
/// with could skip or repeat rows.
fn stored_partitions(pipeline: &Pipeline, stream: &str, json: &str) -> Result<Vec<PartitionSpec>> {
    serde_json::from_str(json).map_err(|e| {
        Error::data(
            format!("state store {}", pipeline.state_dir().display()),
            format!(
                "the partitions stored for stream `{stream}` of pipeline `{}` cannot be read ({e}); the unfinished \
                 job cannot resume them. Run again with --fresh to start the job over",
                pipeline.name
            ),
        )
    })
}

/// A state store failure, as the run's error.
fn state_err(e: sluice_state::StateError) -> Error {
    Error::connection("state store", e.to_string())
}

/// Holds the pipeline's lock file for the life of a run, so two runs of one
/// pipeline never write the same state (and `sluice status` can tell a run
/// that is going from one that was killed).
fn lock_pipeline(dir: &std::path::Path, name: &str) -> Result<std::fs::File> {
    let path = lock_path(dir, name);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::config(
            "pipeline",
            format!(
                "pipeline `{name}` is already running (lock {} is held); wait for it, or watch it with `sluice status`",
                path.display()
            ),
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
    }
}

/// The lock file of a pipeline's runs.
pub fn lock_path(dir: &std::path::Path, name: &str) -> PathBuf {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    dir.join(format!("{safe}.lock"))
}

/// Whether a run of the pipeline is going right now (its lock is held).
pub fn is_running(dir: &std::path::Path, name: &str) -> bool {
    let Ok(file) = std::fs::OpenOptions::new().write(true).open(lock_path(dir, name)) else {
        return false;
    };
    matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock))
}

/// How a stream's run ended (when it did not fail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamEnd {
    /// Every sink finished a complete load.
    Complete,
    /// Stopped by a signal; the outputs are valid and the job resumes.
    Interrupted,
    /// Every destination already held the whole stream: nothing was read.
    Held,
}

/// A sink task and what it shares with the coordinator.
struct SinkLane {
    tx: Option<mpsc::Sender<(u64, Arc<Batch>)>>,
    acked: Arc<AtomicU64>,
    written: Arc<AtomicU64>,
    task: JoinHandle<Result<()>>,
}

struct StreamRun<'a> {
    pipeline: &'a Pipeline,
    shared: &'a Shared,
    state: &'a mut StateStore,
    run_id: i64,
    stats: Arc<StreamStats>,
    /// Positions waiting for every sink's acknowledgement, by sequence.
    pending: VecDeque<(u64, Position)>,
    /// Whether this run continues the job's earlier work on the stream.
    resume: bool,
    /// The job this run belongs to.
    job: i64,
    /// The job replaces what earlier jobs of the pipeline wrote.
    fresh: bool,
    /// Whether the source reads incrementally (each run a delta).
    incremental: bool,
    /// The encoding rows travel in undecoded, when source and sink agreed on one.
    passthrough: Option<PayloadFormat>,
}

impl StreamRun<'_> {
    async fn go(
        &mut self,
        source: &Arc<dyn Source>,
        spec: &StreamSpec,
        factories: &[Box<dyn TransformFactory>],
        sinks: &[Arc<dyn SinkConnector>],
    ) -> Result<StreamEnd> {
        // Plan every transform and open every sink before reading a row.
        let mut schema = spec.schema.clone();
        let mut chain: Vec<Box<dyn Transform>> = Vec::with_capacity(factories.len());
        for f in factories {
            let t = f.plan(&spec.name, schema.clone())?;
            schema = t.output_schema();
            chain.push(t);
        }
        let mut info = StreamInfo::new(spec.name.clone(), schema, &self.pipeline.name);
        info.resume = self.resume;
        info.job = self.job;
        info.fresh = self.fresh;
        info.retry = self.shared.policy;
        let complete = Arc::new(AtomicBool::new(false));
        let failed = Arc::new(AtomicBool::new(false));
        // The job has started this stream from here on (before any sink
        // creates a table), and these are the partitions it reads.
        let partitions = serde_json::to_string(&spec.partitions)
            .map_err(|e| Error::Internal(format!("partitions of stream `{}` as JSON: {e}", spec.name)))?;
        self.state
            .start_stream(
                &self.pipeline.name,
                &spec.name,
                self.run_id,
                &partitions,
                spec.total_rows(),
                0,
            )
            .map_err(state_err)?;
        // Open every sink first (a destination that never answered is a
        // configuration problem: no retries) and ask what it already holds.
        let mut opened = Vec::with_capacity(sinks.len());
        for s in sinks {
            let outcome = match s.open(&info).await {
                // An output durable only once finished (a file) is written
                // whole again by a resumed run, unless each run writes a delta.
                Ok(sink) if !sink.durable_on_flush() && !self.incremental => Ok((sink, Some(Vec::new()))),
                Ok(mut sink) => sink.committed().await.map(|c| (sink, c)),
                Err(e) => Err(e),
            };
            match outcome {
                Ok(pair) => opened.push(pair),
                Err(e) => {
                    for (mut sink, _) in opened {
                        let _ = sink.fail().await;
                    }
                    return Err(e);
                }
            }
        }
        // Destinations that hold the whole stream already (loaded by an
        // earlier job of the pipeline) write nothing; when all do, nothing
        // is read either.
        if !opened.is_empty() && opened.iter().all(|(s, _)| s.already_complete()) {
            tracing::info!(stream = %spec.name, "already loaded whole by an earlier job of this pipeline; skipped");
            for (mut sink, _) in opened {
                sink.finish(true).await?;
            }
            return Ok(StreamEnd::Held);
        }
        let stored: Vec<Position> = if self.resume {
            self.state
                .checkpoints(&self.pipeline.name, &spec.name)
                .map_err(state_err)?
        } else {
            Vec::new()
        };
        let committed: Vec<Option<&Vec<Position>>> = opened
            .iter()
            .filter(|(s, _)| !s.already_complete())
            .map(|(_, c)| c.as_ref())
            .collect();
        let resume = resume_points(&spec.partitions, &stored, &committed);
        let resumed_from: u64 = resume.values().map(|p| p.rows).sum();
        self.stats.resumed_from.store(resumed_from, Ordering::Relaxed);
        if resumed_from > 0 {
            tracing::info!(stream = %spec.name, rows = resumed_from, "resuming after the rows already delivered");
        }
        self.state
            .set_resumed_from(&self.pipeline.name, &spec.name, resumed_from)
            .map_err(state_err)?;
        // Nothing needs the values on the way (no transform, one sink): the
        // rows may stay in the source's encoding when the sink takes it.
        self.passthrough = match opened.as_slice() {
            [(sink, _)] if chain.is_empty() => source.payload_format(spec).filter(|f| sink.accepts_payload(f)),
            _ => None,
        };
        if let Some(f) = &self.passthrough {
            tracing::info!(stream = %spec.name, format = %f.id, "binary passthrough: rows go to the sink as the source encoded them, not decoded");
        }
        let mut reopen = info.clone();
        reopen.resume = true;
        let mut lanes = Vec::with_capacity(sinks.len());
        for ((sink, committed), connector) in opened.into_iter().zip(sinks) {
            let held: HashMap<Arc<str>, u64> = committed
                .unwrap_or_default()
                .into_iter()
                .map(|p| (p.partition.clone(), p.rows))
                .collect();
            let whole = sink.already_complete();
            lanes.push(spawn_sink(
                sink,
                LaneSetup {
                    connector: connector.clone(),
                    info: reopen.clone(),
                    held,
                    whole,
                    policy: self.shared.policy,
                    retries: self.stats.clone(),
                },
                self.shared.capacity,
                self.shared.rejections.clone(),
                Ending {
                    complete: complete.clone(),
                    failed: failed.clone(),
                },
            ));
        }

        let read_cancel = self.shared.cancel.child_token();
        let (tx, mut rx) = mpsc::channel::<SourceEvent>(self.shared.capacity);
        let readers = self.spawn_readers(
            source,
            spec,
            tx,
            &read_cancel,
            Arc::new(resume),
            self.passthrough.clone(),
        );

        let mut error: Option<Error> = None;
        let mut seq = 0u64;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // After cancellation, readers hand over what they hold; one silent
        // for READER_GRACE (blocked on a quiet stdin) is left behind.
        let mut grace: Option<tokio::time::Instant> = None;
        let mut abandoned = false;
        let mut next_tick = tokio::time::Instant::now() + Duration::from_secs(1);
        loop {
            // A busy channel would starve the tick below (the select is
            // biased to events), so a due tick also runs between events.
            if tokio::time::Instant::now() >= next_tick {
                next_tick = tokio::time::Instant::now() + Duration::from_secs(1);
                tick.reset();
                self.refresh_written(&lanes);
                if let Err(e) = self.checkpoint(&spec.name, &lanes) {
                    error.get_or_insert(e);
                    read_cancel.cancel();
                }
            }
            if grace.is_none() && read_cancel.is_cancelled() {
                grace = Some(tokio::time::Instant::now() + READER_GRACE);
            }
            let deadline = grace.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            let event = tokio::select! {
                biased;
                ev = rx.recv() => ev,
                _ = tokio::time::sleep_until(deadline), if grace.is_some() => {
                    tracing::warn!(stream = %spec.name, "a reader did not stop in time; leaving it behind");
                    abandoned = true;
                    break;
                }
                _ = read_cancel.cancelled(), if grace.is_none() => continue,
                _ = tick.tick() => {
                    next_tick = tokio::time::Instant::now() + Duration::from_secs(1);
                    self.refresh_written(&lanes);
                    if let Err(e) = self.checkpoint(&spec.name, &lanes) { error.get_or_insert(e); read_cancel.cancel(); }
                    continue;
                }
            };
            let Some(event) = event else { break };
            if grace.is_some() {
                // The grace period is for silence, not for draining.
                grace = Some(tokio::time::Instant::now() + READER_GRACE);
            }
            match event {
                SourceEvent::Progress { bytes } => {
                    self.stats.bytes.fetch_add(bytes, Ordering::Relaxed);
                }
                SourceEvent::Reject(r) => {
                    // A record that did not decode was read all the same.
                    self.stats.read.fetch_add(1, Ordering::Relaxed);
                    if error.is_none()
                        && let Err(e) = self.shared.rejections.reject(&r)
                    {
                        error = Some(e);
                        read_cancel.cancel();
                    }
                }
                SourceEvent::Batch(batch) => {
                    self.stats.read.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
                    if error.is_some() {
                        continue;
                    }
                    let outcome = match apply_chain(&mut chain, 0, batch, &self.shared.rejections, &self.stats).await {
                        Ok(outs) => self.fan_out(outs, &mut seq, &lanes).await,
                        Err(e) => Err(e),
                    };
                    if let Err(e) = outcome {
                        error = Some(e);
                        read_cancel.cancel();
                    }
                }
            }
        }
        for r in readers {
            if abandoned {
                r.abort();
                continue;
            }
            match r.await {
                Ok(Ok(())) => {}
                Ok(Err(Error::Interrupted)) => {}
                Ok(Err(e)) => {
                    error.get_or_insert(e);
                }
                Err(e) => {
                    error.get_or_insert(Error::Internal(format!("reader task: {e}")));
                }
            }
        }
        // Rows held back by stateful transforms come out at the end.
        if error.is_none() && !self.shared.cancel.is_cancelled() {
            for i in 0..chain.len() {
                let flushed = chain[i].finish().await;
                let outcome = match flushed {
                    Ok(applied) => {
                        let mut outs = Vec::new();
                        let mut res = Ok(());
                        for r in &applied.rejections {
                            if let Err(e) = self.shared.rejections.reject(r) {
                                res = Err(e);
                                break;
                            }
                        }
                        // Rows held back (an aggregation) were counted as
                        // filtered when they went in; what comes out is not.
                        if let Some(b) = &applied.batch {
                            let emitted = b.num_rows() as u64;
                            let _ = self
                                .stats
                                .filtered
                                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |f| {
                                    Some(f.saturating_sub(emitted))
                                });
                        }
                        if let (Ok(()), Some(b)) = (&res, applied.batch) {
                            match apply_chain(&mut chain, i + 1, b, &self.shared.rejections, &self.stats).await {
                                Ok(o) => outs = o,
                                Err(e) => res = Err(e),
                            }
                        }
                        match res {
                            Ok(()) => self.fan_out(outs, &mut seq, &lanes).await,
                            Err(e) => Err(e),
                        }
                    }
                    Err(e) => Err(e),
                };
                if let Err(e) = outcome {
                    error = Some(e);
                    break;
                }
            }
        }
        let whole = error.is_none() && !self.shared.cancel.is_cancelled();
        complete.store(whole, Ordering::Relaxed);
        failed.store(error.is_some(), Ordering::Relaxed);
        if let Some(e) = close_lanes(&mut lanes).await {
            // A sink that stopped knows why better than the coordinator that found it gone.
            match error {
                Some(Error::Internal(ref m)) if m == SINK_STOPPED => error = Some(e),
                _ => {
                    error.get_or_insert(e);
                }
            }
        }
        self.refresh_written(&lanes);
        if let Err(e) = self.checkpoint(&spec.name, &lanes) {
            error.get_or_insert(e);
        }
        match error {
            Some(e) => Err(e),
            None if whole => Ok(StreamEnd::Complete),
            None => Ok(StreamEnd::Interrupted),
        }
    }

    /// Starts `parallelism` readers that take partitions in order from a
    /// shared queue: with one reader, files are read one after another in
    /// sorted order.
    fn spawn_readers(
        &self,
        source: &Arc<dyn Source>,
        spec: &StreamSpec,
        tx: mpsc::Sender<SourceEvent>,
        cancel: &CancellationToken,
        resume: Arc<HashMap<String, Position>>,
        payload: Option<PayloadFormat>,
    ) -> Vec<JoinHandle<Result<()>>> {
        let queue = Arc::new(std::sync::Mutex::new(
            spec.partitions.iter().cloned().collect::<VecDeque<_>>(),
        ));
        // Rows passing through undecoded have nothing to decode in parallel
        // and one writer to feed: one reader keeps it busy, leaves the
        // cores to the servers, and hands the destination the rows in
        // partition (key) order, which its index builds sort fastest.
        let readers = match payload {
            Some(_) => 1,
            None => self.shared.threads.clamp(1, spec.partitions.len().max(1)),
        };
        (0..readers)
            .map(|_| {
                let (source, spec, queue, cancel, tx, resume, payload) = (
                    source.clone(),
                    spec.clone(),
                    queue.clone(),
                    cancel.clone(),
                    tx.clone(),
                    resume.clone(),
                    payload.clone(),
                );
                let (limits, parallelism, policy) = (self.shared.limits, self.shared.threads, self.shared.policy);
                let stats = self.stats.clone();
                tokio::spawn(async move {
                    loop {
                        let next = queue
                            .lock()
                            .map_err(|_| Error::Internal("partition queue poisoned".into()))?
                            .pop_front();
                        let Some(partition) = next else { return Ok(()) };
                        if cancel.is_cancelled() {
                            return Ok(());
                        }
                        let reader = PartitionRead {
                            source: source.as_ref(),
                            spec: &spec,
                            partition: &partition,
                            out: &tx,
                            cancel: &cancel,
                            limits,
                            parallelism,
                            policy,
                            stats: &stats,
                            payload: payload.clone(),
                        };
                        if let Err(e) = reader.run(resume.get(partition.id.as_ref()).cloned()).await {
                            // One broken partition ends the stream; the others stop too.
                            cancel.cancel();
                            return Err(e);
                        }
                    }
                })
            })
            .collect()
    }

    async fn fan_out(&mut self, outs: Vec<Batch>, seq: &mut u64, lanes: &[SinkLane]) -> Result<()> {
        for out in outs {
            *seq += 1;
            if let Some(p) = &out.position {
                self.pending.push_back((*seq, p.clone()));
            }
            let batch = Arc::new(out);
            for lane in lanes {
                let Some(tx) = &lane.tx else { continue };
                if tx.send((*seq, batch.clone())).await.is_err() {
                    return Err(Error::Internal(SINK_STOPPED.into()));
                }
            }
        }
        Ok(())
    }

    /// Updates the stream's written count (what every sink holds) and its
    /// rejected count (refusals by the source, transforms and sinks alike).
    fn refresh_written(&self, lanes: &[SinkLane]) {
        let written = lanes
            .iter()
            .map(|l| l.written.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0);
        self.stats.written.store(written, Ordering::Relaxed);
        self.stats
            .rejected
            .store(self.shared.rejections.count_for(&self.stats.name), Ordering::Relaxed);
    }

    /// Stores the positions every sink has made durable.
    fn checkpoint(&mut self, stream: &str, lanes: &[SinkLane]) -> Result<()> {
        let acked = lanes
            .iter()
            .map(|l| l.acked.load(Ordering::Acquire))
            .min()
            .unwrap_or(u64::MAX);
        let mut latest: HashMap<Arc<str>, Position> = HashMap::new();
        while self.pending.front().is_some_and(|(s, _)| *s <= acked) {
            if let Some((_, p)) = self.pending.pop_front() {
                latest.insert(p.partition.clone(), p);
            }
        }
        if !latest.is_empty() {
            // Rejected rows before these positions must be on disk first.
            self.shared.rejections.flush()?;
            let positions: Vec<Position> = latest.into_values().collect();
            self.state
                .save_checkpoint(&self.pipeline.name, stream, &positions)
                .map_err(state_err)?;
        }
        self.state
            .set_retries(&self.pipeline.name, stream, self.stats.retries.load(Ordering::Relaxed))
            .map_err(state_err)?;
        let counts = StreamCounts {
            read: self.stats.read.load(Ordering::Relaxed),
            written: self.stats.written.load(Ordering::Relaxed),
            rejected: self.stats.rejected.load(Ordering::Relaxed),
            filtered: self.stats.filtered.load(Ordering::Relaxed),
        };
        self.state
            .update_stream(&self.pipeline.name, stream, self.run_id, Status::Running, &counts, None)
            .map_err(state_err)?;
        Ok(())
    }
}

/// Runs `batch` through `chain[from..]`, handling rejections on the way.
async fn apply_chain(
    chain: &mut [Box<dyn Transform>],
    from: usize,
    batch: Batch,
    rejections: &Rejections,
    stats: &StreamStats,
) -> Result<Vec<Batch>> {
    let mut current = Some(batch);
    for t in chain.iter_mut().skip(from) {
        let Some(b) = current.take() else { break };
        let rows_in = b.num_rows();
        let applied = t.apply(b).await?;
        for r in &applied.rejections {
            rejections.reject(r)?;
        }
        // What neither came out nor was rejected was filtered out.
        let rows_out = applied.batch.as_ref().map_or(0, Batch::num_rows);
        let removed = rows_in.saturating_sub(rows_out + applied.rejections.len());
        stats.filtered.fetch_add(removed as u64, Ordering::Relaxed);
        current = applied.batch;
    }
    Ok(current.into_iter().collect())
}

/// What a sink lane needs to reconnect after a retryable failure.
struct LaneSetup {
    connector: Arc<dyn SinkConnector>,
    /// The stream, opened again as a continuation.
    info: StreamInfo,
    /// Rows of each partition the sink already holds (from [`Sink::committed`]).
    held: HashMap<Arc<str>, u64>,
    /// The sink holds the whole stream ([`Sink::already_complete`]).
    whole: bool,
    policy: RetryPolicy,
    retries: Arc<StreamStats>,
}

impl LaneSetup {
    /// Whether the sink already holds `batch` (it got further than the
    /// resume point, or committed it before losing the acknowledgement).
    fn holds(&self, batch: &Batch) -> bool {
        self.whole
            || batch
                .position
                .as_ref()
                .is_some_and(|p| self.held.get(&p.partition).is_some_and(|rows| *rows >= p.rows))
    }
}

/// Writes batches: the rows of each (its refusals recorded with it), then
/// the rejections made durable, then one commit for all of them. Returns
/// the rows written.
async fn deliver(
    sink: &mut Box<dyn Sink>,
    work: Vec<(&Arc<Batch>, &mut BatchRefusals)>,
    rejections: &Rejections,
    durable: bool,
) -> Result<u64> {
    // A sink reopened after a failure that no longer takes the encoding
    // gets the rows decoded (those that do not decode are refused here).
    let mut decoded: Vec<Option<(Batch, Vec<sluice_core::Rejection>)>> = Vec::with_capacity(work.len());
    for (batch, _) in &work {
        let not_taken = batch
            .payload
            .as_ref()
            .is_some_and(|p| !sink.accepts_payload(p.format()));
        decoded.push(if not_taken { Some(batch.decoded()?) } else { None });
    }
    let batches: Vec<&Batch> = work
        .iter()
        .zip(&decoded)
        .map(|((b, _), d)| d.as_ref().map_or(b.as_ref(), |(d, _)| d))
        .collect();
    let found = sink.write_all(&batches).await?;
    if found.len() != work.len() {
        return Err(Error::Internal(format!(
            "sink answered for {} batches of {}",
            found.len(),
            work.len()
        )));
    }
    let mut total = 0;
    for (((batch, refused), d), mut found) in work.into_iter().zip(decoded).zip(found) {
        if let Some((_, undecodable)) = d {
            found.extend(undecodable);
        }
        let written = (batch.num_rows() - found.len()) as u64;
        refused.written = Some(written);
        refused.record(found, rejections)?;
        total += written;
    }
    // Dead-letter lines (the sink's, and the source's and transforms' for
    // rows before these batches) reach the disk before the batches commit.
    rejections.flush()?;
    if durable {
        sink.flush().await?;
    }
    Ok(total)
}

/// The rows a sink refused in the attempts at one batch, so that a batch
/// written again after a failure counts each refused row once.
#[derive(Default)]
struct BatchRefusals {
    /// Refusals recorded so far, over every attempt.
    recorded: Vec<sluice_core::Rejection>,
    /// Rows the last attempt whose write succeeded wrote.
    written: Option<u64>,
}

impl BatchRefusals {
    /// Records the refusals of an attempt, except rows an earlier attempt
    /// already recorded (matched by line, record and raw text).
    fn record(&mut self, found: Vec<sluice_core::Rejection>, rejections: &Rejections) -> Result<()> {
        let fresh = if self.recorded.is_empty() {
            found
        } else {
            let mut earlier: HashMap<_, usize> = HashMap::new();
            for r in &self.recorded {
                *earlier.entry(refusal_key(r)).or_default() += 1;
            }
            let new: Vec<bool> = found
                .iter()
                .map(|r| match earlier.get_mut(&refusal_key(r)) {
                    Some(n) if *n > 0 => {
                        *n -= 1;
                        false
                    }
                    _ => true,
                })
                .collect();
            found
                .into_iter()
                .zip(new)
                .filter_map(|(r, new)| new.then_some(r))
                .collect()
        };
        for r in &fresh {
            rejections.reject(r)?;
        }
        if self.recorded.is_empty() {
            self.recorded = fresh;
        } else {
            self.recorded.extend(fresh);
        }
        Ok(())
    }
}

/// What tells one refused row from another.
fn refusal_key(r: &sluice_core::Rejection) -> (Option<u64>, Option<&str>, Option<&str>) {
    (r.line, r.record.as_deref().map(|v| v.get()), r.raw.as_deref())
}

/// Delivers `batches` under one commit, reconnecting and retrying while the
/// failures are retryable.
async fn deliver_with_retries(
    sink: &mut Box<dyn Sink>,
    setup: &mut LaneSetup,
    retrier: &mut Retrier,
    batches: &[Arc<Batch>],
    rejections: &Rejections,
    durable: bool,
) -> Result<u64> {
    let mut broken = false;
    let mut refused: Vec<BatchRefusals> = batches.iter().map(|_| BatchRefusals::default()).collect();
    loop {
        let attempt = async {
            if broken {
                *sink = setup.connector.open(&setup.info).await?;
                if let Some(held) = sink.committed().await? {
                    setup.held = held.into_iter().map(|p| (p.partition.clone(), p.rows)).collect();
                }
            }
            // After a failure, batches whose commit went through (only the
            // acknowledgement was lost) count the rows of their last attempt.
            let mut done = 0;
            let mut work = Vec::new();
            for (batch, r) in batches.iter().zip(refused.iter_mut()) {
                if broken && setup.holds(batch) {
                    done += r.written.unwrap_or(0);
                } else {
                    work.push((batch, r));
                }
            }
            if work.is_empty() {
                return Ok(done);
            }
            deliver(sink, work, rejections, durable).await.map(|n| n + done)
        }
        .await;
        match attempt {
            Ok(n) => {
                if retrier.success() {
                    tracing::info!(sink = %setup.connector.name(), "circuit closed: the destination answers again");
                }
                return Ok(n);
            }
            Err(e) if e.is_retryable() => {
                broken = true;
                wait_to_retry(retrier, &e, setup.connector.name(), &setup.retries).await?;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Waits as the retrier says after `e`, or gives up with `e`.
async fn wait_to_retry(retrier: &mut Retrier, e: &Error, who: &str, stats: &StreamStats) -> Result<()> {
    match retrier.failure() {
        Next::GiveUp { attempts, failing_for } => Err(Error::connection(
            who,
            format!(
                "{e} (gave up after {attempts} attempts over {}s; raise runtime.retry_give_up_s to wait longer)",
                failing_for.as_secs()
            ),
        )),
        Next::Wait {
            delay,
            attempt,
            circuit,
        } => {
            stats.retries.fetch_add(1, Ordering::Relaxed);
            if circuit == sluice_core::retry::Circuit::Open {
                tracing::warn!(
                    stream = %stats.name, error = %e,
                    "{who}: circuit open after {attempt} failures in a row; probing again in {:.1}s",
                    delay.as_secs_f64()
                );
            } else {
                tracing::warn!(
                    stream = %stats.name, error = %e,
                    "{who}: attempt {attempt} failed; retrying in {:.1}s",
                    delay.as_secs_f64()
                );
            }
            tokio::time::sleep(delay).await;
            retrier.waited();
            Ok(())
        }
    }
}

/// One partition read, resumed after the last batch handed over when the
/// read fails with a retryable error.
struct PartitionRead<'a> {
    source: &'a dyn Source,
    spec: &'a StreamSpec,
    partition: &'a PartitionSpec,
    out: &'a mpsc::Sender<SourceEvent>,
    cancel: &'a CancellationToken,
    limits: BatchLimits,
    parallelism: usize,
    policy: RetryPolicy,
    stats: &'a StreamStats,
    /// The encoding to send rows in undecoded, if agreed.
    payload: Option<PayloadFormat>,
}

impl PartitionRead<'_> {
    async fn run(&self, mut resume: Option<Position>) -> Result<()> {
        let mut retrier = Retrier::new(self.policy);
        loop {
            // Events pass through here so the last position handed over is known.
            let (tx, mut rx) = mpsc::channel::<SourceEvent>(1);
            let ctx = ReadContext {
                out: tx,
                cancel: self.cancel.clone(),
                limits: self.limits,
                resume: resume.clone(),
                parallelism: self.parallelism,
                payload: self.payload.clone(),
            };
            let forward = async {
                let mut last = None;
                while let Some(ev) = rx.recv().await {
                    if let SourceEvent::Batch(b) = &ev
                        && let Some(p) = &b.position
                    {
                        last = Some(p.clone());
                    }
                    if self.out.send(ev).await.is_err() {
                        break;
                    }
                }
                last
            };
            let (outcome, last) = tokio::join!(self.source.read(self.spec, self.partition, ctx), forward);
            if let Some(p) = last {
                resume = Some(p);
                retrier.success();
            }
            match outcome {
                Err(e) if e.is_retryable() && !self.cancel.is_cancelled() => {
                    let who = format!("{} {}", self.source.name(), self.partition.id);
                    wait_to_retry(&mut retrier, &e, &who, self.stats).await?;
                }
                other => return other,
            }
        }
    }
}

/// Where each partition resumes: the smallest position over the sinks that
/// store their own (a partition one of them lacks starts over), and the
/// state store's checkpoint when a sink keeps none.
fn resume_points(
    partitions: &[PartitionSpec],
    stored: &[Position],
    committed: &[Option<&Vec<Position>>],
) -> HashMap<String, Position> {
    let find = |list: &[Position], id: &str| list.iter().find(|p| &*p.partition == id).cloned();
    let mut out = HashMap::new();
    for part in partitions {
        let mut candidates: Vec<Option<Position>> = committed
            .iter()
            .map(|c| match c {
                Some(list) => find(list, &part.id),
                None => find(stored, &part.id),
            })
            .collect();
        if committed.is_empty() {
            candidates.push(find(stored, &part.id));
        }
        if candidates.iter().any(Option::is_none) {
            continue;
        }
        if let Some(p) = candidates.into_iter().flatten().min_by_key(|p| p.rows) {
            out.insert(part.id.to_string(), p);
        }
    }
    out
}

/// What the coordinator tells the sink lanes about the end of the stream,
/// set before it closes their input.
struct Ending {
    /// Every batch was read, transformed and handed over.
    complete: Arc<AtomicBool>,
    /// The stream failed (not merely interrupted): nothing partial may be
    /// published ([`Sink::fail`]).
    failed: Arc<AtomicBool>,
}

fn spawn_sink(
    mut sink: Box<dyn Sink>,
    mut setup: LaneSetup,
    capacity: usize,
    rejections: Arc<Rejections>,
    ending: Ending,
) -> SinkLane {
    let (tx, mut rx) = mpsc::channel::<(u64, Arc<Batch>)>(capacity);
    let acked = Arc::new(AtomicU64::new(0));
    let written = Arc::new(AtomicU64::new(0));
    let (acked_t, written_t) = (acked.clone(), written.clone());
    let task = tokio::spawn(async move {
        let durable = sink.durable_on_flush();
        let depth = sink.pipeline_depth();
        let mut last = 0;
        let mut retrier = Retrier::new(setup.policy);
        let result: Result<()> = async {
            if depth > 1 && durable {
                last = run_pipelined(&mut sink, &setup, &mut rx, depth, &rejections, &acked_t, &written_t).await?;
                return Ok(());
            }
            let per_flush = if durable { sink.batches_per_flush().max(1) } else { 1 };
            let mut group: Vec<Arc<Batch>> = Vec::with_capacity(per_flush);
            while let Some((seq, batch)) = rx.recv().await {
                // Batches already waiting share one flush (one transaction
                // and its commit); none is waited for.
                let mut seq = seq;
                group.clear();
                group.push(batch);
                while group.len() < per_flush {
                    match rx.try_recv() {
                        Ok((s, b)) => {
                            seq = s;
                            group.push(b);
                        }
                        Err(_) => break,
                    }
                }
                group.retain(|b| !setup.holds(b));
                if !group.is_empty() {
                    let n =
                        deliver_with_retries(&mut sink, &mut setup, &mut retrier, &group, &rejections, durable).await?;
                    written_t.fetch_add(n, Ordering::Relaxed);
                }
                if durable {
                    acked_t.store(seq, Ordering::Release);
                }
                last = seq;
            }
            Ok(())
        }
        .await;
        rx.close();
        match result {
            Ok(()) if ending.failed.load(Ordering::Relaxed) => {
                // Another part of the run failed: this sink's output is not
                // published as if it were whole or cleanly interrupted.
                sink.fail().await
            }
            Ok(()) => {
                let complete = ending.complete.load(Ordering::Relaxed);
                sink.finish(complete).await?;
                // A sink durable only once finished (a file renamed into
                // place) delivers nothing when the stream is cut short: a
                // resumed run writes the whole output again.
                if complete {
                    acked_t.store(last.max(acked_t.load(Ordering::Relaxed)), Ordering::Release);
                }
                Ok(())
            }
            Err(e) => {
                // Leave whatever the sink wrote in a valid state, publishing
                // nothing partial; the run reports `e`.
                if let Err(f) = sink.fail().await {
                    tracing::warn!(error = %f, "sink could not be finished after an error");
                }
                Err(e)
            }
        }
    });
    SinkLane {
        tx: Some(tx),
        acked,
        written,
        task,
    }
}

/// How long a pipelined sink may hold written batches unflushed while no
/// new batch arrives.
const PIPELINE_LINGER: Duration = Duration::from_millis(500);

/// The lane of a sink that overlaps its requests ([`Sink::pipeline_depth`]
/// above one): up to `depth` batches are written before a flush makes them
/// durable and acknowledges them together. The sink retries transient
/// failures itself; an error here ends the stream. Returns the last
/// sequence number seen.
async fn run_pipelined(
    sink: &mut Box<dyn Sink>,
    setup: &LaneSetup,
    rx: &mut mpsc::Receiver<(u64, Arc<Batch>)>,
    depth: usize,
    rejections: &Rejections,
    acked: &AtomicU64,
    written: &AtomicU64,
) -> Result<u64> {
    let mut last = 0;
    let mut unflushed = 0usize;
    loop {
        let next = if unflushed == 0 {
            rx.recv().await
        } else {
            match tokio::time::timeout(PIPELINE_LINGER, rx.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    flush_pipelined(sink, rejections, written).await?;
                    acked.store(last, Ordering::Release);
                    unflushed = 0;
                    continue;
                }
            }
        };
        let Some((seq, batch)) = next else { break };
        if !setup.holds(&batch) {
            let refused = sink.write(&batch).await?;
            for r in &refused {
                rejections.reject(r)?;
            }
            written.fetch_add((batch.num_rows() - refused.len()) as u64, Ordering::Relaxed);
        }
        last = seq;
        unflushed += 1;
        if unflushed >= depth {
            flush_pipelined(sink, rejections, written).await?;
            acked.store(last, Ordering::Release);
            unflushed = 0;
        }
    }
    if unflushed > 0 {
        flush_pipelined(sink, rejections, written).await?;
        acked.store(last, Ordering::Release);
    }
    Ok(last)
}

/// Flushes a pipelined sink and records the rows it refused while flushing
/// (counted as written when their batch was handed over).
async fn flush_pipelined(sink: &mut Box<dyn Sink>, rejections: &Rejections, written: &AtomicU64) -> Result<()> {
    sink.flush().await?;
    let refused = sink.take_refused();
    for r in &refused {
        rejections.reject(r)?;
    }
    rejections.flush()?;
    written.fetch_sub(refused.len() as u64, Ordering::Relaxed);
    Ok(())
}

/// Closes every sink's input and waits for the sinks to finish; returns the first error.
async fn close_lanes(lanes: &mut [SinkLane]) -> Option<Error> {
    let mut first = None;
    for lane in lanes.iter_mut() {
        lane.tx = None;
    }
    for lane in lanes.iter_mut() {
        let outcome = (&mut lane.task).await;
        let err = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(e) => Some(Error::Internal(format!("sink task: {e}"))),
        };
        if let Some(e) = err {
            first.get_or_insert(e);
        }
    }
    first
}

/// Says which objects of the source database the run leaves behind (views,
/// triggers, routines), so none disappears without a word. Listing them is
/// a courtesy: a failure to is logged, not fatal.
async fn warn_not_copied(source: &dyn Source) {
    match source.not_copied().await {
        Ok(found) if !found.is_empty() => {
            let list: Vec<String> = found.iter().map(|n| n.summary(5)).collect();
            tracing::warn!(
                "not copied from the source (recreate them by hand if needed; `sluice plan` lists them all): {}",
                list.join("; ")
            );
        }
        Ok(_) => {}
        Err(e) => tracing::debug!(error = %e, "could not list the source objects that are not copied"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(id: &str) -> PartitionSpec {
        PartitionSpec {
            id: id.into(),
            bounds: serde_json::Value::Null,
            bytes: None,
            rows: None,
        }
    }

    fn pos(id: &str, rows: u64) -> Position {
        Position {
            partition: id.into(),
            cursor: serde_json::json!({ "after": rows }),
            rows,
        }
    }

    #[test]
    fn resume_points_take_the_slowest_sink_and_start_over_where_one_has_nothing() {
        let parts = [part("t#0"), part("t#1")];
        let stored = vec![pos("t#0", 100), pos("t#1", 50)];
        // One exactly-once sink: its own positions win over the state store's.
        let ahead = vec![pos("t#0", 300), pos("t#1", 80)];
        let r = resume_points(&parts, &stored, &[Some(&ahead)]);
        assert_eq!((r["t#0"].rows, r["t#1"].rows), (300, 80));
        // Two sinks: the smaller position of each partition.
        let behind = vec![pos("t#0", 200), pos("t#1", 90)];
        let r = resume_points(&parts, &stored, &[Some(&ahead), Some(&behind)]);
        assert_eq!((r["t#0"].rows, r["t#1"].rows), (200, 80));
        // A sink that holds nothing of a partition: that partition starts over.
        let partial = vec![pos("t#0", 500)];
        let r = resume_points(&parts, &stored, &[Some(&ahead), Some(&partial)]);
        assert_eq!(r["t#0"].rows, 300);
        assert!(!r.contains_key("t#1"));
        // A sink that keeps no positions of its own: the state store's.
        let r = resume_points(&parts, &stored, &[None, Some(&ahead)]);
        assert_eq!((r["t#0"].rows, r["t#1"].rows), (100, 50));
        // A file sink (holds nothing): everything starts over.
        let r = resume_points(&parts, &stored, &[Some(&Vec::new()), Some(&ahead)]);
        assert!(r.is_empty());
    }
}
