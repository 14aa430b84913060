//! The SQLite sink.
//!
//! Each batch is inserted inside a transaction that `flush` commits, so an
//! acknowledged batch is on disk (WAL, `synchronous=FULL`). The same
//! transaction stores the batch's source position in `_sluice_checkpoints`,
//! so after a crash the table and its checkpoint agree and a resumed run
//! neither loses nor repeats a row; its row with an empty partition is the
//! table's job record ([`crate::ledger`]), which decides what a later run of
//! the pipeline does with the table. A row the
//! database refuses on its own (a constraint) is a rejection with SQLite's
//! message; anything else fails the batch. `replace` loads into
//! `TABLE__sluice_new` and swaps it in only when the stream completes.

use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, SchemaRef, UInt8Type, UInt16Type,
    UInt32Type, UInt64Type,
};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use async_trait::async_trait;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode};
use sluice_core::{Batch, Error, Position, Rejection, Result, Sink, SinkConnector, Stage, StreamInfo};

use rusqlite::OptionalExtension;

use super::config::{SqliteSinkConfig, WriteMode};
use super::quote_ident;
use crate::ledger::{self, Action, Clear, Done, Found, JobRecord};

/// Writes streams into tables of one SQLite database.
pub struct SqliteSink {
    cfg: SqliteSinkConfig,
}

impl SqliteSink {
    /// Checks the configuration; opens nothing.
    pub fn new(cfg: SqliteSinkConfig) -> Result<Self> {
        if cfg.mode == WriteMode::Upsert && cfg.key.is_empty() {
            return Err(Error::config(
                "sinks.key",
                "mode = \"upsert\" needs key = [\"column\", ...] naming the columns rows are matched on",
            ));
        }
        if cfg.table.trim().is_empty() {
            return Err(Error::config("sinks.table", "must not be empty"));
        }
        Ok(SqliteSink { cfg })
    }

    fn table_for(&self, stream: &str) -> String {
        self.cfg.table.replace("{stream}", stream)
    }
}

/// The declared SQLite type of a column.
fn sql_type(t: &DataType) -> &'static str {
    match t {
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => "INTEGER",
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => "INTEGER",
        DataType::Float16 | DataType::Float32 | DataType::Float64 => "REAL",
        DataType::Boolean => "BOOLEAN",
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => "BLOB",
        DataType::Date32 | DataType::Date64 => "DATE",
        DataType::Timestamp(_, _) => "TIMESTAMP",
        // Decimals stay exact as text; SQLite has no decimal storage.
        _ => "TEXT",
    }
}

#[async_trait]
impl SinkConnector for SqliteSink {
    fn name(&self) -> &str {
        "sqlite"
    }

    fn read_back(&self, stream: &str) -> Option<Result<Box<dyn sluice_core::Source>>> {
        let cfg = super::SqliteSourceConfig {
            path: self.cfg.path.clone(),
            table: Some(self.cfg.table.replace("{stream}", stream)),
            tables: Vec::new(),
            query: None,
            stream: None,
        };
        Some(super::SqliteSource::new(cfg).map(|s| Box::new(s) as Box<dyn sluice_core::Source>))
    }

    fn target(&self, stream: &str) -> String {
        format!("{}#{}", self.cfg.path, self.table_for(stream))
    }

    async fn open(&self, stream: &StreamInfo) -> Result<Box<dyn Sink>> {
        let table = self.table_for(&stream.name);
        let cfg = self.cfg.clone();
        Ok(
            match tokio::task::block_in_place(|| StreamWriter::open(cfg, table, stream))? {
                Some(w) => Box::new(w),
                None => Box::new(Done),
            },
        )
    }
}

struct StreamWriter {
    conn: Connection,
    cfg: SqliteSinkConfig,
    /// Final table name.
    table: String,
    /// Table written to (the staging table under `replace`).
    target: String,
    insert: String,
    in_tx: bool,
    location: String,
    by: Arc<str>,
    pipeline: String,
    /// The job, which owns the checkpoints it writes.
    job: i64,
    /// The job created the table it loads.
    created: bool,
}

/// The checkpoints stored with the data, one row per partition of each table
/// a pipeline loads, and its job record (partition '').
const CHECKPOINT_TABLE: &str = "CREATE TABLE IF NOT EXISTS _sluice_checkpoints (
    pipeline TEXT NOT NULL,
    target TEXT NOT NULL,
    partition TEXT NOT NULL,
    cursor TEXT NOT NULL,
    rows INTEGER NOT NULL,
    job INTEGER NOT NULL,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (pipeline, target, partition))";

