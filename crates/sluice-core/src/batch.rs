//! [`Batch`]: an Arrow `RecordBatch` with the metadata the engine needs.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, BooleanArray, UInt64Array};
use arrow::compute::{filter, filter_record_batch};
use arrow::datatypes::Schema;
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::payload::Payload;
use crate::{Rejection, Result, Stage};

/// How far a source partition has been read: the cursor to resume from.
///
/// The cursor is opaque to the engine (a byte offset for files, a key or
/// rowid for tables); only the source that produced it interprets it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Position {
    /// The partition (file, key range) this position belongs to.
    pub partition: Arc<str>,
    /// Where to resume reading, in the source's own terms.
    pub cursor: serde_json::Value,
    /// Rows this partition has produced up to this position.
    pub rows: u64,
}

impl Position {
    /// A position read back from storage, its cursor kept as JSON text (a
    /// cursor that is not JSON stays a string).
    pub fn stored(partition: &str, cursor: String, rows: u64) -> Position {
        Position {
            partition: partition.into(),
            cursor: serde_json::from_str(&cursor).unwrap_or(serde_json::Value::String(cursor)),
            rows,
        }
    }
}

/// Where batches are cut: whichever limit is reached first.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchLimits {
    /// Most rows in one batch.
    pub rows: usize,
    /// Approximate most bytes of input behind one batch.
    pub bytes: usize,
    /// Longest a partial batch waits for more input before it is sent.
    pub linger: Duration,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits {
            rows: 32 * 1024,
            bytes: 2 << 20,
            linger: Duration::from_millis(500),
        }
    }
}

/// A batch of rows of one stream, with delivery metadata.
///
/// Change operations travel in the rows themselves, as the reserved `_op`
/// column ([`crate::reserved::OP`]: `insert`/`index`, `create`, `update`,
/// `upsert`, `delete`), not beside them: SQL transforms can then read,
/// filter and rewrite them like any column, and a sink that knows them acts
/// on them row by row. Rows without an `_op` column are inserts.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The stream (table, file set) the rows belong to.
    pub stream: Arc<str>,
    /// The rows.
    pub data: RecordBatch,
    /// The source position reached once this batch and all before it are
    /// delivered. `None` when the batch does not advance the source (for
    /// example the partial output of a stateful transform).
    pub position: Option<Position>,
    /// Where the rows came from (file or table), for rejections.
    pub origin: Arc<str>,
    /// Input line (files) or record number of each row, when known.
    pub lines: Option<Arc<UInt64Array>>,
    /// The rows still encoded as the source read them ([`Payload`]); `data`
    /// then holds no columns, only the row count. Sinks that accepted the
    /// payload's format write it as it is; [`Batch::decoded`] gives the rows.
    pub payload: Option<Arc<dyn Payload>>,
}

impl Batch {
    /// A batch with no position and no line numbers.
    pub fn new(stream: Arc<str>, origin: Arc<str>, data: RecordBatch) -> Self {
        Batch {
            stream,
            data,
            position: None,
            origin,
            lines: None,
            payload: None,
        }
    }

    /// A batch of `rows` rows carried as `payload`, without decoded columns.
    pub fn encoded(stream: Arc<str>, origin: Arc<str>, rows: usize, payload: Arc<dyn Payload>) -> Result<Self> {
        let data = RecordBatch::try_new_with_options(
            Arc::new(Schema::empty()),
            Vec::new(),
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )?;
        Ok(Batch {
            payload: Some(payload),
            ..Batch::new(stream, origin, data)
        })
    }

    /// The rows as Arrow: the batch itself, or its payload decoded (then the
    /// rows that do not decode come back as rejections, as the source would
    /// have sent them). The position stays with the batch.
    pub fn decoded(&self) -> Result<(Batch, Vec<Rejection>)> {
        match &self.payload {
            None => Ok((self.clone(), Vec::new())),
            Some(p) => {
                let decoded = p.decode()?;
                let batch = Batch {
                    data: decoded.data,
                    payload: None,
                    // Line numbers count the rows read, refused ones included.
                    lines: None,
                    ..self.clone()
                };
                Ok((batch, decoded.refused))
            }
        }
    }

    /// Number of rows.
    pub fn num_rows(&self) -> usize {
        self.data.num_rows()
    }

    /// The input line of row `i`, if known.
    pub fn line(&self, i: usize) -> Option<u64> {
        self.lines
            .as_ref()
            .filter(|l| i < l.len() && l.is_valid(i))
            .map(|l| l.value(i))
    }

    /// Keeps the rows where `mask` is true, line numbers included.
    pub fn filter(&self, mask: &BooleanArray) -> Result<Batch> {
        let data = filter_record_batch(&self.data, mask)?;
        let lines = match &self.lines {
            Some(l) => Some(Arc::new(downcast_u64(filter(l.as_ref(), mask)?.as_ref()))),
            None => None,
        };
        Ok(Batch {
            data,
            lines,
            payload: None,
            ..self.clone()
        })
    }

    /// A zero-copy slice of `len` rows from `offset`, without the position
    /// (only the whole batch advances the source).
    pub fn slice(&self, offset: usize, len: usize) -> Batch {
        Batch {
            stream: self.stream.clone(),
            data: self.data.slice(offset, len),
            position: None,
            origin: self.origin.clone(),
            lines: self.lines.as_ref().map(|l| Arc::new(l.slice(offset, len))),
            payload: None,
        }
    }

    /// A rejection of row `i`, carrying the row as it was when refused.
    pub fn reject_row(&self, i: usize, stage: Stage, by: &Arc<str>, reason: String) -> Rejection {
        self.rejection(i, stage, by, reason, row_record(&self.data, i))
    }

