//! SQLite: a source reading tables or a query, and a sink creating tables
//! from the Arrow schema with `append`, `replace` and `upsert` modes.

pub mod config;
mod sink;
mod source;

pub use config::{SqliteSinkConfig, SqliteSourceConfig, WriteMode};
pub use sink::SqliteSink;
pub use source::SqliteSource;

/// Quotes an identifier for SQLite.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