impl StreamWriter {
    /// Opens the stream's table as the job ledger says; `None` when the
    /// table already holds the whole stream.
    fn open(cfg: SqliteSinkConfig, table: String, stream: &StreamInfo) -> Result<Option<Self>> {
        let schema: SchemaRef = stream.schema.clone();
        if let Some(dir) = std::path::Path::new(&cfg.path)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let location = format!("{}#{}", cfg.path, table);
        let fail = |e: rusqlite::Error| Error::connection(location.clone(), e.to_string());
        let conn = Connection::open(&cfg.path).map_err(fail)?;
        conn.busy_timeout(std::time::Duration::from_secs(30)).map_err(fail)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(fail)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(fail)?;
        for k in &cfg.key {
            if schema.field_with_name(k).is_err() {
                return Err(Error::config(
                    "sinks.key",
                    format!("`{k}` is not a column of stream for table `{table}`"),
                ));
            }
        }
        let target = match cfg.mode {
            WriteMode::Replace => format!("{table}__sluice_new"),
            _ => table.clone(),
        };
        let pipeline: &str = &stream.pipeline;
        conn.execute_batch(CHECKPOINT_TABLE).map_err(fail)?;
        let found = found_in(&conn, pipeline, &table, &target).map_err(fail)?;
        let created = match ledger::decide(cfg.mode, stream, &found, &format!("`{table}` in {}", cfg.path))? {
            Action::Complete { job } => {
                tracing::info!(table = %table, job, "already loaded whole by an earlier run of this pipeline; nothing to write");
                return Ok(None);
            }
            Action::Resume { created } => {
                // Loading again: a kill from here on leaves an unfinished load.
                write_record(
                    &conn,
                    pipeline,
                    &table,
                    &ledger::opening_record(&found, stream.job, created),
                )
                .map_err(fail)?;
                if cfg.mode == WriteMode::Replace && !created {
                    conn.execute_batch(&format!("DROP TABLE IF EXISTS {}", quote_ident(&target)))
                        .map_err(fail)?;
                }
                created
            }
            Action::Start { clear, created } => {
                // The table, its job record and its positions change together.
                let tx = conn.unchecked_transaction().map_err(fail)?;
                tx.execute(
                    "DELETE FROM _sluice_checkpoints WHERE pipeline = ?1 AND target IN (?2, ?3)",
                    (pipeline, &target, &table),
                )
                .map_err(fail)?;
                match clear {
                    Clear::Nothing => {}
                    Clear::Truncate => tx
                        .execute_batch(&format!("DELETE FROM {}", quote_ident(&table)))
                        .map_err(fail)?,
                    Clear::Recreate => tx
                        .execute_batch(&format!("DROP TABLE IF EXISTS {}", quote_ident(&table)))
                        .map_err(fail)?,
                }
                if cfg.mode == WriteMode::Replace {
                    tx.execute_batch(&format!("DROP TABLE IF EXISTS {}", quote_ident(&target)))
                        .map_err(fail)?;
                }
                if columns_of(&tx, &target).map_err(fail)?.is_empty() {
                    tx.execute_batch(&create_table(&target, &schema, &cfg.key))
                        .map_err(fail)?;
                }
                write_record(
                    &tx,
                    pipeline,
                    &table,
                    &ledger::opening_record(&found, stream.job, created),
                )
                .map_err(fail)?;
                tx.commit().map_err(fail)?;
                created
            }
        };
        let existing = columns_of(&conn, &target).map_err(fail)?;
        if existing.is_empty() {
            // Resuming a table its job created that is gone since.
            conn.execute_batch(&create_table(&target, &schema, &cfg.key))
                .map_err(fail)?;
        } else {
            let missing: Vec<&str> = schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .filter(|n| !existing.iter().any(|e| e == n))
                .collect();
            if !missing.is_empty() {
                return Err(Error::config(
                    "sinks.table",
                    format!(
                        "table `{target}` in {} has no column(s) {}; add them, use mode = \"replace\", or drop the table",
                        cfg.path,
                        missing.join(", ")
                    ),
                ));
            }
        }
        let insert = insert_sql(&target, &schema, &cfg);
        if let Err(e) = conn.prepare(&insert) {
            let msg = e.to_string();
            if msg.contains("ON CONFLICT") {
                return Err(Error::config(
                    "sinks.key",
                    format!(
                        "table `{target}` has no primary key or unique index on ({}); create one or use mode = \"append\"",
                        cfg.key.join(", ")
                    ),
                ));
            }
            return Err(fail(e));
        }
        Ok(Some(StreamWriter {
            conn,
            cfg,
            table,
            target,
            insert,
            in_tx: false,
            location,
            by: Arc::from("sqlite"),
            pipeline: pipeline.to_string(),
            job: stream.job,
            created: ledger::opening_record(&found, stream.job, created).created,
        }))
    }

