//! `sluice sync`: a PostgreSQL database copied, then kept in step by its
//! changes, through kills, restarts and stops.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::servers::PgDb;

/// Drops the test's replication slot (before the databases, which a slot
/// would keep from being dropped).
struct Slot {
    admin: String,
    name: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args(["-X", "-q", "-d", &self.admin, "-c"])
            .arg(format!(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '{}'",
                self.name
            ))
            .output();
    }
}

/// A running `sluice sync`, killed if the test ends (or fails) before
/// stopping it, so its slot can be dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether the server can capture changes; says so loudly when not (and
/// fails under CI, which sets `wal_level = logical`).
fn logical(db: &PgDb) -> bool {
    let level = db.sql("SHOW wal_level");
    if level == "logical" {
        return true;
    }
    let why = format!("wal_level is {level}, not logical (ALTER SYSTEM SET wal_level = logical; restart)");
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
    eprintln!("\n*** SKIPPED: {why} ***\n");
    false
}

fn start(dir: &std::path::Path, src: &PgDb, dst: &PgDb, slot: &str, extra: &[&str]) -> Running {
    Running(
        Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["sync", &src.url(), &dst.url(), "--slot", slot, "--state-dir"])
            .arg(dir.join("state"))
            .args(extra)
            .env_remove("SLUICE_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sluice sync"),
    )
}

