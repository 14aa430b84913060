//! PostgreSQL migrations end to end, against the local server.

use crate::servers::PgDb;
use crate::{ndjson, ok, sluice};
use std::path::Path;
use std::process::Command;

/// A table holding every type the PostgreSQL connector reads and writes,
/// with extremes, NULLs, unicode, a 1 MiB text and every byte value.
const ALL_TYPES: &str = r#"
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN positive AS integer CHECK (VALUE > 0);
CREATE TABLE all_types (
    id integer PRIMARY KEY,
    i2 smallint, i4 integer, i8 bigint,
    n12 numeric(12,2), n numeric, nbig numeric(60,20),
    f4 real, f8 double precision,
    t text, vc varchar(10), c char(5), nm name,
    b boolean,
    d date, tm time, ts timestamp, tstz timestamptz, iv interval,
    u uuid, j json, jb jsonb, by bytea,
    ai integer[], at text[], m mood, am mood[], dom positive,
    ip inet, ts6 timestamp(6)
);
INSERT INTO all_types VALUES
 (1, -32768, -2147483648, -9223372036854775808,
  -9999999999.99, 'NaN', '-12345678901234567890123456789012345678.12345678901234567890',
  '-Infinity', 'NaN',
  '', 'émoji 😀', 'ab', 'name',
  false,
  '-infinity', '00:00:00', '4713-01-01 BC 00:00:00', '-infinity', '-178000000 years',
  '00000000-0000-0000-0000-000000000000', '[]', '{}', '\x',
  '{}', '{}', 'sad', '{}', 1,
  '0.0.0.0', '2000-01-01 00:00:00'),
 (2, 32767, 2147483647, 9223372036854775807,
  9999999999.99, '123456789012345678901234567890.000000000000000001', '0.00000000000000000001',
  3.4028235e38, 1.7976931348623157e308,
  repeat('long text ✓ ', 87382), 'ten chars!', 'abcde', 'x',
  true,
  'infinity', '23:59:59.999999', '9999-12-31 23:59:59.999999', 'infinity', '178000000 years 11 mons 30 days 23:59:59.999999',
  'ffffffff-ffff-ffff-ffff-ffffffffffff', '{"a": [1, 2.5, "三"], "b": null}', '{"k": {"nested": true}, "n": 1.50}',
  (SELECT string_agg(set_byte('\x00'::bytea, 0, g), ''::bytea ORDER BY g) FROM generate_series(0, 255) g),
  '{1,NULL,-3}', '{"a,b","c\"d",NULL,"漢字"}', 'happy', '{ok,happy}', 2147483647,
  '2001:db8::1/64', '2024-02-29 12:34:56.789012'),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
"#;

#[test]
fn every_type_round_trips_postgres_to_postgres() {
    let Some(src) = PgDb::create("pgpg_src") else { return };
    let Some(dst) = PgDb::create("pgpg_dst") else { return };
    src.sql(ALL_TYPES);
    let dir = tempfile::tempdir().unwrap();
    ok(&sluice(dir.path(), &["copy", &src.url(), &dst.url(), "--no-progress"]));
    assert_eq!(dst.fingerprint("all_types"), src.fingerprint("all_types"));
    assert!(dst.fingerprint("all_types").starts_with("3:"));
    // Types are faithful, not just values.
    let types = |db: &PgDb| {
        db.sql(
            "SELECT string_agg(format_type(atttypid, atttypmod), ',' ORDER BY attnum) FROM pg_attribute \
             WHERE attrelid = 'all_types'::regclass AND attnum > 0",
        )
    };
    assert_eq!(
        types(&dst).replace("positive", "integer"),
        types(&src).replace("positive", "integer")
    );
    assert_eq!(dst.sql("SELECT length(t) FROM all_types WHERE id = 2"), "1048584");
    assert_eq!(
        dst.sql("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'all_types'::regclass"),
        "PRIMARY KEY (id)"
    );
}

