//! The MySQL/MariaDB sink.
//!
//! # Loading
//!
//! Each batch is written as multi-row `INSERT` statements of up to 4 MiB
//! (less when the server's `max_allowed_packet` is smaller) inside one
//! transaction, which also stores the batch's source position in
//! `_sluice_checkpoints`; [`Sink::flush`] commits it, after the engine has
//! written the batch's rejected rows to the dead-letter file. After a crash
//! the table and its checkpoint agree, so a resumed run neither loses nor
//! repeats a row. The row with an empty `part` is the table's job record
//! (see [`crate::ledger`]); DDL commits implicitly here, so a table to start
//! over is cleared before the record changes and a table to create is
//! created after it: a crash in between is found and undone by the next
//! run, which still adds the indexes of a table its job created. Sessions run in
//! strict mode (`STRICT_ALL_TABLES`), so the server refuses a value that does
//! not fit instead of truncating it.
//!
//! # Bad rows
//!
//! When a statement fails with a data error (out of range, too long, NULL in
//! a NOT NULL column, duplicate key, failed check), the server has undone
//! that statement. Its rows and the batch's later ones are staged in the
//! temporary table `sluice_check` (the table's column types, none of its
//! constraints; a value a type refuses is isolated there), the table's
//! `NOT NULL` and `CHECK` constraints are judged over the stage in one
//! query, and the rest moves with `INSERT … SELECT`, isolated by
//! [`crate::refused::isolate`] when the server still refuses some (keys).
//! Every refused row is returned as a [`Rejection`] with the server's
//! message; the other rows are loaded. This relies on statements being
//! atomic, as they are in InnoDB.
//!
//! # Modes
//!
//! - `new` (the default) loads the job's own table once: created, or an
//!   existing empty one; a table holding rows the pipeline did not write is
//!   refused ([`crate::ledger`]).
//! - `append` adds rows, creating the table when it is missing (`create`).
//! - `replace` loads into `TABLE__sluice_new` and, when the stream completes,
//!   renames it into place in one `RENAME TABLE`; an interrupted run leaves
//!   the original table untouched (and the staging table for inspection).
//! - `upsert` uses `INSERT … ON DUPLICATE KEY UPDATE`, matching rows on the
//!   table's primary key and unique keys.
//!
//! Created tables get the source's column types when it was MySQL (field
//! metadata), otherwise a mapping of the Arrow types (see [`super::types`]);
//! the primary key at creation, secondary indexes after the load. Foreign
//! keys are not created: the referenced tables may not be loaded yet.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use sluice_core::dbmeta::{ColumnDefault, IndexMeta, TableMeta};
use sluice_core::{Batch, Error, Position, Rejection, Result, Sink, SinkConnector, Stage, StreamInfo};

use super::config::{MysqlSinkConfig, WriteMode};
use super::encode::{EncodedRows, encode_rows};
use super::fidelity;
use super::types::{ddl_for_field, is_lob};
use super::{Endpoint, connect, db_error, parse_url, quote_ident, redact, rows, sql_string, text};
use crate::ledger::checkpoints::{self, Checkpoints, Dialect, Mysql, Statement, Value};
use crate::ledger::{self, Action, Clear, Done, Found, JobRecord};
use crate::refused::{self, Trial};

/// Largest statement the sink sends.
const MAX_STATEMENT: usize = 4 << 20;
/// Session mode of the sink: refuse bad values instead of truncating them,
/// and store a 0 in an `AUTO_INCREMENT` column as 0, not as the next number.
const SQL_MODE: &str = "STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION,NO_AUTO_VALUE_ON_ZERO";
/// Server error codes that blame the rows of a statement, not the statement.
const ROW_ERRORS: &[u16] = &[
    1048, // column cannot be null
    1062, // duplicate entry
    1263, // NULL supplied to a NOT NULL column
    1264, // out of range
    1265, // data truncated
    1292, // incorrect date/time/number value
    1300, // invalid character string
    1364, // field has no default value
    1366, // incorrect value for column
    1367, // illegal value
    1406, // data too long
    1452, // foreign key: no parent row
    1586, // duplicate entry for a key
    1690, // value out of range in an expression
    3140, // invalid JSON text
    3819, // check constraint violated (MySQL)
    4025, // check constraint failed (MariaDB)
];

/// Writes streams into tables of one MySQL or MariaDB database.
pub struct MysqlSink {
    cfg: MysqlSinkConfig,
    opts: Endpoint,
    target: String,
}

impl MysqlSink {
    /// Checks the configuration; connects to nothing.
    pub fn new(cfg: MysqlSinkConfig) -> Result<Self> {
        if cfg.table.trim().is_empty() {
            return Err(Error::config("sinks.table", "must not be empty"));
        }
        let opts = parse_url(&cfg.url, "sinks.url")?;
        let target = redact(&cfg.url);
        Ok(MysqlSink { cfg, opts, target })
    }

    fn table_for(&self, stream: &str) -> String {
        self.cfg.table.replace("{stream}", stream)
    }
}

#[async_trait]
impl SinkConnector for MysqlSink {
    fn name(&self) -> &str {
        "mysql"
    }

    fn read_back(&self, stream: &str) -> Option<Result<Box<dyn sluice_core::Source>>> {
        let cfg = super::MysqlSourceConfig {
            url: self.cfg.url.clone(),
            table: Some(self.cfg.table.replace("{stream}", stream)),
            tables: Vec::new(),
            query: None,
            stream: None,
            partitions: None,
            zero_dates: Default::default(),
        };
        Some(super::MysqlSource::new(cfg).map(|s| Box::new(s) as Box<dyn sluice_core::Source>))
    }

    fn target(&self, stream: &str) -> String {
        format!("{}#{}", self.target, self.table_for(stream))
    }

