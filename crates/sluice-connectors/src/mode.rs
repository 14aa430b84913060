//! Write modes shared by the table sinks.

use serde::Deserialize;

/// What a table sink (SQLite, PostgreSQL, MySQL) does with the rows it gets.
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
