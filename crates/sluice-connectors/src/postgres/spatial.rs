//! Spatial columns on the PostgreSQL side.
//!
//! PostGIS `geometry` travels as EWKB both ways: binary `COPY` sends and
//! receives it, so the source reads it like `bytea` and the sink writes the
//! batch's EWKB unchanged ([`sluice_core::spatial`]).
//!
//! A spatial column coming from another database becomes
//! `geometry(Kind,SRID)` when PostGIS is installed in the destination
//! database (its `geometry` type resolves on the search path). Otherwise
//! the sink does not install it — an extension is a database-wide object
//! that needs elevated rights, the user's call — and warns (naming
//! `CREATE EXTENSION postgis` when the server has it available): `POINT`
//! columns become `point`, the others WKT `text` (`SRID=n;` first when the
//! value's SRID is not 0). A `[sinks.types]` override chooses any of these,
//! or `bytea` for the raw EWKB; values are written to suit the column.

use std::collections::HashMap;

use arrow::datatypes::{Field, Schema};
use sluice_core::Result;
use sluice_core::dbmeta::{ColumnMeta, Semantic};
use sluice_core::spatial::{GeometryKind, GeometryMeta};
use tokio_postgres::Client;

use super::decode::Decode;
use super::encode::Encode;
use super::types::Resolved;
use super::{get, pg_error};

/// OID of PostgreSQL's built-in `point`.
const POINT_OID: u32 = 600;

/// Whether PostGIS can hold the stream's spatial columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Postgis {
    /// The stream has no spatial column; nobody asked.
    NotNeeded,
    /// `geometry` resolves in the destination database.
    Installed,
    /// The server has the extension; the database does not.
    Available,
    /// The server does not have it.
    Missing,
}

/// Looks up PostGIS in the destination when `schema` has spatial columns.
pub(crate) async fn postgis_for(client: &Client, url: &str, schema: &Schema) -> Result<Postgis> {
    if !schema.fields().iter().any(|f| GeometryMeta::of(f).is_some()) {
        return Ok(Postgis::NotNeeded);
    }
    let r = client
        .query_one(
            "SELECT to_regtype('geometry') IS NOT NULL, \
             EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'postgis')",
            &[],
        )
        .await
        .map_err(|e| pg_error(url, e))?;
    let installed: bool = get(&r, 0, "whether PostGIS is installed")?;
    let available: bool = get(&r, 1, "whether PostGIS is available")?;
    Ok(match (installed, available) {
        (true, _) => Postgis::Installed,
        (false, true) => Postgis::Available,
        (false, false) => Postgis::Missing,
    })
}

/// The column type of a spatial field in a created table, and a warning
/// when PostGIS is not there to hold it. `None` for other fields.
pub(crate) fn ddl(field: &Field, meta: &ColumnMeta, postgis: Postgis) -> Option<(String, Option<String>)> {
    let g = GeometryMeta::of(field)?;
    // PostgreSQL's own point stays a point.
    if meta.db_type_in("postgres") == Some("point") {
        return Some(("point".into(), None));
    }
    let why = match postgis {
        Postgis::Installed | Postgis::NotNeeded => {
            let same = meta.db_type_in("postgres").filter(|t| GeometryMeta::from_postgis(t).is_some());
            return Some((same.map_or_else(|| g.postgis_type(), str::to_string), None));
        }
        Postgis::Available => {
            "PostGIS is not installed in the destination database (CREATE EXTENSION postgis there, then load again, \
             for geometry columns)"
        }
        Postgis::Missing => "PostGIS is not installed on the destination server (Debian: postgresql-NN-postgis-3)",
    };
    let name = g.kind.name().to_uppercase();
    Some(if g.kind == GeometryKind::Point {
        let srid = match g.srid {
            Some(s) => format!(", without its SRID {s}"),
            None => ", without SRIDs".into(),
        };
        (
            "point".into(),
            Some(format!(
                "{why}; {name} stored as point (x,y){srid}; set the column to text under [sinks.types] to keep \
                 WKT with SRIDs"
            )),
        )
    } else {
        (
            "text".into(),
            Some(format!("{why}; {name} stored as WKT text (SRID=n; first when n is not 0)")),
        )
    })
}

