//! `_sluice_checkpoints`: the one table the PostgreSQL, MySQL and SQLite
//! sinks keep their ledger in, and the statements of the protocol over it.
//!
//! # Schema
//!
//! The same columns, with the same meaning, in every database; none is a
//! reserved word in any of them, so no statement quotes them.
//!
//! | column | holds |
//! |---|---|
//! | `pipeline` | the pipeline that wrote the row |
//! | `table_name` | the destination table the row is about, as the sink names it in SQL (schema-qualified and quoted in PostgreSQL, bare in MySQL and SQLite); positions name the table rows are loaded into (`T__sluice_new` under `replace`), the job record the final table |
//! | `source_partition` | the source partition (file, key range) the position is of; empty for the table's job record |
//! | `source_cursor` | JSON: where reading the partition resumes, committed with the rows it covers; in the job record, the record (`{"created":…,"complete":…}`, see [`JobRecord`]) |
//! | `row_count` | rows the partition produced up to the cursor; 0 in the job record |
//! | `job` | the job that wrote the row |
//! | `updated_at` | when the row last changed |
//!
//! The primary key is (`pipeline`, `table_name`, `source_partition`).
//!
//! # Protocol
//!
//! This module does no I/O. It writes [`Statement`]s (SQL in the database's
//! dialect, with positional parameters) and reads rows handed back as
//! [`Value`]s; each sink runs the statements with its own driver, in its own
//! transactions:
//!
//! 1. *Opening a stream.* The sink lists the table's columns
//!    ([`Dialect::columns`]). When [`changes`] has anything to do (the table
//!    is missing, or has an older layout), the sink takes the layout lock
//!    ([`Dialect::lock`]), lists the columns again (another stream may have
//!    changed them meanwhile), runs what [`changes`] says now and releases
//!    the lock ([`Dialect::unlock`]).
//! 2. It reads [`Checkpoints::ledger`] and gives the rows to
//!    [`Checkpoints::found`], adding whether the table exists and holds rows,
//!    for [`super::decide`].
//! 3. A load that starts runs [`Checkpoints::forget`] and
//!    [`Checkpoints::record`] with the table's creation or truncation (in one
//!    transaction where the database allows DDL in one); a load that goes on
//!    writes its record again.
//! 4. Every batch runs [`Checkpoints::store`] in the batch's transaction, so
//!    its rows and its position commit together.
//! 5. A resumed stream reads [`Checkpoints::committed`] and turns the rows
//!    into positions with [`Checkpoints::positions`].
//! 6. A complete load writes its record marked complete and, after a swap,
//!    [`Checkpoints::forget_load`] (the load table is gone).
//!
//! # Older layouts
//!
//! sluice wrote the table with columns `target`, `partition` (`part` in
//! MySQL, where `partition` is reserved), `cursor` and `rows` before these
//! names. [`changes`] renames them in place, values untouched (one
//! transaction in PostgreSQL and SQLite, one `ALTER TABLE` in MySQL), so a
//! destination written by that version still resumes and its complete loads
//! still count as complete. A layout missing a column altogether is refused
//! with the columns it has.

use sluice_core::{Error, Position, Result};

use super::{Found, JobRecord};

/// The table's name in every database.
pub const TABLE: &str = "_sluice_checkpoints";

/// A value bound to a statement or read back from a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
}

impl Value {
    /// The value as an integer; text that spells one counts (MySQL's text
    /// protocol returns numbers as text).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Text(s) => s.trim().parse().ok(),
            Value::Null => None,
        }
    }

    /// The value as text; `None` for NULL and numbers.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Text(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Text(s)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}

/// One SQL statement with its parameters, in the dialect's placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub sql: String,
    pub params: Vec<Value>,
}

impl Statement {
    /// A statement without parameters.
    pub fn plain(sql: impl Into<String>) -> Statement {
        Statement {
            sql: sql.into(),
            params: Vec::new(),
        }
    }
}