#[test]
fn a_table_copies_in_parallel_partitions_without_losing_or_repeating_rows() {
    let Some(src) = PgDb::create("pgpart_src") else { return };
    let Some(dst) = PgDb::create("pgpart_dst") else { return };
    src.sql(
        "CREATE TABLE keyed (id bigint PRIMARY KEY, v text); \
         INSERT INTO keyed SELECT g, md5(g::text) FROM generate_series(1, 300000) g; \
         CREATE TABLE heap (v text); INSERT INTO heap SELECT md5(g::text) FROM generate_series(1, 200000) g; \
         ANALYZE",
    );
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[source]\ntype = \"postgres\"\nurl = \"{}\"\npartitions = 4\n\n[[sinks]]\ntype = \"postgres\"\nurl = \"{}\"\n",
        src.url(),
        dst.url()
    );
    std::fs::write(dir.path().join("p.toml"), toml).unwrap();
    ok(&sluice(dir.path(), &["run", "p.toml", "--no-progress"]));
    assert_eq!(dst.fingerprint("keyed"), src.fingerprint("keyed"));
    assert_eq!(dst.fingerprint("heap"), src.fingerprint("heap"));
}

#[test]
fn rows_the_server_refuses_go_to_the_dead_letter_file_and_the_rest_loads() {
    let Some(db) = PgDb::create("pgbad") else { return };
    db.sql("CREATE TABLE items (id integer PRIMARY KEY, name varchar(5) NOT NULL, qty integer CHECK (qty >= 0))");
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("id,name,qty\n");
    for i in 1..=1000 {
        let line = match i {
            100 => "100,much too long,1\n".to_string(),
            500 => "500,neg,-5\n".to_string(),
            900 => "899,dup,1\n".to_string(),
            _ => format!("{i},n{i},{}\n", i % 7),
        };
        csv.push_str(&line);
    }
    std::fs::write(dir.path().join("items.csv"), csv).unwrap();
    let dst = format!("{}?table=items", db.url());
    let out = sluice(
        dir.path(),
        &[
            "copy",
            "items.csv",
            &dst,
            "--on-error",
            "dlq",
            "--dlq",
            "rejects.ndjson",
            "--no-progress",
        ],
    );
    ok(&out);
    assert_eq!(db.sql("SELECT count(*) FROM items"), "997");
    let rejects = ndjson(&dir.path().join("rejects.ndjson"));
    assert_eq!(rejects.len(), 3, "{rejects:?}");
    let reasons: Vec<String> = rejects
        .iter()
        .map(|r| r["reason"].as_str().unwrap().to_string())
        .collect();
    assert!(reasons.iter().any(|r| r.contains("too long")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("check constraint")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("duplicate key")), "{reasons:?}");
    let lines: Vec<u64> = rejects.iter().filter_map(|r| r["line"].as_u64()).collect();
    assert_eq!(lines, vec![101, 501, 901], "{rejects:?}");
}

#[test]
fn upsert_updates_in_place_and_replace_swaps_the_table() {
    let Some(db) = PgDb::create("pgmodes") else { return };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.csv"), "id,v\n1,one\n2,two\n").unwrap();
    std::fs::write(dir.path().join("b.csv"), "id,v\n2,TWO\n3,three\n3,THREE\n").unwrap();
    let upsert = format!("{}?table=t&mode=upsert&key=id", db.url());
    ok(&sluice(dir.path(), &["copy", "a.csv", &upsert, "--no-progress"]));
    ok(&sluice(dir.path(), &["copy", "b.csv", &upsert, "--no-progress"]));
    assert_eq!(
        db.sql("SELECT string_agg(id || '=' || v, ',' ORDER BY id) FROM t"),
        "1=one,2=TWO,3=THREE"
    );
    let replace = format!("{}?table=t&mode=replace", db.url());
    ok(&sluice(dir.path(), &["copy", "a.csv", &replace, "--no-progress"]));
    assert_eq!(
        db.sql("SELECT string_agg(id || '=' || v, ',' ORDER BY id) FROM t"),
        "1=one,2=two"
    );
    assert_eq!(
        db.sql("SELECT count(*) FROM pg_class WHERE relname LIKE 't__sluice%'"),
        "0"
    );
}

