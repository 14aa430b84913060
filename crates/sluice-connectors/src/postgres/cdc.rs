//! PostgreSQL change capture: logical replication with `pgoutput`.
//!
//! [`PostgresChanges::prepare`] creates the publication and the slot when
//! they are missing; a slot created now exports a snapshot, which the copy
//! of the tables reads at while the replication session waits, so the copy
//! and the changes meet at the slot's consistent point. A resumed copy (the
//! snapshot is gone with the session that held it) reads the tables as
//! they are; the changes since the slot's start, applied after it as
//! upserts and deletes by key, bring every row to its last state.
//!
//! Rows are decoded by the snapshot's own binary `COPY` decoders: each
//! change's tuple is turned into a `COPY` tuple ([`pgoutput::Tuple`]), so
//! a column has one type whether it was copied or captured.
//!
//! A change's position is its transaction's commit LSN and its number in
//! the transaction; a batch carries the position of its last change, and
//! the commit's end LSN when it ends the transaction. Only such ends are
//! confirmed to the server.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use pgwire_replication::{Lsn, ReplicationClient, ReplicationConfig, ReplicationEvent};
use sluice_core::{
    Batch, BatchLimits, CHANGES_PARTITION, ChangeFeed, ChangeSource, Changes, Error, Position, Prepared, Result,
    Source, StreamSpec, reserved,
};
use tokio_postgres::Client;

use super::config::{PostgresSourceConfig, redact};
use super::decode::{Decode, TupleDecoder};
use super::pgoutput::{self, Message, OldKind, Tuple, Value};
use super::source::PostgresSource;
use super::types::qualified;
use super::{connect, get, pg_error};

/// The column listing, per row, the columns an update left unchanged (large
/// values the server did not send), as a JSON array of names; sinks keep
/// what they hold for them.
pub const UNCHANGED: &str = "_unchanged";

/// How often the confirmed position is reported to the server.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);

/// How long closing waits for the last confirmed position to be reported.
const FINAL_STATUS_WAIT: Duration = Duration::from_secs(3);

/// How long the server may take to accept `START_REPLICATION`.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Change capture of the tables a PostgreSQL source names.
pub struct PostgresChanges {
    cfg: PostgresSourceConfig,
    source: PostgresSource,
    /// The replication session that created the slot, holding its exported
    /// snapshot until the feed starts on it.
    created: tokio::sync::Mutex<Option<ReplicationClient>>,
}

impl PostgresChanges {
    pub fn new(cfg: PostgresSourceConfig) -> Result<Self> {
        if cfg.query.is_some() {
            return Err(Error::config(
                "source.query",
                "change capture reads tables, not a query; name them with table/tables",
            ));
        }
        Ok(PostgresChanges {
            source: PostgresSource::new(PostgresSourceConfig {
                snapshot: None,
                ..cfg.clone()
            })?,
            cfg,
            created: tokio::sync::Mutex::new(None),
        })
    }

    fn slot(&self) -> &str {
        self.cfg.slot.as_deref().unwrap_or("sluice")
    }

    fn publication(&self) -> &str {
        self.cfg.publication.as_deref().unwrap_or("sluice")
    }

    fn err(&self, e: tokio_postgres::Error) -> Error {
        pg_error(&self.cfg.url, e)
    }

