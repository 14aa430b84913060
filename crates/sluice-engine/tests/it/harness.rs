//! An in-memory world for engine tests: a source of numbered rows, and
//! destinations that misbehave on purpose.
//!
//! A test makes a [`Rig`] (a temporary directory and a [`World`]), describes
//! the source ([`SourceSpec`]) and how each sink behaves ([`SinkSpec`]), and
//! gets a [`Registry`] whose `mem` source and `mem` sinks read and write that
//! world. The pipeline text selects them with `type = "mem"`; a sink names
//! its destination with `name`. Misbehaviour lives in the registry, not in
//! the text, so a test can run the same pipeline again (same plan hash, so
//! it resumes) with sinks that behave.
//!
//! # Rows
//!
//! Streams are `s0`, `s1`, …; partition `p` of a stream holds rows `0..rows`,
//! and row `i` has the id `p * rows + i` (unique in its stream) and the value
//! [`value`]`(id)` (0–99, for filters). A batch's position is the number of
//! rows of its partition read so far, which is also the cursor to resume
//! from.
//!
//! # What a destination holds
//!
//! A [`Destination`] records what is durable: the ids each stream's commits
//! stored (a row delivered twice appears twice), the positions a
//! transactional sink stored with them, and which batches were written and
//! which made durable, batch by batch. With an audit on
//! ([`World::audit`]), every commit first compares the state store's
//! checkpoint with what that destination holds.
//!
//! # Faults and time
//!
//! Faults are tied to the Nth call of `write` or `flush` ([`Step`]), counted
//! over every sink one registry built for a name (reopenings included). A
//! crash ([`Fault::Crash`]) never returns: the test drops the run, as if the
//! process died, and every connection opened before is dead from then on.
//!
//! Delays are `tokio::time` sleeps, so tests run on a paused clock: the
//! engine and these connectors do all their work on the runtime's threads
//! (the state store is synchronous SQLite, called from the coordinator;
//! there is no `spawn_blocking` or helper thread), so the clock only jumps
//! when every task waits on a timer. Sources that decode on threads of their
//! own (files, standard input) would break that, which is why the engine's
//! timing is tested here and not through them. One limit: the retrier
//! measures how long a failure has lasted (`retry_give_up_s`) with the real
//! clock, so a test cannot wait for it to give up on a paused clock.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arrow::array::{Array, Int64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use serde::Deserialize;
use sluice_core::{
    Batch, ConnectorInfo, Error, PartitionSpec, Position, ReadContext, Registry, Rejection, Result, Sink,
    SinkConnector, Source, SourceEvent, Stage, StreamInfo, StreamSpec,
};
use sluice_engine::{Pipeline, RunOutcome, RunProgress};
use sluice_state::StateStore;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The pipeline every test runs; the key of its state.
pub const PIPELINE: &str = "p";

/// The value column of row `id`: 0–99, spread so that `v < n` keeps about n %.
pub fn value(id: i64) -> i64 {
    (id * 37 + 11) % 100
}

/// The source: how many rows, and what goes wrong while reading them.
#[derive(Clone, Default)]
pub struct SourceSpec {
    /// Streams `s0`, `s1`, …
    pub streams: usize,
    /// Partitions per stream.
    pub partitions: usize,
    /// Rows per partition.
    pub rows: u64,
    /// Ids the source cannot decode: each is sent as a rejection (with line
    /// `i + 1`) before the batch that would have held it.
    pub rejects: BTreeSet<i64>,
    /// Read fails with a retryable error right after the source's Nth batch
    /// (counted over every partition of one run), once for each N.
    pub fail_after: BTreeSet<u64>,
    /// Cancel this token right after the source's Nth batch (a Ctrl-C).
    pub cancel_after: Option<(u64, CancellationToken)>,
    /// Wait this long before each batch.
    pub delay: Duration,
    /// Wait this long after the Nth batch, once.
    pub stall_after: Option<(u64, Duration)>,
    /// Keep reading after cancellation (a reader blocked where it cannot
    /// look at the token).
    pub ignore_cancel: bool,
}

impl SourceSpec {
    /// `streams` × `partitions` × `rows` rows that read without trouble.
    pub fn rows(streams: usize, partitions: usize, rows: u64) -> Self {
        SourceSpec {
            streams,
            partitions,
            rows,
            ..Default::default()
        }
    }

