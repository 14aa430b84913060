//! Files: CSV, JSON, NDJSON and Parquet, local paths, globs and standard
//! streams, gzip and zstd by extension.
//!
//! Text formats are framed into whole records ([`framing`]) and decoded on
//! several threads in input order ([`decode`]); a record that does not decode
//! becomes a rejection naming its file and line, and the rest of its batch
//! is kept.

pub mod config;
mod csv;
mod decode;
mod framing;
mod io;
mod json;
#[cfg(feature = "parquet")]
mod parquet;
mod sink;
mod source;

pub use config::{Compression, CsvOptions, FileSinkConfig, FileSourceConfig, Format, ParquetCodec};
pub use sink::FileSink;
pub use source::FileSource;