    /// The replication session's settings, from the source's URL.
    fn replication_config(&self) -> Result<ReplicationConfig> {
        let bad = |why: &str| Error::config("source.url", format!("{}: {why}", redact(&self.cfg.url)));
        let pg: tokio_postgres::Config = self.cfg.url.parse().map_err(|e| bad(&format!("{e}")))?;
        let user = pg.get_user().unwrap_or("postgres").to_string();
        let password = pg
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default();
        let database = pg.get_dbname().unwrap_or(&user).to_string();
        let port = pg.get_ports().first().copied().unwrap_or(5432);
        let (slot, publication) = (self.slot().to_string(), self.publication().to_string());
        let cfg = match pg.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(host)) => {
                ReplicationConfig::new(host.clone(), user, password, database, slot, publication).with_port(port)
            }
            #[cfg(unix)]
            Some(tokio_postgres::config::Host::Unix(dir)) => {
                ReplicationConfig::unix(dir.to_string_lossy(), port, user, password, database, slot, publication)
            }
            None => ReplicationConfig::new("localhost", user, password, database, slot, publication).with_port(port),
        };
        Ok(cfg
            .with_binary(true)
            .with_status_interval(STATUS_INTERVAL)
            .with_wakeup_interval(Duration::from_secs(1)))
    }

    /// The slot's state: `None` when missing, else whether it lost WAL it
    /// needs (`wal_status = 'lost'`) and its plugin.
    async fn slot_state(&self, client: &Client) -> Result<Option<(bool, String)>> {
        let row = client
            .query_opt(
                "SELECT coalesce(wal_status = 'lost', false), coalesce(plugin, ''), database \
                 FROM pg_replication_slots WHERE slot_name = $1",
                &[&self.slot()],
            )
            .await
            .map_err(|e| self.err(e))?;
        row.map(|r| Ok((get(&r, 0, "pg_replication_slots.wal_status")?, get(&r, 1, "pg_replication_slots.plugin")?)))
            .transpose()
    }

    /// Creates the publication for `tables`, or adds the tables it lacks.
    async fn publish(&self, client: &Client, tables: &[String], notes: &mut Vec<String>) -> Result<()> {
        let schema = self.source.schema_name().to_string();
        let listed: Vec<String> = tables.iter().map(|t| qualified(&schema, t)).collect();
        let exists = client
            .query_opt("SELECT 1 FROM pg_publication WHERE pubname = $1", &[&self.publication()])
            .await
            .map_err(|e| self.err(e))?
            .is_some();
        let name = super::types::ident(self.publication());
        if !exists {
            client
                .batch_execute(&format!("CREATE PUBLICATION {name} FOR TABLE {}", listed.join(", ")))
                .await
                .map_err(|e| self.err(e))?;
            notes.push(format!("publication {} created for {} tables", self.publication(), tables.len()));
            return Ok(());
        }
        let published: Vec<String> = client
            .query(
                "SELECT tablename::text FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2",
                &[&self.publication(), &schema],
            )
            .await
            .map_err(|e| self.err(e))?
            .iter()
            .map(|r| get(r, 0, "pg_publication_tables.tablename"))
            .collect::<Result<_>>()?;
        let missing: Vec<&String> = tables.iter().filter(|t| !published.contains(t)).collect();
        if !missing.is_empty() {
            let list: Vec<String> = missing.iter().map(|t| qualified(&schema, t)).collect();
            client
                .batch_execute(&format!("ALTER PUBLICATION {name} ADD TABLE {}", list.join(", ")))
                .await
                .map_err(|e| self.err(e))?;
            notes.push(format!("publication {}: added {}", self.publication(), list.join(", ")));
        }
        Ok(())
    }

    /// The lost-slot error: the run stops, and copying again is the user's call.
    fn lost(&self) -> Error {
        Error::connection(
            redact(&self.cfg.url),
            format!(
                "replication slot {} was invalidated (the server removed WAL it still needed, \
                 max_slot_wal_keep_size); changes since the last confirmed position are lost. \
                 Run again with --resnapshot to copy every table afresh",
                self.slot()
            ),
        )
    }
}

#[async_trait]
impl ChangeSource for PostgresChanges {
    fn name(&self) -> &str {
        "postgres"
    }

