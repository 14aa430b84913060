//! What the table sinks (SQLite, PostgreSQL, MySQL) share in their
//! configuration: the write mode, defaults, and `[sinks.types]` lookups.

use std::collections::BTreeMap;

use serde::Deserialize;

/// What a table sink (SQLite, PostgreSQL, MySQL) does with the rows it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum WriteMode {
    /// The job's own table: created (or an existing empty one taken over)
    /// and loaded exactly once. A table that already holds rows the
    /// pipeline did not write is refused; `--fresh` replaces what the
    /// pipeline wrote. See [`crate::ledger`].
    #[default]
    New,
    /// Add rows to the table, whatever it holds; create it when missing.
    Append,
    /// Load into a new table and swap it in when the stream completes.
    Replace,
    /// Insert or update by `key`.
    Upsert,
}

/// Default table name of a table sink: the stream's name.
pub fn default_table() -> String {
    "{stream}".into()
}

/// `true`, for `#[serde(default = …)]`.
pub fn default_true() -> bool {
    true
}

/// The `[sinks.types]` override for `table.column`, or for `column` in every table.
pub fn type_override<'a>(types: &'a BTreeMap<String, String>, table: &str, column: &str) -> Option<&'a str> {
    types
        .get(&format!("{table}.{column}"))
        .or_else(|| types.get(column))
        .map(String::as_str)
}
