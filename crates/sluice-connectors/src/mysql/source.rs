//! The MySQL/MariaDB source.
//!
//! # Partitions and consistency
//!
//! A table whose primary key starts with an integer column (`id`, or
//! `(emp_no, from_date)`) is split into ranges of that column (`orders:0`,
//! `orders:1`, …), read in parallel: one partition per 250,000 estimated
//! rows, at most eight and one per core, or `partitions` (see [`crate::partitions`], shared
//! with the PostgreSQL source). Other tables and queries are one partition. Each partition opens its own session and reads
//! inside `START TRANSACTION WITH CONSISTENT SNAPSHOT` at `REPEATABLE READ`,
//! so every partition is consistent in itself. MySQL and MariaDB cannot share
//! one snapshot between sessions, so partitions of a table being written to
//! may see it at slightly different moments.
//!
//! # Reading
//!
//! Rows are streamed over the text protocol and parsed straight into Arrow
//! builders ([`super::decode`]). A value that does not fit its Arrow type (a
//! `TIME` beyond one day, text that is not UTF-8) is sent as a
//! [`SourceEvent::Reject`] naming the table, column and primary key. Zero
//! dates become NULL with a warning, or rejections with `zero_dates = "reject"`.
//!
//! # Resuming
//!
//! Table partitions are read in primary-key order and a batch's cursor is
//! the last key read, so a resumed partition starts after it. Keyless tables
//! and queries resume by skipping the rows already read, which is exact only
//! when the order of the rows is stable (a query with `ORDER BY`).
//!
//! Cancellation is checked at batch boundaries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow::array::{RecordBatch, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use futures::StreamExt;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row, Value};
use sluice_core::dbmeta::{ForeignKeyMeta, IndexMeta, TableMeta};
use sluice_core::spatial::GeometryMeta;
use sluice_core::{
    BOOKKEEPING_TABLES, Batch, Error, PartitionSpec, Position, ReadContext, Rejection, Result, Source, SourceEvent,
    Stage, StreamSpec,
};

use super::config::{MysqlSourceConfig, ZeroDates};
use super::decode::{Builder, Cell, Fail, Kind, binary_cell, parse, value_text};
use super::fidelity;
use super::types::{ColumnInfo, DIALECT, field_for_column, field_for_result_column, is_json_check};
use super::{Endpoint, connect, db_error, parse_url, quote_ident, redact, rows, sql_string, text};

/// Reads tables (or one query) of a MySQL or MariaDB database, one stream each.
pub struct MysqlSource {
    cfg: MysqlSourceConfig,
    opts: Endpoint,
    db: String,
    target: String,
    /// What `discover` planned, by stream name.
    plans: Mutex<HashMap<String, Arc<Plan>>>,
}

/// How a stream is read.
#[derive(Debug)]
struct Plan {
    /// `SELECT cols FROM db.t` or the user's query.
    select: String,
    kinds: Vec<Kind>,
    columns: Vec<String>,
    key: KeyPlan,
    /// The integer column partitions are cut on (index into the columns):
    /// the key of [`KeyPlan::IntRange`], the first key column of
    /// [`KeyPlan::Ordered`] when it is an integer.
    split: Option<usize>,
    /// `db.table` or `query`, for rejections.
    origin: Arc<str>,
    /// Range of the split column of each partition: `[lo, hi)`, open ends as `None`.
    ranges: Vec<(Option<i128>, Option<i128>)>,
    zero_dates: ZeroDates,
    /// Read over the binary protocol (tables); a user's query keeps the
    /// text protocol, which takes any statement.
    binary: bool,
}

/// How rows are ordered, partitioned and resumed.
#[derive(Debug)]
enum KeyPlan {
    /// A single integer primary key column (index into the columns).
    IntRange(usize),
    /// A primary key of other types: (column index, how its literal is written).
    Ordered(Vec<(usize, Literal)>),
    /// No key: one partition, resumed by skipping rows.
    None,
}

/// How a key value read as text is written back into a `WHERE`.
#[derive(Debug, Clone, Copy)]
enum Literal {
    Number,
    Text,
    Bytes,
}

impl MysqlSource {
    /// Checks the configuration; connects to nothing.
    pub fn new(cfg: MysqlSourceConfig) -> Result<Self> {
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
        let opts = parse_url(&cfg.url, "source.url")?;
        let db = opts.db_name().unwrap_or_default().to_string();
        let target = redact(&cfg.url);
        Ok(MysqlSource {
            cfg,
            opts,
            db,
            target,
            plans: Mutex::new(HashMap::new()),
        })
    }

