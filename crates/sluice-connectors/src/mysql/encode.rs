//! Arrow values → SQL literals for multi-row `INSERT` statements.
//!
//! Text is escaped for a session without `NO_BACKSLASH_ESCAPES` (the sink
//! sets its own `sql_mode`), bytes become hex literals, temporal values are
//! written as UTC text. A value MySQL cannot hold (a NaN, a date before year
//! 0) is refused here, before anything is sent.

use std::fmt::Write as _;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Date32Type, Date64Type, Decimal128Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type,
    Int64Type, IntervalDayTimeType, IntervalMonthDayNanoType, IntervalUnit, IntervalYearMonthType,
    Time32MillisecondType, Time32SecondType, Time64MicrosecondType, Time64NanosecondType, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt8Type,
    UInt16Type, UInt32Type, UInt64Type,
};
use arrow::util::display::{ArrayFormatter, FormatOptions};

use super::decode::civil_from_days;

/// Appends `s` as a quoted string literal.
pub(crate) fn push_escaped(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('\'');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc = match b {
            0 => "\\0",
            b'\'' => "\\'",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            0x1a => "\\Z",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        out.push_str(esc);
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('\'');
}

/// Appends `b` as a hex literal `X'…'`.
pub(crate) fn push_hex(out: &mut String, b: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.reserve(b.len() * 2 + 3);
    out.push_str("X'");
    for &x in b {
        out.push(HEX[usize::from(x >> 4)] as char);
        out.push(HEX[usize::from(x & 15)] as char);
    }
    out.push('\'');
}

/// Appends a scaled integer as decimal text: `12345` at scale 2 → `123.45`.
fn push_decimal(out: &mut String, v: i128, scale: i8) {
    if scale <= 0 {
        let _ = write!(out, "{v}");
        for _ in 0..-i32::from(scale) {
            out.push('0');
        }
        return;
    }
    let digits = v.unsigned_abs().to_string();
    let scale = scale as usize;
    if v < 0 {
        out.push('-');
    }
    if digits.len() <= scale {
        out.push_str("0.");
        for _ in digits.len()..scale {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let (int, frac) = digits.split_at(digits.len() - scale);
        out.push_str(int);
        out.push('.');
        out.push_str(frac);
    }
}

/// Appends `'YYYY-MM-DD'` (quotes included when `quote`).
fn push_date(out: &mut String, days: i64, quote: bool) -> Result<(), String> {
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        return Err(format!("date in year {y} is outside MySQL's range 0000..9999"));
    }
    let q = if quote { "'" } else { "" };
    let _ = write!(out, "{q}{y:04}-{m:02}-{d:02}{q}");
    Ok(())
}

/// Appends `HH:MM:SS.ffffff` for microseconds within a day.
fn push_time_of_day(out: &mut String, micros: i64) {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let _ = write!(out, "{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    if frac != 0 {
        let _ = write!(out, ".{frac:06}");
    }
}

/// Appends `'YYYY-MM-DD HH:MM:SS.ffffff'` for microseconds since the epoch (UTC).
fn push_timestamp(out: &mut String, micros: i64) -> Result<(), String> {
    let day = micros.div_euclid(86_400_000_000);
    out.push('\'');
    push_date(out, day, false)?;
    out.push(' ');
    push_time_of_day(out, micros.rem_euclid(86_400_000_000));
    out.push('\'');
    Ok(())
}

/// Appends an interval as PostgreSQL interval text (`1 mons 2 days 03:04:05`).
fn push_interval(out: &mut String, months: i64, days: i64, nanos: i64) {
    let mut text = String::new();
    if months != 0 {
        let _ = write!(text, "{months} mons ");
    }
    if days != 0 {
        let _ = write!(text, "{days} days ");
    }
    let micros = nanos / 1000;
    if micros < 0 {
        text.push('-');
    }
    let m = micros.unsigned_abs();
    let secs = m / 1_000_000;
    let _ = write!(text, "{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    if !m.is_multiple_of(1_000_000) {
        let _ = write!(text, ".{:06}", m % 1_000_000);
    }
    push_escaped(out, &text);
}

pub(crate) type Writer<'a> = Box<dyn Fn(usize, &mut String) -> Result<(), String> + 'a>;

/// Writes the values of one column as SQL literals.
pub(crate) struct ColumnEncoder<'a> {
    array: &'a dyn Array,
    write: Writer<'a>,
}

