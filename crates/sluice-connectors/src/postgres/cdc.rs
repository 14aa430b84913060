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

/// The prefix of the heartbeat messages an idle feed writes into the log.
const HEARTBEAT: &str = "sluice.heartbeat";

/// How often the confirmed position is reported to the server.
const STATUS_INTERVAL: Duration = Duration::from_millis(50);

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
    /// The tables as `prepare` found them, so starting (and starting again
    /// after a lost connection) does not discover them again.
    tables: tokio::sync::Mutex<Vec<StreamSpec>>,
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
            tables: tokio::sync::Mutex::new(Vec::new()),
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
                "SELECT coalesce(wal_status = 'lost', false), coalesce(plugin, '') \
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

    /// A failure of the replication session: one that may pass (the server
    /// restarting, the slot still held by the session of a process that
    /// just died) is retried.
    fn replication_error(&self, e: pgwire_replication::PgWireError) -> Error {
        let message = e.to_string();
        let passing = e.is_transient()
            || e.is_io()
            || ["is active for PID", "the database system is", "too many connections"]
                .iter()
                .any(|m| message.contains(m));
        if passing {
            Error::retryable(redact(&self.cfg.url), message)
        } else {
            Error::connection(redact(&self.cfg.url), message)
        }
    }

    /// The error of a slot that is missing where one was made before: the
    /// run stops, and copying again is the user's call.
    fn gone(&self) -> Error {
        Error::connection(
            redact(&self.cfg.url),
            format!(
                "replication slot {} is gone (dropped by hand?); changes since the last confirmed position \
                 are lost. Run again with --resnapshot to copy every table afresh",
                self.slot()
            ),
        )
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

    async fn prepare(&self, create: bool) -> Result<Prepared> {
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
        *self.tables.lock().await = streams.clone();
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
            None if !create => return Err(self.gone()),
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
                    None => return Err(self.gone()),
                    Some(_) => {}
                }
                ReplicationClient::connect_gated(self.replication_config()?)
                    .await
                    .map_err(|e| self.replication_error(e))?
            }
        };
        session.start().await.map_err(|e| self.replication_error(e))?;
        match tokio::time::timeout(START_TIMEOUT, session.wait_started()).await {
            Ok(r) => r.map_err(|e| self.replication_error(e))?,
            Err(_) => {
                return Err(Error::retryable(
                    redact(&self.cfg.url),
                    format!("the server did not start replication within {START_TIMEOUT:?}"),
                ));
            }
        }
        let schema = self.source.schema_name().to_string();
        let mut tables = HashMap::new();
        let mut known = self.tables.lock().await;
        if known.is_empty() {
            *known = self.source.discover().await?;
        }
        for s in known.iter() {
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
                Table::new(s, columns, key, after),
            );
        }
        drop(known);
        // Heartbeats come back through the log, so an idle capture still
        // confirms past what other tables and databases write.
        let heartbeat = match connect(&self.cfg.url).await {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "no heartbeat connection: the slot advances only with changes and keepalives");
                None
            }
        };
        Ok(Box::new(PostgresFeed {
            session,
            heartbeat,
            asm: Assembler::new(redact(&self.cfg.url), tables),
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
        let fail = |what: String| Error::config("source", format!("{}: {what}", redact(&self.cfg.url)));
        if level != "logical" {
            return Err(fail(format!(
                "wal_level is {level}; change capture needs ALTER SYSTEM SET wal_level = logical and a restart"
            )));
        }
        if !may {
            return Err(fail(
                "the user may not replicate; ALTER ROLE <user> WITH REPLICATION (or use a superuser)".into(),
            ));
        }
        let mut lines = vec![
            "wal_level = logical".to_string(),
            "the user may replicate".to_string(),
        ];
        lines.push(match self.slot_state(&client).await? {
            None => format!("slot {} will be created, with publication {}", self.slot(), self.publication()),
            Some((true, _)) => {
                return Err(fail(format!(
                    "slot {} was invalidated (WAL it needed is gone): run with --resnapshot",
                    self.slot()
                )));
            }
            Some(_) => format!("slot {} exists", self.slot()),
        });
        if !streams.is_empty() {
            lines.push(format!("{} tables captured", streams.len()));
        }
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

/// Turns the log's messages into batches: transactions in commit order,
/// runs of one table, the position of each.
struct Assembler {
    url: String,
    tables: HashMap<(String, String), Table>,
    /// Relation OID → (schema, table), from the Relation messages.
    relations: HashMap<u32, (String, String)>,
    txn: Option<Txn>,
    runs: Vec<Run>,
    /// How far the log has been sent with nothing of it waiting here: a
    /// keepalive's WAL end, a heartbeat, a commit with nothing to apply.
    wal_end: u64,
}

struct PostgresFeed {
    session: ReplicationClient,
    /// Where heartbeats are written (`pg_logical_emit_message`), `None`
    /// once the server refused one.
    heartbeat: Option<Client>,
    asm: Assembler,
    confirmed: u64,
}

impl Assembler {
    fn new(url: String, tables: HashMap<(String, String), Table>) -> Self {
        Assembler {
            url,
            tables,
            relations: HashMap::new(),
            txn: None,
            runs: Vec::new(),
            wal_end: 0,
        }
    }

    /// Batches to send without waiting for more: `Some` once `rows`
    /// changes wait (a transaction too large for one batch goes in
    /// several; only the last says where it ends).
    fn ready(&mut self, rows: usize) -> Result<Option<Vec<Batch>>> {
        if self.rows_waiting() < rows {
            return Ok(None);
        }
        let all = !self.complete();
        Ok(Some(self.cut(all)?))
    }

    /// Nothing received is waiting to be sent, no transaction is open.
    fn idle(&self) -> bool {
        self.txn.is_none() && self.runs.is_empty()
    }

    /// Takes one event of the replication stream in.
    fn event(&mut self, event: ReplicationEvent) -> Result<()> {
        match event {
            ReplicationEvent::XLogData { data, .. } => self.take(&data)?,
            ReplicationEvent::KeepAlive { wal_end, .. } => {
                if self.idle() {
                    self.wal_end = self.wal_end.max(wal_end.as_u64());
                }
            }
            ReplicationEvent::Begin { final_lsn, .. } => self.begin(final_lsn.as_u64()),
            ReplicationEvent::Commit { end_lsn, .. } => self.commit(end_lsn.as_u64()),
            ReplicationEvent::Message {
                transactional: false,
                lsn,
                prefix,
                ..
            } if prefix == HEARTBEAT => {
                // Every commit before it has been sent.
                if self.idle() {
                    self.wal_end = self.wal_end.max(lsn.as_u64());
                }
            }
            ReplicationEvent::Message { .. } => {}
            ReplicationEvent::StoppedAt { .. } => return Err(self.failed("the replication stream stopped")),
        }
        Ok(())
    }

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

impl PostgresFeed {
    /// The answer of a feed with nothing waiting: everything up to the
    /// last heartbeat, keepalive or empty commit may be confirmed.
    fn idle(&self) -> Changes {
        let at = self.asm.wal_end.max(self.confirmed);
        Changes::Idle(Position {
            partition: CHANGES_PARTITION.into(),
            cursor: serde_json::json!({ "lsn": at, "seq": 0, "end": at }),
            rows: 0,
        })
    }

    /// Writes a heartbeat into the log: when it comes back, every commit
    /// before it has been sent, so an idle feed can confirm up to it.
    async fn beat(&mut self) {
        let Some(client) = &self.heartbeat else {
            return;
        };
        let sent = client
            .execute("SELECT pg_logical_emit_message(false, $1, '')", &[&HEARTBEAT])
            .await;
        if let Err(e) = sent {
            tracing::warn!(
                error = %super::server_message(&e),
                "heartbeats stopped: an idle slot advances only with changes and keepalives"
            );
            self.heartbeat = None;
        }
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
            if let Some(batches) = self.asm.ready(limits.rows)? {
                return Ok(Changes::Batches(batches));
            }
            let wait = if self.asm.complete() {
                Duration::ZERO
            } else {
                deadline.saturating_duration_since(Instant::now())
            };
            let event = match tokio::time::timeout(wait, self.session.recv()).await {
                Ok(Ok(Some(e))) => e,
                Ok(Ok(None)) => return Err(self.asm.failed("the server ended the replication stream")),
                Ok(Err(e)) => return Err(self.asm.failed(e)),
                Err(_) if self.asm.complete() => {
                    let batches = self.asm.cut(false)?;
                    if batches.is_empty() {
                        continue;
                    }
                    return Ok(Changes::Batches(batches));
                }
                Err(_) if self.asm.idle() => {
                    self.beat().await;
                    return Ok(self.idle());
                }
                Err(_) => continue,
            };
            self.asm.event(event)?;
            // A heartbeat (or keepalive) came back with nothing waiting:
            // confirm it now rather than at the end of the wait.
            if self.asm.idle() && self.asm.wal_end > self.confirmed {
                return Ok(self.idle());
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

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::Int64Type;
    use bytes::Bytes;

    use super::*;

    const ITEMS: u32 = 16_001;
    const TAGS: u32 = 16_002;

    /// A column value of a test change.
    enum V<'a> {
        Int(i64),
        Text(&'a str),
        Null,
        Unchanged,
    }

    fn cstr(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }

    fn tuple(out: &mut Vec<u8>, values: &[V]) {
        out.extend((values.len() as i16).to_be_bytes());
        for v in values {
            match v {
                V::Int(i) => {
                    out.push(b'b');
                    out.extend(8i32.to_be_bytes());
                    out.extend(i.to_be_bytes());
                }
                V::Text(t) => {
                    out.push(b'b');
                    out.extend((t.len() as i32).to_be_bytes());
                    out.extend_from_slice(t.as_bytes());
                }
                V::Null => out.push(b'n'),
                V::Unchanged => out.push(b'u'),
            }
        }
    }

    fn relation(oid: u32, name: &str, columns: &[(&str, u32, bool)]) -> Vec<u8> {
        let mut m = vec![b'R'];
        m.extend(oid.to_be_bytes());
        cstr(&mut m, "public");
        cstr(&mut m, name);
        m.push(b'd');
        m.extend((columns.len() as i16).to_be_bytes());
        for (name, ty, key) in columns {
            m.push(u8::from(*key));
            cstr(&mut m, name);
            m.extend(ty.to_be_bytes());
            m.extend((-1i32).to_be_bytes());
        }
        m
    }

    fn insert(oid: u32, new: &[V]) -> Vec<u8> {
        let mut m = vec![b'I'];
        m.extend(oid.to_be_bytes());
        m.push(b'N');
        tuple(&mut m, new);
        m
    }

    fn update(oid: u32, key: Option<&[V]>, new: &[V]) -> Vec<u8> {
        let mut m = vec![b'U'];
        m.extend(oid.to_be_bytes());
        if let Some(k) = key {
            m.push(b'K');
            tuple(&mut m, k);
        }
        m.push(b'N');
        tuple(&mut m, new);
        m
    }

    fn delete(oid: u32, key: &[V]) -> Vec<u8> {
        let mut m = vec![b'D'];
        m.extend(oid.to_be_bytes());
        m.push(b'K');
        tuple(&mut m, key);
        m
    }

    fn table(name: &str, columns: &[(&str, Decode)], key: Vec<usize>, after: Option<Ordinal>) -> Table {
        let fields: Vec<Field> = columns
            .iter()
            .map(|(n, d)| Field::new(*n, d.arrow_type(), true))
            .collect();
        let spec = StreamSpec {
            name: name.into(),
            schema: Arc::new(Schema::new(fields)),
            partitions: Vec::new(),
        };
        let columns = columns.iter().map(|(n, d)| (n.to_string(), d.clone(), false)).collect();
        Table::new(&spec, columns, key, after)
    }

    /// An assembler of `items (id, name, big)` and `tags (item, tag)`, with
    /// each table's last applied change.
    fn assembler(items_after: Option<Ordinal>) -> Assembler {
        let mut tables = HashMap::new();
        tables.insert(
            ("public".into(), "items".into()),
            table(
                "items",
                &[("id", Decode::Int64), ("name", Decode::Text), ("big", Decode::Text)],
                vec![0],
                items_after,
            ),
        );
        tables.insert(
            ("public".into(), "tags".into()),
            table("tags", &[("item", Decode::Int64), ("tag", Decode::Text)], vec![0, 1], None),
        );
        let mut a = Assembler::new("test".into(), tables);
        for m in [
            relation(ITEMS, "items", &[("id", 20, true), ("name", 25, false), ("big", 25, false)]),
            relation(TAGS, "tags", &[("item", 20, true), ("tag", 25, true)]),
        ] {
            a.take(&m).unwrap();
        }
        a
    }

    fn data(m: Vec<u8>) -> ReplicationEvent {
        ReplicationEvent::XLogData {
            wal_start: Lsn(0),
            wal_end: Lsn(0),
            server_time_micros: 0,
            data: Bytes::from(m),
        }
    }

    fn transaction(a: &mut Assembler, final_lsn: u64, end: u64, changes: Vec<Vec<u8>>) {
        a.event(ReplicationEvent::Begin {
            final_lsn: Lsn(final_lsn),
            xid: 1,
            commit_time_micros: 0,
        })
        .unwrap();
        for c in changes {
            a.event(data(c)).unwrap();
        }
        a.event(ReplicationEvent::Commit {
            lsn: Lsn(final_lsn),
            end_lsn: Lsn(end),
            commit_time_micros: 0,
        })
        .unwrap();
    }

    fn ops(b: &Batch) -> Vec<&str> {
        b.data.column_by_name(reserved::OP).unwrap().as_string::<i32>().iter().map(Option::unwrap).collect()
    }

    fn ids(b: &Batch, column: &str) -> Vec<i64> {
        b.data.column_by_name(column).unwrap().as_primitive::<Int64Type>().values().to_vec()
    }

    #[test]
    fn a_transaction_comes_as_runs_of_one_table_in_order_and_the_last_ends_it() {
        let mut a = assembler(None);
        transaction(
            &mut a,
            100,
            110,
            vec![
                insert(ITEMS, &[V::Int(1), V::Text("a"), V::Null]),
                insert(ITEMS, &[V::Int(2), V::Text("b"), V::Null]),
                insert(TAGS, &[V::Int(1), V::Text("x")]),
                delete(ITEMS, &[V::Int(2), V::Null, V::Null]),
            ],
        );
        assert!(a.complete());
        let out = a.cut(false).unwrap();
        let streams: Vec<&str> = out.iter().map(|b| b.stream.as_ref()).collect();
        assert_eq!(streams, ["items", "tags", "items"]);
        assert_eq!(ids(&out[0], "id"), [1, 2]);
        assert_eq!(ops(&out[2]), ["delete"]);
        let cursors: Vec<serde_json::Value> = out.iter().map(|b| b.position.clone().unwrap().cursor).collect();
        assert_eq!(cursors[0], serde_json::json!({"lsn": 100, "seq": 2}));
        assert_eq!(cursors[2], serde_json::json!({"lsn": 100, "seq": 4, "end": 110}), "only the last ends it");
        assert!(a.idle());
    }

    #[test]
    fn an_update_moving_the_key_is_a_delete_of_the_old_key_and_an_upsert() {
        let mut a = assembler(None);
        transaction(
            &mut a,
            100,
            110,
            vec![update(
                ITEMS,
                Some(&[V::Int(7), V::Null, V::Null]),
                &[V::Int(8), V::Text("moved"), V::Text("b")],
            )],
        );
        let out = a.cut(false).unwrap();
        assert_eq!(ops(&out[0]), ["delete", "upsert"]);
        assert_eq!(ids(&out[0], "id"), [7, 8]);
    }

    #[test]
    fn a_value_left_unchanged_is_taken_from_the_row_earlier_in_the_batch_or_named() {
        let mut a = assembler(None);
        transaction(
            &mut a,
            100,
            110,
            vec![
                insert(ITEMS, &[V::Int(1), V::Text("a"), V::Text("large")]),
                update(ITEMS, None, &[V::Int(1), V::Text("b"), V::Unchanged]),
                update(ITEMS, None, &[V::Int(2), V::Text("c"), V::Unchanged]),
            ],
        );
        let out = a.cut(false).unwrap();
        let big = out[0].data.column_by_name("big").unwrap().as_string::<i32>();
        assert_eq!(big.value(1), "large", "filled from the insert in the same batch");
        assert!(big.is_null(2));
        let unchanged = out[0].data.column_by_name(UNCHANGED).unwrap().as_string::<i32>();
        assert!(unchanged.is_null(1));
        assert_eq!(unchanged.value(2), r#"["big"]"#, "the destination keeps its value");
    }

    #[test]
    fn changes_a_sink_holds_are_left_out_and_their_commit_still_confirms() {
        let mut a = assembler(Some(Ordinal { lsn: 100, seq: 2 }));
        transaction(
            &mut a,
            100,
            110,
            vec![
                insert(ITEMS, &[V::Int(1), V::Text("a"), V::Null]),
                insert(TAGS, &[V::Int(1), V::Text("x")]),
                insert(ITEMS, &[V::Int(3), V::Text("c"), V::Null]),
            ],
        );
        let out = a.cut(false).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].stream.as_ref(), "tags", "another table's changes are its own to skip");
        assert_eq!(ids(&out[1], "id"), [3]);
        // A transaction whose every change is held: nothing to write, its end confirmable.
        transaction(&mut a, 90, 95, vec![insert(ITEMS, &[V::Int(9), V::Text("old"), V::Null])]);
        assert!(a.cut(false).unwrap().is_empty());
        assert_eq!(a.wal_end, 95);
    }

    #[test]
    fn a_transaction_larger_than_a_batch_comes_in_several_and_only_the_last_ends_it() {
        let mut a = assembler(None);
        a.event(ReplicationEvent::Begin {
            final_lsn: Lsn(500),
            xid: 1,
            commit_time_micros: 0,
        })
        .unwrap();
        for i in 0..5 {
            a.event(data(insert(ITEMS, &[V::Int(i), V::Text("r"), V::Null]))).unwrap();
        }
        let first = a.ready(3).unwrap().expect("a batch once 3 changes wait");
        assert_eq!(first[0].num_rows(), 5);
        assert_eq!(first[0].position.clone().unwrap().cursor, serde_json::json!({"lsn": 500, "seq": 5}));
        a.event(data(insert(ITEMS, &[V::Int(9), V::Text("r"), V::Null]))).unwrap();
        a.event(ReplicationEvent::Commit {
            lsn: Lsn(500),
            end_lsn: Lsn(520),
            commit_time_micros: 0,
        })
        .unwrap();
        let last = a.cut(false).unwrap();
        assert_eq!(
            last[0].position.clone().unwrap().cursor,
            serde_json::json!({"lsn": 500, "seq": 6, "end": 520})
        );
    }
}
