//! Never losing a row: runs killed with SIGKILL resume exactly where the
//! destination's own checkpoint says, connections cut by a proxy are
//! reconnected and retried, and `sluice status` follows a run from another
//! process. The full chaos suite (`bench/chaos.sh`) does the same at scale.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::servers::{MyDb, PgDb};
use crate::{ok, sluice};

const ROWS: u64 = 200_000;

/// Starts `sluice args` in `dir` without waiting for it; its stderr goes to `dir/run.log`.
pub(crate) fn spawn(dir: &Path, args: &[&str]) -> Child {
    let log = std::fs::File::create(dir.join("run.log")).unwrap();
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .current_dir(dir)
        .env_remove("SLUICE_LOG")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start sluice")
}

/// Polls `probe` until it is true, for at most a minute; shows the run's log if not.
pub(crate) fn wait_for(what: &str, dir: &Path, mut probe: impl FnMut() -> bool) {
    let start = Instant::now();
    while !probe() {
        if start.elapsed() > Duration::from_secs(60) {
            let log = std::fs::read_to_string(dir.join("run.log")).unwrap_or_default();
            panic!("timed out waiting for {what}; the run said:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `sluice run PIPELINE` in `dir` and kills it with SIGKILL once
/// `count` (rows in the destination) reaches a few batches; returns the rows
/// the destination holds after the kill, asserting the kill was mid-table.
fn kill_mid_table(dir: &Path, pipeline: &str, mut count: impl FnMut() -> u64) -> u64 {
    let mut child = spawn(dir, &["run", pipeline]);
    wait_for("committed batches", dir, || count() >= 6000);
    child.kill().unwrap();
    child.wait().unwrap();
    let at_kill = count();
    assert!(at_kill > 0 && at_kill < ROWS, "killed mid-table ({at_kill} rows)");
    at_kill
}

/// Rows of `events` in a destination, or 0 before the table exists.
fn pg_count(db: &PgDb, table: &str) -> u64 {
    db.sql(&format!(
        "SELECT CASE WHEN to_regclass('{table}') IS NULL THEN 0 ELSE \
         (xpath('/row/c/text()', query_to_xml('SELECT count(*) AS c FROM {table}', false, true, '')))[1]::text::bigint END"
    ))
    .parse()
    .unwrap_or(0)
}

/// `1234567` as `1,234,567`, as sluice prints counts.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn pg_source(db: &PgDb) {
    db.sql(&format!(
        "CREATE TABLE events (id bigint PRIMARY KEY, v text NOT NULL, n numeric(12,2), at timestamptz); \
         INSERT INTO events SELECT g, md5(g::text), g / 7.0, timestamptz '2026-01-01' + g * interval '1 second' \
         FROM generate_series(1, {ROWS}) g; ANALYZE events"
    ));
}

fn pipeline(dir: &Path, src: &str, dst: &str, batch_rows: u64) -> String {
    let toml = format!(
        r#"
[source]
type = "{}"
url = "{src}"
table = "events"
{}

[[sinks]]
type = "postgres"
url = "{dst}"

[runtime]
batch_rows = {batch_rows}
state_dir = "state"
retry_initial_ms = 50
retry_max_ms = 400
"#,
        if src.starts_with("mysql") { "mysql" } else { "postgres" },
        // Several partitions, each resumed on its own (MySQL splits by its estimate).
        if src.starts_with("mysql") { "" } else { "partitions = 4" }
    );
    std::fs::write(dir.join("p.toml"), toml).unwrap();
    "p.toml".into()
}

/// Every source row is in the destination once, with the same values.
fn assert_exact(src: &PgDb, dst: &PgDb) {
    let counts = dst.sql("SELECT count(*) || ',' || count(DISTINCT id) FROM events");
    assert_eq!(
        counts,
        format!("{ROWS},{ROWS}"),
        "rows, distinct ids in the destination"
    );
    assert_eq!(src.fingerprint("events"), dst.fingerprint("events"));
}

#[test]
fn a_killed_pg_to_pg_run_resumes_mid_table_without_losing_or_repeating_a_row() {
    let (Some(src), Some(dst)) = (PgDb::create("kill_src"), PgDb::create("kill_dst")) else {
        return;
    };
    pg_source(&src);
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &src.url(), &dst.url(), 2000);
    kill_mid_table(dir.path(), &p, || pg_count(&dst, "events"));

    let status = String::from_utf8_lossy(&sluice(dir.path(), &["status", &p]).stdout).into_owned();
    assert!(status.contains("process gone"), "status after a kill:\n{status}");

    // A changed plan is refused rather than resumed into a different table.
    let changed = pipeline(dir.path(), &src.url(), &dst.url(), 3000);
    let out = sluice(dir.path(), &["run", &changed]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("changed since its unfinished run") && err.contains("--fresh"),
        "{err}"
    );

    pipeline(dir.path(), &src.url(), &dst.url(), 2000);
    let err = ok(&sluice(dir.path(), &["run", &p]));
    assert!(
        err.contains("continued unfinished run") && err.contains("resumed after"),
        "{err}"
    );
    // Both runs moved the rows as binary COPY tuples, positions read from them.
    let killed = std::fs::read_to_string(dir.path().join("run.log")).unwrap();
    assert!(killed.contains("binary passthrough"), "{killed}");
    assert!(err.contains("events: binary passthrough"), "{err}");
    assert_exact(&src, &dst);
    // Keys and indexes come after the load, also when the load was resumed.
    assert_eq!(
        dst.sql("SELECT count(*) FROM pg_constraint WHERE conrelid = 'events'::regclass AND contype = 'p'"),
        "1"
    );
}

#[test]
fn foreign_keys_of_tables_completed_before_a_kill_are_added_when_the_run_resumes() {
    let (Some(src), Some(dst)) = (PgDb::create("fk_src"), PgDb::create("fk_dst")) else {
        return;
    };
    pg_source(&src);
    // `a_lines` is read first and references `events`, which is loaded after it.
    src.sql(
        "CREATE TABLE a_lines (id int PRIMARY KEY, event_id bigint NOT NULL REFERENCES events (id)); \
         INSERT INTO a_lines SELECT g, g * 3 FROM generate_series(1, 500) g",
    );
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[source]\ntype = \"postgres\"\nurl = \"{}\"\npartitions = 4\n\n\
         [[sinks]]\ntype = \"postgres\"\nurl = \"{}\"\n\n\
         [runtime]\nbatch_rows = 2000\nstate_dir = \"state\"\n",
        src.url(),
        dst.url()
    );
    std::fs::write(dir.path().join("db.toml"), toml).unwrap();
    kill_mid_table(dir.path(), "db.toml", || pg_count(&dst, "events"));
    let fk = "SELECT count(*) FROM pg_constraint WHERE conrelid = 'a_lines'::regclass \
              AND contype = 'f' AND confrelid = 'events'::regclass";
    assert_eq!(
        dst.sql("SELECT count(*) FROM a_lines"),
        "500",
        "a_lines completed before the kill"
    );
    assert_eq!(dst.sql(fk), "0", "its foreign key waits for events");

    let err = ok(&sluice(dir.path(), &["run", "db.toml"]));
    assert!(err.contains("resumed after"), "{err}");
    assert_exact(&src, &dst);
    assert_eq!(
        dst.sql(fk),
        "1",
        "the resumed run added the skipped table's foreign key"
    );
    assert_eq!(
        dst.sql("SELECT count(*) FROM _sluice_foreign_keys"),
        "0",
        "nothing left waiting"
    );

    // sluice's own tables in the destination are not streams when it is read back.
    let back = ok(&sluice(dir.path(), &["copy", &dst.url(), "null://"]));
    assert!(!back.contains("_sluice_"), "bookkeeping tables were read:\n{back}");
}

#[test]
fn a_killed_mysql_to_pg_run_resumes_without_losing_or_repeating_a_row() {
    let (Some(my), Some(src), Some(dst)) = (
        MyDb::create("kill_my"),
        PgDb::create("kill_ref"),
        PgDb::create("kill_mydst"),
    ) else {
        return;
    };
    my.sql(&format!(
        "CREATE TABLE events (id bigint PRIMARY KEY, v varchar(64) NOT NULL, n decimal(12,2), at datetime(6)); \
         INSERT INTO events SELECT seq, md5(seq), seq / 7.0, '2026-01-01' + INTERVAL seq SECOND FROM seq_1_to_{ROWS}; \
         ANALYZE TABLE events"
    ));
    // The same rows in PostgreSQL, to compare against.
    src.sql(&format!(
        "CREATE TABLE events (id bigint PRIMARY KEY, v varchar(64) NOT NULL, n numeric(12,2), at timestamp); \
         INSERT INTO events SELECT g, md5(g::text), round(g / 7.0, 2), timestamp '2026-01-01' + g * interval '1 second' \
         FROM generate_series(1, {ROWS}) g"
    ));
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &my.url(), &dst.url(), 2000);
    kill_mid_table(dir.path(), &p, || pg_count(&dst, "events"));
    ok(&sluice(dir.path(), &["run", &p]));
    assert_exact(&src, &dst);
}

