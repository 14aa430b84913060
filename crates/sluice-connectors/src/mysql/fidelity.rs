//! What a MySQL table carries beyond its rows and keys, both ways: column
//! defaults, `ON UPDATE` and collations read from the catalog; for tables
//! the sink creates, lengths of PostgreSQL `varchar(n)`/`char(n)` kept
//! (with text types where a row would pass MySQL's 65,535-byte limit),
//! PostgreSQL enums as `enum(...)`, defaults rendered or dropped with a
//! warning, `AUTO_INCREMENT` moved past the loaded rows, and foreign keys
//! added once the tables they reference are loaded.
//!
//! Foreign keys wait in `_sluice_foreign_keys` (in the destination
//! database, as for PostgreSQL destinations): a table records its own when
//! its load completes, and every table that completes adds those of the job
//! whose referenced table now exists, so the order of the tables does not
//! matter and a resumed run still adds them.

use arrow::datatypes::{DataType, Field};
use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use sluice_core::dbmeta::{COLLATION, ColumnDefault, ColumnMeta, ForeignKeyMeta, ON_UPDATE, TableMeta};
use sluice_core::{NotCopied, Result};

use super::{db_error, quote_ident, rows, sql_string, text};
use sluice_core::dbmeta::ENUM_LABELS;

/// Largest row MySQL stores, counting each `varchar(n)` at its full width.
const MAX_ROW_BYTES: u64 = 65_535;
/// Bytes per character of utf8mb4.
const BYTES_PER_CHAR: u64 = 4;

/// What the destination server can do, read once per table.
#[derive(Debug, Clone, Default)]
pub(super) struct Server {
    /// `DEFAULT (expression)` (MySQL 8.0.13, MariaDB 10.2), also literals on text and blob columns.
    pub expression_defaults: bool,
    /// The database's default collation, when its character set is utf8mb4.
    pub collation: Option<String>,
    /// Column defaults are written (false after the server refused them).
    pub defaults: bool,
}

impl Server {
    pub async fn read(conn: &mut Conn, location: &str) -> Result<Self> {
        let found = rows(
            conn,
            location,
            "SELECT VERSION(), @@character_set_database, @@collation_database",
        )
        .await?;
        let row = found.first();
        let version = row.and_then(|r| text(r, 0)).unwrap_or_default();
        let charset = row.and_then(|r| text(r, 1)).unwrap_or_default();
        Ok(Server {
            defaults: true,
            expression_defaults: expression_defaults(&version),
            collation: row
                .and_then(|r| text(r, 2))
                .filter(|_| charset.eq_ignore_ascii_case("utf8mb4")),
        })
    }

    /// The table options after `CREATE TABLE … (…)`.
    pub fn table_options(&self) -> String {
        match &self.collation {
            Some(c) => format!("ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={c}"),
            // Not a utf8mb4 database: utf8mb4 with that character set's default collation.
            None => "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4".into(),
        }
    }
}

/// Whether a server of `version` (`VERSION()`) takes expression defaults.
fn expression_defaults(version: &str) -> bool {
    let number = version.split(['-', ' ']).next().unwrap_or("");
    let parts: Vec<u32> = number.split('.').filter_map(|p| p.parse().ok()).collect();
    let at_least = |want: [u32; 3]| parts.as_slice() >= want.as_slice();
    if version.to_ascii_lowercase().contains("mariadb") {
        at_least([10, 2, 1])
    } else {
        at_least([8, 0, 13])
    }
}

/// A column default as `information_schema.COLUMNS` shows it, made
/// dialect-neutral where it can be. MariaDB quotes string literals and
/// shows expressions bare; MySQL shows literals bare and marks expressions
/// `DEFAULT_GENERATED` in `EXTRA`.
pub(super) fn parse_default(raw: Option<&str>, extra: &str, mariadb: bool) -> Option<ColumnDefault> {
    let raw = raw?.trim();
    let lower = raw.to_ascii_lowercase();
    if mariadb && lower == "null" {
        return None;
    }
    if lower == "current_timestamp" || lower.starts_with("current_timestamp(") || lower == "now()" {
        return Some(ColumnDefault::CurrentTimestamp);
    }
    if ["curdate()", "current_date", "current_date()"].contains(&lower.as_str()) {
        return Some(ColumnDefault::CurrentDate);
    }
    let literal = if mariadb {
        if let Some(body) = raw.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
            return Some(ColumnDefault::Text(unescape(body)));
        }
        is_number(raw)
    } else {
        !extra.to_ascii_lowercase().contains("default_generated")
    };
    if literal && is_number(raw) {
        return Some(ColumnDefault::Number(raw.to_string()));
    }
    if literal && !mariadb {
        return Some(ColumnDefault::Text(raw.to_string()));
    }
    Some(ColumnDefault::Expression {
        dialect: "mysql".into(),
        sql: raw.to_string(),
    })
}

