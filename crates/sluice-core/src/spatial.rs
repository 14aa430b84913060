//! Spatial values: how geometry travels between databases, and the byte
//! formats each side speaks.
//!
//! In a batch a geometry value is **EWKB** in an Arrow `Binary` column: the
//! OGC well-known binary form, with PostGIS's extension flag and a 4-byte
//! SRID after the type when the value has an SRID other than 0. That is what
//! PostGIS sends and receives in binary `COPY`, it keeps the SRID of every
//! value (a MySQL `GEOMETRY` column may mix them), and it converts to the
//! other forms by rewriting a header, never by touching coordinates.
//!
//! The column's declared shape and SRID travel in field metadata
//! ([`GeometryMeta`], keys [`GEOMETRY`] and [`SRID`]), so a sink can declare
//! `geometry(Point,4326)` in PostgreSQL or `POINT … SRID 4326` in MySQL.
//!
//! The conversions here do no I/O and never panic on bad input: a value
//! that is not well-formed WKB is an `Err` naming what is wrong, and the
//! caller refuses its row.

use std::collections::HashMap;
use std::fmt::Write as _;

use arrow::datatypes::Field;

/// Field metadata: the declared geometry type of a spatial column, one of
/// the [`GeometryKind`] names (`point`, `multipolygon`, `geometry`, …).
pub const GEOMETRY: &str = "sluice.geometry";
/// Field metadata: the SRID the column declares (absent when it declares none).
pub const SRID: &str = "sluice.srid";

/// EWKB flag: an SRID follows the type.
const EWKB_SRID: u32 = 0x2000_0000;
/// EWKB flag: coordinates have Z.
const EWKB_Z: u32 = 0x8000_0000;
/// EWKB flag: coordinates have M.
const EWKB_M: u32 = 0x4000_0000;

/// The OGC geometry types both MySQL and PostGIS know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeometryKind {
    /// Any geometry.
    Geometry,
    Point,
    LineString,
    Polygon,
    MultiPoint,
    MultiLineString,
    MultiPolygon,
    GeometryCollection,
}

const KINDS: [GeometryKind; 8] = [
    GeometryKind::Geometry,
    GeometryKind::Point,
    GeometryKind::LineString,
    GeometryKind::Polygon,
    GeometryKind::MultiPoint,
    GeometryKind::MultiLineString,
    GeometryKind::MultiPolygon,
    GeometryKind::GeometryCollection,
];

impl GeometryKind {
    /// The metadata value, which is also MySQL's type name.
    pub fn name(self) -> &'static str {
        match self {
            GeometryKind::Geometry => "geometry",
            GeometryKind::Point => "point",
            GeometryKind::LineString => "linestring",
            GeometryKind::Polygon => "polygon",
            GeometryKind::MultiPoint => "multipoint",
            GeometryKind::MultiLineString => "multilinestring",
            GeometryKind::MultiPolygon => "multipolygon",
            GeometryKind::GeometryCollection => "geometrycollection",
        }
    }

    /// The name in a PostGIS type modifier (`Point`, `MultiPolygon`).
    pub fn postgis_name(self) -> &'static str {
        match self {
            GeometryKind::Geometry => "Geometry",
            GeometryKind::Point => "Point",
            GeometryKind::LineString => "LineString",
            GeometryKind::Polygon => "Polygon",
            GeometryKind::MultiPoint => "MultiPoint",
            GeometryKind::MultiLineString => "MultiLineString",
            GeometryKind::MultiPolygon => "MultiPolygon",
            GeometryKind::GeometryCollection => "GeometryCollection",
        }
    }

    /// Parses a type name in either spelling, any case (MySQL 8's
    /// `geomcollection` too). `None` for a name that is not a geometry type.
    pub fn parse(name: &str) -> Option<Self> {
        let n = name.trim().to_ascii_lowercase();
        if n == "geomcollection" {
            return Some(GeometryKind::GeometryCollection);
        }
        KINDS.into_iter().find(|k| k.name() == n)
    }

    /// The WKB type code of a value of this kind (0 for `Geometry`).
    fn code(self) -> u32 {
        match self {
            GeometryKind::Geometry => 0,
            GeometryKind::Point => 1,
            GeometryKind::LineString => 2,
            GeometryKind::Polygon => 3,
            GeometryKind::MultiPoint => 4,
            GeometryKind::MultiLineString => 5,
            GeometryKind::MultiPolygon => 6,
            GeometryKind::GeometryCollection => 7,
        }
    }
}

