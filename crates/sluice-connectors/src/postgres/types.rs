//! PostgreSQL types: catalog lookups, how each column is read into Arrow, and
//! which PostgreSQL type an Arrow column becomes.
//!
//! | PostgreSQL                         | Arrow                          |
//! |------------------------------------|--------------------------------|
//! | boolean                            | Boolean                        |
//! | smallint, integer, bigint          | Int16, Int32, Int64            |
//! | real, double precision             | Float32, Float64               |
//! | numeric(p,s), p ≤ 38               | Decimal128(p,s)                |
//! | numeric, numeric(p,s) with p > 38  | Utf8, exact text               |
//! | text, varchar(n), char(n), name    | Utf8                           |
//! | json, jsonb                        | Utf8 (semantic json)           |
//! | uuid                               | Utf8 (semantic uuid)           |
//! | bytea                              | Binary                         |
//! | PostGIS geometry, point            | Binary, EWKB (see [`super::spatial`]) |
//! | date / time                        | Date32 / Time64(µs)            |
//! | timestamp / timestamptz            | Timestamp(µs) / Timestamp(µs, UTC) |
//! | interval                           | Interval(MonthDayNano)         |
//! | enum                               | Utf8 (semantic enum)           |
//! | domain                             | its base type                  |
//! | T[] (one dimension)                | List(T)                        |
//! | anything else (inet, tsvector, …)  | Utf8, read as `col::text`      |

use std::collections::HashMap;

use arrow::datatypes::DataType;
use sluice_core::dbmeta::{ColumnMeta, Semantic};
use sluice_core::Result;
use tokio_postgres::Client;

use super::decode::Decode;
use super::encode::Encode;
use super::{get, pg_error};

/// One column of a table or query as the source reads it.
#[derive(Debug, Clone)]
pub struct PgColumn {
    pub name: String,
    /// How the binary value decodes.
    pub decode: Decode,
    /// Read as `col::text` because there is no binary decoder for the type.
    pub as_text: bool,
    pub nullable: bool,
    pub meta: ColumnMeta,
    /// Labels of an enum column, to recreate the type.
    pub enum_labels: Option<Vec<String>>,
    /// Element type OID of an array column (0 otherwise).
    pub elem: u32,
}

/// What the catalog says about a type.
#[derive(Debug, Clone)]
struct TypeRow {
    name: String,
    kind: String,
    base: u32,
    base_typmod: i32,
    elem: u32,
    category: String,
    labels: Vec<String>,
    format: String,
}

/// Looks up types in `pg_type`, once each.
pub struct TypeCache {
    rows: HashMap<u32, TypeRow>,
    /// The server asked, for errors.
    url: String,
}

/// How a type is read: a binary decoder, or as text.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub decode: Option<Decode>,
    pub semantic: Option<Semantic>,
    /// The type with domains replaced by their base (`format_type`).
    pub format: String,
    /// Element type OID for arrays.
    pub elem: u32,
    /// Labels of an enum.
    pub labels: Vec<String>,
}

impl TypeCache {
    /// An empty cache of the types of the server at `url`.
    pub fn new(url: &str) -> Self {
        TypeCache {
            rows: HashMap::new(),
            url: url.to_string(),
        }
    }

    async fn row(&mut self, client: &Client, oid: u32) -> Result<TypeRow> {
        if let Some(r) = self.rows.get(&oid) {
            return Ok(r.clone());
        }
        let r = client
            .query_one(
                "SELECT t.typname::text, t.typtype::text, t.typbasetype, t.typtypmod, t.typelem, \
                 t.typcategory::text, \
                 coalesce((SELECT array_agg(e.enumlabel::text ORDER BY e.enumsortorder) FROM pg_enum e \
                           WHERE e.enumtypid = t.oid), '{}'), \
                 format_type(t.oid, NULL) \
                 FROM pg_type t WHERE t.oid = $1",
                &[&oid],
            )
            .await
            .map_err(|e| pg_error(&self.url, e))?;
        let what = |field: &str| format!("pg_type.{field} of type {oid}");
        let row = TypeRow {
            name: get(&r, 0, &what("typname"))?,
            kind: get(&r, 1, &what("typtype"))?,
            base: get(&r, 2, &what("typbasetype"))?,
            base_typmod: get(&r, 3, &what("typtypmod"))?,
            elem: get(&r, 4, &what("typelem"))?,
            category: get(&r, 5, &what("typcategory"))?,
            labels: get(&r, 6, &what("enum labels"))?,
            format: get(&r, 7, &what("format_type"))?,
        };
        self.rows.insert(oid, row.clone());
        Ok(row)
    }

