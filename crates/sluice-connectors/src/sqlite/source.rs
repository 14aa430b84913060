//! The SQLite source: tables or a query, read in batches on a blocking thread.
//!
//! Column types come from the declared types ([`super::values`]): SQLite's
//! affinity rules, with dates, exact decimals and booleans read by name.
//! SQLite does not enforce declared types, so a value that does not fit its
//! column (text in an INTEGER column, `'abc'` in a `NUMERIC(10,2)` one) is a
//! rejection naming the table, the rowid (or key), the column and the value,
//! carrying the row as stored; the run goes on or stops per `on_error`.
//!
//! Tables carry their layout ([`super::schema`]): primary key, indexes,
//! foreign keys, `NOT NULL` and `AUTOINCREMENT`, for database sinks to rebuild.
//!
//! A resumed read skips the rows already delivered: the same file is read
//! in the same order.

use std::sync::Arc;

use arrow::array::{ArrayBuilder, ArrayRef, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags};
use sluice_core::dbmeta::ColumnMeta;
use sluice_core::{
    BOOKKEEPING_TABLES, Batch, Error, PartitionSpec, Position, ReadContext, Rejection, Result, Source, SourceEvent,
    Stage, StreamSpec,
};

use super::config::SqliteSourceConfig;
use super::quote_ident;
use super::schema::{DIALECT, describe};
use super::values::{arrow_type, convert, new_builder, push, show, to_json};

/// Reads tables (or one query) of a SQLite database, one stream each.
pub struct SqliteSource {
    cfg: SqliteSourceConfig,
}

/// What a stream reads: a table or the configured query.
enum Target {
    Table(String),
    Query(String),
}

/// How one stream is read.
struct Plan {
    select: String,
    columns: Vec<String>,
    /// The first result column is the rowid, which names refused rows.
    rowid: bool,
    /// Primary key columns, naming refused rows when there is no rowid.
    key: Vec<usize>,
    /// Table (or stream) name, for rejections.
    table: String,
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

    fn fail(&self, what: &str) -> impl Fn(rusqlite::Error) -> Error {
        let location = format!("{}#{what}", self.cfg.path);
        move |e| Error::connection(location.clone(), e.to_string())
    }

    /// The streams to read, by name.
    fn targets(&self, conn: &Connection) -> Result<Vec<(String, Target)>> {
        if let Some(q) = &self.cfg.query {
            return Ok(vec![(
                self.cfg.stream.clone().unwrap_or_else(|| "query".into()),
                Target::Query(q.clone()),
            )]);
        }
        let tables = if let Some(t) = &self.cfg.table {
            vec![t.clone()]
        } else if !self.cfg.tables.is_empty() {
            self.cfg.tables.clone()
        } else {
            let fail = self.fail("sqlite_master");
            let mut stmt = conn
                .prepare(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
                )
                .map_err(&fail)?;
            let names = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(&fail)?;
            let names = names.collect::<rusqlite::Result<Vec<_>>>().map_err(&fail)?;
            names
                .into_iter()
                .filter(|t| !BOOKKEEPING_TABLES.contains(&t.as_str()))
                .collect()
        };
        Ok(tables.into_iter().map(|t| (t.clone(), Target::Table(t))).collect())
    }

    /// The table's layout, or a configuration error naming a missing table.
    fn layout(&self, conn: &Connection, table: &str, rows: Option<u64>) -> Result<super::schema::TableLayout> {
        let layout = describe(conn, table, rows).map_err(self.fail(table))?;
        if layout.columns.is_empty() {
            return Err(Error::config(
                "source.table",
                format!("table `{table}` not found in {}", self.cfg.path),
            ));
        }
        Ok(layout)
    }

