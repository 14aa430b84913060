//! Parquet: reading row by row group, and a writer that closes row groups by
//! row count so memory stays bounded whatever the file size.

use std::fs::File;
use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::array::UInt64Array;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::arrow_writer::{ArrowColumnWriter, ArrowLeafColumn, ArrowRowGroupWriterFactory, compute_leaves};
use parquet::basic::{Compression as Codec, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;
use sluice_core::{Batch, Error, Position, ReadContext, Result, SourceEvent};

use super::config::ParquetCodec;
use super::decode::Labels;
use super::io::Output;

fn open(path: &str) -> Result<ParquetRecordBatchReaderBuilder<File>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| Error::data(path, format!("not a readable Parquet file: {e}")))
}

/// The Arrow schema stored in a Parquet file.
pub(crate) fn schema(path: &str) -> Result<Schema> {
    Ok(open(path)?.schema().as_ref().clone())
}

/// Reads a Parquet file into `ctx.out`. Blocking.
pub(crate) fn read(path: &str, schema: SchemaRef, labels: Labels, ctx: &ReadContext) -> Result<()> {
    let builder = open(path)?;
    if builder.schema().fields() != schema.fields() {
        return Err(Error::data(
            path,
            "schema differs from the first file of the stream; files of one stream must share their columns",
        ));
    }
    // A resumed read starts after the rows an earlier run delivered.
    let mut rows = ctx.resume.as_ref().map_or(0, |p| p.rows);
    let reader = builder
        .with_batch_size(ctx.limits.rows.max(1))
        .with_offset(usize::try_from(rows).unwrap_or(usize::MAX))
        .build()
        .map_err(|e| Error::data(path, e.to_string()))?;
    for batch in reader {
        if ctx.cancel.is_cancelled() {
            break;
        }
        let data = batch.map_err(|e| Error::data(path, e.to_string()))?;
        let n = data.num_rows() as u64;
        let bytes = data.get_array_memory_size() as u64;
        let mut b = Batch::new(labels.stream.clone(), labels.origin.clone(), data);
        b.lines = Some(Arc::new(UInt64Array::from_iter_values(rows + 1..=rows + n)));
        rows += n;
        b.position = Some(Position {
            partition: labels.partition.clone(),
            cursor: serde_json::json!({ "row": rows }),
            rows,
        });
        ctx.out
            .blocking_send(SourceEvent::Progress { bytes })
            .map_err(|_| Error::Interrupted)?;
        ctx.out
            .blocking_send(SourceEvent::Batch(b))
            .map_err(|_| Error::Interrupted)?;
    }
    Ok(())
}

/// Writes batches to a Parquet file, encoding the columns of each batch on
/// several threads.
///
/// The file writer is created at the first batch, which also decides each
/// column's encoding: a column whose values are mostly distinct (ids,
/// amounts, timestamps, free text) is written plain, because a dictionary
/// for it is built only to be thrown away. Row groups close after
/// `row_group_rows` rows, which bounds memory whatever the file size.
pub(crate) struct ParquetWriter {
    state: WriterState,
    schema: SchemaRef,
    codec: ParquetCodec,
    row_group_rows: usize,
    threads: usize,
}

// One per stream, never moved on a hot path: boxing the output buys nothing.
#[allow(clippy::large_enum_variant)]
enum WriterState {
    /// No batch yet: the output waits for the encoding decision.
    Pending(Option<Output>),
    Open(Box<OpenWriter>),
}

struct OpenWriter {
    file: SerializedFileWriter<Output>,
    factory: ArrowRowGroupWriterFactory,
    /// Column writers of the row group being filled.
    columns: Option<Vec<ArrowColumnWriter>>,
    rows_in_group: usize,
    row_groups: usize,
}

/// Share of distinct values above which a column is not dictionary-encoded.
const DICTIONARY_MAX_DISTINCT: f64 = 0.5;

impl ParquetWriter {
    pub fn new(out: Output, schema: SchemaRef, codec: ParquetCodec, row_group_rows: usize) -> Result<Self> {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(ParquetWriter {
            state: WriterState::Pending(Some(out)),
            schema,
            codec,
            row_group_rows: row_group_rows.max(1),
            threads,
        })
    }

    fn properties(&self, sample: &RecordBatch) -> WriterProperties {
        let compression = match self.codec {
            ParquetCodec::Snappy => Codec::SNAPPY,
            ParquetCodec::Zstd => Codec::ZSTD(ZstdLevel::default()),
            ParquetCodec::None => Codec::UNCOMPRESSED,
        };
        // Parquet-native types (no second-precision timestamps, standard list
        // layout) so every reader understands the file.
        let mut props = WriterProperties::builder()
            .set_coerce_types(true)
            .set_compression(compression)
            .set_max_row_group_row_count(Some(self.row_group_rows));
        let n = sample.num_rows().min(8192);
        for (field, column) in self.schema.fields().iter().zip(sample.columns()) {
            if n > 0 && !field.data_type().is_nested() && distinct_share(&column.slice(0, n)) > DICTIONARY_MAX_DISTINCT
            {
                props = props.set_column_dictionary_enabled(ColumnPath::from(field.name().as_str()), false);
            }
        }
        props.build()
    }