#[test]
fn plan_writes_nothing_check_passes_and_verify_catches_one_changed_row() {
    let Some(src) = PgDb::create("pgverify_src") else {
        return;
    };
    let Some(dst) = PgDb::create("pgverify_dst") else {
        return;
    };
    src.sql(
        "CREATE TABLE orders (id serial PRIMARY KEY, amount numeric(12,2) NOT NULL, note text); \
         CREATE INDEX orders_amount_idx ON orders (amount); \
         INSERT INTO orders (amount, note) SELECT g * 1.25, 'order ' || g FROM generate_series(1, 5000) g",
    );
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[source]\ntype = \"postgres\"\nurl = \"{}\"\n\n[[sinks]]\ntype = \"postgres\"\nurl = \"{}\"\n\
         [sinks.types]\n\"orders.note\" = \"varchar(200)\"\n",
        src.url(),
        dst.url()
    );
    std::fs::write(dir.path().join("m.toml"), toml).unwrap();

    let plan = sluice(dir.path(), &["plan", "m.toml"]);
    ok(&plan);
    let text = String::from_utf8_lossy(&plan.stdout).to_string();
    assert!(text.contains("CREATE TABLE \"public\".\"orders\""), "{text}");
    assert!(
        text.contains("\"note\" varchar(200)"),
        "the type override is planned: {text}"
    );
    assert!(text.contains("ADD PRIMARY KEY (\"id\")"), "{text}");
    assert!(text.contains("CREATE INDEX \"orders_amount_idx\""), "{text}");
    let hash = text
        .lines()
        .find(|l| l.starts_with("schema hash:"))
        .unwrap()
        .to_string();
    let again = String::from_utf8_lossy(&sluice(dir.path(), &["plan", "m.toml"]).stdout).to_string();
    assert!(again.contains(&hash), "the schema hash is deterministic");
    // `plan` shows the plan hash `validate` prints (the one a resumed run compares).
    let plan_hash = text.lines().find_map(|l| l.strip_prefix("plan hash: ")).unwrap();
    let valid = sluice(dir.path(), &["validate", "m.toml"]);
    ok(&valid);
    let valid = String::from_utf8_lossy(&valid.stdout);
    assert!(valid.contains(&format!("plan hash {plan_hash})")), "{valid}\n{text}");
    assert_eq!(
        dst.sql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"),
        "0",
        "plan wrote nothing"
    );

    let check = sluice(dir.path(), &["check", "m.toml"]);
    ok(&check);
    assert!(String::from_utf8_lossy(&check.stdout).contains("will be created"));

    ok(&sluice(dir.path(), &["run", "m.toml", "--no-progress"]));
    assert_eq!(
        dst.sql("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'note'"),
        "character varying(200)"
    );
    // The identity sequence continues after the loaded rows.
    dst.sql("INSERT INTO orders (amount) VALUES (1)");
    assert_eq!(dst.sql("SELECT max(id) FROM orders"), "5001");
    dst.sql("DELETE FROM orders WHERE id = 5001");

    let verify = sluice(dir.path(), &["verify", "m.toml"]);
    ok(&verify);
    assert!(String::from_utf8_lossy(&verify.stdout).contains("match"));

    dst.sql("UPDATE orders SET note = 'changed' WHERE id = 4321");
    let verify = sluice(dir.path(), &["verify", "m.toml"]);
    assert_eq!(
        verify.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(String::from_utf8_lossy(&verify.stdout).contains("DIFFERENT"));
}

#[test]
fn incremental_reads_by_cursor_column_pick_up_only_new_rows() {
    let Some(src) = PgDb::create("pgcursor_src") else {
        return;
    };
    let Some(dst) = PgDb::create("pgcursor_dst") else {
        return;
    };
    src.sql(
        "CREATE TABLE events (id integer PRIMARY KEY, updated_at timestamptz NOT NULL, v text); \
         INSERT INTO events VALUES (1, '2024-01-01 10:00:00+00', 'a'), (2, '2024-01-01 11:00:00.5+00', 'b'), \
         (3, '2024-01-01 09:00:00+00', 'old')",
    );
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[source]\ntype = \"postgres\"\nurl = \"{}\"\ntable = \"events\"\ncursor = \"updated_at\"\n\
         cursor_start = \"2024-01-01 09:30:00+00\"\n\n[[sinks]]\ntype = \"postgres\"\nurl = \"{}\"\n",
        src.url(),
        dst.url()
    );
    std::fs::write(dir.path().join("inc.toml"), toml).unwrap();
    ok(&sluice(dir.path(), &["run", "inc.toml", "--no-progress"]));
    assert_eq!(
        dst.sql("SELECT string_agg(v, ',' ORDER BY id) FROM events"),
        "a,b",
        "cursor_start applies"
    );
    src.sql("INSERT INTO events VALUES (4, '2024-01-02 00:00:00+00', 'c'); UPDATE events SET v = 'x' WHERE id = 1");
    ok(&sluice(dir.path(), &["run", "inc.toml", "--no-progress"]));
    assert_eq!(
        dst.sql("SELECT string_agg(v, ',' ORDER BY id) FROM events"),
        "a,b,c",
        "the second run reads only rows past the last cursor value"
    );
}

