//! PostgreSQL: a source reading tables or a query with binary `COPY` in
//! parallel snapshot-sharing partitions, and a sink loading with binary
//! `COPY FROM STDIN` in append, replace and upsert modes.

mod apply;
mod cdc;
mod config;
mod decode;
mod encode;
mod fidelity;
mod numeric;
mod passthrough;
pub mod pgoutput;
mod sink;
mod source;
mod spatial;
mod types;

pub use config::{PostgresSinkConfig, PostgresSourceConfig, redact};
pub use cdc::{PostgresChanges, UNCHANGED};
pub use sink::PostgresSink;
pub use source::PostgresSource;

use std::time::Duration;

use sluice_core::{Error, Result};
use tokio_postgres::{Client, NoTls};

/// How long opening a connection (TCP, TLS, the startup handshake) may take
/// unless the URL says (`connect_timeout=`); past it the attempt fails and
/// is retried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

pub use sluice_core::dbmeta::ENUM_LABELS;

/// Opens a connection; the connection task runs until the client is dropped.
pub async fn connect(url: &str) -> Result<Client> {
    let config: tokio_postgres::Config = url.parse().map_err(|e| {
        Error::config(
            "url",
            format!(
                "`{}` is not a PostgreSQL URL ({e}); write postgres://user:password@host:port/database",
                redact(url)
            ),
        )
    })?;
    let mut config = config;
    // A half-open connection (a dead peer, a dropped NAT entry) is noticed
    // and retried instead of hanging the run.
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    config
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30))
        .keepalives_interval(Duration::from_secs(10))
        .keepalives_retries(3);
    // The driver's own timeout covers only the TCP connect: a server that
    // accepts and then never answers the startup message would hang.
    let timeout = config.get_connect_timeout().copied().unwrap_or(CONNECT_TIMEOUT);
    let (client, connection) = match tokio::time::timeout(timeout, config.connect(NoTls)).await {
        Ok(r) => r.map_err(|e| pg_error(url, e))?,
        Err(_) => {
            return Err(Error::retryable(
                redact(url),
                format!(
                    "no answer within {} s (the server accepted the connection but did not respond); check the \
                     address and port, that a PostgreSQL server listens there, or raise connect_timeout in the URL",
                    timeout.as_secs_f64()
                ),
            ));
        }
    };
    let target = redact(url);
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(target = %target, error = %e, "postgres connection closed");
        }
    });
    Ok(client)
}

/// The server's own message when there is one (with detail and hint), else the error.
pub fn server_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut m = db.message().to_string();
            if let Some(d) = db.detail() {
                m.push_str(&format!(" ({d})"));
            }
            if let Some(h) = db.hint() {
                m.push_str(&format!("; hint: {h}"));
            }
            m
        }
        None => {
            let mut m = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(s) = src {
                m.push_str(&format!(": {s}"));
                src = s.source();
            }
            m
        }
    }
}

/// Whether an error is about the data (SQLSTATE classes 22 and 23), so the
/// rows at fault can be isolated and the rest loaded.
pub fn is_data_error(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        let c = c.code();
        c.starts_with("22") || c.starts_with("23")
    })
}

/// Whether an error may pass when the work is tried again: the connection
/// broke (the server restarted, a proxy cut it), or the server answered with
/// a serialization failure, a deadlock, "shutting down", "starting up" or
/// "too many connections".
pub fn is_transient(e: &tokio_postgres::Error) -> bool {
    match e.code() {
        Some(c) => {
            let c = c.code();
            c.starts_with("08") || c.starts_with("57P") || matches!(c, "40001" | "40P01" | "53300" | "55P03")
        }
        // No SQLSTATE: the connection itself failed or closed.
        None => e.as_db_error().is_none(),
    }
}