    /// Resolves a column type (with its type modifier) to how it is read.
    pub async fn resolve(
        &mut self,
        client: &Client,
        oid: u32,
        typmod: i32,
        format: &str,
    ) -> Result<Resolved> {
        let mut oid = oid;
        let mut typmod = typmod;
        let mut format = format.to_string();
        // Domains read as their base type.
        let mut row = self.row(client, oid).await?;
        while row.kind == "d" {
            oid = row.base;
            typmod = row.base_typmod;
            let r = client
                .query_one("SELECT format_type($1, $2)", &[&oid, &typmod])
                .await
                .map_err(|e| pg_error(&self.url, e))?;
            format = get(&r, 0, &format!("format_type of type {oid}"))?;
            row = self.row(client, oid).await?;
        }
        let (decode, semantic) = builtin(oid, typmod, &row.name);
        let mut resolved = Resolved {
            decode,
            semantic,
            format,
            elem: 0,
            labels: Vec::new(),
        };
        if resolved.decode.is_some() {
            return Ok(resolved);
        }
        if row.kind == "e" {
            resolved.decode = Some(Decode::Text);
            resolved.semantic = Some(Semantic::Enum);
            resolved.labels = row.labels;
        } else if row.category == "A" && row.elem != 0 {
            let r = client
                .query_one("SELECT format_type($1, NULL)", &[&row.elem])
                .await
                .map_err(|e| pg_error(&self.url, e))?;
            let elem_format: String = get(&r, 0, &format!("format_type of type {}", row.elem))?;
            let elem = Box::pin(self.resolve(client, row.elem, typmod, &elem_format)).await?;
            // Arrays of points stay text: their elements carry no spatial meaning downstream.
            if let (Some(d), None | Some(Semantic::Json | Semantic::Uuid)) = (elem.decode, elem.semantic)
                && d != Decode::Point
            {
                resolved.decode = Some(Decode::Array(Box::new(d)));
                resolved.semantic = elem.semantic;
                resolved.elem = row.elem;
            } else if elem.semantic == Some(Semantic::Enum) {
                resolved.decode = Some(Decode::Array(Box::new(Decode::Text)));
                resolved.elem = row.elem;
            }
        }
        if resolved.decode.is_none() {
            resolved.semantic = Some(Semantic::Text);
        }
        let _ = row.format;
        Ok(resolved)
    }
}

/// Built-in types with a binary decoder, by OID (or name, for extension types).
fn builtin(oid: u32, typmod: i32, name: &str) -> (Option<Decode>, Option<Semantic>) {
    let d = match oid {
        16 => Decode::Bool,
        17 => Decode::Bytea,
        19 | 25 | 1042 | 1043 => Decode::Text,
        20 => Decode::Int64,
        21 => Decode::Int16,
        23 => Decode::Int32,
        114 => return (Some(Decode::Text), Some(Semantic::Json)),
        3802 => return (Some(Decode::Jsonb), Some(Semantic::Json)),
        700 => Decode::Float32,
        701 => Decode::Float64,
        600 => Decode::Point,
        1082 => Decode::Date,
        1083 => Decode::Time,
        1114 => Decode::Timestamp,
        1184 => Decode::TimestampTz,
        1186 => Decode::Interval,
        1700 => numeric_decode(typmod),
        2950 => return (Some(Decode::Uuid), Some(Semantic::Uuid)),
        _ if name == "citext" => Decode::Text,
        // PostGIS sends and receives EWKB (see [`super::spatial`]).
        _ if name == "geometry" => Decode::Bytea,
        _ => return (None, None),
    };
    (Some(d), None)
}