    fn write_sync(&mut self, batch: &Batch) -> Result<Vec<Rejection>> {
        let location = self.location.clone();
        let fail = |e: rusqlite::Error| Error::connection(location.clone(), e.to_string());
        if !self.in_tx {
            self.conn.execute_batch("BEGIN").map_err(fail)?;
            self.in_tx = true;
        }
        let data = &batch.data;
        let options = FormatOptions::default().with_null("");
        let columns: Vec<Column> = data
            .columns()
            .iter()
            .map(|c| Column::new(c.as_ref(), &options))
            .collect::<std::result::Result<_, _>>()?;
        let mut stmt = self.conn.prepare_cached(&self.insert).map_err(fail)?;
        let mut rejections = Vec::new();
        for row in 0..data.num_rows() {
            for (i, col) in columns.iter().enumerate() {
                match col.value(row) {
                    Cell::Ref(v) => stmt.raw_bind_parameter(i + 1, rusqlite::types::ToSqlOutput::Borrowed(v)),
                    Cell::Owned(s) => stmt.raw_bind_parameter(i + 1, s),
                }
                .map_err(fail)?;
            }
            match stmt.raw_execute() {
                Ok(_) => {}
                // A refused row costs its own statement only; the rows
                // after it go on in the same transaction.
                Err(rusqlite::Error::SqliteFailure(e, msg)) if e.code == ErrorCode::ConstraintViolation => {
                    rejections.push((row, msg.unwrap_or_else(|| e.to_string())));
                }
                Err(e) => return Err(fail(e)),
            }
        }
        if let Some(p) = &batch.position {
            self.conn
                .prepare_cached(
                    "INSERT INTO _sluice_checkpoints (pipeline, target, partition, cursor, rows, job) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                     ON CONFLICT (pipeline, target, partition) DO UPDATE SET cursor = excluded.cursor, rows = excluded.rows, \
                     updated_at = excluded.updated_at",
                )
                .and_then(|mut s| {
                    s.execute((
                        &self.pipeline,
                        &self.target,
                        &*p.partition,
                        p.cursor.to_string(),
                        p.rows as i64,
                        self.job,
                    ))
                })
                .map_err(fail)?;
        }
        Ok(batch.reject_rows(rejections, Stage::Sink, &self.by))
    }

    fn committed_sync(&mut self) -> Result<Vec<Position>> {
        let fail = |e: rusqlite::Error| Error::connection(self.location.clone(), e.to_string());
        let mut stmt = self
            .conn
            .prepare(
                "SELECT partition, cursor, rows FROM _sluice_checkpoints \
                 WHERE pipeline = ?1 AND target = ?2 AND partition <> '' AND job = ?3",
            )
            .map_err(fail)?;
        let rows = stmt
            .query_map((&self.pipeline, &self.target, self.job), |r| {
                Ok(Position::stored(
                    &r.get::<_, String>(0)?,
                    r.get(1)?,
                    r.get::<_, i64>(2)? as u64,
                ))
            })
            .map_err(fail)?;
        rows.collect::<rusqlite::Result<_>>().map_err(fail)
    }

    fn commit(&mut self) -> Result<()> {
        if self.in_tx {
            self.conn
                .execute_batch("COMMIT")
                .map_err(|e| Error::connection(self.location.clone(), e.to_string()))?;
            self.in_tx = false;
        }
        Ok(())
    }

    fn finish_sync(&mut self, complete: bool) -> Result<()> {
        if !complete {
            // Whatever was not flushed is not delivered.
            if self.in_tx {
                self.in_tx = false;
                let _ = self.conn.execute_batch("ROLLBACK");
            }
            return Ok(());
        }
        self.commit()?;
        let fail = |e: rusqlite::Error| Error::connection(self.location.clone(), e.to_string());
        // The swap and the job record's completion in one transaction;
        // after a swap the new table's positions go too (it is gone).
        let tx = self.conn.unchecked_transaction().map_err(fail)?;
        if self.cfg.mode == WriteMode::Replace {
            tx.execute_batch(&format!(
                "DROP TABLE IF EXISTS {t}; ALTER TABLE {n} RENAME TO {t};",
                t = quote_ident(&self.table),
                n = quote_ident(&self.target)
            ))
            .map_err(fail)?;
            tx.execute(
                "DELETE FROM _sluice_checkpoints WHERE pipeline = ?1 AND target = ?2",
                (&self.pipeline, &self.target),
            )
            .map_err(fail)?;
        }
        let record = JobRecord {
            job: self.job,
            created: self.created,
            complete: true,
        };
        write_record(&tx, &self.pipeline, &self.table, &record).map_err(fail)?;
        tx.commit().map_err(fail)
    }
}

