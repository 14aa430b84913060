//! The SQLite source: tables or a query, read in batches on a blocking thread.
//!
//! Column types come from the declared types by SQLite's affinity rules.
//! SQLite does not enforce them, so a value that does not fit its column
//! (text in an INTEGER column) is a rejection naming the table and row.

use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, BinaryBuilder, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use sluice_core::{
    BOOKKEEPING_TABLES, Batch, Error, PartitionSpec, Position, ReadContext, Rejection, Result, Source, SourceEvent,
    Stage, StreamSpec,
};

use super::config::SqliteSourceConfig;
use super::quote_ident;

/// Reads tables (or one query) of a SQLite database, one stream each.
pub struct SqliteSource {
    cfg: SqliteSourceConfig,
}

impl SqliteSource {
    /// Checks the configuration; opens nothing.
    pub fn new(cfg: SqliteSourceConfig) -> Result<Self> {
        let chosen =
            usize::from(cfg.table.is_some()) + usize::from(!cfg.tables.is_empty()) + usize::from(cfg.query.is_some());
        if chosen > 1 {
            return Err(Error::config("source", "set only one of table, tables and query"));
        }
        if cfg.stream.is_some() && cfg.query.is_none() {
            return Err(Error::config(
                "source.stream",
                "only applies with query; table streams are named after their tables",
            ));
        }
        Ok(SqliteSource { cfg })
    }

    fn connect(&self) -> Result<Connection> {
        if !std::path::Path::new(&self.cfg.path).is_file() {
            return Err(Error::io(
                &self.cfg.path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such database file"),
            ));
        }
        Connection::open_with_flags(
            &self.cfg.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| Error::connection(&self.cfg.path, e.to_string()))
    }

    /// The (stream, SQL) pairs to read.
    fn queries(&self, conn: &Connection) -> Result<Vec<(String, String)>> {
        if let Some(q) = &self.cfg.query {
            return Ok(vec![(
                self.cfg.stream.clone().unwrap_or_else(|| "query".into()),
                q.clone(),
            )]);
        }
        let tables = if let Some(t) = &self.cfg.table {
            vec![t.clone()]
        } else if !self.cfg.tables.is_empty() {
            self.cfg.tables.clone()
        } else {
            let mut stmt = conn
                .prepare(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
                )
                .map_err(|e| Error::connection(&self.cfg.path, e.to_string()))?;
            let names = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(|e| Error::connection(&self.cfg.path, e.to_string()))?;
            let names = names
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(|e| Error::connection(&self.cfg.path, e.to_string()))?;
            names
                .into_iter()
                .filter(|t| !BOOKKEEPING_TABLES.contains(&t.as_str()))
                .collect()
        };
        Ok(tables
            .into_iter()
            .map(|t| (t.clone(), format!("SELECT * FROM {}", quote_ident(&t))))
            .collect())
    }
}

/// Arrow type for a declared SQLite type, by affinity.
fn arrow_type(decl: Option<&str>) -> DataType {
    let d = decl.unwrap_or("").to_ascii_uppercase();
    if d.contains("INT") {
        DataType::Int64
    } else if d.contains("BOOL") {
        DataType::Boolean
    } else if d.contains("CHAR") || d.contains("CLOB") || d.contains("TEXT") {
        DataType::Utf8
    } else if d.contains("BLOB") {
        DataType::Binary
    } else if d.contains("REAL") || d.contains("FLOA") || d.contains("DOUB") {
        DataType::Float64
    } else {
        // NUMERIC, DATE, DECIMAL and untyped columns: text keeps every value exact.
        DataType::Utf8
    }
}

#[async_trait]
impl Source for SqliteSource {
    fn name(&self) -> &str {
        "sqlite"
    }

