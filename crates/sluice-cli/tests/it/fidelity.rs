//! Whole-database migrations keep the schema, not only the rows: the
//! Pagila sample database (enums, domains, arrays, `tsvector`, a table
//! partitioned by month, foreign keys declared on the partitions, serial
//! columns, `DEFAULT now()`) PostgreSQL → MySQL and back to a new
//! PostgreSQL database, compared by `sluice verify` and in the catalogs.

use std::path::Path;
use std::process::Command;

use crate::servers::{MyDb, PgDb};
use crate::{ok, repo, sluice};

/// Loads Pagila (about 2 s) into `pg`.
fn load_pagila(pg: &PgDb) {
    let dir = repo().join("../shared/data/pagila");
    let dir = if dir.exists() {
        dir
    } else {
        Path::new("/work/shared/data/pagila").to_path_buf()
    };
    for file in ["pagila-schema.sql", "pagila-data.sql"] {
        let out = Command::new("psql")
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &pg.url(), "-f"])
            .arg(dir.join(file))
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "loading {file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A table with what Pagila lacks: lengths, a byte-wise collation, a row
/// too wide for MySQL with every `varchar` kept, an identity column, a
/// quoted default and one no other database can evaluate.
const EXTRA: &str = "CREATE TABLE notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
    code varchar(12) NOT NULL DEFAULT 'it''s', tag char(3), body varchar(200) COLLATE \"C\", \
    wide1 varchar(10000), wide2 varchar(9000), created timestamp NOT NULL DEFAULT now(), \
    odd text DEFAULT lower('X')); \
    INSERT INTO notes (code, tag, body, wide1, wide2) VALUES ('a', 'x', 'Zeta', repeat('w', 10000), 'v'), \
    ('b', NULL, 'alpha', NULL, NULL)";

fn pipeline(dir: &Path, name: &str, src: (&str, &str), dst: (&str, &str)) {
    let toml = format!(
        "[source]\ntype = \"{}\"\nurl = \"{}\"\n\n[[sinks]]\ntype = \"{}\"\nurl = \"{}\"\n",
        src.0, src.1, dst.0, dst.1
    );
    std::fs::write(dir.join(name), toml).unwrap();
}