/// What the ledger needs to know about `table` (loaded through `target`).
fn found_in(conn: &Connection, pipeline: &str, table: &str, target: &str) -> rusqlite::Result<Found> {
    let record = conn
        .query_row(
            "SELECT job, cursor FROM _sluice_checkpoints WHERE pipeline = ?1 AND target = ?2 AND partition = ''",
            (pipeline, table),
            |r| Ok(JobRecord::parse(r.get(0)?, &r.get::<_, String>(1)?)),
        )
        .optional()?;
    let mut stmt = conn.prepare(
        "SELECT DISTINCT job FROM _sluice_checkpoints WHERE pipeline = ?1 AND target = ?2 AND partition <> ''",
    )?;
    let position_jobs = stmt
        .query_map((pipeline, target), |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<i64>>>()?;
    let mut stmt =
        conn.prepare("SELECT DISTINCT pipeline FROM _sluice_checkpoints WHERE target IN (?1, ?2) AND pipeline <> ?3")?;
    let other_pipelines = stmt
        .query_map((table, target, pipeline), |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    let exists = !columns_of(conn, table)?.is_empty();
    let has_rows = exists
        && conn.query_row(
            &format!("SELECT EXISTS (SELECT 1 FROM {})", quote_ident(table)),
            [],
            |r| r.get::<_, bool>(0),
        )?;
    Ok(Found {
        record,
        position_jobs,
        exists,
        has_rows,
        other_pipelines,
    })
}

/// Stores the job record of `table` (its row with an empty partition).
fn write_record(conn: &Connection, pipeline: &str, table: &str, record: &JobRecord) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO _sluice_checkpoints (pipeline, target, partition, cursor, rows, job) VALUES (?1, ?2, '', ?3, 0, ?4) \
         ON CONFLICT (pipeline, target, partition) DO UPDATE SET cursor = excluded.cursor, job = excluded.job, \
         updated_at = excluded.updated_at",
        (pipeline, table, record.cursor(), record.job),
    )?;
    Ok(())
}

fn columns_of(conn: &Connection, table: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(&format!("PRAGMA table_info({})", quote_ident(table)))?;
    let names = stmt.query_map([], |r| r.get::<_, String>(1))?;
    names.collect()
}

fn create_table(table: &str, schema: &SchemaRef, key: &[String]) -> String {
    let mut cols: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| format!("{} {}", quote_ident(f.name()), sql_type(f.data_type())))
        .collect();
    if !key.is_empty() {
        cols.push(format!(
            "PRIMARY KEY ({})",
            key.iter().map(|k| quote_ident(k)).collect::<Vec<_>>().join(", ")
        ));
    }
    format!("CREATE TABLE {} ({})", quote_ident(table), cols.join(", "))
}

fn insert_sql(table: &str, schema: &SchemaRef, cfg: &SqliteSinkConfig) -> String {
    let names: Vec<String> = schema.fields().iter().map(|f| quote_ident(f.name())).collect();
    let params = vec!["?"; names.len()].join(", ");
    let mut sql = format!(
        "INSERT INTO {} ({}) VALUES ({params})",
        quote_ident(table),
        names.join(", ")
    );
    if cfg.mode == WriteMode::Upsert {
        let keys: Vec<String> = cfg.key.iter().map(|k| quote_ident(k)).collect();
        let updates: Vec<String> = schema
            .fields()
            .iter()
            .filter(|f| !cfg.key.contains(f.name()))
            .map(|f| format!("{c} = excluded.{c}", c = quote_ident(f.name())))
            .collect();
        if updates.is_empty() {
            sql.push_str(&format!(" ON CONFLICT ({}) DO NOTHING", keys.join(", ")));
        } else {
            sql.push_str(&format!(
                " ON CONFLICT ({}) DO UPDATE SET {}",
                keys.join(", "),
                updates.join(", ")
            ));
        }
    }
    sql
}