    async fn plan(&self, stream: &StreamInfo) -> Result<Vec<String>> {
        let table = self.table_for(&stream.name);
        let location = format!("{}#{table}", self.target);
        let key = key_for(&self.cfg, &table, &stream.schema)?;
        let mut conn = connect(&self.opts, &location, Some(SQL_MODE)).await?;
        let exists = !columns_of(&mut conn, &location, &table).await?.is_empty();
        let replace = self.cfg.mode == WriteMode::Replace;
        if exists && !replace {
            return Ok(Vec::new());
        }
        if !exists && !self.cfg.create {
            return Err(Error::config(
                "sinks.create",
                format!(
                    "table `{table}` does not exist in {}; create it or set create = true",
                    self.target
                ),
            ));
        }
        let staging = if replace {
            format!("{table}__sluice_new")
        } else {
            table.clone()
        };
        let meta = TableMeta::of(&stream.schema);
        let server = fidelity::Server::read(&mut conn, &location).await?;
        let (create, _) = create_table(&self.cfg, &table, &staging, &stream.schema, &key, meta.as_ref(), &server)?;
        let mut ddl = Vec::new();
        if replace {
            ddl.push(format!("DROP TABLE IF EXISTS {}", quote_ident(&staging)));
        }
        ddl.push(create);
        if let Some(m) = &meta {
            for ix in &m.indexes {
                let spatial = matches!(ix.columns.as_slice(), [c] if stream.schema.field_with_name(c)
                    .is_ok_and(|f| sluice_core::spatial::GeometryMeta::of(f).is_some()));
                let unique = if spatial {
                    "SPATIAL "
                } else if ix.unique {
                    "UNIQUE "
                } else {
                    ""
                };
                let cols: Vec<String> = ix.columns.iter().map(|c| quote_ident(c)).collect();
                ddl.push(format!(
                    "CREATE {unique}INDEX {} ON {} ({})",
                    quote_ident(&ix.name),
                    quote_ident(&staging),
                    cols.join(", ")
                ));
            }
        }
        if let Some(a) = fidelity::auto_increment(&stream.schema, meta.as_ref()) {
            ddl.push(format!(
                "ALTER TABLE {} AUTO_INCREMENT = {{MAX({}) + 1, after the load}}",
                quote_ident(&staging),
                quote_ident(&a)
            ));
        }
        if let Some(m) = meta.as_ref().filter(|_| !replace) {
            let fks = fidelity::foreign_keys(&table, &m.foreign_keys, |t| self.table_for(t));
            ddl.extend(fks.into_iter().map(|f| f.statement));
        }
        if replace {
            ddl.push(format!(
                "RENAME TABLE {t} TO {o}, {s} TO {t}; DROP TABLE {o}",
                t = quote_ident(&table),
                s = quote_ident(&staging),
                o = quote_ident(&format!("{table}__sluice_old"))
            ));
        }
        Ok(ddl)
    }

    async fn check(&self, streams: &[StreamInfo]) -> Result<Vec<String>> {
        let location = self.target.clone();
        let mut conn = connect(&self.opts, &location, None).await?;
        let version = rows(&mut conn, &location, "SELECT VERSION()")
            .await?
            .first()
            .and_then(|r| text(r, 0))
            .unwrap_or_default();
        let mut lines = vec![format!("connected to {location} (server {version})")];
        // What the current user may do in this database, from any level of grant.
        conn.query_drop(
            "SET @g = CONCAT('''', SUBSTRING_INDEX(CURRENT_USER(), '@', 1), '''@''', \
             SUBSTRING_INDEX(CURRENT_USER(), '@', -1), '''')",
        )
        .await
        .map_err(|e| db_error(&location, e))?;
        let grants: Vec<(String, String)> = rows(
            &mut conn,
            &location,
            "SELECT PRIVILEGE_TYPE, '' FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = @g \
             UNION SELECT PRIVILEGE_TYPE, '' FROM information_schema.SCHEMA_PRIVILEGES \
               WHERE GRANTEE = @g AND TABLE_SCHEMA = DATABASE() \
             UNION SELECT PRIVILEGE_TYPE, TABLE_NAME FROM information_schema.TABLE_PRIVILEGES \
               WHERE GRANTEE = @g AND TABLE_SCHEMA = DATABASE()",
        )
        .await?
        .iter()
        .map(|r| (text(r, 0).unwrap_or_default(), text(r, 1).unwrap_or_default()))
        .collect();
        let may = |privilege: &str, table: &str| {
            grants
                .iter()
                .any(|(p, t)| (p == privilege || p == "ALL PRIVILEGES") && (t.is_empty() || t == table))
        };
        for stream in streams {
            let table = self.table_for(&stream.name);
            let exists = !columns_of(&mut conn, &location, &table).await?.is_empty();
            let mut needed = vec!["INSERT"];
            if !exists || self.cfg.mode == WriteMode::Replace {
                needed.push("CREATE");
            }
            if self.cfg.mode == WriteMode::Upsert {
                needed.push("UPDATE");
            }
            if self.cfg.mode == WriteMode::Replace {
                needed.extend(["DROP", "ALTER"]);
            }
            if !exists && !self.cfg.create {
                return Err(Error::config(
                    "sinks.create",
                    format!("table `{table}` does not exist in {location} and create = false"),
                ));
            }
            let missing: Vec<&str> = needed.iter().copied().filter(|p| !may(p, &table)).collect();
            if !missing.is_empty() {
                return Err(Error::config(
                    "sinks",
                    format!(
                        "{location}: writing `{table}` needs {} privilege(s); GRANT {} ON the database TO the user",
                        missing.join(", "),
                        missing.join(", ")
                    ),
                ));
            }
            lines.push(format!(
                "`{table}`: {} ({} granted)",
                if exists { "exists, writable" } else { "will be created" },
                needed.join(", ")
            ));
        }
        Ok(lines)
    }

    async fn open(&self, stream: &StreamInfo) -> Result<Box<dyn Sink>> {
        let table = self.table_for(&stream.name);
        Ok(
            match StreamWriter::open(&self.cfg, &self.opts, &self.target, table, stream).await? {
                Some(w) => Box::new(w),
                None => Box::new(Done),
            },
        )
    }
}

struct StreamWriter {
    conn: Conn,
    mode: WriteMode,
    /// Final table name.
    table: String,
    /// Table written to (the staging table under `replace`).
    staging: String,
    /// `INSERT INTO t (cols) VALUES `.
    prefix: String,
    /// ` ON DUPLICATE KEY UPDATE …` under `upsert`.
    suffix: String,
    max_statement: usize,
    max_packet: usize,
    /// Indexes to add after the load, with each column's DDL type, when the sink created the table.
    indexes: Vec<(IndexMeta, Vec<bool>)>,
    /// The `AUTO_INCREMENT` column of a table the sink created, moved past the rows at the end.
    auto_increment: Option<String>,
    /// Foreign keys of a table the sink created, added once the tables they reference are loaded.
    foreign_keys: Vec<fidelity::PendingFk>,
    pipeline: String,
    job: i64,
    location: String,
    by: Arc<str>,
    sql: String,
    /// The table's ledger: positions stored with the rows, the job record.
    checkpoints: Checkpoints<Mysql>,
    /// The table's job record, marked complete at the end of the load.
    record: JobRecord,
    /// A batch's transaction is open, waiting for `flush` to commit it.
    open_tx: bool,
    /// The stream's columns.
    columns: Vec<String>,
    refusals: Refusals,
}

