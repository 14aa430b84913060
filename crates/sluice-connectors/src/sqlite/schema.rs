//! The layout of a SQLite table, as database sinks need it to rebuild the
//! table: column types and `NOT NULL` (field metadata), primary key,
//! indexes, foreign keys and the `AUTOINCREMENT` column ([`TableMeta`]).
//!
//! Read from `PRAGMA table_xinfo`, `index_list`, `index_info` and
//! `foreign_key_list`; `AUTOINCREMENT` from `sqlite_sequence` and the table's
//! `CREATE TABLE` text. What a destination cannot rebuild as SQLite has it
//! (partial and expression indexes) is left out with a warning.

use arrow::datatypes::Field;
use rusqlite::Connection;
use sluice_core::dbmeta::{ColumnMeta, ForeignKeyMeta, IndexMeta, TableMeta};

use super::quote_ident;
use super::values::arrow_type;

/// Dialect name recorded in field and table metadata.
pub(super) const DIALECT: &str = "sqlite";

/// Most bytes of an index name MySQL accepts.
const MAX_INDEX_NAME: usize = 64;

/// One table, described.
pub(super) struct TableLayout {
    /// The columns `SELECT *` returns, in order.
    pub columns: Vec<String>,
    pub fields: Vec<Field>,
    pub meta: TableMeta,
    /// A name the table's rowid can be selected by, when it has one that no
    /// column hides (`WITHOUT ROWID` tables have none).
    pub rowid: Option<&'static str>,
}

type Res<T> = std::result::Result<T, rusqlite::Error>;

/// Describes `table`; `rows` is its row count when known.
pub(super) fn describe(conn: &Connection, table: &str, rows: Option<u64>) -> Res<TableLayout> {
    let t = quote_ident(table);
    // cid, name, type, notnull, dflt_value, pk, hidden (1: a virtual table's hidden column).
    let mut stmt = conn.prepare(&format!("PRAGMA table_xinfo({t})"))?;
    let cols: Vec<(String, Option<String>, bool, i64, i64)> = stmt
        .query_map([], |r| Ok((r.get(1)?, r.get(2)?, r.get::<_, i64>(3)? != 0, r.get(5)?, r.get(6)?)))?
        .collect::<Res<_>>()?;
    let cols: Vec<_> = cols.into_iter().filter(|c| c.4 != 1).collect();
    let mut pk: Vec<(i64, String)> = cols
        .iter()
        .filter(|c| c.3 > 0)
        .map(|c| (c.3, c.0.clone()))
        .collect();
    pk.sort();
    let primary_key: Vec<String> = pk.into_iter().map(|(_, c)| c).collect();

    let rowid = ["rowid", "_rowid_", "oid"]
        .into_iter()
        .filter(|alias| !cols.iter().any(|c| c.0.eq_ignore_ascii_case(alias)))
        .find(|alias| conn.prepare(&format!("SELECT {alias} FROM {t} LIMIT 0")).is_ok());
    // A single INTEGER PRIMARY KEY of a rowid table is the rowid itself:
    // never NULL, and filled by SQLite when an insert leaves it out.
    let rowid_alias = match primary_key.as_slice() {
        [one] if rowid.is_some() => cols
            .iter()
            .find(|c| c.0 == *one)
            .filter(|c| c.1.as_deref().is_some_and(|d| d.trim().eq_ignore_ascii_case("INTEGER")))
            .map(|c| c.0.clone()),
        _ => None,
    };
    let fields: Vec<Field> = cols
        .iter()
        .map(|(name, decl, notnull, pk, _)| {
            let meta = ColumnMeta {
                dialect: Some(DIALECT.into()),
                db_type: decl.clone().filter(|d| !d.trim().is_empty()),
                semantic: None,
            };
            // Key columns of WITHOUT ROWID tables are NOT NULL too.
            let not_null = *notnull || rowid_alias.as_ref() == Some(name) || (rowid.is_none() && *pk > 0);
            Field::new(name, arrow_type(decl.as_deref()), !not_null).with_metadata(meta.to_metadata())
        })
        .collect();

    let serial_columns = match &rowid_alias {
        Some(c) if autoincrement(conn, table)? => vec![c.clone()],
        _ => Vec::new(),
    };
    let meta = TableMeta {
        dialect: DIALECT.into(),
        schema: "main".into(),
        table: table.to_string(),
        indexes: indexes(conn, table)?,
        foreign_keys: foreign_keys(conn, table)?,
        primary_key,
        serial_columns,
        estimated_rows: rows,
    };
    Ok(TableLayout {
        columns: cols.into_iter().map(|c| c.0).collect(),
        fields,
        meta,
        rowid,
    })
}