/// A MariaDB string literal's body without its doubled quotes and escapes.
fn unescape(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                // `''` stands for one quote.
                chars.next();
                out.push('\'');
            }
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some('0') => out.push('\0'),
                Some(o) => out.push(o),
                None => {}
            },
            c => out.push(c),
        }
    }
    out
}

fn is_number(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    !(int.is_empty() && frac.is_empty())
        && int.chars().all(|c| c.is_ascii_digit())
        && frac.chars().all(|c| c.is_ascii_digit())
}

/// Field metadata for a MySQL column: its default, its `ON UPDATE` and,
/// when it is not the database's default, its collation.
pub(super) fn column_metadata(
    default: Option<&str>,
    extra: &str,
    collation: Option<&str>,
    database_collation: Option<&str>,
    mariadb: bool,
) -> Vec<(String, String)> {
    let mut md = Vec::new();
    if let Some(d) = parse_default(default, extra, mariadb)
        && let Ok(json) = serde_json::to_string(&d)
    {
        md.push((sluice_core::dbmeta::DEFAULT.to_string(), json));
    }
    if extra.to_ascii_lowercase().contains("on update ") {
        md.push((ON_UPDATE.to_string(), "CURRENT_TIMESTAMP".to_string()));
    }
    if let Some(c) = collation
        && Some(c) != database_collation
    {
        md.push((COLLATION.to_string(), c.to_string()));
    }
    md
}

/// The MySQL type keeping the length of a PostgreSQL `character
/// varying(n)` or `character(n)`, or the labels of a PostgreSQL enum;
/// `None` when the column is not one.
pub(super) fn sized_type(field: &Field) -> Option<String> {
    let meta = ColumnMeta::of(field);
    if let Some(labels) = field.metadata().get(ENUM_LABELS)
        && meta.dialect.as_deref() == Some("postgres")
        && !matches!(field.data_type(), DataType::List(_) | DataType::LargeList(_))
    {
        let labels: Vec<String> = serde_json::from_str(labels).ok()?;
        if labels.is_empty() {
            return None;
        }
        let list: Vec<String> = labels.iter().map(|l| sql_string(l)).collect();
        return Some(format!("enum({})", list.join(",")));
    }
    let t = meta.db_type_in("postgres")?.to_ascii_lowercase();
    let length = |prefix: &str| -> Option<u64> { t.strip_prefix(prefix)?.strip_suffix(')')?.parse().ok() };
    if let Some(n) = length("character varying(") {
        return Some(format!("varchar({n})"));
    }
    // MySQL's char holds at most 255 characters.
    match length("character(") {
        Some(n) if n <= 255 => Some(format!("char({n})")),
        Some(n) => Some(format!("varchar({n})")),
        None => None,
    }
}

/// Bytes a column of `sql_type` counts toward the row size limit.
fn row_bytes(sql_type: &str) -> u64 {
    let t = sql_type.to_ascii_lowercase();
    let n = || -> u64 {
        t.split_once('(')
            .and_then(|(_, r)| r.split(')').next())
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(1)
    };
    if t.starts_with("varchar(") {
        n() * BYTES_PER_CHAR + 2
    } else if t.starts_with("char(") {
        n() * BYTES_PER_CHAR
    } else if t.starts_with("varbinary(") || t.starts_with("binary(") {
        n() + 2
    } else {
        // Numbers, dates and enums take a few bytes; text, blob and JSON
        // live off the row and leave a pointer of about a dozen.
        12
    }
}

/// The text type holding `chars` characters of utf8mb4.
fn text_type(chars: u64) -> &'static str {
    match chars * BYTES_PER_CHAR {
        b if b <= 65_535 => "text",
        b if b <= 16_777_215 => "mediumtext",
        _ => "longtext",
    }
}

