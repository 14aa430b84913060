//! Configuration of the file source and sink, as written in the pipeline TOML.

use std::collections::BTreeMap;

use serde::Deserialize;

/// File formats sluice reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Comma-separated values (any delimiter).
    Csv,
    /// One JSON array of objects.
    Json,
    /// One JSON object per line (also `jsonl`).
    #[serde(alias = "jsonl")]
    Ndjson,
    /// Apache Parquet.
    Parquet,
    /// A human-readable table (output only, for previews).
    Table,
    /// elasticdump NDJSON: `{"_index","_id","_source"}` per line.
    #[serde(alias = "dump")]
    Elasticdump,
    /// `_bulk` NDJSON: action lines followed by documents.
    Bulk,
    /// Rally JSON exports (arrays or lines of objects), metadata stripped.
    Rally,
    /// JSON documents passed through as they are (one `_source` each).
    Raw,
}

impl Format {
    /// The format a path's extension names, looking through `.gz`/`.zst`.
    pub fn from_path(path: &str) -> Option<Format> {
        let lower = path.to_ascii_lowercase();
        let stem = lower
            .trim_end_matches(".gz")
            .trim_end_matches(".zst")
            .trim_end_matches(".zstd");
        let ext = stem.rsplit_once('.').map(|(_, e)| e)?;
        match ext {
            "csv" | "tsv" | "txt" => Some(Format::Csv),
            "json" => Some(Format::Json),
            "ndjson" | "jsonl" => Some(Format::Ndjson),
            "parquet" | "pq" => Some(Format::Parquet),
            _ => None,
        }
    }

    /// Lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Json => "json",
            Format::Ndjson => "ndjson",
            Format::Parquet => "parquet",
            Format::Table => "table",
            Format::Elasticdump => "elasticdump",
            Format::Bulk => "bulk",
            Format::Rally => "rally",
            Format::Raw => "raw",
        }
    }

    /// The document layout of the search formats.
    pub(crate) fn docs(self) -> Option<super::docs::DocKind> {
        use super::docs::DocKind;
        match self {
            Format::Elasticdump => Some(DocKind::Dump),
            Format::Bulk => Some(DocKind::Bulk),
            Format::Rally => Some(DocKind::Rally),
            Format::Raw => Some(DocKind::Raw),
            _ => None,
        }
    }
}

/// Compression of a file stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// From the extension: `.gz` is gzip, `.zst` is zstd, anything else none.
    #[default]
    Auto,
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// Resolves `Auto` against a path.
    pub fn resolve(self, path: &str) -> Compression {
        match self {
            Compression::Auto => {
                let lower = path.to_ascii_lowercase();
                if lower.ends_with(".gz") {
                    Compression::Gzip
                } else if lower.ends_with(".zst") || lower.ends_with(".zstd") {
                    Compression::Zstd
                } else {
                    Compression::None
                }
            }
            other => other,
        }
    }
}

/// CSV dialect, shared by the source and the sink.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CsvOptions {
    /// The first line holds column names. Default true.
    pub header: bool,
    /// Field separator. Default `,` (`\t` for `.tsv` files).
    pub delimiter: char,
    /// Quote character. Default `"`.
    pub quote: char,
    /// Escape character inside quoted fields; default none (quotes are doubled).
    pub escape: Option<char>,
    /// Text that means NULL (for example `NA` or `\N`); default: empty fields are NULL.
    pub null: Option<String>,
    /// Lines starting with this character are skipped.
    pub comment: Option<char>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            header: true,
            delimiter: ',',
            quote: '"',
            escape: None,
            null: None,
            comment: None,
        }
    }
}

/// `[source] type = "file"` (or `csv`, `json`, `ndjson`, `parquet`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// A path, a glob (`data/*.csv`) or `-` for standard input.
    pub path: String,
    /// Format; default from the extension (required for `-`).
    #[serde(default)]
    pub format: Option<Format>,
    /// Compression; default from the extension.
    #[serde(default)]
    pub compression: Compression,
    /// Stream name; default the file stem (`orders` for `orders.csv`).
    #[serde(default)]
    pub stream: Option<String>,
    /// Records sampled to infer the schema. Default 1000.
    #[serde(default = "default_infer_rows")]
    pub infer_rows: usize,
    /// Declared column types, overriding inference: `amount = "decimal(12,2)"`.
    #[serde(default)]
    pub schema: BTreeMap<String, String>,
    /// CSV dialect.
    #[serde(default)]
    pub csv: CsvOptions,
    /// Text encoding of CSV and JSON input: any WHATWG label (`windows-1252`,
    /// `latin1`, `iso-8859-15`, `shift_jis`, `utf-16le`, …). Default UTF-8;
    /// a byte-order mark (UTF-8 or UTF-16) wins over this setting.
    #[serde(default)]
    pub encoding: Option<String>,
}

fn default_infer_rows() -> usize {
    1000
}

/// Parquet compression codec for the file sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ParquetCodec {
    #[default]
    Snappy,
    Zstd,
    None,
}

/// `[[sinks]] type = "file"` (or `csv`, `json`, `ndjson`, `parquet`, `stdout`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// Output path or `-` for standard output; `{stream}` is replaced by the
    /// stream name. Written to `PATH.part` and renamed when finished.
    #[serde(default = "stdout_path")]
    pub path: String,
    /// Format; default from the extension (CSV for standard output).
    #[serde(default)]
    pub format: Option<Format>,
    /// Compression; default from the extension.
    #[serde(default)]
    pub compression: Compression,
    /// CSV dialect (header, delimiter, quote).
    #[serde(default)]
    pub csv: CsvOptions,
    /// Parquet codec. Default snappy.
    #[serde(default)]
    pub parquet_compression: ParquetCodec,
    /// Rows per Parquet row group. Default 122880.
    #[serde(default = "default_row_group_rows")]
    pub row_group_rows: usize,
    /// Rows shown by the `table` format (all rows are still counted). Default 50.
    #[serde(default = "default_table_rows")]
    pub limit: usize,
}

fn stdout_path() -> String {
    "-".into()
}

fn default_row_group_rows() -> usize {
    122_880
}

fn default_table_rows() -> usize {
    50
}

impl FileSinkConfig {
    /// The format this sink writes.
    pub fn resolved_format(&self) -> Option<Format> {
        match self.format {
            Some(f) => Some(f),
            None if self.path == "-" => Some(Format::Csv),
            None => Format::from_path(&self.path),
        }
    }
}

impl FileSourceConfig {
    /// The format this source reads.
    pub fn resolved_format(&self) -> Option<Format> {
        self.format.or_else(|| Format::from_path(&self.path))
    }
}
