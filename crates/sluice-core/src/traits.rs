//! The three roles of a pipeline: [`Source`], [`Transform`] and [`Sink`].
//!
//! # Delivery contract
//!
//! - A source pushes [`SourceEvent`]s into a bounded channel; `send` waiting
//!   is the back-pressure. Every batch that completes a stretch of input
//!   carries the [`Position`] to resume from after it.
//! - Transforms keep positions with the rows they came with. A transform that
//!   holds rows back (aggregation, sort) emits them with the last position it
//!   saw, never earlier.
//! - A sink reports durability with [`Sink::flush`]: once it returns `Ok`,
//!   every batch passed to `write` before it is durable. The engine then
//!   acknowledges those batches, in order, and a position is checkpointed
//!   only when every sink has acknowledged it.
//! - Item rejections (one bad row) are returned as [`Rejection`]s; an `Err`
//!   means the operation failed as a whole (a flush error) and nothing in it
//!   may be counted as delivered.
//!
//! # Cancellation
//!
//! Sources watch [`ReadContext::cancel`] and stop at the next batch boundary
//! with a consistent position; everything already sent is drained through the
//! transforms and sinks, and sinks are finished so their output stays valid.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{Batch, BatchLimits, PayloadFormat, Position, Rejection, Result, RetryPolicy};

/// One unit of independent reading inside a stream (a file, a key range).
///
/// A partition is stored with the run's state, so a resumed run reads the
/// same partitions as the run it continues even if discovery would now cut
/// the stream differently.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionSpec {
    /// Stable name, used as the checkpoint key.
    pub id: Arc<str>,
    /// What the partition covers, in the source's own terms (a key range);
    /// `Null` when the id says it all (a file path).
    #[serde(default)]
    pub bounds: serde_json::Value,
    /// Size of the input in bytes, when known (for progress).
    pub bytes: Option<u64>,
    /// Rows in the input, when known (for progress).
    pub rows: Option<u64>,
}

/// A stream a source offers: its schema and how it splits into partitions.
#[derive(Debug, Clone)]
pub struct StreamSpec {
    /// Stream name (table name, file stem).
    pub name: Arc<str>,
    /// Schema of the batches the source will produce.
    pub schema: SchemaRef,
    /// Partitions, read independently and possibly in parallel.
    pub partitions: Vec<PartitionSpec>,
}

impl StreamSpec {
    /// Total input bytes, when every partition knows its size.
    pub fn total_bytes(&self) -> Option<u64> {
        self.partitions.iter().map(|p| p.bytes).sum()
    }

    /// Total rows, when every partition knows its count.
    pub fn total_rows(&self) -> Option<u64> {
        self.partitions.iter().map(|p| p.rows).sum()
    }
}

/// Objects of one kind a source database holds and a run does not copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotCopied {
    /// What they are, plural (`views`, `triggers`, `functions`).
    pub kind: String,
    /// Their names (`table.trigger` for triggers).
    pub names: Vec<String>,
}

impl NotCopied {
    /// `3 views (a, b, c)`, at most `shown` names spelled out.
    pub fn summary(&self, shown: usize) -> String {
        let mut names = self.names.iter().take(shown).cloned().collect::<Vec<_>>().join(", ");
        if self.names.len() > shown {
            names.push_str(&format!(", … {} more", self.names.len() - shown));
        }
        format!("{} {} ({names})", self.names.len(), self.kind)
    }
}

/// What a source sends: rows, or a row it could not decode.
#[derive(Debug)]
pub enum SourceEvent {
    /// Decoded rows.
    Batch(Batch),
    /// Input that could not be decoded into a row.
    Reject(Rejection),
    /// Input bytes consumed since the last event, for progress.
    Progress { bytes: u64 },
}

/// Everything a source needs to read one partition.
#[derive(Debug, Clone)]
pub struct ReadContext {
    /// Where batches go; bounded, so a full channel slows the source down.
    pub out: mpsc::Sender<SourceEvent>,
    /// Cancelled when the run must stop reading.
    pub cancel: CancellationToken,
    /// Where to cut batches.
    pub limits: BatchLimits,
    /// The checkpointed cursor to resume from, if any.
    pub resume: Option<Position>,
    /// How many threads the source may use to decode this partition.
    pub parallelism: usize,
    /// Send the rows encoded in this format ([`crate::Payload`]) instead of
    /// decoding them: the one format [`Source::payload_format`] offered, set
    /// when the stream's only sink accepts it and no transform reads the
    /// values. `None`: decoded batches, as always.
    pub payload: Option<PayloadFormat>,
}