/// What a spatial column declares: its geometry type and SRID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GeometryMeta {
    pub kind: GeometryKind,
    /// The column's SRID, when it declares one.
    pub srid: Option<u32>,
}

impl GeometryMeta {
    /// What a source recorded on `field`, if it is a spatial column.
    pub fn of(field: &Field) -> Option<Self> {
        let m = field.metadata();
        let kind = GeometryKind::parse(m.get(GEOMETRY)?)?;
        Some(GeometryMeta {
            kind,
            srid: m.get(SRID).and_then(|s| s.parse().ok()),
        })
    }

    /// Field metadata holding this description.
    pub fn to_metadata(&self) -> HashMap<String, String> {
        let mut m = HashMap::new();
        m.insert(GEOMETRY.into(), self.kind.name().into());
        if let Some(s) = self.srid {
            m.insert(SRID.into(), s.to_string());
        }
        m
    }

    /// Reads a PostGIS type as `format_type` prints it: `geometry`,
    /// `geometry(Point,4326)`, `geometry(MultiPolygonZ)`. Dimensions beyond
    /// XY are dropped from the kind (the values keep them).
    pub fn from_postgis(format: &str) -> Option<Self> {
        let t = format.trim();
        let rest = t
            .strip_prefix("geometry")
            .or_else(|| t.strip_prefix("public.geometry"))?
            .trim();
        if rest.is_empty() {
            return Some(GeometryMeta {
                kind: GeometryKind::Geometry,
                srid: None,
            });
        }
        let inner = rest.strip_prefix('(')?.strip_suffix(')')?;
        let (kind, srid) = match inner.split_once(',') {
            Some((k, s)) => (k, s.trim().parse::<u32>().ok()),
            None => (inner, None),
        };
        let k = kind.trim().to_ascii_lowercase();
        let k = k
            .strip_suffix("zm")
            .or_else(|| k.strip_suffix('z'))
            .or_else(|| k.strip_suffix('m'))
            .filter(|b| GeometryKind::parse(b).is_some())
            .unwrap_or(&k);
        Some(GeometryMeta {
            kind: GeometryKind::parse(k)?,
            srid: srid.filter(|s| *s != 0),
        })
    }

    /// The PostGIS column type: `geometry(Point,4326)`, `geometry(Polygon)`, `geometry`.
    pub fn postgis_type(&self) -> String {
        match (self.kind, self.srid.filter(|s| *s != 0)) {
            (GeometryKind::Geometry, None) => "geometry".into(),
            (k, None) => format!("geometry({})", k.postgis_name()),
            (k, Some(s)) => format!("geometry({},{s})", k.postgis_name()),
        }
    }
}

/// A bounds-checked reader over WKB bytes.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.b.len()).ok_or_else(|| {
            format!(
                "geometry value is cut short: {} bytes, needs more than {}",
                self.b.len(),
                self.at
            )
        })?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self, little: bool) -> Result<u32, String> {
        let s: [u8; 4] = self.take(4)?.try_into().map_err(|_| "short read".to_string())?;
        Ok(if little {
            u32::from_le_bytes(s)
        } else {
            u32::from_be_bytes(s)
        })
    }

    fn f64(&mut self, little: bool) -> Result<f64, String> {
        let s: [u8; 8] = self.take(8)?.try_into().map_err(|_| "short read".to_string())?;
        Ok(if little {
            f64::from_le_bytes(s)
        } else {
            f64::from_be_bytes(s)
        })
    }

    fn byte_order(&mut self) -> Result<bool, String> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(format!("not WKB: byte order marker {b}, expected 0 or 1")),
        }
    }

    /// A count of elements, each at least `min` bytes, checked against what is left.
    fn count(&mut self, little: bool, min: usize) -> Result<usize, String> {
        let n = self.u32(little)? as usize;
        if n.saturating_mul(min) > self.b.len() - self.at {
            return Err(format!("geometry value claims {n} elements in {} bytes", self.b.len()));
        }
        Ok(n)
    }
}

