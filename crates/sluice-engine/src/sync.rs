//! Streaming changes: a [`ChangeSource`]'s changes applied to one sink, a
//! sink per stream, until cancelled.
//!
//! Each batch is written to its stream's sink, which stores the batch's
//! position with the rows; once every sink that got a batch has flushed,
//! the feed is told the last position ([`sluice_core::ChangeFeed::confirm`]),
//! so the source forgets only changes every destination holds. A restart
//! asks each sink what it holds ([`sluice_core::Sink::committed`]) and the
//! feed leaves those changes out, so nothing is applied twice and nothing
//! is skipped. A failure that may pass (a server restart, a lost
//! connection) reopens the feed and the sinks and goes on from there.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sluice_core::retry::Next;
use sluice_core::{
    BatchLimits, CHANGES_PARTITION, ChangeSource, Changes, Error, Result, Retrier, RetryPolicy, Sink, SinkConnector,
    StreamInfo, StreamSpec,
};
use tokio_util::sync::CancellationToken;

/// How often each stream's progress is written to the state store.
const RECORD_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// How a sync runs.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// The pipeline, which keys the positions sinks store.
    pub pipeline: String,
    /// The job the positions belong to.
    pub job: i64,
    pub limits: BatchLimits,
    pub retry: RetryPolicy,
    /// Where each stream's progress is recorded for `sluice status`, if anywhere.
    pub state_dir: Option<std::path::PathBuf>,
}

/// Live counters of a sync, per stream and in all.
#[derive(Debug, Default)]
pub struct SyncProgress {
    /// Changes durable in the sink, per stream.
    pub applied: std::sync::Mutex<HashMap<String, u64>>,
    /// Changes durable in the sinks, all streams.
    pub total: AtomicU64,
    /// The source's last confirmed position, as the source writes it.
    pub confirmed: std::sync::Mutex<Option<serde_json::Value>>,
    /// Reconnections after failures that passed.
    pub retries: AtomicU64,
    /// How far the source's newest change is ahead of the confirmed position.
    pub lag: std::sync::Mutex<Option<u64>>,
}

impl SyncProgress {
    fn add(&self, stream: &str, n: u64) {
        if let Ok(mut m) = self.applied.lock() {
            *m.entry(stream.to_string()).or_default() += n;
        }
        self.total.fetch_add(n, Ordering::Relaxed);
    }

    /// Changes applied to `stream` so far.
    pub fn applied(&self, stream: &str) -> u64 {
        self.applied
            .lock()
            .map(|m| m.get(stream).copied().unwrap_or(0))
            .unwrap_or(0)
    }
}

/// Applies `source`'s changes of `streams` (as [`sluice_core::Prepared`]
/// described them) to `sink` until `cancel` fires; returns once every
/// change received is durable and confirmed.
pub async fn stream_changes(
    source: &dyn ChangeSource,
    streams: &[StreamSpec],
    sink: &dyn SinkConnector,
    opts: &SyncOptions,
    progress: Arc<SyncProgress>,
    cancel: CancellationToken,
) -> Result<()> {
    let state = match &opts.state_dir {
        Some(dir) => Some(sluice_state::StateStore::open(dir)?),
        None => None,
    };
    if let Some(store) = &state {
        // Counts go on from the last run's.
        if let Ok(mut applied) = progress.applied.lock() {
            for c in store.changes(&opts.pipeline).unwrap_or_default() {
                applied.insert(c.stream, c.applied);
            }
        }
    }
    let recorder = Recorder {
        state,
        pipeline: opts.pipeline.clone(),
        streams: streams.iter().map(|s| s.name.to_string()).collect(),
    };
    let outcome = retrying(source, streams, sink, opts, &progress, &cancel, &recorder).await;
    recorder.record(&progress);
    outcome
}

/// Writes each stream's progress into the state store.
struct Recorder {
    state: Option<sluice_state::StateStore>,
    pipeline: String,
    streams: Vec<String>,
}

impl Recorder {
    fn record(&self, progress: &SyncProgress) {
        let Some(store) = &self.state else {
            return;
        };
        let lag = progress.lag.lock().ok().and_then(|l| *l);
        let confirmed = progress
            .confirmed
            .lock()
            .ok()
            .and_then(|c| c.as_ref().map(|c| c.to_string()));
        for s in &self.streams {
            if let Err(e) = store.record_changes(&self.pipeline, s, progress.applied(s), lag, confirmed.as_deref()) {
                tracing::warn!(error = %e, "recording the progress of changes");
            }
        }
    }
}

