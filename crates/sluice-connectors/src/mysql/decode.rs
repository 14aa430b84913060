//! MySQL values → Arrow builders.
//!
//! Over the text protocol the server sends every value as text (bits as raw
//! bytes); over the binary protocol (prepared statements, which table reads
//! use) integers, floats, dates and times arrive as numbers and everything
//! else as text. Each column has a [`Kind`] saying how to read it; a row is
//! read into [`Cell`]s first and appended only when every cell was read, so a
//! refused row leaves nothing behind in the builders. Integers and decimals
//! are read exactly (decimals straight into `i128`, never through a float);
//! dates and times by hand. A binary value a kind does not take directly
//! (an integer out of the column's range, a time past a day) is written as
//! the text the text protocol would have sent and parsed like it, so both
//! protocols accept and refuse the same values with the same reasons.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, Date32Builder, Decimal128Builder, Float32Builder, Float64Builder, Int8Builder,
    Int16Builder, Int32Builder, Int64Builder, StringBuilder, Time64MicrosecondBuilder, TimestampMicrosecondBuilder,
    UInt8Builder, UInt16Builder, UInt32Builder, UInt64Builder,
};
use arrow::datatypes::{DataType, Field, TimeUnit};
use mysql_async::Value;
use sluice_core::dbmeta::{ColumnMeta, Semantic};

/// How the text of one column is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
    /// `BIT(n)`: big-endian bytes → UInt64.
    Bit,
    Dec(u8, i8),
    F32,
    F64,
    Utf8,
    Bin,
    /// A spatial value in MySQL's internal format, read into EWKB.
    Geom,
    Date,
    Timestamp,
    Time,
}

impl Kind {
    /// The parser for a field the source built.
    pub(crate) fn of(field: &Field) -> Kind {
        match field.data_type() {
            DataType::Int8 => Kind::I8,
            DataType::Int16 => Kind::I16,
            DataType::Int32 => Kind::I32,
            DataType::Int64 => Kind::I64,
            DataType::UInt8 => Kind::U8,
            DataType::UInt16 => Kind::U16,
            DataType::UInt32 => Kind::U32,
            DataType::UInt64 if ColumnMeta::of(field).semantic == Some(Semantic::Bit) => Kind::Bit,
            DataType::UInt64 => Kind::U64,
            DataType::Decimal128(p, s) => Kind::Dec(*p, *s),
            DataType::Float32 => Kind::F32,
            DataType::Float64 => Kind::F64,
            DataType::Binary if sluice_core::spatial::GeometryMeta::of(field).is_some() => Kind::Geom,
            DataType::Binary => Kind::Bin,
            DataType::Date32 => Kind::Date,
            DataType::Timestamp(_, _) => Kind::Timestamp,
            DataType::Time64(_) => Kind::Time,
            _ => Kind::Utf8,
        }
    }
}

/// A parsed value, borrowing text and bytes from the row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Cell<'a> {
    Null,
    I(i64),
    U(u64),
    D(i128),
    F(f64),
    /// UTF-8 checked text, or bytes for binary columns.
    S(&'a [u8]),
}

/// Why a value could not be parsed.
#[derive(Debug, PartialEq)]
pub(crate) enum Fail {
    /// A MySQL zero date (`0000-00-00`, zero month or day); the caller decides.
    ZeroDate,
    /// The value does not fit the column's Arrow type.
    Bad(String),
}

fn bad(what: &str, v: &[u8]) -> Fail {
    let shown: String = String::from_utf8_lossy(v).chars().take(80).collect();
    Fail::Bad(format!("{what} '{shown}'"))
}