    async fn prepare(&self) -> Result<Prepared> {
        let client = connect(&self.cfg.url).await?;
        let r = client.query_one("SHOW wal_level", &[]).await.map_err(|e| self.err(e))?;
        let level: String = get(&r, 0, "wal_level")?;
        if level != "logical" {
            return Err(Error::config(
                "source",
                format!(
                    "{}: wal_level is {level}; change capture needs logical decoding: \
                     ALTER SYSTEM SET wal_level = logical, then restart the server",
                    redact(&self.cfg.url)
                ),
            ));
        }
        let streams = self.source.discover().await?;
        for s in &streams {
            let columns = self.source.decoding(&s.name).unwrap_or_default();
            if let Some((name, _, _)) = columns.iter().find(|(_, _, as_text)| *as_text) {
                let ty = s
                    .schema
                    .field_with_name(name)
                    .ok()
                    .and_then(|f| sluice_core::dbmeta::ColumnMeta::of(f).db_type)
                    .unwrap_or_default();
                return Err(Error::config(
                    "source.tables",
                    format!(
                        "{}.{name} is of type {ty}, whose binary form sluice cannot decode from the log; \
                         leave the table out (exclude) or change the column's type",
                        s.name
                    ),
                ));
            }
            let meta = sluice_core::dbmeta::TableMeta::of(&s.schema).unwrap_or_default();
            if meta.primary_key.is_empty() {
                return Err(Error::config(
                    "source.tables",
                    format!(
                        "table {} has no primary key: its changes cannot be applied by key; \
                         add one or leave the table out (exclude)",
                        s.name
                    ),
                ));
            }
        }
        let mut notes = Vec::new();
        let tables: Vec<String> = streams.iter().map(|s| s.name.to_string()).collect();
        self.publish(&client, &tables, &mut notes).await?;
        let (snapshot, created) = match self.slot_state(&client).await? {
            Some((true, _)) => return Err(self.lost()),
            Some((false, plugin)) if plugin != "pgoutput" => {
                return Err(Error::config(
                    "source.slot",
                    format!("slot {} decodes with {plugin}, not pgoutput; name another slot", self.slot()),
                ));
            }
            Some(_) => (None, false),
            None => {
                let mut session = ReplicationClient::connect_gated(self.replication_config()?)
                    .await
                    .map_err(|e| Error::connection(redact(&self.cfg.url), e.to_string()))?;
                let rows = session
                    .simple_query(&format!(
                        "CREATE_REPLICATION_SLOT {} LOGICAL pgoutput (SNAPSHOT 'export')",
                        super::types::ident(self.slot())
                    ))
                    .await
                    .map_err(|e| Error::connection(redact(&self.cfg.url), format!("creating the slot: {e}")))?;
                let snapshot = rows
                    .first()
                    .and_then(|r| r.get(2).cloned().flatten())
                    .map(|b| String::from_utf8_lossy(&b).into_owned());
                notes.push(format!("replication slot {} created", self.slot()));
                *self.created.lock().await = Some(session);
                (snapshot, true)
            }
        };
        Ok(Prepared {
            streams: streams
                .into_iter()
                .map(|s| StreamSpec {
                    schema: change_schema(&s.schema),
                    ..s
                })
                .collect(),
            snapshot,
            created,
            notes,
        })
    }

    async fn start(&self, applied: HashMap<String, Position>) -> Result<Box<dyn ChangeFeed>> {
        let held = self.created.lock().await.take();
        let mut session = match held {
            Some(s) => s,
            None => {
                let client = connect(&self.cfg.url).await?;
                match self.slot_state(&client).await? {
                    Some((true, _)) => return Err(self.lost()),
                    None => {
                        return Err(Error::connection(
                            redact(&self.cfg.url),
                            format!(
                                "replication slot {} is gone (dropped by hand?); changes since the last \
                                 confirmed position are lost. Run again with --resnapshot to copy every table afresh",
                                self.slot()
                            ),
                        ));
                    }
                    Some(_) => {}
                }
                ReplicationClient::connect_gated(self.replication_config()?)
                    .await
                    .map_err(|e| Error::connection(redact(&self.cfg.url), e.to_string()))?
            }
        };
        let failed = |e: pgwire_replication::PgWireError| Error::connection(redact(&self.cfg.url), e.to_string());
        session.start().await.map_err(failed)?;
        match tokio::time::timeout(START_TIMEOUT, session.wait_started()).await {
            Ok(r) => r.map_err(failed)?,
            Err(_) => {
                return Err(Error::retryable(
                    redact(&self.cfg.url),
                    format!("the server did not start replication within {START_TIMEOUT:?}"),
                ));
            }
        }
        let schema = self.source.schema_name().to_string();
        let mut tables = HashMap::new();
        for s in self.source.discover().await? {
            let columns = self.source.decoding(&s.name).unwrap_or_default();
            let meta = sluice_core::dbmeta::TableMeta::of(&s.schema).unwrap_or_default();
            let key = meta
                .primary_key
                .iter()
                .filter_map(|k| columns.iter().position(|(n, _, _)| n == k))
                .collect();
            let after = applied.get(s.name.as_ref()).and_then(|p| Ordinal::of(&p.cursor));
            tables.insert(
                (schema.clone(), s.name.to_string()),
                Table::new(&s, columns, key, after),
            );
        }
        Ok(Box::new(PostgresFeed {
            session,
            url: redact(&self.cfg.url),
            tables,
            relations: HashMap::new(),
            txn: None,
            runs: Vec::new(),
            wal_end: 0,
            confirmed: 0,
        }))
    }

