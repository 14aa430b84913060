//! Decoding framed chunks into batches on worker threads, in input order,
//! cutting bad records out by bisection.
//!
//! The reader thread frames the input ([`super::framing`]) and hands chunk
//! `k` to worker `k % n`; results are taken back in the same round-robin
//! order, so batches leave in input order with at most `n` chunks in flight.
//! A range of records that fails to decode is split in halves until the bad
//! records stand alone; they become rejections naming their line, the rest
//! is kept. Clean input never pays for this.

use std::io::Read;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use arrow::array::UInt64Array;
use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use sluice_core::{Batch, Error, Position, ReadContext, Rejection, Result, SourceEvent, Stage};

use super::framing::{Chunk, Framer};

/// Turns the bytes of whole records into one batch. Pure: no I/O.
pub(crate) trait RecordDecoder: Send + Sync {
    /// Schema of the batches.
    fn schema(&self) -> SchemaRef;
    /// Decodes `bytes`, which hold about `records` records.
    fn decode(&self, bytes: &[u8], records: usize) -> std::result::Result<RecordBatch, String>;
}

/// How a stream's column types were found, for errors about values they
/// cannot hold: an inferred type came from a sample, and the message says so.
#[derive(Clone, Debug, Default)]
pub(crate) struct Inference {
    /// Records sampled (`infer_rows`).
    pub rows: usize,
    /// Columns typed in `[source.schema]`.
    pub declared: Vec<String>,
}

impl Inference {
    /// What to add to an error about `column`: nothing for a declared type.
    pub fn hint(&self, column: &str) -> String {
        if self.declared.iter().any(|d| d == column) {
            return String::new();
        }
        format!(
            "; the type was inferred from the first {} records: declare the column under [source.schema] \
             (`{column} = \"text\"` keeps any value) or raise infer_rows",
            self.rows
        )
    }
}

/// Names used in batches and rejections.
#[derive(Clone)]
pub(crate) struct Labels {
    pub stream: Arc<str>,
    pub origin: Arc<str>,
    pub partition: Arc<str>,
    pub by: Arc<str>,
}

/// A decoder thread: chunks (with the rows before them) in, results out.
type Lane = (SyncSender<(Chunk, u64)>, Receiver<Decoded>);

/// What decoding one chunk produced, in order.
pub(super) struct Decoded {
    pub(super) events: Vec<SourceEvent>,
}

/// Reads `input` to the end (or cancellation), framing it with `framer` and
/// decoding with `decoder` on `ctx.parallelism` threads. Blocking: run it on
/// a blocking thread.
pub(crate) fn run(
    mut input: impl Read,
    mut framer: Framer,
    decoder: Arc<dyn RecordDecoder>,
    labels: Labels,
    ctx: &ReadContext,
) -> Result<()> {
    let workers = ctx.parallelism.max(1);
    let chunk_bytes = ctx.limits.bytes.clamp(64 << 10, 64 << 20);
    let mut rows_before = 0u64;
    // Rows a resumed read drops because an earlier run delivered them.
    let mut delivered = 0u64;
    if let Some(p) = &ctx.resume {
        match p.cursor.get("offset").and_then(|o| o.as_u64()) {
            Some(offset) if framer.resumable() => {
                let line = skip_bytes(&mut input, offset).map_err(|e| Error::io(labels.origin.to_string(), e))?;
                framer.resume_at(offset, line);
                rows_before = p.rows;
            }
            // JSON arrays restart, dropping the batches already delivered
            // (their boundaries repeat: chunks are cut by size).
            _ => delivered = p.rows,
        }
    }
    let send = |ev: SourceEvent| ctx.out.blocking_send(ev).map_err(|_| Error::Interrupted);
    let forward = |decoded: Decoded| -> Result<()> {
        for ev in decoded.events {
            if let SourceEvent::Batch(b) = &ev
                && b.position.as_ref().is_some_and(|p| p.rows <= delivered)
            {
                continue;
            }
            send(ev)?;
        }
        Ok(())
    };

    std::thread::scope(|scope| -> Result<()> {
        let mut lanes = InOrder {
            lanes: Vec::with_capacity(workers),
            sent: 0,
            received: 0,
        };
        for _ in 0..workers {
            let (in_tx, in_rx) = sync_channel::<(Chunk, u64)>(1);
            let (out_tx, out_rx) = sync_channel::<Decoded>(1);
            let decoder = decoder.clone();
            let labels = labels.clone();
            let rows = ctx.limits.rows.max(1);
            scope.spawn(move || {
                for (chunk, rows_before) in in_rx {
                    let decoded = decode_chunk(decoder.as_ref(), &chunk, rows, rows_before, &labels);
                    if out_tx.send(decoded).is_err() {
                        break;
                    }
                }
            });
            lanes.lanes.push((in_tx, out_rx));
        }

        let mut read_buf = vec![0u8; 1 << 20];
        let mut eof = false;
        let mut result = Ok(());
        let mut last_emit = std::time::Instant::now();
        let mut target = chunk_bytes;
        while !eof {
            // Forward results that are already done, so slow input is not held back.
            while let Some(decoded) = lanes.next(false)? {
                forward(decoded)?;
            }
            if ctx.cancel.is_cancelled() {
                break;
            }
            // Fill the framer up to one chunk (more if one record is bigger).
            let mut quiet = false;
            while framer.buffered() < target {
                let n = match input.read(&mut read_buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    // A quiet pipe: hand over what is framed and look at cancellation.
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                        quiet = true;
                        break;
                    }
                    Err(e) => {
                        result = Err(super::encoding::read_error(&labels.origin, e));
                        eof = true;
                        break;
                    }
                };
                if n == 0 {
                    eof = true;
                    break;
                }
                framer.push(&read_buf[..n]);
                if send(SourceEvent::Progress { bytes: n as u64 }).is_err() {
                    return Err(Error::Interrupted);
                }
                if framer.in_quotes() && framer.open_record_bytes() > MAX_QUOTED_BYTES {
                    result = Err(runaway_quote(&labels, framer.open_record_line()));
                    eof = true;
                    break;
                }
                // Slow input (a pipe) still moves every `linger`.
                if last_emit.elapsed() >= ctx.limits.linger {
                    break;
                }
            }
            let chunk = match (eof, &result) {
                (true, Err(_)) => None,
                (true, Ok(())) => framer.finish(),
                (false, _) => framer.take(),
            };
            let Some(chunk) = chunk else {
                if !quiet && !eof {
                    target = framer.buffered() + read_buf.len();
                }
                continue;
            };
            target = chunk_bytes;
            last_emit = std::time::Instant::now();
            let records = chunk.len() as u64;
            // Take back the oldest result before reusing its lane.
            if lanes.full()
                && let Some(decoded) = lanes.next(true)?
            {
                forward(decoded)?;
            }
            lanes.submit(chunk, rows_before)?;
            rows_before += records;
        }
        // Drain what is in flight, in order.
        while let Some(decoded) = lanes.next(true)? {
            forward(decoded)?;
        }
        drop(lanes);
        result
    })
}

