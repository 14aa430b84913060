//! MySQL/MariaDB migrations end to end, against the local servers: every type
//! MySQL → PostgreSQL, PostgreSQL → MySQL and MySQL → MySQL, with values
//! compared by `sluice verify` (normalized row checksums) and spot checks in
//! SQL on the destination.

use crate::servers::{MyDb, PgDb};
use crate::{ok, sluice};

/// Every MySQL type the connector reads, with extremes, NULLs, unicode,
/// a 1 MiB text and all 256 byte values.
const MYSQL_ALL_TYPES: &str = r#"
SET SESSION sql_mode = 'NO_ENGINE_SUBSTITUTION';
CREATE TABLE all_types (
    id int PRIMARY KEY,
    ti tinyint, tiu tinyint unsigned, si smallint, siu smallint unsigned,
    mi mediumint, miu mediumint unsigned, i int, iu int unsigned, bi bigint, biu bigint unsigned,
    d12 decimal(12,2), d65 decimal(65,30),
    f float, db double,
    c char(5), vc varchar(20), tx text, lt longtext,
    bn binary(4), vb varbinary(300), bl blob,
    dt date, dtm datetime(6), ts timestamp(6) NULL, tm time(6), yr year,
    en enum('small','medium','large'), st set('a','b','c'),
    js json, b1 bit(1), b64 bit(64)
) DEFAULT CHARSET = utf8mb4;
INSERT INTO all_types VALUES
 (1, -128, 0, -32768, 0, -8388608, 0, -2147483648, 0, -9223372036854775808, 0,
  -9999999999.99, -12345678901234567890123456789012345.123456789012345678901234567890,
  -3.40282e38, -1.7976931348623157e308,
  '', '', '', '', X'00000000', X'', X'',
  '1000-01-01', '1000-01-01 00:00:00.000000', '1970-01-01 00:00:01.000000', '00:00:00', 1901,
  'small', '', '[]', b'0', b'0'),
 (2, 127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295, 9223372036854775807,
  18446744073709551615,
  9999999999.99, 12345678901234567890123456789012345.123456789012345678901234567891,
  3.40282e38, 1.7976931348623157e308,
  'abcde', 'émoji 😀 漢字', 'line1\nline2\t"quoted"\\', REPEAT('long text ✓ ', 87382),
  X'DEADBEEF', (SELECT UNHEX(REPEAT('FF', 300))), NULL,
  '9999-12-31', '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07.999999', '23:59:59.999999', 2155,
  'large', 'a,c', '{"a": [1, 2.5, "三"], "b": null, "c": {"d": true}}', b'1', b'1111111111111111111111111111111111111111111111111111111111111111'),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
UPDATE all_types SET bl = (SELECT UNHEX(GROUP_CONCAT(LPAD(HEX(n), 2, '0') ORDER BY n SEPARATOR ''))
  FROM (SELECT a.n + 16 * b.n AS n FROM
    (SELECT 0 n UNION SELECT 1 UNION SELECT 2 UNION SELECT 3 UNION SELECT 4 UNION SELECT 5 UNION SELECT 6 UNION SELECT 7
     UNION SELECT 8 UNION SELECT 9 UNION SELECT 10 UNION SELECT 11 UNION SELECT 12 UNION SELECT 13 UNION SELECT 14 UNION SELECT 15) a,
    (SELECT 0 n UNION SELECT 1 UNION SELECT 2 UNION SELECT 3 UNION SELECT 4 UNION SELECT 5 UNION SELECT 6 UNION SELECT 7
     UNION SELECT 8 UNION SELECT 9 UNION SELECT 10 UNION SELECT 11 UNION SELECT 12 UNION SELECT 13 UNION SELECT 14 UNION SELECT 15) b) bytes)
  WHERE id = 2;
CREATE TABLE zero_dates (id int PRIMARY KEY, d date, dt datetime);
INSERT INTO zero_dates VALUES (1, '0000-00-00', '0000-00-00 00:00:00'), (2, '2024-02-29', '2024-02-29 12:00:00');
"#;

fn pipeline(dir: &std::path::Path, name: &str, src: (&str, &str), dst: (&str, &str)) {
    let toml = format!(
        "[source]\ntype = \"{}\"\nurl = \"{}\"\n\n[[sinks]]\ntype = \"{}\"\nurl = \"{}\"\n",
        src.0, src.1, dst.0, dst.1
    );
    std::fs::write(dir.join(name), toml).unwrap();
}