fn verify_matches(dir: &Path, file: &str) {
    let out = sluice(dir, &["verify", file]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && !stdout.contains("DIFFERENT"),
        "verify {file} found a difference:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Lines of query output, sorted (the two servers sort text differently).
fn sorted(text: String) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(|l| l.replace(['\t', '|'], " ")).collect();
    lines.sort();
    lines.dedup();
    lines
}

/// `table.column>referenced table` of every foreign key, partitions named by their table.
fn pg_foreign_keys(pg: &PgDb) -> Vec<String> {
    sorted(pg.sql(
        "SELECT coalesce(p.relname, c.relname) || '.' || a.attname || '>' || r.relname \
         FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid \
         LEFT JOIN pg_inherits i ON i.inhrelid = c.oid LEFT JOIN pg_class p ON p.oid = i.inhparent \
         JOIN pg_class r ON r.oid = k.confrelid \
         JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1] \
         WHERE k.contype = 'f' AND k.conparentid = 0",
    ))
}

#[test]
fn pagila_keeps_its_schema_postgres_to_mysql_and_back() {
    let Some(pg) = PgDb::create("pagila_src") else { return };
    let Some(my) = MyDb::create("pagila_my") else { return };
    let Some(back) = PgDb::create("pagila_back") else {
        return;
    };
    load_pagila(&pg);
    pg.sql(EXTRA);
    let dir = tempfile::tempdir().unwrap();
    pipeline(dir.path(), "pm.toml", ("postgres", &pg.url()), ("mysql", &my.url()));

    // The plan names what stays behind.
    let plan = sluice(dir.path(), &["plan", "pm.toml"]);
    ok(&plan);
    let text = String::from_utf8_lossy(&plan.stdout).to_string();
    for expected in [
        "not copied from the source",
        "7 views (actor_info",
        "15 triggers",
        "1 materialized views",
    ] {
        assert!(text.contains(expected), "`{expected}` missing from the plan:\n{text}");
    }
    assert!(
        !text.contains("sequences"),
        "sequences used by columns are carried:\n{text}"
    );
    let err = ok(&sluice(dir.path(), &["run", "pm.toml", "--no-progress"]));
    assert!(
        err.contains("not copied from the source") && err.contains("functions"),
        "{err}"
    );
    assert!(
        err.contains("column `odd`: default lower('X'::text) dropped"),
        "the dropped default is named:\n{err}"
    );
    assert!(err.contains("`wide1` varchar(10000) stored as text"), "{err}");
    verify_matches(dir.path(), "pm.toml");

    // Every varchar(n)/char(n) keeps n (but the one the row size forbids).
    let pg_lengths = sorted(pg.sql(
        "SELECT table_name, column_name, character_maximum_length FROM information_schema.columns \
         WHERE table_schema = 'public' AND data_type IN ('character varying', 'character') \
         AND column_name <> 'wide1' AND table_name IN (SELECT relname FROM pg_class WHERE relkind = 'r' \
         AND NOT relispartition)",
    ));
    let my_lengths = sorted(my.sql(
        "SELECT TABLE_NAME, COLUMN_NAME, CHARACTER_MAXIMUM_LENGTH FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA = DATABASE() AND DATA_TYPE IN ('varchar', 'char') AND TABLE_NAME NOT LIKE '\\_sluice%'",
    ));
    assert!(pg_lengths.contains(&"language name 20".to_string()), "{pg_lengths:?}");
    assert_eq!(pg_lengths.len(), 5, "{pg_lengths:?}");
    assert_eq!(my_lengths, pg_lengths);
    assert_eq!(
        my.sql(
            "SELECT DATA_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND COLUMN_NAME = 'wide1'"
        ),
        "text"
    );

    // Serial and identity columns are AUTO_INCREMENT, past the rows loaded.
    let serial = pg.sql(
        "SELECT count(*) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
         LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
         WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') AND NOT c.relispartition \
         AND (pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%' OR a.attidentity <> '')",
    );
    assert_eq!(
        my.sql("SELECT count(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND EXTRA LIKE '%auto_increment%'"),
        serial
    );
    assert_eq!(serial, "14");
    for (table, column) in [("actor", "actor_id"), ("payment", "payment_id"), ("notes", "id")] {
        assert_eq!(
            my.sql(&format!(
                "SELECT AUTO_INCREMENT = (SELECT MAX({column}) + 1 FROM {table}) FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '{table}'"
            )),
            "1",
            "{table}.{column}"
        );
    }
    // Every foreign key, those of the partitions on the partitioned table.
    assert_eq!(
        sorted(my.sql(
            "SELECT CONCAT(k.TABLE_NAME, '.', k.COLUMN_NAME, '>', k.REFERENCED_TABLE_NAME) \
             FROM information_schema.KEY_COLUMN_USAGE k \
             WHERE k.TABLE_SCHEMA = DATABASE() AND k.REFERENCED_TABLE_NAME IS NOT NULL"
        )),
        pg_foreign_keys(&pg)
    );
    assert_eq!(
        my.sql("SELECT count(*) FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = DATABASE()"),
        "21"
    );
    // Their actions: Pagila's 17 `ON UPDATE CASCADE ON DELETE RESTRICT`.
    assert_eq!(
        my.sql(
            "SELECT count(*) FROM information_schema.REFERENTIAL_CONSTRAINTS \
             WHERE CONSTRAINT_SCHEMA = DATABASE() AND UPDATE_RULE = 'CASCADE' AND DELETE_RULE = 'RESTRICT'"
        ),
        "17"
    );
    // Defaults and NOT NULL, and what a new row gets from them.
    assert_eq!(
        my.sql(
            "SELECT CONCAT_WS(' ', IS_NULLABLE, COLUMN_DEFAULT) FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'actor' AND COLUMN_NAME = 'last_update'"
        )
        .to_lowercase(),
        "no current_timestamp(6)"
    );
    my.sql("INSERT INTO actor (first_name, last_name) VALUES ('NEW', 'ACTOR')");
    assert_eq!(
        my.sql("SELECT actor_id, last_update > NOW() - INTERVAL 1 HOUR FROM actor WHERE first_name = 'NEW'"),
        "201\t1"
    );
    my.sql("INSERT INTO film (title, language_id, `fulltext`) VALUES ('T', 1, '')");
    assert_eq!(
        my.sql("SELECT rating, rental_rate, rental_duration FROM film WHERE title = 'T'"),
        "G\t4.99\t3"
    );
    my.sql("INSERT INTO notes (body) VALUES ('x')");
    assert_eq!(
        my.sql("SELECT code, odd IS NULL FROM notes WHERE body = 'x'"),
        "it's\t1"
    );
    // The database's collation (case-insensitive here), but byte order where the source said "C".
    assert_eq!(
        my.sql("SELECT count(*) > 0 FROM actor WHERE first_name = 'penelope'"),
        "1"
    );
    assert_eq!(
        my.sql("SELECT COLLATION_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND COLUMN_NAME = 'body'"),
        "utf8mb4_bin"
    );
    my.sql("DELETE FROM film WHERE title = 'T'; DELETE FROM actor WHERE first_name = 'NEW'; DELETE FROM notes WHERE body = 'x'");

    // And back into a new PostgreSQL database: the same rows as the original.
    pipeline(dir.path(), "mp.toml", ("mysql", &my.url()), ("postgres", &back.url()));
    ok(&sluice(dir.path(), &["run", "mp.toml", "--no-progress"]));
    verify_matches(dir.path(), "mp.toml");
    // ON UPDATE CASCADE made the round trip (MySQL's RESTRICT is
    // PostgreSQL's default, NO ACTION).
    assert_eq!(
        back.sql("SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND confupdtype = 'c' AND confdeltype = 'a'"),
        "17"
    );
    pipeline(
        dir.path(),
        "pp.toml",
        ("postgres", &pg.url()),
        ("postgres", &back.url()),
    );
    verify_matches(dir.path(), "pp.toml");
    assert_eq!(pg_foreign_keys(&back), pg_foreign_keys(&pg));
    assert_eq!(
        back.sql(
            "SELECT is_nullable || ' ' || column_default FROM information_schema.columns \
             WHERE table_name = 'actor' AND column_name = 'last_update'"
        ),
        "NO CURRENT_TIMESTAMP"
    );
    assert_eq!(
        back.sql("SELECT character_maximum_length FROM information_schema.columns WHERE table_name = 'notes' AND column_name = 'code'"),
        "12"
    );
    back.sql("INSERT INTO actor (first_name, last_name) VALUES ('NEW', 'ACTOR')");
    assert_eq!(back.sql("SELECT actor_id FROM actor WHERE first_name = 'NEW'"), "201");
}