impl StreamWriter {
    async fn open(
        cfg: &MysqlSinkConfig,
        opts: &Endpoint,
        target: &str,
        table: String,
        stream: &StreamInfo,
    ) -> Result<Option<Self>> {
        let schema: SchemaRef = stream.schema.clone();
        let location = format!("{target}#{table}");
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let meta = TableMeta::of(&schema);
        let key = key_for(cfg, &table, &schema)?;
        let mut conn = connect(opts, &location, Some(SQL_MODE)).await?;
        let max_packet = rows(&mut conn, &location, "SELECT @@max_allowed_packet")
            .await?
            .first()
            .and_then(|r| text(r, 0))
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(MAX_STATEMENT);
        let max_statement = MAX_STATEMENT.min(max_packet.saturating_sub(64 << 10)).max(16 << 10);

        let staging = match cfg.mode {
            WriteMode::Replace => format!("{table}__sluice_new"),
            _ => table.clone(),
        };
        prepare_checkpoints(&mut conn, &location).await?;
        let checkpoints = Checkpoints::new(Mysql, &stream.pipeline, stream.job, &table, &staging);
        let found = found_in(&mut conn, &location, &checkpoints, &table).await?;
        let (created, start) = match ledger::decide(cfg.mode, stream, &found, &format!("`{table}` in {target}"))? {
            Action::Complete { job } => {
                tracing::info!(table = %table, job, "already loaded whole by an earlier run of this pipeline; nothing to write");
                return Ok(None);
            }
            Action::Resume { created } => (created, None),
            Action::Start { clear, created } => (created, Some(clear)),
        };
        let record = ledger::opening_record(&found, stream.job, created);
        let db = |e| db_error(&location, e);
        if let Some(clear) = start {
            // DDL commits on its own here, so the table is cleared before the
            // job's record replaces the earlier one: a crash in between
            // leaves the earlier record, and the next run clears again.
            // Foreign keys pointing at the table (added by an earlier load)
            // would refuse both; the tables that hold them are loaded again too.
            conn.query_drop("SET foreign_key_checks = 0").await.map_err(db)?;
            match clear {
                Clear::Nothing => {}
                Clear::Truncate => conn
                    .query_drop(format!("TRUNCATE TABLE {}", quote_ident(&table)))
                    .await
                    .map_err(db)?,
                Clear::Recreate => conn
                    .query_drop(format!("DROP TABLE IF EXISTS {}", quote_ident(&table)))
                    .await
                    .map_err(db)?,
            }
            if cfg.mode == WriteMode::Replace {
                conn.query_drop(format!("DROP TABLE IF EXISTS {}", quote_ident(&staging)))
                    .await
                    .map_err(db)?;
            }
            conn.query_drop("SET foreign_key_checks = 1").await.map_err(db)?;
            for s in [
                Statement::plain("START TRANSACTION"),
                checkpoints.forget(),
                checkpoints.record(&record),
                Statement::plain("COMMIT"),
            ] {
                execute(&mut conn, &s).await.map_err(db)?;
            }
        } else {
            // Loading again: a kill from here on leaves an unfinished load.
            execute(&mut conn, &checkpoints.record(&record)).await.map_err(db)?;
        }
        let existing = columns_of(&mut conn, &location, &staging).await?;
        let mut indexes = Vec::new();
        let mut auto_increment = None;
        let mut foreign_keys = Vec::new();
        if existing.is_empty() || created {
            let original = if cfg.mode == WriteMode::Replace {
                columns_of(&mut conn, &location, &table).await?
            } else {
                Vec::new()
            };
            if !cfg.create && original.is_empty() {
                return Err(Error::config(
                    "sinks.create",
                    format!("table `{table}` does not exist in {target}; create it or set create = true"),
                ));
            }
            let sql = if !cfg.create {
                format!("CREATE TABLE {} LIKE {}", quote_ident(&staging), quote_ident(&table))
            } else {
                let server = fidelity::Server::read(&mut conn, &location).await?;
                let (sql, lob) = create_table(cfg, &table, &staging, &schema, &key, meta.as_ref(), &server)?;
                auto_increment = fidelity::auto_increment(&schema, meta.as_ref());
                if let Some(m) = meta.as_ref().filter(|_| cfg.mode != WriteMode::Replace) {
                    let table_for = |t: &str| cfg.table.replace("{stream}", t);
                    foreign_keys = fidelity::foreign_keys(&table, &m.foreign_keys, table_for);
                }
                if let Some(m) = &meta {
                    for ix in &m.indexes {
                        let cols: Option<Vec<bool>> = ix
                            .columns
                            .iter()
                            .map(|c| names.iter().position(|n| n == c).map(|i| lob[i]))
                            .collect();
                        if let Some(cols) = cols {
                            indexes.push((ix.clone(), cols));
                        }
                    }
                }
                sql
            };
            // A table the interrupted run of this job created keeps its rows.
            let keep = created && !existing.is_empty();
            let mut made = if keep { Ok(()) } else { conn.query_drop(&sql).await };
            // A default this server refuses (a date it does not take, say)
            // must not stop the load: the table is created without them.
            if let (Err(mysql_async::Error::Server(e)), true) = (&made, sql.contains(" DEFAULT ")) {
                tracing::warn!(
                    table = %table,
                    error = %format!("{} (error {})", e.message, e.code),
                    "the server refused the table with its column defaults; created without them"
                );
                let server = fidelity::Server {
                    defaults: false,
                    ..fidelity::Server::read(&mut conn, &location).await?
                };
                let (bare, _) = create_table(cfg, &table, &staging, &schema, &key, meta.as_ref(), &server)?;
                made = conn.query_drop(bare).await;
            }
            made.map_err(|e| {
                let err = db_error(&location, e);
                Error::config(
                    "sinks.types",
                    format!(
                        "cannot create table `{staging}`: {err}; fix the column type with a [sinks.types] override"
                    ),
                )
            })?;
        } else {
            let missing: Vec<&str> = names
                .iter()
                .copied()
                .filter(|n| !existing.iter().any(|e| e.eq_ignore_ascii_case(n)))
                .collect();
            if !missing.is_empty() {
                return Err(Error::config(
                    "sinks.table",
                    format!(
                        "table `{staging}` in {target} has no column(s) {}; add them, use mode = \"replace\", or \
                         drop the table",
                        missing.join(", ")
                    ),
                ));
            }
            if cfg.mode == WriteMode::Upsert && !has_unique_key(&mut conn, &location, &staging, &key).await? {
                // Without one, ON DUPLICATE KEY UPDATE never fires and every row is appended.
                return Err(Error::config(
                    "sinks.key",
                    format!(
                        "upsert into `{staging}` in {target} needs a primary or unique key on ({}); \
                         add it (ALTER TABLE {} ADD UNIQUE ({})) or set key to the table's key columns",
                        key.join(", "),
                        quote_ident(&staging),
                        key.iter().map(|k| quote_ident(k)).collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        }
        let prefix = format!(
            "INSERT INTO {} ({}) VALUES ",
            quote_ident(&staging),
            names.iter().map(|n| quote_ident(n)).collect::<Vec<_>>().join(", ")
        );
        let suffix = if cfg.mode == WriteMode::Upsert {
            let updates: Vec<String> = names
                .iter()
                .filter(|n| !key.iter().any(|k| k == *n))
                .map(|n| format!("{c} = VALUES({c})", c = quote_ident(n)))
                .collect();
            if updates.is_empty() {
                format!(" ON DUPLICATE KEY UPDATE {c} = {c}", c = quote_ident(&key[0]))
            } else {
                format!(" ON DUPLICATE KEY UPDATE {}", updates.join(", "))
            }
        } else {
            String::new()
        };
        Ok(Some(StreamWriter {
            conn,
            mode: cfg.mode,
            table,
            staging,
            prefix,
            suffix,
            max_statement,
            max_packet,
            indexes,
            auto_increment,
            foreign_keys,
            pipeline: stream.pipeline.to_string(),
            job: stream.job,
            location,
            by: Arc::from("mysql"),
            sql: String::new(),
            checkpoints,
            record,
            open_tx: false,
            columns: names.iter().map(|n| n.to_string()).collect(),
            refusals: Refusals::default(),
        }))
    }

    async fn exec(&mut self, sql: &str) -> Result<()> {
        let location = self.location.clone();
        self.conn.query_drop(sql).await.map_err(|e| db_error(&location, e))
    }

    async fn write_rows(&mut self, batch: &Batch) -> Result<Vec<Rejection>> {
        let rows = encode_rows(&batch.data).map_err(|e| Error::Internal(format!("{}: {e}", self.location)))?;
        let mut rejections: Vec<(usize, String)> = rows.refused.clone();
        let mut candidates = Vec::with_capacity(rows.spans.len());
        for (i, span) in rows.spans.iter().enumerate() {
            let Some((s, e)) = span else { continue };
            let len = e - s;
            if self.prefix.len() + len + self.suffix.len() + 1024 > self.max_packet {
                rejections.push((
                    i,
                    format!(
                        "row of {len} bytes does not fit the server's max_allowed_packet ({}); raise it",
                        self.max_packet
                    ),
                ));
            } else {
                candidates.push(i);
            }
        }
        // Multi-row statements in order until the server refuses one; that
        // statement's rows and those after it are judged in a stage.
        let mut done = 0;
        if !self.refusals.recent {
            while done < candidates.len() {
                let overhead = self.prefix.len() + self.suffix.len();
                let end = statement_end(&rows, &candidates[done..], overhead, 0, self.max_statement) + done;
                let mut sql = std::mem::take(&mut self.sql);
                sql.clear();
                sql.push_str(&self.prefix);
                push_rows(&mut sql, &rows, &candidates[done..end], false);
                sql.push_str(&self.suffix);
                let outcome = self.conn.query_drop(sql.as_str()).await;
                self.sql = sql;
                match outcome {
                    Ok(()) => done = end,
                    Err(mysql_async::Error::Server(e)) if ROW_ERRORS.contains(&e.code) => break,
                    Err(e) => return Err(db_error(&self.location, e)),
                }
            }
        }
        let found = if done < candidates.len() {
            self.load_isolating(&rows, &candidates[done..]).await?
        } else {
            Vec::new()
        };
        self.refusals.recent = !found.is_empty();
        rejections.extend(found);
        rejections.sort_by_key(|(i, _)| *i);
        let rejections = rejections
            .into_iter()
            .map(|(i, reason)| (i, format!("table `{}`: {reason}", self.table)))
            .collect();
        Ok(batch.reject_rows(rejections, Stage::Sink, &self.by))
    }

    /// Loads the rows of `candidates` the server accepts and returns the
    /// others with its reasons. The rows are staged in `sluice_check` (the
    /// table's column types without its constraints; rows a type refuses are
    /// isolated there), the table's `NOT NULL` and `CHECK` constraints are
    /// evaluated over the stage in one query, and the rest moves with
    /// `INSERT … SELECT`, isolated by [`refused::isolate`] when the server
    /// refuses it (keys, foreign keys).
    async fn load_isolating(&mut self, rows: &EncodedRows, candidates: &[usize]) -> Result<Vec<(usize, String)>> {
        if self.refusals.stage.is_none() {
            let stage = self.prepare_stage().await?;
            self.refusals.stage = Some(stage);
        }
        let Some(stage) = self.refusals.stage.clone() else {
            return Ok(Vec::new());
        };
        self.exec("DELETE FROM sluice_check").await?;
        let mut refused = Vec::new();
        let mut staged = Vec::with_capacity(candidates.len());
        let mut done = 0;
        while done < candidates.len() {
            // Row numbers lengthen each row by at most 21 bytes.
            let end = statement_end(rows, &candidates[done..], stage.prefix.len(), 21, self.max_statement) + done;
            let chunk = &candidates[done..end];
            let mut trial = ValuesTrial {
                conn: &mut self.conn,
                location: &self.location,
                prefix: &stage.prefix,
                rows,
                sql: &mut self.sql,
            };
            let bad = refused::isolate(&mut trial, chunk).await?;
            staged.extend(
                chunk
                    .iter()
                    .filter(|i| bad.binary_search_by_key(*i, |(r, _)| *r).is_err()),
            );
            refused.extend(bad);
            done = end;
        }
        if let Some(judge) = &stage.judge {
            match self.conn.query::<(u64, String), _>(judge.as_str()).await {
                Ok(found) if !found.is_empty() => {
                    if let Some(purge) = &stage.purge {
                        self.exec(purge).await?;
                    }
                    let gone: HashSet<usize> = found.iter().map(|(r, _)| *r as usize).collect();
                    staged.retain(|i| !gone.contains(i));
                    refused.extend(found.into_iter().map(|(i, reason)| (i as usize, reason)));
                }
                Ok(_) => {}
                // A rule that cannot be evaluated on its own: the server judges row by row.
                Err(mysql_async::Error::Server(e)) => {
                    tracing::debug!(table = %self.table, error = %e.message, "constraints checked by the server only");
                }
                Err(e) => return Err(db_error(&self.location, e)),
            }
        }
        staged.sort_unstable();
        let mut trial = StageTrial {
            conn: &mut self.conn,
            location: &self.location,
            insert: &stage.insert,
            suffix: &self.suffix,
            staged: staged.len(),
        };
        refused.extend(refused::isolate(&mut trial, &staged).await?);
        Ok(refused)
    }

    /// Creates `sluice_check` for the table's columns and reads the rules
    /// judging rows in it.
    async fn prepare_stage(&mut self) -> Result<CheckStage> {
        let table = sql_string(&self.staging);
        let columns = rows(
            &mut self.conn,
            &self.location,
            &format!(
                "SELECT COLUMN_NAME, COLUMN_TYPE, CHARACTER_SET_NAME, COLLATION_NAME, IS_NULLABLE \
                 FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = {table} \
                 ORDER BY ORDINAL_POSITION"
            ),
        )
        .await?;
        let mut defs = vec!["_sluice_row BIGINT UNSIGNED NOT NULL PRIMARY KEY".to_string()];
        let mut rules = Vec::new();
        let mut names = Vec::new();
        for name in &self.columns {
            let Some(c) = columns
                .iter()
                .find(|c| text(c, 0).is_some_and(|n| n.eq_ignore_ascii_case(name)))
            else {
                continue;
            };
            let (ty, charset, collation) = (text(c, 1).unwrap_or_default(), text(c, 2), text(c, 3));
            let mut def = format!("{} {ty}", quote_ident(name));
            if let (Some(cs), Some(co)) = (charset, collation) {
                def.push_str(&format!(" CHARACTER SET {cs} COLLATE {co}"));
            }
            def.push_str(" NULL");
            defs.push(def);
            if text(c, 4).as_deref() == Some("NO") {
                rules.push((
                    format!("{} IS NULL", quote_ident(name)),
                    sql_string(&format!("Column '{name}' cannot be null (error 1048)")),
                ));
            }
            names.push(quote_ident(name));
        }
        let version = rows(&mut self.conn, &self.location, "SELECT VERSION()")
            .await?
            .first()
            .and_then(|r| text(r, 0))
            .unwrap_or_default();
        let mariadb = version.contains("MariaDB");
        let checks_sql = if mariadb {
            format!(
                "SELECT CONSTRAINT_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS \
                 WHERE CONSTRAINT_SCHEMA = DATABASE() AND TABLE_NAME = {table} ORDER BY CONSTRAINT_NAME"
            )
        } else {
            format!(
                "SELECT cc.CONSTRAINT_NAME, cc.CHECK_CLAUSE FROM information_schema.TABLE_CONSTRAINTS tc \
                 JOIN information_schema.CHECK_CONSTRAINTS cc ON cc.CONSTRAINT_SCHEMA = tc.CONSTRAINT_SCHEMA \
                 AND cc.CONSTRAINT_NAME = tc.CONSTRAINT_NAME WHERE tc.TABLE_SCHEMA = DATABASE() \
                 AND tc.TABLE_NAME = {table} AND tc.CONSTRAINT_TYPE = 'CHECK' AND tc.ENFORCED = 'YES' \
                 ORDER BY cc.CONSTRAINT_NAME"
            )
        };
        // Servers before CHECK constraints (MySQL 5.7) have no such table: no rules then.
        let checks = rows(&mut self.conn, &self.location, &checks_sql)
            .await
            .unwrap_or_default();
        let database = rows(&mut self.conn, &self.location, "SELECT DATABASE()")
            .await?
            .first()
            .and_then(|r| text(r, 0))
            .unwrap_or_default();
        for c in checks {
            let (Some(name), Some(clause)) = (text(&c, 0), text(&c, 1)) else {
                continue;
            };
            let reason = if mariadb {
                format!(
                    "CONSTRAINT `{name}` failed for `{database}`.`{}` (error 4025)",
                    self.staging
                )
            } else {
                format!("Check constraint '{name}' is violated. (error 3819)")
            };
            rules.push((format!("NOT COALESCE(({clause}), TRUE)"), sql_string(&reason)));
        }
        if self.mode != WriteMode::Upsert {
            // A key the table already holds (what re-loading a file meets);
            // keys repeated within the batch are left to the server.
            let keys = rows(
                &mut self.conn,
                &self.location,
                &format!(
                    "SELECT INDEX_NAME, COLUMN_NAME, SUB_PART FROM information_schema.STATISTICS \
                     WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = {table} AND NON_UNIQUE = 0 \
                     ORDER BY INDEX_NAME, SEQ_IN_INDEX"
                ),
            )
            .await?;
            let mut unique: Vec<(String, Vec<String>, bool)> = Vec::new();
            for k in &keys {
                let (Some(index), Some(column)) = (text(k, 0), text(k, 1)) else {
                    continue;
                };
                let prefix = text(k, 2).is_some();
                match unique.last_mut() {
                    Some((name, cols, partial)) if *name == index => {
                        cols.push(column);
                        *partial |= prefix;
                    }
                    _ => unique.push((index, vec![column], prefix)),
                }
            }
            for (index, columns, partial) in unique {
                let known = columns
                    .iter()
                    .all(|c| self.columns.iter().any(|n| n.eq_ignore_ascii_case(c)));
                if partial || !known {
                    continue;
                }
                let present: Vec<String> = columns
                    .iter()
                    .map(|c| format!("s.{} IS NOT NULL", quote_ident(c)))
                    .collect();
                let equal: Vec<String> = columns
                    .iter()
                    .map(|c| format!("t.{0} = s.{0}", quote_ident(c)))
                    .collect();
                let entry: Vec<String> = columns.iter().map(|c| format!("s.{}", quote_ident(c))).collect();
                let key = if mariadb {
                    index.clone()
                } else {
                    format!("{}.{index}", self.staging)
                };
                rules.push((
                    format!(
                        "{} AND EXISTS (SELECT 1 FROM {} t WHERE {})",
                        present.join(" AND "),
                        quote_ident(&self.staging),
                        equal.join(" AND ")
                    ),
                    format!(
                        "CONCAT('Duplicate entry ', QUOTE(CONCAT_WS('-', {})), ' for key ', {}, ' (error 1062)')",
                        entry.join(", "),
                        sql_string(&format!("'{key}'"))
                    ),
                ));
            }
        }
        self.exec(&format!(
            "CREATE TEMPORARY TABLE IF NOT EXISTS sluice_check ({}) ENGINE=InnoDB",
            defs.join(", ")
        ))
        .await?;
        let list = names.join(", ");
        let cases: Vec<String> = rules
            .iter()
            .map(|(cond, reason)| format!("WHEN {cond} THEN {reason}"))
            .collect();
        let any = rules
            .iter()
            .map(|(cond, _)| format!("({cond})"))
            .collect::<Vec<_>>()
            .join(" OR ");
        let judge = (!rules.is_empty())
            .then(|| format!("SELECT _sluice_row, CASE {} END FROM sluice_check s WHERE {any}", cases.join(" ")));
        // The same condition takes the judged rows out of the stage, however
        // many they are (a list of their numbers would grow with them).
        let purge = (!rules.is_empty()).then(|| format!("DELETE s FROM sluice_check s WHERE {any}"));
        Ok(CheckStage {
            prefix: format!("INSERT INTO sluice_check (_sluice_row, {list}) VALUES "),
            insert: format!(
                "INSERT INTO {} ({list}) SELECT {list} FROM sluice_check",
                quote_ident(&self.staging)
            ),
            judge,
            purge,
        })
    }

    async fn create_indexes(&mut self) {
        for (ix, lob) in std::mem::take(&mut self.indexes) {
            let cols: Vec<String> = ix
                .columns
                .iter()
                .zip(&lob)
                // Text and blob columns are indexed by a prefix.
                .map(|(c, lob)| {
                    if *lob {
                        format!("{}(255)", quote_ident(c))
                    } else {
                        quote_ident(c)
                    }
                })
                .collect();
            let (location, staging) = (self.location.clone(), self.staging.clone());
            let sql = match super::spatial::spatial_index_sql(&mut self.conn, &location, &staging, &ix.name, &ix.columns)
                .await
            {
                Some(Ok(sql)) => sql,
                Some(Err(why)) => {
                    tracing::warn!(table = %self.table, index = %ix.name, "{why}");
                    continue;
                }
                None => format!(
                    "CREATE {}INDEX {} ON {} ({})",
                    if ix.unique { "UNIQUE " } else { "" },
                    quote_ident(&ix.name),
                    quote_ident(&self.staging),
                    cols.join(", ")
                ),
            };
            if let Err(e) = self.exec(&sql).await {
                tracing::warn!(table = %self.table, index = %ix.name, error = %e, "index not created");
            }
        }
    }
}

/// What judging refused rows in `sluice_check` needs, prepared at the first refusal.
#[derive(Debug, Clone)]
struct CheckStage {
    /// `INSERT INTO sluice_check (_sluice_row, …) VALUES `.
    prefix: String,
    /// `INSERT INTO table (…) SELECT … FROM sluice_check`.
    insert: String,
    /// Lists the staged rows the table's `NOT NULL` and `CHECK` constraints
    /// refuse, with the first reason of each; `None` without constraints.
    judge: Option<String>,
    /// Deletes the rows `judge` lists from the stage.
    purge: Option<String>,
}

/// Refused-row handling of one table.
#[derive(Debug, Default)]
struct Refusals {
    stage: Option<CheckStage>,
    /// The last batch had refused rows: the next goes straight to the stage.
    recent: bool,
}

/// How many of `candidates` (at least one) fit a statement of at most `max`
/// bytes, with `overhead` bytes of SQL around the rows and each row `extra`
/// bytes longer than encoded.
fn statement_end(rows: &EncodedRows, candidates: &[usize], overhead: usize, extra: usize, max: usize) -> usize {
    let mut len = overhead;
    for (k, &i) in candidates.iter().enumerate() {
        let (s, e) = rows.spans[i].unwrap_or((0, 0));
        len += e - s + 1 + extra;
        if k > 0 && len > max {
            return k;
        }
    }
    candidates.len()
}

/// Appends the encoded rows `which`, comma-separated; `numbered` puts each
/// row's index first (for `sluice_check`).
fn push_rows(sql: &mut String, rows: &EncodedRows, which: &[usize], numbered: bool) {
    for (k, &i) in which.iter().enumerate() {
        let Some((s, e)) = rows.spans[i] else { continue };
        if k > 0 {
            sql.push(',');
        }
        if numbered {
            sql.push_str(&format!("({i},"));
            sql.push_str(&rows.text[s + 1..e]);
        } else {
            sql.push_str(&rows.text[s..e]);
        }
    }
}

/// The server's message for a statement it refused for its rows.
fn row_error(e: mysql_async::Error) -> std::result::Result<String, mysql_async::Error> {
    match e {
        mysql_async::Error::Server(e) if ROW_ERRORS.contains(&e.code) => {
            Ok(format!("{} (error {})", e.message, e.code))
        }
        e => Err(e),
    }
}

/// Rows inserted into `sluice_check` with `VALUES`.
struct ValuesTrial<'a> {
    conn: &'a mut Conn,
    location: &'a str,
    prefix: &'a str,
    rows: &'a EncodedRows,
    sql: &'a mut String,
}

#[async_trait]
impl Trial for ValuesTrial<'_> {
    async fn attempt(&mut self, rows: &[usize], _keep: bool) -> Result<Option<String>> {
        self.sql.clear();
        self.sql.push_str(self.prefix);
        push_rows(self.sql, self.rows, rows, true);
        match self.conn.query_drop(self.sql.as_str()).await {
            Ok(()) => Ok(None),
            Err(e) => row_error(e).map(Some).map_err(|e| db_error(self.location, e)),
        }
    }
}

/// Rows moved from `sluice_check` into the table with `INSERT … SELECT`.
struct StageTrial<'a> {
    conn: &'a mut Conn,
    location: &'a str,
    insert: &'a str,
    suffix: &'a str,
    /// Rows in the stage: an attempt at all of them needs no filter.
    staged: usize,
}

#[async_trait]
impl Trial for StageTrial<'_> {
    async fn attempt(&mut self, rows: &[usize], _keep: bool) -> Result<Option<String>> {
        let filter = if rows.len() == self.staged {
            String::new()
        } else {
            let rows = refused::row_filter("_sluice_row", rows, 0, |ids| format!("_sluice_row IN ({ids})"));
            format!(" WHERE {rows}")
        };
        let sql = format!("{}{filter} ORDER BY _sluice_row{}", self.insert, self.suffix);
        match self.conn.query_drop(sql).await {
            Ok(()) => Ok(None),
            Err(e) => row_error(e).map(Some).map_err(|e| db_error(self.location, e)),
        }
    }
}

