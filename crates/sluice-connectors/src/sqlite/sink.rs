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

use super::config::{SqliteSinkConfig, WriteMode};
use super::quote_ident;
use crate::ledger::checkpoints::{self, Checkpoints, Dialect, Sqlite, Statement, Value};
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
            match sluice_core::blocking(|| StreamWriter::open(cfg, table, stream))? {
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
    /// The table's ledger: positions stored with the rows, the job record.
    checkpoints: Checkpoints<Sqlite>,
    /// The job, which owns the checkpoints it writes.
    job: i64,
    /// The job created the table it loads.
    created: bool,
}

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
        prepare_checkpoints(&conn, &location)?;
        let checkpoints = Checkpoints::new(Sqlite, &stream.pipeline, stream.job, &table, &target);
        let found = found_in(&conn, &checkpoints, &table, &location)?;
        let created = match ledger::decide(cfg.mode, stream, &found, &format!("`{table}` in {}", cfg.path))? {
            Action::Complete { job } => {
                tracing::info!(table = %table, job, "already loaded whole by an earlier run of this pipeline; nothing to write");
                return Ok(None);
            }
            Action::Resume { created } => {
                // Loading again: a kill from here on leaves an unfinished load.
                let record = ledger::opening_record(&found, stream.job, created);
                execute(&conn, &checkpoints.record(&record)).map_err(fail)?;
                if cfg.mode == WriteMode::Replace && !created {
                    conn.execute_batch(&format!("DROP TABLE IF EXISTS {}", quote_ident(&target)))
                        .map_err(fail)?;
                }
                created
            }
            Action::Start { clear, created } => {
                // The table, its job record and its positions change together.
                let tx = conn.unchecked_transaction().map_err(fail)?;
                execute(&tx, &checkpoints.forget()).map_err(fail)?;
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
                let record = ledger::opening_record(&found, stream.job, created);
                execute(&tx, &checkpoints.record(&record)).map_err(fail)?;
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
            checkpoints,
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
            execute(&self.conn, &self.checkpoints.store(p)).map_err(fail)?;
        }
        Ok(batch.reject_rows(rejections, Stage::Sink, &self.by))
    }

    fn committed_sync(&mut self) -> Result<Vec<Position>> {
        let rows = query(&self.conn, &self.checkpoints.committed())
            .map_err(|e| Error::connection(self.location.clone(), e.to_string()))?;
        self.checkpoints.positions(&rows)
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
            execute(&tx, &self.checkpoints.forget_load()).map_err(fail)?;
        }
        let record = JobRecord {
            job: self.job,
            created: self.created,
            complete: true,
        };
        execute(&tx, &self.checkpoints.record(&record)).map_err(fail)?;
        tx.commit().map_err(fail)
    }
}

/// What the ledger needs to know about `table`.
fn found_in(conn: &Connection, checkpoints: &Checkpoints<Sqlite>, table: &str, location: &str) -> Result<Found> {
    let fail = |e: rusqlite::Error| Error::connection(location.to_string(), e.to_string());
    let ledger = checkpoints.found(&query(conn, &checkpoints.ledger()).map_err(fail)?)?;
    let exists = !columns_of(conn, table).map_err(fail)?.is_empty();
    let has_rows = exists
        && conn
            .query_row(
                &format!("SELECT EXISTS (SELECT 1 FROM {})", quote_ident(table)),
                [],
                |r| r.get::<_, bool>(0),
            )
            .map_err(fail)?;
    Ok(Found {
        exists,
        has_rows,
        ..ledger
    })
}

/// Creates `_sluice_checkpoints`, or brings an older layout to this one,
/// under the database's write lock (see [`checkpoints`]).
fn prepare_checkpoints(conn: &Connection, location: &str) -> Result<()> {
    let fail = |e: rusqlite::Error| Error::connection(location.to_string(), e.to_string());
    let columns = query(conn, &Sqlite.columns()).map_err(fail)?;
    if checkpoints::changes(&Sqlite, &columns, location)?.is_empty() {
        return Ok(());
    }
    // Another connection may change it first: look again under the lock.
    // An error drops the connection, which rolls back.
    for s in Sqlite.lock() {
        execute(conn, &s).map_err(fail)?;
    }
    let columns = query(conn, &Sqlite.columns()).map_err(fail)?;
    for s in checkpoints::changes(&Sqlite, &columns, location)?
        .iter()
        .chain(&Sqlite.unlock())
    {
        execute(conn, s).map_err(fail)?;
    }
    Ok(())
}

/// Runs a statement of the checkpoint protocol.
fn execute(conn: &Connection, statement: &Statement) -> rusqlite::Result<()> {
    if statement.params.is_empty() {
        return conn.execute_batch(&statement.sql);
    }
    conn.prepare_cached(&statement.sql)?
        .execute(rusqlite::params_from_iter(statement.params.iter().map(bind)))?;
    Ok(())
}