    async fn discover(&self) -> Result<Vec<StreamSpec>> {
        let conn = self.connect()?;
        let mut streams = Vec::new();
        for (name, sql) in self.queries(&conn)? {
            let stmt = conn
                .prepare(&sql)
                .map_err(|e| Error::connection(format!("{}#{name}", self.cfg.path), e.to_string()))?;
            let fields: Vec<Field> = stmt
                .columns()
                .map(|c| Field::new(c.name(), arrow_type(c.decl_type()), true))
                .collect();
            let rows = if self.cfg.query.is_none() {
                conn.query_row(&format!("SELECT count(*) FROM ({sql})"), [], |r| r.get::<_, i64>(0))
                    .ok()
                    .map(|n| n as u64)
            } else {
                None
            };
            streams.push(StreamSpec {
                name: name.as_str().into(),
                schema: Arc::new(Schema::new(fields)),
                partitions: vec![PartitionSpec {
                    id: format!("{}#{name}", self.cfg.path).into(),
                    bounds: serde_json::Value::Null,
                    bytes: None,
                    rows,
                }],
            });
        }
        Ok(streams)
    }

    async fn read(&self, stream: &StreamSpec, partition: &PartitionSpec, ctx: ReadContext) -> Result<()> {
        let conn = self.connect()?;
        let sql = self
            .queries(&conn)?
            .into_iter()
            .find(|(n, _)| **n == *stream.name)
            .map(|(_, s)| s)
            .ok_or_else(|| Error::Internal(format!("stream {} vanished", stream.name)))?;
        let stream = stream.clone();
        let partition = partition.clone();
        tokio::task::spawn_blocking(move || read_query(&conn, &sql, &stream, &partition, &ctx))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
    }
}

fn read_query(
    conn: &Connection,
    sql: &str,
    stream: &StreamSpec,
    partition: &PartitionSpec,
    ctx: &ReadContext,
) -> Result<()> {
    let location = partition.id.clone();
    let fail = |e: rusqlite::Error| Error::connection(location.to_string(), e.to_string());
    let mut stmt = conn.prepare(sql).map_err(fail)?;
    let mut rows = stmt.query([]).map_err(fail)?;
    let schema: SchemaRef = stream.schema.clone();
    let mut builder = RowsBuilder::new(&schema);
    let mut n = 0u64;
    let send = |ev| ctx.out.blocking_send(ev).map_err(|_| Error::Interrupted);
    // A resumed read skips the rows already delivered (same file, same order).
    let skip = ctx.resume.as_ref().map_or(0, |p| p.rows);
    while let Some(row) = rows.next().map_err(fail)? {
        n += 1;
        if n <= skip {
            continue;
        }
        if let Err(reason) = builder.append(row, n) {
            send(SourceEvent::Reject(Rejection {
                stream: stream.name.clone(),
                stage: Stage::Source,
                by: "sqlite".into(),
                origin: location.clone(),
                line: Some(n),
                reason,
                raw: None,
                record: None,
            }))?;
        }
        if builder.len() >= ctx.limits.rows || ctx.cancel.is_cancelled() {
            send(builder.flush(&schema, stream, &location, n)?)?;
            if ctx.cancel.is_cancelled() {
                return Ok(());
            }
        }
    }
    if builder.len() > 0 || n == skip {
        send(builder.flush(&schema, stream, &location, n)?)?;
    }
    Ok(())
}

/// Column builders for one batch, and the row number of each row kept.
struct RowsBuilder {
    columns: Vec<Box<dyn ArrayBuilder>>,
    types: Vec<DataType>,
    lines: Vec<u64>,
}

