//! The PostgreSQL source: tables or a query, read with binary `COPY` in
//! parallel partitions that all see one exported snapshot.
//!
//! The first read exports a snapshot from a transaction kept open for the
//! life of the source; every partition reader imports it with
//! `SET TRANSACTION SNAPSHOT`, so a table read in eight key ranges, and every
//! table of a database, is one consistent picture of the data.
//!
//! A table is read in one partition per 250,000 estimated rows, at most
//! eight and one per core, or `partitions` (see [`crate::partitions`], shared with the MySQL
//! source): ranges of its primary key's first column when that is an
//! integer (`id`, or `(film_id, actor_id)`), else ranges of heap pages
//! (`ctid`).
//!
//! Tables with a primary key are read in key order and their positions are
//! the last key read, so a resumed partition (after a crash, or a
//! reconnection inside a run) starts right after it. Other tables and
//! queries resume by skipping the rows already read, which is exact when the
//! data did not change in between. A resumed read takes a new snapshot.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow::array::{BooleanArray, RecordBatch};
use arrow::datatypes::{Field, Schema, SchemaRef};
use async_trait::async_trait;
use bytes::{Buf, BytesMut};
use futures::StreamExt;
use sluice_core::dbmeta::{ColumnMeta, ForeignKeyMeta, IndexMeta, Semantic, TableMeta};
use sluice_core::{
    BOOKKEEPING_TABLES, Batch, Error, PartitionSpec, PayloadFormat, Position, ReadContext, Rejection, Result, Source,
    SourceEvent, Stage, StreamSpec,
};
use tokio_postgres::Client;

use super::config::{PostgresSourceConfig, redact};
use super::decode::{Decode, TupleDecoder};
use super::passthrough;
use super::fidelity;
use super::types::{PgColumn, TypeCache, ident, literal, qualified};
use super::{ENUM_LABELS, connect, get, pg_error};

/// Bytes gathered from the server before decoding them.
const DECODE_CHUNK: usize = 256 * 1024;

/// Reads PostgreSQL tables or a query.
pub struct PostgresSource {
    cfg: PostgresSourceConfig,
    plans: Mutex<HashMap<String, Arc<StreamPlan>>>,
    /// The exporting transaction (kept open) and its snapshot name.
    snapshot: tokio::sync::Mutex<Option<(Client, String)>>,
}

/// How one stream is read.
#[derive(Debug)]
struct StreamPlan {
    /// `SELECT` list, with `::text` casts for types read as text.
    select: String,
    /// Qualified table or parenthesized query.
    from: String,
    columns: Vec<PgColumn>,
    /// The primary key: read in its order, resumed after its last value.
    /// Empty for keyless tables and queries.
    key: Vec<String>,
    location: Arc<str>,
    /// The encoding rows can be handed over in undecoded, when every column
    /// has one that another server reads as it is.
    passthrough: Option<PayloadFormat>,
}

impl PostgresSource {
    pub fn new(cfg: PostgresSourceConfig) -> Result<Self> {
        if cfg.query.is_some() && (cfg.table.is_some() || !cfg.tables.is_empty()) {
            return Err(Error::config(
                "source.query",
                "set either query or table/tables, not both",
            ));
        }
        if cfg.partitions == Some(0) {
            return Err(Error::config("source.partitions", "partitions must be at least 1"));
        }
        Ok(PostgresSource {
            cfg,
            plans: Mutex::new(HashMap::new()),
            snapshot: tokio::sync::Mutex::new(None),
        })
    }

    /// How each column of a discovered stream decodes, and whether the
    /// type has no binary form sluice reads (read as text).
    pub(super) fn decoding(&self, stream: &str) -> Option<Vec<(String, Decode, bool)>> {
        let plans = self.plans.lock().ok()?;
        let plan = plans.get(stream)?;
        Some(plan.columns.iter().map(|c| (c.name.clone(), c.decode.clone(), c.as_text)).collect())
    }

    pub(super) fn schema_name(&self) -> &str {
        self.cfg.schema.as_deref().unwrap_or("public")
    }

