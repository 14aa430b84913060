//! Rows the destination refuses, at volume: half or all of a file breaks a
//! CHECK constraint, and `--on-error dlq` loads the rest and writes every
//! refused row, with its line and the server's reason, to the dead-letter
//! file. The same in PostgreSQL, MySQL/MariaDB and SQLite.

use std::collections::BTreeSet;
use std::path::Path;

use crate::servers::{MyDb, PgDb};
use crate::{ndjson, ok, sluice};

/// Rows per file: several batches of 32,768 would make the suite slow; one
/// and a half batch still crosses a batch boundary.
const ROWS: u64 = 20_000;

/// The id of the row the table holds before the copy.
const EXISTING: u64 = 13;

/// How a file breaks the table's rules.
#[derive(Clone, Copy)]
enum Refused {
    /// Every other row breaks the CHECK; of the others, one has a name too
    /// long for the column, one repeats an earlier row's id and one an id
    /// the table already holds (what the CHECK cannot tell, the server must).
    Half,
    /// Every row breaks the CHECK.
    All,
}

/// What the table must refuse and keep of `items.csv`.
struct Expected {
    /// Lines of the refused rows.
    lines: BTreeSet<u64>,
    /// Sum of the ids loaded.
    id_sum: u64,
}

/// Writes `items.csv` (id, name, qty) and says which lines the table refuses.
fn items_csv(dir: &Path, refused: Refused) -> Expected {
    let mut csv = String::from("id,name,qty\n");
    let mut lines = BTreeSet::new();
    let mut ids = BTreeSet::new();
    for i in 1..=ROWS {
        let line = i + 1;
        let (id, name, qty) = match refused {
            Refused::All => (i, format!("n{i}"), -(i as i64)),
            Refused::Half if i % 2 == 0 => (i, format!("n{i}"), -1),
            Refused::Half if i == 7 => (i, "a name far too long".to_string(), 7),
            Refused::Half if i == 11 => (3, format!("n{i}"), 11),
            Refused::Half => (i, format!("n{i}"), i as i64),
        };
        let bad = qty < 0 || name.len() > 12 || (matches!(refused, Refused::Half) && (i == 11 || i == EXISTING));
        if bad {
            lines.insert(line);
        } else {
            ids.insert(id);
        }
        csv.push_str(&format!("{id},{name},{qty}\n"));
    }
    std::fs::write(dir.join("items.csv"), csv).unwrap();
    Expected {
        lines,
        // The row that was there stays.
        id_sum: ids.iter().sum::<u64>() + EXISTING,
    }
}

