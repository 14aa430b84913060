//! Running a copy again never doubles its rows. For each destination
//! (PostgreSQL, MySQL, SQLite, a file) one command goes through a kill -9
//! mid-load, the re-run that resumes it, a run after it finished, a run with
//! `--fresh`, a run with another state directory and a `--fresh` run killed
//! and resumed; after each step the destination holds every source row
//! exactly once (count, distinct ids, sums and values). A table holding rows
//! the pipeline did not write is refused unless appending is asked for.

use std::path::Path;
use std::time::Duration;

use crate::resume::{spawn, wait_for};
use crate::servers::{MyDb, PgDb};
use crate::{ok, sluice};

const ROWS: u64 = 200_000;

/// `data.csv` in `dir`: `id` 1..=ROWS, `v` = "v{id}", `n` = 7 × id.
fn write_source(dir: &Path) {
    let mut csv = String::with_capacity(ROWS as usize * 24);
    csv.push_str("id,v,n\n");
    for i in 1..=ROWS {
        csv.push_str(&format!("{i},v{i},{}\n", 7 * i));
    }
    std::fs::write(dir.join("data.csv"), csv).unwrap();
}

/// The digest every destination must show: rows, distinct ids, sum of ids,
/// sum of `n`, rows whose `v` is not `v{id}`.
fn expected() -> String {
    let sum = ROWS * (ROWS + 1) / 2;
    format!("{ROWS},{ROWS},{sum},{},0", 7 * sum)
}

const DIGEST_SQL: &str = "SELECT CONCAT(COUNT(*), ',', COUNT(DISTINCT id), ',', COALESCE(SUM(id), 0), ',', \
                          COALESCE(SUM(n), 0), ',', COALESCE(SUM(CASE WHEN v <> CONCAT('v', id) THEN 1 ELSE 0 END), 0)) \
                          FROM events";

/// One destination as the scenario sees it.
struct Dest<'a> {
    /// The `sluice copy` destination.
    url: String,
    /// Rows committed so far (0 before the table or file exists).
    progress: Box<dyn Fn() -> u64 + 'a>,
    /// `expected()`'s digest of what the destination holds.
    digest: Box<dyn Fn() -> String + 'a>,
    /// Whether rows become visible while the load goes (a database), or
    /// only when the output is published at the end (a file).
    visible_mid_load: bool,
}

/// Starts the copy and kills it with SIGKILL mid-load.
fn kill_mid_load(dir: &Path, dest: &Dest, extra: &[&str]) {
    let mut args = vec!["copy", "data.csv", &dest.url, "--batch-rows", "2000"];
    if !extra.contains(&"--state-dir") {
        args.extend(["--state-dir", "state"]);
    }
    args.extend_from_slice(extra);
    let mut child = spawn(dir, &args);
    if dest.visible_mid_load {
        // Mid-load of this run: a --fresh run first empties what is there.
        wait_for("committed batches", dir, || (6000..ROWS).contains(&(dest.progress)()));
    } else {
        wait_for("the output being written", dir, || dir.join("out.csv.part").exists());
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let at_kill = (dest.progress)();
    if dest.visible_mid_load {
        assert!(at_kill > 0 && at_kill < ROWS, "killed mid-load ({at_kill} rows)");
    }
}

fn copy(dir: &Path, dest: &Dest, extra: &[&str]) -> String {
    let mut args = vec!["copy", "data.csv", &dest.url, "--batch-rows", "2000"];
    if !extra.contains(&"--state-dir") {
        args.extend(["--state-dir", "state"]);
    }
    args.extend_from_slice(extra);
    ok(&sluice(dir, &args))
}

/// The whole sequence of runs of one command against `dest`.
fn exactly_once_through_every_kind_of_rerun(dir: &Path, dest: Dest) {
    let want = expected();
    kill_mid_load(dir, &dest, &[]);
    let err = copy(dir, &dest, &[]);
    assert!(err.contains("continued unfinished run"), "the re-run resumes:\n{err}");
    if dest.visible_mid_load {
        // From the destination's own positions, not from the start.
        assert!(
            err.contains("resumed after") && !err.contains("starting it over"),
            "{err}"
        );
    }
    assert_eq!((dest.digest)(), want, "after the resumed run");

    // The same command once the job is complete: nothing read, nothing written.
    let err = copy(dir, &dest, &[]);
    assert!(err.contains("already complete"), "{err}");
    assert_eq!((dest.digest)(), want, "after a run of the completed job");

    // --fresh replaces what the job wrote.
    copy(dir, &dest, &["--fresh"]);
    assert_eq!((dest.digest)(), want, "after --fresh");

    // A --fresh run killed mid-load, then the command again.
    kill_mid_load(dir, &dest, &["--fresh"]);
    copy(dir, &dest, &[]);
    assert_eq!((dest.digest)(), want, "after a killed --fresh run and its resumption");
    let err = copy(dir, &dest, &[]);
    assert!(err.contains("already complete"), "{err}");
    assert_eq!((dest.digest)(), want);
}

/// Databases keep their own record of the job: a run with another state
/// directory finds the load complete, or starts an unfinished one over.
fn the_destination_decides_across_state_directories(dir: &Path, dest: &Dest) {
    let want = expected();
    let err = copy(dir, dest, &["--state-dir", "elsewhere"]);
    assert!(err.contains("already holds it whole"), "{err}");
    assert_eq!((dest.digest)(), want, "a second state directory does not double");
    // Killed under a third state directory, finished under a fourth.
    kill_mid_load(dir, dest, &["--state-dir", "third", "--fresh"]);
    copy(dir, dest, &["--state-dir", "fourth"]);
    assert_eq!(
        (dest.digest)(),
        want,
        "an unfinished load found by another state directory starts over"
    );
}

fn pg_dest(db: &PgDb) -> Dest<'_> {
    let count = move || -> u64 {
        db.sql(
            "SELECT CASE WHEN to_regclass('events') IS NULL THEN 0 ELSE \
             (xpath('/row/c/text()', query_to_xml('SELECT count(*) AS c FROM events', false, true, '')))[1]::text::bigint END",
        )
        .parse()
        .unwrap_or(0)
    };
    Dest {
        url: format!("{}?table=events", db.url()),
        progress: Box::new(count),
        digest: Box::new(move || db.sql(DIGEST_SQL)),
        visible_mid_load: true,
    }
}