/// Turns the widest `varchar(n)` columns not in `keyed` into text types
/// until the row fits MySQL's limit; returns a warning per column changed.
pub(super) fn fit_row(table: &str, names: &[&str], types: &mut [String], keyed: &[bool]) -> Vec<String> {
    let mut warnings = Vec::new();
    let mut total: u64 = types.iter().map(|t| row_bytes(t)).sum();
    while total > MAX_ROW_BYTES {
        let widest = (0..types.len())
            .filter(|&i| !keyed[i] && types[i].to_ascii_lowercase().starts_with("varchar("))
            .max_by_key(|&i| row_bytes(&types[i]));
        let Some(i) = widest else { break };
        let chars = (row_bytes(&types[i]) - 2) / BYTES_PER_CHAR;
        let text = text_type(chars);
        warnings.push(format!(
            "table `{table}`: column `{}` {} stored as {text}: the row would pass MySQL's {MAX_ROW_BYTES}-byte limit",
            names[i], types[i]
        ));
        total = total - row_bytes(&types[i]) + row_bytes(text);
        types[i] = text.to_string();
    }
    warnings
}

/// Whether a MySQL column type holds characters (and so takes a collation).
fn is_character(sql_type: &str) -> bool {
    let t = sql_type.trim().to_ascii_lowercase();
    ["varchar", "char", "tinytext", "text", "mediumtext", "longtext", "enum", "set"]
        .iter()
        .any(|p| t.starts_with(p))
}

/// The ` COLLATE …` of a created column, from the source column's collation:
/// PostgreSQL's `C`/`POSIX` compare bytes (`utf8mb4_bin`); a MySQL collation
/// is kept in its utf8mb4 form. Empty: the table's (the database's) default.
pub(super) fn collate_clause(field: &Field, sql_type: &str) -> String {
    let Some(c) = field.metadata().get(COLLATION) else {
        return String::new();
    };
    if !is_character(sql_type) || sql_type.to_ascii_lowercase().contains("collate") {
        return String::new();
    }
    let c = c.to_ascii_lowercase();
    let chosen = match ColumnMeta::of(field).dialect.as_deref() {
        Some("postgres") if ["c", "posix", "ucs_basic"].contains(&c.as_str()) => "utf8mb4_bin".to_string(),
        Some("mysql") if c.starts_with("utf8mb4_") => c,
        Some("mysql") if c.starts_with("utf8mb3_") || c.starts_with("utf8_") => {
            format!("utf8mb4_{}", c.split_once('_').map_or("", |(_, r)| r))
        }
        Some("mysql") if c.ends_with("_bin") => "utf8mb4_bin".to_string(),
        _ => return String::new(),
    };
    format!(" COLLATE {chosen}")
}

/// The ` DEFAULT …` of a created column of `sql_type`, or why it is dropped.
pub(super) fn default_clause(default: &ColumnDefault, sql_type: &str, server: &Server) -> std::result::Result<String, String> {
    if !server.defaults {
        return Err("the server refused the table with it".into());
    }
    let t = sql_type.trim().to_ascii_lowercase();
    let lob = super::types::is_lob(&t);
    let precision = t
        .split_once('(')
        .and_then(|(_, r)| r.split(')').next())
        .and_then(|p| p.trim().parse::<u8>().ok());
    let need_expressions = |what: &str| {
        if server.expression_defaults {
            Ok(())
        } else {
            Err(format!("{what} needs MySQL 8.0.13 or MariaDB 10.2"))
        }
    };
    let sql = match default {
        ColumnDefault::CurrentTimestamp if t.starts_with("datetime") || t.starts_with("timestamp") => match precision {
            Some(p) if p > 0 => format!("CURRENT_TIMESTAMP({p})"),
            _ => "CURRENT_TIMESTAMP".into(),
        },
        ColumnDefault::CurrentDate | ColumnDefault::CurrentTimestamp if t.starts_with("date") && !t.starts_with("datetime") => {
            need_expressions("an expression default")?;
            "(CURRENT_DATE)".into()
        }
        ColumnDefault::CurrentTimestamp | ColumnDefault::CurrentDate => {
            return Err(format!("MySQL takes {} only on date and time columns, not {sql_type}", default.describe()));
        }
        _ if t == "json" || t.ends_with("blob") || t.starts_with("geometry") => {
            return Err(format!("MySQL keeps no constant default on a {sql_type} column"));
        }
        ColumnDefault::Number(n) if lob => {
            need_expressions("a default on a text column")?;
            format!("('{n}')")
        }
        ColumnDefault::Number(n) => n.clone(),
        ColumnDefault::Boolean(b) => (if *b { "1" } else { "0" }).into(),
        ColumnDefault::Text(s) if lob => {
            need_expressions("a default on a text column")?;
            format!("({})", sql_string(s))
        }
        ColumnDefault::Text(s) => sql_string(s),
        ColumnDefault::Expression { dialect, sql } if dialect == "mysql" => {
            need_expressions("an expression default")?;
            format!("({sql})")
        }
        ColumnDefault::Expression { dialect, .. } => {
            return Err(format!("a {dialect} expression MySQL does not share"));
        }
    };
    Ok(format!(" DEFAULT {sql}"))
}