impl From<String> for Statement {
    fn from(sql: String) -> Self {
        Statement::plain(sql)
    }
}

/// What a column holds; each dialect gives it a type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text in the primary key, at most this many characters (MySQL needs
    /// a length to index it).
    Key(u16),
    /// Text of any length.
    Text,
    /// A 64-bit integer.
    Int,
    /// A point in time.
    Time,
}

/// One column of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
    /// Names earlier versions of sluice gave the column.
    pub formerly: &'static [&'static str],
}

/// The table's columns, in order (see the module documentation).
pub const COLUMNS: [Column; 7] = [
    column("pipeline", Kind::Key(190), &[]),
    column("table_name", Kind::Key(255), &["target"]),
    column("source_partition", Kind::Key(255), &["partition", "part"]),
    column("source_cursor", Kind::Text, &["cursor"]),
    column("row_count", Kind::Int, &["rows"]),
    column("job", Kind::Int, &[]),
    column("updated_at", Kind::Time, &[]),
];

/// One entry of [`COLUMNS`].
const fn column(name: &'static str, kind: Kind, formerly: &'static [&'static str]) -> Column {
    Column { name, kind, formerly }
}

/// The primary key.
const KEY: [&str; 3] = ["pipeline", "table_name", "source_partition"];

/// What differs between databases: placeholders, quoting, types, upserts,
/// reading the table's layout and serializing changes to it.
pub trait Dialect {
    /// The checkpoint table as statements name it.
    fn table(&self) -> String;

    /// Parameter `n`, counted from 1.
    fn param(&self, n: usize) -> String;

    /// An identifier, quoted.
    fn quote(&self, name: &str) -> String {
        format!("\"{}\"", name.replace('"', "\"\""))
    }

    /// The SQL type of a column of `kind`.
    fn column_type(&self, kind: Kind) -> String;

    /// Now, as `updated_at` takes it.
    fn now(&self) -> &'static str;

    /// Now, as a column's `DEFAULT` takes it.
    fn default_now(&self) -> String {
        format!("({})", self.now())
    }

    /// What follows the column list of `CREATE TABLE`.
    fn table_options(&self) -> &'static str {
        ""
    }

    /// What follows `INSERT … VALUES (…)` to update the row holding the same
    /// `key` instead, up to the list of assignments.
    fn on_conflict(&self, key: &[&str]) -> String {
        format!("ON CONFLICT ({}) DO UPDATE SET", key.join(", "))
    }

    /// The value `column` has in the row the `INSERT` tried to add, in an
    /// assignment after [`Dialect::on_conflict`].
    fn inserted(&self, column: &str) -> String {
        format!("excluded.{column}")
    }

    /// Lists the names of the table's columns, one row each, in the first
    /// column; no rows when the table does not exist.
    fn columns(&self) -> Statement;

    /// Renames columns, keeping their values: `(old name, column)`.
    fn rename(&self, renames: &[(&str, &Column)]) -> Vec<Statement> {
        renames
            .iter()
            .map(|(old, c)| {
                Statement::plain(format!(
                    "ALTER TABLE {} RENAME COLUMN {} TO {}",
                    self.table(),
                    self.quote(old),
                    c.name
                ))
            })
            .collect()
    }

    /// Makes this session the only one changing the table's layout until
    /// [`Dialect::unlock`].
    fn lock(&self) -> Vec<Statement>;

    /// Ends [`Dialect::lock`] (committing what was done under it).
    fn unlock(&self) -> Vec<Statement>;
}

/// PostgreSQL: the table lives in the sink's schema.
#[derive(Debug, Clone)]
pub struct Postgres {
    pub schema: String,
}

impl Dialect for Postgres {
    fn table(&self) -> String {
        format!("{}.{}", self.quote(&self.schema), self.quote(TABLE))
    }

    fn param(&self, n: usize) -> String {
        format!("${n}")
    }

    fn column_type(&self, kind: Kind) -> String {
        match kind {
            Kind::Key(_) | Kind::Text => "text",
            Kind::Int => "bigint",
            Kind::Time => "timestamptz",
        }
        .into()
    }