    async fn tables(&self, conn: &mut Conn) -> Result<Vec<String>> {
        if let Some(t) = &self.cfg.table {
            return Ok(vec![t.clone()]);
        }
        if !self.cfg.tables.is_empty() {
            return Ok(self.cfg.tables.clone());
        }
        let sql = format!(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = {} AND TABLE_TYPE = 'BASE TABLE' \
             ORDER BY TABLE_NAME",
            sql_string(&self.db)
        );
        Ok(rows(conn, &self.target, &sql)
            .await?
            .iter()
            .filter_map(|r| text(r, 0))
            .filter(|t| !BOOKKEEPING_TABLES.contains(&t.as_str()))
            .collect())
    }

    /// Schema, plan and partitions of one table.
    async fn describe_table(&self, conn: &mut Conn, table: &str) -> Result<StreamSpec> {
        let (db, t) = (sql_string(&self.db), sql_string(table));
        let where_table = format!("TABLE_SCHEMA = {db} AND TABLE_NAME = {t}");
        let cols = rows(
            conn,
            &self.target,
            &format!(
                "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, NUMERIC_PRECISION, NUMERIC_SCALE, EXTRA, \
                 COLUMN_DEFAULT, COLLATION_NAME, \
                 (SELECT DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = TABLE_SCHEMA), \
                 VERSION() LIKE '%MariaDB%' \
                 FROM information_schema.COLUMNS WHERE {where_table} ORDER BY ORDINAL_POSITION"
            ),
        )
        .await?;
        if cols.is_empty() {
            return Err(Error::config(
                "source.table",
                format!("table `{table}` not found in database `{}` at {}", self.db, self.target),
            ));
        }
        // MariaDB declares JSON as longtext with a json_valid check; MySQL
        // has a JSON type and (before 8.0.16) no CHECK_CONSTRAINTS table.
        let checks: Vec<String> = rows(
            conn,
            &self.target,
            &format!(
                "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = {db} \
                 AND TABLE_NAME = {t}"
            ),
        )
        .await
        .map(|rs| rs.iter().filter_map(|r| text(r, 0)).collect())
        .unwrap_or_default();
        let mut infos = Vec::new();
        let mut serial = Vec::new();
        for r in &cols {
            let name = text(r, 0).unwrap_or_default();
            if text(r, 6).is_some_and(|e| e.to_ascii_lowercase().contains("auto_increment")) {
                serial.push(name.clone());
            }
            infos.push(ColumnInfo {
                json: checks.iter().any(|c| is_json_check(c, &name)),
                data_type: text(r, 1).unwrap_or_default().to_ascii_lowercase(),
                column_type: text(r, 2).unwrap_or_default(),
                nullable: text(r, 3).as_deref() == Some("YES"),
                precision: text(r, 4).and_then(|v| v.parse().ok()),
                scale: text(r, 5).and_then(|v| v.parse().ok()),
                name,
            });
        }
        let fields: Vec<Field> = infos
            .iter()
            .zip(&cols)
            .map(|(c, r)| {
                let f = self.nullable_zero_dates(field_for_column(c));
                let extra = fidelity::column_metadata(
                    text(r, 7).as_deref(),
                    &text(r, 6).unwrap_or_default(),
                    text(r, 8).as_deref(),
                    text(r, 9).as_deref(),
                    text(r, 10).as_deref() == Some("1"),
                );
                let mut md = f.metadata().clone();
                md.extend(extra);
                f.with_metadata(md)
            })
            .collect();
        let fields = if fields.iter().any(|f| GeometryMeta::of(f).is_some()) {
            let srids = super::spatial::declared_srids(conn, &self.target, &self.db, table).await;
            super::spatial::with_srids(fields, &srids)
        } else {
            fields
        };

        let stats = rows(
            conn,
            &self.target,
            &format!(
                "SELECT INDEX_NAME, NON_UNIQUE, COLUMN_NAME FROM information_schema.STATISTICS WHERE {where_table} \
                 ORDER BY INDEX_NAME, SEQ_IN_INDEX"
            ),
        )
        .await?;
        let mut primary_key = Vec::new();
        let mut indexes: Vec<IndexMeta> = Vec::new();
        for r in &stats {
            let (name, column) = (text(r, 0).unwrap_or_default(), text(r, 2).unwrap_or_default());
            if name == "PRIMARY" {
                primary_key.push(column);
            } else if let Some(ix) = indexes.iter_mut().find(|i| i.name == name) {
                ix.columns.push(column);
            } else {
                indexes.push(IndexMeta {
                    name,
                    columns: vec![column],
                    unique: text(r, 1).as_deref() == Some("0"),
                });
            }
        }
        let fks = rows(
            conn,
            &self.target,
            &format!(
                "SELECT k.CONSTRAINT_NAME, k.COLUMN_NAME, k.REFERENCED_TABLE_NAME, k.REFERENCED_COLUMN_NAME, \
                 (SELECT rc.DELETE_RULE FROM information_schema.REFERENTIAL_CONSTRAINTS rc {rule}), \
                 (SELECT rc.UPDATE_RULE FROM information_schema.REFERENTIAL_CONSTRAINTS rc {rule}) \
                 FROM information_schema.KEY_COLUMN_USAGE k \
                 WHERE {where_table} AND k.REFERENCED_TABLE_NAME IS NOT NULL \
                 ORDER BY k.CONSTRAINT_NAME, k.ORDINAL_POSITION",
                rule = "WHERE rc.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA AND rc.CONSTRAINT_NAME = k.CONSTRAINT_NAME \
                        AND rc.TABLE_NAME = k.TABLE_NAME"
            ),
        )
        .await?;
        let mut foreign_keys: Vec<ForeignKeyMeta> = Vec::new();
        for r in &fks {
            let name = text(r, 0).unwrap_or_default();
            let (col, ref_table, ref_col) = (
                text(r, 1).unwrap_or_default(),
                text(r, 2).unwrap_or_default(),
                text(r, 3).unwrap_or_default(),
            );
            match foreign_keys.iter_mut().find(|f| f.name == name) {
                Some(fk) => {
                    fk.columns.push(col);
                    fk.ref_columns.push(ref_col);
                }
                None => foreign_keys.push(ForeignKeyMeta {
                    name,
                    columns: vec![col],
                    ref_table,
                    ref_columns: vec![ref_col],
                    on_delete: text(r, 4).and_then(|a| ForeignKeyMeta::action(&a)),
                    on_update: text(r, 5).and_then(|a| ForeignKeyMeta::action(&a)),
                }),
            }
        }
        let estimated_rows = rows(
            conn,
            &self.target,
            &format!("SELECT TABLE_ROWS FROM information_schema.TABLES WHERE {where_table}"),
        )
        .await?
        .first()
        .and_then(|r| text(r, 0))
        .and_then(|v| v.parse::<u64>().ok());

        let position = |c: &String| infos.iter().position(|i| i.name == *c);
        let key = match primary_key.as_slice() {
            [] => KeyPlan::None,
            [one] if position(one).is_some_and(|i| is_integer(fields[i].data_type())) => {
                KeyPlan::IntRange(position(one).unwrap_or_default())
            }
            cols => KeyPlan::Ordered(
                cols.iter()
                    .filter_map(position)
                    .map(|i| (i, literal_for(fields[i].data_type())))
                    .collect(),
            ),
        };
        let split = match &key {
            KeyPlan::IntRange(i) => Some(*i),
            KeyPlan::Ordered(cols) => cols.first().map(|(i, _)| *i).filter(|i| is_integer(fields[*i].data_type())),
            KeyPlan::None => None,
        };
        let wanted = crate::partitions::count(self.cfg.partitions, estimated_rows);
        let ranges = match split {
            Some(i) if wanted > 1 => self.split(conn, table, &infos[i].name, wanted).await?,
            _ => vec![(None, None)],
        };
        let meta = TableMeta {
            dialect: DIALECT.into(),
            schema: self.db.clone(),
            table: table.to_string(),
            primary_key,
            indexes,
            foreign_keys,
            serial_columns: serial,
            estimated_rows,
        };
        let schema = Arc::new(Schema::new(fields).with_metadata(meta.to_metadata()));
        let columns: Vec<String> = infos.iter().map(|c| c.name.clone()).collect();
        // The text protocol prints FLOAT with 6 significant digits; as a
        // double it is exact, and converts back to the same f32.
        let list: Vec<String> = columns
            .iter()
            .zip(schema.fields())
            .map(|(c, f)| match f.data_type() {
                DataType::Float32 => format!("({q} + 0e0) AS {q}", q = quote_ident(c)),
                _ => quote_ident(c),
            })
            .collect();
        let select = format!(
            "SELECT {} FROM {}.{}",
            list.join(", "),
            quote_ident(&self.db),
            quote_ident(table)
        );
        let n = ranges.len() as u64;
        let partitions = (0..ranges.len())
            .map(|i| PartitionSpec {
                id: format!("{table}:{i}").into(),
                bounds: serde_json::json!([ranges[i].0.map(|v| v.to_string()), ranges[i].1.map(|v| v.to_string())]),
                bytes: None,
                rows: estimated_rows.map(|r| r / n),
            })
            .collect();
        let plan = Plan {
            select,
            kinds: schema.fields().iter().map(|f| Kind::of(f)).collect(),
            columns,
            key,
            split,
            origin: format!("{}.{}", self.db, table).into(),
            ranges,
            zero_dates: self.cfg.zero_dates,
            binary: true,
        };
        self.remember(table, plan);
        Ok(StreamSpec {
            name: table.into(),
            schema,
            partitions,
        })
    }

