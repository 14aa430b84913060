//! Configuration of the PostgreSQL source and sink.

use std::collections::BTreeMap;

use serde::Deserialize;

pub use crate::mode::WriteMode;
use crate::mode::{default_table, default_true};

/// `[source] type = "postgres"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSourceConfig {
    /// `postgres://user:password@host:port/database` (or `key=value` form).
    pub url: String,
    /// Schema whose tables are read. Default `public`.
    #[serde(default)]
    pub schema: Option<String>,
    /// One table to read; default every table of the schema.
    #[serde(default)]
    pub table: Option<String>,
    /// Several tables to read, one stream each.
    #[serde(default)]
    pub tables: Vec<String>,
    /// Tables to leave out when reading a whole schema.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// A `SELECT` to read instead of tables.
    #[serde(default)]
    pub query: Option<String>,
    /// Stream name for `query`. Default `query`.
    #[serde(default)]
    pub stream: Option<String>,
    /// Incremental reads: only rows whose `cursor` column is above the last
    /// value read (or `cursor_start`), in cursor order.
    #[serde(default)]
    pub cursor: Option<String>,
    /// Where an incremental read starts when there is no checkpoint yet.
    #[serde(default)]
    pub cursor_start: Option<String>,
    /// Partitions per table read in parallel. Default: one per 250,000
    /// estimated rows, at most 8 and one per core.
    #[serde(default)]
    pub partitions: Option<usize>,
    /// `copy` (default) reads the tables once; `cdc` copies them and then
    /// applies their changes until stopped (logical replication).
    #[serde(default)]
    pub mode: SourceMode,
    /// Change capture (`sluice sync`): the logical replication slot.
    /// Default `sluice`.
    #[serde(default)]
    pub slot: Option<String>,
    /// Change capture: the publication naming the tables. Default `sluice`.
    #[serde(default)]
    pub publication: Option<String>,
    /// An exported snapshot to read at (`sluice sync` sets it to the one
    /// its new replication slot exported, so the copy and the changes meet
    /// without a gap).
    #[serde(default)]
    pub snapshot: Option<String>,
}

/// What a PostgreSQL source does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SourceMode {
    /// Read the tables (or the query) once.
    #[default]
    Copy,
    /// Copy the tables, then apply their changes until stopped.
    Cdc,
}

/// `[[sinks]] type = "postgres"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSinkConfig {
    /// `postgres://user:password@host:port/database`.
    pub url: String,
    /// Schema the tables go in. Default `public`.
    #[serde(default)]
    pub schema: Option<String>,
    /// Table name; `{stream}` is replaced by the stream name. Default `{stream}`.
    #[serde(default = "default_table")]
    pub table: String,
    /// `new` (default: the job's own table, loaded once), `append`, `replace`
    /// or `upsert`.
    #[serde(default)]
    pub mode: WriteMode,
    /// Key columns for `upsert`. Default: the source table's primary key.
    #[serde(default)]
    pub key: Vec<String>,
    /// Create missing tables from the source schema. Default true.
    #[serde(default = "default_true")]
    pub create: bool,
    /// Add the source's primary key, indexes and foreign keys to tables this
    /// sink created, after the load. Default true.
    #[serde(default = "default_true")]
    pub indexes: bool,
    /// Column types for created tables: `"table.column" = "numeric(12,2)"`
    /// or `"column" = "…"` for every table.
    #[serde(default)]
    pub types: BTreeMap<String, String>,
    /// Names of created tables, columns, keys and indexes: `preserve`
    /// (default), `lower` or `snake`.
    #[serde(default)]
    pub identifiers: crate::identifiers::Identifiers,
}

impl PostgresSinkConfig {
    /// The type override for `table.column`, if any.
    pub fn type_override(&self, table: &str, column: &str) -> Option<&str> {
        crate::mode::type_override(&self.types, table, column)
    }
}

pub use crate::url::redact;
