//! Configuration of the SQLite source and sink.

use serde::Deserialize;

pub use crate::mode::WriteMode;
use crate::mode::default_table;

/// `[source] type = "sqlite"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteSourceConfig {
    /// Database file.
    pub path: String,
    /// One table to read; default every table.
    #[serde(default)]
    pub table: Option<String>,
    /// Several tables to read, one stream each.
    #[serde(default)]
    pub tables: Vec<String>,
    /// A `SELECT` to read instead of tables.
    #[serde(default)]
    pub query: Option<String>,
    /// Stream name for `query`. Default `query`.
    #[serde(default)]
    pub stream: Option<String>,
}

/// `[[sinks]] type = "sqlite"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteSinkConfig {
    /// Database file, created when missing.
    pub path: String,
    /// Table name; `{stream}` is replaced by the stream name. Default `{stream}`.
    #[serde(default = "default_table")]
    pub table: String,
    /// `new` (default: the job's own table, loaded once), `append`, `replace`
    /// or `upsert`.
    #[serde(default)]
    pub mode: WriteMode,
    /// Key columns for `upsert` (and the primary key of created tables).
    #[serde(default)]
    pub key: Vec<String>,
    /// Names of created tables, columns, keys and indexes: `preserve`
    /// (default), `lower` or `snake`.
    #[serde(default)]
    pub identifiers: crate::identifiers::Identifiers,
}