async fn columns_of(conn: &mut Conn, location: &str, table: &str) -> Result<Vec<String>> {
    let sql = format!(
        "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = {} \
         ORDER BY ORDINAL_POSITION",
        sql_string(table)
    );
    Ok(rows(conn, location, &sql)
        .await?
        .iter()
        .filter_map(|r| text(r, 0))
        .collect())
}

/// Whether `table` has a primary or unique key on `key` or on part of it
/// (what `ON DUPLICATE KEY UPDATE` matches rows by).
async fn has_unique_key(conn: &mut Conn, location: &str, table: &str, key: &[String]) -> Result<bool> {
    let sql = format!(
        "SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS \
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = {} AND NON_UNIQUE = 0",
        sql_string(table)
    );
    let mut unique: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for r in rows(conn, location, &sql).await? {
        if let (Some(index), Some(column)) = (text(&r, 0), text(&r, 1)) {
            unique.entry(index).or_default().push(column);
        }
    }
    Ok(unique
        .values()
        .any(|cols| cols.iter().all(|c| key.iter().any(|k| k.eq_ignore_ascii_case(c)))))
}

/// The key of a stream's table: `key`, or the source's primary key.
fn key_for(cfg: &MysqlSinkConfig, table: &str, schema: &SchemaRef) -> Result<Vec<String>> {
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let key: Vec<String> = if !cfg.key.is_empty() {
        for k in &cfg.key {
            if !names.contains(&k.as_str()) {
                return Err(Error::config(
                    "sinks.key",
                    format!("`{k}` is not a column of the stream written to table `{table}`"),
                ));
            }
        }
        cfg.key.clone()
    } else {
        TableMeta::of(schema)
            .map(|m| m.primary_key)
            .filter(|pk| pk.iter().all(|k| names.contains(&k.as_str())))
            .unwrap_or_default()
    };
    if cfg.mode == WriteMode::Upsert && key.is_empty() {
        return Err(Error::config(
            "sinks.key",
            format!(
                "mode = \"upsert\" into `{table}` needs key = [\"column\", ...]: the source recorded no primary key"
            ),
        ));
    }
    Ok(key)
}