    /// The stream names.
    pub fn stream_names(&self) -> Vec<String> {
        (0..self.streams).map(|s| format!("s{s}")).collect()
    }

    /// Every id of one stream.
    pub fn ids(&self) -> Vec<i64> {
        (0..(self.partitions as u64 * self.rows) as i64).collect()
    }
}

/// Where a fault strikes: the Nth call (from 1) of `write` or `flush`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Write(u64),
    Flush(u64),
}

/// What goes wrong at a [`Step`]. The faults that follow a commit
/// (`LostAck`, `PartialFlush`, `CrashAfterCommit`) belong to flushes; at a
/// write they do nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The call fails with a retryable error and changes nothing.
    Retryable,
    /// The call fails for good and changes nothing.
    Fatal,
    /// A flush commits, then reports a failure (retryable or not): the
    /// destination holds the batches, the engine was not told.
    LostAck { retryable: bool },
    /// A flush completes the last half of its batches (last first), then
    /// fails for good: the destination holds later batches without earlier
    /// ones. A transactional sink commits all or nothing, so it fails
    /// before committing.
    PartialFlush,
    /// The process dies before the call does anything: it never returns.
    Crash,
    /// A flush commits, then the process dies before it returns.
    CrashAfterCommit,
}

/// How a `mem` sink behaves. The default makes each batch durable at its
/// flush and keeps no positions of its own.
#[derive(Debug, Clone, Default)]
pub struct SinkSpec {
    /// Store each batch's position with its rows, atomically at flush, and
    /// report them from `committed()`: the exactly-once sink.
    pub transactional: bool,
    /// Batches the engine may write before it flushes (0 or 1: one). Above
    /// one, rows refused come back from `take_refused` after the flush.
    pub depth: usize,
    /// A pipelined flush completes its batches last first, letting other
    /// tasks run between completions.
    pub out_of_order: bool,
    /// Batches already waiting the engine may write before one flush
    /// (`Sink::batches_per_flush`; 0 or 1: one).
    pub per_flush: usize,
    /// Ids the destination refuses.
    pub refuse: BTreeSet<i64>,
    /// How long each flush takes before it commits (slow acknowledgement).
    pub flush_delay: Duration,
    /// Faults, each at its step.
    pub faults: Vec<(Step, Fault)>,
}

impl SinkSpec {
    /// The exactly-once sink.
    pub fn transactional() -> Self {
        SinkSpec {
            transactional: true,
            ..Default::default()
        }
    }

    /// The same sink with one more fault.
    pub fn fault(mut self, step: Step, fault: Fault) -> Self {
        self.faults.push((step, fault));
        self
    }

    fn fault_at(&self, step: Step) -> Option<Fault> {
        self.faults.iter().find(|(s, _)| *s == step).map(|(_, f)| *f)
    }
}

/// What one sink's destination holds, and what was done to it.
#[derive(Debug, Clone, Default)]
pub struct Destination {
    /// Committed ids by stream, in commit order.
    pub rows: BTreeMap<String, Vec<i64>>,
    /// Times the connector opened a stream (reopenings after failures included).
    pub opens: u64,
    /// When each `write` and `flush` call came (virtual time on a paused clock).
    pub write_times: Vec<Instant>,
    pub flush_times: Vec<Instant>,
    /// How each stream ended: `complete`, `interrupted` or `failed`, per opening.
    pub ends: BTreeMap<String, Vec<&'static str>>,
    /// Positions stored with the rows (transactional), by stream: the job
    /// and the latest position of each partition.
    positions: BTreeMap<String, (i64, BTreeMap<String, Position>)>,
    /// Batch ends written, by stream and partition, and whether durable.
    batches: BTreeMap<(String, String), BTreeMap<u64, bool>>,
}

impl Destination {
    /// The rows of `stream`, sorted.
    pub fn sorted(&self, stream: &str) -> Vec<i64> {
        let mut ids = self.rows.get(stream).cloned().unwrap_or_default();
        ids.sort_unstable();
        ids
    }

    /// How far `partition` of `stream` is durable without a gap: the end of
    /// the last batch such that it and every batch written before it are
    /// durable.
    pub fn durable_prefix(&self, stream: &str, partition: &str) -> u64 {
        let Some(ends) = self.batches.get(&(stream.to_string(), partition.to_string())) else {
            return 0;
        };
        ends.iter()
            .take_while(|(_, durable)| **durable)
            .last()
            .map_or(0, |(end, _)| *end)
    }