/// Whether the table was declared with `AUTOINCREMENT`: it has a row in
/// `sqlite_sequence` (once rows were inserted) or the keyword in its `CREATE TABLE`.
fn autoincrement(conn: &Connection, table: &str) -> Res<bool> {
    let has_sequence: bool = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_sequence'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n > 0)?;
    if has_sequence {
        let n: i64 = conn.query_row("SELECT count(*) FROM sqlite_sequence WHERE name = ?1", [table], |r| {
            r.get(0)
        })?;
        if n > 0 {
            return Ok(true);
        }
    }
    let sql: Option<String> = conn
        .query_row(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [table],
            |r| r.get(0),
        )
        .unwrap_or(None);
    Ok(sql.is_some_and(|s| has_keyword(&s, "AUTOINCREMENT")))
}

/// Whether `word` appears in `sql` as a keyword: not inside a string, a
/// quoted name or a comment.
fn has_keyword(sql: &str, word: &str) -> bool {
    let b = sql.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"' | b'`') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    i += 1;
                }
                i += 1;
            }
            b'[' => {
                while i < b.len() && b[i] != b']' {
                    i += 1;
                }
                i += 1;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 2;
            }
            c if c.is_ascii_alphanumeric() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'$') {
                    i += 1;
                }
                if sql[start..i].eq_ignore_ascii_case(word) {
                    return true;
                }
            }
            _ => i += 1,
        }
    }
    false
}

/// Indexes other than the primary key's, on plain columns, whole-table.
/// A unique index repeating the primary key is kept, as SQLite has it.
fn indexes(conn: &Connection, table: &str) -> Res<Vec<IndexMeta>> {
    // seq, name, unique, origin (c: CREATE INDEX, u: UNIQUE, pk), partial
    let mut stmt = conn.prepare(&format!("PRAGMA index_list({})", quote_ident(table)))?;
    let list: Vec<(String, bool, String, bool)> = stmt
        .query_map([], |r| {
            Ok((
                r.get(1)?,
                r.get::<_, i64>(2)? != 0,
                r.get(3)?,
                r.get::<_, i64>(4)? != 0,
            ))
        })?
        .collect::<Res<_>>()?;
    let mut out = Vec::new();
    for (name, unique, origin, partial) in list {
        if origin == "pk" {
            continue;
        }
        // seqno, cid (-1 rowid, -2 expression), name
        let mut stmt = conn.prepare(&format!("PRAGMA index_info({})", quote_ident(&name)))?;
        let mut cols: Vec<(i64, i64, Option<String>)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Res<_>>()?;
        cols.sort();
        if partial || cols.iter().any(|c| c.1 < 0 || c.2.is_none()) {
            tracing::warn!(
                table,
                index = %name,
                "index not carried over: it is partial or on expressions; create it by hand in the destination"
            );
            continue;
        }
        let columns: Vec<String> = cols.into_iter().filter_map(|c| c.2).collect();
        let name = if origin == "u" {
            // `sqlite_autoindex_t_1`: a UNIQUE constraint, named the way
            // PostgreSQL names one.
            let mut n = format!("{table}_{}_key", columns.join("_"));
            while n.len() > MAX_INDEX_NAME {
                n.pop();
            }
            n
        } else {
            name
        };
        out.push(IndexMeta { name, columns, unique });
    }
    Ok(out)
}

/// Foreign keys; a reference without columns means the parent's primary key.
fn foreign_keys(conn: &Connection, table: &str) -> Res<Vec<ForeignKeyMeta>> {
    // id, seq, table, from, to, on_update, on_delete, match
    let mut stmt = conn.prepare(&format!("PRAGMA foreign_key_list({})", quote_ident(table)))?;
    type Row = (i64, i64, String, String, Option<String>, String, String);
    let rows: Vec<Row> = stmt
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
        })?
        .collect::<Res<_>>()?;
    let mut ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
    ids.sort();
    ids.dedup();
    let mut out = Vec::new();
    for id in ids {
        let mut parts: Vec<_> = rows.iter().filter(|r| r.0 == id).collect();
        parts.sort_by_key(|r| r.1);
        let ref_table = parts[0].2.clone();
        let columns: Vec<String> = parts.iter().map(|r| r.3.clone()).collect();
        let mut ref_columns: Vec<String> = parts.iter().filter_map(|r| r.4.clone()).collect();
        if ref_columns.len() != columns.len() {
            ref_columns = parent_key(conn, &ref_table)?;
        }
        if ref_columns.len() != columns.len() {
            tracing::warn!(
                table,
                references = %ref_table,
                "foreign key not carried over: the referenced table has no matching primary key"
            );
            continue;
        }
        out.push(ForeignKeyMeta {
            name: format!("{table}_{}_fkey", columns.join("_")),
            columns,
            ref_table,
            ref_columns,
            on_delete: ForeignKeyMeta::action(&parts[0].6),
            on_update: ForeignKeyMeta::action(&parts[0].5),
        });
    }
    Ok(out)
}