/// Runs a query of the checkpoint protocol; its rows as values.
fn query(conn: &Connection, statement: &Statement) -> rusqlite::Result<Vec<Vec<Value>>> {
    let mut stmt = conn.prepare_cached(&statement.sql)?;
    let width = stmt.column_count();
    let rows = stmt.query_map(rusqlite::params_from_iter(statement.params.iter().map(bind)), |r| {
        (0..width)
            .map(|i| {
                Ok(match r.get_ref(i)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(v) => Value::Int(v),
                    ValueRef::Real(v) => Value::Text(v.to_string()),
                    ValueRef::Text(t) | ValueRef::Blob(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                })
            })
            .collect()
    })?;
    rows.collect()
}

/// A parameter as SQLite takes it.
fn bind(value: &Value) -> rusqlite::types::Value {
    match value {
        Value::Null => rusqlite::types::Value::Null,
        Value::Int(v) => rusqlite::types::Value::Integer(*v),
        Value::Text(s) => rusqlite::types::Value::Text(s.clone()),
    }
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
        sluice_core::blocking(|| self.write_sync(batch))
    }

    async fn flush(&mut self) -> Result<()> {
        sluice_core::blocking(|| self.commit())
    }

    async fn committed(&mut self) -> Result<Option<Vec<Position>>> {
        sluice_core::blocking(|| self.committed_sync()).map(Some)
    }

    async fn finish(&mut self, complete: bool) -> Result<()> {
        sluice_core::blocking(|| self.finish_sync(complete))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `_sluice_checkpoints` as sluice wrote it before its columns had the
    /// names of [`checkpoints::COLUMNS`], with a job record and a position.
    const OLD_LAYOUT: &str = "CREATE TABLE _sluice_checkpoints (
        pipeline TEXT NOT NULL,
        target TEXT NOT NULL,
        partition TEXT NOT NULL,
        cursor TEXT NOT NULL,
        rows INTEGER NOT NULL,
        job INTEGER NOT NULL,
        updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        PRIMARY KEY (pipeline, target, partition));
        INSERT INTO _sluice_checkpoints (pipeline, target, partition, cursor, rows, job) VALUES
            ('p', 't', '', '{\"created\":true,\"complete\":false}', 0, 5),
            ('p', 't', 'a.csv', '{\"offset\":10}', 3, 5);";

    fn columns(conn: &Connection) -> Vec<String> {
        query(conn, &Sqlite.columns())
            .unwrap()
            .into_iter()
            .filter_map(|r| r[0].as_text().map(str::to_string))
            .collect()
    }

    #[test]
    fn an_old_checkpoint_table_is_renamed_and_its_job_resumes_from_it() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(OLD_LAYOUT).unwrap();
        prepare_checkpoints(&conn, "mem").unwrap();
        let want: Vec<&str> = checkpoints::COLUMNS.iter().map(|c| c.name).collect();
        assert_eq!(columns(&conn), want);
        // Done once: a second stream opening finds nothing to change.
        prepare_checkpoints(&conn, "mem").unwrap();

        let cp = Checkpoints::new(Sqlite, "p", 5, "t", "t");
        let found = found_in(&conn, &cp, "t", "mem").unwrap();
        assert_eq!(
            found.record,
            Some(JobRecord {
                job: 5,
                created: true,
                complete: false
            })
        );
        assert_eq!(found.position_jobs, [5]);
        let committed = cp.positions(&query(&conn, &cp.committed()).unwrap()).unwrap();
        assert_eq!(committed, [Position::stored("a.csv", r#"{"offset":10}"#.into(), 3)]);

        // The protocol goes on in the renamed table.
        let next = Position::stored("a.csv", r#"{"offset":20}"#.into(), 6);
        execute(&conn, &cp.store(&next)).unwrap();
        let committed = cp.positions(&query(&conn, &cp.committed()).unwrap()).unwrap();
        assert_eq!(committed, [next]);
        execute(&conn, &cp.forget()).unwrap();
        assert!(query(&conn, &cp.ledger()).unwrap().is_empty());
    }

    #[test]
    fn streams_opening_together_rename_an_old_table_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.db");
        Connection::open(&path).unwrap().execute_batch(OLD_LAYOUT).unwrap();
        let barrier = std::sync::Barrier::new(4);
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        let conn = Connection::open(&path).unwrap();
                        conn.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
                        barrier.wait();
                        prepare_checkpoints(&conn, "d.db")
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap().unwrap();
            }
        });
        let conn = Connection::open(&path).unwrap();
        assert_eq!(columns(&conn).len(), checkpoints::COLUMNS.len());
        let cp = Checkpoints::new(Sqlite, "p", 5, "t", "t");
        assert_eq!(query(&conn, &cp.committed()).unwrap().len(), 1);
    }

    #[test]
    fn a_new_database_gets_the_table() {
        let conn = Connection::open_in_memory().unwrap();
        prepare_checkpoints(&conn, "mem").unwrap();
        let want: Vec<&str> = checkpoints::COLUMNS.iter().map(|c| c.name).collect();
        assert_eq!(columns(&conn), want);
    }
}