/// Whether a float column of `batch` holds an infinity (which a number too
/// large for a float, such as `1e400`, turns into).
pub(crate) fn has_infinity(batch: &RecordBatch) -> bool {
    use arrow::array::AsArray;
    use arrow::datatypes::{DataType, Float32Type, Float64Type};
    batch.columns().iter().any(|c| match c.data_type() {
        DataType::Float64 => c.as_primitive::<Float64Type>().iter().flatten().any(f64::is_infinite),
        DataType::Float32 => c.as_primitive::<Float32Type>().iter().flatten().any(f32::is_infinite),
        _ => false,
    })
}

/// How long a quoted CSV field may grow before the quote is taken for one
/// that is never closed (the rest of the file would become one value).
const MAX_QUOTED_BYTES: usize = 64 << 20;

fn runaway_quote(labels: &Labels, line: u64) -> Error {
    Error::data(
        format!("{}:{line}", labels.origin),
        format!(
            "a quoted field in the record starting on this line is still open after {} MiB; the quote is \
             probably never closed (fix the quoting, or set [source.csv] quote to a character the data does not use)",
            MAX_QUOTED_BYTES >> 20
        ),
    )
}

/// Reads and drops the first `n` bytes of `input`; returns the line number
/// the rest starts on.
fn skip_bytes(input: &mut impl Read, n: u64) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut left = n;
    let mut line = 1u64;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let got = match input.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "the file is shorter than the checkpoint ({n} bytes); it changed since the interrupted run, \
                         start over with --fresh"
                    ),
                ));
            }
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        line += buf[..got].iter().filter(|b| **b == b'\n').count() as u64;
        left -= got as u64;
    }
    Ok(line)
}

/// Decoder threads fed round-robin and read back in the same order, so
/// results leave in input order.
struct InOrder {
    lanes: Vec<Lane>,
    sent: usize,
    received: usize,
}

impl InOrder {
    /// Every thread has a chunk in flight.
    fn full(&self) -> bool {
        self.sent - self.received == self.lanes.len()
    }

    fn submit(&mut self, chunk: Chunk, rows_before: u64) -> Result<()> {
        let lane = &self.lanes[self.sent % self.lanes.len()];
        lane.0
            .send((chunk, rows_before))
            .map_err(|_| Error::Internal("decoder thread stopped".into()))?;
        self.sent += 1;
        Ok(())
    }

    /// The oldest result, waiting for it or only if it is ready.
    fn next(&mut self, wait: bool) -> Result<Option<Decoded>> {
        if self.received == self.sent {
            return Ok(None);
        }
        let lane = &self.lanes[self.received % self.lanes.len()];
        let decoded = if wait {
            lane.1
                .recv()
                .map_err(|_| Error::Internal("decoder thread stopped".into()))?
        } else {
            match lane.1.try_recv() {
                Ok(d) => d,
                Err(std::sync::mpsc::TryRecvError::Empty) => return Ok(None),
                Err(_) => return Err(Error::Internal("decoder thread stopped".into())),
            }
        };
        self.received += 1;
        Ok(Some(decoded))
    }
}

