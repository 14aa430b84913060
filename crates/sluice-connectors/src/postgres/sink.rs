//! The PostgreSQL sink: binary `COPY FROM STDIN` into the table, or into a
//! temporary stage table followed by `INSERT … SELECT` for upserts and for
//! columns whose type has no binary encoder here (the stage holds them as
//! text and the server casts them).
//!
//! Tables are created from the stream's schema (the source's own types when
//! it is PostgreSQL, otherwise the mapping in [`super::types`]); keys,
//! indexes, identity columns and foreign keys are added after the load, when
//! they cost least. When the server refuses a batch for its data (SQLSTATE
//! classes 22 and 23), its rows are staged in `sluice_check` and the table's
//! `NOT NULL` and `CHECK` constraints judged over them in one query; what
//! else the server refuses is isolated by [`crate::refused::isolate`] with
//! rolled-back probes. Refused rows become rejections with the server's
//! message and the rest loads, with a bounded number of statements and locks
//! whatever their number.
//!
//! Exactly once: each batch is one transaction that also stores the batch's
//! source position in `_sluice_checkpoints` (in the sink's schema), and it
//! commits in [`Sink::flush`], after the engine has written the batch's
//! rejected rows to the dead-letter file. After a crash the table and its
//! checkpoint agree, whatever the instant; a resumed run reads from there.
//! The row with an empty partition is the table's job record (see
//! [`crate::ledger`]): written with the table's creation or truncation, it
//! says which job loads the table, whether that job created it (so a
//! resumed run still adds the keys and indexes at the end, and `replace`
//! keeps loading its new table) and, once marked with the end of the load,
//! that the table is complete, so no later run of the pipeline loads it
//! again.
//!
//! Foreign keys wait for the tables they reference. A table's foreign keys
//! are recorded in `_sluice_foreign_keys` in the same transaction that adds
//! its keys and indexes, and every stream that completes adds those whose
//! referenced table now exists. Because the list lives in the destination,
//! a resumed run that skips tables completed before a crash still adds
//! their foreign keys once the tables they reference are loaded.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{BooleanArray, RecordBatch};
use arrow::datatypes::DataType;
use async_trait::async_trait;
use bytes::Bytes;
use futures::SinkExt;
use sluice_core::dbmeta::{ColumnMeta, TableMeta};
use sluice_core::{Batch, Error, Position, Rejection, Result, Sink, SinkConnector, Stage, StreamInfo};
use tokio_postgres::Client;
use tokio_postgres::types::{ToSql, Type};

use super::config::{PostgresSinkConfig, WriteMode, redact};
use super::encode::{Encode, HEADER, TRAILER, encode_rows};
use super::fidelity;
use super::types::{TypeCache, ddl_type, encoder, ident, literal, qualified};
use super::{ENUM_LABELS, connect, get, is_data_error, is_transient, pg_error, server_message};
use crate::ledger::checkpoints::{self, Checkpoints, Dialect, Statement, Value};
use crate::ledger::{self, Action, Clear, Done, Found, JobRecord};
use crate::refused::{self, Trial, Undo};

/// Writes streams into PostgreSQL tables.
#[derive(Clone)]
pub struct PostgresSink {
    pub(super) cfg: PostgresSinkConfig,
    /// The connection the change appliers of every stream share (see
    /// [`super::apply`]).
    pub(super) changes: super::apply::Shared,
}

/// A foreign key to add once the table it references is loaded.
#[derive(Debug, Clone)]
struct PendingFk {
    /// The constraint's name.
    name: String,
    /// The table it goes on, qualified.
    table: String,
    /// `ALTER TABLE … ADD CONSTRAINT …`.
    sql: String,
    /// The referenced table, qualified.
    references: String,
}

/// What the sink will do to the database for one stream.
#[derive(Debug, Clone, Default)]
pub struct TablePlan {
    /// The table rows end up in.
    pub table: String,
    /// The table rows are loaded into (a new table for `replace`).
    pub load_table: String,
    pub exists: bool,
    /// Statements before the load (types, tables).
    pub before: Vec<String>,
    /// Statements after a complete load (swap, keys, indexes, sequences).
    pub after: Vec<String>,
    /// Foreign keys, added once the referenced tables are loaded.
    foreign_keys: Vec<PendingFk>,
    /// Upsert key.
    pub key: Vec<String>,
    /// Conversions worth knowing about.
    pub warnings: Vec<String>,
}

impl TablePlan {
    /// Every statement, in order, for `sluice plan`.
    pub fn statements(&self) -> Vec<String> {
        let mut all = self.before.clone();
        all.extend(self.after.iter().cloned());
        all.extend(self.foreign_keys.iter().map(|f| f.sql.clone()));
        all
    }
}

impl PostgresSink {
    pub fn new(cfg: PostgresSinkConfig) -> Result<Self> {
        cfg.url.parse::<tokio_postgres::Config>().map_err(|e| {
            Error::config(
                "sinks.url",
                format!(
                    "`{}` is not a PostgreSQL URL ({e}); write postgres://user:password@host:port/database",
                    redact(&cfg.url)
                ),
            )
        })?;
        Ok(PostgresSink {
            cfg,
            changes: Default::default(),
        })
    }

    pub(super) fn schema(&self) -> &str {
        self.cfg.schema.as_deref().unwrap_or("public")
    }

    /// The dialect of `_sluice_checkpoints` in the sink's schema.
    pub(super) fn dialect(&self) -> checkpoints::Postgres {
        checkpoints::Postgres {
            schema: self.schema().to_string(),
        }
    }

    /// The tables sluice keeps its own records in, in the sink's schema.
    fn bookkeeping(&self) -> String {
        format!(
            "{}; {}",
            checkpoints::create(&self.dialect()).sql,
            self.foreign_key_table()
        )
    }

    /// `CREATE TABLE IF NOT EXISTS` for `_sluice_foreign_keys`.
    fn foreign_key_table(&self) -> String {
        FOREIGN_KEY_TABLE.replace("{schema}", &ident(self.schema()))
    }