/// ` ON UPDATE CURRENT_TIMESTAMP(p)` when the source sets the column on update.
pub(super) fn on_update_clause(field: &Field, sql_type: &str) -> String {
    let t = sql_type.trim().to_ascii_lowercase();
    if !field.metadata().contains_key(ON_UPDATE) || !(t.starts_with("datetime") || t.starts_with("timestamp")) {
        return String::new();
    }
    match t.split_once('(').and_then(|(_, r)| r.split(')').next()) {
        Some(p) if p.trim() != "0" => format!(" ON UPDATE CURRENT_TIMESTAMP({})", p.trim()),
        _ => " ON UPDATE CURRENT_TIMESTAMP".into(),
    }
}

/// The column that becomes `AUTO_INCREMENT`: the first integer column the
/// source fills from a sequence, identity or `AUTO_INCREMENT` (MySQL allows
/// one per table).
pub(super) fn auto_increment(schema: &arrow::datatypes::Schema, meta: Option<&TableMeta>) -> Option<String> {
    let meta = meta?;
    meta.serial_columns
        .iter()
        .find(|c| schema.field_with_name(c).is_ok_and(|f| f.data_type().is_integer()))
        .cloned()
}

/// Moves the `AUTO_INCREMENT` counter of `table` past the largest value of
/// `column`, so the next row the application inserts gets a new number.
pub(super) async fn advance_auto_increment(conn: &mut Conn, location: &str, table: &str, column: &str) -> Result<()> {
    let max = rows(
        conn,
        location,
        &format!("SELECT MAX({}) FROM {}", quote_ident(column), quote_ident(table)),
    )
    .await?
    .first()
    .and_then(|r| text(r, 0))
    .and_then(|v| v.parse::<i128>().ok());
    if let Some(max) = max.filter(|m| *m >= 0) {
        conn.query_drop(format!("ALTER TABLE {} AUTO_INCREMENT = {}", quote_ident(table), max + 1))
            .await
            .map_err(|e| db_error(location, e))?;
    }
    Ok(())
}

/// Where foreign keys wait for the tables they reference.
const FOREIGN_KEY_TABLE: &str = "CREATE TABLE IF NOT EXISTS _sluice_foreign_keys (
    pipeline varchar(191) NOT NULL,
    job bigint NOT NULL,
    table_name varchar(191) NOT NULL,
    name varchar(191) NOT NULL,
    statement text NOT NULL,
    refs varchar(191) NOT NULL,
    PRIMARY KEY (pipeline, table_name, name)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin";

/// A foreign key as the sink will add it.
#[derive(Debug, Clone)]
pub(super) struct PendingFk {
    pub name: String,
    pub statement: String,
    pub references: String,
}

/// The foreign keys of `table` (a stream's table, its referenced tables
/// named by `table_for`), as statements.
pub(super) fn foreign_keys(
    table: &str,
    fks: &[ForeignKeyMeta],
    table_for: impl Fn(&str) -> String,
) -> Vec<PendingFk> {
    fks.iter()
        .map(|fk| {
            let references = table_for(&fk.ref_table);
            let name = constraint_name(table, &fk.columns);
            let list = |cols: &[String]| cols.iter().map(|c| quote_ident(c)).collect::<Vec<_>>().join(", ");
            // InnoDB refuses SET DEFAULT: the key keeps MySQL's default
            // (the referenced row cannot go), and says so.
            let mut fk = fk.clone();
            for (what, action) in [("ON DELETE", &mut fk.on_delete), ("ON UPDATE", &mut fk.on_update)] {
                if action.as_deref() == Some("SET DEFAULT") {
                    tracing::warn!(
                        table,
                        foreign_key = %name,
                        "{what} SET DEFAULT dropped: MySQL's InnoDB does not support it"
                    );
                    *action = None;
                }
            }
            PendingFk {
                statement: format!(
                    "ALTER TABLE {} ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {} ({}){}",
                    quote_ident(table),
                    quote_ident(&name),
                    list(&fk.columns),
                    quote_ident(&references),
                    list(&fk.ref_columns),
                    fk.actions_sql()
                ),
                name,
                references,
            }
        })
        .collect()
}

