//! SQLite: a source reading tables or a query (with each table's keys,
//! indexes and foreign keys for database sinks), and a sink creating tables
//! from the Arrow schema with `append`, `replace` and `upsert` modes.

pub mod config;
mod schema;
mod sink;
mod source;
mod values;

pub use config::{SqliteSinkConfig, SqliteSourceConfig, WriteMode};
pub use sink::SqliteSink;
pub use source::SqliteSource;

/// Quotes an identifier for SQLite.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Registers the SQLite source and sink.
pub fn register(r: &mut sluice_core::Registry) {
    use sluice_core::{ConnectorInfo, Source};
    r.add_source(
        ConnectorInfo::new("sqlite", "tables or a query of a SQLite database")
            .options(SOURCE_OPTIONS),
        |c: SqliteSourceConfig, _| Ok(Box::new(SqliteSource::new(c)?) as Box<dyn Source>),
    );
    r.add_sink(
        ConnectorInfo::new("sqlite", "tables created from the Arrow schema")
            .options(SINK_OPTIONS),
        |c: SqliteSinkConfig, _| {
            let rule = c.identifiers;
            Ok(rule.wrap(Box::new(SqliteSink::new(c)?)))
        },
    );
}

const SOURCE_OPTIONS: &[(&str, &str)] = &[
                ("path", "database file"),
                (
                    "table / tables",
                    "table(s) to read, one stream each (default: all tables)",
                ),
                ("query", "a SELECT to read instead"),
                ("stream", "stream name for query (default query)"),
            ];

const SINK_OPTIONS: &[(&str, &str)] = &[
                ("path", "database file (created when missing)"),
                ("table", "table name; {stream} is the stream name (default {stream})"),
                (
                    "mode",
                    "new | append | replace | upsert (default new: refuses a table holding rows it did not write)",
                ),
                ("key", "key columns for upsert, primary key of created tables"),
                (
                    "identifiers",
                    "preserve | lower | snake: names of tables, columns, keys (default preserve)",
                ),
            ];