/// A failure talking to the server, as a sluice error.
///
/// Only refused values (SQLSTATE classes 22 and 23) are data errors; a bad
/// password, a missing privilege or table is a connection-level failure
/// (exit 3), not a rejected row.
pub fn pg_error(url: &str, e: tokio_postgres::Error) -> Error {
    if is_transient(&e) {
        Error::retryable(redact(url), server_message(&e))
    } else if is_data_error(&e) {
        Error::data(redact(url), server_message(&e))
    } else {
        Error::connection(redact(url), server_message(&e))
    }
}

/// Column `idx` of a row the server answered, read as `T`. A server whose
/// answer has another type than PostgreSQL's (a look-alike server, a
/// catalog changed by a new version) is an error naming `what` was read,
/// never a panic.
pub(crate) fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a tokio_postgres::Row,
    idx: usize,
    what: &str,
) -> Result<T> {
    row.try_get(idx).map_err(|e| {
        Error::connection(
            "postgres",
            format!("cannot read {what} from the server's answer ({e}); is the server PostgreSQL?"),
        )
    })
}

/// Registers the PostgreSQL source and sink (`postgres`, also `postgresql`).
pub fn register(r: &mut sluice_core::Registry) {
    use sluice_core::{ConnectorInfo, Source};
    r.add_source(
        ConnectorInfo::new("postgres", "tables or a query, binary COPY in parallel partitions of one snapshot")
            .aliases(&["postgresql"])
            .options(SOURCE_OPTIONS),
        |c: PostgresSourceConfig, _| Ok(Box::new(PostgresSource::new(c)?) as Box<dyn Source>),
    );
    r.add_change_source("postgres", |c: PostgresSourceConfig| {
        Ok(Box::new(PostgresChanges::new(c)?) as Box<dyn sluice_core::ChangeSource>)
    });
    r.add_sink(
        ConnectorInfo::new("postgres", "binary COPY; append, replace or upsert; tables, keys and indexes created")
            .aliases(&["postgresql"])
            .options(SINK_OPTIONS),
        |c: PostgresSinkConfig, _| {
            let rule = c.identifiers;
            Ok(rule.wrap(Box::new(PostgresSink::new(c)?)))
        },
    );
}

const SOURCE_OPTIONS: &[(&str, &str)] = &[
                ("url", "postgres://user:password@host:port/database"),
                ("schema", "schema to read (default public)"),
                (
                    "table / tables",
                    "table(s) to read, one stream each (default: every table)",
                ),
                ("exclude", "tables to leave out of a whole-schema read"),
                ("query", "a SELECT to read instead"),
                ("stream", "stream name for query (default query)"),
                (
                    "cursor",
                    "incremental reads: column whose value only grows (updated_at)",
                ),
                ("cursor_start", "first value of cursor when there is no checkpoint"),
                (
                    "partitions",
                    "parallel partitions per table (default: 1 per 250k rows, at most 8)",
                ),
                (
                    "mode",
                    "copy (default) | cdc: copy the tables, then apply their changes until stopped",
                ),
                ("slot", "cdc: the logical replication slot (default sluice_ and the pipeline's name)"),
                ("publication", "cdc: the publication (default: the slot's name)"),
            ];

const SINK_OPTIONS: &[(&str, &str)] = &[
                ("url", "postgres://user:password@host:port/database"),
                ("schema", "schema to write (default public)"),
                ("table", "table name; {stream} is the stream name (default {stream})"),
                (
                    "mode",
                    "new | append | replace | upsert (default new: refuses a table holding rows it did not write)",
                ),
                ("key", "upsert key (default: the source's primary key)"),
                ("create", "create missing tables (default true)"),
                (
                    "indexes",
                    "add keys, indexes, foreign keys after the load (default true)",
                ),
                (
                    "types.\"table.column\"",
                    "column type for created tables, e.g. \"numeric(12,2)\"",
                ),
                (
                    "identifiers",
                    "preserve | lower | snake: names of tables, columns, keys (default preserve)",
                ),
            ];