    /// Creates `_sluice_checkpoints`, or brings an older layout to this one,
    /// under an advisory lock (see [`checkpoints`]), and `_sluice_foreign_keys`.
    pub(super) async fn prepare_bookkeeping(&self, client: &Client) -> Result<()> {
        let err = |e| pg_error(&self.cfg.url, e);
        let dialect = self.dialect();
        let url = redact(&self.cfg.url);
        let columns = query(client, &dialect.columns()).await.map_err(err)?;
        if !checkpoints::changes(&dialect, &columns, &url)?.is_empty() {
            // Another stream may change it first: look again under the lock.
            // An error drops the connection, which rolls back.
            for s in dialect.lock() {
                execute(client, &s).await.map_err(err)?;
            }
            let columns = query(client, &dialect.columns()).await.map_err(err)?;
            for s in checkpoints::changes(&dialect, &columns, &url)?
                .iter()
                .chain(&dialect.unlock())
            {
                execute(client, s).await.map_err(err)?;
            }
        }
        let fks = qualified(self.schema(), "_sluice_foreign_keys");
        let have: bool = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&fks])
            .await
            .map_err(err)?
            .try_get(0)
            .map_err(err)?;
        if !have {
            client.batch_execute(&self.foreign_key_table()).await.map_err(err)?;
        }
        Ok(())
    }

    pub(super) fn table_name(&self, stream: &str) -> String {
        self.cfg.table.replace("{stream}", stream)
    }

    /// Plans the DDL for a stream against the current state of the database.
    /// `created` says an interrupted run of this job created the table: it is
    /// planned as new (keys and indexes come after the load) though it exists.
    pub async fn plan_table(&self, client: &Client, stream: &StreamInfo, created: bool) -> Result<TablePlan> {
        let schema = self.schema();
        let table = self.table_name(&stream.name);
        let target = qualified(schema, &table);
        let r = client
            .query_one("SELECT to_regclass($1)::text", &[&target])
            .await
            .map_err(|e| pg_error(&self.cfg.url, e))?;
        let exists: Option<String> = get(&r, 0, &format!("to_regclass of table {target}"))?;
        let exists = exists.is_some() && !created;
        let meta = TableMeta::of(&stream.schema).unwrap_or_default();
        let key = if self.cfg.key.is_empty() {
            meta.primary_key.clone()
        } else {
            self.cfg.key.clone()
        };
        if self.cfg.mode == WriteMode::Upsert && key.is_empty() {
            return Err(Error::config(
                "sinks.key",
                format!("upsert into `{table}` needs key columns; set key = [\"id\"] on the sink"),
            ));
        }
        for k in &key {
            if stream.schema.field_with_name(k).is_err() {
                return Err(Error::config(
                    "sinks.key",
                    format!("key column `{k}` is not in stream `{}`", stream.name),
                ));
            }
        }
        let replace = self.cfg.mode == WriteMode::Replace;
        let mut plan = TablePlan {
            table: table.clone(),
            load_table: if replace {
                format!("{table}__sluice_new")
            } else {
                table.clone()
            },
            exists,
            key: key.clone(),
            ..Default::default()
        };
        if exists && !replace {
            // Keep the sequences of an existing table ahead of the rows loaded.
            for c in &meta.serial_columns {
                plan.after.push(setval(&target, &table, c));
            }
            return Ok(plan);
        }
        if !exists && !self.cfg.create {
            return Err(Error::config(
                "sinks.create",
                format!("table {target} does not exist and create = false; create it or set create = true"),
            ));
        }
        let load = qualified(schema, &plan.load_table);
        let mut columns = Vec::new();
        let postgis = super::spatial::postgis_for(client, &self.cfg.url, &stream.schema).await?;
        let mut chosen = std::collections::HashMap::new();
        for f in stream.schema.fields() {
            let cm = ColumnMeta::of(f);
            let labels = f.metadata().get(ENUM_LABELS);
            let from_postgres = cm.dialect.as_deref() == Some("postgres");
            let over = self.cfg.type_override(&table, f.name());
            // Another database's enum (MySQL's ENUM) becomes a type of its
            // own, with the same labels in the same order.
            let own_enum = over.is_none() && labels.is_some() && !from_postgres && f.data_type() == &DataType::Utf8;
            let ty = match (over, super::spatial::ddl(f, &cm, postgis)) {
                (Some(t), _) => t.to_string(),
                (None, _) if own_enum => qualified(schema, &object_name(&table, &[f.name().clone()], "enum")),
                (None, Some((t, warn))) => {
                    plan.warnings.extend(warn.map(|w| format!("{table}.{}: {w}", f.name())));
                    t
                }
                (None, None) => {
                    let (t, warn) = ddl_type(f.data_type(), &cm)
                        .map_err(|e| Error::config(format!("sinks.types.\"{table}.{}\"", f.name()), e))?;
                    if let Some(w) = warn {
                        plan.warnings.push(format!("{table}.{}: {w}", f.name()));
                    }
                    t
                }
            };
            if let Some(labels) = labels
                && (from_postgres || own_enum)
            {
                let labels: Vec<String> = serde_json::from_str(labels).unwrap_or_default();
                let name = ty.trim_end_matches("[]");
                let list = labels.iter().map(|l| literal(l)).collect::<Vec<_>>().join(", ");
                plan.before.push(format!(
                    "DO $$ BEGIN CREATE TYPE {name} AS ENUM ({list}); EXCEPTION WHEN duplicate_object THEN NULL; END $$"
                ));
            }
            chosen.insert(f.name().clone(), ty.clone());
            let not_null = if sluice_core::dbmeta::not_null(f) { " NOT NULL" } else { "" };
            let identity = meta.serial_columns.contains(f.name());
            let default = fidelity::default_clause(client, &table, f, &ty, identity, &mut plan.warnings).await;
            columns.push(format!("{} {ty}{not_null}{default}", ident(f.name())));
        }
        if replace {
            plan.before.push(format!("DROP TABLE IF EXISTS {load}"));
        }
        let inline_key = if self.cfg.mode == WriteMode::Upsert {
            format!(", PRIMARY KEY ({})", idents(&key))
        } else {
            String::new()
        };
        plan.before
            .push(format!("CREATE TABLE {load} ({}{inline_key})", columns.join(", ")));
        if replace {
            plan.after.push(format!(
                "DROP TABLE IF EXISTS {target}; ALTER TABLE {load} RENAME TO {}",
                ident(&table)
            ));
        }
        if self.cfg.indexes {
            if self.cfg.mode != WriteMode::Upsert && !key.is_empty() {
                plan.after
                    .push(format!("ALTER TABLE {target} ADD PRIMARY KEY ({})", idents(&key)));
            }
            for ix in &meta.indexes {
                if ix.columns.iter().any(|c| stream.schema.field_with_name(c).is_err()) {
                    continue;
                }
                let name = object_name(&table, &ix.columns, if ix.unique { "key" } else { "idx" });
                let unique = if ix.unique { "UNIQUE " } else { "" };
                let using = match super::spatial::index_method(&ix.columns, &stream.schema, &chosen) {
                    Ok(using) => using,
                    Err(why) => {
                        plan.warnings.push(format!("{table}: index {}: {why}", ix.name));
                        continue;
                    }
                };
                plan.after.push(format!(
                    "CREATE {unique}INDEX {} ON {target}{using} ({})",
                    ident(&name),
                    idents(&ix.columns)
                ));
            }
            for c in &meta.serial_columns {
                let is_int = stream
                    .schema
                    .field_with_name(c)
                    .is_ok_and(|f| f.data_type().is_integer());
                if is_int {
                    let col = ident(c);
                    plan.after.push(format!(
                        "ALTER TABLE {target} ALTER COLUMN {col} SET NOT NULL, \
                         ALTER COLUMN {col} ADD GENERATED BY DEFAULT AS IDENTITY"
                    ));
                    plan.after.push(setval(&target, &table, c));
                }
            }
            for fk in &meta.foreign_keys {
                let references = qualified(schema, &self.table_name(&fk.ref_table));
                let name = object_name(&table, &fk.columns, "fkey");
                plan.foreign_keys.push(PendingFk {
                    sql: format!(
                        "ALTER TABLE {target} ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {references} ({}){}",
                        ident(&name),
                        idents(&fk.columns),
                        idents(&fk.ref_columns),
                        fk.actions_sql()
                    ),
                    name,
                    table: target.clone(),
                    references,
                });
            }
        }
        // Statistics are left to autovacuum, which analyzes a freshly loaded
        // table on its own; an ANALYZE here would hold the run for seconds
        // on large tables.
        Ok(plan)
    }

    /// Adds every foreign key the job recorded whose referenced table now
    /// exists, and forgets it once it is there (or could not be added: the
    /// warning names the statement, to run by hand once the data allows).
    async fn add_foreign_keys(&self, client: &Client, pipeline: &str, job: i64) -> Result<()> {
        let err = |e| pg_error(&self.cfg.url, e);
        let fks = qualified(self.schema(), "_sluice_foreign_keys");
        let pending = client
            .query(
                &format!(
                    "SELECT f.name, f.table_name, f.statement, f.refs, \
                     to_regclass(f.refs) IS NOT NULL, \
                     EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conrelid = to_regclass(f.table_name) \
                     AND c.conname = f.name) \
                     FROM {fks} f WHERE f.pipeline = $1 AND f.job = $2 ORDER BY f.table_name, f.name"
                ),
                &[&pipeline, &job],
            )
            .await
            .map_err(err)?;
        for row in pending {
            let what = |field: &str| format!("{field} of a foreign key waiting in {fks}");
            let name: String = get(&row, 0, &what("name"))?;
            let table: String = get(&row, 1, &what("table_name"))?;
            let sql: String = get(&row, 2, &what("statement"))?;
            let refs: String = get(&row, 3, &what("refs"))?;
            let ready: bool = get(&row, 4, &what("whether the referenced table exists"))?;
            let present: bool = get(&row, 5, &what("whether the constraint exists"))?;
            if !ready && !present {
                tracing::debug!(constraint = %name, table = %table, waits_for = %refs, "foreign key waits for its table");
                continue;
            }
            if !present && let Err(e) = client.batch_execute(&sql).await {
                if is_transient(&e) {
                    // A deadlock or a lost connection: the next table that completes tries again.
                    tracing::warn!(statement = %sql, error = %server_message(&e), "foreign key not added yet");
                    continue;
                }
                tracing::warn!(statement = %sql, error = %server_message(&e), "foreign key not added");
            }
            client
                .execute(
                    &format!("DELETE FROM {fks} WHERE pipeline = $1 AND table_name = $2 AND name = $3"),
                    &[&pipeline, &table, &name],
                )
                .await
                .map_err(err)?;
        }
        Ok(())
    }

    /// Statements recording `plan`'s foreign keys for the job, to run in the
    /// transaction that completes the table.
    fn record_foreign_keys(&self, plan: &[PendingFk], pipeline: &str, job: i64) -> Vec<String> {
        let fks = qualified(self.schema(), "_sluice_foreign_keys");
        plan.iter()
            .map(|fk| {
                format!(
                    "INSERT INTO {fks} (pipeline, job, table_name, name, statement, refs) \
                     VALUES ({}, {job}, {}, {}, {}, {}) ON CONFLICT (pipeline, table_name, name) \
                     DO UPDATE SET job = EXCLUDED.job, statement = EXCLUDED.statement, refs = EXCLUDED.refs",
                    literal(pipeline),
                    literal(&fk.table),
                    literal(&fk.name),
                    literal(&fk.sql),
                    literal(&fk.references)
                )
            })
            .collect()
    }
}