    fn plan(&self, conn: &Connection, name: &str) -> Result<Plan> {
        let target = self
            .targets(conn)?
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
            .ok_or_else(|| Error::Internal(format!("stream {name} vanished")))?;
        Ok(match target {
            Target::Query(q) => {
                let stmt = conn.prepare(&q).map_err(self.fail(name))?;
                Plan {
                    columns: stmt.column_names().map(str::to_string).collect(),
                    select: q,
                    rowid: false,
                    key: Vec::new(),
                    table: name.to_string(),
                }
            }
            Target::Table(t) => {
                let layout = self.layout(conn, &t, None)?;
                let mut list: Vec<String> = layout.columns.iter().map(|c| quote_ident(c)).collect();
                if let Some(r) = layout.rowid {
                    list.insert(0, r.to_string());
                }
                let key = layout
                    .meta
                    .primary_key
                    .iter()
                    .filter_map(|k| layout.columns.iter().position(|c| c == k))
                    .collect();
                Plan {
                    select: format!("SELECT {} FROM {}", list.join(", "), quote_ident(&t)),
                    columns: layout.columns,
                    rowid: layout.rowid.is_some(),
                    key,
                    table: t,
                }
            }
        })
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
        for (name, target) in self.targets(&conn)? {
            let (schema, rows) = match target {
                Target::Query(q) => {
                    let stmt = conn.prepare(&q).map_err(self.fail(&name))?;
                    let fields: Vec<Field> = stmt
                        .columns()
                        .map(|c| {
                            let meta = ColumnMeta {
                                dialect: Some(DIALECT.into()),
                                db_type: c.decl_type().map(str::to_string),
                                semantic: None,
                            };
                            Field::new(c.name(), arrow_type(c.decl_type()), true).with_metadata(meta.to_metadata())
                        })
                        .collect();
                    (Schema::new(fields), None)
                }
                Target::Table(t) => {
                    let rows = conn
                        .query_row(&format!("SELECT count(*) FROM {}", quote_ident(&t)), [], |r| {
                            r.get::<_, i64>(0)
                        })
                        .ok()
                        .map(|n| n as u64);
                    let layout = self.layout(&conn, &t, rows)?;
                    (
                        Schema::new(layout.fields).with_metadata(layout.meta.to_metadata()),
                        rows,
                    )
                }
            };
            streams.push(StreamSpec {
                name: name.as_str().into(),
                schema: Arc::new(schema),
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
        let plan = self.plan(&conn, &stream.name)?;
        if plan.columns.len() != stream.schema.fields().len() {
            return Err(Error::config(
                "source",
                format!(
                    "`{}` in {} has {} columns, the stream planned {}: its schema changed; start a new job (--fresh)",
                    plan.table,
                    self.cfg.path,
                    plan.columns.len(),
                    stream.schema.fields().len()
                ),
            ));
        }
        let stream = stream.clone();
        let partition = partition.clone();
        tokio::task::spawn_blocking(move || read_query(&conn, &plan, &stream, &partition, &ctx))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
    }
}

fn read_query(
    conn: &Connection,
    plan: &Plan,
    stream: &StreamSpec,
    partition: &PartitionSpec,
    ctx: &ReadContext,
) -> Result<()> {
    let location = partition.id.clone();
    let fail = |e: rusqlite::Error| Error::connection(location.to_string(), e.to_string());
    let mut stmt = conn.prepare(&plan.select).map_err(fail)?;
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
        if let Err((reason, record)) = builder.append(row, n, plan) {
            send(SourceEvent::Reject(Rejection {
                stream: stream.name.clone(),
                stage: Stage::Source,
                by: "sqlite".into(),
                origin: location.clone(),
                line: Some(n),
                reason,
                raw: None,
                record,
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
    /// Declared types, for rejections.
    declared: Vec<Option<String>>,
    lines: Vec<u64>,
}

/// Why a row was refused, and the row as JSON for the dead-letter file.
type Refusal = (String, Option<Box<serde_json::value::RawValue>>);

impl RowsBuilder {
    fn new(schema: &Schema) -> Self {
        let types: Vec<DataType> = schema.fields().iter().map(|f| f.data_type().clone()).collect();
        RowsBuilder {
            columns: types.iter().map(new_builder).collect(),
            declared: schema.fields().iter().map(|f| ColumnMeta::of(f).db_type).collect(),
            types,
            lines: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        self.lines.len()
    }

    /// Appends a row, or explains why it does not fit; a refused row leaves nothing behind.
    fn append(&mut self, row: &rusqlite::Row<'_>, n: u64, plan: &Plan) -> std::result::Result<(), Refusal> {
        let offset = usize::from(plan.rowid);
        let mut values = Vec::with_capacity(self.types.len());
        for (i, t) in self.types.iter().enumerate() {
            let v = row.get_ref(i + offset).map_err(|e| (e.to_string(), None))?;
            match convert(v, t) {
                Ok(cell) => values.push(cell),
                Err(why) => {
                    let column = plan.columns.get(i).map_or("?", String::as_str);
                    let declared = self.declared[i].as_deref().map(|d| format!(" {d}")).unwrap_or_default();
                    let reason = format!(
                        "`{}` {}, column `{column}`{declared}: {why}",
                        plan.table,
                        describe_row(row, n, plan)
                    );
                    return Err((reason, record(row, plan)));
                }
            }
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

/// `rowid 7`, else the primary key (`a = 1, b = 'x'`), else `row 7` (the
/// position in the read).
fn describe_row(row: &rusqlite::Row<'_>, n: u64, plan: &Plan) -> String {
    if plan.rowid
        && let Ok(v) = row.get_ref(0)
    {
        return format!("rowid {}", to_json(v));
    }
    let offset = usize::from(plan.rowid);
    let key: Vec<String> = plan
        .key
        .iter()
        .filter_map(|k| {
            let v = row.get_ref(k + offset).ok()?;
            Some(format!("{} = {}", plan.columns[*k], show(v)))
        })
        .collect();
    if key.is_empty() {
        format!("row {n}")
    } else {
        key.join(", ")
    }
}

/// The row as stored, as a JSON object.
fn record(row: &rusqlite::Row<'_>, plan: &Plan) -> Option<Box<serde_json::value::RawValue>> {
    let offset = usize::from(plan.rowid);
    let mut object = serde_json::Map::new();
    for (i, c) in plan.columns.iter().enumerate() {
        let v = row.get_ref(i + offset).ok()?;
        object.insert(c.clone(), to_json(v));
    }
    serde_json::value::to_raw_value(&object).ok()
}
