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
pub use source::FileSource;


use sluice_core::{ConnectorInfo, Error, Registry, Result, SinkConnector, Source};

/// Registers the file source (`file`, or a format as the type: `csv`,
/// `json`, `ndjson`, `parquet`) and the file sink (also `stdout`).
pub fn register(r: &mut Registry) {
    r.add_source(
        ConnectorInfo::new("file", "CSV, JSON, NDJSON, Parquet files, globs, stdin")
            .aliases(&["csv", "json", "ndjson", "jsonl", "parquet"])
            .options(FILE_SOURCE_OPTIONS),
        |c: FileSourceConfig, kind| {
            let c = with_format(c, kind, |c| &mut c.format, "source.format")?;
            Ok(Box::new(FileSource::new(c)?) as Box<dyn Source>)
        },
    );
    r.add_sink(
        ConnectorInfo::new("file", "CSV, JSON, NDJSON, Parquet files, stdout, preview table")
            .aliases(&["csv", "json", "ndjson", "jsonl", "parquet", "stdout"])
            .options(FILE_SINK_OPTIONS),
        |c: FileSinkConfig, kind| {
            if kind.eq_ignore_ascii_case("stdout") && c.path != "-" {
                return Err(Error::config(
                    "sinks.path",
                    "a stdout sink has no path; use type = \"file\" to write a file",
                ));
            }
            let c = with_format(c, kind, |c| &mut c.format, "sinks.format")?;
            Ok(Box::new(FileSink::new(c)?) as Box<dyn SinkConnector>)
        },
    );
}

/// A format given as the connector type (`type = "csv"`) sets `format`,
/// and conflicts with a different one set explicitly.
fn with_format<T>(mut cfg: T, kind: &str, get: impl Fn(&mut T) -> &mut Option<Format>, key: &str) -> Result<T> {
    let format = match kind.to_ascii_lowercase().as_str() {
        "csv" => Format::Csv,
        "json" => Format::Json,
        "ndjson" | "jsonl" => Format::Ndjson,
        "parquet" => Format::Parquet,
        _ => return Ok(cfg),
    };
    let slot = get(&mut cfg);
    match *slot {
        Some(f) if f != format => Err(Error::config(
            key,
            format!(
                "type = \"{}\" conflicts with format = \"{}\"; drop one",
                format.name(),
                f.name()
            ),
        )),
        _ => {
            *slot = Some(format);
            Ok(cfg)
        }
    }
}

const FILE_SOURCE_OPTIONS: &[(&str, &str)] = &[
    (
        "path",
        "path, glob (data/*.csv), s3:// gs:// az:// object, prefix/ or glob, or - for stdin; .gz and .zst are decompressed",
    ),
    (
        "format",
        "csv | json | ndjson | parquet | elasticdump | bulk | rally | raw (default: from the extension; elasticdump lines are recognised)",
    ),
    ("compression", "auto | none | gzip | zstd (default auto)"),
    ("stream", "stream name (default: the file stem)"),
    ("infer_rows", "records sampled to infer the schema (default 1000)"),
    (
        "schema.COLUMN",
        "declared type overriding inference, e.g. amount = \"decimal(12,2)\"",
    ),
    ("csv.header", "first line holds names (default true)"),
    ("csv.delimiter", "field separator (default , ; tab for .tsv)"),
    ("csv.quote", "quote character (default \")"),
    (
        "csv.escape",
        "escape character inside quotes (default none: quotes are doubled)",
    ),
    ("csv.null", "text meaning NULL, e.g. NA (default: empty field)"),
    ("csv.comment", "lines starting with this character are skipped"),
];

const FILE_SINK_OPTIONS: &[(&str, &str)] = &[
    (
        "path",
        "output path, s3:// gs:// az:// object, or - for stdout; {stream} is the stream name; .gz/.zst compress",
    ),
    (
        "format",
        "csv | json | ndjson | parquet | table | elasticdump | bulk | raw (default: from the extension; csv on stdout)",
    ),
    ("compression", "auto | none | gzip | zstd (default auto)"),
    ("csv.header / csv.delimiter / csv.quote", "CSV dialect of the output"),
    ("parquet_compression", "snappy | zstd | none (default snappy)"),
    ("row_group_rows", "rows per Parquet row group (default 122880)"),
    ("limit", "rows shown by the table format (default 50)"),
];