/// A TCP proxy that can cut every connection through it and slow traffic down.
struct Proxy {
    addr: String,
    /// Connections cut so far.
    cuts: Arc<AtomicUsize>,
}

impl Proxy {
    /// Forwards to `upstream`; after every `cut_every` bytes (both ways), up
    /// to `times` times, shuts every open connection down. Each chunk
    /// forwarded waits `delay` first.
    fn start(upstream: String, cut_every: u64, times: usize, delay: Duration) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let cuts = Arc::new(AtomicUsize::new(0));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let moved = Arc::new(AtomicU64::new(0));
        let next_cut = Arc::new(AtomicU64::new(cut_every));
        let cuts_t = cuts.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                if let Ok(mut o) = open.lock() {
                    o.extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                }
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let (open, moved, next_cut, cuts) = (open.clone(), moved.clone(), next_cut.clone(), cuts_t.clone());
                    std::thread::spawn(move || {
                        let mut buf = vec![0u8; 64 << 10];
                        loop {
                            let n = match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            std::thread::sleep(delay);
                            if to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                            let total = moved.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
                            let due = next_cut.load(Ordering::SeqCst);
                            if cuts.load(Ordering::SeqCst) < times
                                && total >= due
                                && next_cut
                                    .compare_exchange(due, total + cut_every, Ordering::SeqCst, Ordering::SeqCst)
                                    .is_ok()
                            {
                                cuts.fetch_add(1, Ordering::SeqCst);
                                if let Ok(mut o) = open.lock() {
                                    for s in o.drain(..) {
                                        let _ = s.shutdown(Shutdown::Both);
                                    }
                                }
                            }
                        }
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Proxy { addr, cuts }
    }
}

#[test]
fn connections_cut_mid_run_are_retried_and_the_copy_completes_exactly() {
    let (Some(src), Some(dst)) = (PgDb::create("cut_src"), PgDb::create("cut_dst")) else {
        return;
    };
    pg_source(&src);
    // Source and destination both go through the proxy, which cuts every
    // connection (the readers, the snapshot holder, the sink) three times.
    let proxy = Proxy::start(src.addr(), 4 << 20, 3, Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &src.url_via(&proxy.addr), &dst.url_via(&proxy.addr), 5000);
    let err = ok(&sluice(dir.path(), &["run", &p]));
    assert_eq!(proxy.cuts.load(Ordering::SeqCst), 3, "the proxy cut the connections");
    assert!(err.contains("retried"), "the summary reports retries:\n{err}");
    assert_exact(&src, &dst);
}

#[test]
fn status_reports_progress_from_another_process_during_and_after_a_run() {
    let (Some(src), Some(dst)) = (PgDb::create("stat_src"), PgDb::create("stat_dst")) else {
        return;
    };
    pg_source(&src);
    // A slow link keeps the run going while status looks at it.
    let proxy = Proxy::start(dst.addr(), u64::MAX, 0, Duration::from_millis(4));
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &src.url(), &dst.url_via(&proxy.addr), 2000);
    let mut child = spawn(dir.path(), &["run", &p]);
    let row = |out: &str| -> Option<(String, u64)> {
        let line = out.lines().find(|l| l.contains("events"))?;
        let cells: Vec<&str> = line.split('┆').map(str::trim).collect();
        Some((cells[2].to_string(), cells[3].replace(',', "").parse().ok()?))
    };
    let mut seen_running = None;
    wait_for("status to show progress", dir.path(), || {
        let out = String::from_utf8_lossy(&sluice(dir.path(), &["status", &p]).stdout).into_owned();
        match row(&out) {
            Some((state, done)) if state == "running" && done > 0 => {
                seen_running = Some((done, out));
                true
            }
            _ => false,
        }
    });
    let (done, out) = seen_running.unwrap();
    let in_destination = pg_count(&dst, "events");
    assert!(done < ROWS, "status shows a run in progress:\n{out}");
    assert!(
        done <= in_destination,
        "status never counts rows the destination lacks ({done} > {in_destination})"
    );
    assert!(
        out.contains(&format!("~{}", "200,000")),
        "the estimate is shown:\n{out}"
    );
    assert!(child.wait().unwrap().success());
    let out = String::from_utf8_lossy(&sluice(dir.path(), &["status", &p]).stdout).into_owned();
    assert_eq!(row(&out), Some(("completed".into(), ROWS)), "{out}");
    assert_exact(&src, &dst);
}

