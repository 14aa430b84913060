//! Files: CSV, JSON, NDJSON and Parquet, search-engine documents (dumps,
//! bulk files, Rally exports), local paths, object stores (S3, GCS, Azure),
//! globs and standard streams, gzip and zstd by extension.
//!
//! Text formats are framed into whole records ([`framing`]) and decoded on
//! several threads in input order ([`decode`]); a record that does not decode
//! becomes a rejection naming its file and line, and the rest of its batch
//! is kept.

pub mod config;
mod csv;
mod decode;
pub(crate) mod docs;
pub(crate) mod encoding;
mod framing;
#[doc(hidden)]
pub mod fuzzing;
mod io;
mod json;
#[cfg(feature = "s3")]
pub(crate) mod objects;
#[cfg(feature = "parquet")]
mod parquet;
#[cfg(test)]
mod props;
mod sink;
mod source;

pub use config::{Compression, CsvOptions, FileSinkConfig, FileSourceConfig, Format, ParquetCodec};
pub use sink::FileSink;
pub(crate) use sink::file_name_for;
pub use source::FileSource;

/// Each row's columns, other than the document metadata columns (`_index`,
/// `_id`, `_routing`, `_op`, `_source`), as one JSON object per row.
pub fn row_documents(data: &arrow::record_batch::RecordBatch) -> sluice_core::Result<Vec<Vec<u8>>> {
    Ok(docs::row_documents(data)?)
}

/// Column `name` as text whatever its type; `None` when there is no such
/// column (for comparing documents by `_id` and `_source`).
pub fn text_column(
    data: &arrow::record_batch::RecordBatch,
    name: &str,
) -> sluice_core::Result<Option<arrow::array::StringArray>> {
    Ok(docs::text_column(data, name)?)
}