/// The header of one (E)WKB geometry.
struct Header {
    little: bool,
    /// The base type code, 1 to 7.
    code: u32,
    z: bool,
    m: bool,
    srid: Option<u32>,
}

fn header(r: &mut Reader<'_>) -> Result<Header, String> {
    let little = r.byte_order()?;
    let raw = r.u32(little)?;
    let srid = if raw & EWKB_SRID != 0 {
        Some(r.u32(little)?)
    } else {
        None
    };
    let (mut z, mut m) = (raw & EWKB_Z != 0, raw & EWKB_M != 0);
    let mut code = raw & 0x0fff_ffff;
    // ISO WKB spells dimensions as thousands: 1001 is a Point Z.
    match code / 1000 {
        0 => {}
        1 => z = true,
        2 => m = true,
        3 => (z, m) = (true, true),
        _ => return Err(format!("not a WKB geometry type: {raw}")),
    }
    code %= 1000;
    if !(1..=7).contains(&code) {
        return Err(format!(
            "geometry type {code} is not one of POINT … GEOMETRYCOLLECTION (curves, surfaces and TINs are not supported)"
        ));
    }
    Ok(Header {
        little,
        code,
        z,
        m,
        srid,
    })
}

/// The SRID of an EWKB value (0 when it carries none).
pub fn ewkb_srid(ewkb: &[u8]) -> Result<u32, String> {
    let mut r = Reader { b: ewkb, at: 0 };
    Ok(header(&mut r)?.srid.unwrap_or(0))
}

/// MySQL's internal geometry format (a 4-byte little-endian SRID, then WKB)
/// as EWKB. Only the header is rewritten; the rest is checked by
/// [`check_wkb`] so a bad value is refused here, not by the destination.
pub fn mysql_to_ewkb(internal: &[u8]) -> Result<Vec<u8>, String> {
    if internal.len() < 9 {
        return Err(format!(
            "not a MySQL geometry value: {} bytes, at least 9 expected (SRID and WKB header)",
            internal.len()
        ));
    }
    let srid = u32::from_le_bytes([internal[0], internal[1], internal[2], internal[3]]);
    let wkb = &internal[4..];
    check_wkb(wkb)?;
    let mut r = Reader { b: wkb, at: 0 };
    let h = header(&mut r)?;
    if h.srid.is_some() {
        return Err("not a MySQL geometry value: its WKB carries an EWKB SRID".into());
    }
    let mut out = Vec::with_capacity(wkb.len() + 4);
    if srid == 0 {
        out.extend_from_slice(wkb);
        return Ok(out);
    }
    let raw = if h.little {
        u32::from_le_bytes([wkb[1], wkb[2], wkb[3], wkb[4]])
    } else {
        u32::from_be_bytes([wkb[1], wkb[2], wkb[3], wkb[4]])
    };
    let flagged = raw | EWKB_SRID;
    out.push(wkb[0]);
    if h.little {
        out.extend(flagged.to_le_bytes());
        out.extend(srid.to_le_bytes());
    } else {
        out.extend(flagged.to_be_bytes());
        out.extend(srid.to_be_bytes());
    }
    out.extend_from_slice(&wkb[5..]);
    Ok(out)
}