/// Waits until every table is the same on both sides.
fn converge(src: &PgDb, dst: &PgDb, tables: &[&str], sync: &mut Running) {
    let sync = &mut sync.0;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let same = tables.iter().all(|t| {
            let exists = dst.sql(&format!("SELECT to_regclass('{t}') IS NOT NULL")) == "t";
            exists && src.fingerprint(t) == dst.fingerprint(t)
        });
        if same {
            return;
        }
        if let Ok(Some(status)) = sync.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = sync.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!("sluice sync ended ({status}) before the destination caught up:\n{err}");
        }
        assert!(
            Instant::now() < deadline,
            "the destination did not catch up in 60 s: {}",
            tables
                .iter()
                .map(|t| format!("{t}: {} vs {}", src.fingerprint(t), dst.fingerprint(t)))
                .collect::<Vec<_>>()
                .join("; ")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn stop(mut running: Running) -> (Option<i32>, String) {
    let sync = &mut running.0;
    let _ = Command::new("kill").args(["-INT", &sync.id().to_string()]).status();
    let status = sync.wait().expect("wait for sluice sync");
    let mut err = String::new();
    if let Some(mut e) = sync.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    (status.code(), err)
}

#[test]
fn changes_reach_the_destination_once_through_kills_and_restarts() {
    let (Some(src), Some(dst)) = (PgDb::create("sync_src"), PgDb::create("sync_dst")) else {
        return;
    };
    if !logical(&src) {
        return;
    }
    let slot = Slot {
        admin: src.url(),
        name: format!("sluice_test_sync_{}", std::process::id()),
    };
    let dir = tempfile::tempdir().unwrap();
    // A 1 MiB value stored out of line and uncompressed: updates that leave
    // it alone do not send it.
    src.sql(
        "CREATE TABLE items (id bigint PRIMARY KEY, name text, qty int, price numeric(12,2), big text, \
           seen timestamptz DEFAULT '2026-01-01');
         ALTER TABLE items ALTER COLUMN big SET STORAGE EXTERNAL;
         INSERT INTO items SELECT g, 'item ' || g, g % 7, g * 1.25, NULL FROM generate_series(1, 5000) g;
         UPDATE items SET big = (SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 32768)) \
           WHERE id IN (1, 2);
         CREATE TABLE tags (item bigint, tag text, PRIMARY KEY (item, tag));
         INSERT INTO tags SELECT g, 't' || (g % 5) FROM generate_series(1, 1000) g;
         CREATE TABLE notes (id bigint PRIMARY KEY, item bigint NOT NULL REFERENCES items (id), body text);
         INSERT INTO notes SELECT g, g, 'note' FROM generate_series(1, 100) g;",
    );
    let tables = ["items", "tags", "notes"];
    let mut sync = start(dir.path(), &src, &dst, &slot.name, &[]);
    converge(&src, &dst, &tables, &mut sync);

    // Inserts, updates (one leaving the large value alone, one moving a
    // key), deletes, and a transaction over both tables.
    src.sql(
        "INSERT INTO items VALUES (9001, 'new', 1, 2.50, NULL);
         UPDATE items SET qty = 99 WHERE id = 1;
         UPDATE items SET qty = qty + 1, name = 'renamed' WHERE id BETWEEN 100 AND 300;
         DELETE FROM items WHERE id BETWEEN 400 AND 450;
         UPDATE items SET id = 20000 WHERE id = 4000;
         BEGIN; INSERT INTO tags VALUES (1, 'x'); DELETE FROM tags WHERE item = 2; UPDATE items SET name = 'in tx' WHERE id = 3; COMMIT;
         BEGIN; INSERT INTO items VALUES (9100, 'parent', 1, 1, NULL); INSERT INTO notes VALUES (9100, 9100, 'child'); COMMIT;
         BEGIN; DELETE FROM notes WHERE id = 50; DELETE FROM items WHERE id = 50; COMMIT;
         BEGIN; INSERT INTO items VALUES (9002, 'twice', 1, 1, NULL); UPDATE items SET qty = 5 WHERE id = 9002; \
           DELETE FROM items WHERE id = 9002; INSERT INTO items VALUES (9002, 'again', 2, 2, NULL); COMMIT;",
    );
    converge(&src, &dst, &tables, &mut sync);
    assert_eq!(
        dst.sql("SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND conrelid = 'notes'::regclass"),
        "1",
        "the copy created the foreign key the changes then had to respect"
    );
    assert_eq!(
        dst.sql("SELECT qty, length(big) FROM items WHERE id = 1"),
        "99|1048576",
        "an update that left the large value alone kept it"
    );

    // Killed outright: what it had applied is committed with its
    // positions; the changes made while it is down arrive once.
    drop(sync);
    src.sql(
        "UPDATE items SET price = price * 2 WHERE id % 10 = 0;
         UPDATE items SET name = 'while down' WHERE id = 2;
         DELETE FROM tags WHERE item > 900;
         INSERT INTO tags SELECT g, 'late' FROM generate_series(1, 50) g;",
    );
    let mut sync = start(dir.path(), &src, &dst, &slot.name, &[]);
    converge(&src, &dst, &tables, &mut sync);
    assert_eq!(dst.sql("SELECT length(big) FROM items WHERE id = 2"), "1048576");

    // Ctrl-C drains and confirms: the slot keeps nothing already applied.
    let (code, err) = stop(sync);
    assert_eq!(code, Some(130), "{err}");
    let left = src.sql(&format!(
        "SELECT count(*) FROM pg_logical_slot_peek_binary_changes('{0}', NULL, NULL, \
         'proto_version', '1', 'publication_names', '{0}')",
        slot.name
    ));
    assert_eq!(left, "0", "the slot was confirmed up to what was applied\n{err}");

    // Running it again copies nothing and applies only what is new.
    src.sql("UPDATE items SET qty = -1 WHERE id = 4");
    let mut sync = start(dir.path(), &src, &dst, &slot.name, &[]);
    converge(&src, &dst, &tables, &mut sync);
    let (code, err) = stop(sync);
    assert_eq!(code, Some(130), "{err}");
    assert!(
        err.contains("already complete"),
        "the tables were not copied again:\n{err}"
    );

    // A slot dropped by hand means changes nothing captured: the command
    // stops (exit 3) and says how to start over; --resnapshot does.
    src.sql(&format!("SELECT pg_drop_replication_slot('{}')", slot.name));
    src.sql("UPDATE items SET qty = -2 WHERE id = 5");
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["sync", &src.url(), &dst.url(), "--slot", &slot.name, "--state-dir"])
        .arg(dir.path().join("state"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{said}");
    assert!(said.contains("--resnapshot"), "{said}");
    let mut sync = start(dir.path(), &src, &dst, &slot.name, &["--resnapshot"]);
    converge(&src, &dst, &tables, &mut sync);
    let (code, err) = stop(sync);
    assert_eq!(code, Some(130), "{err}");
    drop(slot);
}

#[test]
fn a_pipeline_with_mode_cdc_copies_streams_and_shows_its_changes_in_status() {
    let (Some(src), Some(dst)) = (PgDb::create("cdcpipe_src"), PgDb::create("cdcpipe_dst")) else {
        return;
    };
    if !logical(&src) {
        return;
    }
    let slot = Slot {
        admin: src.url(),
        name: format!("sluice_test_cdcpipe_{}", std::process::id()),
    };
    let dir = tempfile::tempdir().unwrap();
    src.sql(
        "CREATE TABLE films (id int PRIMARY KEY, title text NOT NULL, rating numeric(3,1));
         INSERT INTO films SELECT g, 'film ' || g, g % 10 FROM generate_series(1, 300) g;",
    );
    let file = dir.path().join("films.toml");
    std::fs::write(
        &file,
        format!(
            "[source]\ntype = \"postgres\"\nurl = \"{}\"\ntables = [\"films\"]\nmode = \"cdc\"\nslot = \"{}\"\n\n\
             [[sinks]]\ntype = \"postgres\"\nurl = \"{}\"\n\n[runtime]\nstate_dir = \"{}\"\n",
            src.url(),
            slot.name,
            dst.url(),
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    let run = |extra: &[&str]| {
        Running(
            Command::new(env!("CARGO_BIN_EXE_sluice"))
                .arg("run")
                .arg(&file)
                .args(extra)
                .env_remove("SLUICE_LOG")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start sluice run"),
        )
    };
    let checked = crate::sluice(dir.path(), &["check", file.to_str().unwrap()]);
    let said = crate::ok(&checked) + &String::from_utf8_lossy(&checked.stdout);
    assert!(said.contains("changes: wal_level = logical"), "{said}");
    assert!(said.contains(&format!("slot {} will be created", slot.name)), "{said}");

    let mut sync = run(&[]);
    converge(&src, &dst, &["films"], &mut sync);
    src.sql("UPDATE films SET rating = 9.5 WHERE id < 11; DELETE FROM films WHERE id > 290");
    converge(&src, &dst, &["films"], &mut sync);
    let (code, err) = stop(sync);
    assert_eq!(code, Some(130), "{err}");

    let status = crate::sluice(dir.path(), &["status", file.to_str().unwrap()]);
    let shown = String::from_utf8_lossy(&status.stdout);
    assert!(shown.contains("changes applied"), "{shown}");
    let films: Vec<&str> = shown
        .lines()
        .find(|l| l.contains("films") && l.contains("streaming"))
        .unwrap_or_default()
        .split(['│', '┆', '|'])
        .map(str::trim)
        .collect();
    assert!(films.contains(&"20"), "10 updates and 10 deletes applied: {shown}");

    // --fresh would copy over a slot that goes on: refused, naming the way.
    let out = crate::sluice(dir.path(), &["run", file.to_str().unwrap(), "--fresh"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--resnapshot"));
    drop(slot);
}
