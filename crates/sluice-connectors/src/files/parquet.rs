//! Parquet: reading row by row group, and a writer that closes row groups by
//! row count so memory stays bounded whatever the file size.

use std::fs::File;
use std::sync::Arc;

use arrow::array::UInt64Array;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression as Codec, ZstdLevel};
use parquet::file::properties::WriterProperties;
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
    let reader = builder
        .with_batch_size(ctx.limits.rows.max(1))
        .build()
        .map_err(|e| Error::data(path, e.to_string()))?;
    let mut rows = 0u64;
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

/// Writes batches to a Parquet file.
pub(crate) struct ParquetWriter {
    writer: ArrowWriter<Output>,
}

impl ParquetWriter {
    pub fn new(out: Output, schema: SchemaRef, codec: ParquetCodec, row_group_rows: usize) -> Result<Self> {
        let compression = match codec {
            ParquetCodec::Snappy => Codec::SNAPPY,
            ParquetCodec::Zstd => Codec::ZSTD(ZstdLevel::default()),
            ParquetCodec::None => Codec::UNCOMPRESSED,
        };
        let props = WriterProperties::builder()
            .set_compression(compression)
            .set_max_row_group_row_count(Some(row_group_rows.max(1)))
            .build();
        let writer = ArrowWriter::try_new(out, schema, Some(props))
            .map_err(|e| Error::Internal(format!("parquet writer: {e}")))?;
        Ok(ParquetWriter { writer })
    }

    pub fn write(&mut self, data: &RecordBatch, path: &str) -> Result<()> {
        self.writer
            .write(data)
            .map_err(|e| Error::data(path, format!("parquet: {e}")))
    }

    /// Writes the footer and returns the output for finishing.
    pub fn close(self, path: &str) -> Result<Output> {
        self.writer
            .into_inner()
            .map_err(|e| Error::data(path, format!("parquet: {e}")))
    }
}
