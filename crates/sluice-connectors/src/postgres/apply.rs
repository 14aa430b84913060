//! Applying captured changes to a PostgreSQL table: batches whose rows
//! carry `_op` (`delete`, or anything else for an upsert) and the columns
//! an update left unchanged (`_unchanged`, a JSON array of names).
//!
//! A batch is copied into a temporary stage; per key only its last change
//! counts, since every change carries the whole row: a last `delete`
//! deletes, a last image is inserted or updated, keeping the destination's
//! value of each column the change left unchanged. The batch's position is
//! stored in the same transaction, which [`Sink::flush`] commits, so the
//! destination never holds a change its position does not cover.
//!
//! The appliers of every stream of one sink share one connection
//! ([`Shared`]); what the engine writes between two flushes is queued and
//! applied at the flush in one transaction, so a source transaction that
//! touched several tables is never half visible. When a foreign key joins
//! a table of the session to another, the batches are applied in the order
//! the source made the changes (a parent row before its children);
//! otherwise the batches of each table are applied together, one stage
//! load and one statement of each kind per table.

use std::sync::Arc;

use arrow::array::{Array, RecordBatch, StringArray};
use async_trait::async_trait;
use bytes::Bytes;
use futures::SinkExt;
use sluice_core::dbmeta::TableMeta;
use sluice_core::{Batch, Error, Position, Rejection, Result, Sink, StreamInfo, reserved};
use tokio_postgres::Client;

use super::cdc::UNCHANGED;
use super::config::redact;
use super::encode::{Encode, HEADER, TRAILER, encode_rows};
use super::sink::{Columns, PostgresSink, columns_of, execute, query};
use super::types::{ident, qualified};
use super::{connect, get, pg_error};
use crate::ledger::checkpoints::{Checkpoints, Postgres};

/// The session the change appliers of one sink share, made when the first
/// one opens and again once it broke.
pub(super) type Shared = Arc<std::sync::Mutex<Option<Arc<tokio::sync::Mutex<Session>>>>>;

/// One connection and its open transaction.
pub(super) struct Session {
    client: Client,
    /// A statement failed: the next applier opened starts a new session.
    broken: bool,
    /// The appliers opened on the connection, each with its stage.
    plans: Vec<Arc<Plan>>,
    /// Batches written since the last flush: the plan's index, the rows
    /// in the stage's column order, the position.
    queue: Vec<(usize, RecordBatch, Option<Position>)>,
    /// A foreign key joins a table of the session to another: batches are
    /// applied in the order they came. Otherwise the batches of a table
    /// are applied together (tables apart do not see each other).
    ordered: bool,
}

/// The sink's session, connecting when there is none or it broke.
async fn session(sink: &PostgresSink) -> Result<Arc<tokio::sync::Mutex<Session>>> {
    let held = sink.changes.lock().ok().and_then(|g| g.clone());
    if let Some(s) = held {
        let usable = {
            let g = s.lock().await;
            !g.broken && !g.client.is_closed()
        };
        if usable {
            return Ok(s);
        }
    }
    let client = connect(&sink.cfg.url).await?;
    sink.prepare_bookkeeping(&client).await?;
    let s = Arc::new(tokio::sync::Mutex::new(Session {
        client,
        broken: false,
        plans: Vec::new(),
        queue: Vec::new(),
        ordered: false,
    }));
    if let Ok(mut g) = sink.changes.lock() {
        *g = Some(s.clone());
    }
    Ok(s)
}