    fn now(&self) -> &'static str {
        "now()"
    }

    fn columns(&self) -> Statement {
        Statement {
            sql: "SELECT attname::text FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 \
                  AND NOT attisdropped"
                .into(),
            params: vec![self.table().into()],
        }
    }

    fn lock(&self) -> Vec<Statement> {
        // A transaction-scoped advisory lock: DDL is transactional here, so
        // the changes and the lock end together at COMMIT.
        vec![
            Statement::plain("BEGIN"),
            Statement::plain("SELECT pg_advisory_xact_lock(hashtext('sluice: _sluice_checkpoints layout'))"),
        ]
    }

    fn unlock(&self) -> Vec<Statement> {
        vec![Statement::plain("COMMIT")]
    }
}

/// MySQL and MariaDB: the table lives in the connection's database.
#[derive(Debug, Clone, Copy)]
pub struct Mysql;

/// The name of the MySQL lock serializing layout changes (server-wide).
const MYSQL_LOCK: &str = "'sluice_checkpoints_layout'";

impl Dialect for Mysql {
    fn table(&self) -> String {
        TABLE.into()
    }

    fn param(&self, _n: usize) -> String {
        "?".into()
    }

    fn quote(&self, name: &str) -> String {
        format!("`{}`", name.replace('`', "``"))
    }

    fn column_type(&self, kind: Kind) -> String {
        match kind {
            Kind::Key(chars) => format!("VARCHAR({chars})"),
            Kind::Text => "TEXT".into(),
            Kind::Int => "BIGINT".into(),
            Kind::Time => "TIMESTAMP(3)".into(),
        }
    }

    fn now(&self) -> &'static str {
        "CURRENT_TIMESTAMP(3)"
    }

    fn default_now(&self) -> String {
        // Older servers take no expression in parentheses here.
        self.now().into()
    }

    fn table_options(&self) -> &'static str {
        " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
    }

    fn on_conflict(&self, _key: &[&str]) -> String {
        "ON DUPLICATE KEY UPDATE".into()
    }

    fn inserted(&self, column: &str) -> String {
        format!("VALUES({column})")
    }

    fn columns(&self) -> Statement {
        Statement::plain(format!(
            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '{TABLE}'"
        ))
    }

    fn rename(&self, renames: &[(&str, &Column)]) -> Vec<Statement> {
        // One statement, so the change is whole or absent (DDL commits on
        // its own here); CHANGE works on every MySQL and MariaDB version.
        let changes: Vec<String> = renames
            .iter()
            .map(|(old, c)| {
                format!(
                    "CHANGE {} {} {} NOT NULL",
                    self.quote(old),
                    c.name,
                    self.column_type(c.kind)
                )
            })
            .collect();
        vec![Statement::plain(format!(
            "ALTER TABLE {} {}",
            self.table(),
            changes.join(", ")
        ))]
    }

    fn lock(&self) -> Vec<Statement> {
        vec![Statement::plain(format!("SELECT GET_LOCK({MYSQL_LOCK}, 60)"))]
    }

    fn unlock(&self) -> Vec<Statement> {
        vec![Statement::plain(format!("SELECT RELEASE_LOCK({MYSQL_LOCK})"))]
    }
}

/// SQLite: the table lives in the database file.
#[derive(Debug, Clone, Copy)]
pub struct Sqlite;

impl Dialect for Sqlite {
    fn table(&self) -> String {
        TABLE.into()
    }

    fn param(&self, n: usize) -> String {
        format!("?{n}")
    }

    fn column_type(&self, kind: Kind) -> String {
        match kind {
            Kind::Key(_) | Kind::Text | Kind::Time => "TEXT",
            Kind::Int => "INTEGER",
        }
        .into()
    }

