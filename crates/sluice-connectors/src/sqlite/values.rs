//! SQLite values into Arrow: the column type chosen from a declared type, and
//! the conversion of each stored value, which may be refused.
//!
//! SQLite stores any value in any column; the declared type only gives the
//! column an affinity. The type is chosen by SQLite's affinity rules, except
//! where they leave the meaning vague: `DATETIME`/`TIMESTAMP`/`DATE`,
//! `NUMERIC(p,s)`/`DECIMAL(p,s)` and `BOOLEAN` are read by their names. A
//! value that does not fit the chosen type (`'abc'` in a `NUMERIC(10,2)`
//! column, `'2021-13-45'` in a `DATETIME` one) is refused with its row, never
//! turned into text.

use arrow::array::{
    ArrayBuilder, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float64Builder, Int64Builder,
    StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, TimeUnit};
use rusqlite::types::ValueRef;

/// Widest decimal an Arrow `Decimal128` holds.
const MAX_DECIMAL128: u32 = 38;

/// Arrow type for a declared SQLite type.
pub(super) fn arrow_type(decl: Option<&str>) -> DataType {
    let d = decl.unwrap_or("").trim().to_ascii_uppercase();
    // The name before any `(…)`, with its words: `TIMESTAMP WITH TIME ZONE`.
    let base = d.split('(').next().unwrap_or("").trim();
    let words: Vec<&str> = base.split_whitespace().collect();
    if d.contains("INT") {
        // SQLite's first rule, whatever the rest of the name says.
        DataType::Int64
    } else if base == "DATETIME" || base == "TIMESTAMPTZ" || words.starts_with(&["TIMESTAMP", "WITH"]) {
        // Values are UTC by SQLite's convention (CURRENT_TIMESTAMP, datetime('now')).
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    } else if words.first() == Some(&"TIMESTAMP") {
        DataType::Timestamp(TimeUnit::Microsecond, None)
    } else if base == "DATE" {
        DataType::Date32
    } else if let Some((p, s)) = decimal_typmod(&d) {
        DataType::Decimal128(p, s)
    } else if d.contains("BOOL") {
        DataType::Boolean
    } else if d.contains("CHAR") || d.contains("CLOB") || d.contains("TEXT") {
        DataType::Utf8
    } else if d.contains("BLOB") {
        DataType::Binary
    } else if d.contains("REAL") || d.contains("FLOA") || d.contains("DOUB") {
        DataType::Float64
    } else {
        // NUMERIC and DECIMAL without a precision, and untyped columns:
        // text keeps every value exact.
        DataType::Utf8
    }
}

/// `(p, s)` of `NUMERIC(p,s)`, `DECIMAL(p)` and the like, when Decimal128 holds it.
fn decimal_typmod(upper: &str) -> Option<(u8, i8)> {
    let (name, rest) = upper.split_once('(')?;
    if !matches!(name.trim(), "NUMERIC" | "DECIMAL" | "DEC") {
        return None;
    }
    let args = rest.split(')').next()?;
    let mut parts = args.split(',').map(|a| a.trim().parse::<u32>());
    let p = parts.next()?.ok()?;
    let s = match parts.next() {
        Some(s) => s.ok()?,
        None => 0,
    };
    if parts.next().is_some() || p == 0 || p > MAX_DECIMAL128 || s > p {
        return None;
    }
    Some((p as u8, s as i8))
}

/// A value converted to its column's type.
pub(super) enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Bool(bool),
    Text(String),
    Blob(Vec<u8>),
    /// Unscaled decimal.
    Decimal(i128),
    /// Microseconds since the epoch.
    Micros(i64),
    /// Days since the epoch.
    Days(i32),
}

/// How a stored value is shown in a rejection.
pub(super) fn show(v: ValueRef<'_>) -> String {
    match v {
        ValueRef::Text(s) => format!("text '{}'", String::from_utf8_lossy(s)),
        ValueRef::Real(f) => format!("real {f}"),
        ValueRef::Integer(i) => format!("integer {i}"),
        ValueRef::Blob(b) => format!("blob of {} bytes", b.len()),
        ValueRef::Null => "null".into(),
    }
}