/// `numeric(p,s)` fits Decimal128 when 1 ≤ p ≤ 38 and 0 ≤ s ≤ p.
fn numeric_decode(typmod: i32) -> Decode {
    if typmod < 4 {
        return Decode::NumericText;
    }
    let t = typmod - 4;
    let precision = (t >> 16) & 0xffff;
    let scale = ((t & 0x7ff) ^ 1024) - 1024;
    if (1..=38).contains(&precision) && (0..=precision).contains(&scale) {
        Decode::Decimal {
            precision: precision as u8,
            scale: scale as i8,
        }
    } else {
        Decode::NumericText
    }
}

/// The binary encoder for a destination column, if the type has one.
pub fn encoder(r: &Resolved) -> Option<Encode> {
    Some(match r.decode.as_ref()? {
        // Points are written from spatial values only ([`super::spatial::encoder`]);
        // anything else is cast from text by the server.
        Decode::Point => return None,
        Decode::Array(e) => Encode::Array(Box::new(encoder_of(e)), r.elem),
        d => encoder_of(d),
    })
}

fn encoder_of(d: &Decode) -> Encode {
    match d {
        Decode::Bool => Encode::Bool,
        Decode::Int16 => Encode::Int16,
        Decode::Int32 => Encode::Int32,
        Decode::Int64 => Encode::Int64,
        Decode::Float32 => Encode::Float32,
        Decode::Float64 => Encode::Float64,
        Decode::Decimal { .. } | Decode::NumericText => Encode::Numeric,
        Decode::Text => Encode::Text,
        Decode::Jsonb => Encode::Jsonb,
        Decode::Bytea => Encode::Bytea,
        Decode::Point => Encode::GeomPoint,
        Decode::Date => Encode::Date,
        Decode::Time => Encode::Time,
        Decode::Timestamp => Encode::Timestamp,
        Decode::TimestampTz => Encode::TimestampTz,
        Decode::Interval => Encode::Interval,
        Decode::Uuid => Encode::Uuid,
        // Nested arrays are read as text, never encoded as arrays.
        Decode::Array(_) => Encode::Text,
    }
}

/// The PostgreSQL type a new column gets for an Arrow field: the source's own
/// type when it came from PostgreSQL, otherwise by Arrow type and meaning.
/// Returns the type and, for conversions worth knowing about, a warning.
pub fn ddl_type(data_type: &DataType, meta: &ColumnMeta) -> Result<(String, Option<String>), String> {
    if let Some(t) = meta.db_type_in("postgres") {
        return Ok((t.to_string(), None));
    }
    let mysql = meta.db_type_in("mysql").map(|t| t.to_ascii_lowercase());
    let t = match (data_type, meta.semantic) {
        (DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View, Some(Semantic::Json)) => "jsonb".into(),
        (DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View, Some(Semantic::Uuid)) => "uuid".into(),
        (DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View, _) => match mysql.as_deref() {
            // MySQL strips the padding of char(n) when read; varchar keeps the value as read.
            Some(m) if m.starts_with("varchar(") || m.starts_with("char(") => {
                let t = m.split_once(' ').map(|(t, _)| t).unwrap_or(m);
                format!("varchar{}", &t[t.find('(').unwrap_or(0)..])
            }
            Some(m) if m.starts_with("decimal(") => m
                .replace("decimal", "numeric")
                .split(' ')
                .next()
                .unwrap_or("numeric")
                .to_string(),
            _ => "text".into(),
        },
        (DataType::Boolean, _) => "boolean".into(),
        (DataType::Int8 | DataType::Int16 | DataType::UInt8, _) => "smallint".into(),
        (DataType::Int32 | DataType::UInt16, _) => "integer".into(),
        (DataType::Int64 | DataType::UInt32, _) => "bigint".into(),
        (DataType::UInt64, Some(Semantic::Bit)) => match mysql.as_deref().and_then(bit_width) {
            Some(n) if n < 64 => "bigint".into(),
            _ => "numeric(20,0)".into(),
        },
        (DataType::UInt64, _) => "numeric(20,0)".into(),
        (DataType::Float16 | DataType::Float32, _) => "real".into(),
        (DataType::Float64, _) => "double precision".into(),
        (DataType::Decimal128(p, s), _) => format!("numeric({p},{s})"),
        (DataType::Decimal256(p, s), _) => format!("numeric({p},{s})"),
        (DataType::Date32 | DataType::Date64, _) => "date".into(),
        (DataType::Time32(_) | DataType::Time64(_), _) => "time".into(),
        (DataType::Timestamp(_, None), _) => "timestamp".into(),
        (DataType::Timestamp(_, Some(_)), _) => "timestamptz".into(),
        (DataType::Interval(_), _) => "interval".into(),
        (DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_), _) => {
            "bytea".into()
        }
        (DataType::List(f) | DataType::LargeList(f), _) => {
            let (inner, warn) = ddl_type(f.data_type(), &ColumnMeta::default())?;
            return Ok((format!("{inner}[]"), warn));
        }
        (other, _) => {
            return Err(format!(
                "no PostgreSQL type for Arrow {}; set one in [sinks.types] or cast the column with a transform",
                sluice_core::types::arrow_type_name(other)
            ));
        }
    };
    let warn = match (meta.semantic, mysql.as_deref()) {
        (Some(Semantic::Enum | Semantic::Set), Some(m)) => Some(format!(
            "MySQL {m} becomes {t}: its allowed values are not enforced; set a type in [sinks.types] to keep them"
        )),
        _ => None,
    };
    Ok((t, warn))
}