fn my_dest(db: &MyDb) -> Dest<'_> {
    Dest {
        url: format!("{}?table=events", db.url()),
        progress: Box::new(move || {
            db.try_sql("SELECT COUNT(*) FROM events")
                .ok()
                .and_then(|c| c.trim().parse().ok())
                .unwrap_or(0)
        }),
        digest: Box::new(move || db.sql(DIGEST_SQL)),
        visible_mid_load: true,
    }
}

fn sqlite_dest(dir: &Path) -> Dest<'_> {
    let query = move |sql: &str| -> Option<String> {
        let db = rusqlite::Connection::open(dir.join("dst.db")).ok()?;
        db.busy_timeout(Duration::from_secs(10)).ok()?;
        db.query_row(sql, [], |r| r.get::<_, String>(0)).ok()
    };
    Dest {
        url: "sqlite://dst.db?table=events".into(),
        progress: Box::new(move || {
            query("SELECT CAST(COUNT(*) AS TEXT) FROM events")
                .and_then(|c| c.parse().ok())
                .unwrap_or(0)
        }),
        digest: Box::new(move || {
            query(
                "SELECT COUNT(*) || ',' || COUNT(DISTINCT id) || ',' || COALESCE(SUM(id), 0) || ',' || \
                 COALESCE(SUM(n), 0) || ',' || COALESCE(SUM(v <> 'v' || id), 0) FROM events",
            )
            .unwrap_or_default()
        }),
        visible_mid_load: true,
    }
}

/// The digest of `out.csv`, computed the way the databases compute theirs.
fn file_digest(path: &Path) -> String {
    let Ok(text) = std::fs::read_to_string(path) else {
        return "no file".into();
    };
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("id,v,n"), "header of {}", path.display());
    let (mut rows, mut sum, mut sum_n, mut bad) = (0u64, 0u64, 0u64, 0u64);
    let mut ids = std::collections::HashSet::new();
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        let id: u64 = f[0].parse().unwrap();
        rows += 1;
        sum += id;
        sum_n += f[2].parse::<u64>().unwrap();
        ids.insert(id);
        if f[1] != format!("v{id}") {
            bad += 1;
        }
    }
    format!("{rows},{},{sum},{sum_n},{bad}", ids.len())
}

#[test]
fn postgres_holds_the_rows_once_through_kills_reruns_and_fresh() {
    let Some(db) = PgDb::create("rerun_pg") else { return };
    let dir = tempfile::tempdir().unwrap();
    write_source(dir.path());
    let dest = pg_dest(&db);
    exactly_once_through_every_kind_of_rerun(dir.path(), dest);
    the_destination_decides_across_state_directories(dir.path(), &pg_dest(&db));
}