/// How spatial values are written into a destination column that is not
/// PostGIS: WKT into text, x and y into `point`. `None` leaves the choice
/// to the column type (EWKB into `geometry` and `bytea`).
pub(crate) fn encoder(field: &Field, oid: u32, resolved: &Resolved) -> Option<Encode> {
    GeometryMeta::of(field)?;
    if oid == POINT_OID {
        return Some(Encode::GeomPoint);
    }
    match (&resolved.decode, resolved.semantic) {
        (Some(Decode::Text), None | Some(Semantic::Text)) => Some(Encode::GeomText),
        _ => None,
    }
}

/// Field metadata of a column the source reads: the geometry type and SRID
/// of a PostGIS `geometry` column; a `point` is a POINT without SRID.
pub(crate) fn column_meta(meta: &ColumnMeta, decode: &Decode) -> HashMap<String, String> {
    match (decode, meta.db_type_in("postgres").and_then(GeometryMeta::from_postgis)) {
        (Decode::Bytea, Some(g)) => g.to_metadata(),
        (Decode::Point, _) => GeometryMeta {
            kind: GeometryKind::Point,
            srid: None,
        }
        .to_metadata(),
        _ => HashMap::new(),
    }
}

/// ` USING gist` for an index on one spatial column held as `geometry` or
/// `point`; an error (the index is left out, with a warning) when the
/// column is held as text, where a B-tree over WKT serves no spatial query.
pub(crate) fn index_method(
    columns: &[String],
    schema: &Schema,
    chosen: &HashMap<String, String>,
) -> std::result::Result<&'static str, String> {
    let [c] = columns else { return Ok("") };
    if !schema.field_with_name(c).is_ok_and(|f| GeometryMeta::of(f).is_some()) {
        return Ok("");
    }
    let ty = chosen.get(c).map(|t| t.trim().to_ascii_lowercase()).unwrap_or_default();
    if ty.starts_with("geometry") || ty.starts_with("geography") || ty == "point" {
        Ok(" USING gist")
    } else {
        Err(format!(
            "not created: column `{c}` holds its geometry as {ty}, which no spatial index covers"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::DataType;

    fn spatial(kind: GeometryKind, srid: Option<u32>) -> Field {
        Field::new("g", DataType::Binary, false).with_metadata(GeometryMeta { kind, srid }.to_metadata())
    }

    #[test]
    fn spatial_columns_follow_what_the_destination_has() {
        let plain = ColumnMeta::default();
        let p = spatial(GeometryKind::Point, Some(4326));
        let mp = spatial(GeometryKind::MultiPolygon, None);
        assert_eq!(
            ddl(&p, &plain, Postgis::Installed),
            Some(("geometry(Point,4326)".into(), None))
        );
        assert_eq!(
            ddl(&mp, &plain, Postgis::Installed).map(|d| d.0),
            Some("geometry(MultiPolygon)".into())
        );
        let (t, w) = ddl(&p, &plain, Postgis::Available).unwrap();
        assert_eq!(t, "point");
        let w = w.unwrap();
        assert!(w.contains("CREATE EXTENSION postgis") && w.contains("SRID 4326"), "{w}");
        assert_eq!(ddl(&mp, &plain, Postgis::Missing).map(|d| d.0), Some("text".into()));
        assert_eq!(ddl(&Field::new("x", DataType::Binary, true), &plain, Postgis::Installed), None);

        let schema = Schema::new(vec![
            Field::new("g", DataType::Binary, false).with_metadata(p.metadata().clone()),
        ]);
        let cols = vec!["g".to_string()];
        let held = |t: &str| HashMap::from([("g".to_string(), t.to_string())]);
        assert_eq!(index_method(&cols, &schema, &held("geometry(Point,4326)")), Ok(" USING gist"));
        assert_eq!(index_method(&cols, &schema, &held("point")), Ok(" USING gist"));
        assert!(index_method(&cols, &schema, &held("text")).is_err());
    }
}