/// The stored value as JSON, for the dead-letter record of a refused row.
pub(super) fn to_json(v: ValueRef<'_>) -> serde_json::Value {
    match v {
        ValueRef::Null => serde_json::Value::Null,
        ValueRef::Integer(i) => i.into(),
        ValueRef::Real(f) => serde_json::Number::from_f64(f).map_or_else(|| f.to_string().into(), Into::into),
        ValueRef::Text(s) => String::from_utf8_lossy(s).into_owned().into(),
        ValueRef::Blob(b) => {
            let hex: String = b.iter().map(|x| format!("{x:02X}")).collect();
            format!("x'{hex}'").into()
        }
    }
}

/// Converts a stored value to the column's Arrow type, or says why it does not fit.
pub(super) fn convert(v: ValueRef<'_>, t: &DataType) -> Result<Cell, String> {
    let misfit = || format!("{} does not fit the declared type", show(v));
    Ok(match (v, t) {
        (ValueRef::Null, _) => Cell::Null,
        (ValueRef::Integer(i), DataType::Int64) => Cell::Int(i),
        (ValueRef::Integer(i), DataType::Float64) => Cell::Real(i as f64),
        (ValueRef::Real(f), DataType::Float64) => Cell::Real(f),
        (ValueRef::Integer(i), DataType::Boolean) if i == 0 || i == 1 => Cell::Bool(i == 1),
        (ValueRef::Text(s), DataType::Boolean) => Cell::Bool(boolean(s).ok_or_else(|| {
            format!(
                "{} is not a boolean (0, 1, true, false, t, f, yes, no, on, off)",
                show(v)
            )
        })?),
        (ValueRef::Integer(i), DataType::Utf8) => Cell::Text(i.to_string()),
        (ValueRef::Real(f), DataType::Utf8) => Cell::Text(f.to_string()),
        (ValueRef::Text(s), DataType::Utf8) => {
            Cell::Text(String::from_utf8(s.to_vec()).map_err(|_| "text is not valid UTF-8".to_string())?)
        }
        (ValueRef::Blob(b), DataType::Utf8) => Cell::Text(
            String::from_utf8(b.to_vec()).map_err(|_| "blob in a text column is not valid UTF-8".to_string())?,
        ),
        (ValueRef::Blob(b) | ValueRef::Text(b), DataType::Binary) => Cell::Blob(b.to_vec()),
        (_, DataType::Decimal128(p, s)) => Cell::Decimal(decimal(v, *p, *s)?),
        (_, DataType::Timestamp(_, _)) => {
            let text = time_text(v, "date and time")?;
            Cell::Micros(parse_timestamp(text).map_err(|why| format!("{} {why}", show(v)))?)
        }
        (_, DataType::Date32) => {
            let text = time_text(v, "date")?;
            Cell::Days(parse_date(text).map_err(|why| format!("{} {why}", show(v)))?)
        }
        _ => return Err(misfit()),
    })
}

fn boolean(s: &[u8]) -> Option<bool> {
    let s = std::str::from_utf8(s).ok()?.trim().to_ascii_lowercase();
    match s.as_str() {
        "1" | "true" | "t" | "yes" | "y" | "on" => Some(true),
        "0" | "false" | "f" | "no" | "n" | "off" => Some(false),
        _ => None,
    }
}

/// The text of a date or time value; numbers are refused, since SQLite reads
/// them as Julian days while applications often store Unix time.
fn time_text<'a>(v: ValueRef<'a>, what: &str) -> Result<&'a str, String> {
    match v {
        ValueRef::Text(s) => std::str::from_utf8(s).map_err(|_| "text is not valid UTF-8".to_string()),
        ValueRef::Integer(_) | ValueRef::Real(_) => Err(format!(
            "{} is not a {what} text: it may be Unix time or a Julian day; read the table with a query \
             converting it (datetime(col, 'unixepoch') or datetime(col))",
            show(v)
        )),
        _ => Err(format!("{} is not a {what}", show(v))),
    }
}