#[test]
fn mysql_holds_the_rows_once_through_kills_reruns_and_fresh() {
    let Some(db) = MyDb::create("rerun_my") else { return };
    let dir = tempfile::tempdir().unwrap();
    write_source(dir.path());
    exactly_once_through_every_kind_of_rerun(dir.path(), my_dest(&db));
    the_destination_decides_across_state_directories(dir.path(), &my_dest(&db));
}

#[test]
fn sqlite_holds_the_rows_once_through_kills_reruns_and_fresh() {
    let dir = tempfile::tempdir().unwrap();
    write_source(dir.path());
    exactly_once_through_every_kind_of_rerun(dir.path(), sqlite_dest(dir.path()));
    the_destination_decides_across_state_directories(dir.path(), &sqlite_dest(dir.path()));
}

#[test]
fn a_file_holds_the_rows_once_through_kills_reruns_and_fresh() {
    let dir = tempfile::tempdir().unwrap();
    write_source(dir.path());
    let out = dir.path().join("out.csv");
    let dest = Dest {
        url: "out.csv".into(),
        progress: Box::new(|| 0),
        digest: Box::new(|| file_digest(&out)),
        visible_mid_load: false,
    };
    exactly_once_through_every_kind_of_rerun(dir.path(), dest);
    // A complete job does not touch its output again.
    let before = std::fs::metadata(&out).unwrap().modified().unwrap();
    std::thread::sleep(Duration::from_millis(20));
    ok(&sluice(
        dir.path(),
        &[
            "copy",
            "data.csv",
            "out.csv",
            "--batch-rows",
            "2000",
            "--state-dir",
            "state",
        ],
    ));
    assert_eq!(
        std::fs::metadata(&out).unwrap().modified().unwrap(),
        before,
        "not rewritten"
    );
}