impl PostgresSink {
    /// What the job ledger needs to know about `table`.
    async fn found(
        &self,
        client: &Client,
        checkpoints: &Checkpoints<checkpoints::Postgres>,
        table: &str,
    ) -> Result<Found> {
        let err = |e| pg_error(&self.cfg.url, e);
        let ledger = checkpoints.found(&query(client, &checkpoints.ledger()).await.map_err(err)?)?;
        let exists: bool = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
            .await
            .map_err(err)?
            .try_get(0)
            .map_err(err)?;
        let has_rows = exists
            && client
                .query_one(&format!("SELECT EXISTS (SELECT 1 FROM {table})"), &[])
                .await
                .map_err(err)?
                .try_get::<_, bool>(0)
                .map_err(err)?;
        Ok(Found {
            exists,
            has_rows,
            ..ledger
        })
    }
}

/// Runs a statement of the checkpoint protocol.
pub(super) async fn execute(client: &Client, statement: &Statement) -> std::result::Result<(), tokio_postgres::Error> {
    if statement.params.is_empty() {
        return client.batch_execute(&statement.sql).await;
    }
    client
        .execute(statement.sql.as_str(), &params(statement))
        .await
        .map(|_| ())
}

/// Runs a query of the checkpoint protocol; its rows as values.
pub(super) async fn query(client: &Client, statement: &Statement) -> std::result::Result<Vec<Vec<Value>>, tokio_postgres::Error> {
    let rows = client.query(statement.sql.as_str(), &params(statement)).await?;
    rows.iter()
        .map(|row| {
            (0..row.len())
                .map(|i| {
                    let ty = row.columns()[i].type_();
                    Ok(if *ty == Type::INT8 {
                        row.try_get::<_, Option<i64>>(i)?.map_or(Value::Null, Value::Int)
                    } else if *ty == Type::INT4 {
                        row.try_get::<_, Option<i32>>(i)?
                            .map_or(Value::Null, |v| Value::Int(v.into()))
                    } else {
                        row.try_get::<_, Option<String>>(i)?.map_or(Value::Null, Value::Text)
                    })
                })
                .collect()
        })
        .collect()
}

/// The parameters of a statement as the driver takes them.
fn params(statement: &Statement) -> Vec<&(dyn ToSql + Sync)> {
    statement
        .params
        .iter()
        .map(|v| -> &(dyn ToSql + Sync) {
            match v {
                Value::Null => &None::<&str>,
                Value::Int(i) => i,
                Value::Text(s) => s,
            }
        })
        .collect()
}

/// `SELECT setval(…)` moving a column's sequence past the rows loaded.
fn setval(target: &str, table: &str, column: &str) -> String {
    let _ = table;
    format!(
        "SELECT setval(pg_get_serial_sequence({}, {}), max({})) FROM {target} HAVING max({}) IS NOT NULL",
        literal(target),
        literal(column),
        ident(column),
        ident(column)
    )
}

fn idents(cols: &[String]) -> String {
    cols.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ")
}

/// A constraint or index name PostgreSQL-style (`orders_customer_id_fkey`), at most 63 bytes.
fn object_name(table: &str, columns: &[String], suffix: &str) -> String {
    crate::identifiers::object_name(table, columns, suffix, 63)
}

#[async_trait]
impl SinkConnector for PostgresSink {
    fn name(&self) -> &str {
        "postgres"
    }

    fn read_back(&self, stream: &str) -> Option<Result<Box<dyn sluice_core::Source>>> {
        let cfg = super::PostgresSourceConfig {
            url: self.cfg.url.clone(),
            schema: self.cfg.schema.clone(),
            table: Some(self.cfg.table.replace("{stream}", stream)),
            tables: Vec::new(),
            exclude: Vec::new(),
            query: None,
            stream: None,
            cursor: None,
            cursor_start: None,
            partitions: None,
            mode: Default::default(),
            slot: None,
            publication: None,
            snapshot: None,
        };
        Some(super::PostgresSource::new(cfg).map(|s| Box::new(s) as Box<dyn sluice_core::Source>))
    }

    fn target(&self, stream: &str) -> String {
        format!(
            "{} {}.{}",
            redact(&self.cfg.url),
            self.schema(),
            self.table_name(stream)
        )
    }

    async fn plan(&self, stream: &StreamInfo) -> Result<Vec<String>> {
        let client = connect(&self.cfg.url).await?;
        let mut statements = vec![self.bookkeeping()];
        let plan = self.plan_table(&client, stream, false).await?;
        for w in &plan.warnings {
            tracing::warn!("{w}");
        }
        statements.extend(plan.statements());
        Ok(statements)
    }

    async fn check(&self, streams: &[StreamInfo]) -> Result<Vec<String>> {
        let client = connect(&self.cfg.url).await?;
        let err = |e| pg_error(&self.cfg.url, e);
        let r = client.query_one("SHOW server_version", &[]).await.map_err(err)?;
        let version: String = get(&r, 0, "server_version")?;
        let mut lines = vec![format!("connected to {} (PostgreSQL {version})", redact(&self.cfg.url))];
        let schema = self.schema();
        let r = client
            .query_one("SELECT has_schema_privilege($1, 'CREATE')", &[&schema])
            .await
            .map_err(|e| {
                Error::config(
                    "sinks.schema",
                    format!("schema `{schema}` of {}: {}", redact(&self.cfg.url), server_message(&e)),
                )
            })?;
        let can_create: bool = get(&r, 0, &format!("has_schema_privilege on schema {schema}"))?;
        let denied = |what: String| Error::config("sinks", format!("{}: {what}", redact(&self.cfg.url)));
        for stream in streams {
            let table = self.table_name(&stream.name);
            let target = qualified(schema, &table);
            let row = client
                .query_one(
                    "SELECT c.oid IS NOT NULL,                      coalesce(has_table_privilege(c.oid, 'INSERT'), false),                      coalesce(has_table_privilege(c.oid, 'UPDATE'), false),                      coalesce(pg_has_role(c.relowner, 'USAGE'), false)                      FROM (SELECT to_regclass($1) AS oid) r LEFT JOIN pg_class c ON c.oid = r.oid",
                    &[&target],
                )
                .await
                .map_err(err)?;
            let what = |field: &str| format!("{field} of table {target}");
            let exists: bool = get(&row, 0, &what("existence"))?;
            let insert: bool = get(&row, 1, &what("INSERT privilege"))?;
            let update: bool = get(&row, 2, &what("UPDATE privilege"))?;
            let owner: bool = get(&row, 3, &what("ownership"))?;
            let needs_create = !exists || self.cfg.mode == WriteMode::Replace;
            if needs_create && !self.cfg.create && !exists {
                return Err(denied(format!("table {target} does not exist and create = false")));
            }
            if needs_create && !can_create {
                return Err(denied(format!(
                    "the user may not create tables in schema `{schema}` (needed for {target});                      GRANT CREATE ON SCHEMA {schema} TO the user"
                )));
            }
            if exists && !insert {
                return Err(denied(format!(
                    "the user may not insert into {target}; GRANT INSERT ON {target}"
                )));
            }
            if exists && self.cfg.mode == WriteMode::Upsert && !update {
                return Err(denied(format!(
                    "upsert needs UPDATE on {target}; GRANT UPDATE ON {target}"
                )));
            }
            if exists && self.cfg.mode == WriteMode::Replace && !owner {
                return Err(denied(format!("replace drops {target}, which only its owner may do")));
            }
            lines.push(format!(
                "{target}: {}",
                if exists { "exists, writable" } else { "will be created" }
            ));
        }
        Ok(lines)
    }