/// Parses the text of one value.
pub(crate) fn parse(kind: Kind, v: &[u8]) -> Result<Cell<'_>, Fail> {
    let int = |lo: i64, hi: i64, name: &str| match parse_i64(v) {
        Some(x) if (lo..=hi).contains(&x) => Ok(Cell::I(x)),
        _ => Err(bad(&format!("not a {name} value:"), v)),
    };
    let uint = |hi: u64, name: &str| match parse_u64(v) {
        Some(x) if x <= hi => Ok(Cell::U(x)),
        _ => Err(bad(&format!("not a {name} value:"), v)),
    };
    match kind {
        Kind::I8 => int(i8::MIN as i64, i8::MAX as i64, "int8"),
        Kind::I16 => int(i16::MIN as i64, i16::MAX as i64, "int16"),
        Kind::I32 => int(i32::MIN as i64, i32::MAX as i64, "int32"),
        Kind::I64 => int(i64::MIN, i64::MAX, "int64"),
        Kind::U8 => uint(u8::MAX as u64, "uint8"),
        Kind::U16 => uint(u16::MAX as u64, "uint16"),
        Kind::U32 => uint(u32::MAX as u64, "uint32"),
        Kind::U64 => uint(u64::MAX, "uint64"),
        Kind::Bit => {
            if v.len() > 8 {
                return Err(Fail::Bad(format!("bit value of {} bytes exceeds 64 bits", v.len())));
            }
            Ok(Cell::U(v.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))))
        }
        Kind::Dec(p, s) => match parse_decimal(v, s) {
            Some(x) if x.unsigned_abs() < 10u128.pow(u32::from(p)) => Ok(Cell::D(x)),
            _ => Err(bad(&format!("not a decimal({p},{s}) value:"), v)),
        },
        Kind::F32 | Kind::F64 => std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .map(Cell::F)
            .ok_or_else(|| bad("not a floating-point value:", v)),
        Kind::Utf8 => match std::str::from_utf8(v) {
            Ok(_) => Ok(Cell::S(v)),
            Err(_) => Err(Fail::Bad(
                "text is not valid UTF-8 (is the column's character set binary? read it as a blob)".into(),
            )),
        },
        Kind::Bin => Ok(Cell::S(v)),
        Kind::Geom => match sluice_core::spatial::mysql_to_ewkb(v) {
            Ok(_) => Ok(Cell::S(v)),
            Err(e) => Err(Fail::Bad(e)),
        },
        Kind::Date => parse_date(v).map(|d| Cell::I(d as i64)),
        Kind::Timestamp => parse_datetime(v).map(Cell::I),
        Kind::Time => parse_time(v).map(Cell::I),
    }
}

/// The cell of a binary-protocol number, date or time the column's kind
/// takes as it is; `None` for text and bytes (read by [`parse`]) and for
/// values that must go through their text (see [`value_text`]).
pub(crate) fn binary_cell(kind: Kind, v: &Value) -> Option<Cell<'static>> {
    let signed = |x: i64| {
        let (lo, hi) = match kind {
            Kind::I8 => (i8::MIN as i64, i8::MAX as i64),
            Kind::I16 => (i16::MIN as i64, i16::MAX as i64),
            Kind::I32 => (i32::MIN as i64, i32::MAX as i64),
            Kind::I64 => (i64::MIN, i64::MAX),
            _ => return None,
        };
        (lo..=hi).contains(&x).then_some(Cell::I(x))
    };
    let unsigned = |x: u64| {
        let hi = match kind {
            Kind::U8 => u8::MAX as u64,
            Kind::U16 => u16::MAX as u64,
            Kind::U32 => u32::MAX as u64,
            Kind::U64 => u64::MAX,
            _ => return None,
        };
        (x <= hi).then_some(Cell::U(x))
    };
    match *v {
        Value::Int(x) => signed(x).or_else(|| u64::try_from(x).ok().and_then(unsigned)),
        Value::UInt(x) => unsigned(x).or_else(|| i64::try_from(x).ok().and_then(signed)),
        Value::Float(x) if matches!(kind, Kind::F32 | Kind::F64) => Some(Cell::F(f64::from(x))),
        Value::Double(x) if matches!(kind, Kind::F32 | Kind::F64) => Some(Cell::F(x)),
        Value::Date(y, m, d, h, i, s, us) => {
            let valid = (1..=12).contains(&m) && d >= 1 && u32::from(d) <= days_in_month(i64::from(y), u32::from(m));
            if !valid || h > 23 || i > 59 || s > 59 || us > 999_999 {
                return None;
            }
            let days = days_from_civil(i64::from(y), u32::from(m), u32::from(d));
            let secs = i64::from(h) * 3600 + i64::from(i) * 60 + i64::from(s);
            match kind {
                Kind::Date if secs == 0 && us == 0 => Some(Cell::I(days)),
                Kind::Timestamp => Some(Cell::I((days * 86_400 + secs) * 1_000_000 + i64::from(us))),
                _ => None,
            }
        }
        Value::Time(neg, days, h, i, s, us) if kind == Kind::Time => {
            let secs = (i64::from(days) * 24 + i64::from(h)) * 3600 + i64::from(i) * 60 + i64::from(s);
            let micros = secs * 1_000_000 + i64::from(us);
            let fits = secs < 86_400 && i < 60 && s < 60 && us <= 999_999 && !(neg && micros != 0);
            fits.then_some(Cell::I(micros))
        }
        _ => None,
    }
}