/// A table with rows of its own is refused, naming it and both ways out;
/// `mode=append` adds to it.
fn refuses_a_foreign_table(dir: &Path, url: &str, count: impl Fn() -> u64, table: &str) {
    let out = sluice(dir, &["copy", "data.csv", url, "--state-dir", "state"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(table) && err.contains("mode = \"append\"") && err.contains("mode = \"replace\""),
        "{err}"
    );
    assert!(err.contains("?mode=append"), "{err}");
    assert_eq!(count(), 1, "the table was left alone");
    ok(&sluice(
        dir,
        &[
            "copy",
            "data.csv",
            &format!("{url}&mode=append"),
            "--state-dir",
            "state",
        ],
    ));
    assert_eq!(count(), ROWS + 1, "appended when asked");
}

#[test]
fn a_table_holding_rows_the_pipeline_did_not_write_is_refused_unless_appending() {
    let dir = tempfile::tempdir().unwrap();
    write_source(dir.path());
    if let Some(db) = PgDb::create("foreign_pg") {
        db.sql("CREATE TABLE events (id bigint, v text, n bigint); INSERT INTO events VALUES (0, 'v0', 0)");
        let count = || db.sql("SELECT count(*) FROM events").parse().unwrap();
        refuses_a_foreign_table(dir.path(), &format!("{}?table=events", db.url()), count, "events");
    }
    if let Some(db) = MyDb::create("foreign_my") {
        db.sql("CREATE TABLE events (id bigint, v text, n bigint); INSERT INTO events VALUES (0, 'v0', 0)");
        let count = || db.sql("SELECT COUNT(*) FROM events").parse().unwrap();
        refuses_a_foreign_table(dir.path(), &format!("{}?table=events", db.url()), count, "events");
    }
    let lite = rusqlite::Connection::open(dir.path().join("foreign.db")).unwrap();
    lite.execute_batch("CREATE TABLE events (id INTEGER, v TEXT, n INTEGER); INSERT INTO events VALUES (0, 'v0', 0)")
        .unwrap();
    let count = || {
        lite.query_row("SELECT COUNT(*) FROM events", [], |r| r.get::<_, i64>(0))
            .unwrap() as u64
    };
    refuses_a_foreign_table(dir.path(), "sqlite://foreign.db?table=events", count, "`events`");
}

#[test]
fn an_empty_table_made_beforehand_is_loaded_and_fresh_empties_it_rather_than_drop_it() {
    let Some(db) = PgDb::create("adopt_pg") else { return };
    let dir = tempfile::tempdir().unwrap();
    write_source(dir.path());
    // The user's own table, with a comment sluice would not recreate.
    db.sql("CREATE TABLE events (id bigint PRIMARY KEY, v text, n bigint); COMMENT ON TABLE events IS 'mine'");
    let dest = pg_dest(&db);
    copy(dir.path(), &dest, &[]);
    assert_eq!((dest.digest)(), expected());
    copy(dir.path(), &dest, &["--fresh"]);
    assert_eq!((dest.digest)(), expected());
    assert_eq!(
        db.sql("SELECT obj_description('events'::regclass)"),
        "mine",
        "truncated, not dropped"
    );
}

/// A table dropped and created again by hand (empty, with the user's own
/// constraint) after a complete load is loaded again by a run with another
/// state directory, into the user's table as it is: the pipeline's earlier
/// record no longer describes it. In PostgreSQL and MySQL alike.
#[test]
fn a_table_created_again_by_hand_after_a_complete_load_is_loaded_as_found() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("few.csv"), "id,qty\n1,5\n2,-1\n3,7\n").unwrap();
    let copy = |url: &str, state: &str| {
        sluice(
            d,
            &[
                "copy",
                "few.csv",
                url,
                "--state-dir",
                state,
                "--on-error",
                "dlq",
                "--dlq",
                "rejects.ndjson",
            ],
        )
    };
    if let Some(db) = PgDb::create("rerun_by_hand") {
        let url = format!("{}?table=items", db.url());
        ok(&copy(&url, "pg-a"));
        assert_eq!(db.sql("SELECT count(*) FROM items"), "3");
        db.sql("DROP TABLE items; CREATE TABLE items (id bigint PRIMARY KEY, qty bigint CONSTRAINT qty_nonneg CHECK (qty >= 0))");
        ok(&copy(&url, "pg-b"));
        assert_eq!(db.sql("SELECT string_agg(id::text, ',' ORDER BY id) FROM items"), "1,3");
        let dead = std::fs::read_to_string(d.join("rejects.ndjson")).unwrap();
        assert!(dead.contains("qty_nonneg"), "{dead}");
    }
    if let Some(db) = MyDb::create("rerun_by_hand") {
        let url = format!("{}?table=items", db.url());
        ok(&copy(&url, "my-a"));
        assert_eq!(db.sql("SELECT count(*) FROM items"), "3");
        db.sql("DROP TABLE items; CREATE TABLE items (id BIGINT PRIMARY KEY, qty BIGINT, CONSTRAINT qty_nonneg CHECK (qty >= 0))");
        ok(&copy(&url, "my-b"));
        assert_eq!(db.sql("SELECT GROUP_CONCAT(id ORDER BY id) FROM items"), "1,3");
    }
}

/// The columns of `_sluice_checkpoints` before they had their present names,
/// with today's values: (old name, present name), in table order.
const OLD_COLUMNS: [(&str, &str); 7] = [
    ("pipeline", "pipeline"),
    ("target", "table_name"),
    ("partition", "source_partition"),
    ("cursor", "source_cursor"),
    ("rows", "row_count"),
    ("job", "job"),
    ("updated_at", "updated_at"),
];

/// The present columns, as the layout queries list them.
const NEW_LAYOUT: &str = "pipeline,table_name,source_partition,source_cursor,row_count,job,updated_at";

/// SQL turning the present `_sluice_checkpoints` into the table an earlier
/// sluice wrote: `create` is its DDL as that version had it, `partition`
/// and `quote` that database's name and quoting of the old columns. The
/// rows are kept as they are.
fn downgrade_sql(temp: &str, create: &str, partition: &str, quote: fn(&str) -> String) -> String {
    let old: Vec<String> = OLD_COLUMNS
        .iter()
        .map(|(o, _)| quote(if *o == "partition" { partition } else { o }))
        .collect();
    let new: Vec<&str> = OLD_COLUMNS.iter().map(|(_, n)| *n).collect();
    format!(
        "CREATE {temp} TABLE kept AS SELECT * FROM _sluice_checkpoints; DROP TABLE _sluice_checkpoints; {create}; \
         INSERT INTO _sluice_checkpoints ({}) SELECT {} FROM kept; DROP TABLE kept",
        old.join(", "),
        new.join(", ")
    )
}

