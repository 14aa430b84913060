//! The sluice state store: checkpoints, per-stream counts and run history,
//! kept in one SQLite file (`state.db`) under the pipeline's `state_dir`.
//!
//! The file is opened in WAL mode with `synchronous=FULL`, so a committed
//! checkpoint survives a crash or power loss, and another process (for
//! example `sluice status`) can read it while a run is writing. Every write is
//! one short transaction; positions are stored as JSON because only the
//! source that produced a cursor interprets it.
//!
//! A pipeline's work is a *job*: it starts fresh, and runs after an
//! interrupted or failed one continue it (resume) until one completes. A
//! job's number is drawn at random when it starts: destinations keep it
//! with the rows it loaded, so the jobs of two state directories (which
//! both count their runs from 1) are never taken for one another. The
//! `streams` rows and checkpoints belong to the current job;
//! [`StateStore::reset`] clears them when a new job starts.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};
use sluice_core::Position;

/// An error of the state store, naming the database file.
#[derive(Debug, thiserror::Error)]
#[error("state store {}: {source}", path.display())]
pub struct StateError {
    path: PathBuf,
    #[source]
    source: rusqlite::Error,
}

type Result<T> = std::result::Result<T, StateError>;

/// How a run or a stream ended (or that it has not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Running,
    Completed,
    Failed,
    Interrupted,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Interrupted => "interrupted",
        }
    }
}

/// Counts of one stream, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamCounts {
    pub read: u64,
    pub written: u64,
    pub rejected: u64,
    /// Rows a transform removed (a filter), neither written nor rejected.
    pub filtered: u64,
}

/// A stream's row in the store.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamState {
    pub stream: String,
    pub status: String,
    pub counts: StreamCounts,
    pub last_error: Option<String>,
    pub updated_at: String,
    /// Rows the source expects, when it knows.
    pub estimated: Option<u64>,
    /// When the current run started on the stream.
    pub started_at: Option<String>,
    /// Rows already delivered when the current run started (a resumed run).
    pub resumed_from: u64,
    /// Failed attempts retried so far in the current run.
    pub retries: u64,
    /// When the last checkpoint was stored.
    pub checkpoint_at: Option<String>,
}

/// A run's row in the store.
#[derive(Debug, Clone, PartialEq)]
pub struct RunInfo {
    pub id: i64,
    /// The job the run belongs to: a random number drawn when it started
    /// (the id of its first run for runs of earlier versions).
    pub job: i64,
    pub status: String,
    pub plan_hash: String,
    pub started_at: String,
}

/// The open state store.
pub struct StateStore {
    conn: Connection,
    path: PathBuf,
}

/// How far one stream's changes got, for `sluice status`.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeState {
    pub stream: String,
    /// Changes applied, over every run.
    pub applied: u64,
    /// How far the source's newest change is ahead of what was confirmed, in bytes of its log.
    pub lag_bytes: Option<u64>,
    /// The last position confirmed to the source, as the source writes it.
    pub confirmed: Option<String>,
    pub updated_at: String,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    pipeline TEXT NOT NULL,
    plan_hash TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    status TEXT NOT NULL,
    error TEXT
);
CREATE TABLE IF NOT EXISTS streams (
    pipeline TEXT NOT NULL,
    stream TEXT NOT NULL,
    run_id INTEGER NOT NULL,
    status TEXT NOT NULL,
    rows_read INTEGER NOT NULL DEFAULT 0,
    rows_written INTEGER NOT NULL DEFAULT 0,
    rows_rejected INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (pipeline, stream)
);
CREATE TABLE IF NOT EXISTS changes (
    pipeline TEXT NOT NULL,
    stream TEXT NOT NULL,
    applied INTEGER NOT NULL,
    lag_bytes INTEGER,
    confirmed TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (pipeline, stream)
);
CREATE TABLE IF NOT EXISTS checkpoints (
    pipeline TEXT NOT NULL,
    stream TEXT NOT NULL,
    partition TEXT NOT NULL,
    cursor TEXT NOT NULL,
    rows INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (pipeline, stream, partition)
);
";

