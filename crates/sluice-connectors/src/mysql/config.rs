//! Configuration of the MySQL/MariaDB source and sink.

use std::collections::BTreeMap;

use serde::Deserialize;

/// What the source does with MySQL zero dates (`0000-00-00`, or a zero
/// month or day), which no Arrow date can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ZeroDates {
    /// Read them as NULL and log a warning with the count.
    #[default]
    Null,
    /// Reject the row, naming table, column and primary key.
    Reject,
}

/// `[source] type = "mysql"` (alias `mariadb`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MysqlSourceConfig {
    /// `mysql://user:password@host:port/database`.
    pub url: String,
    /// One table to read; default every base table of the URL's database.
    #[serde(default)]
    pub table: Option<String>,
    /// Several tables to read, one stream each.
    #[serde(default)]
    pub tables: Vec<String>,
    /// A `SELECT` to read instead of tables, as one stream.
    #[serde(default)]
    pub query: Option<String>,
    /// Stream name for `query`. Default `query`.
    #[serde(default)]
    pub stream: Option<String>,
    /// `null` (default) or `reject`: what zero dates become.
    #[serde(default)]
    pub zero_dates: ZeroDates,
    /// Partitions per table read in parallel. Default: one per 250,000
    /// estimated rows, at most 8 and one per core. Tables are split on the first column of
    /// their primary key when it is an integer.
    #[serde(default)]
    pub partitions: Option<usize>,
}

pub use crate::mode::WriteMode;
use crate::mode::{default_table, default_true};

/// `[[sinks]] type = "mysql"` (alias `mariadb`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MysqlSinkConfig {
    /// `mysql://user:password@host:port/database`.
    pub url: String,
    /// Table name; `{stream}` is replaced by the stream name. Default `{stream}`.
    #[serde(default = "default_table")]
    pub table: String,
    /// `new` (default: the job's own table, loaded once), `append`, `replace`
    /// or `upsert`.
    #[serde(default)]
    pub mode: WriteMode,
    /// Key columns for `upsert` and the primary key of created tables.
    /// Default: the primary key the source recorded.
    #[serde(default)]
    pub key: Vec<String>,
    /// Create missing tables from the stream schema. Default true.
    #[serde(default = "default_true")]
    pub create: bool,
    /// Column type overrides for created tables: `"table.column"` or
    /// `"column"` = `"mysql type"`, e.g. `amount = "decimal(14,2)"`.
    #[serde(default)]
    pub types: BTreeMap<String, String>,
    /// Names of created tables, columns, keys and indexes: `preserve`
    /// (default), `lower` or `snake`.
    #[serde(default)]
    pub identifiers: crate::identifiers::Identifiers,
}