    async fn reset(&self) -> Result<()> {
        let client = connect(&self.cfg.url).await?;
        client
            .execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
                &[&self.slot()],
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    async fn check(&self, streams: &[StreamSpec]) -> Result<Vec<String>> {
        let client = connect(&self.cfg.url).await?;
        let r = client
            .query_one(
                "SELECT current_setting('wal_level'), rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user",
                &[],
            )
            .await
            .map_err(|e| self.err(e))?;
        let level: String = get(&r, 0, "wal_level")?;
        let may: bool = get(&r, 1, "the REPLICATION attribute")?;
        let mut lines = Vec::new();
        lines.push(match level.as_str() {
            "logical" => "wal_level = logical".to_string(),
            other => format!("wal_level = {other}: ALTER SYSTEM SET wal_level = logical, then restart the server"),
        });
        lines.push(if may {
            "the user may replicate".to_string()
        } else {
            "the user lacks REPLICATION: ALTER ROLE … WITH REPLICATION".to_string()
        });
        lines.push(match self.slot_state(&client).await? {
            None => format!("slot {} will be created", self.slot()),
            Some((true, _)) => format!("slot {} was invalidated: run with --resnapshot", self.slot()),
            Some(_) => format!("slot {} exists", self.slot()),
        });
        lines.push(format!("{} tables captured", streams.len()));
        Ok(lines)
    }
}

/// Where a change stands in the log: its transaction's commit LSN and its
/// number in the transaction (from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Ordinal {
    lsn: u64,
    seq: u64,
}

impl Ordinal {
    fn of(cursor: &serde_json::Value) -> Option<Ordinal> {
        Some(Ordinal {
            lsn: cursor.get("lsn")?.as_u64()?,
            seq: cursor.get("seq")?.as_u64()?,
        })
    }
}

/// A table whose changes are captured.
struct Table {
    name: Arc<str>,
    /// The batch schema: the table's columns, `_op`, `_unchanged`.
    schema: SchemaRef,
    columns: Vec<(String, Decode, bool)>,
    /// Indexes of the primary key's columns.
    key: Vec<usize>,
    /// The last change a sink holds; earlier ones are left out.
    after: Option<Ordinal>,
    /// Changes passed on this run.
    rows: u64,
}

impl Table {
    fn new(spec: &StreamSpec, columns: Vec<(String, Decode, bool)>, key: Vec<usize>, after: Option<Ordinal>) -> Self {
        Table {
            name: spec.name.clone(),
            schema: change_schema(&spec.schema),
            columns,
            key,
            after,
            rows: 0,
        }
    }

    /// The values of the key columns of `t`, to find earlier images of the row.
    fn key_of(&self, t: &Tuple) -> Vec<Value> {
        self.key.iter().map(|&i| t.0.get(i).cloned().unwrap_or(Value::Null)).collect()
    }
}

/// The schema of a table's change batches: its columns, `_op`, `_unchanged`.
/// Every column may be null: a delete carries only the key.
fn change_schema(table: &SchemaRef) -> SchemaRef {
    let mut fields: Vec<Arc<Field>> = table
        .fields()
        .iter()
        .map(|f| Arc::new(f.as_ref().clone().with_nullable(true)))
        .collect();
    fields.push(Arc::new(Field::new(reserved::OP, DataType::Utf8, false)));
    fields.push(Arc::new(Field::new(UNCHANGED, DataType::Utf8, true)));
    Arc::new(Schema::new_with_metadata(fields, table.metadata().clone()))
}

/// Consecutive changes of one table, not yet a batch.
struct Run {
    table: (String, String),
    rows: Vec<(Tuple, &'static str)>,
    /// The latest image in this run of each key, for values an update left unchanged.
    latest: HashMap<Vec<Value>, usize>,
    last: Ordinal,
    /// The commit's end LSN when the run ends its transaction.
    end: Option<u64>,
}

/// A transaction being received.
struct Txn {
    lsn: u64,
    seq: u64,
}

struct PostgresFeed {
    session: ReplicationClient,
    url: String,
    tables: HashMap<(String, String), Table>,
    /// Relation OID → (schema, table), from the Relation messages.
    relations: HashMap<u32, (String, String)>,
    txn: Option<Txn>,
    runs: Vec<Run>,
    /// The server's WAL end in its last keepalive.
    wal_end: u64,
    confirmed: u64,
}

impl PostgresFeed {
    fn failed(&self, e: impl std::fmt::Display) -> Error {
        Error::retryable(self.url.clone(), format!("replication stream: {e}"))
    }

