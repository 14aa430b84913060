//! Type mapping both ways: MySQL column types → Arrow fields (with
//! [`ColumnMeta`]), and Arrow fields → MySQL DDL for tables the sink creates.

use arrow::datatypes::{DataType, Field, TimeUnit};
use mysql_async::Column;
use mysql_async::consts::{ColumnFlags, ColumnType};
use sluice_core::dbmeta::{ColumnMeta, ENUM_LABELS, Semantic};

use super::decode::timestamp_type;

/// Dialect name recorded in field and table metadata.
pub(crate) const DIALECT: &str = "mysql";

/// Widest decimal an Arrow `Decimal128` holds; wider ones travel as exact text.
const MAX_DECIMAL128: u64 = 38;

/// A column as `information_schema.COLUMNS` describes it.
#[derive(Debug, Clone, Default)]
pub(crate) struct ColumnInfo {
    pub name: String,
    /// `DATA_TYPE`, lowercase (`int`, `varchar`).
    pub data_type: String,
    /// `COLUMN_TYPE` (`int(10) unsigned`, `enum('a','b')`).
    pub column_type: String,
    pub nullable: bool,
    pub precision: Option<u64>,
    pub scale: Option<u64>,
    /// Declared JSON: MySQL's `json`, or MariaDB's `longtext` checked by `json_valid`.
    pub json: bool,
}

/// The Arrow field for a table column, with its [`ColumnMeta`].
pub(crate) fn field_for_column(c: &ColumnInfo) -> Field {
    let unsigned = c.column_type.to_ascii_lowercase().contains("unsigned");
    let int = |signed: DataType, uns: DataType| if unsigned { uns } else { signed };
    let (t, semantic) = match c.data_type.as_str() {
        "tinyint" => (int(DataType::Int8, DataType::UInt8), None),
        "smallint" => (int(DataType::Int16, DataType::UInt16), None),
        "mediumint" | "int" | "integer" => (int(DataType::Int32, DataType::UInt32), None),
        "bigint" => (int(DataType::Int64, DataType::UInt64), None),
        "decimal" | "numeric" => {
            let p = c.precision.unwrap_or(10);
            let s = c.scale.unwrap_or(0);
            if p <= MAX_DECIMAL128 && s <= p {
                (DataType::Decimal128(p as u8, s as i8), None)
            } else {
                (DataType::Utf8, None)
            }
        }
        "float" => (DataType::Float32, None),
        "double" | "real" | "double precision" => (DataType::Float64, None),
        "json" => (DataType::Utf8, Some(Semantic::Json)),
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" if c.json => {
            (DataType::Utf8, Some(Semantic::Json))
        }
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" => (DataType::Utf8, None),
        "enum" => (DataType::Utf8, Some(Semantic::Enum)),
        "set" => (DataType::Utf8, Some(Semantic::Set)),
        "uuid" => (DataType::Utf8, Some(Semantic::Uuid)),
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => (DataType::Binary, None),
        "date" => (DataType::Date32, None),
        "datetime" => (timestamp_type(false), None),
        "timestamp" => (timestamp_type(true), None),
        "time" => (DataType::Time64(TimeUnit::Microsecond), None),
        "year" => (DataType::Int16, Some(Semantic::Year)),
        "bit" => (DataType::UInt64, Some(Semantic::Bit)),
        "geometry" | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring" | "multipolygon"
        | "geometrycollection" | "geomcollection" => (DataType::Binary, None),
        // inet4, inet6, vector and whatever comes next: the server's text form.
        _ => (DataType::Utf8, Some(Semantic::Text)),
    };
    // MariaDB reports JSON as longtext; recording `json` lets a MySQL or
    // MariaDB sink declare it as JSON again (with its validity check).
    let db_type = if semantic == Some(Semantic::Json) {
        "json".to_string()
    } else {
        c.column_type.clone()
    };
    let meta = ColumnMeta {
        dialect: Some(DIALECT.into()),
        db_type: Some(db_type),
        semantic,
    };
    let mut md = meta.to_metadata();
    md.extend(super::spatial::column_meta(&c.data_type));
    if semantic == Some(Semantic::Enum)
        && let Some(labels) = enum_labels(&c.column_type)
    {
        md.insert(ENUM_LABELS.into(), serde_json::to_string(&labels).unwrap_or_default());
    }
    Field::new(&c.name, t, c.nullable).with_metadata(md)
}