    /// `wanted` ranges `[lo, hi)` of the integer column `key`.
    async fn split(
        &self,
        conn: &mut Conn,
        table: &str,
        key: &str,
        wanted: usize,
    ) -> Result<Vec<(Option<i128>, Option<i128>)>> {
        let k = quote_ident(key);
        let sql = format!(
            "SELECT MIN({k}), MAX({k}) FROM {}.{}",
            quote_ident(&self.db),
            quote_ident(table)
        );
        let bounds = rows(conn, &self.target, &sql).await?;
        let bound = |i| {
            bounds
                .first()
                .and_then(|r| text(r, i))
                .and_then(|v| v.parse::<i128>().ok())
        };
        let (Some(min), Some(max)) = (bound(0), bound(1)) else {
            return Ok(vec![(None, None)]);
        };
        Ok(crate::partitions::int_ranges(min, max, wanted))
    }

    /// Schema and plan of a query, from the metadata of an empty result.
    async fn describe_query(&self, conn: &mut Conn, query: &str) -> Result<StreamSpec> {
        let name = self.cfg.stream.clone().unwrap_or_else(|| "query".into());
        let probe = format!(
            "SELECT * FROM ({}) AS sluice_q LIMIT 0",
            query.trim().trim_end_matches(';')
        );
        let result = conn
            .query_iter(probe)
            .await
            .map_err(|e| Error::config("source.query", format!("{}", db_error(&self.target, e))))?;
        let fields: Vec<Field> = result
            .columns()
            .map(|cols| cols.iter().map(field_for_result_column).collect())
            .unwrap_or_default();
        result.drop_result().await.map_err(|e| db_error(&self.target, e))?;
        let schema = Arc::new(Schema::new(fields));
        let plan = Plan {
            select: query.trim().trim_end_matches(';').to_string(),
            kinds: schema.fields().iter().map(|f| Kind::of(f)).collect(),
            columns: schema.fields().iter().map(|f| f.name().clone()).collect(),
            key: KeyPlan::None,
            split: None,
            origin: "query".into(),
            ranges: vec![(None, None)],
            zero_dates: self.cfg.zero_dates,
            binary: false,
        };
        self.remember(&name, plan);
        Ok(StreamSpec {
            name: name.as_str().into(),
            schema,
            partitions: vec![PartitionSpec {
                id: format!("{name}:0").into(),
                bounds: serde_json::Value::Null,
                bytes: None,
                rows: None,
            }],
        })
    }