/// Reads streams out of a system.
#[async_trait]
pub trait Source: Send + Sync {
    /// Short name for logs and rejections (`csv`, `sqlite`).
    fn name(&self) -> &str;

    /// Lists the streams with their schemas and partitions. Reads only what it
    /// needs to infer schemas; connects but writes nothing.
    async fn discover(&self) -> Result<Vec<StreamSpec>>;

    /// Whether every run continues from the last checkpoint of each partition
    /// (an incremental read by a cursor column) instead of reading it all.
    fn incremental(&self) -> bool {
        false
    }

    /// Whether reading consumes the input (standard input): it can be read
    /// only once, so a run can neither resume it nor skip it as done before.
    fn consumable(&self) -> bool {
        false
    }

    /// Tests what reading `streams` needs beyond discovering them (read
    /// permissions); returns a line per thing checked. Sources whose
    /// discovery already proves they can be read have nothing to add.
    async fn check(&self, streams: &[StreamSpec]) -> Result<Vec<String>> {
        let _ = streams;
        Ok(Vec::new())
    }

    /// An encoding in which this source can hand `stream`'s rows over
    /// without decoding them ([`crate::Payload`]), for a sink that writes
    /// it as it is; `None` (the default) when it has none. The engine then
    /// may ask for it in [`ReadContext::payload`].
    fn payload_format(&self, stream: &StreamSpec) -> Option<PayloadFormat> {
        let _ = stream;
        None
    }

    /// Objects of the source database that no stream carries (views,
    /// triggers, routines, events), for `sluice plan` and a warning when a
    /// run starts, so nothing is left behind without a word. Sources
    /// without such objects have nothing to list.
    async fn not_copied(&self) -> Result<Vec<NotCopied>> {
        Ok(Vec::new())
    }

    /// Reads one partition of `stream` into `ctx.out` until the input ends or
    /// `ctx.cancel` fires. Undecodable input is sent as
    /// [`SourceEvent::Reject`]; an `Err` means the partition cannot go on.
    async fn read(&self, stream: &StreamSpec, partition: &PartitionSpec, ctx: ReadContext) -> Result<()>;
}

/// What a transform made of a batch.
#[derive(Debug, Default)]
pub struct Applied {
    /// Output rows; `None` when the transform holds them back.
    pub batch: Option<Batch>,
    /// Rows refused, with reasons.
    pub rejections: Vec<Rejection>,
}

/// Builds a [`Transform`] for one stream. Planning happens here, once.
pub trait TransformFactory: Send + Sync {
    /// Short name for logs and rejections (`filter`, `sql`).
    fn name(&self) -> &str;

    /// Plans the transform for a stream with `input` schema. Errors here are
    /// configuration errors (unknown column, bad expression) and are raised
    /// before any data moves.
    fn plan(&self, stream: &str, input: SchemaRef) -> Result<Box<dyn Transform>>;
}

/// A planned transform, applied batch after batch.
#[async_trait]
pub trait Transform: Send {
    /// Schema of the batches this transform emits.
    fn output_schema(&self) -> SchemaRef;

    /// Applies the transform to one batch. Rows that fail individually come
    /// back as rejections; an `Err` stops the run.
    async fn apply(&mut self, batch: Batch) -> Result<Applied>;

    /// End of the stream: emits rows held back. Stateless transforms have nothing.
    async fn finish(&mut self) -> Result<Applied> {
        Ok(Applied::default())
    }
}