/// The unscaled value of `v` in a `DECIMAL(p,s)`.
fn decimal(v: ValueRef<'_>, p: u8, s: i8) -> Result<i128, String> {
    if let ValueRef::Real(f) = v
        && let Some(d) = real_decimal(f, p, s)
    {
        return Ok(d);
    }
    let text = match v {
        ValueRef::Integer(i) => i.to_string(),
        // 15 significant digits, what a double holds exactly (SQLite prints
        // reals the same way): 1.98 stored as 1.97999… reads as 1.98.
        ValueRef::Real(f) if f.is_finite() => format!("{f:.14e}"),
        ValueRef::Text(t) => String::from_utf8_lossy(t).trim().to_string(),
        _ => return Err(format!("{} is not a number", show(v))),
    };
    parse_decimal(&text, p, s).map_err(|why| format!("{} {why}", show(v)))
}

/// The common case without formatting: a real that is exactly the double
/// nearest to a decimal of scale `s` (1.98, 12.5) gives that decimal. `None`
/// sends the value through the decimal text, which also explains a refusal.
fn real_decimal(f: f64, p: u8, s: i8) -> Option<i128> {
    if s > 22 {
        // 10^s is no longer an exact double.
        return None;
    }
    let pow = 10f64.powi(i32::from(s));
    let scaled = (f * pow).round();
    // Below 10^15 the unscaled value and the quotient are exact doubles.
    if !scaled.is_finite() || scaled.abs() >= 1e15 || scaled / pow != f {
        return None;
    }
    let d = scaled as i128;
    (d.unsigned_abs() < 10u128.pow(u32::from(p))).then_some(d)
}

/// Parses decimal text (`-12.50`, `1.2e3`) into an unscaled `DECIMAL(p,s)`
/// value, exactly: digits beyond the scale must be zeros.
pub(super) fn parse_decimal(text: &str, p: u8, s: i8) -> Result<i128, String> {
    let not_number = || "is not a number".to_string();
    let (negative, rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(i) => (
            &rest[..i],
            rest[i + 1..].parse::<i64>().map_err(|_| not_number())?,
        ),
        None => (rest, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || exponent.abs() > 1000
    {
        return Err(not_number());
    }
    let mut digits: Vec<u8> = int.bytes().chain(frac.bytes()).map(|b| b - b'0').collect();
    // The value is digits × 10^shift once scaled by 10^s.
    let shift = exponent - frac.len() as i64 + i64::from(s);
    if shift < 0 {
        let cut = (-shift) as usize;
        let keep = digits.len().saturating_sub(cut);
        if digits[keep..].iter().any(|d| *d != 0) {
            return Err(format!(
                "has more than {s} decimal places; round it in a query (round(col, {s})) to load it"
            ));
        }
        digits.truncate(keep);
    } else {
        digits.extend(std::iter::repeat_n(0, shift as usize));
    }
    let first = digits.iter().position(|d| *d != 0).unwrap_or(digits.len());
    let digits = &digits[first..];
    if digits.len() > usize::from(p) {
        return Err(format!(
            "does not fit NUMERIC({p},{s}): at most {} digits before the point",
            i16::from(p) - i16::from(s)
        ));
    }
    let value = digits.iter().fold(0i128, |acc, d| acc * 10 + i128::from(*d));
    Ok(if negative { -value } else { value })
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

/// A SQLite time value split up: `YYYY-MM-DD[( |T)HH:MM[:SS[.SSS…]]][Z|±HH:MM]`.
struct Parts {
    days: i64,
    /// Microseconds into the day, as written.
    micros: i64,
    /// Offset east of UTC, in seconds, when one is written.
    offset: Option<i64>,
}

fn parse_parts(text: &str) -> Result<Parts, String> {
    let bad = || "is not a date and time SQLite understands (YYYY-MM-DD HH:MM:SS)".to_string();
    let b = text.trim().as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let s = b.get(from..from + len)?;
        s.iter()
            .all(u8::is_ascii_digit)
            .then(|| s.iter().fold(0i64, |a, d| a * 10 + i64::from(d - b'0')))
    };
    let (year, month, day) = match (num(0, 4), b.get(4), num(5, 2), b.get(7), num(8, 2)) {
        (Some(y), Some(b'-'), Some(m), Some(b'-'), Some(d)) => (y, m as u32, d as u32),
        _ => return Err(bad()),
    };
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return Err(format!("is not a valid date (month {month}, day {day})"));
    }
    let mut i = 10;
    let mut micros = 0i64;
    if matches!(b.get(i), Some(b' ' | b'T')) && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
        let (Some(h), Some(b':'), Some(m)) = (num(i + 1, 2), b.get(i + 3), num(i + 4, 2)) else {
            return Err(bad());
        };
        i += 6;
        let mut sec = 0;
        if b.get(i) == Some(&b':') {
            sec = num(i + 1, 2).ok_or_else(bad)?;
            i += 3;
            if b.get(i) == Some(&b'.') {
                let start = i + 1;
                let mut end = start;
                while b.get(end).is_some_and(u8::is_ascii_digit) {
                    end += 1;
                }
                if end == start {
                    return Err(bad());
                }
                let frac = &b[start..end];
                if frac.len() > 6 && frac[6..].iter().any(|d| *d != b'0') {
                    return Err("has a fraction of a second finer than microseconds".into());
                }
                let mut us = 0i64;
                for k in 0..6 {
                    us = us * 10 + frac.get(k).map_or(0, |d| i64::from(d - b'0'));
                }
                micros = us;
                i = end;
            }
        }
        if h > 23 || m > 59 || sec > 59 {
            return Err(format!("is not a valid time of day ({h:02}:{m:02}:{sec:02})"));
        }
        micros += ((h * 60 + m) * 60 + sec) * 1_000_000;
    }
    if b.get(i) == Some(&b' ') && matches!(b.get(i + 1), Some(b'+' | b'-' | b'Z' | b'z')) {
        i += 1;
    }
    let offset = match b.get(i) {
        None => None,
        Some(b'Z' | b'z') if i + 1 == b.len() => Some(0),
        Some(sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let (Some(h), Some(m)) = (num(i + 1, 2), num(i + 4, 2)) else {
                return Err(bad());
            };
            if h > 14 || m > 59 {
                return Err(bad());
            }
            let secs = (h * 60 + m) * 60;
            Some(if *sign == b'-' { -secs } else { secs })
        }
        _ => return Err(bad()),
    };
    Ok(Parts {
        days: days_from_civil(year, month, day),
        micros,
        offset,
    })
}