    async fn open(&self, stream: &StreamInfo) -> Result<Box<dyn Sink>> {
        if stream.schema.field_with_name(sluice_core::reserved::OP).is_ok() {
            return super::apply::open(self, stream).await;
        }
        let client = connect(&self.cfg.url).await?;
        let err = |e| pg_error(&self.cfg.url, e);
        let fks = qualified(self.schema(), "_sluice_foreign_keys");
        self.prepare_bookkeeping(&client).await?;
        let table = self.table_name(&stream.name);
        let load_name = match self.cfg.mode {
            WriteMode::Replace => format!("{table}__sluice_new"),
            _ => table.clone(),
        };
        let key = qualified(self.schema(), &load_name);
        let final_key = qualified(self.schema(), &table);
        let checkpoints = Checkpoints::new(self.dialect(), &stream.pipeline, stream.job, &final_key, &key);
        let found = self.found(&client, &checkpoints, &final_key).await?;
        let (created, start) = match ledger::decide(self.cfg.mode, stream, &found, &final_key)? {
            Action::Complete { job } => {
                tracing::info!(table = %final_key, job, "already loaded whole by an earlier run of this pipeline; nothing to write");
                return Ok(Box::new(Done));
            }
            Action::Resume { created } => (created, None),
            Action::Start { clear, created } => (created, Some(clear)),
        };
        let plan = self.plan_table(&client, stream, created).await?;
        for w in &plan.warnings {
            tracing::warn!("{w}");
        }
        // The table, its job record and the positions that say what it
        // holds change together.
        let mut setup = vec![Statement::plain("BEGIN")];
        match start {
            Some(clear) => {
                setup.push(checkpoints.forget());
                setup.push(Statement::plain(format!(
                    "DELETE FROM {fks} WHERE pipeline = {} AND table_name = {}",
                    literal(&stream.pipeline),
                    literal(&final_key)
                )));
                match clear {
                    Clear::Nothing => {}
                    Clear::Truncate => setup.push(Statement::plain(format!("TRUNCATE {final_key}"))),
                    // Foreign keys pointing at the table go with it; those
                    // of tables this pipeline loads are added again when
                    // their tables complete.
                    Clear::Recreate => {
                        setup.push(Statement::plain(format!("DROP TABLE IF EXISTS {final_key} CASCADE")))
                    }
                }
                setup.extend(plan.before.iter().cloned().map(Statement::from));
            }
            // A table the job created is there (created with its record).
            None if !created => setup.extend(plan.before.iter().cloned().map(Statement::from)),
            None => {}
        }
        let record = ledger::opening_record(&found, stream.job, created);
        setup.push(checkpoints.record(&record));
        setup.push(Statement::plain("COMMIT"));
        run_steps(&client, &self.cfg.url, &self.target(&stream.name), &setup).await?;
        let load = qualified(self.schema(), &plan.load_table);
        let fields: Vec<_> = stream.schema.fields().iter().collect();
        let Columns {
            encoders,
            names,
            pg_types,
            stage_cols,
            check_cols,
            select,
        } = columns_of(&client, &self.cfg.url, &load, stream, &fields).await?;
        let column_list = idents(&names);
        let staged = self.cfg.mode == WriteMode::Upsert || encoders.iter().zip(&select).any(|(_, s)| s.contains("::"));
        let upsert = (self.cfg.mode == WriteMode::Upsert).then(|| {
            let updates: Vec<String> = names
                .iter()
                .filter(|n| !plan.key.contains(n))
                .map(|n| format!("{0} = EXCLUDED.{0}", ident(n)))
                .collect();
            let action = if updates.is_empty() {
                "DO NOTHING".to_string()
            } else {
                format!("DO UPDATE SET {}", updates.join(", "))
            };
            (idents(&plan.key), action)
        });
        let inserter = InsertSelect {
            load: load.clone(),
            columns: column_list.clone(),
            select: select.clone(),
            upsert,
        };
        let insert = if staged {
            client
                .batch_execute(&format!(
                    "CREATE TEMP TABLE IF NOT EXISTS sluice_stage ({})",
                    stage_cols.join(", ")
                ))
                .await
                .map_err(err)?;
            Some(inserter.sql("sluice_stage", "", "ctid"))
        } else {
            None
        };
        let copy_into = if staged {
            "sluice_stage".to_string()
        } else {
            load.clone()
        };
        // Rows loaded straight into the table may arrive as binary COPY
        // tuples of a PostgreSQL source with exactly these column types.
        let passthrough = (!staged).then(|| super::passthrough::format_of(pg_types.iter().map(String::as_str)));
        Ok(Box::new(PostgresTableSink {
            passthrough,
            client,
            url: self.cfg.url.clone(),
            copy: format!("COPY {copy_into} ({column_list}) FROM STDIN (FORMAT binary)"),
            insert,
            encoders,
            names,
            pg_types,
            refusals: Refusals::new(inserter, check_cols, plan.load_table.clone()),
            after: plan.after,
            foreign_keys: plan.foreign_keys,
            // After a swap the load table is gone and so is what its
            // checkpoints described; a table loaded in place keeps its
            // positions (an incremental source goes on from them). The job
            // record says the load is whole.
            loaded: {
                let complete = JobRecord {
                    complete: true,
                    ..record
                };
                let mut loaded = Vec::new();
                if self.cfg.mode == WriteMode::Replace {
                    loaded.push(checkpoints.forget_load());
                }
                loaded.push(checkpoints.record(&complete));
                loaded
            },
            checkpoints,
            pipeline: stream.pipeline.to_string(),
            job: stream.job,
            open_tx: false,
            by: "postgres".into(),
            target: self.target(&stream.name),
            connector: self.clone(),
            prepared: Default::default(),
        }))
    }
}

/// How a stream's fields go into a table: the destination's columns in the
/// fields' order, each with its encoder, its type and how it is staged.
#[derive(Default)]
pub(super) struct Columns {
    pub encoders: Vec<Encode>,
    pub names: Vec<String>,
    pub pg_types: Vec<String>,
    /// Columns of a stage of the destination's types.
    pub stage_cols: Vec<String>,
    /// Columns of the stage refused rows are judged in: no constraints, no
    /// type modifiers (a value too long fails the load, not the staging).
    pub check_cols: Vec<String>,
    /// Each column as selected from the stage (with a cast where it is staged as text).
    pub select: Vec<String>,
}

/// The [`Columns`] of table `load` for `fields` of `stream`; a field the
/// table lacks is an error naming the fix.
pub(super) async fn columns_of(
    client: &Client,
    url: &str,
    load: &str,
    stream: &StreamInfo,
    fields: &[&arrow::datatypes::FieldRef],
) -> Result<Columns> {
    let err = |e| pg_error(url, e);
    let cols = client
        .query(
            "SELECT a.attname::text, a.atttypid, a.atttypmod, format_type(a.atttypid, a.atttypmod), \
             format_type(CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE a.atttypid END, NULL) \
             FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
             WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped",
            &[&load],
        )
        .await
        .map_err(err)?;
    let mut types = TypeCache::new(url);
    let column_names: Vec<String> = cols
        .iter()
        .map(|r| get(r, 0, &format!("a column name of {load}")))
        .collect::<Result<_>>()?;
    let mut encoders = Vec::new();
    let mut names = Vec::new();
    let mut pg_types = Vec::new();
    let mut stage_cols = Vec::new();
    // Columns of the stage refused rows are judged in: no constraints, no
    // type modifiers (a value too long fails the load, not the staging).
    let mut check_cols = Vec::new();
    let mut select = Vec::new();
    for f in fields {
        let found = column_names.iter().position(|n| n == f.name()).or_else(|| {
            column_names.iter().position(|n| n.eq_ignore_ascii_case(f.name()))
        });
        let Some(i) = found else {
            return Err(Error::config(
                "sinks.table",
                format!(
                    "column `{}` of stream `{}` is not in table {load}; add the column, or drop or rename it \
                     with a transform",
                    f.name(),
                    stream.name
                ),
            ));
        };
        let (row, name) = (&cols[i], column_names[i].clone());
        let what = |field: &str| format!("{field} of column {name} of {load}");
        let oid: u32 = get(row, 1, &what("pg_attribute.atttypid"))?;
        let typmod: i32 = get(row, 2, &what("pg_attribute.atttypmod"))?;
        let format: String = get(row, 3, &what("format_type"))?;
        let resolved = types.resolve(client, oid, typmod, &format).await?;
        let base: String = get(row, 4, &what("base type"))?;
        match super::spatial::encoder(f, oid, &resolved).or_else(|| encoder(&resolved)) {
            Some(e) => {
                check_cols.push(format!("{} {base}", ident(&name)));
                stage_cols.push(format!("{} {format}", ident(&name)));
                select.push(ident(&name));
                encoders.push(e);
            }
            None => {
                check_cols.push(format!("{} text", ident(&name)));
                stage_cols.push(format!("{} text", ident(&name)));
                select.push(format!("{}::{format}", ident(&name)));
                encoders.push(Encode::Text);
            }
        }
        names.push(name);
        pg_types.push(format);
    }
    Ok(Columns {
        encoders,
        names,
        pg_types,
        stage_cols,
        check_cols,
        select,
    })
}

/// One stream being written into one table.
struct PostgresTableSink {
    /// The encoded rows this sink loads as they are (see [`super::passthrough`]).
    passthrough: Option<sluice_core::PayloadFormat>,
    client: Client,
    url: String,
    copy: String,
    /// `INSERT … SELECT` from the stage, when loading through it.
    insert: Option<String>,
    encoders: Vec<Encode>,
    names: Vec<String>,
    pg_types: Vec<String>,
    /// What finding refused rows needs.
    refusals: Refusals,
    after: Vec<String>,
    /// Foreign keys, recorded with the complete table and added once the
    /// tables they reference are loaded.
    foreign_keys: Vec<PendingFk>,
    /// The table's ledger: positions stored with the rows, the job record.
    checkpoints: Checkpoints<checkpoints::Postgres>,
    /// Marks the job record complete (and, after a swap, drops the new
    /// table's positions) once the load is whole.
    loaded: Vec<Statement>,
    pipeline: String,
    /// The job, which owns the foreign keys it records.
    job: i64,
    /// A batch's transaction is open, waiting for `flush` to commit it.
    open_tx: bool,
    by: Arc<str>,
    target: String,
    connector: PostgresSink,
    /// Statements run for every batch (the `COPY`, the position's upsert),
    /// prepared once: a parse is a round trip to a busy server.
    prepared: std::sync::Mutex<HashMap<String, tokio_postgres::Statement>>,
}

