//! The job ledger the table sinks (PostgreSQL, MySQL, SQLite) keep in their
//! destination, and the one decision they all take from it when a stream
//! opens: load, resume, start over, skip as complete, or refuse.
//!
//! # The ledger
//!
//! `_sluice_checkpoints` holds, per pipeline and table, one row per source
//! partition (the position the table's rows reach, committed with them) and
//! one *job record*: the row whose partition is empty. Its `job` column is
//! the job that owns the table's load and its `source_cursor` says
//! `{"created":…,"complete":…}`: whether that job created the table it
//! loads (so keys and indexes come after the load, and starting over may
//! drop it) and whether the load reached the end. The record is written
//! when a job starts loading the table (with the table's creation or
//! truncation, in one transaction where the database allows) and marked
//! complete with the end of the load; it stays, so a later run of the same
//! pipeline — from another state directory too — finds it. Records written
//! by sluice before the `complete` flag existed (`{"created":true}`, deleted
//! at the end of a load) read as unfinished loads.
//!
//! Job numbers are random (see `sluice-state`), so two state directories
//! never take each other's jobs for their own.
//!
//! The table's schema, the statements that read and write it and the
//! migration of older layouts are in [`checkpoints`], shared by the three
//! sinks through a small [`checkpoints::Dialect`].
//!
//! # Exactly once in the default mode
//!
//! [`decide`] is the whole protocol. Whatever sequence of runs, kills,
//! re-runs and `--fresh` a pipeline goes through, a table written in the
//! default mode ([`WriteMode::New`]) holds the source's rows once: a job
//! resumes from the positions stored with its own rows; a new job finds an
//! earlier job's complete record and writes nothing (unless `--fresh`),
//! finds an unfinished one and starts the table over (truncated, or dropped
//! and created again when the pipeline created it), and refuses a table
//! holding rows no job of the pipeline wrote. The explicit modes relax what
//! they must: `append` adds to any table, `upsert` matches rows by key and
//! `replace` swaps a new table in.

pub mod checkpoints;

use sluice_core::{Error, Result, StreamInfo};
use sluice_core::{Position, Rejection, Sink};

use crate::mode::WriteMode;

/// A table's job record, as stored in its `source_cursor` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobRecord {
    /// The job that owns the table's load.
    pub job: i64,
    /// That job created the table it loads (the new table under `replace`).
    pub created: bool,
    /// The load reached the end of the stream.
    pub complete: bool,
}

impl JobRecord {
    /// The record of `job` as stored: `cursor` is the JSON text of the
    /// record's `source_cursor` column.
    pub fn parse(job: i64, cursor: &str) -> JobRecord {
        let v: serde_json::Value = serde_json::from_str(cursor).unwrap_or_default();
        let flag = |k: &str| v.get(k).and_then(serde_json::Value::as_bool).unwrap_or(false);
        JobRecord {
            job,
            created: flag("created"),
            complete: flag("complete"),
        }
    }

    /// The `source_cursor` column's text.
    pub fn cursor(&self) -> String {
        serde_json::json!({ "created": self.created, "complete": self.complete }).to_string()
    }
}

/// What a sink found in its destination for one stream's table.
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// The pipeline's job record for the table.
    pub record: Option<JobRecord>,
    /// Jobs of the pipeline with positions stored for the table (older
    /// sluice versions kept positions but no record of complete loads).
    pub position_jobs: Vec<i64>,
    /// The table exists.
    pub exists: bool,
    /// The table holds at least one row.
    pub has_rows: bool,
    /// Other pipelines with records or positions for the same table.
    pub other_pipelines: Vec<String>,
}

/// How a sink clears a table it starts over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clear {
    /// Nothing to clear (a table to create, or an empty one).
    Nothing,
    /// Delete the rows, keep the table (one the pipeline took over empty).
    Truncate,
    /// Drop the table and create it again from the stream's schema (one
    /// the pipeline created: the schema may have changed, keys and indexes
    /// come after the load again).
    Recreate,
}