/// Microseconds since the epoch; a written offset is applied (the result is
/// UTC), as SQLite's own date functions do.
pub(super) fn parse_timestamp(text: &str) -> Result<i64, String> {
    let p = parse_parts(text)?;
    Ok(p.days * 86_400_000_000 + p.micros - p.offset.unwrap_or(0) * 1_000_000)
}

/// Days since the epoch; a time of day other than midnight is refused, since
/// a `DATE` column would drop it.
pub(super) fn parse_date(text: &str) -> Result<i32, String> {
    let p = parse_parts(text)?;
    if p.micros != 0 || p.offset.is_some_and(|o| o != 0) {
        return Err("has a time of day, which a DATE column would drop".into());
    }
    i32::try_from(p.days).map_err(|_| "is out of range for a date".to_string())
}

/// A builder for a column of type `t`.
pub(super) fn new_builder(t: &DataType) -> Box<dyn ArrayBuilder> {
    match t {
        DataType::Int64 => Box::new(Int64Builder::new()),
        DataType::Float64 => Box::new(Float64Builder::new()),
        DataType::Boolean => Box::new(BooleanBuilder::new()),
        DataType::Binary => Box::new(BinaryBuilder::new()),
        DataType::Decimal128(p, s) => Box::new(
            Decimal128Builder::new()
                .with_precision_and_scale(*p, *s)
                .unwrap_or_default(),
        ),
        DataType::Timestamp(_, tz) => Box::new(TimestampMicrosecondBuilder::new().with_timezone_opt(tz.clone())),
        DataType::Date32 => Box::new(Date32Builder::new()),
        _ => Box::new(StringBuilder::new()),
    }
}