#[test]
fn mysql_defaults_reach_postgres_and_mysql_or_are_dropped_by_name() {
    let Some(my) = MyDb::create("defaults_src") else { return };
    let Some(pg) = PgDb::create("defaults_pg") else { return };
    let Some(copy) = MyDb::create("defaults_my") else {
        return;
    };
    my.sql(
        "SET SESSION sql_mode = 'NO_ENGINE_SUBSTITUTION'; \
         CREATE TABLE events (id int AUTO_INCREMENT PRIMARY KEY, \
           kind varchar(20) NOT NULL DEFAULT 'click', score decimal(5,2) DEFAULT -1.50, \
           seen datetime NOT NULL DEFAULT '0000-00-00 00:00:00', \
           token char(36) DEFAULT (uuid()), \
           changed timestamp(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3)) \
           DEFAULT CHARSET = utf8mb4 COLLATE utf8mb4_unicode_ci; \
         INSERT INTO events (kind, seen) VALUES ('view', '2024-01-01 10:00:00'), ('buy', '2024-01-02 11:00:00'); \
         CREATE VIEW buys AS SELECT * FROM events WHERE kind = 'buy'; \
         CREATE TRIGGER events_kind BEFORE INSERT ON events FOR EACH ROW SET NEW.kind = LOWER(NEW.kind); \
         CREATE FUNCTION twice(x int) RETURNS int DETERMINISTIC RETURN 2 * x;",
    );
    let dir = tempfile::tempdir().unwrap();
    pipeline(dir.path(), "mp.toml", ("mysql", &my.url()), ("postgres", &pg.url()));
    let plan = sluice(dir.path(), &["plan", "mp.toml"]);
    let text = String::from_utf8_lossy(&plan.stdout).to_string();
    for listed in [
        "1 views (buys)",
        "1 triggers (events.events_kind)",
        "1 functions (twice)",
    ] {
        assert!(text.contains(listed), "`{listed}` missing from the plan:\n{text}");
    }
    let err = ok(&sluice(dir.path(), &["run", "mp.toml", "--no-progress"]));
    for warned in [
        "events.seen: default '0000-00-00 00:00:00' dropped",
        "events.token: default uuid() dropped",
        "events.changed: ON UPDATE CURRENT_TIMESTAMP dropped",
        "not copied from the source",
    ] {
        assert!(err.contains(warned), "warning `{warned}` missing:\n{err}");
    }
    verify_matches(dir.path(), "mp.toml");
    let column = |c: &str| {
        pg.sql(&format!(
            "SELECT is_nullable || ' ' || coalesce(column_default, '-') FROM information_schema.columns \
             WHERE table_name = 'events' AND column_name = '{c}'"
        ))
    };
    assert_eq!(column("kind"), "NO 'click'::character varying");
    assert_eq!(column("score"), "YES '-1.50'::numeric");
    // NOT NULL survives though zero dates are read as NULL.
    assert_eq!(column("seen"), "NO -");
    assert_eq!(column("changed"), "NO CURRENT_TIMESTAMP");
    pg.sql("INSERT INTO events (seen) VALUES (now())");
    assert_eq!(
        pg.sql("SELECT id, kind, score FROM events WHERE id = 3"),
        "3|click|-1.50"
    );

    // MySQL to MySQL keeps them all, and the source's own collation.
    pipeline(dir.path(), "mm.toml", ("mysql", &my.url()), ("mysql", &copy.url()));
    ok(&sluice(dir.path(), &["run", "mm.toml", "--no-progress"]));
    verify_matches(dir.path(), "mm.toml");
    let columns = "SELECT GROUP_CONCAT(CONCAT_WS(' ', COLUMN_NAME, COLUMN_DEFAULT, EXTRA, COLLATION_NAME) \
                   ORDER BY ORDINAL_POSITION SEPARATOR ', ') FROM information_schema.COLUMNS \
                   WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'events'";
    assert_eq!(copy.sql(columns), my.sql(columns));
}
