//! The sluice state store: checkpoints, per-stream counts and run history,
//! kept in one SQLite file (`state.db`) under the pipeline's `state_dir`.
//!
//! The file is opened in WAL mode with `synchronous=FULL`, so a committed
//! checkpoint survives a crash or power loss, and another process (for
//! example `sluice status`) can read it while a run is writing. Every write is
//! one short transaction; positions are stored as JSON because only the
//! source that produced a cursor interprets it.

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
}

/// A stream's row in the store.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamState {
    pub stream: String,
    pub status: String,
    pub counts: StreamCounts,
    pub last_error: Option<String>,
    pub updated_at: String,
}

/// The open state store.
pub struct StateStore {
    conn: Connection,
    path: PathBuf,
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

    /// Records the start of a run and returns its id.
    pub fn begin_run(&self, pipeline: &str, plan_hash: &str) -> Result<i64> {
        self.conn
            .execute(
                "INSERT INTO runs (pipeline, plan_hash, started_at, status) VALUES (?1, ?2, ?3, 'running')",
                params![pipeline, plan_hash, now()],
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
                "INSERT INTO streams (pipeline, stream, run_id, status, rows_read, rows_written, rows_rejected, last_error, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (pipeline, stream) DO UPDATE SET run_id = excluded.run_id, status = excluded.status,
                   rows_read = excluded.rows_read, rows_written = excluded.rows_written,
                   rows_rejected = excluded.rows_rejected, last_error = excluded.last_error, updated_at = excluded.updated_at",
                params![
                    pipeline,
                    stream,
                    run_id,
                    status.as_str(),
                    counts.read as i64,
                    counts.written as i64,
                    counts.rejected as i64,
                    last_error,
                    now()
                ],
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
                let partition: String = r.get(0)?;
                let cursor: String = r.get(1)?;
                let rows: i64 = r.get(2)?;
                Ok(Position {
                    partition: partition.into(),
                    cursor: serde_json::from_str(&cursor).unwrap_or(serde_json::Value::String(cursor)),
                    rows: rows as u64,
                })
            })
            .map_err(|e| self.wrap(e))?;
        rows.collect::<std::result::Result<_, _>>().map_err(|e| self.wrap(e))
    }

    /// Every stream of a pipeline with its latest status and counts.
    pub fn streams(&self, pipeline: &str) -> Result<Vec<StreamState>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT stream, status, rows_read, rows_written, rows_rejected, last_error, updated_at
                 FROM streams WHERE pipeline = ?1 ORDER BY stream",
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
                    },
                    last_error: r.get(5)?,
                    updated_at: r.get(6)?,
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
            let run = store.begin_run("p", "h1").unwrap();
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
        let run = store.begin_run("p", "h").unwrap();
        let c = StreamCounts {
            read: 5,
            written: 4,
            rejected: 1,
        };
        store.update_stream("p", "s", run, Status::Running, &c, None).unwrap();
        store.update_stream("p", "s", run, Status::Completed, &c, None).unwrap();
        let s = store.streams("p").unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].status, "completed");
        assert_eq!(s[0].counts, c);
    }
}