/// One column of a batch, read as SQLite values.
enum Column<'a> {
    Int(&'a dyn Array, fn(&dyn Array, usize) -> i64),
    UInt64(&'a arrow::array::PrimitiveArray<UInt64Type>),
    Real(&'a dyn Array, fn(&dyn Array, usize) -> f64),
    Bool(&'a arrow::array::BooleanArray),
    Text(&'a dyn Array, ArrayFormatter<'a>),
    Utf8(&'a arrow::array::StringArray),
    Blob(&'a arrow::array::BinaryArray),
    Json(&'a dyn Array),
}

enum Cell<'a> {
    Ref(ValueRef<'a>),
    Owned(String),
}

impl<'a> Column<'a> {
    fn new(array: &'a dyn Array, options: &'a FormatOptions<'a>) -> Result<Self> {
        Ok(match array.data_type() {
            DataType::Int8 => Column::Int(array, |a, i| a.as_primitive::<Int8Type>().value(i) as i64),
            DataType::Int16 => Column::Int(array, |a, i| a.as_primitive::<Int16Type>().value(i) as i64),
            DataType::Int32 => Column::Int(array, |a, i| a.as_primitive::<Int32Type>().value(i) as i64),
            DataType::Int64 => Column::Int(array, |a, i| a.as_primitive::<Int64Type>().value(i)),
            DataType::UInt8 => Column::Int(array, |a, i| a.as_primitive::<UInt8Type>().value(i) as i64),
            DataType::UInt16 => Column::Int(array, |a, i| a.as_primitive::<UInt16Type>().value(i) as i64),
            DataType::UInt32 => Column::Int(array, |a, i| a.as_primitive::<UInt32Type>().value(i) as i64),
            DataType::UInt64 => Column::UInt64(array.as_primitive::<UInt64Type>()),
            DataType::Float32 => Column::Real(array, |a, i| a.as_primitive::<Float32Type>().value(i) as f64),
            DataType::Float64 => Column::Real(array, |a, i| a.as_primitive::<Float64Type>().value(i)),
            DataType::Boolean => Column::Bool(array.as_boolean()),
            DataType::Utf8 => Column::Utf8(array.as_string::<i32>()),
            DataType::Binary => Column::Blob(array.as_binary::<i32>()),
            t if t.is_nested() => Column::Json(array),
            _ => Column::Text(array, ArrayFormatter::try_new(array, options)?),
        })
    }

    fn value(&self, i: usize) -> Cell<'_> {
        let array: &dyn Array = match self {
            Column::Int(a, _) | Column::Real(a, _) | Column::Text(a, _) | Column::Json(a) => *a,
            Column::UInt64(a) => *a,
            Column::Bool(a) => *a,
            Column::Utf8(a) => *a,
            Column::Blob(a) => *a,
        };
        if array.is_null(i) {
            return Cell::Ref(ValueRef::Null);
        }
        match self {
            Column::Int(a, get) => Cell::Ref(ValueRef::Integer(get(*a, i))),
            Column::UInt64(a) => match i64::try_from(a.value(i)) {
                Ok(v) => Cell::Ref(ValueRef::Integer(v)),
                Err(_) => Cell::Owned(a.value(i).to_string()),
            },
            Column::Real(a, get) => Cell::Ref(ValueRef::Real(get(*a, i))),
            Column::Bool(a) => Cell::Ref(ValueRef::Integer(i64::from(a.value(i)))),
            Column::Utf8(a) => Cell::Ref(ValueRef::Text(a.value(i).as_bytes())),
            Column::Blob(a) => Cell::Ref(ValueRef::Blob(a.value(i))),
            Column::Text(_, f) => Cell::Owned(f.value(i).to_string()),
            Column::Json(a) => {
                let row = arrow::record_batch::RecordBatch::try_from_iter([("v", a.slice(i, 1))]).ok();
                let v = row
                    .map(|r| sluice_core::row_json(&r, 0))
                    .and_then(|mut v| v.get_mut("v").map(|x| x.take()));
                Cell::Owned(v.map(|v| v.to_string()).unwrap_or_default())
            }
        }
    }
}

#[async_trait]
impl Sink for StreamWriter {
    async fn write(&mut self, batch: &Batch) -> Result<Vec<Rejection>> {
        tokio::task::block_in_place(|| self.write_sync(batch))
    }

    async fn flush(&mut self) -> Result<()> {
        tokio::task::block_in_place(|| self.commit())
    }

    async fn committed(&mut self) -> Result<Option<Vec<Position>>> {
        tokio::task::block_in_place(|| self.committed_sync()).map(Some)
    }

    async fn finish(&mut self, complete: bool) -> Result<()> {
        tokio::task::block_in_place(|| self.finish_sync(complete))
    }
}