async fn retrying(
    source: &dyn ChangeSource,
    streams: &[StreamSpec],
    sink: &dyn SinkConnector,
    opts: &SyncOptions,
    progress: &Arc<SyncProgress>,
    cancel: &CancellationToken,
    recorder: &Recorder,
) -> Result<()> {
    let mut retrier = Retrier::new(opts.retry);
    loop {
        match apply(source, streams, sink, opts, progress, cancel, &mut retrier, recorder).await {
            Err(e) if e.is_retryable() && !cancel.is_cancelled() => match retrier.failure() {
                Next::Wait { delay, attempt, .. } => {
                    tracing::warn!(error = %e, attempt, ?delay, "change sync failed; reconnecting");
                    progress.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::select! {
                        _ = cancel.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(delay) => {}
                    }
                    retrier.waited();
                }
                Next::GiveUp { attempts, failing_for } => {
                    return Err(Error::connection(
                        source.name(),
                        format!("{e} (gave up after {attempts} attempts over {failing_for:?})"),
                    ));
                }
            },
            other => return other,
        }
    }
}

/// One connected stretch of [`stream_changes`].
#[allow(clippy::too_many_arguments)]
async fn apply(
    source: &dyn ChangeSource,
    streams: &[StreamSpec],
    connector: &dyn SinkConnector,
    opts: &SyncOptions,
    progress: &SyncProgress,
    cancel: &CancellationToken,
    retrier: &mut Retrier,
    recorder: &Recorder,
) -> Result<()> {
    let mut sinks: HashMap<String, Box<dyn Sink>> = HashMap::new();
    let mut applied = HashMap::new();
    for s in streams {
        let info = StreamInfo {
            job: opts.job,
            resume: true,
            retry: opts.retry,
            ..StreamInfo::new(s.name.clone(), s.schema.clone(), &opts.pipeline)
        };
        let mut sink = connector.open(&info).await?;
        let held = sink.committed().await?.unwrap_or_default();
        if let Some(p) = held.into_iter().find(|p| &*p.partition == CHANGES_PARTITION) {
            applied.insert(s.name.to_string(), p);
        }
        sinks.insert(s.name.to_string(), sink);
    }
    let mut feed = source.start(applied).await?;
    let mut recorded = std::time::Instant::now();
    let outcome = async {
        loop {
            let changes = tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                c = feed.next(&opts.limits) => c?,
            };
            let position = match changes {
                Changes::Idle(p) => p,
                Changes::Batches(batches) => {
                    let mut touched = BTreeSet::new();
                    let mut last = None;
                    for b in &batches {
                        let Some(sink) = sinks.get_mut(b.stream.as_ref()) else {
                            return Err(Error::Internal(format!(
                                "a change of stream {} no sink opened",
                                b.stream
                            )));
                        };
                        let refused = sink.write(b).await?;
                        if let Some(r) = refused.first() {
                            return Err(Error::Rejected(format!(
                                "{}: a change was refused: {}",
                                b.stream, r.reason
                            )));
                        }
                        touched.insert(b.stream.clone());
                        last = b.position.clone().or(last);
                    }
                    for t in &touched {
                        if let Some(sink) = sinks.get_mut(t.as_ref()) {
                            sink.flush().await?;
                        }
                    }
                    for b in &batches {
                        progress.add(&b.stream, b.num_rows() as u64);
                    }
                    match last {
                        Some(p) => p,
                        None => continue,
                    }
                }
            };
            feed.confirm(&position).await?;
            retrier.success();
            if let Ok(mut c) = progress.confirmed.lock() {
                *c = Some(position.cursor.clone());
            }
            if let Ok(mut l) = progress.lag.lock() {
                *l = feed.lag();
            }
            if recorded.elapsed() >= RECORD_EVERY {
                recorder.record(progress);
                recorded = std::time::Instant::now();
            }
        }
    }
    .await;
    for (_, mut sink) in sinks {
        if let Err(e) = sink.finish(outcome.is_ok()).await {
            tracing::warn!(error = %e, "closing a sink after syncing changes");
        }
    }
    if let Err(e) = feed.close().await {
        tracing::warn!(error = %e, "closing the change feed");
    }
    outcome
}
