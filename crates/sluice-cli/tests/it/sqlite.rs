//! SQLite databases moved to PostgreSQL and MySQL/MariaDB with their schema:
//! dates, exact decimals and booleans by declared type, primary keys
//! (composite too), foreign keys, unique and plain indexes, NOT NULL and
//! AUTOINCREMENT; values SQLite stored against their declared type are
//! refused with their row into the dead-letter file, never loaded as text.

use std::path::Path;

use crate::servers::{MyDb, PgDb};
use crate::{ndjson, ok, sluice};

/// A small shop: AUTOINCREMENT keys, a composite key, foreign keys, a
/// UNIQUE constraint, an index, and two rows whose values do not fit.
const SHOP: &str = r#"
CREATE TABLE customer (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email TEXT NOT NULL UNIQUE,
    name NVARCHAR(40) NOT NULL,
    active BOOLEAN,
    joined DATETIME
);
CREATE TABLE invoice (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id INTEGER NOT NULL REFERENCES customer (id),
    issued DATETIME NOT NULL,
    due DATE,
    total NUMERIC(10,2) NOT NULL
);
CREATE INDEX invoice_customer ON invoice (customer_id);
CREATE TABLE invoice_line (
    invoice_id INTEGER NOT NULL,
    line INTEGER NOT NULL,
    price NUMERIC(10,2) NOT NULL,
    PRIMARY KEY (invoice_id, line),
    FOREIGN KEY (invoice_id) REFERENCES invoice (id)
);
INSERT INTO customer (email, name, active, joined) VALUES
    ('ada@example.com', 'Ada', 1, '2021-03-04 05:06:07.25'),
    ('bob@example.com', 'Bob', 'false', NULL);
INSERT INTO invoice (customer_id, issued, due, total) VALUES
    (1, '2021-01-02 03:04:05', '2021-02-01', 12.5),
    (2, '2021-13-45', NULL, 3),
    (1, '2021-06-01 00:00:00', NULL, 'abc'),
    (2, '2021-06-02T10:00:00+02:00', '2021-07-01', 19.99);
INSERT INTO invoice_line VALUES (1, 1, 12.5), (4, 1, 9.99), (4, 2, '10.00');
"#;

/// Writes `shop.db` into `dir`.
fn shop(dir: &Path) {
    let db = rusqlite::Connection::open(dir.join("shop.db")).unwrap();
    db.execute_batch(SHOP).unwrap();
}

/// Copies `shop.db` to `dst` with a dead-letter file; checks the two refused
/// rows are there, named by table, rowid, column and value, with the row.
fn copy_shop(dir: &Path, dst: &str) {
    ok(&sluice(
        dir,
        &[
            "copy",
            "shop.db",
            dst,
            "--on-error",
            "dlq",
            "--dlq",
            "rejects.ndjson",
            "--no-progress",
        ],
    ));
    let rejects = ndjson(&dir.join("rejects.ndjson"));
    assert_eq!(rejects.len(), 2, "{rejects:?}");
    let reasons: Vec<&str> = rejects.iter().map(|r| r["reason"].as_str().unwrap()).collect();
    assert!(
        reasons.iter().any(
            |r| r.starts_with("`invoice` rowid 2, column `issued` DATETIME: text '2021-13-45' is not a valid date")
        ),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("`invoice` rowid 3, column `total` NUMERIC(10,2): text 'abc' is not a number")),
        "{reasons:?}"
    );
    let bad_total = rejects
        .iter()
        .find(|r| r["record"]["id"] == 3)
        .expect("row 3 in the dead letters");
    assert_eq!(bad_total["record"]["total"], "abc");
    assert_eq!(bad_total["record"]["issued"], "2021-06-01 00:00:00");
    assert_eq!(bad_total["stream"], "invoice");
}