/// Every type whose binary form another server reads as it is, with
/// extremes, NaN and infinities, NULLs, unicode and a 1 MiB text: copied
/// PostgreSQL to PostgreSQL as binary COPY tuples, never decoded.
const PASSABLE: &str = r#"
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN positive AS integer CHECK (VALUE > 0);
CREATE TABLE wide (
    id bigint PRIMARY KEY,
    i2 smallint, i4 integer, n12 numeric(12,2), n numeric, nbig numeric(60,20),
    f4 real, f8 double precision, t text, vc varchar(10), c char(5), b boolean,
    d date, tm time, ts timestamp, tstz timestamptz, iv interval,
    u uuid, j json, jb jsonb, by bytea, ai integer[], at text[], m mood, dom positive
);
INSERT INTO wide SELECT g, (g % 30000)::smallint, g * 7, g / 7.0, g * 1.000001, g / 3.0,
    g / 9.0, g / 11.0, md5(g::text) || ' ✓', left(md5(g::text), 10), left(md5(g::text), 5), g % 2 = 0,
    date '2000-01-01' + g, time '00:00' + g * interval '1 second', timestamp '2020-01-01' + g * interval '1 minute',
    timestamptz '2020-01-01 00:00+00' + g * interval '1 second', g * interval '1 hour 1 second',
    md5(g::text)::uuid, json_build_object('g', g), jsonb_build_object('g', g, 's', 'x'), sha256(g::text::bytea),
    ARRAY[g, NULL, -g], ARRAY[g::text, 'a,b', NULL], (ARRAY['sad', 'ok', 'happy'])[g % 3 + 1]::mood, g::integer
    FROM generate_series(4, 70000) g;
INSERT INTO wide VALUES
 (1, -32768, -2147483648, -9999999999.99, 'NaN', '-12345678901234567890123456789012345678.12345678901234567890',
  '-Infinity', 'NaN', '', 'émoji 😀', 'ab', false,
  '-infinity', '00:00:00', '4713-01-01 BC 00:00:00', '-infinity', '-178000000 years',
  '00000000-0000-0000-0000-000000000000', '[]', '{}', '\x', '{}', '{}', 'sad', 1),
 (2, 32767, 2147483647, 9999999999.99, '123456789012345678901234567890.000000000000000001', '0.00000000000000000001',
  'Infinity', 1.7976931348623157e308, repeat('long text ✓ ', 87382), 'ten chars!', 'abcde', true,
  'infinity', '23:59:59.999999', '9999-12-31 23:59:59.999999', 'infinity', '178000000 years 11 mons 30 days 23:59:59.999999',
  'ffffffff-ffff-ffff-ffff-ffffffffffff', '{"a": [1, 2.5, "三"], "b": null}', '{"k": {"nested": true}, "n": 1.50}',
  (SELECT string_agg(set_byte('\x00'::bytea, 0, g), ''::bytea ORDER BY g) FROM generate_series(0, 255) g),
  '{1,NULL,-3}', '{"a,b","c\"d",NULL,"漢字"}', 'happy', 2147483647),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
ANALYZE wide;
"#;

/// The column types of `table`, in order.
fn column_types(db: &PgDb, table: &str) -> String {
    db.sql(&format!(
        "SELECT string_agg(format_type(atttypid, atttypmod), ',' ORDER BY attnum) FROM pg_attribute \
         WHERE attrelid = '{table}'::regclass AND attnum > 0 AND NOT attisdropped"
    ))
}