/// Foreign keys of completed tables waiting for the tables they reference
/// (`refs`), one row per constraint, owned by the job that recorded them.
const FOREIGN_KEY_TABLE: &str = "CREATE TABLE IF NOT EXISTS {schema}._sluice_foreign_keys (
    pipeline text NOT NULL,
    job bigint NOT NULL,
    table_name text NOT NULL,
    name text NOT NULL,
    statement text NOT NULL,
    refs text NOT NULL,
    PRIMARY KEY (pipeline, table_name, name))";

impl PostgresTableSink {
    /// `sql` prepared on this sink's connection, once.
    async fn prepare(&self, sql: &str) -> std::result::Result<tokio_postgres::Statement, tokio_postgres::Error> {
        if let Some(st) = self.prepared.lock().ok().and_then(|m| m.get(sql).cloned()) {
            return Ok(st);
        }
        let st = self.client.prepare(sql).await?;
        if let Ok(mut m) = self.prepared.lock() {
            m.insert(sql.to_string(), st.clone());
        }
        Ok(st)
    }

    /// Loads `data` in one `COPY` (through the stage when there is one)
    /// inside the batch's transaction, under a savepoint so a refused load
    /// leaves the transaction usable; rolled back even when accepted unless
    /// `keep`. Rows that cannot be encoded are left out and returned.
    async fn load(&self, data: &RecordBatch, keep: bool) -> std::result::Result<Vec<(usize, String)>, LoadError> {
        self.client.batch_execute("SAVEPOINT sluice_load").await?;
        let result = async {
            let bad = self.send_copy(&self.copy, data).await?;
            if let Some(insert) = &self.insert {
                self.client.batch_execute(insert).await?;
                self.client.batch_execute("TRUNCATE sluice_stage").await?;
            }
            Ok(bad)
        }
        .await;
        let end = match (&result, keep) {
            (Ok(_), true) => "RELEASE SAVEPOINT sluice_load",
            _ => "ROLLBACK TO SAVEPOINT sluice_load; RELEASE SAVEPOINT sluice_load",
        };
        match (result, self.client.batch_execute(end).await) {
            (Ok(_), Err(e)) => Err(LoadError::Server(e)),
            (result, _) => result,
        }
    }

    /// Loads binary `COPY` tuples (no header, no trailer; one or several
    /// batches' worth) in one `COPY`,
    /// under a savepoint like [`Self::load`]; in a `fresh` transaction
    /// (nothing before the `COPY` to keep) without one, saving two round
    /// trips a batch: a refused load then starts the transaction again.
    async fn load_encoded(&self, tuples: &[Bytes], fresh: bool) -> std::result::Result<(), LoadError> {
        if tuples.iter().all(Bytes::is_empty) {
            return Ok(());
        }
        if !fresh {
            self.client.batch_execute("SAVEPOINT sluice_load").await?;
        }
        let result = async {
            let copy = self.prepare(&self.copy).await?;
            let sink = self.client.copy_in::<_, Bytes>(&copy).await?;
            let mut sink = std::pin::pin!(sink);
            sink.feed(Bytes::from_static(HEADER)).await?;
            for t in tuples.iter().filter(|t| !t.is_empty()) {
                sink.feed(t.clone()).await?;
            }
            sink.send(Bytes::from_static(TRAILER)).await?;
            sink.as_mut().finish().await?;
            Ok(())
        }
        .await;
        let end = match (&result, fresh) {
            (Ok(()), true) => return result,
            (Ok(()), false) => "RELEASE SAVEPOINT sluice_load",
            (Err(_), false) => "ROLLBACK TO SAVEPOINT sluice_load; RELEASE SAVEPOINT sluice_load",
            (Err(_), true) => "ROLLBACK; BEGIN",
        };
        match (result, self.client.batch_execute(end).await) {
            (Ok(()), Err(e)) => Err(LoadError::Server(e)),
            (result, _) => result,
        }
    }

    /// Sends `data` through `copy` (a binary `COPY … FROM STDIN`), encoding
    /// a chunk at a time while the server ingests the chunks already sent.
    /// Rows that cannot be encoded are left out and returned.
    async fn send_copy(&self, copy: &str, data: &RecordBatch) -> std::result::Result<Vec<(usize, String)>, LoadError> {
        let copy = self.prepare(copy).await?;
        let sink = self.client.copy_in::<_, Bytes>(&copy).await?;
        let mut sink = std::pin::pin!(sink);
        let mut bad = Vec::new();
        let mut offset = 0;
        loop {
            let len = COPY_CHUNK_ROWS.min(data.num_rows() - offset);
            let mut buf = Vec::with_capacity(64 * 1024);
            if offset == 0 {
                buf.extend(HEADER);
            }
            let chunk = data.slice(offset, len);
            let refused = encode_rows(&self.encoders, &self.names, &self.pg_types, &chunk, &mut buf)
                .map_err(|e| LoadError::Sluice(Error::config("sinks", format!("{}: {e}", self.target))))?;
            bad.extend(refused.into_iter().map(|(row, reason)| (row + offset, reason)));
            offset += len;
            if offset >= data.num_rows() {
                buf.extend(TRAILER);
                sink.send(Bytes::from(buf)).await?;
                break;
            }
            sink.send(Bytes::from(buf)).await?;
        }
        sink.as_mut().finish().await?;
        Ok(bad)
    }

    /// Opens the batch's transaction unless one is open; whether it opened
    /// one (nothing in it yet).
    async fn begin(&mut self) -> Result<bool> {
        if self.open_tx {
            return Ok(false);
        }
        self.client
            .batch_execute("BEGIN")
            .await
            .map_err(|e| pg_error(&self.url, e))?;
        self.open_tx = true;
        Ok(true)
    }

    /// Ends a failed batch's transaction, best effort.
    async fn abort(&mut self) {
        if self.open_tx {
            self.open_tx = false;
            let _ = self.client.batch_execute("ROLLBACK").await;
        }
    }

    /// Stores the batch's position in its transaction.
    async fn store_position(&self, p: &Position) -> Result<()> {
        let store = self.checkpoints.store(p);
        let result = async {
            let st = self.prepare(&store.sql).await?;
            self.client.execute(&st, &params(&store)).await
        }
        .await;
        result.map(|_| ()).map_err(|e| pg_error(&self.url, e))
    }

    /// Loads the rows of `batch` the server accepts and returns the others
    /// with its reasons; every row of `batch` must encode. The rows are
    /// staged and the table's `NOT NULL` and `CHECK` constraints evaluated
    /// over them in one query; the rest is isolated by
    /// [`refused::isolate`], whose probes are rolled back, so the batch's
    /// transaction holds a bounded number of locks however many rows are
    /// refused.
    async fn load_isolating(&mut self, batch: &Batch) -> Result<Vec<(usize, String)>> {
        if self.refusals.rules.is_none() {
            self.refusals.rules = Some(self.read_rules().await?);
        }
        match self.stage_checked(batch).await? {
            Some((refused, true)) => Ok(refused),
            Some((mut refused, false)) => {
                let rows: Vec<usize> = (0..batch.num_rows())
                    .filter(|i| refused.binary_search_by_key(i, |(r, _)| *r).is_err())
                    .collect();
                let mut trial = StageTrial {
                    sink: self,
                    staged: rows.len(),
                };
                refused.extend(refused::isolate(&mut trial, &rows).await?);
                refused.sort_by_key(|(i, _)| *i);
                Ok(refused)
            }
            None => {
                let rows: Vec<usize> = (0..batch.num_rows()).collect();
                let mut trial = BatchTrial { sink: self, batch };
                refused::isolate(&mut trial, &rows).await
            }
        }
    }