#[test]
fn sigterm_drains_checkpoints_and_exits_143_then_the_run_resumes() {
    let (Some(src), Some(dst)) = (PgDb::create("term_src"), PgDb::create("term_dst")) else {
        return;
    };
    pg_source(&src);
    let proxy = Proxy::start(dst.addr(), u64::MAX, 0, Duration::from_millis(2));
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &src.url(), &dst.url_via(&proxy.addr), 2000);
    let mut child = spawn(dir.path(), &["run", &p]);
    wait_for("committed batches", dir.path(), || pg_count(&dst, "events") >= 6000);
    let asked = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143), "SIGTERM exits 143");
    assert!(asked.elapsed() < Duration::from_secs(30), "the drain is bounded");
    let at_stop = pg_count(&dst, "events");
    assert!(at_stop < ROWS, "stopped mid-table ({at_stop} rows)");
    let out = String::from_utf8_lossy(&sluice(dir.path(), &["status", &p]).stdout).into_owned();
    assert!(out.contains("interrupted"), "{out}");
    // The final checkpoint covers every row the destination holds.
    let done: u64 = out
        .lines()
        .find(|l| l.contains("events"))
        .and_then(|l| l.split('┆').nth(3))
        .and_then(|c| c.trim().replace(',', "").parse().ok())
        .unwrap();
    assert_eq!(done, at_stop, "rows done after the drain:\n{out}");
    let err = ok(&sluice(dir.path(), &["run", &p]));
    assert!(err.contains(&format!("resumed after {}", thousands(at_stop))), "{err}");
    assert_exact(&src, &dst);
}