    fn now(&self) -> &'static str {
        "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
    }

    fn columns(&self) -> Statement {
        Statement::plain(format!("SELECT name FROM pragma_table_info('{TABLE}')"))
    }

    fn lock(&self) -> Vec<Statement> {
        // The write lock of the database file, taken at once.
        vec![Statement::plain("BEGIN IMMEDIATE")]
    }

    fn unlock(&self) -> Vec<Statement> {
        vec![Statement::plain("COMMIT")]
    }
}

/// `CREATE TABLE IF NOT EXISTS` for the table.
pub fn create(dialect: &dyn Dialect) -> Statement {
    let columns: Vec<String> = COLUMNS
        .iter()
        .map(|c| {
            let default = match c.kind {
                Kind::Time => format!(" DEFAULT {}", dialect.default_now()),
                _ => String::new(),
            };
            format!("{} {} NOT NULL{default}", c.name, dialect.column_type(c.kind))
        })
        .collect();
    Statement::plain(format!(
        "CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY ({})){}",
        dialect.table(),
        columns.join(", "),
        KEY.join(", "),
        dialect.table_options()
    ))
}

/// What brings the table to this layout, given the rows of
/// [`Dialect::columns`]: nothing when it has it, its creation when it is
/// missing, renames when it has an older one. `location` names the
/// database in the error about a layout this version does not know.
pub fn changes(dialect: &dyn Dialect, columns: &[Vec<Value>], location: &str) -> Result<Vec<Statement>> {
    let names: Vec<String> = columns
        .iter()
        .filter_map(|r| r.first()?.as_text().map(str::to_ascii_lowercase))
        .collect();
    if names.is_empty() {
        return Ok(vec![create(dialect)]);
    }
    let has = |name: &str| names.iter().any(|n| n == name);
    let mut renames = Vec::new();
    let mut missing = Vec::new();
    for c in &COLUMNS {
        if has(c.name) {
            continue;
        }
        match c.formerly.iter().find(|old| has(old)) {
            Some(old) => renames.push((*old, c)),
            None => missing.push(c.name),
        }
    }
    if !missing.is_empty() {
        return Err(Error::config(
            "sinks",
            format!(
                "{location}: table {TABLE} has the columns {} and lacks {}: it was written by another version of \
                 sluice. Rename it (ALTER TABLE {TABLE} RENAME TO {TABLE}_old) and run again; tables loaded before \
                 then count as written by someone else (set mode = \"append\" or \"replace\" to write them again)",
                names.join(", "),
                missing.join(", ")
            ),
        ));
    }
    if renames.is_empty() {
        return Ok(Vec::new());
    }
    tracing::info!(
        location,
        "renaming the columns of {TABLE} written by an earlier version of sluice"
    );
    Ok(dialect.rename(&renames))
}

/// The ledger of one stream's table in one destination: the statements a
/// sink runs and how it reads their rows (see the module documentation).
#[derive(Debug, Clone)]
pub struct Checkpoints<D> {
    dialect: D,
    pipeline: String,
    /// The table the stream ends up in (keys the job record).
    table: String,
    /// The table rows are loaded into (keys the positions).
    load: String,
    /// The job writing.
    job: i64,
}

impl<D: Dialect> Checkpoints<D> {
    /// The ledger of `pipeline`'s job `job` loading `table` through `load`
    /// (the same table unless a new one is swapped in at the end), both as
    /// the sink names them in SQL.
    pub fn new(dialect: D, pipeline: &str, job: i64, table: &str, load: &str) -> Self {
        Checkpoints {
            dialect,
            pipeline: pipeline.into(),
            table: table.into(),
            load: load.into(),
            job,
        }
    }