    /// The table's `NOT NULL` and `CHECK` constraints over the stream's
    /// columns, as (condition true for a refused row, the server's message).
    /// Constraints on columns the stream lacks are left to the server.
    async fn read_rules(&mut self) -> Result<Vec<(String, String)>> {
        let err = |e| pg_error(&self.url, e);
        let load = &self.refusals.inserter.load;
        let relation = &self.refusals.relation;
        let mut rules = Vec::new();
        let not_null = self
            .client
            .query(
                "SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 \
                 AND NOT a.attisdropped AND a.attnotnull ORDER BY a.attnum",
                &[load],
            )
            .await
            .map_err(err)?;
        for row in not_null {
            let column: String = get(&row, 0, &format!("a not-null column of {load}"))?;
            if self.names.contains(&column) {
                rules.push((
                    format!("{} IS NULL", ident(&column)),
                    format!(
                        "null value in column \"{column}\" of relation \"{relation}\" violates not-null constraint"
                    ),
                ));
            }
        }
        let checks = self
            .client
            .query(
                "SELECT k.conname::text, pg_get_expr(k.conbin, k.conrelid), \
                 ARRAY(SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = k.conrelid AND a.attnum = ANY(k.conkey)) \
                 FROM pg_constraint k WHERE k.conrelid = to_regclass($1) AND k.contype = 'c' ORDER BY k.conname",
                &[load],
            )
            .await
            .map_err(err)?;
        for row in checks {
            let what = |field: &str| format!("{field} of a check constraint of {load}");
            let name: String = get(&row, 0, &what("name"))?;
            let expr: Option<String> = get(&row, 1, &what("expression"))?;
            let columns: Vec<String> = get(&row, 2, &what("columns"))?;
            if let Some(expr) = expr.filter(|_| columns.iter().all(|c| self.names.contains(c))) {
                rules.push((
                    format!("({expr}) IS FALSE"),
                    format!("new row for relation \"{relation}\" violates check constraint \"{name}\""),
                ));
            }
        }
        if self.refusals.inserter.upsert.is_some() {
            // Keys that exist are updated, not refused.
            return Ok(rules);
        }
        // A key the table already holds (what re-loading a file meets); keys
        // repeated within the batch are left to the server.
        let unique = self
            .client
            .query(
                "SELECT c.relname::text, ARRAY(SELECT a.attname::text FROM unnest(i.indkey) WITH ORDINALITY k(attnum, n) \
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.n) \
                 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
                 WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indimmediate \
                 AND i.indpred IS NULL AND i.indexprs IS NULL ORDER BY c.relname",
                &[load],
            )
            .await
            .map_err(err)?;
        let mut keys = Vec::new();
        for row in unique {
            let name: String = get(&row, 0, &format!("a unique index name of {load}"))?;
            let columns: Vec<String> = get(&row, 1, &format!("columns of unique index {name} of {load}"))?;
            if columns.is_empty() || !columns.iter().all(|c| self.names.contains(c)) {
                continue;
            }
            keys.push((name.clone(), columns.clone()));
            let present: Vec<String> = columns.iter().map(|c| format!("s.{0} IS NOT NULL", ident(c))).collect();
            let equal: Vec<String> = columns.iter().map(|c| format!("t.{0} = s.{0}", ident(c))).collect();
            rules.push((
                format!(
                    "{} AND EXISTS (SELECT 1 FROM {load} t WHERE {})",
                    present.join(" AND "),
                    equal.join(" AND ")
                ),
                format!("duplicate key value violates unique constraint \"{name}\""),
            ));
        }
        // With one unique key, a key repeated in the batch refuses exactly its
        // later rows; with several, which rows a repeat refuses depends on the
        // others, which only loading can tell.
        if let [key] = keys.as_slice() {
            self.refusals.key = Some(key.clone());
        }
        Ok(rules)
    }

    /// Stages `batch` in `sluice_check` and evaluates the constraint rules
    /// over it: returns the rows they refuse and whether the others are
    /// already in the table (judged and moved in one statement, which the
    /// server accepted), else left in the stage; `None` when the rows
    /// cannot be staged (a value the column's type refuses).
    async fn stage_checked(&self, batch: &Batch) -> Result<Option<(Vec<(usize, String)>, bool)>> {
        let err = |e| pg_error(&self.url, e);
        let staged = async {
            // The rules' subqueries make the planner guess a cost high enough
            // to compile them (JIT), which takes longer than running them.
            self.client
                .batch_execute(&format!(
                    "SAVEPOINT sluice_check; \
                     SET LOCAL jit = off; \
                     CREATE TEMP TABLE IF NOT EXISTS sluice_check (_sluice_row bigint GENERATED ALWAYS AS IDENTITY, {}); \
                     TRUNCATE sluice_check RESTART IDENTITY",
                    self.refusals.stage_cols.join(", ")
                ))
                .await?;
            let copy = format!("COPY sluice_check ({}) FROM STDIN (FORMAT binary)", self.refusals.inserter.columns);
            self.send_copy(&copy, &batch.data).await?;
            self.client.batch_execute("RELEASE SAVEPOINT sluice_check").await?;
            Ok(())
        }
        .await;
        match staged {
            Ok(()) => {}
            Err(LoadError::Server(e)) if e.as_db_error().is_some() && !is_transient(&e) => {
                tracing::debug!(target = %self.target, error = %server_message(&e), "refused rows isolated by COPY");
                self.client
                    .batch_execute("ROLLBACK TO SAVEPOINT sluice_check; RELEASE SAVEPOINT sluice_check")
                    .await
                    .map_err(err)?;
                return Ok(None);
            }
            Err(LoadError::Server(e)) => return Err(err(e)),
            Err(LoadError::Sluice(e)) => return Err(e),
        }
        let Some(judge) = self.refusals.judge(&self.names, &self.pg_types, JUDGED_LEAVE) else {
            return Ok(Some((Vec::new(), false)));
        };
        let rules = self.refusals.rules.as_deref().unwrap_or_default();
        let reasons = |found: Vec<tokio_postgres::Row>| -> Result<Vec<(usize, String)>> {
            let mut refused: Vec<(usize, String)> = found
                .iter()
                .map(|row| {
                    let rule = usize::try_from(get::<i32>(row, 1, "the rule a staged row broke")?).unwrap_or(0);
                    let reason = rules.get(rule).map_or_else(String::new, |(_, r)| r.clone());
                    Ok((staged_row(row)?, reason))
                })
                .collect::<Result<_>>()?;
            refused.sort_by_key(|(i, _)| *i);
            Ok(refused)
        };
        // Most batches: judge the rows and move the others into the table
        // in one statement. When the server refuses the move (a key the
        // rules do not see, such as one repeated within the batch), the
        // statement undoes itself and the rows are judged, then isolated.
        let moving = format!(
            "moved AS ({})",
            self.refusals.inserter.sql(
                "sluice_check",
                " WHERE NOT EXISTS (SELECT 1 FROM judged j WHERE j._sluice_row = sluice_check._sluice_row)",
                "_sluice_row"
            )
        );
        if let Some(both) = self.refusals.judge(&self.names, &self.pg_types, &moving) {
            self.client.batch_execute("SAVEPOINT sluice_judge").await.map_err(err)?;
            match self.client.query(both.as_str(), &[]).await {
                Ok(found) => {
                    self.client
                        .batch_execute("RELEASE SAVEPOINT sluice_judge")
                        .await
                        .map_err(err)?;
                    return Ok(Some((reasons(found)?, true)));
                }
                Err(e) if e.as_db_error().is_some() && !is_transient(&e) => {
                    tracing::debug!(target = %self.target, error = %server_message(&e), "rows judged apart from the move");
                    self.client
                        .batch_execute("ROLLBACK TO SAVEPOINT sluice_judge; RELEASE SAVEPOINT sluice_judge")
                        .await
                        .map_err(err)?;
                }
                Err(e) => return Err(err(e)),
            }
        }
        // The judging also takes the refused rows out of the stage, under a
        // savepoint so a rule that fails to evaluate undoes only itself.
        self.client.batch_execute("SAVEPOINT sluice_judge").await.map_err(err)?;
        let found = match self.client.query(judge.as_str(), &[]).await {
            Ok(found) => found,
            Err(e) if e.as_db_error().is_some() && !is_transient(&e) => {
                // A rule that cannot be evaluated here (a value that does not
                // cast): the server judges the rows one set at a time.
                tracing::debug!(target = %self.target, error = %server_message(&e), "constraints left to the server");
                self.client
                    .batch_execute("ROLLBACK TO SAVEPOINT sluice_judge; RELEASE SAVEPOINT sluice_judge")
                    .await
                    .map_err(err)?;
                return Ok(Some((Vec::new(), false)));
            }
            Err(e) => return Err(err(e)),
        };
        self.client
            .batch_execute("RELEASE SAVEPOINT sluice_judge")
            .await
            .map_err(err)?;
        Ok(Some((reasons(found)?, false)))
    }

    /// Runs `sql` under a savepoint, kept when accepted and `keep`; the
    /// server's message when it refuses the data.
    async fn attempt(&self, sql: &str, keep: bool) -> Result<Option<String>> {
        let end = if keep {
            "RELEASE SAVEPOINT sluice_try"
        } else {
            "ROLLBACK TO SAVEPOINT sluice_try; RELEASE SAVEPOINT sluice_try"
        };
        match self
            .client
            .batch_execute(&format!("SAVEPOINT sluice_try; {sql}; {end}"))
            .await
        {
            Ok(()) => Ok(None),
            Err(e) => {
                let _ = self
                    .client
                    .batch_execute("ROLLBACK TO SAVEPOINT sluice_try; RELEASE SAVEPOINT sluice_try")
                    .await;
                if is_data_error(&e) {
                    Ok(Some(server_message(&e)))
                } else {
                    Err(pg_error(&self.url, e))
                }
            }
        }
    }
}