/// What a sink does with a stream's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The table holds the whole stream, loaded by job `job`: write nothing.
    Complete { job: i64 },
    /// Continue this job's load from the positions stored with its rows.
    /// `created`: the job created the table and has not completed it yet
    /// (keys and indexes still to add).
    Resume { created: bool },
    /// Start this job's load: clear the table as said, write the job's
    /// record; `created`: the load table is (or will be) created by the job.
    Start { clear: Clear, created: bool },
}

/// Decides what opening `stream` on `table` does, from what the sink found.
/// `table` names the table in messages.
pub fn decide(mode: WriteMode, stream: &StreamInfo, found: &Found, table: &str) -> Result<Action> {
    let job = stream.job;
    let undone;
    let found = if undone_by_hand(found, job) {
        tracing::info!(
            table,
            "the table is empty or gone since an earlier job of this pipeline loaded it whole: loading it as found"
        );
        undone = Found {
            record: None,
            position_jobs: Vec::new(),
            ..found.clone()
        };
        &undone
    } else {
        found
    };
    let mine = found.record.filter(|r| r.job == job);
    // A job continuing its own work (a resumed run, an incremental read, a
    // reconnection) keeps what it loaded: its rows came with its positions.
    if stream.resume {
        if let Some(r) = mine {
            // A `replace` resumes only a new table its positions describe:
            // once they are gone (swapped in, or about to be) the new table
            // is loaded again rather than swapped in partial or twice.
            let replaced = mode == WriteMode::Replace && (r.complete || !found.position_jobs.contains(&job));
            // A load that completed before (an incremental source going
            // on) has its keys and indexes: the table is no longer new.
            if !replaced {
                return Ok(Action::Resume {
                    created: r.created && !r.complete,
                });
            }
        } else if mode != WriteMode::Replace && found.position_jobs.contains(&job) {
            // Positions without a record: a table loaded in place by an
            // older sluice, which kept no record of loads into existing
            // tables. (A new table under `replace` always has a record.)
            return Ok(Action::Resume { created: false });
        }
    }
    let earlier = found.record.filter(|r| r.job != job);
    if !stream.fresh
        && let Some(r) = earlier.filter(|r| r.complete)
    {
        return Ok(Action::Complete { job: r.job });
    }
    // Rows of this table were written by the pipeline (this job's record
    // without positions, an earlier job's record or positions).
    let ours = found.record.is_some() || !found.position_jobs.is_empty();
    let created_before = found.record.is_some_and(|r| r.created);
    match mode {
        WriteMode::New => {
            if !found.exists {
                return Ok(Action::Start {
                    clear: Clear::Nothing,
                    created: true,
                });
            }
            if found.has_rows && !found.other_pipelines.is_empty() {
                return Err(Error::config(
                    "sinks.mode",
                    format!(
                        "table {table} also holds rows of pipeline(s) {}, so this pipeline cannot start it over; \
                         set mode = \"append\" on the sink (`?mode=append` in a `sluice copy` URL) to add to it, \
                         or mode = \"replace\" to replace it",
                        found.other_pipelines.join(", ")
                    ),
                ));
            }
            if ours {
                if let Some(r) = earlier.filter(|r| !r.complete && !stream.fresh) {
                    tracing::warn!(
                        table,
                        "an unfinished load of this pipeline (job {}, run with another state directory?) is in the \
                         table: starting it over",
                        r.job
                    );
                }
                return Ok(Action::Start {
                    clear: if created_before {
                        Clear::Recreate
                    } else {
                        Clear::Truncate
                    },
                    created: created_before,
                });
            }
            if found.has_rows {
                return Err(Error::config(
                    "sinks.mode",
                    format!(
                        "table {table} already holds rows that this pipeline did not write, and the default mode \
                         loads a table once, into a new or empty table; set mode = \"append\" on the sink \
                         (`?mode=append` in a `sluice copy` URL) to add the rows to it, or mode = \"replace\" \
                         (`?mode=replace`) to replace the table"
                    ),
                ));
            }
            Ok(Action::Start {
                clear: Clear::Nothing,
                created: false,
            })
        }
        WriteMode::Append => {
            if let Some(r) = earlier.filter(|r| !r.complete && !stream.fresh) {
                return Err(Error::config(
                    "sinks.mode",
                    format!(
                        "table {table} holds an unfinished load of this pipeline by job {} (run with another state \
                         directory?); appending again would repeat its rows. Run with that state directory to \
                         resume it, or with --fresh to append from the start anyway",
                        r.job
                    ),
                ));
            }
            Ok(Action::Start {
                clear: Clear::Nothing,
                created: !found.exists,
            })
        }
        WriteMode::Replace => Ok(Action::Start {
            clear: Clear::Nothing,
            created: true,
        }),
        WriteMode::Upsert => Ok(Action::Start {
            clear: Clear::Nothing,
            created: !found.exists,
        }),
    }
}