    /// Zero dates read as NULL need a nullable field even on a NOT NULL column.
    fn nullable_zero_dates(&self, f: Field) -> Field {
        let temporal = matches!(f.data_type(), DataType::Date32 | DataType::Timestamp(_, _));
        if temporal && self.cfg.zero_dates == ZeroDates::Null {
            let mut md = f.metadata().clone();
            if !f.is_nullable() {
                md.insert(sluice_core::dbmeta::NOT_NULL.into(), "true".into());
            }
            f.with_nullable(true).with_metadata(md)
        } else {
            f
        }
    }

    fn remember(&self, stream: &str, plan: Plan) {
        if let Ok(mut plans) = self.plans.lock() {
            plans.insert(stream.to_string(), Arc::new(plan));
        }
    }

    fn plan(&self, stream: &str) -> Option<Arc<Plan>> {
        self.plans.lock().ok().and_then(|p| p.get(stream).cloned())
    }
}

fn is_integer(t: &DataType) -> bool {
    t.is_integer()
}

fn literal_for(t: &DataType) -> Literal {
    match t {
        t if t.is_integer() || matches!(t, DataType::Decimal128(_, _)) => Literal::Number,
        DataType::Binary => Literal::Bytes,
        _ => Literal::Text,
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

/// The raw bytes of a text-protocol value (`None` for NULL).
#[async_trait]
impl Source for MysqlSource {
    fn name(&self) -> &str {
        "mysql"
    }

    async fn discover(&self) -> Result<Vec<StreamSpec>> {
        let mut conn = connect(&self.opts, &self.target, None).await?;
        let mut streams = Vec::new();
        if let Some(q) = &self.cfg.query {
            streams.push(self.describe_query(&mut conn, q).await?);
        } else {
            for t in self.tables(&mut conn).await? {
                streams.push(self.describe_table(&mut conn, &t).await?);
            }
        }
        let _ = conn.disconnect().await;
        Ok(streams)
    }

    async fn not_copied(&self) -> Result<Vec<sluice_core::NotCopied>> {
        if self.cfg.query.is_some() {
            return Ok(Vec::new());
        }
        let mut conn = connect(&self.opts, &self.target, None).await?;
        let tables: Vec<String> = self.cfg.table.iter().chain(&self.cfg.tables).cloned().collect();
        let found = fidelity::not_copied(&mut conn, &self.target, &self.db, &tables, tables.is_empty()).await;
        let _ = conn.disconnect().await;
        found
    }

    async fn check(&self, streams: &[StreamSpec]) -> Result<Vec<String>> {
        let mut conn = connect(&self.opts, &self.target, None).await?;
        let version = rows(&mut conn, &self.target, "SELECT VERSION()")
            .await?
            .first()
            .and_then(|r| text(r, 0))
            .unwrap_or_default();
        let mut lines = vec![format!("connected to {} (server {version})", self.target)];
        if self.cfg.query.is_some() {
            lines.push("query: the server accepted it".into());
        } else {
            for s in streams {
                // Reading no rows still needs the SELECT privilege.
                let sql = format!("SELECT 1 FROM {} LIMIT 0", quote_ident(&s.name));
                conn.query_drop(sql).await.map_err(|e| {
                    Error::config(
                        "source",
                        format!(
                            "{}: cannot read `{}` ({}); GRANT SELECT ON the table TO the user",
                            self.target,
                            s.name,
                            db_error(&self.target, e)
                        ),
                    )
                })?;
                lines.push(format!("`{}`: readable, {} partition(s)", s.name, s.partitions.len()));
            }
        }
        let _ = conn.disconnect().await;
        Ok(lines)
    }

    async fn read(&self, stream: &StreamSpec, partition: &PartitionSpec, ctx: ReadContext) -> Result<()> {
        let plan = match self.plan(&stream.name) {
            Some(p) => p,
            None => {
                self.discover().await?;
                self.plan(&stream.name)
                    .ok_or_else(|| Error::Internal(format!("stream {} vanished after discovery", stream.name)))?
            }
        };
        // The key range stored with the partition (a resumed run reads the
        // partitions its job started with), else the one discovery cut.
        let stored = |i: usize| -> Option<Option<i128>> {
            match partition.bounds.get(i)? {
                serde_json::Value::Null => Some(None),
                v => v.as_str()?.parse().ok().map(Some),
            }
        };
        let range = match (stored(0), stored(1)) {
            (Some(lo), Some(hi)) => (lo, hi),
            _ => partition
                .id
                .rsplit(':')
                .next()
                .and_then(|i| i.parse::<usize>().ok())
                .and_then(|i| plan.ranges.get(i).copied())
                .ok_or_else(|| Error::Internal(format!("unknown partition {}", partition.id)))?,
        };
        let mut conn = connect(&self.opts, &self.target, None).await?;
        conn.query_drop(
            "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ; START TRANSACTION WITH CONSISTENT SNAPSHOT",
        )
        .await
        .map_err(|e| db_error(&self.target, e))?;
        let reader = PartitionReader {
            range,
            plan: &plan,
            stream,
            partition: partition.id.clone(),
            schema: stream.schema.clone(),
            by: "mysql".into(),
            target: &self.target,
        };
        let result = reader.read(&mut conn, &ctx).await;
        // After an error or a cancel rows may still be in flight: quit
        // without draining them (the server ends the snapshot with the session).
        if result.is_ok() && !ctx.cancel.is_cancelled() {
            let _ = conn.query_drop("COMMIT").await;
        }
        let _ = conn.disconnect().await;
        result
    }
}

struct PartitionReader<'a> {
    /// The range `[lo, hi)` of the split column of the partition.
    range: (Option<i128>, Option<i128>),
    plan: &'a Plan,
    stream: &'a StreamSpec,
    partition: Arc<str>,
    schema: SchemaRef,
    by: Arc<str>,
    target: &'a str,
}

impl PartitionReader<'_> {
    /// The `SELECT` for the partition, after the resume cursor; and the
    /// rows to skip first (keyless reads).
    fn sql(&self, resume: Option<&Position>) -> Result<(String, u64)> {
        let plan = self.plan;
        let mut conds = Vec::new();
        let mut skip = 0;
        let bad_cursor = |c: &serde_json::Value| {
            Error::config(
                "checkpoint",
                format!(
                    "cursor {c} of partition {} does not fit table `{}`; reset the checkpoint",
                    self.partition, plan.origin
                ),
            )
        };
        if let Some(s) = plan.split {
            let col = quote_ident(&plan.columns[s]);
            let (lo, hi) = self.range;
            if let Some(lo) = lo {
                conds.push(format!("{col} >= {lo}"));
            }
            if let Some(hi) = hi {
                conds.push(format!("{col} < {hi}"));
            }
        }
        let order = match &plan.key {
            KeyPlan::IntRange(k) => {
                let col = quote_ident(&plan.columns[*k]);
                if let Some(p) = resume {
                    let after = p
                        .cursor
                        .get("after")
                        .and_then(|v| v.as_str())
                        .and_then(|v| v.parse::<i128>().ok())
                        .ok_or_else(|| bad_cursor(&p.cursor))?;
                    conds.push(format!("{col} > {after}"));
                }
                col
            }
            KeyPlan::Ordered(cols) => {
                let names: Vec<String> = cols.iter().map(|(i, _)| quote_ident(&plan.columns[*i])).collect();
                if let Some(p) = resume {
                    let values = p
                        .cursor
                        .get("after_hex")
                        .and_then(|v| v.as_array())
                        .filter(|v| v.len() == cols.len())
                        .ok_or_else(|| bad_cursor(&p.cursor))?;
                    let mut lits = Vec::new();
                    for ((_, lit), v) in cols.iter().zip(values) {
                        let h = v.as_str().ok_or_else(|| bad_cursor(&p.cursor))?;
                        let raw = unhex(h).ok_or_else(|| bad_cursor(&p.cursor))?;
                        lits.push(match lit {
                            Literal::Number => String::from_utf8(raw).map_err(|_| bad_cursor(&p.cursor))?,
                            // The column's collation decides the comparison, as in its index.
                            Literal::Text => format!("_utf8mb4 X'{h}'"),
                            Literal::Bytes => format!("X'{h}'"),
                        });
                    }
                    // MariaDB does not turn a row comparison into an index
                    // range; the bound on the first column lets it seek.
                    conds.push(format!("{} >= {}", names[0], lits[0]));
                    conds.push(format!("({}) > ({})", names.join(", "), lits.join(", ")));
                }
                names.join(", ")
            }
            KeyPlan::None => {
                skip = resume.map_or(0, |p| p.rows);
                String::new()
            }
        };
        let mut sql = plan.select.clone();
        if !conds.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conds.join(" AND "));
        }
        if !order.is_empty() {
            sql.push_str(" ORDER BY ");
            sql.push_str(&order);
        }
        Ok((sql, skip))
    }

    /// The value of column `i` of `row` as the text protocol sends it.
    fn text<'r>(&self, row: &'r [Option<Value>], i: usize) -> Option<std::borrow::Cow<'r, [u8]>> {
        let kind = self.plan.kinds.get(i).copied().unwrap_or(Kind::Utf8);
        row.get(i)?.as_ref().and_then(|v| value_text(kind, v))
    }

    /// The cursor after `row`.
    fn cursor(&self, row: &[Option<Value>], n: u64) -> serde_json::Value {
        match &self.plan.key {
            KeyPlan::IntRange(k) => match self.text(row, *k) {
                Some(b) => serde_json::json!({ "after": String::from_utf8_lossy(&b) }),
                None => serde_json::json!({ "row": n }),
            },
            KeyPlan::Ordered(cols) => {
                let values: Vec<String> = cols
                    .iter()
                    .map(|(i, _)| hex(&self.text(row, *i).unwrap_or_default()))
                    .collect();
                serde_json::json!({ "after_hex": values })
            }
            KeyPlan::None => serde_json::json!({ "row": n }),
        }
    }

    /// `id = 5` for rejections: the row's primary key, or its number.
    fn describe_key(&self, row: &[Option<Value>], n: u64) -> String {
        let cols: Vec<usize> = match &self.plan.key {
            KeyPlan::IntRange(k) => vec![*k],
            KeyPlan::Ordered(cols) => cols.iter().map(|(i, _)| *i).collect(),
            KeyPlan::None => return format!("row {n}"),
        };
        cols.iter()
            .map(|i| {
                let v = self
                    .text(row, *i)
                    .map_or("NULL".into(), |b| String::from_utf8_lossy(&b).into_owned());
                format!("{} = {v}", self.plan.columns[*i])
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    async fn read(&self, conn: &mut Conn, ctx: &ReadContext) -> Result<()> {
        let plan = self.plan;
        let (sql, skip) = self.sql(ctx.resume.as_ref())?;
        let fail = |e: mysql_async::Error| {
            let target = format!("{} ({})", self.target, plan.origin);
            match db_error(self.target, e) {
                e @ Error::Retryable { .. } => Error::retryable(target, e.to_string()),
                e => Error::connection(target, e.to_string()),
            }
        };
        // Tables are read over the binary protocol: numbers, dates and
        // times arrive as numbers, without the server printing them and
        // sluice parsing them back. A user's query keeps the text protocol,
        // which takes any statement.
        if plan.binary {
            let mut result = conn.exec_iter(sql, ()).await.map_err(fail)?;
            match result.stream::<Row>().await.map_err(fail)? {
                Some(rows) => self.consume(rows, skip, ctx, &fail).await,
                None => Ok(()),
            }
        } else {
            let mut result = conn.query_iter(sql).await.map_err(fail)?;
            match result.stream::<Row>().await.map_err(fail)? {
                Some(rows) => self.consume(rows, skip, ctx, &fail).await,
                None => Ok(()),
            }
        }
    }

    /// Turns the rows of the partition's `SELECT` into batches, skipping
    /// the first `skip` (keyless resumes).
    async fn consume<S>(
        &self,
        mut rows: S,
        mut skip: u64,
        ctx: &ReadContext,
        fail: &impl Fn(mysql_async::Error) -> Error,
    ) -> Result<()>
    where
        S: futures::Stream<Item = std::result::Result<Row, mysql_async::Error>> + Unpin,
    {
        let plan = self.plan;
        let mut builders: Vec<Builder> = plan
            .kinds
            .iter()
            .zip(self.schema.fields())
            .map(|(k, f)| Builder::new(*k, f.data_type()))
            .collect();
        let mut n = ctx.resume.as_ref().map_or(0, |p| p.rows);
        let mut lines: Vec<u64> = Vec::new();
        let mut batch_bytes = 0usize;
        let mut zero_dates = vec![0u64; plan.kinds.len()];
        let mut last: Option<Vec<Option<Value>>> = None;
        let mut sent_any = false;
        let mut native: Vec<Option<Cell<'static>>> = Vec::with_capacity(plan.kinds.len());
        while let Some(row) = rows.next().await {
            let mut values = row.map_err(fail)?.unwrap_raw();
            if skip > 0 {
                skip -= 1;
                continue;
            }
            n += 1;
            // Binary numbers, dates and times become cells here; one its
            // kind does not take as it is goes through its text, like the
            // text protocol's.
            native.clear();
            for (c, v) in values.iter_mut().enumerate() {
                let kind = plan.kinds.get(c).copied().unwrap_or(Kind::Utf8);
                let mut cell = None;
                if let Some(x) = v.as_mut().filter(|x| !matches!(x, Value::NULL | Value::Bytes(_))) {
                    cell = binary_cell(kind, x);
                    if cell.is_none() {
                        *x = Value::Bytes(value_text(kind, x).map(|t| t.into_owned()).unwrap_or_default());
                    }
                }
                native.push(cell);
            }
            let mut refused = None;
            {
                // Cells borrow from `values`; nothing is appended until all parsed.
                let mut row_cells: Vec<Cell<'_>> = Vec::with_capacity(builders.len());
                for (c, v) in values.iter().enumerate() {
                    let kind = plan.kinds.get(c).copied().unwrap_or(Kind::Utf8);
                    let cell = match (native.get(c).copied().flatten(), v) {
                        (Some(cell), _) => {
                            batch_bytes += 8;
                            Ok(cell)
                        }
                        (None, None | Some(Value::NULL)) => Ok(Cell::Null),
                        (None, Some(Value::Bytes(b))) => {
                            batch_bytes += b.len();
                            parse(kind, b)
                        }
                        (None, Some(x)) => Err(Fail::Bad(format!("unexpected value {x:?}"))),
                    };
                    match cell {
                        Ok(cell) => row_cells.push(cell),
                        Err(Fail::ZeroDate) if plan.zero_dates == ZeroDates::Null => {
                            zero_dates[c] += 1;
                            row_cells.push(Cell::Null);
                        }
                        Err(f) => {
                            let why = match f {
                                Fail::ZeroDate => {
                                    "zero date, which no date type holds (zero_dates = \"reject\")".into()
                                }
                                Fail::Bad(m) => m,
                            };
                            refused = Some(format!(
                                "column `{}` of `{}`: {why} ({})",
                                plan.columns.get(c).map_or("?", |s| s.as_str()),
                                plan.origin,
                                self.describe_key(&values, n)
                            ));
                            break;
                        }
                    }
                }
                if refused.is_none() {
                    if row_cells.len() != builders.len() {
                        return Err(Error::Internal(format!(
                            "{}: row has {} columns, expected {}",
                            plan.origin,
                            row_cells.len(),
                            builders.len()
                        )));
                    }
                    for (b, cell) in builders.iter_mut().zip(row_cells.drain(..)) {
                        b.push(cell);
                    }
                    lines.push(n);
                }
            }
            if let Some(reason) = refused {
                ctx.out
                    .send(SourceEvent::Reject(Rejection {
                        stream: self.stream.name.clone(),
                        stage: Stage::Source,
                        by: self.by.clone(),
                        origin: plan.origin.clone(),
                        line: Some(n),
                        reason,
                        raw: None,
                        record: None,
                    }))
                    .await
                    .map_err(|_| Error::Interrupted)?;
            }
            last = Some(values);
            if lines.len() >= ctx.limits.rows || batch_bytes >= ctx.limits.bytes {
                let cursor = last.as_deref().map_or(serde_json::Value::Null, |r| self.cursor(r, n));
                self.send(ctx, &mut builders, &mut lines, cursor, n, batch_bytes)
                    .await?;
                sent_any = true;
                batch_bytes = 0;
                if ctx.cancel.is_cancelled() {
                    break;
                }
            }
        }
        drop(rows);
        if !lines.is_empty() || !sent_any {
            let cursor = match last.as_deref() {
                Some(r) => self.cursor(r, n),
                None => match &ctx.resume {
                    Some(p) => p.cursor.clone(),
                    None => serde_json::json!({ "row": n }),
                },
            };
            self.send(ctx, &mut builders, &mut lines, cursor, n, batch_bytes)
                .await?;
        }
        for (c, count) in zero_dates.iter().enumerate().filter(|(_, n)| **n > 0) {
            tracing::warn!(
                table = %plan.origin,
                column = %plan.columns[c],
                count,
                "zero dates read as NULL (set zero_dates = \"reject\" to refuse those rows)"
            );
        }
        Ok(())
    }

    async fn send(
        &self,
        ctx: &ReadContext,
        builders: &mut [Builder],
        lines: &mut Vec<u64>,
        cursor: serde_json::Value,
        n: u64,
        bytes: usize,
    ) -> Result<()> {
        let arrays = builders
            .iter_mut()
            .map(|b| b.finish())
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let data = RecordBatch::try_new(self.schema.clone(), arrays)?;
        let mut batch = Batch::new(self.stream.name.clone(), self.plan.origin.clone(), data);
        batch.lines = Some(Arc::new(UInt64Array::from(std::mem::take(lines))));
        batch.position = Some(Position {
            partition: self.partition.clone(),
            cursor,
            rows: n,
        });
        ctx.out
            .send(SourceEvent::Batch(batch))
            .await
            .map_err(|_| Error::Interrupted)?;
        ctx.out
            .send(SourceEvent::Progress { bytes: bytes as u64 })
            .await
            .map_err(|_| Error::Interrupted)
    }
}
