//! Arrow batches encoded as `COPY … FROM STDIN (FORMAT binary)` tuples, one
//! encoder per destination column type.
//!
//! Each column is first brought to the Arrow type closest to its destination
//! type with Arrow's safe cast (a CSV integer into a `numeric`, text into a
//! `date`); a value the cast cannot carry, or the encoder cannot write (an
//! integer out of `smallint` range, text that is not a UUID), refuses its row
//! with a reason, and the rest of the batch is encoded.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Decimal128Array, FixedSizeBinaryArray, ListArray, RecordBatch,
    StringArray,
};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{
    DataType, Date32Type, Field, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, IntervalMonthDayNanoType,
    IntervalUnit, Time64MicrosecondType, TimeUnit, TimestampMicrosecondType,
};

use super::decode::{EPOCH_DAYS, EPOCH_MICROS, shift_days, shift_micros};
use super::numeric;

/// Header of a binary COPY stream: signature, flags, header extension length.
pub const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// Trailer of a binary COPY stream.
pub const TRAILER: &[u8] = &[0xff, 0xff];

/// How values are written for one destination column type.
#[derive(Debug, Clone, PartialEq)]
pub enum Encode {
    Bool,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    Numeric,
    /// text, varchar, bpchar, name, citext, json, enum labels.
    Text,
    Jsonb,
    Bytea,
    Date,
    Time,
    Timestamp,
    TimestampTz,
    Interval,
    Uuid,
    /// EWKB geometry into a text column: WKT, `SRID=n;` first when n ≠ 0.
    GeomText,
    /// EWKB points into PostgreSQL's `point`: x and y.
    GeomPoint,
    /// A one-dimensional array; the element type's OID goes in each value.
    Array(Box<Encode>, u32),
}

impl Encode {
    /// The Arrow type values are cast to before encoding, given the input type.
    fn canonical(&self, input: &DataType) -> DataType {
        match self {
            Encode::Bool => DataType::Boolean,
            Encode::Int16 => DataType::Int16,
            Encode::Int32 => DataType::Int32,
            Encode::Int64 => DataType::Int64,
            Encode::Float32 => DataType::Float32,
            Encode::Float64 => DataType::Float64,
            Encode::Numeric => match input {
                DataType::Decimal128(_, _) => input.clone(),
                _ => DataType::Utf8,
            },
            Encode::Text | Encode::Jsonb => DataType::Utf8,
            Encode::Bytea | Encode::GeomText | Encode::GeomPoint => DataType::Binary,
            Encode::Date => DataType::Date32,
            Encode::Time => DataType::Time64(TimeUnit::Microsecond),
            Encode::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            Encode::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Encode::Interval => DataType::Interval(IntervalUnit::MonthDayNano),
            Encode::Uuid => match input {
                DataType::FixedSizeBinary(16) => input.clone(),
                _ => DataType::Utf8,
            },
            Encode::Array(e, _) => {
                let inner = match input {
                    DataType::List(f) | DataType::LargeList(f) => f.data_type().clone(),
                    other => other.clone(),
                };
                DataType::List(Arc::new(Field::new("item", e.canonical(&inner), true)))
            }
        }
    }
}