/// The text the text protocol sends for `v` in a column of `kind`: a date
/// without its time for `DATE` columns, microseconds only when there are
/// some. `None` for `NULL`.
pub(crate) fn value_text(kind: Kind, v: &Value) -> Option<std::borrow::Cow<'_, [u8]>> {
    use std::borrow::Cow;
    let text = match *v {
        Value::NULL => return None,
        Value::Bytes(ref b) => return Some(Cow::Borrowed(b.as_slice())),
        Value::Int(x) => x.to_string(),
        Value::UInt(x) => x.to_string(),
        Value::Float(x) => x.to_string(),
        Value::Double(x) => x.to_string(),
        Value::Date(y, m, d, h, i, s, us) => {
            let date = format!("{y:04}-{m:02}-{d:02}");
            match (kind, h, i, s, us) {
                (Kind::Date, 0, 0, 0, 0) => date,
                (_, _, _, _, 0) => format!("{date} {h:02}:{i:02}:{s:02}"),
                _ => format!("{date} {h:02}:{i:02}:{s:02}.{us:06}"),
            }
        }
        Value::Time(neg, days, h, i, s, us) => {
            let hours = u64::from(days) * 24 + u64::from(h);
            let sign = if neg { "-" } else { "" };
            match us {
                0 => format!("{sign}{hours:02}:{i:02}:{s:02}"),
                _ => format!("{sign}{hours:02}:{i:02}:{s:02}.{us:06}"),
            }
        }
    };
    Some(Cow::Owned(text.into_bytes()))
}

fn parse_u64(v: &[u8]) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    let mut x: u64 = 0;
    for &b in v {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        x = x.checked_mul(10)?.checked_add(u64::from(d))?;
    }
    Some(x)
}

fn parse_i64(v: &[u8]) -> Option<i64> {
    match v.split_first() {
        Some((b'-', rest)) => {
            let m = parse_u64(rest)?;
            if m == 1u64 << 63 {
                Some(i64::MIN)
            } else {
                i64::try_from(m).ok().map(|x| -x)
            }
        }
        _ => i64::try_from(parse_u64(v)?).ok(),
    }
}

/// `-123.45` → `-12345` at scale 2. More fractional digits than the scale is
/// an error, never a rounding.
pub(crate) fn parse_decimal(v: &[u8], scale: i8) -> Option<i128> {
    let (neg, v) = match v.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, v),
    };
    let (int, frac) = match v.iter().position(|&b| b == b'.') {
        Some(i) => (&v[..i], &v[i + 1..]),
        None => (v, &v[..0]),
    };
    if (int.is_empty() && frac.is_empty()) || frac.len() > scale.max(0) as usize {
        return None;
    }
    let mut x: i128 = 0;
    for &b in int.iter().chain(frac) {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        x = x.checked_mul(10)?.checked_add(i128::from(d))?;
    }
    for _ in frac.len()..scale.max(0) as usize {
        x = x.checked_mul(10)?;
    }
    Some(if neg { -x } else { x })
}

fn digits(v: &[u8]) -> Option<u32> {
    if v.is_empty() {
        return None;
    }
    let mut x: u32 = 0;
    for &b in v {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        x = x.checked_mul(10)?.checked_add(u32::from(d))?;
    }
    Some(x)
}