/// Columns added to `runs` after its first version, added to older files on open.
const RUN_COLUMNS: &[(&str, &str)] = &[("job_id", "INTEGER")];

/// Columns added to `streams` after its first version, added to older files on open.
const STREAM_COLUMNS: &[(&str, &str)] = &[
    ("rows_estimated", "INTEGER"),
    ("started_at", "TEXT"),
    ("resumed_from", "INTEGER NOT NULL DEFAULT 0"),
    ("retries", "INTEGER NOT NULL DEFAULT 0"),
    ("partitions", "TEXT"),
    ("rows_filtered", "INTEGER NOT NULL DEFAULT 0"),
];

/// A new job's number: random, positive, and never a small run id (older
/// versions numbered jobs by their first run).
fn new_job() -> i64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    (h.finish() >> 2) as i64 + (1 << 32)
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl StateStore {
    /// Opens (creating if needed) `state.db` in `dir`.
    pub fn open(dir: &Path) -> std::result::Result<StateStore, sluice_core::Error> {
        std::fs::create_dir_all(dir).map_err(|e| sluice_core::Error::io(dir, e))?;
        let path = dir.join("state.db");
        let store = Self::open_file(&path)
            .map_err(|e| sluice_core::Error::connection(path.display().to_string(), e.source.to_string()))?;
        Ok(store)
    }

    fn open_file(path: &Path) -> Result<StateStore> {
        let wrap = |source| StateError {
            path: path.to_owned(),
            source,
        };
        let conn = Connection::open(path).map_err(wrap)?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(wrap)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(wrap)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(wrap)?;
        conn.execute_batch(SCHEMA).map_err(wrap)?;
        for (table, columns) in [("runs", RUN_COLUMNS), ("streams", STREAM_COLUMNS)] {
            let have: Vec<String> = {
                let mut stmt = conn.prepare(&format!("PRAGMA table_info({table})")).map_err(wrap)?;
                stmt.query_map([], |r| r.get::<_, String>(1))
                    .map_err(wrap)?
                    .collect::<rusqlite::Result<_>>()
                    .map_err(wrap)?
            };
            for (name, ty) in columns {
                if !have.iter().any(|h| h == name) {
                    match conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {name} {ty}")) {
                        // Another process (`sluice status` while a run
                        // starts) added it first.
                        Err(e) if e.to_string().contains("duplicate column name") => {}
                        other => other.map_err(wrap)?,
                    }
                }
            }
        }
        Ok(StateStore {
            conn,
            path: path.to_owned(),
        })
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn wrap(&self, source: rusqlite::Error) -> StateError {
        StateError {
            path: self.path.clone(),
            source,
        }
    }

    /// Records the start of a run and returns its id. The run belongs to
    /// job `job`, or starts a new job with a random number.
    pub fn begin_run(&self, pipeline: &str, plan_hash: &str, job: Option<i64>) -> Result<i64> {
        let job = job.unwrap_or_else(new_job);
        self.conn
            .execute(
                "INSERT INTO runs (pipeline, plan_hash, started_at, status, job_id) VALUES (?1, ?2, ?3, 'running', ?4)",
                params![pipeline, plan_hash, now(), job],
            )
            .map_err(|e| self.wrap(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Records how a run ended.
    pub fn end_run(&self, run_id: i64, status: Status, error: Option<&str>) -> Result<()> {
        self.conn
            .execute(
                "UPDATE runs SET ended_at = ?2, status = ?3, error = ?4 WHERE id = ?1",
                params![run_id, now(), status.as_str(), error],
            )
            .map_err(|e| self.wrap(e))?;
        Ok(())
    }

    /// Records a stream's status and counts for the current run.
    pub fn update_stream(
        &self,
        pipeline: &str,
        stream: &str,
        run_id: i64,
        status: Status,
        counts: &StreamCounts,
        last_error: Option<&str>,
    ) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO streams (pipeline, stream, run_id, status, rows_read, rows_written, rows_rejected, last_error,
                   updated_at, rows_filtered)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (pipeline, stream) DO UPDATE SET run_id = excluded.run_id, status = excluded.status,
                   rows_read = excluded.rows_read, rows_written = excluded.rows_written,
                   rows_rejected = excluded.rows_rejected, last_error = excluded.last_error, updated_at = excluded.updated_at,
                   rows_filtered = excluded.rows_filtered",
                params![
                    pipeline,
                    stream,
                    run_id,
                    status.as_str(),
                    counts.read as i64,
                    counts.written as i64,
                    counts.rejected as i64,
                    last_error,
                    now(),
                    counts.filtered as i64
                ],
            )
            .map_err(|e| self.wrap(e))?;
        Ok(())
    }

    /// The latest run of a pipeline, if it ever ran.
    pub fn last_run(&self, pipeline: &str) -> Result<Option<RunInfo>> {
        self.conn
            .query_row(
                "SELECT id, status, plan_hash, started_at, coalesce(job_id, id) FROM runs
                 WHERE pipeline = ?1 ORDER BY id DESC LIMIT 1",
                params![pipeline],
                |r| {
                    Ok(RunInfo {
                        id: r.get(0)?,
                        status: r.get(1)?,
                        plan_hash: r.get(2)?,
                        started_at: r.get(3)?,
                        job: r.get(4)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.wrap(e))
    }

    /// Whether the pipeline has runs of jobs other than `job` here: a job
    /// started after others (with `--fresh`) supersedes what they wrote.
    pub fn other_jobs(&self, pipeline: &str, job: i64) -> Result<bool> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM runs WHERE pipeline = ?1 AND coalesce(job_id, id) <> ?2)",
                params![pipeline, job],
                |r| r.get(0),
            )
            .map_err(|e| self.wrap(e))
    }

    /// Starts a new job: forgets the streams and checkpoints of the last one
    /// (run history stays).
    pub fn reset(&mut self, pipeline: &str) -> Result<()> {
        let path = self.path.clone();
        let wrap = |source| StateError {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(wrap)?;
        tx.execute("DELETE FROM checkpoints WHERE pipeline = ?1", params![pipeline])
            .map_err(wrap)?;
        tx.execute("DELETE FROM streams WHERE pipeline = ?1", params![pipeline])
            .map_err(wrap)?;
        tx.commit().map_err(wrap)
    }

    /// Records that a run starts on a stream: its partitions (kept for the
    /// job, so a resumed run reads the same ones), estimate and starting point.
    pub fn start_stream(
        &self,
        pipeline: &str,
        stream: &str,
        run_id: i64,
        partitions: &str,
        estimated: Option<u64>,
        resumed_from: u64,
    ) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO streams (pipeline, stream, run_id, status, rows_read, rows_written, rows_rejected,
                   updated_at, partitions, rows_estimated, started_at, resumed_from, retries)
                 VALUES (?1, ?2, ?3, 'running', 0, 0, 0, ?4, ?5, ?6, ?4, ?7, 0)
                 ON CONFLICT (pipeline, stream) DO UPDATE SET run_id = excluded.run_id, status = 'running',
                   rows_read = 0, rows_written = 0, rows_rejected = 0, rows_filtered = 0, last_error = NULL,
                   updated_at = excluded.updated_at, partitions = coalesce(streams.partitions, excluded.partitions),
                   rows_estimated = excluded.rows_estimated, started_at = excluded.started_at,
                   resumed_from = excluded.resumed_from, retries = 0",
                params![
                    pipeline,
                    stream,
                    run_id,
                    now(),
                    partitions,
                    estimated.map(|e| e as i64),
                    resumed_from as i64
                ],
            )
            .map_err(|e| self.wrap(e))?;
        Ok(())
    }

    /// The status and stored partitions (JSON) of a stream of the current job.
    pub fn stream_layout(&self, pipeline: &str, stream: &str) -> Result<Option<(String, Option<String>)>> {
        self.conn
            .query_row(
                "SELECT status, partitions FROM streams WHERE pipeline = ?1 AND stream = ?2",
                params![pipeline, stream],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.wrap(e))
    }

    /// Records how many rows earlier runs of the job had delivered.
    pub fn set_resumed_from(&self, pipeline: &str, stream: &str, rows: u64) -> Result<()> {
        self.conn
            .execute(
                "UPDATE streams SET resumed_from = ?3 WHERE pipeline = ?1 AND stream = ?2",
                params![pipeline, stream, rows as i64],
            )
            .map_err(|e| self.wrap(e))?;
        Ok(())
    }

    /// Records the retries of a stream's current run.
    pub fn set_retries(&self, pipeline: &str, stream: &str, retries: u64) -> Result<()> {
        self.conn
            .execute(
                "UPDATE streams SET retries = ?3 WHERE pipeline = ?1 AND stream = ?2",
                params![pipeline, stream, retries as i64],
            )
            .map_err(|e| self.wrap(e))?;
        Ok(())
    }

    /// Stores the delivered positions of a stream in one transaction.
    pub fn save_checkpoint(&mut self, pipeline: &str, stream: &str, positions: &[Position]) -> Result<()> {
        let path = self.path.clone();
        let wrap = |source| StateError {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(wrap)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO checkpoints (pipeline, stream, partition, cursor, rows, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (pipeline, stream, partition) DO UPDATE SET cursor = excluded.cursor, rows = excluded.rows, updated_at = excluded.updated_at",
                )
                .map_err(wrap)?;
            let at = now();
            for p in positions {
                stmt.execute(params![
                    pipeline,
                    stream,
                    &*p.partition,
                    p.cursor.to_string(),
                    p.rows as i64,
                    at
                ])
                .map_err(wrap)?;
            }
        }
        tx.commit().map_err(wrap)
    }

    /// The stored positions of a stream.
    pub fn checkpoints(&self, pipeline: &str, stream: &str) -> Result<Vec<Position>> {
        let mut stmt = self
            .conn
            .prepare("SELECT partition, cursor, rows FROM checkpoints WHERE pipeline = ?1 AND stream = ?2 ORDER BY partition")
            .map_err(|e| self.wrap(e))?;
        let rows = stmt
            .query_map(params![pipeline, stream], |r| {
                Ok(Position::stored(
                    &r.get::<_, String>(0)?,
                    r.get(1)?,
                    r.get::<_, i64>(2)? as u64,
                ))
            })
            .map_err(|e| self.wrap(e))?;
        rows.collect::<std::result::Result<_, _>>().map_err(|e| self.wrap(e))
    }

    /// Every stream of a pipeline with its latest status and counts.
    pub fn streams(&self, pipeline: &str) -> Result<Vec<StreamState>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT stream, status, rows_read, rows_written, rows_rejected, last_error, updated_at,
                   rows_estimated, started_at, resumed_from, retries,
                   (SELECT max(c.updated_at) FROM checkpoints c WHERE c.pipeline = s.pipeline AND c.stream = s.stream),
                   rows_filtered
                 FROM streams s WHERE pipeline = ?1 ORDER BY rowid",
            )
            .map_err(|e| self.wrap(e))?;
        let rows = stmt
            .query_map(params![pipeline], |r| {
                Ok(StreamState {
                    stream: r.get(0)?,
                    status: r.get(1)?,
                    counts: StreamCounts {
                        read: r.get::<_, i64>(2)? as u64,
                        written: r.get::<_, i64>(3)? as u64,
                        rejected: r.get::<_, i64>(4)? as u64,
                        filtered: r.get::<_, i64>(12)? as u64,
                    },
                    last_error: r.get(5)?,
                    updated_at: r.get(6)?,
                    estimated: r.get::<_, Option<i64>>(7)?.map(|v| v as u64),
                    started_at: r.get(8)?,
                    resumed_from: r.get::<_, i64>(9)? as u64,
                    retries: r.get::<_, i64>(10)? as u64,
                    checkpoint_at: r.get(11)?,
                })
            })
            .map_err(|e| self.wrap(e))?;
        rows.collect::<std::result::Result<_, _>>().map_err(|e| self.wrap(e))
    }

    /// Records how far a stream's changes got (`sluice sync`): changes
    /// applied in all, the source's lag behind its newest change in bytes,
    /// and the last position confirmed to the source.
    pub fn record_changes(
        &self,
        pipeline: &str,
        stream: &str,
        applied: u64,
        lag_bytes: Option<u64>,
        confirmed: Option<&str>,
    ) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO changes (pipeline, stream, applied, lag_bytes, confirmed, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (pipeline, stream) DO UPDATE SET applied = excluded.applied,
                   lag_bytes = excluded.lag_bytes, confirmed = coalesce(excluded.confirmed, changes.confirmed),
                   updated_at = excluded.updated_at",
                params![
                    pipeline,
                    stream,
                    applied as i64,
                    lag_bytes.map(|b| b as i64),
                    confirmed,
                    now()
                ],
            )
            .map_err(|e| self.wrap(e))?;
        Ok(())
    }

    /// The change streams of a pipeline, as [`StateStore::record_changes`] left them.
    pub fn changes(&self, pipeline: &str) -> Result<Vec<ChangeState>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT stream, applied, lag_bytes, confirmed, updated_at FROM changes
                 WHERE pipeline = ?1 ORDER BY stream",
            )
            .map_err(|e| self.wrap(e))?;
        let rows = stmt
            .query_map(params![pipeline], |r| {
                Ok(ChangeState {
                    stream: r.get(0)?,
                    applied: r.get::<_, i64>(1)? as u64,
                    lag_bytes: r.get::<_, Option<i64>>(2)?.map(|v| v as u64),
                    confirmed: r.get(3)?,
                    updated_at: r.get(4)?,
                })
            })
            .map_err(|e| self.wrap(e))?;
        rows.collect::<std::result::Result<_, _>>().map_err(|e| self.wrap(e))
    }

    /// Every pipeline with recorded streams.
    pub fn pipelines(&self) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT DISTINCT pipeline FROM streams ORDER BY pipeline")
            .map_err(|e| self.wrap(e))?;
        let rows = stmt.query_map([], |r| r.get(0)).map_err(|e| self.wrap(e))?;
        rows.collect::<std::result::Result<_, _>>().map_err(|e| self.wrap(e))
    }

    /// Status of the latest run of a pipeline, if it ever ran.
    pub fn last_run_status(&self, pipeline: &str) -> Result<Option<String>> {
        self.conn
            .query_row(
                "SELECT status FROM runs WHERE pipeline = ?1 ORDER BY id DESC LIMIT 1",
                params![pipeline],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.wrap(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_survive_reopen_and_overwrite_per_partition() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut store = StateStore::open(dir.path()).unwrap();
            let run = store.begin_run("p", "h1", None).unwrap();
            let pos = |c: u64, rows| Position {
                partition: "a.csv".into(),
                cursor: c.into(),
                rows,
            };
            store.save_checkpoint("p", "s", &[pos(100, 10)]).unwrap();
            store.save_checkpoint("p", "s", &[pos(250, 25)]).unwrap();
            store.end_run(run, Status::Completed, None).unwrap();
        }
        let store = StateStore::open(dir.path()).unwrap();
        let cps = store.checkpoints("p", "s").unwrap();
        assert_eq!(cps.len(), 1);
        assert_eq!(cps[0].cursor, serde_json::json!(250));
        assert_eq!(cps[0].rows, 25);
        assert_eq!(store.last_run_status("p").unwrap().as_deref(), Some("completed"));
    }

    #[test]
    fn stream_counts_are_upserted() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        let run = store.begin_run("p", "h", None).unwrap();
        let c = StreamCounts {
            read: 7,
            written: 4,
            rejected: 1,
            filtered: 2,
        };
        store.update_stream("p", "s", run, Status::Running, &c, None).unwrap();
        store.update_stream("p", "s", run, Status::Completed, &c, None).unwrap();
        let s = store.streams("p").unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].status, "completed");
        assert_eq!(s[0].counts, c);
    }

    #[test]
    fn a_job_spans_its_runs_and_reset_starts_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = StateStore::open(dir.path()).unwrap();
        let first = store.begin_run("p", "h", None).unwrap();
        store.end_run(first, Status::Interrupted, None).unwrap();
        let last = store.last_run("p").unwrap().unwrap();
        assert_eq!((last.id, last.status.as_str()), (first, "interrupted"));
        let job = last.job;
        assert!(job > 1 << 32, "a random job number, not a run id: {job}");
        let second = store.begin_run("p", "h", Some(job)).unwrap();
        assert_eq!(
            store.last_run("p").unwrap().unwrap().job,
            job,
            "a resumed run keeps the job"
        );
        store.start_stream("p", "s", second, "[]", Some(10), 4).unwrap();
        let pos = Position {
            partition: "s".into(),
            cursor: 7.into(),
            rows: 7,
        };
        store.save_checkpoint("p", "s", &[pos]).unwrap();
        assert_eq!(store.streams("p").unwrap()[0].resumed_from, 4);
        store.reset("p").unwrap();
        assert!(store.checkpoints("p", "s").unwrap().is_empty());
        assert!(store.streams("p").unwrap().is_empty());
        store.begin_run("p", "h", None).unwrap();
        let other = store.last_run("p").unwrap().unwrap().job;
        assert_ne!(other, job, "a new job");
        assert!(store.other_jobs("p", other).unwrap(), "it follows another job");
        // Another state directory draws its own numbers.
        let elsewhere = tempfile::tempdir().unwrap();
        let store2 = StateStore::open(elsewhere.path()).unwrap();
        store2.begin_run("p", "h", None).unwrap();
        let theirs = store2.last_run("p").unwrap().unwrap().job;
        assert!(theirs != job && theirs != other);
        assert!(
            !store2.other_jobs("p", theirs).unwrap(),
            "the first job of its directory"
        );
    }

    #[test]
    fn a_state_file_of_an_earlier_version_gains_the_new_columns() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(dir.path().join("state.db")).unwrap();
            conn.execute_batch(
                "CREATE TABLE runs (id INTEGER PRIMARY KEY, pipeline TEXT NOT NULL, plan_hash TEXT NOT NULL,
                   started_at TEXT NOT NULL, ended_at TEXT, status TEXT NOT NULL, error TEXT);
                 CREATE TABLE streams (pipeline TEXT NOT NULL, stream TEXT NOT NULL, run_id INTEGER NOT NULL,
                   status TEXT NOT NULL, rows_read INTEGER NOT NULL DEFAULT 0, rows_written INTEGER NOT NULL DEFAULT 0,
                   rows_rejected INTEGER NOT NULL DEFAULT 0, last_error TEXT, updated_at TEXT NOT NULL,
                   PRIMARY KEY (pipeline, stream));
                 INSERT INTO runs (pipeline, plan_hash, started_at, status) VALUES ('p', 'h', 'then', 'failed');",
            )
            .unwrap();
        }
        let store = StateStore::open(dir.path()).unwrap();
        let last = store.last_run("p").unwrap().unwrap();
        assert_eq!(last.job, last.id, "an old run is its own job");
        store.start_stream("p", "s", 2, "[]", None, 0).unwrap();
        assert_eq!(store.streams("p").unwrap()[0].status, "running");
    }
}