/// EWKB (or plain WKB, SRID 0) as MySQL's internal format. MySQL holds two
/// dimensions only: a value with Z or M is refused.
pub fn ewkb_to_mysql(ewkb: &[u8]) -> Result<Vec<u8>, String> {
    let g = parse(ewkb)?;
    if g.z || g.m {
        return Err("geometry has Z or M coordinates, which MySQL cannot store; drop them with ST_Force2D".into());
    }
    let mut out = Vec::with_capacity(ewkb.len());
    out.extend(g.srid.to_le_bytes());
    write_wkb(&g.shape, &mut out);
    Ok(out)
}

/// Checks that `wkb` is one complete, well-formed (E)WKB geometry.
pub fn check_wkb(wkb: &[u8]) -> Result<(), String> {
    parse(wkb).map(|_| ())
}

/// EWKB as text: WKT, prefixed with `SRID=n;` (PostGIS's EWKT) when the
/// value has an SRID other than 0, so the text keeps it.
pub fn ewkb_to_ewkt(ewkb: &[u8]) -> Result<String, String> {
    let g = parse(ewkb)?;
    let mut out = String::new();
    if g.srid != 0 {
        let _ = write!(out, "SRID={};", g.srid);
    }
    write_wkt(&g.shape, g.z, g.m, true, &mut out);
    Ok(out)
}

/// The coordinates of an EWKB point, for PostgreSQL's `point` type; any
/// other shape is an error naming it.
pub fn ewkb_point(ewkb: &[u8]) -> Result<(f64, f64), String> {
    let g = parse(ewkb)?;
    match &g.shape {
        Shape::Point(Some(c)) => Ok((c[0], c[1])),
        Shape::Point(None) => Err("an empty POINT has no PostgreSQL point value".into()),
        other => Err(format!(
            "a {} is not a point; store the column as text or PostGIS geometry",
            other.wkt_name()
        )),
    }
}

/// The EWKB of a 2D point without SRID (PostgreSQL's `point`).
pub fn point_ewkb(x: f64, y: f64) -> Vec<u8> {
    let mut out = Vec::with_capacity(21);
    out.push(1);
    out.extend(1u32.to_le_bytes());
    out.extend(x.to_le_bytes());
    out.extend(y.to_le_bytes());
    out
}

/// A parsed geometry value.
struct Geometry {
    srid: u32,
    z: bool,
    m: bool,
    shape: Shape,
}

/// A coordinate: x, y, then z and/or m as the geometry declares.
type Coord = Vec<f64>;

enum Shape {
    /// `None` is `POINT EMPTY` (NaN coordinates in WKB).
    Point(Option<Coord>),
    LineString(Vec<Coord>),
    Polygon(Vec<Vec<Coord>>),
    Multi(GeometryKind, Vec<Shape>),
}

impl Shape {
    fn wkt_name(&self) -> &'static str {
        match self {
            Shape::Point(_) => "POINT",
            Shape::LineString(_) => "LINESTRING",
            Shape::Polygon(_) => "POLYGON",
            Shape::Multi(GeometryKind::MultiPoint, _) => "MULTIPOINT",
            Shape::Multi(GeometryKind::MultiLineString, _) => "MULTILINESTRING",
            Shape::Multi(GeometryKind::MultiPolygon, _) => "MULTIPOLYGON",
            Shape::Multi(_, _) => "GEOMETRYCOLLECTION",
        }
    }
}

fn parse(ewkb: &[u8]) -> Result<Geometry, String> {
    let mut r = Reader { b: ewkb, at: 0 };
    let h = header(&mut r)?;
    let (z, m) = (h.z, h.m);
    let shape = body(&mut r, &h, 0)?;
    if r.at != ewkb.len() {
        return Err(format!("geometry value has {} bytes after its end", ewkb.len() - r.at));
    }
    Ok(Geometry {
        srid: h.srid.unwrap_or(0),
        z,
        m,
        shape,
    })
}

/// Collections nest at most this deep; deeper input is refused, not recursed into.
const MAX_DEPTH: usize = 32;