fn verify_matches(dir: &Path, sink: &str, url: &str) {
    std::fs::write(
        dir.join("verify.toml"),
        format!("[source]\ntype = \"sqlite\"\npath = \"shop.db\"\n\n[[sinks]]\ntype = \"{sink}\"\nurl = \"{url}\"\n"),
    )
    .unwrap();
    let out = sluice(dir, &["verify", "verify.toml"]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "verify: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.matches("match").count(), 3, "{stdout}");
}

#[test]
fn sqlite_schema_and_values_arrive_in_postgres() {
    let Some(pg) = PgDb::create("lite_pg") else { return };
    let dir = tempfile::tempdir().unwrap();
    shop(dir.path());
    copy_shop(dir.path(), &pg.url());

    let columns = |table: &str| {
        pg.sql(&format!(
            "SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod) \
             || CASE WHEN attnotnull THEN ' not null' ELSE '' END \
             || CASE attidentity WHEN 'd' THEN ' identity' ELSE '' END, ', ' ORDER BY attnum) \
             FROM pg_attribute WHERE attrelid = '{table}'::regclass AND attnum > 0 AND NOT attisdropped"
        ))
    };
    assert_eq!(
        columns("customer"),
        "id bigint not null identity, email text not null, name text not null, active boolean, \
         joined timestamp with time zone"
    );
    assert_eq!(
        columns("invoice"),
        "id bigint not null identity, customer_id bigint not null, issued timestamp with time zone not null, \
         due date, total numeric(10,2) not null"
    );
    assert_eq!(
        columns("invoice_line"),
        "invoice_id bigint not null, line bigint not null, price numeric(10,2) not null"
    );
    let constraints = pg.sql(
        "SELECT string_agg(conrelid::regclass || ' ' || pg_get_constraintdef(oid), '; ' ORDER BY 1) \
         FROM pg_constraint WHERE connamespace = 'public'::regnamespace",
    );
    for c in [
        "customer PRIMARY KEY (id)",
        "invoice PRIMARY KEY (id)",
        "invoice_line PRIMARY KEY (invoice_id, line)",
        "invoice FOREIGN KEY (customer_id) REFERENCES customer(id)",
        "invoice_line FOREIGN KEY (invoice_id) REFERENCES invoice(id)",
    ] {
        assert!(constraints.contains(c), "no `{c}` in {constraints}");
    }
    let indexes = pg.sql(
        "SELECT string_agg(indexdef, '; ' ORDER BY indexdef) FROM pg_indexes \
         WHERE schemaname = 'public' AND indexname NOT LIKE '%pkey'",
    );
    for ix in [
        "CREATE UNIQUE INDEX customer_email_key ON public.customer USING btree (email)",
        "CREATE INDEX invoice_customer_id_idx ON public.invoice USING btree (customer_id)",
    ] {
        assert!(indexes.contains(ix), "no `{ix}` in {indexes}");
    }

    // The good rows, with exact decimals and dates; an offset became UTC.
    assert_eq!(
        pg.sql("SELECT string_agg(id || ' ' || issued || ' ' || coalesce(due::text, '-') || ' ' || total, '; ' ORDER BY id) FROM invoice"),
        "1 2021-01-02 03:04:05+00 2021-02-01 12.50; 4 2021-06-02 08:00:00+00 2021-07-01 19.99"
    );
    assert_eq!(
        pg.sql("SELECT string_agg(name || ' ' || active || ' ' || coalesce(joined::text, '-'), '; ' ORDER BY id) FROM customer"),
        "Ada true 2021-03-04 05:06:07.25+00; Bob false -"
    );
    assert_eq!(pg.sql("SELECT sum(price) FROM invoice_line"), "32.49");
    // The identity goes on after the rows SQLite numbered.
    assert_eq!(
        pg.sql("INSERT INTO invoice (customer_id, issued, total) VALUES (1, now(), 1) RETURNING id"),
        "5"
    );
    pg.sql("DELETE FROM invoice WHERE id = 5");
    verify_matches(dir.path(), "postgres", &pg.url());
}

#[test]
fn sqlite_keys_and_autoincrement_arrive_in_mysql() {
    let Some(my) = MyDb::create("lite_my") else { return };
    let dir = tempfile::tempdir().unwrap();
    shop(dir.path());
    copy_shop(dir.path(), &my.url());

    let columns = |table: &str| {
        my.sql(&format!(
            "SELECT GROUP_CONCAT(CONCAT_WS(' ', COLUMN_NAME, COLUMN_TYPE, IF(IS_NULLABLE = 'NO', 'not null', NULL), \
             NULLIF(EXTRA, '')) ORDER BY ORDINAL_POSITION SEPARATOR ', ') FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '{table}'"
        ))
    };
    assert_eq!(
        columns("invoice"),
        "id bigint(20) not null auto_increment, customer_id bigint(20) not null, issued datetime(6) not null, \
         due date, total decimal(10,2) not null"
    );
    assert_eq!(
        columns("customer"),
        // Text is unbounded in SQLite; MySQL indexes it by a prefix.
        "id bigint(20) not null auto_increment, email longtext not null, name longtext not null, \
         active tinyint(1), joined datetime(6)"
    );
    let keys = my.sql(
        "SELECT GROUP_CONCAT(CONCAT(TABLE_NAME, ' ', INDEX_NAME, ' ', NON_UNIQUE, ' ', COLUMN_NAME) \
         ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX SEPARATOR '; ') FROM information_schema.STATISTICS \
         WHERE TABLE_SCHEMA = DATABASE()",
    );
    for k in [
        "customer PRIMARY 0 id",
        "customer customer_email_key 0 email",
        "invoice PRIMARY 0 id",
        "invoice invoice_customer 1 customer_id",
        "invoice_line PRIMARY 0 invoice_id; invoice_line PRIMARY 0 line",
    ] {
        assert!(keys.contains(k), "no `{k}` in {keys}");
    }
    assert_eq!(
        my.sql("SELECT GROUP_CONCAT(CONCAT(id, ' ', issued, ' ', total) ORDER BY id SEPARATOR '; ') FROM invoice"),
        "1 2021-01-02 03:04:05.000000 12.50; 4 2021-06-02 08:00:00.000000 19.99"
    );
    my.sql("INSERT INTO invoice (customer_id, issued, total) VALUES (1, NOW(), 1)");
    assert_eq!(my.sql("SELECT MAX(id) FROM invoice"), "5");
    my.sql("DELETE FROM invoice WHERE id = 5");
    verify_matches(dir.path(), "mysql", &my.url());
}