/// `INSERT INTO … SELECT … FROM` a stage table, for upserts, for columns
/// cast from text, and for rows judged in `sluice_check`.
#[derive(Debug, Clone)]
struct InsertSelect {
    /// The load table, qualified.
    load: String,
    /// Its columns, quoted, in stage order.
    columns: String,
    /// What each column is selected as (casts for columns staged as text).
    select: Vec<String>,
    /// Upsert: the key columns and the `ON CONFLICT` action.
    upsert: Option<(String, String)>,
}

impl InsertSelect {
    /// The statement reading `from` (with `filter`, a `WHERE` clause or
    /// nothing); `order` orders the stage's rows, the last one of a key winning.
    fn sql(&self, from: &str, filter: &str, order: &str) -> String {
        let (load, columns, select) = (&self.load, &self.columns, self.select.join(", "));
        match &self.upsert {
            Some((keys, action)) => format!(
                "INSERT INTO {load} ({columns}) SELECT DISTINCT ON ({keys}) {select} FROM {from}{filter} \
                 ORDER BY {keys}, {order} DESC ON CONFLICT ({keys}) {action}"
            ),
            None => format!("INSERT INTO {load} ({columns}) SELECT {select} FROM {from}{filter}"),
        }
    }
}

/// What finding refused rows needs, beyond loading.
struct Refusals {
    inserter: InsertSelect,
    /// Columns of `sluice_check`: the table's types without its constraints.
    stage_cols: Vec<String>,
    /// The load table's name, as the server's messages give it.
    relation: String,
    /// Conditions refusing a row with their reasons, read at the first refusal.
    rules: Option<Vec<(String, String)>>,
    /// The table's one unique key (name, columns) when it has exactly one
    /// that rows could repeat within a batch (not for upserts).
    key: Option<(String, Vec<String>)>,
    /// The last batch had refused rows: the next goes straight to staging
    /// instead of trying its rows whole first.
    recent: bool,
}

impl Refusals {
    fn new(inserter: InsertSelect, stage_cols: Vec<String>, relation: String) -> Self {
        Refusals {
            inserter,
            stage_cols,
            relation,
            rules: None,
            key: None,
            recent: false,
        }
    }

    /// The statement listing the rows of `sluice_check` the rules refuse,
    /// with the index of the first rule refusing each, and doing `then`
    /// (a second common table expression that may read `judged`) in the
    /// same statement; `None` without rules.
    fn judge(&self, names: &[String], pg_types: &[String], then: &str) -> Option<String> {
        let rules = self.rules.as_ref().filter(|r| !r.is_empty())?;
        // Values as the table would hold them (rounded, padded) before the rules see them.
        let typed: Vec<String> = names
            .iter()
            .zip(pg_types)
            .map(|(n, t)| format!("{0}::{t} AS {0}", ident(n)))
            .collect();
        let cases: Vec<String> = rules
            .iter()
            .enumerate()
            .map(|(i, (cond, _))| format!("WHEN {cond} THEN {i}"))
            .collect();
        let any: Vec<String> = rules.iter().map(|(cond, _)| format!("({cond})")).collect();
        Some(format!(
            "WITH judged AS (SELECT _sluice_row, CASE {} END AS rule FROM (SELECT _sluice_row, {} FROM sluice_check) s \
             WHERE {}), {then} SELECT _sluice_row, rule FROM judged",
            cases.join(" "),
            typed.join(", "),
            any.join(" OR ")
        ))
    }
}

/// What the judging statement does besides listing the refused rows when
/// the others stay staged: takes the refused ones out of the stage.
const JUDGED_LEAVE: &str = "gone AS (DELETE FROM sluice_check c USING judged j WHERE c._sluice_row = j._sluice_row)";

/// Rows tried from `sluice_check`, numbered from 1 in batch order.
struct StageTrial<'a> {
    sink: &'a PostgresTableSink,
    /// Rows left in the stage (the judged ones are gone): an attempt at all
    /// of them needs no filter.
    staged: usize,
}

#[async_trait]
impl Trial for StageTrial<'_> {
    async fn attempt(&mut self, rows: &[usize], keep: bool) -> Result<Option<String>> {
        let filter = if rows.len() == self.staged {
            String::new()
        } else {
            let rows = refused::row_filter("_sluice_row", rows, 1, |ids| {
                format!("_sluice_row = ANY('{{{ids}}}'::bigint[])")
            });
            format!(" WHERE {rows}")
        };
        let sql = self.sink.refusals.inserter.sql("sluice_check", &filter, "_sluice_row");
        self.sink.attempt(&sql, keep).await
    }

    async fn repeats(&mut self, rows: &[usize]) -> Result<Option<Vec<(usize, String)>>> {
        let sink = self.sink;
        let Some((name, columns)) = &sink.refusals.key else {
            return Ok(None);
        };
        let typed: Vec<String> = columns
            .iter()
            .map(|c| {
                let t = sink
                    .names
                    .iter()
                    .position(|n| n == c)
                    .map_or("text", |i| sink.pg_types[i].as_str());
                format!("{0}::{t} AS {0}", ident(c))
            })
            .collect();
        let present: Vec<String> = columns.iter().map(|c| format!("{} IS NOT NULL", ident(c))).collect();
        let ids: Vec<i64> = rows.iter().map(|i| *i as i64 + 1).collect();
        let sql = format!(
            "SELECT _sluice_row FROM (SELECT _sluice_row, row_number() OVER (PARTITION BY {} ORDER BY _sluice_row) AS n \
             FROM (SELECT _sluice_row, {} FROM sluice_check WHERE _sluice_row = ANY($1)) s WHERE {}) d WHERE n > 1 \
             ORDER BY _sluice_row",
            idents(columns),
            typed.join(", "),
            present.join(" AND ")
        );
        let err = |e| pg_error(&sink.url, e);
        // Reading writes nothing, so this savepoint takes no lock.
        sink.client.batch_execute("SAVEPOINT sluice_judge").await.map_err(err)?;
        let found = match sink.client.query(sql.as_str(), &[&ids]).await {
            Ok(found) => found,
            Err(e) if e.as_db_error().is_some() && !is_transient(&e) => {
                sink.client
                    .batch_execute("ROLLBACK TO SAVEPOINT sluice_judge; RELEASE SAVEPOINT sluice_judge")
                    .await
                    .map_err(err)?;
                return Ok(None);
            }
            Err(e) => return Err(err(e)),
        };
        sink.client
            .batch_execute("RELEASE SAVEPOINT sluice_judge")
            .await
            .map_err(err)?;
        let reason = format!("duplicate key value violates unique constraint \"{name}\"");
        Ok(Some(
            found
                .iter()
                .map(|r| Ok((staged_row(r)?, reason.clone())))
                .collect::<Result<_>>()?,
        ))
    }

    fn undo(&self) -> Undo {
        Undo::Savepoint
    }
}

/// Rows of a batch tried by `COPY`, when they cannot be staged for judging.
struct BatchTrial<'a> {
    sink: &'a PostgresTableSink,
    batch: &'a Batch,
}

#[async_trait]
impl Trial for BatchTrial<'_> {
    async fn attempt(&mut self, rows: &[usize], keep: bool) -> Result<Option<String>> {
        let part = match refused::runs(rows).as_slice() {
            [(a, b)] => self.batch.slice(*a, b - a + 1),
            _ => {
                let mut mask = vec![false; self.batch.num_rows()];
                for &r in rows {
                    mask[r] = true;
                }
                self.batch.filter(&BooleanArray::from(mask))?
            }
        };
        match self.sink.load(&part.data, keep).await {
            Ok(_) => Ok(None),
            Err(LoadError::Server(e)) if is_data_error(&e) => Ok(Some(server_message(&e))),
            Err(LoadError::Server(e)) => Err(pg_error(&self.sink.url, e)),
            Err(LoadError::Sluice(e)) => Err(e),
        }
    }

    fn undo(&self) -> Undo {
        Undo::Savepoint
    }
}

/// The stage row number (`_sluice_row`, from 1) a judging query found, as
/// the index of the row in its batch.
fn staged_row(row: &tokio_postgres::Row) -> Result<usize> {
    let n: i64 = get(row, 0, "a staged row number (_sluice_row)")?;
    usize::try_from(n - 1).map_err(|_| Error::Internal(format!("staged row number {n} is not from 1")))
}