/// `orders_customer_id_fkey`, at most 64 bytes (MySQL's limit; constraint
/// names are unique per database).
fn constraint_name(table: &str, columns: &[String]) -> String {
    crate::identifiers::object_name(table, columns, "fkey", 64)
}

/// Records the foreign keys of a completed `table` for the job, then adds
/// every one the job recorded whose referenced table exists, forgetting it
/// once added (or refused: the warning names the statement to run by hand).
pub(super) async fn settle_foreign_keys(
    conn: &mut Conn,
    location: &str,
    pipeline: &str,
    job: i64,
    table: &str,
    own: &[PendingFk],
) -> Result<()> {
    let db = |e| db_error(location, e);
    let have = !rows(
        conn,
        location,
        "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '_sluice_foreign_keys'",
    )
    .await?
    .is_empty();
    if !have && own.is_empty() {
        return Ok(());
    }
    if !have {
        conn.query_drop(FOREIGN_KEY_TABLE).await.map_err(db)?;
    }
    for fk in own {
        conn.exec_drop(
            "INSERT INTO _sluice_foreign_keys (pipeline, job, table_name, name, statement, refs) VALUES (?, ?, ?, ?, ?, ?) \
             ON DUPLICATE KEY UPDATE job = VALUES(job), statement = VALUES(statement), refs = VALUES(refs)",
            (pipeline, job, table, &fk.name, &fk.statement, &fk.references),
        )
        .await
        .map_err(db)?;
    }
    let pending: Vec<(String, String, String, i64, i64)> = conn
        .exec(
            "SELECT f.table_name, f.name, f.statement, \
             EXISTS (SELECT 1 FROM information_schema.TABLES t WHERE t.TABLE_SCHEMA = DATABASE() \
                     AND t.TABLE_NAME = f.refs), \
             EXISTS (SELECT 1 FROM information_schema.TABLE_CONSTRAINTS c WHERE c.CONSTRAINT_SCHEMA = DATABASE() \
                     AND c.TABLE_NAME = f.table_name AND c.CONSTRAINT_NAME = f.name \
                     AND c.CONSTRAINT_TYPE = 'FOREIGN KEY') \
             FROM _sluice_foreign_keys f WHERE f.pipeline = ? AND f.job = ? ORDER BY f.table_name, f.name",
            (pipeline, job),
        )
        .await
        .map_err(db)?;
    for (on, name, statement, ready, present) in pending {
        if ready == 0 && present == 0 {
            tracing::debug!(constraint = %name, table = %on, "foreign key waits for its table");
            continue;
        }
        if present == 0
            && let Err(e) = conn.query_drop(statement.as_str()).await
        {
            tracing::warn!(statement = %statement, error = %db_error(location, e), "foreign key not added");
        }
        conn.exec_drop(
            "DELETE FROM _sluice_foreign_keys WHERE pipeline = ? AND table_name = ? AND name = ?",
            (pipeline, &on, &name),
        )
        .await
        .map_err(db)?;
    }
    Ok(())
}