/// Opens the change applier of `stream` on `sink`'s table, which must exist.
pub(super) async fn open(sink: &PostgresSink, stream: &StreamInfo) -> Result<Box<dyn Sink>> {
    let url = sink.cfg.url.clone();
    let shared = session(sink).await?;
    let mut guard = shared.lock().await;
    let id = guard.plans.len();
    let stage = format!("sluice_changes_{}", id + 1);
    let client = &guard.client;
    let err = |e| pg_error(&url, e);
    let table = sink.table_name(&stream.name);
    let target = qualified(sink.schema(), &table);
    let r = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&target])
        .await
        .map_err(err)?;
    if !get::<bool>(&r, 0, &format!("whether {target} exists"))? {
        return Err(Error::config(
            "sinks.table",
            format!(
                "{}: table {target} does not exist; changes are applied to a table copied first \
                 (sluice sync copies it unless the sink says it is seeded)",
                redact(&url)
            ),
        ));
    }
    let meta = TableMeta::of(&stream.schema).unwrap_or_default();
    let key = if sink.cfg.key.is_empty() {
        meta.primary_key.clone()
    } else {
        sink.cfg.key.clone()
    };
    if key.is_empty() {
        return Err(Error::config(
            "sinks.key",
            format!("changes to {target} are applied by key; set key = [\"id\"] on the sink"),
        ));
    }
    let fields: Vec<_> = stream
        .schema
        .fields()
        .iter()
        .filter(|f| f.name() != reserved::OP && f.name() != UNCHANGED)
        .collect();
    let Columns {
        mut encoders,
        mut names,
        mut pg_types,
        mut stage_cols,
        select,
        ..
    } = columns_of(client, &url, &target, stream, &fields).await?;
    for k in &key {
        if !names.contains(k) {
            return Err(Error::config(
                "sinks.key",
                format!("key column `{k}` is not in stream `{}`", stream.name),
            ));
        }
    }
    let mut projection: Vec<usize> = fields
        .iter()
        .filter_map(|f| stream.schema.index_of(f.name()).ok())
        .collect();
    projection.push(stream.schema.index_of(reserved::OP)?);
    projection.push(stream.schema.index_of(UNCHANGED).map_err(|_| {
        Error::config(
            "sinks",
            format!("stream `{}` carries `_op` without `{UNCHANGED}`; it is not a change stream", stream.name),
        )
    })?);
    let values = names.clone();
    for extra in [reserved::OP, UNCHANGED] {
        encoders.push(Encode::Text);
        names.push(extra.to_string());
        pg_types.push("text".into());
        stage_cols.push(format!("{} text", ident(extra)));
    }
    client
        .batch_execute(&format!(
            "CREATE TEMP TABLE IF NOT EXISTS {stage} ({}); TRUNCATE {stage}",
            stage_cols.join(", ")
        ))
        .await
        .map_err(err)?;
    let statements = ApplySql::new(&stage, &target, &values, &select, &key);
    let checkpoints = Checkpoints::new(sink.dialect(), &stream.pipeline, stream.job, &target, &target);
    let r = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE contype = 'f' \
             AND (conrelid = to_regclass($1) OR confrelid = to_regclass($1)))",
            &[&target],
        )
        .await
        .map_err(err)?;
    let linked: bool = get(&r, 0, &format!("the foreign keys of {target}"))?;
    let plan = Arc::new(Plan {
        copy: format!(
            "COPY {stage} ({}) FROM STDIN (FORMAT binary)",
            names.iter().map(|n| ident(n)).collect::<Vec<_>>().join(", ")
        ),
        truncate: format!("TRUNCATE {stage}"),
        url: url.clone(),
        encoders,
        names,
        pg_types,
        statements,
        checkpoints,
    });
    guard.ordered |= linked;
    guard.plans.push(plan.clone());
    drop(guard);
    Ok(Box::new(ChangeApplier {
        session: shared,
        id,
        plan,
        projection,
    }))
}

/// The statements applying a staged batch.
struct ApplySql {
    delete: String,
    upsert: String,
    update: String,
}