    fn rows_waiting(&self) -> usize {
        self.runs.iter().map(|r| r.rows.len()).sum()
    }

    /// Whether at least one whole transaction is waiting to be sent.
    fn complete(&self) -> bool {
        self.runs.iter().any(|r| r.end.is_some())
    }

    /// Adds one change of `table` to the current run.
    fn push(&mut self, rel: u32, mut tuple: Tuple, op: &'static str) -> Result<()> {
        // Every change counts, captured or not, so a change keeps its
        // number whichever tables a run captures.
        let Some(txn) = self.txn.as_mut() else {
            return Err(Error::Internal("a change came outside a transaction".into()));
        };
        txn.seq += 1;
        let at = Ordinal {
            lsn: txn.lsn,
            seq: txn.seq,
        };
        let Some(key) = self.relations.get(&rel).cloned() else {
            return Err(Error::Internal(format!("a change of relation {rel} came before its description")));
        };
        let Some(table) = self.tables.get_mut(&key) else {
            return Ok(());
        };
        if table.after.is_some_and(|a| at <= a) {
            return Ok(());
        }
        table.rows += 1;
        let row_key = table.key_of(&tuple);
        let same = self.runs.last().is_some_and(|r| r.table == key && r.end.is_none());
        if !same {
            self.runs.push(Run {
                table: key,
                rows: Vec::new(),
                latest: HashMap::new(),
                last: at,
                end: None,
            });
        }
        let Some(run) = self.runs.last_mut() else {
            return Err(Error::Internal("no run to add a change to".into()));
        };
        if let Some(&earlier) = run.latest.get(&row_key) {
            let before = &run.rows[earlier].0;
            for (i, v) in tuple.0.iter_mut().enumerate() {
                if *v == Value::Unchanged
                    && let Some(old) = before.0.get(i)
                {
                    *v = old.clone();
                }
            }
        }
        run.latest.insert(row_key, run.rows.len());
        run.rows.push((tuple, op));
        run.last = at;
        Ok(())
    }

    fn begin(&mut self, final_lsn: u64) {
        self.txn = Some(Txn {
            lsn: final_lsn,
            seq: 0,
        });
    }

    fn commit(&mut self, end_lsn: u64) {
        self.txn = None;
        match self.runs.last_mut() {
            Some(run) if run.end.is_none() && !run.rows.is_empty() => run.end = Some(end_lsn),
            // A transaction with no change of a captured table (or whose
            // changes the sinks hold): nothing to apply, but its end may be
            // confirmed with the next batch.
            _ => self.runs.push(Run {
                table: (String::new(), String::new()),
                rows: Vec::new(),
                latest: HashMap::new(),
                last: Ordinal { lsn: end_lsn, seq: 0 },
                end: Some(end_lsn),
            }),
        }
    }