impl RowsBuilder {
    fn new(schema: &Schema) -> Self {
        let types: Vec<DataType> = schema.fields().iter().map(|f| f.data_type().clone()).collect();
        RowsBuilder {
            columns: types.iter().map(new_builder).collect(),
            types,
            lines: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        self.lines.len()
    }

    /// Appends a row, or explains why it does not fit; a refused row leaves nothing behind.
    fn append(&mut self, row: &rusqlite::Row<'_>, n: u64) -> std::result::Result<(), String> {
        let mut values = Vec::with_capacity(self.types.len());
        for (i, t) in self.types.iter().enumerate() {
            let v = row.get_ref(i).map_err(|e| e.to_string())?;
            let name = row.as_ref().column_name(i).unwrap_or("?").to_string();
            values.push(convert(v, t).map_err(|e| format!("column `{name}`: {e}"))?);
        }
        for (b, v) in self.columns.iter_mut().zip(values) {
            push(b.as_mut(), v);
        }
        self.lines.push(n);
        Ok(())
    }

    fn flush(&mut self, schema: &SchemaRef, stream: &StreamSpec, location: &Arc<str>, n: u64) -> Result<SourceEvent> {
        let arrays: Vec<ArrayRef> = self.columns.iter_mut().map(|b| b.finish()).collect();
        let data = RecordBatch::try_new(schema.clone(), arrays)?;
        let lines = std::mem::take(&mut self.lines);
        let mut batch = Batch::new(stream.name.clone(), location.clone(), data);
        batch.lines = Some(Arc::new(UInt64Array::from(lines)));
        batch.position = Some(Position {
            partition: location.clone(),
            cursor: serde_json::json!({ "row": n }),
            rows: n,
        });
        Ok(SourceEvent::Batch(batch))
    }
}

/// A value converted to its column's type.
enum Value {
    Null,
    Int(i64),
    Real(f64),
    Bool(bool),
    Text(String),
    Blob(Vec<u8>),
}

fn convert(v: ValueRef<'_>, t: &DataType) -> std::result::Result<Value, String> {
    Ok(match (v, t) {
        (ValueRef::Null, _) => Value::Null,
        (ValueRef::Integer(i), DataType::Int64) => Value::Int(i),
        (ValueRef::Integer(i), DataType::Float64) => Value::Real(i as f64),
        (ValueRef::Real(f), DataType::Float64) => Value::Real(f),
        (ValueRef::Integer(i), DataType::Boolean) if i == 0 || i == 1 => Value::Bool(i == 1),
        (ValueRef::Integer(i), DataType::Utf8) => Value::Text(i.to_string()),
        (ValueRef::Real(f), DataType::Utf8) => Value::Text(f.to_string()),
        (ValueRef::Text(s), DataType::Utf8) => {
            Value::Text(String::from_utf8(s.to_vec()).map_err(|_| "text is not valid UTF-8".to_string())?)
        }
        (ValueRef::Blob(b), DataType::Utf8) => Value::Text(
            String::from_utf8(b.to_vec()).map_err(|_| "blob in a text column is not valid UTF-8".to_string())?,
        ),
        (ValueRef::Blob(b), DataType::Binary) | (ValueRef::Text(b), DataType::Binary) => Value::Blob(b.to_vec()),
        (other, t) => {
            let shown = match other {
                ValueRef::Text(s) => format!("text '{}'", String::from_utf8_lossy(s)),
                ValueRef::Real(f) => format!("real {f}"),
                ValueRef::Integer(i) => format!("integer {i}"),
                ValueRef::Blob(b) => format!("blob of {} bytes", b.len()),
                ValueRef::Null => "null".into(),
            };
            return Err(format!(
                "{shown} does not fit the declared type ({})",
                sluice_core::types::arrow_type_name(t)
            ));
        }
    })
}

fn new_builder(t: &DataType) -> Box<dyn ArrayBuilder> {
    match t {
        DataType::Int64 => Box::new(Int64Builder::new()),
        DataType::Float64 => Box::new(Float64Builder::new()),
        DataType::Boolean => Box::new(BooleanBuilder::new()),
        DataType::Binary => Box::new(BinaryBuilder::new()),
        _ => Box::new(StringBuilder::new()),
    }
}

fn push(b: &mut dyn ArrayBuilder, v: Value) {
    let any = b.as_any_mut();
    if let Some(b) = any.downcast_mut::<Int64Builder>() {
        b.append_option(if let Value::Int(i) = v { Some(i) } else { None });
    } else if let Some(b) = any.downcast_mut::<Float64Builder>() {
        b.append_option(if let Value::Real(f) = v { Some(f) } else { None });
    } else if let Some(b) = any.downcast_mut::<BooleanBuilder>() {
        b.append_option(if let Value::Bool(x) = v { Some(x) } else { None });
    } else if let Some(b) = any.downcast_mut::<BinaryBuilder>() {
        b.append_option(if let Value::Blob(x) = v { Some(x) } else { None });
    } else if let Some(b) = any.downcast_mut::<StringBuilder>() {
        b.append_option(if let Value::Text(x) = v { Some(x) } else { None });
    }
}
