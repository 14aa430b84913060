//! MySQL and MariaDB: a source reading tables (in parallel primary-key
//! ranges) or a query over the text protocol, and a sink loading batches
//! with multi-row `INSERT` statements in `append`, `replace` and `upsert`
//! modes.
//!
//! Both sides keep the database's column types in Arrow field metadata
//! ([`sluice_core::dbmeta`]), so a MySQL → MySQL copy recreates the same
//! column types, keys and indexes. Sessions run with `time_zone = '+00:00'`
//! and `utf8mb4`, so `timestamp` values and text travel unchanged.

pub mod config;
mod decode;
mod encode;
mod fidelity;
mod sink;
mod source;
mod spatial;
mod types;

pub use config::{MysqlSinkConfig, MysqlSourceConfig, WriteMode, ZeroDates};
pub use sink::MysqlSink;
pub use source::MysqlSource;

use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, Row, Value};
use sluice_core::{Error, Result};

/// Quotes an identifier for MySQL.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// A string literal, escaped for a session without `NO_BACKSLASH_ESCAPES`
/// (sluice sessions set their own `sql_mode`).
pub(crate) fn sql_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    encode::push_escaped(&mut out, s);
    out
}

pub(crate) use crate::url::redact;

/// A server to connect to: the driver's options and how long opening a
/// session may take.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub opts: Opts,
    /// The whole of connecting: TCP, the handshake and the session setup.
    pub timeout: Duration,
}

impl Endpoint {
    pub fn db_name(&self) -> Option<&str> {
        self.opts.db_name()
    }
}

/// Parses a connection URL; `key` names the setting in errors.
/// `connect_timeout=SECONDS` in the query is sluice's own (default 15).
pub(crate) fn parse_url(url: &str, key: &str) -> Result<Endpoint> {
    let (url, timeout) = take_connect_timeout(url).map_err(|e| Error::config(key, format!("{}: {e}", redact(url))))?;
    let opts = Opts::from_url(&url).map_err(|e| {
        Error::config(
            key,
            format!(
                "{}: {e}; expected mysql://user:password@host:port/database (percent-encode `/ @ : ? #` in a \
                 password: %2F %40 %3A %3F %23)",
                redact(&url)
            ),
        )
    })?;
    if opts.db_name().is_none_or(str::is_empty) {
        return Err(Error::config(
            key,
            format!(
                "{} names no database; add it as the path: mysql://user@host:3306/mydb",
                redact(&url)
            ),
        ));
    }
    Ok(Endpoint { opts, timeout })
}

/// Removes `connect_timeout=SECONDS` from a URL's query (the driver does not
/// know it) and returns it, or the default.
fn take_connect_timeout(url: &str) -> std::result::Result<(String, Duration), String> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), CONNECT_TIMEOUT));
    };
    let mut timeout = CONNECT_TIMEOUT;
    let mut rest = Vec::new();
    for pair in query.split('&') {
        match pair.strip_prefix("connect_timeout=") {
            Some(v) => {
                let secs: f64 = v
                    .parse()
                    .ok()
                    .filter(|s: &f64| *s > 0.0 && s.is_finite())
                    .ok_or_else(|| format!("connect_timeout = `{v}` is not a number of seconds above 0"))?;
                timeout = Duration::from_secs_f64(secs);
            }
            None => rest.push(pair),
        }
    }
    let url = if rest.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    Ok((url, timeout))
}

/// How long opening a session may take unless the URL says
/// (`connect_timeout=`); past it the attempt fails and is retried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Opens a session in UTC and utf8mb4, with `sql_mode` set when given.
///
/// The whole of it (TCP connect, handshake, session setup) has
/// `endpoint.timeout`: a server that accepts the connection and never
/// answers fails the attempt with a retryable error instead of hanging.
pub(crate) async fn connect(endpoint: &Endpoint, target: &str, sql_mode: Option<&str>) -> Result<Conn> {
    let timeout = endpoint.timeout;
    match tokio::time::timeout(timeout, open_session(endpoint, target, sql_mode)).await {
        Ok(r) => r,
        Err(_) => Err(Error::retryable(
            target,
            format!(
                "no answer within {} (the server accepted the connection but did not respond); check the address \
                 and port, that a MySQL/MariaDB server listens there, or raise connect_timeout in the URL",
                seconds(timeout)
            ),
        )),
    }
}