impl ApplySql {
    /// From `stage` into `target` with its `values` columns (selected from
    /// the stage as `select` says) and `key`.
    fn new(stage: &str, target: &str, values: &[String], select: &[String], key: &[String]) -> Self {
        let keys = key.iter().map(|k| ident(k)).collect::<Vec<_>>().join(", ");
        let last = format!("(SELECT DISTINCT ON ({keys}) * FROM {stage} ORDER BY {keys}, ctid DESC) s");
        let matches = key
            .iter()
            .map(|k| format!("t.{0} = s.{0}", ident(k)))
            .collect::<Vec<_>>()
            .join(" AND ");
        let columns = values.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ");
        let selected = select
            .iter()
            .map(|c| format!("s.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let others: Vec<(&String, &String)> = values.iter().zip(select).filter(|(c, _)| !key.contains(c)).collect();
        let action = if others.is_empty() {
            "DO NOTHING".to_string()
        } else {
            let set = others
                .iter()
                .map(|(c, _)| format!("{0} = EXCLUDED.{0}", ident(c)))
                .collect::<Vec<_>>()
                .join(", ");
            format!("DO UPDATE SET {set}")
        };
        let keep = others
            .iter()
            .map(|(c, sel)| {
                format!(
                    "{0} = CASE WHEN s.{1}::jsonb ? {2} THEN t.{0} ELSE s.{sel} END",
                    ident(c),
                    ident(UNCHANGED),
                    super::types::literal(c)
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let op = ident(reserved::OP);
        let unchanged = ident(UNCHANGED);
        ApplySql {
            delete: format!("DELETE FROM {target} t USING {last} WHERE s.{op} = 'delete' AND {matches}"),
            upsert: format!(
                "INSERT INTO {target} ({columns}) SELECT {selected} FROM {last} \
                 WHERE s.{op} <> 'delete' AND s.{unchanged} IS NULL ON CONFLICT ({keys}) {action}"
            ),
            update: if keep.is_empty() {
                String::new()
            } else {
                format!(
                    "UPDATE {target} t SET {keep} FROM {last} \
                     WHERE s.{op} <> 'delete' AND s.{unchanged} IS NOT NULL AND {matches}"
                )
            },
        }
    }
}

/// How one table's changes are applied: its stage and statements.
struct Plan {
    url: String,
    copy: String,
    truncate: String,
    encoders: Vec<Encode>,
    names: Vec<String>,
    pg_types: Vec<String>,
    statements: ApplySql,
    checkpoints: Checkpoints<Postgres>,
}

impl Plan {
    fn err(&self, e: tokio_postgres::Error) -> Error {
        pg_error(&self.url, e)
    }

    /// Copies `data` into the stage.
    async fn stage(&self, client: &Client, data: &RecordBatch) -> Result<()> {
        let mut buf = Vec::with_capacity(64 * 1024);
        buf.extend(HEADER);
        let refused = encode_rows(&self.encoders, &self.names, &self.pg_types, data, &mut buf)
            .map_err(|e| Error::config("sinks", format!("{}: {e}", redact(&self.url))))?;
        if let Some((row, why)) = refused.first() {
            return Err(Error::data(
                redact(&self.url),
                format!("change {} cannot be written: {why}", row + 1),
            ));
        }
        buf.extend(TRAILER);
        let sink = client
            .copy_in::<_, Bytes>(self.copy.as_str())
            .await
            .map_err(|e| self.err(e))?;
        let mut sink = std::pin::pin!(sink);
        sink.send(Bytes::from(buf)).await.map_err(|e| self.err(e))?;
        sink.as_mut().finish().await.map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Applies the rows of `data` (the stage's columns) in the open transaction.
    async fn apply(&self, client: &Client, data: &RecordBatch) -> Result<()> {
        if data.num_rows() == 0 {
            return Ok(());
        }
        self.stage(client, data).await?;
        // The statements with nothing to do are left out; the rest go in
        // one round trip.
        let n = data.num_columns();
        let ops = data.column(n - 2).as_any().downcast_ref::<StringArray>();
        let deletes = ops.is_none_or(|o| o.iter().any(|op| op == Some("delete")));
        let upserts = ops.is_none_or(|o| o.iter().any(|op| op != Some("delete")));
        let kept = data.column(n - 1).null_count() < data.num_rows();
        let mut sql = Vec::new();
        for (statement, needed) in [
            (&self.statements.delete, deletes),
            (&self.statements.upsert, upserts),
            (&self.statements.update, kept),
        ] {
            if needed && !statement.is_empty() {
                sql.push(statement.as_str());
            }
        }
        sql.push(&self.truncate);
        client.batch_execute(&sql.join("; ")).await.map_err(|e| self.err(e))
    }
}

/// Applies the changes of one stream to one table.
struct ChangeApplier {
    session: Arc<tokio::sync::Mutex<Session>>,
    /// This applier's plan in the session.
    id: usize,
    plan: Arc<Plan>,
    /// The batch's columns in the stage's order.
    projection: Vec<usize>,
}

impl Session {
    /// The plan of applier `id`, which opened on this session.
    fn plan(&self, id: usize) -> Result<Arc<Plan>> {
        self.plans
            .get(id)
            .cloned()
            .ok_or_else(|| Error::Internal(format!("no change applier {id} on this connection")))
    }

    /// Applies the queued batches and their positions in one transaction.
    async fn apply_queue(&mut self) -> Result<()> {
        let queue = std::mem::take(&mut self.queue);
        let url = self.plans.first().map(|p| p.url.clone()).unwrap_or_default();
        let err = |e| pg_error(&url, e);
        self.client.batch_execute("BEGIN").await.map_err(err)?;
        // Per plan, in order: the batches to apply (merged unless ordered) and the last position.
        let mut steps: Vec<(usize, Vec<RecordBatch>)> = Vec::new();
        let mut positions: Vec<(usize, Position)> = Vec::new();
        for (id, data, position) in queue {
            match steps.iter_mut().find(|(i, _)| *i == id).filter(|_| !self.ordered) {
                Some((_, batches)) => batches.push(data),
                None => steps.push((id, vec![data])),
            }
            if let Some(p) = position {
                positions.retain(|(i, _)| *i != id);
                positions.push((id, p));
            }
        }
        for (id, batches) in steps {
            let plan = self.plan(id)?;
            let data = match batches.as_slice() {
                [one] => one.clone(),
                many => arrow::compute::concat_batches(&many[0].schema(), many)?,
            };
            plan.apply(&self.client, &data).await?;
        }
        for (id, p) in positions {
            let plan = self.plan(id)?;
            execute(&self.client, &plan.checkpoints.store(&p))
                .await
                .map_err(|e| plan.err(e))?;
        }
        self.client.batch_execute("COMMIT").await.map_err(err)
    }
}

#[async_trait]
impl Sink for ChangeApplier {
    async fn write(&mut self, batch: &Batch) -> Result<Vec<Rejection>> {
        if batch.num_rows() == 0 && batch.position.is_none() {
            return Ok(Vec::new());
        }
        let data = batch.data.project(&self.projection)?;
        let mut s = self.session.lock().await;
        s.queue.push((self.id, data, batch.position.clone()));
        Ok(Vec::new())
    }

    async fn flush(&mut self) -> Result<()> {
        let mut s = self.session.lock().await;
        if s.queue.is_empty() {
            return Ok(());
        }
        let result = s.apply_queue().await;
        if result.is_err() {
            // What the other streams wrote since the last flush is lost
            // with it: the engine starts them over.
            s.broken = true;
            let _ = s.client.batch_execute("ROLLBACK").await;
        }
        result
    }

    async fn committed(&mut self) -> Result<Option<Vec<Position>>> {
        let s = self.session.lock().await;
        let rows = query(&s.client, &self.plan.checkpoints.committed())
            .await
            .map_err(|e| self.plan.err(e))?;
        Ok(Some(self.plan.checkpoints.positions(&rows)?))
    }

    async fn finish(&mut self, complete: bool) -> Result<()> {
        if complete {
            return self.flush().await;
        }
        self.session.lock().await.queue.clear();
        Ok(())
    }
}