    fn clear(&mut self, stream: &str) {
        self.rows.remove(stream);
        self.positions.remove(stream);
        self.batches.retain(|(s, _), _| s != stream);
    }

    fn mark(&mut self, stream: &str, position: &Option<Position>, durable: bool) {
        if let Some(p) = position {
            let ends = self
                .batches
                .entry((stream.to_string(), p.partition.to_string()))
                .or_default();
            let slot = ends.entry(p.rows).or_insert(false);
            *slot |= durable;
        }
    }
}

/// Compares the state store's checkpoints with what destinations hold.
struct Audit {
    dir: PathBuf,
    store: Option<StateStore>,
    /// The last checkpoint seen of each (stream, partition).
    last: BTreeMap<(String, String), u64>,
}

#[derive(Default)]
struct State {
    destinations: BTreeMap<String, Destination>,
    audit: Option<Audit>,
    violations: Vec<String>,
}

/// The systems one test runs against, shared by the connectors its
/// registries build and by the test.
pub struct World {
    state: Mutex<State>,
    /// Bumped by a crash: connections opened before are dead.
    generation: watch::Sender<u64>,
}

impl Default for World {
    fn default() -> Self {
        World {
            state: Mutex::new(State::default()),
            generation: watch::Sender::new(0),
        }
    }
}

impl World {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock has failed already.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What the destination of sink `name` holds now.
    pub fn dest(&self, name: &str) -> Destination {
        self.lock().destinations.get(name).cloned().unwrap_or_default()
    }

    /// From now on every commit, and [`World::audit_all`], checks that the
    /// checkpoints in the state store under `dir` never pass what a
    /// destination holds durably without a gap.
    pub fn audit(&self, dir: PathBuf) {
        self.lock().audit = Some(Audit {
            dir,
            store: None,
            last: BTreeMap::new(),
        });
    }

    /// Audits every destination and stream now; returns every violation
    /// found since the audit began.
    pub fn audit_all(&self) -> Vec<String> {
        let mut st = self.lock();
        let keys: Vec<(String, String)> = st
            .destinations
            .iter()
            .flat_map(|(d, dest)| dest.batches.keys().map(move |(s, _)| (d.clone(), s.clone())))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        for (dest, stream) in keys {
            audit(&mut st, &dest, &stream);
        }
        st.violations.clone()
    }