/// Runs `steps` (a transaction, `BEGIN` to `COMMIT`) in order; on a failure
/// rolls back and names the statement, unless the failure may pass when
/// tried again (then the error stays retryable).
async fn run_steps(client: &Client, url: &str, target: &str, steps: &[Statement]) -> Result<()> {
    for step in steps {
        if let Err(e) = execute(client, step).await {
            let _ = client.batch_execute("ROLLBACK").await;
            let e = pg_error(url, e);
            if e.is_retryable() {
                return Err(e);
            }
            return Err(Error::data(target, format!("{e} (while running: {})", step.sql)));
        }
    }
    Ok(())
}

/// Rows per chunk sent while the rest of a batch is encoded.
const COPY_CHUNK_ROWS: usize = 4096;

/// The binary `COPY` tuples a payload carries.
fn tuples_of(payload: &dyn sluice_core::Payload) -> Bytes {
    match payload.as_any().downcast_ref::<super::passthrough::CopyPayload>() {
        Some(p) => p.tuples(),
        None => Bytes::copy_from_slice(payload.bytes()),
    }
}

/// Most batches in one transaction ([`Sink::batches_per_flush`]).
const BATCHES_PER_COMMIT: usize = 8;

/// Why a load failed: the server said no, or sluice could not encode.
enum LoadError {
    Server(tokio_postgres::Error),
    Sluice(Error),
}

impl From<tokio_postgres::Error> for LoadError {
    fn from(e: tokio_postgres::Error) -> Self {
        LoadError::Server(e)
    }
}

#[async_trait]
impl Sink for PostgresTableSink {
    async fn write(&mut self, batch: &Batch) -> Result<Vec<Rejection>> {
        let fresh = self.begin().await?;
        let outcome = self.write_batch(batch, fresh).await;
        let outcome = match (outcome, &batch.position) {
            (Ok(refused), Some(p)) => self.store_position(p).await.map(|()| refused),
            (o, _) => o,
        };
        if outcome.is_err() {
            self.abort().await;
        }
        outcome
    }

    /// Undecoded batches go into the table in one `COPY` together, then
    /// their positions; when the server refuses some row, each batch is
    /// written on its own, which finds it.
    async fn write_all(&mut self, batches: &[&Batch]) -> Result<Vec<Vec<Rejection>>> {
        let together = batches.len() > 1
            && !self.refusals.recent
            && batches
                .iter()
                .all(|b| b.payload.as_ref().is_some_and(|p| self.accepts_payload(p.format())));
        if together {
            let fresh = self.begin().await?;
            let tuples: Vec<Bytes> = batches
                .iter()
                .filter_map(|b| b.payload.as_ref().map(|p| tuples_of(p.as_ref())))
                .collect();
            let outcome = match self.load_encoded(&tuples, fresh).await {
                Ok(()) => Ok(true),
                Err(LoadError::Server(e)) if is_data_error(&e) => {
                    tracing::debug!(target = %self.target, error = %server_message(&e), "rows refused: the batches are written one by one to find them");
                    Ok(false)
                }
                Err(LoadError::Server(e)) => Err(pg_error(&self.url, e)),
                Err(LoadError::Sluice(e)) => Err(e),
            };
            let loaded = match outcome {
                Ok(loaded) => loaded,
                Err(e) => {
                    self.abort().await;
                    return Err(e);
                }
            };
            if loaded {
                // The last position of each partition stands for the others.
                let mut last: Vec<&Position> = Vec::new();
                for p in batches.iter().filter_map(|b| b.position.as_ref()) {
                    match last.iter_mut().find(|q| q.partition == p.partition) {
                        Some(q) => *q = p,
                        None => last.push(p),
                    }
                }
                for p in last {
                    if let Err(e) = self.store_position(p).await {
                        self.abort().await;
                        return Err(e);
                    }
                }
                return Ok(vec![Vec::new(); batches.len()]);
            }
        }
        let mut out = Vec::with_capacity(batches.len());
        for batch in batches {
            out.push(self.write(batch).await?);
        }
        Ok(out)
    }

    async fn flush(&mut self) -> Result<()> {
        if !self.open_tx {
            return Ok(());
        }
        self.open_tx = false;
        self.client
            .batch_execute("COMMIT")
            .await
            .map_err(|e| pg_error(&self.url, e))
    }

    fn accepts_payload(&self, format: &sluice_core::PayloadFormat) -> bool {
        self.passthrough.as_ref() == Some(format)
    }

    /// Each commit waits for the server's WAL flush; batches that queue
    /// behind a busy server share one.
    fn batches_per_flush(&self) -> usize {
        BATCHES_PER_COMMIT
    }

    async fn committed(&mut self) -> Result<Option<Vec<Position>>> {
        let rows = query(&self.client, &self.checkpoints.committed())
            .await
            .map_err(|e| pg_error(&self.url, e))?;
        self.checkpoints.positions(&rows).map(Some)
    }

    async fn finish(&mut self, complete: bool) -> Result<()> {
        if self.open_tx {
            // Whatever was not flushed is not delivered.
            self.abort().await;
        }
        if !complete {
            return Ok(());
        }
        // Keys, indexes, the swap and the end of the "created" marker in one
        // transaction: a crash leaves all of it to do again, or none.
        let mut steps = vec![Statement::plain("BEGIN")];
        steps.extend(self.after.iter().cloned().map(Statement::from));
        steps.extend(
            self.connector
                .record_foreign_keys(&self.foreign_keys, &self.pipeline, self.job)
                .into_iter()
                .map(Statement::from),
        );
        steps.extend(self.loaded.iter().cloned());
        steps.push(Statement::plain("COMMIT"));
        run_steps(&self.client, &self.url, &self.target, &steps).await?;
        // The table is complete whatever happens here: foreign keys that
        // cannot be added now stay recorded for the next table that completes.
        if let Err(e) = self
            .connector
            .add_foreign_keys(&self.client, &self.pipeline, self.job)
            .await
        {
            tracing::warn!(error = %e, "foreign keys left for a later table");
        }
        Ok(())
    }
}

impl PostgresTableSink {
    /// Loads a batch in the open transaction: its encoded rows as they are
    /// when this sink takes them, otherwise (and when the server refuses
    /// some of them) its rows decoded, so each refused row is found on its
    /// own. Returns the rows refused. `fresh`: the transaction holds
    /// nothing yet.
    async fn write_batch(&mut self, batch: &Batch, fresh: bool) -> Result<Vec<Rejection>> {
        let Some(payload) = &batch.payload else {
            return self.write_rows(batch).await;
        };
        if !self.refusals.recent && self.accepts_payload(payload.format()) {
            match self.load_encoded(&[tuples_of(payload.as_ref())], fresh).await {
                Ok(()) => return Ok(Vec::new()),
                Err(LoadError::Server(e)) if is_data_error(&e) => {
                    tracing::debug!(target = %self.target, error = %server_message(&e), "rows refused: the batch is decoded to find them");
                    // Straight to finding the refused rows, not loading the batch whole again.
                    self.refusals.recent = true;
                }
                Err(LoadError::Server(e)) => return Err(pg_error(&self.url, e)),
                Err(LoadError::Sluice(e)) => return Err(e),
            }
        }
        let (decoded, mut refused) = batch.decoded()?;
        refused.extend(self.write_rows(&decoded).await?);
        Ok(refused)
    }

    /// Loads the batch's rows in the open transaction; returns the rows refused.
    async fn write_rows(&mut self, batch: &Batch) -> Result<Vec<Rejection>> {
        let reject = |bad: Vec<(usize, String)>| -> Vec<Rejection> { batch.reject_rows(bad, Stage::Sink, &self.by) };
        if !self.refusals.recent {
            match self.load(&batch.data, true).await {
                // Rows that could not be encoded were left out of the load.
                Ok(bad) => return Ok(reject(bad)),
                Err(LoadError::Server(e)) if is_data_error(&e) => {}
                Err(LoadError::Server(e)) => return Err(pg_error(&self.url, e)),
                Err(LoadError::Sluice(e)) => return Err(e),
            }
        }
        // The server refuses rows of the batch: set aside what does not
        // encode, then isolate what the server refuses.
        let mut scratch = Vec::new();
        let bad = encode_rows(&self.encoders, &self.names, &self.pg_types, &batch.data, &mut scratch)
            .map_err(|e| Error::config("sinks", format!("{}: {e}", self.target)))?;
        let mut keep = vec![true; batch.num_rows()];
        for (row, _) in &bad {
            keep[*row] = false;
        }
        let mut refused = reject(bad);
        let good = batch.filter(&BooleanArray::from(keep))?;
        let found = self.load_isolating(&good).await?;
        self.refusals.recent = !found.is_empty();
        refused.extend(good.reject_rows(found, Stage::Sink, &self.by));
        Ok(refused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_fit_postgres_limits() {
        assert_eq!(
            object_name("orders", &["customer_id".into()], "fkey"),
            "orders_customer_id_fkey"
        );
        let long = object_name(&"t".repeat(60), &["c".repeat(20)], "idx");
        assert!(long.len() <= 63, "{long}");
    }
}