#[allow(clippy::too_many_arguments)]
fn create_table(
    cfg: &MysqlSinkConfig,
    table: &str,
    staging: &str,
    schema: &SchemaRef,
    key: &[String],
    meta: Option<&TableMeta>,
    server: &fidelity::Server,
) -> Result<(String, Vec<bool>)> {
    let mut types = Vec::new();
    // Columns whose type stays as chosen: keys and overrides.
    let mut fixed = Vec::new();
    let mut problems = Vec::new();
    let mut warned = HashSet::new();
    let mut warn = |w: String| {
        if warned.insert(w.clone()) {
            tracing::warn!(table = %table, "{w}");
        }
    };
    for f in schema.fields() {
        let name = f.name();
        let in_key = key.iter().any(|k| k == name);
        let overridden = crate::mode::type_override(&cfg.types, table, name);
        let sql_type = match overridden.map(str::to_string).or_else(|| fidelity::sized_type(f)) {
            Some(t) => t,
            None => match ddl_for_field(f, in_key) {
                Ok(d) => {
                    if let Some(w) = d.warning {
                        warn(w);
                    }
                    d.sql_type
                }
                Err(msg) => {
                    problems.push(msg);
                    continue;
                }
            },
        };
        types.push(sql_type);
        fixed.push(in_key || overridden.is_some());
    }
    if !problems.is_empty() {
        return Err(Error::config(
            "sinks.types",
            format!("table `{table}`: {}", problems.join("; ")),
        ));
    }
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    for w in fidelity::fit_row(table, &names, &mut types, &fixed) {
        warn(w);
    }
    let auto = fidelity::auto_increment(schema, meta);
    let mut cols = Vec::new();
    let mut lob = Vec::new();
    for (f, sql_type) in schema.fields().iter().zip(&types) {
        let name = f.name();
        let in_key = key.iter().any(|k| k == name);
        let mut col = format!("{} {sql_type}{}", quote_ident(name), fidelity::collate_clause(f, sql_type));
        col.push_str(if in_key || sluice_core::dbmeta::not_null(f) {
            " NOT NULL"
        } else {
            " NULL"
        });
        if auto.as_deref() == Some(name.as_str()) {
            col.push_str(" AUTO_INCREMENT");
        } else if let Some(d) = ColumnDefault::of(f) {
            match fidelity::default_clause(&d, sql_type, server) {
                Ok(clause) => col.push_str(&clause),
                Err(why) => warn(format!("column `{name}`: default {} dropped: {why}", d.describe())),
            }
        }
        col.push_str(&fidelity::on_update_clause(f, sql_type));
        lob.push(is_lob(sql_type));
        cols.push(col);
    }
    if !key.is_empty() {
        cols.push(format!(
            "PRIMARY KEY ({})",
            key.iter().map(|k| quote_ident(k)).collect::<Vec<_>>().join(", ")
        ));
    }
    // MySQL counts only a column that leads an index.
    if let Some(a) = &auto
        && key.first() != Some(a)
    {
        cols.push(format!("KEY {} ({})", quote_ident(&format!("{table}_{a}_auto")), quote_ident(a)));
    }
    let sql = format!(
        "CREATE TABLE {} ({}) {}",
        quote_ident(staging),
        cols.join(", "),
        server.table_options()
    );
    Ok((sql, lob))
}