/// Copies `items.csv` into `dst` with a dead-letter file, checks every
/// refused row is in it with its line and a reason naming what refused it,
/// and returns the reasons.
fn copy_refusing(dir: &Path, dst: &str, expected: &Expected) -> Vec<String> {
    let out = sluice(
        dir,
        &[
            "copy",
            "items.csv",
            dst,
            "--on-error",
            "dlq",
            "--dlq",
            "rejects.ndjson",
            "--no-progress",
        ],
    );
    ok(&out);
    let rejects = ndjson(&dir.join("rejects.ndjson"));
    let lines: BTreeSet<u64> = rejects.iter().filter_map(|r| r["line"].as_u64()).collect();
    assert_eq!(rejects.len(), expected.lines.len(), "one dead letter per refused row");
    assert_eq!(lines, expected.lines, "the refused rows' lines");
    rejects
        .iter()
        .map(|r| r["reason"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Checks the reasons: the CHECK constraint by name for most, and for
/// `Half` the two rows only the server could judge.
fn assert_reasons(reasons: &[String], refused: Refused, too_long: &str, duplicate: &str) {
    let check = reasons.iter().filter(|r| r.contains("qty_nonneg")).count();
    match refused {
        Refused::All => assert_eq!(check as u64, ROWS, "{:?}", &reasons[..3]),
        Refused::Half => {
            assert_eq!(check as u64, ROWS / 2, "{:?}", &reasons[..3]);
            assert!(
                reasons.iter().any(|r| r.contains(too_long)),
                "no `{too_long}` in {reasons:?}"
            );
            assert!(
                reasons.iter().any(|r| r.contains(duplicate)),
                "no `{duplicate}` in {reasons:?}"
            );
        }
    }
}

fn postgres(refused: Refused, tag: &str) {
    let Some(db) = PgDb::create(tag) else { return };
    db.sql(
        "CREATE TABLE items (id integer PRIMARY KEY, name varchar(12) NOT NULL, \
         qty integer CONSTRAINT qty_nonneg CHECK (qty >= 0)); \
         INSERT INTO items VALUES (13, 'there before', 0)",
    );
    let dir = tempfile::tempdir().unwrap();
    let expected = items_csv(dir.path(), refused);
    let reasons = copy_refusing(dir.path(), &format!("{}?table=items&mode=append", db.url()), &expected);
    assert_reasons(&reasons, refused, "too long", "duplicate key");
    let loaded = (ROWS - expected.lines.len() as u64 + 1).to_string();
    assert_eq!(db.sql("SELECT count(*) FROM items"), loaded);
    assert_eq!(
        db.sql("SELECT coalesce(sum(id), 0) FROM items"),
        expected.id_sum.to_string()
    );
    assert_eq!(db.sql("SELECT count(*) FROM items WHERE qty < 0"), "0");
    assert_eq!(db.sql("SELECT name FROM items WHERE id = 13"), "there before");
}

#[test]
fn postgres_loads_the_good_half_and_dead_letters_the_refused_half() {
    postgres(Refused::Half, "refused_pg_half");
}

#[test]
fn postgres_dead_letters_every_row_when_every_row_is_refused() {
    postgres(Refused::All, "refused_pg_all");
}

fn mysql(refused: Refused, tag: &str) {
    let Some(db) = MyDb::create(tag) else { return };
    db.sql(
        "CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(12) NOT NULL, qty INT, \
         CONSTRAINT qty_nonneg CHECK (qty >= 0)); \
         INSERT INTO items VALUES (13, 'there before', 0)",
    );
    let dir = tempfile::tempdir().unwrap();
    let expected = items_csv(dir.path(), refused);
    let reasons = copy_refusing(dir.path(), &format!("{}?table=items&mode=append", db.url()), &expected);
    assert_reasons(&reasons, refused, "too long", "Duplicate entry");
    let loaded = (ROWS - expected.lines.len() as u64 + 1).to_string();
    assert_eq!(db.sql("SELECT count(*) FROM items"), loaded);
    assert_eq!(
        db.sql("SELECT coalesce(sum(id), 0) FROM items"),
        expected.id_sum.to_string()
    );
}

#[test]
fn mysql_loads_the_good_half_and_dead_letters_the_refused_half() {
    mysql(Refused::Half, "refused_my_half");
}

#[test]
fn mysql_dead_letters_every_row_when_every_row_is_refused() {
    mysql(Refused::All, "refused_my_all");
}

fn sqlite(refused: Refused) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("items.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL CHECK (length(name) <= 12), \
         qty INTEGER CONSTRAINT qty_nonneg CHECK (qty >= 0)); \
         INSERT INTO items VALUES (13, 'there before', 0)",
    )
    .unwrap();
    let expected = items_csv(dir.path(), refused);
    let reasons = copy_refusing(dir.path(), "sqlite://items.db?table=items&mode=append", &expected);
    assert_reasons(&reasons, refused, "length(name)", "UNIQUE constraint failed");
    let (count, sum): (i64, i64) = conn
        .query_row("SELECT count(*), coalesce(sum(id), 0) FROM items", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(
        (count as u64, sum as u64),
        (ROWS - expected.lines.len() as u64 + 1, expected.id_sum)
    );
}

#[test]
fn sqlite_loads_the_good_half_and_dead_letters_the_refused_half() {
    sqlite(Refused::Half);
}

#[test]
fn sqlite_dead_letters_every_row_when_every_row_is_refused() {
    sqlite(Refused::All);
}