fn body(r: &mut Reader<'_>, h: &Header, depth: usize) -> Result<Shape, String> {
    if depth > MAX_DEPTH {
        return Err("geometry collections nested too deep".into());
    }
    let dims = 2 + usize::from(h.z) + usize::from(h.m);
    let coord = |r: &mut Reader<'_>| -> Result<Coord, String> { (0..dims).map(|_| r.f64(h.little)).collect() };
    let points = |r: &mut Reader<'_>| -> Result<Vec<Coord>, String> {
        let n = r.count(h.little, dims * 8)?;
        (0..n).map(|_| coord(r)).collect()
    };
    Ok(match h.code {
        1 => {
            let c = coord(r)?;
            Shape::Point(if c.iter().all(|v| v.is_nan()) { None } else { Some(c) })
        }
        2 => Shape::LineString(points(r)?),
        3 => {
            let n = r.count(h.little, 4)?;
            Shape::Polygon((0..n).map(|_| points(r)).collect::<Result<_, _>>()?)
        }
        code => {
            let kind = KINDS[code as usize];
            let n = r.count(h.little, 9)?;
            let mut parts = Vec::with_capacity(n);
            for _ in 0..n {
                let ph = header(r)?;
                let allowed = match kind {
                    GeometryKind::MultiPoint => ph.code == 1,
                    GeometryKind::MultiLineString => ph.code == 2,
                    GeometryKind::MultiPolygon => ph.code == 3,
                    _ => true,
                };
                if !allowed || ph.z != h.z || ph.m != h.m {
                    return Err(format!(
                        "a {} holds a part of type {} or of other dimensions",
                        kind.name().to_uppercase(),
                        ph.code
                    ));
                }
                parts.push(body(r, &ph, depth + 1)?);
            }
            Shape::Multi(kind, parts)
        }
    })
}

/// Writes `shape` as little-endian 2D-or-more WKB without SRID.
fn write_wkb(shape: &Shape, out: &mut Vec<u8>) {
    let code = match shape {
        Shape::Point(_) => 1,
        Shape::LineString(_) => 2,
        Shape::Polygon(_) => 3,
        Shape::Multi(k, _) => k.code(),
    };
    out.push(1);
    out.extend(code.to_le_bytes());
    let coord = |c: &Coord, out: &mut Vec<u8>| {
        for v in c {
            out.extend(v.to_le_bytes());
        }
    };
    let points = |ps: &[Coord], out: &mut Vec<u8>| {
        out.extend((ps.len() as u32).to_le_bytes());
        for p in ps {
            coord(p, out);
        }
    };
    match shape {
        Shape::Point(Some(c)) => coord(c, out),
        Shape::Point(None) => {
            out.extend(f64::NAN.to_le_bytes());
            out.extend(f64::NAN.to_le_bytes());
        }
        Shape::LineString(ps) => points(ps, out),
        Shape::Polygon(rings) => {
            out.extend((rings.len() as u32).to_le_bytes());
            for ring in rings {
                points(ring, out);
            }
        }
        Shape::Multi(_, parts) => {
            out.extend((parts.len() as u32).to_le_bytes());
            for p in parts {
                write_wkb(p, out);
            }
        }
    }
}