    /// The process dies: connections opened before this moment fail, and
    /// runs waiting in [`Rig::run_until_crash`] are dropped.
    fn crash(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    fn alive(&self, generation: u64) -> Result<()> {
        if *self.generation.borrow() == generation {
            Ok(())
        } else {
            Err(Error::connection("mem", "the connection died with its process"))
        }
    }

    /// A registry whose `mem` source reads `source` and whose `mem` sinks,
    /// by name, behave as `sinks` say. Call counts for faults start at zero.
    pub fn registry(self: &Arc<Self>, source: SourceSpec, sinks: &[(&str, SinkSpec)]) -> Arc<Registry> {
        let mut r = Registry::default();
        let source = Arc::new(source);
        let sent = Arc::new(AtomicU64::new(0));
        r.add_source(
            ConnectorInfo::new("mem", "numbered rows kept in memory (tests)"),
            move |_: MemSourceTable, _| {
                Ok(Box::new(MemSource {
                    spec: source.clone(),
                    sent: sent.clone(),
                }) as Box<dyn Source>)
            },
        );
        let specs: BTreeMap<String, (Arc<SinkSpec>, Arc<Calls>)> = sinks
            .iter()
            .map(|(name, spec)| (name.to_string(), (Arc::new(spec.clone()), Arc::default())))
            .collect();
        let world = self.clone();
        r.add_sink(
            ConnectorInfo::new("mem", "a destination kept in memory that fails on purpose (tests)"),
            move |t: MemSinkTable, _| {
                let (spec, calls) = specs
                    .get(&t.name)
                    .ok_or_else(|| Error::config("sinks.name", format!("no sink `{}` in this test", t.name)))?;
                Ok(Box::new(MemConnector {
                    world: world.clone(),
                    name: t.name.clone(),
                    spec: spec.clone(),
                    calls: calls.clone(),
                }) as Box<dyn SinkConnector>)
            },
        );
        Arc::new(r)
    }
}

/// Before a commit grows what `dest` holds of `stream`: every stored
/// checkpoint must be covered by what it holds now. Checkpoints only grow,
/// so checking before each commit and at the end sees every checkpoint the
/// engine ever stored against the holdings it was stored over.
fn audit(st: &mut State, dest: &str, stream: &str) {
    let State {
        destinations,
        audit,
        violations,
    } = st;
    let Some(audit) = audit.as_mut() else { return };
    if audit.store.is_none() {
        match StateStore::open(&audit.dir) {
            Ok(s) => audit.store = Some(s),
            Err(e) => {
                violations.push(format!("cannot open the state store: {e}"));
                return;
            }
        }
    }
    let Some(store) = audit.store.as_ref() else { return };
    let stored = match store.checkpoints(PIPELINE, stream) {
        Ok(c) => c,
        Err(e) => {
            violations.push(format!("cannot read checkpoints: {e}"));
            return;
        }
    };
    let holds = destinations.get(dest);
    for p in stored {
        let key = (stream.to_string(), p.partition.to_string());
        let prefix = holds.map_or(0, |h| h.durable_prefix(stream, &p.partition));
        if p.rows > prefix {
            violations.push(format!(
                "checkpoint of {} at row {} passes sink {dest}, which holds {prefix} without a gap",
                p.partition, p.rows
            ));
        }
        if let Some(before) = audit.last.insert(key, p.rows)
            && before > p.rows
        {
            violations.push(format!(
                "checkpoint of {} went back from {before} to {}",
                p.partition, p.rows
            ));
        }
    }
}

/// `[source] type = "mem"` takes no options: the registry says what it reads.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemSourceTable {}

/// `[[sinks]] type = "mem"`: `name` picks the destination and its behaviour.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemSinkTable {
    name: String,
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("v", DataType::Int64, false),
    ]))
}

/// Reads [`SourceSpec`] rows.
struct MemSource {
    spec: Arc<SourceSpec>,
    /// Batches sent in this run, over every partition.
    sent: Arc<AtomicU64>,
}

#[async_trait]
impl Source for MemSource {
    fn name(&self) -> &str {
        "mem"
    }

    async fn discover(&self) -> Result<Vec<StreamSpec>> {
        let spec = &self.spec;
        Ok(spec
            .stream_names()
            .into_iter()
            .map(|name| StreamSpec {
                partitions: (0..spec.partitions)
                    .map(|p| PartitionSpec {
                        id: format!("{name}#{p}").into(),
                        bounds: serde_json::json!({ "index": p }),
                        bytes: None,
                        rows: Some(spec.rows),
                    })
                    .collect(),
                name: name.into(),
                schema: schema(),
            })
            .collect())
    }

    async fn read(&self, stream: &StreamSpec, partition: &PartitionSpec, ctx: ReadContext) -> Result<()> {
        let spec = &self.spec;
        let index = partition.bounds["index"].as_u64().unwrap_or(0);
        let mut next = ctx.resume.as_ref().and_then(|p| p.cursor.as_u64()).unwrap_or(0);
        let step = ctx.limits.rows.max(1) as u64;
        let by: Arc<str> = "mem".into();
        while next < spec.rows {
            if !spec.ignore_cancel && ctx.cancel.is_cancelled() {
                break;
            }
            if !spec.delay.is_zero() {
                tokio::time::sleep(spec.delay).await;
            }
            let end = (next + step).min(spec.rows);
            let mut kept = Vec::new();
            for i in next..end {
                let id = (index * spec.rows + i) as i64;
                if !spec.rejects.contains(&id) {
                    kept.push(id);
                    continue;
                }
                let r = Rejection {
                    stream: stream.name.clone(),
                    stage: Stage::Source,
                    by: by.clone(),
                    origin: partition.id.clone(),
                    line: Some(i + 1),
                    reason: format!("row {id} does not decode"),
                    raw: Some(format!("#{id}")),
                    record: None,
                };
                if ctx.out.send(SourceEvent::Reject(r)).await.is_err() {
                    return Ok(());
                }
            }
            let values: Int64Array = kept.iter().map(|id| value(*id)).collect();
            let data = RecordBatch::try_new(schema(), vec![Arc::new(Int64Array::from(kept)), Arc::new(values)])?;
            let mut batch = Batch::new(stream.name.clone(), partition.id.clone(), data);
            batch.position = Some(Position {
                partition: partition.id.clone(),
                cursor: serde_json::json!(end),
                rows: end,
            });
            if ctx.out.send(SourceEvent::Batch(batch)).await.is_err() {
                return Ok(());
            }
            next = end;
            let n = self.sent.fetch_add(1, Ordering::SeqCst) + 1;
            if let Some((at, token)) = &spec.cancel_after
                && *at == n
            {
                token.cancel();
            }
            if spec.fail_after.contains(&n) {
                return Err(Error::retryable(
                    "mem source",
                    format!("injected read failure after batch {n}"),
                ));
            }
            if let Some((at, wait)) = spec.stall_after
                && at == n
            {
                tokio::time::sleep(wait).await;
            }
        }
        Ok(())
    }
}