/// The labels of an `enum('a','b')` column type, in order (a quote inside
/// a label is doubled); `None` when the text is not one.
fn enum_labels(column_type: &str) -> Option<Vec<String>> {
    let body = column_type.strip_prefix("enum(")?.strip_suffix(')')?;
    let mut labels = Vec::new();
    let mut chars = body.chars().peekable();
    loop {
        if chars.next()? != '\'' {
            return None;
        }
        let mut label = String::new();
        loop {
            match chars.next()? {
                '\'' if chars.peek() == Some(&'\'') => {
                    chars.next();
                    label.push('\'');
                }
                '\'' => break,
                c => label.push(c),
            }
        }
        labels.push(label);
        match chars.next() {
            None => return Some(labels),
            Some(',') => continue,
            Some(_) => return None,
        }
    }
}

/// Whether a `CHECK` clause is MariaDB's JSON check on `column`.
pub(crate) fn is_json_check(clause: &str, column: &str) -> bool {
    let c = clause.to_ascii_lowercase().replace(' ', "");
    c == format!("json_valid(`{}`)", column.to_ascii_lowercase().replace('`', "``"))
}

/// The Arrow field for a column of a query's result, from the result metadata.
pub(crate) fn field_for_result_column(c: &Column) -> Field {
    let flags = c.flags();
    let unsigned = flags.contains(ColumnFlags::UNSIGNED_FLAG);
    let int = |signed: DataType, uns: DataType| if unsigned { uns } else { signed };
    let binary = c.character_set() == 63;
    let (t, semantic) = match c.column_type() {
        ColumnType::MYSQL_TYPE_TINY => (int(DataType::Int8, DataType::UInt8), None),
        ColumnType::MYSQL_TYPE_SHORT => (int(DataType::Int16, DataType::UInt16), None),
        ColumnType::MYSQL_TYPE_INT24 | ColumnType::MYSQL_TYPE_LONG => (int(DataType::Int32, DataType::UInt32), None),
        ColumnType::MYSQL_TYPE_LONGLONG => (int(DataType::Int64, DataType::UInt64), None),
        ColumnType::MYSQL_TYPE_YEAR => (DataType::Int16, Some(Semantic::Year)),
        ColumnType::MYSQL_TYPE_DECIMAL | ColumnType::MYSQL_TYPE_NEWDECIMAL => {
            // The display length counts the sign and the point.
            let s = u64::from(c.decimals());
            let p = u64::from(c.column_length())
                .saturating_sub(u64::from(s > 0))
                .saturating_sub(u64::from(!unsigned))
                .max(s)
                .max(1);
            if p <= MAX_DECIMAL128 {
                (DataType::Decimal128(p as u8, s as i8), None)
            } else {
                (DataType::Utf8, None)
            }
        }
        ColumnType::MYSQL_TYPE_FLOAT => (DataType::Float32, None),
        ColumnType::MYSQL_TYPE_DOUBLE => (DataType::Float64, None),
        ColumnType::MYSQL_TYPE_DATE | ColumnType::MYSQL_TYPE_NEWDATE => (DataType::Date32, None),
        ColumnType::MYSQL_TYPE_DATETIME | ColumnType::MYSQL_TYPE_DATETIME2 => (timestamp_type(false), None),
        ColumnType::MYSQL_TYPE_TIMESTAMP | ColumnType::MYSQL_TYPE_TIMESTAMP2 => (timestamp_type(true), None),
        ColumnType::MYSQL_TYPE_TIME | ColumnType::MYSQL_TYPE_TIME2 => (DataType::Time64(TimeUnit::Microsecond), None),
        ColumnType::MYSQL_TYPE_BIT => (DataType::UInt64, Some(Semantic::Bit)),
        ColumnType::MYSQL_TYPE_JSON => (DataType::Utf8, Some(Semantic::Json)),
        ColumnType::MYSQL_TYPE_ENUM => (DataType::Utf8, Some(Semantic::Enum)),
        ColumnType::MYSQL_TYPE_SET => (DataType::Utf8, Some(Semantic::Set)),
        ColumnType::MYSQL_TYPE_GEOMETRY => (DataType::Binary, None),
        _ if flags.contains(ColumnFlags::ENUM_FLAG) => (DataType::Utf8, Some(Semantic::Enum)),
        _ if flags.contains(ColumnFlags::SET_FLAG) => (DataType::Utf8, Some(Semantic::Set)),
        _ if binary => (DataType::Binary, None),
        _ => (DataType::Utf8, None),
    };
    let meta = ColumnMeta {
        semantic,
        ..Default::default()
    };
    let mut md = meta.to_metadata();
    if c.column_type() == ColumnType::MYSQL_TYPE_GEOMETRY {
        md.extend(super::spatial::column_meta("geometry"));
    }
    Field::new(c.name_str(), t, true).with_metadata(md)
}