/// Runs synchronous work `f` from async code on any Tokio runtime. On a
/// multi-thread runtime the worker thread hands its other tasks over first
/// (`block_in_place`), so they keep running; on a current-thread runtime, or
/// outside any runtime, `f` simply runs on the calling thread.
pub fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// A stream as a sink sees it when it opens.
#[derive(Debug, Clone)]
pub struct StreamInfo {
    /// Stream name, for `{stream}` in paths and table names.
    pub name: Arc<str>,
    /// Schema of the batches that will be written.
    pub schema: SchemaRef,
    /// The pipeline, which keys checkpoints kept in the destination.
    pub pipeline: Arc<str>,
    /// The job this run belongs to: checkpoints a sink finds of another job
    /// of the pipeline are stale and never resumed from.
    pub job: i64,
    /// Whether this run continues earlier work on the stream (a resumed run,
    /// an incremental read, a reconnection): keep what was loaded and the
    /// checkpoints stored with it. When false the stream starts over.
    pub resume: bool,
    /// The job was started over (`--fresh`, also in the runs that resume
    /// it): what earlier jobs of the pipeline wrote is replaced, not taken
    /// as already done.
    pub fresh: bool,
    /// How the run retries failures that may pass (`[runtime]` retry
    /// settings). A sink that retries inside itself (items a search
    /// cluster pushed back) waits and gives up by this policy too.
    pub retry: RetryPolicy,
}

impl StreamInfo {
    /// A stream of a fresh run (nothing to resume).
    pub fn new(name: Arc<str>, schema: SchemaRef, pipeline: &str) -> Self {
        StreamInfo {
            name,
            schema,
            pipeline: pipeline.into(),
            job: 0,
            resume: false,
            fresh: false,
            retry: RetryPolicy::default(),
        }
    }
}

/// A destination; opens one [`Sink`] per stream.
#[async_trait]
pub trait SinkConnector: Send + Sync {
    /// Short name for logs and the summary (`parquet`, `sqlite`).
    fn name(&self) -> &str;

    /// Where the data goes, for the summary (path, table), without secrets.
    fn target(&self, stream: &str) -> String;

    /// Prepares the destination for a stream (creates the file or table).
    async fn open(&self, stream: &StreamInfo) -> Result<Box<dyn Sink>>;

    /// The statements [`SinkConnector::open`] and a complete load would run
    /// for `stream` (DDL), for `sluice plan`. May connect; writes nothing.
    async fn plan(&self, stream: &StreamInfo) -> Result<Vec<String>> {
        let _ = stream;
        Ok(Vec::new())
    }

    /// Tests the connection and the permissions writing `streams` needs;
    /// returns a line per thing checked, or the first failure as an error.
    async fn check(&self, streams: &[StreamInfo]) -> Result<Vec<String>> {
        let _ = streams;
        Ok(Vec::new())
    }

    /// What this sink writes that no other sink of the same pipeline may
    /// write too (an output path), compared as text before anything runs.
    fn resources(&self) -> Vec<String> {
        Vec::new()
    }

    /// A source reading back what this sink wrote for `stream`, for `sluice
    /// verify`; `None` when the destination cannot be read back (standard
    /// output, text files whose types would be inferred again).
    fn read_back(&self, stream: &str) -> Option<Result<Box<dyn Source>>> {
        let _ = stream;
        None
    }

    /// The name column `column` of `stream` has in the destination, for
    /// `verify` to compare it (a database sink that renames identifiers).
    fn destination_column(&self, stream: &str, column: &str) -> String {
        let _ = stream;
        column.to_string()
    }

    /// Whether the destination keeps documents by `_id` (a search index):
    /// `verify` then compares it document by document, ids and bodies,
    /// rather than by column checksums.
    fn holds_documents(&self) -> bool {
        false
    }

    /// The `_id` this sink gives each row of `data` (from an `_id` column,
    /// an id column or a template), `None` per row when the destination
    /// assigns it; `None` for sinks that do not keep documents.
    fn document_ids(&self, stream: &str, data: &RecordBatch) -> Option<Result<Vec<Option<String>>>> {
        let _ = (stream, data);
        None
    }
}