/// `n` of a MySQL `bit(n)`.
fn bit_width(db_type: &str) -> Option<u32> {
    db_type.strip_prefix("bit(")?.split(')').next()?.trim().parse().ok()
}

/// Quotes an identifier (`"Order Items"`).
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a string literal.
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `schema.table`, both quoted.
pub fn qualified(schema: &str, table: &str) -> String {
    format!("{}.{}", ident(schema), ident(table))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn numeric_typmods_choose_decimal_or_exact_text() {
        // numeric(12,2) has typmod ((12 << 16) | 2) + 4.
        assert_eq!(
            numeric_decode((12 << 16 | 2) + 4),
            Decode::Decimal {
                precision: 12,
                scale: 2
            }
        );
        assert_eq!(numeric_decode(-1), Decode::NumericText);
        assert_eq!(numeric_decode((50 << 16 | 2) + 4), Decode::NumericText);
    }

    #[test]
    fn arrow_types_map_to_faithful_postgres_types() {
        let plain = ColumnMeta::default();
        let t = |d: DataType, m: &ColumnMeta| ddl_type(&d, m).unwrap().0;
        assert_eq!(t(DataType::UInt64, &plain), "numeric(20,0)");
        assert_eq!(t(DataType::Decimal128(12, 2), &plain), "numeric(12,2)");
        assert_eq!(
            t(
                DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into())),
                &plain
            ),
            "timestamptz"
        );
        let list = DataType::List(Arc::new(arrow::datatypes::Field::new("item", DataType::Int32, true)));
        assert_eq!(t(list, &plain), "integer[]");
        let json = ColumnMeta {
            semantic: Some(Semantic::Json),
            ..Default::default()
        };
        assert_eq!(t(DataType::Utf8, &json), "jsonb");
        let mysql = ColumnMeta {
            dialect: Some("mysql".into()),
            db_type: Some("varchar(40)".into()),
            semantic: None,
        };
        assert_eq!(t(DataType::Utf8, &mysql), "varchar(40)");
        let mysql_char = ColumnMeta {
            dialect: Some("mysql".into()),
            db_type: Some("char(5)".into()),
            semantic: None,
        };
        assert_eq!(t(DataType::Utf8, &mysql_char), "varchar(5)");
        let bit = |n: &str| ColumnMeta {
            dialect: Some("mysql".into()),
            db_type: Some(format!("bit({n})")),
            semantic: Some(Semantic::Bit),
        };
        assert_eq!(t(DataType::UInt64, &bit("1")), "bigint");
        assert_eq!(t(DataType::UInt64, &bit("64")), "numeric(20,0)");
        let pg = ColumnMeta {
            dialect: Some("postgres".into()),
            db_type: Some("character varying(40)".into()),
            semantic: None,
        };
        assert_eq!(t(DataType::Utf8, &pg), "character varying(40)");
        assert!(ddl_type(&DataType::Duration(arrow::datatypes::TimeUnit::Second), &plain).is_err());
    }
}