/// A column type chosen for a created table, and a warning to log once.
#[derive(Debug, PartialEq)]
pub(crate) struct Ddl {
    pub sql_type: String,
    pub warning: Option<String>,
}

/// The MySQL type for `field` in a created table. `in_key`: the column is
/// part of the primary key or an index, so unbounded text gets a length.
/// An `Err` is a message telling the user which override to add.
pub(crate) fn ddl_for_field(field: &Field, in_key: bool) -> Result<Ddl, String> {
    if let Some(sql_type) = super::spatial::ddl(field) {
        return Ok(Ddl {
            sql_type,
            warning: None,
        });
    }
    let meta = ColumnMeta::of(field);
    if let Some(t) = meta.db_type_in(DIALECT) {
        return Ok(Ddl {
            sql_type: t.to_string(),
            warning: None,
        });
    }
    let name = field.name();
    let plain = |t: &str| {
        Ok(Ddl {
            sql_type: t.to_string(),
            warning: None,
        })
    };
    let warn = |t: &str, w: String| {
        Ok(Ddl {
            sql_type: t.to_string(),
            warning: Some(w),
        })
    };
    match field.data_type() {
        DataType::Int16 if meta.semantic == Some(Semantic::Year) => plain("year"),
        DataType::UInt64 if meta.semantic == Some(Semantic::Bit) => plain("bit(64)"),
        DataType::Int8 => plain("tinyint"),
        DataType::Int16 => plain("smallint"),
        DataType::Int32 => plain("int"),
        DataType::Int64 => plain("bigint"),
        DataType::UInt8 => plain("tinyint unsigned"),
        DataType::UInt16 => plain("smallint unsigned"),
        DataType::UInt32 => plain("int unsigned"),
        DataType::UInt64 => plain("bigint unsigned"),
        DataType::Float16 | DataType::Float32 => plain("float"),
        DataType::Float64 => plain("double"),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) if *p <= 65 && *s >= 0 && *s <= 30 => {
            plain(&format!("decimal({p},{s})"))
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => match meta.semantic {
            Some(Semantic::Json) => plain("json"),
            Some(Semantic::Uuid) => plain("char(36)"),
            Some(Semantic::Enum) | Some(Semantic::Set) => warn(
                "varchar(255)",
                format!(
                    "column `{name}`: {} stored as varchar(255): its allowed values are not enforced; set \
                     an enum(...) type under [sinks.types] to keep them",
                    meta.db_type.as_deref().unwrap_or("enum")
                ),
            ),
            // Decimals wider than Arrow's 38 digits travel as exact text.
            _ if meta
                .db_type_in("postgres")
                .is_some_and(|t| t.to_ascii_lowercase().starts_with("numeric")) =>
            {
                warn(
                    if in_key { "varchar(255)" } else { "longtext" },
                    format!(
                        "column `{name}`: PostgreSQL {} stored as its exact text; set decimal(p,s) under \
                         [sinks.types] for a numeric column",
                        meta.db_type.as_deref().unwrap_or("numeric")
                    ),
                )
            }
            _ if in_key => plain("varchar(255)"),
            _ => plain("longtext"),
        },
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView if in_key => plain("varbinary(255)"),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => plain("longblob"),
        DataType::FixedSizeBinary(n) if *n <= 255 => plain(&format!("binary({n})")),
        DataType::FixedSizeBinary(_) => plain("longblob"),
        DataType::Boolean => warn(
            "tinyint(1)",
            format!("column `{name}`: boolean stored as tinyint(1), MySQL's boolean (0 or 1)"),
        ),
        DataType::Date32 | DataType::Date64 => plain("date"),
        DataType::Time32(_) | DataType::Time64(_) => plain("time(6)"),
        DataType::Timestamp(_, None) => plain("datetime(6)"),
        DataType::Timestamp(_, Some(_)) => warn(
            "datetime(6)",
            format!("column `{name}`: timestamptz stored as UTC datetime(6)"),
        ),
        DataType::List(_)
        | DataType::LargeList(_)
        | DataType::FixedSizeList(_, _)
        | DataType::Struct(_)
        | DataType::Map(_, _) => warn(
            "json",
            format!("column `{name}`: nested values stored as JSON documents"),
        ),
        DataType::Interval(_) => Err(format!(
            "column `{name}`: MySQL has no interval type; add an override such as `{name} = \"varchar(64)\"` \
             under [sinks.types] to store it as PostgreSQL interval text"
        )),
        other => Err(format!(
            "column `{name}`: no MySQL type for Arrow {other}; add an override such as `{name} = \"longtext\"` \
             under [sinks.types]"
        )),
    }
}

