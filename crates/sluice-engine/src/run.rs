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

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sluice_core::{
    Batch, BatchLimits, Error, Position, ReadContext, Result, Sink, SinkConnector, Source, SourceEvent, StreamInfo,
    StreamSpec, Transform, TransformFactory,
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
    pub rejected: u64,
    pub duration: Duration,
    /// Where each sink wrote the stream.
    pub targets: Vec<String>,
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
    let source: Arc<dyn Source> = Arc::from(sluice_connectors::build_source(&cfg.source)?);
    let sinks: Vec<Arc<dyn SinkConnector>> = cfg
        .sinks
        .iter()
        .map(|s| sluice_connectors::build_sink(s).map(Arc::from))
        .collect::<Result<_>>()?;
    let factories = sluice_transforms::build(&cfg.transforms)?;
    let mut state = StateStore::open(&pipeline.state_dir())?;
    let state_err = |e: sluice_state::StateError| Error::connection("state store", e.to_string());
    let run_id = state
        .begin_run(&pipeline.name, &pipeline.plan_hash)
        .map_err(state_err)?;
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
    let mut result = Ok(());
    for spec in streams {
        if shared.cancel.is_cancelled() {
            break;
        }
        let stats = progress.start_stream(&spec.name, spec.total_bytes(), spec.total_rows());
        let mut run = StreamRun {
            pipeline,
            shared,
            state: &mut state,
            run_id,
            stats: stats.clone(),
            pending: VecDeque::new(),
        };
        let outcome = run.go(&source, &spec, &factories, &sinks).await;
        stats.finish();
        let counts = StreamCounts {
            read: stats.read.load(Ordering::Relaxed),
            written: stats.written.load(Ordering::Relaxed),
            rejected: stats.rejected.load(Ordering::Relaxed),
        };
        let status = match (&outcome, shared.cancel.is_cancelled()) {
            (Err(_), _) => Status::Failed,
            (Ok(_), true) => Status::Interrupted,
            (Ok(_), false) => Status::Completed,
        };
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
            duration: stats.elapsed(),
            targets: sinks.iter().map(|s| s.target(&spec.name)).collect(),
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
}

impl StreamRun<'_> {
    async fn go(
        &mut self,
        source: &Arc<dyn Source>,
        spec: &StreamSpec,
        factories: &[Box<dyn TransformFactory>],
        sinks: &[Arc<dyn SinkConnector>],
    ) -> Result<()> {
        // Plan every transform and open every sink before reading a row.
        let mut schema = spec.schema.clone();
        let mut chain: Vec<Box<dyn Transform>> = Vec::with_capacity(factories.len());
        for f in factories {
            let t = f.plan(&spec.name, schema.clone())?;
            schema = t.output_schema();
            chain.push(t);
        }
        let info = StreamInfo {
            name: spec.name.clone(),
            schema,
        };
        let complete = Arc::new(AtomicBool::new(false));
        let mut lanes = Vec::with_capacity(sinks.len());
        for s in sinks {
            let sink = match s.open(&info).await {
                Ok(sink) => sink,
                Err(e) => {
                    close_lanes(&mut lanes).await;
                    return Err(e);
                }
            };
            lanes.push(spawn_sink(
                sink,
                self.shared.capacity,
                self.shared.rejections.clone(),
                complete.clone(),
            ));
        }
        self.state
            .update_stream(
                &self.pipeline.name,
                &spec.name,
                self.run_id,
                Status::Running,
                &StreamCounts::default(),
                None,
            )
            .map_err(|e| Error::connection("state store", e.to_string()))?;

        let read_cancel = self.shared.cancel.child_token();
        let (tx, mut rx) = mpsc::channel::<SourceEvent>(self.shared.capacity);
        // Incremental sources go on from where the last run's checkpoints stand.
        let resume: HashMap<String, Position> = if source.incremental() {
            self.state
                .checkpoints(&self.pipeline.name, &spec.name)
                .map_err(|e| Error::connection("state store", e.to_string()))?
                .into_iter()
                .map(|p| (p.partition.to_string(), p))
                .collect()
        } else {
            HashMap::new()
        };
        let readers = self.spawn_readers(source, spec, tx, &read_cancel, Arc::new(resume));

        let mut error: Option<Error> = None;
        let mut seq = 0u64;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // After cancellation, readers hand over what they hold; one silent
        // for READER_GRACE (blocked on a quiet stdin) is left behind.
        let mut grace: Option<tokio::time::Instant> = None;
        let mut abandoned = false;
        loop {
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
                    self.stats.rejected.fetch_add(1, Ordering::Relaxed);
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
                            self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                            if let Err(e) = self.shared.rejections.reject(r) {
                                res = Err(e);
                                break;
                            }
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
        complete.store(error.is_none() && !self.shared.cancel.is_cancelled(), Ordering::Relaxed);
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
            None => Ok(()),
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
    ) -> Vec<JoinHandle<Result<()>>> {
        let queue = Arc::new(std::sync::Mutex::new(
            spec.partitions.iter().cloned().collect::<VecDeque<_>>(),
        ));
        let readers = self.shared.threads.clamp(1, spec.partitions.len().max(1));
        (0..readers)
            .map(|_| {
                let (source, spec, queue, cancel, tx, resume) = (
                    source.clone(),
                    spec.clone(),
                    queue.clone(),
                    cancel.clone(),
                    tx.clone(),
                    resume.clone(),
                );
                let (limits, parallelism) = (self.shared.limits, self.shared.threads);
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
                        let ctx = ReadContext {
                            out: tx.clone(),
                            cancel: cancel.clone(),
                            limits,
                            resume: resume.get(partition.id.as_ref()).cloned(),
                            parallelism,
                        };
                        if let Err(e) = source.read(&spec, &partition, ctx).await {
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

    fn refresh_written(&self, lanes: &[SinkLane]) {
        let written = lanes
            .iter()
            .map(|l| l.written.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0);
        self.stats.written.store(written, Ordering::Relaxed);
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
        if latest.is_empty() {
            return Ok(());
        }
        // Rejected rows before these positions must be on disk first.
        self.shared.rejections.flush()?;
        let positions: Vec<Position> = latest.into_values().collect();
        self.state
            .save_checkpoint(&self.pipeline.name, stream, &positions)
            .map_err(|e| Error::connection("state store", e.to_string()))?;
        let counts = StreamCounts {
            read: self.stats.read.load(Ordering::Relaxed),
            written: self.stats.written.load(Ordering::Relaxed),
            rejected: self.stats.rejected.load(Ordering::Relaxed),
        };
        self.state
            .update_stream(&self.pipeline.name, stream, self.run_id, Status::Running, &counts, None)
            .map_err(|e| Error::connection("state store", e.to_string()))?;
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
        let applied = t.apply(b).await?;
        for r in &applied.rejections {
            stats.rejected.fetch_add(1, Ordering::Relaxed);
            rejections.reject(r)?;
        }
        current = applied.batch;
    }
    Ok(current.into_iter().collect())
}

fn spawn_sink(
    mut sink: Box<dyn Sink>,
    capacity: usize,
    rejections: Arc<Rejections>,
    complete: Arc<AtomicBool>,
) -> SinkLane {
    let (tx, mut rx) = mpsc::channel::<(u64, Arc<Batch>)>(capacity);
    let acked = Arc::new(AtomicU64::new(0));
    let written = Arc::new(AtomicU64::new(0));
    let (acked_t, written_t) = (acked.clone(), written.clone());
    let task = tokio::spawn(async move {
        let durable = sink.durable_on_flush();
        let mut last = 0;
        let result: Result<()> = async {
            while let Some((seq, batch)) = rx.recv().await {
                let refused = sink.write(&batch).await?;
                for r in &refused {
                    rejections.reject(r)?;
                }
                if durable {
                    sink.flush().await?;
                    acked_t.store(seq, Ordering::Release);
                }
                written_t.fetch_add((batch.num_rows() - refused.len()) as u64, Ordering::Relaxed);
                last = seq;
            }
            Ok(())
        }
        .await;
        rx.close();
        match result {
            Ok(()) => {
                sink.finish(complete.load(Ordering::Relaxed)).await?;
                acked_t.store(last.max(acked_t.load(Ordering::Relaxed)), Ordering::Release);
                Ok(())
            }
            Err(e) => {
                // Leave whatever the sink wrote in a valid state; the run reports `e`.
                if let Err(f) = sink.finish(false).await {
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