/// Days from 1970-01-01 to a proleptic Gregorian date.
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    // Years start in March so the leap day ends the year.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_from_march = i64::from((month + 9) % 12);
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date `days` after 1970-01-01: (year, month, day).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => 31,
    }
}

/// `YYYY-MM-DD` → days since the epoch.
fn parse_date(v: &[u8]) -> Result<i32, Fail> {
    if v.len() != 10 || v[4] != b'-' || v[7] != b'-' {
        return Err(bad("not a date:", v));
    }
    let (Some(y), Some(m), Some(d)) = (digits(&v[..4]), digits(&v[5..7]), digits(&v[8..10])) else {
        return Err(bad("not a date:", v));
    };
    if m == 0 || d == 0 {
        return Err(Fail::ZeroDate);
    }
    if m > 12 || d > days_in_month(i64::from(y), m) {
        return Err(bad("not a valid date:", v));
    }
    Ok(days_from_civil(i64::from(y), m, d) as i32)
}

/// `.ffffff` (1 to 6 digits) → microseconds.
fn parse_micros(frac: &[u8], v: &[u8]) -> Result<i64, Fail> {
    if frac.is_empty() {
        return Ok(0);
    }
    match (frac.split_first(), frac.len()) {
        (Some((b'.', f)), 2..=7) => {
            let x = digits(f).ok_or_else(|| bad("bad fraction of a second in", v))?;
            Ok(i64::from(x) * 10i64.pow(6 - f.len() as u32))
        }
        _ => Err(bad("bad fraction of a second in", v)),
    }
}