/// Writes WKT the way PostGIS prints it (`POINT(1 2)`, `MULTIPOINT((0 0),(1 1))`,
/// `POINT Z (1 2 3)`); `top` says whether the type name and dimensions are written.
fn write_wkt(shape: &Shape, z: bool, m: bool, top: bool, out: &mut String) {
    fn coord(c: &Coord, out: &mut String) {
        for (i, v) in c.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            let _ = write!(out, "{v}");
        }
    }
    fn list(ps: &[Coord], out: &mut String) {
        if ps.is_empty() {
            out.push_str(" EMPTY");
            return;
        }
        out.push('(');
        for (i, p) in ps.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            coord(p, out);
        }
        out.push(')');
    }
    if top {
        out.push_str(shape.wkt_name());
        match (z, m) {
            (true, true) => out.push_str(" ZM "),
            (true, false) => out.push_str(" Z "),
            (false, true) => out.push_str(" M "),
            _ => {}
        }
    }
    match shape {
        Shape::Point(None) => out.push_str(" EMPTY"),
        Shape::Point(Some(c)) => {
            out.push('(');
            coord(c, out);
            out.push(')');
        }
        Shape::LineString(ps) => list(ps, out),
        Shape::Polygon(rings) if rings.is_empty() => out.push_str(" EMPTY"),
        Shape::Polygon(rings) => {
            out.push('(');
            for (i, ring) in rings.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                list(ring, out);
            }
            out.push(')');
        }
        Shape::Multi(_, parts) if parts.is_empty() => out.push_str(" EMPTY"),
        Shape::Multi(kind, parts) => {
            out.push('(');
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                // Parts of a collection name their type; parts of a MULTI* do not.
                write_wkt(p, z, m, *kind == GeometryKind::GeometryCollection, out);
            }
            out.push(')');
        }
    }
    if top && (z || m) {
        // `POINT Z (1 2 3)`: drop the space written before an EMPTY.
        if out.ends_with("  EMPTY") {
            out.truncate(out.len() - 7);
            out.push_str(" EMPTY");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn mysql_values_become_ewkb_and_back() {
        // MariaDB's bytes for ST_GeomFromText('POINT(1 2)', 4326).
        let internal = hex("E61000000101000000000000000000F03F0000000000000040");
        let ewkb = mysql_to_ewkb(&internal).unwrap();
        // PostGIS's EWKB of SRID=4326;POINT(1 2).
        assert_eq!(ewkb, hex("0101000020E6100000000000000000F03F0000000000000040"));
        assert_eq!(ewkb_srid(&ewkb), Ok(4326));
        assert_eq!(ewkb_to_ewkt(&ewkb).unwrap(), "SRID=4326;POINT(1 2)");
        assert_eq!(ewkb_to_mysql(&ewkb).unwrap(), internal);
        assert_eq!(ewkb_point(&ewkb), Ok((1.0, 2.0)));
        assert_eq!(ewkb_to_ewkt(&point_ewkb(1.0, 2.0)).unwrap(), "POINT(1 2)");

        // SRID 0: plain WKB, no flag.
        let multi = hex(
            "000000000104000000020000000101000000000000000000000000000000000000000101000000000000000000F03F000000000000F03F",
        );
        let ewkb = mysql_to_ewkb(&multi).unwrap();
        assert_eq!(ewkb, multi[4..]);
        assert_eq!(ewkb_to_ewkt(&ewkb).unwrap(), "MULTIPOINT((0 0),(1 1))");
        assert_eq!(ewkb_to_mysql(&ewkb).unwrap(), multi);
        assert!(ewkb_point(&ewkb).unwrap_err().contains("MULTIPOINT is not a point"));
    }

    #[test]
    fn wkt_matches_what_postgis_prints() {
        // Built as WKB by hand: a polygon with a hole, a collection, a big-endian line.
        let mut p = vec![1u8];
        p.extend(3u32.to_le_bytes());
        p.extend(2u32.to_le_bytes());
        for ring in [
            &[(0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 0.0)][..],
            &[(1.5, 1.5), (2.0, 1.5), (2.0, 2.0), (1.5, 1.5)][..],
        ] {
            p.extend((ring.len() as u32).to_le_bytes());
            for (x, y) in ring {
                p.extend(f64::to_le_bytes(*x));
                p.extend(f64::to_le_bytes(*y));
            }
        }
        assert_eq!(
            ewkb_to_ewkt(&p).unwrap(),
            "POLYGON((0 0,10 0,10 10,0 0),(1.5 1.5,2 1.5,2 2,1.5 1.5))"
        );
        let mut line = vec![0u8];
        line.extend(2u32.to_be_bytes());
        line.extend(2u32.to_be_bytes());
        for v in [-73.985, 40.748, 0.1, -0.25] {
            line.extend(f64::to_be_bytes(v));
        }
        assert_eq!(ewkb_to_ewkt(&line).unwrap(), "LINESTRING(-73.985 40.748,0.1 -0.25)");
        let mut gc = vec![1u8];
        gc.extend((7u32 | EWKB_SRID).to_le_bytes());
        gc.extend(3857u32.to_le_bytes());
        gc.extend(2u32.to_le_bytes());
        gc.extend(&p);
        gc.extend(&line);
        assert_eq!(
            ewkb_to_ewkt(&gc).unwrap(),
            "SRID=3857;GEOMETRYCOLLECTION(POLYGON((0 0,10 0,10 10,0 0),(1.5 1.5,2 1.5,2 2,1.5 1.5)),\
             LINESTRING(-73.985 40.748,0.1 -0.25))"
        );
        // Back to MySQL: little-endian throughout, SRID in front.
        let internal = ewkb_to_mysql(&gc).unwrap();
        assert_eq!(&internal[..4], &3857u32.to_le_bytes());
        assert_eq!(
            mysql_to_ewkb(&internal).map(|e| ewkb_to_ewkt(&e)),
            Ok(ewkb_to_ewkt(&gc))
        );

        let mut z = vec![1u8];
        z.extend((1u32 | EWKB_Z).to_le_bytes());
        for v in [1.0f64, 2.0, 3.0] {
            z.extend(v.to_le_bytes());
        }
        assert_eq!(ewkb_to_ewkt(&z).unwrap(), "POINT Z (1 2 3)");
        assert!(ewkb_to_mysql(&z).unwrap_err().contains("Z or M"));
        let mut empty = vec![1u8];
        empty.extend(2u32.to_le_bytes());
        empty.extend(0u32.to_le_bytes());
        assert_eq!(ewkb_to_ewkt(&empty).unwrap(), "LINESTRING EMPTY");
    }

    #[test]
    fn bad_bytes_are_errors_not_panics() {
        assert!(mysql_to_ewkb(b"").is_err());
        assert!(mysql_to_ewkb(&hex("E6100000010100000000")).is_err());
        assert!(ewkb_to_ewkt(&hex("0201000000")).unwrap_err().contains("byte order"));
        assert!(ewkb_to_ewkt(&hex("0109000000")).unwrap_err().contains("not supported"));
        // A count far beyond the bytes present.
        assert!(ewkb_to_ewkt(&hex("0102000000FFFFFFFF")).is_err());
        let mut trailing = hex("0101000000000000000000F03F0000000000000040");
        trailing.push(0);
        assert!(ewkb_to_ewkt(&trailing).unwrap_err().contains("after its end"));
        for n in 0..40 {
            let bytes: Vec<u8> = (0..n).map(|i| (i * 37 % 256) as u8).collect();
            let _ = ewkb_to_ewkt(&bytes);
            let _ = mysql_to_ewkb(&bytes);
        }
    }

    #[test]
    fn column_types_read_from_postgis_and_metadata() {
        let g = GeometryMeta::from_postgis("geometry(Point,4326)").unwrap();
        assert_eq!(
            g,
            GeometryMeta {
                kind: GeometryKind::Point,
                srid: Some(4326)
            }
        );
        assert_eq!(g.postgis_type(), "geometry(Point,4326)");
        let f = Field::new("p", arrow::datatypes::DataType::Binary, true).with_metadata(g.to_metadata());
        assert_eq!(GeometryMeta::of(&f), Some(g));
        assert_eq!(
            GeometryMeta::from_postgis("geometry").map(|g| g.postgis_type()),
            Some("geometry".into())
        );
        assert_eq!(
            GeometryMeta::from_postgis("geometry(MultiPolygonZ)").map(|g| g.postgis_type()),
            Some("geometry(MultiPolygon)".into())
        );
        assert_eq!(GeometryMeta::from_postgis("geography(Point,4326)"), None);
        assert_eq!(
            GeometryKind::parse("GEOMCOLLECTION"),
            Some(GeometryKind::GeometryCollection)
        );
    }
}