    /// Takes one pgoutput message in.
    fn take(&mut self, data: &[u8]) -> Result<()> {
        let msg = pgoutput::parse(data).map_err(|e| self.failed(format!("undecodable pgoutput message: {e}")))?;
        match msg {
            Message::Begin { final_lsn, .. } => self.begin(final_lsn),
            Message::Commit { end_lsn, .. } => self.commit(end_lsn),
            Message::Relation(r) => {
                let key = (r.namespace.clone(), r.name.clone());
                if let Some(t) = self.tables.get(&key) {
                    let now: Vec<&str> = r.columns.iter().map(|c| c.name.as_str()).collect();
                    let known: Vec<&str> = t.columns.iter().map(|(n, _, _)| n.as_str()).collect();
                    if now != known {
                        return Err(Error::config(
                            "source.tables",
                            format!(
                                "the columns of {}.{} changed while capturing (now {}, were {}); \
                                 stop, bring the destination table to the new columns, and run again",
                                r.namespace,
                                r.name,
                                now.join(", "),
                                known.join(", ")
                            ),
                        ));
                    }
                }
                self.relations.insert(r.oid, key);
            }
            Message::Insert { relation, new } => self.push(relation, new, "upsert")?,
            Message::Update { relation, old, mut new } => {
                if let Some((OldKind::Full, old)) = &old {
                    // The whole old row: what the update left unchanged is in it.
                    for (v, was) in new.0.iter_mut().zip(&old.0) {
                        if *v == Value::Unchanged && *was != Value::Unchanged {
                            *v = was.clone();
                        }
                    }
                }
                if let Some((_, old)) = old {
                    let table = self.relations.get(&relation).and_then(|k| self.tables.get(k));
                    let moved = table.is_some_and(|t| t.key_of(&old) != t.key_of(&new));
                    if moved {
                        self.push(relation, old, "delete")?;
                    }
                }
                self.push(relation, new, "upsert")?;
            }
            Message::Delete { relation, old: (_, old) } => self.push(relation, old, "delete")?,
            Message::Truncate { relations, .. } => {
                let names: Vec<String> = relations
                    .iter()
                    .filter_map(|r| self.relations.get(r))
                    .map(|(s, t)| format!("{s}.{t}"))
                    .collect();
                tracing::warn!(
                    tables = %names.join(", "),
                    "TRUNCATE is not applied to the destination; truncate it there too, or run with --resnapshot"
                );
            }
            Message::Type { .. } | Message::Origin { .. } | Message::Message { .. } => {}
        }
        Ok(())
    }

    /// Turns the waiting runs into batches: every run when `all`, else those
    /// of complete transactions.
    fn cut(&mut self, all: bool) -> Result<Vec<Batch>> {
        let upto = if all {
            self.runs.len()
        } else {
            self.runs.iter().rposition(|r| r.end.is_some()).map_or(0, |i| i + 1)
        };
        let runs: Vec<Run> = self.runs.drain(..upto).collect();
        let mut out = Vec::new();
        for run in runs {
            let Some(table) = self.tables.get(&run.table) else {
                // An empty run marking a commit: its position rides on the
                // last batch, or on an idle answer.
                if let Some(last) = out.last_mut() {
                    set_end(last, run.end);
                } else if let Some(end) = run.end {
                    self.confirmable(end);
                }
                continue;
            };
            out.push(batch_of(table, &run)?);
        }
        Ok(out)
    }

