//! Type names users write in configs (`int64`, `decimal(12,2)`, `timestamp`)
//! and their Arrow types.

use arrow::datatypes::{DataType, TimeUnit};

/// Parses a type name as written in `schema`, `cast` and `validate` tables.
pub fn parse_type(name: &str) -> Result<DataType, String> {
    let n = name.trim().to_ascii_lowercase();
    let t = match n.as_str() {
        "bool" | "boolean" => DataType::Boolean,
        "int8" | "tinyint" => DataType::Int8,
        "int16" | "smallint" => DataType::Int16,
        "int32" | "int" | "integer" => DataType::Int32,
        "int64" | "bigint" | "long" => DataType::Int64,
        "uint8" => DataType::UInt8,
        "uint16" => DataType::UInt16,
        "uint32" => DataType::UInt32,
        "uint64" => DataType::UInt64,
        "float32" | "float" | "real" => DataType::Float32,
        "float64" | "double" => DataType::Float64,
        "string" | "text" | "utf8" | "varchar" => DataType::Utf8,
        "binary" | "bytes" | "blob" => DataType::Binary,
        "date" => DataType::Date32,
        "time" => DataType::Time64(TimeUnit::Microsecond),
        "timestamp" | "datetime" => DataType::Timestamp(TimeUnit::Microsecond, None),
        "timestamptz" => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        _ => {
            if let Some(args) = n
                .strip_prefix("decimal(")
                .or_else(|| n.strip_prefix("numeric("))
                .and_then(|s| s.strip_suffix(')'))
            {
                let mut parts = args.split(',').map(|p| p.trim().parse::<i64>());
                match (parts.next(), parts.next(), parts.next()) {
                    (Some(Ok(p)), Some(Ok(s)), None) if (1..=38).contains(&p) && (0..=p).contains(&s) => {
                        DataType::Decimal128(p as u8, s as i8)
                    }
                    (Some(Ok(p)), None, None) if (1..=38).contains(&p) => DataType::Decimal128(p as u8, 0),
                    _ => {
                        return Err(format!(
                            "`{name}`: decimal takes a precision 1-38 and a scale 0..=precision, as in decimal(12,2)"
                        ));
                    }
                }
            } else {
                return Err(format!(
                    "unknown type `{name}`; use one of bool, int8, int16, int32, int64, uint8..uint64, float32, float64, \
                     string, binary, date, time, timestamp, timestamptz, decimal(p,s)"
                ));
            }
        }
    };
    Ok(t)
}

/// The config name of an Arrow type, for `sluice list` and messages.
pub fn arrow_type_name(t: &DataType) -> String {
    match t {
        DataType::Boolean => "bool".into(),
        DataType::Int8 => "int8".into(),
        DataType::Int16 => "int16".into(),
        DataType::Int32 => "int32".into(),
        DataType::Int64 => "int64".into(),
        DataType::UInt8 => "uint8".into(),
        DataType::UInt16 => "uint16".into(),
        DataType::UInt32 => "uint32".into(),
        DataType::UInt64 => "uint64".into(),
        DataType::Float32 => "float32".into(),
        DataType::Float64 => "float64".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string".into(),
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Timestamp(_, None) => "timestamp".into(),
        DataType::Timestamp(_, Some(_)) => "timestamptz".into(),
        DataType::Decimal128(p, s) => format!("decimal({p},{s})"),
        other => other.to_string().to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_user_type_names() {
        assert_eq!(parse_type("BIGINT").unwrap(), DataType::Int64);
        assert_eq!(parse_type("decimal(12, 2)").unwrap(), DataType::Decimal128(12, 2));
        assert!(parse_type("decimal(40,2)").unwrap_err().contains("precision"));
        assert!(parse_type("intt").unwrap_err().contains("unknown type `intt`"));
    }
}
