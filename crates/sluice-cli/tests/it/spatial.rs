//! Spatial columns between MariaDB and PostgreSQL: PostGIS `geometry` when
//! the destination has it, `point` and WKT text when it does not, and back
//! to MariaDB with SRIDs and spatial indexes. Shapes are compared as the
//! databases print them (`ST_AsText`, `ST_SRID`) on both sides.

use crate::servers::{MyDb, PgDb};
use crate::{ok, sluice};

/// Points, lines, polygons (one with a hole) and multipolygons in SRID 0
/// and 4326, and a `GEOMETRY` column mixing SRIDs from row to row.
const PLACES: &str = r#"
CREATE TABLE places (
    id int PRIMARY KEY,
    pt POINT NOT NULL,
    pt4326 POINT REF_SYSTEM_ID=4326 NOT NULL,
    line LINESTRING REF_SYSTEM_ID=4326 NULL,
    area POLYGON NULL,
    regions MULTIPOLYGON REF_SYSTEM_ID=4326 NULL,
    shape GEOMETRY NULL,
    SPATIAL INDEX sp_pt (pt),
    SPATIAL INDEX sp_pt4326 (pt4326)
);
INSERT INTO places VALUES
 (1, ST_GeomFromText('POINT(1 2)'), ST_GeomFromText('POINT(-73.9857 40.7484)', 4326),
  ST_GeomFromText('LINESTRING(-73.9857 40.7484,-73.9772 40.7527,-73.9681 40.7851)', 4326),
  ST_GeomFromText('POLYGON((0 0,10 0,10 10,0 10,0 0),(2 2,3 2,3 3,2 3,2 2))'),
  ST_GeomFromText('MULTIPOLYGON(((2.35 48.85,2.36 48.85,2.36 48.86,2.35 48.85)),((-0.12 51.5,-0.11 51.5,-0.11 51.51,-0.12 51.5)))', 4326),
  ST_GeomFromText('POINT(5.5 -6.25)', 4326)),
 (2, ST_GeomFromText('POINT(0.1 -0.2)'), ST_GeomFromText('POINT(139.6917 35.6895)', 4326),
  NULL, NULL, NULL,
  ST_GeomFromText('POLYGON((0 0,1 0,1 1,0 0))')),
 (3, ST_GeomFromText('POINT(-180 90)'), ST_GeomFromText('POINT(180 -90)', 4326),
  ST_GeomFromText('LINESTRING(0 0,1 1)', 4326), ST_GeomFromText('POLYGON((1 1,2 1,2 2,1 1))'),
  ST_GeomFromText('MULTIPOLYGON(((0 0,1 0,1 1,0 0)))', 4326),
  ST_GeomFromText('MULTIPOLYGON(((10 10,11 10,11 11,10 10)),((20 20,21 20,21 21,20 20)))', 4326));
"#;

const COLUMNS: [&str; 6] = ["pt", "pt4326", "line", "area", "regions", "shape"];

/// `id|WKT|SRID` per row and column, as MariaDB prints them.
fn mysql_shapes(db: &MyDb) -> Vec<String> {
    COLUMNS
        .iter()
        .flat_map(|c| {
            db.sql(&format!(
                "SELECT CONCAT_WS('|', id, '{c}', IFNULL(ST_AsText({c}), '-'), IFNULL(ST_SRID({c}), '-')) \
                 FROM places ORDER BY id"
            ))
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
        })
        .collect()
}

/// The same from PostGIS.
fn postgis_shapes(db: &PgDb) -> Vec<String> {
    COLUMNS
        .iter()
        .flat_map(|c| {
            db.sql(&format!(
                "SELECT concat_ws('|', id, '{c}', coalesce(ST_AsText({c}), '-'), coalesce(ST_SRID({c})::text, '-')) \
                 FROM places ORDER BY id"
            ))
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
        })
        .collect()
}

fn column_types(pg: &PgDb) -> String {
    pg.sql(
        "SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attnum) \
         FROM pg_attribute WHERE attrelid = 'places'::regclass AND attnum > 0",
    )
}