/// Appends a converted value (or a null when it is not of the builder's kind).
pub(super) fn push(b: &mut dyn ArrayBuilder, v: Cell) {
    let any = b.as_any_mut();
    if let Some(b) = any.downcast_mut::<Int64Builder>() {
        b.append_option(if let Cell::Int(i) = v { Some(i) } else { None });
    } else if let Some(b) = any.downcast_mut::<Float64Builder>() {
        b.append_option(if let Cell::Real(f) = v { Some(f) } else { None });
    } else if let Some(b) = any.downcast_mut::<BooleanBuilder>() {
        b.append_option(if let Cell::Bool(x) = v { Some(x) } else { None });
    } else if let Some(b) = any.downcast_mut::<BinaryBuilder>() {
        b.append_option(if let Cell::Blob(x) = v { Some(x) } else { None });
    } else if let Some(b) = any.downcast_mut::<Decimal128Builder>() {
        b.append_option(if let Cell::Decimal(x) = v { Some(x) } else { None });
    } else if let Some(b) = any.downcast_mut::<TimestampMicrosecondBuilder>() {
        b.append_option(if let Cell::Micros(x) = v { Some(x) } else { None });
    } else if let Some(b) = any.downcast_mut::<Date32Builder>() {
        b.append_option(if let Cell::Days(x) = v { Some(x) } else { None });
    } else if let Some(b) = any.downcast_mut::<StringBuilder>() {
        b.append_option(if let Cell::Text(x) = v { Some(x) } else { None });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_types_are_read_by_name_where_affinity_is_vague() {
        let ts_utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        assert_eq!(arrow_type(Some("DATETIME")), ts_utc);
        assert_eq!(arrow_type(Some("timestamp with time zone")), ts_utc);
        assert_eq!(
            arrow_type(Some("TIMESTAMP")),
            DataType::Timestamp(TimeUnit::Microsecond, None)
        );
        assert_eq!(arrow_type(Some("date")), DataType::Date32);
        assert_eq!(arrow_type(Some("NUMERIC(10,2)")), DataType::Decimal128(10, 2));
        assert_eq!(arrow_type(Some("decimal( 12 , 4 )")), DataType::Decimal128(12, 4));
        assert_eq!(arrow_type(Some("DECIMAL(7)")), DataType::Decimal128(7, 0));
        assert_eq!(arrow_type(Some("NUMERIC(60,2)")), DataType::Utf8);
        assert_eq!(arrow_type(Some("NUMERIC")), DataType::Utf8);
        assert_eq!(arrow_type(Some("BOOLEAN")), DataType::Boolean);
        assert_eq!(arrow_type(Some("NVARCHAR(160)")), DataType::Utf8);
        assert_eq!(arrow_type(Some("INTEGER")), DataType::Int64);
        // SQLite's rule: INT anywhere in the name is an integer.
        assert_eq!(arrow_type(Some("POINT")), DataType::Int64);
        assert_eq!(arrow_type(Some("DOUBLE PRECISION")), DataType::Float64);
        assert_eq!(arrow_type(Some("BLOB")), DataType::Binary);
        assert_eq!(arrow_type(None), DataType::Utf8);
    }

    #[test]
    fn decimals_are_exact_or_refused() {
        assert_eq!(parse_decimal("1.98", 10, 2), Ok(198));
        assert_eq!(parse_decimal("-0.5", 10, 2), Ok(-50));
        assert_eq!(parse_decimal("12", 10, 2), Ok(1200));
        assert_eq!(parse_decimal("1.2e3", 10, 2), Ok(120_000));
        assert_eq!(parse_decimal("1.50000", 10, 2), Ok(150));
        assert_eq!(parse_decimal("99999999.99", 10, 2), Ok(9_999_999_999));
        assert!(parse_decimal("100000000", 10, 2).unwrap_err().contains("at most 8 digits"));
        assert!(parse_decimal("0.125", 10, 2).unwrap_err().contains("more than 2 decimal places"));
        for bad in ["abc", "", "-", ".", "1.2.3", "1e", "0x10", "1e99999"] {
            assert_eq!(parse_decimal(bad, 10, 2), Err("is not a number".into()), "{bad}");
        }
        // Reals keep 15 significant digits: the binary noise goes.
        let cell = |v| match convert(v, &DataType::Decimal128(10, 2)) {
            Ok(Cell::Decimal(d)) => Ok(d),
            Ok(_) => Err("not a decimal".to_string()),
            Err(e) => Err(e),
        };
        assert_eq!(cell(ValueRef::Real(1.98)), Ok(198));
        assert_eq!(cell(ValueRef::Real(0.1 + 0.2)), Ok(30));
        assert_eq!(cell(ValueRef::Integer(-7)), Ok(-700));
        assert_eq!(
            cell(ValueRef::Text(b"abc")),
            Err("text 'abc' is not a number".into())
        );
        assert!(cell(ValueRef::Real(f64::NAN)).unwrap_err().contains("not a number"));
        // The quick path for reals agrees with the decimal text.
        for i in (-2_000_000i64..2_000_000).step_by(997) {
            let f = i as f64 / 100.0;
            assert_eq!(real_decimal(f, 10, 2), Some(i128::from(i)), "{f}");
            assert_eq!(parse_decimal(&format!("{f:.14e}"), 10, 2), Ok(i128::from(i)), "{f}");
        }
        assert_eq!(real_decimal(0.1 + 0.2, 10, 2), None);
        assert_eq!(real_decimal(0.125, 10, 2), None);
        assert_eq!(real_decimal(1e9, 10, 2), None);
    }

    #[test]
    fn sqlite_time_values_parse_and_bad_ones_are_refused() {
        assert_eq!(parse_timestamp("1970-01-01 00:00:00"), Ok(0));
        assert_eq!(parse_timestamp("2009-01-01 00:00:00"), Ok(1_230_768_000_000_000));
        assert_eq!(parse_timestamp("2009-01-01T00:00"), Ok(1_230_768_000_000_000));
        assert_eq!(parse_timestamp("2009-01-01"), Ok(1_230_768_000_000_000));
        assert_eq!(parse_timestamp("1970-01-01 00:00:01.5"), Ok(1_500_000));
        assert_eq!(parse_timestamp("1970-01-01 02:00:00+02:00"), Ok(0));
        assert_eq!(parse_timestamp("1970-01-01 00:00:00Z"), Ok(0));
        assert_eq!(parse_timestamp("1969-12-31 23:59:59"), Ok(-1_000_000));
        assert_eq!(parse_timestamp("2024-02-29 12:00:00"), Ok(1_709_208_000_000_000));
        assert!(parse_timestamp("2021-13-45").unwrap_err().contains("not a valid date"));
        assert!(parse_timestamp("2023-02-29").unwrap_err().contains("not a valid date"));
        assert!(parse_timestamp("2021-01-01 25:00:00").unwrap_err().contains("time of day"));
        assert!(parse_timestamp("yesterday").is_err());
        assert!(parse_timestamp("2021-01-01 10:00:00 garbage").is_err());
        assert_eq!(parse_date("1970-01-02"), Ok(1));
        assert_eq!(parse_date("1962-02-18 00:00:00"), Ok(-2874));
        assert!(parse_date("1962-02-18 10:00:00").unwrap_err().contains("time of day"));
        let ts = DataType::Timestamp(TimeUnit::Microsecond, None);
        let numeric = convert(ValueRef::Integer(1_600_000_000), &ts).err().unwrap();
        assert!(numeric.contains("unixepoch"), "{numeric}");
        let bad = convert(ValueRef::Text(b"2021-13-45"), &ts).err().unwrap();
        assert!(bad.starts_with("text '2021-13-45'"), "{bad}");
    }

    #[test]
    fn booleans_take_numbers_and_words() {
        let b = |v| match convert(v, &DataType::Boolean) {
            Ok(Cell::Bool(x)) => Some(x),
            _ => None,
        };
        assert_eq!(b(ValueRef::Integer(1)), Some(true));
        assert_eq!(b(ValueRef::Integer(0)), Some(false));
        assert_eq!(b(ValueRef::Text(b"TRUE")), Some(true));
        assert_eq!(b(ValueRef::Text(b"f")), Some(false));
        assert_eq!(b(ValueRef::Integer(2)), None);
        assert_eq!(b(ValueRef::Text(b"maybe")), None);
    }
}
