//! Configuration of the SQLite source and sink.

use serde::Deserialize;

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

/// What a SQLite sink does with an existing table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum WriteMode {
    /// Add rows; create the table when it is missing.
    #[default]
    Append,
    /// Load into a new table and swap it in when the stream completes.
    Replace,
    /// Insert or update by `key`.
    Upsert,
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
    /// `append` (default), `replace` or `upsert`.
    #[serde(default)]
    pub mode: WriteMode,
    /// Key columns for `upsert` (and the primary key of created tables).
    #[serde(default)]
    pub key: Vec<String>,
}

fn default_table() -> String {
    "{stream}".into()
}