/// Most batches in one transaction ([`Sink::batches_per_flush`]).
const BATCHES_PER_COMMIT: usize = 8;

#[async_trait]
impl Sink for StreamWriter {
    async fn write(&mut self, batch: &Batch) -> Result<Vec<Rejection>> {
        if batch.num_rows() == 0 && batch.position.is_none() {
            return Ok(Vec::new());
        }
        if !self.open_tx {
            self.exec("START TRANSACTION").await?;
            self.open_tx = true;
        }
        let mut outcome = self.write_rows(batch).await;
        if let (Ok(_), Some(p)) = (&outcome, &batch.position)
            && let Err(e) = execute(&mut self.conn, &self.checkpoints.store(p)).await
        {
            outcome = Err(db_error(&self.location, e));
        }
        if outcome.is_err() {
            self.open_tx = false;
            let _ = self.conn.query_drop("ROLLBACK").await;
        }
        outcome
    }

    async fn flush(&mut self) -> Result<()> {
        if !self.open_tx {
            return Ok(());
        }
        self.open_tx = false;
        self.exec("COMMIT").await
    }

    /// Each commit waits for the server's log flush; batches that queue
    /// behind a busy server share one.
    fn batches_per_flush(&self) -> usize {
        BATCHES_PER_COMMIT
    }

