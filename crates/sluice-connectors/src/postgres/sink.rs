//! The PostgreSQL sink: binary `COPY FROM STDIN` into the table, or into a
//! temporary stage table followed by `INSERT … SELECT` for upserts and for
//! columns whose type has no binary encoder here (the stage holds them as
//! text and the server casts them).
//!
//! Tables are created from the stream's schema (the source's own types when
//! it is PostgreSQL, otherwise the mapping in [`super::types`]); keys,
//! indexes, identity columns and foreign keys are added after the load, when
//! they cost least. A batch the server refuses for its data (SQLSTATE classes
//! 22 and 23) is bisected into zero-copy slices until the refused rows are
//! isolated; they become rejections with the server's message and the rest
//! loads.
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

use std::sync::Arc;

use arrow::array::{BooleanArray, RecordBatch};
use async_trait::async_trait;
use bytes::Bytes;
use futures::SinkExt;
use sluice_core::dbmeta::{ColumnMeta, TableMeta};
use sluice_core::{Batch, Error, Position, Rejection, Result, Sink, SinkConnector, Stage, StreamInfo};
use tokio_postgres::Client;

use super::config::{PostgresSinkConfig, WriteMode, redact};
use super::encode::{Encode, HEADER, TRAILER, encode_rows};
use super::types::{TypeCache, ddl_type, encoder, ident, literal, qualified};
use super::{ENUM_LABELS, connect, is_data_error, is_transient, pg_error, server_message};
use crate::ledger::{self, Action, Clear, Done, Found, JobRecord};