/// Whether an earlier job's complete load was undone by hand since: its
/// table dropped, emptied or created again. The records describe a table
/// that is no longer there, so they neither make the stream complete nor
/// make the table the pipeline's own to drop.
fn undone_by_hand(found: &Found, job: i64) -> bool {
    found.record.is_some_and(|r| r.job != job && r.complete) && !found.has_rows
}

/// The record a job writes when it opens a table: `created` as [`decide`]
/// said, keeping what the job's own record says it created.
pub fn opening_record(found: &Found, job: i64, created: bool) -> JobRecord {
    let created_before = found.record.is_some_and(|r| r.job == job && r.created);
    JobRecord {
        job,
        created: created || created_before,
        complete: false,
    }
}

/// The sink of a stream its destination already holds whole: it writes
/// nothing and says so.
pub struct Done;

#[async_trait::async_trait]
impl Sink for Done {
    async fn write(&mut self, _batch: &sluice_core::Batch) -> Result<Vec<Rejection>> {
        Ok(Vec::new())
    }

    async fn flush(&mut self) -> Result<()> {
        Ok(())
    }

    async fn committed(&mut self) -> Result<Option<Vec<Position>>> {
        Ok(Some(Vec::new()))
    }

    fn already_complete(&self) -> bool {
        true
    }

    async fn finish(&mut self, _complete: bool) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::Schema;

    use super::*;

    fn stream(job: i64, resume: bool, fresh: bool) -> StreamInfo {
        let mut s = StreamInfo::new("t".into(), Arc::new(Schema::empty()), "p");
        s.job = job;
        s.resume = resume;
        s.fresh = fresh;
        s
    }

    fn rec(job: i64, created: bool, complete: bool) -> Option<JobRecord> {
        Some(JobRecord { job, created, complete })
    }

    fn table(record: Option<JobRecord>, has_rows: bool) -> Found {
        Found {
            record,
            position_jobs: record.map(|r| r.job).into_iter().collect(),
            exists: true,
            has_rows,
            other_pipelines: Vec::new(),
        }
    }