    async fn committed(&mut self) -> Result<Option<Vec<Position>>> {
        let found = query(&mut self.conn, &self.checkpoints.committed())
            .await
            .map_err(|e| db_error(&self.location, e))?;
        self.checkpoints.positions(&found).map(Some)
    }

    async fn finish(&mut self, complete: bool) -> Result<()> {
        if self.open_tx {
            // Whatever was not flushed is not delivered.
            self.open_tx = false;
            let _ = self.conn.query_drop("ROLLBACK").await;
        }
        if !complete {
            if self.mode == WriteMode::Replace {
                tracing::warn!(
                    table = %self.table,
                    staging = %self.staging,
                    "stream incomplete: table left untouched, partial load kept in the staging table"
                );
            }
            return Ok(());
        }
        self.create_indexes().await;
        if let Some(column) = self.auto_increment.take() {
            fidelity::advance_auto_increment(&mut self.conn, &self.location, &self.staging, &column).await?;
        }
        if self.mode == WriteMode::Replace {
            // RENAME commits on its own, so the new table's positions go
            // first: a crash around the swap makes a resumed run load the
            // table again from the start rather than swap in an empty one.
            execute(&mut self.conn, &self.checkpoints.forget_load())
                .await
                .map_err(|e| db_error(&self.location, e))?;
            let (t, new) = (quote_ident(&self.table), quote_ident(&self.staging));
            let old = quote_ident(&format!("{}__sluice_old", self.table));
            self.exec(&format!("DROP TABLE IF EXISTS {old}")).await?;
            let exists = !columns_of(&mut self.conn, &self.location, &self.table)
                .await?
                .is_empty();
            if exists {
                self.exec(&format!("RENAME TABLE {t} TO {old}, {new} TO {t}")).await?;
                self.exec(&format!("DROP TABLE {old}")).await?;
            } else {
                self.exec(&format!("RENAME TABLE {new} TO {t}")).await?;
            }
        }
        // The load is whole: a later run of the job continues from the
        // positions only, and other jobs find it complete.
        let done = JobRecord {
            complete: true,
            ..self.record
        };
        execute(&mut self.conn, &self.checkpoints.record(&done))
            .await
            .map_err(|e| db_error(&self.location, e))?;
        // The table is complete whatever happens here: foreign keys that
        // cannot be added now wait for the next table that completes.
        let fks = std::mem::take(&mut self.foreign_keys);
        if let Err(e) =
            fidelity::settle_foreign_keys(&mut self.conn, &self.location, &self.pipeline, self.job, &self.table, &fks)
                .await
        {
            tracing::warn!(table = %self.table, error = %e, "foreign keys left for a later table");
        }
        Ok(())
    }
}