impl<'a> ColumnEncoder<'a> {
    /// An encoder for `array`; `name` is the column, for JSON of nested values.
    pub(crate) fn new(name: &str, array: &'a dyn Array, options: &'a FormatOptions<'a>) -> Result<Self, String> {
        macro_rules! display {
            ($t:ty) => {{
                let a = array.as_primitive::<$t>();
                Box::new(move |i: usize, out: &mut String| {
                    let _ = write!(out, "{}", a.value(i));
                    Ok(())
                }) as Writer<'a>
            }};
        }
        macro_rules! float {
            ($t:ty) => {{
                let a = array.as_primitive::<$t>();
                Box::new(move |i: usize, out: &mut String| {
                    let v = a.value(i);
                    if !v.is_finite() {
                        return Err(format!("{v} cannot be stored in MySQL (only finite numbers)"));
                    }
                    // Exponent notation keeps the shortest exact form of huge and tiny values.
                    let _ = write!(out, "{v:e}");
                    Ok(())
                }) as Writer<'a>
            }};
        }
        macro_rules! time {
            ($t:ty, $per_micro:expr, $div:expr) => {{
                let a = array.as_primitive::<$t>();
                Box::new(move |i: usize, out: &mut String| {
                    out.push('\'');
                    push_time_of_day(out, (a.value(i) as i64 * $per_micro).div_euclid($div));
                    out.push('\'');
                    Ok(())
                }) as Writer<'a>
            }};
        }
        macro_rules! timestamp {
            ($t:ty, $per_micro:expr, $div:expr) => {{
                let a = array.as_primitive::<$t>();
                Box::new(move |i: usize, out: &mut String| {
                    let v = i128::from(a.value(i)) * $per_micro / $div;
                    let micros = i64::try_from(v).map_err(|_| "timestamp out of range".to_string())?;
                    push_timestamp(out, micros)
                }) as Writer<'a>
            }};
        }
        let write: Writer<'a> = match array.data_type() {
            DataType::Int8 => display!(Int8Type),
            DataType::Int16 => display!(Int16Type),
            DataType::Int32 => display!(Int32Type),
            DataType::Int64 => display!(Int64Type),
            DataType::UInt8 => display!(UInt8Type),
            DataType::UInt16 => display!(UInt16Type),
            DataType::UInt32 => display!(UInt32Type),
            DataType::UInt64 => display!(UInt64Type),
            DataType::Float32 => float!(Float32Type),
            DataType::Float64 => float!(Float64Type),
            DataType::Decimal128(_, s) => {
                let a = array.as_primitive::<Decimal128Type>();
                let s = *s;
                Box::new(move |i, out| {
                    push_decimal(out, a.value(i), s);
                    Ok(())
                })
            }
            DataType::Boolean => {
                let a = array.as_boolean();
                Box::new(move |i, out| {
                    out.push(if a.value(i) { '1' } else { '0' });
                    Ok(())
                })
            }
            DataType::Utf8 => {
                let a = array.as_string::<i32>();
                Box::new(move |i, out| {
                    push_escaped(out, a.value(i));
                    Ok(())
                })
            }
            DataType::LargeUtf8 => {
                let a = array.as_string::<i64>();
                Box::new(move |i, out| {
                    push_escaped(out, a.value(i));
                    Ok(())
                })
            }
            DataType::Utf8View => {
                let a = array.as_string_view();
                Box::new(move |i, out| {
                    push_escaped(out, a.value(i));
                    Ok(())
                })
            }
            DataType::Binary => {
                let a = array.as_binary::<i32>();
                Box::new(move |i, out| {
                    push_hex(out, a.value(i));
                    Ok(())
                })
            }
            DataType::LargeBinary => {
                let a = array.as_binary::<i64>();
                Box::new(move |i, out| {
                    push_hex(out, a.value(i));
                    Ok(())
                })
            }
            DataType::BinaryView => {
                let a = array.as_binary_view();
                Box::new(move |i, out| {
                    push_hex(out, a.value(i));
                    Ok(())
                })
            }
            DataType::FixedSizeBinary(_) => {
                let a = array.as_fixed_size_binary();
                Box::new(move |i, out| {
                    push_hex(out, a.value(i));
                    Ok(())
                })
            }
            DataType::Date32 => {
                let a = array.as_primitive::<Date32Type>();
                Box::new(move |i, out| push_date(out, i64::from(a.value(i)), true))
            }
            DataType::Date64 => {
                let a = array.as_primitive::<Date64Type>();
                Box::new(move |i, out| push_date(out, a.value(i).div_euclid(86_400_000), true))
            }
            DataType::Time32(TimeUnit::Second) => time!(Time32SecondType, 1_000_000, 1),
            DataType::Time32(_) => time!(Time32MillisecondType, 1000, 1),
            DataType::Time64(TimeUnit::Microsecond) => time!(Time64MicrosecondType, 1, 1),
            DataType::Time64(_) => time!(Time64NanosecondType, 1, 1000),
            DataType::Timestamp(TimeUnit::Second, _) => timestamp!(TimestampSecondType, 1_000_000, 1),
            DataType::Timestamp(TimeUnit::Millisecond, _) => timestamp!(TimestampMillisecondType, 1000, 1),
            DataType::Timestamp(TimeUnit::Microsecond, _) => timestamp!(TimestampMicrosecondType, 1, 1),
            DataType::Timestamp(TimeUnit::Nanosecond, _) => {
                let a = array.as_primitive::<TimestampNanosecondType>();
                Box::new(move |i, out| push_timestamp(out, a.value(i).div_euclid(1000)))
            }
            DataType::Interval(IntervalUnit::MonthDayNano) => {
                let a = array.as_primitive::<IntervalMonthDayNanoType>();
                Box::new(move |i, out| {
                    let v = a.value(i);
                    push_interval(out, i64::from(v.months), i64::from(v.days), v.nanoseconds);
                    Ok(())
                })
            }
            DataType::Interval(IntervalUnit::DayTime) => {
                let a = array.as_primitive::<IntervalDayTimeType>();
                Box::new(move |i, out| {
                    let v = a.value(i);
                    push_interval(out, 0, i64::from(v.days), i64::from(v.milliseconds) * 1_000_000);
                    Ok(())
                })
            }
            DataType::Interval(IntervalUnit::YearMonth) => {
                let a = array.as_primitive::<IntervalYearMonthType>();
                Box::new(move |i, out| {
                    push_interval(out, i64::from(a.value(i)), 0, 0);
                    Ok(())
                })
            }
            t if t.is_nested() => {
                // One-column batch so each value is written by the Arrow JSON writer.
                let field = arrow::datatypes::Field::new(name, t.clone(), true);
                let schema = std::sync::Arc::new(arrow::datatypes::Schema::new(vec![field]));
                let rb = RecordBatch::try_new(schema, vec![array.slice(0, array.len())]).map_err(|e| e.to_string())?;
                let name = name.to_string();
                Box::new(move |i, out| {
                    let row = sluice_core::row_json(&rb, i);
                    let v = row.get(&name).cloned().unwrap_or(serde_json::Value::Null);
                    push_escaped(out, &v.to_string());
                    Ok(())
                })
            }
            _ => {
                let f = ArrayFormatter::try_new(array, options).map_err(|e| e.to_string())?;
                Box::new(move |i, out| {
                    push_escaped(out, &f.value(i).to_string());
                    Ok(())
                })
            }
        };
        Ok(ColumnEncoder { array, write })
    }

    /// An encoder writing `write` for each non-null value of `array`.
    pub(crate) fn with(array: &'a dyn Array, write: Writer<'a>) -> Self {
        ColumnEncoder { array, write }
    }

    /// Appends the literal of row `i` (`NULL` for nulls).
    pub(crate) fn push(&self, i: usize, out: &mut String) -> Result<(), String> {
        if self.array.is_null(i) {
            out.push_str("NULL");
            Ok(())
        } else {
            (self.write)(i, out)
        }
    }
}