/// `HH:MM:SS` → seconds, checking ranges.
fn hms(h: &[u8], m: &[u8], s: &[u8], v: &[u8]) -> Result<i64, Fail> {
    match (digits(h), digits(m), digits(s)) {
        (Some(h), Some(m), Some(s)) if m < 60 && s < 60 => Ok(i64::from(h) * 3600 + i64::from(m) * 60 + i64::from(s)),
        _ => Err(bad("not a time:", v)),
    }
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff]` → microseconds since the epoch.
fn parse_datetime(v: &[u8]) -> Result<i64, Fail> {
    if v.len() < 19 || v[10] != b' ' || v[13] != b':' || v[16] != b':' {
        return Err(bad("not a datetime:", v));
    }
    let days = parse_date(&v[..10])?;
    let secs = hms(&v[11..13], &v[14..16], &v[17..19], v)?;
    if secs >= 86_400 {
        return Err(bad("not a valid datetime:", v));
    }
    let micros = parse_micros(&v[19..], v)?;
    Ok((i64::from(days) * 86_400 + secs) * 1_000_000 + micros)
}

/// `[-]HHH:MM:SS[.ffffff]` → microseconds since midnight. MySQL times span
/// ±838:59:59; Arrow's time64 holds one day, so the rest is refused.
fn parse_time(v: &[u8]) -> Result<i64, Fail> {
    let (neg, body) = match v.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, v),
    };
    let c1 = body
        .iter()
        .position(|&b| b == b':')
        .ok_or_else(|| bad("not a time:", v))?;
    if body.len() < c1 + 6 || body[c1 + 3] != b':' {
        return Err(bad("not a time:", v));
    }
    let secs = hms(&body[..c1], &body[c1 + 1..c1 + 3], &body[c1 + 4..c1 + 6], v)?;
    let micros = secs * 1_000_000 + parse_micros(&body[c1 + 6..], v)?;
    if neg && micros != 0 || secs >= 86_400 {
        let shown = String::from_utf8_lossy(v);
        return Err(Fail::Bad(format!(
            "time '{shown}' is outside 00:00:00..23:59:59.999999, the range of Arrow time64; \
             read the column as text with a query (CAST(col AS CHAR))"
        )));
    }
    Ok(micros)
}

/// Arrow builders for one batch, one per column.
pub(crate) enum Builder {
    I8(Int8Builder),
    I16(Int16Builder),
    I32(Int32Builder),
    I64(Int64Builder),
    U8(UInt8Builder),
    U16(UInt16Builder),
    U32(UInt32Builder),
    U64(UInt64Builder),
    Dec(Decimal128Builder, DataType),
    F32(Float32Builder),
    F64(Float64Builder),
    Utf8(StringBuilder),
    Bin(BinaryBuilder),
    Geom(BinaryBuilder),
    Date(Date32Builder),
    Ts(TimestampMicrosecondBuilder, DataType),
    Time(Time64MicrosecondBuilder),
}

impl Builder {
    pub(crate) fn new(kind: Kind, t: &DataType) -> Builder {
        match kind {
            Kind::I8 => Builder::I8(Int8Builder::new()),
            Kind::I16 => Builder::I16(Int16Builder::new()),
            Kind::I32 => Builder::I32(Int32Builder::new()),
            Kind::I64 => Builder::I64(Int64Builder::new()),
            Kind::U8 => Builder::U8(UInt8Builder::new()),
            Kind::U16 => Builder::U16(UInt16Builder::new()),
            Kind::U32 => Builder::U32(UInt32Builder::new()),
            Kind::U64 | Kind::Bit => Builder::U64(UInt64Builder::new()),
            Kind::Dec(_, _) => Builder::Dec(Decimal128Builder::new(), t.clone()),
            Kind::F32 => Builder::F32(Float32Builder::new()),
            Kind::F64 => Builder::F64(Float64Builder::new()),
            Kind::Utf8 => Builder::Utf8(StringBuilder::new()),
            Kind::Bin => Builder::Bin(BinaryBuilder::new()),
            Kind::Geom => Builder::Geom(BinaryBuilder::new()),
            Kind::Date => Builder::Date(Date32Builder::new()),
            Kind::Timestamp => Builder::Ts(TimestampMicrosecondBuilder::new(), t.clone()),
            Kind::Time => Builder::Time(Time64MicrosecondBuilder::new()),
        }
    }

    /// Appends a parsed cell; the cell always comes from this column's [`Kind`].
    pub(crate) fn push(&mut self, c: Cell<'_>) {
        macro_rules! opt {
            ($b:expr, $v:pat => $e:expr) => {
                match c {
                    $v => $b.append_value($e),
                    _ => $b.append_null(),
                }
            };
        }
        match self {
            Builder::I8(b) => opt!(b, Cell::I(x) => x as i8),
            Builder::I16(b) => opt!(b, Cell::I(x) => x as i16),
            Builder::I32(b) => opt!(b, Cell::I(x) => x as i32),
            Builder::I64(b) => opt!(b, Cell::I(x) => x),
            Builder::U8(b) => opt!(b, Cell::U(x) => x as u8),
            Builder::U16(b) => opt!(b, Cell::U(x) => x as u16),
            Builder::U32(b) => opt!(b, Cell::U(x) => x as u32),
            Builder::U64(b) => opt!(b, Cell::U(x) => x),
            Builder::Dec(b, _) => opt!(b, Cell::D(x) => x),
            Builder::F32(b) => opt!(b, Cell::F(x) => x as f32),
            Builder::F64(b) => opt!(b, Cell::F(x) => x),
            // The bytes were checked as UTF-8 when parsed.
            Builder::Utf8(b) => opt!(b, Cell::S(x) => std::str::from_utf8(x).unwrap_or_default()),
            Builder::Bin(b) => opt!(b, Cell::S(x) => x),
            // `parse` checked the value with the same conversion.
            Builder::Geom(b) => match c {
                Cell::S(x) => match sluice_core::spatial::mysql_to_ewkb(x) {
                    Ok(e) => b.append_value(e),
                    Err(_) => b.append_null(),
                },
                _ => b.append_null(),
            },
            Builder::Date(b) => opt!(b, Cell::I(x) => x as i32),
            Builder::Ts(b, _) => opt!(b, Cell::I(x) => x),
            Builder::Time(b) => opt!(b, Cell::I(x) => x),
        }
    }

    pub(crate) fn finish(&mut self) -> Result<ArrayRef, arrow::error::ArrowError> {
        Ok(match self {
            Builder::I8(b) => Arc::new(b.finish()),
            Builder::I16(b) => Arc::new(b.finish()),
            Builder::I32(b) => Arc::new(b.finish()),
            Builder::I64(b) => Arc::new(b.finish()),
            Builder::U8(b) => Arc::new(b.finish()),
            Builder::U16(b) => Arc::new(b.finish()),
            Builder::U32(b) => Arc::new(b.finish()),
            Builder::U64(b) => Arc::new(b.finish()),
            Builder::Dec(b, t) => Arc::new(b.finish().with_data_type(t.clone())),
            Builder::F32(b) => Arc::new(b.finish()),
            Builder::F64(b) => Arc::new(b.finish()),
            Builder::Utf8(b) => Arc::new(b.finish()),
            Builder::Bin(b) | Builder::Geom(b) => Arc::new(b.finish()),
            Builder::Date(b) => Arc::new(b.finish()),
            Builder::Ts(b, t) => Arc::new(b.finish().with_data_type(t.clone())),
            Builder::Time(b) => Arc::new(b.finish()),
        })
    }
}

/// The Arrow type of a `TIME`, `DATETIME` and `TIMESTAMP` column.
pub(crate) fn timestamp_type(utc: bool) -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, utc.then(|| "UTC".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_parse_exactly_at_their_limits() {
        assert_eq!(parse(Kind::I8, b"-128"), Ok(Cell::I(-128)));
        assert!(matches!(parse(Kind::I8, b"128"), Err(Fail::Bad(_))));
        assert_eq!(parse(Kind::U64, b"18446744073709551615"), Ok(Cell::U(u64::MAX)));
        assert_eq!(parse(Kind::I64, b"-9223372036854775808"), Ok(Cell::I(i64::MIN)));
        assert!(matches!(parse(Kind::I64, b"9223372036854775808"), Err(Fail::Bad(_))));
        assert_eq!(parse(Kind::Bit, &[1, 0]), Ok(Cell::U(256)));
    }

    #[test]
    fn decimals_parse_into_scaled_integers_without_rounding() {
        assert_eq!(parse_decimal(b"-123.45", 2), Some(-12345));
        assert_eq!(parse_decimal(b"7", 2), Some(700));
        assert_eq!(parse_decimal(b"0.1", 2), Some(10));
        assert_eq!(parse_decimal(b"1.234", 2), None);
        assert_eq!(parse_decimal(b"1e3", 2), None);
        assert!(matches!(parse(Kind::Dec(4, 2), b"100.00"), Err(Fail::Bad(_))));
        assert_eq!(parse(Kind::Dec(4, 2), b"99.99"), Ok(Cell::D(9999)));
    }

    /// What a binary value becomes: read directly where its kind takes it,
    /// otherwise through its text, as the text protocol would have sent it.
    fn via_binary(kind: Kind, v: Value) -> Result<Cell<'static>, Fail> {
        match binary_cell(kind, &v) {
            Some(c) => Ok(c),
            None => {
                let text = value_text(kind, &v).map(|t| t.into_owned()).unwrap_or_default();
                // Text cells borrow the text; these tests compare the others.
                match parse(kind, &text)? {
                    Cell::Null | Cell::S(_) => Ok(Cell::Null),
                    Cell::I(x) => Ok(Cell::I(x)),
                    Cell::U(x) => Ok(Cell::U(x)),
                    Cell::D(x) => Ok(Cell::D(x)),
                    Cell::F(x) => Ok(Cell::F(x)),
                }
            }
        }
    }

    #[test]
    fn binary_values_read_like_their_text() {
        assert_eq!(via_binary(Kind::I8, Value::Int(-128)), Ok(Cell::I(-128)));
        assert!(matches!(via_binary(Kind::I8, Value::Int(128)), Err(Fail::Bad(m)) if m.contains("'128'")));
        assert_eq!(via_binary(Kind::U8, Value::Int(255)), Ok(Cell::U(255)));
        assert!(matches!(via_binary(Kind::U32, Value::Int(-1)), Err(Fail::Bad(_))));
        assert_eq!(via_binary(Kind::U64, Value::UInt(u64::MAX)), Ok(Cell::U(u64::MAX)));
        assert_eq!(via_binary(Kind::I64, Value::UInt(7)), Ok(Cell::I(7)));
        assert_eq!(via_binary(Kind::Dec(5, 2), Value::Int(12)), Ok(Cell::D(1200)));
        assert_eq!(via_binary(Kind::F64, Value::Double(0.5)), Ok(Cell::F(0.5)));
        assert_eq!(via_binary(Kind::Date, Value::Date(2000, 3, 1, 0, 0, 0, 0)), Ok(Cell::I(11017)));
        assert_eq!(via_binary(Kind::Date, Value::Date(0, 0, 0, 0, 0, 0, 0)), Err(Fail::ZeroDate));
        assert_eq!(via_binary(Kind::Timestamp, Value::Date(2020, 5, 0, 0, 0, 0, 0)), Err(Fail::ZeroDate));
        assert_eq!(via_binary(Kind::Timestamp, Value::Date(0, 0, 0, 0, 0, 0, 0)), Err(Fail::ZeroDate));
        assert!(matches!(via_binary(Kind::Date, Value::Date(2021, 2, 29, 0, 0, 0, 0)), Err(Fail::Bad(_))));
        assert_eq!(
            via_binary(Kind::Timestamp, Value::Date(1970, 1, 2, 0, 0, 1, 500_000)),
            Ok(Cell::I(86_401_500_000))
        );
        assert_eq!(
            via_binary(Kind::Time, Value::Time(false, 0, 23, 59, 59, 999_999)),
            Ok(Cell::I(86_399_999_999))
        );
        assert!(matches!(via_binary(Kind::Time, Value::Time(false, 1, 0, 0, 0, 0)), Err(Fail::Bad(m)) if m.contains("'24:00:00'")));
        assert!(matches!(via_binary(Kind::Time, Value::Time(true, 0, 0, 0, 1, 0)), Err(Fail::Bad(_))));
        assert_eq!(via_binary(Kind::Time, Value::Time(true, 0, 0, 0, 0, 0)), Ok(Cell::I(0)));
        // Text columns get the text; keys are written back the same way.
        assert_eq!(value_text(Kind::Utf8, &Value::Int(-5)).as_deref(), Some(&b"-5"[..]));
        assert_eq!(
            value_text(Kind::Timestamp, &Value::Date(2020, 1, 2, 3, 4, 5, 6)).as_deref(),
            Some(&b"2020-01-02 03:04:05.000006"[..])
        );
        assert_eq!(
            value_text(Kind::Date, &Value::Date(2020, 1, 2, 0, 0, 0, 0)).as_deref(),
            Some(&b"2020-01-02"[..])
        );
        assert_eq!(value_text(Kind::Utf8, &Value::NULL), None);
    }

    #[test]
    fn dates_and_times_parse_by_hand() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11017);
        assert_eq!(days_from_civil(1, 1, 1), -719_162);
        for d in [-719_162, -1, 0, 11017, 2_932_896] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
        assert_eq!(civil_from_days(2_932_896), (9999, 12, 31));
        assert_eq!(parse(Kind::Date, b"2000-03-01"), Ok(Cell::I(11017)));
        assert_eq!(parse(Kind::Date, b"0000-00-00"), Err(Fail::ZeroDate));
        assert_eq!(parse(Kind::Timestamp, b"2020-05-00 00:00:00"), Err(Fail::ZeroDate));
        assert!(matches!(parse(Kind::Date, b"2021-02-29"), Err(Fail::Bad(_))));
        assert_eq!(
            parse(Kind::Timestamp, b"1970-01-02 00:00:01.5"),
            Ok(Cell::I(86_401_500_000))
        );
        assert_eq!(parse(Kind::Time, b"23:59:59.999999"), Ok(Cell::I(86_399_999_999)));
        assert_eq!(parse(Kind::Time, b"00:00:00"), Ok(Cell::I(0)));
        assert!(matches!(parse(Kind::Time, b"24:00:00"), Err(Fail::Bad(m)) if m.contains("outside")));
        assert!(matches!(parse(Kind::Time, b"-00:00:01"), Err(Fail::Bad(_))));
    }
}