/// A destination written by the sluice before `_sluice_checkpoints` had
/// its present columns resumes: killed mid-load, its checkpoint table put
/// back in the old layout (`downgrade`), the command run again continues
/// from the positions stored there and holds every row once; a complete
/// load recorded in the old layout is still complete for another state
/// directory. `layout` lists the table's columns.
fn resumes_from_the_old_checkpoint_layout(dir: &Path, dest: &Dest, downgrade: &dyn Fn(), layout: &dyn Fn() -> String) {
    let want = expected();
    kill_mid_load(dir, dest, &[]);
    downgrade();
    assert!(layout().contains(",target,"), "old layout: {}", layout());
    let err = copy(dir, dest, &[]);
    assert!(
        err.contains("continued unfinished run") && err.contains("resumed after") && !err.contains("starting it over"),
        "the re-run resumes from the positions in the old table:\n{err}"
    );
    assert_eq!((dest.digest)(), want, "after resuming from the old layout");
    assert_eq!(layout(), NEW_LAYOUT, "renamed in place");

    downgrade();
    let err = copy(dir, dest, &["--state-dir", "elsewhere"]);
    assert!(err.contains("already holds it whole"), "{err}");
    assert_eq!(
        (dest.digest)(),
        want,
        "a complete load in the old layout is not loaded again"
    );
    assert_eq!(layout(), NEW_LAYOUT);
}

#[test]
fn postgres_resumes_from_the_old_checkpoint_layout() {
    let Some(db) = PgDb::create("i13_oldck_pg") else { return };
    let dir = tempfile::tempdir().unwrap();
    write_source(dir.path());
    // The table as sluice created it before (`{schema}` is public here).
    let create = "CREATE TABLE public._sluice_checkpoints (pipeline text NOT NULL, target text NOT NULL, \
                  partition text NOT NULL, cursor text NOT NULL, rows bigint NOT NULL, job bigint NOT NULL, \
                  updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (pipeline, target, partition))";
    let downgrade = downgrade_sql("TEMP", create, "partition", |c| format!("\"{c}\""));
    resumes_from_the_old_checkpoint_layout(
        dir.path(),
        &pg_dest(&db),
        &|| {
            db.sql(&downgrade);
        },
        &|| {
            db.sql(
                "SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM information_schema.columns \
                 WHERE table_name = '_sluice_checkpoints'",
            )
        },
    );
}

#[test]
fn mysql_resumes_from_the_old_checkpoint_layout() {
    let Some(db) = MyDb::create("i13_oldck_my") else { return };
    let dir = tempfile::tempdir().unwrap();
    write_source(dir.path());
    let create = "CREATE TABLE _sluice_checkpoints (pipeline VARCHAR(190) NOT NULL, target VARCHAR(255) NOT NULL, \
                  part VARCHAR(255) NOT NULL, `cursor` TEXT NOT NULL, `rows` BIGINT NOT NULL, job BIGINT NOT NULL, \
                  updated_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3), \
                  PRIMARY KEY (pipeline, target, part)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin";
    let downgrade = downgrade_sql("TEMPORARY", create, "part", |c| format!("`{c}`"));
    resumes_from_the_old_checkpoint_layout(
        dir.path(),
        &my_dest(&db),
        &|| {
            db.sql(&downgrade);
        },
        &|| {
            db.sql(
                "SELECT GROUP_CONCAT(COLUMN_NAME ORDER BY ORDINAL_POSITION) FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '_sluice_checkpoints'",
            )
        },
    );
}

#[test]
fn sqlite_resumes_from_the_old_checkpoint_layout() {
    let dir = tempfile::tempdir().unwrap();
    write_source(dir.path());
    let create = "CREATE TABLE _sluice_checkpoints (pipeline TEXT NOT NULL, target TEXT NOT NULL, \
                  partition TEXT NOT NULL, cursor TEXT NOT NULL, rows INTEGER NOT NULL, job INTEGER NOT NULL, \
                  updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), \
                  PRIMARY KEY (pipeline, target, partition))";
    let downgrade = downgrade_sql("TEMP", create, "partition", |c| format!("\"{c}\""));
    let open = || {
        let db = rusqlite::Connection::open(dir.path().join("dst.db")).unwrap();
        db.busy_timeout(Duration::from_secs(10)).unwrap();
        db
    };
    resumes_from_the_old_checkpoint_layout(
        dir.path(),
        &sqlite_dest(dir.path()),
        &|| open().execute_batch(&downgrade).unwrap(),
        &|| {
            open()
                .query_row(
                    "SELECT group_concat(name, ',') FROM pragma_table_info('_sluice_checkpoints')",
                    [],
                    |r| r.get(0),
                )
                .unwrap()
        },
    );
}