    async fn table_names(&self, client: &Client) -> Result<Vec<String>> {
        let schema = self.schema_name();
        // The first column of each row of a catalog query about `schema`.
        let names = |sql: &'static str| async move {
            let rows = client.query(sql, &[&schema]).await;
            let rows = rows.map_err(|e| pg_error(&self.cfg.url, e))?;
            rows.iter().map(|r| get(r, 0, "a table name (pg_class.relname)")).collect::<Result<Vec<String>>>()
        };
        let all = names(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY 1",
        )
        .await?;
        let wanted: Vec<String> = self.cfg.table.iter().chain(&self.cfg.tables).cloned().collect();
        if wanted.is_empty() {
            // One schema is read; tables elsewhere are named, not silently left behind.
            let others = names(
                "SELECT n.nspname::text || ' (' || count(*) || ')' FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname <> $1 AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') \
                 AND n.nspname NOT LIKE 'pg_temp_%' AND n.nspname NOT LIKE 'pg_toast_temp_%' \
                 AND c.relkind IN ('r', 'p') AND NOT c.relispartition GROUP BY n.nspname ORDER BY 1",
            )
            .await?;
            if !others.is_empty() {
                tracing::warn!(
                    "only schema `{schema}` of {} is read; other schemas hold tables: {} (set schema = \"…\" on \
                     the source, or ?schema=… on the URL, to copy one of them)",
                    redact(&self.cfg.url),
                    others.join(", ")
                );
            }
            return Ok(all
                .into_iter()
                .filter(|t| !self.cfg.exclude.contains(t) && !BOOKKEEPING_TABLES.contains(&t.as_str()))
                .collect());
        }
        for w in &wanted {
            if !all.contains(w) {
                return Err(Error::config(
                    "source.tables",
                    format!(
                        "table `{w}` is not in schema `{schema}` of {}; tables there: {}",
                        redact(&self.cfg.url),
                        if all.is_empty() { "none".into() } else { all.join(", ") }
                    ),
                ));
            }
        }
        Ok(wanted)
    }

    async fn plan_table(&self, client: &Client, types: &mut TypeCache, table: &str) -> Result<StreamSpec> {
        let err = |e| pg_error(&self.cfg.url, e);
        let schema = self.schema_name();
        let rel = client
            .query_one(
                "SELECT c.oid, c.reltuples::float8, c.relpages::int8 FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2",
                &[&schema, &table],
            )
            .await
            .map_err(err)?;
        let what = |field: &str| format!("pg_class.{field} of table {}", qualified(schema, table));
        let oid: u32 = get(&rel, 0, &what("oid"))?;
        let reltuples: f64 = get(&rel, 1, &what("reltuples"))?;
        let relpages: i64 = get(&rel, 2, &what("relpages"))?;
        let cols = client
            .query(
                "SELECT a.attname::text, a.atttypid, a.atttypmod, format_type(a.atttypid, a.atttypmod), \
                 a.attnotnull, coalesce(pg_get_expr(d.adbin, d.adrelid), '') LIKE 'nextval(%' \
                 OR a.attidentity <> '' \
                 FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
                 WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                &[&oid],
            )
            .await
            .map_err(err)?;
        let mut columns = Vec::new();
        let mut serial = Vec::new();
        for c in &cols {
            let name: String = get(c, 0, &what("column name (pg_attribute.attname)"))?;
            let attr = |field: &str| format!("pg_attribute.{field} of column {name} of table {}", qualified(schema, table));
            let (oid, typmod): (u32, i32) = (get(c, 1, &attr("atttypid"))?, get(c, 2, &attr("atttypmod"))?);
            let format: String = get(c, 3, &attr("format_type"))?;
            let not_null: bool = get(c, 4, &attr("attnotnull"))?;
            let col = column(client, types, &name, oid, typmod, &format, !not_null).await?;
            if get::<bool>(c, 5, &attr("default or identity"))? {
                serial.push(name);
            }
            columns.push(col);
        }
        let primary_key: Vec<String> = client
            .query(
                "SELECT a.attname::text FROM pg_index i \
                 JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY k(num, ord) ON true \
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.num \
                 WHERE i.indrelid = $1 AND i.indisprimary ORDER BY k.ord",
                &[&oid],
            )
            .await
            .map_err(err)?
            .iter()
            .map(|r| get(r, 0, &what("primary key column")))
            .collect::<Result<_>>()?;
        let indexes = client
            .query(
                "SELECT ic.relname::text, i.indisunique, \
                 array(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(num, ord) \
                       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.num ORDER BY k.ord), \
                 i.indnkeyatts = array_length(array_remove(i.indkey::int2[], 0::int2), 1) AND i.indexprs IS NULL \
                 AND i.indpred IS NULL \
                 FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid \
                 WHERE i.indrelid = $1 AND NOT i.indisprimary ORDER BY 1",
                &[&oid],
            )
            .await
            .map_err(err)?;
        let mut index_meta = Vec::new();
        for r in &indexes {
            let name: String = get(r, 0, &what("index name"))?;
            let index = |field: &str| format!("{field} of index {name} of table {}", qualified(schema, table));
            if !get::<bool>(r, 3, &index("plain columns"))? {
                tracing::warn!(table, index = %name, "expression or partial index is not carried over");
                continue;
            }
            index_meta.push(IndexMeta {
                unique: get(r, 1, &index("pg_index.indisunique"))?,
                columns: get(r, 2, &index("columns"))?,
                name,
            });
        }
        let fks = client
            .query(
                "SELECT con.conname::text, \
                 array(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(num, ord) \
                       JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num ORDER BY k.ord), \
                 cf.relname::text, \
                 array(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(num, ord) \
                       JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.num ORDER BY k.ord), \
                 con.confdeltype::text, con.confupdtype::text \
                 FROM pg_constraint con JOIN pg_class cf ON cf.oid = con.confrelid \
                 WHERE con.conrelid = $1 AND con.contype = 'f' ORDER BY 1",
                &[&oid],
            )
            .await
            .map_err(err)?;
        let mut foreign_keys: Vec<ForeignKeyMeta> = fks
            .iter()
            .map(|r| {
                let fk = |field: &str| format!("{field} of a foreign key of table {}", qualified(schema, table));
                Ok(ForeignKeyMeta {
                    name: get(r, 0, &fk("name"))?,
                    columns: get(r, 1, &fk("columns"))?,
                    ref_table: get(r, 2, &fk("referenced table"))?,
                    ref_columns: get(r, 3, &fk("referenced columns"))?,
                    on_delete: ForeignKeyMeta::action(&get::<String>(r, 4, &fk("confdeltype"))?),
                    on_update: ForeignKeyMeta::action(&get::<String>(r, 5, &fk("confupdtype"))?),
                })
            })
            .collect::<Result<_>>()?;
        let partitioned =
            fidelity::partition_foreign_keys(client, &self.cfg.url, oid, table, &foreign_keys).await?;
        foreign_keys.extend(partitioned);
        let extras = fidelity::column_extras(client, &self.cfg.url, oid).await?;
        let estimated_rows = (reltuples >= 0.0).then_some(reltuples as u64);
        let meta = TableMeta {
            dialect: "postgres".into(),
            schema: schema.into(),
            table: table.into(),
            primary_key: primary_key.clone(),
            indexes: index_meta,
            foreign_keys,
            serial_columns: serial,
            estimated_rows,
        };
        // Ranges are cut on the key's first column when it is an integer.
        let int_key = primary_key.first().and_then(|k| {
            columns
                .iter()
                .find(|c| &c.name == k)
                .filter(|c| matches!(c.decode, Decode::Int16 | Decode::Int32 | Decode::Int64))
                .map(|c| c.name.clone())
        });
        let from = qualified(schema, table);
        let n = match &self.cfg.cursor {
            Some(_) => 1,
            None => crate::partitions::count(self.cfg.partitions, estimated_rows),
        };
        let ranges = match (n, &int_key) {
            (1, _) => vec![None],
            (n, Some(k)) => {
                let r = client
                    .query_one(
                        &format!("SELECT min({0})::int8, max({0})::int8 FROM {from}", ident(k)),
                        &[],
                    )
                    .await
                    .map_err(err)?;
                let bound = |b: &str| format!("{b}({k}) of table {from}");
                match (
                    get::<Option<i64>>(&r, 0, &bound("min"))?,
                    get::<Option<i64>>(&r, 1, &bound("max"))?,
                ) {
                    (Some(lo), Some(hi)) => key_ranges(&ident(k), lo, hi, n),
                    _ => vec![None],
                }
            }
            (n, None) => split_pages(relpages, n),
        };
        let spec = self.stream_spec(table, &from, columns, meta, ranges, primary_key, estimated_rows);
        Ok(StreamSpec {
            schema: fidelity::annotate(&spec.schema, &extras),
            ..spec
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn stream_spec(
        &self,
        name: &str,
        from: &str,
        columns: Vec<PgColumn>,
        meta: TableMeta,
        ranges: Vec<Option<String>>,
        key: Vec<String>,
        estimated_rows: Option<u64>,
    ) -> StreamSpec {
        let fields: Vec<Field> = columns
            .iter()
            .map(|c| {
                let mut md = c.meta.to_metadata();
                md.extend(super::spatial::column_meta(&c.meta, &c.decode));
                if let Some(l) = c.labels() {
                    md.insert(ENUM_LABELS.into(), l);
                }
                Field::new(&c.name, c.decode.arrow_type(), c.nullable).with_metadata(md)
            })
            .collect();
        let schema: SchemaRef = Arc::new(Schema::new(fields).with_metadata(meta.to_metadata()));
        let select = columns
            .iter()
            .map(|c| {
                if c.as_text {
                    format!("{}::text", ident(&c.name))
                } else {
                    ident(&c.name)
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        let per = estimated_rows.map(|r| r / ranges.len() as u64);
        let count = ranges.len();
        let partitions: Vec<PartitionSpec> = ranges
            .into_iter()
            .enumerate()
            .map(|(i, range)| PartitionSpec {
                id: if count == 1 {
                    name.into()
                } else {
                    format!("{name}#{i}").into()
                },
                bounds: range.map_or(serde_json::Value::Null, serde_json::Value::String),
                bytes: None,
                rows: per,
            })
            .collect();
        let plan = StreamPlan {
            select,
            from: from.to_string(),
            passthrough: passthrough::offer(&columns),
            columns,
            key,
            location: format!("{} {name}", redact(&self.cfg.url)).into(),
        };
        if let Ok(mut plans) = self.plans.lock() {
            plans.insert(name.to_string(), Arc::new(plan));
        }
        StreamSpec {
            name: name.into(),
            schema,
            partitions,
        }
    }

    async fn plan_query(&self, client: &Client, types: &mut TypeCache, query: &str) -> Result<StreamSpec> {
        let err = |e| pg_error(&self.cfg.url, e);
        let stmt = client.prepare(query).await.map_err(|e| {
            Error::config(
                "source.query",
                format!("the server refused the query: {}", super::server_message(&e)),
            )
        })?;
        let mut columns = Vec::new();
        for c in stmt.columns() {
            let r = client
                .query_one("SELECT format_type($1, NULL)", &[&c.type_().oid()])
                .await
                .map_err(err)?;
            let format: String = get(&r, 0, &format!("format_type of column {} of the query", c.name()))?;
            columns.push(
                column(client, types, c.name(), c.type_().oid(), -1, &format, true).await?,
            );
        }
        let name = self.cfg.stream.clone().unwrap_or_else(|| "query".into());
        let from = format!("({query}) AS q");
        let meta = TableMeta {
            dialect: "postgres".into(),
            table: name.clone(),
            ..Default::default()
        };
        Ok(self.stream_spec(&name, &from, columns, meta, vec![None], Vec::new(), None))
    }

    /// The exported snapshot, created on first use and again when the
    /// session holding it was lost (the server restarted).
    async fn snapshot(&self) -> Result<String> {
        if let Some(given) = &self.cfg.snapshot {
            return Ok(given.clone());
        }
        let mut held = self.snapshot.lock().await;
        if let Some((client, id)) = held.as_ref() {
            if !client.is_closed() {
                return Ok(id.clone());
            }
            tracing::warn!(
                source = %redact(&self.cfg.url),
                "the session holding the snapshot was lost; partitions read from now on see a new snapshot"
            );
        }
        let client = connect(&self.cfg.url).await?;
        client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(|e| pg_error(&self.cfg.url, e))?;
        let r = client
            .query_one("SELECT pg_export_snapshot()", &[])
            .await
            .map_err(|e| pg_error(&self.cfg.url, e))?;
        let id: String = get(&r, 0, "the exported snapshot (pg_export_snapshot)")?;
        *held = Some((client, id.clone()));
        Ok(id)
    }
}

/// One column as the source reads it.
async fn column(
    client: &Client,
    types: &mut TypeCache,
    name: &str,
    oid: u32,
    typmod: i32,
    format: &str,
    nullable: bool,
) -> Result<PgColumn> {
    let r = types.resolve(client, oid, typmod, format).await?;
    let as_text = r.decode.is_none();
    let labels = (!r.labels.is_empty()).then(|| r.labels.clone());
    Ok(PgColumn {
        elem: r.elem,
        name: name.to_string(),
        decode: r.decode.unwrap_or(Decode::Text),
        as_text,
        nullable,
        meta: ColumnMeta {
            dialect: Some("postgres".into()),
            db_type: Some(r.format),
            semantic: r.semantic,
        },
        enum_labels: labels,
    })
}

impl PgColumn {
    fn labels(&self) -> Option<String> {
        self.enum_labels
            .as_ref()
            .filter(|_| self.meta.semantic == Some(Semantic::Enum))
            .and_then(|l| serde_json::to_string(l).ok())
    }
}

/// `n` ranges of the integer column `key` over `[lo, hi]`, as `WHERE`
/// clauses, open at both ends so rows added since the bounds were read
/// still fall in one.
fn key_ranges(key: &str, lo: i64, hi: i64, n: usize) -> Vec<Option<String>> {
    crate::partitions::int_ranges(lo.into(), hi.into(), n)
        .into_iter()
        .map(|range| match range {
            (None, Some(b)) => Some(format!("{key} < {b}")),
            (Some(a), Some(b)) => Some(format!("{key} >= {a} AND {key} < {b}")),
            (Some(a), None) => Some(format!("{key} >= {a}")),
            (None, None) => None,
        })
        .collect()
}

/// The `WHERE` clauses that start a keyed read after `after`, the key's
/// last value (one column) or values (several, compared as a row). `None`
/// when the cursor does not fit the key.
fn after_key(key: &[String], after: &serde_json::Value) -> Option<Vec<String>> {
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Null => None,
        v => Some(v.to_string()),
    };
    match (key, after) {
        ([k], v) if !v.is_array() => Some(vec![format!("{} > {}", ident(k), literal(&text(v)?))]),
        (cols, serde_json::Value::Array(values)) if values.len() == cols.len() && cols.len() > 1 => {
            let lits: Vec<String> = values.iter().map(|v| text(v).map(|t| literal(&t))).collect::<Option<_>>()?;
            let names: Vec<String> = cols.iter().map(|k| ident(k)).collect();
            // The bound on the first column alone lets a page range be
            // skipped quickly; the row comparison is the exact one.
            Some(vec![
                format!("{} >= {}", names[0], lits[0]),
                format!("({}) > ({})", names.join(", "), lits.join(", ")),
            ])
        }
        _ => None,
    }
}

/// `n` ranges of heap pages (`ctid`), the last one open-ended.
fn split_pages(pages: i64, n: usize) -> Vec<Option<String>> {
    if pages < n as i64 {
        return vec![None];
    }
    let bound = |i: usize| pages * i as i64 / n as i64;
    (0..n)
        .map(|i| {
            Some(match i {
                0 => format!("ctid < '({},0)'::tid", bound(1)),
                i if i == n - 1 => format!("ctid >= '({},0)'::tid", bound(i)),
                i => format!("ctid >= '({},0)'::tid AND ctid < '({},0)'::tid", bound(i), bound(i + 1)),
            })
        })
        .collect()
}

#[async_trait]
impl Source for PostgresSource {
    fn name(&self) -> &str {
        "postgres"
    }

    async fn discover(&self) -> Result<Vec<StreamSpec>> {
        let client = connect(&self.cfg.url).await?;
        let mut types = TypeCache::new(&self.cfg.url);
        if let Some(q) = &self.cfg.query {
            return Ok(vec![self.plan_query(&client, &mut types, q).await?]);
        }
        let mut specs = Vec::new();
        for t in self.table_names(&client).await? {
            specs.push(self.plan_table(&client, &mut types, &t).await?);
        }
        Ok(specs)
    }

    fn incremental(&self) -> bool {
        self.cfg.cursor.is_some()
    }

    fn payload_format(&self, stream: &StreamSpec) -> Option<PayloadFormat> {
        let plans = self.plans.lock().ok()?;
        plans.get(stream.name.as_ref())?.passthrough.clone()
    }

    async fn not_copied(&self) -> Result<Vec<sluice_core::NotCopied>> {
        if self.cfg.query.is_some() {
            return Ok(Vec::new());
        }
        let client = connect(&self.cfg.url).await?;
        let tables: Vec<String> = self.cfg.table.iter().chain(&self.cfg.tables).cloned().collect();
        let whole = tables.is_empty();
        fidelity::not_copied(&client, &self.cfg.url, self.schema_name(), &tables, whole).await
    }

    async fn check(&self, streams: &[StreamSpec]) -> Result<Vec<String>> {
        let client = connect(&self.cfg.url).await?;
        let err = |e| pg_error(&self.cfg.url, e);
        let r = client.query_one("SHOW server_version", &[]).await.map_err(err)?;
        let version: String = get(&r, 0, "server_version")?;
        let mut lines = vec![format!("connected to {} (PostgreSQL {version})", redact(&self.cfg.url))];
        if self.cfg.query.is_some() {
            lines.push("query: the server accepted it".into());
            return Ok(lines);
        }
        for s in streams {
            let target = qualified(self.schema_name(), &s.name);
            let r = client
                .query_one("SELECT has_table_privilege($1, 'SELECT')", &[&target])
                .await
                .map_err(err)?;
            let can: bool = get(&r, 0, &format!("has_table_privilege on {target}"))?;
            if !can {
                return Err(Error::config(
                    "source",
                    format!(
                        "{}: the user may not read {target}; GRANT SELECT ON {target}",
                        redact(&self.cfg.url)
                    ),
                ));
            }
            lines.push(format!("{target}: readable, {} partition(s)", s.partitions.len()));
        }
        Ok(lines)
    }

    async fn read(&self, stream: &StreamSpec, partition: &PartitionSpec, ctx: ReadContext) -> Result<()> {
        let plan = self
            .plans
            .lock()
            .ok()
            .and_then(|p| p.get(stream.name.as_ref()).cloned())
            .ok_or_else(|| Error::Internal(format!("stream `{}` was not discovered", stream.name)))?;
        let snapshot = self.snapshot().await?;
        let client = connect(&self.cfg.url).await?;
        let err = |e| pg_error(&self.cfg.url, e);
        client
            .batch_execute(&format!(
                "SET synchronize_seqscans = off; BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; \
                 SET TRANSACTION SNAPSHOT {}",
                literal(&snapshot)
            ))
            .await
            .map_err(err)?;

        let mut conditions: Vec<String> = partition.bounds.as_str().map(str::to_string).into_iter().collect();
        let mut order = String::new();
        let mut offset = String::new();
        let resumed_rows = ctx.resume.as_ref().map_or(0, |p| p.rows);
        if self.cfg.cursor.is_none() {
            let after = ctx.resume.as_ref().and_then(|p| p.cursor.get("after"));
            if !plan.key.is_empty() {
                if let Some(after) = after {
                    conditions.extend(after_key(&plan.key, after).ok_or_else(|| {
                        Error::config(
                            "checkpoint",
                            format!(
                                "cursor {after} of partition {} does not fit the primary key of {}; \
                                 start again with --fresh",
                                partition.id, plan.location
                            ),
                        )
                    })?);
                }
                let cols: Vec<String> = plan.key.iter().map(|k| ident(k)).collect();
                order = format!(" ORDER BY {}", cols.join(", "));
            } else if resumed_rows > 0 {
                offset = format!(" OFFSET {resumed_rows}");
            }
        }
        if let Some(c) = &self.cfg.cursor {
            let after = ctx
                .resume
                .as_ref()
                .and_then(|p| p.cursor.get("cursor").and_then(|v| v.as_str()).map(str::to_string))
                .or_else(|| self.cfg.cursor_start.clone());
            if let Some(after) = after {
                conditions.push(format!("{} > {}", ident(c), literal(&after)));
            }
            order = format!(" ORDER BY {}", ident(c));
        }
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        let copy = format!(
            "COPY (SELECT {} FROM {}{filter}{order}{offset}) TO STDOUT (FORMAT binary)",
            plan.select, plan.from
        );
        let stream_out = client.copy_out(copy.as_str()).await.map_err(err)?;
        let mut stream_out = std::pin::pin!(stream_out);
        let decodes: Vec<Decode> = plan.columns.iter().map(|c| c.decode.clone()).collect();
        let mut decoder = TupleDecoder::new(&decodes);
        let mut reader = BatchCutter {
            plan: &plan,
            schema: stream.schema.clone(),
            stream: stream.name.clone(),
            partition: partition.id.clone(),
            cursor_column: self.cfg.cursor.clone(),
            rows: resumed_rows,
            last: ctx
                .resume
                .as_ref()
                .map(|p| p.cursor.clone())
                .filter(|c| c.get("after").is_some() || c.get("cursor").is_some()),
            bytes: 0,
        };
        if let Some(format) = ctx.payload.as_ref().filter(|f| plan.passthrough.as_ref() == Some(*f)) {
            let layout = passthrough::Layout {
                format: format.clone(),
                decodes,
                names: plan.columns.iter().map(|c| c.name.clone()).collect(),
                schema: stream.schema.clone(),
                stream: stream.name.clone(),
                origin: plan.location.clone(),
            };
            passthrough::read(stream_out.as_mut(), Arc::new(layout), &mut reader, &ctx, &self.cfg.url).await?;
            if !ctx.cancel.is_cancelled() {
                client.batch_execute("COMMIT").await.map_err(err)?;
            }
            return Ok(());
        }
        let mut buf = BytesMut::new();
        let mut ended = false;
        while !ended {
            if ctx.cancel.is_cancelled() {
                break;
            }
            match stream_out.next().await {
                Some(chunk) => buf.extend_from_slice(&chunk.map_err(err)?),
                None => ended = true,
            }
            if buf.len() < DECODE_CHUNK && !ended {
                continue;
            }
            loop {
                let used = decoder
                    .decode(&buf, ctx.limits.rows.max(1))
                    .map_err(|e| Error::data(plan.location.to_string(), e))?;
                buf.advance(used);
                reader.bytes += used;
                let full = decoder.rows() >= ctx.limits.rows || reader.bytes >= ctx.limits.bytes;
                if full {
                    for ev in reader.cut(&mut decoder)? {
                        ctx.out.send(ev).await.map_err(|_| Error::Interrupted)?;
                    }
                }
                if used == 0 || decoder.finished() || !full {
                    break;
                }
            }
        }
        if ended && (!decoder.finished() || !buf.is_empty()) {
            return Err(Error::data(
                plan.location.to_string(),
                "the server's COPY output ended in the middle of a row",
            ));
        }
        if decoder.rows() > 0 || reader.rows == 0 {
            for ev in reader.cut(&mut decoder)? {
                ctx.out.send(ev).await.map_err(|_| Error::Interrupted)?;
            }
        }
        if !ctx.cancel.is_cancelled() {
            client.batch_execute("COMMIT").await.map_err(err)?;
        }
        Ok(())
    }
}

/// Turns decoded rows into batches with positions, and refused rows into rejections.
pub(super) struct BatchCutter<'a> {
    plan: &'a StreamPlan,
    schema: SchemaRef,
    stream: Arc<str>,
    partition: Arc<str>,
    cursor_column: Option<String>,
    rows: u64,
    bytes: usize,
    /// The cursor after the last row read (keyed and incremental reads).
    last: Option<serde_json::Value>,
}

impl BatchCutter<'_> {
    fn cut(&mut self, decoder: &mut TupleDecoder) -> Result<Vec<SourceEvent>> {
        let (arrays, bad) = decoder.finish_batch();
        self.bytes = 0;
        let data = loose_batch(&self.schema, arrays)?;
        self.advance(data.num_rows() as u64, &data)?;
        let names: Vec<&str> = self.plan.columns.iter().map(|c| c.name.as_str()).collect();
        let (data, refused) = refuse_rows(&self.schema, data, &bad, &names, &self.stream, &self.plan.location)?;
        let mut events: Vec<SourceEvent> = refused.into_iter().map(SourceEvent::Reject).collect();
        let mut batch = Batch::new(self.stream.clone(), self.plan.location.clone(), data);
        batch.position = Some(self.position());
        events.push(SourceEvent::Batch(batch));
        Ok(events)
    }

    /// Counts `rows` more rows read, refused ones included, so that skipping
    /// them on resume lands on the next row; the cursor moves to the last row
    /// of `tail` (decoded rows ending where the `rows` end, in the loose
    /// schema of [`loose_batch`]).
    pub(super) fn advance(&mut self, rows: u64, tail: &RecordBatch) -> Result<()> {
        self.rows += rows;
        // The cursor is the last row read, refused or not, so a batch whose
        // rows were all refused still moves it; NULL (a refused key) keeps
        // the previous one.
        let total = tail.num_rows();
        let cursor = match (&self.cursor_column, &self.plan.key) {
            (Some(c), _) if total > 0 => {
                let i = self.schema.index_of(c)?;
                let col = tail.column(i);
                col.is_valid(total - 1)
                    .then(|| arrow::util::display::array_value_to_string(col, total - 1))
                    .transpose()?
                    .map(|v| serde_json::json!({ "cursor": v }))
            }
            (None, key) if total > 0 && !key.is_empty() => {
                let row = sluice_core::row_json(tail, total - 1);
                let values: Option<Vec<serde_json::Value>> =
                    key.iter().map(|k| row.get(k).filter(|v| !v.is_null()).cloned()).collect();
                match values {
                    Some(mut v) if v.len() == 1 => Some(serde_json::json!({ "after": v.remove(0) })),
                    Some(v) => Some(serde_json::json!({ "after": v })),
                    None => None,
                }
            }
            _ => None,
        };
        if let Some(c) = cursor {
            self.last = Some(c);
        }
        Ok(())
    }

    /// The position after the rows counted so far.
    pub(super) fn position(&self) -> Position {
        let cursor = match (&self.last, &self.cursor_column) {
            (Some(c), _) => c.clone(),
            // Nothing read yet: a keyed or incremental read starts from the beginning.
            (None, Some(_)) => serde_json::json!({}),
            (None, None) if !self.plan.key.is_empty() => serde_json::json!({}),
            (None, None) => serde_json::json!({ "rows": self.rows }),
        };
        Position {
            partition: self.partition.clone(),
            cursor,
            rows: self.rows,
        }
    }

    /// Rows counted so far in the partition.
    pub(super) fn rows(&self) -> u64 {
        self.rows
    }
}

/// Decoded column arrays as a batch with every field nullable: refused rows
/// hold NULLs in place of their bad value.
pub(super) fn loose_batch(schema: &SchemaRef, arrays: Vec<arrow::array::ArrayRef>) -> Result<RecordBatch> {
    let loose = Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
    );
    Ok(RecordBatch::try_new(Arc::new(loose), arrays)?)
}

/// Takes the rows with a value that did not decode (`bad`: row, column,
/// reason) out of `data` (a [`loose_batch`]) as rejections naming the
/// column; the rest in the stream's `schema`.
pub(super) fn refuse_rows(
    schema: &SchemaRef,
    mut data: RecordBatch,
    bad: &[(usize, usize, String)],
    names: &[&str],
    stream: &Arc<str>,
    origin: &Arc<str>,
) -> Result<(RecordBatch, Vec<Rejection>)> {
    let mut refused = Vec::new();
    if !bad.is_empty() {
        let mut keep = vec![true; data.num_rows()];
        for (row, col, reason) in bad {
            if !keep[*row] {
                continue;
            }
            keep[*row] = false;
            refused.push(Rejection {
                stream: stream.clone(),
                stage: Stage::Source,
                by: "postgres".into(),
                origin: origin.clone(),
                line: None,
                reason: format!("column `{}`: {reason}", names.get(*col).copied().unwrap_or("?")),
                raw: None,
                record: Some(sluice_core::row_record(&data, *row)),
            });
        }
        data = arrow::compute::filter_record_batch(&data, &BooleanArray::from(keep))?;
    }
    let data = RecordBatch::try_new(schema.clone(), data.columns().to_vec())?;
    Ok((data, refused))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ranges_cover_everything_without_overlap() {
        let r = key_ranges("id", 1, 100, 4);
        assert_eq!(
            r,
            vec![
                Some("id < 26".to_string()),
                Some("id >= 26 AND id < 51".into()),
                Some("id >= 51 AND id < 76".into()),
                Some("id >= 76".into()),
            ]
        );
        assert_eq!(key_ranges("id", 5, 5, 4), vec![None]);
        assert_eq!(split_pages(2, 4), vec![None]);
        assert_eq!(split_pages(100, 2)[1], Some("ctid >= '(50,0)'::tid".into()));
    }

    #[test]
    fn a_composite_key_resumes_after_its_last_row() {
        let key = vec!["emp_no".to_string(), "from_date".to_string()];
        let after = serde_json::json!([10001, "1986-06-26"]);
        assert_eq!(
            after_key(&key, &after),
            Some(vec![
                "\"emp_no\" >= '10001'".to_string(),
                "(\"emp_no\", \"from_date\") > ('10001', '1986-06-26')".into()
            ])
        );
        assert_eq!(after_key(&key, &serde_json::json!(5)), None);
        assert_eq!(after_key(&key[..1], &serde_json::json!(5)), Some(vec!["\"emp_no\" > '5'".to_string()]));
    }
}