/// Calls of one sink name in one registry, across reopenings.
#[derive(Default)]
struct Calls {
    writes: AtomicU64,
    flushes: AtomicU64,
}

/// Opens [`MemSink`]s on one destination of the world.
struct MemConnector {
    world: Arc<World>,
    name: String,
    spec: Arc<SinkSpec>,
    calls: Arc<Calls>,
}

#[async_trait]
impl SinkConnector for MemConnector {
    fn name(&self) -> &str {
        &self.name
    }

    fn target(&self, stream: &str) -> String {
        format!("mem:{}/{stream}", self.name)
    }

    async fn open(&self, stream: &StreamInfo) -> Result<Box<dyn Sink>> {
        let generation = *self.world.generation.borrow();
        {
            let mut st = self.world.lock();
            let dest = st.destinations.entry(self.name.clone()).or_default();
            dest.opens += 1;
            // A new job starts the stream over, like a table created again.
            if !stream.resume {
                dest.clear(&stream.name);
            }
        }
        Ok(Box::new(MemSink {
            world: self.world.clone(),
            dest: self.name.clone(),
            by: format!("mem:{}", self.name).into(),
            stream: stream.name.clone(),
            job: stream.job,
            generation,
            spec: self.spec.clone(),
            calls: self.calls.clone(),
            pending: Vec::new(),
            refused: Vec::new(),
            refused_pending: Vec::new(),
        }))
    }
}

/// One batch written and not yet durable: its position and the ids kept.
struct Pending {
    position: Option<Position>,
    ids: Vec<i64>,
}

/// Writes one stream into a [`Destination`] as its [`SinkSpec`] says.
struct MemSink {
    world: Arc<World>,
    dest: String,
    by: Arc<str>,
    stream: Arc<str>,
    job: i64,
    generation: u64,
    spec: Arc<SinkSpec>,
    calls: Arc<Calls>,
    pending: Vec<Pending>,
    /// Refusals of a pipelined sink, found by its last flush.
    refused: Vec<Rejection>,
    /// Refusals of a pipelined sink's unflushed batches.
    refused_pending: Vec<Rejection>,
}

impl MemSink {
    /// Fails or dies as `fault` says, before the call does anything.
    async fn strike_before(&self, fault: Option<Fault>, call: &str) -> Result<()> {
        match fault {
            Some(Fault::Retryable) => Err(Error::retryable(
                format!("mem:{}", self.dest),
                format!("injected retryable failure of {call}"),
            )),
            Some(Fault::Fatal) => Err(Error::connection(
                format!("mem:{}", self.dest),
                format!("injected failure of {call}"),
            )),
            Some(Fault::Crash) => {
                self.world.crash();
                std::future::pending().await
            }
            _ => Ok(()),
        }
    }

    /// Commits `batches` in one step: rows, the batches marked durable and,
    /// for a transactional sink, their positions. A dead connection commits nothing.
    fn commit(&self, batches: Vec<Pending>) -> Result<()> {
        let mut st = self.world.lock();
        self.world.alive(self.generation)?;
        audit(&mut st, &self.dest, &self.stream);
        let dest = st.destinations.entry(self.dest.clone()).or_default();
        let stream = self.stream.to_string();
        for b in batches {
            dest.rows.entry(stream.clone()).or_default().extend(b.ids);
            dest.mark(&stream, &b.position, true);
            if self.spec.transactional
                && let Some(p) = b.position
            {
                let (job, positions) = dest.positions.entry(stream.clone()).or_default();
                if *job != self.job {
                    *job = self.job;
                    positions.clear();
                }
                positions.insert(p.partition.to_string(), p);
            }
        }
        Ok(())
    }