/// What the job ledger needs to know about `table`.
async fn found_in(conn: &mut Conn, location: &str, checkpoints: &Checkpoints<Mysql>, table: &str) -> Result<Found> {
    let ledger = query(conn, &checkpoints.ledger())
        .await
        .map_err(|e| db_error(location, e))?;
    let ledger = checkpoints.found(&ledger)?;
    let exists = !columns_of(conn, location, table).await?.is_empty();
    let has_rows = exists
        && rows(
            conn,
            location,
            &format!("SELECT EXISTS (SELECT 1 FROM {})", quote_ident(table)),
        )
        .await?
        .first()
        .and_then(|r| text(r, 0))
        .is_some_and(|v| v == "1");
    Ok(Found {
        exists,
        has_rows,
        ..ledger
    })
}

/// Creates `_sluice_checkpoints`, or brings an older layout to this one,
/// under a server lock (see [`checkpoints`]).
async fn prepare_checkpoints(conn: &mut Conn, location: &str) -> Result<()> {
    let db = |e| db_error(location, e);
    let columns = query(conn, &Mysql.columns()).await.map_err(db)?;
    if checkpoints::changes(&Mysql, &columns, location)?.is_empty() {
        return Ok(());
    }
    // Another stream may change it first: look again under the lock. An
    // error drops the connection, which releases the lock.
    for s in Mysql.lock() {
        execute(conn, &s).await.map_err(db)?;
    }
    let columns = query(conn, &Mysql.columns()).await.map_err(db)?;
    for s in checkpoints::changes(&Mysql, &columns, location)?
        .iter()
        .chain(&Mysql.unlock())
    {
        execute(conn, s).await.map_err(db)?;
    }
    Ok(())
}

/// Runs a statement of the checkpoint protocol.
async fn execute(conn: &mut Conn, statement: &Statement) -> std::result::Result<(), mysql_async::Error> {
    if statement.params.is_empty() {
        return conn.query_drop(statement.sql.as_str()).await;
    }
    conn.exec_drop(statement.sql.as_str(), params(statement)).await
}

/// Runs a query of the checkpoint protocol; its rows as values.
async fn query(conn: &mut Conn, statement: &Statement) -> std::result::Result<Vec<Vec<Value>>, mysql_async::Error> {
    let found: Vec<mysql_async::Row> = if statement.params.is_empty() {
        conn.query(statement.sql.as_str()).await?
    } else {
        conn.exec(statement.sql.as_str(), params(statement)).await?
    };
    Ok(found
        .iter()
        .map(|row| {
            (0..row.len())
                .map(|i| match row.as_ref(i) {
                    None | Some(mysql_async::Value::NULL) => Value::Null,
                    Some(mysql_async::Value::Int(v)) => Value::Int(*v),
                    Some(mysql_async::Value::UInt(v)) => {
                        i64::try_from(*v).map_or_else(|_| Value::Text(v.to_string()), Value::Int)
                    }
                    Some(_) => text(row, i).map_or(Value::Null, Value::Text),
                })
                .collect()
        })
        .collect())
}

/// The parameters of a statement as the driver takes them.
fn params(statement: &Statement) -> mysql_async::Params {
    mysql_async::Params::Positional(
        statement
            .params
            .iter()
            .map(|v| match v {
                Value::Null => mysql_async::Value::NULL,
                Value::Int(i) => mysql_async::Value::Int(*i),
                Value::Text(s) => mysql_async::Value::Bytes(s.clone().into_bytes()),
            })
            .collect(),
    )
}
