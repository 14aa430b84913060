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
mod sink;
mod source;
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

/// Parses a connection URL; `key` names the setting in errors.
pub(crate) fn parse_url(url: &str, key: &str) -> Result<Opts> {
    let opts = Opts::from_url(url).map_err(|e| {
        Error::config(
            key,
            format!(
                "{}: {e}; expected mysql://user:password@host:port/database (percent-encode `/ @ : ? #` in a \
                 password: %2F %40 %3A %3F %23)",
                redact(url)
            ),
        )
    })?;
    if opts.db_name().is_none_or(str::is_empty) {
        return Err(Error::config(
            key,
            format!(
                "{} names no database; add it as the path: mysql://user@host:3306/mydb",
                redact(url)
            ),
        ));
    }
    Ok(opts)
}

/// How long opening a connection may take before the attempt is retried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Opens a session in UTC and utf8mb4, with `sql_mode` set when given.
pub(crate) async fn connect(opts: &Opts, target: &str, sql_mode: Option<&str>) -> Result<Conn> {
    // Keepalives notice a half-open connection instead of hanging the run;
    // a server that is down or restarting is retried like a lost connection.
    let opts = mysql_async::OptsBuilder::from_opts(opts.clone()).tcp_keepalive(Some(Duration::from_secs(30)));
    let mut conn = match tokio::time::timeout(CONNECT_TIMEOUT, Conn::new(opts)).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            return Err(match db_error(target, e) {
                Error::Retryable { message, .. } => Error::retryable(target, format!("cannot connect: {message}")),
                other => other,
            });
        }
        Err(_) => {
            return Err(Error::retryable(
                target,
                format!("cannot connect: no answer within {} s", CONNECT_TIMEOUT.as_secs()),
            ));
        }
    };
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
        let src: crate::SourceConfig =
            toml::from_str("type = \"mariadb\"\nurl = \"mysql://u@h/db\"\nzero_dates = \"reject\"").unwrap();
        assert!(matches!(src, crate::SourceConfig::Mysql(ref c) if c.zero_dates == ZeroDates::Reject));
        let sink: crate::SinkConfig = toml::from_str(
            "type = \"mysql\"\nurl = \"mysql://u@h/db\"\nmode = \"upsert\"\nkey = [\"id\"]\n\
             [types]\n\"orders.amount\" = \"decimal(14,2)\"",
        )
        .unwrap();
        let crate::SinkConfig::Mysql(c) = sink else {
            panic!("not a mysql sink")
        };
        assert_eq!(
            (c.mode, c.create, c.table.as_str()),
            (WriteMode::Upsert, true, "{stream}")
        );
        assert_eq!(c.types.get("orders.amount").map(String::as_str), Some("decimal(14,2)"));
        assert!(toml::from_str::<crate::SourceConfig>("type = \"mysql\"\nurl = \"x\"\ntabel = \"t\"").is_err());
    }

    #[test]
    fn a_url_without_a_database_is_a_config_error() {
        let cfg: MysqlSourceConfig = toml::from_str("url = \"mysql://u:pw@h:3306\"").unwrap();
        let err = MysqlSource::new(cfg).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("names no database") && !err.contains("pw"), "{err}");
    }

    #[test]
    fn identifiers_and_strings_are_quoted() {
        assert_eq!(quote_ident("a`b"), "`a``b`");
        assert_eq!(sql_string("it's \\ \0"), "'it\\'s \\\\ \\0'");
    }
}