/// Writes streams into PostgreSQL tables.
#[derive(Clone)]
pub struct PostgresSink {
    cfg: PostgresSinkConfig,
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
        Ok(PostgresSink { cfg })
    }

    fn schema(&self) -> &str {
        self.cfg.schema.as_deref().unwrap_or("public")
    }

    /// The tables sluice keeps its own records in, in the sink's schema.
    fn bookkeeping(&self) -> String {
        let schema = ident(self.schema());
        format!(
            "{}; {}",
            CHECKPOINT_TABLE.replace("{schema}", &schema),
            FOREIGN_KEY_TABLE.replace("{schema}", &schema)
        )
    }

    fn table_name(&self, stream: &str) -> String {
        self.cfg.table.replace("{stream}", stream)
    }

    /// Plans the DDL for a stream against the current state of the database.
    /// `created` says an interrupted run of this job created the table: it is
    /// planned as new (keys and indexes come after the load) though it exists.
    pub async fn plan_table(&self, client: &Client, stream: &StreamInfo, created: bool) -> Result<TablePlan> {
        let schema = self.schema();
        let table = self.table_name(&stream.name);
        let target = qualified(schema, &table);
        let exists: Option<String> = client
            .query_one("SELECT to_regclass($1)::text", &[&target])
            .await
            .map_err(|e| pg_error(&self.cfg.url, e))?
            .get(0);
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
        for f in stream.schema.fields() {
            let cm = ColumnMeta::of(f);
            let ty = match self.cfg.type_override(&table, f.name()) {
                Some(t) => t.to_string(),
                None => {
                    let (t, warn) = ddl_type(f.data_type(), &cm)
                        .map_err(|e| Error::config(format!("sinks.types.\"{table}.{}\"", f.name()), e))?;
                    if let Some(w) = warn {
                        plan.warnings.push(format!("{table}.{}: {w}", f.name()));
                    }
                    t
                }
            };
            if let Some(labels) = f.metadata().get(ENUM_LABELS)
                && cm.dialect.as_deref() == Some("postgres")
            {
                let labels: Vec<String> = serde_json::from_str(labels).unwrap_or_default();
                let name = ty.trim_end_matches("[]");
                let list = labels.iter().map(|l| literal(l)).collect::<Vec<_>>().join(", ");
                plan.before.push(format!(
                    "DO $$ BEGIN CREATE TYPE {name} AS ENUM ({list}); EXCEPTION WHEN duplicate_object THEN NULL; END $$"
                ));
            }
            let not_null = if f.is_nullable() { "" } else { " NOT NULL" };
            columns.push(format!("{} {ty}{not_null}", ident(f.name())));
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
                plan.after.push(format!(
                    "CREATE {unique}INDEX {} ON {target} ({})",
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
                        "ALTER TABLE {target} ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {references} ({})",
                        ident(&name),
                        idents(&fk.columns),
                        idents(&fk.ref_columns)
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
            let (name, table, sql, refs, ready, present): (String, String, String, String, bool, bool) =
                (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4), row.get(5));
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
    /// What the job ledger needs to know about `table` (loaded through `load`).
    async fn found(&self, client: &Client, pipeline: &str, table: &str, load: &str) -> Result<Found> {
        let err = |e| pg_error(&self.cfg.url, e);
        let checkpoints = qualified(self.schema(), "_sluice_checkpoints");
        let row = client
            .query_one(
                &format!(
                    "SELECT (SELECT job FROM {checkpoints} WHERE pipeline = $1 AND target = $2 AND partition = ''), \
                     (SELECT cursor FROM {checkpoints} WHERE pipeline = $1 AND target = $2 AND partition = ''), \
                     ARRAY(SELECT DISTINCT job FROM {checkpoints} WHERE pipeline = $1 AND target = $3 \
                       AND partition <> ''), \
                     ARRAY(SELECT DISTINCT pipeline FROM {checkpoints} WHERE target IN ($2, $3) AND pipeline <> $1), \
                     to_regclass($2) IS NOT NULL"
                ),
                &[&pipeline, &table, &load],
            )
            .await
            .map_err(err)?;
        let job: Option<i64> = row.get(0);
        let cursor: Option<String> = row.get(1);
        let exists: bool = row.get(4);
        let has_rows = exists
            && client
                .query_one(&format!("SELECT EXISTS (SELECT 1 FROM {table})"), &[])
                .await
                .map_err(err)?
                .get::<_, bool>(0);
        Ok(Found {
            record: job.map(|j| JobRecord::parse(j, cursor.as_deref().unwrap_or(""))),
            position_jobs: row.get(2),
            exists,
            has_rows,
            other_pipelines: row.get(3),
        })
    }
}

/// Stores the job record of `table` (its row with an empty partition).
fn record_sql(checkpoints: &str, pipeline: &str, table: &str, record: &JobRecord) -> String {
    format!(
        "INSERT INTO {checkpoints} (pipeline, target, partition, cursor, rows, job) VALUES ({}, {}, '', {}, 0, {}) \
         ON CONFLICT (pipeline, target, partition) DO UPDATE SET cursor = EXCLUDED.cursor, job = EXCLUDED.job, \
         updated_at = now()",
        literal(pipeline),
        literal(table),
        literal(&record.cursor()),
        record.job
    )
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
    let mut name = format!("{table}_{}_{suffix}", columns.join("_"));
    let mut end = name.len().min(63);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name.truncate(end);
    name
}

#[async_trait]
impl SinkConnector for PostgresSink {
    fn name(&self) -> &str {
        "postgres"
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
        statements.extend(self.plan_table(&client, stream, false).await?.statements());
        Ok(statements)
    }

    async fn check(&self, streams: &[StreamInfo]) -> Result<Vec<String>> {
        let client = connect(&self.cfg.url).await?;
        let err = |e| pg_error(&self.cfg.url, e);
        let version: String = client.query_one("SHOW server_version", &[]).await.map_err(err)?.get(0);
        let mut lines = vec![format!("connected to {} (PostgreSQL {version})", redact(&self.cfg.url))];
        let schema = self.schema();
        let can_create: bool = client
            .query_one("SELECT has_schema_privilege($1, 'CREATE')", &[&schema])
            .await
            .map_err(|e| {
                Error::config(
                    "sinks.schema",
                    format!("schema `{schema}` of {}: {}", redact(&self.cfg.url), server_message(&e)),
                )
            })?
            .get(0);
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
            let (exists, insert, update, owner): (bool, bool, bool, bool) =
                (row.get(0), row.get(1), row.get(2), row.get(3));
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
        let client = connect(&self.cfg.url).await?;
        let err = |e| pg_error(&self.cfg.url, e);
        let checkpoints = qualified(self.schema(), "_sluice_checkpoints");
        let fks = qualified(self.schema(), "_sluice_foreign_keys");
        let have: bool = client
            .query_one(
                "SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL",
                &[&checkpoints, &fks],
            )
            .await
            .map_err(err)?
            .get(0);
        if !have {
            client.batch_execute(&self.bookkeeping()).await.map_err(err)?;
        }
        let table = self.table_name(&stream.name);
        let load_name = match self.cfg.mode {
            WriteMode::Replace => format!("{table}__sluice_new"),
            _ => table.clone(),
        };
        let key = qualified(self.schema(), &load_name);
        let final_key = qualified(self.schema(), &table);
        let found = self.found(&client, &stream.pipeline, &final_key, &key).await?;
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
        let mut setup = vec!["BEGIN".to_string()];
        match start {
            Some(clear) => {
                setup.push(format!(
                    "DELETE FROM {checkpoints} WHERE pipeline = {} AND target IN ({}, {})",
                    literal(&stream.pipeline),
                    literal(&key),
                    literal(&final_key)
                ));
                setup.push(format!(
                    "DELETE FROM {fks} WHERE pipeline = {} AND table_name = {}",
                    literal(&stream.pipeline),
                    literal(&final_key)
                ));
                match clear {
                    Clear::Nothing => {}
                    Clear::Truncate => setup.push(format!("TRUNCATE {final_key}")),
                    // Foreign keys pointing at the table go with it; those
                    // of tables this pipeline loads are added again when
                    // their tables complete.
                    Clear::Recreate => setup.push(format!("DROP TABLE IF EXISTS {final_key} CASCADE")),
                }
                setup.extend(plan.before.iter().cloned());
            }
            // A table the job created is there (created with its record).
            None if !created => setup.extend(plan.before.iter().cloned()),
            None => {}
        }
        let record = ledger::opening_record(&found, stream.job, created);
        setup.push(record_sql(&checkpoints, &stream.pipeline, &final_key, &record));
        setup.push("COMMIT".into());
        run_steps(&client, &self.cfg.url, &self.target(&stream.name), &setup).await?;
        let load = qualified(self.schema(), &plan.load_table);
        let cols = client
            .query(
                "SELECT a.attname::text, a.atttypid, a.atttypmod, format_type(a.atttypid, a.atttypmod) \
                 FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped",
                &[&load],
            )
            .await
            .map_err(err)?;
        let mut types = TypeCache::default();
        let mut encoders = Vec::new();
        let mut names = Vec::new();
        let mut pg_types = Vec::new();
        let mut stage_cols = Vec::new();
        let mut select = Vec::new();
        for f in stream.schema.fields() {
            let row = cols.iter().find(|r| r.get::<_, String>(0) == *f.name()).or_else(|| {
                cols.iter()
                    .find(|r| r.get::<_, String>(0).eq_ignore_ascii_case(f.name()))
            });
            let Some(row) = row else {
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
            let name: String = row.get(0);
            let format: String = row.get(3);
            let resolved = types
                .resolve(&client, row.get(1), row.get(2), &format)
                .await
                .map_err(err)?;
            match encoder(&resolved) {
                Some(e) => {
                    stage_cols.push(format!("{} {format}", ident(&name)));
                    select.push(ident(&name));
                    encoders.push(e);
                }
                None => {
                    stage_cols.push(format!("{} text", ident(&name)));
                    select.push(format!("{}::{format}", ident(&name)));
                    encoders.push(Encode::Text);
                }
            }
            names.push(name);
            pg_types.push(format);
        }
        let column_list = idents(&names);
        let staged = self.cfg.mode == WriteMode::Upsert || encoders.iter().zip(&select).any(|(_, s)| s.contains("::"));
        let insert = if staged {
            client
                .batch_execute(&format!(
                    "CREATE TEMP TABLE IF NOT EXISTS sluice_stage ({})",
                    stage_cols.join(", ")
                ))
                .await
                .map_err(err)?;
            let mut sql = format!("INSERT INTO {load} ({column_list}) ");
            if self.cfg.mode == WriteMode::Upsert {
                let keys = idents(&plan.key);
                sql.push_str(&format!(
                    "SELECT DISTINCT ON ({keys}) {} FROM sluice_stage ORDER BY {keys}, ctid DESC ON CONFLICT ({keys}) ",
                    select.join(", ")
                ));
                let updates: Vec<String> = names
                    .iter()
                    .filter(|n| !plan.key.contains(n))
                    .map(|n| format!("{0} = EXCLUDED.{0}", ident(n)))
                    .collect();
                if updates.is_empty() {
                    sql.push_str("DO NOTHING");
                } else {
                    sql.push_str(&format!("DO UPDATE SET {}", updates.join(", ")));
                }
            } else {
                sql.push_str(&format!("SELECT {} FROM sluice_stage", select.join(", ")));
            }
            Some(sql)
        } else {
            None
        };
        let copy_into = if staged {
            "sluice_stage".to_string()
        } else {
            load.clone()
        };
        Ok(Box::new(PostgresTableSink {
            client,
            url: self.cfg.url.clone(),
            copy: format!("COPY {copy_into} ({column_list}) FROM STDIN (FORMAT binary)"),
            insert,
            encoders,
            names,
            pg_types,
            after: plan.after,
            foreign_keys: plan.foreign_keys,
            checkpoint: format!(
                "INSERT INTO {checkpoints} (pipeline, target, partition, cursor, rows, job) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (pipeline, target, partition) DO UPDATE SET cursor = EXCLUDED.cursor, rows = EXCLUDED.rows, \
                 job = EXCLUDED.job, updated_at = now()"
            ),
            committed: format!(
                "SELECT partition, cursor, rows FROM {checkpoints} \
                 WHERE pipeline = $1 AND target = $2 AND partition <> '' AND job = $3"
            ),
            // After a swap the load table is gone and so is what its
            // checkpoints described; a table loaded in place keeps its
            // positions (an incremental source goes on from them). The job
            // record says the load is whole.
            loaded: {
                let complete = JobRecord {
                    complete: true,
                    ..record
                };
                let done = record_sql(&checkpoints, &stream.pipeline, &final_key, &complete);
                if self.cfg.mode == WriteMode::Replace {
                    format!(
                        "DELETE FROM {checkpoints} WHERE pipeline = {} AND target = {}; {done}",
                        literal(&stream.pipeline),
                        literal(&key)
                    )
                } else {
                    done
                }
            },
            pipeline: stream.pipeline.to_string(),
            job: stream.job,
            key,
            open_tx: false,
            by: "postgres".into(),
            target: self.target(&stream.name),
            connector: self.clone(),
        }))
    }
}

/// One stream being written into one table.
struct PostgresTableSink {
    client: Client,
    url: String,
    copy: String,
    /// `INSERT … SELECT` from the stage, when loading through it.
    insert: Option<String>,
    encoders: Vec<Encode>,
    names: Vec<String>,
    pg_types: Vec<String>,
    after: Vec<String>,
    /// Foreign keys, recorded with the complete table and added once the
    /// tables they reference are loaded.
    foreign_keys: Vec<PendingFk>,
    /// Upserts one partition's checkpoint (pipeline, target, partition, cursor, rows).
    checkpoint: String,
    /// Reads this table's checkpoints (pipeline, target).
    committed: String,
    /// Marks the job record complete (and, after a swap, drops the new
    /// table's positions) once the load is whole.
    loaded: String,
    pipeline: String,
    /// The job, which owns the checkpoints it writes.
    job: i64,
    /// The load table, which keys its checkpoints.
    key: String,
    /// A batch's transaction is open, waiting for `flush` to commit it.
    open_tx: bool,
    by: Arc<str>,
    target: String,
    connector: PostgresSink,
}

/// The checkpoints stored with the data, one row per partition of each table
/// a pipeline loads, and its job record (partition '').
const CHECKPOINT_TABLE: &str = "CREATE TABLE IF NOT EXISTS {schema}._sluice_checkpoints (
    pipeline text NOT NULL,
    target text NOT NULL,
    partition text NOT NULL,
    cursor text NOT NULL,
    rows bigint NOT NULL,
    job bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pipeline, target, partition))";

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
    /// Loads `data` in one `COPY` (through the stage when there is one)
    /// inside the batch's transaction, under a savepoint so a refused load
    /// leaves the transaction usable; encodes a chunk at a time while the
    /// server ingests the chunks already sent. Rows that cannot be encoded
    /// are left out and returned.
    async fn load(&self, data: &RecordBatch) -> std::result::Result<Vec<(usize, String)>, LoadError> {
        self.client.batch_execute("SAVEPOINT sluice_load").await?;
        let result = async {
            let sink = self.client.copy_in::<_, Bytes>(self.copy.as_str()).await?;
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
            if let Some(insert) = &self.insert {
                self.client.batch_execute(insert).await?;
                self.client.batch_execute("TRUNCATE sluice_stage").await?;
            }
            self.client.batch_execute("RELEASE SAVEPOINT sluice_load").await?;
            Ok(bad)
        }
        .await;
        if result.is_err() {
            let _ = self.client.batch_execute("ROLLBACK TO SAVEPOINT sluice_load").await;
        }
        result
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
        let rows = p.rows as i64;
        self.client
            .execute(
                self.checkpoint.as_str(),
                &[
                    &self.pipeline,
                    &self.key,
                    &&*p.partition,
                    &p.cursor.to_string(),
                    &rows,
                    &self.job,
                ],
            )
            .await
            .map_err(|e| pg_error(&self.url, e))?;
        Ok(())
    }

    /// Loads `batch`, isolating rows the server refuses by bisection. Every
    /// row of `batch` must encode.
    async fn load_bisecting(&self, batch: &Batch, refused: &mut Vec<Rejection>) -> Result<()> {
        let mut work = vec![(0usize, batch.num_rows())];
        while let Some((offset, len)) = work.pop() {
            if len == 0 {
                continue;
            }
            let part = batch.slice(offset, len);
            match self.load(&part.data).await {
                Ok(_) => {}
                Err(LoadError::Server(e)) if is_data_error(&e) => {
                    if len == 1 {
                        refused.push(part.reject_row(0, Stage::Sink, &self.by, server_message(&e)));
                    } else {
                        let half = len / 2;
                        work.push((offset + half, len - half));
                        work.push((offset, half));
                    }
                }
                Err(LoadError::Server(e)) => return Err(pg_error(&self.url, e)),
                Err(LoadError::Sluice(e)) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Runs `steps` (a transaction, `BEGIN` to `COMMIT`) in order; on a failure
/// rolls back and names the statement, unless the failure may pass when
/// tried again (then the error stays retryable).
async fn run_steps(client: &Client, url: &str, target: &str, steps: &[String]) -> Result<()> {
    for sql in steps {
        if let Err(e) = client.batch_execute(sql).await {
            let _ = client.batch_execute("ROLLBACK").await;
            let e = pg_error(url, e);
            if e.is_retryable() {
                return Err(e);
            }
            return Err(Error::data(target, format!("{e} (while running: {sql})")));
        }
    }
    Ok(())
}

/// Rows per chunk sent while the rest of a batch is encoded.
const COPY_CHUNK_ROWS: usize = 4096;

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
        if !self.open_tx {
            self.client
                .batch_execute("BEGIN")
                .await
                .map_err(|e| pg_error(&self.url, e))?;
            self.open_tx = true;
        }
        let outcome = self.write_rows(batch).await;
        let outcome = match (outcome, &batch.position) {
            (Ok(refused), Some(p)) => self.store_position(p).await.map(|()| refused),
            (o, _) => o,
        };
        if outcome.is_err() {
            self.abort().await;
        }
        outcome
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

    async fn committed(&mut self) -> Result<Option<Vec<Position>>> {
        let rows = self
            .client
            .query(self.committed.as_str(), &[&self.pipeline, &self.key, &self.job])
            .await
            .map_err(|e| pg_error(&self.url, e))?;
        let positions = rows
            .iter()
            .map(|r| Position::stored(r.get(0), r.get(1), r.get::<_, i64>(2) as u64))
            .collect();
        Ok(Some(positions))
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
        let mut steps = vec!["BEGIN".to_string()];
        steps.extend(self.after.iter().cloned());
        steps.extend(
            self.connector
                .record_foreign_keys(&self.foreign_keys, &self.pipeline, self.job),
        );
        steps.push(self.loaded.clone());
        steps.push("COMMIT".into());
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
    /// Loads the batch's rows in the open transaction; returns the rows refused.
    async fn write_rows(&mut self, batch: &Batch) -> Result<Vec<Rejection>> {
        let reject = |bad: Vec<(usize, String)>| -> Vec<Rejection> {
            bad.into_iter()
                .map(|(row, reason)| batch.reject_row(row, Stage::Sink, &self.by, reason))
                .collect()
        };
        match self.load(&batch.data).await {
            // Rows that could not be encoded were left out of the load.
            Ok(bad) => return Ok(reject(bad)),
            Err(LoadError::Server(e)) if is_data_error(&e) => {}
            Err(LoadError::Server(e)) => return Err(pg_error(&self.url, e)),
            Err(LoadError::Sluice(e)) => return Err(e),
        }
        // The server refused the batch: set aside what does not encode, then
        // isolate what the server refuses.
        let mut scratch = Vec::new();
        let bad = encode_rows(&self.encoders, &self.names, &self.pg_types, &batch.data, &mut scratch)
            .map_err(|e| Error::config("sinks", format!("{}: {e}", self.target)))?;
        let mut keep = vec![true; batch.num_rows()];
        for (row, _) in &bad {
            keep[*row] = false;
        }
        let mut refused = reject(bad);
        let good = batch.filter(&BooleanArray::from(keep))?;
        self.load_bisecting(&good, &mut refused).await?;
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