fn verify_matches(dir: &std::path::Path, file: &str) {
    let out = sluice(dir, &["verify", file]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && !stdout.contains("DIFFERENT"),
        "verify found a difference:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn spatial_columns_go_to_postgis_and_back_to_mysql() {
    let Some(my) = MyDb::create("geo_src") else { return };
    let Some(pg) = PgDb::create("geo_gis") else { return };
    let Some(back) = MyDb::create("geo_back") else { return };
    my.sql(PLACES);
    pg.sql("CREATE EXTENSION IF NOT EXISTS postgis");
    let dir = tempfile::tempdir().unwrap();

    ok(&sluice(dir.path(), &["copy", &my.url(), &pg.url(), "--no-progress"]));
    assert_eq!(
        column_types(&pg),
        "id integer, pt geometry(Point), pt4326 geometry(Point,4326), line geometry(LineString,4326), \
         area geometry(Polygon), regions geometry(MultiPolygon,4326), shape geometry"
    );
    let source = mysql_shapes(&my);
    assert_eq!(source.len(), 18);
    assert!(
        source.contains(&"2|shape|POLYGON((0 0,1 0,1 1,0 0))|0".to_string()),
        "{source:?}"
    );
    assert!(
        source.contains(&"1|shape|POINT(5.5 -6.25)|4326".to_string()),
        "{source:?}"
    );
    assert_eq!(postgis_shapes(&pg), source);
    assert_eq!(
        pg.sql("SELECT string_agg(indexdef, '; ' ORDER BY indexname) FROM pg_indexes WHERE tablename = 'places' AND indexdef LIKE '%USING gist%'")
            .matches("USING gist")
            .count(),
        2
    );
    std::fs::write(
        dir.path().join("gis.toml"),
        format!(
            "[source]\ntype = \"mysql\"\nurl = \"{}\"\n\n[[sinks]]\ntype = \"postgres\"\nurl = \"{}\"\n",
            my.url(),
            pg.url()
        ),
    )
    .unwrap();
    verify_matches(dir.path(), "gis.toml");

    // Back to MariaDB: same shapes, same SRIDs, declared SRIDs and spatial indexes.
    ok(&sluice(
        dir.path(),
        &["copy", &pg.url(), &back.url(), "--tables", "places", "--no-progress"],
    ));
    assert_eq!(mysql_shapes(&back), source);
    assert_eq!(
        back.sql(&format!(
            "SELECT GROUP_CONCAT(CONCAT(G_GEOMETRY_COLUMN, ' ', SRID) ORDER BY G_GEOMETRY_COLUMN) \
             FROM information_schema.GEOMETRY_COLUMNS WHERE G_TABLE_SCHEMA = '{}' AND G_TABLE_NAME = 'places'",
            back.name
        )),
        "area 0,line 4326,pt 0,pt4326 4326,regions 4326,shape 0"
    );
    assert_eq!(
        back.sql(&format!(
            "SELECT GROUP_CONCAT(CONCAT(COLUMN_NAME, ' ', DATA_TYPE) ORDER BY ORDINAL_POSITION) \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = '{}' AND TABLE_NAME = 'places'",
            back.name
        )),
        "id int,pt point,pt4326 point,line linestring,area polygon,regions multipolygon,shape geometry"
    );
    assert_eq!(
        back.sql(&format!(
            "SELECT GROUP_CONCAT(COLUMN_NAME ORDER BY COLUMN_NAME) FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = '{}' AND TABLE_NAME = 'places' AND INDEX_TYPE = 'SPATIAL'",
            back.name
        )),
        "pt,pt4326"
    );
    std::fs::write(
        dir.path().join("back.toml"),
        format!(
            "[source]\ntype = \"postgres\"\nurl = \"{}\"\ntables = [\"places\"]\n\n[[sinks]]\ntype = \"mysql\"\nurl = \"{}\"\n",
            pg.url(),
            back.url()
        ),
    )
    .unwrap();
    verify_matches(dir.path(), "back.toml");
}

#[test]
fn spatial_columns_without_postgis_become_points_and_wkt_text() {
    let Some(my) = MyDb::create("geo_nogis_src") else {
        return;
    };
    let Some(pg) = PgDb::create("geo_nogis") else { return };
    my.sql(PLACES);
    let dir = tempfile::tempdir().unwrap();
    let err = ok(&sluice(dir.path(), &["copy", &my.url(), &pg.url(), "--no-progress"]));
    assert!(err.contains("CREATE EXTENSION postgis"), "{err}");
    assert_eq!(
        column_types(&pg),
        "id integer, pt point, pt4326 point, line text, area text, regions text, shape text"
    );
    // Text columns hold WKT, with the SRID in front when it is not 0.
    for c in ["line", "area", "regions", "shape"] {
        let ewkt = format!(
            "SELECT CONCAT_WS('|', id, IFNULL(CONCAT(IF(ST_SRID({c}) = 0, '', CONCAT('SRID=', ST_SRID({c}), ';')), \
             ST_AsText({c})), '-')) FROM places ORDER BY id"
        );
        assert_eq!(
            pg.sql(&format!(
                "SELECT concat_ws('|', id, coalesce({c}, '-')) FROM places ORDER BY id"
            )),
            my.sql(&ewkt),
            "column {c}"
        );
    }
    assert_eq!(
        pg.sql("SELECT string_agg(concat_ws('|', id, pt, pt4326), ' ' ORDER BY id) FROM places"),
        "1|(1,2)|(-73.9857,40.7484) 2|(0.1,-0.2)|(139.6917,35.6895) 3|(-180,90)|(180,-90)"
    );
    assert_eq!(
        pg.sql("SELECT count(*) FROM pg_indexes WHERE tablename = 'places' AND indexdef LIKE '%USING gist%'"),
        "2"
    );

    // A [sinks.types] override keeps the SRID of a point column as text.
    let Some(pg2) = PgDb::create("geo_nogis_override") else {
        return;
    };
    std::fs::write(
        dir.path().join("o.toml"),
        format!(
            "[source]\ntype = \"mysql\"\nurl = \"{}\"\n\n[[sinks]]\ntype = \"postgres\"\nurl = \"{}\"\n\
             [sinks.types]\n\"places.pt4326\" = \"text\"\n",
            my.url(),
            pg2.url()
        ),
    )
    .unwrap();
    ok(&sluice(dir.path(), &["run", "o.toml", "--no-progress"]));
    assert_eq!(
        pg2.sql("SELECT pt4326 FROM places WHERE id = 2"),
        "SRID=4326;POINT(139.6917 35.6895)"
    );
    // Every shape and SRID is there: verify agrees. Without the override the
    // SRIDs of pt4326 are gone, and verify says so.
    verify_matches(dir.path(), "o.toml");
    std::fs::write(
        dir.path().join("lossy.toml"),
        format!(
            "[source]\ntype = \"mysql\"\nurl = \"{}\"\n\n[[sinks]]\ntype = \"postgres\"\nurl = \"{}\"\n",
            my.url(),
            pg.url()
        ),
    )
    .unwrap();
    let out = sluice(dir.path(), &["verify", "lossy.toml"]);
    assert!(!out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn spatial_columns_copy_mysql_to_mysql_with_their_srids() {
    let Some(src) = MyDb::create("geo_my_src") else { return };
    let Some(dst) = MyDb::create("geo_my_dst") else { return };
    src.sql(PLACES);
    let dir = tempfile::tempdir().unwrap();
    ok(&sluice(dir.path(), &["copy", &src.url(), &dst.url(), "--no-progress"]));
    assert_eq!(mysql_shapes(&dst), mysql_shapes(&src));
    let srids = |db: &MyDb| {
        db.sql(&format!(
            "SELECT GROUP_CONCAT(CONCAT(G_GEOMETRY_COLUMN, ' ', SRID) ORDER BY G_GEOMETRY_COLUMN) \
             FROM information_schema.GEOMETRY_COLUMNS WHERE G_TABLE_SCHEMA = '{}'",
            db.name
        ))
    };
    assert_eq!(srids(&dst), srids(&src));
    assert_eq!(
        dst.sql(&format!(
            "SELECT GROUP_CONCAT(INDEX_NAME ORDER BY INDEX_NAME) FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = '{}' AND INDEX_TYPE = 'SPATIAL'",
            dst.name
        )),
        "sp_pt,sp_pt4326"
    );
}

#[test]
fn postgis_and_point_columns_copy_to_postgis_and_to_mysql() {
    let Some(src) = PgDb::create("geo_pg_src") else { return };
    let Some(dst) = PgDb::create("geo_pg_dst") else { return };
    let Some(my) = MyDb::create("geo_pg_my") else { return };
    for db in [&src, &dst] {
        db.sql("CREATE EXTENSION IF NOT EXISTS postgis");
    }
    src.sql(
        "CREATE TABLE sites (id int PRIMARY KEY, area geometry(Polygon,4326) NOT NULL, p point, loc geometry NOT NULL); \
         CREATE INDEX sites_area_gist ON sites USING gist (area); \
         INSERT INTO sites VALUES \
          (1, 'SRID=4326;POLYGON((0 0,1 0,1 1,0 0))', '(1.5,-2.25)', 'SRID=3857;LINESTRING(0 0,100 100)'), \
          (2, 'SRID=4326;POLYGON((5 5,6 5,6 6,5 5))', NULL, 'POINT(7 8)'); \
         CREATE TABLE lifted (id int PRIMARY KEY, g geometry(PointZ)); \
         INSERT INTO lifted VALUES (1, 'POINT(1 2 3)'), (2, NULL);",
    );
    let dir = tempfile::tempdir().unwrap();
    ok(&sluice(
        dir.path(),
        &["copy", &src.url(), &dst.url(), "--tables", "sites", "--no-progress"],
    ));
    let shapes = |db: &PgDb| {
        db.sql(
            "SELECT string_agg(concat_ws('|', id, ST_AsEWKT(area), p::text, ST_AsEWKT(loc)), ' ' ORDER BY id) FROM sites",
        )
    };
    assert_eq!(shapes(&dst), shapes(&src));
    assert_eq!(
        dst.sql("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'sites'::regclass AND attname = 'area'"),
        "geometry(Polygon,4326)"
    );
    assert_eq!(
        dst.sql("SELECT count(*) FROM pg_indexes WHERE tablename = 'sites' AND indexdef LIKE '%USING gist (area)%'"),
        "1"
    );

    // To MariaDB: `point` is a POINT, a polygon keeps SRID 4326 and its
    // spatial index, a value with Z is refused with the reason.
    ok(&sluice(
        dir.path(),
        &[
            "copy",
            &src.url(),
            &my.url(),
            "--tables",
            "sites,lifted",
            "--on-error",
            "dlq",
            "--dlq",
            "rejects.ndjson",
            "--no-progress",
        ],
    ));
    assert_eq!(
        my.sql(
            "SELECT CONCAT_WS('|', id, ST_AsText(area), ST_SRID(area), IFNULL(ST_AsText(p), '-'), ST_AsText(loc), \
             ST_SRID(loc)) FROM sites ORDER BY id"
        ),
        "1|POLYGON((0 0,1 0,1 1,0 0))|4326|POINT(1.5 -2.25)|LINESTRING(0 0,100 100)|3857\n\
         2|POLYGON((5 5,6 5,6 6,5 5))|4326|-|POINT(7 8)|0"
    );
    assert_eq!(
        my.sql(&format!(
            "SELECT CONCAT(COLUMN_NAME, ' ', INDEX_TYPE) FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = '{}' AND TABLE_NAME = 'sites' AND INDEX_NAME <> 'PRIMARY'",
            my.name
        )),
        "area SPATIAL"
    );
    assert_eq!(my.sql("SELECT COUNT(*), COUNT(g) FROM lifted"), "1\t0");
    let rejects = std::fs::read_to_string(dir.path().join("rejects.ndjson")).unwrap_or_default();
    assert!(rejects.contains("ST_Force2D"), "{rejects}");
}