/// A duration for messages: `15 s`, `0.5 s`.
pub(crate) fn seconds(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

async fn open_session(endpoint: &Endpoint, target: &str, sql_mode: Option<&str>) -> Result<Conn> {
    // Keepalives notice a half-open connection instead of hanging the run;
    // a server that is down or restarting is retried like a lost connection.
    let opts = mysql_async::OptsBuilder::from_opts(endpoint.opts.clone()).tcp_keepalive(Some(Duration::from_secs(30)));
    let mut conn = Conn::new(opts).await.map_err(|e| match db_error(target, e) {
        Error::Retryable { message, .. } => Error::retryable(target, format!("cannot connect: {message}")),
        other => other,
    })?;
    let mut set = "SET NAMES utf8mb4, time_zone = '+00:00'".to_string();
    if let Some(mode) = sql_mode {
        set.push_str(&format!(", SESSION sql_mode = {}", sql_string(mode)));
    }
    conn.query_drop(set).await.map_err(|e| db_error(target, e))?;
    Ok(conn)
}

/// A server or driver failure as a sluice error.
///
/// Deadlocks (1213), lock wait timeouts (1205), "too many connections"
/// (1040), a server shutting down (1053) and a lost connection (I/O, or the
/// driver's "gone away") may pass when tried again; they are retryable.
pub(crate) fn db_error(target: &str, e: mysql_async::Error) -> Error {
    match e {
        mysql_async::Error::Server(s) if matches!(s.code, 1040 | 1053 | 1205 | 1213 | 2006 | 2013) => {
            Error::retryable(target, format!("{} (error {})", s.message, s.code))
        }
        mysql_async::Error::Server(s) => Error::connection(target, format!("{} (error {})", s.message, s.code)),
        e @ (mysql_async::Error::Io(_) | mysql_async::Error::Driver(mysql_async::DriverError::ConnectionClosed)) => {
            Error::retryable(target, e.to_string())
        }
        other => Error::connection(target, other.to_string()),
    }
}

/// Column `i` of a metadata row as text (`None` for NULL).
pub(crate) fn text(row: &Row, i: usize) -> Option<String> {
    match row.as_ref(i)? {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::Int(v) => Some(v.to_string()),
        Value::UInt(v) => Some(v.to_string()),
        Value::Float(v) => Some(v.to_string()),
        Value::Double(v) => Some(v.to_string()),
        other => Some(other.as_sql(true)),
    }
}

/// Runs a metadata query and returns its rows.
pub(crate) async fn rows(conn: &mut Conn, target: &str, sql: &str) -> Result<Vec<Row>> {
    conn.query::<Row, _>(sql).await.map_err(|e| db_error(target, e))
}


/// Registers the MySQL/MariaDB source and sink (`mysql`, also `mariadb`).
pub fn register(r: &mut sluice_core::Registry) {
    use sluice_core::{ConnectorInfo, Source};
    r.add_source(
        ConnectorInfo::new("mysql", "MySQL/MariaDB tables (parallel key ranges) or a query")
            .aliases(&["mariadb"])
            .options(SOURCE_OPTIONS),
        |c: MysqlSourceConfig, _| Ok(Box::new(MysqlSource::new(c)?) as Box<dyn Source>),
    );
    r.add_sink(
        ConnectorInfo::new("mysql", "MySQL/MariaDB tables, multi-row INSERT, bad rows isolated")
            .aliases(&["mariadb"])
            .options(SINK_OPTIONS),
        |c: MysqlSinkConfig, _| {
            let rule = c.identifiers;
            Ok(rule.wrap(Box::new(MysqlSink::new(c)?)))
        },
    );
}

const SOURCE_OPTIONS: &[(&str, &str)] = &[
                ("url", "mysql://user:password@host:3306/database"),
                (
                    "table / tables",
                    "table(s) to read, one stream each (default: every base table)",
                ),
                ("query", "a SELECT to read instead, as one stream"),
                ("stream", "stream name for query (default query)"),
                (
                    "zero_dates",
                    "null | reject: what 0000-00-00 dates become (default null, with a warning)",
                ),
            ];

const SINK_OPTIONS: &[(&str, &str)] = &[
                ("url", "mysql://user:password@host:3306/database"),
                ("table", "table name; {stream} is the stream name (default {stream})"),
                (
                    "mode",
                    "new | append | replace | upsert (default new: refuses a table holding rows it did not write)",
                ),
                (
                    "key",
                    "upsert key, primary key of created tables (default: the source's)",
                ),
                ("create", "create missing tables (default true)"),
                (
                    "types.\"table.column\"",
                    "column type for created tables, e.g. \"decimal(14,2)\"",
                ),
                (
                    "identifiers",
                    "preserve | lower | snake: names of tables, columns, keys (default preserve)",
                ),
            ];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_the_password_only() {
        assert_eq!(redact("mysql://u:secret@h:3306/db"), "mysql://u:***@h:3306/db");
        assert_eq!(redact("mysql://u@h/db"), "mysql://u@h/db");
        assert_eq!(redact("mysql://h/db"), "mysql://h/db");
    }

    #[test]
    fn configs_parse_under_both_names_and_refuse_unknown_keys() {
        let r = crate::registry();
        let table = |text: &str| toml::from_str::<toml::Table>(text).unwrap();
        let src = r
            .build_source(&table("type = \"mariadb\"\nurl = \"mysql://u@h/db\"\nzero_dates = \"reject\""))
            .unwrap();
        assert_eq!(src.name(), "mysql");
        let sink: MysqlSinkConfig = toml::from_str(
            "url = \"mysql://u@h/db\"\nmode = \"upsert\"\nkey = [\"id\"]\n\
             [types]\n\"orders.amount\" = \"decimal(14,2)\"",
        )
        .unwrap();
        assert_eq!(
            (sink.mode, sink.create, sink.table.as_str()),
            (WriteMode::Upsert, true, "{stream}")
        );
        assert_eq!(sink.types.get("orders.amount").map(String::as_str), Some("decimal(14,2)"));
        let e = r
            .parse_source(&table("type = \"mysql\"\nurl = \"x\"\ntabel = \"t\""))
            .unwrap_err();
        assert!(e.to_string().contains("unknown field `tabel`"), "{e}");
    }

    #[test]
    fn a_url_without_a_database_is_a_config_error() {
        let cfg: MysqlSourceConfig = toml::from_str("url = \"mysql://u:pw@h:3306\"").unwrap();
        let err = MysqlSource::new(cfg).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("names no database") && !err.contains("pw"), "{err}");
    }

    #[test]
    fn connect_timeout_is_taken_from_the_url() {
        let e = parse_url("mysql://u:pw@h:3306/db?connect_timeout=2.5&tcp_nodelay=true", "url").ok();
        assert_eq!(e.as_ref().map(|e| e.timeout), Some(Duration::from_millis(2500)));
        assert_eq!(e.as_ref().and_then(|e| e.db_name()), Some("db"));
        let e = parse_url("mysql://u@h/db", "url").ok();
        assert_eq!(e.map(|e| e.timeout), Some(CONNECT_TIMEOUT));
        let err = parse_url("mysql://u:pw@h/db?connect_timeout=soon", "url")
            .err()
            .map(|e| e.to_string());
        let err = err.unwrap_or_default();
        assert!(err.contains("connect_timeout") && !err.contains("pw"), "{err}");
    }

    #[test]
    fn identifiers_and_strings_are_quoted() {
        assert_eq!(quote_ident("a`b"), "`a``b`");
        assert_eq!(sql_string("it's \\ \0"), "'it\\'s \\\\ \\0'");
    }
}