    /// A commit with nothing to apply: remembered so an idle answer confirms it.
    fn confirmable(&mut self, end: u64) {
        self.wal_end = self.wal_end.max(end);
    }
}

/// Sets the end LSN of `batch`'s position (it ends a transaction).
fn set_end(batch: &mut Batch, end: Option<u64>) {
    if let (Some(p), Some(end)) = (batch.position.as_mut(), end)
        && let Some(o) = p.cursor.as_object_mut()
    {
        o.insert("end".into(), end.into());
    }
}

/// One run of changes as an Arrow batch through the snapshot's decoders.
fn batch_of(table: &Table, run: &Run) -> Result<Batch> {
    let decoders: Vec<Decode> = table.columns.iter().map(|(_, d, _)| d.clone()).collect();
    let mut decoder = TupleDecoder::new(&decoders).headerless();
    let mut ops = Vec::with_capacity(run.rows.len());
    let mut unchanged = Vec::with_capacity(run.rows.len());
    let mut buf = Vec::new();
    for (tuple, op) in &run.rows {
        let (bytes, same) = tuple
            .copy_tuple(|i| table.columns.get(i).is_some_and(|c| c.2 || c.1 == Decode::Text))
            .map_err(|e| Error::data(format!("{}", table.name), e))?;
        buf.extend_from_slice(&bytes);
        ops.push(*op);
        unchanged.push(
            (!same.is_empty() && *op != "delete").then(|| {
                let names: Vec<&str> = same
                    .iter()
                    .filter_map(|&i| table.columns.get(i).map(|c| c.0.as_str()))
                    .collect();
                serde_json::Value::from(names).to_string()
            }),
        );
    }
    let used = decoder
        .decode(&buf, run.rows.len())
        .map_err(|e| Error::data(format!("{}", table.name), e))?;
    if used != buf.len() || decoder.rows() != run.rows.len() {
        return Err(Error::Internal(format!(
            "{}: {} changes decoded into {} rows",
            table.name,
            run.rows.len(),
            decoder.rows()
        )));
    }
    let (mut arrays, bad) = decoder.finish_batch();
    if let Some((row, col, why)) = bad.first() {
        return Err(Error::data(
            format!("{}", table.name),
            format!("change {} column {}: {why}", row + 1, table.columns.get(*col).map_or("?", |c| c.0.as_str())),
        ));
    }
    arrays.push(Arc::new(StringArray::from(ops)) as ArrayRef);
    arrays.push(Arc::new(StringArray::from(unchanged)) as ArrayRef);
    let data = RecordBatch::try_new(table.schema.clone(), arrays)?;
    let mut cursor = serde_json::json!({ "lsn": run.last.lsn, "seq": run.last.seq });
    if let (Some(end), Some(o)) = (run.end, cursor.as_object_mut()) {
        o.insert("end".into(), end.into());
    }
    let mut batch = Batch::new(table.name.clone(), table.name.clone(), data);
    batch.position = Some(Position {
        partition: CHANGES_PARTITION.into(),
        cursor,
        rows: table.rows,
    });
    Ok(batch)
}

#[async_trait]
impl ChangeFeed for PostgresFeed {
    async fn next(&mut self, limits: &BatchLimits) -> Result<Changes> {
        let deadline = Instant::now() + limits.linger;
        loop {
            if self.rows_waiting() >= limits.rows {
                // A transaction too large for one batch goes in several; only
                // the last says where it ends.
                let all = !self.complete();
                return Ok(Changes::Batches(self.cut(all)?));
            }
            let wait = if self.complete() {
                Duration::ZERO
            } else {
                deadline.saturating_duration_since(Instant::now())
            };
            let event = match tokio::time::timeout(wait, self.session.recv()).await {
                Ok(Ok(Some(e))) => e,
                Ok(Ok(None)) => return Err(self.failed("the server ended the replication stream")),
                Ok(Err(e)) => return Err(self.failed(e)),
                Err(_) if self.complete() => {
                    let batches = self.cut(false)?;
                    if batches.is_empty() {
                        continue;
                    }
                    return Ok(Changes::Batches(batches));
                }
                Err(_) if self.txn.is_none() && self.runs.is_empty() => {
                    let at = self.wal_end.max(self.confirmed);
                    return Ok(Changes::Idle(Position {
                        partition: CHANGES_PARTITION.into(),
                        cursor: serde_json::json!({ "lsn": at, "seq": 0, "end": at }),
                        rows: 0,
                    }));
                }
                Err(_) => continue,
            };
            match event {
                ReplicationEvent::XLogData { data, .. } => self.take(&data)?,
                ReplicationEvent::KeepAlive { wal_end, .. } => {
                    if self.txn.is_none() && self.runs.is_empty() {
                        self.wal_end = self.wal_end.max(wal_end.as_u64());
                    }
                }
                ReplicationEvent::Begin { final_lsn, .. } => self.begin(final_lsn.as_u64()),
                ReplicationEvent::Commit { end_lsn, .. } => self.commit(end_lsn.as_u64()),
                ReplicationEvent::Message { .. } => {}
                ReplicationEvent::StoppedAt { .. } => {
                    return Err(self.failed("the replication stream stopped"));
                }
            }
        }
    }

    async fn confirm(&mut self, position: &Position) -> Result<()> {
        if let Some(end) = position.cursor.get("end").and_then(serde_json::Value::as_u64)
            && end > self.confirmed
        {
            self.confirmed = end;
            self.session.update_applied_lsn(Lsn::from_u64(end));
        }
        Ok(())
    }

    fn lag(&self) -> Option<u64> {
        let end = self.session.metrics().last_wal_end().as_u64();
        Some(end.saturating_sub(self.confirmed))
    }

    async fn close(mut self: Box<Self>) -> Result<()> {
        // Stopping sends no last status update: wait for the one that
        // reports the last confirmed position, so the slot holds nothing
        // already applied.
        let waited = Instant::now();
        while self.session.metrics().last_applied_lsn().as_u64() < self.confirmed
            && waited.elapsed() < FINAL_STATUS_WAIT
            && self.session.is_running()
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.session.stop();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.session.shutdown()).await;
        Ok(())
    }
}
