//! Spatial columns on the MySQL side.
//!
//! MySQL stores a geometry as a 4-byte little-endian SRID followed by WKB;
//! batches carry EWKB ([`sluice_core::spatial`]). The source rewrites each
//! value's header on the way in, the sink on the way out, and values are
//! sent as hex literals of MySQL's own format, which every spatial column
//! accepts whatever its SRID.
//!
//! A column's declared SRID (MySQL 8's `SRID n`, MariaDB's `REF_SYSTEM_ID=n`)
//! is read from `information_schema.ST_GEOMETRY_COLUMNS` (MySQL) or
//! `GEOMETRY_COLUMNS` (MariaDB) and written back in a form both servers
//! read: `point /*!80003 SRID 4326 */ /*M!100000 REF_SYSTEM_ID=4326 */`
//! (MariaDB skips MySQL 8's versioned comment, MySQL skips MariaDB's).

use std::collections::HashMap;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Field};
use mysql_async::Conn;
use sluice_core::spatial::{GeometryKind, GeometryMeta, ewkb_to_mysql};

use super::encode::{ColumnEncoder, push_hex};
use super::{rows, sql_string, text};

/// Field metadata for a column of MySQL type `data_type`, when it is spatial.
pub(crate) fn column_meta(data_type: &str) -> HashMap<String, String> {
    match GeometryKind::parse(data_type) {
        Some(kind) => GeometryMeta { kind, srid: None }.to_metadata(),
        None => HashMap::new(),
    }
}

/// The SRIDs the spatial columns of `db.table` declare, by column. Servers
/// without either catalog table (MySQL 5.7, older MariaDB) declare none.
pub(crate) async fn declared_srids(conn: &mut Conn, target: &str, db: &str, table: &str) -> HashMap<String, u32> {
    let (db, t) = (sql_string(db), sql_string(table));
    let queries = [
        format!(
            "SELECT COLUMN_NAME, SRS_ID FROM information_schema.ST_GEOMETRY_COLUMNS \
             WHERE TABLE_SCHEMA = {db} AND TABLE_NAME = {t}"
        ),
        format!(
            "SELECT G_GEOMETRY_COLUMN, SRID FROM information_schema.GEOMETRY_COLUMNS \
             WHERE G_TABLE_SCHEMA = {db} AND G_TABLE_NAME = {t}"
        ),
    ];
    for q in queries {
        if let Ok(found) = rows(conn, target, &q).await {
            return found
                .iter()
                .filter_map(|r| Some((text(r, 0)?, text(r, 1)?.parse::<u32>().ok()?)))
                // MariaDB reports 0 for a column that declares no SRID.
                .filter(|(_, srid)| *srid != 0)
                .collect();
        }
    }
    HashMap::new()
}

/// Records each spatial field's declared SRID in its metadata.
pub(crate) fn with_srids(fields: Vec<Field>, srids: &HashMap<String, u32>) -> Vec<Field> {
    fields
        .into_iter()
        .map(|f| match (GeometryMeta::of(&f), srids.get(f.name())) {
            (Some(g), Some(srid)) => {
                let mut md = f.metadata().clone();
                md.extend(
                    GeometryMeta {
                        srid: Some(*srid),
                        ..g
                    }
                    .to_metadata(),
                );
                f.with_metadata(md)
            }
            _ => f,
        })
        .collect()
}

/// The column type of a spatial field in a created table, with its SRID.
pub(crate) fn ddl(field: &Field) -> Option<String> {
    let g = GeometryMeta::of(field)?;
    Some(match g.srid.filter(|s| *s != 0) {
        Some(s) => format!("{} /*!80003 SRID {s} */ /*M!100000 REF_SYSTEM_ID={s} */", g.kind.name()),
        None => g.kind.name().to_string(),
    })
}

/// Whether a column type (as `information_schema.COLUMNS.DATA_TYPE` or DDL
/// spells it) is spatial, so an index on it is a `SPATIAL` index.
pub(crate) fn is_spatial_type(sql_type: &str) -> bool {
    let base = sql_type.split(|c: char| c.is_whitespace() || c == '(').next().unwrap_or("");
    GeometryKind::parse(base).is_some()
}

/// The encoder of a spatial field: EWKB values written as hex literals of
/// MySQL's internal format; a value MySQL cannot hold refuses its row.
pub(crate) fn encoder<'a>(field: &Field, array: &'a dyn Array) -> Option<ColumnEncoder<'a>> {
    GeometryMeta::of(field)?;
    if array.data_type() != &DataType::Binary {
        return None;
    }
    let a = array.as_binary::<i32>();
    Some(ColumnEncoder::with(
        array,
        Box::new(move |i, out| {
            let internal = ewkb_to_mysql(a.value(i))?;
            push_hex(out, &internal);
            Ok(())
        }),
    ))
}

/// `CREATE SPATIAL INDEX` when the index is on one spatial column of
/// `table` (MySQL indexes spatial columns only that way); `None` otherwise.
pub(crate) async fn spatial_index_sql(
    conn: &mut Conn,
    target: &str,
    table: &str,
    index: &str,
    columns: &[String],
) -> Option<Result<String, String>> {
    let [column] = columns else { return None };
    let sql = format!(
        "SELECT DATA_TYPE, IS_NULLABLE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() \
         AND TABLE_NAME = {} AND COLUMN_NAME = {}",
        sql_string(table),
        sql_string(column)
    );
    let found = rows(conn, target, &sql).await.ok()?;
    let row = found.first()?;
    if !is_spatial_type(&text(row, 0)?) {
        return None;
    }
    if text(row, 1).as_deref() == Some("YES") {
        return Some(Err(format!(
            "spatial index `{index}` on `{table}`.`{column}` not created: MySQL indexes only NOT NULL spatial \
             columns; make the source column NOT NULL, or after the load run ALTER TABLE `{table}` MODIFY `{column}` \
             … NOT NULL and CREATE SPATIAL INDEX"
        )));
    }
    Some(Ok(format!(
        "CREATE SPATIAL INDEX {} ON {} ({})",
        super::quote_ident(index),
        super::quote_ident(table),
        super::quote_ident(column)
    )))
}