pub(super) fn decode_chunk(
    decoder: &dyn RecordDecoder,
    chunk: &Chunk,
    rows: usize,
    rows_before: u64,
    labels: &Labels,
) -> Decoded {
    let mut events = Vec::new();
    // A record whose quote never closes is the rest of the input, not a value.
    let records = chunk.len() - usize::from(chunk.unterminated && chunk.len() > 0);
    let mut a = 0;
    while a < records {
        let b = (a + rows).min(records);
        let mut parts = Vec::new();
        let mut lines = Vec::with_capacity(b - a);
        let mut rejects = Vec::new();
        decode_range(decoder, chunk, a, b, &mut parts, &mut lines, &mut rejects);
        for (line, raw, reason) in rejects {
            events.push(SourceEvent::Reject(Rejection {
                stream: labels.stream.clone(),
                stage: Stage::Source,
                by: labels.by.clone(),
                origin: labels.origin.clone(),
                line: Some(line),
                reason,
                raw: Some(raw),
                record: None,
            }));
        }
        let schema = decoder.schema();
        let data = match parts.len() {
            0 => RecordBatch::new_empty(schema),
            1 => parts.pop().unwrap_or_else(|| RecordBatch::new_empty(schema.clone())),
            _ => match concat_batches(&schema, &parts) {
                Ok(data) => data,
                Err(e) => {
                    events.push(SourceEvent::Reject(range_rejection(chunk, a, labels, e.to_string())));
                    RecordBatch::new_empty(schema)
                }
            },
        };
        let end = chunk.base + chunk.span(a, b).end as u64;
        let mut batch = Batch::new(labels.stream.clone(), labels.origin.clone(), data);
        batch.lines = Some(Arc::new(UInt64Array::from(lines)));
        batch.position = Some(Position {
            partition: labels.partition.clone(),
            cursor: serde_json::json!({ "offset": end }),
            rows: rows_before + b as u64,
        });
        events.push(SourceEvent::Batch(batch));
        a = b;
    }
    if records < chunk.len() {
        let raw = chunk.raw(records);
        let lines = super::framing::line_breaks(raw.as_bytes(), usize::MAX) + 1;
        let mut rejection = range_rejection(
            chunk,
            records,
            labels,
            format!(
                "a quote opened in this record is never closed, so the record would run to the end of the input \
                 ({lines} lines); fix the quoting, or set [source.csv] quote to a character the data does not use"
            ),
        );
        rejection.raw = Some(raw);
        events.push(SourceEvent::Reject(rejection));
        let mut batch = Batch::new(
            labels.stream.clone(),
            labels.origin.clone(),
            RecordBatch::new_empty(decoder.schema()),
        );
        batch.lines = Some(Arc::new(UInt64Array::from(Vec::<u64>::new())));
        batch.position = Some(Position {
            partition: labels.partition.clone(),
            cursor: serde_json::json!({ "offset": chunk.base + chunk.data.len() as u64 }),
            rows: rows_before + chunk.len() as u64,
        });
        events.push(SourceEvent::Batch(batch));
    }
    Decoded { events }
}

fn range_rejection(chunk: &Chunk, a: usize, labels: &Labels, reason: String) -> Rejection {
    Rejection {
        stream: labels.stream.clone(),
        stage: Stage::Source,
        by: labels.by.clone(),
        origin: labels.origin.clone(),
        line: chunk.lines.get(a).copied(),
        reason,
        raw: None,
        record: None,
    }
}

/// Decodes records `a..b`, splitting the range until bad records stand alone.
fn decode_range(
    decoder: &dyn RecordDecoder,
    chunk: &Chunk,
    a: usize,
    b: usize,
    parts: &mut Vec<RecordBatch>,
    lines: &mut Vec<u64>,
    rejects: &mut Vec<(u64, String, String)>,
) {
    let n = b - a;
    let outcome = decoder.decode(&chunk.data[chunk.span(a, b)], n);
    match outcome {
        Ok(batch) if batch.num_rows() == n => {
            parts.push(batch);
            lines.extend_from_slice(&chunk.lines[a..b]);
        }
        // A lone record that decodes to nothing is a comment line.
        Ok(batch) if n == 1 && batch.num_rows() == 0 => {}
        Ok(batch) if n == 1 => rejects.push((
            chunk.lines[a],
            chunk.raw(a),
            format!("record decoded into {} rows", batch.num_rows()),
        )),
        Err(reason) if n == 1 => rejects.push((chunk.lines[a], chunk.raw(a), reason)),
        _ => {
            let mid = a + n / 2;
            decode_range(decoder, chunk, a, mid, parts, lines, rejects);
            decode_range(decoder, chunk, mid, b, parts, lines, rejects);
        }
    }
}