/// Whether a DDL type is unbounded text or blob, which MySQL indexes only by prefix.
pub(crate) fn is_lob(sql_type: &str) -> bool {
    let t = sql_type.trim().to_ascii_lowercase();
    t.ends_with("text") || t.ends_with("blob") || t == "json"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_labels_are_read_in_order_with_their_quotes() {
        assert_eq!(
            enum_labels("enum('G','PG','NC-17')"),
            Some(vec!["G".into(), "PG".into(), "NC-17".into()])
        );
        assert_eq!(enum_labels("enum('it''s','a,b')"), Some(vec!["it's".into(), "a,b".into()]));
        assert_eq!(enum_labels("set('a')"), None);
        assert_eq!(enum_labels("enum('a'"), None);
    }


    fn col(data_type: &str, column_type: &str) -> ColumnInfo {
        ColumnInfo {
            name: "c".into(),
            data_type: data_type.into(),
            column_type: column_type.into(),
            nullable: true,
            ..Default::default()
        }
    }

    #[test]
    fn mysql_types_map_to_arrow() {
        let t = |d: &str, c: &str| field_for_column(&col(d, c)).data_type().clone();
        assert_eq!(t("tinyint", "tinyint(1)"), DataType::Int8);
        assert_eq!(t("tinyint", "tinyint(3) unsigned"), DataType::UInt8);
        assert_eq!(t("mediumint", "mediumint(8) unsigned"), DataType::UInt32);
        assert_eq!(t("bigint", "bigint(20) unsigned"), DataType::UInt64);
        let mut d = col("decimal", "decimal(12,2)");
        (d.precision, d.scale) = (Some(12), Some(2));
        assert_eq!(field_for_column(&d).data_type(), &DataType::Decimal128(12, 2));
        (d.precision, d.scale, d.column_type) = (Some(65), Some(30), "decimal(65,30)".into());
        let wide = field_for_column(&d);
        assert_eq!(wide.data_type(), &DataType::Utf8);
        assert_eq!(ColumnMeta::of(&wide).db_type.as_deref(), Some("decimal(65,30)"));
        let y = field_for_column(&col("year", "year(4)"));
        assert_eq!(
            (y.data_type(), ColumnMeta::of(&y).semantic),
            (&DataType::Int16, Some(Semantic::Year))
        );
        let mut j = col("longtext", "longtext");
        j.json = true;
        assert_eq!(ColumnMeta::of(&field_for_column(&j)).semantic, Some(Semantic::Json));
        assert_eq!(t("timestamp", "timestamp(6)"), timestamp_type(true));
        assert!(is_json_check("json_valid(`c`)", "c"));
        assert!(!is_json_check("json_valid(`cd`)", "c"));
    }

    #[test]
    fn arrow_types_map_to_ddl() {
        let ddl = |t: DataType, key: bool| ddl_for_field(&Field::new("x", t, true), key).map(|d| d.sql_type);
        assert_eq!(ddl(DataType::UInt16, false).as_deref(), Ok("smallint unsigned"));
        assert_eq!(ddl(DataType::Utf8, false).as_deref(), Ok("longtext"));
        assert_eq!(ddl(DataType::Utf8, true).as_deref(), Ok("varchar(255)"));
        assert_eq!(ddl(DataType::Decimal128(12, 2), false).as_deref(), Ok("decimal(12,2)"));
        let tz = ddl_for_field(&Field::new("x", timestamp_type(true), true), false).unwrap();
        assert!(tz.warning.unwrap().contains("timestamptz stored as UTC"));
        let interval = ddl(DataType::Interval(arrow::datatypes::IntervalUnit::MonthDayNano), false);
        assert!(interval.unwrap_err().contains("[sinks.types]"));
        let faithful = Field::new("x", DataType::Utf8, true).with_metadata(
            ColumnMeta {
                dialect: Some("mysql".into()),
                db_type: Some("enum('a','b')".into()),
                semantic: Some(Semantic::Enum),
            }
            .to_metadata(),
        );
        assert_eq!(ddl_for_field(&faithful, false).unwrap().sql_type, "enum('a','b')");
    }
}