    fn rejection(&self, i: usize, stage: Stage, by: &Arc<str>, reason: String, record: Box<RawValue>) -> Rejection {
        Rejection {
            stream: self.stream.clone(),
            stage,
            by: by.clone(),
            origin: self.origin.clone(),
            line: self.line(i),
            reason,
            raw: None,
            record: Some(record),
        }
    }

    /// Rejections of the rows `rows` (index, reason), in one pass over the
    /// batch however many there are (rejecting half of a batch row by row
    /// would cost as much as loading it).
    pub fn reject_rows(&self, rows: Vec<(usize, String)>, stage: Stage, by: &Arc<str>) -> Vec<Rejection> {
        let records = rows_records(&self.data, &rows.iter().map(|(i, _)| *i).collect::<Vec<_>>());
        rows.into_iter()
            .zip(records)
            .map(|((i, reason), record)| self.rejection(i, stage, by, reason, record))
            .collect()
    }

    /// The same metadata around new rows (the result of a row-preserving transform).
    pub fn with_data(&self, data: RecordBatch) -> Batch {
        Batch {
            data,
            payload: None,
            ..self.clone()
        }
    }
}

/// Row `i` of `data` as a JSON object (nulls included).
pub fn row_json(data: &RecordBatch, i: usize) -> serde_json::Value {
    serde_json::from_str(row_record(data, i).get()).unwrap_or(serde_json::Value::Null)
}

/// Row `i` of `data` as JSON text (an object, nulls included), kept as
/// written for dead-letter output: never parsed into a tree and printed again.
pub fn row_record(data: &RecordBatch, i: usize) -> Box<RawValue> {
    let row = data.slice(i, 1);
    let mut buf = Vec::new();
    {
        let mut w = arrow::json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, arrow::json::writer::LineDelimited>(&mut buf);
        if w.write(&row).and_then(|_| w.finish()).is_err() {
            return json_null();
        }
    }
    raw_line(buf).unwrap_or_else(json_null)
}

/// JSON `null`, the record of a row that could not be written as JSON.
fn json_null() -> Box<RawValue> {
    RawValue::from_string("null".into()).expect("null is JSON")
}

/// One line of JSON text without its line break, checked to be JSON.
fn raw_line(mut line: Vec<u8>) -> Option<Box<RawValue>> {
    while line.last() == Some(&b'\n') {
        line.pop();
    }
    RawValue::from_string(String::from_utf8(line).ok()?).ok()
}

/// Rows `rows` of `data` as [`row_record`] gives them, in one pass over the
/// batch.
fn rows_records(data: &RecordBatch, rows: &[usize]) -> Vec<Box<RawValue>> {
    let single = || rows.iter().map(|&i| row_record(data, i)).collect();
    if rows.len() < 2 {
        return single();
    }
    let indexes = UInt64Array::from_iter_values(rows.iter().map(|&i| i as u64));
    let Ok(taken) = arrow::compute::take_record_batch(data, &indexes) else {
        return single();
    };
    let mut buf = Vec::new();
    {
        let mut w = arrow::json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, arrow::json::writer::LineDelimited>(&mut buf);
        if w.write(&taken).and_then(|_| w.finish()).is_err() {
            return single();
        }
    }
    // JSON text escapes line breaks, so each line is one row.
    let lines: Vec<&[u8]> = buf.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
    if lines.len() != rows.len() {
        return single();
    }
    lines
        .into_iter()
        .map(|l| raw_line(l.to_vec()).unwrap_or_else(json_null))
        .collect()
}

fn downcast_u64(array: &dyn Array) -> UInt64Array {
    array
        .as_any()
        .downcast_ref::<UInt64Array>()
        .cloned()
        .unwrap_or_else(|| UInt64Array::from(Vec::<u64>::new()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};

    fn batch() -> Batch {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let data = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![10, 20, 30]))]).unwrap();
        let mut b = Batch::new("s".into(), "f.csv".into(), data);
        b.lines = Some(Arc::new(UInt64Array::from(vec![2, 3, 5])));
        b
    }

    #[test]
    fn filter_keeps_line_numbers_aligned_with_rows() {
        let b = batch().filter(&BooleanArray::from(vec![true, false, true])).unwrap();
        assert_eq!(b.num_rows(), 2);
        assert_eq!((b.line(0), b.line(1)), (Some(2), Some(5)));
    }

    #[test]
    fn rejecting_rows_together_gives_what_rejecting_each_gives() {
        let b = batch();
        let by: Arc<str> = "test".into();
        let together = b.reject_rows(vec![(0, "a".into()), (2, "c".into())], Stage::Sink, &by);
        let alone = [
            b.reject_row(0, Stage::Sink, &by, "a".into()),
            b.reject_row(2, Stage::Sink, &by, "c".into()),
        ];
        let text = |r: &Rejection| r.record.as_ref().map(|v| v.get().to_string());
        for (t, a) in together.iter().zip(&alone) {
            assert_eq!((text(t), t.line, &t.reason), (text(a), a.line, &a.reason));
        }
        assert_eq!(text(&together[1]).as_deref(), Some(r#"{"x":30}"#));
    }

    #[test]
    fn slice_drops_position_and_keeps_lines() {
        let mut b = batch();
        b.position = Some(Position {
            partition: "p".into(),
            cursor: 1.into(),
            rows: 3,
        });
        let s = b.slice(1, 2);
        assert!(s.position.is_none());
        assert_eq!(s.line(0), Some(3));
    }
}