#[test]
fn a_second_signal_aborts_at_once_and_the_run_still_resumes_exactly() {
    let (Some(src), Some(dst)) = (PgDb::create("abort_src"), PgDb::create("abort_dst")) else {
        return;
    };
    pg_source(&src);
    // A slow destination, so the drain after the first signal takes a while.
    let proxy = Proxy::start(dst.addr(), u64::MAX, 0, Duration::from_millis(20));
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &src.url(), &dst.url_via(&proxy.addr), 2000);
    let mut child = spawn(dir.path(), &["run", &p]);
    wait_for("committed batches", dir.path(), || pg_count(&dst, "events") >= 4000);
    let signal = || {
        let sent = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    };
    signal();
    std::thread::sleep(Duration::from_millis(100));
    let asked = Instant::now();
    signal();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "aborted on SIGINT exits 130");
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "the second signal does not wait for the drain"
    );
    let log = std::fs::read_to_string(dir.path().join("run.log")).unwrap_or_default();
    assert!(log.contains("second signal"), "{log}");
    let at_abort = pg_count(&dst, "events");
    assert!(at_abort < ROWS, "aborted mid-table ({at_abort} rows)");
    ok(&sluice(dir.path(), &["run", &p]));
    assert_exact(&src, &dst);
}

#[test]
fn a_killed_pg_to_mysql_run_resumes_without_losing_or_repeating_a_row() {
    let (Some(src), Some(my)) = (PgDb::create("kill_pgsrc"), MyDb::create("kill_mysink")) else {
        return;
    };
    pg_source(&src);
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        r#"
[source]
type = "postgres"
url = "{}"
table = "events"
partitions = 4

[[sinks]]
type = "mysql"
url = "{}"

[runtime]
batch_rows = 2000
state_dir = "state"
"#,
        src.url(),
        my.url()
    );
    std::fs::write(dir.path().join("p.toml"), toml).unwrap();
    // 0 until the table exists.
    kill_mid_table(dir.path(), "p.toml", || {
        my.try_sql("SELECT COUNT(*) FROM events")
            .ok()
            .and_then(|c| c.trim().parse().ok())
            .unwrap_or(0)
    });
    ok(&sluice(dir.path(), &["run", "p.toml"]));
    assert_eq!(
        my.sql("SELECT CONCAT(COUNT(*), ',', COUNT(DISTINCT id), ',', SUM(id), ',', SUM(v <> MD5(id))) FROM events"),
        format!("{ROWS},{ROWS},{},0", ROWS * (ROWS + 1) / 2),
        "every row once, with its value"
    );
}