    fn open(&mut self, sample: &RecordBatch, path: &str) -> Result<&mut OpenWriter> {
        if let WriterState::Pending(out) = &mut self.state {
            let out = out
                .take()
                .ok_or_else(|| Error::Internal(format!("{path}: parquet output lost")))?;
            let props = self.properties(sample);
            let writer = ArrowWriter::try_new(out, self.schema.clone(), Some(props))
                .map_err(|e| Error::Internal(format!("parquet writer: {e}")))?;
            let (file, factory) = writer
                .into_serialized_writer()
                .map_err(|e| Error::data(path, format!("parquet: {e}")))?;
            self.state = WriterState::Open(Box::new(OpenWriter {
                file,
                factory,
                columns: None,
                rows_in_group: 0,
                row_groups: 0,
            }));
        }
        match &mut self.state {
            WriterState::Open(w) => Ok(w),
            WriterState::Pending(_) => Err(Error::Internal("parquet writer not open".into())),
        }
    }

    pub fn write(&mut self, data: &RecordBatch, path: &str) -> Result<()> {
        if data.num_rows() == 0 {
            return Ok(());
        }
        let (schema, threads, group_rows) = (self.schema.clone(), self.threads, self.row_group_rows);
        let w = self.open(data, path)?;
        let fail = |e: parquet::errors::ParquetError| Error::data(path, format!("parquet: {e}"));
        let mut offset = 0;
        while offset < data.num_rows() {
            if w.columns.is_none() {
                w.columns = Some(w.factory.create_column_writers(w.row_groups).map_err(fail)?);
            }
            let take = (group_rows - w.rows_in_group).min(data.num_rows() - offset);
            let slice = data.slice(offset, take);
            let mut leaves = Vec::new();
            for (field, column) in schema.fields().iter().zip(slice.columns()) {
                leaves.extend(compute_leaves(field, column).map_err(fail)?);
            }
            let columns = w
                .columns
                .as_mut()
                .ok_or_else(|| Error::Internal("no column writers".into()))?;
            encode_parallel(columns, leaves, threads).map_err(fail)?;
            w.rows_in_group += take;
            offset += take;
            if w.rows_in_group >= group_rows {
                w.close_group().map_err(fail)?;
            }
        }
        Ok(())
    }

    /// Closes the last row group, writes the footer and returns the output for finishing.
    pub fn close(mut self, path: &str) -> Result<Output> {
        let fail = |e: parquet::errors::ParquetError| Error::data(path, format!("parquet: {e}"));
        if let WriterState::Pending(Some(_)) = &self.state {
            // No rows: still a valid file, with the schema.
            let empty = RecordBatch::new_empty(self.schema.clone());
            self.open(&empty, path)?;
        }
        match self.state {
            WriterState::Open(mut w) => {
                w.close_group().map_err(fail)?;
                w.file.into_inner().map_err(fail)
            }
            WriterState::Pending(_) => Err(Error::Internal(format!("{path}: parquet output lost"))),
        }
    }
}

impl OpenWriter {
    fn close_group(&mut self) -> parquet::errors::Result<()> {
        let Some(columns) = self.columns.take() else {
            return Ok(());
        };
        let mut group = self.file.next_row_group()?;
        for c in columns {
            c.close()?.append_to_row_group(&mut group)?;
        }
        group.close()?;
        self.row_groups += 1;
        self.rows_in_group = 0;
        Ok(())
    }
}

/// Encodes one slice of every column, columns shared out over `threads`.
fn encode_parallel(
    columns: &mut [ArrowColumnWriter],
    leaves: Vec<ArrowLeafColumn>,
    threads: usize,
) -> parquet::errors::Result<()> {
    let queue = std::sync::Mutex::new(columns.iter_mut().zip(leaves));
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.min(queue.lock().map_or(1, |q| q.len())).max(1))
            .map(|_| {
                scope.spawn(|| -> parquet::errors::Result<()> {
                    loop {
                        let next = queue
                            .lock()
                            .map_err(|_| ParquetError::General("encoder poisoned".into()))?
                            .next();
                        match next {
                            Some((writer, leaf)) => writer.write(&leaf)?,
                            None => return Ok(()),
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.join()
                .map_err(|_| ParquetError::General("encoder thread panicked".into()))??;
        }
        Ok(())
    })
}

/// Share of distinct values in a column sample.
fn distinct_share(column: &ArrayRef) -> f64 {
    let Ok(converter) = RowConverter::new(vec![SortField::new(column.data_type().clone())]) else {
        return 0.0;
    };
    let Ok(rows) = converter.convert_columns(std::slice::from_ref(column)) else {
        return 0.0;
    };
    let distinct: std::collections::HashSet<&[u8]> = rows.iter().map(|r| r.data()).collect();
    distinct.len() as f64 / column.len().max(1) as f64
}