/// Views, triggers, routines and events of database `db` when it is read
/// `whole`; otherwise (chosen tables) only the triggers of `tables`.
pub(super) async fn not_copied(
    conn: &mut Conn,
    location: &str,
    db: &str,
    tables: &[String],
    whole: bool,
) -> Result<Vec<NotCopied>> {
    let db = sql_string(db);
    let mut out = Vec::new();
    let mut kind = |kind: &str, names: Vec<String>| {
        if !names.is_empty() {
            out.push(NotCopied {
                kind: kind.to_string(),
                names,
            });
        }
    };
    let names = |found: Vec<mysql_async::Row>| found.iter().filter_map(|r| text(r, 0)).collect::<Vec<_>>();
    if whole {
        let views = rows(
            conn,
            location,
            &format!("SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = {db} ORDER BY 1"),
        )
        .await?;
        kind("views", names(views));
    }
    let triggers = rows(
        conn,
        location,
        &format!(
            "SELECT CONCAT(EVENT_OBJECT_TABLE, '.', TRIGGER_NAME), EVENT_OBJECT_TABLE FROM information_schema.TRIGGERS \
             WHERE TRIGGER_SCHEMA = {db} ORDER BY 1"
        ),
    )
    .await?;
    let triggers = triggers
        .iter()
        .filter(|r| whole || text(r, 1).is_some_and(|t| tables.contains(&t)))
        .filter_map(|r| text(r, 0))
        .collect();
    kind("triggers", triggers);
    if whole {
        for (routine, plural) in [("FUNCTION", "functions"), ("PROCEDURE", "procedures")] {
            let found = rows(
                conn,
                location,
                &format!(
                    "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = {db} \
                     AND ROUTINE_TYPE = '{routine}' ORDER BY 1"
                ),
            )
            .await?;
            kind(plural, names(found));
        }
        // Servers with the event scheduler compiled out have no rows here.
        let events = rows(
            conn,
            location,
            &format!("SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = {db} ORDER BY 1"),
        )
        .await
        .unwrap_or_default();
        kind("events", names(events));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_and_mariadb_defaults_read_the_same() {
        use ColumnDefault::*;
        assert_eq!(parse_default(Some("current_timestamp()"), "", true), Some(CurrentTimestamp));
        assert_eq!(
            parse_default(Some("CURRENT_TIMESTAMP(6)"), "DEFAULT_GENERATED", false),
            Some(CurrentTimestamp)
        );
        assert_eq!(parse_default(Some("'it''s'"), "", true), Some(Text("it's".into())));
        assert_eq!(parse_default(Some("it's"), "", false), Some(Text("it's".into())));
        assert_eq!(parse_default(Some("4.99"), "", true), Some(Number("4.99".into())));
        assert_eq!(parse_default(Some("NULL"), "", true), None);
        assert_eq!(parse_default(None, "", false), None);
        assert_eq!(parse_default(Some("curdate()"), "", true), Some(CurrentDate));
        assert!(matches!(parse_default(Some("uuid()"), "", true), Some(Expression { .. })));
    }

    #[test]
    fn defaults_render_for_mysql_columns_or_say_why_not() {
        let new = Server {
            expression_defaults: true,
            collation: None,
            defaults: true,
        };
        let old = Server {
            defaults: true,
            ..Server::default()
        };
        let d = |v: &ColumnDefault, t: &str, s: &Server| default_clause(v, t, s);
        assert_eq!(
            d(&ColumnDefault::CurrentTimestamp, "datetime(6)", &old).unwrap(),
            " DEFAULT CURRENT_TIMESTAMP(6)"
        );
        assert_eq!(d(&ColumnDefault::CurrentDate, "date", &new).unwrap(), " DEFAULT (CURRENT_DATE)");
        assert!(d(&ColumnDefault::CurrentDate, "date", &old).unwrap_err().contains("MariaDB 10.2"));
        assert_eq!(d(&ColumnDefault::Text("G".into()), "enum('G','PG')", &old).unwrap(), " DEFAULT 'G'");
        assert_eq!(d(&ColumnDefault::Text("x".into()), "longtext", &new).unwrap(), " DEFAULT ('x')");
        assert_eq!(d(&ColumnDefault::Boolean(true), "tinyint(1)", &old).unwrap(), " DEFAULT 1");
        let pg = ColumnDefault::Expression {
            dialect: "postgres".into(),
            sql: "gen_random_uuid()".into(),
        };
        assert!(d(&pg, "char(36)", &new).is_err());
        assert!(expression_defaults("10.11.19-MariaDB-0+deb12u1"));
        assert!(!expression_defaults("5.7.44-log"));
        assert!(expression_defaults("8.0.36"));
    }

    #[test]
    fn varchar_lengths_are_kept_until_the_row_is_too_wide() {
        let mut types = vec!["int".to_string(), "varchar(10000)".into(), "varchar(9000)".into(), "varchar(40)".into()];
        let warnings = fit_row("t", &["id", "a", "b", "c"], &mut types, &[true, false, false, false]);
        assert_eq!(types, ["int", "text", "varchar(9000)", "varchar(40)"]);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(text_type(100_000), "mediumtext");
        let pg = |t: &str| {
            Field::new("c", DataType::Utf8, true).with_metadata(
                ColumnMeta {
                    dialect: Some("postgres".into()),
                    db_type: Some(t.into()),
                    semantic: None,
                }
                .to_metadata(),
            )
        };
        assert_eq!(sized_type(&pg("character varying(200)")).as_deref(), Some("varchar(200)"));
        assert_eq!(sized_type(&pg("character(20)")).as_deref(), Some("char(20)"));
        assert_eq!(sized_type(&pg("character(300)")).as_deref(), Some("varchar(300)"));
        assert_eq!(sized_type(&pg("text")), None);
    }
}