#[test]
fn a_resumed_job_ignores_destination_checkpoints_of_an_earlier_job() {
    let (Some(src), Some(dst)) = (PgDb::create("jobs_src"), PgDb::create("jobs_dst")) else {
        return;
    };
    pg_source(&src);
    src.sql("CREATE TABLE later (id int PRIMARY KEY, v text); INSERT INTO later SELECT g, 'v' || g FROM generate_series(1, 1000) g");
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[source]\ntype = \"postgres\"\nurl = \"{}\"\ntables = [\"events\", \"later\"]\n\n\
         [[sinks]]\ntype = \"postgres\"\nurl = \"{}\"\n\n[runtime]\nbatch_rows = 2000\nstate_dir = \"state\"\n",
        src.url(),
        dst.url()
    );
    std::fs::write(dir.path().join("p.toml"), toml).unwrap();
    // Job 1 completes; its checkpoints stay in the destination.
    ok(&sluice(dir.path(), &["run", "p.toml"]));
    dst.sql("DROP TABLE events, later");
    // Run again, the complete job does nothing.
    let err = ok(&sluice(dir.path(), &["run", "p.toml"]));
    assert!(err.contains("already complete"), "{err}");
    assert_eq!(pg_count(&dst, "events"), 0);
    // Job 2 (--fresh) is killed in `events`, before it reaches `later`, and resumed.
    let mut child = spawn(dir.path(), &["run", "p.toml", "--fresh"]);
    wait_for("committed batches", dir.path(), || pg_count(&dst, "events") >= 6000);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(pg_count(&dst, "later"), 0, "killed before `later`");
    ok(&sluice(dir.path(), &["run", "p.toml"]));
    assert_exact(&src, &dst);
    assert_eq!(
        src.fingerprint("later"),
        dst.fingerprint("later"),
        "`later` is copied whole"
    );
}

/// A pipeline reading `salaries` (a two-column key) in four partitions.
fn two_column_key_pipeline(dir: &Path, kind: &str, src: &str, dst: &str) -> String {
    let toml = format!(
        r#"
[source]
type = "{kind}"
url = "{src}"
table = "salaries"
partitions = 4

[[sinks]]
type = "postgres"
url = "{dst}"

[runtime]
batch_rows = 2000
state_dir = "state"
"#
    );
    std::fs::write(dir.join("k.toml"), toml).unwrap();
    "k.toml".into()
}

#[test]
fn a_killed_run_of_a_two_column_key_table_resumes_exactly_from_postgres_and_mysql() {
    let (Some(my), Some(src), Some(dst), Some(dst2)) = (
        MyDb::create("kill2_my"),
        PgDb::create("kill2_src"),
        PgDb::create("kill2_dst"),
        PgDb::create("kill2_mydst"),
    ) else {
        return;
    };
    // Shaped like employees.salaries: ten rows per employee, so partition
    // boundaries and resume points fall inside one employee's rows.
    let employees = ROWS / 10;
    src.sql(&format!(
        "CREATE TABLE salaries (emp_no int, from_date date, salary int NOT NULL, PRIMARY KEY (emp_no, from_date)); \
         INSERT INTO salaries SELECT e, date '1990-01-01' + y * 365, 40000 + (e * 7 + y) % 9000 \
         FROM generate_series(1, {employees}) e, generate_series(0, 9) y; ANALYZE salaries"
    ));
    my.sql(&format!(
        "CREATE TABLE salaries (emp_no int, from_date date, salary int NOT NULL, PRIMARY KEY (emp_no, from_date)); \
         INSERT INTO salaries SELECT e.seq, '1990-01-01' + INTERVAL y.seq * 365 DAY, 40000 + (e.seq * 7 + y.seq) % 9000 \
         FROM seq_1_to_{employees} e, seq_0_to_9 y; ANALYZE TABLE salaries"
    ));
    for (kind, url, dst) in [("postgres", src.url(), &dst), ("mysql", my.url(), &dst2)] {
        let dir = tempfile::tempdir().unwrap();
        let p = two_column_key_pipeline(dir.path(), kind, &url, &dst.url());
        kill_mid_table(dir.path(), &p, || pg_count(dst, "salaries"));
        let err = ok(&sluice(dir.path(), &["run", &p]));
        assert!(err.contains("resumed after"), "{kind}: {err}");
        assert_eq!(
            dst.sql("SELECT count(*) || ',' || count(DISTINCT (emp_no, from_date)) FROM salaries"),
            format!("{ROWS},{ROWS}"),
            "{kind}: rows, distinct keys"
        );
        assert_eq!(src.fingerprint("salaries"), dst.fingerprint("salaries"), "{kind}");
    }
}