/// The rows of a batch as `(v1,v2,…)` tuples in one buffer.
pub(crate) struct EncodedRows {
    pub text: String,
    /// Byte range of each row in `text`; `None` when the row was refused.
    pub spans: Vec<Option<(usize, usize)>>,
    /// Rows refused while encoding, with the reason.
    pub refused: Vec<(usize, String)>,
}

/// Encodes every row of `data`.
pub(crate) fn encode_rows(data: &RecordBatch) -> Result<EncodedRows, String> {
    let options = FormatOptions::default();
    let schema = data.schema();
    let encoders: Vec<ColumnEncoder<'_>> = data
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| match super::spatial::encoder(f, c.as_ref()) {
            Some(e) => Ok(e),
            None => ColumnEncoder::new(f.name(), c.as_ref(), &options),
        })
        .collect::<Result<_, _>>()?;
    let mut rows = EncodedRows {
        text: String::with_capacity(data.get_array_memory_size() + data.num_rows() * (encoders.len() * 2 + 3)),
        spans: Vec::with_capacity(data.num_rows()),
        refused: Vec::new(),
    };
    'rows: for i in 0..data.num_rows() {
        let start = rows.text.len();
        rows.text.push('(');
        for (c, enc) in encoders.iter().enumerate() {
            if c > 0 {
                rows.text.push(',');
            }
            if let Err(reason) = enc.push(i, &mut rows.text) {
                rows.text.truncate(start);
                rows.spans.push(None);
                rows.refused
                    .push((i, format!("column `{}`: {reason}", schema.field(c).name())));
                continue 'rows;
            }
        }
        rows.text.push(')');
        rows.spans.push(Some((start, rows.text.len())));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow::array::{BinaryArray, Float64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    #[test]
    fn literals_are_escaped_and_exact() {
        let mut s = String::new();
        push_escaped(&mut s, "a'b\\c\0d\n😀");
        assert_eq!(s, "'a\\'b\\\\c\\0d\\n😀'");
        s.clear();
        push_hex(&mut s, &[0, 255, 16]);
        assert_eq!(s, "X'00FF10'");
        for (v, scale, text) in [(12345, 2, "123.45"), (-5, 3, "-0.005"), (7, 0, "7"), (0, 2, "0.00")] {
            s.clear();
            push_decimal(&mut s, v, scale);
            assert_eq!(s, text);
        }
        s.clear();
        push_timestamp(&mut s, 86_401_500_000).unwrap();
        assert_eq!(s, "'1970-01-02 00:00:01.500000'");
    }

    #[test]
    fn rows_that_mysql_cannot_hold_are_refused_before_sending() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("f", DataType::Float64, true),
            Field::new("s", DataType::Utf8, true),
            Field::new("b", DataType::Binary, true),
        ]));
        let data = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Float64Array::from(vec![Some(1.5), Some(f64::NAN), None])),
                Arc::new(StringArray::from(vec![Some("x"), Some("y"), None])),
                Arc::new(BinaryArray::from(vec![Some(&b"\x01"[..]), None, Some(&b""[..])])),
            ],
        )
        .unwrap();
        let rows = encode_rows(&data).unwrap();
        let text = |i: usize| rows.spans[i].map(|(a, b)| &rows.text[a..b]);
        assert_eq!(text(0), Some("(1.5e0,'x',X'01')"));
        assert_eq!(text(1), None);
        assert_eq!(text(2), Some("(NULL,NULL,X'')"));
        assert_eq!(rows.refused.len(), 1);
        assert!(rows.refused[0].1.contains("column `f`"));
    }
}