    fn end(&mut self, how: &'static str) -> Result<()> {
        self.world.alive(self.generation)?;
        // Unflushed batches are rolled back.
        self.pending.clear();
        let mut st = self.world.lock();
        let dest = st.destinations.entry(self.dest.clone()).or_default();
        dest.ends.entry(self.stream.to_string()).or_default().push(how);
        Ok(())
    }
}

#[async_trait]
impl Sink for MemSink {
    async fn write(&mut self, batch: &Batch) -> Result<Vec<Rejection>> {
        let n = self.calls.writes.fetch_add(1, Ordering::SeqCst) + 1;
        self.world.alive(self.generation)?;
        self.world
            .lock()
            .destinations
            .entry(self.dest.clone())
            .or_default()
            .write_times
            .push(Instant::now());
        self.strike_before(self.spec.fault_at(Step::Write(n)), &format!("write {n}"))
            .await?;
        let ids = batch
            .data
            .column_by_name("id")
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
            .ok_or_else(|| Error::Internal("mem sink: batch without an Int64 `id`".into()))?;
        let mut kept = Vec::with_capacity(ids.len());
        let mut refused = Vec::new();
        for (i, id) in ids.values().iter().enumerate() {
            if self.spec.refuse.contains(id) {
                refused.push((i, format!("row {id} refused by {}", self.by)));
            } else {
                kept.push(*id);
            }
        }
        let rejections = batch.reject_rows(refused, Stage::Sink, &self.by);
        {
            let mut st = self.world.lock();
            let dest = st.destinations.entry(self.dest.clone()).or_default();
            dest.mark(&self.stream, &batch.position, false);
        }
        self.pending.push(Pending {
            position: batch.position.clone(),
            ids: kept,
        });
        if self.spec.depth > 1 {
            self.refused_pending.extend(rejections);
            Ok(Vec::new())
        } else {
            Ok(rejections)
        }
    }

    async fn flush(&mut self) -> Result<()> {
        let n = self.calls.flushes.fetch_add(1, Ordering::SeqCst) + 1;
        self.world.alive(self.generation)?;
        self.world
            .lock()
            .destinations
            .entry(self.dest.clone())
            .or_default()
            .flush_times
            .push(Instant::now());
        let fault = self.spec.fault_at(Step::Flush(n));
        self.strike_before(fault, &format!("flush {n}")).await?;
        if !self.spec.flush_delay.is_zero() {
            tokio::time::sleep(self.spec.flush_delay).await;
        }
        let mut batches = std::mem::take(&mut self.pending);
        if fault == Some(Fault::PartialFlush) {
            if self.spec.transactional {
                batches.clear();
            }
            let later = batches.split_off(batches.len() - batches.len() / 2);
            for b in later.into_iter().rev() {
                self.commit(vec![b])?;
                tokio::task::yield_now().await;
            }
            return Err(Error::connection(
                format!("mem:{}", self.dest),
                format!("injected failure in the middle of flush {n}"),
            ));
        }
        if self.spec.transactional || !self.spec.out_of_order {
            self.commit(batches)?;
        } else {
            for b in batches.into_iter().rev() {
                self.commit(vec![b])?;
                tokio::task::yield_now().await;
            }
        }
        match fault {
            Some(Fault::LostAck { retryable: true }) => Err(Error::retryable(
                format!("mem:{}", self.dest),
                format!("injected lost acknowledgement of flush {n}"),
            )),
            Some(Fault::LostAck { retryable: false }) => Err(Error::connection(
                format!("mem:{}", self.dest),
                format!("injected lost acknowledgement of flush {n}"),
            )),
            Some(Fault::CrashAfterCommit) => {
                self.world.crash();
                std::future::pending().await
            }
            _ => {
                self.refused.append(&mut self.refused_pending);
                Ok(())
            }
        }
    }