    #[test]
    fn records_read_back_and_older_markers_are_unfinished_loads() {
        let r = JobRecord {
            job: 7,
            created: true,
            complete: true,
        };
        assert_eq!(JobRecord::parse(7, &r.cursor()), r);
        assert_eq!(JobRecord::parse(3, r#"{"created":true}"#), rec(3, true, false).unwrap());
    }

    #[test]
    fn a_complete_table_is_not_loaded_again_by_another_job_unless_fresh() {
        let found = table(rec(1, true, true), true);
        assert_eq!(
            decide(WriteMode::New, &stream(2, false, false), &found, "t").unwrap(),
            Action::Complete { job: 1 }
        );
        for mode in [WriteMode::Append, WriteMode::Upsert, WriteMode::Replace] {
            assert_eq!(
                decide(mode, &stream(2, false, false), &found, "t").unwrap(),
                Action::Complete { job: 1 }
            );
        }
        // --fresh replaces what the pipeline wrote: drop and create again.
        assert_eq!(
            decide(WriteMode::New, &stream(2, false, true), &found, "t").unwrap(),
            Action::Start {
                clear: Clear::Recreate,
                created: true
            }
        );
        // A table emptied or created again by hand since is loaded as found:
        // taken over (never dropped: it may carry the user's constraints),
        // or created when it is gone.
        let emptied = table(rec(1, true, true), false);
        assert_eq!(
            decide(WriteMode::New, &stream(2, false, false), &emptied, "t").unwrap(),
            Action::Start {
                clear: Clear::Nothing,
                created: false
            }
        );
        let dropped = Found {
            exists: false,
            ..table(rec(1, true, true), false)
        };
        assert_eq!(
            decide(WriteMode::New, &stream(2, false, false), &dropped, "t").unwrap(),
            Action::Start {
                clear: Clear::Nothing,
                created: true
            }
        );
        // In append mode --fresh appends again: that is what append means.
        assert_eq!(
            decide(WriteMode::Append, &stream(2, false, true), &found, "t").unwrap(),
            Action::Start {
                clear: Clear::Nothing,
                created: false
            }
        );
    }

    #[test]
    fn a_job_resumes_its_own_load_and_an_incremental_one_goes_on_after_completing() {
        let found = table(rec(5, true, false), true);
        assert_eq!(
            decide(WriteMode::New, &stream(5, true, false), &found, "t").unwrap(),
            Action::Resume { created: true }
        );
        let done = table(rec(5, true, true), true);
        assert_eq!(
            decide(WriteMode::New, &stream(5, true, false), &done, "t").unwrap(),
            Action::Resume { created: false }
        );
        // A swapped-in replace has nothing to resume: load again.
        assert!(matches!(
            decide(WriteMode::Replace, &stream(5, true, false), &done, "t").unwrap(),
            Action::Start { .. }
        ));
        // Positions of the job without a record (older sluice): resume.
        let old = Found {
            position_jobs: vec![5],
            ..table(None, true)
        };
        assert_eq!(
            decide(WriteMode::Append, &stream(5, true, false), &old, "t").unwrap(),
            Action::Resume { created: false }
        );
    }

    #[test]
    fn an_unfinished_load_of_another_job_starts_over_in_the_default_mode_only() {
        let found = table(rec(1, false, false), true);
        assert_eq!(
            decide(WriteMode::New, &stream(2, false, false), &found, "t").unwrap(),
            Action::Start {
                clear: Clear::Truncate,
                created: false
            }
        );
        let e = decide(WriteMode::Append, &stream(2, false, false), &found, "t").unwrap_err();
        assert!(e.to_string().contains("unfinished load"), "{e}");
    }

    #[test]
    fn a_foreign_table_with_rows_is_refused_by_the_default_mode_and_an_empty_one_taken() {
        let e = decide(WriteMode::New, &stream(2, false, false), &table(None, true), "public.t").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("public.t") && msg.contains("mode = \"append\"") && msg.contains("mode = \"replace\""),
            "{msg}"
        );
        // --fresh does not give leave to empty someone else's table.
        assert!(decide(WriteMode::New, &stream(2, false, true), &table(None, true), "t").is_err());
        assert_eq!(
            decide(WriteMode::New, &stream(2, false, false), &table(None, false), "t").unwrap(),
            Action::Start {
                clear: Clear::Nothing,
                created: false
            }
        );
        assert_eq!(
            decide(WriteMode::Append, &stream(2, false, false), &table(None, true), "t").unwrap(),
            Action::Start {
                clear: Clear::Nothing,
                created: false
            }
        );
        // A table another pipeline also writes is never started over.
        let shared = Found {
            other_pipelines: vec!["other".into()],
            ..table(rec(1, true, true), true)
        };
        assert!(decide(WriteMode::New, &stream(2, false, true), &shared, "t").is_err());
    }
}