/// A column ready to encode: typed array and how to write it.
enum Col<'a> {
    Bool(&'a BooleanArray),
    I16(&'a arrow::array::PrimitiveArray<Int16Type>),
    I32(&'a arrow::array::PrimitiveArray<Int32Type>),
    I64(&'a arrow::array::PrimitiveArray<Int64Type>),
    F32(&'a arrow::array::PrimitiveArray<Float32Type>),
    F64(&'a arrow::array::PrimitiveArray<Float64Type>),
    Dec(&'a Decimal128Array, i8),
    NumText(&'a StringArray),
    Text(&'a StringArray),
    Jsonb(&'a StringArray),
    UuidText(&'a StringArray),
    UuidBin(&'a FixedSizeBinaryArray),
    Bytes(&'a BinaryArray),
    GeomText(&'a BinaryArray),
    GeomPoint(&'a BinaryArray),
    Date(&'a arrow::array::PrimitiveArray<Date32Type>),
    Time(&'a arrow::array::PrimitiveArray<Time64MicrosecondType>),
    Ts(&'a arrow::array::PrimitiveArray<TimestampMicrosecondType>),
    Interval(&'a arrow::array::PrimitiveArray<IntervalMonthDayNanoType>),
    List(&'a ListArray, Box<Col<'a>>, u32),
}

impl<'a> Col<'a> {
    fn new(enc: &Encode, a: &'a ArrayRef) -> Col<'a> {
        match enc {
            Encode::Bool => Col::Bool(a.as_boolean()),
            Encode::Int16 => Col::I16(a.as_primitive()),
            Encode::Int32 => Col::I32(a.as_primitive()),
            Encode::Int64 => Col::I64(a.as_primitive()),
            Encode::Float32 => Col::F32(a.as_primitive()),
            Encode::Float64 => Col::F64(a.as_primitive()),
            Encode::Numeric => match a.data_type() {
                DataType::Decimal128(_, s) => Col::Dec(a.as_primitive(), *s),
                _ => Col::NumText(a.as_string()),
            },
            Encode::Text => Col::Text(a.as_string()),
            Encode::Jsonb => Col::Jsonb(a.as_string()),
            Encode::Uuid => match a.data_type() {
                DataType::FixedSizeBinary(_) => Col::UuidBin(a.as_fixed_size_binary()),
                _ => Col::UuidText(a.as_string()),
            },
            Encode::Bytea => Col::Bytes(a.as_binary()),
            Encode::GeomText => Col::GeomText(a.as_binary()),
            Encode::GeomPoint => Col::GeomPoint(a.as_binary()),
            Encode::Date => Col::Date(a.as_primitive()),
            Encode::Time => Col::Time(a.as_primitive()),
            Encode::Timestamp | Encode::TimestampTz => Col::Ts(a.as_primitive()),
            Encode::Interval => Col::Interval(a.as_primitive()),
            Encode::Array(e, oid) => {
                let list = a.as_list::<i32>();
                Col::List(list, Box::new(Col::new(e, list.values())), *oid)
            }
        }
    }

    fn is_null(&self, i: usize) -> bool {
        match self {
            Col::Bool(a) => a.is_null(i),
            Col::I16(a) => a.is_null(i),
            Col::I32(a) => a.is_null(i),
            Col::I64(a) => a.is_null(i),
            Col::F32(a) => a.is_null(i),
            Col::F64(a) => a.is_null(i),
            Col::Dec(a, _) => a.is_null(i),
            Col::NumText(a) | Col::Text(a) | Col::Jsonb(a) | Col::UuidText(a) => a.is_null(i),
            Col::UuidBin(a) => a.is_null(i),
            Col::Bytes(a) | Col::GeomText(a) | Col::GeomPoint(a) => a.is_null(i),
            Col::Date(a) => a.is_null(i),
            Col::Time(a) => a.is_null(i),
            Col::Ts(a) => a.is_null(i),
            Col::Interval(a) => a.is_null(i),
            Col::List(a, _, _) => a.is_null(i),
        }
    }

    /// Writes the length-prefixed value of row `i`.
    fn write(&self, i: usize, out: &mut Vec<u8>) -> Result<(), String> {
        if self.is_null(i) {
            out.extend((-1i32).to_be_bytes());
            return Ok(());
        }
        let fixed = |out: &mut Vec<u8>, bytes: &[u8]| {
            out.extend((bytes.len() as i32).to_be_bytes());
            out.extend(bytes);
        };
        match self {
            Col::Bool(a) => fixed(out, &[a.value(i) as u8]),
            Col::I16(a) => fixed(out, &a.value(i).to_be_bytes()),
            Col::I32(a) => fixed(out, &a.value(i).to_be_bytes()),
            Col::I64(a) => fixed(out, &a.value(i).to_be_bytes()),
            Col::F32(a) => fixed(out, &a.value(i).to_be_bytes()),
            Col::F64(a) => fixed(out, &a.value(i).to_be_bytes()),
            Col::Dec(a, s) => with_len(out, |o| numeric::from_i128(a.value(i), *s, o))?,
            Col::NumText(a) => with_len(out, |o| numeric::from_text(a.value(i), o))?,
            Col::Text(a) => fixed(out, a.value(i).as_bytes()),
            Col::Jsonb(a) => {
                let v = a.value(i).as_bytes();
                out.extend((v.len() as i32 + 1).to_be_bytes());
                out.push(1);
                out.extend(v);
            }
            Col::UuidText(a) => fixed(out, &parse_uuid(a.value(i))?),
            Col::UuidBin(a) => fixed(out, a.value(i)),
            Col::Bytes(a) => {
                let v = a.value(i);
                if v.len() > i32::MAX as usize {
                    return Err("value larger than PostgreSQL's 1 GB field limit".into());
                }
                fixed(out, v)
            }
            Col::GeomText(a) => fixed(out, sluice_core::spatial::ewkb_to_ewkt(a.value(i))?.as_bytes()),
            Col::GeomPoint(a) => {
                let (x, y) = sluice_core::spatial::ewkb_point(a.value(i))?;
                let mut b = [0u8; 16];
                b[..8].copy_from_slice(&x.to_be_bytes());
                b[8..].copy_from_slice(&y.to_be_bytes());
                fixed(out, &b)
            }
            Col::Date(a) => fixed(out, &shift_days(a.value(i), -EPOCH_DAYS).to_be_bytes()),
            Col::Time(a) => fixed(out, &a.value(i).to_be_bytes()),
            Col::Ts(a) => fixed(out, &shift_micros(a.value(i), -EPOCH_MICROS).to_be_bytes()),
            Col::Interval(a) => {
                let v = a.value(i);
                if v.nanoseconds % 1000 != 0 {
                    return Err("interval has sub-microsecond precision PostgreSQL cannot store".into());
                }
                let mut b = [0u8; 16];
                b[0..8].copy_from_slice(&(v.nanoseconds / 1000).to_be_bytes());
                b[8..12].copy_from_slice(&v.days.to_be_bytes());
                b[12..16].copy_from_slice(&v.months.to_be_bytes());
                fixed(out, &b)
            }
            Col::List(list, child, oid) => {
                let (start, end) = (list.value_offsets()[i] as usize, list.value_offsets()[i + 1] as usize);
                with_len(out, |o| {
                    let n = end - start;
                    let has_nulls = (start..end).any(|j| child.is_null(j));
                    o.extend((if n == 0 { 0i32 } else { 1 }).to_be_bytes());
                    o.extend((has_nulls as i32).to_be_bytes());
                    o.extend(oid.to_be_bytes());
                    if n > 0 {
                        o.extend((n as i32).to_be_bytes());
                        o.extend(1i32.to_be_bytes());
                    }
                    for j in start..end {
                        child.write(j, o)?;
                    }
                    Ok(())
                })?
            }
        }
        Ok(())
    }
}

/// Writes a length prefix, then what `f` appends, then fixes the length.
fn with_len(out: &mut Vec<u8>, f: impl FnOnce(&mut Vec<u8>) -> Result<(), String>) -> Result<(), String> {
    let at = out.len();
    out.extend([0u8; 4]);
    f(out)?;
    let len = (out.len() - at - 4) as i32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// Parses a UUID in its usual text forms (with or without hyphens and braces).
pub fn parse_uuid(s: &str) -> Result<[u8; 16], String> {
    let hex: Vec<u8> = s
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .bytes()
        .filter(|b| *b != b'-')
        .collect();
    let nibble = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    if hex.len() != 32 {
        return Err(format!("`{s}` is not a UUID"));
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        match (nibble(pair[0]), nibble(pair[1])) {
            (Some(h), Some(l)) => out[i] = h << 4 | l,
            _ => return Err(format!("`{s}` is not a UUID")),
        }
    }
    Ok(out)
}

/// Encodes a batch's rows into `out` (without header or trailer). Rows that
/// cannot be encoded are left out and returned as (row, column, reason).
pub fn encode_rows(
    encoders: &[Encode],
    names: &[String],
    pg_types: &[String],
    data: &RecordBatch,
    out: &mut Vec<u8>,
) -> Result<Vec<(usize, String)>, String> {
    let mut bad: Vec<(usize, String)> = Vec::new();
    let mut arrays = Vec::with_capacity(encoders.len());
    for (c, enc) in encoders.iter().enumerate() {
        let input = data.column(c);
        let target = enc.canonical(input.data_type());
        if input.data_type() == &target {
            arrays.push(input.clone());
            continue;
        }
        let opts = CastOptions {
            safe: true,
            ..Default::default()
        };
        let cast = cast_with_options(input, &target, &opts).map_err(|_| {
            format!(
                "column `{}`: values of type {} cannot be written into a {} column; \
                 cast it with a transform or set the column type in [sinks.types]",
                names[c],
                sluice_core::types::arrow_type_name(input.data_type()),
                pg_types[c]
            )
        })?;
        for i in 0..data.num_rows() {
            if input.is_valid(i) && cast.is_null(i) {
                bad.push((i, format!("column `{}`: value does not fit {}", names[c], pg_types[c])));
            }
        }
        // Arrow truncates 3.7 to 3 on the way to an integer; the server would
        // refuse it. A value that does not come back the same is refused.
        let from = input.data_type();
        if target.is_integer()
            && (from.is_floating() || matches!(from, DataType::Decimal128(..) | DataType::Decimal256(..)))
            && let Ok(back) = cast_with_options(&cast, from, &opts)
            && let Ok(same) = arrow::compute::kernels::cmp::eq(input, &back)
        {
            for i in 0..data.num_rows() {
                if cast.is_valid(i) && !same.value(i) {
                    bad.push((
                        i,
                        format!(
                            "column `{}`: a fractional value would be truncated in {}; round it with a transform \
                             or make the column numeric",
                            names[c], pg_types[c]
                        ),
                    ));
                }
            }
        }
        arrays.push(cast);
    }
    let cols: Vec<Col<'_>> = encoders.iter().zip(&arrays).map(|(e, a)| Col::new(e, a)).collect();
    bad.sort_by_key(|b| b.0);
    bad.dedup_by_key(|b| b.0);
    let mut next_bad = bad.iter().map(|b| b.0).peekable();
    let ncols = (cols.len() as i16).to_be_bytes();
    let mut refused = Vec::new();
    for i in 0..data.num_rows() {
        if next_bad.peek() == Some(&i) {
            next_bad.next();
            continue;
        }
        let start = out.len();
        out.extend(ncols);
        for (c, col) in cols.iter().enumerate() {
            if let Err(e) = col.write(i, out) {
                out.truncate(start);
                refused.push((i, format!("column `{}`: {e}", names[c])));
                break;
            }
        }
    }
    bad.extend(refused);
    bad.sort_by_key(|b| b.0);
    Ok(bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::decode::{Decode, TupleDecoder};
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::Schema;

    #[test]
    fn encoded_rows_decode_back_and_misfits_are_refused() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("amount", DataType::Utf8, true),
            Field::new("id", DataType::Utf8, true),
        ]));
        let data = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![Some(1), Some(70_000), None])),
                Arc::new(StringArray::from(vec![Some("12.50"), Some("1"), Some("-0.5")])),
                Arc::new(StringArray::from(vec![
                    Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
                    None,
                    Some("A0EEBC999C0B4EF8BB6D6BB9BD380A11"),
                ])),
            ],
        )
        .unwrap();
        let names = vec!["n".to_string(), "amount".into(), "id".into()];
        let types = vec!["smallint".to_string(), "numeric".into(), "uuid".into()];
        let mut out = HEADER.to_vec();
        let bad = encode_rows(
            &[Encode::Int16, Encode::Numeric, Encode::Uuid],
            &names,
            &types,
            &data,
            &mut out,
        )
        .unwrap();
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].0, 1);
        assert!(bad[0].1.contains("smallint"), "{}", bad[0].1);
        out.extend(TRAILER);

        let mut d = TupleDecoder::new(&[Decode::Int16, Decode::NumericText, Decode::Uuid]);
        assert_eq!(d.decode(&out, 100).unwrap(), out.len());
        let (arrays, errs) = d.finish_batch();
        assert!(errs.is_empty());
        assert_eq!(arrays[0].len(), 2);
        assert_eq!(arrays[1].as_string::<i32>().value(1), "-0.5");
        assert_eq!(
            arrays[2].as_string::<i32>().value(1),
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
        );
    }

    #[test]
    fn fractional_values_are_refused_by_integer_columns_not_truncated() {
        use arrow::array::Float64Array;
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Float64, true)]));
        let data = RecordBatch::try_new(
            schema,
            vec![Arc::new(Float64Array::from(vec![
                Some(3.0),
                Some(3.7),
                None,
                Some(-2.0),
            ]))],
        )
        .unwrap();
        let mut out = HEADER.to_vec();
        let bad = encode_rows(&[Encode::Int32], &["n".into()], &["integer".into()], &data, &mut out).unwrap();
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert_eq!(bad[0].0, 1);
        assert!(bad[0].1.contains("truncated in integer"), "{}", bad[0].1);
    }
}