#[test]
fn postgres_to_postgres_passes_binary_tuples_through_exactly() {
    let Some(src) = PgDb::create("pass_src") else { return };
    let Some(dst) = PgDb::create("pass_dst") else { return };
    src.sql(PASSABLE);
    let dir = tempfile::tempdir().unwrap();
    let err = ok(&sluice(dir.path(), &["copy", &src.url(), &dst.url(), "--no-progress"]));
    assert!(
        err.contains("wide: binary passthrough"),
        "the summary says the rows were not decoded:\n{err}"
    );
    assert_eq!(dst.fingerprint("wide"), src.fingerprint("wide"));
    assert!(dst.fingerprint("wide").starts_with("70000:"));
    assert_eq!(
        dst.sql("SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM wide t WHERE id <= 3"),
        src.sql("SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM wide t WHERE id <= 3"),
        "extremes, NaN, infinities and NULLs"
    );
    assert_eq!(
        dst.sql("SELECT n || ',' || f8 || ',' || tstz FROM wide WHERE id = 1"),
        "NaN,NaN,-infinity"
    );
    assert_eq!(dst.sql("SELECT length(t) FROM wide WHERE id = 2"), "1048584");
    assert_eq!(
        column_types(&dst, "wide"),
        column_types(&src, "wide").replace("positive", "integer")
    );
    assert_eq!(
        dst.sql("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'wide'::regclass"),
        "PRIMARY KEY (id)"
    );
}

/// A source table of `rows` rows: bigint key, text, numeric, timestamptz.
fn events(db: &PgDb, rows: u64) {
    db.sql(&format!(
        "CREATE TABLE events (id bigint PRIMARY KEY, v text NOT NULL, n numeric(12,2), at timestamptz); \
         INSERT INTO events SELECT g, md5(g::text), g / 7.0, timestamptz '2026-01-01' + g * interval '1 second' \
         FROM generate_series(1, {rows}) g; ANALYZE events"
    ));
}

/// A source of `rows` events and a destination table of the same types
/// whose check refuses every id divisible by `every`.
fn refusing_pair(tag: &str, rows: u64, every: i64) -> Option<(PgDb, PgDb)> {
    let src = PgDb::create(&format!("{tag}_src"))?;
    let dst = PgDb::create(&format!("{tag}_dst"))?;
    events(&src, rows);
    dst.sql(&format!(
        "CREATE TABLE events (id bigint PRIMARY KEY, v text NOT NULL, n numeric(12,2), at timestamptz, \
         CHECK (id % {every} <> 0))"
    ));
    Some((src, dst))
}

/// Every id divisible by `every` is in the dead-letter file, refused by
/// the check; every other row arrived once, unchanged.
fn assert_refused_by_check(dir: &Path, src: &PgDb, dst: &PgDb, rows: i64, every: i64) {
    let rejects = ndjson(&dir.join("rejects.ndjson"));
    let mut ids: Vec<i64> = rejects.iter().map(|r| r["record"]["id"].as_i64().unwrap()).collect();
    ids.sort();
    assert_eq!(
        ids,
        (1..=rows / every).map(|i| i * every).collect::<Vec<i64>>(),
        "{rejects:?}"
    );
    assert!(
        rejects
            .iter()
            .all(|r| r["reason"].as_str().unwrap().contains("check constraint")),
        "{rejects:?}"
    );
    assert_eq!(
        dst.fingerprint("events"),
        src.fingerprint(&format!("(SELECT * FROM events WHERE id % {every} <> 0)")),
        "every other row arrived once, unchanged"
    );
}

const COPY_WITH_DLQ: [&str; 6] = ["--on-error", "dlq", "--dlq", "rejects.ndjson", "--no-progress", "-v"];

#[test]
fn rows_the_destination_refuses_are_found_by_decoding_their_batch_and_the_rest_passes_through() {
    let Some((src, dst)) = refusing_pair("passbad", 100_000, 10_000) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let to = format!("{}?mode=append", dst.url());
    let from = format!("{}?table=events", src.url());
    let mut args = vec!["copy", &from, &to];
    args.extend(&COPY_WITH_DLQ[..5]);
    let err = ok(&sluice(dir.path(), &args));
    assert!(err.contains("events: binary passthrough"), "{err}");
    assert_refused_by_check(dir.path(), &src, &dst, 100_000, 10_000);
}