fn verify_matches(dir: &std::path::Path, file: &str) {
    let out = sluice(dir, &["verify", file]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "verify found a difference:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains("DIFFERENT"), "{stdout}");
}

#[test]
fn every_type_round_trips_mysql_to_postgres() {
    let Some(my) = MyDb::create("mypg_src") else { return };
    let Some(pg) = PgDb::create("mypg_dst") else { return };
    my.sql(MYSQL_ALL_TYPES);
    let dir = tempfile::tempdir().unwrap();
    pipeline(dir.path(), "m.toml", ("mysql", &my.url()), ("postgres", &pg.url()));
    ok(&sluice(dir.path(), &["run", "m.toml", "--no-progress"]));
    assert_eq!(pg.sql("SELECT count(*) FROM all_types"), "3");
    assert_eq!(
        pg.sql("SELECT biu, d65, iu, yr, en, st FROM all_types WHERE id = 2"),
        "18446744073709551615|12345678901234567890123456789012345.123456789012345678901234567891|4294967295|2155|large|a,c"
    );
    assert_eq!(
        pg.sql("SELECT length(lt), length(vb), md5(bl) FROM all_types WHERE id = 2")
            .split('|')
            .count(),
        3
    );
    assert_eq!(
        pg.sql("SELECT md5(bl) FROM all_types WHERE id = 2"),
        pg.sql("SELECT md5(string_agg(set_byte('\\x00'::bytea, 0, g), ''::bytea ORDER BY g)) FROM generate_series(0, 255) g")
    );
    assert_eq!(
        pg.sql("SELECT js->'c'->>'d', dtm, ts FROM all_types WHERE id = 2"),
        "true|9999-12-31 23:59:59.999999|2038-01-19 03:14:07.999999+00"
    );
    // The ENUM is a PostgreSQL enum type with MySQL's labels, in order.
    assert_eq!(
        pg.sql("SELECT pg_typeof(en)::text FROM all_types WHERE id = 2"),
        "all_types_en_enum"
    );
    assert_eq!(
        pg.sql("SELECT enum_range(NULL::all_types_en_enum)::text"),
        "{small,medium,large}"
    );
    // Zero dates become NULL (the default), the real dates stay.
    assert_eq!(pg.sql("SELECT count(d), count(dt) FROM zero_dates"), "1|1");
    assert_eq!(
        pg.sql("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'all_types'::regclass"),
        "PRIMARY KEY (id)"
    );
    verify_matches(dir.path(), "m.toml");
}

#[test]
fn every_type_round_trips_mysql_to_mysql() {
    let Some(src) = MyDb::create("mymy_src") else { return };
    let Some(dst) = MyDb::create("mymy_dst") else { return };
    src.sql(MYSQL_ALL_TYPES);
    let dir = tempfile::tempdir().unwrap();
    pipeline(dir.path(), "m.toml", ("mysql", &src.url()), ("mysql", &dst.url()));
    ok(&sluice(dir.path(), &["run", "m.toml", "--no-progress"]));
    let checksum = |db: &MyDb| {
        db.sql("CHECKSUM TABLE all_types")
            .split('\t')
            .nth(1)
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(checksum(&dst), checksum(&src), "CHECKSUM TABLE differs");
    assert_eq!(
        dst.sql("SELECT COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'all_types' ORDER BY ORDINAL_POSITION"),
        src.sql("SELECT COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'all_types' ORDER BY ORDINAL_POSITION"),
    );
    verify_matches(dir.path(), "m.toml");
}

#[test]
fn every_type_round_trips_postgres_to_mysql() {
    let Some(pg) = PgDb::create("pgmy_src") else { return };
    let Some(my) = MyDb::create("pgmy_dst") else { return };
    pg.sql(
        "CREATE TABLE all_types (id integer PRIMARY KEY, i2 smallint, i4 integer, i8 bigint, n12 numeric(12,2), \
         f4 real, f8 double precision, t text, vc varchar(10), b boolean, d date, tm time, ts timestamp, \
         tstz timestamptz, u uuid, j jsonb, by bytea); \
         INSERT INTO all_types VALUES \
         (1, -32768, -2147483648, -9223372036854775808, -9999999999.99, -3.4e38, -1.7976931348623157e308, \
          '', '', false, '1000-01-01', '00:00:00', '1000-01-01 00:00:00', '1970-01-01 00:00:01+00', \
          '00000000-0000-0000-0000-000000000000', '[]', '\\x'), \
         (2, 32767, 2147483647, 9223372036854775807, 9999999999.99, 3.4e38, 1.7976931348623157e308, \
          repeat('long ✓ ', 149796), 'émoji 😀', true, '9999-12-31', '23:59:59.999999', '9999-12-31 23:59:59.999999', \
          '2038-01-19 03:14:07.999999+00', 'ffffffff-ffff-ffff-ffff-ffffffffffff', '{\"a\": [1, \"三\"], \"b\": null}', \
          (SELECT string_agg(set_byte('\\x00'::bytea, 0, g), ''::bytea ORDER BY g) FROM generate_series(0, 255) g)), \
         (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
    );
    let dir = tempfile::tempdir().unwrap();
    pipeline(dir.path(), "m.toml", ("postgres", &pg.url()), ("mysql", &my.url()));
    ok(&sluice(dir.path(), &["run", "m.toml", "--no-progress"]));
    assert_eq!(my.sql("SELECT count(*) FROM all_types"), "3");
    assert_eq!(
        my.sql("SELECT i8, n12, u, JSON_EXTRACT(j, '$.a[1]'), LENGTH(`by`) FROM all_types WHERE id = 2"),
        "9223372036854775807\t9999999999.99\tffffffff-ffff-ffff-ffff-ffffffffffff\t\"三\"\t256"
    );
    verify_matches(dir.path(), "m.toml");
}

#[test]
fn postgres_types_mysql_lacks_are_mapped_with_warnings_or_refused_with_the_override_to_add() {
    let Some(pg) = PgDb::create("pgmy_more_src") else {
        return;
    };
    let Some(my) = MyDb::create("pgmy_more_dst") else {
        return;
    };
    pg.sql(
        "CREATE TYPE mood AS ENUM ('sad', 'happy'); CREATE DOMAIN posint AS integer CHECK (VALUE > 0); \
         CREATE TABLE more_types (id integer PRIMARY KEY, m mood, p posint, ia integer[], ta text[], \
         nu numeric, n50 numeric(50,10), c5 char(5), nm name, ip inet, iv interval); \
         INSERT INTO more_types VALUES \
         (1, 'happy', 5, '{1,2,3}', '{\"a\",\"b c\"}', 12345678901234567890.123456789, \
          1234567890123456789012345678901234567890.0123456789, 'ab', 'pg_name', '192.168.0.1/24', '1 day 02:00:00'), \
         (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
    );
    let dir = tempfile::tempdir().unwrap();
    pipeline(dir.path(), "m.toml", ("postgres", &pg.url()), ("mysql", &my.url()));
    // MySQL has no interval: refused before anything is written, naming the override.
    let out = sluice(dir.path(), &["run", "m.toml", "--no-progress"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("no interval type") && err.contains("[sinks.types]"),
        "{err}"
    );
    assert_eq!(my.sql("SHOW TABLES LIKE 'more_types'"), "", "the table was not created");

    let mut toml = std::fs::read_to_string(dir.path().join("m.toml")).unwrap();
    toml.push_str("\n[sinks.types]\n\"more_types.iv\" = \"varchar(64)\"\n");
    std::fs::write(dir.path().join("m.toml"), toml).unwrap();
    let err = ok(&sluice(dir.path(), &["run", "m.toml", "--no-progress", "--fresh"]));
    for warned in ["nested values stored as JSON", "numeric stored as its exact text"] {
        assert!(err.contains(warned), "warning `{warned}` missing:\n{err}");
    }
    assert_eq!(my.sql("SELECT count(*) FROM more_types"), "2");
    assert_eq!(
        my.sql(
            "SELECT m, p, JSON_EXTRACT(ia, '$[2]'), JSON_EXTRACT(ta, '$[1]'), nu, n50, c5, nm, ip \
             FROM more_types WHERE id = 1"
        ),
        "happy\t5\t3\t\"b c\"\t12345678901234567890.123456789\t\
         1234567890123456789012345678901234567890.0123456789\tab\tpg_name\t192.168.0.1/24"
    );
    // The enum keeps its labels, char(5) its length (MySQL strips the padding when read).
    assert_eq!(
        my.sql(
            "SELECT GROUP_CONCAT(COLUMN_TYPE ORDER BY ORDINAL_POSITION) FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'more_types' AND COLUMN_NAME IN ('m', 'c5')"
        ),
        "enum('sad','happy'),char(5)"
    );
    assert!(!my.sql("SELECT iv FROM more_types WHERE id = 1").is_empty());
    assert_eq!(
        my.sql("SELECT concat_ws(',', m IS NULL, p IS NULL, ia IS NULL, nu IS NULL, iv IS NULL) FROM more_types WHERE id = 2"),
        "1,1,1,1,1"
    );
}

#[test]
fn one_liner_copies_chosen_tables_from_mysql_to_postgres() {
    let Some(my) = MyDb::create("mycopy_src") else { return };
    let Some(pg) = PgDb::create("mycopy_dst") else { return };
    my.sql(
        "CREATE TABLE customers (id int AUTO_INCREMENT PRIMARY KEY, name varchar(50) NOT NULL); \
         CREATE TABLE orders (id bigint AUTO_INCREMENT PRIMARY KEY, customer_id int NOT NULL, amount decimal(10,2), \
           KEY orders_customer (customer_id), FOREIGN KEY (customer_id) REFERENCES customers (id)); \
         CREATE TABLE ignored (id int PRIMARY KEY); \
         INSERT INTO customers (name) VALUES ('ann'), ('bob'); \
         INSERT INTO orders (customer_id, amount) VALUES (1, 9.99), (2, 100.00), (1, 0.01);",
    );
    let dir = tempfile::tempdir().unwrap();
    ok(&sluice(
        dir.path(),
        &[
            "copy",
            &my.url(),
            &pg.url(),
            "--tables",
            "customers,orders",
            "--no-progress",
        ],
    ));
    assert_eq!(
        pg.sql("SELECT string_agg(amount::text, ',' ORDER BY id) FROM orders"),
        "9.99,100.00,0.01"
    );
    assert_eq!(pg.sql("SELECT to_regclass('ignored') IS NULL"), "t");
    // Keys, the index, the foreign key and the identity came along.
    assert_eq!(
        pg.sql("SELECT count(*) FROM pg_constraint WHERE conrelid = 'orders'::regclass AND contype IN ('p', 'f')"),
        "2"
    );
    pg.sql("INSERT INTO customers (name) VALUES ('cy')");
    assert_eq!(pg.sql("SELECT max(id) FROM customers"), "3");
}

#[test]
fn plan_and_check_cover_mysql_sinks_and_verify_catches_a_changed_row() {
    let Some(pg) = PgDb::create("myplan_src") else { return };
    let Some(my) = MyDb::create("myplan_dst") else { return };
    pg.sql(
        "CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL, price numeric(10,2)); \
         CREATE INDEX items_name_idx ON items (name); \
         INSERT INTO items SELECT g, 'item ' || g, g * 0.5 FROM generate_series(1, 2000) g",
    );
    let dir = tempfile::tempdir().unwrap();
    pipeline(dir.path(), "m.toml", ("postgres", &pg.url()), ("mysql", &my.url()));
    let plan = sluice(dir.path(), &["plan", "m.toml"]);
    ok(&plan);
    let text = String::from_utf8_lossy(&plan.stdout).to_string();
    assert!(text.contains("CREATE TABLE `items`"), "{text}");
    assert!(text.contains("decimal(10,2)"), "{text}");
    assert_eq!(my.sql("SHOW TABLES"), "", "plan wrote nothing");
    let check = sluice(dir.path(), &["check", "m.toml"]);
    ok(&check);
    assert!(String::from_utf8_lossy(&check.stdout).contains("will be created"));
    ok(&sluice(dir.path(), &["run", "m.toml", "--no-progress"]));
    verify_matches(dir.path(), "m.toml");
    my.sql("UPDATE items SET price = price + 0.01 WHERE id = 1234");
    let verify = sluice(dir.path(), &["verify", "m.toml"]);
    assert_eq!(verify.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&verify.stdout).contains("DIFFERENT"));
}

/// Chinook's naming: mixed-case tables and columns, a composite key and
/// foreign keys between them.
const MIXED_CASE: &str = r#"
CREATE TABLE Artist (ArtistId int PRIMARY KEY, Name varchar(120));
CREATE TABLE InvoiceLine (InvoiceLineId int PRIMARY KEY, TrackId int NOT NULL, UnitPrice decimal(10,2),
  ArtistId int, KEY IFK_InvoiceLineTrackId (TrackId),
  CONSTRAINT FK_InvoiceLineArtistId FOREIGN KEY (ArtistId) REFERENCES Artist (ArtistId));
INSERT INTO Artist VALUES (1, 'AC/DC'), (2, 'Accept');
INSERT INTO InvoiceLine VALUES (1, 10, 0.99, 1), (2, 11, 1.99, 2), (3, 12, 0.99, NULL);
"#;

#[test]
fn identifiers_snake_renames_tables_columns_keys_and_foreign_keys_consistently() {
    let Some(my) = MyDb::create("ident_src") else { return };
    let Some(pg) = PgDb::create("ident_dst") else { return };
    my.sql(MIXED_CASE);
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[source]\ntype = \"mysql\"\nurl = \"{}\"\n\n[[sinks]]\ntype = \"postgres\"\nurl = \"{}\"\nidentifiers = \"snake\"\n",
        my.url(),
        pg.url()
    );
    std::fs::write(dir.path().join("m.toml"), toml).unwrap();
    ok(&sluice(dir.path(), &["run", "m.toml", "--no-progress"]));
    assert_eq!(
        pg.sql("SELECT string_agg(table_name, ',' ORDER BY table_name) FROM information_schema.tables WHERE table_schema = 'public' AND table_name NOT LIKE '\\_sluice%'"),
        "artist,invoice_line"
    );
    assert_eq!(
        pg.sql("SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM information_schema.columns WHERE table_name = 'invoice_line'"),
        "invoice_line_id,track_id,unit_price,artist_id"
    );
    // Unquoted queries work, and keys and foreign keys point at the renamed names.
    assert_eq!(
        pg.sql("SELECT sum(unit_price) FROM invoice_line JOIN artist USING (artist_id)"),
        "2.98"
    );
    assert_eq!(
        pg.sql("SELECT string_agg(pg_get_constraintdef(oid), '; ' ORDER BY contype) FROM pg_constraint WHERE conrelid = 'invoice_line'::regclass"),
        "FOREIGN KEY (artist_id) REFERENCES artist(artist_id); PRIMARY KEY (invoice_line_id)"
    );
    assert_eq!(
        pg.sql("SELECT string_agg((indexdef LIKE '%(track_id)%' OR indexdef LIKE '%(artist_id)%')::text, ',') FROM pg_indexes WHERE tablename = 'invoice_line' AND indexdef NOT LIKE '%pkey%'"),
        "true,true"
    );
    // verify compares each column with its renamed self.
    verify_matches(dir.path(), "m.toml");

    // The one-liner takes the same option.
    let Some(pg2) = PgDb::create("ident_dst2") else { return };
    let dst = format!("{}?identifiers=lower", pg2.url());
    ok(&sluice(dir.path(), &["copy", &my.url(), &dst, "--no-progress"]));
    assert_eq!(pg2.sql("SELECT count(invoicelineid) FROM invoiceline"), "3");
}

#[test]
fn identifiers_that_collide_are_refused_before_anything_is_written() {
    let Some(my) = MyDb::create("identc_src") else { return };
    let Some(pg) = PgDb::create("identc_dst") else { return };
    my.sql("CREATE TABLE t (id int PRIMARY KEY, UserId int, user_id int); INSERT INTO t VALUES (1, 2, 3);");
    let dir = tempfile::tempdir().unwrap();
    let dst = format!("{}?identifiers=snake", pg.url());
    let out = sluice(dir.path(), &["copy", &my.url(), &dst, "--no-progress"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("identifiers") && stderr.contains("`UserId` and `user_id`"),
        "{stderr}"
    );
    assert_eq!(
        pg.sql("SELECT count(*) FROM information_schema.tables WHERE table_name = 't'"),
        "0"
    );
}