/// Writes the batches of one stream.
///
/// The engine calls these methods, and [`SinkConnector::open`], on whatever
/// Tokio runtime runs it: the CLI's multi-thread runtime, or a
/// current-thread one (tests with a paused clock, a program embedding
/// sluice). A sink doing synchronous I/O (a SQLite connection, a file
/// encoder) runs it through [`blocking`], never through
/// `tokio::task::block_in_place` directly, which panics on a current-thread
/// runtime.
#[async_trait]
pub trait Sink: Send {
    /// Writes a batch. Rows the destination refuses on their own come back as
    /// rejections; everything else in the batch counts as written once a
    /// later [`Sink::flush`] succeeds.
    async fn write(&mut self, batch: &Batch) -> Result<Vec<Rejection>>;

    /// Writes several batches before one flush ([`Sink::batches_per_flush`]),
    /// returning each one's rejections in order. The default writes them
    /// one by one; a sink may load them in one request.
    async fn write_all(&mut self, batches: &[&Batch]) -> Result<Vec<Vec<Rejection>>> {
        let mut out = Vec::with_capacity(batches.len());
        for batch in batches {
            out.push(self.write(batch).await?);
        }
        Ok(out)
    }

    /// Makes everything written so far durable.
    async fn flush(&mut self) -> Result<()>;

    /// The positions this sink stored in the destination together with the
    /// data (exactly-once sinks), one per partition; `None` for sinks that
    /// keep no checkpoints of their own.
    ///
    /// A transactional sink stores `batch.position` in the same transaction
    /// as the batch's rows, so after a crash the destination itself says how
    /// far every partition got. A fresh stream (`StreamInfo::resume` false)
    /// starts with no stored positions.
    async fn committed(&mut self) -> Result<Option<Vec<Position>>> {
        Ok(None)
    }

    /// Whether the destination already holds the whole stream: `open` found
    /// it loaded to the end by an earlier job of the pipeline (a run with
    /// another state directory, say). The engine then reads nothing for the
    /// stream and this sink writes nothing. Sinks that keep no record of
    /// their own answer false.
    fn already_complete(&self) -> bool {
        false
    }

    /// How many batches the engine may write before it must flush. A sink
    /// that keeps several requests in flight (bulk loads into a search
    /// engine) answers more than one: `write` then only hands the rows
    /// over, and `flush` waits for every answer. Default 1: each batch is
    /// flushed before the next is written.
    fn pipeline_depth(&self) -> usize {
        1
    }

    /// How many batches already waiting the engine may write before one
    /// flush, for a sink whose `flush` is a commit: a transactional sink
    /// that stores each batch's position with its rows answers more than
    /// one, so a load that outruns the destination pays one commit for
    /// several batches. A failure before the flush retries all of them.
    /// Default 1.
    fn batches_per_flush(&self) -> usize {
        1
    }

    /// Rows refused after `write` returned (found when the destination
    /// answered during [`Sink::flush`]), each returned once. Pipelined sinks
    /// only; rows refused by `write` itself come back from `write`.
    fn take_refused(&mut self) -> Vec<Rejection> {
        Vec::new()
    }

    /// Whether [`Sink::write`] takes batches carrying a [`crate::Payload`] in
    /// `format` and writes the encoded rows as they are (the destination's
    /// columns are of exactly the types the format carries). Such a sink
    /// still decodes a batch ([`Batch::decoded`]) when it must judge its
    /// rows one at a time. Default false: batches come decoded.
    fn accepts_payload(&self, format: &PayloadFormat) -> bool {
        let _ = format;
        false
    }

    /// Whether [`Sink::flush`] makes writes durable. A sink whose output only
    /// becomes valid when finished (a Parquet footer, a file renamed into
    /// place) answers false; its batches are acknowledged by `finish`.
    fn durable_on_flush(&self) -> bool {
        true
    }

    /// Ends the stream: final flush, footers, swaps. `complete` is false when
    /// the run was interrupted or failed; the sink must still leave valid
    /// output behind and must not publish partial work as complete (for
    /// example a `replace` that would swap a half-loaded table in).
    async fn finish(&mut self, complete: bool) -> Result<()>;

    /// Ends the stream of a run that failed (an error, not an interruption):
    /// nothing partial may replace earlier output. A file sink leaves the
    /// previous file untouched and says where the partial output is; the
    /// default is `finish(false)`, which already keeps unflushed work out.
    async fn fail(&mut self) -> Result<()> {
        self.finish(false).await
    }
}