    /// `p1, p2, …` for parameters `first..first + n`.
    fn params(&self, first: usize, n: usize) -> String {
        (first..first + n)
            .map(|i| self.dialect.param(i))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The insert of one row of all columns but `updated_at`, `values` in
    /// SQL, updating `set` (and `updated_at`) when the row exists.
    fn upsert(&self, values: &str, set: &[&str]) -> String {
        let mut assignments: Vec<String> = set
            .iter()
            .map(|c| format!("{c} = {}", self.dialect.inserted(c)))
            .collect();
        assignments.push(format!("updated_at = {}", self.dialect.now()));
        format!(
            "INSERT INTO {} (pipeline, table_name, source_partition, source_cursor, row_count, job) VALUES ({values}) \
             {} {}",
            self.dialect.table(),
            self.dialect.on_conflict(&KEY),
            assignments.join(", ")
        )
    }

    /// Reads what [`Checkpoints::found`] needs: per pipeline, table and job,
    /// whether it holds positions, and the job records.
    pub fn ledger(&self) -> Statement {
        Statement {
            sql: format!(
                "SELECT DISTINCT pipeline, table_name, job, \
                 CASE WHEN source_partition = '' THEN source_cursor END \
                 FROM {} WHERE table_name IN ({})",
                self.dialect.table(),
                self.params(1, 2)
            ),
            params: vec![self.table.as_str().into(), self.load.as_str().into()],
        }
    }

    /// What the rows of [`Checkpoints::ledger`] say for [`super::decide`];
    /// whether the table exists and holds rows is for the sink to add.
    pub fn found(&self, rows: &[Vec<Value>]) -> Result<Found> {
        let mut found = Found::default();
        for row in rows {
            let (Some(pipeline), Some(table), Some(job), Some(record)) = (
                row.first().and_then(Value::as_text),
                row.get(1).and_then(Value::as_text),
                row.get(2).and_then(Value::as_int),
                row.get(3),
            ) else {
                return Err(self.malformed(row));
            };
            if pipeline != self.pipeline {
                if !found.other_pipelines.iter().any(|p| p == pipeline) {
                    found.other_pipelines.push(pipeline.to_string());
                }
                continue;
            }
            match record.as_text() {
                Some(cursor) if table == self.table => found.record = Some(JobRecord::parse(job, cursor)),
                None if table == self.load && !found.position_jobs.contains(&job) => found.position_jobs.push(job),
                _ => {}
            }
        }
        found.other_pipelines.sort();
        found.position_jobs.sort_unstable();
        Ok(found)
    }

    /// Deletes the pipeline's record and positions of the table and of its
    /// load table: a load starting over.
    pub fn forget(&self) -> Statement {
        Statement {
            sql: format!(
                "DELETE FROM {} WHERE pipeline = {} AND table_name IN ({})",
                self.dialect.table(),
                self.dialect.param(1),
                self.params(2, 2)
            ),
            params: vec![
                self.pipeline.as_str().into(),
                self.table.as_str().into(),
                self.load.as_str().into(),
            ],
        }
    }

    /// Deletes the positions of the load table, gone once swapped in.
    pub fn forget_load(&self) -> Statement {
        Statement {
            sql: format!(
                "DELETE FROM {} WHERE pipeline = {} AND table_name = {}",
                self.dialect.table(),
                self.dialect.param(1),
                self.dialect.param(2)
            ),
            params: vec![self.pipeline.as_str().into(), self.load.as_str().into()],
        }
    }

    /// Stores the table's job record.
    pub fn record(&self, record: &JobRecord) -> Statement {
        let values = format!(
            "{}, {}, '', {}, 0, {}",
            self.dialect.param(1),
            self.dialect.param(2),
            self.dialect.param(3),
            self.dialect.param(4)
        );
        Statement {
            sql: self.upsert(&values, &["source_cursor", "job"]),
            params: vec![
                self.pipeline.as_str().into(),
                self.table.as_str().into(),
                record.cursor().into(),
                record.job.into(),
            ],
        }
    }

    /// Stores a batch's position, to run in the batch's transaction.
    pub fn store(&self, position: &Position) -> Statement {
        Statement {
            sql: self.upsert(&self.params(1, 6), &["source_cursor", "row_count", "job"]),
            params: vec![
                self.pipeline.as_str().into(),
                self.load.as_str().into(),
                (*position.partition).into(),
                position.cursor.to_string().into(),
                i64::try_from(position.rows).unwrap_or(i64::MAX).into(),
                self.job.into(),
            ],
        }
    }

    /// Reads the positions the job committed.
    pub fn committed(&self) -> Statement {
        Statement {
            sql: format!(
                "SELECT source_partition, source_cursor, row_count FROM {} \
                 WHERE pipeline = {} AND table_name = {} AND job = {} AND source_partition <> ''",
                self.dialect.table(),
                self.dialect.param(1),
                self.dialect.param(2),
                self.dialect.param(3)
            ),
            params: vec![
                self.pipeline.as_str().into(),
                self.load.as_str().into(),
                self.job.into(),
            ],
        }
    }

    /// The positions in the rows of [`Checkpoints::committed`].
    pub fn positions(&self, rows: &[Vec<Value>]) -> Result<Vec<Position>> {
        rows.iter()
            .map(
                |row| match (row.first(), row.get(1), row.get(2).and_then(Value::as_int)) {
                    (Some(Value::Text(partition)), Some(Value::Text(cursor)), Some(count)) => Ok(Position::stored(
                        partition,
                        cursor.clone(),
                        u64::try_from(count).unwrap_or(0),
                    )),
                    _ => Err(self.malformed(row)),
                },
            )
            .collect()
    }

    /// A row that does not have the table's types (edited by hand?).
    fn malformed(&self, row: &[Value]) -> Error {
        Error::data(
            format!("{TABLE} of {}", self.table),
            format!(
                "a row of pipeline `{}` reads as {row:?}; correct or delete it",
                self.pipeline
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<Vec<Value>> {
        list.iter().map(|n| vec![Value::from(*n)]).collect()
    }

    const MAIN_PG: [&str; 7] = ["pipeline", "target", "partition", "cursor", "rows", "job", "updated_at"];
    const MAIN_MYSQL: [&str; 7] = ["pipeline", "target", "part", "cursor", "rows", "job", "updated_at"];

    #[test]
    fn a_missing_table_is_created_and_a_current_one_left_alone() {
        let create = changes(&Sqlite, &[], "db").unwrap();
        assert_eq!(create.len(), 1);
        assert!(
            create[0]
                .sql
                .starts_with("CREATE TABLE IF NOT EXISTS _sluice_checkpoints (pipeline TEXT NOT NULL")
        );
        let current: Vec<&str> = COLUMNS.iter().map(|c| c.name).collect();
        for d in [&Sqlite as &dyn Dialect, &Mysql, &Postgres { schema: "s".into() }] {
            assert!(changes(d, &names(&current), "db").unwrap().is_empty());
        }
    }

    #[test]
    fn older_layouts_are_renamed_in_place() {
        let pg = changes(&Postgres { schema: "s".into() }, &names(&MAIN_PG), "db").unwrap();
        let sql: Vec<&str> = pg.iter().map(|s| s.sql.as_str()).collect();
        assert_eq!(
            sql,
            [
                r#"ALTER TABLE "s"."_sluice_checkpoints" RENAME COLUMN "target" TO table_name"#,
                r#"ALTER TABLE "s"."_sluice_checkpoints" RENAME COLUMN "partition" TO source_partition"#,
                r#"ALTER TABLE "s"."_sluice_checkpoints" RENAME COLUMN "cursor" TO source_cursor"#,
                r#"ALTER TABLE "s"."_sluice_checkpoints" RENAME COLUMN "rows" TO row_count"#,
            ]
        );
        let my = changes(&Mysql, &names(&MAIN_MYSQL), "db").unwrap();
        assert_eq!(
            my,
            [Statement::plain(
                "ALTER TABLE _sluice_checkpoints CHANGE `target` table_name VARCHAR(255) NOT NULL, \
                 CHANGE `part` source_partition VARCHAR(255) NOT NULL, CHANGE `cursor` source_cursor TEXT NOT NULL, \
                 CHANGE `rows` row_count BIGINT NOT NULL"
            )]
        );
    }

    #[test]
    fn a_layout_missing_a_column_is_refused_naming_what_it_has() {
        let e = changes(
            &Mysql,
            &names(&["pipeline", "target", "part", "cursor", "rows"]),
            "mysql://h/db",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("mysql://h/db") && e.contains("lacks job, updated_at") && e.contains("RENAME TO"),
            "{e}"
        );
    }

    #[test]
    fn statements_use_each_dialects_placeholders_and_upserts() {
        let p = Position::stored("a.csv", r#"{"offset":10}"#.into(), 3);
        let pg = Checkpoints::new(
            Postgres {
                schema: "public".into(),
            },
            "p",
            7,
            "t",
            "t",
        );
        let s = pg.store(&p);
        assert!(
            s.sql.contains(
                "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (pipeline, table_name, source_partition) \
                 DO UPDATE SET source_cursor = excluded.source_cursor, row_count = excluded.row_count, \
                 job = excluded.job, updated_at = now()"
            ),
            "{}",
            s.sql
        );
        assert_eq!(
            s.params,
            [
                Value::from("p"),
                "t".into(),
                "a.csv".into(),
                r#"{"offset":10}"#.into(),
                3.into(),
                7.into()
            ]
        );
        let my = Checkpoints::new(Mysql, "p", 7, "t", "t").record(&JobRecord {
            job: 7,
            created: true,
            complete: false,
        });
        assert!(
            my.sql.ends_with(
                "VALUES (?, ?, '', ?, 0, ?) ON DUPLICATE KEY UPDATE source_cursor = VALUES(source_cursor), \
                 job = VALUES(job), updated_at = CURRENT_TIMESTAMP(3)"
            ),
            "{}",
            my.sql
        );
        let lite = Checkpoints::new(Sqlite, "p", 7, "t", "t__sluice_new").forget();
        assert!(lite.sql.ends_with("WHERE pipeline = ?1 AND table_name IN (?2, ?3)"));
        assert_eq!(lite.params, [Value::from("p"), "t".into(), "t__sluice_new".into()]);
    }

    #[test]
    fn the_ledger_rows_say_the_record_the_jobs_with_positions_and_other_pipelines() {
        let cp = Checkpoints::new(Sqlite, "p", 9, "t", "t__sluice_new");
        let row = |p: &str, t: &str, job: i64, record: Option<&str>| {
            vec![
                Value::from(p),
                Value::from(t),
                // MySQL's text protocol: numbers as text.
                Value::Text(job.to_string()),
                record.map_or(Value::Null, Value::from),
            ]
        };
        let found = cp
            .found(&[
                row("p", "t", 8, Some(r#"{"created":true,"complete":true}"#)),
                row("p", "t__sluice_new", 9, None),
                row("p", "t__sluice_new", 8, None),
                // Positions of the final table are not the load table's.
                row("p", "t", 5, None),
                row("q", "t", 1, None),
                row("q", "t", 2, Some("{}")),
            ])
            .unwrap();
        assert_eq!(
            found.record,
            Some(JobRecord {
                job: 8,
                created: true,
                complete: true
            })
        );
        assert_eq!(found.position_jobs, [8, 9]);
        assert_eq!(found.other_pipelines, ["q"]);
        assert!(cp.found(&[vec![Value::Null]]).is_err());
    }

    #[test]
    fn committed_rows_read_back_as_positions() {
        let cp = Checkpoints::new(Mysql, "p", 1, "t", "t");
        let rows = vec![vec![
            Value::from("a.csv"),
            Value::from(r#"{"offset":10}"#),
            Value::Text("4".into()),
        ]];
        assert_eq!(
            cp.positions(&rows).unwrap(),
            [Position::stored("a.csv", r#"{"offset":10}"#.into(), 4)]
        );
        let e = cp.positions(&[vec![Value::from("a.csv")]]).unwrap_err().to_string();
        assert!(
            e.contains("_sluice_checkpoints of t") && e.contains("correct or delete"),
            "{e}"
        );
    }
}