#[test]
fn batches_loaded_together_find_the_rows_the_destination_refuses_one_batch_at_a_time() {
    let Some((src, dst)) = refusing_pair("passgroup", 60_000, 7919) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let to = format!("{}?mode=append", dst.url());
    let from = format!("{}?table=events&partitions=1", src.url());
    // 300 small batches: they queue behind the destination's commits and
    // go into it several to a `COPY`.
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["copy", &from, &to])
        .args(COPY_WITH_DLQ)
        .current_dir(dir.path())
        .env("XDG_STATE_HOME", dir.path().join("state"))
        .env("SLUICE_RUNTIME__BATCH_ROWS", "200")
        .output()
        .unwrap();
    let err = ok(&out);
    assert!(
        err.contains("written one by one to find them"),
        "no batches were loaded together"
    );
    assert_refused_by_check(dir.path(), &src, &dst, 60_000, 7919);
}

#[test]
fn a_transform_or_another_destination_type_keeps_rows_decoded() {
    let Some(src) = PgDb::create("passno_src") else { return };
    let Some(dst) = PgDb::create("passno_dst") else { return };
    let Some(typed) = PgDb::create("passno_typed") else {
        return;
    };
    events(&src, 50_000);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("t.toml"),
        format!(
            "[source]\ntype = \"postgres\"\nurl = \"{}\"\ntable = \"events\"\n\n\
             [[transforms]]\ntype = \"filter\"\npredicate = \"id > 0\"\n\n\
             [[sinks]]\ntype = \"postgres\"\nurl = \"{}\"\n",
            src.url(),
            dst.url()
        ),
    )
    .unwrap();
    let err = ok(&sluice(dir.path(), &["run", "t.toml", "--no-progress"]));
    assert!(
        !err.contains("binary passthrough"),
        "a transform reads the values:\n{err}"
    );
    assert_eq!(dst.fingerprint("events"), src.fingerprint("events"));

    std::fs::write(
        dir.path().join("ty.toml"),
        format!(
            "[source]\ntype = \"postgres\"\nurl = \"{}\"\ntable = \"events\"\n\n\
             [[sinks]]\ntype = \"postgres\"\nurl = \"{}\"\n[sinks.types]\n\"events.n\" = \"numeric(14,4)\"\n",
            src.url(),
            typed.url()
        ),
    )
    .unwrap();
    let err = ok(&sluice(dir.path(), &["run", "ty.toml", "--no-progress"]));
    assert!(
        !err.contains("binary passthrough"),
        "numeric(14,4) is not numeric(12,2):\n{err}"
    );
    assert_eq!(
        column_types(&typed, "events"),
        "bigint,text,numeric(14,4),timestamp with time zone"
    );
    let sums = "SELECT count(*) || ' ' || sum(id) || ' ' || sum(n)::numeric(20,2) || ' ' || max(at) FROM events";
    assert_eq!(typed.sql(sums), src.sql(sums));

    // Two sinks: each gets the rows decoded.
    let Some(second) = PgDb::create("passno_second") else {
        return;
    };
    std::fs::write(
        dir.path().join("two.toml"),
        format!(
            "[source]\ntype = \"postgres\"\nurl = \"{}\"\ntable = \"events\"\n\n\
             [[sinks]]\ntype = \"postgres\"\nurl = \"{}\"\ntable = \"copy\"\n\n\
             [[sinks]]\ntype = \"postgres\"\nurl = \"{}\"\n",
            src.url(),
            typed.url(),
            second.url()
        ),
    )
    .unwrap();
    let err = ok(&sluice(dir.path(), &["run", "two.toml", "--no-progress"]));
    assert!(!err.contains("binary passthrough"), "two sinks:\n{err}");
    assert_eq!(second.fingerprint("events"), src.fingerprint("events"));
    assert_eq!(typed.fingerprint("copy"), src.fingerprint("events"));
}