    async fn committed(&mut self) -> Result<Option<Vec<Position>>> {
        self.world.alive(self.generation)?;
        if !self.spec.transactional {
            return Ok(None);
        }
        let st = self.world.lock();
        let stored = st
            .destinations
            .get(&self.dest)
            .and_then(|d| d.positions.get(&*self.stream))
            .filter(|(job, _)| *job == self.job)
            .map(|(_, p)| p.values().cloned().collect())
            .unwrap_or_default();
        Ok(Some(stored))
    }

    fn pipeline_depth(&self) -> usize {
        self.spec.depth.max(1)
    }

    fn batches_per_flush(&self) -> usize {
        self.spec.per_flush.max(1)
    }

    fn take_refused(&mut self) -> Vec<Rejection> {
        std::mem::take(&mut self.refused)
    }

    async fn finish(&mut self, complete: bool) -> Result<()> {
        self.end(if complete { "complete" } else { "interrupted" })
    }

    async fn fail(&mut self) -> Result<()> {
        self.end("failed")
    }
}

/// A temporary directory (state, dead letters) and a world, for one test.
pub struct Rig {
    pub dir: tempfile::TempDir,
    pub world: Arc<World>,
}

impl Rig {
    pub fn new() -> Self {
        // The state store syncs every checkpoint to disk; what these tests
        // check is the order of the engine's steps, not the disk, so they
        // keep their state in memory-backed /dev/shm where there is one.
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            tempfile::tempdir_in(shm)
        } else {
            tempfile::tempdir()
        };
        Rig {
            dir: dir.expect("temporary directory"),
            world: Arc::default(),
        }
    }

    /// The state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The dead-letter file (the default path, beside the pipeline).
    pub fn dlq(&self) -> PathBuf {
        self.dir.path().join(format!("{PIPELINE}.rejects.ndjson"))
    }

    /// Pipeline text: the `mem` source, one `mem` sink per name, then
    /// `transforms` (TOML) and `runtime` keys.
    pub fn text(&self, sinks: &[&str], transforms: &str, runtime: &str) -> String {
        let mut t = String::from("[source]\ntype = \"mem\"\n\n");
        for s in sinks {
            t.push_str(&format!("[[sinks]]\ntype = \"mem\"\nname = \"{s}\"\n\n"));
        }
        t.push_str(transforms);
        t.push_str(&format!(
            "\n[runtime]\nstate_dir = '{}'\n{runtime}\n",
            self.state_dir().display()
        ));
        t
    }

    /// Parses `text` against `registry`.
    pub fn pipeline(&self, text: &str, registry: Arc<Registry>) -> Pipeline {
        sluice_engine::parse(
            text,
            "p.toml",
            PIPELINE,
            self.dir.path().to_path_buf(),
            &|_| None,
            &[],
            registry,
        )
        .unwrap_or_else(|e| panic!("pipeline does not parse: {e}\n{text}"))
    }

    /// Runs a pipeline to its end.
    pub async fn run(&self, pipeline: &Pipeline, cancel: CancellationToken) -> RunOutcome {
        sluice_engine::run(pipeline, Arc::new(RunProgress::default()), cancel).await
    }

    /// Runs a pipeline until it ends, or until a sink crashes the process
    /// ([`Fault::Crash`]), when the run is dropped where it stands: `None`.
    pub async fn run_until_crash(&self, pipeline: &Pipeline, cancel: CancellationToken) -> Option<RunOutcome> {
        let mut crashed = self.world.generation.subscribe();
        tokio::select! {
            outcome = self.run(pipeline, cancel) => Some(outcome),
            _ = crashed.changed() => None,
        }
    }

    /// The state store of the pipeline.
    pub fn state(&self) -> StateStore {
        StateStore::open(&self.state_dir()).expect("state store")
    }

    /// The stored checkpoint of each partition of `stream`: rows read.
    pub fn checkpoints(&self, stream: &str) -> BTreeMap<String, u64> {
        self.state()
            .checkpoints(PIPELINE, stream)
            .expect("checkpoints")
            .into_iter()
            .map(|p| (p.partition.to_string(), p.rows))
            .collect()
    }

    /// Lines of the dead-letter file (none when it was never written).
    pub fn dlq_lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dlq())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("dead-letter line is JSON"))
            .collect()
    }
}

/// A current-thread runtime on a paused clock, for property tests (what
/// `#[tokio::test(start_paused = true)]` gives a test function).
pub fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime")
}