/// The primary key columns of `table`, in key order.
fn parent_key(conn: &Connection, table: &str) -> Res<Vec<String>> {
    let mut stmt = conn.prepare(&format!("PRAGMA table_info({})", quote_ident(table)))?;
    let mut pk: Vec<(i64, String)> = stmt
        .query_map([], |r| Ok((r.get(5)?, r.get(1)?)))?
        .collect::<Res<Vec<(i64, String)>>>()?
        .into_iter()
        .filter(|(k, _)| *k > 0)
        .collect();
    pk.sort();
    Ok(pk.into_iter().map(|(_, c)| c).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::DataType;

    #[test]
    fn layout_carries_keys_indexes_foreign_keys_and_autoincrement() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE artist (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE);
             CREATE TABLE album (id INTEGER PRIMARY KEY, artist INTEGER REFERENCES artist, title TEXT,
                                 price NUMERIC(10,2), released DATE, \"autoincrement\" TEXT);
             CREATE INDEX album_title ON album (title);
             CREATE INDEX album_lower ON album (lower(title));
             CREATE INDEX album_partial ON album (price) WHERE price > 0;
             CREATE TABLE tag (album INTEGER NOT NULL, tag TEXT, PRIMARY KEY (album, tag),
                               FOREIGN KEY (album) REFERENCES album (id)) WITHOUT ROWID;",
        )
        .unwrap();
        let artist = describe(&conn, "artist", None).unwrap();
        assert_eq!(artist.meta.primary_key, ["id"]);
        assert_eq!(artist.meta.serial_columns, ["id"]);
        assert!(!artist.fields[0].is_nullable() && !artist.fields[1].is_nullable());
        assert_eq!(
            artist.meta.indexes,
            [IndexMeta {
                name: "artist_name_key".into(),
                columns: vec!["name".into()],
                unique: true
            }]
        );
        assert_eq!(artist.rowid, Some("rowid"));

        let album = describe(&conn, "album", Some(3)).unwrap();
        // No AUTOINCREMENT (a column named so does not count).
        assert!(album.meta.serial_columns.is_empty());
        assert_eq!(album.meta.estimated_rows, Some(3));
        let names: Vec<&str> = album.meta.indexes.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["album_title"]);
        assert_eq!(
            album.meta.foreign_keys,
            [ForeignKeyMeta {
                name: "album_artist_fkey".into(),
                columns: vec!["artist".into()],
                ref_table: "artist".into(),
                ref_columns: vec!["id".into()],
                ..Default::default()
            }]
        );
        assert_eq!(album.fields[3].data_type(), &DataType::Decimal128(10, 2));
        assert_eq!(
            ColumnMeta::of(&album.fields[3]).db_type_in(DIALECT),
            Some("NUMERIC(10,2)")
        );

        let tag = describe(&conn, "tag", None).unwrap();
        assert_eq!(tag.meta.primary_key, ["album", "tag"]);
        assert_eq!(tag.rowid, None);
        assert!(!tag.fields[1].is_nullable());
        assert_eq!(tag.meta.foreign_keys[0].ref_columns, ["id"]);
    }

    #[test]
    fn keywords_are_found_outside_quotes_and_comments() {
        assert!(has_keyword("CREATE TABLE t (id INTEGER PRIMARY KEY autoincrement)", "AUTOINCREMENT"));
        assert!(!has_keyword("CREATE TABLE t (\"AUTOINCREMENT\" int, [autoincrement] int)", "AUTOINCREMENT"));
        assert!(!has_keyword("CREATE TABLE t (a int DEFAULT 'autoincrement') -- autoincrement", "AUTOINCREMENT"));
        assert!(!has_keyword("CREATE TABLE t (a int /* AUTOINCREMENT */)", "AUTOINCREMENT"));
    }
}
